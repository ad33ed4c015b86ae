"""children.py in this process: which children the leftover check stops, and what it reads to
tell (the whole runs are in test_hardening_ops.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from jobsplit import children

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="children are found in /proc")


@pytest.fixture
def two_sleepers():
    started = [subprocess.Popen(["sleep", "60"]) for _ in range(2)]
    yield started
    for process in started:
        process.kill()
        process.wait()


def test_the_kernel_s_lists_name_this_process_s_children(two_sleepers):
    listed = children._listed_children()
    assert listed is not None and {p.pid for p in two_sleepers} <= listed


def test_children_kept_on_purpose_are_neither_stopped_nor_looked_for_in_proc(two_sleepers, monkeypatch):
    """A library's helpers (see library_helpers) live through every job: with only them as
    children, the check after a job reads the kernel's short lists, not the whole of /proc
    (milliseconds a job on a busy host), and stops nothing."""
    kept = {child.pid for child in children._children()}  # the sleepers, and what else this test process runs (a session's server)
    assert {p.pid for p in two_sleepers} <= kept

    def no_scan() -> list[object]:
        raise AssertionError("/proc was scanned")

    monkeypatch.setattr(children, "_children", no_scan)
    assert children.stop_children(0.1, keep=lambda: kept) == []
    assert all(p.poll() is None for p in two_sleepers)


def test_a_child_not_kept_is_stopped_and_named(two_sleepers):
    kept, left = two_sleepers[0], two_sleepers[1]
    others = {child.pid for child in children._children()} - {left.pid}  # the kept sleeper, and what else this test process runs
    stopped = children.stop_children(0.1, keep=lambda: others)
    assert [pid for pid, _ in stopped] == [left.pid] and "sleep 60" in stopped[0][1]
    assert left.wait(timeout=10) is not None and kept.poll() is None
