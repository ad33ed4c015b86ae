"""Per-host settings that must not change the digest: ``<user config dir>/jobsplit/host.ini``.

Workers, output folder, niceness, console style, start method, a worker's memory limit and the
time a stopped job has to end belong to one host (a shared desktop may want fewer workers than
its cores). Only what the file sets is here; ``settings`` resolves it against the flags and the
defaults.
"""

from __future__ import annotations

import configparser
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path

from .config import positive_seconds, refuse_unknown_keys, syntax_problem
from .errors import UserError, not_utf8
from .userfolders import user_folder
from .workermemory import parse_limit

CONSOLE_STYLES = ("auto", "live", "plain")


@dataclass(frozen=True)
class HostSettings:
    """host.ini ``[host]``; None: not set there."""

    workers: int | None = None
    out: Path | None = None
    nice: int | None = None
    console: str | None = None
    start_method: str | None = None
    worker_memory: int | None = None
    stop_grace: float | None = None


def host_ini_path() -> Path | None:
    """This user's host.ini; None for a user without a home folder (see user_folder)."""
    folder = user_folder("config")
    return folder / "host.ini" if folder is not None else None


def load_host_settings(path: Path | None = None) -> HostSettings:
    """Read host.ini's ``[host]`` section if the file exists; unknown keys are refused."""
    path = path or host_ini_path()
    if path is None or not path.exists():
        return HostSettings()
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8-sig")  # Notepad's "UTF-8 with BOM", read as config.ini is
    except UnicodeDecodeError as exc:
        raise not_utf8(path, exc) from None
    except configparser.Error as exc:
        raise UserError(f"{path}: {syntax_problem(exc)}") from None
    except OSError as exc:
        raise UserError(f"{path} cannot be read ({str(exc).splitlines()[0]}); fix or delete it") from None
    others = [name for name in parser.sections() if name != "host"]
    if others:  # [hosts], [Host]: its settings were silently not read
        raise UserError(f"{path} [{others[0]}] is not a section of host.ini; its settings go in [host]")
    if not parser.has_section("host"):
        return HostSettings()
    section = parser["host"]
    refuse_unknown_keys(section, {"workers", "out", "nice", "console", "start_method", "worker_memory", "stop_grace"}, path, "host")
    return HostSettings(
        workers=check_workers(_int(section, "workers", path), f"{path} [host] workers") if "workers" in section else None,
        out=_out(section["out"], path) if "out" in section else None,
        nice=_int(section, "nice", path) if "nice" in section else None,
        console=check_choice(section["console"], CONSOLE_STYLES, f"{path} [host] console") if "console" in section else None,
        start_method=check_start_method(section["start_method"], f"{path} [host] start_method") if "start_method" in section else None,
        worker_memory=_memory_limit(section, "worker_memory", path) if "worker_memory" in section else None,
        stop_grace=positive_seconds(section["stop_grace"], f"{path} [host] stop_grace", zero=True) if "stop_grace" in section else None,
    )


def check_workers(value: int, source: str) -> int:
    if value < 1:
        raise UserError(f"{source} must be at least 1; got {value}")
    return value


def check_choice(value: str, choices: tuple[str, ...], source: str) -> str:
    if value not in choices:
        raise UserError(f"{source} must be one of {', '.join(choices)}; got {value!r}")
    return value


START_METHODS = tuple(method for method in ("fork", "spawn") if method in multiprocessing.get_all_start_methods())
"""How workers may start. Not ``forkserver``: its workers are the fork server's children, not
the runner's, and a worker that outlives its parent stops (see ``lifecycle.die_with_parent``)."""


def check_start_method(value: str, source: str) -> str:
    return check_choice(value, START_METHODS, source)


def _memory_limit(section: configparser.SectionProxy, key: str, path: Path) -> int:
    try:
        return parse_limit(section[key])
    except ValueError as exc:
        raise UserError(f"{path} [host] {key}: {exc}") from None


def _int(section: configparser.SectionProxy, key: str, path: Path) -> int:
    try:
        return section.getint(key)  # type: ignore[return-value]
    except ValueError:
        raise UserError(f"{path} [host] {key} must be a whole number; got {section[key]!r}") from None


def _out(text: str, path: Path) -> Path:
    """host.ini's ``out``, ``~`` and environment variables expanded, as a shell would (``$SCRATCH/runs``);
    one that is not set is refused: the folder made was named ``$SCRATCH``."""
    expanded = os.path.expandvars(text)
    if "$" in expanded:
        raise UserError(f"{path} [host] out = {text!r}: {expanded[expanded.index('$'):].split('/')[0]} is not set here; set it, or write the folder out")
    return Path(expanded).expanduser()
