"""From identity texts to job ids, and the ids in byte order that the digest covers.

These steps need a job's text, never the job itself, so the id helper (see idhelper) runs them
in a second process as well as this one runs them here: both must compute the very same ids.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import itertools
import mmap
import operator
import struct
from collections.abc import Callable, Iterable, Sequence
from typing import Any

ID_BYTES = 16
"""Job ids are the first 128 bits of SHA-256: 32 hex characters, no collisions in practice."""

ID_DOMAIN = b"jobsplit/job/v1\n"
"""What every id's hashed text starts with, before the job's canonical JSON."""

GROUPS = 256
"""Ids are grouped by their first byte before sorting: one group's ids are Python objects at once."""

ONE_BLOCK = 55
"""The longest message SHA-256 hashes in one block (64 bytes, less its padding)."""

_digest = operator.methodcaller("digest")


def _own_sha256() -> Callable[[bytes], Any]:
    """CPython's own SHA-256 (``_sha2`` from 3.12, ``_sha256`` before), where there is one.

    For a message of one block it is faster than OpenSSL's (0.55 against 0.75 us a job here),
    whose set-up of each new hash object costs more than hashing the block; for longer
    messages OpenSSL is faster. The digest is SHA-256's either way.
    """
    for name in ("_sha2", "_sha256"):
        try:
            return importlib.import_module(name).sha256  # type: ignore[no-any-return]
        except (ImportError, AttributeError):
            continue
    return hashlib.sha256


short_sha256 = _own_sha256()


def texts_of(chunk: bytes) -> list[bytes]:
    """A chunk's hashed texts: each is followed by a NUL, which JSON text never holds (it escapes it)."""
    texts = chunk.split(b"\0")
    texts.pop()  # after the last NUL
    return texts


def hash_chunk(chunk: bytes) -> tuple[bytes, ...]:
    """The ids of a chunk's texts (see texts_of), in the chunk's order: C-level passes, and one
    struct call cutting every 32-byte digest to its first 16 bytes."""
    texts = texts_of(chunk)
    sha256 = short_sha256 if max(map(len, texts)) <= ONE_BLOCK else hashlib.sha256
    return _cutter(len(texts)).unpack(b"".join(map(_digest, map(sha256, texts))))


@functools.lru_cache(maxsize=2)  # every chunk but the last has the same size
def _cutter(count: int) -> struct.Struct:
    return struct.Struct(f"{ID_BYTES}s{32 - ID_BYTES}x" * count)


class IdGroups:
    """Ids grouped by first byte, packed, so that sorting them holds only one group's ids as
    Python objects at once (a list of ten million ``bytes`` would take more than half a gigabyte)."""

    def __init__(self) -> None:
        self._groups = [bytearray() for _ in range(GROUPS)]

    def add(self, ids: Iterable[bytes]) -> None:
        groups = self._groups
        for one in ids:
            groups[one[0]] += one

    def offsets(self) -> list[int]:
        """Where each group starts in the sorted ids, and where the last ends."""
        return list(itertools.accumulate(map(len, self._groups), initial=0))

    def move_into(self, into: bytearray | mmap.mmap, offsets: Sequence[int]) -> None:
        """Each group, unsorted, at its place in ``into`` (see offsets), freed here as it goes."""
        for first, start in enumerate(offsets[:-1]):
            group, self._groups[first] = self._groups[first], bytearray()
            into[start : start + len(group)] = group


def sort_groups(ids: bytearray | mmap.mmap, offsets: Sequence[int]) -> bytes | None:
    """Sort, in place, each group of ``ids`` between two consecutive ``offsets``; the first
    repeated id in byte order, or None."""
    repeated = None
    for start, end in itertools.pairwise(offsets):
        group = list(struct.Struct(f"{ID_BYTES}s" * ((end - start) // ID_BYTES)).unpack(ids[start:end]))  # not struct.unpack: its cache would keep each format
        group.sort()
        ids[start:end] = b"".join(group)
        if repeated is None and any(map(operator.eq, group, itertools.islice(group, 1, None))):
            repeated = next(a for a, b in itertools.pairwise(group) if a == b)
    return repeated
