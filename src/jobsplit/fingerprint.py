"""The code fingerprint: which version of the entry script computed a result.

The digest covers the pool and the config files (it seeds the random streams, so it must not
change when only code changes); the fingerprint covers the entry's code: SHA-256 of the entry
script's source (line endings normalized, so a copy edited on Windows matches) and of the
modules of its own folder that it imports (``helpers.py`` beside it, a package of the project),
found in its import statements, those inside functions too, and theirs in turn. A module linked
into the folder counts as a copy there would: by its name there, with its target's source. It
is the same for the script and for the executable built from it: ``make exe`` computes it from
the script and bundles it. An entry run as a module of a package (``python -m study.run``)
has its folder where the package's own folder is (as Python's ``sys.path`` has it), so that
``from study.helpers import work`` is covered, with the package's ``__init__.py``. Installed
packages are not covered (their versions are not the entry's code), nor a module found only
through a ``sys.path`` the entry changes.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import os
import site
import sys
import sysconfig
from pathlib import Path
from types import FrameType

FINGERPRINT_HEX = 12
BUNDLED_NAME = "entry.fingerprint"
"""The file ``make exe`` bundles into the executable, next to jobsplit's templates."""
UNKNOWN = "unknown"


def file_fingerprint(path: Path, module: str | None = None) -> str:
    """The fingerprint of the entry script at ``path`` (run as ``module``, if named: ``python -m
    study.run``) and of the local modules it imports (an entry that imports none has the
    fingerprint it had before they were covered)."""
    state = hashlib.sha256(b"jobsplit/code/v1\n" + _normalized(path.read_bytes()))
    root = _root(path, module)
    for local in local_modules(path, module):
        state.update(b"\0" + local.relative_to(root).as_posix().encode() + b"\0" + _normalized(local.read_bytes()))
    return state.hexdigest()[:FINGERPRINT_HEX]


def _root(entry: Path, module: str | None) -> Path:
    """The folder the entry's imports start from: its own (resolved, as Python resolves a
    script's for ``sys.path``), or its top package's parent (as the module was found there)
    unless that is where packages are installed (see _installed)."""
    package_root = _package_root(entry, module)
    return package_root if package_root is not None else entry.resolve().parent


def _package_root(entry: Path, module: str | None) -> Path | None:
    """The parent of the top package of an entry run as ``module``, as ``python -m`` found it;
    None for a script, or for an installed package's module (``python -m pytest``), beside which
    every installed package it imports would be covered (a NumPy patch release made mixed code)."""
    if not module:
        return None
    root = Path(os.path.abspath(entry)).parents[module.count(".")]
    return None if _installed(root) else root


def _installed(folder: Path) -> bool:
    """Whether ``folder`` is one where packages are installed: this Python's own, its standard
    library's, or one with installed distributions' metadata (``pip install --target``, put on
    ``PYTHONPATH`` by a cluster's module system)."""
    places = {sysconfig.get_path(name) for name in ("purelib", "platlib", "stdlib", "platstdlib")} | {site.getusersitepackages(), *site.getsitepackages()}
    if any(place and Path(place).resolve() == folder.resolve() for place in places):
        return True
    return any(True for _ in folder.glob("*.dist-info")) or any(True for _ in folder.glob("*.egg-info"))


def local_modules(entry: Path, module: str | None = None) -> list[Path]:
    """The modules of the entry's folder (and below) that it imports, directly or through one
    another, in the order of their paths: each ``import`` and ``from ... import`` statement,
    wherever it is, names files that exist there or it names none; for an entry run as
    ``module``, also the ``__init__.py`` of each package above it, which Python runs first. A
    path is the one Python imports by, through any link in the folder (the entry's own is
    resolved, as Python resolves it for ``sys.path``)."""
    root = _root(entry, module)
    packages = _module_files(root, module.split(".")[:-1]) if module and _package_root(entry, module) else []
    found, pending = set(packages), [entry.resolve(), *packages]
    while pending:
        path = pending.pop()
        for local in _imported_files(path, root):
            if local not in found and local != entry.resolve():
                found.add(local)
                pending.append(local)
    return sorted(found)


def _imported_files(path: Path, root: Path) -> list[Path]:
    """The files of ``root`` that the import statements of the module at ``path`` may load."""
    try:
        tree = ast.parse(path.read_bytes())
    except (SyntaxError, ValueError, OSError):
        return []  # a file that is no Python, or unreadable: nothing of it is known to import
    files = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            files += [f for alias in node.names for f in _module_files(root, alias.name.split("."))]
        elif isinstance(node, ast.ImportFrom):
            base = root
            if node.level:  # relative: from the importing module's own package
                base = path.parent
                for _ in range(node.level - 1):
                    base = base.parent
            parts = node.module.split(".") if node.module else []
            files += _module_files(base, parts)
            files += [f for alias in node.names if alias.name != "*" for f in _module_files(base, [*parts, alias.name])]  # a submodule, maybe
    return [f for f in files if f.is_relative_to(root) and not _goes_round(f, root)]


def _goes_round(path: Path, root: Path) -> bool:
    """Whether ``path`` passes through a folder linked to one it is in (``pkg/again -> .``):
    its names would never end, and each names a file that a shorter one does."""
    folders = [folder.resolve() for folder in path.parents if folder.is_relative_to(root)]
    return len(set(folders)) < len(folders)


def _module_files(base: Path, parts: list[str]) -> list[Path]:
    """The files importing ``parts`` (a dotted name) from ``base`` runs: each package's
    ``__init__.py`` on the way, and the module itself."""
    files: list[Path] = []
    folder = base
    for i, part in enumerate(parts):
        if not part.isidentifier():
            return files
        if i == len(parts) - 1 and (module := folder / f"{part}.py").is_file():
            files.append(module)
        folder = folder / part
        if (package := folder / "__init__.py").is_file():
            files.append(package)
    return files


def _normalized(source: bytes) -> bytes:
    return source.removeprefix(b"\xef\xbb\xbf").replace(b"\r\n", b"\n")


def entry_fingerprint() -> str:
    """The running entry's fingerprint: bundled in an executable, else of the entry script's file
    and its local modules (each read once: the parser's ``--version`` and the run both show it)."""
    if getattr(sys, "frozen", False):
        return _bundled_fingerprint()
    entry = entry_script()
    return _script_fingerprint(*entry) if entry else UNKNOWN


@functools.cache
def _bundled_fingerprint() -> str:
    try:
        return (Path(getattr(sys, "_MEIPASS", "")) / "jobsplit" / BUNDLED_NAME).read_text(encoding="ascii").strip() or UNKNOWN
    except OSError:
        return UNKNOWN  # built without `make exe`


@functools.cache
def _script_fingerprint(main_file: Path, module: str | None) -> str:
    try:
        return file_fingerprint(main_file, module)
    except OSError:
        return UNKNOWN


def entry_script() -> tuple[Path, str | None] | None:
    """The entry script, and the module name it runs as (``python -m study.run``; else None):
    the innermost caller that runs as ``__main__``, the entry that called ``jobsplit.main``. Not
    ``sys.modules["__main__"]``: under ``python -m cProfile entry.py`` (or ``profile``, ``trace``)
    that is the profiler, and the script runs as a namespace of its own (named ``__main__`` from
    Python 3.12: a script, not a module). None where the entry has no file (``python -c``,
    standard input)."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        names = frame.f_globals
        if names.get("__name__") == "__main__":
            file, module = names.get("__file__"), getattr(names.get("__spec__"), "name", None)
            if not isinstance(file, str):
                return None
            return Path(file), (module if module != "__main__" else None)
        frame = frame.f_back
    return None


def main(argv: list[str]) -> None:
    """Print an entry script's fingerprint (``make exe`` bundles it)."""
    if len(argv) != 1:
        sys.exit("usage: fingerprint ENTRY.py")
    print(file_fingerprint(Path(argv[0])))
