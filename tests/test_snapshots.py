"""Progress snapshots (issue 12, "Watching from the login node"): what a run writes to
``progress.json``, how ``status`` reads it for a run on another host, and how merge-results
leaves alone a folder that another host's run is writing (SQLite WAL is not safe across hosts).

"Another host" is this test process with ``socket.gethostname`` patched; test_slurm.py runs
``status`` in its own UTS namespace (another hostname) against real array tasks.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import pytest

from conftest import run_entry, write_config_dir
from fakeworkers import FakeClock
from jobsplit import UserError
from jobsplit.console import message_console
from jobsplit.merge import merge, report
from jobsplit.snapshot import INTERVAL, STALLED_AFTER, RunSnapshot, SnapshotWriter, read_snapshot, write_snapshot
from jobsplit.status import MachineStatus, gather, overall, tasks_with_failures, unfinished_tasks
from jobsplit.status import run as status_run
from threemachines import ENTRY, HEADER, env_for

MACHINES = {"sim": {"speed": 1.0, "cores": 1, "array": 3}, "ws": [1.0, 2]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """An output root where sim[0], sim[1] and ws ran to the end here; sim[2] never started."""
    base = tmp_path_factory.mktemp("snapshots")
    write_config_dir(base, config="[experiment]\nlabel = snapshots\n", header=HEADER, machines=MACHINES)
    (base / "entry.py").write_text(ENTRY, encoding="utf-8")
    for machine, index in (("sim", "0"), ("sim", "1"), ("ws", None)):
        args = ["run", "--machine", machine, "--yes", "--console", "plain", "--out", base / "out", "--nice", "0"]
        result = run_entry(base / "entry.py", *args, *(["--array-index", index] if index else []), env=env_for(base), cwd=base)
        assert result.returncode == 0, result.stderr
    return base / "out"


@pytest.fixture
def elsewhere(monkeypatch):
    """Be another host than the one that ran the machines."""
    monkeypatch.setattr("jobsplit.snapshot.socket.gethostname", lambda: "login-node")


def as_if_running_on(folder: Path, host: str, updated: float) -> None:
    snapshot = read_snapshot(folder)
    assert snapshot is not None
    write_snapshot(folder, RunSnapshot(**{**snapshot.__dict__, "state": "running", "host": host, "updated": updated, "done": 3, "running": 1}))


def test_a_finished_run_leaves_its_snapshot(runs):
    snapshot = read_snapshot(runs / "sim@1")
    assert snapshot is not None
    assert (snapshot.machine, snapshot.state, snapshot.total, snapshot.done, snapshot.failed, snapshot.running, snapshot.pending) == ("sim[1]", "completed", 5, 5, 0, 0, 0)
    assert snapshot.plan == {"sim[0]": 5, "sim[1]": 5, "sim[2]": 5, "ws": 9}  # 24 jobs by capacity 1:1:1:2
    assert snapshot.started <= snapshot.updated <= time.time() and snapshot.workers == 1
    doc = json.loads((runs / "sim@1" / "progress.json").read_text())
    assert doc["format"] == 1 and len(doc["digest"]) == 32


def test_status_on_another_host_reads_the_snapshots_and_lists_every_task(runs, elsewhere, capsys):
    digest, statuses, _, _ = gather([runs])
    assert digest == read_snapshot(runs / "ws").digest
    by_name = {s.name: s for s in statuses}
    assert list(by_name) == ["sim[0]", "sim[1]", "sim[2]", "ws"]
    assert by_name["sim[1]"].state == "finished" and by_name["sim[1]"].done == 5 and by_name["sim[1]"].jobs_per_second
    assert by_name["sim[2]"].state == "not started" and by_name["sim[2]"].pending == 5
    assert unfinished_tasks(statuses) == {"sim": ([2], 0)}
    assert status_run(argparse.Namespace(dirs=[runs], json=False, balance=None), message_console()) == 0
    out = capsys.readouterr().out
    assert "sim: resubmit the 1 task not finished with --array=2" in out
    assert status_run(argparse.Namespace(dirs=[runs], json=True, balance=None), message_console()) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["arrays"] == {"sim": {"unfinished": [2], "running": 0, "resubmit": "--array=2", "failed": [], "retry": None}}


def test_tasks_with_nothing_to_do_are_not_to_resubmit():
    """An array larger than the pool has tasks of empty shares, "0/0 not started"; and a queue
    run's tasks have nothing to do once no job of the pool is left. Each was listed to resubmit:
    an allocation for a run that ends at once."""
    empty, waiting, stopped = MachineStatus("sim[0]", 0), MachineStatus("sim[1]", 5, pending=5), MachineStatus("sim[2]", 4, 4, state="interrupted")
    assert unfinished_tasks([empty, waiting, stopped]) == {"sim": ([1, 2], 0)}
    queue_tasks = [MachineStatus("sim[0]", 6, 6, state="finished"), MachineStatus("sim[1]", 2, 2, state="interrupted"), MachineStatus("sim[2]", 0)]
    assert unfinished_tasks(queue_tasks, pool=8) == {"sim": ([], 0)}  # the pool is done
    assert unfinished_tasks(queue_tasks, pool=9) == {"sim": ([1, 2], 0)}  # one job left: any task may take it
    dead = [MachineStatus("sim[0]", 8, 8, state="finished"), MachineStatus("sim[1]", 2, running=2, state="stalled")]
    assert unfinished_tasks(dead, pool=10) == {"sim": ([1], 0)}  # the jobs a dead task held are not done: someone must run them


def test_tasks_finished_with_failed_jobs_are_to_resubmit_with_retry_failed():
    """Resubmitted as they are, they end at once, their failed jobs left failed: status said
    "nothing to resubmit, every task finished" while merge-results said INCOMPLETE."""
    statuses = [MachineStatus("sim[0]", 5, 4, 1, state="finished"), MachineStatus("sim[1]", 5, 5, state="finished"),
                MachineStatus("sim[2]", 5, 3, 2, state="finished"), MachineStatus("sim[3]", 5, 1, 1, pending=3, state="interrupted"),
                MachineStatus("ws", 5, 4, 1, state="finished")]  # fmt: skip
    assert tasks_with_failures(statuses) == {"sim": ([0, 2], 3)}
    assert unfinished_tasks(statuses) == {"sim": ([3], 0)}
    # Through a shared queue, one of those tasks resubmitted with --retry-failed takes the queue's failed jobs again (said
    # "nothing to resubmit, every task finished", merge-results INCOMPLETE); once every job is done somewhere, nothing is left.
    assert tasks_with_failures(statuses, pool=25) == {"sim": ([0, 2], 3)}
    assert tasks_with_failures(statuses, pool=17) == {}


def test_running_and_stalled_tasks_on_another_host(runs, tmp_path, elsewhere, capsys):
    root = shutil.copytree(runs, tmp_path / "out")
    as_if_running_on(root / "sim@0", "node7", time.time())
    as_if_running_on(root / "sim@1", "node8", time.time() - STALLED_AFTER - 60)
    (root / "sim@0" / "journal.sqlite").write_bytes(b"not opened from another host while its run goes on\n" * 50)
    _, statuses, _, _ = gather([root])
    states = {s.name: (s.state, s.done, s.running) for s in statuses}
    assert states["sim[0]"] == ("running", 3, 1) and states["sim[1]"][0] == "stalled"
    assert unfinished_tasks(statuses) == {"sim": ([1, 2], 1)}
    assert status_run(argparse.Namespace(dirs=[root], json=False, balance=None), message_console()) == 0
    assert "with --array=1-2" in capsys.readouterr().out

    merged = merge([root])  # the damaged journal of sim[0] was never opened
    assert set(merged.elsewhere) == {"sim[0]"} and not merged.complete
    assert "sim[1]" in {m.machine for m in merged.machines}  # a stalled run's journal is read
    report(merged, message_console())
    text = capsys.readouterr().err
    assert "missing from sim[0]: all 5 jobs (its run goes on on node7" in text and "INCOMPLETE" in text


def test_a_paused_run_on_another_host_is_paused_not_stalled(runs, tmp_path, elsewhere):
    """A run paused with Ctrl-Z says so in its snapshot: status on another host shows it paused
    however long ago (it was taken for a dead run after a minute); its journal is left alone
    while its snapshot is as recent as a running run's must be, and read after that, as a
    stalled run's is (a run killed while paused never says so)."""
    root = shutil.copytree(runs, tmp_path / "out")
    for name, updated in (("sim@0", time.time()), ("sim@1", time.time() - STALLED_AFTER - 3600)):
        as_if_running_on(root / name, "node7", updated)
        snapshot = read_snapshot(root / name)
        write_snapshot(root / name, RunSnapshot(**{**snapshot.__dict__, "state": "paused"}))
    _, statuses, _, _ = gather([root])
    states = {s.name: (s.state, s.eta_seconds) for s in statuses}
    assert states["sim[0]"] == ("paused", None) and states["sim[1]"] == ("paused", None)
    assert set(merge([root]).elsewhere) == {"sim[0]"}


def test_a_run_whose_host_clock_is_hours_ahead_is_said_to_look_alive_only_by_its_clock(runs, tmp_path, elsewhere, capsys):
    """A node whose clock is 3 hours ahead dates its snapshots 3 hours on: killed there, its run
    showed as running and merge-results waited for it ("merge again when the run has ended") for
    3 hours, saying nothing of why. Both now say that its clock is ahead and what to check."""
    root = shutil.copytree(runs, tmp_path / "out")
    as_if_running_on(root / "sim@0", "node7", time.time() + 3 * 3600)
    as_if_running_on(root / "sim@1", "node8", time.time() + 5)  # clocks a few seconds apart: nothing to say
    assert status_run(argparse.Namespace(dirs=[root], json=False, balance=None), message_console()) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert "sim[0] is shown as running from its last snapshot; but node7's clock is ahead of this host's by 3.0 h or more" in said, said
    assert "check it on node7, and set its clock right (NTP)" in said and "node8" not in said, said
    merged = merge([root])
    assert set(merged.elsewhere) == {"sim[0]", "sim[1]"} and not merged.complete  # still not opened: it may be alive
    report(merged, message_console())
    said = " ".join(capsys.readouterr().err.split())
    assert "merge again when the run has ended; but node7's clock is ahead of this host's by 3.0 h or more" in said, said
    assert said.count("clock is ahead") == 1, said


def test_merge_refuses_when_every_folder_is_written_elsewhere(runs, tmp_path, elsewhere):
    root = shutil.copytree(runs, tmp_path / "out")
    for name in ("sim@0", "sim@1", "ws"):
        as_if_running_on(root / name, "node7", time.time())
    with pytest.raises(UserError, match=r"every folder given is being written by a run on another host \(node7\)"):
        merge([root])


def test_on_the_runs_own_host_the_journal_is_read(runs, tmp_path):
    """Same host: WAL readers are safe, and the journal is live to its last commit."""
    root = shutil.copytree(runs, tmp_path / "out")
    as_if_running_on(root / "sim@0", __import__("socket").gethostname(), time.time())
    _, statuses, _, _ = gather([root])
    assert {s.name: s.state for s in statuses}["sim[0]"] == "finished"  # what its journal says
    assert merge([root]).elsewhere == {}


def test_the_writer_writes_every_interval_and_at_once_when_asked(tmp_path):
    clock = FakeClock()
    first = RunSnapshot("m", "0" * 32, {"m": 5}, "running", "h", 1, clock.time(), clock.time(), 5, 0, 0, 0, 0, 1)
    writer = SnapshotWriter(tmp_path, first, clock)
    assert read_snapshot(tmp_path) == first
    clock.now += INTERVAL / 2
    writer.update(5, 2, 0, 1)
    assert read_snapshot(tmp_path).done == 0  # not yet due
    clock.now += INTERVAL / 2
    writer.update(5, 3, 0, 1)
    assert (read_snapshot(tmp_path).done, read_snapshot(tmp_path).updated) == (3, clock.time())
    clock.now += 1
    writer.paused()  # Ctrl-Z: at once, however recent the last snapshot
    assert (read_snapshot(tmp_path).state, read_snapshot(tmp_path).updated) == ("paused", clock.time())
    clock.now += 3600
    writer.update(5, 4, 0, 1)  # the first update after the pause says the run goes on
    assert (read_snapshot(tmp_path).state, read_snapshot(tmp_path).done) == ("running", 4)
    writer.write(5, 5, 0, 0, "completed")
    assert read_snapshot(tmp_path).state == "completed"
    assert [p.name for p in tmp_path.iterdir()] == ["progress.json"]  # no temporary file left


@pytest.mark.parametrize("damage", ["", '{"machine": "m"}', '{"format": 1, "machine": "sim[0]", "do', '["not", "a", "snapshot"]'], ids=["empty", "fields missing", "cut short", "a list"])
def test_a_damaged_snapshot_is_no_snapshot_and_the_journal_is_read(runs, damage):
    """A copy cut short (or an emptied progress.json) beside a complete journal: every tool
    refused the folder and the machine's own run refused to start, saying to copy the folder
    again from its host. The journal holds the truth; the run writes its snapshot anew."""
    folder = runs / "sim@0"
    kept = (folder / "progress.json").read_bytes()
    try:
        (folder / "progress.json").write_text(damage)
        assert read_snapshot(folder) is None
        assert "sim[0]" not in merge([runs]).absent
        assert {s.name: s.state for s in gather([runs])[1]}["sim[0]"] == "finished"
        base = runs.parent
        args = ["run", "--machine", "sim", "--array-index", "0", "--yes", "--console", "plain", "--out", runs, "--nice", "0"]
        result = run_entry(base / "entry.py", *args, env=env_for(base), cwd=base)
        assert result.returncode == 0, result.stderr
        assert (read_snapshot(folder) or pytest.fail("no snapshot written")).state == "completed"
    finally:
        (folder / "progress.json").write_bytes(kept)


def test_a_queue_s_failed_jobs_done_since_by_another_task_are_not_counted_failed():
    """A queue run's task ended with 14 failed jobs; another, resubmitted with --retry-failed,
    did all 14. The overall line said "40/40 done, 14 failed", as if those still waited to be
    retried: the first task's journal keeps its failed attempts. Failed is what is not done."""
    statuses = [MachineStatus("sim[0]", 27, 27, state="finished"), MachineStatus("sim[1]", 14, 0, 14, state="finished"), MachineStatus("sim[2]", 13, 13, state="finished")]
    whole = overall(statuses, pool=40)
    assert (whole.done, whole.failed, whole.pending) == (40, 0, 0), whole
    partly = [MachineStatus("sim[0]", 27, 23, 4, state="finished"), MachineStatus("sim[1]", 14, 0, 14, state="finished"), MachineStatus("sim[2]", 13, 13, state="finished")]
    assert (overall(partly, pool=40).done, overall(partly, pool=40).failed) == (36, 4)
    before = [MachineStatus("sim[0]", 13, 13, state="finished"), MachineStatus("sim[1]", 14, 0, 14, state="finished"), MachineStatus("sim[2]", 13, 13, state="finished")]
    assert (overall(before, pool=40).done, overall(before, pool=40).failed) == (26, 14)
