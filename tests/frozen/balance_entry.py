"""The entry the balance tests run (and freeze): each job sleeps a base time times this host's
factor (JOBSPLIT_TEST_FACTOR: a slower host), then draws from its random stream."""

import os
import time

import jobsplit


def job(index, random_obj, config, progress):
    time.sleep(config.getfloat("experiment", "base") * float(os.environ.get("JOBSPLIT_TEST_FACTOR", "1")))
    return index, random_obj.random()


pool = [(i,) for i in range(int(os.environ.get("JOBSPLIT_TEST_POOL", "600")))]

if __name__ == "__main__":
    jobsplit.main(job, pool)
