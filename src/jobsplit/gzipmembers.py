"""The complete gzip members of a log: where a damaged one ends, and the next complete one begins.

A machine log is gzip members appended one per flush. A crash, a power loss or a copy taken
mid-write leaves its last member cut short, or its tail filled with zeros; a run resumed after
that (by an earlier jobsplit) appended whole members behind the damage. A member is complete
when zlib reaches its end and its CRC and length check: nothing weaker tells a member's text
from what a deflate stream cut short makes of the bytes that follow it (garbled lines).
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Generator
from typing import BinaryIO

HEADER = b"\x1f\x8b\x08"
"""How every gzip member begins (magic, deflate): where one may start."""
READ_SIZE = 1 << 18
"""Compressed bytes read at a time."""
OUT_SIZE = 1 << 20
"""Decompressed bytes made at a time: a member of repeated text inflates a thousandfold."""


def inflate(file: BinaryIO, start: int) -> Generator[bytes, None, int | None]:
    """The text of the member at ``start``, piece by piece; returns where the member ends, or
    None when the file ends inside it. A damaged member raises ``zlib.error`` where zlib sees it
    (its CRC at the latest): the text given before then may be garbage."""
    file.seek(start)
    decompressor = zlib.decompressobj(wbits=31)
    while not decompressor.eof:
        data = decompressor.unconsumed_tail or file.read(READ_SIZE)
        out = decompressor.decompress(data, OUT_SIZE)  # no data: what zlib still holds
        if not data and not out:
            return None
        if out:
            yield out
    return file.tell() - len(decompressor.unused_data) - len(decompressor.unconsumed_tail)


def member_end(file: BinaryIO, start: int) -> int | None:
    """Where the member at ``start`` ends, if it is complete (None: cut short, or damaged)."""
    member = inflate(file, start)
    try:
        while True:
            next(member)
    except StopIteration as done:
        end: int | None = done.value
        return end
    except zlib.error:
        return None


def next_member(file: BinaryIO, after: int) -> int | None:
    """Where the first complete member at or after ``after`` begins (None: there is none)."""
    at = after
    while True:
        file.seek(at)
        block = file.read(READ_SIZE)
        if len(block) < len(HEADER):
            return None
        found = block.find(HEADER)
        if found < 0:
            at += len(block) - len(HEADER) + 1  # a header across the blocks' border is found in the next
            continue
        if member_end(file, at + found) is not None:
            return at + found
        at += found + 1


def torn_end(file: BinaryIO) -> int | None:
    """Where the damaged end of the file begins, or None if it ends with a complete member.

    Cheap whatever the log's size: the candidate headers are tried from the file's end back,
    each decompressing to the end of its member at most, until a complete member is found (the
    last, in a sound log). Damage before that member, left by an earlier jobsplit, is not
    looked for: the readers skip it, and what is appended after a complete member is readable."""
    size = os.fstat(file.fileno()).st_size
    below = size  # candidates at or beyond this offset have been tried
    while below > 0:
        low = max(0, below - READ_SIZE)
        file.seek(low)
        block = file.read(below - low + len(HEADER) - 1)
        at = block.rfind(HEADER, 0, below - low + len(HEADER) - 1)
        while at >= 0:
            end = member_end(file, low + at)
            if end is not None:
                return None if end == size else end
            at = block.rfind(HEADER, 0, at + len(HEADER) - 1)
        below = low
    return 0 if size else None
