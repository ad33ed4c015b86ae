"""The one entry the end-to-end tests run and freeze (one program: one build per test session).

Its config chooses the job. With ``[e2e] pause``: short jobs that log, report progress and draw
randomness (with ``[e2e] python = yes``, each first runs ``sys.executable -c pass``); with ``[e2e] joblib = yes``: each job sums cubes on a joblib pool of its own, and
with ``[e2e] pool = forkserver`` (or another start method) on a multiprocessing pool of its own.
With ``[experiment] base`` (the shared-queue tests): each job sleeps the base time
times this host's factor (JOBSPLIT_TEST_FACTOR: a slower host), then draws from its random
stream. The pool has 60 jobs, or JOBSPLIT_TEST_POOL.

With JOBSPLIT_TEST_GATE (a folder), each job writes its index to the file ``starts`` there as it
starts, and those that start after the first JOBSPLIT_TEST_GATE_AFTER (counted over every host
of this machine) wait until the file ``open`` is in it: a test acts on the runs mid-way however
long it takes (on a busy host, runs of a few seconds had ended first).
"""

import logging
import os
import subprocess
import sys
import time

import jobsplit
from e2e_steps import STEPS

log = logging.getLogger("e2e")


def cube(x):
    return x**3


def wait_at_the_gate(index):
    folder = os.environ.get("JOBSPLIT_TEST_GATE")
    if not folder:
        return
    starts = os.path.join(folder, "starts")
    fd = os.open(starts, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{index}\n".encode())
    finally:
        os.close(fd)
    with open(starts) as f:
        started = len(f.read().split())
    while started > int(os.environ.get("JOBSPLIT_TEST_GATE_AFTER", "0")) and not os.path.exists(os.path.join(folder, "open")):
        time.sleep(0.01)


def job(index, random_obj, config, progress):
    wait_at_the_gate(index)
    if config.getboolean("e2e", "joblib", fallback=False):  # a pool of the job's own, as scikit-learn's n_jobs starts
        from joblib import Parallel, delayed

        return index, sum(Parallel(n_jobs=2)(delayed(cube)(i) for i in range(index + 1)))
    if config.has_option("e2e", "pool"):
        import multiprocessing

        with multiprocessing.get_context(config.get("e2e", "pool")).Pool(2) as workers:
            return index, sum(workers.map(cube, range(index + 1)))
    if config.has_section("experiment"):
        time.sleep(config.getfloat("experiment", "base") * float(os.environ.get("JOBSPLIT_TEST_FACTOR", "1")))
        return index, random_obj.random()
    if config.getboolean("e2e", "python", fallback=False):  # a program of the job's own started from sys.executable, as libraries do
        subprocess.run([sys.executable, "-c", "pass"], check=True)
    pause = config.getfloat("e2e", "pause")
    for step in range(STEPS):
        time.sleep(pause / STEPS)
        progress.report(step + 1, base=STEPS)
    log.info("job %d finished", index)
    return index, random_obj.random()


pool = [(i,) for i in range(int(os.environ.get("JOBSPLIT_TEST_POOL", "60")))]

if __name__ == "__main__":
    jobsplit.main(job, pool)
