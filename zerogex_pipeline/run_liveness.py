"""Runs whose process died: a run the CLI executes in its own process carries that process's identity in its tags;
a run still ``STARTED`` whose process is gone (``kill -9``, a crash, a reboot) is marked failed, with the reason.

Dagster's run monitoring covers runs launched by the daemon's run launcher; the CLI's in-process runs
(``zerogex run``, ``make run``) have no launcher watching them, so without this a killed ``zerogex run`` left its
run ``STARTED`` forever and the UI showed it as running.
"""

from __future__ import annotations

import os
import socket

import dagster as dg
import psutil
from dagster._core.storage.dagster_run import DagsterRunStatus, RunsFilter

HOST_TAG = "zerogex/host"
PID_TAG = "zerogex/pid"
PID_STARTED_TAG = "zerogex/pid_started"
"""Process creation time (seconds since the epoch, as psutil reports it): tells a reused pid from the original."""

UNFINISHED = [DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED,
              DagsterRunStatus.CANCELING]


def process_tags() -> dict[str, str]:
    """Tags naming this process (host, pid, creation time), added to the runs it executes in process."""
    return {
        HOST_TAG: socket.gethostname(),
        PID_TAG: str(os.getpid()),
        PID_STARTED_TAG: f"{psutil.Process().create_time():.2f}",
    }


def process_alive(pid: int, started: float) -> bool:
    """Whether process ``pid`` exists and is the one created at ``started`` (not a later process with its pid)."""
    try:
        return abs(psutil.Process(pid).create_time() - started) < 1.0
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def fail_orphaned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed every unfinished run of this host whose executing process is gone; returns their run ids.

    Only runs tagged by :func:`process_tags` on this host are judged (the process of a run on another host
    cannot be checked from here).
    """
    host = socket.gethostname()
    failed: list[str] = []
    runs = instance.get_runs(RunsFilter(statuses=UNFINISHED, tags={HOST_TAG: host}))
    for run in runs:
        try:
            pid, started = int(run.tags[PID_TAG]), float(run.tags[PID_STARTED_TAG])
        except (KeyError, ValueError):
            continue
        if process_alive(pid, started):
            continue
        instance.report_run_failed(
            run,
            message=(f"The process that executed this run (pid {pid} on {host}) is gone: it was killed or crashed "
                     "before the run ended. Partitions it did not finish keep their previous version; run it again."),
        )
        failed.append(run.run_id)
    return failed
