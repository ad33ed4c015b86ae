"""Where a machine's next job comes from: one module per source of work.

The runner talks only to a :class:`JobSource`. ``static`` is this machine's share of the
coordinator-free plan (the default); a shared queue or a cluster array index implements the
same few calls.
"""

from .base import JobSource, Task
from .static import StaticShare

__all__ = ["JobSource", "StaticShare", "Task"]
