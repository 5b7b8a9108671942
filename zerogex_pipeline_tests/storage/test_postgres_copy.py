"""The binary COPY encoder against the server: what PostgreSQL parses is exactly the frame.

Oracle: the same rows sent through psycopg's own binary ``write_row`` (its C dumpers, not our numpy
packing) into a twin table; both tables must hold identical rows, and equal the frame read back.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator

import numpy as np
import pandas as pd
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zerogex_pipeline.schemas import SQL_TYPE, AssetSchema, Column, SchemaError
from zerogex_pipeline.storage.postgres_copy import encode_binary_copy, iter_binary_copy
from zerogex_pipeline.storage.postgres_io_manager import frame_from_rows

pytestmark = pytest.mark.postgres

MIXED = AssetSchema(
    name="mixed",
    columns=(
        Column("day", "date", "a date"),
        Column("ts", "timestamptz", "an instant"),
        Column("name", "text", "any text, varying length, non-ASCII too"),
        Column("note", "text", "nullable text", nullable=True),
        Column("price", "double", "a double"),
        Column("greek", "double", "nullable double", nullable=True),
        Column("count", "bigint", "an integer"),
    ),
    primary_key=("day", "ts", "name"),
)
COLS = ", ".join(f'"{c}"' for c in MIXED.column_names)

_texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=0, max_size=12)
_rows = st.lists(
    st.tuples(
        st.dates(dt.date(1990, 1, 1), dt.date(2100, 12, 31)),
        st.datetimes(dt.datetime(1990, 1, 1), dt.datetime(2100, 1, 1)),
        _texts,
        st.none() | _texts,
        st.floats(allow_nan=False, allow_infinity=True, width=64),
        st.none() | st.floats(allow_nan=False, allow_infinity=False, width=64),
        st.integers(-(2**63), 2**63 - 1),
    ),
    min_size=0,
    max_size=60,
    unique_by=lambda r: (r[0], r[1], r[2]),
)


def _frame(rows: list[tuple[object, ...]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=MIXED.column_names)
    frame["ts"] = pd.to_datetime(frame["ts"]).dt.tz_localize("UTC") if len(frame) else frame["ts"]
    return MIXED.conform(frame)


def _create(conn: psycopg.Connection, table: str) -> None:
    columns = ", ".join(
        f'"{c.name}" {SQL_TYPE[c.kind]}{"" if c.nullable else " NOT NULL"}' for c in MIXED.columns
    )
    conn.execute(f"CREATE TABLE {table} (seq BIGSERIAL, {columns}, PRIMARY KEY (day, ts, name))")


def _stored(conn: psycopg.Connection, table: str) -> pd.DataFrame:
    rows = conn.execute(f"SELECT {COLS} FROM {table} ORDER BY day, ts, name COLLATE \"C\"").fetchall()
    return frame_from_rows(rows, MIXED)


def _by_key(frame: pd.DataFrame) -> pd.DataFrame:
    key = frame["name"].map(lambda s: s.encode("utf-8"))
    return (
        frame.assign(_k=key).sort_values(["day", "ts", "_k"], kind="stable").drop(columns="_k").reset_index(drop=True)
    )


@pytest.fixture
def conn(pg_url: str) -> Iterator[psycopg.Connection]:
    connection = psycopg.connect(pg_url)
    yield connection
    connection.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=_rows)
def test_the_server_parses_exactly_the_frame_and_agrees_with_psycopgs_own_encoding(
    conn: psycopg.Connection, rows: list[tuple[object, ...]]
) -> None:
    frame = _frame(rows)
    for table in ("ours", "theirs"):
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        _create(conn, table)
    with conn.cursor() as cur, cur.copy(f"COPY ours ({COLS}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(encode_binary_copy(frame, MIXED))
    with conn.cursor() as cur, cur.copy(f"COPY theirs ({COLS}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(["date", "timestamptz", "text", "text", "float8", "float8", "int8"])
        for r in rows:
            copy.write_row((*r[:1], r[1].replace(tzinfo=dt.UTC), *r[2:]))  # type: ignore[union-attr]
    ours, theirs = _stored(conn, "ours"), _stored(conn, "theirs")
    pd.testing.assert_frame_equal(ours, theirs)
    pd.testing.assert_frame_equal(ours, _by_key(frame))
    # Infinities survive; NULL is NULL, not NaN.
    assert all(math.isinf(v) == math.isinf(w) for v, w in zip(ours["price"], _by_key(frame)["price"], strict=True))
    conn.rollback()


def test_rows_reach_the_server_in_primary_key_order_within_a_layout(conn: psycopg.Connection) -> None:
    # One layout (fixed-width text, no NULLs): the whole stream is in key order, whatever the frame's order.
    n = 500
    rng = np.random.default_rng(7)
    frame = _frame(
        [
            (dt.date(2025, 1, 2 + int(i % 3)), dt.datetime(2025, 1, 2, 15) + dt.timedelta(minutes=int(i // 3)),
             f"S{i:05d}", "x", float(i), None, int(i))
            for i in rng.permutation(n)
        ]
    )
    _create(conn, "ordered")
    with conn.cursor() as cur, cur.copy(f"COPY ordered ({COLS}) FROM STDIN (FORMAT BINARY)") as copy:
        for piece in iter_binary_copy(frame, MIXED, rows_per_chunk=64):
            copy.write(piece)
    inserted = conn.execute("SELECT day, ts, name FROM ordered ORDER BY seq").fetchall()
    assert inserted == sorted(inserted)
    assert len(inserted) == n
    # And two layouts (a NULL note in some rows): each group is in key order, all rows present.
    frame.loc[frame.index % 4 == 0, "note"] = pd.NA
    conn.execute("TRUNCATE ordered")
    with conn.cursor() as cur, cur.copy(f"COPY ordered ({COLS}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(encode_binary_copy(frame, MIXED))
    inserted_rows = conn.execute("SELECT day, ts, name, note IS NULL FROM ordered ORDER BY seq").fetchall()
    for is_null in (True, False):
        group = [r[:3] for r in inserted_rows if r[3] is is_null]
        assert group == sorted(group) and len(group) == (n // 4 if is_null else n - n // 4)
    conn.rollback()


@pytest.mark.parametrize(
    ("column", "value"),
    [("name", None), ("day", None), ("ts", None), ("price", None), ("price", float("nan")), ("count", None)],
)
def test_reading_a_null_into_a_non_nullable_column_is_the_schemas_error(column: str, value: object) -> None:
    row = {
        "day": dt.date(2025, 1, 2), "ts": dt.datetime(2025, 1, 2, 15, tzinfo=dt.UTC), "name": "a",
        "note": None, "price": 1.5, "greek": None, "count": 3,
    }
    assert frame_from_rows([tuple(row.values())], MIXED)["note"].isna().all()
    row[column] = value
    with pytest.raises(SchemaError, match=rf"mixed\.{column}: .*null"):
        frame_from_rows([tuple(row.values())], MIXED)
