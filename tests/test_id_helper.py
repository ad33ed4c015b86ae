"""The id helper (issue 14, "Planning that streams"): a large pool's ids are hashed and half
sorted by a second process, and must be exactly the ids this process computes alone, with the
same errors, whatever happens to the helper. The frozen executable's helper is tested in
test_executable.py."""

from __future__ import annotations

import mmap
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobsplit import UserError, idhelper
from jobsplit import pool as pool_module
from jobsplit.idhash import ID_DOMAIN
from jobsplit.idhelper import HelpedIds, helped_ids, helper_usable
from jobsplit.pool import JobPool, _id_texts, job_id

pytestmark = pytest.mark.skipif(not helper_usable(), reason="the id helper needs Linux's memfd_create and two cores")


@pytest.fixture
def helped(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every pool gets the helper, however small."""
    monkeypatch.setattr(pool_module, "HELPER_FROM", 1)


def alone(jobs: list) -> JobPool:
    """The pool identified by this process alone, as below HELPER_FROM."""
    saved = pool_module.HELPER_FROM
    pool_module.HELPER_FROM = sys.maxsize
    try:
        return JobPool(jobs)
    finally:
        pool_module.HELPER_FROM = saved


def helper_children() -> list[int]:
    """This process's children that are id helpers (started by idhelper._helper_command)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if parent == os.getpid() and b"jobsplit.idhelper" in command:
            found.append(int(entry.name))
    return found


def was_helped(pool: JobPool) -> bool:
    return isinstance(pool.ids._buffer, mmap.mmap)


_SCALAR = st.one_of(st.integers(), st.floats(allow_nan=False), st.text(max_size=80), st.booleans(), st.none())


@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(_SCALAR, max_size=4).map(tuple), min_size=1, max_size=1500, unique_by=job_id))
def test_the_helper_computes_the_very_ids_and_sorted_ids_of_this_process(jobs):
    """Uniform and mixed chunks, texts of one SHA-256 block and longer, any number of chunks:
    the ids in pool order and in byte order are byte for byte this process's own. (HELPER_FROM
    is set by hand: hypothesis runs every example in one function-scoped fixture.)"""
    saved = pool_module.HELPER_FROM
    pool_module.HELPER_FROM = 1
    try:
        helped_pool = JobPool(jobs)
    finally:
        pool_module.HELPER_FROM = saved
    own = alone(jobs)
    assert was_helped(helped_pool) and not was_helped(own)
    assert list(helped_pool.ids) == list(own.ids) == [job_id(job) for job in jobs]
    assert bytes(helped_pool.sorted_ids()[:]) == bytes(own.sorted_ids())


def _repeated_in(half: str) -> tuple[int, ...]:
    """A job whose id starts with a byte the helper sorts (``helper``) or this process sorts."""
    for i in range(10_000):
        if (job_id((i,))[0] < idhelper.SPLIT) == (half == "helper"):
            return (i,)
    raise AssertionError("no such job in 10,000")


@pytest.mark.parametrize("half", ["helper", "this process"])
def test_a_repeated_job_is_named_as_without_the_helper(helped, half):
    """Whichever process sorts the repeated id, the error names both positions, as without it."""
    repeated = _repeated_in(half)
    jobs = [(i, "x") for i in range(3000)]
    jobs[1200:1200] = [repeated]
    jobs.append(repeated)
    with pytest.raises(UserError) as with_helper:
        JobPool(jobs)
    with pytest.raises(UserError) as without:
        alone(jobs)
    assert str(with_helper.value) == str(without.value)
    assert str(with_helper.value).startswith("pool[1200] and pool[3001] are the same job")


def test_a_helper_that_cannot_start_leaves_the_work_to_this_process(helped, monkeypatch):
    monkeypatch.setattr(idhelper, "_helper_command", lambda: ["/nonexistent/jobsplit-helper"])
    jobs = [(i, i / 7) for i in range(2000)]
    pool = JobPool(jobs)
    assert not was_helped(pool)
    assert list(pool.ids) == list(alone(jobs).ids)


@pytest.mark.parametrize(
    "helper",
    [
        "import sys; sys.exit(3)",  # fails at once
        "import sys; sys.stdin.buffer.read(5000); sys.exit(1)",  # dies while reading
        "import sys; sys.stdin.buffer.read(); sys.stdout.buffer.write(b'short')",  # answers nonsense
    ],
)
def test_a_failing_helper_leaves_the_work_to_this_process(helped, monkeypatch, helper):
    monkeypatch.setattr(idhelper, "_helper_command", lambda: [sys.executable, "-c", helper])
    jobs = [(i, "y" * 60) for i in range(30_000)]  # 2.6 MB of texts, more than the pipe holds: the failure comes mid-stream
    pool = JobPool(jobs)
    assert not was_helped(pool)
    assert list(pool.ids) == [job_id(job) for job in jobs]
    assert bytes(pool.sorted_ids()) == bytes(alone(jobs).sorted_ids())


def test_a_pool_that_needs_the_general_path_stops_the_helper(helped):
    """A nested argument in the second chunk: the general path takes over, and names a bad job
    exactly as without the helper; no helper is left behind."""
    jobs: list = [(i,) for i in range(1500)]
    jobs[700] = (700, [1, 2])
    pool = JobPool(jobs)
    assert not was_helped(pool) and list(pool.ids) == [job_id(job) for job in jobs]
    jobs[900] = (900, {1, 2})
    with pytest.raises(UserError, match=r"pool\[900\]\[1\] is a set"):
        JobPool(jobs)
    assert helper_children() == []


def test_lone_surrogates_get_the_very_ids_of_this_process(helped):
    """File names that are not UTF-8 (lone surrogates) in a pool large enough for the helper:
    the helper hashes what this process would."""
    jobs = [(i, f"caf\udce9-{i}.dat") for i in range(1500)] + [(1500, "\ud800"), (1501, "\\udce9")]
    pool = JobPool(jobs)
    assert was_helped(pool)
    assert list(pool.ids) == list(alone(jobs).ids) == [job_id(job) for job in jobs]
    assert helper_children() == []


def test_an_interrupt_while_the_texts_are_written_stops_the_helper():
    """Ctrl-C while this process writes the texts: the interrupt goes on, and the helper is gone."""

    def chunks() -> Iterator[bytes]:
        yield from _id_texts([(i,) for i in range(600)], ID_DOMAIN)
        assert helper_children(), "the helper is running"
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        helped_ids(chunks(), 10_000)
    assert helper_children() == []


def test_the_helper_answers_what_its_caller_asked():
    """The shared memory holds the ids where the caller looks for them, and the helper exits."""
    jobs = [(i, f"p{i}") for i in range(1024)]
    result = helped_ids(_id_texts(jobs, ID_DOMAIN), len(jobs))
    assert isinstance(result, HelpedIds) and result.repeated is None
    assert [result.ids[16 * i : 16 * i + 16] for i in range(len(jobs))] == [job_id(job) for job in jobs]
    assert result.sorted_ids[:] == b"".join(sorted(map(job_id, jobs)))
    assert helper_children() == []
    assert helped_ids(_id_texts(jobs, ID_DOMAIN), len(jobs) + 1) is None  # fewer texts than promised: no ids


def test_an_executable_built_without_the_runtime_hook_starts_no_helper(monkeypatch):
    """A copy of an executable without the hook would run the researcher's entry script (and
    build the whole pool again) instead of serving: such an executable identifies alone."""
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(idhelper, "_hook_ran", False)
    assert not helper_usable()
    idhelper.frozen_hook(["./program", "run"])  # what make exe's hook does when not started as the helper
    assert helper_usable()
