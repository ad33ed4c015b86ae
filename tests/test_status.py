"""``jobsplit status`` (issue 5, "Merge and status"): where every machine stands.

Counts per machine and overall for a finished run, a partly failed run and a machine that has
not started (known from the plan), the ``--json`` fields, and calls made while a run goes on:
they succeed, show it running, and do not hold it up.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import threemachines
from conftest import error_lines, run_entry, write_config_dir
from runhelpers import DROP_DAC
from threemachines import MACHINES, env_for, host_state, run_args, run_machine

CONFIG = "[experiment]\nlabel = status test\n"
FIELDS = {"name", "total", "done", "failed", "pending", "running", "jobs_per_second", "eta_seconds", "last_update", "state"}
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


# --- helpers -------------------------------------------------------------------------------


def make_project(path: Path, config: str = CONFIG) -> Path:
    return threemachines.make_project(path, config)


def status(*dirs: Path, as_json: bool = True, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobsplit", "status", *map(str, dirs), *(["--json"] if as_json else [])],
        env=env_for(cwd), cwd=cwd, capture_output=True, text=True, encoding="utf-8", timeout=60, check=False,
    )  # fmt: skip


def status_json(*dirs: Path, cwd: Path) -> dict:
    result = status(*dirs, cwd=cwd)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    check_document(doc)
    return doc


def check_document(doc: dict) -> None:
    """The documented shape, and counts that add up."""
    assert set(doc) - {"repeated"} == {"digest", "machines", "overall"}  # "repeated": a machine in several folders
    for entry in [*doc["machines"], doc["overall"]]:
        assert set(entry) == FIELDS, entry
        assert entry["done"] + entry["failed"] + entry["pending"] + entry["running"] == entry["total"], entry
        assert entry["last_update"] is None or TIMESTAMP.fullmatch(entry["last_update"]), entry
        for number in ("jobs_per_second", "eta_seconds"):
            assert entry[number] is None or (isinstance(entry[number], (int, float)) and entry[number] >= 0), entry
    overall = doc["overall"]
    assert overall["name"] == "overall"
    counted = {m["name"]: m for m in sorted(doc["machines"], key=lambda m: m["done"])}  # once each, the furthest along
    for count in ("total", "done", "failed", "pending", "running"):
        assert overall[count] == sum(m[count] for m in counted.values()), count
    assert [m["name"] for m in doc["machines"]] == sorted(m["name"] for m in doc["machines"])


def by_name(doc: dict) -> dict[str, dict]:
    return {m["name"]: m for m in doc["machines"]}


def counts(entry: dict) -> tuple[int, int, int, int, int]:
    return entry["total"], entry["done"], entry["failed"], entry["pending"], entry["running"]


class Project:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.entry = make_project(base)
        self.out = base / "out"
        for machine in MACHINES:
            result = run_machine(self.entry, self.out, machine)
            assert result.returncode == 0, result.stderr
        self.digest = re.search(r"digest (\S+)", result.stderr).group(1)

    def copy(self, dest: Path, *machines: str) -> Path:
        for machine in machines:
            shutil.copytree(self.out / machine, dest / machine)
        return dest

    def job_args(self, machine: str) -> list[str]:
        lines = (self.out / machine / "results.csv").read_text(encoding="utf-8").splitlines()[1:]
        return sorted("-".join(re.search(r'"\[(\d+),(\d+)\]"', line).groups()) for line in lines)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Project:
    return Project(tmp_path_factory.mktemp("status-project"))


# --- finished, partly failed, not started --------------------------------------------------


def test_finished_run_counts(project, tmp_path):
    doc = status_json(project.out, cwd=tmp_path)
    assert doc["digest"] == project.digest
    machines = by_name(doc)
    assert sorted(machines) == ["m1", "m2", "m3"]
    for entry in machines.values():
        assert counts(entry) == (8, 8, 0, 0, 0)
        assert entry["state"] == "finished"
        assert entry["last_update"] is not None
        assert entry["eta_seconds"] is None
    assert counts(doc["overall"]) == (24, 24, 0, 0, 0)
    assert doc["overall"]["state"] == "finished"
    assert doc["overall"]["last_update"] == max(m["last_update"] for m in machines.values())
    # machine folders instead of the root: the same
    by_folders = status_json(*(project.out / m for m in MACHINES), cwd=tmp_path)
    assert [counts(m) for m in by_folders["machines"]] == [counts(m) for m in doc["machines"]]


def test_partly_failed_run_counts(project, tmp_path):
    root = project.copy(tmp_path / "out", "m1", "m3")
    failing = project.job_args("m2")[:3]
    result = run_machine(project.entry, root, "m2", FAIL_JOBS=",".join(failing))
    assert result.returncode == 1, result.stderr
    doc = status_json(root, cwd=tmp_path)
    machines = by_name(doc)
    assert counts(machines["m2"]) == (8, 5, 3, 0, 0)
    assert machines["m2"]["state"] == "finished"
    assert counts(machines["m1"]) == counts(machines["m3"]) == (8, 8, 0, 0, 0)
    assert counts(doc["overall"]) == (24, 21, 3, 0, 0)


def test_machines_not_started_come_from_the_plan(project, tmp_path):
    doc = status_json(project.out / "m2", cwd=tmp_path)
    machines = by_name(doc)
    assert sorted(machines) == ["m1", "m2", "m3"]
    assert counts(machines["m2"]) == (8, 8, 0, 0, 0)
    for name in ("m1", "m3"):
        entry = machines[name]
        assert counts(entry) == (8, 0, 0, 8, 0)
        assert entry["state"] == "not started"
        assert entry["last_update"] is None and entry["jobs_per_second"] is None and entry["eta_seconds"] is None
    assert counts(doc["overall"]) == (24, 8, 0, 16, 0)
    assert doc["overall"]["state"] != "finished"


def test_a_machine_in_two_folders_is_named_and_counted_once(project, tmp_path):
    """Two hosts that both chose m1 (none chose m3): the overall line counts m1 once, and a
    sentence names both folders."""
    first = project.copy(tmp_path / "host1", "m1", "m2")
    second = project.copy(tmp_path / "host2", "m1")
    doc = status_json(first, second, cwd=tmp_path)
    assert [m["name"] for m in doc["machines"]] == ["m1", "m1", "m2", "m3"]
    assert counts(doc["overall"]) == (24, 16, 0, 8, 0)
    assert doc["repeated"] == {"m1": [str((first / "m1").resolve()), str((second / "m1").resolve())]}
    result = status(first, second, as_json=False, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"machine m1 is in 2 folders ({(first / 'm1').resolve()}, {(second / 'm1').resolve()})" in result.stderr


def test_table_shows_every_machine_and_an_overall_line(project, tmp_path):
    result = status(project.out / "m1", project.out / "m3", as_json=False, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {cells[0]: cells for line in result.stdout.splitlines() if len(cells := [c.strip() for c in re.split(r"[│┃|]", line)[1:-1]]) > 5}
    assert rows["Machine"][:5] == ["Machine", "Done", "Failed", "Pending", "Running"]
    assert rows["m1"][1:5] == ["8/8", "0", "0", "0"] and rows["m1"][-1] == "finished"
    assert rows["m2"][1:5] == ["0/8", "0", "8", "0"] and rows["m2"][-1] == "not started"
    assert rows["m3"][1:5] == ["8/8", "0", "0", "0"]
    assert rows["overall"][1:5] == ["16/24", "0", "8", "0"]
    assert project.digest in result.stdout


# --- while a run goes on -------------------------------------------------------------------


def test_status_during_a_run_sees_it_running_and_does_not_hold_it_up(project, tmp_path):
    """The jobs after the first two wait at a gate until status has seen the run going twice,
    then the run ends while status goes on asking: with 2 s of jobs, a busy host's status calls
    (a Python each) came too late to see it running."""
    root, gate = tmp_path / "out", tmp_path / "gate"
    process = subprocess.Popen(
        [sys.executable, str(project.entry), *run_args(root, "m1")],
        env=env_for(project.base, host_state(root), JOB_SLEEP="0.1", **threemachines.gate(gate)), cwd=project.base, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    snapshots = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            if (root / "m1" / "journal.sqlite").exists():
                result = status(root, cwd=tmp_path)
                assert result.returncode == 0, result.stderr
                doc = json.loads(result.stdout)
                check_document(doc)
                snapshots.append(by_name(doc)["m1"])
                if len([s for s in snapshots if s["state"] == "running" and s["running"] > 0]) >= 2:
                    threemachines.open_gate(gate)
            else:
                time.sleep(0.05)
        threemachines.open_gate(gate)  # also where the loop gave up: the assertions below say why
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    running = [s for s in snapshots if s["state"] == "running" and s["running"] > 0]
    assert running, f"status never saw the run going: {snapshots}"
    assert all(s["running"] <= 2 for s in snapshots)  # two workers
    done = [s["done"] for s in snapshots]
    assert done == sorted(done)
    assert len(snapshots) >= 2 and done[0] < 8  # status answered again and again while the run went on
    final = by_name(status_json(root, cwd=tmp_path))["m1"]
    assert counts(final) == (8, 8, 0, 0, 0) and final["state"] == "finished"


def test_a_run_killed_on_this_host_is_crashed_at_once_not_running_for_a_minute(project, tmp_path):
    """``kill -9`` of a run (or a full disk that stopped it before it could say so): its journal
    says running, and status said so, with an ETA, until a minute without news made it stalled,
    though the run's process was on this host to ask. Now crashed once the journal has been quiet
    for two heartbeats and no such process lives (not at once: the same host name in another PID
    namespace, a container's, has processes this one cannot see)."""
    root = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, str(project.entry), *run_args(root, "m1")],
        env=env_for(project.base, host_state(root), JOB_SLEEP="30"), cwd=project.base, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip

    def both_workers_busy() -> bool:
        return (root / "m1" / "journal.sqlite").exists() and by_name(status_json(root, cwd=tmp_path))["m1"]["running"] == 2

    try:
        deadline = time.monotonic() + 60
        while not both_workers_busy() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert by_name(status_json(root, cwd=tmp_path))["m1"]["state"] == "running"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    deadline = time.monotonic() + 50  # crashed once quiet for two heartbeats (10 s), where stalled came after a minute
    while (machine := by_name(status_json(root, cwd=tmp_path))["m1"])["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert machine["state"] == "crashed" and machine["eta_seconds"] is None, machine
    assert (machine["running"], machine["pending"]) == (0, 8 - machine["done"]), machine  # its jobs run nowhere now


# --- refusals ------------------------------------------------------------------------------


def test_mixed_digests_are_refused(project, tmp_path):
    other = make_project(tmp_path / "other", config=CONFIG.replace("status test", "another test"))
    result = run_machine(other, tmp_path / "other" / "out", "m3")
    assert result.returncode == 0, result.stderr
    other_digest = re.search(r"digest (\S+)", result.stderr).group(1)
    result = status(project.out / "m1", tmp_path / "other" / "out", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    (error,) = error_lines(result.stderr)
    assert project.digest in error and other_digest in error
    assert result.stdout == ""


def test_mixed_digests_name_each_group_s_folders_and_what_differs(project, tmp_path):
    """As merge-results says it: status said "different pools or config files (digests A, B)", so
    which of a shared root's folders was the odd one out, and why, took a run of every tool."""
    other = make_project(tmp_path / "other", config=CONFIG.replace("status test", "another test"))
    assert run_machine(other, tmp_path / "other" / "out", "m3").returncode == 0
    result = status(project.out / "m1", project.out / "m2", tmp_path / "other" / "out", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    (error,) = error_lines(result.stderr)
    assert "(config.ini differs;" in error, error
    assert f"{project.out / 'm1'}, {project.out / 'm2'}" in error and str(tmp_path / "other" / "out" / "m3") in error, error
    assert error.endswith("ask for each group separately"), error


def test_a_path_without_a_journal_is_named(project, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = status(project.out, empty, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    (error,) = error_lines(result.stderr)
    assert str(empty) in error and "Traceback" not in result.stderr


def test_a_damaged_journal_is_named(project, tmp_path):
    damaged = tmp_path / "m9"
    damaged.mkdir()
    (damaged / "journal.sqlite").write_bytes(b"this is not a database\n" * 100)
    result = status(project.out, damaged, cwd=tmp_path)
    assert "Traceback" not in result.stderr
    assert result.returncode == 2
    (error,) = error_lines(result.stderr)
    assert str(damaged) in error


@pytest.mark.parametrize(
    "tool",
    [["status"], ["merge-results", "-o", os.devnull], ["report", "-o", os.devnull], ["trace", "-o", os.devnull], ["merge-logs", "-o", os.devnull]],
    ids=lambda tool: tool[0],
)
def test_a_machine_folder_this_user_cannot_read_is_named_with_the_fix(project, tmp_path, tool):
    """A colleague's run under umask 077 leaves its folder drwx--S---: status, the merge tools,
    report and trace given the output root ended in a PermissionError traceback, exit status 1
    (Path.exists, is_file and iterdir refuse such a folder). Now one sentence names the folder
    and what to ask of its owner, exit status 2."""
    if shutil.which("setpriv") is None or os.geteuid() != 0:
        pytest.skip("reads a folder of another user: needs root (to make one) and setpriv")
    root = project.copy(tmp_path / "out", "m1", "m3")
    private = root / "m3"
    for path in (private, *private.rglob("*")):
        os.chown(path, 4255, 4255)
        path.chmod(0o2700 if path.is_dir() else 0o600)
    name, *options = tool
    result = subprocess.run(
        [*DROP_DAC, sys.executable, "-m", "jobsplit", name, str(root), *options],
        env=env_for(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if "Operation not permitted" in result.stderr and "setpriv" in result.stderr:
        pytest.skip(f"cannot give up root's permissions here: {result.stderr.strip()}")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert error_lines(result.stderr) == [f"error: {private} cannot be read (Permission denied): ask its owner (user 4255) to `chmod -R g+rX` it, or leave it out"]


def array_with_failed_jobs(tmp_path: Path) -> tuple[Path, Path]:
    """(the project, its entry in project/entry.py; the output root) of an array of two tasks run to their end, each with failed jobs."""
    project = tmp_path / "project"
    write_config_dir(project, config=CONFIG, header=threemachines.HEADER, machines={"sim": {"speed": 1.0, "cores": 1, "array": 2}})
    entry = project / "entry.py"
    entry.write_text(threemachines.ENTRY, encoding="utf-8")
    out = tmp_path / "scratch" / "campaign"
    env = env_for(project, FAIL_JOBS=",".join(f"{g}-{r}" for g in range(4) for r in range(6)))
    for index in ("0", "1"):
        ran = run_entry(entry, *run_args(out, "sim"), "--array-index", index, env=env, cwd=project)
        assert ran.returncode == 1, ran.stderr
    return project, out


def test_the_retry_advice_for_an_array_s_failed_tasks_goes_on_in_their_output_root(tmp_path):
    """An array submitted with ``sbatch --out /scratch/campaign``: status said to retry the tasks
    with failed jobs "with the entry's sbatch --machine sim --array=0 --retry-failed --submit",
    and that command, run as given, wrote a script whose tasks ran into ./jobsplit-out: the
    failed jobs were run again in a new folder, the campaign's stayed failed, and merge-results
    of the campaign still said INCOMPLETE. The advice names the tasks' output root."""
    project, out = array_with_failed_jobs(tmp_path)
    shown = status(out, as_json=False, cwd=project)
    assert shown.returncode == 0, shown.stderr
    advice = re.search(r"with the entry's (sbatch .*--submit)", shown.stdout)
    assert advice is not None, shown.stdout
    args = advice.group(1).split()
    written = run_entry(project / "entry.py", *[a for a in args if a != "--submit"], env=env_for(project), cwd=project)
    assert written.returncode == 0, written.stderr
    script = (project / "sim.sbatch").read_text(encoding="utf-8")
    assert f"--out {out} " in script + " " and "--retry-failed" in script, script


def test_an_array_through_a_shared_queue_with_failed_jobs_is_told_to_retry_them(tmp_path, redis_server):
    """An array's tasks taking jobs from a shared queue (``[balance] url``), some jobs failing (a
    scratch file system missing on a node): every task ended, and status said "sim: nothing to
    resubmit, every task finished" while merge-results said INCOMPLETE. A task resubmitted with
    --retry-failed takes the queue's failed jobs again: status says so, as for a static plan."""
    server = redis_server.start()
    project = tmp_path / "project"
    write_config_dir(project, config=CONFIG + f"\n[balance]\nurl = {server.url}\n", header=threemachines.HEADER, machines={"sim": {"speed": 1.0, "cores": 1, "array": 2}})
    entry = project / "entry.py"
    entry.write_text(threemachines.ENTRY, encoding="utf-8")
    out = tmp_path / "campaign"
    env = env_for(project, FAIL_JOBS="0-0,1-1,2-2")
    for index in ("0", "1"):
        ran = run_entry(entry, *run_args(out, "sim"), "--array-index", index, env=env, cwd=project)
        assert ran.returncode in (0, 1), ran.stderr
    shown = status(out, as_json=False, cwd=project)
    assert shown.returncode == 0, shown.stderr
    assert "nothing to resubmit" not in shown.stdout, shown.stdout
    assert re.search(rf"sim: \d tasks? finished with 3 failed jobs: retry (it|them) with the entry's sbatch --machine sim --array=\S+ --retry-failed --out {re.escape(str(out))} --submit", shown.stdout), shown.stdout
    retried = run_entry(entry, *run_args(out, "sim"), "--array-index", "0", "--retry-failed", env=env_for(project), cwd=project)
    assert retried.returncode == 0, retried.stderr
    assert "sim: nothing to resubmit, every task finished" in status(out, as_json=False, cwd=project).stdout


def test_an_output_root_whose_array_tasks_have_not_started_is_said_so(tmp_path):
    """Right after ``sbatch --submit``, the tasks waiting in the queue: ``status OUT`` (step 6 of
    the cluster's instructions) said "OUT holds no journal.sqlite; copy each machine's whole
    output folder from its host", of a folder on the cluster's shared disk where nothing was to
    be copied. sbatch had written OUT/slurm-logs there: its tasks have not begun their runs."""
    out = tmp_path / "out"
    (out / "slurm-logs").mkdir(parents=True)
    (out / "slurm-logs" / "sim-12_3.out").write_text("error: the digest is ...\n")
    result = status(out, as_json=False, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    (error,) = error_lines(result.stderr)
    assert "copy" not in error and "no task" in error and str(out / "slurm-logs") in error and "1 task output" in error, error


def test_the_retry_advice_for_a_task_folder_given_under_another_name_is_no_traceback(tmp_path):
    """A task's folder given under another name than ``sim@0`` (copied from its host as
    ``sim0-from-hostA``): the retry advice looked its output root up by folder name and ended in
    a KeyError traceback. No script would go on in a renamed folder: its options name no --out."""
    project, out = array_with_failed_jobs(tmp_path)
    copies = tmp_path / "copies"
    shutil.copytree(out / "sim@0", copies / "sim0-from-hostA")
    shutil.copytree(out / "sim@1", copies / "sim@1")
    shown = status(copies, as_json=False, cwd=project)
    assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr
    assert "sbatch --machine sim --array=0 --retry-failed --submit" in shown.stdout, shown.stdout
    assert f"sbatch --machine sim --array=1 --retry-failed --out {copies} --submit" in shown.stdout, shown.stdout
