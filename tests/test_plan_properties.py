"""Split strategies: properties that must hold for every pool and machine set (issue 2, Must show 1).

Every strategy must give each job to exactly one machine; ``quota`` must give each machine
its exact capacity quota to within one job; ``rendezvous`` must move only the jobs a machine
gains or loses; ``cost`` must be deterministic with ties broken by job id.
"""

from __future__ import annotations

import hashlib
import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobsplit.machines import Machine
from jobsplit.plan import STRATEGIES, PlanInput, make_plan
from jobsplit.plan.quota import quotas
from jobsplit.plan.rendezvous import neg_log, unit_interval

# --- hypothesis strategies ---------------------------------------------------------------

ids_st = st.lists(st.binary(min_size=16, max_size=16), max_size=300, unique=True)
name_st = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,11}", fullmatch=True)
speed_st = st.floats(min_value=0.05, max_value=20, exclude_min=True, allow_nan=False)
cores_st = st.integers(min_value=1, max_value=64)
seed_st = st.binary(min_size=1, max_size=32)


@st.composite
def machines_st(draw, min_size=1, max_size=8):
    """1..8 machines with unique names, sorted by name (as load_machines gives them)."""
    names = draw(st.lists(name_st, min_size=min_size, max_size=max_size, unique=True))
    return tuple(sorted((Machine(n, draw(speed_st), draw(cores_st)) for n in names), key=lambda m: m.name))


@st.composite
def plan_inputs(draw):
    ids = draw(ids_st)
    costs = draw(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=len(ids), max_size=len(ids)))
    return PlanInput(ids, draw(machines_st()), draw(seed_st), costs)


def owners(plan_input: PlanInput, strategy: str) -> dict[bytes, str]:
    """Job id -> machine name."""
    plan = make_plan(strategy, plan_input)
    return {plan_input.ids[p]: m.name for m, share in zip(plan.machines, plan.shares) for p in share}


def synthetic_ids(n: int, tag: str = "") -> list[bytes]:
    return [hashlib.sha256(f"{tag}job {i}".encode()).digest()[:16] for i in range(n)]


# --- every strategy ------------------------------------------------------------------------


def test_strategy_registry():
    """The three strategies the issue names, registered under their names."""
    assert list(STRATEGIES) == ["quota", "rendezvous", "cost"]
    assert all(s.name == name for name, s in STRATEGIES.items())
    assert [s.needs_costs for s in STRATEGIES.values()] == [False, False, True]


@pytest.mark.parametrize("strategy", list(STRATEGIES))
@settings(max_examples=150, deadline=None)
@given(plan_input=plan_inputs())
def test_shares_are_disjoint_and_cover_the_pool(strategy, plan_input):
    """One share per machine; every pool position appears in exactly one share, exactly once."""
    shares = STRATEGIES[strategy].split(plan_input)
    assert len(shares) == len(plan_input.machines)
    every = [p for share in shares for p in share]
    assert sorted(every) == list(range(len(plan_input.ids)))
    # A pure function of its input: the same input gives the same shares.
    assert STRATEGIES[strategy].split(plan_input) == shares


@settings(max_examples=300, deadline=None)
@given(plan_input=plan_inputs())
def test_quota_shares_are_within_one_job_of_the_exact_quota(plan_input):
    """quota: each machine gets n * capacity / total capacity jobs, off by strictly less than 1."""
    shares = STRATEGIES["quota"].split(plan_input)
    n = len(plan_input.ids)
    capacities = [Fraction(m.speed) * m.cores for m in plan_input.machines]
    total = sum(capacities)
    for share, capacity in zip(shares, capacities):
        assert abs(len(share) - n * capacity / total) < 1


@settings(max_examples=200, deadline=None)
@given(total=st.integers(0, 10_000), weights=st.lists(st.fractions(min_value=Fraction(1, 100), max_value=1000), min_size=1, max_size=12))
def test_quotas_largest_remainder(total, weights):
    """The apportionment sums to the total and rounds each exact quota down or up."""
    sizes = quotas(total, weights)
    assert sum(sizes) == total
    for size, weight in zip(sizes, weights):
        exact = total * weight / sum(weights)
        assert math.floor(exact) <= size <= math.ceil(exact)


def test_quota_ties_go_to_the_earlier_machine():
    """Equal remainders: the earlier machine (by name) gets the extra job, on every host."""
    assert quotas(1, [Fraction(1)] * 3) == [1, 0, 0]
    assert quotas(5, [Fraction(1)] * 3) == [2, 2, 1]


@settings(max_examples=100, deadline=None)
@given(ids=ids_st.filter(lambda ids: len(ids) >= 2), machines=machines_st(), seed=seed_st, data=st.data())
def test_pool_order_does_not_change_which_machine_runs_a_job(ids, machines, seed, data):
    """The same jobs in another order: every strategy assigns each job id to the same machine."""
    permuted = data.draw(st.permutations(ids))
    cost_of = {job_id: float(job_id[0] % 4) for job_id in ids}  # many ties
    for strategy in STRATEGIES:
        one = owners(PlanInput(ids, machines, seed, [cost_of[i] for i in ids]), strategy)
        two = owners(PlanInput(permuted, machines, seed, [cost_of[i] for i in permuted]), strategy)
        assert one == two, strategy


# --- rendezvous ----------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(ids=ids_st, machines=machines_st(min_size=2, max_size=8), seed=seed_st, data=st.data())
def test_rendezvous_adding_a_machine_moves_only_jobs_to_it(ids, machines, seed, data):
    """With one more machine, a job either stays where it was or goes to the new machine."""
    new = data.draw(st.sampled_from(machines))
    before_machines = tuple(m for m in machines if m is not new)
    before = owners(PlanInput(ids, before_machines, seed), "rendezvous")
    after = owners(PlanInput(ids, machines, seed), "rendezvous")
    for job_id in ids:
        assert after[job_id] in (before[job_id], new.name)


@settings(max_examples=100, deadline=None)
@given(ids=ids_st, machines=machines_st(min_size=2, max_size=8), seed=seed_st, data=st.data())
def test_rendezvous_removing_a_machine_moves_only_its_jobs(ids, machines, seed, data):
    """Without one machine, only the jobs it had change owner; everyone else keeps theirs."""
    gone = data.draw(st.sampled_from(machines))
    before = owners(PlanInput(ids, machines, seed), "rendezvous")
    after = owners(PlanInput(ids, tuple(m for m in machines if m is not gone), seed), "rendezvous")
    for job_id in ids:
        if before[job_id] == gone.name:
            assert after[job_id] != gone.name
        else:
            assert after[job_id] == before[job_id]


@settings(max_examples=50, deadline=None)
@given(ids=ids_st, machines=machines_st(min_size=2), seed=seed_st)
def test_rendezvous_does_not_depend_on_machine_order(ids, machines, seed):
    assert owners(PlanInput(ids, machines, seed), "rendezvous") == owners(PlanInput(ids, machines[::-1], seed), "rendezvous")


CLUSTERS = [
    pytest.param((Machine("a", 1.0, 8), Machine("b", 1.5, 4), Machine("c", 0.5, 16)), Machine("d", 1.2, 6), id="similar"),
    pytest.param((Machine("a", 1.0, 8), Machine("b", 2.0, 32)), Machine("c", 0.3, 1), id="tiny-new"),
    pytest.param((Machine("x", 1.0, 2),), Machine("big", 3.0, 16), id="big-new"),
]


@pytest.mark.parametrize(("machines", "new"), CLUSTERS)
def test_rendezvous_moved_fraction_is_the_new_capacity_fraction(machines, new):
    """On 5000 jobs, the new machine takes (about) its capacity fraction, and only that moves."""
    ids, seed = synthetic_ids(5000), b"moved-fraction"
    before = owners(PlanInput(ids, machines, seed), "rendezvous")
    after = owners(PlanInput(ids, (*machines, new), seed), "rendezvous")
    moved = [i for i in ids if after[i] != before[i]]
    assert all(after[i] == new.name for i in moved)
    expected = new.capacity / (new.capacity + sum(m.capacity for m in machines))
    assert abs(len(moved) / len(ids) - expected) < 0.03


@pytest.mark.parametrize(("machines", "new"), CLUSTERS)
def test_rendezvous_shares_follow_capacity(machines, new):
    """Weighted rendezvous: each machine's share of 5000 jobs is close to its capacity fraction."""
    machines = (*machines, new)
    plan = make_plan("rendezvous", PlanInput(synthetic_ids(5000, "w"), machines, b"weights"))
    total = sum(m.capacity for m in machines)
    for machine, share in zip(plan.machines, plan.shares):
        assert abs(len(share) / 5000 - machine.capacity / total) < 0.03, machine


@settings(max_examples=300, deadline=None)
@given(digest=st.binary(min_size=32, max_size=32))
def test_neg_log_matches_the_natural_logarithm(digest):
    """The portable -ln(u) agrees with libm to within rounding, and u is a probability."""
    u = unit_interval(digest)
    assert 0 < u <= 1  # see test_unit_interval_excludes_one for the upper end
    if u < 1:
        assert neg_log(u) > 0
        assert math.isclose(neg_log(u), -math.log(u), rel_tol=1e-13)


def test_unit_interval_excludes_one():
    """unit_interval promises a float strictly inside (0, 1) for every digest."""
    for digest in (b"\x00" * 32, b"\xff" * 6 + b"\xf7" + b"\xff" * 25, b"\xff" * 32):
        assert 0 < unit_interval(digest) < 1
        assert neg_log(unit_interval(digest)) > 0


# --- cost ----------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(ids=ids_st, machines=machines_st(), data=st.data())
def test_cost_ties_are_broken_by_job_id(ids, machines, data):
    """Equal costs and a permuted pool: the same set of ids per machine, in the same run order."""
    permuted = data.draw(st.permutations(ids))
    one = make_plan("cost", PlanInput(ids, machines, b"s", [1.0] * len(ids)))
    two = make_plan("cost", PlanInput(permuted, machines, b"other seed", [1.0] * len(ids)))
    for share_one, share_two in zip(one.shares, two.shares):
        assert [ids[p] for p in share_one] == [permuted[p] for p in share_two]


@settings(max_examples=100, deadline=None)
@given(plan_input=plan_inputs())
def test_cost_shares_run_most_expensive_first(plan_input):
    """Each machine runs its share from the most to the least expensive job (ties by id)."""
    for share in STRATEGIES["cost"].split(plan_input):
        keys = [(-plan_input.costs[p], plan_input.ids[p]) for p in share]
        assert keys == sorted(keys)


def test_cost_assignment_by_hand():
    """LPT across cores by speed: a hand-worked example (fast: speed 2, 1 core; slow: speed 1, 1 core).

    Costs 4, 2, 2 (the two 2s tie; the smaller id goes first):
    4 -> fast (finishes at 2, vs 4 on slow); first 2 -> slow (2 vs 3 on fast); last 2 -> fast (3 vs 4).
    """
    small, big, heavy = b"\x01" * 16, b"\x02" * 16, b"\x09" * 16
    machines = (Machine("fast", 2.0, 1), Machine("slow", 1.0, 1))
    for ids, costs in [([big, heavy, small], [2.0, 4.0, 2.0]), ([small, big, heavy], [2.0, 2.0, 4.0])]:
        plan = make_plan("cost", PlanInput(ids, machines, b"seed", costs))
        assert [[ids[p] for p in share] for share in plan.shares] == [[heavy, big], [small]]


def test_cost_uses_every_core():
    """Eight equal jobs on one 4-core machine and one 4-core machine of equal speed split 4/4."""
    ids = synthetic_ids(8)
    plan = make_plan("cost", PlanInput(ids, (Machine("a", 1.0, 4), Machine("b", 1.0, 4)), b"", [1.0] * 8))
    assert [len(s) for s in plan.shares] == [4, 4]
    plan = make_plan("cost", PlanInput(ids, (Machine("a", 1.0, 7), Machine("b", 1.0, 1)), b"", [1.0] * 8))
    assert [len(s) for s in plan.shares] == [7, 1]


# --- quota ---------------------------------------------------------------------------------


def test_quota_order_depends_on_the_seed():
    """The seed reshuffles which jobs a machine gets, but not how many."""
    ids = synthetic_ids(200)
    machines = (Machine("a", 1.0, 4), Machine("b", 1.0, 4))
    one = make_plan("quota", PlanInput(ids, machines, b"seed one"))
    two = make_plan("quota", PlanInput(ids, machines, b"seed two"))
    assert [len(s) for s in one.shares] == [len(s) for s in two.shares] == [100, 100]
    assert set(one.shares[0]) != set(two.shares[0])
