"""Incident records: what the sidecar saw and did, as JSON and as a short postmortem draft in
the shape of the team's incident reports. Nothing in them is secret: links are redacted."""

from __future__ import annotations

import dataclasses
import datetime
import errno
import json
import os
import secrets
import tempfile

from .config import read_regular_file
from .handoff import ProbeReport
from .logs import get_logger
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

    def to_markdown(self) -> str:
        """The postmortem draft (see :mod:`exporter.postmortem`)."""
        from .postmortem import render  # it reads incidents: imported when first drawn

        return render(self)


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


class IncidentStore:
    """Writes each incident as ``<id>.json`` and ``<id>.md`` in a directory, atomically.

    A record is first created without replacing anything (a hard link of a complete temporary
    file), so a store never overwrites another incident's record, even another process's; later
    saves of the same incident replace it. A failed write leaves no temporary file behind and is
    logged as one line, once while the failure lasts."""

    def __init__(self, directory: str | None) -> None:
        self.directory = directory
        self._created: set[str] = set()  # file names this store made, so may replace
        self._written: dict[str, bool] = {}  # incident id -> did its last save succeed
        self._failing = False
        if directory:
            os.makedirs(directory, exist_ok=True)

    def check_writable(self) -> None:
        """Create and remove a probe file: a read-only or unusable directory raises OSError now,
        at start, rather than at the first incident."""
        if not self.directory:
            return
        fd, probe = tempfile.mkstemp(dir=self.directory, prefix=".tmp-probe-")
        try:
            os.close(fd)
        finally:
            os.unlink(probe)

    def path(self, incident: Incident) -> str | None:
        """Where the postmortem draft of ``incident`` is, if it was written (by its last save)."""
        if not self.directory or not self._written.get(incident.id):
            return None
        return os.path.join(self.directory, f"{incident.id}.md")

    def save(self, incident: Incident) -> bool:
        """Write the record; False if it could not be (logged). Never raises OSError."""
        if not self.directory:
            return False
        try:
            self._write(f"{incident.id}.json", json.dumps(incident.to_json(), indent=2) + "\n")
            self._write(f"{incident.id}.md", incident.to_markdown())
        except OSError as exc:
            self._written[incident.id] = False
            self._log_failure(incident.id, exc)
            return False
        self._written[incident.id] = True
        if self._failing:
            self._failing = False
            get_logger().info("incident records written again", extra={"fields": {
                "incident": incident.id, "dir": self.directory}})
        return True

    def _log_failure(self, incident_id: str, exc: OSError) -> None:
        fields = {"incident": incident_id, "dir": self.directory,
                  "error": exc.strerror or type(exc).__name__}
        if self._failing:  # said once already; each retry only at debug level
            get_logger().debug("cannot write incident record", extra={"fields": fields})
            return
        self._failing = True
        get_logger().error("cannot write incident record", extra={"fields": fields})

    def _write(self, name: str, text: str) -> None:
        assert self.directory is not None
        final = os.path.join(self.directory, name)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)  # a full disk fails here or at close: the finally cleans up
            if name in self._created:
                os.replace(tmp, final)
            else:
                self._create(tmp, final)
                self._created.add(name)
        finally:
            try:
                os.unlink(tmp)  # after a replace there is nothing left to remove
            except FileNotFoundError:
                pass

    @staticmethod
    def _create(tmp: str, final: str) -> None:
        """Put ``tmp`` at ``final`` only if nothing is there: another incident's record (same
        id, another process) is never overwritten."""
        try:
            os.link(tmp, final)  # atomic, and fails with EEXIST
        except OSError as exc:
            if exc.errno == errno.EEXIST:
                raise OSError(errno.EEXIST, "another incident's record has this name") from None
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            # a file system without hard links: claim the name, then fill it atomically
            os.close(os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            os.replace(tmp, final)

    def recent_attempts(self, now: float, window: float = 3600.0, files: int = 500) -> list[dict]:
        """The link attempts of the records written in the last ``window`` seconds (at most the
        newest ``files`` records): what a restarted sidecar must remember of its limits."""
        attempts: list[dict] = []
        recent = [(mtime, path) for mtime, path in self._record_files() if now - mtime <= window]
        for _, path in sorted(recent, reverse=True)[:files]:
            data = _read_record(path)
            if isinstance(data, dict) and isinstance(data.get("attempts"), list):
                attempts += [a for a in data["attempts"] if isinstance(a, dict)]
        return attempts

    def _record_files(self, limit: int = MAX_RECORD_FILES) -> list[tuple[float, str]]:
        """(mtime, path) of the regular ``*.json`` files in the directory, at most ``limit`` of
        them: a symlink, a FIFO or a directory named like a record is not one."""
        if not self.directory:
            return []
        found: list[tuple[float, str]] = []
        try:
            with os.scandir(self.directory) as entries:
                for entry in entries:
                    if len(found) >= limit:
                        break
                    if not entry.name.endswith(".json") or entry.name.startswith("."):
                        continue
                    try:
                        if entry.is_file(follow_symlinks=False):
                            found.append((entry.stat(follow_symlinks=False).st_mtime, entry.path))
                    except OSError:  # gone meanwhile
                        continue
        except OSError:
            return []
        return found

    def reconcile(self, now: float) -> list[Incident]:
        """At start: close every record still ``open`` as ``abandoned`` (its owner stopped before
        it ended, and nothing else would ever close it), and save it again. Returns them.
        A file that is not a record of ours is left alone."""
        if not self.directory:
            return []
        log = get_logger()
        abandoned = []
        for _, path in sorted(self._record_files(), key=lambda found: found[1]):
            entry = os.path.basename(path)
            try:
                data = _read_record(path)
                if not isinstance(data, dict) or data.get("status") != OPEN:
                    continue
                incident = Incident.from_json(data)
                if f"{incident.id}.json" != entry:
                    continue
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("not an incident record, left alone", extra={"fields": {
                    "file": entry, "error": getattr(exc, "strerror", None) or type(exc).__name__}})
                continue
            incident.status = ABANDONED
            incident.resolution = ABANDONED_RESOLUTION
            incident.note(now, "incident abandoned at restart: the sidecar that owned it stopped "
                               "while it was open")
            self._created.update({f"{incident.id}.json", f"{incident.id}.md"})  # ours to replace
            if self.save(incident):
                log.warning("incident abandoned at restart", extra={"fields": {
                    "incident": incident.id, "record": self.path(incident)}})
                abandoned.append(incident)
        return abandoned


def _read_record(path: str) -> object:
    """A record's JSON, or None: read as a regular file only (a FIFO would block the start for
    ever, /dev/zero never end), at most MAX_RECORD_BYTES."""
    try:
        data = read_regular_file(path, MAX_RECORD_BYTES)
        if len(data) > MAX_RECORD_BYTES:
            return None
        return json.loads(data)
    except (OSError, ValueError, RecursionError):
        return None
