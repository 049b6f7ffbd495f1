#!/usr/bin/env python3
"""/metrics under stress: 50 concurrent scrapers (wrk) while every journey hangs on a silent
target (a socket that accepts connections and never answers). Reports wrk's p50/p99 latency.

    .venv/bin/python bench/scrape_stress.py --seconds 20
(needs Debian's wrk)
"""

from __future__ import annotations

import argparse
import re
import shutil
import socket
import subprocess

from common import cpu_seconds, free_port, header, pizza_probe, rss_bytes, stop, wait_http


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing: apt-get install wrk")
    header("scrape under stress", f"bench/scrape_stress.py --seconds {args.seconds}")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1024)  # the kernel completes the handshakes; nobody ever answers
    target = f"http://127.0.0.1:{silent.getsockname()[1]}"
    port = free_port()
    probe = pizza_probe("serve", "--listen", f"127.0.0.1:{port}", "--interval", "1s",
                        "--service-url", target, "--factory-url", target, "--log.level", "error")
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        cpu0 = cpu_seconds(probe.pid)
        out = subprocess.run(["wrk", "-t2", f"-c{args.connections}", f"-d{args.seconds}s", "--latency",
                              f"http://127.0.0.1:{port}/metrics"], capture_output=True, text=True,
                             timeout=args.seconds + 60).stdout
        cpu = cpu_seconds(probe.pid) - cpu0
        rss = rss_bytes(probe.pid)
        metrics = subprocess.run(["curl", "-s", f"http://127.0.0.1:{port}/metrics"], capture_output=True,
                                 text=True).stdout if shutil.which("curl") else ""
    finally:
        stop(probe)
        silent.close()
    latency = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M))
    rate = re.search(r"Requests/sec:\s+(\S+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    print("| scrapers | seconds | scrapes/s | p50 | p90 | p99 | errors | exporter CPU | exporter RSS |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.connections} | {args.seconds} | {rate.group(1) if rate else '?'} | {latency.get('50')} "
          f"| {latency.get('90')} | {latency.get('99')} | {errors.group(0) if errors else 'none'} "
          f"| {cpu:.1f} s | {rss / 2**20:.1f} MiB |")
    failures = re.search(r'pizza_probe_failures_total\{reason="timeout",step="health"\} (\S+)', metrics)
    if failures:
        print(f"\njourneys that timed out at health during the run: {float(failures.group(1)):.0f}")
    print("\nwrk output:\n" + "\n".join("    " + line for line in out.splitlines()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
