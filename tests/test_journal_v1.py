"""Journals written by jobsplit 0.1 (schema 1) are migrated in place, never refused or dropped
(issue 10, Must show 2). The fixture in tests/fixtures/v1 was made by 0.1.0 itself."""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from conftest import run_entry
from jobsplit.fingerprint import file_fingerprint
from runhelpers import journal_jobs, read_results, run_env, side_lines

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "v1"
DONE_BY_0_1 = {"0", "3", "4", "7", "8"}
"""The pool indices 0.1.0 finished (its side file); job 2 failed there, 1, 5, 6, 9 are pending."""


def copy_fixture(tmp_path: Path) -> Path:
    root = tmp_path / "v1"
    shutil.copytree(FIXTURE, root)
    return root


def schema_of(journal: Path) -> str:
    db = sqlite3.connect(journal)
    try:
        return db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0]
    finally:
        db.close()


def test_a_0_1_journal_resumes_with_nothing_done_run_again(tmp_path):
    root = copy_fixture(tmp_path)
    journal = root / "out" / "solo" / "journal.sqlite"
    assert schema_of(journal) == "1"
    before = journal_jobs(journal)
    side = tmp_path / "side.txt"
    result = run_entry(
        root / "entry.py", "run", "--config-dir", root / "config", "--out", root / "out", "--machine", "solo",
        "--yes", "--console", "plain", "--workers", "2", "--nice", "0",
        env=run_env(tmp_path, JOBSPLIT_TEST_SIDE=str(side), JOBSPLIT_TEST_SLEEP="0"), cwd=root,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr  # job 2 failed under 0.1 and stays failed
    assert "resuming: 5 done, 1 failed, 4 to go" in result.stderr
    assert sorted(side_lines(side)) == ["1", "5", "6", "9"]  # only the pending jobs ran
    assert schema_of(journal) == "2"

    after = journal_jobs(journal)
    assert set(after) == set(before)
    for job_id, job in before.items():
        if job["state"] == "done":  # kept exactly: the same row, two columns longer
            assert after[job_id]["row"].startswith(job["row"].rstrip("\n") + ",")
    assert sorted(job["state"] for job in after.values()) == ["done"] * 9 + ["failed"]
    db = sqlite3.connect(journal)
    try:
        migrated = db.execute("SELECT COUNT(*) FROM attempts WHERE run IS NULL").fetchone()[0]
        runs = db.execute("SELECT run, status, code FROM runs ORDER BY run").fetchall()
    finally:
        db.close()
    assert migrated == 6  # 0.1 knew the last attempt of 5 done jobs and 1 failed one
    assert [(run, status) for run, status, _ in runs] == [(1, "interrupted"), (2, "completed")]
    assert runs[1][2] == file_fingerprint(root / "entry.py")

    header, rows = read_results(root / "out" / "solo" / "results.csv")
    assert header[-5:] == ["Job ID", "Job Args", "Machine", "Digest", "Code"]
    digest = json.loads(subprocess.run(
        [sys.executable, str(root / "entry.py"), "plan", "--json", "--config-dir", str(root / "config")],
        capture_output=True, text=True, check=True, env=run_env(tmp_path), timeout=60,
    ).stdout)["digest"].replace("-", "")  # fmt: skip
    assert {row["Digest"] for row in rows} == {digest}
    by_index = {json.loads(row["Job Args"])[0]: row for row in rows}
    assert sorted(by_index) == [0, 1, 3, 4, 5, 6, 7, 8, 9]
    assert {str(i) for i, row in by_index.items() if row["Code"] == ""} == DONE_BY_0_1  # unknown: made by 0.1
    assert all(row["Code"] == file_fingerprint(root / "entry.py") for i, row in by_index.items() if str(i) not in DONE_BY_0_1)


def test_the_tools_read_a_0_1_folder_as_it_is(tmp_path):
    """status and merge-results open journals read-only: an unmigrated 0.1 folder still reads."""
    root = copy_fixture(tmp_path)
    tool = [sys.executable, "-m", "jobsplit"]
    status = subprocess.run([*tool, "status", str(root / "out"), "--json"], capture_output=True, text=True, env=run_env(tmp_path), timeout=60)
    assert status.returncode == 0, status.stderr
    (machine,) = json.loads(status.stdout)["machines"]
    assert (machine["done"], machine["failed"], machine["pending"]) == (5, 1, 4)
    merged = tmp_path / "merged.csv"
    merge = subprocess.run([*tool, "merge-results", str(root / "out"), "-o", str(merged), "--allow-missing"], capture_output=True, text=True, env=run_env(tmp_path), timeout=60)
    assert merge.returncode == 1, merge.stderr  # 5 jobs missing
    header, rows = read_results(merged)
    assert header[-5:] == ["Job ID", "Job Args", "Machine", "Digest", "Code"] and len(rows) == 5
    assert schema_of(root / "out" / "solo" / "journal.sqlite") == "1"  # read, not changed


def test_a_lone_cr_that_0_1_left_unquoted_reads_back_from_every_tool(tmp_path):
    """0.1 wrote rows with Python's csv module, which quotes a lone CR only from Python 3.13 on: a
    cell such as a progress bar's "50%\\r100%" went out bare, and every CSV reader broke the row
    there (the report stopped with a traceback). Every tool now reads such a row quoted: merging
    the 0.1 journal as it is, and after a run migrated and resumed it, results.csv and the report."""
    root = copy_fixture(tmp_path)
    journal = root / "out" / "solo" / "journal.sqlite"
    db = sqlite3.connect(journal)
    try:
        seq, row = db.execute("SELECT seq, row FROM outcomes WHERE row LIKE '%,[7],%'").fetchone()
        cells = next(csv.reader([row]))
        cells[4] = "50%\r100%"
        db.execute("UPDATE outcomes SET row = ? WHERE seq = ?", (",".join(cells) + "\n", seq))  # as 0.1 wrote it: no comma or quote to quote
        db.commit()
    finally:
        db.close()
    tool = [sys.executable, "-m", "jobsplit"]

    def square_of_7(results: Path) -> str:
        _, rows = read_results(results)
        return next(row["Square"] for row in rows if json.loads(row["Job Args"]) == [7])

    merged = tmp_path / "merged.csv"
    merge = subprocess.run([*tool, "merge-results", str(root / "out"), "-o", str(merged), "--allow-missing"], capture_output=True, text=True, env=run_env(tmp_path), timeout=60)
    assert merge.returncode == 1 and "Traceback" not in merge.stderr, merge.stderr  # 5 jobs missing
    assert square_of_7(merged) == "50%\r100%"

    result = run_entry(
        root / "entry.py", "run", "--config-dir", root / "config", "--out", root / "out", "--machine", "solo",
        "--yes", "--console", "plain", "--workers", "2", "--nice", "0", env=run_env(tmp_path, JOBSPLIT_TEST_SLEEP="0"), cwd=root,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr  # job 2 failed under 0.1 and stays failed
    assert square_of_7(root / "out" / "solo" / "results.csv") == "50%\r100%"
    report = subprocess.run([*tool, "report", str(root / "out"), "-o", str(tmp_path / "report.html")], capture_output=True, text=True, env=run_env(tmp_path), timeout=60)
    assert report.returncode == 0, report.stderr  # it reads the jobs' arguments from their rows
