"""The metric names are a public contract; the exposition passes promtool."""

import shutil
import subprocess

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from exporter import __version__
from exporter.metrics import STEP_BUCKETS, ProbeMetrics
from exporter.redact import RecoveryLink
from exporter.result import JourneyResult, StepResult

from conftest import value


def ok_result(t=1_700_000_000.0):
    steps = tuple(StepResult(n, True, 0.01, 200) for n in ("health", "login", "order"))
    return JourneyResult(True, t, 0.05, steps, status=200, target_version="v1")


def failed_result(t=1_700_000_100.0, link=True):
    steps = (StepResult("health", True, 0.01, 200), StepResult("order", False, 0.02, 500, "factory_error"))
    return JourneyResult(False, t, 0.04, steps, failed_step="order", reason="factory_error", status=500,
                         chaos_link=RecoveryLink("https://f/api/support/KEYKEY/report/CODECODE",
                                                 "reportUrl") if link else None,
                         target_version="v2")


def exposition(metrics_registry):
    return generate_latest(metrics_registry).decode()


@pytest.fixture
def registry():
    return CollectorRegistry()


def test_both_order_series_exist_from_start(registry):
    ProbeMetrics(registry)
    text = exposition(registry)
    assert value(text, "pizza_probe_orders_total", result="success") == 0
    assert value(text, "pizza_probe_orders_total", result="failure") == 0
    assert value(text, "pizza_probe_build_info", version=__version__) == 1


def test_record_moves_every_metric(registry):
    metrics = ProbeMetrics(registry)
    metrics.record(ok_result())
    metrics.record(failed_result())
    metrics.record(failed_result(t=1_700_000_200.0, link=False))
    text = exposition(registry)
    assert value(text, "pizza_probe_orders_total", result="success") == 1
    assert value(text, "pizza_probe_orders_total", result="failure") == 2
    assert value(text, "pizza_probe_failures_total", step="order", reason="factory_error") == 2
    assert value(text, "pizza_probe_step_duration_seconds_count", step="health") == 3
    assert value(text, "pizza_probe_step_duration_seconds_count", step="login") == 1
    assert value(text, "pizza_probe_duration_seconds_count") == 3
    assert value(text, "pizza_probe_success") == 0
    assert value(text, "pizza_probe_consecutive_failures") == 2
    assert value(text, "pizza_probe_chaos_link_seen") == 0
    assert value(text, "pizza_probe_last_run_timestamp_seconds") == 1_700_000_200.0
    assert value(text, "pizza_probe_last_success_timestamp_seconds") == 1_700_000_000.0
    assert value(text, "pizza_probe_target_info", version="v2", factory="") == 1
    assert value(text, "pizza_probe_target_info", version="v1", factory="") is None
    metrics.record(failed_result(t=1_700_000_300.0))
    text = exposition(registry)
    assert value(text, "pizza_probe_chaos_link_seen") == 1
    metrics.record(ok_result(t=1_700_000_400.0))
    text = exposition(registry)
    assert value(text, "pizza_probe_consecutive_failures") == 0
    assert value(text, "pizza_probe_success") == 1


def test_no_label_holds_a_url_or_secret(registry):
    metrics = ProbeMetrics(registry)
    metrics.record(failed_result())
    text = exposition(registry)
    assert "KEYKEY" not in text and "CODECODE" not in text and "http" not in text


def test_buckets_resolve_5ms_to_60s():
    assert STEP_BUCKETS[0] == 0.005 and STEP_BUCKETS[-1] == 60
    assert any(30 <= b < 32 for b in STEP_BUCKETS) and any(32 < b <= 35 for b in STEP_BUCKETS)


def test_promtool_check_metrics_reports_nothing(registry):
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: run the tests through 'make test', which installs it"
    metrics = ProbeMetrics(registry)
    metrics.record(ok_result())
    metrics.record(failed_result())
    out = subprocess.run([promtool, "check", "metrics"], input=generate_latest(registry),
                         capture_output=True, timeout=30)
    assert out.returncode == 0 and out.stdout.strip() == b"" and out.stderr.strip() == b"", out
