"""One thread that enforces many deadlines: a heap of (when, callback), fired in order.

A request's total deadline (see :func:`exporter.transport.hard_deadline`) used to start a
``threading.Timer``, a thread per HTTP request. A :class:`Watchdog` serves every request of a
process (the runtime owns one and passes it down) with one thread, started at the first
deadline and stopped by :meth:`Watchdog.close`. Scheduling is a heap push; cancelling only
marks the entry, which the thread drops when its time comes (or when cancelled entries are
most of the heap), so a request that ends in time never wakes the thread.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable

from .logs import get_logger

# Cancelled entries are swept out of the heap once they are this many and most of it.
_SWEEP_AT = 256


class Deadline:
    """One scheduled callback. ``fired`` turns True (for good) just before the callback runs;
    after that, cancelling it changes nothing."""

    __slots__ = ("when", "callback", "cancelled", "fired")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False
        self.fired = False

    def is_set(self) -> bool:
        """Whether it fired (the interface of the ``threading.Event`` it replaces)."""
        return self.fired


class Watchdog:
    def __init__(self, *, monotonic: Callable[[], float] = time.monotonic,
                 name: str = "deadline-watchdog") -> None:
        self._monotonic = monotonic
        self._name = name
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._cancelled = 0
        self._wake = threading.Condition(threading.Lock())
        self._sleeping_until: float | None = None  # when the thread next looks, if it waits
        self._thread: threading.Thread | None = None
        self._closed = False

    def schedule(self, seconds: float, callback: Callable[[], None]) -> Deadline:
        """Call ``callback`` (in the watchdog's thread) ``seconds`` from now, unless cancelled.
        After :meth:`close` (the process is stopping; a journey still running is abandoned)
        the deadline never fires."""
        deadline = Deadline(self._monotonic() + seconds, callback)
        with self._wake:
            if self._closed:
                return deadline
            heapq.heappush(self._heap, (deadline.when, next(self._order), deadline))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            elif self._sleeping_until is None or deadline.when < self._sleeping_until:
                self._wake.notify()  # it sleeps past this deadline (or is busy): look again
        return deadline

    def cancel(self, deadline: Deadline) -> None:
        with self._wake:
            if deadline.cancelled or deadline.fired:
                return
            deadline.cancelled = True
            self._cancelled += 1
            if self._cancelled >= _SWEEP_AT and self._cancelled * 2 > len(self._heap):
                self._heap = [entry for entry in self._heap if not entry[2].cancelled]
                heapq.heapify(self._heap)
                self._cancelled = 0

    def pending(self) -> int:
        """Deadlines scheduled and neither cancelled nor fired."""
        with self._wake:
            return len(self._heap) - self._cancelled

    def close(self) -> None:
        """Stop the thread; pending deadlines never fire."""
        with self._wake:
            self._closed = True
            thread = self._thread
            self._wake.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def __enter__(self) -> Watchdog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _due(self) -> list[Deadline]:
        """Under the lock: pop what is due; sleep until the next deadline if nothing is."""
        while not self._closed:
            now = self._monotonic()
            due = []
            while self._heap and self._heap[0][0] <= now:
                deadline = heapq.heappop(self._heap)[2]
                if deadline.cancelled:
                    self._cancelled -= 1
                else:
                    deadline.fired = True  # under the lock: a cancel from now on is a no-op
                    due.append(deadline)
            if due:
                return due
            self._sleeping_until = self._heap[0][0] if self._heap else None
            # at most TIMEOUT_MAX: a longer wait raises OverflowError, which would end the
            # thread and leave every later deadline of the process unenforced
            self._wake.wait(None if self._sleeping_until is None
                            else min(self._sleeping_until - now, threading.TIMEOUT_MAX))
            self._sleeping_until = None
        return []

    def _run(self) -> None:
        while True:
            with self._wake:
                due = self._due()
            if not due:
                return
            for deadline in due:
                try:
                    deadline.callback()
                except Exception as exc:  # noqa: BLE001 (one callback's bug must not stop the rest)
                    get_logger().error("deadline callback failed",
                                       extra={"fields": {"error": type(exc).__name__}})
