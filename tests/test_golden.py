"""Golden vectors (issue 2, Must show 2): a fixed pool and fixed config files give this exact
digest and this exact assignment, forever.

Two hosts only agree on a plan if they compute the same ids, digest and shares. The literals
below were computed once and pasted; if a change to the encoding, the digest, the config
parsing or a strategy alters any of them, hosts on the old and new code (or on two Python
versions) would disagree, and this file fails. Change the literals only together with a
deliberate format version bump.
"""

from __future__ import annotations

import json

import pytest

from jobsplit.digest import format_digest
from jobsplit.pool import JobPool
from jobsplit.project import load_project
from conftest import run_entry, write_config_dir

GOLDEN_POOL = [
    (0,), (1,), (1.0,), (True,), (None,), ("",), (-7, "neg"), (2**63, "big int"),
    (0.1, 0.2), (1e-300,), (1.7976931348623157e308,), (-0.0,), (1 / 3, 2 / 3),
    ("ü",), ("e\u0301",), ("日本語", "テスト"), ("🧪", "\u2028"), ('quote " back \\ slash',),
    ([1, [2, [3, []]]],), ((1, 2), [3, (4,)]), ([],), ({},), ("tab\there", "new\nline"),
    {"alpha": 1, "beta": [1, 2]}, {"z": None, "a": True}, {"ü": "key", "name": "x"},
    {"nested": {"b": 2, "a": [1.5, "s"]}}, {"n": 0}, {"n": 0.0}, {"n": False},
    "scalar job", 42, 2.5, [9, 8, 7],
    ("grid", 1, 0.25), ("grid", 1, 0.5), ("grid", 2, 0.25), ("grid", 2, 0.5),
    (), {"empty": {}},
]  # fmt: skip

GOLDEN_CONFIG = """\
[DEFAULT]
base_dir = /data

[jobsplit]
strategy = quota

[experiment]
samples = 5000
scratch = 1.5GiB
label = Ünïcode label ; not a comment
"""
GOLDEN_HEADER = ["Run Start Time", "Job Running Time", "Job Start Time", "Mean", "Std Error"]
GOLDEN_MACHINES = {"alpha": [1.0, 8], "beta": [2.5, 4], "gamma": [0.75, 12]}


def golden_cost(*args, **kwargs):
    return float(2 * len(args) + len(kwargs))


# The id of GOLDEN_POOL[i].
GOLDEN_IDS = """
f476d2caff482199226d3e7f73ff0d46 c203bede6b3ded52d7824fc6734f8f55 c0caeffb6f12d08806bea34a8520f0a5 4d6f067782266c9c5c8e96be94e10745
76fa8acaf16fbe28df366e1a96e887c4 4d55313451ccd9af8abac1edeab249ed 87fabff8c5e0c2bf3bf127a309c5efea 72ee700bd2b6c06540e4c64031886c2e
7e72ede86a6a532600a9bc12440faee1 3b1fabb610c8e26c51d4938be3e06cd4 6ded31178cb837e97c17ee33072b8aa5 d4e6bf7ef0bc0b1d03679ea1ffcbb0db
9e19f66ddd9d92d783111e6f29300c44 7f85d9687f488c476a4e9d9e92dc9aa2 f2e417a0742fc01421460e80bddf42e6 8af74884c233b811d111e3675f92b3e3
050f57a168d4de64a84e795ea400be1b 09a72834adcfbfe81206aab0ac439078 a3917c1bd0cae2bf245dab0c7091cf0e 9f4094d5a0323b99d45cbeadd6edfdff
07907c69e8510f976ac9b36f7bf94903 e039147b7212007445e8a0ce5d3e6127 80dac05f987456745c51b477d1bf7b75 46f1db618e50c92ffc001c6061449ed4
9f0d4572a80c468a60e31cdef56819dc e09ce14b7ec86e443ebc943fe74eee0c 6a24c4a0218740db0a1d8c68341ed05f c1734e5469c7f295e5c5e2a147554324
309aa869a0fb9663b55bb2928ea2cc07 c960add2fb5fb55a00c9673cad5b971f afa921b1e209e9729d14d60bea70ceec 623daacf202c9030ac9793ede395be27
b9c926a5981b1a5d473bdadbf14ac627 13209b1678ebd39d9f444e2dd0a76fc6 831c1bdfdbce3e8648aae7b36cf5cde9 21830ea32984bd7467446a46c8ab90d1
d9506753096a4b8fda781c71c64011bd 19355dcd987071538246e731ab1ef105 9241701fc4041f3facf069a5759b2442 7445b54bd56578059695831199743701
""".split()

# strategy -> (digest, per machine [alpha, beta, gamma]: pool positions in run order)
GOLDEN_PLANS = {
    "quota": (
        "02ebee2a4bb78bd111c5fd45f3b06595",
        [
            [5, 39, 11, 10, 18, 30, 21, 2, 8, 1, 6, 22],
            [28, 15, 7, 14, 17, 34, 20, 27, 19, 32, 24, 35, 13, 16, 3],
            [31, 29, 0, 33, 26, 37, 38, 12, 23, 9, 4, 36, 25],
        ],
    ),
    "rendezvous": (
        "570db42d8a67aa1bac07a10483f98f04",
        [
            [32, 24, 21, 3, 7, 34, 17, 13, 35, 9],
            [2, 22, 20, 1, 4, 6, 5, 18, 38, 26, 30, 15, 28],
            [37, 10, 8, 19, 29, 39, 23, 0, 31, 33, 25, 36, 27, 12, 16, 11, 14],
        ],
    ),
    "cost": (
        "bbdf7d83d65ed548cfe1fa2cedc692cf",
        [
            [16, 7, 8, 22, 6, 15, 12, 19],
            [37, 35, 34, 36, 18, 30, 32, 2, 1, 11, 21, 25, 14, 0],
            [20, 17, 33, 9, 23, 5, 3, 31, 10, 4, 13, 24, 28, 26, 39, 27, 29, 38],
        ],
    ),
}
GOLDEN_SEEDED_DIGEST = "5cbe2abdb08d7cd37bf3423ebefbc91e"  # quota with --seed fixed


def expected_job_ids(strategy: str) -> list[list[str]]:
    return [[GOLDEN_IDS[p] for p in share] for share in GOLDEN_PLANS[strategy][1]]


@pytest.fixture
def golden_dir(tmp_path):
    return write_config_dir(tmp_path / "golden", config=GOLDEN_CONFIG, header=GOLDEN_HEADER, machines=GOLDEN_MACHINES)


def test_golden_pool_ids():
    """Each of the 40 jobs has its pinned id."""
    assert len(GOLDEN_POOL) == len(GOLDEN_IDS) == 40
    pool = JobPool(GOLDEN_POOL)
    assert pool.ids_hex(range(len(pool))) == GOLDEN_IDS


@pytest.mark.parametrize("strategy", list(GOLDEN_PLANS))
def test_golden_digest_and_assignment(golden_dir, strategy):
    """The exact digest and per-machine job ids (in run order) for each strategy."""
    project = load_project(JobPool(GOLDEN_POOL), golden_dir, strategy=strategy, cost=golden_cost)
    digest, _ = GOLDEN_PLANS[strategy]
    assert project.digest == digest
    assert [m.name for m in project.plan.machines] == ["alpha", "beta", "gamma"]
    shares = [project.pool.ids_hex(share) for share in project.plan.shares]
    assert shares == expected_job_ids(strategy)


def test_golden_seeded_digest(golden_dir):
    """--seed is part of the digest, with a pinned value."""
    project = load_project(JobPool(GOLDEN_POOL), golden_dir, seed="fixed")
    assert project.digest == GOLDEN_SEEDED_DIGEST


def test_golden_quota_assignment_sizes():
    """Sanity of the pasted data: quota sizes are the largest-remainder quotas of 8 : 10 : 9 for 40 jobs."""
    assert [len(share) for share in GOLDEN_PLANS["quota"][1]] == [12, 15, 13]
    for _, shares in GOLDEN_PLANS.values():
        assert sorted(p for share in shares for p in share) == list(range(40))


GOLDEN_ENTRY = """\
import jobsplit

def job(*args, **kwargs):
    return ()

def cost(*args, **kwargs):
    return float(2 * len(args) + len(kwargs))

pool = {pool!r}

if __name__ == "__main__":
    jobsplit.main(job, pool, cost=cost)
"""


@pytest.mark.parametrize("strategy", list(GOLDEN_PLANS))
def test_golden_plan_through_the_command_line(tmp_path, golden_dir, strategy):
    """`plan --json` of a real entry script prints the same golden digest and job ids."""
    entry = tmp_path / "golden_entry.py"
    entry.write_text(GOLDEN_ENTRY.format(pool=GOLDEN_POOL), encoding="utf-8")
    result = run_entry(entry, "plan", "--json", "--strategy", strategy, "--config-dir", golden_dir)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["digest"] == format_digest(GOLDEN_PLANS[strategy][0])
    assert [m["job_ids"] for m in doc["machines"]] == expected_job_ids(strategy)
