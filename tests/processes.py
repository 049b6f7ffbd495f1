"""Running pizza-probe commands as real processes in tests."""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys

import pytest

from conftest import http_get, poll


class Managed:
    """A child process whose combined output goes to ``log_path``; ``stop()`` ends it."""

    def __init__(self, args: list[str], log_path, env: dict | None = None) -> None:
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def logs(self) -> str:
        return self.log_path.read_text()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Process(Managed):
    """A ``python -m exporter <command>`` process listening on an ephemeral loopback port."""

    def __init__(self, log_path, command: str, *args: str, env: dict | None = None) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("PIZZA_")}
        full_env.update(env or {})
        super().__init__(
            [sys.executable, "-m", "exporter", command, "--listen", "127.0.0.1:0", *args],
            log_path, full_env,
        )
        match = poll(lambda: self._address(), timeout=15, what=f"{command} to listen")
        self.url = f"http://127.0.0.1:{match.group(1)}"

    def _address(self):
        if self.proc.poll() is not None:
            pytest.fail(f"process exited early: {self.logs()}")  # not retried by poll
        return re.search(r"msg=listening address=127\.0\.0\.1:(\d+)", self.logs())

    def metrics(self) -> str:
        return http_get(self.url + "/metrics", timeout=2)[1]


class Processes:
    def __init__(self, tmp_path) -> None:
        self.tmp_path = tmp_path
        self.started: list[Process] = []

    def start(self, command: str, *args: str, env: dict | None = None) -> Process:
        path = self.tmp_path / f"{command}-{len(self.started)}.log"
        process = Process(path, command, *args, env=env)
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.started:
            process.stop()


# --- one-shot commands: a hang fails the test, a read without limit cannot eat the machine ----

CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("PIZZA_")}


def limit_memory() -> None:
    """In the child: 2 GiB of address space, so a read without limit fails rather than
    taking the machine down."""
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def pizza_probe(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run ``python -m exporter ARGS``; a hang fails the test at ``timeout``."""
    try:
        return subprocess.run([sys.executable, "-m", "exporter", *args], capture_output=True,
                              text=True, timeout=timeout, env=CLEAN_ENV, stdin=subprocess.DEVNULL,
                              preexec_fn=limit_memory)
    except subprocess.TimeoutExpired:
        pytest.fail(f"pizza-probe {' '.join(args)} did not finish within {timeout}s")


def assert_one_line_error(out: subprocess.CompletedProcess, *fragments: str) -> None:
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pizza-probe: error: "), out.stderr
    for fragment in fragments:
        assert fragment in lines[0], out.stderr
    assert "Traceback" not in out.stdout + out.stderr
