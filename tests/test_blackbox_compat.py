"""``/probe`` answers the blackbox exporter's ``probe_success`` and ``probe_duration_seconds``
beside its own gauges, with the blackbox exporter's meaning, so the alerts and dashboard queries
users already have for blackbox targets work unchanged: checked on a real Prometheus."""

from __future__ import annotations

import pytest
import requests
import yaml

from conftest import poll_until_equal, set_chaos, value
from promstack import Prometheus

SIGNING_KEY = b"b" * 32  # one factory verifies both simulators' pizzas

# As blackbox users write it (e.g. the awesome-prometheus-alerts "BlackboxProbeFailed" rule).
BLACKBOX_RULES = {"groups": [{"name": "blackbox", "rules": [{
    "alert": "BlackboxProbeFailed",
    "expr": "probe_success == 0",
    "for": "0m",
    "labels": {"severity": "critical"},
    "annotations": {"summary": "Blackbox probe failed (instance {{ $labels.instance }})"},
}]}]}


def hostport(url: str) -> str:
    return url.split("//", 1)[1]


@pytest.fixture
def fleet(make_simulator, processes, tmp_path):
    """A healthy and a failing (factory chaos) service, and a fleet-mode exporter allowing both."""
    healthy, failing = (make_simulator(signing_key=SIGNING_KEY) for _ in range(2))
    set_chaos(failing, "fail")
    modules = tmp_path / "modules.yml"
    modules.write_text(yaml.safe_dump({
        "modules": {"default": {"factory_url": healthy.factory_url,
                                "password_env": "PIZZA_PROBE_PASSWORD", "min_interval": "0s"}},
        "targets": [healthy.service_url, failing.service_url],
    }))
    exporter = processes.start("serve", "--config.file", str(modules),
                               env={"PIZZA_PROBE_PASSWORD": "diner"})
    return exporter, healthy, failing


def test_probe_answers_the_blackbox_names_with_their_meaning(fleet):
    exporter, healthy, failing = fleet
    for sim, success in ((healthy, 1), (failing, 0)):
        answer = requests.get(exporter.url + "/probe", params={"target": sim.service_url},
                              timeout=30)
        assert answer.status_code == 200, answer.text
        assert value(answer.text, "probe_success") == success
        assert value(answer.text, "pizza_probe_success") == success
        duration = value(answer.text, "probe_duration_seconds")
        assert duration is not None and duration > 0
        assert duration == value(answer.text, "pizza_probe_duration_seconds")


def test_a_blackbox_alert_and_dashboard_queries_work_unchanged_on_prometheus(fleet, tmp_path):
    exporter, healthy, failing = fleet
    rules = tmp_path / "blackbox.rules.yml"
    rules.write_text(yaml.safe_dump(BLACKBOX_RULES))
    # the blackbox exporter's documented multi-target job, pointed at our exporter
    job = {
        "job_name": "blackbox", "metrics_path": "/probe", "params": {"module": ["default"]},
        "scrape_interval": "1s", "scrape_timeout": "1s",
        "static_configs": [{"targets": [healthy.service_url, failing.service_url]}],
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"source_labels": ["__param_target"], "target_label": "instance"},
            {"target_label": "__address__", "replacement": hostport(exporter.url)},
        ],
    }
    prometheus = Prometheus(tmp_path, {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [job],
    })
    try:
        def observe() -> dict:
            def by_instance(expr: str) -> list:
                return sorted((r["metric"]["instance"], r["value"][1])
                              for r in prometheus.query(expr))
            firing = sorted(a["labels"]["instance"] for a in prometheus.alerts("BlackboxProbeFailed")
                            if a["state"] == "firing")
            return {
                "firing": firing,
                "avg_success": by_instance("avg_over_time(probe_success[5m])"),
                "has_duration": by_instance("probe_duration_seconds > bool 0"),
                "same_as_ours": by_instance("probe_success == bool on(instance, job) "
                                            "pizza_probe_success"),
            }

        expected = {
            "firing": [failing.service_url],
            "avg_success": sorted([(healthy.service_url, "1"), (failing.service_url, "0")]),
            "has_duration": sorted([(healthy.service_url, "1"), (failing.service_url, "1")]),
            "same_as_ours": sorted([(healthy.service_url, "1"), (failing.service_url, "1")]),
        }
        poll_until_equal(observe, expected)
        # a blackbox dashboard's latency and availability panels
        assert prometheus.query('max_over_time(probe_duration_seconds{job="blackbox"}[1m])')
        assert len(prometheus.query("probe_success")) == 2
    finally:
        prometheus.stop()
    assert failing.requests[("POST", "/api/order")] >= 1  # its alert came from real journeys
