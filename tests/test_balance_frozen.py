"""The frozen executable, built with the redis extra, runs one host of the balanced pool (issue 11,
Must show 7): the fast host of Must show 1 is the executable in an environment without Python,
so the redis client it needs must be inside the bundle. Slow: the build takes about a minute.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from balancehosts import BASE, POOL, ROOT, assert_exactly_once, kill_started, make_cluster, makespan, run_hosts
from components import unavailable

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="built and tested on Linux")]


@pytest.fixture(scope="module")
def executable(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("redis") is None:
        unavailable("the redis client is not installed (pip install -e '.[redis]'), so the executable would not bundle it")
    dist = tmp_path_factory.mktemp("dist")
    build = subprocess.run(
        ["make", "-s", "exe", f"ENTRY={ROOT / 'tests' / 'frozen' / 'balance_entry.py'}", "NAME=balance", f"DIST={dist}"],
        cwd=ROOT, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout + build.stderr
    return dist / "balance"


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
    assert d.per_host["fast"][0] > d.per_host["slow"][0]
    assert d.ratio <= 1.10
