"""Dynamic balancing through a shared Redis queue, end to end (issue 11, Must show 1-5): hosts
are processes of tests/frozen/e2e_entry.py with different speeds, against a real redis-server.

Leases are 2 s so that a dead or paused host's jobs come back quickly. Every test ends with the
checker of balancehosts: the pool, every journal, every results.csv and the merged CSV agree
that each job was done exactly once, and drew the random numbers of its id.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from balancehosts import (
    BASE,
    ENTRY,
    FACTORS,
    POOL,
    assert_exactly_once,
    count_now,
    gate,
    kill_started,
    make_cluster,
    makespan,
    open_gate,
    query,
    queue_done,
    run_hosts,
    wait_until,
)
from conftest import error_lines
from jobsplit.pool import JobPool
from jobsplit.snapshot import read_snapshot


@pytest.fixture(autouse=True)
def _no_host_left_behind() -> Iterator[None]:
    """A failed test leaves its hosts running (retrying a Redis that is gone): kill them."""
    yield
    kill_started()


def test_three_hosts_of_different_speeds_balance_to_near_ideal(redis_server, tmp_path, capsys) -> None:
    """Must show 1: 600 jobs of 80 ms x (1, 1.5, 2) on three hosts. The static split with
    machines.json weights that ignore the speeds gives each host a third, and waits for the
    slowest; through the queue each host takes as many as its speed allows. The makespans are
    printed here and judged by ``benchmarks/bench_balance.py --live`` (target 1.05x ideal): as
    assertions here (1.10x, and the static split 1.2x worse) they failed a busy CI run at random
    (1.106x), as every wall-clock assertion does on this shared machine."""
    server = redis_server.start()
    static = make_cluster(tmp_path / "static", pool=POOL, base=BASE)
    run_hosts(static, balance=None)
    assert_exactly_once(static)
    dynamic = make_cluster(tmp_path / "dynamic", pool=POOL, base=BASE)
    run_hosts(dynamic, balance=server.url)
    assert_exactly_once(dynamic)
    s, d = makespan(static), makespan(dynamic)
    with capsys.disabled():
        print(f"\nmakespan / ideal: static split (wrong weights) {s.ratio:.3f} ({s.seconds:.2f} s / {s.ideal:.2f} s), "
              f"--balance {d.ratio:.3f} ({d.seconds:.2f} s / {d.ideal:.2f} s); jobs per host {({m: n for m, (n, _) in d.per_host.items()})}")  # fmt: skip
    assert [s.per_host[m][0] for m in FACTORS] == [POOL // 3] * 3  # the static split: a third each, whatever the speeds
    fast, mid, slow = (d.per_host[m][0] for m in FACTORS)
    assert fast > mid > slow  # each host took as many as its speed allowed
    for machine in FACTORS:  # the snapshot status reads from another host: what this host held, of the whole pool
        snapshot = read_snapshot(dynamic.journal(machine).parent)
        assert snapshot is not None and snapshot.plan == {"": POOL} and snapshot.state == "completed"
        assert snapshot.total == snapshot.done == d.per_host[machine][0] and snapshot.pending == 0


def test_a_killed_hosts_claims_run_elsewhere_after_the_lease(redis_server, tmp_path) -> None:
    """Must show 2: SIGKILL of one host (its whole process group) mid-run. The jobs past the 60th
    wait at a gate until then: in a pool of 3 s, a busy host's test killed a host that had ended.
    And the kill comes once every worker waits there and the host holds no claim on a job that
    ended (its result committed and acknowledged): killed as soon as the test saw a commit (10
    jobs done), a busy host's runner had not yet acknowledged it (the gap of microseconds the
    queue's guarantees name), and those jobs ran again elsewhere (done in two journals)."""
    server = redis_server.start()
    cluster = make_cluster(tmp_path, pool=240, base=0.05)
    digest = cluster.digest
    held_back = gate(tmp_path / "gate", 60)
    for machine in FACTORS:
        cluster.start(machine, 1.0, server.url, env=held_back)
    ids = JobPool([(i,) for i in range(cluster.pool)]).ids_hex(range(cluster.pool))

    def all_waiting_and_acknowledged() -> bool:
        """Every worker waits at the gate (so every job that started before it has ended), and
        slow holds none of those any more: its results are committed and acknowledged."""
        starts = (tmp_path / "gate" / "starts").read_text().split() if (tmp_path / "gate" / "starts").exists() else []
        if len(starts) < 60 + 2 * len(FACTORS):
            return False
        owners = server.command("HGETALL", f"jobsplit:{{{digest}}}:owner")
        held = {job.decode() for job, who in zip(owners[::2], owners[1::2]) if who.startswith(b"slow/")}
        return not held & {ids[int(index)] for index in starts[:60]}

    wait_until(all_waiting_and_acknowledged, 60, "every worker at the gate, and slow's ended jobs acknowledged")
    cluster.signal("slow", signal.SIGKILL)
    cluster.processes["slow"].wait()
    open_gate(tmp_path / "gate")
    for machine in ("fast", "mid"):
        code, output = cluster.wait(machine, 60)
        assert code == 0, output
    held = {job for (job,) in query(cluster.journal("slow"), "SELECT job_id FROM jobs WHERE state IN ('pending', 'running')")}
    assert held, "the killed host held claims"
    assert_exactly_once(cluster)
    status = subprocess.run([sys.executable, "-m", "jobsplit", "status", str(cluster.out), "--balance", server.url, "--json"], capture_output=True, text=True, check=True)
    doc = json.loads(status.stdout)
    (queue,) = doc["queues"]
    assert queue["done"] == 240 and queue["claimed"] == {} and queue["reclaimed_from"].get("slow", 0) >= len(held)
    assert doc["overall"]["done"] == 240 and doc["overall"]["total"] == 240
    table = subprocess.run([sys.executable, "-m", "jobsplit", "status", "--balance", server.url], capture_output=True, text=True, check=True, env={**os.environ, "COLUMNS": "200"})
    assert "240/240 done, 0 failed, 0 pending" in table.stdout and "Reclaimed from it" in table.stdout
    assert queue_done(server.port, digest) == 240


def test_a_host_paused_past_its_lease_has_its_stale_results_superseded(redis_server, tmp_path) -> None:
    """Must show 3: SIGSTOP of a host (process group, as a closed laptop lid) past its lease, then
    SIGCONT once other hosts took its jobs. The jobs past the 12th wait at a gate until the stop,
    and the stop lasts until both its jobs were claimed again: a busy host's test stopped a host
    whose jobs had ended, or continued it (after two leases) before another host took them."""
    server = redis_server.start()
    cluster = make_cluster(tmp_path, pool=36, base=0.5)
    held_back = gate(tmp_path / "gate", 12)
    for machine in FACTORS:
        cluster.start(machine, 1.0, server.url, env=held_back)
    wait_until(lambda: count_now(cluster.journal("slow"), "SELECT COUNT(*) FROM running") == 2, 30, "slow to run two jobs")
    cluster.signal("slow", signal.SIGSTOP)
    open_gate(tmp_path / "gate")
    stopped = [job for (job,) in query(cluster.journal("slow"), "SELECT job_id FROM running")]
    tokens = f"jobsplit:{{{cluster.digest}}}:token"
    wait_until(lambda: all(int(server.command("HGET", tokens, job) or 0) >= 2 for job in stopped), 60, "another host to claim the stopped host's jobs")
    cluster.signal("slow", signal.SIGCONT)
    outputs = {machine: cluster.wait(machine, 60) for machine in FACTORS}
    for machine, (code, output) in outputs.items():
        assert code == 0, f"{machine}: {output}"
    check = assert_exactly_once(cluster)
    superseded = query(cluster.journal("slow"), "SELECT job_id FROM attempts WHERE state = 'superseded' AND outcome = 'done'")
    assert superseded and check.superseded == len(superseded)
    assert "not accepted" in outputs["slow"][1] and "recorded here as superseded" in outputs["slow"][1]
    assert f"superseded: {len(superseded)} job{'s' if len(superseded) > 1 else ''} also computed" in check.merge_output


def test_soak_10000_short_jobs_with_a_host_killed_and_restarted_twice(redis_server, tmp_path, capsys) -> None:
    """Must show 4: lost = 0 and duplicated = 0 across the plan, every journal and the merged CSV.
    The other hosts' jobs past their 5,000th wait at a gate until mid's last restart: a busy
    host's restarts of mid took so long that the others emptied the queue meanwhile, and its
    second run never got going (timed out)."""
    server = redis_server.start()
    # Jobs of 8 to 16 ms: the pool lasts about 18 s, so each of mid's two restarts (a second or two
    # each, longer on a busy machine) finds most of it still pending. At 0.5 ms the others
    # emptied the queue while mid restarted, and its second run never got going.
    cluster = make_cluster(tmp_path, pool=10_000, base=0.008)
    digest = cluster.digest
    began = time.monotonic()
    held_back = gate(tmp_path / "gate", cluster.pool // 2)  # half the pool is left to mid's three runs
    for machine in FACTORS:
        cluster.start(machine, 1.0, server.url, env=held_back if machine != "mid" else None)
    mid_done_in_run = "SELECT COUNT(*) FROM attempts WHERE outcome = 'done' AND run = (SELECT MAX(run) FROM runs)"
    wait_until(lambda: queue_done(server.port, digest) >= 0.1 * cluster.pool, 120, "a tenth of the pool done")
    killed_at: list[int] = []  # jobs of the pool done when mid was killed
    for run in (1, 2):  # each of mid's runs is killed once it is under way (no later: the others may finish the pool)
        wait_until(lambda r=run: count_now(cluster.journal("mid"), "SELECT COUNT(*) FROM runs") == r and count_now(cluster.journal("mid"), mid_done_in_run) >= 50, 60, f"mid's run {run} to get going")  # type: ignore[misc]
        cluster.signal("mid", signal.SIGKILL)
        killed_at.append(queue_done(server.port, digest))
        cluster.processes["mid"].wait()
        cluster.start("mid", 1.0, server.url)
    open_gate(tmp_path / "gate")
    for machine in FACTORS:
        code, output = cluster.wait(machine, 180)
        assert code == 0, f"{machine}: {output}"
    check = assert_exactly_once(cluster)
    runs = query(cluster.journal("mid"), "SELECT status FROM runs ORDER BY run")
    assert [status for (status,) in runs] == ["crashed", "crashed", "completed"]
    assert any("of this machine's previous run (killed?) to the queue" in cluster.output("mid", run) for run in (2, 3))
    with capsys.disabled():
        print(f"\nsoak: 10,000 jobs over 3 hosts, one killed twice (at {killed_at} done): lost 0, duplicated 0, superseded {check.superseded}, {time.monotonic() - began:.1f} s")


def test_redis_killed_mid_run_and_back_empty(redis_server, tmp_path) -> None:
    """Must show 5: the hosts go on, retry, re-seed the queue without what journals hold as
    done, wait a lease for every host to report, and complete with every job exactly once.
    The jobs past the 60th wait at a gate until Redis is back, and Redis stays away until every
    host said it lost it: a busy host's test killed Redis after a pool of 2 s had ended, or
    started it again (after 1.5 s) before a host had tried it."""
    server = redis_server.start()
    cluster = make_cluster(tmp_path, pool=150, base=0.05)
    digest = cluster.digest
    held_back = gate(tmp_path / "gate", 60)
    for machine in FACTORS:
        cluster.start(machine, 1.0, server.url, env=held_back)
    wait_until(lambda: queue_done(server.port, digest) >= 50, 30, "50 jobs done")
    server.kill()
    wait_until(lambda: all("lost Redis at" in cluster.output(machine) for machine in FACTORS), 60, "every host to lose Redis")
    server.start()  # same port, empty
    open_gate(tmp_path / "gate")
    outputs = {machine: cluster.wait(machine, 60) for machine in FACTORS}
    for machine, (code, output) in outputs.items():
        assert code == 0, f"{machine}: {output}"
        assert "lost Redis at redis://127.0.0.1" in output and "retrying with backoff" in output and "reconnected to Redis" in output
    reseeded = [line for _, output in outputs.values() for line in output.splitlines() if "seeded the shared queue" in line and "no job is handed out" in line]
    assert len(reseeded) == 1, reseeded  # one host seeds again; the others report what they hold
    assert_exactly_once(cluster)


def test_redis_errors_at_start_are_one_sentence(redis_server, tmp_path) -> None:
    """Must show 5: Redis down at start, a wrong or missing password, a malformed URL (flag and
    config.ini), no client library: each exit 2 with one sentence naming where the URL came
    from; no password shown."""
    secret = "pa55-w0rd"
    server = redis_server.start(password=secret)
    cluster = make_cluster(tmp_path, pool=4, base=0.0)

    def run(url: str, *, password: str | None = None) -> tuple[int, str]:
        env = {"REDIS_PASSWORD": password} if password is not None else {}
        cluster.start("fast", 1.0, url, env=env)
        code, output = cluster.wait("fast", 30)
        assert secret not in output and "wrong-one" not in output
        return code, output

    down = f"redis://127.0.0.1:{server.port + 1 if server.port < 65535 else 1}/0"
    for url, password, expected in [
        (down, None, r"cannot reach Redis at redis://127\.0\.0\.1:\d+/0 \(from --balance\): .*; start the server, or fix the URL"),
        (f"redis://127.0.0.1:{server.port}/0", "wrong-one", r"Redis at .* \(from --balance\) refused to let jobsplit in \(.*\); check the password"),
        (f"redis://127.0.0.1:{server.port}/0", None, r"refused to let jobsplit in \(.*\); set REDIS_PASSWORD"),
        (f"redis://:wrong-one@127.0.0.1:{server.port}/0", secret, r"Redis at redis://:\*\*\*@127\.0\.0\.1:\d+/0 \(from --balance\) refused"),
        ("redis://127.0.0.1:notaport/0", None, r"--balance 'redis://127\.0\.0\.1:notaport/0' is not a Redis URL \(.*\); write redis://HOST:PORT/DB"),
    ]:
        code, output = run(url, password=password)
        errors = error_lines(output)
        assert code == 2 and len(errors) == 1, output
        assert __import__("re").search(expected, errors[0]), errors[0]
        assert not (cluster.out / "fast" / "journal.sqlite").exists()
    no_client = tmp_path / "no-client" / "redis"
    no_client.mkdir(parents=True)
    (no_client / "__init__.py").write_text("raise ImportError('the redis extra is not installed')\n")
    cluster.start("fast", 1.0, server.url, env={"PYTHONPATH": str(no_client.parent)})
    code, output = cluster.wait("fast", 30)
    assert code == 2 and "--balance needs the redis client library, which is not installed here; pip install 'jobsplit[redis]'" in error_lines(output)[0], output
    (cluster.config / "config.ini").write_text("[experiment]\nbase = 0\n\n[balance]\nurl = redis//nowhere\n")
    cluster.start("fast", 1.0, None)
    code, output = cluster.wait("fast", 30)
    assert code == 2 and "config.ini [balance] url 'redis//nowhere' is not a Redis URL" in error_lines(output)[0], output
    (cluster.config / "config.ini").write_text("[experiment]\nbase = 0\n\n[balance]\nurls = redis://h/0\n")
    cluster.start("fast", 1.0, None)
    code, output = cluster.wait("fast", 30)
    assert code == 2 and "[balance] urls is not a balance setting" in output


def test_the_password_is_never_shown_and_ctrl_c_returns_claims_at_once(redis_server, tmp_path) -> None:
    """A run with the password in the URL, interrupted: the console, the log and the resume hint
    show ***; the interrupted host's claims are pending again at once (no lease to wait for)."""
    secret = "Hunter2-secret"
    server = redis_server.start(password=secret)
    cluster = make_cluster(tmp_path, pool=20, base=5.0, lease=60)
    cluster.start("fast", 1.0, server.url)
    wait_until(lambda: count_now(cluster.journal("fast"), "SELECT COUNT(*) FROM running") == 2, 30, "two jobs running")
    cluster.signal("fast", signal.SIGINT)
    code, output = cluster.wait("fast", 30)
    assert code == 130, output
    assert secret not in output and f"redis://:***@127.0.0.1:{server.port}/0" in output
    import gzip

    log = gzip.decompress((cluster.out / "fast" / "fast.log.gz").read_bytes()).decode()
    assert secret not in log and "redis://:***@" in log
    owners = server.command("HLEN", f"jobsplit:{{{cluster.digest}}}:owner")
    pending = server.command("LLEN", f"jobsplit:{{{cluster.digest}}}:pending")
    assert owners == 0 and pending == 20
    assert query(cluster.journal("fast"), "SELECT COUNT(*) FROM job")[0][0] == 0  # holds nothing now
    assert ENTRY.exists()


def test_a_second_run_of_one_machine_on_the_queue_is_refused_and_a_restart_after_a_crash_is_not(redis_server, tmp_path) -> None:
    """Another host given the same machine name (or the same command from another folder, with
    another state folder) took the jobs the queue credits to that name for lost: it handed them
    back and ran them again, and both results were kept. Now it is refused while the first run
    is in contact; once that run has died (kill -9 here), its restart on this host is not. The
    first run's jobs past the 6th wait at a gate until then, and the second run's lease (which
    decides) is a minute: a busy host's second run started after a first of 3 s had ended."""
    server = redis_server.start()
    cluster = make_cluster(tmp_path, pool=120, base=0.05)
    first = cluster.start("fast", 1.0, server.url, env=gate(tmp_path / "gate", 6))
    wait_until(lambda: count_now(cluster.journal("fast"), "SELECT COUNT(*) FROM jobs WHERE state = 'done'") >= 4, 30, "fast to finish 4 jobs")
    other = tmp_path / "other-host"
    second = subprocess.run(
        [sys.executable, str(ENTRY), *cluster.args("fast", server.url, "--out", str(other / "out"), "--lease", "60")],
        env={**cluster.env(1.0), "XDG_STATE_HOME": str(other / "state")}, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    errors = error_lines(second.stderr)
    assert second.returncode == 2 and len(errors) == 1 and "Traceback" not in second.stderr, second.stderr
    assert f"another run of fast is taking jobs from the shared queue at {server.url}" in errors[0] and f"(pid {first.pid})" in errors[0], errors[0]
    assert "give each host its own name in machines.json" in errors[0], errors[0]
    assert not query(other / "out" / "fast" / "journal.sqlite", "SELECT job_id FROM attempts"), "the refused run ran jobs"
    cluster.signal("fast", signal.SIGKILL)
    first.wait()
    cluster.start("fast", 1.0, server.url)  # at once: the dead run's last contact is well within the lease
    code, output = cluster.wait("fast", 60)
    assert code == 0, output
    assert_exactly_once(cluster)


def test_a_machine_run_again_from_another_folder_on_the_queue_is_refused_not_run_again(redis_server, tmp_path) -> None:
    """The same command from another folder (another --out) on a queue: the queue credits the
    machine's done jobs, its new journal lacks them, so they went back to the queue and ran
    again, with no word (a static share said where its done jobs were). Refused, as a static
    share's is without a confirmation, naming the folder that holds them."""
    server = redis_server.start()
    cluster = make_cluster(tmp_path, pool=24, base=0.0)
    cluster.start("fast", 1.0, server.url)
    code, output = cluster.wait("fast", 60)
    assert code == 0, output
    again = subprocess.run(
        [sys.executable, str(ENTRY), *cluster.args("fast", server.url, "--out", str(tmp_path / "elsewhere"))],
        env=cluster.env(1.0), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    said = " ".join(again.stderr.split())
    assert again.returncode == 2 and f"24 jobs of this share are done in {cluster.out / 'fast'}" in said and f"run with --out {cluster.out}" in said, again.stderr
    assert not (tmp_path / "elsewhere").exists()
    assert_exactly_once(cluster)


def test_a_static_share_s_done_jobs_do_not_stop_a_queue_run_of_the_machine_in_a_new_folder(redis_server, tmp_path) -> None:
    """A static share's folder is no place for a queue run of the same machine (it refuses that
    journal: "made by a run as a static share"), so pointing the queue run at it, as the refusal
    said, led to a second refusal. Folders of the other kind are not taken for this share's."""
    server = redis_server.start()
    cluster = make_cluster(tmp_path, pool=12, base=0.0)
    cluster.start("fast", 1.0, None)
    assert cluster.wait("fast", 60)[0] == 0
    queue_run = subprocess.run(
        [sys.executable, str(ENTRY), *cluster.args("fast", server.url, "--out", str(tmp_path / "queue"))],
        env=cluster.env(1.0), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert queue_run.returncode == 0 and "of this share are done in" not in queue_run.stderr, queue_run.stderr
    # Both runs showed one digest: a host given --balance and one not given it ran the same jobs, and only merge-results found out.
    assert "note: --balance is not part of the digest" in queue_run.stderr and "a host run without it takes its static share" in " ".join(queue_run.stderr.split())


def test_a_balance_flag_for_another_server_than_config_ini_s_url_is_said(redis_server, tmp_path) -> None:
    """config.ini's ``[balance] url`` (in the digest, so that every host takes the same queue)
    and a host's ``--balance`` for another server (a line of an old job script): the flag won,
    without a word, the host seeded a queue of its own there and ran the jobs the other hosts
    had done a second time; only merge-results found out. The same server by another address
    is said nothing of."""
    shared, other = redis_server.start(), redis_server.start()
    cluster = make_cluster(tmp_path, pool=6, base=0.0)
    with (cluster.config / "config.ini").open("a") as config:
        config.write(f"\n[balance]\nurl = {shared.url}\n")
    cluster.start("fast", 1.0, other.url)
    code, output = cluster.wait("fast", 60)
    said = " ".join(output.split())
    assert code == 0 and f"--balance {other.url} overrides {cluster.config / 'config.ini'} [balance] url {shared.url}, which the other hosts take" in said, output
    cluster.start("mid", 1.0, shared.url.replace("127.0.0.1", "localhost"))
    code, output = cluster.wait("mid", 60)
    assert code == 0 and "overrides" not in output, output


def test_one_host_name_is_one_server_without_a_look_up(monkeypatch) -> None:
    """A name whose look-ups answer one of several addresses each time (round-robin DNS) was
    taken for two servers: config.ini's url alone, with no --balance given, was said to be
    overridden by itself. One name is one server, and a name is not looked up to say so."""
    from jobsplit.balance import parse_url, same_server

    answers = iter(["10.0.0.5", "10.0.0.6", "10.0.0.7", "10.0.0.8"])
    monkeypatch.setattr("socket.getaddrinfo", lambda host, port: [(2, 1, 6, "", (next(answers), 0))])
    a = parse_url("redis://redis.example:6379/0", "config.ini url", environ={})
    b = parse_url("redis://REDIS.example:6379/0", "--balance", environ={})
    assert same_server(a, b)
    assert not same_server(a, parse_url("redis://redis.example:6379/1", "--balance", environ={}))
