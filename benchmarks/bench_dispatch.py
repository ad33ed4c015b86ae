"""Dispatch overhead: many tiny jobs through jobsplit and through the standard pools.

Every runner gets the same 20,000 no-op jobs on the same number of workers, pool start-up
included; the figure is the median of several rounds measured in this one run (machines are
noisy, so only ratios between runners of the same run mean anything).

jobsplit is measured three ways:
- ``jobsplit runner``: the worker pool from start to the last result committed, with results
  (CSV rows with timings) and the progress board on, journal on: the counterpart of Pool.map;
- ``jobsplit runner, no journal``: the same with a journal that stores nothing, to show what
  durability costs;
- ``jobsplit run command``: the whole ``run`` command in-process (journal creation, resume
  checks, display) after planning (``bench_plan.py`` measures planning).
A second table shows the journal's cost on 10 ms jobs, where it should be lost in the noise.

Targets (issue 3/4): runner <= 0.5x joblib and <= 3x Pool.map; journal adds <= 10% on 10 ms jobs.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from jobsplit.config import Header, JobConfig, LogSettings
from jobsplit.pool import JobPool
from jobsplit.progress import ProgressBoard
from jobsplit.project import load_project
from jobsplit.recorder import Recorder
from jobsplit.results import ResultsFile, csv_header_line
from jobsplit.runner import Runner
from jobsplit.session import RunRequest, run_share
from jobsplit.source import StaticShare, Task
from jobsplit.state import Journal
from jobsplit.worker import WorkerSetup

HEADER = Header(("Run Start Time", "Job Running Time", "Job Start Time", "value"))


def noop(i: int) -> int:
    return i


def job(i: int, random_obj: object, config: object, progress: object) -> int:
    return i


def sleeper(i: int, random_obj: object, config: object, progress: object) -> int:
    time.sleep(0.01)
    return i


class _NoJournal:
    """Stands in for the journal to measure what the real one costs."""

    def commit(self, run: int, records: object, running: object) -> None:
        pass


def run_jobsplit(fn: Callable[..., int], n: int, workers: int, journal_on: bool, method: str) -> float:
    """The runner alone: workers started, every job run, every result recorded."""
    context = multiprocessing.get_context(method)
    pool = JobPool([(i,) for i in range(n)])
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        start = time.perf_counter()
        ids = [pool.id_hex(p) for p in range(n)]
        journal = Journal(out / "journal.sqlite") if journal_on else None
        if journal is not None:
            journal.initialize({"digest": "bench"}, ids)
            run = journal.begin_run(workers)
        else:
            run = 0
        results = ResultsFile(out / "results.csv", csv_header_line(HEADER), [])
        board = ProgressBoard(context, workers)
        setup = WorkerSetup(fn, JobConfig().as_document(), HEADER, "bench", time.time(), b"seed", board, 0, LogSettings())
        source = StaticShare(Task(seq, seq, ids[seq]) for seq in range(n))
        runner: Runner
        recorder = Recorder(journal or _NoJournal(), results, run, running=lambda: runner.running_seqs())  # type: ignore[arg-type]
        runner = Runner(setup, pool, source, recorder, workers=workers, context=context)
        assert runner.run(lambda: False)
        elapsed = time.perf_counter() - start
        results.close()
        if journal is not None:
            assert journal.counts()["done"] == n
            journal.close()
    assert runner.counts.done == n
    return elapsed


def run_command(n: int, workers: int, method: str) -> float:
    """The whole run command after planning: journal set-up, run, summary."""
    with tempfile.TemporaryDirectory() as tmp:
        config_dir = Path(tmp)
        (config_dir / "config.ini").write_text("[jobsplit]\n")
        (config_dir / "header.csv").write_text(",".join(HEADER.columns) + "\n")
        (config_dir / "machines.json").write_text(f'{{"bench": [1, {workers}]}}')
        project = load_project(JobPool([(i,) for i in range(n)]), config_dir)
        request = RunRequest(machine="bench", yes=True, out=config_dir / "out", console="plain", start_method=method, nice=0)
        from rich.console import Console

        quiet = Console(file=open("/dev/null", "w"), stderr=False)
        start = time.perf_counter()
        status = run_share(project, job, request, quiet)
        elapsed = time.perf_counter() - start
        assert status == 0, status
    return elapsed


def pool_map(n: int, workers: int, method: str) -> float:
    start = time.perf_counter()
    with multiprocessing.get_context(method).Pool(workers) as pool:
        pool.map(noop, range(n))
    return time.perf_counter() - start


def pool_imap_unordered(n: int, workers: int, method: str) -> float:
    start = time.perf_counter()
    with multiprocessing.get_context(method).Pool(workers) as pool:
        for _ in pool.imap_unordered(noop, range(n), chunksize=1):
            pass
    return time.perf_counter() - start


def executor_map(n: int, workers: int, method: str) -> float:
    start = time.perf_counter()
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method)) as executor:
        list(executor.map(noop, range(n)))
    return time.perf_counter() - start


def joblib_parallel(n: int, workers: int, method: str) -> float:
    from joblib import Parallel, delayed

    start = time.perf_counter()
    Parallel(n_jobs=workers)(delayed(noop)(i) for i in range(n))
    return time.perf_counter() - start


def median_of(rounds: int, measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--start-method", default="fork", choices=multiprocessing.get_all_start_methods())
    parser.add_argument("--slow-jobs", type=int, default=400, help="10 ms jobs for the journal-cost table (0: skip)")
    args = parser.parse_args()
    n, w, m, rounds = args.jobs, args.workers, args.start_method, args.rounds
    runners: dict[str, Callable[[], float]] = {
        "jobsplit runner": lambda: run_jobsplit(job, n, w, True, m),
        "jobsplit runner, no journal": lambda: run_jobsplit(job, n, w, False, m),
        "jobsplit run command": lambda: run_command(n, w, m),
        "Pool.map (auto chunksize)": lambda: pool_map(n, w, m),
        "Pool.imap_unordered(chunksize=1)": lambda: pool_imap_unordered(n, w, m),
        "ProcessPoolExecutor.map": lambda: executor_map(n, w, m),
    }
    try:
        import joblib  # noqa: F401

        runners["joblib Parallel"] = lambda: joblib_parallel(n, w, m)
    except ImportError:
        print("(joblib is not installed: skipped)")
    print(f"{n} no-op jobs, {w} workers, start method {m}, median of {rounds} (Python {sys.version.split()[0]})")
    seconds = {name: median_of(rounds, measure) for name, measure in runners.items()}
    ours = seconds["jobsplit runner"]
    print(f"{'runner':36} {'seconds':>9} {'us/job':>8} {'jobsplit runner / this':>24}")
    for name, value in seconds.items():
        print(f"{name:36} {value:9.3f} {1e6 * value / n:8.1f} {ours / value:24.2f}")
    checks = [("jobsplit runner <= 3x Pool.map", ours <= 3 * seconds["Pool.map (auto chunksize)"])]
    if "joblib Parallel" in seconds:
        checks.append(("jobsplit runner <= 0.5x joblib", ours <= 0.5 * seconds["joblib Parallel"]))
    if args.slow_jobs:
        slow_on = median_of(rounds, lambda: run_jobsplit(sleeper, args.slow_jobs, w, True, m))
        slow_off = median_of(rounds, lambda: run_jobsplit(sleeper, args.slow_jobs, w, False, m))
        added = slow_on / slow_off - 1
        print(f"\n{args.slow_jobs} jobs of 10 ms: journal on {slow_on:.3f} s, off {slow_off:.3f} s: the journal adds {100 * added:+.1f}%")
        checks.append(("journal adds <= 10% on 10 ms jobs", added <= 0.10))
    print()
    for name, ok in checks:
        print(f"{'PASS' if ok else 'MISS'}  {name}")


if __name__ == "__main__":
    main()
