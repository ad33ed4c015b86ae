"""Integers written out whole.

Python (3.11, and 3.10.7 on) refuses to convert an integer of more than
``sys.get_int_max_str_digits()`` digits (4,300 by default) to decimal text: a guard against slow
parsing of untrusted input. A job's argument or result is neither untrusted nor too slow to
write, and a job's id must hash every digit of its arguments, so jobsplit lifts the limit for its
own conversions, and only when one needs it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def every_digit() -> Iterator[None]:
    """Within the block, integers of any length convert to text (the limit is per interpreter:
    other threads see it lifted meanwhile, which harms nothing)."""
    limit = getattr(sys, "get_int_max_str_digits", lambda: 0)()
    if not limit:  # no limit here (or it is already off)
        yield
        return
    sys.set_int_max_str_digits(0)
    try:
        yield
    finally:
        sys.set_int_max_str_digits(limit)


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
