"""Integers of any length (``jobsplit.digits``): Python refuses str() and int() of more than
4,300 digits by default; jobsplit lifts that limit for its own conversions only."""

from __future__ import annotations

import sys
import threading

import pytest

from jobsplit.digits import every_digit, int_of_text, int_text


def test_whole_integers_both_ways_and_the_limit_left_as_it_was():
    huge = -(10**6000) - 1
    limit = sys.get_int_max_str_digits()
    text = int_text(huge)
    assert len(text) == 6002 and int_of_text(text) == huge
    assert int_text(12) == "12" and int_of_text("007") == 7
    with pytest.raises(ValueError):
        int_of_text("12a")  # not a number: still an error
    assert sys.get_int_max_str_digits() == limit


def test_blocks_that_overlap_in_two_threads_keep_the_limit_lifted_until_the_last_ends():
    """A worker's task reader (a huge argument's text) and its job thread (a huge result) may
    convert at once: the first block to end must not put the limit back under the other."""
    limit = sys.get_int_max_str_digits()
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: list[str] = []

    def second() -> None:
        first_in.wait()
        with every_digit():
            second_in.set()
            first_out.wait()
            seen.append(str(10**5000))  # raises if the first block's end restored the limit

    thread = threading.Thread(target=second)
    thread.start()
    with every_digit():
        first_in.set()
        second_in.wait()
    first_out.set()
    thread.join()
    assert len(seen) == 1 and len(seen[0]) == 5001
    assert sys.get_int_max_str_digits() == limit


def _convert_in_child() -> None:
    assert len(int_text(10**5000)) == 5001


def test_a_forked_worker_converts_whatever_lock_its_parent_held():
    """A worker forked while another thread of the runner held the lock (for a moment) must not
    wait for ever on its copy of it."""
    import multiprocessing

    from jobsplit import digits

    with digits._lock:  # as another thread of the parent, at the fork
        child = multiprocessing.get_context("fork").Process(target=_convert_in_child)
        child.start()
        child.join(30)
    if child.exitcode is None:
        child.kill()
        child.join()
    assert child.exitcode == 0
