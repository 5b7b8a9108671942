"""GEX levels of one snapshot across expirations, from its ``gex_surface`` rows.

Every figure comes from :func:`zerogex_pipeline.analytics.engine.compute_product` (walls with the
side-of-spot rule, absolute-gamma strike, max pain per expiration, sticky-strike gamma profile, zero gamma
raw and structural, net GEX at spot off the same profile, flip term structure), fed with the per-strike
rows of the surface (series sharing a strike are represented by their OI-weighted IV).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from zerogex_pipeline.analytics import CONVENTION
from zerogex_pipeline.analytics.engine import FLIP_DTE_REFS, Chain, Product, compute_product


def expiration_codes(expiration: pd.Series | np.ndarray, settlement: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    """Integer codes into sorted expiration labels, one label per (date, settlement).

    An SPX AM monthly is its own expiration (``"2025-01-17 AM"``), so max pain and the per-expiration totals
    never pool it with the PM series of the same date.
    """
    days = np.asarray(pd.to_datetime(np.asarray(expiration)).values.astype("datetime64[D]").astype(np.int64))
    am = np.asarray(settlement) == "AM"
    pairs, inverse = np.unique(days * 2 + am, return_inverse=True)  # labels sort like their (date, AM) pairs
    labels = tuple(str(np.datetime64(int(p // 2), "D")) + (" AM" if p % 2 else "") for p in pairs)
    return np.asarray(inverse, dtype=np.intp).reshape(-1), labels


class SurfaceColumns:
    """The ``gex_surface`` columns the levels read, as numpy arrays converted once for a whole frame (a day or a
    range of days); :meth:`chain` and :meth:`levels` take one snapshot's rows by position."""

    def __init__(self, rows: pd.DataFrame) -> None:
        n = len(rows)
        settlement = rows["settlement"].to_numpy() if "settlement" in rows else np.full(n, "PM")
        self.codes, self.labels = expiration_codes(rows["expiration"], settlement)

        def both(col: str) -> tuple[np.ndarray, np.ndarray]:
            return (rows[f"call_{col}"].to_numpy(np.float64, na_value=np.nan),
                    rows[f"put_{col}"].to_numpy(np.float64, na_value=np.nan))

        self.iv, self.oi = both("iv"), both("oi")
        self.volume = both("volume") if "call_volume" in rows else None
        self.spot = rows["spot"].to_numpy(np.float64)
        self.rate = rows["rate"].to_numpy(np.float64)
        self.dividend_yield = rows["dividend_yield"].to_numpy(np.float64)
        self.strike = rows["strike"].to_numpy(np.float64)
        self.time_to_expiry = rows["time_to_expiry"].to_numpy(np.float64)
        self.source_codes: np.ndarray | None = None
        if "call_iv_source" in rows:  # both sides coded into one set of labels; a null source is -1
            codes, uniques = pd.factorize(pd.concat([rows["call_iv_source"], rows["put_iv_source"]],
                                                    ignore_index=True))
            self.source_codes = np.asarray(codes).reshape(2, n)
            self.sources = [str(u) for u in uniques]

    def chain(self, pos: np.ndarray) -> Chain:
        """Engine arrays of the rows at ``pos`` (one snapshot; calls then puts)."""
        n = len(pos)
        present, codes = np.unique(self.codes[pos], return_inverse=True)

        def both(pair: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
            return np.concatenate([pair[0][pos], pair[1][pos]])

        vol = both(self.volume) if self.volume is not None else np.zeros(2 * n)
        return Chain(
            spot=float(self.spot[pos[0]]), r=float(self.rate[pos[0]]), q=float(self.dividend_yield[pos[0]]),
            strike=np.tile(self.strike[pos], 2), T=np.tile(self.time_to_expiry[pos], 2), iv=both(self.iv),
            oi=both(self.oi), volume=np.nan_to_num(vol), is_call=np.r_[np.ones(n, dtype=bool), np.zeros(n, dtype=bool)],
            expiry=np.tile(np.asarray(codes, dtype=np.intp).reshape(-1), 2),
            expirations=tuple(self.labels[i] for i in present),
        )

    def levels(self, pos: np.ndarray) -> dict[str, object]:
        """Levels of the snapshot whose rows are at ``pos``."""
        sources: dict[str, int] = {}
        if self.source_codes is not None:
            codes = self.source_codes[:, pos].ravel()
            counts = np.bincount(codes[codes >= 0], minlength=len(self.sources))
            sources = {self.sources[i]: int(c) for i, c in enumerate(counts) if c}
        chain = self.chain(pos)
        return chain_levels(chain, sources, [label[:10] for label in chain.expirations])  # "YYYY-MM-DD[ AM]"


def chain_from_surface(rows: pd.DataFrame) -> Chain:
    """Engine arrays of one snapshot from its ``gex_surface`` rows (calls then puts)."""
    return SurfaceColumns(rows).chain(np.arange(len(rows)))


def levels_record(p: Product) -> dict[str, object]:
    """The ``gex_levels`` columns of one computed snapshot."""
    t = p.totals
    next_exp = min(p.max_pain) if p.max_pain else None
    rec: dict[str, object] = {
        "spot": p.spot,
        "net_gex": t["net_gex"], "call_gex": t["call_gex"], "put_gex": t["put_gex"],
        "net_gex_at_spot": p.net_gex_at_spot,
        "net_gex_at_spot_structural": p.net_gex_at_spot_structural,
        "zero_gamma": p.zero_gamma.level, "zero_gamma_reason": p.zero_gamma.reason,
        "zero_gamma_raw": p.zero_gamma_raw.level, "zero_gamma_raw_reason": p.zero_gamma_raw.reason,
        "call_wall": p.call_wall, "call_wall_gex": p.call_wall_gex,
        "put_wall": p.put_wall, "put_wall_gex": p.put_wall_gex,
        "abs_gamma_strike": p.abs_gamma_strike, "abs_gamma_gex": p.abs_gamma_gex,
        "net_dex": t["net_dex"], "net_vex": t["net_vex"], "net_cex": t["net_cex"],
        "call_gex_volume": t["call_gex_volume"], "put_gex_volume": t["put_gex_volume"],
        "net_gex_volume": t["net_gex_volume"],
        "max_pain_next": None if next_exp is None else p.max_pain[next_exp],
        "max_pain": json.dumps(p.max_pain, sort_keys=True),
        "coverage": p.inputs["coverage"],
        "t_convention": p.inputs["t_convention"],
    }
    for ref in FLIP_DTE_REFS:
        rec[f"flip_dte_{int(ref)}"] = p.flip_term_structure[ref].level
    return rec


def chain_levels(chain: Chain, iv_sources: dict[str, int], expirations: list[str]) -> dict[str, object]:
    """The ``gex_levels`` columns (without the key columns) of one snapshot's engine arrays.

    ``iv_sources``: contract lines per IV source; ``expirations``: the expiration dates (``YYYY-MM-DD``) aggregated.
    """
    rec = levels_record(compute_product(chain))
    rec["iv_sources"] = json.dumps(iv_sources, sort_keys=True)
    listed = sorted(set(expirations))
    rec.update({
        "expirations": len(listed),
        "expiration_list": json.dumps(listed),
        "contracts": int(np.count_nonzero(np.isfinite(chain.iv) & (chain.T > 0))),
        "rate": chain.r, "dividend_yield": chain.q, "convention": CONVENTION,
    })
    return rec


def snapshot_levels(rows: pd.DataFrame) -> dict[str, object]:
    """Levels of one snapshot from its ``gex_surface`` rows across expirations."""
    return SurfaceColumns(rows).levels(np.arange(len(rows)))


def build_levels(surface: pd.DataFrame) -> pd.DataFrame:
    """One ``gex_levels`` row per snapshot of a day's ``gex_surface`` rows (all its expirations)."""
    if surface.empty:
        return pd.DataFrame()
    columns = SurfaceColumns(surface)  # converted once: per snapshot, only positions are taken
    groups = surface.groupby(["underlying", "session_date", "snapshot_ts"], sort=True).indices
    records = []
    for (underlying, session_date, snapshot_ts), pos in sorted(groups.items()):
        records.append({"underlying": underlying, "session_date": session_date, "snapshot_ts": snapshot_ts,
                        **columns.levels(np.asarray(pos))})
    return pd.DataFrame.from_records(records)
