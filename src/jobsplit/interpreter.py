"""A frozen executable started as ``python -c CODE``, ``python -m MODULE`` or ``python
SCRIPT.py`` acts as Python.

Libraries start their helper processes by running ``sys.executable`` with Python's command
line: joblib's process pool (loky: ``-m ...popen_loky_posix`` for each worker, ``-c ...`` for its
resource tracker), which scikit-learn's ``n_jobs`` uses. In an executable, ``sys.executable`` is
the program itself, which took those arguments for its own and exited: every job that used
joblib failed ("unrecognized arguments: -m joblib.externals.loky..."). PyInstaller's own hook
does this for multiprocessing's two helpers only. The runtime hook (frozen_hook.py) calls
``act_as_python`` before the entry script runs, so a helper never builds the pool.

Jobs do the same (``subprocess.run([sys.executable, "analysis.py"])``). The program's own
command line never starts so: its commands are words, and its ``-h`` and ``--version`` are not
taken for Python's; a script is an existing file whose name ends in ``.py``. Interpreter options
before ``-c``/``-m`` are accepted and have no effect (an executable has no site-packages,
bytecode files or environment to ignore).
"""

from __future__ import annotations

import os
import sys
import traceback
import types
from collections.abc import Callable
from typing import NoReturn

_FORK_SERVER = "from multiprocessing.forkserver import main"
"""The command that starts multiprocessing's fork server (a ``forkserver`` pool's, the default
start method on Linux from Python 3.14). Its children take the job's functions from the fork
server's ``__main__``, which must be the entry: run as ``-c`` here, before the entry, each child
found no entry to load and died at its start, and the pool, starting others in their place,
hung its job for ever. It is left to PyInstaller's ``freeze_support``, which ``jobsplit.main``
calls first, after the entry's top level has run, as for a ``spawn`` pool's processes (the pool
is built again there, once a worker: see the README)."""

_OPTIONS = frozenset("bBdEiIOPqsSuvx")
"""Python's options of one letter that take no argument (not ``h``, ``V``: the program's own)."""
_WITH_ARGUMENT = ("W", "X")


def act_as_python(argv: list[str]) -> None:
    """Run ``-c CODE``, ``-m MODULE`` or ``SCRIPT.py`` as Python would, then exit; return for
    anything else."""
    at = 1
    while at < len(argv):
        word = argv[at]
        if word.endswith(".py") and os.path.isfile(word):
            _run_script(word, argv[at + 1 :])
        if len(word) < 2 or word[0] != "-" or word[1] == "-":
            return  # a command of the program's, or one of its long options
        letter, joined = word[1], word[2:]
        if letter in "cm":
            if joined:
                payload, rest = joined, argv[at + 1 :]
            elif at + 1 < len(argv):
                payload, rest = argv[at + 1], argv[at + 2 :]
            else:
                return
            if letter == "c":
                if _FORK_SERVER in payload:
                    return  # run by multiprocessing.freeze_support() as jobsplit.main starts, see below
                _run_code(payload, rest)
            _run_module(payload, rest)
        if letter in _WITH_ARGUMENT:
            at += 1 if joined else 2
        elif set(word[1:]) <= _OPTIONS:
            at += 1
        else:
            return


def _run_code(code: str, rest: list[str]) -> NoReturn:
    sys.argv = ["-c", *rest]
    main = types.ModuleType("__main__")
    sys.modules["__main__"] = main
    _exit_as_python(lambda: exec(compile(code, "<string>", "exec"), main.__dict__))


def _run_module(name: str, rest: list[str]) -> NoReturn:
    import runpy

    sys.argv = [name, *rest]  # runpy puts the module's file in sys.argv[0]
    _exit_as_python(lambda: runpy.run_module(name, run_name="__main__", alter_sys=True))


def _run_script(path: str, rest: list[str]) -> NoReturn:
    import runpy

    sys.argv = [path, *rest]
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))  # as Python puts the script's folder first
    _exit_as_python(lambda: runpy.run_path(path, run_name="__main__"))


def _exit_as_python(run: Callable[[], object]) -> NoReturn:
    """Run, then exit as Python does: 0, the code of a SystemExit, or 1 with the traceback."""
    try:
        run()
    except SystemExit:
        raise
    except BaseException:  # noqa: BLE001 - as Python's own top level: reported, status 1
        traceback.print_exc()
        sys.exit(1)
    sys.exit(0)
