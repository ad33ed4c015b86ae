"""``python -m jobsplit`` and the ``jobsplit`` console script."""

from __future__ import annotations

from typing import NoReturn

from .errors import exit_interrupted


def script_main() -> NoReturn:
    """The ``jobsplit`` command. Its command line loads the console and the merge and report
    tools (a tenth of a second) inside a Ctrl-C guard: a console script imports its function's
    module before any of jobsplit's code runs, and a Ctrl-C there was a traceback."""
    try:
        from .cli import script_main as run
    except KeyboardInterrupt:
        exit_interrupted()
    run()


if __name__ == "__main__":
    script_main()
