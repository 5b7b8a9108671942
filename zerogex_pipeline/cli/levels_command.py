"""``zerogex levels``: the stored closing levels of recent trading days."""

from __future__ import annotations

import argparse
import datetime as dt

import pandas as pd

from zerogex_pipeline import market_calendar
from zerogex_pipeline.cli.formatting import render_table, usd, usd_compact
from zerogex_pipeline.settings import load_settings
from zerogex_pipeline.storage.levels_reader import closing_levels
from zerogex_pipeline.underlyings import resolve_underlying

HEADERS = ["date", "spot close", "net GEX ($/1%)", "zero gamma", "call wall", "put wall"]


def levels_table(frame: pd.DataFrame, underlying_name: str) -> str:
    """The per-day levels table printed by ``make run`` and ``zerogex levels``."""
    rows = [
        [
            f"{r.session_date:%Y-%m-%d}",
            usd(r.spot),
            usd_compact(r.net_gex),
            usd(r.zero_gamma) if pd.notna(r.zero_gamma) else "none",
            usd(r.call_wall, 0),
            usd(r.put_wall, 0),
        ]
        for r in frame.itertuples()
    ]
    title = f"{underlying_name} GEX levels at the close (dealer convention: long calls +, short puts -)"
    return f"{title}\n{render_table(HEADERS, rows)}"


def _handle(args: argparse.Namespace) -> int:
    settings = load_settings()
    underlying = resolve_underlying(args.underlying) if args.underlying else settings.underlyings[0]
    end = dt.date.fromisoformat(args.end) if args.end else None
    now = market_calendar.utc_now() if end is None else pd.Timestamp(f"{end} 23:59", tz=market_calendar.NEW_YORK)
    dates = market_calendar.last_completed_sessions(args.days, now)
    frame = closing_levels(settings, underlying, dates)
    print(levels_table(frame, underlying.name))
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``levels`` command."""
    p = sub.add_parser("levels", help="print stored closing levels of recent trading days")
    p.add_argument("--underlying", help="underlying name (default: the first of ZEROGEX_UNDERLYINGS)")
    p.add_argument("--days", type=int, default=3, help="number of trading days (default 3)")
    p.add_argument("--end", help="last date to consider, YYYY-MM-DD (default: today)")
    p.set_defaults(handler=_handle)
