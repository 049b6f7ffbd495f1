"""A password file or modules file that is a device (``/dev/zero``) or a FIFO is refused at
once, at start and at reload, rather than read without end or blocking: real processes, each
with a deadline so a hang fails the test instead of blocking it."""

from __future__ import annotations

import os

import pytest
import requests

from conftest import value
from processes import assert_one_line_error, pizza_probe

# --- secret and modules files: no device, no FIFO, a bounded read --------------------------------

@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return str(path)


@pytest.mark.parametrize("kind", ["zero", "fifo"])
def test_a_password_file_that_is_not_a_regular_file_is_refused(kind, fifo):
    path = "/dev/zero" if kind == "zero" else fifo
    out = pizza_probe("once", "--service-url", "http://127.0.0.1:9", "--password-file", path,
                      timeout=20)
    assert_one_line_error(out, "password-file: ", repr(path), "not a regular file")


def test_a_password_file_larger_than_4_kib_is_refused(tmp_path):
    big = tmp_path / "password"
    big.write_text("x" * 5000)
    out = pizza_probe("once", "--service-url", "http://127.0.0.1:9", "--password-file", str(big))
    assert_one_line_error(out, "password-file: ", "larger than 4096 bytes")
    assert "xxxx" not in out.stderr


@pytest.mark.parametrize("kind", ["zero", "fifo", "modules-fifo"])
def test_a_modules_file_or_its_password_file_that_is_not_regular_is_refused(kind, fifo, tmp_path):
    if kind == "modules-fifo":
        config = fifo
    else:
        path = "/dev/zero" if kind == "zero" else fifo
        config = str(tmp_path / "modules.yml")
        with open(config, "w") as handle:
            handle.write(f"modules:\n  default:\n    password_file: {path}\n")
    out = pizza_probe("serve", "--listen", "127.0.0.1:0", "--config.file", config, timeout=20)
    assert_one_line_error(out, "not a regular file")


def test_reload_of_a_fifo_or_dev_zero_keeps_the_old_modules(processes, tmp_path, fifo):
    password = tmp_path / "password"
    password.write_text("diner\n")
    config = tmp_path / "modules.yml"
    config.write_text(f"modules:\n  default:\n    password_file: {password}\n")
    serve = processes.start("serve", "--config.file", str(config))

    def reload() -> requests.Response:
        try:
            return requests.post(serve.url + "/-/reload", timeout=10)
        except requests.Timeout:
            pytest.fail("the reload hung")

    for broken in ("/dev/zero", fifo):
        config.write_text(f"modules:\n  default:\n    password_file: {broken}\n")
        answer = reload()
        assert answer.status_code == 500 and "not a regular file" in answer.text
    os.replace(fifo, config)  # the modules file itself a FIFO
    answer = reload()
    assert answer.status_code == 500 and "not a regular file" in answer.text
    metrics = serve.metrics()
    assert value(metrics, "pizza_probe_config_last_reload_successful") == 0
    failed = [line for line in serve.logs().splitlines() if "config reload failed" in line]
    assert len(failed) == 3 and all("not a regular file" in line for line in failed)
    assert "Traceback" not in serve.logs()
    config.unlink()
    config.write_text(f"modules:\n  default:\n    password_file: {password}\n")
    assert reload().status_code == 200, "a good file is taken again: the server never hung"
