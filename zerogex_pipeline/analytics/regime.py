"""GEX regime backtest: the regime read at the open against what the day then did.

Per trading day:

- **regime at the open**, from the day's first ``gex_levels`` snapshot: ``positive`` / ``negative`` /
  ``zero`` by the sign of total net GEX (USD per 1% move, dealer convention), and the **distance to the
  flip** ``(spot − zero_gamma) / spot × 100`` in % of spot (positive: spot above the flip; null when zero
  gamma is null);
- **realized range** ``(high − low) / open × 100`` (%) from the day's bars (open of the first bar, highest
  high, lowest low);
- **close-to-close move** ``(close / previous close − 1) × 100`` (%), where the previous close is the last
  bar's close of the previous session **that has stored bars** (a gap in the stored history makes the
  move span it; ``previous_session_date`` says which session was used; null for the first stored day).

Days with levels but no bars are left out (nothing to measure); bars-only days still serve as the
previous close of the next day. The summary groups days by regime.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from zerogex_pipeline.schemas import require_columns

REGIME_COLUMNS = ("underlying", "session_date", "open_snapshot_ts", "regime", "spot_open", "net_gex_open",
                  "zero_gamma_open", "distance_to_flip_pct", "day_open", "day_high", "day_low", "day_close",
                  "realized_range_pct", "previous_session_date", "previous_close", "close_to_close_pct")
"""Columns of the per-day table (the ``gex_regime_backtest`` schema)."""

SUMMARY_COLUMNS = ("regime", "days", "mean_range_pct", "median_range_pct", "mean_abs_close_to_close_pct",
                   "days_with_close_to_close")
"""Columns of :func:`regime_summary`."""

REGIMES = ("positive", "negative", "zero")


class RegimeInputError(ValueError):
    """Levels or bars cannot be used for the backtest; the message names the input and the problem."""


def _single_underlying(frame: pd.DataFrame, what: str) -> None:
    values = frame["underlying"].dropna().unique()
    if len(values) > 1:
        raise RegimeInputError(f"{what}: expected one underlying, got {sorted(map(str, values))}")


def opening_regimes(levels: pd.DataFrame) -> pd.DataFrame:
    """The first snapshot of each day and its regime (columns ``underlying`` .. ``distance_to_flip_pct``).

    Args:
        levels: ``gex_levels`` rows (all snapshots, or only the first of each day); needs ``underlying,
            session_date, snapshot_ts, spot, net_gex, zero_gamma``.

    Raises:
        RegimeInputError: several underlyings, a null net GEX, or a non-positive spot at an open.
    """
    require_columns(levels, ["underlying", "session_date", "snapshot_ts", "spot", "net_gex", "zero_gamma"],
                    "levels for the regime backtest")
    _single_underlying(levels, "levels for the regime backtest")
    frame = levels.loc[:, ["underlying", "session_date", "snapshot_ts", "spot", "net_gex", "zero_gamma"]].copy()
    frame["session_date"] = pd.to_datetime(frame["session_date"]).dt.normalize()
    frame["snapshot_ts"] = pd.to_datetime(frame["snapshot_ts"], utc=True)
    first = frame.sort_values(["session_date", "snapshot_ts"]).drop_duplicates("session_date", keep="first")
    spot = first["spot"].to_numpy(np.float64)
    net = first["net_gex"].to_numpy(np.float64)
    zg = first["zero_gamma"].to_numpy(np.float64, na_value=np.nan)
    if not (np.isfinite(spot) & (spot > 0)).all():
        raise RegimeInputError("levels for the regime backtest: spot at the open must be a positive price")
    if np.isnan(net).any():
        day = first.loc[np.isnan(net), "session_date"].iloc[0]
        raise RegimeInputError(f"levels for the regime backtest: net_gex is null at the open of {day:%Y-%m-%d}")
    return pd.DataFrame({
        "underlying": first["underlying"].astype(str).to_numpy(),
        "session_date": first["session_date"].to_numpy(),
        "open_snapshot_ts": first["snapshot_ts"].to_numpy(),
        "regime": np.where(net > 0, "positive", np.where(net < 0, "negative", "zero")),
        "spot_open": spot,
        "net_gex_open": net,
        "zero_gamma_open": zg,
        "distance_to_flip_pct": (spot - zg) / spot * 100.0,
    }).assign(open_snapshot_ts=lambda f: pd.to_datetime(f["open_snapshot_ts"], utc=True))


def daily_bars(bars: pd.DataFrame) -> pd.DataFrame:
    """One row per session from bars of any interval: ``session_date, day_open, day_high, day_low, day_close``.

    The open is the first bar's open and the close the last bar's close (by ``ts``); already-daily rows
    pass through unchanged.

    Raises:
        RegimeInputError: missing columns, null prices, or a non-positive open.
    """
    require_columns(bars, ["session_date", "ts", "open", "high", "low", "close"], "bars for the regime backtest")
    frame = bars.loc[:, ["session_date", "ts", "open", "high", "low", "close"]].copy()
    frame["session_date"] = pd.to_datetime(frame["session_date"]).dt.normalize()
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    if frame[["open", "high", "low", "close"]].isna().any().any():
        raise RegimeInputError("bars for the regime backtest: null open/high/low/close")
    frame = frame.sort_values(["session_date", "ts"])
    grouped = frame.groupby("session_date", sort=True)
    daily = pd.DataFrame({
        "day_open": grouped["open"].first(),
        "day_high": grouped["high"].max(),
        "day_low": grouped["low"].min(),
        "day_close": grouped["close"].last(),
    }).reset_index()
    if (daily["day_open"] <= 0).any():
        raise RegimeInputError("bars for the regime backtest: a day's open is not a positive price")
    return daily


def regime_table(levels: pd.DataFrame, bars: pd.DataFrame) -> pd.DataFrame:
    """Per day with both levels and bars: the opening regime, the realized range and the close-to-close move.

    Returns:
        :data:`REGIME_COLUMNS`, one row per day, in date order (see the module docstring for units).
    """
    regimes = opening_regimes(levels)
    daily = daily_bars(bars)
    daily["previous_session_date"] = daily["session_date"].shift(1)
    daily["previous_close"] = daily["day_close"].shift(1)
    joined = regimes.merge(daily, on="session_date", how="inner", validate="one_to_one")
    joined["realized_range_pct"] = (joined["day_high"] - joined["day_low"]) / joined["day_open"] * 100.0
    joined["close_to_close_pct"] = (joined["day_close"] / joined["previous_close"] - 1.0) * 100.0
    return joined.loc[:, list(REGIME_COLUMNS)].sort_values("session_date").reset_index(drop=True)


def regime_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per regime present: day count, mean and median realized range (%), mean |close-to-close| (%).

    The close-to-close mean skips days without a previous close (``days_with_close_to_close`` counts
    the others); it is NaN when no day of the regime has one.
    """
    require_columns(table, ["regime", "realized_range_pct", "close_to_close_pct"], "regime table")
    rows = []
    for regime in REGIMES:
        days = table[table["regime"] == regime]
        if days.empty:
            continue
        moves = days["close_to_close_pct"].abs().dropna()
        rows.append({
            "regime": regime,
            "days": len(days),
            "mean_range_pct": float(days["realized_range_pct"].mean()),
            "median_range_pct": float(days["realized_range_pct"].median()),
            "mean_abs_close_to_close_pct": float(moves.mean()) if len(moves) else float("nan"),
            "days_with_close_to_close": len(moves),
        })
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
