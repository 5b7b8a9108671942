"""Plain-text tables for the command line."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd


def usd(value: float | None, digits: int = 2) -> str:
    """``$1,234.56``, or ``-`` for a missing value."""
    return "-" if value is None or pd.isna(value) else f"${value:,.{digits}f}"


def usd_compact(value: float | None) -> str:
    """Signed dollars with a scale suffix: ``+$1.23bn``, ``-$45.6m``."""
    if value is None or pd.isna(value):
        return "-"
    sign = "+" if value >= 0 else "-"
    mag = abs(value)
    for threshold, suffix in ((1e9, "bn"), (1e6, "m"), (1e3, "k")):
        if mag >= threshold:
            return f"{sign}${mag / threshold:,.2f}{suffix}"
    return f"{sign}${mag:,.0f}"


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned first column, right-aligned others, with a rule under the header."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])
