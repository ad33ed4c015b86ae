"""jobsplit: split a pool of long-running research jobs among machines, run each share on all cores.

A researcher's entry script defines a job function and a pool of arguments and ends with
``jobsplit.main(job, pool)``; see the README. The names in ``__all__`` are the public API;
every module is an implementation detail that may change between versions.
"""

from __future__ import annotations

from ._version import __version__
from .cli import main
from .config import JobConfig, ReadOnlyConfigError, parse_filesize
from .errors import UserError
from .progress import ProgressReporter

__all__ = ["JobConfig", "ProgressReporter", "ReadOnlyConfigError", "UserError", "__version__", "main", "parse_filesize"]
