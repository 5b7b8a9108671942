"""0007: ``expiration_slot`` on ``option_chain_snapshots`` and ``gex_surface``: the k of the k-th nearest expiration
listed on the session date, the second dimension of their partitions (date × expiration slot replaced date ×
registered expiration).

Existing rows get the rank of their expiration among the expirations stored for their date in either table
(1 = nearest). Those were the tracked nearest expirations, so the rank is the slot unless a nearer expiration was
never stored; ``gex_levels`` and its ``levels_complete`` check compare every slot with the day's listing and name
any date to re-materialize. Updating rows of compressed TimescaleDB chunks decompresses them, so the per-transaction
decompression limit is lifted for this migration's transaction (a plain PostgreSQL takes the setting as an unused
placeholder).
"""

SQL = """
SET LOCAL timescaledb.max_tuples_decompressed_per_dml_transaction = 0;
ALTER TABLE {schema}.option_chain_snapshots ADD COLUMN expiration_slot BIGINT NOT NULL DEFAULT 0;
ALTER TABLE {schema}.option_chain_snapshots ALTER COLUMN expiration_slot DROP DEFAULT;
ALTER TABLE {schema}.gex_surface ADD COLUMN expiration_slot BIGINT NOT NULL DEFAULT 0;
ALTER TABLE {schema}.gex_surface ALTER COLUMN expiration_slot DROP DEFAULT;
CREATE TEMPORARY TABLE zerogex_slot_ranks ON COMMIT DROP AS
SELECT session_date, expiration, dense_rank() OVER (PARTITION BY session_date ORDER BY expiration) AS slot
FROM (SELECT DISTINCT session_date, expiration FROM {schema}.option_chain_snapshots
      UNION SELECT DISTINCT session_date, expiration FROM {schema}.gex_surface) AS stored;
UPDATE {schema}.option_chain_snapshots AS t SET expiration_slot = r.slot FROM zerogex_slot_ranks AS r
WHERE t.session_date = r.session_date AND t.expiration = r.expiration;
UPDATE {schema}.gex_surface AS t SET expiration_slot = r.slot FROM zerogex_slot_ranks AS r
WHERE t.session_date = r.session_date AND t.expiration = r.expiration;
DROP TABLE zerogex_slot_ranks;
"""
