"""The exporter's metrics, in a registry the caller passes. The names are a public contract
(alerts, dashboards and the sidecar build on them): change none of them."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from . import __version__
from .result import JourneyResult

# Resolve 5 ms to 60 s; 30 and 35 straddle the factory's 32 s throttle delay.
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 20, 30, 35, 45, 60)
JOURNEY_BUCKETS = STEP_BUCKETS + (90, 120)


class ProbeMetrics:
    """Turns each :class:`JourneyResult` into metric updates (``record`` is an observer)."""

    def __init__(self, registry: CollectorRegistry, *, version: str = __version__) -> None:
        self._lock = threading.Lock()
        self._consecutive = 0
        self.orders = Counter(
            "pizza_probe_orders",
            "Synthetic order journeys by result; every journey counts once, whatever step failed.",
            ["result"],
            registry=registry,
        )
        for result in ("success", "failure"):
            self.orders.labels(result)
        self.failures = Counter(
            "pizza_probe_failures",
            "Failed journeys by the step that failed and the documented reason.",
            ["step", "reason"],
            registry=registry,
        )
        self.step_duration = Histogram(
            "pizza_probe_step_duration_seconds",
            "Duration of each journey step, failed steps included.",
            ["step"],
            buckets=STEP_BUCKETS,
            registry=registry,
        )
        self.duration = Histogram(
            "pizza_probe_duration_seconds",
            "Duration of the whole journey, login to logout.",
            buckets=JOURNEY_BUCKETS,
            registry=registry,
        )
        self.success = Gauge(
            "pizza_probe_success", "1 if the last journey succeeded, else 0.", registry=registry
        )
        self.consecutive_failures = Gauge(
            "pizza_probe_consecutive_failures",
            "Failed journeys in a row; 0 after a success.",
            registry=registry,
        )
        self.chaos_link_seen = Gauge(
            "pizza_probe_chaos_link_seen",
            "1 if the last order answer carried a chaos-ending link, else 0.",
            registry=registry,
        )
        self.last_run = Gauge(
            "pizza_probe_last_run_timestamp_seconds",
            "When the last journey started, seconds since the epoch.",
            registry=registry,
        )
        self.last_success = Gauge(
            "pizza_probe_last_success_timestamp_seconds",
            "When the last successful journey started, seconds since the epoch; 0 if none yet.",
            registry=registry,
        )
        build_info = Gauge(
            "pizza_probe_build_info", "The probe's version, value 1.", ["version"], registry=registry
        )
        build_info.labels(version).set(1)
        self.target_info = Gauge(
            "pizza_probe_target_info",
            "The target service's version from GET /, value 1.",
            ["version"],
            registry=registry,
        )
        self._target_version: str | None = None

    def record(self, result: JourneyResult) -> None:
        with self._lock:
            self.orders.labels("success" if result.success else "failure").inc()
            if not result.success:
                self.failures.labels(result.failed_step, result.reason).inc()
            for step in result.steps:
                self.step_duration.labels(step.name).observe(step.duration)
            self.duration.observe(result.duration)
            self._consecutive = 0 if result.success else self._consecutive + 1
            self.consecutive_failures.set(self._consecutive)
            self.success.set(1 if result.success else 0)
            self.chaos_link_seen.set(1 if result.chaos_link is not None else 0)
            self.last_run.set(result.started_at)
            if result.success:
                self.last_success.set(result.started_at)
            version = result.target_version
            if version is not None and version != self._target_version:
                self.target_info.clear()
                self.target_info.labels(version).set(1)
                self._target_version = version
