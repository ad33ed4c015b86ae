"""The result path: every ended attempt goes through one recorder, journal first, then CSV.

A record that arrives after a quiet spell (no commit for ``max_delay`` seconds) is committed
at once, so slow jobs are durable the moment they end; records arriving faster than that
are grouped into one commit per ``max_delay`` (or per ``max_group`` records), so durability
costs little per job however short the jobs. After a crash, only jobs that were running, or
that ended within the last ``max_delay``, run again. A job counts as recorded once its
group is committed, and results.csv only ever shows committed rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from .results import ResultsFile
from .state import DONE, Journal, Record

HEARTBEAT = 5.0
"""With nothing to record, the journal is still touched this often (``status`` shows it)."""


class Recorder:
    def __init__(
        self,
        journal: Journal,
        results: ResultsFile,
        run: int,
        running: Callable[[], set[int]],
        *,
        max_group: int = 4096,
        max_delay: float = 0.05,
    ) -> None:
        self.journal = journal
        self.results = results
        self.run = run
        self.max_group = max_group
        self.max_delay = max_delay
        self._running = running
        self._records: list[Record] = []
        self._oldest = 0.0
        self._committed_at = time.monotonic()
        self._committed_running: set[int] = set()

    def add(self, records: Iterable[Record]) -> None:
        now = time.monotonic()
        if not self._records:
            self._oldest = now
        self._records.extend(records)
        if len(self._records) >= self.max_group or now - self._committed_at >= self.max_delay:
            self.flush()

    def due_in(self) -> float:
        """Seconds until waiting records must be committed (infinite when none wait)."""
        if not self._records:
            return float("inf")
        return max(0.0, self._oldest + self.max_delay - time.monotonic())

    def flush_if_due(self) -> None:
        """Commit records old enough, or a change in the running jobs, or a heartbeat."""
        now = time.monotonic()
        if self._records:
            due = now - self._oldest >= self.max_delay
        else:
            due = now - self._committed_at >= HEARTBEAT or (
                now - self._committed_at >= self.max_delay and self._running() != self._committed_running
            )
        if due:
            self.flush()

    def flush(self) -> None:
        records, running = self._records, self._running()
        self.journal.commit(self.run, records, running)
        self.results.append(r[6] for r in records if r[1] == DONE)  # type: ignore[misc]
        self._records = []
        self._committed_at, self._committed_running = time.monotonic(), running
