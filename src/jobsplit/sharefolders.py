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
from pathlib import Path
from typing import NamedTuple

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
    """Every other folder noted for this share whose journal, of this digest, holds done jobs."""
    here = str(folder.resolve())
    found = []
    for place in _noted(_note(digest, machine)):
        if place == here:
            continue
        try:
            other = Journal(Path(place) / JOURNAL_FILE, read_only=True)  # refused: gone, empty, or with no plan
            try:
                meta = other.meta()
                done = other.counts()[JobState.DONE] if meta.get("digest") == digest else 0
            finally:
                other.close()
        except (UserError, sqlite3.Error):
            continue
        if done:
            found.append(DoneElsewhere(Path(place), done, meta.get("code", UNKNOWN)))
    return found


def running_elsewhere(digest: str, machine: str, folder: Path) -> list[tuple[Path, str]]:
    """(machine folder, the run holding it) of every other folder noted for this share where a
    run of it goes on now: the same machine run again from another folder (``./jobsplit-out``
    is relative) while the first run goes on, which ran every job of the share twice."""
    here = str(folder.resolve())
    return [(Path(place), holder) for place in _noted(_note(digest, machine)) if place != here and (holder := lock_holder(Path(place))) is not None]


def _noted(note: Path | None) -> list[str]:
    if note is None:
        return []
    try:
        return [line for line in note.read_text(encoding="utf-8", errors="surrogateescape").splitlines() if os.path.isabs(line)]
    except (OSError, UnicodeDecodeError):
        return []
