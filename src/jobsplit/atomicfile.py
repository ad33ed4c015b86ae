"""Writing a whole file so that readers and crashes never see half of it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .errors import NO_SPACE, StorageError, UserError, describe_os_error


@contextmanager
def atomic_file(path: Path, mode: str = "w", *, writer: str = "partial") -> Iterator[IO[Any]]:
    """Write under a temporary name in the same folder, sync, then rename over ``path``.

    ``mode`` is ``"w"`` (UTF-8 text, newlines as written) or ``"wb"``. A file that cannot be
    written is a UserError naming it (a StorageError when the disk is full); the temporary
    file never stays behind. ``writer`` names the temporary file: a write from a signal handler
    takes a name of its own, so that it never mixes with a write of the same file it interrupted.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{writer}")
    try:
        with open(temporary, mode) if "b" in mode else open(temporary, mode, encoding="utf-8", newline="") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        if exc.errno in NO_SPACE:
            raise StorageError(f"{path} cannot be written: {describe_os_error(exc)}; free some space and try again") from None
        raise UserError(f"{path} cannot be written ({describe_os_error(exc)}); check that its folder exists and is writable") from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
