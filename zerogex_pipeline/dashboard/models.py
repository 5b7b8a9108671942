"""Response shapes of the levels API, for its OpenAPI document (``/api/v1/openapi.json``, ``/docs``).

The routes return these shapes as plain JSON (built in :mod:`zerogex_pipeline.dashboard.service`); the tests
validate every answer against them, so the document stays true. Units: prices and strikes USD; GEX USD per 1%
move of the underlying (dealer convention: long calls +, short puts -, net = call + put); open interest in
contracts; instants UTC ISO 8601; ``session_date`` an America/New_York trading day.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer: one line naming the input and what was expected."""

    error: str = Field(description="One-line message, e.g. \"date 'x': expected a date YYYY-MM-DD\".")


class Meta(BaseModel):
    """What this server serves."""

    underlyings: list[str]
    store: str = Field(description="duckdb (embedded) or postgres.")
    store_location: str = Field(description="File path, or PostgreSQL URL without its password.")
    convention: str
    units: dict[str, str]
    regime_rule: str
    api_version: str


class LevelsRow(_Open):
    """One levels row: every ``gex_levels`` column (``live_levels`` adds spot_ts, feed, expiration_list,
    missing, compute_ms). JSON text columns (max_pain, iv_sources, expiration_list) come parsed."""

    underlying: str
    session_date: str = Field(description="Trading day, YYYY-MM-DD (America/New_York).")
    snapshot_ts: str = Field(description="Snapshot instant, UTC ISO 8601.")
    spot: float = Field(description="USD.")
    net_gex: float = Field(description="Total net GEX, USD per 1% move.")
    call_gex: float
    put_gex: float
    net_gex_at_spot: float
    zero_gamma: float | None = Field(description="USD; null when none (see zero_gamma_reason).")
    zero_gamma_reason: str | None
    call_wall: float | None = Field(description="Strike, USD.")
    put_wall: float | None = Field(description="Strike, USD.")
    max_pain_next: float | None = Field(description="Max pain of the nearest expiration, USD.")
    max_pain: dict[str, float] | None = Field(description="{expiration: max-pain strike}, never pooled.")
    convention: str


class LatestLevels(BaseModel):
    """The newest levels, and which table they came from."""

    underlying: str
    convention: str
    units: dict[str, str]
    source: str = Field(description="live (live_levels, written by `zerogex stream`) or stored (gex_levels).")
    table: str
    feed: str | None = Field(description="simulated or tradestation (live feed, or the stored day's bars).")
    as_of: str = Field(description="Server time of the answer, UTC.")
    age_s: float = Field(description="Seconds from snapshot_ts to as_of.")
    regime: str | None = Field(description="positive, negative or zero gamma (see regime_rule).")
    regime_rule: str
    spot_vs_zero_gamma_pct: float | None = Field(description="(spot - zero_gamma) / spot x 100, %.")
    levels: LevelsRow


class IntradayLevels(BaseModel):
    """One day's levels by snapshot, oldest first."""

    underlying: str
    convention: str
    units: dict[str, str]
    session_date: str
    source: str = Field(description="stored (gex_levels) or live (live_levels).")
    table: str
    rows: list[dict[str, Any]] = Field(description="LevelsRow objects (only the asked fields with ?fields=).")


class Dates(BaseModel):
    """Stored trading days, newest first."""

    underlying: str
    dates: list[str]
    live_date: str | None = Field(description="Trading day of the newest live levels (null: none).")


class SnapshotHeader(BaseModel):
    underlying: str
    convention: str
    units: dict[str, str]
    session_date: str
    snapshot_ts: str
    spot: float
    expirations: list[str] = Field(description="Expirations of the snapshot (YYYY-MM-DD).")
    levels: dict[str, float | None] = Field(description="The snapshot's stored levels (all expirations).")


class StrikeGex(SnapshotHeader):
    """GEX by strike of one snapshot, over the selected expirations (parallel arrays by strike)."""

    expiration: str = Field(description="all, or the selected expiration YYYY-MM-DD.")
    settled_expirations: list[str] = Field(description="Expirations settled by the snapshot (not selectable).")
    selection: dict[str, float | None] = Field(description="Walls, max pain and net GEX of the selection.")
    strikes: list[float | None]
    call_gex: list[float | None] = Field(description="USD per 1% move (+).")
    put_gex: list[float | None] = Field(description="USD per 1% move (-).")
    net_gex: list[float | None]
    call_oi: list[float | None] = Field(description="Contracts.")
    put_oi: list[float | None]


class ExpirationGex(BaseModel):
    expiration: str = Field(description="YYYY-MM-DD ('YYYY-MM-DD AM' for an AM-settled SPX series).")
    days_to_expiration: int
    settled: bool = Field(description="Settled by the snapshot (its contracts no longer count; numbers null).")
    call_gex: float | None
    put_gex: float | None
    net_gex: float | None
    call_oi: float | None
    put_oi: float | None
    max_pain: float | None


class ExpirationsGex(SnapshotHeader):
    """GEX, open interest and max pain by expiration of one snapshot."""

    by_expiration: list[ExpirationGex]


class GammaProfile(SnapshotHeader):
    """Net GEX if spot moved to each level (every contract keeps its IV: sticky strike)."""

    expiration: str
    spot_levels: list[float | None] = Field(description="Hypothetical spot, USD.")
    net_gex: list[float | None] = Field(description="Unweighted profile, USD per 1% move.")
    net_gex_structural: list[float | None] = Field(description="DTE-weighted profile (zero gamma's basis).")
    zero_gamma: float | None
    zero_gamma_reason: str | None
    zero_gamma_raw: float | None
    zero_gamma_raw_reason: str | None
    net_gex_at_spot: float | None
    net_gex_at_spot_structural: float | None


class Heatmap(BaseModel):
    """Net GEX by strike (rows) and snapshot (columns) through one day."""

    underlying: str
    convention: str
    units: dict[str, str]
    session_date: str
    expiration: str
    snapshot_ts: list[str | None]
    strikes: list[float | None]
    spot: list[float | None] = Field(description="Spot at each snapshot, USD.")
    net_gex: list[list[float | None]] = Field(description="[strike][snapshot], USD per 1% move; null: no row.")


class Alerts(BaseModel):
    """The day's stored alert events (``gex_alerts`` columns)."""

    underlying: str
    convention: str
    units: dict[str, str]
    session_date: str
    alerts: list[dict[str, Any]]
