"""A worker's open descriptors, watched between two jobs: one whose jobs leave them open is replaced.

Research code leaves files open as it leaves memory held: a module-level cache of open files,
a library's handle to a dataset opened per call and kept, a socket per call. A worker runs job
after job for weeks, so the descriptors its jobs leave add up until it has none left (its soft
limit of open files, ``ulimit -n``); from then on every job it runs fails at once ("Too many
open files"), and a long run's whole remaining share was burnt through as failed within
seconds, the worker never replaced. Unlike memory (``--worker-memory``, off by default: a large
cache may be kept on purpose), a worker out of descriptors is of use to no job, so this is
always on: a worker whose jobs have taken half the descriptors it had free after its first job
(or every one, whatever the first job did) is replaced between two jobs, as one over its memory
limit is, and the jobs queued on it go to the worker that replaces it.

Counted by the lowest free descriptor (a ``dup`` and a ``close``, about 0.3 us here):
descriptors are handed out lowest first, so what jobs leave open fills the numbers up from
there, and the count is never more than those open. Read after every EVERY-th job at most, and
sooner, counted in jobs, where the growth per job since the last reading, kept up, would use up
half the room left before then (see workermemory, which schedules its readings so).
"""

from __future__ import annotations

import errno
import os

try:
    import resource
except ImportError:  # not a POSIX system: no limit to watch
    resource = None  # type: ignore[assignment]


EVERY = 16
"""Jobs between two readings at most, where jobs leave nothing open: 0.02 us a job."""


class DescriptorWatch:
    """Tells, between two jobs, whether this worker's jobs have left so many descriptors open
    that it should be replaced before it runs out."""

    def __init__(self, probe_fd: int = 0) -> None:
        self.probe_fd = probe_fd
        """A descriptor open for the worker's whole life, duplicated to find the lowest free one."""
        self.limit = _soft_limit()
        self.start: int | None = None
        """The lowest free descriptor when the first job had ended: what it keeps is no leak."""
        self.replace_at: int | None = None
        self.in_use = 0
        """Descriptors open (at least) at the last reading."""
        self.exhausted = False
        """Whether the last reading found no descriptor free."""
        self._jobs, self._due = 0, 1
        """Jobs ended since the last reading, and after how many the next is due."""

    def outgrown(self) -> bool:
        """Whether to replace this worker; called after every job."""
        self._jobs += 1
        if self._jobs < self._due:
            return False
        before, jobs = self.in_use, self._jobs
        self._jobs = 0
        lowest = self._lowest_free()
        if lowest is None:  # none left at all: every one it may open is open (the job may have lowered the limit itself)
            self.limit, self.exhausted = _soft_limit(), True
            return True
        self.in_use = lowest
        if self.limit is None or lowest < 0:
            self._due = EVERY
            return False
        if self.start is None:  # the first job ended: what it left open is the baseline, and the next job's end is read
            self.start = lowest
            self.replace_at = lowest + max(1, (self.limit - lowest) // 2)
            return False
        assert self.replace_at is not None
        per_job = (lowest - before) / jobs
        self._due = max(1, min(EVERY, int((self.replace_at - lowest) / per_job / 2))) if per_job > 0 else EVERY
        return lowest >= self.replace_at

    def explain(self, job_id: str) -> str:
        """The log's warning when this worker is replaced after job ``job_id``."""
        limit = f"of the {self.limit:,} this worker may open (`ulimit -n`)" if self.limit is not None else "this worker may open"
        if self.exhausted:  # what the last reading knew is out of date: the job took every descriptor, or lowered the limit
            every = f"all {self.limit:,} descriptors this worker may open (`ulimit -n`) are" if self.limit is not None else "every descriptor is"
            return (
                f"this worker has no descriptor left after job {job_id} ({every} open): a new worker takes its place before its jobs fail "
                'with "too many open files". Some job opens files, sockets or pipes and never closes them (a cache of open files, a '
                "handle kept by a library)"
            )
        return (
            f"this worker's jobs have left descriptors open since its first job (at least {self.in_use:,} open after job {job_id}, "
            f"{self.start if self.start is not None else 'none'} after the first), half or more {limit}: a new worker takes its place before "
            "its jobs fail with \"too many open files\". Some job opens files, sockets or pipes and never closes them (a cache of open "
            "files, a handle kept by a library)"
        )

    def _lowest_free(self) -> int | None:
        """The lowest free descriptor number; None if none is free; -1 if it cannot be told."""
        try:
            fd = os.dup(self.probe_fd)
        except OSError as exc:
            return None if exc.errno == errno.EMFILE else -1
        os.close(fd)
        return fd


def _soft_limit() -> int | None:
    """This process's soft limit of open files (None: none, or not a POSIX system)."""
    limit: int | None = None
    if resource is not None:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        limit = None if soft == resource.RLIM_INFINITY else soft
    return limit
