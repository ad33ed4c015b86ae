"""Where a machine's next job comes from: one module per source of work.

The runner talks only to a :class:`JobSource`. ``static`` is this machine's share of the
coordinator-free plan (the default; a member of a Slurm array runs its own static share);
``redis``, a shared queue (``--balance``), implements the same few calls.
"""

from .base import JobSource, Task
from .static import StaticShare

__all__ = ["JobSource", "StaticShare", "Task"]
