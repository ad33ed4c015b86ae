"""The crash test (issue 4, Must show 1): SIGKILL the run again and again, resume until done.

1,000 jobs of about 60 ms each on 2 workers; every job appends its id to a side file (O_APPEND)
when it finishes, so every run of a job is counted, recorded or not. The main process alone is
killed (its workers must notice and exit within 2 s) at JOBSPLIT_CRASH_KILLS (default 20)
random moments; JOBSPLIT_CRASH_SEED repeats a sequence of moments.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from jobsplit.journal import Journal
from runhelpers import (
    assert_kills_explain_reruns,
    connect_ro,
    done_so_far,
    journal_jobs,
    journal_query,
    kill_session,
    pool_spec,
    read_results,
    run_args,
    run_env,
    session_processes,
    side_lines,
    spec_id,
    start_entry,
    wait_no_processes,
    write_kinds_entry,
)

JOBS = 1000
WORKERS = 2


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing_and_reruns_little(tmp_path):
    target = int(os.environ.get("JOBSPLIT_CRASH_KILLS", "20"))
    seed = int(os.environ.get("JOBSPLIT_CRASH_SEED", str(random.SystemRandom().randrange(2**32))))
    rng = random.Random(seed)
    context = f"(JOBSPLIT_CRASH_SEED={seed})"
    max_delay = min(1.2, 30.0 / target)  # enough work left for every kill: about 30 s of it in all

    pool = pool_spec("sleep", JOBS, 0.06)
    all_ids = {spec_id(s) for s in pool}
    entry, config_dir = write_kinds_entry(tmp_path, pool)
    side = tmp_path / "side.txt"
    journal = tmp_path / "out" / "solo" / "journal.sqlite"
    args = run_args(config_dir, tmp_path / "out", "--workers", str(WORKERS), "--start-method", "fork")
    env = run_env(tmp_path, JOBSPLIT_TEST_SIDE=str(side))

    crashes: list[tuple[int, int, set[str]]] = []  # (side lines before the run, after the kill, journal's done set)
    runs = 0
    while True:
        runs += 1
        assert runs <= target + 5, f"too many runs {context}"
        before = len(side_lines(side))
        with open(tmp_path / f"run-{runs}.err", "w") as err:
            process = start_entry(entry, args, env, stdout=subprocess.DEVNULL, stderr=err)
        try:
            if len(crashes) < target:
                try:
                    process.wait(rng.uniform(0.03, max_delay))
                except subprocess.TimeoutExpired:
                    os.kill(process.pid, signal.SIGKILL)  # the main process only, not its group
                    process.wait(10)
                    survivors = wait_no_processes(process.pid, 20.0)  # a watchdog, not a measure
                    assert survivors == [], f"workers outlived their parent: {survivors} {context}"
                    crashes.append((before, len(side_lines(side)), done_so_far(journal)))
                    continue
            process.wait(300)
        finally:
            if process.poll() is None or session_processes(process.pid):
                kill_session(process.pid)
                process.kill()
        err_text = (tmp_path / f"run-{runs}.err").read_text()
        assert process.returncode == 0, f"run {runs} exited {process.returncode} {context}:\n{err_text}"
        break

    assert len(crashes) >= target, f"the share finished after {len(crashes)} kills {context}"
    ran = side_lines(side)
    assert set(ran) == all_ids

    reruns = assert_kills_explain_reruns(ran, crashes, WORKERS, context)

    # Every job exactly once in the journal and in results.csv.
    jobs = journal_jobs(journal)
    assert set(jobs) == all_ids and len(jobs) == JOBS
    assert {job["state"] for job in jobs.values()} == {"done"}
    # One done attempt per job; every other attempt is one a kill cut short (recorded at the next start).
    outcomes = journal_query(journal, "SELECT outcome, COUNT(*), COUNT(DISTINCT job_id) FROM attempts GROUP BY outcome")
    assert {outcome for outcome, _, _ in outcomes} <= {"done", "interrupted"}, outcomes
    assert ("done", JOBS, JOBS) in outcomes, outcomes
    _, rows = read_results(journal.parent / "results.csv")
    assert sorted(row["Job ID"] for row in rows) == sorted(all_ids)
    db = connect_ro(journal)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        db.close()
    statuses = [status for (status,) in journal_query(journal, "SELECT status FROM runs ORDER BY run")]
    assert statuses[-1] == "completed" and set(statuses[:-1]) <= {"crashed"}, statuses
    print(f"{len(crashes)} kills, {runs} runs, re-runs per crash {reruns} {context}")


# --- a kill while the journal is being created -------------------------------------------------


def _leave_journal(machine_dir: Path, how: str) -> None:
    machine_dir.mkdir(parents=True)
    path = machine_dir / "journal.sqlite"
    if how == "empty file":  # killed right after sqlite created the file
        path.touch()
    else:  # killed after the schema was written, before the plan's transaction committed
        Journal(path).close()


@pytest.mark.parametrize("how", ["schema only", "empty file"])
def test_a_run_killed_before_its_plan_is_recorded_can_be_resumed(tmp_path, how):
    pool = pool_spec("ok", 6)
    entry, config_dir = write_kinds_entry(tmp_path, pool)
    _leave_journal(tmp_path / "out" / "solo", how)
    result = subprocess.run(
        [sys.executable, str(entry), *run_args(config_dir, tmp_path / "out")],
        env=run_env(tmp_path), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "Traceback" not in result.stderr
    assert result.returncode == 0, result.stderr
    assert sorted(journal_jobs(tmp_path / "out" / "solo" / "journal.sqlite")) == sorted(spec_id(s) for s in pool)
