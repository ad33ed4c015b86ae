"""The `run` command line (issue 3, Must show 1 and 2; exit statuses).

A pseudo-terminal answers the two prompts (which machine, then y/N); without a terminal the
run must refuse at once with a clear error instead of waiting for an answer. Two machines
run their shares in two processes checked by --expect-digest; their results together hold
every job exactly once.
"""

from __future__ import annotations

import json
import os
import re
import select
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import run_entry
from jobsplit.digest import format_digest
from runhelpers import (
    CSV_COLUMNS,
    communicate,
    digest_of,
    kill_session,
    pool_spec,
    read_results,
    run_args,
    run_env,
    side_lines,
    spec_args,
    spec_id,
    write_kinds_entry,
)

MACHINES = {"alpha": [1.0, 2], "beta": [1.0, 2], "gamma": [2.0, 1]}
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Terminal:
    """An entry run whose stdin, stdout and stderr are a pseudo-terminal."""

    def __init__(self, entry: Path, args: list[str], env: dict[str, str]) -> None:
        master, slave = os.openpty()
        self.master = master
        self.process = subprocess.Popen(
            [sys.executable, str(entry), *args], stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
        )
        os.close(slave)
        self.raw = b""
        self.closed = False

    @property
    def text(self) -> str:
        return ANSI.sub("", self.raw.decode("utf-8", "replace")).replace("\r\n", "\n")

    def _read(self, timeout: float) -> None:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if ready:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: every slave end is closed
                chunk = b""
            if chunk:
                self.raw += chunk
            else:
                self.closed = True

    def expect(self, token: str, timeout: float = 30) -> str:
        """Read until ``token`` appears (after what was already matched); returns all text so far."""
        deadline = time.monotonic() + timeout
        while token not in self.text:
            if self.closed or time.monotonic() > deadline:
                raise AssertionError(f"no {token!r} on the terminal; it shows:\n{self.text}")
            self._read(0.1)
        return self.text

    def send(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\n")

    def finish(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while not self.closed and time.monotonic() < deadline:
            self._read(0.1)
        try:
            return self.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            kill_session(self.process.pid)
            self.process.kill()
            raise AssertionError(f"the run did not end; the terminal shows:\n{self.text}") from None
        finally:
            os.close(self.master)


def terminal_env(root: Path) -> dict[str, str]:
    return run_env(root, TERM="xterm", COLUMNS="120", JOBSPLIT_TEST_SIDE=str(root / "side.txt"))


def plan_json(entry: Path, config_dir: Path, root: Path) -> dict:
    result = run_entry(entry, "plan", "--json", "--config-dir", config_dir, env=run_env(root))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def shares(plan: dict) -> dict[str, list[str]]:
    return {m["name"]: m["job_ids"] for m in plan["machines"]}


@pytest.fixture
def project(tmp_path):
    pool = pool_spec("ok", 30)
    entry, config_dir = write_kinds_entry(tmp_path, pool, machines=MACHINES)
    return tmp_path, entry, config_dir, pool


# --- the interactive run ---------------------------------------------------------------------


def test_run_through_a_terminal_answers_both_prompts(project):
    root, entry, config_dir, pool = project
    term = Terminal(entry, ["run", "--config-dir", str(config_dir), "--out", str(root / "out")], terminal_env(root))
    shown = term.expect("Number or name")
    assert "Which machine is this?" in shown
    assert re.search(r"1\) alpha .*2 cores", shown) and re.search(r"2\) beta ", shown) and re.search(r"3\) gamma .*speed 2", shown)
    term.send("9")  # not a machine: asked again
    term.expect("Please answer with a number from 1 to 3")
    term.send("2")
    shown = term.expect("Start?")
    digest = digest_of(pool, config_dir)
    assert format_digest(digest) in shown and "strategy quota" in shown and "machine beta" in shown
    assert side_lines(root / "side.txt") == [], "nothing may start before the answer"
    term.send("y")
    assert term.finish() == 0, term.text
    plan = plan_json(entry, config_dir, root)
    beta = shares(plan)["beta"]
    assert f"beta: {len(beta)} jobs" in term.text
    assert sorted(os.listdir(root / "out")) == ["beta"]
    header, rows = read_results(root / "out" / "beta" / "results.csv")
    assert header == list(CSV_COLUMNS)
    assert sorted(row["Job ID"] for row in rows) == sorted(beta)
    assert {row["Machine"] for row in rows} == {"beta"}
    assert f"beta: {len(beta)} of {len(beta)} done (100.0%), 0 failed" in term.text


def assert_answer_chooses(term: Terminal, answer: str, machine: str) -> None:
    """``answer`` at the machine prompt chooses ``machine`` (the confirmation names it); then declined."""
    term.send(answer)
    shown = term.expect("Start?")
    assert f"machine {machine}:" in shown, shown
    term.send("n")
    term.finish()


def test_machines_named_by_numbers_are_chosen_by_name_only(tmp_path):
    """machines.json names machines "2", "5" and "node": the menu numbered them 1) 2, 2) 5,
    3) node, and the answer "2", this machine's name, chose the second line, machine 5. The
    digest is the same whichever machine is chosen: share 5 ran twice, share 2 never. Where a
    name is a number, the menu has no numbers: an answer is a name."""
    entry, config_dir = write_kinds_entry(tmp_path, pool_spec("ok", 12), machines={"node": [1.0, 1], "2": [1.0, 1], "5": [1.0, 1]})
    term = Terminal(entry, ["run", "--config-dir", str(config_dir), "--out", str(tmp_path / "out")], terminal_env(tmp_path))
    shown = term.expect("Name")
    assert re.search(r"- 2 .*\n.*- 5 .*\n.*- node ", shown) and "1)" not in shown, shown
    term.send("3")  # a line number: no machine's name
    term.expect("Please answer with a machine's name")
    assert_answer_chooses(term, "2", "2")


def test_a_machine_s_name_typed_in_another_case_at_the_prompt_chooses_it(project):
    """"Beta" for beta: machines.json refuses names apart only by case, so the answer names one
    machine (before, it was asked again, as if no machine had that name)."""
    root, entry, config_dir, _ = project
    term = Terminal(entry, ["run", "--config-dir", str(config_dir), "--out", str(root / "out")], terminal_env(root))
    term.expect("Number or name")
    assert_answer_chooses(term, "BETA", "beta")


def test_a_share_whose_done_jobs_are_in_another_folder_is_a_note_before_the_confirmation(project):
    """At a terminal, where someone answers the prompt, a share about to start over in a new
    folder is a note before it (without a confirmation it is refused: test_run_setup.py)."""
    root, entry, config_dir, _ = project
    first = run_entry(entry, *run_args(config_dir, root / "out", machine="gamma"), env=run_env(root))
    assert first.returncode == 0, first.stderr
    term = Terminal(entry, ["run", "--config-dir", str(config_dir), "--out", str(root / "elsewhere"), "--machine", "gamma"], terminal_env(root))
    shown = " ".join(term.expect("Start?").split())
    done_in = root / "out" / "gamma"
    assert f"note: {len(read_results(done_in / 'results.csv')[1])} jobs of this share are done in {done_in}" in shown, shown
    assert f"To go on from there instead, stop here and run with --out {done_in.parent}" in shown, shown
    term.send("n")
    assert term.finish() != 0
    assert not (root / "elsewhere" / "gamma" / "journal.sqlite").exists()


def test_a_run_waiting_at_its_prompt_holds_its_share_against_a_run_into_another_folder(project):
    """Each folder's lock was taken only once a run was confirmed: a second terminal's run of
    the same machine into another folder (``./jobsplit-out`` is relative) went ahead while the
    first waited at its prompt, then both ran every job of the share. The share is held from
    before the prompt, on this host, whatever the folder."""
    root, entry, config_dir, _ = project
    first = Terminal(entry, ["run", "--config-dir", str(config_dir), "--out", str(root / "a"), "--machine", "gamma"], terminal_env(root))
    try:
        first.expect("Start?")
        second = run_entry(entry, *run_args(config_dir, root / "b", machine="gamma"), env=run_env(root))
        assert second.returncode == 2 and "Traceback" not in second.stderr, second.stderr
        said = " ".join(second.stderr.split())
        assert f"error: {root / 'a' / 'gamma'} is in use by another run of this machine (pid {first.process.pid} on {socket.gethostname()}" in said, said
        assert f"this run would be in {root / 'b' / 'gamma'}" in said and not (root / "b").exists(), said
        first.send("y")
    finally:
        status = first.finish()
    assert status == 0, first.text
    share = shares(plan_json(entry, config_dir, root))["gamma"]
    assert sorted(r["Job ID"] for r in read_results(root / "a" / "gamma" / "results.csv")[1]) == sorted(share)
    assert sorted(side_lines(root / "side.txt")) == sorted(share), "a job ran twice"


def test_the_confirmation_prompt_shows_its_answers(project):
    root, entry, config_dir, _ = project
    term = Terminal(entry, ["run", "--config-dir", str(config_dir), "--out", str(root / "out"), "--machine", "alpha"], terminal_env(root))
    try:
        term.expect("Start?")
        time.sleep(0.2)
        term._read(0.2)
        assert re.search(r"Start\? \[y/N\]:", term.text), term.text
    finally:
        term.send("n")
        term.finish()


@pytest.mark.parametrize("answer", ["n", "", "what"])
def test_declining_the_confirmation_starts_nothing(project, answer):
    root, entry, config_dir, _ = project
    term = Terminal(entry, ["run", "--config-dir", str(config_dir), "--out", str(root / "out")], terminal_env(root))
    term.expect("Number or name")
    term.send("1")
    term.expect("Start?")
    term.send(answer)
    status = term.finish()
    assert status not in (0, 1), term.text
    assert "not started" in term.text
    assert "digest --parts` here and on a host that gives the other digest" in " ".join(term.text.split())  # how to find why digests differ
    assert "Traceback" not in term.text
    assert not (root / "out").exists()
    assert not (root / "side.txt").exists()


@pytest.mark.parametrize("key", ["ctrl-c", "ctrl-d"])
@pytest.mark.parametrize("prompt", ["Number or name", "Start?"])
def test_ctrl_c_or_ctrl_d_at_a_prompt_starts_nothing_without_a_traceback(project, prompt, key):
    root, entry, config_dir, _ = project
    term = Terminal(entry, ["run", "--config-dir", str(config_dir), "--out", str(root / "out")], terminal_env(root))
    if prompt == "Start?":
        term.expect("Number or name")
        term.send("1")
    term.expect(prompt)
    if key == "ctrl-c":  # what the terminal sends its foreground group; again until it is heard: one that
        # comes between the prompt's output and the read that waits for the answer is seen only after that read
        for _ in range(100):
            os.kill(term.process.pid, signal.SIGINT)
            try:
                term.process.wait(0.5)
                break
            except subprocess.TimeoutExpired:
                pass
    else:
        os.write(term.master, b"\x04")  # end of input, at the start of a line
    status = term.finish()
    assert status == 130, term.text
    assert "not started" in term.text and "Traceback" not in term.text, term.text
    # how to find why two hosts' digests differ: only once a digest was shown
    assert ("digest --parts" in term.text) == (prompt == "Start?"), term.text
    assert not (root / "out").exists() and not (root / "side.txt").exists()


def test_the_machine_named_like_this_host_is_offered_as_default(tmp_path):
    host = socket.gethostname().split(".")[0]
    if not re.fullmatch(r"\w[\w.-]*", host) or host in MACHINES:
        pytest.skip(f"this host's name {host!r} cannot be a machine name here")
    entry, config_dir = write_kinds_entry(tmp_path, pool_spec("ok", 12), machines={**MACHINES, host: [1.0, 2]})
    names = sorted([*MACHINES, host])
    term = Terminal(entry, ["run", "--config-dir", str(config_dir), "--out", str(tmp_path / "out")], terminal_env(tmp_path))
    term.expect(f"Number or name [{names.index(host) + 1}]")
    term.send("")  # take the default
    term.expect(f"machine {host}")
    term.expect("Start?")
    term.send("yes")
    assert term.finish() == 0, term.text
    assert sorted(os.listdir(tmp_path / "out")) == [host]


# --- without a terminal ----------------------------------------------------------------------


def run_without_terminal(entry: Path, args: list[str], root: Path, timeout: float = 30) -> tuple[int, str, str]:
    """stdin is an open pipe nobody writes to: waiting for an answer would hang."""
    process = subprocess.Popen(
        [sys.executable, str(entry), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=run_env(root, JOBSPLIT_TEST_SIDE=str(root / "side.txt")), start_new_session=True,
    )
    return communicate(process, timeout)


def test_an_array_is_one_line_of_the_prompt_and_one_name_of_the_error(tmp_path):
    """A cluster's array of 300 tasks beside two workstations: the prompt listed 302 numbered
    machines, and the error without a terminal named all 302. Each array is now one line (one
    name), and a task is still chosen by its name."""
    machines = {"alpha": [1.0, 2], "beta": [1.0, 2], "cluster": {"speed": 1.5, "cores": 4, "array": 300}}
    entry, config_dir = write_kinds_entry(tmp_path, pool_spec("ok", 400), machines=machines)
    args = ["run", "--config-dir", str(config_dir), "--out", str(tmp_path / "out")]
    status, _, err = run_without_terminal(entry, [*args, "--yes"], tmp_path)
    assert status == 2 and "(one of: alpha, beta, cluster)" in err, err
    term = Terminal(entry, args, terminal_env(tmp_path))
    shown = term.expect("Number or name")
    assert re.search(r"1\) alpha ", shown) and re.search(r"2\) beta ", shown) and "3)" not in shown, shown
    assert "cluster[0] to cluster[299]: an array (speed 1.5, 4 cores each); answer cluster[INDEX]" in shown, shown
    assert "cluster[1]" not in shown
    term.send("3")  # only the two workstations have numbers
    term.expect("Please answer with a number from 1 to 2, or a machine's name")
    term.send("cluster[7]")
    shown = term.expect("Start?")
    assert "machine cluster[7]" in shown, shown
    term.send("n")
    term.finish()


def test_on_windows_main_says_where_to_run_in_one_sentence():
    """jobsplit needs POSIX (its workers' process groups, signals, fcntl locks): on Windows an
    entry script's ``jobsplit.main`` says so, not an ImportError's traceback. (Windows is
    played by sys.platform, set once multiprocessing, which would import _winapi, is in.)"""
    script = "import multiprocessing.context, sys\nsys.platform = 'win32'\nimport jobsplit\njobsplit.main(print, [1, 2])\n"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr == "error: jobsplit runs on Linux (and macOS, untested), not on Windows; run this script in WSL (the Windows Subsystem for Linux)\n"


def test_no_terminal_and_no_machine_is_a_clear_error(project):
    root, entry, config_dir, _ = project
    status, out, err = run_without_terminal(entry, ["run", "--config-dir", str(config_dir), "--out", str(root / "out"), "--yes"], root)
    assert status == 2, err
    assert "--machine" in err and "alpha, beta, gamma" in err and "not a terminal" in err
    assert "Traceback" not in err and out == ""
    assert not (root / "out").exists()


def test_no_terminal_and_no_yes_is_a_clear_error(project):
    root, entry, config_dir, _ = project
    status, _, err = run_without_terminal(entry, ["run", "--config-dir", str(config_dir), "--out", str(root / "out"), "--machine", "beta"], root)
    assert status == 2, err
    assert "--yes" in err and "--expect-digest" in err
    assert "Traceback" not in err
    assert not (root / "out").exists()


# --- two machines ----------------------------------------------------------------------------


def test_two_machines_together_run_every_job_exactly_once(tmp_path):
    pool = [*pool_spec("ok", 40), *({"kind": "ok", "i": 100 + i, "x": [i, "y"]} for i in range(8))]
    entry, config_dir = write_kinds_entry(tmp_path, pool, machines={"east": [1.0, 2], "west": [1.5, 1]})
    result = run_entry(entry, "digest", "--config-dir", config_dir, env=run_env(tmp_path))
    assert result.returncode == 0, result.stderr
    digest = result.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{4}(-[0-9a-f]{4}){7}", digest)
    spelled = {"east": digest.upper(), "west": " ".join(digest.replace("-", "")[i : i + 8] for i in range(0, 32, 8))}
    processes = {
        name: subprocess.Popen(
            [sys.executable, str(entry), "run", "--config-dir", str(config_dir), "--out", str(tmp_path / "out"),
             "--machine", name, "--expect-digest", spelled[name], "--console", "plain", "--workers", "1"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=run_env(tmp_path), start_new_session=True,
        )
        for name in ("east", "west")
    }  # fmt: skip
    for name, process in processes.items():
        status, _, err = communicate(process, 90)
        assert status == 0, (name, err)
    plan = plan_json(entry, config_dir, tmp_path)
    assert plan["digest"] == digest
    owner = {job_id: name for name, ids in shares(plan).items() for job_id in ids}
    union = []
    for name in ("east", "west"):
        header, rows = read_results(tmp_path / "out" / name / "results.csv")
        assert header == list(CSV_COLUMNS)
        assert header[:-5] == list(config_dir.joinpath("header.csv").read_text().strip().split(","))
        assert header[-5:] == ["Job ID", "Job Args", "Machine", "Digest", "Code"]
        for row in rows:
            assert row["Machine"] == name == owner[row["Job ID"]]
        union += rows
    ids = [row["Job ID"] for row in union]
    assert sorted(ids) == sorted(spec_id(s) for s in pool)  # every job exactly once
    assert len(shares(plan)["east"]) > 0 and len(shares(plan)["west"]) > 0
    args_by_id = {spec_id(s): spec_args(s) for s in pool}
    for row in union:
        assert row["Job Args"] == args_by_id[row["Job ID"]]
        assert row["Job Args"] == json.dumps(json.loads(row["Job Args"]), separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def test_a_wrong_expected_digest_names_both_and_starts_nothing(project):
    root, entry, config_dir, pool = project
    digest = digest_of(pool, config_dir)
    wrong = format_digest(("0" if digest[0] != "0" else "1") + digest[1:])
    result = run_entry(
        entry, "run", "--config-dir", config_dir, "--out", root / "out", "--machine", "alpha", "--expect-digest", wrong,
        env=run_env(root, JOBSPLIT_TEST_SIDE=str(root / "side.txt")),
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert format_digest(digest) in result.stderr and wrong in result.stderr
    program = shlex.join([sys.executable, str(entry)])  # how this host started the entry, to run its `digest` the same way
    assert f"`{program} digest --parts` here and on a host that gives the other digest" in result.stderr
    assert f"`{program} digest --jobs` on both hosts" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (root / "out").exists() and not (root / "side.txt").exists()


@pytest.mark.parametrize("typed", ["cut short", "with words around it", "with a stray letter"])
def test_an_expected_digest_that_is_no_digest_is_named_so_and_starts_nothing(project, typed):
    """A digest cut short in a copy and paste, or copied with the word before it, was told to
    differ from this host's, and its user went comparing files between hosts."""
    root, entry, config_dir, pool = project
    digest = format_digest(digest_of(pool, config_dir))
    expected = {"cut short": digest[:9], "with words around it": f"digest {digest}", "with a stray letter": "x" + digest[1:]}[typed]
    result = run_entry(entry, *run_args(config_dir, root / "out", "--expect-digest", expected, machine="alpha"), env=run_env(root, JOBSPLIT_TEST_SIDE=str(root / "side.txt")))
    assert result.returncode == 2, result.stderr
    program = shlex.join([sys.executable, str(entry)])
    assert result.stderr.strip() == (
        f"error: --expect-digest {expected} is not a digest: a digest is 32 hexadecimal digits in groups of four, "
        f"as `{program} digest` prints it (here {digest}); copy the whole of it, and nothing else"
    ), result.stderr
    assert not (root / "out").exists() and not (root / "side.txt").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--machine", "delta", "--yes"], 'no machine "delta"'),
        (["--machine", "alpha", "--yes", "--workers", "0"], "--workers"),
        (["--machine", "alpha", "--yes", "--timeout", "-1"], "--timeout"),
        (["--machine", "alpha", "--yes", "--strategy", "nonsense"], "unknown strategy"),
        (["--machine", "alpha", "--yes", "--console", "fancy"], "--console"),
    ],
)
def test_usage_and_config_errors_exit_2(project, args, message):
    root, entry, config_dir, _ = project
    result = run_entry(entry, "run", "--config-dir", config_dir, "--out", root / "out", *args, env=run_env(root))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (root / "out").exists()


@pytest.mark.parametrize("args", [["merge-results"], ["status", "--help"]])
def test_the_tools_an_entry_carries_name_the_entry_in_their_usage(project, args):
    """``./my_study merge-results`` printed ``usage: jobsplit merge-results ...``: a host that has
    only the executable has no ``jobsplit`` command, and the line showed one to type."""
    root, entry, _, _ = project
    result = run_entry(entry, *args, env=run_env(root))
    usage = next(line for line in (result.stdout + result.stderr).splitlines() if line.startswith("usage:"))
    assert usage.startswith(f"usage: {entry.name} {args[0]} "), usage
