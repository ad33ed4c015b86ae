"""How long a machine takes for its share when each free core takes the next job."""

from __future__ import annotations

import heapq
from collections.abc import Iterable


def finish_time(costs_in_run_order: Iterable[float], speed: float, cores: int) -> float:
    """Makespan of greedy list scheduling: the next job goes to the core that frees up first."""
    free_at = [0.0] * cores
    for cost in costs_in_run_order:
        heapq.heapreplace(free_at, free_at[0] + cost / speed)
    return max(free_at)
