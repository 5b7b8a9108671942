"""Opening an embedded DuckDB file that other processes use too.

DuckDB lets one process open a file read-write, or several open it read-only, never both at once; a second
opener gets ``IOException: Could not set lock on file``. Every process of the pipeline (Dagster runs, the
stream engine, the CLI readers, the dashboard) opens a file only for one short transaction, so an opener
that finds it locked waits, with short growing pauses, up to ``wait_s`` seconds, then fails with one line
naming the file. Other errors (a missing or corrupt file, a read-only disk) fail at once.
"""

from __future__ import annotations

import time
from pathlib import Path

import duckdb

from zerogex_pipeline.storage.table_slices import StorageError

LOCK_MESSAGE = "Could not set lock"
DEFAULT_WAIT_S = 30.0


def is_lock_conflict(exc: BaseException) -> bool:
    """True when ``exc`` is DuckDB refusing the file because another process holds it."""
    return isinstance(exc, duckdb.IOException) and LOCK_MESSAGE in str(exc)


def open_duckdb(path: Path, read_only: bool = False, wait_s: float = DEFAULT_WAIT_S) -> duckdb.DuckDBPyConnection:
    """A connection to the DuckDB file ``path`` with the session time zone set to UTC.

    Args:
        path: the database file; a writer creates it (and its folder) when missing.
        read_only: open for reading (the file must exist).
        wait_s: seconds to wait while another process holds the file.

    Raises:
        StorageError: the file is missing (read-only), still locked after ``wait_s``, or cannot be opened.
    """
    if read_only and not path.exists():
        raise StorageError(f"{path}: no embedded store yet; run `make run` (or `zerogex stream`) first")
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + max(wait_s, 0.0)
    pause = 0.005
    while True:
        try:
            conn = duckdb.connect(str(path), read_only=read_only)
            break
        except duckdb.Error as exc:
            if not is_lock_conflict(exc):
                raise StorageError(f"{path}: cannot open the embedded store: {exc}") from None
            if time.monotonic() >= deadline:
                raise StorageError(
                    f"{path}: still in use by another process after {wait_s:.0f} s (a long write?); try again"
                ) from None
            time.sleep(min(pause, max(deadline - time.monotonic(), 0.0)))
            pause = min(pause * 2, 0.2)
    conn.execute("SET TimeZone = 'UTC'")
    return conn
