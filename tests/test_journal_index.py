"""The ``job`` table's ids are unique in every journal: a new one gets its unique index once the
share's ids are in (built in one sorted pass, not grown by each insert: for a share of a million
jobs, 1.3 s against 7.6 s here, ``benchmarks/bench_journal.py``), a shared queue's as soon as it
is made (its jobs join as they are claimed), and one migrated from 0.1 with its rows."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from jobsplit.journal import Journal

IDS = [f"{i * 7919 % 1000:032x}" for i in range(1000)]
"""A share in an order that is not the ids' own, as a plan's is."""
V1_JOURNAL = Path(__file__).resolve().parent / "fixtures" / "v1" / "out" / "solo" / "journal.sqlite"


def unique_indexes_of_job(path: Path) -> list[list[str]]:
    """The columns of each unique index on ``job``, as SQLite lists them."""
    db = sqlite3.connect(path)
    try:
        indexes = [name for _, name, unique, _, _ in db.execute("PRAGMA index_list(job)") if unique]
        return [[column for _, _, column in db.execute("SELECT * FROM pragma_index_info(?)", (name,))] for name in indexes]
    finally:
        db.close()


def test_a_new_journal_keeps_the_share_in_order_and_refuses_an_id_twice(tmp_path):
    journal = Journal(tmp_path / "journal.sqlite")
    journal.initialize({"digest": "0" * 64}, IDS)
    assert journal.job_ids() == IDS
    assert unique_indexes_of_job(tmp_path / "journal.sqlite") == [["job_id"]]
    db = sqlite3.connect(tmp_path / "journal.sqlite")
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        db.execute("INSERT INTO job (job_id) VALUES (?)", (IDS[500],))
    db.close()
    journal.close()


def test_a_queue_s_journal_holds_each_claimed_job_once(tmp_path):
    journal = Journal(tmp_path / "journal.sqlite")
    journal.initialize({"digest": "0" * 64, "source": "redis"}, [])
    journal.hold(IDS[:3])
    journal.hold(IDS[2:5])  # a job claimed again (after a host's lease ran out, say)
    assert journal.job_ids() == IDS[:5]
    journal.close()


def test_a_journal_migrated_from_0_1_gets_the_unique_index_with_its_rows(tmp_path):
    path = tmp_path / "journal.sqlite"
    shutil.copy(V1_JOURNAL, path)
    journal = Journal(path)
    assert len(journal.job_ids()) == 10
    assert unique_indexes_of_job(path) == [["job_id"]]
    journal.close()
