"""Shared fixtures: isolated settings (temp data dir), a temporary Dagster instance."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from zerogex_pipeline.settings import Settings, load_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Default settings (simulated source, embedded store) with the data dir in a temp folder."""
    return load_settings({"ZEROGEX_DATA_DIR": str(tmp_path / "data")}, env_file=None)


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    """A throwaway Dagster instance (SQLite in a temp dir)."""
    with dg.instance_for_test() as inst:
        yield inst
