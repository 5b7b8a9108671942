"""Overlapping date-range writes (single-run backfills) of one table serialize on their shared days."""

from __future__ import annotations

import datetime as dt
import threading
import time
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
import pytest
from dagster._core.definitions.partitions.utils import TimeWindow
from dagster._core.storage.db_io_manager import TablePartitionDimension, TableSlice

from zerogex_pipeline.schemas import GEX_LEVELS
from zerogex_pipeline.storage.postgres_io_manager import (
    PostgresFrameIOManager,
    PostgresPandasTypeHandler,
    PostgresPartitionClient,
    open_connection,
    read_frame,
)
from zerogex_pipeline.storage.table_slices import MAX_SLICE_LOCKS, slice_lock_keys

pytestmark = pytest.mark.postgres

NY = ZoneInfo("America/New_York")
ROWS_PER_DAY = 20


def range_slice(first: dt.date, last: dt.date, table: str = "gex_levels") -> TableSlice:
    """The slice a single-run backfill of ``first..last`` (inclusive) writes."""
    window = TimeWindow(
        dt.datetime.combine(first, dt.time(0), NY), dt.datetime.combine(last + dt.timedelta(days=1), dt.time(0), NY)
    )
    return TableSlice(
        table=table, schema="spy", database="test",
        partition_dimensions=[TablePartitionDimension(partition_expr="session_date", partitions=window)],
    )


def levels_for(first: dt.date, last: dt.date, spot: float) -> pd.DataFrame:
    days = pd.date_range(first, last, freq="D")
    frame = GEX_LEVELS.empty_frame().reindex(range(len(days) * ROWS_PER_DAY))
    frame["underlying"] = "SPY"
    frame["session_date"] = days.repeat(ROWS_PER_DAY)
    frame["snapshot_ts"] = [
        pd.Timestamp(f"{d.date()} 14:30", tz="UTC") + pd.Timedelta(minutes=5 * i)
        for d in days for i in range(ROWS_PER_DAY)
    ]
    for col in ("spot", "net_gex", "call_gex", "put_gex", "net_gex_at_spot", "rate", "dividend_yield"):
        frame[col] = spot
    frame["expirations"] = 1
    frame["expiration_list"] = "[\"2025-01-17\"]"
    frame["contracts"] = 10
    frame["convention"] = "test"
    return GEX_LEVELS.conform(frame)


def write_range(url: str, first: dt.date, last: dt.date, spot: float, hold_s: float = 0.0,
                locked: threading.Event | None = None) -> None:
    """Write ``first..last`` as one slice through the IO manager's client and handler.

    ``hold_s``: after the locks and the DELETE, wait this long before the COPY (and set ``locked``),
    so a concurrent writer runs while this transaction is open.
    """
    client, handler = PostgresPartitionClient(), PostgresPandasTypeHandler()
    config = PostgresFrameIOManager(database_url=url).model_dump(by_alias=False)
    context = dg.build_output_context(resource_config=config)
    table_slice = range_slice(first, last)
    with client.connect(context, table_slice) as conn:
        client.delete_table_slice(context, table_slice, conn)
        if locked is not None:
            locked.set()
        time.sleep(hold_s)
        handler.handle_output(context, table_slice, levels_for(first, last, spot), conn)


def stored_levels(url: str) -> pd.DataFrame:
    cols = ", ".join(GEX_LEVELS.column_names)
    with open_connection(url) as conn:
        return read_frame(conn, f"SELECT {cols} FROM spy.gex_levels ORDER BY session_date, snapshot_ts", [], GEX_LEVELS)


def test_overlapping_ranges_share_lock_keys_and_huge_ranges_lock_the_table() -> None:
    table_key, a = slice_lock_keys(range_slice(dt.date(2025, 6, 10), dt.date(2025, 6, 14)))
    _, b = slice_lock_keys(range_slice(dt.date(2025, 6, 12), dt.date(2025, 6, 18)))
    _, c = slice_lock_keys(range_slice(dt.date(2025, 6, 15), dt.date(2025, 6, 18)))
    assert len(a) == 5 and len(b) == 7 and a == sorted(a) and b == sorted(b)
    assert sorted(k.rsplit("=", 1)[1] for k in set(a) & set(b)) == ["2025-06-12", "2025-06-13", "2025-06-14"]
    assert not set(a) & set(c)
    huge_key, huge = slice_lock_keys(range_slice(dt.date(2024, 1, 1), dt.date(2024, 1, 1) + dt.timedelta(MAX_SLICE_LOCKS)))
    assert huge == [] and huge_key == table_key  # taken exclusively: waits for every writer of the table


@pytest.mark.parametrize("hold_first", [True, False])
def test_concurrent_overlapping_range_writes_lose_nothing_and_duplicate_nothing(pg_url: str, hold_first: bool) -> None:
    write_range(pg_url, dt.date(2025, 6, 1), dt.date(2025, 6, 20), 1.0)  # an earlier version of every day
    errors: list[BaseException] = []
    locked = threading.Event()
    a_range = (dt.date(2025, 6, 10), dt.date(2025, 6, 14))
    b_range = (dt.date(2025, 6, 12), dt.date(2025, 6, 18))
    first, second = (a_range, b_range) if hold_first else (b_range, a_range)

    def holder() -> None:
        try:
            write_range(pg_url, *first, spot=2.0, hold_s=1.0, locked=locked)
        except BaseException as exc:
            errors.append(exc)

    def follower() -> None:
        try:
            locked.wait(30)
            write_range(pg_url, *second, spot=3.0)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=holder), threading.Thread(target=follower)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    stored = stored_levels(pg_url)
    assert not stored.duplicated(["session_date", "snapshot_ts"]).any()
    per_day = stored.groupby(stored["session_date"].dt.date)
    assert (per_day.size() == ROWS_PER_DAY).all()  # every day complete: nothing lost
    spots = per_day["spot"].agg(lambda s: set(s))
    assert all(len(v) == 1 for v in spots)  # each day is one writer's version, never a mix
    spot = {d: next(iter(v)) for d, v in spots.items()}
    # The follower waited for the holder's commit on the shared days, so its version wins there.
    for day, value in spot.items():
        in_first = first[0] <= day <= first[1]
        in_second = second[0] <= day <= second[1]
        expected = 3.0 if in_second else 2.0 if in_first else 1.0
        assert value == expected, (day, value)
