"""``zerogex backfill``: submit an asset backfill of every core asset over a date range.

The same backfill as the ``<u>_backfill_trading_days`` job in the UI: every date of the range × every expiration
slot (the ``ZEROGEX_EXPIRATIONS`` nearest expirations listed each day); the backfill daemon of the local instance
(``make ui`` runs it) executes bars -> chain + surface -> levels in dependency order, in range runs. With ``--wait``
the command prints progress (partitions done out of the total, failures, ETA) until the backfill ends, and exits
non-zero unless it completed.
"""

from __future__ import annotations

import argparse
import sys
import time

import dagster as dg
from dagster._core.definitions.assets.graph.asset_graph import AssetGraph
from dagster._core.execution.backfill import BulkActionStatus

from zerogex_pipeline.cli.arguments import iso_date
from zerogex_pipeline.cli.progress import ProgressPrinter, backfill_counts, backfill_link
from zerogex_pipeline.definitions import build_underlying_assets
from zerogex_pipeline.defs.automation.backfills import backfill_sessions, submit_trading_day_backfill
from zerogex_pipeline.instance import get_instance
from zerogex_pipeline.settings import load_settings
from zerogex_pipeline.underlyings import resolve_underlying

ENDED = {BulkActionStatus.COMPLETED_SUCCESS, BulkActionStatus.COMPLETED_FAILED, BulkActionStatus.FAILED,
         BulkActionStatus.CANCELED, BulkActionStatus.COMPLETED}


DAEMON_HEARTBEAT_TOLERANCE_S = 90.0
"""A backfill daemon is running when its last heartbeat (every 30 s) is younger than this."""


def backfill_daemon_down(instance: dg.DagsterInstance, now: float | None = None) -> str | None:
    """Why no backfill daemon is executing backfills of ``instance`` (``None`` when one heartbeats)."""
    heartbeat = instance.get_daemon_heartbeats().get("BACKFILL")
    now = time.time() if now is None else now
    if heartbeat is None:
        return "no Dagster daemon has ever run for this instance"
    age = now - heartbeat.timestamp
    if age > DAEMON_HEARTBEAT_TOLERANCE_S:
        return f"no Dagster daemon is running for this instance (the backfill daemon's last heartbeat was {age:.0f} s ago)"
    return None


def _no_daemon_message(reason: str, instance: dg.DagsterInstance) -> str:
    home = instance.root_directory if instance.is_persistent else "the instance"
    return (f"{reason} ({home}); start one with `make ui` (dagster dev: webserver and daemon) or "
            f"`DAGSTER_HOME={home} dagster-daemon run -w workspace.yaml`, then run this again")


def _handle(args: argparse.Namespace) -> int:
    settings = load_settings()
    underlying = resolve_underlying(args.underlying) if args.underlying else settings.underlyings[0]
    sessions = backfill_sessions(args.start, args.end, first=settings.first_date)
    instance = get_instance(settings)
    down = backfill_daemon_down(instance)
    if down is not None and args.wait:  # nothing would ever run it: say so now, submit nothing
        raise RuntimeError(_no_daemon_message(down, instance))
    graph = AssetGraph.from_assets(build_underlying_assets(underlying, settings))
    title = f"{underlying.name} {sessions[0]}..{sessions[-1]}"
    backfill_id = submit_trading_day_backfill(instance, graph, underlying, sessions, settings.expirations, title=title)
    print(f"submitted backfill {backfill_id}: {title}, {len(sessions)} trading day(s) x {settings.expirations} "
          f"expiration slot(s); {backfill_link(backfill_id)}", flush=True)
    if not args.wait:
        if down is not None:
            print(f"note: {_no_daemon_message(down, instance)}", file=sys.stderr)
        print("the backfill daemon runs it (make ui); watch it under Overview > Backfills")
        return 0
    printer = ProgressPrinter()
    while True:
        backfill = instance.get_backfill(backfill_id)
        if backfill is not None:
            counts = backfill_counts(instance, backfill)
            printer.update(counts.done, counts.total, counts.failed,
                           f"{counts.running} run(s) running, backfill {counts.status.lower()}")
            if backfill.status in ENDED:
                break
        down = backfill_daemon_down(instance)
        if down is not None:  # the daemon stopped while we waited: the backfill stays queued for the next one
            raise RuntimeError(f"backfill {backfill_id} is still {backfill.status.value if backfill else 'queued'}: "
                               + _no_daemon_message(down, instance))
        time.sleep(2.0)
    counts = backfill_counts(instance, backfill)
    printer.update(counts.done, counts.total, counts.failed, "finished", force=True)
    print(f"backfill {backfill_id}: {backfill.status.value} after {printer.elapsed():.0f} s"
          + (f"; {counts.failed} partition(s) failed or blocked by a failure: {backfill_link(backfill_id)}"
             if counts.failed else ""))
    return 0 if backfill.status in (BulkActionStatus.COMPLETED_SUCCESS, BulkActionStatus.COMPLETED) else 1


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``backfill`` command."""
    p = sub.add_parser("backfill", help="submit a backfill of every asset over a date range (daemon runs it)")
    p.add_argument("--start", required=True, type=iso_date, help="first date, YYYY-MM-DD")
    p.add_argument("--end", required=True, type=iso_date, help="last date, YYYY-MM-DD")
    p.add_argument("--underlying", help="underlying name (default: the first of ZEROGEX_UNDERLYINGS)")
    p.add_argument("--wait", action="store_true", help="wait until the backfill ends; exit 1 unless it completed")
    p.set_defaults(handler=_handle)
