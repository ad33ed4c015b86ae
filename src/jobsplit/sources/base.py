"""The protocol every source of work implements, and the task it hands out."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple, Protocol

from ..states import JobState, Outcome


class Task(NamedTuple):
    """One job to run on this machine."""

    job_id: str
    position: int
    """The job's index in the local pool (every host has the same pool)."""
    attempt: int = 1
    """This attempt's number for the job; the source counts, never the runner."""
    token: int = 0
    """A shared queue's fencing token for this claim (0: none)."""


class JobSource(Protocol):
    """Hands out jobs, and decides what happens to a job after each attempt.

    The runner asks for work, reports how attempts ended and hands back what it could not
    finish; it never counts attempts or decides on retries itself.
    """

    name: str
    """Recorded in the journal's ``runs`` table: which kind of source fed a run."""

    def take(self, limit: int) -> list[Task]:
        """Up to ``limit`` jobs to start now (fewer, or none, when there are no more yet).

        Called at least once per tick of the runner, ``limit`` possibly 0: a shared queue
        renews its leases here.
        """
        ...

    def settle(self, ended: Sequence[tuple[Task, Outcome]]) -> list[JobState]:
        """Attempts ended (done, error, crashed or timeout). Returns each job's state now:
        DONE, FAILED (for good), PENDING (it will be handed out again: a retry) or SUPERSEDED
        (a shared queue accepted another claim's result instead)."""
        ...

    def release(self, tasks: Iterable[Task]) -> None:
        """Taken but not ended: never started, or interrupted. They run again; no failure is
        counted."""
        ...

    def remaining(self) -> int:
        """Jobs this source has not settled yet (waiting or taken); 0 ends the run."""
        ...
