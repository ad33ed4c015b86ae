"""Issue 9, "Trust under real operators and real job code": what operators do around a run
(contract items 2, 8, 9, 10, 11 and 13): a second run of the same machine, privileges,
absurd worker counts, child processes of jobs, the code fingerprint, and console wording.

Every run is a separate interpreter in its own session under a watchdog; processes and
child processes the tests start are killed afterwards.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import entry_env, error_lines, write_config_dir
from jobsplit.children import oom_counter_files
from runhelpers import (
    HEADER,
    HardeningShare,
    assert_all_done_once,
    assert_user_error,
    communicate,
    done_ids,
    done_so_far,
    jobsplit_script,
    journal_jobs,
    journal_query,
    kill_session,
    kinds_spec,
    machine_log_text,
    on_a_terminal,
    pid_alive,
    read_results,
    results_ids,
    run_args,
    run_env,
    runs_so_far,
    side_lines,
    start_command,
    tuple_id,
    wait_for,
    wait_no_processes,
    watched,
)

WATCHDOG = 60


def with_flag(command: list[str], flag: str, value: str) -> list[str]:
    """The command with ``flag``'s value replaced (or the flag added)."""
    command = list(command)
    if flag in command:
        command[command.index(flag) + 1] = value
    else:
        command += [flag, value]
    return command


def gone(pid: int) -> bool:
    """Wait (at most 20 s, a watchdog) until ``pid`` is no live `sleep` process; True if so."""
    try:
        wait_for(lambda: not pid_alive(pid, "sleep"), 20, f"pid {pid} to end")
    except AssertionError:
        return False
    return True


def kill_pids(path) -> None:
    for line in side_lines(path):
        if pid_alive(int(line), "sleep"):
            os.kill(int(line), signal.SIGKILL)


# --- 2. one run per machine folder ------------------------------------------------------


@contextmanager
def held_run(share: HardeningShare, env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """Run A of a share of "gate" jobs on 2 workers, its jobs held (they wait while root/hold
    exists) from its first job's start to the end of the block; then it finishes (exit 0)."""
    hold = share.root / "hold"
    hold.write_text("")
    a = share.start("--workers", "2", env=env)
    try:
        wait_for(lambda: side_lines(share.starts), WATCHDOG, "run A's first job")
        yield a
        hold.unlink()
        status, _, err = communicate(a, WATCHDOG)
        assert status == 0, err
    finally:
        hold.unlink(missing_ok=True)
        kill_session(a.pid)


@pytest.mark.parametrize("lock_file", ["share lock", "run.lock", "deleted"])
def test_a_second_run_of_the_same_machine_is_refused_while_the_first_runs(tmp_path, lock_file):
    """By the share's lock in the user's state folder; without it (another state folder, or one
    without locks), by the folder's run.lock; and when run.lock was deleted too while the first
    run went on (a clean-up of "stale" lock files), the second run's lock is on a new file, and
    only the journal tells."""
    share = HardeningShare(tmp_path, kinds_spec([["gate", i, 0.2] for i in range(40)]))
    env = share.env()
    with held_run(share, env) as a:
        time.sleep(0.3)
        if lock_file == "deleted":
            (share.machine_dir / "run.lock").unlink()
        b_env = env if lock_file == "share lock" else {**env, "XDG_STATE_HOME": str(tmp_path / "another-state")}
        status, out, err = watched(share.command("--workers", "2"), b_env, 30)
        assert a.poll() is None, "run A ended before run B"
        line = assert_user_error(status, out, err)
        assert re.search(rf"(?<!\d){a.pid}(?!\d)", line), f"A's pid {a.pid} not in {line!r}"
        assert socket.gethostname() in line, line
        assert f"{share.machine_dir} is in use by another run of this machine" in line and "this run would be in" not in line, line  # one folder: named once

        tool_env = run_env(tmp_path)
        for tool in (["status", share.out, "--json"], ["merge-results", share.out, "-o", tmp_path / "merged.csv", "--allow-missing"]):
            _, tool_out, tool_err = watched([jobsplit_script(), *tool], tool_env, 30)
            locked = [line for line in error_lines(tool_err) if "lock" in line.lower()]
            assert not locked, f"jobsplit {tool[0]}: {locked}"
        assert a.poll() is None, "run A ended before the tools returned"
    assert_all_done_once(share, share.ids())
    assert sorted(side_lines(share.starts)) == sorted(share.ids()), "a job ran twice"


def test_the_same_machine_run_again_into_another_folder_is_refused_while_the_first_runs(tmp_path):
    """The output folder is ``./jobsplit-out`` by default, relative: the same command from another
    folder (a second terminal) while the first run goes on started the share over there, and
    every job ran twice; no word was said until jobs were done in the first. It is refused,
    naming the folder and the run that holds it."""
    share = HardeningShare(tmp_path, kinds_spec([["gate", i, 0.2] for i in range(8)]))
    env = share.env()
    with held_run(share, env) as a:
        status, out, err = watched(share.command("--workers", "2", out=tmp_path / "elsewhere"), env, 30)
        line = assert_user_error(status, out, err)
        assert f"{share.machine_dir} is in use by another run of this machine (pid {a.pid} on {socket.gethostname()}" in line, line
        assert f"this run would be in {tmp_path / 'elsewhere' / share.machine}" in line, line
        assert not (tmp_path / "elsewhere").exists()
    assert sorted(side_lines(share.starts)) == sorted(share.ids()), "a job ran twice"


ROUNDS = int(os.environ.get("JOBSPLIT_TOGETHER_ROUNDS", "12"))


def test_two_runs_of_one_machine_started_together_into_two_folders_run_the_share_once(tmp_path):
    """Started at the same moment (two scripts, two terminals), each run looked for the other
    before either held its folder's lock: both ran every job of the share, in 2 of 15 trials for
    the red team. One share lock per host now: one runs, the other is refused (told the folder in
    use, or where the share's jobs are done if the first was quicker), in every round. A race:
    the code before the share lock failed this test in 2 of 3 tries of 12 rounds here (always
    within 30); test_run_cli's run held at its prompt shows the same gap every time."""
    share = HardeningShare(tmp_path, kinds_spec([["sleep", i, 0.05] for i in range(8)]))
    for round_ in range(ROUNDS):
        env = share.env(XDG_STATE_HOME=str(tmp_path / f"round{round_}" / "state"))  # each round as a new host: no earlier round's folders noted
        folders = [tmp_path / f"round{round_}" / side for side in "ab"]
        runs = [start_command(share.command("--workers", "2", out=folder), env) for folder in folders]
        ended = [communicate(run, 60) for run in runs]
        assert sorted(status for status, _, _ in ended) == [0, 2], ended
        status, out, err = next(e for e in ended if e[0] == 2)
        line = assert_user_error(status, out, err)
        assert "is in use by another run of this machine" in line or "of this share are done in" in line, line
        ran = [folder for folder, (status, _, _) in zip(folders, ended) if status == 0]
        assert len(results_ids(ran[0] / share.machine / "results.csv")) == 8
        assert sorted(side_lines(share.starts)) == sorted(share.ids()), "a job ran twice"
        share.starts.unlink()


@pytest.mark.parametrize("age", [5, 120, -3 * 3600], ids=["live", "stale", "a clock 3 h ahead"])
def test_a_run_another_host_writes_into_a_shared_folder_is_refused_by_its_progress(tmp_path, age):
    """A machine folder on a shared disk: a run on another host holds run.lock, but once the file
    is deleted (or where the disk's locks do not reach: NFS mounted ``nolock``) a second host ran
    the same share into the same journal (26 done attempts for 16 jobs), though that run's
    progress.json, written seconds before, said it was live (status and merge-results read it
    so). A live one is refused naming the host; a stale one (a dead run) is not."""
    from jobsplit.snapshot import read_snapshot, write_snapshot

    share = HardeningShare(tmp_path, kinds_spec([["ok", i] for i in range(6)]))
    status, _, err = share.run()
    assert status == 0, err
    mine = read_snapshot(share.machine_dir)
    now = time.time()
    write_snapshot(share.machine_dir, dataclasses.replace(mine, host="node17", pid=4242, state="running", updated=now - age, started=now - 600))
    status, out, err = share.run()
    if age > 60:
        assert status == 0, err
        return
    line = assert_user_error(status, out, err)
    assert "in use by another run of this machine (pid 4242 on node17" in line and "progress.json was written" in line, line
    if age < 0:  # dead or alive, its progress would look fresh for 3 h: said, with what to do (it said it went stale within 60 s)
        assert "s ahead of this host's clock (that host's clock is ahead)" in line and f"If that run is dead, delete {share.machine_dir / 'progress.json'}" in line, line
        return
    # Refused before the journal is opened here: one that looks damaged from here (a WAL the other
    # host is writing) was moved into a backup folder, under the live run.
    share.journal.write_bytes(b"not a database, as seen from here" * 100)
    status, out, err = share.run()
    assert "progress.json was written" in assert_user_error(status, out, err)
    assert not list(share.machine_dir.glob("backup-*")) and share.journal.read_bytes().startswith(b"not a database")


def test_the_lock_dies_with_the_killed_run_not_with_what_its_jobs_left_running(tmp_path):
    """Forked processes share their parent's open files: were the lock an ``flock``, a process
    forked by a job into a session of its own would still hold it after the run was SIGKILLed,
    and every restart would be refused in the name of a dead run. Killed with its workers at
    once (``pkill -9 -f`` does that), the run leaves nobody to stop such processes."""
    share = HardeningShare(tmp_path, kinds_spec([["daemongate", i, 0.2] for i in range(4)]))
    hold = tmp_path / "hold"
    hold.write_text("")
    a = share.start("--workers", "2", "--start-method", "fork", env=share.env())
    try:
        wait_for(lambda: len(side_lines(share.children)) == 2, WATCHDOG, "run A's jobs to fork")
        workers = set(map(int, side_lines(share.pids)))
        # Stopped first, so that none acts on another's death (a runner stops a dead worker's
        # orphans; a worker whose parent died kills its job's programs); then the workers die
        # before the run. Killed after the run, a stopped worker was continued by the kernel
        # (its process group orphaned with a stopped member: SIGHUP and SIGCONT) and, seeing its
        # parent gone, killed the job's program now and then before its own SIGKILL came.
        for pid in (*workers, a.pid):
            os.kill(pid, signal.SIGSTOP)
        for pid in (*workers, a.pid):  # the forked processes stay
            os.kill(pid, signal.SIGKILL)
        a.wait(WATCHDOG)
        assert wait_no_processes(a.pid, 10) == []
        children = side_lines(share.children)
        assert all(pid_alive(int(pid)) for pid in children), f"children {[(pid, pid_alive(int(pid))) for pid in children]}; workers {sorted(workers)}"
        hold.unlink()
        status, _, err = share.run("--workers", "2", "--start-method", "fork", env=share.env())
        assert status == 0, err
    finally:
        hold.unlink(missing_ok=True)
        kill_session(a.pid)
        for pid in side_lines(share.children):
            if pid_alive(int(pid), str(share.entry)):  # never a process that reused the pid of one gone
                os.kill(int(pid), signal.SIGKILL)
    assert_all_done_once(share, share.ids())


# --- 8. a negative --nice without the privilege -------------------------------------------

PROBE_NICE = """
import os
try:
    os.nice(-5)
except PermissionError:
    print("EPERM")
else:
    print("lowered")
"""
NO_SYS_NICE = ["setpriv", "--bounding-set=-sys_nice", "--inh-caps=-sys_nice"]


def test_a_negative_nice_without_privilege_is_one_clear_error(tmp_path):
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is not installed")
    probe = subprocess.run([*NO_SYS_NICE, sys.executable, "-c", PROBE_NICE], capture_output=True, text=True, check=False)
    if probe.stdout.strip() != "EPERM":
        pytest.skip(f"cannot take the right to lower niceness here (setpriv ... os.nice(-5) gave {probe.stdout.strip() or probe.stderr.strip()!r})")
    share = HardeningShare(tmp_path, kinds_spec([["ok", i] for i in range(4)]))
    command = with_flag(share.command("--workers", "2"), "--nice", "-5")
    status, out, err = watched([*NO_SYS_NICE, *command], share.env(), 30)
    assert_user_error(status, out, err, "--nice")
    assert len(err.splitlines()) < 5, err


# --- 9. worker count ----------------------------------------------------------------------


def test_more_workers_than_jobs_starts_one_per_job_and_warns(tmp_path):
    share = HardeningShare(tmp_path, kinds_spec([["ok", i] for i in range(5)]))
    status, _, err = share.run("--workers", "10000", timeout=120)
    assert status == 0, err
    assert_all_done_once(share, share.ids())
    assert len(set(side_lines(share.pids))) <= 5
    started = re.findall(r"run 1 started: .*?(\d+) workers", share.log())
    assert started and int(started[0]) <= 5, started
    cores = len(os.sched_getaffinity(0))
    warnings = [line for line in err.splitlines() if "10000" in line and not line.startswith("error:")]
    assert warnings, f"no warning that 10000 workers is more than 4 x {cores} cores:\n{err}"
    assert not error_lines(err), err


def test_sigterm_while_hundreds_of_workers_start_stops_cleanly(tmp_path):
    """The SIGTERM comes once the run has begun (its row in the journal), as its workers start:
    sent after a second, on a busy host it came while Python still imported jobsplit, whose
    default action ended the program (exit -15)."""
    share = HardeningShare(tmp_path, kinds_spec([["ok", i] for i in range(2000)]))
    process = share.start("--workers", "300", "--start-method", "spawn")
    try:
        wait_for(lambda: runs_so_far(share.journal) == 1, WATCHDOG, "the run to begin")
        os.kill(process.pid, signal.SIGTERM)
        status, _, err = communicate(process, WATCHDOG)
        assert status == 130, err
        assert wait_no_processes(process.pid, 10) == []
    finally:
        kill_session(process.pid)
    status, _, err = share.run("--workers", "2", "--start-method", "spawn", timeout=120)
    assert status == 0, err
    assert_all_done_once(share, share.ids())


def with_open_files_limit(soft: int, hard: int, command: list[str]) -> list[str]:
    """``command``, run with that limit of open files (``ulimit -Sn soft -Hn hard``)."""
    limited = "import os, resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), int(sys.argv[2]))); os.execv(sys.argv[3], sys.argv[3:])"
    return [sys.executable, "-c", limited, str(soft), str(hard), *command]


def test_workers_get_the_open_files_they_need_up_to_the_hard_limit(tmp_path):
    """The runner holds a few descriptors per worker, and each worker inherits those of the
    workers before it: at a soft limit of 1,024 (the usual default) a 256-core host ran out of
    them as its workers started (a traceback, the run stopped). The soft limit is raised as far
    as the hard limit allows; below what the workers need, one sentence says how many fit."""
    share = HardeningShare(tmp_path, kinds_spec([["together", i, 40] for i in range(40)]))
    status, _, err = watched(with_open_files_limit(64, 1024, share.command("--workers", "40")), share.env(), 120)
    assert status == 0, err
    assert_all_done_once(share, share.ids())
    assert len(set(side_lines(share.pids))) == 40  # 40 workers at once: each job waited for all the others to start

    fresh = HardeningShare(tmp_path / "refused", kinds_spec([["sleep", i, 0.5] for i in range(40)]))
    status, out, err = watched(with_open_files_limit(128, 128, fresh.command("--workers", "40")), fresh.env(), 60)
    assert_user_error(status, out, err, "40 workers need about 272 open files, but this host allows a process at most 128", "pass --workers 16 or fewer")
    assert side_lines(fresh.starts) == []  # no job started
    status, _, err = watched(with_open_files_limit(128, 128, fresh.command("--workers", "16")), fresh.env(), 120)
    assert status == 0, err  # what it said fits
    assert_all_done_once(fresh, fresh.ids())


def test_a_hard_limit_of_open_files_too_low_for_one_worker_names_the_limit_to_raise_to(tmp_path):
    """A run reserved 64 descriptors besides 6 a worker, so a hard limit of 69 or less was refused
    even with --workers 1, with advice that could not work ("pass --workers 1 or fewer"), though
    one worker ran at a limit of 32. The reserve is now measured (see limits.RESERVE): one worker
    runs at 40, and below what one worker needs the sentence
    names only the limit to raise to."""
    share = HardeningShare(tmp_path, kinds_spec([["sleep", i, 0.1] for i in range(4)]))
    status, out, err = watched(with_open_files_limit(32, 32, share.command("--workers", "1")), share.env(), 60)
    line = assert_user_error(status, out, err, "at most 32", "raise the hard limit to at least 38")
    assert "--workers" not in line
    assert side_lines(share.starts) == []  # no job started
    status, _, err = watched(with_open_files_limit(40, 40, share.command("--workers", "1")), share.env(), 60)
    assert status == 0, err
    assert_all_done_once(share, share.ids())


THREADS_USER, FORK_USER = 4245, 4246
"""User ids without an account or processes here, one a test: a user's count of processes is
the test's own, even with tests running at once (the process limit counts every process of the
user: sharing one, a test's fork failed for the other's processes)."""


def as_user_with_process_limit(user: int, limit: int, command: list[str]) -> list[str]:
    """``command`` as ``user``, with at most ``limit`` processes and threads (``ulimit -u``,
    which root is never held to); it may read root's files (the Python of the test's venv)."""
    if shutil.which("setpriv") is None or os.geteuid() != 0:
        pytest.skip("runs a command as another user: needs root and setpriv")
    limited = "import os, resource, sys; resource.setrlimit(resource.RLIMIT_NPROC, (int(sys.argv[1]),) * 2); os.execv(sys.argv[2], sys.argv[2:])"
    ids = [f"--reuid={user}", f"--regid={user}", "--clear-groups", "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
    return ["setpriv", *ids, sys.executable, "-c", limited, str(limit), *command]


def owned_by(share: HardeningShare, user: int) -> dict[str, str]:
    """The share's environment, its folder (output, state, side files) made ``user``'s."""
    env = share.env()
    for path in [share.root, *share.root.rglob("*")]:
        os.chown(path, user, user)
    return env


def test_a_worker_denied_its_threads_by_the_process_limit_is_said_so(tmp_path):
    """A user's process limit (``ulimit -u``) counts threads: a worker allowed its process but
    not its threads died at once with a RuntimeError ("can't start new thread") in the log, and
    after three the run said they "exited as they started", blaming the entry's top-level code,
    pointing to output "above" that was not there and suggesting --start-method fork, which was in
    use. Now one sentence names the limit; nothing is recorded but the stopped run, which resumes."""
    share = HardeningShare(tmp_path, kinds_spec([["ok", i] for i in range(4)]))
    env = owned_by(share, THREADS_USER)
    status, out, err = watched(as_user_with_process_limit(THREADS_USER, 2, share.command("--workers", "1")), env, WATCHDOG)  # the run, and its worker without threads
    line = assert_user_error(status, out, err, "could not start their threads", "process limit is reached (`ulimit -u`", "fewer --workers", "run the same command again")
    assert "top-level" not in line and "--start-method" not in line
    assert journal_query(share.journal, "SELECT state, COUNT(*) FROM jobs GROUP BY state") == [("pending", 4)]
    assert journal_query(share.journal, "SELECT status FROM runs") == [("stopped",)]
    status, _, err = watched(as_user_with_process_limit(THREADS_USER, 50, share.command("--workers", "1")), env, WATCHDOG)
    assert status == 0, err
    assert_all_done_once(share, share.ids())


def test_a_worker_the_process_limit_keeps_from_starting_midway_stops_the_run_keeping_what_is_done(tmp_path):
    """Once the user's processes reach its limit (``ulimit -u``), the fork of a worker fails with
    EAGAIN: a BlockingIOError traceback and exit status 1 (which says jobs failed). Here the
    worker is replaced midway through the run (it was killed): one sentence, exit status 2, the
    jobs done before recorded, the job it ran back to pending, and the same command resumes."""
    share = HardeningShare(tmp_path, kinds_spec([["sleep", i, 0.3] for i in range(8)]))
    env = owned_by(share, FORK_USER)
    limit = 8  # the run and its worker take 5: the runner, the worker and its three threads
    process = start_command(as_user_with_process_limit(FORK_USER, limit, share.command("--workers", "1", "--retries", "1")), env)
    others: list[subprocess.Popen[bytes]] = []
    try:
        wait_for(lambda: len(side_lines(share.side)) >= 2, 30, "two jobs done")
        others += [subprocess.Popen(["sleep", "60"], user=FORK_USER, group=FORK_USER, extra_groups=[]) for _ in range(limit)]  # the user's other programs
        os.kill(int(side_lines(share.pids)[-1]), signal.SIGKILL)
        status, out, err = communicate(process, WATCHDOG)
    finally:
        for other in others:
            other.kill()
            other.wait()
        kill_session(process.pid)
    assert_user_error(status, out, err, "cannot start a worker process: this user's process limit is reached (`ulimit -u`", "what is done is recorded", "fewer --workers")
    assert journal_query(share.journal, "SELECT status FROM runs") == [("stopped",)]
    done = done_ids(share.journal)
    assert len(done) >= 2 and done <= set(side_lines(share.side)), done
    assert sorted(results_ids(share.results)) == sorted(done)
    crashed = [row for row in journal_query(share.journal, "SELECT outcome, state FROM jobs") if row[0] == "crashed"]
    assert crashed in ([], [("crashed", "pending")]), crashed  # the job the worker ran as it was killed (if any) runs again
    status, _, err = watched(as_user_with_process_limit(FORK_USER, 50, share.command("--workers", "1", "--retries", "1")), env, WATCHDOG)
    assert status == 0, err
    assert_all_done_once(share, share.ids())


def run_entry(tmp_path: Path, text: str, columns: tuple[str, ...], **env: str) -> tuple[list[dict[str, str]], str]:
    """Run ``text`` as the entry, on one worker, to its end (exit 0); its rows and its log."""
    entry = tmp_path / "entry.py"
    entry.write_text(text, encoding="utf-8")
    config_dir = write_config_dir(tmp_path / "config", header=("Run Start Time", "Job Running Time", "Job Start Time", *columns), machines={"solo": [1.0, 1]})
    out = tmp_path / "out"
    status, _, err = watched([sys.executable, entry, *run_args(config_dir, out, "--workers", "1")], {**run_env(tmp_path), **env}, WATCHDOG)
    assert status == 0, err
    _, rows = read_results(out / "solo" / "results.csv")
    return rows, machine_log_text(out / "solo")


PATHS_ENTRY = """
from pathlib import Path
import jobsplit

def job(path, random_obj, config, progress):
    return type(path).__name__, path.read_text()

if __name__ == "__main__":
    jobsplit.main(job, sorted((Path(__file__).parent / "data").glob("*.csv")))
"""


def test_a_pool_of_paths_runs_each_job_with_its_path(tmp_path):
    """The pool straight from ``Path.glob``: each job gets its ``Path`` (not a text) and reads
    its file; its Job Args cell is the path's text."""
    (tmp_path / "data").mkdir()
    for name in ("a", "b", "c"):
        (tmp_path / "data" / f"{name}.csv").write_text(f"rows of {name}")
    rows, _ = run_entry(tmp_path, PATHS_ENTRY, ("Kind", "Text"))
    assert sorted((r["Kind"], r["Text"], json.loads(r["Job Args"])) for r in rows) == [
        ("PosixPath", f"rows of {name}", [str(tmp_path / "data" / f"{name}.csv")]) for name in ("a", "b", "c")
    ]


def kinds_in_order(rows: list[dict[str, str]]) -> list[str]:
    """The first argument of each job, in the order the jobs started."""
    return [json.loads(r["Job Args"])[0] for r in sorted(rows, key=lambda r: r["Job Start Time"])]


# --- 10. child processes die with their job -----------------------------------------------


def run_keeping_children(share: HardeningShare, *flags: str) -> tuple[int, str, str]:
    """Run to the end without killing what is left of its session (the children under test);
    the caller kills them."""
    process = share.start(*flags)
    try:
        return communicate(process, WATCHDOG)
    except AssertionError:
        kill_session(process.pid)
        raise


def test_the_child_process_of_a_timed_out_job_is_stopped(tmp_path):
    share = HardeningShare(tmp_path, kinds_spec([["childhang", 0], ["ok", 1], ["ok", 2]]))
    try:
        status, _, err = run_keeping_children(share, "--workers", "1", "--timeout", "1")
        assert status == 1, err
        assert journal_jobs(share.journal)[tuple_id(["childhang", 0])]["outcome"] == "timeout"
        (child,) = map(int, side_lines(share.children))
        assert gone(child), f"the job's child {child} outlived its timed-out job"
    finally:
        kill_pids(share.children)


def test_a_child_process_left_by_a_finished_job_is_stopped_with_a_warning(tmp_path):
    share = HardeningShare(tmp_path, kinds_spec([["childleft", 0], ["ok", 1], ["ok", 2]]))
    try:
        status, _, err = run_keeping_children(share, "--workers", "1")
        assert status == 0, err
        assert_all_done_once(share, share.ids())
        (child,) = map(int, side_lines(share.children))
        warned = [line for line in share.log().splitlines() if re.search(rf"(?<!\d){child}(?!\d)", line) and "WARNING" in line]
        assert warned, f"no warning in the log about the child {child}"
        assert gone(child), f"the job's child {child} outlived its job"
    finally:
        kill_pids(share.children)


@pytest.mark.parametrize("kind, outcome", [("detachhang", "timeout"), ("detachdeaf", "timeout"), ("detachcrash", "crashed")])
def test_a_program_in_a_session_of_its_own_goes_with_its_failed_job(tmp_path, kind, outcome):
    """``start_new_session=True`` takes a program out of its worker's process group, beyond the
    signal that stops the group. A worker stopped for a timeout signals it itself; one that is
    killed outright (deaf to SIGTERM) or dies leaves it to the runner, a subreaper that inherits
    it and kills it, naming it in the log."""
    share = HardeningShare(tmp_path, kinds_spec([[kind, 0], ["ok", 1], ["ok", 2]]))
    try:
        status, _, err = run_keeping_children(share, "--workers", "1", "--timeout", "1")
        assert status == 1, err
        assert journal_jobs(share.journal)[tuple_id([kind, 0])]["outcome"] == outcome
        (child,) = map(int, side_lines(share.children))
        assert gone(child), f"the job's detached child {child} outlived its job"
        if kind != "detachhang":  # the runner's doing: named in the log
            # The job crashes as soon as Popen returns, which may be before the kernel has set the
            # program's arguments (exec is not over): its name is all there is to read then.
            assert re.search(rf"WARNING killed 1 program .*pid {child} \(sleep( 1000)?\)", share.log()), share.log()
        assert {job for job, row in journal_jobs(share.journal).items() if row["state"] == "done"} == set(share.ids("ok"))
    finally:
        kill_pids(share.children)


def test_a_script_that_signals_its_whole_process_group_fails_its_job_not_the_run(tmp_path):
    """``trap 'kill 0' EXIT``, a common way for a shell script to take its background programs
    along, signals the script's whole process group: run from a job, the worker's too. The
    worker died of it, and the run stopped as for a scheduler's SIGTERM ("Interrupted"), with
    the job pending, to stop again on it at every resume. Now that job fails, saying what
    happened and what to do, and the same worker runs the jobs after it. Such a signal between
    two jobs (the trap of a program the job left, as it is stopped) changes nothing."""
    share = HardeningShare(tmp_path, kinds_spec([["killgroup", 0], ["ok", 1], ["killgroupleft", 2], ["ok", 3]]))
    status, _, err = share.run("--workers", "1")
    assert status == 1, err
    assert "Interrupted" not in err, err
    jobs = journal_jobs(share.journal)
    failed = jobs[tuple_id(["killgroup", 0])]
    assert (failed["outcome"], failed["state"]) == ("error", "failed"), failed
    assert "got a SIGTERM that jobsplit did not send" in failed["error"] and "start_new_session=True" in failed["error"], failed
    assert "in kinds_job" in failed["error"] and "_on_terminate" not in failed["error"], failed  # where the job was, not the handler
    assert {job for job, row in jobs.items() if row["state"] == "done"} == {tuple_id(j) for j in (["ok", 1], ["killgroupleft", 2], ["ok", 3])}
    assert len(set(side_lines(share.pids))) == 1, "the worker was replaced"
    assert "the job left 1 child process running" in share.log()  # the script, stopped with its trap's signal


def test_a_forked_child_that_leaves_by_sys_exit_never_acts_as_the_worker(tmp_path):
    """``os.fork()`` then ``sys.exit()`` in the child (not ``os._exit``): SystemExit unwinds the
    child into the worker's code, where it once carried on as a second worker on the same pipes,
    recording jobs it never ran and hanging the run. It ends there, with the status it asked for."""
    jobs = [["forkexit", 0, 0], ["forkexit", 1, 3], ["forkraise", 2], ["ok", 3], ["forkexit", 4, 0]]
    share = HardeningShare(tmp_path, kinds_spec(jobs))
    status, _, err = share.run("--workers", "1")
    assert status == 0, err
    assert_all_done_once(share, share.ids())
    _, rows = read_results(share.results)
    assert {(r["Kind"], r["Index"], r["Note"]) for r in rows if r["Kind"] != "ok"} == {
        ("forkexit", "0", "0"), ("forkexit", "1", "3"), ("forkraise", "2", "1"), ("forkexit", "4", "0")
    }
    assert "ValueError: raised in a forked child" in share.log()  # its traceback, as an uncaught one


def test_programs_reading_the_terminal_get_nothing_rather_than_wait_for_ever(tmp_path):
    """``cat`` given no file reads its standard input; ssh asking for a password opens /dev/tty.
    Run from a terminal, neither may wait on it: a worker's process group is in the background
    there, so the terminal would stop the reader (SIGTTIN) and its job would hang until the
    timeout. The first gets end-of-file, the second no terminal to open."""
    share = HardeningShare(tmp_path, kinds_spec([[kind, i, 0.0] for i in range(2) for kind in ("readstdin", "readtty")]))
    code, output = on_a_terminal(share.command("--workers", "2", "--timeout", "20"), share.env(), WATCHDOG)
    assert code == 0, output
    assert_all_done_once(share, share.ids())
    assert {(row["Kind"], row["Note"]) for row in read_results(share.results)[1]} == {("readstdin", "0"), ("readtty", "no terminal")}
    assert "password:" not in output  # nothing written over the display either


def test_every_job_starts_in_the_run_folder_whatever_folder_the_job_before_left(tmp_path):
    """A job that moved to a scratch folder and deleted it (or just moved) must not leave its
    worker's next jobs there: their relative paths would depend on the schedule."""
    share = HardeningShare(tmp_path, kinds_spec([[kind, i, 0.0] for i in range(4) for kind in ("chdirgone", "getcwd")]))
    status, _, err = share.run("--workers", "1")
    assert status == 0, err
    assert_all_done_once(share, share.ids())
    assert ran_after(share, "chdirgone", "getcwd")
    assert {row["Note"] for row in read_results(share.results)[1] if row["Kind"] == "getcwd"} == {os.getcwd()}  # where the run started


def test_every_job_starts_with_the_run_environment_whatever_the_job_before_set(tmp_path):
    """A job that sets, changes or removes environment variables (for a program it runs) must
    not pass them on to its worker's next jobs, nor to the programs those run."""
    share = HardeningShare(tmp_path, kinds_spec([[kind, i, 0.0] for i in range(3) for kind in ("setenv", "getenv")]))
    status, _, err = share.run("--workers", "1", env=share.env(HOME="/home/someone"))
    assert status == 0, err
    assert_all_done_once(share, share.ids())
    assert ran_after(share, "setenv", "getenv")
    assert {row["Note"] for row in read_results(share.results)[1] if row["Kind"] == "getenv"} == {"- True True -"}


@pytest.mark.parametrize("spoiler", ["stdoutswap", "stdoutclose", "fdclose", "fdredirect"])
def test_every_job_prints_to_the_log_whatever_the_job_before_did_to_its_streams(tmp_path, spoiler):
    """A job that swapped ``sys.stdout`` for a file of its own (to silence a library) and never
    swapped it back, closed its standard streams or their descriptors, or pointed the
    descriptors at a file of its own (``os.dup2``) and left them so, must not silence its
    worker's next jobs (their output went to that file) nor make them fail (``print`` to a
    closed file raises, a closed descriptor gives EBADF): they and the programs they run print
    to the log, and read an empty standard input."""
    share = HardeningShare(tmp_path, kinds_spec([[kind, i, 0.0] for i in range(5) for kind in (spoiler, "printmark")]))
    status, _, err = share.run("--workers", "1")
    assert status == 0, err
    assert_all_done_once(share, share.ids())
    assert ran_after(share, spoiler, "printmark")
    lines = share.log().splitlines()
    for job in share.spec["jobs"]:
        if job[0] == "printmark":
            for marker in (f"out-mark-{job[1]}", f"err-mark-{job[1]}", f"sh-mark-{job[1]}", "read-0"):
                assert [line for line in lines if marker in line and tuple_id(job) in line], f"no log line {marker!r} of its job"
    if spoiler == "fdclose":
        closed = [line for line in lines if "the job closed its standard output (descriptor 1); the next jobs have it back" in line]
        assert len(closed) == 5, closed
    if spoiler == "fdredirect":
        assert not [path.name for path in share.root.glob("sink-*.txt") if "mark" in path.read_text()]  # only the spoiler's own
        for fd, name in enumerate(("standard input", "standard output", "standard error")):
            pointed = [line for line in lines if f"the job pointed its {name} (descriptor {fd}) at another file; the next jobs have it back" in line]
            assert len(pointed) == 5, pointed


def test_a_worker_whose_job_left_no_descriptor_free_still_ends_cleanly(tmp_path):
    """A job that keeps every file it opens (a cache that never closes them) may leave its worker
    no descriptor free. The worker's end, which read /proc to find the helpers it started and
    opened /dev/null to end its output, failed with a traceback of jobsplit's in the log (``Too
    many open files: '/proc'``) and skipped the rest of its end: the helpers' clean-up, the last
    of its output."""
    share = HardeningShare(tmp_path, kinds_spec([["fdfill", 0, 0.0]]))
    status, _, err = share.run("--workers", "1")
    assert status == 0, err
    assert_all_done_once(share, share.ids())
    log = share.log()
    assert "every descriptor taken" in log
    assert "Traceback" not in log and "Too many open files" not in log, log
    assert "at least 0 open" not in log and "this worker has no descriptor left after job" in log, log


LOGGING_SET_UPS = """
import logging
import os

import jobsplit


def job(kind, n, random_obj, config, progress):
    open_files = len(os.listdir("/proc/self/fd"))  # before this job opens its own
    path = os.path.join(os.environ["JOB_LOGS"], f"{kind}-{n}.log")
    if kind == "root":  # a log file of the job's own, and more detail
        logging.getLogger().addHandler(logging.FileHandler(path))
        logging.getLogger().setLevel(logging.DEBUG)
    elif kind == "forced":  # a whole set-up of its own, replacing the worker's
        logging.basicConfig(filename=path, level=logging.DEBUG, force=True)
    else:  # a handler on the job's own logger
        logging.getLogger("experiment").addHandler(logging.FileHandler(path))
    logging.getLogger("experiment").info("record of %s-%d", kind, n)
    logging.getLogger("experiment").debug("detail of %s-%d", kind, n)
    return n, open_files, logging.getLogger().level


if __name__ == "__main__":
    jobsplit.main(job, [(kind, n) for n in range(3) for kind in ("root", "forced", "named")])
"""


def test_every_job_starts_with_the_worker_s_logging_whatever_the_job_before_set_up(tmp_path):
    """A job that adds a log file of its own to a logger (or replaces the whole set-up with
    ``basicConfig(force=True)``) and leaves it must not hand it to its worker's next jobs: their
    records landed in its file, the root logger's level it set stayed, and each such job left
    one more file open. Each job's file holds its own records only, the next jobs log to the
    machine log again, and the worker's open files stay as many."""
    logs = tmp_path / "joblogs"
    logs.mkdir()
    rows, machine_log = run_entry(tmp_path, LOGGING_SET_UPS, ("N", "Open Files", "Root Level"), JOB_LOGS=str(logs))
    assert len(rows) == 9
    assert len({r["Open Files"] for r in rows}) == 1, [(r["Job Args"], r["Open Files"]) for r in rows]
    kinds = kinds_in_order(rows)
    assert "named" in kinds[kinds.index("root") :], kinds  # a job that leaves the root's level alone ran after one that set it
    levels = {(json.loads(r["Job Args"])[0], r["Root Level"]) for r in rows}
    assert levels == {("root", str(logging.DEBUG)), ("forced", str(logging.DEBUG)), ("named", str(logging.INFO))}
    files = sorted(logs.iterdir())
    assert len(files) == 9
    for path in files:  # the job's own records, and no other job's
        assert re.findall(r"(?:record|detail) of (\w+-\d)", path.read_text(encoding="utf-8")) == [path.stem] * (1 if path.stem.startswith("named") else 2), path
    for kind in ("root", "named"):
        for n in range(3):
            assert f"record of {kind}-{n}" in machine_log, f"{kind}-{n} did not log to the machine log"


STRICT_WARNINGS = """
import warnings

import jobsplit


def job(kind, n, random_obj, config, progress):
    if kind == "strict":
        warnings.simplefilter("error")  # this job's warnings are errors
    else:
        warnings.warn(f"gentle warning {n}")
    return n


if __name__ == "__main__":
    jobsplit.main(job, [(kind, n) for n in range(3) for kind in ("strict", "warns")])
"""


def test_warnings_a_job_made_errors_stay_warnings_in_the_next_jobs(tmp_path):
    """``warnings.simplefilter("error")`` in one job must not fail the later jobs of its worker
    that warn (or not, depending on the schedule): each job starts with the worker's filters."""
    rows, machine_log = run_entry(tmp_path, STRICT_WARNINGS, ("N",))
    kinds = kinds_in_order(rows)
    assert len(kinds) == 6 and "warns" in kinds[kinds.index("strict") :], kinds
    assert all(f"gentle warning {n}" in machine_log for n in range(3)), machine_log


def test_an_alarm_or_signal_handler_a_job_left_never_reaches_the_next_jobs(tmp_path):
    """A job that armed a SIGALRM time limit and returned before it went off (and made itself deaf
    to SIGTERM) must not leave them to its worker's next job: the alarm would go off in that job,
    and a timeout could no longer stop it with SIGTERM."""
    share = HardeningShare(tmp_path, kinds_spec([[kind, i, 1.0] for i in range(2) for kind in ("alarmleft", "sleep")]))
    status, _, err = share.run("--workers", "1")
    assert status == 0, err
    assert_all_done_once(share, share.ids())
    assert ran_after(share, "alarmleft", "sleep")

    deaf = HardeningShare(tmp_path / "deaf", kinds_spec([*[["alarmleft", i, 0.0] for i in range(5)], ["sleep", 9, 60.0]]))
    status, _, err = deaf.run("--workers", "1", "--timeout", "2")
    assert status == 1, err
    assert ran_after(deaf, "alarmleft", "sleep")
    assert journal_query(deaf.journal, "SELECT outcome, signal FROM attempts WHERE outcome != 'done'") == [("timeout", signal.SIGTERM)]  # not SIGKILL after the grace


def test_signals_a_job_blocked_are_unblocked_for_the_next_jobs(tmp_path):
    """A job that blocked SIGTERM and SIGALRM in its thread (``signal.pthread_sigmask``, around a
    section it must not have interrupted) and never unblocked them must not leave them blocked
    to its worker's next jobs: an alarm of theirs would go off only once the job was out of its C
    call, and a timeout's SIGTERM reached only another thread, so a job sleeping in C was killed
    after the grace instead of stopped (its own SIGTERM handler, a checkpoint, never ran)."""
    share = HardeningShare(tmp_path, kinds_spec([*[["blocksignals", i, 0.0] for i in range(5)], ["sleep", 9, 60.0]]))
    status, _, err = share.run("--workers", "1", "--timeout", "2")
    assert status == 1, err
    assert ran_after(share, "blocksignals", "sleep")
    assert journal_query(share.journal, "SELECT outcome, signal FROM attempts WHERE outcome != 'done'") == [("timeout", signal.SIGTERM)]  # not SIGKILL after the grace


def ran_after(share: HardeningShare, first: str, then: str) -> bool:
    """Whether a job of kind ``then`` started after one of kind ``first`` ended (on one worker):
    the tests of what one job leaves to the next hold only then."""
    kinds = {tuple_id(job): job[0] for job in share.spec["jobs"]}
    attempts = journal_query(share.journal, "SELECT job_id, started, ended FROM attempts")
    ends = [ended for job_id, _, ended in attempts if kinds[job_id] == first]
    return bool(ends) and any(started > min(ends) for job_id, started, _ in attempts if kinds[job_id] == then)


def test_a_job_cannot_change_the_config_the_jobs_after_it_read(tmp_path):
    """One config serves every job of a worker: a change made by one job reached the jobs after
    it on that worker only, and results depended on the schedule. Refused, that job fails."""
    share = HardeningShare(tmp_path, kinds_spec([["setconfig", 0], *[["getconfig", i] for i in range(1, 12)]]))
    status, _, err = share.run("--workers", "1")
    assert status == 1, err
    starts = side_lines(share.starts)
    assert starts.index(tuple_id(["setconfig", 0])) < len(starts) - 1, "no job ran after the change: nothing to see"
    failed = journal_jobs(share.journal)[tuple_id(["setconfig", 0])]
    assert failed["state"] == "failed" and "ReadOnlyConfigError: config is read-only" in failed["error"], failed
    _, rows = read_results(share.results)
    assert sorted(r["Note"] for r in rows) == ["5"] * 11  # config.ini's value, before and after


def test_sigterm_stops_the_child_process_of_a_running_job(tmp_path):
    share = HardeningShare(tmp_path, kinds_spec([["childhang", 0], ["ok", 1]]))
    process = share.start("--workers", "1")
    try:
        child = wait_for(lambda: [int(p) for p in side_lines(share.children)], WATCHDOG, "the job's child")[0]
        os.kill(process.pid, signal.SIGTERM)
        status, _, err = communicate(process, WATCHDOG)
        assert status == 130, err
        assert gone(child), f"the job's child {child} outlived the interrupted run"
    finally:
        kill_session(process.pid)
        kill_pids(share.children)


def test_sigkill_of_the_main_process_takes_the_jobs_programs_along(tmp_path):
    """kill -9 leaves the main process no say: its workers learn of its death from the kernel
    (or by polling) and stop their process groups, the job's programs included."""
    share = HardeningShare(tmp_path, kinds_spec([["childhang", 0], ["ok", 1]]))
    process = share.start("--workers", "1")
    try:
        child = wait_for(lambda: [int(p) for p in side_lines(share.children)], WATCHDOG, "the job's child")[0]
        os.kill(process.pid, signal.SIGKILL)
        process.wait(WATCHDOG)
        assert wait_no_processes(process.pid, WATCHDOG) == [], "workers outlived their parent"
        assert gone(child), f"the job's child {child} outlived the killed run"
    finally:
        kill_session(process.pid)
        kill_pids(share.children)



NESTED_POOLS = """
import concurrent.futures
import multiprocessing

import jobsplit


def square(x):
    return x * x


def job(n, random_obj, config, progress):
    with multiprocessing.Pool(2) as pool:  # leaving the block terminates the pool: SIGTERM to its processes
        by_pool = sum(pool.map(square, range(n)))
    with concurrent.futures.ProcessPoolExecutor(2) as executor:
        by_executor = sum(executor.map(square, range(n)))
    return by_pool, by_executor


if __name__ == "__main__":
    jobsplit.main(job, [5, 10, 20, 40])
"""


TERMINATED_AS_THEY_START = """
import multiprocessing

import jobsplit


def job(n, random_obj, config, progress):
    for _ in range(10):
        multiprocessing.Pool(2).terminate()  # SIGTERM may reach a pool's process while it is being forked
    return n


if __name__ == "__main__":
    jobsplit.main(job, [1, 2, 3, 4])
"""


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_a_pool_a_job_terminates_as_it_starts_never_hangs_the_job(tmp_path, start_method):
    """A forked process inherited the worker's Python SIGTERM handler, and a SIGTERM that came
    before Python's own fork handling was done was dropped there: ``Pool.terminate()`` then
    waited for ever for a process that had not died. Forked processes now start with SIGTERM
    at its default action, none lost meanwhile."""
    entry = tmp_path / "entry.py"
    entry.write_text(TERMINATED_AS_THEY_START, encoding="utf-8")
    config_dir = write_config_dir(tmp_path / "config", header=("Run Start Time", "Job Running Time", "Job Start Time", "Value"), machines={"solo": [1.0, 2]})
    out = tmp_path / "out"
    status, _, err = watched([sys.executable, entry, *run_args(config_dir, out, "--workers", "2", "--start-method", start_method)], run_env(tmp_path), WATCHDOG)
    assert status == 0, err
    assert journal_query(out / "solo" / "journal.sqlite", "SELECT outcome, COUNT(*) FROM attempts GROUP BY outcome") == [("done", 4)]


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_a_job_may_run_its_own_process_pool(tmp_path, start_method):
    """Research code often parallelizes inside a job: a worker is no daemonic process to
    multiprocessing (which forbids those children), and a pool's process that inherits the
    worker's SIGTERM handler dies of the signal alone, never taking its worker along."""
    entry = tmp_path / "entry.py"
    entry.write_text(NESTED_POOLS, encoding="utf-8")
    config_dir = write_config_dir(tmp_path / "config", header=("Run Start Time", "Job Running Time", "Job Start Time", "Pool", "Executor"), machines={"solo": [1.0, 2]})
    out = tmp_path / "out"
    status, _, err = watched([sys.executable, entry, *run_args(config_dir, out, "--workers", "2", "--start-method", start_method)], run_env(tmp_path), WATCHDOG)
    assert status == 0, err
    _, rows = read_results(out / "solo" / "results.csv")
    squares = {str(sum(i * i for i in range(n))) for n in (5, 10, 20, 40)}
    assert sorted((r["Pool"], r["Executor"]) for r in rows) == sorted((v, v) for v in squares)
    assert journal_query(out / "solo" / "journal.sqlite", "SELECT outcome, COUNT(*) FROM attempts GROUP BY outcome") == [("done", 4)]

LOGGING_POOLS = """
import logging
import multiprocessing
import os
import threading

import jobsplit

log = logging.getLogger("study")


def part(x):
    if os.environ["JOBSPLIT_TEST_HOW"] == "log":
        log.warning("part %d of the pool", x)
    else:
        print(f"part {x} of the pool")
    return x * x


def chatter(stop):  # a thread that prints as the job forks: the worker's reader then sends output
    while not stop.is_set():
        print("x" * 100)


def job(n, random_obj, config, progress):
    stop = threading.Event()
    printer = threading.Thread(target=chatter, args=(stop,), daemon=True)
    printer.start()
    try:
        totals = []
        for _ in range(5):
            with multiprocessing.get_context("fork").Pool(2) as pool:
                totals.append(sum(pool.map_async(part, range(4)).get(timeout=30)))
    finally:
        stop.set()
        printer.join()
    return sum(totals)


if __name__ == "__main__":
    jobsplit.main(job, list(range(12)))
"""


@pytest.mark.parametrize("how", ["log", "print"])
def test_the_processes_of_a_job_s_fork_pool_log_and_print_through_their_own_output(tmp_path, how):
    """The processes of a fork pool that a job starts inherit the worker's logging set-up. Their
    records went through the worker's own pipe to the runner, under the worker's locks: their
    messages and the worker's (here, the output of a printing thread) interleaved, and the
    runner read garbage and failed with a traceback (a script doing this, 3 runs in 3); or a
    pool's process waited for ever on a lock the fork had copied while the worker's reader
    thread held it, and its job timed out (``log``, on the old code). Now each such record is
    a line on the process's standard error, logged with the job like any program's output.
    ``print``: they also inherited the worker's standard streams, whose lock the printing thread
    held as the job forked: their first ``print`` waited for ever. They now get their own."""
    entry = tmp_path / "entry.py"
    entry.write_text(LOGGING_POOLS, encoding="utf-8")
    config_dir = write_config_dir(tmp_path / "config", header=("Run Start Time", "Job Running Time", "Job Start Time", "Total"), machines={"solo": [1.0, 2]})
    out = tmp_path / "out"
    status, _, err = watched([sys.executable, entry, *run_args(config_dir, out, "--workers", "2")], run_env(tmp_path, JOBSPLIT_TEST_HOW=how), WATCHDOG)
    assert status == 0, err
    assert "Traceback" not in err
    _, rows = read_results(out / "solo" / "results.csv")
    assert sorted(r["Total"] for r in rows) == ["70"] * 12
    log = machine_log_text(out / "solo")
    said = r"WARNING:study:part \d of the pool" if how == "log" else r"INFO part \d of the pool"
    assert len(re.findall(said, log)) == 12 * 5 * 4, log[-2000:]

LIBRARY_HELPERS = """
import multiprocessing
import multiprocessing.forkserver
import multiprocessing.resource_tracker
from multiprocessing import shared_memory

import jobsplit


def square(x):
    return x * x


def job(n, random_obj, config, progress):
    with multiprocessing.get_context("forkserver").Pool(1) as pool:
        total = sum(pool.map(square, range(n)))
    memory = shared_memory.SharedMemory(create=True, size=4096)
    memory.close()  # never unlinked: the resource tracker's to clean up when the worker ends
    helpers = (multiprocessing.forkserver._forkserver._forkserver_pid, multiprocessing.resource_tracker._resource_tracker._pid)
    return total, " ".join(map(str, helpers)), memory.name


if __name__ == "__main__":
    jobsplit.main(job, [3, 4, 5, 6])
"""

JOBLIB_JOBS = """
import os

from joblib import Parallel, delayed

import jobsplit


def job(n, random_obj, config, progress):
    squares = Parallel(n_jobs=2)(delayed(pow)(i, 2) for i in range(n))
    from joblib.externals.loky import reusable_executor

    return sum(squares), " ".join(map(str, sorted(reusable_executor._executor._processes))), os.getpid()


if __name__ == "__main__":
    jobsplit.main(job, [3, 4, 5, 6])
"""


def assert_no_helper_was_stopped(log: str) -> None:
    assert not re.search(r"the job left .* running", log), log
    assert "died unexpectedly" not in log, log


def test_the_helpers_multiprocessing_keeps_serve_every_job_and_clean_up_when_the_run_ends(tmp_path):
    """multiprocessing's fork server and resource tracker are started by the first job that
    needs them and kept for the life of the worker, as in any Python program: they are no
    leftovers to stop after each job (which cost a second a job, restarted them with warnings,
    and killed the tracker before it unlinked what it tracked). When the run ends, the worker
    stops them as a Python program's end would: the tracker unlinks the shared memory a job
    left, and says so in the log."""
    rows, log = run_entry(tmp_path, LIBRARY_HELPERS, ("Total", "Helpers", "Memory"))
    assert len(rows) == 4
    segments = [Path("/dev/shm", r["Memory"].lstrip("/")) for r in rows]
    try:
        assert sorted(int(r["Total"]) for r in rows) == [sum(i * i for i in range(n)) for n in (3, 4, 5, 6)]
        assert len({r["Helpers"] for r in rows}) == 1, rows  # the same fork server and tracker for every job
        assert_no_helper_was_stopped(log)
        assert "leaked shared_memory objects" in log
        assert not [path for path in segments if path.exists()], "shared memory left: the resource tracker did not clean up"
    finally:
        for path in segments:
            path.unlink(missing_ok=True)


def test_joblib_in_a_job_reuses_its_workers_and_cleans_up_when_the_run_ends(tmp_path):
    """joblib's ``Parallel`` (scikit-learn's ``n_jobs``) keeps its worker processes for the next
    call, and a resource tracker: the next job reuses them, nothing is stopped or warned about,
    and when the run ends they exit and joblib's temporary folders are removed."""
    rows, log = run_entry(tmp_path, JOBLIB_JOBS, ("Total", "Workers", "Pid"))
    assert len(rows) == 4
    assert sorted(int(r["Total"]) for r in rows) == [sum(i * i for i in range(n)) for n in (3, 4, 5, 6)]
    assert len({r["Workers"] for r in rows}) == 1, rows  # the executor's workers served every job
    assert_no_helper_was_stopped(log)
    (pid,) = {r["Pid"] for r in rows}
    assert not list(Path("/dev/shm").glob(f"joblib_memmapping_folder_{pid}_*"))
    assert not [int(p) for p in rows[0]["Workers"].split() if pid_alive(int(p))]


# --- 11. the code fingerprint ---------------------------------------------------------------

TWO_MACHINES = {"m1": [1.0, 1], "m2": [1.0, 1]}


def fingerprint(err: str) -> str:
    first = err.splitlines()[0] if err else ""
    found = re.search(r"\bcode ([0-9a-f]{12})\b", first)
    assert found and "digest" in first, f"no `code <12 hex digits>` next to the digest in the first line: {first!r}"
    return found.group(1)


def printed_digest(share: HardeningShare) -> str:
    status, out, err = watched([sys.executable, share.entry, "digest", "--config-dir", share.config_dir], run_env(share.root), WATCHDOG)
    assert status == 0, err
    return out.strip()


def add_comment(share: HardeningShare) -> None:
    share.entry.write_text(share.entry.read_text() + "# a comment added later: other code, same plan\n")


def test_the_code_fingerprint_is_shown_recorded_and_in_every_row(tmp_path):
    share = HardeningShare(tmp_path, kinds_spec([["ok", i] for i in range(6)]))
    status, _, err = share.run()
    assert status == 0, err
    code = fingerprint(err)
    assert journal_query(share.journal, "SELECT value FROM meta WHERE key = 'code'") == [(code,)]
    header, rows = read_results(share.results)
    assert header[-5:] == ["Job ID", "Job Args", "Machine", "Digest", "Code"], header
    digest = printed_digest(share).replace("-", "").lower()
    assert re.fullmatch(r"[0-9a-f]{32}", digest)
    assert {(row["Digest"], row["Code"]) for row in rows} == {(digest, code)}
    assert len(rows) == 6


def test_changed_code_changes_the_fingerprint_not_the_digest_and_resuming_warns(tmp_path):
    share = HardeningShare(tmp_path, kinds_spec([*[["ok", i] for i in range(4)], ["failenv", 4], ["failenv", 5]]))
    status, _, err = share.run(env=share.env(JOBSPLIT_TEST_FAIL="1"))
    assert status == 1, err
    before, digest = fingerprint(err), printed_digest(share)
    add_comment(share)
    assert printed_digest(share) == digest
    status, _, err = share.run("--retry-failed")
    assert status == 0, err
    after = fingerprint(err)
    assert after != before
    warned = [line for line in err.splitlines() if before in line and after in line]
    assert warned, f"no line names both fingerprints {before} and {after}:\n{err}"
    assert not any(line.startswith("error:") for line in warned), warned
    assert_all_done_once(share, share.ids())


LOCAL_ENTRY = """
import jobsplit
import helpers
from models import fit

def job(i, random_obj, config, progress):
    from lazy import scale  # imported only where the job runs
    return fit(i) * scale

if __name__ == "__main__":
    jobsplit.main(job, list(range(4)))
"""


def test_the_fingerprint_covers_the_modules_of_the_entry_s_folder_it_imports(tmp_path):
    """An entry that keeps its science in ``helpers.py`` beside it, or in a package of the
    project: a change there gave the same fingerprint, so rows of two versions of the code got
    one Code, resuming said nothing and merge-results saw no mixed code. Every module of the
    entry's folder that it imports counts (at its top, inside the job, through a package, through
    another module), in the script and in an executable built from it alike; a file of the folder
    that it does not import does not."""
    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    (project / "entry.py").write_text(LOCAL_ENTRY)
    (project / "helpers.py").write_text("import lazy\n")
    (project / "models" / "__init__.py").write_text("from .core import fit\n")
    (project / "models" / "core.py").write_text("def fit(i):\n    return i + 1\n")
    (project / "lazy.py").write_text("scale = 2\n")
    (project / "notes.py").write_text("# not imported\n")
    config_dir = write_config_dir(tmp_path / "config", header=(*HEADER[:3], "Value"), machines={"solo": [1.0, 1]})

    def run() -> str:
        status, _, err = watched([sys.executable, project / "entry.py", *run_args(config_dir, tmp_path / "out")], run_env(tmp_path), WATCHDOG)
        assert status == 0, err
        return fingerprint(err)

    codes = [run()]
    from jobsplit.fingerprint import file_fingerprint, local_modules

    assert [p.relative_to(project.resolve()).as_posix() for p in local_modules(project / "entry.py")] == ["helpers.py", "lazy.py", "models/__init__.py", "models/core.py"]
    assert codes[0] == file_fingerprint(project / "entry.py")  # what `make exe` bundles
    for changed in ("models/core.py", "lazy.py", "helpers.py"):
        path = project / changed
        path.write_text(path.read_text() + "# changed\n")
        codes.append(run())
    assert len(set(codes)) == 4, codes
    (project / "notes.py").write_text("# not imported, changed\n")
    assert run() == codes[-1]


LINKED_ENTRY = """
import jobsplit
import helpers
from mylib import fit

def job(i, random_obj, config, progress):
    return fit(helpers.scale(i))

if __name__ == "__main__":
    jobsplit.main(job, list(range(4)))
"""


def test_a_module_linked_into_the_entry_s_folder_counts_as_a_copy_there_would(tmp_path):
    """``helpers.py -> ../v1/helpers.py``, or a package folder linked from elsewhere: the
    fingerprint left out a linked module whose target is outside the entry's folder, so two hosts
    whose linked helpers differed showed one code and merge-results took their rows as one, while
    a copy on one host and a link to the same source on the other gave two. A linked module
    counts by its name in the folder, with its target's source; a folder linked into itself does
    not make the search go round for ever."""
    for version in (1, 2):
        (tmp_path / f"v{version}").mkdir()
        (tmp_path / f"v{version}" / "helpers.py").write_text(f"def scale(i):\n    return i * {version}\n")
    library = tmp_path / "lib" / "mylib"
    library.mkdir(parents=True)
    (library / "__init__.py").write_text("from .core import fit\n")
    (library / "core.py").write_text("def fit(i):\n    return i + 1\n\ndef again():\n    from .again import core\n")
    (library / "again").symlink_to(".")

    def host(name: str, helpers: str) -> Path:
        project = tmp_path / name
        project.mkdir()
        (project / "entry.py").write_text(LINKED_ENTRY)
        if helpers == "copy":
            shutil.copy(tmp_path / "v1" / "helpers.py", project)
            shutil.copytree(library, project / "mylib", symlinks=True)
        else:
            (project / "helpers.py").symlink_to(f"../{helpers}/helpers.py")
            (project / "mylib").symlink_to("../lib/mylib")
        return project / "entry.py"

    from jobsplit.fingerprint import file_fingerprint, local_modules

    copied, linked, linked_v2 = host("copied", "copy"), host("linked", "v1"), host("linked_v2", "v2")
    assert [p.relative_to(linked.parent.resolve()).as_posix() for p in local_modules(linked)] == ["helpers.py", "mylib/__init__.py", "mylib/core.py"]
    assert file_fingerprint(linked) == file_fingerprint(copied)
    assert file_fingerprint(linked_v2) != file_fingerprint(linked)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "entry.py").symlink_to(linked)
    assert file_fingerprint(tmp_path / "elsewhere" / "entry.py") == file_fingerprint(linked)  # Python imports from the target's folder
    before = file_fingerprint(linked)
    (library / "core.py").write_text((library / "core.py").read_text() + "# changed\n")
    assert file_fingerprint(linked) != before

def test_a_run_under_a_profiler_has_the_entry_s_fingerprint(tmp_path):
    """``python -m cProfile entry.py``, to see where a slow run's time goes: ``__main__`` is then
    cProfile, not the entry, so its fingerprint was the profiler's and that of the standard
    library modules it imports (some 300 files parsed: 3 s), and merge-results refused the
    profiled run's rows as of other code. The fingerprint is the entry's, as without the profiler."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "entry.py").write_text(LOCAL_ENTRY.replace("import helpers\nfrom models import fit\n", "from helpers import fit\n").replace("from lazy import scale", "scale = 2"))
    (project / "helpers.py").write_text("def fit(i):\n    return i + 1\n")
    config_dir = write_config_dir(tmp_path / "config", header=(*HEADER[:3], "Value"), machines={"solo": [1.0, 1]})
    profiled = [sys.executable, "-m", "cProfile", "-o", tmp_path / "run.prof", project / "entry.py", *run_args(config_dir, tmp_path / "out")]
    status, _, err = watched(profiled, run_env(tmp_path), WATCHDOG)
    assert status == 0, err
    from jobsplit.fingerprint import file_fingerprint

    assert fingerprint(err) == file_fingerprint(project / "entry.py")
    assert (tmp_path / "run.prof").stat().st_size > 0


@pytest.mark.parametrize("failed", [False, True], ids=["complete", "a job failed"])
def test_merging_results_of_different_code_needs_allow_mixed_code(tmp_path, failed):
    """Where jobs are missing too, the hint names both flags (it named only --allow-mixed-code,
    and that alone still wrote nothing)."""
    share = HardeningShare(tmp_path, kinds_spec([["raise" if failed and i == 0 else "ok", i] for i in range(8)]), machine="m1", machines=TWO_MACHINES)
    status, _, err1 = share.run(machine="m1")
    assert status in ((0, 1) if failed else (0,)), err1  # 1: its job failed
    add_comment(share)
    status, _, err2 = share.run(machine="m2")
    assert status in ((0, 1) if failed else (0,)), err2
    merged = tmp_path / "merged.csv"
    status, out, err = watched([jobsplit_script(), "merge-results", share.out, "-o", merged], run_env(tmp_path), WATCHDOG)
    assert status == 1, f"merge-results exited {status}:\n{out}{err}"
    codes = [fingerprint(err1), fingerprint(err2)]
    assert codes[0] != codes[1]
    for word in ("m1", "m2", *codes):
        assert word in out + err, f"{word!r} not in the output:\n{out}{err}"
    hint = "nothing written; pass --allow-mixed-code to merge results of different code versions"
    assert (hint + " and --allow-missing to write the rows there are" if failed else hint + "\n") in out + err, out + err
    allowed = ["--allow-mixed-code", *(["--allow-missing"] if failed else [])]
    status, out, err = watched([jobsplit_script(), "merge-results", share.out, "-o", merged, *allowed], run_env(tmp_path), WATCHDOG)
    assert status == (1 if failed else 0), out + err
    _, rows = read_results(merged)
    assert sorted(row["Job ID"] for row in rows) == sorted(share.ids()[1:] if failed else share.ids())


# --- 13. smaller things ---------------------------------------------------------------------

NO_POOL_ENTRY = """\
import jobsplit


def job(*args, **kwargs):
    return ()


if __name__ == "__main__":
    jobsplit.main(job, None)
"""


def test_a_pool_of_none_is_a_clear_error(tmp_path):
    config_dir = write_config_dir(tmp_path / "config", header=HEADER, machines={"solo": [1.0, 2]})
    entry = tmp_path / "entry.py"
    entry.write_text(NO_POOL_ENTRY)
    status, out, err = watched([sys.executable, entry, *run_args(config_dir, tmp_path / "out")], run_env(tmp_path), WATCHDOG)
    assert_user_error(status, out, err, "pool")


def test_a_header_csv_with_a_second_line_is_refused(tmp_path):
    header = ",".join(HEADER) + "\nExtra,Line\n"
    share = HardeningShare(tmp_path, kinds_spec([["ok", i] for i in range(2)]), header=header)
    status, out, err = share.run()
    assert_user_error(status, out, err, "header.csv")


def test_the_console_says_one_worker_one_job_and_an_object(tmp_path):
    share = HardeningShare(tmp_path, kinds_spec([["badcell", 0]]))
    status, _, err = share.run("--workers", "1")
    assert status == 1, err
    (job,) = journal_jobs(share.journal).values()
    for text in (err, job["error"]):
        for phrase in ("1 workers", "1 jobs", "a object"):
            assert not re.search(rf"(?<![\w.]){phrase}\b", text), f"{phrase!r} in:\n{text}"
    assert "an object" in job["error"], job["error"]


def test_the_percentage_counts_only_done_jobs(tmp_path):
    """Quick failures, slower successes: the final summary (2 done, 2 failed) says 50.0%."""
    share = HardeningShare(tmp_path, kinds_spec([["raise", 0], ["raise", 1], ["sleep", 2, 0.5], ["sleep", 3, 0.5]]))
    status, _, err = share.run("--workers", "2", "--console", "plain")
    assert status == 1, err
    assert "100.0%" not in err, err
    final = [line for line in err.splitlines() if re.search(r"(?<![\d.])50\.0%", line) and re.search(r"\b2(/| of )4\b", line)]
    assert final, f"no final summary line saying 2 of 4 done, 50.0%:\n{err}"


# --- out of memory -------------------------------------------------------------------------------

MEMORY_LIMIT = 300 << 20


@pytest.fixture
def memory_cgroup():
    """A memory cgroup (v1, or v2 with the memory controller) limited to MEMORY_LIMIT bytes,
    removed afterwards; the test is skipped where none can be made (it needs root)."""
    name = f"jobsplit-test-{os.getpid()}-{time.monotonic_ns()}"
    for root, limit in ((Path("/sys/fs/cgroup/memory"), "memory.limit_in_bytes"), (Path("/sys/fs/cgroup"), "memory.max")):
        group = root / name
        try:
            group.mkdir()
        except OSError:
            continue
        try:
            (group / limit).write_text(str(MEMORY_LIMIT))
        except OSError:
            group.rmdir()
            continue
        try:
            yield group
        finally:
            wait_for(lambda: not (group / "cgroup.procs").read_text().split(), 30, "the cgroup to empty")
            group.rmdir()
        return
    pytest.skip("no memory cgroup can be made here (it needs root and a writable cgroup memory controller)")


def test_a_job_the_out_of_memory_killer_stops_is_said_to_have_run_out_of_memory(tmp_path, memory_cgroup):
    """A job that holds more memory than its cgroup allows: the kernel kills its worker with
    SIGKILL. The crash names the likely cause and the fix, the other jobs are done."""
    share = HardeningShare(tmp_path, kinds_spec([["hog", 0, 0.0], *[["ok", i, 0.0] for i in range(1, 5)]]))
    procs = memory_cgroup / "cgroup.procs"
    status, _, err = watched_in(share, procs)
    assert status == 1, err
    jobs = journal_jobs(share.journal)
    hog = tuple_id(["hog", 0, 0.0])
    assert jobs[hog]["outcome"] == "crashed"
    assert jobs[hog]["error"].startswith("the worker process died while running this job (killed by SIGKILL: the kernel's out-of-memory killer"), jobs[hog]["error"]
    assert sorted(job_id for job_id, job in jobs.items() if job["state"] == "done") == sorted(share.ids("ok"))


@pytest.mark.parametrize("limit", [None, "100MiB"], ids=["no limit", "worker-memory"])
def test_a_worker_whose_jobs_leak_is_replaced_before_the_host_runs_out(tmp_path, memory_cgroup, limit):
    """Jobs that each keep 40 MiB in their worker for good (a growing cache): one worker, in a
    memory cgroup of 300 MiB. Without a limit its memory grows job after job until the kernel
    kills it mid-job (a crash that names --worker-memory). With --worker-memory 100MiB the
    worker is replaced between two jobs, every four or so, before that: every job is done,
    none crashed or ran twice, and the log says why workers were replaced."""
    share = HardeningShare(tmp_path, kinds_spec([["leak", i, 40] for i in range(14)]))
    procs = memory_cgroup / "cgroup.procs"
    flags = ["--worker-memory", limit] if limit else []
    process = share.start("--workers", "1", "--retries", "0", *flags, preexec_fn=lambda: procs.write_text(str(os.getpid())))
    status, _, err = communicate(process, WATCHDOG)
    jobs = journal_jobs(share.journal)
    crashed = [job for job in jobs.values() if job["outcome"] == "crashed"]
    if limit is None:
        assert status == 1 and crashed, err
        assert all("--worker-memory SIZE" in job["error"] for job in crashed), crashed
        return
    assert status == 0, err
    assert all(job["state"] == "done" and job["attempts"] == 1 for job in jobs.values()) and len(jobs) == 14, jobs
    assert sorted(share.side.read_text().split()) == sorted(share.ids())  # each job ran once
    workers = set(share.pids.read_text().split())
    assert 4 <= len(workers) <= 7, workers  # 14 jobs of 40 MiB, a worker replaced once it grew by more than 100 MiB
    log = machine_log_text(share.machine_dir)
    assert log.count("more than --worker-memory 100 MiB allows: a new worker takes its place") == len(workers) - 1, log


BIG_RESULTS_ENTRY = """
import time
from pathlib import Path

import jobsplit

HERE = Path(__file__).resolve().parent


def job(i, random_obj, config, progress):
    with open(HERE / "starts", "a") as starts:
        starts.write(f"{i}\\n")
    while len((HERE / "starts").read_text().split()) > 2 and not (HERE / "go").exists():  # all but the first two wait for the test
        time.sleep(0.01)
    time.sleep(0.1)
    return "p" * (40_000_000 if (HERE / "big").exists() else 10)


if __name__ == "__main__":
    jobsplit.main(job, list(range(30)))
"""


def test_a_runner_out_of_memory_stops_in_one_sentence_and_resumes(tmp_path):
    """The runner reads each job's result whole (40 MB here): past its memory limit (``ulimit
    -v``, set on the running runner as a cgroup or a busy host would), the MemoryError was a
    traceback and exit status 1, or, raised while a result was unpickled, "something that is not
    jobsplit's wrote into its pipe" (exit 70). Now one sentence and exit status 2; the run is
    recorded as stopped, what was done is kept, and the same command goes on from there.
    The jobs after the first two wait until the limit is set: on a busy host, the test set it
    too late, after every job had ended. One malloc arena: the stop passed only where glibc
    retried in a second arena, made by a thread that had come and gone (sharefolders' look-up);
    without one, the stop read on into the message too big for it, took the memory left, and
    died of a segmentation fault."""
    entry = tmp_path / "entry.py"
    entry.write_text(BIG_RESULTS_ENTRY, encoding="utf-8")
    config_dir = write_config_dir(tmp_path / "config", header=("Run Start Time", "Job Running Time", "Job Start Time", "Value"), machines={"solo": [1.0, 2]})
    out, env, big = tmp_path / "out", {**run_env(tmp_path), "MALLOC_ARENA_MAX": "1"}, tmp_path / "big"
    journal, results = out / "solo" / "journal.sqlite", out / "solo" / "results.csv"
    command = [sys.executable, str(entry), *run_args(config_dir, out, "--workers", "2")]
    process = start_command(command, env)
    try:
        wait_for(lambda: len(done_so_far(journal)) >= 2, 30, "two jobs done")
        size = next(int(line.split()[1]) for line in Path(f"/proc/{process.pid}/status").read_text().splitlines() if line.startswith("VmSize:")) << 10
        resource.prlimit(process.pid, resource.RLIMIT_AS, (size + (20 << 20), resource.RLIM_INFINITY))  # room for less than one big result
        big.touch()
        (tmp_path / "go").touch()
        status, out_text, err = communicate(process, WATCHDOG)
    finally:
        kill_session(process.pid)
    assert_user_error(status, out_text, err, "out of memory", "what was recorded is kept", "run the same command again")
    assert journal_query(journal, "SELECT status FROM runs") == [("stopped",)]
    done = done_ids(journal)
    assert 2 <= len(done) < 30 and sorted(results_ids(results)) == sorted(done)
    big.unlink()
    status, _, err = watched(command, env, WATCHDOG)
    assert status == 0, err
    assert journal_query(journal, "SELECT state, COUNT(*) FROM jobs GROUP BY state") == [("done", 30)]
    assert sorted(results_ids(results)) == sorted(done_ids(journal))


def test_a_worker_whose_quick_jobs_leak_fast_is_replaced_within_a_job_of_its_limit(tmp_path):
    """Jobs of milliseconds that each keep 20 MiB: the worker was read every 0.1 s at most, by
    when it had grown 2.5 times past its limit (500 MiB for 200 for the red team). Read sooner
    when its growth would pass the limit before: replaced within about a job's growth of it."""
    share = HardeningShare(tmp_path, kinds_spec([["fastleak", i, 20] for i in range(16)]))
    status, _, err = share.run("--workers", "1", "--worker-memory", "60MiB")
    assert status == 0, err
    assert_all_done_once(share, share.ids())
    grown = [float(size) for size in re.findall(r"this worker grew by ([\d.]+) MiB since its first job", machine_log_text(share.machine_dir))]
    assert grown and max(grown) <= 60 + 20 + 8, grown  # the limit, one job's growth, and the interpreter's own


@pytest.mark.parametrize("durations", [[0.05, 0.001, 0.001, 0.001, 0.001, 0.001], [0.001] * 6, [0.09, 0.09, 0.001, 0.001, 0.001, 0.001]])
def test_a_fast_leak_is_read_within_a_job_of_the_limit_whatever_the_jobs_lengths(monkeypatch, durations):
    """The readings' schedule, alone, with a fake clock and a fake memory: each job keeps 20 MiB
    (limit 60 MiB). Scheduled by a rate per second, a slow job followed by fast ones (a busy
    host: the CI run that failed grew by 100 MiB) left the next readings for later than the
    jobs that passed the limit. Counted in jobs, the worker is replaced within one job of it,
    whatever each job lasts."""
    from jobsplit import workermemory

    now, used = [0.0], [500 << 20]
    monkeypatch.setattr(workermemory, "memory_in_use", lambda: used[0])
    monkeypatch.setattr(workermemory.time, "monotonic", lambda: now[0])
    watch = workermemory.MemoryWatch(60 << 20)
    for jobs, seconds in enumerate([0.001, *durations], start=1):
        now[0] += seconds
        used[0] += 20 << 20
        if watch.outgrown():
            break
    else:
        pytest.fail("never replaced")
    assert jobs - 1 == 4 and watch.grown == 80 << 20  # the first job's 20 MiB is the baseline


@pytest.mark.parametrize("kind", ["fdleak", "fdleakhole"])
def test_a_worker_whose_jobs_leak_descriptors_is_replaced_before_it_runs_out(tmp_path, kind):
    """Jobs that each leave 20 descriptors open in their worker for good (files opened and kept,
    never closed), one worker, a soft limit of 256 open files. The worker was never replaced:
    once its descriptors ran out, every job after that failed at once ("Too many open files"),
    so a long run's whole remaining share was burnt through as failed within seconds. Now a
    worker that has used up half the descriptors it had free after its first job is replaced
    between two jobs: every job is done once, and the log says why workers were replaced.
    ``fdleakhole`` keeps each one opened while another was, then closed: the lowest free number
    stays put below the kept ones, and a count by it alone never saw the leak."""
    share = HardeningShare(tmp_path, kinds_spec([[kind, i, 20] for i in range(40)]))
    process = share.start("--workers", "1", "--retries", "0", preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1])))
    status, _, err = communicate(process, WATCHDOG)
    assert status == 0, err
    assert_all_done_once(share, share.ids())
    workers = set(share.pids.read_text().split())
    assert len(workers) >= 4, workers  # 800 descriptors left open, at most about 120 a worker
    assert share.log().count("a new worker takes its place") == len(workers) - 1


@pytest.mark.parametrize("hole", [False, True])
@pytest.mark.parametrize("per_job", [0, 1, 40, 90])
def test_a_worker_is_replaced_before_its_jobs_leave_it_no_descriptor(monkeypatch, per_job, hole):
    """The watch alone, on this process's real descriptors, with a limit of 200 more than it
    holds now: jobs that each leave ``per_job`` open are found out before none is left, however
    fast they leak, and jobs that leave none never are. With ``hole``, each kept one is opened
    while another was, which is then closed: the lowest free number stays put below the kept
    ones, and a count by it (the watch's first design) never saw them."""
    from jobsplit import workerfiles

    kept: list[int] = []
    probe = os.open(os.devnull, os.O_RDONLY)
    try:
        free = os.dup(probe)
        os.close(free)
        monkeypatch.setattr(workerfiles, "_soft_limit", lambda: free + 200)
        watch = workerfiles.DescriptorWatch(probe)
        assert not watch.outgrown()  # the first job: the baseline
        for _ in range(500):
            for _ in range(per_job):
                other = os.open(os.devnull, os.O_RDONLY) if hole else None
                kept.append(os.open(os.devnull, os.O_RDONLY))
                if other is not None:
                    os.close(other)
                if max(kept) >= free + 200:
                    pytest.fail(f"the jobs left {len(kept)} open, past the limit, before the worker was replaced")
            if watch.outgrown():
                break
        else:
            assert per_job == 0
            return
        assert per_job and len(kept) >= 90, len(kept)  # the mark is 100 above: a few numbers taken meanwhile by pytest's own threads
        assert f"descriptor {watch.mark:,} is open after job j" in watch.explain("j"), watch.explain("j")
    finally:
        for fd in [probe, *kept]:
            os.close(fd)


def test_a_worker_left_no_descriptor_says_so_with_the_limit_in_force(monkeypatch):
    """A job that takes every descriptor (or lowers its own ``ulimit -n`` first, as fdfill does)
    leaves no reading to count from: the warning said "at least 0 open ..., none after the
    first, half or more of the 20,000 this worker may open", the count and limit of the worker's
    start. It now says that none is left, with the limit in force."""
    from jobsplit import workerfiles

    watch = workerfiles.DescriptorWatch()
    monkeypatch.setattr(workerfiles, "_free_from", lambda probe, lowest: None)
    monkeypatch.setattr(workerfiles, "_soft_limit", lambda: 80)
    assert watch.outgrown()
    said = watch.explain("j1")
    assert said.startswith("this worker has no descriptor left after job j1 (all 80 descriptors this worker may open (`ulimit -n`) are open)"), said
    assert "at least 0" not in said and "none after the first" not in said, said


def test_what_a_worker_s_first_job_keeps_is_not_a_leak(tmp_path):
    """A first job that keeps 80 MiB (a library it imports, a model it loads once), and jobs that
    keep nothing after it: with --worker-memory 50MiB the one worker runs every job. Counted
    from the worker's start, the limit replaced it after every job, each new worker loading the
    80 MiB again."""
    share = HardeningShare(tmp_path, kinds_spec([["loadonce", i, 80] for i in range(8)]))
    status, _, err = share.run("--workers", "1", "--worker-memory", "50MiB")
    assert status == 0, err
    assert_all_done_once(share, share.ids())
    assert len(set(share.pids.read_text().split())) == 1
    assert "a new worker takes its place" not in machine_log_text(share.machine_dir)


def watched_in(share: HardeningShare, procs: Path) -> tuple[int, str, str]:
    """Run the share (no retries) with the run, and so its workers, in the cgroup of ``procs``."""
    process = share.start("--workers", "2", "--retries", "0", preexec_fn=lambda: procs.write_text(str(os.getpid())))
    return communicate(process, WATCHDOG)


V1_MOUNTS = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""


@pytest.mark.parametrize(
    ("cgroups", "mounts", "files"),
    [
        ("4:memory:/slurm/job_7\n1:cpu:/\n0::/\n", V1_MOUNTS, ["/sys/fs/cgroup/memory/slurm/job_7/memory.oom_control", "/sys/fs/cgroup/unified/memory.events"]),
        ("0::/user.slice/run-1.scope\n", "29 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n", ["/sys/fs/cgroup/user.slice/run-1.scope/memory.events"]),
        ("0::/docker/abc\n", "29 23 0:26 /docker/abc /sys/fs/cgroup ro,nosuid - cgroup2 cgroup2 rw\n", ["/sys/fs/cgroup/memory.events"]),  # a container sees its own group as the root
        ("0::/elsewhere\n", "29 23 0:26 /docker/abc /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n", []),  # mounted, but not our group
        ("", "", []),
    ],
    ids=["v1 hybrid", "v2", "v2 in a container", "v2 not ours", "no cgroups"],
)
def test_the_oom_counter_is_the_memory_cgroup_s_own(cgroups, mounts, files):
    """The out-of-memory kills are read for the run's own memory cgroup, wherever it is mounted,
    so that one cgroup's kills (another Slurm job's) are never taken for this run's."""
    assert oom_counter_files(cgroups, mounts) == files


def _entry_code(*command: str | Path, cwd: Path) -> str:
    """The entry code ``--version`` shows, the entry run as ``command``."""
    shown = subprocess.run([sys.executable, *map(str, command), "--version"], cwd=cwd, env=entry_env(), capture_output=True, text=True, timeout=60)
    found = re.search(r"\(entry code ([0-9a-f]{12}|unknown)\)", shown.stdout)
    assert shown.returncode == 0 and found, (shown.stdout, shown.stderr)
    return found.group(1)


PACKAGE_ENTRY = 'import jobsplit\nfrom study.helpers import work\n\n\ndef job(x, random_obj, config, progress):\n    return work(x)\n\n\nif __name__ == "__main__":\n    jobsplit.main(job, list(range(6)))\n'


@pytest.mark.parametrize("module", ["study.run", "study"], ids=["python -m study.run", "python -m study"])
def test_an_entry_run_as_a_module_of_a_package_covers_the_package_s_own_modules(tmp_path, module):
    """``python -m study.run``, whose ``from study.helpers import work`` was looked for in
    study/study/: two hosts whose helpers differed (a bug fixed on one) showed one code, and
    merge-results took their rows as of one code; the package's ``__init__.py`` was never covered."""
    from jobsplit.fingerprint import file_fingerprint, local_modules

    study = tmp_path / "study"
    study.mkdir()
    (study / "__init__.py").write_text("")
    (study / "helpers.py").write_text("def work(x):\n    return x + 1\n")
    entry = study / ("run.py" if module == "study.run" else "__main__.py")
    entry.write_text(PACKAGE_ENTRY)
    name = "study.run" if module == "study.run" else "study.__main__"
    assert [p.relative_to(tmp_path).as_posix() for p in local_modules(entry, name)] == ["study/__init__.py", "study/helpers.py"]
    before = _entry_code("-m", module, cwd=tmp_path)
    assert before == file_fingerprint(entry, name)
    (study / "helpers.py").write_text("def work(x):\n    return x * 1000  # a bug fixed\n")
    assert _entry_code("-m", module, cwd=tmp_path) not in (before, "unknown")
    (study / "__init__.py").write_text("SCALE = 2\n")
    assert _entry_code("-m", module, cwd=tmp_path) == file_fingerprint(entry, name)


def test_a_profiled_run_of_an_entry_whose_job_is_imported_has_the_entry_s_fingerprint(tmp_path):
    """Under ``python -m cProfile entry.py`` the fingerprint was taken from the job's module if it
    ran as ``__main__``, else from ``__main__``: for a job imported from a module of the project
    (or a callable object), that was cProfile.py, so the entry and its helpers changed unseen."""
    (tmp_path / "jobs_mod.py").write_text("def job(x, random_obj, config, progress):\n    return x, 1\n")
    (tmp_path / "entry.py").write_text('import jobsplit\nfrom jobs_mod import job\n\nif __name__ == "__main__":\n    jobsplit.main(job, list(range(6)))\n')
    plain = _entry_code("entry.py", cwd=tmp_path)
    assert _entry_code("-m", "cProfile", "-o", tmp_path / "run.prof", "entry.py", cwd=tmp_path) == plain != "unknown"
    write_config_dir(tmp_path, header=(*HEADER[:3], "Value", "One"), machines={"solo": [1.0, 1]})  # beside the entry, which was looked for beside cProfile.py
    (tmp_path / "elsewhere").mkdir()
    digest = subprocess.run([sys.executable, "-m", "cProfile", "-o", tmp_path / "run.prof", tmp_path / "entry.py", "digest"], cwd=tmp_path / "elsewhere", env=entry_env(), capture_output=True, text=True, timeout=60)
    assert digest.returncode == 0 and f"the config files are read from {tmp_path}, the program's own folder" in " ".join(digest.stderr.split()), digest.stderr


def test_results_of_unknown_code_beside_known_code_are_said_to_be_unchecked(tmp_path):
    """A host that ran the entry as ``python -c "$(cat entry.py)"`` recorded its code as unknown,
    without a word, and merge-results left such rows out of its check: the other host's rows, of
    another version of the job, merged as complete and unremarked."""
    write_config_dir(tmp_path, header=(*HEADER[:3], "Value"), machines=TWO_MACHINES)
    source = 'import jobsplit\n\ndef job(x, random_obj, config, progress):\n    return x * VERSION\n\njobsplit.main(job, list(range(6)))\n'
    (tmp_path / "entry.py").write_text(source.replace("VERSION", "2"))
    env = run_env(tmp_path)
    args = ["run", "--yes", "--console", "plain", "--out", str(tmp_path / "out"), "--machine"]
    without_file = subprocess.run([sys.executable, "-c", source.replace("VERSION", "1"), *args, "m1"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert without_file.returncode == 0, without_file.stderr
    assert "note: the entry's code is unknown (it has no file, as with python -c" in " ".join(without_file.stderr.split())
    with_file = subprocess.run([sys.executable, "entry.py", *args, "m2"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert with_file.returncode == 0 and "code is unknown" not in with_file.stderr, with_file.stderr
    merged = subprocess.run([sys.executable, "-m", "jobsplit", "merge-results", str(tmp_path / "out"), "-o", str(tmp_path / "merged.csv")], env=env, capture_output=True, text=True, timeout=60)
    said = " ".join(merged.stderr.split())
    assert merged.returncode == 0 and "note: the code of the results of m1 (" in said and "cannot be checked" in said, merged.stderr


def test_a_module_entry_of_an_installed_package_is_fingerprinted_as_a_script_and_one_elsewhere_as_a_module(tmp_path):
    """The package root (its top package's parent) was taken for the entry's folder wherever
    ``python -m`` found the package: for an installed one, that is site-packages, and every
    installed package its modules import was covered (661 files, 8.6 s, for a pandas module;
    pytest's own for ``python -m pytest``), so a NumPy patch release made mixed code. A package
    of the user's found elsewhere (``PYTHONPATH``) stays covered, and sbatch starts it as a module."""
    import sysconfig

    from jobsplit.fingerprint import _package_root, file_fingerprint

    installed = Path(sysconfig.get_path("purelib"))
    assert _package_root(installed / "study" / "run.py", "study.run") is None
    assert _package_root(tmp_path / "lib" / "study" / "run.py", "study.run") == tmp_path / "lib"
    package = tmp_path / "lib" / "study"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "run.py").write_text(PACKAGE_ENTRY)
    (package / "helpers.py").write_text("def work(x):\n    return x\n")
    (tmp_path / "elsewhere").mkdir()
    shown = subprocess.run([sys.executable, "-m", "study.run", "--version"], cwd=tmp_path / "elsewhere", env=entry_env(PYTHONPATH=str(tmp_path / "lib")), capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and f"(entry code {file_fingerprint(package / 'run.py', 'study.run')})" in shown.stdout, (shown.stdout, shown.stderr)
    assert file_fingerprint(package / "run.py", "study.run") != file_fingerprint(package / "run.py")  # its helpers are covered


def test_a_script_a_profiler_runs_as_a_namespace_named_main_is_a_script():
    """From Python 3.12, cProfile gives the script it runs ``__spec__ = ModuleSpec("__main__")``:
    taken for a module, sbatch wrote ``python -m __main__``, which failed in every task."""
    from importlib.machinery import ModuleSpec

    from jobsplit.fingerprint import entry_script

    entry = Path(sys.path[0] or os.curdir).resolve() / "entry.py"
    names = {"__name__": "__main__", "__file__": str(entry), "__spec__": ModuleSpec("__main__", None), "entry_script": entry_script}
    exec("found = entry_script()", names)  # a namespace of its own, as the profiler's
    assert names["found"] == (entry, None)
