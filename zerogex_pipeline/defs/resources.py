"""Resources, one object per name, switched by the settings (dagster-open-platform style).

- ``market_data``: the data source (``simulated`` or ``tradestation``).
- ``io_manager``: the embedded DuckDB store, or PostgreSQL when ``ZEROGEX_DATABASE_URL`` is set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import dagster as dg
from pydantic import Field

from zerogex_pipeline.defs.automation.refresh_barrier import RefreshBarrier
from zerogex_pipeline.settings import TRADESTATION_CREDENTIAL_VARS, Settings, SettingsError
from zerogex_pipeline.sources.base import MarketDataSource
from zerogex_pipeline.sources.simulated import SimulatedMarket
from zerogex_pipeline.storage.duckdb_io_manager import DuckDBFrameIOManager
from zerogex_pipeline.storage.postgres_io_manager import postgres_io_manager
from zerogex_pipeline.storage.table_slices import StorageError
from zerogex_pipeline.tradestation.config import missing_credentials_message, parse_bool
from zerogex_pipeline.tradestation.errors import CredentialsError
from zerogex_pipeline.tradestation.resource import TradeStationResource


class MarketDataResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The market-data source the assets read from."""

    source: str = Field(default="simulated", description="'simulated' or 'tradestation'.")
    tradestation: TradeStationResource | None = Field(
        default=None, description="The TradeStation connection (needed when source is 'tradestation')."
    )

    def get_source(self) -> MarketDataSource:
        """The configured source adapter."""
        if self.source == "simulated":
            return SimulatedMarket()
        if self.source == "tradestation":
            if self.tradestation is None:
                raise SettingsError(missing_credentials_message(list(TRADESTATION_CREDENTIAL_VARS)))
            return self.tradestation.get_market()
        raise SettingsError(f"ZEROGEX_DATA_SOURCE: expected 'simulated' or 'tradestation', got {self.source!r}")


def build_market_data(settings: Settings, environ: Mapping[str, str] | None = None) -> MarketDataResource:
    """The ``market_data`` resource; for TradeStation, secrets are ``dg.EnvVar`` (never shown in the UI).

    Raises:
        SettingsError: the source is TradeStation and a credential variable is unset (the message names it).
    """
    if settings.data_source != "tradestation":
        return MarketDataResource(source=settings.data_source)
    env = os.environ if environ is None else environ
    missing = [v for v in TRADESTATION_CREDENTIAL_VARS if not env.get(v, "").strip()]
    if missing:
        raise SettingsError(missing_credentials_message(missing))
    try:
        sandbox = parse_bool("TRADESTATION_USE_SANDBOX", env.get("TRADESTATION_USE_SANDBOX", ""))
    except CredentialsError as exc:
        raise SettingsError(str(exc)) from None
    client_id, secret, refresh = (dg.EnvVar(v) for v in TRADESTATION_CREDENTIAL_VARS)
    return MarketDataResource(
        source="tradestation",
        tradestation=TradeStationResource(
            client_id=client_id, client_secret=secret, refresh_token=refresh, use_sandbox=sandbox,
            api_url=env.get("TRADESTATION_API_URL", "").strip(), auth_url=env.get("TRADESTATION_AUTH_URL", "").strip(),
            data_dir=str(settings.data_dir), risk_free_rate=settings.risk_free_rate,
        ),
    )


def build_resources(settings: Settings) -> dict[str, Any]:
    """The resources for ``settings``."""
    return {
        "market_data": build_market_data(settings),
        "io_manager": build_io_manager(settings),
        "refresh_barrier": RefreshBarrier(),
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
    """The storage kind badge shown in the UI: ``timescaledb`` for the production PostgreSQL store
    (hypertables when the extension is installed, the same tables on plain PostgreSQL otherwise), else
    ``duckdb`` for the embedded store."""
    return "timescaledb" if settings.database_url else "duckdb"


def source_kind(settings: Settings) -> str:
    """The data-source kind badge of the assets that call the source: ``tradestation`` or ``simulated``."""
    return settings.data_source
