"""The simulated market as a :class:`~zerogex_pipeline.sources.base.MarketDataSource`."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from zerogex_pipeline.market_calendar import TradingSession
from zerogex_pipeline.schemas import CHAIN_QUOTES, UNDERLYING_BARS
from zerogex_pipeline.sources.simulated import listing, price_path, quotes
from zerogex_pipeline.underlyings import Underlying


class SimulatedMarket:
    """Deterministic synthetic market data for (underlying, date): same inputs, same numbers, any order."""

    name = "simulated"

    def underlying_bars(self, underlying: Underlying, session: TradingSession, bar_minutes: int) -> pd.DataFrame:
        return UNDERLYING_BARS.conform(price_path.session_bars(underlying, session, bar_minutes))

    def listed_expirations(self, underlying: Underlying, as_of: dt.date) -> list[dt.date]:
        return listing.listed_expirations(underlying, as_of)

    def chain_snapshots(
        self,
        underlying: Underlying,
        session: TradingSession,
        expiration: dt.date,
        spots: pd.DataFrame,
        strike_distance_pct: float,
    ) -> pd.DataFrame:
        day = session.date
        if expiration not in self.listed_expirations(underlying, day) or spots.empty:
            return CHAIN_QUOTES.empty_frame()
        center = price_path.previous_close(underlying, day)
        strikes = listing.strike_grid(underlying, center)
        frames = []
        for series in listing.series_for(underlying, expiration, day):
            for option_type in ("C", "P"):
                is_call = np.full(strikes.shape, option_type == "C")
                oi = quotes.open_interest(underlying, series.root, expiration, day, strikes, is_call, center)
                frames.append(pd.DataFrame({
                    "symbol": [listing.option_symbol(series.root, expiration, option_type, k) for k in strikes],
                    "option_type": option_type,
                    "strike": strikes,
                    "settlement": series.settlement,
                    "open_interest": oi,
                }))
        contracts = pd.concat(frames, ignore_index=True)
        grid = spots.merge(contracts, how="cross")
        band = strike_distance_pct / 100.0
        grid = grid[np.abs(grid["strike"] / grid["spot"] - 1.0) <= band].reset_index(drop=True)
        grid["underlying"] = underlying.name
        grid["session_date"] = pd.Timestamp(day)
        grid["expiration"] = pd.Timestamp(expiration)
        grid["source"] = self.name
        grid["origin"] = "historical"
        elapsed = ((grid["snapshot_ts"] - session.open) / (session.close - session.open)).to_numpy(np.float64)
        path = price_path.daily_path(underlying)
        priced = quotes.price_chain(
            underlying,
            grid,
            regime_vol=price_path.volatility_regime(underlying, day),
            open_spot=float(path.open[path.locate(day)]),
            fraction_elapsed=elapsed,
            seed_parts=(underlying.name, expiration.isoformat(), day.isoformat()),
        )
        priced = priced.sort_values(["snapshot_ts", "strike", "symbol"], kind="stable")
        return CHAIN_QUOTES.conform(priced)
