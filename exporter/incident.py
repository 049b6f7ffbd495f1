"""An incident: what the sidecar saw and did, as a plain record (JSON). exporter/records.py
keeps the records in a directory, exporter/postmortem.py draws the postmortem draft from one.
Nothing in them is secret: links are redacted."""

from __future__ import annotations

import dataclasses
import datetime
import secrets

from .handoff import ProbeReport
from .result import REASONS, STEPS
from .timing import OutageTimes


def utc(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_utc(text: str | None) -> float | None:
    """The inverse of :func:`utc`."""
    if text is None:
        return None
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def new_incident_id(now: float) -> str:
    """``incident-<UTC second>-<8 random hex digits>``: unique across processes and restarts
    (two processes opening an incident in the same second do not share an id)."""
    stamp = datetime.datetime.fromtimestamp(now, datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"incident-{stamp}-{secrets.token_hex(4)}"


# The statuses of a record: "open" while the sidecar works on it, "resolved" once a good order
# verified the shop, "abandoned" when a sidecar started and found it still open: the process
# that owned it stopped (killed, crashed, restarted) before it ended, so nothing will close it.
OPEN, RESOLVED, ABANDONED = "open", "resolved", "abandoned"
ABANDONED_RESOLUTION = ("abandoned at restart: the sidecar stopped before this incident ended "
                        "and nothing verified a good order; a failure after the restart opens a "
                        "new incident")
MAX_RECORD_BYTES = 4 << 20  # a record is a few KiB; a bigger file is not ours
MAX_RECORD_FILES = 10_000  # records looked at when the sidecar starts, at most
_TIMES = ("opened_at", "first_failure_at", "alert_fired_at", "alert_resolved_at",
          "link_called_at", "first_good_order_at", "resolved_at", "first_failure_ended_at")

FACTORY_UNREACHABLE = "factory unreachable (the service cannot reach its factory)"
# The chaos modes observed_chaos names only from an answer that carried a chaos link.
LINK_MODES = ("fail", "throttle", "badjwt", "chaos link on a good order")
# The sidecar's limits that stop it from calling a link and leave the incident to a human, as
# recorded in Incident.limits (the key of the sidecar's note).
LIMITS = ("max_attempts", "hourly_limit", "kill_switch", "spent_link")


def known_names(step: str | None, reason: str | None) -> tuple[str, str]:
    """A hand-off's step and reason as a record may quote them: ours, else "unknown" (the
    hand-off is read over the network; its strings stay out of records and drafts)."""
    return (step if step in STEPS else "unknown", reason if reason in REASONS else "unknown")


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
    return " ".join(known_names(report.failed_step, report.reason))


@dataclasses.dataclass
class Incident:
    id: str
    opened_at: float
    detected_by: str  # "probe" or "alert"
    first_failure_at: float | None = None
    chaos_mode: str | None = None
    failed_orders: int = 0
    good_orders: int = 0  # good synthetic orders seen while it was open: the one that ended it
    reasons: dict[str, int] = dataclasses.field(default_factory=dict)  # "step/reason" -> failed
    limits: list[str] = dataclasses.field(default_factory=list)  # LIMITS that stopped a call
    alert_fired_at: float | None = None
    alert_resolved_at: float | None = None
    link_called_at: float | None = None
    link_answer: str | None = None
    link_host: str | None = None
    first_good_order_at: float | None = None
    slowest_order_seconds: float | None = None  # of the failed synthetic orders
    resolved_at: float | None = None
    status: str = OPEN  # OPEN, RESOLVED or ABANDONED
    resolution: str | None = None
    first_failure_ended_at: float | None = None  # when the first failed order was known
    attempts: list[dict] = dataclasses.field(default_factory=list)
    timeline: list[tuple[float, str]] = dataclasses.field(default_factory=list)

    def note(self, at: float, event: str) -> None:
        self.timeline.append((at, event))

    def count_failure(self, step: str | None, reason: str | None) -> None:
        """One more failed synthetic order, by its step and reason (:func:`known_names`)."""
        self.failed_orders += 1
        key = "/".join(known_names(step, reason))
        self.reasons[key] = self.reasons.get(key, 0) + 1

    @property
    def orders_seen(self) -> int:
        """The synthetic orders seen while the incident was open, failed or good."""
        return self.failed_orders + self.good_orders

    @property
    def failed_share(self) -> float | None:
        """The share of the synthetic orders seen that failed; None if none was seen."""
        return self.failed_orders / self.orders_seen if self.orders_seen else None

    @property
    def times(self) -> OutageTimes:
        """Time to detect and to recover as exporter/timing.py defines them: the sidecar does
        not know when the factory broke, so the outage starts with the first failed order."""
        return OutageTimes(self.first_failure_at or self.opened_at,
                           self.first_failure_ended_at, self.first_good_order_at)

    @property
    def duration(self) -> float | None:
        """The time to recover (``duration_seconds`` in the record)."""
        return self.times.time_to_recover

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["timeline"] = [{"at": utc(at), "event": event} for at, event in self.timeline]
        for key in _TIMES:
            data[key] = utc(data[key])
        data["duration_seconds"] = None if self.duration is None else round(self.duration, 3)
        for key, seconds in (("time_to_detect_seconds", self.times.time_to_detect),
                             ("time_to_recover_seconds", self.times.time_to_recover)):
            data[key] = None if seconds is None else round(seconds, 3)
        return data

    @classmethod
    def from_json(cls, data: dict) -> Incident:
        """An incident from its JSON record (times to the second, as written). Raises
        ValueError, KeyError or TypeError if the record is not one of ours."""
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {key: value for key, value in data.items() if key in fields}
        for key in _TIMES:
            values[key] = parse_utc(values.get(key))
        values["timeline"] = [(parse_utc(item["at"]), str(item["event"]))
                              for item in data.get("timeline", [])]
        if not isinstance(values.get("id"), str) or values["opened_at"] is None:
            raise ValueError("not an incident record")
        _check_counts(values)
        if "good_orders" not in data and values.get("first_good_order_at") is not None:
            values["good_orders"] = 1  # a record written before good orders were counted
        return cls(**values)


def _check_counts(values: dict) -> None:
    """The counts a draft is drawn from have the types it needs; ValueError otherwise (a record
    that is not one of ours is left alone, never half read)."""
    def is_int(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    for key in ("failed_orders", "good_orders"):
        if key in values and not is_int(values[key]):
            raise ValueError(f"record has a bad {key}")
    reasons = values.get("reasons", {})
    if not isinstance(reasons, dict) or not all(
            isinstance(k, str) and is_int(v) for k, v in reasons.items()):
        raise ValueError("record has bad reasons")
    limits = values.get("limits", [])
    if not isinstance(limits, list) or not all(isinstance(item, str) for item in limits):
        raise ValueError("record has bad limits")
    attempts = values.get("attempts", [])
    if not isinstance(attempts, list) or not all(isinstance(item, dict) for item in attempts):
        raise ValueError("record has bad attempts")
