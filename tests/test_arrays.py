"""Arrays in machines.json (issue 12): ``name: {"speed", "cores", "array"}`` is the machines
``name[0]`` ... ``name[n-1]``; which member a run is; its folder name; its workers.

Fast, in-process: parsing and its one-sentence errors, expansion into the plan and the digest
(files without arrays keep their digest: see test_golden), the natural order of members, the
choice of a member by --array-index or SLURM_ARRAY_TASK_ID, and the resolver's precedence.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import write_config_dir
from jobsplit import UserError
from jobsplit.config import JobsplitSettings
from jobsplit.hostconfig import HostSettings
from jobsplit.machines import Machine, entry_names, load_machines, parse_machines, pick, sort_key, split_member
from jobsplit.outdir import MachineDir, folder_name
from jobsplit.pool import JobPool
from jobsplit.project import load_project
from jobsplit.schedulers import Allocation, current_allocation
from jobsplit.settings import RunFlags, resolve

MIXED = {"ws2": [1.0, 8], "sim": {"speed": 1.5, "cores": 4, "array": 12}, "ws1": [2.0, 2]}


def load(tmp_path: Path, content) -> tuple[Machine, ...]:
    path = tmp_path / "machines.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return load_machines(path)


def test_an_array_entry_is_its_members_in_index_order_among_the_workstations(tmp_path):
    machines = load(tmp_path, MIXED)
    names = [m.name for m in machines]
    assert names == [*(f"sim[{i}]" for i in range(12)), "ws1", "ws2"]  # sim[2] before sim[10]
    assert {(m.speed, m.cores) for m in machines if m.name.startswith("sim")} == {(1.5, 4)}
    assert machines[-1] == Machine("ws2", 1.0, 8)
    assert entry_names(machines) == ["sim", "ws1", "ws2"]


def test_members_are_planned_and_digested_like_any_machine(tmp_path):
    """One array of 3 plans and digests exactly as three machines of the same speed and cores
    named sim[0..2] would: the digest covers each member."""
    pool = JobPool([(i,) for i in range(90)])
    project = load_project(pool, write_config_dir(tmp_path / "a", machines={"sim": {"speed": 1.0, "cores": 2, "array": 3}, "ws": [1.0, 2]}))
    assert [m.name for m in project.plan.machines] == ["sim[0]", "sim[1]", "sim[2]", "ws"]
    assert sorted(p for share in project.plan.shares for p in share) == list(range(90))
    assert [len(share) for share in project.plan.shares] == [23, 23, 22, 22]
    bigger = load_project(pool, write_config_dir(tmp_path / "b", machines={"sim": {"speed": 1.0, "cores": 2, "array": 4}, "ws": [1.0, 2]}))
    faster = load_project(pool, write_config_dir(tmp_path / "c", machines={"sim": {"speed": 1.1, "cores": 2, "array": 3}, "ws": [1.0, 2]}))
    assert len({project.digest, bigger.digest, faster.digest}) == 3


def test_a_file_without_arrays_keeps_its_digest(tmp_path):
    """The golden tests pin whole digests; here: the key order and the object form change nothing."""
    pool = JobPool([(i,) for i in range(20)])
    one = load_project(pool, write_config_dir(tmp_path / "a", machines={"b": [1.0, 4], "a": [2.0, 2]})).digest
    two = load_project(pool, write_config_dir(tmp_path / "b", machines='{"a": [2, 2], "b": [1, 4]}')).digest
    assert one == two


@pytest.mark.parametrize(
    ("content", "needles"),
    [
        ({"sim": {"speed": 1, "cores": 4}}, ['"sim"', '"array" is missing', "[speed, cores]"]),
        ({"sim": {"cores": 4, "array": 2}}, ['"sim"', '"speed" is missing']),
        ({"sim": {"speed": 1, "cores": 4, "array": 2, "gpus": 1}}, ['"sim"', 'unknown key "gpus"']),
        ({"sim": {"speed": 1, "cores": 4, "array": 0}}, ['"sim" array', "from 1", "got 0"]),
        ({"sim": {"speed": 1, "cores": 4, "array": 2.0}}, ['"sim" array', "2.0"]),
        ({"sim": {"speed": 1, "cores": 4, "array": "64"}}, ['"sim" array', '"64"']),
        ({"sim": {"speed": 1, "cores": 4, "array": True}}, ['"sim" array', "true"]),
        ({"sim": {"speed": 1, "cores": 4, "array": 10**6}}, ['"sim" array', "100,000"]),
        ({"sim": {"speed": 0, "cores": 4, "array": 2}}, ['"sim" speed', "> 0"]),
        ({"sim": {"speed": 1, "cores": 0.5, "array": 2}}, ['"sim" cores', "0.5"]),
        ('{"sim": {"speed": 1, "cores": 4, "array": 2, "array": 3}}', ['"sim"', '"array" appears twice']),
        ({"sim[0]": [1, 2]}, ['"sim[0]"', "name"]),
        ({"sim": [1, 2, 3]}, ['"sim"', "[speed, cores]", '"array"']),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_malformed_array_entries(tmp_path, content, needles):
    with pytest.raises(UserError) as info:
        load(tmp_path, content)
    message = str(info.value)
    assert "machines.json" in message and "\n" not in message
    for needle in needles:
        assert needle in message, message


def test_member_names_and_their_folders():
    assert split_member("sim[12]") == ("sim", 12)
    assert split_member("sim") is None and split_member("sim[01]") is None and split_member("sim[]") is None
    assert sort_key("sim[2]") < sort_key("sim[10]") < sort_key("sim.b")
    assert folder_name("sim[3]") == "sim@3" and folder_name("ws-1.lab") == "ws-1.lab"
    folder = MachineDir.of(Path("/out"), "sim[3]")
    assert folder.path == Path("/out/sim@3") and folder.log == Path("/out/sim@3/sim@3.log.gz")
    assert folder.segment(2) == Path("/out/sim@3/sim@3.log.2.gz")


def test_rotated_segments_of_a_member_are_found(tmp_path):
    folder = MachineDir.of(tmp_path, "sim[3]")
    folder.create()
    for name in ("sim@3.log.2.gz", "sim@3.log.1.gz", "sim@3.log.gz", "sim@30.log.1.gz"):
        (folder.path / name).write_bytes(b"")
    assert [p.name for p in folder.segments()] == ["sim@3.log.1.gz", "sim@3.log.2.gz", "sim@3.log.gz"]


# --- which machine a run is ------------------------------------------------------------------


MACHINES = parse_machines({"sim": {"speed": 1, "cores": 4, "array": 8}, "ws": [1, 2]})


def test_pick_a_member_by_flag_or_by_the_schedulers_task_id():
    assert pick(MACHINES, "sim", 3).name == "sim[3]"
    assert pick(MACHINES, "sim", None, ("SLURM_ARRAY_TASK_ID", 5)).name == "sim[5]"
    assert pick(MACHINES, "sim", 2, ("SLURM_ARRAY_TASK_ID", 5)).name == "sim[2]"  # the flag wins
    assert pick(MACHINES, "sim[7]", None).name == "sim[7]"  # a member by its full name
    assert pick(MACHINES, "ws", None, ("SLURM_ARRAY_TASK_ID", 5)).name == "ws"  # a single machine ignores the task id


@pytest.mark.parametrize(
    ("name", "index", "task", "needles"),
    [
        ("sim", None, None, ['"sim" is an array of 8', "--array-index"]),
        ("sim", 8, None, ["--array-index 8", "0 to 7"]),
        ("sim", None, ("SLURM_ARRAY_TASK_ID", 9), ["SLURM_ARRAY_TASK_ID 9", "0 to 7"]),
        ("ws", 1, None, ["--array-index 1", '"ws" is not an array']),
        ("nope", None, None, ['no machine "nope"', "sim, ws"]),
        ("sim[8]", None, None, ['"sim[8]" is out of range: "sim" is an array of 8', "indices 0 to 7"]),  # was: no machine "sim[8]"
    ],
)
def test_pick_refusals(name, index, task, needles):
    with pytest.raises(UserError) as info:
        pick(MACHINES, name, index, task)
    for needle in needles:
        assert needle in str(info.value), str(info.value)


def test_slurms_environment_is_read_and_checked():
    assert current_allocation({}) == Allocation()
    assert current_allocation({"SLURM_ARRAY_TASK_ID": "4", "SLURM_CPUS_PER_TASK": "16"}) == Allocation(("SLURM_ARRAY_TASK_ID", 4), 16)
    with pytest.raises(UserError, match="SLURM_CPUS_PER_TASK is '0'"):
        current_allocation({"SLURM_CPUS_PER_TASK": "0"})
    with pytest.raises(UserError, match="SLURM_ARRAY_TASK_ID is '4x'"):
        current_allocation({"SLURM_ARRAY_TASK_ID": "4x"})


def test_workers_come_from_the_flag_then_the_allocation_then_host_ini_then_the_cores():
    machine = MACHINES[0]
    shared = JobsplitSettings()
    granted = Allocation(None, 6)
    assert resolve(RunFlags(workers=3), HostSettings(workers=5), shared, machine, granted).workers == 3
    assert resolve(RunFlags(), HostSettings(workers=5), shared, machine, granted).workers == 6
    assert resolve(RunFlags(), HostSettings(workers=5), shared, machine, Allocation()).workers == 5
    assert resolve(RunFlags(), HostSettings(), shared, machine, Allocation()).workers == machine.cores == 4
    assert resolve(RunFlags(), HostSettings(), shared, machine, Allocation()).folder.path.name == "sim@0"
