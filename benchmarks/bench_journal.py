"""A new journal's share: its ids written to the ``job`` table and made unique, as jobsplit does it
(the unique index built once the ids are in: SQLite sorts them and builds it in one pass) against
the way it did until 2026-12-07 (a ``UNIQUE`` column, whose index grows with each insert, in the
plan's random order of ids), both through the same ``Journal.initialize`` in the same run.

Grown insert by insert, the index outgrows SQLite's page cache (2 MB) beyond some 100,000 jobs,
and each insert then reads and writes pages all over it: the time per job grows with the share.
It is spent before the first job starts, at a share's first run (and after ``--fresh``).
Informational: issue 14 sets no target for it.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from pathlib import Path

from jobsplit import journal as journal_module
from jobsplit.journal import Journal

OLD_TABLES = journal_module._TABLES.replace(
    "job_id TEXT NOT NULL                -- 32 hex characters, unique (index job_ids)", "job_id TEXT NOT NULL UNIQUE"
)
assert OLD_TABLES != journal_module._TABLES, "the job table's text changed: update OLD_TABLES"


def share(n: int) -> list[str]:
    """``n`` job ids in an order that is not theirs, as a plan's share is."""
    return [hashlib.sha256(str(i).encode()).hexdigest()[:32] for i in range(n)]


def initialize(ids: list[str], folder: Path, *, old: bool) -> tuple[float, float]:
    """(wall, CPU) seconds of a new journal's ``initialize`` with ``ids``, the old way or the new."""
    tables, index = journal_module._TABLES, journal_module._JOB_INDEX
    if old:
        journal_module._TABLES, journal_module._JOB_INDEX = OLD_TABLES, "SELECT 1"
    try:
        journal = Journal(folder / f"{'old' if old else 'new'}-{len(ids)}.sqlite")
        wall, cpu = time.perf_counter(), time.process_time()
        journal.initialize({"digest": "0" * 64}, ids)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        journal.close()
    finally:
        journal_module._TABLES, journal_module._JOB_INDEX = tables, index
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[20_000, 200_000, 1_000_000], help="share sizes (default 20,000, 200,000 and 1,000,000)")
    args = parser.parse_args()
    print("a new journal's share: ids into `job`, made unique (wall seconds; CPU seconds in brackets)")
    print(f"  {'jobs':>10}  {'index grown by each insert':>28}  {'index built once':>22}  {'old / new':>9}  {'us/job new':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.jobs:
            ids = share(n)
            old_wall, old_cpu = initialize(ids, Path(tmp), old=True)
            new_wall, new_cpu = initialize(ids, Path(tmp), old=False)
            print(f"  {n:>10,}  {old_wall:>17.3f} s ({old_cpu:6.2f})  {new_wall:>11.3f} s ({new_cpu:6.2f})  {old_wall / new_wall:>8.2f}x  {1e6 * new_wall / n:>10.2f}")


if __name__ == "__main__":
    main()
