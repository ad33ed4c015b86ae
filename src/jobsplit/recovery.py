"""What results.csv proves done is never run again, even when the journal is lost or older.

The journal is the truth, and results.csv is rewritten from it at every start. But a journal
can be deleted, emptied, or replaced by an older copy while results.csv still holds rows that
it does not; every row carries its ``Job ID`` and the ``Digest`` of the plan that made it, so
such rows are taken back into the journal as done before results.csv is rewritten. Rows that
this plan cannot have made are never dropped: the run refuses to start instead.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple, TypeVar

from .config import RESERVED_COLUMNS, Header
from .errors import UserError
from .journal import AttemptRow, Journal
from .results import requoted, row_cells
from .states import JobState, Outcome
from .timefmt import parse_utc_timestamp

_Row = TypeVar("_Row")
_BEFORE_0_2 = RESERVED_COLUMNS[:3]  # jobsplit 0.1 wrote no Digest and Code columns


class ForeignTable(UserError):
    """results.csv is no table of this header's: re-saved by a spreadsheet (semicolons between
    its cells, say), or made for another header.csv. ``what``: the fact, without the advice."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what}; move it away (keep it: its rows may be the only copy) or pass --fresh to start over (the old files are kept in a backup folder)")
        self.what = what


class ResultRow(NamedTuple):
    job_id: str
    line: str
    started: float
    running_time: float


def read_rows(path: Path, header: Header, digest: str, belongs: Callable[[str], bool], *, digest_known: bool) -> list[ResultRow]:
    """The complete rows of a results.csv, checked to come from this plan.

    ``belongs`` tells whether a job id is one this machine may hold. ``digest_known`` says
    whether the folder's journal vouches for the digest (so rows of jobsplit 0.1, which carry
    none, can be trusted). Refuses, naming the file, rows it cannot account for.
    """
    try:
        text = path.read_bytes().decode("utf-8").removeprefix("\ufeff")  # not read_text, which turns a CR in a cell into a newline; a BOM: Excel's "CSV UTF-8"
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} cannot be read ({exc}); move it away or pass --fresh to start over (the old files are kept in a backup folder)") from None
    if "\n" not in text:
        return []
    body = text.index("\n") + 1
    columns = next(row_cells([text[:body]]))
    modern = columns == [*header.columns, *RESERVED_COLUMNS]
    if not modern and not (digest_known and columns == [*header.columns, *_BEFORE_0_2]):
        saved = " (its cells are separated by semicolons, as a spreadsheet saves them)" if ";" in text[:body] and len(columns) == 1 else ""
        raise ForeignTable(f"{path} has other columns than header.csv gives now{saved}")
    start_at, time_at = columns.index("Job Start Time"), columns.index("Job Running Time")
    id_at = len(header.columns)

    def timed(cells: list[str]) -> tuple[list[str], float, float] | None:
        """A row of this table with its start and running time; None for anything else."""
        if len(cells) != len(columns):
            return None
        try:
            return cells, parse_utc_timestamp(cells[start_at]), float(cells[time_at])
        except ValueError:
            return None  # a damaged line is no result: it cannot say which job it was

    rows = []
    for number, line, (cells, started, running_time) in _records(text, body, 2, timed):
        job_id = cells[id_at]
        if (modern and cells[-2] != digest) or not belongs(job_id):
            raise UserError(
                f"{path} line {number} holds a result of another plan (digest {cells[-2] if modern else 'unknown'}, job {job_id}); "
                "move it away, or pass --fresh to start over (the old files are kept in a backup folder)"
            )
        rows.append(ResultRow(job_id, line if modern else f"{line.rstrip(chr(10))},{digest},\n", started, running_time))
    return rows


def _records(text: str, start: int, number: int, read: Callable[[list[str]], _Row | None]) -> Iterator[tuple[int, str, _Row]]:
    """(line number, text, what ``read`` makes of its cells) of each record of ``text[start:]``,
    line ``number`` on. Lines end at newlines only (``str.splitlines`` also ends them at a CR, a
    form feed, U+2028 and more, which a cell may hold), and what follows the last one is a torn
    line, never committed. A record goes on over the next line while its quotes are unbalanced (a
    quoted cell that holds a line break); one that ``read`` refuses (a damaged line, an unclosed
    quote that took in the lines after it) costs only its first line: the next record starts at
    the line after it. Records are slices of ``text``: no list of its lines is made."""
    complete = text.rfind("\n") + 1
    while start < complete:
        end, quotes, lines = start, 0, 0
        while end < complete and (lines == 0 or quotes % 2):
            stop = text.index("\n", end) + 1
            quotes += text.count('"', end, stop)
            end, lines = stop, lines + 1
        record = requoted(text[start:end])
        try:
            row = read(next(row_cells([record]), []))
        except csv.Error:
            row = None
        if row is not None:
            yield number, record, row
            start, number = end, number + lines
        else:
            start, number = text.index("\n", start) + 1, number + 1


def adopt(journal: Journal, rows: list[ResultRow]) -> int:
    """Record as done the rows whose jobs the journal does not hold as done; returns how many."""
    if not rows:
        return 0
    done = {job_id for job_id, _ in journal.done_lines()}
    if all(row.job_id in done for row in rows):
        return 0  # the common case, results.csv as the journal wrote it: no scan for attempt numbers
    last = dict(journal.to_run(retry_failed=True))
    attempts, seen = [], set(done)
    for row in rows:
        if row.job_id in seen:
            continue
        seen.add(row.job_id)
        attempt = last.get(row.job_id, 0) + 1
        attempts.append(
            AttemptRow(row.job_id, attempt, None, None, None, row.started, row.started + row.running_time, Outcome.DONE, JobState.DONE, row=row.line)
        )
    journal.add_recovered(attempts)
    return len(attempts)
