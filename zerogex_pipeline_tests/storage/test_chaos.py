"""A fault schedule over one multi-day ``zerogex run`` on PostgreSQL (issue 13, target "fault schedule").

One 3-day run (4 Dagster range runs: the bars, each of 2 expiration slots' chain + surface, the levels) by a
least-privileged writer, in its own process, meets in turn: ``kill -9`` of the
writer after its first write; a PostgreSQL stop of 20 s; a second restart; INSERT revoked for a moment. Each attempt
either completes after bounded retries or fails in one line, and the next attempt (the retry) completes. The stored
tables then equal a clean run's, partition by partition (row count and md5 of the rows in primary-key order), the
killed attempt's run is marked failed, and no run is left STARTED.

Runs ~3-4 minutes (three CLI processes, a 20 s outage); marked slow.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.dagster_run import DagsterRunStatus, RunsFilter
from psycopg import sql

from zerogex_pipeline.cli import main
from zerogex_pipeline.schemas import ALL_SCHEMAS
from zerogex_pipeline.storage.postgres_io_manager import forget_prepared_schemas
from zerogex_pipeline_tests.postgres_fixtures import PgServer
from zerogex_pipeline_tests.storage.test_least_privilege import PASSWORD, grant_documented_privileges

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

RUN = ["run", "--days", "3", "--end", "2026-11-20"]
SETTINGS = {"ZEROGEX_EXPIRATIONS": "2", "ZEROGEX_SNAPSHOT_MINUTES": "30", "ZEROGEX_STRIKE_DISTANCE": "5"}
TABLES = {"underlying_bars": ["session_date"], "option_chain_snapshots": ["session_date", "expiration"],
          "gex_surface": ["session_date", "expiration"], "gex_levels": ["session_date"]}
OUTAGE_S = 20.0


def partition_digests(url: str) -> dict[tuple[str, str], tuple[int, str]]:
    """``(table, partition) -> (rows, md5 of the rows as text in primary-key order)`` for every stored partition."""
    out: dict[tuple[str, str], tuple[int, str]] = {}
    with psycopg.connect(url) as conn:
        for table, keys in TABLES.items():
            order = ", ".join(ALL_SCHEMAS[table].primary_key)
            part = sql.SQL(" || '|' || ").join(sql.SQL("{}::text").format(sql.Identifier(k)) for k in keys)
            query = sql.SQL(
                "SELECT {part}, count(*), md5(string_agg(t::text, E'\\n' ORDER BY {order})) FROM spy.{table} AS t "
                "GROUP BY {keys}"
            ).format(part=part, order=sql.SQL(order), table=sql.Identifier(table),
                     keys=sql.SQL(", ").join(sql.Identifier(k) for k in keys))
            for key, rows, digest in conn.execute(query).fetchall():
                out[(table, str(key))] = (int(rows), str(digest))
    return out


class Attempt:
    """``zerogex run`` in its own process, stdout and stderr collected by threads."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen([str(Path(sys.executable).parent / "zerogex"), *RUN], env=env, cwd=cwd,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out: list[str] = []
        self.err: list[str] = []
        for stream, sink in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=lambda s=stream, k=sink: k.extend(s), daemon=True).start()

    def wait(self, timeout: float = 600) -> int:
        rc = self.proc.wait(timeout)
        time.sleep(0.2)  # let the reader threads drain the pipes
        return rc


def wait_for(what: str, condition: Callable[[], bool], attempt: Attempt, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert attempt.proc.poll() is None, f"the run ended before {what}: {''.join(attempt.err)}"
        assert time.monotonic() < deadline, f"no {what} within {timeout:.0f} s"
        time.sleep(0.5)


def test_a_multi_day_run_survives_the_fault_schedule_and_equals_a_clean_run(
    pg_server: PgServer, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = pg_server.cluster
    if cluster is None:
        pytest.skip("ZEROGEX_TEST_DATABASE_URL is an external server; cannot restart it from the test")
    monkeypatch.chdir(tmp_path)
    for name, value in SETTINGS.items():
        monkeypatch.setenv(name, value)

    # the clean reference: the same run, no faults, in its own database
    monkeypatch.setenv("ZEROGEX_DATA_DIR", str(tmp_path / "clean"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "clean_home"))
    monkeypatch.setenv("ZEROGEX_DATABASE_URL", pg_url)
    assert main([*RUN, "--quiet"]) == 0
    clean = partition_digests(pg_url)
    assert len(clean) == 3 * (2 + 2 * 2)  # per day: bars, levels, and chain + surface of 2 expirations

    # the chaos database: the owner migrates, a writer with the documented privileges runs
    chaos_db = f"{pg_url.rsplit('/', 1)[1]}_chaos"
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(chaos_db)))
    owner_url = pg_server.url_for(chaos_db)
    monkeypatch.setenv("ZEROGEX_DATABASE_URL", owner_url)
    assert main(["migrate"]) == 0
    writer = f"zgw_{chaos_db.rsplit('_', 2)[1]}"
    grant_documented_privileges(pg_server.admin_url, chaos_db, writer, f"zgr_{chaos_db.rsplit('_', 2)[1]}")
    capsys.readouterr()
    forget_prepared_schemas()
    home = tmp_path / "chaos_home"
    env = {**os.environ, **SETTINGS, "ZEROGEX_DATABASE_URL": pg_server.url_for(chaos_db, user=writer, password=PASSWORD),
           "ZEROGEX_DATA_DIR": str(tmp_path / "chaos"), "DAGSTER_HOME": str(home)}

    def stored(table: str) -> int:
        try:
            with psycopg.connect(owner_url, connect_timeout=2) as conn:
                row = conn.execute(sql.SQL("SELECT count(*) FROM spy.{}").format(sql.Identifier(table))).fetchone()
                return int(row[0]) if row else 0
        except psycopg.Error:
            return 0

    def runs(pid: int, status: DagsterRunStatus) -> int:
        if not (home / "dagster.yaml").exists():
            return 0
        with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
            return len(instance.get_runs(RunsFilter(tags={"zerogex/pid": str(pid)}, statuses=[status])))

    def succeeded_runs(pid: int) -> int:
        return runs(pid, DagsterRunStatus.SUCCESS)

    log: list[str] = []
    # fault 1: kill -9 of the writer after its first write
    first = Attempt(env, tmp_path)
    wait_for("first write", lambda: stored("underlying_bars") > 0 and runs(first.proc.pid, DagsterRunStatus.STARTED) > 0,
             first)
    first.proc.send_signal(signal.SIGKILL)
    first.wait()
    log.append("attempt 1: killed (SIGKILL) after its first write")

    # faults 2-4 on the next attempt: a 20 s outage, a second restart, INSERT revoked for a moment
    second = Attempt(env, tmp_path)
    pid = second.proc.pid
    wait_for("the bars run", lambda: succeeded_runs(pid) >= 1, second)
    cluster._run("pg_ctl", "-D", str(cluster.data_dir), "-m", "fast", "-w", "stop")
    time.sleep(OUTAGE_S)
    cluster.start()
    log.append(f"attempt 2: PostgreSQL stopped for {OUTAGE_S:.0f} s after {succeeded_runs(pid)} runs")
    wait_for("slot 1's run", lambda: succeeded_runs(pid) >= 2, second)
    cluster.restart()
    log.append(f"attempt 2: PostgreSQL restarted after {succeeded_runs(pid)} runs")
    wait_for("slot 2's run", lambda: succeeded_runs(pid) >= 3, second)
    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute(sql.SQL("REVOKE INSERT ON ALL TABLES IN SCHEMA spy FROM {}").format(sql.Identifier(writer)))
        revoked = time.monotonic()
        while second.proc.poll() is None and time.monotonic() - revoked < 4.0:
            time.sleep(0.1)
        conn.execute(sql.SQL("GRANT INSERT ON ALL TABLES IN SCHEMA spy TO {}").format(sql.Identifier(writer)))
    log.append(f"attempt 2: INSERT revoked for {time.monotonic() - revoked:.1f} s after {succeeded_runs(pid)} runs")
    rc = second.wait()
    err = "".join(second.err)
    log.append(f"attempt 2: exit {rc}: {err.strip()}")
    if rc != 0:  # it failed in one line (after any retry warnings of the outage); its retry completes
        lines = err.splitlines()
        errors = [line for line in lines if not line.startswith("WARNING ")]
        assert len(errors) == 1 and errors[0].startswith("zerogex run:") and "permission denied" in errors[0], err
        assert all("attempt" in line and "retrying" in line for line in lines if line not in errors), err
        third = Attempt(env, tmp_path)
        assert third.wait() == 0, "".join(third.err)
        log.append("attempt 3 (retry): exit 0")
    else:
        assert "zerogex run:" not in err
    print("\n".join(log))

    assert partition_digests(owner_url) == clean  # every partition identical to the clean run: no loss, no duplicate
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        assert not instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTED, DagsterRunStatus.STARTING]))
        killed = instance.get_runs(RunsFilter(tags={"zerogex/pid": str(first.proc.pid)}))
        assert killed and {r.status for r in killed} <= {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE}
        assert killed[0].status == DagsterRunStatus.FAILURE  # the run the kill interrupted (it was STARTED)
        failure = instance.all_logs(killed[0].run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        assert failure and "is gone: it was killed or crashed" in str(failure[0].message)
