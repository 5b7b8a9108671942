"""Turning a Dagster ``TableSlice`` into a parameterized WHERE clause, the same way for every store.

Partition columns are typed by the asset's schema (``zerogex_pipeline.schemas``): a time-window
partition on a ``DATE`` column becomes ``col >= start_date AND col < end_date`` with the window's
America/New_York dates; on a ``TIMESTAMPTZ`` column it binds the tz-aware instants. Dynamic or static
keys become ``col IN (...)``, parsed to dates for ``DATE`` columns. Values are always bound, never
formatted into SQL (the stock DuckDB/Snowflake clients drop the time zone when formatting).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from dagster._core.definitions.partitions.utils import TimeWindow
from dagster._core.storage.db_io_manager import TablePartitionDimension, TableSlice

from zerogex_pipeline.schemas import AssetSchema, schema_for

NEW_YORK = "America/New_York"


class StorageError(RuntimeError):
    """A write or read of a stored asset failed; the message names the table and the cause."""


class TransientStorageError(StorageError):
    """A failure that the same operation may not meet again: the connection was lost or refused while the
    server restarts, the server is shutting down or starting up, or a concurrent transaction won a
    serialization conflict or deadlock. A partition write is one transaction, so it is safe to retry whole."""


def quote_ident(name: str) -> str:
    """Double-quote an SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def qualified_name(table_slice: TableSlice) -> str:
    """``"schema"."table"`` of a slice."""
    return f"{quote_ident(table_slice.schema)}.{quote_ident(table_slice.table)}"


def slice_schema(table_slice: TableSlice) -> AssetSchema:
    """The declared schema of the slice's table.

    Raises:
        StorageError: the table has no declared schema (every stored asset must declare one).
    """
    schema = schema_for(table_slice.table)
    if schema is None:
        raise StorageError(
            f"{table_slice.schema}.{table_slice.table}: no column schema declared in zerogex_pipeline.schemas"
        )
    return schema


def _column_kind(schema: AssetSchema, column: str) -> str:
    for col in schema.columns:
        if col.name == column:
            return col.kind
    raise StorageError(f"{schema.name}: partition column {column!r} is not a column of the table")


def _bound_value(kind: str, value: Any) -> Any:
    if kind == "date":
        if isinstance(value, str):
            return dt.date.fromisoformat(value)
        if isinstance(value, dt.datetime):
            return value.date()
    if kind == "bigint" and isinstance(value, str):  # a static partition key of an integer column (expiration slot)
        try:
            return int(value)
        except ValueError:
            raise StorageError(f"partition key {value!r}: expected a whole number for an integer column") from None
    return value


def where_clause(
    table_slice: TableSlice, placeholder: str
) -> tuple[str, list[Any]]:
    """WHERE clause (without the keyword) and bind parameters selecting the slice's partitions.

    Returns ``("TRUE", [])`` for an unpartitioned slice, ``("FALSE", [])`` for an empty key list.
    """
    dims: Sequence[TablePartitionDimension] = table_slice.partition_dimensions or []
    if not dims:
        return "TRUE", []
    schema = slice_schema(table_slice)
    parts: list[str] = []
    params: list[Any] = []
    for dim in dims:
        col = quote_ident(dim.partition_expr)
        kind = _column_kind(schema, dim.partition_expr)
        if isinstance(dim.partitions, TimeWindow):
            start, end = dim.partitions.start, dim.partitions.end
            if kind == "date":
                params += [start.astimezone(_tz()).date(), end.astimezone(_tz()).date()]
            else:
                params += [start, end]
            parts.append(f"{col} >= {placeholder} AND {col} < {placeholder}")
        else:
            keys = list(dim.partitions)
            if not keys:
                return "FALSE", []
            parts.append(f"{col} IN ({', '.join([placeholder] * len(keys))})")
            params += [_bound_value(kind, k) for k in keys]
    return " AND ".join(f"({p})" for p in parts), params


def _tz() -> dt.tzinfo:
    from zoneinfo import ZoneInfo

    return ZoneInfo(NEW_YORK)


MAX_SLICE_LOCKS = 128
"""Beyond this many partition keys a slice write locks its whole table (see :func:`slice_lock_keys`)."""


def _dimension_keys(dim: TablePartitionDimension, kind: str) -> list[str]:
    if isinstance(dim.partitions, TimeWindow):
        first = dim.partitions.start.astimezone(_tz()).date()
        end = dim.partitions.end.astimezone(_tz())
        # A window ending exactly at midnight stops the day before; a timestamp window covers every day it touches.
        last = end.date() if kind != "date" and end.time() != dt.time(0) else end.date() - dt.timedelta(days=1)
        return [(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
    return sorted(str(_bound_value(kind, k)) for k in dim.partitions)


def slice_date_bounds(table_slice: TableSlice, column: str = "session_date") -> tuple[dt.date, dt.date] | None:
    """``(first, end)`` (end exclusive) of the days the slice covers in ``column``; ``None`` when unbounded."""
    dims: Sequence[TablePartitionDimension] = table_slice.partition_dimensions or []
    schema = slice_schema(table_slice)
    for dim in dims:
        if dim.partition_expr == column:
            keys = _dimension_keys(dim, _column_kind(schema, column))
            if not keys:
                return None
            return dt.date.fromisoformat(keys[0]), dt.date.fromisoformat(keys[-1]) + dt.timedelta(days=1)
    return None


def slice_lock_keys(table_slice: TableSlice) -> tuple[str, list[str]]:
    """Advisory-lock keys serializing writes of overlapping slices of one table.

    Returns ``(table_key, partition_keys)``: one key per partition the slice covers (every
    ``session_date`` of a time window, crossed with the keys of the other dimensions), sorted, so two
    writers of overlapping ranges (06-10..06-14 and 06-12..06-18) share the keys of their overlap and
    take them in the same order (no deadlock). A writer takes ``table_key`` in shared mode and then its
    partition keys; a slice of more than :data:`MAX_SLICE_LOCKS` partitions (or an unpartitioned one)
    returns no partition keys and takes ``table_key`` exclusively instead, which waits for every other
    writer of the table.
    """
    table_key = f"zerogex:{table_slice.schema}.{table_slice.table}"
    dims: Sequence[TablePartitionDimension] = table_slice.partition_dimensions or []
    if not dims:
        return table_key, []
    schema = slice_schema(table_slice)
    combos: list[str] = [""]
    for dim in dims:
        keys = _dimension_keys(dim, _column_kind(schema, dim.partition_expr))
        if len(combos) * len(keys) > MAX_SLICE_LOCKS:
            return table_key, []
        combos = [f"{c}|{dim.partition_expr}={k}" for c in combos for k in keys]
    return table_key, sorted(f"{table_key}:{c}" for c in combos)


def display_query(table_slice: TableSlice, columns: Sequence[str] | None = None) -> str:
    """A human-readable SELECT for the slice (values inlined for display only; never executed)."""
    clause, params = where_clause(table_slice, "{}")
    shown = clause.format(*(f"'{p}'" for p in params))
    cols = ", ".join(columns) if columns else "*"
    return f"SELECT {cols} FROM {table_slice.schema}.{table_slice.table} WHERE {shown}"


def rows_outside_slice(table_slice: TableSlice, frame: pd.DataFrame) -> int:
    """How many rows of a conformed ``frame`` fall outside the slice's partitions.

    Evaluates the same bound values as :func:`where_clause` (America/New_York dates for ``DATE``
    partition columns, tz-aware instants for ``TIMESTAMPTZ``), in pandas.
    """
    dims = table_slice.partition_dimensions or []
    if frame.empty or not dims:
        return 0
    _, params = where_clause(table_slice, "%s")
    inside = np.ones(len(frame), dtype=bool)
    i = 0
    schema = slice_schema(table_slice)
    for dim in dims:
        col = frame[dim.partition_expr]
        kind = _column_kind(schema, dim.partition_expr)
        is_date = kind == "date"
        if isinstance(dim.partitions, TimeWindow):
            start, end = pd.Timestamp(params[i]), pd.Timestamp(params[i + 1])
            i += 2
            if not is_date:
                start, end = start.tz_convert("UTC"), end.tz_convert("UTC")
            inside &= ((col >= start) & (col < end)).to_numpy()
        else:
            keys = list(dim.partitions)
            values = params[i : i + len(keys)]
            i += len(keys)
            wanted = pd.to_datetime(pd.Series(values)) if is_date else pd.Series(values, dtype=col.dtype)
            inside &= col.isin(wanted).to_numpy()
    return int((~inside).sum())


def is_conformed(schema: AssetSchema, frame: pd.DataFrame) -> bool:
    """True when ``frame`` already is what ``schema.conform`` returns (columns, order, dtypes, no bad nulls).

    Assets return conformed frames, so the write path skips re-casting every column (the cast costs
    ~3 µs per chain row); anything else goes through ``conform`` and its errors.
    """
    if list(frame.columns) != schema.column_names:
        return False
    expected = _DTYPES.get(schema.name)
    if expected is None:
        expected = _DTYPES.setdefault(schema.name, list(schema.empty_frame().dtypes))
    if list(frame.dtypes) != expected:
        return False
    return not any(
        frame[c.name].isna().any() for c in schema.columns if not c.nullable and c.kind != "bigint"
    )


_DTYPES: dict[str, list[Any]] = {}


def frame_for_slice(table_slice: TableSlice, obj: pd.DataFrame) -> tuple[AssetSchema, pd.DataFrame]:
    """Conform ``obj`` to the slice's schema and check it can replace the slice, before any write.

    Raises:
        StorageError: rows repeat the primary key, or fall outside the partition being written (they
            would survive the partition's next re-write and break idempotency).
    """
    schema = slice_schema(table_slice)
    frame = obj if is_conformed(schema, obj) else schema.conform(obj)
    where = f"{table_slice.schema}.{table_slice.table}"
    duplicated = frame.duplicated(list(schema.primary_key))
    if duplicated.any():
        raise StorageError(
            f"{where}: {int(duplicated.sum())} rows repeat the primary key "
            f"{schema.primary_key}; first: {frame.loc[duplicated, list(schema.primary_key)].iloc[0].tolist()}"
        )
    outside = rows_outside_slice(table_slice, frame)
    if outside:
        raise StorageError(
            f"{where}: {outside} of {len(frame)} rows fall outside the "
            f"partition being written ({display_query(table_slice)})"
        )
    return schema, frame


def select_slice(table_slice: TableSlice, placeholder: str) -> tuple[AssetSchema, str, list[Any]]:
    """The declared schema, and the SELECT (declared columns, primary-key order) of the slice's rows."""
    schema = slice_schema(table_slice)
    clause, params = where_clause(table_slice, placeholder)
    cols = ", ".join(quote_ident(c) for c in schema.column_names)
    order = ", ".join(quote_ident(c) for c in schema.primary_key)
    return schema, f"SELECT {cols} FROM {qualified_name(table_slice)} WHERE {clause} ORDER BY {order}", params
