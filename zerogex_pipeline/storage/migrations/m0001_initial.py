"""0001: the four asset tables as declared in ``zerogex_pipeline.schemas`` at the walking skeleton.

Primary keys all start with ``session_date`` (the partition column), so they also serve the
partition DELETE, "one day's intraday levels" (``gex_levels`` PK prefix), "one day's surface for one
expiration" (``gex_surface`` PK prefix ``session_date, expiration``) and "latest levels" (backward
scan of the ``gex_levels`` PK). ``{schema}`` is replaced by the quoted per-underlying schema.
"""

SQL = """
CREATE TABLE {schema}.underlying_bars (
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

CREATE TABLE {schema}.option_chain_snapshots (
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
    PRIMARY KEY (session_date, expiration, snapshot_ts, symbol)
);

CREATE TABLE {schema}.gex_surface (
    underlying TEXT NOT NULL,
    session_date DATE NOT NULL,
    expiration DATE NOT NULL,
    snapshot_ts TIMESTAMPTZ NOT NULL,
    strike DOUBLE PRECISION NOT NULL,
    spot DOUBLE PRECISION NOT NULL,
    time_to_expiry DOUBLE PRECISION NOT NULL,
    call_oi BIGINT NOT NULL,
    put_oi BIGINT NOT NULL,
    call_iv DOUBLE PRECISION,
    put_iv DOUBLE PRECISION,
    call_gamma DOUBLE PRECISION,
    put_gamma DOUBLE PRECISION,
    call_gex DOUBLE PRECISION NOT NULL,
    put_gex DOUBLE PRECISION NOT NULL,
    net_gex DOUBLE PRECISION NOT NULL,
    rate DOUBLE PRECISION NOT NULL,
    dividend_yield DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (session_date, expiration, snapshot_ts, strike)
);

CREATE TABLE {schema}.gex_levels (
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
    PRIMARY KEY (session_date, snapshot_ts)
);
"""
