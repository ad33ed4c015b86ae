"""The result path: every ended attempt goes through one recorder, journal first, then CSV.

An attempt that ends after a quiet spell (no commit for ``max_delay`` seconds) is committed at
once (right after the runner's next dispatch), so slow jobs are durable the moment they end;
attempts ending faster than that are grouped into one commit per ``max_delay`` (or per
``max_group`` attempts), so durability costs little per job however short the jobs. After a
crash, only jobs the runner had not yet heard of or committed run again: those on a worker
(running, or queued and perhaps ended since) and those that ended within the last
``max_delay`` (longer when the runner waits for a core). A job counts as recorded once its
group is committed, and results.csv only ever shows committed rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .clock import SYSTEM_CLOCK, Clock
from .journal import DoneGroup, Ended, Journal, RunningAttempt, result_rows, settled
from .results import ResultsFile

Running = Callable[[], list[RunningAttempt]]
"""What is on a worker now, asked for only when a commit is due."""

HEARTBEAT = 5.0
"""With nothing to record, the journal is still touched this often (``status`` shows it)."""


class Recorder:
    def __init__(
        self,
        journal: Journal,
        results: ResultsFile,
        run: int,
        *,
        clock: Clock = SYSTEM_CLOCK,
        max_group: int = 4096,
        max_delay: float = 0.05,
        on_commit: Callable[[Iterable[tuple[str, str]]], None] | None = None,
    ) -> None:
        self.journal = journal
        self.results = results
        self.run = run
        self.max_group = max_group
        self.max_delay = max_delay
        self.on_commit = on_commit
        """Told (job id, state) of every commit's attempts once they are durable (a shared queue
        makes them final)."""
        self._clock = clock
        self._attempts: list[Ended] = []
        self._count = 0
        """Attempts waiting in ``_attempts`` (a done group holds many)."""
        self._oldest = 0.0
        self._committed_at = clock.monotonic()
        self._committed_running: list[RunningAttempt] = []
        self._at_once = False
        """The waiting attempts are to be committed at the next flush_if_due: they ended a quiet
        spell (a slow job is durable the moment the runner hears of it), or fill a group."""

    def add(self, attempts: Iterable[Ended]) -> None:
        """Attempts that ended (one by one, or done groups), committed by the next flush_if_due:
        at once if they end a quiet spell or fill a group, else within ``max_delay``."""
        now = self._clock.monotonic()
        if not self._attempts:
            self._oldest = now
            self._at_once = now - self._committed_at >= self.max_delay
        for record in attempts:
            self._attempts.append(record)
            self._count += len(record.job_ids) if isinstance(record, DoneGroup) else 1
        self._at_once = self._at_once or self._count >= self.max_group

    def due_in(self) -> float:
        """Seconds until waiting attempts must be committed (infinite when none wait)."""
        if not self._attempts:
            return float("inf")
        if self._at_once:
            return 0.0
        return max(0.0, self._oldest + self.max_delay - self._clock.monotonic())

    def flush_if_due(self, running: Running) -> None:
        """Commit attempts that end a quiet spell, fill a group or are old enough; or a change in
        the running jobs, or a heartbeat. The runner calls it once the workers have their next
        jobs: a commit of a group of short jobs takes tens of milliseconds."""
        now = self._clock.monotonic()
        if self._attempts:
            due = self._at_once or self._oldest + self.max_delay <= now  # the very expressions due_in() waits for
        else:
            due = now - self._committed_at >= HEARTBEAT or (
                now - self._committed_at >= self.max_delay and running() != self._committed_running
            )
        if due:
            self.flush(running)

    def flush(self, running: Running) -> None:
        attempts, now_running = self._attempts, running()
        self.journal.commit(self.run, attempts, now_running, self._clock.time())
        self._attempts, self._count, self._at_once = [], 0, False
        self._committed_at, self._committed_running = self._clock.monotonic(), now_running
        if self.on_commit is not None and attempts:  # first: a host killed between its commit and this loses its claims' results to others
            self.on_commit(settled(attempts))
        self.results.append(result_rows(attempts))
