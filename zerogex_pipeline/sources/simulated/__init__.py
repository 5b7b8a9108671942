"""A deterministic simulated market: the default data source when no credentials are set.

Every number is a pure function of (underlying, date, ...) seeded through :mod:`.seeds`, so any call
order, process or machine gives the same bars, listings and quotes.
"""

from zerogex_pipeline.sources.simulated.market import SimulatedMarket

__all__ = ["SimulatedMarket"]
