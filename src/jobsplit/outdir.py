"""Facts about the output folders: what a machine folder holds, its lock, its backups, and
how the tools find machine folders among the paths they are given.

``OUT/<machine>/`` holds ``journal.sqlite`` (the truth), ``results.csv`` (rebuilt from it),
``progress.json`` (the run's progress snapshot, see ``snapshot``), ``<machine>.log.gz`` with
rotated ``<machine>.log.<N>.gz`` segments, ``jobs/`` (per-job logs), ``run.lock`` (held by the
one run writing the folder) and ``backup-<time>/`` folders (``--fresh``).

``<machine>`` in folder and file names is the machine's name, except that an array member
``sim[3]`` is ``sim@3``: brackets are glob characters in every shell (``ls OUT/sim[3]`` lists
``OUT/sim3``), while ``@`` needs no quoting in shells, is valid on every file system, and cannot
occur in a machine name, so no two machines share a folder.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import socket
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import NO_SPACE, StorageError, UserError, describe_os_error
from .machines import split_member
from .permissions import PERMISSION, not_writable, owner_of, unreadable
from .text import plural
from .timefmt import utc_timestamp

JOURNAL_FILE = "journal.sqlite"
RESULTS_FILE = "results.csv"
PROGRESS_FILE = "progress.json"
LOCK_FILE = "run.lock"
PER_JOB_DIR = "jobs"
BACKUP_PREFIX = "backup-"
SLURM_LOGS = "slurm-logs"
"""The folder of an output root that receives Slurm's output of every task of an array (see sbatch_command)."""
LOG_NAME = re.compile(r"(.+)\.log(?:\.\d+)?\.gz")
"""A machine's log file, current or a rotated segment: ``<folder name>.log[.<N>].gz``."""
JOURNAL_FILES = (JOURNAL_FILE, f"{JOURNAL_FILE}-wal", f"{JOURNAL_FILE}-shm")
"""The journal and SQLite's files beside it, which go wherever it goes."""


def folder_name(machine: str) -> str:
    """The name of a machine's folder and log files: ``sim@3`` for the array member ``sim[3]``."""
    member = split_member(machine)
    return f"{member[0]}@{member[1]}" if member else machine


@dataclass(frozen=True)
class MachineDir:
    """One machine's output folder."""

    path: Path
    machine: str
    """The machine's name (or a folder's, which names the same files)."""

    @classmethod
    def of(cls, root: Path, machine: str) -> MachineDir:
        """The folder of ``machine`` under the output root ``root``."""
        return cls(root / folder_name(machine), machine)

    @property
    def journal(self) -> Path:
        return self.path / JOURNAL_FILE

    @property
    def results(self) -> Path:
        return self.path / RESULTS_FILE

    @property
    def log(self) -> Path:
        """The current log; older records are in :meth:`segments`."""
        return self.path / f"{folder_name(self.machine)}.log.gz"

    @property
    def per_job_logs(self) -> Path:
        return self.path / PER_JOB_DIR

    def segment(self, number: int) -> Path:
        return self.path / f"{folder_name(self.machine)}.log.{number}.gz"

    def numbered_segments(self) -> list[tuple[int, Path]]:
        """The rotated segments ``<machine>.log.<N>.gz`` with their numbers, oldest first."""
        stem = folder_name(self.machine)
        pattern = re.compile(re.escape(stem) + r"\.log\.(\d+)\.gz")
        found = [(int(m.group(1)), p) for p in self.path.glob(f"{glob_escape(stem)}.log.*.gz") if (m := pattern.fullmatch(p.name))]
        return sorted(found)

    def segments(self) -> list[Path]:
        """Every log file of the machine, oldest first: the rotated segments, then the current log."""
        current = [self.log] if self.log.exists() else []
        return [path for _, path in self.numbered_segments()] + current

    def create(self) -> None:
        """Make the folder (and the output root); a path that cannot be one is a UserError naming it."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / f".write-test.{os.getpid()}"
            probe.touch()
            probe.unlink()
        except OSError as exc:
            raise folder_error(self.path, exc) from None

    def back_up(self, names: Collection[str] | None = None) -> Path | None:
        """Move everything but the lock and earlier backups (or only the files ``names``) into
        a new ``backup-<time>`` folder; all of them or none. In a sticky folder, another user's
        file cannot be moved: it was a PermissionError traceback, leaving an empty backup
        folder, or the journal in it and results.csv beside it; now what was moved goes back,
        and the file is named with its owner."""
        entries = [p for p in sorted(self.path.iterdir()) if p.name != LOCK_FILE and not p.name.startswith(BACKUP_PREFIX) and (names is None or p.name in names)]
        if not entries:
            return None
        stamp = time.strftime(f"{BACKUP_PREFIX}%Y%m%dT%H%M%SZ", time.gmtime())
        backup, number = self.path / stamp, 1
        while backup.exists():  # two fresh starts within one second
            number += 1
            backup = self.path / f"{stamp}-{number}"
        try:
            backup.mkdir()
        except OSError as exc:
            raise folder_error(self.path, exc) from None
        moved: list[Path] = []
        for path in entries:
            try:
                path.rename(backup / path.name)
            except OSError as exc:
                for done in reversed(moved):
                    (backup / done.name).rename(done)
                backup.rmdir()
                if exc.errno not in PERMISSION:
                    raise folder_error(self.path, exc) from None
                owner = owner_of(path)
                raise UserError(
                    f"{path} belongs to {owner}, and this user may not move it into a backup folder ({describe_os_error(exc)}); "
                    f"nothing was moved: ask {owner} to move it away, or run as {owner}"
                ) from None
            moved.append(path)
        return backup


def folder_error(path: Path, exc: OSError) -> UserError | StorageError:
    """One sentence for a folder that cannot be made or written. Another ``--out`` is no fix for
    one that holds a journal (this share's done jobs, whose owner may let this user write it)."""
    if exc.errno in NO_SPACE:
        return StorageError(f"{path} cannot be written: {describe_os_error(exc)}; free some space and run again")
    if exc.errno in (errno.EEXIST, errno.ENOTDIR) or (path.exists() and not path.is_dir()):
        dangling = next((p for p in (path, *path.parents) if p.is_symlink() and not p.exists()), None)
        if dangling is not None:
            return UserError(f"{dangling} is a link to {os.readlink(dangling)}, which does not exist; make that folder, or choose another --out (or host.ini [host] out)")
        culprit = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), path)
        return UserError(f"{culprit} is a file, not a folder; choose another --out (or host.ini [host] out)")
    if exc.errno in PERMISSION and os.path.exists(path / JOURNAL_FILE):
        return not_writable([path], "`chmod -R g+w` it")
    return UserError(f"cannot write the output folder {path} ({describe_os_error(exc)}); choose a folder you can write with --out (or host.ini [host] out)")


def file_error(path: Path, exc: OSError) -> UserError | StorageError:
    """One sentence for a file of a machine folder that cannot be opened to write: another
    user's (a colleague's run of the share, made under a umask without the group's write
    permission, or by a jobsplit that made its journal and lock 0644), else its folder's."""
    if exc.errno in PERMISSION and os.path.lexists(path):
        return others_file(path)
    return folder_error(path.parent, exc)


def others_file(path: Path) -> UserError:
    """A file of a machine folder this user may not write: its owner's to share with the group."""
    return not_writable([path], f"`chmod -R g+w {path.parent}`")


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


class MachineLock:
    """An exclusive lock on a machine folder, held by the one run that writes it.

    A POSIX record lock (``lockf``) belongs to the process that took it and dies with it, so a
    run killed with SIGKILL never leaves a stale lock. Not an ``flock``: that belongs to the open
    file, which forked workers and whatever a job forks share, so a process a job left running
    would hold the lock of a run killed long ago. The file names the holder (pid, host, start)
    for the run it refuses. Readers (``status``, the merge tools) never take it.
    """

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)  # the umask decides: the group's, in a folder it shares
        except OSError as exc:
            raise file_error(self.path, exc) from None
        try:
            held = take_run_lock(fd, self.path.parent)
        except OSError as exc:
            os.close(fd)
            raise folder_error(self.path.parent, exc) from None
        if held is not None:
            os.close(fd)
            raise in_use(self.path.parent, describe_holder(held))
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing it releases the lock (as would closing any other descriptor of the file here)
            self._fd = None

    def __enter__(self) -> MachineLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def take_run_lock(fd: int, folder: Path) -> dict[str, Any] | None:
    """Take the lock of the open file ``fd`` for the run of the machine folder ``folder``, and
    name that run in the file; None once taken, else what the run holding it wrote there
    (``pid``, ``host``, ``since``, ``folder``; see describe_holder). OSError: the lock could
    not be taken for another reason."""
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EAGAIN):
            raise
        return _holder(fd)
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": utc_timestamp(time.time()), "folder": str(folder.absolute())}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode() + b"\n", 0)
    return None


def lock_holder(folder: Path) -> str | None:
    """Who holds ``folder``'s run lock now (see holder_text); None if no run does. Tested, not
    taken (a run starting there meanwhile would have been refused), and not read: a run that
    died leaves its name in the file, not its lock."""
    try:
        fd = os.open(folder / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None  # no lock file: no run there
    try:
        os.lockf(fd, os.F_TEST, 0)
    except OSError as exc:
        return describe_holder(_holder(fd)) if exc.errno in (errno.EACCES, errno.EAGAIN) else None
    finally:
        os.close(fd)
    return None


def in_use(folder: Path, holder: str) -> UserError:
    """A second run of a machine, refused: ``holder`` says which run has the folder."""
    return UserError(f"{folder} is in use by another run of this machine ({holder}); wait for it to finish or stop it (two runs of one machine would run every job twice)")


def holder_text(pid: int, host: str, since: str) -> str:
    return f"pid {pid} on {host}, since {since}"


def _holder(fd: int) -> dict[str, Any]:
    """What the run holding a lock wrote into its file (empty: not yet, or unreadable)."""
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def describe_holder(holder: dict[str, Any]) -> str:
    """``pid 4242 on node17, since ...``: the run that holds a lock, as it wrote (see take_run_lock)."""
    try:
        return holder_text(holder["pid"], holder["host"], holder["since"])
    except KeyError:
        return "a run that has not said who it is yet"


def find_machine_dirs(paths: Sequence[Path]) -> list[Path]:
    """Machine folders (with a journal) among the paths, or among their immediate subfolders
    (and theirs, for a run given its machine's folder as ``--out``: ``OUT/b/b``). A subfolder
    with a run's files (its log, progress, lock) but no journal is refused: skipped, it was a
    machine "missing" whose results were right there. A path holding no machine folder but
    output roots (a root copied into it whole) is refused naming them."""
    found: dict[Path, None] = {}
    for path in paths:
        try:
            if not path.exists():
                raise UserError(f"{path} does not exist; give machine output folders (DIR/<machine>) or their output root")
            if (path / JOURNAL_FILE).is_file():
                found[path.resolve()] = None
                continue
            below = [_machine_dir_in(p) for p in sorted(path.iterdir()) if p.is_dir()] if path.is_dir() else []
        except PermissionError as exc:
            raise unreadable(exc) from None
        if not any(below):
            if roots := _roots_below(path):
                raise UserError(
                    f"{path} holds no machine folder, but {roots[0]} is an output root (it holds {', '.join(p.name for p in _machines_in(roots[0]))}), "
                    f"one level further down, as a copy into an existing folder puts it: give {' and '.join(map(str, roots))} instead"
                )
            if (path / SLURM_LOGS).is_dir():  # sbatch's output root, its tasks still queued: nothing to copy from anywhere
                outputs = sum(1 for p in (path / SLURM_LOGS).iterdir() if p.is_file())
                why = f"; a task that ended before its run began says why in its output there ({plural(outputs, 'task output')})" if outputs else ""
                raise UserError(
                    f"{path} holds no machine folder yet: no task of the array written into it has begun its run "
                    f"(sbatch made {path / SLURM_LOGS} for their Slurm outputs); squeue shows the tasks still waiting{why}"
                )
            raise UserError(f"{path} holds no {JOURNAL_FILE}; copy each machine's whole output folder (DIR/<machine>/) from its host")
        found.update((p.resolve(), None) for p in below if p is not None)
    return list(found)


def machine_dirs_below(paths: Sequence[Path], machines: Iterable[str]) -> dict[str, Path]:
    """Folders of ``machines`` one level below an output root given (``collected/jobsplit-out/c``
    beside ``collected/a``: ``rsync -a host:jobsplit-out collected/`` copies the root, not its
    folders), which the tools do not read: a merge called such a machine's results missing, with
    "no folder for this machine was given", where they were right there."""
    found: dict[str, Path] = {}
    names = list(machines)
    for path in paths:
        for sub in _subfolders(path) if not (path / JOURNAL_FILE).is_file() else []:
            if (sub / JOURNAL_FILE).is_file():
                continue  # a machine folder, read already: one look, not one per machine (an array's thousand tasks on a network file system)
            for machine in names:
                if machine not in found and (sub / folder_name(machine) / JOURNAL_FILE).is_file():
                    found[machine] = sub / folder_name(machine)
    return found


def results_without_journal(paths: Sequence[Path], machines: Iterable[str]) -> dict[str, Path]:
    """Folders of ``machines`` in an output root given that hold a results.csv but no journal
    (the results alone copied from a host): find_machine_dirs skips such a folder, as a
    results.csv alone may be a merge saved there, and a merge called the machine's share missing
    with "no folder for this machine was given"; named for a machine of the plan, it is that
    machine's."""
    found: dict[str, Path] = {}
    names = list(machines)
    for path in paths:
        if (path / JOURNAL_FILE).is_file():
            continue
        for machine in names:
            folder = path / folder_name(machine)
            if machine not in found and (folder / RESULTS_FILE).is_file() and not (folder / JOURNAL_FILE).is_file():
                found[machine] = folder
    return found


def results_only_sentence(folder: Path) -> str:
    """Why the tools take a folder holding a results.csv and no journal for no folder at all."""
    return f"{folder} holds a {RESULTS_FILE} but no {JOURNAL_FILE}, which the tools read: copy that machine's whole output folder from its host again"


def _roots_below(path: Path) -> list[Path]:
    """The subfolders of ``path`` that are output roots (their own subfolders are machine folders)."""
    return [sub for sub in _subfolders(path) if _machines_in(sub)]


def _machines_in(root: Path) -> list[Path]:
    return [p for p in _subfolders(root) if (p / JOURNAL_FILE).is_file()]


def _subfolders(path: Path) -> list[Path]:
    """The folders in ``path``, by name; none where it cannot be listed (these only give hints)."""
    try:
        return [p for p in sorted(path.iterdir()) if p.is_dir()]
    except OSError:
        return []


def _machine_dir_in(folder: Path) -> Path | None:
    """The machine folder that a subfolder of an output root is, or holds (None: neither)."""
    if (folder / JOURNAL_FILE).is_file():
        return folder
    if (nested := folder / folder.name / JOURNAL_FILE).is_file():
        return nested.parent
    kept = [name for name in (PROGRESS_FILE, LOCK_FILE) if (folder / name).is_file()] + [p.name for p in MachineDir(folder, folder.name).segments()]
    if kept:  # a run's own files (a results.csv alone may be a merge saved there: skipped)
        raise UserError(f"{folder} holds {', '.join(kept)} but no {JOURNAL_FILE}, which the tools read: copy that machine's whole output folder from its host again")
    return None


def repeated_machines(folders: Iterable[tuple[str, Path]]) -> dict[str, list[Path]]:
    """Machine names that more than one of these (machine, folder) pairs hold -> their folders."""
    by_name: dict[str, list[Path]] = {}
    for name, folder in folders:
        by_name.setdefault(name, []).append(folder)
    return {name: found for name, found in by_name.items() if len(found) > 1}


def repeated_machine_sentence(name: str, folders: Sequence[Path], *, queue: bool = False) -> str:
    """What a machine found in several folders means, and what to do: the usual cause is a
    machine chosen on two hosts, which leaves some other machine's share run by nobody. Through
    a shared queue (``queue``), which credits a machine's done jobs to the run of it that
    reports them, a run from another folder handed them back, and they ran again."""
    if queue:
        return (
            f"machine {name} is in {len(folders)} folders ({', '.join(map(str, folders))}): it ran from each (--fresh, or on another host of that name), "
            "and the jobs done in one were handed back to the queue and run again (or a folder was copied twice); keep one folder per machine"
        )
    return (
        f"machine {name} is in {len(folders)} folders ({', '.join(map(str, folders))}): its share ran {len(folders)} times, "
        f"on hosts that each chose {name} (or a folder was copied twice); each machine is chosen on one host only: keep one "
        "folder per machine, and run the shares of machines that have none on the hosts meant for them"
    )
