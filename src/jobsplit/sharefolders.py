"""The folders each share was run in, noted for this user: where a share's done jobs are.

A resume is the same command run again, with the output in ``./jobsplit-out`` by default: run
from another folder (after a reboot, from a new terminal), it found no journal there and ran the
whole share again, while its done jobs sat in the first folder. So every run notes its machine
folder under the share's digest and machine, in the user's state folder (platformdirs: on
Linux ``~/.local/state/jobsplit``, or ``$XDG_STATE_HOME``), and a run that starts a share in a
new folder names the folders that hold done jobs of it; and a run is refused while another run
of its share by this user goes on here (``ShareLock``) or in one of those folders. Best effort:
a state folder that cannot be written or locked, or a journal that cannot be read (or a folder
that does not answer within LOOK_SECONDS), only means nothing is said.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
from contextlib import closing
from pathlib import Path
from typing import NamedTuple

from .errors import UserError, describe_os_error
from .fingerprint import UNKNOWN
from .journal import Journal
from .outdir import JOURNAL_FILE, describe_holder, folder_name, in_use, lock_holder, take_run_lock
from .sources.static import StaticShare
from .states import JobState
from .userfolders import user_folder


def _note(digest: str, machine: str) -> Path | None:
    """The share's note; None for a user without a home folder (see user_folder)."""
    state = user_folder("state")
    return state / "shares" / f"{digest}-{folder_name(machine)}.txt" if state is not None else None


def note_folder(digest: str, machine: str, folder: Path) -> str | None:
    """Note that this share is run in ``folder`` (its machine folder), once. Returns why it could
    not be noted, which a user should hear: a state folder on a full disk, or over its quota, still
    took the share lock's empty file, and the note's failure went unsaid, so a later run of the
    share from another folder ran every job done here again."""
    note, place = _note(digest, machine), str(folder.resolve())
    if note is None:
        return None
    try:
        if place in _noted(note):
            return None
        note.parent.mkdir(parents=True, exist_ok=True)
        with open(note, "a", encoding="utf-8", errors="surrogateescape") as f:  # one short line: appended whole; a path's bytes as they are, whatever the locale
            f.write(place + "\n")
    except OSError as exc:
        return f"this run's folder could not be noted in {note} ({describe_os_error(exc)})"
    return None


class ShareLock:
    """This host's one run of a share (digest and machine), whatever its folder: a run lock (see
    outdir.MachineLock) on ``<digest>-<machine>.lock`` beside the share's note, taken before the
    run looks for the share elsewhere and held to its end. Each folder's own lock, taken only
    once the run is confirmed, left a gap: a run waiting at its prompt, or one starting at the
    same moment into another folder, was not seen, and both ran every job of the share. Best
    effort, as the notes are: where the state folder cannot be written, or locks are not
    supported there, the folder's lock alone is left."""

    def __init__(self, digest: str, machine: str, folder: Path) -> None:
        note = _note(digest, machine)
        self.path = note.with_suffix(".lock") if note is not None else None
        self.folder = folder
        self.missing: str | None = None
        """Why this run holds no share lock, which a user should hear (nor are its folders noted):
        a state folder that cannot be written or locked, or no home to keep one in."""
        self._fd: int | None = None

    def __enter__(self) -> ShareLock:
        if self.path is None:
            self.missing = "this user has no home folder to keep jobsplit's notes of where shares ran"
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)  # the umask decides: a state folder a lab shares (XDG_STATE_HOME) lets its members take it
        except OSError as exc:
            self.missing = f"jobsplit's state folder {self.path.parent} cannot be written ({describe_os_error(exc)})"
            return self
        try:
            held = take_run_lock(fd, self.folder)
        except OSError as exc:  # no locks there: the folder's own lock alone is left
            os.close(fd)
            self.missing = f"jobsplit's state folder {self.path.parent} cannot be locked ({describe_os_error(exc)})"
            return self
        if held is not None:
            os.close(fd)
            if held.get("host", socket.gethostname()) != socket.gethostname():
                # A state folder on a home the hosts share: the other host's folder lock speaks
                # for its run, and a lock a crashed node left on a network disk must not fail this.
                return self
            place, here = Path(held["folder"]) if isinstance(held.get("folder"), str) else self.path, self.folder.absolute()
            raise in_use(place, describe_holder(held) if place == here else f"{describe_holder(held)}; this run would be in {here}")
        self._fd = fd
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None


class DoneElsewhere(NamedTuple):
    folder: Path
    done: int
    code: str
    """The code fingerprint of the entry that ran there last (``unknown`` if not recorded)."""


class Elsewhere(NamedTuple):
    """What the other folders noted for a share hold (see elsewhere)."""

    running: list[tuple[Path, str]]
    """(machine folder, the run holding it) where a run of the share goes on now."""
    done: list[DoneElsewhere]
    """Those whose journal, of this digest, holds done jobs (asked for: else empty)."""


LOOK_SECONDS = 5.0
"""How long a run's start waits to look into the other folders noted for its share: one on a
network disk that no longer answers (a scratch mount gone) blocks a file's opening for minutes."""


def elsewhere(digest: str, machine: str, folder: Path, *, done: bool, source: str = StaticShare.name) -> Elsewhere:
    """The other folders noted for this share: where a run of it goes on now (the same machine
    run again from another folder, ``./jobsplit-out`` being relative, while the first run goes
    on: every job of the share ran twice), and, if ``done``, where its done jobs are, in journals
    of the same ``source`` (a static share's folder is not where a shared queue's run of the same
    machine goes on, nor the other way round: each refuses the other's journal). Looked into
    in a thread of its own for at most LOOK_SECONDS: after that, nothing (as if no other folder
    were noted), and the start goes on."""
    found = Elsewhere([], [])
    note = _note(digest, machine)
    if note is None or not note.exists():  # never run anywhere: no thread to start (sbatch asks for each task of an array)
        return found
    here = str(folder.resolve())
    given_up = threading.Event()

    def look() -> None:
        for place in map(Path, _noted(note)):
            if given_up.is_set():
                return  # opening and closing a file of this run's own folder would drop its lock (lockf)
            if str(place) == here or _same_folder(place, folder):
                continue
            if (holder := lock_holder(place)) is not None:
                found.running.append((place, holder))
            if done and (jobs := _done_in(place, digest, source)) is not None:
                found.done.append(jobs)

    looking = threading.Thread(target=look, daemon=True, name="jobsplit-share-folders")
    looking.start()
    looking.join(LOOK_SECONDS)
    given_up.set()
    return Elsewhere([], []) if looking.is_alive() else found


def _same_folder(place: Path, folder: Path) -> bool:
    """Whether a noted folder is this run's own under another name (a bind mount, a folder of a
    case-insensitive disk): looked into as another, its run.lock opened and closed there would
    drop this run's lock on it, since a process's lockf locks on a file go with any descriptor
    of it it closes."""
    try:
        return os.path.samefile(place, folder)
    except OSError:
        return False


def _done_in(place: Path, digest: str, source: str) -> DoneElsewhere | None:
    """The done jobs of ``digest`` in the machine folder ``place`` whose journal is of ``source``
    (None: none, or no such journal)."""
    try:
        with closing(Journal(place / JOURNAL_FILE, read_only=True)) as other:  # refused: gone, empty, or with no plan
            meta = other.meta()
            count = other.counts()[JobState.DONE] if meta.get("digest") == digest and meta.get("source", StaticShare.name) == source else 0
    except (UserError, sqlite3.Error):
        return None
    return DoneElsewhere(place, count, meta.get("code", UNKNOWN)) if count else None


def _noted(note: Path | None) -> list[str]:
    if note is None:
        return []
    try:
        return [line for line in note.read_text(encoding="utf-8", errors="surrogateescape").splitlines() if os.path.isabs(line)]
    except (OSError, UnicodeDecodeError):
        return []
