"""Where the tools (merge-results, merge-logs, report, trace, reduce) write their ``-o``: a file
written whole, or stdout for ``-`` (but reduce's, named .json or .csv); never over a file that a
run keeps in its machine folder.

``merge-results OUT -o OUT/a/results.csv`` replaced machine a's results with every machine's,
so that its next run refused them as of another plan; ``-o OUT/a/journal.sqlite`` replaced the
journal itself; ``merge-logs OUT -o OUT/a/a.log.gz`` gave every later merge its records twice.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .atomicfile import atomic_file
from .errors import UserError
from .outdir import JOURNAL_FILES, LOCK_FILE, LOG_NAME, PROGRESS_FILE, RESULTS_FILE, MachineDir

_RUN_FILES = frozenset(name.casefold() for name in (*JOURNAL_FILES, RESULTS_FILE, PROGRESS_FILE, LOCK_FILE))


@contextmanager
def tool_output(out: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """The tool's output file (``mode`` ``"w"``: UTF-8 text, or ``"wb"``), written whole (see
    ``atomic_file``); stdout for ``-``, in UTF-8 as the file would be, whatever the locale (in a
    Latin-1 one a merged table ended at its first "α" in a UnicodeEncodeError). A file a run
    keeps is refused, naming it."""
    if str(out) == "-":
        with _stdout(binary="b" in mode) as stream:
            yield stream
        return
    path = Path(out)
    _refuse_a_run_s_file(path)
    with atomic_file(path, mode) as f:
        yield f


@contextmanager
def _stdout(*, binary: bool) -> Iterator[IO[Any]]:
    """stdout's bytes, or a UTF-8 text stream over them (stdout itself where it has no bytes, as
    a notebook's)."""
    raw = getattr(sys.stdout, "buffer", None)
    if raw is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    sys.stdout.flush()
    if binary:
        yield raw
        raw.flush()
        return
    text = io.TextIOWrapper(raw, encoding="utf-8", newline="", write_through=True)
    try:
        yield text
        text.flush()
    finally:
        text.detach()  # stdout's bytes stay open: they are stdout's


def _refuse_a_run_s_file(path: Path) -> None:
    """In a machine folder (one with a run's journal, lock, progress or log: a folder holding a
    merged results.csv is none), a run's file is no output. Names compare case-folded: on a
    macOS disk ``Results.csv`` is results.csv."""
    target = Path(os.path.realpath(path))  # what the write would replace: a link's target
    folder = MachineDir(target.parent, target.parent.name)
    if target.name.casefold() not in _RUN_FILES and not _is_log(folder, target):
        return
    if any(p.exists() for p in (folder.journal, folder.log, folder.path / LOCK_FILE, folder.path / PROGRESS_FILE)):
        raise UserError(f"-o {path}: that is a file a run keeps in its machine folder {folder.path}; write the output elsewhere (outside the output folder, say)")


def _is_log(folder: MachineDir, path: Path) -> bool:
    """Whether ``path`` is named as the folder's log or one of its rotated segments."""
    return (found := LOG_NAME.fullmatch(path.name.casefold())) is not None and found.group(1) == folder.path.name.casefold()
