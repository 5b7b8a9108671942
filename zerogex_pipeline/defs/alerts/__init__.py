"""GEX alerts: the ``gex_alerts`` asset, its announcement ledger and webhook, and the levels sensor."""

from zerogex_pipeline.defs.alerts.assets import build_alert_assets
from zerogex_pipeline.defs.alerts.sensors import build_levels_alert_sensor

__all__ = ["build_alert_assets", "build_levels_alert_sensor"]
