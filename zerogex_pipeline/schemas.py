"""Column schemas of every stored asset: one source of truth for pandas dtypes, SQL types and docs.

Conventions: timestamps are tz-aware UTC in frames and ``TIMESTAMPTZ`` in storage (shown in
America/New_York); dates (``session_date``, ``expiration``) are naive midnight ``datetime64[ns]`` in
frames and ``DATE`` in storage. Money is USD. Exposures follow the dealer sign convention of
``analytics`` (calls +, puts -; net = call + put).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

import dagster as dg
import numpy as np
import pandas as pd

_PANDAS_DTYPE = {
    "text": "string",
    "date": "datetime64[ns]",
    "timestamptz": "datetime64[ns, UTC]",
    "double": "float64",
    "bigint": "int64",
}
_RESOLVED_DTYPE = {kind: pd.api.types.pandas_dtype(d) for kind, d in _PANDAS_DTYPE.items()}
SQL_TYPE = {
    "text": "TEXT",
    "date": "DATE",
    "timestamptz": "TIMESTAMPTZ",
    "double": "DOUBLE PRECISION",
    "bigint": "BIGINT",
}


class SchemaError(ValueError):
    """A frame does not match its asset's column schema."""


@dataclass(frozen=True)
class Column:
    """One column: ``kind`` is a key of ``SQL_TYPE``; ``description`` states the unit."""

    name: str
    kind: str
    description: str
    nullable: bool = False


@dataclass(frozen=True)
class AssetSchema:
    """Columns of one asset's table, its primary key and its partition columns."""

    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def table_schema(self) -> dg.TableSchema:
        """The Dagster column schema shown in the UI."""
        return dg.TableSchema(
            columns=[
                dg.TableColumn(
                    name=c.name,
                    type=SQL_TYPE[c.kind],
                    description=c.description,
                    constraints=dg.TableColumnConstraints(nullable=c.nullable),
                )
                for c in self.columns
            ]
        )

    def empty_frame(self) -> pd.DataFrame:
        """A zero-row frame with every column in its declared dtype (a fresh copy: callers may add to it)."""
        return _empty_frame(self).copy()

    def conform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Return ``frame`` with exactly this schema's columns, in order, in their declared dtypes.

        Raises:
            SchemaError: a column is missing, or a non-nullable column holds nulls.
        """
        missing = [c for c in self.column_names if c not in frame.columns]
        if missing:
            raise SchemaError(f"{self.name}: missing columns {missing}; expected {self.column_names}")
        out = pd.DataFrame(index=pd.RangeIndex(len(frame)))
        for col in self.columns:
            out[col.name] = _cast(frame[col.name].reset_index(drop=True), col, self.name)
        return out


@functools.cache
def _empty_frame(schema: AssetSchema) -> pd.DataFrame:
    # conforming an empty frame costs ~40 ms (a dtype conversion per column); it is asked for per partition
    return schema.conform(pd.DataFrame({c.name: [] for c in schema.columns}))


def _cast(values: pd.Series, col: Column, table: str) -> pd.Series:
    dtype = _PANDAS_DTYPE[col.kind]
    try:
        if col.kind == "timestamptz":
            converted = pd.to_datetime(values, utc=True).astype(dtype)
        elif col.kind == "date":
            stamps = pd.to_datetime(values)
            if isinstance(stamps.dtype, pd.DatetimeTZDtype):
                stamps = stamps.dt.tz_convert("America/New_York").dt.tz_localize(None)
            converted = stamps.dt.normalize().astype(dtype)
        elif col.kind == "bigint":
            if values.isna().any():
                raise SchemaError(f"{table}.{col.name}: nulls in an integer column")
            converted = values.astype(np.int64)
        elif values.dtype == _RESOLVED_DTYPE[col.kind]:  # the exact dtype ("string" alone also matches NaN strings)
            converted = values
        else:
            converted = values.astype(dtype)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, SchemaError):
            raise
        raise SchemaError(f"{table}.{col.name}: cannot convert to {col.kind}: {exc}") from None
    if not col.nullable and col.kind != "bigint" and converted.isna().any():
        raise SchemaError(f"{table}.{col.name}: nulls in a non-nullable column")
    return converted


def _cols(*specs: tuple[str, str, str] | tuple[str, str, str, bool]) -> tuple[Column, ...]:
    return tuple(Column(*s) for s in specs)


_KEY_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("underlying", "text", "Underlying name (SPY, SPX, QQQ)."),
    ("session_date", "date", "NYSE trading day (America/New_York) the row belongs to."),
)

UNDERLYING_BARS = AssetSchema(
    name="underlying_bars",
    columns=_cols(
        *_KEY_COLUMNS,
        ("ts", "timestamptz", "Bar end instant (UTC; the bar covers the preceding bar interval)."),
        ("open", "double", "Open price, USD."),
        ("high", "double", "High price, USD."),
        ("low", "double", "Low price, USD."),
        ("close", "double", "Close price, USD."),
        ("volume", "bigint", "Shares traded in the bar."),
        ("source", "text", "Data source: simulated or tradestation."),
    ),
    primary_key=("session_date", "ts"),
)

_SLOT_COLUMN = ("expiration_slot", "bigint", "k of the expiration: the k-th nearest expiration listed on the session "
                "date (1 = nearest, 0DTE included); the partition's second dimension.")

OPTION_CHAIN_SNAPSHOTS = AssetSchema(
    name="option_chain_snapshots",
    columns=_cols(
        *_KEY_COLUMNS,
        ("expiration", "date", "Option expiration date."),
        _SLOT_COLUMN,
        ("snapshot_ts", "timestamptz", "Snapshot instant (UTC)."),
        ("symbol", "text", "Option symbol in TradeStation form, e.g. 'SPY 250117C600'."),
        ("option_type", "text", "'C' for call, 'P' for put."),
        ("strike", "double", "Strike price, USD."),
        ("settlement", "text", "'PM' (16:00 ET on expiration) or 'AM' (09:30 ET, SPX monthlies)."),
        ("bid", "double", "Best bid, USD per share (0 when no bid; 0 in rows rebuilt from bar closes, which have no quote)."),
        ("ask", "double", "Best ask, USD per share (0 in rows rebuilt from bar closes)."),
        ("last", "double", "Last trade price, USD per share (null before the first trade).", True),
        ("mid", "double", "(bid + ask) / 2, USD per share; the bar close in rows rebuilt from bar closes (bid = ask = 0)."),
        ("volume", "bigint", "Contracts traded so far in the session."),
        ("open_interest", "bigint", "Open interest, contracts (as of the prior close)."),
        ("iv", "double", "Vendor implied volatility, annualized decimal (null when not given).", True),
        ("delta", "double", "Vendor delta per share (null when not given).", True),
        ("gamma", "double", "Vendor gamma per share per USD (null when not given).", True),
        ("vega", "double", "Vendor vega, USD per 1 vol point (null when not given).", True),
        ("theta", "double", "Vendor theta, USD per calendar day (null when not given).", True),
        ("spot", "double", "Underlying price at the snapshot, USD."),
        ("spot_ts", "timestamptz", "Instant of the underlying price used as spot (UTC)."),
        ("source", "text", "Data source: simulated or tradestation."),
        ("origin", "text", "How the row was obtained: 'capture' (live quotes captured by `zerogex stream` at the "
         "snapshot instant) or 'historical' (rebuilt afterwards by the source's historical path: bar closes on "
         "TradeStation, the model on the simulated market)."),
    ),
    primary_key=("session_date", "expiration", "snapshot_ts", "symbol"),
)

CHAIN_QUOTES = AssetSchema(
    name="chain_quotes",
    columns=tuple(c for c in OPTION_CHAIN_SNAPSHOTS.columns if c.name != "expiration_slot"),
    primary_key=OPTION_CHAIN_SNAPSHOTS.primary_key,
)
"""Chain rows as a data source returns them: ``option_chain_snapshots`` without ``expiration_slot`` (a source knows
the expiration it was asked for, not which slot of the day it fills). Not a stored table."""

CAPTURED_QUOTES = AssetSchema(
    name="captured_quotes",
    columns=tuple(c for c in CHAIN_QUOTES.columns if c.name != "origin") + _cols(
        ("quote_ts", "timestamptz", "Instant the contract's newest stream update arrived (UTC, engine clock); "
         "the state is current as of the snapshot instant because its stream was live then."),
        ("stream", "text", "Stream that delivered the contract: 'chain' (option-chain stream, vendor IV and "
         "greeks) or 'quotes' (quote stream for strikes beyond the chain stream's proximity cap; no vendor IV)."),
    ),
    primary_key=("session_date", "expiration", "snapshot_ts", "symbol"),
)

CAPTURED_BARS = AssetSchema(
    name="captured_bars",
    columns=UNDERLYING_BARS.columns,
    primary_key=UNDERLYING_BARS.primary_key,
)

GEX_SURFACE = AssetSchema(
    name="gex_surface",
    columns=_cols(
        *_KEY_COLUMNS,
        ("expiration", "date", "Option expiration date."),
        _SLOT_COLUMN,
        ("snapshot_ts", "timestamptz", "Snapshot instant (UTC)."),
        ("strike", "double", "Strike price, USD."),
        ("spot", "double", "Underlying price at the snapshot, USD."),
        ("time_to_expiry", "double", "Years (365-day) from snapshot to the settlement instant."),
        ("call_oi", "bigint", "Call open interest, contracts."),
        ("put_oi", "bigint", "Put open interest, contracts."),
        ("call_iv", "double", "Call implied volatility used (annualized; null = excluded).", True),
        ("put_iv", "double", "Put implied volatility used (annualized; null = excluded).", True),
        ("call_gamma", "double", "Call BSM gamma per share per USD.", True),
        ("put_gamma", "double", "Put BSM gamma per share per USD.", True),
        ("call_gex", "double", "Call GEX, USD per 1% move of the underlying (dealer long calls: +)."),
        ("put_gex", "double", "Put GEX, USD per 1% move (dealer short puts: -)."),
        ("net_gex", "double", "call_gex + put_gex, USD per 1% move."),
        ("rate", "double", "Risk-free rate r used (annualized, continuous)."),
        ("dividend_yield", "double", "Dividend yield q used (annualized, continuous)."),
        ("call_volume", "bigint", "Call volume so far in the session, contracts.", True),
        ("put_volume", "bigint", "Put volume so far in the session, contracts.", True),
        ("call_gex_volume", "double", "Call GEX with volume instead of OI, USD per 1% move (+).", True),
        ("put_gex_volume", "double", "Put GEX with volume instead of OI, USD per 1% move (-).", True),
        ("net_gex_volume", "double", "call_gex_volume + put_gex_volume, USD per 1% move.", True),
        ("call_dex", "double", "Call DEX, sign·Δ·OI·100·S, USD of underlying (+ convention).", True),
        ("put_dex", "double", "Put DEX, -Δ·OI·100·S, USD of underlying (Δ_put < 0, so >= 0).", True),
        ("net_dex", "double", "call_dex + put_dex, USD.", True),
        ("call_vex", "double", "Call VEX, sign·vanna·OI·100·S·0.01, USD per vol point.", True),
        ("put_vex", "double", "Put VEX, USD per vol point (sign -).", True),
        ("net_vex", "double", "call_vex + put_vex, USD per vol point.", True),
        ("call_cex", "double", "Call CEX, sign·charm·OI·100·S/365, USD per calendar day.", True),
        ("put_cex", "double", "Put CEX, USD per calendar day (sign -).", True),
        ("net_cex", "double", "call_cex + put_cex, USD per calendar day.", True),
        ("call_iv_source", "text", "Call IV source: vendor, mid, last or none.", True),
        ("put_iv_source", "text", "Put IV source: vendor, mid, last or none.", True),
        ("t_convention", "text", "Time-to-expiry convention used.", True),
        ("settlement", "text", "'PM' (16:00 ET) or 'AM' (09:30 ET, SPX monthlies): one row per series, so an "
         "SPX AM and PM monthly sharing a date and strike keep their own time to expiry."),
    ),
    primary_key=("session_date", "expiration", "snapshot_ts", "strike", "settlement"),
)

GEX_LEVELS = AssetSchema(
    name="gex_levels",
    columns=_cols(
        *_KEY_COLUMNS,
        ("snapshot_ts", "timestamptz", "Snapshot instant (UTC)."),
        ("spot", "double", "Underlying price at the snapshot, USD."),
        ("net_gex", "double", "Total net GEX over the day's expirations, USD per 1% move."),
        ("call_gex", "double", "Total call GEX, USD per 1% move."),
        ("put_gex", "double", "Total put GEX, USD per 1% move."),
        ("net_gex_at_spot", "double", "Net GEX read off the gamma profile at spot, USD per 1% move."),
        ("zero_gamma", "double", "Spot level where the gamma profile crosses zero, USD (null: none).", True),
        ("zero_gamma_reason", "text", "Why zero_gamma is null (null when it was found).", True),
        ("call_wall", "double", "Strike at or above spot with the largest call GEX, USD.", True),
        ("call_wall_gex", "double", "Call GEX at the call wall, USD per 1% move.", True),
        ("put_wall", "double", "Strike at or below spot with the largest |put GEX|, USD.", True),
        ("put_wall_gex", "double", "Put GEX at the put wall, USD per 1% move.", True),
        ("expirations", "bigint", "Number of expirations aggregated (those of expiration_list)."),
        ("contracts", "bigint", "Number of contracts with a usable IV that entered the numbers."),
        ("rate", "double", "Risk-free rate r used."),
        ("dividend_yield", "double", "Dividend yield q used."),
        ("convention", "text", "Sign and aggregation convention name."),
        ("net_gex_at_spot_structural", "double", "DTE-weighted profile at spot, USD per 1% move.", True),
        ("zero_gamma_raw", "double", "Crossing nearest spot of the unweighted profile, USD (null: none).", True),
        ("zero_gamma_raw_reason", "text", "Why zero_gamma_raw is null.", True),
        ("abs_gamma_strike", "double", "Strike with the largest |call GEX| + |put GEX|, USD.", True),
        ("abs_gamma_gex", "double", "|call GEX| + |put GEX| at the abs-gamma strike, USD per 1% move.", True),
        ("net_dex", "double", "Total net DEX, USD of underlying.", True),
        ("net_vex", "double", "Total net VEX, USD per vol point.", True),
        ("net_cex", "double", "Total net CEX, USD per calendar day.", True),
        ("call_gex_volume", "double", "Total call volume-GEX, USD per 1% move.", True),
        ("put_gex_volume", "double", "Total put volume-GEX, USD per 1% move.", True),
        ("net_gex_volume", "double", "Total net volume-GEX, USD per 1% move.", True),
        ("max_pain_next", "double", "Max pain of the nearest expiration, USD.", True),
        ("max_pain", "text", "JSON {expiration: max-pain strike} per expiration (never pooled).", True),
        ("flip_dte_1", "double", "Structural flip with DTE reference 1 day, USD.", True),
        ("flip_dte_3", "double", "Structural flip with DTE reference 3 days, USD.", True),
        ("flip_dte_5", "double", "Structural flip with DTE reference 5 days (= zero_gamma), USD.", True),
        ("flip_dte_10", "double", "Structural flip with DTE reference 10 days, USD.", True),
        ("flip_dte_20", "double", "Structural flip with DTE reference 20 days, USD.", True),
        ("flip_dte_60", "double", "Structural flip with DTE reference 60 days, USD.", True),
        ("iv_sources", "text", "JSON counts of IV sources (vendor, mid, last, none) over contract lines.", True),
        ("coverage", "double", "Share of contracts with OI > 0 that have a usable IV.", True),
        ("t_convention", "text", "Time-to-expiry convention used.", True),
        ("expiration_list", "text", "JSON list of the expirations (YYYY-MM-DD) the levels aggregate."),
    ),
    primary_key=("session_date", "snapshot_ts"),
)

LIVE_LEVELS = AssetSchema(
    name="live_levels",
    columns=tuple(c for c in GEX_LEVELS.columns) + _cols(
        ("spot_ts", "timestamptz", "Instant of the underlying price used as spot (UTC)."),
        ("feed", "text", "Live feed: tradestation (streams) or simulated (the simulated market replayed)."),
        ("missing", "text", "What the levels lack at this instant (a stream not live, a window not covered); "
         "null when complete.", True),
        ("compute_ms", "double", "Milliseconds from the stream state to the levels (before the write)."),
    ),
    primary_key=("session_date", "snapshot_ts"),
)

GEX_ALERTS = AssetSchema(
    name="gex_alerts",
    columns=_cols(
        *_KEY_COLUMNS,
        ("event_id", "text", "Deterministic id 'underlying|date|kind|snapshot_ts' (one event per kind and snapshot)."),
        ("snapshot_ts", "timestamptz", "Snapshot instant (UTC) at which the event is seen."),
        ("kind", "text", "zero_gamma_cross, call_wall_breach, put_wall_breach or net_gex_sign_change."),
        ("direction", "text", "'up' (spot moved above the level / net GEX turned positive) or 'down'."),
        ("spot", "double", "Spot at the snapshot, USD."),
        ("level", "double", "The level crossed, USD (zero gamma, the previous snapshot's wall; 0 for net GEX)."),
        ("value_before", "double", "Previous snapshot's level (USD) or net GEX (USD per 1% move)."),
        ("value_after", "double", "This snapshot's level (USD; null when none) or net GEX (USD per 1% move).", True),
        ("spot_before", "double", "Spot at the previous snapshot, USD."),
        ("previous_snapshot_ts", "timestamptz", "Previous snapshot instant (UTC)."),
        ("message", "text", "Human-readable announcement text."),
        ("announced_at", "timestamptz", "When the event was announced (UTC); null: never (past session).", True),
    ),
    primary_key=("session_date", "event_id"),
)

GEX_REGIME_BACKTEST = AssetSchema(
    name="gex_regime_backtest",
    columns=_cols(
        *_KEY_COLUMNS,
        ("open_snapshot_ts", "timestamptz", "First levels snapshot of the day (UTC), the regime's reading."),
        ("regime", "text", "Net GEX sign at the open: 'positive', 'negative' or 'zero'."),
        ("spot_open", "double", "Spot at the first snapshot, USD."),
        ("net_gex_open", "double", "Net GEX at the first snapshot, USD per 1% move."),
        ("zero_gamma_open", "double", "Zero gamma at the first snapshot, USD (null: none).", True),
        ("distance_to_flip_pct", "double", "(spot - zero gamma) / spot x 100 at the open, % (+: above).", True),
        ("day_open", "double", "Open of the day's first bar, USD."),
        ("day_high", "double", "Highest bar high of the day, USD."),
        ("day_low", "double", "Lowest bar low of the day, USD."),
        ("day_close", "double", "Close of the day's last bar, USD."),
        ("realized_range_pct", "double", "(day_high - day_low) / day_open x 100, %."),
        ("previous_session_date", "date", "Previous stored session with bars (null: none).", True),
        ("previous_close", "double", "Close of the previous stored session, USD.", True),
        ("close_to_close_pct", "double", "(day_close / previous_close - 1) x 100, %.", True),
    ),
    primary_key=("session_date",),
)

ALL_SCHEMAS: dict[str, AssetSchema] = {
    s.name: s
    for s in (UNDERLYING_BARS, OPTION_CHAIN_SNAPSHOTS, GEX_SURFACE, GEX_LEVELS, GEX_ALERTS, GEX_REGIME_BACKTEST,
              CAPTURED_QUOTES, CAPTURED_BARS, LIVE_LEVELS)
}


def schema_for(table: str) -> AssetSchema | None:
    """The schema of a stored table by its name, or ``None`` for tables without one."""
    return ALL_SCHEMAS.get(table)


def require_columns(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    """Raise :class:`SchemaError` naming ``what`` when ``frame`` lacks any of ``columns``."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SchemaError(f"{what}: missing columns {missing}")
