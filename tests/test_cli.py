"""The command line: exit codes, one-line errors, the step table, no secrets in output."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys

import pytest
import requests

from exporter.cli import main


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_cli(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PIZZA_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "exporter", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env)


def test_once_against_a_stopped_service_prints_one_line_and_exits_1():
    port = free_port()  # nothing listens there
    out = run_cli("once", "--service-url", f"http://127.0.0.1:{port}")
    assert out.returncode == 1
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1, out.stdout
    assert lines[0].startswith("FAIL: health step, connection_error (connection refused)")
    assert out.stderr == ""
    assert "Traceback" not in out.stdout + out.stderr


BAD_USAGE = [
    (["once", "--timeout", "-1"], {}),
    (["once", "--timeout", "abc"], {}),
    (["once", "--order-timeout", "0s"], {}),
    (["once", "--service-url", "ftp://pizza"], {}),
    (["once", "--factory-url", "not a url"], {}),
    (["once", "--password-file", "/nonexistent/pw"], {}),
    (["once", "--password", "x", "--password-file", "/etc/hostname"], {}),
    (["once", "--email", " "], {}),
    (["once", "--no-such-flag"], {}),
    (["serve", "--interval", "-5s"], {}),
    (["serve", "--interval", "soon"], {}),
    (["serve", "--listen", "nowhere"], {}),
    (["serve", "--web.listen-address", ":99999"], {}),
    (["once"], {"PIZZA_PROBE_TIMEOUT": "-3"}),
    (["once"], {"PIZZA_SERVICE_URL": "localhost:3000"}),
    (["serve"], {"PIZZA_PROBE_INTERVAL": "0"}),
    (["no-such-command"], {}),
]


@pytest.mark.parametrize("args,env", BAD_USAGE, ids=[" ".join(a) + str(e) for a, e in BAD_USAGE])
def test_bad_usage_is_one_line_and_exit_2(args, env, capsys, monkeypatch):
    for key in [k for k in os.environ if k.startswith("PIZZA_")]:
        monkeypatch.delenv(key)
    for key, val in env.items():
        monkeypatch.setenv(key, val)
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pizza-probe: error: "), captured.err
    assert "Traceback" not in captured.err


def test_bad_usage_in_a_real_process_has_no_traceback():
    out = run_cli("serve", "--interval", "-1")
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


def test_listen_address_in_use_is_one_line_exit_2():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = run_cli("serve", "--listen", f"127.0.0.1:{port}", "--service-url", "http://127.0.0.1:1")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("pizza-probe: error: cannot listen on")
    assert "Traceback" not in out.stderr


def test_help_names_every_flag_and_environment_variable():
    out = run_cli("serve", "--help")
    assert out.returncode == 0
    for text in ("--service-url", "PIZZA_SERVICE_URL", "--factory-url", "PIZZA_FACTORY_URL",
                 "--email", "PIZZA_PROBE_EMAIL", "--password", "PIZZA_PROBE_PASSWORD",
                 "--password-file", "--interval", "--timeout", "--order-timeout", "--listen",
                 "--web.listen-address", ":9816", "15s", "45s"):
        assert text in out.stdout, text
    assert run_cli("--version").stdout.startswith("pizza-probe, version ")


def test_console_script_is_installed():
    script = os.path.join(os.path.dirname(sys.executable), "pizza-probe")
    assert os.path.exists(script), "pip install -e . should install the pizza-probe script"


def test_once_good_journey_prints_the_step_table(simulator):
    out = run_cli("once", "--service-url", simulator.service_url, "--factory-url", simulator.factory_url)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["STEP", "RESULT", "STATUS", "SECONDS", "DETAIL"]
    for step in ("health", "login", "menu", "franchises", "order", "verify", "logout"):
        assert any(line.split()[:3] == [step, "ok", "200"] for line in lines), step
    assert any(line.startswith("OK: synthetic order at") for line in lines)


def test_once_json_in_fail_chaos_exits_1_and_shows_the_link_redacted(simulator):
    simulator.factory.set_chaos("fail")
    link = requests.post(f"{simulator.service_url}/api/order", timeout=5, json={
        "franchiseId": 1, "storeId": 1, "items": [{"menuId": 1, "description": "x", "price": 1}]},
        headers={"Authorization": "Bearer " + requests.put(
            f"{simulator.service_url}/api/auth", json={"email": "d@jwt.com", "password": "diner"},
            timeout=5).json()["token"]}).json()["followLinkToEndChaos"]
    key, code = link.split("/")[-3], link.split("/")[-1]
    out = run_cli("once", "--json", "--service-url", simulator.service_url,
                  "--factory-url", simulator.factory_url)
    assert out.returncode == 1
    data = json.loads(out.stdout)
    assert (data["failed_step"], data["reason"], data["status"]) == ("order", "factory_error", 500)
    assert data["chaos_link"].endswith("/api/support/***/report/***")
    assert data["chaos_link_key"] == "followLinkToEndChaos"
    text = out.stdout + out.stderr
    assert key not in text and code not in text
    table = run_cli("once", "--service-url", simulator.service_url, "--factory-url", simulator.factory_url)
    assert table.returncode == 1
    assert "chaos link (followLinkToEndChaos): http://127.0.0.1:" in table.stdout
    assert key not in table.stdout and code not in table.stdout
    assert "diner" not in text.replace('"d@jwt.com"', "")  # the password is never printed


def test_no_command_prints_the_help_without_error_noise_and_exits_2():
    """As click groups do since click 8.2: the help on stderr and exit 2 (bad usage), with no
    "error:" line and no hint around it."""
    out = run_cli()
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith("Usage: pizza-probe [OPTIONS] COMMAND [ARGS]...\n"), out.stderr
    assert "error" not in out.stderr.lower() and "Traceback" not in out.stderr
    assert "Commands:" in out.stderr and "healthcheck" in out.stderr
    assert run_cli("--help").stdout == out.stderr  # the very help --help prints


@pytest.mark.parametrize("value, hint", [
    ("http://x/y", " (for that URL: x:80)"),  # was accepted as x:80, its path dropped
    ("https://factory.example", " (for that URL: factory.example:443)"),
    ("https://u@x/api/support/KEY1/report/CODE1", " (for that URL: x:443)"),
    ("factory.example/api", ""),
    ("factory.example:", "no valid port"),
    ("factory.example:99999", "no valid port"),
    ("fac tory", "is not a host name"),
])
def test_allow_host_takes_a_bare_host_or_host_port_only(value, hint, capsys):
    assert main(["once", "--recover", "--service-url", "http://127.0.0.1:9",
                 "--allow-host", value]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--allow-host" in err, err
    if "/" in value:
        assert f"give a bare HOST or HOST:PORT, with no scheme, path or user{hint} (see" in err
    else:
        assert hint in err
    assert "KEY1" not in err and "CODE1" not in err  # a pasted link is never quoted back


@pytest.mark.parametrize("value", ["factory.example", "Factory.Example:8443", "[::1]:9000",
                                   "127.0.0.1"])
def test_allow_host_accepts_hosts_and_host_ports(value):
    from exporter.cli import parse_allow_host

    assert parse_allow_host(value) == value


def test_simulate_link_key_takes_either_name_of_a_pair(processes):
    """The seed postmortem names reportPizzaCreationErrorToPizzaFactoryUrl (the 500 key of the
    2024-12 to 2025-04 forks): it picks that fork's pair, as its 200 key does."""
    sim = processes.start("simulate", "--factory-listen", "127.0.0.1:0", "--vendor-key", "vk",
                          "--link-key", "reportPizzaCreationErrorToPizzaFactoryUrl")
    factory = re.search(r"factory\s+(http://127\.0\.0\.1:\d+)", sim.logs()).group(1)
    token = requests.put(f"{sim.url}/api/auth", json={"email": "d@jwt.com", "password": "diner"},
                         timeout=5).json()["token"]
    order = {"franchiseId": 1, "storeId": 1,
             "items": [{"menuId": 1, "description": "Veggie", "price": 0.0038}]}

    def answer_in(mode: str) -> tuple[int, set[str]]:
        requests.put(f"{factory}/api/vendor/chaos/{mode}", timeout=5,
                     headers={"Authorization": "Bearer vk"}).raise_for_status()
        answer = requests.post(f"{sim.url}/api/order", json=order, timeout=10,
                               headers={"Authorization": f"Bearer {token}"})
        return answer.status_code, {key for key in answer.json() if key.startswith("report")}

    assert answer_in("fail") == (500, {"reportPizzaCreationErrorToPizzaFactoryUrl"})
    assert answer_in("badjwt") == (200, {"reportSlowPizzaToFactoryUrl"})
    out = run_cli("simulate", "--link-key", "reportNothingUrl")
    assert out.returncode == 2 and out.stderr.count("\n") == 1
