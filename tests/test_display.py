"""Progress on the console (issue 3, Must show 3: "progress reporting reaches the parent").

The displays are pure renderers of a Snapshot, so they are driven here with made-up times (a
fake clock): the live view's fractions, rate and ETA, and the plain display's one line per
10 s. The reporter a job gets is throttled in the worker (checked with a fake monotonic
clock) and cheap in a tight loop; and a job's reports reach the supervisor while it runs.
"""

from __future__ import annotations

import io
import multiprocessing
import re
import time
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from rich.console import Console

import jobsplit.progress as progress_module
from jobsplit.config import Header, JobConfig, LogSettings
from jobsplit.display import PlainDisplay, RunningJob, Snapshot, duration, summary_line
from jobsplit.journal import Journal
from jobsplit.links import ProcessHub
from jobsplit.livedisplay import LiveDisplay, render
from jobsplit.pool import JobPool
from jobsplit.progress import IDLE, ProgressBoard, ProgressReporter
from jobsplit.recorder import Recorder
from jobsplit.text import rate_text
from jobsplit.results import ResultsFile, csv_header_line
from jobsplit.runner import Runner
from jobsplit.sources import StaticShare
from jobsplit.states import JobState
from jobsplit.worker import WorkerSetup
from runhelpers import HEADER, read_results, stepping_job

ID_A = "0123456789abcdef" * 2
ID_B = "fedcba9876543210" * 2


def text_console(width: int = 120) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=width, force_terminal=False, color_system=None), buffer


def snapshot(elapsed: float, *, total: int = 200, done: int = 50, failed: int = 4, done_this_run: int = 30, running=()) -> Snapshot:
    return Snapshot("alpha", total, done, failed, done_this_run, elapsed, tuple(running))


RUNNING = (RunningJob(ID_A, "[1,2]", 0.42, 75.0), RunningJob(ID_B, '{"k":3}', 0.07, 3.5))


# --- the live view ---------------------------------------------------------------------------


def test_the_eta_counts_the_running_jobs_reported_progress():
    """Three jobs of 30 s on two workers: before the first ended the ETA was "?" (jobs of hours:
    for hours), and while the last went on alone it grew (15 s, 20 s, 25 s at 30, 40, 50 s)."""
    halfway = Snapshot("m", 3, 0, 0, 0, 15.0, (RunningJob(ID_A, "[0]", 0.5, 15.0), RunningJob(ID_B, "[1]", 0.5, 15.0)))
    assert halfway.eta == pytest.approx(30.0)  # a job's work in 15 s: two left
    last = [Snapshot("m", 3, 2, 0, 2, 30.0 + t, (RunningJob(ID_A, "[2]", t / 30, t),)) for t in (0.0, 10.0, 20.0, 29.0)]
    etas = [s.eta for s in last]
    assert all(a > b for a, b in zip(etas, etas[1:])) and etas[-1] < 2, etas  # shrinks as the last job nears its end
    assert Snapshot("m", 3, 0, 0, 0, 5.0, (RunningJob(ID_A, "[0]", 0.0, 5.0),)).eta is None  # nothing to go by yet
    assert Snapshot("m", 3, 2, 1, 0, 0.0).eta == 0.0  # nothing left, nothing run: a finished share started again said "ETA ?"


def test_rates_are_never_in_scientific_notation_where_people_read_them():
    """100,000 no-op jobs ended with "(9.54e+04 jobs/s)", and the report's Jobs / hour read
    "2.603e+04" beside "7,604"."""
    console, buffer = text_console()
    fast = Snapshot("alpha", 200_000, 100_000, 0, 95_412, 1.0, ())
    console.print(render(fast))
    assert "95,412 jobs/s" in buffer.getvalue(), buffer.getvalue()
    assert "95,412 jobs/s" in summary_line(fast)
    assert [rate_text(r) for r in (0.25, 3.14159, 95.44, 100.4, 26_030.2, 0.0012, 1 / 10_800, 1e-7, 0)] == ["0.25", "3.14", "95.4", "100", "26,030", "0.0012", "0.000093", "0.00000010", "0"]


def test_render_shows_overall_rate_eta_and_each_running_job():
    console, buffer = text_console()
    s = snapshot(12.0, running=RUNNING)  # 30 done in 12 s: 2.5 jobs/s; 146 left, 0.49 of them underway: ETA 145.51 / (30.49 / 12) = 57.3 s
    console.print(render(s))
    out = buffer.getvalue()
    lines = out.splitlines()
    assert len(lines) == 3, out  # the overall line, then one line per running job
    overall, first, second = lines
    assert "alpha" in overall and "50/200 done" in overall and "4 failed" in overall
    assert "2.5 jobs/s" in overall
    assert "ETA 57.3s" in overall
    assert "elapsed 12.0s" in overall
    assert ID_A[:12] in first and "42%" in first and "1m15s" in first and "[1,2]" in first
    assert ID_B[:12] in second and "  7%" in second and "3.5s" in second and '{"k":3}' in second
    assert ID_A[12:20] not in out  # ids are shortened to 12 characters


def test_render_without_running_jobs_or_rate():
    console, buffer = text_console()
    console.print(render(snapshot(0.0, done=0, failed=0, done_this_run=0)))
    out = buffer.getvalue()
    assert out.count("\n") == 1
    assert "0/200 done" in out and "0 jobs/s" in out and "ETA ?" in out
    assert "%" not in out


def test_eta_of_a_long_run_in_hours():
    s = snapshot(100.0, total=10_000, done=100, failed=0, done_this_run=100)  # 1 job/s, 9,900 left
    assert s.rate == pytest.approx(1.0)
    assert s.eta == pytest.approx(9900.0)
    console, buffer = text_console()
    console.print(render(s))
    assert "ETA 2h45m" in buffer.getvalue()
    assert "1 jobs/s" in buffer.getvalue()


@pytest.mark.parametrize(
    "seconds, text",
    [(None, "?"), (0, "0.0s"), (12.34, "12.3s"), (59.9, "59.9s"), (60, "1m00s"), (187, "3m07s"), (3720, "1h02m"), (49 * 3600, "2d01h")],
)
def test_duration(seconds, text):
    assert duration(seconds) == text


def test_live_display_on_a_file_prints_the_final_view_once():
    console, buffer = text_console()
    display = LiveDisplay(console)
    display.update(snapshot(2.0, done_this_run=1, running=RUNNING[1:]))
    display.message("job x failed: boom")
    display.update(snapshot(12.0, running=RUNNING))
    display.close()
    out = buffer.getvalue()
    assert "job x failed: boom" in out
    assert "42%" in out and "2.5 jobs/s" in out and "ETA 57.3s" in out
    assert out.count("50/200 done") == 1  # not a terminal: no redraws, just the last view


def test_live_display_on_a_terminal_redraws_each_update():
    buffer = io.StringIO()
    console = Console(file=buffer, width=120, force_terminal=True, color_system=None)
    display = LiveDisplay(console)
    display.update(snapshot(4.0, done=10, done_this_run=10, running=RUNNING[:1]))  # 2.5 jobs/s
    display.update(snapshot(8.0, done=40, done_this_run=40, running=RUNNING))  # 5 jobs/s
    display.close()
    out = buffer.getvalue()
    assert "10/200 done" in out and "40/200 done" in out
    assert "2.5 jobs/s" in out and "5 jobs/s" in out
    assert "42%" in out and "7%" in out


# --- the plain display -----------------------------------------------------------------------


def test_plain_display_prints_at_most_one_line_per_10_seconds():
    console, buffer = text_console()
    display = PlainDisplay(console)
    for elapsed in (0.0, 3.0, 9.0, 10.5, 25.0):
        display.update(snapshot(elapsed, done_this_run=int(elapsed * 2)))
    display.close()
    lines = buffer.getvalue().splitlines()
    assert [re.search(r"elapsed (\S+),", line).group(1) for line in lines] == ["0.0s", "10.5s", "25.0s"], lines
    assert lines[1] == summary_line(snapshot(10.5, done_this_run=21))
    assert "2 jobs/s" in lines[1] and "50/200 done (25.0%)" in lines[1] and "4 failed" in lines[1]
    assert "ETA 1m13s" in lines[1]  # 146 left at 2 jobs/s


def test_plain_display_messages_are_printed_at_once():
    console, buffer = text_console()
    display = PlainDisplay(console)
    display.update(snapshot(0.0))
    display.message("job y (pool[3], attempt 1) crashed")
    display.update(snapshot(1.0))
    assert buffer.getvalue().splitlines()[1:] == ["job y (pool[3], attempt 1) crashed"]


# --- the reporter ----------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def board() -> ProgressBoard:
    return ProgressBoard(multiprocessing.get_context("fork"), 2)


def test_reports_are_throttled_to_about_ten_a_second(board, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(progress_module, "time", clock)
    reporter = ProgressReporter(board, 1)
    board.start(1, ticket=7)
    reporter.restart()

    def report_at(t: float, value: float, base: float = 100) -> float:
        clock.now = 1000.0 + t
        reporter.report(value, base=base)
        return board.read(1).fraction

    assert report_at(0.0, 1) == pytest.approx(0.01)  # the first report is published at once
    assert report_at(0.05, 50) == pytest.approx(0.01)  # too soon: kept in the worker
    assert report_at(0.09, 60) == pytest.approx(0.01)
    assert report_at(0.101, 61) == pytest.approx(0.61)
    assert report_at(0.15, 70) == pytest.approx(0.61)
    assert report_at(0.16, 100) == pytest.approx(1.0)  # completion is never held back
    assert board.read(0).ticket == IDLE and board.read(0).fraction == 0.0  # the other slot is untouched
    reporter.restart()  # the next job on this worker: its first report shows at once
    board.start(1, ticket=8)
    assert board.read(1).fraction == 0.0
    assert report_at(0.17, 3, base=12) == pytest.approx(0.25)


def test_reports_are_clamped_to_a_fraction(board):
    reporter = ProgressReporter(board, 0)
    reporter.report(250, base=100)
    assert board.read(0).fraction == 1.0
    reporter.restart()
    reporter.report(-5, base=10)
    assert board.read(0).fraction == 0.0
    reporter.restart()
    reporter.report(float("nan"), base=10)  # a numpy 0/0, say: the display showed "nan%"
    assert board.read(0).fraction == 0.0
    reporter.restart()
    reporter.report(float("inf"), base=10)
    assert board.read(0).fraction == 1.0


@pytest.mark.parametrize(
    "value, base, fraction",
    [
        (Decimal("2.5"), 10, 0.25),
        (Fraction(1, 3), 1, 1 / 3),
        (10**400, 10**401, 0.1),  # exact integers of any size, as Python divides them
        (10**400, 100, 1.0),  # a quotient beyond a float's range
        (-(10**400), 100, 0.0),
        (5, 0, 0.0),
        (Fraction(1, 2), Decimal(2), 0.25),  # two kinds of number that do not divide each other
        (Decimal(1), Fraction(4), 0.25),
        (Decimal("NaN"), 100, 0.0),  # compares to nothing
        (Decimal("sNaN"), 100, 0.0),
    ],
)
def test_any_two_numbers_make_a_report(board, value, base, fraction):
    """No number fails the job it reports on (before, 10**400 raised OverflowError; a Fraction
    against a Decimal, TypeError; a Decimal NaN, InvalidOperation)."""
    reporter = ProgressReporter(board, 0)
    reporter.report(value, base=base)
    assert board.read(0).fraction == pytest.approx(fraction)


@pytest.mark.parametrize("value, base", [("50", 100), (None, 100), (50, "100"), ("array", 100)])
def test_a_report_of_what_is_not_a_number_says_what_is_expected(board, value, base):
    if value == "array":  # a job's progress as a NumPy array of several values
        value = pytest.importorskip("numpy").array([1, 2])
    reporter = ProgressReporter(board, 0)
    for _ in range(2):  # published or held back by the throttle, alike
        with pytest.raises(TypeError, match=r"^progress\.report\(done, base=total\) takes two numbers; got "):
            reporter.report(value, base=base)


def test_a_first_report_of_a_one_value_array_says_what_is_expected(board):
    """A NumPy array of one value compares as a number, but NumPy 2 makes no float of it: the
    job's first report says what is expected (before, NumPy's own TypeError from jobsplit's code)."""
    numpy = pytest.importorskip("numpy")
    with pytest.raises(TypeError, match=r"^progress\.report\(done, base=total\) takes two numbers; got array"):
        ProgressReporter(board, 0).report(numpy.array([1.0]), base=10)


def test_a_tight_loop_of_reports_publishes_rarely(board, monkeypatch):
    """100,000 reports within one throttle interval reach the shared board once, and the last
    word (completion) at once: a tight loop of reports costs the job next to nothing (its cost
    per call is measured by benchmarks/bench_dispatch.py, never asserted here)."""
    clock = FakeClock()
    monkeypatch.setattr(progress_module, "time", clock)
    writes = []
    monkeypatch.setattr(board, "publish", lambda slot, fraction: writes.append(fraction))
    reporter = ProgressReporter(board, 0)
    for k in range(100_000):
        reporter.report(k, base=100_000)
    assert writes == [0.0]
    reporter.report(100_000, base=100_000)
    assert writes == [0.0, 1.0]


# --- reports reach the supervisor while the job runs ----------------------------------------


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_progress_of_a_running_job_reaches_the_supervisor(tmp_path: Path, start_method: str):
    """In-process Runner: polled from on_tick, a running job shows a fraction strictly in (0, 1).
    The jobs hold after their first report until on_tick has seen both: jobs of 0.7 s ended
    unseen mid-way while a busy host kept this process (the runner) off its core."""
    context = multiprocessing.get_context(start_method)
    header = Header(HEADER)
    board = ProgressBoard(context, 2)
    config = JobConfig()
    setup = WorkerSetup(stepping_job, config.as_document(), header, "alpha", "00" * 16, "code", time.time(), b"seed", board, 0, LogSettings())
    hold = tmp_path / "hold"
    hold.touch()
    pool = JobPool([(5, 0.12, str(hold)), (4, 0.15, str(hold))])
    ids = pool.ids_hex(range(len(pool)))
    journal = Journal(tmp_path / "journal.sqlite")
    journal.initialize({"digest": "00" * 16}, ids)
    run = journal.begin_run(2, done_before=0, started=time.time(), host="here", pid=0, code="code", source="static")
    results = ResultsFile(tmp_path / "results.csv", csv_header_line(header), [])
    source = StaticShare(range(len(ids)), pool.ids_hex)
    recorder = Recorder(journal, results, run)
    runner = Runner(source, ProcessHub(context, setup), recorder, pool, workers=2, run=run)
    seen: dict[str, list[float]] = {job_id: [] for job_id in ids}
    deadline = time.monotonic() + 30

    def on_tick() -> None:
        for job in runner.running():
            seen[job.task.job_id].append(job.fraction)
            assert job.elapsed >= 0
        if all(any(0 < f < 1 for f in fractions) for fractions in seen.values()):
            hold.unlink(missing_ok=True)
        assert time.monotonic() < deadline, "the jobs should have ended long ago"

    try:
        assert runner.run(lambda: False, on_tick) is True
        assert journal.counts()[JobState.DONE] == 2
    finally:
        hold.unlink(missing_ok=True)
        results.close()
        journal.close()
    for job_id, fractions in seen.items():
        inside = [f for f in fractions if 0 < f < 1]
        assert inside, f"job {job_id} never showed a fraction between 0 and 1: {fractions}"
        assert fractions == sorted(fractions), "a job's fraction only grows"
    _, rows = read_results(tmp_path / "results.csv")
    assert sorted(row["Job ID"] for row in rows) == sorted(ids)
