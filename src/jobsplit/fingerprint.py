"""The code fingerprint: which version of the entry script computed a result.

The digest covers the pool and the config files (it seeds the random streams, so it must not
change when only code changes); the fingerprint covers the entry's code: SHA-256 of the entry
script's source (line endings normalized, so a copy edited on Windows matches) and of the
modules of its own folder that it imports (``helpers.py`` beside it, a package of the project),
found in its import statements, those inside functions too, and theirs in turn. A module linked
into the folder counts as a copy there would: by its name there, with its target's source. It
is the same for the script and for the executable built from it: ``make exe`` computes it from
the script and bundles it. Installed packages are not covered (their versions are not the
entry's code), nor a module found only through a ``sys.path`` the entry changes.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

FINGERPRINT_HEX = 12
BUNDLED_NAME = "entry.fingerprint"
"""The file ``make exe`` bundles into the executable, next to jobsplit's templates."""
UNKNOWN = "unknown"


def file_fingerprint(path: Path) -> str:
    """The fingerprint of the entry script at ``path`` and of the local modules it imports (an
    entry that imports none has the fingerprint it had before they were covered)."""
    state = hashlib.sha256(b"jobsplit/code/v1\n" + _normalized(path.read_bytes()))
    root = path.resolve().parent
    for module in local_modules(path):
        state.update(b"\0" + module.relative_to(root).as_posix().encode() + b"\0" + _normalized(module.read_bytes()))
    return state.hexdigest()[:FINGERPRINT_HEX]


def local_modules(entry: Path) -> list[Path]:
    """The modules of the entry's folder (and below) that it imports, directly or through one
    another, in the order of their paths: each ``import`` and ``from ... import`` statement,
    wherever it is, names files that exist there or it names none. A path is the one Python
    imports by, through any link in the folder (the entry's own is resolved, as Python resolves
    it for ``sys.path``)."""
    root = entry.resolve().parent
    found: set[Path] = set()
    pending = [entry.resolve()]
    while pending:
        path = pending.pop()
        for module in _imported_files(path, root):
            if module not in found and module != entry.resolve():
                found.add(module)
                pending.append(module)
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


def entry_fingerprint(job: Callable[..., Any]) -> str:
    """The running entry's fingerprint: bundled in an executable, else of the entry script's file
    and its local modules (each read once: the parser's ``--version`` and the run both show it)."""
    if getattr(sys, "frozen", False):
        return _bundled_fingerprint()
    main_file = _entry_file(job)
    return _script_fingerprint(main_file) if main_file else UNKNOWN


@functools.cache
def _bundled_fingerprint() -> str:
    try:
        return (Path(getattr(sys, "_MEIPASS", "")) / "jobsplit" / BUNDLED_NAME).read_text(encoding="ascii").strip() or UNKNOWN
    except OSError:
        return UNKNOWN  # built without `make exe`


@functools.cache
def _script_fingerprint(main_file: str) -> str:
    try:
        return file_fingerprint(Path(main_file))
    except OSError:
        return UNKNOWN


def _entry_file(job: Callable[..., Any]) -> str | None:
    """The entry script: the file of a job defined in it, else ``__main__``'s (a job imported
    from a module of the project). Under ``python -m cProfile entry.py`` (or ``profile``,
    ``trace``) ``__main__`` is the profiler and the script runs as a namespace of its own,
    which the job's globals are."""
    function = inspect.unwrap(getattr(job, "func", job))  # through functools.partial and wraps
    names = getattr(function, "__globals__", {})
    if names.get("__name__") == "__main__" and isinstance(names.get("__file__"), str):
        return str(names["__file__"])
    return getattr(sys.modules.get("__main__"), "__file__", None)


def main(argv: list[str]) -> None:
    """Print an entry script's fingerprint (``make exe`` bundles it)."""
    if len(argv) != 1:
        sys.exit("usage: fingerprint ENTRY.py")
    print(file_fingerprint(Path(argv[0])))
