"""Setting a host up (issue 3, Must show 4): init, missing files, no machines.json, host.ini, niceness.

host.ini lives in the user config dir (platformdirs, which honours XDG_CONFIG_HOME on Linux):
every run here gets its own XDG_CONFIG_HOME, so a developer's own host.ini never leaks in.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from conftest import error_lines, run_entry
from jobsplit.config import JobsplitSettings
from jobsplit.hostconfig import load_host_settings
from jobsplit.machines import Machine, this_host
from jobsplit.schedulers import Allocation
from jobsplit.settings import RunFlags, resolve
from runhelpers import (
    CSV_COLUMNS,
    journal_query,
    machine_log_text,
    pool_spec,
    read_results,
    run_env,
    spec_id,
    write_host_ini,
    write_kinds_entry,
)

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "example_main.py"
TEMPLATES = REPO / "templates"


def expected_nice(added: int) -> int:
    """The niceness a worker ends up with: this process's (inherited by the run) plus ``added``."""
    return min(19, os.nice(0) + added)


# --- init ------------------------------------------------------------------------------------


def test_init_writes_the_three_templates_and_never_overwrites(tmp_path):
    dest = tmp_path / "cfg"
    result = run_entry(EXAMPLE, "init", "--config-dir", dest, env=run_env(tmp_path))
    assert result.returncode == 0, result.stderr
    names = ("config.ini", "header.csv", "machines.json")
    for name in names:
        assert (dest / name).read_bytes() == (TEMPLATES / name).read_bytes()
        assert f"wrote {dest / name}" in result.stderr
    assert "machines.json" in result.stderr and "header.csv" in result.stderr  # says what to edit
    edited = "[jobsplit]\nstrategy = rendezvous\n"
    (dest / "config.ini").write_text(edited)
    (dest / "header.csv").unlink()
    again = run_entry(EXAMPLE, "init", "--config-dir", dest, env=run_env(tmp_path))
    assert again.returncode == 0, again.stderr
    assert (dest / "config.ini").read_text() == edited
    assert (dest / "header.csv").read_bytes() == (TEMPLATES / "header.csv").read_bytes()
    assert f"kept {dest / 'config.ini'}" in again.stderr and f"wrote {dest / 'header.csv'}" in again.stderr


def test_init_where_it_cannot_write_says_so_in_a_sentence(tmp_path):
    """A folder that cannot be made (a file in the way, as a read-only disk would refuse it) and
    a header.csv that is a link to nowhere: both were tracebacks."""
    (tmp_path / "file").write_text("x")
    result = run_entry(EXAMPLE, "init", "--config-dir", tmp_path / "file" / "cfg", env=run_env(tmp_path))
    assert result.returncode == 2, result.stderr
    assert f"cannot write {tmp_path / 'file' / 'cfg'} (Not a directory); run init where you may write" in result.stderr
    dest = tmp_path / "cfg"
    dest.mkdir()
    (dest / "header.csv").symlink_to(tmp_path / "gone.csv")
    result = run_entry(EXAMPLE, "init", "--config-dir", dest, env=run_env(tmp_path))
    assert result.returncode == 2, result.stderr
    assert f"{dest / 'header.csv'} is a link to {tmp_path / 'gone.csv'}, which does not exist" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr and not (tmp_path / "gone.csv").exists()


@pytest.mark.parametrize("missing", ["config.ini", "header.csv"])
def test_a_run_missing_a_config_file_points_at_init(tmp_path, missing):
    entry, config_dir = write_kinds_entry(tmp_path, pool_spec("ok", 3))
    (config_dir / missing).unlink()
    result = run_entry(entry, "run", "--config-dir", config_dir, "--out", tmp_path / "out", "--machine", "solo", "--yes", env=run_env(tmp_path))
    assert result.returncode == 2, result.stderr
    assert missing in result.stderr and "not found" in result.stderr and "init" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_without_machines_json_this_host_is_the_only_machine(tmp_path):
    pool = pool_spec("ok", 10)
    entry, config_dir = write_kinds_entry(tmp_path, pool, machines=False)
    assert not (config_dir / "machines.json").exists()
    result = subprocess.run(
        [sys.executable, str(entry), "run", "--config-dir", str(config_dir), "--out", str(tmp_path / "out"), "--yes"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, env=run_env(tmp_path), timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    host = this_host().name
    assert "No " in result.stderr and "machines.json" in result.stderr and host in result.stderr
    assert os.listdir(tmp_path / "out") == [host]
    _, rows = read_results(tmp_path / "out" / host / "results.csv")
    assert sorted(r["Job ID"] for r in rows) == sorted(spec_id(s) for s in pool)
    assert {r["Machine"] for r in rows} == {host}


def test_the_default_output_folder_is_jobsplit_out_here(tmp_path):
    entry, config_dir = write_kinds_entry(tmp_path / "project", pool_spec("ok", 3))
    work = tmp_path / "work"
    work.mkdir()
    result = run_entry(entry, "run", "--config-dir", config_dir, "--machine", "solo", "--yes", env=run_env(tmp_path), cwd=work)
    assert result.returncode == 0, result.stderr
    header, rows = read_results(work / "jobsplit-out" / "solo" / "results.csv")
    assert header == list(CSV_COLUMNS) and len(rows) == 3


def test_a_share_started_in_a_new_folder_without_a_confirmation_is_refused_naming_where_its_done_jobs_are(tmp_path):
    """The output is ``./jobsplit-out`` by default: a resume run from another folder (a new
    terminal, after a reboot, a batch script's working folder) found no journal there and
    started the whole share over, silently, its done jobs left in the first folder. A note then
    said so, but with --yes or --expect-digest (a script) nobody reads it before the share has
    run again: such a run is refused, naming the folder and both ways on; --fresh starts over.
    (Before a confirmation at a terminal it is a note: test_run_cli.py.)"""
    entry, config_dir = write_kinds_entry(tmp_path / "project", pool_spec("ok", 3))
    first, second, third = (tmp_path / name for name in ("fir st's", "second", "third"))  # the --out to paste is quoted for a shell
    for folder in (first, second, third):
        folder.mkdir()

    def run(cwd: Path, *extra: str, status: int = 0) -> str:
        result = run_entry(entry, "run", "--config-dir", config_dir, "--machine", "solo", "--yes", *extra, env=run_env(tmp_path), cwd=cwd)
        assert result.returncode == status, result.stderr
        return result.stderr

    assert "note:" not in run(first)
    said = " ".join(run(second, status=2).split())
    done_in = first / "jobsplit-out" / "solo"
    assert f"error: 3 jobs of this share are done in {done_in}, by a run from another folder or with another --out, and this run would start the share over in {second / 'jobsplit-out' / 'solo'}" in said, said
    assert f"to go on from there, run with --out {shlex.quote(str(done_in.parent))}, or pass --fresh to start over here (the jobs done there run again)" in said, said
    assert "Traceback" not in said and not (second / "jobsplit-out").exists()  # refused before anything is made
    assert "of this share" not in run(second, "--fresh")  # starting over, as asked
    assert "resuming: 3 done" in run(second)  # its own journal now: a resume
    assert "of this share" not in run(third, "--fresh")
    shutil.rmtree(first / "jobsplit-out")
    assert f"in {done_in}" not in run(tmp_path, status=2), "a folder since deleted is still named"


def test_a_share_s_folder_copied_without_its_journal_is_not_said_to_start_the_share_over(tmp_path):
    """A folder copied with its results.csv alone, run on the same host, was refused saying "this
    run would start the share over", while its rows would have rebuilt the journal, every job
    of them done. The refusal stays (the jobs done there since the copy would run again), saying
    what the run would do."""
    entry, config_dir = write_kinds_entry(tmp_path / "project", pool_spec("ok", 3))
    first, second = tmp_path / "first", tmp_path / "second"
    assert run_entry(entry, "run", "--config-dir", config_dir, "--machine", "solo", "--out", first, "--yes", env=run_env(tmp_path)).returncode == 0
    (second / "solo").mkdir(parents=True)
    shutil.copy(first / "solo" / "results.csv", second / "solo")
    refused = run_entry(entry, "run", "--config-dir", config_dir, "--machine", "solo", "--out", second, "--yes", env=run_env(tmp_path))
    said = " ".join(refused.stderr.split())
    assert refused.returncode == 2 and "start the share over" not in said, said
    assert f"and {second / 'solo'} holds a results.csv but no journal: this run would go on from that file's rows alone; to go on from there, run with --out {first}" in said, said


def test_an_array_task_started_over_in_a_new_folder_is_a_note_in_its_log_not_a_refusal(tmp_path):
    """sbatch writes --expect-digest and an absolute --out into every task's script: a new --out
    there is chosen on purpose, and a refusal failed every task of the array (an allocation
    each) with no --fresh to pass on. The task goes on and says so; a run by hand is refused."""
    entry, config_dir = write_kinds_entry(tmp_path / "project", pool_spec("ok", 6), machines={"sim": {"speed": 1.0, "cores": 1, "array": 2}})

    def task(out: str, *flags: str, **env: str) -> subprocess.CompletedProcess[str]:
        return run_entry(entry, "run", "--config-dir", config_dir, "--machine", "sim", "--out", tmp_path / out, "--yes", *flags, env=run_env(tmp_path, **env), timeout=60)

    assert task("old", SLURM_ARRAY_TASK_ID="0").returncode == 0
    again = task("new", SLURM_ARRAY_TASK_ID="0")
    said = " ".join(again.stderr.split())
    assert again.returncode == 0 and f"note: 3 jobs of this share are done in {tmp_path / 'old' / 'sim@0'}" in said, again.stderr
    by_hand = task("third", "--array-index", "0")
    assert by_hand.returncode == 2 and "pass --fresh to start over here" in by_hand.stderr, by_hand.stderr


def test_more_workers_than_the_cores_take_is_a_note_only_where_there_are_jobs_to_run(tmp_path):
    """A resume with nothing to run warned that its 32 workers would compete for the CPU. Said
    only where jobs are left, and as what happens: the run starts no more workers than jobs left
    (see test_hardening_ops.py's --workers 10000)."""
    from jobsplit.machines import usable_cores

    workers = 4 * usable_cores() + 1
    entry, config_dir = write_kinds_entry(tmp_path / "project", pool_spec("ok", workers + 3))

    def run(out: str = "out") -> str:
        result = run_entry(entry, "run", "--config-dir", config_dir, "--machine", "solo", "--yes", "--out", tmp_path / out, "--workers", str(workers), env=run_env(tmp_path))
        assert result.returncode == 0, result.stderr
        return " ".join(result.stderr.split())

    assert f"note: {workers} workers are more than 4 per core of this host" in run()
    assert "per core" not in run()  # nothing to run: no worker started
    entry, config_dir = write_kinds_entry(tmp_path / "small", pool_spec("ok", 3))
    assert f"note: --workers {workers} is more than 4 per core of this host ({usable_cores()} cores); 3 started, one per job left" in run("small-out")


def test_a_share_done_in_several_folders_is_one_sentence_naming_the_newest_first(tmp_path):
    """Each clone of a project that ran its demo is one more folder of the same share: one
    sentence a folder made a wall of notes. One names the first three, the newest first."""
    entry, config_dir = write_kinds_entry(tmp_path / "project", pool_spec("ok", 3))
    folders = [tmp_path / f"run{i}" for i in range(5)]
    said = ""
    for i, folder in enumerate(folders):
        folder.mkdir()
        result = run_entry(entry, "run", "--config-dir", config_dir, "--machine", "solo", "--yes", *(["--fresh"] if i < 4 else []), env=run_env(tmp_path), cwd=folder)
        assert result.returncode == (0 if i < 4 else 2), result.stderr
        said = " ".join(result.stderr.split())
    assert len(error_lines(result.stderr)) == 1 and "note:" not in said, said
    done_in = [folder / "jobsplit-out" / "solo" for folder in folders[:4]]
    assert f"error: jobs of this share are done in 4 other folders, {done_in[3]} (3 done), {done_in[2]} (3 done), {done_in[1]} (3 done) and 1 more, by runs" in said, said
    assert f"to go on from the newest, run with --out {done_in[3].parent}, or pass --fresh" in said, said


def test_a_noted_folder_that_does_not_answer_holds_up_no_run(tmp_path):
    """Every run's start looks into the other folders noted for its share (is a run of it going
    on there?); one on a network disk that no longer answers blocks a file's opening for minutes.
    Here a named pipe as that folder's run.lock blocks the same way: the run goes on after a
    few seconds without that look, as it would with no note at all."""
    entry, config_dir = write_kinds_entry(tmp_path / "project", pool_spec("ok", 3))
    first, second = tmp_path / "first", tmp_path / "second"

    def run(out: Path) -> subprocess.CompletedProcess[str]:
        return run_entry(entry, "run", "--config-dir", config_dir, "--machine", "solo", "--yes", "--out", out, env=run_env(tmp_path), timeout=60)

    assert run(first).returncode == 0
    for name in ("run.lock", "journal.sqlite"):  # what each look opens there
        (first / "solo" / name).unlink()
        os.mkfifo(first / "solo" / name)  # opening it for reading waits for a writer that never comes
    result = run(second)
    assert result.returncode == 0, result.stderr
    assert len(read_results(second / "solo" / "results.csv")[1]) == 3


def test_done_jobs_of_another_entry_s_code_are_said_to_be_so(tmp_path):
    """Another entry script with the same pool and config files has the same digest, so the note
    sent its user to resume the other project's results under new code, unsaid."""
    entry, config_dir = write_kinds_entry(tmp_path / "project", pool_spec("ok", 3))
    other = tmp_path / "other" / "entry.py"
    other.parent.mkdir()
    other.write_text(entry.read_text() + "# another study's entry\n")
    shutil.copy(entry.parent / "pool.json", other.parent / "pool.json")
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()
    codes = []
    for script, cwd, status in ((entry, first, 0), (other, second, 2)):
        result = run_entry(script, "run", "--config-dir", config_dir, "--machine", "solo", "--yes", env=run_env(tmp_path), cwd=cwd)
        assert result.returncode == status, result.stderr
        codes.append(re.search(r"code ([0-9a-f]{12})", result.stderr).group(1))
    said = " ".join(result.stderr.split())
    assert f"to go on from there (its results come from other code: {codes[0]} there, {codes[1]} here), run with --out" in said, said


@pytest.mark.parametrize("where", ["out", "out/solo"])
def test_an_output_folder_that_is_a_file_is_named_as_such(tmp_path, where):
    """It was "OUT/solo/progress.json cannot be read (Not a directory); check the folder's
    permissions" for a file given as --out."""
    entry, config_dir = write_kinds_entry(tmp_path / "project", pool_spec("ok", 3))
    (tmp_path / where).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / where).write_text("a file")
    result = run_entry(entry, "run", "--config-dir", config_dir, "--machine", "solo", "--yes", "--out", tmp_path / "out", env=run_env(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"error: {tmp_path / where} is a file, not a folder; choose another --out" in result.stderr, result.stderr


def test_an_output_folder_that_is_a_link_to_nowhere_is_named_as_such(tmp_path):
    """A link to a scratch disk not mounted yet was "is a file, not a folder"."""
    entry, config_dir = write_kinds_entry(tmp_path / "project", pool_spec("ok", 3))
    (tmp_path / "out").symlink_to(tmp_path / "scratch" / "runs")
    result = run_entry(entry, "run", "--config-dir", config_dir, "--machine", "solo", "--yes", "--out", tmp_path / "out", env=run_env(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"error: {tmp_path / 'out'} is a link to {tmp_path / 'scratch' / 'runs'}, which does not exist; make that folder" in " ".join(result.stderr.split())


# --- host.ini --------------------------------------------------------------------------------

POOL = [*pool_spec("nice", 2), *pool_spec("sleep", 4, 0.25)]


def overlapping(rows) -> bool:
    spans = sorted(
        (datetime.strptime(r["Job Start Time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp(), float(r["Job Running Time"]))
        for r in rows
    )
    return any(start + running > next_start + 0.01 for (start, running), (next_start, _) in zip(spans, spans[1:]))


def run_host(tmp_path, *flags, cwd=None):
    entry, config_dir = write_kinds_entry(tmp_path / "project", POOL)
    args = ["run", "--config-dir", config_dir, "--machine", "solo", "--yes", *flags]
    return run_entry(entry, *args, env=run_env(tmp_path), cwd=cwd, timeout=60)


def test_host_ini_sets_workers_out_and_nice(tmp_path):
    host_out = tmp_path / "host-out"
    write_host_ini(tmp_path, f"[host]\nworkers = 1\nout = {host_out}\nnice = 3\nconsole = plain\n")
    result = run_host(tmp_path, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "jobsplit-out").exists()
    machine_dir = host_out / "solo"
    _, rows = read_results(machine_dir / "results.csv")
    assert len(rows) == len(POOL)
    assert {r["Note"] for r in rows if r["Kind"] == "nice"} == {str(expected_nice(3))}
    assert journal_query(machine_dir / "journal.sqlite", "SELECT workers FROM runs") == [(1,)]
    assert not overlapping(rows), "one worker runs one job at a time"
    assert "\x1b[" not in result.stderr


def test_host_ini_out_may_name_environment_variables(tmp_path):
    """``out = $HOME/runs``, as in a shell: a folder named ``$HOME`` was made in the current folder."""
    write_host_ini(tmp_path, "[host]\nout = $JOBSPLIT_TEST_ROOT/host-out\nconsole = plain\n")
    entry, config_dir = write_kinds_entry(tmp_path / "project", POOL)
    result = run_entry(entry, "run", "--config-dir", config_dir, "--yes", "--machine", "solo", env=run_env(tmp_path, JOBSPLIT_TEST_ROOT=str(tmp_path)), cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "host-out" / "solo" / "results.csv").exists() and not (tmp_path / "$JOBSPLIT_TEST_ROOT").exists()


def test_flags_override_host_ini(tmp_path):
    write_host_ini(tmp_path, f"[host]\nworkers = 1\nout = {tmp_path / 'host-out'}\nnice = 3\n")
    flag_out = tmp_path / "flag-out"
    result = run_host(tmp_path, "--workers", "2", "--out", str(flag_out), "--nice", "5", "--console", "plain")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "host-out").exists()
    _, rows = read_results(flag_out / "solo" / "results.csv")
    assert {r["Note"] for r in rows if r["Kind"] == "nice"} == {str(expected_nice(5))}
    assert journal_query(flag_out / "solo" / "journal.sqlite", "SELECT workers FROM runs") == [(2,)]
    assert overlapping(rows), "two workers run jobs side by side"


def test_workers_run_at_niceness_10_by_default(tmp_path):
    result = run_host(tmp_path, "--out", str(tmp_path / "out"), "--console", "plain")
    assert result.returncode == 0, result.stderr
    _, rows = read_results(tmp_path / "out" / "solo" / "results.csv")
    assert {r["Note"] for r in rows if r["Kind"] == "nice"} == {str(expected_nice(10))}


@pytest.mark.parametrize(
    "text, words",
    [
        ("[host]\nworkers = 2\nthreads = 4\n", ["threads", "not a host setting"]),
        ("[host]\nworkers = 0\n", ["workers", "at least 1"]),
        ("[host]\nnice = low\n", ["nice", "whole number"]),
        ("[host]\nconsole = fancy\n", ["console"]),
        ("[host]\nstart_method = forkserver\n", ["start_method", "fork, spawn", "'forkserver'"]),  # its workers would take the runner for dead
        ("[host\nworkers = 2\n", ["line 1: '[host'"]),
        ("[host]\nworker_memory = lots\n", ["worker_memory", "'lots' is not a file size"]),
        ("[host]\nworker_memory = 8\n", ["worker_memory", "'8' has no unit; write 8GiB, 8MiB"]),  # not 8 bytes
        ("[host]\nstop_grace = -1\n", ["stop_grace", "seconds >= 0"]),
        ("[hosts]\nworkers = 1\n", ["[hosts] is not a section of host.ini; its settings go in [host]"]),  # its settings were silently not read
        ("[host]\nout = $JOBSPLIT_TEST_UNSET/runs\n", ["$JOBSPLIT_TEST_UNSET is not set here"]),  # a folder named $JOBSPLIT_TEST_UNSET was made
    ],
)
def test_a_bad_host_ini_is_refused_naming_it(tmp_path, text, words):
    path = write_host_ini(tmp_path, text)
    result = run_host(tmp_path, "--out", str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr
    assert str(path) in result.stderr.replace("\n", "")
    for word in words:
        assert word in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "host_ini, flags, said",
    [
        ("[host]\nworker_memory = 2GiB\n", [], "2 GiB"),
        ("[host]\nworker_memory = 2GiB\n", ["--worker-memory", "1.5G"], "1.5 GiB"),
        ("[host]\nworker_memory = 2GiB\n", ["--worker-memory", "0"], None),  # 0: no limit, whatever host.ini says
        ("", [], None),
    ],
)
def test_the_worker_memory_limit_comes_from_the_flag_or_host_ini(tmp_path, host_ini, flags, said):
    if host_ini:
        write_host_ini(tmp_path, host_ini)
    result = run_host(tmp_path, "--out", str(tmp_path / "out"), "--console", "plain", *flags)
    assert result.returncode == 0, result.stderr
    log = machine_log_text(tmp_path / "out" / "solo")
    if said is None:
        assert "--worker-memory" not in log
    else:
        assert f"a worker that grows by more than {said} is replaced between two jobs (--worker-memory)" in log


@pytest.mark.parametrize(
    "host_ini, flags, grace",
    [("", [], 1.0), ("[host]\nstop_grace = 30\n", [], 30.0), ("[host]\nstop_grace = 30\n", ["--stop-grace", "0"], 0.0)],
)
def test_the_stop_grace_comes_from_the_flag_or_host_ini(tmp_path, host_ini, flags, grace):
    """Resolved as every host setting is (the flag, then host.ini, then the default of 1 s)."""
    path = write_host_ini(tmp_path, host_ini) if host_ini else tmp_path / "none.ini"
    flag = {"stop_grace": float(flags[1])} if flags else {}
    settings = resolve(RunFlags(**flag), load_host_settings(path), JobsplitSettings(), Machine("solo", 1.0, 2), Allocation())
    assert settings.stop_grace == grace


@pytest.mark.parametrize("value", ["4 gigs", "10", "2.5"])
def test_a_bad_worker_memory_flag_is_refused(tmp_path, value):
    """Also a number without its unit: whoever writes ``--worker-memory 10`` means gigabytes or
    megabytes, never the 10 bytes that would replace the worker after every job."""
    result = run_host(tmp_path, "--out", str(tmp_path / "out"), "--worker-memory", value)
    assert result.returncode == 2 and f"--worker-memory: '{value}' is not a size with its unit, such as 4GiB or 500MB (0: no limit)" in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


# --- console style and start method, from host.ini or flags ---------------------------------


def test_host_ini_console_style_and_the_flag_that_overrides_it(tmp_path):
    write_host_ini(tmp_path, "[host]\nconsole = live\n")
    live = run_host(tmp_path, "--out", str(tmp_path / "live"))
    assert live.returncode == 0, live.stderr
    assert "━" in live.stderr and f"{len(POOL)}/{len(POOL)} done" in live.stderr  # the live view's bar
    plain = run_host(tmp_path, "--out", str(tmp_path / "plain"), "--console", "plain", "--fresh")  # the share anew in another folder
    assert plain.returncode == 0, plain.stderr
    assert "━" not in plain.stderr and "done (" in plain.stderr  # plain progress lines


@pytest.mark.parametrize(
    "host_ini, flags, expected",
    [
        ("", ["--start-method", "spawn"], "__mp_main__"),
        ("", ["--start-method", "fork"], "__main__"),
        ("[host]\nstart_method = spawn\n", [], "__mp_main__"),
        ("[host]\nstart_method = spawn\n", ["--start-method", "fork"], "__main__"),
        ("", [], "__main__"),  # Linux default: fork
    ],
)
def test_the_start_method_is_the_one_asked_for(tmp_path, host_ini, flags, expected):
    """A spawned worker imports the entry as __mp_main__; a forked one has the parent's __main__."""
    if host_ini:
        write_host_ini(tmp_path, host_ini)
    entry, config_dir = write_kinds_entry(tmp_path / "project", pool_spec("method", 4))
    result = run_entry(entry, "run", "--config-dir", config_dir, "--machine", "solo", "--yes", "--out", tmp_path / "out", *flags, env=run_env(tmp_path))
    assert result.returncode == 0, result.stderr
    _, rows = read_results(tmp_path / "out" / "solo" / "results.csv")
    assert {r["Note"] for r in rows} == {expected}


def test_a_host_ini_saved_in_another_encoding_is_refused_saying_to_save_it_as_utf8(tmp_path):
    """A Windows-1252 host.ini was told to "fix or delete it", as for a syntax error, where the
    shared config files say it is not UTF-8 (errors.not_utf8)."""
    from jobsplit.errors import UserError

    path = tmp_path / "host.ini"
    path.write_bytes("[host]\n# café\nworkers = 2\n".encode("cp1252"))
    with pytest.raises(UserError, match=r"host.ini is not UTF-8 text \(its byte 0xE9 is not UTF-8; .*\); save it as UTF-8"):
        load_host_settings(path)


def test_a_host_ini_saved_with_a_byte_order_mark_and_crlf_is_read(tmp_path):
    """Notepad's "UTF-8 with BOM" (config.ini, header.csv and machines.json are read through it):
    host.ini was refused as "File contains no section headers", though it has one."""
    path = tmp_path / "host.ini"
    path.write_bytes(b"\xef\xbb\xbf[host]\r\nworkers = 3\r\n")
    assert load_host_settings(path).workers == 3


@pytest.mark.parametrize(
    "text, said",
    [
        ("[host]\nworkers 4\n", "line 2: 'workers 4' is not 'key = value', a [section] or a comment; fix or remove it"),
        ("workers = 4\n", "line 1: 'workers = 4' comes before any [section] header; put it under a section"),
        ("[host]\nworkers = 1\nworkers = 2\n", "line 3: [host] sets 'workers' twice; keep one"),
    ],
)
def test_a_host_ini_syntax_error_names_its_line_and_the_fix(tmp_path, text, said):
    """As config.ini's do: it said "Source contains parsing errors: PosixPath(...)", naming no line."""
    from jobsplit.errors import UserError

    path = tmp_path / "host.ini"
    path.write_text(text)
    with pytest.raises(UserError) as caught:
        load_host_settings(path)
    assert str(caught.value) == f"{path}: {said}"
