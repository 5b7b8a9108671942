"""Bad command-line input: each is refused in one line that names the input and what was expected (issue 13, item 5)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from zerogex_pipeline.cli import main

SECRET = "s3cr3t-Pa55"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no .env from the developer's checkout
    monkeypatch.setenv("ZEROGEX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.delenv("ZEROGEX_DATABASE_URL", raising=False)


def one_line_exit(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err.strip()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["run", "--days", "0"], "zerogex run: argument --days: expected a whole number of trading days from 1 to 1300, got '0'"),
        (["run", "--days", "-2"], "zerogex run: argument --days: expected a whole number of trading days from 1 to 1300, got '-2'"),
        (["run", "--days", "two"], "zerogex run: argument --days: expected a whole number of trading days from 1 to 1300, got 'two'"),
        (["levels", "--days", "0"], "zerogex levels: argument --days: expected a whole number of trading days from 1 to 1300, got '0'"),
        (["run", "--end", "2026-02-30"],
         "zerogex run: argument --end: expected a date YYYY-MM-DD, got '2026-02-30' (day is out of range for month)"),
        (["levels", "--end", "Nov 20"], "zerogex levels: argument --end: expected a date YYYY-MM-DD, got 'Nov 20' (not YYYY-MM-DD)"),
        (["backfill", "--start", "2026-13-01", "--end", "2026-12-01"],
         "zerogex backfill: argument --start: expected a date YYYY-MM-DD, got '2026-13-01' (month must be in 1..12)"),
    ],
)
def test_bad_arguments_are_one_line(argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert one_line_exit(argv, capsys) == f"{expected} (see zerogex {argv[0]} --help)"


def test_an_impossible_libpq_option_fails_before_any_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ZEROGEX_DATABASE_URL", f"postgresql://zg:{SECRET}@127.0.0.1:5432/zerogex?sslmode=bogus")
    assert main(["run", "--days", "1", "--end", "2026-11-20"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # 81 lines before, at the first write
    assert "sslmode='bogus' is not one of disable, allow, prefer, require, verify-ca, verify-full" in err
    assert "ZEROGEX_DATABASE_URL postgresql://zg:***@127.0.0.1:5432/zerogex?sslmode=bogus" in err
    assert SECRET not in err


def test_backfill_wait_without_a_daemon_says_so_at_once(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    started = time.monotonic()
    assert main(["backfill", "--start", "2026-11-16", "--end", "2026-11-20", "--wait"]) == 1
    assert time.monotonic() - started < 30  # it waited forever before
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "zerogex backfill: no Dagster daemon has ever run for this instance" in err
    assert str(tmp_path / "dagster_home") in err and "start one with `make ui`" in err
    from zerogex_pipeline.instance import get_instance
    from zerogex_pipeline.settings import load_settings

    assert get_instance(load_settings()).get_backfills() == []  # nothing submitted that nothing would run
