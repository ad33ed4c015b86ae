"""A worker's output and logging, routed to the parent's machine log with the job's id.

Workers need no set-up from the job. File descriptors 1 and 2 become pipes read by a thread,
made by the runner, which keeps read ends of its own: what a job writes as its worker dies (a
line printed just before ``os._exit``, the traceback ``faulthandler`` writes as a segfault kills
it), which the thread had no time to read, is still in the pipe for the runner to log. And
``sys.stdout`` / ``sys.stderr`` are real text files on them: ``print``, ``fileno()``,
``.buffer``, ``.reconfigure()``, ``faulthandler`` and child processes given ``sys.stdout`` all
work, and every line lands in the log. The root logger and ``warnings`` go the same way as
records. When a job ends, the job thread itself drains the pipes before the next job starts,
so everything a job (or a child it waited for) wrote is attributed to it, and the logging and
warnings set-up it changed is put back (``LoggingSetup``).

Of a line redrawn in place (a progress bar such as tqdm's: a carriage return, then the whole
line again), only what follows the last carriage return is logged, so a progress bar becomes one
line with its last state. An unfinished line longer than ``MAX_LINE`` (a job printing dots for
hours) is logged in pieces of that length (a few bytes less where a UTF-8 character would be cut
in two): the worker never holds more of a line, whatever the job writes.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import io
import logging
import os
import select
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TextIO

from .config import LogSettings
from .messages import LogEntry
from .text import clean_text, log_line_text
from .timefmt import utc_timestamp

STREAMS = ((1, "stdout", "INFO"), (2, "stderr", "WARNING"))
"""(file descriptor, name, level) of the captured streams."""
READ_SIZE = 65536
MAX_LINE = 1 << 20
"""Bytes of one line held before they are logged as a piece of it."""


class OutputCapture:
    """Installed once in each worker; ``send`` must be safe to call from any thread."""

    def __init__(self, send: Callable[[list[LogEntry]], None], settings: LogSettings, per_job_dir: Path | None, pipes: Sequence[tuple[int, int]]) -> None:
        """``pipes``: (read end, write end) of the pipe of each of STREAMS."""
        self._send = send
        self._per_job_dir = per_job_dir
        umask = os.umask(0o022)
        os.umask(umask)
        self._per_job_mode = 0o666 & ~umask
        """A per-job log's mode, as the run's umask gives it: a job's ``os.umask`` stays for the
        jobs after it on this worker, and their logs were made with it (mode 000 after 0o777)."""
        self._job = "-"
        self._job_file: TextIO | None = None
        self._lock = threading.RLock()
        """Guards the pipes' reads, the partial lines and the job id, so a drain is exact."""
        self._pipes: dict[int, _Pipe] = {}
        root = logging.getLogger()
        root.handlers[:] = [_Handler(self)]  # a forked worker inherits the parent's handlers
        root.setLevel(settings.level)
        jobsplit_logger = logging.getLogger("jobsplit")
        jobsplit_logger.handlers.clear()
        jobsplit_logger.propagate = True
        logging.captureWarnings(True)
        self._kept = {0: os.dup(0)}
        """A copy of each standard descriptor (0 is /dev/null by now) as the worker set it up,
        not inherited by programs: put back where a job closed it or pointed it elsewhere (see
        end_job)."""
        for (fd, name, level), (read_end, write_end) in zip(STREAMS, pipes):
            os.dup2(write_end, fd)
            self._kept[fd] = write_end
            os.set_blocking(read_end, False)
            self._pipes[read_end] = _Pipe(name, level)
        self._files = {fd: _open_file(copy) for fd, copy in self._kept.items()}
        """The open file each standard descriptor is (see _open_file)."""
        self._ready = select.poll()
        for fd in self._pipes:
            self._ready.register(fd, select.POLLIN)
        for fd in _WATCHED:
            self._ready.register(fd, select.POLLIN)
        self._streams = sys.stdout, sys.stderr = _text_file(1), _text_file(2)
        """What ``print`` writes to in every job (they write to the log)."""
        self._reader = threading.Thread(target=self._read_while_alive, daemon=True, name="jobsplit-output")
        self._reader.start()
        self._forked = False
        os.register_at_fork(after_in_child=self._in_forked_child)

    def start_job(self, job_id: str) -> None:
        with self._lock:
            self._job = job_id
            if self._per_job_dir is not None:
                self._job_file = gzip.open(  # noqa: SIM115 - closed when the job ends
                    self._per_job_dir / f"{job_id}.log.gz", "wt", encoding="utf-8", errors="backslashreplace"
                )
                try:
                    os.fchmod(self._job_file.fileno(), self._per_job_mode)
                except OSError:
                    pass  # a file system that keeps no modes (vfat, some network mounts): its own, not every job failed

    def end_job(self) -> None:
        """Everything written so far belongs to the job that just ended, its last line too."""
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass  # the job closed or broke it: nothing left to flush
        with self._lock:
            for fd, _ in self._ready.poll(0):  # one system call when the job wrote nothing and left its streams be
                if fd in self._pipes:
                    self._read(fd)
                elif (now := _open_file(fd)) != self._files[fd]:  # standard output or error changed, maybe (see _WATCHED)
                    self._put_back(fd, closed=now is None)
            if (now := _open_file(0)) != self._files[0]:
                self._put_back(0, closed=now is None)
            for pipe in self._pipes.values():
                if pipe.partial:
                    self._emit(time.time(), pipe.level, pipe.name, pipe.rest())
            self._job = "-"
            if self._job_file is not None:
                self._job_file.close()
                self._job_file = None

    def emit(self, created: float, level: str, name: str, message: str) -> None:
        if self._forked:
            _write_line(2, f"{level}:{name}:{message}")
            return
        with self._lock:
            self._emit(created, level, name, message)

    def restore_streams(self) -> None:
        """The next job prints through the worker's standard streams, whatever this one did to
        them: swapped for a file (to silence a library), or closed."""
        stdout, stderr = self._streams
        if sys.stdout is not stdout or sys.stderr is not stderr or stdout.closed or stderr.closed:
            self._streams = sys.stdout, sys.stderr = _reopened(stdout, 1), _reopened(stderr, 2)

    def _in_forked_child(self) -> None:
        """A process the job forked (a fork ``multiprocessing.Pool``'s, say) logs its records as
        lines on its standard error, which the worker reads like any program's: never through
        the worker's own pipe to the runner, where its messages and the worker's (a record of
        the job's, the output the worker was reading) interleaved and the runner, reading
        garbage, failed with a traceback; nor under this object's lock or the outbox's, which
        the fork may have copied while another of the worker's threads held it, and which no
        thread would then ever release in the child.

        For the same reason it prints through standard streams of its own (unless the job put
        others in their place): where a thread of the job was printing as it forked, the child
        had the worker's streams with their lock held, and its first ``print`` waited for ever
        (6 and 8 pools in 10 of a plain script printing so through such streams, none through
        the standard streams Python made at its start). What the worker's held unwritten, a
        line begun, stays the worker's to write, not written twice."""
        self._forked = True
        if sys.stdout is self._streams[0]:
            sys.stdout = _text_file(1)
        if sys.stderr is self._streams[1]:
            sys.stderr = _text_file(2)

    def _put_back(self, fd: int, *, closed: bool) -> None:
        """The job closed a standard descriptor (``os.close(1)``, a library that detaches) or
        pointed it at another file and left it so (``os.dup2``, as code silencing a C library
        does): the next jobs would fail to print (EBADF), print into that file, or wait for ever
        on an input that never ends."""
        if _open_file(self._kept[fd]) != self._files[fd]:
            return  # the job closed the copy too (os.closerange), or another file took its number: nothing to put back
        try:
            os.dup2(self._kept[fd], fd)
        except OSError:
            return
        name = ("standard input", "standard output", "standard error")[fd]
        what = f"closed its {name} (descriptor {fd})" if closed else f"pointed its {name} (descriptor {fd}) at another file"
        self._emit(time.time(), "WARNING", "jobsplit", f"the job {what}; the next jobs have it back")

    def close(self) -> None:
        """The worker is done: read what is left in the pipes before it exits."""
        for fd in self._kept.values():  # first: /dev/null's open needs a free descriptor, and a job may have left none
            with contextlib.suppress(OSError):  # closed by a job already
                os.close(fd)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)  # the pipes' last write ends: their reader now sees the end
        os.dup2(devnull, 2)
        os.close(devnull)
        self._reader.join(timeout=5)  # a job's own child process may still hold a write end

    def _emit(self, created: float, level: str, name: str, *messages: str | bytes) -> None:
        """Log messages (lines read from a pipe, or one record), in one message to the parent."""
        entries = []
        for message in messages:
            text = _line_text(message) if isinstance(message, bytes) else clean_text(message)
            if self._job_file is not None:
                self._job_file.write(f"{utc_timestamp(created)} {level} {name}: {log_line_text(text)}\n")
            entries.append(LogEntry(created, level, name, self._job, text))
        if entries:
            self._send(entries)

    def _read(self, fd: int) -> bool:
        """Read what the pipe holds now and log its complete lines; False at its end."""
        pipe = self._pipes[fd]
        while True:
            try:
                chunk = os.read(fd, READ_SIZE)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    return True
                raise
            if not chunk:
                if pipe.partial:
                    self._emit(time.time(), pipe.level, pipe.name, pipe.rest())
                return False
            self._emit(time.time(), pipe.level, pipe.name, *pipe.take(chunk))

    def _read_while_alive(self) -> None:
        """Log output as it comes (a long job's progress shows in the log while it runs)."""
        open_fds = list(self._pipes)
        while open_fds:
            ready, _, _ = select.select(open_fds, [], [])
            with self._lock:
                for fd in ready:
                    if not self._read(fd):
                        open_fds.remove(fd)


_CR = ord("\r")


def output_lines(data: bytes) -> list[str]:
    """The lines of output ``data`` as the log holds them (see _Pipe); its end is a line too."""
    pipe = _Pipe("", "")
    lines = pipe.take(data)
    if pipe.partial:
        lines.append(pipe.rest())
    return list(map(_line_text, lines))


def _line_text(line: bytes) -> str:
    """A line of output as logged: bytes that are not UTF-8 escaped, a CR before its end dropped."""
    return line.decode("utf-8", "backslashreplace").rstrip("\r")


class _Pipe:
    """One captured stream, and the line it is in the middle of."""

    __slots__ = ("level", "name", "partial")

    def __init__(self, name: str, level: str) -> None:
        self.name = name
        self.level = level
        self.partial = bytearray()
        """The line so far, without what a carriage return went back over; appended to in
        place, so a line written a few bytes at a time costs time in proportion to its length."""

    def take(self, chunk: bytes) -> list[bytes]:
        """The lines ``chunk`` completes, each from its last carriage return on, then pieces of
        MAX_LINE bytes of an unfinished line that grew longer. A line is cut every MAX_LINE bytes
        from its start, whatever the chunks it came in."""
        *lines, rest = chunk.split(b"\n")
        if lines:
            lines[0] = bytes(self.partial) + lines[0]
            self.partial.clear()
        partial = self.partial
        start = max(0, len(partial) - 1)  # the text before was done, but for a carriage return that ended it
        partial += rest
        end = len(partial)
        while end > start and partial[end - 1] == _CR:  # final carriage returns stay: a CR LF, or text to come
            end -= 1
        back = partial.rfind(b"\r", start, end)
        if back >= 0:
            del partial[: back + 1]
        shown = [body[body.rfind(b"\r") + 1 :] for line in lines for body in [line.rstrip(b"\r")]]
        lines = [piece for line in shown for piece in _pieces(line)]
        while len(partial) > MAX_LINE:
            at = _cut(partial, 0)
            lines.append(bytes(partial[:at]))
            del partial[:at]
        return lines

    def rest(self) -> bytes:
        """The unfinished line, now taken as a whole one."""
        line = bytes(self.partial)
        self.partial.clear()
        return line


def _pieces(line: bytes) -> list[bytes]:
    """A complete line in pieces, cut where an unfinished one would have been (see _cut)."""
    pieces, start = [], 0
    while len(line) - start > MAX_LINE:
        at = _cut(line, start)
        pieces.append(line[start:at])
        start = at
    pieces.append(line[start:])
    return pieces


def _cut(line: bytes | bytearray, start: int) -> int:
    """Where the piece of a long line that begins at ``start`` ends: MAX_LINE bytes on, or up to
    three bytes sooner, so that no UTF-8 character is cut in two (each half would be logged as
    escapes). Only the bytes decide, never how they arrived."""
    at = start + MAX_LINE
    while at > start + MAX_LINE - 3 and line[at] & 0xC0 == 0x80:  # a continuation byte
        at -= 1
    return at


class _Handler(logging.Handler):
    def __init__(self, sink: OutputCapture) -> None:
        super().__init__()
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.sink.emit(record.created, record.levelname, record.name, log_message(record))
        except Exception:  # noqa: BLE001 - logging must never break the job
            self.handleError(record)


def _reopened(stream: TextIO, fd: int) -> TextIO:
    """``stream``, or a stream like it on the same descriptor if it was closed (closing a standard
    stream leaves its descriptor open: it carries the next jobs' output to the log)."""
    if not stream.closed:
        return stream
    try:
        raw = open(fd, "wb", buffering=0 if isinstance(stream.buffer, io.FileIO) else -1, closefd=False)  # noqa: SIM115 - it is the new stream's
    except OSError:
        return stream  # the descriptor was closed too: nothing to write to
    return io.TextIOWrapper(
        raw, encoding=stream.encoding, errors=stream.errors,
        line_buffering=getattr(stream, "line_buffering", False), write_through=getattr(stream, "write_through", False),
    )  # fmt: skip


_WATCHED = (1, 2)
"""Standard output and error, asked by the poll of end_job whether they are readable, so that one
the job changed (closed, or pointed elsewhere with ``os.dup2``) shows in that poll, and only then
is its open file looked at (one ``fstat``, about 0.5 us, and ten times that after a job of some
milliseconds, caches gone cold): the pipes' write ends are never readable, where a file or
/dev/null always is; a closed one is reported POLLNVAL. One pointed at another pipe's write end,
a socket or a terminal is missed. Standard input (/dev/null, which a file in its place resembles
to a poll) is looked at after every job."""


def _open_file(fd: int) -> tuple[int, int] | None:
    """Which open file ``fd`` is (its device and inode: a pipe's own, /dev/null's), None if it
    is closed."""
    try:
        status = os.fstat(fd)
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _text_file(fd: int) -> TextIO:
    """A real text file on ``fd``, line-buffered like a terminal's; odd text is escaped, never an
    error in the job."""
    return open(fd, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False)


def _write_line(fd: int, text: str) -> None:
    """``text`` and a newline on ``fd`` with no buffer nor lock of Python's in between; nothing
    if the descriptor is closed."""
    data = (text + "\n").encode("utf-8", "backslashreplace")
    try:
        while data:
            data = data[os.write(fd, data) :]
    except OSError:
        pass


def log_message(record: logging.LogRecord) -> str:
    """A record's message with its traceback, if any."""
    message = record.getMessage()
    if record.exc_info:
        message += "\n" + logging.Formatter().formatException(record.exc_info)
    return message


class LoggingSetup:
    """The logging and warnings set-up every job of a worker starts with: each logger's handlers,
    the root logger's level and the warnings filters, as the worker made them. Otherwise a job
    that adds a handler (a log file of its own, say) and leaves it hands it to every later job of
    its worker: their records land in its file, and each such job leaves one more file open,
    until none can be opened; and one that turns warnings into errors fails later jobs that
    warn, or not, depending on which worker ran them."""

    def __init__(self) -> None:
        self._handlers = {name: list(logger.handlers) for name, logger in _loggers()}
        self._root_level = logging.root.level
        self._created = _handlers_created()
        self._filters = list(warnings.filters)

    def restore(self) -> None:
        """Undo what the job changed: the handlers it added are removed and closed (as the end of
        a program would close them), those it removed are put back, the root's level and the
        warnings filters are reset."""
        if warnings.filters != self._filters:
            warnings.filters = list(self._filters)  # as warnings.catch_warnings puts them back
            warnings._filters_mutated()  # type: ignore[attr-defined]  # and so that the registries of warnings seen are reset
        root = logging.root
        if _handlers_created() == self._created and root.handlers == self._handlers[""] and root.level == self._root_level:
            return  # the common case: nothing created, nothing changed
        kept = {id(handler) for handlers in self._handlers.values() for handler in handlers}
        for name, logger in _loggers():
            _close_all(handler for handler in list(logger.handlers or ()) if id(handler) not in kept)
            logger.handlers = list(self._handlers.get(name, ()))  # a list again, whatever the job put there
        root.setLevel(self._root_level)
        self._created = _handlers_created()  # counted once no reference of ours holds the job's


def _close_all(handlers: Iterable[logging.Handler]) -> None:
    for handler in handlers:
        try:
            handler.close()
        except Exception:  # noqa: BLE001 - the job's handler: its failure to close is no reason to stop
            pass


def _loggers() -> list[tuple[str, logging.Logger]]:
    """The root logger (named "") and every logger made so far."""
    made = list(logging.root.manager.loggerDict.items())
    return [("", logging.root), *((name, logger) for name, logger in made if isinstance(logger, logging.Logger))]


def _handlers_created() -> int:
    """How many handlers live (logging keeps a weak reference to each, for its shutdown): a job
    that adds one to a logger created it. -1 where logging keeps no such list."""
    handlers = getattr(logging, "_handlerList", None)
    return -1 if handlers is None else len(handlers)
