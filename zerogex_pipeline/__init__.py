"""ZeroGEX: dealer gamma exposure (GEX) from option chains, as Dagster software-defined assets.

Data flows one way: source -> option-chain snapshots -> exposures -> levels.

- ``zerogex_pipeline.analytics``: the pure numerical core (numpy; no Dagster, no I/O).
- ``zerogex_pipeline.sources``: market-data adapters (simulated market, TradeStation).
- ``zerogex_pipeline.storage``: IO managers (embedded DuckDB, PostgreSQL/TimescaleDB).
- ``zerogex_pipeline.defs``: thin Dagster definitions (partitions, assets, resources).
"""

__version__ = "0.1.0"
