"""One run of this machine's share, wired from its settings: source, runner, recorder, journal,
results and log. It prints nothing: what the user should hear goes to its ``RunEvents``.

The source is the one thing that differs between a static share and a shared queue
(``--balance``): which jobs the machine holds (its share, or what it claims), and who decides
what runs next. The runner, journal, results, logs and display are the same code for both.
"""

from __future__ import annotations

import functools
import json
import logging
import multiprocessing
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from . import balance
from ._version import __version__
from .children import running_since
from .clock import SYSTEM_CLOCK, Clock
from .digest import format_digest
from .display import RunningJob, Snapshot
from .errors import StorageError, UserError
from .failurelines import failure_kind
from .fileid import FileState
from .fingerprint import UNKNOWN
from .jobcall import injects_by_name
from .journal import AttemptRow, Journal, clear_others_wal
from .limits import make_room_for_workers
from .links import ProcessHub
from .logs import MachineLog, parent_logger
from .machines import usable_cores
from .messages import LogEntry
from .nativethreads import size_thread_pools
from .outdir import JOURNAL_FILES, LOCK_FILE, PROGRESS_FILE, holder_text, in_use
from .plan.base import seeded_order
from .progress import ProgressBoard
from .project import Project
from .recorder import Recorder
from .recovery import ForeignTable, ResultRows, adopt, read_rows
from .results import ResultsFile, csv_header_line
from .runner import Runner
from .settings import OVERSUBSCRIBED, RunSettings
from .snapshot import STALLED_AFTER, RunSnapshot, SnapshotWriter, written_elsewhere
from .sources import JobSource, StaticShare, Task
from .sources.redis import RedisQueue
from .states import JobState, RunStatus
from .text import plural, size_text
from .timefmt import utc_timestamp
from .worker import WorkerSetup

DISPLAY_INTERVAL = 0.1
"""Seconds between two snapshots for the display."""


class RunEvents(Protocol):
    """What a run tells the person who started it."""

    def notice(self, text: str) -> None:
        """A sentence worth reading before the run goes on (a recovery, a changed entry)."""
        ...

    def failure(self, text: str, kind: str) -> None:
        """An attempt that did not end done; ``kind`` is what failures alike share (see
        ``failurelines.failure_kind``), so that a console can show repeats once."""
        ...

    def progress(self, snapshot: Snapshot) -> None:
        """The state of the run, about ten times a second."""
        ...


@dataclass(frozen=True)
class RunSummary:
    status: RunStatus
    total: int
    """Jobs this machine holds."""
    done: int
    """Done, earlier runs included."""
    failed: int
    done_this_run: int
    elapsed: float

    @property
    def percent_done(self) -> float:
        """Done jobs (never failed ones) as a percentage of the jobs held."""
        return 100 * self.done / self.total if self.total else 100.0

    @property
    def rate(self) -> float:
        """Jobs done per second in this run."""
        return self.done_this_run / self.elapsed if self.elapsed > 0 else 0.0


class MachineRun:
    """Runs the share of ``settings.machine``; the caller holds the folder's lock."""

    def __init__(
        self, project: Project, job: Callable[..., Any], settings: RunSettings, *, code: str, events: RunEvents, clock: Clock = SYSTEM_CLOCK,
        standing_said: tuple[int, int, int] | None = None,
    ) -> None:
        self.project = project
        self.job = job
        self.settings = settings
        self.code = code
        self.events = events
        self.clock = clock
        self.folder = settings.folder
        self.standing_said = standing_said
        """(done, failed, to go) of the share as the command's first line said it before the run
        began: the resume note says it again only where it differs (results.csv's rows taken
        back, a crashed run's jobs): said twice, it was noise on every resume."""
        self._runner: Runner | None = None
        self._snapshots: SnapshotWriter | None = None

    def execute(self, should_stop: Callable[[], bool]) -> RunSummary:
        """Prepare the journal and results, run until the share is settled or ``should_stop()``."""
        project, settings, folder = self.project, self.settings, self.folder
        folder.create()
        if settings.balance is not None:
            connection = balance.connect(settings.balance.address, timeout=min(5.0, max(0.5, settings.balance.lease / 4)))  # exit 2 when unreachable
            try:
                journal, fresh, kept = self._open_journal(None)
                try:
                    return self._run(journal, fresh, kept, None, should_stop, connection)
                finally:
                    journal.close()
            finally:
                connection.close()
        share = project.plan.share_of(settings.machine.name)
        journal, fresh, kept = self._open_journal(project.pool.ids_hex(share))  # the ids only while the journal is opened
        try:
            _stop_before_the_run(should_stop)
            return self._run(journal, fresh, kept, share, should_stop)
        finally:
            journal.close()

    def kill(self) -> None:
        """A forced exit follows: kill every worker and what its job started."""
        if self._runner is not None:
            self._runner.kill()

    def pause(self) -> None:
        """Ctrl-Z: the workers stop with the main process, and the snapshot says the run is
        paused (``status`` on another host would take the quiet run for a dead one)."""
        if self._runner is not None:
            self._runner.pause()
        if self._snapshots is not None:
            try:
                self._snapshots.paused()
            except (UserError, StorageError):
                pass  # the snapshot stays as it was: status shows the run as stalled, no more

    def resume(self, paused: float) -> None:
        if self._runner is not None:
            self._runner.resume(paused)

    def continued(self) -> None:
        """A SIGCONT: this process had been stopped (see Runner.continued)."""
        if self._runner is not None:
            self._runner.continued()

    def _open_journal(self, job_ids: list[str] | None) -> tuple[Journal, bool, FileState | None]:
        """The journal, new or resumed, holding every result results.csv proves done; whether it
        is a static share's brand-new journal (nothing in it to read back); and results.csv as
        read back, if it was the journal's rows (see ResultsFile). ``job_ids``: the static share;
        None: a shared queue, whose jobs join as they are claimed."""
        project, folder = self.project, self.folder
        _refuse_another_host_s_run(folder.path)  # before the journal is so much as read here
        clear_others_wal(folder.journal)
        damage = Journal.damage(folder.journal)
        if damage is not None:  # results.csv rebuilds it, as it would a lost one
            kept = folder.back_up(JOURNAL_FILES)
            self.events.notice(f"{folder.journal} is damaged ({damage}); it is kept in {kept}, and a new journal takes its place")
        existed = Journal.holds_a_plan(folder.journal)
        share = functools.cache(lambda: set(job_ids if job_ids is not None else project.pool.ids_hex(range(len(project.pool)))))  # made for rows results.csv has beyond the journal's: none, as a rule
        if not existed and not folder.results.exists() and folder.segments():
            raise _lost_journal(folder.journal, folder.log)
        made = not folder.journal.exists()
        journal = Journal(folder.journal)
        try:
            if existed:
                _refuse_a_live_run(journal)  # before anything is written to it
                self._check_source(journal)
                journal.check(project.digest, job_ids if job_ids is not None else journal.job_ids(), project.digest_parts, project.config.as_document())  # a queue's holdings are its own
            try:
                table = read_rows(
                    folder.results, project.header, project.digest, lambda job_id: job_id in share(), digest_known=existed, journal_lines=journal.result_lines() if existed else ()
                )
            except ForeignTable as exc:
                if not existed:
                    raise  # its rows may be the only record of the jobs done
                kept = folder.back_up([folder.results.name])
                table = ResultRows([], {})
                self.events.notice(f"{exc.what}: it is kept in {kept}, and written again from the journal")
            if not existed:
                queue = {"source": RedisQueue.name, "pool": str(len(project.pool))} if job_ids is None else {}
                journal.initialize({**self._meta(), **queue}, job_ids or [])
            adopted = adopt(journal, table.rows)
            if adopted:
                how = "rebuilt the journal" if not existed else "took back into the journal"
                self.events.notice(f"{how} from {folder.results}: {plural(adopted, 'job')} done there were recorded as done, and will not run again")
            if existed:
                before = journal.meta().get("code", UNKNOWN)
                if UNKNOWN not in (before, self.code) and before != self.code:
                    self.events.notice(
                        f"the entry's code changed since the last run here (code {before} then, {self.code} now); "
                        "jobs done before keep the results of the old code (merge-results will point this out)"
                    )
                journal.set_meta("code", self.code)
            if table.unusable:  # kept, last, before results.csv is written again from the journal: those lines may be all that is left of their jobs
                kept = folder.back_up([folder.results.name])
                self.events.notice(table.unusable_sentence(folder.results, kept, journal_held=existed))
        except BaseException:
            journal.close()
            if made:  # a run refused here (a results.csv it cannot read) leaves no journal: the tools took an empty one for a bad copy
                for name in JOURNAL_FILES:
                    (folder.path / name).unlink(missing_ok=True)
            raise
        if not existed and not adopted and job_ids is not None:  # a shared queue's new journal holds nothing yet: its jobs join as claimed
            return journal, True, None
        return journal, False, table.as_written

    def _check_source(self, journal: Journal) -> None:
        """Refuse to mix a static share and a shared queue in one folder: their holdings differ."""
        recorded = journal.meta().get("source", StaticShare.name)
        wanted = RedisQueue.name if self.settings.balance is not None else StaticShare.name
        if recorded != wanted:
            how = "through a shared queue (--balance)" if recorded == RedisQueue.name else "as a static share (without --balance)"
            raise UserError(f"{journal.path} was made by a run {how}; run this machine the same way, or pass --fresh to start over (the old files are kept in a backup folder)")

    def _meta(self) -> dict[str, str]:
        """What the merge, status and report tools need without the pool: the digest and the
        whole plan's shape."""
        project, plan = self.project, self.project.plan
        return {
            "digest": project.digest,
            "machine": self.settings.machine.name,
            "strategy": project.strategy,
            "header": json.dumps(list(project.header.columns)),
            "plan": json.dumps(self._plan_counts()),
            "machines": json.dumps({m.name: [m.speed, m.cores] for m in plan.machines}),
            "created": utc_timestamp(self.clock.time()),
            "jobsplit": __version__,
            "code": self.code,
            "parts": json.dumps(project.digest_parts()),  # to say what changed, should the digest one day differ
            "config": json.dumps(project.config.as_document(), sort_keys=True),  # and which keys of config.ini
        }

    def _plan_counts(self) -> dict[str, int]:
        """Every machine of the plan -> its job count; of a shared queue's run, ``{"": pool size}``:
        no machine is held to a share."""
        plan = self.project.plan
        if self.settings.balance is not None:
            return {"": len(self.project.pool)}
        return {m.name: len(share) for m, share in zip(plan.machines, plan.shares)}

    def _run(
        self, journal: Journal, fresh: bool, kept: FileState | None, share: Sequence[int] | None, should_stop: Callable[[], bool],
        connection: balance.Connection | None = None,
    ) -> RunSummary:
        """``share``: a static share's pool positions, in plan order; None: a shared queue."""
        project, settings, folder, clock = self.project, self.settings, self.folder, self.clock
        to_run: _ToRun | None = None
        if fresh:  # nothing to read back: every job of the share is pending, in plan order
            assert share is not None, "only a static share starts from a fresh journal"
            counts: dict[str, int] = {**dict.fromkeys(JobState, 0), JobState.PENDING: len(share)}
        else:
            counts, to_run = self._standing(journal, share)
        _stop_before_the_run(should_stop)
        failed_before = 0 if settings.retry_failed else counts[JobState.FAILED]
        say = _Say(self.events)
        if connection is None:
            assert share is not None, "a static share knows its jobs"
            feed = self._static_feed(to_run, counts, failed_before, share)
        else:
            feed = self._queue_feed(journal, counts, failed_before, connection, say)
        source, queue, workers = feed.source, feed.queue, feed.workers
        make_room_for_workers(workers)  # before the run is recorded: a refusal leaves no trace of it
        cores = usable_cores()
        idle = not source.remaining()
        if settings.workers > OVERSUBSCRIBED * cores and not idle:  # said of a share with nothing to run, it was noise
            per_core = f"more than {OVERSUBSCRIBED} per core of this host ({plural(cores, 'core')})"
            if workers > OVERSUBSCRIBED * cores:
                self.events.notice(f"{workers} workers are {per_core}; jobs will compete for the CPU")
            else:
                self.events.notice(f"--workers {settings.workers} is {per_core}; {workers} started, one per job left")
        threads = size_thread_pools(cores, workers)
        started = clock.time()
        done_before = counts[JobState.DONE]
        run = journal.begin_run(workers, done_before=done_before, started=started, host=socket.gethostname(), pid=os.getpid(), code=self.code, source=source.name)
        results = ResultsFile(folder.results, csv_header_line(project.header), () if fresh else journal.result_lines(), kept)
        log = MachineLog(folder, project.logging)
        total = sum(counts.values())
        snapshots = self._snapshots = SnapshotWriter(folder.path, RunSnapshot(
            settings.machine.name, project.digest, self._plan_counts(), RunStatus.RUNNING, socket.gethostname(), os.getpid(),
            started, started, total, done_before, failed_before, 0, done_before, workers,
        ), clock)  # fmt: skip
        narrator = _Narrator(
            log, parent_logger(log, project.logging), self.events, settings.machine.name, total, done_before, failed_before, clock, self._label,
            snapshots, tally=queue.tally if queue is not None else None,
        )  # fmt: skip
        narrator.logger.info(
            "run %d started: digest %s, code %s, strategy %s, %s, %s (%s)", run, format_digest(project.digest), self.code,
            project.strategy, feed.to_run, plural(workers, "worker"), settings.start_method,
        )  # fmt: skip
        if threads is not None:
            narrator.logger.info("native thread pools (OpenMP, BLAS) get %s a worker; set OMP_NUM_THREADS to choose", plural(threads, "thread"))
        if settings.worker_memory is not None:
            narrator.logger.info("a worker that grows by more than %s is replaced between two jobs (--worker-memory)", size_text(settings.worker_memory))
        say.log_to(narrator.logger)
        gaps: dict[str, int] = json.loads(journal.meta().get(LOG_GAPS, "{}"))
        if gaps:
            narrator.logger.warning(
                "the log records of %s could not be written when those runs stopped (a full disk?) and are missing from the logs; %s",
                " and ".join(_lost_records(jobs, f"run {lost}") for lost, jobs in gaps.items()), _RESULTS_KEPT,
            )
        runner = self._runner = Runner(
            source,
            ProcessHub(multiprocessing.get_context(settings.start_method), self._worker_setup(workers, started, threads)),
            Recorder(journal, results, run, clock=clock, on_commit=queue.committed if queue is not None else None), project.pool,
            workers=workers, run=run, timeout=settings.timeout, stop_grace=settings.stop_grace, clock=clock, on_attempt=narrator.attempt_failed,
            on_log=narrator.worker_output,
        )  # fmt: skip
        status = RunStatus.STOPPED
        try:
            status = RunStatus.COMPLETED if runner.run(should_stop, lambda: narrator.tick(runner)) else RunStatus.INTERRUPTED
        finally:
            final = narrator.show(runner)
            try:
                if queue is not None:
                    queue.close()  # acknowledges what the last commit made final
                journal.end_run(run, status, clock.time())
                snapshots.write(*narrator.held(runner), status)
            finally:
                lost = results.replaced()
                results.close()
                if lost or (queue is not None and queue.corrected):  # a queue's correction drops the rows re-marked superseded
                    folder.create()  # deleted whole, the folder still gets every result the (open) journal holds
                    ResultsFile(folder.results, csv_header_line(project.header), journal.result_lines()).close()
                if journal.replaced():
                    self.events.notice(f"{folder.journal} was deleted or replaced during the run; {folder.results} holds every result, and the next start takes them back into a journal")
                elif lost:
                    self.events.notice(f"{folder.results} was deleted or replaced during the run; wrote it again from the journal")
                narrator.logger.info("run %d %s: %s done, %s failed in %.1f s", run, status, plural(final.done_this_run, "job"), plural(runner.counts.failed, "job"), final.elapsed)
                try:
                    log.close()
                except StorageError:
                    self._log_records_lost(journal, run, log.unwritten_jobs(), gaps)
                    raise
                if gaps:
                    self._note_log_gaps(journal, {})  # said in this run's log, now written
                if log.rewritten is not None:
                    self.events.notice(log.rewritten)
        if queue is not None:
            total, done, failed = queue.tally()
            return RunSummary(status, total, done, failed, final.done_this_run, final.elapsed)
        after = {JobState.DONE: final.done, JobState.FAILED: final.failed} if fresh else counts if idle else journal.counts()  # a new journal: the runner's counts are all; nothing run: as it started
        return RunSummary(status, narrator.total, after[JobState.DONE], after[JobState.FAILED], final.done_this_run, final.elapsed)

    def _log_records_lost(self, journal: Journal, run: int, jobs: int, gaps: dict[str, int]) -> None:
        """The run's last records could not be written (its log's disk full): said now, and kept
        in the journal for the next run's log to say."""
        self.events.notice(f"the log records of {_lost_records(jobs, 'this run')} could not be written to {self.folder.log} and are lost; {_RESULTS_KEPT}")
        self._note_log_gaps(journal, {**gaps, str(run): jobs})

    def _note_log_gaps(self, journal: Journal, gaps: dict[str, int]) -> None:
        """Record which runs' logs lost records; a journal the full disk refuses too keeps what it held."""
        try:
            journal.set_meta(LOG_GAPS, json.dumps(gaps))
        except StorageError:
            pass

    def _standing(self, journal: Journal, share: Sequence[int] | None) -> tuple[dict[str, int], _ToRun]:
        """A resumed journal, its crashed runs closed: the jobs per state, and the jobs of a
        static ``share`` to run. The share's index by id is made only if a job needs it (one a
        killed run left running, one to run): not for a finished share started again."""
        pool = self.project.pool
        index = functools.cache(lambda: dict(zip(pool.ids_hex(share), share)) if share is not None else {})
        journal.close_crashed_runs(self.clock.time(), lambda job_id: pool.identity_text(index()[job_id]) if job_id in index() else None)
        counts, to_run = journal.standing(retry_failed=self.settings.retry_failed)
        if share is None or not to_run:
            return counts, _ToRun([], [])
        return counts, _ToRun([index()[job_id] for job_id, _ in to_run], [attempt + 1 for _, attempt in to_run])

    def _static_feed(self, to_run: _ToRun | None, counts: dict[str, int], failed_before: int, share: Sequence[int]) -> _Feed:
        """This machine's share of the plan, what the journal does not hold as settled
        (``to_run``; None: a fresh journal, every job of the share, first attempts)."""
        settings, ids_of = self.settings, self.project.pool.ids_hex
        source = StaticShare(share, ids_of, retries=settings.retries) if to_run is None else StaticShare(to_run.positions, ids_of, to_run.attempts, settings.retries)
        left = source.remaining()
        standing = (counts[JobState.DONE], failed_before, left)
        if (counts[JobState.DONE] or failed_before) and standing != self.standing_said:
            self.events.notice(f"resuming: {standing[0]:,} done, {standing[1]:,} failed, {standing[2]:,} to go")
        return _Feed(source, min(settings.workers, max(left, 1)), f"{plural(left, 'job')} of {sum(counts.values())} to run")

    def _queue_feed(self, journal: Journal, counts: dict[str, int], failed_before: int, connection: balance.Connection, say: Callable[[str], None]) -> _Feed:
        """The shared queue, joined (or seeded: longest first when the entry gives ``cost=``,
        else in the plan's seeded order, a random mix every host agrees on)."""
        project, settings = self.project, self.settings
        assert settings.balance is not None
        pool, costs, lease = project.pool, project.costs, settings.balance.lease
        order: Callable[[], Sequence[int]]
        if costs is not None:
            order, order_name = (lambda: sorted(sorted(range(len(pool)), key=pool.ids.__getitem__), key=costs.__getitem__, reverse=True)), "longest first"
        else:
            order, order_name = (lambda: seeded_order(pool.ids, project.seed)), "in the plan's seeded order"
        queue = RedisQueue(
            connection, digest=project.digest, machine=settings.machine.name, ids=pool.ids_hex(range(len(pool))),
            seed_order=order, order_name=order_name, lease=lease, retries=settings.retries,
            retry_failed=settings.retry_failed, workers=settings.workers, holdings=journal, say=say, clock=self.clock,
        )  # fmt: skip
        queue.start()
        total, done, failed = queue.tally()
        if counts[JobState.DONE] or failed_before:
            self.events.notice(f"resuming: {counts[JobState.DONE]:,} done here, {failed_before:,} failed here; the pool: {done:,} of {total:,} done, {failed:,} failed")
        to_run = f"jobs from the shared queue at {connection.address.masked} (lease {lease:g} s, {total - done - failed} of {total} to run)"
        return _Feed(queue, settings.workers, to_run, queue)

    def _worker_setup(self, workers: int, started: float, threads: int | None) -> WorkerSetup:
        project, settings = self.project, self.settings
        per_job_logs = self.folder.per_job_logs.absolute() if project.logging.per_job else None  # a job may chdir
        if per_job_logs is not None:
            per_job_logs.mkdir(exist_ok=True)
        board = ProgressBoard(multiprocessing.get_context(settings.start_method), workers)
        return WorkerSetup(
            self.job, project.config.as_document(), project.header, settings.machine.name, project.digest, self.code,
            started, project.seed, board, settings.nice, project.logging, per_job_logs, threads, injects_by_name(self.job), settings.worker_memory,
        )  # fmt: skip

    def _label(self, position: int) -> str:
        text = self.project.pool.identity_text(position)
        return text if len(text) <= 60 else text[:59] + "…"


def _lost_records(jobs: int, run: str) -> str:
    """Whose log records a run lost: ``jobs`` jobs', or (0) only jobsplit's own, its last words."""
    return f"{plural(jobs, 'job')} of {run}" if jobs else f"{run} (jobsplit's own last ones, no job's)"


LOG_GAPS = "log_gaps"
"""The journal's meta key of the runs whose last log records could not be written, as ``{run:
jobs}``: a full disk often leaves room for a small write to the journal (SQLite's WAL keeps its
size) when the log's new gzip member finds none. Cleared once a later run's log said it."""
_RESULTS_KEPT = "the results the journal recorded are kept, and jobs it did not record as done run again"
"""What a log's lost records cost: not the results (the journal commits its own)."""


class _ToRun(NamedTuple):
    """A resumed static share's jobs to run, in the journal's order: their pool positions and the
    number of their next attempts."""

    positions: list[int]
    attempts: list[int]


@dataclass(frozen=True)
class _Feed:
    """Where a run's jobs come from: the source, the workers it needs, and what the log says of it."""

    source: JobSource
    workers: int
    to_run: str
    queue: RedisQueue | None = None
    """The shared queue, when that is the source (it also hears of commits, and shows the pool)."""


class _Say:
    """A shared queue's news: to the user at once, and to the machine log once it is open."""

    def __init__(self, events: RunEvents) -> None:
        self.events = events
        self.logger: logging.Logger | None = None
        self.early: list[str] = []

    def __call__(self, text: str) -> None:
        self.events.notice(text)
        if self.logger is None:
            self.early.append(text)
        else:
            self.logger.warning(text)

    def log_to(self, logger: logging.Logger) -> None:
        self.logger = logger
        for text in self.early:
            logger.warning(text)
        self.early.clear()


class _Narrator:
    """What one run tells: worker output and failed attempts to the machine log, failures and
    progress to the user's events, progress to the folder's snapshot."""

    def __init__(
        self,
        log: MachineLog,
        logger: logging.Logger,
        events: RunEvents,
        machine: str,
        total: int,
        done_before: int,
        failed_before: int,
        clock: Clock,
        label: Callable[[int], str],
        snapshots: SnapshotWriter,
        tally: Callable[[], tuple[int, int, int]] | None = None,
    ) -> None:
        self.log, self.logger, self.events, self.snapshots = log, logger, events, snapshots
        self.machine, self.total, self.done_before, self.failed_before = machine, total, done_before, failed_before
        self.clock, self.label = clock, label
        self.tally = tally
        """A shared queue's (pool size, done, failed): the display shows the whole pool."""
        self.began = clock.monotonic()
        self.shown_at = -DISPLAY_INTERVAL

    def worker_output(self, slot: int, entries: list[LogEntry]) -> None:
        for created, level, name, job_id, message in entries:
            self.log.write(created, f"w{slot}", job_id, level, name, message)

    def attempt_failed(self, task: Task, attempt: AttemptRow) -> None:
        then = f"; it will run again (attempt {task.attempt + 1})" if attempt.state == JobState.PENDING else ""
        message = f"job {task.job_id} (pool[{task.position}], attempt {task.attempt}) {attempt.outcome}{then}: {(attempt.error or '').rstrip()}"
        self.logger.error(message, extra={"job": task.job_id})
        self.events.failure(message, failure_kind(attempt.outcome, attempt.error))

    def tick(self, runner: Runner) -> None:
        """About ten times a second: progress to the display, due log records and snapshot to the disk."""
        now = self.clock.monotonic()
        if now - self.shown_at >= DISPLAY_INTERVAL:
            self.shown_at = now
            self.show(runner)
            self.log.flush_if_due()
            self.snapshots.update(*self.held(runner))

    def held(self, runner: Runner) -> tuple[int, int, int, int]:
        """This machine's (jobs held, done, failed, running), for its snapshot; a shared queue's
        run holds what it has claimed so far."""
        counts, running = runner.counts, len(runner.running())
        done, failed = self.done_before + counts.done, self.failed_before + counts.failed
        total = self.total if self.tally is None else max(self.total, done + failed + running)
        return total, done, failed, running

    def show(self, runner: Runner) -> Snapshot:
        running = tuple(RunningJob(r.task.job_id, self.label(r.task.position), r.fraction, r.elapsed) for r in runner.running())
        counts = runner.counts
        total, done, failed = self.tally() if self.tally is not None else (self.total, self.done_before + counts.done, self.failed_before + counts.failed)
        elapsed = self.clock.monotonic() - self.began - runner.paused_since(self.began)  # a Ctrl-Z pause counts against nothing: nor the rate, nor the ETA
        snapshot = Snapshot(self.machine, total, done, failed, counts.done, elapsed, running)
        self.events.progress(snapshot)
        return snapshot


def _stop_before_the_run(should_stop: Callable[[], bool]) -> None:
    """A stop asked while the share is read back (seconds for a million jobs) ends the command
    here, as a Ctrl-C before the run does (errors.exit_interrupted): the run's stop is a flag
    only its runner reads, and it was heard once the reading ended (21 s for the red team).
    Nothing is half-written: the journal's changes so far are committed, the run not begun."""
    if should_stop():
        raise KeyboardInterrupt


def _refuse_a_live_run(journal: Journal) -> None:
    """The lock this run holds is no proof that no other run writes the folder if someone
    deleted run.lock (a clean-up of "stale" lock files) while that run went on: the second run
    then took a lock on a new file, and both ran the same jobs. The journal's newest run, still
    running on this host, in a process that lives and began before it, is refused here too."""
    runs = journal.runs()
    last = runs[-1] if runs else None
    if last and last["status"] == RunStatus.RUNNING and last["host"] == socket.gethostname() and last["pid"] and running_since(int(last["pid"]), float(last["started"])):
        holder = holder_text(last["pid"], last["host"], utc_timestamp(float(last["started"])))
        raise in_use(journal.path.parent, f"{holder}; its {LOCK_FILE} was deleted")


def _refuse_another_host_s_run(folder: Path) -> None:
    """A folder on a shared disk that a run on another host writes, as its progress.json says:
    its run.lock was deleted, or this disk's locks do not reach that host (NFS without locking).
    Refused before this host opens its journal at all: SQLite's locks and WAL index do not reach
    across hosts either, and closing the journal here could checkpoint the live run's WAL away."""
    now = time.time()
    if (snapshot := written_elsewhere(folder, now)) is not None:
        holder = holder_text(snapshot.pid, snapshot.host, utc_timestamp(snapshot.started))
        if snapshot.updated > now:  # that host's clock is ahead: its progress looks fresh for as long beyond STALLED_AFTER, a dead run's too
            when = f"written at {utc_timestamp(snapshot.updated)}, {snapshot.updated - now:.0f} s ahead of this host's clock (that host's clock is ahead)"
            dead = f"If that run is dead, delete {folder / PROGRESS_FILE}; if not, let it end, and set that host's clock right"
        else:
            when = f"written {now - snapshot.updated:.0f} s ago"
            dead = f"If that run is dead, its progress goes stale within {STALLED_AFTER:.0f} s"
        raise in_use(
            folder,
            f"{holder}, whose {PROGRESS_FILE} was {when}; its {LOCK_FILE} was deleted, or this disk's locks do not reach that host (NFS without locking). {dead}",
        )


def _lost_journal(journal: Path, log: Path) -> UserError:
    return UserError(
        f"{journal} is missing but {log} shows earlier runs here, and results.csv is gone too, so the jobs done before "
        "cannot be told apart; restore those files, or pass --fresh to start over (the old files are kept in a backup folder)"
    )
