"""What the real JWT Pizza taught us, shown with real processes: a factory behind a private CA,
an empty password, the factory the service names, factory_unreachable, once --json --recover.

The factory is the simulator's, served over HTTPS on port 443 of a loopback address of its own
with a certificate from a CA the simulator made for the test (``start_tls_simulator``). Every
command runs as ``python -m exporter`` in a child process whose environment has no CA variable
but the one a test sets, and whose proxy points at a dead loopback port: a request meant for
the internet (the public factory) would fail here instead of leaving the machine."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import pytest

from exporter.transport import CA_VARIABLES

from conftest import poll, value

FAST = ["--slow-threshold", "0.5s", "--timeout", "5s", "--order-timeout", "10s"]


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PIZZA_") and k not in CA_VARIABLES
           and k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
    # anything not on loopback goes to a port where nothing listens
    env.update(HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9",
               NO_PROXY="127.0.0.0/8,localhost")
    env.update(extra)
    return env


def pizza_probe(*args: str, env: dict[str, str] | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "exporter", *args], capture_output=True,
                          text=True, timeout=timeout, env=env if env is not None else child_env())


def trust(sim, how: str) -> tuple[list[str], dict[str, str]]:
    """(flags, environment) that make a command trust the simulator's private CA."""
    if how == "ca-file":
        return ["--ca-file", sim.ca_file], child_env()
    return [], child_env(REQUESTS_CA_BUNDLE=sim.ca_file)


def exporter_and_sidecar(processes, target: list[str], env: dict[str, str], *sidecar_args: str):
    """``serve`` every 0.3 s and a ``sidecar`` reading its hand-off, 0.2 s cooldown."""
    exporter = processes.start("serve", *target, "--interval", "0.3s", env=env)
    sidecar = processes.start("sidecar", *target, "--exporter-url", exporter.url,
                              "--cooldown", "0.2s", *sidecar_args, env=env)
    return exporter, sidecar


def chaos(sim, mode: str) -> None:
    sim.factory.set_chaos(None if mode == "none" else mode)


# --- TLS: the journey, once --recover and the sidecar, with the factory behind a private CA ---

@pytest.mark.parametrize("how", ["ca-file", "REQUESTS_CA_BUNDLE"])
@pytest.mark.parametrize("mode", ["fail", "badjwt", "throttle"])
def test_once_recover_heals_each_mode_over_tls(make_tls_simulator, mode, how):
    sim = make_tls_simulator(throttle_delay=1.0)
    flags, env = trust(sim, how)
    good = pizza_probe("once", "--json", "--service-url", sim.service_url, *flags, *FAST, env=env)
    assert good.returncode == 0, good.stdout + good.stderr
    result = json.loads(good.stdout)
    assert result["success"] and result["factory_url"] == sim.factory_url
    assert result["factory_source"] == "service"  # no --factory-url: named at /api/docs

    chaos(sim, mode)
    healed = pizza_probe("once", "--json", "--recover", "--service-url", sim.service_url,
                         "--factory-url", sim.factory_url, *flags, *FAST, env=env)
    assert healed.returncode == 0, healed.stdout + healed.stderr
    document = json.loads(healed.stdout)  # one JSON document: nothing else on stdout
    expected = {"fail": "factory_error", "badjwt": "bad_jwt", "throttle": "slow"}[mode]
    assert (document["success"], document["reason"]) == (False, expected)
    recovery = document["recovery"]
    assert recovery["status"] == "resolved" and recovery["verified"] is True
    assert [a["result"] for a in recovery["attempts"]] == ["resolved"]
    assert sim.factory.resolutions == 1 and sim.factory.mode is None
    assert "recovery: verified" in healed.stderr  # the human lines went to stderr
    assert sim.factory.api_key not in healed.stdout + healed.stderr


@pytest.mark.parametrize("how", ["ca-file", "REQUESTS_CA_BUNDLE"])
def test_the_sidecar_heals_every_mode_of_a_factory_behind_tls(make_tls_simulator, processes,
                                                             tmp_path, how):
    sim = make_tls_simulator(throttle_delay=1.0)
    flags, env = trust(sim, how)
    target = ["--service-url", sim.service_url, "--factory-url", sim.factory_url, *flags, *FAST]
    exporter, sidecar = exporter_and_sidecar(processes, target, env,
                                             "--incident-dir", str(tmp_path / "incidents"))
    poll(lambda: value(exporter.metrics(), "pizza_probe_orders_total", result="success") >= 1,
         timeout=20, what="a good journey over TLS")
    text = exporter.metrics()
    assert value(text, "pizza_probe_target_info", version="20241120.055253",
                 factory=sim.factory_url) == 1
    for healed, mode in enumerate(("fail", "badjwt", "throttle"), start=1):
        chaos(sim, mode)
        poll(lambda healed=healed: sim.factory.resolutions == healed and sim.factory.mode is None,
             timeout=30,
             what=f"the sidecar to end {mode} chaos over TLS")
        poll(lambda: value(sidecar.metrics(), "pizza_recovery_incident_open") == 0, timeout=30,
             what=f"the {mode} incident to be verified and closed")
    assert value(sidecar.metrics(), "pizza_recovery_attempts_total", result="resolved") == 3
    assert value(sidecar.metrics(), "pizza_recovery_attempts_total", result="error") == 0
    assert "SSLError" not in exporter.logs() + sidecar.logs()


@pytest.mark.parametrize("mode", ["none", "badjwt", "throttle"])
def test_without_the_ca_a_verified_step_fails_with_tls_error(make_tls_simulator, mode):
    sim = make_tls_simulator(throttle_delay=1.0)
    chaos(sim, mode)
    answer = pizza_probe("once", "--json", "--recover", "--service-url", sim.service_url,
                         "--factory-url", sim.factory_url, *FAST)
    assert answer.returncode == 1, answer.stdout + answer.stderr
    document = json.loads(answer.stdout)
    assert (document["failed_step"], document["reason"]) == ("verify", "tls_error")
    assert document["detail"].startswith("certificate verify failed: "), document["detail"]
    assert sim.factory.link_calls == 0 and sim.factory.resolutions == 0


def test_without_the_ca_the_fail_link_is_never_called(make_tls_simulator, processes):
    """fail breaks the order itself (the service reaches its factory on its own), so the journey
    fails as factory_error with its link; calling the link then fails the TLS handshake: no
    request reaches the factory, from once --recover or from the sidecar."""
    sim = make_tls_simulator()
    chaos(sim, "fail")
    answer = pizza_probe("once", "--json", "--recover", "--service-url", sim.service_url,
                         "--factory-url", sim.factory_url, *FAST)
    assert answer.returncode == 1, answer.stdout + answer.stderr
    document = json.loads(answer.stdout)
    assert document["reason"] == "factory_error"
    (attempt,) = document["recovery"]["attempts"]
    assert attempt["result"] == "error" and "certificate verify failed" in attempt["detail"]

    target = ["--service-url", sim.service_url, "--factory-url", sim.factory_url, *FAST]
    _, sidecar = exporter_and_sidecar(processes, target, child_env())
    poll(lambda: (value(sidecar.metrics(), "pizza_recovery_attempts_total", result="error")
                  or 0) >= 2, timeout=20, what="the sidecar's failed link calls")
    assert "certificate verify failed" in sidecar.logs()
    assert sim.factory.link_calls == 0 and sim.factory.resolutions == 0
    assert sim.factory.mode == "fail"


# --- the factory the service names -------------------------------------------------------

def test_without_factory_url_the_pizza_is_verified_where_the_service_says(simulator):
    answer = pizza_probe("once", "--service-url", simulator.service_url)
    assert answer.returncode == 0, answer.stdout + answer.stderr
    assert (f"factory: {simulator.factory_url} (named by the service at GET /api/docs)"
            in answer.stdout)
    assert simulator.requests[("GET", "/api/docs")] == 1


def test_a_discovered_factory_off_the_allow_list_is_never_called(make_tls_simulator, processes):
    sim = make_tls_simulator()  # its factory: https://127.x.y.z, on no allow-list
    chaos(sim, "fail")
    target = ["--service-url", sim.service_url, "--ca-file", sim.ca_file, *FAST]
    _, sidecar = exporter_and_sidecar(processes, target, child_env())
    poll(lambda: (value(sidecar.metrics(), "pizza_recovery_attempts_total", result="refused")
                  or 0) >= 1, timeout=20, what="the sidecar to refuse the link")
    assert "is not on the allow-list" in sidecar.logs()
    assert sim.factory.link_calls == 0 and sim.factory.mode == "fail"
    once = pizza_probe("once", "--json", "--recover", *target)
    assert json.loads(once.stdout)["recovery"]["attempts"][0]["result"] == "refused"
    assert sim.factory.link_calls == 0
    # named by the user, the same host is allowed
    host = sim.factory_url.split("://", 1)[1]
    allowed = pizza_probe("once", "--json", "--recover", *target, "--allow-host", host)
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert sim.factory.resolutions == 1


# --- an empty password, from every source --------------------------------------------------

EMPTY_PASSWORD_CASES = [(command, source) for command in ("once", "serve", "sidecar")
                        for source in ("flag", "env", "file")] + [
    ("serve", "modules password_file"), ("serve", "modules password_env")]


@pytest.mark.parametrize("command,source", EMPTY_PASSWORD_CASES)
def test_an_empty_password_exits_2_before_any_login(simulator, tmp_path, command, source):
    empty = tmp_path / "empty"
    empty.write_text("\n")
    args = [command, "--service-url", simulator.service_url,
            "--factory-url", simulator.factory_url]
    if command != "once":
        args += ["--listen", "127.0.0.1:0"]
    env = child_env()
    if source == "flag":
        args += ["--password", ""]
    elif source == "env":
        env["PIZZA_PROBE_PASSWORD"] = ""
    elif source == "file":
        args += ["--password-file", str(empty)]
    else:
        key = "password_file: empty" if source.endswith("file") else "password_env: PIZZA_T_PW"
        (tmp_path / "modules.yml").write_text(f"modules:\n  default:\n    {key}\n")
        args += ["--config.file", str(tmp_path / "modules.yml")]
        env["PIZZA_T_PW"] = ""
    answer = pizza_probe(*args, env=env, timeout=20)
    assert answer.returncode == 2, answer.stdout + answer.stderr
    assert answer.stderr.count("\n") == 1 and "empty" in answer.stderr, answer.stderr
    assert simulator.requests[("PUT", "/api/auth")] == 0  # no login was tried


# --- factory_unreachable ------------------------------------------------------------------

def test_factory_unreachable_is_its_own_reason(make_simulator, processes):
    sim = make_simulator(factory_unreachable=True)
    answer = pizza_probe("once", "--json", "--service-url", sim.service_url,
                         "--factory-url", sim.factory_url)
    document = json.loads(answer.stdout)
    assert (document["failed_step"], document["reason"]) == ("order", "factory_unreachable")
    exporter = processes.start("serve", "--service-url", sim.service_url,
                               "--factory-url", sim.factory_url, "--interval", "0.3s",
                               env=child_env())
    poll(lambda: value(exporter.metrics(), "pizza_probe_failures_total", step="order",
                       reason="factory_unreachable"), timeout=20, what="the failure counted")


def test_a_failing_api_docs_fails_verify_and_never_sends_the_pizza_off_site(simulator):
    from exporter.simulator import HttpError

    def broken_docs():
        raise HttpError(500, "docs are down")

    simulator.service.docs = broken_docs
    answer = pizza_probe("once", "--json", "--service-url", simulator.service_url)
    document = json.loads(answer.stdout)
    assert (document["failed_step"], document["reason"]) == ("verify", "http_error")
    assert document["detail"].startswith("cannot learn the factory: GET /api/docs: HTTP 500")
    assert document["factory_url"] is None  # not the public factory


def _service_names_factory(simulator, url: str) -> None:
    """The simulator's GET /api/docs names ``url`` as its factory (config.factory)."""
    real_docs = simulator.service.docs

    def docs():
        answer = real_docs()
        answer["config"]["factory"] = url
        return answer

    simulator.service.docs = docs


def test_a_service_echoing_the_password_into_version_and_factory_shows_it_nowhere(simulator,
                                                                                 processes):
    password = "Hunter2Secret-echo"
    _service_names_factory(simulator, f"http://127.0.0.1:1/{password}")
    simulator.service.users["d@jwt.com"]["password"] = password
    import exporter.simulator as sim_module
    original = sim_module.SERVICE_VERSION
    sim_module.SERVICE_VERSION = password  # GET / answers the version from this name
    try:
        env = child_env(PIZZA_PROBE_PASSWORD=password)
        text = pizza_probe("once", "--service-url", simulator.service_url, env=env)
        as_json = pizza_probe("once", "--json", "--service-url", simulator.service_url, env=env)
        exporter = processes.start("serve", "--service-url", simulator.service_url,
                                   "--interval", "0.3s", env=env)
        poll(lambda: "journey" in exporter.logs(), timeout=20, what="a journey")
        shown = [text.stdout, text.stderr, as_json.stdout, exporter.metrics(), exporter.logs()]
    finally:
        sim_module.SERVICE_VERSION = original
    assert "service version: ***" in text.stdout
    assert json.loads(as_json.stdout)["reason"] == "bad_response"  # the factory URL: refused
    for page in shown:
        assert password not in page


def test_a_factory_url_holding_the_password_encoded_is_refused(simulator, processes):
    # The check looked for the password verbatim; a service may name it in another form (here
    # base64url, which a URL path takes as is) and it went to pizza_probe_target_info's
    # factory label and the logs. It is refused as every form the masking knows.
    password = "Hunter2 <&pw>?"
    encoded = base64.urlsafe_b64encode(password.encode()).decode().rstrip("=")
    _service_names_factory(simulator, f"http://127.0.0.1:1/{encoded}")
    simulator.service.users["d@jwt.com"]["password"] = password
    env = child_env(PIZZA_PROBE_PASSWORD=password)
    as_json = pizza_probe("once", "--json", "--service-url", simulator.service_url, env=env)
    document = json.loads(as_json.stdout)
    assert (document["failed_step"], document["reason"]) == ("verify", "bad_response")
    assert "holds a secret" in document["detail"]
    exporter = processes.start("serve", "--service-url", simulator.service_url,
                               "--interval", "0.3s", env=env)
    poll(lambda: "journey" in exporter.logs(), timeout=20, what="a journey")
    for page in (as_json.stdout, as_json.stderr, exporter.metrics(), exporter.logs()):
        assert encoded not in page
