"""``<u>_capture_watch``: records the capture check during the session, without launching a run.

Every minute of the session it judges the capture (:func:`zerogex_pipeline.defs.capture.assets.evaluate_capture`)
and reports the check's evaluation with ``report_runless_asset_event`` when the verdict changed or a new
snapshot instant fell due, so the asset's check shows a failure within about a minute of the engine stopping.
Outside the session it skips. Time comes from an injectable clock so tests can run it at any instant.
"""

import json
from collections.abc import Callable

import dagster as dg
import pandas as pd

from zerogex_pipeline import market_calendar
from zerogex_pipeline.defs.capture.assets import coverage_evaluation, evaluate_capture
from zerogex_pipeline.settings import Settings
from zerogex_pipeline.underlyings import Underlying

Clock = Callable[[], pd.Timestamp]


def build_capture_watch_sensor(underlying: Underlying, settings: Settings, clock: Clock = market_calendar.utc_now,
                               minimum_interval_seconds: int = 60) -> dg.SensorDefinition:
    """The watch sensor of ``underlying``'s capture."""

    @dg.sensor(
        name=f"{underlying.key}_capture_watch", minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(f"During the NYSE session, records whether `zerogex stream` is capturing {underlying.name} "
                     "(the capturing_during_session check of captured_quotes), every minute; launches no run."),
    )
    def capture_watch(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        now = clock()
        coverage = evaluate_capture(underlying, settings, now)
        if not coverage.in_session:
            return dg.SkipReason(coverage.message)
        state = json.loads(context.cursor) if context.cursor else {}
        expected = None if coverage.expected is None else coverage.expected.isoformat()
        if state.get("expected") == expected and state.get("ok") == coverage.ok:
            return dg.SkipReason(f"unchanged since the last report: {coverage.message}")
        context.instance.report_runless_asset_event(coverage_evaluation(underlying, coverage))
        context.update_cursor(json.dumps({"expected": expected, "ok": coverage.ok}))
        return dg.SkipReason(f"reported: {coverage.message}")

    return capture_watch
