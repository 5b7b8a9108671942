"""``zerogex levels``: stored levels: the close of recent trading days, the latest snapshot, one day intraday, or
the stream engine's live levels (``--live``, ``--follow`` to keep printing them as they arrive).

Snapshot times are shown in America/New_York (stored UTC).
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from typing import Any

import pandas as pd

from zerogex_pipeline import market_calendar
from zerogex_pipeline.cli.arguments import iso_date, trading_days
from zerogex_pipeline.cli.formatting import render_table, usd, usd_compact
from zerogex_pipeline.settings import Settings, load_settings
from zerogex_pipeline.storage.capture_store import CaptureStore
from zerogex_pipeline.storage.levels_reader import closing_levels, intraday_levels, latest_levels
from zerogex_pipeline.storage.table_slices import StorageError
from zerogex_pipeline.underlyings import resolve_underlying

HEADERS = ["date", "spot close", "net GEX ($/1%)", "zero gamma", "call wall", "put wall"]
SNAPSHOT_HEADERS = ["snapshot (ET)", "spot", "net GEX ($/1%)", "zero gamma", "call wall", "put wall", "max pain next"]
LIVE_HEADERS = ["underlying", "as of (ET)", "spot", "net GEX ($/1%)", "zero gamma", "call wall", "put wall",
                "max pain next", "feed", "missing"]
FOLLOW_POLL_S = 1.0
CONVENTION = "dealer convention: long calls +, short puts -"


def _level_cells(row: Any) -> list[str]:
    """Spot, net GEX, zero gamma and the walls of one ``gex_levels`` row (``itertuples``), as printed."""
    return [
        usd(row.spot),
        usd_compact(row.net_gex),
        usd(row.zero_gamma) if pd.notna(row.zero_gamma) else "none",
        usd(row.call_wall, 0),
        usd(row.put_wall, 0),
    ]


def levels_table(frame: pd.DataFrame, underlying_name: str) -> str:
    """The per-day levels table printed by ``make run`` and ``zerogex levels``."""
    rows = [[f"{r.session_date:%Y-%m-%d}", *_level_cells(r)] for r in frame.itertuples()]
    title = f"{underlying_name} GEX levels at the close ({CONVENTION})"
    return f"{title}\n{render_table(HEADERS, rows)}"


def snapshot_levels_table(frame: pd.DataFrame, title: str) -> str:
    """Levels rows by snapshot, times in America/New_York (``zerogex levels --latest/--intraday``)."""
    times = frame["snapshot_ts"].dt.tz_convert(market_calendar.NEW_YORK)
    rows = [
        [f"{ts:%Y-%m-%d %H:%M}", *_level_cells(r), usd(r.max_pain_next, 0)]
        for ts, r in zip(times, frame.itertuples(), strict=True)
    ]
    return f"{title}\n{render_table(SNAPSHOT_HEADERS, rows)}"


def live_rows(frame: pd.DataFrame) -> list[list[str]]:
    """Table cells of ``live_levels`` rows (times to the second, New York)."""
    times = frame["snapshot_ts"].dt.tz_convert(market_calendar.NEW_YORK)
    return [[str(r.underlying), f"{ts:%Y-%m-%d %H:%M:%S}", *_level_cells(r), usd(r.max_pain_next, 0), str(r.feed),
             "" if pd.isna(r.missing) else str(r.missing)] for ts, r in zip(times, frame.itertuples(), strict=True)]


def _live(settings: Settings, args: argparse.Namespace) -> int:
    underlyings = [resolve_underlying(args.underlying)] if args.underlying else list(settings.underlyings)
    store = CaptureStore(settings)
    newest: dict[str, pd.Timestamp] = {}
    frames = [store.live_levels(u, latest=True) for u in underlyings]
    found = [f for f in frames if len(f)]
    if not found and not args.follow:
        raise StorageError(f"no live levels stored for {', '.join(u.name for u in underlyings)} in {store.location}; "
                           "start the stream engine (`zerogex stream`, or `make live` for the simulated session)")
    title = f"live GEX levels from `zerogex stream` ({CONVENTION}; walls and max pain are strikes)"
    print(title)
    print(render_table(LIVE_HEADERS, [c for f in found for c in live_rows(f)]), flush=True)
    for u, f in zip(underlyings, frames, strict=True):
        if len(f):
            newest[u.key] = f["snapshot_ts"].iloc[-1]
    while args.follow:
        time.sleep(FOLLOW_POLL_S)
        for u in underlyings:
            fresh = store.live_levels(u, since=newest.get(u.key))
            if len(fresh):
                newest[u.key] = fresh["snapshot_ts"].iloc[-1]
                for cells in live_rows(fresh):
                    print(render_table(LIVE_HEADERS, [cells]).splitlines()[-1], flush=True)
    return 0


def _handle(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.follow and not args.live:
        raise ValueError("--follow: only with --live (it follows the stream engine's live levels)")
    if args.live:
        try:
            return _live(settings, args)
        except KeyboardInterrupt:
            return 0
    underlying = resolve_underlying(args.underlying) if args.underlying else settings.underlyings[0]
    if args.latest:
        frame = latest_levels(settings, underlying)
        if frame.empty:
            raise StorageError(f"{underlying.key}.gex_levels: no levels stored yet")
        print(snapshot_levels_table(frame, f"{underlying.name} latest GEX levels ({CONVENTION})"))
        return 0
    if args.intraday:
        day = _date_arg(args.intraday, "--intraday")
        frame = intraday_levels(settings, underlying, day)
        if frame.empty:
            raise StorageError(f"{underlying.key}.gex_levels: no levels stored for {day}")
        print(snapshot_levels_table(frame, f"{underlying.name} GEX levels on {day}, by snapshot ({CONVENTION})"))
        return 0
    end = args.end
    now = market_calendar.utc_now() if end is None else pd.Timestamp(f"{end} 23:59", tz=market_calendar.NEW_YORK)
    dates = market_calendar.last_completed_sessions(args.days, now)
    frame = closing_levels(settings, underlying, dates)
    print(levels_table(frame, underlying.name))
    return 0


def _date_arg(text: str, flag: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{flag} {text!r}: expected a date YYYY-MM-DD") from None


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``levels`` command."""
    p = sub.add_parser(
        "levels", help="print stored levels: closing levels of recent days, the latest snapshot, or one day intraday"
    )
    p.add_argument("--underlying", help="underlying name (default: the first of ZEROGEX_UNDERLYINGS)")
    p.add_argument("--days", type=trading_days, default=3, help="number of trading days (default 3)")
    p.add_argument("--end", type=iso_date, help="last date to consider, YYYY-MM-DD (default: today)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--latest", action="store_true", help="the newest stored snapshot's levels")
    which.add_argument("--intraday", metavar="YYYY-MM-DD", help="every snapshot's levels on one trading day")
    which.add_argument("--live", action="store_true", help="the newest live levels of the stream engine "
                       "(every tracked underlying unless --underlying)")
    p.add_argument("--follow", action="store_true", help="with --live: keep printing live levels as they arrive "
                   "(Ctrl-C stops)")
    p.set_defaults(handler=_handle)
