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

Told by one descriptor number, the mark, looked at after every job (``fcntl(F_GETFD)``, one
system call, about 0.2 us): descriptors are handed out lowest first, so the mark, free when the
first job ended, is open only once every number below it was open at once; however a job
leaves them (a kept file opened while another was, which is then closed, leaves a free number
below the kept ones: a count by the lowest free number missed those). The mark is the lowest
number free halfway between what the first job left open and the limit: one the worker holds
already (a pipe inherited from the runner) would mark every job.
"""

from __future__ import annotations

import errno
import fcntl
import os

try:
    import resource
except ImportError:  # not a POSIX system: no limit to watch
    resource = None  # type: ignore[assignment]


FURTHEST = 1 << 16
"""The mark is at most this far above what the first job left open: a descriptor handed out there
makes the kernel grow the process's table of descriptors to hold it (8 bytes a number), and a
soft limit of a million (containers, some clusters) put it at half a million: 4 MB a worker."""


class DescriptorWatch:
    """Tells, between two jobs, whether this worker's jobs have left so many descriptors open
    that it should be replaced before it runs out."""

    def __init__(self, probe_fd: int = 0) -> None:
        self.probe_fd = probe_fd
        """A descriptor open for the worker's whole life, duplicated to find free numbers."""
        self.limit = _soft_limit()
        self.start: int | None = None
        """The lowest free descriptor when the first job had ended: what it keeps is no leak."""
        self.mark: int | None = None
        """The descriptor number whose opening replaces the worker (None: none to watch)."""
        self.in_use: int | None = None
        """The lowest free descriptor when the worker was found outgrown (None: none was free; -1:
        not told)."""

    def outgrown(self) -> bool:
        """Whether to replace this worker; called after every job."""
        if self.mark is not None:
            if not _is_open(self.mark):
                return False
            self.in_use = _free_from(self.probe_fd, 0)
            self.limit = _soft_limit()  # the job may have lowered it
            return True
        if self.start is not None or self.limit is None:
            return False  # no limit to watch, or no number left to mark
        start = _free_from(self.probe_fd, 0)
        if start is None:  # none left at all: the first job took every one it may open (or lowered the limit)
            self.limit = _soft_limit()
            return True
        if start >= 0:  # else not told (the probe closed by the job, not yet put back): the next job's end is read
            self.start, self.mark = start, _free_from(self.probe_fd, start + max(1, min((self.limit - start) // 2, FURTHEST)))
        return False

    def explain(self, job_id: str) -> str:
        """The log's warning when this worker is replaced after job ``job_id``."""
        limit = f"{self.limit:,} descriptors this worker may open (`ulimit -n`)" if self.limit is not None else "descriptors this worker may open"
        if self.in_use is None or self.start is None or self.mark is None:  # the job took every descriptor, or lowered the limit
            what = f" has no descriptor left after job {job_id} (all {limit} are open)"
        else:
            what = (
                f"'s jobs have left descriptors open since its first job (descriptor {self.mark:,} is open after job {job_id}, so {self.mark:,} "
                f"were open at once; {self.start:,} after the first job), half or more of the {limit}"
            )
        return (
            f"this worker{what}: a new worker takes its place before its jobs fail with \"too many open files\"; some job opens files, "
            "sockets or pipes and never closes them (a cache of open files, a handle kept by a library): close them in the job (`with open(...)`)"
        )


def _is_open(fd: int) -> bool:
    try:
        os.get_inheritable(fd)  # fcntl(F_GETFD): one system call, nothing made
    except OSError:
        return False
    return True


def _free_from(probe_fd: int, lowest: int) -> int | None:
    """The lowest free descriptor number from ``lowest`` on (None: none is free; -1: it cannot be
    told): found by duplicating ``probe_fd`` there, then closed."""
    try:
        fd = fcntl.fcntl(probe_fd, fcntl.F_DUPFD_CLOEXEC, lowest)
    except OSError as exc:
        return None if exc.errno in (errno.EMFILE, errno.EINVAL) else -1  # EINVAL: none from ``lowest`` to the limit
    os.close(fd)
    return fd


def _soft_limit() -> int | None:
    """This process's soft limit of open files (None: none, or not a POSIX system)."""
    limit: int | None = None
    if resource is not None:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        limit = None if soft == resource.RLIM_INFINITY else soft
    return limit
