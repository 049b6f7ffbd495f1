"""Structured logs in logfmt (the Prometheus ecosystem's default) or JSON, one line an event."""

from __future__ import annotations

import datetime
import json
import logging
import sys

from .redact import mask_values
from .result import JourneyResult

LOGGER_NAME = "pizza_probe"


def logfmt(fields: dict) -> str:
    parts = []
    for key, value in fields.items():
        if value is None:
            continue
        if isinstance(value, float):
            text = f"{value:.6g}"
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = str(value)
        if text == "" or any(ch in text for ch in ' "=\\') or not text.isprintable():
            text = json.dumps(text)
        parts.append(f"{key}={text}")
    return " ".join(parts)


class _Formatter(logging.Formatter):
    def __init__(self, fmt: str, secrets: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.fmt = fmt
        # The process's own secrets (password, tokens), replaced by value in every line: the
        # last guard, behind the redaction each detail already had where it was made.
        self.secrets = frozenset(s for s in secrets if s)

    def _clean(self, value):
        return mask_values(value, self.secrets) if isinstance(value, str) else value

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        fields = {
            "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
        }
        fields.update(getattr(record, "fields", {}))
        if self.secrets:
            fields = {key: self._clean(value) for key, value in fields.items()}
        if self.fmt == "json":
            return json.dumps({k: v for k, v in fields.items() if v is not None})
        return logfmt(fields)


def setup_logging(level: str = "info", fmt: str = "logfmt", stream=None,
                  secrets: tuple[str | None, ...] = ()) -> logging.Logger:
    """The process's logger; ``secrets`` are never written, whatever a line holds."""
    logger = logging.getLogger(LOGGER_NAME)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_Formatter(fmt, tuple(s for s in secrets if s)))
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False
    return logger


def get_logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)


def redact_also(values, logger: logging.Logger | None = None) -> None:
    """Add ``values`` (a module's password, read from a modules file) to the secrets every line
    of ``logger`` is cleaned of. They are only ever added: an old password stays masked."""
    for handler in (logger or get_logger()).handlers:
        formatter = handler.formatter
        if isinstance(formatter, _Formatter):
            formatter.secrets = formatter.secrets | {v for v in values if v}


def journey_fields(result: JourneyResult) -> dict:
    """The fields of the one log line per journey; the chaos link is redacted."""
    fields: dict = {
        "success": result.success,
        "step": result.failed_step,
        "reason": result.reason,
        "status": result.status,
        "detail": result.detail or None,
        "duration_seconds": round(result.duration, 4),
        "journey_id": result.journey_id,  # as on the journey's exemplars
        "order_id": result.order_id,
    }
    for step in result.steps:
        fields[f"{step.name}_seconds"] = round(step.duration, 4)
    if result.chaos_link is not None:
        fields["chaos_link"] = result.chaos_link.redacted
        fields["chaos_link_key"] = result.chaos_link.key
    return fields


class JourneyLogger:
    """An observer that writes one line per journey, with ``fields`` (a target's name) first."""

    def __init__(self, logger: logging.Logger | None = None, fields: dict | None = None) -> None:
        self.logger = logger or get_logger()
        self.fields = fields or {}

    def __call__(self, result: JourneyResult) -> None:
        level = logging.INFO if result.success else logging.WARNING
        self.logger.log(level, "journey",
                        extra={"fields": {**self.fields, **journey_fields(result)}})


class ProbeLogger:
    """An observer of ``/probe``'s new journeys: the journey's line, with target and module."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or get_logger()

    def __call__(self, answer) -> None:
        JourneyLogger(self.logger, {"target": answer.target, "module": answer.module.name})(
            answer.result)
