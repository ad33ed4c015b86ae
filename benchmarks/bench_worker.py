"""A worker's own cost per job, piece by piece: what each per-job promise costs the job thread.

``bench_dispatch.py`` prints the CPU per job that 0.8x joblib leaves (issue 14). This benchmark
shows where a worker's share goes. It runs the job thread's loop as a worker does (the runner
of ``worker.py`` over prepared batches of 512 no-op jobs, each batch's group then sent through a
real pipe, drained by a thread) on ``bench_dispatch.py``'s 20,000 jobs with 200-byte arguments,
best of 7 passes. Then it runs the loop again with one piece at a time replaced by a no-op, so
the difference is that piece's cost:

- the CPU time of the job (one ``os.times`` a job);
- restoring what the job may have changed for the next one (current folder, environment
  variables, signal handlers, an alarm, the standard streams);
- the output capture's start and end (which attribute what the job wrote to it);
- the result's CSV row;
- sending the batch's group of results to the runner.

What is left is the call itself and the bookkeeping around it. The loop runs in a forked child
process, since the output capture takes over descriptors 1 and 2 as in a worker. Figures are for
information only: machines are noisy.

    .venv/bin/python benchmarks/bench_worker.py
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from bench_dispatch import HEADER, make_pool

from jobsplit import worker
from jobsplit.config import Header, LogSettings
from jobsplit.messages import Batch
from jobsplit.pool import JobPool
from jobsplit.progress import ProgressBoard
from jobsplit.results import RowFormatter

GROUP = 512
"""Jobs a batch: the runner's largest, as no-op jobs get."""


def job(i: int, path: str, random_obj: Any, config: Any, progress: Any) -> int:
    return i


class _Unsent:
    def send(self, message: object) -> None:
        pass


def measure(jobs: int, passes: int, report: Connection) -> None:
    """In a forked child: the job thread's time per job, whole and without each piece."""
    pool = make_pool("noop", jobs)
    ids = JobPool(pool).ids_hex(range(jobs))
    board = ProgressBoard(multiprocessing.get_context("fork"), 1)
    setup = worker.WorkerSetup(job, {"jobsplit": {}}, Header(HEADER), "bench", "0" * 32, "0" * 12, time.time(), bytes(16), board, 0, LogSettings(), None)
    receiver, sender = multiprocessing.Pipe(duplex=False)
    threading.Thread(target=_drain, args=(receiver,), daemon=True).start()
    outbox = worker._Outbox(sender, RowFormatter(setup.header, setup.machine, setup.run_started, setup.digest, setup.code))
    capture = worker.OutputCapture(outbox.send_log, setup.log, None, [os.pipe(), os.pipe()])
    runner = worker._JobRunner(setup, 0, capture, outbox)

    def per_job() -> float:
        best = float("inf")
        for _ in range(passes):
            batches = [
                worker._prepare(Batch(list(range(first + 1, first + GROUP + 1)), list(range(first, first + GROUP)), ids[first : first + GROUP], pool[first : first + GROUP], None), setup.seed)
                for first in range(0, jobs, GROUP)
            ]  # fmt: skip
            revocations = worker._Revocations()
            start = time.perf_counter()
            for batch in batches:
                for ready in batch:
                    if revocations.start(ready.ticket, outbox):
                        runner(ready)
                outbox.flush()
            best = min(best, time.perf_counter() - start)
        return best / jobs

    def without(owner: object, **stand_ins: object) -> float:
        """The loop's time with ``owner``'s attributes replaced by no-op stand-ins."""
        kept = {name: getattr(owner, name) for name in stand_ins}
        for name, stand_in in stand_ins.items():
            setattr(owner, name, stand_in)
        try:
            return per_job()
        finally:
            for name, value in kept.items():
                setattr(owner, name, value)

    whole = per_job()
    pieces: dict[str, Callable[[], float]] = {
        "the CPU time (os.times)": lambda: without(worker, _cpu_seconds=lambda: 0.0),
        "restoring the job's surroundings": lambda: without(worker._JobRunner, _restore_surroundings=lambda self: None),
        "the output capture's start and end": lambda: without(capture, start_job=lambda job_id: None, end_job=lambda: None),
        "the row": lambda: without(outbox._rows, line=lambda *args: "0,0,0,0\n"),
        "sending the group": lambda: without(outbox, _results=_Unsent()),
    }
    report.send((whole, {name: whole - run() for name, run in pieces.items()}))


def _drain(receiver: Connection) -> None:
    try:
        while True:
            receiver.recv()
    except EOFError:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--passes", type=int, default=7)
    args = parser.parse_args()
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=measure, args=(args.jobs, args.passes, sender))
    child.start()
    whole, pieces = receiver.recv()
    child.join()
    print(f"{args.jobs:,} no-op jobs with 200-byte arguments, one worker's job thread in process, batches of {GROUP}, best of {args.passes}")
    print(f"  {'per job, the whole loop':40} {1e6 * whole:6.2f} us")
    for name, cost in pieces.items():
        print(f"  {name:40} {1e6 * cost:6.2f} us")
    print(f"  {'these pieces together':40} {1e6 * sum(pieces.values()):6.2f} us")
    print(f"  {'the call and the bookkeeping around it':40} {1e6 * (whole - sum(pieces.values())):6.2f} us")


if __name__ == "__main__":
    main()
