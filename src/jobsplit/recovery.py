"""What results.csv proves done is never run again, even when the journal is lost or older.

The journal is the truth, and results.csv is rewritten from it at every start where it is not
already the journal's rows as the journal wrote them. But a journal can be deleted, emptied,
or replaced by an older copy while results.csv still holds rows that it does not; every row
carries its ``Job ID`` and the ``Digest`` of the plan that made it, so such rows are taken
back into the journal as done before results.csv is rewritten. Rows that
this plan cannot have made are never dropped: the run refuses to start instead. Lines that are
no rows jobsplit wrote (damaged, or changed by a spreadsheet) are no results: the file is kept
in a backup folder and they are named, never skipped in silence; only a last row cut short (a
crash mid-write) is, as it was never committed.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from itertools import chain, islice
from pathlib import Path
from typing import BinaryIO, NamedTuple, TypeVar

from .config import RESERVED_COLUMNS, Header
from .errors import UserError, describe_os_error
from .fileid import FileState, open_file_id
from .journal import AttemptRow, Journal
from .pool import id_of_text
from .results import csv_header_line, requoted, row_cells
from .states import JobState, Outcome
from .text import plural
from .timefmt import parse_utc_timestamp

_Row = TypeVar("_Row")
_BEFORE_0_2 = RESERVED_COLUMNS[:3]  # jobsplit 0.1 wrote no Digest and Code columns


class ForeignTable(UserError):
    """results.csv is no table of this header's: re-saved by a spreadsheet (semicolons between
    its cells, another encoding), or made for another header.csv. ``what``: the fact, without
    the advice ``fix``, which a run whose journal holds the results has no need of."""

    def __init__(self, what: str, fix: str = "move it away (keep it: its rows may be the only copy) or pass --fresh to start over (the old files are kept in a backup folder)") -> None:
        super().__init__(f"{what}; {fix}")
        self.what = what


class ResultRow(NamedTuple):
    job_id: str
    line: str
    started: float
    running_time: float


class Unusable(NamedTuple):
    """Why a line of results.csv is no result (see ResultRows.unusable)."""

    why: str


DAMAGED = Unusable("not a whole row of this table")
BAD_TIME = Unusable("Run Start Time, Job Start Time or Job Running Time not as jobsplit writes them (as after a spreadsheet saved the file)")
CHANGED_BREAKS = Unusable("a line break within a cell that may have been changed with the line ends (to CR LF)")
OTHER_JOB = Unusable("a Job ID that is not the id of the row's Job Args (as after one column was sorted on its own)")


class ResultRows(NamedTuple):
    """What a results.csv holds beyond the journal's rows (see read_rows): its rows, and the
    lines that are no rows jobsplit wrote, by why (the first line of each: a damaged record costs
    only that one, see _records)."""

    rows: list[ResultRow]
    unusable: dict[str, list[int]]
    as_written: FileState | None = None
    """The file, when it is the journal's rows as the journal wrote them, nothing more nor less:
    it needs writing again no more than reading, as long as it is still that file at that size
    (see ResultsFile)."""

    def unusable_sentence(self, path: Path, kept: Path | None, *, journal_held: bool) -> str:
        """What became of the unusable lines, and where the file they were read from is kept."""
        count = sum(map(len, self.unusable.values()))
        what = "; ".join(f"{_line_numbers(numbers)}: {why}" for why, numbers in self.unusable.items())
        said = f"{plural(count, 'line')} of {path} {'holds' if count == 1 else 'hold'} no result jobsplit can read back ({what})"
        if journal_held:
            return f"{said}: the file is kept in {kept}, and written again from the journal; their jobs run again unless the journal holds them as done"
        return f"{said}: their jobs run again; the file is kept in {kept}"


def _line_numbers(numbers: list[int], shown: int = 6) -> str:
    """``line 5``, ``lines 2-21``, ``lines 2, 5-7, 9 and 4 more``: ascending line numbers, runs as ranges."""
    runs: list[list[int]] = []
    for number in numbers:
        if runs and number == runs[-1][-1] + 1:
            runs[-1][1:] = [number]
        else:
            runs.append([number])
    text = ", ".join("-".join(map(str, run)) for run in runs[:shown]) + (f" and {len(runs) - shown} more" if len(runs) > shown else "")
    return f"line {text}" if len(numbers) == 1 else f"lines {text}"


def read_rows(
    path: Path, header: Header, digest: str, belongs: Callable[[str], bool], *, digest_known: bool, journal_lines: Iterable[str] = ()
) -> ResultRows:
    """The complete rows of a results.csv, checked to come from this plan, and its lines that are
    no such rows (not those of a last row cut short, a crash's, which was never committed).

    ``belongs`` tells whether a job id is one this machine may hold. ``digest_known`` says
    whether the folder's journal vouches for the digest (so rows of jobsplit 0.1, which carry
    none, can be trusted). ``journal_lines``: the done rows of that journal, in the order it
    wrote them here. The start of the file that is its header and those rows, byte for byte, is
    not read again: they are the journal's, from this plan (a million rows took 20 s and 1.5 GB
    to read back). Refuses, naming the file, rows it cannot account for.
    """
    try:
        with open(path, "rb") as f:
            start, breaks, whole = _written_start(f, chain([csv_header_line(header)], journal_lines))
            if whole:
                return ResultRows([], {}, as_written=FileState(*open_file_id(f.fileno()), start))
            f.seek(start)
            data = f.read()
    except FileNotFoundError:
        return ResultRows([], {})
    except OSError as exc:
        raise UserError(f"{path} cannot be read ({describe_os_error(exc)}); move it away or pass --fresh to start over (the old files are kept in a backup folder)") from None
    try:
        text = data.decode("utf-8")  # not read_text, which turns a CR in a cell into a newline
    except UnicodeDecodeError as exc:  # its rows may be whole in other bytes: converted, they read back
        where = breaks + data.count(b"\n", 0, exc.start) + 1
        raise ForeignTable(
            f'{path} is not UTF-8 text (line {where} holds the byte {data[exc.start]:#04x}: saved in another encoding, as by a spreadsheet\'s "CSV")',
            "convert it to UTF-8 (iconv -f WINDOWS-1252 -t UTF-8 for Excel's on Windows) and run again",
        ) from None
    del data  # as large as the text: not held while its rows are read (367 MB of a million rows)
    columns = [*header.columns, *RESERVED_COLUMNS]
    modern, body, first = True, 0, breaks + 1
    if not start:  # the header too is read
        text = text.removeprefix("\ufeff")  # a BOM: Excel's "CSV UTF-8"
        if "\n" not in text:
            if "\r" in text:  # its rows too, taken for none: the file was written again from the journal without them, and kept nowhere
                raise _lines_ended_by_cr(path)
            return ResultRows([], {})
        body, first = text.index("\n") + 1, 2
        try:
            columns = next(row_cells([text[:body]]))
        except csv.Error:  # a CR outside quotes (was a traceback)
            if "\r" in text[:body]:
                raise _lines_ended_by_cr(path) from None  # then a newline: a line added since by another program
            columns = []
        modern = columns == [*header.columns, *RESERVED_COLUMNS]
        if not modern and not (digest_known and columns == [*header.columns, *_BEFORE_0_2]):
            saved = " (its cells are separated by semicolons, as a spreadsheet saves them)" if ";" in text[:body] and len(columns) == 1 else ""
            raise ForeignTable(f"{path} has other columns than header.csv gives now{saved}")
    run_at, start_at, time_at = columns.index("Run Start Time"), columns.index("Job Start Time"), columns.index("Job Running Time")
    id_at = len(header.columns)

    def timed(cells: list[str]) -> tuple[list[str], float, float] | Unusable:
        """A row of this table with its start and running time, or why it is none."""
        if len(cells) != len(columns):
            return DAMAGED
        try:
            started, running_time = parse_utc_timestamp(cells[start_at]), float(cells[time_at])
            parse_utc_timestamp(cells[run_at])  # checked too: a row taken back is written again as it is
        except ValueError:
            return BAD_TIME  # Excel's "2026-12-07 18:05:10": its other cells may be changed too (numbers to 15 digits, long ones as 1.2E+31)
        if id_of_text(cells[id_at + 1]).hex() != cells[id_at]:  # its result is not that job's: about 0.5 us a row
            return OTHER_JOB
        return cells, started, running_time

    rows: list[ResultRow] = []
    unusable: list[tuple[int, str]] = []
    settled, after_rows = 0, body
    for number, end, line, read in _records(text, body, first, timed):
        if isinstance(read, Unusable):
            unusable.append((number, read.why))
            continue
        cells, started, running_time = read
        job_id = cells[id_at]
        if (modern and cells[-2] != digest) or not belongs(job_id):
            raise UserError(
                f"{path} line {number} holds a result of another plan (digest {cells[-2] if modern else 'unknown'}, job {job_id}); "
                "move it away, or pass --fresh to start over (the old files are kept in a backup folder)"
            )
        rows.append(ResultRow(job_id, line if modern else f"{line.rstrip(chr(10))},{digest},\n", started, running_time))
        settled, after_rows = len(unusable), end
    if _cut_short(text[after_rows:]):
        del unusable[settled:]
    by_why: dict[str, list[int]] = {}
    for number, why in unusable:
        by_why.setdefault(why, []).append(number)
    return ResultRows(rows, by_why)


_BLOCK_LINES = 1024
"""Lines of the journal compared with results.csv at once: one comparison of some 400 KB runs at
the speed of memory, and only a block is held."""


def _lines_ended_by_cr(path: Path) -> ForeignTable:
    return ForeignTable(f'{path} has lines ended by a CR alone (saved as by a Mac spreadsheet\'s "CSV")', "convert its line ends (tr '\\r' '\\n') and run again")


def _written_start(f: BinaryIO, lines: Iterable[str]) -> tuple[int, int, bool]:
    """(bytes, line breaks) of the start of ``f`` that is the first of ``lines``, whole and in
    order, and whether ``f`` holds all of them and nothing more. Compared _BLOCK_LINES lines at
    a time: the file is never held whole."""
    matched = breaks = 0
    lines = iter(lines)
    while encoded := [line.encode("utf-8", "surrogateescape") for line in islice(lines, _BLOCK_LINES)]:
        expected = b"".join(encoded)
        found = f.read(len(expected))
        if found != expected:
            at = 0
            for line in encoded:
                if not found.startswith(line, at):
                    break
                at += len(line)
            return matched + at, breaks + expected.count(b"\n", 0, at), False
        matched, breaks = matched + len(expected), breaks + expected.count(b"\n")
    return matched, breaks, not f.read(1)


def _cut_short(tail: str) -> bool:
    """Whether what follows the last row is one row cut short (a crash mid-write): the file ends
    within it, and its line breaks, if any, are all within a quoted cell."""
    if tail.endswith("\n"):
        return False  # a whole last line, though it may be a row torn just after a line break in a cell: named (a backup too many costs less than a line unsaid)
    quotes, at, stop = 0, 0, tail.find("\n")
    while stop >= 0:
        quotes += tail.count('"', at, stop)
        if quotes % 2 == 0:
            return False
        at, stop = stop, tail.find("\n", stop + 1)
    return True


def _records(text: str, start: int, number: int, read: Callable[[list[str]], _Row | Unusable]) -> Iterator[tuple[int, int, str, _Row | Unusable]]:
    """(line number, end, text, what ``read`` makes of its cells) of each record of ``text[start:]``,
    line ``number`` on. Lines end at newlines only (``str.splitlines`` also ends them at a CR, a
    form feed, U+2028 and more, which a cell may hold), and what follows the last one is a torn
    line, never committed; a record that ends in CR LF ends in a newline, as jobsplit wrote it. A
    record goes on over the next line while its quotes are unbalanced (a quoted cell that holds a
    line break); one that ``read`` refuses (a damaged line, an unclosed quote that took in the
    lines after it) costs only its first line: the next record starts at the line after it, and
    the refused one comes as that line. Blank lines hold no record. Records are slices of
    ``text``: no list of its lines is made."""
    complete = text.rfind("\n") + 1
    while start < complete:
        end, quotes, lines = start, 0, 0
        while end < complete and (lines == 0 or quotes % 2):
            stop = text.index("\n", end) + 1
            quotes += text.count('"', end, stop)
            end, lines = stop, lines + 1
        record = text[start:end]
        windows = record.endswith("\r\n")  # a spreadsheet's or an editor's line end, never jobsplit's (its rows end in hex digits): no part of a cell
        record = requoted(record[:-2] + "\n" if windows else record)
        if record == "\n":  # a blank line holds no row: nothing is lost with it
            start, number = end, number + 1
            continue
        try:
            row = read(next(row_cells([record]), []))
        except csv.Error:
            row = DAMAGED
        if windows and "\r\n" in record and not isinstance(row, Unusable):
            row = CHANGED_BREAKS  # a CR LF within a cell of this row: was it a newline?
        if not isinstance(row, Unusable) or row is CHANGED_BREAKS:  # the latter a whole row: its lines are one
            yield number, end, record, row
            start, number = end, number + lines
        else:
            first = text.index("\n", start) + 1
            yield number, first, text[start:first], row
            start, number = first, number + 1


def adopt(journal: Journal, rows: list[ResultRow]) -> int:
    """Record as done the rows whose jobs the journal holds no result for; returns how many. A
    result it holds as superseded (a shared queue accepted another host's first) is no more
    taken back than one it holds as done: its row stays in results.csv until the run's end
    writes the file again, and a run killed before that took it back as done, a second result
    of that job."""
    if not rows:
        return 0
    held = journal.with_results()
    if all(row.job_id in held for row in rows):
        return 0  # results.csv as the journal wrote it, in another order: no scan for attempt numbers
    last = dict(journal.to_run(retry_failed=True))
    attempts, seen = [], held
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
