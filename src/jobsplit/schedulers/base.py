"""What every scheduler module provides to a run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Allocation:
    """What a batch scheduler granted this process; None where it said nothing."""

    task: tuple[str, int] | None = None
    """(the variable that says it, the array task id): which member of an array this run is."""
    cpus: int | None = None
    """CPUs granted to this task: the default number of workers."""
