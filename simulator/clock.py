"""Clocks the simulated firmware runs on.

The firmware never reads the time by itself: it asks a clock. Served to a real client it
gets the wall clock; in tests it gets a :class:`VirtualClock` that only moves when told to,
so a long session runs in a fraction of its length and every run is the same.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale (the origin is arbitrary)."""
        ...


class MonotonicClock:
    """Real time: ``time.monotonic`` (the same scale asyncio's loop uses on Linux)."""

    def now(self) -> float:
        return time.monotonic()


class VirtualClock:
    """Time that moves only when :meth:`advance` or :meth:`set` is called."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._now += seconds
        return self._now

    def set(self, when: float) -> None:
        if when < self._now:
            raise ValueError("a clock cannot go backwards")
        self._now = when


class LoopClock:
    """The time of an asyncio event loop: real on a normal loop, virtual on a virtual one.

    A pen served on a loop must read the loop's clock, so that the loop's timers (which wake
    the pen) and the pen's notion of "now" can never disagree.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def now(self) -> float:
        return self._loop.time()
