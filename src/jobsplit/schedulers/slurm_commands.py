"""Asking a Slurm cluster: its MaxArraySize (``scontrol show config``) and submissions
(``sbatch --parsable``). The commands come from PATH, as a login node has them; they get the
environment of a program started afresh (sbatch exports it to the tasks)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ..errors import UserError
from ..lifecycle import fresh_program_environment

TIMEOUT = 60.0
"""Seconds a Slurm command may take (a busy controller answers slowly, never this slowly)."""


def read_max_array_size() -> tuple[int | None, str]:
    """(MaxArraySize, "") from ``scontrol show config``, or (None, why it could not be read)."""
    try:
        done = subprocess.run(["scontrol", "show", "config"], env=fresh_program_environment(), capture_output=True, text=True, timeout=TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"scontrol cannot be run ({exc})"
    if done.returncode != 0:
        return None, f"scontrol show config failed ({_last_line(done.stderr)})"
    for line in done.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "MaxArraySize" and value.strip().isdigit():
            return int(value.strip()), ""
    return None, "scontrol show config does not say MaxArraySize"


def submit(script: Path) -> str:
    """Submit a batch script; its job id."""
    try:
        done = subprocess.run(["sbatch", "--parsable", str(script)], env=fresh_program_environment(), capture_output=True, text=True, timeout=TIMEOUT, check=False)
    except OSError as exc:
        raise UserError(f"sbatch cannot be run ({exc}); submit {script} on a Slurm login node, or run this there") from None
    except subprocess.TimeoutExpired:
        raise UserError(f"sbatch did not answer within {TIMEOUT:g} s; check the cluster with sinfo, then submit {script} by hand") from None
    job_id = done.stdout.strip().split(";")[0]
    if done.returncode != 0 or not job_id:
        raise UserError(f"sbatch refused {script}: {_last_line(done.stderr) or f'exit status {done.returncode}'}; fix the option it names (see --extra, --partition, --time) and submit again")
    return job_id


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""
