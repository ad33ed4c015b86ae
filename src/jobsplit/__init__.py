"""jobsplit: split a pool of long-running research jobs among machines, run each share on all cores.

A researcher's entry script defines a job function and a pool of arguments and ends with
``jobsplit.main(job, pool)``; see the README. The names in ``__all__`` are the public API;
every module is an implementation detail that may change between versions.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, NoReturn

from . import exitcodes
from ._version import __version__
from .config import JobConfig, ReadOnlyConfigError, parse_filesize
from .errors import UserError, exit_interrupted
from .progress import ProgressReporter

if TYPE_CHECKING:
    from .cli import main


def __getattr__(name: str) -> Any:
    """``main`` is imported when first used: it brings in the whole runner and the console,
    which the id helper (a process of its own that imports only ``jobsplit.idhelper``) does not
    need: 0.17 s and some 20 MB less at its start."""
    if name == "main":
        if sys.platform == "win32":
            return _not_on_windows
        try:
            from .cli import main
        except KeyboardInterrupt:  # the runner and the console load for a tenth of a second
            exit_interrupted()
        globals()["main"] = main
        return main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _not_on_windows(*args: Any, **kwargs: Any) -> NoReturn:
    """``main`` on Windows, where jobsplit cannot run its workers (it needs POSIX: process groups,
    signals, ``fcntl`` locks): one sentence, not an ImportError's traceback."""
    sys.stderr.write("error: jobsplit runs on Linux (and macOS, untested), not on Windows; run this script in WSL (the Windows Subsystem for Linux)\n")
    raise SystemExit(exitcodes.USAGE)


__all__ = ["JobConfig", "ProgressReporter", "ReadOnlyConfigError", "UserError", "__version__", "main", "parse_filesize"]
