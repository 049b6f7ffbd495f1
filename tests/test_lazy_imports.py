"""`serve` imports only what it runs (issue 17): a real `serve` in its own process, once it
answers /healthz and has run a journey, has not loaded the simulator, the demo, PyYAML or
cryptography, nor requests' character-set detector, which it never calls, nor the sidecar's
engine, web pages, incident records or webhook parser; with a modules file
it loads PyYAML, which reads it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

NOT_FOR_SERVE = ("exporter.simulator", "exporter.demo", "exporter.simkeys", "yaml",
                 "cryptography", "charset_normalizer",
                 # the sidecar's engine, pages, records and webhook: `serve` runs none of them
                 "exporter.sidecar_process", "exporter.sidecar", "exporter.sidecar_web",
                 "exporter.incident", "exporter.postmortem", "exporter.alertmanager",
                 "statistics")

# Runs `pizza-probe serve` in the main thread; a thread waits for /healthz, writes the loaded
# modules' names and stops serve with SIGTERM, as a user would.
SERVE_AND_LIST = textwrap.dedent("""
    import http.client, json, os, signal, sys, threading, time

    def watch(port, out):
        ends = time.monotonic() + 20
        while time.monotonic() < ends:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                connection.request("GET", "/metrics")
                if b"pizza_probe_duration_seconds_count" in connection.getresponse().read():
                    break
            except OSError:
                pass
            time.sleep(0.05)
        with open(out, "w") as handle:
            json.dump(sorted(name for name, module in sys.modules.items() if module), handle)
        os.kill(os.getpid(), signal.SIGTERM)

    port, out, *args = sys.argv[1:]
    threading.Thread(target=watch, args=(int(port), out), daemon=True).start()
    from exporter.cli import main
    sys.exit(main(["serve", "--listen", f"127.0.0.1:{port}", "--log.level", "error", *args]))
""")


def serve_modules(tmp_path, *args: str) -> list[str]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "modules.json"
    done = subprocess.run([sys.executable, "-c", SERVE_AND_LIST, str(port), str(out), *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text())


@pytest.fixture
def unanswered_url():
    return "http://127.0.0.1:9"  # nothing listens: the journey fails at once, as journeys may


def test_serve_loads_neither_the_simulator_nor_yaml_nor_cryptography(tmp_path, unanswered_url):
    loaded = serve_modules(tmp_path, "--service-url", unanswered_url, "--interval", "1h")
    assert "exporter.journey" in loaded  # it did run
    assert [name for name in NOT_FOR_SERVE if name in loaded] == []


def test_serve_with_a_modules_file_loads_yaml_to_read_it(tmp_path, unanswered_url):
    config = tmp_path / "modules.yml"
    config.write_text("modules:\n  default:\n    timeout: 5s\n")
    loaded = serve_modules(tmp_path, "--config.file", str(config), "--service-url",
                           unanswered_url, "--interval", "1h")
    assert "yaml" in loaded
    assert [name for name in NOT_FOR_SERVE if name != "yaml" and name in loaded] == []
