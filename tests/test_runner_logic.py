"""The runner's supervision logic in one process, with fake workers and a fake clock (issue 10,
Must show 4 and 5): batching, timeouts, crash blame, interrupts, internal errors, and a
test-only source that decides on its own which job runs when and whether a failure is retried.

End-to-end tests with real processes (test_failures, test_interrupts, ...) prove the real thing;
these prove the logic, fast and without timing luck.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

from fakeworkers import EPOCH, FakeClock, FakeHub, FakeLink
from jobsplit.clock import SYSTEM_CLOCK
from jobsplit.config import Header, JobConfig, LogSettings
from jobsplit.errors import InternalError, UserError
from jobsplit.journal import Journal
from jobsplit.links import ProcessHub
from jobsplit.messages import GARBLED
from jobsplit.pool import JobPool
from jobsplit.progress import ProgressBoard
from jobsplit.recorder import Recorder
from jobsplit.results import ResultsFile
from jobsplit.runner import BATCH_SECONDS, KILL_GRACE, MAX_BATCH, START_FAILURES_LIMIT, Runner
from jobsplit.sources import JobSource, StaticShare, Task
from jobsplit.states import JobState, Outcome
from jobsplit.worker import WorkerSetup


class Setup:
    """A runner over ``jobs`` with a real journal, fed by a StaticShare unless told otherwise."""

    def __init__(self, tmp_path: Path, jobs: list[Any], *, workers: int = 2, timeout: float | None = None, retries: int = 0, hub: Any = None, clock: Any = None) -> None:
        self.clock = clock or FakeClock()
        self.hub = hub or FakeHub(self.clock)
        self.pool = JobPool(jobs)
        self.ids = self.pool.ids_hex(range(len(jobs)))
        self.journal = Journal(tmp_path / "journal.sqlite")
        self.journal.initialize({"digest": "0" * 32}, self.ids)
        self.run_number = self.journal.begin_run(workers, done_before=0, started=self.clock.time(), host="test", pid=1, code="c0de", source="test")
        self.results = ResultsFile(tmp_path / "results.csv", "header\n", [])
        self.tmp_path = tmp_path
        self.workers, self.timeout, self.retries = workers, timeout, retries

    def runner(self, source: JobSource | None = None) -> Runner:
        source = source or StaticShare(range(len(self.ids)), self.pool.ids_hex, retries=self.retries)
        recorder = Recorder(self.journal, self.results, self.run_number, clock=self.clock)
        return Runner(source, self.hub, recorder, self.pool, workers=self.workers, run=self.run_number, timeout=self.timeout, clock=self.clock)

    def attempts(self) -> dict[str, list[tuple[int, str, str]]]:
        """job id -> [(attempt, outcome, state)] in order."""
        found: dict[str, list[tuple[int, str, str]]] = {}
        for a in self.journal.attempts():
            found.setdefault(a["job_id"], []).append((a["attempt"], a["outcome"], a["state"]))
        return found

    def close(self) -> None:
        self.results.close()
        self.journal.close()


@pytest.fixture
def make(tmp_path):
    made: list[Setup] = []

    def factory(jobs: list[Any], **options: Any) -> Setup:
        made.append(Setup(tmp_path / f"s{len(made)}", jobs, **options))
        return made[-1]

    for path in (tmp_path / f"s{i}" for i in range(4)):
        path.mkdir()
    yield factory
    for setup in made:
        setup.close()


# --- batching ------------------------------------------------------------------------------------


def test_short_jobs_travel_in_batches(make):
    setup = make([("ok", 0.0005, i) for i in range(2000)])
    assert setup.runner().run(lambda: False) is True
    sizes = [len(batch) for link in setup.hub.links for batch in link.batches]
    assert sizes[0] == 1 and max(sizes) > 10  # one job to learn the length, then batches
    assert sum(sizes) == 2000
    assert {a for job in setup.attempts().values() for a in job} == {(1, "done", "done")}


def test_long_jobs_keep_one_job_queued_behind_the_running_one(make):
    """So a worker never waits for the runner between two jobs, however long they are."""
    setup = make([("ok", 2.0, i) for i in range(8)])
    runner = setup.runner()
    queued: list[int] = []

    def watch() -> None:
        queued.extend(len(slot.queue) for slot in runner._slots)

    assert runner.run(lambda: False, watch) is True
    assert {len(batch) for link in setup.hub.links for batch in link.batches} == {1}
    assert max(queued) == 2 and queued.count(2) > len(queued) // 2  # the running job and one behind it
    ends = sorted(a["ended"] for a in setup.journal.attempts())
    starts = sorted(a["started"] for a in setup.journal.attempts())
    assert starts[2:] == ends[:-2]  # each next job started the moment the one before it ended
    assert len(setup.attempts()) == 8


def test_very_short_jobs_keep_their_workers_busy_while_the_runner_commits(make):
    """Jobs so short that MAX_BATCH of them take less than BATCH_SECONDS are queued in several
    messages, about BATCH_SECONDS of them on each worker, so that a worker runs on while the
    runner is busy: here 10 ms in every 30 ms of virtual time, as a commit of the journal (up to
    25 ms on this VM, while 512 no-op jobs take about 8 ms)."""
    seconds = 5e-6
    setup = make([("ok", seconds, i) for i in range(20_000)])
    runner, clock = setup.runner(), setup.clock
    queued: list[int] = []
    busy_from = [clock.now + 0.020]  # once the first results told the runner how short the jobs are

    def busy_now_and_then() -> None:
        queued.extend(len(slot.queue) for slot in runner._slots)
        if clock.now >= busy_from[0]:
            clock.now += 0.010  # the runner sends nothing meanwhile: the workers run what they hold
            busy_from[0] = clock.now + 0.020

    assert runner.run(lambda: False, busy_now_and_then) is True
    assert max(len(batch) for link in setup.hub.links for batch in link.batches) <= MAX_BATCH
    assert max(queued) > 2 * MAX_BATCH  # more than the batch run and one behind it
    assert max(queued) <= BATCH_SECONDS / runner._job_cost + MAX_BATCH  # about BATCH_SECONDS of them, as the runner measures a job
    for slot in (0, 1):
        ran = sorted((a["started"], a["ended"]) for a in setup.journal.attempts() if a["slot"] == slot)
        waits = [start - end for (_, end), (start, _) in zip(ran, ran[1:]) if start - end > 1e-9]
        assert len(ran) > 5_000 and waits == [], f"worker {slot} waited {len(waits)} times, {sum(waits) * 1e3:.1f} ms in all"
    assert {a for job in setup.attempts().values() for a in job} == {(1, "done", "done")}


def test_an_idle_worker_takes_a_queued_job_from_a_busy_one(make):
    """At the end of a share, a job queued behind a long one moves to the worker that idles."""
    jobs = [("ok", 100.0, 0), ("ok", 1.0, 1), ("ok", 1.0, 2), ("ok", 1.0, 3)]
    setup = make(jobs, workers=2)
    assert setup.runner().run(lambda: False) is True
    busy, other = setup.hub.links
    stolen = [a for a in busy.batches[1]][0]  # queued behind the 100 s job
    assert stolen.job_id == setup.ids[2] and busy.revokes == [stolen.ticket]
    assert setup.ids[2] in [a.job_id for batch in other.batches for a in batch]  # it ran on the idle one
    assert setup.attempts()[setup.ids[2]] == [(1, "done", "done")]  # once
    (long_job,) = [a for a in setup.journal.attempts() if a["job_id"] == setup.ids[0]]
    assert max(a["ended"] for a in setup.journal.attempts()) == long_job["ended"]  # nothing waited behind it


# --- timeouts ------------------------------------------------------------------------------------


def test_a_job_over_the_timeout_is_stopped_and_its_slot_reused(make):
    setup = make([("hang", 0, 0), *[("ok", 1.0, i) for i in range(4)]], workers=1, timeout=5.0)
    started = setup.clock.now
    assert setup.runner().run(lambda: False) is True
    hung = setup.ids[0]
    assert setup.attempts()[hung] == [(1, "timeout", "failed")]
    first, *replacements = setup.hub.links
    assert first.signals[0] == signal.SIGTERM  # the worker's whole process group, via WorkerLink.signal
    assert first.batches[0][0].job_id == hung and replacements  # a new worker took the slot over
    (attempt,) = [a for a in setup.journal.attempts() if a["job_id"] == hung]
    assert attempt["started"] == pytest.approx(EPOCH + started)  # the job's own start, in wall-clock time
    assert attempt["ended"] - attempt["started"] == pytest.approx(5.0, abs=0.11)  # stopped one tick past the limit
    assert all(setup.attempts()[job_id] == [(1, "done", "done")] for job_id in setup.ids[1:])


@pytest.mark.parametrize("continued", [True, False], ids=["sigcont", "no-signal"])
def test_a_stop_of_the_whole_run_counts_against_no_timeout_wherever_it_finds_the_runner(make, continued):
    """Every process stopped for a minute (``scontrol suspend``) while the runner was busy between
    two waits, not waiting: measured on the wait alone, the stop went unseen and the job, 20 s of
    its own against a 30 s limit, was killed as timed out the moment the run went on. The
    runner's SIGCONT handler (``continued``) tells it, wherever the stop found it; without one
    (a freezer sends none) the time stays counted, as before."""
    setup = make([("ok", 20.0, 0)], workers=1, timeout=30.0)
    runner, clock, link_jobs = setup.runner(), setup.clock, []

    def stopped_while_busy() -> None:  # on_tick: the runner's own work between two waits
        if not link_jobs and setup.hub.links and (job := setup.hub.links[0].current_job) is not None and clock.now >= job.started + 5:
            link_jobs.append(job)
            clock.now += 60
            job.ends += 60  # the worker was stopped too
            if continued:
                runner.continued()

    assert runner.run(lambda: False, stopped_while_busy) is True
    assert link_jobs, "the stop happened"
    assert setup.attempts() == {setup.ids[0]: [(1, "done", "done") if continued else (1, "timeout", "failed")]}


def test_the_job_after_one_that_timed_out_is_interrupted_if_the_stop_reaches_it(make):
    """The runner reads which job runs (X, over its limit), then stops the worker; X may end
    meanwhile and the next job, Y, take the stop: with a SIGTERM handler of its own that lets it
    return, Y reports "returned after jobsplit's SIGTERM stopped it". That was recorded as Y's
    own failure (failed, never run again); Y was stopped, not failed: it runs again."""
    setup = make([("hang", 0, 0), ("ok", 1.0, 1)], workers=1, timeout=2.0)
    original = setup.hub.start

    def start(slot: int):
        link = original(slot)
        if len(setup.hub.links) == 1:

            def stop() -> None:  # X ended as the runner decided; Y started and took the SIGTERM
                x = link.current_job.assignment
                y = link.inbox.popleft()
                link._report(x.ticket, "done", EPOCH + setup.clock.now - 2.0, 2.0, f"row of {x.job_id}\n", None)
                link._report(y.ticket, "error", EPOCH + setup.clock.now, 0.01, None, "the job returned after jobsplit's SIGTERM stopped it")
                link.current_job = None
                link.signal(signal.SIGTERM)

            link.stop = stop  # type: ignore[method-assign]
        return link

    setup.hub.start = start  # type: ignore[method-assign]
    assert setup.runner().run(lambda: False) is True
    x, y = setup.ids
    assert setup.attempts()[x] == [(1, "done", "done")]
    assert setup.attempts()[y] == [(1, "interrupted", "pending"), (1, "done", "done")]  # an interrupted attempt does not count


def test_a_worker_that_ignores_sigterm_is_killed_after_the_grace(make):
    setup = make([("hang", 0, 0), ("ok", 1.0, 1)], workers=1, timeout=2.0)
    runner = setup.runner()

    def stubborn(signum: int, link=None) -> None:
        link = setup.hub.links[0]
        link.signals.append(signum)
        if signum == signal.SIGKILL and link.dies_at is None:
            link.dies_at, link.dies_with = setup.clock.now, -signal.SIGKILL

    original = setup.hub.start

    def start(slot: int):
        link = original(slot)
        if len(setup.hub.links) == 1:
            link.signal = stubborn  # type: ignore[method-assign]
        return link

    setup.hub.start = start  # type: ignore[method-assign]
    assert runner.run(lambda: False) is True
    first = setup.hub.links[0]
    assert first.signals[:2] == [signal.SIGTERM, signal.SIGKILL]
    (attempt,) = [a for a in setup.journal.attempts() if a["job_id"] == setup.ids[0]]
    assert attempt["outcome"] == "timeout" and attempt["signal"] == signal.SIGKILL
    assert attempt["ended"] - attempt["started"] >= 2.0 + KILL_GRACE - 0.11


# --- crash blame ---------------------------------------------------------------------------------


def test_a_crash_blames_only_the_running_job_and_hands_back_the_queued_ones(make):
    jobs = [("ok", 0.001, i) for i in range(40)]
    jobs[10] = ("crash", 0.001, 10)
    setup = make(jobs, workers=1)
    assert setup.runner().run(lambda: False) is True
    crashed = setup.ids[10]
    (attempt,) = [a for a in setup.journal.attempts() if a["job_id"] == crashed]
    assert (attempt["outcome"], attempt["state"], attempt["signal"], attempt["exit_code"]) == ("crashed", "failed", signal.SIGSEGV, None)
    assert "killed by SIGSEGV" in attempt["error"]
    first = setup.hub.links[0]
    after = [a.job_id for batch in first.batches for a in batch]
    queued_behind = after[after.index(crashed) + 1 :]
    assert queued_behind  # the crash happened inside a batch: jobs were queued behind it
    for job_id in queued_behind:  # never counted as crashed: run once, done, on the replacement
        assert setup.attempts()[job_id] == [(1, "done", "done")]
    assert first.signals == [signal.SIGKILL]  # what its job started goes with it


def test_a_worker_killed_when_the_out_of_memory_killer_struck_is_said_to_be_out_of_memory(make):
    """A SIGKILL that came with a rise in the machine's count of out-of-memory kills gets the
    likely cause and the fix; a SIGKILL without one, or where the count is unknown, does not."""
    setup = make([("oom", 0.1, 0), ("kill9", 0.1, 1), ("ok", 0.1, 2)], workers=1)
    setup.hub.oom_killed = 7
    assert setup.runner().run(lambda: False) is True
    errors = {a["job_id"]: a["error"] for a in setup.journal.attempts() if a["outcome"] == "crashed"}
    assert errors[setup.ids[0]].startswith("the worker process died while running this job (killed by SIGKILL: the kernel's out-of-memory killer")
    assert "run fewer jobs at a time (--workers)" in errors[setup.ids[0]]
    assert "--worker-memory SIZE" in errors[setup.ids[0]]  # the remedy for a leak
    assert errors[setup.ids[1]] == "the worker process died while running this job (killed by SIGKILL)"

    unknown = make([("oom", 0.1, 0)], workers=1)
    unknown.hub.oom_killed = None
    assert unknown.runner().run(lambda: False) is True
    (attempt,) = unknown.journal.attempts()
    assert attempt["error"] == "the worker process died while running this job (killed by SIGKILL)"


def test_crashes_are_retried_by_the_source_when_retries_are_left(make):
    setup = make([("crash", 0.1, 0), ("ok", 0.1, 1)], workers=1, retries=2)
    assert setup.runner().run(lambda: False) is True
    assert setup.attempts()[setup.ids[0]] == [(1, "crashed", "pending"), (2, "crashed", "pending"), (3, "crashed", "failed")]
    assert len(setup.hub.links) == 4  # the first worker and three replacements


# --- interrupts ------------------------------------------------------------------------------------


def test_an_interrupt_records_running_jobs_as_interrupted_and_releases_the_rest(make):
    setup = make([("ok", 10.0, i) for i in range(5)], workers=2)
    source = StaticShare(range(len(setup.ids)), setup.pool.ids_hex)
    runner = setup.runner(source)
    stop_at = setup.clock.now + 3.0
    assert runner.run(lambda: setup.clock.now >= stop_at) is False
    attempts = setup.attempts()
    assert sorted(attempts) == sorted(setup.ids[:2])  # the two running jobs, and only those
    assert all(job == [(1, "interrupted", "pending")] for job in attempts.values())
    assert source.remaining() == 5 and sorted(t.job_id for t in source.take(5)) == sorted(setup.ids)
    assert all(link.signals and link.signals[0] == signal.SIGTERM for link in setup.hub.links)
    assert runner.counts.done == runner.counts.failed == 0


def test_a_stop_before_any_worker_starts_starts_none(make):
    setup = make([("ok", 1.0, i) for i in range(3)])
    assert setup.runner().run(lambda: True) is False
    assert setup.hub.links == []


def test_a_stop_asked_with_nothing_left_to_run_is_a_settled_share(make):
    """A Ctrl-C while a finished share of a million jobs was read back: the run ended as
    "Interrupted: running jobs were stopped and will run again", exit 130, with nothing run."""
    setup = make([("ok", 1.0, i) for i in range(3)])
    assert setup.runner(StaticShare([], setup.pool.ids_hex)).run(lambda: True) is True
    assert setup.hub.links == []


def test_never_more_workers_than_jobs(make):
    setup = make([("ok", 1.0, i) for i in range(3)], workers=50)
    assert setup.runner().run(lambda: False) is True
    assert len(setup.hub.links) == 3


# --- failures of the machinery ----------------------------------------------------------------------


def test_internal_errors_in_a_row_stop_the_run(make):
    setup = make([("internal", 0.1, i) for i in range(8)], workers=1)
    with pytest.raises(InternalError, match=r"inside its own code.*; they are recorded as failed \(--retry-failed runs them again\), the others stay pending"):
        setup.runner().run(lambda: False)
    assert 3 <= len(setup.journal.attempts()) <= 4  # the one queued behind the third may have run too
    assert {state for _, state in setup.journal.states()} == {"failed", "pending"}  # as the message says
    assert setup.hub.links[0].stop_asked or setup.hub.links[0].signals  # shut down, not abandoned


class GarblingLink(FakeLink):
    """A worker whose pipe holds bytes that are no message once it is stopped."""

    def signal(self, signum: int) -> None:
        if not self.signals:
            self.outbox.append((GARBLED, "UnpicklingError: invalid load key, '\\x00'."))
        super().signal(signum)


class GarblingFirstHub(FakeHub):
    def start(self, slot: int) -> FakeLink:
        link = (GarblingLink if not self.links else FakeLink)(self, slot, pid=1000 + len(self.links))
        self.links.append(link)
        return link


def test_a_garbled_pipe_found_as_the_run_stops_fails_the_run_after_every_worker_is_stopped(make):
    """Reading the last messages of the first worker fails as it stops: the run still fails (an
    internal error), but only once every worker's process group has had its SIGKILL (what its
    job left running goes) and the jobs running on both are recorded as interrupted. Raised at
    once, it skipped all that, and a job's hung pool process outlived the run."""
    clock = FakeClock()
    setup = make([("hang", 0.0, i) for i in range(2)], workers=2, clock=clock, hub=GarblingFirstHub(clock))
    stop_at = clock.now + 1.0
    with pytest.raises(InternalError, match="could not read what worker 0"):
        setup.runner().run(lambda: clock.now >= stop_at)
    assert [link.signals[-1] for link in setup.hub.links] == [signal.SIGKILL, signal.SIGKILL]
    assert all(link.closed for link in setup.hub.links)
    assert setup.attempts() == dict.fromkeys(setup.ids, [(1, "interrupted", "pending")])


class StillbornLink(FakeLink):
    """A worker that exits (status 3) as it starts: it takes no job and says nothing."""

    def _start_next(self) -> None:
        pass


class StartFailingHub(FakeHub):
    """Its workers numbered in ``dying`` (0: the first started) are stillborn."""

    def __init__(self, clock: FakeClock, dying: set[int]) -> None:
        super().__init__(clock)
        self.dying = dying

    def start(self, slot: int) -> FakeLink:
        if len(self.links) not in self.dying:
            return super().start(slot)
        link = StillbornLink(self, slot, pid=1000 + len(self.links), dies_at=self.clock.now, dies_with=3)
        self.links.append(link)
        return link


def test_workers_that_die_before_saying_anything_stop_the_run(make):
    clock = FakeClock()
    setup = make([("ok", 0.1, i) for i in range(6)], workers=2, clock=clock, hub=StartFailingHub(clock, set(range(100))))
    with pytest.raises(UserError, match=r"3 worker processes in a row exited as they started.*exit status 3"):
        setup.runner().run(lambda: False)
    assert START_FAILURES_LIMIT <= len(setup.hub.links) <= START_FAILURES_LIMIT + 1  # not replaced for ever
    assert setup.journal.attempts() == []  # no job blamed: none was running


def test_workers_that_got_going_in_between_keep_the_run_going(make):
    """Two start failures, a worker that crashes on its first job (it got going), two more, a
    worker that reports: never three in a row, so the run finishes."""
    clock = FakeClock()
    jobs = [("crash", 0.1, 0), *[("ok", 0.1, i) for i in range(1, 6)]]
    setup = make(jobs, workers=1, clock=clock, hub=StartFailingHub(clock, {0, 1, 3, 4}))
    assert setup.runner().run(lambda: False) is True
    assert len(setup.hub.links) == 6
    assert {job_id: tries[-1][1] for job_id, tries in setup.attempts().items()} == {setup.ids[0]: "crashed", **dict.fromkeys(setup.ids[1:], "done")}


def test_a_job_that_cannot_be_sent_fails_alone(make):
    setup = make([("unpicklable", 0.0, 0), *[("ok", 0.1, i) for i in range(3)]], workers=1)
    assert setup.runner().run(lambda: False) is True
    (attempt,) = [a for a in setup.journal.attempts() if a["job_id"] == setup.ids[0]]
    assert attempt["outcome"] == "error" and "cannot be sent to a worker" in attempt["error"]
    assert all(setup.attempts()[job_id] == [(1, "done", "done")] for job_id in setup.ids[1:])


# --- a second source: the runner needs nothing else ----------------------------------------------------


class ScriptedSource:
    """A test-only source: hands jobs out in a scripted order, retries a failure once, at once
    (ahead of the others), and keeps a log of every call the runner made."""

    name = "scripted"

    def __init__(self, tasks: Sequence[Task]) -> None:
        self.waiting = list(tasks)
        self.taken: list[Task] = []
        self.failures: dict[str, int] = {}
        self.calls: list[tuple[str, list[str]]] = []

    def take(self, limit: int) -> list[Task]:
        handed, self.waiting = self.waiting[:limit], self.waiting[limit:]
        self.taken += handed
        if handed:
            self.calls.append(("take", [t.job_id for t in handed]))
        return handed

    def settle(self, ended: Sequence[tuple[Task, Outcome]]) -> list[JobState]:
        states = []
        for task, outcome in ended:
            self.taken.remove(task)
            if outcome == Outcome.DONE:
                states.append(JobState.DONE)
            elif self.failures.setdefault(task.job_id, 0) == 0:
                self.failures[task.job_id] = 1
                self.waiting.insert(0, task._replace(attempt=task.attempt + 1))
                states.append(JobState.PENDING)
            else:
                states.append(JobState.FAILED)
            self.calls.append(("settle", [task.job_id]))
        return states

    def release(self, tasks: Iterable[Task]) -> None:
        tasks = list(tasks)
        for task in tasks:
            self.taken.remove(task)
        self.waiting = tasks + self.waiting
        self.calls.append(("release", [t.job_id for t in tasks]))

    def remaining(self) -> int:
        return len(self.waiting) + len(self.taken)


def test_a_scripted_source_drives_the_runner(make):
    """Jobs out of plan order, a failure retried by the source's decision, a release on interrupt."""
    jobs = [("ok", 1.0, 0), ("flaky", 1.0, 1), ("ok", 1.0, 2), ("ok", 1.0, 3), ("ok", 60.0, 4), ("ok", 1.0, 5)]
    setup = make(jobs, workers=1)
    source = ScriptedSource([Task(setup.ids[p], p) for p in (3, 1, 0, 2, 4, 5)])
    runner = setup.runner(source)
    assert runner.run(lambda: setup.clock.now >= 100.0 + 30.0) is False  # stopped while job 4 runs
    started = [setup.ids.index(a.job_id) for link in setup.hub.links for batch in link.batches for a in batch]
    assert started == [3, 1, 0, 1, 2, 4, 5]  # the source's order (its retry first in line), never the plan's
    assert setup.attempts()[setup.ids[1]] == [(1, "error", "pending"), (2, "done", "done")]
    assert source.calls[-2:] == [("release", [setup.ids[4]]), ("release", [setup.ids[5]])]  # interrupted, then queued
    assert setup.attempts()[setup.ids[4]] == [(1, "interrupted", "pending")]
    assert source.remaining() == 2 and {t.job_id for t in source.waiting} == {setup.ids[4], setup.ids[5]}
    assert (runner.counts.done, runner.counts.failed) == (4, 0)


def echo(kind: str, seconds: float, index: int, random_obj: Any, config: Any, progress: Any) -> tuple[str, int]:
    """A real job for the real-process test (module level: picklable under spawn)."""
    if kind == "flaky" and not Path(f"{config.get('test', 'dir')}/flaky-{index}").exists():
        Path(f"{config.get('test', 'dir')}/flaky-{index}").touch()
        raise RuntimeError("flaky fails once")
    return kind, index


def test_a_scripted_source_drives_real_worker_processes(make, tmp_path):
    jobs = [("ok", 0.0, i) for i in range(6)]
    jobs[2] = ("flaky", 0.0, 2)
    context = multiprocessing.get_context("fork")
    config = JobConfig()
    config.read_dict({"test": {"dir": str(tmp_path)}})
    header = Header(("Run Start Time", "Job Running Time", "Job Start Time", "Kind", "Index"))
    setup_ = WorkerSetup(echo, config.as_document(), header, "m", "0" * 32, "c0de", 0.0, b"seed", ProgressBoard(context, 2), 0, LogSettings())
    setup = make(jobs, workers=2, hub=ProcessHub(context, setup_), clock=SYSTEM_CLOCK)
    order = [5, 4, 3, 2, 1, 0]
    source = ScriptedSource([Task(setup.ids[p], p) for p in order])
    assert setup.runner(source).run(lambda: False) is True
    attempts = setup.attempts()
    assert attempts[setup.ids[2]] == [(1, "error", "pending"), (2, "done", "done")]
    assert all(attempts[setup.ids[p]] == [(1, "done", "done")] for p in (0, 1, 3, 4, 5))
    assert [name for name, _ in source.calls].count("take") >= 2


class SupersedingShare(StaticShare):
    """A static share that, like a shared queue whose claim lapsed, does not accept one done job."""

    def __init__(self, pool: JobPool, refused: str) -> None:
        super().__init__(range(len(pool)), pool.ids_hex)
        self.refused = refused

    def settle(self, ended: Sequence[tuple[Task, Outcome]]) -> list[JobState]:
        states = super().settle(ended)
        return [JobState.SUPERSEDED if task.job_id == self.refused else state for (task, _), state in zip(ended, states)]


def test_a_group_of_done_results_the_source_does_not_all_accept_is_recorded_one_by_one(make):
    """Done results are recorded as columns (a DoneGroup) only when the source leaves every job
    done: one it supersedes is recorded as superseded, and its row stays out of results.csv."""
    setup = make([("ok", 0.0005, i) for i in range(300)])
    refused = setup.ids[150]
    runner = setup.runner(SupersedingShare(setup.pool, refused))
    assert runner.run(lambda: False) is True
    attempts = setup.attempts()
    assert attempts[refused] == [(1, "done", "superseded")]
    assert all(attempts[job_id] == [(1, "done", "done")] for job_id in setup.ids if job_id != refused)
    assert runner.counts.done == 299
    setup.results.close()
    lines = (setup.tmp_path / "results.csv").read_text().splitlines()
    assert len(lines) == 1 + 299 and not any(refused in line for line in lines)


def test_a_value_too_large_for_the_memory_left_is_the_job_s_failure_not_jobsplit_s(monkeypatch):
    """A job returned a 40 MB string in a worker near its memory limit: writing its row raised
    MemoryError in jobsplit's code, taken for a bug of jobsplit's; after three such jobs the run
    stopped with "the jobs stay pending", while those three were recorded as failed."""
    from jobsplit.config import Header
    from jobsplit.results import RowFormatter
    from jobsplit.states import Outcome
    from jobsplit.worker import _finished, _returned

    def out_of_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(RowFormatter, "line", out_of_memory)
    rows = RowFormatter(Header(("Run Start Time", "Job Running Time", "Job Start Time", "Value")), "m1", 1.7e9, "0" * 32, "c" * 12)
    internal: list[int] = []
    entry = _finished(rows, _returned((7, 1.7e9, 0.5, 0.0, None, None, "p" * 100, "1" * 32, "[1]", (1,), 0)), internal)
    assert entry[:2] == (7, Outcome.ERROR) and internal == []
    assert entry[6] == "the worker ran out of memory writing what the job returned (a str) as its row: return less, or give the workers more memory"
