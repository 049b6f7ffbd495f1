"""``pizza-probe demo``: the simulator, the exporter and the sidecar in one process, the factory
broken on a schedule, and a live timeline of each drill: chaos started, first failed order,
recovery link called, factory healed, first good order, time to detect and time to recover
(as exporter/timing.py defines them).

The first line is printed before anything starts (and before the heavy imports): what is
starting and where to look. Ctrl-C (SIGINT, whose handler only sets a flag) ends with a
summary; a drill it cuts short is reported as cut short.
"""

from __future__ import annotations

import dataclasses
import errno
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from .timing import OutageTimes, describe, format_seconds, in_intervals

if TYPE_CHECKING:  # the heavy modules are imported once the first line is out
    from .records import IncidentStore
    from .result import JourneyResult

# what became of a drill
RUNNING, RECOVERED, CUT_SHORT, GAVE_UP = "running", "recovered", "cut short", "not recovered"


@dataclasses.dataclass
class Drill:
    mode: str
    started_at: float  # the factory broke
    times: OutageTimes = dataclasses.field(init=False)
    link_called_at: float | None = None
    resolved_at: float | None = None  # the factory's chaos ended
    outcome: str = RUNNING

    def __post_init__(self) -> None:
        self.times = OutageTimes(self.started_at)

    @property
    def time_to_detect(self) -> float | None:
        return self.times.time_to_detect

    @property
    def time_to_recover(self) -> float | None:
        return self.times.time_to_recover

    @property
    def detected_at(self) -> float | None:
        return self.times.detected_at

    @property
    def recovered_at(self) -> float | None:
        return self.times.recovered_at


class Timeline:
    """Prints events as they happen, in causal order, and tracks the drill in progress.
    Thread-safe: events come from the simulator's, the probe's and the sidecar's threads.
    Once closed (the demo stops), later events are ignored: a journey the shutdown broke is
    not a detection."""

    def __init__(self, out: TextIO, interval: float, clock: Callable[[], float] = time.time) -> None:
        self.out = out
        self.interval = interval
        self.clock = clock
        self.t0 = clock()
        self.drill: Drill | None = None
        self.drills: list[Drill] = []
        self.closed = False
        self.journeys_seen = 0
        self._lock = threading.Lock()
        self.finished = threading.Condition(self._lock)
        # listeners of bench/drills.py: (event, fields) with the moment it happened
        self.marks: list[tuple[str, float, dict]] = []

    def _print(self, who: str, text: str, at: float | None = None) -> None:
        at = self.clock() if at is None else at
        self.out.write(f"[{at - self.t0:7.1f}s] {who:<8} {text}\n")
        self.out.flush()

    def _x(self, seconds: float | None) -> str:
        return describe(seconds, self.interval)

    def _mark(self, event: str, at: float, fields: dict | None = None) -> None:
        self.marks.append((event, at, fields or {}))

    # the simulator's events
    def on_simulator(self, name: str, fields: dict) -> None:
        with self._lock:
            now = self.clock()
            if self.closed:
                return
            if name == "chaos_started":
                self.drill = Drill(fields["mode"], now)
                self.drills.append(self.drill)
                self._mark("chaos_started", now, {"mode": fields["mode"]})
                self._print("factory", f"chaos started: {fields['mode']}", now)
            elif name in ("chaos_resolved", "chaos_cleared") and self.drill is not None:
                self.drill.resolved_at = self.drill.resolved_at or now
                self._mark("factory_resolved", now)
                self._print("factory", "chaos ended: pizza is back on the menu", now)

    # the probe's results (an observer of the exporter's loop, told before the hand-off)
    def on_journey(self, result: JourneyResult) -> None:
        with self._lock:
            drill, now = self.drill, self.clock()
            if not self.journeys_seen and not self.closed:  # the first sign of life
                self._print("probe", "first journey: " + (
                    f"a good order in {format_seconds(result.duration)}; the shop works"
                    if result.success else f"failed at {result.failed_step}: {result.reason}"), now)
            self.journeys_seen += 1
            if drill is None or self.closed:
                return
            ended = result.started_at + result.duration
            if not result.success and ended >= drill.started_at and drill.times.detect(ended):
                self._mark("failed_order_ended", ended)
                link = " (chaos link seen)" if result.chaos_link else ""
                self._print("probe", f"first failed order: {result.failed_step} {result.reason}"
                            f"{link}; detected in {self._x(drill.time_to_detect)}", now)
            elif (result.success and drill.resolved_at is not None
                  and result.started_at >= drill.resolved_at):
                self._recovered(drill, ended, "probe", "a good order by the probe")

    # the sidecar's events
    def on_sidecar(self, name: str, fields: dict) -> None:
        with self._lock:
            now = self.clock()
            if self.closed:
                return
            self._mark(name, now, fields)
            if name == "incident_opened":
                self._print("sidecar", f"incident opened ({fields['detected_by']})", now)
            elif name == "calling":
                self._print("sidecar", f"calling the recovery link: {fields['link']}", now)
                if self.drill is not None and self.drill.link_called_at is None:
                    self.drill.link_called_at = now
            elif name == "attempt":
                verb = "called" if fields["called"] else "not called"
                self._print("sidecar", f"recovery link {verb}: {fields['link']} -> {fields['result']}", now)
            elif name == "note":
                self._print("sidecar", fields["text"], now)
            elif name == "incident_resolved":
                where = f"; postmortem draft: {fields['path']}" if fields.get("path") else ""
                own = format_seconds(fields.get("time_to_recover"))  # from its first failed order
                self._print("sidecar", f"incident resolved: {fields['resolution']} ({own} after "
                            f"the first failed order){where}", now)
                drill, ended = self.drill, fields.get("good_order_ended_at")
                if drill is not None and drill.resolved_at is not None and ended is not None:
                    self._recovered(drill, ended, "sidecar", "a good order verified it")

    def _recovered(self, drill: Drill, ended: float, who: str, how: str) -> None:
        """Called with the lock held: the drill's first good order after the fix ended."""
        drill.times.recover(ended)
        drill.outcome = RECOVERED
        self._mark("recovered", ended, {"by": who})
        now = self.clock()
        self._print("drill", f"{drill.mode}: {how}; detected in {self._x(drill.time_to_detect)}, "
                    f"recovered in {self._x(drill.time_to_recover)} after chaos started", now)
        self.drill = None
        self.finished.notify_all()

    def wait_drill_done(self, drill: Drill, timeout: float,
                        stop: threading.Event | None = None) -> bool:
        """True once ``drill`` recovered; False after ``timeout`` or once ``stop`` is set
        (checked four times a second: a signal only sets that flag)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while drill.outcome != RECOVERED:
                left = deadline - time.monotonic()
                if left <= 0 or (stop is not None and stop.is_set()):
                    return False
                self.finished.wait(min(left, 0.25))
            return True

    def give_up(self, drill: Drill) -> None:
        with self._lock:
            if drill.outcome == RUNNING:
                drill.outcome = GAVE_UP
            if self.drill is drill:
                self.drill = None

    def close(self) -> None:
        """No more events: a drill still running was cut short."""
        with self._lock:
            self.closed = True
            for drill in self.drills:
                if drill.outcome == RUNNING:
                    drill.outcome = CUT_SHORT
            self.drill = None

    def summary(self) -> str:
        def cell(seconds: float | None) -> str:
            return ("-" if seconds is None
                    else f"{format_seconds(seconds)} ({in_intervals(seconds, self.interval):.2f}x)")

        lines = [f"{'DRILL':<10} {'OUTCOME':<14} {'TIME TO DETECT':<16} {'TIME TO RECOVER':<16}"
                 f"  (x the probe interval of {self.interval:g}s)"]
        for d in self.drills:
            lines.append(f"{d.mode:<10} {d.outcome:<14} {cell(d.time_to_detect):<16} "
                         f"{cell(d.time_to_recover)}".rstrip())
        if not self.drills:
            lines.append("(no drill started)")
        return "\n".join(lines)


def reserve_port(host: str, port: int) -> tuple[socket.socket, bool]:
    """A socket bound (not listening) to ``port`` if it is free, else to a free one the kernel
    picks; and True if ``port`` was taken. While it is held, no other bind to port 0 gets that
    port; close it just before the server binds it (both use SO_REUSEADDR)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    held = socket.socket(family, socket.SOCK_STREAM)
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
    try:
        try:
            held.bind((host, port))
            return held, False
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or port == 0:
                raise
        held.close()
        held = socket.socket(family, socket.SOCK_STREAM)
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        held.bind((host, 0))
        return held, True
    except BaseException:
        held.close()
        raise


def _url(host: str, port: int, path: str = "/") -> str:
    host = "127.0.0.1" if host in ("0.0.0.0", "") else "[::1]" if host == "::" else host
    return f"http://{f'[{host}]' if ':' in host and not host.startswith('[') else host}:{port}{path}"


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
        self.store = store  # where the sidecar writes incident records (None: nowhere)
        self.stop_event = threading.Event()
        self.timeline = Timeline(out, options.interval)
        self.started = time.monotonic()
        self.announced = False
        self._reserved: dict[str, socket.socket] = {}  # ports picked by announce(), until bound
        self.interrupted = False
        self.simulator: Any = None
        self.exporter: Any = None
        self.sidecar: Any = None

    def announce(self) -> None:
        """The first line, before anything starts: what is starting and where to look. Picks
        free ports for the exporter and the sidecar if theirs are taken, and says so."""
        o, moved = self.options, []
        for name, attr in (("exporter", "listen"), ("sidecar", "sidecar_listen")):
            host, port = getattr(o, attr)
            try:
                held, taken = reserve_port(host, port)
            except OSError as exc:
                from .config import ConfigError

                raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
            free = held.getsockname()[1]
            self._reserved[attr] = held
            if taken:
                moved.append(f"  {host}:{port} is taken: the {name} listens on {host}:{free}\n")
            setattr(o, attr, (host, free))
        self.out.write(
            "pizza-probe demo: starting a JWT Pizza simulator, the exporter and the self-healing "
            f"sidecar; status pages {_url(*o.listen)} (exporter) and {_url(*o.sidecar_listen)} "
            "(sidecar); Ctrl-C stops\n" + "".join(moved))
        self.out.flush()
        self.announced = True

    def start(self) -> None:
        from .config import ProbeConfig
        from .records import IncidentStore
        from .runtime import start_exporter
        from .sidecar import SidecarOptions
        from .sidecar_process import start_sidecar
        from .simulator import Simulator, SimulatorOptions

        if not self.announced:
            self.announce()
        o = self.options
        self.simulator = Simulator(SimulatorOptions(throttle_delay=o.throttle_delay,
                                                    factory_tls=o.factory_tls),
                                   on_event=self.timeline.on_simulator)
        self.simulator.start(("127.0.0.1", 0), ("127.0.0.1", 0))
        config = ProbeConfig(service_url=self.simulator.service_url,
                             factory_url=self.simulator.factory_url,
                             slow_threshold=o.throttle_delay / 2,
                             order_timeout=o.throttle_delay + 10, timeout=5,
                             ca_file=self.simulator.ca_file)
        self._release("listen")
        self.exporter = start_exporter(config, o.interval, o.listen,
                                       observers=[self.timeline.on_journey],
                                       sidecar_url=_url(*o.sidecar_listen, ""))
        # Every limit of the sidecar as it ships (the cooldown, the attempts per incident) but
        # the hourly one: the target is our own simulator, broken on purpose again and again,
        # and the limit that protects a real factory would stop the demo after ten drills.
        options = SidecarOptions(max_attempts_per_hour=1_000_000)
        self._release("sidecar_listen")
        self.sidecar = start_sidecar(
            config, options, o.sidecar_listen,
            self.stop_event, exporter_url=self.exporter.server.url(),
            store=self.store or IncidentStore(None), listener=self.timeline.on_sidecar)
        self.out.write(
            f"  service  {self.simulator.service_url}  (factory {self.simulator.factory_url})\n"
            + (f"  CA file  {self.simulator.ca_file}  (the factory's private CA)\n"
               if self.simulator.ca_file else "") +
            f"  status   {self.exporter.server.url('/')}  (exporter)\n"
            f"  status   {self.sidecar.server.url('/')}  (sidecar)\n"
            f"  scrape   {self.exporter.server.url('/metrics')}  (exporter)\n"
            f"  scrape   {self.sidecar.server.url('/metrics')}  (sidecar)\n"
            f"  probe every {o.interval:g}s; throttle delay shortened to {o.throttle_delay:g}s; "
            "time to detect and to recover as docs/timing.md defines them\n\n")
        self.out.flush()

    def _release(self, attr: str) -> None:
        held = self._reserved.pop(attr, None)
        if held is not None:
            held.close()

    def break_factory(self, mode: str) -> None:
        """Switch chaos the way a user does: the factory's vendor endpoint."""
        import requests

        answer = requests.put(f"{self.simulator.factory_url}/api/vendor/chaos/{mode}", timeout=5,
                              headers={"Authorization": f"Bearer {self.simulator.factory.vendor_key}"},
                              verify=self.simulator.ca_file or True)
        answer.raise_for_status()

    def wait_healthy(self, timeout: float, started_after: float | None = None) -> bool:
        """Wait for a good order from the probe before breaking anything; with
        ``started_after`` (a wall-clock time), one that started after it. The probe runs one
        journey at a time, so after that one no order of an earlier outage is still in flight:
        a throttled order held past its drill's heal would otherwise end, failed, inside the
        next drill and be taken for its detection."""
        deadline, seen = time.monotonic() + timeout, 0
        while time.monotonic() < deadline and not self.stop_event.is_set():
            report = self.exporter.latest.wait_newer(seen, 0.25)
            if report is not None and report.seq > seen:
                seen = report.seq
                if report.success and (started_after is None or report.started_at >= started_after):
                    return True
        return False

    def run_drills(self, rounds: int = 1,
                   before_each: Callable[[int, str], None] | None = None) -> bool:
        """``rounds`` drills of each mode; True if every one was detected and recovered.
        ``before_each(index, mode)`` runs before each break (bench/drills.py spaces them)."""
        if not self.wait_healthy(self.options.drill_timeout):
            if not self.stop_event.is_set():
                self.out.write("the simulator never answered a good order\n")
            return False
        planned = [mode for _ in range(rounds) for mode in self.options.modes]
        for index, mode in enumerate(planned):
            previous = self.timeline.drills[-1] if index else None
            if previous is not None and not self.wait_healthy(
                    self.options.drill_timeout, started_after=previous.times.recovered_at):
                if not self.stop_event.is_set():
                    self.out.write(f"drill {mode}: no good order after the last heal within "
                                   f"{self.options.drill_timeout:g}s\n")
                break
            if before_each is not None:
                before_each(index, mode)
            if self.stop_event.is_set():
                break
            self.break_factory(mode)
            drill = self.timeline.drills[-1]
            if not self.timeline.wait_drill_done(drill, self.options.drill_timeout, self.stop_event):
                if self.stop_event.is_set():
                    break
                self.timeline.give_up(drill)
                self.out.write(f"drill {mode}: not recovered within {self.options.drill_timeout:g}s\n")
                break
            self.out.write("\n")
        drills = self.timeline.drills
        return len(drills) == len(planned) and all(d.outcome == RECOVERED for d in drills)

    def run_forever(self) -> None:
        from .runtime import wait_for

        self.simulator.start_schedule(self.options.chaos_every, list(self.options.modes))
        self.out.write(f"breaking the factory every {self.options.chaos_every:g}s "
                       f"({', '.join(self.options.modes)}); Ctrl-C stops\n\n")
        self.out.flush()
        wait_for(self.stop_event)

    def run(self, once: bool) -> bool:
        """The whole demo: the first line, the start, the drills (``once``: one of each mode;
        else until Ctrl-C), the stop and the summary. True unless a ``once`` drill failed."""
        ok = True
        try:
            self.announce()
            self.start()
            if once:
                ok = self.run_drills()
            elif not self.stop_event.is_set():
                self.run_forever()
        finally:
            self.interrupted = self.stop_event.is_set()  # only Ctrl-C sets it before the stop
            self.timeline.close()  # before the stop: a journey the shutdown breaks is no news
            self.stop()
            if self.simulator is not None or self.interrupted:  # something ran, or Ctrl-C
                self.out.write(self.summary() + "\n")
                self.out.flush()
        return ok

    def summary(self) -> str:
        """What ran, the incidents, and each drill's time to detect and to recover."""
        drills = self.timeline.drills
        counts = {outcome: sum(d.outcome == outcome for d in drills)
                  for outcome in (RECOVERED, CUT_SHORT, GAVE_UP)}
        stopped = "interrupted (Ctrl-C)" if self.interrupted else "finished"
        incidents = "the sidecar did not start"
        if self.sidecar is not None:
            current, closed = self.sidecar.engine.snapshot()
            opened = len(closed) + (current is not None)
            resolved = sum(i.status == "resolved" for i in closed)
            incidents = f"{opened} incident(s) opened, {resolved} resolved"
        parts = [f"{n} {outcome}" for outcome, n in counts.items() if n]
        return (f"\n{stopped} after {time.monotonic() - self.started:.1f}s: "
                f"{len(drills)} drill(s) ({', '.join(parts) or 'none finished'}); {incidents}\n"
                + self.timeline.summary())

    def stop(self) -> None:
        self.stop_event.set()
        for attr in list(self._reserved):
            self._release(attr)
        for part in (self.simulator, self.exporter, self.sidecar):
            if part is not None:
                part.stop()
