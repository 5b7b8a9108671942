"""Market-data sources behind one interface (:class:`~zerogex_pipeline.sources.base.MarketDataSource`).

- ``simulated``: a deterministic synthetic market (the default when no credentials are set).
- ``tradestation``: the TradeStation Web API v3.
"""
