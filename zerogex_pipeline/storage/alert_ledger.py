"""The announcement ledger: which alert events were ever announced, and when.

One table per underlying schema, ``gex_alert_ledger (event_id PRIMARY KEY, underlying, session_date,
kind, announced_at TIMESTAMPTZ (UTC), run_id)``. Its DDL has one source, migration 0003
(:mod:`zerogex_pipeline.storage.migrations.m0003_alerts_and_backtest`): PostgreSQL gets the table when
the schema is migrated; DuckDB creates it on first use from the same ``CREATE TABLE`` statement, with
``IF NOT EXISTS`` added (:data:`LEDGER_DDL`, :func:`duckdb_ledger_ddl`). It is append-only and
independent of the ``gex_alerts`` partition, which the IO manager replaces at every materialization.

An event is announced only by the run that **claims** it: ``INSERT ... ON CONFLICT (event_id) DO
NOTHING RETURNING event_id`` in one statement, so of two runs racing on the same day exactly one gets
each id, and a re-run, a refresh or a backfill finds the id taken. The claim is committed before the
announcement is made, so delivery is at most once: a crash between the claim and the log line or the
webhook POST loses that announcement rather than repeating it.
"""

from __future__ import annotations

import datetime as dt
import time

import pandas as pd

from zerogex_pipeline.settings import Settings
from zerogex_pipeline.storage.migrations import m0003_alerts_and_backtest
from zerogex_pipeline.storage.store_session import StoreConflictError, StoreSession, store_session
from zerogex_pipeline.storage.table_slices import StorageError, quote_ident

LEDGER_TABLE = "gex_alert_ledger"
CONFLICT_RETRIES = 20


def _ledger_statement(migration_sql: str) -> str:
    """The ``CREATE TABLE {schema}.gex_alert_ledger (...)`` statement of ``migration_sql``, verbatim
    (without its ``;``)."""
    head = f"CREATE TABLE {{schema}}.{LEDGER_TABLE} ("
    found = [s.strip() for s in migration_sql.split(";") if s.strip().startswith(head)]
    if len(found) != 1:
        raise StorageError(f"migration 0003: expected one {head!r} statement, found {len(found)}")
    return found[0]


LEDGER_DDL = _ledger_statement(m0003_alerts_and_backtest.SQL)
"""The ledger's ``CREATE TABLE`` as migration 0003 holds it (``{schema}`` where the quoted schema goes)."""


def duckdb_ledger_ddl(quoted_schema: str) -> str:
    """:data:`LEDGER_DDL` for DuckDB: ``CREATE TABLE IF NOT EXISTS`` in ``quoted_schema`` (already quoted)."""
    return LEDGER_DDL.replace("CREATE TABLE ", "CREATE TABLE IF NOT EXISTS ", 1).replace("{schema}", quoted_schema)


def ensure_ledger(session: StoreSession) -> None:
    """Create the ledger table on DuckDB if missing (PostgreSQL gets it from migration 0003)."""
    if session.kind == "duckdb":
        schema = quote_ident(session.schema)
        session.rows(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        session.rows(duckdb_ledger_ddl(schema))


def claim(session: StoreSession, events: pd.DataFrame, announced_at: pd.Timestamp, run_id: str) -> set[str]:
    """Record ``events`` (``event_id, underlying, session_date, kind``) as announced now; return the ids
    this call claimed (those no earlier run had)."""
    if events.empty:
        return set()
    ensure_ledger(session)
    when = pd.Timestamp(announced_at).tz_convert("UTC").to_pydatetime()
    values: list[object] = []
    # one insertion order (by id) for every run, so two PostgreSQL transactions never wait on each other in a cycle
    for e in events.sort_values("event_id").itertuples(index=False):
        values += [str(e.event_id), str(e.underlying), pd.Timestamp(e.session_date).date(), str(e.kind), when, run_id]
    placeholders = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(events))
    rows = session.rows(
        f"INSERT INTO {session.table(LEDGER_TABLE)} (event_id, underlying, session_date, kind, announced_at, run_id) "
        f"VALUES {placeholders} ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
        values,
    )
    return {str(r[0]) for r in rows}


def announced(session: StoreSession, session_date: dt.date) -> dict[str, pd.Timestamp]:
    """``event_id -> announced_at`` (UTC) of every event of ``session_date`` announced so far."""
    if not session.has_table(LEDGER_TABLE):
        return {}
    rows = session.rows(
        f"SELECT event_id, announced_at FROM {session.table(LEDGER_TABLE)} WHERE session_date = %s",
        [session_date],
    )
    return {str(event): _utc(when) for event, when in rows}


def _utc(value: object) -> pd.Timestamp:
    ts = pd.Timestamp(value)  # type: ignore[arg-type]
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def claim_and_read(
    settings: Settings, schema: str, events: pd.DataFrame, session_date: dt.date, announce: bool,
    now: pd.Timestamp, run_id: str,
) -> tuple[set[str], dict[str, pd.Timestamp]]:
    """In one transaction: claim ``events`` when ``announce`` (else claim nothing), then read the
    ``event_id -> announced_at`` of ``session_date``. Returns ``(claimed ids, announced times)``.

    On DuckDB, two transactions of one process inserting the same ids conflict instead of waiting; the
    loser is rolled back and retried (up to ``CONFLICT_RETRIES`` times, 50 ms apart), and then finds the
    ids taken. PostgreSQL's ``ON CONFLICT DO NOTHING`` waits for the other transaction by itself (a
    deadlock or serialization failure, not expected with the sorted inserts, is retried the same way).
    """
    for attempt in range(CONFLICT_RETRIES + 1):
        try:
            with store_session(settings, schema, create=True) as session:
                if session is None:
                    raise StoreConflictError(f"{schema}.{LEDGER_TABLE}: the store could not be opened")
                claimed = claim(session, events, now, run_id) if announce else set()
                return claimed, announced(session, session_date)
        except StoreConflictError:
            if attempt == CONFLICT_RETRIES:
                raise
            time.sleep(0.05)
    raise AssertionError("unreachable")  # the loop returns or raises
