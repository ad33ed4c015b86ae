"""The report's figures (issue 13, Must show 2) against numbers worked out by hand.

The fixture: two machines from time T, machines.json A = [1.0, 2], B = [2.0, 2].

    A, run [0, 100], 2 workers         B, run [0, 60], 2 workers
    slot 0: j1 [0, 40] done            slot 0: j5 [0, 20] done
            j2 [40, 70] error (retried)        j6 [20, 50] done
            j2 [70, 90] done (attempt 2)
    slot 1: j3 [0, 50] done            slot 1: j7 [0, 30] done
            j4 [50, 60] crashed, SIGKILL, 1 GiB

By hand:
- makespan: 0 to 90 = 90 s.
- busy: A (40+30+20+50+10) / (2 x 100) = 150/200 = 0.75; B (20+30+30) / (2 x 60) = 80/120 = 2/3.
- work in speed-1 seconds: A 150 x 1 + B 80 x 2 = 310; capacity 1 x 2 + 2 x 2 = 6;
  work / capacity = 51.666...; the longest job: j6 and j7, 30 s on B = 60, on the fastest
  (speed 2) 30 s. Lower bound = 51.666... s.
- idle at the end: A finished at 90, B at 50: 40 s; 40/3600 = 0.0111 machine-hours,
  40 x 2 / 3600 = 0.0222 core-hours.
- throughput: A 3 done attempts in 100 s = 108 jobs/h; B 3 in 60 s = 180 jobs/h.
- measured speeds: mean done times A (40+20+50)/3 = 110/3, B (20+30+30)/3 = 80/3; scaled so that
  2 x a + 2 x b = 2 x 1 + 2 x 2 = 6 with a : b = 3/110 : 3/80, which gives a = 24/19 = 1.2632,
  b = 33/19 = 1.7368.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jobsplit import figures as figs
from jobsplit import runfacts
from test_report_journal import Att, Running, RunRow, T, job_hex, machines_json, write_journal, write_log

MACHINES = machines_json(A=(1.0, 2), B=(2.0, 2))
PLAN = {"A": 4, "B": 3}
A_ATTEMPTS = [
    Att("j1", 1, 0, 0, 40, "done", "done", max_rss=100 << 20),
    Att("j2", 1, 0, 40, 70, "error", "pending", error="Traceback (most recent call last):\n  File \"job.py\", line 3\nValueError: boom"),
    Att("j2", 2, 0, 70, 90, "done", "done"),
    Att("j3", 1, 1, 0, 50, "done", "done"),
    Att("j4", 1, 1, 50, 60, "crashed", "failed", signal=9, max_rss=1 << 30),
]
B_ATTEMPTS = [
    Att("j5", 1, 0, 0, 20, "done", "done"),
    Att("j6", 1, 0, 20, 50, "done", "done"),
    Att("j7", 1, 1, 0, 30, "done", "done"),
]


def make_fixture(root: Path) -> Path:
    """The two machines above under ``root/out``, with A's log; returns the output root."""
    out = root / "out"
    a = write_journal(out, "A", A_ATTEMPTS, [RunRow(0, 100, 100, 2)], plan=PLAN, machines=MACHINES)
    write_journal(out, "B", B_ATTEMPTS, [RunRow(0, 60, 60, 2)], plan=PLAN, machines=MACHINES)
    write_log(a, "A", [
        (0.1, "main", "-", "INFO run started"),
        (41, "w0", "j2", "INFO reading the input"),
        (69.9, "w0", "j2", "ERROR job failed\nTraceback (most recent call last):\nValueError: boom"),
        (80, "w0", "j2", "INFO second try goes well"),
        (55, "w1", "j4", "INFO allocating a lot"),
        (60.2, "main", "j4", "ERROR worker 1 died: killed by signal 9"),
        (20, "w0", "j1", "INFO halfway"),
    ])  # fmt: skip
    return out


@pytest.fixture
def fixture_figures(tmp_path: Path) -> figs.Figures:
    return figs.compute(runfacts.load([make_fixture(tmp_path)]))


def by_name(f: figs.Figures) -> dict[str, figs.MachineFigures]:
    return {m.name: m for m in f.machines}


def test_makespan_and_lower_bound(fixture_figures: figs.Figures) -> None:
    f = fixture_figures
    assert (f.start, f.end, f.makespan) == (T, T + 90, 90)
    assert not f.in_progress
    lb = f.lower_bound
    assert lb.work == pytest.approx(310)
    assert lb.capacity == pytest.approx(6)
    assert lb.work_over_capacity == pytest.approx(51.6666667)
    assert lb.longest_job == pytest.approx(30)
    assert lb.longest_job_id in (job_hex("j6"), job_hex("j7"))
    assert lb.seconds == pytest.approx(51.6666667)


def test_busy_fraction_finish_throughput_and_shares(fixture_figures: figs.Figures) -> None:
    a, b = by_name(fixture_figures)["A"], by_name(fixture_figures)["B"]
    assert a.busy_fraction == pytest.approx(0.75)
    assert b.busy_fraction == pytest.approx(2 / 3)
    assert (a.finish, b.finish) == (T + 90, T + 50)
    assert a.throughput_per_hour == pytest.approx(108)
    assert b.throughput_per_hour == pytest.approx(180)
    assert (a.planned, a.held, a.done, a.failed, a.pending, a.running, a.attempts) == (4, 4, 3, 1, 0, 0, 5)
    assert (b.planned, b.held, b.done, b.failed, b.pending, b.running, b.attempts) == (3, 3, 3, 0, 0, 0, 3)
    assert a.share_planned == pytest.approx(4 / 7) and b.share_planned == pytest.approx(3 / 7)
    assert a.share_done == pytest.approx(0.5) and b.share_done == pytest.approx(0.5)
    assert (a.workers, b.workers) == (2, 2)


def test_idle_machine_hours_at_the_end(fixture_figures: figs.Figures) -> None:
    a, b = by_name(fixture_figures)["A"], by_name(fixture_figures)["B"]
    assert (a.idle_at_end_seconds, b.idle_at_end_seconds) == (0, 40)
    assert fixture_figures.idle_machine_hours == pytest.approx(0.011111111)
    assert fixture_figures.idle_core_hours == pytest.approx(0.022222222)


def test_measured_speeds_and_suggested_machines_json(fixture_figures: figs.Figures) -> None:
    speeds = fixture_figures.speeds
    assert speeds.comparable
    measured = {m.name: m for m in speeds.machines}
    assert measured["A"].done_attempts == 3 and measured["A"].mean_seconds == pytest.approx(36.6666667)
    assert measured["B"].done_attempts == 3 and measured["B"].mean_seconds == pytest.approx(26.6666667)
    assert measured["A"].measured == pytest.approx(1.2631579)
    assert measured["B"].measured == pytest.approx(1.7368421)
    assert speeds.suggested == {"A": [1.26, 2], "B": [1.74, 2]}


def test_failures_grouped_by_outcome_and_last_line(fixture_figures: figs.Figures) -> None:
    groups = [(g.outcome, g.message, [(a.job_id, a.attempt, a.kind) for a in g.attempts]) for g in fixture_figures.failures]
    assert groups == [
        ("crashed", "killed by signal 9 (SIGKILL)", [(job_hex("j4"), 1, "crashed")]),
        ("error", "ValueError: boom", [(job_hex("j2"), 1, "retried")]),
    ]
    crashed = fixture_figures.failures[0].attempts[0]
    assert (crashed.machine, crashed.signal, crashed.max_rss) == ("A", 9, 1 << 30)


def test_last_log_lines_are_the_attempts_own(tmp_path: Path) -> None:
    facts = runfacts.load([make_fixture(tmp_path)])
    machine = facts.machines[0]
    failed = [a for a in machine.attempts if a.outcome != "done"]
    logs = runfacts.last_log_lines(machine, failed)
    j2 = logs[f"{job_hex('j2')}:1"]
    assert [line.split(" ", 4)[4].splitlines()[0] for line in j2] == ["INFO reading the input", "ERROR job failed"]
    assert j2[-1].endswith("\n  ValueError: boom")  # continuation lines belong to their record
    j4 = logs[f"{job_hex('j4')}:1"]
    assert [line.split(" ", 4)[4] for line in j4] == ["INFO allocating a lot", "ERROR worker 1 died: killed by signal 9"]


def test_a_run_in_progress_shows_what_is_known(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_journal(out, "A", A_ATTEMPTS[:2], [RunRow(0, 75, None, 2, "running")], running=[Running("j3", 1, 1, 10)], jobs=["j4"], plan=PLAN, machines=MACHINES)
    f = figs.compute(runfacts.load([out]))
    (a,) = f.machines
    assert f.in_progress and f.absent == {"B": 3}
    assert (f.start, f.end, f.makespan) == (T, T + 75, 75)  # the running attempt, up to the last commit
    assert (a.done, a.failed, a.pending, a.running, a.status) == (1, 0, 2, 1, "running")
    assert a.finish is None and a.idle_at_end_seconds is None and f.idle_machine_hours is None
    assert a.busy_fraction == pytest.approx((40 + 30 + 65) / (2 * 75))


def test_jobs_attempted_on_two_machines_are_listed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_journal(out, "A", [Att("j1", 1, 0, 0, 10, "crashed", "superseded", exit_code=3)], [RunRow(0, 10, 10, 1)], plan={"A": 1, "B": 1}, machines=MACHINES)
    write_journal(out, "B", [Att("j1", 2, 0, 12, 20, "done", "done")], [RunRow(0, 20, 20, 1)], plan={"A": 1, "B": 1}, machines=MACHINES)
    f = figs.compute(runfacts.load([out]))
    assert [(m.job_id, m.machines) for m in f.moved] == [(job_hex("j1"), [("A", 1, "superseded"), ("B", 1, "done")])]
    assert f.failures[0].message == "worker exited with status 3"


def test_report_json_gives_the_same_figures(tmp_path: Path) -> None:
    out = make_fixture(tmp_path)
    result = subprocess.run([sys.executable, "-m", "jobsplit", "report", str(out), "--json"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["makespan"] == 90 and doc["lower_bound"]["seconds"] == pytest.approx(51.6666667)
    assert doc["idle_machine_hours"] == pytest.approx(0.011111111)
    assert {m["name"]: m["busy_fraction"] for m in doc["machines"]} == pytest.approx({"A": 0.75, "B": 2 / 3})
    assert doc["speeds"]["suggested"] == {"A": [1.26, 2], "B": [1.74, 2]}
    crashed = doc["failures"][0]
    assert (crashed["outcome"], crashed["count"], crashed["attempts"][0]["signal"], crashed["attempts"][0]["max_rss"]) == ("crashed", 1, 9, 1 << 30)
    assert crashed["attempts"][0]["log"][-1].endswith("ERROR worker 1 died: killed by signal 9")


def test_a_shared_queue_s_run_has_no_machine_missing_and_no_planned_shares(tmp_path: Path) -> None:
    """A run through a shared queue records its pool as one plan entry of no machine ("": 4):
    every report said "Machines of the plan missing here: : 4 planned jobs, no folder given" and
    each host's share as 0.0% planned."""
    out = tmp_path / "out"
    write_journal(out, "A", [Att("j1", 1, 0, 0, 10, "done", "done"), Att("j2", 1, 1, 0, 12, "done", "done")], [RunRow(0, 20, 20, 2, "completed")], plan={"": 4}, machines={"A": [1.0, 2], "B": [1.0, 2]})
    write_journal(out, "B", [Att("j3", 1, 0, 0, 9, "done", "done")], [RunRow(0, 20, 20, 2, "completed")], plan={"": 4}, machines={"A": [1.0, 2], "B": [1.0, 2]})
    figures = figs.compute(runfacts.load([out]))
    assert figures.absent == {}
    assert [(m.name, m.share_planned, m.share_done) for m in figures.machines] == [("A", None, pytest.approx(2 / 3)), ("B", None, pytest.approx(1 / 3))]
