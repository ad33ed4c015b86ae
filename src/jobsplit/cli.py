"""Command lines: the entry's (``python ENTRY [run|digest|plan|init]``) and ``jobsplit``'s own."""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import sys
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, NoReturn

from rich.console import Console

from . import exitcodes
from ._version import __version__
from .config import CONFIG_FILE, HEADER_FILE
from .console import data_console, message_console, say_error, say_notice
from .digest import format_digest
from .errors import JobsplitError, UserError, exit_interrupted
from .fingerprint import entry_fingerprint
from .hostconfig import CONSOLE_STYLES, START_METHODS
from .jobcall import check_job_function
from .lifecycle import follow_bootloader
from .machines import MACHINES_FILE
from .plan import STRATEGIES
from .pool import JobKey, JobPool
from .project import CostFn, Project, find_config_dir, load_project
from .run_command import run_share
from .scaffold import write_templates
from .settings import RunFlags
from .text import clean_text, plural
from .tooloutput import tool_output
from .workermemory import parse_limit

ENTRY_COMMANDS = ("run", "digest", "plan", "init", "reduce", "sbatch")
TOOL_NAMES = ("merge-results", "status", "merge-logs", "report", "trace")
"""The ``jobsplit`` subcommands that need no job pool (also available inside every entry)."""

if TYPE_CHECKING:
    from .reduction import ReduceFn
    from .sbatch_command import SbatchFlags


def tools() -> tuple[ModuleType, ...]:
    """The tool modules (each with NAME, HELP, configure(parser) and run(args, console)),
    imported only when a tool runs: a run starts faster without them."""
    from . import logmerge, merge, report, status, trace

    return (merge, status, logmerge, report, trace)


def main(
    job: Callable[..., Any],
    pool: Iterable[Any],
    *,
    key: JobKey | None = None,
    cost: CostFn | None = None,
    reduce: ReduceFn | None = None,
    argv: Sequence[str] | None = None,
) -> None:
    """The entry point of a researcher's script: ``jobsplit.main(job, pool)``.

    Runs the command given on the command line (``run`` by default) and exits with its status;
    returns at once in a worker that is starting (see below).
    """
    multiprocessing.freeze_support()  # first: a frozen spawn child must not parse our argv
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        # A worker started by spawn runs the entry's top level to find the job function (the flag
        # is multiprocessing's own, see spawn._check_not_importing_main): an entry that calls
        # main without `if __name__ == "__main__":` lands here, and the worker must go on.
        return
    follow_bootloader()
    sys.exit(_closing_stdout(lambda: entry_main(job, pool, key=key, cost=cost, reduce=reduce, argv=argv)))


def entry_main(
    job: Callable[..., Any],
    pool: Iterable[Any],
    *,
    key: JobKey | None = None,
    cost: CostFn | None = None,
    reduce: ReduceFn | None = None,
    argv: Sequence[str] | None = None,
) -> int:
    """Like :func:`main`, returning the exit status instead of exiting."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in TOOL_NAMES:
        return tool_main(argv, prog=_program_name())  # the merge and status tools travel inside every executable too
    if not argv or argv[0] not in (*ENTRY_COMMANDS, "-h", "--help", "--version"):
        argv.insert(0, "run")  # a double-clicked executable runs this machine's share
    args = _entry_parser().parse_args(argv)
    messages = message_console()

    def command() -> int:
        if args.command == "init":
            return _init(args.config_dir or Path.cwd())
        if args.command == "reduce":
            from .reduction import reduce_results

            return reduce_results(reduce, args.dirs, args.output, allow_missing=args.allow_missing, console=messages, pool=JobPool(pool, key) if reduce is not None else None)
        config_dir = find_config_dir(args.config_dir)
        if args.config_dir is None and config_dir != Path.cwd():  # a machines.json edited here would otherwise be ignored unsaid
            say_notice(messages, f"there is no {CONFIG_FILE} here: the config files are read from {config_dir}, the program's own folder")
        project = load_project(JobPool(pool, key), config_dir, strategy=args.strategy, seed=args.seed, cost=cost)
        if reduce is not None:
            from .reduction import check_columns

            check_columns(project.header.columns)
        for notice in project.notices:
            say_notice(messages, notice)
        if args.command == "digest":
            _show_digest(project, messages, parts=args.parts, jobs=args.jobs)
            return 0
        if args.command == "plan":
            _show_plan(project, as_json=args.json)
            return 0
        if not len(project.pool):  # a glob that matched no file, more likely than a study of nothing
            raise UserError("the pool passed to jobsplit.main is empty: there is nothing to run; check how the entry builds it (a glob that matched no file? a filter that kept nothing?)")
        check_job_function(job, project.pool.jobs[0])  # before a run, or a batch job that would run it, starts
        if args.command == "sbatch":
            from .sbatch_command import program_command, sbatch  # only here: a run starts faster without it

            program, folder = program_command()
            return sbatch(project, _sbatch_flags(args), program, messages, folder)
        return run_share(project, job, _run_flags(args), messages)

    return _guarded(messages, command)


def tool_main(argv: Sequence[str] | None = None, prog: str = "jobsplit") -> int:
    """The ``jobsplit`` command: tools that need no job pool; an entry's too, named ``prog`` in
    usage lines (a host with only the executable has no ``jobsplit`` command)."""
    parser = argparse.ArgumentParser(prog=prog, description="Split research jobs among machines: tools that need no job pool.")
    parser.add_argument("--version", action="version", version=f"jobsplit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    init = commands.add_parser("init", help="write config.ini, header.csv and machines.json templates")
    init.add_argument("--config-dir", type=Path, default=Path.cwd(), help="where to write them (default: here)")
    handlers: dict[str, Callable[[argparse.Namespace, Console], int]] = {"init": lambda args, console: _init(args.config_dir)}
    delegated = commands.add_parser("sbatch", help="write (--submit: and submit) the Slurm batch script of an array: runs `ENTRY sbatch OPTIONS`")
    delegated.add_argument("entry", type=Path, metavar="ENTRY", help="the entry script (run with this Python) or its executable")
    delegated.add_argument("options", nargs=argparse.REMAINDER, metavar="OPTIONS", help="see `ENTRY sbatch --help`")
    handlers["sbatch"] = lambda args, console: _delegate(args.entry, "sbatch", args.options)
    for tool in tools():
        tool.configure(commands.add_parser(tool.NAME, help=tool.HELP, description=tool.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
        handlers[tool.NAME] = tool.run
    args = parser.parse_args(argv)
    console = message_console()
    return _guarded(console, lambda: handlers[args.command](args, console))


def _delegate(entry: Path, command: str, options: Sequence[str]) -> int:
    """Run an entry's own command (which needs its job pool): ``ENTRY COMMAND OPTIONS``."""
    if not entry.is_file():
        raise UserError(f"{entry} is not a file; name the entry script (my_study.py) or its executable")
    program = [sys.executable, str(entry)] if entry.suffix == ".py" else [str(entry.absolute())]
    import subprocess

    return subprocess.run([*program, command, *options], check=False).returncode


def script_main() -> NoReturn:
    """The ``jobsplit`` console script."""
    sys.exit(_closing_stdout(tool_main))


def _closing_stdout(command: Callable[[], int]) -> int:
    """Run a command with no traceback for an output pipe that closes early (``| head``), nor for
    Ctrl-C outside a run (which stops in its own way): say, while a big pool is digested."""
    _open_standard_descriptors()
    try:
        status = command()
        sys.stdout.flush()
        return status
    except KeyboardInterrupt:
        exit_interrupted()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # let the exit-time flush succeed
        return exitcodes.BROKEN_PIPE


def _open_standard_descriptors() -> None:
    """A command started with a standard descriptor closed (``cmd >&-``): the next file opened
    took its number (the journal as descriptor 1, say), and whatever wrote there, a program a
    job runs or a library's C code, wrote into that file; and Python, which leaves such a stream
    None, failed with a traceback at the first print. /dev/null takes the number first."""
    for fd, name in enumerate(("stdin", "stdout", "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)  # the lowest free number: this one, as the lower ones are open
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            if getattr(sys, name) is None:
                setattr(sys, name, open(fd, "r" if fd == 0 else "w", encoding="utf-8", errors="backslashreplace", closefd=False))  # noqa: SIM115 - the process's own stream


OUT_OF_MEMORY = (
    "out of memory: jobsplit could not get the memory it needed (its limit, `ulimit -v`, which some batch schedulers set, is reached, "
    "or the host's memory is used up); what was recorded is kept: free some memory or raise the limit (for a run: fewer --workers, "
    "or jobs that return less), then run the same command again"
)
"""What a MemoryError in jobsplit's own process says (one in a job is that job's failure)."""


def _guarded(console: Console, command: Callable[[], int]) -> int:
    """Run a command; a user, disk or internal error becomes one sentence and its exit status,
    never a traceback. So does running out of memory (a run, stopping, records itself as stopped,
    as for a full disk: its journal stays consistent and resumes)."""
    try:
        return command()
    except JobsplitError as exc:
        say_error(console, str(exc))
        return exc.exit_status
    except MemoryError:
        pass  # said below, once the frames that held the memory are gone
    say_error(console, OUT_OF_MEMORY)
    return exitcodes.USAGE


def _program_name() -> str:
    """The entry's name as its user runs it: the script's, or the executable's."""
    return Path(sys.argv[0]).name if not getattr(sys, "frozen", False) else Path(sys.executable).name


def _entry_parser() -> argparse.ArgumentParser:
    prog = _program_name()
    tool_list = ", ".join(TOOL_NAMES)
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run this machine's share of the job pool (see `run --help`).",
        epilog=f"Also available here: {tool_list} (see `{prog} COMMAND --help`).",
    )
    parser.add_argument("--version", action="version", version=f"jobsplit {__version__} (entry code {entry_fingerprint()})")
    shared = argparse.ArgumentParser(add_help=False)
    shared.add_argument(
        "--config-dir", type=Path, metavar="DIR",
        help="where config.ini, header.csv and machines.json are (default: here if it holds a config.ini, else the entry's own folder; init: here)",
    )  # fmt: skip
    planning = argparse.ArgumentParser(add_help=False)
    planning.add_argument("--strategy", choices=None, metavar="NAME", help=f"how to split the pool: {', '.join(STRATEGIES)} (default: config.ini [jobsplit] strategy, else quota)")
    planning.add_argument("--seed", metavar="TEXT", help="seed the plan with TEXT instead of the digest (every host must pass the same)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", parents=[shared, planning], help="run this machine's share (the default)")
    _add_run_options(run)
    digest = commands.add_parser("digest", parents=[shared, planning], help="print the digest, which must be equal on every host")
    detail = digest.add_mutually_exclusive_group()
    detail.add_argument("--parts", action="store_true", help="also a fingerprint of each part it covers: compare them between two hosts to see what differs")
    detail.add_argument("--jobs", action="store_true", help="list every job's Job Args and id (and cost hint, for --strategy cost) instead, sorted: compare two hosts' lists with diff")
    plan = commands.add_parser("plan", parents=[shared, planning], help="show every machine's share")
    plan.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    commands.add_parser("init", parents=[shared], help="write the config file templates (never overwrites)")
    _add_sbatch_options(commands.add_parser("sbatch", parents=[shared, planning], help="write (and --submit) the Slurm batch script of an array in machines.json"))
    reducing = commands.add_parser("reduce", help="merge the machines' results and fold them with the entry's reduce function")
    reducing.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="an output root, or machine folders (DIR/<machine>)")
    reducing.add_argument("-o", "--output", type=Path, metavar="FILE", help="write the reduced value here (.csv or .json; default: JSON on stdout)")
    reducing.add_argument("--allow-missing", action="store_true", help="reduce what there is even if jobs are missing (exit status stays 1)")
    return parser


def _add_run_options(run: argparse.ArgumentParser) -> None:
    run.add_argument("--machine", metavar="NAME", help="which machine this is (else you are asked)")
    run.add_argument("--array-index", type=_non_negative_int, metavar="I", help="for an array machine: which task of it this is (default: SLURM_ARRAY_TASK_ID)")
    run.add_argument("--yes", action="store_true", help="start without asking to confirm the digest")
    run.add_argument("--expect-digest", metavar="DIGEST", help="refuse to start unless the digest is this (separators and case ignored)")
    host = run.add_argument_group("this host (defaults from host.ini, see README)")
    host.add_argument("--workers", type=_positive_int, metavar="N", help="worker processes (default: SLURM_CPUS_PER_TASK in a Slurm task, else host.ini's workers, else the cores in machines.json)")
    host.add_argument("--out", type=Path, metavar="DIR", help="output root; this machine writes DIR/<machine>/ (default: ./jobsplit-out)")
    host.add_argument("--nice", type=int, metavar="N", help="niceness added to workers (default: 10)")
    host.add_argument("--console", choices=CONSOLE_STYLES, help="live display, plain lines, or auto (live on a terminal)")
    host.add_argument("--start-method", choices=START_METHODS, help="how workers start (default: fork on Linux)")
    failures = run.add_argument_group("failures and resuming")
    _add_job_handling(failures)
    failures.add_argument("--fresh", action="store_true", help="start over; the old journal and results are kept in a backup folder")
    queue = run.add_argument_group("dynamic balancing (see README)")
    queue.add_argument("--balance", metavar="URL", help="take jobs from a shared Redis queue at redis://HOST:PORT/DB (default: config.ini [balance] url, else run this machine's share)")
    queue.add_argument("--lease", type=_positive_float, metavar="SECONDS", help="how long a claim on a job lasts unless renewed (default: config.ini [balance] lease, else 60)")


def _add_job_handling(group: argparse._ArgumentGroup) -> None:
    """How jobs are stopped, retried and watched: options of a run, which ``sbatch`` passes to
    the run of each task."""
    group.add_argument("--timeout", type=_positive_float, metavar="SECONDS", help="stop and record a job that runs longer (default: config.ini [jobsplit] timeout, else none)")
    group.add_argument("--retries", type=_non_negative_int, metavar="N", help="run a failed, crashed or timed-out job up to N more times (default: 0)")
    group.add_argument("--retry-failed", action="store_true", help="also run the jobs that failed in earlier runs")
    group.add_argument(
        "--stop-grace", type=_non_negative_float, metavar="SECONDS",
        help="how long a stopped job (a timeout, Ctrl-C, a scheduler's SIGTERM) has to end by its own SIGTERM handler, saving a checkpoint say, before it is killed (default: host.ini, else 1)",
    )  # fmt: skip
    group.add_argument(
        "--worker-memory", type=_memory_limit, metavar="SIZE",
        help="replace a worker between two jobs once it has grown by more than SIZE (e.g. 4GiB), so that jobs that leak memory never exhaust the host (default: host.ini, else no limit; 0: none)",
    )  # fmt: skip


def _add_sbatch_options(sbatch: argparse.ArgumentParser) -> None:
    sbatch.add_argument("--machine", required=True, metavar="NAME", help="the array in machines.json whose tasks to submit")
    sbatch.add_argument("--out", type=Path, metavar="DIR", help="the tasks' output root (default: host.ini [host] out, else ./jobsplit-out)")
    sbatch.add_argument("--script", type=Path, metavar="FILE", help="where to write the script (default: NAME.sbatch here)")
    sbatch.add_argument("--array", metavar="LIST", help="only these task indices, like 3,17,40 or 0-7 (default: all; see `status`)")
    sbatch.add_argument("--max-parallel", type=_positive_int, metavar="K", help="run at most K tasks at once (--array=...%%K)")
    sbatch.add_argument("--max-array-size", type=_positive_int, metavar="N", help="the cluster's MaxArraySize (default: from scontrol show config)")
    sbatch.add_argument("--submit", action="store_true", help="submit with sbatch and print the job ids")
    slurm = sbatch.add_argument_group("passed to sbatch")
    slurm.add_argument("--job-name", metavar="NAME", help="default: the array's name")
    for name, example in (("partition", "gpu"), ("time", "2-00:00:00"), ("mem", "64G"), ("account", "lab")):
        slurm.add_argument(f"--{name}", metavar=name.upper(), help=f"e.g. {example}")
    slurm.add_argument("--extra", action="append", default=[], metavar="OPTION", help="any other sbatch option, one per --extra (--extra=--qos=long)")
    _add_job_handling(sbatch.add_argument_group("passed to the run of each task"))


def _sbatch_flags(args: argparse.Namespace) -> SbatchFlags:
    from .sbatch_command import SbatchFlags

    names = {f.name for f in dataclasses.fields(SbatchFlags)} - {"config_dir", "extra"}
    return SbatchFlags(config_dir=find_config_dir(args.config_dir), extra=tuple(args.extra), **{name: getattr(args, name) for name in names})


def _run_flags(args: argparse.Namespace) -> RunFlags:
    """The run flags, which are named like RunFlags' fields."""
    return RunFlags(**{f.name: getattr(args, f.name) for f in dataclasses.fields(RunFlags)})


def _number(convert: Callable[[str], Any], accept: Callable[[Any], bool], what: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    return parse


_positive_int = _number(int, lambda v: v >= 1, "a whole number >= 1")
_non_negative_int = _number(int, lambda v: v >= 0, "a whole number >= 0")
_memory_limit = _number(parse_limit, lambda v: v >= 0, "a size with its unit, such as 4GiB or 500MB (0: no limit)")
_positive_float = _number(float, lambda v: 0 < v < float("inf"), "a number of seconds > 0")
_non_negative_float = _number(float, lambda v: 0 <= v < float("inf"), "a number of seconds >= 0")


def _init(dest: Path) -> int:
    written, kept = write_templates(dest)
    console = message_console()
    for path in written:
        console.print(f"wrote {path}", markup=False)
    for path in kept:
        console.print(f"kept {path} (already there)", markup=False)
    console.print(
        "Next: list your machines in machines.json (name: [relative speed, cores]), name your result "
        "columns in header.csv after the three timing columns, and put your job's settings in config.ini. "
        "Then copy the same three files to every host.",
        markup=False,
    )
    return 0


_PARTS = {
    "pool": "{jobs:,} jobs: their ids{costs} (`digest --jobs` lists them)",
    "config": f"{CONFIG_FILE}, as parsed (comments, spacing, key order and line endings aside)",
    "header": f"{HEADER_FILE}'s columns",
    "machines": f"{MACHINES_FILE}: names, speeds and cores",
    "seed": "--seed: {seed}",
    "strategy": "{strategy}",
}
"""What ``digest --parts`` says of each part (see digest.digest_parts)."""


def _show_digest(project: Project, messages: Console, *, parts: bool, jobs: bool, chunk: int = 10_000) -> None:
    """The digest; with ``parts``, each part's fingerprint; with ``jobs``, each job's identity
    text and id instead, sorted by the text (pool order aside, as in the digest), so that a job
    that differs between two hosts shows as neighbouring lines in a diff. The list is UTF-8 in
    any locale, lone surrogates as backslash escapes (as ``text.clean_text`` writes them): in a
    Latin-1 locale an "é" was another byte than on a UTF-8 host, and an "α" a traceback."""
    if jobs:
        pool = project.pool
        columns = [map(pool.identity_text, range(len(pool))), pool.ids_hex(range(len(pool)))]
        if project.strategy == "cost" and project.costs is not None:  # part of the digest then: a host whose cost function differs shows it
            columns.append(map(repr, project.costs))
        listed = sorted(zip(*columns))
        with tool_output("-") as listing:  # stdout in UTF-8, as a tool's -o - writes it
            for start in range(0, len(listed), chunk):
                listing.write(clean_text("".join("\t".join(line) + "\n" for line in listed[start : start + chunk])))
        decomposed = [text for text, *_ in listed if not text.isascii() and not unicodedata.is_normalized("NFC", text)]
        if decomposed:
            say_notice(messages, _decomposed_note(decomposed))
        return
    out = data_console()
    out.print(format_digest(project.digest))
    if parts:
        facts = {
            "jobs": len(project.pool),
            "costs": " and cost hints" if project.strategy == "cost" else "",
            "seed": "none, the digest seeds the plan" if project.seed_override is None else repr(project.seed_override),
            "strategy": project.strategy,
        }
        for name, part in project.digest_parts().items():
            out.print(f"  {name:9} {format_digest(part)}  {_PARTS[name].format(**facts)}", markup=False)


def _decomposed_note(texts: Sequence[str]) -> str:
    """Why two hosts' lists differ where their lines look the same: macOS (HFS+, and files copied
    from there) writes an accent as a letter and a combining mark, "e" + U+0301, where other
    systems write one character, "é". Both print alike, but they are other text, so other jobs."""
    example = clean_text(texts[0]).encode("ascii", "backslashreplace").decode()
    return (
        f"{plural(len(texts), 'job')} of this pool {'has' if len(texts) == 1 else 'have'} arguments in decomposed Unicode (not NFC, as macOS "
        f"writes file names), such as {example}: another host that lists the same text composed shows a line that looks the same but is "
        'another job; make the text the same on every host (unicodedata.normalize("NFC", name) as the pool is built, or the files renamed)'
    )


def _write_plan_json(project: Project, write: Callable[[str], object], chunk: int = 10_000) -> None:
    """``plan --json``, written as it is produced (ten million ids never sit in memory as one
    document): the very text ``json.dumps`` would give for the whole document."""
    plan, total, pool = project.plan, len(project.pool), project.pool
    head = json.dumps({"digest": format_digest(project.digest), "strategy": plan.strategy, "total_jobs": total})
    write(head[:-1] + ', "machines": [')
    for index, (m, share) in enumerate(zip(plan.machines, plan.shares)):
        machine = json.dumps({"name": m.name, "speed": m.speed, "cores": m.cores, "share": len(share) / total if total else 0.0, "jobs": len(share)})
        write((", " if index else "") + machine[:-1] + ', "job_ids": [')
        for start in range(0, len(share), chunk):
            write((", " if start else "") + ", ".join(f'"{job_id}"' for job_id in pool.ids_hex(share[start : start + chunk])))
        write("]}")
    write("]}\n")


def _show_plan(project: Project, *, as_json: bool) -> None:
    if as_json:
        _write_plan_json(project, sys.stdout.write)
        return
    from rich.table import Table

    from .plan.simulate import finish_time

    plan, total = project.plan, len(project.pool)
    out = data_console()
    costs = project.costs
    table = Table(title=f"Plan ({plan.strategy}) for {total} jobs")
    for column in ("Machine", "Speed", "Cores", "Share", "Jobs"):
        table.add_column(column, justify="left" if column == "Machine" else "right")
    if costs is not None:
        table.add_column("Est. cost", justify="right")
        table.add_column("Est. time", justify="right")
    for m, share in zip(plan.machines, plan.shares):
        row = [m.name, f"{m.speed:g}", str(m.cores), f"{100 * len(share) / max(total, 1):.1f}%", str(len(share))]
        if costs is not None:
            row += [f"{sum(costs[p] for p in share):,.4g}", f"{finish_time((costs[p] for p in share), m.speed, m.cores):,.4g}"]
        table.add_row(*row)
    table.add_section()
    total_row = ["total", "", str(sum(m.cores for m in plan.machines)), "100.0%", str(total)]
    if costs is not None:
        total_row += [f"{sum(costs):,.4g}", ""]
    table.add_row(*total_row)
    out.print(table)
    out.print(f"digest {format_digest(project.digest)}")
