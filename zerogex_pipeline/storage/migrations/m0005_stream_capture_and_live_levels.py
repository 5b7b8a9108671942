"""0005: the stream capture (``captured_quotes``, ``captured_bars``), ``live_levels`` and the chain's ``origin``.

``zerogex stream`` appends to ``captured_quotes`` (one snapshot of every tracked contract in the strike window
every ``ZEROGEX_SNAPSHOT_MINUTES``) and ``captured_bars`` (the underlying's closed bars from its bar stream) with
``INSERT ... ON CONFLICT DO NOTHING``: a snapshot instant is written once, a restart never duplicates it and
nothing overwrites it. ``live_levels`` holds the levels it computes every ``--interval`` seconds.

``option_chain_snapshots.origin`` says where a row came from: 'capture' or 'historical'. Rows stored before
this migration were all rebuilt by the historical path.
"""

SQL = """
ALTER TABLE {schema}.option_chain_snapshots ADD COLUMN origin TEXT NOT NULL DEFAULT 'historical';
ALTER TABLE {schema}.option_chain_snapshots ALTER COLUMN origin DROP DEFAULT;

CREATE TABLE {schema}.captured_quotes (
    underlying TEXT NOT NULL,
    session_date DATE NOT NULL,
    expiration DATE NOT NULL,
    snapshot_ts TIMESTAMPTZ NOT NULL,
    symbol TEXT NOT NULL,
    option_type TEXT NOT NULL,
    strike DOUBLE PRECISION NOT NULL,
    settlement TEXT NOT NULL,
    bid DOUBLE PRECISION NOT NULL,
    ask DOUBLE PRECISION NOT NULL,
    last DOUBLE PRECISION,
    mid DOUBLE PRECISION NOT NULL,
    volume BIGINT NOT NULL,
    open_interest BIGINT NOT NULL,
    iv DOUBLE PRECISION,
    delta DOUBLE PRECISION,
    gamma DOUBLE PRECISION,
    vega DOUBLE PRECISION,
    theta DOUBLE PRECISION,
    spot DOUBLE PRECISION NOT NULL,
    spot_ts TIMESTAMPTZ NOT NULL,
    source TEXT NOT NULL,
    quote_ts TIMESTAMPTZ NOT NULL,
    stream TEXT NOT NULL,
    PRIMARY KEY (session_date, expiration, snapshot_ts, symbol)
);

CREATE TABLE {schema}.captured_bars (
    underlying TEXT NOT NULL,
    session_date DATE NOT NULL,
    ts TIMESTAMPTZ NOT NULL,
    open DOUBLE PRECISION NOT NULL,
    high DOUBLE PRECISION NOT NULL,
    low DOUBLE PRECISION NOT NULL,
    close DOUBLE PRECISION NOT NULL,
    volume BIGINT NOT NULL,
    source TEXT NOT NULL,
    PRIMARY KEY (session_date, ts)
);

CREATE TABLE {schema}.live_levels (
    underlying TEXT NOT NULL,
    session_date DATE NOT NULL,
    snapshot_ts TIMESTAMPTZ NOT NULL,
    spot DOUBLE PRECISION NOT NULL,
    net_gex DOUBLE PRECISION NOT NULL,
    call_gex DOUBLE PRECISION NOT NULL,
    put_gex DOUBLE PRECISION NOT NULL,
    net_gex_at_spot DOUBLE PRECISION NOT NULL,
    zero_gamma DOUBLE PRECISION,
    zero_gamma_reason TEXT,
    call_wall DOUBLE PRECISION,
    call_wall_gex DOUBLE PRECISION,
    put_wall DOUBLE PRECISION,
    put_wall_gex DOUBLE PRECISION,
    expirations BIGINT NOT NULL,
    contracts BIGINT NOT NULL,
    rate DOUBLE PRECISION NOT NULL,
    dividend_yield DOUBLE PRECISION NOT NULL,
    convention TEXT NOT NULL,
    net_gex_at_spot_structural DOUBLE PRECISION,
    zero_gamma_raw DOUBLE PRECISION,
    zero_gamma_raw_reason TEXT,
    abs_gamma_strike DOUBLE PRECISION,
    abs_gamma_gex DOUBLE PRECISION,
    net_dex DOUBLE PRECISION,
    net_vex DOUBLE PRECISION,
    net_cex DOUBLE PRECISION,
    call_gex_volume DOUBLE PRECISION,
    put_gex_volume DOUBLE PRECISION,
    net_gex_volume DOUBLE PRECISION,
    max_pain_next DOUBLE PRECISION,
    max_pain TEXT,
    flip_dte_1 DOUBLE PRECISION,
    flip_dte_3 DOUBLE PRECISION,
    flip_dte_5 DOUBLE PRECISION,
    flip_dte_10 DOUBLE PRECISION,
    flip_dte_20 DOUBLE PRECISION,
    flip_dte_60 DOUBLE PRECISION,
    iv_sources TEXT,
    coverage DOUBLE PRECISION,
    t_convention TEXT,
    spot_ts TIMESTAMPTZ NOT NULL,
    feed TEXT NOT NULL,
    expiration_list TEXT NOT NULL,
    missing TEXT,
    compute_ms DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (session_date, snapshot_ts)
);
"""
