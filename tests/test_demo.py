"""``pizza-probe demo --once`` and ``pizza-probe simulate`` as real processes."""

from __future__ import annotations

import re
import subprocess
import sys

import requests

from conftest import poll


def test_demo_once_detects_and_recovers_every_chaos_mode(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "exporter", "demo", "--once", "--interval", "0.3",
         "--throttle-delay", "1", "--listen", "127.0.0.1:0", "--sidecar-listen", "127.0.0.1:0",
         "--incident-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert re.search(r"scrape\s+http://127\.0\.0\.1:\d+/metrics\s+\(exporter\)", text)
    assert re.search(r"scrape\s+http://127\.0\.0\.1:\d+/metrics\s+\(sidecar\)", text)
    for mode, failure in (("fail", "order factory_error"), ("throttle", "order slow"),
                          ("badjwt", "verify bad_jwt")):
        assert f"chaos started: {mode}" in text
        assert f"first failed order: {failure} (chaos link seen); detected in" in text
        assert re.search(rf"drill\s+{mode}: detected in [\d.]+s, recovered in [\d.]+s", text)
        assert re.search(rf"^{mode}\s+yes\s+yes\s+[\d.]+s\s+[\d.]+s$", text, re.M), mode
    assert text.count("recovery link called") == 3 and text.count("-> resolved") == 3
    assert len(list(tmp_path.glob("*.md"))) == 3
    assert "Traceback" not in out.stderr


def test_demo_bad_listen_address_is_a_usage_error():
    out = subprocess.run([sys.executable, "-m", "exporter", "demo", "--once", "--listen", "x"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and out.stderr.startswith("pizza-probe: error:")


def test_simulate_serves_the_service_and_switches_chaos_on_schedule(processes):
    sim = processes.start("simulate", "--factory-listen", "127.0.0.1:0", "--chaos-every", "0.3s",
                          "--chaos-modes", "badjwt", "--vendor-key", "vendor-test-key",
                          "--link-key", "reportUrl", "--franchise-shape", "old")
    factory = poll(lambda: re.search(r"factory\s+(http://127\.0\.0\.1:\d+)", sim.logs()),
                   what="the factory URL").group(1)
    assert "vendor-test-key" in sim.logs()
    def state():
        return requests.get(f"{factory}/api/vendor/chaos", timeout=5,
                            headers={"Authorization": "Bearer vendor-test-key"}).json()
    poll(lambda: state()["chaos"] == "badjwt", what="the scheduled chaos")
    out = subprocess.run([sys.executable, "-m", "exporter", "once", "--json", "--service-url", sim.url,
                          "--factory-url", factory], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and '"reason": "bad_jwt"' in out.stdout
    assert '"chaos_link_key": "reportUrl"' in out.stdout
    assert requests.get(f"{sim.url}/api/franchise", timeout=5).json()[0]["stores"]  # the old shape
    assert requests.put(f"{factory}/api/vendor/chaos/none", timeout=5).status_code == 401
    assert "chaos started" in sim.logs() and "Traceback" not in sim.logs()


def test_simulate_rejects_unknown_modes():
    out = subprocess.run([sys.executable, "-m", "exporter", "simulate", "--chaos-modes", "fail,melt"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "chaos-modes" in out.stderr


def test_demo_once_heals_every_mode_of_a_factory_behind_tls():
    out = subprocess.run(
        [sys.executable, "-m", "exporter", "demo", "--once", "--factory-tls", "--interval", "0.3",
         "--throttle-delay", "1", "--listen", "127.0.0.1:0", "--sidecar-listen", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"\(factory https://127\.0\.0\.1:\d+\)", out.stdout)
    assert re.search(r"CA file\s+\S+ca\.pem", out.stdout)
    assert out.stdout.count("-> resolved") == 3 and "Traceback" not in out.stderr


def test_simulate_factory_tls_with_its_ca_for_once(processes, tmp_path):
    sim = processes.start("simulate", "--factory-listen", "127.0.0.1:0", "--factory-tls",
                          "--tls-dir", str(tmp_path / "tls"))
    factory = poll(lambda: re.search(r"factory\s+(https://127\.0\.0\.1:\d+)", sim.logs()),
                   what="the factory URL").group(1)
    ca_file = str(tmp_path / "tls" / "ca.pem")
    assert f"CA file     {ca_file}" in sim.logs()
    out = subprocess.run([sys.executable, "-m", "exporter", "once", "--service-url", sim.url,
                          "--ca-file", ca_file], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"factory: {factory} (named by the service at GET /api/docs)" in out.stdout


def test_simulate_factory_unreachable_answers_fetch_failed(processes):
    sim = processes.start("simulate", "--factory-listen", "127.0.0.1:0", "--factory-unreachable")
    out = subprocess.run([sys.executable, "-m", "exporter", "once", "--json", "--service-url",
                          sim.url], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and '"reason": "factory_unreachable"' in out.stdout, out.stdout
