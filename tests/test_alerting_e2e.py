"""The shipped rules and Alertmanager route, end to end: a real Prometheus and Alertmanager on
loopback, the exporter and the sidecar as real processes, the simulator as the target.

Break the factory; PizzaSyntheticOrderFailing fires in Prometheus; Alertmanager calls the
sidecar's webhook; the sidecar heals the factory; the alert resolves. Then every PromQL
expression of the rules and the dashboard runs on that Prometheus."""

from __future__ import annotations

import json
import os
import re
import time

import pytest
import yaml

from conftest import poll, set_chaos, start_simulator, target_args, value
from processes import Processes
from promstack import REPO, RULES, Alertmanager, Prometheus, WebhookCatcher, shipped_alertmanager_config

TOKEN = "e2e-webhook-token-5d1c"
DASHBOARD = os.path.join(REPO, "dashboards", "pizza-probe.json")


class Stack:
    pass


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stack")
    s = Stack()
    s.sim = start_simulator(throttle_delay=0.5)
    s.procs = Processes(tmp)
    s.humans = WebhookCatcher()
    daemons = []
    try:
        target = target_args(s.sim)
        s.exporter = s.procs.start("serve", *target, "--interval", "1s")
        s.incidents = tmp / "incidents"
        # webhook only: with the exporter hand-off the sidecar would heal before any alert
        s.sidecar = s.procs.start("sidecar", *target, "--exporter-url", "", "--cooldown", "1s",
                                  "--incident-dir", str(s.incidents),
                                  env={"PIZZA_RECOVERY_WEBHOOK_TOKEN": TOKEN})
        token_file = tmp / "webhook-token"
        token_file.write_text(TOKEN)
        s.alertmanager = Alertmanager(tmp, shipped_alertmanager_config(
            s.sidecar.url + "/alertmanager", str(token_file), s.humans.url))
        daemons.append(s.alertmanager)
        def address(url):
            return url.split("//", 1)[1]
        s.prometheus = Prometheus(tmp, {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [RULES],
            "alerting": {"alertmanagers": [{"static_configs": [
                {"targets": [f"127.0.0.1:{s.alertmanager.port}"]}]}]},
            "scrape_configs": [
                {"job_name": "pizza-probe", "static_configs": [{"targets": [address(s.exporter.url)]}]},
                {"job_name": "pizza-probe-sidecar", "static_configs": [{"targets": [address(s.sidecar.url)]}]},
            ],
        })
        daemons.append(s.prometheus)
        yield s
    finally:
        for daemon in daemons:
            daemon.stop()
        s.procs.stop_all()
        s.humans.stop()
        s.sim.stop()


@pytest.fixture(scope="module")
def drill(stack):
    """Break the factory once and follow the incident through the whole stack."""
    s, times = stack, {}
    poll(lambda: s.prometheus.query('pizza_probe_success{job="pizza-probe"} == 1'), timeout=30,
         what="Prometheus to see a good order")
    started = time.monotonic()
    set_chaos(s.sim, "fail")
    def firing():
        return [a for a in s.prometheus.alerts("PizzaSyntheticOrderFailing") if a["state"] == "firing"]
    times["alert"] = poll(firing, timeout=60, what="PizzaSyntheticOrderFailing to fire")
    times["fired"] = time.monotonic() - started
    poll(lambda: value(s.sidecar.metrics(), "pizza_recovery_alerts_received_total", status="firing") >= 1,
         timeout=30, what="Alertmanager to call the sidecar")
    times["webhook"] = time.monotonic() - started
    poll(lambda: s.sim.factory.resolutions >= 1 and s.sim.factory.mode is None, timeout=30,
         what="the sidecar to heal the factory")
    times["healed"] = time.monotonic() - started
    poll(lambda: not s.prometheus.alerts("PizzaSyntheticOrderFailing"), timeout=60,
         what="the alert to resolve")
    times["resolved"] = time.monotonic() - started
    poll(lambda: value(s.sidecar.metrics(), "pizza_recovery_alerts_received_total", status="resolved") >= 1,
         timeout=30, what="Alertmanager to send the resolution")
    return times


def test_the_drill_fires_pages_the_sidecar_heals_and_resolves(stack, drill):
    print("drill, seconds after the factory broke: " + ", ".join(
        f"{k} {v:.1f}" for k, v in drill.items() if k != "alert"))
    alert = drill["alert"][0]
    assert alert["labels"]["severity"] == "critical" and alert["labels"]["job"] == "pizza-probe"
    assert float(alert["value"]) >= 2
    assert alert["annotations"]["runbook_url"].endswith("docs/runbook.md#pizzasyntheticorderfailing")
    assert drill["fired"] < drill["webhook"] <= drill["healed"] + 1 < drill["resolved"] + 1
    assert stack.sim.factory.link_calls == 1  # one alert, one link call
    metrics = stack.sidecar.metrics()
    assert value(metrics, "pizza_recovery_attempts_total", result="resolved") == 1
    assert value(metrics, "pizza_recovery_duration_seconds_count") == 1
    (record,) = [json.loads(p.read_text()) for p in stack.incidents.glob("*.json")]
    assert record["detected_by"] == "alert" and record["status"] == "resolved"
    assert record["alert_fired_at"] and record["alert_resolved_at"]
    assert "PizzaSyntheticOrderFailing" not in stack.humans.alerts  # routed to the sidecar only


def _metric_names(expr: str) -> set[str]:
    return {name for name in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr)
            if name.startswith("pizza_")}


def test_every_rule_expression_runs_and_reads_live_series(stack, drill):
    with open(RULES) as handle:
        groups = yaml.safe_load(handle)["groups"]
    for group in groups:
        for rule in group["rules"]:
            result = stack.prometheus.query(rule["expr"])  # raises on a PromQL error
            if "record" in rule:
                assert result, f"recording rule {rule['record']} returned nothing"
            for name in _metric_names(rule["expr"]):
                assert stack.prometheus.query(f'count({{__name__="{name}"}})'), \
                    f"{rule.get('alert') or rule.get('record')} reads {name}, which has no series"
    assert stack.prometheus.query('up{job="pizza-probe"} == 1')


def substitute(expr: str) -> str:
    for variable, replacement in (("$__rate_interval", "1m"), ("$__range", "1h"),
                                  ("$__interval", "15s"), ("${instance}", ".*"),
                                  ("$instance", ".*"), ("${sidecar}", ".*"), ("$sidecar", ".*"),
                                  ("${target}", ".*"), ("$target", ".*")):
        expr = expr.replace(variable, replacement)
    return expr


def dashboard_expressions() -> list[tuple[str, str]]:
    with open(DASHBOARD) as handle:
        dashboard = json.load(handle)
    found = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            if target.get("expr"):
                found.append((panel["title"], target["expr"]))
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if annotation.get("expr"):
            found.append((f"annotation {annotation['name']}", annotation["expr"]))
    return found


def test_every_dashboard_query_returns_data_in_the_drill(stack, drill):
    expressions = dashboard_expressions()
    assert len(expressions) >= 15
    empty = []
    for title, expr in expressions:
        if not stack.prometheus.query(substitute(expr)):
            empty.append(f"{title}: {expr}")
    assert not empty, "dashboard queries that returned nothing:\n" + "\n".join(empty)
