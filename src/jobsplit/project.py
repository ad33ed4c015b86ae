"""A project: the job pool plus the three config files, checked, digested and planned.

Everything here is pure input handling; nothing prints. Notices for the user are returned.
"""

from __future__ import annotations

import functools
import math
import numbers
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .balance import BalanceConfig, balance_config
from .config import (
    CONFIG_FILE,
    HEADER_FILE,
    Header,
    JobConfig,
    JobsplitSettings,
    LogSettings,
    inline_comments,
    jobsplit_settings,
    load_config,
    load_header,
    log_settings,
)
from .digest import DigestInput, compute_digest, digest_parts
from .errors import UserError
from .fingerprint import entry_script
from .machines import MACHINES_FILE, Machine, load_machines, this_host
from .plan import DEFAULT_STRATEGY, STRATEGIES, Plan, PlanInput, make_plan
from .pool import JobPool, call_args
from .text import article, clean_text

CostFn = Callable[..., float]


def find_config_dir(explicit: Path | None) -> Path:
    """``--config-dir``, else the current directory, else the folder of the program: the
    executable, or the entry script (``python ~/study/entry.py`` run from anywhere)."""
    if explicit is not None:
        return explicit
    here = Path.cwd()
    if not (here / CONFIG_FILE).exists():
        program = Path(sys.executable) if getattr(sys, "frozen", False) else (entry[0] if (entry := entry_script()) else None)  # not __main__'s: a profiler's
        if program is not None and (program.resolve().parent / CONFIG_FILE).exists():
            return program.resolve().parent
    return here


@dataclass(frozen=True)
class Project:
    pool: JobPool
    config: JobConfig
    header: Header
    machines: tuple[Machine, ...]
    strategy: str
    digest: str
    settings: JobsplitSettings = JobsplitSettings()
    logging: LogSettings = LogSettings()
    seed_override: str | None = None
    costs: list[float] | None = None
    balance: BalanceConfig = BalanceConfig()
    notices: tuple[str, ...] = field(default=(), compare=False)

    @property
    def seed(self) -> bytes:
        """What every seeded choice derives from: the digest, or the ``--seed`` text."""
        return self.seed_override.encode() if self.seed_override is not None else bytes.fromhex(self.digest)

    @functools.cached_property
    def plan(self) -> Plan:
        return make_plan(self.strategy, PlanInput(self.pool.ids, self.machines, self.seed, self.costs))

    def digest_parts(self) -> dict[str, str]:
        """A fingerprint of each part of the digest (see digest.digest_parts)."""
        return digest_parts(_covered(self.pool, self.config, self.header, self.machines, self.strategy, self.seed_override, self.costs))

    def machine(self, name: str) -> Machine:
        for machine in self.machines:
            if machine.name == name:
                return machine
        names = ", ".join(m.name for m in self.machines)
        raise UserError(f'there is no machine "{name}" in {MACHINES_FILE}; choose one of: {names}')


def load_project(
    pool: JobPool,
    config_dir: Path,
    *,
    strategy: str | None = None,
    seed: str | None = None,
    cost: CostFn | None = None,
) -> Project:
    """Read and check the config files in ``config_dir`` and digest them with the pool."""
    if seed is not None and not seed.isascii() and clean_text(seed) != seed:  # bytes of another encoding, as os.fsdecode gives them
        raise UserError(f"--seed {clean_text(seed)!r} is not UTF-8 text (a terminal of another encoding?); every host must pass the same text: write it in UTF-8, or in ASCII")
    config_path = config_dir / CONFIG_FILE
    config = load_config(config_path)
    header = load_header(config_dir / HEADER_FILE)
    notices = inline_comments(config, config_path)
    machines_path = config_dir / MACHINES_FILE
    if machines_path.exists():
        machines = load_machines(machines_path)
    else:
        machines = (this_host(),)
        notices.append(f"No {machines_path}: planning for this host alone ({machines[0].name}, {machines[0].cores} cores).")
    settings = jobsplit_settings(config, config_path)
    logging_settings = log_settings(config, config_path)
    balance = balance_config(config, config_path)
    strategy_name = _strategy(strategy, settings.strategy, config_path)
    costs = _costs(pool, cost) if cost is not None else None
    if STRATEGIES[strategy_name].needs_costs and costs is None:
        raise UserError(f'the "{strategy_name}" strategy needs estimated job costs; pass cost=<function> to jobsplit.main, or choose another strategy')
    if STRATEGIES[strategy_name].needs_costs and len(machines) > 1 and costs and not any(costs):
        # Nothing to balance by: every job would finish at once on any core, so all went to the first machine.
        raise UserError(
            f'cost= gave 0 for every job, so the "{strategy_name}" strategy would give all {len(costs):,} to machine "{machines[0].name}" and none to the others; '
            "make cost= return positive estimates (in any unit: only their ratios count), or choose another strategy"
        )
    digest = compute_digest(_covered(pool, config, header, machines, strategy_name, seed, costs))
    return Project(pool, config, header, machines, strategy_name, digest, settings, logging_settings, seed, costs, balance, tuple(notices))


def _covered(pool: JobPool, config: JobConfig, header: Header, machines: tuple[Machine, ...], strategy: str, seed: str | None, costs: list[float] | None) -> DigestInput:
    """What the digest covers, from the project's parts (its cost hints only for ``cost``)."""
    costs_by_id = dict(zip(pool.ids, costs)) if costs is not None and strategy == "cost" else None
    return DigestInput(pool.sorted_ids(), config.as_document(), machines, header.columns, strategy, seed, costs_by_id)


def _strategy(flag: str | None, configured: str | None, config_path: Path) -> str:
    name, source = (flag, "--strategy") if flag is not None else (configured, f"{config_path} [jobsplit] strategy")
    if name is None:
        return DEFAULT_STRATEGY
    name = name.strip().lower()
    if name not in STRATEGIES:
        raise UserError(f'unknown strategy "{name}" (from {source}); choose one of: {", ".join(STRATEGIES)}')
    return name


def _costs(pool: JobPool, cost: CostFn) -> list[float]:
    costs = []
    for position, job in enumerate(pool.jobs):
        args, kwargs = call_args(job)
        try:
            value: Any = cost(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the user's cost function is part of the input
            raise UserError(f"cost(pool[{position}]) raised {type(exc).__name__}: {exc}; fix the cost function passed to jobsplit.main") from None
        shown = None
        try:  # any real number, NumPy's too (np.int64(8) was refused as no "finite number >= 0")
            number = math.nan if isinstance(value, bool) or not isinstance(value, numbers.Real) else float(value)
        except OverflowError:  # an int (or a Fraction) too large for a float ended in a traceback
            number, shown = math.inf, f"{article(type(value).__name__)} {type(value).__name__} too large for a float"
        if not math.isfinite(number) or number < 0:
            raise UserError(f"cost(pool[{position}]) returned {shown or repr(value)[:80]}; estimated costs must be finite numbers >= 0")
        costs.append(number)
    return costs
