"""The original ZeroGEX's leftovers (issue 13, item 10): ``zerogex ts crypto``, ``LOG_LEVEL``, and the
market-hours warning on quotes with its switch ``TS_WARN_MARKET_HOURS``."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest

from zerogex_pipeline import market_calendar
from zerogex_pipeline.cli import main
from zerogex_pipeline.cli.logs import configure_logging
from zerogex_pipeline.settings import SettingsError, load_settings
from zerogex_pipeline.tradestation.client import TradeStationClient, market_closed_notice
from zerogex_pipeline.tradestation.config import config_from_env
from zerogex_pipeline.tradestation.emulator import Emulator
from zerogex_pipeline.tradestation.errors import CredentialsError
from zerogex_pipeline_tests.tradestation.conftest import make_config

CREDENTIALS = {"TRADESTATION_CLIENT_ID": "cli", "TRADESTATION_CLIENT_SECRET": "cli-secret-123",
               "TRADESTATION_REFRESH_TOKEN": "cli-refresh-456"}
SATURDAY = pd.Timestamp("2025-01-18T16:00:00Z")
WEDNESDAY_OPEN = pd.Timestamp("2025-01-15T16:00:00Z")


@pytest.fixture
def cli_env(emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name, value in {**CREDENTIALS, "TRADESTATION_API_URL": emulator.url, "TRADESTATION_AUTH_URL": emulator.url,
                        "ZEROGEX_DATA_DIR": str(tmp_path / "data")}.items():
        monkeypatch.setenv(name, value)


def test_ts_crypto_lists_the_pairs(cli_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ts", "crypto"]) == 0
    assert capsys.readouterr().out.strip() == "4 crypto pairs: BTCUSD, ETHUSD, LTCUSD, BCHUSD"


def test_quotes_while_the_market_is_closed_come_with_a_notice(
    cli_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(market_calendar, "utc_now", lambda: SATURDAY)
    assert main(["ts", "quote", "SPY"]) == 0
    err = capsys.readouterr().err
    assert err == ("WARNING zerogex_pipeline.tradestation.client: the NYSE regular session is closed now (next: "
                   "2025-01-21 09:30-16:00 ET): quotes may be delayed or stale (TS_WARN_MARKET_HOURS=false turns this "
                   "warning off)\n")  # Monday 2025-01-20 is Martin Luther King Jr. Day
    monkeypatch.setenv("TS_WARN_MARKET_HOURS", "false")
    assert main(["ts", "quote", "SPY"]) == 0 and capsys.readouterr().err == ""


def test_the_notice_follows_the_nyse_calendar(emulator: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    assert market_closed_notice(WEDNESDAY_OPEN) is None
    assert "next: 2025-01-15 09:30-16:00 ET" in str(market_closed_notice(pd.Timestamp("2025-01-15T13:00:00Z")))
    assert "next: 2024-07-05 09:30" in str(market_closed_notice(pd.Timestamp("2024-07-03T18:30:00Z")))  # after 13:00
    monkeypatch.setattr(market_calendar, "utc_now", lambda: WEDNESDAY_OPEN)
    client = TradeStationClient(make_config(emulator.url, tmp_path))
    with caplog.at_level(logging.WARNING, logger="zerogex_pipeline"):
        client.quotes(["SPY"])
    assert not caplog.records


def test_ts_warn_market_hours_is_a_boolean_switch() -> None:
    assert config_from_env(CREDENTIALS).warn_market_hours is True
    assert config_from_env({**CREDENTIALS, "TS_WARN_MARKET_HOURS": "False"}).warn_market_hours is False
    with pytest.raises(CredentialsError, match="TS_WARN_MARKET_HOURS: expected true or false, got 'sometimes'"):
        config_from_env({**CREDENTIALS, "TS_WARN_MARKET_HOURS": "sometimes"})


def test_log_level_is_validated_and_sets_the_pipelines_level(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert load_settings({}, env_file=None).log_level == "INFO"
    assert load_settings({"LOG_LEVEL": "warning"}, env_file=None).log_level == "WARNING"
    with pytest.raises(SettingsError, match="LOG_LEVEL: expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'loud'"):
        load_settings({"LOG_LEVEL": "loud"}, env_file=None)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOG_LEVEL", "loud")
    assert main(["levels"]) == 1
    assert capsys.readouterr().err == (
        "zerogex levels: LOG_LEVEL: expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'loud'\n")
    log = logging.getLogger("zerogex_pipeline.test")
    for level, shown in (("WARNING", ["WARNING"]), ("DEBUG", ["DEBUG", "INFO", "WARNING"]), ("INFO", ["INFO", "WARNING"])):
        monkeypatch.setenv("LOG_LEVEL", level)
        configure_logging()
        log.debug("d")
        log.info("i")
        log.warning("w")
        err = capsys.readouterr().err
        assert [line.split()[0] for line in err.splitlines()] == shown
