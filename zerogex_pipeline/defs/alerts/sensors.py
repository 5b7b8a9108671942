"""``<underlying>_levels_alerts``: one ``gex_alerts`` run per new ``gex_levels`` materialization.

Each tick reads the levels materializations recorded after the cursor (a storage id in the
instance's event log), oldest first, at most ``batch`` of them, and requests the alerts run of each
partition they touched, keyed ``<u>-alerts-levels-<storage id>`` of the newest materialization of that
partition in the batch (older ones in the same batch were already replaced in the store, so one run
covers them). The cursor then moves past the batch, so a materialization is never requested twice;
the run key makes a retried tick idempotent as well. A fresh sensor (no cursor) walks the whole
history in batches, which stores the events of past days without announcing them (see
:mod:`zerogex_pipeline.defs.alerts.assets`).
"""

import dagster as dg

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
            f"Runs {underlying.name} gex_alerts for the same trading day after each gex_levels "
            "materialization (one run per materialization, never twice)."
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
        requests = [
            dg.RunRequest(
                run_key=alerts_run_key(underlying, storage_id),
                asset_selection=[alerts.key],
                partition_key=partition,
                tags={LEVELS_STORAGE_ID_TAG: str(storage_id)},
            )
            for partition, storage_id in sorted(newest.items(), key=lambda item: item[1])
        ]
        return dg.SensorResult(run_requests=requests, cursor=str(records[-1].storage_id))

    return levels_alerts
