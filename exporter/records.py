"""The incident directory: each incident as ``<id>.json`` (exporter/incident.py's record) and
``<id>.md`` (exporter/postmortem.py's draft), written atomically, read back at start."""

from __future__ import annotations

import errno
import json
import os
import tempfile

from .config import read_regular_file
from .incident import (
    ABANDONED,
    ABANDONED_RESOLUTION,
    MAX_RECORD_BYTES,
    MAX_RECORD_FILES,
    OPEN,
    Incident,
)
from .logs import get_logger
from .postmortem import render


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
            self._write(f"{incident.id}.md", render(incident))
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
