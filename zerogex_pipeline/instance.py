"""The local Dagster instance used by the CLI and ``make ui``: ``$DAGSTER_HOME``, or ``<data dir>/dagster_home``."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from zerogex_pipeline.settings import Settings

LOCAL_INSTANCE_YAML = """\
# Local development instance (SQLite under this folder). Production uses the repo's dagster.yaml.
telemetry:
  enabled: false
"""


def local_dagster_home(settings: Settings) -> Path:
    """``$DAGSTER_HOME`` if set, else ``<data dir>/dagster_home``, created with a telemetry-off config."""
    home = Path(os.environ.get("DAGSTER_HOME") or settings.data_dir / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(LOCAL_INSTANCE_YAML)
    return home


def get_instance(settings: Settings) -> dg.DagsterInstance:
    """The persistent local instance (so ``make ui`` shows what ``make run`` materialized).

    Runs of this host left unfinished by a process that died are marked failed first (see
    :func:`zerogex_pipeline.run_liveness.fail_orphaned_runs`), so the instance never shows them running.
    """
    from zerogex_pipeline.run_liveness import fail_orphaned_runs

    os.environ["DAGSTER_HOME"] = str(local_dagster_home(settings))
    instance = dg.DagsterInstance.get()
    fail_orphaned_runs(instance)
    return instance
