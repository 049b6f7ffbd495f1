"""Static checks of the shipped rules, Alertmanager route, runbook and dashboard."""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess

import yaml

from promstack import ALERTMANAGER_CONFIG, REPO, RULES, binary

ALERTS = ("PizzaSyntheticOrderFailing", "PizzaSyntheticOrderSlow", "PizzaProbeDown",
          "PizzaRecoveryFailing", "PizzaOrderErrorBudgetBurn")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120, cwd=REPO)


def rules() -> list[dict]:
    with open(RULES) as handle:
        return [rule for group in yaml.safe_load(handle)["groups"] for rule in group["rules"]]


def test_promtool_check_rules():
    out = run(binary("promtool"), "check", "rules", RULES)
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr


def test_promtool_checks_every_file_of_the_shell_glob():
    """`promtool check rules alerts/*.yml`, as a user types it: the glob finds rule files only
    (the Alertmanager route lives in alerts/alertmanager/)."""
    out = subprocess.run(f"{binary('promtool')} check rules alerts/*.yml", shell=True, cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    checked = re.findall(r"^Checking (\S+)", out.stdout + out.stderr, re.M)
    assert checked == [os.path.relpath(p, REPO) for p in sorted(glob.glob(os.path.join(REPO, "alerts", "*.yml")))]
    assert "alerts/pizza-probe.rules.yml" in checked


def test_promtool_test_rules():
    tests = sorted(glob.glob(os.path.join(REPO, "alerts", "tests", "*.yml")))
    assert tests, "alerts/tests/ holds the promtool rule tests"
    out = run(binary("promtool"), "test", "rules", *tests)
    assert out.returncode == 0 and "FAILED" not in out.stdout + out.stderr, out.stdout + out.stderr
    covered = "".join(open(path).read() for path in tests)
    for alert in ALERTS:
        assert f"alertname: {alert}" in covered, f"no promtool test for {alert}"


def test_amtool_check_config():
    out = run(binary("amtool"), "check-config", ALERTMANAGER_CONFIG)
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr


def test_the_route_sends_failing_orders_to_the_sidecar_quickly():
    with open(ALERTMANAGER_CONFIG) as handle:
        config = yaml.safe_load(handle)
    (route,) = [r for r in config["route"]["routes"] if r["receiver"] == "pizza-probe-sidecar"]
    assert route["matchers"] == ['alertname = "PizzaSyntheticOrderFailing"']
    assert int(route["group_wait"].rstrip("s")) <= 10
    assert config["route"]["receiver"] == "humans"
    (sidecar,) = [r for r in config["receivers"] if r["name"] == "pizza-probe-sidecar"]
    hook = sidecar["webhook_configs"][0]
    assert hook["url"].endswith("/alertmanager") and hook["send_resolved"] is True
    assert "credentials_file" in hook["http_config"]["authorization"]  # no token inline


def test_every_alert_has_severity_summary_description_and_a_runbook_section():
    with open(os.path.join(REPO, "docs", "runbook.md")) as handle:
        runbook = handle.read()
    anchors = {re.sub(r"[^a-z0-9-]", "", line[3:].strip().lower().replace(" ", "-"))
               for line in runbook.splitlines() if line.startswith("## ")}
    seen = set()
    for rule in rules():
        if "alert" not in rule:
            continue
        seen.add(rule["alert"])
        assert rule["labels"]["severity"] in ("critical", "warning")
        annotations = rule["annotations"]
        assert annotations["summary"] and "{{ $value" in annotations["description"]
        anchor = annotations["runbook_url"].split("docs/runbook.md#", 1)[1]
        assert anchor in anchors, f"{rule['alert']}: no runbook section #{anchor}"
    assert seen == set(ALERTS)


def test_dashboard_is_importable():
    with open(os.path.join(REPO, "dashboards", "pizza-probe.json")) as handle:
        dashboard = json.load(handle)
    assert dashboard["uid"] == "pizza-probe"
    (source,) = dashboard["__inputs"]
    assert (source["name"], source["type"], source["pluginId"]) == ("DS_PROMETHEUS", "datasource", "prometheus")
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert "instance" in variables
    # serve --target: a target variable filters the journey metrics; All matches no label too
    assert (variables["target"]["includeAll"], variables["target"]["allValue"]) == (True, ".*")
    # provisioned from a file, a dashboard skips the import step that fills ${DS_PROMETHEUS}:
    # a data-source variable of that name resolves it there
    assert (variables["DS_PROMETHEUS"]["type"], variables["DS_PROMETHEUS"]["query"]) == ("datasource", "prometheus")
    ids, cells = set(), set()
    for panel in dashboard["panels"]:
        assert panel["id"] not in ids
        ids.add(panel["id"])
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"panel {panel['title']} overlaps another"
                cells.add((x, y))
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}"
        assert panel.get("description"), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}"
            expr = target["expr"]
            if "pizza_recovery_" in expr:
                assert '$sidecar' in expr, panel["title"]
            elif "pizza_probe" in expr:
                assert '$instance' in expr and '$target' in expr, panel["title"]
                assert "by (instance)" not in expr and "by (instance, job)" not in expr, \
                    f"{panel['title']}: sums the targets of an exporter together"
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows == ["Is it up?", "Is it fast?", "What broke?", "Did it heal?"]
    text = json.dumps(dashboard)
    assert "heatmap" in text and "pizza_recovery_duration_seconds" in text
