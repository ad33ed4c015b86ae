"""Small helpers for text shown to people: counts, articles, sizes, and text made valid UTF-8."""

from __future__ import annotations

import math
import re


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """``1 worker``, ``2 workers``, ``1 process``, ``3 processes`` (with ``plural_form``)."""
    return f"{count:,} {noun if count == 1 else plural_form or noun + 's'}"


def article(word: str) -> str:
    """``an`` before a vowel, else ``a``: "an object", "a list"."""
    return "an" if word[:1].lower() in "aeiou" else "a"


_LINE_END = re.compile(r"\r\n|\r|\n")


def last_line(text: str | None) -> str | None:
    """The last line of ``text`` that is not blank, stripped (a traceback's: the exception). Lines
    end at a newline or carriage return only: ``splitlines`` also ends them at a form feed or a
    vertical tab, which a job's message may hold (the report titled a failure ``\x07``)."""
    return next((stripped for line in reversed(_LINE_END.split(text or "")) if (stripped := line.strip())), None)


def rate_text(rate: float) -> str:
    """``95,412``, ``95.4``, ``0.25``, ``0.000093``: three significant digits (two below 0.001),
    whole numbers from 100 on, never ``9.54e+04`` nor ``9.26e-05`` (one worker of 3-hour jobs)."""
    if rate >= 100:
        return f"{rate:,.0f}"
    if rate >= 0.001 or rate <= 0:
        return f"{rate:.3g}"
    return f"{rate:.{1 - math.floor(math.log10(rate))}f}"


def size_text(size_in_bytes: int) -> str:
    """``512 B``, ``1.5 KiB``, ``2.25 GiB``, ``1023 MiB``: at most four significant digits, powers of 1024."""
    size = float(size_in_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024:
            return f"{size:.4g} {unit}"
        size /= 1024
    return f"{size:.4g} TiB"


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def log_line_text(text: str) -> str:
    """``text`` as a log holds it: control characters other than a newline or a tab (a NUL, a
    colour code's ESC, a bell, a lone carriage return) as backslash escapes such as ``\\x00``,
    so that ``zcat log.gz | grep`` reads text and a terminal shows what was written; a CR LF is
    a newline. Checked first, as most text has none."""
    if _CONTROL.search(text) is None:
        return text
    return _CONTROL.sub(lambda match: f"\\x{ord(match[0]):02x}", text.replace("\r\n", "\n"))


def clean_text(text: str) -> str:
    """``text`` as valid UTF-8: lone surrogates (from ``os.fsdecode`` of non-UTF-8 names) become
    backslash escapes such as ``\\udcff``, the same in the journal, results.csv, the logs and
    ``digest --jobs``, and as a job's id hashes them (see pool.id_of_text)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
