"""Column lineage of the GEX columns (``dagster/column_lineage`` materialization metadata).

Which upstream columns each published exposure and level is computed from, so the UI's column
lineage view traces e.g. ``gex_levels.zero_gamma`` back to the chain's open interest and quotes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import dagster as dg

# gex_surface column -> chain columns (per side: calls use the 'C' rows, puts the 'P' rows)
_GREEK_INPUTS = ("strike", "expiration", "settlement", "spot", "snapshot_ts", "iv", "mid", "bid", "ask", "last")
SURFACE_FROM_CHAIN: Mapping[str, Sequence[str]] = {
    "spot": ("spot",),
    "call_oi": ("open_interest", "option_type"),
    "put_oi": ("open_interest", "option_type"),
    "call_iv": _GREEK_INPUTS,
    "put_iv": _GREEK_INPUTS,
    "call_gamma": _GREEK_INPUTS,
    "put_gamma": _GREEK_INPUTS,
    "call_gex": (*_GREEK_INPUTS, "open_interest", "option_type"),
    "put_gex": (*_GREEK_INPUTS, "open_interest", "option_type"),
    "net_gex": (*_GREEK_INPUTS, "open_interest", "option_type"),
    "call_gex_volume": (*_GREEK_INPUTS, "volume", "option_type"),
    "put_gex_volume": (*_GREEK_INPUTS, "volume", "option_type"),
    "net_gex_volume": (*_GREEK_INPUTS, "volume", "option_type"),
}

# gex_levels column -> gex_surface columns of the snapshot (all its expirations)
_PROFILE_INPUTS = ("strike", "spot", "call_iv", "put_iv", "call_oi", "put_oi", "time_to_expiry", "rate",
                   "dividend_yield")
LEVELS_FROM_SURFACE: Mapping[str, Sequence[str]] = {
    "spot": ("spot",),
    "call_gex": ("call_gex",),
    "put_gex": ("put_gex",),
    "net_gex": ("net_gex",),
    "net_gex_at_spot": _PROFILE_INPUTS,
    "zero_gamma": _PROFILE_INPUTS,
    "zero_gamma_raw": _PROFILE_INPUTS,
    "call_wall": ("strike", "call_gex", "spot"),
    "call_wall_gex": ("strike", "call_gex", "spot"),
    "put_wall": ("strike", "put_gex", "spot"),
    "put_wall_gex": ("strike", "put_gex", "spot"),
    "abs_gamma_strike": ("strike", "call_gex", "put_gex"),
    "net_gex_volume": ("net_gex_volume",),
}


def column_lineage(upstream: dg.AssetKey, mapping: Mapping[str, Sequence[str]]) -> dg.TableColumnLineage:
    """``mapping`` (column -> upstream columns) as Dagster column lineage on ``upstream``."""
    return dg.TableColumnLineage(
        deps_by_column={
            column: [dg.TableColumnDep(asset_key=upstream, column_name=c) for c in sources]
            for column, sources in mapping.items()
        }
    )
