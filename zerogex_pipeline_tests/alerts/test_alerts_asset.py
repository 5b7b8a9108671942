"""gex_alerts materialized on simulated days through DuckDB: each event announced once, backfills silent."""

import datetime as dt
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from zerogex_pipeline import market_calendar
from zerogex_pipeline.analytics.alerts import detect_events
from zerogex_pipeline.definitions import build_underlying_assets
from zerogex_pipeline.defs.alerts import build_alert_assets
from zerogex_pipeline.defs.resources import build_resources, storage_kind
from zerogex_pipeline.runner import materialize_day, materialize_days
from zerogex_pipeline.schemas import GEX_ALERTS, GEX_LEVELS
from zerogex_pipeline.settings import Settings, load_settings
from zerogex_pipeline.underlyings import resolve_underlying
from zerogex_pipeline_tests.clock import Clock, at
from zerogex_pipeline_tests.history import TEST_FIRST_DATE_ENV

SPY = resolve_underlying("SPY")
DAY = dt.date(2024, 6, 13)  # simulated: net GEX turns positive, spot crosses zero gamma and call walls
NEXT_DAY = dt.date(2024, 6, 14)
SECRET = "s3cr3t-token"


def make_settings(tmp_path: Path, webhook_url: str | None) -> Settings:
    env = {**TEST_FIRST_DATE_ENV, "ZEROGEX_DATA_DIR": str(tmp_path / "data"), "ZEROGEX_EXPIRATIONS": "1",
           "ZEROGEX_SNAPSHOT_MINUTES": "30"}
    if webhook_url:
        env["ZEROGEX_ALERT_WEBHOOK_URL"] = webhook_url
    return load_settings(env, env_file=None)


def run_alerts(
    settings: Settings, instance: dg.DagsterInstance, day: dt.date, last: dt.date | None = None
) -> dg.ExecuteInProcessResult:
    """The alerts of ``day``, or of the range ``day``..``last`` in one run (as the levels alerts sensor asks)."""
    assets = build_underlying_assets(SPY, settings)
    [alerts] = build_alert_assets(SPY, settings, storage_kind(settings), assets[-1])
    if last is None:
        return dg.materialize([*assets, alerts], selection=[alerts.key], partition_key=day.isoformat(),
                              instance=instance, resources=build_resources(settings))
    tags = {ASSET_PARTITION_RANGE_START_TAG: day.isoformat(), ASSET_PARTITION_RANGE_END_TAG: last.isoformat()}
    return dg.materialize([*assets, alerts], selection=[alerts.key], tags=tags, instance=instance,
                          resources=build_resources(settings))


def stored(settings: Settings, table: str) -> pd.DataFrame:
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        return conn.execute(f"SELECT * FROM spy.{table} ORDER BY session_date, snapshot_ts").df()


def warnings(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [e.user_message for e in instance.all_logs(run_id) if e.level == 30]  # logging.WARNING


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock(at("2024-06-13 12:05"))
    monkeypatch.setattr(market_calendar, "utc_now", c)
    return c


def test_todays_events_are_announced_once_across_rematerializations_and_refreshes(
    tmp_path, instance, webhook, clock
) -> None:
    settings = make_settings(tmp_path, f"{webhook.url}/hook?token={SECRET}")
    materialize_day(SPY, DAY, settings, instance)  # the session up to 12:05
    first = run_alerts(settings, instance, DAY)
    midday = GEX_ALERTS.conform(stored(settings, "gex_alerts"))
    assert len(midday) >= 2, "the simulated morning of 2024-06-13 has events"
    assert midday["announced_at"].notna().all()
    assert [p["event_id"] for _, p in webhook.posts] == list(midday["event_id"])
    assert all(path == f"/hook?token={SECRET}" for path, _ in webhook.posts)
    assert len([m for m in warnings(instance, first.run_id) if m.startswith("GEX alert:")]) == len(midday)

    again = run_alerts(settings, instance, DAY)  # a re-run of the same partition announces nothing
    assert len(webhook.posts) == len(midday)
    assert not [m for m in warnings(instance, again.run_id) if m.startswith("GEX alert:")]
    pd.testing.assert_frame_equal(GEX_ALERTS.conform(stored(settings, "gex_alerts")), midday)

    clock.now = at("2024-06-13 16:30")  # the day completes: the refresh recomputes every snapshot
    materialize_day(SPY, DAY, settings, instance)
    run_alerts(settings, instance, DAY)
    run_alerts(settings, instance, DAY)
    final = GEX_ALERTS.conform(stored(settings, "gex_alerts"))
    posted = [p["event_id"] for _, p in webhook.posts]
    assert len(posted) == len(set(posted)) == len(final) > len(midday)
    assert set(posted) == set(final["event_id"])
    kept = final.set_index("event_id").loc[midday["event_id"], "announced_at"]
    assert list(kept) == list(midday["announced_at"])  # earlier events kept their first announcement time
    levels = GEX_LEVELS.conform(stored(settings, "gex_levels"))
    assert list(final["event_id"]) == list(detect_events(levels)["event_id"])
    payload = webhook.posts[0][1]
    assert payload["session_date"] == "2024-06-13" and payload["text"] == payload["message"]
    assert {"kind", "direction", "spot", "level", "snapshot_ts"} <= set(payload)


def test_past_sessions_in_one_range_run_are_stored_per_day_and_never_announced(
    tmp_path, instance, webhook, clock
) -> None:
    settings = make_settings(tmp_path, webhook.url)
    clock.now = at("2024-06-20 12:00")
    days = [DAY, NEXT_DAY]
    materialize_days(SPY, days, settings, instance)
    charts = {}  # the range run draws the charts of its newest day only (a backfill's other days go without)
    for day in days:
        [event] = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(["spy", "gex_levels"]), asset_partitions=[day.isoformat()]),
            limit=1).records
        charts[day] = {"gamma_profile", "gex_by_strike", "intraday_levels"} & set(
            event.asset_materialization.metadata)  # type: ignore[union-attr]
    assert charts == {DAY: set(), NEXT_DAY: {"gamma_profile", "gex_by_strike", "intraday_levels"}}
    result = run_alerts(settings, instance, DAY, NEXT_DAY)  # one run over both days, as the sensor coalesces them
    assert result.success
    alerts = GEX_ALERTS.conform(stored(settings, "gex_alerts"))
    levels = GEX_LEVELS.conform(stored(settings, "gex_levels"))
    for day in days:
        of_day = alerts[alerts["session_date"].dt.date == day]
        expected = detect_events(levels[levels["session_date"].dt.date == day])
        assert len(of_day) > 0 and list(of_day["event_id"]) == list(expected["event_id"])
    assert alerts["announced_at"].isna().all()
    assert webhook.posts == []
    by_day = {str(m.partition): m.metadata for m in result.asset_materializations_for_node("spy__gex_alerts")}
    assert set(by_day) == {d.isoformat() for d in days}
    for day in days:
        meta = by_day[day.isoformat()]
        assert meta["rows"].value == int((alerts["session_date"].dt.date == day).sum())
        assert "past session" in meta["announcement_policy"].value
        assert meta["announced_this_run"].value == 0


def test_webhook_failures_are_logged_without_the_token_and_do_not_fail_the_run(
    tmp_path, instance, webhook, clock
) -> None:
    webhook.status = 500
    settings = make_settings(tmp_path, f"{webhook.url}/hook/{SECRET}?token={SECRET}")
    materialize_day(SPY, DAY, settings, instance)
    result = run_alerts(settings, instance, DAY)
    assert result.success
    logged = warnings(instance, result.run_id)
    failures = [m for m in logged if "webhook failed" in m]
    assert failures and all(f"HTTP 500 from {webhook.url}/…" in m for m in failures)
    every_message = " ".join(e.user_message for e in instance.all_logs(result.run_id))
    assert SECRET not in every_message
    meta = result.asset_materializations_for_node("spy__gex_alerts")[0].metadata
    assert meta["webhook_posts_failed"].value == len(failures) > 0
    assert SECRET not in str(meta)
    assert GEX_ALERTS.conform(stored(settings, "gex_alerts"))["announced_at"].notna().all()  # at most once
