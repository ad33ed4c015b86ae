"""The batch scripts of ``sbatch`` (issue 12), without a cluster: index lists, the split into
submissions under MaxArraySize, the rendered script, and the command writing its files.

test_slurm.py submits what these write to a real cluster.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import entry_env, error_lines, run_entry, write_config_dir
from jobsplit import UserError
from jobsplit.cli import _entry_parser
from jobsplit.schedulers.slurm import ArrayScript, Submission, format_indices, parse_indices, render, split
from threemachines import ENTRY, HEADER

SCRIPT = ArrayScript(
    array="sim", size=64, cores=32, digest="3f2a-9c1b", program=["/venv/bin/python", "/home/me/my study.py"],
    run_options=["--config-dir", "/home/me", "--out", "/scratch/out", "--seed", "s 1"], output="/scratch/out/slurm-logs/%x-%A_%a.out",
    job_name="sim", max_parallel=8, options=[("partition", "long"), ("time", "2-00:00:00")], extra=["--qos=high"],
)  # fmt: skip


def test_indices_are_parsed_and_written_as_slurm_does():
    assert parse_indices("3,17,40", 64) == [3, 17, 40]
    assert parse_indices("0-3, 2-5,9", 10) == [0, 1, 2, 3, 4, 5, 9]
    assert format_indices([9, 0, 1, 2, 5, 7, 8, 2]) == "0-2,5,7-9"
    assert format_indices([4]) == "4" and format_indices([]) == ""
    for bad in ("", "1,,2", "5-3", "64", "-1", "a", "1:3", "0-7%2"):
        with pytest.raises(UserError, match="--array"):
            parse_indices(bad, 64)


@given(st.sets(st.integers(0, 300), max_size=120), st.integers(1, 40))
def test_split_covers_each_index_once_below_max_array_size(indices, limit):
    submissions = split(indices, limit)
    covered = [index for s in submissions for index in s.indices]
    assert sorted(covered) == sorted(indices)  # each index once
    assert all(0 <= task < limit for s in submissions for task in s.tasks)
    if indices and max(indices) < limit:
        assert submissions == [Submission(0, tuple(sorted(indices)))]  # task id = machine index


def test_split_of_8_under_3_and_the_fewest_windows():
    assert split(range(8), 3) == [Submission(0, (0, 1, 2)), Submission(3, (0, 1, 2)), Submission(6, (0, 1))]
    assert split([2, 3, 4], 3) == [Submission(2, (0, 1, 2))]  # one window from 2, not two from 0
    assert split(range(64), 1001) == [Submission(0, tuple(range(64)))]


def test_the_script_sets_the_array_and_execs_the_run():
    text = render(SCRIPT, Submission(0, tuple(range(64))), "9.9")
    lines = text.splitlines()
    assert lines[0] == "#!/bin/sh"
    assert [line for line in lines if line.startswith("#SBATCH")] == [
        "#SBATCH --job-name=sim",
        "#SBATCH --array=0-63%8",
        "#SBATCH --cpus-per-task=32",
        "#SBATCH --output=/scratch/out/slurm-logs/%x-%A_%a.out",
        "#SBATCH --partition=long",
        "#SBATCH --time=2-00:00:00",
        "#SBATCH --requeue",
        "#SBATCH --open-mode=append",
        "#SBATCH --signal=B:TERM@120",
        "#SBATCH --qos=high",
    ]
    assert lines[-1] == (
        "exec /venv/bin/python '/home/me/my study.py' run --machine sim --expect-digest 3f2a-9c1b --console plain "
        "--config-dir /home/me --out /scratch/out --seed 's 1'"
    )
    assert "digest 3f2a-9c1b" in text and "jobsplit 9.9" in text


@pytest.mark.parametrize(("time", "warning"), [("1:30", 22), ("00:01:30", 22), ("5", 75), ("0:30", 10), ("10:00:00", 120), ("2-00:00:00", 120), ("1-2", 120), ("UNLIMITED", 120)])
def test_the_stop_signal_comes_a_quarter_of_a_short_time_limit_before_it(time, warning):
    """``--time 00:01:30`` for a test run: Slurm's SIGTERM, asked for 120 s before the limit,
    came as the task began, and every resubmission stopped the same way."""
    script = ArrayScript(**{**SCRIPT.__dict__, "options": [("time", time)]})
    assert f"#SBATCH --signal=B:TERM@{warning}\n" in render(script, Submission(0, (0,)), "9.9")


def test_a_later_submission_adds_its_offset_to_the_task_id(tmp_path):
    text = render(SCRIPT, Submission(1001, (0, 1, 2)), "9.9")
    assert "#SBATCH --array=0-2%8\n" in text
    assert ' --array-index "$((SLURM_ARRAY_TASK_ID + 1001))" ' in text
    exec_line = text.splitlines()[-1].replace("exec ", "printf '%s\\n' ", 1)  # what the shell passes, argument by argument
    done = subprocess.run(["sh", "-c", exec_line], env={"SLURM_ARRAY_TASK_ID": "2", "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, check=True)
    argv = done.stdout.splitlines()
    assert argv[:2] == ["/venv/bin/python", "/home/me/my study.py"]
    assert argv[argv.index("--array-index") + 1] == "1003" and argv[-2:] == ["--seed", "s 1"]


@pytest.mark.parametrize(
    ("change", "needle"),
    [({"job_name": "my job"}, "--job-name 'my job'"), ({"job_name": "study/a"}, "--job-name 'study/a'"), ({"options": [("partition", "")]}, "--partition ''"), ({"extra": ["qos=high"]}, "--extra 'qos=high'"), ({"extra": ["--a\n--b"]}, "--extra")],
)
def test_values_an_sbatch_line_cannot_carry_are_refused(change, needle):
    script = ArrayScript(**{**SCRIPT.__dict__, **change})
    with pytest.raises(UserError) as info:
        render(script, Submission(0, (0,)), "9.9")
    assert needle in str(info.value) and "\n" not in str(info.value)


# --- the command -------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write_config_dir(tmp_path, config="[experiment]\nlabel = sbatch\n", header=HEADER, machines={"sim": {"speed": 1.0, "cores": 3, "array": 8}, "ws": [1.0, 2]})
    (tmp_path / "entry.py").write_text(ENTRY, encoding="utf-8")
    return tmp_path


def sbatch(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = entry_env(XDG_CONFIG_HOME=str(project / "xdg"), PATH="/nonexistent")  # no scontrol, no sbatch
    return run_entry(project / "entry.py", "sbatch", *args, env=env, cwd=project)


def test_run_options_given_to_sbatch_reach_the_run_of_each_task(project):
    """Retries for a preemptible partition, a timeout, the grace of a job saving its checkpoint
    (Slurm's SIGTERM comes 120 s before the end), a memory limit for leaking jobs: given to
    sbatch, written into each task's run command (the same options as run's, defined once)."""
    result = sbatch(project, "--machine", "sim", "--max-array-size", "100", "--timeout", "3600", "--retries", "2", "--stop-grace", "20", "--worker-memory", "4GiB", "--retry-failed")
    assert result.returncode == 0, result.stderr
    exec_line = (project / "sim.sbatch").read_text().splitlines()[-1]
    assert exec_line.endswith(" --timeout 3600 --retries 2 --stop-grace 20 --worker-memory 4294967296B --retry-failed"), exec_line
    options = shlex.split(exec_line)[shlex.split(exec_line).index("--config-dir") :]
    parsed = _entry_parser().parse_args(["run", *options])  # the task's run reads them back: "4294967296" was refused, no unit, and every task failed
    assert (parsed.timeout, parsed.retries, parsed.stop_grace, parsed.worker_memory, parsed.retry_failed) == (3600, 2, 20, 4 << 30, True)
    assert " --timeout " not in (project / "sim.sbatch").read_text().replace(exec_line, "")
    plain = sbatch(project, "--machine", "sim", "--max-array-size", "100", "--script", "plain.sbatch")
    assert plain.returncode == 0 and "--retries" not in (project / "plain.sbatch").read_text() and "--retry-failed" not in (project / "plain.sbatch").read_text()


def test_the_command_writes_one_file_per_submission(project):
    result = sbatch(project, "--machine", "sim", "--max-array-size", "3", "--max-parallel", "2", "--out", "runs")
    assert result.returncode == 0, result.stderr
    files = sorted(p.name for p in project.glob("*.sbatch"))
    assert files == ["sim.0-2.sbatch", "sim.3-5.sbatch", "sim.6-7.sbatch"]
    digest = run_entry(project / "entry.py", "digest", cwd=project).stdout.strip()
    for name, array, index in (("sim.0-2.sbatch", "0-2%2", None), ("sim.3-5.sbatch", "0-2%2", 3), ("sim.6-7.sbatch", "0-1%2", 6)):
        text = (project / name).read_text()
        assert f"#SBATCH --array={array}\n" in text and "#SBATCH --cpus-per-task=3\n" in text
        assert f"--expect-digest {digest} " in text and f"--out {project / 'runs'}" in text and f"--config-dir {project}" in text
        assert f"{sys.executable} {project / 'entry.py'} run --machine sim" in text
        assert (f'"$((SLURM_ARRAY_TASK_ID + {index}))"' in text) == (index is not None)
    assert (project / "runs" / "slurm-logs").is_dir()  # Slurm fails a task whose output folder is missing
    assert "sbatch sim.0-2.sbatch; sbatch sim.3-5.sbatch; sbatch sim.6-7.sbatch" in result.stderr
    assert "wrote sim.3-5.sbatch: 3 tasks of sim, indices 3-5, as --array=0-2%2 (task id + 3)" in " ".join(result.stderr.split()), result.stderr  # as the script says


def test_without_scontrol_slurms_default_is_assumed_and_said(project):
    result = sbatch(project, "--machine", "sim", "--array", "3,5-6", "--script", "sub/resubmit.sh")
    assert result.returncode == 0, result.stderr
    assert "MaxArraySize is unknown" in result.stderr and "1001" in result.stderr
    assert "#SBATCH --array=3,5-6\n" in (project / "sub" / "resubmit.sh").read_text()


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--machine", "ws"], ['"ws" is not an array', "arrays there: sim"]),
        (["--machine", "nope"], ['"nope" is not an array']),
        (["--machine", "sim", "--array", "8"], ["--array 8", "0 to 7"]),
        (["--machine", "sim", "--max-array-size", "9", "--out", "my runs"], ["has a space", "--out"]),
        (["--machine", "sim", "--max-array-size", "9", "--submit"], ["sbatch cannot be run"]),
    ],
)
def test_command_refusals(project, args, needles):
    result = sbatch(project, *args)
    assert result.returncode == 2, result.stderr
    (error,) = error_lines(result.stderr)
    for needle in needles:
        assert needle in error, error


def test_jobsplit_sbatch_runs_the_entrys_command(project):
    done = subprocess.run(
        [sys.executable, "-m", "jobsplit", "sbatch", "entry.py", "--machine", "sim", "--max-array-size", "100"],
        cwd=project, env=entry_env(XDG_CONFIG_HOME=str(project / "xdg")), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert re.search(r"#SBATCH --array=0-7\n", (project / "sim.sbatch").read_text())


def test_an_entry_run_as_a_module_is_started_as_one_by_its_batch_script(project):
    """``python -m study.run sbatch``: the script started ``python .../study/run.py``, whose
    ``from study.helpers import work`` failed in every task (and ``python -c`` wrote
    ``python /cwd/-c``), while sbatch exited 0."""
    study = project / "study"
    study.mkdir()
    (study / "__init__.py").write_text("")
    (study / "helpers.py").write_text("def work(i):\n    return i\n")
    (study / "run.py").write_text(ENTRY.replace("import jobsplit\n", "import jobsplit\nfrom study.helpers import work\n", 1), encoding="utf-8")
    env = entry_env(XDG_CONFIG_HOME=str(project / "xdg"), XDG_STATE_HOME=str(project / "state"), PATH="/nonexistent")
    written = subprocess.run([sys.executable, "-m", "study.run", "sbatch", "--machine", "sim", "--max-array-size", "100"], cwd=project, env=env, capture_output=True, text=True, timeout=60)
    assert written.returncode == 0, written.stderr
    *_, cd, exec_line = (project / "sim.sbatch").read_text().splitlines()
    assert cd == f"cd {project} || exit 1" and exec_line.startswith(f"exec {sys.executable} -m study.run run --machine sim "), exec_line
    task = subprocess.run(["/bin/sh", "-c", f"{cd}\n{exec_line}"], cwd="/", env={**env, "SLURM_ARRAY_TASK_ID": "0", "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=120)
    assert task.returncode == 0 and "Traceback" not in task.stderr, task.stderr
    without_file = subprocess.run([sys.executable, "-c", (study / "run.py").read_text(), "sbatch", "--machine", "sim", "--max-array-size", "100", "--script", "c.sbatch"], cwd=project, env=env, capture_output=True, text=True, timeout=60)
    assert without_file.returncode == 2 and not (project / "c.sbatch").exists(), without_file.stderr
    assert error_lines(without_file.stderr) == ["error: sbatch writes a batch script that starts this entry again, and it has no file (python -c, standard input): save it as a file and run its sbatch command"]


@pytest.mark.parametrize("option", ["--array=1", "--array 1", "--arr=1", "-a1", "-a 1"])
def test_an_extra_option_that_would_override_the_script_s_own_array_is_refused(option):
    """``--extra=--array=1`` came after the script's own ``#SBATCH --array=0-3``, and Slurm
    takes the last: sbatch said "submitted sim.sbatch as job 23 (4 tasks)" and one ran, the
    other three never did (in a split script, the task ids were offset into other machines).
    The command has its own --array: refused, naming it."""
    script = ArrayScript(**{**SCRIPT.__dict__, "extra": [option]})
    with pytest.raises(UserError) as info:
        render(script, Submission(0, (0, 1, 2, 3)), "9.9")
    message = str(info.value)
    assert repr(option) in message and "\n" not in message, message
    assert "sbatch's own --array" in message, message


def test_extra_options_of_similar_names_pass():
    for option in ["--account=a", "--acctg-freq=30", "--qos=long", "--constraint=avx2", "--signal=B:USR1@300", "--chdir=/x"]:
        assert f"#SBATCH {option}" in render(ArrayScript(**{**SCRIPT.__dict__, "extra": [option]}), Submission(0, (0,)), "9.9")


@pytest.mark.parametrize("name", ["sim[5]", "sim@5"])
def test_a_task_named_as_the_machine_is_told_the_array_and_its_index(project, name):
    """``sbatch --machine sim[5]`` (the task's name, as status and the results show it) or
    ``sim@5`` (its folder's): refused with "describe one like "sim[5]": {"speed": ...}" in
    machines.json, a name machines.json refuses. The command to write is --machine sim --array=5."""
    result = sbatch(project, "--machine", name, "--max-array-size", "100")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    (error,) = error_lines(result.stderr)
    assert "--machine sim --array=5" in error and "describe one" not in error, error
    assert not (project / f"{name}.sbatch").exists()


def test_scripts_whose_tasks_would_start_over_beside_their_done_jobs_say_where_those_are(project):
    """A campaign submitted with --out runs, then its unfinished tasks resubmitted as the README
    shows, ``sbatch --machine sim --array=... --submit``, without it: the scripts sent them to
    ./jobsplit-out without a word, and each task (a batch job goes on past the run's note, on
    purpose) ran its share from the start, every job done in runs/ again. sbatch, at the
    login node where a user reads it, names the root that holds them and the --out to go on."""
    runs = project / "runs"
    env = entry_env(XDG_CONFIG_HOME=str(project / "xdg"))
    ran = run_entry(project / "entry.py", "run", "--machine", "sim", "--array-index", "2", "--out", runs, "--yes", "--console", "plain", env=env, cwd=project)
    assert ran.returncode == 0, ran.stderr
    result = sbatch(project, "--machine", "sim", "--array", "1-3", "--max-array-size", "100")
    assert result.returncode == 0, result.stderr
    said = " ".join(result.stderr.split())
    assert "1 task of sim (2) has done jobs in" in said and f"--out {runs}" in said, said
    assert "jobsplit-out" in said, said
    again = sbatch(project, "--machine", "sim", "--array", "1-3", "--max-array-size", "100", "--out", "runs")
    assert again.returncode == 0 and "done jobs in" not in again.stderr, again.stderr  # there, it goes on
