"""Where the console output goes: data on stdout, everything for people on stderr."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.markup import escape


def data_console() -> Console:
    """stdout: what scripts read (digests, tables, JSON); wide when it is not a terminal."""
    return _DataConsole(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)


class _DataConsole(Console):
    def on_broken_pipe(self) -> None:
        """The reader of stdout went away (``| head``): the command ends as every command does
        then (see cli._closing_stdout), with exit status 141, not with rich's own exit status 1."""
        self.quiet = True
        raise BrokenPipeError


def message_console() -> Console:
    """stderr: notices, prompts, progress and errors (NO_COLOR is honoured by rich)."""
    return Console(stderr=True, highlight=False)


def say_error(console: Console, message: str) -> None:
    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)


def say_notice(console: Console, message: str) -> None:
    console.print(f"[yellow]note:[/] {escape(message)}", soft_wrap=True)
