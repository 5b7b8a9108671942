"""0004: ``gex_surface`` gets one row per series settlement (``settlement`` in the primary key).

An SPX AM-settled monthly and the PM-settled SPXW series of the same date share strikes; one row per
strike blended their times to expiry. Existing rows are all labeled 'PM'; re-materialize SPX surfaces
of monthly expiration dates to split them (SPY and QQQ have PM series only, so their rows are exact).
"""

SQL = """
ALTER TABLE {schema}.gex_surface ADD COLUMN settlement TEXT NOT NULL DEFAULT 'PM';
ALTER TABLE {schema}.gex_surface ALTER COLUMN settlement DROP DEFAULT;
ALTER TABLE {schema}.gex_surface DROP CONSTRAINT gex_surface_pkey;
ALTER TABLE {schema}.gex_surface ADD PRIMARY KEY (session_date, expiration, snapshot_ts, strike, settlement);
"""
