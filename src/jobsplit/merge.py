"""Combining the machines' results: one table, and proof that nothing is missing or doubled.

Everything is read from the machines' journals (read-only, so runs can go on), never from
their results.csv, which only mirrors the journal. Each journal knows the digest and the
whole plan's shape, so a machine whose folder is absent is still reported.

A folder whose progress snapshot says that a run on another host is writing it is not opened
(SQLite's WAL cannot be shared across hosts): its jobs count as missing,
and the report says where it runs. On the host of the run, or once it has ended, it is read.

Folders of a run through a shared queue (``--balance``) hold what each machine claimed, not a
share: there, complete means every job of the pool (its size is in each journal) done in
exactly one folder. A job a host computed after its claim had passed to another host is
recorded there as superseded; it is counted, and left out.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import time
from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from rich.console import Console

from .config import RESERVED_COLUMNS
from .digest import format_digest, mixed_plans
from .digits import int_of_text
from .errors import UserError
from .fingerprint import UNKNOWN
from .journal import Journal
from .outdir import JOURNAL_FILE, RESULTS_FILE, find_machine_dirs, machine_dirs_below, repeated_machine_sentence, repeated_machines, results_only_sentence, results_without_journal
from .results import row_cells
from .snapshot import RunSnapshot, split_written_elsewhere
from .sources.redis import RedisQueue
from .sources.static import StaticShare
from .states import JobState
from .text import plural
from .tooloutput import tool_output

NAME = "merge-results"
HELP = "combine the machines' results into one CSV and report missing or duplicate jobs"
SHOWN = 10
"""Missing or duplicate job ids listed per machine; the rest are counted."""


@dataclass
class MachineResults:
    """One machine's output folder, opened through its journal."""

    path: Path
    journal: Journal
    meta: dict[str, str]

    @property
    def machine(self) -> str:
        return self.meta["machine"]

    @property
    def digest(self) -> str:
        return self.meta["digest"]


@dataclass
class Merged:
    """Who holds which job, and what is missing or doubled."""

    machines: list[MachineResults]
    header: list[str]
    plan: dict[str, int]
    first: dict[str, int] = field(default_factory=dict)
    """job id -> the first folder (its place in ``machines``) whose journal has it done, as
    ``~place`` once that folder's done line of it has been read: one small int shared by all its
    jobs. Beside a list of machines and a second set of ids per job, a million jobs took 395 MB."""
    more: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """job id -> every machine whose journal has it done, for the jobs of two folders or more (a
    tuple: one object, where a list grown by appending took two, 79 bytes each)."""
    repeated: dict[int, set[int]] = field(default_factory=dict)
    """folder (its place in ``machines``) -> the places, in its ``done_lines``, of lines of jobs
    found before other than in an earlier folder holding them done: earlier in its own journal (a
    job claimed again from a queue that lost it), or in a folder whose newest attempt of it is
    not done. Usually none; ``lines`` skips them, and the lines of jobs an earlier folder holds."""
    missing: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    """machine -> (job id, state) of its jobs not done."""
    absent: dict[str, int] = field(default_factory=dict)
    """machines of the plan with no folder given -> their job count."""
    elsewhere: dict[str, RunSnapshot] = field(default_factory=dict)
    """machines whose folder another host's run is writing -> its snapshot (not opened)."""
    codes: dict[str, Counter[str]] = field(default_factory=dict)
    """code fingerprint -> done jobs per machine computed with it (known fingerprints only)."""
    unknown_code: Counter[str] = field(default_factory=Counter)
    """Done jobs per machine whose code is not known (a 0.1 journal; an entry without a file, as
    ``python -c``; an executable not built by ``make exe``): no check of theirs can be made."""
    pool_size: int | None = None
    """A shared queue's run: the whole pool's size (None: static shares)."""
    superseded: int = 0
    """Jobs some folder computed but holds as superseded (another claim's result counts)."""
    idle: set[Path] = field(default_factory=set)
    """A shared queue's machine folders that never held a job: a run refused as it joined (another
    run of that machine in contact), or stopped before its first claim. Not a second run of it."""
    below: dict[str, Path] = field(default_factory=dict)
    """Machines of ``absent`` whose folder lies one level below an output root given -> that folder."""
    results_only: dict[str, Path] = field(default_factory=dict)
    """Machines of ``absent`` whose folder in a root given holds a results.csv but no journal -> that folder."""
    behind: dict[Path, tuple[int, int]] = field(default_factory=dict)
    """Machine folders whose results.csv holds more rows than their journal -> (the journal's
    lines, results.csv's): a journal copied at another moment than results.csv."""

    @property
    def holders(self) -> Mapping[str, list[str]]:
        """job id -> machines whose journal has it done."""
        return _Holders(self)

    @property
    def unclaimed(self) -> int:
        """A shared queue's run: jobs of the pool no folder holds at all."""
        if self.pool_size is None:
            return 0
        held = len(self.first) + len({job_id for jobs in self.missing.values() for job_id, _ in jobs if job_id not in self.first})
        return max(0, self.pool_size - held)

    @property
    def mixed_code(self) -> bool:
        """Whether the done jobs come from more than one version of the entry script."""
        return len(self.codes) > 1

    @property
    def duplicates(self) -> dict[str, list[str]]:
        """job id -> its machines, for the jobs done in more than one folder, in the order of ``first``."""
        return {job_id: list(self.more[job_id]) for job_id in self.first if job_id in self.more} if self.more else {}

    @property
    def complete(self) -> bool:
        return not self.missing and not self.absent and not self.elsewhere and not self.more and not self.unclaimed

    def rows(self) -> Iterator[dict[str, Any]]:
        """Each done job's row once, cells parsed back to numbers where they read as numbers."""
        width = len(self.header)
        parsers = [_OWN_CELLS.get(column, _parse_cell) for column in self.header]
        for cells in row_cells(self.lines()):
            row: dict[str, Any] = {c: parse(v) for c, parse, v in zip(self.header, parsers, cells)}
            row.update(zip(RESERVED_COLUMNS, cells[width:]))
            row[ARGS] = json.loads(row["Job Args"])
            yield row

    def lines(self) -> Iterator[str]:
        """Each done job's results.csv line, the first copy only: a line of a job an earlier
        folder holds done is skipped, and those ``merge`` found repeated otherwise, by their
        place (the journals are read again in the snapshot it held)."""
        first = self.first
        for at, machine in enumerate(self.machines):
            skip = self.repeated.get(at, set())
            for place, (job_id, line) in enumerate(machine.journal.done_lines()):
                holder = first.get(job_id)
                if place not in skip and (holder is None or _folder(holder) >= at):
                    yield line


def _folder(mark: int) -> int:
    """The folder's place in ``Merged.machines`` that a mark of ``Merged.first`` names."""
    return mark if mark >= 0 else ~mark


class _Holders(Mapping[str, list[str]]):
    """``Merged.holders``: job id -> machines whose journal has it done, made as asked."""

    def __init__(self, merged: Merged) -> None:
        self._merged = merged

    def __getitem__(self, job_id: str) -> list[str]:
        merged = self._merged
        if job_id in merged.more:
            return list(merged.more[job_id])
        return [merged.machines[_folder(merged.first[job_id])].machine]

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._merged.first

    def __iter__(self) -> Iterator[str]:
        return iter(self._merged.first)

    def __len__(self) -> int:
        return len(self._merged.first)


def merge(paths: Sequence[Path]) -> Merged:
    """Open every machine's journal, check they share one digest, and account for every job."""
    readable, elsewhere = split_written_elsewhere(find_machine_dirs(paths))
    csv_lines = {p: _row_lines(p / RESULTS_FILE) for p in readable}  # before the journals: a run going on appends a row only once committed
    machines = [MachineResults(p, journal := Journal(p / JOURNAL_FILE, read_only=True), journal.meta()) for p in readable]
    for machine in machines:
        machine.journal.hold_snapshot()
    refuse_mixed_plans([(m.path, m.meta) for m in machines], {s.digest for s in elsewhere.values()})
    sources = {m.meta.get("source", StaticShare.name) for m in machines}
    if len(sources) > 1:
        raise UserError("these folders mix runs through a shared queue (--balance) and static shares of one digest; merge each kind separately")
    first = machines[0].meta
    queue = sources == {RedisQueue.name}
    merged = Merged(
        machines, json.loads(first["header"]), json.loads(first["plan"]), elsewhere={s.machine: s for s in elsewhere.values()}, pool_size=int(first["pool"]) if queue else None
    )
    superseded: set[str] = set()
    first_holder, more = merged.first, merged.more
    stray: set[str] = set()  # jobs whose done line came from a folder not holding them done (an older attempt done there), none before it: usually none
    for at, machine in enumerate(machines):
        held, read = False, ~at  # one int object for every job of the folder
        for job_id, state in machine.journal.states():
            held = True
            if state == JobState.DONE:
                holder = first_holder.setdefault(job_id, at)
                if holder != at:  # done in an earlier folder too
                    more[job_id] = (*more.get(job_id, (machines[_folder(holder)].machine,)), machine.machine)
            elif state == JobState.SUPERSEDED:  # a shared queue took another host's result: not missing
                superseded.add(job_id)
            else:
                merged.missing.setdefault(machine.machine, []).append((job_id, state))
        if queue and not held:
            merged.idle.add(machine.path)
        lines = 0
        for place, (job_id, line) in enumerate(machine.journal.done_lines()):
            found = first_holder.get(job_id)
            if found is not None and _folder(found) < at:
                pass  # an earlier folder holds it done, so its line came before: lines() knows it by that
            elif found == at and job_id not in stray:  # this folder's first line of a job it holds done: the one written
                first_holder[job_id] = read
            elif found is None and job_id not in stray:  # a line of a job held done by no folder so far: written
                stray.add(job_id)
            else:  # a line of it came before, in this journal or from a folder that does not hold it done
                merged.repeated.setdefault(at, set()).add(place)
            lines += line.count("\n")
            code = line.rstrip("\n").rsplit(",", 1)[-1] or UNKNOWN  # the last column: hex, never quoted
            if code != UNKNOWN:
                merged.codes.setdefault(code, Counter())[machine.machine] += 1
            else:
                merged.unknown_code[machine.machine] += 1
        if csv_lines[machine.path] > lines:
            merged.behind[machine.path] = (lines, csv_lines[machine.path])
    merged.superseded = len(superseded)
    # A job held here but done elsewhere is not missing: through a queue, released, retried or taken
    # over; of a static share, done in another folder of the same machine (chosen on two hosts, or
    # run into two --out). Missing from two such folders, it is missing once.
    merged.missing = {name: kept for name, jobs in merged.missing.items() if (kept := list({j: (j, s) for j, s in jobs if j not in first_holder}.values()))}
    present = {m.machine for m in machines} | set(merged.elsewhere)
    if not queue:
        merged.absent = {name: count for name, count in merged.plan.items() if name not in present and count}
        merged.below = machine_dirs_below(paths, merged.absent)
        merged.results_only = results_without_journal(paths, merged.absent)
    return merged


def refuse_mixed_plans(folders: Sequence[tuple[Path, Mapping[str, str]]], others: Collection[str] = (), *, fix: str = "merge each group separately") -> None:
    """Refuse machine folders (with their journals' meta) of different digests, naming each
    group and what differs; ``others``: digests of folders known without their journal;
    ``fix``: what the tool's user does instead."""
    digests = {meta["digest"] for _, meta in folders} | set(others)
    if len(digests) > 1:
        groups = "; ".join(f"{format_digest(d)}: {', '.join(str(path) for path, meta in folders if meta['digest'] == d)}" for d in sorted(digests))
        raise UserError(f"these folders come from different plans ({mixed_plans(meta.get('parts', '') for _, meta in folders)}; digests {groups}); {fix}")


def _row_lines(results: Path) -> int:
    """The lines of results.csv below its header (0 if there is none): a row with a line break
    in a cell takes more than one, as it does in the journal's lines."""
    try:
        with open(results, "rb") as f:
            header = f.readline()
            count = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except OSError:
        return 0
    return count if header.endswith(b"\n") else 0


def report(merged: Merged, console: Console) -> None:
    """What is missing (with the machine that owned it) and what is doubled."""
    for path, (lines, rows) in sorted(merged.behind.items()):
        console.print(
            f"{path}/{JOURNAL_FILE} is behind the {RESULTS_FILE} beside it ({rows:,} lines of results there, {lines:,} in the journal): "
            f"it was copied at an earlier moment (without its -wal while the run went on, or beside a stale -wal of an earlier copy); "
            "copy the folder again whole (rsync -a --delete), or run that machine once more on it to take those rows back",
            markup=False, soft_wrap=True,
        )  # fmt: skip
    for name, jobs in sorted(merged.missing.items()):
        states = Counter(state for _, state in jobs)
        listed = ", ".join(job_id for job_id, _ in jobs[:SHOWN]) + (f" and {len(jobs) - SHOWN} more" if len(jobs) > SHOWN else "")
        console.print(f"missing from {name}: {plural(len(jobs), 'job')} ({_counted(states)}): {listed}", markup=False, soft_wrap=True)
    for name, count in sorted(merged.absent.items()):
        below = merged.below.get(name)
        where = f"; {below} holds one, a level further down than the folders read: give it too" if below else ""
        why = f"no folder for this machine was given{where}"
        if (results_only := merged.results_only.get(name)) and not below:
            why = results_only_sentence(results_only)
        console.print(f"missing from {name}: {_all(count)} ({why})", markup=False, soft_wrap=True)
    now = time.time()
    for name, snapshot in sorted(merged.elsewhere.items()):
        console.print(
            f"missing from {name}: {_all(snapshot.total)} (its run goes on on {snapshot.host}, pid {snapshot.pid}, {snapshot.done} done so far; "
            f"its journal is not opened from another host while it is written: merge again when the run has ended{snapshot.clock_sentence(now)})",
            markup=False,
            soft_wrap=True,
        )
    if merged.unclaimed:
        console.print(
            f"missing: {plural(merged.unclaimed, 'job')} of the pool, in none of these folders (still in the shared queue, or done on a host "
            "whose folder was not given); run a host again to take them, or add the missing folder", markup=False, soft_wrap=True,
        )  # fmt: skip
    if merged.superseded:
        console.print(
            f"superseded: {plural(merged.superseded, 'job')} also computed on a host whose claim had passed to another; the accepted result is kept, one row per job",
            markup=False, soft_wrap=True,
        )  # fmt: skip
    for name, folders in repeated_machines((m.machine, m.path) for m in merged.machines if m.path not in merged.idle).items():
        console.print(repeated_machine_sentence(name, folders, queue=merged.pool_size is not None), markup=False, soft_wrap=True)
    duplicates = merged.more  # the first SHOWN in the order of merged.first: no dict of them all (a folder copied twice doubles every job)
    if duplicates:
        shown = list(islice(((job_id, duplicates[job_id]) for job_id in merged.first if job_id in duplicates), SHOWN))
        listed = ", ".join(f"{job_id} ({' + '.join(where)})" for job_id, where in shown)
        more = f" and {len(duplicates) - SHOWN} more" if len(duplicates) > SHOWN else ""
        why = (
            " (through a shared queue: a machine run from two folders, see above; Redis that lost its queue while the host that "
            "had done them was away; or a host killed between its commit and telling Redis; --allow-missing writes the first of each)"
        ) if merged.pool_size is not None else ""
        console.print(f"present more than once: {plural(len(duplicates), 'job')}: {listed}{more}{why}", markup=False, soft_wrap=True)
    if merged.mixed_code:
        versions = "; ".join(
            f"code {code} on " + ", ".join(f"{name} ({plural(count, 'job')})" for name, count in sorted(machines.items()))
            for code, machines in sorted(merged.codes.items())
        )
        console.print(f"mixed code: the results come from different versions of the entry script: {versions}", markup=False, soft_wrap=True)
    if merged.unknown_code and merged.codes:  # said only beside known code: alone, there is nothing to set them against
        unknown = ", ".join(f"{name} ({plural(count, 'job')})" for name, count in sorted(merged.unknown_code.items()))
        console.print(
            f"note: the code of the results of {unknown} is unknown (an entry without a file, such as python -c; an executable not built "
            "by make exe; a 0.1 journal), so whether they come from the same entry script as the others cannot be checked",
            markup=False, soft_wrap=True,
        )  # fmt: skip
    total = merged.pool_size if merged.pool_size is not None else sum(merged.plan.values())
    verdict = f"complete: every job of the {'pool' if merged.pool_size is not None else 'plan'} exactly once" if merged.complete else "INCOMPLETE"
    console.print(f"{len(merged.first)} of {total} jobs present from {plural(len(merged.machines), 'machine folder')}; {verdict}", markup=False, soft_wrap=True)



def write_csv(merged: Merged, output: Path) -> int:
    """Write the merged table (atomically: a temporary file renamed); returns rows written."""
    count = 0
    with tool_output(output) as f:
        csv.writer(f, lineterminator="\n").writerow([*merged.header, *RESERVED_COLUMNS])
        for line in merged.lines():
            f.write(line)
            count += 1
    return count


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="an output root, or machine folders (DIR/<machine>)")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="FILE", help="the merged CSV to write, - for stdout")
    parser.add_argument("--allow-missing", action="store_true", help="write what there is even if jobs are missing or doubled (exit status stays 1)")
    parser.add_argument("--allow-mixed-code", action="store_true", help="accept results computed by different versions of the entry script")


def run(args: argparse.Namespace, console: Console) -> int:
    merged = merge(args.dirs)
    report(merged, console)
    code_ok = not merged.mixed_code or args.allow_mixed_code
    if (merged.complete or args.allow_missing) and code_ok:
        rows = write_csv(merged, args.output)
        console.print(f"wrote {plural(rows, 'row')} to {'stdout' if str(args.output) == '-' else args.output}", markup=False, soft_wrap=True)
    else:
        flags = [] if code_ok else ["--allow-mixed-code to merge results of different code versions"]
        if not (merged.complete or args.allow_missing):
            nothing_missing = not (merged.missing or merged.absent or merged.elsewhere or merged.unclaimed)
            flags.append("--allow-missing to write " + ("one row of each job, the first found" if nothing_missing else "the rows there are"))
        console.print(f"nothing written; pass {' and '.join(flags)}", markup=False)
    return 0 if merged.complete and code_ok else 1


def _all(count: int) -> str:
    """``all 8 jobs``, or ``its 1 job``."""
    return f"all {count:,} jobs" if count != 1 else "its 1 job"


def _counted(states: Counter[str]) -> str:
    return ", ".join(f"{count} {state}" for state, count in sorted(states.items()))


ARGS = "args"
"""The key under which each merged row holds its job's arguments (see reduction)."""
_INTEGER = re.compile(r"0|-?[1-9][0-9]*")
"""An int's text as jobsplit writes it (never ``-0``: that is text a job returned)."""


_BOOLS = {"True": True, "False": False}


_OWN_CELLS = {"Job Running Time": float}
"""jobsplit's own cells read back by their type: a running time is written with six decimals
(``0.010000``), not as a float's ``repr``, and by _parse_cell some 10% of them came back as text
(a sum over the column failed)."""


def _parse_cell(text: str) -> Any:
    """A cell back as the number jobsplit wrote (int, or a float's repr) or the bool (``True``,
    ``False``: as text, ``if row["converged"]`` held for every row), None if empty; else the
    text: ``"007"``, ``"1e3"`` or ``"1_000"`` were never written for a number (they came back
    as 7.0 and 1000.0)."""
    if text == "":
        return None
    if text in _BOOLS:
        return _BOOLS[text]
    if _INTEGER.fullmatch(text):
        return int_of_text(text)
    try:
        number = float(text)
    except ValueError:
        return text
    return number if repr(number) == text else text
