"""The capture-driven intraday refresh: the real stream engine (simulated feed, replayed) captures snapshots and
reports them to a test instance; the sensor, ticked at chosen instants, refreshes chain, surface and levels from
them, and the stored levels equal the engine's live levels of the same instant to 1e-9."""

import json

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from zerogex_pipeline import market_calendar
from zerogex_pipeline.definitions import build_defs, build_underlying_assets
from zerogex_pipeline.defs.automation.intraday_refresh import (
    AFTER_STEP_TAG,
    STEP_TAG,
    build_intraday_refresh_sensor,
)
from zerogex_pipeline.defs.resources import build_resources
from zerogex_pipeline.live.clock import EngineClock
from zerogex_pipeline.live.engine import EngineOptions, StreamEngine
from zerogex_pipeline.live.publish import DagsterReporter
from zerogex_pipeline.live.simulated_feed import SimulatedFeed
from zerogex_pipeline.schemas import GEX_LEVELS
from zerogex_pipeline.settings import Settings
from zerogex_pipeline.storage.capture_store import CaptureStore
from zerogex_pipeline.underlyings import resolve_underlying
from zerogex_pipeline_tests.clock import Clock, at, stop_at

SPY = resolve_underlying("SPY")


def capture(settings: Settings, instance: dg.DagsterInstance, start: str, stop: str) -> StreamEngine:
    """Run the stream engine on the simulated market from ``start`` to ``stop`` (New York) at 60x."""
    clock = EngineClock(at(start), speed=60.0)
    reporter = DagsterReporter(settings, instance=instance)
    options = EngineOptions(underlyings=(SPY,), interval_s=0.25, settle_s=0.05, rate=settings.risk_free_rate,
                            announce_alerts=False)
    engine = StreamEngine(SimulatedFeed(), clock, CaptureStore(settings), options, reporter)
    end = at(stop)
    stop_at(clock, engine, end)
    engine.run()
    return engine


@pytest.fixture
def rig(settings: Settings, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch):
    clock = Clock(at("2024-06-14 10:02"))
    monkeypatch.setattr(market_calendar, "utc_now", clock)  # the assets' clock
    assets = build_underlying_assets(SPY, settings)
    sensor = build_intraday_refresh_sensor(SPY, settings, assets, clock=clock)
    resources = build_resources(settings)

    def tick(cursor: str | None):
        with dg.build_sensor_context(instance=instance, cursor=cursor) as ctx:
            return sensor(ctx)

    def execute(request: dg.RunRequest) -> None:
        result = dg.materialize(assets, selection=request.asset_selection, partition_key=request.partition_key,
                                instance=instance, resources=resources, tags=request.tags)
        assert result.success

    return clock, tick, execute, instance


@pytest.mark.parametrize(
    ("instant", "reason"),
    [
        ("2024-06-15 11:00", "not an NYSE trading day"),  # Saturday
        ("2024-07-04 11:00", "not an NYSE trading day"),  # holiday
        ("2024-06-14 09:29", "has not opened yet"),
        ("2024-06-14 16:11", "has closed"),
        ("2024-07-03 13:11", "has closed"),  # early close at 13:00 (+10 min for the close's snapshot)
    ],
)
def test_skips_outside_regular_hours(rig, instant: str, reason: str) -> None:
    clock, tick, _, _ = rig
    clock.now = at(instant)
    result = tick(None)
    assert not result.run_requests
    assert reason in result.skip_reason.skip_message


def test_nothing_is_refreshed_without_a_capture(rig) -> None:
    _, tick, _, _ = rig
    result = tick(None)
    assert not result.run_requests and "start the stream engine" in result.skip_reason.skip_message


def test_a_refresh_cycle_from_a_capture(rig, settings: Settings) -> None:
    """Engine started at 09:59:00, captures 10:00; the day's earlier instants are gaps, so bars run first."""
    clock, tick, execute, instance = rig
    engine = capture(settings, instance, "2024-06-14 09:59:00", "2024-06-14 10:00:30")
    assert engine.sessions[0].captured["spy"] == {(at("2024-06-14 10:00"), e) for e in
                                                  (pd.Timestamp(d).date() for d in ("2024-06-14", "2024-06-17",
                                                                                     "2024-06-18"))}
    clock.now = at("2024-06-14 10:00:20")
    first = tick(None)
    assert [r.run_key for r in first.run_requests] == ["spy-2024-06-14T10:00-bars"]  # the capture has gaps
    assert first.run_requests[0].tags["dagster/priority"] == "10"  # ahead of queued backfill runs
    assert not first.dynamic_partitions_requests  # the expiration slots are static partitions: nothing to register
    assert "waiting for the bars refresh" in tick(first.cursor).skip_reason.skip_message
    execute(first.run_requests[0])

    levels = tick(first.cursor)
    # one run over every expiration slot of the day (one partition range, one run-worker start-up) and, launched
    # with it, the levels run, which waits for it before loading anything
    assert [r.run_key for r in levels.run_requests] == ["spy-2024-06-14T10:00-chain", "spy-2024-06-14T10:00-levels"]
    request, levels_request = levels.run_requests
    assert request.partition_key is None
    assert (request.tags[ASSET_PARTITION_RANGE_START_TAG], request.tags[ASSET_PARTITION_RANGE_END_TAG]) == (
        "2024-06-14|1", "2024-06-14|3")
    assert {k.path[-1] for k in request.asset_selection} == {"option_chain_snapshots", "gex_surface"}
    assert levels_request.tags[AFTER_STEP_TAG] == request.tags[STEP_TAG] == "spy-2024-06-14T10:00-chain"
    assert "waiting for the levels refresh of 2024-06-14T10:00 (missing)" in tick(levels.cursor).skip_reason.skip_message
    execute(request)
    slots = {str(k) for k in instance.get_materialized_partitions(dg.AssetKey(["spy", "gex_surface"]))}
    assert slots == {"2024-06-14|1", "2024-06-14|2", "2024-06-14|3"}
    execute(levels_request)
    done = tick(levels.cursor)
    assert "finished (success)" in done.skip_reason.skip_message
    assert "already done" in tick(done.cursor).skip_reason.skip_message
    runs = instance.get_runs(filters=dg.RunsFilter(tags={STEP_TAG: "spy-2024-06-14T10:00-levels"}))
    assert len(runs) == 1

    # the chain: the captured instant as captured, the earlier ones rebuilt (origin says which)
    meta = instance.get_latest_materialization_event(dg.AssetKey(["spy", "option_chain_snapshots"]))
    values = {k: v.value for k, v in meta.asset_materialization.metadata.items()}
    assert values["snapshots_captured"] == 1 and values["snapshots_historical"] == 6  # 09:30 .. 09:55
    # the stored levels of 10:00 are the engine's live levels of 10:00, to 1e-9
    store = CaptureStore(settings)
    live = store.live_levels(SPY, pd.Timestamp("2024-06-14").date())
    live = live[live["snapshot_ts"] == at("2024-06-14 10:00")].iloc[0]
    import duckdb

    with duckdb.connect(str(settings.duckdb_path), read_only=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        stored = GEX_LEVELS.conform(conn.execute("SELECT * FROM spy.gex_levels WHERE snapshot_ts = ?",
                                                 [at("2024-06-14 10:00").to_pydatetime()]).df()).iloc[0]
    compared = 0
    for col in GEX_LEVELS.columns:
        a, b = live[col.name], stored[col.name]
        if col.kind == "double":
            if pd.isna(a) or pd.isna(b):
                assert pd.isna(a) and pd.isna(b), col.name
                continue
            assert np.isclose(a, b, rtol=1e-9, atol=0), (col.name, a, b)
            compared += 1
        elif pd.isna(a) or pd.isna(b):
            assert pd.isna(a) and pd.isna(b), (col.name, a, b)
        else:
            assert a == b, (col.name, a, b)
    assert compared >= 20 and live["zero_gamma"] > 0 and live["call_wall"] > 0

    # a later capture is refreshed without the bars step only when the day has no gap: here it still has
    engine = capture(settings, instance, "2024-06-14 10:04:00", "2024-06-14 10:05:30")
    clock.now = at("2024-06-14 10:05:20")
    nxt = tick(done.cursor)
    assert [r.run_key for r in nxt.run_requests] == ["spy-2024-06-14T10:05-bars"]


def test_a_complete_capture_skips_the_bars_step(rig, settings: Settings) -> None:
    clock, tick, _, instance = rig
    engine = capture(settings, instance, "2024-06-14 09:28:30", "2024-06-14 09:35:40")  # 09:30 and 09:35
    newest = max(t for t, _ in engine.sessions[0].captured["spy"])
    assert newest >= at("2024-06-14 09:35") and not engine.sessions[0].missed
    clock.now = newest + pd.Timedelta(seconds=20)
    first = tick(None)
    label = f"{newest.tz_convert('America/New_York'):%Y-%m-%dT%H:%M}"
    assert [r.run_key for r in first.run_requests] == [f"spy-{label}-chain", f"spy-{label}-levels"]
    assert json.loads(first.cursor)["stage"] == "levels"


def test_skips_while_the_previous_refresh_is_running(rig, settings: Settings) -> None:
    clock, tick, _, instance = rig
    engine = capture(settings, instance, "2024-06-14 09:59:00", "2024-06-14 10:00:30")
    newest = max(t for t, _ in engine.sessions[0].captured["spy"])
    clock.now = newest + pd.Timedelta(seconds=20)
    first = tick(None)
    from dagster._core.test_utils import create_run_for_test

    create_run_for_test(instance, job_name="__ASSET_JOB", tags=first.run_requests[0].tags,
                        status=dg.DagsterRunStatus.STARTED)
    clock.now = at("2024-06-14 10:07")
    result = tick(first.cursor)
    assert not result.run_requests
    label = f"{newest.tz_convert('America/New_York'):%Y-%m-%dT%H:%M}"
    assert f"waiting for the bars refresh of {label} (running)" in result.skip_reason.skip_message


def test_sensor_is_in_the_definitions_and_running_by_default(settings: Settings) -> None:
    defs = build_defs(settings)
    sensor = defs.get_sensor_def("spy_intraday_refresh")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds == 1  # every daemon loop (5 s), never skipping one


def test_the_levels_run_waits_for_its_chain_run_and_fails_in_one_line_when_it_failed(
    settings: Settings, instance: dg.DagsterInstance
) -> None:
    """The refresh barrier holds the levels run before it loads any input until the awaited chain run succeeded."""
    import threading
    import time

    from dagster._core.test_utils import create_run_for_test

    from zerogex_pipeline.defs.automation.refresh_barrier import RefreshBarrier

    assets = build_underlying_assets(SPY, settings)

    def levels_run(step: str, timeout_s: float = 30.0) -> dg.ExecuteInProcessResult:
        resources = {**build_resources(settings), "refresh_barrier": RefreshBarrier(timeout_s=timeout_s)}
        return dg.materialize(assets, selection=[assets[-1].key], partition_key="2024-06-14", instance=instance,
                              resources=resources, tags={AFTER_STEP_TAG: step}, raise_on_error=False)

    def failure_of(result: dg.ExecuteInProcessResult) -> str:
        events = [e for e in result.all_events if e.is_failure]
        assert events and not result.success
        return str(events[0].event_specific_data.error.message)

    chain = create_run_for_test(instance, job_name="__ASSET_JOB", tags={STEP_TAG: "spy-x-chain"},
                                status=dg.DagsterRunStatus.STARTED)
    started = time.monotonic()
    threading.Timer(1.0, lambda: instance.report_run_failed(chain)).start()
    message = failure_of(levels_run("spy-x-chain"))
    assert time.monotonic() - started >= 1.0  # it waited while the chain run ran
    assert f"refresh step spy-x-chain ended failure (run {chain.run_id[:8]}): this run does not refresh from it" in message
    assert instance.get_latest_materialization_event(assets[-1].key) is None  # nothing written

    message = failure_of(levels_run("spy-y-chain", timeout_s=0.5))
    assert "refresh step spy-y-chain has not succeeded within 0 s (no run yet)" in message


def test_the_opens_capture_refreshed_within_the_capture_grace_passes_its_checks(rig, settings: Settings) -> None:
    """The refresh of the open's snapshot can land before the 60 s capture grace ends: the blocking checks accept
    its levels (the open has passed and they are stored), as they did not when the check waited for the grace."""
    from zerogex_pipeline.defs.checks.asset_checks import build_asset_checks

    clock, tick, _, instance = rig
    capture(settings, instance, "2024-06-14 09:28:30", "2024-06-14 09:30:30")
    clock.now = at("2024-06-14 09:30:40")
    result = tick(None)
    assert [r.run_key.rsplit("-", 1)[1] for r in result.run_requests] == ["chain", "levels"]
    assets = build_underlying_assets(SPY, settings)
    checks = build_asset_checks(SPY, settings, *assets)
    for request in result.run_requests:
        run = dg.materialize([*assets, *checks], selection=request.asset_selection, partition_key=request.partition_key,
                             instance=instance, resources=build_resources(settings), tags=request.tags,
                             raise_on_error=False)
        evaluations = {e.check_name: e.passed for e in run.get_asset_check_evaluations()}
        assert run.success and evaluations and all(evaluations.values()), evaluations
    assert evaluations == {"levels_plausibility": True, "levels_complete": True}
