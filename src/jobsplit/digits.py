"""Integers written out whole.

Python (3.11, and 3.10.7 on) refuses to convert an integer of more than
``sys.get_int_max_str_digits()`` digits (4,300 by default) to or from decimal text: a guard
against slow parsing of untrusted input. A job's argument or result is neither untrusted nor too
slow to write, and a job's id must hash every digit of its arguments, so jobsplit lifts the limit
for its own conversions, and only when one needs it.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_lifted = 0
"""How many ``every_digit`` blocks are open, in any thread: the first lifts the limit, the last
puts it back (a worker's task reader and its job thread may both convert at once)."""
_limit = 0
"""The limit as it was before the first of them."""


def _new_lock() -> None:
    """A forked worker starts with a free lock, whatever another thread of its parent held."""
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock)


@contextmanager
def every_digit() -> Iterator[None]:
    """Within the block, integers of any length convert to and from text (the limit is the
    interpreter's: other threads see it lifted meanwhile, which harms nothing)."""
    global _lifted, _limit
    if not hasattr(sys, "set_int_max_str_digits"):  # a Python without the limit
        yield
        return
    with _lock:
        if not _lifted:
            _limit = sys.get_int_max_str_digits()
            sys.set_int_max_str_digits(0)
        _lifted += 1
    try:
        yield
    finally:
        with _lock:
            _lifted -= 1
            if not _lifted:
                sys.set_int_max_str_digits(_limit)


def int_text(value: int) -> str:
    """``str(value)``, every digit of it."""
    try:
        return str(value)
    except ValueError:  # more digits than str() converts by default
        with every_digit():
            return str(value)


def int_of_text(digits: str) -> int:
    """``int(digits)``, every digit of it."""
    try:
        return int(digits)
    except ValueError:  # more digits than int() converts by default (or no number at all: raises again)
        with every_digit():
            return int(digits)
