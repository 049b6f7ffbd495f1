"""Incident records: what the sidecar saw and did, as JSON and as a short postmortem draft in
the shape of the team's incident reports. Nothing in them is secret: links are redacted."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import tempfile

from .handoff import ProbeReport


def utc(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


FACTORY_UNREACHABLE = "factory unreachable (the service cannot reach its factory)"


def impact(chaos_mode: str | None, slowest_order_seconds: float | None) -> str:
    """What real customers likely saw, by the chaos observed: only fail and badjwt say their
    orders failed or were forged; throttle says they were slow, and by how much."""
    if chaos_mode == "throttle":
        slowest = (f" the slowest synthetic order took {slowest_order_seconds:.1f} s"
                   if slowest_order_seconds else " each was held about 32 s")
        return ("Real customers' orders in the same window were likely slow, not failed:"
                f"{slowest} before it was served.")
    if chaos_mode == "fail":
        return ("Real customers' orders in the same window likely failed the same way "
                "(500 'Failed to fulfill order at factory').")
    if chaos_mode == "badjwt":
        return ("Real customers' orders in the same window were likely served with forged pizza "
                "JWTs, which the factory's verify rejects.")
    if chaos_mode == FACTORY_UNREACHABLE:
        return ("Real customers' orders in the same window likely failed: the service could not "
                "reach its factory (500 'fetch failed').")
    return "Real customers' orders in the same window may have been affected the same way."


def observed_chaos(report: ProbeReport) -> str:
    """The chaos mode as the probe observed it (the root cause in the record)."""
    if report.reason == "factory_error":
        return "fail" if report.link else "factory_error (no link: API key, oven full or outage)"
    if report.reason == "slow":
        return "throttle"
    if report.reason == "bad_jwt":
        return "badjwt"
    if report.reason == "chaos_link":
        return "chaos link on a good order"
    if report.reason == "factory_unreachable":
        return FACTORY_UNREACHABLE
    if report.reason == "http_error" and "Chaos monkey" in report.detail:
        return "monkey (the service's own chaos switch)"
    return f"{report.failed_step} {report.reason}"


@dataclasses.dataclass
class Incident:
    id: str
    opened_at: float
    detected_by: str  # "probe" or "alert"
    first_failure_at: float | None = None
    chaos_mode: str | None = None
    failed_orders: int = 0
    alert_fired_at: float | None = None
    alert_resolved_at: float | None = None
    link_called_at: float | None = None
    link_answer: str | None = None
    link_host: str | None = None
    first_good_order_at: float | None = None
    slowest_order_seconds: float | None = None  # of the failed synthetic orders
    resolved_at: float | None = None
    status: str = "open"  # open, resolved
    resolution: str | None = None
    attempts: list[dict] = dataclasses.field(default_factory=list)
    timeline: list[tuple[float, str]] = dataclasses.field(default_factory=list)

    def note(self, at: float, event: str) -> None:
        self.timeline.append((at, event))

    @property
    def duration(self) -> float | None:
        start = self.first_failure_at or self.opened_at
        return None if self.first_good_order_at is None else max(0.0, self.first_good_order_at - start)

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["timeline"] = [{"at": utc(at), "event": event} for at, event in self.timeline]
        for key in ("opened_at", "first_failure_at", "alert_fired_at", "alert_resolved_at",
                    "link_called_at", "first_good_order_at", "resolved_at"):
            data[key] = utc(data[key])
        data["duration_seconds"] = None if self.duration is None else round(self.duration, 3)
        return data

    def to_markdown(self) -> str:
        duration = "still open" if self.duration is None else f"{self.duration:.1f} s"
        lines = [
            f"# Incident {self.id}: JWT Pizza synthetic orders failing",
            "",
            "## Summary",
            f"Between {utc(self.first_failure_at or self.opened_at)} and "
            f"{utc(self.first_good_order_at) or 'now'}, synthetic orders failed "
            f"({self.chaos_mode or 'cause unknown'}). Status: {self.status}"
            + (f", {self.resolution}." if self.resolution else "."),
            "",
            "## Detection",
            f"Detected by the {'synthetic order probe' if self.detected_by == 'probe' else 'alert PizzaSyntheticOrderFailing'}"
            f" at {utc(self.opened_at)}."
            + (f" The alert fired at {utc(self.alert_fired_at)}." if self.alert_fired_at else ""),
            "",
            "## Impact",
            f"{self.failed_orders} failed synthetic order(s); duration {duration}. "
            + impact(self.chaos_mode, self.slowest_order_seconds),
            "",
            "## Timeline (UTC)",
            *[f"- {utc(at)}: {event}" for at, event in self.timeline],
            "",
            "## Response",
            *([f"- {utc(a['at'])}: called the recovery link on {a['host']} -> {a['result']}"
               + (f" ({a['detail']})" if a.get("detail") else "") for a in self.attempts]
              or ["- No recovery link was called."]),
            "",
            "## Root cause",
            f"The pizza factory's chaos as observed by the probe: {self.chaos_mode or 'unknown'}.",
            "",
            "## Resolution",
            (f"The recovery link answered {self.link_answer!r}; a fresh synthetic order succeeded at "
             f"{utc(self.first_good_order_at)}." if self.status == "resolved" and self.link_answer
             else f"{self.resolution or 'Not resolved yet: a human must look (see docs/runbook.md).'}"),
            "",
        ]
        return "\n".join(lines)


class IncidentStore:
    """Writes each incident as ``<id>.json`` and ``<id>.md`` in a directory, atomically."""

    def __init__(self, directory: str | None) -> None:
        self.directory = directory
        if directory:
            os.makedirs(directory, exist_ok=True)

    def path(self, incident: Incident) -> str | None:
        """Where the postmortem draft of ``incident`` is written, if anywhere."""
        return os.path.join(self.directory, f"{incident.id}.md") if self.directory else None

    def save(self, incident: Incident) -> None:
        if not self.directory:
            return
        self._write(f"{incident.id}.json", json.dumps(incident.to_json(), indent=2) + "\n")
        self._write(f"{incident.id}.md", incident.to_markdown())

    def _write(self, name: str, text: str) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, os.path.join(self.directory, name))
