"""A year of SPY backfilled through the real ``dagster-daemon``, twice (issue 12's targets).

``python -m benchmarks.bench_backfill_year`` (``make bench`` runs it with the others). Defaults: the 252 NYSE
sessions ending 2025-12-31, SPY at the pipeline's defaults (3 expirations, 5-minute snapshots, ±10% strikes,
simulated source, the embedded DuckDB store), the repo's ``dagster.yaml`` (run queue, 2 backfill runs at once,
``tradestation_api`` pool of 2) in a temporary ``DAGSTER_HOME``.

1. ``dagster-daemon run -w workspace.yaml`` starts (its code server loads the definitions) in its own process group;
   the two schedules are stopped first so nothing but the backfill runs (the sensors keep ticking, as in
   production, and are measured with the rest).
2. The backfill of the year x every expiration slot is submitted the way ``zerogex backfill`` does, and the
   benchmark waits for the daemon to finish it. Wall time runs from the submission to the backfill's end.
3. CPU: every process of the daemon's tree (daemon, code server, run workers, their helpers) is sampled every
   0.5 s (``psutil``, user + system of each process, last value seen), plus this process's own CPU (submission and
   polling); a second figure, ``getrusage(RUSAGE_CHILDREN)`` after the daemon is stopped minus the tree's CPU at the
   start, counts every reaped descendant. The larger of the two is reported per trading day.
4. The same backfill is submitted again; every table's row count and the digest of its rows (``table_digests``) must
   be identical after both.

Environment: ``ZEROGEX_BENCH_YEAR_DAYS`` (252), ``ZEROGEX_BENCH_YEAR_END`` (2025-12-31), ``ZEROGEX_BENCH_YEAR_REPEAT``
(1: also the second, identical backfill; 0 skips it), ``ZEROGEX_BENCH_YEAR_TIMEOUT_S`` (7200),
``ZEROGEX_BACKFILL_DAYS_PER_RUN`` (the pipeline's setting, passed through), ``ZEROGEX_BENCH_YEAR_KEEP`` (keep the
temporary folder and print it).
Targets: wall <= 30 min for 252 days on the 2-core machine, CPU <= 5 s per trading day, identical tables.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TABLES = ("underlying_bars", "option_chain_snapshots", "gex_surface", "gex_levels")
TARGET_WALL_S = 30 * 60.0
TARGET_CPU_PER_DAY_S = 5.0
SCHEDULES = ("spy_end_of_day", "spy_evening_backtest")


@dataclass
class TreeCpu:
    """CPU seconds of a process and all its descendants, sampled (user + system, last value seen per process)."""

    root: int
    seen: dict[tuple[int, float], float] = field(default_factory=dict)
    peak_processes: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> float:
        try:
            procs = [psutil.Process(self.root)]
            procs += procs[0].children(recursive=True)
        except psutil.NoSuchProcess:
            return self.total()
        self.peak_processes = max(self.peak_processes, len(procs))
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                times = p.cpu_times()
                self.seen[(p.pid, p.create_time())] = times.user + times.system
        return self.total()

    def total(self) -> float:
        return sum(self.seen.values())

    def start(self, every_s: float = 0.5) -> None:
        def loop() -> None:
            while not self._stop.wait(every_s):
                self.sample()

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()

    def stop(self) -> float:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self.sample()


def _self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _environment(home: Path, data: Path, first: dt.date) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADESTATION_", "ZEROGEX_", "DAGSTER_"))}
    env.update(DAGSTER_HOME=str(home), ZEROGEX_DATA_DIR=str(data), ZEROGEX_DATA_SOURCE="simulated",
               ZEROGEX_UNDERLYINGS="SPY", ZEROGEX_FIRST_DATE=first.isoformat(), PYTHONUNBUFFERED="1",
               PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    if os.environ.get("ZEROGEX_BACKFILL_DAYS_PER_RUN"):
        env["ZEROGEX_BACKFILL_DAYS_PER_RUN"] = os.environ["ZEROGEX_BACKFILL_DAYS_PER_RUN"]
    return env


def table_digests(path: Path) -> dict[str, tuple[int, str]]:
    """Rows and a digest of every row's values (declared columns) of each core table.

    The digest is the sum over rows of DuckDB's 64-bit ``hash`` of the row's columns, computed in the database: two
    tables with the same rows (any order) have the same count and digest, and one changed value changes it. (An
    MD5 of every row read into Python had not finished after 10 minutes for a year of chain rows.)
    """
    import duckdb

    from zerogex_pipeline.schemas import ALL_SCHEMAS

    out: dict[str, tuple[int, str]] = {}
    with duckdb.connect(str(path), read_only=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        for name in TABLES:
            cols = ", ".join(f'"{c}"' for c in ALL_SCHEMAS[name].column_names)
            row = conn.execute(f"SELECT count(*), sum(hash({cols})::HUGEINT) FROM spy.{name}").fetchone()
            assert row is not None
            out[name] = (int(row[0]), str(row[1]))
    return out


def _wait_for_daemon(instance: Any, daemon: subprocess.Popen[bytes], log: Path, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise RuntimeError(f"dagster-daemon exited with {daemon.returncode}: {log.read_text()[-3000:]}")
        beats = instance.get_daemon_heartbeats()
        if {"BACKFILL", "QUEUED_RUN_COORDINATOR", "SENSOR"} <= set(beats):
            return
        time.sleep(1.0)
    raise RuntimeError(f"dagster-daemon not heartbeating after {timeout_s:.0f}s: {log.read_text()[-3000:]}")


def run_backfill(instance: Any, sessions: list[dt.date], title: str, timeout_s: float) -> tuple[str, float, str]:
    """Submit the backfill like ``zerogex backfill`` and wait for it; returns (id, wall seconds, final status)."""
    from dagster._core.definitions.assets.graph.asset_graph import AssetGraph
    from dagster._core.execution.backfill import BulkActionStatus

    from zerogex_pipeline.cli.progress import ProgressPrinter, backfill_counts
    from zerogex_pipeline.definitions import build_underlying_assets
    from zerogex_pipeline.defs.automation.backfills import submit_trading_day_backfill
    from zerogex_pipeline.settings import load_settings
    from zerogex_pipeline.underlyings import resolve_underlying

    settings = load_settings(env_file=None)
    spy = resolve_underlying("SPY")
    started = time.monotonic()
    graph = AssetGraph.from_assets(build_underlying_assets(spy, settings))
    backfill_id = submit_trading_day_backfill(instance, graph, spy, sessions, settings.expirations, title=title)
    printer = ProgressPrinter(quiet_seconds=60.0)
    ended = {BulkActionStatus.COMPLETED_SUCCESS, BulkActionStatus.COMPLETED_FAILED, BulkActionStatus.FAILED,
             BulkActionStatus.CANCELED, BulkActionStatus.COMPLETED}
    while True:
        backfill = instance.get_backfill(backfill_id)
        counts = backfill_counts(instance, backfill)
        printer.update(counts.done, counts.total, counts.failed, f"{counts.running} run(s) running")
        if backfill.status in ended:
            return backfill_id, time.monotonic() - started, backfill.status.value
        if time.monotonic() - started > timeout_s:
            return backfill_id, time.monotonic() - started, f"TIMEOUT ({backfill.status.value})"
        time.sleep(2.0)


def run_counts(instance: Any, backfill_id: str) -> dict[str, Any]:
    """Runs of a backfill per asset selection, and their summed worker wall time."""
    import dagster as dg
    from dagster._core.storage.tags import BACKFILL_ID_TAG

    runs = instance.get_runs(dg.RunsFilter(tags={BACKFILL_ID_TAG: backfill_id}))
    by: dict[str, int] = {}
    busy = 0.0
    for run in runs:
        name = "+".join(sorted(k.path[-1] for k in (run.asset_selection or [])))
        by[name] = by.get(name, 0) + 1
        stats = instance.get_run_stats(run.run_id)
        if stats.start_time and stats.end_time:
            busy += stats.end_time - stats.start_time
    return {"runs": len(runs), "by_selection": by, "run_wall_s_sum": round(busy, 1),
            "statuses": sorted({r.status.value for r in runs})}


@contextlib.contextmanager
def running_daemon(env: dict[str, str], log: Path, instance: Any) -> Any:
    """``dagster-daemon run`` in its own process group, heartbeating; stopped (and reaped) on exit."""
    with log.open("ab") as out:
        daemon = subprocess.Popen([str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"], cwd=REPO, env=env,
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_daemon(instance, daemon, log)
        yield daemon
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()


def measured_backfill(env: dict[str, str], log: Path, instance: Any, sessions: list[dt.date], title: str,
                      timeout_s: float) -> dict[str, Any]:
    """One backfill through a fresh daemon: wall, status, runs, and CPU measured both ways (module docstring)."""
    children_before = _children_cpu()
    with running_daemon(env, log, instance) as daemon:
        tree = TreeCpu(daemon.pid)
        tree_start = tree.sample()
        self_start = _self_cpu()
        load_start = os.getloadavg()
        tree.start()
        backfill_id, wall, status = run_backfill(instance, sessions, title, timeout_s)
        tree_cpu = tree.stop() - tree_start
        self_cpu = _self_cpu() - self_start
        load_end = os.getloadavg()
    # every reaped descendant since the daemon started, minus what the tree had spent before the submission
    reaped = _children_cpu() - children_before - tree_start
    cpu = max(tree_cpu, reaped) + self_cpu
    return {"backfill": backfill_id, "status": status, "wall_s": round(wall, 1), "tree_cpu_s": round(tree_cpu, 1),
            "rusage_children_cpu_s": round(reaped, 1), "submitter_cpu_s": round(self_cpu, 1), "cpu_s": round(cpu, 1),
            "cpu_per_day_s": round(cpu / len(sessions), 2), "peak_processes": tree.peak_processes,
            "load_start": [round(x, 2) for x in load_start], "load_end": [round(x, 2) for x in load_end],
            **run_counts(instance, backfill_id)}


def main() -> None:
    days = int(os.environ.get("ZEROGEX_BENCH_YEAR_DAYS", "252"))
    end = dt.date.fromisoformat(os.environ.get("ZEROGEX_BENCH_YEAR_END", "2025-12-31"))
    repeat = os.environ.get("ZEROGEX_BENCH_YEAR_REPEAT", "1") != "0"
    timeout_s = float(os.environ.get("ZEROGEX_BENCH_YEAR_TIMEOUT_S", "7200"))
    from benchmarks.load_history import trading_days

    sessions = trading_days(days, end)
    folder = Path(tempfile.mkdtemp(prefix="zerogex-bench-year-"))
    home, data = folder / "dagster_home", folder / "data"
    home.mkdir(parents=True)
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    env = _environment(home, data, sessions[0])
    saved = {k: os.environ.get(k) for k in env if k.startswith(("DAGSTER_", "ZEROGEX_"))}
    os.environ.update({k: v for k, v in env.items() if k.startswith(("DAGSTER_", "ZEROGEX_"))})
    load = os.getloadavg()
    print(f"== backfill of {len(sessions)} SPY trading days {sessions[0]}..{sessions[-1]} through dagster-daemon "
          f"(defaults: 3 expirations, 5-min snapshots, ±10%, embedded DuckDB; {os.cpu_count()} CPUs; "
          f"load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}) ==", flush=True)
    for name in SCHEDULES:
        subprocess.run([str(BIN / "dagster"), "schedule", "stop", name, "-w", "workspace.yaml"], cwd=REPO, env=env,
                       check=True, capture_output=True)
    import dagster as dg

    log = folder / "daemon.log"
    results: dict[str, Any] = {"days": len(sessions), "range": f"{sessions[0]}..{sessions[-1]}"}
    try:
        with dg.DagsterInstance.get() as instance:
            first = measured_backfill(env, log, instance, sessions, f"bench year {sessions[0]}..{sessions[-1]}",
                                      timeout_s)
            results["first"] = first
            digests = table_digests(data / "zerogex.duckdb")
            results["tables"] = {k: v[0] for k, v in digests.items()}
            if repeat:
                second = measured_backfill(env, log, instance, sessions, "bench year again", timeout_s)
                again = table_digests(data / "zerogex.duckdb")
                second["identical_tables"] = again == digests
                if again != digests:
                    second["differences"] = {k: [digests[k], again[k]] for k in TABLES if digests[k] != again[k]}
                results["second"] = second
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    print(json.dumps(results, indent=2))
    scale = 252 / len(sessions)
    # The targets hold for a year: a shorter run pays the same fixed costs (daemon ticks between dependent runs, run
    # start-up, the daemon's own CPU) over fewer days, so its scaled figures overstate a year's.
    def verdict(ok: bool) -> str:
        if len(sessions) < 252:
            return f"not judged ({len(sessions)} < 252 days: fixed costs weigh more, the scaled figure is an upper bound)"
        return "OK" if ok else "MISSED"

    print(f"wall {first['wall_s']:.0f} s for {len(sessions)} days ({first['wall_s'] * scale / 60:.1f} min per 252 days; "
          f"target <= {TARGET_WALL_S / 60:.0f} min): {verdict(first['wall_s'] * scale <= TARGET_WALL_S)}")
    print(f"CPU {first['cpu_per_day_s']:.2f} s per trading day end to end (target <= {TARGET_CPU_PER_DAY_S:.0f} s): "
          f"{verdict(first['cpu_per_day_s'] <= TARGET_CPU_PER_DAY_S)}")
    if repeat:
        print(f"second backfill: {results['second']['status']} in {results['second']['wall_s']:.0f} s, tables "
              f"identical (rows and row digest per table): {results['second']['identical_tables']}")
    print(f"load average (1-min): {first['load_start'][0]:.2f} at the start, {first['load_end'][0]:.2f} at the end")
    if os.environ.get("ZEROGEX_BENCH_YEAR_KEEP"):
        print(f"kept {folder}")
    else:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
