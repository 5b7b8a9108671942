"""Runs whose process died are marked failed with the reason, by the CLI at start and by a daemon sensor
(issue 13, item 3); runs of live processes and of other hosts are left alone."""

from __future__ import annotations

import socket
import subprocess
import sys

import dagster as dg
import psutil
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus
from dagster._core.utils import make_new_run_id

from zerogex_pipeline.defs.automation.orphaned_runs import build_orphaned_runs_sensor
from zerogex_pipeline.run_liveness import HOST_TAG, PID_STARTED_TAG, PID_TAG, fail_orphaned_runs, process_tags


def started_run(instance: dg.DagsterInstance, tags: dict[str, str]) -> str:
    run = DagsterRun(job_name="__ephemeral_asset_job__", run_id=make_new_run_id(), status=DagsterRunStatus.STARTED,
                     tags=tags)
    instance.add_run(run)
    return run.run_id


def dead_process_tags() -> dict[str, str]:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    started = psutil.Process(child.pid).create_time()
    child.wait()
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(child.pid), PID_STARTED_TAG: f"{started:.2f}"}


def test_runs_whose_process_is_gone_are_failed_with_the_reason(instance: dg.DagsterInstance) -> None:
    dead = started_run(instance, dead_process_tags())
    alive = started_run(instance, process_tags())
    reused = started_run(instance, {**process_tags(), PID_STARTED_TAG: "1000.00"})  # our pid, another process's start
    elsewhere = started_run(instance, {**dead_process_tags(), HOST_TAG: "another-host"})
    untagged = started_run(instance, {})

    assert sorted(fail_orphaned_runs(instance)) == sorted([dead, reused])
    status = {run_id: instance.get_run_by_id(run_id).status for run_id in (dead, alive, reused, elsewhere, untagged)}
    assert status == {dead: DagsterRunStatus.FAILURE, alive: DagsterRunStatus.STARTED,
                      reused: DagsterRunStatus.FAILURE, elsewhere: DagsterRunStatus.STARTED,
                      untagged: DagsterRunStatus.STARTED}
    failure = instance.all_logs(dead, of_type=dg.DagsterEventType.RUN_FAILURE)[0]
    assert "is gone: it was killed or crashed before the run ended" in failure.message
    assert fail_orphaned_runs(instance) == []  # once


def test_the_daemon_sensor_does_the_same(instance: dg.DagsterInstance) -> None:
    dead = started_run(instance, dead_process_tags())
    sensor = build_orphaned_runs_sensor()
    result = sensor(dg.build_sensor_context(instance=instance))
    assert isinstance(result, dg.SkipReason) and dead in str(result.skip_message)
    assert instance.get_run_by_id(dead).status == DagsterRunStatus.FAILURE
