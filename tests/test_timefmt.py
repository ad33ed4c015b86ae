"""Timestamps (``timefmt``): the text every file of jobsplit writes, whatever the cache holds."""

from __future__ import annotations

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
