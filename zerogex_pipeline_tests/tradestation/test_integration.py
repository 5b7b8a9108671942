"""Recorded-shape fixtures from the reference's examples, two-process token rotation, the Dagster resource
(secrets never in the UI config), the data-source adapter and the CLI, against the emulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from zerogex_pipeline import market_calendar
from zerogex_pipeline.defs.resources import MarketDataResource, build_market_data
from zerogex_pipeline.settings import SettingsError, load_settings
from zerogex_pipeline.sources.base import MarketDataSource, spots_from_bars
from zerogex_pipeline.sources.tradestation_market import TradeStationMarket
from zerogex_pipeline.tradestation import streams
from zerogex_pipeline.tradestation.client import TradeStationClient, bars_frame, quotes_frame
from zerogex_pipeline.tradestation.emulator import Emulator
from zerogex_pipeline.underlyings import resolve_underlying
from zerogex_pipeline_tests.history import TEST_FIRST_DATE_ENV

FIXTURES = json.loads((Path(__file__).parent / "fixtures" / "reference_examples.json").read_text())
REPO = Path(__file__).resolve().parents[2]


def test_reference_bar_and_quote_shapes() -> None:
    bars = bars_frame(FIXTURES["bars"]["Bars"])
    row = bars.iloc[0]
    assert row["ts"] == pd.Timestamp("2025-03-25T20:00:00Z") and row["close"] == 395.16
    assert row["volume"] == 15774968 and row["open_interest"] == 0 and bool(row["is_end_of_history"])
    assert row["epoch_ms"] == 1742932800000 and row["bar_status"] == "Closed"
    older = dict(FIXTURES["bars"]["Bars"][0])
    del older["BarStatus"]  # the older docs example has no BarStatus
    older["OpenInterest"] = None
    assert bars_frame([older]).iloc[0]["open_interest"] == 0
    q = quotes_frame(FIXTURES["quotes"]["Quotes"]).iloc[0]
    assert q["Last"] == 92.7001 and q["NetChangePct"] == pytest.approx(1.32265821401246)
    assert q["TradeTime"] == pd.Timestamp("2025-04-02T23:59:22Z") and not q["IsDelayed"]
    assert pd.isna(quotes_frame([{"Symbol": "X", "Last": None}]).iloc[0]["Bid"])  # absent and null are NaN


def test_reference_spread_and_stream_shapes() -> None:
    chain = streams.spreads_frame([FIXTURES["spread"]])
    row = chain.iloc[0]
    assert (row["symbol"], row["option_type"], row["strike"]) == ("MSFT 211217P332.5", "P", 332.5)
    assert row["open_interest"] == 1996 and row["iv"] == 0.3118 and row["volume"] == 144
    assert streams.is_heartbeat(FIXTURES["heartbeat"])
    assert streams.is_goaway(FIXTURES["goaway_error"]) and streams.is_goaway(FIXTURES["goaway_status"])
    assert not streams.is_goaway(FIXTURES["dual_logon"]) and not streams.is_heartbeat(FIXTURES["dual_logon"])


def test_emulator_speaks_the_reference_shapes(client: TradeStationClient) -> None:
    """Keys and JSON types of emulator bodies match the reference examples (numbers as strings)."""
    raw = client.get_json("/v3/marketdata/barcharts/SPY", "barcharts", {"unit": "Daily", "barsback": "1"})["Bars"][0]
    ref = FIXTURES["bars"]["Bars"][0]
    assert raw.keys() == ref.keys() and all(type(raw[k]) is type(ref[k]) for k in ref)
    quote = client.get_json("/v3/marketdata/quotes/SPY", "quotes")["Quotes"][0]
    ref_q = FIXTURES["quotes"]["Quotes"][0]
    assert quote.keys() == ref_q.keys() and all(type(quote[k]) is type(ref_q[k]) for k in ref_q)
    detail = client.get_json("/v3/marketdata/symbols/SPY%20250117C600", "symbols")["Symbols"][0]
    assert detail.keys() == FIXTURES["symbol_option"].keys()
    exps = client.get_json("/v3/marketdata/options/expirations/SPY", "options-expirations")["Expirations"]
    assert exps[0].keys() == FIXTURES["expirations"]["Expirations"][0].keys()
    spread = streams.take(streams.option_chain_stream(client, "SPY", "01-17-2025", 1), 1, 5)[0]
    ref_s = FIXTURES["spread"]
    common = [k for k in ref_s if k in spread and not k.endswith("_IV") and k != "StandardDeviation"]
    assert len(common) >= 25 and all(type(spread[k]) is type(ref_s[k]) for k in common)


CHILD = textwrap.dedent("""
    import sys, time, requests
    from pathlib import Path
    from zerogex_pipeline.tradestation.client import TradeStationClient
    from zerogex_pipeline_tests.tradestation.conftest import make_config
    url, data_dir = sys.argv[1], Path(sys.argv[2])
    from zerogex_pipeline.tradestation.errors import ApiError
    client = TradeStationClient(make_config(url, data_dir))
    for i in range(12):
        try:
            client.quotes(["SPY"])
        except ApiError as exc:
            # the other process expired every token again between our refresh and our retry (a global
            # expiry only the emulator can do): not a rotation failure; the next call refreshes again
            assert exc.status == 401, exc
            client.quotes(["SPY"])
        if i % 3 == 1:
            requests.post(url + "/__emulator/expire-tokens", timeout=5)
        time.sleep(0.01)
    print(client.tokens.refresh_count)
""")


def test_token_rotation_across_two_processes(emulator: Emulator, tmp_path: Path) -> None:
    emulator.faults.rotate_refresh_tokens = True
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, emulator.url, str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-500:] for o in outs]
    refreshes = [int(o[0].strip()) for o in outs]
    assert emulator.stats.invalid_grants == 0
    assert emulator.stats.token_grants == sum(refreshes) >= 4  # each expiry refreshed once, rotating each time


def test_dagster_resource_hides_secrets(emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dagster as dg

    env = {"TRADESTATION_CLIENT_ID": "cid-visible", "TRADESTATION_CLIENT_SECRET": "topsecret-xyz",
           "TRADESTATION_REFRESH_TOKEN": "refresh-xyz", "TRADESTATION_API_URL": emulator.url,
           "TRADESTATION_AUTH_URL": emulator.url}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    settings = load_settings({**TEST_FIRST_DATE_ENV, "ZEROGEX_DATA_SOURCE": "tradestation", "ZEROGEX_DATA_DIR": str(tmp_path)}, env_file=None)
    resource = build_market_data(settings)
    shown = json.dumps(resource.tradestation.model_dump(), default=str) if resource.tradestation else ""  # type: ignore[union-attr]
    assert "topsecret-xyz" not in shown and "refresh-xyz" not in shown
    assert "topsecret-xyz" not in repr(resource)

    @dg.asset
    def probe(market_data: MarketDataResource) -> int:
        source = market_data.get_source()
        assert isinstance(source, MarketDataSource) and source.name == "tradestation"
        return len(source.listed_expirations(resolve_underlying("SPY"), market_calendar.utc_now().date()))

    result = dg.materialize([probe], resources={"market_data": resource})
    assert result.success and result.output_for_node("probe") > 0
    with pytest.raises(SettingsError, match="TRADESTATION_CLIENT_SECRET"):
        build_market_data(settings, environ={"TRADESTATION_CLIENT_ID": "x", "TRADESTATION_REFRESH_TOKEN": "y"})


def test_adapter_historical_chain(client: TradeStationClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(market_calendar, "utc_now", lambda: pd.Timestamp("2025-01-15T16:00:00Z"))
    market = TradeStationMarket(client)
    spy = resolve_underlying("SPY")
    session = market_calendar.session("2025-01-14")
    bars = market.underlying_bars(spy, session, 5)
    assert len(bars) == 78 and bars["ts"].iloc[-1] == session.close and (bars["source"] == "tradestation").all()
    exps = market.listed_expirations(spy, session.date)
    assert exps[:3] == [pd.Timestamp(d).date() for d in ("2025-01-14", "2025-01-15", "2025-01-16")]
    spots = spots_from_bars(bars, session.snapshot_times(30))
    chain = market.chain_snapshots(spy, session, pd.Timestamp("2025-01-17").date(), spots, 3.0)
    assert chain["snapshot_ts"].nunique() == len(spots) and not chain.duplicated(["snapshot_ts", "symbol"]).any()
    assert (abs(chain["strike"] / chain["spot"] - 1) <= 0.03 + 1e-9).all()
    assert (chain["open_interest"] > 0).all()
    # bars have no quotes: no bid/ask (0), no vendor IV or greeks; the bar close is last and mid
    assert (chain["bid"] == 0).all() and (chain["ask"] == 0).all() and (chain["mid"] == chain["last"]).all()
    assert chain[["iv", "delta", "gamma", "vega", "theta"]].isna().all().all() and (chain["last"] > 0).all()
    again = market.chain_snapshots(spy, session, pd.Timestamp("2025-01-17").date(), spots, 3.0)
    pd.testing.assert_frame_equal(chain, again)  # deterministic: a retry writes the same rows


def _cli(url: str, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TRADESTATION_API_URL": url, "TRADESTATION_AUTH_URL": url,
           "TRADESTATION_CLIENT_ID": "cli", "TRADESTATION_CLIENT_SECRET": "cli-secret-123",
           "TRADESTATION_REFRESH_TOKEN": "cli-refresh-456", "ZEROGEX_DATA_DIR": str(data_dir)}
    return subprocess.run([str(Path(sys.executable).parent / "zerogex"), "ts", *args], capture_output=True,
                          text=True, env=env, timeout=60)


def test_cli_commands(emulator: Emulator, tmp_path: Path) -> None:
    out = _cli(emulator.url, tmp_path, "quote", "SPY", "QQQ", "--json", "--debug")
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert [q["Symbol"] for q in body["quotes"]] == ["SPY", "QQQ"]
    assert "GET /v3/marketdata/quotes/SPY,QQQ" in out.stderr
    assert "cli-secret-123" not in out.stderr + out.stdout and "cli-refresh-456" not in out.stderr + out.stdout
    every = _cli(emulator.url, tmp_path, "all", "--timeout", "10")
    assert every.returncode == 0, every.stdout + every.stderr
    assert every.stdout.count("ok  ") == 8
    chain = _cli(emulator.url, tmp_path, "chain", "SPY", "--expiration", "2025-01-17", "--strike-proximity", "2", "--json")
    assert len(json.loads(chain.stdout)["chain"]) == 8
    bad = _cli(emulator.url, tmp_path, "bars", "NOPE")
    assert bad.returncode == 1 and bad.stderr.strip().count("\n") == 0 and "404" in bad.stderr
    missing = subprocess.run([str(Path(sys.executable).parent / "zerogex"), "ts", "quote", "SPY"], capture_output=True,
                             text=True, timeout=60, cwd=tmp_path,
                             env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO)})
    assert missing.returncode == 1 and "TRADESTATION_CLIENT_ID" in missing.stderr
