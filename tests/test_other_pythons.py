"""The tests that must agree across interpreters, on every other Python this machine has
(issue 9: 0.1 failed every job on Python 3.10): golden vectors, random streams and the resume
of a 0.1 journal, each Python in a subprocess of ``scripts/test-pythons``. They run inside this
session so that pytest-xdist runs them beside the other tests. A Python that is not installed
is skipped with a reason (the others are not Debian packages, so CI cannot install them).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("version", ["3.10", "3.12", "3.13"])
def test_the_interpreter_independent_tests_pass_on(version: str, tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("PYTEST_", "PYTHON"))}
    env.update(PYTHONS=version, MAIN_PYTHON=sys.executable)
    done = subprocess.run(
        [str(ROOT / "scripts" / "test-pythons"), "--basetemp", str(tmp_path / "inner")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if f"skipping Python {version}: not installed here" in done.stdout:
        pytest.skip(f"Python {version} is not installed here")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"test-pythons: Python {version}" in done.stdout
    assert " passed" in done.stdout and " failed" not in done.stdout, done.stdout
