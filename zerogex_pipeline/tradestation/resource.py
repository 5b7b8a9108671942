"""``TradeStationResource``: the Dagster resource over the client and the :class:`TradeStationMarket` source.

Secrets are resource fields filled with ``dg.EnvVar`` (resolved at launch, shown in the UI as the
variable name, never the value). One client per process and configuration is cached, so every asset of
a run shares the access token, budgets and HTTP connections.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr

from zerogex_pipeline.settings import DEFAULT_DATA_DIR
from zerogex_pipeline.sources.tradestation_market import TradeStationMarket
from zerogex_pipeline.tradestation.client import TradeStationClient
from zerogex_pipeline.tradestation.config import AUTH_URL, LIVE_API_URL, SIM_API_URL, TradeStationConfig

_CLIENTS: dict[tuple[Any, ...], TradeStationClient] = {}
_CLIENTS_LOCK = threading.Lock()


def _resolve(value: str) -> str:
    """``value``, or the environment value of a ``dg.EnvVar`` ("" when unset)."""
    if isinstance(value, dg.EnvVar):
        return value.get_value() or ""
    return value


class TradeStationResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """TradeStation Web API v3 connection (OAuth2 refresh-token flow).

    Set ``client_id``, ``client_secret`` and ``refresh_token`` with ``dg.EnvVar("TRADESTATION_...")``.
    """

    client_id: str = Field(description="API key (TRADESTATION_CLIENT_ID).")
    client_secret: str = Field(description="API secret (TRADESTATION_CLIENT_SECRET).")
    refresh_token: str = Field(description="OAuth refresh token (TRADESTATION_REFRESH_TOKEN).")
    use_sandbox: bool = Field(default=False, description="Use sim-api.tradestation.com (TRADESTATION_USE_SANDBOX).")
    api_url: str = Field(default="", description="API host override, e.g. the emulator (TRADESTATION_API_URL).")
    auth_url: str = Field(default="", description="Auth host override (TRADESTATION_AUTH_URL).")
    data_dir: str = Field(default=DEFAULT_DATA_DIR, description="ZEROGEX_DATA_DIR: token cache and budgets "
                          "live in <data_dir>/tradestation.")
    risk_free_rate: float = Field(default=0.04, description="Annualized r used to solve IVs from option prices.")
    stream_idle_timeout_s: float = Field(default=30.0, description="Seconds without any bytes (heartbeats come "
                                         "every 5 s) before a stream is reconnected.")
    stream_starvation_s: float = Field(default=120.0, description="Seconds of heartbeats without data before a "
                                       "stream is reconnected.")
    stream_max_reconnects: int = Field(default=8, description="Consecutive failed stream connections (no data) "
                                       "before the stream fails (a transient error: the step retries).")
    _client: TradeStationClient | None = PrivateAttr(default=None)

    def config(self) -> TradeStationConfig:
        """The client configuration (raises ``CredentialsError`` naming missing variables).

        Inside a run the fields hold resolved values; outside one (e.g. ``zerogex run`` listing
        expirations before launching runs) ``dg.EnvVar`` fields are read from the environment here.
        """
        api = self.api_url.strip() or (SIM_API_URL if self.use_sandbox else LIVE_API_URL)
        return TradeStationConfig(
            client_id=_resolve(self.client_id), client_secret=_resolve(self.client_secret),
            refresh_token=_resolve(self.refresh_token),
            api_url=api.rstrip("/"), auth_url=(self.auth_url.strip() or AUTH_URL).rstrip("/"),
            data_dir=Path(self.data_dir), stream_idle_timeout_s=self.stream_idle_timeout_s,
            stream_starvation_s=self.stream_starvation_s, stream_max_reconnects=self.stream_max_reconnects,
        )

    def get_client(self) -> TradeStationClient:
        """The process-wide client for this configuration."""
        cfg = self.config()
        key = (cfg.client_id, cfg.client_secret, cfg.refresh_token, cfg.api_url, cfg.auth_url, str(cfg.data_dir),
               cfg.stream_idle_timeout_s, cfg.stream_starvation_s, cfg.stream_max_reconnects)
        with _CLIENTS_LOCK:
            client = _CLIENTS.get(key)
            if client is None:
                client = TradeStationClient(cfg)
                _CLIENTS[key] = client
        return client

    def get_market(self) -> TradeStationMarket:
        """The data source over this connection."""
        return TradeStationMarket(self.get_client(), risk_free_rate=self.risk_free_rate)
