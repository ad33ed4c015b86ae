"""Start-up: the time from exec to the first prompt ("which machine is this?").

This is what a researcher waits for on every host. Three ways to start example_main.py are
measured in the same run, each on a real pseudo-terminal, median of several starts: the
one-file executable (which unpacks itself into a temporary folder first), the one-folder
executable, and `python example_main.py` from the project's venv.

Target (issue 6): one-file <= 1.0 s on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPT = b"Number or name"


def build(mode: str, dist: Path) -> Path:
    """`make exe` in the given mode; returns the program to run."""
    subprocess.run(["make", "-s", "exe", "ENTRY=example_main.py", f"MODE={mode}", f"DIST={dist}"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return dist / "example_main" / "example_main" if mode == "onedir" else dist / "example_main"


def time_to_prompt(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 30) -> float:
    """Seconds from exec until the prompt appears on the terminal; the program is then stopped."""
    start = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(cwd)
        os.execve(command[0], command, env)
    seen = b""
    try:
        while PROMPT not in seen:
            if time.perf_counter() - start > timeout:
                raise TimeoutError(f"no prompt from {command}: {seen.decode(errors='replace')}")
            if select.select([fd], [], [], 0.05)[0]:
                seen += os.read(fd, 4096)
        return time.perf_counter() - start
    finally:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
        os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=5, help="starts per program (the median is shown)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in ("config.ini", "header.csv"):
            shutil.copy(ROOT / "templates" / name, work / name)
        (work / "machines.json").write_text(json.dumps({"alpha": [1.0, 2], "beta": [1.0, 2]}))
        env = {"PATH": "/usr/bin:/bin", "HOME": tmp, "XDG_CONFIG_HOME": str(work / "xdg"), "TMPDIR": tmp, "NO_COLOR": "1", "TERM": "dumb"}
        programs = {
            "one-file executable": [str(build("onefile", work / "dist-onefile")), "run"],
            "one-folder executable": [str(build("onedir", work / "dist-onedir")), "run"],
            "python example_main.py": [sys.executable, str(ROOT / "example_main.py"), "run"],
        }
        print(f"time from exec to the first prompt, median of {args.starts} starts (Python {sys.version.split()[0]})")
        medians = {}
        for name, command in programs.items():
            time_to_prompt(command, work, env)  # a first start warms the page cache
            times = [time_to_prompt(command, work, env) for _ in range(args.starts)]
            medians[name] = statistics.median(times)
            print(f"{name:26} {medians[name]:6.3f} s   (min {min(times):.3f}, max {max(times):.3f})")
        python = medians["python example_main.py"]
        for name in ("one-file executable", "one-folder executable"):
            print(f"{name} / python: {medians[name] / python:.2f}")
        onefile = medians["one-file executable"]
        print(f"\n{'PASS' if onefile <= 1.0 else 'MISS'}  one-file <= 1.0 s ({onefile:.3f} s)")


if __name__ == "__main__":
    main()
