"""Done groups (issue 14): a group of short jobs reaches the journal as columns, one
``executemany`` fed by ``zip``, and reads back exactly as attempts recorded one by one would:
same rows, ids in commit order, the ``jobs`` view and results.csv unchanged."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from jobsplit import journal as journal_module
from jobsplit.errors import StorageError
from jobsplit.journal import AttemptRow, DoneGroup, Journal, result_rows, settled
from jobsplit.states import JobState, Outcome

IDS = [f"{i:032x}" for i in range(6)]


def group(job_ids: list[str], rows: list[str], run: int = 1, at: float = 10.0) -> DoneGroup:
    count = len(job_ids)
    return DoneGroup(run, 0, 4242, job_ids, [1] * count, [at + i for i in range(count)], [at + i + 0.5 for i in range(count)], [None] * count, [0.25] * count, rows)


def failed(job_id: str, run: int = 1) -> AttemptRow:
    return AttemptRow(job_id, 1, run, 1, 4343, 20.0, 21.0, Outcome.ERROR, JobState.FAILED, args="[1]", error="boom")


def new_journal(path: Path) -> tuple[Journal, int]:
    journal = Journal(path)
    journal.initialize({"digest": "0" * 64}, IDS)
    return journal, journal.begin_run(2, done_before=0, started=1.0, host="h", pid=1, code="c", source="static")


def test_a_done_group_reads_back_as_the_attempts_recorded_one_by_one(tmp_path):
    grouped, run = new_journal(tmp_path / "grouped.sqlite")
    alone, _ = new_journal(tmp_path / "alone.sqlite")
    records = [group(IDS[:2], ["a,1\n", "b,2\n"], run), failed(IDS[2], run), group(IDS[3:5], ["d,4\n", "e,5\n"], run, at=30.0)]
    grouped.commit(run, records, [], 30.0)
    alone.commit(run, [row for record in records for row in (record.attempt_rows() if isinstance(record, DoneGroup) else [record])], [], 30.0)
    assert grouped.attempts() == alone.attempts()  # every column, ids in commit order included
    assert [a["id"] for a in grouped.attempts()] == [1, 2, 3, 4, 5]
    assert [a["job_id"] for a in grouped.attempts()] == [IDS[0], IDS[1], IDS[2], IDS[3], IDS[4]]
    assert list(grouped.result_lines()) == ["a,1\n", "b,2\n", "d,4\n", "e,5\n"]
    assert grouped.counts()[JobState.DONE] == 4 and grouped.counts()[JobState.FAILED] == 1 and grouped.counts()[JobState.PENDING] == 1
    view = sqlite3.connect(tmp_path / "grouped.sqlite").execute("SELECT job_id, state, outcome, row FROM jobs ORDER BY seq").fetchall()
    assert view[0] == (IDS[0], "done", "done", "a,1\n") and view[2] == (IDS[2], "failed", "error", None) and view[5] == (IDS[5], "pending", None, None)
    assert list(settled(records)) == [(IDS[0], "done"), (IDS[1], "done"), (IDS[2], "failed"), (IDS[3], "done"), (IDS[4], "done")]
    assert list(result_rows(records)) == ["a,1\n", "b,2\n", "d,4\n", "e,5\n"]


def test_a_lone_surrogate_in_a_done_group_is_escaped_and_the_commit_kept(tmp_path):
    journal, run = new_journal(tmp_path / "journal.sqlite")
    journal.commit(run, [group(IDS[:2], ["ok\n", "bad \udcff\n"], run)], [], 30.0)
    assert list(journal.result_lines()) == ["ok\n", "bad \\udcff\n"]


def test_a_commit_on_a_page_a_failing_disk_damaged_stops_the_run_as_a_full_disk_does(tmp_path):
    """The page that holds the attempts damaged under a journal in use: the commit is a
    StorageError (the run stops, exit 74, as on a full disk) saying that the next run rebuilds
    the journal, not a sqlite3.DatabaseError's traceback."""
    path = tmp_path / "journal.sqlite"
    journal, run = new_journal(path)
    journal.commit(run, [group(IDS[:2], ["a,1\n", "b,2\n"], run)], [], 30.0)
    page_size, root = journal._db.execute("SELECT (SELECT page_size FROM pragma_page_size), rootpage FROM sqlite_master WHERE name = 'attempts'").fetchone()
    journal.close()
    with open(path, "r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\xde\xad\xbe\xef" * (page_size // 4))  # its header too: no page of any kind
    assert Journal.damage(path) is not None
    journal = Journal(path)
    with pytest.raises(StorageError, match=r"journal\.sqlite is damaged \(database disk image is malformed\); run the same command again: a run sets a damaged journal aside"):
        journal.commit(run, [failed(IDS[2], run)], [], 40.0)
    journal.close()


class _NoJsonConnection(sqlite3.Connection):
    """An SQLite built without its JSON functions (optional before 3.38)."""

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:  # type: ignore[override]
        if "json_each" in sql:
            raise sqlite3.OperationalError("no such table: json_each")
        return super().execute(sql, *args)  # type: ignore[arg-type]


def test_the_share_is_recorded_row_by_row_where_sqlite_has_no_json_functions(tmp_path, monkeypatch):
    connect = sqlite3.connect
    monkeypatch.setattr(journal_module.sqlite3, "connect", lambda *a, **k: connect(*a, **k, factory=_NoJsonConnection))
    journal, _ = new_journal(tmp_path / "journal.sqlite")
    assert journal.job_ids() == IDS
    with pytest.raises(sqlite3.OperationalError, match="json_each"):
        journal._db.execute("SELECT value FROM json_each('[1]')")  # the stand-in really refuses it


def test_the_share_is_recorded_in_its_order_across_chunks(tmp_path, monkeypatch):
    """A share goes into ``job`` a bounded number of ids at a time (ten million ids as one JSON
    text would cost hundreds of megabytes): seq still follows the share's order."""
    monkeypatch.setattr(journal_module, "_JOBS_AT_ONCE", 4)
    ids = [f"{i * 7919 % 101:032x}" for i in range(10)]  # not sorted, so order is not the index's
    journal = Journal(tmp_path / "journal.sqlite")
    journal.initialize({"digest": "0" * 64}, ids)
    assert journal.job_ids() == ids


def test_a_new_journal_has_large_pages_and_an_older_one_keeps_its_own(tmp_path):
    """PAGE_SIZE only takes effect if set before WAL mode writes the file's header: a new
    journal must have it, and a journal made with SQLite's default pages still opens, keeps them
    and records as before."""
    journal, run = new_journal(tmp_path / "new.sqlite")
    journal.commit(run, [group(IDS[:2], ["a,1\n", "b,2\n"], run)], [], 30.0)
    journal.close()
    with sqlite3.connect(tmp_path / "new.sqlite") as db:
        assert db.execute("PRAGMA page_size").fetchone()[0] == journal_module.PAGE_SIZE == 16384

    sqlite3.connect(tmp_path / "old.sqlite").execute("PRAGMA journal_mode=WAL").close()  # 4,096-byte pages, as before
    old, run = new_journal(tmp_path / "old.sqlite")
    old.commit(run, [group(IDS[:2], ["a,1\n", "b,2\n"], run)], [], 30.0)
    assert list(old.result_lines()) == ["a,1\n", "b,2\n"]
    old.close()
    with sqlite3.connect(tmp_path / "old.sqlite") as db:
        assert db.execute("PRAGMA page_size").fetchone()[0] == 4096
