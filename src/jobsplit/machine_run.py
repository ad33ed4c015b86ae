"""One run of this machine's share, wired from its settings: source, runner, recorder, journal,
results and log. It prints nothing: what the user should hear goes to its ``RunEvents``."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ._version import __version__
from .clock import SYSTEM_CLOCK, Clock
from .digest import format_digest
from .display import RunningJob, Snapshot
from .errors import UserError
from .fingerprint import UNKNOWN
from .journal import AttemptRow, Journal
from .links import ProcessHub
from .logs import MachineLog, parent_logger
from .messages import LogEntry
from .progress import ProgressBoard
from .project import Project
from .recorder import Recorder
from .recovery import adopt, read_rows
from .results import ResultsFile, csv_header_line
from .runner import Runner
from .settings import RunSettings
from .snapshot import RunSnapshot, SnapshotWriter
from .sources import StaticShare, Task
from .states import JobState, RunStatus
from .text import plural
from .timefmt import utc_timestamp
from .worker import WorkerSetup

DISPLAY_INTERVAL = 0.1
"""Seconds between two snapshots for the display."""


class RunEvents(Protocol):
    """What a run tells the person who started it."""

    def notice(self, text: str) -> None:
        """A sentence worth reading before the run goes on (a recovery, a changed entry)."""
        ...

    def failure(self, text: str) -> None:
        """An attempt that did not end done."""
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
    workers: int

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

    def __init__(self, project: Project, job: Callable[..., Any], settings: RunSettings, *, code: str, events: RunEvents, clock: Clock = SYSTEM_CLOCK) -> None:
        self.project = project
        self.job = job
        self.settings = settings
        self.code = code
        self.events = events
        self.clock = clock
        self.folder = settings.folder
        self._runner: Runner | None = None

    def execute(self, should_stop: Callable[[], bool]) -> RunSummary:
        """Prepare the journal and results, run until the share is settled or ``should_stop()``."""
        project, settings, folder = self.project, self.settings, self.folder
        folder.create()
        positions = list(project.plan.share_of(settings.machine.name))
        job_ids = [project.pool.id_hex(p) for p in positions]
        journal, fresh = self._open_journal(job_ids)
        try:
            return self._run(journal, fresh, dict(zip(job_ids, positions)), should_stop)
        finally:
            journal.close()

    def kill(self) -> None:
        """A forced exit follows: kill every worker and what its job started."""
        if self._runner is not None:
            self._runner.kill()

    def _open_journal(self, job_ids: list[str]) -> tuple[Journal, bool]:
        """The journal, new or resumed, holding every result results.csv proves done; and
        whether it is brand new (nothing in it to read back)."""
        project, folder = self.project, self.folder
        existed = Journal.holds_a_plan(folder.journal)
        share = set(job_ids)
        if not existed and not folder.results.exists() and folder.segments():
            raise _lost_journal(folder.journal, folder.log)
        journal = Journal(folder.journal)
        try:
            if existed:
                journal.check(project.digest, job_ids)
            rows = read_rows(folder.results, project.header, project.digest, share.__contains__, digest_known=existed)
            if not existed:
                journal.initialize(self._meta(), job_ids)
            adopted = adopt(journal, rows)
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
        except BaseException:
            journal.close()
            raise
        return journal, not existed and not adopted

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
        }

    def _plan_counts(self) -> dict[str, int]:
        """Every machine of the plan -> its job count."""
        plan = self.project.plan
        return {m.name: len(share) for m, share in zip(plan.machines, plan.shares)}

    def _run(self, journal: Journal, fresh: bool, position_of: dict[str, int], should_stop: Callable[[], bool]) -> RunSummary:
        project, settings, folder, clock = self.project, self.settings, self.folder, self.clock
        if fresh:  # nothing to read back: every job of the share is pending, in plan order
            counts: dict[str, int] = {**dict.fromkeys(JobState, 0), JobState.PENDING: len(position_of)}
            todo = [(job_id, 0) for job_id in position_of]
        else:
            journal.close_crashed_runs(clock.time())
            counts = journal.counts()
            todo = journal.to_run(retry_failed=settings.retry_failed)
        failed_before = 0 if settings.retry_failed else counts[JobState.FAILED]
        if counts[JobState.DONE] or failed_before:
            self.events.notice(f"resuming: {counts[JobState.DONE]} done, {failed_before} failed, {len(todo)} to go")
        workers = min(settings.workers, max(len(todo), 1))
        started = clock.time()
        run = journal.begin_run(
            workers, done_before=counts[JobState.DONE], started=started, host=socket.gethostname(), pid=os.getpid(), code=self.code, source=StaticShare.name
        )
        results = ResultsFile(folder.results, csv_header_line(project.header), () if fresh else journal.result_lines())
        log = MachineLog(folder, project.logging)
        total, done = sum(counts.values()), counts[JobState.DONE]
        snapshots = SnapshotWriter(folder.path, RunSnapshot(
            settings.machine.name, project.digest, self._plan_counts(), RunStatus.RUNNING, socket.gethostname(), os.getpid(),
            started, started, total, done, failed_before, 0, done, workers,
        ), clock)  # fmt: skip
        narrator = _Narrator(log, parent_logger(log, project.logging), self.events, settings.machine.name, total, done, failed_before, clock, self._label, snapshots)
        narrator.logger.info(
            "run %d started: digest %s, code %s, strategy %s, %s of %s to run, %s (%s)", run, format_digest(project.digest), self.code,
            project.strategy, plural(len(todo), "job"), narrator.total, plural(workers, "worker"), settings.start_method,
        )  # fmt: skip
        runner = self._runner = Runner(
            StaticShare((Task(job_id, position_of[job_id], attempt + 1) for job_id, attempt in todo), settings.retries),
            ProcessHub(multiprocessing.get_context(settings.start_method), self._worker_setup(workers, started)),
            Recorder(journal, results, run, clock=clock), project.pool,
            workers=workers, run=run, timeout=settings.timeout, clock=clock, on_attempt=narrator.attempt_failed, on_log=narrator.worker_output,
        )  # fmt: skip
        status = RunStatus.STOPPED
        try:
            status = RunStatus.COMPLETED if runner.run(should_stop, lambda: narrator.tick(runner)) else RunStatus.INTERRUPTED
        finally:
            final = narrator.show(runner)
            try:
                journal.end_run(run, status, clock.time())
                snapshots.write(final.done, final.failed, 0, status)
            finally:
                results.close()
                narrator.logger.info("run %d %s: %s done, %s failed in %.1f s", run, status, plural(final.done_this_run, "job"), plural(runner.counts.failed, "job"), final.elapsed)
                log.close()
        after = {JobState.DONE: final.done, JobState.FAILED: final.failed} if fresh else journal.counts()  # a new journal: the runner's counts are all
        return RunSummary(status, narrator.total, after[JobState.DONE], after[JobState.FAILED], final.done_this_run, final.elapsed, workers)

    def _worker_setup(self, workers: int, started: float) -> WorkerSetup:
        project, settings = self.project, self.settings
        per_job_logs = self.folder.per_job_logs if project.logging.per_job else None
        if per_job_logs is not None:
            per_job_logs.mkdir(exist_ok=True)
        board = ProgressBoard(multiprocessing.get_context(settings.start_method), workers)
        return WorkerSetup(
            self.job, project.config.as_document(), project.header, settings.machine.name, project.digest, self.code,
            started, project.seed, board, settings.nice, project.logging, per_job_logs,
        )  # fmt: skip

    def _label(self, position: int) -> str:
        text = self.project.pool.identity_text(position)
        return text if len(text) <= 60 else text[:59] + "…"


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
    ) -> None:
        self.log, self.logger, self.events, self.snapshots = log, logger, events, snapshots
        self.machine, self.total, self.done_before, self.failed_before = machine, total, done_before, failed_before
        self.clock, self.label = clock, label
        self.began = clock.monotonic()
        self.shown_at = -DISPLAY_INTERVAL

    def worker_output(self, slot: int, entries: list[LogEntry]) -> None:
        for created, level, name, job_id, message in entries:
            self.log.write(created, f"w{slot}", job_id, level, name, message)

    def attempt_failed(self, task: Task, attempt: AttemptRow) -> None:
        then = f"; it will run again (attempt {task.attempt + 1})" if attempt.state == JobState.PENDING else ""
        message = f"job {task.job_id} (pool[{task.position}], attempt {task.attempt}) {attempt.outcome}{then}: {(attempt.error or '').rstrip()}"
        self.logger.error(message, extra={"job": task.job_id})
        self.events.failure(message)

    def tick(self, runner: Runner) -> None:
        """About ten times a second: progress to the display, due log records and snapshot to the disk."""
        now = self.clock.monotonic()
        if now - self.shown_at >= DISPLAY_INTERVAL:
            self.shown_at = now
            snapshot = self.show(runner)
            self.log.flush_if_due()
            self.snapshots.update(snapshot.done, snapshot.failed, len(snapshot.running))

    def show(self, runner: Runner) -> Snapshot:
        running = tuple(RunningJob(r.task.job_id, self.label(r.task.position), r.fraction, r.elapsed) for r in runner.running())
        counts = runner.counts
        snapshot = Snapshot(
            self.machine, self.total, self.done_before + counts.done, self.failed_before + counts.failed, counts.done, self.clock.monotonic() - self.began, running
        )
        self.events.progress(snapshot)
        return snapshot


def _lost_journal(journal: Path, log: Path) -> UserError:
    return UserError(
        f"{journal} is missing but {log} shows earlier runs here, and results.csv is gone too, so the jobs done before "
        "cannot be told apart; restore those files, or pass --fresh to start over (the old files are kept in a backup folder)"
    )
