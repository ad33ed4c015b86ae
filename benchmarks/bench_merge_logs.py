"""How fast, and in how much memory, ``jobsplit merge-logs`` merges large machine logs.

The benchmark writes ``--files`` logs of ``--lines`` lines each, as jobsplit writes them
(time-ordered records of machine, worker, job id, level and message, a few of them multi-line,
flushed as many gzip members at compresslevel 6; the files' timestamps interleave with jitter),
and caches them in ``--data`` (default: a folder in the temp dir) so reruns are fast. Then, in
the same run, it measures:

- ``merge-logs``: ``python -m jobsplit merge-logs FILE... -o out.log``;
- the baseline: ``LC_ALL=C sort -m <(gzip -dc FILE) ...`` (bash process substitution), the
  classic shell merge of sorted compressed files;
- for information, ``gzip -dc FILE... > /dev/null`` alone.

Seconds are wall-clock; peak RSS is ``ru_maxrss`` of the largest process of each command,
measured by a small wrapper process (a child's ru_maxrss starts at the RSS of the process that
spawned it, so the wrapper's own RSS, about 11 MB, is a floor). Targets: merge-logs / baseline <= 2 and peak RSS <= 100 MB; the script exits 0
whether or not they are met. The merged output's line count must equal the inputs'.

    .venv/bin/python benchmarks/bench_merge_logs.py                  # 8 files x 1,000,000 lines
    .venv/bin/python benchmarks/bench_merge_logs.py --lines 100000 --files 4
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing
import os
import platform
import random
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from jobsplit.results import utc_timestamp

RATIO_TARGET = 2.0
MEMORY_TARGET_MB = 100.0
START = 1_795_000_000.0
"""2026-11-18, in seconds since the epoch."""
MEMBER_LINES = 10_000
"""Lines per gzip member: about 1 MiB of text, what MachineLog's buffer holds at most."""
LEVELS = ("INFO",) * 16 + ("DEBUG",) * 6 + ("WARNING",) * 2 + ("ERROR",)
MESSAGES = (
    "job started: params={i} seed={seed}",
    "step {i}/{n} loss={x:.6f} lr={y:.2e}",
    "job finished in {x:.3f} s, result rows=1",
    "checkpoint written to scratch/run-{seed}/ckpt-{i}.npz ({n} bytes)",
    "sampling {n} points, acceptance={x:.4f}",
    "converged after {i} iterations (residual {y:.3e})",
)
TRACEBACK = (
    "Traceback (most recent call last):",
    '  File "experiment.py", line 42, in job',
    "    value = integrate(params)",
    "ZeroDivisionError: float division by zero",
)
MEASURE = r"""
import json, resource, subprocess, sys, time
start = time.perf_counter()
status = subprocess.run(sys.argv[1:]).returncode
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "peak_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "status": status}))
"""
"""A small wrapper process that runs a command and reports its time and largest peak RSS."""


def write_log(path: Path, index: int, lines: int) -> int:
    """Write one machine's log of exactly ``lines`` lines, as gzip members; return ``lines``."""
    rng = random.Random(index)
    machine = f"node-{index:02d}"
    jobs = [f"{rng.getrandbits(64):016x}" for _ in range(512)]
    now = START + rng.random()
    written = 0
    temp = path.with_suffix(".tmp")
    with open(temp, "wb") as out:
        while written < lines:
            member: list[str] = []
            while len(member) < MEMBER_LINES and written < lines:
                now += rng.expovariate(100.0)  # about 100 records a second per machine
                level = rng.choice(LEVELS)
                worker, job = (f"w{rng.randrange(32):02d}", rng.choice(jobs)) if rng.random() < 0.9 else ("main", "-")
                head = f"{utc_timestamp(now)} {machine} {worker} {job}"
                if rng.random() < 0.001 and lines - written >= len(TRACEBACK) + 1:
                    member.append(f"{head} ERROR job failed\n")
                    member.extend(f"  {line}\n" for line in TRACEBACK)
                    written += len(TRACEBACK) + 1
                    continue
                text = rng.choice(MESSAGES).format(
                    i=rng.randrange(100_000), n=rng.randrange(1, 10**6), seed=rng.getrandbits(32), x=rng.random() * 10, y=rng.random() / 100
                )
                member.append(f"{head} {level} {text}\n")
                written += 1
            out.write(gzip.compress("".join(member).encode(), compresslevel=6))
    temp.rename(path)
    return lines


def prepare(data: Path, files: int, lines: int) -> list[Path]:
    """The cached logs in ``data`` (written in parallel when missing)."""
    data.mkdir(parents=True, exist_ok=True)
    paths = [data / f"node-{i:02d}.log.gz" for i in range(files)]
    manifest = data / "manifest.json"
    expected = {"lines": lines, "files": [p.name for p in paths]}
    if manifest.exists() and json.loads(manifest.read_text()) == expected and all(p.exists() for p in paths):
        return paths
    print(f"writing {files} logs x {lines:,} lines to {data} (cached for the next runs) ...", flush=True)
    with multiprocessing.Pool() as pool:
        pool.starmap(write_log, [(path, i, lines) for i, path in enumerate(paths)])
    manifest.write_text(json.dumps(expected))
    return paths


def measure(command: list[str]) -> dict[str, float]:
    """Seconds, peak RSS (KiB) and exit status of ``command``, run under the wrapper."""
    env = dict(os.environ, LC_ALL="C")
    done = subprocess.run([sys.executable, "-c", MEASURE, *command], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def count_lines(path: Path) -> int:
    with open(path, "rb") as file:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: file.read(1 << 20), b""))


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000, help="lines per log (default: 1,000,000)")
    parser.add_argument("--files", type=int, default=8, help="logs to merge (default: 8)")
    parser.add_argument("--data", type=Path, help="where the generated logs are cached (default: a folder in the temp dir)")
    args = parser.parse_args()
    data = args.data or Path(tempfile.gettempdir()) / f"jobsplit-bench-merge-logs-{args.files}x{args.lines}"
    logs = prepare(data, args.files, args.lines)
    compressed = sum(p.stat().st_size for p in logs)

    print(f"bench_merge_logs: {args.files} logs x {args.lines:,} lines ({compressed / 1e6:.0f} MB compressed) in {data}")
    print(f"Python {platform.python_version()} on {platform.machine()}, {platform.system()}, {os.cpu_count()} cores\n")
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "out.log"
        merged = measure([sys.executable, "-m", "jobsplit", "merge-logs", *map(str, logs), "-o", str(out)])
        merged_lines = count_lines(out)
        out.unlink()
        substitutions = " ".join(f"<(gzip -dc {shlex.quote(str(p))})" for p in logs)
        baseline = measure(["bash", "-c", f"sort -m {substitutions} > {shlex.quote(str(out))}"])
        baseline_lines = count_lines(out)
        out.unlink()
        decompress = measure(["bash", "-c", f"gzip -dc {' '.join(shlex.quote(str(p)) for p in logs)} > /dev/null"])

    rows = [
        ("merge-logs  python -m jobsplit merge-logs", merged),
        ("baseline    sort -m <(gzip -dc) ...", baseline),
        ("info        gzip -dc ... > /dev/null", decompress),
    ]
    print(f"{'command':44}{'seconds':>9}{'peak RSS':>12}{'status':>8}")
    for label, figures in rows:
        print(f"{label:44}{figures['seconds']:9.2f}{figures['peak_kib'] * 1024 / 1e6:9.1f} MB{figures['status']:8.0f}")
    total = args.files * args.lines
    print(f"\nlines: inputs {total:,}, merge-logs output {merged_lines:,} ({verdict(merged_lines == total)}), sort -m output {baseline_lines:,}")
    ratio = merged["seconds"] / baseline["seconds"]
    peak_mb = merged["peak_kib"] * 1024 / 1e6
    print(f"ratio merge-logs / baseline: {ratio:.2f}   target <= {RATIO_TARGET:g}   {verdict(ratio <= RATIO_TARGET)}")
    print(f"peak RSS of merge-logs: {peak_mb:.1f} MB   target <= {MEMORY_TARGET_MB:g} MB   {verdict(peak_mb <= MEMORY_TARGET_MB)}")


if __name__ == "__main__":
    main()
