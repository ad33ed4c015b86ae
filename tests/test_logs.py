"""The machine log and per-job logs (issue 5, "Logs"; must-show point 1).

Every test runs a small entry script in a fresh interpreter, as a researcher would, and reads
``<out>/<machine>/<machine>.log.gz`` (and its rotated segments) with ``gzip`` afterwards, or
while the run is still going.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from calendar import timegm
from pathlib import Path

import pytest

from conftest import entry_env, error_lines, run_entry, write_config_dir
from jobsplit.capture import MAX_LINE
from jobsplit.config import LogSettings
from jobsplit.logs import MachineLog
from jobsplit.outdir import MachineDir

HEADER = ("Run Start Time", "Job Running Time", "Job Start Time", "Value")
MACHINES = {"m1": [1.0, 2]}

RECORD = re.compile(
    r"(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (?P<machine>\S+) (?P<worker>\S+) (?P<job>\S+) (?P<level>[A-Z]+) (?P<message>.*)"
)
JOB_ID = re.compile(r"[0-9a-f]{32}")


# --- helpers -------------------------------------------------------------------------------


def make_project(tmp_path: Path, body: str, *, config: str = "", pool: str = "list(range(6))") -> Path:
    """Config files plus an entry script whose ``job(i, random_obj, config, progress)`` is ``body``."""
    write_config_dir(tmp_path, config=config, header=HEADER, machines=MACHINES)
    entry = tmp_path / "entry.py"
    entry.write_text(
        "import logging, os, sys, time, warnings\n"
        "import jobsplit\n\n"
        'log = logging.getLogger("lab.job")\n\n\n'
        "def job(i, random_obj, config, progress):\n"
        + textwrap.indent(textwrap.dedent(body), "    ")
        + f"\n\npool = {pool}\n\n"
        'if __name__ == "__main__":\n'
        "    jobsplit.main(job, pool)\n",
        encoding="utf-8",
    )
    return entry


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    # A local time zone far from UTC: timestamps must still be UTC.
    return entry_env(XDG_CONFIG_HOME=str(tmp_path / "xdg"), XDG_STATE_HOME=str(tmp_path / "state"), NO_COLOR="1", TZ="Asia/Kolkata", **extra)


def run_args(tmp_path: Path, *more: str, start_method: str = "fork", workers: int = 2) -> list[str]:
    return [
        "--console", "plain", "--yes", "--out", str(tmp_path / "out"), "--machine", "m1",
        "--start-method", start_method, "--workers", str(workers), *more,
    ]  # fmt: skip


def run(tmp_path: Path, entry: Path, *more: str, start_method: str = "fork", workers: int = 2, **env: str) -> subprocess.CompletedProcess[str]:
    return run_entry(entry, *run_args(tmp_path, *more, start_method=start_method, workers=workers), env=env_for(tmp_path, **env), cwd=tmp_path)


def parse_log(text: str) -> list[dict]:
    """Records of a log's text; a line that does not start a record must start with two spaces."""
    records: list[dict] = []
    for number, line in enumerate(text.splitlines(), 1):
        if line[:1].isdigit():
            match = RECORD.fullmatch(line)
            assert match, f"line {number} starts like a record but is not one: {line!r}"
            records.append({**match.groupdict(), "more": []})
        else:
            assert line.startswith("  "), f"line {number} neither starts a record nor is indented by two spaces: {line!r}"
            assert records, f"line {number} continues no record: {line!r}"
            records[-1]["more"].append(line[2:])
    return records


def epoch(stamp: str) -> float:
    return timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) + int(stamp[20:23]) / 1000


def job_ids(machine_dir: Path) -> dict[int, str]:
    """pool value i -> Job ID, from results.csv (jobs are ``(i,)``, so Job Args is ``[i]``)."""
    with open(machine_dir / "results.csv", encoding="utf-8", newline="") as f:
        return {int(row["Job Args"].strip("[]")): row["Job ID"] for row in csv.DictReader(f)}


def gunzip(path: Path) -> str:
    return subprocess.run(["gzip", "-dc", str(path)], capture_output=True, check=True).stdout.decode("utf-8")


def find(records: list[dict], **fields: str) -> list[dict]:
    """Records whose fields equal ``fields`` (``message`` matches as a substring)."""
    message = fields.pop("message", None)
    return [r for r in records if all(r[k] == v for k, v in fields.items()) and (message is None or message in r["message"])]


# --- records from jobs, under fork and spawn -------------------------------------------------

JOB_THAT_LOGS = """\
log.info("job %d says %s", i, "hello")
log.warning("job %d is at %.1f%%", i, 50)
warnings.warn(f"job {i} warns")
print(f"job {i} prints")
print(f"job {i} complains", file=sys.stderr)
if i % 3 == 0:
    try:
        {}[f"missing-{i}"]
    except KeyError:
        log.exception("job %d could not look it up", i)
log.debug("job %d chatter below the level", i)
os.system(f"echo job {i} shell")
time.sleep(0.2)  # output written to fd 1 is read by a thread: give it time while this job runs
return i * 10
"""


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_job_records_land_in_the_machine_log_with_their_job_id(tmp_path, start_method):
    entry = make_project(tmp_path, JOB_THAT_LOGS)
    started = time.time()
    result = run(tmp_path, entry, start_method=start_method)
    ended = time.time()
    assert result.returncode == 0, result.stderr
    machine_dir = tmp_path / "out" / "m1"
    ids = job_ids(machine_dir)
    assert sorted(ids) == list(range(6))
    log_file = machine_dir / "m1.log.gz"
    text = gunzip(log_file)
    records = parse_log(text)

    for i, job_id in ids.items():
        assert JOB_ID.fullmatch(job_id)
        (said,) = find(records, job=job_id, level="INFO", message=f"job {i} says hello")
        assert re.fullmatch(r"w\d+", said["worker"]), said
        assert said["message"] == f"job {i} says hello"
        (halfway,) = find(records, job=job_id, level="WARNING", message=f"job {i} is at")
        assert halfway["message"] == f"job {i} is at 50.0%"
        (warned,) = find(records, job=job_id, level="WARNING", message=f"job {i} warns")
        assert "UserWarning" in warned["message"]
        (printed,) = find(records, job=job_id, level="INFO", message=f"job {i} prints")
        assert printed["message"] == f"job {i} prints"
        (complained,) = find(records, job=job_id, level="WARNING", message=f"job {i} complains")
        assert complained["message"] == f"job {i} complains"
        # os.system writes to file descriptor 1 directly: the line still reaches the log.
        assert len(find(records, message=f"job {i} shell")) == 1, text
        exceptions = find(records, job=job_id, level="ERROR", message="could not look it up")
        if i % 3 == 0:
            (failure,) = exceptions
            assert failure["message"] == f"job {i} could not look it up"
            assert failure["more"][0] == "Traceback (most recent call last):"
            assert failure["more"][-1] == f"KeyError: 'missing-{i}'"
        else:
            assert exceptions == []
        # every record attributed to this job came from one worker
        assert {r["worker"] for r in find(records, job=job_id)} == {said["worker"]}
    assert "chatter below the level" not in text  # [logging] level defaults to INFO

    (begin,) = find(records, message="run 1 started")
    (end,) = find(records, message="run 1 completed")
    for parent in (begin, end):
        assert (parent["worker"], parent["job"], parent["level"]) == ("main", "-", "INFO")
    assert start_method in begin["message"]
    assert records[0] is begin and records[-1] is end
    assert {r["machine"] for r in records} == {"m1"}
    assert all(r["job"] == "-" or r["job"] in ids.values() for r in records)

    stamps = [r["time"] for r in records]
    assert stamps == sorted(stamps), "the log is not sorted by time"
    # UTC, not the local time of TZ=Asia/Kolkata (+05:30)
    assert started - 2 <= epoch(stamps[0]) <= epoch(stamps[-1]) <= ended + 2


def test_level_and_format_come_from_config_ini(tmp_path):
    config = "[logging]\nlevel = warning\nformat = {time} [{level}] {machine}/{worker} job={job} {name}: {message}\n"
    entry = make_project(tmp_path, 'log.info("info %d", i)\nlog.warning("warn %d", i)\nlog.error("two\\nlines %d", i)\nreturn i\n', config=config, pool="[1, 2]")
    result = run(tmp_path, entry)
    assert result.returncode == 0, result.stderr
    ids = job_ids(tmp_path / "out" / "m1")
    lines = gunzip(tmp_path / "out" / "m1" / "m1.log.gz").splitlines()
    assert not [line for line in lines if "info " in line or "run 1 started" in line]  # below WARNING
    pattern = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[(WARNING|ERROR)\] m1/w\d+ job=([0-9a-f]{32}) lab\.job: (.*)")
    starts = [pattern.fullmatch(line) for line in lines if not line.startswith("  ")]
    assert all(starts), lines
    for i, job_id in ids.items():
        assert [m.groups() for m in starts if m.group(2) == job_id] == [("WARNING", job_id, f"warn {i}"), ("ERROR", job_id, "two")]
        error_at = next(n for n, line in enumerate(lines) if line.endswith(f"job={job_id} lab.job: two"))
        assert lines[error_at + 1] == f"  lines {i}"  # a multi-line message continues indented


# --- per-job logs ----------------------------------------------------------------------------

PER_JOB_BODY = """\
print(f"stdout of job {i}")
log.info("record of job %d", i)
print(f"stderr of job {i}", file=sys.stderr)
sys.stdout.write(f"unfinished line of job {i}")
os.system(f"echo shell of job {i}")
time.sleep(0.2)
return i
"""


def test_per_job_logs_hold_only_their_jobs_output_and_records(tmp_path):
    entry = make_project(tmp_path, PER_JOB_BODY, config="[logging]\nper_job = true\n", pool="list(range(5))")
    result = run(tmp_path, entry, workers=1)  # one worker: the jobs follow each other in one process
    assert result.returncode == 0, result.stderr
    machine_dir = tmp_path / "out" / "m1"
    ids = job_ids(machine_dir)
    files = sorted((machine_dir / "jobs").iterdir())
    assert [f.name for f in files] == sorted(f"{job_id}.log.gz" for job_id in ids.values())
    for i, job_id in ids.items():
        text = gunzip(machine_dir / "jobs" / f"{job_id}.log.gz")
        for expected in (f"stdout of job {i}", f"record of job {i}", f"stderr of job {i}", f"unfinished line of job {i}", f"shell of job {i}"):
            assert expected in text, f"{expected!r} missing from job {i}'s log:\n{text}"
        assert set(re.findall(r"of job (\d+)", text)) == {str(i)}, f"job {i}'s log holds other jobs' lines:\n{text}"
        assert "run 1" not in text  # the parent's records stay in the machine log
    # the machine log still has everything, with job ids
    records = parse_log(gunzip(machine_dir / "m1.log.gz"))
    for i, job_id in ids.items():
        assert find(records, job=job_id, message=f"stdout of job {i}")
        assert find(records, job=job_id, message=f"record of job {i}")



def test_per_job_logs_stay_put_when_a_job_changes_directory(tmp_path):
    """``--out`` given relative to where the run started, and jobs that ``os.chdir``: each job's
    log still goes to the machine folder (it once went nowhere, failing every job)."""
    entry = make_project(tmp_path, 'os.chdir("/")\nprint(f"moved job {i}")\nreturn i\n', config="[logging]\nper_job = true\n", pool="list(range(4))")
    args = run_args(tmp_path, workers=1)
    args[args.index("--out") + 1] = "out"
    result = run_entry(entry, *args, env=env_for(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    machine_dir = tmp_path / "out" / "m1"
    for i, job_id in job_ids(machine_dir).items():
        assert f"moved job {i}" in gunzip(machine_dir / "jobs" / f"{job_id}.log.gz")


def test_per_job_logs_keep_the_run_s_mode_whatever_umask_a_job_left(tmp_path):
    """A job's ``os.umask`` stays for the jobs after it on its worker (as documented), and the
    worker made jobsplit's own per-job logs of those jobs with it: mode 000 after ``umask(0o777)``,
    files their owner could not read, or world-writable ones after ``umask(0)``."""
    entry = make_project(tmp_path, 'print(f"job {i}")\nif i == 0:\n    os.umask(0o777)\nelif i == 1:\n    os.umask(0)\nreturn i\n', config="[logging]\nper_job = true\n", pool="list(range(4))")
    before = os.umask(0o022)
    try:
        result = run(tmp_path, entry, workers=1)
    finally:
        os.umask(before)
    assert result.returncode == 0, result.stderr
    machine_dir = tmp_path / "out" / "m1"
    modes = {path.name: oct(path.stat().st_mode & 0o777) for path in (machine_dir / "jobs").iterdir()}
    assert len(modes) == 4 and set(modes.values()) == {"0o644"}, modes


def test_control_characters_a_job_writes_are_escaped_so_the_logs_stay_text(tmp_path):
    """A NUL, a colour code's ESC or a bell a job prints or logs made ``zcat log.gz | grep`` say
    "binary file matches" for the whole machine log; they are escaped like binary junk."""
    body = r"""
sys.stdout.buffer.write(b"nul a\x00b, colour \x1b[31mred\x1b[0m, bell \x07, del \x7f end\n")
sys.stdout.flush()
log.warning("record \x00 with\r\nlines\tand a tab")
return i
"""
    entry = make_project(tmp_path, body, config="[logging]\nper_job = true\n", pool="list(range(2))")
    result = run(tmp_path, entry, workers=1)
    assert result.returncode == 0, result.stderr
    machine_dir = tmp_path / "out" / "m1"
    logs = {"machine": gunzip(machine_dir / "m1.log.gz"), **{job_id: gunzip(machine_dir / "jobs" / f"{job_id}.log.gz") for job_id in job_ids(machine_dir).values()}}
    for name, text in logs.items():
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", text), f"{name} log holds control characters: {text!r}"
        assert r"nul a\x00b, colour \x1b[31mred\x1b[0m, bell \x07, del \x7f end" in text, name
        assert "record \\x00 with\n  lines\tand a tab" in text or "record \\x00 with\nlines\tand a tab" in text, name
    grep = subprocess.run(["grep", "-c", "colour", "-"], input=gzip.decompress((machine_dir / "m1.log.gz").read_bytes()), capture_output=True)
    assert grep.stdout.strip() == b"2", grep.stdout  # text lines, one per job: not "binary file matches"

# --- readable while the run goes on ----------------------------------------------------------


def test_log_is_readable_with_gzip_during_the_run(tmp_path):
    body = 'log.info("early record of job %d", i)\nprint(f"printed by job {i}")\ntime.sleep(0.4)\nreturn i\n'
    entry = make_project(tmp_path, body, pool="list(range(20))")
    log_file = tmp_path / "out" / "m1" / "m1.log.gz"
    process = subprocess.Popen(
        [sys.executable, str(entry), *run_args(tmp_path, workers=1)],
        env=env_for(tmp_path), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        seen_during_run = None
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and process.poll() is None:
            if log_file.exists() and log_file.stat().st_size > 0:
                reading = subprocess.run(["gzip", "-dc", str(log_file)], capture_output=True)
                still_running = process.poll() is None
                assert reading.returncode == 0, reading.stderr.decode()
                text = reading.stdout.decode()
                if still_running and "early record of job" in text:
                    seen_during_run = text
                    break
            time.sleep(0.1)
        assert seen_during_run is not None, "never read a job's record from the log while the run was going"
        early = parse_log(seen_during_run)
        assert early[0]["message"].startswith("run 1 started") and early[0]["worker"] == "main"
        assert find(early, level="INFO", message="early record of job")[0]["job"] != "-"
        assert not find(early, message="run 1 interrupted") and not find(early, message="run 1 completed")
        process.send_signal(signal.SIGINT)  # enough seen: stop the run cleanly
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr
    final = gunzip(log_file)
    assert final.startswith(seen_during_run)  # what was readable stays as it was
    records = parse_log(final)
    assert records[-1]["message"].startswith("run 1 interrupted") and records[-1]["worker"] == "main"
    stamps = [r["time"] for r in records]
    assert stamps == sorted(stamps)
    ids = job_ids(tmp_path / "out" / "m1")
    assert ids, "no job finished before the interrupt"
    for i, job_id in ids.items():
        assert find(records, job=job_id, message=f"early record of job {i}")
        assert find(records, job=job_id, message=f"printed by job {i}")


# --- rotation --------------------------------------------------------------------------------

LINES_PER_JOB = 300
"""With random hex (which gzip barely shrinks) and max_size = 1KiB: about 30 segments a job."""
NOISY_BODY = f"""\
for n in range({LINES_PER_JOB}):
    log.info("job %d line %d %032x%032x%032x", i, n, random_obj.getrandbits(128), random_obj.getrandbits(128), random_obj.getrandbits(128))
if os.environ.get("FAIL_SOME") and i in (2, 5):
    raise RuntimeError(f"job {{i}} fails on purpose")
return i
"""


def segment_files(machine_dir: Path) -> dict[int, Path]:
    return {int(m.group(1)): p for p in machine_dir.glob("m1.log.*.gz") if (m := re.fullmatch(r"m1\.log\.(\d+)\.gz", p.name))}


def digests(paths) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def all_records(machine_dir: Path) -> list[dict]:
    """Records of every rotated segment (in number order), then the current log."""
    text = "".join(gunzip(p) for _, p in sorted(segment_files(machine_dir).items()))
    current = machine_dir / "m1.log.gz"
    text += gzip.decompress(current.read_bytes()).decode() if current.stat().st_size else ""
    return parse_log(text)


def test_rotation_keeps_every_segment_across_runs(tmp_path):
    entry = make_project(tmp_path, NOISY_BODY, config="[logging]\nmax_size = 1KiB\n", pool="list(range(8))")
    machine_dir = tmp_path / "out" / "m1"

    first = run(tmp_path, entry, FAIL_SOME="1")
    assert first.returncode == 1, first.stderr  # jobs 2 and 5 failed
    segments = segment_files(machine_dir)
    assert len(segments) >= 3, sorted(segments)
    assert sorted(segments) == list(range(1, len(segments) + 1))
    assert (machine_dir / "m1.log.gz").exists()
    for path in segments.values():
        with gzip.open(path, "rb") as f:
            assert f.read()  # valid gzip, not empty
    assert subprocess.run(["gzip", "-t", *map(str, segments.values())]).returncode == 0  # and for gzip itself
    records = all_records(machine_dir)
    job_lines = [r for r in records if " line " in r["message"]]
    assert len(job_lines) == 8 * LINES_PER_JOB  # nothing lost
    assert len({r["message"] for r in job_lines}) == 8 * LINES_PER_JOB  # nor doubled
    failures = find(records, worker="main", level="ERROR")
    assert sorted(r["more"][-1] for r in failures) == [f"RuntimeError: job {i} fails on purpose" for i in (2, 5)]
    assert all(JOB_ID.fullmatch(r["job"]) and r["job"] in r["message"] for r in failures)
    # (time order through bursts like this one: see test_log_stays_sorted_through_a_burst)
    before = digests(segments.values())

    # a second run (retrying the failed jobs) appends new segments after the old ones
    second = run(tmp_path, entry, "--retry-failed")
    assert second.returncode == 0, second.stderr
    after = segment_files(machine_dir)
    assert set(after) > set(segments)
    assert sorted(after) == list(range(1, len(after) + 1))
    assert digests(after[n] for n in segments) == before  # untouched
    records = all_records(machine_dir)
    assert len([r for r in records if " line " in r["message"]]) == 10 * LINES_PER_JOB
    parent_runs = [r["message"].split(":")[0] for r in find(records, worker="main") if r["message"].startswith("run ")]
    assert parent_runs == ["run 1 started", "run 1 completed", "run 2 started", "run 2 completed"]
    all_segments = digests(after.values())

    # --fresh moves the whole log away, intact, and starts numbering anew
    third = run(tmp_path, entry, "--fresh")
    assert third.returncode == 0, third.stderr
    (backup,) = [p for p in machine_dir.iterdir() if p.is_dir() and p.name.startswith("backup-")]
    assert digests(segment_files(backup).values()) == all_segments
    assert len([r for r in all_records(machine_dir) if " line " in r["message"]]) == 8 * LINES_PER_JOB


# --- bad settings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "key"),
    [
        ("level = LOUD", "level"),
        ("format = {machine} {time} {message}", "format"),
        ("format = {time} {nonsense}", "format"),
        ("max_size = 12XB", "max_size"),
        ("per_job = maybe", "per_job"),
    ],
)
def test_bad_logging_setting_is_one_error_line(tmp_path, setting, key):
    entry = make_project(tmp_path, "return i\n", config=f"[logging]\n{setting}\n")
    result = run(tmp_path, entry)
    assert result.returncode == 2, result.stderr
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and errors[0] == result.stderr.strip(), result.stderr
    assert "config.ini" in errors[0] and "[logging]" in errors[0] and key in errors[0], errors[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "m1" / "journal.sqlite").exists()


# --- found problems --------------------------------------------------------------------------


def test_descriptor_output_of_the_last_job_is_not_lost(tmp_path):
    entry = make_project(tmp_path, 'os.system("seq 1 20000")\nreturn i\n', pool="[0]")
    result = run(tmp_path, entry, workers=1)
    assert result.returncode == 0, result.stderr
    records = parse_log(gunzip(tmp_path / "out" / "m1" / "m1.log.gz"))
    numbers = [r["message"] for r in records if r["worker"] != "main"]
    assert numbers == [str(n) for n in range(1, 20001)]


def test_a_progress_bar_is_one_line_and_an_endless_line_comes_in_pieces(tmp_path):
    """A progress bar redrawn in place (tqdm's way, on stderr) is logged as its last state; 3 MiB
    of dots without a line break are logged in pieces of MAX_LINE, every dot kept."""
    body = """\
for k in range(1, 201):
    sys.stderr.write(f"\\r{k:3d}/200 |{'#' * (k // 10):20s}|")
sys.stderr.write("\\n")
for _ in range(3 * 2**20 // 64):
    sys.stdout.write("." * 64)
print("!")
return i
"""
    entry = make_project(tmp_path, body, pool="[0]")
    result = run(tmp_path, entry, workers=1)
    assert result.returncode == 0, result.stderr
    messages = [r["message"] for r in parse_log(gunzip(tmp_path / "out" / "m1" / "m1.log.gz")) if r["worker"] != "main"]
    assert [m for m in messages if "/200" in m] == ["200/200 |####################|"]
    pieces = [m for m in messages if m and set(m) <= {".", "!"}]
    assert [len(m) for m in pieces] == [MAX_LINE, MAX_LINE, MAX_LINE, 1]
    assert "".join(pieces) == "." * (3 * 2**20) + "!"


def test_log_stays_sorted_through_a_burst(tmp_path):
    """A record handed to logging 0.4 s after it was made (inside the 1 s hold-back, as a
    buffering handler such as logging.handlers.MemoryHandler would) must still land in time order,
    also when another job's burst of records (over 1 MiB) forces early flushes in between."""
    body = """\
    made = os.path.join(os.environ["MARKS"], "made")
    deadline = time.time() + 20
    if i == 0:
        record = log.makeRecord("lab.job", logging.INFO, __file__, 0, "made before the burst, handled after it", (), None)
        open(made, "w").close()
        time.sleep(0.4)  # the other job's burst fills the buffer meanwhile
        log.handle(record)
    else:
        while time.time() < deadline and not os.path.exists(made):
            time.sleep(0.01)
        for n in range(6000):  # about 1.3 MB of records
            log.info("burst %d %032x%032x%032x", n, random_obj.getrandbits(128), random_obj.getrandbits(128), random_obj.getrandbits(128))
    return i
    """
    entry = make_project(tmp_path, body, pool="[0, 1]")
    log_file = tmp_path / "out" / "m1" / "m1.log.gz"
    result = run(tmp_path, entry, MARKS=str(tmp_path), LOG_FILE=str(log_file))  # one job per worker
    assert result.returncode == 0, result.stderr
    records = parse_log(gunzip(log_file))
    (late,) = find(records, message="made before the burst")
    bursts = find(records, message="burst ")
    assert len(bursts) == 6000
    assert late["time"] <= bursts[-1]["time"]  # it was made before the burst ended (so: it must come before)
    stamps = [r["time"] for r in records]
    disorder = next(((a, b) for a, b in zip(stamps, stamps[1:]) if b < a), None)
    assert disorder is None, f"a record of {disorder[1]} follows one of {disorder[0]}"


def test_current_log_is_valid_gzip_after_a_run_that_rotated(tmp_path):
    entry = make_project(tmp_path, NOISY_BODY, config="[logging]\nmax_size = 1KiB\n", pool="[0]")
    result = run(tmp_path, entry, workers=1)
    assert result.returncode == 0, result.stderr
    machine_dir = tmp_path / "out" / "m1"
    assert segment_files(machine_dir)  # it did rotate
    reading = subprocess.run(["gzip", "-dc", str(machine_dir / "m1.log.gz")], capture_output=True)
    assert reading.returncode == 0, reading.stderr.decode()


def test_fresh_twice_in_one_second_keeps_both_backups(tmp_path):
    entry = make_project(tmp_path, 'log.info("job %d", i)\nreturn i\n', pool="[0, 1]")
    assert run(tmp_path, entry).returncode == 0
    machine_dir = tmp_path / "out" / "m1"
    old_log = (machine_dir / "m1.log.gz").read_bytes()
    # What a --fresh run a moment ago left: backup folders named for this second (and the next few).
    now = time.time()
    for ahead in range(6):
        (machine_dir / time.strftime("backup-%Y%m%dT%H%M%SZ", time.gmtime(now + ahead))).mkdir(exist_ok=True)
    result = run(tmp_path, entry, "--fresh")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    kept = [p for p in machine_dir.glob("*/m1.log.gz") if p.read_bytes() == old_log]
    assert kept, "the previous log was not kept in a backup folder"


def test_fresh_keeps_the_previous_per_job_logs(tmp_path):
    entry = make_project(tmp_path, 'print(f"job {i} run {os.environ[\'RUN_LABEL\']}")\nreturn i\n', config="[logging]\nper_job = true\n", pool="[0]")
    assert run(tmp_path, entry, RUN_LABEL="first").returncode == 0
    result = run(tmp_path, entry, "--fresh", RUN_LABEL="second")
    assert result.returncode == 0, result.stderr
    machine_dir = tmp_path / "out" / "m1"
    texts = [gunzip(p) for p in machine_dir.rglob("jobs/*.log.gz")]
    assert any("job 0 run second" in t for t in texts)
    assert any("job 0 run first" in t for t in texts), "the first run's per-job log was overwritten"


# --- a job that prints a flood of lines ------------------------------------------------------


def test_young_records_held_back_never_make_every_write_flush(tmp_path, monkeypatch):
    """Records younger than HOLD_BACK stay buffered for time order. Once a megabyte of them was
    buffered, each further write flushed again (a sort and a scan of the whole buffer, writing
    nothing): a job printing a million lines took 40 s. Now a flush comes after each MAX_BUFFER
    of new text, and the log still holds every record, in time order."""
    flushes = []
    real_flush = MachineLog.flush

    def counted(self, *, everything=False):
        flushes.append(everything)
        real_flush(self, everything=everything)

    monkeypatch.setattr(MachineLog, "flush", counted)
    machine_dir = tmp_path / "m1"
    machine_dir.mkdir()
    log = MachineLog(MachineDir(machine_dir, "m1"), LogSettings())
    message = "x" * 1000
    now = time.time()  # young: held back by every flush before close
    for i in range(3000):
        log.write(now + i * 1e-6, "w0", "-", "INFO", "job", f"{i} {message}")
    assert 2 <= len(flushes) <= 4, f"{len(flushes)} flushes for 3 MB of records"
    log.close()
    records = parse_log(gunzip(machine_dir / "m1.log.gz"))
    assert [int(r["message"].split()[0]) for r in records] == list(range(3000))


FLOOD = """
import multiprocessing, os, sys
from jobsplit.capture import OutputCapture
from jobsplit.config import LogSettings

def child(report):
    messages = []
    capture = OutputCapture(messages.append, LogSettings(), None, [os.pipe(), os.pipe()])
    capture.start_job("j" * 32)
    os.write(1, b"".join(b"line %d\\n" % i for i in range(10000)))  # about 90 KB in one write
    capture.end_job()
    report.send((len(messages), [entry.message for batch in messages for entry in batch]))

if __name__ == "__main__":
    ours, theirs = multiprocessing.Pipe()
    process = multiprocessing.get_context("fork").Process(target=child, args=(theirs,))
    process.start()
    count, lines = ours.recv()
    process.join()
    assert lines == [f"line {i}" for i in range(10000)], lines[:5]
    print(count)
"""


def test_output_lines_read_together_travel_in_one_message(tmp_path):
    """A worker sends the lines of one read from its output pipe as one message, not one message
    a line (the pickling and sending of which made a chatty job several times slower)."""
    script = tmp_path / "flood.py"
    script.write_text(FLOOD)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=entry_env(), timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) <= 10, f"{result.stdout.strip()} messages for 10,000 lines"


class _FullDisk:
    """A log file on a disk that fills up within its first write: part of the member reaches
    the file, then ENOSPC, as a real full disk does."""

    def __init__(self, file):
        self._file = file
        self.failed = False

    def write(self, data):
        if self.failed:
            return self._file.write(data)
        self.failed = True
        self._file.write(data[: len(data) // 2])
        self._file.flush()
        raise OSError(28, "No space left on device")

    def __getattr__(self, name):
        return getattr(self._file, name)


@pytest.mark.parametrize("rotated", [False, True], ids=["no rotation", "rotated by the failed flush"])
def test_a_flush_the_disk_has_no_room_for_leaves_the_log_readable_and_each_record_once(tmp_path, monkeypatch, rotated):
    """A full disk cut a gzip member short; the records stayed buffered, and the end of the run (or
    the resumed run, appending) wrote after the torn member: zcat, merge-logs and report failed on
    the log from there on. Now the failed flush is cut off whole, and its records go once."""
    from jobsplit.errors import StorageError

    machine_dir = tmp_path / "m1"
    machine_dir.mkdir()
    log = MachineLog(MachineDir(machine_dir, "m1"), LogSettings(max_size=4000 if rotated else 10**9))
    opened, real_open = [], MachineLog._open

    def open_failing_once(self):
        file = real_open(self)
        opened.append(file)
        return _FullDisk(file) if len(opened) == (2 if rotated else 1) else file

    monkeypatch.setattr(MachineLog, "_open", open_failing_once)
    for i in range(4):  # each record a member of its own, of some 1.5 KB: the third starts a new log
        log.write(1.7e9 + i, "w0", "-", "INFO", "job", f"{i} {os.urandom(1500).hex()}")
    with pytest.raises(StorageError, match="m1.log.gz cannot be written: No space left on device"):
        log.flush(everything=True)
    log.write(1.7e9 + 4, "w0", "-", "INFO", "job", "4")
    log.close()
    segments = sorted(machine_dir.glob("m1.log.*.gz")) + [machine_dir / "m1.log.gz"]
    records = [r for segment in segments for r in parse_log(gunzip(segment))]
    assert [int(r["message"].split()[0]) for r in records] == [0, 1, 2, 3, 4]
    assert (len(segments) > 1) == rotated


@pytest.mark.parametrize("failure", ["an earlier run's log it may not open", "the log after a rotation it may not open", "out of memory compressing"])
def test_a_flush_that_fails_before_it_writes_keeps_the_log_and_each_record_once(tmp_path, monkeypatch, failure):
    """A flush whose open of the log failed (a log another user's run left, not writable to this
    one) took the log for one it had begun, and removed it, earlier runs' records and all; after a
    rotation whose new log could not be opened, the records already in the full log were written
    again; and out of memory compressing (a resumable stop), the flush's records were dropped."""
    from jobsplit.errors import StorageError

    machine_dir = tmp_path / "m1"
    machine_dir.mkdir()
    log_file = machine_dir / "m1.log.gz"
    rotated = failure.startswith("the log after")
    if not rotated:
        earlier = MachineLog(MachineDir(machine_dir, "m1"), LogSettings())
        earlier.write(1.6e9, "w0", "-", "INFO", "job", "earlier")
        earlier.close()
    log = MachineLog(MachineDir(machine_dir, "m1"), LogSettings(max_size=4000 if rotated else 10**9))
    opened, real_open, real_compress = [], MachineLog._open, gzip.compress

    def open_or_fail(self):
        opened.append(1)
        if len(opened) == (2 if rotated else 1) and "open" in failure:
            raise PermissionError(13, "Permission denied")
        return real_open(self)

    def compress_or_fail(data, *args, **kwargs):
        if not opened[1:] and "memory" in failure:
            opened.append(1)
            raise MemoryError
        return real_compress(data, *args, **kwargs)

    monkeypatch.setattr(MachineLog, "_open", open_or_fail)
    monkeypatch.setattr(gzip, "compress", compress_or_fail)
    for i in range(4):  # each record a member of its own, of some 1.5 KB: the third starts a new log
        log.write(1.7e9 + i, "w0", "-", "INFO", "job", f"{i} {os.urandom(1500).hex()}")
    with pytest.raises(MemoryError if "memory" in failure else StorageError) as raised:
        log.flush(everything=True)
    if "open" in failure:
        assert "Permission denied; check that you may write it (its owner, its permissions)" in str(raised.value)
    log.close()
    segments = sorted(machine_dir.glob("m1.log.*.gz")) + [log_file]
    messages = [r["message"].split()[0] for segment in segments for r in parse_log(gunzip(segment))]
    assert messages == ([] if rotated else ["earlier"]) + ["0", "1", "2", "3"]


def test_a_damaged_log_that_could_not_be_set_aside_is_checked_again_never_appended_to(tmp_path, monkeypatch):
    """The review found that the check was marked done before it was: a rename refused (EIO, a
    read-only folder) made the flush fail, and the next flush (the one at close) appended behind
    the damage, as before the check existed."""
    from jobsplit.errors import StorageError

    machine_dir = tmp_path / "m1"
    machine_dir.mkdir()
    earlier = MachineLog(MachineDir(machine_dir, "m1"), LogSettings())
    earlier.write(1.7e9, "w0", "-", "INFO", "job", "earlier")
    earlier.close()
    log_file = machine_dir / "m1.log.gz"
    damaged = log_file.read_bytes()[:-30]
    log_file.write_bytes(damaged)
    resumed = MachineLog(MachineDir(machine_dir, "m1"), LogSettings())
    original, refusals = MachineLog._to_segment, [OSError(5, "Input/output error")]

    def refused_once(log: MachineLog) -> Path:
        if refusals:
            raise refusals.pop()
        return original(log)

    monkeypatch.setattr(MachineLog, "_to_segment", refused_once)
    resumed.write(1.8e9, "w0", "-", "INFO", "job", "resumed")
    with pytest.raises(StorageError):
        resumed.flush(everything=True)
    assert log_file.read_bytes() == damaged, "nothing appended behind the damage"
    resumed.close()
    assert (machine_dir / "m1.log.1.gz").read_bytes() == damaged
    assert parse_log(gunzip(log_file))[0]["message"] == "resumed"


@pytest.mark.parametrize("damage", ["30 bytes cut", "a zero-filled tail", "its only member cut"])
def test_a_run_that_finds_its_log_ending_in_a_damaged_member_sets_it_aside_and_says_so(tmp_path, damage):
    """A crash (or a power loss, or a copy taken mid-write) tore the log's last gzip member; the
    resumed run appended to it, and zcat, merge-logs and report could read nothing from the tear
    on, the resumed run's records included. Now the damaged log is kept whole as the next
    segment, and the new log, readable, says why."""
    from jobsplit.logmerge import LogFile

    machine_dir = tmp_path / "m1"
    machine_dir.mkdir()
    earlier = MachineLog(MachineDir(machine_dir, "m1"), LogSettings())
    for i in range(1 if damage == "its only member cut" else 3):
        earlier.write(1.7e9 + i, "w0", "-", "INFO", "job", f"earlier {i}")
        earlier.flush(everything=True)
    earlier.close()
    log_file = machine_dir / "m1.log.gz"
    whole = log_file.read_bytes()
    damaged = whole[:-30] + (bytes(8192) if damage == "a zero-filled tail" else b"")
    log_file.write_bytes(damaged)
    resumed = MachineLog(MachineDir(machine_dir, "m1"), LogSettings())
    resumed.write(1.8e9, "w0", "-", "INFO", "job", "resumed")
    resumed.close()
    assert (machine_dir / "m1.log.1.gz").read_bytes() == damaged
    records = parse_log(gunzip(log_file))
    assert records[0]["message"] == "resumed"
    (warning,) = find(records, level="WARNING")
    torn_at = whole.rfind(b"\x1f\x8b\x08") if damage != "its only member cut" else 0
    assert warning["message"] == (
        f"{log_file} ended in a damaged gzip member (from byte {torn_at:,}: a crash or a power loss as it was written, or a copy "
        "taken mid-write); it is kept whole as m1.log.1.gz, and this log starts anew, since records written after the damage could not be read"
    )
    kept = b"".join(LogFile(machine_dir / "m1.log.1.gz").chunks()).decode()
    assert [r["message"] for r in parse_log(kept[: kept.rfind("\n") + 1])] == [f"earlier {i}" for i in range(2 if damage != "its only member cut" else 0)]


def test_a_sound_log_is_appended_to_as_it_is(tmp_path):
    """The check for a damaged end leaves a log that ends with a complete member alone."""
    machine_dir = tmp_path / "m1"
    machine_dir.mkdir()
    for run in range(2):
        log = MachineLog(MachineDir(machine_dir, "m1"), LogSettings())
        log.write(1.7e9 + run, "w0", "-", "INFO", "job", f"run {run}")
        log.close()
    assert [r["message"] for r in parse_log(gunzip(machine_dir / "m1.log.gz"))] == ["run 0", "run 1"]
    assert not list(machine_dir.glob("m1.log.*.gz"))


def test_log_records_a_full_disk_keeps_from_the_log_are_said_lost_at_exit_and_in_the_next_run_s_log(tmp_path):
    """A full disk made the run's last flush fail: its buffered records were dropped at exit in
    silence, and the next run's log began as if nothing were missing. Now the exit names the
    jobs whose records are lost, and the journal carries it to the next run's log, once. (The
    log that cannot be written is one whose path leads into a folder that does not exist.)"""
    entry = make_project(tmp_path, 'print(f"job {i} prints")\nreturn i')
    machine_dir = tmp_path / "out" / "m1"
    machine_dir.mkdir(parents=True)
    log_file = machine_dir / "m1.log.gz"
    log_file.symlink_to(tmp_path / "nowhere" / "m1.log.gz")
    first = run(tmp_path, entry)
    assert first.returncode == 74, first.stderr
    said = " ".join(first.stderr.split())
    assert f"the log records of 6 jobs of this run could not be written to {log_file} and are lost; the results the journal recorded are kept, and jobs it did not record as done run again" in said
    assert len(job_ids(machine_dir)) == 6
    log_file.unlink()
    for again in range(2):
        assert run(tmp_path, entry).returncode == 0
        warnings = find(parse_log(gunzip(log_file)), level="WARNING", message="could not be written")
        assert [w["message"] for w in warnings] == [
            "the log records of 6 jobs of run 1 could not be written when those runs stopped (a full disk?) and are missing from the logs; "
            "the results the journal recorded are kept, and jobs it did not record as done run again"
        ], again


def test_lost_log_records_of_no_job_are_not_said_to_be_those_of_0_jobs():
    """The review found that a full disk after the jobs' records were written, which lost only
    the run's own last words ("run 3 completed"), was said as "the log records of 0 jobs of
    this run ... are lost", and carried as such to the next run's log."""
    from jobsplit.machine_run import _lost_records

    assert _lost_records(6, "this run") == "6 jobs of this run"
    assert _lost_records(0, "run 3") == "run 3 (jobsplit's own last ones, no job's)"
