"""Child processes a job leaves behind: found when it ends, logged, and stopped.

Each worker leads its own process group, so the runner can stop a job together with the
programs it started (on a timeout, a crash or a stop). On Linux the worker is also a child
subreaper: programs that daemonize are re-parented to it rather than to PID 1, so after a job
returns, whatever it left running is still the worker's child and can be found here. Programs
that left the worker's process group (a session of their own) are beyond a signal to the group:
a worker that is stopped signals them itself, and the runner, a subreaper too, inherits those
of a worker that died and stops them (``stop_orphans``).
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import sys
import time
from collections.abc import Callable, Collection, Container
from pathlib import Path
from typing import Any, NamedTuple

_PR_SET_CHILD_SUBREAPER = 36
REAP_INTERVAL = 0.02


def become_group_leader_and_subreaper() -> None:
    """Run in a worker at start: a process group of its own, and (Linux) a child subreaper."""
    try:
        os.setpgid(0, 0)
    except OSError:
        pass  # already a group leader (the parent set it)
    become_subreaper()


def become_subreaper() -> None:
    """(Linux) Descendants whose parent dies are re-parented to this process, not to PID 1."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        except (OSError, AttributeError):
            pass


def _has_children() -> bool:
    """Whether this process has a child, running or exited, none of them reaped (a library's
    helper that exited is its owner's to wait for): one system call. Where there is no
    ``waitid``, those that exited are reaped to tell."""
    if not hasattr(os, "waitid"):
        return _reap_zombies()
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def _listed_children() -> set[int] | None:
    """This process's children, exited or not, as the kernel lists them for each of its threads
    (Linux 3.5 and later): some microseconds, against milliseconds for a scan of /proc. The
    kernel may leave out a child while another exits, so this only ever spares a scan; None
    where the lists are not there."""
    pids: set[int] = set()
    try:
        for thread in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{thread}/children", "rb") as listing:
                pids.update(map(int, listing.read().split()))
    except (OSError, ValueError):
        return None
    return pids


def _reap_zombies() -> bool:
    """Collect children that have exited; True if some are still alive."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True


class _Child(NamedTuple):
    pid: int
    state: str
    """R, S, D, ... or Z (exited, not yet reaped)."""
    pgid: int
    started: int
    """Clock ticks after boot."""
    command: str


def _children() -> list[_Child]:
    """This process's children (Linux: read from /proc; elsewhere none are found)."""
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir() if sys.platform.startswith("linux") else ():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = _fields(stat)
            if int(fields[1]) != me:
                continue
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "backslashreplace").strip()
            found.append(_Child(int(entry.name), fields[0], int(fields[2]), int(fields[19]), command or stat[stat.index("(") + 1 : stat.rindex(")")]))
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    return found


def live_children(keep: Collection[int] = ()) -> list[tuple[int, str]]:
    """(pid, command line) of this process's live children but ``keep``; the others that have
    exited are reaped (never one of ``keep``: its owner waits for it)."""
    live = []
    for child in _children():
        if child.pid in keep:
            continue
        if child.state not in "ZX":
            live.append((child.pid, child.command))
            continue
        try:
            os.waitpid(child.pid, os.WNOHANG)
        except ChildProcessError:
            pass  # reaped meanwhile
    return live


_HELPERS = (
    ("multiprocessing.forkserver", "_forkserver", "_forkserver_pid"),
    ("multiprocessing.resource_tracker", "_resource_tracker", "_pid"),
    ("joblib.externals.loky.backend.resource_tracker", "_resource_tracker", "_pid"),
    ("loky.backend.resource_tracker", "_resource_tracker", "_pid"),
)
"""(module, its singleton, the attribute holding the pid) of the helper processes Python
libraries start once and keep for the life of the process: multiprocessing's fork server and
resource tracker (spawn and forkserver pools, shared memory), and loky's resource tracker
(joblib), in the order they are stopped."""
_REUSABLE_EXECUTORS = ("joblib.externals.loky.reusable_executor", "loky.reusable_executor")
"""Modules whose ``_executor`` keeps its worker processes between calls (``_processes``, by
pid): joblib's ``Parallel`` reuses them from one job to the next."""


def library_helpers() -> set[int]:
    """The pids of the helpers that libraries keep on purpose between calls (see _HELPERS): not
    a job's leftovers. Read from the libraries' own state, and only of those already imported; a
    library that keeps it elsewhere simply has its helpers stopped."""
    pids = {pid for _, pid in _helper_singletons()}
    for executor in _reusable_executors():
        processes = getattr(executor, "_processes", None)
        if isinstance(processes, dict):
            pids.update(pid for pid in list(processes) if isinstance(pid, int))
    return pids


def end_library_helpers() -> None:
    """Before a worker exits: shut the reusable executors down (their workers exit), then stop
    each helper this process started, as the end of a plain Python program would: it cleans up
    what it tracked (shared memory, joblib's temporary folders), and says so on stderr, into the
    log. Left to the exit, a multiprocessing child first waits for its non-daemonic children,
    which end only when their executor shuts down, later in that exit; and the helpers hold the
    output pipes the capture reads to their end: the worker would wait until killed, and its
    helpers would be killed with it, their cleanup undone."""
    for executor in _reusable_executors():
        try:
            executor.shutdown(wait=True)
        except Exception:  # noqa: BLE001 - a library's failure while the worker exits: its helpers go with it anyway
            pass
    for singleton, pid in _helper_singletons():
        stop = getattr(singleton, "_stop", None)
        if callable(stop) and _is_child(pid):  # not one inherited from the runner, which it stops itself
            try:
                stop()  # closes its pipe, and waits for it to clean up and exit
            except Exception:  # noqa: BLE001 - as above
                pass


def _is_child(pid: int) -> bool:
    """Whether ``pid`` is a child of this process, running or exited. One system call and no
    descriptor: a job may have left none free (files it opened and kept), and a scan of /proc
    then failed the worker's exit with a traceback. Where there is no ``waitid``, /proc is read."""
    if not hasattr(os, "waitid"):
        return pid in {child.pid for child in _children()}
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def _helper_singletons() -> list[tuple[Any, int]]:
    """(singleton, pid) of each helper in _HELPERS that is running."""
    found = []
    for module, name, attribute in _HELPERS:
        singleton = getattr(sys.modules.get(module), name, None)
        pid = getattr(singleton, attribute, None)
        if isinstance(pid, int):
            found.append((singleton, pid))
    return found


def _reusable_executors() -> list[Any]:
    return [executor for module in _REUSABLE_EXECUTORS if (executor := getattr(sys.modules.get(module), "_executor", None)) is not None]


def started_at(pid: int) -> int | None:
    """When a process started, in clock ticks after boot (Linux; None elsewhere, or if gone)."""
    try:
        return int(_fields(Path(f"/proc/{pid}/stat").read_text())[19])
    except (OSError, ValueError, IndexError):
        return None


def running_since(pid: int, since: float) -> bool:
    """Whether process ``pid`` of this host lives and started by ``since`` (a wall-clock time):
    the process that began something then, not one that got its pid after it ended (Linux:
    read from /proc; False elsewhere)."""
    try:
        fields = _fields(Path(f"/proc/{pid}/stat").read_text())
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return False
    return fields[0] != "Z" and boot + int(fields[19]) / os.sysconf("SC_CLK_TCK") <= since + 2.0  # btime is whole seconds


def ended(pid: int) -> bool:
    """Whether no process ``pid`` lives on this host: certain, unlike reading /proc, which may
    hide other users' processes (``hidepid``). A pid taken since by another process reads as
    alive: better unknown than dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # EPERM: it lives, another user's
    return False


def stopped(pid: int) -> bool:
    """Whether process ``pid`` of this host is stopped (Ctrl-Z, SIGSTOP; Linux: read from /proc)."""
    try:
        return _fields(Path(f"/proc/{pid}/stat").read_text())[0] in ("T", "t")
    except (OSError, ValueError, IndexError):
        return False


def _fields(stat: str) -> list[str]:
    """The fields of a /proc/<pid>/stat line from the state on (field 3 of proc(5)): the command
    before them is in parentheses and may hold spaces and parentheses itself."""
    return stat[stat.rindex(")") + 2 :].split()


def stop_orphans(workers: Container[int], since: int) -> list[tuple[int, str]]:
    """Kill the programs that workers which died left behind, re-parented to this process (a
    subreaper): its children that are no worker, started at or after ``since`` (the first
    worker's start), outside its own process group (where its own helpers are, such as
    multiprocessing's resource tracker); and reap those that have exited. Returns the (pid,
    command) of those killed."""
    own_group, killed = os.getpgrp(), []
    for child in _children():
        if child.pid in workers or child.started < since or child.pgid == own_group:
            continue
        if child.state in "ZX":
            try:
                os.waitpid(child.pid, os.WNOHANG)
            except ChildProcessError:
                pass  # reaped meanwhile
        else:
            _signal_tree(child.pid, signal.SIGKILL)
            killed.append((child.pid, child.command))
    return killed


def signal_strays(signum: int) -> None:
    """Signal the live children outside this process's group (and the group of each that leads
    one): programs that left it are beyond a signal to the group."""
    own_group = os.getpgrp()
    for child in _children():
        if child.state not in "ZX" and child.pgid != own_group:
            _signal_tree(child.pid, signum)


def stop_children(grace: float, keep: Callable[[], Collection[int]] = frozenset) -> list[tuple[int, str]]:
    """Stop the children this process still has but those ``keep()`` names (asked only if it
    has any): SIGTERM, then SIGKILL after ``grace`` seconds. Returns the (pid, command) of those
    found alive, for the log."""
    if not _has_children():
        return []
    kept = keep()
    listed = _listed_children()
    if listed is not None and listed <= set(kept):
        return []  # only helpers kept on purpose: no scan of /proc (milliseconds on a busy host)
    found = live_children(kept)
    for pid, _ in found:
        _signal_tree(pid, signal.SIGTERM)
    kill_at = time.monotonic() + grace
    give_up_at = kill_at + max(grace, 1.0)  # a child in uninterruptible sleep cannot hold the worker forever
    killed = False
    while found and (left := live_children(kept)) and time.monotonic() < give_up_at:
        if not killed and time.monotonic() >= kill_at:
            for pid, _ in left:  # the survivors, and orphans re-parented meanwhile
                _signal_tree(pid, signal.SIGKILL)
            killed = True
        time.sleep(REAP_INTERVAL)
    return found


def oom_kills() -> int | None:
    """How many processes the kernel's out-of-memory killer has killed in this process's memory
    cgroup (its workers share it), counted by Linux per cgroup: a limit of its own (a Slurm job, a
    container) or the machine's memory; else on the whole machine (/proc/vmstat, Linux 4.13 and
    later); None where neither is known."""
    for path in _oom_counters():
        try:
            with open(path, "rb") as f:
                for line in f:
                    if line.startswith(b"oom_kill "):
                        return int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return None


@functools.cache
def _oom_counters() -> tuple[str, ...]:
    try:
        cgroups, mounts = Path("/proc/self/cgroup").read_text(), Path("/proc/self/mountinfo").read_text()
    except OSError:
        cgroups = mounts = ""
    return (*oom_counter_files(cgroups, mounts), "/proc/vmstat")


def oom_counter_files(cgroups: str, mountinfo: str) -> list[str]:
    """The files counting OOM kills in the memory cgroup that ``cgroups`` (/proc/self/cgroup)
    names, where ``mountinfo`` (/proc/self/mountinfo) has it mounted: ``memory.oom_control`` of
    cgroup v1's memory controller, ``memory.events`` of cgroup v2 (which has a memory controller
    where that file exists)."""
    found = []
    for line in cgroups.splitlines():
        _, controllers, group = line.split(":", 2)
        v1 = "memory" in controllers.split(",")
        if not v1 and controllers:
            continue
        for mount in mountinfo.splitlines():
            fields = mount.split()
            if "-" not in fields[6:]:
                continue
            tail = fields.index("-", 6)
            fstype, root, point, options = fields[tail + 1], fields[3].rstrip("/"), fields[4], ",".join(fields[tail + 3 :]).split(",")
            ours = fstype == "cgroup" and "memory" in options if v1 else fstype == "cgroup2"
            if ours and (group == root or group.startswith(root + "/")):  # the mount shows our group
                found.append(f"{point}{group[len(root) :].rstrip('/')}/{'memory.oom_control' if v1 else 'memory.events'}")
    return found


def _signal_tree(pid: int, signum: int) -> None:
    """Signal a child, and its process group when it leads one of its own (a shell pipeline)."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)
    except OSError:
        pass  # gone meanwhile
