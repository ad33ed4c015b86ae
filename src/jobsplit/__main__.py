"""``python -m jobsplit``: the ``jobsplit`` command."""

import sys

from .cli import tool_main

sys.exit(tool_main())
