"""Test time: New York wall-clock instants and a settable clock to inject where ``utc_now`` is read."""

from __future__ import annotations

import pandas as pd

NY = "America/New_York"


def at(text: str) -> pd.Timestamp:
    """The UTC instant of a New York wall-clock time, e.g. ``at("2024-06-14 10:02")``."""
    return pd.Timestamp(text, tz=NY).tz_convert("UTC")


class Clock:
    """A clock frozen at ``now`` until a test moves it (``clock.now = at(...)``)."""

    def __init__(self, now: pd.Timestamp) -> None:
        self.now = now

    def __call__(self) -> pd.Timestamp:
        return self.now
