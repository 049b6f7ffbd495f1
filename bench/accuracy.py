#!/usr/bin/env python3
"""How true are the latencies? A target delays each answer by a known amount (0, 50, 500 ms);
for pizza-probe, each step's observed duration (what goes into
pizza_probe_step_duration_seconds) minus the delay; for the blackbox exporter,
probe_duration_seconds of a GET / minus the same delay. Median and p99 of the excess.

The target is `pizza-probe simulate --delay D` in its own process, so the probe and the target
do not share an interpreter.

    .venv/bin/python bench/accuracy.py --samples 40
(needs Debian's prometheus-blackbox-exporter)
"""

from __future__ import annotations

import argparse
import re
import tempfile

import requests
from common import blackbox_exporter, free_port, header, median, percentile, pizza_probe, stop, wait_http

from exporter.config import ProbeConfig

try:  # as serve runs them: the process's watchdog, the target's session kept across journeys
    from exporter.runtime import JourneyRunner
except ImportError:  # an older tree: a journey on its own
    JourneyRunner = None  # type: ignore[assignment,misc]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=40, help="journeys and probes per delay")
    args = parser.parse_args()
    header("accuracy: observed latency minus the true delay", f"bench/accuracy.py --samples {args.samples}")
    port = free_port()
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as config:
        config.write("modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n")
    blackbox = blackbox_exporter(port, config.name)
    rows = []
    try:
        for delay in (0.0, 0.05, 0.5):
            service, factory = free_port(), free_port()
            sim = pizza_probe("simulate", "--listen", f"127.0.0.1:{service}",
                              "--factory-listen", f"127.0.0.1:{factory}", "--delay", f"{delay}",
                              "--log.level", "error")
            try:
                wait_http(f"http://127.0.0.1:{service}/")
                config = ProbeConfig(service_url=f"http://127.0.0.1:{service}",
                                     factory_url=f"http://127.0.0.1:{factory}")
                ours = []
                if JourneyRunner is None:
                    from exporter.journey import run_journey as run
                    runner = None
                else:
                    runner = JourneyRunner()
                    run = runner.for_target()
                for _ in range(args.samples):
                    result = run(config)
                    assert result.success, result
                    ours += [step.duration - delay for step in result.steps]
                if runner is not None:
                    runner.close()
                theirs = []
                for _ in range(args.samples):
                    text = requests.get(f"http://127.0.0.1:{port}/probe", timeout=10, params={
                        "module": "http_2xx", "target": f"http://127.0.0.1:{service}/"}).text
                    assert "probe_success 1" in text
                    theirs.append(float(re.search(r"^probe_duration_seconds (\S+)", text, re.M).group(1)) - delay)
            finally:
                stop(sim)
            rows.append((delay, ours, theirs))
    finally:
        stop(blackbox)
    def ms(s):
        return f"{s * 1000:.2f} ms"
    print("| true delay | pizza-probe steps | excess median | excess p99 "
          "| blackbox probes | excess median | excess p99 |")
    print("|---|---|---|---|---|---|---|")
    for delay, ours, theirs in rows:
        print(f"| {delay * 1000:.0f} ms | {len(ours)} | {ms(median(ours))} | {ms(percentile(ours, 99))} "
              f"| {len(theirs)} | {ms(median(theirs))} | {ms(percentile(theirs, 99))} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
