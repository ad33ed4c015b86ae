"""Files written whole (atomicfile.py): every output of the tools (``-o``), results.csv when it
is rebuilt, progress.json. A regular file is replaced in one rename; anything else is left what
it is: ``-o /dev/null`` once replaced /dev/null itself with a file, for every program of a
machine where the tools ran as root. (Tested on a named pipe and a link in a temporary folder:
a test that failed on /dev/null would break the machine it runs on.)"""

from __future__ import annotations

import errno
import os
import stat
import threading
from pathlib import Path

import pytest

from jobsplit import atomicfile
from jobsplit.atomicfile import atomic_file
from jobsplit.errors import UserError
from test_merge_logs import merge_logs, write_machine


class FifoReader:
    """A named pipe in ``folder`` and a thread reading it to its end, as a program behind it would."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "pipe"
        os.mkfifo(self.path)
        self.data = b""
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with open(self.path, "rb") as f:
            self.data = f.read()

    def wait(self) -> bytes:
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "nothing ended the pipe's writing"
        return self.data


def test_a_file_is_replaced_whole_and_no_temporary_file_stays(tmp_path):
    path = tmp_path / "out.csv"
    path.write_text("old\n")
    with atomic_file(path) as f:
        f.write("new\n")
        assert path.read_text() == "old\n"  # readers see the old file until the rename
    assert path.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path):
    path = tmp_path / "out.csv"
    path.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_file(path) as f:
        f.write("half")
        raise RuntimeError("the writer failed")
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_a_named_pipe_is_written_to_not_replaced(tmp_path):
    reader = FifoReader(tmp_path)
    with atomic_file(reader.path) as f:
        f.write("through the pipe\n")
    assert reader.wait() == b"through the pipe\n"
    assert stat.S_ISFIFO(os.lstat(reader.path).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_a_link_stays_a_link_and_the_file_it_points_to_is_replaced(tmp_path):
    (tmp_path / "shared").mkdir()
    target = tmp_path / "shared" / "merged.csv"
    target.write_text("old\n")
    link = tmp_path / "merged.csv"
    link.symlink_to(target)
    with atomic_file(link) as f:
        f.write("new\n")
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert target.read_text() == "new\n"
    assert sorted(p.name for p in (tmp_path / "shared").iterdir()) == ["merged.csv"]


def test_a_file_in_a_missing_folder_is_one_sentence_naming_it(tmp_path):
    path = tmp_path / "missing" / "out.csv"
    with pytest.raises(UserError, match=rf"{path} cannot be written \(.*\); check that its folder exists and is writable"), atomic_file(path) as f:
        f.write("x")


def test_merge_logs_writes_into_a_named_pipe(tmp_path):
    """A tool's -o on what is not a file, end to end: merge-logs into a pipe a reader drains."""
    root = tmp_path / "out"
    write_machine(root, "alpha", 50)
    reader = FifoReader(tmp_path)
    result = merge_logs(root, "-o", reader.path)
    assert result.returncode == 0, result.stderr
    assert reader.wait().count(b" alpha ") == 50
    assert stat.S_ISFIFO(os.lstat(reader.path).st_mode)


def test_a_file_replaced_keeps_its_permissions(tmp_path):
    """``merge-results -o merged.csv`` again, after ``chmod 600 merged.csv``: the new table was
    readable by everyone (the temporary file's mode, from the umask), and through a link too."""
    path = tmp_path / "merged.csv"
    path.write_text("old\n")
    path.chmod(0o600)
    link = tmp_path / "link.csv"
    link.symlink_to(path.name)
    for name in (path, link):
        with atomic_file(name) as f:
            f.write("new\n")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text() == "new\n" and link.is_symlink()
    fresh = tmp_path / "fresh.csv"
    with atomic_file(fresh) as f:
        f.write("x\n")
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~_umask()


def _umask() -> int:
    """This process's umask, read without setting it (Linux)."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("Umask:")[1].split()[0], 8)


def test_an_output_on_a_read_only_file_system_is_one_sentence_naming_it(tmp_path, monkeypatch):
    """On a read-only file system both the open and the clean-up's unlink fail with EROFS (the
    kernel says so before it looks for the file): the second error was a traceback."""
    def read_only(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(atomicfile, "_opened", read_only)
    monkeypatch.setattr(Path, "unlink", read_only)
    path = tmp_path / "merged.csv"
    with pytest.raises(UserError, match=f"{path} cannot be written \\(Read-only file system\\)"), atomic_file(path) as f:
        f.write("never\n")
