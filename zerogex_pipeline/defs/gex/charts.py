"""PNG charts for the Dagster UI: the gamma profile, GEX by strike and the intraday levels.

Each chart is a small PNG embedded in markdown materialization metadata as a base64 data URI, so it
shows on the asset's page with no file server. Units follow the assets: GEX in USD per 1% move (shown
in $bn), prices in USD, times in America/New_York.
"""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from zerogex_pipeline.analytics.engine import Product

BN = 1e9
DPI = 72
SIZE = (7.5, 3.2)


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def markdown_image(png: bytes, alt: str) -> str:
    """Markdown that shows ``png`` inline (``![alt](data:image/png;base64,...)``)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


def _levels_lines(ax: plt.Axes, spot: float, zero_gamma: float | None) -> None:
    ax.axvline(spot, color="black", lw=1, label=f"spot {spot:,.2f}")
    if zero_gamma is not None and np.isfinite(zero_gamma):
        ax.axvline(zero_gamma, color="tab:purple", lw=1, ls="--", label=f"zero gamma {zero_gamma:,.2f}")


def gamma_profile_png(product: Product, title: str) -> bytes:
    """Net GEX ($bn per 1%) if spot moved to each grid level (sticky strike), raw and DTE-weighted."""
    fig, ax = plt.subplots(figsize=SIZE)
    ax.plot(product.profile_levels, product.profile_raw / BN, color="tab:blue", lw=1.5, label="net GEX (raw)")
    ax.plot(product.profile_levels, product.profile_structural / BN, color="tab:orange", lw=1, ls=":",
            label="DTE-weighted (zero-gamma basis)")
    ax.axhline(0, color="grey", lw=0.6)
    _levels_lines(ax, product.spot, product.zero_gamma.level)
    ax.set_xlabel("underlying level, USD")
    ax.set_ylabel("net GEX, $bn per 1%")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="best")
    return _png(fig)


def gex_by_strike_png(strikes: np.ndarray, call_gex: np.ndarray, put_gex: np.ndarray, spot: float,
                      title: str, window_pct: float = 5.0) -> bytes:
    """Call (+) and put (-) GEX by strike ($bn per 1%) within ``window_pct`` % of spot, net as a line."""
    keep = np.abs(strikes / spot - 1.0) <= window_pct / 100.0
    k, c, p = strikes[keep], call_gex[keep], put_gex[keep]
    width = float(np.min(np.diff(k))) * 0.8 if k.size > 1 else 1.0
    fig, ax = plt.subplots(figsize=SIZE)
    ax.bar(k, c / BN, width=width, color="tab:green", label="call GEX (dealers long, +)")
    ax.bar(k, p / BN, width=width, color="tab:red", label="put GEX (dealers short, -)")
    ax.plot(k, (c + p) / BN, color="black", lw=1, label="net")
    ax.axvline(spot, color="black", lw=0.8, ls="--", label=f"spot {spot:,.2f}")
    ax.axhline(0, color="grey", lw=0.6)
    ax.set_xlabel("strike, USD")
    ax.set_ylabel("GEX, $bn per 1%")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="best")
    return _png(fig)


def intraday_levels_png(levels: pd.DataFrame, title: str) -> bytes:
    """Spot, zero gamma and the walls through the session (ET), and net GEX ($bn per 1%) below."""
    times = pd.to_datetime(levels["snapshot_ts"], utc=True).dt.tz_convert("America/New_York").dt.tz_localize(None)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(SIZE[0], 4.6), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1.3]})
    top.plot(times, levels["spot"], color="black", lw=1.4, label="spot")
    top.plot(times, levels["zero_gamma"], color="tab:purple", lw=1, ls="--", label="zero gamma")
    top.step(times, levels["call_wall"], where="post", color="tab:green", lw=1, label="call wall")
    top.step(times, levels["put_wall"], where="post", color="tab:red", lw=1, label="put wall")
    top.set_ylabel("USD")
    top.set_title(title, fontsize=10)
    top.legend(fontsize=7, loc="best", ncol=4)
    net = levels["net_gex"].to_numpy(np.float64) / BN
    bottom.bar(times, net, width=0.003, color=np.where(net >= 0, "tab:green", "tab:red"))
    bottom.axhline(0, color="grey", lw=0.6)
    bottom.set_ylabel("net GEX $bn")
    bottom.set_xlabel("time, America/New_York")
    bottom.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
    return _png(fig)
