"""The one small protocol every splitting strategy implements."""

from __future__ import annotations

import hashlib
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

    def split(self, plan_input: PlanInput) -> list[list[int]]:
        """For each machine (in ``machines`` order), the pool positions of its jobs, in run order.

        Must be a pure function of ``plan_input``: no ``hash()``, no ``random``, no platform maths.
        """
        ...


def seeded_order(ids: Sequence[bytes], seed: bytes) -> list[int]:
    """Positions of ``ids`` ordered by SHA-256(seed, id): a shuffle every host agrees on,
    whatever the order of the pool."""
    primed = keyed_hasher("order", seed)

    def order_key(job_id: bytes) -> bytes:
        state = primed.copy()
        state.update(job_id)
        return state.digest()

    keys = list(map(order_key, ids))
    return sorted(range(len(keys)), key=keys.__getitem__)  # stable: equal keys (never) by position


def keyed_hasher(domain: str, *parts: bytes) -> hashlib._Hash:
    """A SHA-256 state primed with a domain and key parts; ``.copy()`` it per job."""
    state = hashlib.sha256(f"jobsplit/{domain}/v1\n".encode())
    for part in parts:
        state.update(len(part).to_bytes(4, "big") + part)
    return state
