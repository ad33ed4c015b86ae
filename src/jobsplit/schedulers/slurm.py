"""Slurm, without talking to it: which array task this is, which indices to submit in how many
arrays, and the batch script of each (submitting is ``slurm_commands``).

Slurm refuses an array task id of ``MaxArraySize`` or more, so an array of more machines is
split into several submissions, each running task ids from 0 and adding its ``offset`` to get
the machine index. Indices that all fit are one submission of offset 0: there task id and
machine index are the same number, and ``sbatch --array=3,17,40 FILE`` reruns those machines.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ..errors import UserError
from .base import Allocation

TASK_ID = "SLURM_ARRAY_TASK_ID"
CPUS = "SLURM_CPUS_PER_TASK"
DEFAULT_MAX_ARRAY_SIZE = 1001
"""Slurm's own default of MaxArraySize: task ids 0 to 1000."""
WARNING_SECONDS = 120
"""``--signal=B:TERM@120``: the run stops cleanly this long before the time limit, with time to
spare for its workers to stop and its journal to close; a quarter of a shorter limit (a test
run's ``--time 1:30``, which the signal at 120 s stopped as it began), at least 10 s."""
_RANGE = re.compile(r"(0|[1-9][0-9]*)(?:-(0|[1-9][0-9]*))?")


def allocation(environ: Mapping[str, str]) -> Allocation:
    """The array task id and CPUs per task Slurm gives a batch task in its environment."""
    return Allocation(
        task=(TASK_ID, value) if (value := _whole(environ, TASK_ID, 0)) is not None else None,
        cpus=_whole(environ, CPUS, 1),
    )


def _whole(environ: Mapping[str, str], name: str, least: int) -> int | None:
    text = environ.get(name)
    if text is None or text == "":
        return None
    if not text.isdigit() or int(text) < least:
        raise UserError(f"the environment variable {name} is {text!r}, not a whole number >= {least}; unset it, or pass the value as a flag")
    return int(text)


# --- which indices, in how many submissions ----------------------------------------------------


def parse_indices(text: str, size: int, source: str = "--array") -> list[int]:
    """Indices and ranges as Slurm writes them (``3,17,40``, ``0-7,9``), each in 0..size-1."""
    found: set[int] = set()
    for part in text.split(","):
        match = _RANGE.fullmatch(part.strip())
        first, last = (int(match.group(1)), int(match.group(2) or match.group(1))) if match else (0, -1)
        if not match or first > last or last >= size:
            raise UserError(f"{source} {text}: {part.strip()!r} is not an index or range of 0 to {size - 1}; write them like 3,17,40 or 0-7")
        found.update(range(first, last + 1))
    return sorted(found)


def format_indices(indices: Iterable[int]) -> str:
    """Sorted indices with runs as ranges: ``0-2,5,7-9``."""
    parts: list[str] = []
    ordered = sorted(set(indices))
    start = 0
    for i, index in enumerate(ordered):
        if i + 1 == len(ordered) or ordered[i + 1] != index + 1:
            first = ordered[start]
            parts.append(str(first) if first == index else f"{first}-{index}")
            start = i + 1
    return ",".join(parts)


@dataclass(frozen=True)
class Submission:
    """One array submitted with sbatch: machine index = ``offset`` + task id."""

    offset: int
    tasks: tuple[int, ...]

    @property
    def indices(self) -> tuple[int, ...]:
        return tuple(self.offset + task for task in self.tasks)


def split(indices: Iterable[int], max_array_size: int) -> list[Submission]:
    """The fewest submissions that run each index once, every task id below ``max_array_size``
    (each starts at the lowest index left: fixed-width windows, greedily, cover points optimally)."""
    ordered = sorted(set(indices))
    if ordered and ordered[-1] < max_array_size:
        return [Submission(0, tuple(ordered))]
    submissions = []
    i = 0
    while i < len(ordered):
        offset = ordered[i]
        tasks = []
        while i < len(ordered) and ordered[i] - offset < max_array_size:
            tasks.append(ordered[i] - offset)
            i += 1
        submissions.append(Submission(offset, tuple(tasks)))
    return submissions


# --- the batch script ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ArrayScript:
    """What every batch script of one array says; :func:`render` writes one per submission."""

    array: str
    """The array's name in machines.json."""
    size: int
    cores: int
    digest: str
    """As shown (``3f2a-9c1b-...``): the run refuses to start on another."""
    program: Sequence[str]
    """The program that runs the machine: (interpreter, entry script) or (executable,)."""
    run_options: Sequence[str]
    """The rest of the run command line: ``--config-dir``, ``--out``, ``--strategy``, ``--seed``."""
    output: str
    """Slurm's ``--output`` pattern: one file per task (``%A_%a``), appended to when requeued."""
    job_name: str
    max_parallel: int | None = None
    options: Sequence[tuple[str, str]] = ()
    """Passed through: (``partition``, ``gpu``), (``time``, ``2-00:00:00``)..."""
    extra: Sequence[str] = ()
    """Whole sbatch options, each its own ``#SBATCH`` line: ``--qos=long``."""
    folder: str | None = None
    """Where the program starts (an entry run as a module imports its package from there, as
    ``python -m`` did where sbatch ran); None: where Slurm starts it, the folder it was submitted from."""


def render(script: ArrayScript, submission: Submission, version: str) -> str:
    """The batch script of one submission: ``#SBATCH`` lines, then ``exec`` of the run, so
    that Slurm's signals (``scancel --signal``, the time limit warning) reach jobsplit itself."""
    if submission.offset:
        mapping = f"task id T is machine {script.array}[T+{submission.offset}]"
        index = ["--array-index", f'"$(({TASK_ID} + {submission.offset}))"']
    else:
        mapping = f"task id T is machine {script.array}[T]: `sbatch --array=3,17 THIS_FILE` reruns machines 3 and 17"
        index = []  # run reads SLURM_ARRAY_TASK_ID
    array = format_indices(submission.tasks) + (f"%{script.max_parallel}" if script.max_parallel else "")
    directives = [
        ("job-name", script.job_name),
        ("array", array),
        ("cpus-per-task", str(script.cores)),
        ("output", script.output),
        *script.options,
    ]
    lines = [
        "#!/bin/sh",
        f"# Written by jobsplit {version} (sbatch): the tasks {format_indices(submission.indices)} of the array {script.array} in machines.json",
        f"# ({script.size} tasks, digest {script.digest}); {mapping}.",
        *(f"#SBATCH --{name}={_directive(name, value)}" for name, value in directives),
        "#SBATCH --requeue",
        "#SBATCH --open-mode=append",
        f"#SBATCH --signal=B:TERM@{warning_seconds(dict(script.options).get('time'))}",
        *(f"#SBATCH {_extra(option)}" for option in script.extra),
        *([f"cd {shlex.quote(script.folder)} || exit 1"] if script.folder else []),
        " ".join([
            "exec", *map(shlex.quote, script.program), "run", "--machine", shlex.quote(script.array), *index,
            "--expect-digest", script.digest, "--console", "plain", *map(shlex.quote, script.run_options),
        ]),
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def warning_seconds(time_limit: str | None) -> int:
    """How long before ``time_limit`` (sbatch's ``--time``) the run is told to stop."""
    limit = _limit_seconds(time_limit) if time_limit else None
    return WARNING_SECONDS if limit is None else min(WARNING_SECONDS, max(10, limit // 4))


_TIME = re.compile(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?")


def _limit_seconds(text: str) -> int | None:
    """Seconds of a Slurm time limit: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S; None for another
    (UNLIMITED, INFINITE), which keeps the usual warning."""
    match = _TIME.fullmatch(text.strip())
    if match is None:
        return None
    days, first, second, third = match.groups()
    numbers = [int(n) for n in (first, second, third) if n is not None]
    if days is not None:  # D-H, D-H:M, D-H:M:S
        hours, minutes, seconds = [*numbers, 0, 0][:3]
        return ((int(days) * 24 + hours) * 60 + minutes) * 60 + seconds
    if len(numbers) == 3:
        return (numbers[0] * 60 + numbers[1]) * 60 + numbers[2]
    return numbers[0] * 60 + (numbers[1] if len(numbers) == 2 else 0)  # M or M:S


def _directive(name: str, value: str) -> str:
    if not value or any(c.isspace() for c in value):
        raise UserError(f"--{name} {value!r} cannot be an #SBATCH value (empty, or with a space); choose one without spaces")
    if name == "job-name" and "/" in value:  # %x in --output: Slurm cannot open the file, and every task FAILED without a line of output
        raise UserError(f"--job-name {value!r} names each task's Slurm output file (%x in --output), where a / is a folder that does not exist; choose one without /")
    return value


def _extra(option: str) -> str:
    if not option.startswith("-") or any(c in option for c in "\r\n"):
        raise UserError(f"--extra {option!r} is not an sbatch option; give one whole option per --extra, like --extra=--qos=long")
    name = re.split(r"[=\s]", option, maxsplit=1)[0]
    if name.startswith("-a") or (len(name) >= 4 and "--array".startswith(name)):  # -a1, --arr=1: sbatch takes short forms and prefixes
        # After the script's own --array, Slurm takes it: "submitted (4 tasks)" ran one, and in a split script the ids are offset.
        raise UserError(
            f"--extra {option!r} would override the script's own --array (Slurm takes the last, and the tasks it leaves out never run); "
            "give the tasks with sbatch's own --array=3,17,40"
        )
    return option
