"""Blocking asset checks of an underlying's four core assets, run in the same run as the partitions they judge.

Each check is partitioned like its asset (``partitions_def``), so it loads exactly the partitions just
materialized through the asset's IO manager: one partition, or the range of a backfill run (up to
``ZEROGEX_BACKFILL_DAYS_PER_RUN`` dates, one expiration slot for the chain and surface). The levels checks load
every expiration slot's surface of their dates through the date-dimension mapping Dagster infers. All are
``blocking=True`` with severity ERROR: a failure stops the downstream assets of the same run (the surface after a
bad chain, for instance). The rules and tolerances live in :mod:`zerogex_pipeline.analytics.validation`.

A partition that is legitimately empty (a slot beyond the day's listed expirations, today's partition before the
open) passes when its materialization carries an ``empty_reason`` (copied into the check's metadata); an empty
partition without a reason fails. ``levels_complete`` holds the levels to the day's tracked expirations: every
stored row aggregates exactly the ``ZEROGEX_EXPIRATIONS`` nearest listed, each in its slot of the surface.

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
from zerogex_pipeline.defs.options.assets import session_opened
from zerogex_pipeline.defs.options.slots import TrackedExpirations, run_chain_keys
from zerogex_pipeline.defs.partitions import chain_partition_key, chain_partitions, day_partitions
from zerogex_pipeline.defs.resources import MarketDataResource
from zerogex_pipeline.settings import Settings
from zerogex_pipeline.underlyings import Underlying

MAX_PROBLEM_CHARS = 4000
"""The problems text in the metadata is cut here (the counts stay exact)."""


def materialization_metadata(
    context: dg.AssetCheckExecutionContext, key: dg.AssetKey, partitions: list[str] | None = None
) -> dict[str, Mapping[str, object]]:
    """Metadata values of the latest materialization of each of ``partitions`` of ``key`` (the check's own by
    default), read from this run first and the event log otherwise; a partition never materialized maps to {}."""
    wanted = list(partitions if partitions is not None else context.partition_keys)
    found: dict[str, Mapping[str, object]] = {}
    for record in context.instance.get_records_for_run(
        context.op_execution_context.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records:
        mat = record.asset_materialization
        if mat is not None and mat.asset_key == key and mat.partition in wanted:
            found[str(mat.partition)] = {k: v.value for k, v in mat.metadata.items()}
    rest = [p for p in wanted if p not in found]
    if rest:
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=rest), limit=4 * len(rest)
        ).records
        for record in records:  # newest first
            mat = record.asset_materialization
            if mat is not None and str(mat.partition) not in found:
                found[str(mat.partition)] = {k: v.value for k, v in mat.metadata.items()}
    return {p: found.get(p, {}) for p in wanted}


def empty_reasons(context: dg.AssetCheckExecutionContext, key: dg.AssetKey) -> dict[str, str | None]:
    """The ``empty_reason`` the asset recorded for each of the check's partitions, if any."""
    return {p: (str(m["empty_reason"]) if m.get("empty_reason") else None)
            for p, m in materialization_metadata(context, key).items()}


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


def empty_partition_problems(reason: str | None, what: str, upstream_rows: int = 0) -> ValidationResult:
    """The verdict on an empty partition: fine with the asset's empty_reason (and an empty upstream), else a problem."""
    problems: list[validation.Problem] = []
    if not reason:
        problems.append(validation.Problem(f"{what} is empty and its materialization gives no empty_reason", 1, ()))
    if upstream_rows:
        problems.append(validation.Problem(f"{what} is empty although its upstream partition has rows",
                                           upstream_rows, ()))
    return ValidationResult("empty", tuple(problems), {"rows_checked": 0, "empty_reason": reason})


def rows_of_day(frame: pd.DataFrame, date: dt.date) -> pd.DataFrame:
    """Rows of ``frame`` whose ``session_date`` is ``date``."""
    if frame.empty:
        return frame
    return frame[(frame["session_date"] == pd.Timestamp(date)).to_numpy()]


def rows_of_slot(frame: pd.DataFrame, slot: int) -> pd.DataFrame:
    """Rows of ``frame`` (one date's chain or surface) in expiration slot ``slot``."""
    if frame.empty:
        return frame
    return frame[(frame["expiration_slot"] == slot).to_numpy()]


def rows_of_partitions(frame: pd.DataFrame, pairs: list[tuple[dt.date, int]]) -> pd.DataFrame:
    """Rows of ``frame`` (a chain or surface) in any of the ``(date, slot)`` partitions ``pairs``."""
    if frame.empty:
        return frame
    keys = pd.MultiIndex.from_arrays([pd.to_datetime(frame["session_date"]), frame["expiration_slot"].astype(int)])
    return frame[keys.isin([(pd.Timestamp(d), s) for d, s in pairs])]


def build_asset_checks(
    underlying: Underlying,
    settings: Settings,
    bars: dg.AssetsDefinition,
    chain: dg.AssetsDefinition,
    surface: dg.AssetsDefinition,
    levels: dg.AssetsDefinition,
) -> list[dg.AssetChecksDefinition]:
    """The five blocking checks of ``underlying``: bars, chain, surface and levels (two), in lineage order."""
    with warnings.catch_warnings():
        # partitions_def on an asset check is a preview API in 1.13; it is what makes the check load
        # exactly the asset's partitions.
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
        partitions_def=day_partitions(settings),
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
        partitions_def=chain_partitions(settings),
        description=(
            "Per (date, expiration slot): one expiration; quotes 0 <= bid <= ask, last and mid >= 0 (exact: "
            "tick-rounded prices); volume and open interest >= 0; vendor IV null or within "
            f"[0, {validation.IV_MAX:g}] (the IV solver's bracket); one positive spot per snapshot; no repeated "
            f"(snapshot, symbol); snapshots every {settings.snapshot_minutes} min from the open to "
            f"min(now - {grace} min, close); every strike within ±{settings.strike_distance_pct:g}% of spot, and "
            f"calls and puts each reaching at least {validation.WINDOW_REACH:.0%} of that window below and above "
            "spot at every snapshot. An empty partition passes only with the asset's empty_reason."
        ),
    )
    def chain_sanity(
        context: dg.AssetCheckExecutionContext, option_chain_snapshots: pd.DataFrame
    ) -> dg.AssetCheckResult:
        reasons: dict[str, str | None] | None = None
        now = market_calendar.utc_now()
        parts = []
        for date, slot in run_chain_keys(context.partition_keys):
            key = str(chain_partition_key(date, slot))
            day = rows_of_slot(rows_of_day(option_chain_snapshots, date), slot)
            if day.empty:
                reasons = reasons if reasons is not None else empty_reasons(context, chain.key)
                parts.append((key, empty_partition_problems(reasons.get(key), "the chain")))
                continue
            expirations = sorted({pd.Timestamp(e).date() for e in day["expiration"].unique()})
            result = validation.validate_chain(
                day, market_calendar.session(date), expirations[0], settings.snapshot_minutes,
                settings.strike_distance_pct, now,
            )
            parts.append((key, result))
        return to_check_result(validation.combine("chain_sanity", parts))

    @dg.asset_check(
        asset=surface,
        name="gex_reconciliation",
        blocking=True,
        partitions_def=chain_partitions(settings),
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
        parts = []
        nonempty = []
        reasons: dict[str, str | None] | None = None
        for date, slot in run_chain_keys(context.partition_keys):
            key = str(chain_partition_key(date, slot))
            if rows_of_slot(rows_of_day(gex_surface, date), slot).empty:
                reasons = reasons if reasons is not None else empty_reasons(context, surface.key)
                chain_rows = rows_of_slot(rows_of_day(option_chain_snapshots, date), slot)
                parts.append((key, empty_partition_problems(reasons.get(key), "the surface", len(chain_rows))))
            else:
                nonempty.append((date, slot))
        for slot in sorted({s for _, s in nonempty}):  # per slot, one reconciliation over its non-empty days
            pairs = [(d, s) for d, s in nonempty if s == slot]
            chain_rows = rows_of_partitions(option_chain_snapshots, pairs)
            surface_rows = rows_of_partitions(gex_surface, pairs)
            first, last = chain_partition_key(*pairs[0]), chain_partition_key(*pairs[-1])
            label = str(first) if len(pairs) == 1 else f"{first} .. {last}"
            parts.append((label, validation.validate_surface(surface_rows, chain_rows)))
        return to_check_result(validation.combine("gex_reconciliation", parts))

    @dg.asset_check(
        asset=levels,
        name="levels_plausibility",
        blocking=True,
        partitions_def=day_partitions(settings),
        # Dagster 1.13 drops an AssetIn's partition_mapping on checks (AssetChecksDefinition.create passes
        # none) and infers MultiToSingleDimensionPartitionMapping over the shared `date` dimension: every
        # expiration slot's surface of the dates, as gex_levels itself loads (the tests compare row counts).
        additional_ins={"gex_surface": dg.AssetIn(key=surface.key)},
        description=(
            "Per snapshot, total call/put/net GEX equal the sums of that date's gex_surface by strike over "
            f"every tracked expiration within a relative {validation.RECONCILE_RTOL:g} of the gross GEX, with "
            "call >= 0 >= put; spot equals the surface's; call wall a listed strike >= spot with positive GEX and put "
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
        parts = []
        reasons: dict[str, str | None] | None = None
        for key in context.partition_keys:
            date = dt.date.fromisoformat(key)
            if rows_of_day(gex_levels, date).empty:
                reasons = reasons if reasons is not None else empty_reasons(context, levels.key)
                parts.append((key, empty_partition_problems(reasons.get(key), "gex_levels",
                                                            len(rows_of_day(gex_surface, date)))))
        if not gex_levels.empty:
            keys = context.partition_keys
            label = keys[0] if len(keys) == 1 else f"{keys[0]} .. {keys[-1]}"
            parts.append((label, validation.validate_levels(gex_levels, gex_surface)))
        return to_check_result(validation.combine("levels_plausibility", parts))

    @dg.asset_check(
        asset=levels,
        name="levels_complete",
        blocking=True,
        partitions_def=day_partitions(settings),
        additional_ins={"gex_surface": dg.AssetIn(key=surface.key)},
        description=(
            f"Every stored levels row of the date aggregates exactly the day's {settings.expirations} tracked "
            "expirations (the ZEROGEX_EXPIRATIONS nearest listed, from the stream capture or the source's listing): "
            "its expiration_list names them and its expirations column counts them, and the date's gex_surface "
            "holds each one in its expiration slot at every snapshot. A session that has opened must have levels; "
            "one not yet open must have none. Fails naming each (date, slot = expiration) to re-materialize."
        ),
    )
    def levels_complete(
        context: dg.AssetCheckExecutionContext, gex_levels: pd.DataFrame, gex_surface: pd.DataFrame,
        market_data: MarketDataResource,
    ) -> dg.AssetCheckResult:
        dates = [dt.date.fromisoformat(k) for k in context.partition_keys]
        now = market_calendar.utc_now()

        def listing(date: dt.date) -> list[dt.date]:
            return list(market_data.get_source().listed_expirations(underlying, date))

        with TrackedExpirations(underlying, settings, listing) as tracked:
            expected = {d: tracked.of(d) for d in dates}
        surface_rows = gex_surface[gex_surface["expiration_slot"] <= settings.expirations] if len(gex_surface) \
            else gex_surface
        # Opened: past the open's capture grace, or past the open with levels already stored (a refresh of the
        # open's captured snapshot can land within that grace). Before the open no row may exist.
        stored = set(pd.to_datetime(gex_levels["session_date"]).dt.date) if len(gex_levels) else set()
        opened = {d for d in dates if session_opened(d, now)
                  or (d in stored and market_calendar.session(d).open <= now)}
        result = validation.validate_levels_complete(gex_levels, surface_rows, expected, opened)
        return to_check_result(result)

    return [bars_continuity_and_coverage, chain_sanity, gex_reconciliation, levels_plausibility, levels_complete]
