"""Bringing a Dagster instance from date × registered expiration to date × expiration slot (``zerogex migrate``).

Before, the chain and surface were partitioned by date × a dynamic set of registered expirations
(``<u>_expirations``): most pairs were impossible, and the registered keys grew without bound. Now the second
dimension is static (the k-th nearest expiration listed that day), so:

1. the registered expirations are deleted from the instance (no definition uses them any more);
2. every chain and surface partition the store already holds (the store's migration gave its rows their slot) is
   checked against the day's tracked expirations (capture or listing) and, when it matches, reported as
   materialized under its new ``date|slot`` key, so partition status shows the history already stored; a stored
   slot that does not match (a nearer expiration was never stored) is left missing and listed;
3. stored levels that aggregate fewer expirations than tracked (or other ones) get a failed ``levels_complete``
   evaluation on their date, so the UI shows them failing, and are listed with the command that fixes them.

Running it again changes nothing: keys already reported are skipped.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

import dagster as dg
from dagster._core.event_api import PartitionKeyFilter

from zerogex_pipeline.defs.options.slots import TrackedExpirations
from zerogex_pipeline.defs.partitions import chain_partition_key, day_partitions
from zerogex_pipeline.defs.resources import build_market_data
from zerogex_pipeline.settings import Settings
from zerogex_pipeline.storage.partition_inventory import stored_levels_expirations, stored_slots
from zerogex_pipeline.underlyings import Underlying

MIGRATION_TAG = "zerogex/migrated_from"
"""Metadata key of a materialization reported by the migration: the partition key the rows were stored under."""


@dataclass
class PartitionMigration:
    """What :func:`migrate_partitions` did for one underlying."""

    underlying: str
    registered_deleted: int = 0
    reported: dict[str, int] = field(default_factory=dict)
    mismatched: list[str] = field(default_factory=list)
    incomplete_levels: list[dt.date] = field(default_factory=list)

    def lines(self) -> list[str]:
        """What to tell the person who ran it."""
        out = [f"{self.underlying}: deleted {self.registered_deleted} registered expiration partition(s)"
               if self.registered_deleted else f"{self.underlying}: no registered expiration partitions"]
        if self.reported:
            out.append(f"{self.underlying}: reported stored partitions as materialized: "
                       + ", ".join(f"{k} {v}" for k, v in sorted(self.reported.items())))
        if self.mismatched:
            shown = ", ".join(self.mismatched[:10]) + (" ..." if len(self.mismatched) > 10 else "")
            out.append(f"{self.underlying}: {len(self.mismatched)} stored slot(s) hold another expiration than the "
                       f"day's tracked one and stay missing: {shown}")
        if self.incomplete_levels:
            days = self.incomplete_levels
            out.append(f"{self.underlying}: levels of {len(days)} date(s) aggregate other than the tracked "
                       f"expirations ({', '.join(map(str, days[:10]))}{' ...' if len(days) > 10 else ''}); their "
                       f"levels_complete check now fails: re-materialize with zerogex backfill --start {days[0]} "
                       f"--end {days[-1]}")
        return out


def delete_registered_expirations(instance: dg.DagsterInstance, underlying: Underlying) -> int:
    """Delete the ``<u>_expirations`` dynamic partitions of the old model; returns how many there were."""
    name = f"{underlying.key}_expirations"
    keys = list(instance.get_dynamic_partitions(name))
    for key in keys:
        instance.delete_dynamic_partition(name, key)
    return len(keys)


def migrate_partitions(
    instance: dg.DagsterInstance, settings: Settings, underlying: Underlying
) -> PartitionMigration:
    """Steps 1-3 of the module docstring for ``underlying``."""
    report = PartitionMigration(underlying.name, delete_registered_expirations(instance, underlying))
    days = set(day_partitions(settings).get_partition_keys())
    slots = stored_slots(settings, underlying)
    slots = slots[slots["session_date"].map(lambda d: d.isoformat() in days)
                  & (slots["expiration_slot"].astype(int) <= settings.expirations)]
    source = build_market_data(settings).get_source()
    levels = stored_levels_expirations(settings, underlying)
    levels = levels[levels["session_date"].map(lambda d: d.isoformat() in days)]
    with TrackedExpirations(underlying, settings,
                            lambda d: list(source.listed_expirations(underlying, d))) as tracked:
        for table, rows in slots.groupby("table"):
            key = dg.AssetKey([underlying.key, str(table)])
            have = set(instance.get_materialized_partitions(key))
            count = 0
            for r in rows.itertuples(index=False):
                partition = str(chain_partition_key(r.session_date, int(r.expiration_slot)))
                if partition in have:
                    continue
                if tracked.slot(r.session_date, int(r.expiration_slot)) != r.expiration:
                    report.mismatched.append(f"{table} {partition} holds {r.expiration}")
                    continue
                instance.report_runless_asset_event(dg.AssetMaterialization(
                    key, partition=partition,
                    metadata={MIGRATION_TAG: f"{r.session_date}|{r.expiration}", "rows": int(r.rows),
                              "expiration": r.expiration.isoformat(), "expiration_slot": int(r.expiration_slot)}))
                count += 1
            if count:
                report.reported[str(table)] = count
        check = dg.AssetCheckKey(dg.AssetKey([underlying.key, "gex_levels"]), "levels_complete")
        for r in levels.itertuples(index=False):
            want = [e.isoformat() for e in tracked.of(r.session_date)]
            if r.min_expirations == r.max_expirations == len(want) and str(r.lists) == json.dumps(want):
                continue
            report.incomplete_levels.append(r.session_date)
            if instance.event_log_storage.get_latest_asset_check_execution_by_key(
                [check], partition_filter=PartitionKeyFilter(key=r.session_date.isoformat())
            ):
                continue  # already judged (by a run, or by an earlier migration): nothing to add
            instance.report_runless_asset_event(dg.AssetCheckEvaluation(
                asset_key=check.asset_key, check_name=check.name, passed=False,
                partition=r.session_date.isoformat(), severity=dg.AssetCheckSeverity.ERROR,
                description=(f"levels stored before the expiration-slot partitions aggregate {r.min_expirations}.."
                             f"{r.max_expirations} expiration(s) ({r.lists}), not the {len(want)} tracked {want}: "
                             f"re-materialize {r.session_date} (zerogex backfill --start {r.session_date} --end "
                             f"{r.session_date})"),
                metadata={"tracked": json.dumps(want), "stored": str(r.lists)},
            ))
    return report



