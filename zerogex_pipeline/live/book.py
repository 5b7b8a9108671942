"""The live state of one underlying: its option contracts' quotes, its spot and its closed bars.

Feeds write into it from their threads; the engine reads consistent copies (:meth:`ContractBook.view`) at
each interval and snapshot instant. Contract state is a struct of arrays (one row per contract, grown as
contracts appear), so turning it into the analytics core's arrays costs a copy, not a frame per contract.

Units: prices USD per share, IV annualized decimal, volume and open interest contracts, vendor gamma per
share per USD, vega USD per vol point, theta USD per calendar day (as TradeStation sends them). Instants
are engine-clock UTC nanoseconds (``int64``).
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pandas as pd

QUOTE_FIELDS = ("bid", "ask", "last", "mid", "volume", "open_interest", "iv", "delta", "gamma", "vega", "theta")
"""Per-contract state columns, in the order of :attr:`BookView.values`."""
FIELD = {name: i for i, name in enumerate(QUOTE_FIELDS)}
NO_TIME = np.iinfo(np.int64).min


@dataclass(frozen=True)
class BookView:
    """A consistent copy of a :class:`ContractBook` (rows = contracts, in the order they were added)."""

    symbol: list[str]
    """Shared with the book (it only ever appends): read the first ``len(view)`` entries."""
    expiration: npt.NDArray[np.datetime64]
    settlement: npt.NDArray[np.str_]
    is_call: npt.NDArray[np.bool_]
    strike: npt.NDArray[np.float64]
    stream: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    quote_ts: npt.NDArray[np.int64]

    def column(self, name: str) -> npt.NDArray[np.float64]:
        """One of :data:`QUOTE_FIELDS` (NaN where the feed never sent it)."""
        return self.values[:, FIELD[name]]

    def __len__(self) -> int:
        return len(self.strike)


BookUpdate = tuple[str, dt.date, str, str, float, int, dict[str, float], int]
"""One contract's update: symbol, expiration, settlement, option type, strike, stream id, values, ``at_ns``."""


class ContractBook:
    """Quote state of every option contract streamed for one underlying (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._index: dict[str, int] = {}
        self._symbol: list[str] = []
        self._n = 0
        cap = 64
        self._expiration = np.empty(cap, dtype="datetime64[D]")
        self._settlement = np.empty(cap, dtype="<U2")
        self._is_call = np.empty(cap, dtype=bool)
        self._strike = np.empty(cap, dtype=np.float64)
        self._stream = np.empty(cap, dtype=np.int64)
        self._values = np.full((cap, len(QUOTE_FIELDS)), np.nan)
        self._quote_ts = np.full(cap, NO_TIME, dtype=np.int64)

    def __len__(self) -> int:
        return self._n

    def _grow(self) -> None:
        cap = 2 * len(self._strike)
        for name in ("_expiration", "_settlement", "_is_call", "_strike", "_stream", "_quote_ts"):
            old = getattr(self, name)
            new = np.empty(cap, dtype=old.dtype)
            new[: self._n] = old[: self._n]
            setattr(self, name, new)
        values = np.full((cap, len(QUOTE_FIELDS)), np.nan)
        values[: self._n] = self._values[: self._n]
        self._values = values

    def update(self, symbol: str, expiration: dt.date, settlement: str, option_type: str, strike: float,
               stream: int, values: dict[str, float], at_ns: int) -> None:
        """Merge one contract's update: fields present in ``values`` replace the state, others are kept.

        A contract seen for the first time is added. ``stream`` is the id of the stream that sent it.
        """
        with self._lock:
            self._update_locked(symbol, expiration, settlement, option_type, strike, stream, values, at_ns)

    def _update_locked(self, symbol: str, expiration: dt.date, settlement: str, option_type: str, strike: float,
                       stream: int, values: dict[str, float], at_ns: int) -> None:
        i = self._row_locked(symbol, expiration, settlement, option_type, strike)
        row = self._values[i]
        for name, value in values.items():
            row[FIELD[name]] = value
        self._stream[i] = stream
        self._quote_ts[i] = at_ns

    def _row_locked(self, symbol: str, expiration: dt.date, settlement: str, option_type: str, strike: float) -> int:
        """The row of ``symbol``, appended with its contract terms when it is new (the lock is held)."""
        i = self._index.get(symbol)
        if i is None:
            if self._n == len(self._strike):
                self._grow()
            i = self._n
            self._index[symbol] = i
            self._symbol.append(symbol)
            self._expiration[i] = np.datetime64(expiration, "D")
            self._settlement[i] = settlement
            self._is_call[i] = option_type == "C"
            self._strike[i] = strike
            self._n += 1
        return i

    def update_batch(self, updates: list[BookUpdate]) -> None:
        """:meth:`update` of each ``(symbol, expiration, settlement, option_type, strike, stream, values, at_ns)``,
        all at once: a reader sees none or all of them."""
        with self._lock:
            for u in updates:
                self._update_locked(*u)

    def update_many(self, symbols: list[str], expiration: dt.date, settlement: list[str], option_type: list[str],
                    strike: np.ndarray, stream: int, values: dict[str, np.ndarray], at_ns: int) -> None:
        """:meth:`update` for many contracts of one expiration at once (every field in ``values`` replaced)."""
        with self._lock:
            rows = np.empty(len(symbols), dtype=np.int64)
            for j, symbol in enumerate(symbols):
                rows[j] = self._row_locked(symbol, expiration, settlement[j], option_type[j], float(strike[j]))
            for name, column in values.items():
                self._values[rows, FIELD[name]] = column
            self._stream[rows] = stream
            self._quote_ts[rows] = at_ns

    def view(self) -> BookView:
        """A copy of the current state (safe to use while feeds keep updating)."""
        with self._lock:
            n = self._n
            return BookView(
                symbol=self._symbol, expiration=self._expiration[:n].copy(),
                settlement=self._settlement[:n].copy(), is_call=self._is_call[:n].copy(),
                strike=self._strike[:n].copy(), stream=self._stream[:n].copy(), values=self._values[:n].copy(),
                quote_ts=self._quote_ts[:n].copy(),
            )

    def forget(self, expirations: set[dt.date]) -> None:
        """Drop the contracts of ``expirations`` (no longer tracked after a roll)."""
        with self._lock:
            keep = np.array([pd.Timestamp(e).date() not in expirations for e in self._expiration[: self._n]],
                            dtype=bool)
            if keep.all():
                return
            idx = np.flatnonzero(keep)
            self._symbol = [self._symbol[i] for i in idx]
            self._index = {s: j for j, s in enumerate(self._symbol)}
            for name in ("_expiration", "_settlement", "_is_call", "_strike", "_stream", "_quote_ts", "_values"):
                arr = getattr(self, name)
                arr[: idx.size] = arr[idx]
            self._n = int(idx.size)


@dataclass
class Spot:
    """The underlying's last price (USD), its own timestamp and when it arrived (engine-clock UTC ns)."""

    price: float = float("nan")
    trade_ns: int = NO_TIME
    received_ns: int = NO_TIME


@dataclass
class UnderlyingState:
    """Everything live about one underlying: contracts, spot, and closed bars not yet stored."""

    book: ContractBook = field(default_factory=ContractBook)
    spot: Spot = field(default_factory=Spot)
    bars: list[dict[str, object]] = field(default_factory=list)
    bars_lock: threading.Lock = field(default_factory=threading.Lock)
    _spot_lock: threading.Lock = field(default_factory=threading.Lock)

    def set_spot(self, price: float, trade_ns: int, received_ns: int) -> None:
        """Record a new last price (ignored when not a positive finite number)."""
        if not (price > 0 and np.isfinite(price)):
            return
        with self._spot_lock:
            self.spot = Spot(price, trade_ns, received_ns)

    def get_spot(self) -> Spot:
        """The current spot (a copy)."""
        with self._spot_lock:
            return Spot(self.spot.price, self.spot.trade_ns, self.spot.received_ns)

    def add_bar(self, bar: dict[str, object]) -> None:
        """Queue one closed bar (``ts`` bar end UTC, open/high/low/close USD, volume shares) for the store."""
        with self.bars_lock:
            self.bars.append(bar)

    def take_bars(self) -> list[dict[str, object]]:
        """The queued closed bars, emptying the queue."""
        with self.bars_lock:
            out, self.bars = self.bars, []
        return out
