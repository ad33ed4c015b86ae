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


# --- Slurm -------------------------------------------------------------------------------


class SlurmError(subprocess.CalledProcessError):
    """A Slurm command failed; ``str()`` includes its stderr (e.g. sbatch's refusal)."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n{self.stderr or ''}".rstrip()


SLURM_PROGRAMS = ("slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo", "munged")

ACTIVE_STATES = frozenset(
    {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
     "RESIZING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT"}
)  # fmt: skip
"""squeue states of a job that has not finished (``wait_until_done`` waits while any task is in one)."""

SLURM_CPUS = max(4, os.cpu_count() or 1)
"""CPUs the test node advertises: at least 4, so that a 4-task array runs at once on 2 real cores.

More CPUs than the machine has need ``SlurmdParameters=config_overrides``; without it slurmd
registers its real count and slurmctld drains the node ("Low socket*core*thread count, Low CPUs").
"""


class SlurmCluster:
    """A private one-node Slurm cluster (slurmctld + slurmd as root, a private munged).

    Everything is under ``workdir``: slurm.conf (``SLURM_CONF`` in :attr:`env` points at it),
    state, spool, pid and log files, and munged's key, socket, pid and log. Both Slurm ports are
    free ports on 127.0.0.1. Measured on this machine (2 cores): idle node about 1.2 s after start.

    slurm.conf choices beyond the minimal recipe (``shared/notes/slurm.md``), each found necessary:

    * ``AuthInfo=socket=<private munged>,cred_expire=5``: a requeued batch job may start again
      only ``cred_expire + 1`` seconds after the requeue (default 120 s); 5 is Slurm's minimum.
    * ``SchedulerParameters=bf_interval=1,sched_interval=1``: a requeued job becomes eligible by
      the clock, and only a periodic scheduler pass starts it (defaults 30 s / 60 s).
    * ``CPUs=`` :data:`SLURM_CPUS` with ``SlurmdParameters=config_overrides`` (see there).
    * ``JobRequeue=1`` (the default, stated so it is not lost): batch jobs may be requeued.
    * ``MaxArraySize``: slurmctld 22.05 reads it once per process (it is cached at the first array
      job), so ``scontrol reconfigure`` shows the new value but does not enforce it; changing it
      takes a daemon restart, which :meth:`configured` does.
    """

    def __init__(self, workdir: Path, programs: Mapping[str, str]) -> None:
        self.workdir = workdir
        self.programs = dict(programs)
        self.hostname = socket.gethostname().split(".")[0]
        self.conf_path = workdir / "slurm.conf"
        self.munge_dir = workdir / "munge"
        self.munge_socket = self.munge_dir / "munge.socket"
        self.out_dir = workdir / "out"
        self.settings: dict[str, str] = {}
        self.start_seconds = 0.0
        """Seconds from starting munged to the node shown idle by sinfo (first start)."""

    @property
    def env(self) -> dict[str, str]:
        """Environment for Slurm commands: os.environ as it is now (less inherited SLURM_*), plus
        SLURM_CONF. Read at each call, not once for the session: sbatch exports it to the tasks,
        and a copy made before a test's own XDG_STATE_HOME (conftest.own_state_folder) had the
        tasks note their shares in the developer's real state folder."""
        return {**{k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}, "SLURM_CONF": str(self.conf_path), "PATH": _SEARCH_PATH}

    # -- configuration

    def base_settings(self) -> dict[str, str]:
        """The slurm.conf keys (without node and partition lines) this cluster starts with."""
        w = self.workdir
        return {
            "ClusterName": "jobsplit-test",
            "SlurmctldHost": f"{self.hostname}(127.0.0.1)",
            "SlurmUser": "root",
            "SlurmdUser": "root",
            "AuthType": "auth/munge",
            "CredType": "cred/munge",
            "AuthInfo": f"socket={self.munge_socket},cred_expire=5",
            "StateSaveLocation": str(w / "spool" / "ctld"),
            "SlurmdSpoolDir": str(w / "spool" / "d"),
            "SlurmctldPidFile": str(w / "slurmctld.pid"),
            "SlurmdPidFile": str(w / "slurmd.pid"),
            "SlurmctldLogFile": str(w / "log" / "slurmctld.log"),
            "SlurmdLogFile": str(w / "log" / "slurmd.log"),
            "SlurmctldPort": str(free_port()),
            "SlurmdPort": str(free_port()),
            "ProctrackType": "proctrack/linuxproc",
            "TaskPlugin": "task/none",
            "JobAcctGatherType": "jobacct_gather/none",
            "AccountingStorageType": "accounting_storage/none",
            "SchedulerType": "sched/backfill",
            "SchedulerParameters": "bf_interval=1,sched_interval=1",
            "SelectType": "select/cons_tres",
            "SelectTypeParameters": "CR_Core",
            "SlurmdParameters": "config_overrides",
            "MpiDefault": "none",
            "ReturnToService": "2",
            "JobRequeue": "1",
            "MaxArraySize": "1001",
        }

    def write_conf(self, settings: Mapping[str, str]) -> None:
        lines = [f"{key}={value}" for key, value in settings.items()]
        lines.append(f"NodeName={self.hostname} NodeAddr=127.0.0.1 CPUs={SLURM_CPUS} State=UNKNOWN")
        lines.append(f"PartitionName=debug Nodes={self.hostname} Default=YES MaxTime=INFINITE State=UP")
        self.conf_path.write_text("\n".join(lines) + "\n")
        self.settings = dict(settings)

    # -- daemons

    def start(self) -> SlurmCluster:
        """Start munged, slurmctld and slurmd; return once sinfo shows the node idle."""
        began = time.monotonic()
        for sub in ("spool/ctld", "spool/d", "log", "out"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        self.write_conf(self.base_settings())
        self._start_munged()
        self._start_slurm_daemons()
        self.start_seconds = time.monotonic() - began
        return self

    def _start_munged(self) -> None:
        """A private munged (own key and socket): no dependence on, or change to, /etc/munge."""
        self.munge_dir.mkdir(mode=0o755, exist_ok=True)
        self.munge_dir.chmod(0o755)  # munged wants the socket folder searchable by all
        key = self.munge_dir / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o600)
        argv = [
            self.programs["munged"], "--force",
            f"--socket={self.munge_socket}", f"--key-file={key}",
            f"--pid-file={self.munge_dir / 'munged.pid'}", f"--log-file={self.munge_dir / 'munged.log'}",
            f"--seed-file={self.munge_dir / 'munged.seed'}",
        ]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        if done.returncode != 0 or not wait_for(self.munge_socket.exists, 10, 0.02):
            unavailable(f"munged did not start ({done.returncode}): {done.stderr.strip()}\n{tail(self.munge_dir / 'munged.log')}")

    def _start_slurm_daemons(self) -> None:
        for daemon in ("slurmctld", "slurmd"):
            done = subprocess.run(
                [self.programs[daemon], "-f", str(self.conf_path)],
                env=self.env, cwd=self.workdir, capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            if done.returncode != 0:
                unavailable(f"{daemon} did not start ({done.returncode}): {done.stderr.strip()}\n{self.logs()}")
        if not wait_for(lambda: self.node_state() == "idle", 60, 0.1):
            unavailable(f"the Slurm node never became idle (state {self.node_state()!r})\n{self.logs()}")

    def node_state(self) -> str:
        """The node's state as sinfo prints it (``idle``, ``mix``, ``alloc``, ``unk``...), '' if unknown."""
        done = self.run("sinfo", "-h", "-n", self.hostname, "-o", "%t", check=False, timeout=10)
        return done.stdout.strip() if done.returncode == 0 else ""

    def _stop_slurm_daemons(self) -> None:
        """Stop slurmd, then slurmctld, by the pids in their pid files."""
        for key in ("SlurmdPidFile", "SlurmctldPidFile"):
            pid = read_pid_file(Path(self.settings[key]))
            if pid is not None:
                stop_pid(pid)

    def stop(self) -> None:
        """Cancel every job, stop the daemons and munged, and kill anything left from the jobs."""
        if self.settings:
            ctld = read_pid_file(Path(self.settings["SlurmctldPidFile"]))
            if ctld is not None and pid_alive(ctld):
                with contextlib.suppress(Exception):
                    self.cancel_all(timeout=20)
            self._stop_slurm_daemons()
            # slurmstepd and job processes outlive slurmd by design; they carry our SLURM_CONF.
            for pid in processes_with_env("SLURM_CONF", str(self.conf_path)):
                stop_pid(pid, timeout=2)
        munged = read_pid_file(self.munge_dir / "munged.pid")
        if munged is not None:
            stop_pid(munged)

    def logs(self) -> str:
        """Last lines of slurmctld's and slurmd's logs, for failure messages."""
        parts = []
        for key in ("SlurmctldLogFile", "SlurmdLogFile"):
            if key in self.settings:
                parts.append(f"--- {self.settings[key]}\n{tail(Path(self.settings[key]))}")
        return "\n".join(parts)

    @contextlib.contextmanager
    def configured(self, **settings: str | int | None) -> Iterator[SlurmCluster]:
        """Run the body with slurm.conf keys changed (None removes one), restoring them afterwards.

        E.g. ``with cluster.configured(MaxArraySize=3): ...``. Both daemons are restarted (state and
        running jobs survive a restart): in 22.05 ``scontrol reconfigure`` does not apply every key,
        MaxArraySize among them (see the class docstring). About 1.5 s each way.
        """
        original = dict(self.settings)
        changed = dict(original)
        for key, value in settings.items():
            if value is None:
                changed.pop(key, None)
            else:
                changed[key] = str(value)
        self._restart(changed)
        try:
            yield self
        finally:
            self._restart(original)

    def _restart(self, settings: Mapping[str, str]) -> None:
        self._stop_slurm_daemons()
        self.write_conf(settings)
        self._start_slurm_daemons()

    # -- commands

    def run(
        self, *argv: str | os.PathLike[str], check: bool = True, timeout: float = 60, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a Slurm command (``sinfo``, ``sacct``...) with :attr:`env`; :class:`SlurmError` if it fails and ``check``."""
        args = [str(a) for a in argv]
        args[0] = self.programs.get(args[0]) or find_program(args[0]) or args[0]
        done = subprocess.run(args, env=self.env, cwd=cwd or self.workdir, capture_output=True, text=True, timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise SlurmError(done.returncode, args, done.stdout, done.stderr)
        return done

    def sbatch(self, script_path: str | os.PathLike[str], *args: str) -> str:
        """Submit a batch script (``sbatch --parsable ARGS SCRIPT``) and return its job id, e.g. ``"12"``.

        The job's working folder (where ``slurm-%j.out`` goes by default) is the script's folder.
        A refused submission raises :class:`SlurmError` with sbatch's message.
        """
        script = Path(script_path).resolve()
        done = self.run("sbatch", "--parsable", *args, script, cwd=script.parent)
        return done.stdout.strip().split(";")[0]

    def squeue(self, job_id: str | None = None) -> list[dict[str, str]]:
        """Unfinished jobs, one dict per array task: ``id`` (``12_3`` or ``12``), ``job``, ``state``, ``reason``.

        With ``job_id`` (an array's id, a task's ``12_3``, or a plain job id) only its tasks.
        """
        out = self.run("squeue", "-h", "-r", "-o", "%i|%F|%A|%T|%r").stdout
        rows = []
        for line in out.splitlines():
            ident, array_job, own_id, state, reason = line.split("|", 4)
            if job_id is None or job_id in (ident, array_job, own_id):
                rows.append({"id": ident, "job": array_job, "state": state, "reason": reason})
        return rows

    def job_states(self, job_id: str) -> dict[str, str]:
        """``scontrol show job``'s JobState of every task of ``job_id`` (finished ones too), by task id."""
        out = self.run("scontrol", "-o", "show", "job", job_id).stdout
        states = {}
        for line in out.splitlines():
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
            task = fields.get("ArrayTaskId")
            ident = f"{fields['ArrayJobId']}_{task}" if task else fields["JobId"]
            states[ident] = fields["JobState"]
        return states

    def wait_until_done(self, job_id: str, timeout: float = 120) -> dict[str, str]:
        """Wait until no task of ``job_id`` is pending, running or completing; return :meth:`job_states`.

        Raises TimeoutError (with the queue) after ``timeout`` seconds.
        """
        if not wait_for(lambda: not any(r["state"] in ACTIVE_STATES for r in self.squeue(job_id)), timeout, 0.2):
            raise TimeoutError(f"job {job_id} not done after {timeout} s: {self.squeue(job_id)}\n{self.logs()}")
        return self.job_states(job_id)

    def scontrol(self, *args: str) -> str:
        """``scontrol ARGS``; its stdout (SlurmError if it fails)."""
        return self.run("scontrol", *args).stdout

    def scancel(self, *args: str) -> str:
        """``scancel ARGS``; its stdout (SlurmError if it fails).

        Note: ``scancel --signal=SIG ID`` signals job steps only; a batch script without steps
        gets the signal only with ``--batch`` (or ``--full``).
        """
        return self.run("scancel", *args).stdout

    @property
    def max_array_size(self) -> int:
        """MaxArraySize as slurmctld reports it (``scontrol show config``)."""
        for line in self.scontrol("show", "config").splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "MaxArraySize":
                return int(value.strip())
        raise LookupError("scontrol show config has no MaxArraySize")

    def cancel_all(self, timeout: float = 60) -> None:
        """Cancel every job in the queue (SIGKILL to running ones) and wait until the queue is empty."""
        ids = sorted({row["job"] for row in self.squeue()})
        if ids:
            self.run("scancel", *ids, check=False)
            self.run("scancel", "--full", "--signal=KILL", *ids, check=False)
        if not wait_for(lambda: not self.squeue(), timeout, 0.2):
            raise TimeoutError(f"jobs still queued after cancelling: {self.squeue()}")


def processes_with_env(name: str, value: str) -> list[int]:
    """Pids of processes whose environment has ``name=value`` (to find a cluster's leftovers)."""
    needle = f"{name}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A running one-node :class:`SlurmCluster` for the whole session, stopped at its end."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        unavailable("Slurm: the private test cluster runs slurmctld/slurmd as root")
    programs = require_programs("Slurm", SLURM_PROGRAMS, "slurm-wlm munge")
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"), programs)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def slurm(slurm_cluster: SlurmCluster) -> Iterator[SlurmCluster]:
    """The session's cluster, with every job left by the test cancelled afterwards."""
    yield slurm_cluster
    slurm_cluster.cancel_all()


# --- Chromium ----------------------------------------------------------------------------

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # as root Chromium refuses to start with its sandbox
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # No network here: without these Chromium keeps trying (and failing) to reach Google's hosts.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


class ChromiumError(RuntimeError):
    """Chromium exited with an error or produced no output."""


class Chromium:
    """Headless Chromium for rendering local HTML: each call is a fresh process with a fresh profile.

    Success is judged by the exit status and the output; stderr is only quoted in errors (it
    always carries harmless dbus complaints here). Measured: a 1200x800 screenshot about 1 s.
    """

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``chromium FLAGS --user-data-dir=<new empty folder> ARGS``; kill its whole group after."""
        profile = tempfile.mkdtemp(prefix="profile-", dir=self.workdir)
        argv = [self.binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, errors="replace", start_new_session=True, cwd=self.workdir,
        )  # fmt: skip
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            raise ChromiumError(f"chromium timed out after {timeout} s: {argv}\n{stderr[-2000:]}") from None
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # helpers (crashpad, zygote) must not outlive it
            shutil.rmtree(profile, ignore_errors=True)
        return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)

    def dump_dom(self, html_path: str | os.PathLike[str], timeout: float = 60) -> str:
        """The page's DOM after its scripts ran (``--dump-dom file:///abs/path``)."""
        done = self.run("--dump-dom", Path(html_path).resolve().as_uri(), timeout=timeout)
        if done.returncode != 0 or "<html" not in done.stdout.lower():
            raise ChromiumError(f"--dump-dom failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
        return done.stdout

    def screenshot(
        self, html_path: str | os.PathLike[str], png_path: str | os.PathLike[str], width: int = 1200, height: int = 800, timeout: float = 60
    ) -> Path:
        """Render the page to a PNG of ``width`` x ``height`` and return its path."""
        png = Path(png_path).resolve()
        png.unlink(missing_ok=True)
        done = self.run(
            f"--window-size={width},{height}", "--hide-scrollbars", f"--screenshot={png}",
            Path(html_path).resolve().as_uri(), timeout=timeout,
        )  # fmt: skip
        if done.returncode != 0 or not png.is_file() or png.read_bytes()[:8] != PNG_SIGNATURE:
            raise ChromiumError(f"--screenshot failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
        return png


@pytest.fixture(scope="session")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Chromium:
    """A :class:`Chromium` that was seen to render a page (skip/fail if it cannot start)."""
    programs = ("chromium", "chromium-browser")
    binary = next((path for path in map(find_program, programs) if path), None)
    if binary is None:
        unavailable("Chromium: chromium not found (apt-get install chromium)")
    browser = Chromium(binary, tmp_path_factory.mktemp("chromium"))
    probe = browser.workdir / "probe.html"
    probe.write_text("<!doctype html><title>probe</title><p id=x></p><script>x.textContent='ran'</script>")
    try:
        dom = browser.dump_dom(probe)
    except ChromiumError as error:
        unavailable(f"Chromium cannot render a page: {error}")
    if "ran" not in dom:
        unavailable(f"Chromium rendered a page without running its script:\n{dom[:500]}")
    return browser


# --- PNG check (no Pillow) -------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel


def _png_chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    if data[:8] != PNG_SIGNATURE:
        raise ValueError("not a PNG file")
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        yield kind, data[pos + 8 : pos + 8 + length]
        if kind == b"IEND":
            return
        pos += 12 + length
    raise ValueError("truncated PNG file (no IEND)")


def png_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(width, height) of a PNG file."""
    for kind, body in _png_chunks(Path(path).read_bytes()):
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
            return width, height
    raise ValueError("PNG without IHDR")


def _unfilter(kind: int, line: bytearray, prev: bytes | bytearray, bpp: int) -> bytearray:
    """Undo one scanline's PNG filter (RFC 2083, 6.2-6.6)."""
    n = len(line)
    if kind == 0:
        return line
    if not any(line):  # common in flat areas: skip the byte loops
        if kind == 1:
            return line
        if kind == 2:
            return bytearray(prev)
    if kind == 1:  # Sub
        for i in range(bpp, n):
            line[i] = (line[i] + line[i - bpp]) & 0xFF
    elif kind == 2:  # Up
        line = bytearray((a + b) & 0xFF for a, b in zip(line, prev))
    elif kind == 3:  # Average
        for i in range(n):
            left = line[i - bpp] if i >= bpp else 0
            line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
    elif kind == 4:  # Paeth
        for i in range(n):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            line[i] = (line[i] + pred) & 0xFF
    else:
        raise ValueError(f"unknown PNG filter type {kind}")
    return line


def png_is_blank(path: str | os.PathLike[str]) -> bool:
    """True if every pixel of the PNG has the same value (a page that rendered nothing).

    Pure Python (zlib + struct), so no Pillow dependency: 8- and 16-bit non-interlaced images of
    every colour type (Chromium's screenshots are 8-bit RGB). Stops at the first row that
    differs from the first pixel, so a non-blank image is quick; a blank one decodes every row.
    For palette images it compares palette indices.
    """
    header: bytes | None = None
    idat = []
    for kind, body in _png_chunks(Path(path).read_bytes()):
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat.append(body)
    if header is None:
        raise ValueError("PNG without IHDR")
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header[:13])
    if depth not in (8, 16) or interlace != 0 or colour not in _CHANNELS:
        raise ValueError(f"unsupported PNG (bit depth {depth}, colour type {colour}, interlace {interlace})")
    bpp = _CHANNELS[colour] * depth // 8
    stride = width * bpp
    raw = zlib.decompress(b"".join(idat))
    if len(raw) < height * (stride + 1):
        raise ValueError("PNG image data too short")
    prev: bytes | bytearray = bytes(stride)
    expected = b""
    for y in range(height):
        start = y * (stride + 1)
        line = _unfilter(raw[start], bytearray(raw[start + 1 : start + 1 + stride]), prev, bpp)
        if y == 0:
            expected = bytes(line[:bpp]) * width
        if line != expected:
            return False
        prev = line
    return True
