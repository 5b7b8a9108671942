"""Data-quality rules of the four core frames: bars, chain snapshots, GEX surface and GEX levels.

Pure pandas/numpy, no Dagster and no I/O: each ``validate_*`` function takes a frame (and the session,
clock or upstream frame it is judged against) and returns a :class:`ValidationResult`: the problems found
(rule, offending row count, the first offending rows) and the numbers behind the verdict (rows checked,
worst violation, tolerance) for the check's metadata. The Dagster asset checks in
``zerogex_pipeline.defs.checks`` are thin wrappers around these.

Units follow ``zerogex_pipeline.schemas``: prices and strikes USD, timestamps tz-aware UTC, GEX USD per 1%
move with the dealer sign convention (calls +, puts -, net = call + put).

Tolerances (and why):

- Bar and snapshot instants are deterministic grids of the NYSE session: exact. Only the tail is lenient:
  an instant less than ``PUBLISH_GRACE`` before "now" may not be delivered yet (the vendor publishes a bar
  after it ends, and the check runs after the asset read the source).
- Quotes are compared exactly (``bid <= ask``, prices and OI ``>= 0``): they are tick-rounded decimals and
  any violation is a bad quote, not rounding.
- IV bounds: ``0 <= iv <= IV_MAX`` (1000% annualized), the upper bracket of our own IV solver
  (:data:`~zerogex_pipeline.analytics.implied_vol.SIGMA_MAX`); 0 or null means "not given".
- GEX reconciliation: relative ``RECONCILE_RTOL`` (1e-9) of the gross GEX (sum of |call| + |put|) being
  reconciled. The sums are the same float additions in another order (error ~1e-16 relative, measured
  <= 3e-16 on SPY), so 1e-9 leaves six orders of magnitude of margin while any real error (one strike
  dropped, a sign flipped) is many orders larger.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from zerogex_pipeline.analytics.engine import GRID_HALF_WIDTHS, GRID_STEP, MAX_DISTANCE
from zerogex_pipeline.analytics.implied_vol import SIGMA_MAX
from zerogex_pipeline.analytics.surface import GEX_PER_PCT
from zerogex_pipeline.market_calendar import TradingSession
from zerogex_pipeline.schemas import require_columns

PUBLISH_GRACE = pd.Timedelta(minutes=5)
"""A bar or snapshot instant older than this (before "now") must be present; younger ones may lag."""
IV_MAX = SIGMA_MAX
"""Largest plausible IV (annualized decimal, 10.0 = 1000%): the IV solver's upper bracket."""
RECONCILE_RTOL = 1e-9
"""Relative tolerance of GEX reconciliations, as a share of the gross GEX reconciled."""
WINDOW_REACH = 0.5
"""Each side of spot must list strikes reaching at least this share of the strike window's half-width."""
EXAMPLES = 3
"""Offending rows quoted per problem."""

Number = float | int | str | None


@dataclass(frozen=True)
class Problem:
    """One violated rule: how many rows (or instants) break it and the first few, formatted."""

    rule: str
    count: int
    examples: tuple[str, ...]

    def __str__(self) -> str:
        first = f" (first: {'; '.join(self.examples)})" if self.examples else ""
        return f"{self.rule}: {self.count}{first}"


@dataclass(frozen=True)
class ValidationResult:
    """The verdict of one rule set on one frame; ``numbers`` go to the check's metadata."""

    name: str
    problems: tuple[Problem, ...]
    numbers: dict[str, Number] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True when no rule is violated."""
        return not self.problems

    def summary(self) -> str:
        """One line per problem, or ``ok``."""
        return "ok" if self.passed else "\n".join(str(p) for p in self.problems)


class _Collector:
    """Accumulates problems; row examples are rendered from the offending rows' key columns."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def rows(self, rule: str, mask: pd.Series | np.ndarray, frame: pd.DataFrame, columns: Sequence[str]) -> int:
        flags = np.asarray(mask, dtype=bool)
        count = int(flags.sum())
        if count:
            head = frame.loc[flags, list(columns)].head(EXAMPLES)
            examples = tuple(", ".join(f"{c}={_fmt(v)}" for c, v in row.items()) for _, row in head.iterrows())
            self.problems.append(Problem(rule, count, examples))
        return count

    def items(self, rule: str, values: Iterable[object]) -> int:
        listed = list(values)
        if listed:
            self.problems.append(Problem(rule, len(listed), tuple(_fmt(v) for v in listed[:EXAMPLES])))
        return len(listed)

    def result(self, name: str, numbers: dict[str, Number]) -> ValidationResult:
        return ValidationResult(name, tuple(self.problems), numbers)


def _fmt(value: object) -> str:
    if isinstance(value, pd.Timestamp):
        if value.tzinfo is not None:
            return f"{value.tz_convert('America/New_York'):%Y-%m-%d %H:%M:%S} ET"
        return f"{value:%Y-%m-%d}"
    if isinstance(value, float | np.floating):
        return f"{float(value):.6g}"
    return str(value)


def _fmt_key(key: object) -> str:
    return " ".join(_fmt(k) for k in key) if isinstance(key, tuple) else _fmt(key)


def _worst(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.max()) if finite.size else 0.0


def _utc(now: pd.Timestamp) -> pd.Timestamp:
    if now.tzinfo is None:
        raise ValueError(f"now: expected a tz-aware timestamp, got {now!r}")
    return now.tz_convert("UTC")


def expected_instants(
    grid: pd.DatetimeIndex, session: TradingSession, now: pd.Timestamp, grace: pd.Timedelta = PUBLISH_GRACE
) -> tuple[pd.DatetimeIndex, pd.DatetimeIndex]:
    """(required, allowed) instants of a session grid as of ``now``.

    Allowed: the grid up to ``min(now, close)``. Required: the grid up to ``min(now - grace, close)``; a
    completed session requires its whole grid.
    """
    now = _utc(now)
    allowed = grid[grid <= min(now, session.close)]
    required = grid[grid <= min(now - grace, session.close)]
    return required, allowed


def _coverage(
    found: pd.Series, required: pd.DatetimeIndex, allowed: pd.DatetimeIndex, what: str, grace: pd.Timedelta,
    out: _Collector,
) -> dict[str, Number]:
    present = pd.DatetimeIndex(found.drop_duplicates())
    missing = required.difference(present)
    unexpected = present.difference(allowed)
    out.items(f"missing {what} (grid instants older than the {grace.total_seconds() / 60:g} min grace)", missing)
    out.items(f"unexpected {what} (off the session grid, after the close or in the future)", unexpected)
    return {f"{what}_required": len(required), f"{what}_present": len(present), f"{what}_missing": len(missing),
            f"{what}_unexpected": len(unexpected)}


def validate_bars(
    bars: pd.DataFrame, sessions: Sequence[TradingSession], bar_minutes: int, now: pd.Timestamp,
    grace: pd.Timedelta = PUBLISH_GRACE,
) -> ValidationResult:
    """Continuity and session coverage of ``underlying_bars`` for ``sessions`` (the partitions checked).

    Rules: every bar end of each session's grid (``session.bar_ends(bar_minutes)``, early closes included)
    up to ``min(now - grace, close)`` is present, none off the grid or after ``min(now, close)``; no
    repeated bar end; rows belong to the sessions checked; prices finite and positive with
    ``low <= min(open, close)`` and ``high >= max(open, close)``; volume ``>= 0``. A session not yet open at
    ``now`` expects no bars (``empty_reason`` says so).
    """
    require_columns(bars, ["session_date", "ts", "open", "high", "low", "close", "volume"], "underlying_bars")
    out = _Collector()
    numbers: dict[str, Number] = {"rows_checked": len(bars), "bar_minutes": bar_minutes,
                                  "grace_minutes": grace.total_seconds() / 60, "now": _fmt(_utc(now))}
    dates = pd.to_datetime(bars["session_date"]).dt.date
    known = {s.date for s in sessions}
    out.rows("rows of a session not checked here", ~dates.isin(known), bars, ["session_date", "ts"])
    required_total = missing_total = 0
    not_open = []
    for s in sessions:
        required, allowed = expected_instants(s.bar_ends(bar_minutes), s, now, grace)
        if len(allowed) == 0:
            not_open.append(s.date.isoformat())
        sub = _coverage(bars.loc[dates == s.date, "ts"], required, allowed, "bars", grace, out)
        required_total += int(sub["bars_required"] or 0)
        missing_total += int(sub["bars_missing"] or 0)
    out.rows("repeated bar end", bars.duplicated(["session_date", "ts"]).to_numpy(), bars, ["session_date", "ts"])
    o, h, lo, c = (bars[k].to_numpy(np.float64) for k in ("open", "high", "low", "close"))
    with np.errstate(invalid="ignore"):
        bad_price = ~(np.isfinite(o) & np.isfinite(h) & np.isfinite(lo) & np.isfinite(c) & (lo > 0))
        out.rows("price not finite and positive", bad_price, bars, ["ts", "open", "high", "low", "close"])
        out.rows("low above open/close or high below open/close",
                 ~bad_price & ((lo > np.minimum(o, c)) | (h < np.maximum(o, c))), bars,
                 ["ts", "open", "high", "low", "close"])
    out.rows("negative volume", (bars["volume"] < 0).to_numpy(), bars, ["ts", "volume"])
    numbers.update({"bars_required": required_total, "bars_missing": missing_total, "sessions": len(sessions)})
    if bars.empty and not_open and len(not_open) == len(sessions):
        numbers["empty_reason"] = f"session(s) {', '.join(not_open)} had not opened at {_fmt(_utc(now))}"
    return out.result("bars_continuity_and_coverage", numbers)


def validate_chain(
    chain: pd.DataFrame, session: TradingSession, expiration: dt.date, snapshot_minutes: int,
    strike_distance_pct: float, now: pd.Timestamp, grace: pd.Timedelta = PUBLISH_GRACE,
) -> ValidationResult:
    """Sanity of one ``option_chain_snapshots`` partition (one session, one expiration).

    Rules: rows are of ``session`` and ``expiration``; option type ``C``/``P``; no repeated
    (snapshot, symbol); ``0 <= bid <= ask``; ``last``, ``mid`` ``>= 0``; volume and open interest ``>= 0``;
    vendor IV null or in ``[0, IV_MAX]``; spot finite and positive, one per snapshot; snapshots cover the
    session's grid up to ``min(now - grace, close)``; every contract within the strike window
    ``|strike/spot - 1| <= strike_distance_pct %``; and at each snapshot calls and puts both list strikes
    below and above spot reaching at least ``WINDOW_REACH`` of the window's half-width on each side.
    An empty frame is judged by the caller (it needs the asset's ``empty_reason``).
    """
    require_columns(chain, ["session_date", "expiration", "snapshot_ts", "symbol", "option_type", "strike", "bid",
                            "ask", "last", "mid", "volume", "open_interest", "iv", "spot"], "option_chain_snapshots")
    out = _Collector()
    key = ["snapshot_ts", "symbol"]
    band = strike_distance_pct / 100.0
    out.rows("row of another session date", (pd.to_datetime(chain["session_date"]).dt.date != session.date)
             .to_numpy(), chain, ["session_date", *key])
    out.rows("row of another expiration", (pd.to_datetime(chain["expiration"]).dt.date != expiration).to_numpy(),
             chain, ["expiration", *key])
    out.rows("option_type not 'C' or 'P'", ~chain["option_type"].isin(["C", "P"]).to_numpy(), chain,
             [*key, "option_type"])
    out.rows("repeated (snapshot_ts, symbol)", chain.duplicated(key).to_numpy(), chain, key)
    bid, ask = chain["bid"].to_numpy(np.float64), chain["ask"].to_numpy(np.float64)
    last = chain["last"].to_numpy(np.float64, na_value=np.nan)
    mid = chain["mid"].to_numpy(np.float64)
    iv = chain["iv"].to_numpy(np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        out.rows("negative or non-finite bid/ask", ~(np.isfinite(bid) & np.isfinite(ask) & (bid >= 0) & (ask >= 0)),
                 chain, [*key, "bid", "ask"])
        crossed = bid > ask
        out.rows("bid above ask (crossed quote)", crossed, chain, [*key, "bid", "ask"])
        out.rows("negative last or mid", (last < 0) | ~(mid >= 0), chain, [*key, "last", "mid"])
        out.rows("negative open interest", (chain["open_interest"] < 0).to_numpy(), chain, [*key, "open_interest"])
        out.rows("negative volume", (chain["volume"] < 0).to_numpy(), chain, [*key, "volume"])
        bad_iv = ~np.isnan(iv) & ~((iv >= 0) & (iv <= IV_MAX))
        out.rows(f"vendor IV outside [0, {IV_MAX:g}]", bad_iv, chain, [*key, "iv"])
        spot = chain["spot"].to_numpy(np.float64)
        bad_spot = ~(np.isfinite(spot) & (spot > 0))
        out.rows("spot not finite and positive", bad_spot, chain, [*key, "spot"])
        distance = np.abs(chain["strike"].to_numpy(np.float64) / spot - 1.0)
        out.rows(f"strike outside the ±{strike_distance_pct:g}% window", ~bad_spot & (distance > band + 1e-12),
                 chain, [*key, "strike", "spot"])
    spots_per_snapshot = chain.groupby("snapshot_ts")["spot"].nunique()
    out.items("snapshot with several spot values", spots_per_snapshot.index[spots_per_snapshot > 1])
    required, allowed = expected_instants(session.snapshot_times(snapshot_minutes), session, now, grace)
    numbers: dict[str, Number] = {
        "rows_checked": len(chain), "strike_distance_pct": strike_distance_pct, "window_reach": WINDOW_REACH,
        "iv_max": IV_MAX, "crossed_quotes": int(np.count_nonzero(crossed)),
        "worst_crossed_usd": _worst(bid - ask) if crossed.any() else 0.0,
        **_coverage(chain["snapshot_ts"], required, allowed, "snapshots", grace, out),
    }
    reach = _window_reach(chain)
    numbers["worst_reach_below"] = float(reach["below"].min()) if len(reach) else None
    numbers["worst_reach_above"] = float(reach["above"].min()) if len(reach) else None
    short = reach[(reach["below"] < WINDOW_REACH * band) | (reach["above"] < WINDOW_REACH * band)]
    out.items(f"strike window covered on one side only or less than {WINDOW_REACH:.0%} of it",
              [f"{_fmt(ts)} {r.option_type} reach below {r.below:.2%}, above {r.above:.2%}"
               for ts, r in short.iterrows()])
    return out.result("chain_sanity", numbers)


def _window_reach(chain: pd.DataFrame) -> pd.DataFrame:
    """Per (snapshot, option type): how far below and above spot the strikes reach, as a share of spot.

    Both option types are reported for every snapshot (a side with no strikes reaches 0).
    """
    if chain.empty:
        return pd.DataFrame(columns=["option_type", "below", "above"])
    rel = chain["strike"] / chain["spot"] - 1.0
    frame = pd.DataFrame({"snapshot_ts": chain["snapshot_ts"], "option_type": chain["option_type"],
                          "below": (-rel).clip(lower=0.0), "above": rel.clip(lower=0.0)})
    reach = frame.groupby(["snapshot_ts", "option_type"])[["below", "above"]].max()
    full = pd.MultiIndex.from_product([chain["snapshot_ts"].drop_duplicates().sort_values(), ["C", "P"]],
                                      names=["snapshot_ts", "option_type"])
    return reach.reindex(full, fill_value=0.0).reset_index("option_type")


def validate_surface(surface: pd.DataFrame, chain: pd.DataFrame) -> ValidationResult:
    """GEX reconciliation and sign convention of one ``gex_surface`` partition against its chain.

    Rules: ``call_gex >= 0``, ``put_gex <= 0`` (dealer convention; volume GEX likewise); ``net = call + put``;
    each side's GEX equals ``gamma · OI · 100 · S² · 0.01`` with its sign (0 when gamma is null); one row per
    (snapshot, strike, settlement) of the chain, with the chain's call and put OI sums; IVs null or in
    ``[0, IV_MAX]`` (the surface writes 0, the OI-weighted mean of no usable IV, for settled strikes).
    Reconciliations: relative ``RECONCILE_RTOL`` of the row's gross GEX.
    """
    require_columns(surface, ["snapshot_ts", "strike", "spot", "call_oi", "put_oi", "call_iv", "put_iv",
                              "call_gamma", "put_gamma", "call_gex", "put_gex", "net_gex", "time_to_expiry"],
                    "gex_surface")
    require_columns(chain, ["snapshot_ts", "strike", "option_type", "open_interest"], "option_chain_snapshots")
    out = _Collector()
    # One row per series settlement when the surface has it (SPX AM and PM monthlies share strikes).
    key = ["snapshot_ts", "strike", *(["settlement"] if "settlement" in surface and "settlement" in chain else [])]
    call, put, net = (surface[c].to_numpy(np.float64) for c in ("call_gex", "put_gex", "net_gex"))
    gross = np.abs(call) + np.abs(put)
    out.rows("call GEX negative (dealer long calls: +)", ~(call >= 0), surface, [*key, "call_gex"])
    out.rows("put GEX positive (dealer short puts: -)", ~(put <= 0), surface, [*key, "put_gex"])
    if "call_gex_volume" in surface and "put_gex_volume" in surface:
        cv = surface["call_gex_volume"].to_numpy(np.float64, na_value=0.0)
        pv = surface["put_gex_volume"].to_numpy(np.float64, na_value=0.0)
        out.rows("volume GEX with the wrong sign", (cv < 0) | (pv > 0), surface,
                 [*key, "call_gex_volume", "put_gex_volume"])
    net_err = np.abs(net - (call + put))
    tol = RECONCILE_RTOL * gross
    out.rows(f"net_gex != call_gex + put_gex (rtol {RECONCILE_RTOL:g} of gross)", net_err > tol, surface,
             [*key, "call_gex", "put_gex", "net_gex"])
    spot = surface["spot"].to_numpy(np.float64)
    worst_formula = 0.0
    for side, sign in (("call", 1.0), ("put", -1.0)):
        gamma = surface[f"{side}_gamma"].to_numpy(np.float64, na_value=np.nan)
        oi = surface[f"{side}_oi"].to_numpy(np.float64)
        expected = np.where(np.isnan(gamma), 0.0, sign * np.nan_to_num(gamma) * oi * GEX_PER_PCT * spot * spot)
        got = surface[f"{side}_gex"].to_numpy(np.float64)
        err = np.abs(got - expected)
        worst_formula = max(worst_formula, _worst(err / np.maximum(np.abs(expected), 1e-300)))
        out.rows(f"{side}_gex != {'+' if sign > 0 else '-'}gamma·OI·100·S²·0.01 (rtol {RECONCILE_RTOL:g})",
                 err > RECONCILE_RTOL * np.abs(expected) + 1e-6, surface, [*key, f"{side}_gamma", f"{side}_oi",
                                                                          f"{side}_gex"])
        ivs = surface[f"{side}_iv"].to_numpy(np.float64, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            out.rows(f"{side} IV outside [0, {IV_MAX:g}]", ~np.isnan(ivs) & ~((ivs >= 0) & (ivs <= IV_MAX)), surface,
                     [*key, f"{side}_iv"])
    out.rows("negative time to expiry", ~(surface["time_to_expiry"].to_numpy(np.float64) >= 0), surface,
             [*key, "time_to_expiry"])
    out.rows(f"repeated ({', '.join(key)})", surface.duplicated(key).to_numpy(), surface, key)
    oi = chain.assign(call_oi=np.where(chain["option_type"] == "C", chain["open_interest"], 0),
                      put_oi=np.where(chain["option_type"] == "P", chain["open_interest"], 0))
    by_strike = oi.groupby(key)[["call_oi", "put_oi"]].sum()
    mine = surface.groupby(key)[["call_oi", "put_oi"]].sum()
    out.items(f"({', '.join(key)}) of the chain missing from the surface",
              [_fmt_key(k) for k in by_strike.index.difference(mine.index)])
    out.items(f"({', '.join(key)}) of the surface absent from the chain",
              [_fmt_key(k) for k in mine.index.difference(by_strike.index)])
    both = mine.merge(by_strike, left_index=True, right_index=True, how="inner", suffixes=("", "_chain"))
    off = both[(both["call_oi"] != both["call_oi_chain"]) | (both["put_oi"] != both["put_oi_chain"])]
    out.items("open interest differs from the chain's",
              [f"{_fmt_key(k)}: surface {r.call_oi}/{r.put_oi}, chain {r.call_oi_chain}/{r.put_oi_chain}"
               for k, r in off.iterrows()])
    numbers: dict[str, Number] = {
        "rows_checked": len(surface), "chain_rows": len(chain), "tolerance_rtol": RECONCILE_RTOL,
        "worst_net_error_rel": _worst(net_err / np.maximum(gross, 1e-300)),
        "worst_formula_error_rel": worst_formula,
        "positive_put_gex_rows": int(np.count_nonzero(put > 0)),
        "negative_call_gex_rows": int(np.count_nonzero(call < 0)),
    }
    return out.result("gex_reconciliation", numbers)


def surface_of_listed_expirations(levels: pd.DataFrame, surface: pd.DataFrame) -> pd.DataFrame:
    """The ``surface`` rows whose (snapshot, expiration) a levels row lists in its ``expiration_list`` (JSON), and
    every row of a snapshot that has no levels row."""
    listed = levels[["snapshot_ts"]].assign(
        expiration=[json.loads(text) if isinstance(text, str) else [] for text in levels["expiration_list"]]
    ).explode("expiration").dropna()
    wanted = pd.MultiIndex.from_arrays([
        pd.to_datetime(listed["snapshot_ts"], utc=True), pd.to_datetime(listed["expiration"]).astype("datetime64[ns]"),
    ])
    have = pd.MultiIndex.from_arrays([
        pd.to_datetime(surface["snapshot_ts"], utc=True), pd.to_datetime(surface["expiration"]).astype("datetime64[ns]"),
    ])
    unlisted = ~have.get_level_values(0).isin(pd.to_datetime(levels["snapshot_ts"], utc=True))
    return surface[have.isin(wanted) | unlisted]  # a snapshot without a levels row keeps its rows (a rule flags it)


def validate_levels(levels: pd.DataFrame, surface: pd.DataFrame) -> ValidationResult:
    """Plausibility of one day's ``gex_levels`` and reconciliation with that day's ``gex_surface``.

    With an ``expiration_list`` column, each levels row is reconciled with the surface of exactly the
    expirations it lists (a surface stored for an expiration no longer tracked is not part of it).

    Rules: one level row per surface snapshot; spot equals the surface's spot; call/put/net totals equal
    the sums of the surface by strike over all expirations (relative ``RECONCILE_RTOL`` of the snapshot's
    gross GEX) with ``call >= 0 >= put``; call wall a listed strike ``>= spot`` with positive GEX, put wall
    a listed strike ``<= spot`` with negative GEX, each wall's GEX the surface's extreme on its side (same
    tolerance); a wall is null only when no strike on its side carries
    GEX of its sign; zero gamma (and ``flip_dte_*``) null exactly when a reason is given, otherwise within
    ``MAX_DISTANCE + GRID_STEP`` of spot (the structural gate plus one grid cell); the raw crossing within the
    widest profile grid (±``GRID_HALF_WIDTHS[-1]``).
    """
    require_columns(levels, ["snapshot_ts", "spot", "net_gex", "call_gex", "put_gex", "zero_gamma",
                             "zero_gamma_reason", "call_wall", "call_wall_gex", "put_wall", "put_wall_gex",
                             "zero_gamma_raw", "zero_gamma_raw_reason"], "gex_levels")
    require_columns(surface, ["snapshot_ts", "strike", "spot", "call_gex", "put_gex", "net_gex"], "gex_surface")
    if "expiration_list" in levels.columns and "expiration" in surface.columns:
        surface = surface_of_listed_expirations(levels, surface)
    out = _Collector()
    key = ["snapshot_ts"]
    agg = surface.assign(gross=surface["call_gex"].abs() + surface["put_gex"].abs()).groupby("snapshot_ts").agg(
        s_call=("call_gex", "sum"), s_put=("put_gex", "sum"), s_net=("net_gex", "sum"), gross=("gross", "sum"),
        s_spot=("spot", "first"))
    lv = levels.set_index("snapshot_ts")
    out.items("surface snapshot without a levels row", [_fmt(t) for t in agg.index.difference(lv.index)])
    out.items("levels row without surface rows", [_fmt(t) for t in lv.index.difference(agg.index)])
    out.rows("repeated snapshot_ts", levels.duplicated(key).to_numpy(), levels, key)
    j = lv.join(agg, how="inner")
    worst = 0.0
    for col in ("call_gex", "put_gex", "net_gex"):
        err = (j[col] - j[f"s_{col.split('_')[0]}"]).abs().to_numpy(np.float64)
        gross = j["gross"].to_numpy(np.float64)
        worst = max(worst, _worst(err / np.maximum(gross, 1e-300)))
        bad = err > RECONCILE_RTOL * gross
        out.rows(f"{col} != sum of gex_surface by strike (rtol {RECONCILE_RTOL:g} of gross)", bad,
                 j.reset_index(), [*key, col, f"s_{col.split('_')[0]}"])
    out.rows("spot differs from the surface's", (j["spot"] != j["s_spot"]).to_numpy(), j.reset_index(),
             [*key, "spot", "s_spot"])
    spot = levels["spot"].to_numpy(np.float64)
    with np.errstate(invalid="ignore"):
        out.rows("spot not finite and positive", ~(np.isfinite(spot) & (spot > 0)), levels, [*key, "spot"])
        out.rows("total call GEX negative or put GEX positive",
                 ~(levels["call_gex"].to_numpy(np.float64) >= 0) | ~(levels["put_gex"].to_numpy(np.float64) <= 0),
                 levels, [*key, "call_gex", "put_gex"])
    _walls(levels, surface, out)
    far = _flips(levels, out)
    numbers: dict[str, Number] = {
        "rows_checked": len(levels), "surface_rows": len(surface), "tolerance_rtol": RECONCILE_RTOL,
        "worst_total_error_rel": worst, "max_flip_distance": MAX_DISTANCE + GRID_STEP,
        "worst_flip_distance": far,
        "zero_gamma_null_rows": int(levels["zero_gamma"].isna().sum()),
    }
    return out.result("levels_plausibility", numbers)


def _walls(levels: pd.DataFrame, surface: pd.DataFrame, out: _Collector) -> None:
    by_strike = surface.groupby(["snapshot_ts", "strike"])[["call_gex", "put_gex"]].sum().reset_index()
    merged = by_strike.merge(levels[["snapshot_ts", "spot"]], on="snapshot_ts")
    above = merged[merged["strike"] >= merged["spot"]]
    below = merged[merged["strike"] <= merged["spot"]]
    has_call = set(above.loc[above["call_gex"] > 0, "snapshot_ts"])
    has_put = set(below.loc[below["put_gex"] < 0, "snapshot_ts"])
    listed = set(zip(by_strike["snapshot_ts"], by_strike["strike"], strict=True))
    cols = ["snapshot_ts", "spot", "call_wall", "put_wall"]
    cw, pw, spot = (levels[c].to_numpy(np.float64) for c in ("call_wall", "put_wall", "spot"))
    cwg = levels["call_wall_gex"].to_numpy(np.float64)
    pwg = levels["put_wall_gex"].to_numpy(np.float64)
    ts = levels["snapshot_ts"]
    with np.errstate(invalid="ignore"):
        out.rows("call wall below spot", cw < spot, levels, cols)
        out.rows("put wall above spot", pw > spot, levels, cols)
        out.rows("call wall GEX not positive", ~np.isnan(cw) & ~(cwg > 0), levels, [*cols, "call_wall_gex"])
        out.rows("put wall GEX not negative", ~np.isnan(pw) & ~(pwg < 0), levels, [*cols, "put_wall_gex"])
    unlisted = [(not np.isnan(c) and (t, c) not in listed) or (not np.isnan(p) and (t, p) not in listed)
                for t, c, p in zip(ts, cw, pw, strict=True)]
    out.rows("wall not a strike of the surface", np.array(unlisted, dtype=bool), levels, cols)
    out.rows("call wall null although a strike >= spot has positive call GEX",
             np.isnan(cw) & ts.isin(has_call).to_numpy(), levels, cols)
    out.rows("put wall null although a strike <= spot has negative put GEX",
             np.isnan(pw) & ts.isin(has_put).to_numpy(), levels, cols)
    # The wall is the extreme of its side: its GEX equals both the surface's sum at the wall strike and the
    # side's extreme (ties between strikes are fine), within RECONCILE_RTOL of the snapshot's gross GEX.
    gross = surface.assign(g=surface["call_gex"].abs() + surface["put_gex"].abs()).groupby("snapshot_ts")["g"].sum()
    scale = RECONCILE_RTOL * ts.map(gross).to_numpy(np.float64)
    sums = by_strike.set_index(["snapshot_ts", "strike"])
    for side, wall, wall_gex, extreme in (
        ("call", cw, cwg, above.groupby("snapshot_ts")["call_gex"].max()),
        ("put", pw, pwg, below.groupby("snapshot_ts")["put_gex"].min()),
    ):
        at_wall = sums[f"{side}_gex"].reindex(pd.MultiIndex.from_arrays([ts, wall])).to_numpy(np.float64)
        best = ts.map(extreme).to_numpy(np.float64)
        with np.errstate(invalid="ignore"):
            off = ~np.isnan(wall) & ((np.abs(wall_gex - at_wall) > scale) | (np.abs(wall_gex - best) > scale))
        out.rows(f"{side} wall GEX is not the surface's {'largest' if side == 'call' else 'most negative'} "
                 f"{side} GEX on its side of spot (rtol {RECONCILE_RTOL:g} of gross)", off, levels,
                 [*cols, f"{side}_wall_gex"])


def _flips(levels: pd.DataFrame, out: _Collector) -> float | None:
    """Check every flip column against its reason and the distance gate; the worst distance/spot seen."""
    spot = levels["spot"].to_numpy(np.float64)
    cols = ["snapshot_ts", "spot"]
    worst: float | None = None
    for level, reason, limit in (("zero_gamma", "zero_gamma_reason", MAX_DISTANCE + GRID_STEP),
                                 ("zero_gamma_raw", "zero_gamma_raw_reason", GRID_HALF_WIDTHS[-1])):
        value = levels[level].to_numpy(np.float64, na_value=np.nan)
        why = levels[reason].astype("string").fillna("").str.strip() != ""
        out.rows(f"{level} null without a reason", np.isnan(value) & ~why.to_numpy(), levels, [*cols, level, reason])
        out.rows(f"{level} and a null-reason both set", ~np.isnan(value) & why.to_numpy(), levels,
                 [*cols, level, reason])
        distance = np.abs(value / spot - 1.0)
        out.rows(f"{level} farther than {limit:.0%} of spot (outside the profile grid/gate)", distance > limit + 1e-12,
                 levels, [*cols, level])
        if level == "zero_gamma" and np.isfinite(distance).any():
            worst = float(np.nanmax(distance))
    for col in [c for c in levels.columns if c.startswith("flip_dte_")]:
        value = levels[col].to_numpy(np.float64, na_value=np.nan)
        out.rows(f"{col} farther than {MAX_DISTANCE + GRID_STEP:.0%} of spot",
                 np.abs(value / spot - 1.0) > MAX_DISTANCE + GRID_STEP + 1e-12, levels, [*cols, col])
    return worst


SlotGap = tuple[int, dt.date, str]
"""``(slot, tracked expiration, what is wrong)`` of one expiration slot of a day."""


def missing_tracked_expirations(surface: pd.DataFrame, tracked: Sequence[dt.date]) -> list[SlotGap]:
    """The tracked expirations one day's ``gex_surface`` rows lack, at any snapshot (empty when complete).

    ``tracked`` is the day's tracked expirations, nearest first: slot ``k`` (``expiration_slot``) must hold
    ``tracked[k-1]`` and no other expiration, at every snapshot instant of the day's surface (the union over slots).
    """
    require_columns(surface, ["snapshot_ts", "expiration", "expiration_slot"], "gex_surface")
    instants_ns = pd.DatetimeIndex(surface["snapshot_ts"]).asi8
    days = pd.DatetimeIndex(pd.to_datetime(np.asarray(surface["expiration"]))).values.astype("datetime64[D]")
    slots = surface["expiration_slot"].to_numpy(np.int64)
    instants = np.unique(instants_ns)
    gaps: list[SlotGap] = []
    for slot, expiration in enumerate(tracked, start=1):
        in_slot = slots == slot
        if not in_slot.any():
            gaps.append((slot, expiration, "no surface stored"))
            continue
        held = [dt.date.fromisoformat(str(d)) for d in np.unique(days[in_slot])]
        if held != [expiration]:
            gaps.append((slot, expiration, f"surface stored for {', '.join(map(str, held))} instead"))
            continue
        lacking = int(np.setdiff1d(instants, instants_ns[in_slot]).size)
        if lacking:
            gaps.append((slot, expiration, f"{lacking} of {len(instants)} snapshots missing"))
    return gaps


def validate_levels_complete(
    levels: pd.DataFrame, surface: pd.DataFrame, tracked: dict[dt.date, list[dt.date]], opened: set[dt.date],
) -> ValidationResult:
    """Every stored levels row aggregates exactly its day's tracked expirations, and the surface holds them all.

    ``tracked`` maps each date checked to its tracked expirations (the ``ZEROGEX_EXPIRATIONS`` nearest listed,
    nearest first); ``opened`` holds the dates whose session had opened. Rules, per date: the surface holds every
    tracked expiration in its slot at every snapshot (:func:`missing_tracked_expirations`); every levels row lists
    exactly the tracked expirations (``expiration_list``) and counts them (``expirations``); an opened session has
    levels rows; a session not yet open has none.
    """
    require_columns(levels, ["session_date", "snapshot_ts", "expirations", "expiration_list"], "gex_levels")
    require_columns(surface, ["session_date", "snapshot_ts", "expiration", "expiration_slot"], "gex_surface")
    out = _Collector()
    level_days = pd.to_datetime(levels["session_date"]).dt.date
    surface_days = pd.to_datetime(surface["session_date"]).dt.date
    incomplete: list[str] = []
    for date, expirations in sorted(tracked.items()):
        day_levels = levels[(level_days == date).to_numpy()]
        day_surface = surface[(surface_days == date).to_numpy()]
        if date not in opened:
            out.rows("levels row of a session not yet open", np.ones(len(day_levels), dtype=bool), day_levels,
                     ["session_date", "snapshot_ts"])
            continue
        gaps = missing_tracked_expirations(day_surface, expirations)
        out.items("tracked expiration missing from the surface (date, slot = expiration: what)",
                  [f"({date}, slot {k} = {e}: {what})" for k, e, what in gaps])
        if day_levels.empty:
            out.items("opened session without levels rows", [date.isoformat()])
        want = json.dumps([e.isoformat() for e in expirations])
        wrong = ((day_levels["expiration_list"].astype("string") != want) |
                 (day_levels["expirations"] != len(expirations))).to_numpy()
        out.rows(f"levels row not aggregating exactly the {len(expirations)} tracked expirations {want}", wrong,
                 day_levels, ["session_date", "snapshot_ts", "expirations", "expiration_list"])
        if gaps or day_levels.empty or wrong.any():
            incomplete.append(date.isoformat())
    numbers: dict[str, Number] = {
        "dates_checked": len(tracked), "incomplete_dates": ", ".join(incomplete) or None,
        "expirations_tracked": json.dumps({d.isoformat(): [e.isoformat() for e in t] for d, t in sorted(tracked.items())})
        if len(tracked) <= 5 else None,
        "rows_checked": len(levels),
    }
    return out.result("levels_complete", numbers)


def combine(name: str, parts: Sequence[tuple[str, ValidationResult]]) -> ValidationResult:
    """One result of several partitions' results: each problem's rule prefixed by its partition label.

    Numbers: ``partitions_checked``, ``failed_partitions`` and every part's integer counts summed.
    """
    problems = tuple(Problem(f"{label}: {p.rule}", p.count, p.examples) for label, r in parts for p in r.problems)
    numbers: dict[str, Number] = {"partitions_checked": len(parts),
                                  "failed_partitions": ", ".join(label for label, r in parts if not r.passed) or None}
    for _, r in parts:
        for key, value in r.numbers.items():
            if isinstance(value, int) and not isinstance(value, bool):
                numbers[key] = int(numbers.get(key) or 0) + value  # type: ignore[arg-type]
    if len(parts) == 1:
        numbers = {**parts[0][1].numbers, **numbers}
    return ValidationResult(name, problems, numbers)
