"""The component fixtures work for real: Redis over RESP, a one-node Slurm cluster, headless Chromium.

These tests check the test infrastructure (tests/components.py), and pin the facts about the
real programs that the product relies on: a restarted Redis without persistence is empty, a
batch script gets `scancel --signal` only with `--batch`, a requeued array task runs again, and
an array larger than MaxArraySize is refused.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from components import (
    RespError,
    resp_command,
)

# --- Redis -------------------------------------------------------------------------------


def test_redis_ping_set_get(redis_server):
    server = redis_server.start()
    assert server.ping()
    assert server.url == f"redis://127.0.0.1:{server.port}/0"
    assert server.command("SET", "queue:next", "job-7") == "OK"
    assert server.command("GET", "queue:next") == b"job-7"
    assert server.command("RPUSH", "queue", "a", "b", "c") == 3
    assert server.command("LRANGE", "queue", 0, -1) == [b"a", b"b", b"c"]
    assert server.command("GET", "missing") is None
    with pytest.raises(RespError, match="wrong number of arguments"):
        server.command("GET")


def test_redis_restart_comes_back_empty_on_the_same_port(redis_server):
    server = redis_server.start()
    port = server.port
    server.command("SET", "k", "v")
    assert server.command("DBSIZE") == 1

    server.restart()
    assert server.port == port and server.ping()
    assert server.command("DBSIZE") == 0

    server.command("SET", "k", "v")
    server.kill()
    assert not server.ping()
    server.start()
    assert server.command("GET", "k") is None


def test_redis_with_password(redis_server):
    server = redis_server.start(password="s3cret")
    assert server.url == f"redis://:s3cret@127.0.0.1:{server.port}/0"
    assert server.ping()
    assert server.command("SET", "k", "v") == "OK"
    other = redis_server.start()  # a second server in the same test, without a password
    assert other.port != server.port and other.command("GET", "k") is None

    with pytest.raises(RespError, match="NOAUTH"):
        resp_command(server.port, "GET", "k")
    with pytest.raises(RespError, match="WRONGPASS"):
        resp_command(server.port, "GET", "k", password="wrong")
    server.stop()
    assert not server.ping()
