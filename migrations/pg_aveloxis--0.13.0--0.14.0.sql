-- pg_aveloxis 0.13.0 -> 0.14.0: contributor identities that converge (issue 18).
--
-- * One shared email chain in SQL: aveloxis.email_chain(emails) (noreply -> bot/junk ->
--   database -> 'unknown', the only emails worth the API tail), aveloxis_ops.noreply_account,
--   aveloxis_ops.junk_email_reason; resolve_email parses through them. The agent no longer
--   parses addresses itself.
-- * Reversible merges: aveloxis_data.contributor_merges (append-only log of merges and
--   unmerges, with what each changed), contributor_merge_rejections, the views
--   contributor_merges_in_force and contributor_persons, aveloxis.person_of(cntrb_id),
--   aveloxis.unmerge(merge_id), merge_suggestions(), accept_merge_suggestion(),
--   reject_merge_suggestion(); merge_contributors(winner, loser, reason) now returns the
--   merge's id (was void) and logs it (sql/merges.sql).
-- * Time-aware affiliation: aveloxis_data.contributor_enrollments, aveloxis.enroll,
--   correct_enrollment, remove_enrollment, enrollments, affiliation_of(cntrb_id, at),
--   commit_affiliation, email_affiliation(email, at); set_affiliation(domain, affiliation,
--   active, starts_on) no longer rewrites commit rows (it queues their aggregates); the
--   drain no longer stores affiliation in commit rows (the stored values are cleared
--   below); aveloxis_augur_data.commits and the dm_* aggregates read through the rules;
--   aveloxis.refresh_commit_aggregates(repo) (sql/affiliation.sql).
-- * Enrichment (R6) and search-resolve (R11, R3) as fleet-wide leased runs:
--   aveloxis_ops.identity_runs, identity_staging, claim_identity_batch, stage_identity,
--   complete_identity_batch, identity_health, identity_platforms, why_not_enriched; the
--   settings enrich.* and search.* and identity.lease (sql/identity_tasks.sql).
-- * Diagnostics from real data: enrichment_progress and search_resolve_queue read the
--   cooldown settings; unresolved_commit_authors(max_rows) (reference query 7);
--   contributor_fk_integrity() checks every column with a foreign key to contributors.
-- * resolve_users: cntrb_login is the login first seen and no longer follows a rename
--   (gh_login/gl_username do; contributor_login_history keeps every login).

DROP FUNCTION aveloxis.merge_contributors(uuid, uuid);
DROP FUNCTION aveloxis.set_affiliation(text, text, boolean);
-- Merges move a row's history by cntrb_id (sql/merges.sql).
CREATE INDEX contributor_login_history_cntrb_idx ON aveloxis_data.contributor_login_history (cntrb_id);

CREATE FUNCTION aveloxis_ops.noreply_account(email text)
RETURNS TABLE (platform_id smallint, platform_kind smallint, user_id bigint, login text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    address text := lower(btrim(email));
    m text[];
    platform smallint;
BEGIN
    m := regexp_match(address, '^(?:([0-9]{1,18})\+)?([a-z0-9][a-z0-9._-]*)@users\.noreply\.github\.com$');
    IF m IS NOT NULL THEN
        IF m[1] IS NOT NULL AND m[1]::bigint <= 0 THEN
            RETURN;
        END IF;
        RETURN QUERY SELECT 1::smallint, 1::smallint, m[1]::bigint, m[2];
        RETURN;
    END IF;
    m := regexp_match(address, '^([0-9]{1,18})-([a-z0-9][a-z0-9._-]*)@users\.noreply\.[a-z0-9.-]+$');
    IF m IS NULL OR m[1]::bigint <= 0 THEN
        RETURN;
    END IF;
    platform := aveloxis_ops.noreply_platform(address, 2::smallint);
    IF platform IS NOT NULL THEN
        RETURN QUERY SELECT platform, 2::smallint, m[1]::bigint, m[2];
    END IF;
END
$$;

CREATE FUNCTION aveloxis_ops.junk_email_reason(email text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN e = '' THEN 'empty email'
                WHEN strpos(e, '@') = 0 THEN 'not an email address'
                WHEN strpos(e, '[bot]') > 0 THEN 'a bot account'
                WHEN strpos(e, 'noreply') > 0 AND strpos(e, 'users.noreply.') = 0 THEN 'a service''s noreply address'
                WHEN e LIKE '%@github.com' OR e LIKE '%@localhost' OR e LIKE '%.localdomain'
                    THEN 'a service or machine address' END
    FROM (SELECT lower(btrim(coalesce(email, ''))) AS e) x
$$;

CREATE OR REPLACE FUNCTION aveloxis.resolve_email(email text)
RETURNS TABLE (cntrb_id uuid, login text, source text)
LANGUAGE plpgsql STABLE STRICT SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    address text := lower(btrim(email));
    n record;
BEGIN
    SELECT * INTO n FROM aveloxis_ops.noreply_account(address);
    IF FOUND THEN
        RETURN QUERY
            SELECT coalesce(
                       (SELECT i.cntrb_id FROM aveloxis_data.contributor_identities i
                        WHERE i.platform_id = n.platform_id AND i.platform_user_id = n.user_id),
                       (SELECT i.cntrb_id FROM aveloxis_data.contributor_identities i
                        WHERE n.user_id IS NULL AND i.platform_id = n.platform_id AND lower(i.login) = n.login)),
                   n.login,
                   CASE WHEN n.user_id IS NULL THEN 'noreply_login' ELSE 'noreply_id' END;
        RETURN;
    END IF;

    RETURN QUERY
        SELECT c.cntrb_id, c.cntrb_login, 'email'::text FROM aveloxis_data.contributors c
        WHERE c.cntrb_deleted = 0 AND (lower(c.cntrb_email) = address OR lower(c.cntrb_canonical) = address)
        ORDER BY c.gh_user_id IS NULL, c.gl_id IS NULL, c.data_collection_date
        LIMIT 1;
    IF FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY
        SELECT c.cntrb_id, c.cntrb_login, 'alias'::text
        FROM aveloxis_data.contributors_aliases a JOIN aveloxis_data.contributors c USING (cntrb_id)
        WHERE lower(a.alias_email) = address
        LIMIT 1;
END
$$;

CREATE FUNCTION aveloxis.email_chain(emails text[])
RETURNS TABLE (email text, step text, reason text, cntrb_id uuid, platform_id smallint, platform_kind smallint,
               user_id bigint, login text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    SELECT e.address,
           CASE WHEN n.login IS NOT NULL THEN 'noreply' WHEN j.reason IS NOT NULL THEN 'skipped'
                WHEN d.cntrb_id IS NOT NULL THEN 'database' ELSE 'unknown' END,
           CASE WHEN n.login IS NULL THEN j.reason END,
           CASE WHEN n.login IS NOT NULL OR j.reason IS NULL THEN d.cntrb_id END,
           n.platform_id, n.platform_kind, n.user_id, n.login
    FROM (SELECT DISTINCT ON (lower(btrim(x.e))) lower(btrim(x.e)) AS address, x.i
          FROM unnest(emails) WITH ORDINALITY AS x(e, i)
          WHERE x.e IS NOT NULL
          ORDER BY lower(btrim(x.e)), x.i) e
    LEFT JOIN LATERAL aveloxis_ops.noreply_account(e.address) n ON true
    LEFT JOIN LATERAL (SELECT aveloxis_ops.junk_email_reason(e.address) AS reason) j ON true
    LEFT JOIN LATERAL (SELECT r.cntrb_id FROM aveloxis.resolve_email(e.address) r
                       WHERE n.login IS NOT NULL OR j.reason IS NULL) d ON true
    ORDER BY e.i
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.resolve_users(OUT inserted bigint, OUT updated bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    platform        smallint;
    holder_platform smallint;
    holder_user     bigint;
BEGIN
    inserted := 0;
    updated := 0;
    FOR platform IN SELECT DISTINCT platform_id FROM pg_temp.drain_users ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(hashtextextended('aveloxis.contributors', platform));
    END LOOP;

    -- Two accounts of one batch claiming one login (a rename race inside the batch):
    -- the most recently staged keeps it; within one payload the newer account (forge
    -- ids grow with time), which is the likelier holder of a freed login.
    UPDATE pg_temp.drain_users d SET login = NULL
    FROM (SELECT platform_id, user_id,
                 row_number() OVER (PARTITION BY platform_id, lower(login)
                                    ORDER BY staging_id DESC, user_id DESC) AS rank
          FROM pg_temp.drain_users WHERE login IS NOT NULL) r
    WHERE r.platform_id = d.platform_id AND r.user_id = d.user_id AND r.rank > 1;

    -- R1/R2: a known account keeps its cntrb_id, whatever it was. Lookups here and below
    -- are correlated subqueries: one index probe per account of the batch, whatever the
    -- planner believes about tables that grow faster than autovacuum analyzes them.
    UPDATE pg_temp.drain_users d
    SET (cntrb_id, settled) = (
        SELECT i.cntrb_id,
               (i.login, i.avatar_url, i.profile_url, i.user_type, i.node_id)
                   IS NOT DISTINCT FROM (d.login, d.avatar_url, d.html_url, d.user_type, d.node_id)
               AND (d.name IS NULL OR d.name IS NOT DISTINCT FROM i.name)
               AND (d.email IS NULL OR d.email IS NOT DISTINCT FROM i.email)
               AND (d.company IS NULL OR d.company IS NOT DISTINCT FROM c.cntrb_company)
               AND (d.location IS NULL OR d.location IS NOT DISTINCT FROM c.cntrb_location)
               AND (d.created_at IS NULL OR d.created_at IS NOT DISTINCT FROM c.cntrb_created_at)
               AND CASE d.kind
                   WHEN 1 THEN (c.gh_user_id, c.gh_login, c.gh_url, c.gh_html_url, c.gh_node_id, c.gh_avatar_url,
                                c.gh_gravatar_id, c.gh_type, c.gh_site_admin)
                                   IS NOT DISTINCT FROM
                               (d.user_id, d.login, d.api_url, d.html_url, d.node_id, d.avatar_url, d.gravatar_id,
                                d.user_type, d.site_admin)
                               AND (d.name IS NULL OR d.name IS NOT DISTINCT FROM c.cntrb_full_name)
                               AND (d.email IS NULL OR d.email IS NOT DISTINCT FROM c.cntrb_email)
                   WHEN 2 THEN (c.gl_id, c.gl_username, c.gl_web_url, c.gl_avatar_url)
                                   IS NOT DISTINCT FROM (d.user_id, d.login, d.html_url, d.avatar_url)
                               AND (d.state IS NULL OR d.state IS NOT DISTINCT FROM c.gl_state)
                               AND (d.name IS NULL OR d.name IS NOT DISTINCT FROM c.gl_full_name)
                   ELSE false END
        FROM aveloxis_data.contributor_identities i
        JOIN aveloxis_data.contributors c ON c.cntrb_id = i.cntrb_id
        WHERE i.platform_id = d.platform_id AND i.platform_user_id = d.user_id);
    IF NOT EXISTS (SELECT FROM pg_temp.drain_users WHERE settled IS NOT TRUE) THEN
        RETURN;
    END IF;
    -- The statements below touch only the accounts that are new or changed.
    ANALYZE pg_temp.drain_users;

    -- Then by login: a contributor known by login only (no account id yet) is this account.
    -- (One statement per platform, so each uses its partial index.)
    UPDATE pg_temp.drain_users d
    SET cntrb_id = (SELECT c.cntrb_id FROM aveloxis_data.contributors c
                    WHERE lower(c.gh_login) = lower(d.login) AND c.gh_user_id IS NULL AND c.cntrb_deleted = 0
                    ORDER BY c.cntrb_id LIMIT 1)
    WHERE d.cntrb_id IS NULL AND d.kind = 1 AND d.login IS NOT NULL;
    UPDATE pg_temp.drain_users d
    SET cntrb_id = (SELECT c.cntrb_id FROM aveloxis_data.contributors c
                    WHERE lower(c.gl_username) = lower(d.login) AND c.gl_id IS NULL AND c.cntrb_deleted = 0
                    ORDER BY c.cntrb_id LIMIT 1)
    WHERE d.cntrb_id IS NULL AND d.kind = 2 AND d.login IS NOT NULL;

    -- Else a new contributor with the deterministic id (R1).
    UPDATE pg_temp.drain_users d SET cntrb_id = aveloxis.platform_uuid(d.platform_id, d.user_id)
    WHERE d.cntrb_id IS NULL;

    WITH ins AS (
        INSERT INTO aveloxis_data.contributors AS c
            (cntrb_id, cntrb_login, cntrb_full_name, cntrb_email, cntrb_company, cntrb_location, cntrb_created_at,
             gh_user_id, gh_login, gh_url, gh_html_url, gh_node_id, gh_avatar_url, gh_gravatar_id, gh_type, gh_site_admin,
             gl_id, gl_username, gl_web_url, gl_avatar_url, gl_full_name, gl_state,
             tool_source, tool_version, data_source)
        SELECT d.cntrb_id, d.login, d.name, d.email, d.company, d.location, d.created_at,
               CASE WHEN d.kind = 1 THEN d.user_id END, CASE WHEN d.kind = 1 THEN d.login END,
               CASE WHEN d.kind = 1 THEN d.api_url END, CASE WHEN d.kind = 1 THEN d.html_url END,
               CASE WHEN d.kind = 1 THEN d.node_id END, CASE WHEN d.kind = 1 THEN d.avatar_url END,
               CASE WHEN d.kind = 1 THEN d.gravatar_id END, CASE WHEN d.kind = 1 THEN d.user_type END,
               CASE WHEN d.kind = 1 THEN d.site_admin END,
               CASE WHEN d.kind = 2 THEN d.user_id END, CASE WHEN d.kind = 2 THEN d.login END,
               CASE WHEN d.kind = 2 THEN d.html_url END, CASE WHEN d.kind = 2 THEN d.avatar_url END,
               CASE WHEN d.kind = 2 THEN d.name END, CASE WHEN d.kind = 2 THEN d.state END,
               'pg_aveloxis', aveloxis.version(), 'aveloxis.drain'
        FROM pg_temp.drain_users d
        WHERE d.settled IS NOT TRUE
        ORDER BY d.cntrb_id
        ON CONFLICT (cntrb_id) DO NOTHING
        RETURNING 1
    )
    SELECT count(*) INTO inserted FROM ins;

    -- R3: a login now held by another account was freed by a rename; the old holder
    -- loses it (its history keeps it) before the new holder's row is written. Renames
    -- are rare: the holders are found by index, one probe per changed account.
    FOR holder_platform, holder_user IN
        SELECT h.platform_id, h.platform_user_id
        FROM pg_temp.drain_users d
        CROSS JOIN LATERAL (SELECT x.platform_id, x.platform_user_id
                            FROM aveloxis_data.contributor_identities x
                            WHERE x.platform_id = d.platform_id AND lower(x.login) = lower(d.login)
                              AND x.platform_user_id <> d.user_id
                            LIMIT 1) h
        WHERE d.settled IS NOT TRUE AND d.login IS NOT NULL
    LOOP
        UPDATE aveloxis_data.contributor_identities i SET login = NULL
        WHERE i.platform_id = holder_platform AND i.platform_user_id = holder_user;
        UPDATE aveloxis_data.contributor_login_history h SET replaced_at = now()
        WHERE h.platform_id = holder_platform AND h.platform_user_id = holder_user AND h.replaced_at IS NULL;
    END LOOP;

    INSERT INTO aveloxis_data.contributor_identities AS i
        (platform_id, platform_user_id, cntrb_id, login, name, email, avatar_url, profile_url, user_type, node_id)
    SELECT d.platform_id, d.user_id, d.cntrb_id, d.login, d.name, d.email, d.avatar_url, d.html_url,
           d.user_type, d.node_id
    FROM pg_temp.drain_users d
    WHERE d.settled IS NOT TRUE
    ORDER BY d.platform_id, d.user_id
    ON CONFLICT (platform_id, platform_user_id) DO UPDATE
        SET login = EXCLUDED.login, name = coalesce(EXCLUDED.name, i.name), email = coalesce(EXCLUDED.email, i.email),
            avatar_url = EXCLUDED.avatar_url, profile_url = EXCLUDED.profile_url,
            user_type = EXCLUDED.user_type, node_id = EXCLUDED.node_id, last_seen_at = EXCLUDED.last_seen_at
        WHERE (i.login, i.avatar_url, i.profile_url, i.user_type, i.node_id)
              IS DISTINCT FROM (EXCLUDED.login, EXCLUDED.avatar_url, EXCLUDED.profile_url, EXCLUDED.user_type, EXCLUDED.node_id)
           OR (EXCLUDED.name IS NOT NULL AND EXCLUDED.name IS DISTINCT FROM i.name)
           OR (EXCLUDED.email IS NOT NULL AND EXCLUDED.email IS DISTINCT FROM i.email);

    -- Renames: the account's other logins are replaced; the current one is recorded.
    -- (A settled account's login is unchanged, so its history is already current.)
    UPDATE aveloxis_data.contributor_login_history h SET replaced_at = now()
    FROM pg_temp.drain_users d
    WHERE d.settled IS NOT TRUE
      AND h.platform_id = d.platform_id AND h.platform_user_id = d.user_id AND h.replaced_at IS NULL
      AND h.login IS DISTINCT FROM d.login;
    INSERT INTO aveloxis_data.contributor_login_history AS h (platform_id, platform_user_id, login, cntrb_id)
    SELECT d.platform_id, d.user_id, d.login, d.cntrb_id FROM pg_temp.drain_users d
    WHERE d.settled IS NOT TRUE AND d.login IS NOT NULL
    ORDER BY d.platform_id, d.user_id
    ON CONFLICT (platform_id, platform_user_id, login) DO UPDATE SET replaced_at = NULL
        WHERE h.replaced_at IS NOT NULL;

    -- The denormalized gh_*/gl_* copies follow the identity (R4): gh_login/gl_username is
    -- the current login. cntrb_login is the login first seen and never changes, nor does
    -- cntrb_id (R2); renames are in contributor_login_history.
    WITH upd AS (
        UPDATE aveloxis_data.contributors c
        SET gh_user_id = d.user_id,
            cntrb_login = coalesce(c.cntrb_login, d.login),
            gh_login = d.login, gh_url = d.api_url, gh_html_url = d.html_url, gh_node_id = d.node_id,
            gh_avatar_url = d.avatar_url, gh_gravatar_id = d.gravatar_id, gh_type = d.user_type,
            gh_site_admin = d.site_admin,
            cntrb_full_name = coalesce(d.name, c.cntrb_full_name), cntrb_email = coalesce(d.email, c.cntrb_email),
            cntrb_company = coalesce(d.company, c.cntrb_company), cntrb_location = coalesce(d.location, c.cntrb_location),
            cntrb_created_at = coalesce(d.created_at, c.cntrb_created_at)
        FROM pg_temp.drain_users d
        WHERE d.settled IS NOT TRUE AND d.kind = 1 AND c.cntrb_id = d.cntrb_id
          AND ((c.gh_user_id, c.gh_login, c.gh_url, c.gh_html_url, c.gh_node_id, c.gh_avatar_url, c.gh_gravatar_id,
                c.gh_type, c.gh_site_admin)
               IS DISTINCT FROM (d.user_id, d.login, d.api_url, d.html_url, d.node_id, d.avatar_url, d.gravatar_id,
                d.user_type, d.site_admin)
            OR (d.name IS NOT NULL AND d.name IS DISTINCT FROM c.cntrb_full_name)
            OR (d.email IS NOT NULL AND d.email IS DISTINCT FROM c.cntrb_email)
            OR (d.company IS NOT NULL AND d.company IS DISTINCT FROM c.cntrb_company)
            OR (d.location IS NOT NULL AND d.location IS DISTINCT FROM c.cntrb_location)
            OR (d.created_at IS NOT NULL AND d.created_at IS DISTINCT FROM c.cntrb_created_at))
        RETURNING 1
    ), upd_gl AS (
        UPDATE aveloxis_data.contributors c
        SET gl_id = d.user_id,
            cntrb_login = coalesce(c.cntrb_login, d.login),
            gl_username = d.login, gl_web_url = d.html_url, gl_avatar_url = d.avatar_url,
            gl_full_name = coalesce(d.name, c.gl_full_name), gl_state = coalesce(d.state, c.gl_state),
            cntrb_company = coalesce(d.company, c.cntrb_company), cntrb_location = coalesce(d.location, c.cntrb_location),
            cntrb_created_at = coalesce(d.created_at, c.cntrb_created_at)
        FROM pg_temp.drain_users d
        WHERE d.settled IS NOT TRUE AND d.kind = 2 AND c.cntrb_id = d.cntrb_id
          AND ((c.gl_id, c.gl_username, c.gl_web_url, c.gl_avatar_url)
              IS DISTINCT FROM (d.user_id, d.login, d.html_url, d.avatar_url)
            OR (d.state IS NOT NULL AND d.state IS DISTINCT FROM c.gl_state)
            OR (d.name IS NOT NULL AND d.name IS DISTINCT FROM c.gl_full_name)
            OR (d.company IS NOT NULL AND d.company IS DISTINCT FROM c.cntrb_company)
            OR (d.location IS NOT NULL AND d.location IS DISTINCT FROM c.cntrb_location))
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM upd) + (SELECT count(*) FROM upd_gl) INTO updated;
    -- Rows inserted just now are "updated" by the statement above only if they differ,
    -- which they never do: the counts do not overlap.
END
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.drain_commits(repo bigint, only_staging_id bigint)
RETURNS aveloxis_ops.drain_counts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    total  bigint;
    result aveloxis_ops.drain_counts := ROW(0, 0, 0, 0, 0)::aveloxis_ops.drain_counts;
    source text := 'aveloxis-facade';
    version text := aveloxis.version();
BEGIN
    PERFORM aveloxis_ops.drop_batch_table('drain_commits');
    SELECT count(*) INTO total FROM pg_temp.drain_rows r
    WHERE r.doc IS NOT NULL AND NOT r.pending AND (only_staging_id IS NULL OR r.staging_id = only_staging_id);
    -- One row per commit (a commit staged twice in one batch counts once: its files
    -- must not be summed twice), with everything that is per commit computed once.
    CREATE TEMP TABLE drain_commits ON COMMIT DROP AS
    SELECT DISTINCT ON (c.hash)
           r.staging_id, c.hash, c.parents, c.message, c.files,
           c.author ->> 'name' AS author_name, c.author ->> 'email' AS author_raw_email,
           lower(btrim(c.author ->> 'email')) AS author_email, c.author ->> 'time' AS author_time,
           c.committer ->> 'name' AS committer_name, c.committer ->> 'email' AS committer_raw_email,
           lower(btrim(c.committer ->> 'email')) AS committer_email, c.committer ->> 'time' AS committer_time,
           NULL::text AS author_affiliation, NULL::text AS committer_affiliation
    FROM pg_temp.drain_rows r,
         jsonb_to_record(r.doc) AS c(hash text, parents jsonb, message text, files jsonb, author jsonb, committer jsonb)
    WHERE r.doc IS NOT NULL AND NOT r.pending AND (only_staging_id IS NULL OR r.staging_id = only_staging_id)
    ORDER BY c.hash, r.staging_id DESC;
    IF EXISTS (SELECT FROM pg_temp.drain_commits
               WHERE hash IS NULL OR hash !~ '^[0-9a-f]{40}([0-9a-f]{24})?$'
                  OR jsonb_typeof(coalesce(files, '[]')) <> 'array' OR jsonb_typeof(coalesce(parents, '[]')) <> 'array') THEN
        RAISE EXCEPTION 'commit payload without a 40- or 64-hex "hash", or whose "files"/"parents" are not arrays'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Stage the agent''s commit envelope (docs/staging-contract.md).';
    END IF;
    -- Affiliations are not stored in commit rows: they are read through the dated rules
    -- (sql/affiliation.sql), so a correction never rewrites a commit.

    -- One row per (commit, file); a path listed twice in one commit is one row with
    -- both counts.
    WITH files AS (
        SELECT c.hash, coalesce(f.path, '(no files)') AS path, min(f.previous_path) AS previous_path,
               coalesce(sum(f.added), 0)::integer AS added, coalesce(sum(f.removed), 0)::integer AS removed,
               coalesce(bool_or(f."binary"), false) AS is_binary
        FROM pg_temp.drain_commits c
        LEFT JOIN LATERAL jsonb_to_recordset(nullif(coalesce(c.files, '[]'), '[]'))
            AS f(path text, previous_path text, added integer, removed integer, "binary" boolean) ON true
        GROUP BY c.hash, coalesce(f.path, '(no files)')
    ), people AS (
        SELECT c.hash, c.author_name, c.author_raw_email, c.author_email, left(c.author_time, 10) AS author_date,
               c.author_affiliation, c.committer_name, c.committer_raw_email, c.committer_email,
               left(c.committer_time, 10) AS committer_date, c.committer_affiliation,
               aveloxis_ops.forge_timestamp(c.author_time) AS author_ts,
               aveloxis_ops.forge_timestamp(c.committer_time) AS committer_ts,
               aveloxis_ops.tz_offset_minutes(c.author_time) AS author_offset,
               aveloxis_ops.tz_offset_minutes(c.committer_time) AS committer_offset
        FROM pg_temp.drain_commits c
    ), ins AS (
        INSERT INTO aveloxis_data.commits AS t
            (repo_id, cmt_commit_hash, cmt_author_name, cmt_author_raw_email, cmt_author_email, cmt_author_date,
             cmt_author_affiliation, cmt_committer_name, cmt_committer_raw_email, cmt_committer_email,
             cmt_committer_date, cmt_committer_affiliation, cmt_added, cmt_removed, cmt_filename,
             cmt_previous_filename, cmt_binary, cmt_author_timestamp, cmt_committer_timestamp, cmt_ght_committed_at,
             cmt_author_tz_offset, cmt_committer_tz_offset, tool_source, tool_version, data_source)
        SELECT repo, f.hash, p.author_name, p.author_raw_email, p.author_email, p.author_date, p.author_affiliation,
               p.committer_name, p.committer_raw_email, p.committer_email, p.committer_date, p.committer_affiliation,
               f.added, f.removed, f.path, f.previous_path, f.is_binary, p.author_ts, p.committer_ts, p.committer_ts,
               p.author_offset, p.committer_offset, source, version, 'git'
        FROM files f JOIN people p ON p.hash = f.hash
        ON CONFLICT (repo_id, cmt_commit_hash, cmt_filename) DO NOTHING
        RETURNING t.cmt_commit_hash, t.cmt_author_email, t.cmt_author_timestamp
    ), backlog AS (
        INSERT INTO aveloxis_ops.commit_aggregate_backlog (repo_id, email, year)
        SELECT DISTINCT repo, i.cmt_author_email, extract(year FROM i.cmt_author_timestamp AT TIME ZONE 'UTC')
        FROM ins i WHERE i.cmt_author_timestamp IS NOT NULL AND i.cmt_author_email IS NOT NULL
        ON CONFLICT DO NOTHING
    )
    SELECT count(DISTINCT i.cmt_commit_hash) INTO result.inserted FROM ins i;

    INSERT INTO aveloxis_data.commit_parents (repo_id, cmt_commit_hash, parent_position, parent_hash, tool_source,
                                              tool_version, data_source)
    SELECT repo, c.hash, p.ord - 1, p.parent, source, version, 'git'
    FROM pg_temp.drain_commits c, jsonb_array_elements_text(coalesce(c.parents, '[]')) WITH ORDINALITY AS p(parent, ord)
    ON CONFLICT DO NOTHING;

    INSERT INTO aveloxis_data.commit_messages (repo_id, cmt_hash, cmt_msg, tool_source, tool_version, data_source)
    SELECT repo, c.hash, coalesce(c.message, ''), source, version, 'git'
    FROM pg_temp.drain_commits c
    ON CONFLICT (repo_id, cmt_hash) DO NOTHING;

    result.unchanged := total - result.inserted;
    RETURN result;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.refresh_commit_aggregates(repo bigint)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
    grp bigint;
    groups bigint;
    source text := 'aveloxis-facade';
    version text := aveloxis.version();
BEGIN
    SELECT r.repo_group_id INTO grp FROM aveloxis_data.repos r WHERE r.repo_id = repo;
    PERFORM aveloxis_ops.drop_batch_table('stale_groups');
    CREATE TEMP TABLE stale_groups ON COMMIT DROP AS
    WITH taken AS (
        DELETE FROM aveloxis_ops.commit_aggregate_backlog b WHERE b.repo_id = repo RETURNING b.email, b.year
    )
    SELECT DISTINCT email, year FROM taken;
    GET DIAGNOSTICS groups = ROW_COUNT;
    IF groups = 0 THEN
        RETURN 0;
    END IF;
    ANALYZE pg_temp.stale_groups;

    -- This repository's commits in the stale groups, once.
    PERFORM aveloxis_ops.drop_batch_table('stale_commits');
    -- Affiliation read through the dated rules (sql/affiliation.sql), once per distinct
    -- (author, email, time), not once per file row.
    CREATE TEMP TABLE stale_commits ON COMMIT DROP AS
    WITH picked AS MATERIALIZED (
        SELECT c.repo_id, c.cmt_author_email AS email, c.cmt_ght_author_id AS author, c.cmt_author_timestamp AS ts,
               c.cmt_added, c.cmt_removed, c.cmt_whitespace, c.cmt_filename, c.cmt_commit_hash
        FROM pg_temp.stale_groups g
        JOIN aveloxis_data.commits c ON c.repo_id = repo AND c.cmt_author_email = g.email
        WHERE c.cmt_author_timestamp IS NOT NULL AND extract(year FROM c.cmt_author_timestamp) = g.year
    ), affiliated AS MATERIALIZED (
        SELECT k.author, k.email, k.ts,
               coalesce(aveloxis.commit_affiliation(k.author, k.email, k.ts), '(Unknown)') AS affiliation
        FROM (SELECT DISTINCT p.author, p.email, p.ts FROM picked p) k
    )
    SELECT p.repo_id, p.email, a.affiliation,
           extract(year FROM p.ts)::smallint AS year,
           extract(month FROM p.ts)::smallint AS month,
           extract(week FROM p.ts)::smallint AS week,
           p.cmt_added, p.cmt_removed, p.cmt_whitespace, p.cmt_filename, p.cmt_commit_hash
    FROM picked p
    JOIN affiliated a ON a.email = p.email AND a.ts = p.ts
                     AND coalesce(a.author, '00000000-0000-0000-0000-000000000000') = coalesce(p.author, '00000000-0000-0000-0000-000000000000');

    DELETE FROM aveloxis_data.dm_repo_annual d USING pg_temp.stale_groups g
    WHERE d.repo_id = repo AND d.email = g.email AND d.year = g.year;
    DELETE FROM aveloxis_data.dm_repo_monthly d USING pg_temp.stale_groups g
    WHERE d.repo_id = repo AND d.email = g.email AND d.year = g.year;
    DELETE FROM aveloxis_data.dm_repo_weekly d USING pg_temp.stale_groups g
    WHERE d.repo_id = repo AND d.email = g.email AND d.year = g.year;
    INSERT INTO aveloxis_data.dm_repo_annual (repo_id, email, affiliation, year, added, removed, whitespace, files,
                                              patches, tool_source, tool_version, data_source)
    SELECT repo, s.email, s.affiliation, s.year, sum(s.cmt_added), sum(s.cmt_removed), sum(s.cmt_whitespace),
           count(DISTINCT s.cmt_filename) FILTER (WHERE s.cmt_filename <> '(no files)'),
           count(DISTINCT s.cmt_commit_hash), source, version, 'git'
    FROM pg_temp.stale_commits s GROUP BY s.email, s.affiliation, s.year;
    INSERT INTO aveloxis_data.dm_repo_monthly (repo_id, email, affiliation, year, month, added, removed, whitespace,
                                               files, patches, tool_source, tool_version, data_source)
    SELECT repo, s.email, s.affiliation, s.year, s.month, sum(s.cmt_added), sum(s.cmt_removed), sum(s.cmt_whitespace),
           count(DISTINCT s.cmt_filename) FILTER (WHERE s.cmt_filename <> '(no files)'),
           count(DISTINCT s.cmt_commit_hash), source, version, 'git'
    FROM pg_temp.stale_commits s GROUP BY s.email, s.affiliation, s.year, s.month;
    INSERT INTO aveloxis_data.dm_repo_weekly (repo_id, email, affiliation, year, week, added, removed, whitespace,
                                              files, patches, tool_source, tool_version, data_source)
    SELECT repo, s.email, s.affiliation, s.year, s.week, sum(s.cmt_added), sum(s.cmt_removed), sum(s.cmt_whitespace),
           count(DISTINCT s.cmt_filename) FILTER (WHERE s.cmt_filename <> '(no files)'),
           count(DISTINCT s.cmt_commit_hash), source, version, 'git'
    FROM pg_temp.stale_commits s GROUP BY s.email, s.affiliation, s.year, s.week;

    -- The repo group's aggregates of the same groups, over all its repositories. Drains
    -- of two repositories of one group would both delete and re-insert the group's rows
    -- (and one fail on the other's insert): one at a time per group, until commit. Each
    -- statement after the lock sees what the other committed (READ COMMITTED).
    PERFORM pg_advisory_xact_lock(hashtextextended('aveloxis.repo_group_aggregates', grp));
    DELETE FROM aveloxis_data.dm_repo_group_annual d USING pg_temp.stale_groups g
    WHERE d.repo_group_id = grp AND d.email = g.email AND d.year = g.year;
    DELETE FROM aveloxis_data.dm_repo_group_monthly d USING pg_temp.stale_groups g
    WHERE d.repo_group_id = grp AND d.email = g.email AND d.year = g.year;
    DELETE FROM aveloxis_data.dm_repo_group_weekly d USING pg_temp.stale_groups g
    WHERE d.repo_group_id = grp AND d.email = g.email AND d.year = g.year;
    -- When no other repository of the group has commits by the stale authors in those
    -- years (a group of one, or forks apart), the group's rows are this repository's:
    -- copied, not recomputed from every commit again.
    IF NOT EXISTS (
        SELECT FROM pg_temp.stale_groups g
        JOIN aveloxis_data.repos r ON r.repo_group_id = grp AND r.repo_id <> repo
        JOIN aveloxis_data.commits c ON c.repo_id = r.repo_id AND c.cmt_author_email = g.email
        WHERE c.cmt_author_timestamp IS NOT NULL AND extract(year FROM c.cmt_author_timestamp) = g.year
    ) THEN
        INSERT INTO aveloxis_data.dm_repo_group_annual (repo_group_id, email, affiliation, year, added, removed,
                                                        whitespace, files, patches, tool_source, tool_version,
                                                        data_source)
        SELECT grp, d.email, d.affiliation, d.year, d.added, d.removed, d.whitespace, d.files, d.patches,
               source, version, 'git'
        FROM aveloxis_data.dm_repo_annual d JOIN pg_temp.stale_groups g ON g.email = d.email AND g.year = d.year
        WHERE d.repo_id = repo;
        INSERT INTO aveloxis_data.dm_repo_group_monthly (repo_group_id, email, affiliation, year, month, added,
                                                         removed, whitespace, files, patches, tool_source,
                                                         tool_version, data_source)
        SELECT grp, d.email, d.affiliation, d.year, d.month, d.added, d.removed, d.whitespace, d.files, d.patches,
               source, version, 'git'
        FROM aveloxis_data.dm_repo_monthly d JOIN pg_temp.stale_groups g ON g.email = d.email AND g.year = d.year
        WHERE d.repo_id = repo;
        INSERT INTO aveloxis_data.dm_repo_group_weekly (repo_group_id, email, affiliation, year, week, added,
                                                        removed, whitespace, files, patches, tool_source,
                                                        tool_version, data_source)
        SELECT grp, d.email, d.affiliation, d.year, d.week, d.added, d.removed, d.whitespace, d.files, d.patches,
               source, version, 'git'
        FROM aveloxis_data.dm_repo_weekly d JOIN pg_temp.stale_groups g ON g.email = d.email AND g.year = d.year
        WHERE d.repo_id = repo;
        RETURN groups;
    END IF;
    PERFORM aveloxis_ops.drop_batch_table('stale_group_commits');
    CREATE TEMP TABLE stale_group_commits ON COMMIT DROP AS
    WITH picked AS MATERIALIZED (
        SELECT c.cmt_author_email AS email, c.cmt_ght_author_id AS author, c.cmt_author_timestamp AS ts,
               c.cmt_added, c.cmt_removed, c.cmt_whitespace, c.repo_id, c.cmt_filename, c.cmt_commit_hash
        FROM pg_temp.stale_groups g
        JOIN aveloxis_data.repos r ON r.repo_group_id = grp
        JOIN aveloxis_data.commits c ON c.repo_id = r.repo_id AND c.cmt_author_email = g.email
        WHERE c.cmt_author_timestamp IS NOT NULL AND extract(year FROM c.cmt_author_timestamp) = g.year
    ), affiliated AS MATERIALIZED (
        SELECT k.author, k.email, k.ts,
               coalesce(aveloxis.commit_affiliation(k.author, k.email, k.ts), '(Unknown)') AS affiliation
        FROM (SELECT DISTINCT p.author, p.email, p.ts FROM picked p) k
    )
    SELECT p.email, a.affiliation,
           extract(year FROM p.ts)::smallint AS year,
           extract(month FROM p.ts)::smallint AS month,
           extract(week FROM p.ts)::smallint AS week,
           p.cmt_added, p.cmt_removed, p.cmt_whitespace, p.repo_id, p.cmt_filename, p.cmt_commit_hash
    FROM picked p
    JOIN affiliated a ON a.email = p.email AND a.ts = p.ts
                     AND coalesce(a.author, '00000000-0000-0000-0000-000000000000') = coalesce(p.author, '00000000-0000-0000-0000-000000000000');
    -- A path is a file per repository; a commit hash is one patch even when two
    -- repositories of the group (forks) share it.
    INSERT INTO aveloxis_data.dm_repo_group_annual (repo_group_id, email, affiliation, year, added, removed,
                                                    whitespace, files, patches, tool_source, tool_version, data_source)
    SELECT grp, s.email, s.affiliation, s.year, sum(s.cmt_added), sum(s.cmt_removed), sum(s.cmt_whitespace),
           count(DISTINCT (s.repo_id, s.cmt_filename)) FILTER (WHERE s.cmt_filename <> '(no files)'),
           count(DISTINCT s.cmt_commit_hash), source, version, 'git'
    FROM pg_temp.stale_group_commits s GROUP BY s.email, s.affiliation, s.year;
    INSERT INTO aveloxis_data.dm_repo_group_monthly (repo_group_id, email, affiliation, year, month, added, removed,
                                                     whitespace, files, patches, tool_source, tool_version, data_source)
    SELECT grp, s.email, s.affiliation, s.year, s.month, sum(s.cmt_added), sum(s.cmt_removed), sum(s.cmt_whitespace),
           count(DISTINCT (s.repo_id, s.cmt_filename)) FILTER (WHERE s.cmt_filename <> '(no files)'),
           count(DISTINCT s.cmt_commit_hash), source, version, 'git'
    FROM pg_temp.stale_group_commits s GROUP BY s.email, s.affiliation, s.year, s.month;
    INSERT INTO aveloxis_data.dm_repo_group_weekly (repo_group_id, email, affiliation, year, week, added, removed,
                                                    whitespace, files, patches, tool_source, tool_version, data_source)
    SELECT grp, s.email, s.affiliation, s.year, s.week, sum(s.cmt_added), sum(s.cmt_removed), sum(s.cmt_whitespace),
           count(DISTINCT (s.repo_id, s.cmt_filename)) FILTER (WHERE s.cmt_filename <> '(no files)'),
           count(DISTINCT s.cmt_commit_hash), source, version, 'git'
    FROM pg_temp.stale_group_commits s GROUP BY s.email, s.affiliation, s.year, s.week;
    RETURN groups;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis.enrichment_progress()
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

CREATE OR REPLACE FUNCTION aveloxis.search_resolve_queue()
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

CREATE OR REPLACE FUNCTION aveloxis.contributor_fk_integrity()
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

CREATE OR REPLACE FUNCTION aveloxis.distribution_plan()
RETURNS TABLE (step integer, table_name regclass, kind text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE tables AS (
        SELECT c.oid AS rel,
               CASE WHEN c.oid = ANY (ARRAY['aveloxis_ops.jobs', 'aveloxis_ops.job_runs',
                                            'aveloxis_ops.setting_defaults', 'aveloxis_ops.setting_overrides',
                                            'aveloxis_ops.token_budgets', 'aveloxis_ops.view_refresh_runs',
                                            'aveloxis_ops.view_refreshes',
                                            'aveloxis_ops.source_breakers', 'aveloxis_ops.identity_runs',
                                            'aveloxis_ops.identity_staging']::regclass[]) THEN 'local'
                    -- Globally unique URLs and forge ids: only a reference table can enforce them.
                    WHEN c.oid = ANY (ARRAY['aveloxis_data.repos', 'aveloxis_data.repo_url_history']::regclass[])
                        THEN 'reference'
                    WHEN EXISTS (SELECT FROM pg_attribute a
                                 WHERE a.attrelid = c.oid AND a.attname = 'repo_id' AND NOT a.attisdropped)
                        THEN 'distributed'
                    ELSE 'reference' END AS kind
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname IN ('aveloxis', 'aveloxis_ops', 'aveloxis_data') AND c.relkind IN ('r', 'p')
          AND NOT c.relispartition
    ), edges AS (
        SELECT DISTINCT con.conrelid AS child, con.confrelid AS parent
        FROM pg_constraint con JOIN tables t ON t.rel = con.confrelid
        WHERE con.contype = 'f' AND con.conrelid <> con.confrelid
    ), depth AS (
        SELECT t.rel, 0 AS d FROM tables t
        UNION ALL
        SELECT e.child, depth.d + 1 FROM depth JOIN edges e ON e.parent = depth.rel WHERE depth.d < 32
    )
    -- Staging leads the distributed tables (it references none of them): the colocation
    -- group is named after it.
    SELECT (row_number() OVER (ORDER BY CASE t.kind WHEN 'reference' THEN 0 WHEN 'distributed' THEN 1 ELSE 2 END,
                                         t.rel <> 'aveloxis_ops.staging'::regclass, max(depth.d),
                                         t.rel::regclass::text))::integer,
           t.rel::regclass, t.kind
    FROM tables t JOIN depth ON depth.rel = t.rel
    GROUP BY t.rel, t.kind
$$;

CREATE OR REPLACE PROCEDURE aveloxis.tick()
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    at       timestamptz := aveloxis_ops.clock();
    -- Cutoffs as values, so the planner sees them and reads the indexes of what goes.
    staged_before timestamptz := at - aveloxis_ops.setting('staging.retention')::interval;
    runs_before   timestamptz := at - aveloxis_ops.setting('job_runs.retention')::interval;
    views_before  timestamptz := at - aveloxis_ops.setting('views.refresh_history')::interval;
    expired  bigint;
    purged   bigint;
    pruned   bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtextextended('aveloxis.tick', 0)) THEN
        RAISE NOTICE 'another aveloxis.tick() is running; this one returns';
        RETURN;
    END IF;
    expired := aveloxis_ops.expire_leases();
    DELETE FROM aveloxis_ops.staging s WHERE s.drained_at < staged_before;
    GET DIAGNOSTICS purged = ROW_COUNT;
    -- A run that finished before the cutoff started before it: the started_at index finds
    -- the old runs without reading the whole history.
    DELETE FROM aveloxis_ops.job_runs r WHERE r.started_at < runs_before AND r.finished_at < runs_before;
    GET DIAGNOSTICS pruned = ROW_COUNT;
    DELETE FROM aveloxis_ops.view_refresh_runs r WHERE r.finished_at < views_before;
    -- Identity runs (sql/identity_tasks.sql): expired leases applied as far as they were
    -- staged; old runs and their raw answers go with the job runs' retention.
    expired := expired + aveloxis_ops.expire_identity_runs(at);
    DELETE FROM aveloxis_ops.identity_runs r WHERE r.started_at < runs_before AND r.finished_at < runs_before;
    IF expired + purged + pruned > 0 THEN
        RAISE LOG 'aveloxis.tick: % expired leases returned, % drained staging rows and % old runs deleted',
            expired, purged, pruned;
    END IF;
END
$$;

DROP FUNCTION aveloxis_ops.email_affiliation(text);

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

COMMENT ON COLUMN aveloxis_data.commits.cmt_author_affiliation IS
    'Not written since 0.14.0: affiliation is read through the dated rules (aveloxis.commit_affiliation, aveloxis_augur_data.commits)';
COMMENT ON COLUMN aveloxis_data.commits.cmt_committer_affiliation IS
    'Not written since 0.14.0: read through aveloxis.email_affiliation(cmt_committer_email, cmt_committer_timestamp)';

-- Affiliation is read through the rules from now on: no stored copy to go stale.
UPDATE aveloxis_data.commits SET cmt_author_affiliation = NULL, cmt_committer_affiliation = NULL
WHERE cmt_author_affiliation IS NOT NULL OR cmt_committer_affiliation IS NOT NULL;

-- sql/merges.sql
-- Reversible logical merges of contributors (R3; docs/identity.md, "Merges"). Two rows
-- found to be one person are merged logically: the loser keeps its cntrb_id and every row
-- pointing at it (R2, R10) and is marked cntrb_deleted = 1; its accounts, login history,
-- aliases and enrollments move to the winner. Every merge and every undo is a row of an
-- append-only log that says exactly what it changed, so aveloxis.unmerge() restores the
-- state before, and the person a row belongs to is computed from the log (person_of).

CREATE TABLE aveloxis_data.contributor_merges (
    merge_id   bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    action     text NOT NULL CHECK (action IN ('merge', 'unmerge')),
    winner     uuid NOT NULL REFERENCES aveloxis_data.contributors,
    loser      uuid NOT NULL REFERENCES aveloxis_data.contributors,
    -- An unmerge names the merge it undoes (at most once).
    undoes     bigint UNIQUE REFERENCES aveloxis_data.contributor_merges,
    reason     text NOT NULL,
    -- Who decided: 'search_resolve' (automatic, R3), 'admin', 'suggestion' (accepted).
    source     text NOT NULL,
    -- What the merge changed: {"filled": {column: value}, "identities": [[platform, user]],
    -- "history": [[platform, user, login]], "aliases_moved": [email], "aliases_added": [email],
    -- "enrollments": [id]}.
    changes    jsonb NOT NULL DEFAULT '{}',
    decided_by text NOT NULL DEFAULT current_user,
    decided_at timestamptz NOT NULL DEFAULT now(),
    CHECK (winner <> loser),
    CHECK ((action = 'unmerge') = (undoes IS NOT NULL))
);
COMMENT ON TABLE aveloxis_data.contributor_merges IS
    'Append-only log of contributor merges and their undos; aveloxis.person_of() reads it';
CREATE INDEX contributor_merges_loser_idx ON aveloxis_data.contributor_merges (loser) WHERE action = 'merge';
CREATE INDEX contributor_merges_winner_idx ON aveloxis_data.contributor_merges (winner) WHERE action = 'merge';

-- Pairs a person looked at and said are two people: never suggested again.
CREATE TABLE aveloxis_data.contributor_merge_rejections (
    cntrb_a     uuid NOT NULL REFERENCES aveloxis_data.contributors,
    cntrb_b     uuid NOT NULL REFERENCES aveloxis_data.contributors,
    note        text,
    rejected_by text NOT NULL DEFAULT current_user,
    rejected_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cntrb_a, cntrb_b),
    CHECK (cntrb_a < cntrb_b)
);
COMMENT ON TABLE aveloxis_data.contributor_merge_rejections IS 'Suggested merges a person rejected';

SELECT pg_catalog.pg_extension_config_dump('aveloxis_data.contributor_merges', '');
SELECT pg_catalog.pg_extension_config_dump(
    pg_catalog.pg_get_serial_sequence('aveloxis_data.contributor_merges', 'merge_id'), '');
SELECT pg_catalog.pg_extension_config_dump('aveloxis_data.contributor_merge_rejections', '');

-- The log is append-only: a merge is undone by an unmerge row, never by editing history.
-- Only the extension's functions write it (analysts read it; agents cannot reach it); no
-- trigger guards it, as Citus reference tables take none (docs/scaling.md).

-- Merges in force: not undone.
CREATE VIEW aveloxis_data.contributor_merges_in_force WITH (security_invoker = true) AS
SELECT m.merge_id, m.winner, m.loser, m.reason, m.source, m.decided_by, m.decided_at
FROM aveloxis_data.contributor_merges m
WHERE m.action = 'merge'
  AND NOT EXISTS (SELECT FROM aveloxis_data.contributor_merges u WHERE u.undoes = m.merge_id);

-- The person a contributor row belongs to: the row itself, or, when it was merged away,
-- the row its chain of merges in force ends at.
CREATE FUNCTION aveloxis.person_of(cntrb_id uuid)
RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE up(id, depth) AS (
        SELECT person_of.cntrb_id, 0
        UNION ALL
        SELECT m.winner, up.depth + 1
        FROM up JOIN aveloxis_data.contributor_merges_in_force m ON m.loser = up.id
        WHERE up.depth < 1000
    )
    SELECT up.id FROM up WHERE up.id IS NOT NULL ORDER BY up.depth DESC LIMIT 1
$$;

-- Every contributor row with the person it belongs to (analysts join through this to
-- count people rather than rows). Only merged rows are walked: the chains start at
-- merges in force, whatever the number of contributors.
CREATE VIEW aveloxis_data.contributor_persons WITH (security_invoker = true) AS
WITH RECURSIVE chain(cntrb_id, person_id, depth) AS (
    SELECT m.loser, m.winner, 1 FROM aveloxis_data.contributor_merges_in_force m
    UNION ALL
    SELECT chain.cntrb_id, m.winner, chain.depth + 1
    FROM chain JOIN aveloxis_data.contributor_merges_in_force m ON m.loser = chain.person_id
    WHERE chain.depth < 1000
), ends AS (
    SELECT DISTINCT ON (chain.cntrb_id) chain.cntrb_id, chain.person_id
    FROM chain ORDER BY chain.cntrb_id, chain.depth DESC
)
SELECT c.cntrb_id, coalesce(e.person_id, c.cntrb_id) AS person_id
FROM aveloxis_data.contributors c LEFT JOIN ends e ON e.cntrb_id = c.cntrb_id;

-- Every row of a person: the row and, through merges in force, all rows merged into it.
CREATE FUNCTION aveloxis_ops.rows_of_person(person uuid)
RETURNS SETOF uuid
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE down(id, depth) AS (
        SELECT person, 0
        UNION ALL
        SELECT m.loser, down.depth + 1
        FROM down JOIN aveloxis_data.contributor_merges_in_force m ON m.winner = down.id
        WHERE down.depth < 1000
    )
    SELECT DISTINCT down.id FROM down
$$;

-- Which of two rows of one person survives: the one whose cntrb_id is the deterministic
-- id of one of its accounts (R1), else the older row, else the smaller id.
CREATE FUNCTION aveloxis_ops.merge_winner(a uuid, b uuid)
RETURNS uuid
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.cntrb_id FROM aveloxis_data.contributors c
    WHERE c.cntrb_id IN (a, b)
    ORDER BY EXISTS (SELECT FROM aveloxis_data.contributor_identities i
                     WHERE i.cntrb_id = c.cntrb_id
                       AND aveloxis.platform_uuid(i.platform_id, i.platform_user_id) = c.cntrb_id) DESC,
             c.data_collection_date, c.cntrb_id
    LIMIT 1
$$;

-- The merge itself (callers check who may merge what): returns the merge_id.
CREATE FUNCTION aveloxis_ops.merge_rows(winner uuid, loser uuid, reason text, source text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    w aveloxis_data.contributors;
    l aveloxis_data.contributors;
    filled jsonb;
    moved_identities jsonb;
    moved_history jsonb;
    moved_aliases jsonb;
    added_aliases jsonb;
    moved_enrollments jsonb;
    id bigint;
BEGIN
    IF winner IS NULL OR loser IS NULL OR winner = loser THEN
        RAISE EXCEPTION 'a merge needs two different contributors'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass the row to keep first, then the duplicate.';
    END IF;
    -- Both rows locked in a fixed order, so two merges cannot deadlock.
    PERFORM 1 FROM aveloxis_data.contributors c WHERE c.cntrb_id IN (winner, loser) ORDER BY c.cntrb_id FOR UPDATE;
    SELECT * INTO w FROM aveloxis_data.contributors c WHERE c.cntrb_id = winner;
    SELECT * INTO l FROM aveloxis_data.contributors c WHERE c.cntrb_id = loser;
    IF w.cntrb_id IS NULL OR l.cntrb_id IS NULL THEN
        RAISE EXCEPTION 'contributor % does not exist', CASE WHEN w.cntrb_id IS NULL THEN winner ELSE loser END
            USING ERRCODE = 'no_data_found';
    END IF;
    IF w.cntrb_deleted = 1 OR l.cntrb_deleted = 1 THEN
        RAISE EXCEPTION 'contributor % was already merged away', CASE WHEN w.cntrb_deleted = 1 THEN winner ELSE loser END
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Merge into the row it was merged into: aveloxis.person_of(cntrb_id) names it.';
    END IF;

    -- The winner's empty fields take the loser's values; which ones, and with what, is
    -- recorded so an unmerge empties exactly those.
    WITH rows AS MATERIALIZED (SELECT to_jsonb(w) AS w, to_jsonb(l) AS l)
    SELECT coalesce(jsonb_object_agg(k, r.l -> k), '{}') INTO filled
    FROM rows r,
         unnest(ARRAY['cntrb_email', 'cntrb_full_name', 'cntrb_company', 'cntrb_location', 'cntrb_canonical',
                      'gh_user_id', 'gh_login', 'gh_url', 'gh_html_url', 'gh_node_id', 'gh_avatar_url',
                      'gh_type', 'gl_id', 'gl_username', 'gl_web_url', 'gl_avatar_url']) k
    WHERE r.l -> k <> 'null'::jsonb AND r.w -> k = 'null'::jsonb;
    UPDATE aveloxis_data.contributors c SET
        cntrb_email = coalesce(c.cntrb_email, l.cntrb_email),
        cntrb_full_name = coalesce(c.cntrb_full_name, l.cntrb_full_name),
        cntrb_company = coalesce(c.cntrb_company, l.cntrb_company),
        cntrb_location = coalesce(c.cntrb_location, l.cntrb_location),
        cntrb_canonical = coalesce(c.cntrb_canonical, l.cntrb_canonical),
        gh_user_id = coalesce(c.gh_user_id, l.gh_user_id), gh_login = coalesce(c.gh_login, l.gh_login),
        gh_url = coalesce(c.gh_url, l.gh_url), gh_html_url = coalesce(c.gh_html_url, l.gh_html_url),
        gh_node_id = coalesce(c.gh_node_id, l.gh_node_id), gh_avatar_url = coalesce(c.gh_avatar_url, l.gh_avatar_url),
        gh_type = coalesce(c.gh_type, l.gh_type),
        gl_id = coalesce(c.gl_id, l.gl_id), gl_username = coalesce(c.gl_username, l.gl_username),
        gl_web_url = coalesce(c.gl_web_url, l.gl_web_url), gl_avatar_url = coalesce(c.gl_avatar_url, l.gl_avatar_url)
    WHERE c.cntrb_id = winner AND filled <> '{}';

    WITH moved AS (
        UPDATE aveloxis_data.contributor_identities i SET cntrb_id = winner WHERE i.cntrb_id = loser
        RETURNING i.platform_id, i.platform_user_id
    )
    SELECT coalesce(jsonb_agg(jsonb_build_array(m.platform_id, m.platform_user_id)), '[]') INTO moved_identities
    FROM moved m;
    WITH moved AS (
        UPDATE aveloxis_data.contributor_login_history h SET cntrb_id = winner WHERE h.cntrb_id = loser
        RETURNING h.platform_id, h.platform_user_id, h.login
    )
    SELECT coalesce(jsonb_agg(jsonb_build_array(m.platform_id, m.platform_user_id, m.login)), '[]') INTO moved_history
    FROM moved m;
    WITH moved AS (
        UPDATE aveloxis_data.contributors_aliases a SET cntrb_id = winner WHERE a.cntrb_id = loser
        RETURNING a.alias_email
    )
    SELECT coalesce(jsonb_agg(m.alias_email), '[]') INTO moved_aliases FROM moved m;
    -- The loser's own emails resolve to the winner from now on (R5); an address that is
    -- already someone's alias stays theirs.
    WITH added AS (
        INSERT INTO aveloxis_data.contributors_aliases (alias_email, cntrb_id, canonical_email, tool_source,
                                                       tool_version, data_source)
        SELECT DISTINCT e, winner, coalesce(w.cntrb_canonical, w.cntrb_email, l.cntrb_canonical, l.cntrb_email),
               'pg_aveloxis', aveloxis.version(), 'aveloxis merge'
        FROM unnest(ARRAY[lower(l.cntrb_email), lower(l.cntrb_canonical)]) AS e
        WHERE e IS NOT NULL AND aveloxis_ops.junk_email_reason(e) IS NULL
        ON CONFLICT (alias_email) DO NOTHING
        RETURNING alias_email
    )
    SELECT coalesce(jsonb_agg(a.alias_email), '[]') INTO added_aliases FROM added a;
    WITH moved AS (
        UPDATE aveloxis_data.contributor_enrollments e SET cntrb_id = winner WHERE e.cntrb_id = loser
        RETURNING e.enrollment_id
    )
    SELECT coalesce(jsonb_agg(m.enrollment_id), '[]') INTO moved_enrollments FROM moved m;

    UPDATE aveloxis_data.contributors c SET cntrb_deleted = 1 WHERE c.cntrb_id = loser;
    INSERT INTO aveloxis_data.contributor_merges (action, winner, loser, reason, source, changes)
    VALUES ('merge', winner, loser, coalesce(reason, 'merged'), source,
            jsonb_build_object('filled', filled, 'identities', moved_identities, 'history', moved_history,
                               'aliases_moved', moved_aliases, 'aliases_added', added_aliases,
                               'enrollments', moved_enrollments))
    RETURNING merge_id INTO id;
    RETURN id;
END
$$;

-- Logical merge of two rows that are one person (R3), decided by an administrator: the
-- winner takes the loser's accounts, aliases and enrollments and fills its empty fields
-- from the loser; the loser is marked cntrb_deleted = 1 and kept, so rows that point at it
-- keep their history (R2, R10). Returns the merge's id (aveloxis.unmerge undoes it).
CREATE FUNCTION aveloxis.merge_contributors(winner uuid, loser uuid, reason text DEFAULT NULL)
RETURNS bigint
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    SELECT aveloxis_ops.merge_rows(winner, loser, coalesce(reason, 'merged by ' || session_user), 'admin')
$$;

-- Undoes a merge in force: the loser is active again with exactly the accounts, login
-- history, aliases and enrollments it had, the winner's fields the merge filled are
-- emptied again (unless changed since), and the undo is logged. Merges are undone newest
-- first when one row took part in several: a later merge's changes are its own to undo.
CREATE FUNCTION aveloxis.unmerge(merge_id bigint, reason text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    m aveloxis_data.contributor_merges;
    f jsonb;
    later bigint;
    id bigint;
BEGIN
    SELECT * INTO m FROM aveloxis_data.contributor_merges x WHERE x.merge_id = unmerge.merge_id;
    IF m.merge_id IS NULL OR m.action <> 'merge' THEN
        RAISE EXCEPTION 'merge % does not exist', unmerge.merge_id
            USING ERRCODE = 'no_data_found', HINT = 'aveloxis_data.contributor_merges lists merges (action ''merge'').';
    END IF;
    PERFORM 1 FROM aveloxis_data.contributors c WHERE c.cntrb_id IN (m.winner, m.loser) ORDER BY c.cntrb_id FOR UPDATE;
    IF EXISTS (SELECT FROM aveloxis_data.contributor_merges u WHERE u.undoes = m.merge_id) THEN
        RAISE EXCEPTION 'merge % was already undone', m.merge_id USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- A later merge in force that took the winner away, or took more into the loser's
    -- winner since, has its own changes on these rows: undo it first.
    SELECT x.merge_id INTO later FROM aveloxis_data.contributor_merges_in_force x
    WHERE x.merge_id > m.merge_id AND (x.loser = m.winner OR x.winner = m.loser)
    ORDER BY x.merge_id DESC LIMIT 1;
    IF later IS NOT NULL THEN
        RAISE EXCEPTION 'merge % has to be undone before merge %', later, m.merge_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('SELECT aveloxis.unmerge(%s); then this one.', later);
    END IF;
    f := m.changes -> 'filled';
    UPDATE aveloxis_data.contributors c SET
        cntrb_email = CASE WHEN f ? 'cntrb_email' AND c.cntrb_email IS NOT DISTINCT FROM f ->> 'cntrb_email' THEN NULL ELSE c.cntrb_email END,
        cntrb_full_name = CASE WHEN f ? 'cntrb_full_name' AND c.cntrb_full_name IS NOT DISTINCT FROM f ->> 'cntrb_full_name' THEN NULL ELSE c.cntrb_full_name END,
        cntrb_company = CASE WHEN f ? 'cntrb_company' AND c.cntrb_company IS NOT DISTINCT FROM f ->> 'cntrb_company' THEN NULL ELSE c.cntrb_company END,
        cntrb_location = CASE WHEN f ? 'cntrb_location' AND c.cntrb_location IS NOT DISTINCT FROM f ->> 'cntrb_location' THEN NULL ELSE c.cntrb_location END,
        cntrb_canonical = CASE WHEN f ? 'cntrb_canonical' AND c.cntrb_canonical IS NOT DISTINCT FROM f ->> 'cntrb_canonical' THEN NULL ELSE c.cntrb_canonical END,
        gh_user_id = CASE WHEN f ? 'gh_user_id' AND c.gh_user_id::text IS NOT DISTINCT FROM f ->> 'gh_user_id' THEN NULL ELSE c.gh_user_id END,
        gh_login = CASE WHEN f ? 'gh_login' AND c.gh_login IS NOT DISTINCT FROM f ->> 'gh_login' THEN NULL ELSE c.gh_login END,
        gh_url = CASE WHEN f ? 'gh_url' AND c.gh_url IS NOT DISTINCT FROM f ->> 'gh_url' THEN NULL ELSE c.gh_url END,
        gh_html_url = CASE WHEN f ? 'gh_html_url' AND c.gh_html_url IS NOT DISTINCT FROM f ->> 'gh_html_url' THEN NULL ELSE c.gh_html_url END,
        gh_node_id = CASE WHEN f ? 'gh_node_id' AND c.gh_node_id IS NOT DISTINCT FROM f ->> 'gh_node_id' THEN NULL ELSE c.gh_node_id END,
        gh_avatar_url = CASE WHEN f ? 'gh_avatar_url' AND c.gh_avatar_url IS NOT DISTINCT FROM f ->> 'gh_avatar_url' THEN NULL ELSE c.gh_avatar_url END,
        gh_type = CASE WHEN f ? 'gh_type' AND c.gh_type IS NOT DISTINCT FROM f ->> 'gh_type' THEN NULL ELSE c.gh_type END,
        gl_id = CASE WHEN f ? 'gl_id' AND c.gl_id::text IS NOT DISTINCT FROM f ->> 'gl_id' THEN NULL ELSE c.gl_id END,
        gl_username = CASE WHEN f ? 'gl_username' AND c.gl_username IS NOT DISTINCT FROM f ->> 'gl_username' THEN NULL ELSE c.gl_username END,
        gl_web_url = CASE WHEN f ? 'gl_web_url' AND c.gl_web_url IS NOT DISTINCT FROM f ->> 'gl_web_url' THEN NULL ELSE c.gl_web_url END,
        gl_avatar_url = CASE WHEN f ? 'gl_avatar_url' AND c.gl_avatar_url IS NOT DISTINCT FROM f ->> 'gl_avatar_url' THEN NULL ELSE c.gl_avatar_url END
    WHERE c.cntrb_id = m.winner AND f <> '{}';
    UPDATE aveloxis_data.contributor_identities i SET cntrb_id = m.loser
    FROM jsonb_array_elements(m.changes -> 'identities') k
    WHERE i.platform_id = (k ->> 0)::smallint AND i.platform_user_id = (k ->> 1)::bigint;
    UPDATE aveloxis_data.contributor_login_history h SET cntrb_id = m.loser
    FROM jsonb_array_elements(m.changes -> 'history') k
    WHERE h.platform_id = (k ->> 0)::smallint AND h.platform_user_id = (k ->> 1)::bigint AND h.login = k ->> 2;
    UPDATE aveloxis_data.contributors_aliases a SET cntrb_id = m.loser
    WHERE a.alias_email IN (SELECT jsonb_array_elements_text(m.changes -> 'aliases_moved'));
    DELETE FROM aveloxis_data.contributors_aliases a
    WHERE a.alias_email IN (SELECT jsonb_array_elements_text(m.changes -> 'aliases_added')) AND a.cntrb_id = m.winner;
    UPDATE aveloxis_data.contributor_enrollments e SET cntrb_id = m.loser
    WHERE e.enrollment_id IN (SELECT (jsonb_array_elements_text(m.changes -> 'enrollments'))::bigint);
    UPDATE aveloxis_data.contributors c SET cntrb_deleted = 0 WHERE c.cntrb_id = m.loser;
    INSERT INTO aveloxis_data.contributor_merges (action, winner, loser, undoes, reason, source)
    VALUES ('unmerge', m.winner, m.loser, m.merge_id, coalesce(reason, 'undone by ' || session_user), 'admin')
    RETURNING contributor_merges.merge_id INTO id;
    RETURN id;
END
$$;

-- Pairs of active rows that may be one person, for a person to accept or reject (never
-- merged automatically): the same full name with the same email domain, or the same
-- login on a GitHub and a GitLab platform. Rejected pairs are left out.
CREATE FUNCTION aveloxis.merge_suggestions(max_rows integer DEFAULT 100)
RETURNS TABLE (cntrb_a uuid, cntrb_b uuid, reason text, login_a text, login_b text, email_a text, email_b text,
               suggested_winner uuid)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    WITH active AS (
        SELECT c.cntrb_id, c.cntrb_login, c.cntrb_email, lower(btrim(c.cntrb_full_name)) AS name,
               lower(split_part(coalesce(c.cntrb_canonical, c.cntrb_email), '@', 2)) AS domain,
               lower(c.gh_login) AS gh, lower(c.gl_username) AS gl
        FROM aveloxis_data.contributors c
        WHERE c.cntrb_deleted = 0
    ), pairs AS (
        SELECT a.cntrb_id AS x, b.cntrb_id AS y, 'same name and email domain'::text AS why
        FROM active a JOIN active b ON b.name = a.name AND b.domain = a.domain AND a.cntrb_id < b.cntrb_id
        -- A name of one word ("admin", "root") says too little.
        WHERE a.name LIKE '% %' AND a.domain <> ''
        UNION
        SELECT least(a.cntrb_id, b.cntrb_id), greatest(a.cntrb_id, b.cntrb_id), 'same login on GitHub and GitLab'
        FROM active a JOIN active b ON b.gl = a.gh AND a.cntrb_id <> b.cntrb_id
    )
    SELECT p.x, p.y, string_agg(p.why, '; ' ORDER BY p.why), a.cntrb_login, b.cntrb_login, a.cntrb_email,
           b.cntrb_email, aveloxis_ops.merge_winner(p.x, p.y)
    FROM pairs p
    JOIN aveloxis_data.contributors a ON a.cntrb_id = p.x
    JOIN aveloxis_data.contributors b ON b.cntrb_id = p.y
    WHERE NOT EXISTS (SELECT FROM aveloxis_data.contributor_merge_rejections r WHERE r.cntrb_a = p.x AND r.cntrb_b = p.y)
    GROUP BY p.x, p.y, a.cntrb_login, b.cntrb_login, a.cntrb_email, b.cntrb_email
    ORDER BY p.x, p.y
    LIMIT max_rows
$$;

-- A person accepts a suggestion: the two rows are merged (winner by R1, else the older row).
CREATE FUNCTION aveloxis.accept_merge_suggestion(cntrb_a uuid, cntrb_b uuid, note text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    winner uuid := aveloxis_ops.merge_winner(cntrb_a, cntrb_b);
    loser uuid := CASE WHEN winner = cntrb_a THEN cntrb_b ELSE cntrb_a END;
BEGIN
    IF winner IS NULL OR cntrb_a IS NOT DISTINCT FROM cntrb_b THEN
        RAISE EXCEPTION 'a suggestion names two existing contributors' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'aveloxis.merge_suggestions() lists them.';
    END IF;
    RETURN aveloxis_ops.merge_rows(winner, loser, coalesce(note, 'suggestion accepted by ' || session_user),
                                   'suggestion');
END
$$;

-- A person rejects a suggestion: the pair is not suggested again.
CREATE FUNCTION aveloxis.reject_merge_suggestion(cntrb_a uuid, cntrb_b uuid, note text DEFAULT NULL)
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    INSERT INTO aveloxis_data.contributor_merge_rejections (cntrb_a, cntrb_b, note)
    VALUES (least(cntrb_a, cntrb_b), greatest(cntrb_a, cntrb_b), note)
    ON CONFLICT (cntrb_a, cntrb_b) DO UPDATE SET note = EXCLUDED.note
$$;

-- sql/affiliation.sql
-- Time-aware affiliation (docs/identity.md, "Affiliation"): who a person worked for is a
-- set of dated enrollments (person, organization, from, to), and email domains stand for
-- organizations from a date on (contributor_affiliations, Augur's table). Both are read
-- when a question is asked, never copied into commit rows: a correction changes every
-- answer about the past without re-collecting or rewriting a commit. The commit
-- aggregates (dm_*) are recomputed for the groups a correction touches.
--
-- Precedence, for a commit authored at time t by contributor c with email e:
--   1. an enrollment of c's person (aveloxis.person_of) covering t, the latest-starting;
--   2. the most specific active domain rule of e (mail.acme.com before acme.com) in force
--      at t (ca_start_date on or before t, or none);
--   3. none (NULL; '(Unknown)' in the aggregates, as Augur's).
-- A profile's company (cntrb_company) is what the person says today, not where they
-- worked when a commit was written: it is never used for the past.

CREATE TABLE aveloxis_data.contributor_enrollments (
    enrollment_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    cntrb_id      uuid NOT NULL REFERENCES aveloxis_data.contributors,
    organization  text NOT NULL CHECK (btrim(organization) <> ''),
    -- Inclusive start, exclusive end; NULL: open.
    starts_on     date,
    ends_on       date,
    source        text NOT NULL DEFAULT 'admin',
    created_by    text NOT NULL DEFAULT current_user,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (starts_on IS NULL OR ends_on IS NULL OR starts_on < ends_on)
);
COMMENT ON TABLE aveloxis_data.contributor_enrollments IS
    'Dated affiliations of a person (aveloxis.enroll); read at query time by aveloxis.affiliation_of';
CREATE INDEX contributor_enrollments_cntrb_idx ON aveloxis_data.contributor_enrollments (cntrb_id);
SELECT pg_catalog.pg_extension_config_dump('aveloxis_data.contributor_enrollments', '');
SELECT pg_catalog.pg_extension_config_dump(
    pg_catalog.pg_get_serial_sequence('aveloxis_data.contributor_enrollments', 'enrollment_id'), '');

-- The domain rule of an email in force at a time (NULL at: any time): the most specific active domain
-- (mail.example.com, then example.com) whose start date, if any, is not after it.
CREATE FUNCTION aveloxis_ops.email_affiliation(email text, at timestamptz)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT a.ca_affiliation
    FROM aveloxis_data.contributor_affiliations a
    WHERE a.ca_active
      AND (a.ca_start_date IS NULL OR at IS NULL OR a.ca_start_date <= (at AT TIME ZONE 'UTC')::date)
      AND a.ca_domain = ANY (
          SELECT array_to_string((string_to_array(lower(split_part(email, '@', 2)), '.'))[i:], '.')
          FROM generate_series(1, cardinality(string_to_array(lower(split_part(email, '@', 2)), '.'))) i)
    ORDER BY length(a.ca_domain) DESC
    LIMIT 1;
END;

-- The domain rule of an email at a time, for analysts (aveloxis_augur_data.commits reads
-- the committer's affiliation through it).
CREATE FUNCTION aveloxis.email_affiliation(email text, at timestamptz DEFAULT NULL)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    SELECT aveloxis_ops.email_affiliation(email, at)
$$;

-- The organization of a person's enrollment covering a time (the latest-starting).
CREATE FUNCTION aveloxis_ops.enrollment_at(person uuid, at timestamptz)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT e.organization FROM aveloxis_data.contributor_enrollments e
    WHERE e.cntrb_id = person
      AND (e.starts_on IS NULL OR e.starts_on <= (at AT TIME ZONE 'UTC')::date)
      AND (e.ends_on IS NULL OR (at AT TIME ZONE 'UTC')::date < e.ends_on)
    ORDER BY e.starts_on DESC NULLS LAST, e.enrollment_id DESC
    LIMIT 1;
END;

-- The affiliation of a commit: its author's enrollment at the time, else its email's
-- domain rule at the time (what aveloxis_augur_data.commits shows as
-- cmt_author_affiliation; the committer's is the domain rule of the committer's email).
CREATE FUNCTION aveloxis.commit_affiliation(author uuid, email text, at timestamptz)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    SELECT coalesce(CASE WHEN author IS NOT NULL AND EXISTS (SELECT FROM aveloxis_data.contributor_enrollments)
                         THEN aveloxis_ops.enrollment_at(aveloxis.person_of(author), at) END,
                    CASE WHEN email LIKE '%@%' THEN aveloxis_ops.email_affiliation(email, at) END)
$$;

-- Who a contributor was affiliated with at a time: the person's enrollment then, else the
-- domain rule then of the person's canonical (or own) email. NULL when nothing says.
CREATE FUNCTION aveloxis.affiliation_of(cntrb_id uuid, at timestamptz DEFAULT now())
RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    WITH p AS (SELECT aveloxis.person_of(affiliation_of.cntrb_id) AS person)
    SELECT coalesce(aveloxis_ops.enrollment_at(p.person, at),
                    (SELECT aveloxis_ops.email_affiliation(coalesce(c.cntrb_canonical, c.cntrb_email), at)
                     FROM aveloxis_data.contributors c WHERE c.cntrb_id = p.person))
    FROM p
$$;

-- Queues the commit aggregates of a person's commits (of the years given, or all) for
-- recomputation at each repository's next drain or aveloxis.refresh_commit_aggregates().
CREATE FUNCTION aveloxis_ops.queue_person_aggregates(person uuid, from_year integer, to_year integer)
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH rows_of AS (
        SELECT r AS cntrb_id FROM aveloxis_ops.rows_of_person(person) r
    ), queued AS (
        INSERT INTO aveloxis_ops.commit_aggregate_backlog (repo_id, email, year)
        SELECT DISTINCT c.repo_id, c.cmt_author_email, extract(year FROM c.cmt_author_timestamp AT TIME ZONE 'UTC')
        FROM aveloxis_data.commits c
        WHERE c.cmt_ght_author_id IN (SELECT r.cntrb_id FROM rows_of r)
          AND c.cmt_author_timestamp IS NOT NULL AND c.cmt_author_email IS NOT NULL
          AND extract(year FROM c.cmt_author_timestamp AT TIME ZONE 'UTC') BETWEEN coalesce(from_year, 0)
                                                                              AND coalesce(to_year, 9999)
        ON CONFLICT DO NOTHING
        RETURNING 1
    )
    SELECT count(*) FROM queued
$$;

-- Records that a contributor's person worked for an organization from starts_on
-- (inclusive) to ends_on (exclusive); either may be NULL (open). Returns its id. The
-- person's commit aggregates of those years are queued for recomputation.
CREATE FUNCTION aveloxis.enroll(cntrb_id uuid, organization text, starts_on date DEFAULT NULL,
                                ends_on date DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    person uuid := aveloxis.person_of(enroll.cntrb_id);
    id bigint;
BEGIN
    IF NOT EXISTS (SELECT FROM aveloxis_data.contributors c WHERE c.cntrb_id = person) THEN
        RAISE EXCEPTION 'contributor % does not exist', enroll.cntrb_id USING ERRCODE = 'no_data_found';
    END IF;
    IF organization IS NULL OR btrim(organization) = '' THEN
        RAISE EXCEPTION 'an enrollment needs an organization' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF starts_on >= ends_on THEN
        RAISE EXCEPTION 'an enrollment ends after it starts (% is not before %)', starts_on, ends_on
            USING ERRCODE = 'invalid_parameter_value', HINT = 'ends_on is exclusive: the first day no longer there.';
    END IF;
    INSERT INTO aveloxis_data.contributor_enrollments (cntrb_id, organization, starts_on, ends_on)
    VALUES (person, btrim(organization), starts_on, ends_on)
    RETURNING enrollment_id INTO id;
    PERFORM aveloxis_ops.queue_person_aggregates(person, extract(year FROM starts_on)::integer,
                                                 extract(year FROM ends_on)::integer);
    RETURN id;
END
$$;

-- Corrects an enrollment's dates or organization (NULL keeps a value; pass
-- clear_end => true to make it open-ended again).
CREATE FUNCTION aveloxis.correct_enrollment(enrollment_id bigint, organization text DEFAULT NULL,
                                            starts_on date DEFAULT NULL, ends_on date DEFAULT NULL,
                                            clear_end boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    e aveloxis_data.contributor_enrollments;
BEGIN
    SELECT * INTO e FROM aveloxis_data.contributor_enrollments x WHERE x.enrollment_id = correct_enrollment.enrollment_id
    FOR UPDATE;
    IF e.enrollment_id IS NULL THEN
        RAISE EXCEPTION 'enrollment % does not exist', correct_enrollment.enrollment_id USING ERRCODE = 'no_data_found';
    END IF;
    UPDATE aveloxis_data.contributor_enrollments x
    SET organization = coalesce(nullif(btrim(correct_enrollment.organization), ''), x.organization),
        starts_on = coalesce(correct_enrollment.starts_on, x.starts_on),
        ends_on = CASE WHEN clear_end THEN NULL ELSE coalesce(correct_enrollment.ends_on, x.ends_on) END
    WHERE x.enrollment_id = e.enrollment_id;
    -- Every year either version covers.
    PERFORM aveloxis_ops.queue_person_aggregates(e.cntrb_id, NULL, NULL);
END
$$;

-- Removes an enrollment entered by mistake.
CREATE FUNCTION aveloxis.remove_enrollment(enrollment_id bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    person uuid;
BEGIN
    DELETE FROM aveloxis_data.contributor_enrollments x WHERE x.enrollment_id = remove_enrollment.enrollment_id
    RETURNING x.cntrb_id INTO person;
    IF person IS NULL THEN
        RAISE EXCEPTION 'enrollment % does not exist', remove_enrollment.enrollment_id USING ERRCODE = 'no_data_found';
    END IF;
    PERFORM aveloxis_ops.queue_person_aggregates(person, NULL, NULL);
END
$$;

-- A person's enrollments (through merges), oldest first.
CREATE FUNCTION aveloxis.enrollments(cntrb_id uuid)
RETURNS TABLE (enrollment_id bigint, organization text, starts_on date, ends_on date, source text,
               created_by text, created_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    SELECT e.enrollment_id, e.organization, e.starts_on, e.ends_on, e.source, e.created_by, e.created_at
    FROM aveloxis_data.contributor_enrollments e
    WHERE e.cntrb_id = aveloxis.person_of(enrollments.cntrb_id)
    ORDER BY e.starts_on NULLS FIRST, e.enrollment_id
$$;

-- Sets what an email domain stands for from a date on (or ends it: active false). Commit
-- rows are not touched: their affiliation is read through the rules; the aggregates of
-- the commits under the domain and its subdomains are queued for recomputation at each
-- repository's next drain (or aveloxis.refresh_commit_aggregates). Returns how many
-- (repository, email, year) aggregate groups were queued.
CREATE FUNCTION aveloxis.set_affiliation(domain text, affiliation text, active boolean DEFAULT true,
                                         starts_on date DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    d text := lower(btrim(set_affiliation.domain));
    queued bigint;
BEGIN
    IF d IS NULL OR d !~ '^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$' THEN
        RAISE EXCEPTION 'not an email domain: %', set_affiliation.domain USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Pass the part after the @, e.g. ''redhat.com''.';
    END IF;
    INSERT INTO aveloxis_data.contributor_affiliations AS a (ca_domain, ca_affiliation, ca_active, ca_start_date,
                                                             tool_source)
    VALUES (d, affiliation, coalesce(active, true), starts_on, 'aveloxis.set_affiliation')
    ON CONFLICT (ca_domain) DO UPDATE SET ca_affiliation = EXCLUDED.ca_affiliation, ca_active = EXCLUDED.ca_active,
                                          ca_start_date = EXCLUDED.ca_start_date,
                                          data_collection_date = EXCLUDED.data_collection_date;
    WITH q AS (
        INSERT INTO aveloxis_ops.commit_aggregate_backlog (repo_id, email, year)
        SELECT DISTINCT c.repo_id, c.cmt_author_email, extract(year FROM c.cmt_author_timestamp AT TIME ZONE 'UTC')
        FROM aveloxis_data.commits c
        WHERE (split_part(c.cmt_author_email, '@', 2) = d OR split_part(c.cmt_author_email, '@', 2) LIKE '%.' || d)
          AND c.cmt_author_timestamp IS NOT NULL
        ON CONFLICT DO NOTHING
        RETURNING 1
    )
    SELECT count(*) INTO queued FROM q;
    RETURN queued;
END
$$;

-- Recomputes a repository's queued commit aggregates now (the drain does it when it
-- finishes a repository): after affiliation corrections, for dashboards that should not
-- wait for the next collection. Returns the (email, year) groups recomputed.
CREATE FUNCTION aveloxis.refresh_commit_aggregates(repo bigint)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
BEGIN
    PERFORM aveloxis_ops.require_repo(repo);
    RETURN aveloxis_ops.refresh_commit_aggregates(repo);
END
$$;

-- sql/identity_tasks.sql
-- Fleet-wide identity work (docs/identity.md, "Enrichment and search-resolve"): the
-- convergence machinery of reference 003, Layer 3, as two queued tasks per identity
-- platform that any agent with that host's tokens may run:
--
--   enrich  thin contributors (no company and no location) fetched by account, at most
--           enrich.batch per run; every attempt stamps cntrb_last_enriched_at, found or
--           not, so enrich.cooldown holds (R6). Renames seen on the way are recorded
--           (gh_login follows, login history appended; cntrb_id and cntrb_login never
--           change).
--   search contributors with an email and no account, at most search.batch per run,
--           through the shared email chain (aveloxis.email_chain's free steps here, then the
--           agent's user search and commit search on the search budget); a hit links the
--           account (R11) or, when another row holds it, merges the two (R3, logged and
--           reversible: sql/merges.sql). Every attempt stamps cntrb_last_search_attempted_at.
--
-- A run is leased like a job: claim_identity_batch hands out contributors with a lease
-- token; the agent stages what the forge answered, raw, with stage_identity; and
-- complete_identity_batch applies it in one transaction. A lease that expires is applied
-- as far as it was staged, and its unstaged contributors are free again at once.

INSERT INTO aveloxis_ops.setting_defaults (name, default_value, kind, description) VALUES
    ('enrich.batch', '1000', 'integer', 'Most thin contributors one enrichment run fetches'),
    ('enrich.cooldown', '30 days', 'interval',
     'How long after an enrichment attempt (found or not) a contributor is not fetched again (R6)'),
    ('enrich.every', '30 minutes', 'interval', 'Least time between the starts of two enrichment runs of one platform'),
    ('search.batch', '100', 'integer', 'Most email-only contributors one search-resolve run looks up'),
    ('search.cooldown', '30 days', 'interval',
     'How long after a search-resolve attempt (found or not) a contributor is not searched again'),
    ('search.every', '1 hour', 'interval', 'Least time between the starts of two search-resolve runs of one platform'),
    ('identity.lease', '30 minutes', 'interval', 'How long an enrichment or search-resolve run holds its contributors');

CREATE TABLE aveloxis_ops.identity_runs (
    run_id             bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    task               text NOT NULL CHECK (task IN ('enrich', 'search')),
    platform_id        smallint NOT NULL REFERENCES aveloxis_data.platforms,
    agent              text NOT NULL,
    -- sha256 of the lease token: the token itself is never stored.
    lease_token_digest bytea NOT NULL UNIQUE,
    started_at         timestamptz NOT NULL,
    lease_expires_at   timestamptz NOT NULL,
    finished_at        timestamptz,
    outcome            text CHECK (outcome IN ('complete', 'lease_expired')),
    -- The batch handed out.
    contributors       uuid[] NOT NULL,
    result             jsonb
);
COMMENT ON TABLE aveloxis_ops.identity_runs IS 'Enrichment and search-resolve runs: the batch each leased and what it did';
CREATE INDEX identity_runs_open_idx ON aveloxis_ops.identity_runs (task, platform_id) WHERE finished_at IS NULL;
CREATE INDEX identity_runs_started_idx ON aveloxis_ops.identity_runs (task, platform_id, started_at);

CREATE TABLE aveloxis_ops.identity_staging (
    run_id      bigint NOT NULL REFERENCES aveloxis_ops.identity_runs ON DELETE CASCADE,
    item        integer NOT NULL,
    cntrb_id    uuid NOT NULL,
    -- profile: GET /users/{login} (GitHub) or /users/:id (GitLab); user_search and
    -- commit_search: GitHub's search answers for the contributor's email.
    step        text NOT NULL CHECK (step IN ('profile', 'user_search', 'commit_search')),
    http_status integer NOT NULL,
    payload     text COMPRESSION lz4,
    staged_at   timestamptz NOT NULL DEFAULT now(),
    applied_at  timestamptz,
    -- Why a staged answer could not be used (kept with the answer).
    error       text,
    PRIMARY KEY (run_id, item)
);
COMMENT ON TABLE aveloxis_ops.identity_staging IS 'Raw forge answers of identity runs, applied by complete_identity_batch';

-- Thin contributors wait for enrichment by when they were last attempted.
CREATE INDEX contributors_thin_idx ON aveloxis_data.contributors (cntrb_last_enriched_at NULLS FIRST, cntrb_id)
    WHERE cntrb_company IS NULL AND cntrb_location IS NULL AND cntrb_deleted = 0;
-- Email-only contributors wait for search-resolve by when they were last attempted.
CREATE INDEX contributors_email_only_idx ON aveloxis_data.contributors (cntrb_last_search_attempted_at NULLS FIRST, cntrb_id)
    WHERE cntrb_email IS NOT NULL AND gh_user_id IS NULL AND gl_id IS NULL AND cntrb_deleted = 0;

SELECT pg_catalog.pg_extension_config_dump('aveloxis_ops.identity_runs', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('aveloxis_ops.identity_runs', 'run_id'), '');
SELECT pg_catalog.pg_extension_config_dump('aveloxis_ops.identity_staging', '');

-- The contributors a task would hand out on a platform now, in claim order (what the
-- claim leases and queue_health counts).
CREATE FUNCTION aveloxis_ops.identity_candidates(task text, platform smallint, at timestamptz)
RETURNS TABLE (cntrb_id uuid, platform_user_id bigint, login text, email text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    cooldown interval := aveloxis_ops.setting(task || '.cooldown')::interval;
BEGIN
    IF task = 'enrich' THEN
        RETURN QUERY
        SELECT c.cntrb_id, i.platform_user_id, i.login, c.cntrb_email
        FROM aveloxis_data.contributors c
        CROSS JOIN LATERAL (SELECT x.platform_user_id, x.login FROM aveloxis_data.contributor_identities x
                            WHERE x.cntrb_id = c.cntrb_id AND x.platform_id = platform
                            ORDER BY x.last_seen_at DESC, x.platform_user_id LIMIT 1) i
        WHERE c.cntrb_company IS NULL AND c.cntrb_location IS NULL AND c.cntrb_deleted = 0
          AND (c.cntrb_last_enriched_at IS NULL OR c.cntrb_last_enriched_at <= at - cooldown)
          AND NOT EXISTS (SELECT FROM aveloxis_ops.identity_runs r
                          WHERE r.task = 'enrich' AND r.finished_at IS NULL AND c.cntrb_id = ANY (r.contributors))
        ORDER BY c.cntrb_last_enriched_at NULLS FIRST, c.cntrb_id;
    ELSE
        -- Search-resolve asks GitHub: GitLab's search by email is for administrators only.
        RETURN QUERY
        SELECT c.cntrb_id, NULL::bigint, NULL::text, c.cntrb_email
        FROM aveloxis_data.contributors c
        WHERE (SELECT p.platform_kind FROM aveloxis_data.platforms p WHERE p.platform_id = platform) = 1
          AND c.cntrb_email IS NOT NULL AND c.gh_user_id IS NULL AND c.gl_id IS NULL AND c.cntrb_deleted = 0
          AND (c.cntrb_last_search_attempted_at IS NULL OR c.cntrb_last_search_attempted_at <= at - cooldown)
          AND aveloxis_ops.junk_email_reason(c.cntrb_email) IS NULL
          AND NOT EXISTS (SELECT FROM aveloxis_data.contributor_identities i WHERE i.cntrb_id = c.cntrb_id)
          AND NOT EXISTS (SELECT FROM aveloxis_ops.identity_runs r
                          WHERE r.task = 'search' AND r.finished_at IS NULL AND c.cntrb_id = ANY (r.contributors))
        ORDER BY c.cntrb_last_search_attempted_at NULLS FIRST, c.cntrb_id;
    END IF;
END
$$;

CREATE FUNCTION aveloxis_ops.check_identity_task(task text, platform smallint)
RETURNS smallint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    kind smallint;
BEGIN
    IF task IS NULL OR task NOT IN ('enrich', 'search') THEN
        RAISE EXCEPTION 'unknown identity task "%"', task USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Tasks are enrich and search.';
    END IF;
    SELECT p.platform_kind INTO kind FROM aveloxis_data.platforms p WHERE p.platform_id = platform;
    IF kind IS NULL OR kind NOT IN (1, 2) THEN
        RAISE EXCEPTION 'platform % is not a forge''s identity platform', platform USING ERRCODE = 'invalid_parameter_value',
            HINT = 'aveloxis_data.platforms lists them: 1 github.com, 2 gitlab.com, 16 and up declared hosts.';
    END IF;
    RETURN kind;
END
$$;

-- Ends identity runs whose lease expired: what they staged is applied, the contributors
-- they did not report on are free again (not stamped: nobody tried them).
CREATE FUNCTION aveloxis_ops.expire_identity_runs(at timestamptz)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    run aveloxis_ops.identity_runs;
    n bigint := 0;
BEGIN
    FOR run IN SELECT * FROM aveloxis_ops.identity_runs r
               WHERE r.finished_at IS NULL AND r.lease_expires_at <= at
               ORDER BY r.run_id FOR UPDATE SKIP LOCKED LOOP
        PERFORM aveloxis_ops.identity_apply(run, NULL, 'lease_expired');
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;

-- Leases a batch of one task's due contributors on one identity platform to an agent:
-- one row per contributor, each carrying the run's lease token. For enrich: the account
-- (id and login) to fetch. For search: the email and its chain step ('noreply' and
-- 'database' are settled by the database at completion; only 'unknown' needs the API).
-- No rows: nothing is due (or the task's 'every' setting paces it).
CREATE FUNCTION aveloxis.claim_identity_batch(agent text, task text, platform smallint DEFAULT 1,
                                              max_contributors integer DEFAULT NULL, lease interval DEFAULT NULL)
RETURNS TABLE (lease_token uuid, cntrb_id uuid, platform_user_id bigint, login text, email text, chain_step text)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    at timestamptz := aveloxis_ops.clock();
    token uuid := gen_random_uuid();
    n integer;
    run bigint;
    batch uuid[];
BEGIN
    IF agent IS NULL OR btrim(agent) = '' THEN
        RAISE EXCEPTION 'claim_identity_batch needs an agent name' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM aveloxis_ops.check_identity_task(task, platform);
    n := coalesce(max_contributors, aveloxis_ops.setting(task || '.batch')::integer);
    lease := coalesce(lease, aveloxis_ops.setting('identity.lease')::interval);
    IF n < 1 OR lease <= '0'::interval THEN
        RAISE EXCEPTION 'claim_identity_batch needs max_contributors >= 1 and a positive lease'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- One claimer of a task and platform at a time: batches never overlap.
    PERFORM pg_advisory_xact_lock(hashtextextended('aveloxis.identity:' || task, platform));
    PERFORM aveloxis_ops.expire_identity_runs(at);
    IF EXISTS (SELECT FROM aveloxis_ops.identity_runs r
               WHERE r.task = claim_identity_batch.task AND r.platform_id = platform
                 AND r.started_at > at - aveloxis_ops.setting(task || '.every')::interval) THEN
        RETURN;
    END IF;
    SELECT array_agg(c.cntrb_id) INTO batch
    FROM (SELECT c.cntrb_id FROM aveloxis_ops.identity_candidates(task, platform, at) c LIMIT n) c;
    IF batch IS NULL THEN
        RETURN;
    END IF;
    INSERT INTO aveloxis_ops.identity_runs (task, platform_id, agent, lease_token_digest, started_at,
                                            lease_expires_at, contributors)
    VALUES (task, platform, agent, aveloxis_ops.token_digest(token), at, at + lease, batch)
    RETURNING run_id INTO run;
    IF task = 'enrich' THEN
        RETURN QUERY
        SELECT token, c.cntrb_id, i.platform_user_id, i.login, NULL::text, NULL::text
        FROM unnest(batch) WITH ORDINALITY AS c(cntrb_id, k)
        CROSS JOIN LATERAL (SELECT x.platform_user_id, x.login FROM aveloxis_data.contributor_identities x
                            WHERE x.cntrb_id = c.cntrb_id AND x.platform_id = platform
                            ORDER BY x.last_seen_at DESC, x.platform_user_id LIMIT 1) i
        ORDER BY c.k;
    ELSE
        RETURN QUERY
        SELECT token, c.cntrb_id, NULL::bigint, NULL::text, k.cntrb_email, e.step
        FROM unnest(batch) WITH ORDINALITY AS c(cntrb_id, n)
        JOIN aveloxis_data.contributors k ON k.cntrb_id = c.cntrb_id
        CROSS JOIN LATERAL aveloxis_ops.search_chain_step(c.cntrb_id, k.cntrb_email) e
        ORDER BY c.n;
    END IF;
END
$$;

-- Stages what the forge answered for contributors of the run the token proves: one row
-- per answer (a 404 has no payload). Only the run's own contributors are accepted.
CREATE FUNCTION aveloxis.stage_identity(lease_token uuid, cntrb_ids uuid[], steps text[], http_statuses integer[],
                                        payloads text[])
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    run aveloxis_ops.identity_runs;
    staged bigint;
BEGIN
    run := aveloxis_ops.held_identity_run(lease_token);
    IF cntrb_ids IS NULL OR cardinality(cntrb_ids) IS DISTINCT FROM cardinality(steps)
       OR cardinality(cntrb_ids) IS DISTINCT FROM cardinality(http_statuses)
       OR cardinality(cntrb_ids) IS DISTINCT FROM cardinality(payloads) THEN
        RAISE EXCEPTION 'stage_identity takes four arrays of one length (contributor, step, status, payload)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT FROM unnest(cntrb_ids) c WHERE c IS NULL OR NOT c = ANY (run.contributors)) THEN
        RAISE EXCEPTION 'a contributor staged is not in this run''s batch'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Stage only the contributors the claim handed out.';
    END IF;
    IF EXISTS (SELECT FROM unnest(steps) s WHERE s IS NULL OR s NOT IN ('profile', 'user_search', 'commit_search'))
       OR (run.task = 'enrich' AND EXISTS (SELECT FROM unnest(steps) s WHERE s <> 'profile'))
       OR (run.task = 'search' AND EXISTS (SELECT FROM unnest(steps) s WHERE s = 'profile')) THEN
        RAISE EXCEPTION 'an % run stages %', run.task,
            CASE run.task WHEN 'enrich' THEN 'profile answers' ELSE 'user_search and commit_search answers' END
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT FROM unnest(http_statuses) s WHERE s IS NULL OR s NOT BETWEEN 100 AND 599) THEN
        RAISE EXCEPTION 'HTTP statuses are 100 to 599' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO aveloxis_ops.identity_staging (run_id, item, cntrb_id, step, http_status, payload)
    SELECT run.run_id, coalesce((SELECT max(s.item) FROM aveloxis_ops.identity_staging s WHERE s.run_id = run.run_id), 0) + x.k,
           x.c, x.s, x.h, x.p
    FROM unnest(cntrb_ids, steps, http_statuses, payloads) WITH ORDINALITY AS x(c, s, h, p, k);
    GET DIAGNOSTICS staged = ROW_COUNT;
    RETURN staged;
END
$$;

-- The open run a lease token proves, locked; a clear error otherwise.
CREATE FUNCTION aveloxis_ops.held_identity_run(lease_token uuid)
RETURNS aveloxis_ops.identity_runs
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    run aveloxis_ops.identity_runs;
BEGIN
    SELECT * INTO run FROM aveloxis_ops.identity_runs r
    WHERE r.lease_token_digest = aveloxis_ops.token_digest(lease_token)
    FOR UPDATE;
    IF run.run_id IS NULL THEN
        RAISE EXCEPTION 'no identity run holds this lease token' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Use the lease_token aveloxis.claim_identity_batch() returned.';
    END IF;
    IF run.finished_at IS NOT NULL OR run.lease_expires_at <= aveloxis_ops.clock() THEN
        RAISE EXCEPTION 'identity run % is over (its lease %)', run.run_id,
            CASE WHEN run.finished_at IS NOT NULL THEN 'was completed or expired' ELSE 'expired' END
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'What was staged before the lease ended is applied; claim a new batch.';
    END IF;
    RETURN run;
END
$$;

-- Ends the run the token proves: applies what was staged, stamps the cooldown of the
-- contributors attempted (the agent names them: those it did not reach, when its budget
-- ran out, stay due), and returns what the run did.
CREATE FUNCTION aveloxis.complete_identity_batch(lease_token uuid, attempted uuid[] DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    run aveloxis_ops.identity_runs := aveloxis_ops.held_identity_run(lease_token);
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('aveloxis.identity:' || run.task, run.platform_id));
    RETURN aveloxis_ops.identity_apply(run, attempted, 'complete');
END
$$;

-- Per identity task and platform: what waits and what ran (queue_health shows the same).
CREATE FUNCTION aveloxis.identity_health()
RETURNS TABLE (task text, platform_id smallint, due bigint, leased bigint, cooling_down bigint,
               oldest_due_age interval, runs_last_day bigint, expired_last_day bigint, last_result jsonb)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    WITH at AS MATERIALIZED (SELECT aveloxis_ops.clock() AS now)
    SELECT t.task, p.platform_id,
           (SELECT count(*) FROM aveloxis_ops.identity_candidates(t.task, p.platform_id, at.now)),
           (SELECT coalesce(sum(cardinality(r.contributors)), 0) FROM aveloxis_ops.identity_runs r
            WHERE r.task = t.task AND r.platform_id = p.platform_id AND r.finished_at IS NULL),
           CASE t.task
               WHEN 'enrich' THEN (SELECT count(*) FROM aveloxis_data.contributors c
                                   WHERE c.cntrb_company IS NULL AND c.cntrb_location IS NULL AND c.cntrb_deleted = 0
                                     AND c.cntrb_last_enriched_at > at.now - aveloxis_ops.setting('enrich.cooldown')::interval
                                     AND EXISTS (SELECT FROM aveloxis_data.contributor_identities i
                                                 WHERE i.cntrb_id = c.cntrb_id AND i.platform_id = p.platform_id))
               ELSE (SELECT count(*) FROM aveloxis_data.contributors c
                     WHERE p.platform_kind = 1 AND c.cntrb_email IS NOT NULL AND c.gh_user_id IS NULL
                       AND c.gl_id IS NULL AND c.cntrb_deleted = 0
                       AND c.cntrb_last_search_attempted_at > at.now - aveloxis_ops.setting('search.cooldown')::interval)
           END,
           (SELECT at.now - min(coalesce(c.cntrb_last_enriched_at + aveloxis_ops.setting('enrich.cooldown')::interval,
                                         c.data_collection_date))
            FROM aveloxis_ops.identity_candidates(t.task, p.platform_id, at.now) x
            JOIN aveloxis_data.contributors c ON c.cntrb_id = x.cntrb_id WHERE t.task = 'enrich'),
           (SELECT count(*) FROM aveloxis_ops.identity_runs r
            WHERE r.task = t.task AND r.platform_id = p.platform_id AND r.started_at > at.now - interval '1 day'),
           (SELECT count(*) FROM aveloxis_ops.identity_runs r
            WHERE r.task = t.task AND r.platform_id = p.platform_id AND r.outcome = 'lease_expired'
              AND r.finished_at > at.now - interval '1 day'),
           (SELECT r.result FROM aveloxis_ops.identity_runs r
            WHERE r.task = t.task AND r.platform_id = p.platform_id AND r.finished_at IS NOT NULL
            ORDER BY r.run_id DESC LIMIT 1)
    FROM (VALUES ('enrich'), ('search')) AS t(task)
    CROSS JOIN aveloxis_data.platforms p
    CROSS JOIN at
    WHERE p.platform_kind IN (1, 2) AND (t.task = 'enrich' OR p.platform_kind = 1)
      AND (p.platform_id IN (1, 2) OR EXISTS (SELECT FROM aveloxis_data.contributor_identities i
                                             WHERE i.platform_id = p.platform_id))
    ORDER BY t.task, p.platform_id
$$;

-- Why a contributor is or is not enriched and searched: one row per task, in words.
CREATE FUNCTION aveloxis.why_not_enriched(cntrb_id uuid)
RETURNS TABLE (task text, status text, reason text, next_possible_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    c aveloxis_data.contributors;
    at timestamptz := aveloxis_ops.clock();
    run aveloxis_ops.identity_runs;
    person uuid;
BEGIN
    SELECT * INTO c FROM aveloxis_data.contributors x WHERE x.cntrb_id = why_not_enriched.cntrb_id;
    IF c.cntrb_id IS NULL THEN
        RAISE EXCEPTION 'contributor % does not exist', why_not_enriched.cntrb_id USING ERRCODE = 'no_data_found';
    END IF;
    IF c.cntrb_deleted = 1 THEN
        person := aveloxis.person_of(c.cntrb_id);
        RETURN QUERY SELECT t, 'merged', format('merged into %s: that row is enriched and searched', person),
                            NULL::timestamptz
                     FROM unnest(ARRAY['enrich', 'search']) t;
        RETURN;
    END IF;
    SELECT * INTO run FROM aveloxis_ops.identity_runs r
    WHERE r.task = 'enrich' AND r.finished_at IS NULL AND c.cntrb_id = ANY (r.contributors) LIMIT 1;
    RETURN QUERY SELECT 'enrich'::text,
        CASE WHEN run.run_id IS NOT NULL THEN 'leased'
             WHEN c.cntrb_company IS NOT NULL OR c.cntrb_location IS NOT NULL THEN 'not needed'
             WHEN NOT EXISTS (SELECT FROM aveloxis_data.contributor_identities i WHERE i.cntrb_id = c.cntrb_id) THEN 'not possible'
             WHEN c.cntrb_last_enriched_at > at - aveloxis_ops.setting('enrich.cooldown')::interval THEN 'cooling down'
             ELSE 'due' END,
        CASE WHEN run.run_id IS NOT NULL THEN format('in enrichment run %s of %s, lease ends %s', run.run_id, run.agent, run.lease_expires_at)
             WHEN c.cntrb_company IS NOT NULL OR c.cntrb_location IS NOT NULL THEN 'has a company or a location (not thin)'
             WHEN NOT EXISTS (SELECT FROM aveloxis_data.contributor_identities i WHERE i.cntrb_id = c.cntrb_id)
                 THEN 'no forge account known: search-resolve may find one'
             WHEN c.cntrb_last_enriched_at > at - aveloxis_ops.setting('enrich.cooldown')::interval
                 THEN format('attempted %s; enrich.cooldown is %s', c.cntrb_last_enriched_at, aveloxis_ops.setting('enrich.cooldown'))
             ELSE 'waiting for an agent with this forge''s tokens to claim an enrichment batch' END,
        CASE WHEN run.run_id IS NOT NULL THEN run.lease_expires_at
             WHEN c.cntrb_last_enriched_at IS NOT NULL
                 THEN greatest(at, c.cntrb_last_enriched_at + aveloxis_ops.setting('enrich.cooldown')::interval) END;
    run := NULL;
    SELECT * INTO run FROM aveloxis_ops.identity_runs r
    WHERE r.task = 'search' AND r.finished_at IS NULL AND c.cntrb_id = ANY (r.contributors) LIMIT 1;
    RETURN QUERY SELECT 'search'::text,
        CASE WHEN run.run_id IS NOT NULL THEN 'leased'
             WHEN c.gh_user_id IS NOT NULL OR c.gl_id IS NOT NULL
                  OR EXISTS (SELECT FROM aveloxis_data.contributor_identities i WHERE i.cntrb_id = c.cntrb_id) THEN 'not needed'
             WHEN c.cntrb_email IS NULL OR aveloxis_ops.junk_email_reason(c.cntrb_email) IS NOT NULL THEN 'not possible'
             WHEN c.cntrb_last_search_attempted_at > at - aveloxis_ops.setting('search.cooldown')::interval THEN 'cooling down'
             ELSE 'due' END,
        CASE WHEN run.run_id IS NOT NULL THEN format('in search-resolve run %s of %s, lease ends %s', run.run_id, run.agent, run.lease_expires_at)
             WHEN c.gh_user_id IS NOT NULL OR c.gl_id IS NOT NULL
                  OR EXISTS (SELECT FROM aveloxis_data.contributor_identities i WHERE i.cntrb_id = c.cntrb_id)
                 THEN 'has a forge account'
             WHEN c.cntrb_email IS NULL THEN 'no email to search for'
             WHEN aveloxis_ops.junk_email_reason(c.cntrb_email) IS NOT NULL
                 THEN 'the email is ' || aveloxis_ops.junk_email_reason(c.cntrb_email)
             WHEN c.cntrb_last_search_attempted_at > at - aveloxis_ops.setting('search.cooldown')::interval
                 THEN format('attempted %s; search.cooldown is %s', c.cntrb_last_search_attempted_at, aveloxis_ops.setting('search.cooldown'))
             ELSE 'waiting for an agent with GitHub tokens to claim a search-resolve batch' END,
        CASE WHEN run.run_id IS NOT NULL THEN run.lease_expires_at
             WHEN c.cntrb_last_search_attempted_at IS NOT NULL
                 THEN greatest(at, c.cntrb_last_search_attempted_at + aveloxis_ops.setting('search.cooldown')::interval) END;
END
$$;

-- The identity platforms identity runs can serve (an agent runs those whose host it has
-- tokens for): github.com, gitlab.com and every declared forge host.
CREATE FUNCTION aveloxis.identity_platforms()
RETURNS TABLE (platform_id smallint, platform_kind smallint, platform_host text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    SELECT p.platform_id, p.platform_kind, p.platform_host FROM aveloxis_data.platforms p
    WHERE p.platform_kind IN (1, 2) AND p.platform_host IS NOT NULL
    ORDER BY p.platform_id
$$;

-- sql/identity_apply.sql
-- What an identity run's answers do (sql/identity_tasks.sql leases the runs): profiles
-- through the drain's user resolution, search findings linked or merged, the chain's free
-- steps settled without the API, cooldowns stamped, canonical emails filled.

-- The free steps of the email chain for a search candidate: 'noreply' (the address names
-- an account), 'database' (another person's row has this email: the same person, R5),
-- else 'unknown'.
CREATE FUNCTION aveloxis_ops.search_chain_step(candidate uuid, email text,
                                               OUT step text, OUT other uuid, OUT platform_id smallint,
                                               OUT user_id bigint, OUT login text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    address text := lower(btrim(email));
    n record;
BEGIN
    SELECT * INTO n FROM aveloxis_ops.noreply_account(address);
    IF FOUND THEN
        step := 'noreply';
        platform_id := n.platform_id;
        user_id := n.user_id;
        login := n.login;
        RETURN;
    END IF;
    SELECT x.cntrb_id INTO other FROM (
        SELECT c.cntrb_id, c.gh_user_id IS NULL AND c.gl_id IS NULL AS email_only, c.data_collection_date
        FROM aveloxis_data.contributors c
        WHERE c.cntrb_deleted = 0 AND c.cntrb_id <> candidate
          AND (lower(c.cntrb_email) = address OR lower(c.cntrb_canonical) = address)
        UNION ALL
        SELECT c.cntrb_id, c.gh_user_id IS NULL AND c.gl_id IS NULL, c.data_collection_date
        FROM aveloxis_data.contributors_aliases a JOIN aveloxis_data.contributors c ON c.cntrb_id = a.cntrb_id
        WHERE lower(a.alias_email) = address AND c.cntrb_id <> candidate
    ) x
    WHERE aveloxis.person_of(x.cntrb_id) <> aveloxis.person_of(candidate)
    ORDER BY x.email_only, x.data_collection_date, x.cntrb_id
    LIMIT 1;
    step := CASE WHEN other IS NOT NULL THEN 'database' ELSE 'unknown' END;
END
$$;

-- Applies a run: the staged answers, then the cooldown stamps of the contributors
-- attempted (NULL: those with staged answers, and for search those the database settles),
-- and closes the run. Returns what it did.
CREATE FUNCTION aveloxis_ops.identity_apply(run aveloxis_ops.identity_runs, attempted uuid[], outcome text)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    summary jsonb;
    tried uuid[];
BEGIN
    IF run.task = 'enrich' THEN
        summary := aveloxis_ops.apply_profiles(run);
    ELSE
        summary := aveloxis_ops.apply_searches(run);
    END IF;
    tried := ARRAY(SELECT DISTINCT c
                   FROM unnest(coalesce(attempted, '{}')
                               || ARRAY(SELECT s::uuid FROM jsonb_array_elements_text(summary -> 'settled') s)) c
                   WHERE c = ANY (run.contributors));
    IF run.task = 'enrich' THEN
        UPDATE aveloxis_data.contributors c SET cntrb_last_enriched_at = now() WHERE c.cntrb_id = ANY (tried);
    ELSE
        UPDATE aveloxis_data.contributors c SET cntrb_last_search_attempted_at = now() WHERE c.cntrb_id = ANY (tried);
    END IF;
    PERFORM aveloxis_ops.fill_canonical(ARRAY(SELECT DISTINCT aveloxis.person_of(c) FROM unnest(tried) c));
    summary := (summary - 'settled') || jsonb_build_object('batch', cardinality(run.contributors),
                                                         'attempted', cardinality(tried));
    UPDATE aveloxis_ops.identity_runs r SET finished_at = aveloxis_ops.clock(), outcome = identity_apply.outcome,
                                            result = summary
    WHERE r.run_id = run.run_id;
    RETURN summary;
END
$$;

-- The canonical email of active rows that have none (reference 003, "Why is
-- cntrb_canonical empty?"): the row's own email when it is a person's address (not a
-- noreply, bot or service one), else its first alias that is. Returns the rows filled.
CREATE FUNCTION aveloxis_ops.fill_canonical(ids uuid[])
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH filled AS (
        UPDATE aveloxis_data.contributors c
        SET cntrb_canonical = coalesce(
                CASE WHEN aveloxis_ops.junk_email_reason(c.cntrb_email) IS NULL
                          AND NOT EXISTS (SELECT FROM aveloxis_ops.noreply_account(c.cntrb_email))
                     THEN lower(btrim(c.cntrb_email)) END,
                (SELECT min(lower(a.alias_email)) FROM aveloxis_data.contributors_aliases a
                 WHERE a.cntrb_id = c.cntrb_id AND aveloxis_ops.junk_email_reason(a.alias_email) IS NULL
                   AND NOT EXISTS (SELECT FROM aveloxis_ops.noreply_account(a.alias_email))))
        WHERE c.cntrb_id = ANY (ids) AND c.cntrb_canonical IS NULL AND c.cntrb_deleted = 0
          AND (c.cntrb_email IS NOT NULL
               OR EXISTS (SELECT FROM aveloxis_data.contributors_aliases a WHERE a.cntrb_id = c.cntrb_id))
        RETURNING 1
    )
    SELECT count(*) FROM filled
$$;

-- Enrichment answers: a 200 whose account is the one leased goes through the drain's user
-- resolution (collect_users, resolve_users: R1-R4, renames); a 404 is a miss; anything
-- else unusable is kept with its error. Every contributor with an answer counts as tried.
CREATE FUNCTION aveloxis_ops.apply_profiles(run aveloxis_ops.identity_runs)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s record;
    doc jsonb;
    problem text;
    expected bigint;
    profiles bigint := 0;
    missing bigint := 0;
    unusable bigint := 0;
    renamed bigint;
    resolved record;
    before jsonb;
BEGIN
    PERFORM aveloxis_ops.drain_scratch();
    DELETE FROM pg_temp.drain_user_refs;
    DELETE FROM pg_temp.drain_users;
    FOR s IN SELECT * FROM aveloxis_ops.identity_staging x WHERE x.run_id = run.run_id AND x.applied_at IS NULL
             ORDER BY x.item LOOP
        problem := NULL;
        doc := NULL;
        SELECT i.platform_user_id INTO expected FROM aveloxis_data.contributor_identities i
        WHERE i.cntrb_id = s.cntrb_id AND i.platform_id = run.platform_id
        ORDER BY i.last_seen_at DESC, i.platform_user_id LIMIT 1;
        IF s.http_status = 200 THEN
            BEGIN
                doc := s.payload::jsonb;
            EXCEPTION WHEN OTHERS THEN
                problem := 'the answer is not JSON: ' || SQLERRM;
            END;
            IF problem IS NULL AND aveloxis_ops.user_id_of(doc) IS NULL THEN
                problem := 'the answer is not a user object with a numeric id';
            ELSIF problem IS NULL AND aveloxis_ops.user_id_of(doc) IS DISTINCT FROM expected THEN
                problem := format('the answer is account %s, not the leased account %s', aveloxis_ops.user_id_of(doc), expected);
            END IF;
        ELSIF s.http_status IN (404, 410) THEN
            missing := missing + 1;
        ELSE
            problem := format('HTTP %s', s.http_status);
        END IF;
        IF problem IS NOT NULL THEN
            unusable := unusable + 1;
        ELSIF doc IS NOT NULL THEN
            INSERT INTO pg_temp.drain_user_refs (platform_id, staging_id, u) VALUES (run.platform_id, s.item, doc);
            profiles := profiles + 1;
        END IF;
        UPDATE aveloxis_ops.identity_staging x SET applied_at = now(), error = problem
        WHERE x.run_id = s.run_id AND x.item = s.item;
    END LOOP;
    -- Logins before, to count renames.
    SELECT coalesce(jsonb_object_agg(i.platform_user_id::text, i.login), '{}') INTO before
    FROM aveloxis_data.contributor_identities i
    WHERE i.platform_id = run.platform_id
      AND i.platform_user_id IN (SELECT aveloxis_ops.user_id_of(r.u) FROM pg_temp.drain_user_refs r);
    PERFORM aveloxis_ops.collect_users();
    resolved := aveloxis_ops.resolve_users();
    SELECT count(*) INTO renamed FROM pg_temp.drain_users d
    WHERE before ? d.user_id::text AND (before ->> d.user_id::text) IS DISTINCT FROM d.login;
    RETURN jsonb_build_object(
        'profiles', profiles, 'not_found', missing, 'unusable', unusable, 'renamed', renamed,
        'contributors_updated', resolved.updated,
        'settled', (SELECT coalesce(array_agg(DISTINCT x.cntrb_id), '{}') FROM aveloxis_ops.identity_staging x
                    WHERE x.run_id = run.run_id));
END
$$;

-- Settles one search-resolve finding: the account (platform, user id, login) is the
-- candidate's. Unknown account: linked to the candidate (R11: cntrb_id and cntrb_login
-- untouched). Held by another person's row: the two are merged (winner by R1, else the
-- older row), logged with why. Returns 'linked', 'merged' or 'already'.
CREATE FUNCTION aveloxis_ops.settle_search_hit(candidate uuid, platform smallint, user_id bigint, login text,
                                               why text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    me uuid := aveloxis.person_of(candidate);
    holder uuid;
    winner uuid;
BEGIN
    IF user_id IS NULL THEN
        SELECT i.cntrb_id INTO holder FROM aveloxis_data.contributor_identities i
        WHERE i.platform_id = platform AND lower(i.login) = lower(settle_search_hit.login);
        IF holder IS NULL THEN
            RETURN 'unknown';
        END IF;
    ELSE
        SELECT i.cntrb_id INTO holder FROM aveloxis_data.contributor_identities i
        WHERE i.platform_id = platform AND i.platform_user_id = user_id;
    END IF;
    IF holder IS NULL THEN
        PERFORM aveloxis.link_contributor(me, platform, user_id, login);
        RETURN 'linked';
    END IF;
    holder := aveloxis.person_of(holder);
    IF holder = me THEN
        RETURN 'already';
    END IF;
    winner := aveloxis_ops.merge_winner(holder, me);
    PERFORM aveloxis_ops.merge_rows(winner, CASE WHEN winner = holder THEN me ELSE holder END, why, 'search_resolve');
    RETURN 'merged';
END
$$;

-- Search-resolve answers and the chain's free steps, per contributor of the batch: the
-- noreply account or the other row the database knows (settled without the API), else
-- the first staged search answer naming an account (user search before commit search).
CREATE FUNCTION aveloxis_ops.apply_searches(run aveloxis_ops.identity_runs)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c record;
    s record;
    chain record;
    doc jsonb;
    account jsonb;
    outcome text;
    counts jsonb := '{"linked": 0, "merged": 0, "already": 0, "not_found": 0, "unusable": 0}';
    settled uuid[] := '{}';
    github smallint := run.platform_id;
    me uuid;
    them uuid;
    winner uuid;
BEGIN
    FOR c IN SELECT k.cntrb_id, k.cntrb_email, k.cntrb_deleted
             FROM unnest(run.contributors) AS b(id) JOIN aveloxis_data.contributors k ON k.cntrb_id = b.id LOOP
        outcome := NULL;
        chain := aveloxis_ops.search_chain_step(c.cntrb_id, c.cntrb_email);
        IF chain.step = 'noreply' THEN
            outcome := aveloxis_ops.settle_search_hit(c.cntrb_id, chain.platform_id, chain.user_id, chain.login,
                                                      format('search-resolve: %s is a noreply address of %s', c.cntrb_email, chain.login));
            outcome := CASE WHEN outcome = 'unknown' THEN 'not_found' ELSE outcome END;
            settled := settled || c.cntrb_id;
        ELSIF chain.step = 'database' THEN
            them := aveloxis.person_of(chain.other);
            me := aveloxis.person_of(c.cntrb_id);
            winner := aveloxis_ops.merge_winner(them, me);
            PERFORM aveloxis_ops.merge_rows(winner, CASE WHEN winner = them THEN me ELSE them END,
                                            format('search-resolve: %s is also the email of %s', c.cntrb_email, chain.other),
                                            'search_resolve');
            outcome := 'merged';
            settled := settled || c.cntrb_id;
        ELSE
            FOR s IN SELECT * FROM aveloxis_ops.identity_staging x
                     WHERE x.run_id = run.run_id AND x.cntrb_id = c.cntrb_id AND x.applied_at IS NULL
                     ORDER BY x.step = 'commit_search', x.item LOOP
                settled := settled || c.cntrb_id;
                account := NULL;
                doc := NULL;
                IF s.http_status = 200 THEN
                    BEGIN
                        doc := s.payload::jsonb;
                    EXCEPTION WHEN OTHERS THEN
                        doc := NULL;
                    END;
                END IF;
                account := CASE s.step WHEN 'user_search' THEN doc -> 'items' -> 0
                                       ELSE doc -> 'items' -> 0 -> 'author' END;
                IF outcome IS NULL AND aveloxis_ops.user_id_of(account) IS NOT NULL
                   AND jsonb_typeof(account -> 'login') = 'string' THEN
                    outcome := aveloxis_ops.settle_search_hit(
                        c.cntrb_id, github, aveloxis_ops.user_id_of(account), account ->> 'login',
                        format('search-resolve: GitHub''s %s found %s as account %s (%s)',
                               replace(s.step, '_', ' '), c.cntrb_email, account ->> 'id', account ->> 'login'));
                END IF;
                UPDATE aveloxis_ops.identity_staging x
                SET applied_at = now(),
                    error = CASE WHEN s.http_status = 200 AND doc IS NULL THEN 'the answer is not JSON'
                                 WHEN s.http_status NOT IN (200, 404, 422) THEN format('HTTP %s', s.http_status) END
                WHERE x.run_id = s.run_id AND x.item = s.item;
                IF (s.http_status = 200 AND doc IS NULL) OR s.http_status NOT IN (200, 404, 422) THEN
                    counts := jsonb_set(counts, '{unusable}', to_jsonb((counts ->> 'unusable')::bigint + 1));
                END IF;
            END LOOP;
            IF outcome IS NULL AND c.cntrb_id = ANY (settled) THEN
                outcome := 'not_found';
            END IF;
        END IF;
        IF outcome IS NOT NULL THEN
            counts := jsonb_set(counts, ARRAY[outcome], to_jsonb(coalesce((counts ->> outcome)::bigint, 0) + 1));
        END IF;
    END LOOP;
    RETURN counts || jsonb_build_object('settled', settled);
END
$$;


CREATE OR REPLACE VIEW aveloxis_augur_data.commits WITH (security_invoker = true) AS
SELECT c.cmt_id, c.repo_id, c.cmt_commit_hash::varchar(80) AS cmt_commit_hash,
       c.cmt_author_name::varchar AS cmt_author_name, c.cmt_author_raw_email::varchar AS cmt_author_raw_email,
       c.cmt_author_email::varchar AS cmt_author_email, c.cmt_author_date::varchar(10) AS cmt_author_date,
       -- Read through the dated affiliations (sql/affiliation.sql), never a stored copy.
       aveloxis.commit_affiliation(c.cmt_ght_author_id, c.cmt_author_email, c.cmt_author_timestamp)::varchar
           AS cmt_author_affiliation,
       c.cmt_committer_name::varchar AS cmt_committer_name,
       c.cmt_committer_raw_email::varchar AS cmt_committer_raw_email,
       c.cmt_committer_email::varchar AS cmt_committer_email, c.cmt_committer_date::varchar AS cmt_committer_date,
       aveloxis.email_affiliation(c.cmt_committer_email, c.cmt_committer_timestamp)::varchar
           AS cmt_committer_affiliation, c.cmt_added, c.cmt_removed,
       c.cmt_whitespace, c.cmt_filename::varchar AS cmt_filename,
       c.cmt_date_attempted AT TIME ZONE 'UTC' AS cmt_date_attempted, c.cmt_ght_author_id,
       NULL::integer AS cmt_ght_committer_id, c.cmt_ght_committed_at AT TIME ZONE 'UTC' AS cmt_ght_committed_at,
       c.cmt_committer_timestamp, c.cmt_author_timestamp,
       c.cmt_author_platform_username::varchar AS cmt_author_platform_username,
       c.tool_source::varchar AS tool_source, c.tool_version::varchar AS tool_version,
       c.data_source::varchar AS data_source, c.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.commits c;

CREATE OR REPLACE FUNCTION aveloxis_ops.apply_grants()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- Everything is granted anew below: a routine an upgrade took out of a role's part
    -- (0.7.0: the repo-id forms of record_rename and the commit-author calls) must not
    -- keep that role's grant from an earlier version.
    REVOKE ALL ON ALL ROUTINES IN SCHEMA aveloxis, aveloxis_ops FROM PUBLIC, aveloxis_agent, aveloxis_analyst;

    -- aveloxis_analyst: read the data and the read-only API.
    GRANT USAGE ON SCHEMA aveloxis, aveloxis_data, aveloxis_augur_data TO aveloxis_analyst;
    GRANT SELECT ON ALL TABLES IN SCHEMA aveloxis_data, aveloxis_augur_data TO aveloxis_analyst;
    GRANT EXECUTE ON FUNCTION
        aveloxis.version(),
        aveloxis.platform_uuid(smallint, bigint),
        aveloxis.parse_repo_url(text),
        aveloxis.resolve_repo(text),
        aveloxis.registry_counts(),
        aveloxis.resolve_email(text),
        aveloxis.resolve_emails(text[]),
        aveloxis.contributor_quality(),
        aveloxis.duplicate_contributors(integer),
        aveloxis.identity_anomalies(),
        aveloxis.enrichment_progress(),
        aveloxis.search_resolve_queue(),
        aveloxis.contributor_fk_integrity(),
        aveloxis.queue_health(),
        aveloxis.why_not_collected(bigint),
        aveloxis.job_history(bigint, integer),
        aveloxis.token_status(),
        aveloxis.view_refresh_history(integer),
        aveloxis.bot_rule(uuid),
        aveloxis.is_bot(uuid),
        aveloxis.bots(),
        aveloxis.completeness(bigint),
        aveloxis.repo_stats(bigint),
        aveloxis.repo_activity(bigint, date, date, text, boolean),
        aveloxis.group_activity(text, date, date, text, boolean),
        aveloxis.top_contributors(bigint, date, date, integer, boolean),
        aveloxis.new_contributors(bigint, date, date),
        aveloxis.contributor_activity(uuid),
        aveloxis.parse_manifest(text, text),
        aveloxis.parse_manifest(text, bytea),
        aveloxis.manifest_kind(text),
        aveloxis.source_breakers(),
        aveloxis.distribution_stats(),
        aveloxis.distribution_orphans(),
        aveloxis.distribution_repo(text),
        aveloxis.email_chain(text[]),
        aveloxis.person_of(uuid),
        aveloxis.merge_suggestions(integer),
        aveloxis.affiliation_of(uuid, timestamptz),
        aveloxis.commit_affiliation(uuid, text, timestamptz),
        aveloxis.email_affiliation(text, timestamptz),
        aveloxis.enrollments(uuid),
        aveloxis.identity_health(),
        aveloxis.identity_platforms(),
        aveloxis.why_not_enriched(uuid),
        aveloxis.unresolved_commit_authors(integer)
    TO aveloxis_analyst;

    -- aveloxis_agent: the agent API only; no direct access to aveloxis_data.
    GRANT USAGE ON SCHEMA aveloxis TO aveloxis_agent;
    GRANT EXECUTE ON FUNCTION
        aveloxis.version(),
        aveloxis.manifest_kind(text),
        aveloxis.report_source(uuid, text, boolean, text),
        aveloxis.distribution_settings(),
        aveloxis.platform_uuid(smallint, bigint),
        aveloxis.forge_hosts(),
        aveloxis.parse_repo_url(text),
        aveloxis.resolve_repo(text),
        aveloxis.registry_counts(),
        aveloxis.add_repo(text, text),
        aveloxis.record_rename(uuid, text),
        aveloxis.drain_begin(bigint),
        aveloxis.drain_step(bigint, bigint, integer),
        aveloxis.drain_finish(bigint, text),
        aveloxis.pending_repos(),
        aveloxis.requeue_rejects(bigint),
        aveloxis.resolve_email(text),
        aveloxis.resolve_emails(text[]),
        aveloxis.link_contributor(uuid, smallint, bigint, text),
        aveloxis.claim(text, text[], integer, interval),
        aveloxis.claim_repo(text, bigint, text, interval),
        aveloxis.heartbeat(uuid[]),
        aveloxis.complete(bigint, uuid, jsonb),
        aveloxis.fail(bigint, uuid, text, text),
        aveloxis.stage(uuid, text, text[], jsonb[]),
        aveloxis.queue_health(),
        aveloxis.why_not_collected(bigint),
        aveloxis.job_history(bigint, integer),
        aveloxis.token_acquire(text[], text, integer, smallint),
        aveloxis.token_settle(text, text, integer, timestamptz, integer, smallint),
        aveloxis.token_release(text, text, integer, smallint),
        aveloxis.token_invalidate(text, text, smallint),
        aveloxis.token_status(),
        aveloxis.commit_authors_to_resolve(uuid, integer),
        aveloxis.record_commit_author(uuid, text, smallint, bigint, text, text, text),
        aveloxis.link_commit_author(uuid, text, uuid, text, text),
        aveloxis.record_commit_author_miss(text, text, text, text),
        aveloxis.record_commit_author_misses(text[], text[], text[], text[]),
        aveloxis.email_chain(text[]),
        aveloxis.claim_identity_batch(text, text, smallint, integer, interval),
        aveloxis.stage_identity(uuid, uuid[], text[], integer[], text[]),
        aveloxis.complete_identity_batch(uuid, uuid[]),
        aveloxis.identity_health(),
        aveloxis.identity_platforms()
    TO aveloxis_agent;
    GRANT EXECUTE ON PROCEDURE
        aveloxis.drain(bigint, integer),
        aveloxis.drain_all(integer),
        aveloxis.retry_rejects(bigint, integer)
    TO aveloxis_agent;
    -- Agents stage through aveloxis.stage() under a lease; they hold no privilege on any
    -- table (a grant of 0.6.0 and earlier, taken back here).
    REVOKE ALL ON ALL TABLES IN SCHEMA aveloxis_ops FROM aveloxis_agent;
    REVOKE USAGE ON SCHEMA aveloxis_ops FROM aveloxis_agent;

    -- aveloxis_admin: the whole API, and read access everywhere.
    GRANT USAGE ON SCHEMA aveloxis, aveloxis_ops, aveloxis_data, aveloxis_augur_data TO aveloxis_admin;
    GRANT SELECT ON ALL TABLES IN SCHEMA aveloxis_ops, aveloxis_data, aveloxis_augur_data TO aveloxis_admin;
    -- refresh_views() runs with its caller's rights and calls these steps.
    GRANT EXECUTE ON FUNCTION aveloxis_ops.refresh_begin(boolean), aveloxis_ops.refresh_one(bigint, integer),
        aveloxis_ops.refresh_end(bigint), aveloxis_ops.refresh_order()
    TO aveloxis_admin;
    GRANT EXECUTE ON ALL ROUTINES IN SCHEMA aveloxis TO aveloxis_admin;
END
$$;

SELECT aveloxis_ops.apply_grants();
