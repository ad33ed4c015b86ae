"""Timestamps as every file of jobsplit writes them: ISO-8601 UTC with milliseconds."""

from __future__ import annotations

import calendar
import functools
import time


def utc_timestamp(epoch_seconds: float) -> str:
    """``2026-11-23T12:00:00.123Z``: fixed width, so text order is time order (logs merge on it)."""
    whole = int(epoch_seconds)
    millis = min(999, int((epoch_seconds - whole) * 1000))
    return f"{_utc_second(whole)}.{millis:03d}Z"


@functools.lru_cache(maxsize=4)
def _utc_second(whole_seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole_seconds))


def parse_utc_timestamp(text: str) -> float:
    """The epoch seconds of a :func:`utc_timestamp` text; ValueError if it is not one."""
    head, _, fraction = text.removesuffix("Z").partition(".")
    seconds = calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S"))
    return seconds + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)
