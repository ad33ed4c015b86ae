"""The share lock (sharefolders.ShareLock): one run of a share (digest and machine) on this host,
whatever its folder, held by another process here; a holder on another host is left to that
host's folder lock (a state folder on a home shared by the nodes of a cluster)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from jobsplit.errors import UserError
from jobsplit.sharefolders import ShareLock

DIGEST, MACHINE = "ab" * 16, "node"

HOLDER = """
import fcntl, json, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.lockf(fd, fcntl.LOCK_EX)
os.pwrite(fd, sys.argv[2].encode(), 0)
print("held", flush=True)
time.sleep(60)
"""


def hold(path: Path, host: str, folder: Path) -> subprocess.Popen[str]:
    """Another process holding ``path``'s lock, as a run of ``host`` writing into ``folder``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    record = json.dumps({"pid": 4242, "host": host, "since": "2026-12-07T10:00:00.000Z", "folder": str(folder)})
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), record], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    return holder


@pytest.mark.parametrize("host", ["this host", "node17"])
def test_a_share_held_here_is_refused_and_one_held_on_another_host_is_left_to_its_folder_lock(tmp_path, host):
    lock = ShareLock(DIGEST, MACHINE, tmp_path / "b" / MACHINE)
    assert lock.path is not None
    holder = hold(lock.path, socket.gethostname() if host == "this host" else host, tmp_path / "a" / MACHINE)
    try:
        if host == "this host":
            with pytest.raises(UserError, match=rf"{tmp_path / 'a' / MACHINE} is in use by another run of this machine \(pid 4242 on {socket.gethostname()}, .*; this run would be in {tmp_path / 'b' / MACHINE}\)"):
                lock.__enter__()
        else:
            with lock:  # a crashed node's lock on a shared home would otherwise fail every later run of the machine
                pass
    finally:
        holder.kill()
        holder.wait()
    with ShareLock(DIGEST, MACHINE, tmp_path / "b" / MACHINE):  # free once its holder is gone
        assert json.loads(lock.path.read_text())["folder"] == str(tmp_path / "b" / MACHINE)


def test_looking_into_this_run_s_own_folder_under_another_name_keeps_its_lock(tmp_path):
    """A noted folder that is this run's own under another name (a link, a bind mount): looking
    into it opened and closed its run.lock from this process, which drops this process's lockf
    lock on the file, and a second run of the folder could start."""
    from jobsplit.outdir import MachineLock, lock_holder
    from jobsplit.sharefolders import elsewhere, note_folder

    folder = tmp_path / "out" / MACHINE
    folder.mkdir(parents=True)
    (tmp_path / "alias").symlink_to(tmp_path / "out")
    note_folder(DIGEST, MACHINE, folder)
    (note := ShareLock(DIGEST, MACHINE, folder).path.with_suffix(".txt")).write_text(f"{tmp_path / 'alias' / MACHINE}\n")  # as noted through the link
    with MachineLock(folder):
        elsewhere(DIGEST, MACHINE, folder, done=True)
        seen = subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; from jobsplit.outdir import lock_holder; print(lock_holder(Path(sys.argv[1])))", str(folder)],
                              capture_output=True, text=True, check=True)  # fmt: skip
        assert seen.stdout.strip() != "None", "the run's own folder lock was dropped"
    assert note.exists() and lock_holder(folder) is None


@pytest.mark.parametrize("state", ["no home", "a file"])
def test_a_run_without_a_state_folder_it_can_write_says_what_it_cannot_see(tmp_path, state):
    """Where the state folder cannot be written (a service account's missing home, a read-only
    home on compute nodes), nothing is noted and no share lock taken: two runs of one share into
    two folders both ran every job, without a word. The run says so, and how to mend it; and a
    home that does not exist is not made (as root, the run made /nonexistent/.local/state)."""
    from conftest import run_entry
    from runhelpers import pool_spec, run_env, write_kinds_entry

    entry, config_dir = write_kinds_entry(tmp_path / "project", pool_spec("ok", 2))
    home = tmp_path / "gone"
    if state == "no home":
        env = run_env(tmp_path, XDG_STATE_HOME=None, HOME=str(home))
    else:
        (tmp_path / "a-file").write_text("")
        env = run_env(tmp_path, XDG_STATE_HOME=str(tmp_path / "a-file"))
    result = run_entry(entry, "run", "--config-dir", config_dir, "--machine", "solo", "--yes", "--out", tmp_path / "out", env=env)
    said = " ".join(result.stderr.split())
    assert result.returncode == 0, result.stderr
    reason = "this user has no home folder to keep jobsplit's notes" if state == "no home" else f"jobsplit's state folder {tmp_path / 'a-file' / 'jobsplit' / 'shares'} cannot be written"
    assert f"note: {reason}" in said and "go unseen; set XDG_STATE_HOME to a folder you can write" in said, said
    assert not home.exists()


def test_a_run_whose_folder_cannot_be_noted_says_so(tmp_path):
    """A state folder on a full disk (or over its quota) still took the share lock's empty file,
    but not the note of the run's folder, and the failure went unsaid: a later run of the share
    from another folder saw no done jobs, and ran them all again. (Here the note's place is taken
    by a folder: the append fails as on a full disk.)"""
    from conftest import run_entry
    from runhelpers import pool_spec, run_env, write_kinds_entry

    entry, config_dir = write_kinds_entry(tmp_path / "project", pool_spec("ok", 2))
    env = run_env(tmp_path)
    digest = run_entry(entry, "digest", "--config-dir", config_dir, env=env).stdout.strip().replace("-", "")
    note = tmp_path / "state" / "jobsplit" / "shares" / f"{digest}-solo.txt"
    note.mkdir(parents=True)
    result = run_entry(entry, "run", "--config-dir", config_dir, "--machine", "solo", "--yes", "--out", tmp_path / "out", env=env)
    said = " ".join(result.stderr.split())
    assert result.returncode == 0, result.stderr
    assert f"note: this run's folder could not be noted in {note} (" in said, said
    assert "a run of this share from another folder will not see the jobs done here, and may run them again" in said
