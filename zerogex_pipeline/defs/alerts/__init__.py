"""GEX alerts: the ``gex_alerts`` asset and the levels sensor (announcing: :mod:`zerogex_pipeline.announcements`;
the announcement ledger: :mod:`zerogex_pipeline.storage.alert_ledger`)."""

from zerogex_pipeline.defs.alerts.assets import build_alert_assets
from zerogex_pipeline.defs.alerts.sensors import build_levels_alert_sensor

__all__ = ["build_alert_assets", "build_levels_alert_sensor"]
