"""``zerogex ts ...``: TradeStation diagnostics (quotes, bars, options, search, crypto pairs, market hours, depth, chain).

Credentials and hosts come from ``TRADESTATION_*`` (environment, then ``.env``). ``--json`` prints
machine-readable output; quotes requested while the NYSE regular session is closed come with a warning on stderr
(``TS_WARN_MARKET_HOURS=false`` turns it off); ``--debug`` logs every request (method, path, query, status, time; never
tokens or secrets) to stderr.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any

import pandas as pd
from dotenv import dotenv_values

from zerogex_pipeline import market_calendar
from zerogex_pipeline.cli.formatting import render_table
from zerogex_pipeline.tradestation import streams
from zerogex_pipeline.tradestation.client import TradeStationClient
from zerogex_pipeline.tradestation.config import config_from_env

DEFAULT_SYMBOL = "SPY"


def _client() -> TradeStationClient:
    env: dict[str, str] = {k: v for k, v in dotenv_values(Path(".env")).items() if v is not None}
    env.update(os.environ)
    return TradeStationClient(config_from_env(env))


def _jsonable(value: Any) -> Any:
    if isinstance(value, pd.DataFrame):
        return json.loads(value.to_json(orient="records", date_format="iso"))
    if isinstance(value, dt.date | pd.Timestamp):
        return value.isoformat()
    if hasattr(value, "__dataclass_fields__"):
        return {k: _jsonable(getattr(value, k)) for k in value.__dataclass_fields__}
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _emit(args: argparse.Namespace, payload: dict[str, Any], text: str) -> None:
    print(json.dumps(_jsonable(payload), indent=2, default=str) if args.json else text)


def _frame_text(frame: pd.DataFrame, columns: list[str]) -> str:
    cols = [c for c in columns if c in frame.columns]
    rows = [["" if pd.isna(v) else (f"{v:,.4g}" if isinstance(v, float) else str(v)) for v in r]
            for r in frame[cols].itertuples(index=False)]
    return render_table(cols, rows)


def quote(args: argparse.Namespace, client: TradeStationClient) -> dict[str, Any]:
    snap = client.quotes(args.symbols)
    text = _frame_text(snap.frame, ["Symbol", "Last", "Bid", "Ask", "Volume", "NetChangePct", "TradeTime"])
    text += "".join(f"\n{e.symbol}: {e.error}" for e in snap.errors)
    _emit(args, {"quotes": snap.frame, "errors": snap.errors}, text)
    return {"quotes": len(snap.frame), "errors": len(snap.errors)}


def bars(args: argparse.Namespace, client: TradeStationClient) -> dict[str, Any]:
    frame = client.bars(args.symbol, unit=args.unit, interval=args.interval,
                        barsback=None if args.firstdate else args.barsback,
                        firstdate=args.firstdate, lastdate=args.lastdate)
    _emit(args, {"symbol": args.symbol, "bars": frame},
          _frame_text(frame, ["ts", "open", "high", "low", "close", "volume", "open_interest"]))
    return {"bars": len(frame)}


def options(args: argparse.Namespace, client: TradeStationClient) -> dict[str, Any]:
    exps = client.option_expirations(args.symbol)
    if not exps:
        raise RuntimeError(f"{args.symbol}: no option expirations listed")
    exp = dt.date.fromisoformat(args.expiration) if args.expiration else exps[0].date
    strikes = [s[0] for s in client.option_strikes(args.symbol, exp)]
    text = (f"{args.symbol}: {len(exps)} expirations: "
            + ", ".join(f"{e.date} ({e.type})" for e in exps[:12]) + (" ..." if len(exps) > 12 else "")
            + f"\n{exp}: {len(strikes)} strikes from {min(strikes, default=0):g} to {max(strikes, default=0):g}")
    _emit(args, {"expirations": exps, "expiration": exp, "strikes": strikes}, text)
    return {"expirations": len(exps), "strikes": len(strikes)}


def search(args: argparse.Namespace, client: TradeStationClient) -> dict[str, Any]:
    hits = client.suggest(args.text, top=args.top)
    text = render_table(["Name", "Description", "Exchange", "Category"],
                        [[str(h.get(k, "")) for k in ("Name", "Description", "Exchange", "Category")] for h in hits])
    _emit(args, {"results": hits}, text)
    return {"results": len(hits)}


def market_hours(args: argparse.Namespace, client: TradeStationClient | None = None) -> dict[str, Any]:
    now = market_calendar.utc_now()
    today = now.tz_convert(market_calendar.NEW_YORK).date()
    nxt = market_calendar.next_session_on_or_after(today)
    s = market_calendar.session(nxt)
    is_open = s.open <= now <= s.close
    if not is_open and now > s.close:
        s = market_calendar.session(market_calendar.next_session_on_or_after(today + dt.timedelta(days=1)))
    payload = {"now": now, "open_now": is_open, "session": s.date, "open": s.open, "close": s.close,
               "early_close": s.is_early_close}
    ny = market_calendar.NEW_YORK
    text = (f"NYSE {'open' if is_open else 'closed'} now; {'current' if is_open else 'next'} session {s.date}: "
            f"{s.open.tz_convert(ny):%H:%M}-{s.close.tz_convert(ny):%H:%M} ET"
            + (" (early close)" if s.is_early_close else ""))
    _emit(args, payload, text)
    return {"open_now": is_open}


def depth(args: argparse.Namespace, client: TradeStationClient) -> dict[str, Any]:
    msgs = streams.take(streams.depth_stream(client, args.symbol, max_levels=args.levels), 1, args.timeout)
    if not msgs:
        raise RuntimeError(f"{args.symbol}: no market depth within {args.timeout:g} s")
    book = msgs[0]
    rows = [[b.get("Price", ""), b.get("Size", ""), a.get("Price", ""), a.get("Size", "")]
            for b, a in zip(book.get("Bids", []), book.get("Asks", []), strict=False)]
    _emit(args, {"symbol": args.symbol, "depth": book}, render_table(["bid", "bid size", "ask", "ask size"], rows))
    return {"levels": len(rows)}


def chain(args: argparse.Namespace, client: TradeStationClient) -> dict[str, Any]:
    exp = dt.date.fromisoformat(args.expiration).strftime("%m-%d-%Y") if args.expiration else None
    frame = streams.chain_snapshot(client, args.symbol, exp, strike_proximity=args.strike_proximity,
                                   timeout_s=args.timeout)
    _emit(args, {"symbol": args.symbol, "chain": frame},
          _frame_text(frame, ["symbol", "bid", "ask", "last", "volume", "open_interest", "iv", "delta", "gamma"]))
    return {"contracts": len(frame)}


def crypto(args: argparse.Namespace, client: TradeStationClient) -> dict[str, Any]:
    pairs = client.crypto_pairs()
    _emit(args, {"crypto_pairs": pairs}, f"{len(pairs)} crypto pairs: {', '.join(pairs)}")
    return {"pairs": len(pairs)}


def run_all(args: argparse.Namespace, client: TradeStationClient) -> dict[str, Any]:
    sym = args.symbol
    checks: list[tuple[str, argparse.Namespace, Any]] = [
        ("quote", argparse.Namespace(symbols=[sym]), quote),
        ("bars", argparse.Namespace(symbol=sym, unit="Minute", interval=5, barsback=10, firstdate=None,
                                    lastdate=None), bars),
        ("options", argparse.Namespace(symbol=sym, expiration=None), options),
        ("search", argparse.Namespace(text=sym, top=5), search),
        ("crypto", argparse.Namespace(), crypto),
        ("market-hours", argparse.Namespace(), market_hours),
        ("depth", argparse.Namespace(symbol=sym, levels=5, timeout=args.timeout), depth),
        ("chain", argparse.Namespace(symbol=sym, expiration=None, strike_proximity=3, timeout=args.timeout), chain),
    ]
    results: dict[str, Any] = {}
    failed = []
    for name, ns, fn in checks:
        ns.json = True
        try:
            devnull = open(os.devnull, "w")  # noqa: SIM115
            stdout, sys.stdout = sys.stdout, devnull
            try:
                results[name] = {"ok": True, **fn(ns, client)}
            finally:
                sys.stdout = stdout
                devnull.close()
        except Exception as exc:
            results[name] = {"ok": False, "error": str(exc)}
            failed.append(name)
    text = "\n".join(f"{'ok  ' if r['ok'] else 'FAIL'} {n}: "
                     + ", ".join(f"{k}={v}" for k, v in r.items() if k != "ok") for n, r in results.items())
    _emit(args, {"results": results}, text)
    if failed:
        raise RuntimeError(f"{len(failed)} check(s) failed: {', '.join(failed)}")
    return results


HANDLERS = {"quote": quote, "bars": bars, "options": options, "search": search, "market-hours": market_hours,
            "depth": depth, "chain": chain, "crypto": crypto, "all": run_all}


def _handle(args: argparse.Namespace) -> int:
    if args.ts_command == "market-hours":
        market_hours(args)
        return 0
    client = _client()
    if args.debug:
        print(f"config: {client.config.redacted()}", file=sys.stderr)
    HANDLERS[args.ts_command](args, client)
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``ts`` command and its sub-commands."""
    p = sub.add_parser("ts", help="TradeStation API diagnostics (uses TRADESTATION_* settings)")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable JSON output")
    common.add_argument("--debug", action="store_true", help="log requests to stderr (secrets redacted)")
    common.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for stream data (30)")
    ts = p.add_subparsers(dest="ts_command", required=True)
    q = ts.add_parser("quote", parents=[common], help="quote snapshots")
    q.add_argument("symbols", nargs="+")
    b = ts.add_parser("bars", parents=[common], help="bar chart")
    b.add_argument("symbol")
    b.add_argument("--unit", default="Daily", help="Minute, Daily, Weekly or Monthly (Daily)")
    b.add_argument("--interval", type=int, default=1, help="minutes per bar for Minute (1)")
    b.add_argument("--barsback", type=int, default=10, help="number of bars (10)")
    b.add_argument("--firstdate", help="YYYY-MM-DD or RFC3339 (instead of --barsback)")
    b.add_argument("--lastdate", help="YYYY-MM-DD or RFC3339 (default now)")
    o = ts.add_parser("options", parents=[common], help="option expirations and strikes")
    o.add_argument("symbol")
    o.add_argument("--expiration", help="YYYY-MM-DD (default: the nearest)")
    s = ts.add_parser("search", parents=[common], help="symbol suggestions")
    s.add_argument("text")
    s.add_argument("--top", type=int, default=10)
    ts.add_parser("market-hours", parents=[common], help="NYSE session hours now / next")
    d = ts.add_parser("depth", parents=[common], help="one market-depth snapshot")
    d.add_argument("symbol")
    d.add_argument("--levels", type=int, default=10)
    c = ts.add_parser("chain", parents=[common], help="one full option chain from the chain stream")
    c.add_argument("symbol")
    c.add_argument("--expiration", help="YYYY-MM-DD (default: the nearest)")
    c.add_argument("--strike-proximity", type=int, default=5, help="strikes above and below the center (5)")
    ts.add_parser("crypto", parents=[common], help="the crypto pairs TradeStation lists (BTCUSD, ...)")
    a = ts.add_parser("all", parents=[common], help="run every diagnostic once")
    a.add_argument("symbol", nargs="?", default=DEFAULT_SYMBOL)
    p.set_defaults(handler=_handle)
