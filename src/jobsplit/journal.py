"""The durable journal: one SQLite database (WAL) per machine folder, the truth about it.

It records the jobs this machine holds or ran, whatever decided that it should (a static
share of the plan, a shared queue, a cluster array index), and every attempt at them:

``meta``      digest, machine, strategy, header, the plan's shape, the entry's code fingerprint;
              for a shared queue's run also ``source`` (redis) and ``pool`` (the pool's size)
``job``       the jobs this machine holds, keyed by job id; ``seq`` is the order it got them
              (plan order for a static share; a shared queue adds them as claimed, and drops
              those it hands back)
``attempts``  one row per ended attempt: worker slot and pid, wall-clock start and end, outcome,
              the job's state after it, exit status or signal, peak memory, CPU time, and the
              results.csv line (done) or the error (not done). Never updated, but for one
              case: a shared queue that accepted another host's result first re-marks this
              done attempt superseded (see ``supersede``)
``running``   attempts on a worker at the last commit (a killed run leaves them: the next run
              records them as interrupted)
``runs``      one row per run of the ``run`` command
``jobs``      a view: one row per job with its state (pending, running, done, failed,
              superseded), attempts, and its newest attempt's outcome, times, row and error

Everything stored is plain text and numbers: nothing read back is unpickled or evaluated.
Journals of schema 1 (jobsplit 0.1: ``share`` and ``outcomes`` keyed by seq) are migrated in
place when a run opens them; the read-only tools read them as they are.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from itertools import groupby, repeat
from pathlib import Path
from typing import Any, NamedTuple, cast

from .config import FLAG_SETTINGS, config_changes
from .digest import PART_NAMES, format_digest
from .errors import StorageError, UserError
from .fileid import file_id
from .outdir import folder_error, others_file
from .permissions import may_write, not_writable, owned_here
from .results import requoted
from .states import JobState, Outcome, RunStatus
from .text import clean_text

SCHEMA_VERSION = "2"


class AttemptRow(NamedTuple):
    """One row of ``attempts`` (its ``id`` aside)."""

    job_id: str
    attempt: int
    run: int | None
    slot: int | None
    pid: int | None
    started: float
    ended: float
    outcome: str
    state: str
    exit_code: int | None = None
    signal: int | None = None
    max_rss: int | None = None
    cpu_seconds: float | None = None
    row: str | None = None
    args: str | None = None
    error: str | None = None


class DoneGroup(NamedTuple):
    """Done attempts of one worker's group of results, as columns: a group of short jobs costs
    the runner one object and the journal one ``executemany`` fed by ``zip``, not a Python
    object per job. Its rows are ``attempts`` rows like any other (outcome and state done)."""

    run: int
    slot: int
    pid: int
    job_ids: list[str]
    attempts: list[int]
    started: list[float]
    ended: list[float]
    max_rss: list[int | None]
    cpu_seconds: list[float | None]
    rows: list[str]

    def attempt_rows(self) -> list[AttemptRow]:
        return [
            AttemptRow(job_id, attempt, self.run, self.slot, self.pid, started, ended, Outcome.DONE, JobState.DONE, None, None, max_rss, cpu, row)
            for job_id, attempt, started, ended, max_rss, cpu, row in zip(
                self.job_ids, self.attempts, self.started, self.ended, self.max_rss, self.cpu_seconds, self.rows
            )
        ]


Ended = AttemptRow | DoneGroup
"""What the journal commits: one attempt, or a group of done ones."""


def settled(records: Iterable[Ended]) -> Iterator[tuple[str, str]]:
    """(job id, state) of every attempt in ``records``, in order."""
    for record in records:
        if isinstance(record, DoneGroup):
            yield from zip(record.job_ids, repeat(JobState.DONE))
        else:
            yield record.job_id, record.state


def result_rows(records: Iterable[Ended]) -> Iterator[str]:
    """The results.csv lines of the attempts in ``records`` that left their job done, in order."""
    for record in records:
        if isinstance(record, DoneGroup):
            yield from record.rows
        elif record.state == JobState.DONE and record.row is not None:
            yield record.row


class RunningAttempt(NamedTuple):
    """One row of ``running``: an attempt on a worker now."""

    job_id: str
    attempt: int
    slot: int
    pid: int
    started: float


_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS job (
    seq INTEGER PRIMARY KEY,            -- the order this machine got the job (plan order for a static share)
    job_id TEXT NOT NULL                -- 32 hex characters, unique (index job_ids)
);
CREATE TABLE IF NOT EXISTS attempts (   -- appended once per ended attempt, never updated
    id INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,           -- 1, 2, ... per job
    run INTEGER,                        -- runs.run (NULL: migrated from a 0.1 journal, or rebuilt)
    slot INTEGER,                       -- worker slot, 0 .. workers - 1
    pid INTEGER,                        -- worker process id
    started REAL NOT NULL,              -- wall clock, UTC epoch seconds
    ended REAL NOT NULL,
    outcome TEXT NOT NULL,              -- done, error, crashed, timeout, interrupted
    state TEXT NOT NULL,                -- the job's state after it: done, failed, pending, superseded
    exit_code INTEGER,                  -- the worker's exit status, when it died (crashed, timeout)
    signal INTEGER,                     -- or the signal that killed it
    max_rss INTEGER,                    -- peak resident memory of the worker during the attempt, bytes
    cpu_seconds REAL,                   -- CPU time of the attempt, waited-for child processes included
    row TEXT,                           -- the results.csv line (done)
    args TEXT,                          -- the job's arguments as canonical JSON (not done; done rows hold them)
    error TEXT                          -- message or traceback (not done)
);                                      -- no index: appending is the hot path, readers scan once
CREATE TABLE IF NOT EXISTS running (
    job_id TEXT PRIMARY KEY, attempt INTEGER NOT NULL, slot INTEGER, pid INTEGER, started REAL
);
CREATE TABLE IF NOT EXISTS runs (
    run INTEGER PRIMARY KEY,
    started REAL NOT NULL,
    updated REAL NOT NULL,
    ended REAL,
    workers INTEGER NOT NULL,
    done_before INTEGER NOT NULL,       -- jobs already done when this run started
    status TEXT NOT NULL DEFAULT 'running',  -- running, completed, interrupted, stopped, crashed
    host TEXT, pid INTEGER, code TEXT, source TEXT
);
"""

_JOB_INDEX = "CREATE UNIQUE INDEX IF NOT EXISTS job_ids ON job (job_id);"
"""Made once the share's ids are in (see Journal.initialize): SQLite then sorts them and builds
the index in one pass. Grown by each insert, in the plan's random order, it outgrew SQLite's page
cache: a share of a million jobs took 7.6 s here, against 1.3 s (``benchmarks/bench_journal.py``),
four million 53 s against 8. Older journals have the same index under SQLite's own name (their
``job_id TEXT NOT NULL UNIQUE``)."""

_NEWEST = "SELECT job_id, MAX(attempt) AS attempt, COUNT(*) AS tries, {columns} FROM attempts GROUP BY job_id"
"""Each job's newest attempt: SQLite takes bare columns from the row where MAX() is found."""

_VIEW = f"""
CREATE VIEW IF NOT EXISTS jobs AS
    SELECT j.seq, j.job_id,
           CASE WHEN r.job_id IS NOT NULL THEN 'running' ELSE COALESCE(a.state, 'pending') END AS state,
           COALESCE(a.tries, 0) AS attempts, a.outcome, a.started, a.ended - a.started AS running_time,
           a.row, a.error, COALESCE(a.attempt, 0) AS last_attempt
    FROM job j
    LEFT JOIN ({_NEWEST.format(columns="state, outcome, started, ended, row, error")}) a ON a.job_id = j.job_id
    LEFT JOIN running r ON r.job_id = j.job_id;
"""
_STATES = f"""
    SELECT j.job_id, CASE WHEN r.job_id IS NOT NULL THEN 'running' ELSE COALESCE(a.state, 'pending') END, COALESCE(a.attempt, 0)
    FROM job j LEFT JOIN ({_NEWEST.format(columns="state")}) a ON a.job_id = j.job_id LEFT JOIN running r ON r.job_id = j.job_id
    ORDER BY j.seq
"""
"""(job id, state, newest attempt) of every job in ``seq`` order: the ``jobs`` view without
the rows and errors it would carry through the grouping."""

_COUNTS = f"""
    SELECT CASE WHEN r.job_id IS NOT NULL THEN 'running' ELSE a.state END, COUNT(*)
    FROM ({_NEWEST.format(columns="state")}) a LEFT JOIN running r ON r.job_id = a.job_id
    WHERE a.job_id IN (SELECT job_id FROM job) GROUP BY 1
    UNION ALL SELECT ' jobs', COUNT(*) FROM job
    UNION ALL SELECT ' running', COUNT(*) FROM running WHERE job_id IN (SELECT job_id FROM job)
"""
"""The ``jobs`` view's states of the jobs with an attempt, counted in SQLite, then (under names
no state has) every job and every running one: no join with ``job`` in ``seq`` order, which
``_STATES`` pays for (2.1 s against 5.2 for a million jobs here). One statement: one moment of
a journal a run goes on writing."""

_MIGRATE_FROM_1 = """
DROP VIEW jobs;
ALTER TABLE running RENAME TO running_v1;
ALTER TABLE runs ADD COLUMN host TEXT;
ALTER TABLE runs ADD COLUMN pid INTEGER;
ALTER TABLE runs ADD COLUMN code TEXT;
ALTER TABLE runs ADD COLUMN source TEXT;
""" + _TABLES + """
INSERT INTO job (seq, job_id) SELECT seq, job_id FROM share;
""" + _JOB_INDEX + """
INSERT INTO attempts (job_id, attempt, started, ended, outcome, state, row, error)
    SELECT s.job_id, o.attempts, o.started, o.started + o.running_time, o.outcome, o.state,
           CASE WHEN o.row IS NULL THEN NULL
                ELSE substr(o.row, 1, length(o.row) - 1) || ',' || (SELECT value FROM meta WHERE key = 'digest') || ',' || char(10) END,
           o.error
    FROM outcomes o JOIN share s ON s.seq = o.seq ORDER BY o.started + o.running_time, o.seq;
DROP TABLE running_v1;
DROP TABLE outcomes;
DROP TABLE share;
UPDATE meta SET value = '2' WHERE key = 'schema';
"""
"""0.1 kept one outcome per job: it becomes that job's one known attempt. Its rows gain the
Digest and (unknown, empty) Code columns that rows have had since."""

_INSERT_ATTEMPT = f"INSERT INTO attempts ({', '.join(AttemptRow._fields)}) VALUES ({', '.join('?' * len(AttemptRow._fields))})"
_DONE_FIELDS = ("job_id", "attempt", "run", "slot", "pid", "started", "ended", "outcome", "state", "max_rss", "cpu_seconds", "row")
_INSERT_DONE = f"INSERT INTO attempts ({', '.join(_DONE_FIELDS)}) VALUES ({', '.join('?' * len(_DONE_FIELDS))})"
"""A done group's columns, bound row by row from ``zip``: no tuple built in Python per job, and
fewer columns than a whole row (no NULLs of exit status, signal, args, error)."""


PAGE_SIZE = 16384
"""Bytes a page of a new journal (SQLite's default: 4,096). Done rows are appended a group at a
time, and every page is written twice (to the WAL, then to the file at a checkpoint): with 16
KB pages, a journal of 20,000 jobs recording them all done (rows of 300 bytes, 40 commits) took
93 ms of CPU, against 103 with 4 KB pages (a third less system time). A journal keeps the page
size it was made with."""

WAL_LIMIT = 32 << 20
"""Bytes the WAL (``journal.sqlite-wal``) is cut back to each time SQLite starts writing it again
from the beginning, after a checkpoint (``journal_size_limit``; twice what a WAL reaches between
SQLite's own checkpoints, 1,000 pages of PAGE_SIZE, so a run that keeps pace never cuts it). SQLite
never shrinks it otherwise while a run holds the journal open: one that grew once, with a
million jobs' ids written at the start (85 MB) or while a reader held off the checkpoints (a
``sqlite3`` shell left in a transaction, measured at 270 MB for a million short jobs), kept
that room on disk for the rest of a run of weeks."""

_JOBS_AT_ONCE = 65536
"""A share's ids go into ``job`` this many at a time: one JSON text of ten million ids would
take some 350 MB on top of the list."""


class Journal:
    """One machine's journal. Writers group their changes into few commits (see Recorder)."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        try:
            if read_only:
                self._db = read_only_connection(path)
            else:
                _create_or_refuse(path)
                self._db = sqlite3.connect(path, isolation_level=None, timeout=30)
        except sqlite3.Error as exc:
            raise UserError(f"{path} cannot be opened ({exc}); check the folder and its permissions") from None
        self._file_id = file_id(path)
        try:
            if read_only:
                if not self.meta().get("digest"):
                    raise sqlite3.DatabaseError("no plan recorded")
                self.schema = self.meta().get("schema", "1")
            else:
                self._db.execute(f"PRAGMA page_size={PAGE_SIZE}")  # takes effect only in a new file, so before WAL creates it
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")  # commits are grouped, so syncing each is cheap
                self._db.execute(f"PRAGMA journal_size_limit={int(WAL_LIMIT)}")
                self.schema = self._prepare()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            if read_only:
                raise unusable_journal(path, exc) from None
            raise self._storage_error(exc) or UserError(
                f"{path} cannot be used ({exc}); close any program that holds it open (a sqlite3 shell, say) and run again"
            ) from None

    def _prepare(self) -> str:
        """Create the tables of a new journal, or migrate a schema-1 journal to schema 2."""
        tables = {name for (name,) in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "share" in tables:
            try:  # one script, one transaction: executescript() would commit a transaction begun outside it
                self._db.executescript("BEGIN IMMEDIATE;" + _MIGRATE_FROM_1 + _VIEW + "COMMIT;")
            except BaseException:
                self._rollback()
                raise
        else:
            self._db.executescript(_TABLES + _VIEW)
        return SCHEMA_VERSION

    # --- set-up -------------------------------------------------------------------------

    @staticmethod
    def holds_a_plan(path: Path) -> bool:
        """Whether a journal exists there with its plan recorded (a run killed while creating
        it, or an empty file, leaves one without: the next run starts it anew)."""
        if not path.exists() or path.stat().st_size == 0:
            return False
        try:
            with closing(read_only_connection(path)) as db:
                return bool(db.execute("SELECT COUNT(*) FROM meta WHERE key = 'digest'").fetchone()[0])
        except sqlite3.DatabaseError:
            return False

    @staticmethod
    def damage(path: Path) -> str | None:
        """What SQLite finds wrong with the journal at ``path`` (not a database, or a page that
        is not what it should be: a disk's or a copy's fault), or None (none found, or no
        journal). Every page is read: about 1 ms for 1 MB here, once when a run resumes."""
        if not path.exists() or path.stat().st_size == 0:
            return None
        try:
            with closing(read_only_connection(path)) as db:
                found = [problem for (problem,) in db.execute("PRAGMA quick_check(3)")]
        except sqlite3.DatabaseError as exc:
            return str(exc) if is_damage(exc) else None  # other errors (permissions, a lock) are said where the journal is opened
        if found == ["ok"]:
            return None
        lines = [line for text in found for line in text.splitlines() if line and not line.startswith("***")]  # "*** in database main ***"
        return "; ".join(lines[:2]) or "quick_check failed"

    def meta(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT key, value FROM meta"))

    def hold_snapshot(self) -> None:
        """Read the journal as it is now from here on (a read-only tool's, until it closes it):
        a run going on commits between two of the tool's reads, and merge-results counted
        jobs from one moment and wrote rows from another ("1986 present", 2,013 rows written)."""
        self._db.execute("BEGIN")
        self.meta()  # a deferred transaction takes its snapshot at its first read

    def initialize(self, meta: dict[str, str], job_ids: Sequence[str]) -> None:
        """Record the digest and the jobs this machine holds (once, when the journal is new)."""
        with self._transaction():
            self._db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [*meta.items(), ("schema", SCHEMA_VERSION)])
            for start in range(0, len(job_ids), _JOBS_AT_ONCE):
                self._insert_jobs(job_ids[start : start + _JOBS_AT_ONCE])
            self._db.execute(_JOB_INDEX)

    def _insert_jobs(self, job_ids: Sequence[str]) -> None:
        """``job`` rows in this order, from one JSON array (SQLite's ``json_each`` reads it in C: half
        the time of binding a row at a time, the share's ids being hex); row by row where this
        SQLite has no JSON functions (before 3.38 they were optional)."""
        try:
            self._db.execute("INSERT INTO job (job_id) SELECT value FROM json_each(?) ORDER BY key", (json.dumps(list(job_ids)),))
        except sqlite3.OperationalError as exc:
            if "json_each" not in str(exc):
                raise
            self._db.executemany("INSERT INTO job (job_id) VALUES (?)", zip(job_ids))

    def _holds_exactly(self, job_ids: Sequence[str]) -> bool:
        """Whether the journal holds these jobs in this order, read a chunk at a time: a second
        list of every id, as a resume compared, was 90 bytes a job more at its peak."""
        rows = self._db.execute("SELECT job_id FROM job ORDER BY seq")
        start = 0
        while chunk := rows.fetchmany(_JOBS_AT_ONCE):
            if [job_id for (job_id,) in chunk] != list(job_ids[start : start + len(chunk)]):  # any sequence: a tuple's slice never equals a list
                return False
            start += len(chunk)
        return start == len(job_ids)

    def set_meta(self, key: str, value: str) -> None:
        with self._transaction():
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def check(self, digest: str, job_ids: Sequence[str], parts: Callable[[], Mapping[str, str]], config: Mapping[str, Mapping[str, str]] | None = None) -> None:
        """Refuse to resume a journal made for another digest (or, impossibly, another share),
        naming what changed since: ``parts`` gives the digest's parts now (see digest_parts),
        to compare with those the journal recorded, and ``config`` config.ini's document now,
        to name the keys that changed (journals made from 2026-12-07 record it)."""
        meta = self.meta()
        recorded = meta.get("digest", "")
        if recorded != digest:
            then = json.loads(meta.get("parts", "{}"))
            changed = [name for name, part in parts().items() if then.get(name) != part] if then else []
            what = f"{' and '.join(PART_NAMES[name] for name in changed)} changed since it was made" if changed else "the pool or the config files changed since"
            if "config" in changed and config is not None and meta.get("config"):
                keys = config_changes(json.loads(meta["config"]), config)
                flags = sorted({FLAG_SETTINGS[section, key] for section, key, _ in keys if (section, key) in FLAG_SETTINGS})
                what += f" ({', '.join(text for _, _, text in keys)}" + (f"; {' and '.join(flags)} is a flag too, outside the digest: put config.ini back and pass that" if flags else "") + ")"
            hints = " or cost hints (the cost function's values, which `digest --jobs --strategy cost` lists)" if meta.get("strategy") == "cost" else ""
            unsteady = (
                f" (if nobody changed the entry, it now builds other jobs{hints}: from files that changed, or with what differs from run "
                "to run, such as hash() of a text, id(), a set's order or the time)"
                if "pool" in changed
                else ""
            )
            raise UserError(
                f"{self.path} was made for digest {format_digest(recorded)}, but the digest is now {format_digest(digest)}: {what}{unsteady}; "
                "restore what it was made with, or pass --fresh to start over (the old results are kept as a backup), or give another campaign its own --out"
            )
        if not self._holds_exactly(job_ids):
            raise UserError(f"{self.path} holds a different share than the plan for this digest; pass --fresh to start over")

    def close_crashed_runs(self, now: float, args_of: Callable[[str], str | None]) -> None:
        """A run killed outright left its attempts in ``running`` and itself "running": record
        those attempts as interrupted (with their jobs' arguments, ``args_of`` a job id, as every
        attempt has them: the report showed these without) and the run as crashed. Call before
        reading what to run."""
        self._db.create_function("job_args", 1, args_of)
        try:
            with self._transaction():
                self._db.execute(
                    "INSERT OR IGNORE INTO attempts (job_id, attempt, run, slot, pid, started, ended, outcome, state, error, args) "
                    "SELECT r.job_id, r.attempt, (SELECT MAX(run) FROM runs), r.slot, r.pid, COALESCE(r.started, ?), "
                    "MAX(COALESCE(r.started, ?), COALESCE((SELECT updated FROM runs ORDER BY run DESC LIMIT 1), ?)), ?, ?, ?, job_args(r.job_id) FROM running r",
                    (now, now, now, Outcome.INTERRUPTED, JobState.PENDING, "the run stopped before this attempt ended (was it killed?)"),
                )
                self._db.execute("DELETE FROM running")
                self._db.execute("UPDATE runs SET status = ?, ended = updated WHERE status = ?", (RunStatus.CRASHED, RunStatus.RUNNING))
        finally:
            self._db.create_function("job_args", 1, None)  # let go of ``args_of`` and what it holds (a share's index by id)

    def begin_run(self, workers: int, *, done_before: int, started: float, host: str, pid: int, code: str, source: str) -> int:
        """Record a new run (``done_before``: jobs done when it starts); returns its number."""
        with self._transaction():
            cursor = self._db.execute(
                "INSERT INTO runs (started, updated, workers, done_before, status, host, pid, code, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (started, started, workers, done_before, RunStatus.RUNNING, host, pid, code, source),
            )
        return int(cursor.lastrowid or 0)

    def end_run(self, run: int, status: RunStatus, ended: float) -> None:
        with self._transaction():
            self._db.execute("DELETE FROM running")
            self._db.execute("UPDATE runs SET status = ?, ended = ?, updated = ? WHERE run = ?", (status, ended, ended, run))

    # --- reading ------------------------------------------------------------------------

    def job_ids(self) -> list[str]:
        return [job_id for (job_id,) in self._db.execute("SELECT job_id FROM job ORDER BY seq")]

    def counts(self) -> dict[str, int]:
        """Jobs per state, zeros included."""
        counts: dict[str, int] = dict.fromkeys(JobState, 0)
        if self.schema == "1":
            for _, state in self.states():
                counts[state] += 1
            return counts
        tried = dict(self._db.execute(_COUNTS))
        jobs, running = tried.pop(" jobs"), tried.pop(" running")
        counts.update(tried)
        counts[JobState.RUNNING] = running  # those never tried before too
        counts[JobState.PENDING] += jobs - sum(tried.values()) - (running - tried.get(JobState.RUNNING, 0))  # never tried, not running
        return counts

    def to_run(self, *, retry_failed: bool) -> list[tuple[str, int]]:
        """(job id, its newest attempt's number) of the jobs a run should start, in ``seq`` order."""
        return self.standing(retry_failed=retry_failed)[1]

    def standing(self, *, retry_failed: bool) -> tuple[dict[str, int], list[tuple[str, int]]]:
        """Jobs per state (zeros included) and ``to_run``. The jobs to run take a scan of every
        job's state in ``seq`` order (5.2 s for a million jobs here): not made when the counts
        say there are none, as when a finished run is started again."""
        counts = self.counts()
        wanted = {JobState.PENDING, JobState.RUNNING} | ({JobState.FAILED} if retry_failed else set())
        if not any(counts[state] for state in wanted):
            return counts, []
        return counts, [(job_id, attempt) for job_id, state, attempt in self._db.execute(_STATES) if state in wanted]

    def done_lines(self) -> Iterator[tuple[str, str]]:
        """(job id, results.csv line) of every done job, in the order they were recorded; a row
        recorded with a lone CR unquoted (see ``requoted``) comes out quoted."""
        if self.schema == "1":  # a 0.1 journal read as it is: its rows lack the Digest and Code columns
            digest = self.meta()["digest"]
            rows = self._sorted("SELECT job_id, row FROM jobs WHERE state = 'done' ORDER BY started + running_time, seq")
            return ((job_id, requoted(f"{line[:-1]},{digest},\n")) for job_id, line in rows)
        rows = self._sorted("SELECT job_id, row FROM attempts WHERE state = 'done' ORDER BY id")  # as committed: a step of the wall clock reordered rows sorted by their end
        return ((job_id, requoted(line)) for job_id, line in rows)

    def _sorted(self, query: str) -> Iterator[Any]:
        """The rows of a query SQLite sorts, in its temporary folder once they outgrow its memory:
        where that folder was full, a resume and merge-results ended in a traceback ("database or
        disk is full", with the journal's own disk far from it)."""
        try:
            for row in self._db.execute(query):  # noqa: UP028 - ``yield from`` closes the cursor with the generator: on a closed database, if its reader stopped early
                yield row
        except sqlite3.OperationalError as exc:
            if "full" not in str(exc).lower():
                raise
            raise StorageError(
                f"sorting the done rows of {self.path} needs room in SQLite's temporary folder, {_sqlite_temp_folder()}, which is full; "
                "free some space there, or set SQLITE_TMPDIR to a folder with room, and run the same command again"
            ) from None

    def with_results(self) -> set[str]:
        """The jobs with a result here: done, or superseded (see ``supersede``)."""
        return {job_id for (job_id,) in self._db.execute("SELECT job_id FROM attempts WHERE state IN (?, ?)", (JobState.DONE, JobState.SUPERSEDED))}

    def result_lines(self) -> Iterator[str]:
        """The results.csv lines of done jobs, in the order they were recorded."""
        return (line for _, line in self.done_lines())

    def states(self) -> Iterator[tuple[str, str]]:
        """(job id, state) of every job, in ``seq`` order."""
        if self.schema == "1":
            return iter(self._db.execute("SELECT job_id, state FROM jobs ORDER BY seq"))
        return ((job_id, state) for job_id, state, _ in self._db.execute(_STATES))

    def attempts(self) -> list[dict[str, Any]]:
        return self._dicts("SELECT * FROM attempts ORDER BY id")

    def runs(self) -> list[dict[str, Any]]:
        return self._dicts("SELECT * FROM runs ORDER BY run")

    def _dicts(self, sql: str) -> list[dict[str, Any]]:
        cursor = self._db.execute(sql)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor]

    # --- writing ------------------------------------------------------------------------

    def commit(self, run: int, attempts: Sequence[Ended], running: Iterable[RunningAttempt], now: float) -> None:
        """One transaction: ended attempts (one by one, or in done groups), and the attempts running now."""
        try:
            self._commit(run, attempts, running, now)
        except UnicodeEncodeError:  # a lone surrogate that slipped through: escape it, never lose the commit
            self._commit(run, [_escaped(a) for record in attempts for a in _attempt_rows(record)], running, now)

    def _commit(self, run: int, attempts: Sequence[Ended], running: Iterable[RunningAttempt], now: float) -> None:
        with self._transaction():
            for grouped, records in groupby(attempts, key=_is_group):  # in order: ids follow time
                if not grouped:
                    self._db.executemany(_INSERT_ATTEMPT, map(tuple, records))  # sqlite3 binds exact tuples faster than NamedTuples
                    continue
                for group in cast("Iterator[DoneGroup]", records):
                    self._db.executemany(_INSERT_DONE, zip(
                        group.job_ids, group.attempts, repeat(group.run), repeat(group.slot), repeat(group.pid), group.started,
                        group.ended, repeat(Outcome.DONE.value), repeat(JobState.DONE.value), group.max_rss, group.cpu_seconds, group.rows,
                    ))  # fmt: skip
            self._db.execute("DELETE FROM running")
            self._db.executemany("INSERT INTO running (job_id, attempt, slot, pid, started) VALUES (?, ?, ?, ?, ?)", running)
            self._db.execute("UPDATE runs SET updated = ? WHERE run = ?", (now, run))

    def add_recovered(self, attempts: Sequence[AttemptRow]) -> None:
        """Done attempts found in results.csv but not here (see recovery): recorded as done."""
        with self._transaction():
            self._db.executemany("INSERT OR IGNORE INTO job (job_id) VALUES (?)", ((a.job_id,) for a in attempts))
            self._db.executemany(_INSERT_ATTEMPT.replace("INSERT", "INSERT OR IGNORE", 1), attempts)

    # --- holdings of a shared queue (sources.redis) -------------------------------------

    def hold(self, job_ids: Sequence[str]) -> dict[str, int]:
        """Record jobs claimed from a shared queue as this machine's; returns the newest attempt
        number each has here (absent: none)."""
        with self._lazily_synced():
            self._db.executemany("INSERT OR IGNORE INTO job (job_id) VALUES (?)", ((job_id,) for job_id in job_ids))
        last: dict[str, int] = {}
        for start in range(0, len(job_ids), 500):  # below SQLite's limit on bound parameters
            chunk = job_ids[start : start + 500]
            last.update(self._db.execute(f"SELECT job_id, MAX(attempt) FROM attempts WHERE job_id IN ({', '.join('?' * len(chunk))}) GROUP BY job_id", chunk))
        return last

    def unhold(self, job_ids: Iterable[str]) -> None:
        """Jobs handed back to a shared queue are no longer this machine's (their attempts stay)."""
        with self._lazily_synced():
            self._db.executemany("DELETE FROM job WHERE job_id = ?", ((job_id,) for job_id in job_ids))

    @contextmanager
    def _lazily_synced(self) -> Iterator[None]:
        """A transaction committed without waiting for the disk (it survives a killed process,
        and the next synchronous commit makes it durable): holdings follow each claim, and the
        queue's leases, not this journal, protect a claim whose record a power cut loses."""
        self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            with self._transaction():
                yield
        finally:
            self._db.execute("PRAGMA synchronous=FULL")

    def supersede(self, job_ids: Sequence[str]) -> None:
        """A shared queue accepted another host's result for these jobs first: the done attempt
        here becomes superseded (its row stays, and leaves results.csv at the next start)."""
        with self._transaction():
            self._db.executemany(
                "UPDATE attempts SET state = ? WHERE id = (SELECT MAX(id) FROM attempts WHERE job_id = ? AND state = ?)",
                ((JobState.SUPERSEDED, job_id, JobState.DONE) for job_id in job_ids),
            )

    def replaced(self) -> bool:
        """Whether ``path`` no longer names the database this journal writes (deleted, moved
        away or replaced while a run went on)."""
        return file_id(self.path) != self._file_id

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._rollback()
                raise
            self._db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise self._storage_error(exc) or exc from None

    def _rollback(self) -> None:
        if self._db.in_transaction:  # SQLite rolls back by itself after some errors (a full disk)
            self._db.execute("ROLLBACK")

    def _storage_error(self, exc: sqlite3.Error) -> StorageError | None:
        """A write that failed for want of room or permission, or on a page a failing disk
        damaged: a StorageError naming the journal (the run stops as on a full disk)."""
        if isinstance(exc, sqlite3.DatabaseError) and is_damage(exc):
            return StorageError(f"{self.path} is damaged ({exc}); run the same command again: a run sets a damaged journal aside and rebuilds it from results.csv")
        text = str(exc).lower()
        if any(cause in text for cause in ("disk is full", "disk i/o error", "readonly database", "unable to open")):
            return StorageError(f"{self.path} cannot be written ({exc}); free some space (or fix the folder's permissions) and run the same command again to resume")
        return None


def _is_group(record: Ended) -> bool:
    return isinstance(record, DoneGroup)


def _attempt_rows(record: Ended) -> list[AttemptRow]:
    return record.attempt_rows() if isinstance(record, DoneGroup) else [record]


def _sqlite_temp_folder() -> str:
    """The folder SQLite keeps its temporary files in, as it chooses it on Unix: the first
    writable one of $SQLITE_TMPDIR, $TMPDIR, /var/tmp, /usr/tmp, /tmp and the current folder."""
    candidates = [os.environ.get("SQLITE_TMPDIR"), os.environ.get("TMPDIR"), "/var/tmp", "/usr/tmp", "/tmp"]
    return next((c for c in candidates if c and os.path.isdir(c) and os.access(c, os.W_OK | os.X_OK)), os.getcwd())


def read_only_connection(path: Path) -> sqlite3.Connection:
    """A connection that only reads the journal at ``path``: the tools', and the checks before a
    run writes it. A journal without a -wal is opened as immutable where this user cannot write
    its folder (an archive: SQLite would make a -shm there to read it, and every tool failed with
    "attempt to write a readonly database") or does not own it (a colleague's folder: the empty
    -wal and -shm SQLite made there were this user's, and the owner's next run could not write
    them). Without a -wal, no run writes it: SQLite makes the -wal as a connection opens a WAL
    database and deletes it only as the last one closes (sqlite.org/wal.html), and a run holds
    its journal open from its start to its end. A run that starts while such a read goes on
    changes the file itself only at a checkpoint (after 1,000 pages committed, and at its end): a
    read that lasts that long may find the journal changed under it, which SQLite says
    ("malformed"), and the tool is run again."""
    finished = not path.with_name(path.name + "-wal").exists() and (not may_write(path.parent) or owned_here(path) is False)
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro{'&immutable=1' if finished else ''}", uri=True, isolation_level=None, timeout=5)


def unusable_journal(path: Path, exc: sqlite3.Error) -> UserError:
    """Why a tool cannot read the journal at ``path``: a folder this user may not write, where
    SQLite must make the -shm beside a -wal to read them (a copy taken mid-run, in an archive),
    or the journal itself (a bad copy). Every tool says the same: report and trace told a user
    of such a folder to copy it again from its host, which changed nothing."""
    if not may_write(path.parent):
        return UserError(
            f"{path} cannot be read where it is ({exc}): its folder is read-only, and SQLite writes {path.name}-shm beside "
            f"its {path.name}-wal to read them; copy the folder somewhere you can write, or read it as its owner"
        )
    return UserError(f"{path} is not a usable jobsplit journal ({exc}); {copy_again(path)}")


def _create_or_refuse(path: Path) -> None:
    """Create a new journal with the mode the umask gives (SQLite's own is 0644, less the
    umask, and its -wal and -shm take the journal's: another member of the group sharing the
    folder could never resume the share), or refuse one this user may not write in a sentence
    (SQLite opened it read-only: "attempt to write a readonly database; free some space")."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o666))
    except FileExistsError:
        if not may_write(path):
            raise others_file(path) from None
    except OSError as exc:
        raise folder_error(path.parent, exc) from None


def clear_others_wal(journal: Path) -> None:
    """Take away a -wal and -shm beside the journal that another user made and this one cannot
    write: a colleague's tool reading the journal made them, empty, before tools opened others'
    journals as immutable (see read_only_connection), and the owner's next run stopped with
    "attempt to write a readonly database; free some space". An empty -wal holds no commit and
    its -shm only indexes it; one with commits (another user's run that did not end cleanly),
    or files this user may not remove, are left to their owner in one sentence. Called before a
    run reads its journal at all: read with them there, it said "attempt to write a readonly
    database", and the run took its journal for one without a plan."""
    wal, shm = (journal.with_name(journal.name + suffix) for suffix in ("-wal", "-shm"))
    theirs = [p for p in (wal, shm) if owned_here(p) is False and not may_write(p)]
    if not theirs:
        return
    try:
        if not wal.exists() or wal.stat().st_size == 0:
            for sqlite_file in (wal, shm):
                sqlite_file.unlink(missing_ok=True)
            return
    except OSError:
        pass  # this user may not take them away (a sticky folder): their owner may
    left = [p for p in theirs if p.exists()]
    if left:  # else their owner's run took them away meanwhile
        raise not_writable(left, "`chmod g+w` " + ("it" if len(left) == 1 else "them"))


def is_damage(exc: sqlite3.DatabaseError) -> bool:
    """Whether SQLite says the file is no database or a damaged one (SQLITE_NOTADB, SQLITE_CORRUPT)."""
    text = str(exc)
    return "malformed" in text or "not a database" in text


def _escaped(attempt: AttemptRow) -> AttemptRow:
    return AttemptRow._make(clean_text(value) if isinstance(value, str) else value for value in attempt)


def copy_again(journal: Path) -> str:
    """What to do with a journal that cannot be read here (copied from another host). A run that
    did not end cleanly (killed, or still going) keeps its newest pages in ``journal.sqlite-wal``:
    copied without it, the journal may have no tables at all."""
    try:
        copied = journal.with_name(journal.name + "-wal").stat().st_size > 0  # an empty one: made as the copy was opened here
    except OSError:
        copied = False
    beside = "" if copied else f", with {journal.name}-wal beside it if the host has one (a run that did not end cleanly keeps its newest pages there)"
    return f"copy it again from its host{beside}, or leave its folder out"
