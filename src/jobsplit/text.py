"""Small helpers for sentences shown to people: counts, articles and sizes."""

from __future__ import annotations


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """``1 worker``, ``2 workers``, ``1 process``, ``3 processes`` (with ``plural_form``)."""
    return f"{count:,} {noun if count == 1 else plural_form or noun + 's'}"


def article(word: str) -> str:
    """``an`` before a vowel, else ``a``: "an object", "a list"."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def last_line(text: str | None) -> str | None:
    """The last line of ``text`` that is not blank, stripped (a traceback's: the exception)."""
    return next((stripped for line in reversed((text or "").splitlines()) if (stripped := line.strip())), None)


def size_text(size_in_bytes: int) -> str:
    """``512 B``, ``1.5 KiB``, ``2.25 GiB``, ``1023 MiB``: at most four significant digits, powers of 1024."""
    size = float(size_in_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024:
            return f"{size:.4g} {unit}"
        size /= 1024
    return f"{size:.4g} TiB"
