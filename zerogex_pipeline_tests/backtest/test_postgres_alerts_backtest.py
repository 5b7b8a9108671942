"""gex_alerts (with its ledger) and gex_regime_backtest through the PostgreSQL store."""

import datetime as dt

import dagster as dg
import pandas as pd
import pytest

from zerogex_pipeline import market_calendar
from zerogex_pipeline.definitions import build_underlying_assets
from zerogex_pipeline.defs.alerts import build_alert_assets
from zerogex_pipeline.defs.backtest import build_regime_backtest
from zerogex_pipeline.defs.resources import build_resources, storage_kind
from zerogex_pipeline.runner import materialize_day
from zerogex_pipeline.schemas import GEX_ALERTS, GEX_REGIME_BACKTEST
from zerogex_pipeline.settings import load_settings
from zerogex_pipeline.storage.postgres_io_manager import open_connection, read_frame
from zerogex_pipeline.storage.postgres_migrations import schema_drift
from zerogex_pipeline.underlyings import resolve_underlying
from zerogex_pipeline_tests.history import TEST_FIRST_DATE_ENV

pytestmark = pytest.mark.postgres

SPY = resolve_underlying("SPY")
DAYS = [dt.date(2024, 6, 12), dt.date(2024, 6, 13)]


def test_alerts_and_backtest_on_postgres(pg_url, tmp_path, instance, monkeypatch) -> None:
    monkeypatch.setattr(market_calendar, "utc_now", lambda: pd.Timestamp("2024-06-13 16:30", tz="America/New_York"))
    settings = load_settings({**TEST_FIRST_DATE_ENV, "ZEROGEX_DATABASE_URL": pg_url, "ZEROGEX_DATA_DIR": str(tmp_path),
                              "ZEROGEX_EXPIRATIONS": "1", "ZEROGEX_SNAPSHOT_MINUTES": "30"}, env_file=None)
    for day in DAYS:
        materialize_day(SPY, day, settings, instance)
    assets = build_underlying_assets(SPY, settings)
    kind = storage_kind(settings)
    [alerts] = build_alert_assets(SPY, settings, kind, assets[-1])
    backtest = build_regime_backtest(SPY, settings, kind, assets[0], assets[-1])
    everything = [*assets, alerts, backtest]
    resources = build_resources(settings)

    def run(asset: dg.AssetsDefinition, partition: str | None = None) -> dg.ExecuteInProcessResult:
        return dg.materialize(everything, selection=[asset.key], partition_key=partition, instance=instance,
                              resources=resources)

    def announced(result: dg.ExecuteInProcessResult) -> int:
        return sum(1 for e in instance.all_logs(result.run_id) if e.user_message.startswith("GEX alert:"))

    past = run(alerts, DAYS[0].isoformat())
    today = run(alerts, DAYS[1].isoformat())
    again = run(alerts, DAYS[1].isoformat())
    run(backtest)
    run(backtest)  # whole-table replace: still one row per day

    with open_connection(pg_url) as conn:
        assert schema_drift(conn, "spy") == []
        stored = read_frame(conn, f"SELECT {', '.join(GEX_ALERTS.column_names)} FROM spy.gex_alerts "
                            "ORDER BY session_date, snapshot_ts, event_id", [], GEX_ALERTS)
        ledger = conn.execute("SELECT event_id FROM spy.gex_alert_ledger ORDER BY event_id").fetchall()
        table = read_frame(conn, f"SELECT {', '.join(GEX_REGIME_BACKTEST.column_names)} "
                           "FROM spy.gex_regime_backtest ORDER BY session_date", [], GEX_REGIME_BACKTEST)
    todays = stored[stored["session_date"] == pd.Timestamp(DAYS[1])]
    pasts = stored[stored["session_date"] == pd.Timestamp(DAYS[0])]
    assert len(todays) > 0 and len(pasts) > 0
    assert todays["announced_at"].notna().all() and pasts["announced_at"].isna().all()
    assert (announced(past), announced(today), announced(again)) == (0, len(todays), 0)
    assert sorted(r[0] for r in ledger) == sorted(todays["event_id"])
    assert [d.date() for d in table["session_date"]] == DAYS
    assert pd.isna(table["previous_close"].iloc[0]) and table["previous_session_date"].iloc[1] == pd.Timestamp(DAYS[0])
