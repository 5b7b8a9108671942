"""What the levels API and the live screen answer, as JSON-ready dicts (no HTTP here).

Numbers come from the store (:class:`~zerogex_pipeline.storage.dashboard_queries.DashboardStore`) and, for a
snapshot's GEX by strike, by expiration and its gamma profile, from the same pure computation the
``gex_levels`` asset runs on the stored surface (:func:`~zerogex_pipeline.analytics.levels.chain_from_surface`
then :func:`~zerogex_pipeline.analytics.engine.compute_product`), so the walls, max pain and zero gamma shown
beside a chart are the stored ones.

Conventions (stated in every payload): dealers long calls (+), short puts (-), net = call + put; GEX in USD per
1% move of the underlying; prices and strikes in USD; instants in UTC (ISO 8601, ``Z``); trading days
(``session_date``) are America/New_York dates. A parameter that is malformed raises :class:`BadRequestError` (400),
data that is not stored raises :class:`NotFoundError` (404); a store that cannot be read raises
:class:`~zerogex_pipeline.storage.table_slices.StorageError` (the app answers 503). Each carries one line naming
the input and what was expected.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from zerogex_pipeline import market_calendar
from zerogex_pipeline.analytics import CONVENTION
from zerogex_pipeline.analytics.engine import Product, compute_product, drop_settled
from zerogex_pipeline.analytics.levels import chain_from_surface
from zerogex_pipeline.schemas import GEX_ALERTS, GEX_LEVELS, LIVE_LEVELS, AssetSchema
from zerogex_pipeline.settings import Settings
from zerogex_pipeline.storage.dashboard_queries import DashboardStore
from zerogex_pipeline.underlyings import Underlying, UnknownUnderlyingError, resolve_underlying

UNITS: dict[str, str] = {
    "prices": "USD (spot, strikes, zero gamma, walls, max pain)",
    "gex": "USD per 1% move of the underlying (call_gex, put_gex, net_gex, *_gex)",
    "open_interest": "contracts (100 shares each)",
    "times": "UTC, ISO 8601 (session_date: America/New_York trading day)",
    "age_s": "seconds",
}
REGIME_RULE = ("positive or negative gamma by the sign of net_gex (total net GEX over the tracked expirations, "
               "dealer convention), as in gex_regime_backtest; spot_vs_zero_gamma_pct = (spot - zero_gamma) / "
               "spot x 100")
LATEST_SOURCES = ("auto", "live", "stored")
INTRADAY_SOURCES = ("stored", "live")
JSON_COLUMNS = {"max_pain", "iv_sources", "expiration_list"}


class ApiError(Exception):
    """An answer other than 200, with its HTTP status and a one-line message."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequestError(ApiError):
    """A malformed or unknown parameter (HTTP 400)."""

    status = 400


class NotFoundError(ApiError):
    """Well-formed, but nothing is stored for it (HTTP 404)."""

    status = 404


# ---------------------------------------------------------------------------------------------- parameters
def parse_date(text: str | None, name: str) -> dt.date | None:
    """``YYYY-MM-DD`` (``None`` stays ``None``)."""
    if text is None or text == "":
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise BadRequestError(f"{name} {text!r}: expected a date YYYY-MM-DD") from None


def parse_instant(text: str | None, name: str) -> pd.Timestamp | None:
    """An ISO 8601 instant as UTC; without an offset it is read as America/New_York wall time."""
    if text is None or text == "":
        return None
    try:
        ts = pd.Timestamp(text)
    except (ValueError, TypeError):
        ts = None
    if ts is None or ts is pd.NaT or pd.isna(ts):
        raise BadRequestError(f"{name} {text!r}: expected an ISO 8601 time such as 2025-01-15T15:30:00Z "
                         "(without an offset: America/New_York)")
    if ts.tzinfo is None:
        ts = ts.tz_localize(market_calendar.NEW_YORK)
    return ts.tz_convert("UTC")


def parse_choice(text: str | None, name: str, choices: Sequence[str]) -> str:
    """One of ``choices`` (the first when ``text`` is empty)."""
    if text is None or text == "":
        return choices[0]
    if text not in choices:
        raise BadRequestError(f"{name} {text!r}: expected one of {', '.join(choices)}")
    return text


def parse_fields(text: str | None, schema: AssetSchema) -> list[str] | None:
    """A comma-separated subset of ``schema``'s columns (``None``: all)."""
    if text is None or text == "":
        return None
    fields = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in fields if f not in schema.column_names]
    if unknown or not fields:
        raise BadRequestError(f"fields {text!r}: unknown column(s) {', '.join(unknown) or '(none given)'}; "
                         f"expected a comma-separated subset of {', '.join(schema.column_names)}")
    return fields


# ---------------------------------------------------------------------------------------------- JSON values
def iso(ts: Any) -> str | None:
    """``2025-01-15T20:00:00Z`` (``None`` for a missing instant)."""
    if ts is None or pd.isna(ts):
        return None
    return pd.Timestamp(ts).tz_convert("UTC").isoformat().replace("+00:00", "Z")


def number(value: Any) -> float | None:
    """A finite float, or ``None`` for NaN/null."""
    if value is None or value is pd.NA:
        return None
    out = float(value)
    return out if math.isfinite(out) else None


def numbers(values: Iterable[Any]) -> list[float | None]:
    """:func:`number` of each value."""
    return [number(v) for v in values]


def _kind_of(schema: AssetSchema) -> dict[str, str]:
    return {c.name: c.kind for c in schema.columns}


_KINDS = {s.name: _kind_of(s) for s in (GEX_LEVELS, LIVE_LEVELS, GEX_ALERTS)}


def records(frame: pd.DataFrame, schema: AssetSchema, fields: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Rows of ``frame`` (in ``schema``) as JSON-ready dicts; JSON text columns are parsed into objects."""
    kinds = _KINDS.get(schema.name) or _kind_of(schema)
    names = list(fields) if fields is not None else schema.column_names
    if len(frame) == 1:  # the latest-levels path: one row, read at once (per-column access costs ms)
        values = dict(zip(frame.columns, frame.iloc[0].tolist(), strict=True))
        return [{name: _value(values[name], kinds[name], name) for name in names}]
    columns: dict[str, list[Any]] = {}
    for name in names:
        kind = kinds[name]
        values = frame[name]
        if kind == "timestamptz":
            columns[name] = [iso(v) for v in values]
        elif kind == "date":
            columns[name] = [None if pd.isna(v) else f"{pd.Timestamp(v):%Y-%m-%d}" for v in values]
        elif kind == "double":
            columns[name] = numbers(values.to_numpy(np.float64))
        elif kind == "bigint":
            columns[name] = [int(v) for v in values]
        elif name in JSON_COLUMNS:
            columns[name] = [None if v is None or v is pd.NA else json.loads(str(v)) for v in values]
        else:
            columns[name] = [None if v is None or v is pd.NA else str(v) for v in values]
    return [dict(zip(names, row, strict=True)) for row in zip(*(columns[n] for n in names), strict=True)] \
        if names else [{} for _ in range(len(frame))]


def _value(value: Any, kind: str, name: str) -> Any:
    """One stored value as JSON (as :func:`records` converts whole columns)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if kind == "timestamptz":
        return iso(value)
    if kind == "date":
        return f"{pd.Timestamp(value):%Y-%m-%d}"
    if kind == "double":
        return number(value)
    if kind == "bigint":
        return int(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    return json.loads(str(value)) if name in JSON_COLUMNS else str(value)


def regime(net_gex: float | None) -> str | None:
    """``positive`` / ``negative`` / ``zero`` gamma by the sign of total net GEX (``None`` when unknown)."""
    if net_gex is None:
        return None
    return "positive" if net_gex > 0 else "negative" if net_gex < 0 else "zero"


class DashboardService:
    """The answers of the API, from one store.

    Args:
        settings: the underlyings served are ``settings.underlyings``.
        store: the read paths (``DashboardStore(settings)`` when omitted).
    """

    def __init__(self, settings: Settings, store: DashboardStore | None = None) -> None:
        self.settings = settings
        self.store = store if store is not None else DashboardStore(settings)

    # ------------------------------------------------------------------ common
    def underlying(self, name: str) -> Underlying:
        """The served underlying called ``name`` (case-insensitive)."""
        served = ", ".join(u.name for u in self.settings.underlyings)
        try:
            found = resolve_underlying(name)
        except UnknownUnderlyingError:
            raise NotFoundError(f"underlying {name!r}: expected one of {served}") from None
        if found not in self.settings.underlyings:
            raise NotFoundError(f"underlying {name!r}: not tracked here (ZEROGEX_UNDERLYINGS: {served})")
        return found

    def meta(self) -> dict[str, Any]:
        """What this server serves: underlyings, store kind and location (no password), conventions."""
        return {
            "underlyings": [u.name for u in self.settings.underlyings],
            "store": self.store.kind,
            "store_location": self.store.location,
            "convention": CONVENTION,
            "units": UNITS,
            "regime_rule": REGIME_RULE,
            "api_version": "v1",
        }

    def _header(self, underlying: Underlying) -> dict[str, Any]:
        return {"underlying": underlying.name, "convention": CONVENTION, "units": UNITS}

    def _day(self, underlying: Underlying, day: dt.date | None) -> dt.date:
        """``day``, or the newest stored trading day."""
        if day is not None:
            return day
        dates = self.store.session_dates(underlying)
        if not dates:
            raise NotFoundError(f"{underlying.key}.gex_levels: no levels stored yet (run `make run` or `zerogex run`)")
        return dates[0]

    def _no_day(self, underlying: Underlying, day: dt.date, what: str) -> NotFoundError:
        dates = self.store.session_dates(underlying)
        stored = (f"stored days: {dates[-1]}..{dates[0]} ({len(dates)})" if dates else "nothing stored yet")
        return NotFoundError(f"{underlying.key}.{what}: nothing stored for {day}; {stored}")

    # ------------------------------------------------------------------ levels
    def latest(self, underlying: Underlying, source: str = "auto") -> dict[str, Any]:
        """The newest levels: of the live engine (``live_levels``) or of the stored snapshots (``gex_levels``).

        ``auto`` takes whichever is newer (by snapshot instant; the live row on a tie).
        """
        stored = self.store.latest_levels_row(underlying) if source in ("auto", "stored") else None
        live = self.store.latest_live_levels_row(underlying) if source in ("auto", "live") else None
        use_live = live is not None and (stored is None or
                                         pd.Timestamp(live["snapshot_ts"]) >= pd.Timestamp(stored["snapshot_ts"]))
        if stored is None and not use_live:
            table = "live_levels" if source == "live" else "gex_levels"
            hint = "is `zerogex stream` running?" if source == "live" else "run `make run` or `zerogex run`"
            raise NotFoundError(f"{underlying.key}.{table}: no levels stored yet ({hint})")
        now = market_calendar.utc_now()
        if use_live:
            assert live is not None
            row = {name: _value(live[name], kind, name) for name, kind in _KINDS[LIVE_LEVELS.name].items()}
            out = {"source": "live", "table": "live_levels", "feed": row["feed"]}
        else:
            assert stored is not None
            row = {name: _value(stored[name], kind, name) for name, kind in _KINDS[GEX_LEVELS.name].items()}
            day = dt.date.fromisoformat(row["session_date"])
            out = {"source": "stored", "table": "gex_levels", "feed": self.store.data_source(underlying, day)}
        snapshot = pd.Timestamp(row["snapshot_ts"])
        spot, zero_gamma = row["spot"], row["zero_gamma"]
        return {
            **self._header(underlying), **out,
            "as_of": iso(now),
            "age_s": round((now - snapshot).total_seconds(), 3),
            "regime": regime(row["net_gex"]),
            "regime_rule": REGIME_RULE,
            "spot_vs_zero_gamma_pct": None if zero_gamma is None or not spot else (spot - zero_gamma) / spot * 100.0,
            "levels": row,
        }

    def intraday(self, underlying: Underlying, day: dt.date | None, source: str = "stored",
                 fields: Sequence[str] | None = None, since: pd.Timestamp | None = None) -> dict[str, Any]:
        """One trading day's levels by snapshot, oldest first: ``gex_levels`` or ``live_levels`` rows."""
        day = self._day(underlying, day)
        if source == "live":
            frame = self.store.live_levels(underlying, session_date=day, since=since)
            schema = LIVE_LEVELS
        else:
            frame = self.store.intraday_levels(underlying, day)
            if since is not None:
                frame = frame[frame["snapshot_ts"] > since]
            schema = GEX_LEVELS
            if frame.empty and since is None:
                raise self._no_day(underlying, day, "gex_levels")
        return {**self._header(underlying), "session_date": day.isoformat(), "source": source,
                "table": schema.name, "rows": records(frame, schema, fields)}

    def dates(self, underlying: Underlying) -> dict[str, Any]:
        """Stored trading days (newest first) and the day of the newest live levels, if any."""
        live = self.store.latest_live_levels(underlying)
        live_day = None if live.empty else f"{live['session_date'].iloc[0]:%Y-%m-%d}"
        return {"underlying": underlying.name,
                "dates": [d.isoformat() for d in self.store.session_dates(underlying)],
                "live_date": live_day}

    # ------------------------------------------------------------------ one snapshot
    def _snapshot(self, underlying: Underlying, day: dt.date | None, at: pd.Timestamp | None
                  ) -> tuple[dict[str, Any], pd.DataFrame]:
        """The stored levels row of the snapshot asked for and its surface rows (every expiration).

        Without ``day``, ``at``'s America/New_York date, else the newest stored day.
        """
        if day is None and at is not None:
            day = at.tz_convert(market_calendar.NEW_YORK).date()
        day = self._day(underlying, day)
        levels = self.store.levels_at(underlying, day, at)
        if levels.empty:
            if at is None:
                raise self._no_day(underlying, day, "gex_levels")
            raise NotFoundError(f"{underlying.key}.gex_levels: no snapshot on {day} at or before {iso(at)}")
        row = records(levels, GEX_LEVELS)[0]
        surface = self.store.snapshot_surface(underlying, day, levels["snapshot_ts"].iloc[0])
        if surface.empty:
            raise NotFoundError(f"{underlying.key}.gex_surface: no rows for the snapshot {row['snapshot_ts']} of {day}")
        return row, surface

    def _select(self, underlying: Underlying, surface: pd.DataFrame, day: str, expiration: str | None
                ) -> tuple[str, pd.DataFrame]:
        """``(label, rows)`` of the expiration selection: ``all``, ``0dte`` (expiring on ``day``) or a date."""
        if expiration in (None, "", "all"):
            return "all", surface
        wanted = day if expiration == "0dte" else expiration
        if expiration != "0dte":
            parse_date(expiration, "expiration")
        dates = pd.to_datetime(surface["expiration"]).dt.strftime("%Y-%m-%d")
        rows = surface[dates.to_numpy() == wanted]
        if rows.empty:
            listed = ", ".join(sorted(set(dates)))
            what = f"no 0DTE expiration ({day})" if expiration == "0dte" else f"expiration {expiration}"
            raise NotFoundError(f"{underlying.key}.gex_surface: {what} is not in this snapshot; its expirations: {listed}")
        return wanted, rows.reset_index(drop=True)

    def _product(self, underlying: Underlying, rows: pd.DataFrame, label: str, snapshot: str
                 ) -> tuple[Product, tuple[str, ...]]:
        """The engine's product of the selected rows and its live expirations (settled contracts dropped)."""
        chain = drop_settled(chain_from_surface(rows))
        if chain.strike.size == 0:
            raise NotFoundError(f"{underlying.key}.gex_surface: expiration {label} has settled by the snapshot "
                                f"{snapshot} (no live contract left); ask for an earlier one with at=")
        return compute_product(chain), chain.expirations

    def _snapshot_header(self, underlying: Underlying, row: Mapping[str, Any], surface: pd.DataFrame
                         ) -> dict[str, Any]:
        exps = sorted(set(pd.to_datetime(surface["expiration"]).dt.strftime("%Y-%m-%d")))
        return {**self._header(underlying), "session_date": row["session_date"], "snapshot_ts": row["snapshot_ts"],
                "spot": row["spot"], "expirations": exps,
                "levels": {k: row[k] for k in ("spot", "net_gex", "zero_gamma", "zero_gamma_raw", "call_wall",
                                               "put_wall", "max_pain_next", "abs_gamma_strike")}}

    def strikes(self, underlying: Underlying, day: dt.date | None, at: pd.Timestamp | None,
                expiration: str | None) -> dict[str, Any]:
        """Call, put and net GEX and open interest by strike of one snapshot, over the selected expirations."""
        row, surface = self._snapshot(underlying, day, at)
        label, rows = self._select(underlying, surface, row["session_date"], expiration)
        p, _ = self._product(underlying, rows, label, row["snapshot_ts"])
        live = drop_settled(chain_from_surface(surface)).expirations
        b = p.by_strike
        return {
            **self._snapshot_header(underlying, row, surface), "expiration": label,
            "settled_expirations": [e for e in _expiration_labels(surface) if e not in live],
            "selection": {"call_wall": p.call_wall, "call_wall_gex": p.call_wall_gex, "put_wall": p.put_wall,
                          "put_wall_gex": p.put_wall_gex,
                          "max_pain": None if not p.max_pain else p.max_pain[min(p.max_pain)],
                          "net_gex": p.totals["net_gex"]},
            "strikes": numbers(p.strikes), "call_gex": numbers(b["call_gex"]), "put_gex": numbers(b["put_gex"]),
            "net_gex": numbers(b["net_gex"]), "call_oi": numbers(b["call_oi"]), "put_oi": numbers(b["put_oi"]),
        }

    def expirations(self, underlying: Underlying, day: dt.date | None, at: pd.Timestamp | None) -> dict[str, Any]:
        """GEX, open interest and max pain by expiration of one snapshot (max pain never pooled)."""
        row, surface = self._snapshot(underlying, day, at)
        p, live = self._product(underlying, surface, "all", row["snapshot_ts"])
        b = p.by_expiration
        session = dt.date.fromisoformat(row["session_date"])
        items = []
        for label in _expiration_labels(surface):
            expiry = dt.date.fromisoformat(label[:10])
            item: dict[str, Any] = {"expiration": label, "days_to_expiration": (expiry - session).days,
                                    "settled": label not in live}
            i = live.index(label) if label in live else None
            for name in ("call_gex", "put_gex", "net_gex", "call_oi", "put_oi"):
                item[name] = None if i is None else number(b[name][i])
            item["max_pain"] = p.max_pain.get(label)
            items.append(item)
        return {**self._snapshot_header(underlying, row, surface), "by_expiration": items}

    def profile(self, underlying: Underlying, day: dt.date | None, at: pd.Timestamp | None,
                expiration: str | None) -> dict[str, Any]:
        """The sticky-strike gamma profile: net GEX if spot moved to each level, and where it crosses zero."""
        row, surface = self._snapshot(underlying, day, at)
        label, rows = self._select(underlying, surface, row["session_date"], expiration)
        p, _ = self._product(underlying, rows, label, row["snapshot_ts"])
        return {
            **self._snapshot_header(underlying, row, surface), "expiration": label,
            "spot_levels": numbers(p.profile_levels), "net_gex": numbers(p.profile_raw),
            "net_gex_structural": numbers(p.profile_structural),
            "zero_gamma": p.zero_gamma.level, "zero_gamma_reason": p.zero_gamma.reason,
            "zero_gamma_raw": p.zero_gamma_raw.level, "zero_gamma_raw_reason": p.zero_gamma_raw.reason,
            "net_gex_at_spot": number(p.net_gex_at_spot),
            "net_gex_at_spot_structural": number(p.net_gex_at_spot_structural),
        }

    # ------------------------------------------------------------------ one day
    def heatmap(self, underlying: Underlying, day: dt.date | None, expiration: str | None) -> dict[str, Any]:
        """Net GEX per strike (rows) and snapshot (columns) through one day; spot per snapshot."""
        day = self._day(underlying, day)
        exp: dt.date | None = None
        label = "all"
        if expiration not in (None, "", "all"):
            exp = day if expiration == "0dte" else parse_date(expiration, "expiration")
            label = f"{exp}"
        cells = self.store.net_gex_by_strike_and_time(underlying, day, exp)
        if cells.empty:
            if exp is not None and self.store.intraday_levels(underlying, day).shape[0]:
                listed = ", ".join(e.isoformat() for e in self.store.day_expirations(underlying, day))
                raise NotFoundError(f"{underlying.key}.gex_surface: expiration {exp} not stored on {day}; "
                               f"stored: {listed}")
            raise self._no_day(underlying, day, "gex_surface")
        times = cells["snapshot_ts"].drop_duplicates().sort_values().reset_index(drop=True)
        strikes = np.sort(cells["strike"].unique())
        grid = np.full((strikes.size, times.size), np.nan)
        grid[np.searchsorted(strikes, cells["strike"].to_numpy()),
             np.searchsorted(times.to_numpy(), cells["snapshot_ts"].to_numpy())] = cells["net_gex"].to_numpy()
        levels = self.store.intraday_levels(underlying, day).set_index("snapshot_ts")
        spot = levels["spot"].reindex(pd.DatetimeIndex(times)).to_numpy(np.float64)
        return {**self._header(underlying), "session_date": day.isoformat(), "expiration": label,
                "snapshot_ts": [iso(t) for t in times], "strikes": numbers(strikes),
                "spot": numbers(spot), "net_gex": [numbers(r) for r in grid]}

    def alerts(self, underlying: Underlying, day: dt.date | None) -> dict[str, Any]:
        """The day's stored alert events (zero-gamma crosses, wall breaches, net-GEX sign changes)."""
        day = self._day(underlying, day)
        frame = self.store.alerts(underlying, day)
        return {**self._header(underlying), "session_date": day.isoformat(), "alerts": records(frame, GEX_ALERTS)}


def _expiration_labels(surface: pd.DataFrame) -> list[str]:
    """The expiration labels in the order :func:`chain_from_surface` codes them (``YYYY-MM-DD``, ``... AM``)."""
    labels = pd.to_datetime(surface["expiration"]).dt.strftime("%Y-%m-%d")
    if "settlement" in surface:
        labels = labels.where(surface["settlement"].to_numpy() != "AM", labels + " AM")
    return sorted(set(labels))
