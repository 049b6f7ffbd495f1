"""Wiring of the long-running pieces, shared by ``serve``, ``sidecar`` and ``demo``. The
sidecar's own wiring is in ``sidecar_process``: ``serve`` never loads the sidecar's engine,
its web pages, its incident records or the Alertmanager webhook's parser."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import random
import select
import signal
import socket
import threading
from collections.abc import Callable, Iterable, Sequence

from prometheus_client import (
    CollectorRegistry,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)

from . import transport
from .config import ConfigError, ProbeConfig
from .discovery import FactoryDirectory
from .fleet import FleetMetrics, ProbeService
from .handoff import LatestJourney
from .httpserver import BackgroundServer
from .journey import run_journey
from .logs import JourneyLogger, ProbeLogger, get_logger
from .metrics import ProbeMetrics
from .modules import DEFAULT_MODULE, ModulesSource, normalize_target
from .result import JourneyResult
from .scheduler import Observer, ProbeLoop
from .watchdog import Watchdog
from .web import History, StatusOptions, exporter_server


def wait_for(stop: threading.Event, hangup: threading.Event | None = None,
             on_hangup: Callable[[], None] | None = None, *, poll: float = 5.0) -> None:
    """Sleep until ``stop``. Signal handlers only set these flags; the work of a SIGHUP
    (``on_hangup``) runs here, in the main thread, one at a time.

    A signal the kernel gave another thread only runs its Python handler once the main thread
    wakes: so the main thread sleeps on the signal wakeup descriptor, which every signal
    writes to whichever thread got it, rather than waking twice a second to look (each wake-up
    costs CPU, a good part of an idle exporter's). A flag set other than by a signal is seen
    within ``poll`` seconds. Outside the main thread (no wakeup descriptor there), it polls."""
    def hung_up() -> None:
        if hangup is not None and hangup.is_set():
            hangup.clear()
            if on_hangup is not None:
                on_hangup()

    reader, writer = socket.socketpair()
    try:
        reader.setblocking(False)
        writer.setblocking(False)
        try:
            previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        except ValueError:  # not the main thread
            while not stop.wait(0.5):
                hung_up()
            return
        try:
            while not stop.is_set():
                select.select([reader], [], [], poll)
                with contextlib.suppress(OSError):
                    while reader.recv(512):
                        pass
                hung_up()  # a signal's Python handler has run by now: at this Python call
        finally:
            signal.set_wakeup_fd(previous)
    finally:
        reader.close()
        writer.close()


def process_registry() -> CollectorRegistry:
    """A registry with the process, platform and GC collectors every exporter exposes."""
    registry = CollectorRegistry()
    for collector in (ProcessCollector, PlatformCollector, GCCollector):
        collector(registry=registry)
    return registry


class JourneyRunner:
    """What the journeys of one process share, made once: the deadline watchdog (one thread
    for every request's deadline) and the factory each service names; and, per scheduled
    target, its connections (a session and adapter kept across its journeys, which run one at
    a time). Called directly (``/probe``, where journeys of one target may overlap), each
    journey has a session of its own."""

    def __init__(self, factories: FactoryDirectory | None = None) -> None:
        self.watchdog = Watchdog()
        self.factories = factories or FactoryDirectory()
        self._connections: list[transport.Connections] = []

    def __call__(self, config: ProbeConfig, **kwargs) -> JourneyResult:
        return run_journey(config, factories=self.factories, watchdog=self.watchdog, **kwargs)

    def for_target(self) -> Callable[[ProbeConfig], JourneyResult]:
        """A runner for one target's journeys, one at a time, on connections kept for it."""
        connections = transport.Connections()
        self._connections.append(connections)
        return functools.partial(run_journey, factories=self.factories, watchdog=self.watchdog,
                                 connections=connections)

    def close(self) -> None:
        self.watchdog.close()
        for connections in self._connections:
            connections.close()

    def __enter__(self) -> JourneyRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclasses.dataclass
class Exporter:
    loops: list[ProbeLoop]
    server: BackgroundServer
    latest: LatestJourney
    modules: ModulesSource
    fleet: ProbeService | None
    threads: list[threading.Thread] = dataclasses.field(default_factory=list)
    runner: JourneyRunner | None = None

    def stop(self) -> None:
        for loop in self.loops:
            loop.stop()
        self.server.stop()
        for thread in self.threads:
            thread.join(timeout=0.5)  # a journey mid-order is abandoned: a daemon thread
        if self.runner is not None:
            self.runner.watchdog.close()  # the connections go with the process


def start_exporter(config: ProbeConfig, interval: float, listen: tuple[str, int], *,
                   handoff_token: str | None = None, observers: Iterable[Observer] = (),
                   log=None, modules: ModulesSource | None = None,
                   targets: Sequence[tuple[str, str]] | None = None,
                   module: str = DEFAULT_MODULE, max_concurrent: int = 32,
                   sidecar_url: str | None = None) -> Exporter:
    """The exporter: scheduled journeys every ``interval`` and ``/probe`` for Prometheus.

    ``targets`` None: one journey loop against ``config.service_url``, metrics without a
    ``target`` label (and the sidecar's hand-off). A list of (name, URL): a loop per target,
    metrics labelled ``target=name``; an empty list: ``/probe`` alone. The scheduled journeys
    use ``module`` from ``modules`` (default: the flags' ``config``), looked up anew each time
    so a reload reaches them."""
    log = log or get_logger()
    modules = modules or ModulesSource(None, config)
    if targets != []:  # journeys are scheduled: their module must exist, now and after reloads
        if module not in modules.current.modules:
            raise ConfigError(f"module: no module {module!r} for the scheduled journeys "
                              f"(known: {', '.join(sorted(modules.current.modules))})")
        if module not in modules.required:
            modules.required += (module,)
    registry = process_registry()
    if modules.path is not None:
        ReloadMetrics(registry, modules)
    history = History()
    latest = LatestJourney()
    runner = JourneyRunner()  # the watchdog and the factory each service names, shared
    scheduled = [("", config.service_url)] if targets is None else list(targets)
    metrics = ProbeMetrics(registry, targets=None if targets is None else
                           [name for name, _ in scheduled])
    loops = []
    extra = list(observers)
    for index, (name, url) in enumerate(scheduled):
        per_target: list[Observer]
        if targets is None:  # ``observers`` before the hand-off: told before the sidecar acts
            per_target = [metrics.record, history, *extra, latest, JourneyLogger(log)]
        else:
            per_target = [metrics.recorder(name), history.of(name),
                          JourneyLogger(log, {"target": name}), *extra]
        loops.append(ProbeLoop(
            functools.partial(_scheduled_journey, modules, module, url, runner.for_target()),
            interval, per_target, rng=random.Random(),
            start_delay=interval * index / len(scheduled)))
    # /probe exists in fleet mode only: with --target or a modules file. A one-target exporter
    # keeps its old surface: nobody who reaches it can make it order more often.
    fleet = None
    if targets is not None or modules.path is not None:
        name = "service-url" if targets is None else "target"
        fleet = ProbeService(modules, static_targets=[normalize_target(url, name=name)
                                                      for _, url in scheduled],
                             max_concurrent=max_concurrent, metrics=FleetMetrics(registry),
                             run=runner,
                             observers=[history.probe, ProbeLogger(log)])
    status = StatusOptions(  # the status page; sidecar_url: its page links to the sidecar's
        targets=[name for name, _ in scheduled], interval=interval, sidecar_url=sidecar_url,
        secrets=lambda: (config.password, handoff_token, *modules.current.passwords()))
    server = exporter_server(*listen, registry, history, latest, handoff_token, fleet,
                             modules.reload if modules.path is not None else None,
                             status).start()
    exporter = Exporter(loops, server, latest, modules, fleet, runner=runner)
    exporter.threads = [loop.start() for loop in loops]
    return exporter


def _scheduled_journey(modules: ModulesSource, module: str, url: str,
                       run: Callable[[ProbeConfig], JourneyResult]) -> JourneyResult:
    config = modules.current.modules[module].config_for(url)  # a reload reaches it
    return run(config)


class ReloadMetrics:
    """``pizza_probe_config_last_reload_*``, as Prometheus and the blackbox exporter name them."""

    def __init__(self, registry: CollectorRegistry, modules: ModulesSource) -> None:
        self.successful = Gauge("pizza_probe_config_last_reload_successful",
                                "1 if the last reload of --config.file worked, else 0.",
                                registry=registry)
        self.successful.set(1)
        timestamp = Gauge("pizza_probe_config_last_reload_success_timestamp_seconds",
                          "When --config.file was last loaded, seconds since the epoch.",
                          registry=registry)
        timestamp.set_function(lambda: modules.last_success)
        modules.listeners.append(lambda ok: self.successful.set(1 if ok else 0))
