"""results.csv rows (issue 3, Results): columns, timing columns, Job ID/Args, injected config.

End to end under fork and spawn, then the row formatter's rules in-process.
"""

from __future__ import annotations

import enum
import json
import numbers
import re
import sys
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from unittest.mock import patch

import pytest

from conftest import run_entry
from jobsplit.config import Header
from jobsplit.results import Cells, ResultShapeError, RowFormatter
from runhelpers import CSV_COLUMNS, journal_jobs, pool_spec, read_results, run_args, run_env, spec_args, spec_id, write_kinds_entry

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def parse_utc(text: str) -> float:
    assert ISO_UTC.fullmatch(text), text
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_rows_hold_header_columns_ids_args_machine_and_injected_config(tmp_path, start_method):
    pool = [
        *pool_spec("ok", 5),
        ["sleep", 0, 0.3],
        ["config", 0],
        ["dict", 0],
        {"kind": "ok", "i": 7, "x": [1, 2.5, "ü"]},
        {"kind": "config", "i": 8},
    ]
    entry, config_dir = write_kinds_entry(tmp_path, pool)
    before = time.time()
    result = run_entry(entry, *run_args(config_dir, tmp_path / "out", "--start-method", start_method), env=run_env(tmp_path), timeout=90)
    after = time.time()
    assert result.returncode == 0, result.stderr
    results_path = tmp_path / "out" / "solo" / "results.csv"
    header, rows = read_results(results_path)
    assert header == list(CSV_COLUMNS)  # header.csv's columns, then Job ID, Job Args, Machine
    by_id = {row["Job ID"]: row for row in rows}
    assert len(by_id) == len(rows) == len(pool)
    for spec in pool:
        row = by_id[spec_id(spec)]
        assert row["Job Args"] == spec_args(spec)
        assert json.loads(row["Job Args"]) == (spec if isinstance(spec, list) else spec)
        assert row["Machine"] == "solo"
        assert row["Kind"] == (spec[0] if isinstance(spec, list) else spec["kind"])
        assert 0.0 <= float(row["Draw"]) < 1.0
    assert by_id[spec_id({"kind": "ok", "i": 7, "x": [1, 2.5, "ü"]})]["Job Args"] == '{"i":7,"kind":"ok","x":[1,2.5,"ü"]}'

    # Timing columns: one run start for all, each job's own start and running time.
    run_starts = {row["Run Start Time"] for row in rows}
    assert len(run_starts) == 1
    run_start = parse_utc(run_starts.pop())
    assert before - 1 <= run_start <= after
    for row in rows:
        job_start = parse_utc(row["Job Start Time"])
        running = float(row["Job Running Time"])
        assert run_start - 0.002 <= job_start <= after
        assert 0 <= running and job_start + running <= after + 0.002
    sleeper = by_id[spec_id(["sleep", 0, 0.3])]
    assert 0.3 <= float(sleeper["Job Running Time"]) < 3

    # Injected config with getfilesize; dict jobs get keyword arguments plus the three injected.
    assert json.loads(by_id[spec_id(["config", 0])]["Note"]) == [67108864, "plain value"]
    assert json.loads(by_id[spec_id({"kind": "config", "i": 8})]["Note"]) == [67108864, "plain value"]
    assert by_id[spec_id({"kind": "ok", "i": 7, "x": [1, 2.5, "ü"]})]["Note"] == "kwargs:i,kind,x"
    assert by_id[spec_id(["ok", 1])]["Note"] == "args"
    dict_row = by_id[spec_id(["dict", 0])]  # returned a dict in another key order
    assert (dict_row["Kind"], dict_row["Index"], dict_row["Note"]) == ("dict", "0", "args")

    # results.csv is exactly the journal's done rows.
    jobs = journal_jobs(tmp_path / "out" / "solo" / "journal.sqlite")
    assert all(job["state"] == "done" and job["attempts"] == 1 for job in jobs.values())
    lines = results_path.read_text(encoding="utf-8").splitlines(keepends=True)[1:]
    assert sorted(lines) == sorted(job["row"] for job in jobs.values())
    summary = re.search(r"solo: (\d+) of (\d+) done \([\d.]+%\), (\d+) failed; this run: (\d+) done in [\d.]+s \([\d.]+ jobs/s\)\. Results: (\S+)", result.stderr)
    assert summary, result.stderr
    assert summary.groups() == (str(len(pool)), str(len(pool)), "0", str(len(pool)), str(results_path))


# --- the formatter ---------------------------------------------------------------------------

STARTED = datetime(2026, 1, 2, 3, 4, 5, 500000, tzinfo=timezone.utc).timestamp()  # exact in binary


def formatter(*result_columns: str, timing=("Run Start Time", "Job Running Time", "Job Start Time")) -> RowFormatter:
    return RowFormatter(Header((*timing, *result_columns)), "m1", STARTED, "d" * 32, "c" * 12)


def test_timing_columns_follow_the_header_order():
    rows = formatter("A", timing=("Job Start Time", "Run Start Time", "Job Running Time"))
    line = rows.line((7,), STARTED + 1.25, 0.25, "ab" * 16, "[1]")
    assert line == "2026-01-02T03:04:06.750Z,2026-01-02T03:04:05.500Z,0.250000,7," + "ab" * 16 + ",[1],m1," + "d" * 32 + "," + "c" * 12 + "\n"


@pytest.mark.parametrize(
    "value, cells",
    [
        (3.5, ["3.5"]),
        (0.1, ["0.1"]),
        (None, [""]),
        (True, ["True"]),
        ("a,b\n", ["a,b\n"]),
        (12, ["12"]),
        (Fraction(1, 4), ["0.25"]),
        (Decimal("2.5"), ["2.5"]),
        ([1], ["1"]),
        ({"Only": 2}, ["2"]),
    ],
)
def test_one_result_column_takes_a_scalar_or_a_one_item_row(value, cells):
    assert formatter("Only").cells(value) == cells


class _ArrayScalar:
    """As NumPy's scalars and arrays are to the formatter: no ``numbers.Number`` (``numpy.bool_``,
    a 0-d array), and ``item()`` gives the Python value, or raises for more than one item."""

    def __init__(self, *items: object) -> None:
        self.items = items

    def item(self) -> object:
        if len(self.items) != 1:
            raise ValueError("can only convert an array of size 1 to a Python scalar")
        return self.items[0]


def test_a_numpy_like_scalar_is_written_as_its_python_value():
    rows = formatter("Big", "Mean", "Label", "Empty")
    assert rows.cells((_ArrayScalar(True), _ArrayScalar(1.5), _ArrayScalar("a,b"), _ArrayScalar(None))) == ["True", "1.5", "a,b", ""]
    for value in (_ArrayScalar(1, 2), _ArrayScalar(object()), _ArrayScalar([1])):  # more than one item, or no plain value
        with pytest.raises(ResultShapeError, match="the value for column 'Only' is a _ArrayScalar"):
            formatter("Only").cells(value)


def test_numpy_values_are_written_as_their_python_values_and_a_one_dimensional_array_is_a_row():
    """What research code returns: NumPy scalars (``numpy.bool_`` is no ``numbers.Number``), a
    ``datetime64``, a 0-d array, and the row itself as ``numpy.array([estimate, error])``, which
    was failed after the job's work ("returned a ndarray but header.csv expects 2 values"). An
    array of two dimensions is no row (which axis?); one with keys is one by its keys (see the
    pandas test)."""
    numpy = pytest.importorskip("numpy")
    rows = formatter("Estimate", "Error")
    assert rows.cells(numpy.array([1.5, 0.25])) == ["1.5", "0.25"]
    assert rows.cells(numpy.array([3, -4], dtype=numpy.int64)) == ["3", "-4"]
    assert rows.cells(numpy.array(["2020-01-01", "2021-06-30"], dtype="datetime64[D]")) == ["2020-01-01", "2021-06-30"]
    assert rows.cells((numpy.float64(1.5), numpy.bool_(True))) == ["1.5", "True"]
    assert rows.cells([numpy.array(2.5), numpy.int32(7)]) == ["2.5", "7"]  # a 0-d array is its one value
    assert rows.cells(numpy.array([numpy.nan, numpy.inf])) == ["nan", "inf"]
    assert formatter("Only").cells(numpy.array([7])) == ["7"]
    with pytest.raises(ResultShapeError, match=r"returned 3 values but header.csv has 2 result columns"):
        rows.cells(numpy.array([1.0, 2.0, 3.0]))
    with pytest.raises(ResultShapeError, match=r"returned a ndarray but header.csv expects 2 values \(a list, tuple, dict or one-dimensional array"):
        rows.cells(numpy.array([[1.0, 2.0]]))



def test_a_masked_numpy_value_is_an_empty_cell_not_the_value_under_its_mask():
    """The mean of an array whose every value is masked (``numpy.ma.masked_invalid(x).mean()``
    over NaNs) is ``numpy.ma.masked``, a missing value: it was written as 0.0, the number under
    its mask, and a masked 0-d array as its hidden value, silently; a masked item of a row was
    already an empty cell."""
    numpy = pytest.importorskip("numpy")
    fully = numpy.ma.masked_invalid([numpy.nan, numpy.nan])
    assert formatter("Only").cells(fully.mean()) == [""]
    rows = formatter("Mean", "Other")
    assert rows.cells((fully.mean(), numpy.ma.array(5.0, mask=True))) == ["", ""]
    assert rows.cells(numpy.ma.array([1.5, 2.5], mask=[False, True])) == ["1.5", ""]
    assert rows.cells((numpy.ma.array([1.0, 2.0], mask=[False, True]).sum(), numpy.ma.array(3.0, mask=False))) == ["1.0", "3.0"]
    with pytest.raises(ResultShapeError, match="the value for column 'Only' is a MaskedArray"):  # several items in one cell
        formatter("Only").cells([numpy.ma.array([1.0, 2.0], mask=[True, False])])


def test_numpy_datetimes_are_iso_8601_to_the_nanosecond_and_durations_fail_saying_why():
    """A pandas column of times is ``datetime64[ns]`` (pandas 2), whose ``item()`` is an integer (no Python
    datetime holds nanoseconds): such a value was written as 1709368200000000000, silently. A
    ``timedelta64`` counts as an integer, and its conversion raised a TypeError taken for
    jobsplit's own failure: three such jobs in a row stopped the run (exit 70). A duration has
    no one text (seconds? days?): it fails as the job's, saying what to return, as a value whose
    own conversion fails does."""
    numpy = pytest.importorskip("numpy")
    pandas = pytest.importorskip("pandas")
    moment = numpy.datetime64("2024-03-02T08:30:00.123456789", "ns")
    column = pandas.DataFrame({"t": pandas.to_datetime(["2024-03-02 08:30"]).as_unit("ns")})["t"].values  # pandas 2's default unit
    assert formatter("When", "Column", "Missing", "Day").cells((moment, column[0], numpy.datetime64("NaT", "ns"), numpy.datetime64("2024-03-02"))) == [
        "2024-03-02T08:30:00.123456789", "2024-03-02T08:30:00.000000000", "", "2024-03-02"
    ]  # fmt: skip
    assert formatter("A", "B").cells(numpy.array(["2024-03-02T08:30:00.5", "2024-03-03"], dtype="datetime64[ns]")) == ["2024-03-02T08:30:00.500000000", "2024-03-03T00:00:00.000000000"]
    with pytest.raises(ResultShapeError, match="'Only' is a ndarray; cells must be"):  # several times in one cell: NumPy's printout was written
        formatter("Only").cells([numpy.array(["2024-01-01", "2024-01-02"], dtype="datetime64[ns]")])
    for duration in (numpy.diff(column.repeat(2))[0], numpy.timedelta64(3, "D"), timedelta(seconds=5), pandas.Timedelta("1h")):
        with pytest.raises(ResultShapeError, match=r"'Only' is an? \w+, a duration: return a number in a unit of yours \(td.total_seconds\(\)"):
            formatter("Only").cells(duration)


def test_pandas_not_a_time_is_an_empty_cell_as_numpy_s_is():
    """``pandas.NaT`` (the latest time of an empty column, a failed ``to_datetime``) is a
    ``datetime`` whose ``isoformat()`` is "NaT": it was written as that text, no ISO 8601 time,
    where NumPy's NaT beside it is an empty cell."""
    numpy = pytest.importorskip("numpy")
    pandas = pytest.importorskip("pandas")
    assert formatter("Latest", "Missing").cells((pandas.NaT, numpy.datetime64("NaT", "ns"))) == ["", ""]
    assert formatter("Only").cells(pandas.Series({"Only": pandas.NaT}, dtype=object)) == [""]


@numbers.Integral.register
class _NoInt:
    """An integer whose conversion fails in C, as a NumPy value's may."""

    __int__ = None  # int() then raises TypeError with no Python frame of the value's


def test_a_value_whose_conversion_fails_fails_its_job_not_jobsplit():
    with pytest.raises(ResultShapeError, match=r"the value for column 'Only', a _NoInt, has no text \(TypeError: "):
        formatter("Only").cells(_NoInt())


def test_a_pandas_series_is_a_row_by_its_labels():
    """``df.mean()``, ``s.agg(["mean", "std"])``, ``pd.Series({"std": s, "mean": m})``: the row of
    a pandas user, labelled, in whatever order. Its labels name the columns, as a dict's keys
    do; it was failed after the job's work ("returned a Series but header.csv expects 2
    values"). Labels that are not exactly the columns, or one label twice, fail naming them."""
    pandas = pytest.importorskip("pandas")
    rows = formatter("mean", "std")
    assert rows.cells(pandas.Series({"std": 0.5, "mean": 2})) == ["2.0", "0.5"]  # one dtype: float
    assert rows.cells(pandas.Series([1.0, 2.0, 6.0]).agg(["mean", "std"])) == ["3.0", repr(float(pandas.Series([1.0, 2.0, 6.0]).std()))]
    assert rows.cells(pandas.DataFrame({"mean": [1.0, 3.0], "std": [0.5, 1.5]}).mean()) == ["2.0", "1.0"]
    with pytest.raises(ResultShapeError, match=r"returned a Series without \['std'\] and with unknown keys \['max'\]; its keys must be exactly"):
        rows.cells(pandas.Series({"mean": 1.0, "max": 2.0}))
    with pytest.raises(ResultShapeError, match=r"returned a Series without \['mean', 'std'\] and with unknown keys \['0', '1'\]"):
        rows.cells(pandas.Series([1.0, 2.0]))  # no labels: which is which?
    with pytest.raises(ResultShapeError, match=r"returned a Series with the label 'mean' more than once"):
        rows.cells(pandas.Series([1.0, 2.0], index=["mean", "mean"]))


def test_dates_times_and_paths_are_written_as_their_standard_text():
    """Dates and times as ISO 8601 (a NumPy ``datetime64`` gives one by ``item()``), paths as
    given: each has one text, so a job returning one is not failed after its work. An enum has
    none (its name? its value?), and fails naming it."""
    moment = datetime(2026, 12, 6, 20, 59, 3, 250_000, tzinfo=timezone(timedelta(hours=1)))
    values = (moment, moment.date(), datetime(2026, 1, 1, 7, 30).time(), Path("runs/a b.csv"), _ArrayScalar(datetime(2026, 1, 2).date()))
    cells = formatter("When", "Day", "Time", "File", "Stamp").cells(values)
    assert cells == ["2026-12-06T20:59:03.250000+01:00", "2026-12-06", "07:30:00", "runs/a b.csv", "2026-01-02"]
    with pytest.raises(ResultShapeError, match="'Only' is a Color; cells must be numbers, strings, booleans, None, dates, times or paths"):
        formatter("Only").cells(enum.Enum("Color", "RED").RED)


def test_an_integer_of_any_length_is_written_whole():
    """Python refuses str() of an int of more than 4,300 digits by default; a result is written
    whole all the same (it was taken for an error in jobsplit's own code), and the limit stays
    as the job had it."""
    huge = 7 * 10**5000 + 1
    limit = sys.get_int_max_str_digits()
    assert formatter("A", "B").cells((huge, -huge)) == [f"7{'0' * 4999}1", f"-7{'0' * 4999}1"]
    assert formatter("Only").cells(huge) == [f"7{'0' * 4999}1"]
    assert sys.get_int_max_str_digits() == limit
    with pytest.raises(ValueError):
        str(huge)


def test_no_result_columns_take_none():
    assert formatter().cells(None) == []
    with pytest.raises(ResultShapeError, match="expects None"):
        formatter().cells(5)


@pytest.mark.parametrize(
    "value, message",
    [
        ((1, 2, 3), r"returned 3 values but header.csv has 2 result columns \['A', 'B'\]"),
        ([1], r"returned 1 value but header.csv has 2 result columns"),
        ({"A": 1}, r"without \['B'\]"),
        ({"A": 1, "B": 2, "C": 3}, r"unknown keys \['C'\]"),
        ((1, object()), r"'B' is an object"),
        ((1, [2]), r"'B' is a list"),
        (5, r"returned an int but header.csv expects 2 values"),
        ("ab", r"returned a str but header.csv expects 2 values"),
    ],
)
def test_wrong_shapes_name_what_was_expected_and_what_came_back(value, message):
    with pytest.raises(ResultShapeError, match=message):
        formatter("A", "B").cells(value)


def test_a_row_round_trips_through_csv():
    import csv
    import io

    line = formatter("A", "B").line(("x,\"y\"", 1e-300), STARTED, 1.0, "cd" * 16, '["a,b"]')
    (fields,) = list(csv.reader(io.StringIO(line)))
    assert fields[3:] == ['x,"y"', "1e-300", "cd" * 16, '["a,b"]', "m1", "d" * 32, "c" * 12]


# --- the line is built without csv: what csv writes, a lone CR quoted too (issue 14) ------------

from hypothesis import given, settings
from hypothesis import strategies as st

_CELLS = st.one_of(st.text(alphabet=st.sampled_from(list('ab,"\n\r é;\t'))), st.integers(), st.floats(allow_nan=False), st.none(), st.booleans())


@settings(max_examples=300, deadline=None)
@given(st.lists(_CELLS, min_size=1, max_size=4), st.text(alphabet=st.sampled_from(list('[1,"a"]{}:\n'))), st.permutations(["Run Start Time", "Job Running Time", "Job Start Time"]))
def test_a_line_is_exactly_what_csv_writes(cells, job_args, timing):
    """csv.writer quotes a cell holding a character of its line terminator: given "\\r\\n", both
    CR and LF, as RFC 4180 wants (given "\\n", Python before 3.13 left a lone CR unquoted, and
    readers broke the row there). The line reads back to exactly its cells."""
    import csv
    import io

    columns = [f"C{i}" for i in range(len(cells))]
    formatter = RowFormatter(Header((*timing, *columns)), "m[3]", STARTED, "d" * 32, "c" * 12)
    value = cells if len(cells) > 1 else cells[0]
    line = formatter.line(value, STARTED + 1.5, 0.25, "cd" * 16, job_args)
    expected_fields = {"Run Start Time": formatter.run_started, "Job Start Time": formatter.line(value, STARTED + 1.5, 0.25, "cd" * 16, "x").split(",")[timing.index("Job Start Time")], "Job Running Time": "0.250000"}
    fields = [*(expected_fields[c] for c in timing), *formatter.cells(value), "cd" * 16, job_args, "m[3]", "d" * 32, "c" * 12]
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(fields)
    assert line == buffer.getvalue().removesuffix("\r\n") + "\n"
    assert list(csv.reader(io.StringIO(line, newline=""))) == [fields]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from(list('ab,"\n\r é'))), min_size=2, max_size=5))  # a row has many cells (csv quotes a lone empty one)
def test_a_row_written_with_a_lone_cr_unquoted_reads_back_requoted_and_any_other_line_as_it_is(cells):
    """0.1's rows came from csv.writer(lineterminator="\n"), which before Python 3.13 quoted a
    cell for a comma, a quote or a LF, but not for a lone CR. ``requoted`` makes such a line what
    RFC 4180 wants, and leaves a line written as it wants (the csv module given "\r\n") alone."""
    import csv
    import io

    from jobsplit.results import requoted

    def quoted(cell: str, breaks: str) -> str:
        return f'"{cell.replace(chr(34), 2 * chr(34))}"' if any(c in cell for c in ',"' + breaks) else cell

    legacy = ",".join(quoted(cell, "\n") for cell in cells) + "\n"
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(cells)
    proper = buffer.getvalue().removesuffix("\r\n") + "\n"
    assert requoted(legacy) == proper
    assert requoted(proper) == proper
    assert list(csv.reader(io.StringIO(requoted(legacy), newline=""))) == [cells]


# --- rows read back from results.csv when a lost journal is rebuilt --------------------------


def _id_and_args(n: int) -> tuple[str, str]:
    """The Job ID and Job Args cells of the job ``(n,)``."""
    from jobsplit.pool import id_of_text

    return id_of_text(f"[{n}]").hex(), f"[{n}]"


_TEXT = st.text(alphabet=st.sampled_from(list('ab,"\n\r\x0c\u2028 é')), max_size=6)


@settings(max_examples=200, deadline=None)
@given(st.lists(_TEXT, min_size=1, max_size=6), st.integers(0, 6), st.sampled_from(['x,"oops', 'a,1,2,3,4,5,6,7,"oops', "cut", '"']))
def test_rows_read_back_whatever_their_cells_and_a_damaged_line_costs_only_itself(tmp_path_factory, notes, at, damage):
    """Each row formatted for results.csv reads back as exactly that row (cells with any line
    break, quotes and commas); a damaged line put among them (an unclosed quote that would take
    in the lines after it, some of them even as many cells as a row) is the only row lost, and
    it is named, unless it is the last: a row cut short, as a crash leaves it."""
    from jobsplit.recovery import read_rows
    from jobsplit.results import csv_header_line

    header = Header(("Run Start Time", "Job Running Time", "Job Start Time", "Note"))
    formatter = RowFormatter(header, "m", STARTED, "d" * 32, "c" * 12)
    lines = [formatter.line(note, STARTED + n, 0.5, *_id_and_args(n)) for n, note in enumerate(notes)]
    damaged = [*lines[:at], damage + "\n", *lines[at:]]
    path = tmp_path_factory.mktemp("rows") / "results.csv"
    path.write_bytes((csv_header_line(header) + "".join(damaged)).encode("utf-8"))
    table = read_rows(path, header, "d" * 32, lambda job: True, digest_known=True)
    assert [row.line for row in table.rows] == lines
    assert [row.started for row in table.rows] == pytest.approx([STARTED + n for n in range(len(notes))])
    line = 2 + sum(line.count("\n") for line in lines[:at])
    assert line in [n for numbers in table.unusable.values() for n in numbers]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_TEXT, min_size=1, max_size=6), st.integers(0, 6), st.lists(_TEXT, max_size=3), st.booleans(),
    st.sampled_from(["", 'x,"oops\n', "cut", "changed", "bom", "stranger", "latin-1"]), st.sampled_from([1, 2, 1024]),
)
def test_rows_the_journal_wrote_are_taken_as_read_and_the_rest_read_as_before(tmp_path_factory, notes, held, extra, ahead, damage, block):
    """results.csv as the journal wrote it (its header and the journal's rows, in order) is not
    read back row by row (issue 14: a million rows took 20 s and 1.5 GB); what follows that part
    (rows the journal lacks: an older journal copied back; damaged lines; a torn last row; a
    changed row; a row of another job than this machine's; bytes of another encoding), also where
    the journal holds a row the file lacks (``ahead``), reads back as reading the whole file does:
    the same rows to take back, the same lines named, the same refusal naming the same line. The
    file is compared ``block`` lines at a time."""
    from jobsplit import recovery
    from jobsplit.errors import UserError
    from jobsplit.recovery import read_rows
    from jobsplit.results import csv_header_line

    header = Header(("Run Start Time", "Job Running Time", "Job Start Time", "Note"))
    formatter = RowFormatter(header, "m", STARTED, "d" * 32, "c" * 12)
    lines = [formatter.line(note, STARTED + n, 0.5, *_id_and_args(n)) for n, note in enumerate([*notes, *extra])]
    held = min(held, len(notes))
    journal = lines[:held] + ([formatter.line("ahead", STARTED, 0.5, *_id_and_args(99))] if ahead else [])
    stranger = _id_and_args(len(lines) - 1)[0] if damage == "stranger" and len(lines) > held else None  # a row the journal lacks: its own are this machine's
    body = "".join(lines)
    if damage == "changed" and held:
        body = body.replace(lines[held - 1], lines[held - 1].replace("m,", "n,", 1), 1)
    elif damage in ('x,"oops\n', "cut"):
        body += damage
    data = (("\ufeff" if damage == "bom" else "") + csv_header_line(header) + body).encode("utf-8") + (b"caf\xe9\n" if damage == "latin-1" else b"")
    folder = tmp_path_factory.mktemp("rows")
    path, read_whole = folder / "results.csv", folder / "whole" / "results.csv"
    path.write_bytes(data)
    read_whole.parent.mkdir()
    read_whole.write_bytes(("" if damage == "bom" else "\ufeff").encode("utf-8") + data)  # a BOM: no line is the journal's, every one is read

    def read(source: Path):
        try:
            with patch.object(recovery, "_BLOCK_LINES", block):
                return read_rows(source, header, "d" * 32, lambda job: job != stranger, digest_known=True, journal_lines=journal)
        except UserError as exc:
            return str(exc).replace(str(read_whole), str(path))

    whole, fast = read(read_whole), read(path)
    if isinstance(whole, str):
        assert fast == whole  # the same line named
        return
    assert not isinstance(fast, str)
    done = {_id_and_args(n)[0] for n in range(held)}
    assert [row for row in fast.rows if row.job_id not in done] == [row for row in whole.rows if row.job_id not in done]
    assert fast.unusable == whole.unusable
    assert (fast.as_written is not None) == (data == (csv_header_line(header) + "".join(journal)).encode("utf-8"))


@pytest.mark.parametrize("ends", ["cr", "cr-then-lf"])
def test_lines_ended_by_a_cr_alone_are_a_foreign_table(tmp_path, ends):
    """results.csv whose lines end in a CR alone (a classic Mac spreadsheet's "CSV"): it read
    back as no rows at all, and was written again from the journal without the rows only it
    held, kept nowhere; with a line ended by a newline after them (a row appended by a script),
    the header read ended in a csv.Error traceback. Both are refused as a table of another
    form, so that the run keeps the file in a backup folder and says so."""
    from jobsplit.recovery import ForeignTable, read_rows
    from jobsplit.results import csv_header_line

    header = Header(("Run Start Time", "Job Running Time", "Job Start Time", "Note"))
    formatter = RowFormatter(header, "m", STARTED, "d" * 32, "c" * 12)
    text = csv_header_line(header) + "".join(formatter.line(note, STARTED, 0.5, *_id_and_args(n)) for n, note in enumerate(["one", "two"]))
    data = text.replace("\n", "\r").encode("utf-8") + (b"appended\n" if ends == "cr-then-lf" else b"")
    path = tmp_path / "results.csv"
    path.write_bytes(data)
    with pytest.raises(ForeignTable, match="has lines ended by a CR alone"):
        read_rows(path, header, "d" * 32, lambda job: True, digest_known=True)


def test_a_row_of_another_plan_is_refused_naming_its_line(tmp_path):
    """The line number counts the lines of the rows before it, line breaks in their cells too."""
    from jobsplit.errors import UserError
    from jobsplit.recovery import read_rows
    from jobsplit.results import csv_header_line

    header = Header(("Run Start Time", "Job Running Time", "Job Start Time", "Note"))
    formatter = RowFormatter(header, "m", STARTED, "d" * 32, "c" * 12)
    notes = ["one", "two\nlines", "three\r\nlines\nhere", "stranger"]
    lines = [formatter.line(note, STARTED, 0.5, *_id_and_args(n)) for n, note in enumerate(notes)]
    path = tmp_path / "results.csv"
    path.write_bytes((csv_header_line(header) + "".join(lines)).encode("utf-8"))
    with pytest.raises(UserError, match=f"{re.escape(str(path))} line 8 holds a result of another plan"):
        read_rows(path, header, "d" * 32, lambda job: job != _id_and_args(3)[0], digest_known=True)


@pytest.mark.parametrize(
    ("tail", "named"),
    [("", []), ("2026-01-02T03", []), ('2026-01-02T03:04:05.500Z,0.5,2026-01-02T03:04:05.500Z,"two\nli', []), ("a,b\n", [4]), ('x,"two\nlines"\n', [4, 5]), ('x,"open\n', [4])],
    ids=["none", "cut-short", "cut-short-in-a-cell", "damaged-last", "damaged-two-lines", "unclosed-last"],
)
def test_only_a_last_row_cut_short_goes_unnamed(tmp_path, tail, named):
    """A crash mid-write leaves the start of a row after the last one, the file ending within
    it (its line breaks, if any, within a quoted cell): that is no result, and never was. Any
    other line that is no row is named, a last one that ends its line too. Before, every such line was skipped in silence, and its job ran again unsaid."""
    from jobsplit.recovery import read_rows
    from jobsplit.results import csv_header_line

    header = Header(("Run Start Time", "Job Running Time", "Job Start Time", "Note"))
    formatter = RowFormatter(header, "m", STARTED, "d" * 32, "c" * 12)
    lines = [formatter.line(note, STARTED, 0.5, *_id_and_args(n)) for n, note in enumerate(["one", "two"])]
    path = tmp_path / "results.csv"
    path.write_bytes((csv_header_line(header) + "".join(lines) + tail).encode("utf-8"))
    table = read_rows(path, header, "d" * 32, lambda job: True, digest_known=True)
    assert [row.line for row in table.rows] == lines
    assert [n for numbers in table.unusable.values() for n in numbers] == named


def test_rows_saved_with_windows_line_ends_read_back_as_jobsplit_wrote_them(tmp_path):
    """A results.csv saved again with CR LF line ends (Excel, an editor): the rebuilt journal
    took each row's CR into its Code cell (``"67889589b7db\r"``), and merge-results called the
    rows of one code "mixed code". A row's CR LF is its line end; a line break within a cell that
    became a CR LF with them (was it a newline?) makes its row unusable, named."""
    from jobsplit.recovery import read_rows
    from jobsplit.results import csv_header_line

    header = Header(("Run Start Time", "Job Running Time", "Job Start Time", "Note"))
    formatter = RowFormatter(header, "m", STARTED, "d" * 32, "c" * 12)
    lines = [formatter.line(note, STARTED, 0.5, *_id_and_args(n)) for n, note in enumerate(["one", "bare\rcr", "two\nlines", "four"])]
    path = tmp_path / "results.csv"
    path.write_bytes((csv_header_line(header) + "".join(lines) + "\n").replace("\n", "\r\n").encode("utf-8"))
    table = read_rows(path, header, "d" * 32, lambda job: True, digest_known=True)
    assert [row.line for row in table.rows] == [lines[0], lines[1], lines[3]]
    assert table.unusable == {"a line break within a cell that may have been changed with the line ends (to CR LF)": [4]}  # one row of two lines: named once (it was also "not a whole row" at line 5)


def test_a_row_whose_job_id_is_not_that_of_its_job_args_is_named_not_taken(tmp_path):
    """Only the Job ID column sorted (Excel's "continue with the current selection"), the journal
    lost: the rebuilt journal paired ids with other jobs' results, and merge-results called the
    plan "complete: every job of the plan exactly once". The id is the hash of the Job Args
    cell: a row whose id is not is no result of that job, named like a damaged one."""
    from jobsplit.recovery import read_rows
    from jobsplit.results import csv_header_line

    header = Header(("Run Start Time", "Job Running Time", "Job Start Time", "Note"))
    formatter = RowFormatter(header, "m", STARTED, "d" * 32, "c" * 12)
    ids, args = zip(*map(_id_and_args, range(4)))
    lines = [formatter.line(f"of {n}", STARTED, 0.5, ids[n], args[n]) for n in range(4)]
    swapped = [formatter.line(f"of {n}", STARTED, 0.5, ids[3 - n], args[n]) for n in (1, 2)]
    path = tmp_path / "results.csv"
    path.write_bytes((csv_header_line(header) + lines[0] + "".join(swapped) + lines[3]).encode("utf-8"))
    table = read_rows(path, header, "d" * 32, lambda job: True, digest_known=True)
    assert [row.line for row in table.rows] == [lines[0], lines[3]]
    assert table.unusable == {"a Job ID that is not the id of the row's Job Args (as after one column was sorted on its own)": [3, 4]}


def test_a_row_the_journal_holds_as_superseded_is_not_taken_back_as_done(tmp_path):
    """A shared queue accepted another host's result first: the journal marks this host's done
    attempt superseded, and its row leaves results.csv only when the run's end writes the file
    again. A run killed before that left the row there, and the next start took it back as done:
    a second result of the job, which merge-results then counted twice."""
    from jobsplit.journal import AttemptRow, Journal
    from jobsplit.recovery import adopt, read_rows
    from jobsplit.results import csv_header_line
    from jobsplit.states import JobState, Outcome

    header = Header(("Run Start Time", "Job Running Time", "Job Start Time", "Note"))
    formatter = RowFormatter(header, "m", STARTED, "d" * 32, "c" * 12)
    (superseded, kept, lost), args = zip(*map(_id_and_args, range(3)))
    lines = [formatter.line(f"of {n}", STARTED, 0.5, job_id, args[n]) for n, job_id in enumerate((superseded, kept, lost))]
    journal = Journal(tmp_path / "journal.sqlite")
    journal.initialize({"digest": "d" * 32}, [superseded, kept, lost])
    journal.commit(1, [AttemptRow(job_id, 1, 1, 0, 7, STARTED, STARTED + 0.5, Outcome.DONE, JobState.DONE, row=line) for job_id, line in zip((superseded, kept), lines)], [], STARTED + 1)
    journal.supersede([superseded])
    path = tmp_path / "results.csv"
    path.write_text(csv_header_line(header) + "".join(lines), encoding="utf-8")  # the journal lost the last row (an older copy)
    table = read_rows(path, header, "d" * 32, lambda job: True, digest_known=True, journal_lines=journal.result_lines())
    assert adopt(journal, table.rows) == 1
    assert dict(journal.states()) == {superseded: JobState.SUPERSEDED, kept: JobState.DONE, lost: JobState.DONE}
    journal.close()


def test_cells_made_beforehand_are_taken_as_they_are():
    """A worker makes a value's cells while its job still counts as running (worker.cells_in_job)
    and formats the row later: the cells go out as made, quoted as any cell, and a second pass
    over them (which relied on cell_text leaving an exact str unchanged) is not made."""
    rows = formatter("A", "B")
    made = Cells(["1.50", 'a,"b"'])
    assert rows.cells(made) is made
    assert rows.line(made, STARTED, 0.5, "ab" * 16, "[1]").split(",", 3)[3].startswith('1.50,"a,""b"""')
