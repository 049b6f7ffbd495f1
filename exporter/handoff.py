"""The hand-off of journey results, chaos link included, from the exporter to the sidecar.

The exporter keeps the latest result in :class:`LatestJourney` (an observer) and serves it at
``GET /recovery/latest?after=SEQ&wait=SECONDS``, a long poll that answers as soon as a journey
newer than ``after`` finished. The answer holds the chaos link in clear, so it is served only to
a client that presents the shared hand-off token (``Authorization: Bearer``) or, when no token
is configured, only to a client on loopback. :class:`ExporterFeed` is the sidecar's end.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import math
import threading
from collections.abc import Callable
from typing import Any

import requests

from . import transport, urls
from .logs import get_logger
from .redact import RecoveryLink
from .result import JourneyResult

HANDOFF_PATH = "/recovery/latest"
MAX_WAIT = 30.0
MAX_ANSWER_BYTES = 64 * 1024  # a report is well under 4 KiB


# A time a UTC date can show (datetime ends with the year 9999): a record, a draft and the
# status page all print the times of a report.
LAST_TIMESTAMP = 253402300800.0


@dataclasses.dataclass(frozen=True)
class ProbeReport:
    """What the sidecar needs to know of one journey."""

    seq: int
    success: bool
    started_at: float
    failed_step: str | None = None
    reason: str | None = None
    detail: str = ""
    link: RecoveryLink | None = None
    first_failure_at: float | None = None  # start of the current failure streak
    order_seconds: float | None = None  # how long the order step took, if it ran
    duration: float | None = None  # how long the whole journey took (None from an old exporter)

    @property
    def ended_at(self) -> float:
        """When the journey ended (its start, if an old exporter did not say how long)."""
        return self.started_at + (self.duration or 0.0)

    @classmethod
    def from_result(cls, result: JourneyResult, seq: int = 0,
                    first_failure_at: float | None = None) -> ProbeReport:
        return cls(seq, result.success, result.started_at, result.failed_step, result.reason,
                   result.detail, result.chaos_link,
                   None if result.success else (first_failure_at or result.started_at),
                   result.step_durations.get("order"), result.duration)

    def to_json(self) -> dict:
        return {
            "seq": self.seq, "success": self.success, "started_at": self.started_at,
            "failed_step": self.failed_step, "reason": self.reason, "detail": self.detail,
            "chaos_link": self.link.reveal() if self.link else None,
            "chaos_link_key": self.link.key if self.link else None,
            "first_failure_at": self.first_failure_at,
            "order_seconds": self.order_seconds,
            "duration": self.duration,
        }

    @classmethod
    def from_json(cls, data: Any) -> ProbeReport:
        """The exporter's answer, every field checked; anything else raises ValueError only."""
        if not isinstance(data, dict):
            raise ValueError("hand-off answer is not a JSON object")

        def field(name: str, kinds: tuple, default=None, required: bool = False):
            value = data.get(name, default)
            if value is None and not required:
                return None
            # bool is an int to isinstance: accept it only where a bool is wanted
            if isinstance(value, bool) != (bool in kinds) or not isinstance(value, kinds):
                raise ValueError(f"hand-off answer has a bad {name}")
            return value

        def timestamp(name: str, required: bool) -> float | None:
            value = field(name, (int, float), required=required)
            if value is None:
                return None
            try:
                number = float(value)
            except OverflowError:
                raise ValueError(f"hand-off answer has a bad {name}") from None
            if not math.isfinite(number) or not 0 <= number < LAST_TIMESTAMP:
                raise ValueError(f"hand-off answer has a bad {name}")
            return number

        link = field("chaos_link", (str,))
        started_at = timestamp("started_at", required=True)
        if started_at is None:
            raise ValueError("hand-off answer has no started_at")
        duration = timestamp("duration", required=False)
        if duration is not None and duration < 0:
            raise ValueError("hand-off answer has a bad duration")
        return cls(
            seq=field("seq", (int,), required=True),
            success=field("success", (bool,), required=True),
            started_at=started_at,
            failed_step=field("failed_step", (str,)),
            reason=field("reason", (str,)),
            detail=field("detail", (str,), default="") or "",
            link=RecoveryLink(link, field("chaos_link_key", (str,)) or "") if link else None,
            first_failure_at=timestamp("first_failure_at", required=False),
            order_seconds=timestamp("order_seconds", required=False),
            duration=duration,
        )


class LatestJourney:
    """An observer keeping the newest journey as a :class:`ProbeReport`, with a wait for the
    next one."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._report: ProbeReport | None = None
        self._seq = 0
        self._streak_start: float | None = None

    def __call__(self, result: JourneyResult) -> None:
        with self._cond:
            self._seq += 1
            if result.success:
                self._streak_start = None
            elif self._streak_start is None:
                self._streak_start = result.started_at
            self._report = ProbeReport.from_result(result, self._seq, self._streak_start)
            self._cond.notify_all()

    def wait_newer(self, after: int, timeout: float) -> ProbeReport | None:
        with self._cond:
            self._cond.wait_for(lambda: self._seq > after, timeout=max(0.0, min(timeout, MAX_WAIT)))
            return self._report


def handoff_allowed(token: str | None, authorization: str, peer: str) -> bool:
    """With a token configured, the client must present it; without, it must be on loopback."""
    if token:
        return hmac.compare_digest(authorization.encode(), f"Bearer {token}".encode())
    # on a dual-stack socket (--listen [::]) an IPv4 client arrives as ::ffff:127.0.0.1
    return urls.is_loopback(peer)


class HandoffRefused(ValueError):
    status: int | None = None


class ExporterFeed:
    """Long-polls the exporter's hand-off endpoint and passes each new report on."""

    def __init__(self, exporter_url: str, on_report: Callable[[ProbeReport], None], *,
                 token: str | None = None, wait: float = 10.0, stop: threading.Event | None = None,
                 session: requests.Session | None = None, ca_file: str | None = None) -> None:
        self.url = exporter_url.rstrip("/") + HANDOFF_PATH
        self.on_report = on_report
        self.token = token
        self.wait = wait
        self.stop_event = stop or threading.Event()
        self.session = transport.configure(session or requests.Session(), ca_file)
        self._sockets = transport.track_sockets(self.session)
        self.connected: bool | None = None  # None until the first poll

    def poll_once(self, after: int) -> ProbeReport | None:
        """One long poll. The answer is read raw, never decompressed, and at most
        ``MAX_ANSWER_BYTES``: a hostile or broken exporter cannot make the sidecar swell."""
        headers = {"Accept-Encoding": "identity"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        with transport.hard_deadline(self._sockets, self.wait + 5):
            response = self.session.get(self.url, params={"after": after, "wait": self.wait},
                                        headers=headers, timeout=self.wait + 5, stream=True,
                                        proxies=transport.proxies_for(self.url))
            try:
                if response.status_code == 204:
                    return None
                if response.status_code != 200:
                    error = HandoffRefused(f"hand-off answered HTTP {response.status_code}")
                    error.status = response.status_code
                    raise error
                if response.headers.get("Content-Encoding", "identity").lower() != "identity":
                    raise HandoffRefused("hand-off answer is compressed")
                body = response.raw.read(MAX_ANSWER_BYTES + 1, decode_content=False)
            finally:
                response.close()
        if len(body) > MAX_ANSWER_BYTES:
            raise HandoffRefused(f"hand-off answer is over {MAX_ANSWER_BYTES} bytes")
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, RecursionError) as exc:
            raise ValueError("hand-off answer is not JSON") from exc
        return ProbeReport.from_json(data)

    def run(self) -> None:
        log = get_logger()
        seq = 0
        while not self.stop_event.is_set():
            try:
                report = self.poll_once(seq)
            except (requests.RequestException, ValueError) as exc:
                if self.connected is not False:  # log the change, not every retry
                    log.warning("exporter hand-off unavailable", extra={"fields": {
                        "url": self.url, "error": type(exc).__name__,
                        "status": getattr(exc, "status", None)}})
                self.connected = False
                self.stop_event.wait(1.0)
                continue
            if self.connected is not True:
                log.info("exporter hand-off connected", extra={"fields": {"url": self.url}})
                self.connected = True
            if report is None:
                continue
            if report.seq < seq:  # the exporter restarted: its sequence began again
                seq = 0
            if report.seq > seq:
                seq = report.seq
                self.on_report(report)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="exporter-feed", daemon=True)
        thread.start()
        return thread
