"""Process supervision: this machine's worker processes, fed from a source of work.

The data path of one machine::

    pool --> plan --> source --take()--> Runner --Batch | Revoke--> task pipe --> worker
                        ^                 | ^                                 (reader thread
                        |  settle()       | |                                  -> job thread)
                        +--release()------+ +--(RESULTS, Results) | (LOG, [LogEntry])-- result pipe
                                          |
               DoneGroup (a group of done |                        LogEntry
               jobs, as columns) or       |                           |
               AttemptRow (any other)     v                           v
                         Recorder --> journal.sqlite --> results.csv   MachineLog --> <machine>.log.gz

The source decides which job runs next and what a failed attempt means (retry or not); the
runner moves jobs to workers and their records back, and never counts attempts. Unlike the
standard pools, a worker that dies costs only the job it was running: each worker has its own
pipes and a slot on the progress board saying which job it runs, so the runner knows exactly
which job to blame, hands the worker's other jobs back, and starts a replacement. A timeout
stops only the worker (and the programs its job started) of the job that ran too long. Short
jobs travel in batches, and come back in groups that are settled and recorded as columns, with
no Python object per job. Nothing here blocks on a worker: see ``links``.
"""

from __future__ import annotations

import logging
import operator
import signal
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import NamedTuple

from .capture import output_lines
from .clock import SYSTEM_CLOCK, Clock
from .errors import InternalError, UserError
from .journal import AttemptRow, DoneGroup, RunningAttempt
from .lifecycle import USER_SIGNALS, unpacked_folder_gone
from .links import PROCESS_LIMIT, WorkerHub, WorkerLink
from .messages import GARBLED, LOG, REVOKED, Batch, LogEntry, Results, Revoke
from .pool import JobPool
from .progress import IDLE
from .recorder import Recorder
from .sources import JobSource, Task
from .states import JobState, Outcome
from .text import plural
from .worker import NO_THREADS

TICK = 0.1
"""Longest the runner sleeps: the pace of timeouts, interrupts and display updates."""
BATCH_SECONDS = 0.1
"""Short jobs are sent in batches that take about this long: long enough to amortize the two
messages of a batch (a worker's send of its results costs about 0.1 ms here, as it wakes the
runner), short enough that the last batches still spread over every worker (they shrink near
the end) and that a worker's crash hands back little. A worker also has about this much work
queued behind the batch it runs: more than a commit of the journal takes (up to 25 ms here),
during which the runner sends nothing."""
MAX_BATCH = 512
"""At most this many jobs in one message, whatever their length: jobs shorter than
BATCH_SECONDS / MAX_BATCH (0.2 ms) are queued in several messages."""
PER_JOB_GUESS = 20e-6
"""Seconds of jobsplit's own work per job in a worker, until groups of results measure it."""
KILL_GRACE = 1.0
"""Seconds between asking a worker's process group to stop (SIGTERM) and killing it, unless the
run says otherwise (``--stop-grace``); and the wait for killed workers to exit."""
INTERNAL_LIMIT = 3
"""After this many attempts in a row failed inside jobsplit's own code (none done), the run
stops: every job would fail the same way, and it is not the jobs' fault."""
START_FAILURES_LIMIT = 3
"""After this many workers in a row died before they said anything (no job running), the run
stops: workers cannot start here, and replacing them would loop for ever."""
_LOG = logging.getLogger(__name__)

FROZEN_AFTER = 2.0
"""Seconds the run may have been stopped or frozen before that time counts as a pause: every
process stopped by SIGSTOP (as ``scontrol suspend`` does) and continued, which the runner hears
as a SIGCONT wherever it was (see ``continued``), or a freezer that sends none (a frozen
container, a paused VM whose clock went on), seen as a wait that overran. No timeout, rate or
ETA counts it, as for Ctrl-Z, which the run stops itself: an hours-long job was killed as timed
out when a suspended run was continued. Shorter gaps, and a wait's overruns from a busy machine,
change nothing that matters."""
UNPACKED_GONE = "the folder this program unpacked itself into was emptied (see the run's last message); the job runs again"
"""Why a job that failed or crashed once that folder was gone is recorded as interrupted, not failed."""
_OUTSIDE_STOPS = {
    signal.SIGTERM: "a time limit, a preemption or requeue, a service stop",
    **dict.fromkeys(USER_SIGNALS, "a stop asked of the run's every process, as scancel --signal=USR1 --full does"),
}
"""What sends each signal a worker dies of when it is stopped with the whole run (see
Runner._outside_stop)."""

USER_SIGNAL_WAIT = 1.0
"""Seconds the run waits, after a worker died of SIGUSR1 or SIGUSR2, for the signal to reach it
too: sent to every process of the job, it stops the run, and the job runs again."""

STOPPED_WHILE_RUNNING = "the run stopped while this job ran (Ctrl-C, SIGTERM, or an error of jobsplit or the disk); it runs again"
"""Why a job is recorded as interrupted: also a job that failed as the run stopped it (its own
SIGTERM handler raising SystemExit, say), since it may have failed only because it was stopped."""


class RunningJob(NamedTuple):
    """A job on a worker right now, for the display."""

    task: Task
    fraction: float
    elapsed: float


@dataclass
class Counts:
    """What this run settled."""

    done: int = 0
    failed: int = 0


class _Sent(NamedTuple):
    ticket: int
    task: Task


@dataclass(eq=False)
class _Slot:
    link: WorkerLink
    queue: deque[_Sent] = field(default_factory=deque)
    """Sent to this worker and not yet reported back, in the order the worker runs them."""
    timed_out: int | None = None
    """The ticket of the job this worker is being stopped for, once it ran over the timeout."""
    revoking: set[int] = field(default_factory=set)
    """Tickets asked back from this worker (for an idle one), not yet confirmed."""
    kill_at: float = 0.0
    heard: bool = False
    """Whether the worker has sent anything: one that dies before it does never got going."""


class Runner:
    """Runs jobs from a source on ``workers`` processes and records every ended attempt."""

    def __init__(
        self,
        source: JobSource,
        hub: WorkerHub,
        recorder: Recorder,
        pool: JobPool,
        *,
        workers: int,
        run: int,
        timeout: float | None = None,
        stop_grace: float = KILL_GRACE,
        clock: Clock = SYSTEM_CLOCK,
        on_attempt: Callable[[Task, AttemptRow], None] = lambda task, attempt: None,
        on_log: Callable[[int, list[LogEntry]], None] = lambda slot, entries: None,
    ) -> None:
        self.source = source
        self.hub = hub
        self.recorder = recorder
        self.pool = pool
        self.size = workers
        self.run_number = run
        self.timeout = timeout
        self.stop_grace = stop_grace
        """Seconds a stopped job (a timeout, a stop of the run) has to end, by its own SIGTERM
        handler if it has one (saving a checkpoint, say), before its worker is killed."""
        self.clock = clock
        self.on_attempt = on_attempt
        self.on_log = on_log
        self.counts = Counts()
        self._slots: list[_Slot] = []
        self._by_link: dict[int, _Slot] = {}
        self._tickets = 0
        self._job_cost: float | None = None
        """Seconds a job takes on a worker, jobsplit's own work included (measured)."""
        self._started_at: dict[int, float] = {}
        """Ticket -> wall-clock start of a running job, fixed when first seen."""
        self._internal_in_a_row = 0
        self._start_failures: list[int | None] = []
        """Exit statuses of the workers that died in a row before they said anything."""
        self._oom_kills = hub.oom_kills()
        """The count of out-of-memory kills (see WorkerHub.oom_kills) when last read: at the start, at each crash."""
        self._pauses: list[tuple[float, float]] = []
        """(start, end) of each pause (Ctrl-Z, a stop or a freeze from outside), monotonic: time no job's timeout counts."""
        self._stopping = False
        self._terminated = False
        """A worker was stopped with the whole run by a signal not ours (see _outside_stop): the
        run stops as if it had one too."""
        self._should_stop: Callable[[], bool] = lambda: False
        self._turned_at = clock.monotonic()
        """When the loop last turned (or began to wait): the last time this process surely ran."""
        self._continued: list[tuple[float, float]] = []
        """(when the loop had last turned, when it was continued) of each SIGCONT not yet counted."""
        self._emptied: Path | None = None
        """This one-file program's unpacked folder, once a failure found it emptied: the run stops."""

    # --- the loop -----------------------------------------------------------------------

    def run(self, should_stop: Callable[[], bool], on_tick: Callable[[], None] = lambda: None) -> bool:
        """Run until the source has settled every job (True), or ``should_stop()`` or a worker is
        stopped with the whole run by a signal from outside (False, see _outside_stop).

        Workers start one per turn of the loop, so a stop is honoured while they start.
        """
        wanted_workers = min(self.size, self.source.remaining())
        if wanted_workers == 0:
            return True  # nothing left to run: settled, whatever stop was asked (a Ctrl-C while a finished share was read back)
        self._should_stop = should_stop
        try:
            while not (should_stop() or self._terminated):
                self._turned_at = self.clock.monotonic()
                growing = len(self._slots) < wanted_workers
                if growing:
                    self._add(self._start(len(self._slots)))
                self._dispatch()
                self.recorder.flush_if_due(self.running_attempts)  # after the dispatch: the workers' next jobs are on their way while it commits
                if self.source.remaining() == 0:
                    return True
                timeout = 0.0 if growing else min(TICK, self.recorder.due_in())
                waited = self._turned_at = self.clock.monotonic()
                ready = self.hub.wait([s.link for s in self._slots], timeout)
                self._count_freezes(waited, timeout)  # before any job's end or timeout is judged
                for link in ready:
                    slot = self._by_link.get(id(link))
                    if slot is not None:
                        self._service(slot)
                self._enforce_timeouts()
                if self._internal_in_a_row >= INTERNAL_LIMIT:
                    raise InternalError(
                        f"jobsplit failed on {self._internal_in_a_row} jobs in a row inside its own code, not in the jobs "
                        "(see the log for the traceback); they are recorded as failed (--retry-failed runs them again), the others "
                        "stay pending. This is a bug in jobsplit: please report it"
                    )
                if self._emptied is not None:
                    raise UserError(f"a job failed (it stays pending, as do the others): {self._emptied_sentence()}")
                if len(self._start_failures) >= START_FAILURES_LIMIT:
                    if self._start_failures[-1] == NO_THREADS:
                        raise UserError(f"{len(self._start_failures)} worker processes in a row could not start their threads, before running any job: {PROCESS_LIMIT}")
                    last = describe_exit(self._start_failures[-1])
                    started = f"{len(self._start_failures)} worker processes in a row exited as they started, before running any job (the last {last}); the jobs stay pending"
                    if self._unpacked_folder_emptied():
                        raise UserError(f"{started}: {self._emptied_sentence()}")
                    raise UserError(
                        f"{started}. A worker runs the entry's top-level code again under --start-method spawn and in executables: make it "
                        "work there (what a worker printed, if anything, is above), or try --start-method fork"
                    )
                on_tick()
            return False
        finally:
            try:  # what ended is durable before the workers stop, which can take the stop grace
                self.recorder.flush(self.running_attempts)
            finally:
                try:
                    self._shut_down()
                finally:
                    self.recorder.flush(self.running_attempts)

    def running(self) -> list[RunningJob]:
        now, jobs = self.clock.monotonic(), []
        for slot in self._slots:
            state = slot.link.current()
            sent = self._find(slot, state.ticket)
            if sent is not None:
                jobs.append(RunningJob(sent.task, state.fraction, now - state.started))
        return jobs

    def running_attempts(self) -> list[RunningAttempt]:
        """What the journal records as running at each commit."""
        attempts = []
        for slot in self._slots:
            state = slot.link.current()
            sent = self._find(slot, state.ticket)
            if sent is not None:
                started = self._started_at.setdefault(sent.ticket, self._wall(state.started))
                attempts.append(RunningAttempt(sent.task.job_id, sent.task.attempt, slot.link.slot, slot.link.pid, started))
        return attempts

    def kill(self) -> None:
        """Kill every worker and what its job started, at once (a forced exit follows)."""
        for slot in self._slots:
            slot.link.signal(signal.SIGKILL)

    def pause(self) -> None:
        """Stop every worker and the programs its job started (Ctrl-Z)."""
        for slot in self._slots:
            slot.link.signal(signal.SIGSTOP)

    def resume(self, paused: float) -> None:
        """Continue the workers after a pause of ``paused`` seconds, which no timeout counts."""
        self._count_pause(paused, self.clock.monotonic())
        self.hub.resumed(paused)  # before any job goes on: each leaves the pause out of its running time
        for slot in self._slots:
            slot.link.signal(signal.SIGCONT)

    def _count_pause(self, paused: float, ended: float) -> None:
        """The run was paused ``paused`` seconds, until ``ended``: no timeout, rate or ETA counts them."""
        self._pauses.append((ended - paused, ended))
        for slot in self._slots:
            slot.kill_at += paused

    def continued(self) -> None:
        """A SIGCONT came (its handler calls this): if this process had been stopped, it was
        since the loop last turned, wherever the stop found it. Counted by the loop (see
        ``_count_freezes``), less the Ctrl-Z pauses counted meanwhile."""
        self._continued.append((self._turned_at, self.clock.monotonic()))

    def _count_freezes(self, waited: float, timeout: float) -> None:
        """Count as pauses, beyond FROZEN_AFTER, the stops SIGCONTs told of, then how much longer
        than ``timeout`` the wait begun at ``waited`` took (a freeze that sent no signal)."""
        self._count_stops()
        overrun = self.clock.monotonic() - waited - timeout - self.paused_since(waited)
        if overrun > FROZEN_AFTER:
            self._count_pause(overrun, self.clock.monotonic())
            _LOG.warning(
                "this run could not run for %.1fs (a frozen container, a paused virtual machine, or a host too busy to run it): "
                "no timeout counts that time, but the running time of the jobs that ran then does", overrun,
            )  # fmt: skip

    def _count_stops(self) -> None:
        while self._continued:
            since, continued = self._continued.pop(0)
            stopped = continued - since - self.paused_since(since)
            if stopped > FROZEN_AFTER:
                self._count_pause(stopped, continued)
                _LOG.warning(
                    "this run was stopped for %.1fs (SIGSTOP: a suspended batch job, or a person) and continued: no timeout counts "
                    "that time, but the running time of the jobs that ran then does", stopped,
                )  # fmt: skip

    def _start(self, index: int) -> _Slot:
        return _Slot(self.hub.start(index))

    def _add(self, slot: _Slot) -> None:
        self._slots.append(slot)
        self._by_link[id(slot.link)] = slot

    def _service(self, slot: _Slot) -> None:
        """A worker has news: messages, room in its pipe, or its exit."""
        self._handle(slot, slot.link.pump())
        if slot.link.exit_code() is not None and slot in self._slots:
            self._lost(slot)

    # --- dispatch -----------------------------------------------------------------------

    def _dispatch(self) -> None:
        asked = False
        for slot in sorted(self._slots, key=lambda s: len(s.queue)):  # idle workers first
            count, unit = self._wanted(slot)
            if slot.timed_out is None and count:
                tasks = self.source.take(count)
                asked = True
                for start in range(0, len(tasks), unit):
                    self._send(slot, tasks[start : start + unit])
        if not asked:
            self.source.take(0)  # the source's tick: a shared queue renews its leases here
        if any(not slot.queue for slot in self._slots):
            self._steal()

    def _wanted(self, slot: _Slot) -> tuple[int, int]:
        """How many jobs to send now, in messages of how many (a unit): a worker always has at
        least one unit queued behind the one it runs, so it never waits for the runner between
        jobs; a unit is one job, or for short jobs a batch that takes about BATCH_SECONDS. Jobs
        so short that a unit of MAX_BATCH takes less get several units queued, about
        BATCH_SECONDS of them, so that the worker runs on while the runner commits. Near the end
        units and queues shrink, so the last jobs spread over every worker."""
        cost = self._job_cost
        unit = ahead = 1 if cost is None else max(1, int(BATCH_SECONDS / cost))
        if ahead > 1:
            spare = (self.source.remaining() - self._in_flight()) // (2 * self.size)
            unit = max(1, min(MAX_BATCH, ahead, spare))
            ahead = max(unit, min(ahead, spare))
        queued = len(slot.queue) - len(slot.revoking)
        if queued > ahead:
            return 0, unit
        return ahead + unit - queued if ahead > unit else unit, unit

    def _in_flight(self) -> int:
        return sum(len(slot.queue) for slot in self._slots)

    def _steal(self) -> None:
        """An idle worker, with nothing left to take: take back a job queued (not started) on a
        busier worker, so the last jobs never wait behind a long one while a worker idles. The
        job moves only once its worker confirms it had not started it (REVOKED)."""
        if self.source.remaining() > self._in_flight():
            return  # the source still has work to give
        idle = sum(1 for slot in self._slots if not slot.queue and slot.timed_out is None)
        for slot in sorted(self._slots, key=lambda s: len(s.queue) - len(s.revoking), reverse=True):
            if idle <= 0:
                return
            running = slot.link.current().ticket
            candidates = [sent.ticket for sent in slot.queue if sent.ticket != running and sent.ticket not in slot.revoking]
            if candidates and len(slot.queue) - len(slot.revoking) >= 2:
                ticket = candidates[-1]
                slot.revoking.add(ticket)
                slot.link.send(Revoke(ticket))
                idle -= 1

    def _send(self, slot: _Slot, tasks: list[Task]) -> None:
        first = self._tickets + 1
        self._tickets += len(tasks)
        sent = list(map(_Sent._make, zip(range(first, self._tickets + 1), tasks)))  # no Python loop (a _make call per job remains)
        if self._try_send(slot, sent) is None:
            slot.queue.extend(sent)
            return
        for one in sent:  # some job cannot be pickled: find out which, one by one
            failure = self._try_send(slot, [one])
            if failure is None:
                slot.queue.append(one)
            else:
                now = self.clock.time()
                error = f"the job's arguments cannot be sent to a worker process ({type(failure).__name__}: {failure})"
                self._record(slot, [(one.task, Outcome.ERROR, now, now, None, None, None, error)])

    def _try_send(self, slot: _Slot, sent: list[_Sent]) -> Exception | None:
        """Send a batch of jobs, or say why it cannot be pickled.

        A job that is a tuple or dict of a class that cannot be pickled (the namedtuples of
        pandas' ``itertuples()``, made on the fly; a ``defaultdict`` with a lambda) is sent as
        a plain tuple or dict: the job function gets its items as arguments, never the object,
        and its identity is the same."""
        try:
            slot.link.send(self._batch(sent))
        except MemoryError:
            raise  # the runner's own memory, not these jobs' fault: the command stops and says so
        except Exception:  # noqa: BLE001 - any pickling failure: try again with plain containers
            try:
                slot.link.send(self._batch(sent, plain=True))
            except MemoryError:
                raise
            except Exception as exc:  # noqa: BLE001 - any pickling failure is these jobs'
                return exc
        return None

    def _batch(self, sent: list[_Sent], *, plain: bool = False) -> Batch:
        pool = self.pool
        positions = [s.task.position for s in sent]
        jobs = [pool.jobs[p] for p in positions]
        return Batch(
            [s.ticket for s in sent],
            positions,
            [s.task.job_id for s in sent],
            list(map(_plain_container, jobs)) if plain else jobs,
            [pool.identity_text(p) for p in positions] if pool.key is not None else None,
        )

    # --- results --------------------------------------------------------------------------

    def _handle(self, slot: _Slot, messages: Iterable[tuple[str, object]]) -> None:
        """Log entries go to the log; ended attempts to the source, then the recorder; revoked
        jobs back to the source, for an idle worker."""
        for kind, payload in messages:
            if not slot.heard:
                slot.heard = True
                self._start_failures.clear()
            if kind == LOG:
                self.on_log(slot.link.slot, payload)  # type: ignore[arg-type]
                continue
            if kind == GARBLED:
                raise InternalError(
                    f"jobsplit could not read what worker {slot.link.slot} (pid {slot.link.pid}) sent ({payload}): something that is "
                    "not jobsplit's wrote into its pipe to the runner; what the workers reported before is recorded, the other jobs stay "
                    "pending. Please report it"
                )
            results: Results = payload  # type: ignore[assignment]
            if results.outcomes.count(Outcome.DONE) == len(results.tickets) and not results.internal:
                self._record_done(slot, results)
                continue
            ended, revoked, queue, started_at = [], [], slot.queue, self._started_at
            stopping = self._stopping or self._terminated or self._should_stop()
            for ticket, outcome, started, running_time, paused, row, error, max_rss, cpu in zip(
                results.tickets, results.outcomes, results.started, results.running_times, results.paused, results.rows, results.errors, results.max_rss, results.cpu_seconds
            ):
                if outcome == REVOKED:  # confirmed as soon as asked: ahead of the job still running
                    sent = next(s for s in queue if s.ticket == ticket)
                    queue.remove(sent)
                    slot.revoking.discard(ticket)
                    revoked.append(sent.task)
                    continue
                sent = queue.popleft()
                assert sent.ticket == ticket, "a worker reports its jobs in the order it was given them"
                if started_at:
                    started_at.pop(ticket, None)
                ended_at = started + running_time + paused
                if outcome != Outcome.DONE:
                    if ticket == slot.timed_out:  # the job's own SIGTERM handler ended it
                        outcome, error = Outcome.TIMEOUT, f"{self._timed_out()}; how the job ended as it was stopped:\n{error}"
                    elif stopping or slot.timed_out is not None:  # the second: the job after the one that timed out, as the stop reached it
                        self._record_interrupted(slot, sent.task, started, ended_at, f"{STOPPED_WHILE_RUNNING}. How the job ended as it was stopped:\n{error}")
                        continue
                    elif self._unpacked_folder_emptied():
                        self._record_interrupted(slot, sent.task, started, ended_at, f"{UNPACKED_GONE}. How the job failed:\n{error}")
                        continue
                ended.append((sent.task, outcome, started, ended_at, max_rss, cpu, row, error))
            if revoked:
                self.source.release(revoked)
            if ended:
                self._count_internal(results)
                self._record(slot, ended)
                self._learn(results, len(ended))

    def _record_done(self, slot: _Slot, results: Results) -> None:
        """A group of results that are all done (short jobs: almost every group), settled and
        recorded as columns: a few C-level passes, no Python object per job. Where the source
        does not leave every job done (a shared queue that superseded some), one by one."""
        count, queue = len(results.tickets), slot.queue
        sent = [queue.popleft() for _ in range(count)]
        assert [s.ticket for s in sent] == results.tickets, "a worker reports its jobs in the order it was given them"
        if self._started_at:
            for ticket in results.tickets:
                self._started_at.pop(ticket, None)
        tasks = [s.task for s in sent]
        states = self.source.settle(list(zip(tasks, repeat(Outcome.DONE))))
        ended = list(map(operator.add, map(operator.add, results.started, results.running_times), results.paused))
        if states.count(JobState.DONE) == count:
            group = DoneGroup(
                self.run_number, slot.link.slot, slot.link.pid, [t.job_id for t in tasks], [t.attempt for t in tasks],
                results.started, ended, results.max_rss, results.cpu_seconds, results.rows,  # type: ignore[arg-type] # all done: every row is a line
            )  # fmt: skip
            self.counts.done += count
            self.recorder.add([group])
        else:
            self._record(slot, list(zip(tasks, results.outcomes, results.started, ended, results.max_rss, results.cpu_seconds, results.rows, results.errors)), states=states)
        self._internal_in_a_row = 0
        self._learn(results, count)

    def _count_internal(self, results: Results) -> None:
        """Failures in jobsplit's own code in a row (any job done in between resets the count)."""
        internal = set(results.internal)
        for ticket, outcome in zip(results.tickets, results.outcomes):
            if ticket in internal:
                self._internal_in_a_row += 1
            elif outcome == Outcome.DONE:
                self._internal_in_a_row = 0

    def _record(
        self,
        slot: _Slot,
        ended: Sequence[tuple[Task, str, float, float, int | None, float | None, str | None, str | None]],
        exit_code: int | None = None,
        states: Sequence[JobState] | None = None,
    ) -> None:
        """Settle ended attempts with the source (unless ``states`` says how it settled them)
        and hand them to the recorder."""
        if states is None:
            states = self.source.settle([(task, outcome) for task, outcome, *_ in ended])  # type: ignore[misc]
        run, worker, pid = self.run_number, slot.link.slot, slot.link.pid
        code, signum = (None, -exit_code) if exit_code is not None and exit_code < 0 else (exit_code, None)
        attempts = []
        done = failed = 0
        for (task, outcome, started, ended_at, max_rss, cpu, row, error), state in zip(ended, states):
            if outcome == Outcome.DONE:
                attempts.append(AttemptRow(task.job_id, task.attempt, run, worker, pid, started, ended_at, outcome, state, None, None, max_rss, cpu, row))
            else:
                attempt = AttemptRow(
                    task.job_id, task.attempt, run, worker, pid, started, ended_at, outcome, state, code, signum, max_rss, cpu, None, self.pool.identity_text(task.position), error
                )
                attempts.append(attempt)
                self.on_attempt(task, attempt)
            if state == JobState.DONE:
                done += 1
            elif state == JobState.FAILED:
                failed += 1
        self.counts.done += done
        self.counts.failed += failed
        self.recorder.add(attempts)

    def _learn(self, results: Results, count: int) -> None:
        """The cost of a job on a worker, jobsplit's own included: the span of a group of
        results over its jobs (one job alone: its running time and a guess at the rest)."""
        if count > 1:
            span = results.started[-1] + results.running_times[-1] - results.started[0]
            cost = span / len(results.tickets)
        else:
            cost = results.running_times[-1] + PER_JOB_GUESS
        mean = self._job_cost
        self._job_cost = cost if mean is None else 0.7 * mean + 0.3 * cost

    # --- failures -------------------------------------------------------------------------

    def _outside_stop(self, code: int | None) -> signal.Signals | None:
        """The signal a worker that died with exit status ``code`` was stopped by with the whole
        run, if it was (None: it crashed). Never sent by jobsplit (its stops and timeouts never
        come here), but by a scheduler's time limit, preemption or requeue, which signal every
        process of the job at once, a service manager its whole group, or a user's stop (scancel
        --signal=USR1 --full). A worker dies of SIGTERM only once it has found that the job did
        not send it (see worker._on_terminate); of SIGUSR1 or SIGUSR2 (a job's, at their
        defaults) the run counts a stop only if it is asked to stop itself within
        USER_SIGNAL_WAIT: else the job sent it to its own process group, the worker's (``kill
        -USR1 0``), and crashed its worker."""
        if code is None or -code not in _OUTSIDE_STOPS:
            return None
        stop = signal.Signals(-code)
        waited_until = self.clock.monotonic() + USER_SIGNAL_WAIT
        while stop != signal.SIGTERM and not self._should_stop():  # the run's signal handler sets it: it runs during the sleep
            if self.clock.monotonic() >= waited_until:
                return None
            self.clock.sleep(0.01)
        return stop

    def _lost(self, slot: _Slot) -> None:
        """A worker died: record what it reported, blame its current job, hand back the rest."""
        self._handle(slot, slot.link.pump())
        code = slot.link.exit_code()
        state = slot.link.current()
        self._log_leftover_output(slot, state.ticket)
        stop = self._outside_stop(code) if slot.timed_out is None else None
        if stop is not None:
            self._terminated = True
            sent = self._find(slot, state.ticket)
            if sent is not None:
                self._interrupted(slot, sent, f"the worker was stopped by a {stop.name} from outside jobsplit ({_OUTSIDE_STOPS[stop]}); it runs again")
        else:
            if slot.timed_out is not None:
                culprit, outcome, error = slot.timed_out, Outcome.TIMEOUT, self._timed_out()
            else:
                culprit, outcome = state.ticket, Outcome.CRASHED
                error = f"the worker process died while running this job ({describe_exit(code)}{self._out_of_memory(code)})"
            if state.ticket == IDLE and not slot.heard:
                self._start_failures.append(code)
            else:
                self._start_failures.clear()  # it got going: workers can start here
            sent = self._find(slot, culprit)
            if sent is not None and outcome == Outcome.CRASHED and self._unpacked_folder_emptied():
                self._interrupted(slot, sent, f"{UNPACKED_GONE}; the worker died while running this job ({describe_exit(code)})")
            elif sent is not None:
                slot.queue.remove(sent)
                elapsed = self.clock.monotonic() - state.started if state.ticket == culprit else 0.0
                now = self.clock.time()
                self._started_at.pop(sent.ticket, None)
                self._record(slot, [(sent.task, outcome, now - elapsed, now, None, None, None, error)], exit_code=code)
        slot.link.signal(signal.SIGKILL)  # the programs its job started die with it
        self._stop_orphans(slot.link.slot)
        self._close(slot)
        index = self._slots.index(slot)
        del self._by_link[id(slot.link)]
        del self._slots[index]  # before its replacement starts: should that fail, the run's stop must not write to its closed pipes
        if not (self._stopping or self._terminated or len(self._start_failures) >= START_FAILURES_LIMIT):
            replacement = self._start(slot.link.slot)
            self._slots.insert(index, replacement)
            self._by_link[id(replacement.link)] = replacement

    def _close(self, slot: _Slot) -> None:
        """Hand back the jobs a stopped worker never reported; free its pipes."""
        if slot.queue:
            self.source.release(sent.task for sent in slot.queue)
            for sent in slot.queue:
                self._started_at.pop(sent.ticket, None)
            slot.queue.clear()
        slot.link.close()

    def _enforce_timeouts(self) -> None:
        now = self.clock.monotonic()
        self._count_stops()  # after ``now``: a stop just before it is counted, one after it cannot make ``now`` late
        for slot in self._slots:
            if slot.timed_out is not None:
                if now >= slot.kill_at:
                    slot.link.signal(signal.SIGKILL)
            elif self.timeout is not None:
                state = slot.link.current()
                if state.ticket != IDLE and now - state.started - self.paused_since(state.started) > self.timeout:
                    slot.timed_out, slot.kill_at = state.ticket, now + self.stop_grace
                    slot.link.stop()

    def _out_of_memory(self, code: int | None) -> str:
        """What to add to the crash of a worker that exited with ``code``: whether the kernel's
        out-of-memory killer (which kills with SIGKILL) killed a process meanwhile."""
        before, self._oom_kills = self._oom_kills, self.hub.oom_kills()
        if code != -signal.SIGKILL or before is None or self._oom_kills is None or self._oom_kills <= before:
            return ""
        return (
            ": the kernel's out-of-memory killer killed a process meanwhile, most likely this worker: the job needed more "
            "memory than there was (or than the run's memory limit allows); make it hold less at once, or run fewer jobs at a time (--workers), "
            "or, if a worker's memory grows job after job (a leak), have workers replaced before that with --worker-memory SIZE"
        )

    def _unpacked_folder_emptied(self) -> bool:
        """Whether the folder this one-file program unpacked itself into has been emptied (noted
        in ``_emptied``): then programs the jobs start from ``sys.executable`` and imports of
        modules not loaded yet fail, in every job from then on, through no fault of theirs."""
        if self._emptied is None:
            self._emptied = unpacked_folder_gone()
        return self._emptied is not None

    def _emptied_sentence(self) -> str:
        return (
            f"the folder this program unpacked itself into, {self._emptied}, has been emptied since it started (a clean-up of old files in the "
            "temporary folder), so no new process of it can start, nor a module it has not loaded yet be imported: run the same command "
            "again to resume (it unpacks itself anew); for runs of days, build with MODE=onedir or set TMPDIR outside /tmp"
        )

    def paused_since(self, start: float) -> float:
        """Seconds the run has been paused (Ctrl-Z, a stop or a freeze from outside) since ``start``
        (the clock's monotonic time)."""
        return sum(end - max(begin, start) for begin, end in self._pauses if end > start)

    def _find(self, slot: _Slot, ticket: int) -> _Sent | None:
        if ticket == IDLE:
            return None
        return next((sent for sent in slot.queue if sent.ticket == ticket), None)

    def _wall(self, monotonic: float) -> float:
        return self.clock.time() - (self.clock.monotonic() - monotonic)

    # --- the end --------------------------------------------------------------------------

    def _shut_down(self) -> None:
        """Stop every worker; a job that was running is recorded as interrupted, and every job
        not reported goes back to the source. What fails in reading a worker's last messages is
        raised once every worker's process group is killed: raised at once, it left what their
        jobs started running after the run (a hung process of a job's pool, seen once)."""
        self._stopping = True
        for slot in self._slots:
            if slot.queue:
                slot.link.stop()  # interrupted: its jobs will run again
            else:
                slot.link.send(None)  # idle: a polite stop
        failures: list[Exception] = []
        self._await_exits(self.stop_grace, failures)
        for slot in self._slots:
            if slot.link.exit_code() is None:
                slot.link.signal(signal.SIGKILL)
        self._await_exits(KILL_GRACE, failures)
        for slot in list(self._slots):
            self._handle_last(slot, failures)
            slot.link.signal(signal.SIGKILL)  # anything its job started and left behind
            self._close(slot)
        if self._slots:
            self._stop_orphans(self._slots[0].link.slot)
        self._slots.clear()
        self._by_link.clear()
        if failures:
            raise failures[0]

    def _handle_last(self, slot: _Slot, failures: list[Exception], *, exited: bool = True) -> None:
        """A stopping worker's messages, and once it has exited the job it was running, recorded
        as interrupted; what fails (a garbled pipe, say) goes to ``failures``, for _shut_down to
        raise once every worker is stopped."""
        try:
            self._handle(slot, slot.link.pump())
            if exited:
                self._log_leftover_output(slot, slot.link.current().ticket)
            if exited and (sent := self._find(slot, slot.link.current().ticket)) is not None:
                self._interrupted(slot, sent, STOPPED_WHILE_RUNNING)
        except Exception as exc:  # noqa: BLE001 - raised by _shut_down, after the other workers are stopped
            failures.append(exc)

    def _log_leftover_output(self, slot: _Slot, ticket: int) -> None:
        """Log what the jobs of a worker that exited wrote and it never read, under the job it
        was running (``ticket``): a line printed just before ``os._exit``, the traceback that
        ``faulthandler`` writes as a segfault kills it, the last words of a job killed at its
        timeout. Its own thread read them only while it lived."""
        sent = self._find(slot, ticket)
        job, now = sent.task.job_id if sent is not None else "-", self.clock.time()
        entries = [LogEntry(now, level, name, job, line) for name, level, data in slot.link.leftover_output() for line in output_lines(data)]
        if entries:
            self.on_log(slot.link.slot, entries)

    def _stop_orphans(self, slot: int) -> None:
        """Programs left by workers that died, outside their process groups: killed, and named
        in the log (as a worker names those a finished job left)."""
        orphans = self.hub.stop_orphans()
        if orphans:
            listed = ", ".join(f"pid {pid} ({command[:80]})" for pid, command in orphans)
            message = f"killed {plural(len(orphans), 'program')} that a stopped or dead worker's jobs left running outside its process group: {listed}"
            self.on_log(slot, [LogEntry(self.clock.time(), "WARNING", "jobsplit", "-", message)])

    def _interrupted(self, slot: _Slot, sent: _Sent, error: str) -> None:
        """Record the job running on a stopped worker as interrupted, and hand it back: it runs again."""
        slot.queue.remove(sent)
        started = self._started_at.pop(sent.ticket, self._wall(slot.link.current().started))
        self._record_interrupted(slot, sent.task, started, self.clock.time(), error)

    def _record_interrupted(self, slot: _Slot, task: Task, started: float, ended: float, error: str) -> None:
        attempt = AttemptRow(
            task.job_id, task.attempt, self.run_number, slot.link.slot, slot.link.pid, started, ended, Outcome.INTERRUPTED, JobState.PENDING,
            args=self.pool.identity_text(task.position), error=error,
        )  # fmt: skip
        self.recorder.add([attempt])
        self.source.release([task])

    def _timed_out(self) -> str:
        return f"timed out after {self.timeout:g} s (the limit set by --timeout or [jobsplit] timeout)"

    def _await_exits(self, seconds: float, failures: list[Exception]) -> None:
        """Service the workers until all have exited or ``seconds`` have passed (a worker blocked
        writing to a full pipe can only exit once it is read)."""
        deadline = self.clock.monotonic() + seconds
        while (alive := [s for s in self._slots if s.link.exit_code() is None]) and self.clock.monotonic() < deadline:
            for link in self.hub.wait([s.link for s in alive], min(TICK, deadline - self.clock.monotonic())):
                slot = self._by_link.get(id(link))
                if slot is not None:
                    self._handle_last(slot, failures, exited=False)


def _plain_container(job: object) -> object:
    """A job as a built-in tuple or dict if it is one of a subclass (see Runner._try_send)."""
    if isinstance(job, tuple) and type(job) is not tuple:
        return tuple(job)
    if isinstance(job, dict) and type(job) is not dict:
        return dict(job)
    return job


def describe_exit(code: int | None) -> str:
    """``exit status 3``, ``killed by SIGSEGV``."""
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"
