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

``--live`` measures real runs instead (it needs ``redis-server``): three hosts on this machine
(processes of tests/frozen/balance_entry.py, 2 workers each) whose jobs sleep base x 1, 1.5
and 2, once with the static split of a machines.json that ignores those speeds and once with
``--balance`` through a local Redis. Makespan = first job start to last job end, read from the
journals; ideal = the least possible for the hosts' measured speeds and start times. Target:
``--balance`` <= 1.05 (median). It also times seeding a queue with 100,000 jobs.

    .venv/bin/python benchmarks/bench_balance.py --live                 # 600 jobs of 0.1 s x factor, 3 times
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

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


LIVE_TARGET = 1.05


def live(pool: int, base: float, repeats: int) -> None:
    """Static split (wrong weights) against --balance, as real processes; prints both ratios."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from balancehosts import FACTORS, check_outputs, make_cluster, makespan, run_hosts
    from components import RedisServer, find_program

    binary = find_program("redis-server")
    if binary is None:
        raise SystemExit("bench_balance --live needs redis-server (apt-get install redis-server)")
    print(f"bench_balance --live: 3 hosts x 2 workers, {pool} jobs of {base:g} s x {', '.join(f'{f:g}' for f in FACTORS.values())} ({', '.join(FACTORS)}); "
          "static split with machines.json weights 1:1:1 vs --balance (lease 2 s)\n")  # fmt: skip
    print(f"{'run':>4} {'static':>8} {'--balance':>10}   jobs per host with --balance")
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(binary, Path(tmp)).start()
        statics, dynamics = [], []
        try:
            for run in range(repeats):
                results = []
                for kind, url in (("static", None), ("balance", server.url)):
                    cluster = make_cluster(Path(tmp) / f"{kind}{run}", pool=pool, base=base)
                    run_hosts(cluster, url, timeout=max(600, 20 * pool * base))
                    check = check_outputs(cluster)
                    if check.lost or check.done_twice or check.merge_status:
                        raise SystemExit(f"{kind} run {run}: not every job exactly once: {check}")
                    results.append(makespan(cluster))
                static, dynamic = results
                statics.append(static.ratio)
                dynamics.append(dynamic.ratio)
                print(f"{run + 1:>4} {static.ratio:>8.3f} {dynamic.ratio:>10.3f}   {({m: n for m, (n, _) in dynamic.per_host.items()})}")
            print(f"\nmedian makespan / ideal: static {statistics.median(statics):.3f}, --balance {statistics.median(dynamics):.3f}   "
                  f"target --balance <= {LIVE_TARGET}   {'PASS' if statistics.median(dynamics) <= LIVE_TARGET else 'MISS'}")  # fmt: skip
            print(f"seeding a queue with 100,000 jobs (ids, seeded order, pipelined upload, atomic commit): {seed_time(server.url):.2f} s")
        finally:
            server.stop()


def seed_time(url: str, jobs: int = 100_000) -> float:
    """Seconds for the first host to seed a queue of ``jobs`` jobs, as a run does."""
    from jobsplit.balance import connect, parse_url
    from jobsplit.plan.base import seeded_order
    from jobsplit.sources.redis import RedisQueue

    class NoJournal:
        def hold(self, job_ids: Sequence[str]) -> dict[str, int]:
            return {}

        def unhold(self, job_ids: object) -> None:
            pass

        def supersede(self, job_ids: Sequence[str]) -> None:
            pass

        def states(self) -> Iterator[tuple[str, str]]:
            return iter(())

    rng = random.Random("bench_balance/seed")
    ids = [rng.randbytes(16) for _ in range(jobs)]
    began = time.perf_counter()
    queue = RedisQueue(
        connect(parse_url(url, "--balance")), digest=rng.randbytes(16).hex(), machine="bench", ids=[i.hex() for i in ids],
        seed_order=lambda: seeded_order(ids, b"seed"), order_name="seeded", lease=60, retries=0, retry_failed=False, workers=1,
        holdings=NoJournal(), say=lambda text: None,
    )  # fmt: skip
    queue.start()
    seconds = time.perf_counter() - began
    queue.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[60, 1000, 20000], help="pool sizes (default: 60 1000 20000)")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.0, 1.0], help="log-normal sigmas of job costs (default: 0 1)")
    parser.add_argument("--seeds", type=int, default=10, help="random pools per cell (default: 10)")
    parser.add_argument("--noise", type=float, default=0.5, help="sigma of the log-normal noise on cost hints (default: 0.5)")
    parser.add_argument("--live", action="store_true", help="run three real hosts, static split vs --balance (needs redis-server)")
    parser.add_argument("--pool", type=int, default=600, help="--live: jobs in the pool (default: 600)")
    parser.add_argument("--base", type=float, default=0.1, help="--live: seconds of a job on the fastest host (default: 0.1)")
    parser.add_argument("--repeats", type=int, default=3, help="--live: runs of each (default: 3)")
    args = parser.parse_args()
    if args.live:
        live(args.pool, args.base, args.repeats)
        return

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
