"""``init``: copy the config templates into a folder without overwriting anything."""

from __future__ import annotations

import shutil
from pathlib import Path

from .config import CONFIG_FILE, HEADER_FILE
from .machines import MACHINES_FILE

TEMPLATE_FILES = (CONFIG_FILE, HEADER_FILE, MACHINES_FILE)


def templates_dir() -> Path:
    """Bundled templates: inside the package when installed or frozen, else the checkout's."""
    packaged = Path(__file__).with_name("templates")
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "templates"


def write_templates(dest: Path, files: tuple[str, ...] = TEMPLATE_FILES) -> tuple[list[Path], list[Path]]:
    """Copy the templates into ``dest``; returns (written, already there and left alone)."""
    dest.mkdir(parents=True, exist_ok=True)
    written, kept = [], []
    for name in files:
        target = dest / name
        if target.exists():
            kept.append(target)
            continue
        shutil.copyfile(templates_dir() / name, target)
        written.append(target)
    return written, kept
