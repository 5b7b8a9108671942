"""``zerogex_orphaned_runs``: the daemon marks failed the runs whose process died, so the UI tells the truth."""

from __future__ import annotations

import dagster as dg

from zerogex_pipeline.run_liveness import fail_orphaned_runs

SENSOR_NAME = "zerogex_orphaned_runs"


def build_orphaned_runs_sensor() -> dg.SensorDefinition:
    """Every minute: fail this host's unfinished CLI runs whose process is gone (see ``run_liveness``)."""

    @dg.sensor(
        name=SENSOR_NAME,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Marks failed, with the reason, every run of this host that is still STARTED although the process "
            "that executed it is gone (a killed or crashed `zerogex run`). The CLI does the same when it starts."
        ),
    )
    def zerogex_orphaned_runs(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        failed = fail_orphaned_runs(context.instance)
        if failed:
            return dg.SkipReason(f"marked {len(failed)} run(s) failed, their process being gone: {', '.join(failed)}")
        return dg.SkipReason("every unfinished run's process is alive")

    return zerogex_orphaned_runs
