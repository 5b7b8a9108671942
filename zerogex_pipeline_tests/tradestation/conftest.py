"""Fixtures: an emulator on an ephemeral 127.0.0.1 port with a fixed market clock, and fast-retry clients."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from zerogex_pipeline.tradestation.client import TradeStationClient
from zerogex_pipeline.tradestation.config import TradeStationConfig
from zerogex_pipeline.tradestation.emulator import Emulator

MARKET_NOW = pd.Timestamp("2025-01-15T16:00:00Z")  # a Wednesday, 11:00 ET: the session is open


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(clock=lambda: MARKET_NOW, speed=60.0, heartbeat_s=0.2, tick_s=0.05) as em:
        yield em


def make_config(url: str, data_dir: Path, **overrides: object) -> TradeStationConfig:
    base: dict[str, object] = dict(
        client_id="test-client", client_secret="s3cret-value", refresh_token="rt-initial-secret",
        api_url=url, auth_url=url, data_dir=data_dir, connect_timeout_s=2.0, read_timeout_s=5.0,
        max_retries=3, backoff_base_s=0.01, backoff_max_s=0.05, max_rate_limit_wait_s=2.0,
        stream_idle_timeout_s=0.8, stream_starvation_s=0.8, stream_max_reconnects=4,
    )
    base.update(overrides)
    return TradeStationConfig(**base)  # type: ignore[arg-type]


@pytest.fixture
def client(emulator: Emulator, tmp_path: Path) -> TradeStationClient:
    return TradeStationClient(make_config(emulator.url, tmp_path / "data"))
