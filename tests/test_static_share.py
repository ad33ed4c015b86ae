"""The static share hands out jobs as one line of Tasks would, while holding only the share's
positions: a job's id and Task are made as it is taken (issue 14, the run's memory at ten
million jobs)."""

from __future__ import annotations

import gc
import weakref
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobsplit.errors import UserError
from jobsplit.journal import Journal
from jobsplit.sources import StaticShare, Task
from jobsplit.states import JobState, Outcome


def ids_of(positions: Iterable[int]) -> list[str]:
    return [f"{p:032x}" for p in positions]


class OneLine:
    """The reference: every unsettled job a Task in one line, as the share was held before."""

    def __init__(self, tasks: Iterable[Task], retries: int) -> None:
        self.waiting, self.taken, self.retries, self.failures = deque(tasks), 0, retries, Counter[str]()

    def take(self, limit: int) -> list[Task]:
        count = min(limit, len(self.waiting))
        self.taken += count
        return [self.waiting.popleft() for _ in range(count)]

    def settle(self, ended: Sequence[tuple[Task, Outcome]]) -> list[JobState]:
        states = []
        for task, outcome in ended:
            self.taken -= 1
            failed = outcome != Outcome.DONE
            self.failures[task.job_id] += failed
            again = failed and self.failures[task.job_id] <= self.retries
            if again:
                self.waiting.append(task._replace(attempt=task.attempt + 1))
            states.append(JobState.PENDING if again else JobState.FAILED if failed else JobState.DONE)
        return states

    def release(self, tasks: Iterable[Task]) -> None:
        tasks = list(tasks)
        self.taken -= len(tasks)
        self.waiting.extendleft(reversed(tasks))

    def remaining(self) -> int:
        return len(self.waiting) + self.taken


steps = st.lists(
    st.tuples(st.sampled_from(["take", "settle", "release"]), st.integers(0, 12), st.lists(st.sampled_from([Outcome.DONE, Outcome.ERROR, Outcome.CRASHED]), min_size=12, max_size=12)),
    max_size=40,
)


@settings(max_examples=400, deadline=None)
@given(
    positions=st.lists(st.integers(0, 10_000), unique=True, max_size=30),
    attempts=st.none() | st.lists(st.integers(1, 4), min_size=30, max_size=30),
    retries=st.integers(0, 2),
    steps=steps,
)
def test_jobs_are_taken_settled_and_handed_back_as_from_one_line_of_tasks(positions: list[int], attempts: list[int] | None, retries: int, steps: list) -> None:
    """Handed back (never started): first in line, in plan order; retried: after every other
    job; settled: the same states; the same count remaining at every step."""
    firsts = attempts[: len(positions)] if attempts is not None else None
    share = StaticShare(positions, ids_of, firsts, retries)
    line = OneLine(map(Task, ids_of(positions), positions, firsts or [1] * len(positions)), retries)
    held: list[Task] = []
    for kind, count, outcomes in steps:
        if kind == "take":
            taken = share.take(count)
            assert taken == line.take(count)
            held += taken
        else:
            picked, held = held[:count], held[count:]
            if kind == "settle":
                ended = list(zip(picked, outcomes))
                assert share.settle(ended) == line.settle(ended)
            else:
                share.release(picked)
                line.release(picked)
        assert share.remaining() == line.remaining()
    share.release(held)
    line.release(held)
    assert share.take(100) == line.take(100)


def test_a_job_s_id_is_made_as_it_is_taken_not_for_the_whole_share() -> None:
    asked: list[int] = []

    def counting(positions: Sequence[int]) -> list[str]:
        asked.extend(positions)
        return ids_of(positions)

    share = StaticShare(range(1_000_000), counting)
    assert asked == [] and share.remaining() == 1_000_000
    assert [task.position for task in share.take(3)] == [0, 1, 2]
    assert asked == [0, 1, 2]


def test_closing_crashed_runs_lets_go_of_the_jobs_arguments_function(tmp_path: Path) -> None:
    """SQLite kept the function, and with it the share's index by id that it reads, for as long
    as the journal was open: the whole run."""
    journal = Journal(tmp_path / "journal.sqlite")
    journal.initialize({"digest": "0" * 32}, ids_of(range(3)))

    class Index(dict[str, str]):
        pass

    index = Index({job_id: "[]" for job_id in ids_of(range(3))})
    held = weakref.ref(index)
    journal.close_crashed_runs(0.0, index.get)
    del index
    gc.collect()
    assert held() is None
    journal.close()


@pytest.mark.parametrize(
    "other",
    [ids_of(range(7)), ids_of(range(6)), ids_of(range(8)), ids_of([0, 1, 2, 4, 3, 5, 6]), ids_of(range(1, 8)), []],
    ids=["same", "one fewer", "one more", "two swapped", "shifted", "none"],
)
def test_a_journal_holds_the_share_only_in_its_own_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, other: list[str]) -> None:
    """Compared a chunk at a time (chunks of 3 here), never as a second list of every id."""
    monkeypatch.setattr("jobsplit.journal._JOBS_AT_ONCE", 3)
    journal = Journal(tmp_path / "journal.sqlite")
    journal.initialize({"digest": "0" * 32}, ids_of(range(7)))
    if other == ids_of(range(7)):
        journal.check("0" * 32, other, dict)
        journal.check("0" * 32, tuple(other), dict)
    else:
        with pytest.raises(UserError, match="holds a different share than the plan"):
            journal.check("0" * 32, other, dict)
    journal.close()
