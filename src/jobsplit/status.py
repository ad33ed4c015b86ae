"""Where every machine stands, read from the journals while the runs go on.

Journals are opened read-only (SQLite WAL readers never block the run's writer). A run
touches its journal at least every few seconds, so a run whose journal has been quiet for
much longer is shown as stalled: its process has probably died.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .console import data_console
from .digest import format_digest
from .display import duration
from .errors import UserError
from .journal import Journal
from .outdir import JOURNAL_FILE, find_machine_dirs
from .recorder import HEARTBEAT
from .states import JobState, RunStatus
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
    """not started, running, stalled, interrupted, crashed or finished."""


def machine_status(path: Path, now: float) -> tuple[str, dict[str, int], MachineStatus]:
    """(digest, plan, status) of one machine folder."""
    journal = Journal(path / JOURNAL_FILE, read_only=True)
    try:
        meta, counts, runs = journal.meta(), journal.counts(), journal.runs()
    finally:
        journal.close()
    rate = eta = last_update = None
    state = "not started"
    if runs:
        last = runs[-1]
        updated, started = float(last["updated"]), float(last["started"])
        last_update = utc_timestamp(updated)
        state = str(last["status"])
        if state == RunStatus.RUNNING and now - updated > STALLED_AFTER:
            state = "stalled"
        if updated > started:
            rate = (counts[JobState.DONE] - int(last["done_before"])) / (updated - started)
        left = counts[JobState.PENDING] + counts[JobState.RUNNING]
        if state == RunStatus.RUNNING and rate:
            eta = left / rate
    if state == RunStatus.COMPLETED:
        state = "finished"
    status = MachineStatus(meta["machine"], sum(counts.values()), counts[JobState.DONE], counts[JobState.FAILED], counts[JobState.PENDING], counts[JobState.RUNNING], rate, eta, last_update, state)
    return meta["digest"], json.loads(meta["plan"]), status


def gather(paths: list[Path]) -> tuple[str, list[MachineStatus]]:
    now = time.time()
    found = [machine_status(p, now) for p in find_machine_dirs(paths)]
    digests = {digest for digest, _, _ in found}
    if len(digests) > 1:
        raise UserError(f"these folders come from different pools or config files (digests {', '.join(map(format_digest, sorted(digests)))}); ask for each group separately")
    statuses = [s for _, _, s in found]
    plan = found[0][1]
    seen = {s.name for s in statuses}
    statuses += [MachineStatus(name, count, pending=count) for name, count in plan.items() if name not in seen]
    return digests.pop(), sorted(statuses, key=lambda s: s.name)


def overall(statuses: list[MachineStatus]) -> MachineStatus:
    total = sum(s.total for s in statuses)
    rates = [s.jobs_per_second for s in statuses if s.state == RunStatus.RUNNING and s.jobs_per_second]
    # the pool is finished when the slowest running machine is
    etas = [s.eta_seconds for s in statuses if s.eta_seconds is not None]
    return MachineStatus(
        "overall",
        total,
        sum(s.done for s in statuses),
        sum(s.failed for s in statuses),
        sum(s.pending for s in statuses),
        sum(s.running for s in statuses),
        sum(rates) if rates else None,
        max(etas) if etas else None,
        max((s.last_update for s in statuses if s.last_update), default=None),
        "finished" if all(s.state == "finished" for s in statuses) else "-",
    )


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="an output root, or machine folders (DIR/<machine>)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def run(args: argparse.Namespace, console: Console) -> int:
    digest, statuses = gather(args.dirs)
    total = overall(statuses)
    if args.json:
        print(json.dumps({"digest": format_digest(digest), "machines": [asdict(s) for s in statuses], "overall": asdict(total)}))
        return 0
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
            f"{s.jobs_per_second:.3g}" if s.jobs_per_second else "-",
            duration(s.eta_seconds) if s.eta_seconds is not None else "-",
            (s.last_update or "-").replace("T", " ")[:19],
            s.state,
        )
    data_console().print(table)
    return 0
