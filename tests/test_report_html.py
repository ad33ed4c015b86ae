"""``jobsplit report`` (issue 13): the page itself, read as a browser would get it.

One self-contained file (nothing fetched, no script), a lane per machine and worker slot, a
bar per attempt with its tooltip, failures with their log lines, a run still in progress,
and one-sentence errors for folders it cannot report on.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import xml.etree.ElementTree as ET
from html import unescape
from pathlib import Path

from conftest import error_lines
from test_report_figures import MACHINES, PLAN, make_fixture
from test_report_journal import Att, Running, RunRow, job_hex, write_journal

SVG = "{http://www.w3.org/2000/svg}"


def report(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jobsplit", "report", *map(str, args)], capture_output=True, text=True, timeout=60, check=False)


def write_report(out: Path, html: Path) -> str:
    result = report(out, "-o", html)
    assert result.returncode == 0, result.stderr
    assert f"wrote {html}" in result.stderr
    return html.read_text(encoding="utf-8")


def svg_of(page: str) -> ET.Element:
    """The timeline, parsed as XML: it must be well-formed to be inline SVG."""
    match = re.search(r"<svg .*?</svg>", page, re.S)
    assert match, "no inline SVG"
    return ET.fromstring(match.group(0))


def test_the_page_is_self_contained_with_a_lane_per_slot_and_a_bar_per_attempt(tmp_path: Path) -> None:
    page = write_report(make_fixture(tmp_path), tmp_path / "report.html")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    for fetching in ("<script", "<link", "<img", "<iframe", " src=", "@import", "url(http", 'href="http'):
        assert fetching not in page
    assert set(re.findall(r"https?://[^\s\"'<)]+", page)) == {"http://www.w3.org/2000/svg"}  # the SVG namespace only
    svg = svg_of(page)
    lanes = [g.get("data-lane") for g in svg.iter(f"{SVG}g") if g.get("data-lane")]
    assert lanes == ["A/0", "A/1", "B/0", "B/1"]
    bars = [r.get("data-attempt") for r in svg.iter(f"{SVG}rect") if r.get("data-attempt")]
    expected = [f"{job_hex(j)}:{n}" for j, n in (("j1", 1), ("j2", 1), ("j2", 2), ("j3", 1), ("j4", 1), ("j5", 1), ("j6", 1), ("j7", 1))]
    assert sorted(bars) == sorted(expected)
    assert not [r for r in svg.iter(f"{SVG}rect") if r.get("data-attempts")]  # small runs: every bar its own


def test_each_bar_has_a_tooltip_with_the_job_its_arguments_duration_attempt_and_memory(tmp_path: Path) -> None:
    svg = svg_of(write_report(make_fixture(tmp_path), tmp_path / "report.html"))
    bars = {r.get("data-attempt"): r for r in svg.iter(f"{SVG}rect") if r.get("data-attempt")}
    crashed = bars[f"{job_hex('j4')}:1"]
    assert crashed.get("class") == "crashed"
    tip = crashed.find(f"{SVG}title").text
    assert tip.startswith(f"{job_hex('j4')} attempt 1: crashed, 10.0s, peak memory 1 GiB")
    assert 'args ["j4", 2]' in tip and "killed by signal 9 (SIGKILL)" in tip
    assert bars[f"{job_hex('j2')}:1"].get("class") == "retried"
    assert bars[f"{job_hex('j2')}:2"].get("class") == "done"
    idle = [r for r in svg.iter(f"{SVG}rect") if r.get("class") == "idle"]
    assert len(idle) == 1 and "B idle at the end: 40.0s × 2 workers" in idle[0].find(f"{SVG}title").text


def test_failures_show_ids_machine_signal_memory_and_the_jobs_last_log_lines(tmp_path: Path) -> None:
    page = write_report(make_fixture(tmp_path), tmp_path / "report.html")
    failures = page[page.index('<section id="failures">') :]
    assert "killed by signal 9 (SIGKILL)</b>: 1 attempt on A (1)" in failures
    assert "<b>ValueError: boom</b>: 1 attempt on A (1)" in failures
    assert job_hex("j4") in failures and "signal 9" in failures and "1 GiB" in failures
    assert "INFO allocating a lot" in failures and "ERROR worker 1 died: killed by signal 9" in failures
    assert "INFO second try goes well" not in failures  # a later attempt's line is not this one's
    assert '"A": [1.26, 2]' in unescape(page) and '"B": [1.74, 2]' in unescape(page)  # the suggested machines.json


def test_a_run_in_progress_is_reported_with_its_running_attempts(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_journal(out, "A", [Att("j1", 1, 0, 0, 40, "done", "done")], [RunRow(0, 50, None, 2, "running")], running=[Running("j3", 1, 1, 10)], jobs=["j4"], plan=PLAN, machines=MACHINES)
    page = write_report(out, tmp_path / "report.html")
    assert "in progress" in page and "Makespan so far" in page
    assert "B: 3 planned jobs, no folder given" in page
    running = [r for r in svg_of(page).iter(f"{SVG}rect") if r.get("class") == "running"]
    assert [r.get("data-attempt") for r in running] == [f"{job_hex('j3')}:1"]


def test_it_refuses_with_one_sentence(tmp_path: Path) -> None:
    out = make_fixture(tmp_path)
    nowhere = report(out)
    assert nowhere.returncode == 2 and len(error_lines(nowhere.stderr)) == 1 and "-o report.html" in nowhere.stderr
    other = tmp_path / "other"
    write_journal(other, "C", [], [], plan={"C": 1}, machines=MACHINES, digest="f" * 32)
    both = report(out, "--json", "-o", "-")
    assert both.returncode == 2 and "--json and -o - would both write to stdout" in both.stderr and not both.stdout
    mixed = report(out, other / "C", "-o", tmp_path / "r.html")
    assert mixed.returncode == 2 and "come from different plans" in mixed.stderr and len(error_lines(mixed.stderr)) == 1
    old = tmp_path / "old" / "D"
    old.mkdir(parents=True)
    db = sqlite3.connect(old / "journal.sqlite")
    db.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL); INSERT INTO meta VALUES ('schema', '1'), ('digest', 'abc');")
    db.close()
    schema1 = report(old, "--json")
    assert schema1.returncode == 2 and "schema 1" in schema1.stderr and len(error_lines(schema1.stderr)) == 1
    assert not (tmp_path / "r.html").exists()


def test_control_characters_of_a_job_s_message_are_shown_and_keep_the_svg_well_formed(tmp_path: Path) -> None:
    """A job's error with a NUL, a BEL and a form feed (binary junk a program printed): the
    characters went into the page as they were, so its inline SVG was no well-formed XML, and the
    form feed, which ``splitlines`` takes for a line end, made the failure's title ``\\x07``."""
    out = tmp_path / "out"
    error = "Traceback (most recent call last):\nValueError: bad\x00byte \x0c\x07\n"
    write_journal(out, "A", [Att("j1", 1, 0, 0, 40, "error", "failed", error=error)], [RunRow(0, 50, 50, 2, "completed")], jobs=["j1"], plan=PLAN, machines=MACHINES)
    page = write_report(out, tmp_path / "report.html")
    assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", page)
    svg_of(page)  # well-formed
    assert "<b>ValueError: bad\u2400byte \u240c\u2407</b>" in page
