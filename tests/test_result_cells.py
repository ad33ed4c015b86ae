"""Result cells read back whole by jobsplit's own readers (the journal's rebuild from results.csv,
reduce, the report), whatever a job returned: a cell longer than the csv module reads by default
(128 KiB), an integer of more digits than int() converts by default (4,300), a NUL (which Python
3.10's csv module refuses). Run on every Python this machine has (``scripts/test-pythons``)."""

from __future__ import annotations

from pathlib import Path

from jobsplit.config import Header
from jobsplit.merge import _parse_cell
from jobsplit.pool import id_of_text
from jobsplit.recovery import read_rows
from jobsplit.results import RowFormatter, csv_header_line, row_cells

HEADER = Header(("Run Start Time", "Job Running Time", "Job Start Time", "Value"))
DIGEST = "d" * 32


def test_long_cells_and_long_integers_read_back_whole():
    long_text, digits = "x" * 300_000, "9" * 5000
    assert list(row_cells([f'{long_text},"{long_text}",{digits}\n'])) == [[long_text, long_text, digits]]
    assert _parse_cell(digits) == 10**5000 - 1 and _parse_cell("-" + digits) == 1 - 10**5000


def test_a_cell_holding_nul_reads_back():
    assert list(row_cells(['a\0b,"c\0,d"\n', "e,f\n"])) == [["a\0b", "c\0,d"], ["e", "f"]]


def test_the_journal_rebuild_keeps_rows_of_any_cell(tmp_path: Path):
    """A row the rebuild cannot read is taken for a damaged one, and its job runs again."""
    rows = RowFormatter(HEADER, "m1", 1.7e9, DIGEST, "c" * 12)
    values = {"[1]": "x" * 200_000, "[2]": "a\0b", "[3]": 10**5000}
    path = tmp_path / "results.csv"
    path.write_text(csv_header_line(HEADER) + "".join(rows.line(value, 1.7e9 + 1, 0.5, id_of_text(args).hex(), args) for args, value in values.items()), encoding="utf-8")
    read = read_rows(path, HEADER, DIGEST, lambda job_id: True, digest_known=True)
    assert [row.job_id for row in read.rows] == [id_of_text(args).hex() for args in values]


def test_a_cell_reads_back_as_a_number_only_where_jobsplit_wrote_one():
    """What reduce gets: the ints and floats jobsplit wrote (``int_text``, a float's ``repr``) come
    back as numbers; text that only reads as one stays the text a job returned. ``"007"`` and
    ``"1e3"`` came back as 7.0 and 1000.0 (a zip code, a sample name). A bool came back as the
    text ``"False"``, which is true: ``if row["converged"]`` counted every row."""
    values = (7, -0.0, 0.1, 1e300, float("inf"), 2.5e-8, "007", "1e3", "1_000", " 7", True, False, "true", "-0")
    rows = RowFormatter(Header(("Run Start Time", "Job Running Time", "Job Start Time", *"ABCDEFGHIJKLMN")), "m1", 1.7e9, DIGEST, "c" * 12)
    (cells,) = row_cells([rows.line(values, 1.7e9, 0.5, "1" * 32, "[1]")])
    parsed = [_parse_cell(cell) for cell in cells[3:17]]
    assert parsed == [7, -0.0, 0.1, 1e300, float("inf"), 2.5e-8, "007", "1e3", "1_000", " 7", True, False, "true", "-0"]
    assert [type(value) for value in parsed] == [int, float, float, float, float, float, str, str, str, str, bool, bool, str, str]
    assert _parse_cell("") is None
