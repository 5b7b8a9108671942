"""Blocking asset checks of an underlying's four core assets, run in the same run as the partition they judge.

Each check is partitioned like its asset (``partitions_def``), so it loads exactly the partition just
materialized through the asset's IO manager (the chain and surface checks a ``date|expiration`` key of the
dynamic multi-partitions; the levels check the date, with every expiration's surface of that date through
the date-dimension mapping Dagster infers) and its result is recorded against that partition. All are
``blocking=True`` with severity ERROR: a failure stops the downstream assets of the same run (the surface
after a bad chain, for instance). The rules and tolerances live in :mod:`zerogex_pipeline.analytics.validation`.

A partition that is legitimately empty (an expired or unlisted expiration, today's partition before the
open) passes when its materialization carries an ``empty_reason`` (copied into the check's metadata); an
empty partition without a reason fails.

No ``from __future__ import annotations``: Dagster reads the check functions' annotations at runtime.
"""

import datetime as dt
import warnings
from collections.abc import Mapping

import dagster as dg
import pandas as pd

from zerogex_pipeline import market_calendar
from zerogex_pipeline.analytics import validation
from zerogex_pipeline.analytics.validation import ValidationResult
from zerogex_pipeline.defs.partitions import chain_partitions, trading_day_partitions
from zerogex_pipeline.settings import Settings
from zerogex_pipeline.underlyings import Underlying

MAX_PROBLEM_CHARS = 4000
"""The problems text in the metadata is cut here (the counts stay exact)."""


def materialization_metadata(context: dg.AssetCheckExecutionContext, key: dg.AssetKey) -> Mapping[str, object]:
    """Metadata values of the latest materialization of the check's partition of ``key`` ({} if none)."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[str(context.partition_key)]), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        return {}
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


def empty_reason(context: dg.AssetCheckExecutionContext, key: dg.AssetKey) -> str | None:
    """The ``empty_reason`` the asset recorded for this partition, if any."""
    reason = materialization_metadata(context, key).get("empty_reason")
    return str(reason) if reason else None


def to_check_result(result: ValidationResult) -> dg.AssetCheckResult:
    """An ERROR-severity check result: passed, the numbers and the problems as metadata."""
    text = result.summary()
    metadata: dict[str, object] = {k: v for k, v in result.numbers.items() if v is not None}
    metadata["problems"] = dg.MetadataValue.text(text[:MAX_PROBLEM_CHARS])
    metadata["problem_count"] = len(result.problems)
    return dg.AssetCheckResult(
        passed=result.passed, severity=dg.AssetCheckSeverity.ERROR, metadata=metadata,  # type: ignore[arg-type]
        description=None if result.passed else text[:MAX_PROBLEM_CHARS],
    )


def empty_partition_result(
    name: str, reason: str | None, what: str, upstream_rows: int | None = None
) -> dg.AssetCheckResult:
    """Pass an empty partition that states why it is empty; fail one that does not (or whose upstream has rows)."""
    problems: list[validation.Problem] = []
    if not reason:
        problems.append(validation.Problem(f"{what} is empty and its materialization gives no empty_reason", 1, ()))
    if upstream_rows:
        problems.append(validation.Problem(f"{what} is empty although its upstream partition has rows",
                                           upstream_rows, ()))
    numbers: dict[str, validation.Number] = {"rows_checked": 0, "empty_reason": reason}
    return to_check_result(ValidationResult(name, tuple(problems), numbers))


def _partition_dates(context: dg.AssetCheckExecutionContext) -> tuple[dt.date, dt.date]:
    keys = context.partition_key.keys_by_dimension  # type: ignore[attr-defined]
    return dt.date.fromisoformat(keys["date"]), dt.date.fromisoformat(keys["expiration"])


def build_asset_checks(
    underlying: Underlying,
    settings: Settings,
    bars: dg.AssetsDefinition,
    chain: dg.AssetsDefinition,
    surface: dg.AssetsDefinition,
    levels: dg.AssetsDefinition,
) -> list[dg.AssetChecksDefinition]:
    """The four blocking checks of ``underlying``: bars, chain, surface and levels (in lineage order)."""
    with warnings.catch_warnings():
        # partitions_def on an asset check is a preview API in 1.13; it is what makes the check load
        # exactly the asset's partition and record its result against that partition.
        warnings.filterwarnings("ignore", category=dg.PreviewWarning)
        return _build(underlying, settings, bars, chain, surface, levels)


def _build(
    underlying: Underlying, settings: Settings, bars: dg.AssetsDefinition, chain: dg.AssetsDefinition,
    surface: dg.AssetsDefinition, levels: dg.AssetsDefinition,
) -> list[dg.AssetChecksDefinition]:
    grace = int(validation.PUBLISH_GRACE.total_seconds() // 60)

    @dg.asset_check(
        asset=bars,
        name="bars_continuity_and_coverage",
        blocking=True,
        partitions_def=trading_day_partitions(),
        description=(
            f"Every {settings.bar_minutes}-minute bar end of the NYSE regular session (13:00 ET close on early "
            f"closes) is present up to min(now - {grace} min, close) and none off that grid or after "
            "min(now, close); no repeated bar; finite positive prices with low <= open, close <= high; volume "
            ">= 0. Exact (the grid is deterministic); the grace only covers bars not yet published. A "
            "session not yet open passes with no bars (empty_reason in the metadata)."
        ),
    )
    def bars_continuity_and_coverage(
        context: dg.AssetCheckExecutionContext, underlying_bars: pd.DataFrame
    ) -> dg.AssetCheckResult:
        sessions = [market_calendar.session(k) for k in context.partition_keys]
        result = validation.validate_bars(underlying_bars, sessions, settings.bar_minutes,
                                          market_calendar.utc_now())
        return to_check_result(result)

    @dg.asset_check(
        asset=chain,
        name="chain_sanity",
        blocking=True,
        partitions_def=chain_partitions(underlying),
        description=(
            "Quotes: 0 <= bid <= ask, last and mid >= 0 (exact: tick-rounded prices); volume and open "
            f"interest >= 0; vendor IV null or within [0, {validation.IV_MAX:g}] (the IV solver's bracket); one "
            "positive spot per snapshot; no repeated (snapshot, symbol); snapshots every "
            f"{settings.snapshot_minutes} min from the open to min(now - {grace} min, close); every strike "
            f"within ±{settings.strike_distance_pct:g}% of spot, and calls and puts each reaching at least "
            f"{validation.WINDOW_REACH:.0%} of that window below and above spot at every snapshot. An empty "
            "partition passes only with the asset's empty_reason."
        ),
    )
    def chain_sanity(
        context: dg.AssetCheckExecutionContext, option_chain_snapshots: pd.DataFrame
    ) -> dg.AssetCheckResult:
        if option_chain_snapshots.empty:
            return empty_partition_result("chain_sanity", empty_reason(context, chain.key), "the chain")
        date, expiration = _partition_dates(context)
        result = validation.validate_chain(
            option_chain_snapshots, market_calendar.session(date), expiration, settings.snapshot_minutes,
            settings.strike_distance_pct, market_calendar.utc_now(),
        )
        return to_check_result(result)

    @dg.asset_check(
        asset=surface,
        name="gex_reconciliation",
        blocking=True,
        partitions_def=chain_partitions(underlying),
        additional_ins={"option_chain_snapshots": dg.AssetIn(key=chain.key)},
        description=(
            "Dealer sign convention: call GEX >= 0, put GEX <= 0 (volume GEX too). net_gex = call_gex + "
            "put_gex, and each side = sign x gamma x OI x 100 x S^2 x 0.01 (0 when gamma is null), within a "
            f"relative {validation.RECONCILE_RTOL:g} of the row's gross GEX (float summation error is ~1e-16). "
            "Exactly one row per (snapshot, strike, settlement) of the same partition's chain, with the chain's call and "
            f"put open interest; IVs within [0, {validation.IV_MAX:g}]. An empty surface passes only with an "
            "empty chain and an empty_reason."
        ),
    )
    def gex_reconciliation(
        context: dg.AssetCheckExecutionContext, gex_surface: pd.DataFrame, option_chain_snapshots: pd.DataFrame
    ) -> dg.AssetCheckResult:
        if gex_surface.empty:
            return empty_partition_result("gex_reconciliation", empty_reason(context, surface.key), "the surface",
                                          upstream_rows=len(option_chain_snapshots))
        return to_check_result(validation.validate_surface(gex_surface, option_chain_snapshots))

    @dg.asset_check(
        asset=levels,
        name="levels_plausibility",
        blocking=True,
        partitions_def=trading_day_partitions(),
        # Dagster 1.13 drops an AssetIn's partition_mapping on checks (AssetChecksDefinition.create passes
        # none) and infers MultiToSingleDimensionPartitionMapping over the shared `date` dimension: every
        # expiration's surface of the date, as gex_levels itself loads (the tests compare row counts).
        additional_ins={"gex_surface": dg.AssetIn(key=surface.key)},
        description=(
            "Per snapshot, total call/put/net GEX equal the sums of that date's gex_surface by strike over "
            f"every expiration within a relative {validation.RECONCILE_RTOL:g} of the gross GEX, with call >= 0 "
            ">= put; spot equals the surface's; call wall a listed strike >= spot with positive GEX and put "
            "wall one <= spot with negative GEX, each with the largest |GEX| of its side (same tolerance), "
            "null only when no strike on that side has GEX of that sign; "
            "zero gamma (and flip_dte_*) null exactly when a reason is given, otherwise within "
            f"{validation.MAX_DISTANCE + validation.GRID_STEP:.0%} of spot (the 8% gate plus one 1% grid cell); "
            f"raw zero gamma within the widest profile grid (±{validation.GRID_HALF_WIDTHS[-1]:.0%}). An empty "
            "partition passes only with no surface for the date and an empty_reason."
        ),
    )
    def levels_plausibility(
        context: dg.AssetCheckExecutionContext, gex_levels: pd.DataFrame, gex_surface: pd.DataFrame
    ) -> dg.AssetCheckResult:
        if gex_levels.empty:
            return empty_partition_result("levels_plausibility", empty_reason(context, levels.key), "gex_levels",
                                          upstream_rows=len(gex_surface))
        return to_check_result(validation.validate_levels(gex_levels, gex_surface))

    return [bars_continuity_and_coverage, chain_sanity, gex_reconciliation, levels_plausibility]
