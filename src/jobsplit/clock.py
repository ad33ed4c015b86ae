"""The clocks the engine reads, behind one small object so tests can drive time by hand."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds for intervals and deadlines (never jumps)."""
        ...

    def time(self) -> float:
        """Wall-clock UTC epoch seconds, for what is recorded."""
        ...


class SystemClock:
    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)


SYSTEM_CLOCK: Clock = SystemClock()
