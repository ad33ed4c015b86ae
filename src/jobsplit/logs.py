"""One compressed log per machine, written by the parent from its own and its workers' records.

Workers send their records and output lines as plain tuples (see ``capture``); the parent
alone writes ``<machine>.log.gz``. It appends a complete gzip member every couple of seconds,
so ``zcat`` can read the log while the run goes on and a crash loses at most the last member.

Each record is one line: ``{time} {machine} {worker} {job} {level} {message}`` by default,
time first (ISO-8601 UTC, milliseconds); a multi-line message continues on lines indented by
two spaces, so every line that starts with a digit starts a record. Text that is not valid
UTF-8 (lone surrogates, binary junk) and control characters but the tab are written with
backslash escapes: the log is text to ``zcat | grep``.
"""

from __future__ import annotations

import bisect
import gzip
import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .capture import log_message
from .config import LogSettings
from .errors import NO_SPACE, StorageError, describe_os_error
from .fileid import file_id, open_file_id
from .gzipmembers import torn_end
from .outdir import MachineDir
from .permissions import PERMISSION
from .text import log_line_text
from .timefmt import utc_timestamp

FLUSH_INTERVAL = 2.0
"""Seconds between two gzip members: how far behind ``zcat`` of a running log can be."""
HOLD_BACK = 1.0
"""Records younger than this wait for the next member, so late deliveries from workers still
land in time order: each log file is sorted by time, which ``merge-logs`` relies on."""
MAX_BUFFER = 1 << 20
"""Text buffered since the last flush that triggers an early flush of the records old enough to
be written (counted from the last flush: the young records it held back never trigger the next)."""
MAX_HELD = 16 << 20
"""Buffered text beyond which even young records are written (memory before order)."""
PARENT = "main"
"""The worker column of the parent's own records; workers are ``w0``, ``w1``, ..."""


class MachineLog:
    """The parent's writer of ``<machine>.log.gz``: buffered, flushed as gzip members, rotated."""

    def __init__(self, folder: MachineDir, settings: LogSettings) -> None:
        self.folder = folder
        self.settings = settings
        self._buffer: list[tuple[float, str, str]] = []
        """(time, text, job id) of the records not written yet."""
        self._buffered = 0
        self._flush_at = MAX_BUFFER
        """Buffered text at which to flush early: MAX_BUFFER more than the last flush left."""
        self._flushed_at = time.monotonic()
        self._file: BinaryIO | None = None  # created with the first member: never an empty .gz
        self._file_id: tuple[int, int] | None = None
        self.rewritten: str | None = None
        """What to say of the log deleted or replaced during the run (then written again), if it was."""
        self._last_segment: int | None = None  # read from the folder at the first rotation only
        self._checked = False
        """Whether the log this run found was checked for a damaged end (once, before its first write)."""
        self._set_aside: str | None = None
        """What to say in the log of a damaged log set aside, until it is said."""

    def write(self, created: float, worker: str, job: str, level: str, name: str, message: str) -> None:
        text = self._text(created, worker, job, level, name, message)
        self._buffer.append((created, text, job))
        self._buffered += len(text)
        if self._buffered >= self._flush_at:
            self.flush(everything=self._buffered >= MAX_HELD)

    def flush_if_due(self) -> None:
        if self._buffer and time.monotonic() - self._flushed_at >= FLUSH_INTERVAL:
            self.flush()

    def flush(self, *, everything: bool = False) -> None:
        """Append buffered records (all, or those older than HOLD_BACK) as one gzip member, sorted.
        Records that could not be written stay buffered: the flush at the run's end writes them,
        once there is room again or the deleted machine folder is back."""
        self._flushed_at = time.monotonic()
        self._buffer.sort(key=lambda entry: entry[0])
        cutoff = float("inf") if everything else time.time() - HOLD_BACK
        ready = bisect.bisect_right(self._buffer, cutoff, key=lambda entry: entry[0])
        texts = [text for _, text, _ in self._buffer[:ready]]
        size = sum(map(len, texts))
        self._flush_at = self._buffered - size + MAX_BUFFER  # set first: a failed flush is not tried again at every record
        if not texts:
            return
        start: int | None = None
        """Where this flush began writing in the open log; None until the log is open."""
        kept = taken = 0
        """Texts of this flush in a log rotated away (written for good), and written so far."""
        try:
            if self._file is None:
                if not self._checked:
                    self._set_aside = self._set_aside_a_damaged_end()
                    self._checked = True  # once done: a check that failed (EIO, a refused rename) is made again, never appended past
                self._file = self._open()
            elif file_id(self.folder.log) != self._file_id and self.folder.path.is_dir():  # without its folder, the run stops at its next write there
                texts.append(self._text(self._buffer[ready - 1][0], PARENT, "-", "WARNING", "jobsplit", self._write_again()))  # dated last: the file stays in time order
            if self._set_aside is not None:
                texts.append(self._text(self._buffer[ready - 1][0], PARENT, "-", "WARNING", "jobsplit", self._set_aside))
            start = self._file.tell()
            for group in _groups(texts, self.settings.max_size):
                member = gzip.compress("".join(group).encode("utf-8", "backslashreplace"), compresslevel=6)
                if self._file.tell() and self._file.tell() + len(member) > self.settings.max_size:
                    self._retire()  # before writing: the current log always holds the newest member
                    start, kept = None, taken
                    self._file = self._open()
                    start = 0
                self._file.write(member)
                taken += len(group)
            self._file.flush()
        except BaseException as exc:  # a full disk; or out of memory compressing: the log as it was, the records kept for the next flush
            if start is not None:
                self._cut_back(start)
            self._forget(min(kept, ready))
            if isinstance(exc, OSError):
                advice = "free some space and " if exc.errno in NO_SPACE else "check that you may write it (its owner, its permissions) and " if exc.errno in PERMISSION else ""
                raise StorageError(f"{self.folder.log} cannot be written: {describe_os_error(exc)}; {advice}run the same command again to resume") from None
            raise
        self._forget(ready)
        self._set_aside = None

    def _forget(self, count: int) -> None:
        """The first ``count`` buffered records are in the log."""
        self._buffered -= sum(len(text) for _, text, _ in self._buffer[:count])
        del self._buffer[:count]

    def _cut_back(self, size: int) -> None:
        """A flush that failed (a full disk) leaves the log it wrote to as it was before, ``size``
        bytes (a log it found empty, or began, removed): a gzip member cut short, followed by the
        members of a resumed run, made the log unreadable from there on (``zcat``, merge-logs,
        report). Its records stay buffered; the next flush opens the log again."""
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()  # its buffer is lost with it: those bytes are cut off anyway
            except OSError:
                pass
        try:
            if size:
                os.truncate(self.folder.log, size)
            else:
                self.folder.log.unlink()  # never an empty .gz, which no reader takes
        except OSError:
            pass  # gone with its folder, or a rotation that did not open the new log

    def _open(self) -> BinaryIO:
        file = open(self.folder.log, "ab")  # noqa: SIM115 - open for the whole run
        self._file_id = open_file_id(file.fileno())
        return file

    def _set_aside_a_damaged_end(self) -> str | None:
        """A log left ending in a damaged gzip member (a crash or a power loss as it was written,
        a copy taken mid-write) is renamed to the next segment, kept whole, and a new log begins:
        appended to, the damage made every later record unreadable to zcat and the tools. Returns
        what to say about it in the log. Checked at every start: ``torn_end`` decompresses the
        last member or two, whatever the log's size (up to max_size), while the journal's word on
        how the last run ended misses a power loss after its final commit, the log unsynced."""
        try:
            with open(self.folder.log, "rb") as log:
                torn = torn_end(log)
        except FileNotFoundError:
            return None
        if torn is None:
            return None
        kept = self._to_segment()
        return (
            f"{self.folder.log} ended in a damaged gzip member (from byte {torn:,}: a crash or a power loss as it was written, or a copy "
            f"taken mid-write); it is kept whole as {kept.name}, and this log starts anew, since records written after the damage could not be read"
        )

    def _write_again(self) -> str:
        """The log was deleted or moved away while the run went on (a clean-up script, a slip):
        a new one starts with everything the old one held, read back through the descriptor
        still open on it (Linux's /proc). Returns what to say about it in the log."""
        assert self._file is not None
        old, self._file = self._file, self._open()
        try:
            with open(f"/proc/self/fd/{old.fileno()}", "rb") as earlier:
                shutil.copyfileobj(earlier, self._file)
            done = "wrote it again with every record it held"
        except OSError:
            done = "the records written to it before are not in this file"
        old.close()
        self.rewritten = f"{self.folder.log} was deleted or replaced during the run; {done}"
        return self.rewritten

    def _text(self, created: float, worker: str, job: str, level: str, name: str, message: str) -> str:
        line = self.settings.format.format(
            time=utc_timestamp(created), machine=self.folder.machine, worker=worker, job=job, level=level, name=name, message=log_line_text(message)
        )
        return line.rstrip().replace("\n", "\n  ") + "\n"

    def unwritten_jobs(self) -> int:
        """How many jobs have records still unwritten: after a failed close, lost."""
        return len({job for _, _, job in self._buffer} - {"-"})

    def close(self) -> None:
        try:
            self.flush(everything=True)
        finally:
            if self._file is not None:
                try:
                    self._file.close()
                except OSError:
                    pass  # the last member is lost with the disk; the journal holds what matters

    def _retire(self) -> None:
        """Close the full log and rename it to the next free number (never overwriting)."""
        file, self._file = self._file, None  # closed, whatever follows: never written to again
        assert file is not None
        file.close()
        self._to_segment()

    def _to_segment(self) -> Path:
        """Rename the log to the next free segment number (never overwriting); returns its path."""
        if self._last_segment is None:
            self._last_segment = max((n for n, _ in self.folder.numbered_segments()), default=0)
        self._last_segment += 1
        segment = self.folder.segment(self._last_segment)
        self.folder.log.rename(segment)
        return segment


def _groups(texts: list[str], limit: int) -> Iterator[list[str]]:
    """Consecutive texts of at most ``limit`` characters together (one alone if longer), so
    that no gzip member outgrows the rotation size."""
    group: list[str] = []
    size = 0
    for text in texts:
        if group and size + len(text) > limit:
            yield group
            group, size = [], 0
        group.append(text)
        size += len(text)
    if group:
        yield group


class ParentHandler(logging.Handler):
    """Sends the parent's own log records (logger ``jobsplit``) to the machine log."""

    def __init__(self, log: MachineLog) -> None:
        super().__init__()
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        self.log.write(record.created, PARENT, getattr(record, "job", "-"), record.levelname, record.name, log_message(record))


def parent_logger(log: MachineLog, settings: LogSettings) -> logging.Logger:
    logger = logging.getLogger("jobsplit")
    logger.handlers[:] = [ParentHandler(log)]
    logger.setLevel(settings.level)
    logger.propagate = False
    return logger
