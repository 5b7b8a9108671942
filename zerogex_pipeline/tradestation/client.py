"""The TradeStation Web API v3 REST client: auth header, retries, 429 handling, rate budgets, typed results.

- 5xx and connection errors: retried by urllib3's ``Retry`` (bounded, exponential backoff with jitter).
- 429: wait ``X-RateLimit-Reset`` seconds (else ``Retry-After``, else exponential backoff), at most
  ``max_rate_limit_waits`` times; the category is also marked exhausted for other processes.
- 401: one forced token refresh and one retry.
- Request logs (logger ``zerogex_pipeline.tradestation.client`` at DEBUG) show method, path, query,
  status and time; never headers, tokens or secrets.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pandas as pd
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from zerogex_pipeline import market_calendar
from zerogex_pipeline.tradestation.auth import TokenManager
from zerogex_pipeline.tradestation.config import TradeStationConfig
from zerogex_pipeline.tradestation.errors import ApiError, RateLimitError, TradeStationError
from zerogex_pipeline.tradestation.ratelimit import RateBudgets
from zerogex_pipeline.tradestation.values import to_date, to_float, to_int, to_timestamp

log = logging.getLogger(__name__)

MAX_QUOTE_SYMBOLS = 100
MAX_DETAIL_SYMBOLS = 50
MAX_INTRADAY_BARS = 57_600
BAR_UNITS = {"minute": "Minute", "daily": "Daily", "weekly": "Weekly", "monthly": "Monthly"}
SESSION_TEMPLATES = {"USEQPre", "USEQPost", "USEQPreAndPost", "USEQ24Hour", "Default"}
QUOTE_NUMERIC = (
    "Open", "High", "Low", "PreviousClose", "Last", "Ask", "AskSize", "Bid", "BidSize", "NetChange",
    "NetChangePct", "High52Week", "Low52Week", "Volume", "PreviousVolume", "Close", "DailyOpenInterest",
    "LastSize", "VWAP",
)
BAR_COLUMNS = ["ts", "open", "high", "low", "close", "volume", "open_interest", "up_ticks", "down_ticks",
               "total_ticks", "up_volume", "down_volume", "epoch_ms", "is_realtime", "is_end_of_history",
               "bar_status"]


class _ServerRetry(Retry):
    """urllib3 ``Retry`` that leaves 429 to the client (which honours ``X-RateLimit-Reset`` and budgets)."""

    RETRY_AFTER_STATUS_CODES = frozenset({503})


def build_http_session(config: TradeStationConfig) -> requests.Session:
    """A session retrying connection errors and 5xx with urllib3's ``Retry`` (bounded, jittered)."""
    retry = _ServerRetry(
        total=config.max_retries, connect=config.max_retries, read=config.max_retries,
        status=config.max_retries, status_forcelist=(500, 502, 503, 504),
        allowed_methods=frozenset({"GET", "POST"}), backoff_factor=config.backoff_base_s,
        backoff_max=config.backoff_max_s, backoff_jitter=config.backoff_base_s,
        respect_retry_after_header=True, raise_on_status=False,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry, pool_maxsize=32)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


@dataclass(frozen=True)
class SymbolError:
    """A per-symbol error inside a 200 response (``Errors[]``)."""

    symbol: str
    error: str
    message: str = ""


@dataclass(frozen=True)
class QuoteSnapshot:
    """Quotes as a frame (one row per symbol; prices USD, sizes and volumes as floats) plus ``Errors``."""

    frame: pd.DataFrame
    errors: list[SymbolError]


@dataclass(frozen=True)
class SymbolDetails:
    """Symbol details (raw objects with numbers converted where documented) plus ``Errors``."""

    symbols: list[dict[str, Any]]
    errors: list[SymbolError]


@dataclass(frozen=True)
class Expiration:
    """An option expiration date and its ``Type`` (Weekly, Monthly, Quarterly, EOM, Other)."""

    date: dt.date
    type: str


@dataclass(frozen=True)
class SpreadType:
    """An option spread type and whether it needs a strike and/or expiration interval."""

    name: str
    strike_interval: bool
    expiration_interval: bool


@dataclass(frozen=True)
class RiskReward:
    """Risk/reward of a spread; gains and losses in USD."""

    max_gain_is_infinite: bool
    adjusted_max_gain: float
    max_loss_is_infinite: bool
    adjusted_max_loss: float
    breakeven_points: list[float]


@dataclass
class RequestStats:
    """Requests sent per category, 429s seen and seconds waited for them."""

    requests: Counter[str] = field(default_factory=Counter)
    rate_limited: int = 0
    waited_s: float = 0.0
    unauthorized: int = 0


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _errors(body: dict[str, Any]) -> list[SymbolError]:
    out = []
    for e in body.get("Errors") or []:
        if isinstance(e, dict):
            out.append(SymbolError(str(e.get("Symbol", "")), str(e.get("Error", "")), str(e.get("Message") or "")))
    return out


def _path_symbols(symbols: Sequence[str]) -> str:
    return ",".join(quote(s.strip(), safe="$@.") for s in symbols)


def _clean_symbols(symbols: Iterable[str], what: str) -> list[str]:
    out = []
    for s in symbols:
        if not isinstance(s, str) or not s.strip():
            raise ValueError(f"{what}: empty symbol in {list(symbols)!r}")
        if s.strip() not in out:
            out.append(s.strip())
    if not out:
        raise ValueError(f"{what}: expected at least one symbol")
    return out


def bars_frame(raw: list[dict[str, Any]]) -> pd.DataFrame:
    """``Bar`` objects as a frame: ``ts`` (UTC, bar end), prices USD, volume, open interest (contracts)."""
    rows = [
        {
            "ts": to_timestamp(b.get("TimeStamp")),
            "open": to_float(b.get("Open")), "high": to_float(b.get("High")),
            "low": to_float(b.get("Low")), "close": to_float(b.get("Close")),
            "volume": to_int(b.get("TotalVolume")), "open_interest": to_int(b.get("OpenInterest")),
            "up_ticks": to_int(b.get("UpTicks")), "down_ticks": to_int(b.get("DownTicks")),
            "total_ticks": to_int(b.get("TotalTicks")), "up_volume": to_int(b.get("UpVolume")),
            "down_volume": to_int(b.get("DownVolume")), "epoch_ms": to_int(b.get("Epoch")),
            "is_realtime": bool(b.get("IsRealtime") or False),
            "is_end_of_history": bool(b.get("IsEndOfHistory") or False),
            "bar_status": b.get("BarStatus") or "",
        }
        for b in raw
        if b.get("TimeStamp")
    ]
    frame = pd.DataFrame(rows, columns=BAR_COLUMNS)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame


def quotes_frame(raw: list[dict[str, Any]]) -> pd.DataFrame:
    """``Quote`` objects as a frame: numeric fields as floats (NaN when blank), ``TradeTime`` as UTC."""
    rows = []
    for q in raw:
        row: dict[str, Any] = {"Symbol": q.get("Symbol")}
        for name in QUOTE_NUMERIC:
            row[name] = to_float(q.get(name))
        row["TradeTime"] = to_timestamp(q.get("TradeTime"))
        flags = q.get("MarketFlags") or {}
        row["IsDelayed"] = bool(flags.get("IsDelayed", False))
        row["IsHalted"] = bool(flags.get("IsHalted", False))
        rows.append(row)
    return pd.DataFrame(rows, columns=["Symbol", *QUOTE_NUMERIC, "TradeTime", "IsDelayed", "IsHalted"])


def market_closed_notice(now: pd.Timestamp) -> str | None:
    """The notice for quotes requested at ``now`` (tz-aware) outside the NYSE regular session; ``None`` inside it."""
    today = now.tz_convert(market_calendar.NEW_YORK).date()
    current = market_calendar.session(market_calendar.next_session_on_or_after(today))
    if current.open <= now <= current.close:
        return None
    upcoming = current if now < current.open else market_calendar.session(
        market_calendar.next_session_on_or_after(today + dt.timedelta(days=1)))
    ny = market_calendar.NEW_YORK
    return (f"the NYSE regular session is closed now (next: {upcoming.date} {upcoming.open.tz_convert(ny):%H:%M}-"
            f"{upcoming.close.tz_convert(ny):%H:%M} ET): quotes may be delayed or stale "
            "(TS_WARN_MARKET_HOURS=false turns this warning off)")


def _as_utc(value: str | dt.date | dt.datetime | pd.Timestamp, end_of_day: bool) -> pd.Timestamp:
    if (isinstance(value, str) and len(value) == 10) or (isinstance(value, dt.date) and not isinstance(value, dt.datetime)):
        day = pd.Timestamp(str(value))
        ts = day + pd.Timedelta(hours=23, minutes=59, seconds=59) if end_of_day else day
        return ts.tz_localize("UTC")
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _wire_time(ts: pd.Timestamp) -> str:
    return ts.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


class TradeStationClient:
    """Synchronous client of the v3 market-data REST endpoints (streams: :mod:`.streams`)."""

    def __init__(self, config: TradeStationConfig, session: requests.Session | None = None) -> None:
        self.config = config
        self.session = session or build_http_session(config)
        self.tokens = TokenManager(config, self.session)
        self.budgets = RateBudgets(config.budgets, config.cache_dir)
        self.stats = RequestStats()

    def __repr__(self) -> str:
        return f"TradeStationClient(api_url={self.config.api_url!r}, client_id={self.config.client_id!r})"

    # ----------------------------------------------------------------- transport
    def _backoff(self, attempt: int) -> float:
        base = min(self.config.backoff_max_s, self.config.backoff_base_s * 2**attempt)
        return base * (0.5 + random.random() / 2)

    def open(
        self, method: str, path: str, category: str, params: dict[str, Any] | None = None,
        json_body: Any = None, stream: bool = False, read_timeout_s: float | None = None,
    ) -> requests.Response:
        """Send a request with auth, budgets, 429 waits and one 401 refresh; return the 2xx response.

        Raises:
            RateLimitError: still 429 after ``max_rate_limit_waits`` waits.
            ApiError: any other non-2xx status (the message has the API's ``Error`` and ``Message``).
            TradeStationError: the host cannot be reached after the retries.
        """
        url = f"{self.config.api_url}{path}"
        refreshed = False
        waits = 0
        while True:
            self.budgets.acquire(category)
            token = self.tokens.access_token()
            started = time.perf_counter()
            try:
                resp = self.session.request(
                    method, url, params=params, json=json_body, stream=stream,
                    headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                    timeout=(self.config.connect_timeout_s, read_timeout_s or self.config.read_timeout_s),
                )
            except requests.RequestException as exc:
                raise TradeStationError(f"{method} {path}: {type(exc).__name__} after "
                                        f"{self.config.max_retries} retries") from None
            self.stats.requests[category] += 1
            log.debug("%s %s %s -> %s in %.0f ms", method, path, params or {}, resp.status_code,
                      (time.perf_counter() - started) * 1000)
            if resp.status_code == 401 and not refreshed:
                resp.close()
                self.stats.unauthorized += 1
                refreshed = True
                self.tokens.force_refresh(token)
                continue
            if resp.status_code == 429 and waits < self.config.max_rate_limit_waits:
                wait = self._rate_limit_wait(resp, waits)
                resp.close()
                self.stats.rate_limited += 1
                self.stats.waited_s += wait
                self.budgets.penalize(category, wait)
                refreshed = False  # the token was accepted; a later 401 is a new expiry
                log.warning("%s %s: 429 (%s); waiting %.1f s", method, path,
                            resp.headers.get("X-RateLimit-Resource", category), wait)
                time.sleep(wait)
                waits += 1
                continue
            if resp.status_code >= 400:
                raise self._api_error(resp, path)
            return resp

    def _rate_limit_wait(self, resp: requests.Response, attempt: int) -> float:
        for header in ("X-RateLimit-Reset", "Retry-After"):
            value = to_float(resp.headers.get(header))
            if value == value and value >= 0:  # not NaN; a reset of "0" still waits the backoff
                return min(self.config.max_rate_limit_wait_s, max(value, self._backoff(attempt)))
        return min(self.config.max_rate_limit_wait_s, self._backoff(attempt))

    def _api_error(self, resp: requests.Response, path: str) -> ApiError:
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        error = str(body.get("Error") or body.get("error") or resp.reason or "")
        message = str(body.get("Message") or body.get("message") or "")
        cls = RateLimitError if resp.status_code == 429 else ApiError
        resp.close()
        return cls(resp.status_code, error, message, path)

    def get_json(self, path: str, category: str, params: dict[str, Any] | None = None) -> Any:
        """GET ``path`` and return the decoded JSON body."""
        resp = self.open("GET", path, category, params=params)
        try:
            return resp.json()
        except ValueError:
            raise TradeStationError(f"GET {path}: response is not JSON") from None

    # ----------------------------------------------------------------- endpoints
    def quotes(self, symbols: Iterable[str]) -> QuoteSnapshot:
        """Quote snapshots of ``symbols`` (batched at 100 per request).

        While the NYSE regular session is closed, logs a WARNING that the quotes may be stale (the original
        client's market-hours warning; ``TS_WARN_MARKET_HOURS=false`` turns it off).
        """
        clean = _clean_symbols(symbols, "quotes")
        if self.config.warn_market_hours:
            notice = market_closed_notice(market_calendar.utc_now())
            if notice is not None:
                log.warning("%s", notice)
        raw: list[dict[str, Any]] = []
        errors: list[SymbolError] = []
        for batch in _chunks(clean, MAX_QUOTE_SYMBOLS):
            body = self.get_json(f"/v3/marketdata/quotes/{_path_symbols(batch)}", "quotes")
            raw.extend(body.get("Quotes") or [])
            errors.extend(_errors(body))
        return QuoteSnapshot(quotes_frame(raw), errors)

    def symbol_details(self, symbols: Iterable[str]) -> SymbolDetails:
        """Symbol details of ``symbols`` (batched at 50 per request); ``StrikePrice`` converted to float."""
        clean = _clean_symbols(symbols, "symbol details")
        out: list[dict[str, Any]] = []
        errors: list[SymbolError] = []
        for batch in _chunks(clean, MAX_DETAIL_SYMBOLS):
            body = self.get_json(f"/v3/marketdata/symbols/{_path_symbols(batch)}", "symbols")
            for item in body.get("Symbols") or []:
                item = dict(item)
                if "StrikePrice" in item:
                    item["StrikePrice"] = to_float(item.get("StrikePrice"))
                out.append(item)
            errors.extend(_errors(body))
        return SymbolDetails(out, errors)

    def bars(
        self, symbol: str, unit: str = "Daily", interval: int = 1, barsback: int | None = None,
        firstdate: str | dt.date | dt.datetime | None = None, lastdate: str | dt.date | dt.datetime | None = None,
        sessiontemplate: str | None = None,
    ) -> pd.DataFrame:
        """Bars of ``symbol`` (see :func:`bars_frame`), oldest first, without duplicates.

        Intraday requests over more than 57,600 bars are split into several requests and stitched.

        Raises:
            ValueError: bad ``unit``/``interval``/``barsback``/dates (the message names the argument).
        """
        if not symbol or not symbol.strip():
            raise ValueError("bars: symbol is empty")
        unit_name = BAR_UNITS.get(unit.strip().lower())
        if unit_name is None:
            raise ValueError(f"bars: unit {unit!r} is not one of {sorted(BAR_UNITS.values())}")
        if unit_name == "Minute" and not 1 <= interval <= 1440:
            raise ValueError(f"bars: interval {interval} must be 1..1440 for Minute bars")
        if unit_name != "Minute" and interval != 1:
            raise ValueError(f"bars: interval must be 1 for {unit_name} bars, got {interval}")
        if barsback is not None and firstdate is not None:
            raise ValueError("bars: barsback and firstdate are mutually exclusive")
        if barsback is not None and barsback < 1:
            raise ValueError(f"bars: barsback must be >= 1, got {barsback}")
        if sessiontemplate is not None and sessiontemplate not in SESSION_TEMPLATES:
            raise ValueError(f"bars: sessiontemplate {sessiontemplate!r} is not one of {sorted(SESSION_TEMPLATES)}")
        base: dict[str, Any] = {"unit": unit_name, "interval": str(interval)}
        if sessiontemplate:
            base["sessiontemplate"] = sessiontemplate
        path = f"/v3/marketdata/barcharts/{quote(symbol.strip(), safe='$@.')}"
        intraday = unit_name == "Minute"
        frames: list[pd.DataFrame] = []
        if firstdate is not None:
            start = _as_utc(firstdate, end_of_day=False)
            end = _as_utc(lastdate, end_of_day=True) if lastdate is not None else pd.Timestamp.now(tz="UTC")
            if end < start:
                raise ValueError(f"bars: lastdate {lastdate} is before firstdate {firstdate}")
            span = pd.Timedelta(minutes=MAX_INTRADAY_BARS * interval)
            if not intraday or end - start <= span:
                params = dict(base, firstdate=str(firstdate) if isinstance(firstdate, str) else _wire_time(start))
                if lastdate is not None:
                    params["lastdate"] = str(lastdate) if isinstance(lastdate, str) else _wire_time(end)
                frames.append(self._bars_request(path, params))
            else:
                lo = start
                while lo <= end:
                    hi = min(end, lo + span - pd.Timedelta(seconds=1))
                    frames.append(self._bars_request(path, dict(base, firstdate=_wire_time(lo), lastdate=_wire_time(hi))))
                    lo = hi + pd.Timedelta(seconds=1)
            return self._stitch(frames)
        wanted = 1 if barsback is None else barsback
        end_param: str | None = None
        if lastdate is not None:
            end_param = str(lastdate) if isinstance(lastdate, str) else _wire_time(_as_utc(lastdate, True))
        remaining = wanted
        while remaining > 0:
            count = min(remaining, MAX_INTRADAY_BARS) if intraday else remaining
            params = dict(base, barsback=str(count))
            if end_param is not None:
                params["lastdate"] = end_param
            got = self._bars_request(path, params)
            frames.append(got)
            before = len(self._stitch(frames))
            if got.empty or len(got) < count:
                break
            remaining = wanted - before
            end_param = _wire_time(got["ts"].min() - pd.Timedelta(seconds=1))
        stitched = self._stitch(frames)
        return stitched.tail(wanted).reset_index(drop=True)

    def _bars_request(self, path: str, params: dict[str, Any]) -> pd.DataFrame:
        body = self.get_json(path, "barcharts", params=params)
        return bars_frame(body.get("Bars") or [])

    @staticmethod
    def _stitch(frames: list[pd.DataFrame]) -> pd.DataFrame:
        frames = [f for f in frames if not f.empty]
        if not frames:
            return bars_frame([])
        out = pd.concat(frames, ignore_index=True).drop_duplicates(subset=["ts"], keep="last")
        return out.sort_values("ts", kind="stable").reset_index(drop=True)

    def suggest(self, text: str, top: int = 10, filter_expr: str | None = None) -> list[dict[str, Any]]:
        """Symbol suggestions for ``text`` (v2 endpoint; the v3 API has no search)."""
        if not text.strip():
            raise ValueError("suggest: text is empty")
        params: dict[str, Any] = {"$top": str(top)}
        if filter_expr:
            params["$filter"] = filter_expr
        body = self.get_json(f"/v2/data/symbols/suggest/{quote(text.strip())}", "symbols", params=params)
        return [dict(x) for x in body] if isinstance(body, list) else []

    def search(self, criteria: str) -> list[dict[str, Any]]:
        """Symbol search with v2 criteria, e.g. ``N=SPY&C=StockOption`` (v2 endpoint)."""
        if not criteria.strip():
            raise ValueError("search: criteria are empty")
        body = self.get_json(f"/v2/data/symbols/search/{quote(criteria.strip(), safe='=&')}", "symbols")
        return [dict(x) for x in body] if isinstance(body, list) else []

    def crypto_pairs(self) -> list[str]:
        """Crypto symbol names (``BTCUSD``, ...)."""
        body = self.get_json("/v3/marketdata/symbollists/cryptopairs/symbolnames", "symbols")
        return [str(s) for s in body.get("SymbolNames") or []]

    def option_expirations(self, underlying: str, strike_price: float | None = None) -> list[Expiration]:
        """Listed expirations of ``underlying`` (ascending)."""
        params = {"strikePrice": str(strike_price)} if strike_price is not None else None
        body = self.get_json(f"/v3/marketdata/options/expirations/{quote(underlying, safe='$.')}",
                             "options-expirations", params=params)
        out = []
        for e in body.get("Expirations") or []:
            day = to_date(e.get("Date"))
            if day is not None:
                out.append(Expiration(day, str(e.get("Type") or "Other")))
        return sorted(out, key=lambda e: e.date)

    def option_strikes(
        self, underlying: str, expiration: dt.date | None = None, spread_type: str = "Single",
        strike_interval: int = 1, expiration2: dt.date | None = None,
    ) -> list[list[float]]:
        """Strikes of each spread (one element each for ``Single``), USD."""
        if strike_interval < 1:
            raise ValueError(f"option strikes: strike_interval must be >= 1, got {strike_interval}")
        params: dict[str, Any] = {"spreadType": spread_type, "strikeInterval": str(strike_interval)}
        if expiration is not None:
            params["expiration"] = expiration.strftime("%m-%d-%Y")
        if expiration2 is not None:
            params["expiration2"] = expiration2.strftime("%m-%d-%Y")
        body = self.get_json(f"/v3/marketdata/options/strikes/{quote(underlying, safe='$.')}",
                             "options-strikes", params=params)
        return [[to_float(k) for k in row] for row in body.get("Strikes") or []]

    def spread_types(self) -> list[SpreadType]:
        """The option spread types."""
        body = self.get_json("/v3/marketdata/options/spreadtypes", "options-spreadtypes")
        return [SpreadType(str(s.get("Name")), bool(s.get("StrikeInterval")), bool(s.get("ExpirationInterval")))
                for s in body.get("SpreadTypes") or []]

    def risk_reward(self, spread_price: float, legs: Sequence[tuple[str, int, str]]) -> RiskReward:
        """Risk/reward of a spread; ``legs`` are (symbol, quantity, ``BUY``/``SELL``)."""
        if not legs:
            raise ValueError("risk/reward: expected at least one leg")
        payload_legs = []
        for symbol, qty, action in legs:
            if qty == 0 or action.upper() not in ("BUY", "SELL"):
                raise ValueError(f"risk/reward leg {symbol!r}: quantity must be non-zero and action BUY or SELL")
            payload_legs.append({"Symbol": symbol, "Quantity": int(qty), "TradeAction": action.upper()})
        resp = self.open("POST", "/v3/marketdata/options/riskreward", "options-riskreward",
                         json_body={"SpreadPrice": spread_price, "Legs": payload_legs})
        body = resp.json()
        return RiskReward(
            bool(body.get("MaxGainIsInfinite")), to_float(body.get("AdjustedMaxGain")),
            bool(body.get("MaxLossIsInfinite")), to_float(body.get("AdjustedMaxLoss")),
            [to_float(x) for x in body.get("BreakevenPoints") or []],
        )
