"""The announcement ledger under racing claims, the webhook setting and delivery without leaking the URL."""

import socket
import threading

import pandas as pd
import pytest

from zerogex_pipeline.announcements import post_alert
from zerogex_pipeline.settings import Settings, SettingsError, load_settings, redact_webhook_url
from zerogex_pipeline.storage import alert_ledger as ledger
from zerogex_pipeline.storage.migrations import m0003_alerts_and_backtest
from zerogex_pipeline.storage.postgres_migrations import migrated_columns
from zerogex_pipeline.storage.store_session import store_session

SECRET = "s3cr3t-token"


def events(n: int, day: str = "2024-06-14") -> pd.DataFrame:
    return pd.DataFrame({"event_id": [f"SPY|{day}|zero_gamma_cross|{i}" for i in range(n)], "underlying": "SPY",
                         "session_date": pd.Timestamp(day), "kind": "zero_gamma_cross"})


def race(settings: Settings, threads: int = 6) -> list[set[str]]:
    batch = events(5)
    now = pd.Timestamp("2024-06-14 15:00", tz="UTC")
    claimed: list[set[str]] = []
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            barrier.wait()
            got, _ = ledger.claim_and_read(settings, "spy", batch, now.date(), True, now, f"run-{i}")
            claimed.append(got)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors, errors
    return claimed


def check_claimed_once(settings: Settings, claimed: list[set[str]]) -> None:
    assert sum(len(c) for c in claimed) == 5
    assert set().union(*claimed) == set(events(5)["event_id"])
    with store_session(settings, "spy") as session:
        assert session is not None
        stamps = ledger.announced(session, pd.Timestamp("2024-06-14").date())
        assert set(stamps) == set(events(5)["event_id"])
        assert all(t == pd.Timestamp("2024-06-14 15:00", tz="UTC") for t in stamps.values())
        assert ledger.announced(session, pd.Timestamp("2024-06-17").date()) == {}
        assert ledger.claim(session, events(5), pd.Timestamp.now(tz="UTC"), "late") == set()


def test_duckdb_ledger_is_created_from_the_statement_of_migration_0003(settings: Settings) -> None:
    assert ledger.LEDGER_DDL + ";" in m0003_alerts_and_backtest.SQL  # verbatim, not a copy
    with store_session(settings, "spy", create=True) as session:
        assert session is not None
        ledger.ensure_ledger(session)
        ledger.ensure_ledger(session)  # IF NOT EXISTS: idempotent
        columns = session.rows(
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            ["spy", ledger.LEDGER_TABLE],
        )
        keys = session.rows(
            "SELECT constraint_column_names FROM duckdb_constraints()"
            " WHERE schema_name = %s AND table_name = %s AND constraint_type = 'PRIMARY KEY'",
            ["spy", ledger.LEDGER_TABLE],
        )
    assert [c[0] for c in columns] == ["event_id", "underlying", "session_date", "kind", "announced_at", "run_id"]
    assert {c[0] for c in columns} == migrated_columns()[ledger.LEDGER_TABLE]
    assert {c[0]: c[1] for c in columns}["announced_at"] == "TIMESTAMP WITH TIME ZONE"
    assert all(c[2] == "NO" for c in columns)
    assert [list(k[0]) for k in keys] == [["event_id"]]


def test_racing_claims_on_duckdb_announce_each_event_once(settings: Settings) -> None:
    check_claimed_once(settings, race(settings))


@pytest.mark.postgres
def test_racing_claims_on_postgres_announce_each_event_once(pg_url: str, tmp_path) -> None:
    settings = load_settings({"ZEROGEX_DATABASE_URL": pg_url, "ZEROGEX_DATA_DIR": str(tmp_path)}, env_file=None)
    check_claimed_once(settings, race(settings))


def test_webhook_setting_is_validated_without_echoing_the_token() -> None:
    url = f"https://user:{SECRET}@hooks.example.com:8443/services/{SECRET}?token={SECRET}"
    settings = load_settings({"ZEROGEX_ALERT_WEBHOOK_URL": url}, env_file=None)
    assert settings.alert_webhook_url == url
    assert SECRET not in repr(settings)
    assert redact_webhook_url(url) == "https://hooks.example.com:8443/…"
    assert load_settings({}, env_file=None).alert_webhook_url is None
    for bad in (f"ftp://hooks.example.com/{SECRET}", f"hooks.example.com/x?token={SECRET}", "http://[::1/x"):
        with pytest.raises(SettingsError, match="ZEROGEX_ALERT_WEBHOOK_URL: expected an http") as info:
            load_settings({"ZEROGEX_ALERT_WEBHOOK_URL": bad}, env_file=None)
        assert SECRET not in str(info.value)


def test_delivery_failures_report_type_or_status_and_host_only(webhook) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    refused = post_alert(f"http://127.0.0.1:{port}/hook?token={SECRET}", {"a": 1.0}, timeout_s=2)
    assert not refused.ok and refused.detail == f"ConnectionError posting to http://127.0.0.1:{port}/…"
    webhook.status = 404
    missing = post_alert(f"{webhook.url}/x?token={SECRET}", {"a": float("nan")})
    assert not missing.ok and missing.detail == f"HTTP 404 from {webhook.url}/…"
    assert webhook.posts == [(f"/x?token={SECRET}", {"a": None})]  # NaN travels as JSON null
    webhook.status = 204
    assert post_alert(webhook.url, {"a": 1}).ok
