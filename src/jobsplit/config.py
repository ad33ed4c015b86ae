"""The shared config files: ``config.ini`` (passed to every job) and ``header.csv``.

Both are part of the digest, so both are reduced to their parsed content here: comments,
whitespace, key order, a byte-order mark and line endings never change a host's digest.
"""

from __future__ import annotations

import ast
import configparser
import csv
import math
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from .errors import UserError, not_utf8

CONFIG_FILE = "config.ini"
HEADER_FILE = "header.csv"
TIMING_COLUMNS = ("Run Start Time", "Job Running Time", "Job Start Time")

_FILESIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*", re.IGNORECASE)
_UNITS = {
    "": 1, "b": 1,
    "k": 1024, "kb": 1000, "kib": 1024,
    "m": 1024**2, "mb": 1000**2, "mib": 1024**2,
    "g": 1024**3, "gb": 1000**3, "gib": 1024**3,
    "t": 1024**4, "tb": 1000**4, "tib": 1024**4,
}  # fmt: skip


def parse_filesize(text: str) -> int:
    """Bytes in a size such as ``64MiB``, ``128MB``, ``1.5GiB`` or ``4K`` (case-insensitive).

    SI suffixes (KB, MB, GB, TB) are powers of 1000; IEC suffixes (KiB...) and bare K/M/G/T
    are powers of 1024, as in most tools researchers use. Fractions round to whole bytes.
    """
    match = _FILESIZE.fullmatch(str(text))
    unit = match and _UNITS.get(match.group(2).lower())
    if not match or unit is None:
        raise ValueError(f"{text!r} is not a file size; write a number with an optional unit B, K/KB/KiB, M/MB/MiB, G/GB/GiB or T/TB/TiB, e.g. 64MiB")
    return math.floor(Fraction(match.group(1)) * unit + Fraction(1, 2))  # exact, however large (a Decimal's 28 digits ended in a traceback)


class JobConfig(configparser.ConfigParser):
    """The ``config`` every job receives: a ConfigParser with ``getfilesize``.

    Interpolation is off, so a ``%`` in a value means a ``%``. A worker's jobs share one, frozen
    (see ``freeze``): a job that changed it would change the jobs after it on that worker, which
    differ from machine to machine, and results would depend on the schedule. ``copy.deepcopy``
    gives a copy to change.
    """

    def __init__(self) -> None:
        super().__init__(interpolation=None, converters={"filesize": parse_filesize})
        self._frozen = False

    def freeze(self) -> JobConfig:
        """Refuse every change from now on (ReadOnlyConfigError)."""
        self._frozen = True
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> JobConfig:
        thawed = JobConfig()
        thawed.read_dict(self.as_document())
        return thawed

    def __copy__(self) -> JobConfig:
        return self.__deepcopy__({})

    def _change(self) -> None:
        if self._frozen:
            raise ReadOnlyConfigError(
                "config is read-only: the jobs of a worker share it, so a change would reach the jobs after this one "
                "(which differ from machine to machine); change a copy instead: mine = copy.deepcopy(config)"
            )

    def _get_conv(self, section: str, option: str, *args: Any, **kwargs: Any) -> Any:
        """``getint``, ``getfloat``, ``getboolean`` and ``getfilesize`` name the key of a value
        they cannot convert (the job's traceback showed only the value)."""
        try:
            return super()._get_conv(section, option, *args, **kwargs)
        except ValueError as exc:
            raise ValueError(f"config.ini [{section}] {option}: {exc}") from None

    def set(self, section: str, option: str, value: str | None = None) -> None:
        self._change()
        super().set(section, option, value)

    def add_section(self, section: str) -> None:
        self._change()
        super().add_section(section)

    def remove_section(self, section: str) -> bool:
        self._change()
        return super().remove_section(section)

    def remove_option(self, section: str, option: str) -> bool:
        self._change()
        return super().remove_option(section, option)

    def _read(self, fp: Iterable[str], fpname: str) -> None:  # what read(), read_file() and read_string() call
        self._change()
        super()._read(fp, fpname)  # type: ignore[misc]

    def __setitem__(self, key: str, value: Any) -> None:
        self._change()
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self._change()
        super().__delitem__(key)

    def as_document(self) -> dict[str, dict[str, str]]:
        """Sections, keys and values only: what the digest covers."""
        doc = {section: dict(self.items(section, raw=True)) for section in self.sections()}
        doc[self.default_section] = dict(self.defaults())
        return doc


def config_changes(before: Mapping[str, Mapping[str, str]], after: Mapping[str, Mapping[str, str]]) -> list[tuple[str, str, str]]:
    """What changed between two config.ini documents (see JobConfig.as_document), key by key:
    (section, key, ``[jobsplit] timeout '3600' -> '7200'``), (..., ``[study] label added``)."""
    changes = []
    for section in sorted(set(before) | set(after)):
        old, new = before.get(section, {}), after.get(section, {})
        for key in sorted(set(old) | set(new)):
            if key not in new:
                changes.append((section, key, f"[{section}] {key} removed"))
            elif key not in old:
                changes.append((section, key, f"[{section}] {key} added"))
            elif old[key] != new[key]:
                changes.append((section, key, f"[{section}] {key} {old[key]!r} -> {new[key]!r}"))
    return changes


FLAG_SETTINGS = {("jobsplit", "timeout"): "--timeout"}
"""config.ini settings a run flag also gives, outside the digest."""


class ReadOnlyConfigError(TypeError):
    """A job tried to change the ``config`` its worker's jobs share."""


@dataclass(frozen=True)
class Header:
    """The results table's columns: the three timing columns, then the job's own."""

    columns: tuple[str, ...]

    @property
    def result_columns(self) -> tuple[str, ...]:
        return self.columns[len(TIMING_COLUMNS) :]


def load_config(path: Path) -> JobConfig:
    """Parse config.ini; every problem is a UserError naming the file, line and fix."""
    config = JobConfig()
    try:
        with open(path, encoding="utf-8-sig") as f:
            config.read_file(f, source=str(path))
    except FileNotFoundError:
        raise UserError(f"{path} not found; create the config files with the `init` command (or pass --config-dir)") from None
    except UnicodeDecodeError as exc:
        raise not_utf8(path, exc) from None
    except OSError as exc:
        raise UserError(f"{path} cannot be read ({_reason(exc)}); check the file and its permissions") from None
    except configparser.Error as exc:
        raise UserError(f"{path}: {syntax_problem(exc)}") from None
    for section in config.sections():
        meant = section.strip().casefold()
        if section != meant and set(own_items(config, section)) & JOBSPLIT_KEYS.get(meant, set()):  # [JobSplit] strategy = ...: the job's section, silently
            raise UserError(f"{path} [{section}]: jobsplit's section is [{meant}] (section names are case-sensitive); rename it")
    return config


_AFTER_A_VALUE = re.compile(r"\s[;#]")
"""What a comment after a value looks like: config.ini takes none there (a value is all after its =)."""
JOBSPLIT_KEYS = {"jobsplit": {"strategy", "timeout"}, "logging": {"level", "format", "max_size", "per_job"}, "balance": {"url", "lease"}}
"""jobsplit's own sections and their keys (each section's parser refuses any other)."""
_FREE_TEXT = {("logging", "format")}
"""Values of jobsplit's sections that are text, where a '#' or ';' may be meant (``#{job}``): what
follows them shows in every log line, were it a comment."""


def inline_comments(config: JobConfig, path: Path) -> list[str]:
    """Values holding what looks like a comment after them (``timeout = 3600 ; seconds``): in
    jobsplit's own sections a UserError naming the key; in the job's, a notice for each, as the
    job gets the comment too (``method = fast # or slow`` is not ``"fast"``), whatever it makes
    of it."""
    defaults = config.defaults()
    notices = []
    for section in (config.default_section, *config.sections()):
        items = defaults.items() if section == config.default_section else [(k, v) for k, v in config.items(section, raw=True) if defaults.get(k) != v]
        for key, value in items:
            if not _AFTER_A_VALUE.search(value) or (section, key) in _FREE_TEXT:
                continue
            where = f"{path} [{section}] {key} = {value!r}"
            if section in JOBSPLIT_KEYS:
                raise UserError(f"{where}: config.ini takes no comment after a value (the value is all after '='); put the comment on a line of its own")
            notices.append(f"{where} holds what looks like a comment, which the job gets as part of the value (config.ini takes none after a value); if it is one, put it on a line of its own")
    return notices


_OTHER_SEPARATORS = ((";", "semicolons"), ("\t", "tabs"))
"""What a header.csv written as one cell may be separated by instead of commas."""


def load_header(path: Path) -> Header:
    """Read header.csv's first row; the three timing columns must come first."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            rows = list(csv.reader(f))
    except FileNotFoundError:
        raise UserError(f"{path} not found; create the config files with the `init` command (or pass --config-dir)") from None
    except UnicodeDecodeError as exc:
        raise not_utf8(path, exc) from None
    except (OSError, csv.Error) as exc:
        raise UserError(f"{path} cannot be read ({_reason(exc)}); it must be one CSV line of column names") from None
    row, *more = rows or [[]]
    extra = next((number for number, line in enumerate(more, 2) if any(cell.strip() for cell in line)), None)
    if extra is not None:
        first = ",".join(row).strip()
        if not first or first.lower().startswith(("sep=", "#")):  # a blank line, Excel's "sep=," line, a comment: the names come after it
            raise UserError(f"{path} line 1 is {'blank' if not first else repr(first)}: header.csv must be one line of column names; remove that line, keeping the names")
        raise UserError(f"{path} line {extra}: header.csv must be one line of column names; remove the lines after the first")
    columns = [cell.strip() for cell in row]
    while columns and not columns[-1]:
        columns.pop()  # spreadsheets often add empty trailing cells
    if set(columns[: len(TIMING_COLUMNS)]) != set(TIMING_COLUMNS):
        expected = ", ".join(f'"{c}"' for c in TIMING_COLUMNS)
        separator = next((name for mark, name in _OTHER_SEPARATORS if len(columns) == 1 and mark in columns[0]), None)
        other = f" (a CSV line separated by {separator}, as spreadsheets save CSV in some languages: separate the columns with commas)" if separator else ""
        raise UserError(f"{path} must start with the columns {expected}, then your result columns; it starts with {columns[:3]}{other}")
    seen: set[str] = set()
    for column in columns:
        if not column:
            raise UserError(f"{path} has an empty column name; name every column or remove the empty cell")
        if "\n" in column or "\r" in column:  # a quoted cell with Alt+Enter: results.csv's header took two lines, which merge-results counted as a row
            raise UserError(f"{path} names the column {column!r}, which holds a line break; write each name on one line")
        if column in RESERVED_COLUMNS:
            raise UserError(f"{path} names the column \"{column}\", which jobsplit adds itself (with {', '.join(RESERVED_COLUMNS)}); rename it")
        if column in seen:
            raise UserError(f"{path} names the column \"{column}\" twice; rename one of them")
        seen.add(column)
    return Header(tuple(columns))


RESERVED_COLUMNS = ("Job ID", "Job Args", "Machine", "Digest", "Code")


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc).splitlines()[0]


def syntax_problem(exc: configparser.Error) -> str:
    """One sentence for a ConfigParser error, which is otherwise several lines."""
    if isinstance(exc, configparser.MissingSectionHeaderError):
        return f"line {exc.lineno}: {exc.line.strip()!r} comes before any [section] header; put it under a section"
    if isinstance(exc, configparser.DuplicateSectionError):
        return f"line {exc.lineno}: the section [{exc.section}] appears twice; merge them"
    if isinstance(exc, configparser.DuplicateOptionError):
        return f"line {exc.lineno}: [{exc.section}] sets {exc.option!r} twice; keep one"
    if isinstance(exc, configparser.ParsingError):
        lineno, line = exc.errors[0]  # configparser stores repr(line)
        text = ast.literal_eval(line) if line[:1] in "'\"" else line
        return f"line {lineno}: {text.strip()!r} is not 'key = value', a [section] or a comment; fix or remove it"
    return str(exc).splitlines()[0]


@dataclass(frozen=True)
class JobsplitSettings:
    """config.ini's ``[jobsplit]`` section: settings every host must share."""

    strategy: str | None = None
    timeout: float | None = None


def own_items(config: configparser.ConfigParser, section: str) -> dict[str, str]:
    """The keys ``section`` itself sets, with its values: not those a ``[DEFAULT]`` section (the
    job's defaults) lends every section. Told apart by name, a key set in both was taken for a
    default and dropped: ``[DEFAULT] timeout = 5`` wiped out ``[jobsplit] timeout = 3600``,
    without a word."""
    return dict(config._sections.get(section, {}))  # type: ignore[attr-defined] # ConfigParser has no public view of a section's own keys


def refuse_unknown_keys(keys: Iterable[str], known: Collection[str], path: Path, section: str) -> None:
    """Refuse a key jobsplit's ``section`` does not have, naming those it has: a typo is not
    silently ignored."""
    for key in keys:
        if key not in known:
            raise UserError(f"{path} [{section}] {key} is not a {section} setting; the settings are: {', '.join(sorted(known))}")


def jobsplit_settings(config: configparser.ConfigParser, path: Path) -> JobsplitSettings:
    """Parse ``[jobsplit]``, refusing unknown keys so that a typo is not silently ignored."""
    if not config.has_section("jobsplit"):
        return JobsplitSettings()
    values = own_items(config, "jobsplit")
    refuse_unknown_keys(values, JOBSPLIT_KEYS["jobsplit"], path, "jobsplit")
    timeout = None
    if values.get("timeout", "").strip():
        timeout = positive_seconds(values["timeout"], f"{path} [jobsplit] timeout")
    return JobsplitSettings(strategy=values.get("strategy"), timeout=timeout)


LOG_FIELDS = ("time", "machine", "worker", "job", "level", "name", "message")
DEFAULT_LOG_FORMAT = "{time} {machine} {worker} {job} {level} {message}"
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class LogSettings:
    """config.ini's ``[logging]`` section."""

    level: str = "INFO"
    format: str = DEFAULT_LOG_FORMAT
    max_size: int = parse_filesize("64MiB")
    per_job: bool = False


def log_settings(config: JobConfig, path: Path) -> LogSettings:
    """Parse ``[logging]``; every problem names the key and the fix."""
    if not config.has_section("logging"):
        return LogSettings()
    section = own_items(config, "logging")
    refuse_unknown_keys(section, JOBSPLIT_KEYS["logging"], path, "logging")
    defaults = LogSettings()
    level = section.get("level", defaults.level).strip().upper()
    if level not in _LOG_LEVELS:
        raise UserError(f"{path} [logging] level must be one of {', '.join(_LOG_LEVELS)}; got {section['level']!r}")
    fmt = section.get("format", defaults.format).strip()
    try:
        fmt.format(**dict.fromkeys(LOG_FIELDS, ""))
    except (KeyError, IndexError, ValueError) as exc:
        raise UserError(f"{path} [logging] format: {fmt!r} is not a valid format ({exc}); use fields {{{'}, {'.join(LOG_FIELDS)}}}") from None
    if not fmt.startswith("{time}"):
        raise UserError(f"{path} [logging] format must start with {{time}}, so that logs can be merged by time; got {fmt!r}")
    try:
        max_size = parse_filesize(section["max_size"]) if "max_size" in section else defaults.max_size
    except ValueError as exc:
        raise UserError(f"{path} [logging] max_size: {exc}") from None
    if max_size < 1024:
        raise UserError(f"{path} [logging] max_size must be at least 1KiB; got {section['max_size']!r}")
    per_job = config.BOOLEAN_STATES.get(section.get("per_job", str(defaults.per_job)).strip().lower())  # ConfigParser's own words for true and false
    if per_job is None:
        raise UserError(f"{path} [logging] per_job must be true or false; got {section['per_job']!r}")
    return LogSettings(level, fmt, max_size, per_job)


def positive_seconds(text: str, source: str, *, zero: bool = False) -> float:
    """A finite number of seconds > 0 (>= 0 with ``zero``) from a settings file; ``source``
    names where it comes from in the refusal."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value >= 0 if zero else value > 0) or value == float("inf"):
        raise UserError(f"{source} must be a number of seconds {'>=' if zero else '>'} 0; got {text!r}")
    return value
