"""The UI's doors into a backfill, through GraphQL, executed by the real daemon: complete levels or a loud failure.

``dagster-webserver`` and ``dagster-daemon`` run as subprocesses on a temporary instance (a copy of the
repo's ``dagster.yaml``: run queue, ``tradestation_api`` pool limit 2, run retries) and a temporary
embedded DuckDB store. The test POSTs what the UI submits:

1. A selection in ``gex_levels``' partition grid (``partitionsByAssets``: one date, nothing upstream stored):
   the backfill fails, its run's one-line error names the missing (date, slot = expiration) and how to fill it,
   and no levels are stored.
2. "Materialize selected" on the four assets with a date range (``launchPartitionBackfill`` with
   ``partitionNames`` + ``assetSelection``: the trading-day bars are the root, so the daemon expands each date
   to every expiration slot of the chain and surface, and to its levels). The levels of every date aggregate
   exactly the day's tracked expirations, one per slot; partition status holds exactly date x slot; a second
   identical backfill leaves the store unchanged. It also checks what the event log shows of the pool.

The range 2025-11-26..2025-12-01 holds Thanksgiving (closed), the 13:00 early close of 2025-11-28
(210 one-minute bars, 8 half-hourly snapshots) and a weekend. To keep CI short (every run is a
subprocess) the pipeline tracks 1 expiration per date, snapshots every 30 minutes within 3% of spot.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pandas as pd
import pytest
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.storage.dagster_run import DagsterRunStatus, RunsFilter
from dagster._core.storage.tags import BACKFILL_ID_TAG
from dagster_graphql.client.query import LAUNCH_PARTITION_BACKFILL_MUTATION

from zerogex_pipeline.defs.market_data.assets import TRADESTATION_POOL
from zerogex_pipeline.schemas import (
    GEX_LEVELS,
    GEX_SURFACE,
    OPTION_CHAIN_SNAPSHOTS,
    UNDERLYING_BARS,
    AssetSchema,
)
from zerogex_pipeline.sources.simulated import SimulatedMarket
from zerogex_pipeline.underlyings import resolve_underlying
from zerogex_pipeline_tests.ui.servers import (
    LOCATION_NAME,
    REPOSITORY_NAME,
    DagsterProcess,
    dagster_env,
    free_port,
    graphql,
    make_dagster_home,
    start_daemon,
    start_webserver,
    wait_for_location,
)

DATES = ["2025-11-26", "2025-11-28", "2025-12-01"]  # Thanksgiving 11-27 and the weekend are not sessions
TRACKED = 1  # ZEROGEX_EXPIRATIONS: nearest listed expirations per date
PIPELINE_SETTINGS = {"ZEROGEX_EXPIRATIONS": str(TRACKED), "ZEROGEX_SNAPSHOT_MINUTES": "30",
                     "ZEROGEX_STRIKE_DISTANCE": "3"}
BARS_PER_DAY = {"2025-11-26": 390, "2025-11-28": 210, "2025-12-01": 390}
SNAPSHOTS_PER_DAY = {"2025-11-26": 14, "2025-11-28": 8, "2025-12-01": 14}  # 09:30..close every 30 min
POOL_LIMIT = 2  # dagster.yaml concurrency.pools.default_limit
BACKFILL_TIMEOUT_S = 1500.0  # one backfill: ~19 runs; minutes on a loaded 2-core machine
SCHEMA = "spy"
TABLES: dict[str, AssetSchema] = {
    s.name: s for s in (UNDERLYING_BARS, OPTION_CHAIN_SNAPSHOTS, GEX_SURFACE, GEX_LEVELS)
}
ASSET_KEYS = [["spy", name] for name in TABLES]
REPO_SELECTOR = {"repositoryLocationName": LOCATION_NAME, "repositoryName": REPOSITORY_NAME}


@dataclass
class Stack:
    """The running webserver and daemon of one test, and their instance and store."""

    port: int
    webserver: DagsterProcess
    daemon: DagsterProcess | None
    dagster_home: Path
    duckdb_path: Path
    artifacts: Path

    def logs(self) -> str:
        parts = [f"--- {p.name} log tail ---\n{p.log_tail()}" for p in (self.webserver, self.daemon) if p]
        return "\n".join(parts)


@pytest.fixture
def stack(tmp_path: Path, artifacts_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    home = make_dagster_home(tmp_path / "dagster_home")
    data_dir = tmp_path / "data"
    env = {**dagster_env(home, data_dir), **PIPELINE_SETTINGS}
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # DagsterInstance.get() in this process reads the same instance
    port = free_port()
    webserver = start_webserver(env, artifacts_dir, port)
    s = Stack(port, webserver, None, home, data_dir / "zerogex.duckdb", artifacts_dir)
    try:
        wait_for_location(port, webserver)
        stop_default_running_automation(port)
        s.daemon = start_daemon(env, artifacts_dir)
        yield s
    finally:
        for p in (s.daemon, s.webserver):
            if p is not None:
                p.stop()


AUTOMATION_QUERY = """
query($sel: RepositorySelector!) {
  sensorsOrError(repositorySelector: $sel) {
    __typename ... on Sensors { results { name sensorState { id status } } }
  }
  schedulesOrError(repositorySelector: $sel) {
    __typename ... on Schedules { results { name scheduleState { id status } } }
  }
}
"""
STOP_SENSOR = """
mutation($id: String!) { stopSensor(id: $id) {
  __typename ... on StopSensorMutationResult { instigationState { status } } ... on PythonError { message } } }
"""
STOP_SCHEDULE = """
mutation($id: String!) { stopRunningSchedule(id: $id) {
  __typename ... on ScheduleStateResult { scheduleState { status } } ... on PythonError { message } } }
"""


def stop_default_running_automation(port: int) -> None:
    """Stop the sensors and schedules that default to RUNNING, before the daemon starts.

    The intraday-refresh sensor would otherwise launch runs for today's session into this instance
    during market hours, competing with the backfill for the pool; the schedules likewise at 09:00/16:30.
    """
    data = graphql(port, AUTOMATION_QUERY, {"sel": REPO_SELECTOR})
    sensors = data["sensorsOrError"]["results"]
    schedules = data["schedulesOrError"]["results"]
    assert sensors and schedules, f"expected the refresh sensor and the schedules in {LOCATION_NAME}: {data}"
    for mutation, items, state in ((STOP_SENSOR, sensors, "sensorState"), (STOP_SCHEDULE, schedules, "scheduleState")):
        for item in items:
            if item[state]["status"] == "RUNNING":
                result = next(iter(graphql(port, mutation, {"id": item[state]["id"]}).values()))
                assert result["__typename"] in ("StopSensorMutationResult", "ScheduleStateResult"), (item, result)
    after = graphql(port, AUTOMATION_QUERY, {"sel": REPO_SELECTOR})
    statuses = {i["name"]: i["sensorState"]["status"] for i in after["sensorsOrError"]["results"]}
    statuses |= {i["name"]: i["scheduleState"]["status"] for i in after["schedulesOrError"]["results"]}
    assert set(statuses.values()) == {"STOPPED"}, statuses


def tracked_plan() -> dict[str, list[str]]:
    """The ``TRACKED`` nearest expirations the simulated market lists on each date of ``DATES``."""
    market, spy = SimulatedMarket(), resolve_underlying("SPY")
    return {
        d: [e.isoformat() for e in market.listed_expirations(spy, dt.date.fromisoformat(d))[:TRACKED]]
        for d in DATES
    }


BACKFILL_STATUS = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status numPartitions error { message stack } }
    ... on PythonError { message }
  }
}
"""
TERMINAL = {s.value for s in BulkActionStatus} - {"REQUESTED", "CANCELING", "FAILING"}


def launch_backfill(stack: Stack, title: str) -> str:
    """What the UI submits for "Materialize selected" on the four assets and the dates picked in its dialog."""
    params = {"partitionNames": DATES, "assetSelection": [{"path": p} for p in ASSET_KEYS], "title": title}
    return _launch(stack, params)


def launch_grid_backfill(stack: Stack, title: str, ranges: dict[tuple[str, ...], tuple[str, str]]) -> str:
    """What the UI submits for a selection in assets' partition grids: a key range per asset."""
    selection = [{"assetKey": {"path": list(key)}, "partitions": {"range": {"start": lo, "end": hi}}}
                 for key, (lo, hi) in ranges.items()]
    return _launch(stack, {"partitionsByAssets": selection, "title": title})


def _launch(stack: Stack, params: dict[str, Any]) -> str:
    variables = {"backfillParams": params}
    result = graphql(stack.port, LAUNCH_PARTITION_BACKFILL_MUTATION, variables)["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result
    return str(result["backfillId"])


def wait_for_backfill(stack: Stack, backfill_id: str, succeed: bool = True) -> dict[str, Any]:
    """Wait until the backfill ends; it must succeed (``succeed``) or else fail."""
    deadline = time.monotonic() + BACKFILL_TIMEOUT_S
    info: dict[str, Any] = {}
    while time.monotonic() < deadline:
        assert stack.daemon is not None and stack.daemon.proc.poll() is None, f"daemon exited\n{stack.logs()}"
        info = graphql(stack.port, BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        assert info["__typename"] == "PartitionBackfill", info
        if info["status"] in TERMINAL:
            ok = info["status"] in ("COMPLETED_SUCCESS", "COMPLETED")
            assert ok == succeed, f"backfill ended {info}\n{failed_runs(backfill_id)}\n{stack.logs()}"
            return info
        time.sleep(2.0)
    raise AssertionError(
        f"backfill {backfill_id} not done after {BACKFILL_TIMEOUT_S:.0f}s: {info}\n{failed_runs(backfill_id)}\n{stack.logs()}"
    )


def failed_runs(backfill_id: str) -> str:
    """The backfill's unfinished or unsuccessful runs with their step/run failure messages and errors, for a failure message."""
    instance = dg.DagsterInstance.get()
    lines = []
    for run in instance.get_runs(RunsFilter(tags={BACKFILL_ID_TAG: backfill_id})):
        if run.status == DagsterRunStatus.SUCCESS:
            continue
        lines.append(f"run {run.run_id} {run.status.value} tags={dict(run.tags)}")
        for record in instance.all_logs(run.run_id):
            event = record.dagster_event
            if event and event.event_type in (dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE):
                error = getattr(event.event_specific_data, "error", None)
                lines.append(f"  {event.event_type.value} {event.step_key or ''}: {event.message}")
                if error is not None:
                    lines.append(f"  {error.to_string()[:3000]}")
    return "\n".join(lines) or "no unsuccessful run recorded"


def run_backfill(stack: Stack, title: str) -> tuple[str, float]:
    """Launch the date-range backfill and wait for it; returns its id and wall time in seconds."""
    started = time.monotonic()
    backfill_id = launch_backfill(stack, title)
    wait_for_backfill(stack, backfill_id)
    return backfill_id, time.monotonic() - started


def step_failures(backfill_id: str) -> list[str]:
    """The step-failure messages (the ``Failure`` descriptions) of the backfill's runs."""
    instance = dg.DagsterInstance.get()
    messages = []
    for run in instance.get_runs(RunsFilter(tags={BACKFILL_ID_TAG: backfill_id})):
        for record in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
            data = record.dagster_event.event_specific_data if record.dagster_event else None
            description = getattr(getattr(data, "user_failure_data", None), "description", None)
            if description:
                messages.append(str(description))
    return messages


def read_tables(path: Path) -> dict[str, pd.DataFrame]:
    """Every row of the four tables, in primary-key order (an empty frame for a table not created yet)."""
    with duckdb.connect(str(path), read_only=True) as conn:
        exists = {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [SCHEMA]).fetchall()}
        return {
            name: conn.execute(
                f'SELECT * FROM "{SCHEMA}"."{name}" ORDER BY {", ".join(schema.primary_key)}'
            ).df() if name in exists else pd.DataFrame()
            for name, schema in TABLES.items()
        }


def _label(value: Any) -> str:
    """A DATE column value (DuckDB gives midnight ``Timestamp``s) as ``YYYY-MM-DD``."""
    return value.date().isoformat() if isinstance(value, pd.Timestamp) else str(value)


def count_by(frame: pd.DataFrame, *cols: str, distinct: str | None = None) -> dict[Any, int]:
    """Rows (or distinct values of ``distinct``) per group of ``cols``; keys are ``YYYY-MM-DD`` labels."""
    grouped = frame.groupby(list(cols))
    counts = grouped[distinct].nunique() if distinct else grouped.size()
    return {
        (tuple(_label(v) for v in k) if isinstance(k, tuple) else _label(k)): int(n)
        for k, n in counts.items()
    }


def assert_store(tables: dict[str, pd.DataFrame], plan: dict[str, list[str]]) -> None:
    for name, frame in tables.items():
        pk = list(TABLES[name].primary_key)
        repeated = frame[frame.duplicated(pk, keep=False)]
        assert repeated.empty, f"{name}: {len(repeated)} rows repeat a primary key {pk}:\n{repeated.head()}"
    assert count_by(tables["underlying_bars"], "session_date") == BARS_PER_DAY
    assert count_by(tables["gex_levels"], "session_date") == SNAPSHOTS_PER_DAY
    expected_pairs = {(d, e): SNAPSHOTS_PER_DAY[d] for d, exps in plan.items() for e in exps}
    for name in ("option_chain_snapshots", "gex_surface"):
        # Only the day's tracked expirations hold rows, each in its slot (1 = nearest listed that day).
        snapshots = count_by(tables[name], "session_date", "expiration", distinct="snapshot_ts")
        assert snapshots == expected_pairs, f"{name}: distinct snapshots per (date, expiration)"
        slots = {(_label(d), _label(e), int(k)) for d, e, k in
                 tables[name][["session_date", "expiration", "expiration_slot"]].drop_duplicates().itertuples(index=False)}
        assert slots == {(d, e, k) for d, exps in plan.items() for k, e in enumerate(exps, start=1)}, name
    levels = tables["gex_levels"]
    for day, exps in plan.items():  # complete: every snapshot aggregates exactly the day's tracked expirations
        of_day = levels[levels["session_date"].map(_label) == day]
        assert set(of_day["expirations"]) == {len(exps)}, (day, of_day["expirations"].unique())
        assert {tuple(json.loads(x)) if isinstance(x, str) else tuple(x) for x in of_day["expiration_list"]} == {
            tuple(exps)}, (day, of_day["expiration_list"].unique())


def pool_step_intervals(instance: dg.DagsterInstance, backfill_id: str) -> dict[str, Any]:
    """What the event log shows of the ``tradestation_api`` pool in the backfill's runs.

    Returns the runs, the pool of every step (from each run's execution plan snapshot), the start/end
    of every step in the pool, their maximum overlap, and the "Step blocked by limit" engine events.
    """
    runs = instance.get_runs(RunsFilter(tags={BACKFILL_ID_TAG: backfill_id}))
    intervals: list[tuple[float, float, str]] = []
    step_pools: dict[str, str | None] = {}
    pool_steps: dict[str, int] = {}
    blocked = 0
    for run in runs:
        assert run.status == DagsterRunStatus.SUCCESS, f"run {run.run_id} {run.status}"
        assert run.execution_plan_snapshot_id is not None
        plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
        pools = {step.key: step.pool for step in plan.steps}
        step_pools.update(pools)
        starts: dict[str, float] = {}
        for record in instance.all_logs(run.run_id):
            event = record.dagster_event
            if event is None or event.step_key is None:
                continue
            if event.event_type == dg.DagsterEventType.STEP_START:
                starts[event.step_key] = record.timestamp
            elif event.event_type == dg.DagsterEventType.STEP_SUCCESS and pools.get(event.step_key) == TRADESTATION_POOL:
                intervals.append((starts[event.step_key], record.timestamp, f"{run.run_id[:8]}:{event.step_key}"))
                pool_steps[event.step_key] = pool_steps.get(event.step_key, 0) + 1
            elif event.event_type == dg.DagsterEventType.ENGINE_EVENT and "blocked by limit for pool" in (
                record.user_message or ""
            ):
                blocked += 1
    edges = sorted([(s, 1) for s, _, _ in intervals] + [(e, -1) for _, e, _ in intervals])
    overlap = peak = 0
    for _, delta in edges:  # ends sort before starts at the same instant
        overlap += delta
        peak = max(peak, overlap)
    return {"runs": len(runs), "step_pools": step_pools, "pool_steps": pool_steps,
            "max_overlap": peak, "blocked_events": blocked}


@pytest.mark.ui
@pytest.mark.timeout(3600)
def test_ui_date_range_backfills_give_complete_levels_or_fail_loudly(stack: Stack) -> None:
    plan = tracked_plan()
    expirations = sorted({e for exps in plan.values() for e in exps})

    # The levels' partition grid, one date whose chain was never built: refused in one line, nothing stored.
    day = DATES[0]
    refused_id = launch_grid_backfill(stack, "ui test: levels alone", {("spy", "gex_levels"): (day, day)})
    refused = wait_for_backfill(stack, refused_id, succeed=False)
    assert refused["status"] in ("COMPLETED_FAILED", "FAILED"), refused
    messages = step_failures(refused_id)
    assert messages, f"no step failure recorded\n{failed_runs(refused_id)}"
    for message in messages:
        assert "\n" not in message and "Traceback" not in message, message
        assert f"({day}, slot 1 = {plan[day][0]}" in message, message
        assert f"zerogex backfill --start {day} --end {day}" in message, message
    assert read_tables(stack.duckdb_path)["gex_levels"].empty

    # The four assets over the date range: complete levels on every date.
    first_id, first_s = run_backfill(stack, "ui test: SPY 2025-11-26..2025-12-01")
    first = read_tables(stack.duckdb_path)
    assert_store(first, plan)

    instance = dg.DagsterInstance.get()
    chain_key = dg.AssetKey(["spy", "option_chain_snapshots"])
    slots = [str(k) for k in range(1, TRACKED + 1)]
    assert set(instance.get_materialized_partitions(chain_key)) == {f"{d}|{k}" for d in DATES for k in slots}
    levels_key = dg.AssetKey(["spy", "gex_levels"])
    assert set(instance.get_materialized_partitions(levels_key)) == set(DATES)

    pool = pool_step_intervals(instance, first_id)
    # Only the two assets that call the data source run in the pool (asset checks and the analytics don't).
    in_pool = {step for step, p in pool["step_pools"].items() if p == TRADESTATION_POOL}
    assert in_pool == {"spy__underlying_bars", "spy__option_chain_snapshots"}, pool["step_pools"]
    # Range runs (the assets' backfill policy): at most one bars step per date, one chain step per (date, slot) ...
    assert 1 <= pool["pool_steps"]["spy__option_chain_snapshots"] <= len(DATES) * TRACKED, pool
    assert 1 <= pool["pool_steps"]["spy__underlying_bars"] <= len(DATES), pool
    # ... never more than the pool's limit at once.
    assert instance.event_log_storage.get_concurrency_info(TRADESTATION_POOL).slot_count == POOL_LIMIT
    assert pool["max_overlap"] <= POOL_LIMIT, pool

    second_id, second_s = run_backfill(stack, "ui test: same range again")
    second = read_tables(stack.duckdb_path)
    for name in TABLES:
        pd.testing.assert_frame_equal(second[name], first[name], obj=f"{name} after the second backfill")

    queue_holds = sum(
        "blocked by global concurrency limits" in line and TRADESTATION_POOL in line
        for line in stack.daemon.log_tail(chars=10**9).splitlines()
    ) if stack.daemon else 0
    timings = {
        "dates": DATES, "expirations": expirations, "first_backfill_s": round(first_s, 1),
        "second_backfill_s": round(second_s, 1), "rows": {n: len(f) for n, f in first.items()},
        "pool": {k: v for k, v in pool.items() if k != "step_pools"}, "backfills": [refused_id, first_id, second_id],
        "run_queue_pool_holds_in_daemon_log": queue_holds,
    }
    (stack.artifacts / "backfill_timings.json").write_text(json.dumps(timings, indent=2))
    print(f"backfill timings: {json.dumps(timings)}")
