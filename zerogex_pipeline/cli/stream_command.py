"""``zerogex stream``: the long-running streaming engine (see :mod:`zerogex_pipeline.live.engine`)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from dataclasses import replace
from types import FrameType

import pandas as pd

from zerogex_pipeline import market_calendar
from zerogex_pipeline.live.clock import EngineClock
from zerogex_pipeline.live.engine import EngineOptions, StreamEngine
from zerogex_pipeline.live.feed import Feed
from zerogex_pipeline.live.publish import DagsterReporter, LiveAlerts
from zerogex_pipeline.live.simulated_feed import SimulatedFeed
from zerogex_pipeline.settings import Settings, load_settings
from zerogex_pipeline.storage.capture_store import CaptureStore
from zerogex_pipeline.underlyings import UnknownUnderlyingError, resolve_underlying

STREAM_IDLE_TIMEOUT_S = 12.0
"""A stream silent this long (no data, no 5-second heartbeat) is replaced."""


RECENT_AT = "recent"


def recent_session_start(now: pd.Timestamp) -> pd.Timestamp:
    """One minute before the open of the latest session that has opened by ``now`` (``--at recent``)."""
    day = market_calendar.previous_session_on_or_before(now.tz_convert(market_calendar.NEW_YORK).date())
    session = market_calendar.session(day)
    if session.open > now:
        session = market_calendar.session(market_calendar.previous_session_on_or_before(
            day - pd.Timedelta(days=1)))
    return session.open - pd.Timedelta(minutes=1)


def parse_at(raw: str) -> pd.Timestamp:
    """``--at``: an ISO date-time (New York time without a zone, ``2026-11-27T09:25``), or ``recent``."""
    if raw.strip().lower() == RECENT_AT:
        return recent_session_start(market_calendar.utc_now())
    try:
        ts = pd.Timestamp(raw)
    except (TypeError, ValueError):
        raise ValueError(f"--at: expected a date-time such as 2026-11-27T09:25 (New York) or "
                         f"2026-11-27T14:25:00Z, got {raw!r}") from None
    if pd.isna(ts):
        raise ValueError(f"--at: expected a date-time, got {raw!r}")
    return (ts.tz_localize(market_calendar.NEW_YORK) if ts.tzinfo is None else ts).tz_convert("UTC")


def build_feed(settings: Settings, clock: EngineClock, bar_minutes: int) -> Feed:
    """The feed of the configured source: TradeStation streams, or the simulated market."""
    if settings.data_source != "tradestation":
        return SimulatedFeed(bar_minutes)
    from zerogex_pipeline.live.tradestation_feed import TradeStationFeed
    from zerogex_pipeline.tradestation.client import TradeStationClient
    from zerogex_pipeline.tradestation.config import config_from_env

    config = config_from_env(data_dir=settings.data_dir, stream_idle_timeout_s=STREAM_IDLE_TIMEOUT_S)
    return TradeStationFeed(TradeStationClient(config), clock, bar_minutes)


def engine_options(settings: Settings, args: argparse.Namespace) -> EngineOptions:
    """Options from the settings, overridden by the command-line flags."""
    names = [n for raw in (args.underlying or []) for n in raw.split(",") if n.strip()]
    try:
        underlyings = tuple(resolve_underlying(n) for n in names) if names else settings.underlyings
    except UnknownUnderlyingError as exc:
        raise ValueError(f"--underlying: {exc}") from None
    if len({u.key for u in underlyings}) != len(underlyings):
        raise ValueError(f"--underlying: an underlying is listed twice ({', '.join(u.name for u in underlyings)})")
    if args.expirations is not None and not 1 <= args.expirations <= 60:
        raise ValueError(f"--expirations: expected 1..60, got {args.expirations}")
    if args.strike_distance is not None and not 0.5 <= args.strike_distance <= 50:
        raise ValueError(f"--strike-distance: expected a percentage between 0.5 and 50, got {args.strike_distance}")
    if not 0.2 <= args.interval <= 3600:
        raise ValueError(f"--interval: expected seconds between 0.2 and 3600, got {args.interval}")
    if args.max_iterations is not None and args.max_iterations < 1:
        raise ValueError(f"--max-iterations: expected a positive count, got {args.max_iterations}")
    return EngineOptions(
        underlyings=underlyings,
        expirations=args.expirations or settings.expirations,
        distance_pct=args.strike_distance or settings.strike_distance_pct,
        snapshot_minutes=settings.snapshot_minutes, bar_minutes=settings.bar_minutes,
        interval_s=args.interval, max_iterations=args.max_iterations, rate=settings.risk_free_rate,
    )


def _handle(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("urllib3", "filelock", "dagster"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    settings = load_settings()
    options = engine_options(settings, args)
    at = parse_at(args.at) if args.at else None
    if args.speed != 1.0 and at is None:
        raise ValueError("--speed: only with --at (a replay); the live session runs at the wall clock "
                         f"(or at {market_calendar.REPLAY_CLOCK_ENV}'s replay)")
    clock = EngineClock(at, args.speed)
    if args.print_clock:
        print(clock.spec())
        return 0
    if clock.replay:  # this process's own reads of the pipeline clock (stores, alerts) follow the replay too
        os.environ[market_calendar.REPLAY_CLOCK_ENV] = clock.spec()
    feed = build_feed(settings, clock, settings.bar_minutes)
    reporter = DagsterReporter(settings, enabled=not args.no_dagster_events)
    alerts = LiveAlerts(settings, settings.snapshot_minutes, run_id=f"stream:{os.getpid()}")
    if clock.replay:
        options = replace(options, announce_alerts=False)
    engine = StreamEngine(feed, clock, CaptureStore(settings), options, reporter, alerts)

    def stop(signum: int, frame: FrameType | None) -> None:
        logging.getLogger("zerogex.live").info("signal %d: finishing the current step and stopping", signum)
        engine.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    where = CaptureStore(settings).location
    mode = (f"replaying {at.tz_convert(market_calendar.NEW_YORK):%Y-%m-%d %H:%M} ET at {args.speed:g}x"
            if at is not None else "live (wall clock)")
    logging.getLogger("zerogex.live").info(
        "zerogex stream: %s from the %s feed, %s, %d expiration(s) each, ±%g%% strike window, levels every %g s, "
        "a snapshot every %d min, into %s", mode, feed.name, ", ".join(u.name for u in options.underlyings),
        options.expirations, options.distance_pct, options.interval_s, options.snapshot_minutes, where)
    engine.run()
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``stream`` command."""
    p = sub.add_parser(
        "stream", help="capture the session from live streams and publish live levels (runs until stopped)",
        description="Streaming engine: opens TradeStation streams before the open (or replays the simulated market "
                    "without credentials), captures a snapshot every ZEROGEX_SNAPSHOT_MINUTES and computes live "
                    "levels every --interval seconds, until the close; then waits for the next session.")
    p.add_argument("--underlying", action="append",
                   help="underlying to track (repeat or comma-separate; default: ZEROGEX_UNDERLYINGS)")
    p.add_argument("--expirations", type=int, help="nearest listed expirations per underlying (default: "
                   "ZEROGEX_EXPIRATIONS)")
    p.add_argument("--strike-distance", type=float, help="strike window, percent of spot (default: "
                   "ZEROGEX_STRIKE_DISTANCE)")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between live level computations (5)")
    p.add_argument("--max-iterations", type=int, help="stop after this many level computations")
    p.add_argument("--at", help="replay the simulated session from this instant (New York time unless a zone is "
                   "given), e.g. 2026-11-27T09:25; 'recent': one minute before the latest session's open")
    p.add_argument("--speed", type=float, default=1.0, help="replay speed: market seconds per second (with --at)")
    p.add_argument("--no-dagster-events", action="store_true", help="do not report events to the Dagster instance")
    p.add_argument("--print-clock", action="store_true", help="print the replay clock as a ZEROGEX_CLOCK value (for "
                   "other processes to share it) and exit")
    p.add_argument("--debug", action="store_true", help="debug logging and tracebacks")
    p.set_defaults(handler=_handle)
