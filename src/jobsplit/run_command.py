"""The ``run`` command: pick this machine, confirm the digest, run its share, sum up.

The one place of a run that talks to the user: prompts, the digest check, the ``--fresh``
backup, notices and the summary. The run itself is a :class:`MachineRun`.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import sqlite3
import string
import sys
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from . import exitcodes
from .balance import hide_passwords, parse_url, same_server
from .console import say_notice
from .digest import format_digest, normalize_digest
from .display import Display, PlainDisplay, Snapshot, duration
from .errors import UserError
from .failurelines import FailureLines
from .fingerprint import UNKNOWN, entry_fingerprint
from .hostconfig import load_host_settings
from .jobcall import check_sendable
from .journal import Journal
from .lifecycle import Interrupts
from .machine_run import MachineRun, RunSummary
from .machines import Machine, array_members, entry_names, pick, split_member
from .outdir import MachineDir, MachineLock, in_use
from .project import Project
from .schedulers import Allocation, current_allocation
from .settings import RunFlags, RunSettings, check_nice, resolve
from .sharefolders import DoneElsewhere, ShareLock, elsewhere, note_folder
from .snapshot import written_elsewhere
from .sources import StaticShare
from .sources.redis import RedisQueue
from .states import JobState, RunStatus
from .text import plural, rate_text
from .workermemory import check_supported


def run_share(project: Project, job: Callable[..., Any], flags: RunFlags, console: Console) -> int:
    """The ``run`` command; returns its exit status (see ``exitcodes``)."""
    interactive = sys.stdin.isatty()
    allocation = current_allocation(os.environ)
    machine = _choose_machine(project, flags, allocation, console, interactive)
    digest_checked = _check_digest(project, flags.expect_digest)
    settings = resolve(flags, load_host_settings(), project.settings, machine, allocation, project.balance)
    check_nice(settings.nice)
    if settings.worker_memory is not None:
        check_supported("--worker-memory")
    check_sendable(job, settings.start_method)
    code = entry_fingerprint()
    standing = _standing(project, settings)
    console.print(
        f"digest [bold]{format_digest(project.digest)}[/]  code {code}  strategy {project.strategy}  "
        f"machine [bold]{escape(machine.name)}[/]: {escape(_share_line(project, settings, standing))}",
        soft_wrap=True,
    )
    if code == UNKNOWN:
        say_notice(console, "the entry's code is unknown (it has no file, as with python -c; or an executable not built by make exe): merge-results cannot tell its results from other code's")
    if flags.balance is not None and project.balance.url is None and len(project.machines) > 1:
        say_notice(
            console,
            "--balance is not part of the digest (hosts may reach the server by other addresses): give it to every host, or set [balance] url in "
            "config.ini, which the digest covers; a host run without it takes its static share, and runs those jobs a second time",
        )
    elif flags.balance is not None and settings.balance is not None and project.balance.url is not None:  # the url alone is no override to check
        configured = parse_url(project.balance.url, f"{project.balance.where} url")
        if not same_server(settings.balance.address, configured):  # the flag wins: a queue of its own, where the others' jobs run again
            say_notice(
                console,
                f"--balance {settings.balance.address.masked} overrides {project.balance.where} url {configured.masked}, which the other hosts take: "
                "unless it is the same server, this host takes jobs from a queue of its own, and runs the jobs they take a second time; leave --balance out",
            )
    folder = settings.folder
    with ShareLock(project.digest, machine.name, folder.path) as share_lock:  # from here to the end: no second run of this share on this host, in any folder
        if share_lock.missing:
            say_notice(console, f"{share_lock.missing}: runs of this share from other folders, or started at the same moment, go unseen; set XDG_STATE_HOME to a folder you can write")
        new_folder = not settings.fresh and not folder.journal.exists()
        others = elsewhere(project.digest, machine.name, folder.path, done=new_folder, source=StaticShare.name if settings.balance is None else RedisQueue.name)
        if others.running:
            place, holder = others.running[0]
            raise in_use(place, f"{holder}; this run would be in {folder.path.absolute()}")
        confirmed = flags.yes or digest_checked
        if new_folder:  # an array task's --out was written into its batch script by sbatch, on purpose: a note in its Slurm log
            _done_elsewhere(others.done, folder, code, console, refuse=confirmed and allocation.task is None)
            if folder.path.parent.name == folder.path.name:
                say_notice(console, f"--out {settings.out} is named as this machine's own folder, which is {folder.path}: --out is the output root that holds every machine's folder")
        if not confirmed:
            _confirm(console, interactive)
        folder.create()
        with MachineLock(folder.path):  # from here to the end: no second run of this machine can start
            unnoted = note_folder(project.digest, machine.name, folder.path)
            if unnoted:
                say_notice(console, f"{unnoted}: a run of this share from another folder will not see the jobs done here, and may run them again; free some space there, or set XDG_STATE_HOME")
            if settings.fresh:
                backup = folder.back_up()
                if backup:
                    console.print(f"kept the previous results in {escape(str(backup))}")
            events = _ConsoleEvents(console, _display(console, settings.console), folder.log)
            machine_run = MachineRun(project, job, settings, code=code, events=events, standing_said=standing)
            try:
                interrupts = Interrupts(
                    lambda: _force_exit(machine_run), on_pause=lambda: _pause(machine_run, events),
                    on_resume=lambda paused: _resume(machine_run, events, paused), on_continue=machine_run.continued,
                )  # fmt: skip
                with interrupts:
                    summary = machine_run.execute(lambda: interrupts.requested)
            finally:
                events.close()
        return _sum_up(summary, settings, flags, console, events.failures)


FOLDERS_SHOWN = 3
"""Folders of a share's done jobs named at most in the note of a run that starts it over."""


def _done_elsewhere(done: list[DoneElsewhere], folder: MachineDir, code: str, console: Console, *, refuse: bool) -> None:
    """A share about to start in a new folder whose done jobs are in others (see sharefolders),
    the newest of them first, and whether other code made them (the digest leaves the code out:
    another entry script with the same pool and config files makes the same share). Before a
    confirmation, one note; without one (``--yes``, ``--expect-digest``: a script, a batch job,
    the same command from another folder), a refusal (``refuse``): the note would scroll past a
    share run again from its start, and through a shared queue, the jobs the queue credits to
    this machine would be handed back and run again."""
    found = done[::-1]
    if not found:
        return
    newest, here = found[0], folder.path.resolve()
    if len(found) == 1:
        where, by, there = f"{plural(newest.done, 'job')} of this share {'is' if newest.done == 1 else 'are'} done in {newest.folder}", "a run", "there"
    else:
        shown = ", ".join(f"{place.folder} ({place.done:,} done)" for place in found[:FOLDERS_SHOWN])
        more = f" and {len(found) - FOLDERS_SHOWN} more" if len(found) > FOLDERS_SHOWN else ""
        where, by, there = f"jobs of this share are done in {len(found)} other folders, {shown}{more}", "runs", "the newest"
    other_code = f" (its results come from other code: {newest.code} there, {code} here)" if UNKNOWN not in (newest.code, code) and newest.code != code else ""
    if folder.results.exists():  # copied there without its journal, say: its rows rebuild one (see recovery), the jobs done since run again
        here_on = f"{here} holds a results.csv but no journal: this run {'would go' if refuse else 'goes'} on from that file's rows alone"
    else:
        here_on = f"this run {'would start' if refuse else 'starts'} the share over in {here}"
    if refuse:
        raise UserError(
            f"{where}, by {by} from another folder or with another --out, and {here_on}; "
            f"to go on from {there}{other_code}, run with --out {shlex.quote(str(newest.folder.parent))}, or pass --fresh to start over here (the jobs done there run again)"
        )
    say_notice(
        console,
        f"{where}, by {by} from another folder or with another --out; {here_on}. "
        f"To go on from {there}{other_code} instead, stop here and run with --out {shlex.quote(str(newest.folder.parent))}",
    )


def _pause(machine_run: MachineRun, events: _ConsoleEvents) -> None:
    """Ctrl-Z: the jobs stop, and the terminal goes back to the shell as it was."""
    machine_run.pause()
    events.display.suspend()


def _resume(machine_run: MachineRun, events: _ConsoleEvents, paused: float) -> None:
    events.display.resume()
    machine_run.resume(paused)


class _ConsoleEvents:
    """A run's events on the console: notices and failures as lines (repeats counted: see
    ``failurelines``), progress on the display."""

    def __init__(self, console: Console, display: Display, log: Path) -> None:
        self.console = console
        self.display = display
        self.failures = FailureLines(display.message, log)

    def notice(self, text: str) -> None:
        say_notice(self.console, text)

    def failure(self, text: str, kind: str) -> None:
        self.failures.add(text, kind)

    def progress(self, snapshot: Snapshot) -> None:
        self.display.update(snapshot)

    def close(self) -> None:
        self.display.close()


def _sum_up(summary: RunSummary, settings: RunSettings, flags: RunFlags, console: Console, failures: FailureLines) -> int:
    console.print(
        f"{settings.machine.name}: {summary.done} of {summary.total} done ({summary.percent_done:.1f}%), {summary.failed} failed; this run: "
        f"{summary.done_this_run} done in {duration(summary.elapsed)} ({rate_text(summary.rate)} jobs/s). Results: {settings.folder.results}",
        markup=False,
        soft_wrap=True,
    )
    if not_shown := failures.summary():
        console.print(f"{not_shown}.", markup=False, soft_wrap=True)
    if summary.status == RunStatus.INTERRUPTED:
        resume = hide_passwords(shlex.join(_resume_argv(list(sys.orig_argv), settings.machine.name, flags)))
        console.print(f"Interrupted: running jobs were stopped and will run again. Resume with: {resume}", markup=False, soft_wrap=True)
        return exitcodes.INTERRUPTED
    if summary.failed:
        where = "see above" if failures.shown else "not in this run: the report command lists them with their errors"
        console.print(f"{plural(summary.failed, 'job')} failed ({where}); run again with --retry-failed to retry them.", markup=False, soft_wrap=True)
        return exitcodes.JOBS_FAILED
    return exitcodes.OK


def _resume_argv(argv: list[str], machine: str, flags: RunFlags) -> list[str]:
    """The command line that resumes this run from a shell: without ``--fresh`` (or an
    abbreviation argparse took for it), which would back this run's results up and start the
    share over; and an array task that took its index from SLURM_ARRAY_TASK_ID (``--machine
    sim``, no ``--array-index``) names it, as a shell has no such variable and refused the
    command ("sim" is an array: pass --array-index)."""
    argv = [arg for arg in argv if not (len(arg) > 2 and "--fresh".startswith(arg))]
    member = split_member(machine)
    if member and flags.machine == member[0] and flags.array_index is None:
        return [*argv, "--array-index", str(member[1])]
    return argv


def _share_line(project: Project, settings: RunSettings, standing: tuple[int, int, int] | None) -> str:
    """``40 jobs``, or where a resumed share stands (see _standing), or where the jobs come from."""
    if settings.balance is not None:
        return f"the pool's {plural(len(project.pool), 'job')} through the shared queue at {settings.balance.address.masked}"
    jobs = plural(len(project.plan.share_of(settings.machine.name)), "job")
    return jobs if standing is None else f"{jobs}, resuming: {standing[0]:,} done, {standing[1]:,} failed, {standing[2]:,} to go"


def _standing(project: Project, settings: RunSettings) -> tuple[int, int, int] | None:
    """(done, failed, to go) of a static share this folder's journal resumes, as the run's own
    resume note counts them; None where there is none to read from here."""
    path = settings.folder.journal
    if settings.balance is not None or settings.fresh or written_elsewhere(settings.folder.path, time.time()) or not Journal.holds_a_plan(path):
        return None  # a journal another host writes is not opened from here
    try:
        with closing(Journal(path, read_only=True)) as journal:
            if journal.meta().get("digest") != project.digest:
                return None  # not resumed: the run refuses that journal next, saying why
            counts = journal.counts()
    except sqlite3.DatabaseError:
        return None  # a damaged journal: the run sets it aside next, saying so
    done, failed = counts[JobState.DONE], 0 if settings.retry_failed else counts[JobState.FAILED]
    return done, failed, sum(counts.values()) - done - failed


def _choose_machine(project: Project, flags: RunFlags, allocation: Allocation, console: Console, interactive: bool) -> Machine:
    name = flags.machine
    if name is not None:
        return pick(project.machines, name, flags.array_index, allocation.task)
    if flags.array_index is not None:
        raise UserError(f"--array-index {flags.array_index} needs --machine NAME, the array it is an index of")
    machines = project.machines
    if len(machines) == 1:
        return machines[0]
    if not interactive:
        raise UserError(f"which machine is this? stdin is not a terminal, so pass --machine NAME (one of: {', '.join(entry_names(machines))})")
    host = socket.gethostname()
    singles = [m for m in machines if split_member(m.name) is None]  # each array is offered as one line, not one per task
    default = next((i for i, m in enumerate(singles, 1) if m.name in (host, host.split(".")[0])), None)
    numbered = not any(m.name.isdigit() for m in singles)  # machines named 2 and 5: is "2" the second, or machine 2?
    console.print("Which machine is this?")
    for i, m in enumerate(singles, 1):
        console.print(f"  {f'{i}) ' if numbered else '- '}{escape(m.name)}  (speed {m.speed:g}, {plural(m.cores, 'core')})")
    for name in entry_names(machines):
        if members := array_members(machines, name):
            first = members[0]
            console.print(f"  {escape(name)}[0] to {escape(members[-1].name)}: an array (speed {first.speed:g}, {plural(first.cores, 'core')} each); answer {escape(name)}[INDEX] for one of its tasks")
    while True:
        hint = f" [{default if numbered else singles[default - 1].name}]" if default else ""
        answer = _ask(console, f"{'Number or name' if numbered else 'Name'}{escape(hint)}: ").strip()
        if not answer and default:
            return singles[default - 1]
        if numbered and answer.isdigit() and 1 <= int(answer) <= len(singles):
            return singles[int(answer) - 1]
        if named := [m for m in machines if m.name.casefold() == answer.casefold()]:  # one at most: names apart only by case are refused
            return named[0]
        console.print(f"Please answer with a number from 1 to {len(singles)}, or a machine's name" if singles and numbered else "Please answer with a machine's name")


def _check_digest(project: Project, expected: str | None) -> bool:
    if expected is None:
        return False
    check_digest(project.digest, expected, "--expect-digest")
    return True


def check_digest(digest: str, expected: str, source: str) -> None:
    """Refuse a digest other than the one expected (as typed, or as recorded somewhere). One cut
    short or with words around it in a copy and paste is named as such: told that the digests
    differ, its user went looking for a file that differs between hosts."""
    typed = normalize_digest(expected)
    if len(typed) != len(digest) or not set(typed) <= set(string.hexdigits):
        raise UserError(
            f"{source} {expected} is not a digest: a digest is {len(digest)} hexadecimal digits in groups of four, "
            f"as `{_program()} digest` prints it (here {format_digest(digest)}); copy the whole of it, and nothing else"
        )
    if typed != digest:
        raise UserError(
            f"this host's digest is {format_digest(digest)} but {source} is {expected}; copy the same entry script, config.ini, "
            f"header.csv and machines.json to every host, and if they are the same, {_FIND_THE_PART.format(program=_program())}"
        )


_FIND_THE_PART = (
    "compare `{program} digest --parts` here and on a host that gives the other digest: the part whose fingerprints differ is "
    "the cause; if it is the pool (built otherwise there: from other files, or by another version of a library), "
    "`{program} digest --jobs` on both hosts, compared with diff, shows the jobs that differ"
)
"""How to find why two hosts' digests differ (see digest.digest_parts)."""


def _program() -> str:
    """The command line that started this program, up to its arguments: ``python study.py``,
    or ``./study`` for an executable, to name commands to run the same way."""
    words = sys.orig_argv[: len(sys.orig_argv) - len(sys.argv) + 1] if len(sys.argv) <= len(sys.orig_argv) else sys.argv[:1]
    return shlex.join(words)


def _confirm(console: Console, interactive: bool) -> None:
    if not interactive:
        raise UserError("nobody can confirm the digest here (stdin is not a terminal); pass --yes, or --expect-digest DIGEST to check it")
    console.print("Is this digest the same on every host?")
    answer = _ask(console, escape("Start? [y/N]: "), digest_shown=True).strip().lower()
    if answer not in ("y", "yes"):
        raise _Declined(digest_shown=True)


def _ask(console: Console, prompt: str, *, digest_shown: bool = False) -> str:
    """A line typed at the terminal. Ctrl-C or Ctrl-D there declines, as "n" does: nothing has
    started yet, so one sentence is all there is to say."""
    try:
        return console.input(prompt)
    except (KeyboardInterrupt, EOFError):
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # nothing is left to stop: a second Ctrl-C cuts no sentence short
        console.print()  # the prompt's line ends before the sentence that follows
        raise _Declined(digest_shown=digest_shown) from None


class _Declined(UserError):
    """Nothing started; after the digest was shown, how to find why two hosts' digests differ."""

    exit_status = exitcodes.INTERRUPTED

    def __init__(self, *, digest_shown: bool) -> None:
        super().__init__(f"not started; if the digest is not the same on every host, {_FIND_THE_PART.format(program=_program())}" if digest_shown else "not started")


def _display(console: Console, style: str) -> Display:
    if style == "live" or (style == "auto" and console.is_terminal):
        from .livedisplay import LiveDisplay

        return LiveDisplay(console)
    return PlainDisplay(console)


def _force_exit(machine_run: MachineRun) -> None:
    """A second Ctrl-C: stop everything now; what was committed stays, the rest runs again."""
    machine_run.kill()
    os._exit(exitcodes.INTERRUPTED)
