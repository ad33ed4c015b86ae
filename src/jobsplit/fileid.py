"""Which file a path names now: to notice a file deleted, moved away or replaced while it is written."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple


def file_id(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file ``path`` names, or None if it names none."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino


def open_file_id(fd: int) -> tuple[int, int]:
    """(device, inode) of the file open on ``fd``: the one written, whatever its path names now."""
    found = os.fstat(fd)
    return found.st_dev, found.st_ino


class FileState(NamedTuple):
    """A file as it was read: which file it was, and how many bytes of it were read."""

    device: int
    inode: int
    size: int
