"""example_main.py, the demo (issue 3, Must show 4): the templates, this host, no config editing.

Its running time is a benchmark's business (bench_startup), never a test's: a busy machine is
slow, not wrong."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from conftest import run_entry
from jobsplit.machines import this_host
from runhelpers import read_results, run_env

REPO = Path(__file__).resolve().parents[1]


def test_the_demo_runs_on_this_host_with_the_templates(tmp_path):
    config_dir = tmp_path / "demo"
    config_dir.mkdir()
    for name in ("config.ini", "header.csv"):  # no machines.json: this host alone
        shutil.copy(REPO / "templates" / name, config_dir / name)
    result = run_entry(REPO / "example_main.py", "run", "--config-dir", config_dir, "--out", tmp_path / "out", "--yes", env=run_env(tmp_path), cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    host = this_host().name
    header, rows = read_results(tmp_path / "out" / host / "results.csv")
    assert header == [*(REPO / "templates" / "header.csv").read_text().strip().split(","), "Job ID", "Job Args", "Machine", "Digest", "Code"]
    assert len(rows) == 56
    grid = sorted(tuple(json.loads(r["Job Args"])) for r in rows)
    assert grid == [(d, rep) for d in range(2, 9) for rep in range(8)]
    for row in rows:
        dimension = json.loads(row["Job Args"])[0]
        exact = math.pi ** (dimension / 2) / math.gamma(dimension / 2 + 1)
        estimate, error = float(row["Volume Estimate"]), float(row["Std Error"])
        assert float(row["Exact Volume"]) == exact
        assert row["Samples"] == "100000"
        assert 0 < error < 0.2
        assert abs(estimate - exact) <= 6 * error, row
        assert row["Machine"] == host
    # Replicates of one dimension draw different streams.
    by_dimension: dict[int, set[str]] = {}
    for row in rows:
        by_dimension.setdefault(json.loads(row["Job Args"])[0], set()).add(row["Volume Estimate"])
    assert all(len(estimates) >= 6 for estimates in by_dimension.values())
    assert f"{host}: 56 of 56 done (100.0%), 0 failed" in result.stderr
