"""Where every machine stands, read while the runs go on.

A folder last run on another host is read from its progress snapshot (progress.json), never
from its journal, which a compute node may be writing over a network file system; one run on
this host (or by a jobsplit that wrote no snapshot) from its journal, opened read-only (SQLite
WAL readers never block the run's writer), which is live to the last commit. A run whose
snapshot or journal has been quiet for much longer than it writes is shown as stalled: its
process has probably died.

For arrays (a machines.json entry with ``"array": N``), every task is listed, and the ones neither finished nor running
are printed as a ready ``--array=3,17,40`` for resubmission; those finished with failed jobs,
as a ready ``--array=... --retry-failed``.

Machines of a run through a shared queue hold what they claimed; the overall line counts the
whole pool. ``--balance URL`` shows the queue itself: pending, claimed per host, done, failed,
and the claims taken back from hosts that stopped renewing them.
"""

from __future__ import annotations

import argparse
import json
import shlex
import socket
import time
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from . import balance
from .children import ended, stopped
from .console import data_console
from .digest import format_digest
from .display import duration
from .errors import UserError
from .journal import Journal
from .machines import member_name, sort_key, split_member
from .merge import refuse_mixed_plans
from .outdir import JOURNAL_FILE, find_machine_dirs, folder_name, repeated_machine_sentence, repeated_machines, results_only_sentence, results_without_journal
from .recorder import HEARTBEAT
from .schedulers.slurm import format_indices
from .snapshot import RunSnapshot, read_snapshot
from .states import JobState, RunStatus
from .text import plural, rate_text
from .timefmt import utc_timestamp

NAME = "status"
HELP = "show every machine's progress (done, failed, pending, running, jobs/s, ETA)"
STALLED_AFTER = 6 * HEARTBEAT


@dataclass(frozen=True)
class MachineStatus:
    name: str
    total: int
    done: int = 0
    failed: int = 0
    pending: int = 0
    running: int = 0
    jobs_per_second: float | None = None
    eta_seconds: float | None = None
    last_update: str | None = None
    state: str = "not started"
    """not started, running, paused, stalled, interrupted, crashed or finished."""


def machine_status(path: Path, now: float) -> tuple[dict[str, str], dict[str, int], MachineStatus]:
    """(the journal's meta, plan, status) of one machine folder; a shared queue's run has no plan
    to hold machines to: its ``plan`` is ``{"": pool size}``. A run on another host is read from
    its snapshot, whose meta holds only the digest."""
    snapshot = read_snapshot(path)
    if snapshot is not None and snapshot.from_elsewhere:
        return {"digest": snapshot.digest}, snapshot.plan, _from_snapshot(snapshot, now)
    with closing(Journal(path / JOURNAL_FILE, read_only=True)) as journal:
        meta, counts, runs = journal.meta(), journal.counts(), journal.runs()
    rate = eta = last_update = None
    state = "not started"
    if runs:
        last = runs[-1]
        updated, started = float(last["updated"]), float(last["started"])
        last_update = utc_timestamp(updated)
        state = str(last["status"])
        here = state == RunStatus.RUNNING and last["host"] == socket.gethostname() and last["pid"]
        if here and now - updated > 2 * HEARTBEAT and ended(int(last["pid"])):
            # Killed (kill -9, the OOM killer), or stopped by a full disk that could not say so: its process is on
            # this host to ask. Quiet for two heartbeats first: the same host name in another PID namespace (a
            # container) has processes this one cannot see.
            state = RunStatus.CRASHED
        elif here and stopped(int(last["pid"])):
            state = "paused"  # Ctrl-Z: quiet, but alive
        elif state == RunStatus.RUNNING and now - updated > STALLED_AFTER:
            state = "stalled"
        if updated > started:
            rate = (counts[JobState.DONE] - int(last["done_before"])) / (updated - started)
        left = counts[JobState.PENDING] + counts[JobState.RUNNING]
        if state == RunStatus.RUNNING and rate:
            eta = left / rate
    if state == RunStatus.COMPLETED:
        state = "finished"
    pending, running = counts[JobState.PENDING], counts[JobState.RUNNING]
    if state == RunStatus.CRASHED:  # its jobs run nowhere: the next run starts them again
        pending, running = pending + running, 0
    status = MachineStatus(meta["machine"], sum(counts.values()), counts[JobState.DONE], counts[JobState.FAILED], pending, running, rate, eta, last_update, state)
    return meta, {"": int(meta["pool"])} if "pool" in meta else json.loads(meta["plan"]), status


def clock_notes(paths: list[Path]) -> list[str]:
    """A sentence for each run of another host shown as running or paused whose snapshot is dated
    well in the future: its host's clock is ahead, and a run that died there shows as live here."""
    now = time.time()
    snapshots = [s for path in find_machine_dirs(paths) if (s := read_snapshot(path)) is not None and s.written_elsewhere(now)]
    return [f"{s.machine} is shown as {s.state} from its last snapshot{s.clock_sentence(now)}" for s in snapshots if s.clock_sentence(now)]


def _from_snapshot(snapshot: RunSnapshot, now: float) -> MachineStatus:
    state = "stalled" if snapshot.stalled(now) else "finished" if snapshot.state == RunStatus.COMPLETED else snapshot.state
    elapsed = snapshot.updated - snapshot.started
    rate = (snapshot.done - snapshot.done_before) / elapsed if elapsed > 0 else None
    eta = (snapshot.pending + snapshot.running) / rate if state == RunStatus.RUNNING and rate else None
    return MachineStatus(
        snapshot.machine, snapshot.total, snapshot.done, snapshot.failed, snapshot.pending, snapshot.running, rate, eta, utc_timestamp(snapshot.updated), state
    )


def unfinished_tasks(statuses: list[MachineStatus], pool: int | None = None) -> dict[str, tuple[list[int], int]]:
    """Each array -> (its task indices neither finished nor running, how many are running). A
    task with nothing to do is not among them: of a static plan, one whose share is empty (an
    array larger than the pool); through a shared queue (``pool``), every task once no job of
    the pool is left to run (resubmitted, it would end at once, having cost an allocation)."""
    found: dict[str, tuple[list[int], int]] = {}
    nothing_left = pool is not None and sum(s.done + s.failed for s in statuses) >= pool  # the jobs a dead task held are not done
    for s in statuses:
        member = split_member(s.name)
        if member:
            unfinished, running = found.get(member[0], ([], 0))
            if s.state == RunStatus.RUNNING:
                running += 1
            elif s.state != "finished" and not nothing_left and (pool is not None or s.total):
                unfinished.append(member[1])
            found[member[0]] = (unfinished, running)
    return found


def tasks_with_failures(statuses: list[MachineStatus], pool: int | None = None) -> dict[str, tuple[list[int], int]]:
    """Each array -> (its finished task indices with failed jobs, how many failed jobs they hold):
    resubmitted as they are, such tasks end at once, their failed jobs left failed (merge-results
    then says INCOMPLETE); with ``--retry-failed`` they run them again. Through a shared queue
    (``pool``), the same, until every job of the pool is done somewhere: a task's failed jobs
    done since by another (retried there) are nothing to retry; one task resubmitted with
    ``--retry-failed`` takes them all from the queue. Left out, status said "nothing to
    resubmit, every task finished" of a queue's array with failed jobs."""
    found: dict[str, tuple[list[int], int]] = {}
    if pool is not None and sum(s.done for s in statuses) >= pool:
        return found
    for s in statuses:
        member = split_member(s.name)
        if member and s.state == "finished" and s.failed:
            tasks, jobs = found.get(member[0], ([], 0))
            found[member[0]] = ([*tasks, member[1]], jobs + s.failed)
    return found


def retry_options(roots: dict[str, Path], array: str, indices: list[int]) -> list[str]:
    """The options of the entry's ``sbatch`` that retry these tasks' failed jobs where they are:
    one ``--array=... --retry-failed --out ROOT`` per output root holding them. Without ``--out``
    the command, run as given, wrote a script into ./jobsplit-out: the failed jobs ran again in
    a new folder, and the campaign's stayed failed (merge-results still INCOMPLETE). A task
    whose folder was given under another name (a copy renamed) has no root a script would go on
    in: its options name none. ``roots``: each machine folder's name -> the root holding it."""
    grouped: dict[Path | None, list[int]] = {}
    for index in indices:
        grouped.setdefault(roots.get(folder_name(member_name(array, index))), []).append(index)
    return [f"--array={format_indices(found)} --retry-failed" + (f" --out {shlex.quote(str(root))}" if root is not None else "") for root, found in grouped.items()]


def gather(paths: list[Path]) -> tuple[str, list[MachineStatus], int | None, dict[str, list[Path]]]:
    """(digest, machines, the pool's size if the run goes through a shared queue, machines of a
    static plan found in more than one folder -> those folders)."""
    now = time.time()
    folders = find_machine_dirs(paths)
    found = [machine_status(p, now) for p in folders]
    refuse_mixed_plans([(folder, meta) for folder, (meta, _, _) in zip(folders, found)], fix="ask for each group separately")
    digests = {meta["digest"] for meta, _, _ in found}
    statuses = [s for _, _, s in found]
    plan = found[0][1]
    pool = plan.get("")
    seen = {s.name for s in statuses}
    repeated: dict[str, list[Path]] = {}
    if pool is None:
        statuses += [MachineStatus(name, count, pending=count) for name, count in plan.items() if name not in seen]
        repeated = repeated_machines((s.name, folder) for s, folder in zip(statuses, folders))
    return digests.pop(), sorted(statuses, key=lambda s: sort_key(s.name)), pool, repeated


def overall(statuses: list[MachineStatus], pool: int | None = None) -> MachineStatus:
    """The sum of the machines; of a shared queue's run, the whole pool (pending: done nowhere yet).
    A machine of a static plan in several folders counts once, as its folder furthest along."""
    if pool is None:
        furthest: dict[str, MachineStatus] = {}
        for s in statuses:
            if s.name not in furthest or s.done > furthest[s.name].done:
                furthest[s.name] = s
        statuses = list(furthest.values())
    total = sum(s.total for s in statuses) if pool is None else pool
    done, failed, running = (sum(getattr(s, name) for s in statuses) for name in ("done", "failed", "running"))
    if pool is not None:  # a job one host failed and another did since (--retry-failed) stays failed in the first's journal
        failed = min(failed, max(0, pool - done - running))
    pending = sum(s.pending for s in statuses) if pool is None else max(0, pool - done - failed - running)
    rates = [s.jobs_per_second for s in statuses if s.state == RunStatus.RUNNING and s.jobs_per_second]
    if pool is None:  # the pool is finished when the slowest running machine is
        etas = [s.eta_seconds for s in statuses if s.eta_seconds is not None]
    else:  # a shared queue's hosts hold only what they claimed: the rest is left to all of them
        etas = [(pending + running) / sum(rates)] if rates else []
    return MachineStatus(
        "overall",
        total,
        done,
        failed,
        pending,
        running,
        sum(rates) if rates else None,
        max(etas) if etas else None,
        max((s.last_update for s in statuses if s.last_update), default=None),
        "finished" if all(s.state == "finished" for s in statuses) else "-",
    )


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dirs", nargs="*", type=Path, metavar="DIR", help="an output root, or machine folders (DIR/<machine>)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--balance", metavar="URL", help="also show the shared queue at redis://HOST:PORT/DB (without DIR: every queue there)")


def run(args: argparse.Namespace, console: Console) -> int:
    if not args.dirs and args.balance is None:
        raise UserError("status needs output folders (DIR...) or --balance URL; give an output root, machine folders, or the queue's URL")
    digest, statuses, pool, repeated = gather(args.dirs) if args.dirs else (None, [], None, {})
    queues = _queues(args.balance, digest) if args.balance is not None else []
    arrays = unfinished_tasks(statuses, pool)
    retry = tasks_with_failures(statuses, pool)
    roots = {folder.name: folder.parent for folder in find_machine_dirs(args.dirs)} if retry else {}  # where each retry goes on (see retry_options)
    if args.json:
        doc: dict[str, Any] = {"queues": [asdict(q) for q in queues]} if args.balance is not None else {}
        if digest is not None:
            doc = {"digest": format_digest(digest), "machines": [asdict(s) for s in statuses], "overall": asdict(overall(statuses, pool)), **doc}
        if repeated:
            doc["repeated"] = {name: [str(folder) for folder in folders] for name, folders in repeated.items()}
        if arrays:
            doc["arrays"] = {
                name: {
                    "unfinished": tasks, "running": running, "resubmit": f"--array={format_indices(tasks)}" if tasks else None,
                    "failed": (failed := retry.get(name, ([], 0))[0]), "retry": "; ".join(retry_options(roots, name, failed)) if failed else None,
                }
                for name, (tasks, running) in arrays.items()
            }  # fmt: skip
        print(json.dumps(doc))
        return 0
    if digest is not None:
        _machine_table(digest, statuses, overall(statuses, pool))
    for name, folders in repeated.items():
        console.print(repeated_machine_sentence(name, folders), markup=False, soft_wrap=True)
    for name, folder in results_without_journal(args.dirs, [s.name for s in statuses if s.state == "not started"]).items():
        console.print(f"{name} is shown as not started: {results_only_sentence(folder)}", markup=False, soft_wrap=True)
    for sentence in clock_notes(args.dirs):
        console.print(sentence, markup=False, soft_wrap=True)
    for queue in queues:
        _queue_table(queue)
    out = data_console()
    for name, (tasks, running) in arrays.items():
        now_running = f" ({running} running now, not included)" if running else ""
        failed, failed_jobs = retry.get(name, ([], 0))
        if tasks:
            out.print(f"{name}: resubmit the {plural(len(tasks), 'task')} not finished{now_running} with --array={format_indices(tasks)}", markup=False, soft_wrap=True)
        elif not failed:
            out.print(f"{name}: nothing to resubmit" + (f" ({running} running now)" if running else ", every task finished"), markup=False, soft_wrap=True)
        if failed:  # resubmitted as they are, they end at once, their failed jobs left failed
            them = "it" if len(failed) == 1 else "them"
            commands = " and ".join(f"sbatch --machine {name} {options} --submit" for options in retry_options(roots, name, failed))
            out.print(
                f"{name}: {plural(len(failed), 'task')} finished with {plural(failed_jobs, 'failed job')}: retry {them} with the entry's {commands}",
                markup=False, soft_wrap=True,
            )  # fmt: skip
    return 0


def _queues(url: str, digest: str | None) -> list[balance.QueueFigures]:
    """The queue of ``digest`` (or every queue) on the server at ``url``."""
    address = balance.parse_url(url, "--balance")
    connection = balance.connect(address)
    try:
        digests = [digest] if digest is not None else balance.queue_digests(connection.client)
        figures = [balance.queue_figures(connection.client, d) for d in digests]
    except connection.lost as exc:
        if "no permissions" in str(exc):  # an ACL user without a command the figures need: trying again changes nothing
            raise UserError(f"Redis at {address.masked} refuses this user a command ({address.mask(str(exc))}); have the server's ACL allow it, or use another user") from None
        raise UserError(f"lost Redis at {address.masked} while reading the queue ({address.mask(str(exc))}); try again") from None
    finally:
        connection.close()
    found = [f for f in figures if f is not None]
    if not found:
        which = f"for digest {format_digest(digest)}" if digest is not None else "at all"
        raise UserError(f"Redis at {address.masked} holds no jobsplit queue {which}; check the URL (and the database number)")
    return found


def _queue_table(q: balance.QueueFigures) -> None:
    table = Table(title=f"shared queue of digest {format_digest(q.digest)}: {q.done}/{q.total} done, {q.failed} failed, {q.pending} pending")
    for column in ("Host", "Claimed now", "Done", "Reclaimed from it", "Last contact"):
        table.add_column(column, justify="left" if column == "Host" else "right")
    for host in sorted(set(q.claimed) | set(q.done_by) | set(q.reclaimed_from) | set(q.last_contact)):
        seen = f"{duration(q.last_contact[host])} ago" if host in q.last_contact else "-"
        table.add_row(host, str(q.claimed.get(host, 0)), str(q.done_by.get(host, 0)), str(q.reclaimed_from.get(host, 0)), seen)
    table.add_section()
    table.add_row("all", str(sum(q.claimed.values())), str(q.done), str(q.reclaimed), "")
    data_console().print(table)
    if q.hold_seconds:
        data_console().print(f"Redis lost this queue and it was seeded again: jobs are handed out again in {q.hold_seconds:.1f} s")


def _machine_table(digest: str, statuses: list[MachineStatus], total: MachineStatus) -> None:
    table = Table(title=f"digest {format_digest(digest)}")
    for column in ("Machine", "Done", "Failed", "Pending", "Running", "Jobs/s", "ETA", "Last update (UTC)", "State"):
        table.add_column(column, justify="left" if column in ("Machine", "State", "Last update (UTC)") else "right")
    for i, s in enumerate([*statuses, total]):
        if i == len(statuses):
            table.add_section()
        table.add_row(
            s.name,
            f"{s.done}/{s.total}",
            str(s.failed),
            str(s.pending),
            str(s.running),
            rate_text(s.jobs_per_second) if s.jobs_per_second else "-",
            duration(s.eta_seconds) if s.eta_seconds is not None else "-",
            (s.last_update or "-").replace("T", " ")[:19],
            s.state,
        )
    data_console().print(table)
