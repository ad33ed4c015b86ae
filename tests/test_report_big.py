"""A 100,000-job run (issue 13, Must show 4): the report stays under 10 MB and still accounts
for every attempt, drawing neighbouring bars as one where they would share pixels.

The run is synthetic (journals written by SQL, see test_report_journal): three machines of a
quota plan, job times drawn from a seeded exponential distribution and divided by each
machine's speed, 1% of jobs failing once and retried, 0.3% crashing for good.
"""

from __future__ import annotations

import argparse
import heapq
import html
import io
import random
import re
import tracemalloc
from pathlib import Path

import pytest
from rich.console import Console

from jobsplit import figures as figs
from jobsplit import report, runfacts
from test_report_journal import Att, RunRow, job_args, machines_json, write_journal

BIG_MACHINES = {"fast": (2.0, 16), "mid": (1.0, 16), "slow": (0.5, 8)}


def write_big_run(root: Path, jobs: int = 100_000, seed: int = 13) -> Path:
    """Output root of a finished synthetic run of ``jobs`` jobs on BIG_MACHINES."""
    rng = random.Random(seed)
    machines = machines_json(**BIG_MACHINES)
    capacity = {name: speed * cores for name, (speed, cores) in BIG_MACHINES.items()}
    total = sum(capacity.values())
    names = list(BIG_MACHINES)
    plan = {name: int(jobs * capacity[name] / total) for name in names}
    plan[names[0]] += jobs - sum(plan.values())
    out = root / "out"
    number = 0
    for name in names:
        speed, cores = BIG_MACHINES[name]
        free = [(0.0, slot) for slot in range(cores)]  # (when the slot is free, slot): a heap
        attempts = []
        for _ in range(plan[name]):
            job = f"job{number}"
            number += 1
            fate = rng.random()
            tries = [("error", "pending"), ("done", "done")] if fate < 0.01 else [("crashed", "failed")] if fate < 0.013 else [("done", "done")]
            for attempt, (outcome, state) in enumerate(tries, 1):
                at, slot = heapq.heappop(free)
                start = at + rng.uniform(0.001, 0.02)
                end = start + rng.expovariate(1 / 60) / speed + 0.01
                heapq.heappush(free, (end, slot))
                error = "Traceback (most recent call last):\nRuntimeError: flaky input" if outcome == "error" else None
                attempts.append(Att(job, attempt, slot, start, end, outcome, state, signal=9 if outcome == "crashed" else None,
                                    max_rss=rng.randrange(50, 500) << 20, error=error))  # fmt: skip
        end = max(at for at, _ in free) + 1
        write_journal(out, name, attempts, [RunRow(0, end, end, cores)], plan=plan, machines=machines)
    return out


def shared_big_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 100,000-job run, written once per test session (the trace tests read it too)."""
    root = tmp_path_factory.getbasetemp() / "big-run"
    if not (root / "written").exists():
        write_big_run(root)
        (root / "written").touch()
    return root / "out"


@pytest.fixture(scope="module")
def big_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_big_run(tmp_path_factory)


def test_a_100000_job_report_is_under_10_mb_and_counts_every_attempt(big_run: Path, tmp_path: Path) -> None:
    facts = runfacts.load([big_run])
    figures = figs.compute(facts)
    assert sum(m.held for m in facts.machines) == 100_000
    html = tmp_path / "report.html"
    html.write_text("".join(report.render(facts, figures, report.failure_logs(facts, figures))), encoding="utf-8")
    size = html.stat().st_size
    print(f"report of {figures.attempts:,} attempts: {size:,} bytes")
    assert size < 10_000_000
    text = html.read_text(encoding="utf-8")
    singles = len(re.findall(r'data-attempt="', text))
    grouped = sum(int(n) for n in re.findall(r'data-attempts="(\d+)"', text))
    assert singles + grouped == figures.attempts
    lanes = re.findall(r'data-lane="([^"]+)"', text)
    assert sorted(lanes) == sorted(f"{m}/{s}" for m, (_, cores) in BIG_MACHINES.items() for s in range(cores))
    failed = sum(len(g.attempts) for g in figures.failures)
    assert failed == sum(1 for a in facts.attempts if a.outcome != "done") > 1000


def test_aggregated_bars_keep_failures_visible_and_every_attempt_once() -> None:
    """Thousands of 1-pixel attempts on a lane become few bars; a failure colours its bar."""
    attempts = [runfacts.Attempt("m", f"{i:032x}", 1, 0, i * 1.0, i + 0.999, "error" if i == 500 else "done", "failed" if i == 500 else "done") for i in range(3000)]
    bars = report.lane_bars(attempts, seconds_per_px=1.0, aggregate=True)
    assert [a for bar in bars for a in bar.attempts] == attempts
    assert len(bars) < 3000 / report.MERGE_PX + 3
    assert [bar.kind for bar in bars if any(a.outcome == "error" for a in bar.attempts)] == ["error"]
    apart = [runfacts.Attempt("m", f"{i:032x}", 1, 0, i * 100.0, i * 100 + 95, "done", "done") for i in range(5)]
    assert len(report.lane_bars(apart, seconds_per_px=1.0, aggregate=True)) == 5  # wide bars with visible gaps stay apart


def test_a_report_holds_a_few_hundred_bytes_an_attempt(tmp_path: Path) -> None:
    """``report`` kept every done attempt's arguments (its row's Job Args cell), which only the
    tooltips of bars drawn for one attempt show, and sorted every attempt by a key tuple: some
    850 bytes an attempt at its peak with 200-byte arguments (0.92 GB for a million; ten
    million would not fit in 24 GB). The arguments of the bars that show them are read again."""
    count, isolated = 20_000, 5
    names = [f"{i:05d}/" + "x" * 180 for i in range(count)]
    attempts = [Att(name, 1, i % 2, i / 2, i / 2 + 0.4, "done", "done", cpu=0.25) for i, name in enumerate(names[: count - isolated])]
    attempts += [Att(name, 1, 0, count + 1000.0 * k, count + 1000.0 * k + 1, "done", "done") for k, name in enumerate(names[count - isolated :])]  # far apart: one bar each
    end = count + 1000.0 * isolated
    out = tmp_path / "out"
    write_journal(out, "A", attempts, [RunRow(0, end, end, 2)], plan={"A": count}, machines=machines_json(A=(1.0, 2)))
    target = tmp_path / "report.html"
    tracemalloc.start()
    try:
        assert report.run(argparse.Namespace(dirs=[out], output=target, json=False), Console(file=io.StringIO())) == 0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    text = target.read_text(encoding="utf-8")
    assert all(f"args {html.escape(job_args(name))}" in text for name in names[count - isolated :])
    assert peak < 600 * count, f"{peak / count:.0f} bytes an attempt"


def test_a_report_reads_again_the_arguments_its_bars_show(tmp_path: Path) -> None:
    """Loaded without done attempts' arguments, the page is the same: a bar drawn for one
    attempt (here every attempt: fewer than DETAIL_LIMIT) shows them, read again from its journal."""
    out = write_big_run(tmp_path, jobs=3_000)
    pages = []
    for done_args in (True, False):
        facts = runfacts.load([out], done_args=done_args)
        figures = figs.compute(facts)
        page = "".join(report.render(facts, figures, report.failure_logs(facts, figures)))
        pages.append(re.sub(r"Made [^<]* by jobsplit report", "Made by jobsplit report", page))
    assert pages[0] == pages[1]
    assert pages[1].count('data-attempt="') == figures.attempts and pages[1].count("args [&quot;job") == figures.attempts


def test_a_lane_in_time_order_is_sorted_as_by_the_whole_key() -> None:
    """By start, then each run of equal starts by (end, job id, attempt): a sort by the whole
    key, without a key tuple for every attempt."""
    rng = random.Random(7)
    attempts = [runfacts.Attempt("m", f"{rng.randrange(30):032x}", rng.randrange(1, 3), 0, float(rng.randrange(60)), float(rng.randrange(60, 64)), "done", "done") for _ in range(500)]
    found = list(attempts)
    report.in_time_order(found)
    assert [id(a) for a in found] == [id(a) for a in sorted(attempts, key=lambda a: (a.started, a.ended, a.job_id, a.attempt))]
