"""Which streams cover the strike window: the plan per tracked expiration, and the stream budget.

Per expiration, the window to stream is every listed strike within ``distance + margin`` percent of spot
(the margin lets spot move before the streams must be re-centred). An option-chain stream shows at most
``max_proximity`` strikes on each side of its center (200 at TradeStation, by the issue that found the SPX
window cut at -8.7%/+8.4%), so when the window needs more (SPX near 11,800 with $5 strikes needs ~280 on each
side at ±12%), the strikes beyond the chain stream's reach go on quote streams (at most 100 symbols each):
the chain stream keeps the vendor IV and greeks near the money, the tails have quotes and open interest
and their IV is solved from the quote like any historical row.

Budget: at most ``slots`` option-chain streams at once for the API key across the machine (10). Expirations
are given slots nearest first across the underlyings (every 0DTE, then every next expiration, ...); an
expiration without a slot is not streamed, and the plan says so (its snapshots are filled from bars later).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from zerogex_pipeline.tradestation.symbols import format_option_symbol as option_symbol
from zerogex_pipeline.underlyings import Underlying

MAX_STRIKE_PROXIMITY = 200
MAX_QUOTE_SYMBOLS = 100
DEFAULT_MARGIN_PCT = 1.5


@dataclass(frozen=True)
class Series:
    """One listed series of an expiration: option root (``SPXW``) and settlement (``AM``/``PM``)."""

    root: str
    settlement: str


@dataclass(frozen=True)
class ExpirationPlan:
    """How one expiration of one underlying is streamed.

    Attributes:
        center: the chain stream's ``priceCenter`` (USD); chain_proximity: its ``strikeProximity``.
        chain_strikes: strikes (USD) the chain stream shows; tail_strikes: strikes on quote streams.
        slot: False when no option-stream slot was left (nothing of it is streamed).
    """

    underlying: Underlying
    expiration: dt.date
    series: tuple[Series, ...]
    center: float
    chain_proximity: int
    chain_strikes: tuple[float, ...]
    tail_strikes: tuple[float, ...]
    slot: bool = True

    @property
    def label(self) -> str:
        return f"{self.underlying.name} {self.expiration}"

    @property
    def strikes(self) -> frozenset[float]:
        """Every strike this plan streams (chain and tails)."""
        return frozenset(self.chain_strikes) | frozenset(self.tail_strikes)

    def tail_symbols(self) -> list[str]:
        """Option symbols of the tail strikes, every series, calls and puts."""
        return [option_symbol(s.root, self.expiration, right, k) for k in self.tail_strikes
                for s in self.series for right in ("C", "P")]

    def tail_batches(self) -> list[list[str]]:
        """The tail symbols in quote-stream batches of at most :data:`MAX_QUOTE_SYMBOLS`."""
        symbols = self.tail_symbols()
        return [symbols[i:i + MAX_QUOTE_SYMBOLS] for i in range(0, len(symbols), MAX_QUOTE_SYMBOLS)]

    def chain_symbols(self) -> set[str]:
        """Symbols the chain stream should send (completeness of its initial snapshot)."""
        return {option_symbol(s.root, self.expiration, right, k) for k in self.chain_strikes
                for s in self.series for right in ("C", "P")}

    def uncovered(self, listed: np.ndarray, spot: float, distance_pct: float) -> list[float]:
        """Listed strikes within ``distance_pct`` of ``spot`` that this plan does not stream (re-centre when any)."""
        band = distance_pct / 100.0
        need = listed[np.abs(listed / spot - 1.0) <= band + 1e-12]
        have = self.strikes
        return [float(k) for k in need if float(k) not in have]


def plan_expiration(u: Underlying, expiration: dt.date, series: Sequence[Series], listed: np.ndarray, spot: float,
                    distance_pct: float, margin_pct: float = DEFAULT_MARGIN_PCT,
                    max_proximity: int = MAX_STRIKE_PROXIMITY) -> ExpirationPlan:
    """The streams for one expiration: a chain stream centred at spot, and quote-stream tails beyond its cap.

    ``listed``: the expiration's listed strikes (USD, any order). The chain stream's center is the listed
    strike nearest spot; it shows ``proximity`` strikes at or below the center and as many above.
    """
    grid = np.unique(np.asarray(listed, dtype=np.float64))
    if grid.size == 0:
        raise ValueError(f"{u.name} {expiration}: no listed strikes to stream")
    band = (distance_pct + margin_pct) / 100.0
    need = grid[np.abs(grid / spot - 1.0) <= band + 1e-12]
    center = float(grid[np.argmin(np.abs(grid - spot))])
    below_all, above_all = need[need <= center], need[need > center]
    proximity = max(1, min(max_proximity, max(below_all.size, above_all.size)))
    below = grid[grid <= center][-proximity:]
    above = grid[grid > center][:proximity]
    chain = np.concatenate([below, above])
    tails = np.setdiff1d(need, chain)
    return ExpirationPlan(u, expiration, tuple(series), center, int(proximity), tuple(float(k) for k in chain),
                          tuple(float(k) for k in tails))


def allot_slots(plans: Sequence[Sequence[ExpirationPlan]], slots: int) -> list[ExpirationPlan]:
    """Give chain-stream slots nearest expiration first across underlyings; the rest get ``slot=False``.

    ``plans``: per underlying, its expirations nearest first. Returns every plan, flattened in slot order.
    """
    ordered: list[ExpirationPlan] = []
    depth = max((len(p) for p in plans), default=0)
    for rank in range(depth):
        ordered += [p[rank] for p in plans if rank < len(p)]
    out = []
    for i, plan in enumerate(ordered):
        out.append(plan if i < slots else ExpirationPlan(
            plan.underlying, plan.expiration, plan.series, plan.center, plan.chain_proximity, plan.chain_strikes,
            plan.tail_strikes, slot=False))
    return out


def not_streamed_message(plans: Sequence[ExpirationPlan], slots: int) -> str | None:
    """One line naming the expirations left without a stream, or ``None`` when all fit."""
    left = [p.label for p in plans if not p.slot]
    if not left:
        return None
    return (f"{len(left)} tracked expiration(s) NOT streamed (at most {slots} option-chain streams at once for the "
            f"API key): {', '.join(left)}; their snapshots will be filled from bars by the next chain "
            "materialization. Track fewer underlyings or expirations (ZEROGEX_UNDERLYINGS, ZEROGEX_EXPIRATIONS).")
