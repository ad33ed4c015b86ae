"""What travels on the pipes between the runner and its workers.

Each message is a ``NamedTuple``: a plain tuple on the wire (cheap to pickle), read by name on
both sides. Outcomes travel as their text (``Outcome`` members are ``str``).
"""

from __future__ import annotations

from typing import Any, NamedTuple


class Assignment(NamedTuple):
    """A job handed to a worker (runner -> worker, in batches)."""

    ticket: int
    """The runner's number for this hand-over; the worker's board slot shows it while it runs."""
    position: int
    """The job's index in the pool."""
    job_id: str
    job: Any
    """The job's arguments, as the pool holds them."""
    job_args: str | None
    """The canonical JSON of its identity (``Job Args``), or None for the worker to compute."""
    attempt: int


class Record(NamedTuple):
    """An attempt that ended in the worker (worker -> runner, grouped for short jobs)."""

    ticket: int
    outcome: str
    """``Outcome.DONE`` or ``Outcome.ERROR``: a worker that dies reports nothing."""
    started: float
    """Wall clock, UTC epoch seconds."""
    running_time: float
    row: str | None
    """The results.csv line of a done job."""
    error: str | None
    max_rss: int | None
    """Peak resident memory of the worker during the attempt, in bytes (None: unknown)."""
    cpu_seconds: float | None
    """CPU time of the attempt, its waited-for child processes included (None: unknown)."""
    internal: bool = False
    """The error arose in jobsplit's own code, not in the job."""


class LogEntry(NamedTuple):
    """One log record or output line of a worker (worker -> runner)."""

    created: float
    level: str
    name: str
    """The logger's name, or ``stdout`` / ``stderr``."""
    job: str
    """The job id, or ``-`` between jobs."""
    message: str


RECORDS, LOG = "records", "log"
"""The kinds of message a worker sends: ``(RECORDS, [Record, ...])`` and ``(LOG, [LogEntry, ...])``."""
