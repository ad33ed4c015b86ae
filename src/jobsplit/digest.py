"""The digest: one short fingerprint of everything that shapes the plan.

Hosts compare it before they start; equal digests mean equal plans. It covers the sorted job
ids (so pool order does not matter), the parsed config (not its comments, whitespace, key
order or line endings), the machines, the header columns, the strategy, a ``--seed`` override
and, for the ``cost`` strategy, the cost hints.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from .idhash import ID_BYTES
from .machines import Machine
from .pool import IdBuffer, canonical_json

DIGEST_HEX = 32
PART_HEX = 16
PART_NAMES = {"pool": "the pool", "config": "config.ini", "header": "header.csv", "machines": "machines.json", "seed": "--seed", "strategy": "the strategy"}
"""Each part of ``digest_parts`` as a sentence names it."""
_SEPARATORS = re.compile(r"[\s:_-]+")


def mixed_plans(recorded: Iterable[str]) -> str:
    """Why folders of several digests differ, from the digest parts their journals recorded
    (``meta`` "parts", JSON): "--seed and the strategy differ"; where a journal recorded none (made
    by jobsplit 0.1), what it may be."""
    parts = [json.loads(text or "{}") for text in recorded]
    differing = [text for name, text in PART_NAMES.items() if len({p.get(name) for p in parts}) > 1]
    if not differing or not all(parts):
        return "different pools or config files"
    return f"{' and '.join(differing)} {'differs' if len(differing) == 1 else 'differ'}"


class DigestInput(NamedTuple):
    """Everything the digest covers."""

    sorted_ids: IdBuffer
    """The pool's binary ids in byte order, packed: hashing them in one update equals hashing
    them one by one."""
    config: Mapping[str, Mapping[str, str]]
    machines: Sequence[Machine]
    header: Sequence[str]
    strategy: str
    seed_override: str | None = None
    costs_by_id: Mapping[bytes, float] | None = None
    """The cost hints, for the ``cost`` strategy only."""

    def settings(self) -> dict[str, object]:
        """Everything but the pool, by name, as the digest hashes it (in one canonical JSON)."""
        return {
            "config": self.config,
            "header": list(self.header),
            "machines": {m.name: [m.speed, m.cores] for m in self.machines},
            "seed": self.seed_override,
            "strategy": self.strategy,
        }

    def hash_pool(self, state: hashlib._Hash) -> None:
        """Feed ``state`` the sorted ids, each followed by its cost hint if there are any."""
        if self.costs_by_id is None:
            state.update(self.sorted_ids)
            return
        for start in range(0, len(self.sorted_ids), ID_BYTES):
            job_id = bytes(self.sorted_ids[start : start + ID_BYTES])
            state.update(job_id)
            state.update(struct.pack(">d", self.costs_by_id[job_id]))


def compute_digest(covered: DigestInput) -> str:
    """32 lowercase hex characters (128 bits)."""
    state = hashlib.sha256(b"jobsplit/digest/v1\n")
    state.update(canonical_json(covered.settings()).encode() + b"\n")
    covered.hash_pool(state)
    return state.hexdigest()[:DIGEST_HEX]


def digest_parts(covered: DigestInput) -> dict[str, str]:
    """A short fingerprint of each part the digest covers (``pool``, then the settings by name),
    to compare between two hosts whose digests differ: the part whose fingerprints differ is
    the cause. Not part of the digest itself, which stays as it was."""
    pool = hashlib.sha256()
    covered.hash_pool(pool)
    parts = {"pool": pool.hexdigest()[:PART_HEX]}
    for name, value in covered.settings().items():
        parts[name] = hashlib.sha256(canonical_json(value).encode()).hexdigest()[:PART_HEX]
    return parts


def format_digest(digest: str) -> str:
    """Readable groups of four: ``3f2a-9c1b-...``."""
    return "-".join(digest[i : i + 4] for i in range(0, len(digest), 4))


def normalize_digest(text: str) -> str:
    """A digest as typed by a person: group separators, spaces and case are ignored."""
    return _SEPARATORS.sub("", text).lower()
