"""The ``zerogex`` command line. Each sub-command lives in its own module with a ``register`` function."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence

import dagster as dg

from zerogex_pipeline.cli import (
    backfill_command,
    dashboard_command,
    emulator_command,
    gex_command,
    levels_command,
    migrate_command,
    run_command,
    stream_command,
    ts_command,
)
from zerogex_pipeline.cli.arguments import OneLineParser
from zerogex_pipeline.cli.logs import configure_logging

COMMAND_MODULES = [run_command, backfill_command, levels_command, stream_command, dashboard_command, gex_command,
                   ts_command, emulator_command, migrate_command]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; returns the process exit status."""
    parser = OneLineParser(prog="zerogex", description="ZeroGEX pipeline command line.")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.register(sub)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    try:
        configure_logging(getattr(args, "debug", False))
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one line, no traceback: the message names the input and the problem
        if getattr(args, "debug", False):
            raise
        print(f"zerogex {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
