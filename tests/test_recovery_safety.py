"""The sidecar's safety: allow-list, schemes, redirects, cooldown, limits, dry run, kill switch,
webhook authentication and de-duplication, and the exporter hand-off's access control."""

from __future__ import annotations

import base64
import dataclasses
import json
import threading
import time
from http.server import BaseHTTPRequestHandler

import pytest
import requests
from prometheus_client import CollectorRegistry, generate_latest

from exporter.alertmanager import WebhookError, parse_webhook
from exporter.config import ProbeConfig
from exporter.handoff import LatestJourney, ProbeReport, handoff_allowed
from exporter.httpserver import BackgroundServer
from exporter.records import IncidentStore
from exporter.recovery import LinkOutcome, LinkPolicy, call_link, classify_answer
from exporter.redact import RecoveryLink
from exporter.result import JourneyResult, StepResult
from exporter.sidecar import RecoveryMetrics, Sidecar, SidecarOptions
from exporter.sidecar_web import sidecar_server, token_matches
from exporter.web import exporter_server

from conftest import FakeClock, poll, value

KEY = "0123456789abcdef0123456789abcdef"
CODE = "fedcba9876543210fedcba9876543210"


class CountingServer:
    """A loopback server that counts requests; optionally redirects every request."""

    def __init__(self, redirect_to: str | None = None, host: str = "127.0.0.1") -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.requests.append(self.path)
                if outer.redirect_to and not outer.redirect_to.endswith(self.path):
                    self.send_response(302)
                    self.send_header("Location", outer.redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = json.dumps({"message": "Problem resolved. Pizza is back on the menu!"}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.redirect_to = redirect_to
        self.server = BackgroundServer(host, 0, Handler).start()
        self.base = self.server.url()

    def link(self, form: str = "current") -> str:
        if form == "current":
            return f"{self.base}/api/support/{KEY}/report/{CODE}"
        return f"{self.base}/api/report?apiKey={KEY}&fixCode={CODE}"

    def close(self) -> None:
        self.server.stop()


@pytest.fixture
def servers():
    made = []

    def make(**kwargs) -> CountingServer:
        server = CountingServer(**kwargs)
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


# --- the policy ------------------------------------------------------------------------------

@pytest.mark.parametrize("url,allowed", [
    (f"https://pizza-factory.cs329.click/api/support/{KEY}/report/{CODE}", True),
    (f"https://cs329.cs.byu.edu/api/report?apiKey={KEY}&fixCode={CODE}", True),
    (f"https://PIZZA-FACTORY.cs329.click/api/support/{KEY}/report/{CODE}", True),
    (f"http://127.0.0.1:3001/api/support/{KEY}/report/{CODE}", True),  # the configured factory
    (f"http://127.0.0.1:3002/api/support/{KEY}/report/{CODE}", False),  # same host, other port
    (f"https://pizza-factory.cs329.click.evil.test/api/support/{KEY}/report/{CODE}", False),
    (f"https://evil.test/api/support/{KEY}/report/{CODE}", False),
    (f"ftp://pizza-factory.cs329.click/api/support/{KEY}/report/{CODE}", False),
    ("file:///etc/passwd", False),
    (f"https://user:pw@pizza-factory.cs329.click/api/support/{KEY}/report/{CODE}", False),
    ("https://pizza-factory.cs329.click/api/franchise/1", False),  # not a resolver path
    ("https://pizza-factory.cs329.click/" + "a" * 3000, False),
    ("http://[::1", False),
    # Hosts two URL parsers read differently (urllib3 ends a host at a backslash; urlsplit
    # drops tabs): refused whichever host each would see.
    (f"https://evil.test\\@pizza-factory.cs329.click/api/support/{KEY}/report/{CODE}", False),
    (f"https://pizza-factory.cs329.click\\.evil.test/api/support/{KEY}/report/{CODE}", False),
    (f"https://pizza-factory.cs329.\tclick/api/support/{KEY}/report/{CODE}", False),
    (f"https://pizza-factory.cs329.click/api/support/{KEY}/report/{CODE}\u3002", False),
    # junk around a bracketed address (urlsplit reads only the brackets), and dot segments
    (f"http://evil.test[::1]:3001/api/report?apiKey={KEY}&fixCode={CODE}", False),
    ("https://pizza-factory.cs329.click/api/support/../report/..", False),
    ("https://pizza-factory.cs329.click/api/support/%2e%2e/report/x", False),
])
def test_link_policy(url, allowed):
    policy = LinkPolicy.default("http://127.0.0.1:3001")
    assert (policy.refusal(url) is None) is allowed


@pytest.mark.parametrize("status,body,result", [
    (200, {"message": "Problem resolved. Pizza is back on the menu!"}, "resolved"),
    (200, {"message": "No chaos currently executing"}, "no_chaos"),
    (400, {"message": "Problem unresolved"}, "unresolved"),
    (200, {"msg": "Chaos resolved"}, "resolved"),
    (500, {"msg": "Failed to resolve chaos"}, "unresolved"),
    (502, "<html>bad gateway</html>", "error"),
    (200, {"message": "something else"}, "error"),
])
def test_both_resolver_answer_forms(status, body, result):
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    assert classify_answer(status, raw).result == result


# --- refused links are never fetched ---------------------------------------------------------

def engine(factory_url: str, *, extra_hosts=(), journey=None, link_caller=call_link, store=None,
           **options) -> tuple[Sidecar, CollectorRegistry]:
    registry = CollectorRegistry()
    config = ProbeConfig(service_url="http://127.0.0.1:9", factory_url=factory_url)
    sidecar = Sidecar(config, LinkPolicy.default(factory_url, list(extra_hosts)),
                      SidecarOptions(**{"cooldown": 0, **options}), RecoveryMetrics(registry),
                      store or IncidentStore(None), journey=journey or good_journey,
                      link_caller=link_caller)
    return sidecar, registry


def good_journey(config) -> JourneyResult:
    return JourneyResult(True, time.time(), 0.01, (StepResult("order", True, 0.01, 200),))


def failed_report(link: str) -> ProbeReport:
    return ProbeReport(seq=1, success=False, started_at=time.time(), failed_step="order",
                       reason="factory_error", link=RecoveryLink(link, "followLinkToEndChaos"))


def attempts(registry, result):
    return value(generate_latest(registry).decode(), "pizza_recovery_attempts_total", result=result)


def test_link_to_a_host_off_the_allow_list_is_refused_and_never_fetched(servers):
    factory, evil = servers(), servers()
    sidecar, registry = engine(factory.base)
    sidecar.step(("report", failed_report(evil.link())))
    assert evil.requests == [] and factory.requests == []
    assert attempts(registry, "refused") == 1
    assert sidecar.incident.attempts[0]["result"] == "refused"


@pytest.mark.parametrize("link", [f"ftp://127.0.0.1/api/support/{KEY}/report/{CODE}",
                                  "file:///etc/passwd",
                                  f"gopher://127.0.0.1:70/api/support/{KEY}/report/{CODE}"])
def test_non_http_links_are_refused(servers, link):
    factory = servers()
    sidecar, registry = engine(factory.base)
    sidecar.step(("report", failed_report(link)))
    assert attempts(registry, "refused") == 1 and factory.requests == []


def test_redirect_to_another_host_is_refused_and_the_target_never_fetched(servers):
    evil = servers(host="127.0.0.2")  # loopback, another host
    factory = servers(redirect_to=evil.link("legacy"))
    sidecar, registry = engine(factory.base)
    sidecar.step(("report", failed_report(factory.link())))
    assert len(factory.requests) == 1 and evil.requests == []
    assert attempts(registry, "refused") == 1
    assert "redirect to another host" in sidecar.incident.attempts[0]["detail"]
    assert KEY not in json.dumps(sidecar.incident.to_json())


def test_redirect_on_the_same_host_is_followed(servers):
    factory = servers()
    factory.redirect_to = f"{factory.base}/api/report?apiKey={KEY}&fixCode={CODE}"  # same host:port
    outcome = call_link(RecoveryLink(factory.link(), "x"), LinkPolicy.default(factory.base))
    assert outcome.result == "resolved"
    assert factory.requests == [f"/api/support/{KEY}/report/{CODE}", f"/api/report?apiKey={KEY}&fixCode={CODE}"]


def test_allow_host_flag_admits_a_host(servers):
    other = servers(host="127.0.0.3")
    sidecar, registry = engine("http://127.0.0.1:1", extra_hosts=["127.0.0.3"])
    sidecar.step(("report", failed_report(other.link())))
    assert len(other.requests) == 1 and attempts(registry, "resolved") == 1


# --- cooldown, limits, dry run, kill switch --------------------------------------------------


def unresolved_caller(calls):
    def call(link, policy, **kwargs):
        calls.append(link.reveal())
        return LinkOutcome("unresolved", "Problem unresolved", 400)
    return call


def test_cooldown_and_max_attempts_per_incident():
    calls, clock = [], FakeClock()
    sidecar, registry = engine("https://pizza-factory.cs329.click", link_caller=unresolved_caller(calls),
                               cooldown=30, max_attempts=3)
    sidecar.clock = clock
    for i in range(10):
        report = failed_report(f"https://pizza-factory.cs329.click/api/support/{KEY}/report/code{i}")
        sidecar.step(("report", report))
        clock.now += 10
    # 100 s of failures with a new link every 10 s and a 30 s cooldown: calls at 0, 30, 60
    assert len(calls) == 3 and attempts(registry, "unresolved") == 3
    for i in range(10, 20):
        sidecar.step(("report", failed_report(f"https://pizza-factory.cs329.click/api/support/{KEY}/report/code{i}")))
        clock.now += 60
    assert len(calls) == 3  # max attempts per incident reached
    assert any("a human must look" in event for _, event in sidecar.incident.timeline)


def test_hourly_limit_spans_incidents():
    calls, clock = [], FakeClock()

    def resolving(link, policy, **kwargs):
        calls.append(link)
        return LinkOutcome("resolved", "ok", 200)

    sidecar, _ = engine("https://pizza-factory.cs329.click", link_caller=resolving,
                        max_attempts_per_hour=2)
    sidecar.clock = clock
    told = []
    sidecar.listener = lambda name, fields: told.append((name, fields))
    for i in range(4):
        clock.now += 60
        sidecar.step(("report", failed_report(f"https://pizza-factory.cs329.click/api/support/k/report/c{i}")))
    assert len(calls) == 2
    notes = [f["text"] for name, f in told if name == "note"]
    assert notes and "hourly limit" in notes[0]  # a stop is never silent
    clock.now += 3600
    sidecar.step(None)
    assert len(calls) == 2  # the link seen an hour ago is stale: never called
    sidecar.step(("report", failed_report("https://pizza-factory.cs329.click/api/support/k/report/c9")))
    assert len(calls) == 3  # the window slid: a fresh link is called


def test_same_link_is_not_called_twice():
    calls = []
    sidecar, _ = engine("https://pizza-factory.cs329.click", link_caller=unresolved_caller(calls))
    link = f"https://pizza-factory.cs329.click/api/support/{KEY}/report/{CODE}"
    for _ in range(5):
        sidecar.step(("report", failed_report(link)))
    assert len(calls) == 1


def test_dry_run_and_kill_switch_call_nothing(tmp_path):
    calls = []
    link = f"https://pizza-factory.cs329.click/api/support/{KEY}/report/{CODE}"
    sidecar, registry = engine("https://pizza-factory.cs329.click", link_caller=unresolved_caller(calls),
                               dry_run=True)
    sidecar.step(("report", failed_report(link)))
    assert calls == [] and attempts(registry, "dry_run") == 1
    assert value(generate_latest(registry).decode(), "pizza_recovery_enabled") == 0

    switch = tmp_path / "stop"
    switch.write_text("")
    sidecar, registry = engine("https://pizza-factory.cs329.click", link_caller=unresolved_caller(calls),
                               kill_switch_file=str(switch))
    sidecar.step(("report", failed_report(link)))
    assert calls == [] and value(generate_latest(registry).decode(), "pizza_recovery_enabled") == 0
    switch.unlink()
    sidecar.step(None)
    assert len(calls) == 1  # the switch is read live
    assert value(generate_latest(registry).decode(), "pizza_recovery_enabled") == 1


def test_verification_must_succeed_before_the_incident_closes():
    verdicts = iter([False, True])

    def journey(config):
        ok = next(verdicts)
        steps = (StepResult("order", ok, 0.01, 200 if ok else 500, None if ok else "factory_error"),)
        if ok:
            return JourneyResult(True, time.time(), 0.01, steps)
        return JourneyResult(False, time.time(), 0.01, steps, failed_step="order", reason="factory_error",
                             chaos_link=RecoveryLink("https://pizza-factory.cs329.click/api/support/k/report/new", "x"))

    def resolving(link, policy, **kwargs):
        return LinkOutcome("resolved", "ok", 200)

    sidecar, registry = engine("https://pizza-factory.cs329.click", journey=journey, link_caller=resolving)
    sidecar.step(("report", failed_report("https://pizza-factory.cs329.click/api/support/k/report/old")))
    assert sidecar.incident is not None  # the first verification failed: still open
    sidecar.step(None)  # the new link from the failed verification is called, then verified
    assert sidecar.incident is None and attempts(registry, "resolved") == 2
    assert value(generate_latest(registry).decode(), "pizza_recovery_duration_seconds_count") == 1



# --- a second incident right after a healed one: every limit holds, no limit is left over ------

def failing_with(link: str) -> JourneyResult:
    steps = (StepResult("order", False, 0.01, 500, "factory_error"),)
    return JourneyResult(False, time.time(), 0.01, steps, failed_step="order",
                         reason="factory_error", chaos_link=RecoveryLink(link, "x"))


def test_an_incident_right_after_a_healed_one_is_healed_at_once_within_every_limit():
    """Cooldown, attempts per incident, the hourly cap and spent links are all as shipped;
    none of them delays the next incident's first call (before: the cooldown was global)."""
    calls, clock = [], FakeClock()

    def resolving(link, policy, **kwargs):
        calls.append((link.reveal(), clock.now))
        return LinkOutcome("resolved", "ok", 200)

    def verifying(config):  # the verification order, on the sidecar's clock
        return JourneyResult(True, clock.time(), 0.01, (StepResult("order", True, 0.01, 200),))

    sidecar, registry = engine("https://pizza-factory.cs329.click", link_caller=resolving,
                               journey=verifying, cooldown=30, max_attempts=3,
                               max_attempts_per_hour=10)
    sidecar.clock = clock
    for i in range(3):  # three outages 2 s apart, each healed and verified at once
        link = f"https://pizza-factory.cs329.click/api/support/k/report/c{i}"
        clock.now += 2
        sidecar.step(("report", ProbeReport(seq=i + 1, success=False, started_at=clock.time(),
                                            failed_step="order", reason="factory_error",
                                            link=RecoveryLink(link, "x"), duration=0.5)))
        assert sidecar.incident is None and calls[-1] == (link, clock.now)
    assert attempts(registry, "resolved") == 3 and len(sidecar.closed) == 3
    # ... and the limits still hold: a spent link is never called again
    sidecar.step(("report", failed_report("https://pizza-factory.cs329.click/api/support/k/report/c0")))
    assert len(calls) == 3


def test_an_alert_right_after_a_healed_alert_incident_gets_its_own_confirming_order():
    """A webhook-only sidecar: the confirming order of a healed incident found the shop broken,
    so it says nothing of the next alert; before the fix that alert was dropped silently within
    the cooldown (and, deduplicated, never came again)."""
    clock = FakeClock()
    links = iter(f"https://pizza-factory.cs329.click/api/support/k/report/a{i}" for i in range(9))
    orders, calls = [], []
    verdicts = iter([False, True, False, True, True])  # confirm, verify, confirm, verify, confirm

    def journey(config):  # on the sidecar's clock
        ok = next(verdicts)
        orders.append(ok)
        result = good_journey(config) if ok else failing_with(next(links))
        return dataclasses.replace(result, started_at=clock.time())

    def resolving(link, policy, **kwargs):
        calls.append(link.reveal())
        return LinkOutcome("resolved", "ok", 200)

    sidecar, _ = engine("https://pizza-factory.cs329.click", journey=journey,
                        link_caller=resolving, cooldown=30)
    sidecar.clock = clock
    sidecar.step(("alert", ("firing", clock.monotonic())))
    assert sidecar.incident is None and len(sidecar.closed) == 1 and orders == [False, True]
    clock.now += 5  # a new outage, a new alert, well within the 30 s cooldown
    sidecar.step(("alert", ("firing", clock.monotonic())))
    assert sidecar.incident is None and len(sidecar.closed) == 2
    assert orders == [False, True, False, True] and len(calls) == 2
    # the flood limit holds: one confirming order that found the shop working, then no more
    clock.now += 5
    sidecar.step(("alert", ("firing", clock.monotonic())))
    for _ in range(5):
        clock.now += 1
        sidecar.step(("alert", ("firing", clock.monotonic())))
    assert orders == [False, True, False, True, True] and len(calls) == 2


def test_the_sidecar_tells_of_the_call_before_it_is_made():
    told = []

    def resolving(link, policy, **kwargs):
        told.append(("factory", {}))  # the factory's chaos ends during the call
        return LinkOutcome("resolved", "ok", 200)

    sidecar, _ = engine("https://pizza-factory.cs329.click", link_caller=resolving)
    sidecar.listener = lambda name, fields: told.append((name, fields))
    report = failed_report("https://pizza-factory.cs329.click/api/support/k/report/c")
    sidecar.step(("report", (report, report.started_at + 0.002)))
    names = [name for name, _ in told]
    assert names == ["incident_opened", "calling", "factory", "attempt", "incident_resolved"]
    opened, resolved = told[0][1], told[-1][1]
    assert opened["received_at"] == report.started_at + 0.002
    assert resolved["time_to_recover"] == resolved["duration"] > 0
    assert "k/report/c" not in repr(told)  # the link only redacted

# --- the webhook -----------------------------------------------------------------------------

def payload(status="firing", starts_at="2026-11-24T10:00:00Z", fingerprint="abc123",
            name="PizzaSyntheticOrderFailing"):
    return {"version": "4", "groupKey": "{}:{}", "status": status, "receiver": "sidecar",
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "",
            "truncatedAlerts": 0,
            "alerts": [{"status": status, "labels": {"alertname": name, "severity": "critical"},
                        "annotations": {}, "startsAt": starts_at, "endsAt": "0001-01-01T00:00:00Z",
                        "generatorURL": "", "fingerprint": fingerprint}]}


@pytest.fixture
def webhook(simulator):
    registry = CollectorRegistry()
    config = ProbeConfig(service_url=simulator.service_url, factory_url=simulator.factory_url)
    sidecar = Sidecar(config, LinkPolicy.default(simulator.factory_url), SidecarOptions(cooldown=0),
                      RecoveryMetrics(registry), IncidentStore(None))
    server = sidecar_server("127.0.0.1", 0, registry, sidecar, "hook-token-42").start()
    stop = threading.Event()
    sidecar.start(stop)
    yield server.url("/alertmanager"), sidecar, registry
    stop.set()
    server.stop()


def test_webhook_without_token_is_401_and_triggers_nothing(webhook, simulator):
    url, sidecar, registry = webhook
    simulator.factory.set_chaos("fail")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic !!!"},
                    {"Authorization": "Basic " + base64.b64encode(b"am:wrong").decode()}):
        answer = requests.post(url, json=payload(), headers=headers, timeout=5)
        assert answer.status_code == 401
    assert sidecar.events.empty() and simulator.factory.link_calls == 0
    assert value(generate_latest(registry).decode(), "pizza_recovery_alerts_received_total", status="firing") == 0


@pytest.mark.parametrize("body", [b"not json", b"[]", json.dumps({"version": "3", "alerts": []}).encode(),
                                  json.dumps({"version": "4"}).encode(),
                                  json.dumps({"version": "4", "alerts": [{"status": "weird"}]}).encode()])
def test_malformed_webhook_is_400(webhook, body):
    url, sidecar, _ = webhook
    answer = requests.post(url, data=body, headers={"Authorization": "Bearer hook-token-42",
                                                     "Content-Type": "application/json"}, timeout=5)
    assert answer.status_code == 400 and "error" in answer.json()
    assert sidecar.events.empty()


def test_fifty_repeated_webhooks_cause_one_recovery(webhook, simulator):
    url, sidecar, registry = webhook
    simulator.factory.set_chaos("fail")
    auth = "Basic " + base64.b64encode(b"alertmanager:hook-token-42").decode()
    session = requests.Session()
    for _ in range(50):
        answer = session.post(url, json=payload(), headers={"Authorization": auth}, timeout=5)
        assert answer.status_code == 200
    poll(lambda: simulator.factory.resolutions == 1 and sidecar.incident is None and sidecar.events.empty(),
         what="one recovery")
    text = generate_latest(registry).decode()
    assert simulator.factory.link_calls == 1
    assert value(text, "pizza_recovery_incidents_total") == 1
    assert value(text, "pizza_recovery_alerts_received_total", status="firing") == 1
    closed = sidecar.snapshot()[1][-1]
    assert closed.detected_by == "alert" and closed.alert_fired_at is not None
    answer = session.post(url, json=payload(status="resolved"), headers={"Authorization": auth}, timeout=5)
    assert answer.status_code == 200
    poll(lambda: sidecar.snapshot()[1][-1].alert_resolved_at is not None, what="the resolution recorded")


def test_webhook_answers_at_once_while_the_work_runs(webhook, make_simulator):
    url, sidecar, _ = webhook
    started = time.monotonic()
    answer = requests.post(url, json=payload(fingerprint="other"),
                           headers={"Authorization": "Bearer hook-token-42"}, timeout=5)
    assert answer.status_code == 200 and answer.json()["new"] == 1
    assert time.monotonic() - started < 2


def test_parse_webhook_ignores_nothing_it_should_not():
    events = parse_webhook(json.dumps(payload()).encode())
    assert [(e.status, e.name, e.fingerprint) for e in events] == [("firing", "PizzaSyntheticOrderFailing", "abc123")]
    no_fingerprint = payload()
    del no_fingerprint["alerts"][0]["fingerprint"]
    assert parse_webhook(json.dumps(no_fingerprint).encode())[0].fingerprint
    with pytest.raises(WebhookError):
        parse_webhook(b"\xff")


def test_token_matches():
    assert token_matches("t", "Bearer t") and token_matches("t", "bearer t")
    assert token_matches("t", "Basic " + base64.b64encode(b"any:t").decode())
    assert not token_matches(None, "Bearer ") and not token_matches("t", "Bearer u")


# --- the exporter's hand-off -----------------------------------------------------------------

def test_handoff_needs_the_token_when_one_is_set():
    latest = LatestJourney()
    link = f"https://pizza-factory.cs329.click/api/support/{KEY}/report/{CODE}"
    latest(JourneyResult(False, time.time(), 0.1, (), failed_step="order", reason="factory_error",
                         chaos_link=RecoveryLink(link, "followLinkToEndChaos")))
    with_token = exporter_server("127.0.0.1", 0, CollectorRegistry(), None, latest, "handoff-9").start()
    open_server = exporter_server("127.0.0.1", 0, CollectorRegistry(), None, latest, None).start()
    try:
        url = with_token.url("/recovery/latest")
        assert requests.get(url, timeout=5).status_code == 403
        assert requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=5).status_code == 403
        answer = requests.get(url, headers={"Authorization": "Bearer handoff-9"}, timeout=5)
        assert answer.status_code == 200 and answer.json()["chaos_link"] == link
        assert requests.get(open_server.url("/recovery/latest"), timeout=5).json()["chaos_link"] == link
        # the long poll waits for a newer journey, then answers
        started = time.monotonic()
        answer = requests.get(open_server.url("/recovery/latest?after=1&wait=0.3"), timeout=5)
        assert answer.json()["seq"] == 1 and time.monotonic() - started >= 0.25
    finally:
        with_token.stop()
        open_server.stop()
    assert not handoff_allowed(None, "", "10.1.2.3") and handoff_allowed(None, "", "127.0.0.1")
    assert handoff_allowed(None, "", "::1") and not handoff_allowed("t", "", "127.0.0.1")


def test_the_handoff_carries_the_journeys_duration_and_refuses_a_negative_one():
    report = ProbeReport(seq=3, success=False, started_at=1000.0, failed_step="order",
                         reason="factory_error", duration=0.25)
    assert ProbeReport.from_json(report.to_json()) == report and report.ended_at == 1000.25
    old = {k: v for k, v in report.to_json().items() if k != "duration"}  # an older exporter
    assert ProbeReport.from_json(old).duration is None and ProbeReport.from_json(old).ended_at == 1000.0
    for bad in (-1, "0.2", True, float("inf")):
        with pytest.raises(ValueError):
            ProbeReport.from_json({**report.to_json(), "duration": bad})
