"""Applying the store's versioned migrations, and the optional TimescaleDB layout on top.

``migrate(conn, schema)`` creates the per-underlying schema and applies, under a transaction-scoped
advisory lock, every migration of :data:`~zerogex_pipeline.storage.migrations.MIGRATIONS` not yet
recorded in ``<schema>.zerogex_migrations``. Running it again is a no-op; concurrent callers wait for
each other. Tables never gain columns any other way: :func:`schema_drift` compares the live tables
with ``zerogex_pipeline.schemas`` and the IO manager refuses to write while they differ.

With the ``timescaledb`` extension installed in the database, :func:`apply_timescaledb` turns the
tables of :data:`HYPERTABLES` into hypertables on ``session_date`` (every query and every partition DELETE filters on
it, so chunk exclusion always applies), sets compression segmented by ``underlying`` (and
``expiration`` for the per-expiration tables), and adds the compression and retention policies.
Chunk intervals: 7 days for chain snapshots and surface (a SPY session at the default window is
~52,500 chain rows, ~15 MB with its index, so a chunk of 5 sessions is ~75 MB: small against memory,
~52 chunks a year, and full 1,000-row compressed batches per ``(underlying, expiration)`` segment),
35 days for bars and levels (a few hundred rows a session; 7-day chunks would leave their compressed
batches under-filled). The stream capture follows the same rule: ``captured_quotes`` is shaped like the chain
(7 days), ``captured_bars`` like the bars (35 days), and ``live_levels`` (one row every few seconds, ~4,700 a
session) takes 7 days. The measurements behind this are in docs/storage.md.

Run ``python -m zerogex_pipeline.storage.postgres_migrations --new <name>`` to write the next
migration from the difference between the declared schemas and the migrations.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from zerogex_pipeline.schemas import ALL_SCHEMAS, SQL_TYPE
from zerogex_pipeline.storage.migrations import MIGRATIONS, Migration
from zerogex_pipeline.storage.table_slices import StorageError, quote_ident

MIGRATIONS_TABLE = "zerogex_migrations"

# information_schema.columns.data_type for each declared kind.
_INFO_TYPE = {
    "text": "text",
    "date": "date",
    "timestamptz": "timestamp with time zone",
    "double": "double precision",
    "bigint": "bigint",
}


@dataclass(frozen=True)
class TimescalePolicy:
    """TimescaleDB settings (ignored without the extension).

    Attributes:
        compress_after_days: compress chunks whose ``session_date`` range is older than this (days).
        snapshot_retention_days: drop ``option_chain_snapshots`` chunks older than this (days); ``None``
            keeps raw snapshots forever. Levels, surface and bars have no retention.
    """

    compress_after_days: int = 7
    snapshot_retention_days: int | None = None


# table -> (chunk interval, segment-by columns, order-by)
HYPERTABLES: dict[str, tuple[str, str, str]] = {
    "option_chain_snapshots": ("7 days", "underlying, expiration", "snapshot_ts DESC, symbol"),
    "gex_surface": ("7 days", "underlying, expiration", "snapshot_ts DESC, strike"),
    "gex_levels": ("35 days", "underlying", "snapshot_ts DESC"),
    "underlying_bars": ("35 days", "underlying", "ts DESC"),
    "captured_quotes": ("7 days", "underlying, expiration", "snapshot_ts DESC, symbol"),
    "captured_bars": ("35 days", "underlying", "ts DESC"),
    "live_levels": ("7 days", "underlying", "snapshot_ts DESC"),
}


def _lock_key(schema: str) -> str:
    return f"zerogex:migrations:{schema}"


def applied_versions(conn: psycopg.Connection, schema: str) -> dict[int, str]:
    """Recorded migrations of ``schema`` (version -> checksum); empty when none ran yet."""
    exists = conn.execute(  # pg_catalog, not information_schema: it lists tables whatever the role's privileges
        "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
        [schema, MIGRATIONS_TABLE],
    ).fetchone()
    if not exists:
        return {}
    table = sql.Identifier(schema, MIGRATIONS_TABLE)
    rows = conn.execute(sql.SQL("SELECT version, checksum FROM {}").format(table)).fetchall()
    return {int(v): str(c) for v, c in rows}


def _check_checksums(schema: str, applied: dict[int, str], migrations: Sequence[Migration]) -> None:
    known = {m.version: m for m in migrations}
    for version, checksum in applied.items():
        m = known.get(version)
        if m is None:
            raise StorageError(
                f"{schema}: the database has migration {version}, which this build does not know; "
                "upgrade zerogex_pipeline"
            )
        if m.checksum != checksum:
            raise StorageError(
                f"{schema}: migration {version:04d}_{m.name} was edited after it was applied; "
                "add a new migration instead of changing an applied one"
            )


def migrate(conn: psycopg.Connection, schema: str, migrations: Sequence[Migration] = MIGRATIONS) -> list[int]:
    """Apply the pending migrations of ``schema`` in one transaction; returns the versions applied.

    ``conn`` must not be inside a transaction block. Raises :class:`StorageError` when an applied
    migration was edited, or the database is ahead of this build.
    """
    applied = applied_versions(conn, schema)
    conn.commit()
    _check_checksums(schema, applied, migrations)
    pending = [m for m in migrations if m.version not in applied]
    if not pending:
        return []
    try:
        return _apply_pending(conn, schema, migrations)
    except psycopg.errors.InsufficientPrivilege as exc:
        conn.rollback()
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in pending)
        raise StorageError(
            f"{schema}: {len(pending)} migration(s) pending ({names}) and role {_current_user(conn)!r} may not apply "
            f"them ({exc.diag.message_primary or exc}); migrations and the TimescaleDB layout belong to the owner: run "
            "`zerogex migrate` once with the owner's ZEROGEX_DATABASE_URL"
        ) from None


def _current_user(conn: psycopg.Connection) -> str:
    row = conn.execute("SELECT current_user").fetchone()
    return str(row[0]) if row else "?"


def _apply_pending(conn: psycopg.Connection, schema: str, migrations: Sequence[Migration]) -> list[int]:
    done: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [_lock_key(schema)])
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                "checksum TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            ).format(sql.Identifier(schema, MIGRATIONS_TABLE))
        )
        applied = applied_versions(conn, schema)  # again, under the lock
        _check_checksums(schema, applied, migrations)
        for m in sorted(migrations, key=lambda m: m.version):
            if m.version in applied:
                continue
            conn.execute(m.render(quote_ident(schema)).encode("utf-8"))
            conn.execute(
                sql.SQL("INSERT INTO {} (version, name, checksum) VALUES (%s, %s, %s)").format(
                    sql.Identifier(schema, MIGRATIONS_TABLE)
                ),
                [m.version, m.name, m.checksum],
            )
            done.append(m.version)
    return done


def timescaledb_version(conn: psycopg.Connection) -> str | None:
    """The installed ``timescaledb`` extension version in this database, or ``None``."""
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    conn.commit()
    return None if row is None else str(row[0])


DECOMPRESS_FUNCTION = "zerogex_decompress_days"
"""``<schema>.zerogex_decompress_days(hypertable, first_day, end_day)``: made by the owner with the TimescaleDB
layout, ``SECURITY DEFINER``, so a writer without ownership can re-write a partition whose chunk is already
compressed (``decompress_chunk`` needs ownership). It decompresses only chunks of hypertables in its own schema,
and only for a login role that may DELETE from the hypertable (what the re-write does anyway)."""

_DECOMPRESS_SQL = """
CREATE OR REPLACE FUNCTION {schema}.zerogex_decompress_days(hypertable regclass, first_day date, end_day date)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $fn$
DECLARE
    target record;
    n integer := 0;
BEGIN
    IF NOT has_table_privilege(session_user, hypertable, 'DELETE') THEN
        RAISE EXCEPTION 'permission denied for table %: role % may not delete from it', hypertable, session_user
            USING ERRCODE = '42501';
    END IF;
    FOR target IN
        SELECT format('%I.%I', c.chunk_schema, c.chunk_name)::regclass AS chunk
        FROM timescaledb_information.chunks c
        JOIN pg_class t ON t.oid = hypertable
        JOIN pg_namespace ns ON ns.oid = t.relnamespace
        WHERE ns.nspname = {schema_literal} AND c.hypertable_schema = ns.nspname AND c.hypertable_name = t.relname
          AND c.is_compressed
          AND (first_day IS NULL OR (c.range_start < end_day::timestamptz AND c.range_end > first_day::timestamptz))
    LOOP
        PERFORM decompress_chunk(target.chunk, if_compressed => TRUE);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$fn$
"""


@dataclass(frozen=True)
class _LayoutStep:
    """One change the TimescaleDB layout still needs: ``description`` for people, ``statements`` to make it."""

    description: str
    statements: tuple[tuple[str, tuple[object, ...]], ...]


def _layout_steps(conn: psycopg.Connection, schema: str, policy: TimescalePolicy) -> list[_LayoutStep]:
    """What :func:`apply_timescaledb` would change, read from the catalog (no DDL, no ownership needed)."""
    hypertables = {
        str(name): bool(compressed)
        for name, compressed in conn.execute(
            "SELECT hypertable_name, compression_enabled FROM timescaledb_information.hypertables "
            "WHERE hypertable_schema = %s",
            [schema],
        ).fetchall()
    }
    jobs = {
        (str(proc), str(table)): config
        for proc, table, config in conn.execute(
            "SELECT proc_name, hypertable_name, config FROM timescaledb_information.jobs "
            "WHERE hypertable_schema = %s AND proc_name IN ('policy_compression', 'policy_retention')",
            [schema],
        ).fetchall()
    }
    steps: list[_LayoutStep] = []
    for table, (interval, segment_by, order_by) in HYPERTABLES.items():
        qualified = f"{quote_ident(schema)}.{quote_ident(table)}"
        if table not in hypertables:
            steps.append(_LayoutStep(f"{table} is not a hypertable", ((
                "SELECT create_hypertable(%s::regclass, 'session_date', chunk_time_interval => %s::interval, "
                "if_not_exists => TRUE, migrate_data => TRUE)", (qualified, interval)),)))
        if not hypertables.get(table, False):
            steps.append(_LayoutStep(f"{table} has no compression settings", ((
                sql.SQL(
                    "ALTER TABLE {} SET (timescaledb.compress, timescaledb.compress_segmentby = {}, "
                    "timescaledb.compress_orderby = {})"
                ).format(sql.Identifier(schema, table), sql.Literal(segment_by), sql.Literal(order_by)).as_string(conn),
                ()),)))
        wanted = f"{policy.compress_after_days} days"
        config = jobs.get(("policy_compression", table))
        have = None if config is None else dict(config).get("compress_after")
        if have != wanted:
            statements: list[tuple[str, tuple[object, ...]]] = []
            if config is not None:
                statements.append(("SELECT remove_compression_policy(%s::regclass, if_exists => TRUE)", (qualified,)))
            statements.append(("SELECT add_compression_policy(%s::regclass, %s::interval)", (qualified, wanted)))
            steps.append(_LayoutStep(f"{table} compression policy is {have or 'none'}, configured {wanted}",
                                     tuple(statements)))
    snapshots = f"{quote_ident(schema)}.{quote_ident('option_chain_snapshots')}"
    config = jobs.get(("policy_retention", "option_chain_snapshots"))
    have = None if config is None else dict(config).get("drop_after")
    wanted_drop = None if policy.snapshot_retention_days is None else f"{policy.snapshot_retention_days} days"
    if have != wanted_drop:
        retention: list[tuple[str, tuple[object, ...]]] = []
        if config is not None:
            retention.append(("SELECT remove_retention_policy(%s::regclass, if_exists => TRUE)", (snapshots,)))
        if wanted_drop is not None:
            retention.append(("SELECT add_retention_policy(%s::regclass, %s::interval, if_not_exists => TRUE)",
                              (snapshots, wanted_drop)))
        steps.append(_LayoutStep(f"option_chain_snapshots retention is {have or 'none'}, configured "
                                 f"{wanted_drop or 'none'}", tuple(retention)))
    function = conn.execute(
        "SELECT to_regprocedure(%s)", [f"{quote_ident(schema)}.{DECOMPRESS_FUNCTION}(regclass, date, date)"]
    ).fetchone()
    if function is None or function[0] is None:
        body = _DECOMPRESS_SQL.replace("{schema_literal}", sql.Literal(schema).as_string(conn))
        steps.append(_LayoutStep(f"function {DECOMPRESS_FUNCTION} is missing",
                                 ((body.replace("{schema}", quote_ident(schema)), ()),)))
    return steps


def timescaledb_layout_gaps(conn: psycopg.Connection, schema: str, policy: TimescalePolicy) -> list[str]:
    """How ``schema``'s TimescaleDB layout differs from ``policy`` (empty when it matches); reads only."""
    gaps = [step.description for step in _layout_steps(conn, schema, policy)]
    conn.commit()
    return gaps


def hypertable_names(conn: psycopg.Connection, schema: str) -> frozenset[str]:
    """Tables of ``schema`` that are TimescaleDB hypertables (empty without the extension)."""
    if timescaledb_version(conn) is None:
        return frozenset()
    rows = conn.execute(
        "SELECT hypertable_name FROM timescaledb_information.hypertables WHERE hypertable_schema = %s", [schema]
    ).fetchall()
    conn.commit()
    return frozenset(str(r[0]) for r in rows)


def owns_tables(conn: psycopg.Connection, schema: str) -> bool:
    """Whether the connected role owns (or is a member of the owner of) every table of ``schema``'s layout."""
    row = conn.execute(
        "SELECT coalesce(bool_and(pg_has_role(current_user, c.relowner, 'USAGE')), FALSE) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = ANY(%s)",
        [schema, list(HYPERTABLES)],
    ).fetchone()
    conn.commit()
    return bool(row and row[0])


def apply_timescaledb(conn: psycopg.Connection, schema: str, policy: TimescalePolicy) -> list[str]:
    """Hypertables, compression, retention and the decompression function for ``schema`` (needs the extension).

    Reads the catalog first and runs only the statements whose result is missing, so re-applying the same
    policy changes nothing; another ``policy`` replaces the compression and retention policies. Only the
    owner of the tables may change them. Returns the changes made.

    Raises:
        StorageError: a negative age, or a role that does not own the tables.
    """
    if policy.compress_after_days < 0 or (policy.snapshot_retention_days is not None and policy.snapshot_retention_days < 1):
        raise StorageError(
            f"TimescaleDB policy for {schema!r}: compress_after_days must be >= 0 (got {policy.compress_after_days}) "
            f"and snapshot_retention_days >= 1 or null (got {policy.snapshot_retention_days})"
        )
    steps: list[_LayoutStep] = []
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [_lock_key(schema)])
            steps = _layout_steps(conn, schema, policy)
            for step in steps:
                for statement, params in step.statements:
                    conn.execute(statement.encode(), list(params) if params else None)
    except psycopg.errors.InsufficientPrivilege as exc:
        raise StorageError(
            f"{schema}: the TimescaleDB layout needs changes ({'; '.join(s.description for s in steps)}) that only "
            f"the owner of the tables may make ({exc.diag.message_primary or exc}); run `zerogex migrate` once with "
            "the owner's ZEROGEX_DATABASE_URL"
        ) from None
    return [s.description for s in steps]


def schema_drift(conn: psycopg.Connection, schema: str) -> list[str]:
    """Differences between ``schema``'s live tables and the declared schemas (empty when they agree)."""
    rows = conn.execute(  # pg_catalog sees every column, whatever the role's privileges on the table
        "SELECT c.relname, a.attname, format_type(a.atttypid, NULL), CASE WHEN a.attnotnull THEN 'NO' ELSE 'YES' END "
        "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped",
        [schema],
    ).fetchall()
    conn.commit()
    live: dict[str, dict[str, tuple[str, bool]]] = {}
    for table, column, data_type, nullable in rows:
        live.setdefault(table, {})[column] = (data_type, nullable == "YES")
    problems: list[str] = []
    for name, declared in ALL_SCHEMAS.items():
        cols = live.get(name)
        if cols is None:
            problems.append(f"table {name} is missing")
            continue
        for c in declared.columns:
            got = cols.get(c.name)
            if got is None:
                problems.append(f"{name}.{c.name} is declared but no migration adds it")
            elif got != (_INFO_TYPE[c.kind], c.nullable):
                problems.append(
                    f"{name}.{c.name}: live {got[0]}{'' if got[1] else ' NOT NULL'}, declared "
                    f"{_INFO_TYPE[c.kind]}{'' if c.nullable else ' NOT NULL'}"
                )
        for extra in sorted(set(cols) - set(declared.column_names)):
            problems.append(f"{name}.{extra} exists but is not declared")
    return problems


def pending_statements(live_columns: dict[str, set[str]]) -> list[str]:
    """``ALTER TABLE`` statements adding declared columns missing from ``live_columns`` (table -> names).

    New columns are added nullable when declared nullable; a new NOT NULL column gets no default, so
    the statement fails on a non-empty table: give it a default in the migration by hand.
    """
    out: list[str] = []
    for name, declared in ALL_SCHEMAS.items():
        have = live_columns.get(name, set())
        for c in declared.columns:
            if c.name not in have:
                out.append(
                    f"ALTER TABLE {{schema}}.{name} ADD COLUMN {c.name} {SQL_TYPE[c.kind]}"
                    f"{'' if c.nullable else ' NOT NULL'};"
                )
    return out


def migrated_columns(migrations: Sequence[Migration] = MIGRATIONS) -> dict[str, set[str]]:
    """Columns per table the migrations create, from a scan of their SQL (CREATE TABLE / ADD COLUMN).

    Only used to draft the next migration; the authoritative check is :func:`schema_drift`
    against a database.
    """
    import re

    out: dict[str, set[str]] = {}
    for m in migrations:
        for table, body in re.findall(r"CREATE TABLE \{schema\}\.(\w+) \((.*?)\n\);", m.sql, flags=re.S):
            out.setdefault(table, set()).update(
                line.split()[0] for line in body.strip().splitlines() if not line.strip().startswith("PRIMARY")
            )
        for table, column in re.findall(r"ALTER TABLE \{schema\}\.(\w+) ADD COLUMN (\w+)", m.sql):
            out.setdefault(table, set()).add(column)
    return out


def draft_migration(name: str, directory: Path | None = None) -> Path:
    """Write ``mNNNN_<name>.py`` adding the declared columns no migration adds; returns its path."""
    statements = pending_statements(migrated_columns())
    if not statements:
        raise StorageError("the migrations already create every declared column; nothing to draft")
    folder = directory or Path(__file__).parent / "migrations"
    version = max(m.version for m in MIGRATIONS) + 1
    path = folder / f"m{version:04d}_{name}.py"
    body = "\n".join(statements)
    path.write_text(f'"""{version:04d}: {name}."""\n\nSQL = """\n{body}\n"""\n')
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``--new NAME`` drafts the next migration; otherwise prints the pending statements."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--new", metavar="NAME", help="write the next migration module with this name")
    args = parser.parse_args(argv)
    if args.new:
        path = draft_migration(args.new)
        print(f"wrote {path}; add it to MIGRATIONS in zerogex_pipeline/storage/migrations/__init__.py")
        return 0
    pending = pending_statements(migrated_columns())
    print("\n".join(pending) if pending else "migrations match the declared schemas")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
