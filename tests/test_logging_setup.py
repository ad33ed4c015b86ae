"""capture.LoggingSetup in this process: what a job changed in logging and warnings is put
back between two jobs (whole runs: test_hardening_ops.py)."""

from __future__ import annotations

import logging
import warnings

import pytest

from jobsplit.capture import LoggingSetup


@pytest.fixture
def setup():
    """The set-up as a worker would note it, and this process's logging as it was after."""
    root, kept_handlers, kept_level = logging.getLogger(), logging.getLogger().handlers[:], logging.getLogger().level
    with warnings.catch_warnings():
        yield LoggingSetup()
    root.handlers[:], root.level = kept_handlers, kept_level


def test_a_handler_a_job_added_is_closed_and_removed(setup, tmp_path):
    level = logging.getLogger().level
    handler = logging.FileHandler(tmp_path / "job.log")
    logging.getLogger("experiment").addHandler(handler)
    logging.getLogger().setLevel(logging.DEBUG)
    setup.restore()
    assert logging.getLogger("experiment").handlers == [] and handler.stream is None  # closed, as at a program's end
    assert logging.getLogger().level == level


def test_handlers_a_job_left_as_no_list_are_put_back_without_failing(setup):
    logging.getLogger("lib").handlers = ()  # type: ignore[assignment]
    logging.getLogger("other").handlers = None  # type: ignore[assignment]
    logging.getLogger("made").addHandler(logging.NullHandler())
    setup.restore()
    assert [logging.getLogger(name).handlers for name in ("lib", "other", "made")] == [[], [], []]


def test_warnings_a_job_made_errors_are_warnings_again(setup):
    warnings.simplefilter("error")
    setup.restore()
    with pytest.warns(UserWarning):
        warnings.warn("gentle", UserWarning, stacklevel=1)
