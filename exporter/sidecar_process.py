"""Wiring of the sidecar process (``sidecar``, ``demo``): its engine, web server and the feed
from the exporter. Apart from ``runtime`` so that ``serve``, which runs none of it, does not
import the engine, its web pages, the incident records or the Alertmanager webhook (issue 17:
memory)."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable

from .alertmanager import Deduper
from .config import ProbeConfig
from .handoff import ExporterFeed, ProbeReport
from .httpserver import BackgroundServer
from .logs import get_logger
from .records import IncidentStore
from .recovery import LinkPolicy
from .runtime import process_registry
from .sidecar import RecoveryMetrics, Sidecar, SidecarOptions
from .sidecar_web import SidecarStatus, sidecar_server
from .statuspage import Sample


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
    store = store or IncidentStore(None)
    now = time.time()
    store.reconcile(now)  # records a previous run left open: closed as abandoned
    engine = Sidecar(config, policy, options, RecoveryMetrics(registry), store, listener=listener)
    # its limits hold across a restart: the hourly calls, the cooldown, the links answered; and
    # the exporter's last journey, replayed at the first poll, is old news
    try:
        engine.restore(store.recent_attempts(now), ignore_reports_before=now)
    except Exception as exc:  # noqa: BLE001 (odd records must not stop the sidecar from starting)
        get_logger().error("cannot restore the limits from the records", extra={"fields": {
            "error": type(exc).__name__}})
    status = SidecarStatus(exporter_url=exporter_url, secrets=lambda: (
        config.password, handoff_token, webhook_token))

    def handed(report: ProbeReport) -> None:  # the status page sees what the engine sees
        status.journeys.add(Sample.of_report(report))
        engine.submit_report(report)

    server = sidecar_server(*listen, registry, engine, webhook_token, Deduper(), status).start()
    if exporter_url:
        ExporterFeed(exporter_url, handed, token=handoff_token, stop=stop,
                     ca_file=config.ca_file).start()
    return SidecarProcess(engine, server, policy, engine.start(stop))
