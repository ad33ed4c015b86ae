"""Writing a whole file so that readers and crashes never see half of it."""

from __future__ import annotations

import os
import stat
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

    A symbolic link stays a link: the file it points to is replaced. What is not a file stays
    what it is, written straight to: ``-o /dev/null`` (to check a merge and keep nothing),
    ``/dev/stdout``, a named pipe. The rename replaced ``/dev/null`` itself with a file, for
    every program of a machine where jobsplit ran as root (and failed for anyone else). A file
    replaced keeps its permissions: a merged table made private stayed so no longer.
    """
    kept = _existing_mode(path)
    in_place = kept is not None and not stat.S_ISREG(kept) and not stat.S_ISDIR(kept)
    target = path if in_place else Path(os.path.realpath(path))
    temporary = None if in_place else target.with_name(f".{target.name}.{os.getpid()}.{writer}")
    try:
        with _opened(temporary or target, mode) as f:
            yield f
            f.flush()
            if temporary is not None:
                if kept is not None and stat.S_ISREG(kept):
                    os.fchmod(f.fileno(), stat.S_IMODE(kept))
                os.fsync(f.fileno())
        if temporary is not None:
            os.replace(temporary, target)
    except OSError as exc:
        if exc.errno in NO_SPACE:
            raise StorageError(f"{path} cannot be written: {describe_os_error(exc)}; free some space and try again") from None
        raise UserError(f"{path} cannot be written ({describe_os_error(exc)}); check that its folder exists and is writable") from None
    finally:
        if temporary is not None:
            _remove(temporary)


def _remove(temporary: Path) -> None:
    """Remove a failed write's temporary file (after the rename, nothing is there). On a
    read-only file system unlink fails with EROFS even where no file is, and that error replaced
    the sentence naming the output with a traceback: a leftover that cannot be removed is no
    reason to hide why the write failed."""
    try:
        temporary.unlink(missing_ok=True)
    except OSError:
        pass


def _opened(path: Path, mode: str) -> IO[Any]:
    return open(path, mode) if "b" in mode else open(path, mode, encoding="utf-8", newline="")


def _existing_mode(path: Path) -> int | None:
    """The mode of what ``path`` names (a link followed), None if nothing is there."""
    try:
        return os.stat(path).st_mode
    except OSError:
        return None
