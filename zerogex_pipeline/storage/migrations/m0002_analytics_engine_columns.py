"""0002: the analytics-engine columns of gex_surface and gex_levels (commit e1a5655), all nullable.

Drafted with ``python -m zerogex_pipeline.storage.postgres_migrations --new analytics_engine_columns``.
"""

SQL = """
ALTER TABLE {schema}.gex_surface ADD COLUMN call_volume BIGINT;
ALTER TABLE {schema}.gex_surface ADD COLUMN put_volume BIGINT;
ALTER TABLE {schema}.gex_surface ADD COLUMN call_gex_volume DOUBLE PRECISION;
ALTER TABLE {schema}.gex_surface ADD COLUMN put_gex_volume DOUBLE PRECISION;
ALTER TABLE {schema}.gex_surface ADD COLUMN net_gex_volume DOUBLE PRECISION;
ALTER TABLE {schema}.gex_surface ADD COLUMN call_dex DOUBLE PRECISION;
ALTER TABLE {schema}.gex_surface ADD COLUMN put_dex DOUBLE PRECISION;
ALTER TABLE {schema}.gex_surface ADD COLUMN net_dex DOUBLE PRECISION;
ALTER TABLE {schema}.gex_surface ADD COLUMN call_vex DOUBLE PRECISION;
ALTER TABLE {schema}.gex_surface ADD COLUMN put_vex DOUBLE PRECISION;
ALTER TABLE {schema}.gex_surface ADD COLUMN net_vex DOUBLE PRECISION;
ALTER TABLE {schema}.gex_surface ADD COLUMN call_cex DOUBLE PRECISION;
ALTER TABLE {schema}.gex_surface ADD COLUMN put_cex DOUBLE PRECISION;
ALTER TABLE {schema}.gex_surface ADD COLUMN net_cex DOUBLE PRECISION;
ALTER TABLE {schema}.gex_surface ADD COLUMN call_iv_source TEXT;
ALTER TABLE {schema}.gex_surface ADD COLUMN put_iv_source TEXT;
ALTER TABLE {schema}.gex_surface ADD COLUMN t_convention TEXT;
ALTER TABLE {schema}.gex_levels ADD COLUMN net_gex_at_spot_structural DOUBLE PRECISION;
ALTER TABLE {schema}.gex_levels ADD COLUMN zero_gamma_raw DOUBLE PRECISION;
ALTER TABLE {schema}.gex_levels ADD COLUMN zero_gamma_raw_reason TEXT;
ALTER TABLE {schema}.gex_levels ADD COLUMN abs_gamma_strike DOUBLE PRECISION;
ALTER TABLE {schema}.gex_levels ADD COLUMN abs_gamma_gex DOUBLE PRECISION;
ALTER TABLE {schema}.gex_levels ADD COLUMN net_dex DOUBLE PRECISION;
ALTER TABLE {schema}.gex_levels ADD COLUMN net_vex DOUBLE PRECISION;
ALTER TABLE {schema}.gex_levels ADD COLUMN net_cex DOUBLE PRECISION;
ALTER TABLE {schema}.gex_levels ADD COLUMN call_gex_volume DOUBLE PRECISION;
ALTER TABLE {schema}.gex_levels ADD COLUMN put_gex_volume DOUBLE PRECISION;
ALTER TABLE {schema}.gex_levels ADD COLUMN net_gex_volume DOUBLE PRECISION;
ALTER TABLE {schema}.gex_levels ADD COLUMN max_pain_next DOUBLE PRECISION;
ALTER TABLE {schema}.gex_levels ADD COLUMN max_pain TEXT;
ALTER TABLE {schema}.gex_levels ADD COLUMN flip_dte_1 DOUBLE PRECISION;
ALTER TABLE {schema}.gex_levels ADD COLUMN flip_dte_3 DOUBLE PRECISION;
ALTER TABLE {schema}.gex_levels ADD COLUMN flip_dte_5 DOUBLE PRECISION;
ALTER TABLE {schema}.gex_levels ADD COLUMN flip_dte_10 DOUBLE PRECISION;
ALTER TABLE {schema}.gex_levels ADD COLUMN flip_dte_20 DOUBLE PRECISION;
ALTER TABLE {schema}.gex_levels ADD COLUMN flip_dte_60 DOUBLE PRECISION;
ALTER TABLE {schema}.gex_levels ADD COLUMN iv_sources TEXT;
ALTER TABLE {schema}.gex_levels ADD COLUMN coverage DOUBLE PRECISION;
ALTER TABLE {schema}.gex_levels ADD COLUMN t_convention TEXT;
"""
