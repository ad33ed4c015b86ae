"""A journal's counts and the jobs to run, as a resume reads them (issue 14: a million done jobs
started again took 40 s, three scans of every job's state among them), agree with the ``jobs``
view the ``sqlite3`` shell shows, whatever the journal holds: jobs never tried, retried, failed,
running at the last commit (tried before or not), superseded, handed back to a shared queue
with their attempts kept, and attempts running for a job no longer held."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobsplit.journal import AttemptRow, Journal, RunningAttempt
from jobsplit.states import JobState, Outcome

IDS = [f"{i:032x}" for i in range(8)]
STATES = [JobState.DONE, JobState.FAILED, JobState.PENDING, JobState.SUPERSEDED]
OUTCOME = {JobState.DONE: Outcome.DONE, JobState.FAILED: Outcome.ERROR, JobState.PENDING: Outcome.INTERRUPTED, JobState.SUPERSEDED: Outcome.DONE}

attempts = st.lists(st.tuples(st.sampled_from(range(len(IDS))), st.sampled_from(STATES)), max_size=20)
"""Ended attempts in the order they were committed: (job, the job's state after it)."""


def make(path: Path, ended: list[tuple[int, str]], running: set[int], handed_back: set[int]) -> Journal:
    journal = Journal(path)
    journal.initialize({"digest": "0" * 64}, IDS)
    run = journal.begin_run(2, done_before=0, started=1.0, host="h", pid=1, code="c", source="static")
    tried: Counter[int] = Counter()
    rows = []
    for at, (job, state) in enumerate(ended):
        tried[job] += 1
        done = state in (JobState.DONE, JobState.SUPERSEDED)
        rows.append(AttemptRow(IDS[job], tried[job], run, 0, 7, float(at), at + 0.5, OUTCOME[state], state, row=f"{job},{at}\n" if done else None, error=None if done else "e"))
    journal.commit(run, rows, [RunningAttempt(IDS[job], tried[job] + 1, 0, 7, 99.0) for job in sorted(running)], 100.0)
    journal.unhold([IDS[job] for job in sorted(handed_back)])
    return journal


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ended=attempts, running=st.sets(st.sampled_from(range(len(IDS)))), handed_back=st.sets(st.sampled_from(range(len(IDS)))), retry_failed=st.booleans())
def test_counts_and_the_jobs_to_run_are_the_jobs_view_s(tmp_path_factory, ended, running, handed_back, retry_failed) -> None:
    path = tmp_path_factory.mktemp("journal") / "journal.sqlite"
    journal = make(path, ended, running, handed_back)
    try:
        view = sqlite3.connect(path).execute("SELECT job_id, state, last_attempt FROM jobs ORDER BY seq").fetchall()
        by_state = Counter(state for _, state, _ in view)
        expected = {state: by_state[state] for state in JobState}
        assert journal.counts() == expected
        wanted = {JobState.PENDING, JobState.RUNNING} | ({JobState.FAILED} if retry_failed else set())
        counts, to_run = journal.standing(retry_failed=retry_failed)
        assert counts == expected
        assert to_run == [(job_id, attempt) for job_id, state, attempt in view if state in wanted]
    finally:
        journal.close()


def test_counts_read_one_moment_of_a_journal_a_run_writes(tmp_path) -> None:
    """``status`` and a new folder's look at its share's other folders count a journal that a run
    goes on writing: counted in three statements, a commit between them moved jobs between
    pending and running (a count below zero, once). One statement sees one moment."""
    journal = make(tmp_path / "journal.sqlite", [(0, JobState.DONE)], {1}, set())
    statements: list[str] = []
    journal._db.set_trace_callback(statements.append)
    try:
        assert journal.counts()[JobState.DONE] == 1
    finally:
        journal._db.set_trace_callback(None)
        journal.close()
    assert len(statements) == 1, statements
