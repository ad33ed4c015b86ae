"""Helpers for the `run` tests (issues 3 and 4): a test entry, its environment, its outputs.

The test entry (:func:`write_kinds_entry`) reads its pool from ``pool.json`` beside it; each
job is ``[kind, i]`` or ``[kind, i, param]`` (a tuple job) or ``{"kind": ..., "i": ...}`` (a
dict job). The one job function dispatches on ``kind`` (see ``KINDS_ENTRY`` for the kinds)
and returns ``(kind, i, draw, note)`` for the header's result columns
``Kind, Index, Draw, Note``; ``draw`` is the job's first ``random_obj.random()``.

With ``JOBSPLIT_TEST_SIDE`` set, every job appends its id to that file (O_APPEND) when it
finishes successfully; with ``JOBSPLIT_TEST_STARTS`` set, every job appends its id there when
it starts.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

from conftest import entry_env, write_config_dir
from jobsplit.pool import identity_text, job_id

RESULT_COLUMNS = ("Kind", "Index", "Draw", "Note")
HEADER = ("Run Start Time", "Job Running Time", "Job Start Time", *RESULT_COLUMNS)
CSV_COLUMNS = (*HEADER, "Job ID", "Job Args", "Machine", "Digest", "Code")

CONFIG = """\
[jobsplit]
strategy = quota

[experiment]
max_scratch = 64MiB
label = plain value
steps = 5
"""

KINDS_ENTRY = r'''
"""A jobsplit entry written by the run tests: one job function, many behaviours."""
import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import jobsplit
from jobsplit.pool import job_id

HERE = Path(__file__).resolve().parent


class LockedError(Exception):
    """An exception that cannot be pickled: it holds a lock."""

    def __init__(self, message):
        super().__init__(message)
        self.lock = threading.Lock()


class EndlessRepr:
    """A cell with no text, whose repr() never ends (a lazy value that computes itself to show)."""

    def __repr__(self):
        time.sleep(600)
        return "EndlessRepr()"


def _append(variable, text):
    path = os.environ.get(variable)
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (text + "\n").encode())
        finally:
            os.close(fd)


def _stop_the_run():
    """Stop the run as JOBSPLIT_TEST_STOP says, then wait: "interrupt" (SIGINT to the run, as
    Ctrl-C), "scheduler" (SIGTERM to the run and this worker at once, as Slurm's requeue) or
    "workersfirst" (the same, reaching this worker's process group half a second before the run)."""
    how = os.environ["JOBSPLIT_TEST_STOP"]
    if how == "workersfirst":  # a scheduler's SIGTERM that reaches this worker's group half a second before the run
        code = f"import os, signal, time; os.killpg({os.getpgrp()}, signal.SIGTERM); time.sleep(0.5); os.kill({os.getppid()}, signal.SIGTERM)"
        subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
        time.sleep(60)
    os.kill(os.getppid(), signal.SIGINT if how == "interrupt" else signal.SIGTERM)
    if how == "scheduler":
        os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(60)


def job(*args, **kwargs):
    if args:  # a tuple job: (kind, i[, param]), random_obj, config; progress by keyword
        *fields, random_obj, config = args
        progress = kwargs.pop("progress")
        assert not kwargs, kwargs
        kind, i, *rest = fields
        param = rest[0] if rest else None
        me = tuple(fields)
        via = "args"
    else:  # a dict job: keyword arguments plus the three injected ones
        random_obj, config, progress = kwargs.pop("random_obj"), kwargs.pop("config"), kwargs.pop("progress")
        me = dict(kwargs)
        kind, i, param = kwargs.pop("kind"), kwargs.pop("i"), kwargs.pop("param", None)
        via = "kwargs:" + ",".join(sorted(me))
    my_id = job_id(me).hex()
    _append("JOBSPLIT_TEST_STARTS", my_id)
    draw = random_obj.random()
    note = via
    if kind == "ok":
        pass
    elif kind == "logs":  # a record through the logging module, as research code writes them (sent from the job thread)
        logging.getLogger("study").warning("job %s of %s", i, param)
    elif kind == "sleep":
        time.sleep(float(param))
    elif kind == "raise":
        raise ValueError(f"job {i} raised on purpose")
    elif kind == "exit3":
        os._exit(3)
    elif kind == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(10)
    elif kind == "segv":
        ctypes.string_at(0)
    elif kind == "sleepenv":  # sleeps JOBSPLIT_TEST_SLEEP seconds if set, else param
        time.sleep(float(os.environ.get("JOBSPLIT_TEST_SLEEP", param)))
    elif kind == "quickfirst":  # the first `param` jobs to start are quick, later ones sleep
        if len(Path(os.environ["JOBSPLIT_TEST_STARTS"]).read_text().split()) > int(param):
            time.sleep(float(os.environ.get("JOBSPLIT_TEST_SLEEP", 60)))
    elif kind == "stopafter":  # with JOBSPLIT_TEST_STOP set, the job started after the first `param` stops the run and waits
        if os.environ.get("JOBSPLIT_TEST_STOP") and len(Path(os.environ["JOBSPLIT_TEST_STARTS"]).read_text().split()) > int(param):
            _stop_the_run()
    elif kind == "termexit":  # ends itself on SIGTERM (its own handler raises SystemExit); stops the run if JOBSPLIT_TEST_STOP is set
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit("stopped by SIGTERM"))
        if os.environ.get("JOBSPLIT_TEST_STOP"):
            _stop_the_run()
        time.sleep(float(os.environ.get("JOBSPLIT_TEST_SLEEP", param)))
    elif kind == "checkpoint":  # on SIGTERM, saves a checkpoint for JOBSPLIT_TEST_SAVE seconds, notes it in the side file, then exits
        def save_and_exit(signum, frame):
            time.sleep(float(os.environ["JOBSPLIT_TEST_SAVE"]))
            _append("JOBSPLIT_TEST_SIDE", f"saved {my_id}")
            sys.exit("checkpoint saved")

        signal.signal(signal.SIGTERM, save_and_exit)
        if os.environ.get("JOBSPLIT_TEST_STOP"):
            _stop_the_run()
        time.sleep(param)
    elif kind == "termreturn":  # its own SIGTERM handler only sets a flag, and the job returns what it has so far; stops the run (Ctrl-C) if JOBSPLIT_TEST_STOP is set
        stopped = []
        signal.signal(signal.SIGTERM, lambda signum, frame: stopped.append(signum))
        if os.environ.get("JOBSPLIT_TEST_STOP"):
            os.kill(os.getppid(), signal.SIGINT)
        deadline = time.monotonic() + float(os.environ.get("JOBSPLIT_TEST_SLEEP", param))
        while not stopped and time.monotonic() < deadline:
            time.sleep(0.01)
        note = "partial" if stopped else "full"
        if os.environ.get("JOBSPLIT_TEST_AS_LIST"):  # a value that is not plain (its cells made apart)
            return [kind, i, draw, note]
    elif kind == "nodeathsig":  # as where PR_SET_PDEATHSIG does not exist: only the ppid polling is left
        ctypes.CDLL(None).prctl(1, 0, 0, 0, 0)  # PR_SET_PDEATHSIG, 0: no signal on the parent's death
        _append("JOBSPLIT_TEST_NODEATHSIG", my_id)  # done: the test may kill the parent
        time.sleep(float(param))
    elif kind == "hang":
        time.sleep(600)
    elif kind == "leavethread":  # leaves a thread (not a daemon) asleep for `param` seconds: its worker cannot exit before
        threading.Thread(target=time.sleep, args=(param,)).start()
    elif kind == "lock":
        return threading.Lock()
    elif kind == "lockcell":
        return (kind, i, draw, threading.Lock())
    elif kind == "lockexc":
        raise LockedError(f"job {i} raised an unpicklable exception")
    elif kind == "flaky":
        marker = HERE / f"flaky-{i}.marker"
        if not marker.exists():
            marker.write_text("failed once")
            raise RuntimeError(f"flaky job {i} fails on its first attempt")
    elif kind == "short":
        return (kind, i, draw)
    elif kind == "badkey":
        return {"Kind": kind, "Index": i, "Draw": draw, "Nope": 1}
    elif kind == "badcell":
        return (kind, i, draw, object())
    elif kind == "endlessrepr":
        return (kind, i, draw, EndlessRepr())
    elif kind == "dict":
        return {"Note": note, "Draw": draw, "Index": i, "Kind": kind}
    elif kind == "config":
        note = json.dumps([config.getfilesize("experiment", "max_scratch"), config.get("experiment", "label")])
    elif kind == "method":  # how this worker started: spawn re-imports the entry as __mp_main__
        note = sys.modules["__main__"].__name__
    elif kind == "nice":
        note = str(os.nice(0))
    elif kind == "progress":
        steps = int(param)
        for k in range(1, steps + 1):
            time.sleep(0.15)
            progress.report(k, base=steps + 1)
        time.sleep(0.15)
    else:
        raise SystemExit(f"unknown kind {kind!r}")
    _append("JOBSPLIT_TEST_SIDE", my_id)
    return (kind, i, draw, note)


def _job(spec):
    return tuple(spec) if isinstance(spec, list) else spec


pool = [_job(spec) for spec in json.loads((HERE / "pool.json").read_text())]

if __name__ == "__main__":
    jobsplit.main(job, pool)
'''


# --- writing a project ---------------------------------------------------------------------


def write_kinds_entry(root: Path, pool: Sequence[Any], *, machines: Any = None, config: str = CONFIG, header: Sequence[str] = HEADER) -> tuple[Path, Path]:
    """Write ``root/entry.py``, ``root/pool.json`` and ``root/config/``; returns (entry, config dir).

    ``machines=None`` writes one machine, ``solo`` with 2 cores; ``machines=False`` writes no
    machines.json (an existing one is removed).
    """
    root.mkdir(parents=True, exist_ok=True)
    entry = root / "entry.py"
    entry.write_text(KINDS_ENTRY, encoding="utf-8")
    (root / "pool.json").write_text(json.dumps(list(pool)), encoding="utf-8")
    if machines is False:
        (root / "config" / "machines.json").unlink(missing_ok=True)
        return entry, write_config_dir(root / "config", config=config, header=header, machines=None)
    config_dir = write_config_dir(root / "config", config=config, header=header, machines=machines if machines is not None else {"solo": [1.0, 2]})
    return entry, config_dir


def pool_spec(kind: str, count: int, param: Any = None, start: int = 0) -> list[list[Any]]:
    return [[kind, i] if param is None else [kind, i, param] for i in range(start, start + count)]


def spec_id(spec: Any) -> str:
    """The job id of one pool.json entry (as the entry turns it into a job)."""
    return job_id(tuple(spec) if isinstance(spec, list) else spec).hex()


def spec_args(spec: Any) -> str:
    return identity_text(tuple(spec) if isinstance(spec, list) else spec, 0)


def run_env(root: Path, **overrides: str | None) -> dict[str, str]:
    """The environment of an entry run: isolated host.ini (XDG_CONFIG_HOME) and notes of where
    shares ran (XDG_STATE_HOME: a module's fixture runs before any test's own state folder is
    set, and two such fixtures running one share at once in two test processes refuse each
    other), NO_COLOR, no TTY quirks."""
    xdg = root / "xdg"
    xdg.mkdir(parents=True, exist_ok=True)
    base: dict[str, str | None] = {"XDG_CONFIG_HOME": str(xdg), "XDG_STATE_HOME": str(root / "state"), "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}
    base.update(overrides)
    return entry_env(**base)


def write_host_ini(root: Path, text: str) -> Path:
    path = root / "xdg" / "jobsplit" / "host.ini"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def run_args(config_dir: Path, out: Path, *extra: str | os.PathLike[str], machine: str | None = "solo", yes: bool = True) -> list[str]:
    args: list[str] = ["run", "--config-dir", str(config_dir), "--out", str(out), "--console", "plain", "--nice", "0"]
    if machine is not None:
        args += ["--machine", machine]
    if yes:
        args.append("--yes")
    return args + [str(e) for e in extra]


def start_entry(entry: Path, args: Sequence[str], env: dict[str, str], **popen: Any) -> subprocess.Popen[str]:
    """Start an entry run in its own session (so its process group and session id are its pid)."""
    return subprocess.Popen(
        [sys.executable, str(entry), *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=popen.pop("stdout", subprocess.PIPE),
        stderr=popen.pop("stderr", subprocess.PIPE),
        text=True,
        encoding="utf-8",
        start_new_session=True,
        **popen,
    )


# --- reading outputs -----------------------------------------------------------------------


def read_results(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """(header, rows) of a results.csv; every line must be complete (ends with a newline)."""
    text = path.read_bytes().decode("utf-8")  # not read_text: it would turn a CR in a cell into a newline
    assert text.endswith("\n"), f"{path} ends with a torn line: {text[-200:]!r}"
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader)
    rows = [dict(zip(header, row, strict=True)) for row in reader]
    return header, rows


def connect_ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)


def journal_jobs(path: Path) -> dict[str, dict[str, Any]]:
    """job id -> the journal's ``jobs`` view row (read-only)."""
    db = connect_ro(path)
    try:
        cursor = db.execute("SELECT * FROM jobs ORDER BY seq")
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, row)) for row in cursor]
    finally:
        db.close()
    by_id = {row["job_id"]: row for row in rows}
    assert len(by_id) == len(rows), "job ids in the journal must be unique"
    return by_id


def journal_query(path: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    db = connect_ro(path)
    try:
        return list(db.execute(sql, params))
    finally:
        db.close()


def done_ids(path: Path) -> set[str]:
    return {row[0] for row in journal_query(path, "SELECT job_id FROM jobs WHERE state = 'done'")}


def done_so_far(path: Path) -> set[str]:
    """The done jobs of a journal that may not exist yet, or hold no plan yet (a run killed as it started)."""
    try:
        planned = bool(journal_query(path, "SELECT 1 FROM meta WHERE key = 'digest'"))
    except (sqlite3.Error, OSError):
        return set()
    return done_ids(path) if planned else set()


def runs_so_far(path: Path) -> int:
    """The runs a journal records, 0 while it does not exist or is being set up: a run recorded
    there has its handling of Ctrl-C and SIGTERM in place."""
    try:
        return int(journal_query(path, "SELECT COUNT(*) FROM runs")[0][0])
    except (sqlite3.Error, OSError):
        return 0


def rerun_bound(workers: int) -> int:
    """The most jobs one kill may cost for jobs longer than the runner's batch (one job a unit):
    each worker holds a running job and one queued behind it, and both may end before the runner
    hears of them when the machine is busy (the runner waits for a core); add one result per
    worker heard of but not yet committed (the recorder's ``max_delay``)."""
    return 3 * workers


def assert_kills_explain_reruns(ran: list[str], kills: list[tuple[int, int, set[str]]], workers: int, context: str) -> list[int]:
    """Check a trace of executions (``ran``, side-file order) against the kills that cut it:
    each kill is (trace length before its run, after the kill, the journal's done set then). No
    job recorded done runs again, each kill costs at most :func:`rerun_bound` re-runs, and every
    repeat in the trace is one of those. Returns the re-runs per kill."""
    reruns = []
    for k, (start, end, done) in enumerate(kills):
        later = set(ran[end:])
        assert not done & later, f"kill {k}: {len(done & later)} jobs recorded done ran again {context}"
        lost = set(ran[start:end]) - done  # finished in the killed run but not recorded: they run again
        reruns.append(len(lost))
        assert len(lost) <= rerun_bound(workers), f"kill {k} cost {len(lost)} re-runs {context}"
    assert len(ran) - len(set(ran)) == sum(reruns), f"jobs ran more often than the kills explain {context}"
    return reruns


def side_lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    text = path.read_text()
    assert text == "" or text.endswith("\n"), "side-file appends are whole lines"
    return text.splitlines()


# --- processes -----------------------------------------------------------------------------


def session_processes(sid: int) -> list[tuple[int, str, str]]:
    """Live (not zombie) processes of session ``sid``: (pid, state, cmdline)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as f:
                stat = f.read()
            fields = stat[stat.rindex(")") + 2 :].split()
            state, session = fields[0], int(fields[3])
            if session != sid or state in ("Z", "X"):
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        found.append((int(entry), state, cmdline))
    return found


def wait_no_processes(sid: int, within: float) -> list[tuple[int, str, str]]:
    """Poll until no live process of session ``sid`` remains; returns the survivors (if any)."""
    deadline = time.monotonic() + within
    while True:
        alive = session_processes(sid)
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.02)


def kill_session(sid: int) -> None:
    """Clean-up: SIGKILL whatever is left of a session this test started."""
    for pid, _, _ in session_processes(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def communicate(process: subprocess.Popen[str], timeout: float) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_session(process.pid)
        process.kill()
        out, err = process.communicate()
        raise AssertionError(f"the run did not end within {timeout} s\nstdout: {out}\nstderr: {err}") from None
    return process.returncode, out, err


def ids_of(specs: Iterable[Any]) -> set[str]:
    return {spec_id(s) for s in specs}


# --- in-process jobs (module level, so that workers can import them under spawn) -------------


def stepping_job(steps, pause, hold, random_obj, config, progress):
    """Report k/(steps+1) for k = 1..steps, pausing between reports, and after the first report
    while the file ``hold`` exists; return the step count."""
    for k in range(1, steps + 1):
        time.sleep(pause)
        progress.report(k, base=steps + 1)
        while k == 1 and os.path.exists(hold):
            time.sleep(0.01)
    time.sleep(pause)
    return ("stepping", steps, random_obj.random(), "")


# --- plans, computed in this process exactly as the entry computes them ----------------------


def _as_job(spec: Any) -> Any:
    return tuple(spec) if isinstance(spec, list) else spec


def share_order(pool: Sequence[Any], config_dir: Path, machine: str = "solo") -> list[Any]:
    """The pool.json specs of ``machine``'s share, in the order its run starts them."""
    from jobsplit.pool import JobPool
    from jobsplit.project import load_project

    project = load_project(JobPool([_as_job(s) for s in pool]), config_dir)
    return [pool[p] for p in project.plan.share_of(machine)]


def digest_of(pool: Sequence[Any], config_dir: Path) -> str:
    from jobsplit.pool import JobPool
    from jobsplit.project import load_project

    return load_project(JobPool([_as_job(s) for s in pool]), config_dir).digest


def project_first(root: Path, lead: Callable[[int], Sequence[Any]], rest: Sequence[Any], machine: str = "solo", **write: Any) -> tuple[Path, Path, list[Any]]:
    """Write a project whose share starts with the jobs ``lead(n)`` (for the first n that does).

    The plan is a seeded shuffle, so which job runs first depends on the whole pool; trying a
    few variants of the leading jobs (numbered by n) finds a pool where they come first.
    Returns (entry, config dir, pool).
    """
    for n in range(500):
        leading = [list(s) if isinstance(s, list) else s for s in lead(n)]
        pool = [*leading, *rest]
        entry, config_dir = write_kinds_entry(root, pool, **write)
        order = share_order(pool, config_dir, machine)
        if sorted(map(spec_id, order[: len(leading)])) == sorted(map(spec_id, leading)):
            return entry, config_dir, pool
    raise AssertionError("no pool variant puts the leading jobs first")


# --- issue 9 ("trust under real operators and real job code"): the hardening tests' entry -----

HARDENING_ENTRY = r'''
"""A jobsplit entry written by the hardening tests (issue 9).

``spec.json`` beside it says which pool to build:
  {"shape": "kinds", "jobs": [[kind, i], [kind, i, param], ...]}  jobs dispatched on kind;
      results (kind, i, draw, note) for the columns Kind, Index, Draw, Note;
  {"shape": "paths", "count": N, "result_size": R}   (i, "/data/experiment/xxx.../000000i.dat");
  {"shape": "sized", "count": N, "arg_size": A, "result_size": R}  (i, one shared A-character
      string); the last two return an R-character string for a one-column header.
Side files (each appended with O_APPEND, one line per event, when its variable is set):
JOBSPLIT_TEST_SIDE (job id, when a job ends well), JOBSPLIT_TEST_STARTS (job id, when it
starts), JOBSPLIT_TEST_PIDS (the worker's pid, when a job starts), JOBSPLIT_TEST_CHILDREN
(the pid of a child process a job started).
"""
import ctypes
import faulthandler
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import jobsplit
from jobsplit.pool import job_id

HERE = Path(__file__).resolve().parent
SPEC = json.loads((HERE / "spec.json").read_text())
SHAPE = SPEC["shape"]
LEAKED = []
"""What "leak" jobs keep, as research code keeps a growing cache: their worker's for good."""


def _append(variable, text):
    path = os.environ.get(variable)
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (text + "\n").encode())
        finally:
            os.close(fd)


def _tracing():
    return any(os.environ.get(v) for v in ("JOBSPLIT_TEST_SIDE", "JOBSPLIT_TEST_STARTS"))


def _child(detached=False):
    """``sleep 1000``, in the worker's process group, or (``detached``) in a session of its own."""
    child = subprocess.Popen(["sleep", "1000"], stdin=subprocess.DEVNULL, start_new_session=detached)
    _append("JOBSPLIT_TEST_CHILDREN", str(child.pid))
    return child


def _stdio(what):
    """One way a job's code writes to its standard streams; each line names its way."""
    if what == "subprocess":
        subprocess.run(["echo", "from-child"], stdout=sys.stdout, stderr=sys.stderr, check=True)
    elif what == "rawfd":
        os.write(sys.stdout.fileno(), b"raw-fd\n")
    elif what == "buffer":
        sys.stdout.buffer.write(b"via-buffer\n")
        sys.stdout.flush()
    elif what == "reconfigure":
        sys.stdout.reconfigure(line_buffering=True)
        print("after-reconfigure")
    elif what == "faulthandler":
        faulthandler.enable()
        print("after-faulthandler")
    elif what == "print":
        print("plain-print")
    elif what == "stderr":
        print("to-stderr", file=sys.stderr)
    else:
        raise SystemExit(f"unknown stdio way {what!r}")
    sys.stdout.flush()
    sys.stderr.flush()


def kinds_job(*args, progress=None):
    *fields, random_obj, config = args
    kind, i, *rest = fields
    param = rest[0] if rest else None
    my_id = job_id(tuple(fields)).hex()
    _append("JOBSPLIT_TEST_STARTS", my_id)
    _append("JOBSPLIT_TEST_PIDS", str(os.getpid()))
    draw = random_obj.random()
    note = ""
    if kind == "ok":
        pass
    elif kind == "sleep":
        time.sleep(float(param))
    elif kind == "together":  # waits (at most 60 s) until param jobs have started: that many run at once
        deadline = time.monotonic() + 60
        while len(Path(os.environ["JOBSPLIT_TEST_STARTS"]).read_text().split()) < int(param) and time.monotonic() < deadline:
            time.sleep(0.02)
    elif kind == "printgate":  # prints, waits while HERE/hold exists (at most 120 s), prints again
        print(f"before the gate {i}", flush=True)
        deadline = time.monotonic() + 120
        while (HERE / "hold").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        print(f"after the gate {i}", flush=True)
    elif kind == "sleepenv":  # sleeps JOBSPLIT_TEST_SLEEP seconds if set, else param
        time.sleep(float(os.environ.get("JOBSPLIT_TEST_SLEEP", param)))
    elif kind in ("gate", "daemongate"):  # sleeps param seconds, then waits while HERE/hold exists (at most 120 s)
        if kind == "daemongate":  # first forks a process into a session of its own, sharing the worker's open files
            if os.fork() == 0:
                os.setsid()
                _append("JOBSPLIT_TEST_CHILDREN", str(os.getpid()))
                time.sleep(120)
                os._exit(0)
        time.sleep(float(param))
        deadline = time.monotonic() + 120
        while (HERE / "hold").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
    elif kind == "raise":
        raise ValueError(f"job {i} raised on purpose")
    elif kind == "failenv":  # fails while JOBSPLIT_TEST_FAIL is set
        if os.environ.get("JOBSPLIT_TEST_FAIL"):
            raise RuntimeError(f"job {i} fails while JOBSPLIT_TEST_FAIL is set")
    elif kind == "surrogate":  # a file name read with os.fsdecode(b"\xffname")
        note = os.fsdecode(b"\xffname")
    elif kind == "raisesur":
        raise ValueError("bad \udcff")
    elif kind == "printsur":
        print("x\udcffy")
    elif kind == "readfile":  # param: a file name in HERE/data, perhaps one that is not UTF-8 (a lone surrogate)
        note = (HERE / "data" / param).read_text()
    elif kind == "stdio":
        _stdio(param)
        note = param
    elif kind == "lastwords":  # a line on each standard stream, then its worker dies as param says, faulthandler on
        faulthandler.enable()
        print(f"last words {i} on stdout", flush=True)
        print(f"last words {i} on stderr", file=sys.stderr, flush=True)
        if param == "exit":
            os._exit(3)
        elif param == "segv":
            ctypes.string_at(0)
        os.abort()
    elif kind == "short":
        return ("short", 1, 0.5)
    elif kind == "huge":
        return list(range(1_000_000))
    elif kind == "badcell":
        return (kind, i, draw, object())
    elif kind == "big":  # a result of about `param` bytes
        note = "n" * int(param)
    elif kind == "text":  # a result cell of exactly `param`
        note = param
    elif kind == "childhang":  # a child process, then a hang (for --timeout)
        _child()
        time.sleep(600)
    elif kind == "childleft":  # a child process left running by a job that returns
        _child()
    elif kind == "detachhang":  # a child in a session of its own, then a hang (for --timeout)
        _child(detached=True)
        time.sleep(600)
    elif kind == "detachdeaf":  # the same from a job deaf to SIGTERM: its worker is killed outright
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _child(detached=True)
        time.sleep(600)
    elif kind == "setconfig":  # changes the config its worker's jobs share
        config["experiment"]["steps"] = "99"
    elif kind == "getconfig":
        note = config["experiment"]["steps"]
    elif kind in ("forkexit", "forkraise"):  # forks a child that leaves as naive code does: sys.exit(param), or raising
        child = os.fork()
        if child == 0:
            if kind == "forkraise":
                raise ValueError("raised in a forked child")
            sys.exit(int(param))
        note = str(os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]))
    elif kind == "chdirgone":  # moves to a scratch folder, then deletes it, and returns there
        scratch = tempfile.mkdtemp()
        os.chdir(scratch)
        os.rmdir(scratch)
    elif kind == "getcwd":
        note = os.getcwd()
    elif kind == "setenv":  # sets a variable and changes PATH, for itself and the programs it runs
        os.environ["JOBSPLIT_TEST_LEAK"] = str(i)
        os.environ["PATH"] = "/nowhere"
        del os.environ["HOME"]
    elif kind == "alarmleft":  # arms a SIGALRM time limit of half a second and returns at once, leaving it set
        def too_long(signum, frame):
            raise TimeoutError("the alarm went off")

        signal.signal(signal.SIGALRM, too_long)
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    elif kind == "blocksignals":  # blocks SIGTERM and SIGALRM in its thread (a section kept from interruption) and never unblocks them
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM, signal.SIGALRM])
    elif kind == "stdoutswap":  # silences what it prints by swapping sys.stdout for a file, and never swaps it back
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        print("silenced")
    elif kind == "stdoutclose":  # closes its standard streams
        sys.stdout.close()
        sys.stderr.close()
    elif kind == "fdclose":  # closes descriptors 0, 1 and 2 themselves, not just the Python streams
        for fd in (0, 1, 2):
            os.close(fd)
    elif kind == "fdredirect":  # points descriptors 0, 1 and 2 at a file of its own (os.dup2, as code silencing a C library does), and never back
        sink = os.open(HERE / f"sink-{i}.txt", os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        for fd in (0, 1, 2):
            os.dup2(sink, fd)
        os.close(sink)
    elif kind == "fdfill":  # opens files and keeps them, as a cache that never closes its files does, until none can be opened
        import resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))  # a few, not the hard limit's million
        try:
            while True:
                LEAKED.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            pass
        print("every descriptor taken", flush=True)
        return (kind, i, draw, note)  # no side file: it could not be opened
    elif kind == "printmark":  # prints a line on each standard stream, and a program too
        print(f"out-mark-{i}")
        print(f"err-mark-{i}", file=sys.stderr)
        subprocess.run(["sh", "-c", f"echo sh-mark-{i}; cat >/dev/null; echo read-$?"], check=True)
    elif kind == "getenv":
        note = f"{os.environ.get('JOBSPLIT_TEST_LEAK', '-')} {os.environ['PATH'] != '/nowhere'} {'HOME' in os.environ}"
        note += " " + subprocess.run(["sh", "-c", 'echo "${JOBSPLIT_TEST_LEAK:--}"'], stdout=subprocess.PIPE, text=True, check=True).stdout.strip()
    elif kind == "readstdin":  # a program that reads its standard input to the end, as `cat` given no file
        note = str(len(subprocess.run(["cat"], stdout=subprocess.PIPE, check=True).stdout))
    elif kind == "fastleak":  # keeps `param` MiB in the worker for good, written to, at once, and nothing more
        kept = bytearray(param << 20)  # not bytearray(b"m" * size): its 20 MiB of bytes, freed, were kept by malloc at times, read as growth
        kept[::4096] = b"m" * len(range(0, param << 20, 4096))  # a byte in every page: all of it resident
        LEAKED.append(kept)
    elif kind == "leak":  # keeps `param` MiB in the worker for good, written to, then takes 0.15 s
        LEAKED.append(bytearray(b"m" * (param << 20)))
        if len(LEAKED) == 1:  # and the first in a worker leaves a thread (not a daemon) that a normal exit would wait for
            threading.Thread(target=time.sleep, args=(300,), name="left-by-the-job").start()
        time.sleep(0.15)
    elif kind == "fdleak":  # keeps `param` descriptors open in the worker for good, as a cache of open files never closed does
        LEAKED.extend(os.open(os.devnull, os.O_RDONLY) for _ in range(int(param)))
    elif kind == "fdleakhole":  # the same, each kept one opened while another was, which is then closed: its number stays free below them
        for _ in range(int(param)):
            other = os.open(os.devnull, os.O_RDONLY)
            LEAKED.append(os.open(os.devnull, os.O_RDONLY))
            os.close(other)
    elif kind == "loadonce":  # the first in a worker keeps `param` MiB for good (a library imported, a model loaded once)
        if not LEAKED:
            LEAKED.append(bytearray(b"m" * (param << 20)))
    elif kind == "hog":  # holds more and more memory until something stops it
        held = []
        while True:
            held.append(b"m" * (16 << 20))
    elif kind == "readtty":  # a program that asks the terminal itself for a password, as ssh does
        note = "opened" if subprocess.run(["sh", "-c", "printf 'password: ' > /dev/tty; read x < /dev/tty"], check=False).returncode == 0 else "no terminal"
    elif kind == "killgroup":  # a shell script whose exit trap signals its whole process group, the worker included
        note = str(subprocess.run(["sh", "-c", "trap 'kill 0' EXIT; sleep 30 & exit 0"], check=False).returncode)
    elif kind == "killgroupleft":  # leaves a shell script whose trap signals its whole process group when it is stopped
        script = subprocess.Popen(["sh", "-c", "trap 'kill 0' TERM; sleep 30 & echo trapped; wait"], stdout=subprocess.PIPE)
        note = script.stdout.readline().decode().strip()  # its trap is set
    elif kind == "detachcrash":  # a child in a session of its own, then the worker dies
        _child(detached=True)
        os._exit(9)
    else:
        raise SystemExit(f"unknown kind {kind!r}")
    _append("JOBSPLIT_TEST_SIDE", my_id)
    return (kind, i, draw, note)


if SHAPE == "kinds":
    job = kinds_job
    pool = [tuple(spec) for spec in SPEC["jobs"]]
else:
    RESULT = "r" * SPEC.get("result_size", 0)

    def job(i, text, random_obj, config, progress=None):
        if _tracing():
            my_id = job_id((i, text)).hex()
            _append("JOBSPLIT_TEST_STARTS", my_id)
            _append("JOBSPLIT_TEST_SIDE", my_id)
        return RESULT

    if SHAPE == "paths":  # the reported case: long file paths as arguments
        pool = [(i, "/data/experiment/" + "x" * 200 + f"/{i:08d}.dat") for i in range(SPEC["count"])]
    elif SHAPE == "sized":  # one shared string: the pool holds it once, whatever its length
        BIG = "a" * SPEC["arg_size"]
        pool = [(i, BIG) for i in range(SPEC["count"])]
    else:
        raise SystemExit(f"unknown shape {SHAPE!r}")

if __name__ == "__main__":
    jobsplit.main(job, pool)
'''

ONE_COLUMN_HEADER = ("Run Start Time", "Job Running Time", "Job Start Time", "Value")


def write_hardening_project(
    root: Path, spec: dict[str, Any], *, machines: Any = None, config: str = CONFIG, header: Sequence[str] | None = None
) -> tuple[Path, Path]:
    """Write ``root/entry.py`` (HARDENING_ENTRY), ``root/spec.json`` and ``root/config/``.

    The header is HEADER (Kind, Index, Draw, Note) for the "kinds" shape, else one column
    (Value). ``machines=None`` writes one machine, ``solo`` with 2 cores. Returns (entry, config dir).
    """
    root.mkdir(parents=True, exist_ok=True)
    entry = root / "entry.py"
    entry.write_text(HARDENING_ENTRY, encoding="utf-8")
    (root / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
    if header is None:
        header = HEADER if spec["shape"] == "kinds" else ONE_COLUMN_HEADER
    config_dir = write_config_dir(root / "config", config=config, header=header, machines=machines if machines is not None else {"solo": [1.0, 2]})
    return entry, config_dir


def kinds_spec(jobs: Sequence[Sequence[Any]]) -> dict[str, Any]:
    return {"shape": "kinds", "jobs": [list(j) for j in jobs]}


def tuple_id(fields: Sequence[Any]) -> str:
    """The job id of a job given as its fields (a tuple job)."""
    return job_id(tuple(fields)).hex()


def machine_log_text(machine_dir: Path, machine: str = "solo") -> str:
    """The machine's whole log (rotated segments first), decoded as UTF-8 (strictly)."""
    import gzip

    paths = sorted(machine_dir.glob(f"{machine}.log.*.gz"), key=lambda p: int(p.name.split(".")[-2])) + [machine_dir / f"{machine}.log.gz"]
    text = []
    for path in paths:
        if path.exists():
            with gzip.open(path, "rt", encoding="utf-8") as f:
                text.append(f.read())
    return "".join(text)


def results_ids(path: Path) -> list[str]:
    """The Job ID column of a results.csv, read as a stream (the file may be large)."""
    return [job for job, _ in results_cells(path, None)]


def results_cells(path: Path, column: str | None) -> list[tuple[str, int]]:
    """(Job ID, length of the cell in ``column``, or 0) per row of a results.csv, streamed."""
    csv.field_size_limit((1 << 31) - 1)  # cells of several megabytes
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        at_id = header.index("Job ID")
        at = header.index(column) if column is not None else None
        return [(row[at_id], len(row[at]) if at is not None else 0) for row in reader]


def journal_states(path: Path) -> dict[str, str]:
    """job id -> state, from the journal's ``jobs`` view (without the result lines)."""
    return dict(journal_query(path, "SELECT job_id, state FROM jobs"))


def pid_alive(pid: int, needle: str = "") -> bool:
    """Whether ``pid`` is a live (not zombie) process whose command line contains ``needle``."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            stat = f.read()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] not in ("Z", "X") and needle in cmdline


def start_command(command: Sequence[str | os.PathLike[str]], env: dict[str, str], **popen: Any) -> subprocess.Popen[str]:
    """Start any command in its own session (like :func:`start_entry`), output captured as text."""
    return subprocess.Popen(
        [str(c) for c in command],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=popen.pop("stdout", subprocess.PIPE),
        stderr=popen.pop("stderr", subprocess.PIPE),
        text=True,
        encoding="utf-8",
        errors="replace",
        start_new_session=True,
        **popen,
    )


def watched(command: Sequence[str | os.PathLike[str]], env: dict[str, str], timeout: float) -> tuple[int, str, str]:
    """Run a command in its own session under a watchdog; kill the session on a hang."""
    process = start_command(command, env)
    try:
        return communicate(process, timeout)
    finally:
        kill_session(process.pid)


def on_a_terminal(command: Sequence[str | os.PathLike[str]], env: dict[str, str], timeout: float) -> tuple[int, str]:
    """Run a command on a pseudo-terminal of its own, as its controlling terminal (as a person
    runs it), its output drained as it comes; (exit code, output). The session is killed after."""
    pid, terminal = pty.fork()
    if pid == 0:
        os.execve(str(command[0]), [str(part) for part in command], env)
    output = bytearray()

    def ended() -> tuple[int] | None:
        try:
            while ready := select.select([terminal], [], [], 0)[0]:
                output.extend(os.read(ready[0], 1 << 16))
        except OSError:
            pass  # the terminal's other side is closed: the command has ended
        done, status = os.waitpid(pid, os.WNOHANG)
        return (os.waitstatus_to_exitcode(status),) if done else None

    try:
        (code,) = wait_for(ended, timeout, "the command on the terminal to end", interval=0.05)
    finally:
        kill_session(pid)
        os.close(terminal)
    return code, output.decode("utf-8", "replace")


def jobsplit_script() -> Path:
    """The ``jobsplit`` console script of this virtual environment."""
    return Path(sys.executable).with_name("jobsplit")


class HardeningShare:
    """One machine (``solo`` unless ``machines`` says otherwise) of a HARDENING_ENTRY project.

    Runs go through :func:`watched` (own session, watchdog, the session killed afterwards);
    the side files are ``side.txt``, ``starts.txt``, ``pids.txt`` and ``children.txt`` in root.
    """

    def __init__(self, root: Path, spec: dict[str, Any], *, machine: str = "solo", **write: Any) -> None:
        self.root, self.spec, self.machine = root, spec, machine
        self.entry, self.config_dir = write_hardening_project(root, spec, **write)
        self.out = root / "out"
        self.side, self.starts, self.pids, self.children = (root / f"{name}.txt" for name in ("side", "starts", "pids", "children"))

    @property
    def machine_dir(self) -> Path:
        return self.out / self.machine

    @property
    def journal(self) -> Path:
        return self.machine_dir / "journal.sqlite"

    @property
    def results(self) -> Path:
        return self.machine_dir / "results.csv"

    def ids(self, kind: str | None = None) -> list[str]:
        """Job ids of the "kinds" pool (of one kind), in pool order."""
        return [tuple_id(j) for j in self.spec["jobs"] if kind is None or j[0] == kind]

    def env(self, **extra: str | None) -> dict[str, str]:
        side = {"JOBSPLIT_TEST_SIDE": str(self.side), "JOBSPLIT_TEST_STARTS": str(self.starts),
                "JOBSPLIT_TEST_PIDS": str(self.pids), "JOBSPLIT_TEST_CHILDREN": str(self.children)}  # fmt: skip
        return run_env(self.root, **{**side, **extra})

    def command(self, *flags: str | os.PathLike[str], machine: str | None = None, out: Path | None = None) -> list[str]:
        args = run_args(self.config_dir, out or self.out, *flags, machine=machine or self.machine)
        return [sys.executable, str(self.entry), *args]

    def run(self, *flags: str | os.PathLike[str], timeout: float = 60, env: dict[str, str] | None = None, machine: str | None = None) -> tuple[int, str, str]:
        return watched(self.command(*flags, machine=machine), env or self.env(), timeout)

    def start(self, *flags: str | os.PathLike[str], env: dict[str, str] | None = None, machine: str | None = None, **popen: Any) -> subprocess.Popen[str]:
        return start_command(self.command(*flags, machine=machine), env or self.env(), **popen)

    def log(self) -> str:
        return machine_log_text(self.machine_dir, self.machine)

    def remove_journal(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            self.journal.with_name(self.journal.name + suffix).unlink(missing_ok=True)


def assert_user_error(status: int, out: str, err: str, *words: str, exit_status: int = 2) -> str:
    """Exit status 2 (or ``exit_status``), exactly one `error:` line holding every word, and no
    traceback anywhere; returns the error line."""
    from conftest import error_lines

    assert status == exit_status, f"exit status {status}, not {exit_status}\nstderr: {err}"
    assert "Traceback" not in out + err, err
    lines = error_lines(err)
    assert len(lines) == 1, f"{len(lines)} error lines:\n{err}"
    for word in words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"
    return lines[0]


def assert_all_done_once(share: HardeningShare, ids: Sequence[str]) -> None:
    """Every job of ``ids`` (and no other) done in the journal and in results.csv exactly once."""
    assert sorted(results_ids(share.results)) == sorted(ids)
    states = journal_states(share.journal)
    assert states == dict.fromkeys(ids, "done"), {job: state for job, state in states.items() if state != "done"}


DROP_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-dac_override,-dac_read_search"]
"""A command's prefix: root held to files' permissions (as another user is), still owner of its own."""

LAB = 4250
"""The group of a project folder shared by colleagues (see Colleague): an id without an entry here."""


def shared_by_the_lab(share: HardeningShare) -> None:
    """Make the share's folder and its output root folders of the group LAB, setgid and
    group-writable, as a shared project folder is; and its side files (which jobs make 0644)
    the group's to write. Skips where the tests do not run as root (as Colleague does)."""
    if shutil.which("setpriv") is None or os.geteuid() != 0:
        pytest.skip("runs commands as two users of one group: needs root and setpriv")
    for folder in (share.root, share.out):
        folder.mkdir(exist_ok=True)
        os.chown(folder, 0, LAB)
        folder.chmod(0o2775)
    for side in (share.side, share.starts, share.pids, share.children):
        side.touch()
        side.chmod(0o666)


class Colleague:
    """A member of the group LAB who runs commands on a HardeningShare whose folder the group
    shares (see shared_by_the_lab), as the user ``uid`` (an id without an account here: each
    test its own, so that no two share a count of processes) under ``umask``. It reads root's
    files (the Python of the tests' venv, under /root) as +dac_read_search lets it, and writes
    only where its ids may. Skips where the tests do not run as root."""

    def __init__(self, share: HardeningShare, uid: int, *, umask: int = 0o002) -> None:
        if shutil.which("setpriv") is None or os.geteuid() != 0:
            pytest.skip("runs commands as two users of one group: needs root and setpriv")
        self.share, self.uid, self.umask = share, uid, umask
        state = share.root / f"state-{uid}"  # its own notes of where shares ran
        state.mkdir(exist_ok=True)
        os.chown(state, uid, LAB)
        self.env = share.env(XDG_STATE_HOME=str(state))

    def command(self, *command: str | os.PathLike[str]) -> list[str]:
        umasked = "import os, sys; os.umask(int(sys.argv[1], 8)); os.execv(sys.argv[2], sys.argv[2:])"
        ids = [f"--reuid={self.uid}", f"--regid={LAB}", f"--groups={LAB}", "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
        return ["setpriv", *ids, sys.executable, "-c", umasked, f"{self.umask:o}", *map(str, command)]

    def run(self, *flags: str | os.PathLike[str], timeout: float = 60, **env: str) -> tuple[int, str, str]:
        """The share's run, with ``flags`` (and ``env`` added to its environment)."""
        return watched(self.command(*self.share.command(*flags)), {**self.env, **env}, timeout)

    def tool(self, *args: str | os.PathLike[str], timeout: float = 60) -> tuple[int, str, str]:
        """``jobsplit ARGS``: status, the merge tools."""
        return watched(self.command(jobsplit_script(), *args), self.env, timeout)
