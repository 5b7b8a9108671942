import datetime as dt

import dagster as dg
import pandas as pd
import pytest

from zerogex_pipeline import market_calendar
from zerogex_pipeline.defs.partitions import chain_partition_key, chain_partitions, trading_day_partitions
from zerogex_pipeline.underlyings import resolve_underlying


@pytest.fixture(scope="module")
def keys() -> set[str]:
    return set(trading_day_partitions().get_partition_keys(current_time=dt.datetime(2025, 12, 31)))


@pytest.mark.parametrize(
    "holiday",
    ["2024-01-01", "2024-01-15", "2024-03-29", "2024-07-04", "2024-11-28", "2024-12-25", "2025-01-09", "2025-04-18"],
)
def test_holidays_are_not_partitions(keys: set[str], holiday: str) -> None:
    assert holiday not in keys
    assert not market_calendar.is_session(holiday)


def test_weekends_are_not_partitions(keys: set[str]) -> None:
    assert "2024-06-15" not in keys and "2024-06-16" not in keys
    assert "2024-06-14" in keys and "2024-06-17" in keys


def test_partitions_match_the_exchange_calendar_exactly(keys: set[str]) -> None:
    sessions = {d.isoformat() for d in market_calendar.sessions_between("2018-01-02", "2025-12-30")}
    assert {k for k in keys if k <= "2025-12-30"} == sessions


def test_early_close_is_a_partition_with_a_short_session(keys: set[str]) -> None:
    assert "2024-11-29" in keys
    s = market_calendar.session("2024-11-29")
    assert s.is_early_close
    assert s.close.tz_convert("America/New_York").strftime("%H:%M") == "13:00"
    assert s.minutes == 210
    assert len(s.snapshot_times(5)) == 43
    assert s.bar_ends(1)[-1] == s.close


@pytest.mark.parametrize(("day", "utc_open"), [("2024-03-08", "14:30"), ("2024-03-11", "13:30"),
                                                ("2024-11-01", "13:30"), ("2024-11-04", "14:30")])
def test_dst_transitions_keep_9_30_new_york(day: str, utc_open: str) -> None:
    s = market_calendar.session(day)
    assert s.open.strftime("%H:%M") == utc_open
    assert s.open.tz_convert("America/New_York").strftime("%H:%M") == "09:30"
    assert s.minutes == 390
    window = trading_day_partitions().time_window_for_partition_key(day)
    assert window.start.isoformat().startswith(f"{day}T00:00:00")
    assert (pd.Timestamp(window.end) - pd.Timestamp(window.start)) == pd.Timedelta(hours=24)


def test_full_session_has_79_five_minute_snapshots_and_390_bars() -> None:
    s = market_calendar.session("2024-06-14")
    times = s.snapshot_times(5)
    assert len(times) == 79 and times[0] == s.open and times[-1] == s.close
    assert len(s.bar_ends(1)) == 390
    assert len(s.bar_ends(7)) == 56 and s.bar_ends(7)[-1] == s.close  # last bar is a 5-minute stub


def test_session_rejects_non_trading_days() -> None:
    with pytest.raises(ValueError, match="not an NYSE trading day"):
        market_calendar.session("2024-12-25")


def test_multi_partition_key_reads_date_then_expiration() -> None:
    spy = resolve_underlying("SPY")
    key = chain_partition_key("2024-01-02", "2024-01-19")
    assert str(key) == "2024-01-02|2024-01-19"
    parts = chain_partitions(spy)
    assert [d.name for d in parts.partitions_defs] == ["date", "expiration"]
    assert parts.partitions_defs[1].partitions_def.name == "spy_expirations"  # type: ignore[union-attr]


def test_last_completed_sessions_skips_holiday_and_open_session() -> None:
    # Friday 2024-11-29 early close at 13:00 ET; at 12:00 ET it is not completed yet.
    now = pd.Timestamp("2024-11-29 12:00", tz="America/New_York")
    assert market_calendar.last_completed_sessions(3, now) == [
        dt.date(2024, 11, 25), dt.date(2024, 11, 26), dt.date(2024, 11, 27)
    ]
    later = pd.Timestamp("2024-11-29 13:01", tz="America/New_York")
    assert market_calendar.last_completed_sessions(1, later) == [dt.date(2024, 11, 29)]


def test_dynamic_expirations_partition_set_is_named_per_underlying() -> None:
    assert isinstance(chain_partitions(resolve_underlying("SPX")).partitions_defs[1].partitions_def,
                      dg.DynamicPartitionsDefinition)
