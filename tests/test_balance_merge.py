"""merge-results and status over journals of a shared-queue run (issue 11), written by hand:
completeness is every job of the pool done once across folders; superseded results are
counted and left out; a job done in two folders is reported with the reason it can happen."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest
from rich.console import Console

from jobsplit import merge, status
from jobsplit.journal import AttemptRow, Journal
from jobsplit.states import JobState, Outcome

DIGEST = "cd" * 16
HEADER = ["Run Start Time", "Job Running Time", "Job Start Time", "Value"]


def folder(root: Path, machine: str, done: list[str], superseded: list[str] = (), pending: list[str] = (), pool: int = 4) -> Path:
    path = root / machine
    path.mkdir(parents=True)
    journal = Journal(path / "journal.sqlite")
    meta = {"digest": DIGEST, "machine": machine, "strategy": "quota", "header": json.dumps(HEADER), "plan": json.dumps({"a": 2, "b": 2}),
            "machines": json.dumps({"a": [1, 1], "b": [1, 1]}), "source": "redis", "pool": str(pool)}  # fmt: skip
    journal.initialize(meta, [])
    run = journal.begin_run(1, done_before=0, started=1.0, host="h", pid=1, code="c", source="redis")
    journal.hold([*done, *superseded, *pending])
    rows = [AttemptRow(j, 1, run, 0, 1, 1.0, 2.0, Outcome.DONE, JobState.DONE, row=f"t,1,t,{j[-1]},{j},[],{machine},{DIGEST},c\n") for j in done]
    rows += [AttemptRow(j, 1, run, 0, 1, 1.0, 2.0, Outcome.DONE, JobState.SUPERSEDED, row="x\n") for j in superseded]
    journal.commit(run, rows, [], 3.0)
    journal.close()
    return path


def ids(*numbers: int) -> list[str]:
    return [f"{n:032x}" for n in numbers]


def test_every_job_of_the_pool_once_with_superseded_left_out(tmp_path, capsys) -> None:
    folder(tmp_path, "a", ids(0, 1, 2), pending=ids(3))  # 3: claimed by a, then taken over by b
    folder(tmp_path, "b", ids(3), superseded=ids(1))
    merged = merge.merge([tmp_path])
    assert merged.complete and merged.superseded == 1 and not merged.missing and not merged.absent
    assert len(list(merged.lines())) == 4
    merge.report(merged, Console(width=300, no_color=True))
    assert "superseded: 1 job also computed on a host whose claim had passed to another" in capsys.readouterr().out
    _, statuses, pool, _ = status.gather([tmp_path])
    assert pool == 4 and status.overall(statuses, pool).total == 4 and {s.name for s in statuses} == {"a", "b"}


def test_jobs_nobody_holds_are_missing_and_doubles_are_reported(tmp_path, capsys) -> None:
    folder(tmp_path, "a", ids(0, 1))
    folder(tmp_path, "b", ids(1))
    merged = merge.merge([tmp_path])
    assert not merged.complete and merged.unclaimed == 2 and list(merged.duplicates) == ids(1)
    merge.report(merged, Console(width=300, no_color=True))
    out = capsys.readouterr().out
    assert "missing: 2 jobs of the pool, in none of these folders" in out
    assert f"present more than once: 1 job: {ids(1)[0]} (" in out
    assert "Redis that lost its queue while the host that had done them was away" in out
    assert "2 of 4 jobs present" in out and "INCOMPLETE" in out


def test_a_merge_counts_and_writes_from_one_moment_of_a_journal_a_run_goes_on_writing(tmp_path) -> None:
    """merge-results read who holds which job, then the rows to write, in two reads: a run
    committing between them made "1986 of 16000 present" beside "wrote 2,013 rows"."""
    path = folder(tmp_path, "a", ids(0, 1))
    merged = merge.merge([tmp_path])
    writer = Journal(path / "journal.sqlite")  # the run, going on
    more = ids(2)
    writer.hold(more)
    writer.commit(1, [AttemptRow(more[0], 1, 1, 0, 1, 1.0, 2.0, Outcome.DONE, JobState.DONE, row=f"t,1,t,2,{more[0]},[],a,{DIGEST},c\n")], [], 3.0)
    writer.close()
    assert len(list(merged.lines())) == len(merged.holders) == 2  # as the merge found it, not 3


def test_a_queue_machine_in_two_folders_is_named_as_the_cause_of_its_doubles(tmp_path, capsys) -> None:
    """One machine run from two folders through a queue (--fresh, or two hosts given one name
    one after the other): the second run handed the first's done jobs back to the queue and ran
    them again. The doubles were put down to Redis losing its queue only, and the two folders
    went unnamed, as they are for a static plan."""
    first, second = folder(tmp_path / "x", "a", ids(0, 1)), folder(tmp_path / "y", "a", ids(1, 2, 3))
    merged = merge.merge([first, second])
    assert list(merged.duplicates) == ids(1)
    merge.report(merged, Console(width=400, no_color=True))
    out = " ".join(capsys.readouterr().out.split())
    assert f"machine a is in 2 folders ({first}, {second}): it ran from each" in out, out
    assert "run again" in out and "a machine run from two folders, see above" in out, out


def test_a_folder_of_a_queue_run_refused_as_it_joined_is_no_second_run_of_its_machine(tmp_path, capsys) -> None:
    """A second host given machine a's name is refused as it joins the queue (a's run is in
    contact), after its journal is made: its folder holds no job. merge-results said a "ran from
    each" folder and that its jobs were handed back and run again, which never happened."""
    ran, refused = folder(tmp_path / "x", "a", ids(0, 1)), folder(tmp_path / "y", "a", [])
    merged = merge.merge([ran, refused, folder(tmp_path / "x", "b", ids(2, 3))])
    merge.report(merged, Console(width=400, no_color=True))
    out = " ".join(capsys.readouterr().out.split())
    assert "is in 2 folders" not in out and "run again" not in out, out
    assert "complete: every job of the pool exactly once" in out, out


def test_a_shared_queue_s_overall_eta_counts_the_whole_pool_left() -> None:
    """Each host of a shared queue holds only the few jobs it claimed: the overall ETA was the
    largest host's, over those few (23 pending at 1.94 jobs/s showed 3.1 s); it is what is left
    of the pool over the hosts' rates together."""
    hosts = [
        status.MachineStatus("a", 10, 6, 0, 2, 2, 1.0, 2.0, None, "running"),
        status.MachineStatus("b", 8, 5, 1, 1, 1, 0.5, 2.0, None, "running"),
    ]
    whole = status.overall(hosts, pool=60)
    assert (whole.done, whole.failed, whole.running, whole.pending) == (11, 1, 3, 45)
    assert whole.eta_seconds == pytest.approx((45 + 3) / 1.5)


def test_a_job_s_first_done_line_is_written_once_whichever_folder_and_attempt_it_comes_from(tmp_path) -> None:
    """merge-results writes each job's first done line, in folder order, and finds who holds
    which job by its newest attempt: a job done twice in one journal (claimed again after
    Redis lost its queue), or done by an older attempt in a folder that then failed it and
    done in a later folder, is written once, from where it came first."""

    def line(job: str, machine: str, value: int) -> str:
        return f"t,1,t,{value},{job},[],{machine},{DIGEST},c\n"

    x, y, z = ids(0, 1, 2)
    a = folder(tmp_path, "a", [])
    journal = Journal(a / "journal.sqlite")
    run = journal.begin_run(1, done_before=0, started=1.0, host="h", pid=1, code="c", source="redis")
    journal.hold([x, y])
    rows = [
        AttemptRow(x, 1, run, 0, 1, 1.0, 2.0, Outcome.DONE, JobState.DONE, row=line(x, "a", 1)),
        AttemptRow(y, 1, run, 0, 1, 2.0, 3.0, Outcome.DONE, JobState.DONE, row=line(y, "a", 1)),
        AttemptRow(x, 2, run, 0, 1, 3.0, 4.0, Outcome.DONE, JobState.DONE, row=line(x, "a", 2)),
        AttemptRow(y, 2, run, 0, 1, 4.0, 5.0, Outcome.ERROR, JobState.FAILED, args="[]", error="E"),
    ]
    journal.commit(run, rows, [], 6.0)
    journal.close()
    folder(tmp_path, "b", [y, x, z])
    merged = merge.merge([tmp_path])
    assert dict(merged.holders) == {x: ["a", "b"], y: ["b"], z: ["b"]} and merged.duplicates == {x: ["a", "b"]}
    assert not merged.missing and not merged.complete
    assert list(merged.lines()) == [line(x, "a", 1), line(y, "a", 1), f"t,1,t,2,{z},[],b,{DIGEST},c\n"]
    assert list(merged.lines()) == list(merged.lines())  # read again, the same


def test_merging_holds_about_a_hundred_bytes_a_job(tmp_path) -> None:
    """merge-results kept a list of machines per job, then a second set of the ids as it wrote
    them: some 370 bytes a job (395 MB for a million). Now the id and the place of the folder
    that first holds it, and only for a job in two folders its list."""
    count = 20_000
    done = [f"{n:032x}" for n in range(count)]
    folder(tmp_path / "x", "a", done[: count // 2], pool=count)
    folder(tmp_path / "x", "b", done[count // 2 :], pool=count)
    tracemalloc.start()
    try:
        merged = merge.merge([tmp_path / "x"])
        written = merge.write_csv(merged, tmp_path / "merged.csv")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert merged.complete and written == count
    assert peak < 250 * count, f"{peak / count:.0f} bytes a job"
