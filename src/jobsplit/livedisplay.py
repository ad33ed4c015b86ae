"""The live view of a run on a terminal: an overall bar and a line per running job.

In a module of its own, imported only when a terminal shows it: rich's live machinery costs a
noticeable part of the start-up of every run that prints plain lines.
"""

from __future__ import annotations

import os

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from .display import Snapshot, duration
from .text import rate_text


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

    def suspend(self) -> None:
        """Show the cursor the live view hides, written straight to the terminal: the handler of
        Ctrl-Z may run while rich is midway through a render, its buffer not yet written."""
        self._cursor(b"\x1b[?25h")

    def resume(self) -> None:
        self._cursor(b"\x1b[?25l")

    def close(self) -> None:
        self._live.stop()

    def _cursor(self, control: bytes) -> None:
        try:
            os.write(self.console.file.fileno(), control)
        except (OSError, ValueError):
            pass  # no terminal behind the console after all


def render(s: Snapshot) -> RenderableType:
    """The live view of one snapshot."""
    overall = Table.grid(padding=(0, 1))
    overall.add_row(
        Text(s.machine, style="bold"),
        ProgressBar(total=max(s.total, 1), completed=s.done + s.failed, width=30),
        Text(f"{s.done}/{s.total} done"),
        Text(f"{s.failed} failed", style="red" if s.failed else "dim"),
        Text(f"{rate_text(s.rate)} jobs/s"),
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
