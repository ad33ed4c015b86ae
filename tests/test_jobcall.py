"""What is refused before anything runs, in one sentence: a job function that cannot take what
jobsplit passes (``random_obj``, ``config``, ``progress=``), one that spawn workers cannot
receive, and an empty pool; any other is left alone."""

from __future__ import annotations

import csv
import functools
import re
import subprocess
import sys
from typing import Any

import pytest

from conftest import run_entry, write_config_dir
from jobsplit.errors import UserError
from jobsplit.jobcall import check_job_function, check_sendable, injects_by_name
from runhelpers import assert_user_error, run_args, run_env


def full(n, random_obj, config, progress):
    return n


def renamed(a, b, rng, cfg, progress):  # the positional ones may have any name
    return a


def keywords(a, b, random_obj, config, progress=None):
    return a


def anything(*args, **kwargs):
    return 0


def wrong_arity(a, random_obj, config, progress):
    return a


def decorated(function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):  # a decorator may consume the injected arguments itself
        return function(*args[:-2])

    return wrapper


@decorated
def inner(n):
    return n


def keyword_only(a, *, random_obj, config, progress):
    return a


def named_after(a, b, random_obj, config, progress):
    return a


def no_names_before(x, random_obj, config, /, progress):  # positional-only: they cannot go by name
    return x


@pytest.mark.parametrize(
    "job, sample",
    [
        (full, 5),
        (full, "a single argument"),
        (renamed, (1, 2)),
        (keywords, {"a": 1, "b": 2}),
        (anything, (1, 2)),
        (functools.partial(renamed, 1), (2,)),
        (inner, (1,)),
        (wrong_arity, (1, 2, 3)),  # the job's own arguments do not fit: it fails alone, as any bad job does
        (keyword_only, (1,)),
        (functools.partial(named_after, b=2), (1,)),  # keyword-only after the bound keyword: by name, they fit
    ],
)
def test_functions_that_take_the_call_are_accepted(job: Any, sample: Any):
    check_job_function(job, sample)


def optional(x, y=5, random_obj=None, config=None, progress=None):
    return x


def swapped(x, config, random_obj, progress):
    return x


@pytest.mark.parametrize(
    "job, by_name",
    [(full, True), (keywords, True), (keyword_only, True), (optional, True), (swapped, True), (renamed, False), (anything, False), (inner, False), (no_names_before, False)],
)
def test_random_obj_and_config_go_by_name_to_a_function_that_names_them(job: Any, by_name: bool):
    assert injects_by_name(job) is by_name


def map_style(n):
    return n


def no_progress(a, b, rng, cfg):
    return a


def no_progress_kw(a, b, random_obj, config):
    return a


@pytest.mark.parametrize(
    "job, sample, words",
    [
        (map_style, 5, ["map_style(n) cannot be called", "map_style(*pool[0], random_obj, config, progress=...)", "too many positional arguments"]),
        (no_progress, (1, 2), ["no_progress(a, b, rng, cfg) cannot be called", "'progress'"]),
        (no_progress_kw, {"a": 1, "b": 2}, ["no_progress_kw(**pool[0], random_obj=..., config=..., progress=...)", "'progress'"]),
        (renamed, (1, 2, 3), ["renamed(a, b, rng, cfg, progress) cannot be called", "multiple values for argument 'progress'"]),  # names give no hint: refused
        (functools.partial(renamed, b=2), (1,), ["functools.partial binding b=... makes the parameters after it keyword-only", "calling renamed(..., b=...) inside"]),
    ],
)
def test_functions_that_cannot_take_the_injected_arguments_are_refused(job: Any, sample: Any, words: list[str]):
    with pytest.raises(UserError) as refused:
        check_job_function(job, sample)
    for word in [*words, "then random_obj, config and progress"]:
        assert word in str(refused.value)


def generator_job(n, random_obj, config, progress):
    yield n


async def async_job(n, random_obj, config, progress):
    return n


async def async_generator_job(n, random_obj, config, progress):
    yield n


@pytest.mark.parametrize(
    "job, words",
    [
        (generator_job, "the job function generator_job uses yield, so calling it runs nothing; return the job's result instead"),
        (functools.partial(generator_job, 1), "the job function generator_job uses yield"),
        (async_job, "the job function async_job is defined with async def, so calling it runs nothing; define it with def, running its async code with asyncio.run(...) inside"),
        (async_generator_job, "async_generator_job is defined with async def"),
    ],
    ids=["generator", "partial", "async", "async-generator"],
)
def test_a_job_function_that_runs_nothing_when_called_is_refused(job: Any, words: str):
    """Calling a generator function or an ``async def`` returns at once, running none of its
    body: every job failed on its result's shape, with nothing computed, one at a time."""
    with pytest.raises(UserError, match=re.escape(words)):
        check_job_function(job, (1,) if not isinstance(job, functools.partial) else ())


MAP_STYLE_ENTRY = """
import jobsplit


def job(n):
    return n * 2


if __name__ == "__main__":
    jobsplit.main(job, list(range(50)))
"""


BINDING_ENTRY = """
import sys

import jobsplit


def optional(x, y=5, random_obj=None, config=None, progress=None):
    return f"y={y!r} random_obj={type(random_obj).__mro__[-2].__name__} config={type(config).__name__}"


def swapped(x, config, random_obj, progress):
    return f"random_obj={type(random_obj).__mro__[-2].__name__} config={type(config).__name__}"


if __name__ == "__main__":
    jobsplit.main(optional if sys.argv.pop(1) == "optional" else swapped, [("a",), ("b",)])
"""


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
@pytest.mark.parametrize(
    "kind, value",
    [("optional", "y=5 random_obj=Random config=JobConfig"), ("swapped", "random_obj=Random config=JobConfig")],
)
def test_random_obj_and_config_reach_the_parameters_of_their_names(tmp_path, kind, value, start_method):
    """By position, ``def job(x, y=5, random_obj=None, config=None, progress=None)`` got the
    random object in y and the config in random_obj, and a function naming them in the other
    order got them swapped: silently, with results to match."""
    entry = tmp_path / "entry.py"
    entry.write_text(BINDING_ENTRY, encoding="utf-8")
    config_dir = write_config_dir(tmp_path / "config", header=("Run Start Time", "Job Running Time", "Job Start Time", "Value"), machines={"solo": [1.0, 2]})
    result = run_entry(entry, kind, *run_args(config_dir, tmp_path / "out", "--start-method", start_method), env=run_env(tmp_path))
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "out" / "solo" / "results.csv", newline="") as f:
        assert {row["Value"] for row in csv.DictReader(f)} == {value}


CONTAINERS_ENTRY = """
import collections
import sys

import jobsplit


def job(*args, random_obj, config, progress, **kwargs):
    return f"{type(args).__name__}{list(args)} {type(kwargs).__name__}{sorted(kwargs.items())}"


def rows():
    Row = collections.namedtuple("Pandas", ["alpha", "n"])  # made on the fly, as pandas' itertuples() does: cannot be pickled
    return [Row(0.5 * i, i) for i in range(3)]


def defaults():
    return [collections.defaultdict(lambda: 0, {"alpha": 0.5 * i, "n": i}) for i in range(3, 5)]  # a lambda: cannot be pickled


if __name__ == "__main__":
    jobsplit.main(job, [*rows(), *defaults(), (9.5, 9)])
"""


def rows_of_a_run(tmp_path, text: str, column: str, start_method: str) -> list[dict[str, str]]:
    """Run ``text`` as the entry (one result column, two workers) to its end (exit 0): its rows."""
    entry = tmp_path / "entry.py"
    entry.write_text(text, encoding="utf-8")
    config_dir = write_config_dir(tmp_path / "config", header=("Run Start Time", "Job Running Time", "Job Start Time", column), machines={"solo": [1.0, 2]})
    result = run_entry(entry, *run_args(config_dir, tmp_path / "out", "--start-method", start_method), env=run_env(tmp_path))
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "out" / "solo" / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_jobs_that_are_tuples_or_dicts_of_classes_that_cannot_be_pickled_run(tmp_path, start_method):
    """``pool = list(df.itertuples(index=False))``, a common pandas idiom, gave every job "the
    job's arguments cannot be sent to a worker process": pandas makes the namedtuple class on the
    fly, and it cannot be pickled. Such tuples and dicts go as plain ones: the job gets the same
    arguments, and its Job Args are those of a plain tuple or dict."""
    got = {row["Job Args"]: row["Value"] for row in rows_of_a_run(tmp_path, CONTAINERS_ENTRY, "Value", start_method)}
    assert got == {
        **{f"[{0.5 * i},{i}]": f"tuple[{0.5 * i}, {i}] dict[]" for i in range(3)},
        **{f'{{"alpha":{0.5 * i},"n":{i}}}': f"tuple[] dict[('alpha', {0.5 * i}), ('n', {i})]" for i in range(3, 5)},
        "[9.5,9]": "tuple[9.5, 9] dict[]",
    }


UNGUARDED_ENTRY = """
import os
import jobsplit

def job(n, random_obj, config, progress):
    return os.getpid()

jobsplit.main(job, list(range(6)))  # no `if __name__ == "__main__":`
"""


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_an_entry_without_the_main_guard_runs(tmp_path, start_method):
    """A spawned worker runs the entry's top level, so an entry that calls main without the guard
    called it again in every worker, which then found the machine folder in use and exited: no
    job ran ("3 worker processes in a row exited as they started"). In a starting worker main
    returns at once, and the worker goes on."""
    rows = rows_of_a_run(tmp_path, UNGUARDED_ENTRY, "Pid", start_method)
    assert len({row["Job ID"] for row in rows}) == len(rows) == 6
    assert len({row["Pid"] for row in rows}) <= 2  # on the run's two workers


def test_a_map_style_job_function_is_refused_before_anything_runs(tmp_path):
    entry = tmp_path / "entry.py"
    entry.write_text(MAP_STYLE_ENTRY, encoding="utf-8")
    config_dir = write_config_dir(tmp_path / "config", header=("Run Start Time", "Job Running Time", "Job Start Time", "Value"), machines={"solo": [1.0, 2]})
    result = run_entry(entry, *run_args(config_dir, tmp_path / "out"), env=run_env(tmp_path))
    assert_user_error(result.returncode, result.stdout, result.stderr, "job(n) cannot be called", "random_obj, config and progress")
    assert not (tmp_path / "out").exists()  # nothing started, nothing to clean up


def local_function():
    def job(n, random_obj, config, progress):
        return n

    return job


@pytest.mark.parametrize("job", [lambda n, random_obj, config, progress: n, local_function()], ids=["lambda", "local"])
def test_a_function_that_cannot_be_pickled_is_refused_for_spawn_workers_only(job: Any):
    check_sendable(job, "fork")  # forked workers inherit it
    with pytest.raises(UserError, match=r"cannot be sent to workers started by spawn .*top level of the entry file.*--start-method fork"):
        check_sendable(job, "spawn")


def test_a_top_level_function_can_be_sent():
    check_sendable(full, "spawn")


LAMBDA_ENTRY = """
import jobsplit

if __name__ == "__main__":
    jobsplit.main(lambda n, random_obj, config, progress: n, [1, 2, 3])
"""


def test_a_lambda_under_spawn_is_refused_before_anything_runs(tmp_path):
    entry = tmp_path / "entry.py"
    entry.write_text(LAMBDA_ENTRY, encoding="utf-8")
    config_dir = write_config_dir(tmp_path / "config", header=("Run Start Time", "Job Running Time", "Job Start Time", "Value"), machines={"solo": [1.0, 2]})
    result = run_entry(entry, *run_args(config_dir, tmp_path / "out", "--start-method", "spawn"), env=run_env(tmp_path))
    assert_user_error(result.returncode, result.stdout, result.stderr, "<lambda> cannot be sent", "--start-method fork")
    assert not (tmp_path / "out").exists()


EMPTY_POOL_ENTRY = """
import glob

import jobsplit


def job(path, random_obj, config, progress):
    return path


if __name__ == "__main__":
    jobsplit.main(job, sorted(glob.glob("no-such-data/*.csv")))
"""


def test_an_empty_pool_is_refused_by_run_and_shown_by_digest(tmp_path):
    """A pool built from a glob in the wrong folder is empty: "0 of 0 done (100.0%)" and exit 0
    on every host would look like success."""
    entry = tmp_path / "entry.py"
    entry.write_text(EMPTY_POOL_ENTRY, encoding="utf-8")
    config_dir = write_config_dir(tmp_path / "config", header=("Run Start Time", "Job Running Time", "Job Start Time", "Value"), machines={"solo": [1.0, 2]})
    result = run_entry(entry, *run_args(config_dir, tmp_path / "out"), env=run_env(tmp_path))
    assert_user_error(result.returncode, result.stdout, result.stderr, "pool passed to jobsplit.main is empty", "glob")
    assert not (tmp_path / "out").exists()
    digest = run_entry(entry, "digest", "--config-dir", config_dir, env=run_env(tmp_path))
    assert digest.returncode == 0 and len(digest.stdout.strip()) == 39, digest.stderr


GUARDED_JOB = """
import jobsplit

try:
    import numpy  # a top-level name bound in a try
except ImportError:
    numpy = None

if __name__ == "__main__":
    def job(n, random_obj, config, progress):
        return n

    jobsplit.main(job, [1, 2, 3])
"""


@pytest.mark.parametrize("shape", ["guarded def", "package __main__", "top level in an if", "decorated", "static method", "guarded class"])
def test_a_job_function_spawn_s_workers_would_not_find_is_refused_before_anything_runs(tmp_path, shape):
    """Pickled by name, the job was found in the parent, then each spawned worker died with
    "Can't get attribute 'job' on <module '__main__'>", and the run blamed the entry's top-level
    code: a def under ``if __name__ == "__main__":`` (which a worker's copy of the entry does not
    run), or an entry run as ``python -m study`` (whose ``__main__`` a worker does not make)."""
    config_dir = write_config_dir(tmp_path / "config", header=("Run Start Time", "Job Running Time", "Job Start Time", "Value"), machines={"solo": [1.0, 2]})
    args = [*map(str, run_args(config_dir, tmp_path / "out", "--start-method", "spawn"))]
    if shape == "package __main__":
        (tmp_path / "study").mkdir()
        (tmp_path / "study" / "__init__.py").write_text("")
        (tmp_path / "study" / "__main__.py").write_text(GUARDED_JOB.replace("if __name__", "if True or __name__"))
        result = subprocess.run([sys.executable, "-m", "study", *args], cwd=tmp_path, env=run_env(tmp_path), capture_output=True, text=True, timeout=60)
        needle = "this entry runs without one they can import (python -m PACKAGE"
    elif shape in ("static method", "guarded class"):  # pickled as Jobs.run: found in the worker's copy of the entry, unless its class is guarded
        entry = tmp_path / "entry.py"
        source = "import jobsplit\n\nclass Jobs:\n    @staticmethod\n    def run(n, random_obj, config, progress):\n        return n\n\nif __name__ == '__main__':\n    jobsplit.main(Jobs.run, [1, 2, 3])\n"
        if shape == "guarded class":
            source = source.replace("class Jobs:\n    @staticmethod\n    def run", "if __name__ == '__main__':\n  class Jobs:\n    @staticmethod\n    def run").replace("        return n", "        return n\n")
        entry.write_text(source)
        result = run_entry(entry, *args, env=run_env(tmp_path), cwd=tmp_path)
        needle = 'it is defined under `if __name__ == "__main__":`, which they do not run'
        if shape == "guarded class":
            assert_user_error(result.returncode, result.stdout, result.stderr, "workers started by spawn would not find the job function Jobs.run", needle)
            return
    elif shape == "decorated":  # a wrapper of another module's (functools.wraps): the worker's copy of the entry has it
        (tmp_path / "timing.py").write_text("import functools\n\ndef timed(f):\n    @functools.wraps(f)\n    def wrapper(*a, **k):\n        return f(*a, **k)\n    return wrapper\n")
        entry = tmp_path / "entry.py"
        entry.write_text("import jobsplit\nfrom timing import timed\n\n@timed\ndef job(n, random_obj, config, progress):\n    return n\n\nif __name__ == '__main__':\n    jobsplit.main(job, [1, 2, 3])\n")
        result = run_entry(entry, *args, env=run_env(tmp_path), cwd=tmp_path)
    else:
        entry = tmp_path / "entry.py"
        entry.write_text(GUARDED_JOB.replace("if __name__", "if True or __name__") if shape == "top level in an if" else GUARDED_JOB, encoding="utf-8")
        result = run_entry(entry, *args, env=run_env(tmp_path))
        needle = f'it is defined under `if __name__ == "__main__":`, which they do not run; define it at the top level of {entry}'
    if shape in ("top level in an if", "decorated", "static method"):
        assert result.returncode == 0, result.stderr
        return
    assert_user_error(result.returncode, result.stdout, result.stderr, "workers started by spawn would not find the job function job", needle, "--start-method fork")
    assert not (tmp_path / "out").exists()
