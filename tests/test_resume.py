"""Resume (issue 4, Must show 4): done jobs are skipped, --retry-failed, --fresh, digest checks,
and results.csv rebuilt from the journal. (Resuming after Ctrl-C/SIGTERM/SIGKILL: test_interrupts.)
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sqlite3
import time
from pathlib import Path

import pytest

from conftest import run_entry
from jobsplit.digest import format_digest
from runhelpers import (
    CONFIG,
    Colleague,
    LAB,
    HardeningShare,
    assert_all_done_once,
    assert_user_error,
    digest_of,
    journal_jobs,
    journal_query,
    kinds_spec,
    pool_spec,
    read_results,
    run_args,
    run_env,
    shared_by_the_lab,
    side_lines,
    spec_id,
    write_kinds_entry,
)


class Project:
    def __init__(self, root: Path, pool, config: str = CONFIG) -> None:
        self.root, self.pool = root, pool
        self.entry, self.config_dir = write_kinds_entry(root, pool, config=config)
        self.side, self.starts = root / "side.txt", root / "starts.txt"
        self.machine_dir = root / "out" / "solo"
        self.journal = self.machine_dir / "journal.sqlite"
        self.results = self.machine_dir / "results.csv"

    def run(self, *flags: str, status: int | None = 0):
        result = run_entry(
            self.entry, *run_args(self.config_dir, self.root / "out", "--workers", "2", *flags),
            env=run_env(self.root, JOBSPLIT_TEST_SIDE=str(self.side), JOBSPLIT_TEST_STARTS=str(self.starts)), timeout=90,
        )  # fmt: skip
        if status is not None:
            assert result.returncode == status, result.stderr
        return result

    def ids(self, kind: str | None = None) -> set[str]:
        return {spec_id(s) for s in self.pool if kind is None or s[0] == kind}

    def assert_csv_matches_journal(self) -> None:
        jobs = journal_jobs(self.journal)
        done_rows = sorted(job["row"] for job in jobs.values() if job["state"] == "done")
        text = self.results.read_text(encoding="utf-8")
        header_line, *lines = text.splitlines(keepends=True)
        assert header_line.startswith("Run Start Time,")
        assert sorted(lines) == done_rows
        read_results(self.results)  # parses, every line complete


def test_a_finished_share_runs_nothing_again(tmp_path):
    project = Project(tmp_path, pool_spec("ok", 12))
    project.run()
    first = side_lines(project.side)
    result = project.run()
    assert "resuming: 12 done, 0 failed, 0 to go" in result.stderr
    assert side_lines(project.side) == first
    assert sorted(first) == sorted(project.ids())
    project.assert_csv_matches_journal()


def test_a_finished_share_started_again_leaves_results_csv_as_it_is(tmp_path):
    """results.csv that is the journal's rows as the journal wrote them is not read back row by
    row nor written again (issue 14: a million done jobs started again took 40 s and 2 GB, half
    of it reading back rows the journal holds): the very file stays, byte for byte."""
    project = Project(tmp_path, pool_spec("ok", 12))
    project.run()
    before = project.results.stat()
    content = project.results.read_bytes()
    result = project.run()
    assert "resuming: 12 done, 0 failed, 0 to go" in result.stderr
    after = project.results.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # rewritten, it is a new file (atomic_file)
    assert project.results.read_bytes() == content


def test_a_results_csv_behind_its_journal_is_written_again_whole(tmp_path):
    """results.csv lacks the journal's last rows, the last one torn (a crash, a full disk): the
    part it holds is the journal's, and the file is written again from the journal with every
    row; nothing runs again."""
    project = Project(tmp_path, pool_spec("ok", 12))
    project.run()
    content = project.results.read_bytes()
    cut = content.rindex(b"\n", 0, content.rindex(b"\n", 0, len(content) - 1)) + 1  # without the last two rows
    project.results.write_bytes(content[: cut + 25])  # and the first 25 bytes of one of them
    project.run()
    assert project.results.read_bytes() == content
    assert len(side_lines(project.side)) == 12


def test_a_hard_linked_results_csv_is_written_anew_not_appended_to(tmp_path):
    """results.csv as the journal wrote it, but with another name for the same file (``ln``,
    ``cp -al`` of the output folder as a snapshot): a resume that appended to it in place
    changed the other name's content too, where every start before wrote a new file and left
    the other name as it was."""
    project = Project(tmp_path, [*pool_spec("flaky", 2), *pool_spec("ok", 4)])
    project.run(status=1)
    snapshot = tmp_path / "snapshot.csv"
    os.link(project.results, snapshot)
    kept = snapshot.read_bytes()
    project.run("--retry-failed")
    assert snapshot.read_bytes() == kept
    project.assert_csv_matches_journal()
    assert len(read_results(project.results)[1]) == 6


def test_retry_failed_reruns_the_failed_jobs_and_only_them(tmp_path):
    pool = [*pool_spec("flaky", 3), *pool_spec("raise", 1), *pool_spec("ok", 6)]
    project = Project(tmp_path, pool)
    first = project.run(status=1)
    assert "4 failed" in first.stderr and "--retry-failed" in first.stderr
    failed = project.ids("flaky") | project.ids("raise")
    assert {i for i, j in journal_jobs(project.journal).items() if j["state"] == "failed"} == failed

    again = project.run(status=1)  # without the flag: failed jobs stay failed, nothing runs
    assert "10 jobs, resuming: 6 done, 4 failed, 0 to go" in again.stderr  # the first line counted the failed as to go
    assert "4 jobs failed (not in this run: the report command lists them with their errors)" in " ".join(again.stderr.split())  # it said "see above", above nothing
    assert "note: resuming" not in again.stderr  # the first line said it
    assert len(side_lines(project.starts)) == len(pool)

    started_before = len(side_lines(project.starts))
    retried = project.run("--retry-failed", status=1)
    assert "10 jobs, resuming: 6 done, 0 failed, 4 to go" in retried.stderr and "note: resuming" not in retried.stderr
    assert sorted(side_lines(project.starts)[started_before:]) == sorted(failed)
    jobs = journal_jobs(project.journal)
    for job_id in project.ids("flaky"):
        assert (jobs[job_id]["state"], jobs[job_id]["attempts"]) == ("done", 2)
    (raising,) = project.ids("raise")
    assert (jobs[raising]["state"], jobs[raising]["attempts"]) == ("failed", 2)
    assert sorted(side_lines(project.side)) == sorted(project.ids() - {raising})
    project.assert_csv_matches_journal()

    started_before = len(side_lines(project.starts))
    project.run("--retry-failed", status=1)
    assert side_lines(project.starts)[started_before:] == [raising]
    assert journal_jobs(project.journal)[raising]["attempts"] == 3


def test_fresh_keeps_the_old_journal_and_results_in_a_backup(tmp_path):
    project = Project(tmp_path, pool_spec("ok", 10))
    project.run()
    old_results = project.results.read_bytes()
    old_runs = journal_query(project.journal, "SELECT run, status FROM runs")
    result = project.run("--fresh")
    backups = [p for p in project.machine_dir.iterdir() if p.is_dir() and p.name.startswith("backup-")]
    assert len(backups) == 1, list(project.machine_dir.iterdir())
    backup = backups[0]
    assert str(backup) in result.stderr.replace("\n", "")
    assert (backup / "results.csv").read_bytes() == old_results
    assert journal_query(backup / "journal.sqlite", "SELECT run, status FROM runs") == old_runs
    assert "resuming" not in result.stderr
    assert sorted(side_lines(project.side)) == sorted(list(project.ids()) * 2)  # every job ran again
    assert journal_query(project.journal, "SELECT run, status FROM runs") == [(1, "completed")]
    project.assert_csv_matches_journal()
    assert project.results.read_bytes() != old_results  # new timings


def test_fresh_twice_in_the_same_second_keeps_both_backups(tmp_path):
    project = Project(tmp_path, pool_spec("ok", 4))
    project.run()
    # A --fresh run a moment ago already made this second's backup folder (for the next
    # minute's seconds too, so the test does not depend on when in a second it runs).
    now = time.time()
    for offset in range(60):
        (project.machine_dir / time.strftime("backup-%Y%m%dT%H%M%SZ", time.gmtime(now + offset))).mkdir()
    result = project.run("--fresh", status=None)
    assert "Traceback" not in result.stderr
    assert result.returncode == 0, result.stderr
    kept = [p for p in project.machine_dir.glob("backup-*") if (p / "results.csv").exists()]
    assert len(kept) == 1


def test_a_journal_for_another_digest_is_refused_unless_fresh(tmp_path):
    project = Project(tmp_path, pool_spec("ok", 8))
    project.run()
    old_digest = digest_of(project.pool, project.config_dir)
    assert journal_query(project.journal, "SELECT value FROM meta WHERE key = 'digest'") == [(old_digest,)]
    config = project.config_dir / "config.ini"
    config.write_text(config.read_text() + "extra = 1\n")
    new_digest = digest_of(project.pool, project.config_dir)
    assert new_digest != old_digest
    ran = side_lines(project.side)

    refused = project.run(status=2)
    assert format_digest(old_digest) in refused.stderr and format_digest(new_digest) in refused.stderr
    assert "--fresh" in refused.stderr and "another campaign its own --out" in refused.stderr and "Traceback" not in refused.stderr
    assert "resuming" not in refused.stderr  # the summary before the refusal does not promise it
    assert side_lines(project.side) == ran
    assert journal_query(project.journal, "SELECT value FROM meta WHERE key = 'digest'") == [(old_digest,)]

    refused = project.run("--expect-digest", new_digest, status=2)  # a matching digest does not help
    assert format_digest(old_digest) in refused.stderr

    project.run("--fresh")
    assert journal_query(project.journal, "SELECT value FROM meta WHERE key = 'digest'") == [(new_digest,)]
    assert sorted(side_lines(project.side)) == sorted(list(project.ids()) * 2)
    assert len(list(project.machine_dir.glob("backup-*/journal.sqlite"))) == 1
    project.assert_csv_matches_journal()


def _change(project: Project, part: str) -> None:
    config = project.config_dir
    if part in ("config", "unrecorded", "config-unrecorded"):
        (config / "config.ini").write_text((config / "config.ini").read_text() + "extra = 1\n")
    elif part == "timeout":
        (config / "config.ini").write_text((config / "config.ini").read_text().replace("strategy = quota", "strategy = quota\ntimeout = 7200"))
    elif part == "header":
        (config / "header.csv").write_text((config / "header.csv").read_text().replace("Note", "Remark"))
    elif part == "machines":
        (config / "machines.json").write_text('{"solo": [2.0, 2]}')
    else:  # more jobs, from the same entry: as a pool listed from a folder that got new files
        (project.root / "pool.json").write_text(json.dumps([*project.pool, ["ok", 99]]))


@pytest.mark.parametrize(
    "part, said",
    [
        ("config", ": config.ini changed since it was made ([experiment] extra added); restore what it was made with"),
        ("timeout", ": config.ini changed since it was made ([jobsplit] timeout added; --timeout is a flag too, outside the digest: put config.ini back and pass that); restore"),
        ("config-unrecorded", ": config.ini changed since it was made; restore what it was made with"),  # a journal made before config.ini's keys were recorded
        ("header", ": header.csv changed since it was made; restore"),
        ("machines", ": machines.json changed since it was made; restore"),
        ("pool", ": the pool changed since it was made (if nobody changed the entry, it now builds other jobs: from files that changed, or with what differs from run to run, such as hash() of a text"),
        ("unrecorded", ": the pool or the config files changed since; restore"),  # a journal of jobsplit 0.2, which recorded no parts
    ],
)
def test_a_journal_for_another_digest_says_what_changed_since_it_was_made(tmp_path, part, said):
    """On a refusal the user had to guess which of four files changed (or whether the entry now
    builds other jobs): the journal records the digest's parts, and the refusal names those that
    differ now; and of config.ini, the keys (a timeout raised there to let long jobs finish forced
    --fresh, every done job run again, while the --timeout flag is outside the digest)."""
    project = Project(tmp_path, pool_spec("ok", 4))
    project.run()
    if part in ("unrecorded", "config-unrecorded"):
        with sqlite3.connect(project.journal) as db:
            db.execute("DELETE FROM meta WHERE key = ?", ("parts" if part == "unrecorded" else "config",))
        db.close()
    _change(project, part)
    refused = project.run(status=2)
    assert said in refused.stderr, refused.stderr
    assert refused.stderr.count("changed since") == 1


@pytest.mark.parametrize("strategy", ["cost", "quota"])
def test_a_pool_changed_under_the_cost_strategy_may_be_its_cost_hints(tmp_path, strategy):
    """Under the cost strategy the pool's part of the digest holds the cost hints too: a host
    whose cost function alone had changed was told that its entry "now builds other jobs", and
    sent to look for files that changed. The refusal names the hints there, and only there."""
    from jobsplit.errors import UserError
    from jobsplit.journal import Journal

    journal = Journal(tmp_path / "journal.sqlite")
    ids = [f"{n:032x}" for n in range(3)]
    journal.initialize({"digest": "0" * 32, "strategy": strategy, "parts": json.dumps({"pool": "a", "config": "c"})}, ids)
    with pytest.raises(UserError) as refused:
        journal.check("1" * 32, ids, lambda: {"pool": "b", "config": "c"})
    said = "it now builds other jobs or cost hints (the cost function's values, which `digest --jobs --strategy cost` lists): from files"
    assert (said in str(refused.value)) == (strategy == "cost"), refused.value


def _cut_mid_line(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 17])


def _drop_lines(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[:3] + lines[7:]), encoding="utf-8")


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _delete(path: Path) -> None:
    path.unlink()


def _garbage_line(path: Path) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write('1,2,"unterminated\n')


@pytest.mark.parametrize("damage", [_cut_mid_line, _drop_lines, _empty, _delete, _garbage_line], ids=lambda f: f.__name__.strip("_"))
def test_a_damaged_results_csv_is_rebuilt_from_the_journal(tmp_path, damage):
    project = Project(tmp_path, pool_spec("ok", 20))
    project.run()
    intact = project.results.read_text(encoding="utf-8")
    damage(project.results)
    result = project.run()
    assert "resuming: 20 done" in result.stderr
    assert len(side_lines(project.side)) == 20  # repaired from the journal, not by running jobs
    project.assert_csv_matches_journal()
    assert sorted(project.results.read_text(encoding="utf-8").splitlines()) == sorted(intact.splitlines())
    assert not project.results.with_name("results.csv.tmp").exists()



def _with_bom(path: Path) -> None:
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())


def _semicolons(path: Path) -> None:
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))
    with open(path, "w", encoding="utf-8", newline="") as f:
        csv.writer(f, delimiter=";").writerows(rows)


def test_a_results_csv_a_spreadsheet_saved_again_does_not_stop_the_share(tmp_path):
    """Opened in a spreadsheet and saved: with a UTF-8 BOM (Excel's "CSV UTF-8"), the file was
    refused as having "other columns than header.csv" (the same columns), and so was one saved
    with semicolons (a European Excel) though the journal held every result: both advices given,
    --fresh or moving it away, cost work when the journal is lost too. A BOM is read through; a
    table of other columns is kept in a backup folder and written again from the journal; with
    no journal to vouch for the rows, it is refused, saying why, and left where it is."""
    project = Project(tmp_path, pool_spec("ok", 12))
    project.run()
    intact = sorted(project.results.read_text(encoding="utf-8").splitlines())
    _with_bom(project.results)
    result = project.run()
    assert "resuming: 12 done" in result.stderr and "backup" not in result.stderr
    assert sorted(project.results.read_text(encoding="utf-8").splitlines()) == intact

    _semicolons(project.results)
    resaved = project.results.read_bytes()
    result = project.run()
    assert "resuming: 12 done" in result.stderr
    notice = next(line for line in result.stderr.splitlines() if "other columns than header.csv" in line)
    assert "separated by semicolons" in notice and "written again from the journal" in notice, notice
    (backup,) = project.machine_dir.glob("backup-*")
    assert (backup / "results.csv").read_bytes() == resaved
    assert sorted(project.results.read_text(encoding="utf-8").splitlines()) == intact
    assert len(side_lines(project.side)) == 12  # nothing ran again

    _semicolons(project.results)
    resaved = project.results.read_bytes()
    for name in ("journal.sqlite", "journal.sqlite-wal", "journal.sqlite-shm"):
        (project.machine_dir / name).unlink(missing_ok=True)
    result = project.run(status=2)
    (line,) = [line for line in result.stderr.splitlines() if line.strip()][-1:]
    assert "results.csv has other columns than header.csv gives now (its cells are separated by semicolons" in line, result.stderr
    assert "Traceback" not in result.stderr
    assert project.results.read_bytes() == resaved
    assert len(side_lines(project.side)) == 12
    # The refused run leaves no journal of its own: an empty one (no plan) sent status and the
    # merge tools to "copy it again from its host", a copy that never existed.
    assert not (project.machine_dir / "journal.sqlite").exists()
    status = run_entry(project.entry, "status", project.machine_dir.parent, env=run_env(tmp_path))
    assert "copy it again" not in status.stderr, status.stderr


def _excel_times(path: Path) -> None:
    """Times as Excel writes them back (``2026-12-07 18:05:10``), and its CR LF line ends."""
    text = re.sub(r"(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)\.\d+Z", r"\1 \2", path.read_bytes().decode("utf-8"))
    path.write_bytes(text.replace("\n", "\r\n").encode("utf-8"))


def test_a_row_whose_run_start_time_alone_a_spreadsheet_rewrote_is_no_result(tmp_path):
    """Only the Job Start Time and Job Running Time were checked: a row whose Run Start Time
    Excel had rewritten (``2026-12-07 19:01:05``) was taken back as done when the journal was
    lost, and the spreadsheet's text went on into the journal, results.csv and the merge."""
    project = Project(tmp_path, pool_spec("ok", 4))
    project.run()
    text = project.results.read_bytes().decode("utf-8")
    project.results.write_bytes(re.sub(r"(?m)^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)\.\d+Z", r"\1 \2", text).encode("utf-8"))
    for name in ("journal.sqlite", "journal.sqlite-wal", "journal.sqlite-shm"):
        (project.machine_dir / name).unlink(missing_ok=True)
    result = project.run()
    assert f"4 lines of {project.results} hold no result jobsplit can read back (lines 2-5: Run Start Time," in result.stderr, result.stderr
    assert len(side_lines(project.side)) == 8, "each job runs again"
    project.assert_csv_matches_journal()


def test_rows_a_spreadsheet_rewrote_are_kept_in_a_backup_and_named_when_the_journal_is_lost(tmp_path):
    """A results.csv saved again by Excel (its times rewritten, CR LF line ends) with the journal
    lost: every row was skipped in silence as "a damaged line", every job ran again, and the
    user's file was replaced, no backup made. Such rows are no results (a spreadsheet may have
    changed their other cells too): the file is now kept in a backup folder, and one sentence
    names the lines and says that their jobs run again (with a journal: that it rewrites the file)."""
    project = Project(tmp_path, pool_spec("ok", 12))
    project.run()
    _excel_times(project.results)
    resaved = project.results.read_bytes()
    for name in ("journal.sqlite", "journal.sqlite-wal", "journal.sqlite-shm"):
        (project.machine_dir / name).unlink(missing_ok=True)
    result = project.run()
    (backup,) = project.machine_dir.glob("backup-*")
    assert (backup / "results.csv").read_bytes() == resaved
    notice = next(line for line in result.stderr.splitlines() if "no result jobsplit can read back" in line)
    assert f"12 lines of {project.results} hold no result jobsplit can read back (lines 2-13: Run Start Time, Job Start Time or Job Running Time not as jobsplit writes them" in notice, notice
    assert notice.endswith(f"their jobs run again; the file is kept in {backup}"), notice
    assert len(side_lines(project.side)) == 24
    project.assert_csv_matches_journal()

    _excel_times(project.results)  # the journal here: it holds every result
    result = project.run()
    (again,) = set(project.machine_dir.glob("backup-*")) - {backup}
    assert f"the file is kept in {again}, and written again from the journal; their jobs run again unless the journal holds them as done" in result.stderr, result.stderr
    assert len(side_lines(project.side)) == 24
    project.assert_csv_matches_journal()


def test_a_results_csv_saved_in_another_encoding_is_kept_and_written_again_from_the_journal(tmp_path):
    """A results.csv saved in Excel's ANSI encoding (Windows-1252: a cell with "µ") stopped the
    run though the journal held every result ("cannot be read ('utf-8' codec can't decode byte
    0xb5 ...); move it away or pass --fresh", and --fresh ran the whole share again). Now it is
    kept in a backup folder and written again from the journal; with the journal lost too, the
    run is refused with the way to convert it, and the file left as it is."""
    share = HardeningShare(tmp_path, kinds_spec([["ok", 0], ["text", 1, "5 µs"], ["ok", 2]]))
    status, _, err = share.run()
    assert status == 0, err
    intact = share.results.read_bytes()
    ansi = intact.decode("utf-8").encode("cp1252")
    share.results.write_bytes(ansi)
    status, _, err = share.run()
    assert status == 0, err
    (backup,) = share.machine_dir.glob("backup-*")
    line = 1 + intact[: intact.index("µ".encode())].count(b"\n")
    said = f"{share.results} is not UTF-8 text (line {line} holds the byte 0xb5: saved in another encoding, as by a spreadsheet's \"CSV\")"
    assert f"{said}: it is kept in {backup}, and written again from the journal" in err, err
    assert (backup / "results.csv").read_bytes() == ansi
    assert share.results.read_bytes() == intact
    assert len(side_lines(share.side)) == 3

    share.results.write_bytes(ansi)
    share.remove_journal()
    status, out, err = share.run()
    said = assert_user_error(status, out, err, f"{share.results} is not UTF-8 text (line {line}", "convert it to UTF-8")
    assert "--fresh" not in said, said
    assert share.results.read_bytes() == ansi
    assert len(side_lines(share.side)) == 3


def test_another_member_of_the_group_resumes_a_share_stopped_in_a_folder_they_share(lab_path):
    """Under umask 002, results.csv, the log and progress.json came out 0664 but journal.sqlite
    and run.lock 0644 (the share's lock in the state folder too): bob's resume of alice's stopped
    share, in a folder of their group, ended in "cannot write the output folder ...; choose a
    folder you can write with --out", and that advice ran every done job again in a new folder.
    Locks and the journal now take the mode the umask gives; a file or folder another user left
    unwritable (an older jobsplit's, or made under umask 022) is named with its owner and the
    chmod to ask for."""
    share = HardeningShare(lab_path, kinds_spec([["ok", i] for i in range(3)] + [["failenv", i] for i in range(3, 6)]))
    shared_by_the_lab(share)
    alice, bob = Colleague(share, 4253), Colleague(share, 4254)
    status, _, err = alice.run(JOBSPLIT_TEST_FAIL="1")
    assert status == 1 and sorted(side_lines(share.side)) == sorted(share.ids("ok")), err
    status, _, err = bob.run("--retry-failed")
    assert status == 0, err
    assert_all_done_once(share, share.ids())
    assert sorted(side_lines(share.side)) == sorted(share.ids())  # none ran twice
    (share_lock,) = (share.root / f"state-{alice.uid}").rglob("*.lock")
    for path in (share.journal, share.machine_dir / "run.lock", share_lock):
        assert path.stat().st_mode & 0o777 == 0o664 and path.stat().st_uid == alice.uid, path
    owner = f"user {alice.uid}"
    for path, fix in ((share.machine_dir, "`chmod -R g+w` it"), (share.machine_dir / "run.lock", f"`chmod -R g+w {share.machine_dir}`"), (share.journal, f"`chmod -R g+w {share.machine_dir}`")):
        path.chmod(0o2755 if path.is_dir() else 0o644)  # as alice's umask 022, or an older jobsplit, left it
        status, out, err = bob.run()
        line = assert_user_error(status, out, err, f"{path} belongs to {owner}, and this user cannot write it; ask {owner} to {fix}, or run as {owner}")
        assert "--out" not in line, line
        path.chmod(0o2775 if path.is_dir() else 0o664)
    assert_all_done_once(share, share.ids())


def test_fresh_in_a_sticky_folder_moves_nothing_of_another_user_s_and_says_whose_it_is(lab_path):
    """--fresh in a sticky machine folder, where only a file's owner (or the folder's) may move
    it: bob's ended in a PermissionError traceback, leaving an empty backup folder, or, with
    files of both, some moved into it and the rest left (the journal backed up, results.csv not).
    Now nothing is moved, no backup folder is left, and the file is named with its owner."""
    share = HardeningShare(lab_path, kinds_spec([["ok", i] for i in range(4)]))
    shared_by_the_lab(share)
    alice, bob = Colleague(share, 4256), Colleague(share, 4257)
    for colleague in (alice, bob):  # bob's resume writes results.csv anew, his: alice's umask 022 left it hers alone to write
        status, _, err = colleague.run()
        assert status == 0, err
        share.results.chmod(0o644)
    assert share.results.stat().st_uid == bob.uid and share.journal.stat().st_uid == alice.uid
    notes = share.machine_dir / "0-notes.txt"  # bob's, and first in the folder's order: moved before alice's journal fails
    notes.write_text("bob's\n")
    os.chown(notes, bob.uid, LAB)
    share.machine_dir.chmod(0o3775)
    before = {p.name: p.stat().st_ino for p in share.machine_dir.iterdir()}
    status, out, err = bob.run("--fresh")
    line = assert_user_error(status, out, err, f"belongs to user {alice.uid}, and this user may not move it into a backup folder (Operation not permitted)", "nothing was moved")
    assert {p.name: p.stat().st_ino for p in share.machine_dir.iterdir()} == before, line  # 0-notes.txt moved back, no backup folder left
    status, _, err = alice.run("--fresh")  # the folder's owner may
    assert status == 0, err
    (backup,) = share.machine_dir.glob("backup-*")
    assert {"journal.sqlite", "results.csv"} <= {p.name for p in backup.iterdir()}
    assert_all_done_once(share, share.ids())


@pytest.mark.parametrize("how", ["deleted", "emptied", "replaced by an older copy"])
def test_a_results_csv_changed_as_the_run_starts_is_written_again_whole(tmp_path, how):
    """results.csv as the journal wrote it when read back, then deleted, emptied or replaced by
    an older copy before the run opens it to append (a user's ``rm`` or ``cp`` meant to have it
    written again, a sync tool): appended to as it then was, it lacked the journal's done rows
    (or its header) to the run's end and after, where every start before wrote it from the
    journal."""
    project = Project(tmp_path, pool_spec("ok", 12))
    project.run()
    content = project.results.read_bytes()
    older = content[: content.index(b"\n", content.index(b"\n") + 1) + 1]  # the header and one row
    changes = {
        "deleted": "results.unlink()",
        "emptied": "results.write_bytes(b'')",
        "replaced by an older copy": f"(results.parent / 'older').write_bytes({older!r}); (results.parent / 'older').replace(results)",
    }
    wrapper = tmp_path / "changed.py"
    wrapper.write_text(
        "import runpy, sys\n"
        "from pathlib import Path\n"
        "import jobsplit.machine_run as machine_run\n"
        "opening = machine_run.ResultsFile\n"
        "def ResultsFile(path, *args, **kwargs):\n"
        "    results = Path(path)\n"
        f"    {changes[how]}  # after the read-back, before the run opens it\n"
        "    return opening(path, *args, **kwargs)\n"
        "machine_run.ResultsFile = ResultsFile\n"
        f"sys.argv[0] = {str(project.entry)!r}\n"
        f"runpy.run_path({str(project.entry)!r}, run_name='__main__')\n"
    )
    project.entry, entry = wrapper, project.entry
    project.run()
    assert project.results.read_bytes() == content
    project.entry = entry
    project.assert_csv_matches_journal()
