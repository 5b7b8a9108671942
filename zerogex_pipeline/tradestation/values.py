"""Converting the API's wire values: numbers sent as strings, blank fields null or absent."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd


def to_float(value: Any) -> float:
    """A wire number (``"212.85"``, ``212.85``, ``null``, ``""``, absent) as float; NaN when blank."""
    if value is None or value == "":
        return math.nan
    if isinstance(value, bool):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def to_int(value: Any, default: int = 0) -> int:
    """A wire integer (string or int); ``default`` when blank or not a number."""
    f = to_float(value)
    return default if math.isnan(f) else int(f)


def to_timestamp(value: Any) -> pd.Timestamp | None:
    """An RFC3339 string (``2020-11-18T15:19:14Z``) as a UTC timestamp; ``None`` when blank."""
    if value is None or value == "":
        return None
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        return None
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def to_date(value: Any) -> dt.date | None:
    """The date part of an RFC3339 string (``2025-04-07T00:00:00Z`` -> 2025-04-07)."""
    ts = to_timestamp(value)
    return None if ts is None else ts.date()


def field(record: Mapping[str, Any], name: str) -> Any:
    """``record[name]`` or ``None`` when absent."""
    return record.get(name)
