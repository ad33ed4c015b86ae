"""``machines.json``: the machines sharing the pool, each with its speed and cores.

An entry is a machine, ``name: [speed, cores]``, or an array of machines (the tasks of a
cluster's array job), ``name: {"speed": s, "cores": c, "array": n}``: the machines
``name[0]`` ... ``name[n-1]``, each of that speed and core count. Array members are ordinary
machines of the plan and the digest; brackets cannot occur in an entry's name, so a member's
name never collides with an entry's.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .digits import every_digit, int_text
from .errors import UserError, describe_os_error, not_utf8

MACHINES_FILE = "machines.json"
_NAME = re.compile(r"\w[\w.-]*")
_EXAMPLE = '{"alpha": [1.0, 8], "beta": [1.5, 4]}'
_ARRAY_EXAMPLE = '{"speed": 1.0, "cores": 32, "array": 64}'
_ARRAY_KEYS = ("speed", "cores", "array")
_MEMBER = re.compile(r"(.+)\[(0|[1-9][0-9]*)\]")
MAX_ARRAY = 100_000
"""Most tasks one array entry may have (a typo of a few digits would otherwise plan millions)."""
MAX_CORES = 100_000
"""Most cores one machine may have: the plans simulate each (a typo of a few digits, 3200000000000,
ended `plan` in a MemoryError)."""
MAX_NAME = 100
"""Bytes (UTF-8) of a machine's name, also its folder's and its log files' (``<name>.log.<N>.gz``):
well within the 255 a file name may have."""


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
    except UnicodeDecodeError as exc:
        raise not_utf8(path, exc) from None
    except OSError as exc:
        raise UserError(f"{path} cannot be read ({describe_os_error(exc)}); check the file and its permissions") from None
    try:
        with every_digit():  # a number of over 4,300 digits, a typo, is refused as too large, not a traceback
            data = json.loads(text, object_pairs_hook=_Object)
    except json.JSONDecodeError as exc:
        trailing = " after a comma that ends the list (JSON allows none after the last entry)" if text[: exc.pos].rstrip().endswith(",") else ""
        raise UserError(f"{path} line {exc.lineno} column {exc.colno}: invalid JSON ({exc.msg}{trailing}); it must look like {_EXAMPLE}") from None
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
    folded: dict[str, str] = {}
    for name, value in data.items():
        if not _NAME.fullmatch(name):
            raise UserError(f'{path}: the machine name "{name}" is also a folder name, so use only letters, digits, "_", "-" and "." (not first)')
        if len(name.encode()) > MAX_NAME:
            raise UserError(f'{path}: the machine name "{name[:20]}..." is {len(name.encode())} bytes long; it is also a folder and file name: use at most {MAX_NAME}')
        if (other := folded.setdefault(name.casefold(), name)) != name:
            raise UserError(f'{path} names the machines "{other}" and "{name}", which differ only in case: on macOS and Windows disks their output folders would be one folder; rename one')
        if isinstance(value, (_Object, dict)):
            speed, cores, count = _array_entry(path, name, value if isinstance(value, _Object) else _Object(value.items()))
            machines += [Machine(member_name(name, index), speed, cores) for index in range(count)]
            continue
        if not isinstance(value, list) or len(value) != 2:
            raise UserError(f'{path} "{name}": expected [speed, cores], e.g. [1.0, 8], or an array {_ARRAY_EXAMPLE}; got {_shown(value)}')
        machines.append(Machine(name, _speed(path, name, value[0]), _cores(path, name, value[1])))
    return tuple(sorted(machines, key=lambda m: sort_key(m.name)))


def _array_entry(path: Path | str, name: str, value: _Object) -> tuple[float, int, int]:
    """(speed, cores, array) of an array entry; unknown, repeated or missing keys are refused."""
    fields = value.unique(path, name)
    unknown = [key for key in fields if key not in _ARRAY_KEYS]
    if unknown:
        raise UserError(f'{path} "{name}": unknown key "{unknown[0]}"; an array entry has exactly "speed", "cores" and "array", like {_ARRAY_EXAMPLE}')
    missing = [key for key in _ARRAY_KEYS if key not in fields]
    if missing:
        raise UserError(f'{path} "{name}": "{missing[0]}" is missing; an array entry has "speed", "cores" and "array", like {_ARRAY_EXAMPLE} (a single machine is [speed, cores])')
    count = fields["array"]
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_ARRAY:
        raise UserError(f'{path} "{name}" array: must be a whole number from 1 to {MAX_ARRAY:,} (how many array tasks); got {_shown(count)}')
    return _speed(path, name, fields["speed"]), _cores(path, name, fields["cores"]), count


def _speed(path: Path | str, name: str, speed: Any) -> float:
    """A positive float. Compared before it is converted: a whole number too large for a float
    (``1`` and 400 zeros) cannot be converted, and is refused as ``1e400`` is."""
    if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not 0 < speed <= sys.float_info.max:
        raise UserError(f'{path} "{name}" speed: must be a finite number > 0 (relative single-thread speed); got {_shown(speed)}')
    return float(speed)


def _cores(path: Path | str, name: str, cores: Any) -> int:
    if isinstance(cores, bool) or not isinstance(cores, int) or not 1 <= cores <= MAX_CORES:
        raise UserError(f'{path} "{name}" cores: must be a whole number from 1 to {MAX_CORES:,}; got {_shown(cores)}')
    return cores


def member_name(array: str, index: int) -> str:
    """The machine name of task ``index`` of ``array``: ``sim[3]``."""
    return f"{array}[{index}]"


def split_member(name: str) -> tuple[str, int] | None:
    """(array, index) of an array member's name, None for a single machine."""
    match = _MEMBER.fullmatch(name)
    return (match.group(1), int(match.group(2))) if match else None


def sort_key(name: str) -> tuple[str, int]:
    """Machines in name order, an array's members by index (``sim[2]`` before ``sim[10]``)."""
    member = split_member(name)
    return member if member else (name, -1)


def array_members(machines: Sequence[Machine], array: str) -> list[Machine]:
    """The members of ``array`` by index (empty if ``array`` is not an array)."""
    return [m for m in machines if (member := split_member(m.name)) and member[0] == array]


def entry_names(machines: Sequence[Machine]) -> list[str]:
    """The names as machines.json has them: each array once, by its own name."""
    names: dict[str, None] = {}
    for machine in machines:
        member = split_member(machine.name)
        names[member[0] if member else machine.name] = None
    return list(names)


def pick(machines: Sequence[Machine], name: str, index: int | None, task: tuple[str, int] | None = None) -> Machine:
    """The machine called ``name``; for an array, its member ``index`` (``--array-index``), else
    the one of ``task`` (a scheduler's variable and array task id, which a single machine ignores)."""
    members = array_members(machines, name)
    if not members:
        if index is not None:
            raise UserError(f'--array-index {index} was given, but "{name}" is not an array in {MACHINES_FILE}; leave it out, or name an array')
        found = next((m for m in machines if m.name == name), None)
        if found is None:
            if (member := split_member(name)) and (others := array_members(machines, member[0])):
                raise UserError(f'"{name}" is out of range: "{member[0]}" is an array of {len(others)} machines in {MACHINES_FILE}, indices 0 to {len(others) - 1}')
            raise UserError(f'there is no machine "{name}" in {MACHINES_FILE}; choose one of: {", ".join(entry_names(machines))}')
        return found
    source, chosen = ("--array-index", index) if index is not None else task or ("", None)
    last = len(members) - 1
    if chosen is None:
        raise UserError(f'"{name}" is an array of {len(members)} machines in {MACHINES_FILE}; pass --array-index I (0 to {last}), or run it as a Slurm array task')
    if not 0 <= chosen <= last:
        raise UserError(f'{source} {chosen} is out of range: "{name}" is an array of {len(members)} machines in {MACHINES_FILE}, indices 0 to {last}')
    return members[chosen]


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

    def unique(self, path: Path | str, entry: str | None = None) -> dict[str, Any]:
        """The pairs as a dict; ``entry`` names the array entry whose keys these are."""
        seen: dict[str, Any] = {}
        for name, value in self:
            if name in seen:
                if entry is not None:
                    raise UserError(f'{path} "{entry}": the key "{name}" appears twice; keep one')
                raise UserError(f'{path} names the machine "{name}" twice; keep one entry per machine')
            seen[name] = value
        return seen


_SHOWN_DIGITS = 30
"""Digits of a whole number a refusal shows in full; a longer one is cut, with its length."""


def _shown(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        digits = int_text(value)
        return digits if len(digits) <= _SHOWN_DIGITS else f"{digits[:10]}... (a number of {len(digits.lstrip('-')):,} digits)"
    return json.dumps(dict(value) if isinstance(value, _Object) else value)


def _json_type(value: Any) -> str:
    return {_Object: "object", list: "list", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}.get(type(value), type(value).__name__)
