from pathlib import Path

import pytest

from zerogex_pipeline.settings import SettingsError, load_settings


def test_defaults_are_the_documented_ones() -> None:
    s = load_settings({}, env_file=None)
    assert [u.name for u in s.underlyings] == ["SPY"]
    assert s.data_source == "simulated"
    assert s.database_url is None
    assert (s.expirations, s.strike_distance_pct, s.snapshot_minutes, s.bar_minutes) == (3, 10.0, 5, 1)


def test_tradestation_is_the_default_source_when_credentials_are_set() -> None:
    env = {"TRADESTATION_CLIENT_ID": "id", "TRADESTATION_CLIENT_SECRET": "s", "TRADESTATION_REFRESH_TOKEN": "r"}
    assert load_settings(env, env_file=None).data_source == "tradestation"
    assert load_settings({**env, "ZEROGEX_DATA_SOURCE": "simulated"}, env_file=None).data_source == "simulated"


def test_underlyings_accept_tradestation_symbols() -> None:
    s = load_settings({"ZEROGEX_UNDERLYINGS": "spy, $SPX.X,QQQ"}, env_file=None)
    assert [u.key for u in s.underlyings] == ["spy", "spx", "qqq"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ZEROGEX_UNDERLYINGS", "SPY,XYZ"),
        ("ZEROGEX_UNDERLYINGS", "SPY,spy"),
        ("ZEROGEX_DATA_SOURCE", "bloomberg"),
        ("ZEROGEX_DATABASE_URL", "mysql://x"),
        ("ZEROGEX_EXPIRATIONS", "three"),
        ("ZEROGEX_EXPIRATIONS", "0"),
        ("ZEROGEX_STRIKE_DISTANCE", "-1"),
        ("ZEROGEX_STRIKE_DISTANCE", "wide"),
        ("ZEROGEX_SNAPSHOT_MINUTES", "1.5"),
        ("ZEROGEX_BAR_MINUTES", "0"),
    ],
)
def test_invalid_values_fail_naming_the_setting(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings({name: value}, env_file=None)


def test_env_file_is_read_and_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("ZEROGEX_EXPIRATIONS=5\nZEROGEX_SNAPSHOT_MINUTES=15\n")
    s = load_settings({"ZEROGEX_SNAPSHOT_MINUTES": "10"}, env_file=env_file)
    assert s.expirations == 5
    assert s.snapshot_minutes == 10
