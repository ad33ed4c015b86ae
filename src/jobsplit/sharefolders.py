"""The folders each share was run in, noted for this user: where a share's done jobs are.

A resume is the same command run again, with the output in ``./jobsplit-out`` by default: run
from another folder (after a reboot, from a new terminal), it found no journal there and ran the
whole share again, while its done jobs sat in the first folder. So every run notes its machine
folder under the share's digest and machine, in the user's state folder (platformdirs: on
Linux ``~/.local/state/jobsplit``, or ``$XDG_STATE_HOME``), and a run that starts a share in a
new folder names the folders that hold done jobs of it. Best effort: a state folder that cannot
be written, or a journal that cannot be read, only means nothing is said.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple, TypeVar

from .errors import UserError
from .fingerprint import UNKNOWN
from .journal import Journal
from .outdir import JOURNAL_FILE, folder_name, lock_holder
from .states import JobState
from .userfolders import user_folder


def _note(digest: str, machine: str) -> Path | None:
    """The share's note; None for a user without a home folder (see user_folder)."""
    state = user_folder("state")
    return state / "shares" / f"{digest}-{folder_name(machine)}.txt" if state is not None else None


def note_folder(digest: str, machine: str, folder: Path) -> None:
    """Note that this share is run in ``folder`` (its machine folder), once."""
    note, place = _note(digest, machine), str(folder.resolve())
    if note is None:
        return
    try:
        if place in _noted(note):
            return
        note.parent.mkdir(parents=True, exist_ok=True)
        with open(note, "a", encoding="utf-8", errors="surrogateescape") as f:  # one short line: appended whole; a path's bytes as they are, whatever the locale
            f.write(place + "\n")
    except OSError:
        pass


class DoneElsewhere(NamedTuple):
    folder: Path
    done: int
    code: str
    """The code fingerprint of the entry that ran there last (``unknown`` if not recorded)."""


def done_elsewhere(digest: str, machine: str, folder: Path) -> list[DoneElsewhere]:
    """Every other folder noted for this share whose journal, of this digest, holds done jobs
    (looked for at most LOOK_SECONDS, see _within)."""

    def done(place: Path) -> DoneElsewhere | None:
        try:
            other = Journal(place / JOURNAL_FILE, read_only=True)  # refused: gone, empty, or with no plan
            try:
                meta = other.meta()
                count = other.counts()[JobState.DONE] if meta.get("digest") == digest else 0
            finally:
                other.close()
        except (UserError, sqlite3.Error):
            return None
        return DoneElsewhere(place, count, meta.get("code", UNKNOWN)) if count else None

    return _within(digest, machine, folder, done)


def running_elsewhere(digest: str, machine: str, folder: Path) -> list[tuple[Path, str]]:
    """(machine folder, the run holding it) of every other folder noted for this share where a
    run of it goes on now: the same machine run again from another folder (``./jobsplit-out``
    is relative) while the first run goes on, which ran every job of the share twice."""

    def running(place: Path) -> tuple[Path, str] | None:
        holder = lock_holder(place)
        return (place, holder) if holder is not None else None

    return _within(digest, machine, folder, running)


LOOK_SECONDS = 5.0
"""How long a run's start waits to look into the other folders noted for its share: one on a
network disk that no longer answers (a scratch mount gone) blocks a file's opening for minutes."""

_Found = TypeVar("_Found")


def _within(digest: str, machine: str, folder: Path, look: Callable[[Path], _Found | None]) -> list[_Found]:
    """What ``look`` finds in each other folder noted for the share, in a thread of its own, for at
    most LOOK_SECONDS: after that, nothing (as if no other folder were noted), and the start goes on."""
    here = str(folder.resolve())
    found: list[_Found] = []

    def each() -> None:
        found.extend(seen for place in _noted(_note(digest, machine)) if place != here and (seen := look(Path(place))) is not None)

    looking = threading.Thread(target=each, daemon=True, name="jobsplit-share-folders")
    looking.start()
    looking.join(LOOK_SECONDS)
    return [] if looking.is_alive() else found


def _noted(note: Path | None) -> list[str]:
    if note is None:
        return []
    try:
        return [line for line in note.read_text(encoding="utf-8", errors="surrogateescape").splitlines() if os.path.isabs(line)]
    except (OSError, UnicodeDecodeError):
        return []
