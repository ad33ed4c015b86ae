"""The worker process: runs the jobs its pipe brings, one at a time, and sends back records.

Three threads, none of which can block another's progress for good:

- the job thread (main) runs jobs and formats each result into its CSV line, so what crosses
  back to the parent is plain text: a value that cannot be pickled never hangs the run;
- the task reader only moves batches from the task pipe into a queue: it never writes, so the
  parent's sends always drain, whatever the result pipe holds;
- the watcher sends results that waited too long behind a long job, and stops the worker (and
  every program its job started) if the parent has died.
"""

from __future__ import annotations

import hashlib
import os
import random
import reprlib
import resource
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from queue import SimpleQueue
from types import FrameType, TracebackType
from typing import Any

from .capture import OutputCapture
from .children import become_group_leader_and_subreaper, stop_children
from .config import Header, JobConfig, LogSettings
from .journal import clean_text
from .lifecycle import die_with_parent, restore_library_path
from .messages import LOG, RECORDS, Assignment, LogEntry, Record
from .pool import call_args, identity_text
from .progress import ProgressBoard, ProgressReporter
from .results import ResultShapeError, RowFormatter
from .states import Outcome

FLUSH_INTERVAL = 0.05
"""Seconds a short job's record may wait in the worker to travel with others."""
CHILD_GRACE = 1.0
"""Seconds a job's leftover child processes get between SIGTERM and SIGKILL."""
MEASURE_MEMORY_ABOVE = 0.001
"""Jobs shorter than this (seconds) get no peak-memory reading: it would cost more than the job."""
REPR_LIMIT = 10_000
"""Characters of a wrong-shaped value's repr kept in the error, so it need not be recomputed."""

_PACKAGE_DIR = str(Path(__file__).resolve().parent)


@dataclass(frozen=True)
class WorkerSetup:
    """What every worker needs; sent once when it starts (pickled under ``spawn``)."""

    job: Callable[..., Any]
    config: dict[str, dict[str, str]]
    header: Header
    machine: str
    digest: str
    code: str
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

    def __new__(cls, seed: bytes, job_id: str) -> _SeededOnFirstUse:
        return super().__new__(cls)  # before Python 3.11, Random.__new__ refuses a second argument

    def __init__(self, seed: bytes, job_id: str) -> None:  # seeding is deferred on purpose
        self.__dict__["_seed_on_first_use"] = (seed, job_id)

    def __getattribute__(self, name: str) -> Any:
        state = object.__getattribute__(self, "__dict__")
        if "_seed_on_first_use" in state:
            object.__setattr__(self, "__class__", random.Random)
            random.Random.seed(self, job_seed(*state.pop("_seed_on_first_use")))
        return object.__getattribute__(self, name)


def worker_main(setup: WorkerSetup, tasks: Connection, results: Connection, slot: int, parent_pid: int) -> None:
    """Entry point of a worker process."""
    global _parent_pid
    _parent_pid = parent_pid
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    become_group_leader_and_subreaper()
    signal.signal(signal.SIGTERM, _on_terminate)
    die_with_parent(parent_pid, signal.SIGTERM)
    restore_library_path()
    if setup.nice:
        os.nice(setup.nice)  # the parent checked that this is allowed
    outbox = _Outbox(results)
    capture = OutputCapture(outbox.send_log, setup.log, setup.per_job_logs)
    inbox: SimpleQueue[list[Assignment] | None] = SimpleQueue()
    threading.Thread(target=_read_tasks, args=(tasks, inbox), daemon=True, name="jobsplit-tasks").start()
    threading.Thread(target=_watch, args=(outbox, parent_pid), daemon=True, name="jobsplit-watch").start()
    run = _JobRunner(setup, slot, capture)
    while (batch := inbox.get()) is not None:
        last = len(batch) - 1
        for index, assignment in enumerate(batch):
            outbox.add(run(assignment), hurry=index == last)
    outbox.flush()
    capture.close()  # the last output of the last job reaches the log before the worker exits


_parent_pid = 0
"""The runner's pid, set when the worker starts."""


def _on_terminate(signum: int, frame: FrameType | None) -> None:
    """SIGTERM: from the runner (a timeout, a stop), or the kernel's word that the parent died.
    Without a parent, the programs the job started go too; then die of the signal as usual."""
    if os.getppid() != _parent_pid:
        _kill_own_group()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _kill_own_group() -> None:
    try:
        os.killpg(os.getpgrp(), signal.SIGKILL)
    except OSError:
        os._exit(1)


class _Outbox:
    """What a worker sends: ended attempts (grouped for short jobs) and log entries."""

    def __init__(self, results: Connection) -> None:
        self._results = results
        self._lock = threading.Lock()
        self._pending: list[Record] = []
        self._since = 0.0

    def add(self, record: Record, *, hurry: bool) -> None:
        """Queue a record; send at once at the end of a batch, when the job was long, or when the
        group has waited long enough: a worker that dies loses at most this group."""
        now = time.monotonic()
        with self._lock:
            if not self._pending:
                self._since = now
            self._pending.append(record)
        if hurry or record.running_time >= FLUSH_INTERVAL or now - self._since >= FLUSH_INTERVAL:
            self.flush()

    def flush(self, older_than: float = 0.0) -> None:
        with self._lock:
            if self._pending and time.monotonic() - self._since >= older_than:
                self._results.send((RECORDS, self._pending))
                self._pending = []

    def send_log(self, entries: list[LogEntry]) -> None:
        with self._lock:
            self._results.send((LOG, entries))


def _read_tasks(tasks: Connection, inbox: SimpleQueue[list[Assignment] | None]) -> None:
    """Move batches from the pipe into the queue, and nothing else: never waits on the result
    pipe, so the parent's sends always drain."""
    try:
        while True:
            inbox.put(tasks.recv())
    except (EOFError, OSError):
        os._exit(1)  # the parent closed our pipe only by dying: it never does so to a live worker


def _watch(outbox: _Outbox, parent_pid: int) -> None:
    """Send records that waited too long behind a long job; stop everything if the parent died
    (where the kernel cannot tell us, or before its signal arrives)."""
    while True:
        time.sleep(FLUSH_INTERVAL)
        if os.getppid() != parent_pid:
            _kill_own_group()  # nobody would record this worker's results
        outbox.flush(older_than=FLUSH_INTERVAL)


class _JobRunner:
    """Calls the job with its injected arguments and turns any outcome into a record."""

    def __init__(self, setup: WorkerSetup, slot: int, capture: OutputCapture) -> None:
        self.setup = setup
        self.slot = slot
        self.capture = capture
        self.config = JobConfig()
        self.config.read_dict(setup.config)
        self.rows = RowFormatter(setup.header, setup.machine, setup.run_started, setup.digest, setup.code)
        self.progress = ProgressReporter(setup.board, slot)
        self.memory = _PeakMemory()

    def __call__(self, assignment: Assignment) -> Record:
        setup, board = self.setup, self.setup.board
        ticket, position, job_id, job, job_args, _ = assignment
        started = time.time()
        try:  # jobsplit's side: a failure here is not the job's
            args, kwargs = call_args(job)
            self.progress.restart()
            self.capture.start_job(job_id)
            rng = job_random(setup.seed, job_id)
            cpu = _cpu_seconds()
        except BaseException:  # noqa: BLE001 - reported as jobsplit's own failure
            return Record(ticket, Outcome.ERROR, started, 0.0, None, _internal(), None, None, internal=True)
        board.start(self.slot, ticket)
        started, clock = time.time(), time.perf_counter()
        error: str | None = None
        try:
            if kwargs:
                value = setup.job(**kwargs, random_obj=rng, config=self.config, progress=self.progress)
            else:
                value = setup.job(*args, rng, self.config, progress=self.progress)
        except BaseException:  # noqa: BLE001 - anything a job raises is that job's failure
            error, value = clean_text(traceback.format_exc()), None
        running_time = time.perf_counter() - clock
        board.finish(self.slot)
        cpu = _cpu_seconds() - cpu
        max_rss = self.memory.peak() if running_time >= MEASURE_MEMORY_ABOVE else None
        self._stop_leftovers()
        self.capture.end_job()
        if error is not None:
            return Record(ticket, Outcome.ERROR, started, running_time, None, error, max_rss, cpu)
        try:
            line = self.rows.line(value, started, running_time, job_id, job_args or identity_text(job, position))
            return Record(ticket, Outcome.DONE, started, running_time, clean_text(line), None, max_rss, cpu)
        except ResultShapeError as exc:
            error = f"wrong result shape: {exc}; the job returned: {bounded_repr(value)}"
            return Record(ticket, Outcome.ERROR, started, running_time, None, clean_text(error), max_rss, cpu)
        except BaseException as exc:  # noqa: BLE001 - a value whose own methods fail is the job's; else ours
            internal = _raised_in_jobsplit(exc.__traceback__)
            error = _internal() if internal else clean_text(traceback.format_exc())
            return Record(ticket, Outcome.ERROR, started, running_time, None, error, max_rss, cpu, internal)

    def _stop_leftovers(self) -> None:
        """Programs the job started and left running are stopped (and said so in the log)."""
        left = stop_children(CHILD_GRACE)
        if left:
            listed = ", ".join(f"pid {pid} ({command[:80]})" for pid, command in left)
            count = f"{len(left)} child process{'es' if len(left) > 1 else ''}"
            self.capture.emit(time.time(), "WARNING", "jobsplit", f"the job left {count} running: {listed}; stopped them (SIGTERM, then SIGKILL after {CHILD_GRACE:g} s)")


def bounded_repr(value: Any, limit: int = REPR_LIMIT) -> str:
    """``repr(value)``, at most ``limit`` characters (lists and strings cut short), never raising."""
    shortened = reprlib.Repr()
    shortened.maxlevel, shortened.maxstring, shortened.maxother, shortened.maxlong = 8, limit, limit, limit
    shortened.maxlist = shortened.maxtuple = shortened.maxdict = shortened.maxset = shortened.maxfrozenset = shortened.maxdeque = 1000
    shortened.maxarray = 1000
    try:
        text = shortened.repr(value)
    except Exception as exc:  # noqa: BLE001 - a repr that fails is still worth a mention
        return f"<a {type(value).__name__} whose repr() raised {type(exc).__name__}: {exc}>"
    return text if len(text) <= limit else f"{text[:limit]}... (cut at {limit:,} characters)"


def _internal() -> str:
    return "internal error in jobsplit, not in the job (please report it): " + clean_text(traceback.format_exc())


def _raised_in_jobsplit(tb: TracebackType | None) -> bool:
    """Whether the innermost frame of a traceback is jobsplit's own code."""
    last = None
    while tb is not None:
        last, tb = tb, tb.tb_next
    return last is not None and last.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR)


def _cpu_seconds() -> float:
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


class _PeakMemory:
    """Peak resident memory of this worker during each job (Linux: ``VmHWM``, reset after each
    reading). ``ru_maxrss`` cannot serve: it keeps the pre-exec parent's peak under ``spawn``."""

    def __init__(self) -> None:
        self._readable = sys.platform.startswith("linux") and os.path.exists("/proc/self/status")
        self._resettable = self._readable

    def peak(self) -> int | None:
        if not self._readable:
            return None
        try:
            with open("/proc/self/status", "rb") as f:
                peak = next((int(line.split()[1]) * 1024 for line in f if line.startswith(b"VmHWM:")), None)
        except (OSError, ValueError):
            self._readable = False
            return None
        if self._resettable:
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")  # the next job's peak starts from the resident size now
            except OSError:
                self._resettable = False  # an old kernel: peaks are the worker's so far
        return peak
