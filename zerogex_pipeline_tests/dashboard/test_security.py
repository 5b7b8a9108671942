"""Limits of the dashboard: loopback by default, a token to expose it (constant-time), read-only, no secrets."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from zerogex_pipeline.cli import main
from zerogex_pipeline.dashboard import security
from zerogex_pipeline.dashboard.app import create_app
from zerogex_pipeline.dashboard.security import TOKEN_ENV, AccessSettingsError, configured_token

TOKEN = "tok-3f9a1c77e2b54d0b9c1e"
LATEST = "/api/v1/spy/levels/latest"


def test_exposing_requires_a_long_enough_token() -> None:
    assert configured_token("127.0.0.1", {}) is None and configured_token("localhost", {}) is None
    assert configured_token("::1", {}) is None
    with pytest.raises(AccessSettingsError, match=r"--host 0.0.0.0: serving beyond this machine requires "
                                                  r"ZEROGEX_DASHBOARD_TOKEN \(at least 16 characters\)"):
        configured_token("0.0.0.0", {})
    with pytest.raises(AccessSettingsError, match="ZEROGEX_DASHBOARD_TOKEN: expected at least 16 characters"):
        configured_token("0.0.0.0", {TOKEN_ENV: "short"})
    assert configured_token("192.168.1.20", {TOKEN_ENV: TOKEN}) == TOKEN
    assert configured_token("127.0.0.1", {TOKEN_ENV: TOKEN}) == TOKEN  # set: required on loopback too


def test_the_command_refuses_to_expose_without_a_token(monkeypatch, capsys) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert main(["dashboard", "--expose", "--port", "1"]) == 1
    err = capsys.readouterr().err
    assert "zerogex dashboard: --host 0.0.0.0: serving beyond this machine requires ZEROGEX_DASHBOARD_TOKEN" in err


def test_the_token_is_required_compared_in_constant_time_and_never_echoed(embedded_settings, caplog,
                                                                         monkeypatch) -> None:
    compared = []
    real = security.hmac.compare_digest
    monkeypatch.setattr(security.hmac, "compare_digest", lambda a, b: compared.append((a, b)) or real(a, b))
    caplog.set_level(logging.INFO, logger="zerogex.dashboard")
    app = create_app(embedded_settings, token=TOKEN, loopback_only=False)
    c = TestClient(app, base_url="http://gex.desk.example")

    missing = c.get(LATEST)
    assert missing.status_code == 401 and "needs its token" in missing.json()["error"]
    assert missing.headers["www-authenticate"].startswith("Bearer")
    wrong = c.get(LATEST, headers={"Authorization": f"Bearer {TOKEN[:-1]}x"})
    assert wrong.status_code == 401 and TOKEN not in wrong.text
    assert c.get("/spy").status_code == 401 and c.get("/static/plotly.min.js").status_code == 401
    assert c.get(LATEST, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert c.get(f"{LATEST}?token={TOKEN}").status_code == 200  # tools that cannot set a header
    # digests of equal length are compared, never the raw strings
    assert compared and all(len(a) == len(b) == 32 and TOKEN.encode() not in (a, b) for a, b in compared)

    # a page opened once with ?token=: the token moves into an HttpOnly cookie and out of the address
    entry = c.get(f"/spy?token={TOKEN}&date=2024-06-12", follow_redirects=False)
    assert entry.status_code == 303 and entry.headers["location"] == "/spy?date=2024-06-12"
    cookie = entry.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert c.get("/spy").status_code == 200 and c.get(LATEST).status_code == 200  # the cookie now

    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "GET /api/v1/spy/levels/latest 401" in logged and "GET /spy 303" in logged
    assert TOKEN not in logged and "token=" not in logged


def test_read_only_loopback_host_and_headers(embedded_settings) -> None:
    c = TestClient(create_app(embedded_settings), base_url="http://127.0.0.1:8050")
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        r = c.request(method, LATEST)
        assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
        assert r.json() == {"error": f"{method} {LATEST}: this server is read-only (GET and HEAD only)"}
    for host in ("localhost:8050", "127.0.0.1", "[::1]:8050"):
        assert c.get(LATEST, headers={"Host": host}).status_code == 200
    rebound = c.get(LATEST, headers={"Host": "attacker.example:8050"})
    assert rebound.status_code == 400 and "loopback names only" in rebound.json()["error"]
    page = c.get("/spy")
    assert page.headers["x-content-type-options"] == "nosniff" and page.headers["x-frame-options"] == "DENY"
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    meta = c.get("/api/v1/meta").json()
    assert meta["store"] == "duckdb" and meta["store_location"].endswith("zerogex.duckdb")


@pytest.mark.postgres
def test_meta_shows_the_postgres_store_without_its_password(postgres_settings) -> None:
    meta = TestClient(create_app(postgres_settings), base_url="http://127.0.0.1").get("/api/v1/meta").json()
    assert meta["store"] == "postgres" and meta["store_location"].startswith("postgresql://")
    url = postgres_settings.database_url or ""
    password = url.split("//", 1)[1].split("@", 1)[0].partition(":")[2]
    assert not password or password not in meta["store_location"]
