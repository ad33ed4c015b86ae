"""Native thread pools (OpenMP, BLAS) sized to each worker's share of the cores.

NumPy's BLAS, and every OpenMP library, start one thread per core in each process that loads
them: with one worker per core, a job's matrix product ran as many threads as there are cores,
in every worker at once. Twenty-four NumPy jobs (products and eigenvalues of 300 x 300 matrices)
took 25.2 s on 2 workers here, against 3.3 s with one BLAS thread each. So each worker gets
``usable cores // workers`` threads (at least one), as joblib gives its own workers: by the
variables these libraries read when they load (which the programs a job runs inherit too), and,
for those already loaded when the workers were forked (an entry that imports NumPy at its top),
by ``threadpoolctl``, which sets them in place. A user who set any of the variables chose for
themselves: nothing is changed then.
"""

from __future__ import annotations

import os
import sys

THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMBA_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
"""What OpenMP, OpenBLAS, MKL, BLIS, Apple's Accelerate, Numba and NumExpr read (joblib's list)."""

_LOADERS = ("numpy", "scipy", "torch", "numexpr", "numba", "sklearn", "tensorflow", "jax")
"""Modules that load native thread pools: when none is imported, none can be loaded yet."""


def size_thread_pools(cores: int, workers: int) -> int | None:
    """Set the variables for ``workers`` sharing ``cores`` (before the workers start: they and
    the programs they run inherit them); the threads each worker gets, or None where the user
    set a variable already."""
    if any(name in os.environ for name in THREAD_VARIABLES):
        return None
    threads = max(1, cores // max(1, workers))
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    return threads


def limit_loaded_thread_pools(threads: int) -> None:
    """In a worker: the thread pools loaded before it was forked, which read the variables
    before they were set, to ``threads`` each."""
    if not any(name in sys.modules for name in _LOADERS):
        return  # threadpoolctl would find nothing, and takes some 20 ms to import
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)
