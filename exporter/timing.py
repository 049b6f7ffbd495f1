"""The one definition of "time to detect" and "time to recover" (docs/timing.md).

Shared by the demo's timeline, the sidecar (its metric, its status page), the incident record
and ``bench/drills.py``, so a figure means the same wherever it is shown:

- an outage **starts** when the factory broke, if that is known (a drill knows when it broke
  the factory); otherwise at the start of the first failed synthetic order, the earliest moment
  the probe can vouch that the shop was broken;
- **time to detect**: from the start to the end of the first failed synthetic order (the moment
  a failure, and its chaos link, is known);
- **time to recover**: from the start to the end of the first good synthetic order after the
  fix (the shop is verified working), whoever placed it: the sidecar's verification order or
  the probe's next order.

Every moment is a wall-clock timestamp (seconds since the epoch) taken where the event
happened; a time is None while its end has not happened.
"""

from __future__ import annotations

import dataclasses


def since(start: float | None, end: float | None) -> float | None:
    """``end - start``, never negative; None when either is unknown."""
    if start is None or end is None:
        return None
    return max(0.0, end - start)


@dataclasses.dataclass
class OutageTimes:
    """The three moments of one outage; see the module's docstring."""

    started_at: float | None
    detected_at: float | None = None  # end of the first failed synthetic order
    recovered_at: float | None = None  # end of the first good synthetic order after the fix

    @property
    def time_to_detect(self) -> float | None:
        return since(self.started_at, self.detected_at)

    @property
    def time_to_recover(self) -> float | None:
        return since(self.started_at, self.recovered_at)

    def detect(self, at: float) -> bool:
        """The first failed order ended at ``at``; True if this was the first one."""
        if self.detected_at is not None:
            return False
        self.detected_at = at
        return True

    def recover(self, at: float) -> bool:
        """A good order after the fix ended at ``at``; True if it is the first (the earliest
        wins when two sources, the sidecar and the probe, report out of order)."""
        if self.recovered_at is not None and self.recovered_at <= at:
            return False
        first = self.recovered_at is None
        self.recovered_at = at
        return first


def in_intervals(seconds: float, interval: float) -> float:
    """A time as a multiple of the probe interval, the unit the targets are set in."""
    return seconds / interval if interval > 0 else float("inf")


def format_seconds(seconds: float | None) -> str:
    """``0.02s``, ``1.25s``, ``32.1s``: two decimals under 10 s (a heal takes milliseconds:
    "0.0s" would hide it), one above; ``-`` when unknown."""
    if seconds is None:
        return "-"
    return f"{seconds:.2f}s" if seconds < 10 else f"{seconds:.1f}s"


def describe(seconds: float | None, interval: float | None = None) -> str:
    """``1.25s`` or ``1.25s (0.62x the probe interval)``; ``-`` when unknown."""
    if seconds is None or interval is None:
        return format_seconds(seconds)
    return f"{format_seconds(seconds)} ({in_intervals(seconds, interval):.2f}x the probe interval)"
