"""Test time: New York wall-clock instants and a settable clock to inject where ``utc_now`` is read."""

from __future__ import annotations

import threading
import time

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


def stop_at(clock: object, engine: object, instant: pd.Timestamp) -> threading.Thread:
    """Stop ``engine`` once the engine clock ``clock`` reaches ``instant`` (a daemon thread polling every 20 ms)."""

    def watch() -> None:
        while not clock.stopped and clock.now() < instant:  # type: ignore[attr-defined]
            time.sleep(0.02)
        engine.stop()  # type: ignore[attr-defined]

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread
