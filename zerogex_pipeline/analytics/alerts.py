"""Level events of one trading day: zero-gamma crosses, wall breaches and net-GEX sign changes.

Input: one underlying's ``gex_levels`` rows of one session (one row per snapshot; any order). Events are
found between **consecutive snapshots** ``i-1 → i`` (sorted by ``snapshot_ts``) and stamped with
snapshot ``i``, the first snapshot at which the new state is seen. Definitions:

- **zero_gamma_cross**: the side of spot relative to that snapshot's zero gamma,
  ``side_i = sign(spot_i − zero_gamma_i)``, differs from ``side_{i-1}``. Spot exactly on the level
  keeps the previous snapshot's side (a touch is not a cross; it is undefined right after a null).
  A null zero gamma has no side, so neither the snapshot with the null nor the one after it can be a
  cross: the comparison restarts after the null. ``up``: spot is now above the flip. ``level`` and
  ``value_after`` are ``zero_gamma_i``; ``value_before`` is ``zero_gamma_{i-1}``.
- **call_wall_breach** (``up``): spot moves from at or below the previous snapshot's call wall to
  strictly above it, ``spot_{i-1} <= call_wall_{i-1} < spot_i``. The previous wall is the one crossed
  because each snapshot's wall is chosen among strikes at or above that snapshot's spot (so spot never
  exceeds its own wall). **put_wall_breach** (``down``): ``spot_{i-1} >= put_wall_{i-1} > spot_i``.
  ``level`` and ``value_before`` are the previous wall, ``value_after`` the new one (null when none).
  A null previous wall is never breached.
- **net_gex_sign_change**: the sign of total net GEX differs between the two snapshots, with the same
  rule for zero (keeps the previous sign; so the 0 of a fully settled close snapshot is not a change)
  and nulls (no sign). ``up``: net GEX turned positive. ``level`` is 0; before/after are net GEX
  (USD per 1% move).

At most one event per kind per snapshot, so ``event_id = "<underlying>|<date>|<kind>|<snapshot_ts UTC>"``
is unique and deterministic. Detection is causal: events of the first ``k`` snapshots do not depend on
later snapshots, so an intraday table that grows (and is recomputed) keeps the ids of earlier events.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from zerogex_pipeline.schemas import require_columns

EVENT_KINDS = ("zero_gamma_cross", "call_wall_breach", "put_wall_breach", "net_gex_sign_change")
"""Every event kind, in the order events of one snapshot are listed."""

LEVEL_COLUMNS = ("underlying", "session_date", "snapshot_ts", "spot", "net_gex", "zero_gamma", "call_wall",
                 "put_wall")
"""Columns of ``gex_levels`` the detection reads."""

EVENT_COLUMNS = ("underlying", "session_date", "event_id", "snapshot_ts", "kind", "direction", "spot", "level",
                 "value_before", "value_after", "spot_before", "previous_snapshot_ts", "message")
"""Columns of the events frame (``gex_alerts`` without ``announced_at``)."""

_NEW_YORK = "America/New_York"


class AlertInputError(ValueError):
    """The levels frame cannot be scanned for events; the message names the problem."""


def event_id(underlying: str, session_date: str, kind: str, snapshot_ts: pd.Timestamp) -> str:
    """Deterministic id of an event: ``SPY|2024-06-14|zero_gamma_cross|2024-06-14T14:35:00Z``.

    ``session_date`` is ``YYYY-MM-DD``; ``snapshot_ts`` is rendered in UTC to the second.
    """
    if kind not in EVENT_KINDS:
        raise AlertInputError(f"event kind: expected one of {EVENT_KINDS}, got {kind!r}")
    ts = pd.Timestamp(snapshot_ts)
    if ts.tzinfo is None:
        raise AlertInputError(f"snapshot_ts: expected a tz-aware instant, got naive {ts}")
    return f"{underlying}|{session_date}|{kind}|{ts.tz_convert('UTC'):%Y-%m-%dT%H:%M:%SZ}"


def carried_sides(values: np.ndarray) -> np.ndarray:
    """Side (+1/−1) of each value, NaN where undefined; an exact 0 keeps the previous side.

    A NaN value has no side and breaks the carry: a 0 right after a NaN (or first) is undefined.
    """
    out = np.full(len(values), np.nan)
    previous = math.nan
    for i, v in enumerate(np.asarray(values, dtype=np.float64)):
        if math.isnan(v):
            previous = math.nan
        elif v > 0:
            previous = 1.0
        elif v < 0:
            previous = -1.0
        out[i] = previous
    return out


def _prepare(levels: pd.DataFrame) -> pd.DataFrame:
    require_columns(levels, LEVEL_COLUMNS, "levels for alert detection")
    frame = levels.loc[:, list(LEVEL_COLUMNS)].copy()
    frame["snapshot_ts"] = pd.to_datetime(frame["snapshot_ts"], utc=True)
    frame["session_date"] = pd.to_datetime(frame["session_date"]).dt.strftime("%Y-%m-%d")
    for name in ("underlying", "session_date"):
        values = frame[name].dropna().unique()
        if len(values) > 1:
            raise AlertInputError(f"levels for alert detection: expected one {name}, got {sorted(map(str, values))}")
    if frame["snapshot_ts"].isna().any():
        raise AlertInputError("levels for alert detection: snapshot_ts has nulls")
    if frame["snapshot_ts"].duplicated().any():
        first = frame.loc[frame["snapshot_ts"].duplicated(), "snapshot_ts"].iloc[0]
        raise AlertInputError(f"levels for alert detection: snapshot_ts {first} appears twice")
    for name in ("spot", "net_gex", "zero_gamma", "call_wall", "put_wall"):
        frame[name] = pd.to_numeric(frame[name], errors="raise").astype(np.float64)
    spot = frame["spot"].to_numpy()
    if not (np.isfinite(spot) & (spot > 0)).all():
        raise AlertInputError("levels for alert detection: spot must be a positive finite price on every row")
    return frame.sort_values("snapshot_ts", kind="stable").reset_index(drop=True)


def _message(underlying: str, kind: str, direction: str, spot: float, level: float, before: float,
             after: float, spot_before: float, ts: pd.Timestamp) -> str:
    when = f"{ts.tz_convert(_NEW_YORK):%Y-%m-%d %H:%M} ET"
    if kind == "zero_gamma_cross":
        side = "above" if direction == "up" else "below"
        return (f"{underlying} {when}: spot {spot:.2f} crossed {side} zero gamma {level:.2f} "
                f"(previous snapshot: spot {spot_before:.2f}, zero gamma {before:.2f})")
    if kind in ("call_wall_breach", "put_wall_breach"):
        wall = "call" if kind == "call_wall_breach" else "put"
        side = "above" if direction == "up" else "below"
        new = "none" if math.isnan(after) else f"{after:.2f}"
        return (f"{underlying} {when}: spot {spot:.2f} broke {side} the {wall} wall {level:.2f} "
                f"(previous spot {spot_before:.2f}; new {wall} wall {new})")
    sign = "positive" if direction == "up" else "negative"
    return (f"{underlying} {when}: net GEX turned {sign}: {after / 1e9:+.3f}bn per 1% "
            f"(was {before / 1e9:+.3f}bn; spot {spot:.2f})")


def detect_events(levels: pd.DataFrame) -> pd.DataFrame:
    """Events of one underlying's one-day levels series (see the module docstring for the rules).

    Args:
        levels: ``gex_levels`` rows of one underlying and one session, any order; needs
            :data:`LEVEL_COLUMNS`. ``spot`` must be a positive price on every row; the levels may be null.

    Returns:
        One row per event with :data:`EVENT_COLUMNS`, ordered by ``snapshot_ts`` then
        :data:`EVENT_KINDS`. Empty (same columns) for fewer than two snapshots.

    Raises:
        AlertInputError: missing columns, several days or underlyings, repeated or null snapshot_ts, or a
            non-positive spot.
    """
    frame = _prepare(levels)
    rows: list[dict[str, object]] = []
    if len(frame) >= 2:
        spot = frame["spot"].to_numpy()
        zg = frame["zero_gamma"].to_numpy()
        call = frame["call_wall"].to_numpy()
        put = frame["put_wall"].to_numpy()
        net = frame["net_gex"].to_numpy()
        zg_side = carried_sides(spot - zg)
        net_side = carried_sides(net)
        ts = list(frame["snapshot_ts"])
        underlying = str(frame["underlying"].iloc[0])
        date = str(frame["session_date"].iloc[0])

        def add(i: int, kind: str, direction: str, level: float, before: float, after: float) -> None:
            rows.append({
                "underlying": underlying, "session_date": date,
                "event_id": event_id(underlying, date, kind, ts[i]), "snapshot_ts": ts[i],
                "kind": kind, "direction": direction, "spot": spot[i], "level": level,
                "value_before": before, "value_after": after, "spot_before": spot[i - 1],
                "previous_snapshot_ts": ts[i - 1],
                "message": _message(underlying, kind, direction, spot[i], level, before, after, spot[i - 1], ts[i]),
            })

        for i in range(1, len(frame)):
            a, b = zg_side[i - 1], zg_side[i]
            if not (math.isnan(a) or math.isnan(b)) and a != b:
                add(i, "zero_gamma_cross", "up" if b > 0 else "down", zg[i], zg[i - 1], zg[i])
            w = call[i - 1]
            if not math.isnan(w) and spot[i - 1] <= w < spot[i]:
                add(i, "call_wall_breach", "up", w, w, call[i])
            w = put[i - 1]
            if not math.isnan(w) and spot[i - 1] >= w > spot[i]:
                add(i, "put_wall_breach", "down", w, w, put[i])
            a, b = net_side[i - 1], net_side[i]
            if not (math.isnan(a) or math.isnan(b)) and a != b:
                add(i, "net_gex_sign_change", "up" if b > 0 else "down", 0.0, net[i - 1], net[i])
    out = pd.DataFrame(rows, columns=list(EVENT_COLUMNS))
    out["snapshot_ts"] = pd.to_datetime(out["snapshot_ts"], utc=True).astype("datetime64[ns, UTC]")
    out["previous_snapshot_ts"] = pd.to_datetime(out["previous_snapshot_ts"], utc=True).astype("datetime64[ns, UTC]")
    out["session_date"] = pd.to_datetime(out["session_date"]).astype("datetime64[ns]")
    for name in ("underlying", "event_id", "kind", "direction", "message"):
        out[name] = out[name].astype("string")
    for name in ("spot", "level", "value_before", "value_after", "spot_before"):
        out[name] = out[name].astype(np.float64)
    return out
