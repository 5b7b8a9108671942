"""``<underlying>/gex_regime_backtest``: the opening GEX regime of every stored day against its realized move.

Unpartitioned: each materialization reads the whole stored history (each day's first ``gex_levels``
snapshot and its ``underlying_bars`` aggregated to one row per day, see
:mod:`zerogex_pipeline.storage.backtest_history`), computes the table with
:func:`zerogex_pipeline.analytics.regime.regime_table`, and the IO manager replaces the whole table in
one transaction (``DELETE`` all rows of the underlying's table, ``INSERT`` the new ones). The upstream
assets are declared as dependencies (lineage) rather than loaded inputs, so no partition of them has to
be materialized for this asset to run; days without both levels and bars are simply absent.
"""

import dagster as dg
import pandas as pd

from zerogex_pipeline.analytics.regime import regime_summary, regime_table
from zerogex_pipeline.schemas import GEX_REGIME_BACKTEST
from zerogex_pipeline.settings import Settings
from zerogex_pipeline.storage.backtest_history import read_history
from zerogex_pipeline.underlyings import Underlying


def summary_markdown(summary: pd.DataFrame) -> str:
    """The per-regime summary as a markdown table (percentages to 2 decimals; ``–`` for none)."""

    def pct(value: float) -> str:
        return "–" if pd.isna(value) else f"{value:.2f}%"

    lines = [
        "| regime at open (net GEX) | days | mean range | median range | mean abs close-to-close |",
        "|---|---|---|---|---|",
    ]
    for row in summary.itertuples(index=False):
        lines.append(
            f"| {row.regime} | {row.days} | {pct(row.mean_range_pct)} | {pct(row.median_range_pct)} "
            f"| {pct(row.mean_abs_close_to_close_pct)} ({row.days_with_close_to_close} d) |"
        )
    return "\n".join(lines)


def build_regime_backtest(
    underlying: Underlying,
    settings: Settings,
    storage_kind: str,
    bars: dg.AssetsDefinition,
    levels: dg.AssetsDefinition,
) -> dg.AssetsDefinition:
    """The regime backtest asset of ``underlying`` over its stored ``bars`` and ``levels``."""

    @dg.asset(
        key=[underlying.key, "gex_regime_backtest"],
        group_name=f"{underlying.key}_backtest",
        deps=[bars.key, levels.key],
        kinds={"pandas", storage_kind},
        description=(
            f"{underlying.name} GEX regime backtest over the stored history: per day, the regime at the open "
            "(net GEX sign in USD per 1% move; distance from spot to zero gamma in % of spot) against the "
            "day's realized range ((high - low) / open, %) and close-to-close move (%, vs the previous "
            "stored session's close, USD prices); summary by regime and a chart in the metadata."
        ),
        metadata={"dagster/column_schema": GEX_REGIME_BACKTEST.table_schema()},
    )
    def gex_regime_backtest(context: dg.AssetExecutionContext) -> pd.DataFrame:
        opening, daily = read_history(settings, underlying)
        if opening.empty or daily.empty:
            missing = "gex_levels" if opening.empty else "underlying_bars"
            context.add_output_metadata({"rows": 0, "empty_reason": f"no {missing} stored for {underlying.name}"})
            return GEX_REGIME_BACKTEST.empty_frame()
        table = GEX_REGIME_BACKTEST.conform(regime_table(opening, daily))
        summary = regime_summary(table)
        without_bars = sorted(set(opening["session_date"].dt.date) - set(table["session_date"].dt.date))
        first, last = table["session_date"].min(), table["session_date"].max()
        title = f"{underlying.name} regime at the open vs realized range, {first:%Y-%m-%d} to {last:%Y-%m-%d}"
        from zerogex_pipeline.defs.backtest.charts import (  # matplotlib when drawn
            markdown_png,
            range_vs_flip_png,
        )

        context.add_output_metadata({
            "rows": len(table),
            "first_day": f"{first:%Y-%m-%d}",
            "last_day": f"{last:%Y-%m-%d}",
            "days_with_levels_but_no_bars": len(without_bars),
            "summary": dg.MetadataValue.md(summary_markdown(summary)),
            "range_vs_flip": dg.MetadataValue.md(markdown_png(range_vs_flip_png(table, title), "range vs flip")),
        })
        return table

    return gex_regime_backtest
