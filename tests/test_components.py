"""The component fixtures work for real: Redis over RESP, a one-node Slurm cluster, headless Chromium.

These tests check the test infrastructure (tests/components.py), and pin the facts about the
real programs that the product relies on: a restarted Redis without persistence is empty, a
batch script gets `scancel --signal` only with `--batch`, a requeued array task runs again, and
an array larger than MaxArraySize is refused.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from components import (
    RespError,
    SlurmCluster,
    SlurmError,
    resp_command,
    wait_for,
)

# --- Redis -------------------------------------------------------------------------------


def test_redis_ping_set_get(redis_server):
    server = redis_server.start()
    assert server.ping()
    assert server.url == f"redis://127.0.0.1:{server.port}/0"
    assert server.command("SET", "queue:next", "job-7") == "OK"
    assert server.command("GET", "queue:next") == b"job-7"
    assert server.command("RPUSH", "queue", "a", "b", "c") == 3
    assert server.command("LRANGE", "queue", 0, -1) == [b"a", b"b", b"c"]
    assert server.command("GET", "missing") is None
    with pytest.raises(RespError, match="wrong number of arguments"):
        server.command("GET")


def test_redis_restart_comes_back_empty_on_the_same_port(redis_server):
    server = redis_server.start()
    port = server.port
    server.command("SET", "k", "v")
    assert server.command("DBSIZE") == 1

    server.restart()
    assert server.port == port and server.ping()
    assert server.command("DBSIZE") == 0

    server.command("SET", "k", "v")
    server.kill()
    assert not server.ping()
    server.start()
    assert server.command("GET", "k") is None


def test_redis_with_password(redis_server):
    server = redis_server.start(password="s3cret")
    assert server.url == f"redis://:s3cret@127.0.0.1:{server.port}/0"
    assert server.ping()
    assert server.command("SET", "k", "v") == "OK"
    other = redis_server.start()  # a second server in the same test, without a password
    assert other.port != server.port and other.command("GET", "k") is None

    with pytest.raises(RespError, match="NOAUTH"):
        resp_command(server.port, "GET", "k")
    with pytest.raises(RespError, match="WRONGPASS"):
        resp_command(server.port, "GET", "k", password="wrong")
    server.stop()
    assert not server.ping()


# --- Slurm -------------------------------------------------------------------------------


def write_script(path: Path, body: str, *directives: str) -> Path:
    """A bash batch script with ``#SBATCH`` lines, its output files next to it."""
    lines = ["#!/bin/bash", *(f"#SBATCH {d}" for d in directives), f"#SBATCH --output={path.parent}/slurm-%A_%a.out", body]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.slow
def test_slurm_array_tasks_run_concurrently_with_their_index(slurm: SlurmCluster, tmp_path: Path):
    # Each task waits (at most 60 s) until all four have started: the four virtual CPUs let a
    # 4-task array run at once although the machine has two cores.
    script = write_script(
        tmp_path / "array.sh",
        f"""
touch {tmp_path}/started_$SLURM_ARRAY_TASK_ID
for i in $(seq 600); do [ $(ls {tmp_path} | grep -c '^started_') -ge 4 ] && break; sleep 0.1; done
echo "$SLURM_ARRAY_TASK_ID $SLURM_ARRAY_TASK_COUNT $SLURM_CPUS_PER_TASK $(ls {tmp_path} | grep -c '^started_')" > {tmp_path}/task_$SLURM_ARRAY_TASK_ID
""",
        "--array=0-3",
        "--cpus-per-task=1",
    )
    job = slurm.sbatch(script)
    assert job.isdigit()
    states = slurm.wait_until_done(job, timeout=180)
    assert states == {f"{job}_{i}": "COMPLETED" for i in range(4)}
    for i in range(4):
        assert (tmp_path / f"task_{i}").read_text().split() == [str(i), "4", "1", "4"]


TRAP_BODY = """
trap 'echo "TERM ${{SLURM_RESTART_COUNT:-0}}" >> {d}/term_$SLURM_ARRAY_TASK_ID; exit 0' TERM
trap 'echo "USR1" >> {d}/usr1_$SLURM_ARRAY_TASK_ID' USR1
echo "start ${{SLURM_RESTART_COUNT:-0}}" >> {d}/start_$SLURM_ARRAY_TASK_ID
[ "${{SLURM_RESTART_COUNT:-0}}" -gt 0 ] && exit 0
for i in $(seq 120); do sleep 1 & wait $!; done
"""


@pytest.mark.slow
def test_slurm_scancel_signal_reaches_the_batch_script_with_batch(slurm: SlurmCluster, tmp_path: Path):
    script = write_script(tmp_path / "trap.sh", TRAP_BODY.format(d=tmp_path), "--array=0-1", "--cpus-per-task=1")
    job = slurm.sbatch(script)
    assert wait_for(lambda: all((tmp_path / f"start_{i}").exists() for i in range(2)), 60), slurm.squeue(job)

    # Plain `scancel --signal` signals job steps only: the batch script (no steps) never sees it.
    slurm.scancel("--signal=TERM", f"{job}_1")
    slurm.scancel("--batch", "--signal=USR1", f"{job}_1")
    assert wait_for((tmp_path / "usr1_1").exists, 30)
    assert not (tmp_path / "term_1").exists()

    slurm.scancel("--batch", "--signal=TERM", f"{job}_1")
    assert wait_for((tmp_path / "term_1").exists, 30)
    assert (tmp_path / "term_1").read_text() == "TERM 0\n"
    assert wait_for(lambda: not slurm.squeue(f"{job}_1"), 30)
    assert slurm.job_states(job)[f"{job}_1"] == "COMPLETED"  # the trap exited 0
    assert not (tmp_path / "term_0").exists()  # only task 1 was signalled


@pytest.mark.slow
def test_slurm_requeue_reruns_a_running_array_task(slurm: SlurmCluster, tmp_path: Path):
    script = write_script(tmp_path / "trap.sh", TRAP_BODY.format(d=tmp_path), "--array=0-1", "--cpus-per-task=1")
    job = slurm.sbatch(script)
    assert wait_for(lambda: all((tmp_path / f"start_{i}").exists() for i in range(2)), 60), slurm.squeue(job)

    slurm.scontrol("requeue", f"{job}_0")  # SIGTERM to the running task, then back to pending
    assert wait_for(lambda: (tmp_path / "start_0").read_text().count("start") == 2, 120), slurm.squeue(job)
    assert (tmp_path / "start_0").read_text() == "start 0\nstart 1\n"  # SLURM_RESTART_COUNT
    assert (tmp_path / "term_0").read_text() == "TERM 0\n"  # the first run was told to stop
    assert "Restarts=1" in slurm.scontrol("show", "job", f"{job}_0")

    slurm.scancel(f"{job}_1")
    assert slurm.wait_until_done(job)[f"{job}_0"] == "COMPLETED"
    assert (tmp_path / "start_1").read_text() == "start 0\n"


@pytest.mark.slow
def test_slurm_array_larger_than_max_array_size_is_refused(slurm: SlurmCluster, tmp_path: Path):
    script = write_script(tmp_path / "noop.sh", "true")
    default = slurm.max_array_size
    assert default > 8
    with slurm.configured(MaxArraySize=3):
        assert slurm.max_array_size == 3
        with pytest.raises(SlurmError, match="Invalid job array specification"):
            slurm.sbatch(script, "--array=0-7")
        job = slurm.sbatch(script, "--array=0-2")  # indexes must stay below MaxArraySize
        assert slurm.wait_until_done(job) == {f"{job}_{i}": "COMPLETED" for i in range(3)}
    assert slurm.max_array_size == default
    job = slurm.sbatch(script, "--array=0-7")
    assert len(slurm.wait_until_done(job)) == 8
