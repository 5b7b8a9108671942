"""GEX alerts: the ``gex_alerts`` asset and its webhook, and the levels sensor (the announcement ledger is
:mod:`zerogex_pipeline.storage.alert_ledger`)."""

from zerogex_pipeline.defs.alerts.assets import build_alert_assets
from zerogex_pipeline.defs.alerts.sensors import build_levels_alert_sensor

__all__ = ["build_alert_assets", "build_levels_alert_sensor"]
