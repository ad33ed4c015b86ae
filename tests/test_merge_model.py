"""merge-results against the plainest account of its journals: who holds a job done is every
folder whose newest attempt of it is done, in folder order; the line written for a job is its
first done line in folder order, whatever attempt and folder it comes from. ``merge`` keeps a
first-folder index per job and lists only the exceptions (issue 14, a merge of ten million jobs);
this checks it against that account on journals drawn at random: jobs done twice in one journal,
done in several folders, done by an older attempt and failed since, one machine in two roots."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from jobsplit import merge
from jobsplit.journal import AttemptRow, Journal
from jobsplit.states import JobState, Outcome

DIGEST = "ef" * 16
HEADER = ["Run Start Time", "Job Running Time", "Job Start Time", "Value"]
JOBS = [f"{n:032x}" for n in range(5)]
ENDS = {"done": (Outcome.DONE, JobState.DONE), "failed": (Outcome.ERROR, JobState.FAILED), "again": (Outcome.ERROR, JobState.PENDING)}

attempts = st.lists(st.sampled_from(sorted(ENDS)), min_size=1, max_size=3)
folders = st.lists(
    st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 1), st.dictionaries(st.sampled_from(JOBS), attempts, max_size=len(JOBS))),
    min_size=1, max_size=4, unique_by=lambda f: (f[0], f[1]),
)  # fmt: skip


def write_folder(path: Path, machine: str, jobs: dict[str, list[str]]) -> None:
    path.mkdir(parents=True)
    journal = Journal(path / "journal.sqlite")
    meta = {"digest": DIGEST, "machine": machine, "strategy": "quota", "header": json.dumps(HEADER), "plan": json.dumps({"a": 3, "b": 2}),
            "machines": json.dumps({"a": [1, 1], "b": [1, 1]}), "source": "redis", "pool": str(len(JOBS))}  # fmt: skip
    journal.initialize(meta, [])
    run = journal.begin_run(1, done_before=0, started=1.0, host="h", pid=1, code="c", source="redis")
    journal.hold(list(jobs))
    rows, clock = [], 1.0
    for turn in range(3):  # the jobs' attempts interleaved, as a run records them
        for job, ends in jobs.items():
            if turn < len(ends):
                outcome, state = ENDS[ends[turn]]
                clock += 1
                done = outcome == Outcome.DONE
                rows.append(AttemptRow(job, turn + 1, run, 0, 1, clock, clock + 0.5, outcome, state,
                                       row=f"t,1,t,{turn},{job},[],{machine},{DIGEST},c\n" if done else None,
                                       args=None if done else "[]", error=None if done else "E"))  # fmt: skip
    journal.commit(run, rows, [], clock + 1)
    journal.close()


@settings(max_examples=120, deadline=None)
@given(folders=folders)
def test_merge_holds_and_writes_what_the_plain_account_says(folders: list[tuple[str, int, dict[str, list[str]]]]) -> None:
    with tempfile.TemporaryDirectory() as name:
        roots = [Path(name) / "root0", Path(name) / "root1"]
        for machine, root, jobs in folders:
            write_folder(roots[root] / machine, machine, jobs)
        given = [root for root in roots if root.exists()]
        merged = merge.merge(given)
        holders: dict[str, list[str]] = {}
        lines: dict[str, str] = {}
        for machine in merged.machines:  # the plain account, in the folders' order as merge read them
            for job_id, state in machine.journal.states():
                if state == JobState.DONE:
                    holders.setdefault(job_id, []).append(machine.machine)
            for job_id, line in machine.journal.done_lines():
                lines.setdefault(job_id, line)
        assert dict(merged.holders) == holders
        assert merged.duplicates == {job_id: where for job_id, where in holders.items() if len(where) > 1}
        assert list(merged.lines()) == list(lines.values())
        assert list(merged.lines()) == list(lines.values())  # and again: the journals read a second time
        assert merged.complete == (len(holders) == len(JOBS) and all(len(where) == 1 for where in holders.values()) and not merged.missing)
        for machine in merged.machines:
            machine.journal.close()
