"""The run's console: a plain line every 10 s (the live view for terminals is ``livedisplay``).

Displays are pure renderers of a :class:`Snapshot`; all times come from the snapshot, so a
test can drive them with a fake clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from rich.console import Console

from .text import rate_text

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
        """Seconds to the share's end at this run's pace, the running jobs' reported progress
        counted as work done: jobs of hours had no ETA until the first ended, and then one that
        grew while the last job went on (its own progress counted for nothing)."""
        underway = sum(min(1.0, max(0.0, job.fraction)) for job in self.running)
        left = max(0.0, self.total - self.done - self.failed - underway)
        if not left and not self.running:
            return 0.0  # a finished share started again: "ETA ?" said it could not tell
        pace = (self.done_this_run + underway) / self.elapsed if self.elapsed > 0 else 0.0
        return left / pace if pace > 0 else None


class Display(Protocol):
    def update(self, snapshot: Snapshot) -> None: ...

    def message(self, text: str) -> None:
        """A line for the record (a failure, a notice), kept above any live area."""
        ...

    def suspend(self) -> None:
        """The run stops for a while (Ctrl-Z): the terminal goes back to the shell as it was."""
        ...

    def resume(self) -> None: ...

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
        f"{rate_text(s.rate)} jobs/s, elapsed {duration(s.elapsed)}, ETA {duration(s.eta)}"
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

    def suspend(self) -> None:
        pass

    def resume(self) -> None:
        pass

    def close(self) -> None:
        pass
