"""``zerogex emulator``: run the local TradeStation v3 emulator (auth, REST, streams) with fault switches."""

from __future__ import annotations

import argparse
import contextlib
import warnings

import pandas as pd

from zerogex_pipeline import market_calendar
from zerogex_pipeline.tradestation.emulator import Emulator, Faults


def _object_strings() -> None:
    """Keep text columns as Python objects in this process: the emulator prices small frames of symbols every
    path step of every stream, and pandas' Arrow-backed strings made that 2-2.5x slower (100 SPX tail quotes
    29 -> 13 ms, an 800-row chain 45 -> 17 ms), so at 10x it fell steps behind its own clock. Only the wire
    JSON leaves this process. Dropped silently once pandas removes the option."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.suppress(KeyError, ValueError, pd.errors.OptionError):
            pd.set_option("future.infer_string", False)


def _handle(args: argparse.Namespace) -> int:
    _object_strings()
    faults = Faults(
        rate_limit_requests=args.rate_limit_requests, rate_limit_reset_s=args.rate_limit_reset,
        server_error_requests=args.server_errors, slow_s=args.slow, token_lifetime_s=args.token_lifetime,
        rotate_refresh_tokens=args.rotate_refresh_tokens, goaway_streams=args.goaway_streams,
        goaway_shape=args.goaway_shape, dead_streams=args.dead_streams, starve_streams=args.starve_streams,
        split_chunks=args.split_chunks, malformed_every=args.malformed_every,
        revoke_refresh_tokens=args.revoke_refresh_tokens, dual_logon_streams=args.dual_logon_streams,
    )
    clock = None
    market_clock = None
    if market_calendar.replay_clock() is not None and not args.at:  # share $ZEROGEX_CLOCK's replay exactly
        market_clock = market_calendar.utc_now
    if args.at:
        at = pd.Timestamp(args.at)
        at = at.tz_localize("UTC") if at.tzinfo is None else at.tz_convert("UTC")
        clock = lambda: at  # noqa: E731
    quotas: dict[str, tuple[int, float]] | None = {} if args.no_quotas else None
    em = Emulator(port=args.port, host=args.host, clock=clock, speed=args.speed, heartbeat_s=args.heartbeat,
                  tick_s=args.tick, quotas=quotas, faults=faults, max_strike_proximity=args.max_strike_proximity,
                  market_clock=market_clock)
    print(f"TradeStation emulator on {em.url}; point the pipeline at it with:\n"
          f"  export TRADESTATION_API_URL={em.url} TRADESTATION_AUTH_URL={em.url}\n"
          f"  export TRADESTATION_CLIENT_ID=dev TRADESTATION_CLIENT_SECRET=dev TRADESTATION_REFRESH_TOKEN=dev\n"
          f"Faults: POST {em.url}/__emulator/faults (JSON), stats: GET {em.url}/__emulator/stats", flush=True)
    try:
        em.serve_forever()
    except KeyboardInterrupt:
        return 0
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``emulator`` command."""
    p = sub.add_parser("emulator", help="run a local TradeStation Web API v3 emulator backed by the simulated market")
    p.add_argument("--port", type=int, default=8765, help="TCP port (default 8765; 0 = any free port)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--at", help="market clock start, e.g. 2025-01-15T16:00:00Z (default: now)")
    p.add_argument("--speed", type=float, default=1.0, help="simulated seconds per second for stream updates")
    p.add_argument("--heartbeat", type=float, default=5.0, help="idle seconds before a stream heartbeat (5)")
    p.add_argument("--tick", type=float, default=1.0, help="seconds between stream updates (1)")
    p.add_argument("--no-quotas", action="store_true", help="do not enforce the documented request quotas")
    p.add_argument("--max-strike-proximity", type=int, default=200,
                   help="strikes an option-chain stream shows at most on each side of its center (200)")
    p.add_argument("--rate-limit-requests", type=int, default=0, help="answer the next N API calls with 429")
    p.add_argument("--rate-limit-reset", type=float, default=1.0, help="X-RateLimit-Reset seconds of those 429s")
    p.add_argument("--server-errors", type=int, default=0, help="answer the next N API calls with 503")
    p.add_argument("--slow", type=float, default=0.0, help="delay every API response by this many seconds")
    p.add_argument("--token-lifetime", type=int, default=1200, help="access token lifetime, seconds (1200)")
    p.add_argument("--rotate-refresh-tokens", action="store_true", help="rotate the refresh token on every grant")
    p.add_argument("--goaway-streams", type=int, default=0, help="next N streams send GoAway after 3 messages")
    p.add_argument("--goaway-shape", choices=["error", "status"], default="error",
                   help='{"Error":"GoAway"} or {"StreamStatus":"GoAway"}')
    p.add_argument("--dead-streams", type=int, default=0, help="next N streams go silent after 3 messages")
    p.add_argument("--starve-streams", type=int, default=0, help="next N streams send heartbeats only")
    p.add_argument("--split-chunks", action="store_true", help="split stream objects across chunks")
    p.add_argument("--malformed-every", type=int, default=0, help="insert malformed lines every N messages")
    p.add_argument("--revoke-refresh-tokens", action="store_true",
                   help="refuse every refresh grant with 403 invalid_grant (a revoked key)")
    p.add_argument("--dual-logon-streams", type=int, default=0,
                   help='next N streams end with {"Symbol":..,"Error":"DualLogon"}')
    p.set_defaults(handler=_handle)
