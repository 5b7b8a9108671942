"""TradeStation connection settings: hosts, credentials, timeouts, retry and rate budgets.

Credentials come from ``TRADESTATION_CLIENT_ID``, ``TRADESTATION_CLIENT_SECRET`` and
``TRADESTATION_REFRESH_TOKEN``; ``TRADESTATION_USE_SANDBOX`` selects the sim host; ``TRADESTATION_API_URL``
and ``TRADESTATION_AUTH_URL`` override the hosts (e.g. to point at the local emulator).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from zerogex_pipeline.settings import DEFAULT_DATA_DIR, TRADESTATION_CREDENTIAL_VARS
from zerogex_pipeline.tradestation.errors import CredentialsError

LIVE_API_URL = "https://api.tradestation.com"
SIM_API_URL = "https://sim-api.tradestation.com"
AUTH_URL = "https://signin.tradestation.com"
SECRET_FIELDS = frozenset({"client_secret", "refresh_token"})


@dataclass(frozen=True)
class RateBudget:
    """A fixed-window request budget: at most ``limit`` requests per ``period_s`` seconds."""

    limit: int
    period_s: float


DEFAULT_BUDGETS: dict[str, RateBudget] = {
    # [DOC-RATE] current overview table; barcharts/symbol details are not listed (UNCONFIRMED): no budget.
    "quotes": RateBudget(500, 300.0),
    "options-expirations": RateBudget(90, 60.0),
    "options-strikes": RateBudget(90, 60.0),
    "options-spreadtypes": RateBudget(90, 60.0),
    "options-riskreward": RateBudget(90, 60.0),
    "stream-connect": RateBudget(500, 300.0),
    "marketdepth": RateBudget(30, 60.0),
}


def parse_bool(name: str, raw: str) -> bool:
    """``true/1/yes/on`` or ``false/0/no/off/''`` (case-insensitive) for the variable ``name``."""
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise CredentialsError(f"{name}: expected true or false, got {raw!r}")


def missing_credentials_message(missing: list[str]) -> str:
    """The clear message for missing credentials, naming every variable."""
    return (
        f"TradeStation credentials missing: set {', '.join(missing)} "
        f"(all of {', '.join(TRADESTATION_CREDENTIAL_VARS)} are needed; "
        "or set ZEROGEX_DATA_SOURCE=simulated)"
    )


@dataclass(frozen=True)
class TradeStationConfig:
    """Everything the client needs. ``repr`` never shows the secret fields.

    Times are seconds. ``token_skew_s``: refresh this long before the access token expires.
    ``stream_idle_timeout_s``: no bytes at all for this long means a dead connection (heartbeats come
    every 5 s). ``stream_starvation_s``: heartbeats but no data for this long means a starved stream.
    ``max_option_streams``: option chain/quote streams open at once for the API key, across every process
    on the machine; a closed one frees its slot ``option_slot_grace_s`` later (the server's count lags).
    """

    client_id: str
    client_secret: str = field(repr=False)
    refresh_token: str = field(repr=False)
    api_url: str = LIVE_API_URL
    auth_url: str = AUTH_URL
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    token_skew_s: float = 120.0
    max_retries: int = 4
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    max_rate_limit_waits: int = 5
    max_rate_limit_wait_s: float = 310.0
    stream_idle_timeout_s: float = 30.0
    stream_starvation_s: float = 120.0
    stream_max_reconnects: int = 8
    max_option_streams: int = 10
    option_slot_grace_s: float = 1.0
    budgets: Mapping[str, RateBudget] = field(default_factory=lambda: dict(DEFAULT_BUDGETS))
    warn_market_hours: bool = True
    """Log a warning when quotes are requested while the NYSE regular session is closed (``TS_WARN_MARKET_HOURS``)."""

    def __post_init__(self) -> None:
        missing = [
            var
            for var, value in zip(
                TRADESTATION_CREDENTIAL_VARS, (self.client_id, self.client_secret, self.refresh_token), strict=True
            )
            if not value or not value.strip()
        ]
        if missing:
            raise CredentialsError(missing_credentials_message(missing))
        for name in ("api_url", "auth_url"):
            url = getattr(self, name)
            if not url.startswith(("http://", "https://")):
                var = "TRADESTATION_API_URL" if name == "api_url" else "TRADESTATION_AUTH_URL"
                raise CredentialsError(f"{var}: expected an http(s):// URL, got {url!r}")

    @property
    def cache_dir(self) -> Path:
        """Folder of the shared token cache and rate-budget state."""
        return self.data_dir / "tradestation"

    def redacted(self) -> dict[str, object]:
        """The settings with secrets replaced by ``***`` (for logs and the CLI)."""
        return {f.name: ("***" if f.name in SECRET_FIELDS else getattr(self, f.name)) for f in fields(self)}


def config_from_env(environ: Mapping[str, str] | None = None, **overrides: object) -> TradeStationConfig:
    """Build the config from ``TRADESTATION_*``, ``TS_WARN_MARKET_HOURS`` and ``ZEROGEX_DATA_DIR`` variables.

    Raises:
        CredentialsError: a credential is missing (the message names the variables) or a URL is malformed.
    """
    env = os.environ if environ is None else environ
    missing = [v for v in TRADESTATION_CREDENTIAL_VARS if not env.get(v, "").strip()]
    if missing:
        raise CredentialsError(missing_credentials_message(missing))
    sandbox = parse_bool("TRADESTATION_USE_SANDBOX", env.get("TRADESTATION_USE_SANDBOX", ""))
    api_url = env.get("TRADESTATION_API_URL", "").strip() or (SIM_API_URL if sandbox else LIVE_API_URL)
    auth_url = env.get("TRADESTATION_AUTH_URL", "").strip() or AUTH_URL
    kwargs: dict[str, object] = {
        "client_id": env["TRADESTATION_CLIENT_ID"].strip(),
        "client_secret": env["TRADESTATION_CLIENT_SECRET"].strip(),
        "refresh_token": env["TRADESTATION_REFRESH_TOKEN"].strip(),
        "api_url": api_url.rstrip("/"),
        "auth_url": auth_url.rstrip("/"),
        "data_dir": Path(env.get("ZEROGEX_DATA_DIR", "").strip() or DEFAULT_DATA_DIR),
        # the original client's switch: unset means warn
        "warn_market_hours": parse_bool("TS_WARN_MARKET_HOURS", env.get("TS_WARN_MARKET_HOURS", "") or "true"),
    }
    kwargs.update(overrides)
    return TradeStationConfig(**kwargs)  # type: ignore[arg-type]
