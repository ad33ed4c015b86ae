"""The exceptions a command turns into one sentence and an exit status instead of a traceback."""

from __future__ import annotations

import codecs
import errno
import signal
import sys
from pathlib import Path
from typing import NoReturn

from . import exitcodes


class JobsplitError(Exception):
    """A failure explained to the user in one sentence; ``exit_status`` says what kind."""

    exit_status = exitcodes.USAGE


class UserError(JobsplitError):
    """Bad input the user can fix: the message names the file or field at fault and what to do."""


class StorageError(JobsplitError):
    """The machine folder could not be written (full disk, lost permission) while a run was going.

    The run stops like an interrupt: what was committed stays, the rest runs again on resume.
    """

    exit_status = exitcodes.STORAGE


class InternalError(JobsplitError):
    """jobsplit's own code failed, not the user's job."""

    exit_status = exitcodes.INTERNAL


def exit_interrupted() -> NoReturn:
    """Ctrl-C outside a run (which stops in its own way): while jobsplit's modules load, or the
    pool is built, identified or planned. One sentence and exit status 130, not a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # an impatient second Ctrl-C cuts no sentence short
    sys.stderr.write("error: interrupted (Ctrl-C); nothing was left half-written: run the same command again\n")
    raise SystemExit(exitcodes.INTERRUPTED)


NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
"""Errors that mean "no room to write": a full disk, a quota, a file size limit."""

def describe_os_error(exc: OSError) -> str:
    """``strerror``, else the text of the exception, without the path (the caller names it)."""
    return exc.strerror or str(exc) or type(exc).__name__


_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def not_utf8(path: Path, exc: UnicodeDecodeError) -> UserError:
    """The refusal of a config file (config.ini, header.csv, machines.json, host.ini) saved in
    another encoding than UTF-8, which jobsplit reads them as on every host: an editor's
    Windows-1252 or UTF-16 was told to check the file's permissions. A UTF-16 byte-order mark cannot be UTF-8, so a file
    that starts with one fails at the first byte its reader decodes."""
    if exc.start == 0 and exc.object[:2] in _UTF16_BOMS:
        return UserError(f"{path} is UTF-16 text (it starts with a UTF-16 byte-order mark), not UTF-8; save it as UTF-8")
    return UserError(f"{path} is not UTF-8 text (its byte 0x{exc.object[exc.start]:02X} is not UTF-8; saved in another encoding, such as Windows-1252?); save it as UTF-8")
