"""Where jobsplit keeps a user's own files: host.ini, and the notes of where each share ran."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import platformdirs


def user_folder(kind: Literal["config", "state"]) -> Path | None:
    """jobsplit's folder of this kind for this user (platformdirs: on Linux ``~/.config/jobsplit``
    and ``~/.local/state/jobsplit``, or under the XDG variables); None for a user without a home
    folder (no ``HOME``, and a user id without an entry in /etc/passwd, as in a container run
    with ``--user``), where platformdirs raises or would give a relative ``~`` path, or whose
    home does not exist (a service account's ``/nonexistent``, which root would have created)."""
    find = platformdirs.user_config_dir if kind == "config" else platformdirs.user_state_dir
    try:
        folder = Path(find("jobsplit", appauthor=False))
    except RuntimeError:
        return None
    if not folder.is_absolute():
        return None
    variable = "XDG_CONFIG_HOME" if kind == "config" else "XDG_STATE_HOME"
    if not os.environ.get(variable) and not Path.home().is_dir():
        return None
    return folder
