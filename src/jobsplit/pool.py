"""Job identity: a canonical text for each job's arguments, and its id.

Every host must give every job the same id, whatever its Python version, platform, hash
seed or pool order, so ids come from SHA-256 over canonical JSON (sorted keys, no spaces,
shortest float repr), never from ``hash()``, ``pickle`` or a position in the pool.

A job is a tuple of positional arguments, a dict of keyword arguments, or any other value,
which is the single positional argument (as ``map`` would pass it).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import itertools
import json
import math
import mmap
import numbers
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, overload

from .digits import every_digit
from .errors import UserError
from .idhash import ID_BYTES, ID_DOMAIN, IdGroups, hash_chunk, sort_groups
from .idhelper import helped_ids, helper_usable
from .text import article

HELPER_FROM = 500_000
"""Pools of this many jobs or more are identified with the id helper's help (see idhelper), where
this host can run it. Its start takes about 0.06 s: here it broke even at about 200,000 jobs and
took 0.50 s instead of 0.79 at 600,000."""

IdBuffer = bytes | bytearray | mmap.mmap
"""Packed ids: computed here, or by the id helper into shared memory."""

_SCALARS = frozenset({str, int, float, bool, type(None)})
_MAX_DEPTH = 64


def _refuse(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} has no canonical JSON")  # unreachable after _normalize


def _make_encoder() -> Callable[[Any], str]:
    """Canonical JSON: sorted keys, no spaces, UTF-8 kept, shortest float repr.

    The C encoder is built once: ``JSONEncoder.encode`` would rebuild it for every job.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator (e.g. PyPy): the same text, more slowly
        return json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True, check_circular=False).encode
    chunks = make(None, _refuse, json.encoder.encode_basestring, None, ":", ",", True, False, True)
    return lambda value: "".join(chunks(value, 0))


_encode = _make_encoder()


_ESCAPED = bytes(range(0x20)) + b'"\\'
"""What the encoder escapes in a string, as UTF-8 bytes (non-ASCII text is kept as it is, and
no byte of a multi-byte character is below 0x80)."""

JobKey = Callable[[Any], Any]


def canonical_json(value: Any, where: str = "value") -> str:
    """The canonical JSON text of a JSON-like value; raises UserError naming ``where``."""
    return _encode(_normalize(value, where, 0))


def call_args(job: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """How the job function is called with this job: ``(args, kwargs)``."""
    if isinstance(job, tuple):
        return job, {}
    if isinstance(job, dict):
        return (), job
    return (job,), {}


def identity_text(job: Any, position: int, key: JobKey | None = None) -> str:
    """The canonical JSON that a job's id hashes (its ``Job Args`` column).

    Positional arguments encode as a JSON array, keyword arguments as an object. With
    ``key``, the text is the canonical JSON of ``key(job)`` instead. Integers are written whole,
    however many digits they have (see ``digits``).
    """
    try:
        return _identity_text(job, position, key)
    except ValueError:  # an int with more digits than str() converts by default
        with every_digit():
            return _identity_text(job, position, key)


def _identity_text(job: Any, position: int, key: JobKey | None) -> str:
    if key is not None:
        try:
            keyed = key(job)
        except Exception as exc:  # noqa: BLE001 - the user's key function is part of the input
            raise UserError(f"key(pool[{position}]) raised {type(exc).__name__}: {exc}; fix the key function passed to jobsplit.main") from None
        return canonical_json(keyed, f"key(pool[{position}])")
    if type(job) is tuple and _SCALARS.issuperset(map(type, job)):  # the common case, without a walk
        return _encode(job)
    where = f"pool[{position}]"
    if isinstance(job, tuple):
        return _encode([_normalize(arg, f"{where}[{i}]", 1) for i, arg in enumerate(job)])
    if isinstance(job, dict):
        return _encode(_normalize(job, where, 0))
    return _encode([_normalize(job, where, 1)])


def id_of_text(text: str) -> bytes:
    """The binary job id of an identity text."""
    return hashlib.sha256(ID_DOMAIN + _utf8(text)).digest()[:ID_BYTES]


def _utf8(text: str) -> bytes:
    """What an identity text hashes: its UTF-8, where a lone surrogate (``os.listdir`` gives one
    for each byte of a file name that is not UTF-8) is written as its JSON escape, ``\\udce9``:
    the text its ``Job Args`` cell shows, which JSON reads back as the very same string. No
    other text hashes so (the encoder doubles a backslash of the text)."""
    return text.encode("utf-8", "backslashreplace")


def job_id(job: Any, position: int = 0, key: JobKey | None = None) -> bytes:
    """The binary id of one job (``.hex()`` gives the 32-character id shown everywhere)."""
    return id_of_text(identity_text(job, position, key))


class JobIds(Sequence[bytes]):
    """Binary job ids in pool order, packed 16 bytes apiece in one buffer: 160 MB for ten
    million jobs, where a list of ``bytes`` objects would take more than half a gigabyte."""

    __slots__ = ("_buffer",)

    def __init__(self, buffer: IdBuffer) -> None:
        self._buffer = buffer

    def __len__(self) -> int:
        return len(self._buffer) // ID_BYTES

    @overload
    def __getitem__(self, index: int) -> bytes: ...

    @overload
    def __getitem__(self, index: slice) -> list[bytes]: ...

    def __getitem__(self, index: int | slice) -> bytes | list[bytes]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        start = index * ID_BYTES
        return bytes(self._buffer[start : start + ID_BYTES])

    def __iter__(self) -> Iterator[bytes]:
        buffer = bytes(self._buffer) if isinstance(self._buffer, bytearray) else self._buffer
        return (buffer[i : i + ID_BYTES] for i in range(0, len(buffer), ID_BYTES))

    def position(self, job_id: bytes, start: int = 0) -> int:
        """The first position at or after ``start`` that holds ``job_id`` (-1 if none)."""
        at = start * ID_BYTES
        while (at := self._buffer.find(job_id, at)) >= 0:
            if at % ID_BYTES == 0:
                return at // ID_BYTES
            at += 1
        return -1


class JobPool:
    """The user's jobs in the user's order, each with its id.

    Only the ids are kept for the whole pool, packed (see JobIds), and once more in sorted
    order for the digest: 32 bytes a job. A job's identity text is recomputed when it runs.
    Two equal jobs are refused here, naming both positions.
    """

    def __init__(self, jobs: Iterable[Any], key: JobKey | None = None) -> None:
        if isinstance(jobs, (str, bytes)) or not isinstance(jobs, Iterable):
            what = "None" if jobs is None else f"{article(type(jobs).__name__)} {type(jobs).__name__}"
            raise UserError(f"the pool passed to jobsplit.main is {what}; pass a list (or any iterable) of the jobs' arguments, e.g. [(1, 'a'), (2, 'b')]")
        self.jobs: list[Any] = jobs if type(jobs) is list else list(jobs)  # the user's list is not copied
        self.key = key
        with every_digit():  # whole integers, as identity_text writes them
            ids, sorted_ids, repeated = self._identify()
        self.ids = JobIds(ids)
        if repeated is not None:
            first = self.ids.position(repeated)
            second = self.ids.position(repeated, first + 1)
            raise UserError(f"pool[{first}] and pool[{second}] are the same job (id {repeated.hex()}); remove the duplicate, or pass key= to jobsplit.main to tell them apart")
        self._sorted = sorted_ids

    def __len__(self) -> int:
        return len(self.jobs)

    def sorted_ids(self) -> IdBuffer:
        """Every id in byte order, packed: what the digest covers (pool order never matters)."""
        return self._sorted

    def ids_hex(self, positions: Iterable[int]) -> list[str]:
        """The hex ids of ``positions``, in their order: a share's ids, or a chunk of ``plan
        --json``, without a method call per job (a third of the time)."""
        buffer, size = self.ids._buffer, ID_BYTES
        return [buffer[size * p : size * p + size].hex() for p in positions]

    def identity_text(self, position: int) -> str:
        return identity_text(self.jobs[position], position, self.key)

    def _identify(self) -> tuple[IdBuffer, IdBuffer, bytes | None]:
        """The ids in pool order and in byte order, and the first repeated id (or None).

        The common pool, tuples of plain scalars, takes one tight pass (with the id helper's
        help when it is large); any other pool, or one with ``key=``, the general path, which
        names bad jobs."""
        if self.key is None:
            try:
                if len(self.jobs) >= HELPER_FROM and helper_usable():
                    helped = helped_ids(_plain_texts(self.jobs), len(self.jobs))
                    if helped is not None:
                        return helped.ids, helped.sorted_ids, helped.repeated
                return _ordered_and_sorted(map(hash_chunk, _plain_texts(self.jobs)))
            except _NotPlain:
                pass  # the general path says which job is not plain
        return _ordered_and_sorted(self._general_ids())

    def _general_ids(self, chunk: int = 512) -> Iterator[list[bytes]]:
        """Each job's id made on its own, by the encoder (or from ``key``), which names a bad job."""
        for start in range(0, len(self.jobs), chunk):
            yield [job_id(job, position, self.key) for position, job in enumerate(self.jobs[start : start + chunk], start)]


def _ordered_and_sorted(id_chunks: Iterable[Sequence[bytes]]) -> tuple[bytearray, bytearray, bytes | None]:
    """The ids of ``id_chunks`` in their order and in byte order, and the first repeated id (or
    None). Sorting goes group by group (see IdGroups)."""
    in_order, groups = bytearray(), IdGroups()
    for ids in id_chunks:
        in_order += b"".join(ids)
        groups.add(ids)
    offsets = groups.offsets()
    ordered = bytearray(offsets[-1])
    groups.move_into(ordered, offsets)
    return in_order, ordered, sort_groups(ordered, offsets)


class _NotPlain(Exception):
    """The pool is not all tuples of plain scalars: its ids take the general path."""


def _plain_texts(jobs: list[Any]) -> Iterator[bytes]:
    """What the ids of a pool of tuples of plain scalars hash (see _id_texts); _NotPlain at the
    first chunk that is not."""
    for chunk in _id_texts(jobs, ID_DOMAIN):
        if chunk is None:
            raise _NotPlain
        yield chunk


def _id_texts(jobs: list[Any], prefix: bytes, chunk: int = 512) -> Iterator[bytes | None]:
    """What each job's id hashes, a chunk of jobs at a time: ``prefix`` + the job's canonical
    JSON, UTF-8, each followed by a NUL (see idhash.texts_of). Each chunk is checked and
    formatted while it is in the CPU's cache, in memory the next chunk reuses. (At 4,096 jobs a
    chunk, a pool with arguments of 100 characters or more took fresh pages from the system for
    every chunk's texts: with 1,000 characters, 5.0 us a job against 3.0 at 512, the difference
    mostly page faults.) None (and the end) at the first chunk holding a job that is not a tuple
    of plain scalars, which the general path handles."""
    text_prefix = prefix.decode()
    for start in range(0, len(jobs), chunk):
        part = jobs[start : start + chunk]
        if set(map(type, part)) != {tuple}:
            yield None
            return
        text = _uniform_text(part, text_prefix)
        if text is None:
            if not _SCALARS.issuperset(map(type, itertools.chain.from_iterable(part))):
                yield None
                return
            text = "".join([text_prefix + _encode(job) + "\0" for job in part])
        yield _utf8(text)


def identity_texts(jobs: list[Any]) -> list[str] | None:
    """The identity texts of a batch of jobs without ``key=`` (what a worker writes in each row's
    ``Job Args``), made at once when they are tuples of one shape (see _uniform_text): about a
    microsecond a job less than one encoder call each. None otherwise: each is made on its own."""
    if not jobs or set(map(type, jobs)) != {tuple}:
        return None
    try:
        text = _uniform_text(jobs, "")
    except ValueError:  # an int of more digits than str() converts by default: identity_text writes it whole
        return None
    if text is None:
        return None
    texts = text.split("\0")
    texts.pop()  # after the last NUL
    return texts


def _uniform_text(jobs: list[tuple[Any, ...]], prefix: str) -> str | None:
    """``prefix`` + the canonical JSON of each job, each followed by a NUL, when every job is a
    tuple of the same length whose places each hold one kind: int, finite float or str (the shape
    of most parameter grids); else None.

    The checks are C-level passes over one flat list of the places, and the text is one
    %-format for all the jobs rather than one encoder call per job: ``%d`` of an int, ``%r``
    (shortest repr) of a finite float and the encoder's own escaping of a string (or quotes
    alone, when no string of the place holds anything to escape) are exactly the encoder's
    text. A NUL separates the jobs' texts: JSON text never holds one (it escapes it).
    """
    lengths = set(map(len, jobs))
    if len(lengths) != 1:
        return None
    (width,) = lengths
    values = list(itertools.chain.from_iterable(jobs))
    spec = []
    for k in range(width):
        place = values[k::width]
        kinds = set(map(type, place))
        if kinds == {str}:
            if _escapes_nothing("".join(place)):
                spec.append('"%s"')  # the encoder would only add the quotes (the common case, without a call per string)
            else:
                values[k::width] = map(json.encoder.encode_basestring, place)
                spec.append("%s")
        elif kinds == {int}:
            spec.append("%d")
        elif kinds == {float} and all(map(math.isfinite, place)):  # NaN and infinities are spelled otherwise
            spec.append("%r")
        else:
            return None
    if not spec:
        return None
    return ((prefix + "[" + ",".join(spec) + "]\0") * len(jobs)) % tuple(values)


def _escapes_nothing(text: str) -> bool:
    """Whether the encoder writes ``text`` as it is (between quotes): one C pass deleting what it
    would escape from the UTF-8, about a seventh of a regex search's time (0.14 against 0.97 us a
    200-character path here)."""
    data = text.encode("utf-8", "surrogatepass")  # a lone surrogate is kept, as the encoder keeps it (see _utf8)
    return len(data.translate(None, _ESCAPED)) == len(data)


def _normalize(value: Any, where: str, depth: int) -> Any:
    """A plain JSON-like copy of ``value``; anything without a stable encoding is a UserError."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if depth > _MAX_DEPTH:
        raise UserError(f"{where} is nested more than {_MAX_DEPTH} levels deep (or contains itself); flatten it or pass key= to jobsplit.main")
    if isinstance(value, (list, tuple)):
        return [_normalize(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for k, item in value.items():
            if not isinstance(k, str):
                raise UserError(f"{where} has a key {k!r} of type {type(k).__name__}; dict keys in jobs must be str (or pass key= to jobsplit.main)")
            out[str(k)] = _normalize(item, f"{where}[{k!r}]", depth + 1)
        return out
    if isinstance(value, numbers.Integral):  # int subclasses, IntEnum, numpy integers
        return int(value)
    if kind.__module__ == "numpy" and kind.__name__ in ("bool", "bool_"):  # NumPy's bool, as a comparison of arrays gives it: no numbers.Integral
        return bool(value)
    if isinstance(value, float) or (isinstance(value, numbers.Real) and kind.__module__ == "numpy"):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, os.DirEntry):  # a path to the id, but a job gets its values as they are, and a worker cannot receive one (not picklable)
        raise UserError(f"{where} is an os.DirEntry (from os.scandir), which cannot be sent to a worker process; pass its path instead: entry.path, or pathlib.Path(entry)")
    if isinstance(value, os.PathLike) and isinstance(path := os.fspath(value), str):  # pathlib's: the job gets the path, its id hashes the text
        return path
    raise UserError(
        f"{where} is {article(_type_name(value))} {_type_name(value)}, which has no stable encoding; use JSON-like values "
        f"(None, bool, int, float, str, a path, list, tuple, dict with str keys){_way_out(value)}"
    )


def _way_out(value: Any) -> str:
    """The end of the refusal: how such a value gives a stable encoding."""
    if dataclasses.is_dataclass(value):
        return " or pass key=dataclasses.asdict to jobsplit.main, which identifies each job by its fields"
    if isinstance(value, enum.Enum):
        return " (its .value or .name gives one) or pass key= to jobsplit.main"
    if getattr(value, "ndim", None) == 0 and callable(getattr(value, "item", None)):  # a NumPy scalar
        return " (its .item() gives its Python value) or pass key= to jobsplit.main"
    if callable(getattr(value, "tolist", None)):  # a NumPy array, a pandas Series
        return " (its .tolist() gives its values as a list) or pass key= to jobsplit.main"
    return " or pass key= to jobsplit.main"


def _type_name(value: Any) -> str:
    kind = type(value)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
