"""Intraday refresh sensor: today's bars, chain snapshots, surfaces and levels every few minutes.

One refresh per time bucket of ``refresh_minutes`` in the regular session (early closes included),
staged over sensor ticks because the four assets have different partitions and must run in order:

1. ``bars``: one run for today's ``underlying_bars`` (run key ``<u>-<bucket>-bars``), and the day's
   nearest expirations registered as dynamic partitions in the same tick;
2. ``chain``: when the bars run succeeded, one run per expiration for ``option_chain_snapshots`` +
   ``gex_surface``, unless spot is stale or nothing is new since the last refresh;
3. ``levels``: when every chain run has finished, one run for today's ``gex_levels``.

Run keys make each step happen once per bucket. The cursor (JSON) holds the bucket and the stage.
Time comes from an injectable clock so tests can run the sensor at any instant.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import dagster as dg
import pandas as pd

from zerogex_pipeline import market_calendar
from zerogex_pipeline.defs.partitions import chain_partition_key, expiration_partitions
from zerogex_pipeline.defs.resources import MarketDataResource
from zerogex_pipeline.settings import Settings
from zerogex_pipeline.underlyings import Underlying

Clock = Callable[[], pd.Timestamp]
REFRESH_TAG = "zerogex/refresh"
STEP_TAG = "zerogex/refresh_step"
STALE_SPOT_GRACE = pd.Timedelta(minutes=2)
PRIORITY_TAG = "dagster/priority"
REFRESH_PRIORITY = "10"
"""Refresh runs jump the run queue (and the pool's slot queue) ahead of backfill runs (priority 0)."""
FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


@dataclass
class RefreshCursor:
    """Where the refresh of one bucket stands. ``last_bar_end`` is the newest bar seen by a refresh."""

    bucket: str = ""
    stage: str = "done"
    expirations: list[str] = field(default_factory=list)
    last_bar_end: str = ""

    @classmethod
    def parse(cls, raw: str | None) -> RefreshCursor:
        return cls(**json.loads(raw)) if raw else cls()

    def dump(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def refresh_bucket(session: market_calendar.TradingSession, now: pd.Timestamp, minutes: int) -> str:
    """The bucket label of ``now``: the session date and the bucket's start (ET), e.g. ``2024-06-14T10:05``."""
    start = session.open + pd.Timedelta(minutes=minutes) * ((now - session.open) // pd.Timedelta(minutes=minutes))
    return f"{session.date}T{start.tz_convert(market_calendar.NEW_YORK):%H:%M}"


def _step_runs(instance: dg.DagsterInstance, step: str) -> list[dg.DagsterRun]:
    return list(instance.get_runs(filters=dg.RunsFilter(tags={STEP_TAG: step})))


def _step_state(instance: dg.DagsterInstance, step: str) -> str:
    """``missing``, ``running``, ``success`` or ``failed`` for the newest run of a refresh step."""
    runs = _step_runs(instance, step)
    if not runs:
        return "missing"
    status = runs[0].status
    if status == dg.DagsterRunStatus.SUCCESS:
        return "success"
    return "failed" if status in FINISHED else "running"


def _last_bar_end(instance: dg.DagsterInstance, bars_key: dg.AssetKey, date: dt.date) -> pd.Timestamp | None:
    event = instance.get_latest_materialization_event(bars_key)
    if event is None or event.asset_materialization is None:
        return None
    mat = event.asset_materialization
    if mat.partition != date.isoformat():
        return None
    value = mat.metadata.get("last_bar_end")
    return pd.Timestamp(str(value.value)) if value is not None else None


def build_intraday_refresh_sensor(
    underlying: Underlying,
    settings: Settings,
    assets: list[dg.AssetsDefinition],
    clock: Clock = market_calendar.utc_now,
    minimum_interval_seconds: int = 30,
) -> dg.SensorDefinition:
    """The refresh sensor of ``underlying`` over its four core assets (bars, chain, surface, levels)."""
    bars, chain, surface, levels = assets
    minutes = settings.refresh_minutes
    expirations_def = expiration_partitions(underlying)

    def run_request(step: str, bucket: str, selection: list[dg.AssetsDefinition],
                    partition_key: str | dg.MultiPartitionKey) -> dg.RunRequest:
        return dg.RunRequest(
            run_key=f"{underlying.key}-{bucket}-{step}",
            asset_selection=[a.key for a in selection],
            partition_key=partition_key,
            tags={REFRESH_TAG: f"{underlying.key}-{bucket}", STEP_TAG: f"{underlying.key}-{bucket}-{step}",
                  PRIORITY_TAG: REFRESH_PRIORITY},
        )

    @dg.sensor(
        name=f"{underlying.key}_intraday_refresh",
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        asset_selection=[a.key for a in assets],
        description=(
            f"Every {minutes} minutes of the NYSE regular session, refreshes today's {underlying.name} bars, "
            "chain snapshots and GEX surfaces of the nearest expirations, then the levels."
        ),
    )
    def intraday_refresh(context: dg.SensorEvaluationContext, market_data: MarketDataResource) -> dg.SensorResult:
        now = clock()
        today = now.tz_convert(market_calendar.NEW_YORK).date()
        cursor = RefreshCursor.parse(context.cursor)
        if not market_calendar.is_session(today):
            nxt = market_calendar.next_session_on_or_after(today)
            return dg.SensorResult(skip_reason=f"{today} is not an NYSE trading day; next session {nxt}")
        session = market_calendar.session(today)
        if not session.open <= now <= session.close:
            when = "has not opened yet" if now < session.open else "has closed"
            return dg.SensorResult(
                skip_reason=f"regular session of {today} {when} (09:30-{session.close.tz_convert(market_calendar.NEW_YORK):%H:%M} ET)"
            )
        bucket = refresh_bucket(session, now, minutes)
        instance = context.instance
        date_key = today.isoformat()

        if cursor.bucket != bucket and cursor.stage != "done":
            previous = cursor.bucket
            pending = [s for s in _pending_steps(instance, underlying, cursor) if _step_state(instance, s) == "running"]
            if pending:
                return dg.SensorResult(
                    skip_reason=f"previous refresh {previous} is still running ({', '.join(pending)})"
                )
            if cursor.stage == "chain":
                # Its chains finished after its bucket ended: publish their levels before starting anew,
                # else a refresh slower than the bucket would never reach the levels.
                bucket = previous

        if cursor.bucket != bucket:
            source = market_data.get_source()
            expirations = [e.isoformat() for e in source.listed_expirations(underlying, today)[: settings.expirations]]
            known = set(instance.get_dynamic_partitions(expirations_def.name or ""))
            new = [e for e in expirations if e not in known]
            next_cursor = RefreshCursor(bucket, "bars", expirations, cursor.last_bar_end)
            return dg.SensorResult(
                run_requests=[run_request("bars", bucket, [bars], date_key)],
                dynamic_partitions_requests=[expirations_def.build_add_request(new)] if new else [],
                cursor=next_cursor.dump(),
            )

        if cursor.stage == "bars":
            state = _step_state(instance, f"{underlying.key}-{bucket}-bars")
            if state in ("missing", "running"):
                return dg.SensorResult(skip_reason=f"waiting for the bars refresh of {bucket} ({state})")
            if state == "failed":
                cursor.stage = "done"
                return dg.SensorResult(skip_reason=f"bars refresh of {bucket} failed; next bucket retries",
                                       cursor=cursor.dump())
            last_bar = _last_bar_end(instance, bars.key, today)
            if last_bar is None or now - last_bar > pd.Timedelta(minutes=settings.bar_minutes) + STALE_SPOT_GRACE:
                cursor.stage = "done"
                return dg.SensorResult(
                    skip_reason=f"spot is stale: last bar ended at {last_bar} (now {now}); chain not refreshed",
                    cursor=cursor.dump(),
                )
            if cursor.last_bar_end and pd.Timestamp(cursor.last_bar_end) >= last_bar:
                cursor.stage = "done"
                return dg.SensorResult(skip_reason=f"nothing new since the last refresh (last bar {last_bar})",
                                       cursor=cursor.dump())
            cursor.stage, cursor.last_bar_end = "chain", last_bar.isoformat()
            return dg.SensorResult(
                run_requests=[
                    run_request(f"chain-{e}", bucket, [chain, surface], chain_partition_key(today, e))
                    for e in cursor.expirations
                ],
                cursor=cursor.dump(),
            )

        if cursor.stage == "chain":
            states = {e: _step_state(instance, f"{underlying.key}-{bucket}-chain-{e}") for e in cursor.expirations}
            waiting = [e for e, s in states.items() if s in ("missing", "running")]
            if waiting:
                return dg.SensorResult(skip_reason=f"waiting for chain refreshes of {bucket}: {', '.join(waiting)}")
            cursor.stage = "levels"
            return dg.SensorResult(run_requests=[run_request("levels", bucket, [levels], date_key)],
                                   cursor=cursor.dump())

        if cursor.stage == "levels":
            state = _step_state(instance, f"{underlying.key}-{bucket}-levels")
            if state in ("missing", "running"):
                return dg.SensorResult(skip_reason=f"waiting for the levels refresh of {bucket} ({state})")
            cursor.stage = "done"
            return dg.SensorResult(skip_reason=f"refresh of {bucket} finished ({state})", cursor=cursor.dump())

        return dg.SensorResult(skip_reason=f"refresh of {bucket} already done; next in <= {minutes} min")

    return intraday_refresh


def _pending_steps(instance: dg.DagsterInstance, underlying: Underlying, cursor: RefreshCursor) -> list[str]:
    prefix = f"{underlying.key}-{cursor.bucket}"
    return [f"{prefix}-bars", *(f"{prefix}-chain-{e}" for e in cursor.expirations), f"{prefix}-levels"]
