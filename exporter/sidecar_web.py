"""The sidecar's HTTP endpoints: ``POST /alertmanager`` (Alertmanager webhook v4, bearer token
or basic auth), ``/metrics``, ``/healthz`` and a ``/`` status page (nothing secret on it)."""

from __future__ import annotations

import base64
import binascii
import hmac
import html
import json

from prometheus_client import CollectorRegistry

from . import __version__
from .alertmanager import Deduper, WebhookError, parse_webhook
from .httpserver import BackgroundServer, QuietHandler
from .incident import utc
from .logs import get_logger
from .sidecar import ALERT_NAME, Sidecar

MAX_WEBHOOK_BYTES = 1 << 20


def token_matches(token: str | None, authorization: str) -> bool:
    """``Bearer <token>``, or basic auth whose password is the token (any user name)."""
    if not token:
        return False
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer":
        return hmac.compare_digest(credentials.strip().encode(), token.encode())
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return hmac.compare_digest(decoded.partition(":")[2].encode(), token.encode())
    return False


def _status_page(sidecar: Sidecar) -> bytes:
    current, closed = sidecar.snapshot()
    rows = []
    for incident in ([current] if current else []) + list(reversed(closed)):
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in (
            incident.id, incident.status, incident.chaos_mode or "", utc(incident.first_failure_at) or "",
            incident.link_answer or "", "" if incident.duration is None else f"{incident.duration:.1f}s",
        )) + "</tr>")
    table = ("<table border=1 cellpadding=4><tr><th>incident</th><th>status</th><th>chaos</th>"
             "<th>first failure</th><th>link answer</th><th>time to recover</th></tr>"
             + "".join(rows) + "</table>") if rows else "<p>No incident yet.</p>"
    mode = "dry run" if sidecar.options.dry_run else "live"
    return (f"<!doctype html><html><head><title>pizza-probe sidecar</title></head><body>"
            f"<h1>pizza-probe sidecar {html.escape(__version__)} ({mode})</h1>"
            "<p><a href='/metrics'>Metrics</a> &middot; <a href='/healthz'>Health</a></p>"
            f"<h2>Incidents</h2>{table}</body></html>").encode()


def make_handler(registry: CollectorRegistry, sidecar: Sidecar, token: str | None,
                 deduper: Deduper):
    log = get_logger()

    class SidecarHandler(QuietHandler):
        def _json(self, status: int, body: dict, headers: dict | None = None) -> None:
            self.send_body(status, json.dumps(body).encode(), "application/json", headers)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            self.send_standard_page(path, registry, lambda: _status_page(sidecar))

        do_HEAD = do_GET

        def do_POST(self) -> None:
            if self.path.split("?", 1)[0] != "/alertmanager":
                self.close_connection = True
                self._json(404, {"error": "not found"}, {"Connection": "close"})
                return
            if not token_matches(token, self.headers.get("Authorization", "")):
                self.close_connection = True
                self._json(401, {"error": "unauthorized"},
                           {"WWW-Authenticate": 'Bearer realm="pizza-probe"', "Connection": "close"})
                return
            length = self.headers.get("Content-Length", "")
            if not (length.isascii() and length.isdigit()) or int(length) > MAX_WEBHOOK_BYTES:
                self.close_connection = True
                self._json(400 if not length.isdigit() else 413,
                           {"error": "a Content-Length of at most 1 MiB is required"},
                           {"Connection": "close"})
                return
            try:
                events = parse_webhook(self.rfile.read(int(length)))
            except WebhookError as exc:
                self._json(400, {"error": str(exc)})
                return
            new = 0
            for event in events:
                if event.name == ALERT_NAME and deduper.first(event.key):
                    new += 1
                    sidecar.submit_alert(event.status)  # the work happens in the background
                    log.info("alert received", extra={"fields": {
                        "alert": event.name, "status": event.status,
                        "fingerprint": event.fingerprint, "starts_at": event.starts_at}})
            self._json(200, {"status": "accepted", "alerts": len(events), "new": new})

    return SidecarHandler


def sidecar_server(host: str, port: int, registry: CollectorRegistry, sidecar: Sidecar,
                   token: str | None, deduper: Deduper | None = None) -> BackgroundServer:
    handler = make_handler(registry, sidecar, token, deduper or Deduper())
    return BackgroundServer(host, port, handler, name="sidecar-http")
