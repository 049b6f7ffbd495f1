"""Fleet mode: ``/probe?target=&module=`` against real simulators on 127.0.0.1.

The exporter runs in-process (``runtime.start_exporter`` with a modules file in ``tmp_path``),
or as a real ``pizza-probe serve`` process where a signal (SIGHUP) matters. The probe's
password always comes from an environment variable (``password_env``); each simulator gets a
user of its own with that password, so a grep for it means something.

Covered: independent results per target; ``min_interval`` dedupes concurrent scrapes and
expires; refused targets and modules (400, and no request leaves); ``allowed_target_patterns``
and static targets; POST /-/reload and SIGHUP (a good file is picked up, a broken one keeps the
old modules); ``max_concurrent`` (503, ``busy``); the scrape-timeout budget; ``debug=true``;
secrets never shown; promtool accepts the answers.

Three regression tests guard bugs these tests found (fixed): a joined /probe request could miss
the journey it waited for; the POST /-/reload answer closed its connection without saying so;
serve could sleep through a SIGHUP that landed on a thread other than the main one.
"""

from __future__ import annotations

import collections
import ctypes
import http.client
import io
import logging
import os
import re
import secrets
import select
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import replace as dataclasses_replace

import pytest
import requests
import yaml

from exporter.config import ProbeConfig
from exporter.fleet import ProbeRefused, ProbeService
from exporter.journey import run_journey
from exporter.logs import LOGGER_NAME, setup_logging
from exporter.modules import ModulesSource
from exporter.result import STEPS
from exporter.runtime import start_exporter

from conftest import poll, set_chaos, value

PASSWORD_ENV = "FLEET_TEST_PROBE_PASSWORD"
PASSWORD = f"fleet-pass-{secrets.token_hex(8)}"  # unique, so a grep for it finds only leaks
EMAIL = "fleet-probe@jwt.com"
# The flags' module is never probed here; still, it must not name a host off loopback.
UNUSED_FACTORY = "http://127.0.0.1:9"
# One journey's requests to the service (the verify call goes to the factory).
ONE_JOURNEY = {("GET", "/"): 1, ("PUT", "/api/auth"): 1, ("GET", "/api/order/menu"): 1,
               ("GET", "/api/franchise"): 1, ("POST", "/api/order"): 1, ("DELETE", "/api/auth"): 1}
ORDER = ("POST", "/api/order")

_http = requests.Session()
_http.trust_env = False  # loopback only: never through a proxy from the environment


# --- helpers ---------------------------------------------------------------------------------


def register(sim) -> None:
    """Give the simulator the probe's user (password ``PASSWORD``)."""
    answer = _http.post(f"{sim.service_url}/api/auth", timeout=10,
                        json={"name": "fleet probe", "email": EMAIL, "password": PASSWORD})
    assert answer.status_code == 200, answer.text


def shop(make_simulator, **options):
    """A started simulator with the probe's user registered."""
    sim = make_simulator(**options)
    register(sim)
    return sim


def module(factory_url: str, **settings) -> dict:
    body = {"factory_url": factory_url, "email": EMAIL, "password_env": PASSWORD_ENV,
            "timeout": "5s", "order_timeout": "5s", "min_interval": "0s"}
    body.update(settings)
    return body


def write_modules(path, modules: dict, targets=(), patterns=()) -> None:
    data: dict = {"modules": modules}
    if targets:
        data["targets"] = list(targets)
    if patterns:
        data["allowed_target_patterns"] = list(patterns)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def snapshot(sim) -> dict:
    return dict(sim.requests)


def grew(sim, before: dict) -> dict:
    """The service's requests since ``before``, by (method, route); zeros left out."""
    now = dict(sim.requests)
    return {key: count - before.get(key, 0) for key, count in now.items()
            if count != before.get(key, 0)}


def post_reload(base_url: str) -> requests.Response:
    """POST /-/reload on a connection of its own: the answer closes its connection without
    saying so (see test_the_reload_answer_says_it_closes_the_connection), which would break
    the next request on a shared keep-alive session now and then."""
    with requests.Session() as session:
        session.trust_env = False
        return session.post(f"{base_url}/-/reload", timeout=10)


def step_line(debug_page: str, step: str) -> str:
    lines = [line for line in debug_page.splitlines() if re.match(rf"{step}\s", line)]
    assert len(lines) == 1, debug_page
    return lines[0]


class Fleet:
    """An in-process exporter with a modules file; ``probe`` is one GET /probe."""

    def __init__(self, exporter, path) -> None:
        self.exporter = exporter
        self.path = path
        self.url = exporter.server.url()

    def probe(self, target: str | None = None, module: str | None = None, *,
              debug: bool = False, headers: dict | None = None,
              timeout: float = 20) -> requests.Response:
        params = {}
        if target is not None:
            params["target"] = target
        if module is not None:
            params["module"] = module
        if debug:
            params["debug"] = "true"
        return _http.get(f"{self.url}/probe", params=params, headers=headers, timeout=timeout)

    def metrics(self) -> str:
        answer = _http.get(f"{self.url}/metrics", timeout=10)
        assert answer.status_code == 200
        return answer.text

    def outcomes(self) -> dict[str, float]:
        text = self.metrics()
        return {outcome: value(text, "pizza_probe_fleet_probes_total", outcome=outcome)
                for outcome in ("journey", "cached", "joined", "refused", "busy")}

    def reload(self) -> requests.Response:
        return post_reload(self.url)


@pytest.fixture
def fleet(tmp_path, monkeypatch):
    """``start(modules, targets=, patterns=, max_concurrent=)``: an exporter serving /probe
    only (no scheduled journey), its modules file in tmp_path. All are stopped at the end."""
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    started = []

    def start(modules: dict, *, targets=(), patterns=(), max_concurrent: int = 32) -> Fleet:
        path = tmp_path / "modules.yml"
        write_modules(path, modules, targets, patterns)
        flags = ProbeConfig(factory_url=UNUSED_FACTORY)
        exporter = start_exporter(flags, 3600, ("127.0.0.1", 0),
                                  modules=ModulesSource(str(path), flags), targets=[],
                                  max_concurrent=max_concurrent)
        started.append(exporter)
        return Fleet(exporter, path)

    yield start
    for exporter in started:
        exporter.stop()


@pytest.fixture
def log_stream():
    """The ``pizza_probe`` logger's lines (debug and up), in a string; restored afterwards."""
    logger = logging.getLogger(LOGGER_NAME)
    saved = (logger.handlers[:], logger.level, logger.propagate)
    stream = io.StringIO()
    setup_logging("debug", stream=stream)
    yield stream
    logger.handlers[:], level, logger.propagate = saved
    logger.setLevel(level)


@pytest.fixture
def tarpit():
    """A listening socket on 127.0.0.1 that nobody accepts from: a connection to it waits in
    the backlog, so ``connections()`` counts every one ever made."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield sock
    sock.close()


def connections(sock: socket.socket, wait: float = 0.3) -> int:
    """Accept (and close) what reached ``sock``, waiting at most ``wait`` for a late one."""
    count = 0
    while count < 100 and select.select([sock], [], [], wait)[0]:
        conn, _ = sock.accept()
        conn.close()
        count += 1
    return count


def promtool_check(body: str) -> None:
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    check = subprocess.run([promtool, "check", "metrics"], input=body.encode(),
                           capture_output=True, timeout=30)
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), check


# --- 1. independent results per target ---------------------------------------------------------


def test_two_targets_get_independent_results_and_only_their_own_requests(make_simulator, fleet):
    key = secrets.token_bytes(32)
    first = shop(make_simulator, signing_key=key)
    second = shop(make_simulator, signing_key=key)
    # one factory verifies both services' pizzas, as the one real factory does
    f = fleet({"shop": module(first.factory_url)}, targets=[first.service_url, second.service_url])

    def check(broken, healthy) -> None:
        before = {id(broken): snapshot(broken), id(healthy): snapshot(healthy)}
        bad = f.probe(broken.service_url, "shop")
        good = f.probe(healthy.service_url, "shop")
        assert bad.status_code == 200 and good.status_code == 200, (bad.text, good.text)
        assert value(bad.text, "pizza_probe_success") == 0
        assert value(bad.text, "pizza_probe_failure_info", step="order",
                     reason="factory_error") == 1
        assert value(bad.text, "pizza_probe_chaos_link_seen") == 1
        assert value(good.text, "pizza_probe_success") == 1
        assert "pizza_probe_failure_info{" not in good.text
        assert value(good.text, "pizza_probe_chaos_link_seen") == 0
        # each simulator saw exactly its own one journey, nothing of the other's
        assert grew(broken, before[id(broken)]) == ONE_JOURNEY
        assert grew(healthy, before[id(healthy)]) == ONE_JOURNEY

    set_chaos(first, "fail")
    check(first, second)
    set_chaos(first, "none")
    set_chaos(second, "fail")
    check(second, first)
    assert first.requests[ORDER] == 2 and second.requests[ORDER] == 2
    assert f.outcomes()["journey"] == 4


# --- 2. min_interval -------------------------------------------------------------------------


def test_concurrent_scrapes_within_min_interval_share_one_journey(make_simulator, fleet):
    sim = shop(make_simulator, delay=0.2)  # 7 answers: a journey of about 1.4 s
    f = fleet({"slow": module(sim.factory_url, min_interval="5s")}, targets=[sim.service_url])
    before = snapshot(sim)
    scrapes = 8
    barrier = threading.Barrier(scrapes, timeout=10)
    answers: list = [None] * scrapes

    def scrape(index: int) -> None:
        barrier.wait()
        answers[index] = f.probe(sim.service_url, "slow")

    threads = [threading.Thread(target=scrape, args=(i,), daemon=True) for i in range(scrapes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert [a.status_code for a in answers] == [200] * scrapes, [a.text for a in answers]
    assert grew(sim, before)[ORDER] == 1  # one order for eight scrapes
    assert grew(sim, before) == ONE_JOURNEY
    stamps = {value(a.text, "pizza_probe_last_run_timestamp_seconds") for a in answers}
    assert len(stamps) == 1 and None not in stamps
    assert all(value(a.text, "pizza_probe_success") == 1 for a in answers)
    outcomes = f.outcomes()
    assert outcomes["journey"] == 1
    assert outcomes["joined"] + outcomes["cached"] == scrapes - 1
    assert outcomes["joined"] >= 1  # they came together, so most waited for the one journey
    assert outcomes["busy"] == 0 and outcomes["refused"] == 0
    assert value(f.metrics(), "pizza_probe_fleet_journeys_in_flight") == 0

    # once more, with the debug view: the same journey, said to be reused
    page = f.probe(sim.service_url, "slow", debug=True).text
    assert "answer: the last journey again" in page
    assert grew(sim, before)[ORDER] == 1


def test_a_scrape_after_min_interval_runs_a_new_journey(simulator, fleet):
    sim = simulator
    register(sim)
    f = fleet({"m": module(sim.factory_url, min_interval="2s")}, targets=[sim.service_url])
    first = f.probe(sim.service_url, "m")
    stamp = value(first.text, "pizza_probe_last_run_timestamp_seconds")
    assert value(first.text, "pizza_probe_result_age_seconds") == 0
    again = f.probe(sim.service_url, "m")
    assert value(again.text, "pizza_probe_last_run_timestamp_seconds") == stamp
    assert f.outcomes()["cached"] == 1
    assert sim.requests[ORDER] == 1

    def fresh():
        answer = f.probe(sim.service_url, "m")
        new = value(answer.text, "pizza_probe_last_run_timestamp_seconds")
        return answer if new != stamp else None

    later = poll(fresh, timeout=10, interval=0.2, what="a new journey after min_interval")
    # min_interval (2 s) runs from the last journey's start
    assert value(later.text, "pizza_probe_last_run_timestamp_seconds") > stamp + 1.5
    assert value(later.text, "pizza_probe_result_age_seconds") == 0
    assert sim.requests[ORDER] == 2
    assert f.outcomes()["journey"] == 2


# --- 3. what is refused ----------------------------------------------------------------------


def test_refused_requests_get_400_and_no_request_leaves(simulator, fleet, tarpit):
    sim = simulator
    port = tarpit.getsockname()[1]
    unlisted = f"http://127.0.0.1:{port}"
    f = fleet({"m": module(sim.factory_url)}, targets=[sim.service_url])
    before = snapshot(sim)
    user_password = f"url-pw-{secrets.token_hex(6)}"
    cases = {
        "unlisted": (unlisted, "m", "target not allowed"),
        "missing": (None, "m", "target parameter is missing"),
        "empty": ("", "m", "target parameter is missing"),
        "too long": (f"{unlisted}/{'a' * 520}", "m", "longer than 512"),
        "ftp": (f"ftp://127.0.0.1:{port}", "m", "http:// or https://"),
        "user:password": (f"http://probe:{user_password}@127.0.0.1:{port}", "m",
                          "must not contain a user or password"),
        "query": (f"{unlisted}/?a=b", "m", "query"),
        "unknown module": (sim.service_url, "no-such-module", "unknown module"),
    }
    for name, (target, module_name, why) in cases.items():
        answer = f.probe(target, module_name, timeout=10)
        assert answer.status_code == 400, (name, answer.text)
        assert why in answer.text, (name, answer.text)
        assert answer.text.endswith("\n") and answer.text.count("\n") == 1, (name, answer.text)
        assert user_password not in answer.text
    assert connections(tarpit) == 0, "a refused /probe connected to its target"
    assert grew(sim, before) == {}, "a refused /probe sent a request to an allowed target"
    outcomes = f.outcomes()
    assert outcomes["refused"] == len(cases)
    assert outcomes["journey"] == 0
    assert user_password not in f.metrics()


def test_allowed_target_patterns_admit_a_match_and_refuse_near_misses(simulator, fleet, tarpit):
    sim = simulator
    register(sim)
    f = fleet({"m": module(sim.factory_url)}, patterns=[r"http://127\.0\.0\.1:\d+"])
    port = sim.service_url.rsplit(":", 1)[1]
    answer = f.probe(sim.service_url, "m")
    assert answer.status_code == 200 and value(answer.text, "pizza_probe_success") == 1
    assert sim.requests[ORDER] == 1

    before = snapshot(sim)
    pit = tarpit.getsockname()[1]
    near_misses = [
        f"{sim.service_url}/api",  # a path the pattern does not cover
        f"https://127.0.0.1:{port}",  # another scheme
        f"http://127.0.0.2:{port}",  # another host (loopback, but not the pattern's)
        f"http://127.0.0.10:{pit}",
        f"http://localhost:{port}",
        f"http://127.0.0.1:{pit}/x",
    ]
    for target in near_misses:
        answer = f.probe(target, "m", timeout=10)
        assert answer.status_code == 400 and "target not allowed" in answer.text, target
    assert grew(sim, before) == {}
    assert connections(tarpit) == 0
    assert f.outcomes()["refused"] == len(near_misses)


def test_static_targets_are_allowed_without_a_modules_file(make_simulator):
    listed = make_simulator()
    other = make_simulator()
    config = ProbeConfig(service_url=listed.service_url, factory_url=listed.factory_url,
                         timeout=5, order_timeout=5)
    # a scheduled journey too, at start; the next would be an hour later
    exporter = start_exporter(config, 3600, ("127.0.0.1", 0),
                              targets=[("shop", listed.service_url)])
    try:
        url = exporter.server.url("/probe")
        answer = _http.get(url, params={"target": listed.service_url}, timeout=20)
        assert answer.status_code == 200, answer.text
        assert value(answer.text, "pizza_probe_success") == 1
        refused = _http.get(url, params={"target": other.service_url}, timeout=10)
        assert refused.status_code == 400 and "target not allowed" in refused.text
        assert sum(other.requests.values()) == 0
        # no modules file: only the flags' module exists
        unknown = _http.get(url, params={"target": listed.service_url, "module": "x"}, timeout=10)
        assert unknown.status_code == 400 and "known: default" in unknown.text
        reload = post_reload(exporter.server.url())
        assert reload.status_code == 200 and "nothing to reload" in reload.text
    finally:
        exporter.stop()


# --- 4. reload -------------------------------------------------------------------------------


def test_reload_picks_up_a_changed_module_and_a_broken_file_keeps_the_old(
        simulator, fleet, log_stream):
    sim = simulator
    register(sim)
    targets = [sim.service_url]
    f = fleet({"m": module(sim.factory_url)}, targets=targets)
    first = f.probe(sim.service_url, "m", debug=True).text
    assert "read_only=false" in first and " ok " in step_line(first, "order")
    assert sim.requests[ORDER] == 1
    assert value(f.metrics(), "pizza_probe_config_last_reload_successful") == 1

    write_modules(f.path, {"m": module(sim.factory_url, read_only=True)}, targets)
    answer = f.reload()
    assert answer.status_code == 200 and answer.text == "config reloaded\n"
    page = f.probe(sim.service_url, "m", debug=True).text
    assert "read_only=true" in page
    assert re.fullmatch(r"order\s+-\s+-\s+-\s+not run", step_line(page, "order")), page
    assert "pizza_probe_success 1.0" in page
    assert 'pizza_probe_step_duration_seconds{step="order"}' not in page
    assert sim.requests[ORDER] == 1  # the read-only journey placed no order
    stamp = value(f.metrics(), "pizza_probe_config_last_reload_success_timestamp_seconds")

    broken = {
        "invalid YAML": f"modules:\n  m: [\n    password: {PASSWORD}\n",
        "unknown key": yaml.safe_dump({"modules": {"m": {**module(sim.factory_url),
                                                          "timeot": "5s"}},
                                       "targets": targets}),
        "inline password": yaml.safe_dump({"modules": {"m": {"factory_url": sim.factory_url,
                                                              "password": PASSWORD}},
                                           "targets": targets}),
    }
    for name, text in broken.items():
        f.path.write_text(text)
        log_stream.truncate(0)
        log_stream.seek(0)
        answer = f.reload()
        assert answer.status_code == 500, (name, answer.text)
        assert answer.text.startswith("failed to reload config: config.file "), answer.text
        assert answer.text.count("\n") == 1 and PASSWORD not in answer.text, (name, answer.text)
        assert value(f.metrics(), "pizza_probe_config_last_reload_successful") == 0, name
        # the old modules stay: read-only, and the target still allowed
        page = f.probe(sim.service_url, "m", debug=True)
        assert page.status_code == 200, (name, page.text)
        assert "read_only=true" in page.text and "pizza_probe_success 1.0" in page.text
        errors = [line for line in log_stream.getvalue().splitlines() if "level=error" in line]
        assert len(errors) == 1 and "config reload failed" in errors[0], log_stream.getvalue()
        assert PASSWORD not in log_stream.getvalue()
    assert sim.requests[ORDER] == 1
    assert value(f.metrics(),
                 "pizza_probe_config_last_reload_success_timestamp_seconds") == stamp

    # fixed: read-write again, and the target list changes too
    write_modules(f.path, {"m": module(sim.factory_url)}, [])
    assert f.reload().status_code == 200
    text = f.metrics()
    assert value(text, "pizza_probe_config_last_reload_successful") == 1
    assert value(text, "pizza_probe_config_last_reload_success_timestamp_seconds") >= stamp
    refused = f.probe(sim.service_url, "m")
    assert refused.status_code == 400 and "target not allowed" in refused.text
    assert "level=info" in log_stream.getvalue() and "config reloaded" in log_stream.getvalue()
    assert _http.get(f"{f.url}/-/reload", timeout=10).status_code == 405


def test_the_reload_answer_says_it_closes_the_connection(fleet, simulator):
    # Regression (fixed): exporter/web.py do_POST set ``self.close_connection = True`` (the request
    # body is not read) but its answers (200 "config reloaded", 500 "failed to reload config",
    # 200 "nothing to reload") carry no ``Connection: close`` header, unlike ``_not_allowed``.
    # An HTTP/1.1 client keeps the connection for its next request, which then fails with
    # RemoteDisconnected / ConnectionResetError (seen as an intermittent failure of a
    # requests.Session that POSTs /-/reload and then GETs /probe or /metrics).
    f = fleet({"m": module(simulator.factory_url)}, targets=[simulator.service_url])
    port = f.exporter.server.port
    for expected, text in ((200, None), (500, "modules: [\n")):
        if text is not None:
            f.path.write_text(text)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("POST", "/-/reload")
            answer = conn.getresponse()
            answer.read()
            assert answer.status == expected
            assert answer.will_close, (
                f"the {expected} answer to POST /-/reload closes the connection without "
                f"'Connection: close' (headers: {answer.getheaders()})")
            conn.request("GET", "/healthz")  # on the same connection, as a keep-alive client
            follow = conn.getresponse()
            assert follow.status == 200 and follow.read() == b"ok\n"
        finally:
            conn.close()


def hup_until(process, check, *, what: str, attempts: int = 5, each: float = 3.0) -> None:
    """Send SIGHUP, then poll ``check`` for ``each`` seconds; again, at most ``attempts`` times.
    More than one SIGHUP because serve may never act on one the kernel hands to a thread other
    than the main one (a product bug: test_a_sighup_taken_by_another_thread_still_reloads)."""
    for _ in range(attempts):
        process.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + each
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.1)
    pytest.fail(f"{attempts} SIGHUPs, {each:g} s apart, and still no {what}")


def serve_fleet(processes, path, sim):
    return processes.start("serve", "--config.file", str(path), "--factory-url",
                           sim.factory_url, env={PASSWORD_ENV: PASSWORD})


def test_sighup_reloads_the_modules_file_of_a_serve_process(simulator, processes, tmp_path):
    sim = simulator
    register(sim)
    path = tmp_path / "fleet.yml"
    write_modules(path, {"m": module(sim.factory_url)}, [sim.service_url])
    exporter = serve_fleet(processes, path, sim)

    def debug_page() -> str:
        answer = _http.get(f"{exporter.url}/probe", timeout=20, params={
            "target": sim.service_url, "module": "m", "debug": "true"})
        assert answer.status_code == 200, answer.text
        return answer.text

    assert "read_only=false" in debug_page()
    assert sim.requests[ORDER] == 1

    write_modules(path, {"m": module(sim.factory_url, read_only=True)}, [sim.service_url])
    hup_until(exporter, lambda: "read_only=true" in debug_page(),
              what="reloaded module on /probe")
    orders = sim.requests[ORDER]
    page = debug_page()
    assert "read_only=true" in page and "not run" in step_line(page, "order")
    assert sim.requests[ORDER] == orders
    poll(lambda: "config reloaded" in exporter.logs(), timeout=5, what="the reload's log line")

    path.write_text("modules: [\n")
    hup_until(exporter, lambda: value(exporter.metrics(),
                                      "pizza_probe_config_last_reload_successful") == 0,
              what="failed reload on /metrics")
    assert "read_only=true" in debug_page()  # the old modules are still in force
    assert exporter.proc.poll() is None
    logs = exporter.logs()
    assert re.search(r"level=error msg=\"config reload failed; keeping the modules in force\" "
                     r"error=\"config\.file .*not valid YAML", logs), logs
    assert PASSWORD not in logs and "Traceback" not in logs


def test_a_sighup_taken_by_another_thread_still_reloads(simulator, processes, tmp_path):
    # Regression (fixed): exporter/cli.py serve ended in ``stop.wait()`` (no timeout). A process-directed
    # signal may be handed by the kernel to any thread; when it lands on another thread (here
    # the HTTP server's, chosen with tgkill), CPython only marks it pending and the main thread,
    # asleep in stop.wait(), never runs the Python handler: the reload (or, the same way, a
    # SIGTERM's stop) waits for the next signal that happens to reach the main thread. Seen
    # without tgkill too: 7 of 140 plain `kill -HUP`s were never acted on while the machine was
    # busy. Fix: wake the main thread, e.g. ``while not stop.wait(0.5): pass``.
    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "tgkill"):
        pytest.skip("needs Linux tgkill")
    path = tmp_path / "fleet.yml"
    write_modules(path, {"m": module(simulator.factory_url)}, [simulator.service_url])
    exporter = serve_fleet(processes, path, simulator)
    pid = exporter.proc.pid
    others = sorted(int(tid) for tid in os.listdir(f"/proc/{pid}/task") if int(tid) != pid)
    assert others, "serve has no thread besides the main one"
    path.write_text("modules: [\n")
    assert libc.tgkill(pid, others[0], signal.SIGHUP) == 0, ctypes.get_errno()

    def reload_failed() -> bool:
        return value(exporter.metrics(), "pizza_probe_config_last_reload_successful") == 0

    poll(reload_failed, timeout=4, what="the SIGHUP (taken by another thread) to reload")


# --- 5. max_concurrent -----------------------------------------------------------------------


def test_past_max_concurrent_journeys_another_target_gets_503(make_simulator, fleet):
    key = secrets.token_bytes(32)
    slow = shop(make_simulator, signing_key=key, delay=0.3)  # about 2 s a journey
    quick = shop(make_simulator, signing_key=key)
    f = fleet({"m": module(quick.factory_url)}, targets=[slow.service_url, quick.service_url],
              max_concurrent=1)
    before = snapshot(quick)
    answers: list = []
    first = threading.Thread(target=lambda: answers.append(f.probe(slow.service_url, "m")),
                             daemon=True)
    first.start()
    poll(lambda: value(f.metrics(), "pizza_probe_fleet_journeys_in_flight") == 1, timeout=10,
         what="the slow journey to be in flight")
    busy = f.probe(quick.service_url, "m", timeout=10)
    assert busy.status_code == 503, busy.text
    assert "too many journeys in flight" in busy.text
    assert grew(quick, before) == {}  # the 503 sent nothing
    assert f.outcomes()["busy"] == 1
    first.join(timeout=30)
    assert not first.is_alive()
    assert answers[0].status_code == 200 and value(answers[0].text, "pizza_probe_success") == 1
    # the slot is free again
    after = f.probe(quick.service_url, "m")
    assert after.status_code == 200 and value(after.text, "pizza_probe_success") == 1
    outcomes = f.outcomes()
    assert outcomes["journey"] == 2 and outcomes["busy"] == 1


# --- 6. the scrape's budget ------------------------------------------------------------------


def test_scrape_timeout_header_bounds_the_journey(make_simulator, fleet):
    sim = shop(make_simulator, throttle_delay=5)
    f = fleet({"m": module(sim.factory_url, order_timeout="10s")}, targets=[sim.service_url])
    set_chaos(sim, "throttle")
    started = time.monotonic()
    answer = f.probe(sim.service_url, "m", headers={"X-Prometheus-Scrape-Timeout-Seconds": "2"})
    took = time.monotonic() - started
    assert answer.status_code == 200, answer.text
    assert took < 3.0, f"/probe took {took:.1f}s against a 2 s scrape timeout"
    assert value(answer.text, "pizza_probe_success") == 0
    assert value(answer.text, "pizza_probe_failure_info", step="order", reason="timeout") == 1
    assert value(answer.text, "pizza_probe_duration_seconds") < 2.0
    assert sim.requests[ORDER] == 1


# --- 7. debug view and secrets ---------------------------------------------------------------


def test_debug_view_shows_steps_module_and_metrics(simulator, fleet):
    sim = simulator
    register(sim)
    f = fleet({"m": module(sim.factory_url)}, targets=[sim.service_url])
    answer = f.probe(sim.service_url, "m", debug=True)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/plain")
    page = answer.text
    assert f"target: {sim.service_url}\n" in page
    assert re.search(rf"^module: m: factory_url={re.escape(sim.factory_url)} email={EMAIL} "
                     r"password=<secret> .*min_interval=0s read_only=false ca_file=\(environment\)$", page, re.M), page
    assert "answer: a new journey" in page
    for step in STEPS:
        assert re.match(rf"{step}\s+ok\s+200\s", step_line(page, step)), page
    assert f"OK: synthetic order at {sim.service_url} succeeded" in page
    metrics = page.split("\nmetrics:\n", 1)[1]
    assert value(metrics, "pizza_probe_success") == 1
    for step in STEPS:
        assert value(metrics, "pizza_probe_step_duration_seconds", step=step) is not None
    assert PASSWORD not in page


def test_secrets_never_show_in_answers_pages_metrics_or_logs(simulator, fleet, log_stream):
    sim = simulator
    register(sim)
    f = fleet({"m": module(sim.factory_url)}, targets=[sim.service_url])
    set_chaos(sim, "fail")  # the order answer carries a link with the api key and a fix code
    debug = f.probe(sim.service_url, "m", debug=True)
    assert debug.status_code == 200
    line = step_line(debug.text, "order")
    assert "FAIL" in line and "factory_error" in line
    assert re.search(r"^chaos link \(followLinkToEndChaos\): http://127\.0\.0\.1:\d+"
                     r"/api/support/\*\*\*/report/\*\*\*$", debug.text, re.M), debug.text
    plain = f.probe(sim.service_url, "m")
    assert value(plain.text, "pizza_probe_chaos_link_seen") == 1
    url_password = f"pw-in-url-{secrets.token_hex(6)}"
    port = sim.service_url.rsplit(":", 1)[1]
    refused = f.probe(f"http://probe:{url_password}@127.0.0.1:{port}", "m")
    assert refused.status_code == 400
    status_page = _http.get(f"{f.url}/", timeout=10)
    assert status_page.status_code == 200 and "failure at order: factory_error" in status_page.text

    fix_codes = list(sim.factory.fix_codes)
    assert fix_codes, "the factory issued no fix code: the test would prove nothing"
    tokens = list(sim.service.tokens)
    everything = "\n".join([debug.text, plain.text, refused.text, status_page.text, f.metrics(),
                            log_stream.getvalue()])
    assert "reason=factory_error" in log_stream.getvalue()  # the journeys were logged
    assert "probe refused" in log_stream.getvalue()
    for secret in [PASSWORD, url_password, sim.factory.api_key, *fix_codes, *tokens]:
        assert secret not in everything


# --- 8. promtool -----------------------------------------------------------------------------


def test_probe_answers_pass_promtool(simulator, fleet):
    sim = simulator
    register(sim)
    f = fleet({"m": module(sim.factory_url)}, targets=[sim.service_url])
    success = f.probe(sim.service_url, "m")
    assert value(success.text, "pizza_probe_success") == 1
    promtool_check(success.text)
    set_chaos(sim, "fail")
    failure = f.probe(sim.service_url, "m")
    assert value(failure.text, "pizza_probe_success") == 0
    assert value(failure.text, "pizza_probe_failure_info", step="order",
                 reason="factory_error") == 1
    promtool_check(failure.text)
    promtool_check(f.metrics())


# --- joining a journey in flight -------------------------------------------------------------


class _HandOverLock:
    """``ProbeService._lock``, instrumented to force one interleaving: the thread named
    ``journey`` takes the lock a third time (to store its result, after ``done.set()``) only
    once the thread named ``joiner`` has taken it after its wait. Every wait is bounded."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.taken: collections.Counter = collections.Counter()
        self.joiner_in = threading.Event()
        self.joiner_back = threading.Event()

    def __enter__(self):
        name = threading.current_thread().name
        if name == "journey" and self.taken["journey"] == 2:
            self.joiner_back.wait(5)
        self._lock.acquire()
        self.taken[name] += 1
        if name == "joiner":
            (self.joiner_in if self.taken[name] == 1 else self.joiner_back).set()
        return self

    def __exit__(self, *exc) -> None:
        self._lock.release()


def test_a_joined_request_gets_the_journey_it_waited_for(simulator):
    # Regression (fixed): exporter/fleet.py ProbeService.probe set ``done`` (waking the requests that
    # joined the journey) in the ``finally`` block, but stores ``entry.result`` only afterwards
    # under a second ``with self._lock``. A joined request that takes the lock in between finds
    # no result (503 "this target's journey is still running", counted as busy) or, for a
    # target probed before, the previous journey's result. This test forces that interleaving.
    sim = simulator
    config = ProbeConfig(service_url=sim.service_url, factory_url=sim.factory_url,
                         timeout=5, order_timeout=5)
    lock = _HandOverLock()
    running = threading.Event()

    def run(probe_config, **kwargs):
        running.set()
        assert lock.joiner_in.wait(5), "the second request never joined"
        return run_journey(probe_config, **kwargs)

    service = ProbeService(ModulesSource(None, config), static_targets=[sim.service_url], run=run)
    service._lock = lock
    answers: dict = {}

    def probe(name: str) -> None:
        try:
            answers[name] = service.probe(sim.service_url)
        except ProbeRefused as exc:
            answers[name] = exc

    journey = threading.Thread(target=probe, args=("journey",), name="journey", daemon=True)
    journey.start()
    assert running.wait(10)
    joiner = threading.Thread(target=probe, args=("joiner",), name="joiner", daemon=True)
    joiner.start()
    journey.join(timeout=20)
    joiner.join(timeout=20)
    assert not journey.is_alive() and not joiner.is_alive()
    assert answers["journey"].outcome == "journey" and answers["journey"].result.success
    joined = answers["joiner"]
    assert not isinstance(joined, ProbeRefused), (
        f"the joined request was refused ({joined.status}: {joined.message}) although the "
        "journey it waited for had finished")
    assert joined.outcome == "joined" and joined.result is answers["journey"].result
    assert sim.requests[ORDER] == 1


# --- hardening found in review --------------------------------------------------------------


def test_a_host_two_url_parsers_read_differently_is_refused(simulator, fleet, tarpit):
    """urllib3 ends a host at a backslash, urlsplit does not: with a negated-class pattern,
    ``http://127.0.0.1\\.pizza.test`` matched as a pizza.test host while requests connected to
    127.0.0.1:80 and sent it the module's password. Such targets are refused before matching."""
    f = fleet({"m": module(simulator.factory_url)},
              patterns=[r"http://[^/]*\.pizza\.test(:\d+)?", r"http://127\.0\.0\.1:\d+/[^/]*"])
    pit = tarpit.getsockname()[1]
    for target in (r"http://127.0.0.1\.pizza.test", rf"http://127.0.0.1:{pit}\.pizza.test",
                   "http://127.0.0.1%5C.pizza.test", "http://127.0.0.1 .pizza.test",
                   "http://127.0.0.1\u3002pizza.test", f"http://127.0.0.1:{pit}/%2e%2e",
                   f"http://127.0.0.1:{pit}/a\\b", "http://127.0.0.1\t.pizza.test"):
        answer = f.probe(target, "m", timeout=10)
        assert answer.status_code == 400, (target, answer.status_code, answer.text)
        assert PASSWORD not in answer.text
    assert connections(tarpit) == 0
    assert f.outcomes()["journey"] == 0


def test_the_results_kept_for_min_interval_are_bounded(monkeypatch):
    """A pattern may admit any number of targets: past MAX_ENTRIES the oldest results go."""
    from exporter import fleet as fleet_module

    monkeypatch.setattr(fleet_module, "MAX_ENTRIES", 5)
    ran = []

    def run(config, **kwargs):
        ran.append(config.service_url)
        return run_journey(config.__class__(service_url="http://127.0.0.1:9",
                                            factory_url=UNUSED_FACTORY, timeout=0.5))

    modules = ModulesSource(None, ProbeConfig(factory_url=UNUSED_FACTORY))
    modules.current.modules["default"] = dataclasses_replace(
        modules.current.modules["default"], min_interval=3600)
    service = ProbeService(modules, static_targets=[f"http://h{i}.test" for i in range(20)],
                           run=run)
    for i in range(20):
        service.probe(f"http://h{i}.test")
    assert len(service._entries) <= 5
    assert len(ran) == 20
    service.probe("http://h19.test")  # the newest is kept: answered again, no new journey
    assert len(ran) == 20
    service.probe("http://h0.test")  # the oldest went: a new journey
    assert len(ran) == 21


def test_post_probe_allows_only_get_and_the_status_page_links_no_probe(simulator, fleet):
    f = fleet({"m": module(simulator.factory_url)}, targets=[simulator.service_url])
    register(simulator)
    assert f.probe(simulator.service_url, "m").status_code == 200
    with requests.Session() as session:
        session.trust_env = False
        answer = session.post(f"{f.url}/probe", timeout=10)
        assert (answer.status_code, answer.headers["Allow"]) == (405, "GET")
        assert session.head(f"{f.url}/probe", timeout=10).status_code == 405
        page = session.get(f"{f.url}/", timeout=10).text
    assert simulator.service_url in page and "(m)" in page  # the /probe journey is listed
    assert "/probe?" not in page.replace("/probe?target=URL", "")  # but not as a link to follow
    assert simulator.requests[ORDER] == 1


def test_a_crashing_journey_answers_500_and_frees_its_slot(log_stream):
    """A bug of ours (the journey raises) is one log line and a 500, never a traceback; the
    slot is freed and the next request runs."""
    from prometheus_client import CollectorRegistry

    from exporter.web import exporter_server

    calls = []

    def run(config, **kwargs):
        calls.append(config.service_url)
        if len(calls) == 1:  # a crash that quotes the module's password
            raise RuntimeError(f"boom {config.password}")
        return run_journey(config.__class__(service_url="http://127.0.0.1:9",
                                            factory_url=UNUSED_FACTORY, timeout=0.5))

    modules = ModulesSource(None, ProbeConfig(factory_url=UNUSED_FACTORY, password=PASSWORD))
    service = ProbeService(modules, static_targets=["http://h.test"], max_concurrent=1, run=run)
    server = exporter_server("127.0.0.1", 0, CollectorRegistry(), fleet=service).start()
    try:
        first = _http.get(server.url("/probe"), params={"target": "http://h.test"}, timeout=10)
        assert first.status_code == 500 and "Traceback" not in first.text
        second = _http.get(server.url("/probe"), params={"target": "http://h.test"}, timeout=10)
        assert second.status_code == 200, second.text  # max_concurrent=1: the slot came back
        assert value(second.text, "pizza_probe_success") == 0
    finally:
        server.stop()
    logged = log_stream.getvalue()
    assert "probe crashed" in logged and "RuntimeError" in logged and PASSWORD not in logged
    assert 'detail="boom ***"' in logged  # what failed is said, the password is not


def test_a_numeric_host_is_refused_even_by_a_pattern_that_admits_any_label(simulator, fleet):
    """``[a-z0-9-]+`` as the host admits '2130706433', which the resolver reads as 127.0.0.1:
    the login (with the password) would go to whatever address an attacker spells out."""
    port = simulator.service_url.rsplit(":", 1)[1]
    f = fleet({"m": module(simulator.factory_url)},
              patterns=[rf"http://[a-z0-9-]+:{port}(/[a-z0-9./-]*)?"])
    before = snapshot(simulator)
    for target in (f"http://2130706433:{port}", f"http://0x7f000001:{port}", f"http://0:{port}",
                   f"http://127.1:{port}", f"http://localhost:{port}/team-a/../x"):
        answer = f.probe(target, "m", timeout=10)
        assert answer.status_code == 400, (target, answer.text)
    assert grew(simulator, before) == {}


def test_a_journey_to_a_host_urllib3_cannot_encode_fails_cleanly():
    """A host name the client cannot encode is a failed journey, not an exception."""
    result = run_journey(ProbeConfig(service_url="http://" + "a" * 64 + ".invalid:1",
                                     factory_url=UNUSED_FACTORY, timeout=2))
    assert not result.success and result.failed_step == "health"
    assert result.reason == "connection_error"
