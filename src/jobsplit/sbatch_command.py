"""The ``sbatch`` command: write the Slurm batch scripts of an array of machines, and submit them.

Scripts go to ``<array>.sbatch`` (or ``--script``); an array that Slurm's MaxArraySize makes
several submissions is written as ``<array>.<first>-<last>.sbatch``, one file per submission
(``<first>`` and ``<last>``: the machine indices it runs).
Each task's Slurm output goes to ``OUT/slurm-logs/<job name>-<job id>_<task id>.out``.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from . import exitcodes
from ._version import __version__
from .atomicfile import atomic_file
from .console import data_console, say_notice
from .digest import format_digest
from .errors import UserError
from .fingerprint import entry_script
from .hostconfig import load_host_settings
from .machines import MACHINES_FILE, array_members, entry_names, split_member
from .outdir import JOURNAL_FILE, SLURM_LOGS, folder_error, folder_name
from .project import Project
from .schedulers.slurm import DEFAULT_MAX_ARRAY_SIZE, ArrayScript, Submission, format_indices, parse_indices, render, split
from .schedulers.slurm_commands import read_max_array_size, submit
from .settings import DEFAULT_OUT
from .sharefolders import elsewhere
from .sources.redis import RedisQueue
from .sources.static import StaticShare
from .text import plural


@dataclass(frozen=True)
class SbatchFlags:
    """What the command line asked for; None means: not given."""

    machine: str
    config_dir: Path
    strategy: str | None = None
    seed: str | None = None
    out: Path | None = None
    script: Path | None = None
    array: str | None = None
    max_parallel: int | None = None
    max_array_size: int | None = None
    job_name: str | None = None
    partition: str | None = None
    time: str | None = None
    mem: str | None = None
    account: str | None = None
    extra: tuple[str, ...] = ()
    submit: bool = False
    timeout: float | None = None
    retries: int | None = None
    stop_grace: float | None = None
    worker_memory: int | None = None
    retry_failed: bool = False
    """The run options each task passes on (None: not given)."""


def sbatch(project: Project, flags: SbatchFlags, program: Sequence[str], console: Console, folder: str | None = None) -> int:
    """Write the scripts of ``flags.machine``'s tasks (all, or ``--array``); submit them with ``--submit``."""
    members = array_members(project.machines, flags.machine)
    task = split_member(flags.machine) or _folder_member(flags.machine)
    if not members and task is not None and array_members(project.machines, task[0]):
        # A task's name as status and the results show it (sim[5]), or its folder's (sim@5): told to describe it as an array of its own, a name machines.json refuses.
        raise UserError(f'"{flags.machine}" is task {task[1]} of the array {task[0]}; write its script with --machine {task[0]} --array={task[1]}')
    if not members:
        raise UserError(
            f'"{flags.machine}" is not an array in {MACHINES_FILE} (arrays there: {", ".join(_arrays(project)) or "none"}); '
            f'describe one like "{flags.machine}": {{"speed": 1.0, "cores": 32, "array": 64}}'
        )
    indices = parse_indices(flags.array, len(members)) if flags.array is not None else list(range(len(members)))
    submissions = split(indices, flags.max_array_size or _cluster_max_array_size(console))
    out = (flags.out or load_host_settings().out or DEFAULT_OUT).absolute()
    if any(c.isspace() for c in str(out)):
        raise UserError(f"the output folder {out} has a space, which #SBATCH --output cannot carry; choose another --out")
    try:
        (out / SLURM_LOGS).mkdir(parents=True, exist_ok=True)  # Slurm fails a task whose output folder is missing
    except OSError as exc:
        raise folder_error(out, exc) from None
    _done_elsewhere(project, flags.machine, [(i, members[i].name) for i in indices], out, console)
    run_options = ["--config-dir", str(flags.config_dir.absolute()), "--out", str(out)]
    run_options += [*(["--strategy", flags.strategy] if flags.strategy else []), *(["--seed", flags.seed] if flags.seed is not None else [])]
    memory = None if flags.worker_memory is None else f"{flags.worker_memory}B"  # a size has its unit: the bare count is refused
    for option, value in (("--timeout", flags.timeout), ("--retries", flags.retries), ("--stop-grace", flags.stop_grace), ("--worker-memory", memory)):
        if value is not None:
            run_options += [option, f"{value:g}" if isinstance(value, float) else str(value)]
    if flags.retry_failed:  # the tasks that finished with failed jobs, resubmitted (see status): without it they end at once
        run_options.append("--retry-failed")
    script = ArrayScript(
        flags.machine, len(members), members[0].cores, format_digest(project.digest), program, run_options,
        str(out / SLURM_LOGS / "%x-%A_%a.out"), flags.job_name or flags.machine, flags.max_parallel,
        [(name, value) for name in ("partition", "time", "mem", "account") if (value := getattr(flags, name)) is not None], flags.extra,
        folder,
    )  # fmt: skip
    path = flags.script or Path(f"{flags.machine}.sbatch")
    written = [(_script_path(path, s, len(submissions)), s) for s in submissions]
    for target, submission in written:
        text = render(script, submission, __version__)
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(target) as f:
            f.write(text)
        console.print(f"wrote {target}: {_describe(flags.machine, submission, flags.max_parallel)}", markup=False, soft_wrap=True)
    if not flags.submit:
        console.print(f"submit {'them' if len(written) > 1 else 'it'} with: " + "; ".join(f"sbatch {target}" for target, _ in written), markup=False, soft_wrap=True)
        return exitcodes.OK
    for target, submission in written:
        job_id = submit(target)
        data_console().print(job_id)
        console.print(f"submitted {target} as job {job_id} ({plural(len(submission.tasks), 'task')})", markup=False, soft_wrap=True)
    return exitcodes.OK


def _done_elsewhere(project: Project, array: str, tasks: list[tuple[int, str]], out: Path, console: Console) -> None:
    """Say which tasks would start their shares over in ``out`` while their done jobs are in
    another output root (see sharefolders), and the --out that goes on from there. A task's run
    goes on past its own note of it (its --out was written here on purpose), so this, at the
    login node, is where a user can hear it: resubmitted without the campaign's --out (the
    README's ``sbatch --machine sim --array=... --submit``), every task ran its done jobs again."""
    source = StaticShare.name if project.balance.url is None else RedisQueue.name
    roots: dict[Path, list[int]] = {}
    for index, name in tasks:
        folder = out / folder_name(name)
        if not (folder / JOURNAL_FILE).exists() and (done := elsewhere(project.digest, name, folder, done=True, source=source).done):
            roots.setdefault(done[-1].folder.parent, []).append(index)  # the newest folder noted
    for root, indices in roots.items():
        one = len(indices) == 1
        say_notice(
            console,
            f"{plural(len(indices), 'task')} of {array} ({format_indices(indices)}) {'has' if one else 'have'} done jobs in {root}, by runs with another --out; "
            f"{'its script starts its share' if one else 'these scripts start their shares'} over in {out} and {'runs' if one else 'run'} them again: "
            f"to go on from them, write the scripts with --out {shlex.quote(str(root))}",
        )


def _cluster_max_array_size(console: Console) -> int:
    size, why = read_max_array_size()
    if size is None:
        say_notice(console, f"the cluster's MaxArraySize is unknown ({why}); assuming Slurm's default {DEFAULT_MAX_ARRAY_SIZE} (pass --max-array-size N to say)")
        return DEFAULT_MAX_ARRAY_SIZE
    return size


def _script_path(path: Path, submission: Submission, count: int) -> Path:
    if count == 1:
        return path
    first, last = submission.indices[0], submission.indices[-1]
    return path.with_name(f"{path.stem}.{first}{f'-{last}' if last != first else ''}{path.suffix}")


def _describe(array: str, submission: Submission, max_parallel: int | None) -> str:
    shift = f" (task id + {submission.offset})" if submission.offset else ""
    limit = f"%{max_parallel}" if max_parallel else ""
    return f"{plural(len(submission.tasks), 'task')} of {array}, indices {format_indices(submission.indices)}, as --array={format_indices(submission.tasks)}{limit}{shift}"


def _folder_member(name: str) -> tuple[str, int] | None:
    """(array, index) of a task's folder name (``sim@5``), None for another name."""
    array, at, index = name.rpartition("@")
    return (array, int(index)) if at and array and index.isdigit() else None


def _arrays(project: Project) -> list[str]:
    return [name for name in entry_names(project.machines) if array_members(project.machines, name)]


def program_command() -> tuple[list[str], str | None]:
    """How this program is started again in a batch job, and from which folder (None: any): the
    frozen executable, or this interpreter with the entry script, by absolute paths; an entry run
    as a module (``python -m study.run``) as a module again, from this folder (see
    ArrayScript.folder). ``sys.argv[0]`` named study/run.py, whose imports of its package then
    failed in every task."""
    if getattr(sys, "frozen", False):
        return [os.path.abspath(sys.executable)], None
    entry = entry_script()
    if entry is None:
        raise UserError("sbatch writes a batch script that starts this entry again, and it has no file (python -c, standard input): save it as a file and run its sbatch command")
    path, module = entry
    if module:
        return [os.path.abspath(sys.executable), "-m", module], os.getcwd()
    return [os.path.abspath(sys.executable), os.path.abspath(path)], None
