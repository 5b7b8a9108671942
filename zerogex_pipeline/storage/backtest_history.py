"""The stored history the regime backtest reads: each day's first levels snapshot and its daily bars.

Two aggregate queries on the configured store (embedded DuckDB or PostgreSQL, same SQL), so a year of
1-minute bars is reduced to one row per day in the database instead of being loaded into memory:

- opening levels: ``gex_levels`` rows with the smallest ``snapshot_ts`` of each ``session_date``;
- daily bars: first bar's open, highest high, lowest low, last bar's close per ``session_date`` (with the
  last bar's ``ts``), i.e. the same numbers :func:`zerogex_pipeline.analytics.regime.daily_bars` computes.

A store or table that does not exist yet reads as no history.
"""

from __future__ import annotations

import pandas as pd

from zerogex_pipeline.settings import Settings
from zerogex_pipeline.storage.store_session import StoreSession, store_session
from zerogex_pipeline.underlyings import Underlying

OPENING_LEVEL_COLUMNS = ["underlying", "session_date", "snapshot_ts", "spot", "net_gex", "zero_gamma"]
DAILY_BAR_COLUMNS = ["session_date", "ts", "open", "high", "low", "close"]


def _opening_levels(session: StoreSession) -> pd.DataFrame:
    if not session.has_table("gex_levels"):
        return pd.DataFrame(columns=OPENING_LEVEL_COLUMNS)
    rows = session.rows(
        "SELECT underlying, session_date, snapshot_ts, spot, net_gex, zero_gamma FROM ("
        " SELECT underlying, session_date, snapshot_ts, spot, net_gex, zero_gamma,"
        " row_number() OVER (PARTITION BY session_date ORDER BY snapshot_ts) AS rn"
        f" FROM {session.table('gex_levels')}) AS t WHERE rn = 1 ORDER BY session_date"
    )
    return _frame(rows, OPENING_LEVEL_COLUMNS, "snapshot_ts")


def _daily_bars(session: StoreSession) -> pd.DataFrame:
    if not session.has_table("underlying_bars"):
        return pd.DataFrame(columns=DAILY_BAR_COLUMNS)
    rows = session.rows(
        "SELECT session_date, max(ts) AS ts,"
        " max(CASE WHEN first_rn = 1 THEN open END) AS open, max(high) AS high, min(low) AS low,"
        " max(CASE WHEN last_rn = 1 THEN close END) AS close FROM ("
        " SELECT session_date, ts, open, high, low, close,"
        " row_number() OVER (PARTITION BY session_date ORDER BY ts) AS first_rn,"
        " row_number() OVER (PARTITION BY session_date ORDER BY ts DESC) AS last_rn"
        f" FROM {session.table('underlying_bars')}) AS b GROUP BY session_date ORDER BY session_date"
    )
    return _frame(rows, DAILY_BAR_COLUMNS, "ts")


def _frame(rows: list[tuple[object, ...]], columns: list[str], ts_column: str) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=columns)
    frame["session_date"] = pd.to_datetime(frame["session_date"])
    frame[ts_column] = pd.to_datetime(frame[ts_column], utc=True)
    for name in columns:
        if name not in ("underlying", "session_date", ts_column):
            frame[name] = pd.to_numeric(frame[name]).astype("float64")
    return frame


def read_history(settings: Settings, underlying: Underlying) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(opening levels, daily bars)`` of ``underlying`` over everything stored (empty frames when none)."""
    with store_session(settings, underlying.key) as session:
        if session is None:
            return pd.DataFrame(columns=OPENING_LEVEL_COLUMNS), pd.DataFrame(columns=DAILY_BAR_COLUMNS)
        return _opening_levels(session), _daily_bars(session)
