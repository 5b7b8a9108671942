"""The stream capture: external assets reported by ``zerogex stream``, its check and the watch sensor."""

from zerogex_pipeline.defs.capture.assets import build_capture_check, build_capture_specs, capture_keys
from zerogex_pipeline.defs.capture.sensors import build_capture_watch_sensor

__all__ = ["build_capture_check", "build_capture_specs", "build_capture_watch_sensor", "capture_keys"]
