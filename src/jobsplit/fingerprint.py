"""The code fingerprint: which version of the entry script computed a result.

The digest covers the pool and the config files (it seeds the random streams, so it must not
change when only code changes); the fingerprint covers the entry's code. It is SHA-256 of
the entry script's source (line endings normalized, so a copy edited on Windows matches), the
same for the script and for the executable built from it: ``make exe`` computes it from the
script and bundles it. Modules the entry imports are not covered.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

FINGERPRINT_HEX = 12
BUNDLED_NAME = "entry.fingerprint"
"""The file ``make exe`` bundles into the executable, next to jobsplit's templates."""
UNKNOWN = "unknown"


def source_fingerprint(source: bytes) -> str:
    """The fingerprint of an entry script's bytes."""
    normalized = source.removeprefix(b"\xef\xbb\xbf").replace(b"\r\n", b"\n")
    return hashlib.sha256(b"jobsplit/code/v1\n" + normalized).hexdigest()[:FINGERPRINT_HEX]


def file_fingerprint(path: Path) -> str:
    return source_fingerprint(path.read_bytes())


def entry_fingerprint() -> str:
    """The running entry's fingerprint: bundled in an executable, else of ``__main__``'s file."""
    if getattr(sys, "frozen", False):
        bundled = Path(getattr(sys, "_MEIPASS", "")) / "jobsplit" / BUNDLED_NAME
        try:
            return bundled.read_text(encoding="ascii").strip() or UNKNOWN
        except OSError:
            return UNKNOWN  # built without `make exe`
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    try:
        return file_fingerprint(Path(main_file)) if main_file else UNKNOWN
    except OSError:
        return UNKNOWN


def main(argv: list[str]) -> None:
    """Print an entry script's fingerprint (``make exe`` bundles it)."""
    if len(argv) != 1:
        sys.exit("usage: fingerprint ENTRY.py")
    print(file_fingerprint(Path(argv[0])))
