"""Real ``dagster-webserver`` / ``dagster-daemon`` processes for the UI tests.

Each process runs from the repository root with ``-w workspace.yaml``, in its own process group (so
teardown also ends the code servers and run workers it spawned), with an explicit environment: a
temporary ``DAGSTER_HOME`` holding a copy of the repo's ``dagster.yaml``, a temporary
``ZEROGEX_DATA_DIR``, the simulated source and SPY only. No ``TRADESTATION_*`` or other ``ZEROGEX_*``
variable of the caller's shell leaks in. Output goes to log files in the test's artifacts folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS_ROOT = Path(os.environ.get("ZEROGEX_TEST_ARTIFACTS", REPO_ROOT / "test-artifacts"))
LOCATION_NAME = "zerogex_pipeline"
REPOSITORY_NAME = "__repository__"
BIN_DIR = Path(sys.executable).parent


def in_ci() -> bool:
    """True when ``CI=true``: missing dependencies must fail the test instead of skipping it."""
    return os.environ.get("CI", "").lower() == "true"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dagster_env(dagster_home: Path, data_dir: Path) -> dict[str, str]:
    """The environment of the Dagster processes: the caller's, minus credentials and our settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TRADESTATION_", "ZEROGEX_", "DAGSTER_"))
    }
    env.update(
        DAGSTER_HOME=str(dagster_home),
        ZEROGEX_DATA_DIR=str(data_dir),
        ZEROGEX_DATA_SOURCE="simulated",
        ZEROGEX_UNDERLYINGS="SPY",
        PATH=f"{BIN_DIR}{os.pathsep}{env.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
    )
    return env


def make_dagster_home(path: Path) -> Path:
    """``path`` created with a copy of the repository's ``dagster.yaml`` (queue, pools, run retries)."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO_ROOT / "dagster.yaml", path / "dagster.yaml")
    return path


@dataclass
class DagsterProcess:
    """One started process, its log file and its process group."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    _log_file: Any = field(repr=False)

    def log_tail(self, chars: int = 6000) -> str:
        """The last ``chars`` characters of the process log (for failure messages)."""
        self._log_file.flush()
        text = self.log_path.read_text(errors="replace")
        return text[-chars:]

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the process group, SIGKILL it after ``timeout`` seconds."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=timeout)
        # Children (code server, run workers) share the group: end any still alive.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=timeout)
        self._log_file.close()


def start_process(name: str, args: list[str], env: Mapping[str, str], log_dir: Path) -> DagsterProcess:
    """Start ``args`` (first item an executable of the venv) from the repository root in a new session."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    log_file = log_path.open("wb")
    proc = subprocess.Popen(
        [str(BIN_DIR / args[0]), *args[1:]],
        cwd=REPO_ROOT,
        env=dict(env),
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return DagsterProcess(name, proc, log_path, log_file)


def start_webserver(env: Mapping[str, str], log_dir: Path, port: int) -> DagsterProcess:
    """``dagster-webserver -w workspace.yaml -h 127.0.0.1 -p <port>``."""
    return start_process(
        "webserver",
        ["dagster-webserver", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        env,
        log_dir,
    )


def start_daemon(env: Mapping[str, str], log_dir: Path) -> DagsterProcess:
    """``dagster-daemon run -w workspace.yaml`` (run queue, backfills, sensors, schedules)."""
    return start_process("daemon", ["dagster-daemon", "run", "-w", "workspace.yaml"], env, log_dir)


class GraphQLError(AssertionError):
    """A GraphQL request failed or returned ``errors``."""


def graphql(port: int, query: str, variables: Mapping[str, Any] | None = None, timeout: float = 60.0) -> Any:
    """POST ``query`` to the webserver on ``port``; returns ``data`` or raises with the errors."""
    body = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise GraphQLError(f"GraphQL HTTP {exc.code}: {exc.read()[:2000]!r}") from None
    if payload.get("errors"):
        raise GraphQLError(f"GraphQL errors: {json.dumps(payload['errors'])[:4000]}")
    return payload["data"]


WORKSPACE_QUERY = """
query {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on PythonError { message }
        }
      }
    }
  }
}
"""


def wait_for_location(port: int, server: DagsterProcess, timeout: float = 180.0) -> None:
    """Wait until the webserver answers and the ``zerogex_pipeline`` location has loaded.

    Raises:
        AssertionError: the server exited, the location failed to load, or ``timeout`` seconds passed;
            the message carries the server log.
    """
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise AssertionError(f"{server.name} exited with {server.proc.returncode}:\n{server.log_tail()}")
        try:
            data = graphql(port, WORKSPACE_QUERY, timeout=10)
        except (OSError, GraphQLError) as exc:
            last = f"{type(exc).__name__}: {exc}"
            time.sleep(1.0)
            continue
        entries = {e["name"]: e for e in data["workspaceOrError"].get("locationEntries", [])}
        entry = entries.get(LOCATION_NAME)
        if entry and entry["loadStatus"] == "LOADED":
            loaded = entry["locationOrLoadError"] or {}
            if loaded.get("__typename") == "RepositoryLocation":
                return
            raise AssertionError(f"code location {LOCATION_NAME} failed to load: {loaded}")
        last = f"location entries: {entries}"
        time.sleep(1.0)
    raise AssertionError(f"{server.name} not ready after {timeout:.0f}s ({last}):\n{server.log_tail()}")
