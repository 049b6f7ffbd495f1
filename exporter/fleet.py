"""``/probe?target=&module=``: one journey per request against a target Prometheus names, as the
blackbox exporter does, made safe for a shared exporter.

A request is refused (400, and no request leaves) unless its target is allowed: named by
``--target``, by the modules file's ``targets``, or matched by one of its
``allowed_target_patterns``. Journeys in flight are bounded. Within a module's ``min_interval``
a target is not ordered from again: the request gets the last journey's result, and a request
that arrives while that target's journey runs waits for it rather than starting a second one.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge

from .clock import Clock, SystemClock
from .config import ConfigError
from .journey import run_journey
from .modules import DEFAULT_MODULE, Module, ModulesSource, normalize_target
from .result import JourneyResult

OUTCOMES = ("journey", "cached", "joined", "refused", "busy")
# Results kept for min_interval at most this many (module, target) pairs: a pattern may admit
# any number of targets; past it the oldest finished ones go first.
MAX_ENTRIES = 10_000


class ProbeRefused(Exception):
    """The request is not probed. ``message`` is one line, safe to answer and log."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclasses.dataclass(frozen=True)
class ProbeAnswer:
    """What ``/probe`` answers: a journey's result, and how it was come by."""

    target: str
    module: Module
    result: JourneyResult
    outcome: str  # journey, cached or joined
    age: float  # seconds since the journey ended (0 for a new one)


class _Entry:
    """The last journey of one (module, target), and the one in flight, if any."""

    def __init__(self) -> None:
        self.result: JourneyResult | None = None
        self.started = float("-inf")  # monotonic start of the last journey begun
        self.finished = float("-inf")
        self.done: threading.Event | None = None  # set while a journey is in flight
        # False for a timeout under one scrape's budget: a client that asks for 1 ms must not
        # make the next scrapes within min_interval report a healthy shop as failed.
        self.shared = True
        self.budget: float | None = None  # the scrape budget of the journey in flight


class FleetMetrics:
    """The exporter's own view of ``/probe``, in its process registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.probes = Counter("pizza_probe_fleet_probes",
                              "Requests to /probe by outcome: journey (a new journey ran), "
                              "cached (within min_interval), joined (a journey in flight), "
                              "refused (bad or unlisted target or module), busy (too many "
                              "journeys in flight).", ["outcome"], registry=registry)
        for outcome in OUTCOMES:
            self.probes.labels(outcome)
        self.in_flight = Gauge("pizza_probe_fleet_journeys_in_flight",
                               "Journeys /probe is running now.", registry=registry)


class ProbeService:
    """Answers ``/probe`` requests. ``run`` is the journey function (a test may pass its own)."""

    def __init__(self, modules: ModulesSource, *, static_targets: Iterable[str] = (),
                 max_concurrent: int = 32, metrics: FleetMetrics | None = None,
                 clock: Clock | None = None,
                 run: Callable[..., JourneyResult] = run_journey,
                 observers: Iterable[Callable[[ProbeAnswer], None]] = ()) -> None:
        self.modules = modules
        self.static_targets = frozenset(normalize_target(url) for url in static_targets)
        self.metrics = metrics or FleetMetrics(CollectorRegistry())
        self.clock = clock or SystemClock()
        self.run = run
        self.observers = list(observers)
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._lock = threading.Lock()
        self._entries: dict[tuple[Module, str], _Entry] = {}
        self._last_sweep = float("-inf")

    def resolve(self, target: str | None, module_name: str | None) -> tuple[str, Module]:
        """The normalized target and its module, or :class:`ProbeRefused`."""
        if not target:
            raise ProbeRefused(400, "the target parameter is missing")
        try:
            url = normalize_target(target)
        except ConfigError as exc:
            raise ProbeRefused(400, str(exc)) from None
        modules = self.modules.current
        name = module_name or DEFAULT_MODULE
        module = modules.modules.get(name)
        if module is None:
            known = ", ".join(sorted(modules.modules))
            raise ProbeRefused(400, f"unknown module (known: {known})")
        if not modules.allows(url, self.static_targets):
            raise ProbeRefused(400, "target not allowed: name it with --target or in the modules "
                                    "file's targets, or match allowed_target_patterns")
        return url, module

    def probe(self, target: str | None, module_name: str | None = None, *,
              budget: float | None = None) -> ProbeAnswer:
        try:
            url, module = self.resolve(target, module_name)
        except ProbeRefused:
            self.metrics.probes.labels("refused").inc()
            raise
        key = (module, url)
        beside = False  # a journey of its own beside one in flight that cannot answer for it
        with self._lock:
            self._sweep()
            entry = self._entries.setdefault(key, _Entry())
            now = self.clock.monotonic()
            if entry.done is not None and _covers(entry.budget, budget):
                done, outcome = entry.done, "joined"
            elif (entry.done is None and entry.result is not None and entry.shared
                  and now - entry.started < module.min_interval):
                return self._answer(url, module, entry, "cached", now)
            elif not self._slots.acquire(blocking=False):
                self.metrics.probes.labels("busy").inc()
                raise ProbeRefused(503, "too many journeys in flight; try again later")
            else:
                done, outcome = threading.Event(), "journey"
                if entry.done is None:
                    entry.done, entry.started, entry.budget = done, now, budget
                else:  # the journey in flight has a smaller budget than this scrape allows
                    beside = True
        if outcome == "joined":
            done.wait(budget)  # no longer than its own scrape allows
            with self._lock:  # its result, or the one before if it is still running
                if entry.result is None:
                    self.metrics.probes.labels("busy").inc()
                    raise ProbeRefused(503, "this target's journey is still running")
                return self._answer(url, module, entry, "joined", self.clock.monotonic())
        self.metrics.in_flight.inc()
        result: JourneyResult | None = None
        try:
            result = self.run(module.config_for(url), clock=self.clock, budget=budget)
        finally:
            self.metrics.in_flight.dec()
            self._slots.release()
            with self._lock:  # the result is in place before any waiter wakes
                if not beside:
                    entry.done = None
                if result is not None:
                    finished = self.clock.monotonic()
                    # a timeout under this scrape's budget is its own, never another's answer
                    shared = not (budget is not None and result.reason == "timeout")
                    if not beside or shared:
                        entry.result, entry.finished, entry.shared = result, finished, shared
                    self.metrics.probes.labels("journey").inc()
                    answer = ProbeAnswer(url, module, result, "journey", 0.0)
            if not beside:
                done.set()
        for observer in self.observers:
            observer(answer)
        return answer

    def _answer(self, url: str, module: Module, entry: _Entry, outcome: str,
                now: float) -> ProbeAnswer:
        self.metrics.probes.labels(outcome).inc()
        age = 0.0 if outcome == "journey" else max(0.0, now - entry.finished)
        assert entry.result is not None
        return ProbeAnswer(url, module, entry.result, outcome, age)

    def _sweep(self) -> None:
        """Forget results past their min_interval (at most once a second, or at once past
        MAX_ENTRIES): they will not be answered again, and a fleet found by service discovery
        changes. Past MAX_ENTRIES the oldest finished results go too."""
        now = self.clock.monotonic()
        if now - self._last_sweep < 1.0 and len(self._entries) < MAX_ENTRIES:
            return
        self._last_sweep = now
        for key, entry in list(self._entries.items()):
            if entry.done is None and now - entry.started >= key[0].min_interval:
                del self._entries[key]
        excess = len(self._entries) - MAX_ENTRIES + 1
        if excess > 0:
            finished = sorted((entry.started, id(key), key) for key, entry in self._entries.items()
                              if entry.done is None)
            for _, _, key in finished[:excess]:
                del self._entries[key]


def _covers(flight: float | None, wanted: float | None) -> bool:
    """Whether a journey in flight with budget ``flight`` may answer a scrape that allows
    ``wanted``: only if it was given at least as long (None: no limit)."""
    if flight is None:
        return True
    return wanted is not None and flight >= wanted
