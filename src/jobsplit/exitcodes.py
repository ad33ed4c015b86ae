"""Exit statuses of every command, in one place (the README's table is written from these)."""

from __future__ import annotations

OK = 0
"""Every job of the share done (or the tool's work complete)."""
JOBS_FAILED = 1
"""Some jobs failed, or a merge found jobs missing or doubled."""
USAGE = 2
"""A usage, config or environment error, shown as one sentence naming the file or field."""
INTERNAL = 70
"""jobsplit itself failed (not the user's job): a bug to report (sysexits EX_SOFTWARE)."""
STORAGE = 74
"""The output could not be written mid-run (a full disk): stopped like an interrupt, resumable (EX_IOERR)."""
INTERRUPTED = 130
"""Ctrl-C or SIGTERM (or the confirmation declined): running jobs went back to pending."""
BROKEN_PIPE = 141
"""The reader of stdout went away (``| head``), as a shell reports SIGPIPE."""
