"""The runner's side of its workers: starting them, and talking to them without ever blocking.

Each worker has a task pipe and a result pipe of its own, and a slot on the shared progress
board. The runner's ends of the pipes are non-blocking: a message to a worker is queued and
written as the pipe takes it, and a message from a worker is read as it arrives, so a worker
that is busy, stopped (SIGSTOP) or stuck can never stall the runner, and no pair of full pipes
can deadlock. One selector watches every pipe and every process's exit.

The runner sees workers only through :class:`WorkerHub` and :class:`WorkerLink`, so tests can
drive its logic with fake workers and a fake clock.
"""

from __future__ import annotations

import errno
import fcntl
import gc
import os
import pickle
import selectors
import signal
import struct
import sys
from collections.abc import Sequence
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import Any, Protocol

from .capture import STREAMS
from .children import become_subreaper, oom_kills, started_at, stop_orphans
from .errors import UserError
from .messages import GARBLED
from .progress import ProgressBoard, SlotState
from .worker import WorkerSetup, worker_main

PIPE_SIZE = 1 << 20
"""Bytes a pipe holds (Linux; the default is 64 KiB): fewer wake-ups for large arguments."""
READ_SIZE = 1 << 20
LEFTOVER_LIMIT = 1 << 20
"""Bytes of a dead worker's unread output read at most (a program its job left may go on writing)."""
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_SHORT_HEADER = struct.Struct("!i")  # multiprocessing.connection's framing, so workers use Connection
_LONG_HEADER = struct.Struct("!Q")

Message = tuple[str, Any]

PROCESS_LIMIT = (
    "this user's process limit is reached (`ulimit -u`, which counts every thread of every program the user runs; or a container's or "
    "service's limit on tasks): what is done is recorded and the other jobs stay pending; use fewer --workers or end some of this "
    "user's programs (or raise the limit: nproc in /etc/security/limits.conf, TasksMax= for a service), then run the same command again to resume"
)
"""Why a worker cannot start (a fork that fails with EAGAIN, or a worker that cannot start its
threads), and what to do: the run stops, resumable, rather than replacing workers in a loop."""


class WorkerLink(Protocol):
    """One worker, as the runner sees it."""

    slot: int
    pid: int

    def send(self, message: Any) -> None:
        """Queue a message for the worker (a batch of assignments, or None: stop); never blocks.
        A message that cannot be pickled raises here, and nothing is queued."""
        ...

    def pump(self) -> list[Message]:
        """Write what the task pipe takes, read what the result pipe holds; the complete
        messages received. Never blocks."""
        ...

    def current(self) -> SlotState:
        """What the worker runs now (its board slot)."""
        ...

    def exit_code(self) -> int | None:
        """None while the process lives; else its exit status (negative: the signal)."""
        ...

    def signal(self, signum: int) -> None:
        """Signal the worker's whole process group: the job and the programs it started."""
        ...

    def stop(self) -> None:
        """Stop the worker: it starts no other job, and its process group gets SIGTERM."""
        ...

    def leftover_output(self) -> list[tuple[str, str, bytes]]:
        """(stream, level, bytes) of what the worker's jobs wrote to its standard output and
        error that it never read: called once it has died."""
        ...

    def close(self) -> None:
        """Free the pipes (the worker has exited)."""
        ...


class WorkerHub(Protocol):
    def start(self, slot: int) -> WorkerLink: ...

    def stop_orphans(self) -> list[tuple[int, str]]:
        """Kill the programs that workers which died left outside their process groups (beyond
        a signal to the group); returns their (pid, command), for the log."""
        ...

    def wait(self, links: Sequence[WorkerLink], timeout: float) -> list[WorkerLink]:
        """Block until some link has news (a message, room in its task pipe, an exit), at
        most ``timeout`` seconds; returns those links."""
        ...

    def resumed(self, paused: float) -> None:
        """The workers are about to continue after a pause of ``paused`` seconds (Ctrl-Z), which
        their jobs leave out of their running times."""
        ...

    def oom_kills(self) -> int | None:
        """How many processes the kernel's out-of-memory killer has killed here so far (None:
        not known): a worker killed by SIGKILL while it rose was most likely one of them."""
        ...


class ProcessHub:
    """Real worker processes of one ``multiprocessing`` context."""

    def __init__(self, context: BaseContext, setup: WorkerSetup) -> None:
        self.context = context
        self.setup = setup
        self.board: ProgressBoard = setup.board
        self._selector = selectors.DefaultSelector()
        self._pids: set[int] = set()
        """Every worker started: never taken for an orphan, even once it has exited."""
        self._since: int | None = None
        """When the first worker started (clock ticks after boot): this process's older children are its own."""
        become_subreaper()  # what a dying worker leaves comes here, not to PID 1, and can be stopped

    def start(self, slot: int) -> ProcessLink:
        """Start the worker of ``slot``. Where the system refuses a process (the user's process
        limit, memory), one sentence says so, and the pipes made for it are closed."""
        self.board.take(slot)
        pipes: list[tuple[Connection, Connection]] = []
        try:
            for _ in range(2 + len(STREAMS)):
                pipes.append(self.context.Pipe(duplex=False))  # one by one: those made before a failure are closed
            (task_reader, task_writer), (result_reader, result_writer), *output = pipes
            process: BaseProcess = self.context.Process(  # type: ignore[attr-defined] # typeshed has Process on the concrete contexts only
                target=worker_main,
                args=(self.setup, task_reader, result_writer, output, slot, os.getpid()),
                name=f"jobsplit-worker-{slot}",
                daemon=True,
            )
            _start_with_frozen_heap(process)
        except OSError as exc:
            for pair in pipes:
                for end in pair:
                    end.close()
            if exc.errno == errno.EAGAIN:
                raise UserError(f"cannot start a worker process: {PROCESS_LIMIT}") from None
            if exc.errno == errno.ENOMEM:
                raise UserError(
                    "cannot start a worker process: the host has no memory left for one; what is done is recorded and the other jobs "
                    "stay pending; use fewer --workers or free some memory, then run the same command again to resume"
                ) from None
            raise
        assert process.pid is not None, "a started process has a pid"
        self._pids.add(process.pid)
        if self._since is None:
            self._since = started_at(process.pid)
        try:
            os.setpgid(process.pid, process.pid)  # the worker does it too: whoever is first, no race
        except OSError:
            pass  # it already has (or, under spawn, has exec'd: then it did it itself)
        task_reader.close()
        result_writer.close()
        for _, write_end in output:
            write_end.close()
        return ProcessLink(slot, process, task_writer, result_reader, [read_end for read_end, _ in output], self.board, self._selector)

    def stop_orphans(self) -> list[tuple[int, str]]:
        return [] if self._since is None else stop_orphans(self._pids, self._since)

    def resumed(self, paused: float) -> None:
        self.board.add_pause(paused)

    def oom_kills(self) -> int | None:
        return oom_kills()

    def wait(self, links: Sequence[WorkerLink], timeout: float) -> list[WorkerLink]:
        ready: dict[int, WorkerLink] = {}
        for key, _ in self._selector.select(max(timeout, 0.0)):
            ready[id(key.data)] = key.data
        return list(ready.values())


def _start_with_frozen_heap(process: BaseProcess) -> None:
    """Start ``process`` with every object the runner holds now moved out of its garbage
    collector's sight (``gc.freeze``), as the ``gc`` documentation advises before a fork.

    A forked worker shares the runner's memory until either writes to a page. Its collector's
    full passes write to the header of every tracked object it inherited (every module, the
    plan, a pool of lists or dicts), and the kernel copies each page that holds one: a million
    two-item lists in the runner became 124 MB of private memory in each worker after one
    collection. Frozen, they are never looked at in the worker, which could not free them anyway
    (the runner's frames stay alive in a forked child). For the 20,000-job benchmark this halves
    the workers' page faults (7,580 to 3,906 a run) and takes 9% off their CPU time. The runner
    unfreezes at once, so its own collections are as before, unless the job's code had frozen
    objects itself (``gc.unfreeze`` cannot tell whose they are): then the runner's stay frozen
    with them. Under ``spawn`` nothing changes."""
    frozen_before = gc.get_freeze_count()
    gc.freeze()
    try:
        process.start()
    finally:
        if not frozen_before:
            gc.unfreeze()


class ProcessLink:
    """A worker process and the runner's non-blocking ends of its pipes."""

    def __init__(
        self,
        slot: int,
        process: BaseProcess,
        tasks: Connection,
        results: Connection,
        output: list[Connection],
        board: ProgressBoard,
        selector: selectors.BaseSelector,
    ) -> None:
        self.slot = slot
        self.process = process
        self.pid = process.pid or 0
        self._tasks, self._results = tasks, results
        self._output = output
        """Our read ends of the pipes of the worker's fds 1 and 2 (see capture): never read
        while it lives, which its own thread does."""
        self._task_fd, self._result_fd = tasks.fileno(), results.fileno()
        self._board = board
        self._selector = selector
        self._outgoing = bytearray()
        self._incoming = bytearray()
        self._writable = True
        self._readable = True
        for fd in (self._task_fd, self._result_fd):
            os.set_blocking(fd, False)
            if sys.platform.startswith("linux"):
                try:
                    fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_SIZE)
                except OSError:
                    pass  # above /proc/sys/fs/pipe-max-size: the default size still works
        selector.register(self._result_fd, selectors.EVENT_READ, self)
        selector.register(process.sentinel, selectors.EVENT_READ, self)
        self._sentinel_watched = True

    def send(self, message: Any) -> None:
        data = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
        if not self._writable:
            return  # the worker is gone; its sentinel will tell
        if len(data) <= 0x7FFFFFFF:
            self._outgoing += _SHORT_HEADER.pack(len(data))
        else:
            self._outgoing += _SHORT_HEADER.pack(-1) + _LONG_HEADER.pack(len(data))
        self._outgoing += data
        self._write()

    def pump(self) -> list[Message]:
        if self._outgoing:
            self._write()
        return self._read()

    def current(self) -> SlotState:
        return self._board.read(self.slot)

    def exit_code(self) -> int | None:
        code = self.process.exitcode
        if code is not None and self._sentinel_watched:
            self._sentinel_watched = False  # an exited process's sentinel stays ready: stop watching it
            self._unregister(self.process.sentinel)
        return code

    def stop(self) -> None:
        self._board.stop(self.slot)
        self.signal(signal.SIGTERM)

    def signal(self, signum: int) -> None:
        try:
            os.killpg(self.pid, signum)
        except OSError:
            try:
                os.kill(self.pid, signum)  # not (yet) a group leader
            except OSError:
                pass  # gone

    def join(self, timeout: float | None = None) -> None:
        self.process.join(timeout)

    def close(self) -> None:
        for fd in (self._result_fd, self._task_fd, self.process.sentinel):
            self._unregister(fd)
        self._tasks.close()
        self._results.close()
        for end in self._output:
            end.close()

    def leftover_output(self) -> list[tuple[str, str, bytes]]:
        leftover = []
        for end, (_, name, level) in zip(self._output, STREAMS):
            os.set_blocking(end.fileno(), False)  # a program the job left may hold the write end
            data = bytearray()
            try:
                while data_read := os.read(end.fileno(), READ_SIZE):
                    data += data_read
                    if len(data) >= LEFTOVER_LIMIT:
                        break
            except OSError:
                pass  # nothing (more) to read now
            if data:
                leftover.append((name, level, bytes(data)))
        return leftover

    def _write(self) -> None:
        try:
            written = os.write(self._task_fd, self._outgoing)
        except BlockingIOError:
            written = 0
        except OSError as exc:  # EPIPE: the worker died; what it had not read is handed back by the runner
            if exc.errno not in (errno.EPIPE, errno.EBADF):
                raise
            self._writable = False
            self._watch_writes(False)
            self._outgoing.clear()
            return
        had_more = len(self._outgoing) > 0
        del self._outgoing[:written]
        if had_more and not self._outgoing:
            self._watch_writes(False)
        elif self._outgoing:
            self._watch_writes(True)

    def _watch_writes(self, on: bool) -> None:
        registered = self._task_fd in self._selector.get_map()
        if on and not registered:
            self._selector.register(self._task_fd, selectors.EVENT_WRITE, self)
        elif not on and registered:
            self._selector.unregister(self._task_fd)

    def _unregister(self, fd: int) -> None:
        try:
            self._selector.unregister(fd)
        except (KeyError, ValueError):
            pass  # not watched (any more)

    def _read(self) -> list[Message]:
        try:
            while self._readable:
                try:
                    chunk = os.read(self._result_fd, READ_SIZE)
                except BlockingIOError:
                    break
                except OSError:
                    chunk = b""
                if not chunk:  # the worker has exited (or closed its end): nothing more will come
                    self._readable = False
                    self._unregister(self._result_fd)
                    break
                self._incoming += chunk
            return self._messages()
        except MemoryError:
            # This process's memory is used up: the message being read can never be taken whole.
            # Read on as the run stops, it took the memory the stop needed (a segmentation fault
            # once): what it held was never recorded, and runs again.
            self._readable = False
            self._unregister(self._result_fd)
            self._incoming = bytearray()
            raise

    def _messages(self) -> list[Message]:
        messages, buffer, start = [], self._incoming, 0
        while len(buffer) - start >= 4:
            (size,) = _SHORT_HEADER.unpack_from(buffer, start)
            header = 4
            if size == -1:
                if len(buffer) - start < 12:
                    break
                (size,) = _LONG_HEADER.unpack_from(buffer, start + 4)
                header = 12
            if len(buffer) - start - header < size:
                break
            try:
                messages.append(pickle.loads(buffer[start + header : start + header + size]))
            except MemoryError:
                raise  # the runner's own memory, not bytes gone wrong: the command stops and says so
            except Exception as exc:  # noqa: BLE001 - bytes no worker sent: nothing after them can be trusted
                self._readable = False
                self._unregister(self._result_fd)
                buffer.clear()
                return [*messages, (GARBLED, f"{type(exc).__name__}: {exc}")]
            start += header + size
        if start:
            del buffer[:start]
        return messages
