"""The console shows the first failures and each new kind, and counts repeats; the log keeps all.

A run whose jobs all fail alike printed every failure (20,000 tracebacks on a live display made
a run of 1.9 s last 16.5 s, and buried the first one).
"""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import run_entry
from jobsplit.failurelines import IN_FULL, KIND_LENGTH, KINDS, TEXT_LIMIT, FailureLines, failure_kind
from runhelpers import journal_jobs, machine_log_text, pool_spec, run_args, run_env, spec_id, write_kinds_entry

LOG = Path("out/solo/solo.log.gz")


def test_the_kind_is_the_outcome_and_the_exception_type():
    traceback = "Traceback (most recent call last):\n  File \"x.py\", line 1, in job\nFileNotFoundError: [Errno 2] No such file: '/d/{}.dat'\n\n"
    assert failure_kind("error", traceback.format(1)) == failure_kind("error", traceback.format(2)) == "error: FileNotFoundError"
    assert failure_kind("error", "wrong result shape: the job returned 3 values") == "error: wrong result shape"
    died = "the worker process died while running this job (killed by SIGSEGV)"
    assert failure_kind("crashed", died) == f"crashed: {died}"
    assert failure_kind("crashed", None) == "crashed: "
    assert len(failure_kind("error", "x" * 500)) == len("error: ") + KIND_LENGTH


@settings(deadline=None, max_examples=300)
@given(st.lists(st.integers(0, 80), max_size=300))
def test_the_first_failures_and_each_new_kind_are_shown_and_the_rest_counted(kinds):
    shown: list[str] = []
    lines = FailureLines(shown.append, LOG)
    for n, kind in enumerate(kinds):
        lines.add(f"failure {n}", f"error: K{kind}")
    expected, seen = [], set()  # the rule, written out again
    for n, kind in enumerate(kinds):
        if n < IN_FULL or (kind not in seen and len(seen) < KINDS):
            expected.append(n)
            seen.add(kind)
    failures = [int(line.split()[1]) for line in shown if line.startswith("failure ")]
    notes = [line for line in shown if not line.startswith("failure ")]
    assert failures == expected
    assert lines.hidden == len(kinds) - len(expected)
    assert len(notes) == (1 if lines.hidden else 0)  # said once, where the first one is hidden
    if lines.hidden:
        first_hidden = next(n for n in range(len(kinds)) if n not in set(expected))
        assert shown.index(notes[0]) == sum(1 for n in expected if n < first_hidden)
        assert str(LOG) in notes[0]
        assert lines.summary().startswith(f"{lines.hidden:,} failed attempt") and str(LOG) in lines.summary()
    else:
        assert lines.summary() == ""


def test_a_huge_failure_shows_its_start_and_its_end_and_where_the_rest_is():
    """An exception carrying a file's worth of text printed megabytes to the console for each
    failure; the start and the end (a traceback's exception) are shown, the log has the rest."""
    shown: list[str] = []
    lines = FailureLines(shown.append, LOG)
    text = "Traceback (most recent call last):\n" + "x" * 5_000_000 + "\nValueError: the end"
    lines.add(text, "error: ValueError")
    lines.add("short", "error: ValueError")
    assert len(shown[0]) < TEXT_LIMIT + 200
    assert shown[0].startswith("Traceback (most recent call last):\nxxx") and shown[0].endswith("xxx\nValueError: the end")
    assert f"{len(text) - TEXT_LIMIT:,} characters not shown; the log has them: {LOG}" in shown[0]
    assert shown[1] == "short"


def test_a_run_whose_jobs_all_fail_shows_a_few_and_logs_every_one(tmp_path):
    raising, short = pool_spec("raise", 60), pool_spec("short", 4, start=100)
    pool = [*raising, *short, *pool_spec("ok", 3)]
    entry, config_dir = write_kinds_entry(tmp_path, pool)
    result = run_entry(entry, *run_args(config_dir, tmp_path / "out", "--workers", "2"), env=run_env(tmp_path), cwd=tmp_path, timeout=120)
    assert result.returncode == 1, result.stderr
    console = result.stdout + result.stderr
    failing = [spec_id(spec) for spec in raising + short]
    on_console = [job for job in failing if f"job {job} " in console]
    hidden = len(failing) - len(on_console)
    # the first IN_FULL, and the first "wrong result shape" if it came later (a new kind)
    assert IN_FULL <= len(on_console) <= IN_FULL + 1, console
    assert "wrong result shape" in console
    assert console.count("ValueError: job") <= IN_FULL
    assert f"{hidden} failed attempts of this run not shown above: each is in {tmp_path / 'out' / 'solo' / 'solo.log.gz'}" in console
    assert console.count("further failed attempts of the kinds above are counted, not shown") == 1
    assert f"{len(failing)} jobs failed" in console
    # nothing is lost: the log and the journal have every failure
    log = machine_log_text(tmp_path / "out" / "solo")
    assert all(re.search(f"job {job} .*error", log) for job in failing)
    jobs = journal_jobs(tmp_path / "out" / "solo" / "journal.sqlite")
    assert sorted(job for job, row in jobs.items() if row["state"] == "failed") == sorted(failing)
