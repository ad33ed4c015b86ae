"""The one small protocol every splitting strategy implements."""

from __future__ import annotations

import hashlib
import struct
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ..machines import Machine


@dataclass(frozen=True)
class PlanInput:
    """Everything a strategy may look at; all of it is covered by the digest."""

    ids: Sequence[bytes]
    """Binary job ids, in pool order (positions index the pool)."""
    machines: Sequence[Machine]
    """Sorted by name."""
    seed: bytes
    costs: Sequence[float] | None = None
    """Estimated cost of each job, in pool order, when the entry gave ``cost=``."""


class Strategy(Protocol):
    name: str
    needs_costs: bool

    def split(self, plan_input: PlanInput) -> Sequence[Sequence[int]]:
        """For each machine (in ``machines`` order), the pool positions of its jobs, in run order.

        Must be a pure function of ``plan_input``: no ``hash()``, no ``random``, no platform maths.
        """
        ...


def seeded_order(ids: Sequence[bytes], seed: bytes) -> array[int]:
    """Positions of ``ids`` ordered by SHA-256(seed, id), equal keys (never seen) by position:
    a shuffle every host agrees on, whatever the order of the pool.

    Sorted bucket by bucket (by the key's first byte) from packed records of 16 key bytes and
    a position, so ten million jobs take 200 MB while sorting, not gigabytes of Python objects;
    records whose 16 bytes tie are ordered by their whole keys.
    """
    primed = keyed_hasher("order", seed)

    def order_key(job_id: bytes) -> bytes:
        state = primed.copy()
        state.update(job_id)
        return state.digest()

    record = struct.Struct(f">{_KEY_BYTES}sI").pack  # "16s" keeps a key's first 16 bytes
    buckets = [bytearray() for _ in range(256)]
    for position, job_id in enumerate(ids):
        key = order_key(job_id)
        buckets[key[0]] += record(key, position)
    order = array("I")
    for index, bucket in enumerate(buckets):
        packed = bytes(bucket)
        buckets[index] = bytearray()  # free as we go
        records = sorted(packed[i : i + _RECORD] for i in range(0, len(packed), _RECORD))
        positions = [int.from_bytes(record[_KEY_BYTES:], "big") for record in records]
        if len({record[:_KEY_BYTES] for record in records}) < len(records):
            positions.sort(key=lambda p: (order_key(ids[p]), p))  # a tie in 128 bits: the whole keys decide
        order.extend(positions)
    return order


_KEY_BYTES = 16
_RECORD = _KEY_BYTES + 4


def keyed_hasher(domain: str, *parts: bytes) -> hashlib._Hash:
    """A SHA-256 state primed with a domain and key parts; ``.copy()`` it per job."""
    state = hashlib.sha256(f"jobsplit/{domain}/v1\n".encode())
    for part in parts:
        state.update(len(part).to_bytes(4, "big") + part)
    return state
