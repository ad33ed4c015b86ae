"""Where jobsplit keeps a user's own files: host.ini, and the notes of where each share ran."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import platformdirs


def user_folder(kind: Literal["config", "state"]) -> Path | None:
    """jobsplit's folder of this kind for this user (platformdirs: on Linux ``~/.config/jobsplit``
    and ``~/.local/state/jobsplit``, or under the XDG variables); None for a user without a home
    folder (no ``HOME``, and a user id without an entry in /etc/passwd, as in a container run
    with ``--user``), where platformdirs raises or would give a relative ``~`` path."""
    find = platformdirs.user_config_dir if kind == "config" else platformdirs.user_state_dir
    try:
        folder = Path(find("jobsplit", appauthor=False))
    except RuntimeError:
        return None
    return folder if folder.is_absolute() else None
