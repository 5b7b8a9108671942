"""``zerogex run``: materialize the last N completed trading days and print their levels."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time

import pandas as pd

from zerogex_pipeline import market_calendar
from zerogex_pipeline.cli.arguments import iso_date, trading_days
from zerogex_pipeline.cli.formatting import render_table
from zerogex_pipeline.cli.levels_command import levels_table
from zerogex_pipeline.cli.progress import ProgressPrinter
from zerogex_pipeline.instance import get_instance
from zerogex_pipeline.runner import Progress, materialize_days
from zerogex_pipeline.settings import load_settings
from zerogex_pipeline.storage.levels_reader import closing_levels
from zerogex_pipeline.storage.table_slices import StorageError
from zerogex_pipeline.underlyings import resolve_underlying


def _dates(args: argparse.Namespace) -> list[dt.date]:
    if args.end:
        now = pd.Timestamp(f"{args.end} 23:59", tz=market_calendar.NEW_YORK)
    else:
        now = market_calendar.utc_now()
    return market_calendar.last_completed_sessions(args.days, now)


def _handle(args: argparse.Namespace) -> int:
    settings = load_settings()
    underlyings = [resolve_underlying(args.underlying)] if args.underlying else list(settings.underlyings)
    dates = _dates(args)
    instance = get_instance(settings)
    started = time.perf_counter()
    for underlying in underlyings:
        printer = None if args.quiet else ProgressPrinter()

        def report(p: Progress, printer: ProgressPrinter | None = printer, name: str = underlying.name) -> None:
            if printer is not None:
                printer.update(p.done, p.total, p.failed, f"{name} {p.step}", force=True)

        runs = materialize_days(underlying, dates, settings, instance, quiet=not args.debug, progress=report)
        if not args.quiet:
            for day in runs:
                print(f"materialized {underlying.name} {day.date} in {day.seconds:.1f}s: "
                      + ", ".join(f"{k}={v}" for k, v in day.rows.items()), flush=True)
        print()
        try:
            print(levels_table(closing_levels(settings, underlying, dates), underlying.name))
        except StorageError as exc:  # every partition is stored: say why the table is missing, do not fail
            print(f"{underlying.name}: levels stored; reading them back failed: {exc} "
                  "(zerogex levels shows them)", file=sys.stderr)
        if args.row_counts:
            print()
            headers = ["date", "expirations", "underlying_bars", "option_chain_snapshots", "gex_surface", "gex_levels"]
            rows = [[f"{r.date}", str(len(r.expirations)), *(str(r.rows.get(h, 0)) for h in headers[2:])] for r in runs]
            print(render_table(headers, rows))
    print(f"\n{len(dates)} trading day(s) x {len(underlyings)} underlying(s) from the {settings.data_source} source "
          f"into {'PostgreSQL' if settings.database_url else settings.duckdb_path} in "
          f"{time.perf_counter() - started:.1f}s")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``run`` command."""
    p = sub.add_parser("run", help="materialize the last N completed trading days and print their levels")
    p.add_argument("--underlying", help="only this underlying (default: all of ZEROGEX_UNDERLYINGS)")
    p.add_argument("--days", type=trading_days, default=3, help="number of completed trading days (default 3)")
    p.add_argument("--end", type=iso_date, help="treat this date (YYYY-MM-DD) as today: use the sessions up to it")
    p.add_argument("--row-counts", action="store_true", help="also print rows written per asset per day")
    p.add_argument("--quiet", action="store_true", help="print only the levels table")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(handler=_handle)
