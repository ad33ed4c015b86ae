"""Timestamps (``timefmt``): the text every file of jobsplit writes, whatever the cache holds."""

from __future__ import annotations

import calendar
import re
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from jobsplit.timefmt import parse_utc_timestamp, utc_timestamp

EPOCHS = st.floats(min_value=0, max_value=4e9, allow_nan=False)
SHAPE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@settings(max_examples=500, deadline=None)
@given(EPOCHS, EPOCHS)
def test_a_timestamp_is_the_utc_second_and_the_truncated_milliseconds(a, b):
    """Two times in turn (so the cached second keeps changing): each text is strftime's second
    and the milliseconds cut (not rounded), fixed width, and text order is time order."""
    for epoch in (a, b, a):
        text = utc_timestamp(epoch)
        assert SHAPE.fullmatch(text)
        assert text[:19] == time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(epoch)))
        assert text[20:23] == f"{min(999, int((epoch - int(epoch)) * 1000)):03d}"
        assert abs(parse_utc_timestamp(text) - epoch) < 0.001 + 1e-6 * epoch / 1e9
    low, high = sorted((a, b))
    assert utc_timestamp(low) <= utc_timestamp(high)


def test_the_last_millisecond_of_a_second_stays_in_that_second():
    just_below = 1_795_000_000 + (1 - 2**-22)
    assert utc_timestamp(just_below).endswith(".999Z") and utc_timestamp(just_below)[:19] == utc_timestamp(1_795_000_000.0)[:19]


def _by_strptime(text: str) -> float:
    """The reference: how every timestamp was read before the fixed-width path."""
    head, _, fraction = text.removesuffix("Z").partition(".")
    return calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S")) + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)


def _outcome(parse, text: str) -> float | str:
    try:
        return parse(text)
    except ValueError:
        return "ValueError"


@settings(max_examples=500, deadline=None)
@given(EPOCHS)
def test_a_timestamp_reads_back_as_strptime_reads_it(epoch):
    """A resume reads every row's start time back: the fixed-width path (3 to 4 us, against 13
    for strptime) must give strptime's very value."""
    text = utc_timestamp(epoch)
    assert parse_utc_timestamp(text) == _by_strptime(text)


ODD_TIMESTAMPS = [
    "2026-12-07T01:33:27Z", "2026-12-07T01:33:27.5Z", "2026-1-7T1:2:3.5Z", "2016-12-31T23:59:60Z", "2024-02-29T12:00:00.000Z",
    "2026-02-31T00:00:00.000Z", "2026-13-01T00:00:00Z", "2026-12-07T24:00:00Z", "2026-12-07 01:33:27Z", "nonsense", "",
    "٢٠٢٦-12-07T01:33:27Z",  # Arabic-Indic digits: \d would take them without re.ASCII
]  # fmt: skip


def test_other_texts_are_read_or_refused_as_strptime_does():
    for text in ODD_TIMESTAMPS:
        assert _outcome(parse_utc_timestamp, text) == _outcome(_by_strptime, text), text
