"""Fixtures of the UI tests: a per-test artifacts folder under ``test-artifacts/`` (git-ignored)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from zerogex_pipeline_tests.ui.servers import ARTIFACTS_ROOT


@pytest.fixture
def artifacts_dir(request: pytest.FixtureRequest) -> Path:
    """``test-artifacts/<test name>/<UTC time>-<pid>/``: logs and screenshots stay there after the test.

    One folder per run, never emptied, so concurrent runs of the same test (several engineers on one
    checkout, or pytest-xdist) don't delete each other's logs.
    """
    path = ARTIFACTS_ROOT / request.node.name / f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.getpid()}"
    path.mkdir(parents=True)
    return path
