"""The durable journal: one SQLite database (WAL) per machine, the truth about its share.

Tables: ``meta`` (digest, machine, ...), ``share`` (this machine's jobs in plan order),
``outcomes`` (the last attempt of every job that ended at least once: state, attempts,
timings, result line or error),
``running`` (jobs on a worker at the last commit) and ``runs``. The view ``jobs`` joins them
into one row per job with its state: pending, running, done or failed.

``results.csv`` is rebuilt from ``outcomes``. Everything stored is plain text and numbers:
nothing read from the journal is unpickled or evaluated.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .digest import format_digest
from .errors import UserError

JOURNAL_FILE = "journal.sqlite"
SCHEMA_VERSION = "1"
PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"

Record = tuple[int, str, int, str, float, float, "str | None", "str | None"]
"""One ended attempt: (seq, state, attempts, outcome, started, running_time, row, error).

``state`` is DONE, FAILED, or PENDING for a job that will be retried; ``outcome`` says how the
attempt ended: done, error, crashed or timeout. ``started`` is seconds since the epoch."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS share (seq INTEGER PRIMARY KEY, job_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outcomes (    -- written per job: no constraint or index beyond the key
    seq INTEGER PRIMARY KEY REFERENCES share (seq),
    state TEXT NOT NULL,                -- done, failed, or pending (to be retried)
    attempts INTEGER NOT NULL,
    outcome TEXT NOT NULL,              -- how the last attempt ended: done, error, crashed, timeout
    started REAL NOT NULL,              -- seconds since the epoch
    running_time REAL NOT NULL,         -- seconds
    row TEXT,                           -- the results.csv line of a done job
    error TEXT                          -- the message or traceback of a failed attempt
);
CREATE TABLE IF NOT EXISTS running (seq INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS runs (
    run INTEGER PRIMARY KEY,
    started REAL NOT NULL,
    updated REAL NOT NULL,
    ended REAL,
    workers INTEGER NOT NULL,
    done_before INTEGER NOT NULL,       -- jobs already done when this run started
    status TEXT NOT NULL DEFAULT 'running'
);
CREATE VIEW IF NOT EXISTS jobs AS
    SELECT s.seq, s.job_id,
           CASE WHEN r.seq IS NOT NULL THEN 'running' ELSE COALESCE(o.state, 'pending') END AS state,
           COALESCE(o.attempts, 0) AS attempts, o.outcome, o.started, o.running_time, o.row, o.error
    FROM share s LEFT JOIN outcomes o ON o.seq = s.seq LEFT JOIN running r ON r.seq = s.seq;
"""


class Journal:
    """One machine's journal. Writers group their changes into few commits (see Recorder)."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        if read_only:
            self._db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, timeout=5)
            try:
                if not self.meta().get("digest"):
                    raise sqlite3.DatabaseError("no plan recorded")
            except sqlite3.DatabaseError as exc:
                self._db.close()
                raise UserError(f"{path} is not a usable jobsplit journal ({exc}); copy it again from its host, or leave its folder out") from None
        else:
            self._db = sqlite3.connect(path, isolation_level=None, timeout=30)
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")  # commits are grouped, so syncing each is cheap
                self._db.executescript(_SCHEMA)
            except sqlite3.DatabaseError as exc:
                self._db.close()
                raise UserError(f"{path} is damaged ({exc}); pass --fresh to start over (the damaged file is kept as a backup)") from None

    # --- set-up -------------------------------------------------------------------------

    @staticmethod
    def holds_a_plan(path: Path) -> bool:
        """Whether a journal exists there with its plan recorded (a run killed while creating
        it leaves one without, which the next run simply initializes)."""
        if not path.exists():
            return False
        try:
            db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            try:
                return db.execute("SELECT COUNT(*) FROM meta WHERE key = 'digest'").fetchone()[0] > 0
            finally:
                db.close()
        except sqlite3.DatabaseError:
            return False

    def meta(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT key, value FROM meta"))

    def initialize(self, meta: dict[str, str], job_ids: Sequence[str]) -> None:
        """Record the digest and this machine's share (once, when the journal is new)."""
        with self._transaction():
            self._db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", [*meta.items(), ("schema", SCHEMA_VERSION)])
            self._db.executemany("INSERT INTO share (seq, job_id) VALUES (?, ?)", enumerate(job_ids))

    def check(self, digest: str, job_ids: Sequence[str]) -> None:
        """Refuse to resume a journal made for another digest (or, impossibly, another share)."""
        recorded = self.meta().get("digest", "")
        if recorded != digest:
            raise UserError(
                f"{self.path} was made for digest {format_digest(recorded)}, but the pool and config files now give "
                f"{format_digest(digest)}; restore the files it was made with, or pass --fresh to start over (the old results are kept as a backup)"
            )
        if self.share() != list(job_ids):
            raise UserError(f"{self.path} holds a different share than the plan for this digest; pass --fresh to start over")

    def begin_run(self, workers: int) -> int:
        """Start a run: jobs a crashed run left running are pending again. Returns the run number."""
        now = time.time()
        with self._transaction():
            self._db.execute("DELETE FROM running")
            self._db.execute("UPDATE runs SET status = 'crashed', ended = updated WHERE status = 'running'")
            done = self._db.execute("SELECT COUNT(*) FROM outcomes WHERE state = 'done'").fetchone()[0]
            cursor = self._db.execute("INSERT INTO runs (started, updated, workers, done_before) VALUES (?, ?, ?, ?)", (now, now, workers, done))
        return int(cursor.lastrowid or 0)

    def end_run(self, run: int, status: str) -> None:
        now = time.time()
        with self._transaction():
            self._db.execute("DELETE FROM running")
            self._db.execute("UPDATE runs SET status = ?, ended = ?, updated = ? WHERE run = ?", (status, now, now, run))

    # --- reading ------------------------------------------------------------------------

    def share(self) -> list[str]:
        return [job_id for (job_id,) in self._db.execute("SELECT job_id FROM share ORDER BY seq")]

    def counts(self) -> dict[str, int]:
        """Jobs per state (pending, running, done, failed), zeros included."""
        counts = dict.fromkeys((PENDING, RUNNING, DONE, FAILED), 0)
        counts.update(self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state"))
        return counts

    def to_run(self, *, retry_failed: bool) -> list[tuple[int, str, int]]:
        """(seq, job id, attempts so far) of the jobs this run should start, in plan order."""
        wanted = "o.state IS NULL OR o.state = 'pending'" + (" OR o.state = 'failed'" if retry_failed else "")
        return list(
            self._db.execute(
                f"SELECT s.seq, s.job_id, COALESCE(o.attempts, 0) FROM share s LEFT JOIN outcomes o ON o.seq = s.seq WHERE {wanted} ORDER BY s.seq"
            )
        )

    def result_lines(self) -> Iterator[str]:
        """The results.csv lines of done jobs, in the order they finished."""
        return (line for _, line in self.done_lines())

    def states(self) -> Iterator[tuple[str, str]]:
        """(job id, state) of every job of the share, in plan order."""
        return iter(self._db.execute("SELECT job_id, state FROM jobs ORDER BY seq"))

    def done_lines(self) -> Iterator[tuple[str, str]]:
        """(job id, results.csv line) of every done job, in the order they finished."""
        return iter(
            self._db.execute(
                "SELECT s.job_id, o.row FROM outcomes o JOIN share s ON s.seq = o.seq WHERE o.state = 'done' ORDER BY o.started + o.running_time, o.seq"
            )
        )

    def runs(self) -> list[dict[str, object]]:
        cursor = self._db.execute("SELECT * FROM runs ORDER BY run")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor]

    def integrity(self) -> str:
        return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])

    # --- writing ------------------------------------------------------------------------

    def commit(self, run: int, records: Sequence[Record], running: Iterable[int]) -> None:
        """One transaction: ended attempts, and which jobs are running now."""
        with self._transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO outcomes (seq, state, attempts, outcome, started, running_time, row, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                records,
            )
            self._db.execute("DELETE FROM running")
            self._db.executemany("INSERT INTO running (seq) VALUES (?)", ((seq,) for seq in running))
            self._db.execute("UPDATE runs SET updated = ? WHERE run = ?", (time.time(), run))

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
