#!/usr/bin/env python3
"""Chaos drills against the built-in simulator: time to detect and time to recover, for a first
incident and for one that follows right after a healed one, as medians and as multiples of the
probe interval, and where the time goes between the first failed order and the heal.

Times are as exporter/timing.py (docs/timing.md) defines them: from the moment the factory broke
to the end of the first failed synthetic order (detect) and to the end of the first good order
after the fix (recover).

Each *pair* runs in a fresh demo (simulator, exporter and sidecar in one process, real HTTP on
loopback between them, every limit of the sidecar as it ships but the hourly one, see
exporter/demo.py): once the probe has seen a good order, the factory is broken at a random
moment within the next interval (a real outage does not wait for the probe's schedule): the
*first* incident; the moment the sidecar has verified the heal, it is broken again: the incident
*after a heal* (which starts just after a probe journey, its worst moment). Run by hand, never in
the test suite:

    .venv/bin/python bench/drills.py --interval 2 --pairs 10
    .venv/bin/python bench/drills.py --interval 15 --pairs 3 --modes fail,badjwt
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from exporter.demo import RECOVERED, Demo, DemoOptions, Drill
from exporter.logs import setup_logging

KINDS = ("first", "after a heal")
# where the time goes, between two marks of the timeline (see Timeline.marks)
LEGS = (
    ("hand-off", "failed_order_ended", "received"),  # exporter -> sidecar, long poll
    ("wake-up", "received", "opened"),  # sidecar queue -> worker, incident opened and saved
    ("to call", "opened", "calling"),  # the safety checks before the call
    ("link call", "calling", "factory_resolved"),  # the call until the factory's chaos ended
    ("verify", "factory_resolved", "recovered"),  # the answer, then the verification order
)


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


def moments(marks: list[tuple[str, float, dict]], drill: Drill) -> dict[str, float]:
    """The first moment of each mark of ``drill`` (its marks lie between its chaos start and
    the next drill's)."""
    found: dict[str, float] = {}
    mine = False
    for name, at, fields in marks:
        if name == "chaos_started":
            if mine:
                break
            mine = at == drill.started_at
            continue
        if not mine:
            continue
        if name == "incident_opened":
            for key, value in (("received", fields.get("received_at")),
                               ("opened", fields.get("opened_at"))):
                if value is not None:
                    found.setdefault(key, value)
        else:
            found.setdefault(name, at)
    return found


def run_pair(args, mode: str, rng: random.Random) -> list[tuple[str, Drill, dict[str, float]]]:
    out = sys.stderr if args.verbose else io.StringIO()
    demo = Demo(DemoOptions(interval=args.interval, throttle_delay=args.throttle_delay,
                            modes=(mode, mode), listen=("127.0.0.1", 0),
                            sidecar_listen=("127.0.0.1", 0),
                            drill_timeout=max(30.0, 4 * args.interval + 2 * args.throttle_delay)),
                out)

    def before_each(index: int, _mode: str) -> None:
        if index == 0:  # a random moment within the interval after a good order
            demo.stop_event.wait(rng.uniform(0, args.interval))
        # index 1: at once; run_drills has waited for the probe's first good order that started
        # after the heal (no order of the first outage still in flight), the probe's worst moment

    demo.start()
    try:
        demo.run_drills(rounds=1, before_each=before_each)
    finally:
        demo.timeline.close()
        demo.stop()
    return [(kind, drill, moments(demo.timeline.marks, drill))
            for kind, drill in zip(KINDS, demo.timeline.drills, strict=False)]


def median_or_none(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", "--rounds", type=int, default=10,
                        help="pairs (first incident, then one right after its heal) per mode")
    parser.add_argument("--interval", type=float, default=2.0, help="probe interval, s (default 2)")
    parser.add_argument("--throttle-delay", type=float, default=3.0, help="throttle delay, s (default 3)")
    parser.add_argument("--modes", default="fail,badjwt,throttle", help="chaos modes, comma-separated")
    parser.add_argument("--seed", type=int, default=None, help="seed of the random chaos moments")
    parser.add_argument("--verbose", action="store_true", help="print the live timelines")
    args = parser.parse_args()

    setup_logging("error")
    rng = random.Random(args.seed)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    started = time.monotonic()
    runs: list[tuple[str, str, Drill, dict[str, float]]] = []
    for _ in range(args.pairs):
        for mode in modes:
            runs += [(mode, kind, drill, found) for kind, drill, found in run_pair(args, mode, rng)]
    elapsed = time.monotonic() - started

    i = args.interval
    print(f"# chaos drills, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"machine: {machine()}; load average at the end: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"probe interval {i:g}s, throttle delay {args.throttle_delay:g}s, {args.pairs} pairs per "
          f"mode, {elapsed:.0f}s in all\n")
    print("| mode | incident | drills | recovered | median detect | detect / interval "
          "| median recover | recover / interval | max recover / interval |")
    print("|---|---|---|---|---|---|---|---|---|")
    ok = True
    for mode in modes:
        for kind in KINDS:
            drills = [d for m, k, d, _ in runs if m == mode and k == kind]
            detect = [d.time_to_detect for d in drills if d.time_to_detect is not None]
            recover = [d.time_to_recover for d in drills
                       if d.outcome == RECOVERED and d.time_to_recover is not None]
            ok = ok and len(recover) == len(drills) == args.pairs
            md, mr = median_or_none(detect), median_or_none(recover)
            if md is None or mr is None:
                print(f"| {mode} | {kind} | {len(drills)} | {len(recover)} | - | - | - | - | - |")
                continue
            print(f"| {mode} | {kind} | {len(drills)} | {len(recover)} | {md:.2f}s | {md / i:.2f}x "
                  f"| {mr:.2f}s | {mr / i:.2f}x | {max(recover) / i:.2f}x |")

    print("\nWhere the time goes from the end of the first failed order to the verified good "
          "order, median ms (all modes and incidents):\n")
    print("| " + " | ".join(name for name, _, _ in LEGS) + " | total |")
    print("|" + "---|" * (len(LEGS) + 1))
    cells = []
    for _, start, end in LEGS:
        legs = [(f[end] - f[start]) * 1000 for _, _, _, f in runs if start in f and end in f]
        cells.append(f"{statistics.median(legs):.1f}" if legs else "-")
    totals = [(f["recovered"] - f["failed_order_ended"]) * 1000 for _, _, _, f in runs
              if "recovered" in f and "failed_order_ended" in f]
    cells.append(f"{statistics.median(totals):.1f}" if totals else "-")
    print("| " + " | ".join(cells) + " |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
