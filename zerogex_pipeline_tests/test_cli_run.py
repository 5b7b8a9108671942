"""``make run``'s command on a fixed date range: the printed table and the stored rows."""

import re
from pathlib import Path

import pytest

from zerogex_pipeline.cli import main


def test_run_prints_a_levels_row_per_trading_day(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("ZEROGEX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.chdir(tmp_path)  # no .env from the developer's checkout
    monkeypatch.setenv("ZEROGEX_FIRST_DATE", "2024-07-03")
    assert main(["run", "--end", "2024-07-05", "--days", "3", "--quiet"]) == 1  # before the first date partition
    assert ("zerogex run: 2024-07-02 is before the first date partition 2024-07-03 (ZEROGEX_FIRST_DATE=2024-07-03); "
            "set ZEROGEX_FIRST_DATE to 2024-07-02 or earlier") in capsys.readouterr().err
    monkeypatch.setenv("ZEROGEX_FIRST_DATE", "2024-01-02")
    # 2024-07-05 is the Friday after the 2024-07-03 early close and the 2024-07-04 holiday
    assert main(["run", "--end", "2024-07-05", "--days", "3", "--row-counts"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    # progress after each range run (the 3 days are one range): partitions done out of 3 x (2 + 2 x 3 slots)
    progress = [line for line in lines if re.match(r"^\d\d:\d\d:\d\d \[", line)]
    assert [re.search(r" (\d+)/24 partitions", p).group(1) for p in progress] == ["3", "9", "15", "21", "24"]
    assert "24/24 partitions (100.0%), 0 failed, ETA 0s: SPY levels 2024-07-02..2024-07-05" in progress[-1]
    header = next(i for i, line in enumerate(lines) if line.startswith("date  ") and "zero gamma" in line)
    rows = [line.split() for line in lines[header + 2: header + 5]]
    assert [r[0] for r in rows] == ["2024-07-02", "2024-07-03", "2024-07-05"]
    for r in rows:
        assert re.fullmatch(r"\$[\d,]+\.\d\d", r[1])  # spot close
        assert re.fullmatch(r"[+-]\$[\d.,]+(bn|m|k)?", r[2])  # net GEX
        assert re.fullmatch(r"\$[\d,]+\.\d\d|none", r[3])  # zero gamma
        assert re.fullmatch(r"\$[\d,]+", r[4]) and re.fullmatch(r"\$[\d,]+", r[5])  # walls
        call_wall, put_wall, spot = (float(x.strip("$").replace(",", "")) for x in (r[4], r[5], r[1]))
        assert put_wall <= spot <= call_wall
    counts = [line.split() for line in lines if re.match(r"^2024-07-0\d\s+3\s", line)]
    assert len(counts) == 3
    early = dict(zip(["date", "exp", "bars", "chain", "surface", "levels"], counts[1], strict=True))
    assert early["bars"] == "210" and early["levels"] == "43"  # 13:00 close on 2024-07-03
    assert all(c[2] == "390" and c[5] == "79" for c in (counts[0], counts[2]))

    # the printed table reads back from the store: `zerogex levels` shows the same rows
    assert main(["levels", "--end", "2024-07-05", "--days", "3"]) == 0
    again = capsys.readouterr().out.splitlines()
    assert again[3:6] == lines[header + 2: header + 5]

    # one day by snapshot, times in America/New_York: the early close ends at 13:00 ET
    assert main(["levels", "--intraday", "2024-07-03"]) == 0
    day = capsys.readouterr().out.splitlines()
    snapshots = [line.split() for line in day[3:]]
    assert len(snapshots) == 43
    assert snapshots[0][:2] == ["2024-07-03", "09:30"] and snapshots[-1][:2] == ["2024-07-03", "13:00"]
    # its last snapshot is that day's closing row (spot, net GEX, zero gamma, walls)
    assert snapshots[-1][2:7] == rows[1][1:6]
    # the latest snapshot: 16:00 ET on the last day, the same as its closing row
    assert main(["levels", "--latest"]) == 0
    latest = capsys.readouterr().out.splitlines()
    assert "latest" in latest[0] and len(latest) == 4
    assert latest[3].split()[:2] == ["2024-07-05", "16:00"] and latest[3].split()[2:7] == rows[2][1:6]
    # a day without levels, and a malformed date, are one-line errors
    assert main(["levels", "--intraday", "2024-07-04"]) == 1
    assert "no levels stored for 2024-07-04" in capsys.readouterr().err
    assert main(["levels", "--intraday", "July 4"]) == 1
    assert "--intraday 'July 4': expected a date YYYY-MM-DD" in capsys.readouterr().err


def test_cli_reports_bad_settings_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ZEROGEX_EXPIRATIONS", "lots")
    assert main(["run", "--days", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "ZEROGEX_EXPIRATIONS" in err


def test_a_failing_run_prints_one_line_and_where_its_full_log_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "not_a_dir").write_text("a file where the data dir should be")
    monkeypatch.setenv("ZEROGEX_DATA_DIR", str(tmp_path / "not_a_dir" / "data"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("ZEROGEX_EXPIRATIONS", "1")
    assert main(["run", "--days", "1", "--end", "2025-01-15", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # no Dagster event lines or tracebacks before it (50-81 lines before)
    assert err.startswith("zerogex run: spy/underlying_bars [2025-01-15] failed: ")
    assert "Not a directory" in err and "Traceback" not in err
    assert "full log: run " in err and str(tmp_path / "dagster_home") in err
