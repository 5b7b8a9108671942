"""Pipeline settings, read from the environment (and a git-ignored ``.env`` file).

Every setting is validated when loaded; an invalid value raises :class:`SettingsError` naming the
variable and what was expected, so a typo fails at definition load time rather than mid-run.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from dotenv import dotenv_values

from zerogex_pipeline.underlyings import Underlying, UnknownUnderlyingError, resolve_underlying

DataSourceName = Literal["simulated", "tradestation"]

TRADESTATION_CREDENTIAL_VARS = (
    "TRADESTATION_CLIENT_ID",
    "TRADESTATION_CLIENT_SECRET",
    "TRADESTATION_REFRESH_TOKEN",
)

DEFAULT_DATA_DIR = "data"

DEFAULT_FIRST_DATE = dt.date(2025, 1, 2)
"""First trading day of the date partitions unless ``ZEROGEX_FIRST_DATE`` says otherwise: the first session of
2025, so a fresh instance shows about two years of trading days (not every session since 2018)."""
EARLIEST_FIRST_DATE = dt.date(2018, 1, 2)
"""``ZEROGEX_FIRST_DATE`` may not precede this (the NYSE calendar is loaded from here)."""
DEFAULT_BACKFILL_DAYS_PER_RUN = 63
"""Trading days one backfill run materializes (``ZEROGEX_BACKFILL_DAYS_PER_RUN``): a quarter, so a year is a
handful of runs per asset while a failure costs at most a quarter of one expiration slot."""

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
"""Values of ``LOG_LEVEL`` (the original ZeroGEX setting; default ``INFO``)."""


class SettingsError(ValueError):
    """A setting has an invalid value. The message names the variable and the expected form."""


@dataclass(frozen=True)
class Settings:
    """Validated pipeline settings. Build with :func:`load_settings`.

    Attributes:
        underlyings: the underlyings to build assets for (``ZEROGEX_UNDERLYINGS``).
        data_source: ``simulated`` or ``tradestation`` (``ZEROGEX_DATA_SOURCE``).
        database_url: a ``postgresql://`` URL, or ``None`` for the embedded DuckDB store.
        data_dir: folder of the embedded store and other local state (``ZEROGEX_DATA_DIR``).
        expirations: how many listed expirations (nearest first) each trading day tracks.
        strike_distance_pct: half-width of the strike window, percent of spot (10.0 = spot ±10%).
        snapshot_minutes: minutes between chain snapshots in the regular session.
        bar_minutes: bar interval of ``underlying_bars`` in minutes.
        risk_free_rate: annualized, continuously compounded r used by the analytics.
        refresh_minutes: minutes between intraday refreshes of today's partitions.
        alert_webhook_url: ``http(s)://`` URL that each new GEX alert is POSTed to as JSON
            (``ZEROGEX_ALERT_WEBHOOK_URL``); ``None``: alerts are only logged. May hold a secret
            token, so it is left out of ``repr`` and never logged whole (see :func:`redact_webhook_url`).
        log_level: level of the pipeline's own log lines on stderr (``LOG_LEVEL``: DEBUG, INFO, WARNING,
            ERROR or CRITICAL; default INFO). ``--debug`` on a command means DEBUG.
        first_date: first trading day of the date partitions (``ZEROGEX_FIRST_DATE``, America/New_York date;
            moved to the next NYSE session when it is not one).
        backfill_days_per_run: at most this many trading days per backfill run of one asset (and expiration
            slot), ``ZEROGEX_BACKFILL_DAYS_PER_RUN``: the assets' ``BackfillPolicy.multi_run`` size.
    """

    underlyings: tuple[Underlying, ...] = field(default_factory=lambda: (resolve_underlying("SPY"),))
    data_source: DataSourceName = "simulated"
    database_url: str | None = None
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    expirations: int = 3
    strike_distance_pct: float = 10.0
    snapshot_minutes: int = 5
    bar_minutes: int = 1
    risk_free_rate: float = 0.04
    refresh_minutes: int = 5
    alert_webhook_url: str | None = field(default=None, repr=False)
    log_level: str = "INFO"
    first_date: dt.date = DEFAULT_FIRST_DATE
    backfill_days_per_run: int = DEFAULT_BACKFILL_DAYS_PER_RUN

    @property
    def duckdb_path(self) -> Path:
        """Path of the embedded DuckDB database file."""
        return self.data_dir / "zerogex.duckdb"


def _read_environment(environ: Mapping[str, str] | None, env_file: Path | None) -> dict[str, str]:
    merged: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        merged.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    merged.update(os.environ if environ is None else environ)
    return merged


def _int_setting(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}: expected an integer between {lo} and {hi}, got {raw!r}") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{name}: expected an integer between {lo} and {hi}, got {value}")
    return value


def _float_setting(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}: expected a number between {lo} and {hi}, got {raw!r}") from None
    if not (lo <= value <= hi):
        raise SettingsError(f"{name}: expected a number between {lo} and {hi}, got {raw!r}")
    return value


def redact_webhook_url(url: str) -> str:
    """``scheme://host[:port]/…`` of a webhook URL: no user info, path or query string (they can hold tokens)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<malformed URL>"
    return f"{parts.scheme}://{host}{port}/…"


def _webhook_setting(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        parts = urlsplit(raw)
        _ = parts.port
    except ValueError:
        raise SettingsError(f"{name}: expected an http:// or https:// URL, got a malformed URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(
            f"{name}: expected an http:// or https:// URL with a host, got {redact_webhook_url(raw)!r}"
        )
    return raw


def log_level_setting(env: Mapping[str, str]) -> str:
    """``LOG_LEVEL`` upper-cased (``INFO`` when unset).

    Raises:
        SettingsError: not one of :data:`LOG_LEVELS`.
    """
    raw = env.get("LOG_LEVEL", "").strip()
    if not raw:
        return "INFO"
    if raw.upper() not in LOG_LEVELS:
        raise SettingsError(f"LOG_LEVEL: expected one of {', '.join(LOG_LEVELS)}, got {raw!r}")
    return raw.upper()


def first_date_setting(env: Mapping[str, str], today: dt.date | None = None) -> dt.date:
    """``ZEROGEX_FIRST_DATE`` (``YYYY-MM-DD``), or :data:`DEFAULT_FIRST_DATE` when unset.

    Raises:
        SettingsError: not a date, before :data:`EARLIEST_FIRST_DATE`, or after ``today`` (UTC date by default).
    """
    raw = env.get("ZEROGEX_FIRST_DATE", "").strip()
    if not raw:
        return DEFAULT_FIRST_DATE
    try:
        value = dt.date.fromisoformat(raw)
    except ValueError:
        raise SettingsError(f"ZEROGEX_FIRST_DATE: expected a date YYYY-MM-DD, got {raw!r}") from None
    today = today or dt.datetime.now(dt.UTC).date()
    if not EARLIEST_FIRST_DATE <= value <= today:
        raise SettingsError(
            f"ZEROGEX_FIRST_DATE: expected a date from {EARLIEST_FIRST_DATE} to today ({today}), got {value}"
        )
    return value


def read_environment(environ: Mapping[str, str] | None = None, env_file: Path | None = Path(".env")) -> dict[str, str]:
    """The variables settings are read from: ``env_file`` (dotenv) overridden by ``environ`` (``os.environ``)."""
    return _read_environment(environ, env_file)


def _has_tradestation_credentials(env: Mapping[str, str]) -> bool:
    return all(env.get(var, "").strip() for var in TRADESTATION_CREDENTIAL_VARS)


def load_settings(
    environ: Mapping[str, str] | None = None, env_file: Path | None = Path(".env")
) -> Settings:
    """Read and validate the settings.

    Args:
        environ: variables to read; defaults to ``os.environ``. Values here win over ``env_file``.
        env_file: a dotenv file read first (missing file is fine); ``None`` to skip it.

    Raises:
        SettingsError: a value is malformed; the message names the variable.
    """
    env = _read_environment(environ, env_file)

    raw_underlyings = env.get("ZEROGEX_UNDERLYINGS", "").strip() or "SPY"
    names = [n.strip() for n in raw_underlyings.split(",") if n.strip()]
    try:
        underlyings = tuple(resolve_underlying(n) for n in names)
    except UnknownUnderlyingError as exc:
        raise SettingsError(f"ZEROGEX_UNDERLYINGS: {exc}") from None
    if not underlyings:
        raise SettingsError("ZEROGEX_UNDERLYINGS: expected a comma-separated list such as 'SPY,SPX'")
    keys = [u.key for u in underlyings]
    if len(set(keys)) != len(keys):
        raise SettingsError(f"ZEROGEX_UNDERLYINGS: lists an underlying twice ({raw_underlyings!r})")

    raw_source = env.get("ZEROGEX_DATA_SOURCE", "").strip().lower()
    data_source: DataSourceName
    if not raw_source:
        data_source = "tradestation" if _has_tradestation_credentials(env) else "simulated"
    elif raw_source in ("simulated", "tradestation"):
        data_source = "simulated" if raw_source == "simulated" else "tradestation"
    else:
        raise SettingsError(
            f"ZEROGEX_DATA_SOURCE: expected 'simulated' or 'tradestation', got {raw_source!r}"
        )

    database_url = env.get("ZEROGEX_DATABASE_URL", "").strip() or None
    if database_url is not None and not database_url.startswith(("postgresql://", "postgres://")):
        raise SettingsError(
            "ZEROGEX_DATABASE_URL: expected a URL starting with 'postgresql://' "
            "(or unset for the embedded DuckDB store)"
        )

    data_dir = Path(env.get("ZEROGEX_DATA_DIR", "").strip() or DEFAULT_DATA_DIR)

    return Settings(
        underlyings=underlyings,
        data_source=data_source,
        database_url=database_url,
        data_dir=data_dir,
        expirations=_int_setting(env, "ZEROGEX_EXPIRATIONS", 3, 1, 60),
        strike_distance_pct=_float_setting(env, "ZEROGEX_STRIKE_DISTANCE", 10.0, 0.5, 50.0),
        snapshot_minutes=_int_setting(env, "ZEROGEX_SNAPSHOT_MINUTES", 5, 1, 390),
        bar_minutes=_int_setting(env, "ZEROGEX_BAR_MINUTES", 1, 1, 390),
        risk_free_rate=_float_setting(env, "ZEROGEX_RISK_FREE_RATE", 0.04, -0.05, 0.25),
        refresh_minutes=_int_setting(env, "ZEROGEX_REFRESH_MINUTES", 5, 1, 390),
        alert_webhook_url=_webhook_setting(env, "ZEROGEX_ALERT_WEBHOOK_URL"),
        log_level=log_level_setting(env),
        first_date=first_date_setting(env),
        backfill_days_per_run=_int_setting(env, "ZEROGEX_BACKFILL_DAYS_PER_RUN", DEFAULT_BACKFILL_DAYS_PER_RUN, 1, 400),
    )
