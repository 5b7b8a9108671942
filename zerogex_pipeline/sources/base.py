"""The data-source interface every market-data adapter implements.

Frames returned follow ``zerogex_pipeline.schemas`` (``UNDERLYING_BARS`` and ``CHAIN_QUOTES``: the stored chain without its ``expiration_slot``).
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol, runtime_checkable

import pandas as pd

from zerogex_pipeline.market_calendar import TradingSession
from zerogex_pipeline.underlyings import Underlying


class SourceDataError(RuntimeError):
    """The source returned data that cannot be used (message names the request and the problem)."""


@runtime_checkable
class MarketDataSource(Protocol):
    """What the assets need from a market-data provider."""

    name: str
    """``simulated`` or ``tradestation``; written to the ``source`` column."""

    def underlying_bars(self, underlying: Underlying, session: TradingSession, bar_minutes: int) -> pd.DataFrame:
        """Regular-session OHLCV bars of ``bar_minutes`` minutes, one row per bar, ``ts`` = bar end (UTC)."""
        ...

    def listed_expirations(self, underlying: Underlying, as_of: dt.date) -> list[dt.date]:
        """Option expirations listed on ``as_of`` that settle on or after it, ascending."""
        ...

    def chain_snapshots(
        self,
        underlying: Underlying,
        session: TradingSession,
        expiration: dt.date,
        spots: pd.DataFrame,
        strike_distance_pct: float,
    ) -> pd.DataFrame:
        """Option-chain snapshots of one expiration on one session.

        Args:
            spots: one row per snapshot with ``snapshot_ts`` (UTC), ``spot`` (USD) and ``spot_ts`` (UTC),
                taken from ``underlying_bars``.
            strike_distance_pct: keep contracts with ``|strike / spot - 1| <= strike_distance_pct / 100``
                at each snapshot.
        """
        ...


def spots_from_bars(bars: pd.DataFrame, snapshot_times: pd.DatetimeIndex) -> pd.DataFrame:
    """Spot at each snapshot: the close of the latest bar ending at or before it.

    A snapshot before the first bar's end (the opening snapshot) uses the first bar's open, stamped
    at the session open. Returns columns ``snapshot_ts``, ``spot``, ``spot_ts``.

    Raises:
        SourceDataError: ``bars`` is empty.
    """
    if bars.empty:
        raise SourceDataError("underlying_bars: no bars for the session; cannot take spot for the snapshots")
    ordered = bars.sort_values("ts")
    ends = pd.DatetimeIndex(ordered["ts"])
    idx = ends.searchsorted(snapshot_times, side="right") - 1
    closes = ordered["close"].to_numpy()
    first_open = float(ordered["open"].iloc[0])
    first_start = snapshot_times[0] if len(snapshot_times) else ends[0]
    spot = [closes[i] if i >= 0 else first_open for i in idx]
    spot_ts = [ends[i] if i >= 0 else min(first_start, ends[0]) for i in idx]
    return pd.DataFrame(
        {"snapshot_ts": snapshot_times, "spot": spot, "spot_ts": pd.DatetimeIndex(spot_ts).tz_convert("UTC")}
    )
