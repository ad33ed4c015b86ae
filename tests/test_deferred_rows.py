"""Rows formatted when their group is sent (issue 14): a worker formats the row of a job that
returned plain values (scalars, or a tuple of them) when the group goes to the runner, not
between two jobs. Any other value is formatted at once, as the job left it: a later job that
changes what an earlier one returned never changes the earlier row."""

from __future__ import annotations

import multiprocessing
import sys
import threading

from conftest import run_entry, write_config_dir
from jobsplit import worker
from jobsplit.config import Header
from jobsplit.messages import RESULTS
from jobsplit.results import RowFormatter
from jobsplit.states import Outcome
from runhelpers import read_results, run_args, run_env

HEADER = ("Run Start Time", "Job Running Time", "Job Start Time", "Value", "Text")

SHARED_RESULTS = """\
import jobsplit

LIST = [0, ""]
STATE = {"Value": 0, "Text": ""}


def job(i, kind, random_obj, config, progress):
    # each job overwrites what the job before it returned, in place
    LIST[:] = [i, f"list {i}"]
    STATE.update(Value=i, Text=f"dict {i}")
    if kind == "list":
        return LIST
    if kind == "dict":
        return STATE
    if kind == "nested":
        return (i, LIST)  # a tuple holding a list: not plain, and not a cell either
    return (i, f"tuple {i}")


if __name__ == "__main__":
    jobsplit.main(job, [(i, ("list", "dict", "tuple", "nested")[i % 4]) for i in range(200)])
"""


def test_a_value_a_later_job_changes_keeps_the_row_it_had_when_its_job_returned(tmp_path):
    """One worker, 200 short jobs: they travel in batches, so rows of one group wait for the
    group; the jobs returning the module's list or dict (changed by every later job) still get
    their own values, and those returning plain tuples get theirs when the group is sent."""
    entry = tmp_path / "entry.py"
    entry.write_text(SHARED_RESULTS, encoding="utf-8")
    config_dir = write_config_dir(tmp_path / "config", header=HEADER, machines={"solo": [1.0, 1]})
    result = run_entry(entry, *run_args(config_dir, tmp_path / "out", "--workers", "1"), env=run_env(tmp_path), timeout=90)
    assert result.returncode == 1, result.stderr  # the nested ones fail: a list is no cell
    _, rows = read_results(tmp_path / "out" / "solo" / "results.csv")
    kinds = {"list": "list", "dict": "dict", "tuple": "tuple"}
    assert len(rows) == 150
    for row in rows:
        i, kind = eval(row["Job Args"])  # [i, "kind"]
        assert (row["Value"], row["Text"]) == (str(i), f"{kinds[kind]} {i}")
    assert "50 jobs failed" in result.stdout + result.stderr


def test_two_threads_formatting_lines_with_line_breaks_never_mix_them():
    """The watcher sends groups (and formats their rows) while the job thread formats a value
    that could not wait: cells with line breaks go through the csv module, by a writer each."""
    rows = RowFormatter(Header(HEADER), "solo", 0.0, "d" * 64, "c" * 12)
    failures: list[str] = []

    def format_many(tag: str) -> None:
        for i in range(3000):
            line = rows.line((i, f"{tag}\nline {i}"), 1.0, 0.5, "a" * 32, "[1]")
            if f'"{tag}\nline {i}"' not in line or not line.startswith("1970-01-01T00:00:00.000Z,") or line.count("\n") != 2:
                failures.append(line)

    threads = [threading.Thread(target=format_many, args=(tag,)) for tag in ("first", "second")]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # the threads take turns every few bytecodes: a shared writer would mix lines
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert failures == []


def test_jobsplit_s_own_failure_to_make_a_row_is_marked_internal_in_the_group_it_travels_in():
    """Whether a row is made at once (a list) or when its group is sent (an int), a failure in
    jobsplit's own code is an error marked internal, in the same group as its attempt: the
    runner counts those in a row and stops the run, not the job's fault."""
    reader, writer = multiprocessing.Pipe(duplex=False)
    outbox = worker._Outbox(writer, RowFormatter(Header(HEADER[:4]), "solo", 0.0, "d" * 64, "c" * 12))
    broken_time = "not a time"  # the row's Job Start Time then fails inside jobsplit's timefmt
    outbox.add_returned(worker._returned((1, broken_time, 0.001, 0.0, None, None, 7, "a" * 32, "[1]", (1,), 0)))
    outbox.add_returned(worker._returned((2, broken_time, 0.001, 0.0, None, None, [7], "b" * 32, "[2]", (2,), 1)))
    outbox.add_returned(worker._returned((3, 1.0, 0.001, 0.0, None, None, 7, "c" * 32, "[3]", (3,), 2)))
    outbox.flush()
    kind, results = reader.recv()
    assert kind == RESULTS and results.tickets == [1, 2, 3]
    assert results.outcomes == [Outcome.ERROR, Outcome.ERROR, Outcome.DONE] and sorted(results.internal) == [1, 2]
    assert all("internal error in jobsplit" in error for error in results.errors[:2]) and results.rows[2].startswith("1970-01-01T00:00:00.000Z,")


def test_a_batch_s_group_is_sent_before_the_next_batch_s_first_job_starts():
    """So a worker that dies loses at most the group it was running. Handed to the watcher
    thread (to be sent while the next job ran), the group was lost too when that job crashed as
    it started, and its jobs ran again: test_failures' retries test saw one run three times."""
    events: list[str] = []

    class Outbox:
        def flush(self) -> None:
            events.append("sent")

    class Board:
        def stopping(self, slot: int) -> bool:
            return False

    class Run:
        setup, slot, outbox = type("Setup", (), {"board": Board()})(), 0, Outbox()

        def __call__(self, ready) -> None:
            events.append(f"job {ready.ticket}")

    class Revocations:
        def start(self, ticket: int, outbox: object) -> bool:
            return True

    inbox = worker.SimpleQueue()
    for tickets in ((1, 2, 3), (4, 5)):
        inbox.put([worker._Ready(t, t, "a" * 32, (t,), f"[{t}]", None) for t in tickets])
    inbox.put(None)
    assert worker._run_jobs(inbox, Run(), Revocations(), None) is False  # type: ignore[arg-type]
    assert events == ["job 1", "job 2", "job 3", "sent", "job 4", "job 5", "sent"]
