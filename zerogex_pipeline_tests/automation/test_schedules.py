"""End-of-day and pre-open schedules ticked at chosen instants, and the jobs they launch executed."""

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from zerogex_pipeline.definitions import build_defs
from zerogex_pipeline.defs.automation.backfills import BACKFILL_TAG, BackfillRequestError, backfill_sessions
from zerogex_pipeline.defs.automation.schedules import FINAL_TAG
from zerogex_pipeline.defs.partitions import chain_partition_key, expirations_partitions_name
from zerogex_pipeline.settings import Settings
from zerogex_pipeline.sources.simulated import SimulatedMarket
from zerogex_pipeline.underlyings import resolve_underlying

NY = ZoneInfo("America/New_York")
SPY = resolve_underlying("SPY")


def output_metadata(result: dg.ExecuteInProcessResult) -> dict:
    (event,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_OUTPUT]
    return {k: v.value for k, v in event.step_output_data.metadata.items()}


def tick(defs: dg.Definitions, name: str, when: dt.datetime, instance: dg.DagsterInstance):
    schedule = defs.resolve_schedule_def(name)
    with dg.build_schedule_context(scheduled_execution_time=when, instance=instance) as context:
        return schedule.evaluate_tick(context)


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (dt.datetime(2024, 6, 14, 16, 30, tzinfo=NY), "2024-06-14"),  # Friday, full day
        (dt.datetime(2024, 7, 3, 16, 30, tzinfo=NY), "2024-07-03"),  # early close (13:00): still after it
        (dt.datetime(2024, 6, 15, 16, 30, tzinfo=NY), "next session 2024-06-17"),  # Saturday
        (dt.datetime(2024, 7, 4, 16, 30, tzinfo=NY), "next session 2024-07-05"),  # Independence Day
    ],
)
def test_end_of_day_schedule(settings: Settings, instance: dg.DagsterInstance, when: dt.datetime, expected: str) -> None:
    defs = build_defs(settings)
    schedule = defs.resolve_schedule_def("spy_end_of_day")
    assert schedule.cron_schedule == "30 16 * * 1-5"
    assert schedule.execution_timezone == "America/New_York"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    result = tick(defs, "spy_end_of_day", when, instance)
    if expected.startswith("next session"):
        assert not result.run_requests
        assert expected in result.skip_message and "not an NYSE trading day" in result.skip_message
        return
    (request,) = result.run_requests
    assert request.run_key == f"spy-{expected}-final"
    assert request.tags[FINAL_TAG] == expected
    assert request.run_config["ops"]["spy_submit_trading_day_backfill"]["config"] == {"start": expected, "end": expected}


def test_pre_open_schedule(settings: Settings, instance: dg.DagsterInstance) -> None:
    defs = build_defs(settings)
    schedule = defs.resolve_schedule_def("spy_pre_open_expirations")
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 9 * * 1-5", "America/New_York")
    (request,) = tick(defs, "spy_pre_open_expirations", dt.datetime(2024, 6, 14, 9, tzinfo=NY), instance).run_requests
    assert request.run_key == "spy-2024-06-14-pre-open"
    holiday = tick(defs, "spy_pre_open_expirations", dt.datetime(2024, 12, 25, 9, tzinfo=NY), instance)
    assert not holiday.run_requests and "2024-12-25 is not an NYSE trading day" in holiday.skip_message


def test_register_expirations_job_registers_the_tracked_ones_once(
    settings: Settings, instance: dg.DagsterInstance
) -> None:
    job = build_defs(settings).resolve_job_def("spy_register_expirations")
    config = {"ops": {"spy_register_listed_expirations": {"config": {"date": "2024-06-14"}}}}
    first = job.execute_in_process(run_config=config, instance=instance)
    assert first.success
    expected = ["2024-06-14", "2024-06-17", "2024-06-18"]
    assert instance.get_dynamic_partitions(expirations_partitions_name(SPY)) == expected
    assert output_metadata(first)["tracked"] == expected == output_metadata(first)["registered"]
    second = job.execute_in_process(run_config=config, instance=instance)
    assert output_metadata(second)["registered"] == []
    assert instance.get_dynamic_partitions(expirations_partitions_name(SPY)) == expected

    holiday = job.execute_in_process(
        run_config={"ops": {"spy_register_listed_expirations": {"config": {"date": "2024-07-04"}}}},
        instance=instance, raise_on_error=False,
    )
    assert not holiday.success
    failure = holiday.get_step_failure_events()[0].step_failure_data.error
    assert "2024-07-04 is not an NYSE trading day" in failure.message


def test_backfill_job_submits_exactly_the_tracked_partitions(settings: Settings, instance: dg.DagsterInstance) -> None:
    defs = build_defs(settings)
    job = defs.resolve_job_def("spy_backfill_trading_days")
    config = {"ops": {"spy_submit_trading_day_backfill": {"config": {"start": "2024-06-13", "end": "2024-06-17"}}}}
    result = job.execute_in_process(run_config=config, instance=instance)
    assert result.success
    (backfill,) = instance.get_backfills()
    assert backfill.backfill_id == output_metadata(result)["backfill_id"]
    assert backfill.tags[BACKFILL_TAG] == "spy:2024-06-13..2024-06-17"
    target = backfill.asset_backfill_data.target_subset
    days = ["2024-06-13", "2024-06-14", "2024-06-17"]  # the weekend is not a partition
    market = SimulatedMarket()
    chain_keys = {
        str(chain_partition_key(d, e))
        for d in days
        for e in market.listed_expirations(SPY, dt.date.fromisoformat(d))[: settings.expirations]
    }
    by_key = {k.to_user_string(): set(target.get_partitions_subset(k).get_partition_keys())
              for k in target.asset_keys}
    assert by_key == {
        "spy/underlying_bars": set(days),
        "spy/gex_levels": set(days),
        "spy/option_chain_snapshots": chain_keys,
        "spy/gex_surface": chain_keys,
    }
    assert len(chain_keys) == 9
    registered = set(instance.get_dynamic_partitions(expirations_partitions_name(SPY)))
    assert {k.split("|")[1] for k in chain_keys} <= registered


def test_backfill_job_rejects_a_bad_range_with_a_one_line_reason(settings: Settings, instance: dg.DagsterInstance) -> None:
    job = build_defs(settings).resolve_job_def("spy_backfill_trading_days")
    config = {"ops": {"spy_submit_trading_day_backfill": {"config": {"start": "2024-06-17", "end": "2024-06-13"}}}}
    result = job.execute_in_process(run_config=config, instance=instance, raise_on_error=False)
    assert not result.success
    error = result.get_step_failure_events()[0].step_failure_data.error
    assert "end 2024-06-13 is before start 2024-06-17" in error.message
    assert instance.get_backfills() == []


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2024-06-15", "2024-06-16", "no NYSE trading day from 2024-06-15 to 2024-06-16"),
        ("2024/06/14", "2024-06-14", "expected YYYY-MM-DD"),
        ("2019-01-02", "2024-12-31", "at most 1300"),
    ],
)
def test_backfill_sessions_validation(start: str, end: str, message: str) -> None:
    with pytest.raises(BackfillRequestError, match=message):
        backfill_sessions(start, end)
