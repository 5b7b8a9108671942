"""Storage adapters: partition-aware IO managers for the embedded DuckDB store and PostgreSQL."""
