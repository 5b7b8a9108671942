"""Schedules (America/New_York) and the jobs they and the UI launch, per underlying.

- ``<u>_backfill_trading_days`` (job, partitioned by trading day): submits the asset backfill of every core
  asset (bars, every expiration slot's chain and surface, levels) for its partition's date. From the UI: Jobs >
  the job > Partitions > Launch backfill, pick a date range in the partitions dialog (no config to type): the
  job backfill's runs submit **one** asset backfill over the whole range (the first run submits it, the others
  link to it), shown under Overview > Backfills and linked from each run's output metadata. The Launchpad's
  partition picker launches one date.
- ``<u>_end_of_day`` (schedule, 16:30 ET on trading days, after early closes too): the same job for today,
  re-materializing the day's partitions in final form (all bars, every snapshot to the close).
- ``<u>_regime_backtest`` (job) / ``<u>_evening_backtest`` (schedule, 18:00 ET on trading days): the
  regime backtest over the stored history, after the end-of-day backfill has stored the day.

Non-trading days are skipped with the reason and the next session. Each tick has a run key, so a schedule never
launches the same day twice. Nothing is registered before the open any more: the chain's expiration slots are
static partitions (see :mod:`zerogex_pipeline.defs.partitions`).
"""

import datetime as dt
from collections.abc import Callable
from zoneinfo import ZoneInfo

import dagster as dg
from dagster._core.definitions.assets.graph.asset_graph import AssetGraph
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition
from dagster._core.storage.tags import BACKFILL_ID_TAG

from zerogex_pipeline import market_calendar
from zerogex_pipeline.defs.automation.backfills import (
    BackfillRequestError,
    backfill_path,
    backfill_sessions,
    submit_trading_day_backfill,
)
from zerogex_pipeline.defs.partitions import day_partitions
from zerogex_pipeline.settings import Settings
from zerogex_pipeline.underlyings import Underlying

END_OF_DAY_CRON = "30 16 * * 1-5"
EVENING_BACKTEST_CRON = "0 18 * * 1-5"
FINAL_TAG = "zerogex/final"
JOB_BACKFILL_TAG = "zerogex/job_backfill"
"""Tag of an asset backfill submitted for a job backfill of ``<u>_backfill_trading_days``: the job backfill's id."""
NO_RUN_RETRIES = {"dagster/max_retries": "0"}
"""A refused or failed submission is not retried by the run-retry daemon: its input will not change."""


def _today_ny() -> dt.date:
    return market_calendar.utc_now().tz_convert(market_calendar.NEW_YORK).date()


def asset_backfill_id_for(job_backfill_id: str) -> str:
    """The id of the one asset backfill a job backfill of the backfill job submits (deterministic: its runs share it)."""
    return f"{job_backfill_id}-assets"


def build_backfill_job(
    underlying: Underlying, settings: Settings, assets: list[dg.AssetsDefinition]
) -> dg.JobDefinition:
    """The trading-day-partitioned job that submits the asset backfill of ``underlying``'s core ``assets``."""
    asset_graph = AssetGraph.from_assets(list(assets))
    partitions = day_partitions(settings)

    @dg.op(
        name=f"{underlying.key}_submit_trading_day_backfill",
        out=dg.Out(dg.Nothing),  # nothing to store: the backfill id, its link and counts are output metadata
        description=(
            f"Submits one asset backfill of {underlying.name}'s bars, chain snapshots and GEX surfaces (every one "
            f"of the {settings.expirations} expiration slots) and levels for the run's date, or for every date of "
            "the job backfill the run belongs to (submitted once, by whichever of its runs comes first)."
        ),
    )
    def submit_backfill(context: dg.OpExecutionContext) -> dg.Output[None]:
        job_backfill = context.run.tags.get(BACKFILL_ID_TAG)
        keys: list[str] = [context.partition_key]
        if job_backfill:
            backfill = context.instance.get_backfill(job_backfill)
            keys = list(backfill.partition_names or keys) if backfill is not None else keys
        try:
            sessions = backfill_sessions(min(keys), max(keys), first=settings.first_date)
        except BackfillRequestError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        sessions = [d for d in sessions if d.isoformat() in set(keys)]  # exactly the selected dates
        title = f"{underlying.name} {sessions[0]}..{sessions[-1]}"
        final = context.run.tags.get(FINAL_TAG)
        tags = {**({FINAL_TAG: final} if final else {}), **({JOB_BACKFILL_TAG: job_backfill} if job_backfill else {}),
                "zerogex/submitted_by_run": context.run_id}
        backfill_id = asset_backfill_id_for(job_backfill) if job_backfill else None
        existing = context.instance.get_backfill(backfill_id) if backfill_id else None
        submitted = existing is None
        if submitted:
            try:
                backfill_id = submit_trading_day_backfill(
                    context.instance, asset_graph, underlying, sessions, settings.expirations,
                    title=f"{title} (end of day)" if final else title, tags=tags, backfill_id=backfill_id,
                )
            except Exception:
                if backfill_id is None or context.instance.get_backfill(backfill_id) is None:
                    raise
                submitted = False  # another run of the same job backfill submitted it a moment before
        assert backfill_id is not None
        link = backfill_path(backfill_id)
        context.log.info(f"{'submitted' if submitted else 'linked to'} asset backfill {backfill_id}: {title}, "
                         f"{len(sessions)} trading day(s); follow it at {link} (Overview > Backfills)")
        return dg.Output(
            None,
            metadata={
                "backfill": dg.MetadataValue.url(link),
                "backfill_id": backfill_id,
                "submitted_by_this_run": submitted,
                "trading_days": len(sessions),
                "first_date": sessions[0].isoformat(),
                "last_date": sessions[-1].isoformat(),
                "chain_partitions": len(sessions) * settings.expirations,
            },
        )

    @dg.job(
        name=f"{underlying.key}_backfill_trading_days",
        partitions_def=partitions,
        tags=NO_RUN_RETRIES,
        description=(
            f"Backfill every {underlying.name} core asset over trading days: Partitions > Launch backfill, pick the "
            "date range (one asset backfill covers the whole range), or pick one date in the Launchpad. The backfill "
            "it submits is linked from the run's output metadata and listed under Overview > Backfills."
        ),
    )
    def backfill_trading_days() -> None:
        submit_backfill()

    return backfill_trading_days


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


def build_end_of_day_schedule(underlying: Underlying, backfill_job: dg.JobDefinition) -> dg.ScheduleDefinition:
    """16:30 ET on trading days: re-materialize the day's partitions in final form."""
    return _trading_day_schedule(
        f"{underlying.key}_end_of_day",
        backfill_job,
        END_OF_DAY_CRON,
        f"16:30 ET on NYSE trading days (after the 16:00 close, and after 13:00 early closes): backfill "
        f"today's {underlying.name} bars, chain snapshots, GEX surfaces and levels in final form.",
        lambda date: dg.RunRequest(
            run_key=f"{underlying.key}-{date}-final",
            partition_key=date.isoformat(),
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
