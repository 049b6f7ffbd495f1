#!/usr/bin/env python3
"""Repeated chaos drills against the built-in simulator: time to detect and time to recover
for each chaos mode, as medians and as multiples of the probe interval.

The simulator, the exporter and the sidecar run as in `pizza-probe demo`, with real HTTP on
loopback between them. Run by hand, never in the test suite:

    .venv/bin/python bench/drills.py --rounds 10 --interval 1 --throttle-delay 3
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from exporter.demo import Demo, DemoOptions
from exporter.logs import setup_logging


def machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {model}, Python {platform.python_version()}, {platform.system()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="drills of each mode (default 10)")
    parser.add_argument("--interval", type=float, default=1.0, help="probe interval, s (default 1)")
    parser.add_argument("--throttle-delay", type=float, default=3.0, help="throttle delay, s (default 3)")
    parser.add_argument("--verbose", action="store_true", help="print the live timeline")
    args = parser.parse_args()

    setup_logging("error")
    out = sys.stderr if args.verbose else io.StringIO()
    demo = Demo(DemoOptions(interval=args.interval, throttle_delay=args.throttle_delay,
                            listen=("127.0.0.1", 0), sidecar_listen=("127.0.0.1", 0),
                            drill_timeout=max(30.0, 10 * args.interval + 2 * args.throttle_delay)),
                out)
    started = time.monotonic()
    demo.start()
    try:
        ok = demo.run_drills(rounds=args.rounds)
    finally:
        demo.stop()
    elapsed = time.monotonic() - started

    i = args.interval
    print(f"# chaos drills, {time.strftime('%Y-%m-%d', time.gmtime())}")
    print(f"machine: {machine()}")
    print(f"probe interval {i:g}s, throttle delay {args.throttle_delay:g}s, "
          f"{args.rounds} drills per mode, {elapsed:.0f}s in all\n")
    print("| mode | drills | recovered | median detect | detect / interval "
          "| median recover | recover / interval | max recover |")
    print("|---|---|---|---|---|---|---|---|")
    for mode in demo.options.modes:
        drills = [d for d in demo.timeline.drills if d.mode == mode]
        detect = [d.time_to_detect for d in drills if d.time_to_detect is not None]
        recover = [d.time_to_recover for d in drills if d.time_to_recover is not None]
        if not recover:
            print(f"| {mode} | {len(drills)} | 0 | - | - | - | - | - |")
            continue
        md, mr = statistics.median(detect), statistics.median(recover)
        print(f"| {mode} | {len(drills)} | {len(recover)} | {md:.2f}s | {md / i:.2f}x | "
              f"{mr:.2f}s | {mr / i:.2f}x | {max(recover):.2f}s |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
