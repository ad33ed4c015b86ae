"""The result path: every ended attempt goes through one recorder, journal first, then CSV.

Records are committed in small groups (every ``max_delay`` seconds or ``max_group`` records,
whichever comes first), so durability costs little per job. A job counts as recorded once
its group is committed, and results.csv only ever shows committed rows.
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
        if not self._records:
            self._oldest = time.monotonic()
        self._records.extend(records)
        if len(self._records) >= self.max_group:
            self.flush()

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
