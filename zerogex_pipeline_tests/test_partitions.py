import datetime as dt

import dagster as dg
import pandas as pd
import pytest

from zerogex_pipeline import market_calendar
from zerogex_pipeline.defs.partitions import (
    chain_partition_key,
    chain_partitions,
    slot_keys,
    split_chain_key,
    trading_day_partitions,
)
from zerogex_pipeline.settings import (
    DEFAULT_FIRST_DATE,
    EARLIEST_FIRST_DATE,
    Settings,
    SettingsError,
    load_settings,
)


@pytest.fixture(scope="module")
def keys() -> set[str]:
    return set(trading_day_partitions(EARLIEST_FIRST_DATE).get_partition_keys(current_time=dt.datetime(2025, 12, 31)))


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
    window = trading_day_partitions(EARLIEST_FIRST_DATE).time_window_for_partition_key(day)
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


def test_multi_partition_key_reads_date_then_expiration_slot() -> None:
    key = chain_partition_key("2024-01-02", 2)
    assert str(key) == "2024-01-02|2"
    assert split_chain_key(key) == split_chain_key("2024-01-02|2") == (dt.date(2024, 1, 2), 2)
    parts = chain_partitions(Settings(first_date=dt.date(2024, 1, 2), expirations=3))
    assert [d.name for d in parts.partitions_defs] == ["date", "expiration"]
    assert isinstance(parts.partitions_defs[1].partitions_def, dg.StaticPartitionsDefinition)
    assert parts.partitions_defs[1].partitions_def.get_partition_keys() == ["1", "2", "3"] == slot_keys(3)
    with pytest.raises(ValueError, match=r"expiration slot: expected 1, 2, \.\.\."):
        chain_partition_key("2024-01-02", "2024-01-19")  # an expiration date is no longer a partition key


def test_every_date_and_slot_is_a_partition_and_nothing_else() -> None:
    """The grid is dense: dates from the first date x ZEROGEX_EXPIRATIONS slots, no registered expirations."""
    parts = chain_partitions(Settings(first_date=dt.date(2025, 1, 4), expirations=3))  # a Saturday
    keys = parts.get_partition_keys(current_time=dt.datetime(2025, 1, 31, 12))
    days = market_calendar.sessions_between(dt.date(2025, 1, 6), dt.date(2025, 1, 31))
    assert keys[0] == "2025-01-06|1"  # the first session on or after the first date
    assert keys == [f"{d}|{k}" for d in days for k in (1, 2, 3)]
    assert len(keys) == 3 * 18  # 2025-01-09 (national day of mourning) and 01-20 closed


def test_first_date_setting() -> None:
    assert load_settings({}, env_file=None).first_date == DEFAULT_FIRST_DATE == dt.date(2025, 1, 2)
    assert load_settings({"ZEROGEX_FIRST_DATE": "2024-06-14"}, env_file=None).first_date == dt.date(2024, 6, 14)
    for bad, message in (("14/06/2024", "expected a date YYYY-MM-DD, got '14/06/2024'"),
                         ("2017-12-29", "expected a date from 2018-01-02 to today")):
        with pytest.raises(SettingsError, match=f"ZEROGEX_FIRST_DATE: {message}"):
            load_settings({"ZEROGEX_FIRST_DATE": bad}, env_file=None)
    days = trading_day_partitions(DEFAULT_FIRST_DATE).get_partition_keys(current_time=dt.datetime(2025, 12, 31))
    assert days[0] == "2025-01-02"  # 2025's sessions, not every session since 2018
    assert days == [d.isoformat() for d in market_calendar.sessions_between(dt.date(2025, 1, 2), dt.date(2025, 12, 31))]


def test_last_completed_sessions_skips_holiday_and_open_session() -> None:
    # Friday 2024-11-29 early close at 13:00 ET; at 12:00 ET it is not completed yet.
    now = pd.Timestamp("2024-11-29 12:00", tz="America/New_York")
    assert market_calendar.last_completed_sessions(3, now) == [
        dt.date(2024, 11, 25), dt.date(2024, 11, 26), dt.date(2024, 11, 27)
    ]
    later = pd.Timestamp("2024-11-29 13:01", tz="America/New_York")
    assert market_calendar.last_completed_sessions(1, later) == [dt.date(2024, 11, 29)]
