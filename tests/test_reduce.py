"""``python ENTRY reduce DIR... [-o FILE]`` (issue 5, "Map/reduce"; must-show point 4).

An entry passes ``reduce=fold`` (means of result columns per parameter value) and runs on
three machines; ``reduce`` must give what the same fold gives on the rows of the machines'
results.csv files, read and parsed here independently.
"""

from __future__ import annotations

import csv
import inspect
import json
import math
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from conftest import entry_env, error_lines, run_entry, write_config_dir
from jobsplit.digits import every_digit
from jobsplit.errors import UserError

HEADER = ("Run Start Time", "Job Running Time", "Job Start Time", "Value", "Noise")
MACHINES = {"m1": [1.0, 2], "m2": [1.0, 2], "m3": [1.0, 2]}
CONFIG = "[experiment]\nlabel = reduce test\n"


def fold(rows):
    """Per group (the job's first argument): how many jobs, and the means of Value and Noise."""
    groups = {}
    for row in rows:
        group = row["args"][0]
        count, value, noise = groups.get(group, (0, 0.0, 0.0))
        groups[group] = (count + 1, value + row["Value"], noise + row["Noise"])
    return [{"group": g, "count": n, "mean_value": v / n, "mean_noise": s / n} for g, (n, v, s) in sorted(groups.items())]


ENTRY = '''\
import os

import jobsplit


def job(group, rep, random_obj, config, progress):
    if f"{group}-{rep}" in os.environ.get("FAIL_JOBS", "").split(","):
        raise RuntimeError("fails on purpose")
    return group * 1.5 + rep * 0.25, random_obj.random()


FOLD

pool = [(group, rep) for group in range(4) for rep in range(6)]

if __name__ == "__main__":
    jobsplit.main(job, pool, REDUCE)
'''.replace("FOLD", inspect.getsource(fold))


# --- helpers -------------------------------------------------------------------------------


def env_for(path: Path, **extra: str) -> dict[str, str]:
    return entry_env(XDG_CONFIG_HOME=str(path / "xdg"), XDG_STATE_HOME=str(path / "state"), NO_COLOR="1", **extra)  # state: see runhelpers.run_env


def entry_in(path: Path, name: str = "entry.py", reduce: str = "reduce=fold") -> Path:
    entry = path / name
    entry.write_text(ENTRY.replace("REDUCE", reduce), encoding="utf-8")
    return entry


def run_machine(entry: Path, out: Path, machine: str, *extra: str, **env: str) -> subprocess.CompletedProcess[str]:
    args = ["--console", "plain", "--yes", "--out", str(out), "--machine", machine, "--start-method", "fork", "--workers", "2", *extra]
    return run_entry(entry, *args, env=env_for(entry.parent, **env), cwd=entry.parent)


def reduce(entry: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return run_entry(entry, "reduce", *args, env=env_for(entry.parent), cwd=entry.parent)


def csv_rows(*machine_dirs: Path) -> list[dict]:
    """The machines' results.csv rows as the reduce function is promised them."""
    rows = []
    for machine_dir in machine_dirs:
        with open(machine_dir / "results.csv", encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                rows.append({**row, "Value": float(row["Value"]), "Noise": float(row["Noise"]), "args": json.loads(row["Job Args"])})
    return rows


def same(reduced: list[dict], expected: list[dict]) -> None:
    assert [(r["group"], r["count"]) for r in reduced] == [(e["group"], e["count"]) for e in expected]
    for got, want in zip(reduced, expected):
        assert got["mean_value"] == want["mean_value"]  # multiples of 0.25: exact in any order
        assert math.isclose(got["mean_noise"], want["mean_noise"], rel_tol=1e-12)


class Project:
    def __init__(self, base: Path) -> None:
        write_config_dir(base, config=CONFIG, header=HEADER, machines=MACHINES)
        self.base = base
        self.entry = entry_in(base)
        self.out = base / "out"
        for machine in MACHINES:
            result = run_machine(self.entry, self.out, machine)
            assert result.returncode == 0, result.stderr
        self.expected = fold(csv_rows(*(self.out / m for m in MACHINES)))


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Project:
    return Project(tmp_path_factory.mktemp("reduce-project"))


# --- complete inputs -----------------------------------------------------------------------


def test_the_three_machines_hold_the_whole_pool(project):
    rows = csv_rows(*(project.out / m for m in MACHINES))
    assert len(rows) == 24 and {r["Machine"] for r in rows} == set(MACHINES)
    assert [(e["group"], e["count"]) for e in project.expected] == [(g, 6) for g in range(4)]


def test_reduce_to_json_equals_the_fold_of_the_results_csv_rows(project, tmp_path):
    output = tmp_path / "reduced.json"
    result = reduce(project.entry, project.out, "-o", output)
    assert result.returncode == 0, result.stderr
    assert "24 of 24 jobs present" in result.stderr
    same(json.loads(output.read_text(encoding="utf-8")), project.expected)
    assert result.stdout == ""


def test_reduce_to_csv_equals_the_fold_of_the_results_csv_rows(project, tmp_path):
    output = tmp_path / "reduced.csv"
    result = reduce(project.entry, *(project.out / m for m in MACHINES), "-o", output)
    assert result.returncode == 0, result.stderr
    with open(output, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["group", "count", "mean_value", "mean_noise"]
        reduced = [{"group": int(r["group"]), "count": int(r["count"]), "mean_value": float(r["mean_value"]), "mean_noise": float(r["mean_noise"])} for r in reader]
    same(reduced, project.expected)


@pytest.mark.parametrize("output", [[], ["-o", "-"]], ids=["no -o", "-o -"])
def test_reduce_without_output_prints_json(project, output):
    """``-o -`` is stdout, as for every tool (it was refused for want of a .json or .csv)."""
    result = reduce(project.entry, project.out, *output)
    assert result.returncode == 0, result.stderr
    same(json.loads(result.stdout), project.expected)


# --- incomplete inputs ---------------------------------------------------------------------


def test_a_missing_machine_stops_the_reduction_unless_allowed(project, tmp_path):
    output = tmp_path / "reduced.json"
    result = reduce(project.entry, project.out / "m1", project.out / "m3", "-o", output)
    assert result.returncode == 1, result.stderr
    assert "missing from m2: all 8 jobs" in result.stderr
    assert "nothing reduced" in result.stderr
    assert not output.exists() and not list(tmp_path.iterdir())

    result = reduce(project.entry, project.out / "m1", project.out / "m3", "-o", output, "--allow-missing")
    assert result.returncode == 1, result.stderr
    same(json.loads(output.read_text(encoding="utf-8")), fold(csv_rows(project.out / "m1", project.out / "m3")))


def test_failed_jobs_stop_the_reduction_unless_allowed(project, tmp_path):
    root = tmp_path / "out"
    for machine in ("m1", "m2"):
        shutil.copytree(project.out / machine, root / machine)
    m3_args = [json.loads(r["Job Args"]) for r in csv_rows(project.out / "m3")]
    failing = [f"{g}-{r}" for g, r in m3_args[:2]]
    assert run_machine(project.entry, root, "m3", "--fresh", FAIL_JOBS=",".join(failing)).returncode == 1  # m3's share again, in another folder
    output = tmp_path / "reduced.csv"
    result = reduce(project.entry, root, "-o", output)
    assert result.returncode == 1, result.stderr
    assert re.search(r"missing from m3: 2 jobs \(2 failed\)", result.stderr), result.stderr
    assert not output.exists()

    result = reduce(project.entry, root, "-o", tmp_path / "reduced.json", "--allow-missing")
    assert result.returncode == 1, result.stderr
    reduced = json.loads((tmp_path / "reduced.json").read_text(encoding="utf-8"))
    same(reduced, fold(csv_rows(*(root / m for m in MACHINES))))  # m3's results.csv holds only its done jobs
    assert sum(r["count"] for r in reduced) == 22


def test_duplicated_inputs_stop_the_reduction(project, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(project.out / "m2", copy / "m2")
    output = tmp_path / "reduced.json"
    result = reduce(project.entry, project.out, copy, "-o", output)
    assert result.returncode == 1, result.stderr
    assert "present more than once: 8 jobs" in result.stderr
    assert not output.exists()


# --- refusals ------------------------------------------------------------------------------


def test_an_entry_without_reduce_says_so(project, tmp_path):
    entry = entry_in(project.base, "no_reduce.py", reduce="")
    output = tmp_path / "reduced.json"
    result = reduce(entry, project.out, "-o", output)
    assert result.returncode == 2, result.stderr
    (error,) = error_lines(result.stderr)
    assert error == result.stderr.strip()
    assert "reduce" in error and "jobsplit.main" in error, error
    assert not output.exists()


def test_an_unknown_output_extension_is_refused(project, tmp_path):
    output = tmp_path / "reduced.txt"
    result = reduce(project.entry, project.out, "-o", output)
    assert result.returncode == 2, result.stderr
    (error,) = error_lines(result.stderr)
    assert ".json" in error and ".csv" in error
    assert not output.exists()


def test_a_reduce_function_that_raises_is_shown_with_its_traceback(project, tmp_path):
    entry = entry_in(project.base, "bad_reduce.py", reduce="reduce=lambda rows: 1 / 0")
    output = tmp_path / "reduced.json"
    result = reduce(entry, project.out, "-o", output)
    assert result.returncode == 1, result.stderr
    assert "ZeroDivisionError" in result.stderr and "reduce function raised" in result.stderr
    assert not output.exists()


TWO_PASSES = "reduce=lambda rows: {'count': len(rows), 'first': rows[0]['Job ID'], 'mean': sum(1 for _ in rows) and sum(r['Value'] for r in rows) / len(rows)}"


def test_the_reduce_function_gets_a_list_it_may_read_twice(project, tmp_path):
    """``len(rows)``, ``rows[0]`` and a second pass: the rows were an iterator, so the first two
    failed and a mean taken in two passes came out 0 without an error."""
    entry = entry_in(project.base, "two_passes.py", reduce=TWO_PASSES)
    output = tmp_path / "two.json"
    result = reduce(entry, project.out, "-o", output)
    assert result.returncode == 0, result.stderr
    rows = csv_rows(*(project.out / m for m in MACHINES))
    got = json.loads(output.read_text(encoding="utf-8"))
    assert got["count"] == len(rows) == 24 and got["first"] in {r["Job ID"] for r in rows}
    assert math.isclose(got["mean"], sum(r["Value"] for r in rows) / len(rows), rel_tol=1e-12)


def test_the_fold_source_is_what_the_entry_uses():
    """The entry embeds this module's fold verbatim: the comparison is like with like."""
    assert textwrap.dedent(inspect.getsource(fold)) in ENTRY


TEXT_ENTRY = '''\
import jobsplit

TEXTS = ["plain", "bare\\rcr", "two\\nlines", "crlf\\r\\nend", 'q"uote,comma']


def job(n, random_obj, config, progress):
    return TEXTS[n], 0.5


def texts(rows):
    return sorted(row["Value"] for row in rows)


if __name__ == "__main__":
    jobsplit.main(job, [(n,) for n in range(len(TEXTS))], reduce=texts)
'''


def test_the_rows_reach_the_reduce_function_whatever_text_their_cells_hold(tmp_path):
    """A cell holding a lone CR (program output with a progress bar) went out unquoted, and
    ``reduce`` stopped with a traceback (csv.Error: new-line character seen in unquoted field)."""
    write_config_dir(tmp_path, header=HEADER, machines={"m1": [1.0, 2]})
    entry = tmp_path / "entry.py"
    entry.write_text(TEXT_ENTRY, encoding="utf-8")
    result = run_machine(entry, tmp_path / "out", "m1")
    assert result.returncode == 0, result.stderr
    result = reduce(entry, tmp_path / "out", "-o", tmp_path / "texts.json")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "texts.json").read_text(encoding="utf-8")) == sorted(["plain", "bare\rcr", "two\nlines", "crlf\r\nend", 'q"uote,comma'])


def test_a_result_column_named_args_is_refused_not_overwritten(tmp_path):
    """Each row gives the job's arguments under ``args``: a result column of that name was
    silently replaced by them (header.csv refuses the other reserved names). Refused by the run
    already, before any job: found by reduce, after the whole run, renaming the column changed
    the digest, and every job ran again."""
    write_config_dir(tmp_path, config=CONFIG, header=("Run Start Time", "Job Running Time", "Job Start Time", "args", "Noise"), machines={"m1": [1.0, 2]})
    entry = entry_in(tmp_path, reduce="reduce=lambda rows: [row['args'] for row in rows]")
    result = run_machine(entry, tmp_path / "out", "m1")
    assert result.returncode == 2 and not (tmp_path / "out").exists(), result.stderr
    (error,) = error_lines(result.stderr)
    assert 'header.csv has a column named "args", the key under which reduce gives each row its job\'s arguments; rename the column' in error


def test_the_running_time_reads_back_as_a_float_in_every_row(project, tmp_path):
    """jobsplit writes a running time with six decimals (``0.000012``, ``0.010000``), not as a
    float's repr: each such cell came back as text, and ``sum(r["Job Running Time"] ...)``
    failed, or a filter on floats silently left rows out."""
    entry = entry_in(project.base, "times.py", reduce="reduce=lambda rows: [[type(r['Job Running Time']).__name__, r['Job Running Time'], r['Job ID']] for r in rows]")
    result = reduce(entry, project.out, "-o", tmp_path / "times.json")
    assert result.returncode == 0, result.stderr
    written = {row["Job ID"]: float(row["Job Running Time"]) for row in csv_rows(*(project.out / m for m in MACHINES))}
    got = json.loads((tmp_path / "times.json").read_text(encoding="utf-8"))
    assert len(got) == 24 and all(kind == "float" and written[job_id] == value for kind, value, job_id in got), got


ODD_VALUES_ENTRY = '''\
import datetime
import decimal
import enum
import pathlib

import numpy

import jobsplit


class Color(str, enum.Enum):
    RED = "red"


def job(n, random_obj, config, progress):
    return [Color.RED, "50%\\r100%", "-0", 10**5000][n]


def summary(rows):
    values = {row["args"][0]: row["Value"] for row in rows}
    return {
        "color": values[0], "cr": values[1], "minus zero": values[2], "big": values[3],
        "file": "caf\\udce9.dat", "count": numpy.int64(len(rows)), "hist": numpy.array([5, 0, 2]),
        "mean": numpy.float32(0.5), "when": datetime.date(2026, 12, 7), "where": pathlib.Path("out/m1"),
        "exact": decimal.Decimal("0.10"),
    } | ({"hist": "[5, 0, 2]"} if "flat" in __file__ else {})


def fails(rows):
    return {"lazy": (row["Value"] for row in rows)}


if __name__ == "__main__":
    jobsplit.main(job, [(n,) for n in range(4)], reduce=fails if "fails" in __file__ else summary)
'''


def test_the_reduced_value_is_written_faithfully_or_refused(tmp_path):
    """What reduce wrote: a lone CR unquoted in summary.csv (its row broke in two), a traceback
    for a non-UTF-8 file name there and for an integer of 5,000 digits in both files; NumPy's
    values in JSON as their printout ("26", "[5 0 2]"), and anything else too (a generator as
    "<generator object ...>"). What a job returned: a str enum written as "Color.RED", and
    "-0" read back as the int 0."""
    pytest.importorskip("numpy")
    write_config_dir(tmp_path, header=("Run Start Time", "Job Running Time", "Job Start Time", "Value"), machines={"m1": [1.0, 2]})
    entry = tmp_path / "entry.py"
    entry.write_text(ODD_VALUES_ENTRY, encoding="utf-8")
    assert run_machine(entry, tmp_path / "out", "m1").returncode == 0
    expected = {
        "color": "red", "cr": "50%\r100%", "minus zero": "-0", "big": 10**5000, "file": "caf\udce9.dat", "count": 4,
        "hist": [5, 0, 2], "mean": 0.5, "when": "2026-12-07", "where": "out/m1", "exact": "0.10",
    }
    result = reduce(entry, tmp_path / "out", "-o", tmp_path / "summary.json")
    assert result.returncode == 0, result.stderr
    with every_digit():
        assert json.loads((tmp_path / "summary.json").read_text(encoding="utf-8")) == expected
    result = reduce(entry, tmp_path / "out", "-o", tmp_path / "summary.csv")
    assert result.returncode == 2 and "Traceback" not in result.stderr and not (tmp_path / "summary.csv").exists(), result.stderr
    assert error_lines(result.stderr) == ["error: the reduce function's value cannot be written as CSV: row 7, column 'value', is a ndarray; make each cell a number, a string, a boolean, None, a date or a path, or write .json"]
    flat = tmp_path / "flat.py"  # the same, its array as text
    flat.write_text(ODD_VALUES_ENTRY, encoding="utf-8")
    result = reduce(flat, tmp_path / "out", "-o", tmp_path / "summary.csv")
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "summary.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    with every_digit():
        texts = {**{key: str(value) for key, value in expected.items()}, "file": "caf\\udce9.dat", "hist": "[5, 0, 2]"}  # escaped as in results.csv
    assert rows[0] == ["key", "value"] and dict(rows[1:]) == texts and len(rows) == 12
    fails = tmp_path / "fails.py"
    fails.write_text(ODD_VALUES_ENTRY, encoding="utf-8")
    result = reduce(fails, tmp_path / "out", "-o", tmp_path / "fails.json")
    assert result.returncode == 2 and "Traceback" not in result.stderr and not (tmp_path / "fails.json").exists(), result.stderr
    (error,) = error_lines(result.stderr)
    assert "the reduce function's value cannot be written as JSON (it holds a generator)" in error


def test_nan_and_infinity_are_written_as_strings_json_readers_take():
    """JSON has no NaN or infinity: Python wrote them bare, and a strict reader (JavaScript's
    JSON.parse, R's jsonlite) refused the whole file. Written as proto3's JSON mapping writes
    them, wherever they lie: in a dict, a list, a tuple, a set, a key, a NumPy array or scalar."""
    numpy = pytest.importorskip("numpy")
    from jobsplit.reduction import _json_text

    nan, inf = float("nan"), float("inf")
    value = {
        "mean": nan, "max": inf, "min": -inf, "fine": 1.5, "pair": (nan, 2), "deep": [[{"x": -inf}]], "set": {inf},
        nan: "a key", "array": numpy.array([nan, 1.0, -inf]), "scalar": numpy.float32("nan"), "wide": numpy.float64(inf),
    }

    def refuse(constant: str) -> None:
        pytest.fail(f"a bare {constant} in the JSON")

    assert json.loads(_json_text(value), parse_constant=refuse) == {
        "mean": "NaN", "max": "Infinity", "min": "-Infinity", "fine": 1.5, "pair": ["NaN", 2], "deep": [[{"x": "-Infinity"}]], "set": ["Infinity"],
        "NaN": "a key", "array": ["NaN", 1.0, "-Infinity"], "scalar": "NaN", "wide": "Infinity",
    }
    cycle: list = [1.0]
    cycle.append(cycle)
    with pytest.raises(UserError, match=r"cannot be written as JSON \(Circular reference detected\)"):
        _json_text(cycle)


def test_folders_of_another_pool_are_refused_not_folded(project, tmp_path):
    """The study's pool grew (a fifth group) and its new campaign ran into another --out; a
    reduce given the old campaign's folder by mistake wrote the old pool's summary, four groups,
    with "24 of 24 jobs present; complete" and exit 0: the folders' own plan was complete, and
    nothing compared it with this entry's pool. Now refused, saying so."""
    grown = tmp_path / "grown"
    grown.mkdir()
    entry = grown / "entry.py"
    entry.write_text(ENTRY.replace("REDUCE", "reduce=fold").replace("for group in range(4)", "for group in range(5)"), encoding="utf-8")
    output = tmp_path / "reduced.json"
    result = reduce(entry, project.out, "-o", output)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    (error,) = error_lines(result.stderr)
    assert "this entry's pool" in error and "24" in error, error
    assert not output.exists()


def test_a_key_of_no_json_type_is_named_as_json_names_it():
    """NaN and infinities among the keys became strings, and every other key went through the
    same conversion: a tuple key became a list, and the refusal said "unhashable type: 'list'"
    instead of naming the tuple key."""
    import pytest

    from jobsplit.errors import UserError
    from jobsplit.reduction import _json_text

    with pytest.raises(UserError, match="not tuple"):
        _json_text({(1, 2): 3})
    assert json.loads(_json_text({math.inf: [math.nan]})) == {"Infinity": ["NaN"]}
