"""The dashboard from code: dashboards/pizza-probe.json is what dashboards/generate.py makes
(with the Grafana Foundation SDK). Edit the program and run `make dashboards`, never the JSON.
What the dashboard shows is checked in test_alert_files.py (layout, variables) and
test_alerting_e2e.py (every query returns data on a real Prometheus)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from promstack import REPO

PROGRAM = os.path.join(REPO, "dashboards", "generate.py")
COMMITTED = os.path.join(REPO, "dashboards", "pizza-probe.json")


def generated() -> dict:
    out = subprocess.run([sys.executable, PROGRAM, "--output", "-"], capture_output=True, text=True,
                         timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_committed_dashboard_is_what_the_program_makes():
    with open(COMMITTED) as handle:
        committed = json.load(handle)
    made = generated()
    changed = sorted(key for key in set(made) | set(committed) if made.get(key) != committed.get(key))
    assert not changed, f"dashboards/pizza-probe.json is stale in {changed}: run `make dashboards`"


def test_program_writes_the_file_it_is_asked_for(tmp_path):
    target = tmp_path / "board.json"
    out = subprocess.run([sys.executable, PROGRAM, "--output", str(target)], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout == "", out.stderr
    assert json.loads(target.read_text()) == generated()


def test_latency_panels_show_exemplars():
    """Each dot on a latency panel is one journey: its journey_id and order_id lead to the order
    in JWT Pizza's own logs."""
    panels = {p["title"]: p for p in generated()["panels"]}
    latency = [p for p in panels.values() if p["type"] != "row" and any(
        "pizza_probe_step_duration_seconds_bucket" in t["expr"] or "pizza_probe_duration_seconds_bucket" in t["expr"]
        for t in p["targets"])]
    assert {p["title"] for p in latency} == {"Step latency p50 / p95 / p99", "Whole-journey duration p50 / p95 / p99",
                                             "Order step latency heatmap"}
    for panel in latency:
        assert all(t.get("exemplar") is True for t in panel["targets"]), panel["title"]
    # and only there: an exemplar query on a gauge or counter panel is a wasted round trip
    others = [p for p in panels.values() if p["type"] != "row" and p not in latency]
    assert not [p["title"] for p in others if any(t.get("exemplar") for t in p["targets"])]


def test_descriptions_carry_the_failure_reasons():
    panels = {p["title"]: p for p in generated()["panels"]}
    reasons = panels["Failures by step and reason"]["description"]
    for reason in ("order/factory_error", "order/slow", "verify/bad_jwt", "order/factory_unreachable", "tls_error"):
        assert reason in reasons
    rows = [p for p in panels.values() if p["type"] == "row"]
    assert len(rows) == 4 and all(p["description"] for p in rows)
