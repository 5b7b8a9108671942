"""Schedules (America/New_York) and the jobs they and the UI launch, per underlying.

- ``<u>_register_expirations`` (job) / ``<u>_pre_open_expirations`` (schedule, 09:00 ET on trading
  days): registers the day's ``ZEROGEX_EXPIRATIONS`` nearest listed expirations as dynamic
  partitions before the open, so today's chain partitions exist when the first refresh fires.
- ``<u>_backfill_trading_days`` (job, config ``start``/``end``): submits the asset backfill of every
  core asset over a date range (:mod:`.backfills`); launch it from the UI's Launchpad.
- ``<u>_end_of_day`` (schedule, 16:30 ET on trading days, after early closes too): the same job for
  today, re-materializing the day's partitions in final form (all bars, every snapshot to the close).
- ``<u>_regime_backtest`` (job) / ``<u>_evening_backtest`` (schedule, 18:00 ET on trading days): the
  regime backtest over the stored history, after the end-of-day backfill has stored the day.

Non-trading days are skipped with the reason and the next session. Each tick has a run key, so a
schedule never launches the same day twice.
"""

import datetime as dt
from collections.abc import Callable, Sequence
from zoneinfo import ZoneInfo

import dagster as dg
from dagster._core.definitions.assets.graph.asset_graph import AssetGraph
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition
from pydantic import Field

from zerogex_pipeline import market_calendar
from zerogex_pipeline.defs.automation.backfills import (
    BackfillRequestError,
    backfill_sessions,
    submit_trading_day_backfill,
    tracked_expirations,
)
from zerogex_pipeline.defs.market_data.assets import TRADESTATION_POOL
from zerogex_pipeline.defs.market_data.source_retries import retry_transient_source_errors
from zerogex_pipeline.defs.partitions import expirations_partitions_name
from zerogex_pipeline.defs.resources import MarketDataResource
from zerogex_pipeline.settings import Settings
from zerogex_pipeline.underlyings import Underlying

PRE_OPEN_CRON = "0 9 * * 1-5"
END_OF_DAY_CRON = "30 16 * * 1-5"
EVENING_BACKTEST_CRON = "0 18 * * 1-5"
FINAL_TAG = "zerogex/final"


class TradingDayRangeConfig(dg.Config):
    """A range of trading days (both ends included, ``YYYY-MM-DD``, America/New_York dates)."""

    start: str = Field(description="First date, YYYY-MM-DD.")
    end: str = Field(description="Last date, YYYY-MM-DD (may equal start).")


class TradingDayConfig(dg.Config):
    """One trading day; empty means today in New York."""

    date: str = Field(default="", description="YYYY-MM-DD; empty = today (America/New_York).")


def _today_ny() -> dt.date:
    return market_calendar.utc_now().tz_convert(market_calendar.NEW_YORK).date()


def build_backfill_job(
    underlying: Underlying, settings: Settings, assets: Sequence[dg.AssetsDefinition]
) -> dg.JobDefinition:
    """The job that submits the asset backfill of ``underlying``'s core ``assets`` over a date range."""
    asset_graph = AssetGraph.from_assets(list(assets))

    @dg.op(
        name=f"{underlying.key}_submit_trading_day_backfill",
        pool=TRADESTATION_POOL,
        out=dg.Out(dg.Nothing),  # nothing to store: the backfill id and counts are output metadata
        description=(
            f"Looks up the {settings.expirations} nearest {underlying.name} expirations listed on each trading "
            "day of the range, registers them, and submits one asset backfill (bars, chain snapshots, GEX "
            "surface, levels) that the backfill daemon runs in dependency order."
        ),
    )
    def submit_backfill(
        context: dg.OpExecutionContext, config: TradingDayRangeConfig, market_data: MarketDataResource
    ) -> dg.Output[None]:
        try:
            sessions = backfill_sessions(config.start, config.end)
        except BackfillRequestError as exc:
            raise dg.Failure(description=str(exc)) from None
        with retry_transient_source_errors(context):
            plan = tracked_expirations(market_data.get_source(), underlying, sessions, settings.expirations)
        title = f"{underlying.name} {sessions[0]}..{sessions[-1]}"
        final = context.run.tags.get(FINAL_TAG)
        backfill_id = submit_trading_day_backfill(
            context.instance, asset_graph, underlying, plan,
            title=f"{title} (end of day)" if final else title,
            tags={FINAL_TAG: final} if final else None,
        )
        context.log.info(f"submitted backfill {backfill_id}: {title}, {len(sessions)} trading day(s)")
        return dg.Output(
            None,
            metadata={
                "backfill_id": backfill_id,
                "trading_days": len(sessions),
                "chain_partitions": sum(len(e) for e in plan.values()),
                "expirations": sorted({e.isoformat() for exps in plan.values() for e in exps}),
            },
        )

    @dg.job(
        name=f"{underlying.key}_backfill_trading_days",
        description=(
            f"Backfill every {underlying.name} core asset over a date range: set `start` and `end` in the "
            "Launchpad config; the backfill appears under Overview > Backfills."
        ),
    )
    def backfill_trading_days() -> None:
        submit_backfill()

    return backfill_trading_days


def build_register_expirations_job(underlying: Underlying, settings: Settings) -> dg.JobDefinition:
    """The job that registers a trading day's tracked expirations as dynamic partitions."""

    @dg.op(
        name=f"{underlying.key}_register_listed_expirations",
        pool=TRADESTATION_POOL,
        out=dg.Out(dg.Nothing),
        description=(
            f"Registers the {settings.expirations} nearest {underlying.name} expirations listed on the date in "
            f"the dynamic partition set {expirations_partitions_name(underlying)}."
        ),
    )
    def register_expirations(
        context: dg.OpExecutionContext, config: TradingDayConfig, market_data: MarketDataResource
    ) -> dg.Output[None]:
        try:
            date = dt.date.fromisoformat(config.date) if config.date else _today_ny()
        except ValueError:
            raise dg.Failure(description=f"date: expected YYYY-MM-DD or empty, got {config.date!r}") from None
        if not market_calendar.is_session(date):
            raise dg.Failure(description=f"date: {date} is not an NYSE trading day")
        with retry_transient_source_errors(context):
            listed = market_data.get_source().listed_expirations(underlying, date)[: settings.expirations]
        name = expirations_partitions_name(underlying)
        known = set(context.instance.get_dynamic_partitions(name))
        keys = [e.isoformat() for e in listed]
        new = [k for k in keys if k not in known]
        if new:
            context.instance.add_dynamic_partitions(name, new)
        context.log.info(f"{underlying.name} {date}: tracking {keys}; newly registered {new or 'none'}")
        return dg.Output(None, metadata={"date": date.isoformat(), "tracked": keys, "registered": new})

    @dg.job(
        name=f"{underlying.key}_register_expirations",
        description=f"Register today's tracked {underlying.name} expirations as dynamic partitions.",
    )
    def register_job() -> None:
        register_expirations()

    return register_job


def _skip_unless_session(date: dt.date) -> dg.SkipReason | None:
    if market_calendar.is_session(date):
        return None
    return dg.SkipReason(
        f"{date} is not an NYSE trading day; next session {market_calendar.next_session_on_or_after(date)}"
    )


def _tick_date(context: dg.ScheduleEvaluationContext) -> dt.date:
    when = context.scheduled_execution_time
    if when is None:
        return _today_ny()
    return when.astimezone(ZoneInfo(market_calendar.NEW_YORK)).date()


def _trading_day_schedule(
    name: str,
    job: dg.JobDefinition | UnresolvedAssetJobDefinition,
    cron: str,
    description: str,
    request: Callable[[dt.date], dg.RunRequest],
) -> dg.ScheduleDefinition:
    """A RUNNING America/New_York schedule that asks ``request`` for the tick's run on NYSE trading days
    and skips other days with the reason and the next session."""

    @dg.schedule(
        name=name,
        job=job,
        cron_schedule=cron,
        execution_timezone=market_calendar.NEW_YORK,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=description,
    )
    def _schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        date = _tick_date(context)
        return _skip_unless_session(date) or request(date)

    return _schedule


def build_pre_open_schedule(underlying: Underlying, register_job: dg.JobDefinition) -> dg.ScheduleDefinition:
    """09:00 ET on trading days: register the day's tracked expirations."""
    op_name = f"{underlying.key}_register_listed_expirations"
    return _trading_day_schedule(
        f"{underlying.key}_pre_open_expirations",
        register_job,
        PRE_OPEN_CRON,
        f"09:00 ET on NYSE trading days: register today's tracked {underlying.name} expirations.",
        lambda date: dg.RunRequest(
            run_key=f"{underlying.key}-{date}-pre-open",
            run_config={"ops": {op_name: {"config": {"date": date.isoformat()}}}},
        ),
    )


def build_end_of_day_schedule(underlying: Underlying, backfill_job: dg.JobDefinition) -> dg.ScheduleDefinition:
    """16:30 ET on trading days: re-materialize the day's partitions in final form."""
    op_name = f"{underlying.key}_submit_trading_day_backfill"
    return _trading_day_schedule(
        f"{underlying.key}_end_of_day",
        backfill_job,
        END_OF_DAY_CRON,
        f"16:30 ET on NYSE trading days (after the 16:00 close, and after 13:00 early closes): backfill "
        f"today's {underlying.name} bars, chain snapshots, GEX surfaces and levels in final form.",
        lambda date: dg.RunRequest(
            run_key=f"{underlying.key}-{date}-final",
            run_config={"ops": {op_name: {"config": {"start": date.isoformat(), "end": date.isoformat()}}}},
            tags={FINAL_TAG: date.isoformat()},
        ),
    )


def build_backtest_job(underlying: Underlying, backtest: dg.AssetsDefinition) -> UnresolvedAssetJobDefinition:
    """Materializes the (unpartitioned) regime backtest of ``underlying``."""
    return dg.define_asset_job(
        name=f"{underlying.key}_regime_backtest",
        selection=dg.AssetSelection.assets(backtest),
        description=f"{underlying.name} GEX regime backtest over the stored history.",
    )


def build_evening_backtest_schedule(
    underlying: Underlying, backtest_job: UnresolvedAssetJobDefinition
) -> dg.ScheduleDefinition:
    """18:00 ET on trading days: refresh the regime backtest with the day's final levels and bars."""
    return _trading_day_schedule(
        f"{underlying.key}_evening_backtest",
        backtest_job,
        EVENING_BACKTEST_CRON,
        f"18:00 ET on NYSE trading days (90 minutes after the end-of-day backfill starts): re-run the "
        f"{underlying.name} regime backtest over the stored history.",
        lambda date: dg.RunRequest(run_key=f"{underlying.key}-{date}-backtest"),
    )
