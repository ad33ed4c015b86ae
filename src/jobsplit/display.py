"""The run's console: a live view on a terminal, a plain line every 10 s elsewhere.

Displays are pure renderers of a :class:`Snapshot`; all times come from the snapshot, so a
test can drive them with a fake clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

PLAIN_INTERVAL = 10.0


@dataclass(frozen=True)
class RunningJob:
    job_id: str
    label: str
    fraction: float
    elapsed: float


@dataclass(frozen=True)
class Snapshot:
    machine: str
    total: int
    """Jobs in this machine's share."""
    done: int
    """Done so far, earlier runs included."""
    failed: int
    done_this_run: int
    elapsed: float
    """Seconds since this run started."""
    running: tuple[RunningJob, ...] = ()

    @property
    def rate(self) -> float:
        """Jobs done per second in this run."""
        return self.done_this_run / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        left = self.total - self.done - self.failed
        return left / self.rate if self.rate > 0 else None


class Display(Protocol):
    def update(self, snapshot: Snapshot) -> None: ...

    def message(self, text: str) -> None:
        """A line for the record (a failure, a notice), kept above any live area."""
        ...

    def close(self) -> None: ...


def duration(seconds: float | None) -> str:
    """``1h02m``, ``3m07s``, ``12.3s``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours < 48 else f"{hours // 24}d{hours % 24:02d}h"


def summary_line(s: Snapshot) -> str:
    percent = 100 * s.done / s.total if s.total else 100.0  # failed jobs are not done
    return (
        f"{s.machine}: {s.done}/{s.total} done ({percent:.1f}%), {s.failed} failed, {len(s.running)} running, "
        f"{s.rate:.3g} jobs/s, elapsed {duration(s.elapsed)}, ETA {duration(s.eta)}"
    )


class PlainDisplay:
    """For logs and pipes: one line at most every ``interval`` seconds."""

    def __init__(self, console: Console, interval: float = PLAIN_INTERVAL) -> None:
        self.console = console
        self.interval = interval
        self._next = 0.0

    def update(self, snapshot: Snapshot) -> None:
        if snapshot.elapsed >= self._next:
            self._next = snapshot.elapsed + self.interval
            self.console.print(summary_line(snapshot), markup=False, highlight=False, soft_wrap=True)

    def message(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def close(self) -> None:
        pass


class LiveDisplay:
    """For a terminal: an overall bar for this machine and one line per running job."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._live = Live(console=console, auto_refresh=False, transient=False, redirect_stdout=False, redirect_stderr=False)
        self._live.start()

    def update(self, snapshot: Snapshot) -> None:
        self._live.update(render(snapshot), refresh=True)

    def message(self, text: str) -> None:
        self._live.console.print(escape(text), highlight=False, soft_wrap=True)

    def close(self) -> None:
        self._live.stop()


def render(s: Snapshot) -> RenderableType:
    """The live view of one snapshot."""
    overall = Table.grid(padding=(0, 1))
    overall.add_row(
        Text(s.machine, style="bold"),
        ProgressBar(total=max(s.total, 1), completed=s.done + s.failed, width=30),
        Text(f"{s.done}/{s.total} done"),
        Text(f"{s.failed} failed", style="red" if s.failed else "dim"),
        Text(f"{s.rate:.3g} jobs/s"),
        Text(f"ETA {duration(s.eta)}"),
        Text(f"elapsed {duration(s.elapsed)}", style="dim"),
    )
    if not s.running:
        return overall
    jobs = Table.grid(padding=(0, 1))
    for job in s.running:
        jobs.add_row(
            Text(job.job_id[:12], style="cyan"),
            ProgressBar(total=1.0, completed=job.fraction, width=20),
            Text(f"{100 * job.fraction:3.0f}%"),
            Text(duration(job.elapsed), style="dim"),
            Text(job.label, overflow="ellipsis", no_wrap=True),
        )
    return Group(overall, jobs)
