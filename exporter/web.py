"""The exporter's HTTP endpoints: ``/metrics``, ``/healthz``, ``/probe`` (fleet mode),
``POST /-/reload`` and a ``/`` page that links them and shows the last journeys (redacted), like
the blackbox exporter's recent probes."""

from __future__ import annotations

import collections
import datetime
import html
import json
import threading
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from . import __version__
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
    """An observer that keeps the last ``size`` journeys for the debug view: the scheduled
    ones (``history(result)``, or ``history.of(name)`` per named target) and ``/probe``'s."""

    def __init__(self, size: int = 20) -> None:
        self._items: collections.deque[tuple[str, str, JourneyResult]] = \
            collections.deque(maxlen=size)
        self._lock = threading.Lock()

    def __call__(self, result: JourneyResult, target: str = "", module: str = "") -> None:
        with self._lock:
            self._items.append((target, module, result))

    def of(self, target: str) -> Callable[[JourneyResult], None]:
        return lambda result: self(result, target)

    def probe(self, answer: ProbeAnswer) -> None:
        self(answer.result, answer.target, answer.module.name)

    def entries(self) -> list[tuple[str, str, JourneyResult]]:
        with self._lock:
            return list(reversed(self._items))


def _status_page(history: History | None, fleet: bool) -> bytes:
    rows = []
    for target, module, result in history.entries() if history else []:
        when = datetime.datetime.fromtimestamp(result.started_at, datetime.UTC)
        outcome = "success" if result.success else f"failure at {result.failed_step}: {result.reason}"
        link = result.chaos_link.redacted if result.chaos_link else ""
        cells = [html.escape(str(cell)) for cell in (
            target, when.strftime("%Y-%m-%d %H:%M:%S UTC"), outcome, f"{result.duration:.3f}s",
            result.detail, link)]
        if module:  # a /probe journey (no link: following one would place an order)
            cells[0] += f" ({html.escape(module)})"
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    table = (
        "<table border=1 cellpadding=4><tr><th>target</th><th>started</th><th>result</th>"
        "<th>duration</th><th>detail</th><th>chaos link</th></tr>" + "".join(rows) + "</table>"
        if rows else "<p>No journey has finished yet.</p>"
    )
    probe = (f" &middot; <code>{PROBE_PATH}?target=URL&amp;module=NAME[&amp;debug=true]</code>"
             if fleet else "")
    return (
        "<!doctype html><html><head><title>pizza-probe</title></head><body>"
        f"<h1>pizza-probe {html.escape(__version__)}</h1>"
        f"<p><a href='/metrics'>Metrics</a> &middot; <a href='/healthz'>Health</a>{probe}</p>"
        f"<h2>Recent journeys</h2>{table}</body></html>"
    ).encode()


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
                 fleet: ProbeService | None = None, reload: Callable[[], None] | None = None):
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
            else:
                self.send_standard_page(path, registry,
                                        lambda: _status_page(history, fleet is not None))

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
                    reload: Callable[[], None] | None = None) -> BackgroundServer:
    handler = make_handler(registry, history, latest, handoff_token, fleet, reload)
    return BackgroundServer(host, port, handler, name="exporter-http")
