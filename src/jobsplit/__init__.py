"""jobsplit: split a pool of long-running research jobs among machines, run each share on all cores.

A researcher's entry script defines a job function and a pool of arguments and ends with
``jobsplit.main(job, pool)``; see the README.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .cli import main
from .config import parse_filesize
from .errors import UserError
from .progress import ProgressReporter

__all__ = ["ProgressReporter", "UserError", "__version__", "main", "parse_filesize"]
