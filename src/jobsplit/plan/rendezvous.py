"""``rendezvous``: weighted rendezvous (highest random weight) hashing.

Each job goes to the machine with the highest score capacity / -ln(u), u being a hash of
(seed, machine, job). A job's scores on other machines do not depend on which machines are
listed, so adding or removing one machine moves only the jobs that machine gains or loses.
Each machine runs its share in the same seeded order as ``quota``.
Near-ties are decided by a logarithm computed from IEEE-exact operations, so every
platform picks the same machine even where libm's last bit differs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .base import PlanInput, keyed_hasher, seeded_order

_LN2 = 0.6931471805599453
_TERMS = range(1, 40, 2)  # atanh series to |z| <= 1/3: error below 1e-19
_NEAR = 1e-9
"""Scores this close (relatively) are compared exactly: far beyond libm's 1-ulp differences."""


class RendezvousStrategy:
    name = "rendezvous"
    needs_costs = False

    def split(self, plan_input: PlanInput) -> Sequence[Sequence[int]]:
        machines, ids = plan_input.machines, plan_input.ids
        primed = [keyed_hasher("rendezvous", plan_input.seed, m.name.encode()) for m in machines]
        capacities = [m.capacity for m in machines]
        shares: list[list[int]] = [[] for _ in machines]
        for position in seeded_order(ids, plan_input.seed):
            units = []
            for state in primed:
                state = state.copy()
                state.update(ids[position])
                units.append(unit_interval(state.digest()))
            shares[_winner(capacities, units)].append(position)
        return shares


def _winner(capacities: list[float], units: list[float]) -> int:
    """The machine with the highest score; libm's log picks it unless two scores nearly tie,
    and then the exact, platform-independent ``neg_log`` decides (ties: the first machine)."""
    scores = [c / -math.log(u) for c, u in zip(capacities, units)]
    best = max(scores)
    if sum(score >= best * (1 - _NEAR) for score in scores) > 1:
        scores = [c / neg_log(u) for c, u in zip(capacities, units)]
        best = max(scores)
    return scores.index(best)


def unit_interval(digest: bytes) -> float:
    """52 bits of a digest as a float strictly inside (0, 1): (k + 0.5) / 2**52 is exact."""
    return ((int.from_bytes(digest[:8], "big") >> 12) + 0.5) / 2.0**52


def neg_log(u: float) -> float:
    """-ln(u) using only +, -, *, / (correctly rounded everywhere) and exact frexp, not libm."""
    mantissa, exponent = math.frexp(u)  # u = mantissa * 2**exponent, mantissa in [0.5, 1)
    z = (mantissa - 1.0) / (mantissa + 1.0)
    z2, term, series = z * z, z, 0.0
    for k in _TERMS:
        series += term / k
        term *= z2
    return -(2.0 * series + exponent * _LN2)
