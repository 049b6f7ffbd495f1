"""Runs journeys one after another at an interval, and hands each result to observers."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterable

from .clock import Clock, SystemClock
from .logs import get_logger
from .redact import scrub
from .result import JourneyResult

Observer = Callable[[JourneyResult], None]


class ProbeLoop:
    """Never two journeys at once: the next starts ``interval`` (plus a little jitter) after the
    previous one started, or right after it ended if it outlasted the interval."""

    def __init__(
        self,
        run: Callable[[], JourneyResult],
        interval: float,
        observers: Iterable[Observer] = (),
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        max_jitter: float | None = None,
        start_delay: float = 0.0,
    ) -> None:
        self.run_journey = run
        self.interval = interval
        self.observers = list(observers)
        self.clock = clock or SystemClock()
        self.rng = rng or random.Random()
        self.max_jitter = min(1.0, interval * 0.1) if max_jitter is None else max_jitter
        self.start_delay = start_delay  # staggers many targets' loops across the interval
        self._stop = threading.Event()
        self.journeys = 0

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def run_once(self) -> JourneyResult | None:
        log = get_logger()
        try:
            result = self.run_journey()
        except Exception as exc:  # noqa: BLE001 (a bug of ours, not a failing target: keep probing)
            log.error("journey crashed", extra={"fields": {"error": type(exc).__name__,
                                                           "detail": scrub(str(exc))}})
            return None
        self.journeys += 1
        for observer in self.observers:
            try:
                observer(result)
            except Exception as exc:  # noqa: BLE001 (one observer's bug must not stop the rest)
                log.error("observer failed", extra={"fields": {"error": type(exc).__name__,
                                                               "detail": scrub(str(exc))}})
        return result

    def run_forever(self, max_journeys: int | None = None) -> None:
        self._stop.wait(self.start_delay)
        while not self._stop.is_set():
            started = self.clock.monotonic()
            self.run_once()
            if max_journeys is not None and self.journeys >= max_journeys:
                return
            next_start = started + self.interval + self.rng.uniform(0, self.max_jitter)
            self._stop.wait(max(0.0, next_start - self.clock.monotonic()))

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run_forever, name="probe-loop", daemon=True)
        thread.start()
        return thread
