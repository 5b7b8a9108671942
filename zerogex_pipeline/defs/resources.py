"""Resources, one object per name, switched by the settings (dagster-open-platform style).

- ``market_data``: the data source (``simulated`` or ``tradestation``).
- ``io_manager``: the embedded DuckDB store, or PostgreSQL when ``ZEROGEX_DATABASE_URL`` is set.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import Field

from zerogex_pipeline.settings import Settings, SettingsError
from zerogex_pipeline.sources.base import MarketDataSource
from zerogex_pipeline.sources.simulated import SimulatedMarket
from zerogex_pipeline.storage.duckdb_io_manager import DuckDBFrameIOManager
from zerogex_pipeline.storage.postgres_io_manager import postgres_io_manager
from zerogex_pipeline.storage.table_slices import StorageError


class MarketDataResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The market-data source the assets read from."""

    source: str = Field(default="simulated", description="'simulated' or 'tradestation'.")

    def get_source(self) -> MarketDataSource:
        """The configured source adapter."""
        if self.source == "simulated":
            return SimulatedMarket()
        raise SettingsError(
            f"ZEROGEX_DATA_SOURCE: the {self.source!r} source is not available in this build; "
            "use 'simulated'"
        )


def build_resources(settings: Settings) -> dict[str, Any]:
    """The resources for ``settings``."""
    return {
        "market_data": MarketDataResource(source=settings.data_source),
        "io_manager": build_io_manager(settings),
    }


def build_io_manager(settings: Settings) -> dg.ConfigurableIOManagerFactory:
    """PostgreSQL when ``ZEROGEX_DATABASE_URL`` is set, else the embedded DuckDB file.

    Raises:
        SettingsError: the database URL is malformed (the message has the password redacted).
    """
    if settings.database_url is None:
        return DuckDBFrameIOManager(database=str(settings.duckdb_path))
    try:
        return postgres_io_manager(settings.database_url)
    except StorageError as exc:
        raise SettingsError(str(exc)) from None


def storage_kind(settings: Settings) -> str:
    """The storage kind badge shown in the UI."""
    return "postgres" if settings.database_url else "duckdb"
