"""0003: the alerts table, the alert announcement ledger and the GEX regime backtest table.

``gex_alerts`` (one row per detected event of a trading day, replaced per ``session_date`` partition
like every partitioned table) and ``gex_regime_backtest`` (one row per day, rewritten whole in one
transaction by the unpartitioned backtest asset) follow ``zerogex_pipeline.schemas``.

``gex_alert_ledger`` is not an asset table (not in ``schemas.ALL_SCHEMAS``, never written by the IO
manager): it records every event id ever announced. The ``gex_alerts`` asset claims an id with
``INSERT ... ON CONFLICT DO NOTHING RETURNING`` before announcing it, so an event is announced at most
once however often (and however concurrently) its day is re-materialized.
"""

SQL = """
CREATE TABLE {schema}.gex_alerts (
    underlying TEXT NOT NULL,
    session_date DATE NOT NULL,
    event_id TEXT NOT NULL,
    snapshot_ts TIMESTAMPTZ NOT NULL,
    kind TEXT NOT NULL,
    direction TEXT NOT NULL,
    spot DOUBLE PRECISION NOT NULL,
    level DOUBLE PRECISION NOT NULL,
    value_before DOUBLE PRECISION NOT NULL,
    value_after DOUBLE PRECISION,
    spot_before DOUBLE PRECISION NOT NULL,
    previous_snapshot_ts TIMESTAMPTZ NOT NULL,
    message TEXT NOT NULL,
    announced_at TIMESTAMPTZ,
    PRIMARY KEY (session_date, event_id)
);

CREATE TABLE {schema}.gex_alert_ledger (
    event_id TEXT PRIMARY KEY,
    underlying TEXT NOT NULL,
    session_date DATE NOT NULL,
    kind TEXT NOT NULL,
    announced_at TIMESTAMPTZ NOT NULL,
    run_id TEXT NOT NULL
);

CREATE TABLE {schema}.gex_regime_backtest (
    underlying TEXT NOT NULL,
    session_date DATE NOT NULL,
    open_snapshot_ts TIMESTAMPTZ NOT NULL,
    regime TEXT NOT NULL,
    spot_open DOUBLE PRECISION NOT NULL,
    net_gex_open DOUBLE PRECISION NOT NULL,
    zero_gamma_open DOUBLE PRECISION,
    distance_to_flip_pct DOUBLE PRECISION,
    day_open DOUBLE PRECISION NOT NULL,
    day_high DOUBLE PRECISION NOT NULL,
    day_low DOUBLE PRECISION NOT NULL,
    day_close DOUBLE PRECISION NOT NULL,
    realized_range_pct DOUBLE PRECISION NOT NULL,
    previous_session_date DATE,
    previous_close DOUBLE PRECISION,
    close_to_close_pct DOUBLE PRECISION,
    PRIMARY KEY (session_date)
);
"""
