"""The exporter's metrics, in a registry the caller passes. The names are a public contract
(alerts, dashboards and the sidecar build on them): change none of them."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

from . import __version__
from .result import JourneyResult

# Resolve 5 ms to 60 s; 30 and 35 straddle the factory's 32 s throttle delay.
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 20, 30, 35, 45, 60)
JOURNEY_BUCKETS = STEP_BUCKETS + (90, 120)


class ProbeMetrics:
    """Turns each :class:`JourneyResult` into metric updates (``record`` is an observer).

    With ``targets`` (``serve --target NAME=URL``) every journey metric carries a ``target``
    label and :meth:`recorder` gives each target its observer; without, the names and labels
    are exactly those of the single-target exporter."""

    def __init__(self, registry: CollectorRegistry, *, version: str = __version__,
                 targets: Sequence[str] | None = None) -> None:
        self._lock = threading.Lock()
        self._labeled = targets is not None
        self._consecutive: dict[str | None, int] = {}
        self._target_info: dict[str | None, tuple[str, str]] = {}
        extra = ["target"] if self._labeled else []
        self.orders = Counter(
            "pizza_probe_orders",
            "Synthetic order journeys by result; every journey counts once, whatever step failed.",
            extra + ["result"],
            registry=registry,
        )
        self.failures = Counter(
            "pizza_probe_failures",
            "Failed journeys by the step that failed and the documented reason.",
            extra + ["step", "reason"],
            registry=registry,
        )
        self.step_duration = Histogram(
            "pizza_probe_step_duration_seconds",
            "Duration of each journey step, failed steps included.",
            extra + ["step"],
            buckets=STEP_BUCKETS,
            registry=registry,
        )
        self.duration = Histogram(
            "pizza_probe_duration_seconds",
            "Duration of the whole journey, login to logout.",
            extra,
            buckets=JOURNEY_BUCKETS,
            registry=registry,
        )
        self.success = Gauge(
            "pizza_probe_success", "1 if the last journey succeeded, else 0.", extra,
            registry=registry,
        )
        self.consecutive_failures = Gauge(
            "pizza_probe_consecutive_failures",
            "Failed journeys in a row; 0 after a success.",
            extra,
            registry=registry,
        )
        self.chaos_link_seen = Gauge(
            "pizza_probe_chaos_link_seen",
            "1 if the last order answer carried a chaos-ending link, else 0.",
            extra,
            registry=registry,
        )
        self.last_run = Gauge(
            "pizza_probe_last_run_timestamp_seconds",
            "When the last journey started, seconds since the epoch.",
            extra,
            registry=registry,
        )
        self.last_success = Gauge(
            "pizza_probe_last_success_timestamp_seconds",
            "When the last successful journey started, seconds since the epoch; 0 if none yet.",
            extra,
            registry=registry,
        )
        build_info = Gauge(
            "pizza_probe_build_info", "The probe's version, value 1.", ["version"], registry=registry
        )
        build_info.labels(version).set(1)
        self.target_info = Gauge(
            "pizza_probe_target_info",
            TARGET_INFO_HELP,
            extra + ["version", "factory"],
            registry=registry,
        )
        names: Sequence[str | None] = list(targets) if targets is not None else [None]
        for target in names:
            for result in ("success", "failure"):
                self._child(self.orders, target, result)
            if self._labeled:  # the unlabeled gauges exist from the start; these per target
                for gauge in (self.success, self.consecutive_failures, self.chaos_link_seen,
                              self.last_run, self.last_success):
                    self._child(gauge, target)

    def _labels(self, target: str | None, *values: str | None) -> tuple[str, ...]:
        return tuple(v or "" for v in ((target,) if self._labeled else ()) + values)

    def _child(self, metric, target: str | None, *values: str | None):
        labels = self._labels(target, *values)
        return metric.labels(*labels) if labels else metric

    def recorder(self, target: str) -> Callable[[JourneyResult], None]:
        """The observer of one named target's journeys."""
        return lambda result: self.record(result, target)

    def record(self, result: JourneyResult, target: str | None = None) -> None:
        if self._labeled != (target is not None):
            raise ValueError("record a target's journey through recorder(target)")
        with self._lock:
            self._child(self.orders, target, "success" if result.success else "failure").inc()
            if not result.success:
                self._child(self.failures, target, result.failed_step, result.reason).inc()
            exemplar = journey_exemplar(result)
            for step in result.steps:
                self._child(self.step_duration, target, step.name).observe(step.duration,
                                                                           exemplar)
            self._child(self.duration, target).observe(result.duration, exemplar)
            consecutive = 0 if result.success else self._consecutive.get(target, 0) + 1
            self._consecutive[target] = consecutive
            self._child(self.consecutive_failures, target).set(consecutive)
            self._child(self.success, target).set(1 if result.success else 0)
            self._child(self.chaos_link_seen, target).set(1 if result.chaos_link is not None else 0)
            self._child(self.last_run, target).set(result.started_at)
            if result.success:
                self._child(self.last_success, target).set(result.started_at)
            info = _target_info(result)
            old = self._target_info.get(target)
            if info is not None and info != old:
                if old is not None:
                    self.target_info.remove(*self._labels(target, *old))
                self._child(self.target_info, target, *info).set(1)
                self._target_info[target] = info


# What an exemplar may carry. OpenMetrics allows an exemplar's label names and values 128 UTF-8
# characters together: "journey_id" + 40 + "order_id" + 40 is 98. Anything else is left out
# (the order id comes from the server; journey.py has already dropped one holding a secret).
EXEMPLAR_VALUE = re.compile(r"[A-Za-z0-9_-]{1,40}")


def journey_exemplar(result: JourneyResult) -> dict[str, str]:
    """The exemplar of a journey's observations: its ``journey_id`` and, if the service answered
    the order, its ``order_id``, to find that order in the service's own logs and database."""
    exemplar = {}
    for name, text in (("journey_id", result.journey_id), ("order_id", result.order_id)):
        if text is not None and EXEMPLAR_VALUE.fullmatch(text):
            exemplar[name] = text
    return exemplar


TARGET_INFO_HELP = ("The target service's version from GET / and the factory its pizzas are "
                    "verified at (configured, or named by the service at GET /api/docs), value 1.")


def _target_info(result: JourneyResult) -> tuple[str, str] | None:
    """(version, factory) of ``pizza_probe_target_info``, once the service answered GET /."""
    if result.target_version is None:
        return None
    return result.target_version, result.factory_url or ""


class JourneyCollector:
    """The metrics of one journey, for the registry of one ``/probe`` request (the blackbox
    exporter's model), with the blackbox exporter's ``probe_success`` and
    ``probe_duration_seconds`` beside ours. Gauges only: every scrape is a new journey, or the
    last one again."""

    def __init__(self, result: JourneyResult, age: float = 0.0) -> None:
        self.result = result
        self.age = age

    def collect(self):
        r = self.result
        # The blackbox exporter's two names, with its meaning: the dashboards and alerts built
        # on them (probe_success == 0, avg_over_time(probe_success[5m])) work unchanged.
        yield GaugeMetricFamily("probe_success", "Displays whether or not the probe was a "
                                "success: 1 if the whole journey succeeded, else 0.",
                                value=1 if r.success else 0)
        yield GaugeMetricFamily("probe_duration_seconds", "Returns how long the probe took to "
                                "complete in seconds: the whole journey, login to logout.",
                                value=r.duration)
        yield GaugeMetricFamily("pizza_probe_success", "1 if the journey succeeded, else 0.",
                                value=1 if r.success else 0)
        yield GaugeMetricFamily("pizza_probe_duration_seconds",
                                "Duration of the whole journey, login to logout.", value=r.duration)
        steps = GaugeMetricFamily("pizza_probe_step_duration_seconds",
                                  "Duration of each step of the journey, failed steps included.",
                                  labels=["step"])
        for step in r.steps:
            steps.add_metric([step.name], step.duration)
        yield steps
        failure = GaugeMetricFamily("pizza_probe_failure_info",
                                    "The step that failed and the documented reason, value 1; "
                                    "absent after a success.", labels=["step", "reason"])
        if not r.success:
            failure.add_metric([r.failed_step or "", r.reason or ""], 1)
        yield failure
        yield GaugeMetricFamily("pizza_probe_chaos_link_seen",
                                "1 if the order answer carried a chaos-ending link, else 0.",
                                value=1 if r.chaos_link is not None else 0)
        yield GaugeMetricFamily("pizza_probe_last_run_timestamp_seconds",
                                "When the journey started, seconds since the epoch.",
                                value=r.started_at)
        yield GaugeMetricFamily("pizza_probe_result_age_seconds",
                                "Seconds since the journey answered here ended: 0 for a new "
                                "journey, more for one reused within the module's min_interval.",
                                value=self.age)
        info = GaugeMetricFamily("pizza_probe_target_info", TARGET_INFO_HELP,
                                 labels=["version", "factory"])
        labels = _target_info(r)
        if labels is not None:
            info.add_metric(list(labels), 1)
        yield info


def journey_registry(result: JourneyResult, age: float = 0.0) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JourneyCollector(result, age))
    return registry
