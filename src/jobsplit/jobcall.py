"""The job function, checked before any worker starts: its signature against how workers call
it, and (under ``spawn``) that it can be sent to them.

A worker calls ``job(*args, random_obj, config, progress=progress)`` for a tuple job,
``job(**kwargs, random_obj=..., config=..., progress=...)`` for a dict job, and
``job(value, random_obj, config, progress=progress)`` for any other (see ``worker._JobRunner``);
``random_obj`` and ``config`` go by name, for every job, to a function with parameters of those
names (see injects_by_name).
A function written for ``map`` (``def job(x)``) would fail every job, one traceback at a time,
each pointing into jobsplit: refused here instead, in one sentence, before anything runs.
"""

from __future__ import annotations

import ast
import functools
import inspect
import multiprocessing.spawn
import sys
from collections.abc import Callable
from multiprocessing.reduction import ForkingPickler
from pathlib import Path
from typing import Any

from .errors import UserError
from .pool import call_args

INJECTED = ("random_obj", "config", "progress")
"""What every job gets after its own arguments, in this order (``progress`` by keyword)."""


def check_job_function(job: Callable[..., Any], sample: Any, where: str = "pool[0]") -> None:
    """Refuse a job function that cannot take the arguments jobsplit adds to ``sample`` (a job
    of the pool). A job whose own arguments do not fit the function is left to fail alone, as
    any bad job does: one the function cannot take, or one that fills the parameters named for
    jobsplit's arguments (too many arguments for a function written for jobsplit)."""
    _refuse_a_job_that_returns_before_running(job)
    try:
        signature = inspect.signature(job, follow_wrapped=False)  # a wrapper's own (*args, **kwargs) takes anything
    except (TypeError, ValueError):
        return  # no signature to read (some built-ins): the jobs themselves will tell
    args, kwargs = call_args(sample)
    try:
        own = signature.bind_partial(*args, **kwargs)
    except TypeError:
        return
    if not kwargs and any(name in INJECTED for name in own.arguments):
        return
    injected = object()
    by_name = bool(kwargs) or injects_by_name(job)
    try:
        if by_name:
            signature.bind(*args, **kwargs, random_obj=injected, config=injected, progress=injected)
        else:
            signature.bind(*args, injected, injected, progress=injected)
    except TypeError as exc:
        name = getattr(job, "__name__", type(job).__name__)
        spread = f"**{where}" if kwargs else f"*{where}"
        call = f"{name}({spread}, random_obj=..., config=..., progress=...)" if by_name else f"{name}({spread}, random_obj, config, progress=...)"
        raise UserError(
            f"the job function {name}{signature} cannot be called as jobsplit calls it: {call} fails ({exc}); a job function "
            f"takes the job's own arguments, then random_obj, config and progress, e.g. def job(x, y, random_obj, config, progress){_partial_hint(job)}"
        ) from None


def injects_by_name(job: Callable[..., Any]) -> bool:
    """Whether ``random_obj`` and ``config`` go to the job function by name: it has parameters of
    those names that can take them so (a decorated function's are its inner function's). By
    position, a parameter with a default before them took ``random_obj`` whenever a job left it
    out (``def job(x, y=5, random_obj=None, config=None, ...)``: y got the random object,
    random_obj the config), and a function naming them in the other order got them swapped,
    silently. A function whose parameters have other names gets them by position."""
    try:
        parameters = inspect.signature(job).parameters
    except (TypeError, ValueError):
        return False
    by_name = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return all(name in parameters and parameters[name].kind in by_name for name in INJECTED[:2])


def _refuse_a_job_that_returns_before_running(job: Callable[..., Any]) -> None:
    """A generator function (``yield``) or an ``async def`` returns at once, having run none of
    its body: every job would fail on its result's shape, with nothing computed."""
    function = job
    while isinstance(function, functools.partial):
        function = function.func
    name = getattr(function, "__name__", type(function).__name__)
    if inspect.isasyncgenfunction(job) or inspect.iscoroutinefunction(job):
        raise UserError(f"the job function {name} is defined with async def, so calling it runs nothing; define it with def, running its async code with asyncio.run(...) inside")
    if inspect.isgeneratorfunction(job):
        raise UserError(f"the job function {name} uses yield, so calling it runs nothing; return the job's result instead (the values of its result columns)")


def _partial_hint(job: Callable[..., Any]) -> str:
    """What went wrong with a ``functools.partial`` that binds keywords: Python makes the
    parameters after the first one it binds keyword-only, so random_obj and config can no
    longer come by position."""
    if not isinstance(job, functools.partial) or not job.keywords:
        return ""
    bound = ", ".join(f"{key}=..." for key in job.keywords)
    return f" (functools.partial binding {bound} makes the parameters after it keyword-only: define the job with def, calling {getattr(job.func, '__name__', 'the function')}(..., {bound}) inside)"


def check_sendable(job: Callable[..., Any], start_method: str) -> None:
    """Workers that do not fork get the job function pickled, which names it by module and
    qualified name: a lambda, or a function defined inside another, cannot be sent; nor can one
    of the entry that the workers' copy of the entry lacks (see _missing_in_workers)."""
    if start_method == "fork":
        return
    name = getattr(job, "__qualname__", type(job).__name__)
    try:
        ForkingPickler.dumps(job)
    except Exception as exc:  # noqa: BLE001 - whatever pickling raises, the function cannot travel
        raise UserError(
            f"the job function {name} cannot be sent to workers started by {start_method} ({type(exc).__name__}: {exc}); "
            "define it with def at the top level of the entry file (not a lambda, nor inside another function), or use --start-method fork"
        ) from None
    if (why := _missing_in_workers(job)) is not None:
        raise UserError(f"workers started by {start_method} would not find the job function {name}: {why}, or use --start-method fork")


def _missing_in_workers(job: Callable[..., Any]) -> str | None:
    """Why a job function of the entry's would be missing where ``spawn`` unpickles it, if it
    would: a worker makes its ``__main__`` from the entry's file (or module) again, as a module,
    so without what ``if __name__ == "__main__":`` defines, and not at all for a package's
    ``__main__``, ``python -c`` or standard input. Each such worker died with a traceback, and
    the run blamed the entry's top-level code."""
    if not inspect.isfunction(job) or job.__module__ != "__main__" or getattr(sys, "frozen", False):
        return None
    main = sys.modules.get("__main__")
    prepared = multiprocessing.spawn.get_preparation_data("jobsplit")
    module, path = prepared.get("init_main_from_name"), prepared.get("init_main_from_path")
    if _found_in(main, job.__qualname__) is not job or not (path or (module and not module.endswith(".__main__"))):
        return (
            "they make the entry's module from its file again, and this entry runs without one they can import (python -m PACKAGE, "
            "python -c, standard input, a profiler); put the job in a module of its own and import it"
        )
    file = getattr(main, "__file__", None)  # not the job's globals: a decorator's wrapper has its own module's
    if isinstance(file, str) and not _bound_outside_main_guard(Path(file), job.__qualname__.split(".")[0]):  # the function, or its class
        return f'it is defined under `if __name__ == "__main__":`, which they do not run; define it at the top level of {file}'
    return None


def _found_in(module: Any, qualname: str) -> Any:
    """What ``module.<qualname>`` names, dotted as pickle follows it (a static method
    ``Jobs.run``); None if nothing."""
    found = module
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return found


def _bound_outside_main_guard(entry: Path, name: str) -> bool:
    """Whether the entry binds ``name`` where a spawned worker's copy of it does: anywhere but
    under a top-level ``if __name__ == "__main__":``. Counted generously (a name bound inside a
    function counts too), so that a doubt never refuses a run."""
    try:
        body = ast.parse(entry.read_bytes()).body
    except (OSError, SyntaxError, ValueError):
        return True  # nothing to tell
    kept = [node for top in body for node in (top.orelse if isinstance(top, ast.If) and _is_main_guard(top.test) else [top])]
    for node in (inner for top in kept for inner in ast.walk(top)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return True
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id == name:
            return True
        if isinstance(node, (ast.Import, ast.ImportFrom)) and any((alias.asname or alias.name).split(".")[0] == name for alias in node.names):
            return True
    return False


def _is_main_guard(test: ast.expr) -> bool:
    """``__name__ == "__main__"`` (either way round)."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    return {side.id for side in sides if isinstance(side, ast.Name)} == {"__name__"} and any(isinstance(side, ast.Constant) and side.value == "__main__" for side in sides)
