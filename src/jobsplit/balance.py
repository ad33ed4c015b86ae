"""Dynamic balancing through a shared Redis queue: where the queue is, how to reach it, what it holds.

``--balance redis://HOST:PORT/DB`` (or config.ini ``[balance] url``) makes every host take jobs
from one queue as its workers free up, instead of running a fixed share (the queue itself is
``sources.redis``). This module turns the URL into an address, connects with errors a user can
act on, and reads a queue's figures for ``status --balance``.

The password comes from the URL (``redis://:PASSWORD@HOST...``), else from ``REDIS_PASSWORD``. It
is never printed: every message and log line shows the URL with ``***`` in its place, and any
error text from the client has it masked too.
"""

from __future__ import annotations

import configparser
import hashlib
import os
import re
import secrets
import socket
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol, cast
from urllib.parse import unquote, urlsplit

from .children import started_at
from .config import JOBSPLIT_KEYS, own_items, positive_seconds, refuse_unknown_keys
from .errors import UserError

DEFAULT_LEASE = 60.0
"""Seconds a claim lasts unless its host renews it (hosts renew every quarter lease)."""
PASSWORD_VARIABLE = "REDIS_PASSWORD"
KEY_PREFIX = "jobsplit:"
URL_HINT = "write redis://HOST:PORT/DB (rediss:// for TLS), e.g. redis://10.0.0.5:6379/0"


# --- settings ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BalanceConfig:
    """config.ini ``[balance]``: shared by every host (so part of the digest)."""

    url: str | None = None
    lease: float | None = None
    where: str = "config.ini [balance]"
    """The file and section, for messages."""


def balance_config(config: configparser.ConfigParser, path: Path) -> BalanceConfig:
    """Parse ``[balance]``, refusing unknown keys so that a typo is not silently ignored."""
    if not config.has_section("balance"):
        return BalanceConfig()
    values = {k: v.strip() for k, v in own_items(config, "balance").items()}
    refuse_unknown_keys(values, JOBSPLIT_KEYS["balance"], path, "balance")
    lease = positive_seconds(values["lease"], f"{path} [balance] lease") if values.get("lease") else None
    return BalanceConfig(url=values.get("url") or None, lease=lease, where=f"{path} [balance]")


@dataclass(frozen=True)
class QueueAddress:
    """Where the queue is. ``source`` names the flag or config key it came from, for messages."""

    host: str
    port: int
    db: int
    tls: bool
    source: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def masked(self) -> str:
        """The URL as it may be shown: the password, if any, is ``***``."""
        auth = f"{self.username or ''}:***@" if self.password else (f"{self.username}@" if self.username else "")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'rediss' if self.tls else 'redis'}://{auth}{host}:{self.port}/{self.db}"

    def mask(self, text: str) -> str:
        """``text`` with the password replaced by ``***`` wherever it occurs."""
        return text.replace(self.password, "***") if self.password else text


@dataclass(frozen=True)
class BalanceSettings:
    address: QueueAddress
    lease: float


def parse_url(text: str, source: str, environ: Any = os.environ) -> QueueAddress:
    """A ``redis://`` or ``rediss://`` URL as an address; a malformed one is a UserError naming ``source``."""
    shown = hide_passwords(text)
    try:
        authority = text.strip().partition("//")[2]
        if "@" in authority[next((i for i, c in enumerate(authority) if c in "/?#"), len(authority)) :]:
            raise ValueError(
                "what comes before its @ holds a '/', '?' or '#', which ends a URL's host part: percent-encode it "
                f"(%2F, %3F, %23), or give the password in {PASSWORD_VARIABLE} and leave it out of the URL"
            )  # checked first: the parser's complaint would quote the password's start as a port
        parts = urlsplit(text.strip())
        port = parts.port or 6379  # raises ValueError when not a number in 0..65535
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"the scheme must be redis:// or rediss://, not {parts.scheme or 'missing'}")
        if not parts.hostname:
            raise ValueError("it names no host")
        if parts.query or parts.fragment:
            raise ValueError("it has a ?query or #fragment, which jobsplit does not use")
        path = parts.path.strip("/")
        if path and not path.isdigit():
            raise ValueError(f"the database must be a number, not {path!r}")
    except ValueError as exc:
        raise UserError(f"{source} {shown!r} is not a Redis URL ({hide_passwords(str(exc))}); {URL_HINT}") from None
    password = unquote(parts.password) if parts.password else environ.get(PASSWORD_VARIABLE) or None
    username = unquote(parts.username) if parts.username else None
    return QueueAddress(parts.hostname, port, int(path or 0), parts.scheme == "rediss", source, username, password)


def same_server(a: QueueAddress, b: QueueAddress) -> bool:
    """Whether two addresses reach one queue as far as this host can tell: the same port and
    database, and host names with an address in common (``localhost`` and ``127.0.0.1``); a
    name that does not resolve counts as its text. One name is one server, without a look-up: a
    name whose look-ups answer one address of several each time (round-robin DNS) was two."""
    return (a.port, a.db) == (b.port, b.db) and (a.host.lower() == b.host.lower() or bool(_addresses(a.host) & _addresses(b.host)))


def _addresses(host: str) -> set[str]:
    try:
        return {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except (OSError, UnicodeError):
        return {host}


def hide_passwords(text: str) -> str:
    """``text`` with the password of every URL in it (``//user:secret@``) shown as ``***``: up to
    the last ``@`` of the word, as a password may hold an ``@`` or a ``/`` itself."""
    return re.sub(r"(//[^/:@\s]*):\S*@", r"\1:***@", text)


def resolve_balance(flag_url: str | None, flag_lease: float | None, shared: BalanceConfig) -> BalanceSettings | None:
    """``--balance`` over config.ini ``[balance] url``; ``--lease`` over ``[balance] lease``, else 60 s.
    None: no queue, the run takes this machine's static share."""
    if flag_url is not None:
        address = parse_url(flag_url, "--balance")
    elif shared.url is not None:
        address = parse_url(shared.url, f"{shared.where} url")
    else:
        return None
    lease = flag_lease if flag_lease is not None else shared.lease if shared.lease is not None else DEFAULT_LEASE
    return BalanceSettings(address, lease)


# --- connecting ----------------------------------------------------------------------------


class Script(Protocol):
    """A Lua script registered with the client (re-sent by itself after a server restart)."""

    def __call__(self, keys: Sequence[str] = ..., args: Iterable[str | int | float] = ...) -> Any: ...


class Pipeline(Protocol):
    def rpush(self, name: str, *values: str) -> Any: ...
    def expire(self, name: str, time: int) -> Any: ...
    def hgetall(self, name: str) -> Any: ...
    def hvals(self, name: str) -> Any: ...
    def hlen(self, name: str) -> Any: ...
    def time(self) -> Any: ...
    def execute(self) -> list[Any]: ...


class SideConnection(Protocol):
    """One connection of the client, used without waiting for replies (see sources.redis)."""

    def send_command(self, *args: str | int) -> None: ...
    def can_read(self, timeout: float = ...) -> bool: ...
    def read_response(self) -> Any: ...
    def disconnect(self) -> None: ...


class Client(Protocol):
    """The few calls of the ``redis`` client jobsplit makes (an optional dependency, typed here)."""

    def register_script(self, script: str) -> Script: ...
    def pipeline(self, transaction: bool = ...) -> Pipeline: ...
    def ping(self) -> Any: ...
    def hget(self, name: str, key: str) -> Any: ...
    def hgetall(self, name: str) -> Any: ...
    def info(self, section: str) -> Any: ...
    def scan_iter(self, match: str = ..., count: int = ...) -> Iterable[str]: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class Connection:
    """A client and the exceptions that mean "Redis is unreachable or unwell right now"."""

    client: Client
    address: QueueAddress
    lost: tuple[type[BaseException], ...]
    side: SideConnection
    """A connection of its own for messages whose replies are read later."""

    def close(self) -> None:
        self.side.disconnect()
        self.client.close()


def connect(address: QueueAddress, timeout: float = 5.0) -> Connection:
    """Connect and PING: an unreachable server, a wrong password or a missing client library is
    a UserError (exit 2) in one sentence naming where the URL came from."""
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError:
        raise UserError(
            f"{address.source} needs the redis client library, which is not installed here; "
            "pip install 'jobsplit[redis]' (for an executable: install it, then build again)"
        ) from None
    client = redis.Redis(
        host=address.host, port=address.port, db=address.db, username=address.username, password=address.password,
        ssl=address.tls, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0),
        decode_responses=True, client_name=f"jobsplit-{secrets.token_hex(3)}",
    )  # fmt: skip
    where = f"Redis at {address.masked} (from {address.source})"
    try:
        client.ping()
    except redis.AuthenticationError as exc:
        client.close()
        how = f"check the password (from the URL, else {PASSWORD_VARIABLE})" if address.password else f"set {PASSWORD_VARIABLE} (or put it in the URL)"
        raise UserError(f"{where} refused to let jobsplit in ({address.mask(str(exc)).rstrip('.')}); {how}") from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        client.close()
        raise UserError(f"cannot reach {where}: {address.mask(str(exc)).rstrip('.')}; start the server, or fix the URL") from None
    except redis.ResponseError as exc:
        client.close()
        if "DB index is out of range" in str(exc):  # the URL's number, not the server, is wrong: the server was fine
            raise UserError(
                f"{where} has no database {address.db} ({address.mask(str(exc))}: a server has as many as its `databases` "
                "setting, 16 unless set, numbered from 0); give the database number the other hosts use, e.g. /0"
            ) from None
        raise UserError(f"{where} answered PING with an error ({address.mask(str(exc))}); check the server's configuration") from None
    lost = (redis.ConnectionError, redis.TimeoutError, redis.ResponseError, OSError)
    return Connection(cast(Client, client), address, lost, cast(SideConnection, client.connection_pool.make_connection()))


def instance_name(machine: str) -> str:
    """Who holds a claim: the machine's name, this host and this process (a restarted host is a
    new holder), as ``machine/host:pid.start.system-random`` (see InstanceProcess)."""
    pid = os.getpid()
    return f"{machine}/{socket.gethostname()}:{pid}.{started_at(pid) or ''}.{this_system()}-{secrets.token_hex(3)}"


class InstanceProcess(NamedTuple):
    """The process of an instance (see instance_name): enough to tell, from the same host, that
    it has ended, whatever process took its pid since."""

    host: str
    pid: int
    start: int | None
    """When it started, in clock ticks after boot (None: not known)."""
    system: str
    """The kernel boot and pid namespace its pid belongs to (see this_system; "": not known)."""


def instance_process(instance: str) -> InstanceProcess | None:
    """The process of an instance name; None for one that names none (an older jobsplit's)."""
    host, colon, rest = instance.rpartition("/")[2].partition(":")
    pid, _, more = rest.partition("-")[0].partition(".")
    start, _, system = more.partition(".")
    if not (colon and pid.isascii() and pid.isdecimal()):
        return None
    return InstanceProcess(host, int(pid), int(start) if start.isascii() and start.isdecimal() else None, system)


def this_system() -> str:
    """This kernel boot and pid namespace, as 8 hex digits: a pid names one process only within
    both (a container of the same host name has its own; a cloned VM, its own boot). "" where
    not known (not Linux)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return ""
    return hashlib.sha256(f"{boot}/{namespace}".encode()).hexdigest()[:8]


def machine_of(owner: str) -> str:
    return owner.rpartition("/")[0] or owner


# --- keys and figures ----------------------------------------------------------------------


class QueueKeys(NamedTuple):
    """The keys of the queue of one digest, in the order the scripts take them as ``KEYS[1]`` to
    ``KEYS[10]`` (see sources.redis)."""

    meta: str
    pending: str
    owner: str
    leases: str
    token: str
    failures: str
    done: str
    failed: str
    stats: str
    hosts: str


def queue_keys(digest: str) -> QueueKeys:
    """The digest in braces is a cluster hash tag: every key of one queue lives in one slot."""
    prefix = f"{KEY_PREFIX}{{{digest}}}:"
    return QueueKeys._make(prefix + name for name in QueueKeys._fields)


@dataclass(frozen=True)
class QueueFigures:
    """What ``status --balance`` shows about the queue of one digest."""

    digest: str
    total: int
    done: int
    failed: int
    pending: int
    """Neither done, failed nor claimed (waiting in the queue)."""
    claimed: dict[str, int]
    """machine -> jobs it holds now."""
    done_by: dict[str, int]
    reclaimed: int
    """Claims taken back from hosts that stopped renewing them (died, paused, lost)."""
    reclaimed_from: dict[str, int]
    last_contact: dict[str, float]
    """machine -> seconds since any of its runs last talked to the queue."""
    hold_seconds: float
    """After Redis lost the queue: seconds until jobs are handed out again."""


def queue_figures(client: Client, digest: str) -> QueueFigures | None:
    """The figures of the queue of ``digest``, or None when this server holds no such queue."""
    keys = queue_keys(digest)
    pipe = client.pipeline(transaction=True)
    for call, key in ((pipe.hgetall, keys.meta), (pipe.hvals, keys.owner), (pipe.hvals, keys.done), (pipe.hlen, keys.failed), (pipe.hgetall, keys.stats), (pipe.hgetall, keys.hosts)):
        call(key)
    pipe.time()
    info, owners, done_by, failed_count, counters, contacts, (seconds, micros) = pipe.execute()
    if not info:
        return None
    claimed = Counter(machine_of(o) for o in owners)
    total, done_count = int(info["total"]), len(done_by)
    reclaimed_from = {key.partition(":")[2]: int(value) for key, value in counters.items() if key.startswith("reclaimed:")}
    now = int(seconds) + int(micros) / 1e6
    hold = max(0.0, int(info.get("hold_until", 0)) / 1000 - now)
    last: dict[str, float] = {}
    for instance, at in contacts.items():
        machine = machine_of(instance)
        last[machine] = min(last.get(machine, float("inf")), max(0.0, now - abs(int(at)) / 1000))  # negative: the run has ended (sources.redis._LEAVE)
    return QueueFigures(
        digest, total, done_count, int(failed_count), max(0, total - done_count - int(failed_count) - sum(claimed.values())),
        dict(sorted(claimed.items())), dict(sorted(Counter(done_by).items())), int(counters.get("reclaimed", 0)), reclaimed_from, dict(sorted(last.items())), hold,
    )  # fmt: skip


def queue_digests(client: Client) -> list[str]:
    """Digests of every jobsplit queue on this server."""
    found = {key[len(KEY_PREFIX) + 1 : -len("}:meta")] for key in client.scan_iter(match=f"{KEY_PREFIX}{{*}}:meta", count=1000)}
    return sorted(found)
