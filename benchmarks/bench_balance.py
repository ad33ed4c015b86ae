"""How evenly each split strategy loads a heterogeneous cluster: makespan / lower bound.

Hosts never talk to each other, so the plan alone decides when the last machine finishes.
This benchmark simulates 6 machines of different single-thread speed (0.6-2.0) and cores
(2-32). Job costs are log-normal (mu 0, sigma 0 = all equal, sigma 1 = heavy-tailed) and job
ids are random (16 bytes). For each strategy, every machine runs its share in the plan's run
order, each free core taking the next job (``jobsplit.plan.simulate.finish_time``, with the
true costs); the makespan is the latest machine's finish. It is divided by the lower bound

    max(total cost / total capacity, longest job / fastest speed),  capacity = speed x cores

which no schedule can beat (it is loose when there are fewer jobs than cores).

Strategies: ``quota``, ``rendezvous``, ``cost`` with exact hints, ``cost`` with noisy hints
(hint = cost x exp(N(0, noise)), log-normal noise, default 0.5), and the baseline the seed
tool uses: modulo partitioning that ignores capacity (job i -> machine i % M, pool order).
Each (n, sigma) cell is repeated with ``--seeds`` seeds; the table gives the median and the
max ratio. Target: at n = 1,000, sigma = 1, ``cost`` with exact hints <= 1.05 (median).

    .venv/bin/python benchmarks/bench_balance.py                        # the full table
    .venv/bin/python benchmarks/bench_balance.py --sizes 60 1000 --seeds 3
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time
from collections.abc import Callable, Sequence

from jobsplit.machines import Machine
from jobsplit.plan import PlanInput, make_plan
from jobsplit.plan.simulate import finish_time

MACHINES = (  # sorted by name, as load_machines returns them
    Machine("alpha", 2.0, 4),
    Machine("bravo", 1.6, 8),
    Machine("charlie", 1.2, 16),
    Machine("delta", 1.0, 32),
    Machine("echo", 0.8, 12),
    Machine("foxtrot", 0.6, 2),
)
TARGET_CELL = (1000, 1.0)
TARGET_COLUMN = "cost exact"
TARGET = 1.05

Splitter = Callable[[PlanInput], Sequence[Sequence[int]]]


def strategy(name: str) -> Splitter:
    return lambda plan_input: make_plan(name, plan_input).shares


def modulo(plan_input: PlanInput) -> list[range]:
    """The seed tool's split: job i to machine i % M, whatever the machines' capacities."""
    count = len(plan_input.machines)
    return [range(index, len(plan_input.ids), count) for index in range(count)]


def makespan(shares: Sequence[Sequence[int]], costs: Sequence[float], machines: Sequence[Machine]) -> float:
    """When the last machine finishes, each running its share in order, greedily on its cores."""
    return max(finish_time((costs[p] for p in share), m.speed, m.cores) for m, share in zip(machines, shares))


def lower_bound(costs: Sequence[float], machines: Sequence[Machine]) -> tuple[float, str]:
    """No schedule finishes sooner; also says which term binds (``work`` or ``longest``)."""
    work = sum(costs) / sum(m.capacity for m in machines)
    longest = max(costs) / max(m.speed for m in machines)
    return (work, "work") if work >= longest else (longest, "longest")


def run_cell(n: int, sigma: float, noise: float, seeds: int) -> tuple[dict[str, list[float]], list[str]]:
    """Makespan / lower bound of every strategy for ``seeds`` random pools of one size and spread."""
    ratios: dict[str, list[float]] = {}
    binding: list[str] = []
    for seed in range(seeds):
        rng = random.Random(f"bench_balance/{n}/{sigma}/{seed}")
        ids = [rng.randbytes(16) for _ in range(n)]
        costs = [rng.lognormvariate(0.0, sigma) for _ in range(n)]
        noisy = [cost * math.exp(rng.gauss(0.0, noise)) for cost in costs]
        plan_seed = rng.randbytes(16)
        bound, term = lower_bound(costs, MACHINES)
        binding.append(term)
        inputs: dict[str, tuple[Splitter, PlanInput]] = {
            "quota": (strategy("quota"), PlanInput(ids, MACHINES, plan_seed)),
            "rendezvous": (strategy("rendezvous"), PlanInput(ids, MACHINES, plan_seed)),
            "cost exact": (strategy("cost"), PlanInput(ids, MACHINES, plan_seed, costs)),
            "cost noisy": (strategy("cost"), PlanInput(ids, MACHINES, plan_seed, noisy)),
            "modulo": (modulo, PlanInput(ids, MACHINES, plan_seed)),
        }
        for column, (split, plan_input) in inputs.items():
            ratios.setdefault(column, []).append(makespan(split(plan_input), costs, MACHINES) / bound)
    return ratios, binding


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[60, 1000, 20000], help="pool sizes (default: 60 1000 20000)")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.0, 1.0], help="log-normal sigmas of job costs (default: 0 1)")
    parser.add_argument("--seeds", type=int, default=10, help="random pools per cell (default: 10)")
    parser.add_argument("--noise", type=float, default=0.5, help="sigma of the log-normal noise on cost hints (default: 0.5)")
    args = parser.parse_args()

    total_capacity = sum(m.capacity for m in MACHINES)
    print(f"bench_balance: makespan / lower bound, median (max) over {args.seeds} seeds per cell")
    print("machines: " + ", ".join(f"{m.name} {m.speed}x{m.cores}" for m in MACHINES), end="")
    print(f"  (total capacity {total_capacity:.1f}, {sum(m.cores for m in MACHINES)} cores)")
    print(f"job costs ~ lognormal(0, sigma); noisy hints = cost x exp(N(0, {args.noise})); modulo = job i -> machine i % {len(MACHINES)}\n")

    columns = ["quota", "rendezvous", "cost exact", "cost noisy", "modulo"]
    print(f"{'n':>6} {'sigma':>5}  {'bound':<8}" + "".join(f"{c:>16}" for c in columns) + f"{'time':>8}")
    target_median: float | None = None
    for n in args.sizes:
        for sigma in args.sigmas:
            start = time.perf_counter()
            ratios, binding = run_cell(n, sigma, args.noise, args.seeds)
            seconds = time.perf_counter() - start
            bound = binding[0] if len(set(binding)) == 1 else "mixed"
            cells = "".join(f"{f'{statistics.median(ratios[c]):.3f} ({max(ratios[c]):.3f})':>16}" for c in columns)
            print(f"{n:>6} {sigma:>5g}  {bound:<8}{cells}{seconds:>7.1f}s")
            if (n, sigma) == TARGET_CELL:
                target_median = statistics.median(ratios[TARGET_COLUMN])

    print("\nbound: which lower-bound term binds (work = total cost / total capacity, longest = longest job / fastest speed)")
    n, sigma = TARGET_CELL
    if target_median is None:
        print(f"target: n = {n:,}, sigma = {sigma:g} was not run; add it with --sizes/--sigmas")
    else:
        verdict = "PASS" if target_median <= TARGET else "MISS"
        print(f"target: {TARGET_COLUMN} at n = {n:,}, sigma = {sigma:g}: median {target_median:.3f}   <= {TARGET}   {verdict}")


if __name__ == "__main__":
    main()
