"""Where the console output goes: data on stdout, everything for people on stderr."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.markup import escape


def data_console() -> Console:
    """stdout: what scripts read (digests, tables, JSON); wide when it is not a terminal."""
    return Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)


def message_console() -> Console:
    """stderr: notices, prompts, progress and errors (NO_COLOR is honoured by rich)."""
    return Console(stderr=True, highlight=False)


def say_error(console: Console, message: str) -> None:
    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)


def say_notice(console: Console, message: str) -> None:
    console.print(f"[yellow]note:[/] {escape(message)}", soft_wrap=True)
