"""The self-healing sidecar's engine: incidents, safe recovery and verification.

Triggers (probe reports from the exporter, Alertmanager alerts) arrive as events on a queue;
one worker thread handles them in order and decides, so no two triggers race. It is the only
part of pizza-probe that causes side effects: it calls the chaos-ending link, once per incident
when all goes well, and counts an incident resolved only after a fresh synthetic order succeeds.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import logging
import os
import queue
import threading
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from . import urls
from .clock import Clock, SystemClock
from .config import ProbeConfig
from .handoff import ProbeReport
from .incident import LIMITS, Incident, known_names, new_incident_id, observed_chaos
from .journey import run_journey
from .logs import get_logger
from .records import IncidentStore
from .recovery import RESULTS, LinkOutcome, LinkPolicy, call_link
from .redact import RecoveryLink, scrub, secret_parts
from .result import JourneyResult

ALERT_NAME = "PizzaSyntheticOrderFailing"
# Outcomes after which a link is never called again: the factory answered, or it was refused.
# Not "error" (it may be retried after the cooldown) nor "dry_run" (nothing was called).
SPENDING = ("resolved", "no_chaos", "unresolved", "refused")
RECOVERY_BUCKETS = (1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200, 3600)


@dataclasses.dataclass(frozen=True)
class SidecarOptions:
    cooldown: float = 30.0  # between two calls of a link
    max_attempts: int = 3  # link calls per incident
    max_attempts_per_hour: int = 10
    link_timeout: float = 5.0
    link_max_age: float = 120.0  # an older link is not fresh: the alert trigger orders anew
    dry_run: bool = False
    kill_switch_file: str | None = None


class RecoveryMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.attempts = Counter("pizza_recovery_attempts", "Recovery link attempts by result.",
                                ["result"], registry=registry)
        for result in RESULTS:
            self.attempts.labels(result)
        self.incidents = Counter("pizza_recovery_incidents", "Incidents opened by the sidecar.",
                                 registry=registry)
        self.duration = Histogram(
            "pizza_recovery_duration_seconds",
            "Time from the first failed synthetic order to the verified good order.",
            buckets=RECOVERY_BUCKETS, registry=registry)
        self.last_success = Gauge(
            "pizza_recovery_last_success_timestamp_seconds",
            "When the sidecar last ended chaos and verified a good order; 0 if never.",
            registry=registry)
        self.open = Gauge("pizza_recovery_incident_open", "1 while an incident is open.",
                          registry=registry)
        self.open_since = Gauge(
            "pizza_recovery_incident_open_since_timestamp_seconds",
            "First failure of the open incident, seconds since the epoch; 0 when none is open.",
            registry=registry)
        self.alerts = Counter("pizza_recovery_alerts_received",
                              "Distinct Alertmanager alerts received, by status.", ["status"],
                              registry=registry)
        for status in ("firing", "resolved"):
            self.alerts.labels(status)
        self.enabled = Gauge("pizza_recovery_enabled",
                             "1 if the sidecar may call links; 0 in dry-run or with the kill "
                             "switch on.", registry=registry)


class Sidecar:
    def __init__(
        self,
        probe_config: ProbeConfig,
        policy: LinkPolicy,
        options: SidecarOptions,
        metrics: RecoveryMetrics,
        store: IncidentStore,
        *,
        clock: Clock | None = None,
        journey: Callable[[ProbeConfig], JourneyResult] = run_journey,
        link_caller: Callable[..., LinkOutcome] = call_link,
        listener: Callable[[str, dict], None] | None = None,
    ) -> None:
        self.probe_config = probe_config
        self.policy = policy
        self.options = options
        self.metrics = metrics
        self.store = store
        self.clock = clock or SystemClock()
        self.journey = journey
        self.link_caller = link_caller
        self.listener = listener  # told of incident_opened, attempt and incident_resolved
        self.log = get_logger()
        self.events: queue.Queue = queue.Queue(maxsize=10_000)
        self.incident: Incident | None = None
        self.closed: collections.deque[Incident] = collections.deque(maxlen=20)
        self._link: tuple[RecoveryLink, float] | None = None
        self._handled_links: set[RecoveryLink] = set()
        self._last_call: float | None = None
        self._calls_last_hour: collections.deque[float] = collections.deque()
        # Links that got an answer (or a refusal): never called again, in any incident, and
        # after a restart too (restore()). By a hash of the link, never the link itself.
        self._spent: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._restored_last_call: float | None = None  # the last call before a restart
        self._ignore_before = 0.0
        self._notes_once: set[tuple[str, str]] = set()
        self._last_confirm: float | None = None  # the alert trigger's last confirming order
        self._confirm_found_working = False  # ... and whether it found the shop working
        self._confirm_incident: str | None = None  # ... and the incident it was placed for
        self.dropped = 0  # events refused because the queue was full
        self._lock = threading.Lock()  # guards reads of incident state by the status page
        self._update_enabled()

    # --- producers (any thread) ---------------------------------------------------------------

    def submit_report(self, report: ProbeReport) -> None:
        self._submit(("report", (report, self.clock.time())))

    def submit_alert(self, status: str) -> None:
        """Alerts are a trigger, not a work queue: the webhook never waits, and however many
        arrive, at most one confirming order runs per cooldown (see ``_on_alert``)."""
        self._submit(("alert", (status, self.clock.monotonic())))

    def restore(self, attempts: list[dict], *, ignore_reports_before: float) -> None:
        """At start: the attempts of the records of the last hour (``IncidentStore``), so the
        hourly limit, the cooldown and "never the same link twice" hold across a restart; and
        reports of journeys that started before now (the exporter's last one, replayed at the
        first poll) are old news."""
        now, mono = self.clock.time(), self.clock.monotonic()
        self._ignore_before = max(self._ignore_before, ignore_reports_before)
        timed = [a for a in attempts if isinstance(a.get("at"), (int, float))
                 and not isinstance(a.get("at"), bool) and 0 <= now - a["at"] <= 3600]
        for attempt in sorted(timed, key=lambda a: a["at"]):
            at = attempt["at"]
            if attempt.get("called"):
                self._calls_last_hour.append(mono - (now - at))
                self._restored_last_call = mono - (now - at)
            if attempt.get("result") in SPENDING and isinstance(attempt.get("link_id"), str):
                self._spend(attempt["link_id"])

    def _submit(self, event: tuple) -> None:
        try:
            self.events.put_nowait(event)
        except queue.Full:  # a flood: the worker is far behind; what is queued already triggers
            self.dropped += 1

    # --- the worker ---------------------------------------------------------------------------

    def run(self, stop: threading.Event, tick: float = 0.2) -> None:
        while not stop.is_set():
            try:
                event = self.events.get(timeout=tick)
            except queue.Empty:
                event = None
            self.step(event)

    def step(self, event=None) -> None:
        """Handle one event (or none) and act if an action is due. Never raises."""
        try:
            if event is not None:
                kind, payload = event
                if kind == "report":
                    report, received_at = payload if isinstance(payload, tuple) else (payload, None)
                    self._on_report(report, received_at=received_at)
                elif kind == "alert":
                    self._on_alert(payload)
            self._update_enabled()
            self._maybe_act()
        except Exception as exc:  # noqa: BLE001 (a bug of ours must not stop the sidecar)
            self.log.error("sidecar step failed", extra={"fields": {
                "error": type(exc).__name__, "detail": scrub(str(exc), self._known_secrets())}})

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), name="sidecar", daemon=True)
        thread.start()
        return thread

    # --- triggers -----------------------------------------------------------------------------

    def _on_report(self, report: ProbeReport, source: str = "probe",
                   received_at: float | None = None) -> None:
        """``received_at``: when the hand-off delivered it (the worker's wake-up is measured
        from there, see bench/drills.py)."""
        now = self.clock.time()
        incident = self.incident
        if report.success:
            if incident is not None and report.started_at >= (incident.first_failure_at or 0):
                incident.good_orders += 1
                incident.first_good_order_at = report.ended_at
                incident.note(now, f"a synthetic order by the {source} succeeded")
                self._close(incident, "chaos ended without the sidecar's link call"
                            if not incident.link_called_at else "verified by a later good order")
            return
        if report.started_at < self._ignore_before:
            # that journey started before the last verified recovery, or before this sidecar
            # started (the exporter's last one, replayed at the first poll): old news
            self.log.debug("report ignored: its journey started before", extra={"fields": {
                "started_at": report.started_at, "ignore_before": self._ignore_before}})
            return
        if incident is None:
            incident = self._open("probe", report.first_failure_at or report.started_at,
                                  report=report, received_at=received_at)
        if incident.first_failure_ended_at is None:
            # the first failed order this sidecar saw (of a streak it saw from its start, the
            # first one): where the time to detect ends, see exporter/timing.py
            incident.first_failure_ended_at = report.ended_at
        incident.count_failure(report.failed_step, report.reason)
        mode = observed_chaos(report)
        if report.order_seconds is not None:
            incident.slowest_order_seconds = max(incident.slowest_order_seconds or 0.0,
                                                 report.order_seconds)
        if incident.chaos_mode is None or (report.link and incident.chaos_mode != mode):
            incident.chaos_mode = mode
            step, reason = known_names(report.failed_step, report.reason)
            incident.note(now, f"synthetic order failed at {step}: {reason}"
                          + (" (chaos link seen)" if report.link else ""))
        if report.link is not None:
            self._link = (report.link, self.clock.monotonic())
        self._save(incident)

    def _on_alert(self, alert: str | tuple[str, float]) -> None:
        status, queued_at = alert if isinstance(alert, tuple) else (alert, self.clock.monotonic())
        now = self.clock.time()
        self.metrics.alerts.labels(status).inc()
        if status == "resolved":
            target = self.incident or (self.closed[-1] if self.closed else None)
            if target is not None and target.alert_resolved_at is None:
                target.alert_resolved_at = now
                target.note(now, f"alert {ALERT_NAME} resolved")
                self._save(target)
            return
        mono = self.clock.monotonic()
        # the cooldown counts from the end of the last confirming order, and an alert that
        # waited in the queue while that order ran is answered by it
        confirmed_lately = (self._last_confirm is not None
                            and (mono - self._last_confirm < self.options.cooldown
                                 or queued_at <= self._last_confirm))
        if self.incident is None and confirmed_lately and self._confirm_found_working:
            # a confirming order ran within the cooldown, found the shop working, and no
            # incident is open: more alerts (a flood, a repeat) open nothing and order nothing.
            # One that found the shop broken says nothing of a new alert once its incident has
            # been healed: that alert is a new outage, and gets its own confirming order.
            return
        incident = self.incident or self._open("alert", None)
        if incident.alert_fired_at is None:
            incident.alert_fired_at = now
            incident.note(now, f"alert {ALERT_NAME} fired")
        self._save(incident)  # on disk before the order below
        if self._fresh_link():
            return
        if confirmed_lately and self._confirm_incident == incident.id:
            self._note_once(incident, f"confirm-{self._last_confirm}",
                            "more alerts within the cooldown: no further synthetic order")
            return
        self._last_confirm, self._confirm_incident = mono, incident.id
        self._confirm_found_working = False
        incident.note(now, "no fresh chaos link known: the sidecar places a synthetic order")
        self._save(incident)  # on disk before the journey: a crash in it leaves a record
        try:
            result = self.journey(self.probe_config)
        finally:
            self._last_confirm = self.clock.monotonic()
        self._confirm_found_working = result.success
        self._on_report(ProbeReport.from_result(result), source="sidecar")
        self._save(incident)

    # --- action -------------------------------------------------------------------------------

    def _fresh_link(self) -> RecoveryLink | None:
        if self._link is None:
            return None
        link, seen = self._link
        if self.clock.monotonic() - seen > self.options.link_max_age:
            return None
        return link

    def _kill_switch_on(self) -> bool:
        path = self.options.kill_switch_file
        return path is not None and path != "" and os.path.exists(path)

    def _update_enabled(self) -> None:
        self.metrics.enabled.set(0 if self.options.dry_run or self._kill_switch_on() else 1)

    def _note_once(self, incident: Incident, key: str, text: str) -> None:
        if (incident.id, key) not in self._notes_once:
            self._notes_once.add((incident.id, key))
            if key in LIMITS:  # the draft's action items are drawn from these
                incident.limits.append(key)
            incident.note(self.clock.time(), text)
            self.log.warning(text, extra={"fields": {"incident": incident.id}})
            self._tell("note", incident=incident.id, text=text)
            self._save(incident)

    def _maybe_act(self) -> None:
        """Call the fresh link if every rule allows it. A link that may not be called is
        refused at once, before any cooldown; every call, even one that raised, is a recorded
        attempt with its cooldown. The cooldown spaces the calls within an incident: the first
        call of a new incident is immediate (the hourly limit still holds)."""
        incident, link = self.incident, self._fresh_link()
        if incident is None or link is None or link in self._handled_links:
            return
        if _link_id(link) in self._spent:
            self._note_once(incident, "spent_link", "this chaos link was answered or refused "
                            "before and is never called twice: a human must end this chaos")
            return
        refusal = self.policy.refusal(link.reveal())
        if refusal is not None:
            self._record_attempt(incident, link, LinkOutcome("refused", refusal))
            return
        mono = self.clock.monotonic()
        calls = [a for a in incident.attempts if a["called"]]
        if len(calls) >= self.options.max_attempts:
            self._note_once(incident, "max_attempts", f"{len(calls)} link calls made, the most "
                            "per incident (--max-attempts): a human must look")
            return
        if any(last is not None and mono - last < self.options.cooldown
               for last in (self._last_call, self._restored_last_call)):
            return
        while self._calls_last_hour and mono - self._calls_last_hour[0] > 3600:
            self._calls_last_hour.popleft()
        if len(self._calls_last_hour) >= self.options.max_attempts_per_hour:
            self._note_once(incident, "hourly_limit", "hourly limit of link calls reached "
                            "(--max-attempts-per-hour): not calling")
            return
        if self._kill_switch_on():
            self._note_once(incident, "kill_switch",
                            "kill switch is on: not calling the recovery link")
            return
        if self.options.dry_run:
            outcome = LinkOutcome("dry_run", "dry run: the link was not called")
        else:
            self._last_call = mono  # spaced even if the call below raises
            # told before the call: the factory ends its chaos while the call runs, and the
            # demo's timeline prints cause before effect
            self._tell("calling", incident=incident.id, link=link.redacted)
            try:
                outcome = self.link_caller(link, self.policy, timeout=self.options.link_timeout,
                                           user_agent=self.probe_config.user_agent,
                                           ca_file=self.probe_config.ca_file)
            except Exception as exc:  # noqa: BLE001 (recorded and counted like any failure)
                outcome = LinkOutcome("error", f"link call failed: {type(exc).__name__}: "
                                      f"{scrub(str(exc), secret_parts(link.reveal()))}")
        self._record_attempt(incident, link, outcome)
        if outcome.result in ("resolved", "no_chaos"):
            self._verify(incident)

    def _record_attempt(self, incident: Incident, link: RecoveryLink, outcome: LinkOutcome) -> None:
        now, mono = self.clock.time(), self.clock.monotonic()
        # a dry run calls nothing; a refusal calls nothing unless it came from a redirect answer
        called = outcome.result != "dry_run" and not (
            outcome.result == "refused" and outcome.status is None)
        if outcome.result != "error":
            self._handled_links.add(link)  # each link once; a network error may be retried
        if outcome.result in SPENDING:
            self._spend(_link_id(link))
        if called:
            self._last_call = mono
            self._calls_last_hour.append(mono)
            if incident.link_called_at is None:
                incident.link_called_at = now
            incident.link_answer = outcome.result
        host = urls.host_of(link.reveal())
        incident.attempts.append({"at": now, "host": host, "result": outcome.result,
                                  "link_id": _link_id(link),
                                  "detail": outcome.detail, "link": link.redacted,
                                  "called": called})
        incident.link_host = incident.link_host or host
        incident.note(now, f"recovery link {'called' if called else 'not called'}: "
                           f"{outcome.result}" + (f" ({outcome.detail})" if outcome.detail else ""))
        self.metrics.attempts.labels(outcome.result).inc()
        level = logging.WARNING if outcome.result in ("refused", "error", "unresolved") else logging.INFO
        self.log.log(level, "recovery attempt", extra={"fields": {
            "incident": incident.id, "result": outcome.result, "detail": outcome.detail,
            "status": outcome.status, "link": link.redacted}})
        self._tell("attempt", incident=incident.id, result=outcome.result, called=called,
                   link=link.redacted, detail=outcome.detail)
        self._save(incident)

    def _verify(self, incident: Incident) -> None:
        """A fresh synthetic order must succeed, with no link, before the incident closes."""
        result = self.journey(self.probe_config)
        self._ignore_before = max(self._ignore_before, result.started_at)
        now = self.clock.time()
        if result.success:
            incident.good_orders += 1
            incident.first_good_order_at = result.started_at + result.duration  # timing.py
            incident.note(now, "verification order succeeded")
            self.metrics.last_success.set(now)
            self._close(incident, "recovery link called, then a good synthetic order verified")
            return
        incident.note(now, f"verification order failed at {result.failed_step}: {result.reason}")
        self._on_report(ProbeReport.from_result(result), source="sidecar")

    # --- incident lifecycle -------------------------------------------------------------------

    def _open(self, detected_by: str, first_failure_at: float | None, *,
              report: ProbeReport | None = None, received_at: float | None = None) -> Incident:
        now = self.clock.time()
        incident = Incident(id=new_incident_id(now), opened_at=now,
                            detected_by=detected_by, first_failure_at=first_failure_at)
        if first_failure_at is not None:
            incident.note(first_failure_at, "first failed synthetic order")
        incident.note(now, f"incident opened (detected by the {detected_by})")
        self._save(incident)  # written when it opens, before any action
        with self._lock:
            self.incident = incident
        self._link = None
        self._handled_links.clear()
        self._last_call = None  # the cooldown spaces calls within one incident
        self.metrics.incidents.inc()
        self.metrics.open.set(1)
        self.metrics.open_since.set(first_failure_at or now)
        self.log.warning("incident opened", extra={"fields": {
            "incident": incident.id, "detected_by": detected_by}})
        self._tell("incident_opened", incident=incident.id, detected_by=detected_by,
                   failed_order_ended_at=None if report is None else report.ended_at,
                   received_at=received_at, opened_at=now)
        return incident

    def _close(self, incident: Incident, resolution: str) -> None:
        now = self.clock.time()
        incident.status = "resolved"
        incident.resolved_at = now
        incident.resolution = resolution
        incident.note(now, f"incident resolved: {resolution}")
        if incident.duration is not None:
            self.metrics.duration.observe(incident.duration)
        self.metrics.open.set(0)
        self.metrics.open_since.set(0)
        with self._lock:
            self.incident = None
            self.closed.append(incident)
        self._link = None
        self._handled_links.clear()
        self._save(incident)
        self.log.info("incident resolved", extra={"fields": {
            "incident": incident.id, "chaos": incident.chaos_mode,
            "duration_seconds": None if incident.duration is None else round(incident.duration, 3),
            "failed_orders": incident.failed_orders, "resolution": resolution}})
        times = incident.times
        self._tell("incident_resolved", incident=incident.id, resolution=resolution,
                   duration=incident.duration, path=self.store.path(incident),
                   good_order_ended_at=incident.first_good_order_at,
                   time_to_detect=times.time_to_detect, time_to_recover=times.time_to_recover)

    def _tell(self, event: str, **fields) -> None:
        """Tell the listener (the demo's timeline); its failure never stops a recovery."""
        if self.listener is None:
            return
        try:
            self.listener(event, fields)
        except Exception as exc:  # noqa: BLE001 (a listener's bug must not stop the sidecar)
            self.log.error("sidecar listener failed", extra={"fields": {
                "event": event, "error": type(exc).__name__}})

    def _save(self, incident: Incident) -> None:
        self.store.save(incident)  # never raises; a failure is logged once while it lasts

    def _spend(self, link_id: str) -> None:
        self._spent[link_id] = None
        while len(self._spent) > 4096:
            self._spent.popitem(last=False)

    def _known_secrets(self) -> list[str]:
        secrets = [self.probe_config.password]
        if self._link is not None:
            secrets += secret_parts(self._link[0].reveal())
        return secrets

    def snapshot(self) -> tuple[Incident | None, list[Incident]]:
        with self._lock:
            return self.incident, list(self.closed)


def _link_id(link: RecoveryLink) -> str:
    """A link's fingerprint for records and memory: the same link, the same id; not the link."""
    return hashlib.sha256(link.reveal().encode()).hexdigest()[:16]
