"""Timestamps as every file of jobsplit writes them: ISO-8601 UTC with milliseconds."""

from __future__ import annotations

import calendar
import datetime
import re
import time


def utc_timestamp(epoch_seconds: float) -> str:
    """``2026-11-23T12:00:00.123Z``: fixed width, so text order is time order (logs merge on it).

    A worker stamps every job and line, often right after a sleep, when the CPU's caches are
    cold: there a format spec such as ``{:03d}`` costs 25 us on its own. So the seconds are
    formatted once per second and the milliseconds looked up.
    """
    global _last_second
    whole = int(epoch_seconds)
    second, text = _last_second
    if second != whole:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _last_second = (whole, text)
    return text + _MILLIS[int((epoch_seconds - whole) * 1000)]


_last_second = (0, "1970-01-01T00:00:00")
"""The second last formatted, and its text (one tuple: replaced in one step, thread-safe)."""
_MILLIS = [f".{millis:03d}Z" for millis in range(1000)] + [".999Z"]
"""The fraction's text by milliseconds (the last for a product that rounds up to 1000)."""


def parse_utc_timestamp(text: str) -> float:
    """The epoch seconds of a :func:`utc_timestamp` text; ValueError if it is not one.

    A resuming run reads every row's start time back from results.csv: ``strptime`` took 13 us
    a row here, 2.6 s of a 200,000-job share's restart. The fixed-width text jobsplit writes is
    read field by field (``datetime`` checks the date, as ``strptime`` does); anything else
    still goes to ``strptime``, which decides as before."""
    head, _, fraction = text.removesuffix("Z").partition(".")
    return _whole_seconds(head) + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)


def _whole_seconds(head: str) -> int:
    fields = _FIXED_WIDTH.fullmatch(head)
    if fields is not None:
        year, month, day, hour, minute, second = map(int, fields.groups())
        try:
            return calendar.timegm(datetime.datetime(year, month, day, hour, minute, second).timetuple())
        except ValueError:
            pass  # not a date, or a leap second (":60", which strptime takes): strptime decides
    return calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S"))


_FIXED_WIDTH = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)", re.ASCII)
