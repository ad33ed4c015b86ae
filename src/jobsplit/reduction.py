"""``python ENTRY reduce DIR...``: merge the machines' results, then fold them with ``reduce=``.

The entry's reduce function receives the merged rows (each job once) as a list of dicts: the
header's columns with numbers parsed back, ``Job ID``, ``Job Args``, ``Machine``, and ``args``
(the job's arguments, decoded from Job Args). A list, not an iterator: a fold that takes two
passes (a count, then a sum) or ``len(rows)`` must not find the rows gone on its second look,
which with an iterator gave a mean of 0 and no error. Whatever it returns is written as JSON or
CSV.
"""

from __future__ import annotations

import csv
import json
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from .errors import UserError
from .merge import ARGS, merge, report
from .tooloutput import tool_output

ReduceFn = Callable[[list[dict[str, Any]]], Any]


def reduce_results(reduce: ReduceFn | None, dirs: Sequence[Path], output: Path | None, *, allow_missing: bool, console: Console) -> int:
    if reduce is None:
        raise UserError("this entry gives no reduce function; pass reduce=<function of the rows> to jobsplit.main")
    if output is not None and str(output) == "-":
        output = None  # stdout, as JSON: as without -o
    if output is not None and output.suffix.lower() not in (".json", ".csv"):
        raise UserError(f"{output}: the reduced value is written as .json or .csv; choose one of those extensions")
    merged = merge(dirs)
    check_columns(merged.header)
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
        print(json.dumps(value, indent=2, default=str))
    else:
        _write(value, output)
        console.print(f"wrote the reduced value to {output}", markup=False, soft_wrap=True)
    return 0 if merged.complete else 1


def check_columns(columns: Sequence[str]) -> None:
    """Refuse a result column named as the key of each row's arguments. Checked by every command
    of an entry that gives reduce=, not at its reduce only: found there, after the whole run,
    renaming the column changed the digest, and every job ran again."""
    if ARGS in columns:
        raise UserError(f'header.csv has a column named "{ARGS}", the key under which reduce gives each row its job\'s arguments; rename the column')


def _write(value: Any, output: Path) -> None:
    with tool_output(output) as f:
        if output.suffix.lower() == ".json":
            json.dump(value, f, indent=2, default=str)
            f.write("\n")
        else:
            _write_csv(value, f)


def _write_csv(value: Any, f: Any) -> None:
    """Rows as CSV: a list of dicts (columns from their keys), a list of lists, or a dict (key, value)."""
    writer = csv.writer(f, lineterminator="\n")
    if isinstance(value, Mapping):
        writer.writerow(["key", "value"])
        writer.writerows(value.items())
    elif isinstance(value, Sequence) and value and all(isinstance(row, Mapping) for row in value):
        columns = list(dict.fromkeys(key for row in value for key in row))
        writer.writerow(columns)
        writer.writerows([row.get(c, "") for c in columns] for row in value)
    elif isinstance(value, Sequence) and all(isinstance(row, Sequence) and not isinstance(row, str) for row in value):
        writer.writerows(value)
    else:
        raise UserError(f"the reduce function returned a {type(value).__name__}; CSV output needs a list of dicts, a list of lists or a dict (or write .json)")
