"""Fixtures of the UI tests: a per-test artifacts folder under ``test-artifacts/`` (git-ignored)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from zerogex_pipeline_tests.ui.servers import ARTIFACTS_ROOT


@pytest.fixture
def artifacts_dir(request: pytest.FixtureRequest) -> Path:
    """``test-artifacts/<test name>/``, emptied first; logs and screenshots stay there after the test."""
    path = ARTIFACTS_ROOT / request.node.name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path
