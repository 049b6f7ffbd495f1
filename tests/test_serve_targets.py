"""``pizza-probe serve`` with static targets (``--target NAME=URL``), the modules file and
``--module``, as real processes against real simulators on 127.0.0.1."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import time
import types
import urllib.error
from urllib.parse import quote

import pytest

from exporter import cli as cli_module
from exporter.cli import main
from exporter.logs import LOGGER_NAME
from exporter.simulator import SERVICE_VERSION

from conftest import http_get, poll, samples, set_chaos, start_simulator, target_args, value

SIGNING_KEY = b"k" * 32  # shared: either simulator's factory verifies the other's pizzas
JOURNEY_FAMILIES = (
    "pizza_probe_orders", "pizza_probe_failures", "pizza_probe_step_duration_seconds",
    "pizza_probe_duration_seconds", "pizza_probe_success", "pizza_probe_consecutive_failures",
    "pizza_probe_chaos_link_seen", "pizza_probe_last_run_timestamp_seconds",
    "pizza_probe_last_success_timestamp_seconds", "pizza_probe_target_info",
)
JOURNEY_SAMPLES = {family + suffix for family in JOURNEY_FAMILIES
                   for suffix in ("", "_total", "_created", "_bucket", "_count", "_sum")}


def get(url: str) -> tuple[int, str]:
    """(status, body), also for an error status."""
    try:
        return http_get(url, timeout=10)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def probe_url(exporter, target: str) -> str:
    return f"{exporter.url}/probe?target={quote(target, safe='')}"


def journey_samples(text: str) -> dict[tuple[str, tuple], float]:
    return {key: v for key, v in samples(text).items() if key[0] in JOURNEY_SAMPLES}


def by_target(text: str, name: str, target: str, **labels: str) -> float | None:
    return value(text, name, target=target, **labels)


@pytest.fixture(scope="module")
def two_targets(tmp_path_factory):
    """serve --target a=... --target b=...; a's factory fails every order, b's shop is healthy.
    Shared by the tests of this scrape page (one exporter: the file stays well under a minute)."""
    from processes import Processes

    procs = Processes(tmp_path_factory.mktemp("serve-targets"))
    sims = []
    try:
        sims.append(start_simulator(signing_key=SIGNING_KEY))
        sims.append(start_simulator(signing_key=SIGNING_KEY))
        a, b = sims
        set_chaos(a, "fail")
        # --factory-url is a's (failing) factory: b's pizzas verify there by the shared key
        exporter = procs.start("serve", "--target", f"a={a.service_url}",
                               "--target", f"b={b.service_url}", "--factory-url", a.factory_url,
                               "--interval", "0.5s")

        def both_have_journeys():
            text = exporter.metrics()
            return ((by_target(text, "pizza_probe_orders_total", "a", result="failure") or 0) >= 2
                    and (by_target(text, "pizza_probe_orders_total", "b", result="success")
                         or 0) >= 2)

        poll(both_have_journeys, timeout=30, interval=0.1, what="journeys of both targets")
        yield types.SimpleNamespace(exporter=exporter, a=a, b=b)
    finally:
        procs.stop_all()
        for sim in sims:
            sim.stop()


def test_every_journey_metric_carries_its_target_and_follows_its_chaos(two_targets):
    text = two_targets.exporter.metrics()
    journey = journey_samples(text)
    seen: dict[str, set[str]] = {"a": set(), "b": set()}
    for (name, labels), _ in journey.items():
        target = dict(labels).get("target")
        assert target in seen, (name, labels)  # no journey sample without a target label
        seen[target].add(name)
    expected = {"pizza_probe_orders_total", "pizza_probe_step_duration_seconds_bucket",
                "pizza_probe_step_duration_seconds_count", "pizza_probe_step_duration_seconds_sum",
                "pizza_probe_duration_seconds_bucket", "pizza_probe_duration_seconds_count",
                "pizza_probe_duration_seconds_sum", "pizza_probe_success",
                "pizza_probe_consecutive_failures", "pizza_probe_chaos_link_seen",
                "pizza_probe_last_run_timestamp_seconds",
                "pizza_probe_last_success_timestamp_seconds", "pizza_probe_target_info"}
    assert expected <= seen["a"] and expected <= seen["b"], (expected - seen["a"], expected - seen["b"])
    assert "pizza_probe_failures_total" in seen["a"]
    assert "pizza_probe_failures_total" not in seen["b"]  # b never failed

    # a: every order fails at the factory, with the chaos link in the answer
    assert by_target(text, "pizza_probe_orders_total", "a", result="success") == 0
    failures_a = by_target(text, "pizza_probe_orders_total", "a", result="failure")
    assert failures_a >= 2
    assert by_target(text, "pizza_probe_failures_total", "a", step="order",
                     reason="factory_error") >= 2
    assert by_target(text, "pizza_probe_success", "a") == 0
    assert by_target(text, "pizza_probe_consecutive_failures", "a") >= 2
    assert by_target(text, "pizza_probe_chaos_link_seen", "a") == 1
    assert by_target(text, "pizza_probe_last_run_timestamp_seconds", "a") > 1e9
    assert by_target(text, "pizza_probe_last_success_timestamp_seconds", "a") == 0
    assert by_target(text, "pizza_probe_step_duration_seconds_count", "a", step="order") >= 2
    assert by_target(text, "pizza_probe_step_duration_seconds_count", "a", step="verify") is None
    factory = two_targets.a.factory_url  # the --factory-url, for both targets
    assert by_target(text, "pizza_probe_target_info", "a", version=SERVICE_VERSION,
                     factory=factory) == 1

    # b: every journey succeeds, verified at a's factory
    assert by_target(text, "pizza_probe_orders_total", "b", result="failure") == 0
    assert by_target(text, "pizza_probe_orders_total", "b", result="success") >= 2
    assert by_target(text, "pizza_probe_success", "b") == 1
    assert by_target(text, "pizza_probe_consecutive_failures", "b") == 0
    assert by_target(text, "pizza_probe_chaos_link_seen", "b") == 0
    assert by_target(text, "pizza_probe_last_success_timestamp_seconds", "b") > 1e9
    assert by_target(text, "pizza_probe_step_duration_seconds_count", "b", step="verify") >= 2
    assert by_target(text, "pizza_probe_duration_seconds_count", "b") >= 2
    assert by_target(text, "pizza_probe_target_info", "b", version=SERVICE_VERSION,
                     factory=factory) == 1

    assert value(text, "pizza_probe_orders_total", result="success") is None  # nothing unlabeled
    build = [labels for (name, labels) in samples(text) if name == "pizza_probe_build_info"]
    assert len(build) == 1 and [key for key, _ in build[0]] == ["version"]

    logs = two_targets.exporter.logs()
    assert re.search(r"msg=listening .*targets=a,b ", logs), logs
    assert "msg=journey target=a success=false step=order reason=factory_error" in logs
    assert "msg=journey target=b success=true" in logs
    assert "Traceback" not in logs


def test_promtool_check_metrics_is_clean_with_targets(two_targets):
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: run the tests through 'make test'"
    page = two_targets.exporter.metrics()
    assert 'target="a"' in page and 'target="b"' in page
    check = subprocess.run([promtool, "check", "metrics"], input=page.encode(),
                           capture_output=True, timeout=30)
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), check


def test_probe_allows_the_scheduled_targets_without_a_modules_file(two_targets, make_simulator):
    exporter, a, b = two_targets.exporter, two_targets.a, two_targets.b
    status, body = get(probe_url(exporter, a.service_url))
    assert status == 200, body
    assert value(body, "pizza_probe_success") == 0
    assert value(body, "pizza_probe_failure_info", step="order", reason="factory_error") == 1
    # the request's URL is normalized as --target's was: scheme case, trailing slash
    status, body = get(probe_url(exporter, b.service_url.replace("http://", "HTTP://") + "/"))
    assert status == 200, body
    assert value(body, "pizza_probe_success") == 1

    unlisted = make_simulator(signing_key=SIGNING_KEY)
    for target in (unlisted.service_url, b.service_url + "/api"):
        status, body = get(probe_url(exporter, target))
        assert status == 400 and body.startswith("target not allowed"), (target, status, body)
    assert sum(unlisted.requests.values()) == 0  # refused: no request left
    assert value(exporter.metrics(), "pizza_probe_fleet_probes_total", outcome="refused") >= 2


def test_without_target_the_metrics_have_no_target_label(processes, simulator):
    exporter = processes.start("serve", "--service-url", simulator.service_url,
                               "--factory-url", simulator.factory_url, "--interval", "0.5s")
    poll(lambda: (value(exporter.metrics(), "pizza_probe_orders_total", result="success")
                  or 0) >= 1, timeout=20, what="a good journey")
    text = exporter.metrics()
    journey = journey_samples(text)
    assert journey and all("target" not in dict(labels) for _, labels in journey), journey
    assert value(text, "pizza_probe_success") == 1
    assert value(text, "pizza_probe_target_info", version=SERVICE_VERSION,
                 factory=simulator.factory_url) == 1
    assert f"targets={simulator.service_url} " in exporter.logs()


# --- refused combinations: one line on stderr, exit 2 (in-process, nothing may start) ---------

class Started(Exception):
    """serve went past its checks and would have started the exporter."""


@pytest.fixture
def run_cli(monkeypatch, capsys):
    for key in [k for k in os.environ if k.startswith("PIZZA_")]:
        monkeypatch.delenv(key)
    calls = []

    def start_exporter(*args, **kwargs):
        calls.append(kwargs)
        raise Started

    monkeypatch.setattr(cli_module, "start_exporter", start_exporter)
    monkeypatch.setattr(cli_module, "_stop_on_signals", lambda *flags: None)  # keep pytest's
    logger = logging.getLogger(LOGGER_NAME)  # serve's setup_logging points it at captured stderr
    saved = (logger.handlers[:], logger.level, logger.propagate)

    def run(argv, env=None):
        for key, val in (env or {}).items():
            monkeypatch.setenv(key, val)
        code = main(argv)
        return code, capsys.readouterr()

    run.calls = calls
    yield run
    logger.handlers[:], logger.level, logger.propagate = saved


URL1, URL2 = "http://127.0.0.1:9", "http://127.0.0.1:10"  # never contacted: nothing starts
REFUSED = [
    pytest.param(["serve", "--target", f"a={URL1}", "--service-url", URL2], {},
                 "give either --service-url or --target", id="target-and-service-url"),
    pytest.param(["serve", "--target", f"a={URL1}"], {"PIZZA_SERVICE_URL": URL2},
                 "give either --service-url or --target", id="target-and-PIZZA_SERVICE_URL"),
    pytest.param(["serve", "--target", f"a={URL1}", "--target", f"a={URL2}"], {},
                 "each NAME may be given once", id="duplicated-name"),
    pytest.param(["serve", "--target", f"a={URL1}", "--target", f"a={URL1}"], {},
                 "each NAME may be given once", id="duplicated-target"),
    pytest.param(["serve"], {"PIZZA_PROBE_TARGETS": f"b={URL1} b={URL2}"},
                 "each NAME may be given once", id="duplicated-name-in-PIZZA_PROBE_TARGETS"),
]


@pytest.mark.parametrize("argv,env,message", REFUSED)
def test_a_refused_target_combination_is_one_line_and_exit_2(run_cli, argv, env, message):
    code, captured = run_cli(argv, env)
    assert code == 2, captured
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.endswith("\n"), captured.err
    assert captured.err.startswith("pizza-probe: error: ") and message in captured.err, captured.err
    assert run_cli.calls == []


def test_distinct_targets_reach_the_exporter_normalized(run_cli):
    """The guard of the cases above: valid targets do get as far as start_exporter."""
    with pytest.raises(Started):
        run_cli(["serve", "--target", "a=HTTP://127.0.0.1:9/", "--target", f"b={URL2}"])
    assert run_cli.calls[0]["targets"] == [("a", URL1), ("b", URL2)]


# --- the modules file ----------------------------------------------------------------------

def test_config_file_alone_schedules_no_journey_but_probe_works(processes, make_simulator,
                                                                tmp_path):
    sim = make_simulator()
    other = make_simulator()
    config = tmp_path / "modules.yml"
    config.write_text(f"modules:\n  default:\n    factory_url: {sim.factory_url}\n"
                      f"targets:\n  - {sim.service_url}\n")
    exporter = processes.start("serve", "--config.file", str(config), "--interval", "0.2s")
    assert re.search(r'msg=listening .*targets="none \(/probe only\)"', exporter.logs()), \
        exporter.logs()
    # With --interval 0.2s a scheduled journey would have reached the simulator many times.
    deadline, scrapes = time.monotonic() + 2.0, 0
    while time.monotonic() < deadline and scrapes < 100:
        text = exporter.metrics()
        scrapes += 1
        assert sum(sim.requests.values()) == 0, sim.requests
        assert journey_samples(text) == {}, journey_samples(text)
        time.sleep(0.2)
    assert scrapes >= 3
    assert value(text, "pizza_probe_config_last_reload_successful") == 1

    status, body = get(probe_url(exporter, sim.service_url))
    assert status == 200, body
    assert value(body, "pizza_probe_success") == 1
    assert sim.requests[("POST", "/api/order")] == 1
    status, body = get(probe_url(exporter, other.service_url))
    assert status == 400 and body.startswith("target not allowed"), (status, body)
    assert sum(other.requests.values()) == 0


def test_a_read_only_module_places_no_order(processes, simulator, tmp_path):
    config = tmp_path / "modules.yml"
    config.write_text("modules:\n  ro:\n    read_only: true\n"
                      f"    factory_url: {simulator.factory_url}\n    min_interval: 0\n")
    exporter = processes.start("serve", "--target", f"r={simulator.service_url}",
                               "--factory-url", simulator.factory_url,
                               "--config.file", str(config), "--module", "ro",
                               "--interval", "0.3s")
    poll(lambda: (by_target(exporter.metrics(), "pizza_probe_orders_total", "r",
                            result="success") or 0) >= 3, timeout=20, what="three journeys")
    assert simulator.requests[("GET", "/api/franchise")] >= 3  # journeys did run...
    assert simulator.requests[("DELETE", "/api/auth")] >= 3
    assert simulator.requests[("POST", "/api/order")] == 0  # ...and placed no order
    assert simulator.service.orders == []
    text = exporter.metrics()
    assert by_target(text, "pizza_probe_step_duration_seconds_count", "r", step="franchises") >= 3
    assert by_target(text, "pizza_probe_step_duration_seconds_count", "r", step="order") is None
    assert re.search(r"msg=listening .*targets=r module=ro modules=ro ", exporter.logs())


def test_a_one_target_exporter_has_no_probe_endpoint(processes, simulator):
    """Without --target or --config.file, /probe does not exist: whoever can reach the exporter
    cannot make it order more often than its --interval."""
    exporter = processes.start("serve", *target_args(simulator), "--interval", "1m")
    status, _ = get(probe_url(exporter, simulator.service_url))
    assert status == 404
    assert simulator.requests[("POST", "/api/order")] <= 1  # the scheduled journey at most


def test_probe_allows_a_mixed_case_service_url_as_written(processes, simulator, tmp_path):
    # A regression test: /probe compares the normalized target (lower-case scheme and host),
    # so the scheduled --service-url must be normalized too, or a URL with an upper-case
    # letter is probed on schedule but refused by /probe, even as the very same string.
    config = tmp_path / "modules.yml"
    config.write_text(f"modules:\n  default:\n    factory_url: {simulator.factory_url}\n")
    service_url = simulator.service_url.replace("http://", "HTTP://")
    exporter = processes.start("serve", "--service-url", service_url, "--config.file", str(config),
                               "--interval", "1m")
    poll(lambda: (value(exporter.metrics(), "pizza_probe_orders_total", result="success")
                  or 0) >= 1, timeout=20, what="the scheduled journey")  # the URL itself works
    status, body = get(probe_url(exporter, service_url))
    assert status == 200, (status, body)
