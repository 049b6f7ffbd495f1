"""Alertmanager's webhook (payload version 4): parsing and de-duplication.

Alertmanager delivers at least once and re-sends a group on every 5xx, timeout or
repeat_interval; the receiver acts once per alert fingerprint and ``startsAt``."""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import threading


class WebhookError(ValueError):
    """The payload is not a version 4 Alertmanager webhook. The message is safe to answer."""


@dataclasses.dataclass(frozen=True)
class AlertEvent:
    status: str  # "firing" or "resolved"
    name: str
    fingerprint: str
    starts_at: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.fingerprint, self.starts_at, self.status)


def parse_webhook(body: bytes) -> list[AlertEvent]:
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise WebhookError("body is not JSON") from None
    if not isinstance(data, dict):
        raise WebhookError("payload is not a JSON object")
    if str(data.get("version")) != "4":
        raise WebhookError("payload version is not 4")
    alerts = data.get("alerts")
    if not isinstance(alerts, list):
        raise WebhookError("payload has no alerts list")
    events = []
    for alert in alerts:
        if not isinstance(alert, dict):
            raise WebhookError("an alert is not a JSON object")
        status, labels, starts_at = alert.get("status"), alert.get("labels"), alert.get("startsAt")
        if status not in ("firing", "resolved"):
            raise WebhookError("an alert's status is neither firing nor resolved")
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise WebhookError("an alert has no labels object")
        if not isinstance(starts_at, str) or not starts_at:
            raise WebhookError("an alert has no startsAt")
        fingerprint = alert.get("fingerprint")
        if not isinstance(fingerprint, str) or not fingerprint:
            canonical = json.dumps(sorted(labels.items())).encode()
            fingerprint = hashlib.sha256(canonical).hexdigest()[:16]
        events.append(AlertEvent(status, labels.get("alertname", ""), fingerprint, starts_at))
    return events


class Deduper:
    """Remembers the last ``size`` keys; ``first(key)`` is True only the first time."""

    def __init__(self, size: int = 4096) -> None:
        self._seen: collections.OrderedDict = collections.OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def first(self, key) -> bool:
        with self._lock:
            if key in self._seen:
                self._seen.move_to_end(key)
                return False
            self._seen[key] = None
            if len(self._seen) > self._size:
                self._seen.popitem(last=False)
            return True
