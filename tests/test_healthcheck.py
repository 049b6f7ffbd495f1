"""``pizza-probe healthcheck`` with no URL follows the command it runs beside.

The process table is a directory laid out like /proc (cmdline and environ NUL-separated, stat
with the parent's pid): the real /proc of a container is exercised by tests/test_image.py."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading

import pytest

from exporter.cli import cli
from exporter.healthcheck import (
    DEFAULT_URL,
    HealthcheckError,
    check,
    find_command,
    own_url,
    pizza_args,
    read_process,
    url_for,
)

from conftest import poll
from processes import CLEAN_ENV


def fake_process(proc, pid: int, argv: list[str], env: dict[str, str] | None = None,
                 ppid: int = 0) -> None:
    folder = proc / str(pid)
    folder.mkdir(parents=True)
    (folder / "cmdline").write_bytes(b"".join(arg.encode() + b"\0" for arg in argv))
    (folder / "environ").write_bytes(b"".join(f"{k}={v}".encode() + b"\0"
                                              for k, v in (env or {}).items()))
    (folder / "stat").write_text(f"{pid} ({os.path.basename(argv[0])[:15]}) S {ppid} 1 1 0")


SCRIPT = ["/opt/venv/bin/python3", "/opt/venv/bin/pizza-probe"]  # a console script as PID 1


@pytest.mark.parametrize("args, env, url", [
    (["serve"], {}, "http://127.0.0.1:9816/healthz"),
    (["serve", "--listen", "127.0.0.2:9000"], {}, "http://127.0.0.2:9000/healthz"),
    (["serve", "--web.listen-address=:9100"], {}, "http://127.0.0.1:9100/healthz"),
    (["serve"], {"PIZZA_PROBE_LISTEN": ":9200"}, "http://127.0.0.1:9200/healthz"),
    (["serve", "--listen", ":9300"], {"PIZZA_PROBE_LISTEN": ":9200"},
     "http://127.0.0.1:9300/healthz"),  # the flag wins over the variable, as in the command
    (["serve", "--listen", "[::]:9816"], {}, "http://[::1]:9816/healthz"),
    (["serve", "--listen", "[::1]:9816"], {}, "http://[::1]:9816/healthz"),
    (["sidecar", "--exporter-url", "", "--incident-dir", "/x"], {},
     "http://127.0.0.1:9817/healthz"),
    (["sidecar"], {"PIZZA_RECOVERY_LISTEN": "localhost:9900"}, "http://localhost:9900/healthz"),
    (["simulate", "--listen", ":3000", "--factory-listen", "simulator:3001"], {},
     "http://127.0.0.1:3000/"),
    (["simulate"], {}, "http://127.0.0.1:3000/"),
    (["demo", "--listen", "127.0.0.1:9826"], {}, "http://127.0.0.1:9826/healthz"),
])
def test_url_follows_the_command_its_flags_and_variables(args, env, url):
    assert url_for(cli, args, env) == url


def test_once_serves_nothing_and_unknown_or_ephemeral_ones_are_one_line_errors():
    assert url_for(cli, ["once", "--json"], {}) is None
    with pytest.raises(HealthcheckError, match="unknown pizza-probe command 'bake'"):
        url_for(cli, ["bake"], {})
    with pytest.raises(HealthcheckError, match="port the system picked"):
        url_for(cli, ["serve", "--listen", "127.0.0.1:0"], {})
    with pytest.raises(HealthcheckError, match=r"^cannot read pizza-probe serve's options: "
                                                r"Invalid value for '--listen'"):
        url_for(cli, ["serve"], {"PIZZA_PROBE_LISTEN": "nowhere"})


def test_the_commands_environment_is_read_and_ours_restored(monkeypatch):
    monkeypatch.setenv("PIZZA_RECOVERY_LISTEN", ":1111")
    assert url_for(cli, ["sidecar"], {"PIZZA_RECOVERY_LISTEN": ":2222"}).endswith(":2222/healthz")
    assert os.environ["PIZZA_RECOVERY_LISTEN"] == ":1111"


@pytest.mark.parametrize("argv, args", [
    (["pizza-probe", "serve"], ["serve"]),
    ([*SCRIPT, "sidecar", "--listen", ":1"], ["sidecar", "--listen", ":1"]),
    (["python", "-m", "exporter", "simulate"], ["simulate"]),
    (["/sbin/docker-init", "--", "pizza-probe", "serve"], ["serve"]),
    (["sh", "-c", "pizza-probe serve"], None),
    (["python3", "-m", "http.server"], None),
])
def test_pizza_args(argv, args):
    assert pizza_args(argv) == args


def test_pid_1_is_the_command(tmp_path):
    fake_process(tmp_path, 1, [*SCRIPT, "sidecar", "--exporter-url", ""],
                 {"PIZZA_RECOVERY_LISTEN": "127.0.0.1:9999", "PIZZA_PROBE_PASSWORD": "s3cret"})
    fake_process(tmp_path, 7, [*SCRIPT, "healthcheck"], ppid=0)  # ourselves, via docker exec
    pid, args, env = find_command(str(tmp_path), own_pid=7)
    assert (pid, args) == (1, ["sidecar", "--exporter-url", ""])
    assert env["PIZZA_RECOVERY_LISTEN"] == "127.0.0.1:9999"
    assert own_url(cli, str(tmp_path)) == "http://127.0.0.1:9999/healthz"


def test_behind_a_shell_or_an_init_the_child_of_pid_1_is_found(tmp_path):
    fake_process(tmp_path, 1, ["/bin/sh", "-c", "exec-later pizza-probe serve --listen :9000"])
    fake_process(tmp_path, 5, ["/usr/bin/sleep", "100"], ppid=1)
    fake_process(tmp_path, 6, [*SCRIPT, "serve", "--listen", ":9000"], ppid=1)
    fake_process(tmp_path, 9, [*SCRIPT, "simulate", "--listen", ":3000"], ppid=6)  # a grandchild
    assert own_url(cli, str(tmp_path)) == "http://127.0.0.1:9000/healthz"


def test_no_pizza_probe_process_means_the_exporters_default_address(tmp_path):
    fake_process(tmp_path, 1, ["/sbin/init"])
    assert own_url(cli, str(tmp_path)) == DEFAULT_URL
    assert own_url(cli, str(tmp_path / "no-proc-here")) == DEFAULT_URL


def test_read_process_keeps_an_empty_last_argument_from_the_real_proc():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", ""],
                             env={"PIZZA_PROBE_LISTEN": ":4242", "PATH": os.environ["PATH"]})
    try:
        argv, env = poll(lambda: read_process(child.pid), timeout=10, what="the child in /proc")
        assert argv[-2:] == ["import time; time.sleep(30)", ""]
        assert env == {"PIZZA_PROBE_LISTEN": ":4242", "PATH": os.environ["PATH"]}
    finally:
        child.kill()
        child.wait()



# --- what an unhealthy answer says: the URL (redacted) and a short cause, by exception type ----

def test_a_refused_connection_says_the_url_and_the_cause():
    with socket.socket() as sock:  # a port nobody listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/healthz"
        out = subprocess.run([sys.executable, "-m", "exporter", "healthcheck", url],
                             capture_output=True, text=True, timeout=30, env=CLEAN_ENV)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr == f"unhealthy: {url}: connection refused\n"  # was "unhealthy: ConnectionError"


def test_no_answer_and_a_bad_status_each_say_what_happened():
    with socket.socket() as silent:  # accepts (the kernel's backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/healthz"
        assert check(url, 0.3) == f"{url}: no answer within 0.3s"

    class Unavailable(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Unavailable)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        assert check(base + "/healthz", 5) == f"{base}/healthz: HTTP 503"
        # a query (a token, say) is never shown
        assert check(base + "/healthz?token=s3cret", 5) == f"{base}/healthz?***: HTTP 503"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
