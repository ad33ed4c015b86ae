"""One compressed log per machine, fed by the parent and every worker, plus per-job logs.

Workers need no set-up from the job: the root logger, ``warnings`` and the worker's own
stdout/stderr (file descriptors 1 and 2, so C code and subprocesses are caught too) are
routed to the parent as plain tuples over the worker's result pipe. The parent alone writes
``<machine>.log.gz``: it appends a complete gzip member every couple of seconds, so ``zcat``
can read the log while the run goes on and a crash loses at most the last member.

Each record is one line: ``{time} {machine} {worker} {job} {level} {message}`` by default,
time first (ISO-8601 UTC, milliseconds); a multi-line message continues on lines indented by
two spaces, so every line that starts with a digit starts a record.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import re
import select
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, TextIO

from .config import LogSettings
from .results import utc_timestamp

FLUSH_INTERVAL = 2.0
"""Seconds between two gzip members: how far behind ``zcat`` of a running log can be."""
HOLD_BACK = 1.0
"""Records younger than this wait for the next member, so late deliveries from workers still
land in time order: each log file is sorted by time, which ``merge-logs`` relies on."""
MAX_BUFFER = 1 << 20
"""Buffered text that triggers an early flush of the records old enough to be written."""
MAX_HELD = 16 << 20
"""Buffered text beyond which even young records are written (memory before order)."""
PARENT = "main"

LogEntry = tuple[float, str, str, str, str]
"""(created, level name, logger name, job id or "-", message): what a worker sends."""



def log_path(machine_dir: Path, machine: str) -> Path:
    return machine_dir / f"{machine}.log.gz"


def segments(machine_dir: Path, machine: str) -> list[Path]:
    """A machine's log files, oldest first: the rotated segments, then the current log."""
    current = log_path(machine_dir, machine)
    return [path for _, path in sorted(_numbered(machine_dir, machine))] + ([current] if current.exists() else [])


def _numbered(machine_dir: Path, machine: str) -> list[tuple[int, Path]]:
    """A machine's rotated segments ``<machine>.log.<N>.gz`` with their numbers."""
    pattern = re.compile(re.escape(machine) + r"\.log\.(\d+)\.gz")
    return [(int(m.group(1)), p) for p in machine_dir.glob(f"{machine}.log.*.gz") if (m := pattern.fullmatch(p.name))]


class MachineLog:
    """The parent's writer of ``<machine>.log.gz``: buffered, flushed as gzip members, rotated."""

    def __init__(self, machine_dir: Path, machine: str, settings: LogSettings) -> None:
        self.machine_dir = machine_dir
        self.machine = machine
        self.settings = settings
        self.path = log_path(machine_dir, machine)
        self._buffer: list[tuple[float, str]] = []
        self._buffered = 0
        self._flushed_at = time.monotonic()
        self._file: BinaryIO | None = None  # created with the first member: never an empty .gz

    def write(self, created: float, worker: str, job: str, level: str, name: str, message: str) -> None:
        line = self.settings.format.format(
            time=utc_timestamp(created), machine=self.machine, worker=worker, job=job, level=level, name=name, message=message
        )
        text = line.rstrip().replace("\n", "\n  ") + "\n"
        self._buffer.append((created, text))
        self._buffered += len(text)
        if self._buffered >= MAX_BUFFER:
            self.flush(everything=self._buffered >= MAX_HELD)

    def flush_if_due(self) -> None:
        if self._buffer and time.monotonic() - self._flushed_at >= FLUSH_INTERVAL:
            self.flush()

    def flush(self, *, everything: bool = False) -> None:
        """Append buffered records (all, or those older than HOLD_BACK) as one gzip member, sorted."""
        self._flushed_at = time.monotonic()
        self._buffer.sort(key=lambda entry: entry[0])
        cutoff = float("inf") if everything else time.time() - HOLD_BACK
        ready = next((i for i, (created, _) in enumerate(self._buffer) if created > cutoff), len(self._buffer))
        if not ready:
            return
        texts = [text for _, text in self._buffer[:ready]]
        del self._buffer[:ready]
        self._buffered = sum(len(text) for _, text in self._buffer)
        if self._file is None:
            self._file = open(self.path, "ab")
        for group in _groups(texts, self.settings.max_size):
            member = gzip.compress("".join(group).encode("utf-8", "replace"), compresslevel=6)
            if self._file.tell() and self._file.tell() + len(member) > self.settings.max_size:
                self._rotate()  # before writing: the current log always holds the newest member
            self._file.write(member)
        self._file.flush()

    def close(self) -> None:
        self.flush(everything=True)
        if self._file is not None:
            self._file.close()

    def _rotate(self) -> None:
        """Rename the full log to the next free number (never overwriting); start a new one."""
        assert self._file is not None
        self._file.close()
        last = max((n for n, _ in _numbered(self.machine_dir, self.machine)), default=0)
        self.path.rename(self.machine_dir / f"{self.machine}.log.{last + 1}.gz")
        self._file = open(self.path, "ab")


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
        self.log.write(record.created, PARENT, getattr(record, "job", "-"), record.levelname, record.name, _message(record))


def parent_logger(log: MachineLog, settings: LogSettings) -> logging.Logger:
    logger = logging.getLogger("jobsplit")
    logger.handlers[:] = [ParentHandler(log)]
    logger.setLevel(settings.level)
    logger.propagate = False
    return logger


class WorkerLogging:
    """Installed in each worker: routes logging, warnings and output to the parent.

    Python-level output (``print``, ``sys.stderr.write``) is attributed to the job that wrote
    it exactly; output written straight to file descriptors 1 and 2 (C code, subprocesses) is
    read by a thread and attributed to the job running when it is read. ``send`` must be safe
    to call from any thread. With ``per_job_dir``, each job's records and output also go to
    ``<per_job_dir>/<job id>.log.gz``.
    """

    def __init__(self, send: Callable[[list[LogEntry]], None], settings: LogSettings, per_job_dir: Path | None) -> None:
        self._send = send
        self._per_job_dir = per_job_dir
        self._job = "-"
        self._job_file: TextIO | None = None
        self._file_lock = threading.Lock()
        root = logging.getLogger()
        root.handlers[:] = [_WorkerHandler(self)]  # a forked worker inherits the parent's handlers
        root.setLevel(settings.level)
        jobsplit_logger = logging.getLogger("jobsplit")
        jobsplit_logger.handlers.clear()
        jobsplit_logger.propagate = True
        logging.captureWarnings(True)
        self._capture_descriptors()
        self._stdout = _LineWriter(self, "stdout", "INFO")
        self._stderr = _LineWriter(self, "stderr", "WARNING")
        sys.stdout, sys.stderr = self._stdout, self._stderr  # type: ignore[assignment]

    def start_job(self, job_id: str) -> None:
        self._job = job_id
        if self._per_job_dir is not None:
            with self._file_lock:
                self._job_file = gzip.open(self._per_job_dir / f"{job_id}.log.gz", "wt", encoding="utf-8", errors="replace")

    def end_job(self) -> None:
        self._stdout.end_line()
        self._stderr.end_line()
        self._job = "-"
        if self._job_file is not None:
            with self._file_lock:
                self._job_file.close()
                self._job_file = None

    def emit(self, created: float, level: str, name: str, message: str) -> None:
        job = self._job
        if self._job_file is not None:
            with self._file_lock:
                if self._job_file is not None:
                    self._job_file.write(f"{utc_timestamp(created)} {level} {name}: {message}\n")
        self._send([(created, level, name, job, message)])

    def close(self) -> None:
        """The worker is done: read what is left in the descriptor pipes before it exits."""
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)  # the pipes' last write ends: their reader now sees the end
        os.dup2(devnull, 2)
        os.close(devnull)
        self._reader.join(timeout=5)  # a job's own child process may still hold a write end

    def _capture_descriptors(self) -> None:
        """Point file descriptors 1 and 2 at pipes read by a thread that logs each line."""
        readers = {}
        for fd, name, level in ((1, "stdout", "INFO"), (2, "stderr", "WARNING")):
            read_end, write_end = os.pipe()
            os.dup2(write_end, fd)
            os.close(write_end)
            readers[read_end] = (name, level)
        self._reader = threading.Thread(target=self._read_descriptors, args=(readers,), daemon=True, name="jobsplit-output")
        self._reader.start()

    def _read_descriptors(self, readers: dict[int, tuple[str, str]]) -> None:
        partial = dict.fromkeys(readers, b"")
        while readers:
            ready, _, _ = select.select(list(readers), [], [])
            for fd in ready:
                chunk = os.read(fd, 65536)
                name, level = readers[fd]
                if not chunk:
                    if partial[fd]:
                        self.emit(time.time(), level, name, partial[fd].decode("utf-8", "replace"))
                    del readers[fd]
                    continue
                *lines, partial[fd] = (partial[fd] + chunk).split(b"\n")
                now = time.time()
                for line in lines:
                    self.emit(now, level, name, line.decode("utf-8", "replace").rstrip("\r"))


class _LineWriter(io.TextIOBase):
    """``sys.stdout`` / ``sys.stderr`` in a worker: every complete line becomes a log record."""

    def __init__(self, sink: WorkerLogging, name: str, level: str) -> None:
        self._sink = sink
        self._name = name
        self._level = level
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        *lines, self._partial = (self._partial + text).split("\n")
        now = time.time()
        for line in lines:
            self._sink.emit(now, self._level, self._name, line)
        return len(text)

    def end_line(self) -> None:
        """The job ended: an unfinished last line is still its output."""
        if self._partial:
            self._sink.emit(time.time(), self._level, self._name, self._partial)
            self._partial = ""


class _WorkerHandler(logging.Handler):
    def __init__(self, sink: WorkerLogging) -> None:
        super().__init__()
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.sink.emit(record.created, record.levelname, record.name, _message(record))
        except Exception:  # noqa: BLE001 - logging must never break the job
            self.handleError(record)


def _message(record: logging.LogRecord) -> str:
    message = record.getMessage()
    if record.exc_info:
        message += "\n" + logging.Formatter().formatException(record.exc_info)
    return message
