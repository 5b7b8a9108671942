"""The underlyings ZeroGEX knows: symbols, option listing style, strike grid and dividend yield.

Names are what users type in ``ZEROGEX_UNDERLYINGS`` (``SPY``, ``SPX``, ``QQQ``); ``ts_symbol`` is the
TradeStation symbol (``$SPX.X`` for the index); ``key`` is the lower-case asset-key prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ListingStyle = Literal["etf_daily", "index_am_pm"]

CONTRACT_MULTIPLIER = 100
"""Shares (or index units) per option contract."""


class UnknownUnderlyingError(ValueError):
    """An underlying name that ZeroGEX has no specification for."""


@dataclass(frozen=True)
class Underlying:
    """Static description of one underlying and its listed options.

    Attributes:
        name: canonical name (``SPY``).
        ts_symbol: TradeStation symbol of the underlying (``SPY``, ``$SPX.X``).
        key: asset-key prefix and storage schema name (``spy``).
        listing_style: ``etf_daily`` (daily PM expirations plus third-Friday monthlies) or
            ``index_am_pm`` (PM-settled weeklies/dailies plus AM-settled third-Friday monthlies).
        strike_step: strike spacing near spot, in USD.
        dividend_yield: continuous dividend yield q (annualized) used in Black-Scholes-Merton.
        sim_reference_price: level of the simulated market on its reference date, in USD.
        sim_annual_vol: annualized realized volatility of the simulated path.
    """

    name: str
    ts_symbol: str
    key: str
    listing_style: ListingStyle
    strike_step: float
    dividend_yield: float
    sim_reference_price: float
    sim_annual_vol: float


_REGISTRY: dict[str, Underlying] = {
    "SPY": Underlying("SPY", "SPY", "spy", "etf_daily", 1.0, 0.012, 600.0, 0.16),
    "SPX": Underlying("SPX", "$SPX.X", "spx", "index_am_pm", 5.0, 0.012, 6000.0, 0.16),
    "QQQ": Underlying("QQQ", "QQQ", "qqq", "etf_daily", 1.0, 0.006, 520.0, 0.21),
}
_ALIASES = {"$SPX.X": "SPX", "$SPX": "SPX", "SPXW": "SPX"}


def resolve_underlying(name: str) -> Underlying:
    """Return the specification for ``name`` (case-insensitive; TradeStation symbols accepted).

    Raises:
        UnknownUnderlyingError: ``name`` is not one of the known underlyings.
    """
    upper = name.strip().upper()
    canonical = _ALIASES.get(upper, upper)
    try:
        return _REGISTRY[canonical]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise UnknownUnderlyingError(f"unknown underlying {name!r}; expected one of {known}") from None


def known_underlyings() -> tuple[Underlying, ...]:
    """Every underlying ZeroGEX can build assets for."""
    return tuple(_REGISTRY.values())
