-- Data-quality diagnostics for analysts: the reference's contributor diagnostic
-- queries (reference/003, "Diagnostic queries") as functions returning rows. All
-- read-only. (The unresolved-commit-authors diagnostic arrives with the commits table.)

-- 1. Contributors by data-quality bucket (unknown values are NULL here, never '').
CREATE FUNCTION aveloxis.contributor_quality()
RETURNS TABLE (with_gh_user_id bigint, with_gl_id bigint, email_only bigint, gh_login_no_canonical bigint,
               thin bigint, merged_away bigint, total bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    SELECT count(*) FILTER (WHERE gh_user_id IS NOT NULL),
           count(*) FILTER (WHERE gl_id IS NOT NULL),
           count(*) FILTER (WHERE gh_user_id IS NULL AND gl_id IS NULL),
           count(*) FILTER (WHERE cntrb_canonical IS NULL AND gh_login IS NOT NULL),
           count(*) FILTER (WHERE cntrb_company IS NULL AND cntrb_location IS NULL),
           count(*) FILTER (WHERE cntrb_deleted = 1),
           count(*)
    FROM aveloxis_data.contributors
$$;

-- 2. Accounts that more than one active contributor row claims (rename casualties).
CREATE FUNCTION aveloxis.duplicate_contributors(max_rows integer DEFAULT 20)
RETURNS TABLE (platform_id smallint, platform_user_id bigint, contributors bigint, logins text[])
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    SELECT p.platform_id, p.user_id, count(*), array_agg(c.cntrb_login ORDER BY c.data_collection_date DESC)
    FROM aveloxis_data.contributors c
    CROSS JOIN LATERAL (VALUES (1::smallint, c.gh_user_id), (2::smallint, c.gl_id)) AS p(platform_id, user_id)
    WHERE p.user_id IS NOT NULL AND c.cntrb_deleted = 0
    GROUP BY p.platform_id, p.user_id
    HAVING count(*) > 1
    ORDER BY count(*) DESC, p.platform_id, p.user_id
    LIMIT max_rows
$$;

-- 3 and 4. Identities or aliases pointing at more than one contributor, and identities
-- pointing at a merged-away contributor (both should never return rows).
CREATE FUNCTION aveloxis.identity_anomalies()
RETURNS TABLE (kind text, key text, detail text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    SELECT 'identity with several contributors', i.platform_id || ':' || i.platform_user_id,
           count(DISTINCT i.cntrb_id)::text
    FROM aveloxis_data.contributor_identities i
    GROUP BY i.platform_id, i.platform_user_id HAVING count(DISTINCT i.cntrb_id) > 1
    UNION ALL
    SELECT 'alias with several contributors', lower(a.alias_email), count(DISTINCT a.cntrb_id)::text
    FROM aveloxis_data.contributors_aliases a
    GROUP BY lower(a.alias_email) HAVING count(DISTINCT a.cntrb_id) > 1
    UNION ALL
    SELECT 'identity on a merged-away contributor', i.platform_id || ':' || i.platform_user_id, i.cntrb_id::text
    FROM aveloxis_data.contributor_identities i JOIN aveloxis_data.contributors c USING (cntrb_id)
    WHERE c.cntrb_deleted = 1
$$;

-- 5. Enrichment progress of thin contributors (30-day cooldown, R6).
CREATE FUNCTION aveloxis.enrichment_progress()
RETURNS TABLE (never_enriched bigint, past_cooldown bigint, within_cooldown bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    SELECT count(*) FILTER (WHERE cntrb_last_enriched_at IS NULL),
           count(*) FILTER (WHERE cntrb_last_enriched_at < now() - interval '30 days'),
           count(*) FILTER (WHERE cntrb_last_enriched_at >= now() - interval '30 days')
    FROM aveloxis_data.contributors
    WHERE cntrb_login IS NOT NULL AND cntrb_company IS NULL AND cntrb_location IS NULL AND cntrb_deleted = 0
$$;

-- 6. Contributors waiting for a search by email (30-day cooldown).
CREATE FUNCTION aveloxis.search_resolve_queue()
RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    SELECT count(*) FROM aveloxis_data.contributors
    WHERE cntrb_email IS NOT NULL AND gh_user_id IS NULL AND cntrb_email NOT LIKE '%noreply%' AND cntrb_deleted = 0
      AND (cntrb_last_search_attempted_at IS NULL OR cntrb_last_search_attempted_at < now() - interval '30 days')
$$;

-- 8. Rows referencing a contributor that does not exist (R10; always 0 while the
-- foreign keys stand; kept for databases restored or migrated from elsewhere).
CREATE FUNCTION aveloxis.contributor_fk_integrity()
RETURNS TABLE (table_name text, orphans bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    SELECT 'issues.reporter_id', count(*) FROM aveloxis_data.issues i
    WHERE i.reporter_id IS NOT NULL AND NOT EXISTS (SELECT FROM aveloxis_data.contributors c WHERE c.cntrb_id = i.reporter_id)
    UNION ALL
    SELECT 'issues.closed_by_id', count(*) FROM aveloxis_data.issues i
    WHERE i.closed_by_id IS NOT NULL AND NOT EXISTS (SELECT FROM aveloxis_data.contributors c WHERE c.cntrb_id = i.closed_by_id)
    UNION ALL
    SELECT 'issue_assignees.cntrb_id', count(*) FROM aveloxis_data.issue_assignees a
    WHERE NOT EXISTS (SELECT FROM aveloxis_data.contributors c WHERE c.cntrb_id = a.cntrb_id)
    UNION ALL
    SELECT 'messages.cntrb_id', count(*) FROM aveloxis_data.messages m
    WHERE m.cntrb_id IS NOT NULL AND NOT EXISTS (SELECT FROM aveloxis_data.contributors c WHERE c.cntrb_id = m.cntrb_id)
$$;
