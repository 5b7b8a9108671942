"""Live alerts (announced once, within one interval, under the id gex_alerts gives the same event) and the capture
watch sensor (the capturing_during_session check reported during the session, without a run)."""

import logging

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from zerogex_pipeline import market_calendar
from zerogex_pipeline.analytics.alerts import detect_events
from zerogex_pipeline.defs.capture.sensors import build_capture_watch_sensor
from zerogex_pipeline.live.publish import LiveAlerts
from zerogex_pipeline.schemas import CAPTURED_QUOTES
from zerogex_pipeline.settings import Settings
from zerogex_pipeline.storage import alert_ledger
from zerogex_pipeline.storage.capture_store import CaptureBatch, CaptureStore
from zerogex_pipeline.underlyings import resolve_underlying
from zerogex_pipeline_tests.clock import Clock, at

SPY = resolve_underlying("SPY")
DAY = pd.Timestamp("2024-06-14").date()
SESSION = market_calendar.session(DAY)


def row(t: str, spot: float, zero_gamma: float, net: float = -1e9) -> dict[str, object]:
    return {"underlying": "SPY", "session_date": pd.Timestamp(DAY), "snapshot_ts": at(t), "spot": spot,
            "net_gex": net, "zero_gamma": zero_gamma, "call_wall": 600.0, "put_wall": 580.0}


def test_a_live_cross_is_announced_once_under_the_batch_id(settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(market_calendar, "utc_now", lambda: at("2024-06-14 10:02:40"))
    alerts = LiveAlerts(settings, snapshot_minutes=5, run_id="stream:test")
    with caplog.at_level(logging.WARNING, logger="zerogex.live"):
        alerts.observe(SPY, SESSION, row("2024-06-14 10:02:30", 590.0, 592.0))
        first = alerts.observe(SPY, SESSION, row("2024-06-14 10:02:35", 593.0, 592.0))  # spot crosses above
        again = alerts.observe(SPY, SESSION, row("2024-06-14 10:02:40", 591.0, 592.0))  # and back, same bucket
    assert list(first["kind"]) == ["zero_gamma_cross"] and list(again["kind"]) == ["zero_gamma_cross"]
    # the id the batch path gives the event it sees at the 10:05 snapshot: one announcement per kind and bucket
    assert first["event_id"].iloc[0] == "SPY|2024-06-14|zero_gamma_cross|2024-06-14T14:05:00Z"
    announced = [r.message for r in caplog.records if "GEX alert" in r.message]
    assert len(announced) == 1 and "crossed above zero gamma" in announced[0] and alerts.announced == 1
    # gex_alerts later detects the 10:00 -> 10:05 cross and finds it already claimed: not announced twice
    batch = detect_events(pd.DataFrame([row("2024-06-14 10:00", 590.0, 592.0), row("2024-06-14 10:05", 594.0, 592.0)]))
    claimed, stamps = alert_ledger.claim_and_read(settings, "spy", batch, DAY, announce=True,
                                                  now=at("2024-06-14 10:05:20"), run_id="batch")
    assert claimed == set() and batch["event_id"].iloc[0] in stamps


def test_the_watch_sensor_reports_the_capture_check(settings: Settings, instance: dg.DagsterInstance) -> None:
    clock = Clock(at("2024-06-14 09:45:30"))
    sensor = build_capture_watch_sensor(SPY, settings, clock=clock)
    key = dg.AssetCheckKey(dg.AssetKey(["spy", "captured_quotes"]), "capturing_during_session")

    def tick(cursor: str | None) -> tuple[str | None, str]:
        with dg.build_sensor_context(instance=instance, cursor=cursor) as ctx:
            result = sensor(ctx)
            return ctx.cursor, str(result.skip_message)

    def latest() -> dg.AssetCheckEvaluation:
        record = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
        return record.event.dagster_event.event_specific_data  # type: ignore[union-attr]

    cursor, message = tick(None)  # nothing captured at 09:45: the engine is not running
    assert "reported" in message and not latest().passed
    assert "nothing captured yet today" in latest().description
    rows = pd.DataFrame({c.name: [None] for c in CAPTURED_QUOTES.columns})
    frames = []
    for t in ("2024-06-14 09:30", "2024-06-14 09:35", "2024-06-14 09:40", "2024-06-14 09:45"):
        f = rows.assign(underlying="SPY", session_date=pd.Timestamp(DAY), expiration=pd.Timestamp(DAY),
                        snapshot_ts=at(t), symbol="SPY 240614C590", option_type="C", strike=590.0, settlement="PM",
                        bid=1.0, ask=1.1, mid=1.05, volume=1, open_interest=1, spot=590.0, spot_ts=at(t),
                        source="simulated", quote_ts=at(t), stream="chain", last=np.nan)
        frames.append(f)
    CaptureStore(settings).write(CaptureBatch(quotes={"spy": pd.concat(frames, ignore_index=True)}))
    cursor, message = tick(cursor)
    assert "reported" in message and latest().passed and "capturing: newest snapshot 09:45 ET" in message
    cursor, message = tick(cursor)
    assert "unchanged since the last report" in message
    clock.now = at("2024-06-14 09:58")  # 09:50 and 09:55 are due and missing: the engine stopped
    cursor, message = tick(cursor)
    assert not latest().passed and "stopped capturing" in latest().description
    clock.now = at("2024-06-14 17:00")
    assert "no capture expected now" in tick(cursor)[1]
