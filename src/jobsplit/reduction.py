"""``python ENTRY reduce DIR...``: merge the machines' results, then fold them with ``reduce=``.

The entry's reduce function receives the merged rows (each job once) as a list of dicts: the
header's columns with numbers parsed back, ``Job ID``, ``Job Args``, ``Machine``, and ``args``
(the job's arguments, decoded from Job Args). A list, not an iterator: a fold that takes two
passes (a count, then a sum) or ``len(rows)`` must not find the rows gone on its second look,
which with an iterator gave a mean of 0 and no error. Whatever it returns is written as JSON or
CSV: JSON with NumPy's and pandas' values as the lists, dicts and numbers they hold, CSV with
its cells as results.csv writes them; a value with no such form is refused, not written as its
printout (``str()`` of an array, or of a DataFrame cut short with ``...``).
"""

from __future__ import annotations

import json
import math
import numbers
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from .digits import every_digit
from .errors import UserError
from .merge import ARGS, Merged, merge, report
from .pool import JobPool
from .results import ResultShapeError, cell_text, quoted_cell, standard_text
from .text import article, clean_text
from .tooloutput import tool_output

ReduceFn = Callable[[list[dict[str, Any]]], Any]


def reduce_results(
    reduce: ReduceFn | None, dirs: Sequence[Path], output: Path | None, *, allow_missing: bool, console: Console, pool: JobPool | None = None
) -> int:
    if reduce is None:
        raise UserError("this entry gives no reduce function; pass reduce=<function of the rows> to jobsplit.main")
    if output is not None and str(output) == "-":
        output = None  # stdout, as JSON: as without -o
    if output is not None and output.suffix.lower() not in (".json", ".csv"):
        raise UserError(f"{output}: the reduced value is written as .json or .csv; choose one of those extensions")
    merged = merge(dirs)
    check_columns(merged.header)
    if pool is not None:
        check_pool(merged, pool)
    report(merged, console)
    if not merged.complete and not allow_missing:
        console.print("nothing reduced; pass --allow-missing to reduce the rows there are", markup=False)
        return 1
    rows = list(merged.rows())
    try:
        value = reduce(rows)
    except Exception:  # noqa: BLE001 - the user's own function: show them where it broke
        console.print(f"the reduce function raised an exception:\n{traceback.format_exc()}", markup=False, soft_wrap=True)
        return 1
    if output is None:
        print(_json_text(value), end="")
    else:
        _write(value, output)
        console.print(f"wrote the reduced value to {output}", markup=False, soft_wrap=True)
    return 0 if merged.complete else 1


def check_pool(merged: Merged, pool: JobPool) -> None:
    """Refuse folders whose plan is of another pool than this entry's: the pool changed since
    they ran (it grew, say, and the new campaign went to another --out), or they are another
    study's. Their own plan was complete, so the merge said so, and the fold of the old rows was
    written as this study's summary, exit 0."""
    total = merged.pool_size if merged.pool_size is not None else sum(merged.plan.values())
    held = set(merged.holders).union(job_id for jobs in merged.missing.values() for job_id, _ in jobs)
    foreign = len(held - set(pool.ids_hex(range(len(pool)))))
    if total != len(pool) or foreign:
        outside = f", {foreign} of them not in this entry's pool" if foreign else ""
        raise UserError(
            f"these folders hold the results of a pool of {total} jobs{outside}, and this entry's pool has {len(pool)}: "
            "the pool changed since they ran, or they are another study's; give the folders of this pool's campaign, or reduce them with the entry that ran them"
        )


def check_columns(columns: Sequence[str]) -> None:
    """Refuse a result column named as the key of each row's arguments. Checked by every command
    of an entry that gives reduce=, not at its reduce only: found there, after the whole run,
    renaming the column changed the digest, and every job ran again."""
    if ARGS in columns:
        raise UserError(f'header.csv has a column named "{ARGS}", the key under which reduce gives each row its job\'s arguments; rename the column')


def _write(value: Any, output: Path) -> None:
    text = _json_text(value) if output.suffix.lower() == ".json" else _csv_text(value)
    with tool_output(output) as f:
        f.write(text)


def _json_text(value: Any) -> str:
    """The value as JSON, every digit of its integers written (Python's ``str()`` of an int stops at 4,300)."""
    try:
        with every_digit():
            return json.dumps(_finite(value), indent=2, default=_json_plain, allow_nan=False) + "\n"  # ASCII: a lone surrogate as its \u escape
    except (TypeError, ValueError, RecursionError) as exc:  # nested too deep, a key of no JSON type, a circular reference, or _json_plain's refusal
        raise UserError(f"the reduce function's value cannot be written as JSON ({exc}); return numbers, strings, booleans, None, lists and dicts") from None


def _json_plain(value: Any) -> Any:
    """What JSON holds for a value the json module has no form for (see the module's docstring)."""
    if (text := standard_text(value)) is not None:  # a date, a time, a path: as results.csv has them
        return text
    if isinstance(value, (set, frozenset)):
        return _finite(sorted(value, key=repr))
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return _finite(float(value))
    if isinstance(value, numbers.Number):  # a Decimal as its exact text; a complex number
        return str(value)
    for convert in ("to_dict", "tolist"):  # pandas' Series (by label) and DataFrame; NumPy's arrays and scalars
        method = getattr(value, convert, None)
        if callable(method):
            return _finite(method())
    raise TypeError(f"it holds {article(type(value).__name__)} {type(value).__name__}")


def _finite(value: Any, within: frozenset[int] = frozenset()) -> Any:
    """``value`` with every NaN and infinity among its floats, its lists' and dicts' (keys too),
    as the strings "NaN", "Infinity" and "-Infinity", as proto3's JSON mapping writes them: JSON
    has no such numbers. Python wrote them bare, and JavaScript's JSON.parse, R's jsonlite and
    every strict reader refused the whole summary.json (Python's own reads them back either way:
    ``float("Infinity")``). ``within``: the containers it lies in, to refuse a cycle as json does."""
    if isinstance(value, float):
        return value if math.isfinite(value) else "NaN" if value != value else "Infinity" if value > 0 else "-Infinity"  # noqa: PLR0124 - NaN is unequal to itself
    if not isinstance(value, (dict, list, tuple)):
        return value
    if id(value) in within:
        raise ValueError("Circular reference detected")
    within |= {id(value)}
    if isinstance(value, dict):
        return {(_finite(key) if isinstance(key, float) else key): _finite(item, within) for key, item in value.items()}  # a key of another type as json.dumps judges it
    return [_finite(item, within) for item in value]


def _csv_text(value: Any) -> str:
    """Rows as CSV: a list of dicts (columns from their keys), a list of lists, or a dict (key,
    value); cells as results.csv has them (quoted as RFC 4180 says, a lone CR too)."""
    header: list[Any] | None
    body: Sequence[Sequence[Any]]
    if isinstance(value, Mapping):
        header, body = ["key", "value"], list(map(list, value.items()))
    elif isinstance(value, Sequence) and value and all(isinstance(row, Mapping) for row in value):
        header = list(dict.fromkeys(key for row in value for key in row))
        body = [[row.get(c) for c in header] for row in value]
    elif isinstance(value, Sequence) and all(isinstance(row, Sequence) and not isinstance(row, str) for row in value):
        header, body = None, value
    else:
        raise UserError(f"the reduce function returned {article(type(value).__name__)} {type(value).__name__}; CSV output needs a list of dicts, a list of lists or a dict (or write .json)")
    rows = [header, *body] if header is not None else body
    with every_digit():
        return "".join(_csv_line(row, number, header) for number, row in enumerate(rows, start=0 if header is not None else 1))


def _csv_line(row: Sequence[Any], number: int, header: list[Any] | None) -> str:
    """Row ``number`` (the header's is 0) as one line of CSV."""
    cells = []
    for position, cell in enumerate(row):
        try:
            cells.append(quoted_cell(clean_text(cell_text(cell, ""))))
        except ResultShapeError:
            column = repr(header[position]) if header is not None and position < len(header) else position + 1
            kind = type(cell).__name__
            raise UserError(
                f"the reduce function's value cannot be written as CSV: row {number}, column {column}, is {article(kind)} {kind}; "
                "make each cell a number, a string, a boolean, None, a date or a path, or write .json"
            ) from None
    return ",".join(cells) + "\n"
