"""The backtest chart: realized range against distance to the flip at the open, colored by regime."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

REGIME_COLORS = {"positive": "#2e7d32", "negative": "#c62828", "zero": "#757575"}


def range_vs_flip_png(table: pd.DataFrame, title: str) -> bytes:
    """PNG scatter of ``realized_range_pct`` (y, %) vs ``distance_to_flip_pct`` (x, %) per regime.

    Days without a flip (null distance) cannot be placed on x and are counted in the legend instead.
    """
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=100)
    try:
        for regime, color in REGIME_COLORS.items():
            days = table[table["regime"] == regime]
            if days.empty:
                continue
            placed = days[days["distance_to_flip_pct"].notna()]
            label = f"{regime} net GEX at open ({len(days)} d"
            label += f", {len(days) - len(placed)} without flip)" if len(placed) < len(days) else ")"
            ax.scatter(placed["distance_to_flip_pct"], placed["realized_range_pct"], s=22, color=color,
                       alpha=0.8, label=label)
        ax.axvline(0.0, color="black", linewidth=0.8, linestyle="--")
        ax.set_xlabel("spot − zero gamma at the open, % of spot (right: above the flip)")
        ax.set_ylabel("realized range (high − low) / open, %")
        ax.set_title(title, fontsize=10)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="upper right")
        ax.grid(alpha=0.3)
        buffer = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buffer, format="png")
        return buffer.getvalue()
    finally:
        plt.close(fig)


def markdown_png(png: bytes, alt: str) -> str:
    """Markdown image with the PNG inlined as a base64 data URI (shown by the Dagster UI)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"
