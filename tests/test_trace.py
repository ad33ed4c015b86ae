"""``jobsplit trace`` (issue 13, Must show 3): its JSON passes a validator written from the
Trace Event Format's documentation, on the hand-made fixture and on 100,000 jobs.

What the validator checks, from the format's definition (the "Trace Event Format" document of
the Chromium/catapult project, which ui.perfetto.dev and chrome://tracing read):

- JSON Object Format: an object whose ``traceEvents`` is a list of events; ``displayTimeUnit``,
  when present, is "ms" or "ns"; ``otherData``, when present, an object.
- Every event has ``name`` (string), ``ph`` (one character) and ``pid``; ``cat`` is a string
  and ``args`` an object when present.
- Complete events (``ph: "X"``) have ``ts`` and ``dur``, numbers in microseconds (dur >= 0),
  and ``tid``. Events on one thread (pid, tid) must nest; attempts never contain one another,
  so here they must not overlap at all.
- Metadata events (``ph: "M"``) are named process_name, process_labels, process_sort_index,
  thread_name or thread_sort_index, with ``args.name`` (a string), ``args.labels`` or
  ``args.sort_index`` (an integer); the thread ones have a ``tid``. Every process and thread
  that has events is named by one (jobsplit's own promise, so that viewers show machines and
  slots by name).
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tracemalloc
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from jobsplit import runfacts, trace
from test_report_big import shared_big_run
from test_report_figures import make_fixture
from test_report_journal import Att, Running, RunRow, T, job_args, job_hex, machines_json, write_journal

PHASES = set("BEXiIPCbnesftNODMVvRc(),")
METADATA = {"process_name": "name", "process_labels": "labels", "process_sort_index": "sort_index", "thread_name": "name", "thread_sort_index": "sort_index"}


def trace_document(facts: runfacts.RunFacts) -> dict:
    """The trace as the command writes it, read back."""
    written = io.StringIO()
    trace.write_trace(facts, written)
    return json.loads(written.getvalue())


def validate_trace(doc: Any) -> list[str]:
    """Every way ``doc`` breaks the Trace Event Format (and jobsplit's naming promise)."""
    problems: list[str] = []
    if not isinstance(doc, dict) or not isinstance(doc.get("traceEvents"), list):
        return ["not the JSON Object Format: no traceEvents list"]
    if doc.get("displayTimeUnit", "ms") not in ("ms", "ns"):
        problems.append(f"displayTimeUnit {doc['displayTimeUnit']!r} is neither ms nor ns")
    if not isinstance(doc.get("otherData", {}), dict):
        problems.append("otherData is not an object")
    tracks: dict[tuple[int, int], list[tuple[float, float, int]]] = defaultdict(list)
    named_processes, named_threads = set(), set()
    for i, e in enumerate(doc["traceEvents"]):
        where = f"event {i}"
        if not isinstance(e, dict):
            problems.append(f"{where} is not an object")
            continue
        if not isinstance(e.get("name"), str):
            problems.append(f"{where} has no name")
        if not (isinstance(e.get("ph"), str) and len(e["ph"]) == 1 and e["ph"] in PHASES):
            problems.append(f"{where} has no valid ph: {e.get('ph')!r}")
            continue
        if not _is_int(e.get("pid")):
            problems.append(f"{where} has no integer pid")
        if "cat" in e and not isinstance(e["cat"], str):
            problems.append(f"{where}: cat is not a string")
        if "args" in e and not isinstance(e["args"], dict):
            problems.append(f"{where}: args is not an object")
        if e["ph"] == "X":
            if not _is_int(e.get("tid")):
                problems.append(f"{where} (X) has no integer tid")
            for key in ("ts", "dur"):
                if not _is_number(e.get(key)):
                    problems.append(f"{where} (X) has no numeric {key}")
            if _is_number(e.get("dur")) and e["dur"] < 0:
                problems.append(f"{where} (X) has a negative dur")
            if _is_number(e.get("ts")) and _is_number(e.get("dur")):
                tracks[(e.get("pid"), e.get("tid"))].append((e["ts"], e["dur"], i))
        elif e["ph"] == "M":
            key = METADATA.get(e.get("name"))
            if key is None:
                problems.append(f"{where} (M) has an unknown name {e.get('name')!r}")
                continue
            value = e.get("args", {}).get(key)
            if (key == "sort_index" and not _is_int(value)) or (key == "name" and not isinstance(value, str)) or value is None:
                problems.append(f"{where} ({e['name']}) has no valid args.{key}")
            if e["name"].startswith("thread_"):
                if not _is_int(e.get("tid")):
                    problems.append(f"{where} ({e['name']}) has no integer tid")
                elif e["name"] == "thread_name":
                    named_threads.add((e["pid"], e["tid"]))
            elif e["name"] == "process_name":
                named_processes.add(e["pid"])
    for (pid, tid), spans in sorted(tracks.items()):
        if pid not in named_processes:
            problems.append(f"pid {pid} has events but no process_name")
        if (pid, tid) not in named_threads:
            problems.append(f"pid {pid} tid {tid} has events but no thread_name")
        spans.sort()
        for (ts1, dur1, i1), (ts2, _, i2) in zip(spans, spans[1:]):
            if ts2 < ts1 + dur1:
                problems.append(f"events {i1} and {i2} overlap on pid {pid} tid {tid}")
    return problems


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def complete_events(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in doc["traceEvents"] if e["ph"] == "X"]


# --- the tests -------------------------------------------------------------------------------


def test_the_fixture_trace_is_valid_with_times_in_microseconds(tmp_path: Path) -> None:
    out = make_fixture(tmp_path)
    result = subprocess.run([sys.executable, "-m", "jobsplit", "trace", str(out), "-o", str(tmp_path / "trace.json")], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    doc = json.loads((tmp_path / "trace.json").read_text())
    assert validate_trace(doc) == []
    assert doc["displayTimeUnit"] == "ms"
    names = {(e["name"], e["pid"], e.get("tid")): e["args"] for e in doc["traceEvents"] if e["ph"] == "M"}
    assert names[("process_name", 1, None)] == {"name": "A"} and names[("process_name", 2, None)] == {"name": "B"}
    assert names[("thread_name", 1, 1)] == {"name": "worker 0"} and names[("thread_name", 2, 2)] == {"name": "worker 1"}
    events = {(e["args"]["job_id"], e["args"]["attempt"]): e for e in complete_events(doc)}
    assert len(events) == 8
    retried = events[(job_hex("j2"), 1)]  # A, slot 0, from 40 s to 70 s after T
    assert (retried["pid"], retried["tid"], retried["ts"], retried["dur"]) == (1, 1, 1_800_000_040_000_000, 30_000_000)
    assert retried["name"] == "retried"
    assert {k: retried["args"][k] for k in ("arguments", "outcome", "state", "message")} == {
        "arguments": job_args("j2"), "outcome": "error", "state": "pending", "message": "ValueError: boom"
    }  # fmt: skip
    crashed = events[(job_hex("j4"), 1)]
    assert (crashed["pid"], crashed["tid"], crashed["dur"], crashed["args"]["signal"], crashed["args"]["max_rss"]) == (1, 2, 10_000_000, 9, 1 << 30)
    assert events[(job_hex("j7"), 1)]["args"]["arguments"] == job_args("j7")  # read from the done row's Job Args


def test_a_100000_job_trace_is_valid(tmp_path_factory: pytest.TempPathFactory) -> None:
    facts = runfacts.load([shared_big_run(tmp_path_factory)])
    doc = json.loads(json.dumps(trace_document(facts), allow_nan=False))
    assert validate_trace(doc) == []
    assert len(complete_events(doc)) == sum(1 for _ in facts.attempts) > 100_000


def test_overlaps_from_clock_jitter_are_clipped_the_same_way_every_time(tmp_path: Path) -> None:
    out = tmp_path / "out"
    attempts = [
        Att("a", 1, 0, 0, 10.004, "done", "done"),
        Att("b", 1, 0, 10.001, 20, "done", "done"),  # starts 3 ms before a ended
        Att("c", 1, 0, 12, 13, "interrupted", "pending"),  # wholly inside b
        Att("d", 1, None, 0, 5, "done", "done"),  # no slot recorded: packed into slot 1
    ]
    write_journal(out, "A", attempts, [RunRow(0, 25, 25, 2)], plan={"A": 4}, machines=machines_json(A=(1.0, 2)))
    doc = trace_document(runfacts.load([out]))
    assert validate_trace(doc) == []
    spans = {e["args"]["job_id"]: (e["tid"], e["ts"] - int(T * 1e6), e["dur"], e["args"].get("clipped_us")) for e in complete_events(doc)}
    assert spans == {
        job_hex("a"): (1, 0, 10_004_000, None),
        job_hex("b"): (1, 10_004_000, 9_996_000, 3_000),
        job_hex("c"): (1, 20_000_000, 0, 1_000_000),
        job_hex("d"): (2, 0, 5_000_000, None),
    }
    assert trace_document(runfacts.load([out])) == doc


def test_a_run_in_progress_traces_its_running_attempts(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_journal(out, "A", [Att("a", 1, 0, 0, 10, "done", "done")], [RunRow(0, 30, None, 2, "running")], running=[Running("b", 1, 1, 5)], plan={"A": 3}, machines=machines_json(A=(1.0, 2)))
    doc = trace_document(runfacts.load([out]))
    assert validate_trace(doc) == []
    running = [e for e in complete_events(doc) if e["name"] == "running"]
    assert [(e["tid"], e["dur"], e["args"]["job_id"]) for e in running] == [(2, 25_000_000, job_hex("b"))]


def test_the_validator_rejects_what_the_format_forbids() -> None:
    named = [
        {"name": "process_name", "ph": "M", "pid": 1, "args": {"name": "A"}},
        {"name": "thread_name", "ph": "M", "pid": 1, "tid": 1, "args": {"name": "worker 0"}},
    ]
    good = {"name": "done", "ph": "X", "ts": 0, "dur": 10, "pid": 1, "tid": 1}
    assert validate_trace({"traceEvents": [*named, good]}) == []
    assert validate_trace([good]) == ["not the JSON Object Format: no traceEvents list"]
    assert validate_trace({"traceEvents": [*named, good], "displayTimeUnit": "s"})
    assert validate_trace({"traceEvents": [*named, {**good, "ts": 5}, good]})  # overlap on one track
    assert validate_trace({"traceEvents": [*named, {k: v for k, v in good.items() if k != "dur"}]})
    assert validate_trace({"traceEvents": [*named, {**good, "dur": -1}]})
    assert validate_trace({"traceEvents": [named[0], good]})  # thread not named
    assert validate_trace({"traceEvents": [named[1], good]})  # process not named
    assert validate_trace({"traceEvents": [*named, {"name": "thread_name", "ph": "M", "pid": 1, "args": {"name": "x"}}, good]})
    assert validate_trace({"traceEvents": [*named, {"name": "colour", "ph": "M", "pid": 1, "args": {}}, good]})
    assert validate_trace({"traceEvents": [*named, {**good, "ph": "XX"}]})
    assert validate_trace({"traceEvents": [*named, {**good, "args": []}]})


def test_the_trace_is_written_event_by_event_never_held_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Beside the attempts read, the command held every event as dicts and then the document's
    whole text: some 1,600 bytes an attempt (1.6 GB beside 0.9 GB of attempts for a million;
    a ten-million-job run's trace would not fit in 24 GB). Written event by event, the same text."""
    out, count = tmp_path / "out", 5_000
    attempts = [Att(f"j{i}", 1, i % 2, i / 2, i / 2 + 1, "done", "done") for i in range(count)]
    write_journal(out, "A", attempts, [RunRow(0, count, count, 2)], plan={"A": count}, machines=machines_json(A=(1.0, 2)))
    facts = runfacts.load([out])
    monkeypatch.setattr(trace, "load", lambda dirs: facts)
    target = tmp_path / "trace.json"
    tracemalloc.start()
    try:
        assert trace.run(argparse.Namespace(dirs=[out], output=str(target)), Console(file=io.StringIO())) == 0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert json.loads(target.read_text())["traceEvents"] == json.loads(json.dumps(list(trace.trace_events(facts))))
    assert peak < 400 * count, f"{peak / count:.0f} bytes an attempt"
