"""The plain values a journey produces: step results, the journey result, and the documented
step and reason names (the label values of ``pizza_probe_failures_total``)."""

from __future__ import annotations

import dataclasses
import secrets

from .redact import RecoveryLink

# The steps of one journey, in order.
STEPS = ("health", "login", "menu", "franchises", "order", "verify", "logout")

# Why a step failed. Documented in docs/metrics.md; a closed set so label cardinality stays bounded.
REASONS = {
    "connection_error": "could not connect, the connection was reset, or the name did not resolve",
    "tls_error": "the TLS handshake failed, e.g. a certificate no trusted CA signed (see --ca-file)",
    "timeout": "the step did not finish within its timeout",
    "auth_error": "login refused (401/403/404 unknown user), or a token was not accepted",
    "http_error": "an unexpected HTTP status, including the service's own 'Chaos monkey' 500",
    "bad_response": "the body was not JSON, had the wrong shape, was truncated or too large",
    "factory_error": "the order failed at the factory: 500 'Failed to fulfill order at factory'",
    "factory_unreachable": "the service could not reach its factory at all: 500 'fetch failed'",
    "bad_jwt": "the factory's verify endpoint rejected the pizza JWT",
    "slow": "the order carried a chaos link and took longer than --slow-threshold (throttle chaos)",
    "chaos_link": "the order succeeded but its answer carried a chaos link",
}


def new_journey_id() -> str:
    """A journey's id: 16 random hex digits, to find it again from an exemplar or a log line."""
    return secrets.token_hex(8)


class StepFailure(Exception):
    """A step failed for a documented reason. ``detail`` is short and free of secrets."""

    def __init__(
        self,
        reason: str,
        detail: str,
        *,
        status: int | None = None,
        link: RecoveryLink | None = None,
    ) -> None:
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.status = status
        self.link = link


@dataclasses.dataclass(frozen=True)
class StepResult:
    name: str
    ok: bool
    duration: float
    status: int | None = None
    reason: str | None = None
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class JourneyResult:
    """What one synthetic order journey saw. ``chaos_link`` prints redacted."""

    success: bool
    started_at: float  # wall clock, seconds since the epoch
    duration: float  # monotonic seconds, whole journey
    steps: tuple[StepResult, ...]
    failed_step: str | None = None
    reason: str | None = None
    detail: str = ""
    status: int | None = None
    chaos_link: RecoveryLink | None = None
    target_version: str | None = None
    # Where the pizza was (or would be) verified, and who said so: "configured" (--factory-url,
    # a module's factory_url), "service" (its GET /api/docs) or "default" (the public factory).
    factory_url: str | None = None
    factory_source: str | None = None
    # The service's id of the order this journey placed (``order.id`` of its 200 answer), as
    # text; None if no order was answered, or if the id could carry a secret (see journey.py).
    order_id: str | None = None
    # Made here, once per journey: every observer (metrics' exemplars, the log line, /probe)
    # sees the same id. Results that differ only in it are equal.
    journey_id: str = dataclasses.field(default_factory=new_journey_id, compare=False)

    @property
    def step_durations(self) -> dict[str, float]:
        return {step.name: step.duration for step in self.steps}

    def to_dict(self) -> dict:
        """A JSON-ready view with the link redacted."""
        return {
            "success": self.success,
            "started_at": self.started_at,
            "duration_seconds": round(self.duration, 6),
            "failed_step": self.failed_step,
            "reason": self.reason,
            "detail": self.detail,
            "status": self.status,
            "chaos_link": self.chaos_link.redacted if self.chaos_link else None,
            "chaos_link_key": self.chaos_link.key if self.chaos_link else None,
            "target_version": self.target_version,
            "factory_url": self.factory_url,
            "factory_source": self.factory_source,
            "order_id": self.order_id,
            "journey_id": self.journey_id,
            "steps": [
                {
                    "step": s.name,
                    "ok": s.ok,
                    "duration_seconds": round(s.duration, 6),
                    "status": s.status,
                    "reason": s.reason,
                    "detail": s.detail,
                }
                for s in self.steps
            ],
        }
