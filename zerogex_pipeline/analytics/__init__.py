"""The numerical core: Black-Scholes-Merton greeks, dealer exposures and GEX levels.

Pure numpy/scipy (pandas only at the frame boundary); no Dagster, no I/O.

Sign convention (``CONVENTION``): dealers are modeled long the calls customers sell and short the puts
customers buy, so call exposure counts positive, put exposure negative and net = call + put, in every
column. GEX is in USD per 1% move of the underlying: ``sign · Γ · OI · 100 · S² · 0.01``.
"""

CONVENTION = "zerogex-v1: dealer long calls (+), short puts (-); net = call + put; GEX in USD per 1% move"
