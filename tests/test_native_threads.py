"""Native thread pools sized to each worker's share of the cores (``jobsplit.nativethreads``).

NumPy's BLAS starts one thread per core in every process that loads it: with one worker per
core, every job's matrix product ran as many threads as the host has cores, in every worker at
once (24 NumPy jobs: 25.2 s on 2 workers here, 3.3 s with one thread each). Real NumPy, real
OpenBLAS, and ``threadpoolctl`` to read what a job's pools really have.
"""

from __future__ import annotations

import csv
import os
import textwrap
from pathlib import Path

import pytest

from conftest import run_entry, write_config_dir
from jobsplit.nativethreads import THREAD_VARIABLES
from runhelpers import run_args, run_env

pytest.importorskip("numpy")
pytest.importorskip("threadpoolctl")

ENTRY = textwrap.dedent(
    """
    import os, subprocess, sys
    import numpy  # at the top, as entries do: under fork, BLAS is loaded before the workers start
    import threadpoolctl
    import jobsplit

    def job(i, random_obj, config, progress):
        numpy.ones((64, 64)) @ numpy.ones((64, 64))
        blas = [pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"]
        program = subprocess.run([sys.executable, "-c", "import os; print(os.environ.get('OPENBLAS_NUM_THREADS', '-'))"], capture_output=True, text=True, check=True)
        return max(blas), os.environ.get("OMP_NUM_THREADS", "-"), program.stdout.strip()

    if __name__ == "__main__":
        jobsplit.main(job, [(i,) for i in range(4)])
    """
)
HEADER = ("Run Start Time", "Job Running Time", "Job Start Time", "Blas", "Omp", "Program")
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
pytestmark = pytest.mark.skipif(CORES < 2, reason="one core: a worker's share is one thread, with or without jobsplit")


def run(tmp_path: Path, workers: int, start_method: str, **env: str) -> list[dict[str, str]]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "entry.py").write_text(ENTRY)
    config_dir = write_config_dir(tmp_path / "config", header=HEADER, machines={"solo": [1.0, CORES]})
    out = tmp_path / "out"
    unset: dict[str, str | None] = {name: None for name in THREAD_VARIABLES}  # whatever the caller's shell has
    result = run_entry(
        tmp_path / "entry.py", *run_args(config_dir, out, "--workers", str(workers), "--start-method", start_method),
        env=run_env(tmp_path, **{**unset, **env}),
    )
    assert result.returncode == 0, result.stderr
    with open(out / "solo" / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_each_worker_s_blas_gets_its_share_of_the_cores(tmp_path, start_method):
    rows = run(tmp_path / "all", CORES, start_method)
    assert {(r["Blas"], r["Omp"], r["Program"]) for r in rows} == {("1", "1", "1")}, rows  # and the programs a job runs
    rows = run(tmp_path / "one", 1, start_method)
    assert {(r["Blas"], r["Omp"], r["Program"]) for r in rows} == {(str(CORES), str(CORES), str(CORES))}, rows


def test_threads_the_user_chose_are_left_alone(tmp_path):
    rows = run(tmp_path, CORES, "fork", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="2")
    assert {(r["Blas"], r["Omp"], r["Program"]) for r in rows} == {("2", "1", "2")}, rows
