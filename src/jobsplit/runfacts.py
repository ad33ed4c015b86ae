"""What a run did, read from its machine folders into plain dataclasses: the facts behind
``report`` and ``trace``.

Each journal (schema 2) is read in one short read-only transaction: a WAL reader never holds
up the run's writer, and what it reads is one consistent commit, so a run still going on
shows what is known so far. Logs are read only for the few attempts whose last lines a
report shows. Nothing here computes figures (see ``figures``), so both tools and the tests
share one reading of the data.
"""

from __future__ import annotations

import io
import json
import re
import sqlite3
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from operator import attrgetter
from pathlib import Path
from typing import Any

from .errors import UserError
from .journal import copy_again, read_only_connection, unusable_journal
from .logmerge import LogFile, damage_sentence
from .merge import refuse_mixed_plans
from .outdir import JOURNAL_FILE, MachineDir, find_machine_dirs
from .results import requoted, row_cells
from .snapshot import split_written_elsewhere

SCHEMA = "2"
FAILED_OUTCOMES = ("error", "crashed", "timeout")
KINDS = ("done", "retried", "error", "crashed", "timeout", "interrupted", "running")
"""How an attempt is drawn (:attr:`Attempt.kind`): its outcome, "retried" for a failed
attempt whose job will run again, "running" for one still on a worker."""

LOG_LINES = 6
"""Log records kept per failed attempt: the last ones before it ended."""
LOG_BEFORE, LOG_AFTER = 1.0, 5.0
"""Seconds around an attempt whose log records are its own: the parent logs a crash a
moment after the worker died."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt of one job on one worker slot (ended, or still running)."""

    machine: str
    job_id: str
    attempt: int
    slot: int
    """The worker slot recorded, or for an attempt recorded without one (a migrated 0.1
    journal) the slot it is drawn on (see :func:`assign_slots`)."""
    started: float
    ended: float
    """UTC epoch seconds; for a running attempt, the journal's last commit."""
    outcome: str
    """done, error, crashed, timeout, interrupted, or running."""
    state: str
    """The job's state after the attempt: done, failed, pending, superseded (running: running)."""
    run: int | None = None
    pid: int | None = None
    exit_code: int | None = None
    signal: int | None = None
    max_rss: int | None = None
    cpu_seconds: float | None = None
    args: str | None = None
    """The job's arguments, canonical JSON."""
    error: str | None = None

    @property
    def duration(self) -> float:
        return max(0.0, self.ended - self.started)

    @property
    def kind(self) -> str:
        """The colour: the outcome, or "retried" for a failure whose job will run again."""
        if self.outcome in FAILED_OUTCOMES and self.state == "pending":
            return "retried"
        return self.outcome

    @property
    def key(self) -> str:
        return f"{self.job_id}:{self.attempt}"


@dataclass(frozen=True, slots=True)
class Run:
    """One invocation of ``run`` on a machine (a row of the journal's ``runs``)."""

    run: int
    started: float
    updated: float
    ended: float | None
    workers: int
    done_before: int
    status: str
    """running, completed, interrupted, crashed or stopped."""
    host: str | None = None

    @property
    def end(self) -> float:
        """When it ended, or its last commit if it has not (still running, or died)."""
        return self.ended if self.ended is not None else self.updated


@dataclass
class MachineFacts:
    """One machine folder: its plan entry, runs and attempts."""

    name: str
    path: Path
    speed: float
    """machines.json's speed (1.0 if the plan does not name the machine)."""
    cores: int
    planned: int
    held: int
    """Jobs in its ``job`` table: its share, or what it took from a queue."""
    runs: list[Run]
    attempts: list[Attempt]
    """Every attempt, ended or running, by start time (the journal's order among equal starts)."""
    done_args: bool = True
    """Whether done attempts hold their arguments (see :func:`load`)."""

    @property
    def workers(self) -> int:
        """Worker slots: the most any run had (an unexpected slot number widens it)."""
        return max([r.workers for r in self.runs] + [a.slot + 1 for a in self.attempts], default=0)

    @property
    def in_progress(self) -> bool:
        return bool(self.runs) and self.runs[-1].status == "running"

    @property
    def status(self) -> str:
        return self.runs[-1].status if self.runs else "not started"


@dataclass
class RunFacts:
    """Every machine folder given, and the plan they share."""

    digest: str
    strategy: str
    header: list[str]
    plan: dict[str, int]
    machines_json: dict[str, list[float]]
    machines: list[MachineFacts]
    absent: dict[str, int] = field(default_factory=dict)
    """Machines of the plan with no folder given -> their planned job count."""
    version: str = ""

    @property
    def attempts(self) -> Iterator[Attempt]:
        for machine in self.machines:
            yield from machine.attempts


def load(paths: Sequence[Path], *, done_args: bool = True) -> RunFacts:
    """Read the machine folders among ``paths`` (as merge-results finds them); one digest only.

    ``done_args=False`` leaves out the arguments of done attempts (read from their row's "Job
    Args" cell, some 260 bytes an attempt of the no-op benchmark's): a report shows them only in
    the tooltips of bars drawn for one attempt, and reads those again (:func:`read_args`)."""
    readable, _ = split_written_elsewhere(find_machine_dirs(paths))  # the others are shown as absent
    loaded = [_load_machine(path, done_args) for path in readable]
    refuse_mixed_plans([(m.path, meta) for meta, m in loaded], fix="give each group separately")
    meta = loaded[0][0]
    machines = sorted((m for _, m in loaded), key=lambda m: m.name)
    plan = json.loads(meta["plan"])
    present = {m.name for m in machines}
    return RunFacts(
        digest=meta["digest"],
        strategy=meta.get("strategy", ""),
        header=json.loads(meta["header"]),
        plan=plan,
        machines_json=json.loads(meta.get("machines", "{}")),
        machines=machines,
        absent={name: count for name, count in plan.items() if name and name not in present and count},  # "": a shared queue's pool, no machine's
        version=meta.get("jobsplit", ""),
    )


_ATTEMPTS = "SELECT job_id, attempt, slot, started, ended, outcome, state, run, pid, exit_code, signal, max_rss, cpu_seconds, row, args, error FROM attempts ORDER BY id"
SAME_LIMIT = 4096
"""Distinct values of a column (outcome, state, worker pid, peak memory) held once each and
shared by the attempts that repeat them: SQLite makes a new object for every value it returns
(a million "done" twice took 106 MB). Past this many, further values are kept as they come."""


class _Same:
    """One object for each repeated text or integer of a column, up to SAME_LIMIT of them (one
    column's values are of one type: the integer 1 and the text "1" never meet)."""

    def __init__(self) -> None:
        self.seen: dict[object, object] = {}

    def __call__(self, value: Any) -> Any:
        if type(value) not in (str, int):  # None, or a float: 0.0 and -0.0 are equal, and print differently
            return value
        kept = self.seen.get(value)
        if kept is not None:
            return kept
        if len(self.seen) < SAME_LIMIT:
            self.seen[value] = value
        return value


def _load_machine(path: Path, done_args: bool = True) -> tuple[dict[str, str], MachineFacts]:
    journal = path / JOURNAL_FILE
    try:
        db = read_only_connection(journal)
    except sqlite3.Error as exc:
        raise UserError(f"{journal} cannot be opened ({exc}); {copy_again(journal)}") from None
    try:
        db.execute("BEGIN")  # one snapshot of the WAL: counts and attempts agree
        meta = dict(db.execute("SELECT key, value FROM meta"))
        if meta.get("schema") != SCHEMA or not meta.get("digest"):
            raise UserError(
                f"{journal} has journal schema {meta.get('schema', '?')}; report and trace read schema {SCHEMA} "
                f"(journals written by jobsplit 0.2 or later)"
            )
        name = meta["machine"]
        held = db.execute("SELECT COUNT(*) FROM job").fetchone()[0]
        runs = [Run(*row) for row in db.execute("SELECT run, started, updated, ended, workers, done_before, status, host FROM runs ORDER BY run")]
        args_at = len(json.loads(meta["header"])) + 1  # after the header's columns: Job ID, Job Args, ...
        outcomes, states, pids, peaks = _Same(), _Same(), _Same(), _Same()
        unslotted = False
        attempts: list[Attempt] = []  # each made as its row comes (never all rows held: 1.6 GB for a million attempts)
        for job_id, attempt, slot, started, ended, outcome, state, run, pid, exit_code, signal, max_rss, cpu_seconds, row, args, error in db.execute(_ATTEMPTS):
            if args is None and row and (done_args or outcome != "done"):
                args = _args(row, args, args_at)
            unslotted = unslotted or slot is None
            attempts.append(
                Attempt(name, job_id, attempt, slot, started, ended, outcomes(outcome), states(state), run, pids(pid), exit_code, signal, peaks(max_rss), cpu_seconds, args, error)
            )
        running = db.execute("SELECT job_id, attempt, slot, pid, started FROM running ORDER BY started, job_id").fetchall()
        db.execute("COMMIT")
    except sqlite3.Error as exc:
        raise unusable_journal(journal, exc) from None
    finally:
        db.close()
    speed, cores = json.loads(meta.get("machines", "{}")).get(name, (1.0, 0))
    now = max((r.updated for r in runs), default=0.0)
    last_run = runs[-1].run if runs else None
    running_ids = {job_id for job_id, *_ in running}
    seen = {(a.job_id, a.attempt) for a in attempts if a.job_id in running_ids}
    for job_id, attempt, slot, pid, started in running:
        if (job_id, attempt) not in seen:
            unslotted = unslotted or slot is None
            attempts.append(Attempt(name, job_id, attempt, slot, started, max(now, started), "running", "running", last_run, pid))
    attempts.sort(key=attrgetter("started"))  # by start (stable: the journal's order, by id, among equals)
    if unslotted:  # a migrated 0.1 journal: each attempt recorded without a slot is drawn on one free at its start
        slots = assign_slots([(a.slot, a.started, a.ended) for a in attempts], max((r.workers for r in runs), default=1))
        attempts = [a if a.slot == slot else replace(a, slot=slot) for a, slot in zip(attempts, slots)]
    plan = json.loads(meta["plan"])
    machine = MachineFacts(name, path, float(speed), int(cores), int(plan.get(name, 0)), held, runs, attempts, done_args)
    return meta, machine


def _args(row: str | None, args: str | None, at: int) -> str | None:
    """The job's arguments: its own column for an attempt that failed, the row's "Job Args" cell for a done one."""
    if args is not None or not row:
        return args
    cells = next(row_cells(io.StringIO(requoted(row))), [])
    return cells[at] if len(cells) > at else None


def read_args(machine: MachineFacts, attempts: Iterable[Attempt]) -> dict[str, str]:
    """The arguments of ``attempts`` of a machine loaded without them (``load(done_args=False)``),
    by :attr:`Attempt.key`, read again from its journal in one pass. A done attempt's row never
    changes: a journal replaced since (a run started with ``--fresh``) may lack some, left out."""
    wanted = {a.key for a in attempts}
    if not wanted:
        return {}
    journal = machine.path / JOURNAL_FILE
    found: dict[str, str] = {}
    try:
        db = read_only_connection(journal)
        try:
            header = db.execute("SELECT value FROM meta WHERE key = 'header'").fetchone()
            args_at = len(json.loads(header[0])) + 1 if header else 0
            db.execute("PRAGMA temp_store = MEMORY")  # a full temporary folder is no reason to refuse the journal
            db.execute("CREATE TEMP TABLE wanted (job_id TEXT PRIMARY KEY)")  # beside a journal only read: SQLite's JSON functions were optional before 3.38
            db.executemany("INSERT OR IGNORE INTO wanted VALUES (?)", ((key.split(":", 1)[0],) for key in wanted))
            rows = db.execute("SELECT job_id, attempt, row, args FROM attempts WHERE job_id IN wanted ORDER BY id")
            for job_id, attempt, row, args in rows:
                key = f"{job_id}:{attempt}"
                if key in wanted and key not in found and (text := _args(row, args, args_at)) is not None:
                    found[key] = text
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise unusable_journal(journal, exc) from None
    return found


def assign_slots(spans: Sequence[tuple[int | None, float, float]], workers: int) -> list[int]:
    """The lane of each (slot or None, started, ended), taken in order of start: its slot,
    or for one recorded without a slot (a migrated 0.1 journal), the lowest of the
    ``workers`` lanes free at its start, else the one free soonest. Deterministic.
    """
    lanes = [float("-inf")] * max(workers, 1)
    assigned = []
    for slot, started, ended in spans:
        if slot is None:
            free = [i for i, busy_until in enumerate(lanes[:workers]) if busy_until <= started]
            slot = free[0] if free else min(range(max(workers, 1)), key=lambda i: (lanes[i], i))
        lanes.extend([float("-inf")] * (slot + 1 - len(lanes)))
        lanes[slot] = max(lanes[slot], ended)
        assigned.append(slot)
    return assigned


# --- logs -----------------------------------------------------------------------------------

_JOB_ID = re.compile(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z?")


def last_log_lines(machine: MachineFacts, attempts: Iterable[Attempt], count: int = LOG_LINES, say: Callable[[str], None] | None = None) -> dict[str, list[str]]:
    """The last ``count`` log records (continuation lines included) of each attempt, by
    :attr:`Attempt.key`, read from the machine's log segments oldest first.

    A record is an attempt's when it names the job id and its time lies within the attempt
    (from LOG_BEFORE before its start to LOG_AFTER after its end). One pass over the logs,
    whatever the number of attempts; a truncated gzip member ends a file early, a damaged
    stretch of one is skipped, and ``say`` hears what it held.
    """
    windows: dict[str, list[tuple[float, float, deque[str]]]] = {}
    found: dict[str, deque[str]] = {}
    for attempt in attempts:
        kept: deque[str] = deque(maxlen=count)
        found[attempt.key] = kept
        windows.setdefault(attempt.job_id, []).append((attempt.started - LOG_BEFORE, attempt.ended + LOG_AFTER, kept))
    if windows:
        for path in MachineDir(machine.path, machine.name).segments():
            for record in _records(path, say):
                first = record.split("\n", 1)[0]
                for job_id in _JOB_ID.findall(first):
                    if job_id in windows:
                        at = _record_time(first)
                        for start, end, kept in windows[job_id]:
                            if at is None or start <= at <= end:
                                kept.append(record[:2000])
                        break
    return {key: list(kept) for key, kept in found.items()}


def _records(path: Path, say: Callable[[str], None] | None) -> Iterator[str]:
    """A log file's records: a line starting with a digit starts one, others continue it."""
    record: list[str] = []
    carry = b""
    log = LogFile(path)
    for chunk in log.chunks():
        lines = (carry + chunk).split(b"\n")
        carry = lines.pop()
        for raw in lines:
            line = raw.decode("utf-8", "replace")
            if line[:1].isdigit() and record:
                yield "\n".join(record)
                record = []
            if line:
                record.append(line)
    if carry:
        record.append(carry.decode("utf-8", "replace"))
    if record:
        yield "\n".join(record)
    if say is not None:
        for start, end in log.damaged:
            say(damage_sentence(path, start, end))


def _record_time(line: str) -> float | None:
    match = _TIME.match(line)
    if not match:
        return None
    text = match.group(0).rstrip("Z")
    try:
        return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return None
