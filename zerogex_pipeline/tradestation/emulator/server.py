"""The emulator's HTTP server: OAuth refresh grant, REST market data and chunked NDJSON streams.

Faults are switched on the :class:`Faults` object (in-process), with ``POST /__emulator/faults`` (JSON body
of field values; any process) or with ``zerogex emulator`` flags. Counters are at ``GET /__emulator/stats``.
"""

from __future__ import annotations

import json
import logging
import math
import random
import secrets
import select
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import orjson
import pandas as pd

from zerogex_pipeline import market_calendar
from zerogex_pipeline.sources.simulated import listing, price_path
from zerogex_pipeline.tradestation.emulator import market as mk
from zerogex_pipeline.tradestation.symbols import parse_option_symbol
from zerogex_pipeline.underlyings import Underlying, known_underlyings

log = logging.getLogger(__name__)

STREAM_CONTENT_TYPE = "application/vnd.tradestation.streams.v2+json"
MAX_STRIKE_PROXIMITY = 200
"""Strikes per side an option-chain stream shows at most (ZeroGEX issue 11: SPX windows were cut at 200)."""
SEND_SHARE = 0.3
"""Share of a path step at its start during which streams send and no stream prices the next step."""
LATE_BATCH_S = 10.0
"""Market seconds after its step's start beyond which an option batch is late (the simulated market's step)."""
DEFAULT_QUOTAS = {  # category -> (limit, period seconds) per access-token user [DOC-RATE current table]
    "quotes": (500, 300.0), "options-expirations": (90, 60.0), "options-strikes": (90, 60.0),
    "options-spreadtypes": (90, 60.0), "options-riskreward": (90, 60.0), "stream-connect": (500, 300.0),
    "marketdepth": (30, 60.0),
}


@dataclass
class Faults:
    """Fault switches. Counters (``*_requests``/``*_streams``) apply to that many next requests/streams."""

    rate_limit_requests: int = 0
    rate_limit_reset_s: float = 1.0
    rate_limit_retry_after_only: bool = False
    server_error_requests: int = 0
    server_error_status: int = 503
    slow_s: float = 0.0
    token_lifetime_s: int = 1200
    rotate_refresh_tokens: bool = False
    goaway_streams: int = 0
    goaway_after: int = 3
    goaway_shape: str = "error"
    dead_streams: int = 0
    dead_after: int = 3
    starve_streams: int = 0
    split_chunks: bool = False
    malformed_every: int = 0
    revoke_refresh_tokens: bool = False
    """Every refresh grant is refused with 403 ``invalid_grant`` (a revoked key, [REF] Auth0 shape)."""
    dual_logon_streams: int = 0
    """The next streams end with the in-band ``DualLogon`` error instead of their data."""
    dual_logon_shape: str = "symbol"
    """``symbol``: ``{"Symbol":..,"Error":"DualLogon"}`` (the docs' example); ``message``: ``{"Error","Message"}``."""
    goaway_open: int = 0
    """That many streams already open send GoAway at their next tick (``open_fault_path`` picks which)."""
    die_open: int = 0
    """That many open streams go silent at their next tick (the TCP connection stays up, nothing more comes)."""
    starve_open: int = 0
    """That many open streams stop sending data but keep their heartbeats."""
    dual_logon_open: int = 0
    """That many open streams end with the in-band DualLogon error at their next tick."""
    open_fault_path: str = ""
    """Only streams whose path contains this text take the ``*_open`` faults (``""``: any stream)."""

    def update(self, values: dict[str, Any]) -> None:
        """Set fields from ``values``; unknown names raise ``ValueError`` naming them."""
        names = {f.name: f for f in fields(self)}
        unknown = set(values) - set(names)
        if unknown:
            raise ValueError(f"unknown fault switches {sorted(unknown)}; known: {sorted(names)}")
        for key, value in values.items():
            current = getattr(self, key)
            setattr(self, key, type(current)(value))


@dataclass
class EmulatorStats:
    """What the emulator served."""

    requests: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    token_grants: int = 0
    invalid_grants: int = 0
    streams_opened: int = 0
    open_option_streams: int = 0
    max_open_option_streams: int = 0
    option_send_lag_s: list[float] = field(default_factory=list)
    """Per option-stream batch: market seconds from the start of the path step it shows to its write (how far the
    server falls behind its own market; the last 100,000)."""
    late_option_batches: list[dict[str, Any]] = field(default_factory=list)
    """The first 1,000 option batches written more than :data:`LATE_BATCH_S` after their step began."""
    option_batches_priced_late: int = 0
    """Option batches priced when their step began (the price-ahead had not finished or the clock jumped)."""


class Emulator:
    """The emulator server. Use as a context manager in tests; ``serve_forever`` from the CLI.

    Args:
        port: TCP port on 127.0.0.1 (0 = ephemeral; see ``url``).
        clock: the market clock; defaults to :func:`market_calendar.utc_now`.
        speed: simulated seconds per wall-clock second for stream updates.
        heartbeat_s: idle seconds before a heartbeat (5 in the reference).
        tick_s: seconds between stream updates.
        quotas: per-category fixed-window quotas (``None`` = documented defaults; ``{}`` = none).
        max_option_streams: option chain/quote streams open at once per server (10 in the reference).
        max_strike_proximity: an option-chain stream shows at most this many strikes on each side of its
            center, whatever ``strikeProximity`` asks (silently, as the SPX window defect saw).
        market_clock: when given, the market clock itself (shared with an engine replaying the same session);
            ``clock`` and ``speed`` are then ignored.
    """

    def __init__(self, port: int = 0, host: str = "127.0.0.1", clock: Callable[[], pd.Timestamp] | None = None,
                 speed: float = 1.0, heartbeat_s: float = 5.0, tick_s: float = 1.0,
                 quotas: dict[str, tuple[int, float]] | None = None, faults: Faults | None = None,
                 max_option_streams: int = 10, max_strike_proximity: int = MAX_STRIKE_PROXIMITY,
                 market_clock: Callable[[], pd.Timestamp] | None = None) -> None:
        self.faults = faults or Faults()
        self.stats = EmulatorStats()
        self.heartbeat_s = heartbeat_s
        self.tick_s = tick_s
        self.speed = speed
        self.quotas = dict(DEFAULT_QUOTAS if quotas is None else quotas)
        self.max_option_streams = max_option_streams
        self.max_strike_proximity = max_strike_proximity
        self._market_clock = market_clock
        self._base_clock = clock or market_calendar.utc_now
        self._start_wall = time.monotonic()
        self._start_market = self._base_clock()
        self.lock = threading.Lock()
        self.access_tokens: dict[str, float] = {}
        self.revoked_refresh: set[str] = set()
        self.windows: dict[tuple[str, str], list[float]] = {}
        self.stopping = threading.Event()
        handler = type("Handler", (_Handler,), {"emulator": self})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL (API and auth host), e.g. ``http://127.0.0.1:41234``."""
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def now(self) -> pd.Timestamp:
        """The market clock, advancing ``speed`` times faster than wall time since start."""
        if self._market_clock is not None:
            return self._market_clock()
        return self._start_market + pd.Timedelta(seconds=(time.monotonic() - self._start_wall) * self.speed)

    def start(self) -> Emulator:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close open streams."""
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def expire_tokens(self) -> None:
        """Invalidate every issued access token (the next API call gets a 401)."""
        with self.lock:
            self.access_tokens.clear()

    def serve_forever(self) -> None:
        """Serve until interrupted."""
        try:
            self.httpd.serve_forever(poll_interval=0.2)
        finally:
            self.stopping.set()
            self.httpd.server_close()


def _category(path: str) -> str:
    if path.startswith("/v3/marketdata/stream/marketdepth"):
        return "marketdepth"
    if path.startswith("/v3/marketdata/stream/"):
        return "stream-connect"
    if path.startswith("/v3/marketdata/quotes"):
        return "quotes"
    if path.startswith("/v3/marketdata/options/"):
        return "options-" + path.split("/")[4]
    if path.startswith("/v3/marketdata/barcharts"):
        return "barcharts"
    return "symbols"


class _Handler(BaseHTTPRequestHandler):
    emulator: Emulator
    protocol_version = "HTTP/1.1"
    server_version = "ZeroGEXEmulator/1"
    priced_step: pd.Timestamp | None = None
    """The path step of the option batch a stream generator just yielded during a session (for
    ``option_send_lag_s``; before the open a stream shows the last close, which is no lag)."""
    priced_late: bool = False
    """Whether that batch was priced when its step began rather than ahead of it."""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("emulator: " + format, *args)

    # ------------------------------------------------------------ plumbing
    def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        with self.emulator.lock:
            self.emulator.stats.statuses[status] += 1

    def _error(self, status: int, title: str, message: str, headers: dict[str, str] | None = None) -> None:
        self._send_json(status, {"Error": title, "Message": message}, headers)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def _dispatch(self, method: str) -> None:
        em = self.emulator
        parts = urlsplit(self.path)
        path = parts.path
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        try:
            if path.startswith("/__emulator/"):
                self._control(method, path)
                return
            if path == "/oauth/token" and method == "POST":
                self._token()
                return
            if not (path.startswith("/v3/") or path.startswith("/v2/")):
                self._error(404, "NotFound", f"no route {path}")
                return
            category = _category(path)
            with em.lock:
                em.stats.requests[category] += 1
            if em.faults.slow_s > 0:
                time.sleep(em.faults.slow_s)
            auth = self.headers.get("Authorization", "")
            token = auth[7:] if auth.startswith("Bearer ") else ""
            with em.lock:
                expiry = em.access_tokens.get(token)
            if expiry is None or expiry < time.time():
                self._error(401, "Unauthorized", "Access token is missing, invalid or expired.")
                return
            if self._injected_fault(category) or self._quota_exceeded(token, category):
                return
            if path.startswith("/v3/marketdata/stream/"):
                self._stream(path, query)
            else:
                body = json.loads(self._body() or b"null") if method == "POST" else None
                self._rest(method, path, query, body)
        except (BrokenPipeError, ConnectionResetError):
            return
        except Exception as exc:  # the emulator must answer, never hang the client
            log.exception("emulator: %s %s failed", method, path)
            try:
                self._error(500, "InternalServerError", f"{type(exc).__name__}: {exc}")
            except OSError:
                return

    def _injected_fault(self, category: str) -> bool:
        em, f = self.emulator, self.emulator.faults
        with em.lock:
            limited = f.rate_limit_requests > 0
            if limited:
                f.rate_limit_requests -= 1
            failing = not limited and f.server_error_requests > 0
            if failing:
                f.server_error_requests -= 1
        if limited:
            reset = f"{f.rate_limit_reset_s:g}"
            headers = {"Retry-After": reset} if f.rate_limit_retry_after_only else {
                "X-RateLimit-Limit": "500", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset,
                "X-RateLimit-Period": "300", "X-RateLimit-Resource": category}
            self._error(429, "TooManyRequests", "Rate quota exceeded", headers)
            return True
        if failing:
            titles = {500: "InternalServerError", 502: "BadGateway", 503: "ServiceUnavailable", 504: "GatewayTimeout"}
            self._error(f.server_error_status, titles.get(f.server_error_status, "InternalServerError"),
                        "Injected server error")
            return True
        return False

    def _quota_exceeded(self, token: str, category: str) -> bool:
        em = self.emulator
        quota = em.quotas.get(category)
        if quota is None:
            return False
        limit, period = quota
        now = time.time()
        with em.lock:
            window = em.windows.setdefault((token, category), [now, 0])
            if now >= window[0] + period:
                window[0], window[1] = now, 0
            window[1] += 1
            over = window[1] > limit
            reset = window[0] + period - now
            remaining = max(limit - int(window[1]), 0)
        if over:
            self._error(429, "TooManyRequests", "Rate quota exceeded", {
                "X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining),
                "X-RateLimit-Reset": str(math.ceil(reset)), "X-RateLimit-Period": f"{period:.0f}",
                "X-RateLimit-Resource": category})
        return over

    # ------------------------------------------------------------ control and auth
    def _control(self, method: str, path: str) -> None:
        em = self.emulator
        if path == "/__emulator/faults" and method == "POST":
            try:
                values = json.loads(self._body() or b"{}")
                with em.lock:
                    em.faults.update(values)
            except (ValueError, TypeError) as exc:
                self._error(400, "BadRequest", str(exc))
                return
            self._send_json(200, asdict(em.faults))
        elif path == "/__emulator/clock":
            self._send_json(200, {"now": em.now().isoformat(), "speed": em.speed})
        elif path == "/__emulator/expire-tokens" and method == "POST":
            em.expire_tokens()
            self._send_json(200, {"expired": True})
        elif path == "/__emulator/stats":
            with em.lock:
                st = em.stats
                payload = {"requests": dict(st.requests), "statuses": {str(k): v for k, v in st.statuses.items()},
                           "token_grants": st.token_grants, "invalid_grants": st.invalid_grants,
                           "streams_opened": st.streams_opened, "open_option_streams": st.open_option_streams,
                           "max_open_option_streams": st.max_open_option_streams, "faults": asdict(em.faults),
                           "option_send_lag_s": _percentiles(st.option_send_lag_s),
                           "option_batches_priced_late": st.option_batches_priced_late,
                           "late_option_batches": list(st.late_option_batches)}
            self._send_json(200, payload)
        else:
            self._error(404, "NotFound", f"no control route {path}")

    def _token(self) -> None:
        em = self.emulator
        form = {k: v[-1] for k, v in parse_qs(self._body().decode()).items()}
        refresh = form.get("refresh_token", "")
        if form.get("grant_type") != "refresh_token" or not form.get("client_id") or not refresh:
            self._send_json(400, {"error": "invalid_request", "error_description": "grant_type=refresh_token, "
                                  "client_id and refresh_token are required"})
            return
        with em.lock:
            if refresh in em.revoked_refresh or em.faults.revoke_refresh_tokens:
                em.stats.invalid_grants += 1
                bad = True
            else:
                bad = False
                em.stats.token_grants += 1
                access = "emu-at-" + secrets.token_urlsafe(18)
                em.access_tokens[access] = time.time() + em.faults.token_lifetime_s
                body: dict[str, Any] = {"access_token": access, "expires_in": em.faults.token_lifetime_s,
                                        "scope": "openid offline_access MarketData OptionSpreads Matrix",
                                        "id_token": "emu-id-" + secrets.token_urlsafe(8), "token_type": "Bearer"}
                if em.faults.rotate_refresh_tokens:
                    em.revoked_refresh.add(refresh)
                    body["refresh_token"] = "emu-rt-" + secrets.token_urlsafe(18)
        if bad:
            self._send_json(403, {"error": "invalid_grant", "error_description": "Unknown or invalid refresh token."})
        else:
            self._send_json(200, body)

    # ------------------------------------------------------------ REST
    def _rest(self, method: str, path: str, q: dict[str, str], body: Any) -> None:
        em = self.emulator
        now = em.now()
        s = mk.market_day(now)
        seg = [unquote(p) for p in path.split("/")]
        if path.startswith("/v3/marketdata/quotes/") and method == "GET":
            symbols = [x.strip() for x in seg[4].split(",") if x.strip()]
            if len(symbols) > 100:
                self._error(400, "BadRequest", "At most 100 symbols per request")
                return
            quotes, errors = [], []
            for sym in symbols:
                u = mk.underlying_of(sym)
                c = None if u else mk.contract_of(sym)
                obj = mk.underlying_quote(u, s, now) if u else (mk.option_quote(c, s, now) if c else None)
                if obj is None:
                    errors.append({"Symbol": sym, "Error": "FAILED, INVALID SYMBOL"})
                else:
                    quotes.append(obj)
            self._send_json(200, {"Quotes": quotes, "Errors": errors})
        elif path.startswith("/v3/marketdata/symbols/") and method == "GET":
            symbols = [x.strip() for x in seg[4].split(",") if x.strip()]
            if len(symbols) > 50:
                self._error(400, "BadRequest", "At most 50 symbols per request")
                return
            found, errors = [], []
            for sym in symbols:
                d = mk.symbol_detail(sym, s.date)
                if d is None:
                    errors.append({"Symbol": sym, "Error": "NotFound", "Message": "Symbol not found"})
                else:
                    found.append(d)
            self._send_json(200, {"Symbols": found, "Errors": errors})
        elif path.startswith("/v3/marketdata/barcharts/") and method == "GET":
            self._bars(seg[4], q, now)
        elif path == "/v3/marketdata/symbollists/cryptopairs/symbolnames":
            self._send_json(200, {"SymbolNames": mk.CRYPTO})
        elif path.startswith("/v2/data/symbols/suggest/") or path.startswith("/v2/data/symbols/search/"):
            text = seg[5].upper()
            top = int(q.get("$top", "10") or 10)
            hits = [u for u in known_underlyings() if text in u.name or text in u.ts_symbol
                    or f"N={u.name}" in text or f"N={u.ts_symbol}" in text]
            self._send_json(200, [{
                "Category": "Index" if u.listing_style == "index_am_pm" else "Stock", "Country": "US",
                "Currency": "USD", "Description": f"{u.name} (simulated)", "DisplayType": 1, "Error": None,
                "Exchange": "CBOE" if u.listing_style == "index_am_pm" else "NYSE Arca", "ExchangeID": 0,
                "Name": u.ts_symbol, "Root": u.name, "PointValue": 1, "MinMove": 1} for u in hits][:top])
        elif path.startswith("/v3/marketdata/options/expirations/"):
            u = mk.underlying_of(seg[5])
            if u is None:
                self._error(404, "NotFound", f"unknown underlying {seg[5]!r}")
                return
            exps = [e for e in listing.listed_expirations(u, s.date) if e >= s.date]
            self._send_json(200, {"Expirations": [
                {"Date": f"{e:%Y-%m-%d}T00:00:00Z", "Type": "Monthly" if listing.is_monthly(e) else "Weekly"}
                for e in exps]})
        elif path.startswith("/v3/marketdata/options/strikes/"):
            self._strikes(seg[5], q, s)
        elif path == "/v3/marketdata/options/spreadtypes":
            self._send_json(200, {"SpreadTypes": [{"Name": n, "StrikeInterval": a, "ExpirationInterval": b}
                                                  for n, a, b in mk.SPREAD_TYPES]})
        elif path == "/v3/marketdata/options/riskreward" and method == "POST":
            try:
                legs = [(parse_option_symbol(leg["Symbol"]), (1 if leg["TradeAction"] == "BUY" else -1)
                         * int(leg["Quantity"])) for leg in body["Legs"]]
                if len({leg.expiration for leg, _ in legs}) != 1 or any(q == 0 for _, q in legs):
                    raise ValueError("legs must share one expiration and have non-zero quantities")
                self._send_json(200, mk.risk_reward(float(body["SpreadPrice"]), legs))
            except (KeyError, TypeError, ValueError) as exc:
                self._error(400, "BadRequest", f"invalid risk/reward request: {exc}")
        else:
            self._error(404, "NotFound", f"no route {method} {path}")

    def _strikes(self, symbol: str, q: dict[str, str], s: mk.TradingSession) -> None:
        u = mk.underlying_of(symbol)
        if u is None:
            self._error(404, "NotFound", f"unknown underlying {symbol!r}")
            return
        spread = q.get("spreadType", "Single")
        legs = mk.SPREAD_STRIKES.get(spread)
        try:
            interval = int(q.get("strikeInterval", "1"))
            exp = (pd.Timestamp(q["expiration"]).date() if q.get("expiration")
                   else next(e for e in listing.listed_expirations(u, s.date) if e >= s.date))
        except (ValueError, StopIteration):
            self._error(400, "BadRequest", "invalid strikeInterval or expiration")
            return
        if legs is None or interval < 1:
            self._error(400, "BadRequest", f"invalid spreadType {spread!r} or strikeInterval")
            return
        grid = [] if exp not in listing.listed_expirations(u, s.date) else list(
            listing.strike_grid(u, price_path.previous_close(u, s.date)))
        rows = [[mk.format_strike(grid[i + j * interval]) for j in range(legs)]
                for i in range(len(grid) - (legs - 1) * interval)]
        self._send_json(200, {"SpreadType": spread, "Strikes": rows})

    def _bars(self, symbol: str, q: dict[str, str], now: pd.Timestamp) -> None:
        lower = {k.lower(): v for k, v in q.items()}
        unit = {"minute": "Minute", "daily": "Daily", "weekly": "Weekly", "monthly": "Monthly"}.get(
            lower.get("unit", "Daily").lower())
        try:
            interval = int(lower.get("interval", "1"))
        except ValueError:
            interval = -1
        if unit is None or interval < 1 or (unit == "Minute" and interval > 1440) or (unit != "Minute" and interval != 1):
            self._error(400, "BadRequest", "invalid unit or interval")
            return
        if "barsback" in lower and "firstdate" in lower:
            self._error(400, "BadRequest", "barsback and firstdate are mutually exclusive")
            return
        u = mk.underlying_of(symbol)
        c = None if u else mk.contract_of(symbol)
        if u is None and c is None:
            self._error(404, "NotFound", f"Invalid symbol: {symbol}")
            return
        try:
            last = lower.get("lastdate") or lower.get("startdate")
            end = now if not last else (pd.Timestamp(last).tz_localize("UTC") + pd.Timedelta(hours=23, minutes=59, seconds=59)
                                        if len(last) == 10 else pd.Timestamp(last).tz_convert("UTC"))
            end = min(end, now)
            first = lower.get("firstdate")
            if first:
                start = pd.Timestamp(first)
                start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
                barsback = None
            else:
                barsback = int(lower.get("barsback", "1"))
                if barsback < 1:
                    raise ValueError("barsback")
                days = barsback if unit != "Minute" else int(barsback * interval / 210) + 2
                start = end - pd.Timedelta(days=int(days * 1.6) + 5)
        except (ValueError, TypeError):
            self._error(400, "BadRequest", "invalid barsback, firstdate or lastdate")
            return
        cap = 57_600 if unit == "Minute" else None
        out: list[dict[str, Any]] = []
        sessions = mk.sessions_in(start, end)
        if barsback is not None and unit == "Minute":
            sessions = sessions[-(barsback * interval // 210 + 2):]
        for s in sessions:
            day_bars = (mk.underlying_session_bars(u, s, unit, interval) if u is not None
                        else mk.option_session_bars(c, s, unit, interval))  # type: ignore[arg-type]
            out.extend(b for b in day_bars if start.timestamp() * 1000 < b["Epoch"] <= end.timestamp() * 1000
                       or (unit != "Minute" and s.close <= end and s.close >= start))
        if unit in ("Weekly", "Monthly") and out:
            out = _aggregate(out, "W-FRI" if unit == "Weekly" else "M")
        if barsback is not None:
            out = out[-barsback:]
        if cap is not None and len(out) > cap:
            out = out[-cap:]
        if out:
            out[-1]["IsEndOfHistory"] = True
        self._send_json(200, {"Bars": out})

    # ------------------------------------------------------------ streams
    def _stream(self, path: str, q: dict[str, str]) -> None:
        em = self.emulator
        seg = [unquote(p) for p in path.split("/")]
        kind = seg[4]
        option = kind == "options"
        if option:
            with em.lock:
                if em.stats.open_option_streams >= em.max_option_streams:
                    over = True
                else:
                    over = False
                    em.stats.open_option_streams += 1
                    em.stats.max_open_option_streams = max(em.stats.max_open_option_streams,
                                                           em.stats.open_option_streams)
            if over:
                self._error(429, "TooManyRequests", "Stream quota exceeded", {
                    "X-Concurrency-Limit": str(em.max_option_streams), "X-Concurrency-Remaining": "0",
                    "X-Concurrency-Resource": "streaming-options"})
                return
        try:
            gen = self._stream_messages(kind, seg, q)
            if gen is None:
                return
            self._write_stream(gen)
        finally:
            if option:
                with em.lock:
                    em.stats.open_option_streams -= 1

    def _stream_messages(self, kind: str, seg: list[str], q: dict[str, str]
                         ) -> Iterator[list[dict[str, Any]]] | None:
        """A generator of message batches per tick (first batch: the snapshot); ``None`` after an error reply."""
        em = self.emulator
        if kind == "quotes":
            symbols = [x for x in seg[5].split(",") if x]
            if not symbols or len(symbols) > 100:
                self._error(400, "BadRequest", "1 to 100 symbols per quote stream")
                return None
            return self._quote_updates(symbols)
        if kind == "barcharts":
            u = mk.underlying_of(seg[5])
            if u is None:
                self._error(404, "NotFound", f"Invalid symbol: {seg[5]}")
                return None
            return self._bar_updates(u, int(q.get("interval", "1")), int(q.get("barsback", "1")))
        if kind == "options" and seg[5] == "chains":
            u = mk.underlying_of(seg[6])
            if u is None:
                self._error(404, "NotFound", f"unknown underlying {seg[6]!r}")
                return None
            s = mk.market_day(em.now())
            exps = [e for e in listing.listed_expirations(u, s.date) if e >= s.date]
            try:
                exp = pd.Timestamp(q["expiration"]).date() if q.get("expiration") else exps[0]
                prox = int(q.get("strikeProximity", "5"))
                center = float(q["priceCenter"]) if q.get("priceCenter") else None
            except (ValueError, IndexError):
                self._error(400, "BadRequest", "invalid expiration, strikeProximity or priceCenter")
                return None
            if exp not in exps or prox < 1:
                self._error(400, "BadRequest", f"expiration {exp} is not listed")
                return None
            greeks = q.get("enableGreeks", "true").lower() != "false"
            return self._chain_updates(u, exp, prox, q.get("optionType", "All"), q.get("strikeRange", "All"),
                                       center, greeks)
        if kind == "options" and seg[5] == "quotes":
            legs = [q[k] for k in sorted(q) if k.startswith("legs[") and k.endswith("].Symbol")]
            contracts = [mk.contract_of(x) for x in legs]
            if not legs or any(c is None for c in contracts):
                self._error(400, "BadRequest", "legs[i].Symbol must be option symbols")
                return None
            return self._option_quote_updates([c for c in contracts if c is not None],
                                              q.get("enableGreeks", "true").lower() != "false")
        if kind == "marketdepth":
            u = mk.underlying_of(seg[6])
            if u is None:
                self._error(404, "NotFound", f"Invalid symbol: {seg[6]}")
                return None
            return self._depth_updates(u, seg[5] == "aggregates", int(q.get("maxlevels", "20")))
        self._error(404, "NotFound", f"no stream {'/'.join(seg)}")
        return None

    def _quote_updates(self, symbols: list[str]) -> Iterator[list[dict[str, Any]]]:
        em = self.emulator
        last: dict[str, dict[str, Any]] = {}
        contracts = {sym: mk.contract_of(sym) for sym in symbols if mk.underlying_of(sym) is None}
        seed = ("quote-stream", ",".join(sorted(contracts)))
        watched = {u for u in (mk.underlying_of(sym) for sym in symbols) if u is not None}
        watched |= {c.underlying for c in contracts.values() if c is not None}
        by_underlying: dict[str, list[mk.Contract]] = {}
        for c in contracts.values():
            if c is not None:
                by_underlying.setdefault(c.underlying.name, []).append(c)
        ahead: dict[str, tuple[pd.Timestamp, dict[str, dict[str, Any]]]] = {}
        priced_at: tuple[pd.Timestamp, ...] | None = None
        today = em.now().tz_convert(market_calendar.NEW_YORK).date()
        if market_calendar.is_session(today):  # the day's path and bars, ready before its open (not at 09:30)
            for w in watched:
                mk.steps(w, today)
                mk.session_bars(w, today, 1)
        while True:
            now = em.now()
            s = mk.market_day(now)
            steps = tuple(mk.step_time(u, s, now) for u in sorted(watched, key=lambda u: u.name))
            if steps == priced_at:  # the simulated market moves once per path step
                self._price_ahead({k: (g[0].underlying, g) for k, g in by_underlying.items()}, ahead, now, s,
                                  lambda group, s_, t: mk.option_quotes(group, s_, t, (*seed, s_.date.isoformat())))
                yield []
                continue
            priced_at = steps
            options: dict[str, dict[str, Any]] = {}
            self.priced_late = False
            for name, group in by_underlying.items():
                step = mk.step_time(group[0].underlying, s, now)
                held = ahead.pop(name, None)
                late = held is None or held[0] != step
                self.priced_late |= late  # one batch: late when any of its underlyings was
                options.update(held[1] if held is not None and not late
                               else mk.option_quotes(group, s, now, (*seed, s.date.isoformat())))
                self.priced_step = step if s.open <= now <= s.close else None
            batch = []
            for sym in symbols:
                u = mk.underlying_of(sym)
                obj = mk.underlying_quote(u, s, now) if u else options.get(sym)
                if obj is None:
                    if sym not in last:
                        batch.append({"Symbol": sym, "Error": "FAILED, EX_INVALID_SYMBOL"})
                        last[sym] = {}
                    continue
                prev = last.get(sym)
                if prev is None:
                    batch.append(obj)
                else:
                    delta = {k: v for k, v in obj.items() if prev.get(k) != v}
                    if delta:
                        batch.append({"Symbol": sym, **delta})
                last[sym] = obj
            yield batch

    @staticmethod
    def _price_ahead(groups: dict[str, tuple[Underlying, Any]], ahead: dict[str, tuple[pd.Timestamp, Any]],
                     now: pd.Timestamp, s: mk.TradingSession,
                     price: Callable[[Any, mk.TradingSession, pd.Timestamp], Any]) -> None:
        """Price each group's next path step while the current one holds, so a stream sends a new step's data the
        moment it begins rather than after pricing it alongside every other stream of the server at once (at 10x
        replay a step is one wall second and pricing every stream of SPX, SPY and QQQ takes most of it).

        Not in the first :data:`SEND_SHARE` of a step: that part is left to the streams still sending the step
        that began (one process, one interpreter lock: a stream's send waits behind every thread pricing)."""
        for name, (u, group) in groups.items():
            if name not in ahead:
                session, step = mk.next_step(u, now)
                current = mk.step_time(u, s, now)  # s: the session in force at now
                in_session = step - current < pd.Timedelta(minutes=1)  # else the wait for the next open
                if in_session and now < current + (step - current) * SEND_SHARE:
                    continue
                ahead[name] = (step, price(group, session, step))

    def _bar_updates(self, u: Any, interval: int, barsback: int) -> Iterator[list[dict[str, Any]]]:
        em = self.emulator
        now = em.now()
        history: list[dict[str, Any]] = []
        for s in mk.sessions_in(now - pd.Timedelta(days=int(barsback * interval / 390 * 1.6) + 5), now):
            history.extend(b for b in mk.underlying_session_bars(u, s, "Minute", interval)
                           if b["Epoch"] <= now.timestamp() * 1000)
        history = history[-barsback:]
        if history:
            history[-1]["IsEndOfHistory"] = True
        yield history
        sent_until = history[-1]["Epoch"] if history else 0
        last_open: dict[str, Any] = {}
        day_bars: tuple[Any, list[dict[str, Any]]] = (None, [])
        while True:
            now = em.now()
            s = mk.market_day(now)
            batch = []
            if s.open <= now <= s.close:
                if day_bars[0] != s.date:  # once per session, not per tick
                    day_bars = (s.date, mk.underlying_session_bars(u, s, "Minute", interval))
                bars = day_bars[1]
                for b in bars:
                    if sent_until < b["Epoch"] <= now.timestamp() * 1000:
                        batch.append(dict(b, IsRealtime=True))
                        sent_until = b["Epoch"]
                nxt = next((b for b in bars if b["Epoch"] > now.timestamp() * 1000), None)
                if nxt is not None:
                    price = mk.num(mk.spot_at(u, s, now))
                    live = dict(nxt, Close=price, BarStatus="Open", IsRealtime=True)
                    if live != last_open:
                        batch.append(live)
                        last_open = live
            yield batch

    def _chain_updates(self, u: Any, exp: Any, prox: int, option_type: str, strike_range: str,
                       center: float | None, greeks: bool) -> Iterator[list[dict[str, Any]]]:
        em = self.emulator
        last: dict[str, dict[str, Any]] = {}
        priced_at: pd.Timestamp | None = None
        ahead: dict[str, tuple[pd.Timestamp, list[dict[str, Any]]]] = {}

        def objects(_: Any, s: mk.TradingSession, at: pd.Timestamp) -> list[dict[str, Any]]:
            rows = mk.chain_rows(u, s, at, exp, prox, option_type, strike_range, center,
                                 max_proximity=em.max_strike_proximity)
            return mk.spread_objects(rows, greeks, u)

        while True:
            now = em.now()
            s = mk.market_day(now)
            step = mk.step_time(u, s, now)
            if step == priced_at:  # the simulated market moves once per path step
                self._price_ahead({u.name: (u, None)}, ahead, now, s, objects)
                yield []
                continue
            priced_at = step
            held = ahead.pop(u.name, None)
            self.priced_late = held is None or held[0] != step
            batch = []
            for obj in held[1] if held is not None and not self.priced_late else objects(u, s, now):
                symbol = obj["Legs"][0]["Symbol"]
                if last.get(symbol) != obj:
                    batch.append(obj)
                    last[symbol] = obj
            self.priced_step = step if s.open <= now <= s.close else None
            yield batch

    def _option_quote_updates(self, contracts: list[mk.Contract], greeks: bool) -> Iterator[list[dict[str, Any]]]:
        em = self.emulator
        last: dict[str, Any] = {}
        while True:
            now = em.now()
            s = mk.market_day(now)
            batch = []
            for c in contracts:
                if not mk.is_listed(c, s.date):
                    continue
                rows = pd.DataFrame({"symbol": [str(c.symbol)], "root": c.symbol.root,
                                     "expiration": pd.Timestamp(c.symbol.expiration), "option_type": c.symbol.right,
                                     "strike": c.symbol.strike, "settlement": c.settlement,
                                     "snapshot_ts": min(max(now, s.open), s.close)})
                r = next(mk.price_contracts(c.underlying, s, rows, (str(c.symbol), "oq")).itertuples())
                obj = mk.spread_object(r, greeks, c.underlying)
                if last.get(str(c.symbol)) != obj:
                    batch.append(obj)
                    last[str(c.symbol)] = obj
            yield batch

    def _depth_updates(self, u: Any, aggregates: bool, levels: int) -> Iterator[list[dict[str, Any]]]:
        em = self.emulator
        while True:
            now = em.now()
            s = mk.market_day(now)
            px = mk.spot_at(u, s, now)
            stamp = mk.rfc3339(now)
            bids: list[dict[str, Any]] = []
            asks: list[dict[str, Any]] = []
            for i in range(max(1, min(levels, 50))):
                for side, lst, p in (("Bid", bids, px - 0.01 * (i + 1)), ("Ask", asks, px + 0.01 * (i + 1))):
                    size = str(100 * (i + 1))
                    if aggregates:
                        lst.append({"EarliestTime": stamp, "LatestTime": stamp, "Side": side, "Price": mk.num(p),
                                    "TotalSize": size, "BiggestSize": size, "SmallestSize": "100",
                                    "NumParticipants": i + 1, "TotalOrderCount": i + 2})
                    else:
                        lst.append({"TimeStamp": stamp, "Side": side, "Price": mk.num(p), "Size": size,
                                    "OrderCount": i + 1, "Name": ["NSDQ", "ARCX", "BATS"][i % 3]})
            yield [{"Bids": bids, "Asks": asks}]

    def _write_stream(self, gen: Iterator[list[dict[str, Any]]]) -> None:
        em, f = self.emulator, self.emulator.faults
        with em.lock:
            em.stats.streams_opened += 1
            goaway = f.goaway_streams > 0
            f.goaway_streams -= int(goaway)
            dead = not goaway and f.dead_streams > 0
            f.dead_streams -= int(dead)
            starve = f.starve_streams > 0
            f.starve_streams -= int(starve)
            dual = f.dual_logon_streams > 0
            f.dual_logon_streams -= int(dual)
            dual_shape = f.dual_logon_shape
            split, malformed_every = f.split_chunks, f.malformed_every
            goaway_after, dead_after, shape = f.goaway_after, f.dead_after, f.goaway_shape
        self.send_response(200)
        self.send_header("Content-Type", STREAM_CONTENT_TYPE)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        with em.lock:
            em.stats.statuses[200] += 1
        rng = random.Random(7)
        sent = 0
        beats = 0
        last_write = time.monotonic()
        next_tick = 0.0

        def write(data: bytes) -> None:
            nonlocal last_write
            if split:
                pos = 0
                while pos < len(data):
                    n = rng.randint(1, 23)
                    self._chunk(data[pos:pos + n])
                    pos += n
            else:
                self._chunk(data)
            last_write = time.monotonic()

        try:
            while not em.stopping.is_set() and not self._client_gone():
                struck = self._open_fault()
                if struck == "goaway":
                    bye = ({"Error": "GoAway", "Message": "The server is about to shut down."}
                           if shape == "error" else {"StreamStatus": "GoAway"})
                    write(json.dumps(bye).encode() + b"\n")
                    self._chunk(b"")
                    return
                if struck == "dual":
                    write(json.dumps({"Error": "DualLogon", "Message": "The user logged on from another session."})
                          .encode() + b"\n")
                    self._chunk(b"")
                    return
                if struck == "die":
                    while not em.stopping.is_set() and not self._client_gone():
                        time.sleep(0.05)
                    return
                if struck == "starve":
                    starve = True
                now = time.monotonic()
                batch: list[dict[str, Any]] = []
                if now >= next_tick:
                    batch = next(gen)
                    next_tick = now + em.tick_s
                if starve:
                    batch = []
                if dual and batch:
                    first = batch[0]
                    symbol = first.get("Symbol") or (first.get("Legs") or [{}])[0].get("Symbol", "")
                    err = ({"Symbol": symbol, "Error": "DualLogon"} if dual_shape == "symbol" else
                           {"Error": "DualLogon", "Message": "The user logged on from another session."})
                    write(json.dumps(err).encode() + b"\n")
                    self._chunk(b"")
                    return
                lines = b""
                for msg in batch:
                    if goaway and sent >= goaway_after:
                        bye = ({"Error": "GoAway", "Message": "The server is about to shut down."}
                               if shape == "error" else {"StreamStatus": "GoAway"})
                        write(lines + json.dumps(bye).encode() + b"\n")
                        self._chunk(b"")
                        return
                    if dead and sent >= dead_after:
                        if lines:  # never write(b""): that is the terminating chunk, a clean end, not a death
                            write(lines)
                        while not em.stopping.is_set() and not self._client_gone():  # silent death
                            time.sleep(0.05)
                        return
                    lines += orjson.dumps(msg) + b"\n"
                    sent += 1
                    if malformed_every and sent % malformed_every == 0:
                        lines += b'{"Symbol":"BROKEN",\nERROR - RESET\n'
                if lines:  # a step's updates in one write, as a server flushes its buffer (split: cut at random)
                    write(lines)
                    if self.priced_step is not None:
                        lag = (em.now() - self.priced_step).total_seconds()
                        with em.lock:
                            em.stats.option_send_lag_s.append(lag)
                            del em.stats.option_send_lag_s[:-100_000]
                            em.stats.option_batches_priced_late += int(self.priced_late)
                            if lag > LATE_BATCH_S and len(em.stats.late_option_batches) < 1000:
                                em.stats.late_option_batches.append(
                                    {"step": self.priced_step.isoformat(), "lag_s": round(lag, 2),
                                     "path": self.path.split("?")[0][:160]})
                self.priced_step = None
                if time.monotonic() - last_write >= em.heartbeat_s:
                    beats += 1
                    write(json.dumps({"Heartbeat": beats, "Timestamp": mk.rfc3339(em.now())}).encode() + b"\n")
                time.sleep(min(0.02, em.tick_s / 4))
            self._chunk(b"")
        except (BrokenPipeError, ConnectionResetError, OSError):
            return

    def _open_fault(self) -> str | None:
        """Take one of the faults switched for streams already open, if this stream is a target."""
        em, f = self.emulator, self.emulator.faults
        with em.lock:
            if f.open_fault_path and f.open_fault_path not in self.path:
                return None
            for name, kind in (("goaway_open", "goaway"), ("die_open", "die"), ("starve_open", "starve"),
                               ("dual_logon_open", "dual")):
                if getattr(f, name) > 0:
                    setattr(f, name, getattr(f, name) - 1)
                    return kind
        return None

    def _client_gone(self) -> bool:
        """The client closed its end (EOF readable): the stream is over now, not at the next failed write,
        so the open option-stream count drops when the client's connection does."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _chunk(self, data: bytes) -> None:
        if not data:
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


def _percentiles(values: list[float]) -> dict[str, float | int]:
    """Count, p50, p95 and max of ``values`` (``count`` 0 and no others when empty)."""
    if not values:
        return {"count": 0}
    p50, p95 = np.percentile(np.asarray(values), [50, 95])
    return {"count": len(values), "p50": float(p50), "p95": float(p95), "max": float(max(values))}


def _aggregate(bars: list[dict[str, Any]], freq: str) -> list[dict[str, Any]]:
    frame = pd.DataFrame(bars)
    frame["ts"] = pd.to_datetime(frame["TimeStamp"])
    frame["Close_f"] = frame["Close"].astype(float)
    out = []
    for _, g in frame.groupby(frame["ts"].dt.tz_localize(None).dt.to_period(freq)):
        first, lastrow = g.iloc[0], g.iloc[-1]
        out.append(dict(bars[int(lastrow.name)], Open=first["Open"], High=mk.num(g["High"].astype(float).max()),
                        Low=mk.num(g["Low"].astype(float).min()),
                        TotalVolume=str(int(g["TotalVolume"].astype(int).sum()))))
    return out
