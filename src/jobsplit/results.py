"""Result rows: a job's return value as one line of ``results.csv``.

The columns are header.csv's (three timing columns first, then the job's own), followed by
``Job ID``, ``Job Args`` (the canonical JSON the id hashes), ``Machine``, ``Digest`` (of the
plan) and ``Code`` (the fingerprint of the entry that computed the row), so every row says
where it came from. Rows are formatted in the worker, so the parent only stores and appends
finished lines of text.
"""

from __future__ import annotations

import csv
import datetime
import numbers
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from .atomicfile import atomic_file
from .config import RESERVED_COLUMNS, TIMING_COLUMNS, Header
from .digits import int_text
from .errors import StorageError, describe_os_error
from .fileid import FileState, file_id, open_file_id
from .text import article, plural
from .timefmt import utc_timestamp

_FIELD_LIMIT = 2**31 - 1
"""The longest cell read back (the csv module's default, 128 KiB, is less than a job may return)."""


_NUL_STAND_IN = "\udc00"
"""Stands for NUL while Python 3.10's csv module, which refuses NUL, reads a line: a lone
surrogate never occurs in what jobsplit reads back (results.csv as strict UTF-8, journal text
made valid by clean_text)."""


def row_cells(lines: Iterable[str]) -> Iterator[list[str]]:
    """``csv.reader`` over lines of results.csv: cells of any length read back (the csv module's
    limit is per process; it is only ever raised), and cells holding NUL (a job may return one)."""
    if csv.field_size_limit() < _FIELD_LIMIT:
        csv.field_size_limit(_FIELD_LIMIT)
    if sys.version_info >= (3, 11):
        return csv.reader(lines)
    stood_in = csv.reader(line.replace("\0", _NUL_STAND_IN) for line in lines)
    return ([cell.replace(_NUL_STAND_IN, "\0") for cell in cells] for cells in stood_in)


_CELL = re.compile(r'"(?:[^"]|"")*"|[^,"]*')
"""A cell of a line as the csv module writes it: quoted, or with no comma or quote in it."""


def requoted(line: str) -> str:
    """``line`` with a lone CR quoted, as RFC 4180 says. Rows written before jobsplit quoted cells
    itself (0.1, and journals begun before) came from Python's csv module, which quotes a lone CR
    only from Python 3.13 on: every CSV reader broke such a row there. Any other line, and every
    line written since, comes back as it is."""
    if "\r" not in line:
        return line
    body, end = (line[:-1], "\n") if line.endswith("\n") else (line, "")
    cells, at = [], 0
    while True:
        cell = _CELL.match(body, at)
        assert cell is not None, "the pattern matches the empty string"
        cells.append(cell.group())
        at = cell.end()
        if at == len(body):
            break
        if body[at] != ",":
            return line  # not a line the csv module wrote
        at += 1
    return ",".join(f'"{cell}"' if "\r" in cell and not cell.startswith('"') else cell for cell in cells) + end


class ResultShapeError(Exception):
    """A job returned something that does not fit the header's result columns."""


class Cells(list[str]):
    """A result's cells as text, made beforehand (a worker makes them while the job still counts
    as running, see worker._Outbox.cells_in_job): ``RowFormatter.cells`` takes them as they are."""


class RowFormatter:
    """Turns (timings, return value, identity) into a CSV line; lives in each worker, where two
    threads may format at once (it keeps no state that a line changes)."""

    def __init__(self, header: Header, machine: str, run_started: float, digest: str, code: str) -> None:
        self.columns = header.result_columns
        self.machine = machine
        self.digest = digest
        self.code = code
        self.run_started = utc_timestamp(run_started)
        order = {name: i for i, name in enumerate(header.columns[: len(TIMING_COLUMNS)])}
        self._run_at, self._start_at, self._time_at = (order[c] for c in ("Run Start Time", "Job Start Time", "Job Running Time"))
        self._suffix = f",{machine},{digest},{code}\n"  # never quoted: a machine name, hex digits

    def line(self, value: Any, job_started: float, running_time: float, job_id: str, job_args: str) -> str:
        """The row as one CSV record ending in a newline (RFC 4180: a cell holding a comma, a
        quote or a line break is quoted), built without the csv module, which quotes a lone CR
        only from Python 3.13 on: before, "a\\rb" went out unquoted, and every CSV reader, Python's
        own and the one that rebuilds a lost journal, broke the row there."""
        timing = ["", "", ""]
        timing[self._run_at] = self.run_started
        timing[self._start_at] = utc_timestamp(job_started)
        timing[self._time_at] = f"{running_time:.6f}"
        return ",".join([*timing, *map(quoted_cell, self.cells(value)), job_id, quoted_cell(job_args)]) + self._suffix

    def cells(self, value: Any) -> list[str]:
        """The result columns' cells: a sequence in column order, a dict (or a pandas Series) by
        name, or a scalar."""
        columns = self.columns
        kind = type(value)
        if kind is Cells:
            return value  # type: ignore[no-any-return]
        if kind in _SCALAR_TEXT and len(columns) == 1:
            return [_SCALAR_TEXT[kind](value)]
        if _is_vector(value):
            value = _by_label(value) if hasattr(value, "keys") else list(value) if _numpy_kind(value) in ("M", "m") else value.tolist()  # times: see _text
        if kind is tuple or kind is list or (isinstance(value, Sequence) and not isinstance(value, (str, bytes, bytearray))):
            if len(value) != len(columns):
                raise ResultShapeError(f"the job returned {plural(len(value), 'value')} but header.csv has {plural(len(columns), 'result column')} {list(columns)}")
            return [cell_text(item, c) for item, c in zip(value, columns)]
        if isinstance(value, Mapping):
            missing = [c for c in columns if c not in value]
            extra = [str(k) for k in value if k not in columns]
            if missing or extra:
                what = f"{article(kind.__name__)} {kind.__name__}"  # a dict, or a Series (see _by_label)
                raise ResultShapeError(f"the job returned {what} {_differences(missing, extra)}; its keys must be exactly the result columns {list(columns)}")
            return [cell_text(value[c], c) for c in columns]
        if len(columns) == 1:
            return [cell_text(value, columns[0])]
        if not columns and value is None:
            return []
        expected = f"{len(columns)} values (a list, tuple, dict or one-dimensional array for {list(columns)})" if columns else "None (header.csv has no result columns)"
        raise ResultShapeError(f"the job returned {article(kind.__name__)} {kind.__name__} but header.csv expects {expected}")


_SCALAR_TEXT: dict[type, Any] = {str: str, int: int_text, bool: str, float: repr, type(None): lambda _: ""}
"""Exact scalar types and their cell text (``repr`` of a float reads back to the same float)."""


def cell_text(value: Any, column: str) -> str:
    """A cell's text, as results.csv has it (before quoting); ResultShapeError for a value that has none."""
    to_text = _SCALAR_TEXT.get(type(value))
    if to_text is not None:
        return to_text(value)  # type: ignore[no-any-return]
    try:
        text = _text(value, column)
    except (TypeError, ValueError, ArithmeticError) as exc:  # raised by the value's own conversion, often in C: the job's, not jobsplit's
        name = type(value).__name__
        raise ResultShapeError(f"the value for column {column!r}, {article(name)} {name}, has no text ({type(exc).__name__}: {exc})") from None
    if text is None:
        name = type(value).__name__
        raise ResultShapeError(f"the value for column {column!r} is {article(name)} {name}; cells must be numbers, strings, booleans, None, dates, times or paths")
    return text


def _text(value: Any, column: str) -> str | None:
    """The cell text of a value that is not of an exact plain type; None for a value that has none."""
    if isinstance(value, str):
        return str.__str__(value)  # its text: a str enum's own __str__ wrote "Color.RED" for "red"
    numpy_kind = _numpy_kind(value)
    if numpy_kind == "m" or isinstance(value, datetime.timedelta):  # NumPy's timedelta64 counts as an integer: of what unit?
        name = type(value).__name__
        raise ResultShapeError(f"the value for column {column!r} is {article(name)} {name}, a duration: return a number in a unit of yours (td.total_seconds(), td / numpy.timedelta64(1, 's'))")
    if numpy_kind == "M":  # NumPy's datetime64 is a datetime down to microseconds, an integer below (pandas' columns: nanoseconds)
        plain = _item(value)
        if plain is _NO_ITEM:
            return None  # an array of several: no one cell
        return "" if plain is None else plain.isoformat() if isinstance(plain, datetime.date) else str(value)
    if isinstance(value, numbers.Integral):
        return int_text(int(value))
    if isinstance(value, numbers.Real):
        return repr(float(value))
    if isinstance(value, numbers.Number):
        return str(value)
    plain = _item(value)
    to_text = _SCALAR_TEXT.get(type(plain))
    if to_text is not None:  # never for _NO_ITEM, a bare object()
        return to_text(plain)  # type: ignore[no-any-return]
    if plain is _NO_ITEM and isinstance(value, datetime.date) and value != value:  # noqa: PLR0124 - pandas' NaT, a datetime unequal to itself
        return ""  # missing, as NumPy's NaT is: its isoformat() wrote "NaT", no time
    return standard_text(value if plain is _NO_ITEM else plain)


def _numpy_kind(value: Any) -> str | None:
    """The kind of a NumPy value's (or array's) dtype: "M" for datetime64, "m" for timedelta64."""
    return getattr(getattr(value, "dtype", None), "kind", None)


def standard_text(value: Any) -> str | None:
    """The one text a date or time has (ISO 8601, as ``isoformat`` writes it, with its offset if
    it has one) and a file path (as given); None for anything else, whose text is no one's to
    choose (an enum: its name, its value, its repr?)."""
    if isinstance(value, (datetime.date, datetime.time)):  # a datetime is a date
        return value.isoformat()
    if isinstance(value, os.PathLike):
        return os.fsdecode(value)
    return None


def _is_vector(value: Any) -> bool:
    """Whether ``value`` is an array of one dimension, NumPy's (``numpy.array([estimate, error])``)
    or the like of other array libraries: its items, by the ``tolist()`` they share, are a row;
    if it has keys (a pandas ``Series``: ``df.mean()``, ``s.agg(["mean", "std"])``), by label
    (see _by_label)."""
    return getattr(value, "ndim", None) == 1 and callable(getattr(value, "tolist", None))


def _by_label(value: Any) -> dict[Any, Any]:
    """A labelled array as the dict of its labels and items, so that its labels name the columns,
    as a dict's keys do (its order may not be theirs)."""
    labels, items = list(value.keys()), value.tolist()
    if len(set(labels)) != len(labels):
        repeated = next(label for label in labels if labels.count(label) > 1)
        raise ResultShapeError(f"the job returned {article(type(value).__name__)} {type(value).__name__} with the label {repeated!r} more than once")
    return dict(zip(labels, items))


_NO_ITEM = object()


def _item(value: Any) -> Any:
    """The Python scalar that a NumPy scalar or one-item array stands for, by the ``item()``
    they share (and the like of other array libraries); else _NO_ITEM. ``numpy.bool_``, which
    ``x > 0.5`` gives, is no ``numbers.Number``: without this, every job returning one failed."""
    item = getattr(value, "item", None)
    if not callable(item):
        return _NO_ITEM
    try:
        plain = item()
    except (TypeError, ValueError):  # an array of more than one item, say
        return _NO_ITEM
    mask = getattr(value, "mask", None)  # a NumPy masked value: ``numpy.ma.masked``, the mean of values all masked
    if mask is not None and not callable(mask) and callable(getattr(mask, "any", None)) and mask.any():
        return None  # missing, as a masked item of a row is: item() gave the number under the mask (0.0 for numpy.ma.masked)
    return plain


def quoted_cell(cell: str) -> str:
    """A cell as RFC 4180 writes it: quoted where it holds a comma, a quote or a line break."""
    if "," in cell or '"' in cell or "\n" in cell or "\r" in cell:
        return '"' + cell.replace('"', '""') + '"'
    return cell


def _differences(missing: list[str], extra: list[str]) -> str:
    parts = []
    if missing:
        parts.append(f"without {missing}")
    if extra:
        parts.append(f"with unknown keys {extra}")
    return " and ".join(parts)


def csv_header_line(header: Header) -> str:
    return ",".join(map(quoted_cell, [*header.columns, *RESERVED_COLUMNS])) + "\n"


def _opened_as_kept(path: Path, kept: FileState) -> IO[str] | None:
    """results.csv opened to append to, if it is still the file read back, at the size it had
    (not deleted, emptied or replaced since: appended to, it lacked the journal's rows), with no
    other name (a hard link, ``cp -al`` of the folder as a snapshot, whose content a write in
    place would change) and this user's to write (not a colleague's, left 0644 by a umask of
    022: written anew, as the folder allows); else None, and the file is written anew."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    except OSError:
        return None
    found = os.fstat(fd)
    if FileState(found.st_dev, found.st_ino, found.st_size) != kept or found.st_nlink != 1:
        os.close(fd)
        return None
    return open(fd, "a", encoding="utf-8", newline="")


class ResultsFile:
    """``results.csv``, appended in the order results are recorded; rebuilt from the journal at every start
    (after the journal took in any row only results.csv held, see ``recovery``), unless it is
    already the journal's rows as the journal wrote them."""

    def __init__(self, path: Path, header_line: str, lines: Iterable[str], kept: FileState | None = None) -> None:
        """``lines``: the rows to write after ``header_line``. ``kept``: the file as it was read
        back holding them already (see recovery.read_rows), appended to as it is if it still is
        (see _opened_as_kept); else written anew."""
        self.path = path
        opened = _opened_as_kept(path, kept) if kept is not None else None
        if opened is None:
            with atomic_file(path) as f:  # a torn last line from a crash never survives
                f.write(header_line)
                f.writelines(lines)
            try:
                opened = open(path, "a", encoding="utf-8", newline="")  # noqa: SIM115 - open for the whole run
            except OSError as exc:
                raise StorageError(f"{path} cannot be written ({describe_os_error(exc)})") from None
        self._file = opened
        self._file_id = open_file_id(opened.fileno())

    def append(self, lines: Iterable[str]) -> None:
        try:
            self._file.writelines(lines)
            self._file.flush()
        except OSError as exc:
            raise StorageError(f"{self.path} cannot be written: {describe_os_error(exc)}; free some space and run the same command again to resume") from None

    def replaced(self) -> bool:
        """Whether ``path`` no longer names the file being written (deleted, moved away or
        replaced while the run went on): the run then writes it again from the journal."""
        return file_id(self.path) != self._file_id

    def close(self) -> None:
        try:
            self._file.close()
        except OSError:
            pass  # a full disk: the journal holds every committed row, the next start rewrites this file
