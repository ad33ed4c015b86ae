"""The benchmarks still run: each script, on a tiny workload, to its end.

Nothing here judges a figure (no test asserts a time: see the README); a benchmark that no
longer runs against the code it measures (an API it calls, renamed) fails here, not on the
day its figures are wanted. ``bench_startup.py`` is left out: it builds two executables, which
``test_executable.py`` already does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

pytestmark = pytest.mark.slow

RUNS = {
    "bench_plan.py": (["--jobs", "2000", "--repeat", "1", "--rendezvous-jobs", "200"], ["digest", "peak"]),
    "bench_journal.py": (["--jobs", "500"], ["old / new"]),
    "bench_dispatch.py": (["--jobs", "300", "--sleep-jobs", "20", "--rounds", "1"], ["jobsplit <= 0.8x joblib", "jobsplit's span <= 1.02x ideal"]),
    "bench_balance.py": (["--sizes", "60", "--seeds", "2"], ["bound:"]),
    "bench_merge_logs.py": (["--lines", "2000", "--files", "2"], ["ratio merge-logs / baseline", "peak RSS of merge-logs"]),
    "bench_worker.py": (["--jobs", "500", "--passes", "1"], ["sending the group"]),
    "bench_resume.py": (["--jobs", "300", "--rounds", "1"], ["started again, a row changed", "costs less time and memory than running it"]),
}


@pytest.mark.parametrize("script", sorted(RUNS))
def test_the_benchmark_runs_to_its_end(script, tmp_path):
    args, said = RUNS[script]
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    result = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    for words in said:
        assert words in result.stdout, result.stdout


def test_every_benchmark_but_the_start_up_one_is_run_here():
    assert {path.name for path in BENCHMARKS.glob("bench_*.py")} == {*RUNS, "bench_startup.py"}
