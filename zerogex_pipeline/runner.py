"""Materializing whole trading days in dependency order: bars -> snapshots -> surface -> levels.

Used by ``zerogex run`` (and ``make run``). One day is: register the day's nearest expirations as
dynamic partitions, then one run for the bars, one per expiration for snapshots + surface, and one for
the levels. Each run goes through the configured IO manager, so the store ends with exactly one copy
of every partition however often a day is re-run.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from dataclasses import dataclass, field

import dagster as dg

from zerogex_pipeline.definitions import build_underlying_assets
from zerogex_pipeline.defs.checks.asset_checks import build_asset_checks
from zerogex_pipeline.defs.partitions import chain_partition_key, expirations_partitions_name
from zerogex_pipeline.defs.resources import build_resources
from zerogex_pipeline.run_liveness import process_tags
from zerogex_pipeline.settings import Settings
from zerogex_pipeline.sources.base import MarketDataSource
from zerogex_pipeline.underlyings import Underlying


class RunFailedError(RuntimeError):
    """A materialization run failed; the message names the asset and partition, and where the run's full log is."""


@dataclass
class DayRun:
    """What one day's materialization did: rows written per asset and the expirations used."""

    underlying: str
    date: dt.date
    expirations: list[dt.date]
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def day_expirations(source: MarketDataSource, underlying: Underlying, date: dt.date, count: int) -> list[dt.date]:
    """The ``count`` nearest expirations listed on ``date`` (0DTE included)."""
    return source.listed_expirations(underlying, date)[:count]


def _failure_message(event: dg.DagsterEvent | None) -> str:
    """The innermost error message of a step failure (the user's error, not Dagster's wrapper), on one line.

    Our own errors (``zerogex_pipeline.*``) already name the input and the problem, so their class name is
    dropped; other exceptions keep their short class name (``KeyError: 'x'``).
    """
    error = event.step_failure_data.error if event is not None and event.step_failure_data else None
    if error is None:
        return "see the run's logs"
    while error.cause is not None:
        error = error.cause
    message = " ".join(error.message.split())
    match = re.match(r"^([\w.]+)\.(\w+): ", message)
    if match:
        module, name = match.groups()
        message = message[match.end():] if module.startswith("zerogex_pipeline") else f"{name}: {message[match.end():]}"
    return message


def _failed_checks(result: dg.ExecuteInProcessResult) -> str:
    """``check <asset>:<name>: <first problem>`` for each failed asset check of the run, on one line."""
    failed = []
    for event in result.all_events:
        if event.event_type != dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            continue
        evaluation = event.asset_check_evaluation_data
        if evaluation.passed:
            continue
        problems = evaluation.metadata.get("problems")
        first = str(problems.value).strip().splitlines()[0] if problems is not None and problems.value else ""
        failed.append(f"check {evaluation.asset_key.to_user_string()}:{evaluation.check_name} failed: {first}")
    return "; ".join(failed)


def _rows(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> int:
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        if mat.asset_key == key:
            value = mat.metadata.get("dagster/row_count")
            return int(value.value) if value is not None else 0  # type: ignore[arg-type]
    return 0


QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
"""Run config that keeps Dagster's event lines (and a failure's tracebacks) off the console: the instance's event
log still has all of them, and :class:`RunFailedError` says where."""


def full_log_hint(run_id: str) -> str:
    """Where a run's full event log is: the run id in the local Dagster instance, shown by ``make ui``."""
    home = os.environ.get("DAGSTER_HOME", "")
    where = f" in the Dagster instance {home}" if home else ""
    return f"full log: run {run_id[:8]}{where} (make ui > Runs), or rerun with --debug"


def materialize_day(
    underlying: Underlying, date: dt.date, settings: Settings, instance: dg.DagsterInstance, quiet: bool = True
) -> DayRun:
    """Materialize all four assets of ``underlying`` for ``date``.

    Raises:
        RunFailedError: a run failed (the store keeps the partitions' previous versions).
    """
    started = time.perf_counter()
    resources = build_resources(settings)
    assets = build_underlying_assets(underlying, settings)
    bars, chain, surface, levels = assets
    source = resources["market_data"].get_source()
    expirations = day_expirations(source, underlying, date, settings.expirations)
    instance.add_dynamic_partitions(expirations_partitions_name(underlying), [e.isoformat() for e in expirations])
    out = DayRun(underlying.name, date, expirations)

    checks = build_asset_checks(underlying, settings, bars, chain, surface, levels)

    def run(selection: list[dg.AssetsDefinition], partition_key: str | dg.MultiPartitionKey) -> None:
        result = dg.materialize(  # the selected assets' blocking checks run in the same run
            [*assets, *checks],
            selection=[a.key for a in selection],
            partition_key=partition_key,
            instance=instance,
            resources=resources,
            raise_on_error=False,
            run_config=QUIET_RUN_CONFIG if quiet else None,
            tags={"zerogex/trigger": "cli", **process_tags()},  # lets a later start tell if this process died
        )
        if not result.success:
            failure = next((e for e in result.all_events if e.is_step_failure), None)
            detail = _failed_checks(result) or _failure_message(failure)
            names = ", ".join(a.key.to_user_string() for a in selection)
            raise RunFailedError(f"{names} [{partition_key}] failed: {detail} ({full_log_hint(result.run_id)})")
        for a in selection:
            out.rows[a.key.path[-1]] = out.rows.get(a.key.path[-1], 0) + _rows(result, a.key)

    run([bars], date.isoformat())
    for expiration in expirations:
        run([chain, surface], chain_partition_key(date, expiration))
    run([levels], date.isoformat())
    out.seconds = time.perf_counter() - started
    return out
