"""The shared Redis queue (issue 11) in one process against a real redis-server: seeding,
claims, leases, fencing, retries, release, acknowledgement after commit, and the journal's
view of it (a fake journal here; the end-to-end tests use the real one).

Several RedisQueue objects on one server stand for several hosts. Leases are short (0.3 s) so
that expiry is quick; the server's clock decides expiry, so the tests wait for it, never fake it.
What must not expire while a test looks at it has a lease of a minute (WHOLE_RUN).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator, Sequence

import pytest

from jobsplit import balance
from jobsplit.balance import parse_url, queue_keys, this_system
from jobsplit.children import started_at
from jobsplit.errors import UserError
from jobsplit.sources import Task
from jobsplit.sources.redis import RedisQueue
from jobsplit.states import JobState, Outcome

DIGEST = "ab" * 16
LEASE = 0.3
WHOLE_RUN = 60.0
"""A lease for what must last while the test looks at it (a refusal for a run in contact, a
hold): LEASE ran out whenever the test process was descheduled for 0.3 s at the wrong moment,
as on a busy host."""


class FakeJournal:
    """What a RedisQueue writes to a journal, in memory: held jobs and their states."""

    def __init__(self, done: Iterable[str] = (), failed: Iterable[str] = ()) -> None:
        self.state: dict[str, str] = {job: JobState.DONE for job in done} | {job: JobState.FAILED for job in failed}
        self.superseded: list[str] = []

    def hold(self, job_ids: Sequence[str]) -> dict[str, int]:
        for job in job_ids:
            self.state.setdefault(job, JobState.PENDING)
        return {}

    def unhold(self, job_ids: Iterable[str]) -> None:
        for job in job_ids:
            self.state.pop(job, None)

    def supersede(self, job_ids: Sequence[str]) -> None:
        self.superseded += job_ids
        for job in job_ids:
            self.state[job] = JobState.SUPERSEDED

    def states(self) -> Iterator[tuple[str, str]]:
        return iter(list(self.state.items()))


class Host:
    """One RedisQueue (a host), its fake journal and what it said."""

    def __init__(
        self, url: str, machine: str, ids: Sequence[str], *, retries: int = 0, journal: FakeJournal | None = None, digest: str = DIGEST, lease: float = LEASE, retry_failed: bool = False
    ) -> None:
        self.journal = journal or FakeJournal()
        self.said: list[str] = []
        self.queue = RedisQueue(
            balance.connect(parse_url(url, "--balance")), digest=digest, machine=machine, ids=ids, seed_order=lambda: range(len(ids)),
            order_name="in pool order", lease=lease, retries=retries, retry_failed=retry_failed, workers=0, holdings=self.journal, say=self.said.append,
        )  # fmt: skip

    def take(self, limit: int) -> list[Task]:
        return self.queue.take(limit)

    def die(self, instance: str | None = None) -> None:
        """Be as a host's run that died (crashed, no clean end): its last contact stays, under
        ``instance`` (default: a process of this host that has ended, which a restart of its
        machine here does not wait for)."""
        if instance is None:
            ended = subprocess.Popen(["true"])
            ended.wait()  # its pid: a process of this host that has ended
            instance = f"{self.queue.machine}/{socket.gethostname()}:{ended.pid}.1.{this_system()}-gone"
        client = self.queue._client
        hosts = self.queue._keys.hosts
        client.hset(hosts, instance, client.hget(hosts, self.queue.me) or 0)
        client.hdel(hosts, self.queue.me)

    def finish(self, tasks: Sequence[Task], outcome: Outcome = Outcome.DONE) -> list[JobState]:
        """Settle, then commit as the recorder would (which acknowledges DONE and FAILED)."""
        states = self.queue.settle([(t, outcome) for t in tasks])
        for task, state in zip(tasks, states):
            if state != JobState.PENDING:  # a retry went back to the shared queue: not held here any more
                self.journal.state[task.job_id] = state
        self.queue.committed([(t.job_id, state) for t, state in zip(tasks, states)])
        self.queue.take(0)  # the runner's next turn: acknowledges the commit
        return states


def ids_of(count: int) -> list[str]:
    return [f"{i:032x}" for i in range(count)]


def take_all(host: Host, limit: int = 1000, within: float = 5.0) -> list[Task]:
    """Take until the host gets something (the poll interval may hold a call back)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        tasks = host.take(limit)
        if tasks:
            return tasks
        time.sleep(0.02)
    return []


@pytest.fixture
def url(redis_server) -> str:
    return redis_server.start().url


def test_first_host_seeds_in_order_and_others_join(url, redis_server) -> None:
    ids = ids_of(20)
    a, b = Host(url, "a", ids), Host(url, "b", ids)
    a.queue.start()
    b.queue.start()
    assert [t.job_id for t in a.take(3)] == ids[:3]
    assert [t.job_id for t in b.take(2)] == ids[3:5]
    assert any("seeded the shared queue" in s for s in a.said) and not b.said
    assert a.queue.remaining() == 20


def test_a_step_back_of_the_server_s_clock_does_not_stop_the_queue(url) -> None:
    """The first host's seeding wrote its time as the end of a hold of none: after the Redis
    server's clock stepped back by X (here every time it wrote moved X ahead, which is the same),
    no host got a job for X, each told that Redis had lost the queue."""
    ids = ids_of(6)
    a = Host(url, "a", ids)
    a.queue.start()
    client, meta = a.queue._client, a.queue._keys.meta
    for field in ("hold_until", "seeded"):
        if client.hexists(meta, field):
            client.hset(meta, field, int(client.hget(meta, field)) + 600_000)
    assert [t.job_id for t in a.take(3)] == ids[:3]
    assert not any("seeded again" in s for s in a.said), a.said


def started(url: str, ids: Sequence[str], *machines: str) -> list[Host]:
    """A host for each machine, each one's run started on the queue."""
    hosts = [Host(url, machine, ids) for machine in machines]
    for host in hosts:
        host.queue.start()
    return hosts


def move_server_times(host: Host, step: int) -> None:
    """Move the times the Redis server wrote (when a host last took, the claims' deadlines) by
    ``step`` ms: as its clock stepping by ``-step``, seen from those times."""
    client, keys = host.queue._client, host.queue._keys
    if (heard := client.hget(keys.meta, "heard")) is not None:
        client.hset(keys.meta, "heard", int(heard) + step)
    for job, deadline in client.zrange(keys.leases, 0, -1, withscores=True):
        client.zadd(keys.leases, {job: deadline + step})


def test_a_step_back_of_the_server_s_clock_leaves_a_dead_host_s_claims_and_name_for_a_lease(url) -> None:
    """After the Redis server's clock stepped back by X, every time it had written lay X ahead: a
    dead host's claims came back only after X and a lease, and its machine name stayed taken for
    X (here every time the server wrote moved X ahead, which is the same)."""
    ids = ids_of(2)
    a, b = started(url, ids, "a", "b")
    held = a.take(2)
    client, keys = a.queue._client, a.queue._keys
    instance = "a/elsewhere:1.1.other-host"  # a run of a on another host, that went silent
    client.hset(keys.hosts, instance, int(client.hget(keys.hosts, a.queue.me)))
    client.hdel(keys.hosts, a.queue.me)
    step = 600_000  # ms: 2,000 leases of the test's
    move_server_times(a, step)
    client.hset(keys.hosts, instance, int(client.hget(keys.hosts, instance)) + step)
    time.sleep(LEASE + 0.1)
    assert sorted(t.job_id for t in take_all(b, 2)) == sorted(t.job_id for t in held)
    with pytest.raises(UserError, match="another run of a is taking jobs"):
        Host(url, "a", ids).queue.start()  # heard of now: silent for less than a lease
    time.sleep(LEASE + 0.1)
    Host(url, "a", ids).queue.start()


def test_a_dead_host_s_claims_come_back_to_a_host_that_takes_seldom(url) -> None:
    """Where takes came more than half a lease apart (a loaded host, a short lease), each moved
    every deadline by its whole gap, taken for a step of the server's clock: a dead host's
    claims never came back. Each such take now ages them by a quarter lease at least."""
    ids = ids_of(2)
    a, b = started(url, ids, "a", "b")
    held = {t.job_id for t in a.take(2)}
    a.die()
    back: set[str] = set()
    deadline = time.monotonic() + 10
    while back != held and time.monotonic() < deadline:
        time.sleep(LEASE * 0.7)  # more than half a lease between two takes
        b.queue._next_poll = 0.0
        back |= {t.job_id for t in b.take(2)}
    assert back == held


def test_a_step_forward_of_the_server_s_clock_takes_no_live_host_s_claims(url) -> None:
    """A step forward of the Redis server's clock by more than a lease (an NTP correction; its VM
    resumed) expired every claim at once: the next take handed a live host's running jobs to
    another, both ran them, and the live host's results were superseded. (Here every time the
    server wrote moved back by the step, which is the same.)"""
    ids = ids_of(6)
    a, b = started(url, ids, "a", "b")
    held = a.take(2)
    move_server_times(a, -120_000)  # ms: 400 leases of the test's
    taken = take_all(b, 2)
    assert taken and not {t.job_id for t in taken} & {t.job_id for t in held}, (taken, held)
    assert a.finish(held) == [JobState.DONE, JobState.DONE]


def test_two_hosts_seeding_at_once_make_one_queue(url) -> None:
    ids = ids_of(5000)
    hosts = [Host(url, f"h{i}", ids) for i in range(3)]
    for host in hosts:
        host.queue._epoch = ""
    epochs = {host.queue._seed(set(), hold=False) for host in hosts}  # three seedings racing: one wins
    assert len(epochs) == 1
    server = hosts[0].queue._client
    assert server.pipeline().llen(queue_keys(DIGEST).pending).execute() == [5000]


def test_seeding_100000_jobs_is_quick_and_complete(url, capsys) -> None:
    ids = ids_of(100_000)
    host = Host(url, "a", ids)
    began = time.perf_counter()
    host.queue.start()
    seconds = time.perf_counter() - began
    with capsys.disabled():
        print(f"\nseeding 100,000 jobs took {seconds:.2f} s")
    assert host.queue._client.pipeline().llen(queue_keys(DIGEST).pending).execute() == [100_000]
    assert [t.job_id for t in host.take(2)] == ids[:2]


def test_queues_of_different_digests_never_mix(url) -> None:
    a, b = Host(url, "a", ids_of(4)), Host(url, "b", ids_of(4)[::-1], digest="cd" * 16)
    a.queue.start()
    b.queue.start()
    assert [t.job_id for t in take_all(a)] == ids_of(4)
    assert [t.job_id for t in take_all(b)] == ids_of(4)[::-1]


def test_a_stale_completion_is_superseded_and_the_current_claim_wins(url) -> None:
    ids = ids_of(1)
    paused, other = Host(url, "paused", ids), Host(url, "other", ids)
    paused.queue.start()
    other.queue.start()
    (stale,) = paused.take(1)
    assert stale.token == 1
    time.sleep(LEASE + 0.1)  # the paused host renews nothing: its lease expires
    (current,) = take_all(other)
    assert current.job_id == stale.job_id and current.token == 2
    assert paused.finish([stale]) == [JobState.SUPERSEDED]
    assert other.finish([current]) == [JobState.DONE]
    assert other.queue.remaining() == 0
    assert any("not accepted" in s for s in paused.said)


def test_a_late_result_is_accepted_while_nobody_took_the_job(url) -> None:
    ids = ids_of(2)
    host = Host(url, "a", ids)
    host.queue.start()
    tasks = host.take(2)
    time.sleep(LEASE + 0.1)
    host.queue._next_renew = host.queue._next_poll = 0.0
    assert host.take(0) == []  # reclaims its own expired claims: both back in the queue, and the renewal re-owns them
    assert host.finish(tasks) == [JobState.DONE, JobState.DONE]
    assert host.queue.remaining() == 0


def test_renewed_claims_outlive_their_lease(url) -> None:
    ids = ids_of(1)
    holder, other = Host(url, "holder", ids), Host(url, "other", ids)
    holder.queue.start()
    other.queue.start()
    (task,) = holder.take(1)
    for _ in range(8):  # 0.8 s: more than two leases, renewed every quarter lease
        time.sleep(0.1)
        holder.take(0)
        assert other.take(1) == []
    assert holder.finish([task]) == [JobState.DONE]


def test_failures_count_across_hosts_against_retries(url) -> None:
    ids = ids_of(1)
    a, b = Host(url, "a", ids, retries=1), Host(url, "b", ids, retries=1)
    a.queue.start()
    b.queue.start()
    (first,) = a.take(1)
    assert a.finish([first], Outcome.ERROR) == [JobState.PENDING]
    assert first.job_id not in a.journal.state  # back in the shared queue: no longer held here
    (second,) = take_all(b)
    assert second.token == 2
    assert b.finish([second], Outcome.CRASHED) == [JobState.FAILED]
    assert b.queue.remaining() == 0 and b.queue.tally() == (1, 0, 1)


def test_release_puts_claims_back_at_the_head_at_once(url) -> None:
    ids = ids_of(5)
    a, b = Host(url, "a", ids), Host(url, "b", ids)
    a.queue.start()
    b.queue.start()
    tasks = a.take(2)
    a.queue.release(tasks)
    assert not a.journal.state
    assert [t.job_id for t in take_all(b, 2)] == ids[:2]


def test_done_is_final_only_after_the_commit(url) -> None:
    ids = ids_of(1)
    killed, other = Host(url, "killed", ids), Host(url, "other", ids)
    killed.queue.start()
    other.queue.start()
    (task,) = killed.take(1)
    assert killed.queue.settle([(task, Outcome.DONE)]) == [JobState.DONE]
    assert killed.queue.remaining() == 1  # not committed yet: a kill now leaves the job to run again
    time.sleep(LEASE + 0.1)
    (again,) = take_all(other)
    assert other.finish([again]) == [JobState.DONE]


def test_a_restarted_host_returns_its_predecessors_claims(url) -> None:
    ids = ids_of(3)
    before = Host(url, "a", ids)
    before.queue.start()
    before.take(2)
    before.die()
    after = Host(url, "a", ids, journal=before.journal, lease=60)  # same machine, same journal: its claims are pending there
    after.queue.start()
    assert not after.journal.state
    assert sorted(t.job_id for t in take_all(after, 3)) == ids


def test_journal_done_jobs_are_reported_and_conflicts_superseded(url) -> None:
    ids = ids_of(4)
    a = Host(url, "a", ids)
    a.queue.start()
    (task,) = a.take(1)
    a.finish([task])
    late = Host(url, "b", ids, journal=FakeJournal(done=[ids[0], ids[1]]))  # e.g. done while cut off from Redis
    late.queue.start()
    assert late.journal.superseded == [ids[0]]  # a's result was accepted first
    assert [t.job_id for t in take_all(a, 4)] == ids[2:]  # ids[1] is done (by b): never handed out


def test_a_second_live_run_of_one_machine_is_refused_and_one_silent_for_a_lease_is_not(url) -> None:
    """Two runs of one machine name would each take the jobs the queue credits to it for lost
    (see the end-to-end test in test_balance_hosts.py); a run silent for a whole lease (its
    host died elsewhere, or was cut off) no longer holds the name. The refused run's lease, which
    decides, is a minute: at 0.3 s, a test process descheduled that long between the two starts
    (a busy host) let the second run in."""
    ids = ids_of(3)
    first = Host(url, "a", ids)
    first.queue.start()
    with pytest.raises(UserError, match=r"another run of a is taking jobs from the shared queue at redis://.* on .* \(pid \d+\), in contact \d+\.\d s ago"):
        Host(url, "a", ids, lease=WHOLE_RUN).queue.start()
    Host(url, "b", ids).queue.start()  # another machine: welcome
    time.sleep(LEASE + 0.1)
    Host(url, "a", ids).queue.start()


def test_who_holds_a_machine_s_name_after_its_run(url) -> None:
    """A clean end frees the name at once, on any host (a Slurm task requeued onto another node
    after its SIGTERM was refused for a lease). A run that died frees it at once only where its
    end can be told: on this host, in this boot and pid namespace, its pid gone or taken since
    by a process that started at another time (a container restarted with the same pids). Where
    nothing can be told (another host, container or boot of the same host name), it holds the
    name until silent for a lease: a live run there must not be joined by a second. The second
    run's lease, which decides, is a minute: at 0.3 s, a test process descheduled that long (a
    busy host) let it in where it must be refused, and let it in "at once" whatever was told."""
    ids = ids_of(2)
    here, system, start = socket.gethostname(), this_system(), started_at(os.getpid())
    cases = {
        "ended cleanly (its process lives on here)": None,
        "died here, its pid since taken by another process": f"{here}:{os.getpid()}.{start + 1}.{system}",
        "died here, in another container of this host name": f"{here}:{os.getpid() + 10**6}.1.{'0' * 8}",
        "died on another host": f"node17:{os.getpid()}.{start}.{system}",
        "an older jobsplit's run": f"{here}:{os.getpid() + 10**6}",
    }
    for number, (case, process) in enumerate(cases.items()):
        machine = f"m{number}"
        first = Host(url, machine, ids)
        first.queue.start()
        if process is None:
            first.queue.close()
        else:
            first.die(f"{machine}/{process}-gone")
        if case.startswith(("ended cleanly", "died here, its pid")):
            Host(url, machine, ids, lease=WHOLE_RUN).queue.start()  # at once
        else:
            with pytest.raises(UserError, match=f"another run of {machine} is taking jobs"):
                Host(url, machine, ids, lease=WHOLE_RUN).queue.start()
    figures = balance.queue_figures(first.queue._client, DIGEST)
    assert figures is not None and 0 <= figures.last_contact["m0"] < 60  # a clean end's contact, as status --balance shows it


def test_a_fresh_journal_gives_back_what_redis_credited_to_its_machine(url) -> None:
    ids = ids_of(3)
    before = Host(url, "a", ids)
    before.queue.start()
    before.finish(take_all(before, 2))
    before.die()
    fresh = Host(url, "a", ids)  # --fresh: the old journal went to a backup folder
    fresh.queue.start()
    assert any("does not hold as done; they go back to the queue" in s for s in fresh.said)
    assert sorted(t.job_id for t in take_all(fresh, 3)) == ids


def test_retry_failed_puts_jobs_failed_anywhere_back(url) -> None:
    ids = ids_of(2)
    a = Host(url, "a", ids)
    a.queue.start()
    a.finish(take_all(a, 2), Outcome.ERROR)
    assert a.queue.tally() == (2, 0, 2)
    b = Host(url, "b", ids, retry_failed=True)
    b.queue.start()
    assert b.queue.tally() == (2, 0, 0)
    assert b.finish(take_all(b, 2)) == [JobState.DONE, JobState.DONE]


def test_redis_lost_mid_run_then_back_empty(redis_server) -> None:
    """The host that finds Redis back empty seeds it again, without what its journal holds as
    done, and hands out no job for a lease. Its lease is a minute: at 1 s, a test process
    descheduled that long between the seeding and the take that must find the hold (a busy
    host) got jobs."""
    server = redis_server.start()
    ids = ids_of(6)
    a, b = Host(server.url, "a", ids, lease=WHOLE_RUN), Host(server.url, "b", ids, lease=WHOLE_RUN)
    a.queue.start()
    b.queue.start()
    (done_before,) = a.take(1)
    a.finish([done_before])
    running = a.take(1)
    server.kill()
    assert a.finish(running) == [JobState.DONE]  # recorded here; Redis hears of it on return
    assert any("lost Redis" in s for s in a.said)
    assert a.take(1) == []
    server.start()  # back, empty
    deadline = time.monotonic() + 60  # a watchdog: retries back off to 5 s apart at most
    while a.queue._unavailable_since is not None and time.monotonic() < deadline:
        a.take(0)
        time.sleep(0.05)
    assert any("reconnected" in s for s in a.said)
    assert any("seeded the shared queue" in s and "no job is handed out for 60 s" in s for s in a.said)
    assert a.queue.tally() == (6, 2, 0)  # both done jobs reported from the journal
    assert a.take(5) == []  # the hold: every host may report first
    meta = a.queue._client.hgetall(a.queue._keys.meta)
    assert int(meta["hold_until"]) - int(meta["seeded"]) == 60_000  # one lease from the seeding
    assert sorted(a.queue._client.lrange(a.queue._keys.pending, 0, -1)) == ids[2:]  # what is handed out after it


def test_unreachable_wrong_password_and_malformed_urls(redis_server, monkeypatch) -> None:
    secret = "s3cret-pw"
    server = redis_server.start(password=secret)
    with pytest.raises(UserError, match=r"^cannot reach Redis at redis://127\.0\.0\.1:1/0 \(from --balance\)"):
        balance.connect(parse_url("redis://127.0.0.1:1/0", "--balance"), timeout=1)
    monkeypatch.setenv("REDIS_PASSWORD", "wrong")
    with pytest.raises(UserError, match="refused to let jobsplit in") as wrong:
        balance.connect(parse_url(f"redis://127.0.0.1:{server.port}/0", "--balance"))
    assert "wrong" not in str(wrong.value)
    monkeypatch.delenv("REDIS_PASSWORD")
    with pytest.raises(UserError, match="set REDIS_PASSWORD"):
        balance.connect(parse_url(f"redis://127.0.0.1:{server.port}/0", "--balance"))
    address = parse_url(server.url, "--balance")
    assert address.masked == f"redis://:***@127.0.0.1:{server.port}/0" and secret not in repr(address)
    balance.connect(address).client.close()
    for bad in ("redis//host:6379/0", "http://host/0", "redis://host:port/0", "redis://host:6379/zero", "redis://:pw@/0", "redis://h:1/0?x=1"):
        with pytest.raises(UserError, match=r"^--balance '.*' is not a Redis URL \(.*\); write redis://HOST:PORT/DB") as error:
            parse_url(bad, "--balance")
        assert ":pw@" not in str(error.value)


def test_a_queue_that_lost_its_waiting_jobs_is_seeded_again_not_waited_on(url) -> None:
    """Every job neither done nor failed waits in ``pending`` or is claimed. A queue where jobs
    are left but none waits or is claimed lost keys (deleted by hand, or evicted by Redis at its
    maxmemory): its hosts waited for ever, none running anything, saying nothing. The host that
    finds it so says what happened and seeds it again, as when Redis comes back empty."""
    ids = ids_of(6)
    a, b = Host(url, "a", ids, lease=WHOLE_RUN), Host(url, "b", ids, lease=WHOLE_RUN)
    a.queue.start()
    b.queue.start()
    (first,) = a.take(1)
    a.finish([first])
    running = b.take(1)
    client, keys = a.queue._client, a.queue._keys
    client.delete(keys.pending)  # the waiting jobs, as an eviction takes them
    b.finish(running)
    assert a.take(2) == []
    assert any("the shared queue at redis://" in s and "lost jobs: 4 are left, none waiting or claimed" in s for s in a.said), a.said
    a.take(0)  # seeds again, without what a's journal holds as done
    assert any("seeded the shared queue" in s and "no job is handed out for 60 s" in s for s in a.said), a.said
    b.queue._next_renew = 0.0
    while b.queue._unavailable_since is not None or b.queue._epoch != a.queue._epoch:
        b.take(0)  # finds the new queue, reports b's done job
    assert client.hgetall(keys.done) == {first.job_id: "a", running[0].job_id: "b"}
    client.hset(keys.meta, "hold_until", 0)  # the hold's end, a lease on
    assert sorted(t.job_id for t in take_all(a, 6)) == sorted(set(ids) - {first.job_id, running[0].job_id})


def test_a_server_that_evicts_any_key_when_full_is_named_at_the_start(url) -> None:
    """A cache's Redis (maxmemory-policy allkeys-lru) evicts the queue's keys as readily as any:
    the run started without a word of it, and jobs done by hosts that had ended ran twice."""
    ids = ids_of(2)
    quiet = Host(url, "a", ids)
    quiet.queue.start()
    assert not any("evicts" in s for s in quiet.said), quiet.said
    quiet.queue.close()
    client = quiet.queue._client
    client.config_set("maxmemory", "100mb")
    client.config_set("maxmemory-policy", "allkeys-lru")
    warned = Host(url, "b", ids)
    warned.queue.start()
    assert any(
        "evicts any key once its memory is full (maxmemory-policy allkeys-lru, maxmemory 100 MiB)" in s and "set maxmemory-policy to noeviction" in s for s in warned.said
    ), warned.said


@pytest.mark.parametrize("secret", ["Xq/7Zk", "Xq#7Zk", "Xq?7Zk", "Xq@7Zk"])
def test_a_password_with_a_reserved_character_is_never_shown(secret: str) -> None:
    """A generated password holds a '/' or '#' as often as not. Unencoded, it split the URL: the
    refusal showed the URL with the password whole (a '/'), or the start of it in the parser's
    complaint about the port ('#', '?'), and a working URL whose password holds an '@' had the
    part after it shown in the resume command. Now nothing of it shows, and the refusal says
    to percent-encode it or to pass it in REDIS_PASSWORD."""
    url = f"redis://:{secret}@127.0.0.1:6379/0"
    shown = balance.hide_passwords(f"Resume with: run --balance {url} --machine a")
    assert "Xq" not in shown and "7Zk" not in shown and shown.endswith("redis://:***@127.0.0.1:6379/0 --machine a"), shown
    if "@" in secret[2:3]:
        assert parse_url(url, "--balance").password == secret
        return
    with pytest.raises(UserError) as refused:
        parse_url(url, "--balance")
    assert "Xq" not in str(refused.value) and "7Zk" not in str(refused.value), refused.value
    assert "percent-encode it" in str(refused.value) and "REDIS_PASSWORD" in str(refused.value), refused.value


def test_redis_full_is_said_once_not_lost_and_found_at_every_retry(url) -> None:
    """A Redis at its maxmemory (noeviction) answers reads and refuses writes: the host's rejoin
    (reads only, for a host with nothing to claim again) passed, took it for back, and the next
    take failed again: "lost Redis", "reconnected after 0.1 s", ten times a second, for as long
    as the server was full, and the backoff never grew. Back is when a take passes."""
    ids = ids_of(3)
    a = Host(url, "a", ids)
    a.queue.start()
    (task,) = a.take(1)
    a.finish([task])
    client = a.queue._client
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", "1")
    rejoins = 0
    rejoin = a.queue._rejoin

    def counted() -> bool:
        nonlocal rejoins
        rejoins += 1
        return rejoin()

    a.queue._rejoin = counted  # type: ignore[method-assign]
    a.queue._next_renew = 0.0
    while rejoins < 5:
        a.take(0)
    lost = [s for s in a.said if "Redis at" in s and "is full" in s]
    assert len(lost) == 1 and "raise its maxmemory or free memory there" in lost[0], a.said
    assert not any("reconnected" in s for s in a.said), a.said
    client.config_set("maxmemory", "0")
    while a.queue._offline:
        a.take(0)
    assert sum("reconnected" in s for s in a.said) == 1, a.said
    assert [t.job_id for t in take_all(a, 3)] == ids[1:]


def test_a_host_that_seeds_beside_a_live_queue_of_another_plan_is_told(url) -> None:
    """A host of the study whose config.ini differs (``base = 0.020`` for ``0.02``) has another
    digest: it seeded a queue of its own beside the others' and ran the whole pool alone, both
    saying "100 of 100 done"; only merge-results told. Two studies may share a server: a note."""
    a = Host(url, "a", ids_of(2), lease=WHOLE_RUN)
    a.queue.start()
    b = Host(url, "b", ids_of(2), digest="cd" * 16, lease=WHOLE_RUN)
    b.queue.start()
    notes = [s for s in b.said if "also holds the queue of another plan" in s]
    assert len(notes) == 1 and f"(digest {'abab-' * 7}abab), from which a took jobs within a lease" in notes[0] and "digest --parts" in notes[0], b.said
    assert not any("another plan" in s for s in a.said), a.said
    a.queue.close()  # a run that ended is no one to be told of
    c = Host(url, "c", ids_of(2), digest="ef" * 16, lease=WHOLE_RUN)
    c.queue.start()
    assert [s for s in c.said if "another plan" in s] == [f"this Redis server also holds the queue of another plan (digest {'cdcd-' * 7}cdcd), from which b took jobs within a lease: if this host belongs to that study, its files differ from theirs (config.ini, header.csv, machines.json, the pool) and it runs the whole pool on its own; stop it, and compare `digest --parts` here and there"], c.said


def test_a_redis_full_as_the_run_starts_is_named_full_not_lost(url) -> None:
    """A Redis at its maxmemory (noeviction) when a run starts: it said "retrying with backoff",
    then at once "lost Redis ... while joining its queue; start again once it is back", of a
    server that was there all along and would never come "back" without its maxmemory raised.
    Now one sentence, that it is full and what to do; no retry that does not happen."""
    client = Host(url, "a", ids_of(2)).queue._client
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", "1")
    try:
        b = Host(url, "b", ids_of(2))
        with pytest.raises(UserError) as refused:
            b.queue.start()
    finally:
        client.config_set("maxmemory", "0")
    message = str(refused.value)
    assert "is full" in message and "raise its maxmemory or free memory there" in message, message
    assert "lost Redis" not in message and "once it is back" not in message, message
    assert not any("retrying" in s for s in b.said), b.said


def test_a_database_number_the_server_has_not_is_named_as_the_url_s(url) -> None:
    """``redis://HOST:6379/16`` on a server of the default 16 databases (0 to 15): it said the
    server "answered PING with an error (DB index is out of range); check the server's
    configuration", sending the user to a server that was fine, about a number in their URL."""
    server = parse_url(url, "--balance")
    wrong = url.rsplit("/", 1)[0] + "/16"
    with pytest.raises(UserError) as refused:
        balance.connect(parse_url(wrong, "--balance"))
    message = str(refused.value)
    assert message.startswith(f"Redis at redis://127.0.0.1:{server.port}/16 (from --balance) has no database 16"), message
    assert "databases" in message and "configuration" not in message, message


def test_a_redis_user_without_the_queue_s_commands_is_told_so_not_lost(url) -> None:
    """An ACL user the server's admin gave no scripting (``-@scripting``, a common default for
    application users): "lost Redis at ... while joining its queue; start again once it is
    back", of a server that answered every time, and nothing said of the permission it lacks."""
    admin = Host(url, "a", ids_of(2)).queue._client
    admin.execute_command("ACL", "SETUSER", "app", "on", ">pw", "~*", "&*", "+@all", "-@scripting")
    limited = url.replace("redis://", "redis://app:pw@")
    b = Host(limited, "b", ids_of(2))
    with pytest.raises(UserError) as refused:
        b.queue.start()
    message = str(refused.value)
    assert "no permissions" in message and "ACL" in message, message
    assert "lost Redis" not in message and "once it is back" not in message, message
