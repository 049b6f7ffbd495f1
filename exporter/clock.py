"""Clocks passed to the journey and the scheduler, so tests can control time."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def time(self) -> float: ...


class SystemClock:
    """The real clocks: ``time.monotonic`` for durations, ``time.time`` for timestamps."""

    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)
