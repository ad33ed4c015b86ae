"""``quota``: a seeded shuffle cut into blocks sized by each machine's capacity.

Jobs are ordered by SHA-256(seed, job id), so every machine's share is a random sample of
the pool (a slow or lost machine delays all parts of a parameter grid evenly, not one corner).
Block sizes are largest-remainder quotas of speed x cores, computed in exact fractions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

from .base import PlanInput, seeded_order


class QuotaStrategy:
    name = "quota"
    needs_costs = False

    def split(self, plan_input: PlanInput) -> Sequence[Sequence[int]]:
        order = seeded_order(plan_input.ids, plan_input.seed)
        shares, start = [], 0
        for size in quotas(len(order), [Fraction(m.speed) * m.cores for m in plan_input.machines]):
            shares.append(order[start : start + size])
            start += size
        return shares


def quotas(total: int, weights: list[Fraction]) -> list[int]:
    """Largest-remainder apportionment of ``total`` items: each within 1 of its exact quota.

    Ties between equal remainders go to the earlier machine (machines are sorted by name).
    """
    weight_sum = sum(weights)
    exact = [total * w / weight_sum for w in weights]
    sizes = [math.floor(q) for q in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (sizes[i] - exact[i], i))
    for i in by_remainder[: total - sum(sizes)]:
        sizes[i] += 1
    return sizes
