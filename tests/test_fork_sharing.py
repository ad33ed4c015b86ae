"""Forked workers keep sharing the runner's memory: their garbage collector leaves what they
inherited alone (``links._start_with_frozen_heap``).

Without it, a worker's first full collection writes to the header of every object it inherited
that the collector tracks (lists, dicts, instances: a pool of lists, say), and the kernel copies
every page that holds one, in every worker.
"""

from __future__ import annotations

import csv
import gc
import multiprocessing
import sys
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

import pytest

from conftest import run_entry, write_config_dir
from jobsplit.links import _start_with_frozen_heap
from runhelpers import run_args, run_env

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not Path("/proc/self/smaps_rollup").exists(),
    reason="reads a process's private memory from /proc/self/smaps_rollup (Linux)",
)

BALLAST = 300_000
"""Two-item lists the runner holds when its workers start: some 40 MB the collector tracks."""


def private_mib() -> float:
    """This process's memory that no other process shares (pages it wrote since it forked)."""
    with open("/proc/self/smaps_rollup") as f:
        return sum(int(line.split()[1]) for line in f if line.startswith(("Private_Dirty:", "Private_Clean:"))) / 1024


def _collect_and_report(sender: Connection) -> None:
    gc.collect()
    sender.send(private_mib())


def _private_after_collection(start: Callable[[BaseProcess], None]) -> float:
    """A forked child's private memory after a full collection, started by ``start``."""
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_collect_and_report, args=(sender,))
    start(child)
    value: float = receiver.recv()
    child.join()
    return value


def test_a_forked_child_does_not_copy_what_it_inherited_and_the_parent_collects_as_before() -> None:
    ballast = [[i, str(i)] for i in range(BALLAST)]
    copied = _private_after_collection(lambda child: child.start())
    shared = _private_after_collection(_start_with_frozen_heap)
    # The control shows the measure sees the copy at all; then the frozen start must avoid it.
    assert copied > 25, f"a plain fork's child copied only {copied:.1f} MiB: this measure cannot tell"
    assert shared < copied / 4, f"the worker's start left {shared:.1f} MiB private after a collection (a plain fork: {copied:.1f})"
    assert gc.get_freeze_count() == 0, "the runner's own objects stay under its collector"
    del ballast


def test_what_the_jobs_code_froze_stays_frozen() -> None:
    gc.freeze()  # as code that forks by itself may do before calling jobsplit.main
    try:
        frozen = gc.get_freeze_count()
        assert frozen > 0
        _private_after_collection(_start_with_frozen_heap)
        assert gc.get_freeze_count() >= frozen, "starting a worker unfroze the objects the job's code had frozen"
    finally:
        gc.unfreeze()


ENTRY = r"""
import gc
import jobsplit

BALLAST = [[i, str(i)] for i in range({ballast})]  # held by the runner when its workers fork


def private_mib():
    with open("/proc/self/smaps_rollup") as f:
        return sum(int(line.split()[1]) for line in f if line.startswith(("Private_Dirty:", "Private_Clean:"))) / 1024


def job(i, random_obj, config, progress):
    gc.collect()
    return round(private_mib(), 1)


if __name__ == "__main__":
    jobsplit.main(job, [(i,) for i in range(4)])
"""


def test_a_runs_forked_workers_share_the_runners_memory_after_a_full_collection(tmp_path: Path) -> None:
    config_dir = write_config_dir(tmp_path / "cfg", header=("Run Start Time", "Job Running Time", "Job Start Time", "Private MiB"), machines={"solo": [1.0, 2]})
    entry = tmp_path / "entry.py"
    entry.write_text(ENTRY.replace("{ballast}", str(BALLAST)), encoding="utf-8")
    out = tmp_path / "out"
    result = run_entry(entry, *run_args(config_dir, out, "--start-method", "fork"), env=run_env(tmp_path), cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    with open(out / "solo" / "results.csv", newline="", encoding="utf-8") as f:
        private = [float(row["Private MiB"]) for row in csv.DictReader(f)]
    assert len(private) == 4
    # 300,000 two-item lists take about 40 MiB; a worker's own allocations, a few.
    assert max(private) < 12, f"workers' private memory after a full collection: {private} MiB (the runner's lists were copied)"
