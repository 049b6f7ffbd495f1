"""``pizza-probe demo``: the simulator, the exporter and the sidecar in one process, the factory
broken on a schedule, and a live timeline of each drill: chaos started, first failed probe,
recovery link called, first good order, time to detect and time to recover."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import TextIO

import requests

from .config import ProbeConfig
from .incident import IncidentStore
from .result import JourneyResult
from .runtime import start_exporter, start_sidecar, wait_for
from .sidecar import SidecarOptions
from .simulator import Simulator, SimulatorOptions


@dataclasses.dataclass
class Drill:
    mode: str
    started_at: float
    detected_at: float | None = None
    link_called_at: float | None = None
    resolved_at: float | None = None  # the factory's chaos ended
    recovered_at: float | None = None  # the probe's first good order after that

    @property
    def time_to_detect(self) -> float | None:
        return None if self.detected_at is None else self.detected_at - self.started_at

    @property
    def time_to_recover(self) -> float | None:
        return None if self.recovered_at is None else self.recovered_at - self.started_at


class Timeline:
    """Prints events as they happen and tracks the drill in progress. Thread-safe: events
    come from the simulator's, the probe's and the sidecar's threads."""

    def __init__(self, out: TextIO, interval: float, clock: Callable[[], float] = time.time) -> None:
        self.out = out
        self.interval = interval
        self.clock = clock
        self.t0 = clock()
        self.drill: Drill | None = None
        self.drills: list[Drill] = []
        self._lock = threading.Lock()
        self.finished = threading.Condition(self._lock)

    def _print(self, who: str, text: str, at: float | None = None) -> None:
        at = self.clock() if at is None else at
        self.out.write(f"[{at - self.t0:7.1f}s] {who:<8} {text}\n")
        self.out.flush()

    def _x(self, seconds: float) -> str:
        return f"{seconds:.1f}s ({seconds / self.interval:.1f}x the probe interval)"

    # the simulator's events
    def on_simulator(self, name: str, fields: dict) -> None:
        with self._lock:
            now = self.clock()
            if name == "chaos_started":
                self.drill = Drill(fields["mode"], now)
                self.drills.append(self.drill)
                self._print("factory", f"chaos started: {fields['mode']}", now)
            elif name in ("chaos_resolved", "chaos_cleared") and self.drill is not None:
                self.drill.resolved_at = self.drill.resolved_at or now
                self._print("factory", "chaos ended: pizza is back on the menu", now)

    # the probe's results (an observer of the exporter's loop)
    def on_journey(self, result: JourneyResult) -> None:
        with self._lock:
            drill, now = self.drill, self.clock()
            if drill is None:
                return
            if (drill.detected_at is None and not result.success
                    and result.started_at + result.duration >= drill.started_at):
                drill.detected_at = now
                link = " (chaos link seen)" if result.chaos_link else ""
                self._print("probe", f"first failed order: {result.failed_step} {result.reason}"
                            f"{link}; detected in {self._x(now - drill.started_at)}", now)
            elif (drill.resolved_at is not None and drill.recovered_at is None and result.success
                  and result.started_at >= drill.resolved_at):
                drill.recovered_at = now
                self._print("probe", f"first good order; recovered in {self._x(now - drill.started_at)}"
                            " after chaos started", now)
                self._print("drill", f"{drill.mode}: detected in {drill.time_to_detect:.1f}s, "
                            f"recovered in {drill.time_to_recover:.1f}s", now)
                self.drill = None
                self.finished.notify_all()

    # the sidecar's events
    def on_sidecar(self, name: str, fields: dict) -> None:
        with self._lock:
            now = self.clock()
            if name == "incident_opened":
                self._print("sidecar", f"incident opened ({fields['detected_by']})", now)
            elif name == "attempt":
                verb = "called" if fields["called"] else "not called"
                self._print("sidecar", f"recovery link {verb}: {fields['link']} -> {fields['result']}", now)
                if self.drill is not None and fields["called"] and self.drill.link_called_at is None:
                    self.drill.link_called_at = now
            elif name == "note":
                self._print("sidecar", fields["text"], now)
            elif name == "incident_resolved":
                where = f"; postmortem draft: {fields['path']}" if fields.get("path") else ""
                self._print("sidecar", f"incident resolved, a fresh order verified{where}", now)

    def wait_drill_done(self, drill: Drill, timeout: float) -> bool:
        with self._lock:
            return self.finished.wait_for(lambda: drill.recovered_at is not None, timeout=timeout)

    def summary(self) -> str:
        lines = [f"{'DRILL':<10} {'DETECTED':<9} {'RECOVERED':<10} {'TIME TO DETECT':>15} {'TIME TO RECOVER':>16}"]
        for d in self.drills:
            ttd = f"{d.time_to_detect:.1f}s" if d.time_to_detect is not None else "-"
            ttr = f"{d.time_to_recover:.1f}s" if d.time_to_recover is not None else "-"
            lines.append(f"{d.mode:<10} {'yes' if d.detected_at else 'NO':<9} "
                         f"{'yes' if d.recovered_at else 'NO':<10} {ttd:>15} {ttr:>16}")
        return "\n".join(lines)


@dataclasses.dataclass
class DemoOptions:
    interval: float = 1.0
    throttle_delay: float = 3.0
    chaos_every: float = 20.0
    modes: tuple[str, ...] = ("fail", "throttle", "badjwt")
    listen: tuple[str, int] = ("127.0.0.1", 9816)
    sidecar_listen: tuple[str, int] = ("127.0.0.1", 9817)
    drill_timeout: float = 30.0
    factory_tls: bool = False  # the factory over HTTPS, its CA trusted with ca_file


class Demo:
    def __init__(self, options: DemoOptions, out: TextIO, store: IncidentStore | None = None) -> None:
        self.options = options
        self.out = out
        self.store = store or IncidentStore(None)  # where the sidecar writes incident records
        self.stop_event = threading.Event()
        self.timeline = Timeline(out, options.interval)
        self.simulator = Simulator(SimulatorOptions(throttle_delay=options.throttle_delay,
                                                    factory_tls=options.factory_tls),
                                   on_event=self.timeline.on_simulator)

    def start(self) -> None:
        o = self.options
        self.simulator.start(("127.0.0.1", 0), ("127.0.0.1", 0))
        config = ProbeConfig(service_url=self.simulator.service_url,
                             factory_url=self.simulator.factory_url,
                             slow_threshold=o.throttle_delay / 2,
                             order_timeout=o.throttle_delay + 10, timeout=5,
                             ca_file=self.simulator.ca_file)
        self.exporter = start_exporter(config, o.interval, o.listen,
                                       observers=[self.timeline.on_journey])
        # The target is our own simulator, broken on purpose again and again: the hourly limit
        # that protects a real factory would stop the demo after ten drills.
        options = SidecarOptions(cooldown=max(1.0, o.interval), max_attempts_per_hour=1_000_000)
        self.sidecar = start_sidecar(
            config, options, o.sidecar_listen,
            self.stop_event, exporter_url=self.exporter.server.url(),
            store=self.store, listener=self.timeline.on_sidecar)
        self.out.write(
            f"pizza-probe demo: a JWT Pizza simulator, the exporter and the self-healing sidecar\n"
            f"  service  {self.simulator.service_url}  (factory {self.simulator.factory_url})\n"
            + (f"  CA file  {self.simulator.ca_file}  (the factory's private CA)\n"
               if self.simulator.ca_file else "") +
            f"  scrape   {self.exporter.server.url('/metrics')}  (exporter)\n"
            f"  scrape   {self.sidecar.server.url('/metrics')}  (sidecar)\n"
            f"  probe every {o.interval:g}s; throttle delay shortened to {o.throttle_delay:g}s\n\n")
        self.out.flush()

    def break_factory(self, mode: str) -> None:
        """Switch chaos the way a user does: the factory's vendor endpoint."""
        answer = requests.put(f"{self.simulator.factory_url}/api/vendor/chaos/{mode}", timeout=5,
                              headers={"Authorization": f"Bearer {self.simulator.factory.vendor_key}"},
                              verify=self.simulator.ca_file or True)
        answer.raise_for_status()

    def wait_healthy(self, timeout: float) -> bool:
        """Wait for a good order from the probe before breaking anything."""
        deadline, seen = time.monotonic() + timeout, 0
        while time.monotonic() < deadline and not self.stop_event.is_set():
            report = self.exporter.latest.wait_newer(seen, 1.0)
            if report is not None and report.seq > seen:
                seen = report.seq
                if report.success:
                    return True
        return False

    def run_drills(self, rounds: int = 1) -> bool:
        """``rounds`` drills of each mode; True if every one was detected and recovered."""
        if not self.wait_healthy(self.options.drill_timeout):
            self.out.write("the simulator never answered a good order\n")
            return False
        planned = [mode for _ in range(rounds) for mode in self.options.modes]
        for mode in planned:
            if self.stop_event.is_set():
                break
            self.break_factory(mode)
            drill = self.timeline.drills[-1]
            if not self.timeline.wait_drill_done(drill, self.options.drill_timeout):
                self.out.write(f"drill {mode}: not recovered within {self.options.drill_timeout:g}s\n")
                break
            self.out.write("\n")
        self.out.write(self.timeline.summary() + "\n")
        drills = self.timeline.drills
        return len(drills) == len(planned) and all(d.recovered_at for d in drills)

    def run_forever(self) -> None:
        self.simulator.start_schedule(self.options.chaos_every, list(self.options.modes))
        self.out.write(f"breaking the factory every {self.options.chaos_every:g}s "
                       f"({', '.join(self.options.modes)}); Ctrl-C stops\n\n")
        wait_for(self.stop_event)

    def stop(self) -> None:
        self.stop_event.set()
        self.simulator.stop()
        self.exporter.stop()
        self.sidecar.stop()
