"""Real components for the test suite: a Redis server, a one-node Slurm cluster, headless Chromium.

The product's shared queue, array-job and report features are tested against the real programs
(Debian's ``redis-server``, ``slurm-wlm`` + ``munge`` and ``chromium``), not against fakes, so
that what the tests accept is what a real cluster accepts. ``.ci/run`` installs the packages.

Rules common to the fixtures:

* A component whose programs are missing or will not start makes the test skip locally, and
  FAIL under CI (``CI=true``): CI must never go green by skipping what it is meant to check.
* Everything lives in a temporary folder, listens only on 127.0.0.1 on free ports, and is
  stopped afterwards, also when the test fails.
* Standard library only (plus pytest): the Redis client library is an optional extra of the
  product, so the fixture speaks RESP over a socket itself.

Fixtures (registered in ``conftest.py``):

* ``redis_server`` (function scope): a :class:`RedisFactory`; ``.start(password=None)`` gives
  a :class:`RedisServer` with persistence off (``stop``, ``kill``, ``restart``, ``ping``,
  ``command``, ``port``, ``url``).
* ``slurm_cluster`` (session scope): a :class:`SlurmCluster` (``env``, ``sbatch``, ``squeue``,
  ``wait_until_done``, ``job_states``, ``scontrol``, ``scancel``, ``max_array_size``,
  ``configured``); ``slurm`` (function scope) is the same cluster, emptied of jobs after the test.
* ``chromium`` (session scope): a :class:`Chromium` (``binary``, ``dump_dom``, ``screenshot``).

Helper: :func:`png_is_blank` (and :func:`png_size`), a pure-Python PNG check.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import pytest

IN_CI = os.environ.get("CI") == "true"

# Daemons live in sbin, which is not on every user's PATH.
_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])


# --- common ------------------------------------------------------------------------------


def unavailable(reason: str) -> NoReturn:
    """Skip the test locally; fail it under CI, where every component must be there."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a missing component is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


def find_program(name: str) -> str | None:
    """Full path of ``name`` on PATH or in the sbin folders, else None."""
    return shutil.which(name, path=_SEARCH_PATH)


def require_programs(component: str, names: Sequence[str], package: str) -> dict[str, str]:
    """Paths of ``names``; skip (fail under CI) naming the Debian package if one is missing."""
    found = {name: find_program(name) for name in names}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        unavailable(f"{component}: {', '.join(missing)} not found (apt-get install {package})")
    return {name: path for name, path in found.items() if path is not None}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie counts as gone (daemons are reaped by init, later)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    # The state follows the command name in parentheses, which may itself contain spaces.
    return stat[stat.rindex(")") + 2] not in "ZX"


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM ``pid``, then SIGKILL if it is still there after ``timeout`` seconds."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return
            time.sleep(0.05)


def read_pid_file(path: Path) -> int | None:
    """The pid in ``path``, or None if there is no such file (or it holds no number)."""
    try:
        return int(path.read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file, for error messages (empty if there is none)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_for(predicate: Any, timeout: float, interval: float = 0.1) -> bool:
    """Poll ``predicate()`` until it is true (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# --- Redis -------------------------------------------------------------------------------


class RespError(Exception):
    """An error reply (``-ERR ...``) from Redis."""


def _read_reply(stream: Any) -> Any:
    """One RESP2 reply from a buffered socket file: str, int, bytes, None, list or RespError."""
    line = stream.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("connection closed in the middle of a Redis reply")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return RespError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data = stream.read(size + 2)
        return data[:-2]
    if kind == b"*":
        count = int(rest)
        return None if count < 0 else [_read_reply(stream) for _ in range(count)]
    raise ConnectionError(f"not a RESP reply: {line!r}")


def _encode_command(args: Sequence[str | bytes | int]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def resp_command(port: int, *args: str | bytes | int, password: str | None = None, timeout: float = 5.0) -> Any:
    """Send one command to Redis on 127.0.0.1:``port`` (after AUTH if ``password``) and return the reply.

    Strings come back as ``str`` (status) or ``bytes`` (bulk), ``None`` for a nil; an error reply
    raises :class:`RespError`. One connection per call: simple, and enough for tests.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock, sock.makefile("rb") as stream:
        if password is not None:
            sock.sendall(_encode_command(["AUTH", password]))
            reply = _read_reply(stream)
            if isinstance(reply, RespError):
                raise reply
        sock.sendall(_encode_command(args))
        reply = _read_reply(stream)
    if isinstance(reply, RespError):
        raise reply
    return reply


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1 with persistence off (``--save '' --appendonly no``).

    Without persistence a restart comes back empty: that is what "Redis restarted and lost the
    queue" means for the product, and it is what :meth:`restart` gives.
    """

    def __init__(self, binary: str, workdir: Path, password: str | None = None) -> None:
        self.binary = binary
        self.workdir = workdir
        self.password = password
        self.port = free_port()
        self.log_path = workdir / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.start_seconds = 0.0
        """How long the last start took until the server answered PING."""

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0`` (``redis://:PASSWORD@...`` with a password)."""
        auth = f":{self.password}@" if self.password is not None else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start the server on :attr:`port`, wait until it answers PING (skip/fail if it can't)."""
        if self.running:
            raise RuntimeError(f"redis-server on port {self.port} is already running")
        argv = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", str(self.workdir),
            "--logfile", str(self.log_path),
        ]  # fmt: skip
        if self.password is not None:
            argv += ["--requirepass", self.password]
        began = time.monotonic()
        output = self.workdir / "redis.out"
        with output.open("ab") as out:
            self.process = subprocess.Popen(argv, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        process = self.process
        if not wait_for(lambda: process.poll() is not None or self.ping(), 15, 0.02) or process.poll() is not None:
            status = process.poll()
            self.kill()
            unavailable(
                f"redis-server did not answer on port {self.port} (exit status {status}):\n{tail(output)}\n{tail(self.log_path)}".rstrip()
            )
        self.start_seconds = time.monotonic() - began
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ping(self) -> bool:
        """True if the server answers PING with PONG (with AUTH when it has a password)."""
        try:
            return resp_command(self.port, "PING", password=self.password, timeout=2) == "PONG"
        except (OSError, RespError):
            return False

    def command(self, *args: str | bytes | int) -> Any:
        """Run one Redis command over RESP (see :func:`resp_command`)."""
        return resp_command(self.port, *args, password=self.password)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop with SIGTERM (SIGKILL after ``timeout``) and wait for the process to end."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would, and wait for the process to end."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        self.process = None

    def restart(self) -> RedisServer:
        """Stop (if running) and start again on the same port: the data is gone."""
        self.stop()
        return self.start()


class RedisFactory:
    """Starts Redis servers for one test and stops every one of them at its end."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.servers: list[RedisServer] = []

    def start(self, password: str | None = None) -> RedisServer:
        """A new server on a free port, persistence off, answering PING; ``--requirepass`` if given."""
        folder = self.workdir / f"redis{len(self.servers)}"
        folder.mkdir(parents=True)
        server = RedisServer(self.binary, folder, password)
        self.servers.append(server)
        return server.start()

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisFactory]:
    """A :class:`RedisFactory`: ``redis_server.start(password=None)`` -> a running :class:`RedisServer`."""
    binary = require_programs("Redis", ["redis-server"], "redis-server")["redis-server"]
    factory = RedisFactory(binary, tmp_path_factory.mktemp("redis"))
    try:
        yield factory
    finally:
        factory.stop_all()
