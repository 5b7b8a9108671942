"""Streaming-engine benchmarks (issue 11's targets), each printed with the command's settings.

``python -m benchmarks.bench_live [compute] [session] [faults] [refresh]`` (all when none is named; ``make bench``
runs all). Environment: ``ZEROGEX_BENCH_LIVE_END`` ends the replayed sessions early (New York ``HH:MM``, default
the close); the emulator runs in its own process with the documented quotas enforced.

- **compute**: stream state -> committed live levels for a full SPX chain (the CBOE export, 19,156 contracts, held
  in a live contract book) and for the default SPX window; median and p95 of repeated runs, and the write alone.
- **session**: SPY, SPX and QQQ together at the defaults (3 expirations, ±10%, 5-minute snapshots, levels every
  5 s), a whole simulated session at 10x through the emulator: latency from each snapshot instant to its live
  levels committed and readable (p50/p95/max), the engine's CPU (per wall second at 10x, and per market second
  for the real-time estimate), the capture checked against the simulated truth, and the requests by category.
- **faults**: a whole SPY session at 30x with a stream fault every 10 s (every kind, on chain, quote and bar
  streams): captured, missed (each inside a recorded outage), duplicated, untrue.
- **refresh**: the stream engine, the emulator and a real ``dagster-daemon`` sharing one replayed clock (4x): from
  each captured snapshot's event to its ``gex_levels`` materialization, and the TradeStation requests the
  refreshes made.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.live_rig import FAULTS, TARGETS, EmulatorProcess, at, replay_session, verify

REPO = Path(__file__).resolve().parents[1]
SPX_CSV = Path(os.environ.get("ZEROGEX_SPX_CSV", "/work/shared/data/cboe_spx_quotedata_2022-12-12.csv"))
DAY = "2026-11-25"


def _end(default: str) -> str:
    return f"{DAY} {os.environ.get('ZEROGEX_BENCH_LIVE_END', default)}"


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def _send_lag(emulator_stats: dict[str, object]) -> str:
    """The emulator's own delay (market seconds from a path step's start to its option batch written): a truth
    finding is the engine's only while this stays within a step."""
    lag = emulator_stats.get("option_send_lag_s") or {}
    assert isinstance(lag, dict)
    if not lag.get("count"):
        return "emulator option-stream send lag: no batch recorded"
    return (f"emulator option-stream send lag (market s from a step's start to its batch written, "
            f"{lag['count']} batches): p50 {lag['p50']:.2f}, p95 {lag['p95']:.2f} (one step = 10 s)")


def _finding_at(finding: str) -> tuple[str, pd.Timestamp]:
    """The underlying and instant a truth finding names (``"SPX 2026-11-25 15:40:00+00:00 ..."``)."""
    name, day, clock = finding.split(" ")[:3]
    return name, pd.Timestamp(f"{day} {clock}")


def _faults_near(faults: list[tuple[pd.Timestamp, str, str]], instant: pd.Timestamp, before_s: float,
                 after_s: float) -> str:
    """The faults injected from ``before_s`` before ``instant`` to ``after_s`` after it (New York times)."""
    return "; ".join(f"{t.tz_convert('America/New_York'):%H:%M:%S} {name} on {target}" for t, name, target in faults
                     if -before_s <= (t - instant).total_seconds() <= after_s) or "none"


def _late_batches_near(finding: str, emulator_stats: dict[str, object]) -> str:
    """The option batches of the finding's underlying the emulator wrote more than a step late, for steps from 30 s
    before its instant to the instant: the server had not sent those steps when the engine cut."""
    name, instant = _finding_at(finding)
    late = emulator_stats.get("late_option_batches") or []
    assert isinstance(late, list)
    near = [b for b in late if instant - pd.Timedelta(seconds=30) <= pd.Timestamp(b["step"]) <= instant
            and name in b["path"]]  # SPX: its chain ($SPX.X) and tail (SPX, SPXW) streams alike
    if not near:
        return "    the emulator wrote no batch of it more than a step late around this instant"
    return "    written late by the emulator around it: " + "; ".join(
        f"step {pd.Timestamp(b['step']).tz_convert('America/New_York'):%H:%M:%S} {b['lag_s']:.0f} s late "
        f"({b['path'].split('/')[-1][:40]})" for b in near[:6])


def bench_compute() -> None:
    from zerogex_pipeline.analytics.cboe import read_cboe_csv
    from zerogex_pipeline.live.book import UnderlyingState
    from zerogex_pipeline.live.snapshot import levels_row, snapshot_arrays, window_mask
    from zerogex_pipeline.settings import load_settings
    from zerogex_pipeline.storage.capture_store import CaptureBatch, CaptureStore
    from zerogex_pipeline.underlyings import resolve_underlying

    spx = resolve_underlying("SPX")
    export = read_cboe_csv(SPX_CSV)
    chain = export.chain
    state = UnderlyingState()
    now = pd.Timestamp(chain["snapshot_ts"].iloc[0])
    values = {name: chain[name].to_numpy(np.float64) for name in ("bid", "ask", "last", "mid", "volume",
                                                                    "open_interest", "iv", "delta", "gamma")}
    for exp, part in chain.groupby("expiration"):
        state.book.update_many(part["symbol"].tolist(), pd.Timestamp(exp).date(), part["settlement"].tolist(),
                               part["option_type"].tolist(), part["strike"].to_numpy(np.float64), 0,
                               {k: v[part.index.to_numpy()] for k, v in values.items()}, now.value)
    state.set_spot(float(chain["spot"].iloc[0]), now.value, now.value)
    with tempfile.TemporaryDirectory() as tmp:
        store = CaptureStore(load_settings({"ZEROGEX_DATA_DIR": tmp}, env_file=None))
        kinds = np.zeros(len(state.book), dtype=np.int64)
        totals, writes, computes = [], [], []
        for k in range(25):
            instant = now + pd.Timedelta(seconds=k)
            started = time.perf_counter_ns()
            view = state.book.view()
            spot = state.get_spot()
            snap = snapshot_arrays(view, window_mask(view, spot.price, 100.0), instant, spot, kinds)
            row = levels_row(spx, instant.date(), snap, 0.04, spx.dividend_yield, "bench", None, started)
            computed = time.perf_counter_ns()
            store.write(CaptureBatch(levels={"spx": [row]}))
            done = time.perf_counter_ns()
            totals.append((done - started) / 1e6)
            computes.append((computed - started) / 1e6)
            writes.append((done - computed) / 1e6)
        print(f"compute: full SPX chain ({len(snap):,} contracts, CBOE export) stream state -> live levels committed "
              f"(embedded store): median {np.median(totals):.1f} ms, p95 {_pct(totals, 95):.1f} ms "
              f"(compute median {np.median(computes):.1f} ms, write median {np.median(writes):.1f} ms; target <= 50 ms)")


def bench_session() -> None:
    end = _end("16:03")
    with tempfile.TemporaryDirectory() as tmp:
        r = replay_session(Path(tmp) / "data", f"{DAY} 09:24", end, ("SPY", "SPX", "QQQ"), expirations=3,
                           distance_pct=10.0, speed=10.0, settle_s=0.25, heartbeat_s=5.0, tick_s=0.1, interval_s=5.0)
        check = verify(r)
    lat = r.stats.snapshot_latency_s
    market_s = (r.end - r.start).total_seconds()
    intervals = r.stats.levels_rows
    used = r.emulator_stats["requests"]
    print(f"session: SPY+SPX+QQQ x 3 expirations, ±10%, 10x, {DAY} 09:24..{end[-5:]} ET "
          f"({market_s / 3600:.2f} market hours, {r.wall_s:.0f} s wall):")
    print(f"  snapshot instant -> live levels committed: p50 {_pct(lat, 50):.3f} s, p95 {_pct(lat, 95):.3f} s, "
          f"max {max(lat) if lat else float('nan'):.3f} s over {len(lat)} instants (target p95 <= 1 s)")
    print(f"  each instant (s, in order from the open): {' '.join(f'{x:.2f}' for x in lat)}")
    print(f"  capture: {check.captured_pairs} of {check.expected_pairs} (instant, expiration) captured, "
          f"{len(check.missing_outside_outages)} missing outside outages, {check.duplicates} duplicated, "
          f"{len(check.mismatches)} untrue; feed lag {sorted(set(check.lags_s))} s; not streamed: "
          f"{r.stats.not_streamed or 'none'}")
    for mismatch in check.mismatches[:20]:
        print(f"  untrue: {mismatch}")
        print(_late_batches_near(mismatch, r.emulator_stats))
    print(f"  {_send_lag(r.emulator_stats)}")
    print(f"  engine CPU {r.cpu_s:.1f} s = {100 * r.cpu_s / r.wall_s:.1f}% of one core at 10x; "
          f"{100 * r.cpu_s / market_s:.2f}% per market second ({intervals} live-levels rows; compute median "
          f"{np.median(r.stats.compute_ms):.1f} ms, p95 {_pct(r.stats.compute_ms, 95):.1f} ms)")
    print(f"  requests {used}; HTTP statuses {r.emulator_stats['statuses']}; max option streams open at once "
          f"{r.emulator_stats['max_open_option_streams']} (limit 10); stream connects {used.get('stream-connect', 0)} "
          f"in {r.wall_s / 60:.1f} wall minutes (quota 500 per 5 min, enforced); re-centrings {r.stats.recenters}")


def bench_faults() -> None:
    end = _end("16:03")
    schedule = [(name, TARGETS[i % len(TARGETS)]) for i, name in enumerate(FAULTS)]
    schedule += [(name, TARGETS[(i + 1) % len(TARGETS)]) for i, name in enumerate(FAULTS)]
    with tempfile.TemporaryDirectory() as tmp:
        r = replay_session(Path(tmp) / "data", f"{DAY} 09:24", end, ("SPY",), expirations=3, distance_pct=10.0,
                           speed=30.0, settle_s=0.3, heartbeat_s=1.0, tick_s=0.05, interval_s=5.0, faults=schedule,
                           fault_every_s=10.0)
        check = verify(r)
    kinds = sorted({name for _, name, _ in r.faults})
    outages = sum(len(v) for v in r.outages.values())
    print(f"faults: SPY x 3 expirations at 30x, {DAY} 09:24..{end[-5:]} ET, {len(r.faults)} faults ({', '.join(kinds)})"
          f": {check.captured_pairs} of {check.expected_pairs} (instant, expiration) captured, "
          f"{check.expected_pairs - check.captured_pairs} lost inside {outages} recorded outages, "
          f"{len(check.missing_outside_outages)} missing outside them, {check.duplicates} duplicated, "
          f"{len(check.mismatches)} untrue; requests {r.emulator_stats['requests']}")
    for mismatch in check.mismatches:
        print(f"  untrue: {mismatch}")
        print(_late_batches_near(mismatch, r.emulator_stats))
        print(f"    faults from 2 min before it to 30 s after: {_faults_near(r.faults, _finding_at(mismatch)[1], 120, 30)}")
    print(f"  {_send_lag(r.emulator_stats)}")
    for instant, symbol, expiration in check.missing_outside_outages:  # what happened around each, to diagnose
        near = _faults_near(r.faults, instant, 600, 600)
        spans = [f"{label} {a.tz_convert('America/New_York'):%H:%M:%S}-{b.tz_convert('America/New_York'):%H:%M:%S}"
                 for label, spans_ in r.outages.items() for a, b in spans_ if abs((a - instant).total_seconds()) <= 600]
        print(f"  missing outside outages: {instant.tz_convert('America/New_York'):%H:%M} {symbol} {expiration}; "
              f"faults within 10 min: {near}; outages within 10 min: {'; '.join(spans) or 'none'}")


def bench_refresh(speed: float = 4.4, captures: int = 6) -> None:
    # 4.4x: a capture every 68.2 s of wall time, so successive captures fall 3.2 s later in the daemon's 5-second
    # sensor loop and the six of them sample its phase (at 4x every capture met the loop at the same point)
    from zerogex_pipeline.market_calendar import REPLAY_CLOCK_ENV, ReplayClock

    tmp = Path(tempfile.mkdtemp(prefix="zerogex-refresh-"))
    home = tmp / "dagster_home"
    home.mkdir()
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    import dagster as dg

    instance = dg.DagsterInstance.get()  # its SQLite storage made before the daemon and the engine open it too
    start = at(f"{DAY} 09:28")
    clock = ReplayClock(start, speed, time.time() + 3.0)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZEROGEX_", "TRADESTATION_", "DAGSTER_"))}
    env.update({REPLAY_CLOCK_ENV: clock.spec(), "DAGSTER_HOME": str(home), "ZEROGEX_DATA_DIR": str(tmp / "data"),
                "ZEROGEX_UNDERLYINGS": "SPY", "PYTHONUNBUFFERED": "1"})
    os.environ[REPLAY_CLOCK_ENV] = env[REPLAY_CLOCK_ENV]
    emulator = EmulatorProcess(None, speed, 5.0, 0.1, True, log_path=tmp / "emulator.log", env=env)
    env.update({"ZEROGEX_DATA_SOURCE": "tradestation", "TRADESTATION_API_URL": emulator.url,
                "TRADESTATION_AUTH_URL": emulator.url, "TRADESTATION_CLIENT_ID": "bench",
                "TRADESTATION_CLIENT_SECRET": "bench-secret", "TRADESTATION_REFRESH_TOKEN": "bench-refresh"})
    bin_dir = Path(sys.executable).parent
    procs = []
    try:
        for name, cmd in (("daemon", [str(bin_dir / "dagster-daemon"), "run", "-w", "workspace.yaml"]),
                          ("stream", [str(bin_dir / "zerogex"), "stream"])):
            log = open(tmp / f"{name}.log", "w")  # noqa: SIM115
            procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True))
        wanted = [at(f"{DAY} 09:30") + pd.Timedelta(minutes=5 * k) for k in range(captures)]
        deadline = time.monotonic() + (5 * 60 * captures) / speed + 180
        results: dict[pd.Timestamp, float] = {}
        before = None
        while time.monotonic() < deadline and len(results) < captures:
            time.sleep(2)
            caps = {pd.Timestamp(str(r.asset_materialization.metadata["snapshot_ts"].value)): r.timestamp
                    for r in instance.fetch_materializations(
                        dg.AssetRecordsFilter(asset_key=dg.AssetKey(["spy", "captured_quotes"])), limit=100).records
                    if r.asset_materialization and "snapshot_ts" in r.asset_materialization.metadata}
            if before is None and caps:
                before = emulator.stats()["requests"]
            for record in instance.fetch_materializations(dg.AssetKey(["spy", "gex_levels"]), limit=100).records:
                run = instance.get_run_by_id(record.run_id)
                tag = (run.tags.get("zerogex/refresh", "") if run else "")
                for snapshot, captured_at in caps.items():
                    label = f"spy-{snapshot.tz_convert('America/New_York'):%Y-%m-%dT%H:%M}"
                    if tag == label and snapshot in wanted and snapshot not in results:
                        results[snapshot] = record.timestamp - captured_at
        after = emulator.stats()["requests"]
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=20)
        emulator.stop()
        os.environ.pop(REPLAY_CLOCK_ENV, None)
    used = {k: v - (before or {}).get(k, 0) for k, v in after.items() if v - (before or {}).get(k, 0)}
    lat = list(results.values())
    print(f"refresh: captured snapshot -> its gex_levels row through dagster-daemon (SPY, 3 expirations, replay at "
          f"{speed:g}x): {len(lat)} of {captures} snapshots, p50 {_pct(lat, 50):.1f} s, max "
          f"{max(lat) if lat else float('nan'):.1f} s (target <= 20 s; each: "
          f"{', '.join(f'{v:.1f}' for _, v in sorted(results.items()))}); TradeStation requests from the first capture "
          f"on: {used or 'none'} (target: no REST request; stream connects are the engine's); logs in {tmp}")


SECTIONS = {"compute": bench_compute, "session": bench_session, "faults": bench_faults, "refresh": bench_refresh}


def main(argv: list[str] | None = None) -> None:
    names = [a for a in (sys.argv[1:] if argv is None else argv) if a in SECTIONS] or list(SECTIONS)
    print("== live engine benchmarks ==")
    for name in names:
        SECTIONS[name]()


if __name__ == "__main__":
    main()
