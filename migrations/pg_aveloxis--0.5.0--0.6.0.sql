-- pg_aveloxis 0.5.0 -> 0.6.0
--
-- aveloxis.token_release: a request whose response reported no budget is taken as spent, so
-- a known reported budget goes down by its cost. This body shipped inside an edit of the
-- already released 0.4.0 scripts; databases installed from the released 0.4.0 and
-- upgraded still had the old one. Replacing it here brings every upgrade path to the same
-- function (CREATE OR REPLACE keeps its grants).

CREATE OR REPLACE FUNCTION aveloxis.token_release(fingerprint text, bucket text, cost integer DEFAULT 1,
                                       platform smallint DEFAULT 1)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
#variable_conflict use_variable
BEGIN
    PERFORM aveloxis_ops.check_fingerprint(fingerprint);
    PERFORM aveloxis_ops.check_bucket(bucket);
    UPDATE aveloxis_ops.token_budgets t
    SET outstanding = greatest(t.outstanding - coalesce(cost, 1), 0),
        reported_remaining = CASE WHEN t.reported_remaining IS NOT NULL
                                  THEN greatest(t.reported_remaining - coalesce(cost, 1), 0) END
    WHERE t.platform_id = platform AND t.fingerprint = token_release.fingerprint AND t.bucket = token_release.bucket;
END
$$;
