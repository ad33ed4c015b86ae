"""``init``: copy the config templates into a folder without overwriting anything."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .config import CONFIG_FILE, HEADER_FILE
from .errors import UserError, describe_os_error
from .machines import MACHINES_FILE

TEMPLATE_FILES = (CONFIG_FILE, HEADER_FILE, MACHINES_FILE)


def templates_dir() -> Path:
    """Bundled templates: inside the package when installed or frozen, else the checkout's."""
    packaged = Path(__file__).with_name("templates")
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "templates"


def write_templates(dest: Path, files: tuple[str, ...] = TEMPLATE_FILES) -> tuple[list[Path], list[Path]]:
    """Copy the templates into ``dest``; returns (written, already there and left alone). A
    file that cannot be written (a read-only folder, a link to nowhere) is a UserError naming it."""
    written, kept = [], []
    target = dest
    try:
        dest.mkdir(parents=True, exist_ok=True)
        for name in files:
            target = dest / name
            if target.exists():
                kept.append(target)
                continue
            if target.is_symlink():
                raise UserError(f"{target} is a link to {os.readlink(target)}, which does not exist; remove the link, or make what it names")
            with open(templates_dir() / name, "rb") as template, open(target, "xb") as copy:  # never over a file (or through a link)
                written.append(target)
                shutil.copyfileobj(template, copy)
    except OSError as exc:
        if written and written[-1] == target:
            target.unlink(missing_ok=True)  # half written (a full disk): a later init would keep it as "already there"
        raise UserError(f"cannot write {target} ({describe_os_error(exc)}); run init where you may write, or pass --config-dir DIR") from None
    return written, kept
