"""Shared fixtures: isolated settings (temp data dir), a temporary Dagster instance."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from hypothesis import settings as hypothesis_settings

from zerogex_pipeline.settings import Settings, load_settings
from zerogex_pipeline_tests.history import TEST_FIRST_DATE_ENV

# One throwaway PostgreSQL per session for every folder that needs one (storage, checks, alerts, ...).
pytest_plugins = ["zerogex_pipeline_tests.postgres_fixtures"]

# In CI, property tests replay the same examples on every run (no flaky first-time failures);
# locally they explore new examples each run.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI", "").lower() == "true":
    hypothesis_settings.load_profile("ci")


@pytest.fixture(autouse=True)
def pipeline_logger_restored() -> Iterator[None]:
    """A CLI call in a test sets the ``zerogex_pipeline`` logger's level (``LOG_LEVEL``); later tests get it back
    unset, so what they log at DEBUG reaches ``caplog`` whatever ran before them."""
    logger = logging.getLogger("zerogex_pipeline")
    level, handlers = logger.level, list(logger.handlers)
    yield
    logger.setLevel(level)
    logger.handlers[:] = handlers


@pytest.fixture(autouse=True)
def no_defs_state_storage_left_behind() -> Iterator[None]:
    """Each test starts and ends with no current Dagster definitions-state storage. A ``DagsterInstance`` used as a
    context manager sets one (a weak reference to itself) and resets it on exit; instances exited out of order leave
    an earlier one set, and once it is collected every later ``Definitions`` load fails with "Attempted to resolve
    undefined DagsterInstance weakref" (seen in CI, in tests far from the one that leaked it)."""
    from dagster._core.storage.defs_state.base import set_defs_state_storage

    with set_defs_state_storage(None):
        yield


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Default settings (simulated source, embedded store) with the data dir in a temp folder."""
    return load_settings({**TEST_FIRST_DATE_ENV, "ZEROGEX_DATA_DIR": str(tmp_path / "data")}, env_file=None)


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    """A throwaway Dagster instance (SQLite in a temp dir)."""
    with dg.instance_for_test() as inst:
        yield inst
