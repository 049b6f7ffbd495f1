#!/usr/bin/env python3
"""Write a Prometheus file_sd file listing a class of JWT Pizza services, for the /probe job.

    python3 deploy/fleet/generate_targets.py                       # targets/students.json, 200
    python3 deploy/fleet/generate_targets.py --count 40 --out -    # to stdout

Each target is a service URL (Prometheus passes it to the exporter as ?target=). The group's
labels end up on every series of its targets: ``module`` picks the exporter's module (the
prometheus.yml relabeling copies it into ?module=), ``cohort`` is only a label to group by.
Replace the URL pattern with your own list; the exporter's modules file must allow every URL
(targets or allowed_target_patterns), or /probe answers 400 and the target shows up = 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

URL = "https://pizza-service.student{number:03d}.click"
HERE = os.path.dirname(os.path.abspath(__file__))


def groups(count: int, module: str = "default", cohort: str = "cs329") -> list[dict]:
    return [{
        "targets": [URL.format(number=n) for n in range(1, count + 1)],
        "labels": {"module": module, "cohort": cohort},
    }]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="how many services (1-999)")
    parser.add_argument("--module", default="default", help="the exporter module to use")
    parser.add_argument("--cohort", default="cs329", help="the cohort label's value")
    parser.add_argument("--out", default=os.path.join(HERE, "targets", "students.json"),
                        help="where to write, '-' for stdout")
    args = parser.parse_args(argv)
    if not 1 <= args.count <= 999:
        parser.error("--count must be 1-999")
    text = json.dumps(groups(args.count, args.module, args.cohort), indent=2) + "\n"
    if args.out == "-":
        sys.stdout.write(text)
    else:
        # Write then rename: Prometheus watches the file and must never read half of it.
        temporary = args.out + ".tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
