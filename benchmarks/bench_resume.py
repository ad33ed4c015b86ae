"""A finished share started again: whole processes, the run itself against starting it again.

A researcher starts a finished share again to check it, or a host restarts every machine's
command after an outage: the start reads the journal and results.csv back before it knows that
nothing is left. This benchmark runs ``bench_dispatch.py``'s no-op jobs (200-byte arguments) on
2 workers once, then starts the finished share again, each a whole process from exec to exit,
and prints both with their peak resident memory (the process and its workers, ``wait4``):

- ``run``: the first run, every job run and recorded;
- ``started again``: nothing to run, results.csv as the journal wrote it (its part that is the
  journal's rows is compared byte for byte, not parsed, nor written again);
- ``started again, a row changed``: the same, after one cell of results.csv's first row was
  changed (as by hand): every row after it is read back one by one, as every start did before,
  and results.csv is written again from the journal.

Before issue 14's change a million jobs started again took 39.5 s and 2.0 GB here, about twice
the run's time and three times its memory. Target: starting a finished share again costs less time and memory
than running it. Figures are medians of ``--rounds``; only ratios within one run mean anything.

    .venv/bin/python benchmarks/bench_resume.py --jobs 1000000 --rounds 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench_dispatch import ENV, PYTHON, isolate, write_project


def whole_process(command: list[str], folder: Path) -> tuple[float, int]:
    """(wall-clock seconds, peak resident bytes of the process or any process it waited for)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=folder, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"{' '.join(command)} exited {process.returncode}")
    return wall, usage.ru_maxrss * 1024


def change_first_row(results: Path) -> None:
    """One cell of the first row changed in place (its Value), the file otherwise as it was."""
    data = results.read_bytes()
    start = data.index(b"\n") + 1
    cells = data[start : data.index(b"\n", start)].split(b",")
    cells[3] = b"-1"
    results.write_bytes(data[:start] + b",".join(cells) + data[data.index(b"\n", start) :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-resume-") as name:
        folder = Path(name)
        isolate(folder)
        write_project(folder, 2)
        command = [PYTHON, "entry.py", "noop", str(args.jobs), "run", "--config-dir", ".", "--out", "out", "--machine", "bench", "--yes", "--console", "plain", "--nice", "0", "--workers", "2"]
        results = folder / "out" / "bench" / "results.csv"
        figures: dict[str, list[tuple[float, int]]] = {"run": [], "started again": [], "started again, a row changed": []}
        for _ in range(args.rounds):
            subprocess.run(["rm", "-rf", str(folder / "out")], check=True)
            figures["run"].append(whole_process(command, folder))
            written = results.read_bytes()
            figures["started again"].append(whole_process(command, folder))
            assert results.read_bytes() == written, "results.csv changed"
            change_first_row(results)
            figures["started again, a row changed"].append(whole_process(command, folder))
            assert results.read_bytes() == written, "results.csv not written again from the journal"
    print(f"{args.jobs:,} no-op jobs with 200-byte arguments, 2 workers, whole processes, median of {args.rounds}")
    print(f"  {'':30} {'seconds':>8} {'/ run':>7} {'peak MB':>8} {'/ run':>7}")
    run_wall, run_rss = (statistics.median(column) for column in zip(*figures["run"]))
    for label, measured in figures.items():
        wall, rss = (statistics.median(column) for column in zip(*measured))
        print(f"  {label:30} {wall:8.2f} {wall / run_wall:7.2f} {rss / 2**20:8.0f} {rss / run_rss:7.2f}")
    again_wall, again_rss = (statistics.median(column) for column in zip(*figures["started again"]))
    met = again_wall < run_wall and again_rss <= run_rss * 1.05
    print(f"\n{'MET ' if met else 'MISS'}  a finished share started again costs less time and memory than running it (peak within 5%: the pool is the same)")


if __name__ == "__main__":
    main()
