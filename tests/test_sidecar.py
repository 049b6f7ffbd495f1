"""The sidecar as a real process beside a real exporter, against the simulator."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from exporter.config import ProbeConfig
from exporter.journey import run_journey

from conftest import poll, set_chaos, value
from conftest import target_args as target


@pytest.mark.parametrize("mode", ["fail", "throttle", "badjwt"])
def test_each_chaos_mode_is_healed_once_and_recorded(mode, make_simulator, processes, tmp_path):
    sim = make_simulator(throttle_delay=0.5)
    incidents = tmp_path / "incidents"
    timing = ["--interval", "0.2", "--slow-threshold", "0.3"]
    exporter = processes.start("serve", *target(sim), *timing)
    sidecar = processes.start("sidecar", *target(sim), "--slow-threshold", "0.3",
                              "--exporter-url", exporter.url,
                              "--incident-dir", str(incidents), "--cooldown", "1s")
    poll(lambda: value(exporter.metrics(), "pizza_probe_orders_total", result="success") >= 1,
         what="a good journey")
    set_chaos(sim, mode)
    poll(lambda: sim.factory.resolutions == 1 and sim.factory.mode is None, timeout=20,
         what="the sidecar to end the chaos")
    records = poll(lambda: [json.loads(p.read_text()) for p in incidents.glob("*.json")
                            if json.loads(p.read_text())["status"] == "resolved"],
                   timeout=20, what="a resolved incident record")
    assert sim.factory.link_calls == 1, "the link is called exactly once per incident"
    (record,) = records
    expected = {"fail": "fail", "throttle": "throttle", "badjwt": "badjwt"}[mode]
    assert record["chaos_mode"] == expected
    assert record["link_answer"] == "resolved" and record["detected_by"] == "probe"
    assert record["first_failure_at"] <= record["link_called_at"] <= record["first_good_order_at"]
    assert record["failed_orders"] >= 1 and record["duration_seconds"] > 0
    # docs/timing.md: from the first failed order's start to its end, and to the good order's end
    assert record["time_to_recover_seconds"] == record["duration_seconds"]
    assert 0 < record["time_to_detect_seconds"] <= record["time_to_recover_seconds"]
    assert record["first_failure_at"] <= record["first_failure_ended_at"] <= record["link_called_at"]
    assert [a["result"] for a in record["attempts"]] == ["resolved"]
    markdown = (incidents / f"{record['id']}.md").read_text()
    for heading in ("## Summary", "## Detection", "## Impact", "## Timeline (UTC)", "## Response",
                    "## Root cause", "## Resolution"):
        assert heading in markdown
    assert f"observed by the probe: {expected}" in markdown

    metrics = poll(lambda: (m := sidecar.metrics()) and
                   value(m, "pizza_recovery_duration_seconds_count") == 1 and m,
                   what="the recovery to be measured")
    assert value(metrics, "pizza_recovery_attempts_total", result="resolved") == 1
    assert value(metrics, "pizza_recovery_incidents_total") == 1
    assert value(metrics, "pizza_recovery_last_success_timestamp_seconds") > 0
    assert value(metrics, "pizza_recovery_incident_open") == 0
    config = ProbeConfig(service_url=sim.service_url, factory_url=sim.factory_url)
    assert run_journey(config).success, "the next order is good"

    # the link's key and fix code appear nowhere we write
    written = (sidecar.logs() + exporter.logs() + metrics + exporter.metrics()
               + "".join(p.read_text() for p in incidents.iterdir()))
    assert "api/support/***/report/***" in written
    for secret in [sim.factory.api_key, *sim.factory.fix_codes]:
        assert secret not in written


def test_once_recover_heals_and_writes_the_incident(simulator, tmp_path):
    set_chaos(simulator, "fail")
    out = subprocess.run(
        [sys.executable, "-m", "exporter", "once", "--recover", *target(simulator),
         "--incident-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "-> resolved" in out.stdout and "verified, a fresh synthetic order succeeded" in out.stdout
    assert simulator.factory.resolutions == 1 and simulator.factory.mode is None
    (record,) = [json.loads(p.read_text()) for p in tmp_path.glob("*.json")]
    assert record["status"] == "resolved" and record["chaos_mode"] == "fail"
    for secret in [simulator.factory.api_key, *simulator.factory.fix_codes]:
        assert secret not in out.stdout + out.stderr


def test_once_recover_dry_run_calls_nothing(simulator):
    set_chaos(simulator, "badjwt")
    out = subprocess.run(
        [sys.executable, "-m", "exporter", "once", "--recover", "--dry-run", *target(simulator)],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "did not call" in out.stdout and "dry_run" in out.stdout
    assert simulator.factory.link_calls == 0 and simulator.factory.mode == "badjwt"
