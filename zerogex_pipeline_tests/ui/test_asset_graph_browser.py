"""The Dagster UI's global asset graph, loaded in headless Chromium (Debian's ``/usr/bin/chromium``).

``dagster-webserver -w workspace.yaml`` runs on a free port with a temporary instance and store (no
daemon). Playwright drives the system Chromium (``playwright install`` is never run): it opens
``/asset-groups`` (Global asset lineage), dismisses the first-visit newsletter dialog, expands every
asset group (the UI's ⌥E shortcut), waits until each of SPY's four core assets is a node of the
rendered graph, saves a PNG screenshot to ``test-artifacts/<test>/asset_graph.png``, and checks the
names in the DOM. The viewport is 2560x1440 so the graph's zoom-to-fit shows full node names (at small
zooms the UI abbreviates them, e.g. ``option_…_snapshots``).

Without Chromium or Playwright the test skips with the reason, and fails when ``CI=true``.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from zerogex_pipeline_tests.ui.servers import (
    dagster_env,
    free_port,
    in_ci,
    make_dagster_home,
    start_webserver,
    wait_for_location,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CORE_ASSETS = ("underlying_bars", "option_chain_snapshots", "gex_surface", "gex_levels")
CORE_GROUPS = ("spy_market_data", "spy_options", "spy_gex")
VIEWPORT_WIDTH, VIEWPORT_HEIGHT = 2560, 1440
PAGE_TIMEOUT_MS = 120_000
NUX_WAIT_MS = 10_000


def _missing(reason: str) -> None:
    if in_ci():
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


@pytest.fixture
def webserver_port(tmp_path: Path, artifacts_dir: Path) -> Iterator[int]:
    env = dagster_env(make_dagster_home(tmp_path / "dagster_home"), tmp_path / "data")
    port = free_port()
    server = start_webserver(env, artifacts_dir, port)
    try:
        wait_for_location(port, server)
        yield port
    finally:
        server.stop()


@pytest.mark.ui
@pytest.mark.timeout(900)
def test_global_asset_graph_shows_core_assets(webserver_port: int, artifacts_dir: Path) -> None:
    if not CHROMIUM.exists():
        _missing(f"no {CHROMIUM} (Debian package chromium: apt-get install -y chromium)")
    try:
        from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        _missing("Python package playwright is not installed (pip install -e '.[dev]')")

    user_data_dir = Path(tempfile.mkdtemp(prefix="zerogex-chromium-"))
    screenshot = artifacts_dir / "asset_graph.png"
    started = time.monotonic()
    try:
        with sync_playwright() as pw:
            # A persistent context is how Playwright takes a --user-data-dir: a fresh profile per test.
            browser = pw.chromium.launch_persistent_context(
                str(user_data_dir),
                executable_path=str(CHROMIUM),
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": VIEWPORT_WIDTH, "height": VIEWPORT_HEIGHT},
            )
            try:
                page = browser.new_page()
                page.set_default_timeout(PAGE_TIMEOUT_MS)
                page.goto(f"http://127.0.0.1:{webserver_port}/asset-groups", wait_until="networkidle")
                graph_nodes = page.locator("svg foreignObject")
                for group in CORE_GROUPS:  # collapsed groups are drawn first
                    graph_nodes.get_by_text(group, exact=True).first.wait_for()
                # A fresh instance shows the first-visit community/newsletter dialog once.
                with contextlib.suppress(PlaywrightTimeoutError):
                    page.get_by_role("button", name="Skip").click(timeout=NUX_WAIT_MS)
                expect(page.get_by_role("dialog")).to_have_count(0)
                page.keyboard.press("Alt+KeyE")  # "Expand all groups"
                for name in CORE_ASSETS:
                    graph_nodes.get_by_text(name, exact=True).first.wait_for(state="visible")
                # Nodes show "Loading..." until their materialization status arrives.
                expect(graph_nodes.filter(has_text="Loading")).to_have_count(0, timeout=PAGE_TIMEOUT_MS)
                page.wait_for_load_state("networkidle")
                page.screenshot(path=str(screenshot), full_page=True)
                found = {name: graph_nodes.get_by_text(name, exact=True).count() for name in CORE_ASSETS}
            finally:
                browser.close()
    finally:
        shutil.rmtree(user_data_dir, ignore_errors=True)
    elapsed = time.monotonic() - started

    assert found == dict.fromkeys(CORE_ASSETS, 1), f"asset-graph nodes named like each core asset: {found}"
    assert screenshot.stat().st_size > 10_000, f"{screenshot}: {screenshot.stat().st_size} bytes"
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{screenshot} is not a PNG"
    print(f"asset graph screenshot: {screenshot} ({screenshot.stat().st_size} bytes), browser {elapsed:.1f}s")
