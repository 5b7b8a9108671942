"""Vectorized encoder of pandas frames into PostgreSQL's binary ``COPY`` format.

``COPY ... FROM STDIN (FORMAT BINARY)`` is the fastest way into PostgreSQL, but feeding it row by row
from Python (``copy.write_row``) spends most of its time boxing values. This module builds the whole
binary stream with numpy instead: every column becomes fixed-width big-endian fields (``float8``,
``int8``, ``date``, ``timestamptz``) or variable-width UTF-8 text, and the fields are scattered into one
buffer. Text columns are factorized first, so each distinct string is encoded once.

Conventions (PostgreSQL binary format, protocol docs "COPY"): ``date`` is int32 days since
2000-01-01; ``timestamptz`` is int64 microseconds since 2000-01-01 00:00 UTC; ``NULL`` is a field
length of -1. Pandas NaN/NaT/NA become ``NULL``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from zerogex_pipeline.schemas import AssetSchema

COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
"""11-byte signature, int32 flags (0, no OIDs) and int32 header-extension length (0)."""
COPY_TRAILER = b"\xff\xff"
"""The int16 -1 that ends the stream."""

_PG_EPOCH_DAYS = 10957  # days from 1970-01-01 to 2000-01-01
_PG_EPOCH_US = _PG_EPOCH_DAYS * 86_400 * 1_000_000

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]


class _Field:
    """One column's encoded fields: data bytes (flat) and per-row data length (-1 = NULL)."""

    def __init__(self, data: U8, lengths: I64, width: int | None) -> None:
        self.data = data
        self.lengths = lengths
        self.width = width  # fixed data width when no row is NULL, else None


def _fixed(values: npt.NDArray[np.generic], null: npt.NDArray[np.bool_], big_endian: str) -> _Field:
    encoded = np.ascontiguousarray(values.astype(big_endian))
    width = encoded.dtype.itemsize
    n = len(values)
    if not null.any():
        return _Field(encoded.view(np.uint8), np.full(n, width, dtype=np.int64), width)
    kept = encoded[~null]
    lengths = np.where(null, -1, width).astype(np.int64)
    return _Field(np.ascontiguousarray(kept).view(np.uint8), lengths, None)


def _text(series: pd.Series) -> _Field:
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    encoded = [str(u).encode("utf-8") for u in uniques]
    ulen = np.fromiter((len(b) for b in encoded), dtype=np.int64, count=len(encoded))
    ubytes = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    uoff = np.cumsum(ulen) - ulen
    null = codes < 0
    safe = np.where(null, 0, codes)
    lengths = np.where(null, -1, ulen[safe] if len(ulen) else 0).astype(np.int64)
    data_len = np.maximum(lengths, 0)
    total = int(data_len.sum())
    if total == 0:
        return _Field(np.empty(0, dtype=np.uint8), lengths, None)
    row_start = np.cumsum(data_len) - data_len
    src = np.arange(total, dtype=np.int64) + np.repeat(uoff[safe] - row_start, data_len)
    return _Field(ubytes[src], lengths, None)


def _encode_column(series: pd.Series, kind: str) -> _Field:
    if kind == "text":
        return _text(series)
    null = series.isna().to_numpy()
    if kind == "double":
        return _fixed(series.to_numpy(dtype=np.float64, na_value=np.nan), null, ">f8")
    if kind == "bigint":
        return _fixed(series.fillna(0).to_numpy(dtype=np.int64), null, ">i8")
    if kind == "timestamptz":
        stamps = pd.to_datetime(series, utc=True)
        us = stamps.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[us]")
        raw = us.to_numpy().view(np.int64) - _PG_EPOCH_US
        return _fixed(raw, null, ">i8")
    if kind == "date":
        days = pd.to_datetime(series).astype("datetime64[s]").to_numpy().view(np.int64) // 86_400
        return _fixed((days - _PG_EPOCH_DAYS).astype(np.int32), null, ">i4")
    raise ValueError(f"binary COPY: unsupported column kind {kind!r}")


def iter_binary_copy(
    frame: pd.DataFrame, schema: AssetSchema, rows_per_chunk: int = 8192, columns: Sequence[str] | None = None
) -> Iterator[bytes]:
    """The binary ``COPY`` stream of ``frame`` in pieces of ``rows_per_chunk`` rows.

    Writing each piece as soon as it is encoded lets the server parse one piece while the next is
    encoded. The first piece carries the signature, the last the trailer.
    """
    n = len(frame)
    starts = list(range(0, n, rows_per_chunk)) or [0]
    for i, start in enumerate(starts):
        part = frame.iloc[start : start + rows_per_chunk]
        yield encode_binary_copy(part, schema, columns, header=i == 0, trailer=i == len(starts) - 1)


def encode_binary_copy(
    frame: pd.DataFrame,
    schema: AssetSchema,
    columns: Sequence[str] | None = None,
    header: bool = True,
    trailer: bool = True,
) -> bytes:
    """The binary ``COPY`` stream (signature, rows, trailer) of ``frame``'s schema columns.

    ``frame`` must already be conformed to ``schema`` (see :meth:`AssetSchema.conform`); columns are
    written in ``columns`` order (default: the schema's), which must match the ``COPY`` column list.
    ``header``/``trailer`` False leave out the signature/trailer (for a stream sent in pieces).
    """
    names = list(columns) if columns is not None else schema.column_names
    kinds = {c.name: c.kind for c in schema.columns}
    n = len(frame)
    fields = [_encode_column(frame[name], kinds[name]) for name in names]
    row_len = np.full(n, 2, dtype=np.int64)
    for f in fields:
        row_len += 4 + np.maximum(f.lengths, 0)
    head = len(COPY_SIGNATURE) if header else 0
    body = int(row_len.sum())
    buf = np.empty(head + body + (len(COPY_TRAILER) if trailer else 0), dtype=np.uint8)
    if header:
        buf[:head] = np.frombuffer(COPY_SIGNATURE, dtype=np.uint8)
    if trailer:
        buf[head + body :] = np.frombuffer(COPY_TRAILER, dtype=np.uint8)
    if n:
        pos = head + np.cumsum(row_len) - row_len
        _scatter_fixed(buf, pos, np.full(n, len(names), dtype=">i2").view(np.uint8), 2)
        pos = pos + 2
        for f in fields:
            _scatter_fixed(buf, pos, f.lengths.astype(">i4").view(np.uint8), 4)
            pos = pos + 4
            if f.width is not None:
                _scatter_fixed(buf, pos, f.data, f.width)
                pos = pos + f.width
            else:
                data_len = np.maximum(f.lengths, 0)
                total = int(data_len.sum())
                if total:
                    src_start = np.cumsum(data_len) - data_len
                    dest = np.arange(total, dtype=np.int64) + np.repeat(pos - src_start, data_len)
                    buf[dest] = f.data
                pos = pos + data_len
    return buf.tobytes()


def _scatter_fixed(buf: U8, pos: I64, data: U8, width: int) -> None:
    """Write ``width`` bytes per row at ``pos`` (row-major ``data``)."""
    dest = pos[:, None] + np.arange(width, dtype=np.int64)[None, :]
    buf[dest] = data.reshape(len(pos), width)
