"""What travels on the pipes between the runner and its workers.

Each message is a ``NamedTuple``, read by name on both sides. Jobs travel in batches and their
results in groups, each as one message of parallel lists: one object per message rather than
one per job keeps pickling and bookkeeping cheap when jobs are short. Outcomes travel as
``Outcome`` members, which pickle once per message.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class Batch(NamedTuple):
    """Jobs handed to a worker (runner -> worker), run in this order."""

    tickets: list[int]
    """The runner's number for each hand-over; the worker's board slot shows it while it runs."""
    positions: list[int]
    """Each job's index in the pool."""
    job_ids: list[str]
    jobs: list[Any]
    """The jobs' arguments, as the pool holds them."""
    job_args: list[str] | None
    """The canonical JSON of each job's identity (``Job Args``), or None: the worker computes it."""


class Revoke(NamedTuple):
    """Take back a job the worker has not started (runner -> worker): it is skipped and reported
    as REVOKED. A job already started runs on and is reported as usual."""

    ticket: int


REVOKED = "revoked"
"""The outcome a worker reports for a revoked job: the runner hands it to another worker."""


class Results(NamedTuple):
    """Attempts that ended on a worker (worker -> runner), in the order it was given them."""

    tickets: list[int]
    outcomes: list[str]
    """``Outcome.DONE`` or ``Outcome.ERROR`` (a worker that dies reports nothing), or REVOKED."""
    started: list[float]
    """Wall clock, UTC epoch seconds, read in the worker."""
    running_times: list[float]
    """The jobs' own: a pause of the run (Ctrl-Z) is left out."""
    paused: list[float]
    """Seconds each attempt was paused: its wall-clock end is its start + running time + this."""
    rows: list[str | None]
    """The results.csv line of each done job."""
    errors: list[str | None]
    max_rss: list[int | None]
    """Peak resident memory of the worker during each attempt, in bytes (None: not measured)."""
    cpu_seconds: list[float | None]
    internal: list[int]
    """Tickets whose error arose in jobsplit's own code, not in the job (almost always none)."""


class LogEntry(NamedTuple):
    """One log record or output line of a worker (worker -> runner)."""

    created: float
    level: str
    name: str
    """The logger's name, or ``stdout`` / ``stderr``."""
    job: str
    """The job id, or ``-`` between jobs."""
    message: str


RESULTS, LOG = "results", "log"
"""The kinds of message a worker sends: ``(RESULTS, Results)`` and ``(LOG, [LogEntry, ...])``."""
GARBLED = "garbled"
"""What the runner's end of a worker's pipe makes of bytes it cannot read as a message
(``(GARBLED, why)``), after the messages before them: never sent by a worker."""
