#!/usr/bin/env python3
"""Soak: 10,000 journeys against the simulator with random faults at a short interval. The
exporter's counters must add up exactly (every journey counted once: success + failure =
journeys = the simulator's count of GET /), and its memory after the first 1,000 journeys must
grow by less than 5 %.

    .venv/bin/python bench/soak.py --journeys 10000
"""

from __future__ import annotations

import argparse
import random
import re
import threading
import time

import requests
from common import free_port, header, pizza_probe, rss_bytes, stop, wait_http

from exporter.simulator import CHAOS_MODES, Simulator, SimulatorOptions


def scrape(port: int) -> dict[str, float]:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    values = {}
    for name, labels, value in re.findall(r"^(pizza_probe_\w+)(\{[^}]*\})? (\S+)$", text, re.M):
        values[name + (labels or "")] = values.get(name + (labels or ""), 0.0) + float(value)
    return values


def total(values: dict, prefix: str) -> float:
    return sum(v for k, v in values.items() if k.startswith(prefix))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--journeys", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=0.005)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    header("soak", f"bench/soak.py --journeys {args.journeys} --interval {args.interval} --seed {args.seed}")
    rng = random.Random(args.seed)
    sim = Simulator(SimulatorOptions(throttle_delay=0.02)).start(("127.0.0.1", 0), ("127.0.0.1", 0))
    stop_faults = threading.Event()

    def faults() -> None:  # a random fault, or none, every 50-300 ms
        while not stop_faults.wait(rng.uniform(0.05, 0.3)):
            choice = rng.choice(["none", "none", "monkey", *CHAOS_MODES])
            sim.service.monkey = choice == "monkey"
            sim.factory.set_chaos(choice if choice in CHAOS_MODES else None)

    port = free_port()
    probe = pizza_probe("serve", "--listen", f"127.0.0.1:{port}", "--interval", str(args.interval),
                        "--service-url", sim.service_url, "--factory-url", sim.factory_url,
                        "--slow-threshold", "0.015", "--log.level", "error")
    started = time.monotonic()
    threading.Thread(target=faults, daemon=True).start()
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        rss_1000 = None
        while True:
            journeys = sim.requests[("GET", "/")]
            if rss_1000 is None and journeys >= 1000:
                rss_1000 = rss_bytes(probe.pid)
            if journeys >= args.journeys:
                break
            time.sleep(0.5)
        rss_end = rss_bytes(probe.pid)
        stop_faults.set()
        # Close the books: the service stops answering, so journeys from now on fail at health
        # with connection_error, which the simulator does not count; then every journey the
        # simulator saw has ended, and the exporter's count must be the simulator's plus those.
        for server in sim.servers:
            server.stop()
        seen = sim.requests[("GET", "/")]
        refused_key = 'pizza_probe_failures_total{reason="connection_error",step="health"}'
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            before = scrape(port)
            if before.get(refused_key, 0) >= 3:
                break
            time.sleep(0.2)
        for _ in range(5):  # a scrape can catch a journey half recorded: read until stable
            values = scrape(port)
            if values == scrape(port):
                break
    finally:
        stop(probe)
        sim.stop()
    elapsed = time.monotonic() - started
    success = values['pizza_probe_orders_total{result="success"}']
    failure = values['pizza_probe_orders_total{result="failure"}']
    refused = values.get(refused_key, 0)
    checks = {
        "success + failure == simulator's journeys + refused after close": success + failure == seen + refused,
        "sum of pizza_probe_failures_total == failures": total(values, "pizza_probe_failures_total") == failure,
        "health step count == journeys":
            values['pizza_probe_step_duration_seconds_count{step="health"}'] == success + failure,
        "journey duration count == journeys": values["pizza_probe_duration_seconds_count"] == success + failure,
    }
    growth = (rss_end - rss_1000) / rss_1000 * 100
    print(f"{seen:.0f} journeys seen by the simulator in {elapsed:.0f} s "
          f"({seen / elapsed:.0f}/s), {refused:.0f} more refused after it closed")
    print(f"exporter: {success:.0f} success + {failure:.0f} failure = {success + failure:.0f}")
    reasons = {k.split("{", 1)[1].rstrip("}"): v for k, v in values.items()
               if k.startswith("pizza_probe_failures_total") and v}
    print("failures by step and reason: " + ", ".join(f"{k}: {v:.0f}" for k, v in sorted(reasons.items())))
    print()
    print("| check | result |")
    print("|---|---|")
    for name, ok in checks.items():
        print(f"| {name} | {'yes' if ok else 'NO'} |")
    print(f"| RSS after 1,000 journeys {rss_1000 / 2**20:.1f} MiB, at the end {rss_end / 2**20:.1f} MiB: "
          f"growth {growth:+.1f} % < 5 % | {'yes' if growth < 5 else 'NO'} |")
    return 0 if all(checks.values()) and growth < 5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
