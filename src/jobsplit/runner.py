"""Process supervision: this machine's worker processes, fed from a job source.

Unlike the standard pools, a worker that dies costs only the job it was running: each worker
has its own pipes and a shared-memory slot saying which job it runs, so the supervisor knows
exactly which job to blame, hands the worker's other jobs back, and starts a replacement.
A timeout kills only the worker of the job that ran too long. Short jobs travel in batches.
"""

from __future__ import annotations

import os
import pickle
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess

from .pool import JobPool
from .progress import IDLE, ProgressBoard
from .recorder import Recorder
from .source import JobSource, Task
from .state import DONE, FAILED, PENDING, Record
from .logs import LogEntry
from .worker import LOG, Assignment, WorkerSetup, worker_main

TICK = 0.1
"""Longest the supervisor sleeps: the pace of timeouts, interrupts and display updates."""
BATCH_SECONDS = 0.02
"""Short jobs are sent in batches that take about this long."""
MAX_BATCH = 512
PREFETCH_BELOW = 0.01
"""Jobs shorter than this (seconds, on average) get a batch queued behind the running one."""
KILL_GRACE = 1.0
"""Seconds between asking a worker to terminate and killing it."""


@dataclass(frozen=True)
class Running:
    """A job on a worker right now, for the display."""

    task: Task
    fraction: float
    elapsed: float


@dataclass
class Counts:
    done: int = 0
    failed: int = 0


@dataclass(eq=False)
class _Worker:
    slot: int
    process: BaseProcess
    tasks: Connection
    results: Connection
    queue: deque[Task] = field(default_factory=deque)
    """Sent to this worker and not yet reported back, in the order the worker runs them."""
    timed_out: int | None = None
    """The seq of the job this worker is being stopped for, once it ran over the timeout."""
    kill_at: float = 0.0


class Runner:
    """Runs jobs from a source on ``workers`` processes and records every ended attempt."""

    def __init__(
        self,
        setup: WorkerSetup,
        pool: JobPool,
        source: JobSource,
        recorder: Recorder,
        *,
        workers: int,
        context: BaseContext,
        timeout: float | None = None,
        retries: int = 0,
        on_failure: Callable[[Task, str, str, bool], None] = lambda task, outcome, error, retry: None,
        on_log: Callable[[str, list[LogEntry]], None] = lambda worker, entries: None,
    ) -> None:
        self.setup = setup
        self.pool = pool
        self.source = source
        self.recorder = recorder
        self.size = workers
        self.context = context
        self.timeout = timeout
        self.retries = retries
        self.on_failure = on_failure
        self.on_log = on_log
        self.counts = Counts()
        self._board: ProgressBoard = setup.board
        self._workers: list[_Worker] = []
        self._mean_time: float | None = None

    # --- the loop -----------------------------------------------------------------------

    def run(self, should_stop: Callable[[], bool], on_tick: Callable[[], None] = lambda: None) -> bool:
        """Run until the source is exhausted (True) or ``should_stop()`` (False: interrupted)."""
        self._workers = [self._start(slot) for slot in range(self.size)]
        try:
            while not should_stop():
                self._dispatch()
                if self.source.remaining() == 0:
                    return True
                self._wait()
                self._enforce_timeouts()
                self.recorder.flush_if_due()
                on_tick()
            return False
        finally:
            self._shut_down()
            self.recorder.flush()

    def running(self) -> list[Running]:
        now, jobs = time.monotonic(), []
        for worker in self._workers:
            state = self._board.read(worker.slot)
            if state.seq != IDLE:
                task = next((t for t in worker.queue if t.seq == state.seq), None)
                if task is not None:
                    jobs.append(Running(task, state.fraction, now - state.started))
        return jobs

    def running_seqs(self) -> set[int]:
        return {seq for w in self._workers if (seq := self._board.read(w.slot).seq) != IDLE}

    def kill(self) -> None:
        """Kill every worker at once (a forced exit follows)."""
        for worker in self._workers:
            worker.process.kill()

    def _start(self, slot: int) -> _Worker:
        self._board.finish(slot)
        task_reader, task_writer = self.context.Pipe(duplex=False)
        result_reader, result_writer = self.context.Pipe(duplex=False)
        process = self.context.Process(
            target=worker_main,
            args=(self.setup, task_reader, result_writer, slot, os.getpid()),
            name=f"jobsplit-worker-{slot}",
            daemon=True,
        )
        process.start()
        task_reader.close()
        result_writer.close()
        return _Worker(slot, process, task_writer, result_reader)

    def _wait(self) -> None:
        by_handle: dict[object, _Worker] = {}
        for worker in self._workers:
            by_handle[worker.results] = worker
            by_handle[worker.process.sentinel] = worker
        for handle in wait(list(by_handle), timeout=min(TICK, self.recorder.due_in())):
            worker = by_handle[handle]
            if worker not in self._workers:
                continue  # already replaced while handling its other handle
            if handle is worker.results:
                self._receive(worker)
            else:
                self._lost(worker)

    # --- dispatch -----------------------------------------------------------------------

    def _dispatch(self) -> None:
        for worker in self._workers:
            if worker.timed_out is None and (wanted := self._wanted(worker)):
                tasks = self.source.take(wanted)
                if tasks:
                    self._send(worker, tasks)

    def _wanted(self, worker: _Worker) -> int:
        """How many jobs to send now: one at a time, or a batch behind a batch for short jobs."""
        mean = self._mean_time
        if mean is None or mean >= PREFETCH_BELOW:
            return 0 if worker.queue else 1
        batch = max(1, min(MAX_BATCH, int(BATCH_SECONDS / max(mean, 1e-7)), self.source.remaining() // (2 * self.size)))
        return batch if len(worker.queue) <= batch else 0

    def _send(self, worker: _Worker, tasks: list[Task]) -> None:
        assignments = [self._assignment(t) for t in tasks]
        try:
            worker.tasks.send(assignments)
            worker.queue.extend(tasks)
        except (pickle.PicklingError, TypeError, AttributeError):
            for task, assignment in zip(tasks, assignments):
                self._send_alone(worker, task, assignment)
        except OSError:  # the worker just died; its sentinel will say so
            self.source.release(tasks)

    def _send_alone(self, worker: _Worker, task: Task, assignment: Assignment) -> None:
        try:
            worker.tasks.send([assignment])
            worker.queue.append(task)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            error = f"the job's arguments cannot be sent to a worker process ({type(exc).__name__}: {exc})"
            self._failed(task, (task.seq, FAILED, task.attempt, "error", time.time(), 0.0, None, error))

    def _assignment(self, task: Task) -> Assignment:
        pool = self.pool
        job_args = pool.identity_text(task.position) if pool.key is not None else None
        return task.seq, task.position, task.job_id, pool.jobs[task.position], job_args, task.attempt

    # --- results --------------------------------------------------------------------------

    def _receive(self, worker: _Worker) -> None:
        try:
            self._collect(worker)
            return
        except (EOFError, OSError):
            pass
        self._lost(worker)  # outside the except block: a worker forked there would inherit the exception

    def _collect(self, worker: _Worker) -> None:
        """Handle one message from a worker: log entries, or ended attempts to record."""
        kind, payload = worker.results.recv()
        if kind == LOG:
            self.on_log(f"w{worker.slot}", payload)
            return
        records: list[Record] = payload
        queue, done = worker.queue, []
        for record in records:
            task = queue.popleft()
            assert task.seq == record[0], "a worker reports its jobs in the order it was given them"
            if record[1] == DONE:
                done.append(task)
            else:
                self._failed(task, record)
        self.counts.done += len(done)
        self.source.complete(done)
        self.recorder.add(r for r in records if r[1] == DONE)
        self._learn(sum(r[5] for r in records) / len(records))

    def _drain(self, worker: _Worker) -> None:
        """Record whatever a stopped worker sent before it stopped."""
        try:
            while worker.results.poll():
                self._collect(worker)
        except (EOFError, OSError):
            pass

    def _failed(self, task: Task, record: Record) -> None:
        """A failed attempt: retried while attempts remain, else failed for good."""
        seq, _, attempt, outcome, started, running_time, _, error = record
        retry = task.attempt <= self.retries
        self.recorder.add([(seq, PENDING if retry else FAILED, attempt, outcome, started, running_time, None, error)])
        self.on_failure(task, outcome, error or "", retry)
        if retry:
            self.source.release([task._replace(attempt=task.attempt + 1)])
        else:
            self.counts.failed += 1
            self.source.complete([task])

    def _learn(self, running_time: float) -> None:
        mean = self._mean_time
        self._mean_time = running_time if mean is None else 0.7 * mean + 0.3 * running_time

    # --- failures -------------------------------------------------------------------------

    def _lost(self, worker: _Worker) -> None:
        """A worker died: record what it reported, blame its current job, hand back the rest."""
        self._reap(worker)
        state = self._board.read(worker.slot)
        if worker.timed_out is not None:
            culprit, outcome = worker.timed_out, "timeout"
            error = f"timed out after {self.timeout:g} s (the limit set by --timeout or [jobsplit] timeout)"
        else:
            culprit, outcome = state.seq, "crashed"
            error = f"the worker process died while running this job ({_describe_exit(worker.process.exitcode)})"
        task = next((t for t in worker.queue if t.seq == culprit), None)
        if task is not None:
            worker.queue.remove(task)
            elapsed = time.monotonic() - state.started if state.seq == culprit else 0.0
            self._failed(task, (task.seq, FAILED, task.attempt, outcome, time.time() - elapsed, elapsed, None, error))
        self._close(worker)
        self._workers[self._workers.index(worker)] = self._start(worker.slot)

    def _close(self, worker: _Worker) -> None:
        """Hand back the jobs a stopped worker never reported; free its pipes and slot."""
        if worker.queue:
            self.source.release(worker.queue)
            worker.queue.clear()
        worker.results.close()
        worker.tasks.close()
        self._board.finish(worker.slot)

    def _enforce_timeouts(self) -> None:
        now = time.monotonic()
        for worker in self._workers:
            if worker.timed_out is not None:
                if now >= worker.kill_at:
                    worker.process.kill()
            elif self.timeout is not None:
                state = self._board.read(worker.slot)
                if state.seq != IDLE and now - state.started > self.timeout:
                    worker.timed_out, worker.kill_at = state.seq, now + KILL_GRACE
                    worker.process.terminate()

    # --- the end --------------------------------------------------------------------------

    def _shut_down(self) -> None:
        """Stop every worker; jobs they had not reported go back to the source."""
        for worker in self._workers:
            if worker.queue:
                worker.process.terminate()  # interrupted: its jobs will run again
            else:
                _send_quietly(worker.tasks, None)  # idle: a polite stop
        deadline = time.monotonic() + KILL_GRACE
        for worker in self._workers:
            self._reap(worker, deadline)
            self._close(worker)

    def _reap(self, worker: _Worker, deadline: float | None = None) -> None:
        """Wait for a stopping worker, reading what it still sends (a worker blocked on a full
        pipe could not exit); kill it at the deadline. Then record what it sent last."""
        deadline = deadline if deadline is not None else time.monotonic() + KILL_GRACE
        while worker.process.is_alive() and time.monotonic() < deadline:
            try:
                if worker.results.poll(0.02):
                    self._collect(worker)
            except (EOFError, OSError):
                worker.process.join(max(0.0, deadline - time.monotonic()))
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join()
        self._drain(worker)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def _send_quietly(connection: Connection, message: object) -> None:
    try:
        connection.send(message)
    except OSError:
        pass  # the worker is already gone
