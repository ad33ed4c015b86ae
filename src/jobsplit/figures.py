"""The figures of a run, computed from its facts: pure functions of plain data, so that each
one is tested against numbers worked out by hand.

Definitions. Times are wall-clock seconds. "Attempts" include failed ones (they used the
workers too) and running ones up to the journal's last commit.

- start, end: the first attempt's start and the last attempt's end over all machines;
  makespan = end - start.
- busy fraction of a machine = sum of its attempt durations / sum over its runs of workers x
  (run end - run start): the part of the worker time it had that jobs used. Start-up, workers
  idle at the end and gaps between attempts are the rest; time between two runs (a resumed
  run) counts for nothing.
- finish of a machine: its last attempt's end (none while its last run is still running).
- throughput = done attempts / sum of its run lengths, in jobs per hour.
- work = sum of attempt durations x the machine's speed in machines.json (seconds of a
  speed-1 core); capacity = sum of speed x workers over the machines that ran. The lower bound
  on the makespan is the larger of work / capacity and the longest job (all its attempts, one
  after another, as work) / the fastest speed.
- idle at the end of a machine = end - its finish; idle machine-hours = their sum / 3600,
  idle core-hours weigh each machine by its workers. Unknown while a run goes on.
- measured speed: 1 / a machine's mean done-attempt duration, which is comparable across
  machines because each share of a quota (or rendezvous) plan is a random sample of the pool;
  scaled so that sum of cores x speed over the measured machines equals machines.json's, so
  the suggested machines.json keeps the total capacity and moves it to where jobs ran faster.
"""

from __future__ import annotations

import signal as signals
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from .runfacts import Attempt, MachineFacts, RunFacts
from .text import last_line

WORST_FIRST = ("crashed", "timeout", "error", "retried", "interrupted", "running", "done")
"""Which kind colours a group of attempts drawn as one bar: the worst one in it."""
RANDOM_SHARES = ("quota", "rendezvous")
"""Strategies whose shares are random samples of the pool: their mean job times compare."""


@dataclass(frozen=True)
class MachineFigures:
    name: str
    speed: float
    cores: int
    workers: int
    planned: int
    held: int
    done: int
    failed: int
    pending: int
    running: int
    superseded: int
    """Jobs it attempted whose result another machine delivered (a shared queue)."""
    attempts: int
    status: str
    busy_fraction: float | None
    first_start: float | None
    finish: float | None
    active_seconds: float
    share_planned: float | None
    share_done: float | None
    throughput_per_hour: float | None
    idle_at_end_seconds: float | None


@dataclass(frozen=True)
class LowerBound:
    seconds: float | None
    work: float
    """Seconds of a speed-1 core."""
    capacity: float
    """Sum of speed x workers."""
    work_over_capacity: float | None
    longest_job: float | None
    longest_job_id: str | None


@dataclass(frozen=True)
class MeasuredSpeed:
    name: str
    speed: float
    cores: int
    done_attempts: int
    mean_seconds: float | None
    measured: float | None


@dataclass(frozen=True)
class Speeds:
    comparable: bool
    """Whether the plan's shares are random samples (quota, rendezvous), so means compare."""
    machines: list[MeasuredSpeed]
    suggested: dict[str, list[float]]
    """A machines.json for the next run: measured speeds, machines.json's cores."""


@dataclass(frozen=True)
class FailureGroup:
    outcome: str
    message: str
    """The error's last line, or how the worker died."""
    attempts: list[Attempt]


@dataclass(frozen=True)
class MovedJob:
    """A job attempted on more than one machine (reclaimed, or run twice)."""

    job_id: str
    machines: list[tuple[str, int, str]]
    """(machine, attempts there, the job's state there after the last one)."""


@dataclass(frozen=True)
class Figures:
    digest: str
    strategy: str
    in_progress: bool
    start: float | None
    end: float | None
    makespan: float | None
    lower_bound: LowerBound
    idle_machine_hours: float | None
    idle_core_hours: float | None
    machines: list[MachineFigures]
    speeds: Speeds
    failures: list[FailureGroup]
    moved: list[MovedJob]
    absent: dict[str, int] = field(default_factory=dict)
    attempts: int = 0


def compute(facts: RunFacts) -> Figures:
    """Every figure of the report (see the module's docstring for the definitions)."""
    attempts = list(facts.attempts)
    in_progress = any(m.in_progress for m in facts.machines)
    start = min((a.started for a in attempts), default=None)
    end = max((a.ended for a in attempts), default=None)
    total_planned = 0 if "" in facts.plan else sum(facts.plan.values())  # a shared queue's run plans no shares: none to set beside the done ones
    counts = [_job_counts(m) for m in facts.machines]  # by folder: a machine run in two folders has two rows, each its own
    total_done = sum(c["done"] for c in counts)
    machines = [_machine(m, c, end, in_progress, total_planned, total_done) for m, c in zip(facts.machines, counts)]
    idle = [(f.idle_at_end_seconds, f.workers) for f in machines if f.idle_at_end_seconds is not None]
    return Figures(
        digest=facts.digest,
        strategy=facts.strategy,
        in_progress=in_progress,
        start=start,
        end=end,
        makespan=None if start is None or end is None else end - start,
        lower_bound=lower_bound(facts.machines),
        idle_machine_hours=None if in_progress or not idle else sum(s for s, _ in idle) / 3600,
        idle_core_hours=None if in_progress or not idle else sum(s * w for s, w in idle) / 3600,
        machines=machines,
        speeds=measured_speeds(facts),
        failures=failure_groups(attempts),
        moved=moved_jobs(facts.machines),
        absent=dict(facts.absent),
        attempts=len(attempts),
    )


def _job_counts(machine: MachineFacts) -> dict[str, int]:
    """Jobs by their state after their latest attempt; jobs never tried are pending."""
    latest: dict[str, Attempt] = {}
    for a in machine.attempts:
        if a.job_id not in latest or a.attempt >= latest[a.job_id].attempt:
            latest[a.job_id] = a
    states = Counter(a.state for a in latest.values())
    counts = {state: states[state] for state in ("done", "failed", "running", "superseded")}
    counts["pending"] = max(0, machine.held - sum(counts.values()))
    return counts


def _machine(m: MachineFacts, counts: dict[str, int], end: float | None, in_progress: bool, total_planned: int, total_done: int) -> MachineFigures:
    busy = sum(a.duration for a in m.attempts)
    available = sum(r.workers * max(0.0, r.end - r.started) for r in m.runs)
    active = sum(max(0.0, r.end - r.started) for r in m.runs)
    done_attempts = sum(1 for a in m.attempts if a.outcome == "done")
    finish = None if m.in_progress or not m.attempts else max(a.ended for a in m.attempts)
    return MachineFigures(
        name=m.name,
        speed=m.speed,
        cores=m.cores,
        workers=m.workers,
        planned=m.planned,
        held=m.held,
        done=counts["done"],
        failed=counts["failed"],
        pending=counts["pending"],
        running=counts["running"],
        superseded=counts["superseded"],
        attempts=len(m.attempts),
        status=m.status,
        busy_fraction=busy / available if available > 0 else None,
        first_start=min((a.started for a in m.attempts), default=None),
        finish=finish,
        active_seconds=active,
        share_planned=m.planned / total_planned if total_planned else None,
        share_done=counts["done"] / total_done if total_done else None,
        throughput_per_hour=3600 * done_attempts / active if active > 0 else None,
        idle_at_end_seconds=None if in_progress or finish is None or end is None else end - finish,
    )


def lower_bound(machines: list[MachineFacts]) -> LowerBound:
    """The makespan no split of this work could beat (see the module's docstring)."""
    ran = [m for m in machines if m.runs]
    work = sum(a.duration * m.speed for m in ran for a in m.attempts)
    capacity = sum(m.speed * m.workers for m in ran)
    chains: dict[str, float] = {}
    for m in ran:
        for a in m.attempts:
            chains[a.job_id] = chains.get(a.job_id, 0.0) + a.duration * m.speed
    fastest = max((m.speed for m in ran), default=0.0)
    longest_id, longest_work = max(chains.items(), key=lambda item: (item[1], item[0]), default=(None, 0.0))
    over_capacity = work / capacity if capacity > 0 and chains else None
    longest = longest_work / fastest if longest_id is not None and fastest > 0 else None
    candidates = [x for x in (over_capacity, longest) if x is not None]
    return LowerBound(max(candidates) if candidates else None, work, capacity, over_capacity, longest, longest_id)


def measured_speeds(facts: RunFacts) -> Speeds:
    """Relative speeds from mean done-attempt durations, scaled to machines.json's capacity."""
    rows = []
    for m in facts.machines:
        count = sum(1 for a in m.attempts if a.outcome == "done")
        total = sum(a.duration for a in m.attempts if a.outcome == "done")  # no list of them: a float and a place each
        mean = total / count if count and total > 0 else None
        rows.append((m, count, mean))
    measured = [(m, mean) for m, _, mean in rows if mean is not None]
    cores = {m.name: m.cores or m.workers for m, _, _ in rows}
    raw = sum(cores[m.name] / mean for m, mean in measured)
    scale = sum(cores[m.name] * m.speed for m, _ in measured) / raw if raw > 0 else 0.0
    speeds = {m.name: scale / mean for m, mean in measured}
    suggested = {name: [float(f"{speeds[name]:.3g}") if name in speeds else speed, cores_json] for name, (speed, cores_json) in sorted(facts.machines_json.items())}
    return Speeds(
        comparable=facts.strategy in RANDOM_SHARES,
        machines=[MeasuredSpeed(m.name, m.speed, cores[m.name], n, mean, speeds.get(m.name)) for m, n, mean in rows],
        suggested=suggested,
    )


def failure_groups(attempts: list[Attempt]) -> list[FailureGroup]:
    """Attempts that ended other than done, grouped by outcome and message; largest first."""
    groups: dict[tuple[str, str], list[Attempt]] = {}
    failed = [a for a in attempts if a.outcome not in ("done", "running")]  # sorted alone: a key of every attempt took 90 bytes each
    for a in sorted(failed, key=lambda a: (a.started, a.machine, a.job_id, a.attempt)):
        groups.setdefault((a.outcome, failure_message(a)), []).append(a)
    ordered = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
    return [FailureGroup(outcome, message, found) for (outcome, message), found in ordered]


def failure_message(a: Attempt) -> str:
    """The error's last line; for a worker that died without one, how it died."""
    if (line := last_line(a.error)) is not None:
        return line
    if a.signal is not None:
        return f"killed by signal {a.signal}{_signal_name(a.signal)}"
    if a.exit_code is not None:
        return f"worker exited with status {a.exit_code}"
    return "no message recorded"


def _signal_name(number: int) -> str:
    try:
        return f" ({signals.Signals(number).name})"
    except ValueError:
        return ""


def moved_jobs(machines: list[MachineFacts]) -> list[MovedJob]:
    """Jobs with attempts on more than one machine, by job id."""
    first: dict[str, str] = {}
    moved: set[str] = set()
    for m in machines:
        for a in m.attempts:
            if first.setdefault(a.job_id, m.name) != m.name:
                moved.add(a.job_id)
    where: dict[str, dict[str, list[Attempt]]] = {job_id: {} for job_id in moved}
    for m in machines:
        for a in m.attempts:
            if a.job_id in where:
                where[a.job_id].setdefault(m.name, []).append(a)
    return [
        MovedJob(job_id, [(name, len(found), max(found, key=lambda a: a.attempt).state) for name, found in sorted(where[job_id].items())])
        for job_id in sorted(where)
    ]


def as_document(figures: Figures, logs: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """The figures as JSON-ready data (``report --json``); attempts of failures in full."""
    doc = asdict(figures)
    doc["failures"] = [
        {
            "outcome": group.outcome,
            "message": group.message,
            "count": len(group.attempts),
            "attempts": [_failed_attempt(a, (logs or {}).get(a.key)) for a in group.attempts],
        }
        for group in figures.failures
    ]
    doc["moved"] = [{"job_id": m.job_id, "machines": [{"machine": n, "attempts": c, "state": s} for n, c, s in m.machines]} for m in figures.moved]
    return doc


def _failed_attempt(a: Attempt, log: list[str] | None) -> dict[str, Any]:
    return {
        "job_id": a.job_id,
        "attempt": a.attempt,
        "machine": a.machine,
        "slot": a.slot,
        "state": a.state,
        "kind": a.kind,
        "started": a.started,
        "seconds": a.duration,
        "exit_code": a.exit_code,
        "signal": a.signal,
        "max_rss": a.max_rss,
        "args": a.args,
        "error": a.error,
        "log": log,
    }
