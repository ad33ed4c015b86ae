"""The one-file executable, end to end (issue 6): built once, run as three hosts at once.

The hosts get an environment without PYTHONPATH/PYTHONHOME and a PATH with no Python at all,
so anything the program needs must be inside the bundle. One host is killed with SIGKILL
mid-run (the bootloader, as a user's `kill -9` would) and resumed; then the merge tools,
from the same executable, must find every job exactly once and merge the three logs.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import pty
import re
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from balancehosts import gate
from conftest import error_lines
from jobsplit.fingerprint import file_fingerprint, local_modules
from jobsplit.idhelper import HELPER_FLAG

ROOT = Path(__file__).resolve().parents[1]
MACHINES = {"fast": [2.0, 2], "mid": [1.0, 2], "slow": [0.5, 1]}
CONFIG = "[jobsplit]\nstrategy = quota\n\n[e2e]\npause = 0.2\n"
HEADER = "Run Start Time,Job Running Time,Job Start Time,Index,Draw\n"

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="built and tested on Linux")]


_PRIVATE_TMP: list[Path] = []


@pytest.fixture(autouse=True)
def _remove_private_tmp() -> Iterator[None]:
    yield
    while _PRIVATE_TMP:
        folder = _PRIVATE_TMP.pop()
        shutil.rmtree(folder, ignore_errors=True)


def bare_env(tmp: Path) -> dict[str, str]:
    """No Python anywhere: an empty PATH entry, no PYTHON* variables, a private TMPDIR and host.ini.
    The TMPDIR is short (removed after the test): a fork server's socket lives there, and a
    socket's path may not pass 107 bytes (under pytest's folders, /tmp/pytest-of-root/pytest-143/
    popen-gw0/test_..., it failed as "AF_UNIX path too long" once the run counter had 3 digits)."""
    empty_bin = tmp / "empty-bin"
    empty_bin.mkdir(exist_ok=True)
    _PRIVATE_TMP.append(private := Path(tempfile.mkdtemp(prefix="js-")))
    return {"PATH": str(empty_bin), "HOME": str(tmp), "TMPDIR": str(private), "XDG_CONFIG_HOME": str(tmp / "xdg"), "NO_COLOR": "1", "LANG": "C.UTF-8"}


def host(tmp: Path, name: str, executable: Path) -> Path:
    """A host: its own folder with the executable and the three config files, as copied by a user."""
    folder = tmp / name
    folder.mkdir()
    shutil.copy2(executable, folder / "e2e")
    (folder / "config.ini").write_text(CONFIG)
    (folder / "header.csv").write_text(HEADER)
    (folder / "machines.json").write_text(json.dumps(MACHINES))
    return folder


def start(folder: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["./e2e", *args], cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )


def processes_of(folder: Path) -> list[int]:
    """Pids of processes whose executable is this host's copy of the program."""
    target = str(folder / "e2e")
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "exe") == target:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def done_count(folder: Path, machine: str) -> int:
    results = folder / "jobsplit-out" / machine / "results.csv"
    return max(0, len(results.read_text().splitlines()) - 1) if results.exists() else 0


def test_three_hosts_kill_resume_and_merge(executable: Path, tmp_path: Path) -> None:
    """The slow host's jobs past its 4th wait at a gate until it is killed: a busy host's test
    killed it after its share of 2 s had ended."""
    env = bare_env(tmp_path)
    hosts = {name: host(tmp_path, name, executable) for name in MACHINES}
    digest = subprocess.run(["./e2e", "digest"], cwd=hosts["fast"], env=env, capture_output=True, text=True, timeout=60)
    assert digest.returncode == 0, digest.stdout + digest.stderr
    expected = digest.stdout.strip()
    plan = json.loads(subprocess.run(["./e2e", "plan", "--json"], cwd=hosts["slow"], env=env, capture_output=True, text=True, timeout=60).stdout)
    assert plan["digest"] == expected  # the same files give the same digest on another host
    parts = [subprocess.run(["./e2e", "digest", "--parts"], cwd=hosts[name], env=env, capture_output=True, text=True, timeout=60) for name in ("fast", "slow")]
    assert parts[0].returncode == 0 and parts[0].stdout.startswith(expected + "\n") and parts[0].stdout == parts[1].stdout, parts
    wrong = subprocess.run(["./e2e", "run", "--machine", "fast", "--expect-digest", "0" * 32], cwd=hosts["fast"], env=env, capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and "compare `./e2e digest --parts` here" in wrong.stderr, wrong.stderr  # the program as it was started

    held_back = gate(tmp_path / "gate", 4)  # the victim's jobs past its 4th wait for its kill (never opened)
    runs = {
        name: start(folder, {**env, **(held_back if name == "slow" else {})}, "run", "--machine", name, "--yes", "--expect-digest", expected.upper(), "--console", "plain",
                    *(["--start-method", "spawn"] if name == "mid" else []))
        for name, folder in hosts.items()
    }
    victim = hosts["slow"]
    deadline = time.monotonic() + 60
    while done_count(victim, "slow") < 3:
        assert time.monotonic() < deadline and runs["slow"].poll() is None, "the slow host should still be running"
        time.sleep(0.1)
    runs["slow"].send_signal(signal.SIGKILL)  # the bootloader: the Python side must notice
    runs["slow"].wait(10)
    deadline = time.monotonic() + 30  # a watchdog: killed programs go at once, a busy machine is slow
    while processes_of(victim) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_of(victim) == [], "killing the executable must not leave processes computing"
    interrupted_at = done_count(victim, "slow")
    assert interrupted_at < plan["machines"][[m["name"] for m in plan["machines"]].index("slow")]["jobs"]

    resumed = subprocess.run(["./e2e", "run", "--machine", "slow", "--yes", "--console", "plain"], cwd=victim, env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resuming: {interrupted_at} done" in resumed.stdout + resumed.stderr
    for name, process in runs.items():
        if name != "slow":
            output, _ = process.communicate(timeout=120)
            assert process.returncode == 0, output

    collected = tmp_path / "collected"
    for name, folder in hosts.items():
        shutil.copytree(folder / "jobsplit-out" / name, collected / name)
    merged = subprocess.run(["./e2e", "merge-results", str(collected), "-o", str(tmp_path / "merged.csv")], cwd=hosts["fast"], env=env, capture_output=True, text=True, timeout=60)
    assert merged.returncode == 0, merged.stdout + merged.stderr
    with open(tmp_path / "merged.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["Job ID"] for r in rows) == sorted(i for m in plan["machines"] for i in m["job_ids"])
    assert sorted(int(r["Index"]) for r in rows) == list(range(60))
    for row in rows:
        owner = next(m["name"] for m in plan["machines"] if row["Job ID"] in m["job_ids"])
        assert row["Machine"] == owner
    # The executable's code fingerprint is its script's, the module of its folder it imports
    # included: in --version and on every row.
    entry = ROOT / "tests" / "frozen" / "e2e_entry.py"
    assert [module.name for module in local_modules(entry)] == ["e2e_steps.py"]
    code = file_fingerprint(entry)
    version = subprocess.run(["./e2e", "--version"], cwd=hosts["fast"], env=env, capture_output=True, text=True, timeout=60)
    assert f"(entry code {code})" in version.stdout, version.stdout
    assert {row["Code"] for row in rows} == {code}

    logs = subprocess.run(["./e2e", "merge-logs", *map(str, sorted(collected.iterdir())), "-o", str(tmp_path / "all.log.gz")], cwd=hosts["fast"], env=env, capture_output=True, text=True, timeout=60)
    assert logs.returncode == 0, logs.stdout + logs.stderr
    lines = gzip.decompress((tmp_path / "all.log.gz").read_bytes()).decode().splitlines()
    finished = [line for line in lines if " job " in line and line.endswith("finished")]
    assert len({line.split()[-2] for line in finished}) == 60  # every job's own log line, from three hosts
    stamps = [line[:24] for line in lines if line[:1].isdigit()]
    assert stamps == sorted(stamps)
    assert {line.split()[1] for line in lines if line[:1].isdigit()} == set(MACHINES)


def test_interactive_run_through_a_terminal(executable: Path, tmp_path: Path) -> None:
    """The frozen program asks which machine it is and for confirmation, on a real terminal."""
    folder = host(tmp_path, "desk", executable)
    (folder / "config.ini").write_text(CONFIG.replace("pause = 0.2", "pause = 0.01"))
    env = bare_env(tmp_path)  # here, where its TMPDIR is removed after the test
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec the program on the terminal
        os.chdir(folder)
        os.execve("./e2e", ["./e2e", "run", "--console", "plain"], env)
    transcript = b""

    def read_until(needle: bytes, timeout: float = 30) -> None:
        nonlocal transcript
        deadline = time.monotonic() + timeout
        while needle not in transcript:
            assert time.monotonic() < deadline, transcript.decode(errors="replace")
            if select.select([fd], [], [], 0.2)[0]:
                try:
                    transcript += os.read(fd, 4096)
                except OSError:  # the program ended and closed the terminal
                    break

    read_until(b"Number or name")
    assert b"Which machine is this?" in transcript and b"2) mid" in transcript
    os.write(fd, b"3\n")  # machines are listed by name: fast, mid, slow
    read_until(b"Start? [y/N]")
    os.write(fd, b"y\n")
    read_until(b"Results:")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, transcript.decode(errors="replace")
    with open(folder / "jobsplit-out" / "slow" / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and {r["Machine"] for r in rows} == {"slow"}


def test_init_writes_the_bundled_templates(executable: Path, tmp_path: Path) -> None:
    folder = tmp_path / "fresh"
    folder.mkdir()
    result = subprocess.run([str(executable), "init"], cwd=folder, env=bare_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for name in ("config.ini", "header.csv", "machines.json"):
        assert (folder / name).read_bytes() == (ROOT / "templates" / name).read_bytes()


def test_config_beside_the_executable(executable: Path, tmp_path: Path) -> None:
    """Started from elsewhere, the program reads the config files next to itself."""
    folder = host(tmp_path, "beside", executable)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    here = subprocess.run([str(folder / "e2e"), "digest"], cwd=elsewhere, env=bare_env(tmp_path), capture_output=True, text=True, timeout=60)
    there = subprocess.run(["./e2e", "digest"], cwd=folder, env=bare_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert here.returncode == 0 and here.stdout == there.stdout, here.stderr
    said = " ".join(here.stderr.split())  # a machines.json edited in the folder it was started from is not the one read: said so
    assert f"note: there is no config.ini here: the config files are read from {folder}, the program's own folder" in said, here.stderr
    assert "note:" not in there.stderr, there.stderr


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="runs the program as a user id without an account: needs root")
def test_a_user_without_a_home_folder_runs_the_program(executable: Path) -> None:
    """A container run with an arbitrary user id (``--user 4242``) and no HOME: platformdirs can
    find no folder for host.ini (nor for the notes of where shares ran), and raised, so the run
    ended in a traceback before it started. Now it runs without them, leaving no ``~`` folder."""
    user = 4242
    import pwd

    with pytest.raises(KeyError):
        pwd.getpwuid(user)  # an id without an account here
    with tempfile.TemporaryDirectory() as tmp:  # outside pytest's own temporary folder, which only root may enter
        root = Path(tmp)
        folder = host(root, "container", executable)
        for path in (root, folder, *folder.iterdir()):
            path.chmod(0o777)
        env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(folder), "NO_COLOR": "1", "LANG": "C.UTF-8"}  # no HOME, no XDG_*
        result = subprocess.run(
            ["./e2e", "run", "--machine", "slow", "--yes", "--console", "plain"], cwd=folder, env=env, capture_output=True, text=True, timeout=120,
            user=user, group=user, extra_groups=[],
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        assert "slow: " in result.stdout + result.stderr and done_count(folder, "slow") > 0
        assert not any(path.name == "~" for path in folder.rglob("*")), sorted(folder.rglob("*"))


def test_ctrl_c_stops_the_frozen_program_cleanly(executable: Path, tmp_path: Path) -> None:
    """Ctrl-C reaches a one-file program twice (directly, and forwarded by its bootloader): one
    clean stop, exit status 130, no process left, a readable log, and a resumable journal. The
    jobs past the 4th wait at a gate, never opened: a busy host's Ctrl-C came after a run of 3 s
    had ended."""
    folder = host(tmp_path, "desk", executable)
    env = bare_env(tmp_path)
    run = start(folder, {**env, **gate(tmp_path / "gate", 4)}, "run", "--machine", "fast", "--yes", "--console", "plain")
    deadline = time.monotonic() + 60
    while done_count(folder, "fast") < 2:
        assert time.monotonic() < deadline and run.poll() is None, "the run should still be going"
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    output, _ = run.communicate(timeout=60)  # a watchdog, not a measure: a busy machine is slow, not wrong
    assert run.returncode == 130, output
    assert "Traceback" not in output and "Resume with" in output
    assert processes_of(folder) == []
    log = folder / "jobsplit-out" / "fast" / "fast.log.gz"
    assert "interrupted" in gzip.decompress(log.read_bytes()).decode()
    resumed = subprocess.run(["./e2e", "run", "--machine", "fast", "--yes", "--console", "plain"], cwd=folder, env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    with open(folder / "jobsplit-out" / "fast" / "results.csv", newline="") as f:
        ids = [row["Job ID"] for row in csv.DictReader(f)]
    assert len(ids) == len(set(ids)) > 2


def test_the_executable_starts_itself_as_the_id_helper(executable: Path, tmp_path: Path) -> None:
    """A pool of 600,000 jobs (issue 14): the program starts a copy of itself as the id helper,
    which its runtime hook turns into the helper before the entry would build the pool again,
    and the digest is the one Python computes from the same entry alone."""
    folder = host(tmp_path, "big", executable)
    env = {**bare_env(tmp_path), "JOBSPLIT_TEST_POOL": "600000"}
    program = start(folder, env, "digest")
    helpers = set()  # copies started as the helper that got as far as mapping the memory for the ids
    while program.poll() is None:
        for pid in processes_of(folder):
            try:
                if HELPER_FLAG.encode() in Path(f"/proc/{pid}/cmdline").read_bytes() and "memfd:jobsplit-ids" in Path(f"/proc/{pid}/maps").read_text():
                    helpers.add(pid)
            except OSError:
                continue  # it has just exited
        time.sleep(0.005)
    output = program.communicate()[0]
    assert program.returncode == 0, output
    alone = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "frozen" / "e2e_entry.py"), "digest", "--config-dir", str(folder)],
        env={**os.environ, "JOBSPLIT_TEST_POOL": "600000", "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    digest = re.compile(r"[0-9a-f]{4}(?:-[0-9a-f]{4}){7}")
    assert digest.findall(output) == digest.findall(alone.stdout) != []
    assert helpers, "no id helper was seen at work"
    assert processes_of(folder) == []


def test_the_executable_acts_as_python_for_the_helpers_libraries_start(executable: Path, tmp_path: Path) -> None:
    """joblib's pool (scikit-learn's ``n_jobs``) starts its workers and its resource tracker as
    ``sys.executable -m ...`` and ``sys.executable -c ...``: the program, which took those
    arguments for its own and exited ("unrecognized arguments"), so every job that used joblib
    failed. Started so, it now acts as Python, before the entry builds its pool; its own
    command line is unchanged."""
    env = bare_env(tmp_path)
    code = subprocess.run([str(executable), "-B", "-S", "-I", "-c", "import sys; print(sys.argv); raise SystemExit(3)", "a"], env=env, capture_output=True, text=True, timeout=60)
    assert (code.returncode, code.stdout) == (3, "['-c', 'a']\n"), code.stderr
    failing = subprocess.run([str(executable), "-c", "1 / 0"], env=env, capture_output=True, text=True, timeout=60)
    assert failing.returncode == 1 and "ZeroDivisionError" in failing.stderr
    (tmp_path / "analysis.py").write_text("import sys\nprint(sys.argv[1:])\n")
    script = subprocess.run([str(executable), str(tmp_path / "analysis.py"), "x"], env=env, capture_output=True, text=True, timeout=60)
    assert (script.returncode, script.stdout) == (0, "['x']\n"), script.stderr
    assert subprocess.run([str(executable), "--version"], env=env, capture_output=True, text=True, timeout=60).stdout.startswith("jobsplit ")

    folder = host(tmp_path, "sklearn", executable)
    log = run_cube_sums(folder, env, "joblib = yes")
    assert "unrecognized arguments" not in log and "the job left" not in log, log[:2000]
    assert processes_of(folder) == []


def run_cube_sums(folder: Path, env: dict[str, str], setting: str, *flags: str) -> str:
    """Run machine ``mid`` of a host whose jobs sum cubes on a pool of their own (``setting``, a
    line of [e2e]); check every row's sum; the machine's log."""
    (folder / "config.ini").write_text(CONFIG + setting + "\n")
    run = subprocess.run(["./e2e", "run", "--machine", "mid", "--yes", "--console", "plain", *flags], cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    with open(folder / "jobsplit-out" / "mid" / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(int(r["Draw"]) == sum(i**3 for i in range(int(r["Index"]) + 1)) for r in rows)
    return gzip.decompress((folder / "jobsplit-out" / "mid" / "mid.log.gz").read_bytes()).decode()


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_a_job_s_own_multiprocessing_pool_runs_in_the_executable(executable: Path, tmp_path: Path, method: str) -> None:
    """A job's own pool of processes, started as ``forkserver`` (Linux's default from Python
    3.14) or ``spawn``. The fork server was run as plain ``python -c``, without the entry, so
    its children found no entry to take the job's function from and died as they started; the
    pool started others for ever, and every such job hung (here, until its --timeout)."""
    folder = host(tmp_path, method, executable)
    log = run_cube_sums(folder, {**bare_env(tmp_path), "JOBSPLIT_TEST_POOL": "8"}, f"pool = {method}", "--timeout", "30")
    assert "Traceback" not in log and "the job left" not in log, log[:3000]
    assert processes_of(folder) == []


def test_a_run_whose_unpacked_folder_is_emptied_says_so_and_resumes(executable: Path, tmp_path: Path) -> None:
    """A clean-up of old files in /tmp (systemd-tmpfiles: after 10 days) empties a one-file
    program's ``_MEI...`` folder under a run of weeks: its new spawn workers cannot start, and the
    run blamed the entry's top-level code. It names the folder and how to go on; run again, the
    program unpacks itself anew and resumes."""
    folder = host(tmp_path, "cleaned", executable)
    env = bare_env(tmp_path)
    args = ["run", "--machine", "fast", "--yes", "--console", "plain", "--start-method", "spawn", "--workers", "2", "--timeout", "0.1"]
    run = start(folder, env, *args)  # every job times out: its worker is replaced, again and again
    unpacked = Path(env["TMPDIR"])
    deadline = time.monotonic() + 60
    while not any(unpacked.glob("_MEI*/base_library.zip")) or len(processes_of(folder)) < 3:  # the bootloader, the run, a worker
        assert time.monotonic() < deadline and run.poll() is None, "the run should still be going"
        time.sleep(0.05)
    for mei in unpacked.glob("_MEI*"):
        shutil.rmtree(mei)
    output, _ = run.communicate(timeout=120)
    (said,) = error_lines(output)  # above it, what the dying workers printed
    assert run.returncode == 2, output
    assert "worker processes in a row exited as they started" in said and "has been emptied since it started" in said, output
    assert "run the same command again to resume" in said and "MODE=onedir" in said, output
    resumed = subprocess.run(["./e2e", *args[:-2]], cwd=folder, env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr


def test_jobs_that_fail_once_the_unpacked_folder_is_emptied_stay_pending_and_the_run_says_why(executable: Path, tmp_path: Path) -> None:
    """Under the default start method (fork), no worker needs the emptied ``_MEI...`` folder to
    start, so the run went on, and every job that started a program from ``sys.executable`` (as
    libraries do) or imported a module not loaded yet failed, recorded as
    failed, with errors that named no cause: the rest of a share of weeks turned to failures. A
    failure once the folder is gone is no job's: it stays pending, and the run stops saying why;
    run again, it resumes with nothing failed."""
    folder = host(tmp_path, "cleaned-fork", executable)
    (folder / "config.ini").write_text(CONFIG + "python = yes\n")
    env = {**bare_env(tmp_path), "JOBSPLIT_TEST_POOL": "40"}
    args = ["run", "--machine", "mid", "--yes", "--console", "plain"]
    run = start(folder, env, *args)
    journal = folder / "jobsplit-out" / "mid" / "journal.sqlite"
    deadline = time.monotonic() + 120
    while not (journal.exists() and _done_count(journal) >= 2):
        assert time.monotonic() < deadline and run.poll() is None, "the run should still be going"
        time.sleep(0.05)
    for mei in Path(env["TMPDIR"]).glob("_MEI*"):
        shutil.rmtree(mei)
    output, _ = run.communicate(timeout=120)
    (said,) = error_lines(output)
    assert run.returncode == 2, output
    assert said.startswith("error: a job failed (it stays pending, as do the others): the folder this program unpacked itself into"), output
    assert "has been emptied since it started" in said and "run the same command again to resume" in said, output
    with sqlite3.connect(journal) as db:
        assert db.execute("SELECT COUNT(*) FROM jobs WHERE state = 'failed'").fetchone() == (0,)
    resumed = subprocess.run(["./e2e", *args], cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    with sqlite3.connect(journal) as db:
        assert [state for state, in db.execute("SELECT DISTINCT state FROM jobs")] == ["done"]  # the machine's whole share


def _done_count(journal: Path) -> int:
    try:
        with sqlite3.connect(f"file:{journal}?mode=ro", uri=True) as db:
            return int(db.execute("SELECT COUNT(*) FROM jobs WHERE state = 'done'").fetchone()[0])
    except sqlite3.Error:
        return 0  # not created yet


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="reads a folder as a user who cannot write it: needs root to make one")
def test_a_finished_folder_the_user_cannot_write_is_read_by_the_tools(executable: Path) -> None:
    """An archive, a colleague's folder: every tool failed on it, "attempt to write a readonly
    database; copy it again from its host", SQLite making a -shm file beside the journal to read
    it. A finished journal (no -wal) there is read as it is."""
    user = 4242
    with tempfile.TemporaryDirectory() as tmp:  # outside pytest's own temporary folder, which only root may enter
        root = Path(tmp)
        folder = host(root, "archive", executable)
        ran = subprocess.run(["./e2e", "run", "--machine", "slow", "--yes", "--console", "plain"], cwd=folder, env=bare_env(root), capture_output=True, text=True, timeout=120)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        machine = folder / "jobsplit-out" / "slow"
        assert not (machine / "journal.sqlite-wal").exists()
        for path in (root, folder, folder / "e2e"):
            path.chmod(0o755)
        for path in (folder / "jobsplit-out", machine, *machine.iterdir()):
            path.chmod(0o555 if path.is_dir() else 0o444)  # read-only to everyone but root
        env = {"PATH": "/usr/bin:/bin", "HOME": str(root), "TMPDIR": tmp, "NO_COLOR": "1", "LANG": "C.UTF-8"}
        for tool in (["merge-results", str(machine), "-o", "-", "--allow-missing"], ["status", str(machine)]):
            result = subprocess.run(["./e2e", *tool], cwd=folder, env=env, capture_output=True, text=True, timeout=120, user=user, group=user, extra_groups=[])
            assert result.returncode in (0, 1) and "error:" not in result.stderr, result.stdout + result.stderr
        assert sorted(p.name for p in machine.iterdir() if p.name.startswith("journal")) == ["journal.sqlite"]  # nothing made beside it


def test_make_exe_of_an_entry_whose_path_has_a_space_is_one_sentence(tmp_path: Path) -> None:
    """make splits a path at its spaces (its dir and notdir functions): the build failed with
    "usage: fingerprint ENTRY.py", which named no cause."""
    entry = tmp_path / "my study" / "entry.py"
    entry.parent.mkdir()
    entry.write_text((Path(__file__).parent / "frozen" / "e2e_entry.py").read_text())
    root = Path(__file__).resolve().parent.parent
    build = subprocess.run(["make", "-s", "exe", f"ENTRY={entry}"], cwd=root, capture_output=True, text=True, timeout=120, check=False)
    assert build.returncode == 2 and f'make exe: ENTRY="{entry}" has a space, which make splits paths at' in build.stderr, build.stderr
