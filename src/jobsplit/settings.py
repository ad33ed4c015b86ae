"""How this host runs its machine's share: every run setting, resolved in one place."""

from __future__ import annotations

import multiprocessing
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from .balance import BalanceConfig, BalanceSettings, resolve_balance
from .config import JobsplitSettings
from .errors import UserError
from .hostconfig import HostSettings
from .machines import Machine
from .outdir import MachineDir
from .runner import KILL_GRACE
from .schedulers import Allocation

T = TypeVar("T")
DEFAULT_OUT = Path("jobsplit-out")
DEFAULT_NICE = 10
DEFAULT_CONSOLE = "auto"
NO_BALANCE = BalanceConfig()
OVERSUBSCRIBED = 4
"""More workers than this many per core of the host earns a warning."""


@dataclass(frozen=True)
class RunFlags:
    """What the command line asked for; None means: not given."""

    machine: str | None = None
    array_index: int | None = None
    yes: bool = False
    expect_digest: str | None = None
    workers: int | None = None
    out: Path | None = None
    nice: int | None = None
    console: str | None = None
    start_method: str | None = None
    worker_memory: int | None = None
    stop_grace: float | None = None
    timeout: float | None = None
    retries: int | None = None
    retry_failed: bool = False
    fresh: bool = False
    balance: str | None = None
    lease: float | None = None


@dataclass(frozen=True)
class RunSettings:
    """The settings of one run, resolved.

    Each comes from the first of these that sets it:

    1. the command line (``--workers``, ``--out``, ``--nice``, ``--console``, ``--start-method``,
       ``--worker-memory``, ``--stop-grace``, ``--timeout``, ``--retries``, ``--balance``, ``--lease``);
    2. the batch scheduler's allocation (``workers``: Slurm's ``SLURM_CPUS_PER_TASK``): what the
       task was granted, so it comes before host.ini, which a cluster's shared home folder
       gives to every node and the login node alike;
    3. host.ini ``[host]``, this host's own settings, never part of the digest
       (``workers``, ``out``, ``nice``, ``console``, ``start_method``, ``worker_memory``,
       ``stop_grace``);
    4. config.ini ``[jobsplit]``, settings every host shares, part of the digest (``timeout``),
       and ``[balance]`` (``url``, ``lease``; ``--balance`` and ``--lease`` override them);
    5. the default: the machine's cores from machines.json, ``./jobsplit-out``, niceness 10,
       a live console on a terminal (plain lines otherwise, as in a batch job), ``fork`` on
       Linux, no limit on a worker's memory, 1 s for a stopped job's own SIGTERM handler, no
       timeout, no retries, no shared queue (the machine runs its static share), leases of 60 s.
    """

    machine: Machine
    out: Path
    workers: int
    nice: int
    console: str
    start_method: str
    worker_memory: int | None
    """Bytes a worker may grow by before it is replaced between two jobs (see workermemory); None: no limit."""
    stop_grace: float
    """Seconds a stopped job has to end by its own SIGTERM handler before it is killed (see Runner.stop_grace)."""
    timeout: float | None
    retries: int
    retry_failed: bool
    fresh: bool
    balance: BalanceSettings | None = None
    """The shared queue to take jobs from; None: this machine's static share."""

    @property
    def folder(self) -> MachineDir:
        return MachineDir.of(self.out, self.machine.name)


def resolve(
    flags: RunFlags, host: HostSettings, shared: JobsplitSettings, machine: Machine, allocation: Allocation, balance: BalanceConfig = NO_BALANCE
) -> RunSettings:
    """The one place where flags, the scheduler, host.ini, config.ini and defaults meet (see RunSettings)."""
    return RunSettings(
        machine=machine,
        out=_first(flags.out, host.out, DEFAULT_OUT),
        workers=_first(flags.workers, allocation.cpus, host.workers, machine.cores),
        nice=_first(flags.nice, host.nice, DEFAULT_NICE),
        console=_first(flags.console, host.console, DEFAULT_CONSOLE),
        start_method=_first(flags.start_method, host.start_method, default_start_method()),
        worker_memory=_first(flags.worker_memory, host.worker_memory, 0) or None,  # 0: no limit
        stop_grace=_first(flags.stop_grace, host.stop_grace, KILL_GRACE),
        timeout=flags.timeout if flags.timeout is not None else shared.timeout,
        retries=_first(flags.retries, 0),
        retry_failed=flags.retry_failed,
        fresh=flags.fresh,
        balance=resolve_balance(flags.balance, flags.lease, balance),
    )


def _first(*values: T | None) -> T:
    return next(value for value in values if value is not None)


def default_start_method() -> str:
    """``fork`` where it is safe (Linux): fast, and the pool is shared, not rebuilt per worker."""
    return "fork" if "fork" in multiprocessing.get_all_start_methods() and sys.platform != "darwin" else "spawn"


def check_nice(nice: int, source: str = "--nice") -> None:
    """Refuse, before any worker starts, a niceness this user may not set.

    Raising priority (a negative increment) needs privilege. Trying it on this process and
    undoing it tells without starting anything; lowering it back is always allowed.
    """
    if nice >= 0 or not hasattr(os, "getpriority"):
        return
    before = os.getpriority(os.PRIO_PROCESS, 0)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, max(-20, before + nice))
    except PermissionError:
        raise UserError(
            f"{source} {nice} would raise the workers' priority, which needs root (or CAP_SYS_NICE); use a number >= 0 (e.g. the default {DEFAULT_NICE})"
        ) from None
    finally:
        os.setpriority(os.PRIO_PROCESS, 0, before)
