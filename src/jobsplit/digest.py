"""The digest: one short fingerprint of everything that shapes the plan.

Hosts compare it before they start; equal digests mean equal plans. It covers the sorted job
ids (so pool order does not matter), the parsed config (not its comments, whitespace, key
order or line endings), the machines, the header columns, the strategy, a ``--seed`` override
and, for the ``cost`` strategy, the cost hints.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Mapping, Sequence

from .idhash import ID_BYTES
from .machines import Machine
from .pool import IdBuffer, canonical_json

DIGEST_HEX = 32
_SEPARATORS = re.compile(r"[\s:_-]+")


def compute_digest(
    *,
    sorted_ids: IdBuffer,
    config: Mapping[str, Mapping[str, str]],
    machines: Sequence[Machine],
    header: Sequence[str],
    strategy: str,
    seed_override: str | None = None,
    costs_by_id: Mapping[bytes, float] | None = None,
) -> str:
    """32 lowercase hex characters (128 bits). ``sorted_ids`` are the pool's binary ids in
    byte order, packed: hashing them in one update equals hashing them one by one."""
    settings = {
        "config": config,
        "header": list(header),
        "machines": {m.name: [m.speed, m.cores] for m in machines},
        "seed": seed_override,
        "strategy": strategy,
    }
    state = hashlib.sha256(b"jobsplit/digest/v1\n")
    state.update(canonical_json(settings).encode() + b"\n")
    if costs_by_id is None:
        state.update(sorted_ids)
    else:
        for start in range(0, len(sorted_ids), ID_BYTES):
            job_id = bytes(sorted_ids[start : start + ID_BYTES])
            state.update(job_id)
            state.update(struct.pack(">d", costs_by_id[job_id]))
    return state.hexdigest()[:DIGEST_HEX]


def format_digest(digest: str) -> str:
    """Readable groups of four: ``3f2a-9c1b-...``."""
    return "-".join(digest[i : i + 4] for i in range(0, len(digest), 4))


def normalize_digest(text: str) -> str:
    """A digest as typed by a person: group separators, spaces and case are ignored."""
    return _SEPARATORS.sub("", text).lower()
