"""Schema-2 journals written by SQL, for the report and trace tests (issue 13), and the tests
that ``runfacts`` reads them back as written.

The engine that writes schema 2 is being built elsewhere, so these tests make journals from
the schema's DDL and lists of attempts whose times are chosen by hand. Import the helpers:
``from test_report_journal import Att, write_journal, write_log, job_hex``.
"""

from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import json
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from jobsplit import runfacts
from jobsplit.journal import Journal
from jobsplit.outdir import find_machine_dirs
from jobsplit.timefmt import utc_timestamp

DIGEST = "0123456789abcdef0123456789abcdef"
HEADER = ["Run Start Time", "Job Running Time", "Job Start Time", "Value"]
CODE = "c0de0c0de0c0"
T = 1_800_000_000.0
"""2027-01-15T08:00:00Z: the fixtures' time zero."""

DDL = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE job (seq INTEGER PRIMARY KEY, job_id TEXT NOT NULL UNIQUE);
CREATE TABLE attempts (
    id INTEGER PRIMARY KEY, job_id TEXT NOT NULL, attempt INTEGER NOT NULL, run INTEGER, slot INTEGER, pid INTEGER,
    started REAL NOT NULL, ended REAL NOT NULL, outcome TEXT NOT NULL, state TEXT NOT NULL,
    exit_code INTEGER, signal INTEGER, max_rss INTEGER, cpu_seconds REAL, row TEXT, args TEXT, error TEXT,
    UNIQUE (job_id, attempt)
);
CREATE TABLE running (job_id TEXT PRIMARY KEY, attempt INTEGER NOT NULL, slot INTEGER, pid INTEGER, started REAL);
CREATE TABLE runs (
    run INTEGER PRIMARY KEY, started REAL NOT NULL, updated REAL NOT NULL, ended REAL,
    workers INTEGER NOT NULL, done_before INTEGER NOT NULL, status TEXT NOT NULL,
    host TEXT, pid INTEGER, code TEXT, source TEXT
);
CREATE VIEW jobs AS
    SELECT j.seq, j.job_id,
           CASE WHEN r.job_id IS NOT NULL THEN 'running' ELSE COALESCE(a.state, 'pending') END AS state,
           COALESCE(a.attempt, 0) AS attempts, a.outcome, a.started, a.ended - a.started AS running_time, a.row, a.error
    FROM job j
    LEFT JOIN attempts a ON a.job_id = j.job_id AND a.attempt = (SELECT MAX(attempt) FROM attempts WHERE job_id = j.job_id)
    LEFT JOIN running r ON r.job_id = j.job_id;
"""


class Att(NamedTuple):
    """One ended attempt; times are seconds after T. ``job`` is a short name (see job_hex)."""

    job: str
    attempt: int
    slot: int | None
    started: float
    ended: float
    outcome: str
    state: str
    exit_code: int | None = None
    signal: int | None = None
    max_rss: int | None = None
    error: str | None = None
    run: int | None = 1
    cpu: float | None = None


class Running(NamedTuple):
    job: str
    attempt: int
    slot: int | None
    started: float


class RunRow(NamedTuple):
    started: float
    updated: float
    ended: float | None
    workers: int
    status: str = "completed"


@functools.cache
def job_hex(name: str) -> str:
    """A fixture job's 32-hex id, from its short name."""
    return hashlib.md5(name.encode()).hexdigest()


def job_args(name: str) -> str:
    return json.dumps([name, len(name)])


def result_row(name: str, machine: str, started: float, ended: float, header: Sequence[str] = HEADER) -> str:
    """The results.csv line of a done attempt: header's columns, then the reserved ones."""
    timing = {"Run Start Time": _RUN_START, "Job Running Time": f"{ended - started:.6f}", "Job Start Time": utc_timestamp(T + started)}
    cells = [timing.get(column, "1.5") for column in header] + [job_hex(name), job_args(name), machine, DIGEST, CODE]
    _ROW_WRITER.writerow(cells)
    return _ROW_SINK.line


_RUN_START = utc_timestamp(T)


class _LastLine:
    line = ""

    def write(self, text: str) -> None:
        self.line = text


_ROW_SINK = _LastLine()
_ROW_WRITER = csv.writer(_ROW_SINK, lineterminator="\n")


def write_journal(
    root: Path,
    machine: str,
    attempts: Iterable[Att],
    runs: Sequence[RunRow],
    *,
    plan: dict[str, int],
    machines: dict[str, list[float]],
    running: Iterable[Running] = (),
    jobs: Iterable[str] = (),
    strategy: str = "quota",
    digest: str = DIGEST,
    header: Sequence[str] = HEADER,
    origin: float = T,
) -> Path:
    """Write ``root/<machine>/journal.sqlite`` (WAL, schema 2) and return the machine folder.

    The job table holds ``jobs`` and every job attempted or running, in that order.
    """
    folder = root / machine
    folder.mkdir(parents=True, exist_ok=True)
    attempts, running = list(attempts), list(running)
    db = sqlite3.connect(folder / "journal.sqlite", isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=OFF")  # a test fixture: speed over durability
        db.executescript(DDL)
        db.execute("BEGIN")
        meta = {
            "schema": "2", "digest": digest, "machine": machine, "strategy": strategy, "header": json.dumps(list(header)),
            "plan": json.dumps(plan), "machines": json.dumps(machines), "created": utc_timestamp(origin), "jobsplit": "0.2.0", "code": CODE,
        }  # fmt: skip
        db.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
        names = list(dict.fromkeys([*jobs, *(a.job for a in attempts), *(r.job for r in running)]))
        db.executemany("INSERT INTO job (seq, job_id) VALUES (?, ?)", ((i, job_hex(n)) for i, n in enumerate(names)))
        db.executemany(
            "INSERT INTO runs (run, started, updated, ended, workers, done_before, status, host, pid, code, source) VALUES (?, ?, ?, ?, ?, 0, ?, 'host', 1, ?, 'plan')",
            ((i, origin + r.started, origin + r.updated, None if r.ended is None else origin + r.ended, r.workers, r.status, CODE) for i, r in enumerate(runs, 1)),
        )
        db.executemany(
            "INSERT INTO attempts (job_id, attempt, run, slot, pid, started, ended, outcome, state, exit_code, signal, max_rss, cpu_seconds, row, args, error) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (job_hex(a.job), a.attempt, a.run, a.slot, 1000 + (a.slot or 0), origin + a.started, origin + a.ended, a.outcome, a.state,
                 a.exit_code, a.signal, a.max_rss, a.cpu, result_row(a.job, machine, a.started, a.ended, header) if a.outcome == "done" else None,
                 None if a.outcome == "done" else job_args(a.job), a.error)
                for a in attempts
            ),
        )  # fmt: skip
        db.executemany(
            "INSERT INTO running (job_id, attempt, slot, pid, started) VALUES (?, ?, ?, ?, ?)",
            ((job_hex(r.job), r.attempt, r.slot, 2000 + (r.slot or 0), origin + r.started) for r in running),
        )
        db.execute("COMMIT")
    finally:
        db.close()
    return folder


def write_log(folder: Path, machine: str, records: Iterable[tuple[float, str, str, str]], origin: float = T) -> Path:
    """``<machine>.log.gz`` from (seconds after T, worker, job name or "-", "LEVEL message")
    records, in the default format; a multi-line message continues on indented lines."""
    lines = []
    for at, worker, job, message in sorted(records, key=lambda r: r[0]):
        job_field = "-" if job == "-" else job_hex(job)
        lines.append(f"{utc_timestamp(origin + at)} {machine} {worker} {job_field} {message}".replace("\n", "\n  ") + "\n")
    path = folder / f"{machine}.log.gz"
    path.write_bytes(gzip.compress("".join(lines).encode()))
    return path


def machines_json(**machines: tuple[float, int]) -> dict[str, list[float]]:
    return {name: [speed, cores] for name, (speed, cores) in machines.items()}


# --- the helpers' own tests: runfacts reads back what was written ----------------------------


def _small(root: Path) -> Path:
    return write_journal(
        root,
        "A",
        [Att("j1", 1, 0, 0, 10, "done", "done"), Att("j2", 1, 1, 0, 5, "error", "pending", error="Traceback\nValueError: x")],
        [RunRow(0, 20, None, 2, "running")],
        running=[Running("j2", 2, 1, 6)],
        jobs=["j3"],
        plan={"A": 3, "B": 1},
        machines=machines_json(A=(1.0, 2), B=(1.0, 1)),
    )


def test_written_journals_are_found_and_opened_like_any_journal(tmp_path: Path) -> None:
    folder = _small(tmp_path / "out")
    assert find_machine_dirs([tmp_path / "out"]) == [folder.resolve()]
    journal = Journal(folder / "journal.sqlite", read_only=True)
    try:
        assert journal.meta()["schema"] == "2"
    finally:
        journal.close()


def test_runfacts_reads_back_attempts_running_jobs_and_arguments(tmp_path: Path) -> None:
    _small(tmp_path / "out")
    facts = runfacts.load([tmp_path / "out"])
    assert facts.digest == DIGEST and facts.strategy == "quota" and facts.header == HEADER
    assert facts.absent == {"B": 1}
    (machine,) = facts.machines
    assert (machine.name, machine.speed, machine.cores, machine.planned, machine.held, machine.workers) == ("A", 1.0, 2, 3, 3, 2)
    found = {a.key: a for a in machine.attempts}
    done, failed, running = found[f"{job_hex('j1')}:1"], found[f"{job_hex('j2')}:1"], found[f"{job_hex('j2')}:2"]
    assert (done.args, done.kind, done.started, done.ended) == (job_args("j1"), "done", T, T + 10)
    assert (failed.args, failed.kind, failed.error) == (job_args("j2"), "retried", "Traceback\nValueError: x")
    assert (running.outcome, running.kind, running.slot, running.started, running.ended) == ("running", "running", 1, T + 6, T + 20)
    assert machine.in_progress


def test_attempts_without_a_slot_are_packed_into_free_lanes() -> None:
    spans: list[tuple[Any, float, float]] = [(None, 0, 10), (None, 1, 4), (None, 4, 9), (None, 9.5, 12), (None, 10, 11), (None, 10.5, 11)]
    assert runfacts.assign_slots(spans, 2) == [0, 1, 1, 1, 0, 0]  # the last: no lane free, the one free soonest
    assert runfacts.assign_slots([(3, 0, 1), (None, 0, 1)], 2) == [3, 0]
