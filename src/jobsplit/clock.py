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

    def sleep(self, seconds: float) -> None:
        """Wait (signal handlers run meanwhile)."""
        ...


class SystemClock:
    monotonic = staticmethod(time.monotonic)
    sleep = staticmethod(time.sleep)
    time = staticmethod(time.time)  # last: the module's name, in this class, from here on


SYSTEM_CLOCK: Clock = SystemClock()
