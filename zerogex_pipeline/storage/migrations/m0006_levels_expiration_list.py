"""0006: ``gex_levels.expiration_list``, the JSON list of the expirations (YYYY-MM-DD) a levels row aggregates.

Levels now aggregate exactly the day's tracked expirations (the ``ZEROGEX_EXPIRATIONS`` nearest listed), not
every expiration whose surface happens to be stored, and say which. Rows stored before were computed from every
stored expiration of their snapshot: they get the distinct expirations of ``gex_surface`` at that snapshot
(``[]`` when none is stored any more). ``live_levels`` has had the column since 0005.
"""

SQL = """
ALTER TABLE {schema}.gex_levels ADD COLUMN expiration_list TEXT NOT NULL DEFAULT '[]';
ALTER TABLE {schema}.gex_levels ALTER COLUMN expiration_list DROP DEFAULT;
UPDATE {schema}.gex_levels AS l SET expiration_list = listed.expiration_list
FROM (
    SELECT session_date, snapshot_ts,
           '[' || string_agg('"' || to_char(expiration, 'YYYY-MM-DD') || '"', ', ' ORDER BY expiration) || ']'
               AS expiration_list
    FROM (SELECT DISTINCT session_date, snapshot_ts, expiration FROM {schema}.gex_surface) AS surface
    GROUP BY session_date, snapshot_ts
) AS listed
WHERE l.session_date = listed.session_date AND l.snapshot_ts = listed.snapshot_ts;
"""
