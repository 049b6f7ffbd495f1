"""The live status page on ``/`` of the exporter and the sidecar (issue 15, item 1).

The browser test runs the simulator, ``serve`` and ``sidecar`` as real processes on loopback and
watches the page in a real headless Chromium; the others read the page and ``/api/status`` with
plain HTTP (JavaScript off) from an exporter fed journeys by hand with a fake clock."""

from __future__ import annotations

import concurrent.futures
import json
import re
import socket
import threading
import time

import pytest
import requests
from prometheus_client import CollectorRegistry

from exporter import statuspage
from exporter.result import STEPS, JourneyResult, StepResult
from exporter.statuspage import NO_DATA, UP, RecentJourneys, Sample, target_statuses
from exporter.web import History, StatusOptions, exporter_server

from conftest import FakeClock, poll

PASSWORD = "hunter2-status-page"
VENDOR_KEY = "status-page-vendor-key"
INTERVAL = 0.5


def journey(clock: FakeClock, ok: bool = True, reason: str = "factory_error", step: str = "order",
            detail: str = "500 Failed to fulfill order at factory") -> JourneyResult:
    names = ("health", "login", "menu", "franchises", "order", "verify", "logout")
    upto = names if ok else names[: names.index(step) + 1] if step in names else names[:1]
    steps = tuple(StepResult(n, ok or n != upto[-1], 0.01 * (i + 1)) for i, n in enumerate(upto))
    result = JourneyResult(ok, clock.time(), sum(s.duration for s in steps), steps,
                           None if ok else step, None if ok else reason, "" if ok else detail)
    return result


@pytest.fixture
def page_server():
    """An exporter's HTTP server whose journeys the test hands in, and its base URL."""
    started = []

    def start(history: History, **options):
        server = exporter_server("127.0.0.1", 0, CollectorRegistry(), history,
                                 status=StatusOptions(**options)).start()
        started.append(server)
        return f"http://127.0.0.1:{server.port}"

    yield start
    for server in started:
        server.stop()


# --- what the page says, with JavaScript off -------------------------------------------------


def test_first_paint_without_javascript_has_the_headline_strip_bar_and_chart(page_server):
    clock = FakeClock()
    history = History(clock=clock)
    for ok in (True, True, False, False):
        history(journey(clock, ok))
        clock.now += 15
    url = page_server(history, targets=[""], interval=15)
    page = requests.get(url + "/", timeout=5)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    text = page.text
    since = time.strftime("%H:%M", time.gmtime(clock.time() - 30))  # the first failed journey
    assert re.search(rf"<strong class='state'>FAILING</strong> since <time [^>]*>{since} UTC"
                     r"</time> \(for 30 s\) at <span class='step'>order</span>: "
                     r"<span class='reason'>factory_error</span>", text), text
    assert "<title>FAILING · pizza-probe</title>" in text
    assert text.count("<rect class='ok'") == 2 and text.count("<rect class='fail'") == 2  # strip
    assert "<title>" in text and "failed at order: factory_error" in text  # strip tooltips
    assert "class='bar'" in text and "order: 50 ms (failed)" in text  # the timing bar
    assert "<polyline class='latency'" in text and text.count("<circle class='fail'") == 2
    assert "<noscript><meta http-equiv='refresh'" in text  # JS off: it still refreshes


def test_one_target_mode_has_no_empty_target_heading_or_column(page_server):
    clock = FakeClock()
    history = History(clock=clock)
    history(journey(clock))
    text = requests.get(page_server(history, targets=[""]) + "/", timeout=5).text
    assert "<h2></h2>" not in text and "<th>target</th>" not in text
    assert "<strong class='state'>UP</strong>" in text
    named = History(clock=clock)
    named.of("shop-a")(journey(clock))
    text = requests.get(page_server(named, targets=["shop-a", "shop-b"]) + "/", timeout=5).text
    assert "<h2>shop-a</h2>" in text and "<h2>shop-b</h2>" in text
    assert "<th>target</th>" in text
    assert re.search(r"<h2>shop-b</h2><p class='headline'><strong class='state'>NO DATA", text)


def test_api_status_carries_the_state_since_and_the_same_fragment(page_server):
    clock = FakeClock()
    history = History(clock=clock)
    history(journey(clock, ok=False))
    clock.now += 60
    history(journey(clock, ok=True))
    clock.now += 30
    answer = requests.get(page_server(history, interval=15) + statuspage.API_PATH, timeout=5)
    assert answer.headers["Content-Type"] == "application/json"
    data = answer.json()
    (target,) = data["targets"]
    assert target["state"] == UP and target["since"] == clock.time() - 30
    assert target["headline"].startswith("UP since ") and target["headline"].endswith("(for 30 s)")
    assert [cell["success"] for cell in target["strip"]] == [False, True]
    assert data["poll_seconds"] == 5.0 and data["title"] == "UP · pizza-probe"
    assert "<strong class='state'>UP</strong>" in data["html"]


def test_strict_content_security_policy_on_the_page_its_json_and_its_assets(page_server):
    url = page_server(History(clock=FakeClock()))
    for path in ("/", statuspage.API_PATH, "/static/status.js", "/static/status.css"):
        answer = requests.get(url + path, timeout=5)
        assert answer.status_code == 200, path
        csp = answer.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        assert "style-src 'self'" in csp and "unsafe" not in csp
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert requests.get(url + "/static/status.js", timeout=5).headers["Content-Type"].startswith(
        "text/javascript")
    assert requests.get(url + "/static/nothing.js", timeout=5).status_code == 404


def test_the_page_loads_nothing_from_elsewhere_and_has_no_inline_script_or_style(page_server):
    clock = FakeClock()
    history = History(clock=clock)
    history(journey(clock, ok=False))
    url = page_server(history, sidecar_url="http://127.0.0.1:9817")
    text = requests.get(url + "/", timeout=5).text
    sources = re.findall(r"""\b(?:src|href)=['"]([^'"]*)['"]""", text)
    assert "/static/status.js" in sources and "/static/status.css" in sources
    assert [s for s in sources if "://" in s] == ["http://127.0.0.1:9817/"] * 2  # two links
    assert not re.search(r"<script>|<script [^>]*>[^<]|<style|\sstyle=|\son\w+=", text)
    assert "://" not in statuspage.STATUS_CSS and "@import" not in statuspage.STATUS_CSS
    assert "url(" not in statuspage.STATUS_CSS and "://" not in statuspage.STATUS_JS


def test_every_other_answer_is_nosniff_and_may_load_nothing(page_server):
    # Only the page, its JSON and its assets had these headers: /metrics, /healthz, the 404s and
    # 405s went without, though a 404 or an error page is what a browser is sent to most easily.
    url = page_server(History(clock=FakeClock()))
    answers = [requests.get(url + path, timeout=5) for path in ("/metrics", "/healthz",
                                                                 "/nothing<script>", "/probe")]
    answers += [requests.post(url + "/metrics", timeout=5),
                requests.get(url + "/recovery/latest", timeout=5)]
    for answer in answers:
        assert answer.headers["X-Content-Type-Options"] == "nosniff", answer.url
        assert answer.headers["Content-Security-Policy"].startswith("default-src 'none'"), answer.url
    page = requests.get(url + "/", timeout=5)  # its own policy, once (two would both apply)
    assert page.headers["Content-Security-Policy"] == statuspage.CSP


def test_phone_width_viewport_and_responsive_css(page_server):
    text = requests.get(page_server(History(clock=FakeClock())) + "/", timeout=5).text
    assert "<meta name='viewport' content='width=device-width, initial-scale=1'>" in text
    assert "@media (max-width:" in statuspage.STATUS_CSS


def test_a_hostile_reason_holding_the_password_is_masked_on_the_page_and_in_the_json(page_server):
    clock = FakeClock()
    history = History(clock=clock)
    hostile = f"reason {PASSWORD} <script>alert(1)</script>"
    history.of(f"shop-{PASSWORD}")(journey(clock, ok=False, reason=hostile, step=f"s{PASSWORD}",
                                           detail=f"the body said {PASSWORD}"))
    url = page_server(history, targets=[], secrets=lambda: (PASSWORD,))
    page = requests.get(url + "/", timeout=5).text
    api = requests.get(url + statuspage.API_PATH, timeout=5).text
    for text in (page, api):
        assert PASSWORD not in text and "***" in text
    for html in (page, json.loads(api)["html"]):
        assert "<script>alert" not in html and "&lt;script&gt;alert" in html  # escaped
    assert json.loads(api)["targets"][0]["last"]["reason"] == "reason *** <script>alert(1)</script>"


def test_a_flood_of_page_loads_and_polls_draws_the_page_once_per_change(page_server):
    # 40 targets' journeys take ~0.1 s to draw; a hundred clients asking at once each had
    # their own drawing, and /healthz waited seconds behind them. Now they share one drawing
    # per path while the journeys and the clock's second stay the same.
    clock = FakeClock()
    history = History(clock=clock)
    history(journey(clock, ok=False))
    drawn = []

    def secrets():  # read once per drawing
        drawn.append(1)
        return (PASSWORD,)

    url = page_server(history, secrets=secrets)
    paths = ["/", statuspage.API_PATH] * 50
    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(lambda path: requests.get(url + path, timeout=20), paths))
    assert {a.status_code for a in answers} == {200}
    assert len({a.text for a in answers if a.url.endswith("/")}) == 1
    assert len(drawn) == 2  # once for the page, once for its JSON
    history(journey(clock, ok=True))  # a new journey is shown at once
    assert requests.get(url + statuspage.API_PATH, timeout=5).json()["targets"][0]["state"] == UP
    clock.now += 60  # and so is a new second
    assert "(for 1 min)" in requests.get(url + "/", timeout=5).text
    assert len(drawn) == 4


def test_page_loads_that_hold_every_worker_leave_healthz_and_metrics_answered(page_server):
    # "/" was a quick path, answered by the workers kept for /healthz and /metrics: 80 page
    # loads stuck drawing took them all, and the healthcheck waited for the page.
    clock = FakeClock()
    history = History(clock=clock)
    history(journey(clock))
    release = threading.Event()

    def secrets():  # a drawing that takes as long as the test says
        release.wait(30)
        return ()

    url = page_server(history, secrets=secrets)
    port = int(url.rsplit(":", 1)[1])
    loads = []
    try:
        for _ in range(80):  # more than the 64 general workers and the 4 reserved ones
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            loads.append(sock)
        assert requests.get(url + "/healthz", timeout=5).text == "ok\n"
        assert requests.get(url + "/metrics", timeout=5).status_code == 200
    finally:
        release.set()
        for sock in loads:
            sock.close()


# --- the model, with a fake clock -----------------------------------------------------------


def test_recent_journeys_keep_the_last_hour_and_at_most_the_cap():
    clock = FakeClock()
    recent = RecentJourneys(clock, max_age=3600, cap=5)
    for _ in range(8):
        recent.add(Sample("", clock.time(), True))
        clock.now += 1
    assert [s.started_at - 1_700_000_000 for s in recent.samples()] == [1003, 1004, 1005, 1006,
                                                                         1007]  # the cap
    clock.now += 3597  # now 4605: the hour goes back to 1005
    assert [s.started_at - 1_700_000_000 for s in recent.samples()] == [1005, 1006, 1007]


def test_only_each_targets_newest_journey_keeps_its_steps():
    # An hour at a 1 s interval is 2,000 journeys (the cap) of 7 steps each: kept whole, they
    # held about 4 MiB of `serve`'s memory; the page draws the steps of the newest one only.
    clock = FakeClock()
    recent = RecentJourneys(clock)
    steps = tuple(statuspage.Step(name, 0.01, True) for name in STEPS)
    for index in range(2000):
        target = ("a", "b")[index % 2]
        recent.add(Sample(target, clock.time(), index != 1500, 0.07, steps=steps,
                          order_seconds=0.01))
        clock.now += 1
    kept = recent.samples()
    assert len(kept) == 2000
    assert [s.target for s in kept if s.steps] == ["a", "b"]  # the two newest, one per target
    assert kept[-1].steps == steps and kept[-2].steps == steps
    assert not kept[1500].success and kept[1500].started_at  # older ones keep result and time
    statuses = target_statuses(kept, ["a", "b"], clock.time(), stale_after=10.0,
                               started_at=recent.started_at)
    assert all(status.last is not None and status.last.steps == steps for status in statuses)


def test_the_latency_chart_keeps_the_slowest_order_of_each_slice_and_every_failure():
    samples = [Sample("", 1000.0 + i, i != 1234, order_seconds=0.1 + (i == 777) * 5)
               for i in range(2000)]
    points = statuspage.latency_points(samples, limit=300)
    assert len(points) <= 300
    assert max(p.order_seconds for p in points) == 5.1  # the one slow order survives
    assert [p for p in points if not p.ok] and sum(not p.ok for p in points) == 1
    assert [p.at for p in points] == sorted(p.at for p in points)
    assert statuspage.latency_points(samples[:10]) == tuple(
        statuspage.Point(s.started_at, 0.1, True) for s in samples[:10])


def test_no_data_before_the_first_journey_and_when_journeys_stop():
    clock = FakeClock()
    start = clock.time()
    (status,) = target_statuses([], [""], clock.time(), stale_after=100, started_at=start)
    assert status.state == NO_DATA and status.since == start
    sample = Sample("", clock.time(), True, 1.0)
    clock.now += 50
    assert target_statuses([sample], [""], clock.time(), 100, start)[0].state == UP
    clock.now += 100
    (status,) = target_statuses([sample], [""], clock.time(), 100, start)
    assert status.state == NO_DATA and status.since == sample.ended_at


# --- a real browser ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def headline(tab) -> str:
    return tab.evaluate("(document.querySelector('section.target .headline') || {}).textContent"
                        " || ''")


def test_the_page_shows_failing_with_step_and_reason_then_up_in_a_real_browser(
        processes, tmp_path):
    from browser import Browser

    sim = processes.start("simulate", "--factory-listen", "127.0.0.1:0", "--vendor-key",
                          VENDOR_KEY)
    factory = poll(lambda: re.search(r"factory\s+(http://127\.0\.0\.1:\d+)", sim.logs()),
                   what="the factory URL").group(1)
    target = ["--service-url", sim.url, "--factory-url", factory]
    kill_switch = tmp_path / "kill-switch"
    kill_switch.touch()  # the sidecar holds back until the test has seen FAILING
    exporter_port = free_port()
    sidecar = processes.start("sidecar", *target, "--exporter-url",
                              f"http://127.0.0.1:{exporter_port}", "--kill-switch-file",
                              str(kill_switch), "--cooldown", "1s")
    exporter = processes.start("serve", *target, "--interval", f"{INTERVAL}s", "--listen",
                               f"127.0.0.1:{exporter_port}", "--sidecar-url", sidecar.url)

    browser = Browser(tmp_path / "profile")
    try:
        page = browser.tab(exporter.url + "/")
        side = browser.tab(sidecar.url + "/", width=390, height=844, mobile=True)  # a phone
        for tab in (page, side):
            tab.evaluate("window.pizzaProbeMarker = 1")  # gone if the page ever reloads
        poll(lambda: headline(page).startswith("UP since"), what="UP", timeout=15)
        assert page.evaluate("document.querySelector('a[href$=\"/\"][href^=\"http\"]').href") \
            == sidecar.url + "/"

        chaos_at = time.time()
        answer = requests.put(f"{factory}/api/vendor/chaos/fail", timeout=5,
                              headers={"Authorization": f"Bearer {VENDOR_KEY}"})
        assert answer.status_code == 200
        failing = poll(lambda: (h := headline(page)).startswith("FAILING") and h, timeout=15,
                       what="FAILING on the page", interval=0.02)
        seen_after = time.time() - chaos_at
        assert "at order: factory_error" in failing, failing
        since = page.evaluate("parseFloat(document.querySelector('section.target')"
                              ".getAttribute('data-since'))")
        # the failing streak began with the first journey that started after the chaos, within
        # one interval (plus the scheduler's jitter, a tenth of it, and a second of slack for a
        # journey still in flight on a loaded machine), or with one in flight when it began
        assert chaos_at - 1.0 <= since <= chaos_at + 1.1 * INTERVAL + 1.0, (since, chaos_at)
        assert page.evaluate("document.querySelector('.strip rect.fail title').textContent") \
            .count("failed at order: factory_error") == 1
        poll(lambda: side.evaluate("!!document.querySelector('[data-incident=open]')"),
             what="the open incident on the sidecar's page")
        shots = {"exporter-failing": page.screenshot(tmp_path / "exporter-failing.png"),
                 "sidecar-incident": side.screenshot(tmp_path / "sidecar-incident.png")}

        healed_at = time.time()
        kill_switch.unlink()  # the sidecar calls the link and verifies a good order
        poll(lambda: headline(page).startswith("UP since"), timeout=20, what="UP again")
        poll(lambda: side.evaluate("!!document.querySelector('[data-recovery=last]') && "
                                   "!!document.querySelector('[data-incident=none]')"),
             timeout=20, what="the last recovery on the sidecar's page")
        up_after = time.time() - healed_at
        shots["exporter-up"] = page.screenshot(tmp_path / "exporter-up.png")
        shots["sidecar-recovered"] = side.screenshot(tmp_path / "sidecar-recovered.png")
        phone = browser.tab(exporter.url + "/", width=390, height=844, mobile=True)
        assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        shots["exporter-phone"] = phone.screenshot(tmp_path / "exporter-phone.png")

        for tab in (page, side):
            assert tab.loads == 1 and tab.evaluate("window.pizzaProbeMarker") == 1  # no reload
            assert not [t for t in tab.console() if "Content Security Policy" in t or
                        "Refused" in t], tab.console()
        assert side.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        print(f"\nthe failing streak began {since - chaos_at:+.2f}s from the chaos; "
              f"FAILING shown {seen_after:.2f}s after chaos started; UP shown "
              f"{up_after:.2f}s after the kill switch was lifted")
        for name, path in shots.items():
            print(f"screenshot {name}: {path}")
    finally:
        browser.close()
    assert "Traceback" not in exporter.logs() + sidecar.logs()


def test_the_sidecar_page_shows_the_open_incident_masked_and_says_when_it_has_no_exporter():
    from exporter.config import ProbeConfig
    from exporter.handoff import ProbeReport
    from exporter.records import IncidentStore
    from exporter.recovery import LinkPolicy
    from exporter.sidecar import RecoveryMetrics, Sidecar, SidecarOptions
    from exporter.sidecar_web import SidecarStatus, sidecar_server

    registry = CollectorRegistry()
    factory = "http://127.0.0.1:9"
    sidecar = Sidecar(ProbeConfig(factory_url=factory, password=PASSWORD),
                      LinkPolicy.default(factory), SidecarOptions(dry_run=True),
                      RecoveryMetrics(registry), IncidentStore(None))
    sidecar.step(("report", ProbeReport(1, False, time.time(), "order", f"odd {PASSWORD}",
                                        f"the body said {PASSWORD}")))  # a hostile hand-off
    assert sidecar.incident is not None
    server = sidecar_server("127.0.0.1", 0, registry, sidecar, None, status=SidecarStatus(
        secrets=lambda: (PASSWORD,))).start()
    try:
        page = requests.get(server.url("/"), timeout=5)
        data = requests.get(server.url(statuspage.API_PATH), timeout=5).json()
    finally:
        server.stop()
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert "data-incident='open'" in page.text and sidecar.incident.id in page.text
    assert "--exporter-url is empty" in page.text and "(dry run)" in page.text
    assert data["incident"]["id"] == sidecar.incident.id and data["last_recovery"] is None
    assert PASSWORD not in page.text + json.dumps(data)
