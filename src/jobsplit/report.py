"""``jobsplit report``: one self-contained HTML page that shows a run at a glance.

A timeline (one lane per machine and worker slot, one bar per attempt coloured by how it
ended, a tooltip per bar), the figures per machine, the makespan against its lower bound,
the cost of imbalance, failures grouped by cause with their last log lines, and the machines'
measured speeds with a suggested machines.json. Inline SVG and CSS only (no script, no
network): it opens offline in any browser, and mails or archives as one file.

Large runs stay small: past 10,000 attempts (or 2,000 on one lane) neighbouring
bars that would be drawn within a few pixels are drawn as one, coloured by the worst outcome
among them, with a tooltip that counts them, so 100,000 jobs make well under a megabyte.
"""

from __future__ import annotations

import argparse
import html
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from itertools import compress, islice
from operator import attrgetter, eq
from pathlib import Path

from rich.console import Console

from .console import say_notice
from .digest import format_digest
from .display import duration
from .errors import UserError
from .figures import WORST_FIRST, FailureGroup, Figures, MachineFigures, as_document, compute, failure_message
from .outdir import repeated_machine_sentence, repeated_machines
from .runfacts import KINDS, Attempt, RunFacts, last_log_lines, load, read_args
from .text import plural, rate_text, size_text
from .timefmt import utc_timestamp
from .tooloutput import tool_output

_VISIBLE = {code: 0x2400 + code for code in range(32) if code not in (9, 10, 13)} | {0x7F: 0x2421} | dict.fromkeys([*range(0xD800, 0xE000), 0xFFFE, 0xFFFF], 0xFFFD)
"""Control characters as their pictures (U+2400 on), and what XML has no place for (a lone
surrogate, U+FFFE, U+FFFF) as U+FFFD: a job's output with a NUL or a BEL made the report's
inline SVG malformed XML."""


def escape(text: str) -> str:
    return html.escape(text).translate(_VISIBLE)


NAME = "report"
HELP = "write one self-contained HTML report of a run: timeline, figures, failures, measured speeds"

DETAIL_LIMIT = 10_000
"""Attempts drawn one bar each when the run has no more (and no lane has more than LANE_LIMIT)."""
LANE_LIMIT = 2_000
MERGE_PX = 3.0
"""Past the limits, a bar narrower than this (pixels) takes in its neighbours on the lane."""
SHOWN = 20
"""Failed attempts per group shown in full, with their last log lines; the rest by id."""
LISTED = 200
ARGS_SHOWN = 200
"""Characters of a job's arguments in a tooltip."""

LABEL_W, PLOT_W, RIGHT_W = 150, 1010, 20
AXIS_H, MACHINE_GAP = 28, 10
COLOURS = {
    "done": "#4c78a8",
    "retried": "#f2a900",
    "error": "#d62728",
    "crashed": "#7b3294",
    "timeout": "#e377c2",
    "interrupted": "#9a9a9a",
    "running": "#2ca02c",
}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="an output root, or machine folders (DIR/<machine>)")
    parser.add_argument("-o", "--output", type=Path, metavar="FILE", help="the HTML file to write (e.g. report.html), - for stdout")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object on stdout")


def run(args: argparse.Namespace, console: Console) -> int:
    if args.output is None and not args.json:
        raise UserError("say where the report goes: -o report.html (or --json for the figures on stdout)")
    if args.json and str(args.output) == "-":
        raise UserError("--json and -o - would both write to stdout; write the page to a file (-o report.html), or leave --json out")
    facts = load(args.dirs, done_args=False)  # a done attempt's arguments are read again for the few bars that show them
    if "" not in facts.plan:  # a static plan (a shared queue's hosts of one name claim different jobs)
        for name, folders in repeated_machines((m.name, m.path) for m in facts.machines).items():
            console.print(repeated_machine_sentence(name, folders), markup=False, soft_wrap=True)
    figures = compute(facts)
    logs = failure_logs(facts, figures, lambda message: say_notice(console, message))
    if args.json:
        print(json.dumps(as_document(figures, logs)))
    if args.output is not None:
        with tool_output(args.output) as f:
            f.writelines(render(facts, figures, logs))
        if str(args.output) == "-":
            return 0
        size = args.output.stat().st_size
        console.print(f"wrote {args.output} ({size:,} bytes): {plural(figures.attempts, 'attempt')} on {plural(len(facts.machines), 'machine')}", markup=False, soft_wrap=True)
    return 0


def failure_logs(facts: RunFacts, figures: Figures, say: Callable[[str], None] | None = None) -> dict[str, list[str]]:
    """The last log lines of the failed attempts the report shows in full, by attempt key;
    ``say`` hears of damaged stretches of the logs, skipped."""
    wanted: dict[str, list[Attempt]] = {}
    for group in figures.failures:
        for a in group.attempts[:SHOWN]:
            wanted.setdefault(a.machine, []).append(a)
    logs: dict[str, list[str]] = {}
    for machine in facts.machines:
        if machine.name in wanted:
            logs.update(last_log_lines(machine, wanted[machine.name], say=say))
    return logs


# --- the page -------------------------------------------------------------------------------


def render(facts: RunFacts, figures: Figures, logs: dict[str, list[str]]) -> Iterator[str]:
    """The HTML page, in pieces."""
    title = f"jobsplit report {format_digest(facts.digest)}"
    yield (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{_CSS}</style></head>\n<body>\n"
    )
    yield _header(facts, figures)
    yield _summary(figures)
    yield '<section id="timeline"><h2>Timeline</h2>\n'
    if figures.start is not None:
        yield f"<p>Time runs from the first attempt's start, {escape(_when(figures.start))} UTC.</p>\n"
    yield _legend()
    yield from timeline_svg(facts, figures)
    yield "</section>\n"
    yield _machines_table(figures)
    yield _speeds(figures)
    yield _failures(figures, logs)
    yield _moved(figures)
    yield _definitions()
    yield "</body></html>\n"


def _header(facts: RunFacts, figures: Figures) -> str:
    state = "in progress (what the journals knew at their last commit)" if figures.in_progress else "ended"
    span = f"{_when(figures.start)} to {_when(figures.end)}" if figures.start is not None else "no attempt yet"
    absent = "".join(f"<li>{escape(name)}: {count:,} planned jobs, no folder given</li>" for name, count in sorted(figures.absent.items()))
    return (
        f"<header><h1>Run report</h1>\n<p>Digest <code>{escape(format_digest(facts.digest))}</code>, strategy <b>{escape(facts.strategy or '?')}</b>, "
        f"{plural(len(facts.machines), 'machine folder')}, {plural(figures.attempts, 'attempt')}, {span}: <b>{state}</b>. "
        f"Made {escape(_when(time.time()))} by jobsplit report.</p>\n"
        + (f"<p class=warn>Machines of the plan missing here:</p><ul>{absent}</ul>\n" if absent else "")
        + "</header>\n"
    )


def _summary(f: Figures) -> str:
    lb = f.lower_bound
    ratio = f"{f.makespan / lb.seconds:.2f}×" if f.makespan is not None and lb.seconds else "–"
    done = sum(m.done for m in f.machines)
    planned = sum(m.planned for m in f.machines) + sum(f.absent.values())
    cards = [
        ("Makespan" + (" so far" if f.in_progress else ""), _dur(f.makespan), "first attempt's start to last attempt's end"),
        ("Lower bound", _dur(lb.seconds), f"work / capacity {_dur(lb.work_over_capacity)}, longest job {_dur(lb.longest_job)}"),
        ("Makespan / bound", ratio, "1× would be a perfect split"),
        ("Idle at the end", _hours(f.idle_machine_hours, "machine-hours"), f"{_hours(f.idle_core_hours, 'core-hours')}: machines done before the last one"),
        ("Jobs done", f"{done:,} / {planned:,}", f"{sum(m.failed for m in f.machines):,} failed, {sum(m.pending for m in f.machines):,} pending, {sum(m.running for m in f.machines):,} running"),
    ]
    items = "".join(f'<div class="card"><div class="k">{escape(k)}</div><div class="v">{escape(v)}</div><div class="n">{escape(n)}</div></div>' for k, v, n in cards)
    return f'<section id="summary">{items}</section>\n'


def _legend() -> str:
    items = "".join(f'<span><i style="background:{COLOURS[k]}"></i>{k}</span>' for k in KINDS)
    return f'<p class="legend">{items}<span><i class="idle-key"></i>idle at the end</span> Hover a bar for the job; retried = failed, then run again.</p>\n'


def _machines_table(f: Figures) -> str:
    head = ["Machine", "Speed × cores", "Workers", "Planned", "Held", "Done", "Failed", "Pending", "Running", "Attempts",
            "Busy", "Finish", "Idle at end", "Share planned → done", "Jobs / hour", "Last run"]  # fmt: skip
    rows = []
    for m in f.machines:
        finish = f"{_when(m.finish)} (+{_dur(m.finish - f.start)})" if m.finish is not None and f.start is not None else "–"
        cells = [m.name, f"{m.speed:g} × {m.cores}", m.workers, m.planned, m.held, m.done, m.failed, m.pending, m.running, m.attempts,
                 _pct(m.busy_fraction), finish, _dur(m.idle_at_end_seconds), f"{_pct(m.share_planned)} → {_pct(m.share_done)}",
                 "–" if m.throughput_per_hour is None else rate_text(m.throughput_per_hour), m.status]  # fmt: skip
        rows.append("<tr>" + "".join(f"<td>{escape(_cell(c))}</td>" for c in cells) + "</tr>")
    return f'<section id="machines"><h2>Machines</h2><table><tr>{"".join(f"<th>{h}</th>" for h in head)}</tr>{"".join(rows)}</table></section>\n'


def _speeds(f: Figures) -> str:
    s = f.speeds
    rows = []
    for m in s.machines:
        ratio = f"{m.measured / m.speed:.2f}" if m.measured is not None and m.speed else "–"
        cells = [m.name, f"{m.speed:g}", m.cores, m.done_attempts, _dur(m.mean_seconds), "–" if m.measured is None else f"{m.measured:.3g}", ratio]
        rows.append("<tr>" + "".join(f"<td>{escape(_cell(c))}</td>" for c in cells) + "</tr>")
    note = (
        "Each share of this plan is a random sample of the pool, so a machine's mean job time measures its speed."
        if s.comparable
        else f"The shares of a {escape(f.strategy or 'this')} plan are not random samples of the pool, so mean job times do not compare across machines: read these speeds with care."
    )
    suggested = "{\n" + ",\n".join(f"    {json.dumps(name)}: {json.dumps(entry)}" for name, entry in s.suggested.items()) + "\n}"
    return (
        '<section id="speeds"><h2>Measured speeds</h2>'
        f'<p class="{"" if s.comparable else "warn"}">{note} Measured speed = 1 / mean done-attempt time, scaled so that the '
        "measured machines keep machines.json's total capacity (cores × speed).</p>"
        "<table><tr><th>Machine</th><th>machines.json speed</th><th>Cores</th><th>Done attempts</th><th>Mean time</th><th>Measured speed</th><th>Measured / json</th></tr>"
        + "".join(rows)
        + f"</table><p>A machines.json for the next run:</p><pre class=json>{escape(suggested)}</pre></section>\n"
    )


def _failures(f: Figures, logs: dict[str, list[str]]) -> str:
    if not f.failures:
        return '<section id="failures"><h2>Failures</h2><p>Every attempt ended done.</p></section>\n'
    parts = ['<section id="failures"><h2>Failures</h2><p>Attempts that did not end done, by outcome and by the last line of their error.</p>']
    for i, group in enumerate(f.failures):
        parts.append(_failure_group(group, logs, opened=i < 5))
    parts.append("</section>\n")
    return "".join(parts)


def _failure_group(group: FailureGroup, logs: dict[str, list[str]], *, opened: bool) -> str:
    machines = Counter(a.machine for a in group.attempts)
    where = ", ".join(f"{name} ({count})" for name, count in sorted(machines.items()))
    rows = []
    for a in group.attempts[:SHOWN]:
        died = f"signal {a.signal}" if a.signal is not None else (f"exit {a.exit_code}" if a.exit_code is not None else "–")
        log = logs.get(a.key)
        log_html = f"<pre>{escape(chr(10).join(log))}</pre>" if log else '<span class="muted">no log lines found</span>'
        error = f"<pre>{escape(a.error)}</pre>" if a.error and "\n" in a.error.strip() else ""
        rows.append(
            f"<tr><td><code>{a.job_id}</code></td><td>{a.attempt}</td><td>{escape(a.machine)}/{a.slot}</td>"
            f'<td><span class="badge" style="background:{COLOURS[a.kind]}">{a.kind}</span> {escape(a.state)}</td>'
            f"<td>{died}</td><td>{_bytes(a.max_rss)}</td><td>{_dur(a.duration)}</td><td><code>{escape(_short(a.args or ''))}</code></td></tr>"
            f'<tr class="log"><td colspan="8">{error}{log_html}</td></tr>'
        )
    rest = group.attempts[SHOWN:]
    more = ""
    if rest:
        listed = " ".join(f"{a.job_id}:{a.attempt}" for a in rest[:LISTED])
        extra = f" and {len(rest) - LISTED:,} more" if len(rest) > LISTED else ""
        more = f'<p class="ids">Also: <code>{listed}</code>{extra}</p>'
    return (
        f'<details{" open" if opened else ""}><summary><span class="badge" style="background:{COLOURS[group.outcome]}">{group.outcome}</span> '
        f"<b>{escape(group.message)}</b>: {plural(len(group.attempts), 'attempt')} on {escape(where)}</summary>"
        "<table><tr><th>Job</th><th>Attempt</th><th>Machine/slot</th><th>Kind, state after</th><th>Died by</th><th>Peak memory</th><th>Time</th><th>Arguments</th></tr>"
        + "".join(rows)
        + f"</table>{more}</details>"
    )


def _moved(f: Figures) -> str:
    if not f.moved:
        return ""
    rows = "".join(
        f"<tr><td><code>{m.job_id}</code></td><td>{escape(', '.join(f'{name}: {count} attempts, then {state}' for name, count, state in m.machines))}</td></tr>"
        for m in f.moved[:LISTED]
    )
    more = f"<p>and {len(f.moved) - LISTED:,} more</p>" if len(f.moved) > LISTED else ""
    return f'<section id="moved"><h2>Jobs attempted on more than one machine</h2><table><tr><th>Job</th><th>Where</th></tr>{rows}</table>{more}</section>\n'


def _definitions() -> str:
    return (
        '<section id="definitions"><h2>How the figures are made</h2><ul>'
        "<li><b>Busy</b>: time attempts took on a machine / (workers × the length of its runs).</li>"
        "<li><b>Lower bound</b>: the larger of all work (attempt time × machines.json speed) / total capacity (speed × workers), "
        "and the longest job's work on the fastest machine. No split of the same work could finish sooner.</li>"
        "<li><b>Idle at the end</b>: from each machine's last attempt to the run's last one; the cost of an uneven split.</li>"
        "<li><b>Measured speed</b>: 1 / the machine's mean done-attempt time, scaled to machines.json's total capacity.</li>"
        "</ul></section>\n"
    )


# --- the timeline -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bar:
    """What is drawn as one rectangle: one attempt, or neighbours drawn together."""

    start: float
    end: float
    kind: str
    attempts: tuple[Attempt, ...]


def lane_bars(attempts: list[Attempt], seconds_per_px: float, *, aggregate: bool) -> list[Bar]:
    """The bars of one lane (attempts by start time).

    Aggregating, an attempt joins the bar before it when it starts within a pixel of that
    bar's end and either has the same kind as all of the bar or the bar is still narrower
    than MERGE_PX; a mixed bar takes the worst kind in it (WORST_FIRST), so a failure among
    thousands stays visible. A lane then holds about as many bars as pixels, at most.
    """
    if not aggregate:
        return [Bar(a.started, a.ended, a.kind, (a,)) for a in attempts]
    bars: list[Bar] = []
    group: list[Attempt] = []
    uniform: str | None = None
    group_end = 0.0
    for a in attempts:
        if group:
            near = a.started - group_end <= seconds_per_px
            narrow = group_end - group[0].started < MERGE_PX * seconds_per_px
            if near and (narrow or a.kind == uniform):
                group.append(a)
                uniform = uniform if a.kind == uniform else None
                group_end = max(group_end, a.ended)
                continue
            bars.append(_bar(group, group_end))
        group, uniform, group_end = [a], a.kind, a.ended
    if group:
        bars.append(_bar(group, group_end))
    return bars


def _bar(group: list[Attempt], end: float) -> Bar:
    kinds = {a.kind for a in group}
    kind = next(k for k in WORST_FIRST if k in kinds)
    return Bar(group[0].started, end, kind, tuple(group))


def timeline_svg(facts: RunFacts, figures: Figures) -> Iterator[str]:
    """The Gantt chart: a lane per machine and worker slot (``data-lane="machine/slot"``),
    a rectangle per attempt (``data-attempt="job_id:attempt"``) or per group of attempts
    (``data-attempts="N"``), with a ``<title>`` tooltip each."""
    lanes = [(m, slot) for m in facts.machines for slot in range(m.workers)]
    if not lanes or figures.start is None or figures.end is None:
        yield "<p>No attempt has started yet.</p>\n"
        return
    by_lane: dict[tuple[str, int], list[Attempt]] = {}
    for a in facts.attempts:
        by_lane.setdefault((a.machine, a.slot), []).append(a)
    for found in by_lane.values():
        in_time_order(found)
    aggregate = figures.attempts > DETAIL_LIMIT or any(len(found) > LANE_LIMIT for found in by_lane.values())
    lane_h = 14 if len(lanes) <= 64 else 6
    bar_h = lane_h - 2
    height = AXIS_H + len(lanes) * lane_h + len(facts.machines) * MACHINE_GAP + 6
    start = figures.start
    span = max(figures.end - start, 1e-3)
    per_px = span / PLOT_W

    def x(t: float) -> float:
        return LABEL_W + (t - start) / per_px

    width = LABEL_W + PLOT_W + RIGHT_W
    yield (
        f'<svg class="gantt" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'role="img" aria-label="timeline of every attempt">\n'
    )
    yield '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="3" height="6" fill="#f3c4c4"/></pattern></defs>\n'
    yield from _axis(span, height, x, start)
    finish = {m.name: m for m in figures.machines}
    y = AXIS_H
    for machine in facts.machines:
        block = machine.workers * lane_h
        mf: MachineFigures = finish[machine.name]
        top = y
        yield f'<text class="machine" x="4" y="{y + min(block, lane_h) - 3}">{escape(machine.name)}</text>\n'
        bars = [lane_bars(by_lane.get((machine.name, slot), []), per_px, aggregate=aggregate) for slot in range(machine.workers)]
        args = _args_shown(facts, machine.name, bars)
        for slot, lane in enumerate(bars):
            label = f'<text class="slot" x="{LABEL_W - 6}" y="{bar_h - 2}">{slot}</text>' if lane_h >= 10 else ""
            yield f'<g data-lane="{escape(machine.name)}/{slot}" transform="translate(0 {y})">{label}<rect class="lane" x="{LABEL_W}" width="{PLOT_W}" height="{bar_h}"/>'
            for bar in lane:
                yield _rect(bar, x, bar_h, args)
            yield "</g>\n"
            y += lane_h
        if mf.idle_at_end_seconds and mf.finish is not None:
            yield (f'<rect class="idle" x="{x(mf.finish):.1f}" y="{top}" width="{x(figures.end) - x(mf.finish):.1f}" height="{block - 2}" fill="url(#hatch)">'
                   f"<title>{escape(machine.name)} idle at the end: {_dur(mf.idle_at_end_seconds)} × {plural(machine.workers, 'worker')}</title></rect>\n")  # fmt: skip
        y += MACHINE_GAP
    yield "</svg>\n"


def _args_shown(facts: RunFacts, name: str, bars: list[list[Bar]]) -> dict[str, str]:
    """The arguments of the attempts drawn one to a bar on a machine's lanes that were loaded
    without them, read again from the journal of each folder of that machine (a machine in two
    folders draws the attempts of both on its lanes; a job's arguments are the same in each)."""
    wanted = [bar.attempts[0] for lane in bars for bar in lane if len(bar.attempts) == 1 and bar.attempts[0].args is None]
    found: dict[str, str] = {}
    for machine in facts.machines:
        if wanted and machine.name == name and not machine.done_args:
            for key, text in read_args(machine, wanted).items():
                found.setdefault(key, text)
    return found


def _rect(bar: Bar, x: Callable[[float], float], height: int, args: Mapping[str, str]) -> str:
    """A bar's rectangle; ``args``: the arguments of attempts loaded without them, by key."""
    left = x(bar.start)
    width = max(x(bar.end) - left, 1.0)
    if len(bar.attempts) == 1:
        a = bar.attempts[0]
        tip = f"{a.job_id} attempt {a.attempt}: {a.kind}, {_dur(a.duration)}, peak memory {_bytes(a.max_rss)}\nargs {_short(a.args or args.get(a.key) or '?')}\n{_when(a.started)} to {_when(a.ended)}"
        if a.outcome not in ("done", "running"):
            tip += f"\n{failure_message(a)}"
        data = f'data-attempt="{a.key}"'
    else:
        counts = Counter(a.kind for a in bar.attempts)
        listed = ", ".join(f"{counts[k]:,} {k}" for k in KINDS if counts[k])
        tip = f"{len(bar.attempts):,} attempts ({listed}) drawn as one bar, {_when(bar.start)} to {_when(bar.end)}"
        data = f'data-attempts="{len(bar.attempts)}"'
    return f'<rect class="{bar.kind}" x="{left:.1f}" width="{width:.1f}" height="{height}" {data}><title>{escape(tip)}</title></rect>'


def in_time_order(attempts: list[Attempt]) -> None:
    """Sort a lane's attempts in place by (start, end, job id, attempt): by start alone, then
    each run of equal starts by the whole key. A key tuple for every attempt of the lane took
    some 80 bytes each at once; a lane read from one journal is in start order already."""
    attempts.sort(key=_STARTED)
    starts = list(map(_STARTED, attempts))
    done = 0
    for at in compress(range(len(starts) - 1), map(eq, starts, islice(starts, 1, None))):  # where the next starts at the same time
        if at < done:
            continue
        end = at + 2
        while end < len(starts) and starts[end] == starts[at]:
            end += 1
        attempts[at:end] = sorted(attempts[at:end], key=lambda a: (a.started, a.ended, a.job_id, a.attempt))
        done = end


_STARTED = attrgetter("started")


def _axis(span: float, height: int, x: Callable[[float], float], start: float) -> Iterator[str]:
    step = next((s for s in _STEPS if span / s <= 10), _STEPS[-1])
    t = 0.0
    while t <= span + 1e-9:
        px = x(start + t)
        yield f'<line class="tick" x1="{px:.1f}" x2="{px:.1f}" y1="{AXIS_H - 6}" y2="{height}"/><text class="axis" x="{px:.1f}" y="{AXIS_H - 10}" text-anchor="middle">{_tick(t)}</text>'
        t += step
    yield "\n"


_STEPS = [s * m for m in (1, 60, 3600) for s in (1, 2, 5, 10, 15, 30)] + [3600 * h for h in (1, 2, 3, 6, 12, 24, 48, 168)]


def _tick(seconds: float) -> str:
    """``0``, ``40s``, ``1m30s``, ``2h``, ``1d6h``: time since the first attempt started."""
    whole = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size:
            count, whole = divmod(whole, size)
            parts.append(f"{count}{unit}")
    return "".join(parts[:2]) or "0"


# --- formatting -----------------------------------------------------------------------------


def _when(t: float | None) -> str:
    """UTC to the second: ``2027-01-15 08:01:30``."""
    return "–" if t is None else utc_timestamp(t).replace("T", " ")[:19]


def _dur(seconds: float | None) -> str:
    return "–" if seconds is None else duration(seconds)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _hours(value: float | None, unit: str) -> str:
    return "–" if value is None else f"{value:,.3g} {unit}"


def _bytes(value: int | None) -> str:
    return "?" if value is None else size_text(value)


def _short(text: str) -> str:
    return text if len(text) <= ARGS_SHOWN else text[:ARGS_SHOWN] + "…"


def _cell(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;margin:20px auto;max-width:1220px;padding:0 12px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:26px 0 8px;border-bottom:1px solid #ddd}
code,pre{font:12px/1.35 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
pre{background:#f6f6f6;padding:6px 8px;overflow-x:auto;margin:4px 0;white-space:pre-wrap;word-break:break-all}
table{border-collapse:collapse;margin:6px 0;font-size:13px}th,td{border:1px solid #ddd;padding:3px 7px;text-align:right;vertical-align:top}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
#summary{display:flex;flex-wrap:wrap;gap:10px;margin:14px 0}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:190px;flex:1}
.card .k{color:#666;font-size:12px}.card .v{font-size:21px;font-weight:600}.card .n{color:#666;font-size:12px}
.legend span{margin-right:12px;white-space:nowrap}.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-2px;border-radius:2px}
.legend i.idle-key{background:repeating-linear-gradient(45deg,#f3c4c4 0 3px,#fff 3px 6px);border:1px solid #e0a0a0}
.gantt{display:block;font-size:11px;max-width:100%;height:auto}
.gantt .lane{fill:#f4f4f4}.gantt .tick{stroke:#ddd}.gantt .axis{fill:#555}.gantt .slot{fill:#888;text-anchor:end}.gantt .machine{font-weight:600;fill:#222}
.gantt rect[data-attempt],.gantt rect[data-attempts]{stroke:#fff;stroke-width:.6}
.gantt rect[data-attempt]:hover,.gantt rect[data-attempts]:hover{stroke:#000;stroke-width:1}
.badge{color:#fff;border-radius:3px;padding:0 5px;font-size:12px}
.warn{color:#9a4d00}.muted{color:#888}.ids{word-break:break-all}
details{margin:6px 0;border:1px solid #e3e3e3;border-radius:4px;padding:4px 8px}summary{cursor:pointer}
tr.log td{text-align:left;background:#fcfcfc}tr.log pre{margin:0}
""" + "".join(f".gantt .{kind}{{fill:{colour}}}" for kind, colour in COLOURS.items())
