"""What a job's random draws start from: its own ``random_obj``, and the module-level
generators it may draw from instead (``random.random()``, NumPy's ``numpy.random.rand()``).

Each is seeded from (the run's seed, the job's id) alone, by SHA-2 under a label of its own,
so that the same job draws the same numbers on any machine, worker and run, different jobs
draw different streams, and a job's three generators never share one.
"""

from __future__ import annotations

import hashlib
import random
import sys
from typing import Any


def job_random(seed: bytes, job_id: str) -> random.Random:
    """The job's own stream: the same job draws the same numbers on any machine and worker.

    Made without a Python-level ``__new__`` or ``__init__`` (each would go through the class's
    ``__getattribute__``): a short job's worker makes one per job."""
    rng = _new_random(_SeededOnFirstUse)
    _attribute(rng, "__dict__")["_seed_on_first_use"] = (seed, job_id)
    return rng


_new_random = random.Random.__new__
_attribute = object.__getattribute__


def job_seed(seed: bytes, job_id: str) -> int:
    """The integer a job's ``random.Random`` is seeded with: SHA-256 of (seed, job id)."""
    return int.from_bytes(hashlib.sha256(b"jobsplit/random/v1\n" + seed + bytes.fromhex(job_id)).digest(), "big")


class _SeededOnFirstUse(random.Random):
    """A ``random.Random`` that seeds itself when the job first touches it.

    Seeding costs a hash and the Mersenne Twister's set-up, about 5 us: more than a short
    job's whole dispatch, and many jobs never draw a number. On first attribute access the
    object seeds itself and becomes a plain ``random.Random``, so later calls run at full
    speed and the stream is exactly ``random.Random(job_seed(seed, job_id))``'s.

    Made by :func:`job_random` only.
    """

    def __getattribute__(self, name: str) -> Any:
        state = object.__getattribute__(self, "__dict__")
        if "_seed_on_first_use" in state:
            object.__setattr__(self, "__class__", random.Random)
            random.Random.seed(self, job_seed(*state.pop("_seed_on_first_use")))
        return object.__getattribute__(self, name)


def seed_module_generators(seed: bytes, job_id: str) -> None:
    """Seed, before the job, the generators its module-level calls draw from.

    Without this they were the worker's, carried from job to job, and NumPy's was the same in
    every worker: forked from a runner whose script had drawn from it or seeded it
    (``numpy.random.seed(1)`` "for reproducibility"), every worker drew the same numbers, so a
    Monte Carlo study's jobs on different workers repeated each other's samples. (Python's own
    ``random`` is re-seeded in every forked process, but not for a spawned worker that runs the
    script's ``random.seed(1)`` again.) NumPy's is seeded only where NumPy is loaded, with 256
    bits, not one 32-bit integer: among a million jobs, some hundred pairs would share a stream.
    About 5 us a job, and 8 more where NumPy is loaded."""
    digest = hashlib.sha512(b"jobsplit/module-random/v1\n" + seed + bytes.fromhex(job_id)).digest()
    random.seed(int.from_bytes(digest[:32], "big"))
    numpy_seed = getattr(_numpy_random(), "seed", None)  # None: not loaded, or half-imported
    if numpy_seed is not None:
        numpy_seed([int.from_bytes(digest[at : at + 4], "big") for at in range(32, 64, 4)])


def _numpy_random() -> Any:
    """``numpy.random`` where NumPy is loaded, else None. NumPy 2 loads ``numpy.random`` on first
    use: a worker whose script imported NumPy but never touched ``numpy.random`` (each spawned
    worker) would seed nothing before its first job, whose first draw then loaded it and drew
    from a generator seeded by the system. Loaded here instead, once a worker."""
    module = sys.modules.get("numpy.random")
    if module is None and (numpy := sys.modules.get("numpy")) is not None:
        module = getattr(numpy, "random", None)
    return module
