"""The intraday refresh sensor ticked at chosen instants, with its requested runs really executed."""

import datetime as dt
import json

import dagster as dg
import pytest

from zerogex_pipeline import market_calendar
from zerogex_pipeline.definitions import build_defs, build_underlying_assets
from zerogex_pipeline.defs.automation.intraday_refresh import STEP_TAG, build_intraday_refresh_sensor
from zerogex_pipeline.defs.resources import MarketDataResource, build_resources
from zerogex_pipeline.settings import Settings
from zerogex_pipeline.underlyings import resolve_underlying
from zerogex_pipeline_tests.clock import Clock, at

SPY = resolve_underlying("SPY")


@pytest.fixture
def rig(settings: Settings, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch):
    clock = Clock(at("2024-06-14 10:02"))
    monkeypatch.setattr(market_calendar, "utc_now", clock)  # the assets' clock
    assets = build_underlying_assets(SPY, settings)
    sensor = build_intraday_refresh_sensor(SPY, settings, assets, clock=clock)
    resources = build_resources(settings)

    def tick(cursor: str | None):
        with dg.build_sensor_context(instance=instance, cursor=cursor,
                                     resources={"market_data": MarketDataResource(source="simulated")}) as ctx:
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
        ("2024-06-14 16:01", "has closed"),
        ("2024-07-03 13:05", "has closed"),  # early close at 13:00
    ],
)
def test_skips_outside_regular_hours(rig, instant: str, reason: str) -> None:
    clock, tick, _, _ = rig
    clock.now = at(instant)
    result = tick(None)
    assert not result.run_requests
    assert reason in result.skip_reason.skip_message


def test_a_full_refresh_cycle_runs_each_step_once(rig) -> None:
    clock, tick, execute, instance = rig
    first = tick(None)
    assert [r.run_key for r in first.run_requests] == ["spy-2024-06-14T10:00-bars"]
    assert first.run_requests[0].tags["dagster/priority"] == "10"  # ahead of queued backfill runs
    added = first.dynamic_partitions_requests[0]
    assert added.partitions_def_name == "spy_expirations"
    assert list(added.partition_keys) == ["2024-06-14", "2024-06-17", "2024-06-18"]
    instance.add_dynamic_partitions("spy_expirations", list(added.partition_keys))
    waiting = tick(first.cursor)
    assert "waiting for the bars refresh" in waiting.skip_reason.skip_message
    execute(first.run_requests[0])

    chain = tick(first.cursor)
    assert [str(r.partition_key) for r in chain.run_requests] == [
        "2024-06-14|2024-06-14", "2024-06-14|2024-06-17", "2024-06-14|2024-06-18"]
    assert {k.path[-1] for k in chain.run_requests[0].asset_selection} == {"option_chain_snapshots", "gex_surface"}
    execute(chain.run_requests[0])
    assert "waiting for chain refreshes" in tick(chain.cursor).skip_reason.skip_message
    for request in chain.run_requests[1:]:
        execute(request)

    levels = tick(chain.cursor)
    assert [r.run_key for r in levels.run_requests] == ["spy-2024-06-14T10:00-levels"]
    execute(levels.run_requests[0])
    done = tick(levels.cursor)
    assert "finished (success)" in done.skip_reason.skip_message
    assert "already done" in tick(done.cursor).skip_reason.skip_message

    event = instance.get_latest_materialization_event(dg.AssetKey(["spy", "gex_levels"]))
    assert event.asset_materialization.partition == "2024-06-14"
    runs = instance.get_runs(filters=dg.RunsFilter(tags={STEP_TAG: "spy-2024-06-14T10:00-levels"}))
    assert len(runs) == 1

    clock.now = at("2024-06-14 10:06")
    nxt = tick(done.cursor)
    assert [r.run_key for r in nxt.run_requests] == ["spy-2024-06-14T10:05-bars"]
    assert not nxt.dynamic_partitions_requests  # expirations already registered


def test_skips_while_the_previous_refresh_is_running(rig) -> None:
    clock, tick, _, instance = rig
    first = tick(None)
    request = first.run_requests[0]
    from dagster._core.test_utils import create_run_for_test

    # the bars run was launched and has not finished

    create_run_for_test(instance, job_name="__ASSET_JOB", tags=request.tags, status=dg.DagsterRunStatus.STARTED)
    clock.now = at("2024-06-14 10:07")
    result = tick(first.cursor)
    assert not result.run_requests
    assert "previous refresh 2024-06-14T10:00 is still running" in result.skip_reason.skip_message


def test_chains_that_finish_after_their_bucket_still_get_their_levels(rig) -> None:
    clock, tick, execute, instance = rig
    first = tick(None)
    instance.add_dynamic_partitions("spy_expirations", list(first.dynamic_partitions_requests[0].partition_keys))
    execute(first.run_requests[0])
    chain = tick(first.cursor)
    clock.now = at("2024-06-14 10:07")  # the 10:05 bucket began while the chains ran
    for request in chain.run_requests:
        execute(request)
    levels = tick(chain.cursor)
    assert [r.run_key for r in levels.run_requests] == ["spy-2024-06-14T10:00-levels"]
    execute(levels.run_requests[0])
    nxt = tick(levels.cursor)
    assert [r.run_key for r in nxt.run_requests] == ["spy-2024-06-14T10:05-bars"]


def test_stale_spot_skips_the_chain_step(rig, monkeypatch) -> None:
    clock, tick, execute, _ = rig
    clock.now = at("2024-06-14 10:00:30")
    first = tick(None)
    execute(first.run_requests[0])  # the newest bar ends at 10:00
    clock.now = at("2024-06-14 10:04:30")  # same bucket; 4.5 minutes without a new bar
    result = tick(first.cursor)
    assert not result.run_requests
    assert "spot is stale" in result.skip_reason.skip_message
    assert json.loads(result.cursor)["stage"] == "done"


def test_sensor_is_in_the_definitions_and_running_by_default(settings: Settings) -> None:
    defs = build_defs(settings)
    sensor = defs.resolve_sensor_def("spy_intraday_refresh")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_refresh_bucket_labels_are_new_york_times() -> None:
    from zerogex_pipeline.defs.automation.intraday_refresh import refresh_bucket

    s = market_calendar.session(dt.date(2024, 11, 29))
    assert refresh_bucket(s, at("2024-11-29 12:59"), 5) == "2024-11-29T12:55"
    assert refresh_bucket(s, at("2024-11-29 09:30"), 15) == "2024-11-29T09:30"


def test_nothing_new_since_the_last_refresh_skips_the_chain_step(rig, monkeypatch) -> None:
    clock, tick, execute, instance = rig
    clock.now = at("2024-06-14 10:03:30")
    first = tick(None)
    instance.add_dynamic_partitions("spy_expirations", list(first.dynamic_partitions_requests[0].partition_keys))
    execute(first.run_requests[0])  # newest bar ends 10:03
    chain = tick(first.cursor)
    for request in chain.run_requests:
        execute(request)
    levels = tick(chain.cursor)
    execute(levels.run_requests[0])
    done = tick(levels.cursor)

    clock.now = at("2024-06-14 10:05:20")  # next bucket
    second = tick(done.cursor)
    assert [r.run_key for r in second.run_requests] == ["spy-2024-06-14T10:05-bars"]
    # the source delivers no bar after 10:03 (the assets see the old instant)
    monkeypatch.setattr(market_calendar, "utc_now", lambda: at("2024-06-14 10:03:30"))
    execute(second.run_requests[0])
    result = tick(second.cursor)
    assert not result.run_requests
    assert "nothing new since the last refresh" in result.skip_reason.skip_message
