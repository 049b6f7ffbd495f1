#!/usr/bin/env python3
"""Where a journey's CPU goes: N journeys run back to back in this process, under cProfile,
against `pizza-probe simulate` in its own process (so the target's CPU is not in the profile),
the way a scheduled loop of `serve` runs them. Prints the top functions by own time, the CPU per
journey with and without the profiler, and the threads started per journey.

    .venv/bin/python bench/profile_journeys.py --journeys 300
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import threading
import time

from common import free_port, header, pizza_probe, stop, wait_http

from exporter.config import ProbeConfig


def journeys(config: ProbeConfig, count: int) -> None:
    """As a scheduled loop runs them: through the runtime's journey runner if this version has
    one (kept across journeys), else run_journey."""
    try:
        from exporter.runtime import JourneyRunner
    except ImportError:
        from exporter.journey import run_journey
        for _ in range(count):
            assert run_journey(config).success
        return
    with JourneyRunner() as runner:
        run = runner.for_target()
        for _ in range(count):
            assert run(config).success


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--journeys", type=int, default=300)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    header("profile of journeys", f"bench/profile_journeys.py --journeys {args.journeys}")
    service, factory = free_port(), free_port()
    sim = pizza_probe("simulate", "--listen", f"127.0.0.1:{service}",
                      "--factory-listen", f"127.0.0.1:{factory}", "--log.level", "error")
    try:
        wait_http(f"http://127.0.0.1:{service}/")
        config = ProbeConfig(service_url=f"http://127.0.0.1:{service}",
                             factory_url=f"http://127.0.0.1:{factory}")
        journeys(config, 20)  # warm up
        started = [0]
        original_start = threading.Thread.start

        def counted_start(thread: threading.Thread) -> None:
            started[0] += 1
            original_start(thread)

        threading.Thread.start = counted_start  # type: ignore[method-assign]
        cpu = time.process_time()
        journeys(config, args.journeys)
        plain = (time.process_time() - cpu) / args.journeys
        threading.Thread.start = original_start  # type: ignore[method-assign]
        threads = started[0] / args.journeys
        profiler = cProfile.Profile(time.process_time)  # CPU, not the waits
        cpu = time.process_time()
        profiler.runcall(journeys, config, args.journeys)
        profiled = (time.process_time() - cpu) / args.journeys
    finally:
        stop(sim)
    print(f"CPU per journey: {plain * 1e3:.2f} ms ({profiled * 1e3:.2f} ms under cProfile); "
          f"threads started per journey: {threads:.1f}\n")
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(args.top)
    print(out.getvalue().split("\n", 6)[-1].rstrip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
