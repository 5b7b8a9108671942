"""``zerogex migrate``: apply the PostgreSQL store's migrations and TimescaleDB layout, as the owner; then bring the
local Dagster instance to the date × expiration-slot partitions (see
:mod:`zerogex_pipeline.defs.automation.partition_migration`), on either store.

Schema changes (tables, columns, hypertables, compression and retention policies) belong to the role that owns
the tables. Run this once with the owner's ``ZEROGEX_DATABASE_URL`` after an upgrade; writers (SELECT, INSERT,
DELETE) and readers (SELECT) then never need ownership. Runs by the owner apply the same steps themselves.
"""

from __future__ import annotations

import argparse

from zerogex_pipeline.defs.automation.partition_migration import migrate_partitions
from zerogex_pipeline.instance import get_instance
from zerogex_pipeline.settings import load_settings
from zerogex_pipeline.storage.postgres_io_manager import describe_error, open_connection
from zerogex_pipeline.storage.postgres_migrations import (
    TimescalePolicy,
    apply_timescaledb,
    migrate,
    timescaledb_version,
)
from zerogex_pipeline.underlyings import Underlying, resolve_underlying


def _handle(args: argparse.Namespace) -> int:
    settings = load_settings()
    underlyings = [resolve_underlying(args.underlying)] if args.underlying else list(settings.underlyings)
    if settings.database_url is None:
        print(f"embedded store {settings.duckdb_path}: its tables are brought up to date at the first write or read")
    else:
        _migrate_postgres(settings.database_url, underlyings)
    instance = get_instance(settings)
    for underlying in underlyings:
        for line in migrate_partitions(instance, settings, underlying).lines():
            print(line)
    return 0


def _migrate_postgres(url: str, underlyings: list[Underlying]) -> None:
    import psycopg

    conn = open_connection(url)
    try:
        timescale = timescaledb_version(conn)
        for underlying in underlyings:
            schema = underlying.key
            applied = migrate(conn, schema)
            print(f"{schema}: " + (f"applied migrations {', '.join(f'{v:04d}' for v in applied)}" if applied
                                   else "migrations up to date"))
            if timescale is not None:
                changes = apply_timescaledb(conn, schema, TimescalePolicy())
                print(f"{schema}: TimescaleDB {timescale} layout " + ("; ".join(changes) + ": made" if changes
                                                                      else "up to date"))
    except psycopg.Error as exc:
        raise describe_error(exc, url, "migrate") from None
    finally:
        conn.close()


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``migrate`` command."""
    p = sub.add_parser("migrate", help="apply the store's migrations (PostgreSQL: as the owner) and bring the Dagster instance's partitions up to date")
    p.add_argument("--underlying", help="only this underlying's schema (default: all of ZEROGEX_UNDERLYINGS)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(handler=_handle)
