"""The names stored in journals: states of a job, outcomes of an attempt, statuses of a run.

Each is a ``str`` enum, so members compare equal to (and are stored in SQLite as) their text.
"""

from __future__ import annotations

from enum import Enum


class _Text(str, Enum):
    def __str__(self) -> str:
        return str(self.value)


class JobState(_Text):
    """Where a job stands on this machine."""

    PENDING = "pending"
    """Not settled: never started, interrupted, or to be retried."""
    RUNNING = "running"
    """On a worker at the journal's last commit (only the ``jobs`` view shows it)."""
    DONE = "done"
    FAILED = "failed"
    """Failed for good: no retries left."""
    SUPERSEDED = "superseded"
    """Computed here, but a shared queue accepted another claim's result instead."""


class Outcome(_Text):
    """How one attempt ended."""

    DONE = "done"
    ERROR = "error"
    """The job raised, or returned what does not fit the header."""
    CRASHED = "crashed"
    """Its worker process died while running it."""
    TIMEOUT = "timeout"
    INTERRUPTED = "interrupted"
    """The run stopped (Ctrl-C, SIGTERM, a full disk, a kill) while it ran: it runs again."""


class RunStatus(_Text):
    """How a run of the ``run`` command ended (the journal's ``runs`` table)."""

    RUNNING = "running"
    COMPLETED = "completed"
    INTERRUPTED = "interrupted"
    STOPPED = "stopped"
    """Stopped by an error of jobsplit or of the disk, resumable."""
    CRASHED = "crashed"
    """Found still "running" by a later run: the process was killed."""
