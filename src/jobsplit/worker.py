"""The worker process: runs the jobs its pipe brings, one at a time, and sends back rows.

A worker formats each result into its CSV line itself, so what crosses back to the parent is
always plain text: a return value or exception that cannot be pickled can never hang the run.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from multiprocessing.connection import Connection
from queue import SimpleQueue
from typing import Any

from .config import Header, JobConfig, LogSettings
from .lifecycle import die_with_parent, restore_library_path
from .logs import LogEntry, WorkerLogging
from .pool import call_args, identity_text
from .progress import ProgressBoard, ProgressReporter
from .results import ResultShapeError, RowFormatter
from .state import DONE, FAILED, Record

RECORDS, LOG = "records", "log"
"""The two kinds of message a worker sends: ended attempts, and log entries."""
FLUSH_INTERVAL = 0.05
"""Seconds a finished result may wait in the worker before it is sent (short jobs are sent in groups)."""

Assignment = tuple[int, int, str, Any, "str | None", int]
"""(task seq, pool position, job id, the job, its Job Args text or None to compute here, attempt)."""


@dataclass(frozen=True)
class WorkerSetup:
    """What every worker needs; sent once when it starts (pickled under ``spawn``)."""

    job: Callable[..., Any]
    config: dict[str, dict[str, str]]
    header: Header
    machine: str
    run_started: float
    seed: bytes
    board: ProgressBoard
    nice: int
    log: LogSettings
    per_job_logs: Path | None = None


def job_random(seed: bytes, job_id: str) -> random.Random:
    """The job's own stream: the same job draws the same numbers on any machine and worker."""
    return _SeededOnFirstUse(seed, job_id)


def job_seed(seed: bytes, job_id: str) -> int:
    """The integer a job's ``random.Random`` is seeded with: SHA-256 of (seed, job id)."""
    return int.from_bytes(hashlib.sha256(b"jobsplit/random/v1\n" + seed + bytes.fromhex(job_id)).digest(), "big")


class _SeededOnFirstUse(random.Random):
    """A ``random.Random`` that seeds itself when the job first touches it.

    Seeding costs a hash and the Mersenne Twister's set-up, about 5 us: more than a short
    job's whole dispatch, and many jobs never draw a number. On first attribute access the
    object seeds itself and becomes a plain ``random.Random``, so later calls run at full
    speed and the stream is exactly ``random.Random(job_seed(seed, job_id))``'s.
    """

    def __init__(self, seed: bytes, job_id: str) -> None:  # noqa: D107 - seeding is deferred on purpose
        self.__dict__["_seed_on_first_use"] = (seed, job_id)

    def __getattribute__(self, name: str) -> Any:
        state = object.__getattribute__(self, "__dict__")
        if "_seed_on_first_use" in state:
            object.__setattr__(self, "__class__", random.Random)
            random.Random.seed(self, job_seed(*state.pop("_seed_on_first_use")))
        return object.__getattribute__(self, name)


def worker_main(setup: WorkerSetup, tasks: Connection, results: Connection, slot: int, parent_pid: int) -> None:
    """Entry point of a worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a forked child inherits the parent's handler
    die_with_parent(parent_pid)
    restore_library_path()
    if setup.nice:
        os.nice(setup.nice)
    outbox = _Outbox(results)
    logs = WorkerLogging(outbox.send_log, setup.log, setup.per_job_logs)
    inbox: SimpleQueue[list[Assignment] | None] = SimpleQueue()
    threading.Thread(target=_read, args=(tasks, inbox, outbox, parent_pid), daemon=True, name="jobsplit-tasks").start()
    run = _JobRunner(setup, slot, logs)
    while (batch := inbox.get()) is not None:
        for assignment in batch:
            outbox.add(run(assignment))
        outbox.flush()
    logs.close()  # the last output of the last job reaches the log before the worker exits


class _Outbox:
    """What a worker sends: ended attempts (grouped for short jobs) and log entries.

    Sends come from the job thread, the log handler in any thread, and the task reader,
    which also sends finished results that would otherwise wait behind a long job.
    """

    def __init__(self, results: Connection) -> None:
        self._results = results
        self._lock = threading.Lock()
        self._pending: list[Record] = []
        self._since = 0.0

    def add(self, record: Record) -> None:
        with self._lock:
            if not self._pending:
                self._since = time.monotonic()
            self._pending.append(record)
        self.flush(older_than=FLUSH_INTERVAL)

    def flush(self, older_than: float = 0.0) -> None:
        with self._lock:
            if self._pending and time.monotonic() - self._since >= older_than:
                self._results.send((RECORDS, self._pending))
                self._pending = []

    def send_log(self, entries: list[LogEntry]) -> None:
        with self._lock:
            self._results.send((LOG, entries))


def _read(tasks: Connection, inbox: SimpleQueue[list[Assignment] | None], outbox: _Outbox, parent_pid: int) -> None:
    """Drain the task pipe eagerly (so the parent never blocks on a send), send results that
    wait too long, and watch the parent: a worker whose parent is gone exits at once."""
    try:
        while True:
            if tasks.poll(FLUSH_INTERVAL):
                inbox.put(tasks.recv())
            outbox.flush(older_than=FLUSH_INTERVAL)
            if os.getppid() != parent_pid:
                os._exit(1)  # nobody would record this worker's results
    except (EOFError, OSError):
        os._exit(1)  # the parent closed our pipe only by dying: it never does so to a live worker


class _JobRunner:
    """Calls the job with its injected arguments and turns any outcome into a journal record."""

    def __init__(self, setup: WorkerSetup, slot: int, logs: WorkerLogging) -> None:
        self.setup = setup
        self.slot = slot
        self.logs = logs
        self.config = JobConfig()
        self.config.read_dict(setup.config)
        self.rows = RowFormatter(setup.header, setup.machine, setup.run_started)
        self.progress = ProgressReporter(setup.board, slot)

    def __call__(self, assignment: Assignment) -> Record:
        seq, position, job_id, job, job_args, attempt = assignment
        setup, board = self.setup, self.setup.board
        args, kwargs = call_args(job)
        progress = self.progress
        progress.restart()
        self.logs.start_job(job_id)
        board.start(self.slot, seq)
        started, clock = time.time(), time.perf_counter()
        try:
            rng = job_random(setup.seed, job_id)
            if kwargs:
                value = setup.job(**kwargs, random_obj=rng, config=self.config, progress=progress)
            else:
                value = setup.job(*args, rng, self.config, progress=progress)
            running_time = time.perf_counter() - clock
            if job_args is None:
                job_args = identity_text(job, position)
            return seq, DONE, attempt, DONE, started, running_time, self.rows.line(value, started, running_time, job_id, job_args), None
        except ResultShapeError as exc:
            error = f"wrong result shape: {exc}"
        except BaseException:  # noqa: BLE001 - anything a job raises is that job's failure
            error = traceback.format_exc()
        finally:
            board.finish(self.slot)
            self.logs.end_job()
        return seq, FAILED, attempt, "error", started, time.perf_counter() - clock, None, error
