"""The frozen executable, built with the redis extra, runs one host of the balanced pool (issue 11,
Must show 7): the fast host of Must show 1 is the executable in an environment without Python,
so the redis client it needs must be inside the bundle. Slow: it runs the frozen program of the
end-to-end tests (conftest's ``executable``, built once per session).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from balancehosts import BASE, POOL, assert_exactly_once, kill_started, make_cluster, makespan, run_hosts
from components import unavailable

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="built and tested on Linux")]


@pytest.fixture(scope="module")
def executable(executable: Path) -> Path:
    """The end-to-end tests' program (conftest), which must have bundled the redis client."""
    if importlib.util.find_spec("redis") is None:
        unavailable("the redis client is not installed (pip install -e '.[redis]'), so the executable would not bundle it")
    return executable


@pytest.fixture(autouse=True)
def _no_host_left_behind() -> Iterator[None]:
    """A failed test leaves its hosts running (retrying a Redis that is gone): kill them."""
    yield
    kill_started()


def test_the_executable_runs_one_host_of_the_balanced_pool(executable, redis_server, tmp_path, capsys) -> None:
    server = redis_server.start()
    cluster = make_cluster(tmp_path, pool=POOL, base=BASE)
    outputs = run_hosts(cluster, balance=server.url, frozen={"fast": [str(executable)]})
    assert "through the shared queue" in outputs["fast"]
    assert_exactly_once(cluster)
    d = makespan(cluster)
    with capsys.disabled():
        print(f"\nwith the executable as the fast host: makespan / ideal {d.ratio:.3f} ({d.seconds:.2f} s / {d.ideal:.2f} s); jobs per host {({m: n for m, (n, _) in d.per_host.items()})}")
    assert d.per_host["fast"][0] > d.per_host["slow"][0]  # the makespan is printed, not judged: see test_balance_hosts
