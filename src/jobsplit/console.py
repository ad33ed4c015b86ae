"""Where the console output goes: data on stdout, everything for people on stderr."""

from __future__ import annotations

import codecs
import errno
import io
import os
import sys

from rich.console import Console
from rich.markup import escape


def data_console() -> Console:
    """stdout: what scripts read (digests, tables, JSON); wide when it is not a terminal. Where
    stdout's encoding is not UTF-8, a character it lacks is written as "?": a machine named
    "βeta" ended ``plan`` in a UnicodeEncodeError in a Latin-1 locale."""
    if isinstance(sys.stdout, io.TextIOWrapper) and codecs.lookup(sys.stdout.encoding).name != "utf-8":
        sys.stdout.reconfigure(errors="replace")
    return _DataConsole(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)


class _DataConsole(Console):
    def on_broken_pipe(self) -> None:
        """The reader of stdout went away (``| head``): the command ends as every command does
        then (see cli._closing_stdout), with exit status 141, not with rich's own exit status 1."""
        self.quiet = True
        raise BrokenPipeError


def message_console() -> Console:
    """stderr: notices, prompts, progress and errors (NO_COLOR is honoured by rich)."""
    return _MessageConsole(stderr=True, highlight=False)


class _MessageConsole(Console):
    def _check_buffer(self) -> None:
        """rich's writing of what was printed, to which it hands only a BrokenPipeError. A terminal
        that went away without a SIGHUP (the run's own session, detached from it by ``setsid``, on
        an SSH window then closed) fails every write with EIO: the run's last message raised it,
        and a run that had done every job exited with status 1."""
        try:
            super()._check_buffer()
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            self.on_broken_pipe()

    def on_broken_pipe(self) -> None:
        """The reader of stderr went away (``run 2>&1 | head``, a ``tee`` that died): the command
        goes on without its messages, as after a hang-up (a run's log has them all). rich's own
        way, exit status 1 at the next message, stopped a run with every job still pending."""
        self.quiet = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self.file.fileno())  # what else writes there (a traceback at exit) goes nowhere too
        os.close(devnull)


def say_error(console: Console, message: str) -> None:
    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)


def say_notice(console: Console, message: str) -> None:
    console.print(f"[yellow]note:[/] {escape(message)}", soft_wrap=True)
