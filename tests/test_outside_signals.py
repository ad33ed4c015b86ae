"""A worker stopped by a SIGTERM that jobsplit did not send (issue 12), or by a SIGUSR1 or
SIGUSR2 that the run gets too: Slurm's time limit, preemption and ``scontrol requeue`` (and
``scancel --signal=USR1 --full``) signal every process of the job at once, so the workers may
die of it before the run's own SIGTERM handler has asked them to stop. Their jobs were
interrupted, not crashed: they go back to pending (no failure counted) and the run stops.

In one process with fake workers and a fake clock (see test_runner_logic); test_slurm.py
shows the real thing on a real cluster.
"""

from __future__ import annotations

import signal

import pytest

from test_runner_logic import make  # noqa: F401 - the fixture


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2], ids=["TERM", "USR1", "USR2"])
def test_a_worker_killed_by_an_outside_sigterm_stops_the_run_and_its_job_runs_again(make, signum):
    """SIGUSR1 and SIGUSR2 too, sent to every process of the run: a Slurm user's stop
    (``scancel --signal=USR1 --full`` where Slurm tracks a job's processes by cgroup) reaches the
    workers as well as the run, and killed them (a job's signal, left at its default): their
    jobs were recorded as crashed. (A worker dies of SIGTERM only once it found that its job did
    not send it: the run need not hear it too.)"""
    setup = make([("ok", 1.0, i) for i in range(6)], workers=2)
    runner = setup.runner()
    started = setup.clock.now
    asked: list[int] = []
    """Times the run asked whether to stop since the worker died of a user's signal."""

    def outside_signal() -> bool:
        first = setup.hub.links[0] if setup.hub.links else None
        if first is not None and first.dies_at is None and setup.clock.now >= started + 1.5:
            first.dies_at, first.dies_with = setup.clock.now, -signum  # as `kill -TERM <worker>` would
            if signum != signal.SIGTERM:
                asked.append(0)
        elif asked:
            asked[0] += 1
        return bool(asked) and asked[0] >= 2  # the run hears a user's signal too, a moment after its worker died of it

    assert runner.run(outside_signal) is False  # stopped: not every job settled
    attempts = setup.attempts()
    outcomes = [outcome for job in attempts.values() for _, outcome, _ in job]
    assert "crashed" not in outcomes and runner.counts.failed == 0
    interrupted = [job_id for job_id, job in attempts.items() if job[-1][1:] == ("interrupted", "pending")]
    assert len(interrupted) == 2  # the killed worker's job, and the other worker's, stopped by the runner
    assert len(setup.hub.links) == 2  # no replacement worker was started for the killed one
    assert runner.counts.done == 2  # the first job of each worker, done before the signal


def test_a_worker_killed_by_a_sigusr1_the_run_never_hears_crashed_with_its_job(make):
    """A SIGUSR1 that reaches one worker and not the run (within USER_SIGNAL_WAIT) came from the
    job's side (``kill -USR1 0`` in a program it ran: the worker's process group) or was sent to
    that worker alone: its job crashed, and the run goes on, another worker in its place."""
    setup = make([("ok", 1.0, i) for i in range(6)], workers=2)
    runner = setup.runner()
    started = setup.clock.now

    def job_s_own_signal() -> bool:
        first = setup.hub.links[0] if setup.hub.links else None
        if first is not None and first.dies_at is None and setup.clock.now >= started + 1.5:
            first.dies_at, first.dies_with = setup.clock.now, -signal.SIGUSR1
        return False

    assert runner.run(job_s_own_signal) is True
    outcomes = [outcome for job in setup.attempts().values() for _, outcome, _ in job]
    assert outcomes.count("crashed") == 1 and outcomes.count("done") == 5
