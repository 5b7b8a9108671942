"""Announcing alert events: a WARNING log line and a JSON POST to the configured webhook, each at most once.

Used by the ``gex_alerts`` asset and by the stream engine; both claim events in the announcement ledger
(:mod:`zerogex_pipeline.storage.alert_ledger`) first and announce only what they claimed.

The URL (``ZEROGEX_ALERT_WEBHOOK_URL``) may carry a token in its path or query string, so log lines and
metadata show only ``scheme://host[:port]/…`` and, on failure, the HTTP status or the exception's type
name (``requests`` exception texts embed the full URL, so they are never shown).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pandas as pd
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


PAYLOAD_FIELDS = ("event_id", "underlying", "session_date", "snapshot_ts", "kind", "direction", "spot", "level",
                  "value_before", "value_after", "spot_before", "message")


def alert_payload(event: pd.Series) -> dict[str, object]:
    """The JSON body POSTed for one event (timestamps ISO 8601 UTC, dates ``YYYY-MM-DD``, USD floats).

    ``text`` repeats ``message`` so chat webhooks (Slack-style) display it as is.
    """
    out: dict[str, object] = {}
    for name in PAYLOAD_FIELDS:
        value = event[name]
        if name == "session_date":
            out[name] = f"{pd.Timestamp(value):%Y-%m-%d}"
        elif name == "snapshot_ts":
            out[name] = pd.Timestamp(value).tz_convert("UTC").isoformat()
        elif name in ("event_id", "underlying", "kind", "direction", "message"):
            out[name] = str(value)
        else:
            out[name] = None if pd.isna(value) else float(value)
    out["text"] = str(event["message"])
    return out


def announce(events: pd.DataFrame, claimed: set[str], webhook_url: str | None,
             warn: Callable[[str], None]) -> dict[str, int]:
    """Announce the ``claimed`` events of ``events``: ``warn`` a line each, POST each to ``webhook_url``.

    Returns ``{"ok": posts delivered, "failed": posts that failed}``; a failed POST is reported through
    ``warn`` (host only) and never raises.
    """
    deliveries = {"ok": 0, "failed": 0}
    for _, event in events[events["event_id"].isin(claimed)].iterrows():
        warn(f"GEX alert: {event['message']} [{event['event_id']}]")
        if webhook_url:
            delivery = post_alert(webhook_url, alert_payload(event))
            deliveries["ok" if delivery.ok else "failed"] += 1
            if not delivery.ok:
                warn(f"GEX alert webhook failed for {event['event_id']}: {delivery.detail}")
    return deliveries
