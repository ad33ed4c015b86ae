"""``python -m jobsplit``: the ``jobsplit`` command."""

from .cli import script_main

script_main()
