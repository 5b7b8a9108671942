"""``zerogex backfill``: what it submits (every date x every expiration slot, with a link), its one-line refusals,
and the progress ``--wait`` prints (issue 12: the command-line door, progress). No daemon runs here: the backfill's
execution is the same as the UI's (``ui/test_graphql_backfill.py``)."""

from __future__ import annotations

import re
import time
import types
from pathlib import Path

import pytest
from dagster._core.execution.backfill import BulkActionStatus

from zerogex_pipeline.cli import backfill_command, main
from zerogex_pipeline.cli.progress import BackfillCounts, ProgressPrinter, backfill_counts, progress_line
from zerogex_pipeline.defs.partitions import chain_partition_key
from zerogex_pipeline.instance import get_instance
from zerogex_pipeline.settings import load_settings

DAYS = ["2024-06-13", "2024-06-14"]
TOTAL = len(DAYS) * (2 + 2 * 3)  # bars and levels per date, chain and surface per (date, slot) at 3 slots


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no .env from the developer's checkout
    monkeypatch.setenv("ZEROGEX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("ZEROGEX_FIRST_DATE", "2024-01-02")
    for var in ("ZEROGEX_DATABASE_URL", "ZEROGEX_EXPIRATIONS", "ZEROGEX_UNDERLYINGS"):
        monkeypatch.delenv(var, raising=False)


def test_backfill_submits_every_date_and_slot_and_prints_its_link(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backfill", "--start", "2024-06-13", "--end", "2024-06-16"]) == 0  # the weekend is no session
    out = capsys.readouterr().out
    instance = get_instance(load_settings())
    (backfill,) = instance.get_backfills()
    bid = backfill.backfill_id
    assert (f"submitted backfill {bid}: SPY 2024-06-13..2024-06-14, 2 trading day(s) x 3 expiration slot(s); "
            f"http://localhost:3000/runs/b/{bid}?tab=partitions") in out
    target = backfill.asset_backfill_data.target_subset
    chain_keys = {str(chain_partition_key(d, k)) for d in DAYS for k in (1, 2, 3)}
    assert {k.to_user_string(): set(target.get_partitions_subset(k).get_partition_keys())
            for k in target.asset_keys} == {"spy/underlying_bars": set(DAYS), "spy/gex_levels": set(DAYS),
                                            "spy/option_chain_snapshots": chain_keys, "spy/gex_surface": chain_keys}
    counts = backfill_counts(instance, backfill)  # what --wait reports before the daemon's first iteration
    assert (counts.total, counts.done, counts.failed, counts.running) == (TOTAL, 0, 0, 0)


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2023-12-29", "2024-01-03",
         "zerogex backfill: backfill dates: start 2023-12-29 is before the first partition date 2024-01-02 "
         "(ZEROGEX_FIRST_DATE)"),
        ("2024-06-14", "2024-06-13", "zerogex backfill: backfill dates: end 2024-06-13 is before start 2024-06-14"),
    ],
)
def test_a_bad_range_is_refused_in_one_line_and_nothing_is_submitted(
    start: str, end: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["backfill", "--start", start, "--end", end]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.strip() == message, err
    assert get_instance(load_settings()).get_backfills() == []


@pytest.mark.parametrize(("failed", "code"), [(0, 0), (2, 1)])
def test_wait_prints_progress_until_the_backfill_ends(
    failed: int, code: int, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon's work is scripted (no daemon here): the numbers it records after each poll, then the end."""
    script = [BackfillCounts(TOTAL, 0, 0, 0, "REQUESTED"), BackfillCounts(TOTAL, 6, 0, 2, "REQUESTED"),
              BackfillCounts(TOTAL, TOTAL - failed, failed, 0, "COMPLETED")]
    polls: list[int] = []

    def counts(instance, backfill) -> BackfillCounts:  # type: ignore[no-untyped-def]
        return script[min(len(polls), len(script) - 1)]

    def sleep(seconds: float) -> None:  # one daemon iteration passes; at the last, the backfill ends
        polls.append(1)
        if len(polls) == len(script) - 1:
            instance = get_instance(load_settings())
            (backfill,) = instance.get_backfills()
            status = BulkActionStatus.COMPLETED_FAILED if failed else BulkActionStatus.COMPLETED_SUCCESS
            instance.update_backfill(backfill.with_status(status))

    monkeypatch.setattr(backfill_command, "backfill_daemon_down", lambda instance: None)
    monkeypatch.setattr(backfill_command, "backfill_counts", counts)
    monkeypatch.setattr(backfill_command, "time", types.SimpleNamespace(sleep=sleep, time=time.time))
    assert main(["backfill", "--start", DAYS[0], "--end", DAYS[-1], "--wait"]) == code
    lines = capsys.readouterr().out.splitlines()
    progress = [line for line in lines if re.match(r"^\d\d:\d\d:\d\d \[", line)]
    assert [re.search(r"(\d+)/(\d+) partitions", p).groups() for p in progress] == [  # type: ignore[union-attr]
        ("0", str(TOTAL)), ("6", str(TOTAL)), (str(TOTAL - failed), str(TOTAL)), (str(TOTAL - failed), str(TOTAL))]
    assert "0 failed, ETA ?: 0 run(s) running" in progress[0]
    assert f"{failed} failed, ETA " in progress[-1] and progress[-1].endswith(": finished")
    assert "2 run(s) running" in progress[1]
    end = lines[-1]
    status = "COMPLETED_FAILED" if failed else "COMPLETED_SUCCESS"
    assert re.match(rf"^backfill \w+: {status} after \d+ s", end), end
    assert ("partition(s) failed or blocked by a failure: http://localhost:3000/runs/b/" in end) == bool(failed)


def test_progress_line_and_the_printers_sign_of_life() -> None:
    assert progress_line(126, 1008, 1, 70.0, "spy chain") == (
        "[  1m10s] 126/1008 partitions (12.5%), 1 failed, ETA 8m10s: spy chain")
    assert progress_line(0, 8, 0, 5.0) == "[     5s] 0/8 partitions (0.0%), 0 failed, ETA ?"

    class Out:
        def __init__(self) -> None:
            self.text = ""

        def write(self, s: str) -> None:
            self.text += s

        def flush(self) -> None:
            pass

    out = Out()
    printer = ProgressPrinter(out=out, quiet_seconds=3600.0)  # type: ignore[arg-type]
    assert printer.update(0, 8, 0) and not printer.update(0, 8, 0)  # unchanged: quiet
    assert printer.update(4, 8, 0)  # changed: printed
    printer.quiet_seconds = 0.0
    assert printer.update(4, 8, 0)  # unchanged, but quiet for long enough: a sign of life
    assert out.text.count("\n") == 3
