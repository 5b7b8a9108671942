"""Numbered, append-only migrations of the PostgreSQL store (one schema per underlying).

Each migration is a module ``mNNNN_<name>.py`` holding ``SQL``: statements with ``{schema}`` where
the per-underlying schema goes. They are applied in order, once, and recorded in
``<schema>.zerogex_migrations`` (version, name, checksum). Never edit an applied migration (the
checksum check refuses it); when ``zerogex_pipeline.schemas`` gains a column, add the next module
(``python -m zerogex_pipeline.storage.postgres_migrations --new <name>`` writes it from the
difference) and list it in ``MIGRATIONS``. ``test_migrations_match_declared_schemas`` fails until the
migrations and the declared schemas agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from hashlib import sha256
from types import ModuleType

from zerogex_pipeline.storage.migrations import (
    m0001_initial,
    m0002_analytics_engine_columns,
    m0003_alerts_and_backtest,
    m0004_surface_rows_per_settlement,
    m0005_stream_capture_and_live_levels,
    m0006_levels_expiration_list,
    m0007_expiration_slots,
)


@dataclass(frozen=True)
class Migration:
    """One schema version: ``version`` (1, 2, ...), a short ``name`` and the templated ``sql``."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the SQL template (detects edits of applied migrations)."""
        return sha256(self.sql.encode("utf-8")).hexdigest()

    def render(self, quoted_schema: str) -> str:
        """The SQL with ``{schema}`` replaced by ``quoted_schema`` (an already quoted identifier)."""
        return self.sql.replace("{schema}", quoted_schema)


def _from_module(module: ModuleType) -> Migration:
    stem = module.__name__.rsplit(".", 1)[-1]  # mNNNN_name
    number, _, name = stem[1:].partition("_")
    return Migration(version=int(number), name=name, sql=str(module.SQL))


MIGRATIONS: tuple[Migration, ...] = tuple(_from_module(m) for m in (m0001_initial, m0002_analytics_engine_columns, m0003_alerts_and_backtest, m0004_surface_rows_per_settlement,
                                                                     m0005_stream_capture_and_live_levels,
                                                                     m0006_levels_expiration_list,
                                                                     m0007_expiration_slots))
"""Every migration, in version order."""
