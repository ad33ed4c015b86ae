"""``machines.json``: the machines sharing the pool, each with its speed and cores."""

from __future__ import annotations

import json
import math
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UserError

MACHINES_FILE = "machines.json"
_NAME = re.compile(r"\w[\w.-]*")
_EXAMPLE = '{"alpha": [1.0, 8], "beta": [1.5, 4]}'


@dataclass(frozen=True)
class Machine:
    """One host: relative single-thread ``speed`` and ``cores``; its capacity is their product."""

    name: str
    speed: float
    cores: int

    @property
    def capacity(self) -> float:
        return self.speed * self.cores


def load_machines(path: Path) -> tuple[Machine, ...]:
    """Machines sorted by name (so the file's key order never matters)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} cannot be read ({getattr(exc, 'strerror', None) or exc}); check the file and its permissions") from None
    try:
        data = json.loads(text, object_pairs_hook=_Object)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} line {exc.lineno} column {exc.colno}: invalid JSON ({exc.msg}); it must look like {_EXAMPLE}") from None
    return parse_machines(data, path)


def parse_machines(data: Any, path: Path | str = MACHINES_FILE) -> tuple[Machine, ...]:
    """Validate decoded machines.json content; every problem names the machine and field."""
    if isinstance(data, _Object):
        data = data.unique(path)
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a JSON object of name -> [speed, cores], like {_EXAMPLE}; it holds a {_json_type(data)}")
    if not data:
        raise UserError(f"{path} names no machines; add at least one, like {_EXAMPLE}")
    machines = []
    for name, value in data.items():
        if not _NAME.fullmatch(name):
            raise UserError(f'{path}: the machine name "{name}" is also a folder name, so use only letters, digits, "_", "-" and "." (not first)')
        if isinstance(value, _Object) or not isinstance(value, list) or len(value) != 2:
            raise UserError(f'{path} "{name}": expected [speed, cores], e.g. [1.0, 8]; got {_shown(value)}')
        speed, cores = value
        if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not math.isfinite(speed) or speed <= 0:
            raise UserError(f'{path} "{name}" speed: must be a number > 0 (relative single-thread speed); got {_shown(speed)}')
        if isinstance(cores, bool) or not isinstance(cores, int) or cores < 1:
            raise UserError(f'{path} "{name}" cores: must be a whole number >= 1; got {_shown(cores)}')
        machines.append(Machine(name, float(speed), cores))
    return tuple(sorted(machines, key=lambda m: m.name))


def this_host() -> Machine:
    """The machine used when there is no machines.json: this host, speed 1, all usable cores."""
    name = re.sub(r"[^\w.-]", "_", socket.gethostname()).lstrip(".") or "localhost"
    return Machine(name, 1.0, usable_cores())


def usable_cores() -> int:
    """Cores this process may run on (respects CPU affinity and container limits)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class _Object(list):  # type: ignore[type-arg]
    """A JSON object as its (key, value) pairs, so that a repeated machine name is not lost."""

    def unique(self, path: Path | str) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for name, value in self:
            if name in seen:
                raise UserError(f'{path} names the machine "{name}" twice; keep one entry per machine')
            seen[name] = value
        return seen


def _shown(value: Any) -> str:
    return json.dumps(dict(value) if isinstance(value, _Object) else value)


def _json_type(value: Any) -> str:
    return {_Object: "object", list: "list", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}.get(type(value), type(value).__name__)
