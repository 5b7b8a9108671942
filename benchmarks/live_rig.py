"""A simulated session replayed through the emulator over real HTTP, with stream faults, checked against truth.

Used by the live-engine tests (a short session) and by ``bench_live`` (full sessions). The engine and the
emulator share one replay clock, so "the market at instant T" means the same thing on both sides. After the
run, :func:`verify` checks the capture:

- **complete**: every (snapshot instant, expiration) is captured unless an outage of a stream it needs (the
  spot stream, its chain stream or its tail quote streams), as the engine recorded it from the last message
  heard to the new connection's complete snapshot, covers the instant;
- **unique**: no (instant, contract) twice;
- **true**: every captured (instant, expiration) holds what the simulated market quoted within the feed's
  delivery lag of the instant (bid, ask, open interest; IV and gamma for chain-stream rows; after the wire's
  rounding): its chain stream's rows all at one moment (10-second step), each tail quote stream's at one of two
  adjacent steps, its spot the market at its own time, and quotes and spot one step apart at most (the emulator's
  10-second resolution): no stale or mixed-moment state is ever stored as a snapshot.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import requests

from zerogex_pipeline import market_calendar
from zerogex_pipeline.live.clock import EngineClock
from zerogex_pipeline.live.engine import EngineOptions, SessionStats, StreamEngine
from zerogex_pipeline.live.tradestation_feed import TradeStationFeed
from zerogex_pipeline.settings import Settings, load_settings
from zerogex_pipeline.sources.simulated import instant
from zerogex_pipeline.storage.capture_store import CaptureStore
from zerogex_pipeline.tradestation.client import TradeStationClient
from zerogex_pipeline.tradestation.config import TradeStationConfig
from zerogex_pipeline.tradestation.emulator.market import num
from zerogex_pipeline.underlyings import Underlying, resolve_underlying

NY = "America/New_York"


def at(text: str) -> pd.Timestamp:
    """The UTC instant of a New York wall-clock time."""
    return pd.Timestamp(text, tz=NY).tz_convert("UTC")


class EmulatorProcess:
    """``zerogex emulator`` in its own process (its streams must not share the engine's GIL), on a free port."""

    def __init__(self, at_: pd.Timestamp | None, speed: float, heartbeat_s: float, tick_s: float, quotas: bool,
                 max_proximity: int = 200, log_path: Path | None = None, env: dict[str, str] | None = None) -> None:
        """``at_`` ``None``: the emulator follows ``$ZEROGEX_CLOCK`` of ``env`` (a replay shared with other processes)."""
        args = [sys.executable, "-m", "zerogex_pipeline.cli", "emulator", "--port", "0", "--heartbeat", str(heartbeat_s),
                "--tick", str(tick_s), "--max-strike-proximity", str(max_proximity)]
        if at_ is not None:
            args += ["--at", at_.isoformat(), "--speed", str(speed)]
        if not quotas:
            args.append("--no-quotas")
        log = open(log_path, "w") if log_path is not None else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        found = re.search(r"on (http://\S+?);", line)
        if not found:
            self.proc.kill()
            raise RuntimeError(f"the emulator did not start: {line!r}")
        self.url = found.group(1)

    def now(self) -> tuple[pd.Timestamp, float]:
        body = requests.get(f"{self.url}/__emulator/clock", timeout=5).json()
        return pd.Timestamp(body["now"]), float(body["speed"])

    def faults(self, **switches: Any) -> None:
        requests.post(f"{self.url}/__emulator/faults", json=switches, timeout=5).raise_for_status()

    def expire_tokens(self) -> None:
        requests.post(f"{self.url}/__emulator/expire-tokens", timeout=5).raise_for_status()

    def stats(self) -> dict[str, Any]:
        body: dict[str, Any] = requests.get(f"{self.url}/__emulator/stats", timeout=5).json()
        return body

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _reconnect(em: EmulatorProcess, path: str, **switches: Any) -> None:
    em.faults(open_fault_path=path, goaway_open=1, **switches)


def _token_expiry(em: EmulatorProcess, path: str) -> None:
    em.expire_tokens()
    _reconnect(em, path)


def _token_rotation(em: EmulatorProcess, path: str) -> None:
    em.faults(rotate_refresh_tokens=True)
    _token_expiry(em, path)


FAULTS: dict[str, Callable[[EmulatorProcess, str], None]] = {
    "goaway-error": lambda em, path: _reconnect(em, path, goaway_shape="error"),
    "goaway-status": lambda em, path: _reconnect(em, path, goaway_shape="status"),
    "silent-death": lambda em, path: em.faults(open_fault_path=path, die_open=1),
    "heartbeat-only-starvation": lambda em, path: em.faults(open_fault_path=path, starve_open=1),
    "dual-logon": lambda em, path: em.faults(open_fault_path=path, dual_logon_open=1),
    "5xx-on-connect": lambda em, path: _reconnect(em, path, server_error_requests=2),
    "token-expiry": _token_expiry,
    "token-rotation": _token_rotation,
}
"""Faults injected into streams already open (each forces the stream to end or go quiet at its next tick)."""
TARGETS = ("options/chains", "stream/quotes", "stream/barcharts")


@dataclass
class RigResult:
    """What a replayed session did."""

    settings: Settings
    underlyings: tuple[Underlying, ...]
    stats: SessionStats
    engine: StreamEngine
    clock: EngineClock
    emulator_stats: dict[str, Any]
    faults: list[tuple[pd.Timestamp, str, str]]
    wall_s: float
    cpu_s: float
    start: pd.Timestamp
    end: pd.Timestamp
    outages: dict[int, list[tuple[pd.Timestamp, pd.Timestamp]]] = field(default_factory=dict)


def _config(url: str, data_dir: Path, heartbeat_s: float) -> TradeStationConfig:
    return TradeStationConfig(
        client_id="rig-client", client_secret="rig-secret", refresh_token="rig-refresh", api_url=url, auth_url=url,
        data_dir=data_dir, connect_timeout_s=5.0, read_timeout_s=10.0, max_retries=3, backoff_base_s=0.05,
        backoff_max_s=0.2, max_rate_limit_wait_s=5.0, stream_idle_timeout_s=heartbeat_s * 2.5,
        stream_starvation_s=heartbeat_s * 4, stream_max_reconnects=6,
    )


def replay_session(data_dir: Path, start: str, end: str, underlyings: tuple[str, ...] = ("SPY",), expirations: int = 1,
                   distance_pct: float = 10.0, speed: float = 20.0, faults: list[tuple[str, str]] | None = None,
                   fault_every_s: float = 0.0, interval_s: float = 5.0, settle_s: float = 0.1,
                   heartbeat_s: float = 0.25, tick_s: float = 0.02, quotas: bool = True,
                   max_proximity: int = 200, log_levels: bool = False) -> RigResult:
    """Replay ``start``..``end`` (New York) at ``speed`` through the emulator (its own process, the documented
    quotas enforced unless ``quotas`` is false); inject ``faults`` (name, target path) one every ``fault_every_s``
    wall seconds, cycling."""
    underlying_names = ",".join(underlyings)
    settings = load_settings({"ZEROGEX_DATA_DIR": str(data_dir), "ZEROGEX_UNDERLYINGS": underlying_names,
                              "ZEROGEX_EXPIRATIONS": str(expirations), "ZEROGEX_STRIKE_DISTANCE": str(distance_pct)},
                             env_file=None)
    us = tuple(resolve_underlying(n) for n in underlyings)
    stop_at = at(end)
    injected: list[tuple[pd.Timestamp, str, str]] = []
    data_dir.mkdir(parents=True, exist_ok=True)
    em = EmulatorProcess(at(start), speed, heartbeat_s, tick_s, quotas, max_proximity, data_dir / "emulator.log")
    try:
        now, em_speed = em.now()
        clock = EngineClock(now, speed=em_speed)
        client = TradeStationClient(_config(em.url, data_dir, heartbeat_s))
        feed = TradeStationFeed(client, clock, settings.bar_minutes, liveness_s=heartbeat_s * 2,
                                retry_pauses_s=(0.3, 0.6, 1.2), max_proximity=max_proximity)
        options = EngineOptions(underlyings=us, expirations=expirations, distance_pct=distance_pct,
                                snapshot_minutes=settings.snapshot_minutes, interval_s=interval_s, settle_s=settle_s,
                                rate=settings.risk_free_rate, announce_alerts=False)
        engine = StreamEngine(feed, clock, CaptureStore(settings), options, reporter=None)
        done = threading.Event()

        def director() -> None:
            schedule = list(faults or [])
            k = 0
            next_fault = time.monotonic() + fault_every_s
            while not done.wait(0.05):
                if clock.now() >= stop_at:
                    engine.stop()
                    return
                if schedule and fault_every_s > 0 and time.monotonic() >= next_fault:
                    name, target = schedule[k % len(schedule)]
                    FAULTS[name](em, target)
                    injected.append((clock.now(), name, target))
                    k += 1
                    next_fault = time.monotonic() + fault_every_s

        thread = threading.Thread(target=director, daemon=True)
        if not log_levels:
            import logging

            logging.getLogger("zerogex.live").setLevel(logging.WARNING)
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        wall0 = time.monotonic()
        thread.start()
        sessions = engine.run()
        wall = time.monotonic() - wall0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        done.set()
        thread.join(timeout=5)
        emulator_stats = em.stats()
    finally:
        em.stop()
    outages = {s.id: [(clock.market_at(a), clock.market_at(b)) for a, b in s.outages]
               + ([(clock.market_at(s.stale_since), stop_at)] if s.stale_since is not None else [])
               + ([(clock.market_at(s.down_since), stop_at)] if s.down_since is not None and not s.closed else [])
               for s in feed.registry.all()}
    return RigResult(settings, us, sessions[0], engine, clock, emulator_stats, injected, wall,
                     (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime), at(start), stop_at, outages)


@dataclass
class Verification:
    """The capture checked against the simulated truth (see the module docstring)."""

    instants: int
    expected_pairs: int
    captured_pairs: int
    missing_outside_outages: list[tuple[pd.Timestamp, str, dt.date]]
    duplicates: int
    rows_checked: int
    mismatches: list[str]
    lags_s: list[float] = field(default_factory=list)
    """Per captured (instant, expiration): seconds from the market moment its quotes are from to the instant."""

    @property
    def ok(self) -> bool:
        return not self.missing_outside_outages and not self.duplicates and not self.mismatches


def verify(result: RigResult, margin_s: float = 0.0) -> Verification:
    """Check ``result``'s capture (see the module docstring); ``margin_s`` widens outages (market seconds)."""
    store = CaptureStore(result.settings)
    feed = result.engine.feed
    margin = pd.Timedelta(seconds=margin_s)
    missing: list[tuple[pd.Timestamp, str, dt.date]] = []
    mismatches: list[str] = []
    lags: list[float] = []
    expected = captured_pairs = rows = duplicates = 0
    day = result.start.tz_convert(NY).date()
    session = market_calendar.session(day)
    times = session.snapshot_times(result.settings.snapshot_minutes)
    first_capturable = result.start + pd.Timedelta(minutes=5) * 0
    times = times[(times > first_capturable) & (times < result.end)]
    statuses = {s.id: s for s in feed.registry.all()}
    for u in result.underlyings:
        got = store.captured_quotes(u, day)
        duplicates += int(got.duplicated(["snapshot_ts", "symbol"]).sum())
        rows += len(got)
        pairs = {(pd.Timestamp(t), pd.Timestamp(e).date()) for t, e in zip(got["snapshot_ts"], got["expiration"],
                                                                         strict=True)}
        captured_pairs += len(pairs)
        spot_ids = [s.id for s in statuses.values() if s.kind == "spot"]
        for (t, e) in sorted(pairs):
            part = got[(got["snapshot_ts"] == t) & (got["expiration"] == pd.Timestamp(e))]
            mismatches += _compare_truth(u, session, t, e, part, lags)
        exps = sorted({e for _, e in result.stats.captured.get(u.key, set())}
                      | {e for _, e in result.stats.missed.get(u.key, {})})
        for t in times:
            for e in exps:
                expected += 1
                if (t, e) in pairs:
                    continue
                needed = spot_ids + [s.id for s in statuses.values() if s.label.startswith(f"{u.name} {e} ")]
                covered = any(a - margin <= t <= b + margin for sid in needed for a, b in result.outages.get(sid, []))
                if not covered:
                    missing.append((t, u.name, e))
    store.close()
    return Verification(len(times), expected, captured_pairs, missing, duplicates, rows, mismatches, lags)


STEP = pd.Timedelta(seconds=10)
CANDIDATE_STEPS = (0, -1, -2, -3, 1)
"""Steps (10 s of market time) around the instant a captured expiration may come from: the feed's delivery lag
under load, or a cut slightly after the instant. Older than that is stale."""


def _compare_truth(u: Underlying, session: market_calendar.TradingSession, t: pd.Timestamp, e: dt.date,
                   part: pd.DataFrame, lags: list[float] | None = None) -> list[str]:
    """Differences between one captured (instant, expiration) and the simulated market.

    The chain stream's rows must all be the market at one step within :data:`CANDIDATE_STEPS` of the instant (a
    stream's batch is applied whole); the tail quote rows, which come from several quote streams, each the market
    at one of two adjacent steps; the spot the market at its own time (``spot_ts``); and all of them at most one
    step apart (one moment, at the feed's 10-second resolution). ``lags`` collects ``t - step``, seconds.
    """
    out = []
    spot_step = instant.step_time(u, session, pd.Timestamp(part["spot_ts"].iloc[0]))
    spot = float(num(instant.spot_at(u, session, spot_step)))
    if not (part["spot"] == spot).all() or not (part["spot_ts"] == spot_step).all():
        out.append(f"{u.name} {t} {e}: spot {part['spot'].iloc[0]} at {part['spot_ts'].iloc[0]} is not the market's")
    moments = []
    base = instant.step_time(u, session, t)
    for kind, rows in part.groupby("stream"):
        mask = functools.cache(functools.partial(_rows_at_step, u, session, base, e, rows))  # priced when first asked
        found = next(([k] for k in CANDIDATE_STEPS if mask(k).all()), None)
        if found is None and kind == "quotes":  # several streams: each may be at either of two adjacent steps
            found = next(([k, k + 1] for k in sorted(CANDIDATE_STEPS)[:-1] if (mask(k) | mask(k + 1)).all()), None)
        if found is None:  # which steps its rows come from: split = mixed, one = stale
            shares = ", ".join(f"{int(k * STEP.total_seconds()):+d} s: {int(mask(k).sum())}"
                               for k in sorted({*CANDIDATE_STEPS, -4, -5, -6}) if mask(k).any())
            out.append(f"{u.name} {t} {e}: the captured {kind}-stream quotes are not the market at "
                       f"{'one step' if kind == 'chain' else 'two adjacent steps'} from {-3 * STEP} to {STEP} "
                       f"around the instant; of its {len(rows)} rows, those equal to the market at each step: "
                       f"{shares or 'none'}")
            continue
        moments += [base + k * STEP for k in found]
        if lags is not None:
            lags.append((t - (base + found[0] * STEP)).total_seconds())
    if moments and (max([*moments, spot_step]) - min([*moments, spot_step])) > STEP:
        out.append(f"{u.name} {t} {e}: quotes of {sorted(set(moments))} and spot of {spot_step}: not one moment")
    return out


def _rows_at_step(u: Underlying, session: market_calendar.TradingSession, base: pd.Timestamp, e: dt.date,
                  rows: pd.DataFrame, k: int) -> np.ndarray:
    """Per row of ``rows``: equal to the market ``k`` steps from ``base``."""
    strikes = np.unique(rows["strike"].to_numpy())
    return _row_matches(rows, instant.window_rows(u, session, base + k * STEP, e, strikes).set_index("symbol"))


def _wire_greek(value: float, iv: float, digits: int) -> float:
    """A greek as the emulator's chain stream sends it: rounded, or absent (NaN) when the IV is undefined."""
    return float(num(value, digits)) if np.isfinite(iv) else float("nan")


def _row_matches(part: pd.DataFrame, truth: pd.DataFrame) -> np.ndarray:
    """Per row of ``part``: equal to ``truth`` (bid, ask, OI; IV and gamma for chain-stream rows, after the wire's
    rounding)."""
    out = np.zeros(len(part), dtype=bool)
    for i, r in enumerate(part.itertuples()):
        if r.symbol not in truth.index:
            continue
        x = truth.loc[r.symbol]
        checks = [(float(num(x["bid"])), r.bid), (float(num(x["ask"])), r.ask),
                  (float(x["open_interest"]), float(r.open_interest))]
        if r.stream == "chain":  # no IV on the wire (a contract at its settlement): no greek at all, stored NaN
            checks += [(_wire_greek(x["iv"], x["iv"], 4), r.iv), (_wire_greek(x["gamma"], x["iv"], 6), r.gamma)]
        out[i] = all(want == have or (np.isnan(want) and np.isnan(have)) for want, have in checks)
    return out
