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
and the jobs' standard output and error, which it reads once the worker has died), and the two of
the process's sentinel pipe. Measured: each worker more took 6 more, in the runner while the run
went on (``/proc/PID/fd``) and in the smallest limit a run needed (below)."""
RESERVE = 32
"""Descriptors for the rest of the runner and for a job's own files. Measured (Linux, no-op jobs,
the same soft and hard limit): the smallest limit at which 1, 2, 4 and 8 workers ran their jobs
was 18 + 6 a worker (25, 31, 43 and 67, with one descriptor inherited from the shell that ran them), one more with
per-job logs, three more under ``spawn``, none with ``--worker-memory``: the standard streams,
two locks, the journal's three files, results.csv, the log, the progress board's two, the
selector, and 6 while a worker starts (its ends of the pipes). A worker inherits what the runner
holds as it starts it (the last, 20 + 6 a worker), so what is left is its jobs' own: about 10."""


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
        most = (hard - RESERVE) // FILES_PER_WORKER
        if most < 1:  # no --workers helps: name only the limit that does
            raise UserError(
                f"a run needs about {FILES_PER_WORKER + RESERVE} open files for even one worker, but this host allows a process at most {hard} "
                f"(`ulimit -Hn`); {_raise_the_hard_limit(FILES_PER_WORKER + RESERVE)}"
            )
        raise UserError(
            f"{workers} workers need about {taken + RESERVE} open files, but this host allows a process at most {hard} (`ulimit -Hn`); "
            f"pass --workers {most} or fewer, or {_raise_the_hard_limit(taken + RESERVE)}"
        )
    if soft == unlimited:
        return
    wanted = soft + taken if hard == unlimited else min(soft + taken, hard)
    if wanted > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):
            pass  # above what the kernel allows (fs.nr_open): the workers may still fit


def _raise_the_hard_limit(needed: int) -> str:
    """The fix that always works: a hard limit the run fits in, and where it is set."""
    return f"raise the hard limit to at least {needed} (nofile in /etc/security/limits.conf, LimitNOFILE= for a service)"
