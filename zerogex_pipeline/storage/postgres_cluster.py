"""A throwaway PostgreSQL cluster from the installed server binaries, for tests and benchmarks.

``ThrowawayCluster`` runs ``initdb`` in a temporary directory, starts ``postgres`` on a free
127.0.0.1 port with password (SCRAM) authentication over TCP, and removes everything on ``stop``.
When the current user is root, the server binaries run as the ``postgres`` OS user (PostgreSQL
refuses to run as root) through ``runuser``; the data directory is then owned by that user.
It is never used for production data: ``durable=False`` also turns fsync off.

When the server's package library folder holds TimescaleDB (``timescaledb.so``), the cluster
preloads it (``shared_preload_libraries``, telemetry off) so ``CREATE EXTENSION timescaledb`` works;
``timescaledb=False`` (or ``ZEROGEX_PG_TIMESCALEDB=0``) starts a plain PostgreSQL instead, which is how
the tests are run as CI runs them (no TimescaleDB).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

PG_BIN_CANDIDATES = ("/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin")
SUPERUSER = "postgres"


class ClusterUnavailableError(RuntimeError):
    """No PostgreSQL server binaries, or the throwaway cluster could not start."""


def find_pg_bin() -> Path | None:
    """Directory holding ``initdb``/``pg_ctl`` (``ZEROGEX_PG_BIN``, PATH, then Debian's locations)."""
    configured = os.environ.get("ZEROGEX_PG_BIN")
    candidates = [configured] if configured else []
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    candidates += list(PG_BIN_CANDIDATES)
    for c in candidates:
        if c and (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    return None


def timescaledb_library(pg_bin: Path) -> Path | None:
    """The installed ``timescaledb.so`` of the server in ``pg_bin`` (``pg_config --pkglibdir``), if any."""
    pg_bin = (pg_bin / "pg_ctl").resolve().parent  # PATH may hold symlinks (/usr/local/bin/pg_ctl)
    candidates: list[Path] = []
    pg_config = pg_bin / "pg_config"
    if pg_config.exists():
        done = subprocess.run([str(pg_config), "--pkglibdir"], capture_output=True, text=True, check=False, timeout=30)
        if done.returncode == 0 and done.stdout.strip():
            candidates.append(Path(done.stdout.strip()))
    candidates.append(pg_bin.parent / "lib")  # Debian: /usr/lib/postgresql/<major>/{bin,lib}
    for folder in candidates:
        if (folder / "timescaledb.so").exists():
            return folder / "timescaledb.so"
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ThrowawayCluster:
    """A private PostgreSQL cluster: ``start()``, use ``url``, ``restart()``, ``stop()`` (deletes it).

    ``timescaledb``: preload the extension's library (``None``: when installed, unless
    ``ZEROGEX_PG_TIMESCALEDB=0``). ``self.timescaledb`` says whether it is preloaded.
    """

    def __init__(self, durable: bool = False, timescaledb: bool | None = None) -> None:
        pg_bin = find_pg_bin()
        if pg_bin is None:
            raise ClusterUnavailableError(
                "no PostgreSQL server binaries (initdb, pg_ctl) found; set ZEROGEX_PG_BIN or install postgresql"
            )
        self.pg_bin = pg_bin
        self.durable = durable
        if timescaledb is None:
            timescaledb = os.environ.get("ZEROGEX_PG_TIMESCALEDB", "").strip() != "0"
        self.timescaledb = timescaledb and timescaledb_library(pg_bin) is not None
        self.port = free_port()
        self.password = secrets.token_urlsafe(12)
        self.root = Path(tempfile.mkdtemp(prefix="zerogex_pg_"))
        self.data_dir = self.root / "data"
        self.log_file = self.root / "server.log"
        self._as_postgres = os.geteuid() == 0
        self.running = False

    @property
    def url(self) -> str:
        """Superuser URL of the cluster's ``postgres`` database."""
        return f"postgresql://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/postgres"

    def url_for(self, database: str, user: str = SUPERUSER, password: str | None = None) -> str:
        """URL of ``database`` as ``user`` (default: the superuser and its password)."""
        pw = self.password if password is None else password
        return f"postgresql://{user}:{pw}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> None:
        cmd = [str(self.pg_bin / args[0]), *args[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", SUPERUSER, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
        if done.returncode != 0:
            log = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
            raise ClusterUnavailableError(
                f"{args[0]} failed ({done.returncode}): {done.stderr.strip()[-1500:]} {log}".strip()
            )

    def start(self) -> ThrowawayCluster:
        """Create (first call) and start the cluster; waits until it accepts connections."""
        if not self.data_dir.exists():
            pwfile = self.root / "pw"
            pwfile.write_text(self.password + "\n")
            if self._as_postgres:
                pw = pwd.getpwnam(SUPERUSER)
                os.chown(self.root, pw.pw_uid, pw.pw_gid)
                os.chown(pwfile, pw.pw_uid, pw.pw_gid)
            os.chmod(self.root, 0o700)
            self._run(
                "initdb", "-D", str(self.data_dir), "-U", SUPERUSER, f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--locale=C", "--no-sync",
            )
            pwfile.unlink()
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=60"
        if self.timescaledb:
            opts += " -c shared_preload_libraries=timescaledb -c timescaledb.telemetry_level=off"
            opts += " -c max_worker_processes=24"
        if not self.durable:
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        else:
            opts += " -c shared_buffers=512MB -c max_wal_size=4GB"
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file), "-o", opts, "-w", "-t", "60", "start")
        self.running = True
        return self

    def restart(self) -> None:
        """Stop (fast mode: open connections are terminated) and start the server again."""
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
        self.running = False
        self.start()

    def stop(self) -> None:
        """Stop the server and delete the cluster's directory."""
        if self.running:
            with contextlib.suppress(ClusterUnavailableError):
                self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")
            self.running = False
        shutil.rmtree(self.root, ignore_errors=True)
