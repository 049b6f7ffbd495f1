"""The sidecar and the servers under hostile and odd answers (issue 13), each defect reproduced
the way it was found: a real redirect to a bad port, a 300-alert webhook, a dripping link
answer, a gzip bomb from the hand-off, SIGHUP at the wrong time, a 1 ms scrape budget, a
service and a factory that echo each secret, a pattern that backtracks for minutes."""

from __future__ import annotations

import gzip
import html
import json
import logging
import signal
import subprocess
import sys
import time
import tracemalloc
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler
from urllib.parse import quote, quote_plus

import pytest
import requests
from prometheus_client import CollectorRegistry, generate_latest

from exporter.clock import SystemClock
from exporter.config import ConfigError, ProbeConfig
from exporter.handoff import ExporterFeed, HandoffRefused, ProbeReport, handoff_allowed
from exporter.httpserver import BackgroundServer
from exporter.logs import LOGGER_NAME
from exporter.modules import parse_modules
from exporter.records import IncidentStore
from exporter.recovery import LinkOutcome, LinkPolicy, call_link
from exporter.redact import RecoveryLink
from exporter.result import JourneyResult, StepResult
from exporter.sidecar import RecoveryMetrics, Sidecar, SidecarOptions
from exporter.simulator import HttpError

from conftest import FakeClock, poll, set_chaos, target_args, value

KEY = "0123456789abcdef0123456789abcdef"
CODE = "fedcba9876543210fedcba9876543210"



class Answering:
    """A loopback server whose GET answer is a function of the request (status, headers, body)."""

    def __init__(self, answer) -> None:
        self.paths: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.paths.append(self.path)
                answer(self)

        self.server = BackgroundServer("127.0.0.1", 0, Handler).start()
        self.base = self.server.url()

    def link(self) -> str:
        return f"{self.base}/api/support/{KEY}/report/{CODE}"

    def close(self) -> None:
        self.server.stop()


@pytest.fixture
def answering():
    made: list[Answering] = []

    def make(answer) -> Answering:
        server = Answering(answer)
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


def redirect_to(location: str):
    def answer(handler) -> None:
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
    return answer


def engine(factory_url: str, *, clock=None, journey=None, link_caller=call_link, store=None,
           password: str = "diner", **options) -> tuple[Sidecar, CollectorRegistry]:
    registry = CollectorRegistry()
    config = ProbeConfig(service_url="http://127.0.0.1:9", factory_url=factory_url,
                         password=password)
    sidecar = Sidecar(config, LinkPolicy.default(factory_url), SidecarOptions(**options),
                      RecoveryMetrics(registry), store or IncidentStore(None),
                      clock=clock or FakeClock(), journey=journey or good_journey,
                      link_caller=link_caller)
    return sidecar, registry


def good_journey(config) -> JourneyResult:
    return JourneyResult(True, time.time(), 0.01, (StepResult("order", True, 0.01, 200),))


def failed(link: str, started_at: float | None = None) -> ProbeReport:
    return ProbeReport(seq=1, success=False, started_at=started_at or time.time(),
                       failed_step="order", reason="factory_error",
                       link=RecoveryLink(link, "followLinkToEndChaos"))


def attempts(registry, result) -> float:
    return value(generate_latest(registry).decode(), "pizza_recovery_attempts_total",
                 result=result) or 0


# --- 1. the link path: every error a recorded attempt, with its cooldown ----------------------

def test_a_redirect_to_a_bad_port_is_one_refused_attempt_per_cooldown(answering):
    factory = answering(redirect_to(f"http://127.0.0.1:99999/api/support/{KEY}/report/{CODE}"))
    clock = FakeClock()
    sidecar, registry = engine(factory.base, clock=clock, cooldown=30)
    for i in range(20):  # 20 s of failed orders, each with a fresh link
        sidecar.step(("report", failed(f"{factory.base}/api/support/{KEY}/report/code{i}")))
        clock.now += 1
    assert len(factory.paths) == 1, factory.paths  # before the fix: a call at every step
    assert attempts(registry, "refused") == 1
    assert sidecar.incident.attempts[0]["detail"] == "redirect refused: link is not a valid URL"


@pytest.mark.parametrize("link", ["http://[127.0.0.1/api/support/k/report/c",
                                  "http://127.0.0.1:99999/api/support/k/report/c"])
def test_a_malformed_link_is_refused_and_counted(link):
    sidecar, registry = engine("http://127.0.0.1:1")
    sidecar.step(("report", failed(link)))
    assert attempts(registry, "refused") == 1
    assert sidecar.incident.attempts[0]["result"] == "refused"


def test_a_link_call_that_raises_is_an_error_attempt_with_its_cooldown():
    calls, clock = [], FakeClock()

    def raising(link, policy, **kwargs):
        calls.append(clock.now)
        raise ValueError("a surprise from a library")

    sidecar, registry = engine("https://pizza-factory.cs329.click", clock=clock,
                               link_caller=raising, cooldown=30)
    link = f"https://pizza-factory.cs329.click/api/support/{KEY}/report/{CODE}"
    for _ in range(10):
        sidecar.step(("report", failed(link)))
        clock.now += 5
    assert calls == [1000.0, 1030.0]  # spaced by the cooldown, not one a step
    assert attempts(registry, "error") == 2
    assert "ValueError: a surprise from a library" in sidecar.incident.attempts[0]["detail"]


def test_a_refusal_is_recorded_at_once_even_within_the_cooldown():
    clock = FakeClock()
    calls = []

    def unresolved(link, policy, **kwargs):
        calls.append(link)
        return LinkOutcome("unresolved", "Problem unresolved", 400)

    sidecar, registry = engine("https://pizza-factory.cs329.click", clock=clock,
                               link_caller=unresolved, cooldown=30)
    sidecar.step(("report", failed(f"https://pizza-factory.cs329.click/api/support/{KEY}/report/x")))
    clock.now += 1
    sidecar.step(("report", failed(f"https://evil.example/api/support/{KEY}/report/y")))
    assert len(calls) == 1 and attempts(registry, "refused") == 1  # not after 30 s


def test_the_first_call_of_a_new_incident_is_immediate():
    clock = FakeClock()
    calls = []

    def resolving(link, policy, **kwargs):
        calls.append(clock.now)
        return LinkOutcome("resolved", "Problem resolved. Pizza is back on the menu!", 200)

    sidecar, _ = engine("https://pizza-factory.cs329.click", clock=clock, link_caller=resolving,
                        cooldown=30)
    sidecar.step(("report", failed(f"https://pizza-factory.cs329.click/api/support/{KEY}/report/a")))
    assert sidecar.incident is None and len(sidecar.closed) == 1  # healed and verified
    clock.now += 1  # badjwt right after a healed fail
    sidecar.step(("report", failed(f"https://pizza-factory.cs329.click/api/support/{KEY}/report/b",
                                   started_at=time.time() + 5)))
    assert calls == [1000.0, 1001.0]  # before the fix: the second waited out the 30 s


def test_a_dripping_link_answer_ends_by_its_deadline(answering):
    def drip(handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "100000")
        handler.end_headers()
        for _ in range(300):  # 30 s of one byte every 0.1 s, far past the deadline
            try:
                handler.wfile.write(b" ")
                handler.wfile.flush()
            except OSError:
                return
            time.sleep(0.1)

    factory = answering(drip)
    started = time.monotonic()
    outcome = call_link(RecoveryLink(factory.link(), "k"), LinkPolicy.default(factory.base),
                        timeout=1.0)
    elapsed = time.monotonic() - started
    assert outcome == LinkOutcome("error", "no answer within 1s")
    assert elapsed < 3, elapsed  # before the fix: 30 s, the server's whole drip


# --- 2. a flood of alerts is a trigger, not a work queue -------------------------------------

def alerts_payload(count: int, offset: int = 0) -> dict:
    return {"version": "4", "status": "firing", "alerts": [
        {"status": "firing", "labels": {"alertname": "PizzaSyntheticOrderFailing", "n": str(i)},
         "fingerprint": f"fp{i:06d}", "startsAt": "2026-11-29T10:00:00Z"}
        for i in range(offset, offset + count)]}


def test_three_hundred_alerts_place_one_order_and_never_block_the_webhook(simulator, processes):
    sidecar = processes.start("sidecar", *target_args(simulator), "--exporter-url", "",
                              "--webhook-token", "hook-token", "--cooldown", "30s")
    headers = {"Authorization": "Bearer hook-token"}
    for offset in (0, 300):  # a second big webhook too
        started = time.monotonic()
        answer = requests.post(sidecar.url + "/alertmanager", json=alerts_payload(300, offset),
                               headers=headers, timeout=10)
        assert answer.status_code == 200 and answer.json()["new"] == 300
        assert time.monotonic() - started < 1.0  # answered at once, nothing queued behind it
    poll(lambda: value(sidecar.metrics(), "pizza_recovery_alerts_received_total",
                       status="firing") == 600, timeout=20, what="all 600 alerts handled")
    assert len(simulator.service.orders) == 1  # before the fix: about one per alert
    assert value(sidecar.metrics(), "pizza_recovery_incidents_total") == 1


# --- 4. SIGHUP ---------------------------------------------------------------------------------

def _stops_quickly(process) -> None:
    started = time.monotonic()
    process.proc.send_signal(signal.SIGTERM)
    assert process.proc.wait(timeout=5) == 0
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("command", ["serve", "sidecar"])
def test_sighup_without_a_file_is_logged_and_ignored(simulator, processes, command):
    process = processes.start(command, *target_args(simulator))
    for _ in range(2):
        process.proc.send_signal(signal.SIGHUP)
    poll(lambda: process.logs().count("SIGHUP ignored") >= 1, what="the SIGHUP to be logged")
    assert process.proc.poll() is None  # before the fix: killed, exit 129
    assert process.metrics()
    _stops_quickly(process)


def test_two_quick_sighups_with_a_file_reload_and_sigterm_still_stops(simulator, processes,
                                                                      tmp_path):
    path = tmp_path / "modules.yml"
    path.write_text(f"modules:\n  default:\n    factory_url: {simulator.factory_url}\n")
    process = processes.start("serve", "--config.file", str(path))
    for _ in range(5):
        process.proc.send_signal(signal.SIGHUP)
        process.proc.send_signal(signal.SIGHUP)
        time.sleep(0.01)  # deliberately close together: the handlers must only set a flag
    poll(lambda: "config reloaded" in process.logs(), what="a reload")
    assert process.proc.poll() is None and process.metrics()
    _stops_quickly(process)


# --- 5. one client cannot poison /probe for everyone ------------------------------------------

def probe(exporter, target: str, headers: dict | None = None) -> tuple[int, str]:
    request = urllib.request.Request(f"{exporter.url}/probe?target={quote(target, safe='')}",
                                     headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.parametrize("header", ["0.001", "0", "-1", "abc", "nan", ""])
def test_a_tiny_or_malformed_scrape_budget_is_refused(make_simulator, processes, header):
    sim = make_simulator()
    exporter = processes.start("serve", "--target", f"a={sim.service_url}",
                               "--factory-url", sim.factory_url, "--interval", "1h")
    status, body = probe(exporter, sim.service_url,
                         {"X-Prometheus-Scrape-Timeout-Seconds": header})
    assert status == 400 and "X-Prometheus-Scrape-Timeout-Seconds" in body, (status, body)
    status, body = probe(exporter, sim.service_url)  # Prometheus' own scrape right after
    assert status == 200 and value(body, "pizza_probe_success") == 1


def slow_shop_behind_probe(make_simulator, processes, tmp_path, min_interval: str):
    """A simulator whose journey takes about 1.5 s, and ``serve`` probing it through /probe
    with that ``min_interval``: (simulator, exporter)."""
    sim = make_simulator(delay=0.2)
    path = tmp_path / "modules.yml"
    path.write_text(f"modules:\n  default:\n    factory_url: {sim.factory_url}\n"
                    f"    min_interval: {min_interval}\ntargets: ['{sim.service_url}']\n")
    return sim, processes.start("serve", "--config.file", str(path))


def test_a_timeout_under_one_scrapes_budget_is_not_served_to_the_next(make_simulator, processes,
                                                                       tmp_path):
    sim, exporter = slow_shop_behind_probe(make_simulator, processes, tmp_path, "1h")
    status, body = probe(exporter, sim.service_url, {"X-Prometheus-Scrape-Timeout-Seconds": "1"})
    assert status == 200 and value(body, "pizza_probe_success") == 0
    status, body = probe(exporter, sim.service_url, {"X-Prometheus-Scrape-Timeout-Seconds": "10"})
    assert value(body, "pizza_probe_success") == 1  # a journey of its own, not the timeout
    assert value(body, "pizza_probe_result_age_seconds") == 0


# --- 6. secrets the service or the factory echo -----------------------------------------------

PASSWORD = "Hunter2-echoed-pw"


def test_a_login_refusal_quoting_the_password_is_printed_nowhere(simulator, processes):
    def login(body):
        raise HttpError(404, f"unknown user {body.get('email')} with password {body.get('password')}")

    simulator.service.login = login
    env = {"PIZZA_PROBE_PASSWORD": PASSWORD}
    once = subprocess.run([sys.executable, "-m", "exporter", "once", *target_args(simulator)],
                          capture_output=True, text=True, timeout=60, env=_env(env))
    assert once.returncode == 1 and "auth_error" in once.stdout
    assert "with password ***" in once.stdout and PASSWORD not in once.stdout + once.stderr
    exporter = processes.start("serve", "--target", f"a={simulator.service_url}",
                               "--factory-url", simulator.factory_url, "--interval", "0.3s",
                               env=env)
    poll(lambda: "auth_error" in exporter.logs(), what="a failed journey logged")
    pages = [exporter.logs(), _get(exporter.url + "/"), exporter.metrics(),
             probe(exporter, simulator.service_url)[1],
             _get(f"{exporter.url}/probe?target={quote(simulator.service_url, safe='')}&debug=true")]
    for page in pages:
        assert PASSWORD not in page


def test_a_login_refusal_quoting_the_password_encoded_is_printed_nowhere(simulator, processes):
    # The service quotes the password as a query string or a template would: URL-encoded and
    # HTML-escaped. Masking the literal password alone let both onto the page, the JSON, the
    # hand-off and the log.
    password = 'Hunter2 <&"x/%+>pw'
    encoded = [quote(password, safe=""), quote_plus(password), html.escape(password)]

    def login(body):
        raise HttpError(404, f"bad {' '.join(encoded)}")

    simulator.service.login = login
    exporter = processes.start("serve", *target_args(simulator), "--interval", "0.3s",
                               env={"PIZZA_PROBE_PASSWORD": password})
    poll(lambda: "auth_error" in exporter.logs(), what="a failed journey logged")
    api = json.loads(_get(exporter.url + "/api/status"))
    handoff = json.loads(_get(exporter.url + "/recovery/latest?after=0&wait=0"))
    assert api["targets"][0]["last"]["detail"] == "HTTP 404: bad *** *** ***"
    assert handoff["detail"] == "HTTP 404: bad *** *** ***"
    for page in (exporter.logs(), _get(exporter.url + "/"), json.dumps(api), json.dumps(handoff)):
        assert not any(form in page for form in encoded)


def test_a_logout_error_quoting_the_token_is_printed_nowhere(simulator, processes):
    tokens: list[str] = []
    real_login = simulator.service.login

    def login(body):
        answer = real_login(body)
        tokens.append(answer["token"])
        return answer

    def logout(headers):
        raise HttpError(500, f"cannot end session {headers.get('Authorization', '')[7:]}")

    simulator.service.login, simulator.service.logout = login, logout
    exporter = processes.start("serve", *target_args(simulator), "--interval", "0.3s")
    poll(lambda: "logout" in exporter.logs() and tokens, what="a failed logout logged")
    handoff = _get(exporter.url + "/recovery/latest?after=0&wait=0")
    assert "cannot end session ***" in handoff
    for page in (exporter.logs(), _get(exporter.url + "/"), handoff):
        assert not any(token in page for token in tokens)


def test_a_link_answer_quoting_the_key_and_code_is_recorded_redacted(simulator, tmp_path):
    def resolve(api_key, fix_code):
        raise HttpError(400, f"Problem unresolved for {api_key} and {fix_code}", stack=False)

    set_chaos(simulator, "fail")
    simulator.factory.resolve = resolve
    incidents = tmp_path / "incidents"
    once = subprocess.run([sys.executable, "-m", "exporter", "once", "--json", "--recover",
                           "--incident-dir", str(incidents), *target_args(simulator)],
                          capture_output=True, text=True, timeout=60, env=_env({}))
    document = json.loads(once.stdout)
    (attempt,) = document["recovery"]["attempts"]
    assert attempt["result"] == "unresolved" and attempt["detail"].count("***") == 2
    written = "".join(p.read_text() for p in incidents.iterdir())
    for text in (once.stdout, once.stderr, written):
        assert simulator.factory.api_key not in text
        assert not any(code in text for code in simulator.factory.fix_codes)


def test_the_sidecars_catch_all_logs_what_failed_redacted(caplog):
    def broken(config):
        raise RuntimeError(f"journey exploded near {PASSWORD}")

    sidecar, _ = engine("https://pizza-factory.cs329.click", journey=broken, password=PASSWORD)
    logger = logging.getLogger(LOGGER_NAME)
    logger.propagate = True
    try:
        with caplog.at_level(logging.ERROR, logger=LOGGER_NAME):
            sidecar.step(("alert", "firing"))
    finally:
        logger.propagate = False
    (record,) = [r for r in caplog.records if r.getMessage() == "sidecar step failed"]
    assert record.fields["error"] == "RuntimeError"
    assert record.fields["detail"] == "journey exploded near ***"


# --- 7. the hand-off: a size cap and no decompression -----------------------------------------

@pytest.mark.parametrize("kind", ["gzip bomb", "one megabyte"])
def test_a_huge_handoff_answer_is_refused_with_flat_memory(answering, kind):
    if kind == "gzip bomb":  # 1 MB on the wire, 1 GB once decompressed
        body = gzip.compress(b"\0" * (1 << 30), compresslevel=9)
        encoding = {"Content-Encoding": "gzip"}
    else:
        body = json.dumps({"seq": 1, "success": False, "started_at": 1.0,
                           "detail": "x" * (1 << 20)}).encode()
        encoding = {}

    def answer(handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        for key, header_value in encoding.items():
            handler.send_header(key, header_value)
        handler.end_headers()
        try:
            handler.wfile.write(body)
        except OSError:
            pass

    exporter = answering(answer)
    feed = ExporterFeed(exporter.base, lambda report: None, wait=0.1)
    tracemalloc.start()
    try:
        with pytest.raises(HandoffRefused):
            feed.poll_once(0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, peak  # before the fix: the whole answer, decompressed


# --- 9. smaller -------------------------------------------------------------------------------

@pytest.mark.parametrize("field", ["started_at", "first_failure_at"])
@pytest.mark.parametrize("when", [1e18, 253402300800.0, -1.0])
def test_a_handoff_report_dated_beyond_any_calendar_is_refused(answering, tmp_path, field, when):
    # A report from the year 10000 (or 1e18) was taken: the incident record could then never be
    # written ("cannot write incident record"), its postmortem draft raised, and the sidecar's
    # status page failed on every load while the report was among its journeys.
    report = {"seq": 1, "success": False, "started_at": time.time(), "failed_step": "order",
              "reason": "factory_error", field: when}

    def answer(handler) -> None:
        body = json.dumps(report).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    server = answering(answer)
    feed = ExporterFeed(server.base, lambda report: None, wait=0.1)
    with pytest.raises(ValueError, match=field):
        feed.poll_once(0)
    report[field] = time.time()
    assert feed.poll_once(0) is not None


def test_a_dual_stack_listener_lets_a_loopback_sidecar_in():
    assert handoff_allowed(None, "", "::ffff:127.0.0.1")
    assert handoff_allowed(None, "", "::1") and handoff_allowed(None, "", "127.0.0.1")
    assert not handoff_allowed(None, "", "::ffff:10.0.0.1")
    assert not handoff_allowed(None, "", "not an address")


@pytest.mark.parametrize("pattern", [r"(a+)+$", r"https://(x|xy)*\.example", r"(\w+\s?)*$",
                                     r"(a)\1", r"http://a*a*a*a*a*a*\.example",
                                     r"http://[a-z.]*[a-z.]*[a-z.]*[a-z.]*\.pizza:3000",
                                     r".*.*.*.*.*=", r"\w*\w*\w*x"])
def test_a_pattern_that_can_backtrack_for_minutes_is_refused_at_once(pattern):
    started = time.monotonic()
    with pytest.raises(ConfigError, match="allowed_target_patterns"):
        parse_modules(json.dumps({"allowed_target_patterns": [pattern]}))
    assert time.monotonic() - started < 1


@pytest.mark.parametrize("pattern", [r"https://pizza-service\.[a-z0-9-]+\.click",
                                     r"https://(?:[a-z0-9-]+\.)+example\.com",
                                     r"https://[a-z]+\.[a-z]+\.[a-z]+/x", r"https://.*\.example/.*",
                                     r"http://127\.0\.0\.1:300[0-2]", r"(?:\d+\.){3}\d+"])
def test_patterns_of_the_docs_still_load(pattern):
    assert parse_modules(json.dumps({"allowed_target_patterns": [pattern]})).patterns


# --- helpers ----------------------------------------------------------------------------------

def _env(extra: dict) -> dict:
    import os
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIZZA_")}
    env.update(extra)
    return env


def _get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            return response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.read().decode()


# --- a restart keeps the limits; a slow confirming order does not turn alerts into orders ------

def test_a_restarted_sidecar_does_not_call_the_same_link_again_within_its_cooldown(
        make_tls_simulator, processes, tmp_path):
    sim = make_tls_simulator()  # its CA is not given: every link call ends in a TLS error
    sim.factory.set_chaos("fail")
    incidents = tmp_path / "incidents"
    target = ["--service-url", sim.service_url, "--factory-url", sim.factory_url]
    exporter = processes.start("serve", *target, "--interval", "0.3s")
    sidecar_args = [*target, "--exporter-url", exporter.url, "--cooldown", "1h",
                    "--incident-dir", str(incidents)]
    first = processes.start("sidecar", *sidecar_args)
    poll(lambda: value(first.metrics(), "pizza_recovery_attempts_total", result="error") == 1,
         timeout=20, what="the first (failed) link call")
    first.stop(signal.SIGKILL)
    second = processes.start("sidecar", *sidecar_args)

    def new_incident_with_later_orders():
        for path in incidents.glob("*.json"):
            record = json.loads(path.read_text())
            if record["status"] == "open" and record["failed_orders"] >= 3:
                return record
        return None

    poll(new_incident_with_later_orders, timeout=20, what="the new sidecar's incident to go on")
    assert value(second.metrics(), "pizza_recovery_attempts_total", result="error") == 0
    assert "incident abandoned at restart" in second.logs()  # and nothing called twice


def test_after_a_heal_a_restarted_sidecar_ignores_old_reports_and_spent_links(tmp_path):
    calls = []

    def resolving(link, policy, **kwargs):
        calls.append(link.reveal())
        return LinkOutcome("resolved", "Problem resolved. Pizza is back on the menu!", 200)

    link = f"https://pizza-factory.cs329.click/api/support/{KEY}/report/{CODE}"
    store = IncidentStore(str(tmp_path))
    first, _ = engine("https://pizza-factory.cs329.click", link_caller=resolving, store=store,
                      clock=SystemClock(), cooldown=30)
    old = failed(link, started_at=time.time() - 5)
    first.step(("report", old))
    assert len(calls) == 1 and first.incident is None  # healed and verified

    # restart: a new engine on the same records, as start_sidecar builds it
    second, registry = engine("https://pizza-factory.cs329.click", link_caller=resolving,
                              store=IncidentStore(str(tmp_path)), clock=SystemClock(),
                              cooldown=30)
    now = time.time()
    second.restore(second.store.recent_attempts(now), ignore_reports_before=now)
    second.step(("report", old))  # the exporter's last report, replayed at the first poll
    assert second.incident is None and calls == [link]
    second.step(("report", failed(link, started_at=now + 1)))  # the same link, a new journey
    assert second.incident is not None and calls == [link]  # answered before: never again
    assert attempts(registry, "resolved") == 0


def test_alerts_queued_behind_a_slow_confirming_order_place_no_more_orders(make_simulator,
                                                                           processes):
    sim = make_simulator(delay=0.3)  # a journey takes about 2 s, longer than the cooldown
    sidecar = processes.start("sidecar", *target_args(sim), "--exporter-url", "",
                              "--webhook-token", "hook-token", "--cooldown", "1s")
    answer = requests.post(sidecar.url + "/alertmanager", json=alerts_payload(10),
                           headers={"Authorization": "Bearer hook-token"}, timeout=10)
    assert answer.status_code == 200
    poll(lambda: value(sidecar.metrics(), "pizza_recovery_alerts_received_total",
                       status="firing") == 10, timeout=30, what="the ten alerts handled")
    assert len(sim.service.orders) == 1  # before the fix: one order (and incident) per alert
    assert value(sidecar.metrics(), "pizza_recovery_incidents_total") == 1


def test_a_client_looping_tiny_budgets_cannot_make_honest_scrapes_fail(make_simulator, processes,
                                                                        tmp_path):
    import threading

    sim, exporter = slow_shop_behind_probe(make_simulator, processes, tmp_path, "2s")
    stop = threading.Event()
    attacks: list[int] = []

    def attacker() -> None:
        deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < deadline:
            attacks.append(probe(exporter, sim.service_url,
                                 {"X-Prometheus-Scrape-Timeout-Seconds": "1"})[0])

    thread = threading.Thread(target=attacker, daemon=True)
    thread.start()
    try:
        honest = []
        for _ in range(6):  # about 10 s, across several min_interval windows
            status, body = probe(exporter, sim.service_url,
                                 {"X-Prometheus-Scrape-Timeout-Seconds": "10"})
            honest.append((status, value(body, "pizza_probe_success")))
            time.sleep(0.7)  # spacing between scrapes, as Prometheus' interval
    finally:
        stop.set()
        thread.join(timeout=10)
    assert len(attacks) >= 3  # the attack ran alongside
    assert honest == [(200, 1.0)] * 6, honest  # before the fix: 0.0 once the cache expired


# --- junk in the incident directory never stops the sidecar (second review) ---------------------

def test_a_fifo_a_dangling_link_and_odd_records_do_not_stop_the_sidecar(simulator, processes,
                                                                        tmp_path):
    import os

    incidents = tmp_path / "incidents"
    incidents.mkdir()
    os.mkfifo(incidents / "fifo.json")  # before the fix: the start blocked on it for ever
    (incidents / "dangling.json").symlink_to(incidents / "gone.json")  # was a traceback
    (incidents / "a.json").write_text(json.dumps({"attempts": [{"at": "2026-11-29T12:00:00Z"}]}))
    (incidents / "b.json").write_text(json.dumps({"attempts": [{"at": time.time(),
                                                                "called": True}]}))
    (incidents / "c.json").write_text("[1, 2")
    sidecar = processes.start("sidecar", *target_args(simulator), "--exporter-url", "",
                              "--incident-dir", str(incidents))
    assert sidecar.metrics() and "Traceback" not in sidecar.logs()
    _stops_quickly(sidecar)


def test_the_healthcheck_never_asks_a_proxy_for_loopback(simulator, processes):
    exporter = processes.start("serve", *target_args(simulator))
    env = _env({"HTTP_PROXY": "http://127.0.0.1:1", "http_proxy": "http://127.0.0.1:1"})
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)
    out = subprocess.run([sys.executable, "-m", "exporter", "healthcheck",
                          exporter.url + "/healthz"], capture_output=True, text=True,
                         timeout=30, env=env)
    assert out.returncode == 0, out.stderr  # before the fix: "unhealthy: ProxyError"
