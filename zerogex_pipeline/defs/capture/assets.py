"""The stream capture in the asset graph: external assets reported by ``zerogex stream``, and its check.

Dagster's pattern for observing a streaming process: the engine runs outside Dagster (a service beside the
webserver and the daemon) and reports what it wrote with ``report_runless_asset_event``, one
materialization per snapshot instant of today's partition:

- ``<u>/captured_quotes``: every tracked contract in the strike window at each snapshot instant (upstream of
  ``option_chain_snapshots``), with capture coverage, lag, live streams and requests in its metadata;
- ``<u>/captured_bars``: the underlying's closed bars from its bar stream (upstream of ``underlying_bars``);
- ``<u>/live_levels``: the levels the engine computes every few seconds (plotted from the numeric metadata).

Dagster never materializes them. The check ``capturing_during_session`` fails when, during the session, the
newest captured snapshot is older than the last instant due (:mod:`zerogex_pipeline.live.coverage`); the
``<u>_capture_watch`` sensor evaluates it every minute of the session and records the result.
"""

import datetime as dt
from typing import Any

import dagster as dg

from zerogex_pipeline import market_calendar
from zerogex_pipeline.defs.partitions import day_partitions
from zerogex_pipeline.live.coverage import CaptureCoverage, capture_coverage
from zerogex_pipeline.schemas import CAPTURED_BARS, CAPTURED_QUOTES, LIVE_LEVELS
from zerogex_pipeline.settings import Settings
from zerogex_pipeline.storage.capture_store import CaptureStore
from zerogex_pipeline.underlyings import Underlying

CHECK_NAME = "capturing_during_session"


def capture_keys(underlying: Underlying) -> tuple[dg.AssetKey, dg.AssetKey, dg.AssetKey]:
    """Keys of ``captured_quotes``, ``captured_bars`` and ``live_levels`` of ``underlying``."""
    return (dg.AssetKey([underlying.key, "captured_quotes"]), dg.AssetKey([underlying.key, "captured_bars"]),
            dg.AssetKey([underlying.key, "live_levels"]))


def build_capture_specs(underlying: Underlying, settings: Settings, storage_kind: str) -> list[dg.AssetSpec]:
    """The three external assets the stream engine reports."""
    quotes, bars, levels = capture_keys(underlying)
    feed = "tradestation" if settings.data_source == "tradestation" else "simulated"
    common = {"group_name": f"{underlying.key}_live", "partitions_def": day_partitions(settings),
              "kinds": {feed, storage_kind}}
    where = "PostgreSQL" if settings.database_url else f"{settings.data_dir}/live.sqlite"
    return [
        dg.AssetSpec(
            quotes, **common,  # type: ignore[arg-type]
            description=(
                f"{underlying.name} option quotes captured live by `zerogex stream` every {settings.snapshot_minutes} "
                f"minutes: every tracked contract (the {settings.expirations} nearest expirations) with |strike/spot - 1| "
                f"<= {settings.strike_distance_pct}% at the instant, bid/ask/last/mid (USD per share), volume and open "
                "interest (contracts), vendor IV and greeks (chain stream), spot and its own time, and when each "
                f"quote arrived. Append-only, one write per instant ({where}). Reported by the engine, never "
                "materialized by Dagster; its metadata carries capture coverage, lag and stream health."
            ),
            metadata={"dagster/column_schema": CAPTURED_QUOTES.table_schema(), "table": "captured_quotes"},
        ),
        dg.AssetSpec(
            bars, **common,  # type: ignore[arg-type]
            description=(f"{underlying.name} {settings.bar_minutes}-minute bars captured from the bar stream by "
                         "`zerogex stream`: closed bars only, prices in USD, volume in shares, ts = bar end (UTC). "
                         "Reported by the engine, never materialized by Dagster."),
            metadata={"dagster/column_schema": CAPTURED_BARS.table_schema(), "table": "captured_bars"},
        ),
        dg.AssetSpec(
            levels, **common, deps=[quotes],  # type: ignore[arg-type]
            description=(
                f"{underlying.name} live GEX levels computed by `zerogex stream` every few seconds from the live "
                "chain, with the same core and convention as gex_levels (equal to it at each snapshot instant): "
                "spot (USD), net GEX (USD per 1% move), zero gamma, walls and max pain (USD). One event per "
                "snapshot instant; the asset's plots show its numbers through the day."
            ),
            metadata={"dagster/column_schema": LIVE_LEVELS.table_schema(), "table": "live_levels"},
        ),
    ]


def evaluate_capture(underlying: Underlying, settings: Settings, now: dt.datetime | None = None) -> CaptureCoverage:
    """The capture's coverage of today's session (or the last one) at ``now`` (default: the pipeline clock)."""
    import pandas as pd

    at = market_calendar.utc_now() if now is None else pd.Timestamp(now)
    day = market_calendar.previous_session_on_or_before(at.tz_convert(market_calendar.NEW_YORK).date())
    session = market_calendar.session(day)
    store = CaptureStore(settings, wait_s=10)
    try:
        captured = store.captured_instants(underlying, day)
    finally:
        store.close()
    return capture_coverage(session, settings.snapshot_minutes, captured, settings.expirations, at)


def coverage_evaluation(underlying: Underlying, coverage: CaptureCoverage) -> dg.AssetCheckEvaluation:
    """The check's evaluation for a coverage judgement (reported by the watch sensor)."""
    quotes, _, _ = capture_keys(underlying)
    return dg.AssetCheckEvaluation(
        asset_key=quotes, check_name=CHECK_NAME, passed=coverage.ok, severity=dg.AssetCheckSeverity.ERROR,
        description=coverage.message, metadata=coverage_metadata(coverage),
    )


def coverage_metadata(coverage: CaptureCoverage) -> dict[str, Any]:
    """Numbers of a coverage judgement for the UI."""
    return {
        "message": coverage.message,
        "capture_coverage_pct": round(coverage.coverage_pct, 2),
        "lag_seconds": None if coverage.lag_seconds is None else round(coverage.lag_seconds, 1),
        "newest_snapshot": None if coverage.newest is None else coverage.newest.isoformat(),
        "expected_snapshot": None if coverage.expected is None else coverage.expected.isoformat(),
        "instants_elapsed": coverage.instants_elapsed,
        "instants_missed": len(coverage.missed_instants),
        "in_session": coverage.in_session,
    }


def build_capture_check(underlying: Underlying, settings: Settings) -> dg.AssetChecksDefinition:
    """``captured_quotes:capturing_during_session`` (runnable from the UI; the watch sensor records it too)."""
    quotes, _, _ = capture_keys(underlying)

    @dg.asset_check(
        asset=quotes, name=CHECK_NAME, blocking=False,
        description=(
            "Fails when, during the regular session, the newest captured snapshot is older than the last snapshot "
            f"instant due (every {settings.snapshot_minutes} min, 90 s grace): the stream engine stopped or its "
            "streams are down. Outside the session it passes (nothing to capture). Metadata: coverage of the "
            "day's (instant, expiration) pairs, lag, instants missed."
        ),
    )
    def capturing_during_session(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        coverage = evaluate_capture(underlying, settings)
        return dg.AssetCheckResult(passed=coverage.ok, severity=dg.AssetCheckSeverity.ERROR,
                                   description=coverage.message, metadata=coverage_metadata(coverage))

    return capturing_during_session
