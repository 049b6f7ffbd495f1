"""Wiring of the long-running pieces, shared by ``serve``, ``sidecar`` and ``demo``."""

from __future__ import annotations

import dataclasses
import functools
import random
import threading
from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from .alertmanager import Deduper
from .config import ProbeConfig
from .handoff import ExporterFeed, LatestJourney
from .httpserver import BackgroundServer
from .incident import IncidentStore
from .journey import run_journey
from .logs import JourneyLogger
from .metrics import ProbeMetrics
from .recovery import LinkPolicy
from .scheduler import Observer, ProbeLoop
from .sidecar import RecoveryMetrics, Sidecar, SidecarOptions
from .sidecar_web import sidecar_server
from .web import History, exporter_server


def process_registry() -> CollectorRegistry:
    """A registry with the process, platform and GC collectors every exporter exposes."""
    registry = CollectorRegistry()
    for collector in (ProcessCollector, PlatformCollector, GCCollector):
        collector(registry=registry)
    return registry


@dataclasses.dataclass
class Exporter:
    loop: ProbeLoop
    server: BackgroundServer
    latest: LatestJourney
    thread: threading.Thread | None = None

    def stop(self) -> None:
        self.loop.stop()
        self.server.stop()
        if self.thread is not None:
            self.thread.join(timeout=0.5)  # a journey mid-order is abandoned: a daemon thread


def start_exporter(config: ProbeConfig, interval: float, listen: tuple[str, int], *,
                   handoff_token: str | None = None, observers: Iterable[Observer] = (),
                   log=None) -> Exporter:
    registry = process_registry()
    metrics = ProbeMetrics(registry)
    history = History()
    latest = LatestJourney()
    loop = ProbeLoop(
        functools.partial(run_journey, config),
        interval,
        [metrics.record, history, latest, JourneyLogger(log), *observers],
        rng=random.Random(),
    )
    server = exporter_server(*listen, registry, history, latest, handoff_token).start()
    exporter = Exporter(loop, server, latest)
    exporter.thread = loop.start()
    return exporter


@dataclasses.dataclass
class SidecarProcess:
    engine: Sidecar
    server: BackgroundServer
    policy: LinkPolicy
    worker: threading.Thread

    def stop(self) -> None:
        self.server.stop()
        self.worker.join(timeout=0.5)


def start_sidecar(config: ProbeConfig, options: SidecarOptions, listen: tuple[str, int],
                  stop: threading.Event, *, exporter_url: str | None,
                  allow_hosts: Iterable[str] = (), store: IncidentStore | None = None,
                  webhook_token: str | None = None, handoff_token: str | None = None,
                  listener: Callable[[str, dict], None] | None = None) -> SidecarProcess:
    registry = process_registry()
    policy = LinkPolicy.default(config.factory_url, list(allow_hosts))
    engine = Sidecar(config, policy, options, RecoveryMetrics(registry),
                     store or IncidentStore(None), listener=listener)
    server = sidecar_server(*listen, registry, engine, webhook_token, Deduper()).start()
    if exporter_url:
        ExporterFeed(exporter_url, engine.submit_report, token=handoff_token, stop=stop).start()
    return SidecarProcess(engine, server, policy, engine.start(stop))
