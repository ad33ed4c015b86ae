"""A run's progress snapshot, ``OUT/<machine>/progress.json``: what ``status`` reads, and how
the journal readers tell that another host is writing a folder.

A journal is SQLite in WAL mode, whose readers and writer share memory through the ``-shm``
file beside it; processes on different hosts cannot share it over a network file system, so
a reader on a login node may misread, or even damage, a journal that a compute node is
writing. A run therefore also writes this small JSON file, whole (written aside, then
renamed), when it starts, every :data:`INTERVAL` seconds and when it ends. ``status`` reads
the snapshot of a run on another host (and the journal, live, of a run on its own host), and
the tools that read journals (merge-results, reduce, report, trace) leave a folder alone while
its snapshot says that a run on another host writes it.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from .atomicfile import atomic_file
from .clock import SYSTEM_CLOCK, Clock
from .errors import UserError, describe_os_error
from .outdir import PROGRESS_FILE
from .states import RunStatus

FORMAT = 1
INTERVAL = 10.0
"""Seconds between two snapshots of a run: a few a minute cost nothing, even on a busy NFS server."""
STALLED_AFTER = 6 * INTERVAL
"""A running snapshot older than this is taken for a dead run (a killed task, a lost node); six
intervals, because the clocks of the writing and the reading host may differ a little."""
PAUSED = "paused"
"""A snapshot's state while its run is paused (Ctrl-Z), never a journal's: quiet, but not dead."""


@dataclass(frozen=True)
class RunSnapshot:
    """Where one run of one machine stands."""

    machine: str
    digest: str
    plan: dict[str, int]
    """Every machine of the plan -> its job count: ``status`` lists the machines never started."""
    state: str
    """A RunStatus: running (or PAUSED meanwhile), then completed, interrupted or stopped."""
    host: str
    pid: int
    started: float
    updated: float
    total: int
    done: int
    """Done, earlier runs included."""
    failed: int
    running: int
    done_before: int
    """Done when this run started (the rate counts this run's jobs only)."""
    workers: int

    @property
    def pending(self) -> int:
        return self.total - self.done - self.failed - self.running

    def stalled(self, now: float) -> bool:
        return self.state == RunStatus.RUNNING and now - self.updated > STALLED_AFTER

    def clock_ahead(self, now: float) -> float | None:
        """Seconds by which its host's clock is at least ahead of this one's, where the snapshot
        was written so far in the future (more than STALLED_AFTER) that no clock merely drifting
        explains it; None otherwise. Such a run looks alive here until this clock catches up,
        even if it died long ago."""
        ahead = self.updated - now
        return ahead if ahead > STALLED_AFTER else None

    def clock_sentence(self, now: float) -> str:
        """What a tool adds where it takes a run of another host for live by its snapshot."""
        ahead = self.clock_ahead(now)
        if ahead is None or not self.from_elsewhere:
            return ""
        return (
            f"; but {self.host}'s clock is ahead of this host's by {_hours(ahead)} or more (its last snapshot is dated then), so a run that "
            f"died there looks alive here until then: check it on {self.host}, and set its clock right (NTP)"
        )

    @property
    def from_elsewhere(self) -> bool:
        """Whether the run was on another host than this one."""
        return self.host != socket.gethostname()

    def written_elsewhere(self, now: float) -> bool:
        """Whether a live run on another host writes this folder (its journal is not to be opened
        here). A paused run counts as long as a running one: it may go on at any time, but a run
        killed while paused never says so."""
        return self.state in (RunStatus.RUNNING, PAUSED) and now - self.updated <= STALLED_AFTER and self.from_elsewhere


def write_snapshot(folder: Path, snapshot: RunSnapshot, *, writer: str = "partial") -> None:
    with atomic_file(folder / PROGRESS_FILE, writer=writer) as f:
        f.write(json.dumps({"format": FORMAT, **asdict(snapshot)}, sort_keys=True) + "\n")


def read_snapshot(folder: Path) -> RunSnapshot | None:
    """The folder's snapshot, None if it has none (an older jobsplit ran there) or if it is
    damaged (a copy cut short, an emptied file): a snapshot is only a summary, written whole by
    its run (see atomic_file), and the journal beside it holds the truth. Taken for a damaged
    folder, it made every tool refuse a complete journal, and the machine's own run refuse to
    start, telling the user to copy the folder again from its host (the run writes it anew)."""
    path = folder / PROGRESS_FILE
    try:
        doc = json.loads(path.read_bytes())
        return RunSnapshot(**{f.name: doc[f.name] for f in fields(RunSnapshot)})
    except (FileNotFoundError, NotADirectoryError):  # the second: a file where a folder should be, which making the folder names
        return None
    except OSError as exc:
        raise UserError(f"{path} cannot be read ({describe_os_error(exc)}); check the folder's permissions") from None
    except (ValueError, KeyError, TypeError):
        return None


def written_elsewhere(folder: Path, now: float) -> RunSnapshot | None:
    """The snapshot of a live run on another host writing ``folder``, else None."""
    snapshot = read_snapshot(folder)
    return snapshot if snapshot is not None and snapshot.written_elsewhere(now) else None


def split_written_elsewhere(dirs: Sequence[Path]) -> tuple[list[Path], dict[Path, RunSnapshot]]:
    """(the folders whose journals may be opened here, those another host's run writes -> its snapshot).

    Refuses when every folder is written elsewhere: there is nothing to read the plan from."""
    now = time.time()
    elsewhere = {path: snapshot for path in dirs if (snapshot := written_elsewhere(path, now)) is not None}
    readable = [path for path in dirs if path not in elsewhere]
    if not readable:
        hosts = ", ".join(sorted({s.host for s in elsewhere.values()}))
        raise UserError(
            f"every folder given is being written by a run on another host ({hosts}), and a journal is not opened from another host "
            "while it is written; run this again when a run has ended, or on its host"
        )
    return readable, elsewhere


class SnapshotWriter:
    """Writes one run's snapshots: :meth:`update` often (it writes every INTERVAL), :meth:`write` at once."""

    def __init__(self, folder: Path, first: RunSnapshot, clock: Clock = SYSTEM_CLOCK) -> None:
        self.folder = folder
        self.last = first
        self.clock = clock
        self.written_at = clock.monotonic()
        write_snapshot(folder, first)

    def paused(self) -> None:
        """The run is being paused (Ctrl-Z): said at once, from the signal handler, under a
        temporary name of its own (see atomic_file). ``update`` says it runs again."""
        self.last = replace(self.last, state=PAUSED, updated=self.clock.time())
        self.written_at = self.clock.monotonic() - INTERVAL  # the first update after the pause writes
        write_snapshot(self.folder, self.last, writer="paused")

    def update(self, total: int, done: int, failed: int, running: int) -> None:
        if self.clock.monotonic() - self.written_at >= INTERVAL:
            self.write(total, done, failed, running, RunStatus.RUNNING)

    def write(self, total: int, done: int, failed: int, running: int, state: str) -> None:
        """``total``: the jobs this machine holds (a shared queue's run holds more as it claims them)."""
        self.last = replace(self.last, total=total, done=done, failed=failed, running=running, state=str(state), updated=self.clock.time())
        self.written_at = self.clock.monotonic()
        write_snapshot(self.folder, self.last)


def _hours(seconds: float) -> str:
    """``3.0 h``, ``25 min``: a clock's offset, roughly."""
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"
