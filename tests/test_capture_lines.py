"""How a worker cuts what a job writes into log lines (``capture._Pipe``).

A line redrawn in place (a progress bar: a carriage return, then the whole line again) is logged
from its last carriage return on; an unfinished line is held up to ``MAX_LINE`` bytes, then logged
in pieces. However the output arrives (one byte or 64 KiB at a time), the lines are the same.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobsplit import capture
from jobsplit.capture import _Pipe


def as_shown(line: bytes) -> bytes:
    """A line (no line feed) as it is logged: from its last carriage return on, none at the end."""
    return line.rstrip(b"\r").rsplit(b"\r", 1)[-1]


def logged(chunks: list[bytes]) -> list[bytes]:
    """The lines a pipe logs for these chunks, its unfinished line last (as at a job's end)."""
    pipe = _Pipe("stdout", "INFO")
    lines = [line for chunk in chunks for line in pipe.take(chunk)]
    if pipe.partial:
        lines.append(pipe.rest())
    return [line.rstrip(b"\r") for line in lines]  # what _emit strips


def cut(text: bytes, at: set[int]) -> list[bytes]:
    bounds = sorted({0, len(text), *at})
    return [text[a:b] for a, b in zip(bounds, bounds[1:])]


SMALL = 16
"""MAX_LINE for the tests of pieces."""
OUTPUT = st.lists(st.sampled_from([b"a", b"bc", b"\n", b"\r", b"\r\n", b"\r\r"]), max_size=40).map(b"".join)


@settings(deadline=None)
@given(OUTPUT, st.data())
def test_lines_are_the_same_however_the_output_arrives(text, data):
    at = data.draw(st.sets(st.integers(0, len(text))))
    *complete, last = text.split(b"\n")
    expected = [as_shown(line) for line in complete] + ([as_shown(last)] if last else [])
    assert logged(cut(text, at)) == expected


def test_a_progress_bar_is_logged_as_its_last_state():
    bar = b"".join(b"\r%3d/200 |%-20s|" % (k, b"#" * (k // 10)) for k in range(1, 201)) + b"\r\n"
    assert logged([bar[i : i + 7] for i in range(0, len(bar), 7)]) == [b"200/200 |####################|"]


def test_windows_line_ends_and_bare_carriage_returns():
    assert logged([b"one\r\ntwo\r", b"\n", b"three\r"]) == [b"one", b"two", b"three"]
    assert logged([b"50%\r", b"100%\r", b"\ndone\n"]) == [b"100%", b"done"]


@settings(deadline=None)
@given(st.lists(st.sampled_from([b"abcdefg", b"hij", b"\n"]), max_size=30).map(b"".join), st.data())
def test_long_lines_come_in_pieces_of_max_line_however_the_output_arrives(text, data):
    at = data.draw(st.sets(st.integers(0, len(text))))
    *complete, last = text.split(b"\n")
    expected = [line[i : i + SMALL] for line in complete for i in range(0, len(line) or 1, SMALL)]
    expected += [last[i : i + SMALL] for i in range(0, len(last), SMALL)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(capture, "MAX_LINE", SMALL)
        pipe = _Pipe("stdout", "INFO")
        pieces = []
        for chunk in cut(text, at):
            pieces += pipe.take(chunk)
            assert len(pipe.partial) <= SMALL  # never more held
        if pipe.partial:
            pieces.append(pipe.rest())
    assert pieces == expected


@settings(deadline=None)
@given(st.lists(st.sampled_from(["abc", "é", "€", "😀", "\n"]), max_size=40).map("".join), st.data())
def test_pieces_of_a_long_line_never_cut_a_character_in_two(text, data):
    """Each piece is whole UTF-8, at most MAX_LINE bytes and at most three bytes short of it
    (but the last of a line), and the pieces are the same however the output arrives."""
    raw = text.encode()
    at = data.draw(st.sets(st.integers(0, len(raw))))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(capture, "MAX_LINE", SMALL)
        pieces_of = [logged(cut(raw, at)), logged([raw])]
    assert pieces_of[0] == pieces_of[1]
    pieces = pieces_of[0]
    for piece in pieces:
        piece.decode("utf-8")  # raises if a character was cut
        assert len(piece) <= SMALL
    assert b"".join(pieces) == raw.replace(b"\n", b"")
    lines = raw.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    assert len(pieces) >= len(lines)


def test_binary_junk_is_cut_at_most_three_bytes_short():
    """Bytes that are not UTF-8 (continuation bytes in a row) are cut all the same."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(capture, "MAX_LINE", SMALL)
        pieces = logged([b"\x80" * 50])
    assert [len(piece) for piece in pieces] == [13, 13, 13, 11]


def test_a_line_written_in_small_pieces_is_never_copied_whole_again():
    """The unfinished line grows in place: appending to it never copies what it holds (a copy per
    write made a job that wrote 32 MB of dots 100 bytes at a time take 20 s instead of 0.4)."""
    pipe = _Pipe("stdout", "INFO")
    held = pipe.partial
    for _ in range(1000):
        assert pipe.take(b"." * 100) == []
        assert pipe.partial is held  # the same buffer, extended
    assert len(held) == 100_000
