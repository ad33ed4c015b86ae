"""The report in a real browser (issue 13, Must show 1 and 5): headless Chromium renders it,
and the page itself (its DOM after parsing, from ``--dump-dom``) must hold every attempt
exactly once and a lane per machine and worker; a screenshot of it must not be blank.

Two runs are rendered: a synthetic three-machine run written by SQL (schema 2, with
failures, a crash, retries and an uneven split), and a real three-machine run of the test
entry with a failure, a crash and a retry.

Set ``JOBSPLIT_UPDATE_SCREENSHOT=1`` to copy the real run's screenshot to ``docs/report.png``
(the README shows it).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

from components import png_is_blank
from runhelpers import pool_spec, run_args, run_env, spec_id, write_kinds_entry
from test_report_journal import Att, RunRow, machines_json, write_journal

DOCS_PNG = Path(__file__).resolve().parent.parent / "docs" / "report.png"


class PageElements(HTMLParser):
    """The attempt bars and lanes of a rendered page, as the browser's DOM has them."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts: list[str] = []
        self.grouped = 0
        self.lanes: list[str] = []
        self._svg_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "svg":
            self._svg_depth += 1
        if not self._svg_depth:
            return
        if tag == "rect" and found.get("data-attempt"):
            self.attempts.append(str(found["data-attempt"]))
        if tag == "rect" and found.get("data-attempts"):
            self.grouped += int(str(found["data-attempts"]))
        if tag == "g" and found.get("data-lane"):
            self.lanes.append(str(found["data-lane"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._svg_depth -= 1


def rendered(chromium, html: Path) -> PageElements:  # type: ignore[no-untyped-def]
    page = PageElements()
    page.feed(chromium.dump_dom(html))
    return page


def make_report(out: Path, html: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "jobsplit", "report", str(out), "-o", str(html)], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr


def keep_screenshot(png: Path) -> None:
    if os.environ.get("JOBSPLIT_UPDATE_SCREENSHOT") == "1":
        DOCS_PNG.parent.mkdir(exist_ok=True)
        shutil.copyfile(png, DOCS_PNG)


def journal_attempts(out: Path) -> set[str]:
    """Every attempt of every machine, ``job_id:attempt``, read straight from the journals."""
    keys = set()
    for journal in sorted(out.glob("*/journal.sqlite")):
        db = sqlite3.connect(f"{journal.resolve().as_uri()}?mode=ro", uri=True)
        try:
            keys |= {f"{job}:{n}" for job, n in db.execute("SELECT job_id, attempt FROM attempts UNION SELECT job_id, attempt FROM running")}
        finally:
            db.close()
    return keys


# --- a synthetic run -------------------------------------------------------------------------

DEMO_MACHINES = {"alpha": (1.0, 4), "beta": (2.0, 4), "gamma": (1.0, 2)}
TRUE_SPEED = {"alpha": 1.0, "beta": 1.4, "gamma": 1.15}
"""How fast the machines really are: beta is slower than machines.json says."""


def write_demo_run(root: Path, jobs: int = 280, seed: int = 7) -> Path:
    """A finished quota run of ``jobs`` jobs on DEMO_MACHINES with two retried errors, a
    crash, a timeout and a job that fails for good; returns the output root."""
    rng = random.Random(seed)
    capacity = {name: speed * cores for name, (speed, cores) in DEMO_MACHINES.items()}
    plan = {name: round(jobs * c / sum(capacity.values())) for name, c in capacity.items()}
    out = root / "out"
    fates = {3: "retried", 40: "retried", 77: "crashed", 150: "timeout", 201: "error"}
    number = 0
    for name, (_, cores) in DEMO_MACHINES.items():
        free = [0.5] * cores
        attempts = []
        for _ in range(plan[name]):
            job, fate = f"demo{number}", fates.get(number)
            number += 1
            tries = {
                "retried": [("error", "pending", "ValueError: no convergence after 500 steps"), ("done", "done", None)],
                "crashed": [("crashed", "failed", None)],
                "timeout": [("timeout", "failed", None)],
                "error": [("error", "failed", "FileNotFoundError: [Errno 2] No such file or directory: 'grid-17.npz'")],
            }.get(fate or "", [("done", "done", None)])
            for n, (outcome, after, error) in enumerate(tries, 1):
                slot = min(range(cores), key=lambda s: (free[s], s))
                start = free[slot] + rng.uniform(0.05, 0.3)
                seconds = (600 if outcome == "timeout" else rng.lognormvariate(3.2, 0.5)) / TRUE_SPEED[name]
                free[slot] = start + seconds
                attempts.append(Att(job, n, slot, start, start + seconds, outcome, after, signal=9 if outcome == "crashed" else None,
                                    max_rss=rng.randrange(80, 400) << 20 if outcome != "crashed" else 7 << 30,
                                    error=f"Traceback (most recent call last):\n  File \"study.py\", line 42, in job\n{error}" if error else None))  # fmt: skip
        end = max(free) + 0.5
        write_journal(out, name, attempts, [RunRow(0, end, end, cores)], plan=plan, machines=machines_json(**DEMO_MACHINES))
    return out


def test_the_report_of_a_synthetic_three_machine_run_renders_every_attempt_once(chromium, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = write_demo_run(tmp_path)
    html = tmp_path / "report.html"
    make_report(out, html)
    page = rendered(chromium, html)
    expected = journal_attempts(out)
    assert len(page.attempts) == len(set(page.attempts)) == len(expected) and set(page.attempts) == expected
    assert page.grouped == 0
    assert sorted(page.lanes) == sorted(f"{m}/{s}" for m, (_, cores) in DEMO_MACHINES.items() for s in range(cores))
    png = chromium.screenshot(html, tmp_path / "report.png", width=1200, height=800)
    assert not png_is_blank(png)


# --- a real run ------------------------------------------------------------------------------

REAL_MACHINES = {"m1": [1.0, 2], "m2": [1.0, 2], "m3": [1.0, 2]}


def test_the_report_of_a_real_three_machine_run_with_a_failure_a_crash_and_a_retry(chromium, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pool = [*pool_spec("sleep", 24, 0.15), ["raise", 0], ["sigkill", 0], ["flaky", 0]]
    entry, config_dir = write_kinds_entry(tmp_path, pool, machines=REAL_MACHINES)
    out = tmp_path / "out"
    hosts = [  # the three machines at once, as three hosts would run them
        subprocess.Popen(
            [sys.executable, str(entry), *run_args(config_dir, out, "--retries", "1", "--workers", "2", "--start-method", "fork", machine=machine)],
            env=run_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        for machine in REAL_MACHINES
    ]  # fmt: skip
    for host in hosts:
        _, err = host.communicate(timeout=120)
        assert host.returncode in (0, 1), err
    figures = subprocess.run([sys.executable, "-m", "jobsplit", "report", str(out), "--json"], capture_output=True, text=True, timeout=120, check=False)
    assert figures.returncode == 0, figures.stderr
    doc = json.loads(figures.stdout)
    assert doc["attempts"] == len(pool) + 3  # raise, sigkill and flaky each ran twice
    groups = {(g["outcome"], g["message"]): [(a["job_id"], a["attempt"], a["kind"]) for a in g["attempts"]] for g in doc["failures"]}
    raised, killed, flaky = spec_id(["raise", 0]), spec_id(["sigkill", 0]), spec_id(["flaky", 0])
    assert groups[("error", "ValueError: job 0 raised on purpose")] == [(raised, 1, "retried"), (raised, 2, "error")]
    assert [(job, n) for job, n, _ in groups[("crashed", "the worker process died while running this job (killed by SIGKILL)")]] == [(killed, 1), (killed, 2)]
    assert groups[("error", "RuntimeError: flaky job 0 fails on its first attempt")] == [(flaky, 1, "retried")]
    assert {m["name"]: (m["workers"], m["planned"]) for m in doc["machines"]} == {m: (2, doc["machines"][i]["planned"]) for i, m in enumerate(REAL_MACHINES)}
    assert sum(m["done"] for m in doc["machines"]) == len(pool) - 2
    html = tmp_path / "report.html"
    make_report(out, html)
    page = rendered(chromium, html)
    assert sorted(page.attempts) == sorted(journal_attempts(out)) and page.grouped == 0
    assert sorted(page.lanes) == [f"{m}/{s}" for m in REAL_MACHINES for s in range(2)]
    png = chromium.screenshot(html, tmp_path / "report.png", width=1200, height=800)
    assert not png_is_blank(png)
    keep_screenshot(png)
