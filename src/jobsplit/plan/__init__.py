"""Splitting the pool among machines: pure, deterministic, one strategy per module.

Every host runs the same strategy on the same (digest-covered) input and so computes the
same plan without talking to the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..machines import Machine
from .base import PlanInput, Strategy
from .cost import CostStrategy
from .quota import QuotaStrategy
from .rendezvous import RendezvousStrategy

STRATEGIES: dict[str, Strategy] = {s.name: s for s in (QuotaStrategy(), RendezvousStrategy(), CostStrategy())}
DEFAULT_STRATEGY = QuotaStrategy.name


@dataclass(frozen=True)
class Plan:
    """Which pool positions each machine runs, in run order."""

    strategy: str
    machines: tuple[Machine, ...]
    shares: tuple[Sequence[int], ...]

    def share_of(self, machine_name: str) -> Sequence[int]:
        for machine, share in zip(self.machines, self.shares):
            if machine.name == machine_name:
                return share
        raise KeyError(machine_name)


def make_plan(strategy: str, plan_input: PlanInput) -> Plan:
    shares = STRATEGIES[strategy].split(plan_input)
    return Plan(strategy, tuple(plan_input.machines), tuple(shares))


__all__ = ["DEFAULT_STRATEGY", "STRATEGIES", "Plan", "PlanInput", "Strategy", "make_plan"]
