"""Live state of every worker, shared between processes without messages.

Each worker owns one slot of a shared array: which job it is running, since when, and the
fraction the job last reported. Workers write these; the parent reads them to draw the display,
to enforce timeouts, and to learn which job a dead worker was running. The slot's last value is
the parent's: whether it is stopping that worker, which then starts no job. One more value, also
the parent's, is how long the run has been paused (Ctrl-Z) so far: a job leaves the pauses it
went through out of its running time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from multiprocessing.context import BaseContext

_FIELDS = 4  # ticket of the running job (-1: idle), its start (monotonic clock), reported fraction, stop asked (1.0)
IDLE = -1
REPORT_INTERVAL = 0.1
"""Seconds between two reports a job publishes (about 10 a second)."""


@dataclass(frozen=True)
class SlotState:
    ticket: int
    started: float
    fraction: float


class ProgressBoard:
    """One slot per worker in a shared ``RawArray`` (passed to workers when they start)."""

    def __init__(self, context: BaseContext, slots: int) -> None:
        self._values = context.RawArray("d", [IDLE, 0.0, 0.0, 0.0] * slots + [0.0])
        self._paused_at = slots * _FIELDS

    def add_pause(self, seconds: float) -> None:
        """The run was paused this long (the parent writes it before it continues the workers)."""
        self._values[self._paused_at] += seconds

    def paused(self) -> float:
        """Seconds the run has been paused so far."""
        return float(self._values[self._paused_at])

    def take(self, slot: int) -> None:
        """A new worker takes the slot: idle, and not stopping."""
        base = slot * _FIELDS
        self._values[base] = IDLE
        self._values[base + 3] = 0.0

    def stop(self, slot: int) -> None:
        """The parent stops the slot's worker (written before it sends the SIGTERM)."""
        self._values[slot * _FIELDS + 3] = 1.0

    def stopping(self, slot: int) -> bool:
        """Whether the parent stops this worker: it starts no other job, even when the one it ran
        outlived its SIGTERM (a handler of the job's own, raising SystemExit or ignoring it)."""
        return bool(self._values[slot * _FIELDS + 3])

    def start(self, slot: int, ticket: int) -> None:
        """A job begins: fraction and start time are written before the ticket."""
        base = slot * _FIELDS
        self._values[base + 2] = 0.0
        self._values[base + 1] = time.monotonic()
        self._values[base] = ticket

    def finish(self, slot: int) -> None:
        self._values[slot * _FIELDS] = IDLE

    def publish(self, slot: int, fraction: float) -> None:
        self._values[slot * _FIELDS + 2] = fraction

    def read(self, slot: int) -> SlotState:
        base = slot * _FIELDS
        ticket, started, fraction = self._values[base : base + 3]
        return SlotState(int(ticket), started, fraction)


class ProgressReporter:
    """What a job gets as ``progress``: call ``progress.report(done, base=total)``.

    Reports are throttled here, in the worker, to about 10 a second: a job may report in a
    tight loop without slowing down, and a report costs no message to the parent.
    """

    __slots__ = ("_board", "_next", "_slot")

    def __init__(self, board: ProgressBoard, slot: int) -> None:
        self._board = board
        self._slot = slot
        self._next = 0.0

    def restart(self) -> None:
        """A new job starts on this worker: its first report is published at once."""
        self._next = 0.0

    def report(self, value: float, base: float = 100) -> None:
        """Say the job is ``value`` out of ``base`` done (e.g. ``report(3, base=10)`` is 30 %).

        Any two numbers do (a ``Decimal``, a ``Fraction``, integers beyond a float's range), and
        no number fails the job; anything else raises a TypeError that says what is expected,
        at the first report rather than hours into the job."""
        now = time.monotonic()
        try:
            finished = bool(value >= base)
        except ArithmeticError:  # a Decimal NaN, which compares to nothing: no progress to show, no failure
            finished = False
        except (TypeError, ValueError):  # ValueError: a NumPy array of several values has no truth value
            raise _not_numbers(value, base) from None
        if now >= self._next or finished:
            self._next = now + REPORT_INTERVAL
            self._board.publish(self._slot, _fraction(value, base))


def _fraction(value: float, base: float) -> float:
    """``value / base`` within [0, 1]; NaN and a base of 0 give 0."""
    try:
        if not base:
            return 0.0
        try:
            quotient = float(value / base)
        except TypeError:  # two kinds of number that do not divide each other (a Fraction by a Decimal)
            quotient = float(value) / float(base)
        return min(1.0, max(0.0, quotient))  # in this order, NaN gives 0
    except OverflowError:  # integers whose quotient is beyond a float: far out, one way or the other
        return 1.0 if (value > 0) == (base > 0) else 0.0
    except ArithmeticError:  # a signalling Decimal NaN
        return 0.0
    except (TypeError, ValueError):  # a NumPy array of one value compares, but is no number
        raise _not_numbers(value, base) from None


def _not_numbers(value: object, base: object) -> TypeError:
    return TypeError(f"progress.report(done, base=total) takes two numbers; got {value!r} and base={base!r}")
