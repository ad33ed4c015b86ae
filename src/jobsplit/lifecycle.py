"""Process lifecycle: dying with the parent, and turning Ctrl-C / SIGTERM into a clean stop."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, signum: int = signal.SIGKILL) -> None:
    """Have the kernel send ``signum`` to this process when its parent dies (Linux).

    Elsewhere, and as a second line of defence, workers also poll ``os.getppid()``.
    """
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # no prctl: the polling fallback still applies
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)


def frozen_one_file() -> bool:
    """True in a PyInstaller one-file program, which runs under a separate bootloader process."""
    return bool(getattr(sys, "frozen", False)) and Path(getattr(sys, "_MEIPASS", "")).name.startswith("_MEI")


def unpacked_folder_gone() -> Path | None:
    """The folder a one-file program unpacked itself into, if it has been emptied or removed
    since (a clean-up of old files in /tmp under a run of weeks): no new process of the program
    can start. None: not a one-file program, or its folder is whole."""
    if not frozen_one_file():
        return None
    folder = Path(sys._MEIPASS)  # type: ignore[attr-defined] # PyInstaller's, see frozen_one_file
    return None if (folder / "base_library.zip").exists() else folder


def follow_bootloader() -> None:
    """In a one-file program, a killed bootloader would leave this process running as an orphan:
    ask for SIGTERM when it dies, which stops the run cleanly (see Interrupts)."""
    if frozen_one_file():
        die_with_parent(os.getppid(), signal.SIGTERM)


def restore_library_path() -> None:
    """A frozen program points LD_LIBRARY_PATH into its bundle; jobs that start system
    programs need the user's own value back (PyInstaller keeps it in LD_LIBRARY_PATH_ORIG)."""
    if getattr(sys, "frozen", False) and "LD_LIBRARY_PATH" in os.environ:
        original = os.environ.pop("LD_LIBRARY_PATH_ORIG", None)
        if original is None:
            del os.environ["LD_LIBRARY_PATH"]
        else:
            os.environ["LD_LIBRARY_PATH"] = original


def fresh_program_environment() -> dict[str, str]:
    """The environment for a program started apart from this one, which may start this program
    anew (``sbatch`` exports it to the batch job, which runs the executable again).

    A frozen program's own variables would make a new instance take itself for this one's child
    and look for this one's unpacked bundle, gone once it exits: PyInstaller's documented
    ``PYINSTALLER_RESET_ENVIRONMENT`` makes it start afresh, and the user's LD_LIBRARY_PATH comes
    back (see :func:`restore_library_path`)."""
    environment = dict(os.environ)
    if getattr(sys, "frozen", False):
        environment["PYINSTALLER_RESET_ENVIRONMENT"] = "1"
        if "LD_LIBRARY_PATH" in environment:
            original = environment.pop("LD_LIBRARY_PATH_ORIG", None)
            if original is None:
                del environment["LD_LIBRARY_PATH"]
            else:
                environment["LD_LIBRARY_PATH"] = original
    return environment


class Interrupts:
    """Ctrl-C, SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 ask for a clean stop; a second Ctrl-C forces
    an immediate exit; Ctrl-Z pauses the whole run.

    SIGUSR1 and SIGUSR2 are what a Slurm user asks for before the time limit
    (``--signal=B:USR1@300``, which replaces the batch script's own ``B:TERM``) or sends with
    ``scancel --batch --signal=USR1``: their default action ended the run at once, its task FAILED
    without a word in its output, its running jobs recorded as running.

    SIGHUP says the terminal is gone (an SSH session dropped): the run stops as for SIGTERM, its
    output to the terminal silenced first (writes to a hung-up terminal fail), so the stop is
    recorded in full; unless SIGHUP was ignored when the run started (``nohup``). A frozen
    one-file program receives each Ctrl-C twice (directly, and forwarded by its bootloader), so a
    repeat within ``grace`` seconds counts as the same press.

    Ctrl-Z (SIGTSTP) reaches only this process: workers lead process groups of their own. So
    ``on_pause`` stops them first, then this process stops as usual; when the shell continues it
    (``fg``, ``bg``), ``on_resume`` gets the seconds the pause lasted and continues them.
    ``on_continue`` hears of every SIGCONT: this process was stopped from outside too (SIGSTOP
    to every process of the run, as Slurm's ``scontrol suspend`` sends), or by Ctrl-Z.
    """

    def __init__(
        self,
        on_force: Callable[[], None],
        grace: float = 0.5,
        *,
        on_pause: Callable[[], None] = lambda: None,
        on_resume: Callable[[float], None] = lambda paused: None,
        on_continue: Callable[[], None] = lambda: None,
    ) -> None:
        self.requested_at: float | None = None
        self._on_force = on_force
        self._grace = grace
        self._on_pause = on_pause
        self._on_resume = on_resume
        self._on_continue = on_continue
        self._previous: dict[int, object] = {}
        self._terminal: list[int] = []

    @property
    def requested(self) -> bool:
        return self.requested_at is not None

    def __enter__(self) -> Interrupts:
        self._terminal = [fd for fd in (1, 2) if os.isatty(fd)]  # asked now: a hung-up terminal is no tty to isatty()
        for signum in _STOP_SIGNALS:
            if signum == _SIGHUP and signal.getsignal(signum) == signal.SIG_IGN:
                continue  # under nohup: the run is meant to outlive its terminal
            self._previous[signum] = signal.signal(signum, self._handle)
        if _SIGTSTP is not None and signal.getsignal(_SIGTSTP) != signal.SIG_IGN:  # ignored: a shell without job control
            self._previous[_SIGTSTP] = signal.signal(_SIGTSTP, self._pause)
        if _SIGCONT is not None:
            self._previous[_SIGCONT] = signal.signal(_SIGCONT, lambda signum, frame: self._on_continue())
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == _SIGHUP:
            _silence(self._terminal)
        now = time.monotonic()
        if self.requested_at is None:
            self.requested_at = now
        elif signum == signal.SIGINT and now - self.requested_at > self._grace:
            self._on_force()

    def _pause(self, signum: int, frame: FrameType | None) -> None:
        """Ctrl-Z: the workers stop, then this process, until the shell continues it."""
        began = time.monotonic()
        self._on_pause()
        signal.signal(signum, signal.SIG_DFL)
        try:
            os.kill(os.getpid(), signum)  # stopped here until continued
        finally:
            signal.signal(signum, self._pause)
            self._on_resume(time.monotonic() - began)


_SIGHUP = getattr(signal, "SIGHUP", None)
_SIGTSTP = getattr(signal, "SIGTSTP", None)
_SIGCONT = getattr(signal, "SIGCONT", None)
USER_SIGNALS = tuple(getattr(signal, name) for name in ("SIGUSR1", "SIGUSR2") if hasattr(signal, name))
"""Reset to their default in a worker (see worker_main): a job's process is as one started outside jobsplit."""
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM) + ((_SIGHUP,) if _SIGHUP is not None else ()) + USER_SIGNALS


def _silence(fds: list[int]) -> None:
    """Point these descriptors (a terminal that hung up) to /dev/null."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in fds:
            os.dup2(devnull, fd)
    finally:
        os.close(devnull)
