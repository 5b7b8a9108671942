"""From the live state to what is stored: a snapshot's captured rows and its live levels.

Both come from the same :class:`SnapshotArrays` (the contracts in the strike window at one instant, with
missing bid/ask read as 0 as the schema says and ``mid`` derived from them when a quote stream did not send
one), so the levels of a snapshot instant are those ``gex_levels`` computes later from its captured rows:
the same core (:func:`zerogex_pipeline.analytics.levels.chain_levels`) on the same numbers, per contract
instead of per strike (equal to 1e-9 relative; a test holds it).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from zerogex_pipeline.analytics.chain import IV_SOURCES, choose_iv_arrays
from zerogex_pipeline.analytics.engine import Chain
from zerogex_pipeline.analytics.expiry import settlement_nanos, years_between_nanos
from zerogex_pipeline.analytics.levels import chain_levels, expiration_codes
from zerogex_pipeline.live.book import BookView, Spot
from zerogex_pipeline.schemas import CAPTURED_QUOTES, LIVE_LEVELS
from zerogex_pipeline.underlyings import Underlying

STREAM_KINDS = ("chain", "quotes")
"""``captured_quotes.stream`` values: index = the stream kind code a feed gives each contract's stream."""


@dataclass(frozen=True)
class SnapshotArrays:
    """The contracts of one underlying in the window at one instant (prices USD per share, T years)."""

    instant: pd.Timestamp
    spot: Spot
    symbol: npt.NDArray[np.object_]
    expiration: npt.NDArray[np.datetime64]
    settlement: npt.NDArray[np.str_]
    is_call: npt.NDArray[np.bool_]
    strike: npt.NDArray[np.float64]
    bid: npt.NDArray[np.float64]
    ask: npt.NDArray[np.float64]
    last: npt.NDArray[np.float64]
    mid: npt.NDArray[np.float64]
    volume: npt.NDArray[np.float64]
    open_interest: npt.NDArray[np.float64]
    iv: npt.NDArray[np.float64]
    greeks: dict[str, npt.NDArray[np.float64]]
    quote_ts: npt.NDArray[np.int64]
    stream_kind: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.symbol)


def window_mask(view: BookView, spot: float, distance_pct: float,
                expirations: set[dt.date] | None = None) -> npt.NDArray[np.bool_]:
    """Contracts with ``|strike / spot - 1| <= distance_pct / 100`` (of ``expirations`` when given)."""
    mask = np.abs(view.strike / spot - 1.0) <= distance_pct / 100.0 + 1e-12
    if expirations is not None:
        wanted = np.array(sorted(np.datetime64(e, "D") for e in expirations), dtype="datetime64[D]")
        mask &= np.isin(view.expiration, wanted)
    return mask


def snapshot_arrays(view: BookView, mask: npt.NDArray[np.bool_], instant: pd.Timestamp, spot: Spot,
                    stream_kind: npt.NDArray[np.int64]) -> SnapshotArrays:
    """The masked contracts, ordered by expiration, strike, calls first, settlement; the schema's defaults applied.

    ``stream_kind`` gives each row of ``view`` its stream kind code (index into :data:`STREAM_KINDS`).
    """
    idx = np.flatnonzero(mask)
    order = np.lexsort((view.settlement[idx], ~view.is_call[idx], view.strike[idx], view.expiration[idx]))
    idx = idx[order]
    values = view.values[idx]

    def col(i: int) -> npt.NDArray[np.float64]:
        return np.ascontiguousarray(values[:, i])

    bid = np.nan_to_num(col(0), nan=0.0)
    ask = np.nan_to_num(col(1), nan=0.0)
    mid = np.where(np.isfinite(col(3)), col(3), np.round((bid + ask) / 2.0, 4))
    return SnapshotArrays(
        instant=instant, spot=spot, symbol=np.asarray(view.symbol[: len(view)], dtype=object)[idx],
        expiration=view.expiration[idx], settlement=view.settlement[idx], is_call=view.is_call[idx],
        strike=view.strike[idx], bid=bid, ask=ask, last=col(2), mid=mid,
        volume=np.nan_to_num(col(4), nan=0.0), open_interest=np.nan_to_num(col(5), nan=0.0), iv=col(6),
        greeks={"delta": col(7), "gamma": col(8), "vega": col(9), "theta": col(10)},
        quote_ts=view.quote_ts[idx], stream_kind=stream_kind[idx],
    )


def _settlements(snap: SnapshotArrays) -> npt.NDArray[np.int64]:
    """Each contract's settlement instant (UTC ns: the open for AM, the close for PM)."""
    return settlement_nanos(snap.expiration.astype("datetime64[D]").astype(np.int64), snap.settlement == "AM")


def _instant_ns(snap: SnapshotArrays) -> int:
    return int(snap.instant.as_unit("ns").value)


def capture_frame(u: Underlying, session_date: dt.date, snap: SnapshotArrays, source: str) -> pd.DataFrame:
    """``captured_quotes`` rows of one snapshot (one row per contract; ``spot_ts`` = the spot's own time).

    A contract at or past its settlement instant (a 0DTE at the close) has no IV or greeks: they are stored NaN.
    A feed stops sending them then, and the book reads an absent field as unchanged, so it still holds the values
    of a moment before (an at-the-money gamma ten seconds before expiry is its largest)."""
    spot_ts = pd.Timestamp(snap.spot.trade_ns, tz="UTC")
    settled = _settlements(snap) <= _instant_ns(snap)
    greeks = {name: np.where(settled, np.nan, values) for name, values in snap.greeks.items()}
    return CAPTURED_QUOTES.conform(pd.DataFrame({
        "underlying": u.name, "session_date": pd.Timestamp(session_date),
        "expiration": snap.expiration.astype("datetime64[ns]"), "snapshot_ts": snap.instant,
        "symbol": snap.symbol, "option_type": np.where(snap.is_call, "C", "P"), "strike": snap.strike,
        "settlement": snap.settlement, "bid": snap.bid, "ask": snap.ask, "last": snap.last, "mid": snap.mid,
        "volume": snap.volume.astype(np.int64), "open_interest": snap.open_interest.astype(np.int64),
        "iv": np.where(settled, np.nan, snap.iv), **greeks, "spot": snap.spot.price, "spot_ts": spot_ts, "source": source,
        "quote_ts": pd.to_datetime(snap.quote_ts, utc=True),
        "stream": np.asarray(STREAM_KINDS, dtype=object)[snap.stream_kind],
    }))


def snapshot_chain(snap: SnapshotArrays, rate: float, dividend_yield: float) -> tuple[Chain, dict[str, int]]:
    """The analytics core's arrays of a snapshot (one entry per contract) and its IV-source counts.

    Same inputs as ``gex_surface`` builds from the captured rows: T from the snapshot instant to each
    settlement instant, IV as :func:`~zerogex_pipeline.analytics.chain.choose_iv` picks it, expirations
    labeled per (date, settlement).
    """
    n = len(snap)
    T = years_between_nanos(_instant_ns(snap), _settlements(snap))
    spot = np.full(n, snap.spot.price)
    choice = choose_iv_arrays(snap.iv, snap.bid, snap.ask, snap.mid, snap.last, spot, snap.strike, T, rate,
                              dividend_yield, snap.is_call)
    usable = np.isfinite(choice.iv) & (T > 0.0)
    codes, labels = expiration_codes(snap.expiration, snap.settlement)
    chain = Chain(
        spot=float(snap.spot.price), r=rate, q=dividend_yield, strike=snap.strike, T=T,
        iv=np.where(usable, choice.iv, np.nan), oi=snap.open_interest, volume=snap.volume, is_call=snap.is_call,
        expiry=codes, expirations=labels,
    )
    counts = np.bincount(choice.source.astype(np.intp), minlength=len(IV_SOURCES))
    return chain, {name: int(c) for name, c in zip(IV_SOURCES, counts, strict=True) if c}


def levels_row(u: Underlying, session_date: dt.date, snap: SnapshotArrays, rate: float, dividend_yield: float,
               feed: str, missing: str | None, started_ns: int) -> dict[str, object]:
    """One ``live_levels`` row; ``compute_ms`` counts from ``started_ns`` (``time.perf_counter_ns``)."""
    import time

    chain, sources = snapshot_chain(snap, rate, dividend_yield)
    expirations = [str(e) for e in np.unique(snap.expiration.astype("datetime64[D]"))]
    record = chain_levels(chain, sources, expirations)
    return {
        "underlying": u.name, "session_date": pd.Timestamp(session_date), "snapshot_ts": snap.instant,
        **record, "spot_ts": pd.Timestamp(snap.spot.trade_ns, tz="UTC"), "feed": feed, "missing": missing,
        "compute_ms": (time.perf_counter_ns() - started_ns) / 1e6,
    }


def levels_frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    """``live_levels`` frame of computed rows."""
    return LIVE_LEVELS.conform(pd.DataFrame.from_records(rows)) if rows else LIVE_LEVELS.empty_frame()
