"""The id helper: a second process that hashes a large pool's identity texts while this one
writes them, then sorts half of the ids for the digest while this one sorts the other half.

Writing the texts needs the jobs; hashing and sorting need only the texts, so a pool of ten
million jobs is identified in about half the time on two cores (see benchmarks/bench_plan.py).
The helper is started afresh (``subprocess``), never forked: a forked helper would share the
pool's memory, and this process's reference counting, writing to every job it formats, would
copy each page of the pool (measured with ten million jobs: 4.1 GiB in all, against 2.5 GiB
for this process alone).

The helper writes the ids into memory both processes map (a ``memfd``), so nothing is copied
back. Where that is not available (not Linux, one core) or anything goes wrong (the helper
cannot start or dies, the pool needs the general path), the caller does everything itself:
the ids are the same either way.

The protocol, over the helper's stdin and stdout: chunks of texts (see idhash.texts_of), each
after its length; at end of input the helper answers with the offsets of the upper half's
groups in the sorted ids (written there unsorted, for this process to sort), then, once its
own half is sorted, a status: no repeated id, or the repeated one.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import signal
import struct
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .idhash import GROUPS, ID_BYTES, IdGroups, hash_chunk, sort_groups

HELPER_FLAG = "--jobsplit-id-helper"
"""How an executable built by ``make exe`` is started as the helper (see frozen_hook)."""

SPLIT = GROUPS // 2
"""Groups below this the helper sorts; the others this process sorts."""

_LENGTH = struct.Struct("<I")
_OFFSETS = struct.Struct(f"<{GROUPS - SPLIT + 1}Q")
_STATUS = struct.Struct(f"<?{ID_BYTES}s")
_PIPE_BYTES = 1 << 20
"""The pipe to the helper holds 1 MiB (Linux's default limit for a user), not 64 KiB: with the
smaller pipe, the two processes took turns more than they worked at once."""


@dataclass(frozen=True)
class HelpedIds:
    """The ids the helper computed: in pool order, and in byte order (what the digest covers)."""

    ids: mmap.mmap
    sorted_ids: mmap.mmap
    repeated: bytes | None


_hook_ran = False
"""Set by frozen_hook: this executable can start a copy of itself as the helper."""


def frozen_hook(argv: list[str]) -> None:
    """What an executable built by ``make exe`` runs first (see frozen_hook.py): the helper's
    work, then exit, if started as the helper; else a note that it can start one. An executable
    built without the hook starts no helper: a copy of it would run the entry script instead."""
    global _hook_ran  # one fact about this process, set once at its start
    if argv[1:2] == [HELPER_FLAG]:
        serve(argv[2:])
        sys.exit(0)
    _hook_ran = True


def helper_usable() -> bool:
    """Whether the helper can run here: shared memory by file descriptor, two cores, and when
    frozen, the runtime hook that starts it."""
    frozen_ok = _hook_ran or not getattr(sys, "frozen", False)
    return frozen_ok and hasattr(os, "memfd_create") and len(os.sched_getaffinity(0)) >= 2


def helped_ids(chunks: Iterable[bytes], count: int) -> HelpedIds | None:
    """The ids of ``count`` jobs whose texts ``chunks`` gives, hashed by the helper while the
    chunks are made here. None when the helper fails: the caller then computes the ids itself.
    What ``chunks`` raises stops the helper and goes on."""
    try:
        shared = os.memfd_create("jobsplit-ids", os.MFD_CLOEXEC)
    except OSError:  # e.g. refused by a container's system call filter
        return None
    try:
        ids, sorted_ids = _mapped(shared, count, create=True)
        with _started(count, shared) as helper:
            if helper is None or helper.stdin is None or helper.stdout is None:
                return None
            with contextlib.suppress(OSError):
                fcntl.fcntl(helper.stdin, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
            for chunk in chunks:
                helper.stdin.write(_LENGTH.pack(len(chunk)) + chunk)
            helper.stdin.close()
            answer = helper.stdout.read(_OFFSETS.size)
            if len(answer) != _OFFSETS.size:
                return None
            repeated = sort_groups(sorted_ids, _OFFSETS.unpack(answer))
            status = helper.stdout.read(_STATUS.size)
            if len(status) != _STATUS.size or helper.wait() != 0:
                return None
            found, helper_repeated = _STATUS.unpack(status)
            return HelpedIds(ids, sorted_ids, helper_repeated if found else repeated)
    except OSError:  # no memory to map, or the helper died (a broken pipe)
        return None
    finally:
        os.close(shared)  # the maps keep the memory


def _mapped(shared: int, count: int, *, create: bool = False) -> tuple[mmap.mmap, mmap.mmap]:
    """The two halves of the shared memory: the ids in pool order, then in byte order (from a
    whole page: an mmap's offset must be one)."""
    size = count * ID_BYTES
    sorted_at = -(-size // mmap.PAGESIZE) * mmap.PAGESIZE
    if create:
        os.ftruncate(shared, sorted_at + size)
    return mmap.mmap(shared, size), mmap.mmap(shared, size, offset=sorted_at)


@contextlib.contextmanager
def _started(count: int, shared: int) -> Iterator[subprocess.Popen[bytes] | None]:
    """The helper, started (None if it cannot be), and stopped however this process leaves."""
    try:
        helper = subprocess.Popen(
            [*_helper_command(), str(count), str(shared)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # a failed helper is replaced by this process doing its work
            pass_fds=(shared,),
        )
    except OSError:
        helper = None
    if helper is None:
        yield None
        return
    try:
        yield helper
    finally:
        if helper.returncode is None:
            helper.kill()
        for stream in (helper.stdin, helper.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()
        helper.wait()


def _helper_command() -> list[str]:
    """An executable built by ``make exe`` starts the helper from its runtime hook, before the
    entry script would build the pool; Python starts it from this package, wherever it is, in
    isolated mode (``-I``: no module in the current folder or on PYTHONPATH can stand in for a
    standard one)."""
    if getattr(sys, "frozen", False):
        return [sys.executable, HELPER_FLAG]
    package_parent = str(Path(__file__).resolve().parent.parent)
    return [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {package_parent!r}); from jobsplit.idhelper import serve; serve(sys.argv[1:])"]


def serve(argv: list[str]) -> None:
    """The helper's side: ``argv`` is the job count and the shared memory's descriptor."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's to handle: it stops the helper
    count, shared = int(argv[0]), int(argv[1])
    ids, sorted_ids = _mapped(shared, count)
    groups, written = IdGroups(), 0
    for chunk in _chunks(sys.stdin.buffer):
        hashed = hash_chunk(chunk)
        packed = b"".join(hashed)
        ids[written : written + len(packed)] = packed
        written += len(packed)
        groups.add(hashed)
    if written != len(ids):
        sys.exit(1)  # the caller stopped early: it computes the ids itself
    offsets = groups.offsets()
    groups.move_into(sorted_ids, offsets)
    out = sys.stdout.buffer
    out.write(_OFFSETS.pack(*offsets[SPLIT:]))
    out.flush()
    repeated = sort_groups(sorted_ids, offsets[: SPLIT + 1])
    out.write(_STATUS.pack(repeated is not None, repeated or b""))
    out.flush()


def _chunks(stream: BinaryIO) -> Iterator[bytes]:
    while header := stream.read(_LENGTH.size):
        (length,) = _LENGTH.unpack(header)
        yield stream.read(length)
