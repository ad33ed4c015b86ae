"""jobsplit on a real Slurm cluster (issue 12, Must show 1-6), with the one-node cluster of
``components.py`` (4 CPUs advertised, so four 1-CPU tasks run at once on two real cores).

Every script here is written by ``sbatch`` and submitted as written (``--submit``, or the
fixture's ``sbatch`` for a script on disk). "Another host" (a login node) is a UTS namespace
with its own hostname: ``status`` and ``merge-results`` there must go by the progress snapshots
and leave the journals of running tasks alone. Jobs take 50-80 ms.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from components import SlurmCluster, wait_for
from jobsplit.pool import job_id as id_of
from jobsplit.schedulers.slurm import format_indices

ROOT = Path(__file__).resolve().parents[1]
HEADER = "Run Start Time,Job Running Time,Job Start Time,Index,Draw\n"
SEED = "cluster test"
LOGIN = "login-node"
"""The hostname of the "other host" the watching commands run on."""

ENTRY = '''\
"""The cluster tests' entry: each job appends "TASK INDEX" to JOBSPLIT_TEST_STARTS when it starts
and to JOBSPLIT_TEST_SIDE when it finishes; while the file JOBSPLIT_TEST_HOLD exists, jobs wait
(with JOBSPLIT_TEST_HOLD_AFTER=N, only those that start once N jobs of their task finished); while
the file JOBSPLIT_TEST_FAIL exists, jobs whose index is a multiple of 5 raise."""
import os
import time

import jobsplit


def _append(variable, index):
    path = os.environ.get(variable)
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{{os.environ.get('SLURM_ARRAY_TASK_ID', '-')}} {{index}}\\n".encode())
        finally:
            os.close(fd)


def _finished_here():
    path, task = os.environ.get("JOBSPLIT_TEST_SIDE"), os.environ.get("SLURM_ARRAY_TASK_ID", "-")
    if not path or not os.path.exists(path):
        return 0
    with open(path) as f:
        return sum(1 for line in f if line.split()[:1] == [task])


def job(index, random_obj, config, progress):
    _append("JOBSPLIT_TEST_STARTS", index)
    if index % 5 == 0 and os.path.exists(os.environ.get("JOBSPLIT_TEST_FAIL", "/nonexistent")):
        raise RuntimeError("scratch is not mounted")
    hold = os.environ.get("JOBSPLIT_TEST_HOLD")
    if hold and _finished_here() >= int(os.environ.get("JOBSPLIT_TEST_HOLD_AFTER", "0")):
        while os.path.exists(hold):
            time.sleep(0.02)
    time.sleep(config.getfloat("test", "pause"))
    draw = random_obj.random()
    _append("JOBSPLIT_TEST_SIDE", index)
    return index, draw


pool = [(i,) for i in range({jobs})]

if __name__ == "__main__":
    jobsplit.main(job, pool)
'''

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the test cluster runs on Linux")


# --- helpers -------------------------------------------------------------------------------------


class Project:
    """An entry with its config files in ``folder``, run with this interpreter."""

    def __init__(self, folder: Path, machines: dict, *, jobs: int, pause: float, env: dict[str, str]) -> None:
        folder.mkdir(parents=True)
        self.folder, self.out = folder, folder / "out"
        (folder / "entry.py").write_text(ENTRY.format(jobs=jobs), encoding="utf-8")
        (folder / "config.ini").write_text(f"[test]\npause = {pause}\n")
        (folder / "header.csv").write_text(HEADER)
        (folder / "machines.json").write_text(json.dumps(machines))
        self.env = {**env, "XDG_CONFIG_HOME": str(folder / "xdg"), "NO_COLOR": "1", "COLUMNS": "200"}

    def command(self, *args: str | Path) -> list[str]:
        return [sys.executable, str(self.folder / "entry.py"), *map(str, args)]

    def run(self, *args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(*args), cwd=self.folder, env=self.env, capture_output=True, text=True, timeout=timeout, check=False)


def cluster_env(slurm: SlurmCluster, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The cluster's environment (SLURM_CONF, sbin on PATH), which sbatch exports to the tasks."""
    return {**slurm.env, "TMPDIR": str(tmp_path), **extra}


def on_login_node(env: dict[str, str], *argv: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a command as another host: in a new UTS namespace whose hostname is LOGIN."""
    wrapped = ["unshare", "--uts", "sh", "-c", f'hostname {LOGIN} && exec "$@"', "sh", *map(str, argv)]
    return subprocess.run(wrapped, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)


def tool(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "jobsplit", *map(str, args)]


def submitted(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    ids = result.stdout.split()
    assert ids and all(i.isdigit() for i in ids), result.stdout
    return ids


def merged_rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    by_id = {row["Job ID"]: row for row in rows}
    assert len(by_id) == len(rows)
    return by_id


def query(journal: Path, sql: str) -> list[tuple]:
    db = sqlite3.connect(f"{journal.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
    try:
        return list(db.execute(sql))
    except sqlite3.Error:
        return []  # not created yet
    finally:
        db.close()


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def status_rows(text: str) -> dict[str, list[str]]:
    """The status table's rows by machine name."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃|]", line)[1:-1]]
        if len(cells) > 5:
            rows[cells[0]] = cells
    return rows


# --- Must show 1 and 5: an array of 4, watched from the login node, equals a plain run --------


@pytest.mark.slow
def test_an_array_of_4_equals_a_plain_4_machine_run_and_status_watches_it(slurm: SlurmCluster, tmp_path: Path):
    """The array's jobs wait on a hold until status has seen two tasks running and two not
    started: on a busy host, the status calls (a Python each) came after the first two tasks'
    4 s had ended."""
    hold = tmp_path / "hold"
    hold.touch()
    env = cluster_env(slurm, tmp_path, JOBSPLIT_TEST_HOLD=str(hold))
    cluster = Project(tmp_path / "cluster", {"sim": {"speed": 1.0, "cores": 1, "array": 4}}, jobs=200, pause=0.08, env=env)
    (job,) = submitted(cluster.run("sbatch", "--machine", "sim", "--max-parallel", "2", "--seed", SEED, "--out", cluster.out, "--submit"))
    script = (cluster.folder / "sim.sbatch").read_text()
    assert "#SBATCH --array=0-3%2\n" in script and "#SBATCH --cpus-per-task=1\n" in script

    # Must show 5: status from the login node while the array runs (2 at a time)
    watched = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any("running" in states and "not started" in states for states, _ in watched):
        if any((cluster.out / f"sim@{i}" / "progress.json").exists() for i in range(4)):
            result = on_login_node(cluster.env, *tool("status", cluster.out), cwd=tmp_path)
            assert result.returncode == 0, result.stderr
            rows = status_rows(result.stdout)
            states = [rows[f"sim[{i}]"][-1] for i in range(4)]  # every index is listed, started or not
            watched.append((states, result.stdout))
        else:
            time.sleep(0.1)
    hold.unlink()
    states, text = watched[-1]
    assert "running" in states and "not started" in states, watched
    unfinished = [i for i, state in enumerate(states) if state not in ("finished", "running")]
    assert f"with --array={format_indices(unfinished)}" in text, text

    assert slurm.wait_until_done(job, timeout=180) == {f"{job}_{i}": "COMPLETED" for i in range(4)}
    result = on_login_node(cluster.env, *tool("status", cluster.out), cwd=tmp_path)
    assert "sim: nothing to resubmit, every task finished" in result.stdout, result.stdout
    assert all(row[1] in ("50/50",) and row[-1] == "finished" for name, row in status_rows(result.stdout).items() if name.startswith("sim["))
    for i in range(4):  # Slurm's own output per task, appended to: the run's plain console
        (output,) = (cluster.out / "slurm-logs").glob(f"sim-{job}_{i}.out")
        assert f"sim[{i}]: 50 of 50 done" in output.read_text()

    merged = on_login_node(cluster.env, *tool("merge-results", cluster.out, "-o", tmp_path / "cluster.csv"), cwd=tmp_path)
    assert merged.returncode == 0, merged.stdout + merged.stderr
    assert "complete: every job of the plan exactly once" in merged.stderr
    cluster_rows = merged_rows(tmp_path / "cluster.csv")
    assert sorted(int(r["Index"]) for r in cluster_rows.values()) == list(range(200))

    # The same pool as four plain machines on this host, with the same seed: the same draws.
    plain = Project(tmp_path / "plain", {f"p{i}": [1.0, 1] for i in range(4)}, jobs=200, pause=0.0, env=env)
    runs = [subprocess.Popen(plain.command("run", "--machine", f"p{i}", "--yes", "--seed", SEED, "--console", "plain", "--out", plain.out),
                             cwd=plain.folder, env=plain.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for i in range(4)]  # fmt: skip
    for run in runs:
        _, stderr = run.communicate(timeout=120)
        assert run.returncode == 0, stderr
    assert plain.run("merge-results", plain.out, "-o", tmp_path / "plain.csv").returncode == 0
    plain_rows = merged_rows(tmp_path / "plain.csv")
    assert plain_rows.keys() == cluster_rows.keys()
    for job_id, row in cluster_rows.items():
        other = plain_rows[job_id]
        assert (row["Job Args"], row["Index"], row["Draw"]) == (other["Job Args"], other["Index"], other["Draw"])
        assert row["Machine"].startswith("sim[") and other["Machine"].startswith("p")


# --- Must show 2: SIGTERM, requeue, requeue while running: resumed, nothing run twice -------------


@pytest.mark.slow
def test_a_signalled_and_requeued_task_resumes_and_runs_no_finished_job_twice(slurm: SlurmCluster, tmp_path: Path):
    """The hold is there from the start, for the jobs that start once six of their task finished:
    made after six had finished, on a busy host it came after task 0's 30 jobs of 50 ms had ended."""
    side, starts, hold = tmp_path / "side.txt", tmp_path / "starts.txt", tmp_path / "hold"
    env = cluster_env(slurm, tmp_path, JOBSPLIT_TEST_SIDE=str(side), JOBSPLIT_TEST_STARTS=str(starts), JOBSPLIT_TEST_HOLD=str(hold), JOBSPLIT_TEST_HOLD_AFTER="6")
    project = Project(tmp_path / "p", {"sim": {"speed": 1.0, "cores": 2, "array": 2}}, jobs=60, pause=0.05, env=env)
    journal = project.out / "sim@0" / "journal.sqlite"

    def task0(path: Path) -> list[str]:
        return [line.split()[1] for line in lines(path) if line.split()[0] == "0"]

    def done() -> set[str]:
        """The indices of the jobs task 0's journal has done."""
        by_id = {id_of((i,)).hex(): str(i) for i in range(60)}
        return {by_id[i] for (i,) in query(journal, "SELECT job_id FROM jobs WHERE state = 'done'")}

    def held(runs: int) -> bool:
        """Run number ``runs`` has both workers waiting on the hold file (each earlier run left two
        jobs begun and never finished; the hold is the test entry's, once six of the task's jobs
        are done, in any run), and every job that finished is recorded done. Without the six, the
        first run's first two jobs, begun and not yet ended, passed for held."""
        finished, begun = task0(side), task0(starts)
        recorded = query(journal, "SELECT COUNT(*) FROM runs") if journal.exists() else []
        return bool(recorded) and recorded[0][0] == runs and len(finished) >= 6 and len(begun) - len(finished) == 2 * runs and set(finished) == done()

    def seen() -> dict[str, object]:
        """What held() looks at, for a failure's message."""
        finished, begun = task0(side), task0(starts)
        return {"runs": query(journal, "SELECT COUNT(*) FROM runs") if journal.exists() else "no journal", "begun": begun, "finished": finished,
                "finished, not done": set(finished) - done(), "queue": slurm.squeue(job)}  # fmt: skip

    hold.touch()
    (job,) = submitted(project.run("sbatch", "--machine", "sim", "--out", project.out, "--submit"))
    task, journal = f"{job}_0", project.out / "sim@0" / "journal.sqlite"
    assert wait_for(lambda: held(1), 120), seen()

    # 1. scancel --batch --signal=TERM: the run stops like Ctrl-C and exits 130
    slurm.scancel("--batch", "--signal=TERM", task)
    assert wait_for(lambda: not slurm.squeue(task), 60)
    assert "ExitCode=130:0" in slurm.scontrol("show", "job", task)
    assert query(journal, "SELECT status FROM runs") == [("interrupted",)]
    first_done = done()
    assert json.loads((project.out / "sim@0" / "progress.json").read_text())["state"] == "interrupted"

    # 2. scontrol requeue: it runs again from its journal (still held), then requeue it while it runs
    slurm.scontrol("requeue", task)
    assert wait_for(lambda: held(2), 120), seen()
    slurm.scontrol("requeue", task)  # SIGTERM to the running task (every process of it), then pending
    assert wait_for(lambda: query(journal, "SELECT status FROM runs") == [("interrupted",)] * 2, 60), query(journal, "SELECT * FROM runs")
    hold.unlink()

    states = slurm.wait_until_done(job, timeout=180)
    assert states == {f"{job}_0": "COMPLETED", f"{job}_1": "COMPLETED"}, states
    assert [s for (s,) in query(journal, "SELECT status FROM runs")] == ["interrupted", "interrupted", "completed"]
    outcomes = dict(query(journal, "SELECT outcome, COUNT(*) FROM attempts GROUP BY outcome"))
    assert outcomes.keys() == {"done", "interrupted"} and outcomes["interrupted"] == 4  # two held jobs, twice
    assert first_done <= done()

    finished = lines(side)
    assert len(finished) == len(set(finished)) == 60  # the execution trace: every job finished exactly once
    merged = project.run("merge-results", project.out, "-o", tmp_path / "merged.csv")
    assert merged.returncode == 0 and "complete" in merged.stderr, merged.stderr
    output = next((project.out / "slurm-logs").glob(f"sim-{job}_0.out")).read_text()
    assert output.count("Interrupted: running jobs were stopped") == 2 and "sim[0]: " in output  # --open-mode=append


@pytest.mark.slow
def test_a_task_sent_usr1_stops_cleanly_as_for_sigterm_and_resumes(slurm: SlurmCluster, tmp_path: Path):
    """SIGUSR1 is the signal Slurm users ask for before the time limit (``--signal=B:USR1@300``
    given with ``--extra``, which replaces the script's own ``B:TERM``) or send with ``scancel
    --batch --signal=USR1``. Its default action ended the run at once: the task FAILED with
    ExitCode 0:10, not a word in its output, the run and its running job left as running."""
    side, hold = tmp_path / "side.txt", tmp_path / "hold"
    env = cluster_env(slurm, tmp_path, JOBSPLIT_TEST_SIDE=str(side), JOBSPLIT_TEST_HOLD=str(hold), JOBSPLIT_TEST_HOLD_AFTER="2")
    project = Project(tmp_path / "p", {"sim": {"speed": 1.0, "cores": 1, "array": 1}}, jobs=6, pause=0.01, env=env)
    hold.touch()
    (job,) = submitted(project.run("sbatch", "--machine", "sim", "--out", project.out, "--submit"))
    task, journal = f"{job}_0", project.out / "sim@0" / "journal.sqlite"
    assert wait_for(lambda: len(lines(side)) == 2 and query(journal, "SELECT COUNT(*) FROM running") == [(1,)], 120), (lines(side), slurm.squeue(job))

    slurm.scancel("--batch", "--signal=USR1", task)
    assert wait_for(lambda: not slurm.squeue(task), 60)
    assert "ExitCode=130:0" in slurm.scontrol("show", "job", task)  # stopped as for SIGTERM, not killed by the signal
    assert query(journal, "SELECT status FROM runs") == [("interrupted",)]
    assert query(journal, "SELECT COUNT(*) FROM running") == [(0,)]
    output = next((project.out / "slurm-logs").glob(f"sim-{job}_0.out")).read_text()
    assert "Interrupted: running jobs were stopped and will run again" in output, output

    hold.unlink()
    slurm.scontrol("requeue", task)
    assert slurm.wait_until_done(job, timeout=180) == {task: "COMPLETED"}
    assert [s for (s,) in query(journal, "SELECT status FROM runs")] == ["interrupted", "completed"]
    finished = lines(side)
    assert len(finished) == len(set(finished)) == 6  # every job finished exactly once
    merged = project.run("merge-results", project.out, "-o", tmp_path / "merged.csv")
    assert merged.returncode == 0 and "complete" in merged.stderr, merged.stderr


@pytest.mark.slow
def test_tasks_that_finished_with_failed_jobs_are_named_by_status_and_resubmitted_to_retry_them(slurm: SlurmCluster, tmp_path: Path):
    """Jobs that failed for a passing cause (a scratch file system not mounted on some nodes): the
    tasks finish, status said "nothing to resubmit, every task finished" while merge-results said
    INCOMPLETE, and sbatch could not pass --retry-failed (a task resubmitted without it ends at once,
    its failed jobs left failed): the run's own advice had no way onto the cluster."""
    fail = tmp_path / "fail"
    fail.touch()
    project = Project(tmp_path / "p", {"sim": {"speed": 1.0, "cores": 1, "array": 3}}, jobs=15, pause=0.01,
                      env=cluster_env(slurm, tmp_path, JOBSPLIT_TEST_FAIL=str(fail)))  # fmt: skip
    (job,) = submitted(project.run("sbatch", "--machine", "sim", "--out", project.out, "--submit"))
    slurm.wait_until_done(job, timeout=180)
    failed = sorted(i for i in range(3) if query(project.out / f"sim@{i}" / "journal.sqlite", "SELECT COUNT(*) FROM jobs WHERE state = 'failed'") != [(0,)])
    assert failed, "some task holds a job of index 0, 5 or 10"
    status = project.run("status", project.out)
    assert f"with the entry's sbatch --machine sim --array={format_indices(failed)} --retry-failed --out {project.out} --submit" in status.stdout, status.stdout
    assert "nothing to resubmit" not in status.stdout
    assert project.run("merge-results", project.out, "-o", tmp_path / "merged.csv").returncode == 1

    fail.unlink()
    (again,) = submitted(project.run("sbatch", "--machine", "sim", "--array", format_indices(failed), "--retry-failed", "--out", project.out, "--submit"))
    assert slurm.wait_until_done(again, timeout=180) == {f"{again}_{i}": "COMPLETED" for i in failed}
    assert "sim: nothing to resubmit, every task finished" in project.run("status", project.out).stdout
    merged = project.run("merge-results", project.out, "-o", tmp_path / "merged.csv")
    assert merged.returncode == 0 and "complete: every job of the plan exactly once" in merged.stderr, merged.stderr


# --- Must show 4: MaxArraySize=3, an array of 8 ----------------------------------------------------


@pytest.mark.slow
def test_an_array_above_max_array_size_is_split_into_submissions_covering_each_index_once(slurm: SlurmCluster, tmp_path: Path):
    project = Project(tmp_path / "p", {"sim": {"speed": 1.0, "cores": 1, "array": 8}}, jobs=24, pause=0.02, env=cluster_env(slurm, tmp_path))
    with slurm.configured(MaxArraySize=3):
        jobs = submitted(project.run("sbatch", "--machine", "sim", "--out", project.out, "--submit"))  # MaxArraySize from scontrol
        assert len(jobs) == 3
        tasks = {}
        for job in jobs:
            states = slurm.wait_until_done(job, timeout=180)
            assert set(states.values()) == {"COMPLETED"}, states
            tasks[job] = sorted(int(name.split("_")[1]) for name in states)
    assert list(tasks.values()) == [[0, 1, 2], [0, 1, 2], [0, 1]]  # task ids below MaxArraySize
    machines = sorted(json.loads((project.out / f"sim@{i}" / "progress.json").read_text())["machine"] for i in range(8))
    assert machines == sorted(f"sim[{i}]" for i in range(8))
    assert sorted(p.name for p in project.out.iterdir() if p.name.startswith("sim@")) == sorted(f"sim@{i}" for i in range(8))
    merged = project.run("merge-results", project.out, "-o", tmp_path / "merged.csv")
    assert merged.returncode == 0 and "24 of 24 jobs present from 8 machine folders; complete" in merged.stderr, merged.stderr


# --- Must show 3 and 6: a mixed plan, the frozen executable in the batch script ------------------


@pytest.mark.slow
def test_a_mixed_plan_of_two_workstations_and_an_array_run_by_the_frozen_executable(slurm: SlurmCluster, executable: Path, tmp_path: Path):
    folder = tmp_path / "study"
    folder.mkdir()
    shutil.copy2(executable, folder / "e2e")
    (folder / "config.ini").write_text("[e2e]\npause = 0.05\n")
    (folder / "header.csv").write_text("Run Start Time,Job Running Time,Job Start Time,Index,Draw\n")
    (folder / "machines.json").write_text(json.dumps({"ws1": [1.0, 1], "ws2": [1.0, 1], "arr": {"speed": 1.0, "cores": 1, "array": 3}}))
    env = {"PATH": slurm.env["PATH"], "SLURM_CONF": slurm.env["SLURM_CONF"], "HOME": str(tmp_path), "TMPDIR": str(tmp_path),
           "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "NO_COLOR": "1", "LANG": "C.UTF-8"}  # fmt: skip
    out = folder / "out"

    def program(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["./e2e", *map(str, args)], cwd=folder, env=env, capture_output=True, text=True, timeout=120, check=False)

    digest = program("digest").stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{4}(-[0-9a-f]{4}){7}", digest), digest
    (job,) = submitted(program("sbatch", "--machine", "arr", "--out", out, "--submit"))
    script = (folder / "arr.sbatch").read_text()
    assert f"exec {folder / 'e2e'} run --machine arr --expect-digest {digest} --console plain" in script  # the frozen program itself
    workstations = [subprocess.Popen(["./e2e", "run", "--machine", name, "--expect-digest", digest, "--console", "plain", "--out", str(out)],
                                     cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for name in ("ws1", "ws2")]  # fmt: skip
    for run in workstations:
        _, stderr = run.communicate(timeout=180)
        assert run.returncode == 0, stderr
    assert slurm.wait_until_done(job, timeout=180) == {f"{job}_{i}": "COMPLETED" for i in range(3)}

    snapshots = {name: json.loads((out / name / "progress.json").read_text()) for name in ("ws1", "ws2", "arr@0", "arr@1", "arr@2")}
    assert {s["digest"] for s in snapshots.values()} == {digest.replace("-", "")}  # one digest everywhere
    assert sorted(s["machine"] for s in snapshots.values()) == ["arr[0]", "arr[1]", "arr[2]", "ws1", "ws2"]
    merged = program("merge-results", out, "-o", tmp_path / "merged.csv")
    assert merged.returncode == 0, merged.stdout + merged.stderr
    assert "60 of 60 jobs present from 5 machine folders; complete" in merged.stderr
    rows = merged_rows(tmp_path / "merged.csv")
    assert sorted(int(r["Index"]) for r in rows.values()) == list(range(60))
    assert {r["Machine"] for r in rows.values()} == {"ws1", "ws2", "arr[0]", "arr[1]", "arr[2]"}
    assert os.access(folder / "e2e", os.X_OK)
