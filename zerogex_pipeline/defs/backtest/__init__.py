"""The GEX regime backtest asset over the stored history of levels and bars."""

from zerogex_pipeline.defs.backtest.assets import build_regime_backtest

__all__ = ["build_regime_backtest"]
