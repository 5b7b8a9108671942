"""The end-of-day schedule ticked at chosen instants, and the partitioned backfill job it launches executed."""

import datetime as dt
import types
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
import pytest

from zerogex_pipeline.definitions import build_defs
from zerogex_pipeline.defs.automation.backfills import BACKFILL_TAG, BackfillRequestError, backfill_sessions
from zerogex_pipeline.defs.automation.schedules import FINAL_TAG, JOB_BACKFILL_TAG, asset_backfill_id_for
from zerogex_pipeline.defs.partitions import chain_partition_key
from zerogex_pipeline.settings import Settings
from zerogex_pipeline.underlyings import resolve_underlying

NY = ZoneInfo("America/New_York")
SPY = resolve_underlying("SPY")


def output_metadata(result: dg.ExecuteInProcessResult) -> dict:
    (event,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_OUTPUT]
    return {k: v.value for k, v in event.step_output_data.metadata.items()}


def tick(defs: dg.Definitions, name: str, when: dt.datetime, instance: dg.DagsterInstance):
    schedule = defs.resolve_schedule_def(name)
    with dg.build_schedule_context(scheduled_execution_time=when, instance=instance,
                                   repository_def=defs.get_repository_def()) as context:
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
    assert request.partition_key == expected and not request.run_config  # the date is the partition: no config


def run_job(defs: dg.Definitions, instance: dg.DagsterInstance, key: str, tags: dict[str, str] | None = None):
    return defs.resolve_job_def("spy_backfill_trading_days").execute_in_process(
        partition_key=key, instance=instance, tags=tags, raise_on_error=False)


def targets(backfill) -> dict[str, set[str]]:
    target = backfill.asset_backfill_data.target_subset
    return {k.to_user_string(): set(target.get_partitions_subset(k).get_partition_keys()) for k in target.asset_keys}


def test_backfill_job_submits_every_slot_of_its_date_with_a_link(
    settings: Settings, instance: dg.DagsterInstance
) -> None:
    defs = build_defs(settings)
    job = defs.resolve_job_def("spy_backfill_trading_days")
    assert job.partitions_def is not None and job.tags["dagster/max_retries"] == "0"
    result = run_job(defs, instance, "2024-06-14")
    assert result.success
    (backfill,) = instance.get_backfills()
    metadata = output_metadata(result)
    assert backfill.backfill_id == metadata["backfill_id"]
    assert metadata["backfill"] == f"/runs/b/{backfill.backfill_id}?tab=partitions"  # a link in the UI
    assert backfill.tags[BACKFILL_TAG] == "spy:2024-06-14..2024-06-14"
    chain_keys = {str(chain_partition_key("2024-06-14", k)) for k in (1, 2, 3)}
    assert targets(backfill) == {"spy/underlying_bars": {"2024-06-14"}, "spy/gex_levels": {"2024-06-14"},
                                 "spy/option_chain_snapshots": chain_keys, "spy/gex_surface": chain_keys}


def test_a_job_backfill_over_a_range_submits_one_asset_backfill(
    settings: Settings, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jobs > spy_backfill_trading_days > Launch backfill over 2024-06-13..06-17 runs the job once per date; the
    first run submits one asset backfill of the whole range (every slot), the others link to it."""
    days = ["2024-06-13", "2024-06-14", "2024-06-17"]  # the weekend is not a partition
    original = dg.DagsterInstance.get_backfill

    def get_backfill(self, backfill_id):
        if backfill_id == "jobbf":
            return types.SimpleNamespace(partition_names=days)
        return original(self, backfill_id)

    monkeypatch.setattr(dg.DagsterInstance, "get_backfill", get_backfill)
    defs = build_defs(settings)
    results = [run_job(defs, instance, d, {"dagster/backfill": "jobbf"}) for d in days]
    assert all(r.success for r in results)
    (backfill,) = instance.get_backfills()
    assert backfill.backfill_id == asset_backfill_id_for("jobbf") == "jobbf-assets"
    assert backfill.tags[JOB_BACKFILL_TAG] == "jobbf"
    assert [output_metadata(r)["submitted_by_this_run"] for r in results] == [True, False, False]
    assert {output_metadata(r)["backfill_id"] for r in results} == {"jobbf-assets"}
    chain_keys = {str(chain_partition_key(d, k)) for d in days for k in (1, 2, 3)}
    assert targets(backfill) == {"spy/underlying_bars": set(days), "spy/gex_levels": set(days),
                                 "spy/option_chain_snapshots": chain_keys, "spy/gex_surface": chain_keys}


def test_backfill_job_refuses_a_bad_date_in_one_line_before_anything_is_submitted(
    settings: Settings, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    defs = build_defs(settings)
    with pytest.raises(dg.DagsterUnknownPartitionError):  # not a partition: refused at launch, no run at all
        run_job(defs, instance, "2024-06-15")
    assert not instance.get_runs()
    from zerogex_pipeline import market_calendar

    monkeypatch.setattr(market_calendar, "utc_now", lambda: pd.Timestamp("2024-06-13 12:00", tz="America/New_York"))
    result = run_job(defs, instance, "2024-06-14")  # tomorrow's partition exists (end_offset): no data yet
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data
    assert failure.user_failure_data.description == (
        "backfill dates: end 2024-06-14 is in the future (today is 2024-06-13 in New York)")
    assert instance.get_backfills() == []
    assert result.dagster_run.tags["dagster/max_retries"] == "0"  # the run-retry daemon will not relaunch it


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2024-06-15", "2024-06-16", "no NYSE trading day from 2024-06-15 to 2024-06-16"),
        ("2024/06/14", "2024-06-14", "expected YYYY-MM-DD"),
        ("2019-01-02", "2024-12-31", "at most 1300"),
        ("2024-06-17", "2024-06-13", "end 2024-06-13 is before start 2024-06-17"),
        ("2023-12-29", "2024-01-05", "start 2023-12-29 is before the first partition date 2024-01-02"),
        ("2024-06-14", "2099-01-02", "end 2099-01-02 is in the future"),
    ],
)
def test_backfill_sessions_validation(start: str, end: str, message: str) -> None:
    with pytest.raises(BackfillRequestError, match=message):
        backfill_sessions(start, end, first=dt.date(2024, 1, 2) if start.startswith("2023") else None)
