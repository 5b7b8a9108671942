"""The live screen in headless Chromium (Debian's /usr/bin/chromium driven by Playwright), as a trader sees it.

``zerogex dashboard`` runs as its own process (as under ``make ui``) on an embedded store holding 2024-06-12
and the morning of 2024-06-13 (materialized up to 12:05 ET by the real pipeline). The test checks that every
chart shows the stored numbers of the API, then, **without reloading the page**: live levels written by a fake
engine (``CaptureStore.write``) move the levels strip and the intraday chart, and a new stored snapshot (the
pipeline's 12:35 refresh of the day) moves the intraday chart, GEX by strike, the profile and the heatmap. It also
picks a past day and one expiration. Screenshots go to ``test-artifacts/<test>/<run>/``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from zerogex_pipeline import market_calendar
from zerogex_pipeline.cli.formatting import usd, usd_compact
from zerogex_pipeline.settings import Settings
from zerogex_pipeline_tests.clock import Clock, at
from zerogex_pipeline_tests.dashboard.conftest import (
    DAYS,
    free_port,
    live_row,
    materialize,
    small_settings,
    write_live,
)
from zerogex_pipeline_tests.ui.servers import in_ci

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DAY = DAYS[1]
TIMEOUT_MS = 60_000


def _missing(reason: str) -> None:
    if in_ci():
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


@contextlib.contextmanager
def dashboard_process(settings: Settings, log_path: Path) -> Iterator[str]:
    """``zerogex dashboard`` on a free port, in its own process; yields its base URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZEROGEX_", "TRADESTATION_"))}
    env.update(ZEROGEX_DATA_DIR=str(settings.data_dir), ZEROGEX_UNDERLYINGS="SPY", PYTHONUNBUFFERED="1")
    with log_path.open("wb") as log:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "zerogex"), "dashboard", "--port", str(port),
                                 "--poll-seconds", "0.5", "--access-log"],
                                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=settings.data_dir.parent)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                assert proc.poll() is None, f"dashboard exited:\n{log_path.read_text()[-3000:]}"
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{base}/api/v1/meta", timeout=2).status_code == 200:
                        break
                assert time.monotonic() < deadline, "dashboard did not answer within 120 s"
                time.sleep(0.3)
            yield base
        finally:
            proc.terminate()  # SIGTERM, as make ui does: must exit promptly with a page's stream open
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise AssertionError("zerogex dashboard did not exit within 15 s of SIGTERM") from None


def api(base: str, path: str) -> Any:
    response = httpx.get(f"{base}/api/v1/spy/{path}", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def chart(page: Any, element: str) -> Any:
    """The traces plotly drew in ``#element`` (x, y, z, name) and its axis titles."""
    return page.evaluate(
        """(id) => { const gd = document.getElementById(id);
             return { data: gd.data.map(t => ({ name: t.name, type: t.type, x: t.x, y: t.y, z: t.z || null })),
                      y: gd.layout.yaxis.title.text, dataset: Object.assign({}, gd.dataset) }; }""", element)


def scale_of(axis_title: str) -> float:
    return 1e9 if "$bn" in axis_title else 1e6


def wait_js(page: Any, condition: str, arg: Any = None) -> None:
    page.wait_for_function(condition, arg=arg, timeout=TIMEOUT_MS)


def check_cards(page: Any, levels: dict) -> None:
    text = {k: page.locator(f"#v-{k}").inner_text() for k in ("spot", "net", "zg", "cw", "pw", "mp")}
    assert text == {"spot": usd(levels["spot"]), "net": usd_compact(levels["net_gex"]),
                    "zg": usd(levels["zero_gamma"]) if levels["zero_gamma"] is not None else "none",
                    "cw": usd(levels["call_wall"], 0), "pw": usd(levels["put_wall"], 0),
                    "mp": usd(levels["max_pain_next"], 0)}


@pytest.mark.ui
@pytest.mark.timeout(900)
def test_the_screen_shows_the_stored_numbers_and_moves_by_itself(embedded_template, tmp_path, artifacts_dir,
                                                                 monkeypatch, instance) -> None:
    if not CHROMIUM.exists():
        _missing(f"no {CHROMIUM} (Debian package chromium: apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Python package playwright is not installed (pip install -e '.[dev]')")

    settings = small_settings(tmp_path / "data")
    settings.data_dir.mkdir(parents=True)
    shutil.copyfile(embedded_template, settings.duckdb_path)
    clock = Clock(at("2024-06-13 12:05"))
    monkeypatch.setattr(market_calendar, "utc_now", clock)
    materialize(settings, (DAY,), instance)  # the morning of 2024-06-13 only: 09:30..12:00

    profile_dir = Path(tempfile.mkdtemp(prefix="zerogex-chromium-"))
    problems: list[str] = []
    shots: list[Path] = []
    with dashboard_process(settings, artifacts_dir / "dashboard.log") as base, sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(profile_dir), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1600, "height": 1000})
        try:
            page = browser.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("request", lambda r: problems.append(f"remote request {r.url}")
                    if not r.url.startswith((base, "data:")) else None)

            def shot(name: str) -> None:
                path = artifacts_dir / name
                page.screenshot(path=str(path), full_page=True)
                shots.append(path)

            page.goto(f"{base}/spy")
            wait_js(page, "() => window.zerogex && Object.values(window.zerogex.renders).every(n => n > 0)")
            wait_js(page, "() => document.getElementById('push').classList.contains('on')")
            page.evaluate("window.__sameDocument = true")  # gone if the page ever reloads

            # ---- 1. every chart shows the stored numbers
            latest = api(base, "levels/latest")
            assert latest["source"] == "stored" and latest["levels"]["snapshot_ts"] == "2024-06-13T16:00:00Z"
            check_cards(page, latest["levels"])
            assert page.locator("#v-regime").inner_text().strip() in ("+ gamma", "− gamma")
            assert "stored" in page.locator("#provenance").inner_text()
            strikes = api(base, f"gex/strikes?date={DAY}")
            drawn = chart(page, "c-strikes")
            assert drawn["data"][0]["x"] == strikes["strikes"]
            s = scale_of(drawn["y"])
            for trace, key in ((0, "call_gex"), (1, "put_gex"), (2, "net_gex")):
                assert [round(v * s, 3) for v in drawn["data"][trace]["y"]] == [round(v, 3) for v in strikes[key]]
            assert "per 1% move" in drawn["y"] and drawn["dataset"]["snapshot"] == strikes["snapshot_ts"]
            profile = api(base, f"gex/profile?date={DAY}")
            drawn = chart(page, "c-profile")
            marker = next(t for t in drawn["data"] if t["name"].startswith("zero γ"))
            assert marker["x"] == [profile["zero_gamma"]] and profile["zero_gamma"] == latest["levels"]["zero_gamma"]
            assert drawn["data"][2]["x"] == profile["spot_levels"]
            intraday = api(base, f"levels/intraday?date={DAY}")["rows"]
            drawn = chart(page, "c-intraday")
            assert len(intraday) == 6 and drawn["data"][0]["y"] == [r["spot"] for r in intraday]
            assert drawn["data"][1]["y"] == [r["zero_gamma"] for r in intraday]
            heat = api(base, f"gex/heatmap?date={DAY}")
            drawn = chart(page, "c-heatmap")
            assert drawn["data"][0]["y"] == heat["strikes"] and len(drawn["data"][0]["z"][0]) == 6
            alerts = api(base, f"alerts?date={DAY}")["alerts"]
            assert page.locator("#alerts").get_attribute("data-count") == str(len(alerts)) and len(alerts) >= 1
            assert page.locator("#alerts tbody tr").count() == len(alerts)
            shot("1_stored_morning.png")

            # ---- 2. the live engine writes levels: the strip and the intraday chart move, no reload
            spot = round(latest["levels"]["spot"] + 0.37, 2)
            clock.now = at("2024-06-13 12:05:06")
            write_live(settings, live_row(DAY, at("2024-06-13 12:05:00"), spot - 0.1, zero_gamma=spot - 2.0,
                                          call_wall=latest["levels"]["call_wall"], put_wall=latest["levels"]["put_wall"]),
                       live_row(DAY, at("2024-06-13 12:05:05"), spot, zero_gamma=spot - 2.0,
                                call_wall=latest["levels"]["call_wall"], put_wall=latest["levels"]["put_wall"]))
            wait_js(page, "(v) => document.getElementById('v-spot').innerText === v", usd(spot))
            wait_js(page, "() => document.getElementById('c-intraday').dataset.liveRows === '2'")
            live = api(base, "levels/latest")
            assert live["source"] == "live" and live["levels"]["spot"] == spot
            check_cards(page, live["levels"])
            assert "live" in page.locator("#provenance").inner_text()
            assert "tradestation" in page.locator("#provenance").inner_text()
            drawn = chart(page, "c-intraday")
            assert next(t for t in drawn["data"] if t["name"] == "spot (live)")["y"] == [spot - 0.1, spot]
            shot("2_live_levels.png")

            # ---- 3. the pipeline stores the 12:30 snapshot: every chart of the day moves, no reload
            before = page.evaluate("Object.assign({}, window.zerogex.renders)")
            clock.now = at("2024-06-13 12:35")
            materialize(settings, (DAY,), instance)
            wait_js(page, "() => document.getElementById('c-intraday').dataset.rows === '7'")
            wait_js(page, "() => document.getElementById('c-strikes').dataset.snapshot === '2024-06-13T16:30:00Z'")
            wait_js(page, "() => document.getElementById('c-heatmap').dataset.snapshots === '7'")
            wait_js(page, "() => document.getElementById('c-profile').dataset.snapshot === '2024-06-13T16:30:00Z'")
            newest = api(base, "levels/latest")
            assert newest["source"] == "stored" and newest["levels"]["snapshot_ts"] == "2024-06-13T16:30:00Z"
            wait_js(page, "(v) => document.getElementById('v-spot').innerText === v", usd(newest["levels"]["spot"]))
            check_cards(page, newest["levels"])
            after = page.evaluate("window.zerogex.renders")
            assert all(after[k] > before[k] for k in ("strikes", "profile", "intraday", "heatmap", "levels"))
            strikes = api(base, f"gex/strikes?date={DAY}")
            drawn = chart(page, "c-strikes")
            assert [round(v * scale_of(drawn["y"]), 3) for v in drawn["data"][2]["y"]] == \
                [round(v, 3) for v in strikes["net_gex"]]
            assert page.evaluate("window.__sameDocument === true"), "the page reloaded"
            shot("3_new_stored_snapshot.png")

            # ---- 4. one expiration (the next one), then a past day shown the same way
            second = strikes["expirations"][1]
            page.locator(f"#expirations button[data-expiration='{second}']").click()
            wait_js(page, "(e) => document.getElementById('c-strikes').dataset.expiration === e", second)
            one = api(base, f"gex/strikes?date={DAY}&expiration={second}")
            drawn = chart(page, "c-strikes")
            assert [round(v * scale_of(drawn["y"]), 3) for v in drawn["data"][2]["y"]] == \
                [round(v, 3) for v in one["net_gex"]]
            shot("4_one_expiration.png")
            past = DAYS[0].isoformat()
            page.locator("#day").select_option(past)
            wait_js(page, "(d) => document.getElementById('c-intraday').dataset.rows === '14' && "
                          "(document.getElementById('c-strikes').dataset.snapshot || '').startsWith(d)", past)
            day_rows = api(base, f"levels/intraday?date={past}")["rows"]
            check_cards(page, day_rows[-1])
            assert page.locator("#t-intraday").inner_text().startswith(f"Intraday levels · {past}")
            shot("5_past_day.png")
            assert page.evaluate("window.__sameDocument === true")
        finally:
            browser.close()
            shutil.rmtree(profile_dir, ignore_errors=True)
    assert not problems, problems
    for path in shots:
        assert path.stat().st_size > 20_000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    print("dashboard screenshots:", *(str(p) for p in shots), sep="\n  ")
    log = (artifacts_dir / "dashboard.log").read_text()
    assert "GET /spy 200" in log and "GET /api/v1/spy/levels/latest 200" in log and "Traceback" not in log
