"""``cost``: longest-processing-time-first across every core of every machine.

Given an estimated cost per job, jobs are taken from the most to the least expensive (ties by
job id) and each goes to the core, on any machine, where it would finish first (cost / speed
after that core's current load). Each machine then runs its share in that same order, so its
own greedy scheduling reproduces the planned one.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from .base import PlanInput


class CostStrategy:
    name = "cost"
    needs_costs = True

    def split(self, plan_input: PlanInput) -> Sequence[Sequence[int]]:
        costs, ids, machines = plan_input.costs, plan_input.ids, plan_input.machines
        assert costs is not None, "the cost strategy needs costs (checked by the caller)"
        by_id = sorted(range(len(ids)), key=ids.__getitem__)
        order = sorted(by_id, key=costs.__getitem__, reverse=True)  # stable: equal costs by job id
        core_loads = [[0.0] * m.cores for m in machines]  # a list of zeros is a valid heap
        speeds = [m.speed for m in machines]
        shares: list[list[int]] = [[] for _ in machines]
        for position in order:
            cost = costs[position]
            best, best_finish = 0, core_loads[0][0] + cost / speeds[0]
            for index in range(1, len(machines)):
                finish = core_loads[index][0] + cost / speeds[index]
                if finish < best_finish:
                    best, best_finish = index, finish
            heapq.heapreplace(core_loads[best], best_finish)
            shares[best].append(position)
        return shares
