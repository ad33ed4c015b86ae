"""``rendezvous``: weighted rendezvous (highest random weight) hashing.

Each job goes to the machine with the highest score capacity / -ln(u), u being a hash of
(seed, machine, job). A job's scores on other machines do not depend on which machines are
listed, so adding or removing one machine moves only the jobs that machine gains or loses.
The logarithm is computed from IEEE-exact operations so every platform agrees to the bit.
"""

from __future__ import annotations

import math

from .base import PlanInput, keyed_hasher

_LN2 = 0.6931471805599453
_TERMS = range(1, 40, 2)  # atanh series to |z| <= 1/3: error below 1e-19


class RendezvousStrategy:
    name = "rendezvous"
    needs_costs = False

    def split(self, plan_input: PlanInput) -> list[list[int]]:
        machines = plan_input.machines
        primed = [keyed_hasher("rendezvous", plan_input.seed, m.name.encode()) for m in machines]
        capacities = [m.capacity for m in machines]
        shares: list[list[int]] = [[] for _ in machines]
        for position, job_id in enumerate(plan_input.ids):
            best, best_score = 0, -1.0
            for index, state in enumerate(primed):
                state = state.copy()
                state.update(job_id)
                score = capacities[index] / neg_log(unit_interval(state.digest()))
                if score > best_score:
                    best, best_score = index, score
            shares[best].append(position)
        return shares


def unit_interval(digest: bytes) -> float:
    """53 bits of a digest as a float strictly inside (0, 1)."""
    return ((int.from_bytes(digest[:8], "big") >> 11) + 0.5) / 2.0**53


def neg_log(u: float) -> float:
    """-ln(u) using only +, -, *, / (correctly rounded everywhere) and exact frexp, not libm."""
    mantissa, exponent = math.frexp(u)  # u = mantissa * 2**exponent, mantissa in [0.5, 1)
    z = (mantissa - 1.0) / (mantissa + 1.0)
    z2, term, series = z * z, z, 0.0
    for k in _TERMS:
        series += term / k
        term *= z2
    return -(2.0 * series + exponent * _LN2)
