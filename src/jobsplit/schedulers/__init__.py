"""Batch schedulers, one module each: what the scheduler granted this process (read from its
environment), and how an array of jobsplit machines is written and submitted to it.

Only Slurm so far (``slurm``: pure rendering and splitting; ``slurm_commands``: asking the
cluster). HTCondor would follow the same shape: ``queue N`` for the array, ``--array-index
$(ProcId)`` on the command line, ``request_cpus`` for the workers.
"""

from __future__ import annotations

from collections.abc import Mapping

from .base import Allocation
from .slurm import allocation as slurm_allocation

__all__ = ["Allocation", "current_allocation"]


def current_allocation(environ: Mapping[str, str]) -> Allocation:
    """What the scheduler that started this process granted it (nothing outside a scheduler)."""
    return slurm_allocation(environ)
