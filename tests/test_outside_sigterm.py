"""A worker stopped by a SIGTERM that jobsplit did not send (issue 12): Slurm's time limit,
preemption and ``scontrol requeue`` signal every process of the job at once, so the workers may
die of it before the run's own SIGTERM handler has asked them to stop. Their jobs were
interrupted, not crashed: they go back to pending (no failure counted) and the run stops.

In one process with fake workers and a fake clock (see test_runner_logic); test_slurm.py
shows the real thing on a real cluster.
"""

from __future__ import annotations

import signal

from test_runner_logic import make  # noqa: F401 - the fixture


def test_a_worker_killed_by_an_outside_sigterm_stops_the_run_and_its_job_runs_again(make):
    setup = make([("ok", 1.0, i) for i in range(6)], workers=2)
    runner = setup.runner()
    started = setup.clock.now

    def outside_sigterm() -> bool:
        first = setup.hub.links[0] if setup.hub.links else None
        if first is not None and first.dies_at is None and setup.clock.now >= started + 1.5:
            first.dies_at, first.dies_with = setup.clock.now, -signal.SIGTERM  # as `kill -TERM <worker>` would
        return False  # the run itself is never asked to stop

    assert runner.run(outside_sigterm) is False  # stopped: not every job settled
    attempts = setup.attempts()
    outcomes = [outcome for job in attempts.values() for _, outcome, _ in job]
    assert "crashed" not in outcomes and runner.counts.failed == 0
    interrupted = [job_id for job_id, job in attempts.items() if job[-1][1:] == ("interrupted", "pending")]
    assert len(interrupted) == 2  # the killed worker's job, and the other worker's, stopped by the runner
    assert len(setup.hub.links) == 2  # no replacement worker was started for the killed one
    assert runner.counts.done == 2  # the first job of each worker, done before the signal
