"""The live status page on ``/`` of the exporter and the sidecar, and its ``/api/status``.

What a person without Grafana wants at a glance: is the shop UP, FAILING or is there NO DATA,
since when; the last journey's steps as a timing bar; the last journeys as an uptime strip; the
order latency over the last hour; the open incident and the last recovery (the sidecar's page).

One renderer: the server draws the page (HTML and inline SVG, no inline style or script) from
the plain journey results it already keeps, so it reads the same with JavaScript off.
``/static/status.js`` polls ``/api/status``, which carries the data and the same fragment freshly
drawn, and swaps it in: no reload. Nothing is fetched from elsewhere (a strict
Content-Security-Policy says so), and every free text goes through :func:`redact.scrub`.
"""

from __future__ import annotations

import dataclasses
import datetime
import html
import json
import threading
from collections.abc import Callable, Hashable, Iterable, Sequence
from urllib.parse import urlsplit

from .clock import Clock, SystemClock
from .handoff import ProbeReport
from .redact import scrub
from .result import REASONS, STEPS, JourneyResult

UP, FAILING, NO_DATA = "UP", "FAILING", "NO DATA"
API_PATH = "/api/status"
STATIC_PREFIX = "/static/"
MAX_AGE = 3600.0  # journeys kept for the chart: the last hour
MAX_SAMPLES = 2000  # and at most this many, all targets together
STRIP_LENGTH = 60  # cells of the uptime strip
CHART_POINTS = 300  # the latency chart's most points: the slowest order of each slice of time
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
# Sent with the page, its JSON and its assets.
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


@dataclasses.dataclass(frozen=True, slots=True)
class Step:
    name: str
    seconds: float
    ok: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Sample:
    """One journey as the page shows it: from a :class:`JourneyResult` (the exporter) or a
    hand-off :class:`ProbeReport` (the sidecar, which knows the order step's time only)."""

    target: str
    started_at: float
    success: bool
    duration: float | None = None
    failed_step: str | None = None
    reason: str | None = None
    detail: str = ""
    steps: tuple[Step, ...] = ()
    order_seconds: float | None = None

    @classmethod
    def of_result(cls, result: JourneyResult, target: str = "") -> Sample:
        return cls(target, result.started_at, result.success, result.duration, result.failed_step,
                   result.reason, result.detail,
                   tuple(Step(s.name, s.duration, s.ok) for s in result.steps),
                   result.step_durations.get("order"))

    @classmethod
    def of_report(cls, report: ProbeReport, target: str = "") -> Sample:
        return cls(target, report.started_at, report.success, None, report.failed_step,
                   report.reason, report.detail, (), report.order_seconds)

    @property
    def ended_at(self) -> float:
        return self.started_at + (self.duration or 0.0)


class RecentJourneys:
    """The journeys of the last ``max_age`` seconds, at most ``cap`` of them: an observer."""

    def __init__(self, clock: Clock | None = None, max_age: float = MAX_AGE,
                 cap: int = MAX_SAMPLES) -> None:
        self.clock = clock or SystemClock()
        self.max_age = max_age
        self.cap = cap
        self.started_at = self.clock.time()  # NO DATA since then, until a journey ends
        self._samples: list[Sample] = []
        self._lock = threading.Lock()
        self.version = 0  # one more at each journey: a drawing of an older version is stale

    def add(self, sample: Sample) -> None:
        with self._lock:
            # Only a target's newest journey shows its steps (the timing bar): an older one
            # keeps its time, result and reason for the strip and the chart, not its seven steps,
            # so an hour of journeys (up to the cap) holds a few hundred KiB, not megabytes.
            for index in range(len(self._samples) - 1, -1, -1):
                older = self._samples[index]
                if older.target == sample.target:
                    if older.steps:
                        self._samples[index] = dataclasses.replace(older, steps=())
                    break
            self._samples.append(sample)
            self.version += 1
            self._prune()

    def samples(self) -> list[Sample]:
        """Oldest first."""
        with self._lock:
            self._prune()
            return list(self._samples)

    def _prune(self) -> None:
        oldest = self.clock.time() - self.max_age
        keep = [s for s in self._samples[-self.cap:] if s.started_at >= oldest]
        if len(keep) != len(self._samples):
            self._samples = keep


# --- what the page says --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Point:
    at: float
    order_seconds: float
    ok: bool


def latency_points(journeys: Sequence[Sample], limit: int = CHART_POINTS) -> tuple[Point, ...]:
    """The order times, at most ``limit``: of each of ``limit`` equal slices of time, the
    slowest order (a failure in a slice marks its point failed)."""
    points = [Point(s.started_at, s.order_seconds, s.success) for s in journeys
              if s.order_seconds is not None]
    if len(points) <= limit:
        return tuple(points)
    first, width = points[0].at, (points[-1].at - points[0].at) / limit or 1.0
    slices: dict[int, Point] = {}
    for point in points:
        key = min(limit - 1, int((point.at - first) / width))
        held = slices.get(key)
        if held is None:
            slices[key] = point
        else:
            slowest = point if point.order_seconds > held.order_seconds else held
            slices[key] = dataclasses.replace(slowest, ok=held.ok and point.ok)
    return tuple(slices[key] for key in sorted(slices))


@dataclasses.dataclass(frozen=True)
class TargetStatus:
    target: str  # "" in one-target mode: no target heading, no target column
    state: str  # UP, FAILING or NO_DATA
    since: float
    journeys: tuple[Sample, ...]  # the last STRIP_LENGTH, oldest first, secrets masked
    latency: tuple[Point, ...] = ()  # of the last hour, at most CHART_POINTS

    @property
    def last(self) -> Sample | None:
        return self.journeys[-1] if self.journeys else None


def _safe(sample: Sample, secrets: Sequence[str]) -> Sample:
    """Every free text masked: a reason or step not of ours, a detail, a target."""
    def known(value: str | None, names: Iterable[str]) -> str | None:
        return value if value is None or value in names else scrub(value, secrets, 60)

    return dataclasses.replace(
        sample, target=scrub(sample.target, secrets, 80),
        failed_step=known(sample.failed_step, STEPS), reason=known(sample.reason, REASONS),
        detail=scrub(sample.detail, secrets),
        steps=tuple(dataclasses.replace(s, name=known(s.name, STEPS) or "") for s in sample.steps))


def target_statuses(samples: Sequence[Sample], targets: Sequence[str], now: float,
                    stale_after: float, started_at: float,
                    secrets: Sequence[str] = ()) -> list[TargetStatus]:
    """Each target's state and since when: the streak the newest journey belongs to. NO DATA
    before the first journey, and when the newest ended more than ``stale_after`` ago."""
    by_target: dict[str, list[Sample]] = {t: [] for t in targets}
    for sample in samples:
        by_target.setdefault(sample.target, []).append(sample)
    statuses = []
    for target, journeys in by_target.items():
        name = scrub(target, secrets, 80)
        shown = tuple(_safe(s, secrets) for s in journeys[-STRIP_LENGTH:])  # only these: fast
        latency = latency_points(journeys)
        if not journeys:
            statuses.append(TargetStatus(name, NO_DATA, started_at, shown, latency))
            continue
        last = journeys[-1]
        if now - last.ended_at > stale_after:
            statuses.append(TargetStatus(name, NO_DATA, last.ended_at, shown, latency))
            continue
        since = last.started_at
        for sample in reversed(journeys):
            if sample.success != last.success:
                break
            since = sample.started_at
        statuses.append(TargetStatus(name, UP if last.success else FAILING, since, shown, latency))
    return statuses


def clock_text(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%H:%M UTC")


def iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat(timespec="seconds") \
        .replace("+00:00", "Z")


def for_text(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = int(seconds // 60)
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def headline(status: TargetStatus, now: float) -> str:
    text = f"{status.state} since {clock_text(status.since)} (for {for_text(now - status.since)})"
    last = status.last
    if status.state == FAILING and last is not None:
        text += f" at {last.failed_step or '?'}: {last.reason or '?'}"
    return text


def _sample_json(sample: Sample) -> dict:
    return {"target": sample.target, "started_at": sample.started_at, "success": sample.success,
            "duration_seconds": sample.duration, "failed_step": sample.failed_step,
            "reason": sample.reason, "detail": sample.detail,
            "order_seconds": sample.order_seconds,
            "steps": [{"step": s.name, "seconds": s.seconds, "ok": s.ok} for s in sample.steps]}


def _cell_title(sample: Sample) -> str:
    when = datetime.datetime.fromtimestamp(sample.started_at, datetime.UTC).strftime("%H:%M:%S UTC")
    took = f"{sample.duration:.3f} s" if sample.duration is not None else (
        f"order {sample.order_seconds:.3f} s" if sample.order_seconds is not None else "")
    what = "ok" if sample.success else f"failed at {sample.failed_step}: {sample.reason}"
    return " · ".join(part for part in (when, what, took, sample.detail if not sample.success
                                        else "") if part)


# --- drawing (inline SVG: attributes, never style, so the CSP needs no 'unsafe-inline') ------


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def timing_bar(sample: Sample) -> str:
    if not sample.steps:
        if sample.order_seconds is None:
            return "<p class='muted'>No step timings for this journey.</p>"
        return (f"<p>Order step: <strong>{sample.order_seconds:.3f} s</strong> "
                "<span class='muted'>(the exporter's page has every step)</span></p>")
    total = sum(max(s.seconds, 0.0) for s in sample.steps) or 1.0
    x, rects, legend = 0.0, [], []
    for index, step in enumerate(sample.steps):
        width = max(step.seconds, 0.0) / total * 1000
        kind = "ok" if step.ok else "fail"
        title = f"{step.name}: {step.seconds * 1000:.0f} ms" + ("" if step.ok else " (failed)")
        rects.append(f"<rect class='{kind} s{index % 2}' x='{x:.1f}' y='0' width='{max(width, 2):.1f}' "
                     f"height='24'><title>{_e(title)}</title></rect>")
        legend.append(f"<li class='{kind}'><span class='name'>{_e(step.name)}</span> "
                      f"{step.seconds * 1000:.0f} ms</li>")
        x += width
    return ("<svg class='bar' viewBox='0 0 1000 24' preserveAspectRatio='none' role='img' "
            f"aria-label='step timings'>{''.join(rects)}</svg>"
            f"<ol class='steps'>{''.join(legend)}</ol>")


def uptime_strip(journeys: Sequence[Sample]) -> str:
    last = list(journeys[-STRIP_LENGTH:])
    if not last:
        return "<p class='muted'>No journey has finished yet.</p>"
    cells = []
    offset = STRIP_LENGTH - len(last)  # the newest on the right
    for index, sample in enumerate(last):
        kind = "ok" if sample.success else "fail"
        cells.append(f"<rect class='{kind}' x='{(offset + index) * 10}' y='0' width='8' "
                     f"height='30' rx='1'><title>{_e(_cell_title(sample))}</title></rect>")
    good = sum(1 for s in last if s.success)
    return (f"<svg class='strip' viewBox='0 0 {STRIP_LENGTH * 10} 30' preserveAspectRatio='none' "
            "role='img' "
            f"aria-label='last {len(last)} journeys'>{''.join(cells)}</svg>"
            f"<p class='muted'>{good} of the last {len(last)} journeys succeeded "
            "(oldest left, newest right).</p>")


def latency_chart(latency: Sequence[Point], now: float, span: float = MAX_AGE) -> str:
    """Order seconds against time: the last hour, or since the first order if that is later
    (at least a minute), so a fresh process does not draw a sliver at the right edge."""
    points = [(p.at, p.order_seconds, p.ok) for p in latency if p.at >= now - span]
    if not points:
        return "<p class='muted'>No order in the last hour.</p>"
    span = min(span, max(60.0, now - points[0][0]))
    top = max(p[1] for p in points) or 0.001
    width, height, left = 600.0, 120.0, 0.0

    def xy(at: float, seconds: float) -> tuple[float, float]:
        return (left + (at - (now - span)) / span * width, height - seconds / top * (height - 6))

    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(t, v) for t, v, _ in points))
    dots = "".join(
        f"<circle class='fail' cx='{x:.1f}' cy='{y:.1f}' r='3'><title>{_e(f'{v:.3f} s')}</title>"
        "</circle>" for x, y, v in ((*xy(t, v), v) for t, v, ok in points if not ok))
    return (f"<svg class='chart' viewBox='0 0 {width:.0f} {height:.0f}' preserveAspectRatio='none' "
            "role='img' aria-label='order latency, last hour'>"
            f"<line class='axis' x1='0' y1='{height}' x2='{width}' y2='{height}'/>"
            f"<polyline class='latency' points='{line}'/>{dots}</svg>"
            f"<p class='axes muted'><span>{for_text(span)} ago</span><span>max {top:.3f} s</span>"
            "<span>now</span></p>")


def _target_section(status: TargetStatus, now: float) -> str:
    state_class = status.state.lower().replace(" ", "")
    heading = f"<h2>{_e(status.target)}</h2>" if status.target else ""
    last = status.last
    head = (f"<p class='headline'><strong class='state'>{_e(status.state)}</strong> since "
            f"<time datetime='{iso(status.since)}'>{clock_text(status.since)}</time> "
            f"(for {for_text(now - status.since)})")
    if status.state == FAILING and last is not None:
        head += (f" at <span class='step'>{_e(last.failed_step)}</span>: "
                 f"<span class='reason'>{_e(last.reason)}</span>")
    head += "</p>"
    if status.state == FAILING and last is not None and last.detail:
        head += f"<p class='detail'>{_e(last.detail)}</p>"
    body = ""
    if last is not None:
        body = (f"<h3>Last journey <span class='muted'>{iso(last.started_at)}</span></h3>"
                f"{timing_bar(last)}"
                f"<h3>Last {min(len(status.journeys), STRIP_LENGTH)} journeys</h3>"
                f"{uptime_strip(status.journeys)}"
                f"<h3>Order latency</h3>{latency_chart(status.latency, now)}")
    return (f"<section class='target {state_class}' data-state='{_e(status.state)}' "
            f"data-since='{status.since:.3f}'>{heading}{head}{body}</section>")


# --- the page and its JSON -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Page:
    """What one server puts on its status page. ``extra`` draws the page's own sections
    (incidents, recent journeys) from the secrets to mask; ``extra_json`` gives their data."""

    title: str
    heading: str
    links: Sequence[tuple[str, str]]  # (href, text), same origin or a configured peer
    poll_seconds: float
    extra: Callable[[Sequence[str]], str] = lambda secrets: ""
    extra_json: Callable[[Sequence[str]], dict] = lambda secrets: {}
    no_targets: str = "No target is scheduled: Prometheus drives /probe."


def page_title(statuses: Sequence[TargetStatus], title: str) -> str:
    states = {s.state for s in statuses}
    word = FAILING if FAILING in states else (UP if states == {UP} else NO_DATA)
    return f"{word} · {title}"


def fragment(page: Page, statuses: Sequence[TargetStatus], now: float,
             secrets: Sequence[str]) -> str:
    sections = "".join(_target_section(s, now) for s in statuses) or \
        f"<section class='target nodata'><p class='headline'>{_e(page.no_targets)}</p></section>"
    return sections + page.extra(secrets)


def status_json(page: Page, statuses: Sequence[TargetStatus], now: float,
                secrets: Sequence[str]) -> dict:
    return {
        "generated_at": now, "title": page_title(statuses, page.title),
        "poll_seconds": page.poll_seconds,
        "targets": [{
            "target": s.target, "state": s.state, "since": s.since,
            "for_seconds": round(max(0.0, now - s.since), 3), "headline": headline(s, now),
            "last": _sample_json(s.last) if s.last else None,
            "strip": [{k: v for k, v in _sample_json(j).items() if k != "steps"}
                      for j in s.journeys],
            "order_latency": [[p.at, round(p.order_seconds, 6), p.ok] for p in s.latency],
        } for s in statuses],
        **page.extra_json(secrets),
        "html": fragment(page, statuses, now, secrets),
    }


def render_page(page: Page, statuses: Sequence[TargetStatus], now: float,
                secrets: Sequence[str]) -> bytes:
    links = " · ".join(f"<a href='{_e(href)}'>{_e(text)}</a>" for href, text in page.links)
    refresh = max(5, round(page.poll_seconds * 2))
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_e(page_title(statuses, page.title))}</title>"
        "<link rel='stylesheet' href='/static/status.css'>"
        "<script src='/static/status.js' defer></script>"
        f"<noscript><meta http-equiv='refresh' content='{refresh}'></noscript>"
        "</head><body>"
        f"<header><h1>{_e(page.heading)}</h1><nav>{links}</nav></header>"
        f"<main id='status' data-api='{API_PATH}' data-poll='{page.poll_seconds:g}'>"
        f"{fragment(page, statuses, now, secrets)}</main>"
        f"<footer><span id='updated'>drawn at {iso(now)}</span></footer>"
        "</body></html>").encode()


def peer_page(url: str) -> str:
    """A configured peer's page (the sidecar's, the exporter's): its origin, nothing else."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/"


def poll_seconds(interval: float) -> float:
    """The page asks as often as journeys run, between 0.25 s and 5 s."""
    return min(5.0, max(0.25, interval))


# --- the assets ------------------------------------------------------------------------------

STATUS_JS = """\
"use strict";
// pizza-probe status page: ask /api/status every data-poll seconds, swap the fresh fragment in.
(function () {
  var main = document.getElementById("status");
  var note = document.getElementById("updated");
  if (!main || !window.fetch) { return; }
  var api = main.getAttribute("data-api") || "/api/status";
  var every = Math.max(250, (parseFloat(main.getAttribute("data-poll")) || 5) * 1000);
  function tick() {
    fetch(api, {cache: "no-store", headers: {"Accept": "application/json"}})
      .then(function (answer) {
        if (!answer.ok) { throw new Error("HTTP " + answer.status); }
        return answer.json();
      })
      .then(function (data) {
        main.innerHTML = data.html;
        document.title = data.title;
        if (data.poll_seconds > 0) { every = Math.max(250, data.poll_seconds * 1000); }
        note.textContent = "updated " + new Date().toISOString().slice(0, 19) + "Z";  // UTC, as every time on the page
        note.className = "";
      })
      .catch(function (error) {
        note.textContent = "cannot reach the server (" + error.message + "); retrying";
        note.className = "stale";
      })
      .then(function () { window.setTimeout(tick, every); });
  }
  window.setTimeout(tick, every);
})();
"""

STATUS_CSS = """\
:root { --up: #1a7f37; --fail: #c62828; --nodata: #6b6b6b; --ink: #1f2328; --muted: #59636e;
        --line: #d1d9e0; --bg: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--ink); background: var(--bg); }
header, main, footer { max-width: 60rem; margin: 0 auto; padding: 0.75rem 1rem; }
header { display: flex; flex-wrap: wrap; gap: 0.5rem 1.5rem; align-items: baseline; }
h1 { font-size: 1.25rem; margin: 0; }
h2 { font-size: 1.1rem; margin: 0 0 0.25rem; overflow-wrap: anywhere; }
h3 { font-size: 0.9rem; margin: 1rem 0 0.3rem; color: var(--muted); font-weight: 600; }
a { color: #0969da; }
section { background: #fff; border: 1px solid var(--line); border-left: 0.5rem solid var(--nodata);
          border-radius: 6px; padding: 0.75rem 1rem; margin: 0 0 1rem; }
section.up { border-left-color: var(--up); }
section.failing { border-left-color: var(--fail); }
section.recovery { border-left-color: #0969da; }
.headline { font-size: 1.2rem; margin: 0.2rem 0; overflow-wrap: anywhere; }
.state { padding: 0.05rem 0.5rem; border-radius: 4px; color: #fff; background: var(--nodata); }
.up .state { background: var(--up); }
.failing .state { background: var(--fail); }
.failing .reason, .failing .step { font-weight: 600; color: var(--fail); }
.detail { font-family: ui-monospace, monospace; font-size: 0.85rem; overflow-wrap: anywhere; }
.muted { color: var(--muted); font-weight: normal; font-size: 0.85rem; }
svg { display: block; width: 100%; }
svg.bar { height: 1.5rem; }
svg.strip { height: 2rem; }
svg.chart { height: 8rem; background: var(--bg); }
rect.ok { fill: var(--up); } rect.ok.s1 { fill: #2da44e; }
rect.fail, circle.fail { fill: var(--fail); }
.latency { fill: none; stroke: #0969da; stroke-width: 1.5; vector-effect: non-scaling-stroke; }
.axis { stroke: var(--line); vector-effect: non-scaling-stroke; }
.axes { display: flex; justify-content: space-between; margin: 0.1rem 0; }
ol.steps { display: flex; flex-wrap: wrap; gap: 0.2rem 1rem; list-style: none; padding: 0;
           margin: 0.3rem 0; font-size: 0.85rem; }
ol.steps li.fail { color: var(--fail); font-weight: 600; }
ol.steps .name { font-weight: 600; }
table { border-collapse: collapse; width: 100%; font-size: 0.85rem; background: #fff; }
th, td { border: 1px solid var(--line); padding: 0.3rem 0.5rem; text-align: left;
         vertical-align: top; overflow-wrap: break-word; }
tr.fail td { color: var(--fail); }
.scroll { overflow-x: auto; }
.scroll table { min-width: 40rem; }  /* on a phone the table scrolls sideways, the page does not */
dl { display: grid; grid-template-columns: max-content 1fr; gap: 0.2rem 1rem; margin: 0.3rem 0; }
dt { color: var(--muted); } dd { margin: 0; overflow-wrap: anywhere; }
#updated.stale { color: var(--fail); font-weight: 600; }
footer { color: var(--muted); font-size: 0.8rem; }
@media (max-width: 30rem) {
  body { font-size: 14px; }
  .headline { font-size: 1.05rem; }
  header, main, footer { padding: 0.5rem; }
  section { padding: 0.5rem 0.6rem; }
}
"""

ASSETS = {
    STATIC_PREFIX + "status.js": (STATUS_JS.encode(), "text/javascript; charset=utf-8"),
    STATIC_PREFIX + "status.css": (STATUS_CSS.encode(), "text/css; charset=utf-8"),
}


# --- serving ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class View:
    """Everything one answer draws from, taken at one moment."""

    page: Page
    statuses: Sequence[TargetStatus]
    now: float
    secrets: Sequence[str]


class Drawings:
    """The last drawing of ``/`` and of ``/api/status``, answered again while what it shows is
    the same: ``state()`` (the journeys' version and the clock's second) has not changed. One
    drawing at a time: a flood of page loads and polls waits for it and costs one drawing per
    change, not one per request (40 targets take ~0.1 s to draw)."""

    def __init__(self, state: Callable[[], Hashable]) -> None:
        self._state = state
        self._lock = threading.Lock()
        self._held: dict[str, tuple[Hashable, bytes]] = {}

    def answer(self, path: str, draw: Callable[[], bytes]) -> bytes:
        with self._lock:
            state = self._state()
            held = self._held.get(path)
            if held is None or held[0] != state:
                held = self._held[path] = (state, draw())
            return held[1]


def respond(send: Callable[..., None], path: str, view: Callable[[], View],
            drawings: Drawings | None = None) -> bool:
    """Answer ``/``, ``/api/status`` and the assets with ``send(status, body, type, headers)``;
    False for any other path."""
    def drawn(draw: Callable[[View], bytes]) -> bytes:
        return drawings.answer(path, lambda: draw(view())) if drawings else draw(view())

    if path == "/":
        send(200, drawn(lambda v: render_page(v.page, v.statuses, v.now, v.secrets)),
             "text/html; charset=utf-8", HEADERS)
    elif path == API_PATH:
        send(200, drawn(lambda v: json.dumps(status_json(v.page, v.statuses, v.now,
                                                         v.secrets)).encode()),
             "application/json", HEADERS)
    elif path in ASSETS:
        body, content_type = ASSETS[path]
        send(200, body, content_type, HEADERS)
    else:
        return False
    return True
