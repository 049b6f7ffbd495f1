"""Incident records are never lost or wrong: a restart closes what it left open, an alert's
incident is on disk before its journey, ids do not collide across processes, a full disk leaves
no temporary file, a read-only directory stops the start. Real processes, real files, a real
tmpfs (the tests run as root)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
from prometheus_client import CollectorRegistry

from exporter.config import ProbeConfig
from exporter.incident import Incident
from exporter.records import IncidentStore
from exporter.recovery import LinkPolicy
from exporter.result import JourneyResult, StepResult
from exporter.sidecar import RecoveryMetrics, Sidecar, SidecarOptions

from conftest import poll, set_chaos, value
from conftest import target_args as target
from processes import CLEAN_ENV, assert_one_line_error, pizza_probe

ID = re.compile(r"incident-\d{8}T\d{6}Z-[0-9a-f]{8}")


def records(directory) -> dict[str, dict]:
    """{id: record} of the JSON records in ``directory``."""
    out = {}
    for path in directory.glob("*.json"):
        data = json.loads(path.read_text())
        out[data["id"]] = data
    return out


@pytest.fixture
def tmpfs(tmp_path):
    """Mount small tmpfs file systems (``mount(name, size)``); all are unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = []

    def mount(name: str, size: str = "64k", *options: str):
        path = tmp_path / name
        path.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       check=True, capture_output=True, timeout=10)
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        if subprocess.run(["umount", str(path)], capture_output=True, timeout=10).returncode:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=10)


def fill(directory) -> None:
    """Write zeros into ``directory`` until its file system is full."""
    with open(directory / "filler", "wb", buffering=0) as handle:
        for _ in range(100_000):  # 4 KiB each: far more than a small tmpfs holds
            try:
                handle.write(b"\0" * 4096)
            except OSError:
                break
        else:
            raise AssertionError("the file system never filled up")
    assert os.statvfs(directory).f_bavail == 0, "the file system is full"


# --- restart: an open incident is closed as abandoned --------------------------------------------

def test_kill_9_and_restart_closes_the_open_incident_as_abandoned(make_simulator, processes,
                                                                    tmp_path):
    sim = make_simulator()
    incidents = tmp_path / "incidents"
    exporter = processes.start("serve", *target(sim), "--interval", "0.2")
    set_chaos(sim, "fail")
    # a dry run never heals: its incident stays open, as one cut short by a crash does
    first = processes.start("sidecar", *target(sim), "--exporter-url", exporter.url,
                            "--incident-dir", str(incidents), "--dry-run")
    (old,) = poll(lambda: [r for r in records(incidents).values() if r["status"] == "open"],
                  timeout=20, what="an open incident on disk")
    first.stop(signal.SIGKILL)
    assert first.proc.returncode == -signal.SIGKILL

    second = processes.start("sidecar", *target(sim), "--exporter-url", exporter.url,
                             "--incident-dir", str(incidents), "--cooldown", "1s")
    abandoned = poll(lambda: (r := records(incidents)[old["id"]]) and r["status"] == "abandoned"
                     and r, timeout=10, what="the old record closed as abandoned")
    assert abandoned["resolution"].startswith("abandoned at restart")
    assert abandoned["timeline"][-1]["event"].startswith("incident abandoned at restart")
    assert abandoned["failed_orders"] == old["failed_orders"] and abandoned["chaos_mode"] == "fail"
    assert abandoned["timeline"][:len(old["timeline"])] == old["timeline"]
    markdown = (incidents / f"{old['id']}.md").read_text()
    assert "Status: abandoned, abandoned at restart" in markdown

    # the failing shop opens a new incident, with a record of its own, which the new sidecar heals
    poll(lambda: sim.factory.resolutions == 1, timeout=20, what="the new sidecar to heal")
    new = poll(lambda: [r for i, r in records(incidents).items()
                        if i != old["id"] and r["status"] == "resolved"],
               timeout=20, what="the new incident's resolved record")
    assert len(new) == 1 and ID.fullmatch(new[0]["id"])
    assert [r["status"] for r in records(incidents).values()].count("open") == 0
    assert value(second.metrics(), "pizza_recovery_incidents_total") == 1
    assert "incident abandoned at restart" in second.logs()


def test_reconcile_leaves_closed_and_foreign_files_alone(tmp_path):
    store = IncidentStore(str(tmp_path))
    done = Incident(id="incident-20261129T101500Z-0000abcd", opened_at=time.time(),
                    detected_by="probe", status="resolved", resolution="verified")
    store.save(done)
    (tmp_path / "notes.json").write_text("[1, 2")
    before = (tmp_path / f"{done.id}.json").read_text()
    assert IncidentStore(str(tmp_path)).reconcile(time.time()) == []
    assert (tmp_path / f"{done.id}.json").read_text() == before
    assert (tmp_path / "notes.json").read_text() == "[1, 2"


# --- an alert's incident is on disk before its journey -------------------------------------------

def test_an_alert_incident_is_written_before_its_journey_ends(tmp_path):
    release, started = threading.Event(), threading.Event()

    def blocking_journey(config) -> JourneyResult:
        started.set()
        release.wait(30)
        return JourneyResult(True, time.time(), 0.01, (StepResult("order", True, 0.01, 200),))

    config = ProbeConfig(service_url="http://127.0.0.1:9", factory_url="http://127.0.0.1:9")
    sidecar = Sidecar(config, LinkPolicy.default(config.factory_url), SidecarOptions(cooldown=0),
                      RecoveryMetrics(CollectorRegistry()), IncidentStore(str(tmp_path)),
                      journey=blocking_journey)
    worker = threading.Thread(target=sidecar.step, args=(("alert", "firing"),), daemon=True)
    worker.start()
    try:
        assert started.wait(10), "the sidecar placed its confirming order"
        (record,) = poll(lambda: list(records(tmp_path).values()), timeout=5,
                         what="the record on disk while the journey runs")
        assert record["status"] == "open" and record["detected_by"] == "alert"
        assert record["alert_fired_at"] is not None
        assert (tmp_path / f"{record['id']}.md").exists()
    finally:
        release.set()
        worker.join(10)
    assert records(tmp_path)[record["id"]]["status"] == "resolved"


# --- ids unique across processes; no record overwritten ------------------------------------------

def test_four_concurrent_once_recover_write_four_records(simulator, tmp_path):
    set_chaos(simulator, "fail")
    incidents = tmp_path / "incidents"
    # dry run: none ends the chaos, so all four see it, open an incident and record it
    procs = [subprocess.Popen([sys.executable, "-m", "exporter", "once", "--recover", "--dry-run",
                               *target(simulator), "--incident-dir", str(incidents)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=CLEAN_ENV)
             for _ in range(4)]
    outputs = []
    for proc in procs:
        try:
            outputs.append(proc.communicate(timeout=60))
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("once --recover did not finish within 60s")
    assert [p.returncode for p in procs] == [1] * 4, outputs
    found = records(incidents)
    assert len(found) == 4, sorted(found)
    assert all(ID.fullmatch(i) for i in found)
    assert len(list(incidents.glob("*.md"))) == 4
    for stdout, _ in outputs:
        (line,) = [line for line in stdout.splitlines() if line.startswith("incident record:")]
        assert line.removeprefix("incident record: ").removesuffix(".md").endswith(
            tuple(found)), line


def test_a_store_never_overwrites_another_incidents_record(tmp_path):
    mine, theirs = IncidentStore(str(tmp_path)), IncidentStore(str(tmp_path))
    now = time.time()
    first = Incident(id="incident-20261129T101500Z-deadbeef", opened_at=now, detected_by="probe",
                     chaos_mode="fail")
    other = Incident(id=first.id, opened_at=now, detected_by="alert", chaos_mode="badjwt")
    assert mine.save(first)
    assert not theirs.save(other), "another store's record with that id is not replaced"
    assert records(tmp_path)[first.id]["chaos_mode"] == "fail"
    assert theirs.path(other) is None
    first.failed_orders = 3
    assert mine.save(first), "a store replaces its own record"
    assert records(tmp_path)[first.id]["failed_orders"] == 3
    assert not list(tmp_path.glob(".tmp-*"))


# --- a full disk, a read-only directory ----------------------------------------------------------

def test_full_disk_leaves_no_temp_file_and_logs_one_line(simulator, tmpfs):
    full = tmpfs("full", "64k")
    fill(full)
    set_chaos(simulator, "fail")
    out = pizza_probe("once", "--recover", "--dry-run", *target(simulator),
                      "--incident-dir", str(full), timeout=60)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    errors = [line for line in out.stderr.splitlines() if "cannot write incident record" in line]
    assert len(errors) == 1, out.stderr
    assert "No space left on device" in errors[0]
    assert sorted(p.name for p in full.iterdir()) == ["filler"], "no .tmp-* file, no record"
    assert "incident record: NOT written" in out.stdout


@pytest.mark.parametrize("command", [
    ["sidecar", "--listen", "127.0.0.1:0", "--exporter-url", ""],
    ["once", "--recover", "--service-url", "http://127.0.0.1:9"],
    ["demo", "--once", "--listen", "127.0.0.1:0", "--sidecar-listen", "127.0.0.1:0"],
])
def test_a_read_only_incident_dir_stops_the_start(command, tmpfs):
    readonly = tmpfs("readonly", "64k")
    subprocess.run(["mount", "-o", "remount,ro", str(readonly)], check=True, capture_output=True,
                   timeout=10)
    out = pizza_probe(*command, "--incident-dir", str(readonly), timeout=30)
    assert_one_line_error(out, "incident-dir: ", str(readonly), "Read-only file system")
    assert list(readonly.iterdir()) == []
