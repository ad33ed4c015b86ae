"""The journal's write-ahead log (``journal.sqlite-wal``) gives back the room it outgrew.

SQLite never shrinks a WAL by itself while the database is open: it only starts writing it
again from the beginning after a checkpoint. A WAL that grew once (the share's ids written at
the start, a million jobs making 85 MB of it; or a reader, a ``sqlite3`` shell left in a
transaction or a slow ``status``, holding off the checkpoints while many groups were
committed) kept that size on disk for the rest of a run of weeks."""

from __future__ import annotations

from jobsplit import journal as journal_module
from jobsplit.journal import DoneGroup, Journal


def test_a_wal_that_grew_is_cut_back_once_checkpointed(tmp_path, monkeypatch):
    monkeypatch.setattr(journal_module, "WAL_LIMIT", 1 << 20, raising=False)  # raising: absent before the limit was set
    path = tmp_path / "journal.sqlite"
    wal = tmp_path / "journal.sqlite-wal"
    journal = Journal(path)
    ids = [f"{i:032x}" for i in range(300_000)]
    journal.initialize({"digest": "0" * 64}, ids)  # some 25 MB of pages through the WAL: past SQLite's checkpoint
    grown = wal.stat().st_size
    assert grown > 8 << 20
    run = journal.begin_run(2, done_before=0, started=1.0, host="h", pid=1, code="c", source="static")
    for n in range(3):
        group = DoneGroup(run, 0, 1, ids[n * 10 : n * 10 + 10], [1] * 10, [1.0] * 10, [2.0] * 10, [None] * 10, [None] * 10, ["row\n"] * 10)
        journal.commit(run, [group], [], 3.0)
    assert wal.stat().st_size <= 1 << 20, f"the WAL kept {wal.stat().st_size:,} bytes (it grew to {grown:,})"
    assert journal.counts()["done"] == 30
    journal.close()
