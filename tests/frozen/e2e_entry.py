"""The entry the end-to-end tests freeze: short jobs that log, report progress and draw randomness."""

import logging
import time

import jobsplit

log = logging.getLogger("e2e")


def job(index, random_obj, config, progress):
    pause = config.getfloat("e2e", "pause")
    for step in range(4):
        time.sleep(pause / 4)
        progress.report(step + 1, base=4)
    log.info("job %d finished", index)
    return index, random_obj.random()


pool = [(i,) for i in range(60)]

if __name__ == "__main__":
    jobsplit.main(job, pool)
