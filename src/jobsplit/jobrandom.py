"""What a job's random draws start from: its own ``random_obj``, and the module-level
generators it may draw from instead (NumPy's ``numpy.random.rand()``, ``random.random()``).

``random_obj`` and NumPy's are seeded from (the run's seed, the job's id) alone, by SHA-256
under labels of their own, so that the same job draws the same numbers on any machine, worker
and run, different jobs draw different streams, and the two never share one. ``random``'s is
seeded per worker, from the system.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.util
import random
import sys
import threading
import types
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
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


def seed_numpy_random(seed: bytes, job_id: str) -> None:
    """Seed NumPy's module-level generator (``numpy.random.rand()`` and the like) before the
    job, where NumPy is loaded, with 256 bits from (seed, job id): among a million jobs seeded
    with one 32-bit integer each, some hundred pairs would share a stream. Where it is not, the
    job that loads it has it seeded so as it loads (see ``prepare_module_generators``).

    Forked from a runner whose script had seeded it (``numpy.random.seed(1)`` "for
    reproducibility") or drawn from it, every worker's was in the same state, and jobs on
    different workers drew the same numbers; and NumPy code draws from it deep in helpers that
    no ``random_obj`` reaches. About 9 us a job where NumPy is loaded, nothing elsewhere."""
    module = _numpy_random()
    if module is None:
        _NUMPY_IMPORT.job = (seed, job_id)
    else:
        _seed_numpy(module, seed, job_id)


def _seed_numpy(module: Any, seed: bytes, job_id: str) -> None:
    """Seed ``numpy.random`` (the module) with 8 words of SHA-256 under a label of its own."""
    numpy_seed = getattr(module, "seed", None)  # None: half-imported
    if numpy_seed is not None:
        key = hashlib.sha256(b"jobsplit/numpy-random/v1\n" + seed + bytes.fromhex(job_id)).digest()
        numpy_seed([int.from_bytes(key[at : at + 4], "big") for at in range(0, 32, 4)])


def _numpy_random() -> Any:
    """``numpy.random`` where NumPy is loaded, else None. NumPy 2 loads ``numpy.random`` on first
    use: a worker whose script imported NumPy but never touched ``numpy.random`` (each spawned
    worker) would seed nothing before its first job, whose first draw then loaded it and drew
    from a generator seeded by the system. Loaded here instead, once a worker."""
    module = sys.modules.get("numpy.random")
    if module is None and (numpy := sys.modules.get("numpy")) is not None:
        module = getattr(numpy, "random", None)
    return module


def prepare_module_generators() -> None:
    """As a worker starts: seed ``random``'s module-level generator from the system, and have
    NumPy's seeded for the job that loads it, if one does.

    ``random``: a spawned worker has run the script's ``random.seed(1)`` again, and would repeat
    the other workers' stream (a forked one is seeded anew by Python itself). Not per job, as
    NumPy's: that cost 7 us of CPU on every job of every script (a quarter more for a no-op
    job, bench_dispatch), and ``random_obj`` has the same methods, seeded per job.

    NumPy: a job that imports it in its own body (``def job(...): import numpy as np``) loads it
    after its worker seeded nothing, so each worker's first job drew from a generator seeded by
    the system: other numbers in every run."""
    random.seed()
    if "numpy" not in sys.modules and _NUMPY_IMPORT not in sys.meta_path:
        sys.meta_path.insert(0, _NUMPY_IMPORT)


def leave_module_generators() -> None:
    """In a process a job forks (a ``multiprocessing`` pool's): NumPy, loaded there, is seeded by
    the system as anywhere else, not every such process with the job's own stream."""
    _NUMPY_IMPORT.job = None
    _NUMPY_IMPORT.leave()


class _SeedNumpyOnImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: hands ``numpy.random``'s spec, as the other finders make it, to a
    loader that seeds the module as it loads, for the job that loads it (``job``); then leaves
    ``sys.meta_path`` (a mere look for the spec, ``importlib.util.find_spec``, loads nothing)."""

    def __init__(self) -> None:
        self.job: tuple[bytes, str] | None = None
        self._looking = threading.local()

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None) -> ModuleSpec | None:
        if fullname != "numpy.random" or getattr(self._looking, "now", False):
            return None
        self._looking.now = True  # the look below comes through here again
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._looking.now = False
        if spec is not None and spec.loader is not None:
            spec.loader = _SeedingLoader(spec.loader, self)
        return spec

    def leave(self) -> None:
        try:
            sys.meta_path.remove(self)
        except ValueError:
            pass  # left already


class _SeedingLoader(importlib.abc.Loader):
    """``numpy.random``'s own loader, which seeds the module once it has run."""

    def __init__(self, loader: importlib.abc.Loader, finder: _SeedNumpyOnImport) -> None:
        self.loader, self.finder = loader, finder

    def create_module(self, spec: ModuleSpec) -> types.ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        self.finder.leave()  # a module loads once; every other import is left alone
        module.__loader__ = self.loader  # the module keeps its own loader, not this one
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        if self.finder.job is not None:
            _seed_numpy(module, *self.finder.job)


_NUMPY_IMPORT = _SeedNumpyOnImport()
