"""The exporter's HTTP endpoints: ``/metrics``, ``/healthz`` and a ``/`` page that links them
and shows the last journeys (redacted), like the blackbox exporter's recent probes."""

from __future__ import annotations

import collections
import datetime
import html
import json
import threading
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry

from . import __version__
from .handoff import HANDOFF_PATH, LatestJourney, handoff_allowed
from .httpserver import BackgroundServer, QuietHandler
from .result import JourneyResult


class History:
    """An observer that keeps the last ``size`` journey results for the debug view."""

    def __init__(self, size: int = 20) -> None:
        self._items: collections.deque[JourneyResult] = collections.deque(maxlen=size)
        self._lock = threading.Lock()

    def __call__(self, result: JourneyResult) -> None:
        with self._lock:
            self._items.append(result)

    def latest(self) -> list[JourneyResult]:
        with self._lock:
            return list(reversed(self._items))


def _status_page(history: History | None) -> bytes:
    rows = []
    for result in history.latest() if history else []:
        when = datetime.datetime.fromtimestamp(result.started_at, datetime.timezone.utc)
        outcome = "success" if result.success else f"failure at {result.failed_step}: {result.reason}"
        link = result.chaos_link.redacted if result.chaos_link else ""
        rows.append(
            "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in (
                when.strftime("%Y-%m-%d %H:%M:%S UTC"), outcome, f"{result.duration:.3f}s",
                result.detail, link,
            )) + "</tr>"
        )
    table = (
        "<table border=1 cellpadding=4><tr><th>started</th><th>result</th><th>duration</th>"
        "<th>detail</th><th>chaos link</th></tr>" + "".join(rows) + "</table>"
        if rows else "<p>No journey has finished yet.</p>"
    )
    return (
        "<!doctype html><html><head><title>pizza-probe</title></head><body>"
        f"<h1>pizza-probe {html.escape(__version__)}</h1>"
        "<p><a href='/metrics'>Metrics</a> &middot; <a href='/healthz'>Health</a></p>"
        f"<h2>Recent journeys</h2>{table}</body></html>"
    ).encode()


def _number(query: dict, name: str, default: float) -> float:
    try:
        number = float(query.get(name, [default])[0])
    except ValueError:
        return default
    return number if 0 <= number < 1e9 else default


def make_handler(registry: CollectorRegistry, history: History | None = None,
                 latest: LatestJourney | None = None, handoff_token: str | None = None):
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

        def do_GET(self) -> None:  # noqa: N802
            parts = urlsplit(self.path)
            path = parts.path
            if path == HANDOFF_PATH:
                self._handoff(parse_qs(parts.query))
            else:
                self.send_standard_page(path, registry, lambda: _status_page(history))

        do_HEAD = do_GET

        def _not_allowed(self) -> None:
            self.close_connection = True  # the request body is not read
            self.send_body(405, b"method not allowed\n", "text/plain; charset=utf-8",
                           {"Allow": "GET, HEAD", "Connection": "close"})

        do_POST = do_PUT = do_DELETE = do_PATCH = _not_allowed

    return ExporterHandler


def exporter_server(host: str, port: int, registry: CollectorRegistry,
                    history: History | None = None, latest: LatestJourney | None = None,
                    handoff_token: str | None = None) -> BackgroundServer:
    handler = make_handler(registry, history, latest, handoff_token)
    return BackgroundServer(host, port, handler, name="exporter-http")
