"""This machine's share of the coordinator-free plan: the default source of work."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Sequence

from ..states import JobState, Outcome
from .base import Task


class StaticShare:
    """The share's unsettled jobs in plan order; a failed attempt runs again while the job
    has had at most ``retries`` failures in this run."""

    name = "static"

    def __init__(self, tasks: Iterable[Task], retries: int = 0) -> None:
        self._waiting = deque(tasks)
        self._taken = 0
        self._retries = retries
        self._failures: Counter[str] = Counter()

    def take(self, limit: int) -> list[Task]:
        count = min(limit, len(self._waiting))
        self._taken += count
        return [self._waiting.popleft() for _ in range(count)]

    def settle(self, ended: Sequence[tuple[Task, Outcome]]) -> list[JobState]:
        states = []
        for task, outcome in ended:
            self._taken -= 1
            if outcome == Outcome.DONE:
                states.append(JobState.DONE)
                continue
            self._failures[task.job_id] += 1
            if self._failures[task.job_id] <= self._retries:
                self._waiting.append(task._replace(attempt=task.attempt + 1))  # after the others: a transient cause may pass
                states.append(JobState.PENDING)
            else:
                states.append(JobState.FAILED)
        return states

    def release(self, tasks: Iterable[Task]) -> None:
        tasks = list(tasks)
        self._taken -= len(tasks)
        self._waiting.extendleft(reversed(tasks))  # keep plan order: they were first in line

    def remaining(self) -> int:
        return len(self._waiting) + self._taken
