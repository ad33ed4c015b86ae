"""Merge machines' logs into one log ordered by time.

After a run on several machines, each machine has its own log (rotated into numbered segments
when large); reading what happened across machines needs one stream in time order. Logs can be
far larger than memory, so this is a streaming k-way merge: each input is read a bounded chunk
at a time and only the records that no unread record can precede are written, so memory grows
with the number of inputs, not with their length.

INPUT is a log file (gzip or plain text), a machine directory (each machine's rotated segments
and current log are read oldest first as one stream) or an output root (its subdirectories
<machine>/ holding <machine>.log.gz). Records are ordered by their time; those of one millisecond
keep their order: a log's as written (a job's lines, a traceback printed line by line), and the
logs' by file name, so the merge does not depend on the order of the inputs. A truncated last gzip member (a log copied while its run was writing, or a
killed run) is reported, and the complete records before the cut are kept; a damaged stretch
followed by complete members is skipped and named."""

from __future__ import annotations

import argparse
import gzip
import operator
import os
import re
import time
import zlib
from bisect import bisect_left
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import BinaryIO

from rich.console import Console

from .console import say_notice
from .errors import UserError, describe_os_error
from .gzipmembers import inflate, next_member
from .journal import Journal
from .merge import refuse_mixed_plans
from .outdir import JOURNAL_FILE, LOG_NAME, MachineDir, repeated_machine_sentence, repeated_machines
from .permissions import unreadable
from .sources.redis import RedisQueue
from .text import plural
from .tooloutput import tool_output

NAME = "merge-logs"
HELP = "merge machines' logs into one log ordered by time"

CHUNK = 1 << 20
"""Plain text taken from one input at a time."""
READ_SIZE = 1 << 18
"""Bytes read to tell a gzip file from plain text."""
HELD = 4 << 20
"""Text of one gzip member held until its CRC checks: the memory each input costs. A flush of
jobsplit's makes some 1 MiB (logs.MAX_BUFFER); a longer member is decompressed twice."""
TIME_WIDTH = len("2026-11-23T12:33:56.481Z")
"""Every record starts with a fixed-width timestamp, so comparing bytes compares times."""
GZIP_MAGIC = b"\x1f\x8b"

_RECORD_START = re.compile(rb"\n(?=\d)")
"""A line that starts with a digit starts a record; any other line continues the previous one."""
_FIRST_RECORD = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
FIRST_TIME_WIDTH = len("2026-11-23T12:33:56")
"""How a log begins: with its first record's time (a journal, results.csv or a binary file given as a log does not)."""
_time_of = operator.itemgetter(slice(0, TIME_WIDTH))
"""A record's timestamp: its first TIME_WIDTH bytes."""

Write = Callable[[bytes], object]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="a log file (.gz or plain), a machine directory, or an output root")
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="the merged log: gzip if it ends with .gz, plain otherwise, - for stdout")


def run(args: argparse.Namespace, console: Console) -> int:
    started = time.perf_counter()
    streams = find_streams(args.inputs)
    check_machine_folders(streams, console)
    inputs = [LogStream(files, console) for files in streams]
    with open_output(args.output) as write:  # a reader of stdout that stops early: see cli
        records = merge(inputs, write)
    files = sum(len(files) for files in streams)
    seconds = time.perf_counter() - started
    console.print(f"merged {plural(records, 'record')} from {plural(len(inputs), 'log')} ({plural(files, 'file')}) into {args.output} in {seconds:.1f} s", markup=False)
    return 0


def check_machine_folders(streams: list[list[Path]], console: Console) -> None:
    """What merge-results refuses or notes of the machine folders these logs are in (those with
    a journal, which tells the digest and the machine): folders of different plans are refused,
    a machine in several folders (its records would come twice) is named. A journal that cannot
    be read is left out: the logs beside it are still merged."""
    folders = []
    for folder in dict.fromkeys(files[-1].parent for files in streams if LOG_NAME.fullmatch(files[-1].name)):
        if (folder / JOURNAL_FILE).is_file():
            try:
                with closing(Journal(folder / JOURNAL_FILE, read_only=True)) as journal:
                    meta = journal.meta()
            except UserError:
                continue
            if "digest" in meta and "machine" in meta:  # a journal a run refused before its plan was in holds neither
                folders.append((folder, meta))
    refuse_mixed_plans(folders)
    queue = any(meta.get("source") == RedisQueue.name for _, meta in folders)
    for name, found in repeated_machines((meta["machine"], folder) for folder, meta in folders).items():
        say_notice(console, repeated_machine_sentence(name, found, queue=queue))


def find_streams(inputs: list[str]) -> list[list[Path]]:
    """The inputs as sorted streams, each a list of files read one after the other, in the
    order of their (last) files' names: the order of a millisecond's records from several logs.

    A file reached twice (named twice, or also found in a directory) is read once.
    """
    seen: set[tuple[int, int]] = set()
    streams = []
    for text in inputs:
        path = Path(text)
        try:
            if path.is_dir():
                found = directory_logs(path)
            elif path.exists():
                found = [[path]]
            else:
                raise UserError(f"{text} does not exist; give log files, machine directories or an output root")
        except PermissionError as exc:
            raise unreadable(exc) from None
        for files in found:
            unique = [file for file in files if _unseen(file, seen)]
            if unique:
                streams.append(unique)
    return sorted(streams, key=lambda files: (files[-1].name, str(files[-1])))


def directory_logs(directory: Path) -> list[list[Path]]:
    """The log streams of an output root, else of a machine directory (or any folder of logs).

    A root is told by its subdirectories holding ``<machine>.log.gz`` (or its segments), so a
    merged log saved in the root is not mistaken for a machine's; whatever their names (a folder
    copied from a host as ``b-from-hostB``: it was left out, silently, as not ``b/``).
    """
    machines = [logs for sub in sorted(directory.iterdir()) if sub.is_dir() and (logs := machine_logs(sub))]
    found = [files for logs in machines for files in logs] if machines else machine_logs(directory)
    if not found:
        raise UserError(f"{directory} holds no logs: expected <machine>.log.gz files in it or in its subdirectories <machine>/")
    return found


def machine_logs(directory: Path) -> list[list[Path]]:
    """Each machine's log files in ``directory``, oldest first (empty if there are none)."""
    machines = sorted({m.group(1) for p in directory.iterdir() if (m := LOG_NAME.fullmatch(p.name)) and p.is_file()})
    return [MachineDir(directory, machine).segments() for machine in machines]


def _unseen(path: Path, seen: set[tuple[int, int]]) -> bool:
    """Whether the file ``path`` names is met here for the first time (by device and inode), noting it."""
    stat = path.stat()
    key = (stat.st_dev, stat.st_ino)
    if key in seen:
        return False
    seen.add(key)
    return True


class LogFile:
    """One log file's text, decompressed if it is gzip, in chunks of at most 1 MiB.

    Only complete gzip members are read (their text held until their CRC checks, so a damaged
    member gives no garbled lines), but for the file's end: a last member cut short (a copy
    taken mid-write, a crash) gives its text, and ``truncated`` tells it once the chunks are
    read. A damaged stretch with complete members after it (a run resumed after a crash, by an
    earlier jobsplit, appended behind it) is skipped to the next complete member: ``damaged``
    lists the (start, end) byte offsets skipped.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.truncated = False
        self.damaged: list[tuple[int, int]] = []

    def chunks(self) -> Iterator[bytes]:
        try:
            file = open(self.path, "rb")  # noqa: SIM115 - closed by the with below
        except OSError as exc:  # read while the output is written: its error said the output could not be written
            raise UserError(f"{self.path} cannot be read ({describe_os_error(exc)}); check its permissions, or leave it out") from None
        with file:
            head = file.read(READ_SIZE)
            if head.startswith(GZIP_MAGIC) or self.path.name.endswith(".gz"):
                yield from self._gunzip(file)
            else:
                if head:
                    yield head
                yield from iter(lambda: file.read(CHUNK), b"")

    def _gunzip(self, file: BinaryIO) -> Iterator[bytes]:
        """The text of member after member, each once it is known complete."""
        if not file.seekable():
            raise UserError(f"{self.path} is gzip read from a pipe, whose damaged parts could not be skipped; give the file itself")
        size = os.fstat(file.fileno()).st_size
        start = 0
        while start < size:
            held: list[bytes] | None = []
            size_held = 0
            member = inflate(file, start)
            try:
                while True:
                    out = next(member)
                    if held is not None:
                        held.append(out)
                        size_held += len(out)
                        if size_held > HELD:
                            held = None  # read again once it checks
            except StopIteration as done:
                end = done.value
            except zlib.error:
                end = None
            if end is None:
                following = next_member(file, start + 1)
                if following is None:
                    yield from self._tail(file, start)
                    return
                self.damaged.append((start, following))
                start = following
                continue
            yield from held if held is not None else inflate(file, start)
            start = end

    def _tail(self, file: BinaryIO, start: int) -> Iterator[bytes]:
        """What can be read of a last member cut short (its complete lines are kept by the
        reader); a file that begins with no gzip member at all is refused."""
        self.truncated = True
        try:
            yield from inflate(file, start)
        except zlib.error as exc:
            if start == 0:
                raise UserError(f"{self.path} is corrupt or not gzip ({exc})") from None


class LogStream:
    """One sorted input (a file, or a machine's segments in order) as a buffer of records.

    ``records`` holds the buffered records, each without its final newline; ``exhausted``
    tells that every record of the input has been buffered.
    """

    def __init__(self, files: list[Path], console: Console) -> None:
        self.records: list[bytes] = []
        self.exhausted = False
        self._console = console
        self._batches = self._read(files)

    def fill(self) -> None:
        """Buffer the next chunk's records, or mark the input exhausted."""
        for batch in self._batches:
            if batch:
                self.records += batch
                return
        self.exhausted = True

    def _read(self, files: list[Path]) -> Iterator[list[bytes]]:
        for path in files:
            log, count, carry, checked = LogFile(path), 0, b"", False
            for chunk in log.chunks():
                if not checked and len(carry + chunk) >= FIRST_TIME_WIDTH:  # a member cut short may give less, or nothing
                    if not _FIRST_RECORD.match(carry + chunk):
                        raise UserError(f"{path} is no jobsplit log: it does not begin with a record's time (such as 2026-11-23T12:33:56.481Z); give log files, machine folders or an output root")
                    checked = True
                batch = _RECORD_START.split(carry + chunk)
                carry = batch.pop()  # the last record may go on in the next chunk
                count += len(batch)
                yield batch
            if not count and not carry and not log.truncated:
                say_notice(self._console, f"{path} is empty: it holds no records")
            if log.truncated:
                carry = carry[: carry.rfind(b"\n") + 1]  # drop a line cut short
            if carry:
                count += 1
                yield [carry.removesuffix(b"\n")]
            for start, end in log.damaged:
                say_notice(self._console, damage_sentence(path, start, end))
            if log.truncated:
                say_notice(self._console, f"{path}: the last gzip member is truncated; kept the {count:,} complete records before it")


def damage_sentence(path: Path, start: int, end: int) -> str:
    """What a damaged stretch of a log skipped by LogFile cost."""
    return (
        f"{path}: bytes {start:,} to {end:,} are damaged (a gzip member cut short by a crash, with a resumed run's records written after it); "
        "the records in them are lost, those before and after are kept"
    )


def merge(inputs: list[LogStream], write: Write) -> int:
    """Write the records of all inputs in time order, a millisecond's in the inputs' order and
    each input's own; return how many were written.

    Each round takes the earliest timestamp among the last buffered records of the inputs
    still being read as a bound: no unread record is older than it, so every buffered record
    older than it can be written. Each input's records older than the bound are found by
    bisection (a record is older than the bound exactly when its time is: its bytes begin with it)
    and merged by ``list.sort`` on the time alone (Timsort merges the sorted runs, and is stable).
    """
    for stream in inputs:
        stream.fill()
    live = [stream for stream in inputs if stream.records]
    written = 0
    while live:
        reading = [stream for stream in live if not stream.exhausted]
        bound = min(stream.records[-1][:TIME_WIDTH] for stream in reading) if reading else None
        ready: list[bytes] = []
        for stream in live:
            cut = len(stream.records) if bound is None else bisect_left(stream.records, bound)
            ready += stream.records[:cut]
            del stream.records[:cut]
        if ready:
            ready.sort(key=_time_of)
            write(b"\n".join(ready))
            write(b"\n")
            written += len(ready)
        for stream in reading:
            if stream.records[-1][:TIME_WIDTH] == bound:
                stream.fill()
        live = [stream for stream in live if stream.records]
    return written


@contextmanager
def open_output(out: str) -> Iterator[Write]:
    """A writer of OUT: stdout for ``-``, else a file written whole (see ``tool_output``),
    compressed if its name ends with ``.gz``."""
    with tool_output(out, "wb") as raw:
        if out != "-" and out.endswith(".gz"):
            with gzip.GzipFile(Path(out).name, "wb", compresslevel=6, fileobj=raw) as compressed:
                yield compressed.write
        else:
            yield raw.write
