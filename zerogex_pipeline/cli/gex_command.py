"""``zerogex gex --cboe-csv PATH``: exposures and levels of a CBOE quote-table export, in either convention."""

from __future__ import annotations

import argparse
import json
from typing import Any

from zerogex_pipeline.analytics import CONVENTION
from zerogex_pipeline.analytics import perfiliev as pf
from zerogex_pipeline.analytics.cboe import read_cboe_csv
from zerogex_pipeline.analytics.chain import chain_from_frame, iv_source_counts
from zerogex_pipeline.analytics.engine import compute_product
from zerogex_pipeline.cli.formatting import render_table, usd, usd_compact
from zerogex_pipeline.settings import load_settings
from zerogex_pipeline.underlyings import UnknownUnderlyingError, resolve_underlying

UNIT = "USD per 1% move"


def _num(v: float | None) -> float | None:
    return None if v is None else float(v)


def gex_report(path: str, convention: str) -> dict[str, Any]:
    """The JSON object of ``zerogex gex`` (money in USD, GEX per 1% move)."""
    export = read_cboe_csv(path)
    if convention == "perfiliev":
        r = pf.compute(pf.inputs_from_raw(export.raw, export.spot, export.as_of.date().isoformat()))
        max_pain_chain, _ = chain_from_frame(export.chain, 0.0, 0.0)
        product = compute_product(max_pain_chain)
        return {
            "spot": export.spot, "as_of": export.as_of.isoformat(), "convention": pf.CONVENTION, "unit": UNIT,
            "total_gex": r.total_gex, "call_gex": r.call_gex, "put_gex": r.put_gex,
            "zero_gamma": r.zero_gamma, "zero_gamma_raw": r.zero_gamma,
            "call_wall": r.call_wall, "put_wall": r.put_wall, "abs_gamma_strike": r.abs_gamma_strike,
            "max_pain": product.max_pain,
            "profile": [{"price": float(x), "net_gex": float(y)} for x, y in zip(r.levels, r.profile, strict=True)],
            "by_strike": [{"strike": float(k), "call_gex": float(c), "put_gex": float(p), "net_gex": float(c + p)}
                          for k, c, p in zip(r.strikes, r.call_gex_by_strike, r.put_gex_by_strike, strict=True)],
            "profile_nearest_spot": r.profile_nearest_spot, "gex_at_spot_bs": r.gex_at_spot,
        }
    settings = load_settings()
    try:
        q = resolve_underlying(export.chain["underlying"].iloc[0]).dividend_yield
    except UnknownUnderlyingError:
        q = 0.0
    chain, choice = chain_from_frame(export.chain, settings.risk_free_rate, q)
    p = compute_product(chain)
    bs = p.by_strike
    return {
        "spot": export.spot, "as_of": export.as_of.isoformat(), "convention": CONVENTION, "unit": UNIT,
        "total_gex": p.totals["net_gex"], "call_gex": p.totals["call_gex"], "put_gex": p.totals["put_gex"],
        "zero_gamma": _num(p.zero_gamma.level), "zero_gamma_reason": p.zero_gamma.reason,
        "zero_gamma_raw": _num(p.zero_gamma_raw.level), "zero_gamma_raw_reason": p.zero_gamma_raw.reason,
        "net_gex_at_spot": p.net_gex_at_spot,
        "call_wall": p.call_wall, "call_wall_gex": p.call_wall_gex, "put_wall": p.put_wall,
        "put_wall_gex": p.put_wall_gex, "abs_gamma_strike": p.abs_gamma_strike, "max_pain": p.max_pain,
        "flip_term_structure": {str(int(k)): v.level for k, v in p.flip_term_structure.items()},
        "dex": p.totals["net_dex"], "vex": p.totals["net_vex"], "cex": p.totals["net_cex"],
        "volume_gex": p.totals["net_gex_volume"],
        "profile": [{"price": float(x), "net_gex": float(y)}
                    for x, y in zip(p.profile_levels, p.profile_raw, strict=True)],
        "by_strike": [{"strike": float(k), "call_gex": float(c), "put_gex": float(pp), "net_gex": float(c + pp)}
                      for k, c, pp in zip(p.strikes, bs["call_gex"], bs["put_gex"], strict=True)],
        "inputs": {**p.inputs, "iv_sources": iv_source_counts(choice)},
    }


def _table(rep: dict[str, Any]) -> str:
    rows = [
        ["spot", usd(rep["spot"])], ["as of", str(rep["as_of"])], ["convention", str(rep["convention"])],
        ["total GEX ($/1%)", usd_compact(rep["total_gex"])], ["call GEX", usd_compact(rep["call_gex"])],
        ["put GEX", usd_compact(rep["put_gex"])],
        ["zero gamma", usd(rep["zero_gamma"]) if rep["zero_gamma"] is not None
         else f"none ({rep.get('zero_gamma_reason')})"],
        ["zero gamma (raw)", usd(rep["zero_gamma_raw"])],
        ["call wall", usd(rep["call_wall"], 0)], ["put wall", usd(rep["put_wall"], 0)],
        ["abs-gamma strike", usd(rep["abs_gamma_strike"], 0)],
    ]
    nxt = sorted(rep["max_pain"])[:3]
    rows += [[f"max pain {e}", usd(rep["max_pain"][e], 0)] for e in nxt]
    return render_table(["figure", "value"], rows)


def _handle(args: argparse.Namespace) -> int:
    rep = gex_report(args.cboe_csv, args.convention)
    print(json.dumps(rep) if args.json else _table(rep))
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``gex`` command."""
    p = sub.add_parser("gex", help="exposures and levels of a CBOE quote-table export")
    p.add_argument("--cboe-csv", required=True, help="path of a CBOE delayed quote-table CSV export")
    p.add_argument("--convention", choices=["zerogex", "perfiliev"], default="zerogex",
                   help="zerogex (default) or perfiliev (parity with the public recipe)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(handler=_handle)
