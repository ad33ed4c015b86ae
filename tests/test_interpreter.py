"""The executable's Python command line (interpreter.py), outside an executable: which command
lines it takes for Python's, and that it then runs them as Python does (the frozen program
itself: test_executable.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from jobsplit.interpreter import act_as_python


@pytest.mark.parametrize(
    "argv",
    [[], ["run", "--machine", "a"], ["-h"], ["--version"], ["-V"], ["-B", "-S", "-I"], ["-Wignore", "-q", "init"], ["-c"], ["-Z", "-c", "x"]],
)
def test_the_program_s_own_command_lines_are_left_to_it(argv):
    act_as_python(["program", *argv])  # returns: nothing run, no exit


def test_the_fork_server_is_left_to_the_entry():
    """multiprocessing's fork server takes the job's functions from its ``__main__``: the entry,
    which runs first (the executable's multiprocessing.freeze_support runs the fork server as
    jobsplit.main starts), not an empty module (test_executable.py runs such a pool)."""
    as_started = ["-B", "-s", "-c", "from multiprocessing.forkserver import main; main(3, 4, ['__main__'], **{})"]
    assert as_python(*as_started).stdout == "not taken\n"
    assert as_python("-c", "import sys; from multiprocessing.forkserver import main; main(3, 4, [])").stdout == "not taken\n"  # Python 3.13.13 and later


def as_python(*argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    script = "import sys; from jobsplit.interpreter import act_as_python; act_as_python(['program', *sys.argv[1:]]); print('not taken')"
    return subprocess.run([sys.executable, "-c", script, *argv], input=stdin, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("options", [[], ["-B", "-S", "-I"], ["-W", "ignore", "-X", "utf8", "-u"], ["-BsE"]])
def test_code_and_modules_run_as_python_runs_them(options):
    code = as_python(*options, "-c", "import sys; print(sys.argv, __name__); raise SystemExit(3)", "a")
    assert (code.returncode, code.stdout) == (3, "['-c', 'a'] __main__\n"), code.stderr
    joined = as_python(*options, "-cprint('joined')")
    assert (joined.returncode, joined.stdout) == (0, "joined\n"), joined.stderr
    module = as_python(*options, "-m", "json.tool", stdin='{"a": [1]}')
    assert (module.returncode, module.stdout.split()) == (0, ["{", '"a":', "[", "1", "]", "}"]), module.stderr
    failing = as_python(*options, "-c", "1 / 0")
    assert failing.returncode == 1 and failing.stderr.rstrip().endswith("ZeroDivisionError: division by zero")


def test_a_script_runs_as_python_runs_it(tmp_path):
    script = tmp_path / "analysis.py"
    (tmp_path / "helper.py").write_text("ANSWER = 42\n")
    script.write_text("import sys, helper\nprint(sys.argv[1:], helper.ANSWER, __name__)\n")
    result = as_python(str(script), "x")
    assert (result.returncode, result.stdout) == (0, "['x'] 42 __main__\n"), result.stderr  # its folder first on sys.path, as Python puts it
    assert as_python(str(tmp_path / "missing.py")).stdout == "not taken\n"  # no such file: the program's argument
