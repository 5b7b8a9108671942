"""Asset checks of the core assets (data quality; blocking where wrong data would poison downstream)."""
