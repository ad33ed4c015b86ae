"""A worker's memory growth, watched between two jobs (``--worker-memory``).

Research code often keeps memory it no longer needs: a cache or a module-level list that grows
with every call, matplotlib figures never closed, a library's own leak. In a worker that runs
thousands of jobs over weeks, that growth ends with the kernel's out-of-memory killer, which
kills a worker mid-job (a crashed job, and maybe others' too). With a limit, a worker that has
grown by more than it (after a garbage collection) finishes the job it ran, sends its records
and exits, and a new worker takes the jobs it had queued: the leak starts over from nothing.

Growth is measured as resident plus swapped memory since the worker's first job ended (Linux:
VmRSS and VmSwap of /proc/self/status, some 20 us to read here, so at most once a
CHECK_INTERVAL). A leak is growth from job to job: what the first job takes and keeps (the
libraries it imports, a model it loads once) is not one, and counted from the worker's start it
replaced the worker after every job once the limit was below it (a job importing PyTorch takes
half a gigabyte), each new worker importing it all again. Resident memory is right for forked
workers too: the pages a worker shares with the runner count from the start, whether either
side later writes to them (a copy) or not. Private or proportional memory would not be: they
grow in a worker as the runner writes to pages they share (as it does to the pool's jobs it
sends), with no leak at all.
"""

from __future__ import annotations

import gc
import sys
import time

from .config import parse_filesize
from .errors import UserError
from .text import size_text

CHECK_INTERVAL = 0.1
"""Seconds between two readings at most: of jobs shorter than this, one in so many is followed by
a reading, so the check costs at most 0.02%. Sooner, counted in jobs, where the growth per job
since the last reading, kept up, would pass the limit before: jobs of milliseconds that each
keep tens of megabytes grew a worker to 2.5 times its limit in 0.1 s. Counted in jobs, not in
seconds, because readings happen only between jobs: a rate per second, measured over one slow
job, let the next fast ones pass the limit unread on a busy host."""

_STATUS = "/proc/self/status"


def parse_limit(text: str) -> int:
    """Bytes of a limit such as ``4GiB`` or ``500MB``; ``0``: no limit. A number without its unit
    is refused: ``--worker-memory 10`` means 10 gigabytes or megabytes to whoever wrote it, never
    the 10 bytes that would replace the worker after every job."""
    size = parse_filesize(text)
    if size and not text.strip()[-1:].isalpha():
        raise ValueError(f"{text!r} has no unit; write {text.strip()}GiB, {text.strip()}MiB or another size with its unit (0: no limit)")
    return size


def check_supported(source: str) -> None:
    """Refuse the limit, before any worker starts, where a process's memory cannot be read."""
    if memory_in_use() is None:
        raise UserError(f"{source} needs Linux's {_STATUS} to read a worker's memory, which this system does not have; leave it out here")


def memory_in_use() -> int | None:
    """Bytes of this process's memory, resident or swapped; None where unknown."""
    found = 0
    try:
        with open(_STATUS, "rb") as status:
            for line in status:
                if line.startswith((b"VmRSS:", b"VmSwap:")):
                    found += int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return found or None


class MemoryWatch:
    """Tells, between two jobs, whether this worker has grown by more than ``limit`` bytes since
    its first job ended."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.start: int | None = None
        """This worker's memory when its first job had ended."""
        self.grown = 0
        """The growth found by the last reading."""
        self._next = 0.0
        """time.monotonic() of the next reading at the latest."""
        self._jobs, self._due = 0, 1
        """Jobs ended since the last reading, and after how many the next is due at the latest."""

    def outgrown(self) -> bool:
        """Whether to replace this worker: over the limit, and still so after a garbage
        collection (cycles a job left behind are freed first). Called after every job."""
        now = time.monotonic()
        if self.start is None:  # the first job ended: what it left (but cycles) is the baseline
            gc.collect()
            self.start = memory_in_use() or 0
            return False  # the next job's end is read: the first growth per job
        self._jobs += 1
        if self._jobs < self._due and now < self._next:
            return False
        before, jobs = self.grown, self._jobs
        over = self._over()
        per_job = (self.grown - before) / jobs
        self._jobs, self._next = 0, now + CHECK_INTERVAL
        self._due = max(1, int((self.limit - self.grown) / per_job / 2)) if per_job > 0 else sys.maxsize
        if not over:
            return False
        gc.collect()
        return self._over()

    def explain(self, job_id: str) -> str:
        """The log's warning when this worker is replaced after job ``job_id``."""
        return (
            f"this worker grew by {size_text(self.grown)} since its first job (resident and swapped memory, after job {job_id} and a "
            f"garbage collection), more than --worker-memory {size_text(self.limit)} allows: a new worker takes its place. Some "
            "job keeps memory it no longer needs (a cache or a module-level list that grows with every call, figures never closed)"
        )

    def _over(self) -> bool:
        used = memory_in_use()
        self.grown = used - (self.start or 0) if used is not None else 0
        return self.grown > self.limit
