"""Which failures a run shows on its console: the first few in full, then each new kind once.

A run whose jobs all fail alike printed every failure: 20,000 tracebacks, 14 MB of terminal
text that buried the first and most useful one, and 0.7 ms of the runner's time each on a live
display (16.5 s for 20,000 no-op jobs that raise, 1.9 s when only the first are shown). The log
and the journal keep every failure as before; the console shows the first ``IN_FULL`` failed
attempts, then the first of each kind it has not shown (up to ``KINDS``), and counts the rest,
which the run's last lines name with the log that holds them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .text import last_line, plural

IN_FULL = 10
"""Failures shown whatever their kind: enough to see whether they vary."""
KINDS = 50
"""Kinds of failure shown at most: a bound even if every failure is of a kind of its own."""
KIND_LENGTH = 100
"""Characters of an error's last line that can make its kind."""
TEXT_LIMIT = 4000
"""Characters of one failure shown: its start and its end (where a traceback's exception is);
an exception that carries a file's worth of text printed megabytes for each failure."""


def failure_kind(outcome: str, error: str | None) -> str:
    """What failures alike share: the outcome and the exception's type, the text before the
    first colon of the error's last line (``FileNotFoundError`` of ``FileNotFoundError: [Errno
    2] No such file or directory: '/data/0042.dat'``; the whole line when it has no colon)."""
    line = last_line(error) or ""
    return f"{outcome}: {line.partition(':')[0][:KIND_LENGTH]}"


class FailureLines:
    """Decides, failure by failure, what the console shows; ``hidden`` counts the others."""

    def __init__(self, show: Callable[[str], None], log: Path) -> None:
        self._show = show
        self._log = log
        self._kinds: set[str] = set()
        self._shown = 0
        self.hidden = 0

    def add(self, text: str, kind: str) -> None:
        """A failure, its full text and its kind (:func:`failure_kind`)."""
        if self._shown < IN_FULL or (kind not in self._kinds and len(self._kinds) < KINDS):
            self._kinds.add(kind)
            self._shown += 1
            self._show(self._shortened(text))
            return
        if not self.hidden:
            self._show(f"(further failed attempts of the kinds above are counted, not shown; the log has each one: {self._log})")
        self.hidden += 1

    def _shortened(self, text: str) -> str:
        if len(text) <= TEXT_LIMIT:
            return text
        head, tail = TEXT_LIMIT * 3 // 4, TEXT_LIMIT // 4
        return f"{text[:head]} [... {len(text) - head - tail:,} characters not shown; the log has them: {self._log} ...] {text[-tail:]}"

    @property
    def shown(self) -> int:
        """Failed attempts this run showed."""
        return self._shown

    def summary(self) -> str:
        """Where the failures not shown are, for the run's last lines ("" if none was hidden)."""
        if not self.hidden:
            return ""
        return f"{plural(self.hidden, 'failed attempt')} of this run not shown above: each is in {self._log} or its rotated segments (the report command groups them by kind)"
