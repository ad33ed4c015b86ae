"""The ``run`` command: pick this machine, confirm the digest, run its share, sum up.

Exit statuses: 0 every job of the share done, 1 some failed, 2 usage or config error
(raised as UserError), 130 interrupted.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shlex
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from . import __version__
from .digest import format_digest, normalize_digest
from .display import Display, LiveDisplay, PlainDisplay, RunningJob, Snapshot, duration
from .errors import UserError
from .hostconfig import HostSettings, load_host_settings
from .lifecycle import Interrupts
from .logs import LogEntry, MachineLog, parent_logger
from .machines import Machine
from .progress import ProgressBoard
from .project import Project
from .recorder import Recorder
from .results import RESULTS_FILE, ResultsFile, csv_header_line, utc_timestamp
from .runner import Runner
from .source import StaticShare, Task
from .state import DONE, FAILED, JOURNAL_FILE, Journal
from .worker import WorkerSetup

INTERRUPTED = 130
BACKUP_PREFIX = "backup-"
DISPLAY_INTERVAL = 0.1


@dataclass(frozen=True)
class RunRequest:
    """What the command line asked for; None means: host.ini's setting, else the default."""

    machine: str | None = None
    yes: bool = False
    expect_digest: str | None = None
    workers: int | None = None
    out: Path | None = None
    nice: int | None = None
    console: str | None = None
    start_method: str | None = None
    timeout: float | None = None
    retries: int = 0
    retry_failed: bool = False
    fresh: bool = False


def run_share(project: Project, job: Callable[..., Any], request: RunRequest, console: Console) -> int:
    host = load_host_settings()
    interactive = sys.stdin.isatty()
    machine = _choose_machine(project, request.machine, console, interactive)
    digest_checked = _check_digest(project, request.expect_digest)
    machine_dir = (request.out or host.out) / machine.name
    share = project.plan.share_of(machine.name)
    job_ids = [project.pool.id_hex(p) for p in share]
    journal_path = machine_dir / JOURNAL_FILE
    resuming = Journal.holds_a_plan(journal_path) and not request.fresh
    status_line = _resume_line(journal_path, project.digest, job_ids) if resuming else f"{len(share)} jobs"
    console.print(
        f"digest [bold]{format_digest(project.digest)}[/]  strategy {project.strategy}  "
        f"machine [bold]{escape(machine.name)}[/]: {escape(status_line)}",
        soft_wrap=True,
    )
    if not (request.yes or digest_checked):
        _confirm(console, interactive)
    if request.fresh and machine_dir.exists():
        backup = _back_up(machine_dir)
        if backup:
            console.print(f"kept the previous results in {escape(str(backup))}")
    machine_dir.mkdir(parents=True, exist_ok=True)
    journal = Journal(journal_path)
    try:
        if not journal.meta():  # new, or made by a run killed before it recorded its plan
            journal.initialize(_journal_meta(project, machine), job_ids)
        else:
            journal.check(project.digest, job_ids)
        return _run(project, job, request, host, machine, machine_dir, journal, console)
    finally:
        journal.close()


def _run(
    project: Project,
    job: Callable[..., Any],
    request: RunRequest,
    host: HostSettings,
    machine: Machine,
    machine_dir: Path,
    journal: Journal,
    console: Console,
) -> int:
    results_path = machine_dir / RESULTS_FILE
    before = journal.counts()
    todo = journal.to_run(retry_failed=request.retry_failed)
    total = sum(before.values())
    done_before = before.get(DONE, 0)
    failed_before = 0 if request.retry_failed else before.get(FAILED, 0)
    if done_before or failed_before:
        console.print(f"resuming: {done_before} done, {failed_before} failed, {len(todo)} to go")
    workers = request.workers or host.workers or machine.cores
    timeout = request.timeout if request.timeout is not None else project.settings.timeout
    context = multiprocessing.get_context(request.start_method or host.start_method or _default_start_method())
    run_started = time.time()
    run = journal.begin_run(workers)
    results = ResultsFile(results_path, csv_header_line(project.header), journal.result_lines())
    position_of = {project.pool.id_hex(p): p for p in project.plan.share_of(machine.name)}
    source = StaticShare(Task(seq, position_of[job_id], job_id, attempts + 1) for seq, job_id, attempts in todo)
    board = ProgressBoard(context, workers)
    per_job_logs = machine_dir / "jobs" if project.logging.per_job else None
    if per_job_logs is not None:
        per_job_logs.mkdir(exist_ok=True)
    nice = request.nice if request.nice is not None else host.nice
    setup = WorkerSetup(job, project.config.as_document(), project.header, machine.name, run_started, project.seed, board, nice, project.logging, per_job_logs)
    display = _display(console, request.console or host.console)
    machine_log = MachineLog(machine_dir, machine.name, project.logging)
    logger = parent_logger(machine_log, project.logging)
    logger.info("run %d started: digest %s, strategy %s, %d of %d jobs to run, %d workers (%s)", run, format_digest(project.digest), project.strategy, len(todo), total, workers, context.get_start_method())

    def on_log(worker: str, entries: list[LogEntry]) -> None:
        for created, level, name, job_id, message in entries:
            machine_log.write(created, worker, job_id, level, name, message)

    def on_failure(task: Task, outcome: str, error: str, retry: bool) -> None:
        then = f"; it will run again (attempt {task.attempt + 1} of {request.retries + 1})" if retry else ""
        message = f"job {task.job_id} (pool[{task.position}], attempt {task.attempt}) {outcome}{then}: {error.rstrip()}"
        logger.error(message, extra={"job": task.job_id})
        display.message(message)

    recorder = Recorder(journal, results, run, running=lambda: runner.running_seqs())
    runner = Runner(setup, project.pool, source, recorder, workers=min(workers, max(len(todo), 1)), context=context, timeout=timeout, retries=request.retries, on_failure=on_failure, on_log=on_log)
    clock = time.monotonic()
    last_shown = -DISPLAY_INTERVAL

    def snapshot() -> Snapshot:
        counts = runner.counts
        running = tuple(RunningJob(r.task.job_id, _label(project, r.task.position), r.fraction, r.elapsed) for r in runner.running())
        return Snapshot(machine.name, total, done_before + counts.done, failed_before + counts.failed, counts.done, time.monotonic() - clock, running)

    def on_tick() -> None:
        nonlocal last_shown
        now = time.monotonic()
        if now - last_shown >= DISPLAY_INTERVAL:
            last_shown = now
            display.update(snapshot())
            machine_log.flush_if_due()

    completed = False
    try:
        with Interrupts(on_force=lambda: _force_exit(runner)) as interrupts:
            completed = runner.run(lambda: interrupts.requested, on_tick)
    finally:
        final = snapshot()
        display.update(final)
        display.close()
        status = "completed" if completed else "interrupted"
        journal.end_run(run, status)
        results.close()
        logger.info("run %d %s: %d done, %d failed in %s", run, status, final.done_this_run, runner.counts.failed, duration(final.elapsed))
        machine_log.close()
    after = journal.counts()
    failed = after.get(FAILED, 0)
    console.print(
        f"{machine.name}: {after.get(DONE, 0)} of {total} done, {failed} failed; this run: {final.done_this_run} done in "
        f"{duration(final.elapsed)} ({final.rate:.3g} jobs/s). Results: {results_path}",
        markup=False,
        soft_wrap=True,
    )
    if not completed:
        console.print(f"Interrupted: running jobs were stopped and will run again. Resume with: {shlex.join(sys.orig_argv)}", markup=False, soft_wrap=True)
        return INTERRUPTED
    if failed:
        console.print(f"{failed} jobs failed (see above); run again with --retry-failed to retry them.", markup=False)
        return 1
    return 0


def _journal_meta(project: Project, machine: Machine) -> dict[str, str]:
    """What the merge and status tools need without the pool: the digest and the whole plan's shape."""
    plan = project.plan
    return {
        "digest": project.digest,
        "machine": machine.name,
        "strategy": project.strategy,
        "header": json.dumps(list(project.header.columns)),
        "plan": json.dumps({m.name: len(share) for m, share in zip(plan.machines, plan.shares)}),
        "created": utc_timestamp(time.time()),
        "jobsplit": __version__,
    }


def _choose_machine(project: Project, name: str | None, console: Console, interactive: bool) -> Machine:
    if name is not None:
        return project.machine(name)
    machines = project.machines
    if len(machines) == 1:
        return machines[0]
    names = ", ".join(m.name for m in machines)
    if not interactive:
        raise UserError(f"which machine is this? stdin is not a terminal, so pass --machine NAME (one of: {names})")
    host = socket.gethostname()
    default = next((i for i, m in enumerate(machines, 1) if m.name in (host, host.split(".")[0])), None)
    console.print("Which machine is this?")
    for i, m in enumerate(machines, 1):
        console.print(f"  {i}) {escape(m.name)}  (speed {m.speed:g}, {m.cores} cores)")
    while True:
        hint = f" [{default}]" if default else ""
        answer = console.input(f"Number or name{escape(hint)}: ").strip()
        if not answer and default:
            return machines[default - 1]
        if answer.isdigit() and 1 <= int(answer) <= len(machines):
            return machines[int(answer) - 1]
        if any(m.name == answer for m in machines):
            return project.machine(answer)
        console.print(f"Please answer with a number from 1 to {len(machines)} or one of: {escape(names)}")


def _check_digest(project: Project, expected: str | None) -> bool:
    if expected is None:
        return False
    if normalize_digest(expected) != project.digest:
        raise UserError(
            f"this host's digest is {format_digest(project.digest)} but --expect-digest is {expected}; "
            "copy the same entry script, config.ini, header.csv and machines.json to every host"
        )
    return True


def _confirm(console: Console, interactive: bool) -> None:
    if not interactive:
        raise UserError("nobody can confirm the digest here (stdin is not a terminal); pass --yes, or --expect-digest DIGEST to check it")
    console.print("Is this digest the same on every host?")
    answer = console.input(escape("Start? [y/N]: ")).strip().lower()
    if answer not in ("y", "yes"):
        raise _Declined()


class _Declined(UserError):
    exit_status = INTERRUPTED

    def __init__(self) -> None:
        super().__init__("not started")


def _resume_line(journal_path: Path, digest: str, job_ids: list[str]) -> str:
    journal = Journal(journal_path, read_only=True)
    try:
        journal.check(digest, job_ids)
        counts = journal.counts()
    finally:
        journal.close()
    left = sum(counts.values()) - counts.get(DONE, 0)
    return f"{len(job_ids)} jobs, resuming: {counts.get(DONE, 0)} done, {left} to go"


def _back_up(machine_dir: Path) -> Path | None:
    """Move this machine's journal, results and logs (per-job logs too) into a timestamped folder."""
    entries = [p for p in machine_dir.iterdir() if not p.name.startswith(BACKUP_PREFIX)]
    if not entries:
        return None
    stamp = time.strftime(f"{BACKUP_PREFIX}%Y%m%dT%H%M%SZ", time.gmtime())
    backup, number = machine_dir / stamp, 1
    while backup.exists():  # two fresh starts within one second
        number += 1
        backup = machine_dir / f"{stamp}-{number}"
    backup.mkdir()
    for path in entries:
        path.rename(backup / path.name)
    return backup


def _display(console: Console, style: str) -> Display:
    if style == "live" or (style == "auto" and console.is_terminal):
        return LiveDisplay(console)
    return PlainDisplay(console)


def _label(project: Project, position: int) -> str:
    text = project.pool.identity_text(position)
    return text if len(text) <= 60 else text[:59] + "…"


def _default_start_method() -> str:
    return "fork" if "fork" in multiprocessing.get_all_start_methods() and sys.platform != "darwin" else "spawn"


def _force_exit(runner: Runner) -> None:
    """A second Ctrl-C: stop everything now; what was committed stays, the rest runs again."""
    runner.kill()
    os._exit(INTERRUPTED)
