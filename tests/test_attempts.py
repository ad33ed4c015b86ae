"""Every attempt is a row of the journal's ``attempts`` table (issue 10, Must show 3): a real run
with a failure, retries, a crash and a timeout, read back with plain SQL."""

from __future__ import annotations

import signal
import sqlite3

from conftest import run_entry
from runhelpers import journal_jobs, pool_spec, run_args, run_env, spec_id, write_kinds_entry


def test_attempts_hold_one_row_per_attempt_with_slot_pid_times_and_outcome(tmp_path):
    pool = [["raise", 1], ["sigkill", 2], ["flaky", 3], ["hang", 4], *pool_spec("sleep", 3, 0.01), *pool_spec("sleep", 3, 0.12)]
    entry, config_dir = write_kinds_entry(tmp_path, pool)
    result = run_entry(
        entry, *run_args(config_dir, tmp_path / "out", "--workers", "2", "--retries", "1", "--timeout", "1", "--start-method", "fork"),
        env=run_env(tmp_path), timeout=120,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    journal = tmp_path / "out" / "solo" / "journal.sqlite"
    db = sqlite3.connect(journal)
    db.row_factory = sqlite3.Row
    try:
        rows = [dict(r) for r in db.execute("SELECT * FROM attempts ORDER BY id")]
        (run,) = db.execute("SELECT run, pid FROM runs").fetchall()
    finally:
        db.close()
    by_job: dict[str, list[dict]] = {}
    for row in rows:
        by_job.setdefault(row["job_id"], []).append(row)
    outcomes = {spec[0]: [(r["attempt"], r["outcome"], r["state"]) for r in by_job[spec_id(spec)]] for spec in pool[:4]}
    assert outcomes == {
        "raise": [(1, "error", "pending"), (2, "error", "failed")],
        "sigkill": [(1, "crashed", "pending"), (2, "crashed", "failed")],
        "flaky": [(1, "error", "pending"), (2, "done", "done")],
        "hang": [(1, "timeout", "pending"), (2, "timeout", "failed")],
    }
    assert len(rows) == 8 + 6  # every attempt once, nothing else
    for row in rows:
        assert row["run"] == run[0] and row["slot"] in (0, 1) and row["pid"] > 0 and row["pid"] != run[1]
        assert 0 <= row["ended"] - row["started"] < 60
        if row["outcome"] == "done":
            assert row["row"] and row["error"] is None and row["args"] is None
        else:
            assert row["row"] is None and row["error"] and row["args"]
    killed = by_job[spec_id(pool[1])]
    assert [(r["signal"], r["exit_code"]) for r in killed] == [(signal.SIGKILL, None)] * 2
    assert len({r["pid"] for r in killed}) == 2  # a replacement worker ran the second attempt
    timed_out = by_job[spec_id(pool[3])]
    assert all(r["signal"] in (signal.SIGTERM, signal.SIGKILL) and r["ended"] - r["started"] >= 1.0 for r in timed_out)
    sleepers = {spec_id(spec) for spec in pool[4:]}  # by id, not by time: on a busy machine an instant job can take 5 ms
    done = [r for r in rows if r["job_id"] in sleepers]
    assert len(done) == 6 and all(r["outcome"] == "done" for r in done)
    assert all(r["cpu_seconds"] is not None and r["cpu_seconds"] >= 0 for r in done)  # CPU from 1 ms on
    assert [(r["max_rss"] or 0) > 1 << 20 for r in done] == [r["ended"] - r["started"] >= 0.1 for r in done]  # peak memory from 0.1 s on
    # ...and the jobs view still has one row per job
    jobs = journal_jobs(journal)
    assert len(jobs) == len(pool) and jobs[spec_id(pool[2])]["attempts"] == 2 and jobs[spec_id(pool[2])]["state"] == "done"
