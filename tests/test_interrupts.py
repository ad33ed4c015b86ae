"""Interruption (issue 4, Must show 3): Ctrl-C, SIGTERM, and a parent killed outright.

Each run is started in its own session, so "no surviving processes" means: no live process
left in that session (workers, and the resource tracker under spawn).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import pty
import random
import signal
import sqlite3
import re
import shlex
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import error_lines, run_entry, write_config_dir
from runhelpers import (
    HardeningShare,
    assert_all_done_once,
    communicate,
    jobsplit_script,
    journal_jobs,
    journal_query,
    kill_session,
    kinds_spec,
    pool_spec,
    project_first,
    read_results,
    run_args,
    run_env,
    session_processes,
    side_lines,
    spec_id,
    start_entry,
    wait_for,
    wait_no_processes,
    write_kinds_entry,
)

# Quick jobs take 20 ms: long enough to be sent one at a time (see the batching test below).
REST = [*pool_spec("sleep", 4, 0.02), *pool_spec("sleepenv", 6, 60)]  # sleepers: 60 s unless JOBSPLIT_TEST_SLEEP
LEAD = 2  # quick jobs first in the share: done before the interrupt


def in_journal(path: Path, state: str) -> set[str]:
    try:
        return {job_id for (job_id,) in journal_query(path, "SELECT job_id FROM jobs WHERE state = ?", (state,))}
    except sqlite3.Error:
        return set()  # not created yet


def running_in_journal(path: Path) -> set[str]:
    return in_journal(path, "running")


def done_in_journal(path: Path) -> set[str]:
    return in_journal(path, "done")


class Run:
    def __init__(self, root: Path, start_method: str, workers: int = 2) -> None:
        self.root = root
        self.entry, self.config_dir, self.pool = project_first(root, lambda n: [["sleep", 100 + n, 0.02], ["sleep", 200 + n, 0.02]], REST)
        self.side, self.starts = root / "side.txt", root / "starts.txt"
        self.journal = root / "out" / "solo" / "journal.sqlite"
        self.args = run_args(self.config_dir, root / "out", "--workers", str(workers), "--start-method", start_method)

    def env(self, **extra: str) -> dict[str, str]:
        return run_env(self.root, JOBSPLIT_TEST_SIDE=str(self.side), JOBSPLIT_TEST_STARTS=str(self.starts), **extra)

    def busy_sleepers(self, busy: int = 2) -> set[str] | None:
        """The running jobs, once ``busy`` sleepers run and the quick lead jobs are done."""
        sleepers = {spec_id(s) for s in self.pool if s[0] == "sleepenv"}
        running = running_in_journal(self.journal)
        return running if len(running & sleepers) >= busy and {spec_id(s) for s in self.pool[:LEAD]} <= done_in_journal(self.journal) else None

    def start_until_busy(self, busy: int = 2):
        """Start the run; return it once ``busy`` sleepers are running (journal and side file agree)."""
        process = start_entry(self.entry, self.args, self.env())
        try:
            in_flight = wait_for(lambda: self.busy_sleepers(busy), 60, f"{busy} running sleepers")
        except AssertionError:
            kill_session(process.pid)
            process.kill()
            raise
        assert in_flight <= set(side_lines(self.starts)) - set(side_lines(self.side))
        return process, in_flight

    def resume(self) -> tuple[int, str, str]:
        process = start_entry(self.entry, self.args, self.env(JOBSPLIT_TEST_SLEEP="0.01"))
        return communicate(process, 90)


def check_resumable(run: Run, in_flight: set[str]) -> None:
    """After a clean stop: in-flight jobs pending, a second run finishes, nothing ran twice."""
    jobs = journal_jobs(run.journal)
    for job_id in in_flight:  # pending again, their interrupted attempt on record
        assert (jobs[job_id]["state"], jobs[job_id]["attempts"], jobs[job_id]["outcome"]) == ("pending", 1, "interrupted"), jobs[job_id]
    assert not [j for j in jobs.values() if j["state"] in ("running", "failed")]
    done = {job_id for job_id, job in jobs.items() if job["state"] == "done"}
    assert sorted(side_lines(run.side)) == sorted(done)
    _, rows = read_results(run.journal.parent / "results.csv")
    assert sorted(r["Job ID"] for r in rows) == sorted(done)
    assert journal_query(run.journal, "SELECT status FROM runs") == [("interrupted",)]

    status, _, err = run.resume()
    assert status == 0, err
    assert len(done) >= LEAD
    assert f"{len(run.pool)} jobs, resuming: {len(done)} done, 0 failed, {len(run.pool) - len(done)} to go" in err  # the first line
    assert "note: resuming" not in err  # the first line said it: said twice, it was noise on every resume
    assert sorted(side_lines(run.side)) == sorted(spec_id(s) for s in run.pool)  # every job done once
    _, rows = read_results(run.journal.parent / "results.csv")
    assert sorted(r["Job ID"] for r in rows) == sorted(spec_id(s) for s in run.pool)
    assert journal_query(run.journal, "SELECT status FROM runs ORDER BY run") == [("interrupted",), ("completed",)]


@pytest.mark.parametrize(
    "how, start_method",
    [("ctrl-c", "fork"), ("ctrl-c", "spawn"), ("sigterm", "fork"), ("sigterm", "spawn"), ("sigusr1", "fork"), ("sigusr1 to every process", "fork")],
)
def test_an_interrupt_stops_cleanly_and_the_run_resumes(tmp_path, how, start_method):
    """SIGUSR1 (a Slurm user's ``--signal=B:USR1@300``) killed the run outright, before. Sent
    to every process of the run (``scancel --signal=USR1 --full`` where Slurm tracks a job's
    processes by cgroup, or a ``pkill``), it killed the workers, and their jobs were recorded as
    crashed, not as stopped to run again."""
    run = Run(tmp_path, start_method)
    process, in_flight = run.start_until_busy()
    if how == "ctrl-c":
        os.killpg(process.pid, signal.SIGINT)  # as a terminal does: the whole process group
    elif how == "sigusr1 to every process":
        workers = [int(pid) for pid in Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()]
        for pid in [*workers, process.pid]:  # the workers first: they die before the run hears of its stop
            os.kill(pid, signal.SIGUSR1)
    else:
        os.kill(process.pid, signal.SIGUSR1 if how == "sigusr1" else signal.SIGTERM)
    status, _, err = communicate(process, 60)  # a watchdog: the sleepers would take 60 s more
    assert status == 130, err
    assert wait_no_processes(process.pid, 10.0) == []
    assert "Interrupted" in err and "Resume with:" in err
    assert "Traceback" not in err
    check_resumable(run, in_flight)


def test_an_array_task_stopped_says_how_to_resume_it_from_a_shell(tmp_path):
    """A Slurm array task takes its machine from SLURM_ARRAY_TASK_ID; stopped, it printed its own
    command line as the way to resume, which a login shell (no such variable) refused: "sim" is
    an array, pass --array-index."""
    entry, config_dir = write_kinds_entry(tmp_path, pool_spec("stopafter", 6, 0), machines={"sim": {"speed": 1.0, "cores": 1, "array": 2}})
    env = run_env(tmp_path, SLURM_ARRAY_TASK_ID="1", JOBSPLIT_TEST_STOP="interrupt", JOBSPLIT_TEST_STARTS=str(tmp_path / "starts.txt"))
    status, _, err = communicate(start_entry(entry, run_args(config_dir, tmp_path / "out", machine="sim"), env), 60)
    assert status == 130, err
    resume = next(line for line in err.splitlines() if "Resume with:" in line)
    assert resume.endswith("--array-index 1"), resume


@pytest.mark.parametrize(
    ("argv", "flags", "expected"),
    [
        (["e.py", "run", "--machine=sim"], {"machine": "sim"}, ["e.py", "run", "--machine=sim", "--array-index", "1"]),
        (["e.py", "run", "--machine", "sim[1]"], {"machine": "sim[1]"}, ["e.py", "run", "--machine", "sim[1]"]),  # named whole: an index too was refused
        (["e.py", "run", "--machine", "sim", "--array-index", "1"], {"machine": "sim", "array_index": 1}, ["e.py", "run", "--machine", "sim", "--array-index", "1"]),
        (["e.py", "run"], {}, ["e.py", "run"]),  # chosen at the prompt: asked again
    ],
)
def test_the_resume_command_names_the_index_only_where_it_was_taken_from_slurm(argv, flags, expected):
    from jobsplit.run_command import _resume_argv
    from jobsplit.settings import RunFlags

    assert _resume_argv(argv, "sim[1]", RunFlags(**flags)) == expected


def test_a_stop_asked_while_the_share_is_read_back_ends_the_command_there(tmp_path):
    """A Ctrl-C while a finished share of a million jobs was read back was heard only once the
    run began, 21 s later for the red team. It ends the command at the next step, as a Ctrl-C
    before the run does, with nothing half-written and no run recorded. Here the Ctrl-C comes
    (from the process itself) while results.csv is read back, wherever the time goes."""
    entry, config_dir = write_kinds_entry(tmp_path, pool_spec("ok", 6))
    assert run_entry(entry, *run_args(config_dir, tmp_path / "out"), env=run_env(tmp_path)).returncode == 0
    interrupted = tmp_path / "interrupted.py"
    interrupted.write_text(
        "import os, runpy, signal, sys\n"
        "import jobsplit.machine_run as machine_run\n"
        "reading = machine_run.read_rows\n"
        "def read_rows(*args, **kwargs):\n"
        "    rows = reading(*args, **kwargs)\n"
        "    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, as the rows are read back\n"
        "    return rows\n"
        "machine_run.read_rows = read_rows\n"
        f"sys.argv[0] = {str(entry)!r}\n"
        f"runpy.run_path({str(entry)!r}, run_name='__main__')\n"
    )
    result = run_entry(interrupted, *run_args(config_dir, tmp_path / "out"), env=run_env(tmp_path))
    assert result.returncode == 130, result.stderr
    assert error_lines(result.stderr) == ["error: interrupted (Ctrl-C); nothing was left half-written: run the same command again"], result.stderr
    assert journal_query(tmp_path / "out" / "solo" / "journal.sqlite", "SELECT COUNT(*) FROM runs") == [(1,)]  # no run begun


def test_a_run_started_with_fresh_and_stopped_resumes_without_it(tmp_path):
    """Resume with: copied the run's own command line, --fresh included: followed, it backed up
    the results of the run it meant to resume and ran every job again (366,988 of a million for
    the red team)."""
    entry, config_dir = write_kinds_entry(tmp_path, pool_spec("stopafter", 6, 2))
    env = run_env(tmp_path, JOBSPLIT_TEST_STOP="interrupt", JOBSPLIT_TEST_STARTS=str(tmp_path / "starts.txt"))
    status, _, err = communicate(start_entry(entry, run_args(config_dir, tmp_path / "out", "--fre", "--workers", "1"), env), 60)
    assert status == 130, err
    resume = shlex.split(next(line for line in err.splitlines() if "Resume with:" in line).partition("Resume with:")[2])
    assert "--fre" not in resume and "--fresh" not in resume and resume[-2:] == ["--workers", "1"], resume
    again = subprocess.run(resume, env=run_env(tmp_path), capture_output=True, text=True, timeout=60)  # as a user pastes it
    assert again.returncode == 0 and "kept the previous results" not in again.stderr and re.search(r"resuming: [1-9]\d* done", again.stderr), again.stderr
    from jobsplit.run_command import _resume_argv
    from jobsplit.settings import RunFlags

    assert _resume_argv(["e.py", "run", "--fresh", "--machine", "solo"], "solo", RunFlags(machine="solo")) == ["e.py", "run", "--machine", "solo"]


def exit_code(pid: int) -> int | None:
    """The exit code of a child that ended (negative: the signal), else None."""
    ended, status = os.waitpid(pid, os.WNOHANG)
    return os.waitstatus_to_exitcode(status) if ended else None


def test_a_terminal_that_hangs_up_stops_the_run_cleanly(tmp_path):
    """An SSH session that drops takes its terminal along: the kernel sends SIGHUP, and writes
    to the terminal fail. The run stops as for SIGTERM, recorded in full, and resumes."""
    run = Run(tmp_path, "fork")
    args = [*run.args[: run.args.index("--console")], *run.args[run.args.index("--console") + 2 :], "--console", "live"]
    pid, terminal = pty.fork()
    if pid == 0:  # the run, on a terminal of its own as its controlling one
        os.execve(sys.executable, [sys.executable, str(run.entry), *args], run.env())
    try:
        os.set_blocking(terminal, False)

        def drained_and_busy() -> set[str] | None:
            try:
                while os.read(terminal, 1 << 16):  # the live display must never block on a full terminal
                    pass
            except OSError:
                pass  # nothing to read now
            return run.busy_sleepers()

        in_flight = wait_for(drained_and_busy, 60, "2 running sleepers")
        os.close(terminal)  # the terminal hangs up
        code = wait_for(lambda: exit_code(pid), 60, "the run to stop", interval=0.05)
    finally:
        kill_session(pid)
    assert code == 130, f"the run ended with {code}, not the interrupt's 130"  # stopped, not killed by SIGHUP
    assert wait_no_processes(pid, 10.0) == []
    check_resumable(run, in_flight)


def test_a_run_whose_terminal_goes_away_without_a_hangup_ends_with_its_own_status(tmp_path):
    """A run in a session of its own (``setsid``, a disowned job) whose console is a terminal
    that is then closed (its SSH window): no SIGHUP comes, as it is not the session's
    controlling terminal, but every write to it fails with EIO. The run went on, as it should,
    and did every job, then exited with status 1 ("lost sys.stderr"), which says some jobs
    failed. Like a closed pipe, a gone terminal costs only the messages."""
    share = HardeningShare(tmp_path, kinds_spec([["sleep", i, 1.0] for i in range(6)]))
    terminal, console = pty.openpty()
    process = share.start("--workers", "2", "--console", "live", stdout=console, stderr=console)
    os.close(console)
    try:
        os.set_blocking(terminal, False)

        def drained_and_two_running() -> bool:
            try:
                while os.read(terminal, 1 << 16):  # the live display must never block on a full terminal
                    pass
            except OSError:
                pass  # nothing to read now
            return len(side_lines(share.starts)) >= 2

        wait_for(drained_and_two_running, 60, "2 running jobs")
        os.close(terminal)  # the window closes: no hangup for a session it does not control
        status = process.wait(60)
    finally:
        kill_session(process.pid)
    assert status == 0
    assert_all_done_once(share, share.ids())


def test_under_nohup_a_hangup_leaves_the_run_going(tmp_path):
    """``nohup`` ignores SIGHUP so that the run outlives its terminal: that choice is kept. The
    jobs wait on a gate until the hangup is sent; the run then ends them all (a stop would
    have exited 130, their attempts interrupted)."""
    share = HardeningShare(tmp_path, kinds_spec([["gate", i, 0.0] for i in range(6)]))
    hold = tmp_path / "hold"
    hold.write_text("")
    process = share.start("--workers", "2", preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    try:
        wait_for(lambda: len(running_in_journal(share.journal)) == 2, 60, "2 running jobs")
        os.kill(process.pid, signal.SIGHUP)
        hold.unlink()
        status, _, err = communicate(process, 60)
    finally:
        hold.unlink(missing_ok=True)
        kill_session(process.pid)
    assert status == 0, err
    assert_all_done_once(share, share.ids())


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_workers_die_with_a_killed_parent_and_the_run_resumes(tmp_path, start_method):
    run = Run(tmp_path, start_method)
    process, in_flight = run.start_until_busy()
    workers = [pid for pid, _, _ in session_processes(process.pid) if pid != process.pid]
    assert len(workers) >= 2
    os.kill(process.pid, signal.SIGKILL)
    process.wait(10)
    survivors = wait_no_processes(process.pid, 20.0)  # a watchdog: their jobs would sleep 60 s more
    assert survivors == [], f"workers outlived their parent: {survivors}"
    jobs = journal_jobs(run.journal)
    done = {job_id for job_id, job in jobs.items() if job["state"] == "done"}
    assert not done & in_flight
    status, _, err = run.resume()
    assert status == 0, err
    assert f"resuming: {len(done)} done" in err
    assert sorted(side_lines(run.side)) == sorted(spec_id(s) for s in run.pool)
    assert journal_query(run.journal, "SELECT status FROM runs ORDER BY run") == [("crashed",), ("completed",)]


def test_a_finished_job_is_recorded_while_the_next_job_of_its_batch_runs(tmp_path):
    """Instant jobs get batched; the first four to start are instant, every later one runs long.

    One worker: the first job is sent alone, the next four as one batch, whose last job runs long.
    The test waits for the record (a watchdog well below the long job's 60 s), not a second:
    a busy host took longer than that to commit, and the test failed though nothing waited
    for the batch's end.
    """
    pool = pool_spec("quickfirst", 10, 4)
    entry, config_dir = write_kinds_entry(tmp_path, pool)
    side, starts, journal = tmp_path / "side.txt", tmp_path / "starts.txt", tmp_path / "out" / "solo" / "journal.sqlite"
    env = run_env(tmp_path, JOBSPLIT_TEST_SIDE=str(side), JOBSPLIT_TEST_STARTS=str(starts))
    args = run_args(config_dir, tmp_path / "out", "--workers", "1", "--start-method", "fork")
    process = start_entry(entry, args, env)
    try:
        wait_for(lambda: len(running_in_journal(journal)) == 1 and len(side_lines(side)) == 4, 60, "4 finished jobs and a long one")
        finished = set(side_lines(side))
        wait_for(lambda: finished <= done_in_journal(journal), 30, "the 4 finished jobs in the journal while the long one runs")
        recorded = done_in_journal(journal)
        assert len(side_lines(side)) == 4 and len(running_in_journal(journal)) == 1, "the long job ended: the test proves nothing"
    finally:
        os.killpg(process.pid, signal.SIGINT)
        status, _, err = communicate(process, 30)
    assert status == 130, err
    env["JOBSPLIT_TEST_SLEEP"] = "0.01"
    status, _, err = communicate(start_entry(entry, args, env), 60)
    assert status == 0, err
    ran = side_lines(side)
    assert finished <= recorded, f"finished {len(finished)} jobs, the journal has {len(recorded & finished)} of them"
    assert sorted(ran) == sorted(spec_id(s) for s in pool), "a finished job ran again after the interrupt"


def test_the_last_results_are_committed_before_the_workers_are_stopped(tmp_path):
    """The share is done, but a job left a thread that is not a daemon, so its worker cannot exit:
    the runner waits the stop grace (here 30 s) before it kills it. The last results must not
    wait with it (a second Ctrl-C, a power cut, meanwhile would lose them): they are in the
    journal and results.csv while the run is still stopping its workers."""
    pool = pool_spec("leavethread", 3, 60)
    entry, config_dir = write_kinds_entry(tmp_path, pool)
    journal = tmp_path / "out" / "solo" / "journal.sqlite"
    args = run_args(config_dir, tmp_path / "out", "--workers", "1", "--start-method", "fork", "--stop-grace", "30")
    process = start_entry(entry, args, run_env(tmp_path))
    try:
        wait_for(lambda: len(done_in_journal(journal)) == 3, 20, "the 3 jobs done in the journal")
        assert process.poll() is None, "the run ended before the stop grace: the test proves nothing"
        _, rows = read_results(journal.parent / "results.csv")
        assert sorted(row["Job ID"] for row in rows) == sorted(spec_id(s) for s in pool)
    finally:
        kill_session(process.pid)
        process.kill()
        communicate(process, 30)


@pytest.mark.parametrize("how", ["interrupt", "scheduler", "workersfirst"])
def test_jobs_that_finished_just_before_a_stop_are_recorded_and_never_run_again(tmp_path, how):
    """A short job's result waits in its worker to travel with its batch's: a stop must not lose it.

    One worker: the first job is sent alone, the next four as one batch; its fourth job stops the
    run at once (the run's Ctrl-C, or a scheduler's SIGTERM to every process, reaching the run
    first or half a second after the workers), two jobs after the last result the worker sent.
    The job it stopped is interrupted, not failed: a worker given a SIGTERM the runner did not send
    waits for the runner's own before it takes it for the job's doing.
    """
    pool = pool_spec("stopafter", 10, 4)
    entry, config_dir = write_kinds_entry(tmp_path, pool)
    side, starts, journal = tmp_path / "side.txt", tmp_path / "starts.txt", tmp_path / "out" / "solo" / "journal.sqlite"
    env = run_env(tmp_path, JOBSPLIT_TEST_SIDE=str(side), JOBSPLIT_TEST_STARTS=str(starts), JOBSPLIT_TEST_STOP=how)
    args = run_args(config_dir, tmp_path / "out", "--workers", "1", "--start-method", "fork")
    status, _, err = communicate(start_entry(entry, args, env), 60)
    assert status == 130, err
    finished = side_lines(side)
    assert len(finished) == 4 and len(side_lines(starts)) == 5, (finished, side_lines(starts))
    assert done_in_journal(journal) == set(finished), "a job that finished before the stop is not recorded done"
    _, rows = read_results(journal.parent / "results.csv")
    assert sorted(r["Job ID"] for r in rows) == sorted(finished)

    del env["JOBSPLIT_TEST_STOP"]
    status, _, err = communicate(start_entry(entry, args, env), 60)
    assert status == 0, err
    assert "resuming: 4 done, 0 failed, 6 to go" in err
    assert sorted(side_lines(side)) == sorted(spec_id(s) for s in pool), "a finished job ran again after the stop"


@pytest.mark.parametrize("kind", ["ok", "logs"])
@pytest.mark.parametrize("how", ["interrupt", "scheduler"])
def test_tiny_jobs_stopped_again_and_again_run_once_unless_a_stop_interrupted_them(tmp_path, how, kind):
    """Jobs of some 40 us, 512 to a message, and the run stopped at random moments until the share
    is done (Ctrl-C, or a scheduler's SIGTERM to every process of the run at once): every run of a
    job is in the journal, as done or as interrupted. A stop
    used to lose whole groups of finished jobs, which then ran again: the SIGTERM handler found
    the outbox's lock taken by the very thread it interrupted (formatting or sending a batch's
    results), or by a last send that thread had begun when it saw the runner's mark on the board
    before the signal came; it gave up and the worker died with the results unsent (in 4 stops of
    6 here, up to 512 jobs a stop). ``logs``: each job writes a ``logging`` record, which the job
    thread sends through the same outbox in the middle of the job; a stop there lost what the
    outbox held just the same (85 to 2,598 jobs in 10 to 12 stops of a script doing this)."""
    count = 30_000
    pool = pool_spec(kind, count, "the study")
    entry, config_dir = write_kinds_entry(tmp_path, pool)
    side, journal = tmp_path / "side.txt", tmp_path / "out" / "solo" / "journal.sqlite"
    env = run_env(tmp_path, JOBSPLIT_TEST_SIDE=str(side))
    args = run_args(config_dir, tmp_path / "out", "--workers", "2", "--start-method", "fork")
    rng = random.Random(20261207)
    stops = 0

    def finished() -> int:  # read while workers append: a line may be half there
        return side.read_bytes().count(b"\n") if side.exists() else 0

    while True:
        assert stops <= 40, "the share never finished"
        process = start_entry(entry, args, env)
        target = finished() + rng.randrange(1_000, 5_000)
        try:
            wait_for(lambda p=process, t=target: p.poll() is not None or finished() >= t, 60, f"{target} jobs run", interval=0.005)
            if process.poll() is None and how == "interrupt":
                os.kill(process.pid, signal.SIGINT)
            elif process.poll() is None:
                for pid, _, _ in session_processes(process.pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGTERM)
            status, _, err = communicate(process, 60)
        finally:
            kill_session(process.pid)
        if status == 0:
            break
        assert status == 130, err
        stops += 1
    assert stops >= 4, f"only {stops} stops: the test proves little"
    ran = Counter(side_lines(side))
    attempts = Counter(job for (job,) in journal_query(journal, "SELECT job_id FROM attempts"))
    unrecorded = {job: runs for job, runs in ran.items() if runs > attempts[job]}
    assert not unrecorded, f"{len(unrecorded)} runs of jobs left no attempt in the journal, in {stops} stops"
    ids = sorted(spec_id(s) for s in pool)
    assert {job: row["state"] for job, row in journal_jobs(journal).items()} == dict.fromkeys(ids, "done")
    _, rows = read_results(journal.parent / "results.csv")
    assert sorted(row["Job ID"] for row in rows) == ids


@pytest.mark.parametrize("how", ["interrupt", "scheduler"])
def test_a_job_that_ends_itself_on_sigterm_is_interrupted_by_a_stop_not_failed(tmp_path, how):
    """Research code often handles SIGTERM itself (to save a checkpoint, then ``sys.exit``): a job
    that fails as the run stops it runs again, like any job the stop interrupted."""
    entry, config_dir, pool = project_first(tmp_path, lambda n: [["termexit", 100 + n, 60]], pool_spec("ok", 3))
    journal = tmp_path / "out" / "solo" / "journal.sqlite"
    env = run_env(tmp_path, JOBSPLIT_TEST_STOP=how)
    args = run_args(config_dir, tmp_path / "out", "--workers", "1", "--start-method", "fork")
    status, _, err = communicate(start_entry(entry, args, env), 60)
    assert status == 130, err
    jobs = journal_jobs(journal)
    stopper = jobs[spec_id(pool[0])]
    if how == "scheduler" and stopper["attempts"] == 0:
        # Every process had the SIGTERM at once: the worker may end the job and die before it
        # sends what the job raised, and the runner, finding no job running on it any more, hands
        # the job back as never begun (seen once in some ten full runs on a loaded machine). It
        # is pending all the same, never failed, and runs again below.
        assert stopper["state"] == "pending", stopper
    else:
        assert (stopper["state"], stopper["outcome"]) == ("pending", "interrupted"), stopper
        assert stopper["error"].startswith("the run stopped while this job ran"), stopper
    if how == "interrupt":  # one SIGTERM, the run's: what the job raised comes back with it. (A scheduler's
        # and then the run's may both reach the job's handler, the second while its worker records the first:
        # the worker then goes without sending it, and the job is interrupted all the same.)
        assert "SystemExit: stopped by SIGTERM" in stopper["error"], stopper
    if how == "interrupt":  # the job outlived its SIGTERM, and its worker started no other
        assert {job["state"] for job in jobs.values()} == {"pending"}
    else:  # every process had it at once: the worker may take its next job before the run hears of it
        assert {job["state"] for job in jobs.values()} <= {"pending", "done"}

    del env["JOBSPLIT_TEST_STOP"]
    env["JOBSPLIT_TEST_SLEEP"] = "0.01"
    status, _, err = communicate(start_entry(entry, args, env), 60)
    assert status == 0, err
    assert {job["state"] for job in journal_jobs(journal).values()} == {"done"}


def test_a_job_that_ends_itself_on_sigterm_at_its_timeout_is_a_timeout_and_its_worker_goes(tmp_path):
    entry, config_dir, pool = project_first(tmp_path, lambda n: [["termexit", 100 + n, 60]], pool_spec("ok", 3))
    journal = tmp_path / "out" / "solo" / "journal.sqlite"
    args = run_args(config_dir, tmp_path / "out", "--workers", "1", "--start-method", "fork", "--timeout", "0.5")
    status, _, err = communicate(start_entry(entry, args, run_env(tmp_path)), 60)
    assert status == 1, err
    attempts = journal_query(journal, "SELECT job_id, outcome, pid, error FROM attempts ORDER BY started")
    (first, *later) = attempts
    assert first[0] == spec_id(pool[0]) and first[1] == "timeout", attempts
    assert first[3].startswith("timed out after 0.5 s") and "SystemExit: stopped by SIGTERM" in first[3]
    assert [a[1] for a in later] == ["done"] * 3
    assert first[2] not in {a[2] for a in later}, "the worker of a timed-out job is replaced"


@pytest.mark.parametrize("stop", ["timeout", "interrupt", "timeout, a list"])
def test_a_job_that_returns_when_stopped_is_not_done(tmp_path, stop):
    """A job whose own SIGTERM handler only sets a flag, so that the job saves what it has and
    returns it (a partial sum, a checkpoint's path): stopped by its timeout or by Ctrl-C, it was
    recorded as done with that partial value, never ran again, and merge-results called the
    campaign complete. It is the timeout, or the interrupted attempt, that it was: its value is
    kept in the attempt's error, not as a result, and an interrupted job runs again in full.
    A value that is not plain (a list) is named as the job returned it, not as its cells' text."""
    entry, config_dir, pool = project_first(tmp_path, lambda n: [["termreturn", 100 + n, 60]], pool_spec("ok", 2))
    journal, results = tmp_path / "out" / "solo" / "journal.sqlite", tmp_path / "out" / "solo" / "results.csv"
    env = run_env(tmp_path, **({"JOBSPLIT_TEST_STOP": "interrupt"} if stop == "interrupt" else {}), **({"JOBSPLIT_TEST_AS_LIST": "1"} if "list" in stop else {}))
    args = run_args(config_dir, tmp_path / "out", "--workers", "1", "--start-method", "fork", *(["--timeout", "0.5"] if stop.startswith("timeout") else []))
    status, _, err = communicate(start_entry(entry, args, env), 60)
    assert status == (1 if stop.startswith("timeout") else 130), err
    stopped = journal_jobs(journal)[spec_id(pool[0])]
    expected = ("failed", "timeout") if stop.startswith("timeout") else ("pending", "interrupted")
    assert (stopped["state"], stopped["outcome"]) == expected, stopped
    assert "returned after jobsplit's SIGTERM stopped it" in stopped["error"] and "'partial'" in stopped["error"], stopped["error"]
    if "list" in stop:
        assert re.search(r"\['termreturn', \d+, ", stopped["error"]), stopped["error"]  # its number, not the text '101'
    _, rows = read_results(results)
    assert spec_id(pool[0]) not in {row["Job ID"] for row in rows}
    assert all(row["Note"] != "partial" for row in rows), rows
    if stop == "interrupt":
        del env["JOBSPLIT_TEST_STOP"]
        env["JOBSPLIT_TEST_SLEEP"] = "0.01"
        status, _, err = communicate(start_entry(entry, args, env), 60)
        assert status == 0, err
        _, rows = read_results(results)
        assert sorted((row["Job ID"], row["Note"]) for row in rows if row["Kind"] == "termreturn") == [(spec_id(pool[0]), "full")]
        assert len(rows) == len(pool)


@pytest.mark.parametrize("grace", [None, "30"], ids=["default grace", "stop-grace 30"])
@pytest.mark.parametrize("stop", ["timeout", "interrupt"])
def test_a_job_that_saves_a_checkpoint_on_sigterm_gets_the_stop_grace(tmp_path, stop, grace):
    """A long job that saves a checkpoint when stopped (its own SIGTERM handler, then sys.exit),
    which takes 4 s: by default it has 1 s and is killed in the middle (no checkpoint); with
    --stop-grace 30 it saves it, on a timeout as on Ctrl-C, and what it raised is kept with the
    attempt. (The margins, 3 s and 26 s, are wide so that a busy machine changes nothing.)"""
    entry, config_dir, pool = project_first(tmp_path, lambda n: [["checkpoint", 100 + n, 60]], pool_spec("ok", 2))
    side, journal = tmp_path / "side.txt", tmp_path / "out" / "solo" / "journal.sqlite"
    env = run_env(tmp_path, JOBSPLIT_TEST_SIDE=str(side), JOBSPLIT_TEST_SAVE="4", **({"JOBSPLIT_TEST_STOP": "interrupt"} if stop == "interrupt" else {}))
    flags = ["--workers", "1", "--start-method", "fork", *(["--timeout", "0.5"] if stop == "timeout" else []), *(["--stop-grace", grace] if grace else [])]
    status, _, err = communicate(start_entry(entry, run_args(config_dir, tmp_path / "out", *flags), env), 60)
    assert status == (1 if stop == "timeout" else 130), err
    attempt = journal_query(journal, "SELECT outcome, error FROM attempts WHERE job_id = ?", (spec_id(pool[0]),))[0]
    assert attempt[0] == ("timeout" if stop == "timeout" else "interrupted"), attempt
    saved = f"saved {spec_id(pool[0])}" in side_lines(side)
    assert saved == (grace is not None), (side_lines(side), attempt)
    assert ("SystemExit: checkpoint saved" in attempt[1]) == saved, attempt


@pytest.mark.parametrize(
    "start_method",
    [
        "fork",
        "spawn",
    ],
)
def test_without_pdeathsig_workers_still_notice_the_parent_died(tmp_path, start_method):
    """The second line of defence: workers poll their parent (as on systems without prctl).

    The jobs (60 s) say when they have turned the death signal off, and the workers have 30 s
    to go: the test slept 0.2 s for the first (a busy host's jobs got no further meanwhile, and
    their death signal proved nothing) and gave them 2 s (a wall-clock bound a busy host broke)."""
    pool = pool_spec("nodeathsig", 4, 60)
    entry, config_dir = write_kinds_entry(tmp_path, pool)
    journal, marks = tmp_path / "out" / "solo" / "journal.sqlite", tmp_path / "nodeathsig.txt"
    env = run_env(tmp_path, JOBSPLIT_TEST_NODEATHSIG=str(marks))
    process = start_entry(entry, run_args(config_dir, tmp_path / "out", "--workers", "2", "--start-method", start_method), env)
    try:
        wait_for(lambda: len(running_in_journal(journal)) == 2 and len(side_lines(marks)) == 2, 60, "2 running jobs without their death signal")
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        survivors = wait_no_processes(process.pid, 30.0)  # a watchdog below the jobs' 60 s, which would end them too
        assert survivors == [], f"alive 30 s after the parent's death: {survivors}"
    finally:
        kill_session(process.pid)


JOB_CONTROL_SHELL = r'''
"""What an interactive shell does with a command: a process group of its own, in the terminal's
foreground (so that Ctrl-Z reaches it), then wait for it to end."""
import os, signal, sys
signal.signal(signal.SIGTTOU, signal.SIG_IGN)
child = os.fork()
if child == 0:
    os.setpgid(0, 0)
    os.tcsetpgrp(0, os.getpgrp())
    signal.signal(signal.SIGTTOU, signal.SIG_DFL)
    os.execve(sys.argv[1], sys.argv[1:], os.environ)
try:
    os.setpgid(child, child)
except OSError:
    pass  # the child did it first
_, status = os.waitpid(child, 0)
sys.exit(os.waitstatus_to_exitcode(status) & 0xFF)
'''


def terminal_reader(terminal: int, output: bytearray):
    """``drained(condition)``: a condition for wait_for that first reads what the run wrote to the
    pseudo-terminal (into ``output``): a live display must never block on a full terminal."""
    os.set_blocking(terminal, False)

    def drained(condition):
        def check():
            try:
                while chunk := os.read(terminal, 1 << 16):
                    output.extend(chunk)
            except OSError:
                pass  # nothing to read now
            return condition()

        return check

    return drained


def process_state(pid: int) -> str:
    """R, S, T (stopped), ... of a live process; "gone" if there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "gone"
    return stat[stat.rindex(")") + 2 :].split()[0]


def test_ctrl_z_pauses_the_jobs_too_and_no_timeout_counts_the_pause(tmp_path):
    """The terminal stops only the run's own process group on Ctrl-Z, while workers lead groups of
    their own: the run stops them too (and their jobs' programs), and continues them when the
    shell continues it (``fg``). A pause longer than --timeout stops no job, and no job's
    ``Job Running Time`` counts it (the journal's start and end stay wall-clock times). The shell
    gets the terminal back with the cursor the live display hides shown; ``status`` says "paused".
    Nor does the run's own elapsed time, from which its rate and ETA come."""
    share = HardeningShare(tmp_path, kinds_spec([["sleep", i, 2.0] for i in range(4)]))
    began = time.monotonic()
    pid, terminal = pty.fork()
    if pid == 0:  # a shell with job control on a terminal of its own, running the command
        command = share.command("--workers", "2", "--timeout", "4", "--console", "live")
        os.execve(sys.executable, [sys.executable, "-c", JOB_CONTROL_SHELL, *map(str, command)], share.env())
    output = bytearray()
    drained = terminal_reader(terminal, output)

    try:
        wait_for(drained(lambda: len(side_lines(share.starts)) == 2), 60, "2 running jobs")
        workers = {int(p) for p in side_lines(share.pids)}
        run = next(p for p, _, command in session_processes(pid) if p != pid and p not in workers and "entry.py" in command)
        os.write(terminal, b"\x1a")  # Ctrl-Z
        wait_for(drained(lambda: {process_state(p) for p in {run, *workers}} == {"T"}), 30, "the run and its workers to stop")
        drained(lambda: None)()
        assert output.rfind(b"\x1b[?25h") > output.rfind(b"\x1b[?25l") >= 0, "the cursor stays hidden at the shell's prompt"
        time.sleep(5)  # a pause longer than --timeout
        assert {process_state(p) for p in {run, *workers}} == {"T"}
        status = subprocess.run([sys.executable, "-m", "jobsplit", "status", str(share.out), "--json"], capture_output=True, text=True, env=share.env(), timeout=60, check=True)
        assert [m["state"] for m in json.loads(status.stdout)["machines"]] == ["paused"]
        assert json.loads((share.machine_dir / "progress.json").read_text())["state"] == "paused", "the snapshot other hosts read"
        assert len(side_lines(share.starts)) == 2, "a job started during the pause"
        os.killpg(run, signal.SIGCONT)  # what the shell's fg does
        (code,) = wait_for(drained(lambda: None if (ended := exit_code(pid)) is None else (ended,)), 60, "the run to end", interval=0.05)
        run_ended, lasted = time.time(), time.monotonic() - began
    finally:
        kill_session(pid)
        os.close(terminal)
    assert code == 0
    assert_all_done_once(share, share.ids())
    assert journal_query(share.journal, "SELECT outcome, COUNT(*) FROM attempts GROUP BY outcome") == [("done", 4)]
    with share.results.open(newline="") as f:
        running = {row["Job ID"]: float(row["Job Running Time"]) for row in csv.DictReader(f)}
    attempts = journal_query(share.journal, "SELECT job_id, started, ended FROM attempts")
    assert max(ended for _, _, ended in attempts) <= run_ended, "an attempt recorded as ending after the run did: its pause counted twice"
    left_out = sorted(ended - started - running[job_id] for job_id, started, ended in attempts)  # what the running time leaves out
    assert len(left_out) == 4 and min(left_out) >= -1e-3, f"a running time longer than its attempt: {left_out}"
    assert left_out[-2] >= 5, f"the two jobs running at Ctrl-Z count the pause (of at least 5 s) as running time: {left_out}"
    said = re.search(rb"this run: 4 done in (\d+\.\d)s", bytes(output))
    assert said and float(said[1]) <= lasted - 5 + 0.1, (said, lasted)  # the run's time, less the pause of at least 5 s


def test_a_run_frozen_whole_counts_the_freeze_against_no_timeout_nor_running_time(tmp_path):
    """Every process of a run stopped by SIGSTOP and continued by SIGCONT, as ``scontrol
    suspend`` and ``resume`` do (or a cgroup freezer, a paused VM): only Ctrl-Z, which the run
    stops itself, was left out of the jobs' times, so a job running through a freeze longer
    than --timeout was killed as timed out the moment it went on, its work lost. Now the freeze
    counts against no timeout, and the log says the run was frozen (the jobs that ran through it
    keep it in their running time: they measure it, and these ended before the run knew)."""
    share = HardeningShare(tmp_path, kinds_spec([["sleep", i, 2.0] for i in range(4)]))
    process = share.start("--workers", "2", "--timeout", "4")
    try:
        wait_for(lambda: len(side_lines(share.starts)) == 2, 60, "2 running jobs")
        frozen = [pid for pid, _, _ in session_processes(process.pid)]
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        wait_for(lambda: {process_state(pid) for pid in frozen} <= {"T", "gone"}, 30, "the run to stop")
        time.sleep(6)  # a freeze longer than --timeout
        for pid in reversed(frozen):  # the workers first: they go on before the run notices
            os.kill(pid, signal.SIGCONT)
        status, _, err = communicate(process, 60)
    finally:
        kill_session(process.pid)
    assert status == 0, err
    assert_all_done_once(share, share.ids())
    assert journal_query(share.journal, "SELECT outcome, COUNT(*) FROM attempts GROUP BY outcome") == [("done", 4)]
    said = re.search(r"this run was stopped for ([\d.]+)s", share.log())
    assert said and float(said[1]) >= 5, "the log says how long the run was frozen (at least 6 s, less the wait it overran)"


def test_a_worker_sent_sigtstp_stops_alone(tmp_path):
    """A forked worker inherits the main process's handler of Ctrl-Z, which stops every worker:
    a SIGTSTP sent to one worker (by a person, a tool) must stop that worker alone, as it stops
    any process, and the run goes on once it is continued."""
    share = HardeningShare(tmp_path, kinds_spec([["sleep", i, 1.5] for i in range(4)]))
    process = share.start("--workers", "2", "--start-method", "fork")
    try:
        wait_for(lambda: len(side_lines(share.starts)) == 2, 60, "2 running jobs")
        first, second = sorted({int(p) for p in side_lines(share.pids)})
        os.kill(second, signal.SIGTSTP)
        wait_for(lambda: process_state(second) == "T", 30, "the worker sent SIGTSTP to stop")
        time.sleep(0.5)  # the inherited handler stopped the other worker at once
        assert process_state(first) != "T" and process_state(process.pid) != "T"
        os.kill(second, signal.SIGCONT)
        status, _, err = communicate(process, 60)
    finally:
        kill_session(process.pid)
    assert status == 0, err
    assert_all_done_once(share, share.ids())


USER_SIGNALS_ENTRY = """\
import signal

import jobsplit


def job(i, random_obj, config, progress):
    return tuple(signal.getsignal(s) == signal.SIG_DFL for s in (signal.SIGUSR1, signal.SIGUSR2))


if __name__ == "__main__":
    jobsplit.main(job, [0, 1])
"""


def test_a_jobs_sigusr1_and_sigusr2_are_at_their_defaults(tmp_path):
    """The run stops cleanly on SIGUSR1 and SIGUSR2, as a Slurm user asks for them before the
    time limit (see test_slurm): a forked worker inherits those handlers, and a job's own signals
    are as in a process started outside jobsplit."""
    entry = tmp_path / "entry.py"
    entry.write_text(USER_SIGNALS_ENTRY)
    config_dir = write_config_dir(tmp_path / "config", header=["Run Start Time", "Job Running Time", "Job Start Time", "Usr1", "Usr2"], machines={"solo": [1.0, 1]})
    result = run_entry(entry, *run_args(config_dir, tmp_path / "out", "--workers", "1", "--start-method", "fork"), env=run_env(tmp_path))
    assert result.returncode == 0, result.stderr
    _, rows = read_results(tmp_path / "out" / "solo" / "results.csv")
    assert [(row["Usr1"], row["Usr2"]) for row in rows] == [("True", "True")] * 2


def test_a_worker_sent_sighup_keeps_logging_its_jobs_output(tmp_path):
    """A forked worker inherited the main process's SIGHUP handler, which silences a hung-up
    terminal by pointing descriptors 1 and 2 to /dev/null: in a worker, the pipes to the log. A
    SIGHUP sent to a worker of a run on a terminal must change nothing: its job's later output
    still reaches the log."""
    share = HardeningShare(tmp_path, kinds_spec([["printgate", i, 0.0] for i in range(2)]))
    hold = tmp_path / "hold"
    hold.write_text("")
    pid, terminal = pty.fork()
    if pid == 0:  # the run on a terminal of its own
        os.execve(sys.executable, [str(part) for part in share.command("--workers", "2", "--start-method", "fork")], share.env())
    drained = terminal_reader(terminal, bytearray())

    try:
        wait_for(drained(lambda: len(side_lines(share.starts)) == 2), 60, "2 running jobs")
        for worker in {int(p) for p in side_lines(share.pids)}:
            os.kill(worker, signal.SIGHUP)
        time.sleep(0.2)  # for the handlers to run
        hold.unlink()
        (code,) = wait_for(drained(lambda: None if (ended := exit_code(pid)) is None else (ended,)), 60, "the run to end", interval=0.05)
    finally:
        hold.unlink(missing_ok=True)
        kill_session(pid)
        os.close(terminal)
    assert code == 0
    assert_all_done_once(share, share.ids())
    log = share.log()
    assert all(f"after the gate {i}" in log for i in range(2)), log


SLOW_POOL_ENTRY = """
import os
import time

import jobsplit


def job(i, random_obj, config, progress):
    return i


def slow_pool():  # a pool that takes its time to build, as a big one does
    for i in range(10):
        if i == 5:
            open(os.environ["JOBSPLIT_TEST_MARK"], "w").close()
            time.sleep(60)
        yield (i,)


if __name__ == "__main__":
    jobsplit.main(job, slow_pool())
"""


SLOW_IMPORT = """
import importlib.abc
import os
import sys
import time


class SlowImport(importlib.abc.MetaPathFinder):
    # jobsplit loads its runner and console when first used: this makes that moment long
    def find_spec(self, name, path, target=None):
        if name == "{module}":
            open(os.environ["JOBSPLIT_TEST_MARK"], "w").close()
            time.sleep(60)
        return None


sys.meta_path.insert(0, SlowImport())
"""

SLOW_IMPORT_ENTRY = SLOW_IMPORT.format(module="jobsplit.run_command") + """
import jobsplit


def job(i, random_obj, config, progress):
    return i


if __name__ == "__main__":
    jobsplit.main(job, [(i,) for i in range(10)])
"""


@pytest.mark.parametrize(
    ("entry_text", "moment"),
    [(SLOW_POOL_ENTRY, "the pool to be half built"), (SLOW_IMPORT_ENTRY, "jobsplit.main to load the runner")],
    ids=["building the pool", "loading jobsplit"],
)
def test_ctrl_c_before_the_run_starts_is_one_sentence_and_exit_130(tmp_path, entry_text, moment):
    """Ctrl-C before the run's own handling of it: while the pool is still being built,
    identified or planned (tens of seconds for millions of jobs), or in the tenth of a second
    ``jobsplit.main`` takes to load the runner and the console (the first thing a user who
    started the wrong command does; found by stopping runs at random moments). A traceback,
    before: through the imports in the second case, and the process died of SIGINT."""
    entry, mark = tmp_path / "entry.py", tmp_path / "mark"
    entry.write_text(entry_text)
    config_dir = write_config_dir(tmp_path / "config", header=["Run Start Time", "Job Running Time", "Job Start Time", "I"], machines={"solo": [1.0, 1]})
    process = start_entry(entry, run_args(config_dir, tmp_path / "out"), run_env(tmp_path, JOBSPLIT_TEST_MARK=str(mark)))
    try:
        wait_for(mark.exists, 30, moment)
        os.killpg(process.pid, signal.SIGINT)  # as a terminal does: the whole process group
        status, _, err = communicate(process, 30)
    finally:
        kill_session(process.pid)
    assert status == 130, err
    assert err.strip() == "error: interrupted (Ctrl-C); nothing was left half-written: run the same command again", err
    assert not (tmp_path / "out").exists()


def test_ctrl_c_while_the_jobsplit_command_loads_is_one_sentence_and_exit_130(tmp_path):
    """The ``jobsplit`` console script imports its function's module before any of jobsplit's
    code runs: a Ctrl-C in the tenth of a second the command line takes to load (the console,
    the merge and report tools) was a traceback through the imports, and death by SIGINT."""
    mark = tmp_path / "mark"
    (tmp_path / "sitecustomize.py").write_text(SLOW_IMPORT.format(module="jobsplit.cli"))
    env = run_env(tmp_path, JOBSPLIT_TEST_MARK=str(mark), PYTHONPATH=str(tmp_path))
    process = subprocess.Popen([str(jobsplit_script()), "--help"], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for(mark.exists, 30, "the jobsplit command to load its command line")
        os.killpg(process.pid, signal.SIGINT)
        status, out, err = communicate(process, 30)
    finally:
        kill_session(process.pid)
    assert status == 130, err
    assert err.strip() == "error: interrupted (Ctrl-C); nothing was left half-written: run the same command again", err
    assert out == ""
