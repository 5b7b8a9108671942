"""Auth, token rotation, 429/5xx/slow faults and client-side budgets, over real HTTP against the emulator."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from zerogex_pipeline.tradestation import streams
from zerogex_pipeline.tradestation.client import TradeStationClient
from zerogex_pipeline.tradestation.config import RateBudget, config_from_env
from zerogex_pipeline.tradestation.emulator import Emulator
from zerogex_pipeline.tradestation.errors import (
    ApiError,
    AuthError,
    CredentialsError,
    StreamError,
    TradeStationError,
)
from zerogex_pipeline_tests.tradestation.conftest import make_config

SECRETS = ("s3cret-value", "rt-initial-secret")


def test_access_token_cached_and_reused(client: TradeStationClient, emulator: Emulator) -> None:
    for _ in range(3):
        client.quotes(["SPY"])
    assert emulator.stats.token_grants == 1
    other = TradeStationClient(client.config)  # another client (process) reads the shared cache
    other.quotes(["SPY"])
    assert emulator.stats.token_grants == 1 and other.tokens.refresh_count == 0


def test_refresh_before_expiry_with_skew(emulator: Emulator, tmp_path: Path) -> None:
    emulator.faults.token_lifetime_s = 3
    c = TradeStationClient(make_config(emulator.url, tmp_path, token_skew_s=2.5))
    c.quotes(["SPY"])
    time.sleep(0.6)  # 3 s lifetime - 2.5 s skew: stale after 0.5 s although the server still accepts it
    c.quotes(["SPY"])
    assert emulator.stats.token_grants == 2 and c.stats.unauthorized == 0


def test_401_forces_one_refresh_and_retry(client: TradeStationClient, emulator: Emulator) -> None:
    client.quotes(["SPY"])
    emulator.expire_tokens()
    snap = client.quotes(["SPY"])
    assert len(snap.frame) == 1
    assert client.stats.unauthorized == 1 and emulator.stats.token_grants == 2


def test_rotating_refresh_token_persisted_and_shared(emulator: Emulator, tmp_path: Path) -> None:
    emulator.faults.rotate_refresh_tokens = True
    first = TradeStationClient(make_config(emulator.url, tmp_path))
    first.quotes(["SPY"])
    cache = json.loads(first.tokens.cache_path.read_text())
    assert cache["refresh_token"] != "rt-initial-secret"
    emulator.expire_tokens()
    second = TradeStationClient(make_config(emulator.url, tmp_path))  # same env token, same machine cache
    second.quotes(["SPY"])
    assert emulator.stats.invalid_grants == 0 and emulator.stats.token_grants == 2
    isolated = TradeStationClient(make_config(emulator.url, tmp_path / "elsewhere"))  # no shared cache
    with pytest.raises(AuthError, match="refresh token refused") as info:
        isolated.quotes(["SPY"])
    assert not any(s in str(info.value) for s in SECRETS)
    assert emulator.stats.invalid_grants == 1


def test_rate_limit_429_waits_for_reset_header(client: TradeStationClient, emulator: Emulator) -> None:
    emulator.faults.rate_limit_requests = 2
    emulator.faults.rate_limit_reset_s = 0.3
    started = time.monotonic()
    client.quotes(["SPY"])
    assert time.monotonic() - started >= 0.6
    assert client.stats.rate_limited == 2 and emulator.stats.statuses[429] == 2


def test_rate_limit_retry_after_only(client: TradeStationClient, emulator: Emulator) -> None:
    emulator.faults.update({"rate_limit_requests": 1, "rate_limit_reset_s": 0.25, "rate_limit_retry_after_only": True})
    started = time.monotonic()
    client.option_expirations("SPY")
    assert time.monotonic() - started >= 0.25 and client.stats.rate_limited == 1


def test_rate_limit_persisting_fails_cleanly(emulator: Emulator, tmp_path: Path) -> None:
    emulator.faults.update({"rate_limit_requests": 10, "rate_limit_reset_s": 0.01})
    c = TradeStationClient(make_config(emulator.url, tmp_path, max_rate_limit_waits=2))
    with pytest.raises(ApiError) as info:
        c.quotes(["SPY"])
    assert info.value.status == 429 and "TooManyRequests" in str(info.value)


def test_emulator_quota_window_and_reset(emulator: Emulator, tmp_path: Path) -> None:
    emulator.quotas = {"quotes": (2, 0.5)}
    c = TradeStationClient(make_config(emulator.url, tmp_path, budgets={}))
    started = time.monotonic()
    for _ in range(3):
        c.quotes(["SPY"])
    assert c.stats.rate_limited >= 1 and time.monotonic() - started >= 0.3


def test_client_side_budget_avoids_429(emulator: Emulator, tmp_path: Path) -> None:
    emulator.quotas = {"quotes": (2, 0.5)}
    # the client's window opens just before the server's (it counts before sending): a margin on the period
    # keeps it from reopening while the server's is still full
    c = TradeStationClient(make_config(emulator.url, tmp_path, budgets={"quotes": RateBudget(2, 0.6)}))
    started = time.monotonic()
    for _ in range(3):
        c.quotes(["SPY"])
    assert c.stats.rate_limited == 0 and emulator.stats.statuses[429] == 0
    assert time.monotonic() - started >= 0.4


def test_budget_shared_between_clients(emulator: Emulator, tmp_path: Path) -> None:
    budgets = {"quotes": RateBudget(2, 0.6)}
    a = TradeStationClient(make_config(emulator.url, tmp_path, budgets=budgets))
    b = TradeStationClient(make_config(emulator.url, tmp_path, budgets=budgets))
    started = time.monotonic()
    a.quotes(["SPY"])
    b.quotes(["SPY"])
    a.quotes(["SPY"])  # third in the window: waits although this client sent only one before
    assert time.monotonic() - started >= 0.45


def test_server_errors_retried(client: TradeStationClient, emulator: Emulator) -> None:
    emulator.faults.server_error_requests = 2
    assert len(client.quotes(["SPY"]).frame) == 1
    assert emulator.stats.statuses[503] == 2


def test_server_errors_exhausted_fail_cleanly(client: TradeStationClient, emulator: Emulator) -> None:
    emulator.faults.update({"server_error_requests": 50, "server_error_status": 500})
    with pytest.raises(ApiError) as info:
        client.quotes(["SPY"])
    assert info.value.status == 500
    assert emulator.stats.statuses[500] == client.config.max_retries + 1


def test_slow_responses(emulator: Emulator, tmp_path: Path) -> None:
    emulator.faults.slow_s = 0.3
    ok = TradeStationClient(make_config(emulator.url, tmp_path))
    assert len(ok.quotes(["SPY"]).frame) == 1
    impatient = TradeStationClient(make_config(emulator.url, tmp_path, read_timeout_s=0.1, max_retries=1))
    with pytest.raises(TradeStationError, match="quotes"):
        impatient.quotes(["SPY"])


def test_secrets_never_logged_or_shown(emulator: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    emulator.faults.rotate_refresh_tokens = True
    c = TradeStationClient(make_config(emulator.url, tmp_path))
    c.quotes(["SPY"])
    emulator.expire_tokens()
    c.bars("SPY", barsback=2)
    rotated = json.loads(c.tokens.cache_path.read_text())
    texts = [caplog.text, repr(c), repr(c.config), repr(c.tokens), str(c.config.redacted())]
    for secret in (*SECRETS, rotated["refresh_token"], rotated["access_token"]):
        assert all(secret not in t for t in texts)
    assert "GET /v3/marketdata/quotes/SPY" in caplog.text  # the request log itself is there


def test_missing_credentials_message_names_variables() -> None:
    with pytest.raises(CredentialsError) as info:
        config_from_env({"TRADESTATION_CLIENT_ID": "x"})
    assert "TRADESTATION_CLIENT_SECRET" in str(info.value) and "TRADESTATION_REFRESH_TOKEN" in str(info.value)


def test_sandbox_and_url_overrides() -> None:
    env = {"TRADESTATION_CLIENT_ID": "a", "TRADESTATION_CLIENT_SECRET": "b", "TRADESTATION_REFRESH_TOKEN": "c"}
    assert config_from_env(env).api_url == "https://api.tradestation.com"
    assert config_from_env({**env, "TRADESTATION_USE_SANDBOX": "true"}).api_url == "https://sim-api.tradestation.com"
    custom = config_from_env({**env, "TRADESTATION_API_URL": "http://127.0.0.1:9/", "TRADESTATION_AUTH_URL": "http://x"})
    assert (custom.api_url, custom.auth_url) == ("http://127.0.0.1:9", "http://x")
    with pytest.raises(CredentialsError, match="TRADESTATION_USE_SANDBOX"):
        config_from_env({**env, "TRADESTATION_USE_SANDBOX": "maybe"})
    with pytest.raises(CredentialsError, match="TRADESTATION_API_URL"):
        config_from_env({**env, "TRADESTATION_API_URL": "ftp://nope"})


def test_control_endpoints_switch_faults_from_another_process(client: TradeStationClient, emulator: Emulator) -> None:
    r = requests.post(f"{emulator.url}/__emulator/faults", json={"server_error_requests": 1}, timeout=5)
    assert r.status_code == 200 and r.json()["server_error_requests"] == 1
    bad = requests.post(f"{emulator.url}/__emulator/faults", json={"no_such_switch": 1}, timeout=5)
    assert bad.status_code == 400 and "no_such_switch" in bad.json()["Message"]
    client.quotes(["SPY"])
    stats = requests.get(f"{emulator.url}/__emulator/stats", timeout=5).json()
    assert stats["statuses"]["503"] == 1 and stats["requests"]["quotes"] == 2


def test_revoked_refresh_token_gives_one_line_error_naming_the_variable(emulator: Emulator, tmp_path: Path) -> None:
    c = TradeStationClient(make_config(emulator.url, tmp_path))
    c.quotes(["SPY"])
    r = requests.post(f"{emulator.url}/__emulator/faults", json={"revoke_refresh_tokens": True}, timeout=5)
    assert r.status_code == 200
    c.quotes(["SPY"])  # the access token still works until it expires
    emulator.expire_tokens()
    with pytest.raises(AuthError) as info:
        c.quotes(["SPY"])
    message = str(info.value)
    assert "\n" not in message and "TRADESTATION_REFRESH_TOKEN" in message
    assert "HTTP 403 invalid_grant: revoked, expired or already rotated away" in message
    assert not any(s in message for s in SECRETS) and emulator.stats.invalid_grants == 1


def test_revoked_refresh_token_cli_exit_status(emulator: Emulator, tmp_path: Path) -> None:
    emulator.faults.revoke_refresh_tokens = True
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "TRADESTATION_API_URL": emulator.url,
           "TRADESTATION_AUTH_URL": emulator.url, "TRADESTATION_CLIENT_ID": "cli",
           "TRADESTATION_CLIENT_SECRET": "cli-secret-123", "TRADESTATION_REFRESH_TOKEN": "cli-refresh-456",
           "ZEROGEX_DATA_DIR": str(tmp_path)}
    out = subprocess.run([str(Path(sys.executable).parent / "zerogex"), "ts", "quote", "SPY", "--debug"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 1 and out.stdout == ""
    last = out.stderr.strip().splitlines()[-1]
    assert "TRADESTATION_REFRESH_TOKEN" in last and "invalid_grant" in last
    assert "cli-refresh-456" not in out.stderr and "cli-secret-123" not in out.stderr


@pytest.mark.parametrize("shape", ["symbol", "message"])
def test_dual_logon_ends_the_stream_with_a_clear_error(client: TradeStationClient, emulator: Emulator,
                                                       shape: str) -> None:
    """The reference's in-band ``DualLogon`` (also in the docs' ``{"Symbol":..,"Error":"DualLogon"}`` shape) is
    fatal, not data and not a reason to reconnect (that would fight the other session)."""
    emulator.faults.update({"dual_logon_streams": 1, "dual_logon_shape": shape})
    stream = streams.quote_stream(client, ["SPY"])
    with pytest.raises(StreamError, match=r"DualLogon: .* logged on from another session"):
        streams.take(stream, 1, timeout_s=5)
    assert stream.reconnects == 0 and emulator.stats.streams_opened == 1
