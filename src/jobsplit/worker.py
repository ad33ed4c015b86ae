"""The worker process: runs the jobs its pipe brings, one at a time, and sends back records.

Three threads, none of which can block another's progress for good:

- the job thread (main) runs jobs, and each result becomes its CSV line in the worker (at once,
  or for plain values when its group is sent: see _Outbox), so what crosses back to the parent
  is plain text: a value that cannot be pickled never hangs the run;
- the task reader moves batches from the task pipe into a queue, making what each job needs
  before it starts (its ``Job Args`` text, and for longer jobs its ``random_obj``) so that the
  job thread goes from one job to the next with as little work as it can, and notes
  revocations (jobs the runner takes back before they start, to give an idle worker): it never
  writes, so the parent's sends always drain, whatever the result pipe holds;
- the watcher sends results that waited too long behind a long job (making the rows they still
  lack), and stops the worker (and every program its job started) if the parent has died.
"""

from __future__ import annotations

import fcntl
import functools
import multiprocessing
import os
import random
import reprlib
import signal
import sys
import termios
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from itertools import repeat
from multiprocessing.connection import Connection
from pathlib import Path
from queue import SimpleQueue
from types import FrameType, TracebackType
from typing import Any, NamedTuple, NoReturn

from .capture import LoggingSetup, OutputCapture
from .children import become_group_leader_and_subreaper, end_library_helpers, library_helpers, signal_strays, stop_children
from .config import Header, JobConfig, LogSettings
from .jobrandom import job_random, leave_module_generators, prepare_module_generators, seed_numpy_random
from .lifecycle import USER_SIGNALS, die_with_parent, restore_library_path
from .messages import LOG, RESULTS, REVOKED, Batch, LogEntry, Results, Revoke
from .nativethreads import limit_loaded_thread_pools
from .pool import call_args, identity_text, identity_texts
from .progress import ProgressBoard, ProgressReporter
from .results import Cells, ResultShapeError, RowFormatter
from .states import Outcome
from .text import article, clean_text
from .workerfiles import DescriptorWatch
from .workermemory import MemoryWatch

FLUSH_INTERVAL = 0.05
"""Seconds a short job's record may wait in the worker to travel with others."""
LAST_SEND_WAIT = 0.2
"""Seconds a worker stopped by SIGTERM waits for its outbox (another thread sending) before it
sends the records still waiting there."""
CHILD_GRACE = 1.0
"""Seconds a job's leftover child processes get between SIGTERM and SIGKILL."""
CPU_ABOVE = 0.001
"""Jobs shorter than this (seconds) get no CPU time: it would tell little."""
PEAK_ABOVE = 0.1
"""Jobs shorter than this (seconds) get no peak memory: reading and resetting it costs about a
quarter of a millisecond between two jobs here (Linux writes /proc/self/status anew for each
read), 2.5% of a 10 ms job."""
CHILDREN_ABOVE = 50e-6
"""Jobs shorter than this (seconds) cannot have started a program (a fork and exec alone take
longer), so nobody looks for the children they left."""
STOP_WAIT = 5.0
"""Seconds a worker given a SIGTERM the runner did not send waits for the runner's own (see
_on_terminate)."""
REPR_LIMIT = 10_000
"""Characters of a wrong-shaped value's repr kept in the error, so it need not be recomputed."""
NO_THREADS = 71
"""A worker's exit status when the system refuses it its threads (sysexits' EX_OSERR, "cannot
fork"): the user's process limit, which counts threads, is reached. It exits before it says
anything, and the runner, seeing this status, names the limit (a worker that died of it
otherwise left a traceback in the log only, and the run blamed the entry's top-level code)."""

_PACKAGE_DIR = str(Path(__file__).resolve().parent)


@dataclass(frozen=True)
class WorkerSetup:
    """What every worker needs; sent once when it starts (pickled under ``spawn``)."""

    job: Callable[..., Any]
    config: dict[str, dict[str, str]]
    header: Header
    machine: str
    digest: str
    code: str
    run_started: float
    seed: bytes
    board: ProgressBoard
    nice: int
    log: LogSettings
    per_job_logs: Path | None = None
    threads: int | None = None
    """Threads of each native thread pool (see nativethreads); None: the user chose."""
    by_name: bool = False
    """``random_obj`` and ``config`` go to the job function by name (see jobcall.injects_by_name)."""
    memory_limit: int | None = None
    """Bytes this worker may grow by before another replaces it (see workermemory); None: no limit."""


class _Ready(NamedTuple):
    """A job as the job thread takes it, with what the task reader made for it beforehand."""

    ticket: int
    position: int
    job_id: str
    job: Any
    job_args: str | None
    """The canonical JSON of the job's identity (None: the job thread computes it, and reports
    what fails)."""
    random_obj: random.Random | None
    """None: the job thread makes it (see RANDOMS_AHEAD)."""


RANDOMS_AHEAD = 32
"""Batches of at most this many jobs (jobs of about 3 ms or more: the runner sizes batches to
0.1 s) get their random objects from the task reader; larger ones (of shorter jobs), from the
job thread, just before each job.

Made between two jobs, where every step runs from cold caches, a random object lengthened the
gap between two 10 ms jobs by 7 to 18 us here. But each holds the generator's 2.5 KB state, and
512 made at once took fresh memory from the system for every batch (1.5 us a job), where one
made by the job thread reuses the memory of the last job's (0.3 us)."""


def _prepare(batch: Batch, seed: bytes) -> list[_Ready]:
    """The task reader's work on a batch: each job's identity text (and random object, see
    RANDOMS_AHEAD), made here rather than between two jobs, costs the job thread nothing while a
    job runs, and is made from the arguments as they arrived. The texts of a batch of tuples of
    one shape are made at once (``identity_texts``)."""
    texts: list[str] | list[str | None] = batch.job_args or identity_texts(batch.jobs) or [_identity_or_none(job, position) for job, position in zip(batch.jobs, batch.positions)]
    randoms = map(job_random, repeat(seed), batch.job_ids) if len(batch.job_ids) <= RANDOMS_AHEAD else repeat(None)
    return list(map(_Ready._make, zip(batch.tickets, batch.positions, batch.job_ids, batch.jobs, texts, randoms)))


def _identity_or_none(job: Any, position: int) -> str | None:
    try:
        return identity_text(job, position)
    except Exception:  # noqa: BLE001 - computed again by the job thread, which reports it
        return None


def worker_main(setup: WorkerSetup, tasks: Connection, results: Connection, output: Sequence[tuple[Connection, Connection]], slot: int, parent_pid: int) -> None:
    """Entry point of a worker process. ``output``: (read end, write end) of the pipes its jobs'
    standard output and error go to (see capture)."""
    global _parent_pid, _worker_pid, _outbox, _board, _slot
    _parent_pid, _worker_pid, _board, _slot = parent_pid, os.getpid(), setup.board, slot
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGTSTP, signal.SIG_DFL)  # a forked worker has the parent's handler, which would pause the run's workers from here
    signal.signal(signal.SIGCONT, signal.SIG_DFL)  # and its SIGCONT handler, which would cut a job's system calls short (EINTR) when continued
    signal.signal(signal.SIGHUP, _no_hangup)
    for signum in USER_SIGNALS:  # and its SIGUSR1/2 handlers, a stop of the run: a job's are its own
        signal.signal(signum, signal.SIG_DFL)
    become_group_leader_and_subreaper()
    _leave_the_terminal()
    # The runner starts workers daemonic (its exit stops them), but multiprocessing forbids a
    # daemonic process children: a job's own Pool would fail. The job's processes are stopped
    # with it anyway (its worker's process group; leftovers, see children.py).
    multiprocessing.current_process().daemon = False
    os.register_at_fork(before=_hold_sigterm, after_in_parent=_release_sigterm, after_in_child=_start_forked_child)
    signal.signal(signal.SIGTERM, _on_terminate)
    die_with_parent(parent_pid, signal.SIGTERM)
    restore_library_path()
    prepare_module_generators()
    if setup.threads is not None:
        limit_loaded_thread_pools(setup.threads)
    if setup.nice:
        os.nice(setup.nice)  # the parent checked that this is allowed
    outbox = _outbox = _Outbox(results, RowFormatter(setup.header, setup.machine, setup.run_started, setup.digest, setup.code))
    inbox: SimpleQueue[list[_Ready] | None] = SimpleQueue()
    revocations = _Revocations()
    try:  # the three threads of the worker: its output's reader, its task reader, its watcher
        capture = OutputCapture(outbox.send_log, setup.log, setup.per_job_logs, [(_own_fd(read_end), _own_fd(write_end)) for read_end, write_end in output])
        threading.Thread(target=_read_tasks, args=(tasks, inbox, revocations, setup.seed), daemon=True, name="jobsplit-tasks").start()
        threading.Thread(target=_watch, args=(outbox, revocations, parent_pid), daemon=True, name="jobsplit-watch").start()
    except RuntimeError:  # "can't start new thread"
        os._exit(NO_THREADS)
    memory = MemoryWatch(setup.memory_limit) if setup.memory_limit else None
    outgrown = _run_jobs(inbox, _JobRunner(setup, slot, capture, outbox), revocations, memory, DescriptorWatch())
    end_library_helpers()
    capture.close()  # the last output of the last job reaches the log before the worker exits
    if outgrown:
        os._exit(0)  # at once: nobody stops this worker, and a thread a job left running would hold up a normal exit for ever


def _run_jobs(
    inbox: SimpleQueue[list[_Ready] | None], run: _JobRunner, revocations: _Revocations, memory: MemoryWatch | None, files: DescriptorWatch | None = None
) -> bool:
    """Run the batches the task reader queues until the runner's stop (None: False), or until
    this worker has outgrown its memory limit or its jobs have left too many descriptors open
    (True): it then exits, and the runner hands the jobs still queued here to the worker that
    replaces it (never started, they were not running)."""
    board, slot, outbox = run.setup.board, run.slot, run.outbox
    while (batch := inbox.get()) is not None:
        for ready in batch:
            if board.stopping(slot):  # the last job outlived the SIGTERM that stops us: go as it would have taken us
                _on_terminate(signal.SIGTERM, None)
            if revocations.start(ready.ticket, outbox):
                run(ready)
                watch = memory if memory is not None and memory.outgrown() else files if files is not None and files.outgrown() else None
                if watch is not None:
                    with _recording_here():
                        run.capture.emit(time.time(), "WARNING", "jobsplit", watch.explain(ready.job_id))
                        outbox.flush()
                    return True
        # A batch ended: its group goes now, from this thread, before the next job starts, so a
        # worker that dies loses at most the group it was running. Handed to the watcher instead,
        # it left 0.2 ms more for the jobs between batches (a mean gap of 167 us against 195 for
        # 10 ms jobs here), but a job that crashed as it started took the last group with it too.
        with _recording_here():
            outbox.flush()
    return False


def _own_fd(end: Connection) -> int:
    """The descriptor of a pipe's end, as the worker's own (the Connection closes its copy)."""
    fd = os.dup(end.fileno())
    end.close()
    return fd


def _no_hangup(signum: int, frame: FrameType | None) -> None:
    """A worker has no terminal to lose: a SIGHUP (from a person, or from the kernel to a stopped
    worker whose parent died, before its SIGCONT) changes nothing. The main process's handler,
    which a forked worker would otherwise keep, points descriptors 1 and 2 to /dev/null: there,
    the pipes that carry the jobs' output to the log. The programs a job starts get SIGHUP's
    default action back when they exec, as from any handler."""


def _leave_the_terminal() -> None:
    """Nothing a job starts can wait on the run's terminal. A worker's process group is in the
    background there, so the terminal stops a program that reads from it (SIGTTIN), and its job
    hung until its timeout, if any. Descriptor 0 becomes /dev/null, so a program reading its
    standard input (``sort`` or ``wc`` given no file, a shell) gets end-of-file at once
    (multiprocessing gives ``sys.stdin`` /dev/null, but not the descriptor). And the worker gives
    up its controlling terminal (TIOCNOTTY: the process alone, still in the run's session and its
    own process group), so a program that opens /dev/tty for a password (ssh, git, sudo) fails
    at once with ENXIO, instead of writing its prompt over the display and waiting for ever."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    if devnull != 0:
        os.dup2(devnull, 0)
        os.close(devnull)
    try:
        terminal = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return  # no controlling terminal
    try:
        fcntl.ioctl(terminal, getattr(termios, "TIOCNOTTY", 0x5422))  # 0x5422: Linux's value
    except OSError:
        pass  # the terminal stays: programs may still wait on it
    finally:
        os.close(terminal)


_KEPT_SIGNALS = (signal.SIGTERM, signal.SIGALRM, signal.SIGCHLD, signal.SIGPIPE)
"""Signals whose handling a job may change for itself and the jobs after it would feel:
jobsplit's own SIGTERM handler (timeouts), an alarm's, SIGCHLD ignored (waited-for programs
then all seem to exit 0), SIGPIPE at its default (a closed pipe then kills the worker). Each job
starts with the worker's."""
_getsignal = getattr(signal, "_signal", signal).getsignal
"""The handler as set (a function, or SIG_DFL / SIG_IGN as ints): CPython's ``signal.getsignal``
also tries to turn it into an enum member, which for seven signals took about 0.1 ms between two
jobs here (against 0.03 ms for this check as it is)."""
_sigmask = getattr(signal, "_signal", signal).pthread_sigmask
"""The blocked signals as a set of numbers: ``signal.pthread_sigmask`` also turns each into an
enum member, which doubled the cost of reading the mask after every job (0.65 us against 0.32)."""

_parent_pid = _worker_pid = 0
"""The runner's pid and the worker's own, set when the worker starts."""
_outbox: _Outbox | None = None
"""The worker's outbox, for the SIGTERM handler's last send."""
_board: ProgressBoard | None = None
_slot = 0
"""The run's board and this worker's slot on it, where the SIGTERM handler reads whether the
runner stops this worker."""
_in_job = False
"""True while the job function runs (in the job thread, where signal handlers run)."""
_recording = False
"""True while the job thread holds an ended attempt not yet in the outbox, or is in the outbox
(its results, or a log record of the job's: a job's ``logging`` call sends from the job thread),
whose lock the SIGTERM handler would then wait for in vain: a SIGTERM that comes meanwhile waits
for it (see _recorded). Set before ``_in_job`` is cleared, so that no moment is left between."""
_stop_deferred = False
"""A SIGTERM came while ``_recording``: the job thread handles it once it is done."""
_ending = False
"""The worker is ending (its last send under way): a SIGTERM handled meanwhile changes nothing.
The job thread may see the runner's mark on the board, and begin its last send, before the
runner's SIGTERM arrives: handled in the middle of that send, the signal found the outbox's lock
taken (by the send it interrupted), killed the worker, and cut the message short."""
_forked = False
"""True in a process forked by a job (``os.register_at_fork``): see _end_forked_child."""
_fork_masks = threading.local()
"""The forking thread's signal mask before the fork, restored after it (in both processes)."""


def _hold_sigterm() -> None:
    """A job forks (a ``multiprocessing.Pool`` starting, say): SIGTERM waits until the child has
    the default action. Otherwise a SIGTERM that reached the child before Python's own fork
    handling (a pool terminated as it starts) went to the inherited Python handler and was
    dropped there, and the job waited for ever on a child it had asked to die."""
    _fork_masks.before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})


def _release_sigterm() -> None:
    signal.pthread_sigmask(signal.SIG_SETMASK, _fork_masks.before)


def _start_forked_child() -> None:
    global _forked
    _forked = True
    leave_module_generators()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as a process started outside jobsplit has it
    _release_sigterm()  # a SIGTERM that came meanwhile ends the child now


def _end_forked_child(exc: BaseException | None) -> NoReturn:
    """A process the job forked came back into the worker's code, returning or raising (as
    ``sys.exit()`` does) where it should have called ``os._exit``: it ends here, as a Python
    program would, and never takes the worker's part (the worker's pipes are its too)."""
    status = 0
    if isinstance(exc, SystemExit):
        if isinstance(exc.code, int):
            status = exc.code
        elif exc.code is not None:
            print(exc.code, file=sys.stderr)
            status = 1
    elif exc is not None:
        traceback.print_exception(exc)
        status = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


def _on_terminate(signum: int, frame: FrameType | None) -> None:
    """SIGTERM: from the runner (a timeout, a stop), or the kernel's word that the parent died.
    Without a parent, the programs the job started go too; then die of the signal as usual.

    A SIGTERM the runner did not send may come from a scheduler, which signals every process of
    the run at once: the runner then stops this worker too, in well under STOP_WAIT. If it does
    not, a program of the job signalled the job's whole process group, this worker included
    (``kill 0`` in a shell script's exit trap, a common idiom), or someone signalled this worker
    alone: the job fails, saying so, and the run goes on. Dying of it would have stopped the
    whole run as a scheduler's signal does, on that job again at every resume. Between two jobs
    (from a leftover program's trap, as it is stopped) such a signal changes nothing: a
    scheduler's stop reaches this worker again, from the runner, if it takes the next job.

    Programs the job started outside this process group are signalled too. A process the job
    forks starts with the default action (see _hold_sigterm); one forked by C code, without
    Python's fork hooks, may still inherit this handler: there it only dies."""
    global _stop_deferred, _ending
    if os.getpid() == _worker_pid:
        if _ending:
            return  # the last send goes on, then the worker ends
        if os.getppid() != _parent_pid:
            _kill_own_group()
        if _recording:
            _stop_deferred = True  # the job thread leaves the outbox, then comes back here
            return
        if _board is not None and not _board.stopping(_slot):  # not (yet) the runner's
            if not _in_job:
                return  # between two jobs, a stop comes with its mark on the board first
            if not _stopped_by_the_runner(_board):
                raise _SigtermFromTheJob
        _ending = True
        if _outbox is not None:
            _outbox.send_last()
        signal_strays(signal.SIGTERM)  # the group had it from the runner, with this process
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


@contextmanager
def _recording_here() -> Iterator[None]:
    """The job thread hands what ended to the outbox, or sends through it (see _recording); in
    such a section already, the outer one ends it."""
    global _recording
    if _recording:
        yield
        return
    _recording = True
    try:
        yield
    finally:
        _recorded()


def _recorded() -> None:
    """The job thread has handed what ended to the outbox and left it: a SIGTERM that came
    meanwhile is handled now, and a stop's last send carries what ended. Handled at once, a stop
    that came while the job thread formatted or sent a batch's results, or a log record of its
    job, waited for the outbox's lock in vain, and the worker died with the results it held
    unsent: those jobs ran again at the next start. (A SIGTERM the runner did not send, handled
    at once there, would also have raised in the middle of a message.)"""
    global _recording, _stop_deferred
    _recording = False
    if _stop_deferred:
        _stop_deferred = False
        _on_terminate(signal.SIGTERM, None)


def _stopped_by_the_runner(board: ProgressBoard) -> bool:
    """Whether the runner stops this worker (it marks the board before it signals), waiting up to
    STOP_WAIT for it, time paused by Ctrl-Z not counted."""
    paused, give_up_at = board.paused(), time.monotonic() + STOP_WAIT
    while not board.stopping(_slot):
        if os.getppid() != _parent_pid:
            _kill_own_group()
        if time.monotonic() - (board.paused() - paused) >= give_up_at:
            return False
        time.sleep(0.01)
    return True


class _SigtermFromTheJob(BaseException):
    """A SIGTERM that neither the runner nor a scheduler sent stopped the job (see _on_terminate):
    a BaseException, so that the job's ``except Exception`` does not take it for its own error."""

    MESSAGE = (
        "the job's process group got a SIGTERM that jobsplit did not send, and the job was stopped. A program the job ran "
        "signalled its whole group, jobsplit's worker included (`kill 0` in a shell script's trap, say: start such a "
        "program with subprocess's start_new_session=True, or through `setsid`, so that its group is its own), or someone signalled the worker"
    )


def _kill_own_group() -> None:
    """The parent died: everything this worker and its job started goes, this worker last."""
    signal_strays(signal.SIGKILL)
    try:
        os.killpg(os.getpgrp(), signal.SIGKILL)
    except OSError:
        os._exit(1)


_Entry = tuple[int, str, float, float, float, str | None, str | None, int | None, float | None]
"""An ended attempt in ``Results`` order: ticket, outcome, started, running time, paused, row,
error, peak memory, CPU time."""


class _Returned(NamedTuple):
    """A job that returned, its row not yet formatted."""

    ticket: int
    started: float
    running_time: float
    paused: float
    max_rss: int | None
    cpu: float | None
    value: Any
    job_id: str
    job_args: str | None
    job: Any
    position: int


_returned = functools.partial(tuple.__new__, _Returned)
"""``_Returned`` made in C (a NamedTuple's own ``__new__`` is Python code): one per job."""


class _Outbox:
    """What a worker sends: ended attempts, grouped for short jobs, and log entries.

    A group goes when its batch ends, when a job of it was long, or (sent by the watcher) when
    it has waited FLUSH_INTERVAL behind a long job.

    The row of a job that returned plain values (see add_returned) is formatted when its group is
    sent, not between two jobs: right after a job, on this VM, every step runs from cold caches,
    and formatting the row took about 45 us of a 10 ms job's 230 us gap; a group's rows are
    formatted in one warm loop. Such values run no code of the job's and no later job can change
    them, so the row is the same whenever, and in whichever thread, it is made. Any other value
    is formatted in the job thread as the job returns it, in the job's own time (see cells_in_job).
    """

    def __init__(self, results: Connection, rows: RowFormatter) -> None:
        self._results = results
        self._rows = rows
        self._lock = threading.Lock()
        self._since = 0.0
        self._ended: list[_Entry | _Returned] = []
        """One item per attempt (one append between two jobs), in ``Results`` order."""
        self._internal: list[int] = []

    def add(
        self, ticket: int, outcome: str, started: float, running_time: float, paused: float, row: str | None, error: str | None, max_rss: int | None, cpu: float | None,
        *, internal: bool = False,
    ) -> None:
        """An ended attempt; ``internal``: its error arose in jobsplit's own code, not in the job."""
        self._append((ticket, outcome, started, running_time, paused, row, error, max_rss, cpu), running_time, internal)

    def add_returned(self, returned: _Returned) -> None:
        """A job returned ``returned.value``: its row when its group is sent, if the value is a
        plain scalar or a tuple of them (exact built-in types: no code of the job's runs for
        their cells, and no later job can change them) and its Job Args text was made
        beforehand; else now."""
        if returned.job_args is not None and _plain(returned.value):
            self._append(returned, returned.running_time)
            return
        internal: list[int] = []
        self._append(_finished(self._rows, returned, internal), returned.running_time, bool(internal))

    def cells_in_job(self, value: Any) -> tuple[Any, str | None]:
        """The cells of a value that is not plain (see add_returned), or why it has none, made
        while its job still counts as running: they run the value's own code (``__float__``,
        ``item()``, ``__repr__`` for the failure's message), which may be slow or never end.
        Made after the job, beyond --timeout and a stop's reach, such a value hung its worker,
        and the run, for ever. A failure of jobsplit's own (or no memory) is left to _finished,
        which says so."""
        try:
            return Cells(self._rows.cells(value)), None
        except ResultShapeError as exc:
            return None, clean_text(f"wrong result shape: {exc}; the job returned: {bounded_repr(value)}")
        except MemoryError:
            return value, None
        except Exception as exc:  # noqa: BLE001 - a value whose own methods fail is the job's; else ours
            return (value, None) if _raised_in_jobsplit(exc.__traceback__) else (None, clean_text(traceback.format_exc()))

    def _append(self, item: _Entry | _Returned, running_time: float, internal: bool = False) -> None:
        with self._lock:  # an attempt and its internal mark travel in one group
            if not self._ended:
                self._since = time.monotonic()
            self._ended.append(item)
            if internal:
                self._internal.append(item[0])
        if running_time >= FLUSH_INTERVAL:
            self.flush()

    def flush(self, older_than: float = 0.0) -> None:
        with self._lock:
            if self._ended and time.monotonic() - self._since >= older_than:
                self._send()

    def send_last(self) -> None:
        """The worker is about to die of a SIGTERM (a stop, a scheduler's signal, a timeout): the
        attempts that ended go now, or the parent would hand them out again. Called in the job
        thread, never while it is in the outbox (a stop then waits for it, see _recording): the
        lock comes once another thread's send ends. The lock is kept, so that no other thread
        starts a message that the exit would cut short."""
        if self._lock.acquire(timeout=LAST_SEND_WAIT) and self._ended:
            try:
                self._send()
            except OSError:
                pass  # the parent is gone: nobody to tell

    def _send(self) -> None:
        """Send the ended attempts as one ``Results`` group (the lock held)."""
        formatter, internal = self._rows, self._internal
        ended = [_finished(formatter, item, internal) if type(item) is _Returned else item for item in self._ended]
        tickets, outcomes, started, running_times, paused, rows, errors, max_rss, cpu = map(list, zip(*ended))
        self._results.send((RESULTS, Results(tickets, outcomes, started, running_times, paused, rows, errors, max_rss, cpu, self._internal)))
        self._ended, self._internal = [], []

    def send_log(self, entries: list[LogEntry]) -> None:
        """Log entries, sent from any thread: the job thread's (the job's ``logging`` calls,
        between jobs the output it left) as a recording section (see _recording)."""
        with _recording_here() if threading.current_thread() is threading.main_thread() else nullcontext(), self._lock:
            self._results.send((LOG, entries))


_PLAIN = frozenset({str, int, float, bool, type(None)})


def _plain(value: Any) -> bool:
    """Whether ``value`` is a plain scalar or a tuple of them (exact built-in types): its cells run
    no code of the job's, and no later job can change them."""
    kind = type(value)
    return kind in _PLAIN or (kind is tuple and _PLAIN.issuperset(map(type, value)))


def _finished(rows: RowFormatter, returned: _Returned, internal: list[int]) -> _Entry:
    """The attempt of a job that returned, with its row (DONE) or why there is none (ERROR); its
    ticket is added to ``internal`` if the failure is jobsplit's own."""
    ticket, started, running_time, paused, max_rss, cpu, value, job_id, job_args, job, position = returned
    try:
        line = rows.line(value, started, running_time, job_id, job_args or identity_text(job, position))
    except ResultShapeError as exc:
        error = clean_text(f"wrong result shape: {exc}; the job returned: {bounded_repr(value)}")
    except MemoryError:  # the job's value, not a bug of jobsplit's: taken for one, the run stopped and its jobs were failed
        kind = type(value).__name__
        error = f"the worker ran out of memory writing what the job returned ({article(kind)} {kind}) as its row: return less, or give the workers more memory"
    except BaseException as exc:  # noqa: BLE001 - a value whose own methods fail is the job's; else ours
        if _raised_in_jobsplit(exc.__traceback__):
            internal.append(ticket)
            return (ticket, Outcome.ERROR, started, running_time, paused, None, _internal(), max_rss, cpu)
        error = clean_text(traceback.format_exc())
    else:
        return (ticket, Outcome.DONE, started, running_time, paused, line if line.isascii() else clean_text(line), None, max_rss, cpu)
    return (ticket, Outcome.ERROR, started, running_time, paused, None, error, max_rss, cpu)


class _Revocations:
    """Jobs the runner takes back before they start (to give a worker that idles).

    The task reader grants a revocation at once if the job thread has not taken the job yet
    (tickets reach a worker in increasing order), and the confirmation (a REVOKED result) is
    sent by the watcher or by the job thread when it comes to the job, whichever is first: never
    by the task reader, and always before the results of the jobs queued behind it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._taken = 0
        self._revoked: set[int] = set()
        self._unconfirmed: list[int] = []

    def ask(self, ticket: int) -> None:
        """The task reader's part: too late once the job thread took the job."""
        with self._lock:
            if ticket > self._taken:
                self._revoked.add(ticket)
                self._unconfirmed.append(ticket)

    def start(self, ticket: int, outbox: _Outbox) -> bool:
        """The job thread's part: whether to run the job (False: it was taken back)."""
        with self._lock:
            self._taken = ticket
            if ticket not in self._revoked:
                return True
            self._revoked.discard(ticket)
        with _recording_here():
            self.confirm(outbox)
        return False

    def confirm(self, outbox: _Outbox) -> None:
        with self._lock:
            tickets, self._unconfirmed = self._unconfirmed, []
        for ticket in tickets:
            outbox.add(ticket, REVOKED, 0.0, 0.0, 0.0, None, None, None, None)
        if tickets:
            outbox.flush()


def _read_tasks(tasks: Connection, inbox: SimpleQueue[list[_Ready] | None], revocations: _Revocations, seed: bytes) -> None:
    """Move batches from the pipe into the queue, prepared, and grant revocations, and nothing
    else: never waits on the result pipe, so the parent's sends always drain."""
    try:
        while True:
            message = tasks.recv()
            if isinstance(message, Revoke):
                revocations.ask(message.ticket)
            else:
                inbox.put(None if message is None else _prepare(message, seed))  # None: stop
    except (EOFError, OSError):
        os._exit(1)  # the parent closed our pipe only by dying: it never does so to a live worker


def _watch(outbox: _Outbox, revocations: _Revocations, parent_pid: int) -> None:
    """Send results that waited too long behind a long job and confirm revocations; stop
    everything if the parent died (where the kernel cannot tell us, or before its signal)."""
    while True:
        time.sleep(FLUSH_INTERVAL)
        if os.getppid() != parent_pid:
            _kill_own_group()  # nobody would record this worker's results
        revocations.confirm(outbox)
        outbox.flush(older_than=FLUSH_INTERVAL)


class _JobRunner:
    """Calls the job with its injected arguments and puts any outcome in the outbox."""

    def __init__(self, setup: WorkerSetup, slot: int, capture: OutputCapture, outbox: _Outbox) -> None:
        self.setup = setup
        self.slot = slot
        self.capture = capture
        self.outbox = outbox
        self.config = JobConfig()
        self.config.read_dict(setup.config)
        self.config.freeze()  # shared by this worker's jobs
        self.progress = ProgressReporter(setup.board, slot)
        self.memory = _PeakMemory()
        self._folder = os.getcwd()
        """Where every job starts: the run's current folder."""
        self._environ = dict(os.environ)
        self._environ_bytes = dict(getattr(os.environ, "_data", {}))
        """Every job's environment variables, and as CPython keeps them (encoded): one cheap
        comparison tells whether a job changed them."""
        self._logging = LoggingSetup()
        kept = {signum: handler for signum in _KEPT_SIGNALS if (handler := _getsignal(signum)) is not None}
        self._signals, self._handlers = tuple(kept), tuple(kept.values())
        """The signals a job may take over, and what every job starts with for them (a handler
        set outside Python reads None, and cannot be set back from Python: left out)."""
        self._blocked = _sigmask(signal.SIG_BLOCK, ())
        """The signals blocked in the jobs' thread as every job starts."""
        self._cpu = _cpu_seconds()
        """CPU time read at the end of the last job: the next job's start, as a worker uses
        next to no CPU between jobs (one reading a job, not two)."""

    def __call__(self, ready: _Ready) -> None:
        setup, board, outbox = self.setup, self.setup.board, self.outbox
        ticket, position, job_id, job, job_args, rng = ready
        started = time.time()
        try:  # jobsplit's side: a failure here is not the job's
            args, kwargs = call_args(job)
            if rng is None:
                rng = job_random(setup.seed, job_id)
            seed_numpy_random(setup.seed, job_id)
            self.progress.restart()
            self.capture.start_job(job_id)
        except BaseException:  # noqa: BLE001 - reported as jobsplit's own failure
            with _recording_here():
                outbox.add(ticket, Outcome.ERROR, started, 0.0, 0.0, None, _internal(), None, None, internal=True)
            return
        board.start(self.slot, ticket)
        started, clock = time.time(), time.perf_counter()
        paused = board.paused()  # read after the clock, and before it at the end: a pause is never taken out unless it was in
        error: str | None = None
        global _in_job, _recording
        try:
            _in_job = True
            if kwargs or setup.by_name:
                value = setup.job(*args, **kwargs, random_obj=rng, config=self.config, progress=self.progress)
            else:
                value = setup.job(*args, rng, self.config, progress=self.progress)
            if not _forked and not _plain(value) and not board.stopping(self.slot):
                value, error = outbox.cells_in_job(value)  # a stopped job's value is named as it returned it (see _returned_when_stopped)
            _recording = True
            _in_job = False
        except BaseException as exc:  # noqa: BLE001 - anything a job raises is that job's failure
            _recording = True
            _in_job = False
            if _forked:
                _end_forked_child(exc)
            error, value = clean_text(_job_traceback(exc)), None
        if _forked:
            _end_forked_child(None)
        if error is None and board.stopping(self.slot):
            error, value = _returned_when_stopped(value), None
        paused = board.paused() - paused  # Ctrl-Z: not the job's time
        running_time = max(0.0, time.perf_counter() - clock - paused)
        board.finish(self.slot)
        before, self._cpu = self._cpu, _cpu_seconds()
        cpu = self._cpu - before if running_time >= CPU_ABOVE else None
        max_rss = self.memory.peak() if running_time >= PEAK_ABOVE else None
        if running_time >= CHILDREN_ABOVE:
            self._stop_leftovers()
        self._restore_surroundings()
        self.capture.end_job()
        if error is not None:
            outbox.add(ticket, Outcome.ERROR, started, running_time, paused, None, error, max_rss, cpu)
        else:
            outbox.add_returned(_returned((ticket, started, running_time, paused, max_rss, cpu, value, job_id, job_args, job, position)))
        _recorded()

    def _restore_surroundings(self) -> None:
        """The next job starts in the run's folder with the run's environment variables, signal
        handlers and blocked signals, standard streams, logging set-up and warnings filters, and
        no alarm set, whatever this job changed (a scratch folder, deleted since; ``os.environ``
        for a program it ran; a SIGALRM time limit it left armed, which would go off in the next
        job; SIGTERM blocked, which a timeout then could not stop it with; ``sys.stdout`` swapped
        for a file to silence a library, or closed; a log file of its own; warnings made errors):
        what a job sees must not depend on which jobs its worker ran before."""
        self.capture.restore_streams()
        if getattr(os.environ, "_data", self._environ_bytes) != self._environ_bytes:  # elsewhere than CPython: not checked
            os.environ.clear()
            os.environ.update(self._environ)
        self._logging.restore()
        if signal.getitimer(signal.ITIMER_REAL)[0]:  # signal.alarm() sets this timer too
            signal.setitimer(signal.ITIMER_REAL, 0)
        if tuple(map(_getsignal, self._signals)) != self._handlers:
            for signum, handler in zip(self._signals, self._handlers):
                signal.signal(signum, handler)
        if _sigmask(signal.SIG_BLOCK, ()) != self._blocked:
            _sigmask(signal.SIG_SETMASK, self._blocked)
        try:
            if os.getcwd() == self._folder:
                return
        except OSError:
            pass  # the folder the job left us in was deleted
        try:
            os.chdir(self._folder)
        except OSError as exc:
            self.capture.emit(time.time(), "WARNING", "jobsplit", f"cannot return to {self._folder} after the job changed folder ({exc}); the next jobs start where it left")

    def _stop_leftovers(self) -> None:
        """Programs the job started and left running are stopped (and said so in the log); not the
        helpers a library keeps for later calls (joblib's workers, multiprocessing's fork server
        and resource tracker): stopped, they failed the next job's pool or were started again,
        with warnings, each time, and what they tracked was never cleaned up."""
        left = stop_children(CHILD_GRACE, keep=library_helpers)
        if left:
            listed = ", ".join(f"pid {pid} ({command[:80]})" for pid, command in left)
            count = f"{len(left)} child process{'es' if len(left) > 1 else ''}"
            self.capture.emit(time.time(), "WARNING", "jobsplit", f"the job left {count} running: {listed}; stopped them (SIGTERM, then SIGKILL after {CHILD_GRACE:g} s)")


def _cpu_seconds() -> float:
    """This process's CPU time, the child processes it waited for included (one system call)."""
    now = os.times()
    return now.user + now.system + now.children_user + now.children_system


def _returned_when_stopped(value: Any) -> str:
    """Why a job that returned is not done: the runner stopped it (a timeout, the run's stop)
    and the job's own SIGTERM handler let it return, with what it had so far (a checkpoint
    saved, a partial sum). Taken as its result, it was a finished job that never ran again; the
    runner records it as the timeout or the interrupted attempt it was."""
    return clean_text(f"the job returned after jobsplit's SIGTERM stopped it (its own SIGTERM handler let it return), so what it returned is not taken as its result: {bounded_repr(value)}")


def bounded_repr(value: Any, limit: int = REPR_LIMIT) -> str:
    """``repr(value)``, at most ``limit`` characters (lists and strings cut short), never raising."""
    shortened = reprlib.Repr()
    shortened.maxlevel, shortened.maxstring, shortened.maxother, shortened.maxlong = 8, limit, limit, limit
    shortened.maxlist = shortened.maxtuple = shortened.maxdict = shortened.maxset = shortened.maxfrozenset = shortened.maxdeque = 1000
    shortened.maxarray = 1000
    try:
        text = shortened.repr(value)
    except Exception as exc:  # noqa: BLE001 - a repr that fails is still worth a mention
        return f"<a {type(value).__name__} whose repr() raised {type(exc).__name__}: {exc}>"
    return text if len(text) <= limit else f"{text[:limit]}... (cut at {limit:,} characters)"


def _job_traceback(exc: BaseException) -> str:
    """A job's traceback from the job's own first frame on: the worker's frame that called it
    (``value = setup.job(...)`` in jobsplit's source, or inside the executable) tells the job's
    author nothing. A call that failed before the job's code ran keeps that frame. A foreign
    SIGTERM's says why, then where the job was, without the signal handler's frames."""
    tb = exc.__traceback__
    tb = tb.tb_next if tb is not None and tb.tb_next is not None else tb
    if isinstance(exc, _SigtermFromTheJob):
        where = [frame for frame in traceback.extract_tb(tb) if frame.filename != __file__]
        return f"{exc.MESSAGE}; it was here:\n" + "".join(traceback.format_list(where))
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _internal() -> str:
    return "internal error in jobsplit, not in the job (please report it): " + clean_text(traceback.format_exc())


def _raised_in_jobsplit(tb: TracebackType | None) -> bool:
    """Whether the innermost frame of a traceback is jobsplit's own code."""
    last = None
    while tb is not None:
        last, tb = tb, tb.tb_next
    return last is not None and last.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR)


class _PeakMemory:
    """Peak resident memory of this worker during each job (Linux: ``VmHWM``, reset after each
    reading). ``ru_maxrss`` cannot serve: it keeps the pre-exec parent's peak under ``spawn``."""

    def __init__(self) -> None:
        self._readable = sys.platform.startswith("linux") and os.path.exists("/proc/self/status")
        self._resettable = self._readable

    def peak(self) -> int | None:
        if not self._readable:
            return None
        try:
            with open("/proc/self/status", "rb") as f:
                peak = next((int(line.split()[1]) * 1024 for line in f if line.startswith(b"VmHWM:")), None)
        except (OSError, ValueError):
            self._readable = False
            return None
        if self._resettable:
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")  # the next job's peak starts from the resident size now
            except OSError:
                self._resettable = False  # an old kernel: peaks are the worker's so far
        return peak
