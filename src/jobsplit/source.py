"""Where this machine's next job comes from.

The runner only talks to a :class:`JobSource`. Today the source is this machine's static
share of the plan; a shared queue from which machines claim jobs under leases can implement
the same four calls (``take`` claims, ``release`` gives a claim back, ``complete`` settles
it, and renewing leases belongs inside ``take``, which the runner calls on every tick).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from typing import NamedTuple, Protocol


class Task(NamedTuple):
    """One job to run on this machine: its place in the share, in the pool, its id, its attempt."""

    seq: int
    position: int
    job_id: str
    attempt: int = 1


class JobSource(Protocol):
    def take(self, limit: int) -> list[Task]:
        """Up to ``limit`` jobs to start now (fewer, or none, when there are no more yet)."""
        ...

    def release(self, tasks: Iterable[Task]) -> None:
        """Jobs taken but not finished (not started, interrupted, or to retry): run them later."""
        ...

    def complete(self, tasks: Sequence[Task]) -> None:
        """Taken jobs are settled (done, or failed for good)."""
        ...

    def remaining(self) -> int:
        """Jobs not yet settled: waiting or taken."""
        ...


class StaticShare:
    """This machine's share of the plan, in plan order, minus what the journal settled."""

    def __init__(self, tasks: Iterable[Task]) -> None:
        self._waiting = deque(tasks)
        self._taken = 0

    def take(self, limit: int) -> list[Task]:
        count = min(limit, len(self._waiting))
        self._taken += count
        return [self._waiting.popleft() for _ in range(count)]

    def release(self, tasks: Iterable[Task]) -> None:
        tasks = list(tasks)
        self._taken -= len(tasks)
        self._waiting.extendleft(reversed(tasks))  # keep plan order: they were first in line

    def complete(self, tasks: Sequence[Task]) -> None:
        self._taken -= len(tasks)

    def remaining(self) -> int:
        return len(self._waiting) + self._taken
