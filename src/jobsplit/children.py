"""Child processes a job leaves behind: found when it ends, logged, and stopped.

Each worker leads its own process group, so the runner can stop a job together with the
programs it started (on a timeout, a crash or a stop). On Linux the worker is also a child
subreaper: programs that daemonize are re-parented to it rather than to PID 1, so after a job
returns, whatever it left running is still the worker's child and can be found here.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from pathlib import Path

_PR_SET_CHILD_SUBREAPER = 36
REAP_INTERVAL = 0.02


def become_group_leader_and_subreaper() -> None:
    """Run in a worker at start: a process group of its own, and (Linux) a child subreaper."""
    try:
        os.setpgid(0, 0)
    except OSError:
        pass  # already a group leader (the parent set it)
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        except (OSError, AttributeError):
            pass


def reap_zombies() -> bool:
    """Collect children that have exited; True if some are still alive (the rare case).

    With no children at all this is one system call.
    """
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True


def live_children() -> list[tuple[int, str]]:
    """(pid, command line) of this process's live children (Linux: read from /proc)."""
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir() if sys.platform.startswith("linux") else ():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[1]) != me or fields[0] in "ZX":
                continue
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "backslashreplace").strip()
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        found.append((int(entry.name), command or stat[stat.index("(") + 1 : stat.rindex(")")]))
    return found


def stop_children(grace: float) -> list[tuple[int, str]]:
    """Stop the children this process still has: SIGTERM, then SIGKILL after ``grace``
    seconds. Returns the (pid, command) of those found alive, for the log."""
    if not reap_zombies():
        return []
    found = live_children()
    for pid, _ in found:
        _signal_tree(pid, signal.SIGTERM)
    kill_at = time.monotonic() + grace
    give_up_at = kill_at + max(grace, 1.0)  # a child in uninterruptible sleep cannot hold the worker forever
    killed = False
    while reap_zombies() and time.monotonic() < give_up_at:
        if not killed and time.monotonic() >= kill_at:
            for pid, _ in live_children():  # the survivors, and orphans re-parented meanwhile
                _signal_tree(pid, signal.SIGKILL)
            killed = True
        time.sleep(REAP_INTERVAL)
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
