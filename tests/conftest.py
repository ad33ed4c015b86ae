"""Shared fixtures and helpers for the jobsplit test suite.

Helpers (plain functions, importable as ``from conftest import ...``):

* :func:`write_config_dir` writes ``config.ini``, ``header.csv`` and ``machines.json``.
* :func:`write_entry` writes a small entry script (``jobsplit.main(job, pool, cost=cost)``).
* :func:`run_entry` runs an entry script in a fresh interpreter; :func:`entry_env` builds its
  environment.

Fixtures: ``config_dir`` (a tmp folder with small working config files) and ``entry_file``
(the default entry script in tmp_path). Every test has a state folder of its own
(``XDG_STATE_HOME``, which its runs inherit): the folders where a share ran are noted there (see
jobsplit.sharefolders), and tests running the same share in their own folders must not see
each other's.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

DEFAULT_CONFIG = """\
# Settings shared by every host.
[jobsplit]
strategy = quota

[experiment]
samples = 1000
report_every = 100
max_scratch = 64MiB
label = small test run
"""

DEFAULT_HEADER = ("Run Start Time", "Job Running Time", "Job Start Time", "Value", "Error")

DEFAULT_MACHINES: dict[str, list[Any]] = {"alpha": [1.0, 8], "beta": [1.5, 4], "gamma": [0.5, 2]}

_UNSET: Any = object()


@pytest.fixture(autouse=True)
def own_state_folder(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))


def write_config_dir(
    path: Path,
    *,
    config: str | bytes = DEFAULT_CONFIG,
    header: str | bytes | Sequence[str] = DEFAULT_HEADER,
    machines: Any = _UNSET,
) -> Path:
    """Write the three config files into ``path`` (created if needed) and return ``path``.

    Text (``str``) is written as UTF-8 exactly as given (no newline translation), ``bytes``
    verbatim. ``header`` may also be a sequence of column names (one CSV line).
    ``machines`` may be a JSON-able object (dumped with indent 4), text/bytes (verbatim), or
    ``None`` to not write machines.json at all (an existing one is left alone).
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if machines is _UNSET:
        machines = DEFAULT_MACHINES
    _write(path / "config.ini", config)
    if not isinstance(header, (str, bytes)):
        header = ",".join(header) + "\n"
    _write(path / "header.csv", header)
    if machines is not None:
        if not isinstance(machines, (str, bytes)):
            machines = json.dumps(machines, indent=4) + "\n"
        _write(path / "machines.json", machines)
    return path


def _write(path: Path, content: str | bytes) -> None:
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """A folder with a small, valid config.ini, header.csv and machines.json (3 machines)."""
    return write_config_dir(tmp_path / "config")


@pytest.fixture
def lab_path() -> Iterator[Path]:
    """A temporary folder that any user may enter, for tests of colleagues who share a project
    folder (see runhelpers.Colleague): only root may enter pytest's own, and the other users'
    checks of a path through it (os.access) failed whatever the folder's own permissions."""
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        folder = Path(tmp)
        folder.chmod(0o755)
        yield folder


# --- entry scripts -----------------------------------------------------------------------

ENTRY_TEMPLATE = '''\
"""A jobsplit entry written by the test suite."""
import json
import os
import random

import jobsplit


def job(*args, **kwargs):
    return ()


def cost(*args, **kwargs):
    # Deterministic, order-independent, with many ties (values 1..7).
    return 1.0 + len(json.dumps([args, kwargs], sort_keys=True)) % 7


pool = []
for i in range(60):
    pool.append((i, i / 7, f"name-{{i}}"))
for i in range(60):
    pool.append((i, [i, [i * 0.5, "x"]], "\\u00fc" * (i % 3)))
for i in range(60):
    pool.append(("mode", i % 5, i * 1.25e-3, [i, i + 1]))
for i in range(20):
    pool.append({{"alpha": i, "beta": [i, "b"], "gamma": None if i % 2 else True}})

{extra}

ORDER = os.environ.get("JOBSPLIT_TEST_ORDER", "")
if ORDER == "reversed":
    pool.reverse()
elif ORDER == "shuffled":
    random.Random(7).shuffle(pool)
elif ORDER:
    raise SystemExit(f"unknown JOBSPLIT_TEST_ORDER {{ORDER!r}}")

if __name__ == "__main__":
    jobsplit.main(job, pool, cost={cost})
'''

ENTRY_POOL_SIZE = 200
"""Jobs in the default entry's pool (before ``extra`` code changes it)."""


def write_entry(path: Path, *, extra: str = "", with_cost: bool = True) -> Path:
    """Write an entry script with a pool of 200 varied jobs and return its path.

    ``extra`` is Python code run after the pool is built and before it is reordered by the
    environment variable ``JOBSPLIT_TEST_ORDER`` ("", "reversed" or "shuffled" with
    ``random.Random(7)``), e.g. ``"pool.append((999,))"``. ``with_cost=False`` passes no
    cost function (the ``cost`` strategy then refuses to plan).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    source = ENTRY_TEMPLATE.format(extra=textwrap.dedent(extra), cost="cost" if with_cost else "None")
    path.write_text(source, encoding="utf-8")
    return path


@pytest.fixture
def entry_file(tmp_path: Path) -> Path:
    """The default entry script (200 jobs, with a cost function) at tmp_path/entry.py."""
    return write_entry(tmp_path / "entry.py")


def entry_env(**overrides: str | None) -> dict[str, str]:
    """os.environ plus NO_COLOR=1 and COLUMNS=200, then ``overrides`` (None removes a variable)."""
    env = dict(os.environ)
    env.update(NO_COLOR="1", COLUMNS="200")
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def run_entry(
    entry_path: Path,
    *args: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run ``python entry_path args...`` in a fresh interpreter; output is captured as text.

    ``env`` is the complete environment (default: :func:`entry_env`).
    """
    return subprocess.run(
        [sys.executable, str(entry_path), *map(str, args)],
        env=dict(env) if env is not None else entry_env(),
        cwd=cwd,
        timeout=timeout,
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=False,
    )


def error_lines(text: str) -> list[str]:
    """The `error:` lines of a command's stderr (a user error is exactly one)."""
    return [line for line in text.splitlines() if line.startswith("error:")]


# Real components (Redis, a one-node Slurm cluster, headless Chromium): see components.py.
from components import chromium, redis_server, slurm, slurm_cluster  # noqa: F401

_ROOT = Path(__file__).resolve().parents[1]


def build_executable(entry: str, name: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``make exe`` of tests/frozen/<entry>: the program a user would copy to a host, built once
    per test session and shared by pytest-xdist's workers.

    Builds never overlap: two at once would share PyInstaller's work folder (and its cache, which
    ``--clean`` empties), so one lock on the checkout's build folder serialises them, and a
    worker that gets the lock after another built the program takes that one."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # one folder per session, shared by its workers
    dist = root / f"dist-{name}"
    built = dist / f"{name}.built"
    lock_path = _ROOT / "build" / "make-exe.lock"
    lock_path.parent.mkdir(exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not built.exists():
            build = subprocess.run(
                ["make", "-s", "exe", f"ENTRY={_ROOT / 'tests' / 'frozen' / entry}", f"NAME={name}", f"DIST={dist}"],
                cwd=_ROOT, capture_output=True, text=True, timeout=900, check=False,
            )  # fmt: skip
            assert build.returncode == 0, build.stdout + build.stderr
            built.touch()
    return dist / name


@pytest.fixture(scope="session")
def executable(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/frozen/e2e_entry.py built once with `make exe` (about 40 s), for every test that
    runs the frozen program."""
    return build_executable("e2e_entry.py", "e2e", tmp_path_factory)
