"""The exceptions a command turns into one sentence and an exit status instead of a traceback."""

from __future__ import annotations

import errno
import signal
import sys
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
