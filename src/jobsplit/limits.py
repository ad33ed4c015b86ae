"""The open files a run's workers need, made room for before any of them starts.

The runner holds about ``FILES_PER_WORKER`` descriptors for each worker (its pipes and its
sentinel), and a forked worker inherits those of the workers started before it. At the usual
default soft limit of 1,024 open files, a run of some 250 workers (a host of 256 cores) ran out
of descriptors while its workers started. The soft limit is raised, up to the hard limit, by
what the workers take, so that jobs keep the room they would have had; where the hard limit is
too low for the workers themselves, the run is refused before it is recorded.
"""

from __future__ import annotations

from .errors import UserError

FILES_PER_WORKER = 6
"""Descriptors the runner holds for each worker: the ends it keeps of four pipes (tasks, results,
and the jobs' standard output and error, which it reads once the worker has died), the process
sentinel, and one spare for the fork."""
RESERVE = 64
"""Descriptors for the rest of the runner (journal, results, log, lock) and a job's minimum."""


def make_room_for_workers(workers: int) -> None:
    """Raise this process's soft limit of open files (its workers inherit it) by what
    ``workers`` take, up to the hard limit; refuse if even the hard limit leaves them no room."""
    try:
        import resource
    except ImportError:  # not a POSIX system: nothing to raise
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    unlimited, taken = resource.RLIM_INFINITY, FILES_PER_WORKER * workers
    if hard != unlimited and hard < taken + RESERVE:
        most = max(1, (hard - RESERVE) // FILES_PER_WORKER)
        raise UserError(
            f"{workers} workers need about {taken + RESERVE} open files, but this host allows a process at most {hard} (`ulimit -Hn`); "
            f"pass --workers {most} or fewer, or raise the hard limit (nofile in /etc/security/limits.conf, LimitNOFILE= for a service)"
        )
    if soft == unlimited:
        return
    wanted = soft + taken if hard == unlimited else min(soft + taken, hard)
    if wanted > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):
            pass  # above what the kernel allows (fs.nr_open): the workers may still fit
