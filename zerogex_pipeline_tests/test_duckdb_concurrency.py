"""The embedded store shared by processes: readers wait for a writer's lock, bounded, like writers do; a disk
that turned read-only fails at once (issue 13, items 2 and 8)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from zerogex_pipeline.runner import RunFailedError, materialize_day
from zerogex_pipeline.schemas import GEX_LEVELS
from zerogex_pipeline.settings import Settings
from zerogex_pipeline.storage import levels_reader
from zerogex_pipeline.storage.duckdb_io_manager import create_table_sql
from zerogex_pipeline.underlyings import resolve_underlying

SPY = resolve_underlying("SPY")

HOLD = """
import sys, time, duckdb
conn = duckdb.connect(sys.argv[1])
conn.begin()
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.close()
"""


def hold_lock(path: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process holding the DuckDB file read-write for ``seconds`` (DuckDB's lock is per process)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_a_reader_waits_for_a_writer_instead_of_failing(settings: Settings) -> None:
    settings.duckdb_path.parent.mkdir(parents=True)
    with duckdb.connect(str(settings.duckdb_path)) as conn:
        conn.execute("CREATE SCHEMA spy")
        conn.execute(create_table_sql('"spy"."gex_levels"', GEX_LEVELS))
    writer = hold_lock(settings.duckdb_path, 2.0)
    started = time.monotonic()
    try:
        frame = levels_reader.latest_levels(settings, SPY)  # `zerogex levels --latest` while a run writes
    finally:
        writer.wait(30)
    assert frame.empty
    assert time.monotonic() - started >= 1.0  # it waited for the lock rather than "Could not set lock on file"


@pytest.fixture
def read_only_store(tmp_path: Path) -> Iterator[Path]:
    """A data dir on its own tmpfs, remounted read-only by the test (skips where mounting is not allowed)."""
    mount = tmp_path / "mnt"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "zerogex_test", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_read_only_disk_under_the_embedded_store_fails_at_once(read_only_store: Path) -> None:
    settings = Settings(data_dir=read_only_store, expirations=1, snapshot_minutes=60)
    with dg.instance_for_test() as instance:
        materialize_day(SPY, dt.date(2025, 1, 15), settings, instance)
        subprocess.run(["mount", "-o", "remount,ro", str(read_only_store)], check=True)
        started = time.monotonic()
        with pytest.raises(RunFailedError) as caught:
            materialize_day(SPY, dt.date(2025, 1, 16), settings, instance)
    assert time.monotonic() - started < 20  # 108 s before: DuckDB's errors were all retried as lock waits
    message = str(caught.value)
    assert "cannot open the embedded store" in message and "Read-only file system" in message
    assert "\n" not in message
