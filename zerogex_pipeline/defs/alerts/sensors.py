"""``<underlying>_levels_alerts``: ``gex_alerts`` runs after new ``gex_levels`` materializations.

Each tick reads the levels materializations recorded after the cursor (a storage id in the
instance's event log), oldest first, at most ``batch`` of them, and requests the alerts of every
partition they touched: one run per range of consecutive trading days among them (at most
``ZEROGEX_BACKFILL_DAYS_PER_RUN`` days, like a backfill run), keyed ``<u>-alerts-levels-<storage id>`` of the
newest materialization in the range (older ones in the same batch were already replaced in the store, so one
run covers them). A backfilled year of levels is then a few alerts runs, not one per day; an intraday refresh
still gets its own run for today. The cursor then moves past the batch, so a materialization is never
requested twice; the run key makes a retried tick idempotent as well. A fresh sensor (no cursor) walks the
whole history in batches, which stores the events of past days without announcing them (see
:mod:`zerogex_pipeline.defs.alerts.assets`).
"""

import datetime as dt

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from zerogex_pipeline.defs.partitions import consecutive_sessions
from zerogex_pipeline.settings import DEFAULT_BACKFILL_DAYS_PER_RUN
from zerogex_pipeline.underlyings import Underlying

LEVELS_STORAGE_ID_TAG = "zerogex/levels_storage_id"
DEFAULT_BATCH = 100


def alerts_run_key(underlying: Underlying, storage_id: int) -> str:
    """Run key of the alerts run for the levels materialization with ``storage_id``."""
    return f"{underlying.key}-alerts-levels-{storage_id}"


def build_levels_alert_sensor(
    underlying: Underlying,
    levels: dg.AssetsDefinition,
    alerts: dg.AssetsDefinition,
    minimum_interval_seconds: int = 30,
    batch: int = DEFAULT_BATCH,
    days_per_run: int = DEFAULT_BACKFILL_DAYS_PER_RUN,
) -> dg.SensorDefinition:
    """The sensor that runs ``alerts`` for each partition of ``levels`` that was (re)materialized."""
    if batch < 1:
        raise ValueError(f"batch: expected a positive number of materializations per tick, got {batch}")

    @dg.sensor(
        name=f"{underlying.key}_levels_alerts",
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        asset_selection=[alerts.key],
        description=(
            f"Runs {underlying.name} gex_alerts for the trading days of new gex_levels materializations (one run "
            "per range of consecutive days, never twice)."
        ),
    )
    def levels_alerts(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        after = int(context.cursor) if context.cursor else None
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=levels.key, after_storage_id=after), limit=batch, ascending=True
        ).records
        if not records:
            return dg.SensorResult(skip_reason=f"no new {levels.key.to_user_string()} materialization")
        newest: dict[str, int] = {}
        for record in records:
            if record.partition_key is not None:
                newest[record.partition_key] = record.storage_id
        requests = []
        for days in consecutive_sessions([dt.date.fromisoformat(p) for p in newest], days_per_run):
            keys = [d.isoformat() for d in days]
            storage_id = max(newest[k] for k in keys)
            tags = {LEVELS_STORAGE_ID_TAG: str(storage_id)}
            if len(keys) > 1:
                tags |= {ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]}
            requests.append(dg.RunRequest(run_key=alerts_run_key(underlying, storage_id), asset_selection=[alerts.key],
                                          partition_key=keys[0] if len(keys) == 1 else None, tags=tags))
        requests.sort(key=lambda r: int(r.tags[LEVELS_STORAGE_ID_TAG]))
        return dg.SensorResult(run_requests=requests, cursor=str(records[-1].storage_id))

    return levels_alerts
