#!/usr/bin/env python3
"""CPU per HTTP request and per journey, and resident memory: pizza-probe against the
Prometheus blackbox exporter (module http_2xx, driven through its /probe), at the intervals
users run, both in the same run.

pizza-probe runs `serve --interval I` against the built-in simulator; every journey is 7 HTTP
requests (counted by the simulator). The blackbox exporter probes its own simulator's GET / once
per /probe call, which this script sends every I seconds (for the back-to-back case, "0": serve
at 0.05 s and the blackbox exporter driven back to back). At 1 s and more both run at the same
time (each against its own simulator, so neither sees the other's requests); back to back they
run one after the other, so they do not compete for the cores. CPU is each process's own
user+system time from /proc, so neither the driver's nor the target's is counted; at a real
interval it includes what the process costs between journeys (its idle), as users pay it.

    .venv/bin/python bench/overhead.py --intervals 0,1 --seconds 30 --rounds 3
    .venv/bin/python bench/overhead.py --intervals 15 --seconds 300 --rounds 1
(needs Debian's prometheus-blackbox-exporter)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time

import requests
from common import blackbox_exporter, cpu_seconds, free_port, header, pizza_probe, rss_bytes, stop, wait_http

from exporter.simulator import Simulator, SimulatorOptions

BACK_TO_BACK_INTERVAL = 0.05  # serve's "as busy as it goes"
REQUESTS_PER_JOURNEY = 7


class Ours:
    def __init__(self, sim: Simulator, interval: float) -> None:
        self.sim = sim
        port = free_port()
        self.process = pizza_probe(
            "serve", "--listen", f"127.0.0.1:{port}",
            "--interval", str(interval or BACK_TO_BACK_INTERVAL),
            "--service-url", sim.service_url, "--factory-url", sim.factory_url,
            "--log.level", "error")
        wait_http(f"http://127.0.0.1:{port}/healthz")
        self.rss_start = rss_bytes(self.process.pid)

    def mark(self) -> tuple[float, int]:
        return cpu_seconds(self.process.pid), sum(self.sim.requests.values())

    def figures(self, before: tuple[float, int], after: tuple[float, int]) -> dict:
        # the service's request count (6 a journey) plus the factory's verify, not counted there
        journeys = (after[1] - before[1]) / (REQUESTS_PER_JOURNEY - 1)
        return {"cpu": after[0] - before[0], "journeys": journeys,
                "requests": journeys * REQUESTS_PER_JOURNEY,
                "rss_start": self.rss_start, "rss": rss_bytes(self.process.pid)}

    def stop(self) -> None:
        stop(self.process)


class Blackbox:
    def __init__(self, sim: Simulator, interval: float) -> None:
        self.sim = sim
        self.interval = interval
        port = free_port()
        with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as config:
            config.write("modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n")
        self.process = blackbox_exporter(port, config.name)
        self.rss_start = rss_bytes(self.process.pid)
        self.url = f"http://127.0.0.1:{port}/probe"
        self.params = {"module": "http_2xx", "target": sim.service_url + "/"}
        self.session = requests.Session()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def probe(self) -> None:
        answer = self.session.get(self.url, params=self.params, timeout=10)
        assert "probe_success 1" in answer.text, answer.text[-500:]

    def drive(self) -> None:
        """A probe every interval (back to back for 0), as Prometheus would send them."""
        def run() -> None:
            next_at = time.monotonic()
            while not self._stop.is_set():
                self.probe()
                next_at += self.interval
                self._stop.wait(max(0.0, next_at - time.monotonic()))
        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def mark(self) -> tuple[float, int]:
        return cpu_seconds(self.process.pid), self.sim.requests[("GET", "/")]

    def figures(self, before: tuple[float, int], after: tuple[float, int]) -> dict:
        probes = after[1] - before[1]
        return {"cpu": after[0] - before[0], "journeys": probes, "requests": probes,
                "rss_start": self.rss_start, "rss": rss_bytes(self.process.pid)}

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        stop(self.process)


def window(tools: list, seconds: float) -> list[dict]:
    marks = [tool.mark() for tool in tools]
    time.sleep(seconds)
    return [tool.figures(before, tool.mark()) for tool, before in zip(tools, marks, strict=True)]


def measure(interval: float, seconds: float) -> tuple[dict, dict]:
    ours_sim = Simulator(SimulatorOptions()).start(("127.0.0.1", 0), ("127.0.0.1", 0))
    their_sim = Simulator(SimulatorOptions()).start(("127.0.0.1", 0), ("127.0.0.1", 0))
    warm_up = max(2.0, 2 * interval)  # imports done, first journeys (and probes) run
    try:
        if interval == 0:  # one after the other: each alone on the cores
            ours = Ours(ours_sim, 0)
            try:
                time.sleep(warm_up)
                (o,) = window([ours], seconds)
            finally:
                ours.stop()
            theirs = Blackbox(their_sim, 0)
            try:
                theirs.drive()
                time.sleep(warm_up)
                (b,) = window([theirs], seconds)
            finally:
                theirs.stop()
            return o, b
        ours, theirs = Ours(ours_sim, interval), Blackbox(their_sim, interval)
        try:
            theirs.drive()
            time.sleep(warm_up)
            o, b = window([ours, theirs], seconds)
        finally:
            ours.stop()
            theirs.stop()
        return o, b
    finally:
        ours_sim.stop()
        their_sim.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30, help="the measured window per round")
    parser.add_argument("--intervals", default="0,1",
                        help="comma-separated intervals in seconds; 0: back to back")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--without-ca-env", action="store_true",
                        help="run both tools without REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE and "
                             "SSL_CERT_FILE, as a container of the image runs: with one set, "
                             "serve checks that CA file at start (OpenSSL's first use, ~1.3 MiB "
                             "RSS) though an http:// target never needs it")
    args = parser.parse_args()
    if args.without_ca_env:
        for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
            os.environ.pop(variable, None)
    intervals = [float(x) for x in args.intervals.split(",")]
    header("overhead: CPU per HTTP request and per journey, and memory, pizza-probe vs blackbox "
           "exporter",
           f"bench/overhead.py --intervals {args.intervals} --seconds {args.seconds:g} "
           f"--rounds {args.rounds}" + (" --without-ca-env" if args.without_ca_env else ""))

    def per_request(m: dict) -> float:
        return m["cpu"] / m["requests"] * 1e6

    def per_journey(m: dict) -> float:
        return m["cpu"] / m["journeys"] * 1e6

    def mib(value: float) -> str:
        return f"{value / 2**20:.1f}"

    print("| interval | round | pizza-probe journeys | µs/request | µs/journey | RSS start/end MiB "
          "| blackbox probes | µs/probe | RSS start/end MiB | CPU ratio per request "
          "| RSS ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    summary = []
    for interval in intervals:
        rows = []
        for index in range(1, args.rounds + 1):
            o, b = measure(interval, args.seconds)
            rows.append((o, b))
            name = "back to back" if interval == 0 else f"{interval:g} s"
            print(f"| {name} | {index} | {o['journeys']:.0f} | {per_request(o):.0f} "
                  f"| {per_journey(o):.0f} | {mib(o['rss_start'])}/{mib(o['rss'])} "
                  f"| {b['requests']} | {per_request(b):.0f} "
                  f"| {mib(b['rss_start'])}/{mib(b['rss'])} "
                  f"| {per_request(o) / per_request(b):.2f} | {o['rss'] / b['rss']:.2f} |",
                  flush=True)
        ratios = sorted(per_request(o) / per_request(b) for o, b in rows)
        ours = sorted(per_request(o) for o, _ in rows)
        theirs = sorted(per_request(b) for _, b in rows)
        rss = sorted(o["rss"] / b["rss"] for o, b in rows)
        mid = len(rows) // 2
        summary.append(f"interval {'back to back' if interval == 0 else f'{interval:g} s'}: "
                       f"median CPU per HTTP request pizza-probe {ours[mid]:.0f} µs, blackbox "
                       f"{theirs[mid]:.0f} µs per probe; median ratio {ratios[mid]:.2f} "
                       f"({ratios[0]:.2f}..{ratios[-1]:.2f}); RSS ratio median {rss[mid]:.2f}")
    print()
    for line in summary:
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
