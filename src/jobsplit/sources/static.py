"""This machine's share of the coordinator-free plan: the default source of work."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence

from ..states import JobState, Outcome
from .base import Task


class StaticShare:
    """The share's unsettled jobs in plan order; a failed attempt runs again while the job
    has had at most ``retries`` failures in this run.

    The share is held as its pool positions (``attempts``: each one's attempt number, None: all
    first attempts), and a job's id and Task are made as it is taken (``ids_of`` positions: their
    ids): a Task, an id and a dict entry per job held for the whole run came to about 200 bytes a
    job, 2 GB of a run of ten million."""

    name = "static"

    def __init__(
        self, positions: Sequence[int], ids_of: Callable[[Sequence[int]], list[str]], attempts: Sequence[int] | None = None, retries: int = 0
    ) -> None:
        self._positions, self._ids_of, self._attempts = positions, ids_of, attempts
        self._next = 0
        """The first position not taken yet; the jobs in line are ``_first``, the positions from
        this one on, then ``_again``."""
        self._first: deque[Task] = deque()
        """Handed back unstarted: first in line."""
        self._again: deque[Task] = deque()
        """Failed and tried again: after the others, so that a transient cause may pass."""
        self._taken = 0
        self._retries = retries
        self._failures: Counter[str] = Counter()

    def take(self, limit: int) -> list[Task]:
        first, again = self._first, self._again
        tasks = [first.popleft() for _ in range(min(limit, len(first)))]
        start = self._next
        end = min(len(self._positions), start + limit - len(tasks))
        if end > start:
            positions = self._positions[start:end]
            ids = self._ids_of(positions)
            tasks += map(Task, ids, positions) if self._attempts is None else map(Task, ids, positions, self._attempts[start:end])
            self._next = end
        tasks += (again.popleft() for _ in range(min(limit - len(tasks), len(again))))
        self._taken += len(tasks)
        return tasks

    def settle(self, ended: Sequence[tuple[Task, Outcome]]) -> list[JobState]:
        states = []
        for task, outcome in ended:
            self._taken -= 1
            if outcome == Outcome.DONE:
                states.append(JobState.DONE)
                continue
            self._failures[task.job_id] += 1
            if self._failures[task.job_id] <= self._retries:
                self._again.append(task._replace(attempt=task.attempt + 1))
                states.append(JobState.PENDING)
            else:
                states.append(JobState.FAILED)
        return states

    def release(self, tasks: Iterable[Task]) -> None:
        tasks = list(tasks)
        self._taken -= len(tasks)
        self._first.extendleft(reversed(tasks))  # keep plan order: they were first in line

    def remaining(self) -> int:
        return len(self._first) + len(self._positions) - self._next + len(self._again) + self._taken
