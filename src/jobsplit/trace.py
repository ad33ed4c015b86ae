"""``jobsplit trace``: a run's attempts as Chrome trace-event JSON, for ui.perfetto.dev or
chrome://tracing (which zoom through 100,000 attempts where a static page cannot).

The Trace Event Format's JSON Object Format: ``{"traceEvents": [...], "displayTimeUnit": "ms"}``.
Each machine is a process (pid 1, 2, ... in the order of machine names) named by a
``process_name`` metadata event; each worker slot a thread, tid = slot + 1 (pid and tid 0 are
avoided: Perfetto keeps 0 for the idle task), named ``worker <slot>`` by ``thread_name``.
Every attempt is one complete event (``ph: "X"``) with ``ts`` and ``dur`` in whole
microseconds since the Unix epoch (UTC), named by its kind (done, retried, error, crashed,
timeout, interrupted, running) so that viewers colour outcomes apart, and the job id, its
arguments, the attempt, outcome and resources in ``args``.

Complete events on one thread must not partly overlap. Attempts on one worker slot follow one
another, but their times come from two clocks (the worker's and the parent's) and may overlap
by a few milliseconds. Such overlaps are clipped deterministically: on each track, events in
order of (start, end, job id, attempt) each start no earlier than the one before ended (an
event wholly inside the one before becomes zero-length at its end); ``args.clipped_us`` says
by how much. So no two events on one track overlap.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from rich.console import Console

from ._version import __version__
from .digest import format_digest
from .errors import UserError
from .figures import failure_message
from .runfacts import Attempt, RunFacts, load
from .text import plural
from .tooloutput import tool_output

NAME = "trace"
HELP = "write the run's attempts as Chrome trace-event JSON (open it in ui.perfetto.dev)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="an output root, or machine folders (DIR/<machine>)")
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help="the JSON file to write (e.g. trace.json), - for stdout")


def run(args: argparse.Namespace, console: Console) -> int:
    facts = load(args.dirs)
    with tool_output(args.output) as f:
        attempts = write_trace(facts, f)
        if args.output == "-":
            f.write("\n")
    if args.output == "-":
        return 0
    console.print(f"wrote {args.output}: {attempts:,} attempts; open it at https://ui.perfetto.dev (Open trace file)", markup=False, soft_wrap=True)
    return 0


def write_trace(facts: RunFacts, f: IO[str]) -> int:
    """Write the trace as compact JSON, one event at a time: the whole document of a million
    attempts took 1.6 GB beside the attempts themselves (a dict of dicts per event, then its
    whole text). Returns the complete events written."""
    tail = json.dumps(_other(facts), separators=(",", ":"), allow_nan=False)[1:]  # its keys after the events, and the closing brace
    f.write('{"traceEvents":[')
    encode, attempts = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode, 0  # one encoder: json.dumps with arguments makes one a call
    for at, event in enumerate(trace_events(facts)):
        f.write(("," if at else "") + encode(event))
        attempts += event["ph"] == "X"
    f.write("]," + tail)
    return attempts


def _other(facts: RunFacts) -> dict[str, Any]:
    """The document's keys after its events."""
    if not facts.machines:
        raise UserError("no machine folders to trace")
    other = {"digest": format_digest(facts.digest), "strategy": facts.strategy, "generator": f"jobsplit {__version__} trace"}
    return {"displayTimeUnit": "ms", "otherData": other}


def trace_events(facts: RunFacts) -> Iterator[dict[str, Any]]:
    """The trace's events: metadata naming every machine and slot, then the attempts, track by track."""
    for pid, machine in enumerate(facts.machines, start=1):
        yield _metadata("process_name", pid, None, name=machine.name)
        yield _metadata("process_sort_index", pid, None, sort_index=pid)
        yield _metadata("process_labels", pid, None, labels=f"speed {machine.speed:g}, {plural(machine.cores, 'core')}, {plural(machine.workers, 'worker')}")
        tracks: dict[int, list[Attempt]] = {slot: [] for slot in range(machine.workers)}
        for a in machine.attempts:
            tracks.setdefault(a.slot, []).append(a)
        for slot in sorted(tracks):
            yield _metadata("thread_name", pid, slot + 1, name=f"worker {slot}")
            yield _metadata("thread_sort_index", pid, slot + 1, sort_index=slot)
            yield from track_events(tracks[slot], pid, slot + 1)


def track_events(attempts: list[Attempt], pid: int, tid: int) -> Iterator[dict[str, Any]]:
    """One track's complete events, overlaps clipped (see the module's docstring)."""
    previous_end = None
    for a in sorted(attempts, key=lambda a: (a.started, a.ended, a.job_id, a.attempt)):
        start, end = round(a.started * 1e6), round(a.ended * 1e6)
        end = max(end, start)
        clipped = 0
        if previous_end is not None and start < previous_end:
            clipped = min(previous_end, end) - start
            start = previous_end
            end = max(end, start)
        previous_end = end
        args: dict[str, Any] = {
            "job_id": a.job_id,
            "arguments": a.args,
            "attempt": a.attempt,
            "outcome": a.outcome,
            "state": a.state,
            "machine": a.machine,
            "slot": a.slot,
            "run": a.run,
            "worker_pid": a.pid,
            "max_rss": a.max_rss,
            "cpu_seconds": a.cpu_seconds,
        }
        if a.outcome not in ("done", "running"):
            args.update(exit_code=a.exit_code, signal=a.signal, message=failure_message(a))
        if clipped:
            args["clipped_us"] = clipped
        yield {"name": a.kind, "cat": "attempt", "ph": "X", "ts": start, "dur": end - start, "pid": pid, "tid": tid, "args": args}


def _metadata(kind: str, pid: int, tid: int | None, **args: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"name": kind, "ph": "M", "pid": pid, "args": args}
    if tid is not None:
        event["tid"] = tid
    return event
