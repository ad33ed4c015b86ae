"""Three machines of one small project, for the merge and status tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import entry_env, run_entry, write_config_dir

HEADER = ("Run Start Time", "Job Running Time", "Job Start Time", "Value", "Noise")
MACHINES = {"m1": [1.0, 2], "m2": [1.0, 2], "m3": [1.0, 2]}
ENTRY = '''\
import os
import time

import jobsplit


def job(group, rep, random_obj, config, progress):
    if f"{group}-{rep}" in os.environ.get("FAIL_JOBS", "").split(","):
        raise RuntimeError(f"job {group}-{rep} fails on purpose")
    gate = os.environ.get("JOB_GATE")  # a folder: the jobs that start after the first two wait for its file "open"
    if gate:
        fd = os.open(os.path.join(gate, "starts"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, b"x\\n")
        os.close(fd)
        with open(os.path.join(gate, "starts")) as starts:
            waits = len(starts.read().split()) > 2
        while waits and not os.path.exists(os.path.join(gate, "open")):
            time.sleep(0.01)
    time.sleep(float(os.environ.get("JOB_SLEEP", "0")))
    return group * 1.5 + rep * 0.25, random_obj.random()


pool = [(group, rep) for group in range(4) for rep in range(6)]

if __name__ == "__main__":
    jobsplit.main(job, pool)
'''

def gate(folder: Path) -> dict[str, str]:
    """The environment of a run whose jobs, past the first two to start, wait until
    :func:`open_gate`: a test looks at the run mid-way for as long as it takes (a busy host gave
    it less than the run's few seconds)."""
    folder.mkdir(parents=True, exist_ok=True)
    return {"JOB_GATE": str(folder)}


def open_gate(folder: Path) -> None:
    (folder / "open").touch()


def make_project(path: Path, config: str) -> Path:
    write_config_dir(path, config=config, header=HEADER, machines=MACHINES)
    entry = path / "entry.py"
    entry.write_text(ENTRY, encoding="utf-8")
    return entry


def env_for(path: Path, state: Path | None = None, **extra: str) -> dict[str, str]:
    """``state``: the user's state folder (see runhelpers.run_env), else ``path/state``."""
    return entry_env(XDG_CONFIG_HOME=str(path / "xdg"), XDG_STATE_HOME=str(state or path / "state"), NO_COLOR="1", **extra)


def host_state(out: Path) -> Path:
    """The state folder of the host whose runs write into ``out``: each output root stands for
    a host of its own (a host started the same share again in another folder is refused)."""
    return out.with_name(out.name + ".state")


def run_args(out: Path, machine: str) -> list[str]:
    return ["--console", "plain", "--yes", "--out", str(out), "--machine", machine, "--start-method", "fork", "--workers", "2"]


def run_machine(entry: Path, out: Path, machine: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_entry(entry, *run_args(out, machine), env=env_for(entry.parent, host_state(out), **env), cwd=entry.parent)
