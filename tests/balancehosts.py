"""Hosts of one project on this machine, for the shared-queue tests and ``bench_balance --live``.

Each host is a process of ``tests/frozen/e2e_entry.py`` (or of its frozen executable) with
its own output folder and its own speed: every job sleeps ``base x factor`` seconds, so a
factor of 2 is a host half as fast. :func:`check_outputs` is the checker the tests share: it
compares the pool, every journal, every results.csv and the merged CSV, and checks that each
job drew the random numbers of its id, whichever host ran it.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENTRY = ROOT / "tests" / "frozen" / "e2e_entry.py"
HEADER = "Run Start Time,Job Running Time,Job Start Time,Index,Draw\n"
FACTORS = {"fast": 1.0, "mid": 1.5, "slow": 2.0}
"""The hosts' real speeds: job time = base x factor."""
WRONG_WEIGHTS = {name: [1.0, 2] for name in FACTORS}
"""machines.json that ignores the speeds: the static split gives every host a third."""
POOL, BASE = 600, 0.08
"""Must show 1: 600 jobs of 80, 120 and 160 ms (long enough that the engine's per-job cost of a
few milliseconds on a busy machine does not decide the ratio)."""


@dataclass
class Cluster:
    root: Path
    pool: int
    machines: Mapping[str, list[float]]
    lease: float = 2.0
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    starts: Counter[str] = field(default_factory=Counter)

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def out(self) -> Path:
        return self.root / "out"

    @property
    def digest(self) -> str:
        from jobsplit.pool import JobPool
        from jobsplit.project import load_project

        return load_project(JobPool([(i,) for i in range(self.pool)]), self.config).digest

    def journal(self, machine: str) -> Path:
        return self.out / machine / "journal.sqlite"

    def log(self, machine: str, run: int | None = None) -> Path:
        return self.root / f"{machine}-{run if run is not None else self.starts[machine]}.out"

    def env(self, factor: float, inherit: bool = True) -> dict[str, str]:
        """The host's environment: this process's (without REDIS_*), or only what a host needs."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_")} if inherit else {"HOME": str(self.root), "LANG": "C.UTF-8", "PATH": "/nonexistent"}
        env.update(
            XDG_CONFIG_HOME=str(self.root / "xdg"), XDG_STATE_HOME=str(self.root / "state"), NO_COLOR="1", COLUMNS="200", PYTHONUNBUFFERED="1",
            JOBSPLIT_TEST_FACTOR=str(factor), JOBSPLIT_TEST_POOL=str(self.pool),
        )  # fmt: skip
        return env

    def args(self, machine: str, balance: str | None, *extra: str, workers: int = 2) -> list[str]:
        args = ["run", "--config-dir", str(self.config), "--out", str(self.out), "--machine", machine, "--yes", "--console", "plain",
                "--nice", "0", "--workers", str(workers), "--start-method", "fork"]  # fmt: skip
        if balance is not None:
            args += ["--balance", balance, "--lease", f"{self.lease:g}"]
        return args + list(extra)

    def start(
        self, machine: str, factor: float, balance: str | None, *extra: str, command: Sequence[str] | None = None, env: Mapping[str, str] | None = None, inherit: bool = True
    ) -> subprocess.Popen[bytes]:
        """Start a host in its own session (a process group to stop or kill whole); output to a file.
        ``inherit=False``: an environment without this process's (no Python on PATH, no PYTHONPATH)."""
        self.starts[machine] += 1
        with self.log(machine).open("wb") as out:
            process = subprocess.Popen(
                [*(command or [sys.executable, str(ENTRY)]), *self.args(machine, balance, *extra)],
                env={**self.env(factor, inherit), **(env or {})}, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.processes[machine] = process
        return process

    def wait(self, machine: str, timeout: float) -> tuple[int, str]:
        process = self.processes[machine]
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill_all()
            raise AssertionError(f"{machine} did not finish within {timeout} s:\n{self.output(machine)}") from None
        return code, self.output(machine)

    def output(self, machine: str, run: int | None = None) -> str:
        return self.log(machine, run).read_text(errors="replace")

    def signal(self, machine: str, signum: int) -> None:
        os.killpg(self.processes[machine].pid, signum)

    def kill_all(self) -> None:
        """SIGKILL every host's process group (workers included), even of hosts that exited."""
        for process in self.processes.values():
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            process.wait()


STARTED: list[Cluster] = []
"""Every cluster made, so that a test's teardown can kill what a failed test left running."""


def kill_started() -> None:
    while STARTED:
        STARTED.pop().kill_all()


def make_cluster(root: Path, *, pool: int, base: float, machines: Mapping[str, list[float]] = WRONG_WEIGHTS, lease: float = 2.0) -> Cluster:
    config = root / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "config.ini").write_text(f"[jobsplit]\nstrategy = quota\n\n[experiment]\nbase = {base}\n")
    (config / "header.csv").write_text(HEADER)
    (config / "machines.json").write_text(json.dumps(machines))
    STARTED.append(Cluster(root, pool, machines, lease))
    return STARTED[-1]


def run_hosts(cluster: Cluster, balance: str | None, factors: Mapping[str, float] = FACTORS, timeout: float = 120, frozen: Mapping[str, Sequence[str]] | None = None) -> dict[str, str]:
    """Start every host at once, wait for all; each must exit 0. Returns their outputs.
    ``frozen``: machine -> the command of an executable to run that host with, in a bare environment."""
    for machine, factor in factors.items():
        command = (frozen or {}).get(machine)
        cluster.start(machine, factor, balance, command=command, inherit=command is None)
    outputs = {}
    for machine in factors:
        code, output = cluster.wait(machine, timeout)
        assert code == 0, f"{machine} exited {code}:\n{output}"
        outputs[machine] = output
    return outputs


# --- reading the outputs ----------------------------------------------------------------------


def query(path: Path, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
    try:
        return list(db.execute(sql, params))
    finally:
        db.close()


def count_now(path: Path, sql: str) -> int:
    """A count from a journal a run is writing: 0 while it is not there yet (or not set up)."""
    try:
        return int(query(path, sql)[0][0])  # type: ignore[call-overload]
    except sqlite3.Error:
        return 0


@dataclass(frozen=True)
class Makespan:
    seconds: float
    """From the first job's start on any host to the last job's end."""
    ideal: float
    """The least that could be for the hosts' measured speeds: every worker of every host busy from
    its host's first job (hosts start a few tenths of a second apart) to the end."""
    per_host: dict[str, tuple[int, float]]
    """machine -> (jobs done, mean job seconds)."""

    @property
    def ratio(self) -> float:
        return self.seconds / self.ideal


def makespan(cluster: Cluster, workers: int = 2) -> Makespan:
    """From the journals: first attempt start to last attempt end, against the ideal for the
    hosts' measured speeds (workers / mean done-attempt time) and start times. A host's jobs
    are those it did (state done), not a result that came after its claim had lapsed and
    another host took the job (superseded, its outcome done too): a busy CI run had one."""
    starts, last, per_host = {}, 0.0, {}
    for machine in cluster.machines:
        rows = query(cluster.journal(machine), "SELECT MIN(started), MAX(ended), COUNT(*), AVG(ended - started) FROM attempts WHERE outcome = 'done' AND state = 'done'")
        start, end, count, mean = rows[0]
        starts[machine], last = float(start), max(last, float(end))  # type: ignore[arg-type]
        per_host[machine] = (int(count), float(mean))  # type: ignore[arg-type]
    first = min(starts.values())
    speeds = sorted((starts[m] - first, workers / mean) for m, (_, mean) in per_host.items())
    ideal, rate, weighted = float("inf"), 0.0, 0.0  # the T where sum of speed x (T - start) reaches the pool
    for index, (start, speed) in enumerate(speeds):
        rate, weighted = rate + speed, weighted + speed * start
        ideal = (cluster.pool + weighted) / rate
        if index + 1 == len(speeds) or ideal <= speeds[index + 1][0]:
            break
    return Makespan(last - first, ideal, per_host)


@dataclass
class Check:
    """What the checker found: every count should be zero but ``superseded``."""

    lost: list[str]
    done_twice: list[str]
    results_twice: list[str]
    merged_rows: int
    merged_twice: int
    wrong_draws: int
    superseded: int
    merge_output: str
    merge_status: int


def check_outputs(cluster: Cluster, digest: str | None = None) -> Check:
    """Compare the plan, every journal, every results.csv and the merged CSV (merge-results)."""
    from jobsplit.jobrandom import job_seed
    from jobsplit.pool import JobPool

    pool = JobPool([(i,) for i in range(cluster.pool)])
    ids = pool.ids_hex(range(len(pool)))
    done: Counter[str] = Counter()
    in_results: Counter[str] = Counter()
    superseded = 0
    for machine in cluster.machines:
        journal = cluster.journal(machine)
        if not journal.exists():
            continue
        done.update(job for (job,) in query(journal, "SELECT job_id FROM jobs WHERE state = 'done'"))
        superseded += len(query(journal, "SELECT 1 FROM attempts WHERE state = 'superseded'"))
        with (cluster.out / machine / "results.csv").open(newline="") as f:
            in_results.update(row["Job ID"] for row in csv.DictReader(f))
    merged_path = cluster.root / "merged.csv"
    merge = subprocess.run(
        [sys.executable, "-m", "jobsplit", "merge-results", str(cluster.out), "-o", str(merged_path)],
        capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1", "COLUMNS": "300"}, check=False,
    )  # fmt: skip
    rows: list[dict[str, str]] = []
    if merged_path.exists():
        with merged_path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    seed = bytes.fromhex(digest or rows[0]["Digest"]) if rows else b""
    wrong = sum(1 for row in rows if float(row["Draw"]) != random.Random(job_seed(seed, row["Job ID"])).random())
    merged_ids = Counter(row["Job ID"] for row in rows)
    return Check(
        lost=[job for job in ids if not done[job]],
        done_twice=[job for job, n in done.items() if n > 1],
        results_twice=[job for job, n in in_results.items() if n > 1],
        merged_rows=len(rows),
        merged_twice=sum(1 for n in merged_ids.values() if n > 1),
        wrong_draws=wrong + len(set(merged_ids) ^ set(ids)),
        superseded=superseded,
        merge_output=merge.stdout + merge.stderr,
        merge_status=merge.returncode,
    )


def assert_exactly_once(cluster: Cluster) -> Check:
    check = check_outputs(cluster)
    assert not check.lost, f"lost {len(check.lost)} jobs: {check.lost[:5]}"
    assert not check.done_twice, f"{len(check.done_twice)} jobs done in two journals: {check.done_twice[:5]}"
    assert not check.results_twice, f"{len(check.results_twice)} jobs in two results.csv files: {check.results_twice[:5]}"
    assert check.merged_rows == cluster.pool and not check.merged_twice and not check.wrong_draws, check
    assert check.merge_status == 0 and "complete: every job of the" in check.merge_output, check.merge_output
    return check


def queue_done(port: int, digest: str) -> int:
    """Jobs the queue holds as done (for timing a kill), 0 while there is no queue."""
    from components import resp_command

    try:
        return int(resp_command(port, "HLEN", f"jobsplit:{{{digest}}}:done"))
    except OSError:
        return 0


def gate(folder: Path, after: int) -> dict[str, str]:
    """The environment of hosts whose jobs past the first ``after`` to start (on all of them) wait
    until :func:`open_gate` (see e2e_entry.py): a test acts on the runs mid-way, however long
    it takes; a busy host's test came too late for runs of a few seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    return {"JOBSPLIT_TEST_GATE": str(folder), "JOBSPLIT_TEST_GATE_AFTER": str(after)}


def open_gate(folder: Path) -> None:
    (folder / "open").touch()


def wait_until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
