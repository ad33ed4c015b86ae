"""Failure isolation (issue 3 Must show 3, issue 4 Must show 2), under fork and spawn.

Each failing job is put first in its machine's share and the run has one worker, so the
other jobs can only finish if the failure stayed with its own job and (for a dying worker) a
replacement worker took over. Every run has a subprocess timeout: a failure must never hang.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pytest

from conftest import run_entry
from conftest import write_config_dir
from runhelpers import (
    CSV_COLUMNS,
    assert_user_error,
    journal_query,
    journal_jobs,
    pool_spec,
    project_first,
    read_results,
    run_args,
    run_env,
    side_lines,
    spec_id,
    write_kinds_entry,
)

START_METHODS = ["fork", "spawn"]
OK_JOBS = pool_spec("ok", 6)

# kind -> (outcome, patterns the journal's error text must match; {i} is the job's number)
FAILURES = {
    "raise": ("error", [r"Traceback \(most recent call last\)", r"ValueError: job {i} raised on purpose"]),
    "exit3": ("crashed", [r"died while running this job \(exit status 3\)"]),
    "sigkill": ("crashed", [r"died while running this job \(killed by SIGKILL\)"]),
    "segv": ("crashed", [r"died while running this job \(killed by SIGSEGV\)"]),
    "lock": ("error", [r"wrong result shape", r"returned a lock", r"expects 4 values"]),
    "lockcell": ("error", [r"wrong result shape", r"'Note' is a lock"]),
    "lockexc": ("error", [r"Traceback \(most recent call last\)", r"LockedError: job {i} raised an unpicklable exception"]),
    "short": ("error", [r"wrong result shape", r"returned 3 values but header.csv has 4 result columns"]),
    "badkey": ("error", [r"wrong result shape", r"without \['Note'\]", r"unknown keys \['Nope'\]"]),
    "badcell": ("error", [r"wrong result shape", r"'Note' is an object; cells must be numbers, strings, booleans, None, dates, times or paths"]),
}


def run_failing(root: Path, lead, start_method: str, *flags: str, workers: int = 1, rest=OK_JOBS, first: bool = True, **write):
    """Run a project whose share starts with ``lead(n)`` (with ``first``, else in any order).

    Returns (result, pool, journal jobs by id, results.csv rows, side-file lines).
    """
    if first:
        entry, config_dir, pool = project_first(root, lead, rest, **write)
    else:
        pool = [*lead(0), *rest]
        entry, config_dir = write_kinds_entry(root, pool, **write)
    side = root / "side.txt"
    result = run_entry(
        entry,
        *run_args(config_dir, root / "out", "--workers", str(workers), "--start-method", start_method, *flags),
        env=run_env(root, JOBSPLIT_TEST_SIDE=str(side)),
        timeout=90,
    )
    machine_dir = root / "out" / "solo"
    jobs = journal_jobs(machine_dir / "journal.sqlite")
    header, rows = read_results(machine_dir / "results.csv")
    assert header == list(CSV_COLUMNS)
    return result, pool, jobs, rows, side_lines(side)


def assert_others_done(pool, failing, jobs, rows, side, *, exactly_once: bool = True):
    """Every job but ``failing`` is done and in results.csv once; it ran once (``exactly_once``).

    Without ``exactly_once``, a job may have run twice: short jobs travel in batches, and a
    worker that dies loses the results it had not sent yet (they were never recorded).
    """
    others = {spec_id(s) for s in pool} - {spec_id(s) for s in failing}
    assert {job_id for job_id, job in jobs.items() if job["state"] == "done"} == others
    assert sorted(row["Job ID"] for row in rows) == sorted(others)
    if exactly_once:
        assert sorted(side) == sorted(others)
    else:
        assert set(side) == others
        assert all(side.count(job_id) <= 2 for job_id in others)


@pytest.mark.parametrize("start_method", START_METHODS)
@pytest.mark.parametrize("kind", list(FAILURES))
def test_a_failing_job_is_recorded_and_the_others_finish(tmp_path, kind, start_method):
    lead = lambda n: [[kind, 1000 + n]]
    result, pool, jobs, rows, side = run_failing(tmp_path, lead, start_method)
    assert result.returncode == 1, result.stderr
    failing = pool[0]
    job = jobs[spec_id(failing)]
    outcome, patterns = FAILURES[kind]
    assert (job["state"], job["outcome"], job["attempts"]) == ("failed", outcome, 1), job
    for pattern in patterns:
        assert re.search(pattern.format(i=failing[1]), job["error"]), (pattern, job["error"])
    assert job["row"] is None
    assert_others_done(pool, [failing], jobs, rows, side)
    assert f"job {spec_id(failing)}" in result.stderr  # the failure is reported on the console
    assert "1 failed" in result.stderr and "run again with --retry-failed" in result.stderr


@pytest.mark.parametrize("start_method", START_METHODS)
def test_several_dying_workers_cost_only_their_own_jobs(tmp_path, start_method):
    """Two workers, three of them dying: at least one replacement worker must run a job."""
    lead = lambda n: [["exit3", 2000 + n], ["sigkill", 2000 + n], ["segv", 2000 + n], ["raise", 2000 + n]]
    result, pool, jobs, rows, side = run_failing(tmp_path, lead, start_method, workers=2, rest=pool_spec("ok", 10), first=False)
    assert result.returncode == 1, result.stderr
    outcomes = {spec[0]: jobs[spec_id(spec)]["outcome"] for spec in pool[:4]}
    assert outcomes == {"exit3": "crashed", "sigkill": "crashed", "segv": "crashed", "raise": "error"}
    assert_others_done(pool, pool[:4], jobs, rows, side, exactly_once=False)


@pytest.mark.parametrize("start_method", START_METHODS)
def test_a_hung_job_times_out_and_its_worker_slot_is_reused(tmp_path, start_method):
    lead = lambda n: [["hang", 3000 + n]]
    result, pool, jobs, rows, side = run_failing(tmp_path, lead, start_method, "--timeout", "1")
    assert result.returncode == 1, result.stderr
    hung = jobs[spec_id(pool[0])]
    assert (hung["state"], hung["outcome"]) == ("failed", "timeout")
    assert "timed out after 1 s" in hung["error"]
    assert 0.9 < hung["running_time"] < 10
    assert_others_done(pool, pool[:1], jobs, rows, side)
    # One worker: the other jobs ran after the limit, on the slot the hung job had.
    for row in rows:
        started = datetime.fromisoformat(row["Job Start Time"].replace("Z", "+00:00")).timestamp()
        assert started >= hung["started"] + 1.0 - 0.01


@pytest.mark.parametrize("start_method", START_METHODS)
def test_a_returned_value_whose_repr_hangs_times_out_like_its_job(tmp_path, start_method):
    """A cell with no text makes the failure's message show its repr(), the job's own code: it ran
    after the job counted as ended, beyond --timeout and a stop's reach, and a repr that never
    ended hung the worker, and the run, for ever (shown with 0 jobs running)."""
    lead = lambda n: [["endlessrepr", 3500 + n]]
    result, pool, jobs, rows, side = run_failing(tmp_path, lead, start_method, "--timeout", "1")
    assert result.returncode == 1, result.stderr
    hung = jobs[spec_id(pool[0])]
    assert (hung["state"], hung["outcome"]) == ("failed", "timeout"), hung
    assert_others_done(pool, pool[:1], jobs, rows, side)


def test_the_timeout_can_come_from_config_ini(tmp_path):
    from runhelpers import CONFIG

    config = CONFIG.replace("strategy = quota", "strategy = quota\ntimeout = 0.5")
    lead = lambda n: [["hang", 3100 + n]]
    result, pool, jobs, rows, side = run_failing(tmp_path, lead, "fork", config=config)
    assert result.returncode == 1, result.stderr
    hung = jobs[spec_id(pool[0])]
    assert hung["outcome"] == "timeout" and "timed out after 0.5 s" in hung["error"]
    assert_others_done(pool, pool[:1], jobs, rows, side)


@pytest.mark.parametrize("start_method", START_METHODS)
def test_retries_count_attempts(tmp_path, start_method):
    """--retries 2: an always-failing job has 3 attempts; a job failing once ends done with 2."""
    lead = lambda n: [["raise", 4000 + n], ["exit3", 4000 + n], ["flaky", 4000 + n]]
    result, pool, jobs, rows, side = run_failing(tmp_path, lead, start_method, "--retries", "2", workers=2, first=False)
    assert result.returncode == 1, result.stderr
    raising, crashing, flaky = (jobs[spec_id(s)] for s in pool[:3])
    assert (raising["state"], raising["outcome"], raising["attempts"]) == ("failed", "error", 3)
    assert (crashing["state"], crashing["outcome"], crashing["attempts"]) == ("failed", "crashed", 3)
    assert (flaky["state"], flaky["outcome"], flaky["attempts"]) == ("done", "done", 2)
    assert flaky["error"] is None
    assert_others_done(pool, pool[:2], jobs, rows, side, exactly_once=False)
    assert "it will run again (attempt 2)" in result.stderr and "it will run again (attempt 3)" in result.stderr
    assert "2 failed" in result.stderr


def test_without_retries_a_flaky_job_fails_once(tmp_path):
    lead = lambda n: [["flaky", 4100 + n]]
    result, pool, jobs, rows, side = run_failing(tmp_path, lead, "fork")
    assert result.returncode == 1
    flaky = jobs[spec_id(pool[0])]
    assert (flaky["state"], flaky["attempts"]) == ("failed", 1)
    assert "flaky job" in flaky["error"]


def test_a_traceback_names_only_the_job(tmp_path):
    """The journal's error text of a raising job is its own traceback, not the supervisor's."""
    pool = [spec for i in range(15) for spec in (["exit3", i], ["raise", i])]
    entry, config_dir = write_kinds_entry(tmp_path, pool)
    result = run_entry(entry, *run_args(config_dir, tmp_path / "out", "--workers", "2", "--start-method", "fork"), env=run_env(tmp_path), timeout=90)
    assert result.returncode == 1, result.stderr
    jobs = journal_jobs(tmp_path / "out" / "solo" / "journal.sqlite")
    errors = [job["error"] for job in jobs.values() if job["outcome"] == "error"]
    assert len(errors) == 15
    polluted = [e for e in errors if "EOFError" in e or "runner.py" in e or "worker.py" in e or "During handling" in e]
    assert not polluted, polluted[0]
    assert all(re.match(r'Traceback \(most recent call last\):\n  File ".*entry\.py", line \d+, in job\n', e) for e in errors), errors[0]


# --- workers that cannot start ------------------------------------------------------------

DIES_IN_WORKERS = """
import os

import jobsplit

if os.environ.get("ENTRY_RAN_BEFORE"):  # a worker running the entry again (spawn) exits at once
    os._exit(3)
os.environ["ENTRY_RAN_BEFORE"] = "1"


def job(i, random_obj, config, progress):
    return i


if __name__ == "__main__":
    jobsplit.main(job, list(range(6)))
"""


def test_workers_that_die_as_they_start_stop_the_run_with_one_sentence(tmp_path):
    """Replacing workers that never get going would loop for ever, saying nothing: after a few
    the run stops (exit 2), naming the exit status and the fix; nothing is lost."""
    entry = tmp_path / "entry.py"
    entry.write_text(DIES_IN_WORKERS, encoding="utf-8")
    config_dir = write_config_dir(tmp_path / "config", header=("Run Start Time", "Job Running Time", "Job Start Time", "Value"), machines={"solo": [1.0, 2]})
    out, env = tmp_path / "out", run_env(tmp_path)
    spawned = run_entry(entry, *run_args(config_dir, out, "--workers", "2", "--start-method", "spawn"), env=env, timeout=90)
    assert_user_error(spawned.returncode, spawned.stdout, spawned.stderr, "worker processes in a row exited as they started", "exit status 3", "--start-method fork")
    journal = out / "solo" / "journal.sqlite"
    assert journal_query(journal, "SELECT state, COUNT(*) FROM jobs GROUP BY state") == [("pending", 6)]
    assert journal_query(journal, "SELECT status FROM runs") == [("stopped",)]
    forked = run_entry(entry, *run_args(config_dir, out, "--workers", "2", "--start-method", "fork"), env=env, timeout=90)
    assert forked.returncode == 0, forked.stderr
    assert journal_query(journal, "SELECT state, COUNT(*) FROM jobs GROUP BY state") == [("done", 6)]



GARBLES_ITS_PIPE = """
import os
import time

import jobsplit
from jobsplit import worker


def lines(path):
    try:
        with open(path) as f:
            return len(f.read().splitlines())
    except FileNotFoundError:
        return 0


def job(i, random_obj, config, progress):
    if i == 5 and os.environ.get("JOBSPLIT_TEST_GARBLE"):
        finished = lines(os.environ["JOBSPLIT_TEST_SIDE"])
        deadline = time.monotonic() + 60  # a watchdog
        while lines(os.environ["JOBSPLIT_TEST_RESULTS"]) < 1 + finished and time.monotonic() < deadline:  # its header, then a row each
            time.sleep(0.01)  # the results of the jobs before it reach the runner and are recorded
        os.write(worker._outbox._results.fileno(), (16).to_bytes(4, "big", signed=True) + bytes(16))  # a frame of 16 bytes that are no pickle
        time.sleep(60)
    with open(os.environ["JOBSPLIT_TEST_SIDE"], "a") as side:
        side.write(f"{i}\\n")
    return i


if __name__ == "__main__":
    jobsplit.main(job, list(range(10)))
"""


def test_bytes_in_a_worker_s_pipe_that_are_no_message_stop_the_run_with_one_sentence(tmp_path):
    """What a worker sends is read as messages; bytes that are none (something else wrote into
    the pipe, as a job's forked processes once did through their logging) made the run fail with a
    traceback from pickle. Now the run stops as on an internal error (exit 70, one sentence), with
    every result reported before them recorded, and the next run does the rest. The garbling
    job waits until those results are in results.csv: it waited 0.3 s, and on a busy host the
    worker had not sent them by then (the bytes came first, and the test failed)."""
    entry = tmp_path / "entry.py"
    entry.write_text(GARBLES_ITS_PIPE, encoding="utf-8")
    config_dir = write_config_dir(tmp_path / "config", header=("Run Start Time", "Job Running Time", "Job Start Time", "Value"), machines={"solo": [1.0, 1]})
    out, side = tmp_path / "out", tmp_path / "side.txt"
    args = run_args(config_dir, out, "--workers", "1", "--start-method", "fork")
    env = run_env(tmp_path, JOBSPLIT_TEST_GARBLE="1", JOBSPLIT_TEST_SIDE=str(side), JOBSPLIT_TEST_RESULTS=str(out / "solo" / "results.csv"))
    garbled = run_entry(entry, *args, env=env, timeout=90)
    assert_user_error(garbled.returncode, garbled.stdout, garbled.stderr, "could not read what worker 0", "UnpicklingError", exit_status=70)
    finished = side_lines(side) if side.exists() else []
    assert finished, "no job finished before the garbled bytes: the test proves little"
    _, rows = read_results(out / "solo" / "results.csv")
    assert sorted(row["Value"] for row in rows) == sorted(finished), "a job that finished before the garbled bytes is not recorded"
    again = run_entry(entry, *args, env=run_env(tmp_path, JOBSPLIT_TEST_SIDE=str(side)), timeout=90)
    assert again.returncode == 0, again.stderr
    assert f"resuming: {len(finished)} done, 0 failed, {10 - len(finished)} to go" in again.stderr
    assert sorted(side_lines(side), key=int) == [str(i) for i in range(10)]  # each job once
