"""A shared Redis queue as the source of work: hosts take jobs as their workers free up.

Why lists, a lease sorted set and Lua, not Streams
    A job needs a claim that expires unless renewed, a fencing token, a failure count that
    decides retries, and "done" that outlives the claim. Streams with consumer groups give
    delivery counts and XAUTOCLAIM, but idle time (not a deadline) decides expiry, renewal is an
    XCLAIM per entry, and done/failed/retries would still need hashes beside the stream; the
    seeding order (longest first) would be spread over stream ids. Plain structures, changed
    only by Lua scripts (each one atomic on the server), say exactly what they mean, and every
    multi-step change is one script.

Keys (``jobsplit:{DIGEST}:...``: one queue per digest, so hosts of different plans never mix;
the braces keep a queue in one cluster slot):

``meta``      hash: ``epoch`` (random, new at every seeding), ``total`` (the pool's size),
              ``hold_until`` (server ms: no claims before; only after a reseeding), ``order``,
              ``seeded``, ``heard`` (server ms of the last take: a take that finds it more
              than half a lease ago, or ahead, moves the deadlines, see ``take``)
``pending``   list of job ids, taken from the head. Entries are dropped lazily: an id popped
              while done, failed or claimed is skipped, so nothing ever scans the list
``owner``     hash job -> ``machine/instance`` holding the claim now
``leases``    sorted set job -> deadline (server ms)
``token``     hash job -> delivery count: the fencing token of the newest claim
``failures``  hash job -> failed attempts (decides retries against the host's ``--retries``)
``done``      hash job -> the machine whose result was accepted
``failed``    hash job -> the machine where it failed for good
``stats``     hash: ``reclaimed``, ``reclaimed:<machine>``, ``superseded`` (for ``status``)
``hosts``     hash ``machine/host:pid.start.system-random`` (an instance, see balance.instance_name)
              -> last contact (server ms; negative once that run ended cleanly)

Protocol
    * Seeding: the first host builds the whole pool (longest first with ``cost=`` hints, else
      the plan's seeded order, minus what its journal holds as done) in a temporary list with
      pipelined RPUSHes, then one script renames it to ``pending`` and writes ``meta`` unless
      another host seeded first: others see no queue or the whole queue, never a part.
    * ``take`` (every tick of the runner; on the wire when a worker wants a job, when results
      await acknowledgement, or every quarter lease): one script acknowledges committed
      results, renews this host's leases (only for the current token, so a host that lost a
      claim learns it), moves every expired claim back to the head of ``pending`` (any host
      does this for all), and claims jobs (token + 1, owner, deadline): what the runner asked
      for, plus a spare one per worker while the unclaimed jobs are more than four times the
      claims of all hosts, so that most jobs start without waiting for a round trip and none
      waits on a busy host at the end.
    * ``settle``: accepted only for the current token. DONE of a claim this host renewed less
      than 3/4 lease ago needs no round trip (no other host can hold it); anything else asks.
      A job done elsewhere, or claimed again since (a host paused past its lease, then resumed)
      is SUPERSEDED: recorded here, not done. A failure counts against ``--retries``: PENDING
      goes to the tail of the queue.
    * DONE and FAILED become final in Redis only once the journal committed them: the
      recorder's ``on_commit`` calls :meth:`RedisQueue.committed`, which sends the
      acknowledgement at once on a connection of its own and reads the reply later, so the
      next job need not wait for it (once written to the socket it reaches Redis even if the
      host dies). A host killed before that left no trace in Redis: its lease expires and the
      job runs again; nothing is lost. Until then the claim is held and renewed.
    * ``release`` (Ctrl-C, a stopped worker, unused spares): back to the head of the queue at once.

Guarantees, and their limits
    * One run per machine name: ``done`` credits jobs to a machine, and a run reports its
      journal against that name (and hands back a killed predecessor's claims), so a second
      live run of the name is refused at its start (``_enter``); a run that ended cleanly, one
      of this host whose process ended, or one silent for a lease, does not hold the name.
    * Nothing recorded is lost: every host's journal is the truth about what it computed; when a
      host (re)joins, it reports its done jobs (``done`` is rebuilt from journals), and a result
      Redis credits to this machine but its journal lacks (a ``--fresh`` start) is queued again.
    * While Redis keeps its data, a job is done in exactly one journal: a late result of a
      stale claim is refused at ``settle``; one that reaches Redis only later (the host was
      cut off, or paused between commit and acknowledgement) and finds another host's result
      accepted is re-marked superseded in this journal (``Journal.supersede``), and leaves
      results.csv. The one gap: a host killed between its commit and the write of the
      acknowledgement (a write to Redis's socket, before results.csv is appended to) and never started again leaves a job that another host
      runs too; merge-results reports it in both folders.
    * Redis unreachable: running jobs finish and are recorded here; DONE is kept, failures are
      decided on this host's count; the host retries with backoff (at most a quarter lease
      apart) and says so. On return it reports what it recorded meanwhile.
    * Redis back empty (restarted without persistence): the first host to notice seeds again,
      without the jobs its journal holds as done, and no job is handed out for one lease, in
      which every live host reports its done jobs and re-adopts its running claims. A host
      that is not running then (finished, dead) cannot report: its done jobs run again
      elsewhere, and ``merge-results`` finds them in two folders (it keeps one row each and
      says so). Redis with persistence (``appendonly yes``) avoids this. A queue that lost
      some of its keys (deleted, or evicted at maxmemory: jobs left, none waiting or claimed)
      is dropped by the take that finds it so, and seeded again the same way.
    * Timing: leases are measured on the Redis server's clock only, so host clocks may differ.
"""

from __future__ import annotations

import secrets
import socket
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

from ..balance import Connection, instance_name, instance_process, machine_of, queue_digests, queue_keys, this_system
from ..children import ended, started_at
from ..clock import SYSTEM_CLOCK, Clock
from ..digest import format_digest
from ..errors import StorageError, UserError
from ..machines import MACHINES_FILE
from ..states import JobState, Outcome
from ..text import plural, size_text
from .base import Task

SEED_CHUNK = 2000
"""Job ids per RPUSH while seeding (pipelined: a round trip per pipeline, not per chunk)."""
SCRIPT_CHUNK = 1000
"""Job ids per script call when reporting a journal (bounds the time Redis is busy with one call)."""
FIRST_BACKOFF = 0.1
MAX_BACKOFF = 5.0
VALID_FOR = 0.75
"""A claim counts as certainly current for this fraction of a lease after the take that renewed
it was sent (Redis set its deadline later than that, on its own clock)."""
SEED_EXPIRY = 3600
"""A half-built seed list (its host died while seeding) disappears after this many seconds."""

_PRELUDE = """
local meta, pending, owner, leases, token, failures, done, failed, stats, hosts =
    KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local epoch = redis.call('HGET', meta, 'epoch')
if not epoch then return {'noqueue'} end
if epoch ~= ARGV[1] then return {'epoch', epoch} end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local function settled(job)
    return redis.call('HEXISTS', done, job) == 1 or redis.call('HEXISTS', failed, job) == 1
end
local function unclaim(job)
    redis.call('HDEL', owner, job)
    redis.call('ZREM', leases, job)
end
local function claim(job, me, lease)
    redis.call('HSET', owner, job, me)
    redis.call('ZADD', leases, now + lease, job)
end
local function requeue(job, head)
    if not settled(job) then
        redis.call(head and 'LPUSH' or 'RPUSH', pending, job)
    end
end
local function record_done(job, machine, conflicts)
    local by = redis.call('HGET', done, job)
    if not by then
        redis.call('HSET', done, job, machine)
        redis.call('HDEL', failed, job)
    elseif by ~= machine then
        table.insert(conflicts, job)
    end
end
local function acknowledge(me, machine, job, tok, verdict, conflicts)
    local mine = redis.call('HGET', token, job) == tok and (redis.call('HGET', owner, job) or me) == me
    if verdict == 'done' then
        record_done(job, machine, conflicts)
    elseif mine and redis.call('HEXISTS', done, job) == 0 then
        redis.call('HSETNX', failed, job, machine)
    end
    if mine then unclaim(job) end
end
local function figures()
    local d, f = redis.call('HLEN', done), redis.call('HLEN', failed)
    return {tonumber(redis.call('HGET', meta, 'total')) - d - f, d, f}
end
"""

_SCRIPTS = {
    # ARGV: epoch, me, machine, limit, spare, lease ms, count of acknowledgements, then as many
    # (job, token, verdict) committed to the journal, then (job, token) of every claim held
    "take": """
local me, machine, limit, spare, lease, acks = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local heard = tonumber(redis.call('HGET', meta, 'heard') or now)
if now - heard > lease / 2 or now < heard then
    -- No host took for half a lease (each renews every quarter): the server's clock stepped
    -- forward, or it was away; nobody could renew meanwhile, so the gap beyond a quarter lease is
    -- no claim's to lose (each take still ages the claims of a dead host by a quarter lease).
    -- Or the clock stepped back: every time it wrote lies that far ahead, claims and a hold too.
    local shift = now < heard and now - heard or now - heard - lease / 4
    for _, job in ipairs(redis.call('ZRANGE', leases, 0, -1)) do
        redis.call('ZINCRBY', leases, shift, job)
    end
    local held = redis.call('HGET', meta, 'hold_until')
    if held and now < heard then
        redis.call('HSET', meta, 'hold_until', tonumber(held) + now - heard)
    end
end
redis.call('HSET', meta, 'heard', now)
redis.call('HSET', hosts, me, now)
local conflicts = {}
for i = 8, 7 + 3 * acks, 3 do
    acknowledge(me, machine, ARGV[i], ARGV[i + 1], ARGV[i + 2], conflicts)
end
local lost = {}
for i = 8 + 3 * acks, #ARGV, 2 do
    local job, tok = ARGV[i], ARGV[i + 1]
    local holder = redis.call('HGET', owner, job)
    if redis.call('HGET', token, job) == tok and not settled(job) and (not holder or holder == me) then
        claim(job, me, lease)
    else
        table.insert(lost, job)
        table.insert(lost, tok)
    end
end
for _, job in ipairs(redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, 1000)) do
    local holder = redis.call('HGET', owner, job)
    unclaim(job)
    if not settled(job) then
        redis.call('LPUSH', pending, job)
        redis.call('HINCRBY', stats, 'reclaimed', 1)
        if holder then
            redis.call('HINCRBY', stats, 'reclaimed:' .. (string.match(holder, '^(.*)/') or holder), 1)
        end
    end
end
local claims = {}
local hold = tonumber(redis.call('HGET', meta, 'hold_until') or '0') - now
local claimed = redis.call('HLEN', owner)
if limit > 0 and figures()[1] - claimed > 4 * (claimed + spare) then
    limit = limit + spare  -- plenty left for everyone: a spare job per worker saves a round trip
end
if hold <= 0 then
    local skipped = 0
    while #claims < 2 * limit and skipped < 10000 do
        local job = redis.call('LPOP', pending)
        if not job then break end
        if settled(job) or redis.call('HEXISTS', owner, job) == 1 then
            skipped = skipped + 1
        else
            table.insert(claims, job)
            table.insert(claims, redis.call('HINCRBY', token, job, 1))
            claim(job, me, lease)
        end
    end
    local left = figures()[1]
    if #claims == 0 and left > 0 and redis.call('LLEN', pending) == 0 and redis.call('HLEN', owner) == 0 then
        -- Every job neither done nor failed waits or is claimed: none does, so keys were lost
        -- (deleted, or evicted at maxmemory), and every host would wait for ever. Drop the
        -- queue: as when Redis comes back empty, the hosts seed it again and report their journals.
        redis.call('DEL', meta)
        return {'lost', left}
    end
end
return {'ok', claims, lost, figures(), math.max(hold, 0), conflicts}
""",
    # ARGV: epoch, me, lease ms, then (job, token, "done" | "fail", retries) per ended attempt
    "settle": """
local me, lease = ARGV[2], tonumber(ARGV[3])
local verdicts = {}
for i = 4, #ARGV, 4 do
    local job, tok, kind, retries = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
    local holder = redis.call('HGET', owner, job)
    local verdict
    if settled(job) or redis.call('HGET', token, job) ~= tok or (holder and holder ~= me) then
        verdict = 'superseded'
        if kind == 'done' then redis.call('HINCRBY', stats, 'superseded', 1) end
    elseif kind == 'done' then
        verdict = 'done'
    elseif redis.call('HINCRBY', failures, job, 1) <= retries then
        verdict = 'retry'
        unclaim(job)
        redis.call('RPUSH', pending, job)
    else
        verdict = 'failed'
    end
    if verdict == 'done' or verdict == 'failed' then
        claim(job, me, lease)  -- held until the journal has it (see acknowledge)
    end
    table.insert(verdicts, verdict)
end
return {'ok', verdicts, figures()}
""",
    # ARGV: epoch, me, machine, then (job, token, "done" | "failed") committed to the journal
    "acknowledge": """
local conflicts = {}
for i = 4, #ARGV, 3 do
    acknowledge(ARGV[2], ARGV[3], ARGV[i], ARGV[i + 1], ARGV[i + 2], conflicts)
end
return {'ok', conflicts, figures()}
""",
    # ARGV: epoch, me, then (job, token, "1" to count a failure | "0") handed back
    "release": """
local me = ARGV[2]
for i = #ARGV - 2, 3, -3 do  -- backwards: LPUSHed one by one, the jobs keep their order at the head
    local job, tok, failure = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    if redis.call('HGET', token, job) == tok and redis.call('HGET', owner, job) == me then
        unclaim(job)
        if failure == '1' then redis.call('HINCRBY', failures, job, 1) end
        requeue(job, failure ~= '1')
    end
end
return {'ok', figures()}
""",
    # ARGV: epoch, me, machine, then jobs a killed run of this machine held: back to the queue now
    "disown": """
local me, prefix = ARGV[2], ARGV[3] .. '/'
local count = 0
for i = 4, #ARGV do
    local job = ARGV[i]
    local holder = redis.call('HGET', owner, job)
    if holder and holder ~= me and string.sub(holder, 1, #prefix) == prefix then
        unclaim(job)
        requeue(job, true)
        count = count + 1
    end
end
return {'ok', count}
""",
    # ARGV: epoch, machine, "done" | "failed", then jobs this machine's journal holds so
    "report": """
local machine, kind = ARGV[2], ARGV[3]
local conflicts = {}
for i = 4, #ARGV do
    local job = ARGV[i]
    if kind == 'done' then
        record_done(job, machine, conflicts)
    elseif redis.call('HEXISTS', done, job) == 0 and redis.call('HEXISTS', owner, job) == 0 then
        redis.call('HSETNX', failed, job, machine)
    end
end
return {'ok', conflicts}
""",
    # ARGV: epoch, machine, then jobs Redis credits to this machine that its journal lacks
    "undo": """
for i = 3, #ARGV do
    if redis.call('HGET', done, ARGV[i]) == ARGV[2] then
        redis.call('HDEL', done, ARGV[i])
        redis.call('LPUSH', pending, ARGV[i])
    end
end
return {'ok'}
""",
    # ARGV: epoch, me, lease ms, then jobs running here when Redis lost the queue: claim them again
    "adopt": """
local me, lease = ARGV[2], tonumber(ARGV[3])
local tokens = {}
for i = 4, #ARGV do
    local job = ARGV[i]
    local holder = redis.call('HGET', owner, job)
    if settled(job) or (holder and holder ~= me) then
        table.insert(tokens, 0)
    else
        if holder then
            table.insert(tokens, tonumber(redis.call('HGET', token, job)))
        else
            table.insert(tokens, redis.call('HINCRBY', token, job, 1))
        end
        claim(job, me, lease)
    end
end
return {'ok', tokens}
""",
    # ARGV: epoch (--retry-failed): every job failed for good goes back to the queue
    "revive": """
local jobs = redis.call('HKEYS', failed)
for _, job in ipairs(jobs) do
    redis.call('HDEL', failed, job)
    redis.call('HDEL', failures, job)
    redis.call('RPUSH', pending, job)
end
return {'ok', #jobs}
""",
}

_SEED = """
local meta, seed = KEYS[1], KEYS[11]
local current = redis.call('HGET', meta, 'epoch')
if current then
    redis.call('DEL', seed)
    return {'joined', current}
end
for i = 2, 10 do redis.call('DEL', KEYS[i]) end
if redis.call('EXISTS', seed) == 1 then
    redis.call('RENAME', seed, KEYS[2])
    redis.call('PERSIST', KEYS[2])
end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('HSET', meta, 'epoch', ARGV[1], 'total', ARGV[2], 'order', ARGV[4], 'seeded', now)
if tonumber(ARGV[3]) > 0 then
    redis.call('HSET', meta, 'hold_until', now + tonumber(ARGV[3]))
end
return {'seeded', ARGV[1]}
"""
"""KEYS: the queue's keys, then the seed list. ARGV: new epoch, pool size, hold ms, order name.
Seeds only where no queue exists (the first host, or Redis came back empty). A hold of 0 (the
first host's) writes no ``hold_until``: written as the seeding time, a step back of the server's
clock by X (an NTP correction) made it X in the future, and no host got a job for X, told that
Redis had lost the queue."""

_ENTER = """
local hosts, me, prefix, lease = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
local gone = {}
for i = 4, #ARGV do gone[ARGV[i]] = true end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local contacts = redis.call('HGETALL', hosts)
for i = 1, #contacts, 2 do
    local who, at = contacts[i], tonumber(contacts[i + 1])
    if at > now then  -- written before the server's clock stepped back: heard of now, silent from here on
        at = now
        redis.call('HSET', hosts, who, now)
    end
    if who ~= me and not gone[who] and string.sub(who, 1, #prefix) == prefix and now - at < lease then
        return {'taken', who, now - at}
    end
end
for i = 4, #ARGV do redis.call('HDEL', hosts, ARGV[i]) end
redis.call('HSET', hosts, me, now)
return {'ok'}
"""
"""KEYS: the queue's hosts. ARGV: this instance, its machine's prefix (``machine/``), the lease
in ms, then the instances of this machine known to be gone (processes of this host that ended:
dropped). Enters this instance unless another of its machine was in contact less than a lease
ago: in one step, so two runs of one name that start together cannot both enter. A run that
ended cleanly left its contact negative (see _LEAVE): long ago, to this test."""

_LEAVE = """
local clock = redis.call('TIME')
redis.call('HSET', KEYS[1], ARGV[1], -(tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)))
return 1
"""
"""KEYS: the queue's hosts. ARGV: this instance. Its last contact, now, as a negative number: the
run ended (``status --balance`` shows its magnitude), so it holds its machine's name no longer."""

_STATES = {"done": JobState.DONE, "failed": JobState.FAILED, "retry": JobState.PENDING, "superseded": JobState.SUPERSEDED}


class Holdings(Protocol):
    """What the queue writes to this machine's journal: the jobs it holds (see ``Journal``)."""

    def hold(self, job_ids: Sequence[str]) -> dict[str, int]: ...
    def unhold(self, job_ids: Iterable[str]) -> None: ...
    def supersede(self, job_ids: Sequence[str]) -> None: ...
    def states(self) -> Iterator[tuple[str, str]]: ...


class _Unavailable(Exception):
    """Redis cannot be used now (unreachable, or it lost the queue): the caller goes on without it."""


class RedisQueue:
    """The pool's jobs through a shared Redis queue (see the module docstring)."""

    name = "redis"

    def __init__(
        self,
        connection: Connection,
        *,
        digest: str,
        machine: str,
        ids: Sequence[str],
        seed_order: Callable[[], Sequence[int]],
        order_name: str,
        lease: float,
        retries: int,
        retry_failed: bool,
        workers: int,
        holdings: Holdings,
        say: Callable[[str], None],
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._conn, self._client, self._address = connection, connection.client, connection.address
        self._digest, self._keys = digest, queue_keys(digest)
        self._scripts = {name: self._client.register_script(_PRELUDE + body) for name, body in _SCRIPTS.items()}
        self._seed_script = self._client.register_script(_SEED)
        self._enter_script, self._leave_script = self._client.register_script(_ENTER), self._client.register_script(_LEAVE)
        self.machine, self.me = machine, instance_name(machine)
        self._ids = ids
        self._position = {job_id: position for position, job_id in enumerate(ids)}
        self._seed_order, self._order_name = seed_order, order_name
        self._lease, self._lease_ms = lease, int(lease * 1000)
        self._retries, self._retry_failed, self._workers = retries, retry_failed, workers
        self._holdings, self._say, self._clock = holdings, say, clock
        self._poll = min(0.5, lease / 8)
        self._max_backoff = min(MAX_BACKOFF, lease / 4)
        self._epoch = ""
        self._claims: dict[tuple[str, int], int] = {}
        """(job id, the task's token) -> the claim's token in Redis (new after a re-adoption)."""
        self._lost: set[tuple[str, int]] = set()
        """Claims Redis gave to another host: no longer renewed, their result will be superseded."""
        self._verdicts: dict[str, tuple[int, str]] = {}
        """Settled DONE or FAILED, not committed to the journal yet: job -> (token, verdict)."""
        self._acks: list[tuple[str, int, str]] = []
        """Committed, not yet acknowledged to Redis (it was unreachable)."""
        self._sent: deque[list[tuple[str, int, str]]] = deque()
        """Acknowledgements written to the side connection, whose replies are not read yet."""
        self._releases: list[tuple[str, int, bool]] = []
        """Handed back while Redis was unreachable: (job, token, count a failure)."""
        self._spare: deque[Task] = deque()
        """Claimed ahead, not handed to the runner yet (see the take script)."""
        self._issued: dict[str, int] = {}
        self._local_failures: Counter[str] = Counter()
        self._figures = (len(ids), 0, 0)
        """(remaining, done, failed) of the whole pool, as Redis last said."""
        self._unavailable_since: float | None = None
        self._offline = False
        """Redis was unreachable or refused a write, and no take has passed since (see _rejoin)."""
        self._offline_since = 0.0
        self._started = False
        """start() has passed: before, Redis lost or full ends the run (start's UserError), and no
        retry is announced that would not happen."""
        self._trouble = ""
        """Why Redis was last found unreachable, or refused a command (its error, masked)."""
        self._retry_at = 0.0
        self._backoff = FIRST_BACKOFF
        self._next_renew = 0.0
        self._next_poll = 0.0
        self._renewed_at = float("-inf")
        """When the last take that renewed every claim was sent (this host's clock)."""
        self._hold_said = ""
        self.corrected = 0
        """Done jobs of this journal re-marked superseded (another host's result came first)."""

    # --- the source protocol -------------------------------------------------------------

    def take(self, limit: int) -> list[Task]:
        now = self._clock.monotonic()
        self._read_replies(wait=limit == 0)
        ready = [self._spare.popleft() for _ in range(min(limit, len(self._spare)))]  # claimed: they may run even if Redis is away
        limit -= len(ready)
        if self._unavailable_since is not None and (now < self._retry_at or not self._rejoin()):
            return ready
        asking = limit > 0 and now >= self._next_poll
        if not asking and not self._acks and now < self._next_renew:
            return ready
        renew = [(key[0], token) for key, token in self._claims.items() if key not in self._lost]
        renew += [(job, token) for job, (token, _) in self._verdicts.items()]
        acks = self._acks[:SCRIPT_CHUNK]
        try:
            _, claims, lost, figures, hold, conflicts = self._call(
                "take", self.me, self.machine, limit if asking else 0, self._workers, self._lease_ms, len(acks), *_flat(acks), *_flat(renew)
            )
        except _Unavailable:
            return ready
        del self._acks[: len(acks)]
        if self._offline:
            self._offline = False
            self._say(f"reconnected to Redis at {self._address.masked} after {now - self._offline_since:.1f} s")
        self._renewed_at = now
        self._next_renew = now + self._lease / 4
        self._figures = _figures(figures)
        self._supersede(conflicts, "while Redis could not hear from this host")
        self._mark_lost(list(zip(lost[::2], map(int, lost[1::2]))))
        if hold and self._hold_said != self._epoch:
            self._hold_said = self._epoch
            self._say(f"the queue was seeded again by a host with earlier results (had Redis lost it?): no job is handed out for {hold / 1000:.1f} s, while every host reports what it holds")
        pairs = list(zip(claims[::2], map(int, claims[1::2])))
        tasks = self._hold(pairs) if pairs else []
        if asking:  # a queue that gave fewer than asked is asked again only after the poll interval
            self._next_poll = now if len(tasks) >= limit else now + self._poll
        self._spare.extend(tasks[limit:])
        return ready + tasks[:limit]

    def settle(self, ended: Sequence[tuple[Task, Outcome]]) -> list[JobState]:
        """DONE of a claim whose lease is certainly still valid needs no round trip: nobody else
        can hold the job, and the acknowledgement after the commit settles any race. Failures,
        and results of claims that may have lapsed, ask Redis."""
        fresh = self._unavailable_since is None and self._clock.monotonic() < self._renewed_at + VALID_FOR * self._lease
        items, verdicts, ask = [], [], []
        for task, outcome in ended:
            key = (task.job_id, task.token)
            lapsed = key in self._lost
            self._lost.discard(key)
            kind = "done" if outcome == Outcome.DONE else "fail"
            items.append((task.job_id, self._claims.pop(key, task.token), kind))
            verdicts.append("done" if kind == "done" and fresh and not lapsed else "")
            if not verdicts[-1]:
                ask.append(len(items) - 1)
        if ask and self._unavailable_since is None:
            try:
                _, answers, figures = self._call("settle", self.me, self._lease_ms, *_flat((*items[i], self._retries) for i in ask))
                self._figures = _figures(figures)
                for i, verdict in zip(ask, answers):
                    verdicts[i] = verdict
            except _Unavailable:
                pass
        for i in ask:
            verdicts[i] = verdicts[i] or self._decide_alone(*items[i])
        superseded, retried = [], []
        for (job, token, _), verdict in zip(items, verdicts):
            if verdict in ("done", "failed"):
                self._verdicts[job] = (token, verdict)
            elif verdict == "retry":
                retried.append(job)
            else:
                superseded.append(job)
        if retried:
            self._unhold(retried)
        if superseded:
            self._say(
                f"{plural(len(superseded), 'result')} not accepted ({', '.join(superseded[:10])}{' ...' if len(superseded) > 10 else ''}): the claim had expired and another host took "
                "the job (this host was paused or cut off past its lease); recorded here as superseded"
            )
        return [_STATES[verdict] for verdict in verdicts]

    def release(self, tasks: Iterable[Task]) -> None:
        items = []
        for task in tasks:
            key = (task.job_id, task.token)
            self._lost.discard(key)
            items.append((task.job_id, self._claims.pop(key, task.token), False))
        if not items:
            return
        self._unhold([job for job, _, _ in items])
        self._send_releases(items)

    def remaining(self) -> int:
        return self._figures[0]

    # --- beyond the protocol: the journal's commits, the display, the end -------------------

    def committed(self, attempts: Iterable[tuple[str, str]]) -> None:
        """The journal committed these attempts, (job id, state): make their DONE or FAILED final in Redis."""
        for job_id, state in attempts:
            verdict = self._verdicts.get(job_id)
            if verdict is not None and state in (JobState.DONE, JobState.FAILED):
                del self._verdicts[job_id]
                self._acks.append((job_id, *verdict))
        if self._acks and self._unavailable_since is None:
            self._write_acks()

    def tally(self) -> tuple[int, int, int]:
        """(pool size, done, failed) of the whole pool, as Redis last said."""
        remaining, done, failed = self._figures
        return remaining + done + failed, done, failed

    def start(self) -> None:
        """Join the queue (seed it if there is none): called once, before the run."""
        held = [job for job, state in self._holdings.states() if state in (JobState.PENDING, JobState.RUNNING)]
        returned = 0
        self._warn_of_eviction()
        try:
            self._enter()
            self._join(first=True)
            for chunk in _chunks(held, SCRIPT_CHUNK):
                returned += self._call("disown", self.me, self.machine, *chunk)[1]
            self.take(0)  # the pool's figures
        except _Unavailable:
            where, why = f"Redis at {self._address.masked} (from {self._address.source})", self._trouble
            # A server there all along, which refuses: it is not coming "back" until its settings change.
            if "maxmemory" in why:
                raise UserError(f"{where} is full and refuses the queue's writes ({why}) as this run joins its queue: raise its maxmemory or free memory there, then start again") from None
            if "no permissions" in why:  # an ACL user without scripting (-@scripting), or without some keys
                raise UserError(
                    f"{where} refuses this user a command of the queue ({why}): the queue runs Lua scripts on keys named jobsplit:*; "
                    "have the server's ACL give that user +@all (or +@scripting +@write +@read) on ~jobsplit:*, or use another user"
                ) from None
            raise UserError(f"lost {where} while joining its queue{f' ({why})' if why else ''}; start again once it is back") from None
        self._started = True
        if held:
            self._holdings.unhold(held)  # a killed run's claims: back in the queue, no longer this machine's
        if returned:
            self._say(f"returned {plural(returned, 'claim')} of this machine's previous run (killed?) to the queue")

    def close(self) -> None:
        """Hand back the spare claims, acknowledge what is left if Redis is there, disconnect."""
        if self._spare:
            self.release(list(self._spare))
            self._spare.clear()
        self._read_replies(wait=True)
        if self._acks and self._unavailable_since is None:
            self._send_acks()
        try:
            self._leave_script(keys=[self._keys.hosts], args=[self.me])
        except self._conn.lost:
            pass  # Redis is away: this run stops counting one lease after its last contact
        self._conn.close()

    # --- joining, seeding, reconnecting --------------------------------------------------

    def _warn_of_eviction(self) -> None:
        """Say so where the server may evict any key once full (``maxmemory-policy allkeys-*``, as
        a cache's): it takes the queue's keys as readily as others', and the hosts must seed the
        queue again (see the module docstring), where jobs done by hosts no longer running run
        twice. A server that will not say (INFO refused) is left alone."""
        try:
            memory = self._client.info("memory")
        except self._conn.lost:
            return
        policy, limit = str(memory.get("maxmemory_policy", "")), int(memory.get("maxmemory", 0) or 0)
        if limit and policy.startswith("allkeys-"):
            self._say(
                f"Redis at {self._address.masked} evicts any key once its memory is full (maxmemory-policy {policy}, maxmemory "
                f"{size_text(limit)}), the queue's too: the hosts then seed it again, and the jobs of hosts no longer running run twice; "
                "set maxmemory-policy to noeviction (or volatile-lru) on that server, or give the queue a server of its own"
            )

    def _enter(self) -> None:
        """Refuse to run while another run of this machine takes jobs from the queue (another
        host given the same name, or the same command from another folder): the queue credits
        done jobs to a machine, and each run would take the other's for lost and run them again,
        and hand back its claims as a killed run's. A run that ended cleanly does not count (see
        _LEAVE), nor one of this host whose process has ended (a crash, just restarted); one that
        died elsewhere (another host, container or boot, where its pid says nothing) counts
        until it has been silent for a lease."""
        hosts, prefix = self._keys.hosts, f"{self.machine}/"
        try:
            contacts = self._client.hgetall(hosts)
            gone = [who for who in contacts if who.startswith(prefix) and _ended_here(who)]
            reply = self._enter_script(keys=[hosts], args=[self.me, prefix, self._lease_ms, *gone])
        except self._conn.lost as exc:
            self._unreachable(exc)
            raise _Unavailable from None
        if reply[0] == "taken":
            other, ago = str(reply[1]), int(reply[2]) / 1000
            where = f" on {process.host} (pid {process.pid})" if (process := instance_process(other)) else ""
            raise UserError(
                f"another run of {self.machine} is taking jobs from the shared queue at {self._address.masked}{where}, "
                f"in contact {ago:.1f} s ago; give each host its own name in {MACHINES_FILE}, or wait for that run to end "
                f"(a run that died stops counting one lease, {self._lease:g} s, after its last contact)"
            )

    def _join(self, *, first: bool) -> None:
        """Report this journal to the queue (seeding it if Redis has none); after a loss, also
        claim again the jobs running here."""
        states = list(self._holdings.states())
        done = [job for job, state in states if state == JobState.DONE]
        failed = [job for job, state in states if state == JobState.FAILED]
        revive = first and self._retry_failed
        try:
            epoch = self._client.hget(self._keys.meta, "epoch")
        except self._conn.lost as exc:
            self._unreachable(exc)
            raise _Unavailable from None
        if epoch is None:
            epoch = self._seed(set(done) | (set() if revive else set(failed)), hold=not first or bool(done or failed))
        self._epoch = epoch
        conflicts = []
        for chunk in _chunks(done, SCRIPT_CHUNK):
            conflicts += self._call("report", self.machine, "done", *chunk)[1]
        if revive:
            self._holdings.unhold(failed)
            self._call("revive")
        else:
            for chunk in _chunks(failed, SCRIPT_CHUNK):
                self._call("report", self.machine, "failed", *chunk)
        if first:
            self._undo_foreign(set(done))
        else:
            self._adopt()
        self._supersede(conflicts, "when this host reported its journal")

    def _seed(self, exclude: set[str], *, hold: bool) -> str:
        """Seed the queue in one atomic step (unless another host just did); returns the epoch."""
        ids = [self._ids[p] for p in self._seed_order() if self._ids[p] not in exclude]
        seed_key = f"{self._keys.meta.rpartition(':')[0]}:seed:{secrets.token_hex(8)}"
        hold_ms = self._lease_ms if hold else 0
        try:
            pipe = self._client.pipeline(transaction=False)
            for chunk in _chunks(ids, SEED_CHUNK):
                pipe.rpush(seed_key, *chunk)
            if ids:
                pipe.expire(seed_key, SEED_EXPIRY)
            pipe.execute()
            status, epoch = self._seed_script(keys=[*self._keys, seed_key], args=[secrets.token_hex(8), len(self._ids), hold_ms, self._order_name])
        except self._conn.lost as exc:
            self._unreachable(exc)
            raise _Unavailable from None
        if status == "seeded":
            what = f"seeded the shared queue at {self._address.masked} with {plural(len(ids), 'job')} ({self._order_name})"
            if exclude:
                what += f", leaving out the {len(exclude)} this machine's journal holds as done or failed"
            if hold_ms:
                self._hold_said = str(epoch)
                what += f"; no job is handed out for {self._lease:g} s, while every host reports what it holds"
            self._say(what)
            if not self._epoch:  # this study's first seeding, not a reseeding
                for digest, machines in self._other_live_queues():
                    self._say(
                        f"this Redis server also holds the queue of another plan (digest {format_digest(digest)}), from which "
                        f"{', '.join(machines)} took jobs within a lease: if this host belongs to that study, its files differ from "
                        "theirs (config.ini, header.csv, machines.json, the pool) and it runs the whole pool on its own; stop it, "
                        "and compare `digest --parts` here and there"
                    )
        return str(epoch)

    def _other_live_queues(self) -> list[tuple[str, list[str]]]:
        """The queues of other digests on this server with a run in contact less than a lease ago,
        and those runs' machines: a host of the same study whose files differ (a config value
        written otherwise) seeds a queue of its own, and only merge-results told."""
        try:
            digests = [digest for digest in queue_digests(self._client) if digest != self._digest]
            if not digests:
                return []
            pipe = self._client.pipeline(transaction=False)
            for digest in digests:
                pipe.hgetall(queue_keys(digest).hosts)
            pipe.time()
            *contacts, (seconds, micros) = pipe.execute()
        except self._conn.lost:
            return []
        now = int(seconds) * 1000 + int(micros) // 1000
        found = []
        for digest, hosts in zip(digests, contacts):
            machines = sorted({machine_of(who) for who, at in hosts.items() if 0 <= now - int(at) < self._lease_ms})  # negative: ended (see _LEAVE)
            if machines:
                found.append((digest, machines))
        return found

    def _undo_foreign(self, done_here: set[str]) -> None:
        """Jobs Redis credits to this machine but its journal lacks (a --fresh start, a lost
        journal) go back to the queue: the journal is the truth about what this machine did."""
        try:
            credited = self._client.hgetall(self._keys.done)
        except self._conn.lost as exc:
            self._unreachable(exc)
            raise _Unavailable from None
        lacking = [job for job, machine in credited.items() if machine == self.machine and job not in done_here]
        for chunk in _chunks(lacking, SCRIPT_CHUNK):
            self._call("undo", self.machine, *chunk)
        if lacking:
            self._say(f"the queue credited {plural(len(lacking), 'job')} to {self.machine} that its journal does not hold as done; they go back to the queue")

    def _adopt(self) -> None:
        """After Redis lost the queue: claim again the jobs on this host's workers and those
        awaiting acknowledgement."""
        keys = list(self._claims) + [(job, -1) for job in self._verdicts]
        jobs = [job for job, _ in keys]
        tokens: list[int] = []
        for chunk in _chunks(jobs, SCRIPT_CHUNK):
            tokens += self._call("adopt", self.me, self._lease_ms, *chunk)[1]
        for key, token in zip(keys, tokens):
            job = key[0]
            if key[1] == -1:
                self._verdicts[job] = (int(token), self._verdicts[job][1])
            elif token:
                self._claims[key] = int(token)
            else:
                self._lost.add(key)

    def _rejoin(self) -> bool:
        """Redis was unreachable or had lost the queue: try again now. True once back."""
        try:
            self._join(first=False)
        except _Unavailable:
            return False
        self._unavailable_since = None  # still offline until a take passes: a full Redis answers the join's reads, not a take's writes
        releases, self._releases = self._releases, []
        if releases:
            self._send_releases(releases)
        if self._acks:
            self._send_acks()
        self._next_renew = self._next_poll = 0.0
        return self._unavailable_since is None

    # --- talking to Redis ----------------------------------------------------------------

    def _call(self, name: str, *args: str | int) -> Any:
        """Run a script; Redis unreachable, or without this epoch's queue, raises _Unavailable."""
        try:
            reply = self._scripts[name](keys=self._keys, args=[self._epoch, *args])
        except self._conn.lost as exc:
            self._unreachable(exc)
            raise _Unavailable from None
        if reply[0] == "lost":
            self._say(
                f"the shared queue at {self._address.masked} lost jobs: {int(reply[1])} are left, none waiting or claimed "
                "(its keys were deleted, or evicted by Redis at its maxmemory); it is seeded again from the hosts' journals"
            )
        if reply[0] != "ok":  # the queue is gone (Redis came back empty, or lost jobs) or was seeded again
            if self._unavailable_since is None:
                self._unavailable_since, self._retry_at = self._clock.monotonic(), 0.0
            raise _Unavailable
        return reply

    def _unreachable(self, exc: BaseException) -> None:
        now = self._clock.monotonic()
        self._unavailable_since = self._unavailable_since or now
        if not self._offline:
            self._offline, self._offline_since = True, now
            self._backoff = FIRST_BACKOFF
            reason = self._address.mask(str(exc)).rstrip(".") or type(exc).__name__
            self._trouble = reason
            what = (
                f"Redis at {self._address.masked} is full and refuses the queue's writes ({reason}): raise its maxmemory or free memory there"
                if "maxmemory" in reason
                else f"lost Redis at {self._address.masked} ({reason})"
            )
            if self._started:  # else start() ends the run, saying why
                self._say(f"{what}; the running jobs go on and are recorded here; retrying with backoff, every {self._max_backoff:g} s at most")
        self._retry_at = now + self._backoff
        self._backoff = min(self._backoff * 2, self._max_backoff)

    def _send_acks(self) -> None:
        acks = self._acks
        conflicts = []
        try:
            for chunk in _chunks(acks, SCRIPT_CHUNK):
                _, found, figures = self._call("acknowledge", self.me, self.machine, *_flat(chunk))
                conflicts += found
                self._figures = _figures(figures)
                del acks[: len(chunk)]
        except _Unavailable:
            pass
        self._supersede(conflicts, "while Redis could not hear from this host")

    def _write_acks(self) -> None:
        """Send the acknowledgements without waiting for Redis to answer (see _read_replies)."""
        script = _PRELUDE + _SCRIPTS["acknowledge"]
        while self._acks:
            chunk = self._acks[:SCRIPT_CHUNK]
            try:
                self._conn.side.send_command("EVAL", script, len(self._keys), *self._keys, self._epoch, self.me, self.machine, *_flat(chunk))
            except self._conn.lost as exc:
                self._side_failed(exc)
                return
            del self._acks[: len(chunk)]
            self._sent.append(chunk)

    def _read_replies(self, *, wait: bool) -> None:
        """Read the answers to acknowledgements sent earlier: those there already, or (``wait``) all."""
        side = self._conn.side
        try:
            while self._sent and (wait or side.can_read(0)):
                reply = side.read_response()
                chunk = self._sent.popleft()
                if reply[0] != "ok":  # the queue is gone: acknowledge again once rejoined
                    self._acks[:0] = chunk
                    if self._unavailable_since is None:
                        self._unavailable_since, self._retry_at = self._clock.monotonic(), 0.0
                    continue
                _, conflicts, figures = reply
                self._figures = _figures(figures)
                self._supersede(conflicts, "while Redis could not hear from this host")
        except self._conn.lost as exc:
            self._side_failed(exc)

    def _side_failed(self, exc: BaseException) -> None:
        """Unanswered acknowledgements are sent again after reconnecting (they are idempotent)."""
        for chunk in reversed(self._sent):
            self._acks[:0] = chunk
        self._sent.clear()
        self._conn.side.disconnect()
        self._unreachable(exc)

    def _send_releases(self, items: list[tuple[str, int, bool]]) -> None:
        if self._unavailable_since is None:
            try:
                for chunk in _chunks(items, SCRIPT_CHUNK):
                    self._figures = _figures(self._call("release", self.me, *_flat((j, t, int(f)) for j, t, f in chunk))[1])
                return
            except _Unavailable:
                pass
        self._releases += items

    # --- local bookkeeping ---------------------------------------------------------------

    def _hold(self, pairs: list[tuple[str, int]]) -> list[Task]:
        """Record claimed jobs as this machine's and make their tasks."""
        last = self._holdings.hold([job for job, _ in pairs])
        tasks = []
        for job, token in pairs:
            attempt = max(last.get(job, 0), self._issued.get(job, 0)) + 1
            self._issued[job] = attempt
            self._claims[(job, token)] = token
            tasks.append(Task(job, self._position[job], attempt, token))
        return tasks

    def _unhold(self, jobs: list[str]) -> None:
        """Drop jobs from the journal's holdings unless another claim of the same job is on a worker."""
        still = {job for job, _ in self._claims}
        try:
            self._holdings.unhold([job for job in jobs if job not in still and job not in self._verdicts])
        except StorageError:
            pass  # a full disk, while stopping: the next start hands back what the journal still holds

    def _mark_lost(self, lost: list[tuple[str, int]]) -> None:
        if not lost:
            return
        by_token = {(key[0], token): key for key, token in self._claims.items()}
        for item in lost:
            key = by_token.get(item)
            if key is not None:
                self._lost.add(key)

    def _decide_alone(self, job: str, token: int, kind: str) -> str:
        """A verdict while Redis is unreachable: DONE stands (it is recorded here, and reported
        on return); a failure is retried while this host's own count allows."""
        if kind == "done":
            return "done"
        self._local_failures[job] += 1
        if self._local_failures[job] <= self._retries:
            self._releases.append((job, token, True))
            return "retry"
        return "failed"

    def _supersede(self, jobs: list[str], when: str) -> None:
        if not jobs:
            return
        self._holdings.supersede(jobs)
        self.corrected += len(jobs)
        self._say(
            f"{plural(len(jobs), 'job')} done here had also been done by another host {when} ({', '.join(jobs[:10])}"
            f"{' ...' if len(jobs) > 10 else ''}); the queue keeps the other result, this journal now records these as superseded"
        )


def _ended_here(instance: str) -> bool:
    """Whether ``instance`` was a process of this host, boot and pid namespace that has ended (its
    pid gone, or taken since by a process that started at another time). Elsewhere nothing can
    be told from its pid: it has not."""
    process = instance_process(instance)
    if process is None or process.host != socket.gethostname() or not process.system or process.system != this_system():
        return False
    return ended(process.pid) or (process.start is not None and started_at(process.pid) != process.start)  # a start not known: only a gone pid tells


def _figures(reply: Sequence[Any]) -> tuple[int, int, int]:
    """(remaining, done, failed) of the pool from a script's reply."""
    return int(reply[0]), int(reply[1]), int(reply[2])


def _flat(items: Iterable[tuple[Any, ...]]) -> list[Any]:
    return [value for item in items for value in item]


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
