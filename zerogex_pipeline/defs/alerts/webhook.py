"""POSTing one alert to the configured webhook, without ever failing the run or leaking the URL.

The URL (``ZEROGEX_ALERT_WEBHOOK_URL``) may carry a token in its path or query string, so log lines and
metadata show only ``scheme://host[:port]/…`` and, on failure, the HTTP status or the exception's type
name (``requests`` exception texts embed the full URL, so they are never shown).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import requests

from zerogex_pipeline.settings import redact_webhook_url

TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Delivery:
    """Outcome of one POST: ``ok`` and a log-safe ``detail`` (status code or error type; no URL)."""

    ok: bool
    detail: str


def json_safe(payload: Mapping[str, object]) -> dict[str, object]:
    """``payload`` with NaN floats as ``None`` (JSON has no NaN)."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in payload.items()}


def post_alert(url: str, payload: Mapping[str, object], timeout_s: float = TIMEOUT_S) -> Delivery:
    """POST ``payload`` as JSON to ``url``; any 2xx is success. Never raises for network/HTTP failures."""
    try:
        response = requests.post(url, json=json_safe(payload), timeout=timeout_s)
    except requests.RequestException as exc:
        return Delivery(False, f"{type(exc).__name__} posting to {redact_webhook_url(url)}")
    if 200 <= response.status_code < 300:
        return Delivery(True, f"HTTP {response.status_code} from {redact_webhook_url(url)}")
    return Delivery(False, f"HTTP {response.status_code} from {redact_webhook_url(url)}")
