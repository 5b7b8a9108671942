"""Partition filters are bound, typed by the declared schema, and tz-correct."""

import datetime as dt

import pytest
from dagster._core.definitions.partitions.utils import TimeWindow
from dagster._core.storage.db_io_manager import TablePartitionDimension, TableSlice

from zerogex_pipeline.defs.partitions import trading_day_partitions
from zerogex_pipeline.storage.table_slices import StorageError, display_query, where_clause
from zerogex_pipeline_tests.history import TEST_FIRST_DATE


def _slice(table: str, dims: list[TablePartitionDimension]) -> TableSlice:
    return TableSlice(table=table, schema="spy", database="db", partition_dimensions=dims)


@pytest.mark.parametrize("day", ["2024-03-11", "2024-11-04", "2024-06-14"])  # around both DST changes
def test_trading_day_window_becomes_that_new_york_date(day: str) -> None:
    window = trading_day_partitions(TEST_FIRST_DATE).time_window_for_partition_key(day)
    clause, params = where_clause(
        _slice("gex_levels", [TablePartitionDimension("session_date", window)]), "?"
    )
    assert clause == '("session_date" >= ? AND "session_date" < ?)'
    start = dt.date.fromisoformat(day)
    assert params == [start, start + dt.timedelta(days=1)]


def test_multi_partition_binds_dates_for_the_expiration_keys() -> None:
    window = trading_day_partitions(TEST_FIRST_DATE).time_window_for_partition_key("2024-06-14")
    table_slice = _slice(
        "option_chain_snapshots",
        [TablePartitionDimension("session_date", window),
         TablePartitionDimension("expiration", ["2024-06-17", "2024-06-21"])],
    )
    clause, params = where_clause(table_slice, "%s")
    assert clause.endswith('("expiration" IN (%s, %s))')
    assert params[2:] == [dt.date(2024, 6, 17), dt.date(2024, 6, 21)]
    assert "'2024-06-17'" in display_query(table_slice)


def test_timestamp_partition_column_binds_tz_aware_instants() -> None:
    import pandas as pd

    start = pd.Timestamp("2024-06-14", tz="America/New_York").to_pydatetime()
    end = pd.Timestamp("2024-06-15", tz="America/New_York").to_pydatetime()
    _, params = where_clause(_slice("gex_levels", [TablePartitionDimension("snapshot_ts", TimeWindow(start, end))]), "?")
    assert params == [start, end] and params[0].utcoffset() == dt.timedelta(hours=-4)


def test_empty_key_list_selects_nothing_and_unknown_columns_fail() -> None:
    assert where_clause(_slice("gex_surface", [TablePartitionDimension("expiration", [])]), "?") == ("FALSE", [])
    with pytest.raises(StorageError, match="not a column"):
        where_clause(_slice("gex_surface", [TablePartitionDimension("nope", ["x"])]), "?")
    with pytest.raises(StorageError, match="no column schema"):
        where_clause(_slice("mystery_table", [TablePartitionDimension("x", ["y"])]), "?")


def test_frames_with_rows_outside_the_partition_or_repeated_keys_are_refused() -> None:
    import pandas as pd

    from zerogex_pipeline.schemas import UNDERLYING_BARS
    from zerogex_pipeline.storage.table_slices import frame_for_slice

    window = trading_day_partitions(TEST_FIRST_DATE).time_window_for_partition_key("2024-06-14")
    table_slice = _slice("underlying_bars", [TablePartitionDimension("session_date", window)])
    row = {"underlying": "SPY", "session_date": pd.Timestamp("2024-06-14"),
           "ts": pd.Timestamp("2024-06-14 13:31", tz="UTC"), "open": 1.0, "high": 1.0, "low": 1.0,
           "close": 1.0, "volume": 1, "source": "simulated"}
    ok = pd.DataFrame([row])
    schema, frame = frame_for_slice(table_slice, ok)
    assert schema is UNDERLYING_BARS and len(frame) == 1
    with pytest.raises(StorageError, match="1 of 2 rows fall outside"):
        frame_for_slice(table_slice, pd.DataFrame([row, {**row, "session_date": pd.Timestamp("2024-06-13")}]))
    with pytest.raises(StorageError, match="repeat the primary key"):
        frame_for_slice(table_slice, pd.DataFrame([row, row]))
