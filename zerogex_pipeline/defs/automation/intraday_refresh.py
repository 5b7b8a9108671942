"""Intraday refresh sensor: today's chain snapshots, surfaces and levels after each captured snapshot.

Driven by the stream capture: its cursor is the newest snapshot instant ``zerogex stream`` reported for
today's partition of ``<u>/captured_quotes``. For each new captured snapshot (the newest one when several
arrived while a refresh ran), staged over sensor ticks because the assets have different partitions:

1. ``bars`` (only when the day's capture has gaps, which the chain fills from bars): today's
   ``underlying_bars``, read from the captured bars (the source is asked only for bars the capture lacks);
2. ``chain``: one run of ``option_chain_snapshots`` + ``gex_surface`` over every expiration slot of today (``1``
   .. ``ZEROGEX_EXPIRATIONS``: the k-th nearest listed expiration, which the capture tracks too; one partition
   range, so one run-worker start-up instead of one per slot); the chain takes the captured snapshots as they
   are, so a complete capture makes no source request at all, and a slot the capture lacks is rebuilt from the
   source (the levels need every tracked expiration);
3. ``levels``: one run for today's ``gex_levels``, launched together with the chain run. It starts up while the
   chain run works and waits, before it loads any input, until the chain run succeeded (tag ``zerogex/after_step``,
   :mod:`zerogex_pipeline.defs.automation.refresh_barrier`); it fails in one line when the chain run failed.

Run keys make each step happen once per captured snapshot. Without a capture (the engine is not running)
nothing is refreshed: the sensor says so, and the capture check fails during the session. Time comes from an
injectable clock so tests can run the sensor at any instant.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import dagster as dg
import pandas as pd
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from zerogex_pipeline import market_calendar
from zerogex_pipeline.defs.capture.assets import capture_keys
from zerogex_pipeline.defs.partitions import chain_partition_key, slot_keys
from zerogex_pipeline.settings import Settings
from zerogex_pipeline.underlyings import Underlying

Clock = Callable[[], pd.Timestamp]
REFRESH_TAG = "zerogex/refresh"
STEP_TAG = "zerogex/refresh_step"
AFTER_STEP_TAG = "zerogex/after_step"
"""A run with this tag waits for the run of that refresh step to succeed (``RefreshBarrier``)."""
PRIORITY_TAG = "dagster/priority"
REFRESH_PRIORITY = "10"
"""Refresh runs jump the run queue (and the pool's slot queue) ahead of backfill runs (priority 0)."""
FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
AFTER_CLOSE = pd.Timedelta(minutes=10)
"""The close's snapshot is refreshed too: the sensor keeps looking this long after the close."""


@dataclass
class RefreshCursor:
    """The captured snapshot being (or last) refreshed, its stage and the expiration slots refreshed."""

    snapshot: str = ""
    stage: str = "done"
    slots: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, raw: str | None) -> RefreshCursor:
        if not raw:
            return cls()
        values = json.loads(raw)
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})

    def dump(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(frozen=True)
class LatestCapture:
    """What the engine reported for the newest captured snapshot of a day."""

    snapshot: pd.Timestamp
    expirations: list[str]
    coverage_pct: float
    missing: str


def latest_capture(instance: dg.DagsterInstance, key: dg.AssetKey, day: str) -> LatestCapture | None:
    """The newest ``captured_quotes`` event of ``day``'s partition, or ``None`` when none was reported."""
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key, asset_partitions=[day]),
                                              limit=1).records
    if not records or records[0].asset_materialization is None:
        return None
    meta = {k: v.value for k, v in records[0].asset_materialization.metadata.items()}
    if "snapshot_ts" not in meta:
        return None
    coverage = pd.to_numeric(str(meta.get("capture_coverage_pct", "100")), errors="coerce")
    return LatestCapture(pd.Timestamp(str(meta["snapshot_ts"])), list(json.loads(str(meta.get("expirations", "[]")))),
                         0.0 if pd.isna(coverage) else float(coverage), str(meta.get("missing", "")))


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


def snapshot_label(snapshot: pd.Timestamp) -> str:
    """``2024-06-14T10:05`` (New York) of a captured instant: the run keys' and tags' label."""
    return f"{snapshot.tz_convert(market_calendar.NEW_YORK):%Y-%m-%dT%H:%M}"


def build_intraday_refresh_sensor(
    underlying: Underlying,
    settings: Settings,
    assets: list[dg.AssetsDefinition],
    clock: Clock = market_calendar.utc_now,
    minimum_interval_seconds: int = 1,
) -> dg.SensorDefinition:
    """The refresh sensor of ``underlying`` over its four core assets (bars, chain, surface, levels)."""
    bars, chain, surface, levels = assets
    captured_quotes, _, _ = capture_keys(underlying)

    def run_request(step: str, label: str, selection: list[dg.AssetsDefinition], partition_key: str | None,
                    tags: dict[str, str] | None = None) -> dg.RunRequest:
        return dg.RunRequest(
            run_key=f"{underlying.key}-{label}-{step}",
            asset_selection=[a.key for a in selection],
            partition_key=partition_key,
            tags={REFRESH_TAG: f"{underlying.key}-{label}", STEP_TAG: f"{underlying.key}-{label}-{step}",
                  PRIORITY_TAG: REFRESH_PRIORITY, **(tags or {})},
        )

    def chain_and_levels_requests(label: str, day: str, slots: list[str]) -> list[dg.RunRequest]:
        """The chain + surface run of every slot (one partition range), then the levels run that waits for it."""
        first, last = chain_partition_key(day, slots[0]), chain_partition_key(day, slots[-1])
        chain_run = (run_request("chain", label, [chain, surface], str(first)) if len(slots) == 1 else
                     run_request("chain", label, [chain, surface], None,
                                 {ASSET_PARTITION_RANGE_START_TAG: str(first), ASSET_PARTITION_RANGE_END_TAG: str(last)}))
        after = {AFTER_STEP_TAG: chain_run.tags[STEP_TAG]}
        return [chain_run, run_request("levels", label, [levels], day, after)]

    @dg.sensor(
        name=f"{underlying.key}_intraday_refresh",
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        asset_selection=[a.key for a in assets],
        description=(
            f"After each {underlying.name} snapshot captured by `zerogex stream` (captured_quotes), refreshes "
            "today's chain snapshots and GEX surfaces of every expiration slot, then the levels; today's bars "
            "first when the capture has gaps. A complete capture makes no source request."
        ),
    )
    def intraday_refresh(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        now = clock()
        today = now.tz_convert(market_calendar.NEW_YORK).date()
        if not market_calendar.is_session(today):
            nxt = market_calendar.next_session_on_or_after(today)
            return dg.SensorResult(skip_reason=f"{today} is not an NYSE trading day; next session {nxt}")
        session = market_calendar.session(today)
        if not session.open <= now <= session.close + AFTER_CLOSE:
            when = "has not opened yet" if now < session.open else "has closed"
            return dg.SensorResult(
                skip_reason=f"regular session of {today} {when} (09:30-{session.close.tz_convert(market_calendar.NEW_YORK):%H:%M} ET)"
            )
        instance = context.instance
        day = today.isoformat()
        cursor = RefreshCursor.parse(context.cursor)
        label = snapshot_label(pd.Timestamp(cursor.snapshot)) if cursor.snapshot else ""

        if cursor.stage == "bars":
            state = _step_state(instance, f"{underlying.key}-{label}-bars")
            if state in ("missing", "running"):
                return dg.SensorResult(skip_reason=f"waiting for the bars refresh of {label} ({state})")
            cursor.stage = "levels"
            return dg.SensorResult(run_requests=chain_and_levels_requests(label, day, cursor.slots),
                                   cursor=cursor.dump())

        if cursor.stage == "chain":  # a cursor of the earlier per-slot chain runs: refresh the newest capture anew
            cursor.stage = "done"

        if cursor.stage == "levels":
            state = _step_state(instance, f"{underlying.key}-{label}-levels")
            if state in ("missing", "running"):
                return dg.SensorResult(skip_reason=f"waiting for the levels refresh of {label} ({state})")
            cursor.stage = "done"
            return dg.SensorResult(skip_reason=f"refresh of {label} finished ({state})", cursor=cursor.dump())

        latest = latest_capture(instance, captured_quotes, day)
        if latest is None:
            return dg.SensorResult(skip_reason=(
                f"no {underlying.name} snapshot captured today: start the stream engine (`zerogex stream`; "
                "`make ui` starts it) — nothing is refreshed without it"))
        if cursor.snapshot and pd.Timestamp(cursor.snapshot) >= latest.snapshot:
            return dg.SensorResult(skip_reason=f"refresh of the newest captured snapshot "
                                               f"{snapshot_label(latest.snapshot)} already done")
        label = snapshot_label(latest.snapshot)
        slots = slot_keys(settings.expirations)
        gaps = latest.coverage_pct < 100.0 or bool(latest.missing)
        next_cursor = RefreshCursor(latest.snapshot.isoformat(), "bars" if gaps else "levels", slots)
        requests = ([run_request("bars", label, [bars], day)] if gaps else chain_and_levels_requests(label, day, slots))
        return dg.SensorResult(run_requests=requests, cursor=next_cursor.dump())

    return intraday_refresh
