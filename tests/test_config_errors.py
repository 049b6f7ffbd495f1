"""Every bad flag or environment value gives one clear line and exit status 2, for every command.

The cases are built from the commands themselves (``exporter.cli.cli.commands[name].params``):
each option that takes a value gets bad values of its kind, as a flag and, when the option has
one, as its environment variable. ``main(argv)`` runs in-process. Nothing may start: whatever
a command would start (a journey, a server, the simulator, the demo, a health-check request) is
replaced by a stub that raises :class:`Started`, so a bad value that is accepted fails its case
at once instead of serving forever.
"""

from __future__ import annotations

import logging
import os

import click
import pytest
import requests

from exporter import cli as cli_module
from exporter import demo, journey, runtime, sidecar_process, simulator
from exporter.cli import cli, main
from exporter.logs import LOGGER_NAME

from processes import assert_one_line_error, pizza_probe

SECRET = "hunter2"
COMMANDS = ("once", "serve", "sidecar", "simulate", "demo", "healthcheck")


class Started(Exception):
    """A bad value was accepted: the command went on to start something."""


def _kind(param: click.Parameter) -> str:
    if isinstance(param.type, cli_module._Parsed):
        return param.type.name  # duration, url, host:port, modes
    if isinstance(param.type, click.Choice):
        return "choice"
    if isinstance(param.type, click.IntRange):
        return "int"
    if getattr(param, "is_flag", False):
        return "flag"
    return param.name


# Bad values by kind. ``{name}`` is a path made by the ``paths`` fixture.
BAD = {
    "duration": ["-1", "abc", "0", "inf", "1x"],
    "url": ["ftp://x", "not a url", "http://user:pw@host", "http://host:99999", "http://host/?q=1",
            "http://"],
    "host:port": ["nowhere", ":99999", "host:", "127.0.0.1:-1"],
    "choice": ["melt"],
    "int": ["0", "x", "-3", "1.5"],
    "modes": ["melt", "fail,melt", ","],
    "password_file": ["{missing}", "{directory}", "{empty}", "{latin1}", "{blank_first_line}"],
    "incident_dir": ["{file}/incidents"],
    "email": [" "],
    "host": ["ftp://x:99999", "factory.example:99999", "http://x:99999", "bad host!", "host:0"],
    "NAME=URL": ["noequals", "=http://x", "a b=http://x", "prod=ftp://x", "prod=http://", "x" * 65
                 + "=http://x", "prod=http://x/" + "a" * 600],
    "config_file": ["{missing}", "{directory}", "{latin1}", "{bad_yaml}", "{unknown_key}",
                    "{inline_password}", "{bad_pattern}", "{missing_password_env}"],
    "module": ["nope"],
    "path": ["{missing}", "{directory}", "{file}", "{empty}"],  # --ca-file: a file of PEM certs
    "tls_dir": ["{file}", "{file}/tls"],  # simulate --tls-dir: a directory it can create
}
ENV_ONLY = {"flag": ["maybe"]}  # a boolean flag's environment variable: not a boolean
# Zero is valid here: no delay, no extra ports.
ZERO_ALLOWED = {("simulate", "delay"), ("simulate", "extra_ports")}
# Options with no invalid value: any string is a valid password, token or path.
UNVALIDATED = {
    "password": "any string is a password",
    "handoff_token": "any string is a token",
    "webhook_token": "any string is a token",
    "vendor_key": "any string is a vendor key",
    "kill_switch_file": "a path that need not exist (then no kill switch)",
}
# Arguments a value needs before it is read at all.
NEEDS: dict[tuple[str, str], list[str]] = {}
# URLs with a password: every variant must be refused without echoing it.
SECRET_URLS = [f"http://user:{SECRET}@host", f"https://user:{SECRET}@host:99999",
               f"ftp://user:{SECRET}@host", f"http://user:{SECRET}@[::1", f"http://:{SECRET}@host/",
               f"http://user:{SECRET}@host/?token={SECRET}"]


def _params(command: str):
    return [p for p in cli.commands[command].params
            if not getattr(p, "is_flag", False) or getattr(p, "envvar", None)]


def _names(param: click.Parameter) -> list[str]:
    """Ways an error line may name the option: its flags, its name, its environment variable."""
    names = [opt.lstrip("-") for opt in param.opts] + [param.name.replace("_", "-")]
    if getattr(param, "envvar", None):
        names.append(param.envvar)
    return names


def _argv(command: str, param: click.Parameter, value: str) -> list[str]:
    extra = NEEDS.get((command, param.name), [])
    if isinstance(param, click.Argument):
        return [command, *extra, value]
    return [command, *extra, param.opts[0], value]


def _values(command: str, param: click.Parameter) -> list[str]:
    kind = _kind(param)
    values = list(BAD.get(kind, []))
    if kind in ("duration", "int") and (command, param.name) in ZERO_ALLOWED:
        values.remove("0")
    return values


def _cases():
    cases = []
    for command in COMMANDS:
        for param in _params(command):
            kind = _kind(param)
            for value in _values(command, param):
                cases.append(pytest.param(_argv(command, param, value), {}, _names(param),
                                          id=f"{command} {param.opts[0]} {value!r}"))
            if getattr(param, "envvar", None):
                for value in _values(command, param) + ENV_ONLY.get(kind, []):
                    argv = [command, *NEEDS.get((command, param.name), [])]
                    cases.append(pytest.param(argv, {param.envvar: value}, _names(param),
                                              id=f"{command} {param.envvar}={value!r}"))
    return cases


@pytest.fixture
def paths(tmp_path):
    (tmp_path / "file").write_text("x\n")
    (tmp_path / "directory").mkdir()
    (tmp_path / "empty").write_text("")
    (tmp_path / "latin1").write_bytes(b"caf\xe9\n")
    (tmp_path / "blank_first_line").write_text(f"\n{SECRET}\n")
    (tmp_path / "password").write_text(f"{SECRET}\n")
    (tmp_path / "bad_yaml").write_text(f"modules: [\n  password: {SECRET}\n")
    (tmp_path / "unknown_key").write_text("modules:\n  default:\n    timeot: 10s\n")
    (tmp_path / "inline_password").write_text(f"modules:\n  default:\n    password: {SECRET}\n")
    (tmp_path / "bad_pattern").write_text("allowed_target_patterns: ['https://(']\n")
    (tmp_path / "missing_password_env").write_text(
        "modules:\n  default:\n    password_env: PIZZA_TEST_UNSET_PASSWORD\n")
    names = ("file", "directory", "empty", "latin1", "blank_first_line", "password", "missing",
             "bad_yaml", "unknown_key", "inline_password", "bad_pattern", "missing_password_env")
    return {name: str(tmp_path / name) for name in names}


@pytest.fixture
def run(monkeypatch, capsys, paths):
    """``run(argv, env)`` -> the one error line, after checking exit 2, empty stdout, one line."""
    for key in [k for k in os.environ if k.startswith("PIZZA_")]:
        monkeypatch.delenv(key)

    def starts(what):
        def stub(*args, **kwargs):
            raise Started(f"the bad value was accepted and {what} started")
        return stub

    # the commands import these when they run (serve loads only its own): patched at home
    monkeypatch.setattr(journey, "run_journey", starts("a journey"))
    monkeypatch.setattr(runtime, "exporter_server", starts("the exporter's server"))
    monkeypatch.setattr(sidecar_process, "sidecar_server", starts("the sidecar's server"))
    monkeypatch.setattr(simulator.Simulator, "start", starts("the simulator"))
    monkeypatch.setattr(demo, "Demo", starts("the demo"))
    monkeypatch.setattr(requests, "get", starts("a health check request"))
    monkeypatch.setattr(requests.Session, "get", starts("a health check request"))
    monkeypatch.setattr(cli_module, "_stop_on_signals", lambda *flags: None)  # keep pytest's handlers
    logger = logging.getLogger(LOGGER_NAME)  # setup_logging points it at the captured stderr
    saved = (logger.handlers[:], logger.level, logger.propagate)

    def run_main(argv, env=None):
        argv = [a.format(**paths) for a in argv]
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value.format(**paths))
        code = main(argv)
        captured = capsys.readouterr()
        assert code == 2, (code, captured)
        assert captured.out == ""
        assert captured.err.endswith("\n") and captured.err.count("\n") == 1, captured.err
        line = captured.err.rstrip("\n")
        assert line.startswith("pizza-probe: error: "), line
        assert "Traceback" not in line and SECRET not in line, line
        return line

    yield run_main
    logger.handlers[:], logger.level, logger.propagate = saved


CASES = _cases()


@pytest.mark.parametrize("command", COMMANDS)
def test_the_guard_stops_a_valid_command_before_it_starts_anything(run, command):
    """With good values each command reaches a stub: so a bad value that is accepted fails its
    case with Started instead of serving forever."""
    with pytest.raises(Started):
        main([command])


@pytest.mark.parametrize("argv,env,names", CASES)
def test_bad_value_is_one_line_naming_the_option_and_exit_2(run, argv, env, names):
    line = run(argv, env)
    assert any(name.lower() in line.lower() for name in names), (names, line)


def test_every_option_that_takes_a_value_has_bad_cases():
    """A new option needs a bad value here (or a reason it has none)."""
    missing = []
    for command in COMMANDS:
        for param in _params(command):
            if param.name in UNVALIDATED:
                continue
            if not (_values(command, param) or ENV_ONLY.get(_kind(param))):
                missing.append(f"{command} {param.opts[0]}")
    assert not missing, f"no bad values for {missing}"
    tested = {case.values[0][0] for case in CASES}
    assert tested == set(COMMANDS)
    envvars = {p.envvar for c in COMMANDS for p in _params(c)
               if getattr(p, "envvar", None) and p.name not in UNVALIDATED}
    assert envvars <= {name for case in CASES for name in case.values[1]}


# --- URLs with a password, and secrets given next to a bad value ---------------------------

URL_OPTIONS = [(command, param) for command in COMMANDS for param in _params(command)
               if _kind(param) == "url"]


@pytest.mark.parametrize("command,param", URL_OPTIONS,
                         ids=[f"{c} {p.opts[0]}" for c, p in URL_OPTIONS])
@pytest.mark.parametrize("url", SECRET_URLS)
def test_url_with_a_password_is_refused_without_echoing_it(run, command, param, url):
    line = run(_argv(command, param, url))  # run() checks SECRET is not in the line
    assert any(name.lower() in line.lower() for name in _names(param)), line
    if param.envvar:
        run([command], {param.envvar: url})


SECRET_NEXT_TO_BAD_VALUE = [
    (["once", "--password", SECRET, "--timeout", "abc"], {}),
    (["once", "--timeout", "abc"], {"PIZZA_PROBE_PASSWORD": SECRET}),
    (["once", "--password-file", "{password}", "--slow-threshold", "0"], {}),
    (["serve", "--handoff-token", SECRET, "--interval", "0"], {}),
    (["serve", "--listen", "nowhere"], {"PIZZA_PROBE_HANDOFF_TOKEN": SECRET}),
    (["sidecar", "--webhook-token", SECRET, "--cooldown", "abc"], {}),
    (["sidecar", "--max-attempts", "0"], {"PIZZA_RECOVERY_WEBHOOK_TOKEN": SECRET,
                                          "PIZZA_PROBE_HANDOFF_TOKEN": SECRET}),
    (["sidecar", "--incident-dir", "{file}/incidents"], {"PIZZA_PROBE_PASSWORD": SECRET}),
    (["simulate", "--vendor-key", SECRET, "--chaos", "melt"], {}),
    (["simulate", "--chaos-modes", "melt"], {"PIZZA_SIM_VENDOR_KEY": SECRET}),
    # Both a password and a password file: refused, and neither password is shown.
    (["serve", "--password", SECRET, "--password-file", "{password}"], {}),
    (["serve"], {"PIZZA_PROBE_PASSWORD": SECRET, "PIZZA_PROBE_PASSWORD_FILE": "{password}"}),
    (["sidecar", "--password-file", "{password}"], {"PIZZA_PROBE_PASSWORD": SECRET}),
    (["once", "--password", SECRET], {"PIZZA_PROBE_PASSWORD_FILE": "{password}"}),
    (["serve", "--config.file", "{inline_password}"], {}),
    (["serve", "--config.file", "{bad_yaml}"], {}),
    (["serve", "--target", f"prod=http://user:{SECRET}@host"], {}),
]


@pytest.mark.parametrize("argv,env", SECRET_NEXT_TO_BAD_VALUE,
                         ids=[" ".join(a) + " " + " ".join(e) for a, e in SECRET_NEXT_TO_BAD_VALUE])
def test_a_secret_next_to_a_bad_value_is_not_echoed(run, argv, env):
    run(argv, env)  # run() checks SECRET is not in the line


@pytest.mark.parametrize("option", ["--timeout", "--order-timeout"])
def test_a_timeout_too_long_for_a_socket_is_one_line_not_a_traceback(run, option):
    # 1e11 s is finite and positive: it passed, then socket.settimeout raised OverflowError
    # at the first request (a traceback) and the deadline watchdog's wait overflowed
    line = run(["once", "--password", SECRET, option, "1e11"])
    assert option.lstrip("-") in line and "at most" in line


def test_password_file_error_names_the_file_not_its_content(run, paths):
    line = run(["once", "--password-file", "{blank_first_line}"])
    assert paths["blank_first_line"] in line and "empty" in line


# --- bad values that are not refused (product bugs) ---------------------------------------

@pytest.mark.parametrize("argv,env", [
    pytest.param(["sidecar", "--allow-host", "ftp://x:99999"], {}, id="flag"),
    pytest.param(["sidecar"], {"PIZZA_RECOVERY_ALLOW_HOSTS": "http://x:99999"}, id="env"),
    pytest.param(["sidecar", "--allow-host", "factory.example:99999"], {}, id="port-out-of-range"),
    pytest.param(["once", "--recover", "--allow-host", "factory.example:99999"], {}, id="once"),
])
def test_bad_allow_host_is_one_line_and_exit_2(run, argv, env):
    line = run(argv, env)
    assert "allow-host" in line.lower() or "PIZZA_RECOVERY_ALLOW_HOSTS" in line


# --- an empty password logs in as anyone at the real service: refused from every source -----

@pytest.mark.parametrize("argv,env", [
    pytest.param(["once", "--password", ""], {}, id="once flag"),
    pytest.param(["serve", "--password", ""], {}, id="serve flag"),
    pytest.param(["sidecar", "--password", ""], {}, id="sidecar flag"),
    pytest.param(["once"], {"PIZZA_PROBE_PASSWORD": ""}, id="once env"),
    pytest.param(["serve"], {"PIZZA_PROBE_PASSWORD": ""}, id="serve env"),
    pytest.param(["sidecar"], {"PIZZA_PROBE_PASSWORD": ""}, id="sidecar env"),
    pytest.param(["once", "--password-file", "{empty}"], {}, id="empty file"),
    pytest.param(["once", "--password-file", "{blank_first_line}"], {}, id="blank first line"),
])
def test_an_empty_password_is_a_configuration_error(run, argv, env):
    line = run(argv, env)
    assert "password" in line.lower() and ("empty" in line), line


def test_once_refuses_an_uncreatable_incident_dir_even_without_recover(run):
    run(["once", "--incident-dir", "{file}/incidents"])


@pytest.mark.parametrize("args", [
    ["healthcheck", "--timeout", "1e11", "http://127.0.0.1:1/healthz"],
    ["serve", "--interval", "1e11"],
    ["sidecar", "--cooldown", "1e11"],
    ["sidecar", "--link-timeout", "1e11"],
    ["simulate", "--delay", "1e11"],
    ["demo", "--once", "--drill-timeout", "1e11"],
])
def test_a_duration_too_long_to_wait_for_is_one_line_not_a_traceback(args):
    # healthcheck --timeout 1e11 passed, then socket.settimeout raised OverflowError
    assert_one_line_error(pizza_probe(*args), "at most a year")
