"""The sidecar's HTTP endpoints: ``POST /alertmanager`` (Alertmanager webhook v4, bearer token
or basic auth), ``/metrics``, ``/healthz`` and the live status page (``/``, ``/api/status``,
``/static/``: see :mod:`exporter.statuspage`) with the open incident and the last recovery
(nothing secret on it)."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hmac
import html
import json
import statistics
from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry

from . import __version__, statuspage
from .alertmanager import Deduper, WebhookError, parse_webhook
from .httpserver import BackgroundServer, QuietHandler
from .incident import RESOLVED, Incident, utc
from .logs import get_logger
from .redact import scrub
from .sidecar import ALERT_NAME, Sidecar
from .timing import format_seconds

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


@dataclasses.dataclass(frozen=True)
class SidecarStatus:
    """What the sidecar's status page draws beyond its incidents: the journeys it was handed
    (``journeys.add(Sample.of_report(report))`` at each hand-off), the exporter's address, and
    the secrets to mask."""

    journeys: statuspage.RecentJourneys = dataclasses.field(
        default_factory=statuspage.RecentJourneys)
    exporter_url: str | None = None
    secrets: Callable[[], Iterable[str | None]] = tuple


def _seconds(value: float | None) -> str:
    """Two decimals under 10 s (timing.format_seconds): a heal takes milliseconds."""
    return "" if value is None else format_seconds(value)


def _incident_rows(incident: Incident, now: float, masked: Sequence[str]) -> str:
    start = incident.first_failure_at or incident.opened_at
    rows = [("incident", incident.id),
            ("first failure", f"{utc(start)} ({statuspage.for_text(now - start)} ago)"),
            ("chaos", incident.chaos_mode or "not known yet"),
            ("failed orders", str(incident.failed_orders)),
            ("detected by", incident.detected_by),
            ("link called", utc(incident.link_called_at) or "not yet"),
            ("link answer", incident.link_answer or ""),
            ("time to recover", _seconds(incident.duration)),
            ("resolution", incident.resolution or "")]
    rows += [("latest", f"{utc(at)} {event}") for at, event in incident.timeline[-3:]]
    return "<dl>" + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(scrub(v, masked, 200))}</dd>"
                            for k, v in rows if v) + "</dl>"


def _incidents(sidecar: Sidecar, now: float, masked: Sequence[str]) -> str:
    current, closed = sidecar.snapshot()
    recovered = [i for i in closed if i.status == RESOLVED]
    mode = "dry run" if sidecar.options.dry_run else "live"
    parts = []
    if current is not None:
        parts.append("<section class='incident failing' data-incident='open'>"
                     f"<h2>Open incident</h2>{_incident_rows(current, now, masked)}</section>")
    else:
        parts.append("<section class='incident up' data-incident='none'><h2>No open incident"
                     f"</h2><p class='muted'>Recovery is {mode}.</p></section>")
    if recovered:
        last = recovered[-1]
        parts.append("<section class='incident recovery' data-recovery='last'>"
                     f"<h2>Last recovery <span class='muted'>{html.escape(utc(last.resolved_at) or '')}"
                     f"</span></h2>{_incident_rows(last, now, masked)}</section>")
    rows = []
    for incident in ([current] if current else []) + list(reversed(closed)):
        rows.append("<tr>" + "".join(f"<td>{html.escape(scrub(str(c), masked, 200))}</td>" for c in (
            incident.id, incident.status, incident.chaos_mode or "",
            utc(incident.first_failure_at) or "", incident.link_answer or "",
            _seconds(incident.duration))) + "</tr>")
    if rows:
        parts.append("<h2>Incidents</h2><div class='scroll'><table><tr><th>incident</th>"
                     "<th>status</th><th>chaos</th><th>first failure</th><th>link answer</th>"
                     "<th>time to recover</th></tr>" + "".join(rows) + "</table></div>")
    return "".join(parts)


def _incidents_json(sidecar: Sidecar, masked: Sequence[str]) -> dict:
    current, closed = sidecar.snapshot()
    recovered = [i for i in closed if i.status == RESOLVED]

    def brief(incident: Incident | None) -> dict | None:
        if incident is None:
            return None
        return {"id": incident.id, "status": incident.status,
                "chaos_mode": scrub(incident.chaos_mode or "", masked) or None,
                "first_failure_at": incident.first_failure_at or incident.opened_at,
                "failed_orders": incident.failed_orders, "link_called_at": incident.link_called_at,
                "link_answer": scrub(incident.link_answer or "", masked) or None,
                "resolved_at": incident.resolved_at, "time_to_recover_seconds": incident.duration}

    return {"incident": brief(current), "last_recovery": brief(recovered[-1] if recovered else None),
            "dry_run": sidecar.options.dry_run}


def _interval(journeys: Sequence[statuspage.Sample]) -> float:
    """The exporter's interval, as the hand-offs arrive (15 s until there are some)."""
    starts = [s.started_at for s in journeys[-11:]]
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False) if b > a]
    return statistics.median(gaps) if gaps else 15.0


def _status_view(sidecar: Sidecar, options: SidecarStatus) -> statuspage.View:
    now = options.journeys.clock.time()
    secrets = [s for s in options.secrets() if s]
    journeys = options.journeys.samples()
    interval = _interval(journeys)
    links = [("/metrics", "Metrics"), ("/healthz", "Health"), (statuspage.API_PATH, "JSON")]
    if options.exporter_url:
        links.append((statuspage.peer_page(options.exporter_url), "Exporter"))
    mode = "dry run" if sidecar.options.dry_run else "live"
    page = statuspage.Page(
        title="pizza-probe sidecar", heading=f"pizza-probe sidecar {__version__} ({mode})",
        links=links, poll_seconds=statuspage.poll_seconds(min(interval, 2.0)),
        extra=lambda masked: _incidents(sidecar, now, masked),
        extra_json=lambda masked: _incidents_json(sidecar, masked),
        no_targets="No journeys from an exporter (--exporter-url is empty): the sidecar acts "
                   "on Alertmanager's webhook alone.")
    statuses = statuspage.target_statuses(
        journeys, [""] if options.exporter_url else [], now, stale_after=3 * interval + 60,
        started_at=options.journeys.started_at, secrets=secrets)
    return statuspage.View(page, statuses, now, secrets)


def make_handler(registry: CollectorRegistry, sidecar: Sidecar, token: str | None,
                 deduper: Deduper, status: SidecarStatus | None = None):
    log = get_logger()
    page_options = status or SidecarStatus()
    recent = page_options.journeys  # and the incidents: shown within the second
    drawings = statuspage.Drawings(lambda: (recent.version, int(recent.clock.time())))

    class SidecarHandler(QuietHandler):
        def _json(self, status: int, body: dict, headers: dict | None = None) -> None:
            self.send_body(status, json.dumps(body).encode(), "application/json", headers)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if not statuspage.respond(self.send_body, path,
                                      lambda: _status_view(sidecar, page_options), drawings):
                self.send_standard_page(path, registry, lambda: b"")

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
                   token: str | None, deduper: Deduper | None = None,
                   status: SidecarStatus | None = None) -> BackgroundServer:
    handler = make_handler(registry, sidecar, token, deduper or Deduper(), status)
    return BackgroundServer(host, port, handler, name="sidecar-http")
