"""Command-line argument types and a parser whose errors are one line naming the argument.

argparse prints its usage block before an error; here a bad argument prints only
``zerogex <command>: argument --days: expected ...`` (exit status 2), like every other error of the CLI.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import NoReturn

MAX_DAYS = 1300
"""About five years of trading days: a larger count is almost certainly a typo (as for backfills)."""


class OneLineParser(argparse.ArgumentParser):
    """``ArgumentParser`` whose errors are one line on stderr (exit status 2); ``--help`` still prints usage."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def trading_days(text: str) -> int:
    """A ``--days`` value: a whole number of trading days from 1 to :data:`MAX_DAYS`."""
    try:
        value = int(text)
    except ValueError:
        value = 0
        valid = False
    else:
        valid = 1 <= value <= MAX_DAYS
    if not valid:
        raise argparse.ArgumentTypeError(f"expected a whole number of trading days from 1 to {MAX_DAYS}, got {text!r}")
    return value


def iso_date(text: str) -> dt.date:
    """A date argument written ``YYYY-MM-DD`` that exists in the calendar."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        reason = str(exc) if "-" in text and len(text) == 10 else "not YYYY-MM-DD"
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r} ({reason})") from None
