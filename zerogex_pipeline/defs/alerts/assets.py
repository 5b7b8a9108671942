"""``<underlying>/gex_alerts``: level events of a trading day, stored, and each announced once.

The asset reads its day's ``gex_levels`` partition, detects the events
(:func:`zerogex_pipeline.analytics.alerts.detect_events`: zero-gamma crosses, call/put wall breaches,
net-GEX sign changes, each with a deterministic ``event_id``) and returns them for the IO manager,
which replaces the day's rows of the ``gex_alerts`` table.

Announcing (log at WARNING, and a JSON POST to ``ZEROGEX_ALERT_WEBHOOK_URL`` when set) happens only

1. for events of **today's session** (America/New_York date of the pipeline clock): re-materializing
   or backfilling a past day stores its events but announces nothing, so a backfill never spams; and
2. for events whose id this run **claims** in the announcement ledger
   (:mod:`zerogex_pipeline.storage.alert_ledger`), which no re-run, refresh or concurrent run can claim
   again.

The stored ``announced_at`` is the ledger's time for the event (null when it was never announced).
An event is announced when a run first sees it: if the pipeline was down, that can be later than the
snapshot (the message carries the snapshot time).
A webhook failure is logged (host only, status or error type) and does not fail the run.
"""

import dagster as dg
import pandas as pd

from zerogex_pipeline import market_calendar
from zerogex_pipeline.analytics.alerts import EVENT_KINDS, detect_events
from zerogex_pipeline.announcements import announce
from zerogex_pipeline.defs.partitions import backfill_policy, day_partitions
from zerogex_pipeline.schemas import GEX_ALERTS
from zerogex_pipeline.settings import Settings, redact_webhook_url
from zerogex_pipeline.storage import alert_ledger
from zerogex_pipeline.underlyings import Underlying


def _markdown(events: pd.DataFrame, limit: int = 30) -> str:
    if events.empty:
        return "no events"
    lines = ["| time (ET) | kind | direction | spot | level | announced |", "|---|---|---|---|---|---|"]
    for e in events.head(limit).itertuples(index=False):
        when = f"{pd.Timestamp(e.snapshot_ts).tz_convert('America/New_York'):%H:%M}"
        shown = "no" if pd.isna(e.announced_at) else f"{pd.Timestamp(e.announced_at):%H:%M:%S} UTC"
        lines.append(f"| {when} | {e.kind} | {e.direction} | {e.spot:.2f} | {e.level:.2f} | {shown} |")
    if len(events) > limit:
        lines.append(f"| … {len(events) - limit} more | | | | | |")
    return "\n".join(lines)


def build_alert_assets(
    underlying: Underlying, settings: Settings, storage_kind: str, levels: dg.AssetsDefinition
) -> list[dg.AssetsDefinition]:
    """The ``gex_alerts`` asset of ``underlying`` (daily partitions, one input: the same day's levels)."""

    @dg.asset(
        key=[underlying.key, "gex_alerts"],
        group_name=f"{underlying.key}_alerts",
        partitions_def=day_partitions(settings),
        backfill_policy=backfill_policy(settings),
        ins={"gex_levels": dg.AssetIn(key=levels.key)},
        kinds={"pandas", storage_kind},
        description=(
            f"{underlying.name} level events of the day from its GEX levels: spot crossing zero gamma, "
            "breaking the previous snapshot's call wall (up) or put wall (down), and net GEX changing sign; "
            "spot and levels in USD, net GEX in USD per 1% move. Events of today's session are announced "
            "once each (log, optional webhook); backfilled days are stored, never announced."
        ),
        metadata={"partition_expr": "session_date", "dagster/column_schema": GEX_ALERTS.table_schema()},
    )
    def gex_alerts(context: dg.AssetExecutionContext, gex_levels: pd.DataFrame) -> pd.DataFrame:
        now = market_calendar.utc_now()
        today = now.tz_convert(market_calendar.NEW_YORK).date()
        frames = []
        by_day = {pd.Timestamp(d).date(): f for d, f in gex_levels.groupby("session_date", sort=False)}
        for key in context.partition_keys:  # one day, or a range of days (a backfill's levels, coalesced)
            date = pd.Timestamp(key).date()
            events = detect_events(by_day.get(date, gex_levels.iloc[0:0]))
            live = date == today
            claimed, stamps = alert_ledger.claim_and_read(
                settings, underlying.key, events, date, announce=live, now=now, run_id=context.run.run_id
            )
            deliveries = announce(events, claimed, settings.alert_webhook_url, context.log.warning)
            events["announced_at"] = pd.to_datetime(events["event_id"].map(stamps), utc=True)
            out = GEX_ALERTS.conform(events)
            frames.append(out)
            counts = out["kind"].value_counts()
            policy = (
                "today's session: new events announced once"
                if live
                else f"past session (today is {today}): events stored, none announced"
            )
            context.add_asset_metadata({
                "rows": len(out),
                **{f"events_{kind}": int(counts.get(kind, 0)) for kind in EVENT_KINDS},
                "announced_this_run": len(claimed),
                "announced_total": int(out["announced_at"].notna().sum()),
                "announcement_policy": policy,
                "webhook": redact_webhook_url(settings.alert_webhook_url) if settings.alert_webhook_url
                else "not configured",
                "webhook_posts_ok": deliveries["ok"],
                "webhook_posts_failed": deliveries["failed"],
                "events": dg.MetadataValue.md(_markdown(out)),
            }, partition_key=key)
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    return [gex_alerts]
