"""Files and folders of other users: whose they are, and one sentence saying whom to ask what.

A lab shares folders: a colleague's run, tool or umask leaves files this user may not write or
read. Such a file is named with its owner and the fix that is theirs; never "choose another
--out", which for a folder that holds a share's done jobs would run them all again.
"""

from __future__ import annotations

import errno
import os
import pwd
from collections.abc import Sequence
from pathlib import Path

from .errors import UserError, describe_os_error

PERMISSION = frozenset({errno.EACCES, errno.EPERM})
"""Errors that mean "not this user's to open so": another user's file or folder."""


def owner_of(path: Path) -> str:
    """The name of the user who owns ``path`` (``user 1234`` without an account here), for a
    sentence that says whom to ask; ``its owner`` where it cannot be looked at."""
    try:
        uid = path.stat().st_uid
    except OSError:
        return "its owner"
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"user {uid}"


def owned_here(path: Path) -> bool | None:
    """Whether this user (its effective id) owns ``path``; None where it cannot be looked at."""
    try:
        return path.stat().st_uid == os.geteuid()
    except OSError:
        return None


def may_write(path: Path | str) -> bool:
    """Whether this process may write ``path``, as its own ids and capabilities decide (not the
    real user's, which ``os.access`` asks about by default: a process given CAP_DAC_READ_SEARCH
    to reach its folder, or running setuid, was told no of a file it could write)."""
    return os.access(path, os.W_OK, effective_ids=os.access in os.supports_effective_ids)


def not_writable(files: Sequence[Path], fix: str) -> UserError:
    """Files of a shared machine folder this user may not write. If another user's, the fix is
    their owner's, ``fix`` (what to run, in backquotes); if this user's own (an archive made
    read-only), its own ``chmod``."""
    named, one = " and ".join(map(str, files)), len(files) == 1
    if owned_here(files[0]):
        folder = files[0] if files[0].is_dir() else files[0].parent
        return UserError(f"{named} {'is' if one else 'are'} this user's but cannot be written; `chmod -R u+w {folder}`, then run the same command again")
    owner = owner_of(files[0])
    return UserError(
        f"{named} {'belongs' if one else 'belong'} to {owner}, and this user cannot write {'it' if one else 'them'}; "
        f"ask {owner} to {fix}, or run as {owner}, then run the same command again"
    )


def unreadable(exc: OSError) -> UserError:
    """A folder this user may not read, met looking for machine folders or logs (a colleague's,
    made under umask 077). ``exc`` names the folder (its listing refused) or a file in it (a look
    at it refused: the folder cannot be entered)."""
    place = Path(exc.filename)
    try:
        place.stat()
    except OSError:
        place = place.parent
    return UserError(f"{place} cannot be read ({describe_os_error(exc)}): ask its owner ({owner_of(place)}) to `chmod -R g+rX` it, or leave it out")
