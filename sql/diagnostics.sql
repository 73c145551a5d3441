-- Data-quality diagnostics for analysts: the reference's contributor diagnostic
-- queries (reference/003, "Diagnostic queries") as functions returning rows. All
-- read-only. The cooldowns are the settings enrich.cooldown and search.cooldown, and
-- the columns they read are written by the enrichment and search-resolve runs
-- (sql/identity_tasks.sql).

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

-- 5. Enrichment progress of thin contributors with a forge account (R6).
CREATE FUNCTION aveloxis.enrichment_progress()
RETURNS TABLE (never_enriched bigint, past_cooldown bigint, within_cooldown bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    WITH at AS MATERIALIZED (SELECT aveloxis_ops.clock() - aveloxis_ops.setting('enrich.cooldown')::interval AS since)
    SELECT count(*) FILTER (WHERE c.cntrb_last_enriched_at IS NULL),
           count(*) FILTER (WHERE c.cntrb_last_enriched_at <= at.since),
           count(*) FILTER (WHERE c.cntrb_last_enriched_at > at.since)
    FROM aveloxis_data.contributors c CROSS JOIN at
    WHERE c.cntrb_company IS NULL AND c.cntrb_location IS NULL AND c.cntrb_deleted = 0
      AND EXISTS (SELECT FROM aveloxis_data.contributor_identities i WHERE i.cntrb_id = c.cntrb_id)
$$;

-- 6. Contributors waiting for a search by email: an address worth searching (not a bot's,
-- a service's or a noreply one: aveloxis_ops.junk_email_reason), no account, past the cooldown.
CREATE FUNCTION aveloxis.search_resolve_queue()
RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    WITH at AS MATERIALIZED (SELECT aveloxis_ops.clock() - aveloxis_ops.setting('search.cooldown')::interval AS since)
    SELECT count(*) FROM aveloxis_data.contributors c CROSS JOIN at
    WHERE c.cntrb_email IS NOT NULL AND c.gh_user_id IS NULL AND c.gl_id IS NULL AND c.cntrb_deleted = 0
      AND aveloxis_ops.junk_email_reason(c.cntrb_email) IS NULL
      AND NOT EXISTS (SELECT FROM aveloxis_ops.noreply_account(c.cntrb_email))
      AND NOT EXISTS (SELECT FROM aveloxis_data.contributor_identities i WHERE i.cntrb_id = c.cntrb_id)
      AND (c.cntrb_last_search_attempted_at IS NULL OR c.cntrb_last_search_attempted_at <= at.since)
$$;

-- 7. Commits whose author is not resolved to a contributor, per repository (Layer 2
-- progress), with how many distinct emails they are and how many of those wait out a
-- miss's cooldown.
CREATE FUNCTION aveloxis.unresolved_commit_authors(max_rows integer DEFAULT 20)
RETURNS TABLE (repo_id bigint, repo text, unresolved_commits bigint, unresolved_emails bigint,
               emails_cooling_down bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    SELECT r.repo_id, r.repo_git, count(DISTINCT c.cmt_commit_hash), count(DISTINCT c.cmt_author_email),
           count(DISTINCT c.cmt_author_email) FILTER (
               WHERE EXISTS (SELECT FROM aveloxis_data.unresolved_commit_emails u
                             WHERE u.email = c.cmt_author_email AND u.retry_after > aveloxis_ops.clock()))
    FROM aveloxis_data.commits c JOIN aveloxis_data.repos r ON r.repo_id = c.repo_id
    WHERE c.cmt_ght_author_id IS NULL
    GROUP BY r.repo_id, r.repo_git
    ORDER BY 3 DESC, 1
    LIMIT max_rows
$$;

-- 8. Rows referencing a contributor that does not exist (R10): every column with a
-- foreign key to contributors (commits, issues, pull requests and the rest, read from
-- the catalog, so no table is forgotten), always 0 while the foreign keys stand; kept
-- for databases restored or migrated from elsewhere with constraints off.
CREATE FUNCTION aveloxis.contributor_fk_integrity()
RETURNS TABLE (table_name text, orphans bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    ref record;
BEGIN
    FOR ref IN
        SELECT con.conrelid::regclass AS rel, c.relname, a.attname
        FROM pg_constraint con
        JOIN pg_class c ON c.oid = con.conrelid
        JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = con.conkey[1]
        WHERE con.contype = 'f' AND con.confrelid = 'aveloxis_data.contributors'::regclass
          AND cardinality(con.conkey) = 1
        ORDER BY c.relname, a.attname
    LOOP
        RETURN QUERY EXECUTE format(
            'SELECT %L::text, count(*) FROM %s x WHERE x.%I IS NOT NULL
               AND NOT EXISTS (SELECT FROM aveloxis_data.contributors c WHERE c.cntrb_id = x.%I)',
            ref.relname || '.' || ref.attname, ref.rel, ref.attname, ref.attname);
    END LOOP;
END
$$;
