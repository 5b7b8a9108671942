"""The levels API on both stores: the same numbers as ``zerogex levels`` and the stored tables, and clear 4xx.

Every test runs on the embedded DuckDB store and on PostgreSQL (``store_settings``), against days the real
pipeline materialized (see ``conftest.py``).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from zerogex_pipeline import market_calendar
from zerogex_pipeline.analytics.alerts import detect_events
from zerogex_pipeline.cli import main
from zerogex_pipeline.cli.levels_command import CONVENTION as CLI_CONVENTION
from zerogex_pipeline.cli.levels_command import snapshot_levels_table
from zerogex_pipeline.dashboard import models
from zerogex_pipeline.dashboard.app import create_app
from zerogex_pipeline.schemas import GEX_LEVELS
from zerogex_pipeline.settings import Settings
from zerogex_pipeline.storage.levels_reader import intraday_levels, latest_levels
from zerogex_pipeline_tests.clock import Clock, at
from zerogex_pipeline_tests.dashboard.conftest import ALERT_DAY, DAYS, SPY, live_row, write_live

API = "/api/v1/spy"


def client(settings: Settings) -> TestClient:
    return TestClient(create_app(settings), base_url="http://127.0.0.1")


def get(c: TestClient, path: str, model: type[BaseModel] | None = None, status: int = 200) -> dict:
    response = c.get(path)
    assert response.status_code == status, f"{path}: {response.status_code} {response.text[:500]}"
    body = response.json()
    if model is not None:
        model.model_validate(body)  # the OpenAPI document tells the truth
    return body


def cli_output(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, settings: Settings,
               *args: str) -> str:
    monkeypatch.setenv("ZEROGEX_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("ZEROGEX_UNDERLYINGS", "SPY")
    if settings.database_url:
        monkeypatch.setenv("ZEROGEX_DATABASE_URL", settings.database_url)
    else:
        monkeypatch.delenv("ZEROGEX_DATABASE_URL", raising=False)
    capsys.readouterr()
    assert main(["levels", *args]) == 0
    return capsys.readouterr().out


def as_levels_frame(rows: list[dict]) -> pd.DataFrame:
    """API level rows back into a ``gex_levels`` frame (JSON columns re-encoded as the store keeps them)."""
    frame = pd.DataFrame(rows)
    for name in ("max_pain", "iv_sources"):
        frame[name] = [None if v is None else json.dumps(v, sort_keys=True) for v in frame[name]]
    frame["expiration_list"] = [json.dumps(v) for v in frame["expiration_list"]]  # a list: order kept
    return GEX_LEVELS.conform(frame)


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock(at("2024-06-14 10:00"))  # the next morning: nothing live yet
    monkeypatch.setattr(market_calendar, "utc_now", c)
    return c


def test_latest_and_intraday_are_the_numbers_of_zerogex_levels(store_settings, capsys, monkeypatch) -> None:
    c = client(store_settings)
    latest = get(c, f"{API}/levels/latest", models.LatestLevels)
    assert latest["source"] == "stored" and latest["table"] == "gex_levels" and latest["feed"] == "simulated"
    assert "long calls (+), short puts (-)" in latest["convention"] and "USD per 1% move" in latest["units"]["gex"]
    stored = latest_levels(store_settings, SPY)  # what `zerogex levels --latest` reads
    api_frame = as_levels_frame([latest["levels"]])
    pd.testing.assert_frame_equal(api_frame, stored, check_exact=True)
    assert latest["regime"] == ("positive" if stored["net_gex"].iloc[0] > 0 else "negative")
    assert latest["age_s"] == (at("2024-06-14 10:00") - stored["snapshot_ts"].iloc[0]).total_seconds()

    printed = cli_output(capsys, monkeypatch, store_settings, "--latest")
    title = f"SPY latest GEX levels ({CLI_CONVENTION})"
    assert printed.strip() == snapshot_levels_table(api_frame, title).strip()

    for day in DAYS:
        body = get(c, f"{API}/levels/intraday?date={day}", models.IntradayLevels)
        frame = as_levels_frame(body["rows"])
        pd.testing.assert_frame_equal(frame, intraday_levels(store_settings, SPY, day), check_exact=True)
        assert len(frame) == 14  # 09:30..16:00 every 30 minutes
        printed = cli_output(capsys, monkeypatch, store_settings, "--intraday", day.isoformat())
        title = f"SPY GEX levels on {day}, by snapshot ({CLI_CONVENTION})"
        assert printed.strip() == snapshot_levels_table(frame, title).strip()

    some = get(c, f"{API}/levels/intraday?date={DAYS[0]}&fields=snapshot_ts,spot&since=2024-06-12T15:00")
    assert [set(r) for r in some["rows"]] == [{"snapshot_ts", "spot"}] * 2  # 15:30 and 16:00 ET
    dates = get(c, f"{API}/dates", models.Dates)
    assert dates == {"underlying": "SPY", "dates": [d.isoformat() for d in reversed(DAYS)], "live_date": None}


def test_strikes_expirations_and_profile_agree_with_the_stored_levels(store_settings) -> None:
    c = client(store_settings)
    day = DAYS[1]
    levels = intraday_levels(store_settings, SPY, day)
    for i in (0, 6, len(levels) - 1):  # the open, midday (at= picks the snapshot), the close
        row = levels.iloc[i]
        ts = row["snapshot_ts"]
        at_param = f"&at={ts.isoformat().replace('+00:00', 'Z')}"
        strikes = get(c, f"{API}/gex/strikes?date={day}{at_param}", models.StrikeGex)
        assert strikes["snapshot_ts"] == ts.isoformat().replace("+00:00", "Z") and strikes["expiration"] == "all"
        k, call, put, net = (np.array(strikes[n], dtype=float) for n in ("strikes", "call_gex", "put_gex", "net_gex"))
        assert np.all(np.diff(k) > 0) and np.all(call >= 0) and np.all(put <= 0)
        np.testing.assert_allclose(net, call + put, rtol=0, atol=1e-6)
        assert net.sum() == pytest.approx(row["net_gex"], rel=1e-9)
        assert call.sum() == pytest.approx(row["call_gex"], rel=1e-9)
        # the walls marked on the chart are the stored ones, and the extremes of their side of spot
        assert strikes["levels"]["call_wall"] == row["call_wall"] == strikes["selection"]["call_wall"]
        assert strikes["levels"]["put_wall"] == row["put_wall"] == strikes["selection"]["put_wall"]
        above, below = k >= row["spot"], k <= row["spot"]
        assert k[above][np.argmax(call[above])] == row["call_wall"]
        assert k[below][np.argmin(put[below])] == row["put_wall"]

        exps = get(c, f"{API}/gex/expirations?date={day}{at_param}", models.ExpirationsGex)
        items = exps["by_expiration"]
        assert [e["expiration"] for e in items] == strikes["expirations"] and len(items) == 2
        assert sum(e["net_gex"] or 0.0 for e in items) == pytest.approx(row["net_gex"], rel=1e-9)
        pains = {e["expiration"]: e["max_pain"] for e in items if e["max_pain"] is not None}
        assert pains == json.loads(row["max_pain"])
        assert items[0]["days_to_expiration"] >= 0

        profile = get(c, f"{API}/gex/profile?date={day}{at_param}", models.GammaProfile)
        assert profile["zero_gamma"] == pytest.approx(row["zero_gamma"], rel=1e-12)
        assert profile["zero_gamma_raw"] == pytest.approx(row["zero_gamma_raw"], rel=1e-12)
        assert profile["net_gex_at_spot"] == pytest.approx(row["net_gex_at_spot"], rel=1e-12)
        levels_grid = np.array(profile["spot_levels"])
        assert levels_grid[len(levels_grid) // 2] == pytest.approx(row["spot"])  # spot is the grid's centre

    # at the close the day's own expiration has settled: listed as settled, and not selectable
    assert [e["settled"] for e in items] == [True, False] and items[0]["net_gex"] is None
    body = get(c, f"{API}/gex/strikes?date={day}&expiration=0dte", models.ErrorBody, status=404)
    assert "expiration 2024-06-13 has settled by the snapshot 2024-06-13T20:00:00Z" in body["error"]
    # one expiration alone at midday: its own strikes and totals
    midday = levels.iloc[6]["snapshot_ts"].isoformat().replace("+00:00", "Z")
    exps = get(c, f"{API}/gex/expirations?date={day}&at={midday}")["by_expiration"]
    first = exps[0]["expiration"]
    one = get(c, f"{API}/gex/strikes?date={day}&at={midday}&expiration={first}", models.StrikeGex)
    zero_dte = get(c, f"{API}/gex/strikes?at={midday}&expiration=0dte", models.StrikeGex)
    assert one["expiration"] == first == day.isoformat() and zero_dte["net_gex"] == one["net_gex"]
    assert sum(one["net_gex"]) == pytest.approx(exps[0]["net_gex"], rel=1e-9)
    assert one["selection"]["max_pain"] == exps[0]["max_pain"]
    assert one["levels"] == strikes["levels"] or one["snapshot_ts"] == midday  # published levels of that snapshot


def test_heatmap_and_alerts(store_settings) -> None:
    c = client(store_settings)
    day = ALERT_DAY
    heat = get(c, f"{API}/gex/heatmap?date={day}", models.Heatmap)
    levels = intraday_levels(store_settings, SPY, day)
    assert heat["snapshot_ts"] == [t.isoformat().replace("+00:00", "Z") for t in levels["snapshot_ts"]]
    assert heat["spot"] == levels["spot"].tolist()
    grid = np.array([[np.nan if v is None else v for v in row] for row in heat["net_gex"]])
    assert grid.shape == (len(heat["strikes"]), len(levels))
    np.testing.assert_allclose(np.nansum(grid, axis=0), levels["net_gex"].to_numpy(), rtol=1e-9)
    last = get(c, f"{API}/gex/strikes?date={day}")
    column = dict(zip(heat["strikes"], grid[:, -1], strict=True))
    np.testing.assert_allclose([column[k] for k in last["strikes"]], last["net_gex"], rtol=1e-9, atol=1e-3)
    zero_dte = get(c, f"{API}/gex/heatmap?date={day}&expiration=0dte")
    assert zero_dte["expiration"] == day.isoformat() and zero_dte["snapshot_ts"] == heat["snapshot_ts"]

    alerts = get(c, f"{API}/alerts?date={day}", models.Alerts)["alerts"]
    expected = detect_events(levels)
    assert [a["event_id"] for a in alerts] == list(expected["event_id"]) and len(alerts) >= 2
    assert {a["kind"] for a in alerts} <= {"zero_gamma_cross", "call_wall_breach", "put_wall_breach",
                                          "net_gex_sign_change"}
    assert all(a["announced_at"] is None for a in alerts)  # a past session is stored, never announced


def test_live_levels_win_when_newer(store_settings, clock) -> None:
    c = client(store_settings)
    assert get(c, f"{API}/levels/latest?source=live", status=404)["error"].startswith("spy.live_levels: no levels")
    today = pd.Timestamp("2024-06-14").date()
    first, second = at("2024-06-14 09:45:00"), at("2024-06-14 09:45:05")
    write_live(store_settings, live_row(today, first, 541.25, zero_gamma=543.5, call_wall=545.0, put_wall=540.0),
               live_row(today, second, 541.5, net_gex=1.5e9, zero_gamma=540.25, call_wall=545.0, put_wall=540.0))
    clock.now = at("2024-06-14 09:45:07")
    latest = get(c, f"{API}/levels/latest", models.LatestLevels)
    assert latest["source"] == "live" and latest["table"] == "live_levels" and latest["feed"] == "tradestation"
    assert latest["levels"]["spot"] == 541.5 and latest["levels"]["snapshot_ts"] == "2024-06-14T13:45:05Z"
    assert latest["age_s"] == pytest.approx(2.0) and latest["regime"] == "positive"
    assert latest["spot_vs_zero_gamma_pct"] == pytest.approx((541.5 - 540.25) / 541.5 * 100)
    assert latest["levels"]["expiration_list"] == ["2024-06-14"] and latest["levels"]["compute_ms"] == 4.2
    stored = get(c, f"{API}/levels/latest?source=stored")
    assert stored["source"] == "stored" and stored["levels"]["session_date"] == DAYS[-1].isoformat()
    live = get(c, f"{API}/levels/intraday?date=2024-06-14&source=live", models.IntradayLevels)
    assert [r["spot"] for r in live["rows"]] == [541.25, 541.5]
    tail = get(c, f"{API}/levels/intraday?date=2024-06-14&source=live&since=2024-06-14T13:45:00Z&fields=spot")
    assert tail["rows"] == [{"spot": 541.5}]
    assert get(c, f"{API}/dates")["live_date"] == "2024-06-14"


BAD = [
    ("/api/v1/xyz/levels/latest", 404, "underlying 'xyz': expected one of SPY"),
    ("/api/v1/qqq/levels/latest", 404, "underlying 'qqq': not tracked here"),
    (f"{API}/levels/latest?source=both", 400, "source 'both': expected one of auto, live, stored"),
    (f"{API}/levels/latest?sorce=live", 400, "unknown parameter 'sorce'; this address takes: source"),
    (f"{API}/levels/intraday?date=2024-13-01", 400, "date '2024-13-01': expected a date YYYY-MM-DD"),
    (f"{API}/levels/intraday?date=June", 400, "date 'June': expected a date YYYY-MM-DD"),
    (f"{API}/levels/intraday?date=2024-06-15", 404, "nothing stored for 2024-06-15; stored days: 2024-06-12..2024-06-13"),
    (f"{API}/levels/intraday?fields=spot,gamma", 400, "fields 'spot,gamma': unknown column(s) gamma"),
    (f"{API}/levels/intraday?since=yesterday", 400, "since 'yesterday': expected an ISO 8601 time"),
    (f"{API}/gex/strikes?date=2024-06-13&expiration=2024-07-19", 404, "expiration 2024-07-19 is not in this snapshot"),
    (f"{API}/gex/strikes?expiration=soon", 400, "expiration 'soon': expected a date YYYY-MM-DD"),
    (f"{API}/gex/strikes?at=2024-06-13T09:00", 404, "no snapshot on 2024-06-13 at or before 2024-06-13T13:00:00Z"),
    (f"{API}/gex/profile?at=noon", 400, "at 'noon': expected an ISO 8601 time"),
    (f"{API}/gex/heatmap?date=2024-06-13&expiration=2024-07-19", 404, "expiration 2024-07-19 not stored on 2024-06-13"),
    (f"{API}/alerts?date=2024/06/13", 400, "date '2024/06/13': expected a date YYYY-MM-DD"),
    ("/api/v1/nothing/here/at/all", 404, "no such address"),
]


@pytest.mark.parametrize(("path", "status", "message"), BAD, ids=[b[0].split("/api/v1/")[1][:40] for b in BAD])
def test_bad_parameters_are_clear_4xx(embedded_settings, path: str, status: int, message: str) -> None:
    body = get(client(embedded_settings), path, models.ErrorBody, status=status)
    assert message in body["error"], body
    assert "\n" not in body["error"] and len(body["error"]) < 1000


@pytest.mark.postgres
def test_bad_parameters_on_postgres(postgres_settings) -> None:
    c = client(postgres_settings)
    for path, status, message in BAD[4:10]:
        assert message in get(c, path, models.ErrorBody, status=status)["error"]


def test_an_unreachable_store_is_a_503_without_the_password(tmp_path) -> None:
    from zerogex_pipeline_tests.dashboard.conftest import small_settings

    broken = small_settings(tmp_path / "data", "postgresql://reader:s3cretpw@127.0.0.1:1/zerogex")
    body = get(client(broken), f"{API}/levels/latest", models.ErrorBody, status=503)
    assert "cannot connect" in body["error"] and "s3cretpw" not in body["error"] and "***" in body["error"]


def test_a_fresh_machine_and_an_unknown_store_are_not_500s(tmp_path) -> None:
    from zerogex_pipeline_tests.dashboard.conftest import small_settings

    c = client(small_settings(tmp_path / "empty"))  # nothing materialized, no live engine
    for path in ("levels/latest", "levels/intraday", "gex/strikes", "gex/heatmap", "alerts"):
        body = get(c, f"{API}/{path}", status=404)
        assert "no levels stored yet" in body["error"]
    assert get(c, f"{API}/dates") == {"underlying": "SPY", "dates": [], "live_date": None}


def test_openapi_document_and_docs_page(embedded_settings) -> None:
    c = client(embedded_settings)
    doc = c.get("/api/v1/openapi.json").json()
    paths = set(doc["paths"])
    for p in ("levels/latest", "levels/intraday", "gex/strikes", "gex/expirations", "gex/profile", "gex/heatmap",
              "alerts", "dates", "events"):
        assert f"/api/v1/{{underlying}}/{p}" in paths
    assert all(p.startswith("/api/v1/") for p in paths)
    assert "LatestLevels" in doc["components"]["schemas"]
    page = c.get("/docs").text
    assert "/static/swagger/swagger-ui-bundle.js" in page and "cdn" not in page.lower()
    assert c.get("/static/swagger/swagger-ui-bundle.js").status_code == 200
    js = c.get("/static/plotly.min.js")
    assert js.status_code == 200 and b"plotly.js" in js.content[:200]
    screen = c.get("/spy")
    assert screen.status_code == 200 and "http" not in screen.text.replace("http-equiv", "")  # nothing remote


def test_the_embedded_store_is_reread_exactly_when_a_file_changed(embedded_settings) -> None:
    from zerogex_pipeline.storage.dashboard_queries import CacheMiss, DashboardStore

    store = DashboardStore(embedded_settings)
    with pytest.raises(CacheMiss), store.cache_only():  # nothing kept yet: a read is needed
        store.latest_levels(SPY)
    first = store.latest_levels(SPY)
    with store.cache_only():  # unchanged files: the kept result, no read
        assert store.latest_levels(SPY) is first
        assert store.latest_live_levels(SPY).empty  # no live file at all
    write_live(embedded_settings, live_row(DAYS[1], at("2024-06-13 16:00:05"), 550.0))
    with pytest.raises(CacheMiss), store.cache_only():  # the live file appeared: re-read
        store.latest_live_levels(SPY)
    assert store.latest_live_levels(SPY)["spot"].tolist() == [550.0]
    with store.cache_only():
        assert store.latest_levels(SPY) is first  # the stored file did not change
