"""`jobsplit merge-logs` (issue 5, Must show 2): one time-ordered log from every machine's logs.

The logs are written by jobsplit's own MachineLog (gzip members, rotated segments, multi-line
records indented by two spaces); the command runs in a fresh interpreter, as users run it.
"""

from __future__ import annotations

import gzip
import json
import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from conftest import entry_env
from jobsplit.config import LogSettings
from jobsplit.logs import MachineLog
from jobsplit.outdir import MachineDir
from jobsplit.timefmt import utc_timestamp

START = 1_795_000_000.0
RECORD_START = re.compile(rb"\n(?=\d)")
MACHINES = ("alpha", "beta", "gamma")
MEASURE = r"""
import json, resource, subprocess, sys
status = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
print(json.dumps({"peak_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "status": status}))
"""
"""Runs a command from a small process, so its peak RSS is not floored by pytest's own."""


def merge_logs(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "jobsplit", "merge-logs", *map(str, args)], env=entry_env(), capture_output=True, timeout=timeout, check=False
    )


def write_machine(root: Path, machine: str, records: int, *, max_size: int = 1 << 20, multiline: bool = False) -> Path:
    """A machine directory with ``records`` log records from MachineLog, 40 per gzip member.

    Times fall on 3,000 milliseconds, so records share timestamps within and across machines.
    """
    rng = random.Random(machine)
    machine_dir = root / machine
    machine_dir.mkdir(parents=True)
    log = MachineLog(MachineDir(machine_dir, machine), LogSettings(max_size=max_size))
    for i, created in enumerate(sorted(START + rng.randrange(3000) / 1000 for _ in range(records))):
        message = f"record {i} of {machine}"
        if multiline and i % 7 == 0:
            message += f"\nTraceback (most recent call last):\n  File 'job.py', line {i}\nValueError: {i}"
        log.write(created, f"w{rng.randrange(4)}", f"{rng.getrandbits(32):08x}", rng.choice(("INFO", "WARNING")), "job", message)
        if i % 40 == 39:
            log.flush(everything=True)
    log.close()
    return machine_dir


def records_of(data: bytes) -> list[bytes]:
    """Split log text into records (a first line and its continuation lines)."""
    return RECORD_START.split(data.removesuffix(b"\n")) if data else []


def machine_records(machine_dir: Path) -> list[bytes]:
    return records_of(b"".join(gzip.decompress(p.read_bytes()) for p in MachineDir(machine_dir, machine_dir.name).segments()))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An output root with three machines: alpha rotated into segments, beta with multi-line records."""
    out = tmp_path / "out"
    write_machine(out, "alpha", 600, max_size=2048)
    write_machine(out, "beta", 400, multiline=True)
    write_machine(out, "gamma", 500)
    return out


def test_three_machines_merge_in_time_order_without_losing_a_line(root: Path, tmp_path: Path) -> None:
    assert len(MachineDir(root / "alpha", "alpha").segments()) >= 4  # rotated segments and the current log
    out = tmp_path / "merged.log"
    done = merge_logs(root / "alpha", root / "beta", root / "gamma", "-o", out)
    assert done.returncode == 0, done.stderr
    merged = out.read_bytes()
    expected = [record for machine in MACHINES for record in machine_records(root / machine)]
    assert Counter(merged.splitlines()) == Counter(b"\n".join(expected).splitlines())
    records = records_of(merged)
    assert [r[:24] for r in records] == sorted(r[:24] for r in records)
    # A millisecond's records keep each log's order (they were sorted by their bytes: a job's
    # "step 10" before its "step 2", a traceback's lines shuffled), and the logs' by name.
    for machine in MACHINES:
        assert [r for r in records if r.split(b" ", 2)[1] == machine.encode()] == machine_records(root / machine)
    order = [(r[:24], MACHINES.index(r.split(b" ", 2)[1].decode())) for r in records]
    assert order == sorted(order)
    multiline = [r for r in expected if b"\n" in r]
    assert len(multiline) > 50
    assert Counter(records) >= Counter(multiline)  # each multi-line record stays in one piece
    summary = done.stderr.decode()
    assert f"merged {len(expected):,} records from 3 logs" in summary
    assert "Traceback" not in summary


def test_order_does_not_depend_on_the_order_of_the_inputs(root: Path, tmp_path: Path) -> None:
    forward, backward = tmp_path / "forward.log", tmp_path / "backward.log"
    assert merge_logs(root / "alpha", root / "beta", root / "gamma", "-o", forward).returncode == 0
    assert merge_logs(root / "gamma", root / "beta", root / "alpha", "-o", backward).returncode == 0
    assert forward.read_bytes() == backward.read_bytes()


def test_gzip_plain_and_stdout_outputs_hold_the_same_text(root: Path, tmp_path: Path) -> None:
    plain, compressed = tmp_path / "merged.log", tmp_path / "merged.log.gz"
    assert merge_logs(root, "-o", plain).returncode == 0
    assert merge_logs(root, "-o", compressed).returncode == 0
    to_stdout = merge_logs(root, "-o", "-")
    assert to_stdout.returncode == 0
    assert compressed.read_bytes().startswith(b"\x1f\x8b")
    assert gzip.decompress(compressed.read_bytes()) == plain.read_bytes() == to_stdout.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged.log", "merged.log.gz", "out"]  # no temporary files left


def test_root_directories_and_files_give_the_same_log_and_count_each_file_once(root: Path, tmp_path: Path) -> None:
    from_root, from_files = tmp_path / "root.log", tmp_path / "files.log"
    (root / "alpha" / "jobs").mkdir()  # per-job logs are not the machine's log
    (root / "alpha" / "jobs" / "00c0ffee.log.gz").write_bytes(gzip.compress(b"2026-11-18T08:00:00.000Z INFO job: per-job line\n"))
    done = merge_logs(root, root / "beta", root / "gamma" / "gamma.log.gz", "-o", from_root)
    assert done.returncode == 0
    assert "from 3 logs" in done.stderr.decode()
    files = [p for machine in MACHINES for p in MachineDir(root / machine, machine).segments()]
    assert merge_logs(*files, "-o", from_files).returncode == 0
    assert from_root.read_bytes() == from_files.read_bytes()
    saved = root / "merged.log.gz"  # a merged log saved in the root is not taken for a machine's
    assert merge_logs(root, "-o", saved).returncode == 0
    again = merge_logs(root, "-o", "-")
    assert again.stdout == from_files.read_bytes()
    assert "from 3 logs" in again.stderr.decode()


@pytest.mark.parametrize("output", ["file", "-"])
def test_an_input_that_cannot_be_read_is_named_not_the_output(root: Path, tmp_path: Path, output: str) -> None:
    """A log the user may not read (here a socket, which even root cannot open) was reported as
    "OUT cannot be written; check that its folder exists", and with -o - as a traceback."""
    import socket as sockets

    unreadable = tmp_path / "b.log.gz"
    server = sockets.socket(sockets.AF_UNIX)
    server.bind(str(unreadable))
    try:
        done = merge_logs(root, unreadable, "-o", tmp_path / "all.log" if output == "file" else "-")
    finally:
        server.close()
    err = done.stderr.decode()
    assert done.returncode == 2 and "Traceback" not in err, err
    assert f"error: {unreadable} cannot be read (" in err and "cannot be written" not in err, err


def test_a_machine_folder_copied_under_another_name_is_merged_with_the_others(root: Path, tmp_path: Path) -> None:
    """Collected as ``gamma-from-node7``: merge-results took the folder, merge-logs left its log
    out (only ``<machine>/<machine>.log.gz`` counted), with exit 0, and a root whose folders
    were all renamed "held no logs"."""
    whole = merge_logs(root, "-o", "-")
    (root / "gamma").rename(root / "gamma-from-node7")
    renamed = merge_logs(root, "-o", "-")
    assert renamed.returncode == 0 and renamed.stdout == whole.stdout and "from 3 logs" in renamed.stderr.decode(), renamed.stderr
    for machine in ("alpha", "beta"):
        (root / machine).rename(root / f"{machine}-copy")
    assert merge_logs(root, "-o", "-").stdout == whole.stdout


def test_plain_text_inputs_and_outputs(root: Path, tmp_path: Path) -> None:
    plain_gamma = tmp_path / "gamma.txt"
    plain_gamma.write_bytes(b"".join(gzip.decompress(p.read_bytes()) for p in MachineDir(root / "gamma", "gamma").segments()))
    from_plain, from_gzip = tmp_path / "plain.log", tmp_path / "gzip.log"
    assert merge_logs(root / "alpha", plain_gamma, "-o", from_plain).returncode == 0
    assert merge_logs(root / "alpha", root / "gamma", "-o", from_gzip).returncode == 0
    assert from_plain.read_bytes() == from_gzip.read_bytes()


@pytest.mark.parametrize("cut", ["in the header", "mid-member", "in the trailer"])
def test_a_truncated_last_member_is_reported_and_its_complete_records_kept(root: Path, tmp_path: Path, cut: str) -> None:
    records = machine_records(root / "gamma")
    first, second = gzip.compress(b"\n".join(records[:300]) + b"\n"), gzip.compress(b"\n".join(records[300:]) + b"\n")
    length = {"in the header": 5, "mid-member": len(second) // 2, "in the trailer": len(second) - 4}[cut]
    copied = tmp_path / "copied" / "gamma.log.gz"
    copied.parent.mkdir()
    copied.write_bytes(first + second[:length])
    out = tmp_path / "merged.log"
    done = merge_logs(root / "alpha", copied, "-o", out)
    assert done.returncode == 0, done.stderr
    kept = [r for r in records_of(out.read_bytes()) if b" gamma " in r]
    assert Counter(kept) == Counter(records[: len(kept)])
    if cut == "in the header":
        assert len(kept) == 300
    elif cut == "mid-member":
        assert 300 < len(kept) < len(records)
    else:
        assert len(kept) == len(records)  # every line was readable, only the checksum is missing
    message = " ".join(done.stderr.decode().split())  # rich may wrap a long path
    assert f"{copied}: the last gzip member is truncated; kept the {len(kept)} complete records before it" in message


@pytest.mark.parametrize("length", [5, 30], ids=["in the header", "a few bytes of text"])
def test_a_log_whose_only_member_is_cut_short_is_reported_as_truncated_not_as_no_log(root: Path, tmp_path: Path, length: int) -> None:
    """A log copied as its run began: its one gzip member cut before a whole record's time came
    out was taken for a file that is no log at all."""
    records = machine_records(root / "gamma")
    copied = tmp_path / "copied" / "gamma.log.gz"
    copied.parent.mkdir()
    copied.write_bytes(gzip.compress(b"\n".join(records) + b"\n", mtime=0)[:length])
    done = merge_logs(root / "alpha", copied, "-o", tmp_path / "merged.log")
    assert done.returncode == 0, done.stderr
    assert f"{copied}: the last gzip member is truncated; kept the 0 complete records before it" in " ".join(done.stderr.decode().split())


@pytest.mark.parametrize("damage", ["30 bytes cut", "half cut", "3 bytes cut", "a zero-filled tail"])
def test_a_member_cut_short_with_a_resumed_run_written_after_it_loses_only_that_member(root: Path, tmp_path: Path, damage: str) -> None:
    """A crash tore the log's last member and the resumed run appended to it: merge-logs refused
    the whole log ("corrupt or not gzip (incorrect data check)", nothing written), or, the cut
    small, wrote garbled lines of the torn member's deflate stream and dropped the resumed
    run's records. Now it keeps every complete member, before and after, and names the damage."""
    records = machine_records(root / "gamma")
    before, torn, resumed = records[:200], records[200:350], records[350:]
    whole = gzip.compress(b"\n".join(torn) + b"\n")
    cut = {"30 bytes cut": len(whole) - 30, "half cut": len(whole) // 2, "3 bytes cut": len(whole) - 3, "a zero-filled tail": len(whole) // 2}[damage]
    zeros = bytes(4096) if damage == "a zero-filled tail" else b""
    first = gzip.compress(b"\n".join(before) + b"\n")
    copied = tmp_path / "copied" / "gamma.log.gz"
    copied.parent.mkdir()
    copied.write_bytes(first + whole[:cut] + zeros + gzip.compress(b"\n".join(resumed) + b"\n"))
    out = tmp_path / "merged.log"
    done = merge_logs(copied, "-o", out)
    assert done.returncode == 0, done.stderr
    assert records_of(out.read_bytes()) == before + resumed
    message = " ".join(done.stderr.decode().split())
    assert f"{copied}: bytes {len(first):,} to {len(first) + cut + len(zeros):,} are damaged" in message
    assert "the records in them are lost, those before and after are kept" in message


def test_the_report_reads_the_failures_log_lines_past_a_damaged_stretch(tmp_path: Path) -> None:
    """report read a machine log whose torn member a resumed run had appended to as corrupt:
    exit 2, no report. Now it finds the lines after the damage, and says what it skipped."""
    from test_report_figures import make_fixture

    out = make_fixture(tmp_path)
    log = out / "A" / "A.log.gz"
    members = gzip.decompress(log.read_bytes()).splitlines(keepends=True)
    torn = gzip.compress(b"".join(members[:3]))
    log.write_bytes(torn[:-30] + gzip.compress(b"".join(members[3:])))
    done = subprocess.run([sys.executable, "-m", "jobsplit", "report", str(out), "-o", str(tmp_path / "report.html")], env=entry_env(), capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert f"{log}: bytes 0 to {len(torn) - 30:,} are damaged" in " ".join(done.stderr.split())
    page = (tmp_path / "report.html").read_text()
    assert "allocating a lot" in page and "ERROR job failed" in page


def test_a_missing_input_is_one_sentence_and_exit_status_2(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "merged.log"
    done = merge_logs(root, tmp_path / "nowhere.log.gz", "-o", out)
    assert done.returncode == 2
    stderr = done.stderr.decode()
    assert stderr.startswith("error:") and "nowhere.log.gz does not exist" in stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_a_directory_without_logs_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    done = merge_logs(tmp_path / "empty", "-o", tmp_path / "merged.log")
    assert done.returncode == 2
    assert "empty holds no logs" in done.stderr.decode()


def test_a_corrupt_input_fails_without_leaving_a_partial_output(root: Path, tmp_path: Path) -> None:
    corrupt = tmp_path / "delta.log.gz"
    corrupt.write_bytes(b"this is not gzip\n" * 100)
    out = tmp_path / "merged.log.gz"
    done = merge_logs(root, corrupt, "-o", out)
    assert done.returncode == 2
    stderr = done.stderr.decode()
    assert "delta.log.gz is corrupt or not gzip" in stderr and "Traceback" not in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["delta.log.gz", "out"]


def write_big_log(path: Path, lines: int, offset: float) -> None:
    """A log of ``lines`` one-line records, written quickly as gzip members of 10,000 lines."""
    with open(path, "wb") as out:
        for start in range(0, lines, 10_000):
            text = "".join(
                f"{utc_timestamp(START + offset + i / 100)} big w{i % 8} {i:016x} INFO step {i} of a long run, loss={i % 997 / 997:.6f}\n"
                for i in range(start, min(start + 10_000, lines))
            )
            out.write(gzip.compress(text.encode(), compresslevel=1))


def peak_rss_kib(*args: str | Path) -> int:
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, sys.executable, "-m", "jobsplit", "merge-logs", *map(str, args)],
        env=entry_env(), capture_output=True, text=True, check=True, timeout=120,
    )
    figures = json.loads(done.stdout)
    assert figures["status"] == 0
    return figures["peak_kib"]


def test_memory_stays_flat_as_the_input_grows(tmp_path: Path) -> None:
    peaks = {}
    for lines in (50_000, 500_000):
        logs = [tmp_path / f"{lines}-{i}.log.gz" for i in range(2)]
        for i, log in enumerate(logs):
            write_big_log(log, lines, offset=i / 300)
        peaks[lines] = peak_rss_kib(*logs, "-o", tmp_path / "merged.log")
        assert (tmp_path / "merged.log").read_bytes().count(b"\n") == 2 * lines
    assert peaks[500_000] - peaks[50_000] <= 20 * 1024, peaks


def test_a_file_that_is_no_log_is_refused(root: Path, tmp_path: Path) -> None:
    """``merge-logs OUT/*/*`` (a shell glob) took the journals, results.csv and progress.json for
    logs and "merged" them: binary SQLite pages at the top of the merged log, exit 0."""
    journal = tmp_path / "journal.sqlite"
    journal.write_bytes(b"SQLite format 3\x00" + bytes(200))
    results = tmp_path / "results.csv"
    results.write_text("Run Start Time,Job Running Time,Job Start Time,Value\n2026-01-01T00:00:00Z,0.5,2026-01-01T00:00:00Z,1\n")
    for bad in (journal, results):
        out = tmp_path / "merged.log"
        done = merge_logs(root / "alpha", bad, "-o", out)
        assert done.returncode == 2, done.stderr
        assert f"{bad} is no jobsplit log: it does not begin with a record's time" in " ".join(done.stderr.decode().split())
        assert not out.exists()
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    assert merge_logs(root / "alpha", empty, "-o", tmp_path / "merged.log").returncode == 0


def test_folders_merge_results_would_refuse_or_note_are_refused_or_noted_by_merge_logs_too(tmp_path: Path) -> None:
    """merge-logs exited 0, saying nothing, on folders of different plans, on a machine's folder
    copied twice (its records merged twice) and on an empty log, which merge-results refuses or
    names. Now the digests are refused as merge-results refuses them, and the rest is noted."""
    import shutil

    from test_report_journal import RunRow, machines_json, write_journal

    out, other = tmp_path / "out", tmp_path / "other"
    machines, plan = machines_json(a=(1.0, 1), b=(1.0, 1)), {"a": 1, "b": 1}
    for root, machine, digest in ((out, "a", "1" * 32), (out, "b", "1" * 32), (other, "b", "2" * 32)):
        write_journal(root, machine, [], [RunRow(0, 1, 1, 1)], plan=plan, machines=machines, digest=digest)
    write_machine(tmp_path / "logs", "a", 50)
    shutil.copy(tmp_path / "logs" / "a" / "a.log.gz", out / "a")
    shutil.copy(tmp_path / "logs" / "a" / "a.log.gz", other / "b" / "b.log.gz")
    (out / "b" / "b.log.gz").write_bytes(b"")
    mixed = merge_logs(out, other / "b", "-o", tmp_path / "mixed.log")
    assert mixed.returncode == 2 and not (tmp_path / "mixed.log").exists()
    assert "these folders come from different plans" in " ".join(mixed.stderr.decode().split())
    shutil.copytree(out / "a", tmp_path / "a-copy")
    twice = merge_logs(out, tmp_path / "a-copy", "-o", tmp_path / "twice.log")
    assert twice.returncode == 0, twice.stderr
    said = " ".join(twice.stderr.decode().split())
    assert f"machine a is in 2 folders ({tmp_path / 'a-copy'}, {out / 'a'})" in said  # in the order of the logs read
    assert f"{out / 'b' / 'b.log.gz'} is empty: it holds no records" in said
