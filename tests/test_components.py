"""The component fixtures work for real: Redis over RESP, a one-node Slurm cluster, headless Chromium.

These tests check the test infrastructure (tests/components.py), and pin the facts about the
real programs that the product relies on: a restarted Redis without persistence is empty, a
batch script gets `scancel --signal` only with `--batch`, a requeued array task runs again, and
an array larger than MaxArraySize is refused.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from components import (
    RespError,
    SlurmCluster,
    SlurmError,
    png_is_blank,
    png_size,
    resp_command,
    wait_for,
)

# --- Redis -------------------------------------------------------------------------------


def test_redis_ping_set_get(redis_server):
    server = redis_server.start()
    assert server.ping()
    assert server.url == f"redis://127.0.0.1:{server.port}/0"
    assert server.command("SET", "queue:next", "job-7") == "OK"
    assert server.command("GET", "queue:next") == b"job-7"
    assert server.command("RPUSH", "queue", "a", "b", "c") == 3
    assert server.command("LRANGE", "queue", 0, -1) == [b"a", b"b", b"c"]
    assert server.command("GET", "missing") is None
    with pytest.raises(RespError, match="wrong number of arguments"):
        server.command("GET")


def test_redis_restart_comes_back_empty_on_the_same_port(redis_server):
    server = redis_server.start()
    port = server.port
    server.command("SET", "k", "v")
    assert server.command("DBSIZE") == 1

    server.restart()
    assert server.port == port and server.ping()
    assert server.command("DBSIZE") == 0

    server.command("SET", "k", "v")
    server.kill()
    assert not server.ping()
    server.start()
    assert server.command("GET", "k") is None


def test_redis_with_password(redis_server):
    server = redis_server.start(password="s3cret")
    assert server.url == f"redis://:s3cret@127.0.0.1:{server.port}/0"
    assert server.ping()
    assert server.command("SET", "k", "v") == "OK"
    other = redis_server.start()  # a second server in the same test, without a password
    assert other.port != server.port and other.command("GET", "k") is None

    with pytest.raises(RespError, match="NOAUTH"):
        resp_command(server.port, "GET", "k")
    with pytest.raises(RespError, match="WRONGPASS"):
        resp_command(server.port, "GET", "k", password="wrong")
    server.stop()
    assert not server.ping()


# --- Slurm -------------------------------------------------------------------------------


def write_script(path: Path, body: str, *directives: str) -> Path:
    """A bash batch script with ``#SBATCH`` lines, its output files next to it."""
    lines = ["#!/bin/bash", *(f"#SBATCH {d}" for d in directives), f"#SBATCH --output={path.parent}/slurm-%A_%a.out", body]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.slow
def test_slurm_array_tasks_run_concurrently_with_their_index(slurm: SlurmCluster, tmp_path: Path):
    # Each task waits (at most 60 s) until all four have started: the four virtual CPUs let a
    # 4-task array run at once although the machine has two cores.
    script = write_script(
        tmp_path / "array.sh",
        f"""
touch {tmp_path}/started_$SLURM_ARRAY_TASK_ID
for i in $(seq 600); do [ $(ls {tmp_path} | grep -c '^started_') -ge 4 ] && break; sleep 0.1; done
echo "$SLURM_ARRAY_TASK_ID $SLURM_ARRAY_TASK_COUNT $SLURM_CPUS_PER_TASK $(ls {tmp_path} | grep -c '^started_')" > {tmp_path}/task_$SLURM_ARRAY_TASK_ID
""",
        "--array=0-3",
        "--cpus-per-task=1",
    )
    job = slurm.sbatch(script)
    assert job.isdigit()
    states = slurm.wait_until_done(job, timeout=180)
    assert states == {f"{job}_{i}": "COMPLETED" for i in range(4)}
    for i in range(4):
        assert (tmp_path / f"task_{i}").read_text().split() == [str(i), "4", "1", "4"]


TRAP_BODY = """
trap 'echo "TERM ${{SLURM_RESTART_COUNT:-0}}" >> {d}/term_$SLURM_ARRAY_TASK_ID; exit 0' TERM
trap 'echo "USR1" >> {d}/usr1_$SLURM_ARRAY_TASK_ID' USR1
echo "start ${{SLURM_RESTART_COUNT:-0}}" >> {d}/start_$SLURM_ARRAY_TASK_ID
[ "${{SLURM_RESTART_COUNT:-0}}" -gt 0 ] && exit 0
for i in $(seq 120); do sleep 1 & wait $!; done
"""


def line_written(path: Path) -> bool:
    """Whether a whole line is in the file (it may exist, still empty, while a shell writes it)."""
    return path.exists() and path.read_text().endswith("\n")


@pytest.mark.slow
def test_slurm_scancel_signal_reaches_the_batch_script_with_batch(slurm: SlurmCluster, tmp_path: Path):
    script = write_script(tmp_path / "trap.sh", TRAP_BODY.format(d=tmp_path), "--array=0-1", "--cpus-per-task=1")
    job = slurm.sbatch(script)
    assert wait_for(lambda: all((tmp_path / f"start_{i}").exists() for i in range(2)), 60), slurm.squeue(job)

    # Plain `scancel --signal` signals job steps only: the batch script (no steps) never sees it.
    slurm.scancel("--signal=TERM", f"{job}_1")
    slurm.scancel("--batch", "--signal=USR1", f"{job}_1")
    assert wait_for((tmp_path / "usr1_1").exists, 30)
    assert not (tmp_path / "term_1").exists()

    slurm.scancel("--batch", "--signal=TERM", f"{job}_1")
    assert wait_for(lambda: line_written(tmp_path / "term_1"), 30)  # the trap's echo creates the file, then writes it
    assert (tmp_path / "term_1").read_text() == "TERM 0\n"
    assert wait_for(lambda: not slurm.squeue(f"{job}_1"), 30)
    assert slurm.job_states(job)[f"{job}_1"] == "COMPLETED"  # the trap exited 0
    assert not (tmp_path / "term_0").exists()  # only task 1 was signalled


@pytest.mark.slow
def test_slurm_requeue_reruns_a_running_array_task(slurm: SlurmCluster, tmp_path: Path):
    script = write_script(tmp_path / "trap.sh", TRAP_BODY.format(d=tmp_path), "--array=0-1", "--cpus-per-task=1")
    job = slurm.sbatch(script)
    assert wait_for(lambda: all((tmp_path / f"start_{i}").exists() for i in range(2)), 60), slurm.squeue(job)

    slurm.scontrol("requeue", f"{job}_0")  # SIGTERM to the running task, then back to pending
    assert wait_for(lambda: (tmp_path / "start_0").read_text().count("start") == 2, 120), slurm.squeue(job)
    assert (tmp_path / "start_0").read_text() == "start 0\nstart 1\n"  # SLURM_RESTART_COUNT
    assert (tmp_path / "term_0").read_text() == "TERM 0\n"  # the first run was told to stop
    assert "Restarts=1" in slurm.scontrol("show", "job", f"{job}_0")

    slurm.scancel(f"{job}_1")
    assert slurm.wait_until_done(job)[f"{job}_0"] == "COMPLETED"
    assert (tmp_path / "start_1").read_text() == "start 0\n"


@pytest.mark.slow
def test_slurm_array_larger_than_max_array_size_is_refused(slurm: SlurmCluster, tmp_path: Path):
    script = write_script(tmp_path / "noop.sh", "true")
    default = slurm.max_array_size
    assert default > 8
    with slurm.configured(MaxArraySize=3):
        assert slurm.max_array_size == 3
        with pytest.raises(SlurmError, match="Invalid job array specification"):
            slurm.sbatch(script, "--array=0-7")
        job = slurm.sbatch(script, "--array=0-2")  # indexes must stay below MaxArraySize
        assert slurm.wait_until_done(job) == {f"{job}_{i}": "COMPLETED" for i in range(3)}
    assert slurm.max_array_size == default
    job = slurm.sbatch(script, "--array=0-7")
    assert len(slurm.wait_until_done(job)) == 8


# --- Chromium ----------------------------------------------------------------------------

BARS_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>report</title></head>
<body style="margin:0;background:#fff">
<div id="chart"></div>
<script>
  const chart = document.getElementById("chart");
  for (const [name, value] of [["alpha", 120], ["beta", 300], ["gamma", 210]]) {
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.dataset.name = name;
    bar.style.cssText = `width:${value}px;height:40px;margin:8px;background:#3366cc`;
    chart.appendChild(bar);
  }
</script>
</body></html>
"""


def test_chromium_dump_dom_shows_what_scripts_added(chromium, tmp_path: Path):
    page = tmp_path / "report.html"
    page.write_text(BARS_PAGE)
    dom = chromium.dump_dom(page)
    assert dom.count('class="bar"') == 3
    assert 'data-name="beta"' in dom


def test_chromium_screenshot_is_not_blank(chromium, tmp_path: Path):
    page = tmp_path / "report.html"
    page.write_text(BARS_PAGE)
    png = chromium.screenshot(page, tmp_path / "report.png", width=640, height=400)
    assert png_size(png) == (640, 400)
    assert not png_is_blank(png)

    empty = tmp_path / "empty.html"
    empty.write_text("<!doctype html><body style='background:#fff'></body>")
    assert png_is_blank(chromium.screenshot(empty, tmp_path / "empty.png", width=320, height=200))


# --- png_is_blank on PNGs made here ---------------------------------------------------------


def make_png(rows: list[list[tuple[int, ...]]], colour_type: int = 2, filters: bytes = b"\0") -> bytes:
    """A PNG of 8-bit pixels; ``filters`` cycles over the rows (0 None, 1 Sub, 2 Up, 3 Avg, 4 Paeth)."""
    width, height = len(rows[0]), len(rows)
    bpp = len(rows[0][0])
    raw = bytearray()
    prev = bytes(width * bpp)
    for y, row in enumerate(rows):
        line = bytes(v for px in row for v in px)
        kind = filters[y % len(filters)]
        out = bytearray()
        for i, value in enumerate(line):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            p = a + b - c
            paeth = a if abs(p - a) <= abs(p - b) and abs(p - a) <= abs(p - c) else (b if abs(p - b) <= abs(p - c) else c)
            pred = [0, a, b, (a + b) >> 1, paeth][kind]
            out.append((value - pred) & 0xFF)
        raw += bytes([kind]) + out
        prev = line

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(raw))) + chunk(b"IEND", b"")


@pytest.mark.parametrize("filters", [b"\0", b"\1", b"\2", b"\3", b"\4", b"\0\1\2\3\4"])
def test_png_is_blank_decodes_every_filter(tmp_path: Path, filters: bytes):
    white = (255, 255, 255, 255)
    flat = [[white] * 7 for _ in range(5)]
    (tmp_path / "flat.png").write_bytes(make_png(flat, colour_type=6, filters=filters))
    assert png_is_blank(tmp_path / "flat.png")
    assert png_size(tmp_path / "flat.png") == (7, 5)

    dot = [row[:] for row in flat]
    dot[4][6] = (255, 255, 254, 255)  # one pixel, in the last row, differs
    (tmp_path / "dot.png").write_bytes(make_png(dot, colour_type=6, filters=filters))
    assert not png_is_blank(tmp_path / "dot.png")

    gradient = [[(x * 30, y * 40, (x * y) % 256) for x in range(7)] for y in range(5)]
    (tmp_path / "gradient.png").write_bytes(make_png(gradient, colour_type=2, filters=filters))
    assert not png_is_blank(tmp_path / "gradient.png")


def test_png_is_blank_rejects_what_is_not_a_png(tmp_path: Path):
    (tmp_path / "x.png").write_bytes(b"GIF89a")
    with pytest.raises(ValueError, match="not a PNG"):
        png_is_blank(tmp_path / "x.png")
