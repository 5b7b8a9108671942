"""Whole days through the pipeline (bars -> chain -> surface -> levels, ``runner.materialize_day``) with
``ZEROGEX_DATA_SOURCE=tradestation`` pointed at the emulator over real HTTP, without a stream capture (the
historical path alone): today's session in progress, SPX ($SPX.X, SPXW weeklies, AM/PM monthlies), and the
emulator's request counts per backfilled day. The stream engine and its faults: ``zerogex_pipeline_tests/live``."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pandas as pd
import pytest
import requests

from zerogex_pipeline import market_calendar, runner
from zerogex_pipeline.defs.market_data import source_retries
from zerogex_pipeline.defs.resources import MarketDataResource
from zerogex_pipeline.runner import DayRun, materialize_day
from zerogex_pipeline.settings import Settings, load_settings
from zerogex_pipeline.tradestation.emulator import Emulator
from zerogex_pipeline.tradestation.resource import TradeStationResource
from zerogex_pipeline.underlyings import resolve_underlying
from zerogex_pipeline_tests.history import TEST_FIRST_DATE_ENV

NOW = pd.Timestamp("2025-01-15T16:00:00Z")  # Wednesday 11:00 ET: the session of 2025-01-15 is in progress
TODAY = dt.date(2025, 1, 15)
TABLES = ("underlying_bars", "option_chain_snapshots", "gex_surface", "gex_levels")
FAST_STREAMS = {"stream_idle_timeout_s": 0.6, "stream_starvation_s": 0.6}


@dataclass
class LiveEnv:
    emulator: Emulator
    tmp: Path
    base_run: DayRun
    baseline: dict[str, pd.DataFrame]
    clean_s: float


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveEnv]:
    """The emulator with its market clock frozen at ``NOW`` (deterministic across runs), our clock at ``NOW``,
    the TradeStation settings pointed at it, fast stream watchdogs, immediate step retries, and the
    fault-free SPY day every faulted run is compared with."""
    tmp = tmp_path_factory.mktemp("pipeline")
    with pytest.MonkeyPatch.context() as mp, Emulator(clock=lambda: NOW, speed=0.0, heartbeat_s=0.2,
                                                       tick_s=0.05) as em:
        mp.setattr(market_calendar, "utc_now", lambda: NOW)
        mp.setattr(source_retries, "SECONDS_TO_WAIT", 0)
        build = runner.build_resources

        def tuned(settings: Settings) -> dict[str, Any]:
            res = build(settings)
            ts = res["market_data"].tradestation
            fields = {name: getattr(ts, name) for name in TradeStationResource.model_fields}  # EnvVar secrets kept
            res["market_data"] = MarketDataResource(source="tradestation",
                                                    tradestation=TradeStationResource(**{**fields, **FAST_STREAMS}))
            return res

        mp.setattr(runner, "build_resources", tuned)
        for key, value in {"TRADESTATION_CLIENT_ID": "pipeline-client", "TRADESTATION_CLIENT_SECRET": "pipe-secret",
                           "TRADESTATION_REFRESH_TOKEN": "pipe-refresh", "TRADESTATION_API_URL": em.url,
                           "TRADESTATION_AUTH_URL": em.url}.items():
            mp.setenv(key, value)
        started = time.perf_counter()
        base_run, baseline = _run_day(tmp / "clean", TODAY)
        yield LiveEnv(em, tmp, base_run, baseline, time.perf_counter() - started)


def _settings(data_dir: Path, underlying: str = "SPY", expirations: int = 1) -> Settings:
    return load_settings({**TEST_FIRST_DATE_ENV, "ZEROGEX_DATA_SOURCE": "tradestation", "ZEROGEX_DATA_DIR": str(data_dir),
                          "ZEROGEX_UNDERLYINGS": underlying, "ZEROGEX_EXPIRATIONS": str(expirations),
                          "ZEROGEX_SNAPSHOT_MINUTES": "30", "ZEROGEX_STRIKE_DISTANCE": "2"}, env_file=None)


def _tables(settings: Settings, schema: str) -> dict[str, pd.DataFrame]:
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as conn:
        return {t: conn.execute(f"SELECT * FROM {schema}.{t} ORDER BY ALL").df() for t in TABLES}


def _run_day(data_dir: Path, day: dt.date, underlying: str = "SPY", expirations: int = 1
             ) -> tuple[DayRun, dict[str, pd.DataFrame]]:
    settings = _settings(data_dir, underlying, expirations)
    with dg.instance_for_test() as instance:
        out = materialize_day(resolve_underlying(underlying), day, settings, instance)
    return out, _tables(settings, underlying.lower())


def _stats(em: Emulator) -> dict[str, Any]:
    stats: dict[str, Any] = requests.get(f"{em.url}/__emulator/stats", timeout=5).json()
    return stats


def test_day_in_progress_without_a_capture(live: LiveEnv) -> None:
    """No capture: every snapshot so far is rebuilt from option bars (no quote, IV solved from the close)."""
    chain = live.baseline["option_chain_snapshots"]
    assert live.base_run.rows["option_chain_snapshots"] == len(chain) > 0
    assert not chain.duplicated(["snapshot_ts", "symbol"]).any()
    assert (chain["origin"] == "historical").all() and (chain["bid"] == 0).all()
    # 09:30 .. 10:30 every 30 min: the 11:00 instant has just passed, the stream capture's to take, not rebuilt
    assert len(live.baseline["gex_levels"]) == chain["snapshot_ts"].nunique() == 3
    surface = live.baseline["gex_surface"]
    lines = pd.concat([surface[["snapshot_ts"]].assign(src=surface[f"{side}_iv_source"]) for side in ("call", "put")],
                      ignore_index=True)
    lines = lines[lines["src"].notna() & (lines["src"] != "none")]
    assert set(lines["src"]) == {"last"}  # bar snapshots: solved from the close
    print(f"\nSPY day in progress through the pipeline, historical path: {live.clean_s:.1f} s")


def test_spx_day_end_to_end(live: LiveEnv) -> None:
    """$SPX.X with SPXW PM weeklies and the AM-settled SPX monthly beside the PM SPXW one (2025-01-17).

    The AM and PM monthly series share strikes: the surface keeps one row per settlement, so every blocking
    check (levels plausibility included) passes and the run succeeds.
    """
    exps = [dt.date(2025, 1, 15), dt.date(2025, 1, 16), dt.date(2025, 1, 17)]
    run, got = _run_day(live.tmp / "spx", TODAY, "SPX", expirations=3)
    assert run.expirations == exps
    bars = got["underlying_bars"]
    assert len(bars) == 90 and (bars["underlying"] == "SPX").all() and bars["close"].between(3000, 9000).all()
    chain = got["option_chain_snapshots"]
    assert sorted(set(chain["expiration"].dt.date)) == exps and not chain.duplicated(["snapshot_ts", "symbol"]).any()
    chain["root"] = chain["symbol"].str.split(" ").str[0]
    series = chain.groupby(chain["expiration"].dt.date)[["root", "settlement"]].apply(
        lambda g: sorted(set(zip(g["root"], g["settlement"], strict=True))))
    assert series.to_dict() == {exps[0]: [("SPXW", "PM")], exps[1]: [("SPXW", "PM")],
                                exps[2]: [("SPX", "AM"), ("SPXW", "PM")]}
    assert (chain["strike"] % 5 == 0).all() and (abs(chain["strike"] / chain["spot"] - 1) <= 0.02 + 1e-12).all()
    last = chain[chain["snapshot_ts"] == chain["snapshot_ts"].max()]
    assert set(zip(last["root"], last["settlement"], strict=True)) == {("SPXW", "PM"), ("SPX", "AM")}
    assert (chain["bid"] == 0).all() and (chain["origin"] == "historical").all()
    # every (snapshot, contract) has its spot; the surface and levels cover every snapshot and expiration
    surface = got["gex_surface"]
    assert sorted(set(surface["expiration"].dt.date)) == exps
    monthly = surface[surface["expiration"].dt.date == exps[2]]
    assert set(monthly["settlement"]) == {"AM", "PM"} and not surface.duplicated(
        ["snapshot_ts", "expiration", "strike", "settlement"]).any()
    assert len(got["gex_levels"]) == 3 and got["gex_levels"]["spot"].equals(
        chain.groupby("snapshot_ts")["spot"].first().reset_index(drop=True))
    assert run.rows["option_chain_snapshots"] == len(chain)


@pytest.mark.parametrize("underlying", ["SPY", "SPX"])
def test_requests_per_backfilled_day(live: LiveEnv, underlying: str) -> None:
    """A past day (historical path): one bar request for the underlying and one per candidate contract, no
    stream. Settings here: 1 expiration, 2 %, 30 min (the defaults' counts are in the quota note)."""
    day = dt.date(2025, 1, 14)
    before = _stats(live.emulator)
    run, got = _run_day(live.tmp / f"count-{underlying}", day, underlying, expirations=1)
    after = _stats(live.emulator)
    used = {k: v - before["requests"].get(k, 0) for k, v in after["requests"].items()
            if v - before["requests"].get(k, 0)}
    u = resolve_underlying(underlying)
    spots = got["option_chain_snapshots"].groupby("snapshot_ts")["spot"].first()
    lo, hi = spots.min() * 0.98, spots.max() * 1.02
    strikes = sum(1 for k in range(int(lo // u.strike_step), int(hi // u.strike_step) + 2)
                  if lo <= k * u.strike_step <= hi)
    series = sum(2 if (underlying == "SPX" and e == dt.date(2025, 1, 17)) else 1 for e in run.expirations)
    assert used.get("barcharts") == 1 + 2 * strikes * series
    assert after["streams_opened"] == before["streams_opened"] and used.get("stream-connect", 0) == 0
    assert used.get("options-expirations", 0) <= 1  # one per process and day (cached)
    assert len(got["gex_levels"]) == 14  # 09:30 .. 16:00 every 30 min
    print(f"\n{underlying} {day} ({run.expirations[0]}..{run.expirations[-1]}): requests {used}")
