#!/usr/bin/env python3
"""CPU seconds per HTTP request, and resident memory: pizza-probe against the Prometheus
blackbox exporter (module http_2xx, driven through its /probe), both on one loopback target.

pizza-probe runs `serve` at a short interval against the built-in simulator; every journey is 7
HTTP requests (counted by the simulator). The blackbox exporter probes the simulator's GET /
once per /probe call, driven back to back by this script. CPU is each process's own user+system
time from /proc, so the driver's and the target's CPU are not counted for either.

    .venv/bin/python bench/overhead.py --seconds 30
(needs Debian's prometheus-blackbox-exporter)
"""

from __future__ import annotations

import argparse
import tempfile
import time

import requests
from common import blackbox_exporter, cpu_seconds, free_port, header, pizza_probe, rss_bytes, stop, wait_http

from exporter.simulator import Simulator, SimulatorOptions


def measure_ours(sim: Simulator, seconds: float, interval: float) -> dict:
    port = free_port()
    process = pizza_probe("serve", "--listen", f"127.0.0.1:{port}", "--interval", str(interval),
                          "--service-url", sim.service_url, "--factory-url", sim.factory_url,
                          "--log.level", "error")
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        time.sleep(2)  # warm up: imports done, first journeys run
        cpu0, requests0 = cpu_seconds(process.pid), sum(sim.requests.values())
        time.sleep(seconds)
        cpu1, requests1 = cpu_seconds(process.pid), sum(sim.requests.values())
        rss = rss_bytes(process.pid)
    finally:
        stop(process)
    # the service's request count plus the factory's verify (one per journey, not counted there)
    journeys = (requests1 - requests0) / 6
    http_requests = journeys * 7
    return {"cpu": cpu1 - cpu0, "requests": http_requests, "rss": rss}


def measure_blackbox(sim: Simulator, seconds: float) -> dict:
    port = free_port()
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as config:
        config.write("modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n")
    process = blackbox_exporter(port, config.name)
    url = f"http://127.0.0.1:{port}/probe"
    params = {"module": "http_2xx", "target": sim.service_url + "/"}
    session = requests.Session()
    try:
        for _ in range(20):  # warm up
            session.get(url, params=params, timeout=10)
        cpu0, requests0 = cpu_seconds(process.pid), sim.requests[("GET", "/")]
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            answer = session.get(url, params=params, timeout=10)
            assert "probe_success 1" in answer.text, answer.text[-500:]
        cpu1, requests1 = cpu_seconds(process.pid), sim.requests[("GET", "/")]
        rss = rss_bytes(process.pid)
    finally:
        stop(process)
    return {"cpu": cpu1 - cpu0, "requests": requests1 - requests0, "rss": rss}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--interval", type=float, default=0.05,
                        help="pizza-probe's journey interval (default 0.05 s: as busy as it goes)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    header("overhead: CPU per HTTP request and memory, pizza-probe vs blackbox exporter",
           f"bench/overhead.py --seconds {args.seconds:g} --rounds {args.rounds}")
    sim = Simulator(SimulatorOptions()).start(("127.0.0.1", 0), ("127.0.0.1", 0))
    rows = []
    try:
        for _ in range(args.rounds):
            rows.append((measure_ours(sim, args.seconds, args.interval), measure_blackbox(sim, args.seconds)))
    finally:
        sim.stop()
    def per_request(m):
        return m["cpu"] / m["requests"] * 1e6
    ours = sorted(per_request(o) for o, _ in rows)
    theirs = sorted(per_request(b) for _, b in rows)
    mid = len(rows) // 2
    print("| round | pizza-probe requests | pizza-probe CPU µs/request "
          "| blackbox requests | blackbox CPU µs/request | ratio |")
    print("|---|---|---|---|---|---|")
    for i, (o, b) in enumerate(rows, 1):
        print(f"| {i} | {o['requests']:.0f} | {per_request(o):.0f} | {b['requests']} | {per_request(b):.0f} "
              f"| {per_request(o) / per_request(b):.2f} |")
    print(f"\nmedian CPU per HTTP request: pizza-probe {ours[mid]:.0f} µs, blackbox exporter "
          f"{theirs[mid]:.0f} µs, ratio {ours[mid] / theirs[mid]:.2f}")
    print(f"resident memory at the end: pizza-probe {rows[-1][0]['rss'] / 2**20:.1f} MiB, "
          f"blackbox exporter {rows[-1][1]['rss'] / 2**20:.1f} MiB, "
          f"ratio {rows[-1][0]['rss'] / rows[-1][1]['rss']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
