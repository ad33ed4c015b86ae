"""Where the tools write their ``-o`` (tooloutput.py): never over a file a run keeps in its
machine folder, and ``-`` is stdout for every tool that writes a file.

``merge-results OUT -o OUT/a/results.csv`` replaced machine a's results with every machine's
(its next run then refused them as of another plan), ``-o OUT/a/journal.sqlite`` the journal
itself, and ``merge-logs OUT -o OUT/a/a.log.gz`` gave every later merge a's records twice;
``merge-results -o -`` and ``report -o -`` wrote a file named ``-``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import run_entry
from runhelpers import jobsplit_script, pool_spec, read_results, run_args, run_env, write_kinds_entry


@pytest.fixture(scope="module")
def share(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output root of one machine's finished share of 6 jobs."""
    root = tmp_path_factory.mktemp("share")
    entry, config_dir = write_kinds_entry(root, pool_spec("ok", 6))
    result = run_entry(entry, *run_args(config_dir, root / "out"), env=run_env(root), timeout=90)
    assert result.returncode == 0, result.stderr
    return root / "out"


def tool(root: Path, *args: str | Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([jobsplit_script(), *map(str, args)], env=run_env(root), capture_output=True, timeout=60, check=False)


@pytest.mark.parametrize(
    ("command", "target"),
    [
        ("merge-results", "solo/results.csv"),
        ("merge-results", "solo/journal.sqlite"),
        ("merge-logs", "solo/solo.log.gz"),
        ("merge-logs", "solo/solo.log.3.gz"),  # a segment not written yet: the next rotation's name
        ("report", "solo/progress.json"),
        ("trace", "solo/run.lock"),
    ],
)
def test_a_tool_never_writes_over_a_file_a_run_keeps(share: Path, command: str, target: str) -> None:
    path = share / target
    before = path.read_bytes() if path.exists() else None
    done = tool(share.parent, command, share, "-o", path)
    assert done.returncode == 2, done.stderr
    message = done.stderr.decode()
    assert f"-o {path}: that is a file a run keeps in its machine folder {share / 'solo'}; write the output elsewhere" in " ".join(message.split()), message
    assert "Traceback" not in message
    assert (path.read_bytes() if path.exists() else None) == before


def test_a_link_to_a_run_s_file_is_refused_and_other_files_of_a_machine_folder_are_fine(share: Path, tmp_path: Path) -> None:
    link = tmp_path / "merged.csv"
    link.symlink_to(share / "solo" / "results.csv")
    before = link.read_bytes()
    done = tool(share.parent, "merge-results", share, "-o", link)
    assert done.returncode == 2 and b"a file a run keeps" in done.stderr, done.stderr
    assert link.read_bytes() == before
    report = share / "solo" / "report.html"
    done = tool(share.parent, "report", share, "-o", report)
    assert done.returncode == 0, done.stderr
    assert report.read_text(encoding="utf-8").lstrip().lower().startswith("<!doctype html")
    report.unlink()


def test_dash_is_stdout_for_every_tool_that_writes_a_file(share: Path, tmp_path: Path) -> None:
    merged = tool(tmp_path, "merge-results", share, "-o", "-")
    assert merged.returncode == 0, merged.stderr
    assert b"wrote 6 rows to stdout" in merged.stderr
    header, rows = read_results(share / "solo" / "results.csv")
    stdout = tmp_path / "stdout.csv"
    stdout.write_bytes(merged.stdout)
    out_header, out_rows = read_results(stdout)
    assert out_header == header
    assert sorted(sorted(row.items()) for row in out_rows) == sorted(sorted(row.items()) for row in rows)
    report = tool(tmp_path, "report", share, "-o", "-")
    assert report.returncode == 0, report.stderr
    assert report.stdout.lstrip().lower().startswith(b"<!doctype html")
    for command in ("merge-logs", "trace"):
        assert tool(tmp_path, command, share, "-o", "-").stdout
    assert not (tmp_path / "-").exists() and not (Path.cwd() / "-").exists()
