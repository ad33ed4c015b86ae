"""``jobsplit merge-results`` (issue 5, "Merge and status"; must-show point 3).

Three machines of one plan run separately (as three hosts would) with the same config files;
the tests merge their folders, complete or damaged: a machine with failed jobs, a machine
killed mid-run, a machine folder not given, a folder given twice, and a folder made with a
different config.ini.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import threemachines
from conftest import error_lines, run_entry
from threemachines import HEADER, MACHINES, env_for, host_state, run_args, run_machine

CONFIG = "[experiment]\nlabel = merge test\n"
MERGED_COLUMNS = [*HEADER, "Job ID", "Job Args", "Machine", "Digest", "Code"]


# --- helpers -------------------------------------------------------------------------------


def make_project(path: Path, config: str = CONFIG) -> Path:
    return threemachines.make_project(path, config)


def jobsplit_tool(*args: str | Path, cwd: Path, script: bool = False) -> subprocess.CompletedProcess[str]:
    """The ``jobsplit`` command: the console script, or ``python -m jobsplit``."""
    command = [str(Path(sys.executable).with_name("jobsplit"))] if script else [sys.executable, "-m", "jobsplit"]
    return subprocess.run(
        [*command, *map(str, args)], env=env_for(cwd), cwd=cwd, capture_output=True, text=True, encoding="utf-8", timeout=60, check=False
    )


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def printed_digest(result: subprocess.CompletedProcess[str]) -> str:
    return re.search(r"digest (\S+)", result.stderr).group(1)


class Project:
    """One project's three machines, run once for the whole module."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.entry = make_project(base)
        self.out = base / "out"
        runs = [run_machine(self.entry, self.out, m) for m in MACHINES]
        for result in runs:
            assert result.returncode == 0, result.stderr
        self.digest = printed_digest(runs[0])
        plan = json.loads(run_entry(self.entry, "plan", "--json", env=env_for(base), cwd=base).stdout)
        self.plan = {m["name"]: m["job_ids"] for m in plan["machines"]}
        self.rows = {m: read_csv(self.out / m / "results.csv")[1] for m in MACHINES}
        self.owner = {job_id: m for m, ids in self.plan.items() for job_id in ids}

    def args_of(self, machine: str) -> list[tuple[str, str]]:
        """(``group-rep``, job id) of a machine's jobs."""
        return sorted((f"{a[0]}-{a[1]}", row["Job ID"]) for row in self.rows[machine] for a in [json.loads(row["Job Args"])])

    def copy(self, dest: Path, *machines: str) -> Path:
        for machine in machines:
            shutil.copytree(self.out / machine, dest / machine)
        return dest


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Project:
    return Project(tmp_path_factory.mktemp("merge-project"))


# --- complete inputs -----------------------------------------------------------------------


def test_the_plan_splits_the_pool_among_all_three_machines(project):
    assert {m: len(ids) for m, ids in project.plan.items()} == {"m1": 8, "m2": 8, "m3": 8}
    assert {m: sorted(r["Job ID"] for r in rows) for m, rows in project.rows.items()} == {m: sorted(ids) for m, ids in project.plan.items()}


@pytest.mark.parametrize("script", [False, True], ids=["python -m jobsplit", "jobsplit script"])
def test_complete_output_root_merges_every_job_once(project, tmp_path, script):
    merged = tmp_path / "merged.csv"
    result = jobsplit_tool("merge-results", project.out, "-o", merged, cwd=tmp_path, script=script)
    assert result.returncode == 0, result.stderr
    assert "24 of 24 jobs present from 3 machine folders" in result.stderr
    assert "complete" in result.stderr and "INCOMPLETE" not in result.stderr and "missing from" not in result.stderr
    columns, rows = read_csv(merged)
    assert columns == MERGED_COLUMNS
    ids = [r["Job ID"] for r in rows]
    assert sorted(ids) == sorted(project.owner)  # every job of the plan, each exactly once
    assert len(ids) == len(set(ids)) == 24
    for row in rows:
        assert row["Machine"] == project.owner[row["Job ID"]]
    # the rows are the machines' own results.csv rows, unchanged
    expected = {tuple(r.items()) for rows_of in project.rows.values() for r in rows_of}
    assert {tuple(r.items()) for r in rows} == expected
    assert not list(tmp_path.glob("*.partial"))


def test_machine_folders_and_repeated_paths_merge_the_same(project, tmp_path):
    """Machine folders instead of the root; a folder named twice (root and itself) is one folder."""
    by_root = tmp_path / "root.csv"
    assert jobsplit_tool("merge-results", project.out, "-o", by_root, cwd=tmp_path).returncode == 0
    merged = tmp_path / "merged.csv"
    result = jobsplit_tool("merge-results", *(project.out / m for m in ("m3", "m1", "m2")), project.out, "-o", merged, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "present more than once" not in result.stderr
    assert sorted(read_csv(merged)[1], key=lambda r: r["Job ID"]) == sorted(read_csv(by_root)[1], key=lambda r: r["Job ID"])


# --- incomplete inputs ---------------------------------------------------------------------


@pytest.mark.parametrize(("failing", "missing"), [(2, "2 jobs (2 failed)"), (1, "1 job (1 failed)")])
def test_failed_jobs_of_one_machine_are_reported_missing(project, tmp_path, failing, missing):
    root = project.copy(tmp_path / "out", "m1", "m3")
    fails = dict(project.args_of("m2")[:failing])
    result = run_machine(project.entry, root, "m2", FAIL_JOBS=",".join(map(str, fails)))
    assert result.returncode == 1, result.stderr

    merged = tmp_path / "merged.csv"
    result = jobsplit_tool("merge-results", root, "-o", merged, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("missing")]
    assert line.startswith(f"missing from m2: {missing}: "), line
    assert set(fails.values()) == set(line.split(": ")[-1].split(", "))
    assert f"{24 - failing} of 24 jobs present" in result.stderr and "INCOMPLETE" in result.stderr
    assert "nothing written" in result.stderr
    assert not merged.exists()

    result = jobsplit_tool("merge-results", root, "-o", merged, "--allow-missing", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert f"missing from m2: {missing}" in result.stderr
    ids = [r["Job ID"] for r in read_csv(merged)[1]]
    assert sorted(ids) == sorted(set(project.owner) - set(fails.values()))


def test_a_machine_folder_not_given_is_missing_with_its_whole_share(project, tmp_path):
    merged = tmp_path / "merged.csv"
    result = jobsplit_tool("merge-results", project.out / "m1", project.out / "m2", "-o", merged, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "missing from m3: all 8 jobs (no folder for this machine was given)" in result.stderr
    assert "missing from m1" not in result.stderr and "missing from m2" not in result.stderr
    assert "16 of 24 jobs present" in result.stderr
    assert not merged.exists()

    result = jobsplit_tool("merge-results", project.out / "m1", project.out / "m2", "-o", merged, "--allow-missing", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert sorted(r["Job ID"] for r in read_csv(merged)[1]) == sorted(project.plan["m1"] + project.plan["m2"])

    one = jobsplit_tool("merge-results", project.out / "m1", "-o", merged, "--allow-missing", cwd=tmp_path)
    assert "8 of 24 jobs present from 1 machine folder;" in one.stderr, one.stderr
    report = jobsplit_tool("report", project.out / "m1", "-o", tmp_path / "report.html", cwd=tmp_path)
    assert report.returncode == 0 and "8 attempts on 1 machine" in report.stdout + report.stderr, report.stdout + report.stderr


def test_a_machine_killed_mid_run_has_its_unfinished_jobs_missing(project, tmp_path):
    """The jobs after the first two wait at a gate (never opened) until the kill: with jobs of
    0.5 s, a busy host's test saw two done and killed the run after it had ended."""
    root = project.copy(tmp_path / "out", "m1", "m3")
    process = subprocess.Popen(
        [sys.executable, str(project.entry), *run_args(root, "m2")],
        env=env_for(project.base, host_state(root), **threemachines.gate(tmp_path / "gate")), cwd=project.base, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    journal = root / "m2" / "journal.sqlite"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and process.poll() is None:
            if journal.exists() and done_in(journal) >= 2:
                break
            time.sleep(0.1)
        assert process.poll() is None, "the run ended before it could be killed"
        process.send_signal(signal.SIGKILL)  # a crash: no clean end of run
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    done = done_in(journal)  # the killed parent alone wrote it
    assert done == 2

    merged = tmp_path / "merged.csv"
    result = jobsplit_tool("merge-results", root, "-o", merged, "--allow-missing", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("missing")]
    match = re.match(r"missing from m2: (\d+) jobs? \(([^)]*)\): (.*)", line)
    assert match, line
    assert int(match.group(1)) == 8 - done
    assert set(re.findall(r"(\d+) (pending|running)", match.group(2))) and "failed" not in match.group(2)
    assert sum(int(n) for n, _ in re.findall(r"(\d+) (\w+)", match.group(2))) == 8 - done
    ids = [r["Job ID"] for r in read_csv(merged)[1]]
    assert len(ids) == len(set(ids)) == 16 + done
    assert set(ids) <= set(project.owner)
    missing_ids = set(match.group(3).split(", "))
    assert missing_ids == set(project.plan["m2"]) - set(ids)


def done_in(journal: Path) -> int:
    """Done jobs in a journal, read as the merge tool does: read-only, never blocking the run."""
    try:
        db = sqlite3.connect(f"{journal.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            return db.execute("SELECT COUNT(*) FROM jobs WHERE state = 'done'").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0  # not created yet


# --- duplicated inputs ---------------------------------------------------------------------


def test_a_machine_folder_copied_to_a_second_root_is_duplicated(project, tmp_path):
    other = project.copy(tmp_path / "copy", "m1")
    merged = tmp_path / "merged.csv"
    result = jobsplit_tool("merge-results", project.out, other, "-o", merged, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("present more than once")]
    assert line.startswith("present more than once: 8 jobs: "), line
    assert set(re.findall(r"([0-9a-f]{32}) \(m1 \+ m1\)", line)) == set(project.plan["m1"])
    assert "missing from" not in result.stderr
    assert not merged.exists()

    result = jobsplit_tool("merge-results", project.out, other, "-o", merged, "--allow-missing", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    ids = [r["Job ID"] for r in read_csv(merged)[1]]
    assert sorted(ids) == sorted(project.owner)  # written once each


def test_a_machine_chosen_on_two_hosts_is_named_with_its_folders(project, tmp_path):
    """The usual way a share runs twice: a second host also answered m1 (and none ran m3). One
    sentence names the machine and both folders and says what to do, beside the doubled and the
    missing jobs."""
    first = project.copy(tmp_path / "host1", "m1", "m2")
    project.copy(tmp_path / "m3-only", "m3")
    second = tmp_path / "host2"
    result = run_machine(project.entry, second, "m1")
    assert result.returncode == 0, result.stderr
    result = jobsplit_tool("merge-results", first, second, "-o", tmp_path / "merged.csv", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("machine ")]
    folders = f"({(first / 'm1').resolve()}, {(second / 'm1').resolve()})"
    assert line.startswith(f"machine m1 is in 2 folders {folders}: its share ran 2 times"), line
    assert "keep one folder per machine" in line
    assert "missing from m3: all 8 jobs" in result.stderr
    assert "present more than once: 8 jobs" in result.stderr
    assert "nothing written; pass --allow-missing to write the rows there are" in result.stderr
    doubled_only = jobsplit_tool("merge-results", first / "m1", first / "m2", second, tmp_path / "m3-only", "-o", tmp_path / "merged.csv", cwd=tmp_path)
    assert "nothing written; pass --allow-missing to write one row of each job, the first found" in doubled_only.stderr, doubled_only.stderr  # nothing missing: the hint said "the rows there are"
    report = jobsplit_tool("report", first, second, "-o", tmp_path / "report.html", cwd=tmp_path)  # the report says so too
    assert report.returncode == 0, report.stderr
    assert [line for line in report.stderr.splitlines() if line.startswith("machine ")] == [line]


def test_a_machine_run_into_two_folders_is_missing_only_what_neither_has(project, tmp_path):
    """m1 run to its end in one folder and halfway in another (a second --out): its jobs pending in
    the second were listed as missing (some twice), though done in the first, beside "24 of 24
    present"; and the report showed the last folder's counts on both m1 rows."""
    root = project.copy(tmp_path / "collected", *MACHINES)
    half = project.copy(tmp_path / "other", "m1") / "m1"
    db = sqlite3.connect(half / "journal.sqlite")
    undone = [row[0] for row in db.execute("SELECT job_id FROM attempts ORDER BY job_id LIMIT 3")]
    db.executemany("DELETE FROM attempts WHERE job_id = ?", [(job,) for job in undone])
    db.commit()
    db.close()
    result = jobsplit_tool("merge-results", root, half, "-o", tmp_path / "merged.csv", cwd=tmp_path)
    assert "missing from" not in result.stderr, result.stderr
    assert "24 of 24 jobs present" in result.stderr and "present more than once: 5 jobs" in result.stderr
    report = jobsplit_tool("report", root, half, "--json", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    m1 = sorted(m["done"] for m in json.loads(report.stdout)["machines"] if m["name"] == "m1")
    assert m1 == [5, 8], m1


def test_a_fake_folder_with_a_journal_copy_is_duplicated(project, tmp_path):
    fake = tmp_path / "elsewhere" / "extra"
    fake.mkdir(parents=True)
    shutil.copy(project.out / "m2" / "journal.sqlite", fake / "journal.sqlite")
    merged = tmp_path / "merged.csv"
    result = jobsplit_tool("merge-results", project.out, fake, "-o", merged, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "present more than once: 8 jobs" in result.stderr
    assert set(re.findall(r"([0-9a-f]{32}) \(m2 \+ m2\)", result.stderr)) == set(project.plan["m2"])
    assert "24 of 24 jobs present from 4 machine folders" in result.stderr
    assert not merged.exists()


# --- mixed digests, bad paths --------------------------------------------------------------


def test_a_folder_made_with_another_config_is_refused(project, tmp_path):
    other_entry = make_project(tmp_path / "other", config=CONFIG.replace("merge test", "another test"))
    result = run_machine(other_entry, tmp_path / "other" / "out", "m2")
    assert result.returncode == 0, result.stderr
    other_digest = printed_digest(result)
    assert other_digest != project.digest

    merged = tmp_path / "merged.csv"
    stray = tmp_path / "other" / "out" / "m2"
    result = jobsplit_tool("merge-results", project.out / "m1", stray, project.out / "m3", "-o", merged, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    (error,) = error_lines(result.stderr)
    assert error == result.stderr.strip()  # one line, nothing else
    assert project.digest in error and other_digest in error
    assert str(stray) in error and str(project.out / "m1") in error
    assert "come from different plans (config.ini differs;" in error, error  # the part that differs, from the journals
    assert not merged.exists()
    report = jobsplit_tool("report", project.out / "m1", stray, "-o", tmp_path / "r.html", cwd=tmp_path)
    assert report.returncode == 2 and "come from different plans (config.ini differs;" in report.stderr, report.stderr
    # --allow-missing does not allow mixing
    result = jobsplit_tool("merge-results", project.out, stray, "-o", merged, "--allow-missing", cwd=tmp_path)
    assert result.returncode == 2 and len(error_lines(result.stderr)) == 1
    assert not merged.exists()


@pytest.mark.parametrize("kind", ["empty folder", "plain file", "does not exist"])
def test_a_path_without_a_journal_is_named(project, tmp_path, kind):
    bad = tmp_path / "nothing-here"
    if kind == "empty folder":
        bad.mkdir()
    elif kind == "plain file":
        bad.write_text("x")
    merged = tmp_path / "merged.csv"
    result = jobsplit_tool("merge-results", project.out, bad, "-o", merged, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    (error,) = error_lines(result.stderr)
    assert str(bad) in error
    assert "Traceback" not in result.stderr
    assert not merged.exists()


def test_a_machine_folder_copied_without_its_journal_is_named_not_missing(project, tmp_path):
    """A host's folder copied without journal.sqlite (only results.csv and the log, "the results"):
    merge-results, status and report skipped it in the root and said the machine's whole share
    was missing ("no folder for this machine was given"), and --allow-missing wrote a merge
    without the results sitting in that folder."""
    root = project.copy(tmp_path / "collected", *MACHINES)
    for name in ("journal.sqlite", "journal.sqlite-wal", "journal.sqlite-shm"):
        (root / "m3" / name).unlink(missing_ok=True)
    merged = tmp_path / "merged.csv"
    for command in (["merge-results", root, "-o", merged, "--allow-missing"], ["status", root], ["report", root, "-o", tmp_path / "r.html"]):
        result = jobsplit_tool(*command, cwd=tmp_path)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        (error,) = error_lines(result.stderr)
        assert f"{root / 'm3'} holds " in error and "m3.log.gz but no journal.sqlite" in error and "copy that machine's whole output folder" in error, error
        assert "no folder for this machine was given" not in result.stderr
    assert not merged.exists()


def test_a_machine_folder_holding_only_its_results_csv_is_named_not_given(project, tmp_path):
    """Only a host's results.csv copied (``scp host:out/m3/results.csv collected/m3/``): the
    folder, named for a machine of the plan, was skipped as a merge saved there, and merge-results
    said m3's whole share was missing with "no folder for this machine was given", which it was."""
    root = project.copy(tmp_path / "collected", "m1", "m2")
    (root / "m3").mkdir()
    shutil.copy(project.out / "m3" / "results.csv", root / "m3" / "results.csv")
    result = jobsplit_tool("merge-results", root, "-o", tmp_path / "merged.csv", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    said = " ".join(result.stderr.split())
    assert "no folder for this machine was given" not in said, said
    assert f"missing from m3: all 8 jobs ({root / 'm3'} holds a results.csv but no journal.sqlite, which the tools read: copy that machine's whole output folder" in said, said
    result = jobsplit_tool("status", root, cwd=tmp_path)  # status shows m3 as not started, and says why
    assert result.returncode == 0, result.stderr
    said = " ".join((result.stdout + result.stderr).split())
    assert f"m3 is shown as not started: {root / 'm3'} holds a results.csv but no journal.sqlite" in said, said


def test_a_merge_saved_in_a_folder_of_the_root_is_no_machine_and_may_be_written_again(project, tmp_path):
    """``merge-results OUT -o OUT/merged/results.csv``, then the same again after more results: the
    folder holding it was taken for a machine's without a journal (every tool refused the root),
    and its results.csv for a run's file (-o refused)."""
    root = project.copy(tmp_path / "collected", *MACHINES)
    merged = root / "merged" / "results.csv"
    merged.parent.mkdir()
    for _ in range(2):
        result = jobsplit_tool("merge-results", root, "-o", merged, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    assert sorted(r["Job ID"] for r in read_csv(merged)[1]) == sorted(project.owner)
    assert jobsplit_tool("status", root, cwd=tmp_path).returncode == 0


def test_a_run_given_its_machine_s_folder_as_out_is_found_and_told(project, tmp_path):
    """``run --machine m3 --out OUT/m3`` writes OUT/m3/m3: the run says where, and the tools given
    OUT find it (they said m3's whole share was missing)."""
    root = project.copy(tmp_path / "collected", "m1", "m2")
    result = run_machine(project.entry, root / "m3", "m3")
    assert result.returncode == 0, result.stderr
    assert f"--out {root / 'm3'} is named as this machine's own folder, which is {root / 'm3' / 'm3'}" in " ".join(result.stderr.split()), result.stderr
    merged = tmp_path / "merged.csv"
    result = jobsplit_tool("merge-results", root, "-o", merged, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(r["Job ID"] for r in read_csv(merged)[1]) == sorted(project.owner)


def test_an_output_root_copied_into_the_collecting_folder_is_named_not_missing(project, tmp_path):
    """``rsync -a host:jobsplit-out collected/`` (no trailing slash) or ``scp -r`` into an existing
    folder puts the root itself there: ``collected/jobsplit-out/m3``. The tools said "collected
    holds no journal.sqlite; copy each machine's whole output folder", which had been done, and
    beside folders copied right, merge-results called m3's whole share missing ("no folder for
    this machine was given") with its results right there."""
    whole = project.copy(tmp_path / "whole" / "jobsplit-out", *MACHINES).parent
    for command in (["merge-results", whole, "-o", tmp_path / "merged.csv"], ["status", whole], ["report", whole, "-o", tmp_path / "r.html"]):
        result = jobsplit_tool(*command, cwd=tmp_path)
        assert result.returncode == 2, (command, result.stderr)
        (error,) = error_lines(result.stderr)
        assert f"{whole} holds no machine folder, but {whole / 'jobsplit-out'} is an output root (it holds m1, m2, m3)" in error, error
        assert error.endswith(f"give {whole / 'jobsplit-out'} instead"), error
    mixed = project.copy(tmp_path / "mixed", "m1", "m2")
    project.copy(mixed / "jobsplit-out", "m3")
    result = jobsplit_tool("merge-results", mixed, "-o", tmp_path / "merged.csv", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    said = " ".join(result.stderr.split())
    assert f"missing from m3: all 8 jobs (no folder for this machine was given; {mixed / 'jobsplit-out' / 'm3'} holds one" in said, said
    assert jobsplit_tool("merge-results", mixed, mixed / "jobsplit-out", "-o", tmp_path / "merged.csv", cwd=tmp_path).returncode == 0


def test_machines_missing_from_a_large_root_are_looked_for_below_it_in_few_looks(tmp_path, monkeypatch):
    """merge-results of an array half run (500 task folders, 500 tasks never started) looked for
    each missing machine in every task folder, after checking, for each, that the task folder
    was none: 250,000 looks on the cluster's network file system. A machine folder is looked
    into once, and no further."""
    from jobsplit import outdir

    root = tmp_path / "out"
    for i in range(40):
        (root / f"sim@{i}").mkdir(parents=True)
        (root / f"sim@{i}" / "journal.sqlite").touch()
    (root / "jobsplit-out" / "sim@45").mkdir(parents=True)
    (root / "jobsplit-out" / "sim@45" / "journal.sqlite").touch()
    looks = []
    is_file = Path.is_file
    monkeypatch.setattr(Path, "is_file", lambda self: looks.append(self) or is_file(self))
    absent = [f"sim[{i}]" for i in range(40, 80)]
    assert outdir.machine_dirs_below([root], absent) == {"sim[45]": root / "jobsplit-out" / "sim@45"}
    assert len(looks) < 200, len(looks)


# --- found problems ------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("chattr"), reason="makes a folder no one may write (chattr +i): needs root")
def test_a_journal_and_its_wal_in_a_folder_no_one_may_write_are_named_so_by_every_tool(project, tmp_path):
    """A copy taken while the run went on (its newest pages in journal.sqlite-wal, without the
    -shm) in an archive or a colleague's folder: SQLite must write the -shm to read the -wal.
    merge-results and status said so, while report and trace said the journal was not usable,
    to copy it again from its host, which would change nothing."""
    root = project.copy(tmp_path / "collected", *MACHINES)
    journal = root / "m3" / "journal.sqlite"
    keep_wal = "import os, sqlite3, sys; db = sqlite3.connect(sys.argv[1]); db.execute(\"INSERT INTO meta VALUES ('copied', 'mid-run')\"); db.commit(); os._exit(0)"
    subprocess.run([sys.executable, "-c", keep_wal, journal], check=True, timeout=60)
    journal.with_name("journal.sqlite-shm").unlink()
    assert journal.with_name("journal.sqlite-wal").stat().st_size > 0
    if subprocess.run(["chattr", "+i", journal.parent], capture_output=True, check=False).returncode != 0:
        pytest.skip("this file system has no immutable folders")
    try:
        for tool in (["merge-results", root, "-o", "-"], ["status", root], ["report", root, "-o", "-"], ["trace", root, "-o", "-"]):
            result = jobsplit_tool(*tool, cwd=tmp_path)
            (error,) = error_lines(result.stderr)
            assert result.returncode == 2 and f"{journal} cannot be read where it is" in error and "its folder is read-only" in error, (tool, result.stderr)
    finally:
        subprocess.run(["chattr", "-i", journal.parent], check=True)


def test_output_in_a_missing_folder_is_an_error_line(project, tmp_path):
    result = jobsplit_tool("merge-results", project.out, "-o", tmp_path / "no-such-folder" / "merged.csv", cwd=tmp_path)
    assert "Traceback" not in result.stderr
    assert result.returncode == 2
    (error,) = error_lines(result.stderr)
    assert "no-such-folder" in error


def test_a_damaged_journal_is_named(project, tmp_path):
    damaged = tmp_path / "m9"
    damaged.mkdir()
    (damaged / "journal.sqlite").write_bytes(b"this is not a database\n" * 100)
    result = jobsplit_tool("merge-results", project.out, damaged, "-o", tmp_path / "merged.csv", cwd=tmp_path)
    assert "Traceback" not in result.stderr
    assert result.returncode == 2
    (error,) = error_lines(result.stderr)
    assert str(damaged) in error


def test_mixed_plans_are_told_by_the_parts_that_differ():
    """Folders of different digests from a host run with --strategy or --seed: "different pools or
    config files" sent the user to compare files that were the same."""
    from jobsplit.digest import mixed_plans

    base = {"pool": "p", "config": "c", "header": "h", "machines": "m", "seed": "", "strategy": "quota"}
    assert mixed_plans([json.dumps(base), json.dumps({**base, "strategy": "cost", "seed": "x"})]) == "--seed and the strategy differ"
    assert mixed_plans([json.dumps(base), json.dumps({**base, "pool": "q"})]) == "the pool differs"
    assert mixed_plans([json.dumps(base), ""]) == "different pools or config files"  # a journal of jobsplit 0.1 recorded no parts


def test_merge_results_to_stdout_is_utf8_in_a_latin1_locale(tmp_path):
    """``merge-results OUT -o -`` wrote in the locale's encoding: in a Latin-1 one (an ISO-8859-1
    locale), the merged table ended at its first "α" in a UnicodeEncodeError traceback; it is
    UTF-8 on stdout as in a file."""
    import subprocess
    import sys

    from conftest import entry_env, write_config_dir

    write_config_dir(tmp_path, header=("Run Start Time", "Job Running Time", "Job Start Time", "Value"), machines={"m1": [1.0, 1]})
    (tmp_path / "entry.py").write_text('import jobsplit\n\ndef job(s, random_obj, config, progress):\n    return s\n\nif __name__ == "__main__":\n    jobsplit.main(job, ["α", "é"])\n', encoding="utf-8")
    env = entry_env(XDG_STATE_HOME=str(tmp_path / "state"), XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    ran = subprocess.run([sys.executable, "entry.py", "run", "--machine", "m1", "--yes", "--console", "plain", "--out", "out"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    to_file, to_stdout = (
        subprocess.run([sys.executable, "-m", "jobsplit", "merge-results", "out", "-o", output], cwd=tmp_path, env={**env, "PYTHONIOENCODING": "iso-8859-1"}, capture_output=True, timeout=60)
        for output in ("merged.csv", "-")
    )
    assert to_file.returncode == to_stdout.returncode == 0, to_stdout.stderr
    assert to_stdout.stdout == (tmp_path / "merged.csv").read_bytes() and "α".encode() in to_stdout.stdout
