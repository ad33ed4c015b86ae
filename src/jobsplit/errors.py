"""The one exception type users see as a sentence instead of a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input the user can fix: shown as one sentence, exit status 2.

    The message names the file or field at fault and what to do about it.
    """

    exit_status = 2
