"""The exporter's HTTP endpoints: ``/metrics``, ``/healthz``, ``/probe`` (fleet mode),
``POST /-/reload``, and the live status page (``/``, ``/api/status``, ``/static/``: see
:mod:`exporter.statuspage`) with the last journeys (redacted), like the blackbox exporter's recent
probes."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import html
import json
import threading
from collections.abc import Callable, Iterable, Sequence
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from . import __version__, statuspage
from .clock import Clock
from .config import ConfigError
from .fleet import ProbeAnswer, ProbeRefused, ProbeService
from .handoff import HANDOFF_PATH, LatestJourney, handoff_allowed
from .httpserver import BackgroundServer, QuietHandler
from .logs import get_logger
from .metrics import journey_registry
from .redact import scrub
from .report import render_probe_debug
from .result import JourneyResult

PROBE_PATH = "/probe"
RELOAD_PATH = "/-/reload"
# Taken off Prometheus' scrape timeout so the answer is back before Prometheus gives up.
SCRAPE_TIMEOUT_OFFSET = 0.5


class History:
    """An observer of the journeys: the scheduled ones (``history(result)``, or
    ``history.of(name)`` per named target) and ``/probe``'s. The last ``size`` for the debug
    table; those of the last hour (capped) for the status page, in ``recent``."""

    def __init__(self, size: int = 20, clock: Clock | None = None) -> None:
        self._items: collections.deque[tuple[str, str, JourneyResult]] = \
            collections.deque(maxlen=size)
        self._lock = threading.Lock()
        self.recent = statuspage.RecentJourneys(clock)

    def __call__(self, result: JourneyResult, target: str = "", module: str = "") -> None:
        with self._lock:
            self._items.append((target, module, result))
        self.recent.add(statuspage.Sample.of_result(
            result, f"{target} ({module})" if module else target))

    def of(self, target: str) -> Callable[[JourneyResult], None]:
        return lambda result: self(result, target)

    def probe(self, answer: ProbeAnswer) -> None:
        self(answer.result, answer.target, answer.module.name)

    def entries(self) -> list[tuple[str, str, JourneyResult]]:
        with self._lock:
            return list(reversed(self._items))


@dataclasses.dataclass(frozen=True)
class StatusOptions:
    """What the status page knows beyond the journeys: the scheduled targets ("" alone in
    one-target mode), the interval, the sidecar's page, and the secrets to mask."""

    targets: Sequence[str] = ("",)
    interval: float = 15.0
    sidecar_url: str | None = None
    secrets: Callable[[], Iterable[str | None]] = tuple


def _journeys_table(history: History, secrets: Sequence[str]) -> str:
    """The debug view: the last journeys, newest first, every free text masked."""
    entries = history.entries()
    if not entries:
        return ""
    named = any(target for target, _, _ in entries)
    rows = []
    for target, module, result in entries:
        when = datetime.datetime.fromtimestamp(result.started_at, datetime.UTC)
        outcome = ("success" if result.success else
                   f"failure at {result.failed_step}: {result.reason}")
        link = result.chaos_link.redacted if result.chaos_link else ""
        cells = [scrub(str(cell), secrets, 200) for cell in (
            when.strftime("%Y-%m-%d %H:%M:%S UTC"), outcome, f"{result.duration:.3f}s",
            result.detail)] + [link]
        if named:  # no empty target column in one-target mode
            label = f"{target} ({module})" if module else target  # /probe's: no link followed
            cells.insert(0, scrub(label, secrets, 200))
        rows.append(f"<tr class='{'ok' if result.success else 'fail'}'>"
                    + "".join(f"<td>{html.escape(cell)}</td>" for cell in cells) + "</tr>")
    head = (["target"] if named else []) + ["started", "result", "duration", "detail",
                                             "chaos link"]
    return ("<h2>Recent journeys</h2><div class='scroll'><table><tr>"
            + "".join(f"<th>{name}</th>" for name in head) + "</tr>" + "".join(rows)
            + "</table></div>")


def _status_view(history: History, fleet: bool, options: StatusOptions) -> statuspage.View:
    recent = history.recent
    now = recent.clock.time()
    secrets = [s for s in options.secrets() if s]
    links = [("/metrics", "Metrics"), ("/healthz", "Health"), (statuspage.API_PATH, "JSON")]
    sidecar_page = statuspage.peer_page(options.sidecar_url) if options.sidecar_url else None
    extra = ""
    if sidecar_page:
        links.append((sidecar_page, "Sidecar"))
        extra += (f"<p>The open incident and the last recovery: <a href='"
                  f"{html.escape(sidecar_page)}'>the sidecar's page</a>.</p>")
    if fleet:
        extra += (f"<p class='muted'>Prometheus probes <code>{PROBE_PATH}?target=URL&amp;"
                  "module=NAME[&amp;debug=true]</code>.</p>")
    page = statuspage.Page(
        title="pizza-probe", heading=f"pizza-probe {__version__}", links=links,
        poll_seconds=statuspage.poll_seconds(options.interval),
        extra=lambda masked: extra + _journeys_table(history, masked),
        extra_json=lambda masked: {"sidecar_url": sidecar_page})
    statuses = statuspage.target_statuses(
        recent.samples(), options.targets, now, stale_after=3 * options.interval + 60,
        started_at=recent.started_at, secrets=secrets)
    return statuspage.View(page, statuses, now, secrets)


# A scrape that allows less than this is refused: no journey fits in it.
MIN_SCRAPE_TIMEOUT = 1.0
SCRAPE_TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"


def _scrape_budget(headers) -> float | None:
    """The journey's time budget from Prometheus' ``X-Prometheus-Scrape-Timeout-Seconds``
    (None without the header). A header that is not a number, or below 1 s, is refused (400)."""
    raw = headers.get(SCRAPE_TIMEOUT_HEADER)
    if raw is None:
        return None
    try:
        timeout = float(raw)
    except ValueError:
        raise ProbeRefused(400, f"{SCRAPE_TIMEOUT_HEADER} is not a number of seconds") from None
    if not timeout == timeout or timeout > 1e6:  # NaN, inf: no limit meant, none taken
        raise ProbeRefused(400, f"{SCRAPE_TIMEOUT_HEADER} is not a number of seconds")
    if timeout < MIN_SCRAPE_TIMEOUT:
        raise ProbeRefused(400, f"{SCRAPE_TIMEOUT_HEADER} is below {MIN_SCRAPE_TIMEOUT:g}s: "
                                "no journey fits in it")
    return max(timeout - SCRAPE_TIMEOUT_OFFSET, timeout / 2)


def _number(query: dict, name: str, default: float) -> float:
    try:
        number = float(query.get(name, [default])[0])
    except ValueError:
        return default
    return number if 0 <= number < 1e9 else default


def make_handler(registry: CollectorRegistry, history: History | None = None,
                 latest: LatestJourney | None = None, handoff_token: str | None = None,
                 fleet: ProbeService | None = None, reload: Callable[[], None] | None = None,
                 status: StatusOptions | None = None):
    journeys = history or History()
    page_options = status or StatusOptions()
    drawings = statuspage.Drawings(lambda: (journeys.recent.version,
                                            int(journeys.recent.clock.time())))
    text = "text/plain; charset=utf-8"

    class ExporterHandler(QuietHandler):
        def _handoff(self, query: dict) -> None:
            if latest is None:
                self.send_body(404, b"not found\n", "text/plain; charset=utf-8")
            elif not handoff_allowed(handoff_token, self.headers.get("Authorization", ""),
                                     self.client_address[0]):
                self.send_body(403, b"forbidden: the hand-off needs the sidecar's token\n",
                               "text/plain; charset=utf-8")
            else:
                report = latest.wait_newer(int(_number(query, "after", 0)), _number(query, "wait", 0))
                if report is None:
                    self.send_body(204, b"", "application/json")
                else:
                    self.send_body(200, json.dumps(report.to_json()).encode(), "application/json",
                                   {"Cache-Control": "no-store"})

        def _probe(self, query: dict) -> None:
            assert fleet is not None  # routed here only in fleet mode
            def first(name: str) -> str | None:
                return query.get(name, [None])[0]

            try:
                try:
                    budget = _scrape_budget(self.headers)
                except ProbeRefused:
                    fleet.metrics.probes.labels("refused").inc()
                    raise
                answer = fleet.probe(first("target"), first("module"), budget=budget)
            except ProbeRefused as exc:
                get_logger().debug("probe refused", extra={"fields": {"why": exc.message}})
                self.send_body(exc.status, f"{exc.message}\n".encode(), text)
                return
            except Exception as exc:  # noqa: BLE001 (a bug of ours: one log line and a 500)
                secrets = fleet.modules.current.passwords()
                get_logger().error("probe crashed", extra={"fields": {
                    "error": type(exc).__name__, "detail": scrub(str(exc), secrets)}})
                self.send_body(500, b"internal error; see the exporter's log\n", text)
                return
            probe_registry = journey_registry(answer.result, answer.age)
            if (first("debug") or "").lower() == "true":
                page = render_probe_debug(answer, generate_latest(probe_registry).decode())
                self.send_body(200, page.encode(), text)
            else:  # negotiated and compressed as /metrics is
                self.send_exposition(probe_registry)

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            path = parts.path
            if path == HANDOFF_PATH:
                self._handoff(parse_qs(parts.query))
            elif path == PROBE_PATH and fleet is not None:
                self._probe(parse_qs(parts.query))
            elif path == RELOAD_PATH:
                self._not_allowed("POST")
            elif not statuspage.respond(self.send_body, path, lambda: _status_view(
                    journeys, fleet is not None, page_options), drawings):
                self.send_standard_page(path, registry, lambda: b"")

        def do_HEAD(self) -> None:
            if urlsplit(self.path).path == PROBE_PATH:
                self._not_allowed("GET")  # a link checker's HEAD must not place an order
            else:
                self.do_GET()

        def do_POST(self) -> None:
            path = urlsplit(self.path).path
            if path != RELOAD_PATH:
                self._not_allowed("GET" if path == PROBE_PATH and fleet is not None
                                  else "GET, HEAD")
                return
            self.close_connection = True  # the request body, if any, is not read
            close = {"Connection": "close"}
            if reload is None:
                self.send_body(200, b"no --config.file: nothing to reload\n", text, close)
                return
            try:
                reload()
            except ConfigError as exc:
                self.send_body(500, f"failed to reload config: {exc}\n".encode(), text, close)
                return
            except Exception as exc:  # noqa: BLE001 (a bug of ours: the old modules stay)
                get_logger().error("config reload crashed", extra={"fields": {
                    "error": type(exc).__name__}})
                self.send_body(500, f"failed to reload config: {type(exc).__name__}\n".encode(),
                               text, close)
                return
            self.send_body(200, b"config reloaded\n", text, close)

        def _not_allowed(self, allow: str = "GET, HEAD") -> None:
            self.close_connection = True  # the request body is not read
            self.send_body(405, b"method not allowed\n", text,
                           {"Allow": allow, "Connection": "close"})

        do_PUT = do_DELETE = do_PATCH = _not_allowed

    return ExporterHandler


def exporter_server(host: str, port: int, registry: CollectorRegistry,
                    history: History | None = None, latest: LatestJourney | None = None,
                    handoff_token: str | None = None, fleet: ProbeService | None = None,
                    reload: Callable[[], None] | None = None,
                    status: StatusOptions | None = None) -> BackgroundServer:
    handler = make_handler(registry, history, latest, handoff_token, fleet, reload, status)
    return BackgroundServer(host, port, handler, name="exporter-http")
