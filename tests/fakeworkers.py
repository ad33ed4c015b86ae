"""Fake workers and a fake clock: the runner's logic tested in one process, in virtual time.

The way pytest-xdist tests its schedulers with fake nodes: :class:`FakeHub` stands in for
``links.ProcessHub`` and each :class:`FakeLink` for a worker process. A job is a tuple
``(kind, seconds)`` and takes ``seconds`` of virtual time:

``ok``        ends done
``raise``     ends with an error
``internal``  ends with an error inside jobsplit's own code
``crash``     its worker dies (SIGSEGV) at the end
``oom``       its worker is killed (SIGKILL) at the end, the machine's out-of-memory kills counted
``kill9``     its worker is killed (SIGKILL) at the end, by someone else
``hang``      never ends (until its worker is signalled)
``flaky``     fails the first time it runs, ends done the next

``hub.wait`` moves the clock to the next event (a job ending, a worker exiting) or by its
timeout, whichever comes first; nothing sleeps.
"""

from __future__ import annotations

import signal
from collections import deque
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from jobsplit.messages import RESULTS, REVOKED, Batch, Results, Revoke
from jobsplit.progress import IDLE, SlotState
from jobsplit.states import Outcome

EPOCH = 1_800_000_000.0
"""The fake wall clock is the monotonic clock plus this."""


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return EPOCH + self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Assignment(NamedTuple):
    """One job of a batch, as the fake worker holds it."""

    ticket: int
    job_id: str
    job: Any
    sent: float
    """When the runner sent it: it starts no earlier."""


@dataclass
class _Job:
    assignment: Assignment
    started: float
    ends: float | None


@dataclass(eq=False)
class FakeLink:
    hub: FakeHub
    slot: int
    pid: int
    batches: list[list[Assignment]] = field(default_factory=list)
    """Every batch sent to this worker, in order: what the batching tests look at."""
    revokes: list[int] = field(default_factory=list)
    inbox: deque[Assignment] = field(default_factory=deque)
    current_job: _Job | None = None
    outbox: list[tuple[str, Any]] = field(default_factory=list)
    code: int | None = None
    dies_at: float | None = None
    dies_with: int = 0
    stop_asked: bool = False
    signals: list[int] = field(default_factory=list)
    closed: bool = False

    # --- the WorkerLink protocol -----------------------------------------------------------

    def send(self, message: Any) -> None:
        if message is None:
            self.stop_asked = True
            return
        if isinstance(message, Revoke):
            self.revokes.append(message.ticket)
            queued = next((a for a in self.inbox if a.ticket == message.ticket), None)
            if queued is not None:  # not started: taken out and confirmed at once, as a real worker does
                self.inbox.remove(queued)
                self._report(queued.ticket, REVOKED, 0.0, 0.0, None, None)
            return
        batch: Batch = message
        if any(job[0] == "unpicklable" for job in batch.jobs):
            raise TypeError("cannot pickle '_thread.lock' object")
        assignments = [Assignment(t, i, j, self.hub.clock.now) for t, i, j in zip(batch.tickets, batch.job_ids, batch.jobs)]
        self.batches.append(assignments)
        self.inbox.extend(assignments)
        self._start_next()

    def pump(self) -> list[tuple[str, Any]]:
        messages, self.outbox = self.outbox, []
        return messages

    def leftover_output(self) -> list[tuple[str, str, bytes]]:
        return []

    def current(self) -> SlotState:
        """Like the shared board: a dead worker's slot still names the job it was running."""
        job = self.current_job
        if job is None:
            return SlotState(IDLE, 0.0, 0.0)
        return SlotState(job.assignment.ticket, job.started, 0.5)

    def exit_code(self) -> int | None:
        return self.code

    def stop(self) -> None:
        self.signal(signal.SIGTERM)

    def signal(self, signum: int) -> None:
        self.signals.append(signum)
        if self.code is None and self.dies_at is None:
            self.dies_at, self.dies_with = self.hub.clock.now, -signum

    def close(self) -> None:
        self.closed = True

    # --- virtual time ------------------------------------------------------------------------

    def next_event(self) -> float | None:
        if self.code is not None:
            return None
        times = [t for t in (self.dies_at, self.current_job.ends if self.current_job else None) if t is not None]
        if self.stop_asked and self.current_job is None and not self.inbox:
            times.append(self.hub.clock.now)
        if self.outbox:
            times.append(self.hub.clock.now)
        return min(times, default=None)

    def advance(self, now: float) -> bool:
        """Process what happens by ``now``; True if the runner has news."""
        news = bool(self.outbox)
        while self.code is None:
            if self.dies_at is not None and self.dies_at <= now:
                self.code = self.dies_with
                return True
            job = self.current_job
            if self.stop_asked and job is None and not self.inbox:
                self.code = 0
                return True
            if job is None or job.ends is None or job.ends > now:
                return news
            self._end(job)
            news = True
        return news

    def _start_next(self, at: float | None = None) -> None:
        """The next queued job starts ``at`` (the last one's end; default: now), or when it was
        sent if that is later. A test that moves the clock on its own (a runner busy elsewhere)
        sees the queued jobs run meanwhile."""
        if self.current_job is None and self.inbox and self.code is None:
            assignment = self.inbox.popleft()
            kind, seconds = assignment.job[:2]
            start = max(self.hub.clock.now if at is None else at, assignment.sent)
            self.current_job = _Job(assignment, start, None if kind == "hang" else start + seconds)

    def _end(self, job: _Job) -> None:
        kind = job.assignment.job[0]
        self.current_job = None
        if kind in ("crash", "oom", "kill9"):
            self.dies_at, self.dies_with = job.ends, -signal.SIGSEGV if kind == "crash" else -signal.SIGKILL
            if kind == "oom" and self.hub.oom_killed is not None:
                self.hub.oom_killed += 1
            self.current_job = job  # it was running when its worker died
            job.ends = None
            return
        ticket, duration = job.assignment.ticket, (job.ends or 0.0) - job.started
        failing = kind in ("raise", "internal") or (kind == "flaky" and self.hub.flaky_run(job.assignment.job_id) == 1)
        if failing:
            self._report(ticket, Outcome.ERROR, EPOCH + job.started, duration, None, f"{kind} on purpose", internal=kind == "internal")
        else:
            self._report(ticket, Outcome.DONE, EPOCH + job.started, duration, f"row of {job.assignment.job_id}\n", None)
        self._start_next(job.ends)

    def _report(self, ticket: int, outcome: str, started: float, duration: float, row: str | None, error: str | None, internal: bool = False) -> None:
        results = Results([ticket], [outcome], [started], [duration], [0.0], [row], [error], [1 << 20], [duration], [ticket] if internal else [])
        self.outbox.append((RESULTS, results))


class FakeHub:
    """Starts fake workers and moves virtual time for them."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.links: list[FakeLink] = []
        self._flaky_runs: dict[str, int] = {}
        self.oom_killed: int | None = 0
        """The machine's count of out-of-memory kills, as a test sets it."""

    def start(self, slot: int) -> FakeLink:
        link = FakeLink(self, slot, pid=1000 + len(self.links))
        self.links.append(link)
        return link

    def stop_orphans(self) -> list[tuple[int, str]]:
        return []  # fake workers start no programs

    def resumed(self, paused: float) -> None:
        pass  # fake jobs take the fake clock's time, which a pause does not move

    def oom_kills(self) -> int | None:
        return self.oom_killed

    def wait(self, links: Any, timeout: float) -> list[FakeLink]:
        alive = [link for link in links if link.code is None]
        events = [t for link in alive if (t := link.next_event()) is not None]
        limit = self.clock.now + timeout
        self.clock.now = max(self.clock.now, min([*events, limit]))
        return [link for link in alive if link.advance(self.clock.now)]

    def flaky_run(self, job_id: str) -> int:
        """How many times a flaky job has run so far, this time included."""
        self._flaky_runs[job_id] = self._flaky_runs.get(job_id, 0) + 1
        return self._flaky_runs[job_id]

    def started_in(self, slot: int) -> list[FakeLink]:
        return [link for link in self.links if link.slot == slot]
