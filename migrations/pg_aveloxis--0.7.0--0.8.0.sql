-- pg_aveloxis 0.7.0 -> 0.8.0: the read side (docs/analytics.md).
--
-- * aveloxis_augur_data: Augur's relations under Augur's names, columns and types, and
--   the 22 materialized views (8Knot: AUGUR_SCHEMA=aveloxis_augur_data,aveloxis_data).
-- * aveloxis.refresh_views() with per-view history; aveloxis.schedule() adds it to pg_cron.
-- * repo_daily_activity kept current by statement triggers; rebuilt here from the data
--   already stored (aveloxis.rebuild_activity()).
-- * The analyst API (repo_stats, repo_activity, group_activity, top_contributors,
--   new_contributors, contributor_activity), bot rules, and the completeness ledger that
--   complete() now fills.
-- * Tables for the analysis phases (repo_labor, repo_deps_libyear, repo_deps_scorecard).
-- * The drain keeps contributors' company, location and created_at, and repos.repo_archived.

ALTER TABLE aveloxis_data.repos ADD COLUMN repo_archived boolean NOT NULL DEFAULT false;
-- The facade stages the names where community files live ('repo_files').
ALTER TABLE aveloxis_ops.staging DROP CONSTRAINT staging_entity_check,
    ADD CONSTRAINT staging_entity_check
    CHECK (entity IN ('contributor', 'issue', 'pull_request', 'issue_event', 'issue_comment',
                      'review_comment', 'release', 'repo_info', 'commit', 'commit_removed',
                      'repo_files'));
UPDATE aveloxis_data.repos r SET repo_archived = true
FROM aveloxis_data.repo_info i WHERE i.repo_id = r.repo_id AND i.archived;

CREATE OR REPLACE FUNCTION aveloxis_ops.drain_scratch()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    scratch text;
    names   text[] := ARRAY['drain_rows', 'drain_prs', 'drain_comments', 'drain_users', 'drain_user_refs',
                            'drain_issues'];
    ours    bigint;
BEGIN
    -- The session-long tables are checked here; every per-batch table (ON COMMIT DROP) is
    -- checked where it is made, by drop_batch_table. The activity triggers' scratch
    -- (sql/activity.sql) too: they check it again, but a refusal there would only reject
    -- the batch's rows, not stop the drain with a clear error.
    PERFORM aveloxis_ops.check_scratch_owner(n)
    FROM unnest(names || ARRAY['drain_scratch_layout_3', 'activity_net']) n;
    SELECT count(*) INTO ours FROM pg_catalog.pg_class c
    WHERE c.relnamespace = pg_catalog.pg_my_temp_schema()
      AND c.relname = ANY (names || 'drain_scratch_layout_3'::text);
    IF ours = cardinality(names) + 1 THEN
        RETURN;
    END IF;
    FOREACH scratch IN ARRAY names || 'drain_scratch_layout_3'::text LOOP
        PERFORM aveloxis_ops.drop_batch_table(scratch);
    END LOOP;
    CREATE TEMP TABLE drain_scratch_layout_3 ();
    CREATE TEMP TABLE drain_rows (
        staging_id  bigint PRIMARY KEY,
        platform_id smallint NOT NULL,
        doc         jsonb COMPRESSION lz4,
        context     jsonb,
        parse_error text,
        -- Set by a mapper when the row's parent has not arrived: it stays staged.
        pending     boolean NOT NULL DEFAULT false
    ) WITH (toast_tuple_target = 8160) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE drain_prs (
        staging_id            bigint PRIMARY KEY,
        platform_id           smallint NOT NULL,
        platform_pr_id        bigint,
        pr_number             integer,
        node_id               text,
        pr_url                text,
        pr_html_url           text,
        pr_diff_url           text,
        pr_title              text,
        pr_body               text,
        pr_state              text,
        pr_locked             boolean,
        pr_draft              boolean,
        author                jsonb,
        pr_author_association text,
        created_at            timestamptz,
        updated_at            timestamptz,
        closed_at             timestamptz,
        merged_at             timestamptz,
        merge_commit_sha      text,
        pr_commit_count       integer,
        pr_additions          integer,
        pr_deletions          integer,
        pr_changed_files      integer,
        labels                jsonb,
        assignees             jsonb,
        requested             jsonb,
        head                  jsonb,
        base                  jsonb,
        reviews               jsonb,
        commits               jsonb,
        files                 jsonb,
        pull_request_id       bigint,
        changed               boolean NOT NULL DEFAULT false,
        was_inserted          boolean NOT NULL DEFAULT false,
        fresh                 boolean NOT NULL DEFAULT false
    ) WITH (toast_tuple_target = 8160) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE drain_comments (
        staging_id      bigint PRIMARY KEY,
        platform_id     smallint NOT NULL,
        platform_msg_id bigint,
        node_id         text,
        body            text,
        html_url        text,
        parent_number   integer,
        author          jsonb,
        created_at      timestamptz,
        updated_at      timestamptz,
        issue_id        bigint,
        pull_request_id bigint,
        msg_id          bigint,
        changed         boolean NOT NULL DEFAULT false,
        was_inserted    boolean NOT NULL DEFAULT false
    ) WITH (toast_tuple_target = 8160) ON COMMIT DELETE ROWS;
    -- Every user object met in the batch, one row per (platform, id), resolved to cntrb_id.
    CREATE TEMP TABLE drain_users (
        platform_id smallint NOT NULL,
        user_id     bigint NOT NULL,
        login       text,
        user_type   text,
        node_id     text,
        avatar_url  text,
        api_url     text,
        html_url    text,
        gravatar_id text,
        site_admin  text,
        name        text,
        email       text,
        -- Profile fields (full /users payloads carry them; list payloads do not).
        company     text,
        location    text,
        created_at  timestamptz,
        staging_id  bigint NOT NULL,
        cntrb_id    uuid,
        -- Known account whose stored identity and contributor row already say what the
        -- payload says: nothing to write (most accounts of a steady-state batch).
        settled     boolean,
        PRIMARY KEY (platform_id, user_id)
    ) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE drain_user_refs (
        platform_id smallint NOT NULL,
        staging_id  bigint NOT NULL,
        u           jsonb
    ) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE drain_issues (
        staging_id        bigint PRIMARY KEY,
        platform_id       smallint NOT NULL,
        platform_issue_id bigint,
        issue_number      integer,
        node_id           text,
        issue_title       text,
        issue_body        text,
        issue_state       text,
        issue_url         text,
        html_url          text,
        reporter          jsonb,
        closed_by         jsonb,
        assignees         jsonb,
        labels            jsonb,
        is_pull_request   boolean NOT NULL,
        created_at        timestamptz,
        updated_at        timestamptz,
        closed_at         timestamptz,
        comment_count     integer,
        issue_id          bigint,
        changed           boolean NOT NULL DEFAULT false,
        was_inserted      boolean NOT NULL DEFAULT false
    ) WITH (toast_tuple_target = 8160) ON COMMIT DELETE ROWS;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.collect_users()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO pg_temp.drain_users
        (platform_id, user_id, login, user_type, node_id, avatar_url, api_url, html_url, gravatar_id,
         site_admin, name, email, company, location, created_at, staging_id)
    SELECT DISTINCT ON (r.platform_id, r.user_id)
           r.platform_id, r.user_id, nullif(r.u ->> 'login', ''), r.u ->> 'type',
           r.u ->> 'node_id', r.u ->> 'avatar_url', r.u ->> 'url', coalesce(r.u ->> 'html_url', r.u ->> 'web_url'),
           nullif(r.u ->> 'gravatar_id', ''), r.u ->> 'site_admin', nullif(r.u ->> 'name', ''),
           nullif(r.u ->> 'email', ''), nullif(btrim(r.u ->> 'company'), ''), nullif(btrim(r.u ->> 'location'), ''),
           aveloxis_ops.forge_timestamp(r.u ->> 'created_at'), r.staging_id
    -- OFFSET 0 keeps the id computed once per reference, not once per use.
    FROM (SELECT f.platform_id, f.staging_id, f.u, aveloxis_ops.user_id_of(f.u) AS user_id
          FROM pg_temp.drain_user_refs f OFFSET 0) r
    WHERE r.user_id IS NOT NULL
    ORDER BY r.platform_id, r.user_id, r.staging_id DESC;
    -- Scratch tables have no statistics until analyzed; the joins below need them.
    ANALYZE pg_temp.drain_users;
END
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
               AND CASE d.platform_id
                   WHEN 1 THEN (c.gh_user_id, c.gh_login, c.gh_url, c.gh_html_url, c.gh_node_id, c.gh_avatar_url,
                                c.gh_gravatar_id, c.gh_type, c.gh_site_admin)
                                   IS NOT DISTINCT FROM
                               (d.user_id, d.login, d.api_url, d.html_url, d.node_id, d.avatar_url, d.gravatar_id,
                                d.user_type, d.site_admin)
                               AND (d.name IS NULL OR d.name IS NOT DISTINCT FROM c.cntrb_full_name)
                               AND (d.email IS NULL OR d.email IS NOT DISTINCT FROM c.cntrb_email)
                   WHEN 2 THEN (c.gl_id, c.gl_username, c.gl_web_url, c.gl_avatar_url)
                                   IS NOT DISTINCT FROM (d.user_id, d.login, d.html_url, d.avatar_url)
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
    WHERE d.cntrb_id IS NULL AND d.platform_id = 1 AND d.login IS NOT NULL;
    UPDATE pg_temp.drain_users d
    SET cntrb_id = (SELECT c.cntrb_id FROM aveloxis_data.contributors c
                    WHERE lower(c.gl_username) = lower(d.login) AND c.gl_id IS NULL AND c.cntrb_deleted = 0
                    ORDER BY c.cntrb_id LIMIT 1)
    WHERE d.cntrb_id IS NULL AND d.platform_id = 2 AND d.login IS NOT NULL;

    -- Else a new contributor with the deterministic id (R1).
    UPDATE pg_temp.drain_users d SET cntrb_id = aveloxis.platform_uuid(d.platform_id, d.user_id)
    WHERE d.cntrb_id IS NULL;

    WITH ins AS (
        INSERT INTO aveloxis_data.contributors AS c
            (cntrb_id, cntrb_login, cntrb_full_name, cntrb_email, cntrb_company, cntrb_location, cntrb_created_at,
             gh_user_id, gh_login, gh_url, gh_html_url, gh_node_id, gh_avatar_url, gh_gravatar_id, gh_type, gh_site_admin,
             gl_id, gl_username, gl_web_url, gl_avatar_url, gl_full_name,
             tool_source, tool_version, data_source)
        SELECT d.cntrb_id, d.login, d.name, d.email, d.company, d.location, d.created_at,
               CASE WHEN d.platform_id = 1 THEN d.user_id END, CASE WHEN d.platform_id = 1 THEN d.login END,
               CASE WHEN d.platform_id = 1 THEN d.api_url END, CASE WHEN d.platform_id = 1 THEN d.html_url END,
               CASE WHEN d.platform_id = 1 THEN d.node_id END, CASE WHEN d.platform_id = 1 THEN d.avatar_url END,
               CASE WHEN d.platform_id = 1 THEN d.gravatar_id END, CASE WHEN d.platform_id = 1 THEN d.user_type END,
               CASE WHEN d.platform_id = 1 THEN d.site_admin END,
               CASE WHEN d.platform_id = 2 THEN d.user_id END, CASE WHEN d.platform_id = 2 THEN d.login END,
               CASE WHEN d.platform_id = 2 THEN d.html_url END, CASE WHEN d.platform_id = 2 THEN d.avatar_url END,
               CASE WHEN d.platform_id = 2 THEN d.name END,
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
            user_type = EXCLUDED.user_type, node_id = EXCLUDED.node_id, last_seen_at = now()
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

    -- The denormalized gh_*/gl_* copies follow the identity (R4); cntrb_login follows a
    -- rename of the login it was copied from. cntrb_id is never touched (R2).
    WITH upd AS (
        UPDATE aveloxis_data.contributors c
        SET gh_user_id = d.user_id,
            cntrb_login = CASE WHEN c.cntrb_login IS NULL OR c.cntrb_login = c.gh_login THEN d.login ELSE c.cntrb_login END,
            gh_login = d.login, gh_url = d.api_url, gh_html_url = d.html_url, gh_node_id = d.node_id,
            gh_avatar_url = d.avatar_url, gh_gravatar_id = d.gravatar_id, gh_type = d.user_type,
            gh_site_admin = d.site_admin,
            cntrb_full_name = coalesce(d.name, c.cntrb_full_name), cntrb_email = coalesce(d.email, c.cntrb_email),
            cntrb_company = coalesce(d.company, c.cntrb_company), cntrb_location = coalesce(d.location, c.cntrb_location),
            cntrb_created_at = coalesce(d.created_at, c.cntrb_created_at)
        FROM pg_temp.drain_users d
        WHERE d.settled IS NOT TRUE AND d.platform_id = 1 AND c.cntrb_id = d.cntrb_id
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
            cntrb_login = CASE WHEN c.cntrb_login IS NULL OR c.cntrb_login = c.gl_username THEN d.login ELSE c.cntrb_login END,
            gl_username = d.login, gl_web_url = d.html_url, gl_avatar_url = d.avatar_url,
            gl_full_name = coalesce(d.name, c.gl_full_name),
            cntrb_company = coalesce(d.company, c.cntrb_company), cntrb_location = coalesce(d.location, c.cntrb_location),
            cntrb_created_at = coalesce(d.created_at, c.cntrb_created_at)
        FROM pg_temp.drain_users d
        WHERE d.settled IS NOT TRUE AND d.platform_id = 2 AND c.cntrb_id = d.cntrb_id
          AND ((c.gl_id, c.gl_username, c.gl_web_url, c.gl_avatar_url)
              IS DISTINCT FROM (d.user_id, d.login, d.html_url, d.avatar_url)
            OR (d.company IS NOT NULL AND d.company IS DISTINCT FROM c.cntrb_company)
            OR (d.location IS NOT NULL AND d.location IS DISTINCT FROM c.cntrb_location))
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM upd) + (SELECT count(*) FROM upd_gl) INTO updated;
    -- Rows inserted just now are "updated" by the statement above only if they differ,
    -- which they never do: the counts do not overlap.
END
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.drain_repo_info(repo bigint, only_staging_id bigint)
RETURNS aveloxis_ops.drain_counts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    total bigint;
    result aveloxis_ops.drain_counts;
    newest record;
    twin bigint;
BEGIN
    SELECT count(*) INTO total FROM pg_temp.drain_rows r
    WHERE r.doc IS NOT NULL AND NOT r.pending AND (only_staging_id IS NULL OR r.staging_id = only_staging_id);
    -- Only the newest staged version matters.
    SELECT x.*, r.staging_id INTO newest
    FROM pg_temp.drain_rows r,
         jsonb_to_record(r.doc) AS x(id bigint, node_id text, full_name text, description text, homepage text,
                                     default_branch text, language text, license jsonb, fork boolean,
                                     archived boolean, visibility text, has_issues boolean, has_wiki boolean,
                                     has_pages boolean, forks_count integer, subscribers_count integer,
                                     watchers_count integer, stargazers_count integer, open_issues_count integer,
                                     size integer, created_at text, updated_at text, pushed_at text)
    WHERE r.doc IS NOT NULL AND NOT r.pending AND (only_staging_id IS NULL OR r.staging_id = only_staging_id)
    ORDER BY r.staging_id DESC LIMIT 1;
    result := ROW(0, 0, 0, 0, 0)::aveloxis_ops.drain_counts;
    IF newest IS NULL THEN
        RETURN result;
    END IF;
    IF newest.id IS NULL THEN
        RAISE EXCEPTION 'repo_info payload without a numeric "id"' USING ERRCODE = 'not_null_violation',
            HINT = 'Stage the repository object as /repos/{owner}/{repo} returns it.';
    END IF;
    SELECT r.repo_id INTO twin FROM aveloxis_data.repos r JOIN aveloxis_data.repos me ON me.repo_id = repo
    WHERE r.repo_host IS NOT DISTINCT FROM me.repo_host AND r.repo_src_id = newest.id AND r.repo_id <> repo;
    IF FOUND THEN
        RAISE EXCEPTION 'repo % is forge repository % (%), which is already registered as repo %',
                repo, newest.id, newest.full_name, twin
            USING ERRCODE = 'unique_violation',
                  HINT = 'One of the two URLs is an old name: record_rename() the current one, then remove the other.';
    END IF;
    UPDATE aveloxis_data.repos r SET repo_src_id = newest.id, repo_archived = coalesce(newest.archived, r.repo_archived)
    WHERE r.repo_id = repo
      AND (r.repo_src_id, r.repo_archived) IS DISTINCT FROM (newest.id, coalesce(newest.archived, r.repo_archived));

    PERFORM aveloxis_ops.drop_batch_table('drain_repo_info');
    CREATE TEMP TABLE drain_repo_info ON COMMIT DROP AS
    SELECT repo AS repo_id, newest.id AS repo_src_id, newest.node_id, newest.full_name, newest.description,
           newest.homepage, newest.default_branch, newest.language AS primary_language,
           coalesce(newest.license ->> 'spdx_id', newest.license ->> 'name') AS license,
           newest.fork AS is_fork, newest.archived, newest.visibility,
           coalesce(newest.has_issues, false)::text AS issues_enabled, newest.has_wiki::text AS wiki_enabled,
           newest.has_pages::text AS pages_enabled, newest.forks_count AS fork_count,
           coalesce(newest.subscribers_count, newest.watchers_count) AS watchers_count,
           newest.stargazers_count AS stars_count, newest.open_issues_count AS open_issues,
           newest.size AS size_kb, aveloxis_ops.forge_timestamp(newest.created_at) AS created_at,
           aveloxis_ops.forge_timestamp(newest.updated_at) AS updated_at,
           aveloxis_ops.forge_timestamp(newest.pushed_at) AS pushed_at;

    IF NOT EXISTS (SELECT FROM aveloxis_data.repo_info c WHERE c.repo_id = repo) THEN
        INSERT INTO aveloxis_data.repo_info
            (repo_id, repo_src_id, node_id, full_name, description, homepage, default_branch, primary_language,
             license, is_fork, archived, visibility, issues_enabled, wiki_enabled, pages_enabled, fork_count,
             watchers_count, stars_count, open_issues, size_kb, created_at, updated_at, pushed_at,
             tool_source, tool_version, data_source)
        SELECT i.*, 'pg_aveloxis', aveloxis.version(), 'aveloxis.drain' FROM pg_temp.drain_repo_info i;
        result.inserted := 1;
    ELSIF EXISTS (
        SELECT FROM aveloxis_data.repo_info c JOIN pg_temp.drain_repo_info i USING (repo_id)
        WHERE (c.repo_src_id, c.node_id, c.full_name, c.description, c.homepage, c.default_branch, c.primary_language,
               c.license, c.is_fork, c.archived, c.visibility, c.issues_enabled, c.wiki_enabled, c.pages_enabled,
               c.fork_count, c.watchers_count, c.stars_count, c.open_issues, c.size_kb, c.created_at, c.updated_at,
               c.pushed_at)
              IS DISTINCT FROM
              (i.repo_src_id, i.node_id, i.full_name, i.description, i.homepage, i.default_branch, i.primary_language,
               i.license, i.is_fork, i.archived, i.visibility, i.issues_enabled, i.wiki_enabled, i.pages_enabled,
               i.fork_count, i.watchers_count, i.stars_count, i.open_issues, i.size_kb, i.created_at, i.updated_at,
               i.pushed_at)) THEN
        INSERT INTO aveloxis_data.repo_info_history SELECT c.* FROM aveloxis_data.repo_info c WHERE c.repo_id = repo;
        UPDATE aveloxis_data.repo_info c
        SET repo_src_id = i.repo_src_id, node_id = i.node_id, full_name = i.full_name, description = i.description,
            homepage = i.homepage, default_branch = i.default_branch, primary_language = i.primary_language,
            license = i.license, is_fork = i.is_fork, archived = i.archived, visibility = i.visibility,
            issues_enabled = i.issues_enabled, wiki_enabled = i.wiki_enabled, pages_enabled = i.pages_enabled,
            fork_count = i.fork_count, watchers_count = i.watchers_count, stars_count = i.stars_count,
            open_issues = i.open_issues, size_kb = i.size_kb, created_at = i.created_at, updated_at = i.updated_at,
            pushed_at = i.pushed_at, tool_version = aveloxis.version(), data_collection_date = now()
        FROM pg_temp.drain_repo_info i WHERE c.repo_id = repo;
        result.updated := 1;
    END IF;
    result.unchanged := total - result.inserted - result.updated;
    RETURN result;
END
$$;

CREATE OR REPLACE PROCEDURE aveloxis.tick()
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    expired  bigint;
    aligned  bigint;
    purged   bigint;
    pruned   bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtextextended('aveloxis.tick', 0)) THEN
        RAISE NOTICE 'another aveloxis.tick() is running; this one returns';
        RETURN;
    END IF;
    expired := aveloxis_ops.expire_leases();
    UPDATE aveloxis_ops.jobs j
    SET due_at = j.last_success_at + aveloxis_ops.setting(j.phase || '.cadence')::interval
    WHERE j.due_from_cadence AND j.lease_owner IS NULL AND j.last_success_at IS NOT NULL
      AND j.due_at <> j.last_success_at + aveloxis_ops.setting(j.phase || '.cadence')::interval;
    GET DIAGNOSTICS aligned = ROW_COUNT;
    DELETE FROM aveloxis_ops.staging s
    WHERE s.drained_at < aveloxis_ops.clock() - aveloxis_ops.setting('staging.retention')::interval;
    GET DIAGNOSTICS purged = ROW_COUNT;
    DELETE FROM aveloxis_ops.job_runs r
    WHERE r.finished_at < aveloxis_ops.clock() - aveloxis_ops.setting('job_runs.retention')::interval;
    GET DIAGNOSTICS pruned = ROW_COUNT;
    DELETE FROM aveloxis_ops.view_refresh_runs r
    WHERE r.finished_at < aveloxis_ops.clock() - aveloxis_ops.setting('views.refresh_history')::interval;
    IF expired + aligned + purged + pruned > 0 THEN
        RAISE LOG 'aveloxis.tick: % expired leases returned, % due dates re-aligned, % drained staging rows and % old runs deleted',
            expired, aligned, purged, pruned;
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis.schedule()
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION 'pg_cron is not installed in this database'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Add pg_cron to shared_preload_libraries, set cron.database_name to this database and '
                         'CREATE EXTENSION pg_cron; or run CALL aveloxis.tick() every minute some other way '
                         '(the pg_aveloxis background worker: pg_aveloxis.scheduler = on).';
    END IF;
    EXECUTE 'SELECT cron.schedule($1, $2, $3)' USING 'aveloxis-tick', '* * * * *', 'CALL aveloxis.tick()';
    -- Hourly, the views are refreshed when views.refresh_cadence (weekly) has passed.
    EXECUTE 'SELECT cron.schedule($1, $2, $3)' USING 'aveloxis-refresh-views', '17 * * * *',
        'CALL aveloxis.refresh_views(true)';
    RETURN 'scheduled aveloxis-tick (every minute): CALL aveloxis.tick(); '
           'aveloxis-refresh-views (hourly): CALL aveloxis.refresh_views(true)';
END
$$;

CREATE OR REPLACE FUNCTION aveloxis.unschedule()
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    removed bigint := 0;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron') THEN
        RETURN 'pg_cron is not installed: nothing was scheduled';
    END IF;
    EXECUTE 'SELECT count(cron.unschedule(jobname)) FROM cron.job WHERE jobname = ANY ($1)' INTO removed
        USING ARRAY['aveloxis-tick', 'aveloxis-refresh-views'];
    RETURN format('removed %s scheduled job(s)', removed);
END
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.phase_entities(phase text)
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE phase
        WHEN 'collect' THEN ARRAY['contributor', 'issue', 'pull_request', 'issue_event', 'issue_comment',
                                  'review_comment', 'release', 'repo_info']
        WHEN 'facade' THEN ARRAY['commit', 'commit_removed', 'repo_files']
        ELSE '{}'::text[] END
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.drain_entities()
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ARRAY['contributor', 'issue', 'pull_request', 'issue_event', 'issue_comment', 'review_comment', 'release',
                    'repo_info', 'commit', 'commit_removed', 'repo_files'] $$;

CREATE OR REPLACE FUNCTION aveloxis_ops.drain_entity(entity text, repo bigint, only_staging_id bigint)
RETURNS aveloxis_ops.drain_counts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    CASE entity
        WHEN 'contributor' THEN RETURN aveloxis_ops.drain_contributors(only_staging_id);
        WHEN 'issue' THEN RETURN aveloxis_ops.drain_issues(repo, only_staging_id);
        WHEN 'pull_request' THEN RETURN aveloxis_ops.drain_pull_requests(repo, only_staging_id);
        WHEN 'issue_comment' THEN RETURN aveloxis_ops.drain_issue_comments(repo, only_staging_id);
        WHEN 'issue_event' THEN RETURN aveloxis_ops.drain_issue_events(repo, only_staging_id);
        WHEN 'release' THEN RETURN aveloxis_ops.drain_releases(repo, only_staging_id);
        WHEN 'review_comment' THEN RETURN aveloxis_ops.drain_review_comments(repo, only_staging_id);
        WHEN 'repo_info' THEN RETURN aveloxis_ops.drain_repo_info(repo, only_staging_id);
        WHEN 'commit' THEN RETURN aveloxis_ops.drain_commits(repo, only_staging_id);
        WHEN 'commit_removed' THEN RETURN aveloxis_ops.drain_commits_removed(repo, only_staging_id);
        WHEN 'repo_files' THEN RETURN aveloxis_ops.drain_repo_files(repo, only_staging_id);
    END CASE;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis.drain_step(repo_id bigint, run_id bigint, batch_size integer DEFAULT 1000)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
-- The planner cannot see how many rows a JSON document unnests into, guesses high, and
-- JIT-compiles batches that take milliseconds: compilation alone cost 0.85 s per batch
-- of 1,000 commits. Batches are small by design; JIT never pays here.
SET jit = off
AS $$
DECLARE
    target     bigint := drain_step.repo_id;
    run        bigint := drain_step.run_id;
    ent        text;
    after_id   bigint;
    taken      bigint;
    batch      aveloxis_ops.drain_counts;
    one        aveloxis_ops.drain_counts;
    rejected   bigint;
    row_id     bigint;
    err_text   text;
    err_state  text;
    unmapped   bigint;
BEGIN
    IF batch_size IS NULL OR batch_size < 1 THEN
        RAISE EXCEPTION 'batch_size must be at least 1' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- One drain per repository at a time; transaction-scoped, so it can never leak.
    IF NOT pg_try_advisory_xact_lock(hashtextextended('aveloxis.drain', target)) THEN
        RETURN 'busy';
    END IF;
    PERFORM aveloxis_ops.drain_scratch();

    FOREACH ent IN ARRAY aveloxis_ops.drain_entities() LOOP
        -- Rows left pending earlier in this run are not read again until the next run.
        SELECT c.last_staging_id INTO after_id FROM aveloxis_ops.drain_run_counts c
        WHERE c.run_id = run AND c.entity = ent;
        DELETE FROM pg_temp.drain_rows;
        -- Each payload is de-toasted, sanitized and parsed exactly once: this is the
        -- floor every drain pays. Only a batch holding an unparsable payload takes the
        -- slower path that finds it and says why.
        BEGIN
            INSERT INTO pg_temp.drain_rows (staging_id, platform_id, context, doc)
            SELECT st.staging_id, st.platform_id, st.context, aveloxis_ops.sanitize_json(st.payload)::jsonb
            FROM aveloxis_ops.staging st
            WHERE st.repo_id = target AND st.entity = ent AND st.drained_at IS NULL
              AND st.staging_id > coalesce(after_id, 0)
            ORDER BY st.staging_id LIMIT batch_size;
        EXCEPTION WHEN OTHERS THEN
            INSERT INTO pg_temp.drain_rows (staging_id, platform_id, context, doc, parse_error)
            SELECT st.staging_id, st.platform_id, st.context, p.doc, 'payload is not valid JSON: ' || p.err
            FROM (SELECT st.staging_id, st.platform_id, st.context, st.payload FROM aveloxis_ops.staging st
                  WHERE st.repo_id = target AND st.entity = ent AND st.drained_at IS NULL
                    AND st.staging_id > coalesce(after_id, 0)
                  ORDER BY st.staging_id LIMIT batch_size) st,
                 LATERAL aveloxis_ops.parse_payload(st.payload) p;
        END;
        SELECT count(*) INTO taken FROM pg_temp.drain_rows;
        CONTINUE WHEN taken = 0;
        ANALYZE pg_temp.drain_rows;

        INSERT INTO aveloxis_ops.drain_run_counts AS c (run_id, entity, last_staging_id)
        SELECT run, ent, max(staging_id) FROM pg_temp.drain_rows
        ON CONFLICT ON CONSTRAINT drain_run_counts_pkey DO UPDATE SET last_staging_id = EXCLUDED.last_staging_id;

        -- Every entity's payload is one JSON object.
        UPDATE pg_temp.drain_rows r
        SET parse_error = format('payload is a JSON %s, not an object', jsonb_typeof(r.doc)), doc = NULL
        WHERE jsonb_typeof(r.doc) <> 'object';
        PERFORM aveloxis_ops.null_unfit_fields(run, ent);
        rejected := 0;
        FOR row_id, err_text IN SELECT staging_id, parse_error FROM pg_temp.drain_rows WHERE parse_error IS NOT NULL LOOP
            rejected := rejected + aveloxis_ops.reject(ARRAY[row_id], ent || ': ' || err_text, '22P02');
        END LOOP;

        -- Only GitHub payloads are mapped so far: others wait, counted, until their
        -- mapping ships (an upgrade); they are never mapped as if they were GitHub's.
        -- Git history is the agent's own envelope, the same for every platform.
        UPDATE pg_temp.drain_rows r SET pending = true
        WHERE r.doc IS NOT NULL AND r.platform_id <> 1 AND ent NOT IN ('commit', 'commit_removed', 'repo_files');
        GET DIAGNOSTICS unmapped = ROW_COUNT;

        BEGIN
            batch := aveloxis_ops.drain_entity(ent, target, NULL);
            UPDATE aveloxis_ops.staging s SET drained_at = now()
            FROM pg_temp.drain_rows r WHERE r.staging_id = s.staging_id AND r.doc IS NOT NULL AND NOT r.pending;
            -- Rows put back by requeue_rejects() that now drained are no longer rejects.
            DELETE FROM aveloxis_ops.staging_rejects j
            USING pg_temp.drain_rows r WHERE j.staging_id = r.staging_id AND r.doc IS NOT NULL AND NOT r.pending;
        EXCEPTION WHEN OTHERS THEN
            -- Something in the batch cannot be stored: redo it row by row, so only that
            -- row is rejected and the others are stored.
            batch := ROW(0, 0, 0, 0, 0)::aveloxis_ops.drain_counts;
            FOR row_id IN SELECT staging_id FROM pg_temp.drain_rows WHERE doc IS NOT NULL AND NOT pending
                          ORDER BY staging_id LOOP
                BEGIN
                    one := aveloxis_ops.drain_entity(ent, target, row_id);
                    IF one.pending = 0 THEN
                        UPDATE aveloxis_ops.staging s SET drained_at = now() WHERE s.staging_id = row_id;
                        DELETE FROM aveloxis_ops.staging_rejects j WHERE j.staging_id = row_id;
                    END IF;
                    batch.inserted := batch.inserted + one.inserted;
                    batch.updated := batch.updated + one.updated;
                    batch.unchanged := batch.unchanged + one.unchanged;
                    batch.skipped := batch.skipped + one.skipped;
                    batch.pending := batch.pending + one.pending;
                EXCEPTION WHEN OTHERS THEN
                    GET STACKED DIAGNOSTICS err_text = MESSAGE_TEXT, err_state = RETURNED_SQLSTATE;
                    rejected := rejected + aveloxis_ops.reject(ARRAY[row_id], ent || ': ' || err_text, err_state);
                END;
            END LOOP;
        END;
        batch.pending := batch.pending + unmapped;
        PERFORM aveloxis_ops.add_counts(run, ent, batch, rejected);
        RETURN 'more';
    END LOOP;
    -- Everything is in: the commit aggregates the new commits made stale are refreshed.
    PERFORM aveloxis_ops.refresh_commit_aggregates(target);
    RETURN 'done';
END
$$;

-- From sql/analysis.sql
-- Results of the analysis phases (labor by language, libyear, OpenSSF Scorecard), with
-- Augur's names and columns. The phases that fill them come later (issue 17); the
-- tables exist now so the views and 8Knot's queries over them answer, empty.
-- Every scan writes its rows with one data_collection_date: readers take the rows of
-- the latest date per repository.

CREATE TABLE aveloxis_data.repo_labor (
    repo_labor_id        bigint GENERATED BY DEFAULT AS IDENTITY,
    repo_id              bigint NOT NULL REFERENCES aveloxis_data.repos ON DELETE CASCADE,
    repo_clone_date      timestamptz,
    rl_analysis_date     timestamptz,
    programming_language text,
    file_path            text,
    file_name            text,
    total_lines          integer,
    code_lines           integer,
    comment_lines        integer,
    blank_lines          integer,
    code_complexity      integer,
    repo_url             text,
    tool_source          text,
    tool_version         text,
    data_source          text,
    data_collection_date timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repo_id, repo_labor_id)
);
COMMENT ON TABLE aveloxis_data.repo_labor IS 'Lines of code per file of the HEAD tree, one snapshot per scan (analysis phase)';
CREATE INDEX repo_labor_scan_idx ON aveloxis_data.repo_labor (repo_id, data_collection_date);

CREATE TABLE aveloxis_data.repo_deps_libyear (
    repo_deps_libyear_id bigint GENERATED BY DEFAULT AS IDENTITY,
    repo_id              bigint NOT NULL REFERENCES aveloxis_data.repos ON DELETE CASCADE,
    name                 text,
    requirement          text,
    type                 text,
    package_manager      text,
    -- Augur's spelling.
    current_verion       text,
    latest_version       text,
    current_release_date text,
    latest_release_date  text,
    -- NULL when unknown, never 0.
    libyear              double precision,
    tool_source          text,
    tool_version         text,
    data_source          text,
    data_collection_date timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repo_id, repo_deps_libyear_id)
);
COMMENT ON TABLE aveloxis_data.repo_deps_libyear IS 'Libyear of each dependency, one snapshot per scan (analysis phase)';
CREATE INDEX repo_deps_libyear_scan_idx ON aveloxis_data.repo_deps_libyear (repo_id, data_collection_date);

CREATE TABLE aveloxis_data.repo_deps_scorecard (
    repo_deps_scorecard_id  bigint GENERATED BY DEFAULT AS IDENTITY,
    repo_id                 bigint NOT NULL REFERENCES aveloxis_data.repos ON DELETE CASCADE,
    name                    text,
    -- Numeric text or NULL, never '' (8Knot casts it to float4).
    score                   text CHECK (score IS NULL OR score ~ '^-?[0-9]+(\.[0-9]+)?$'),
    scorecard_check_details jsonb,
    tool_source             text,
    tool_version            text,
    data_source             text,
    data_collection_date    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repo_id, repo_deps_scorecard_id)
);
COMMENT ON TABLE aveloxis_data.repo_deps_scorecard IS 'OpenSSF Scorecard checks, one snapshot per scan (analysis phase)';
CREATE INDEX repo_deps_scorecard_scan_idx ON aveloxis_data.repo_deps_scorecard (repo_id, data_collection_date);

SELECT pg_catalog.pg_extension_config_dump('aveloxis_data.repo_labor', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('aveloxis_data.repo_labor', 'repo_labor_id'), '');
SELECT pg_catalog.pg_extension_config_dump('aveloxis_data.repo_deps_libyear', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('aveloxis_data.repo_deps_libyear', 'repo_deps_libyear_id'), '');
SELECT pg_catalog.pg_extension_config_dump('aveloxis_data.repo_deps_scorecard', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('aveloxis_data.repo_deps_scorecard', 'repo_deps_scorecard_id'), '');

-- From sql/community_files.sql
-- Community health files (code of conduct, security policy, security audits, and
-- contributing guide, changelog, licence), found in HEAD's tree by the facade: no API
-- request, every forge and plain git alike. The agent stages the names of the top
-- level, .github/ and docs/ ('repo_files': {"head", "paths"}); which path is which file
-- is decided here, so a better pattern needs no agent release. NULL means "not found".

CREATE TABLE aveloxis_data.repo_community_files (
    repo_id              bigint PRIMARY KEY REFERENCES aveloxis_data.repos ON DELETE CASCADE,
    head                 text NOT NULL,
    code_of_conduct_file text,
    security_issue_file  text,
    security_audit_file  text,
    contributing_file    text,
    changelog_file       text,
    license_file         text,
    data_collection_date timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE aveloxis_data.repo_community_files IS 'Community health files of each repository''s default branch (NULL: not found)';
SELECT pg_catalog.pg_extension_config_dump('aveloxis_data.repo_community_files', '');

-- The path of a kind of community file among a tree's paths, or NULL. Where forges
-- look first wins (.github/, then the top level, then docs/); the name is matched
-- without regard to case, with any extension.
CREATE FUNCTION aveloxis_ops.community_file(paths text[], kind text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT p.path FROM unnest(paths) WITH ORDINALITY AS p(path, n)
    WHERE regexp_replace(p.path, '^.*/', '') ~* CASE kind
        WHEN 'code_of_conduct' THEN '^code[-_ ]?of[-_ ]?conduct(\.[a-z0-9]+)?$'
        WHEN 'security_policy' THEN '^security(\.[a-z0-9]+)?$'
        WHEN 'security_audit' THEN '^(security[-_ ]?)?audits?([-_ ][^/]*)?(\.[a-z0-9]+)?$'
        WHEN 'contributing' THEN '^contributing(\.[a-z0-9]+)?$'
        WHEN 'changelog' THEN '^(changelog|changes|history|news)(\.[a-z0-9]+)?$'
        WHEN 'license' THEN '^(licen[cs]e|copying)([-_.][^/]*)?$'
      END
      AND p.path ~ '^(\.github/|docs/)?[^/]+$'
    ORDER BY CASE WHEN p.path LIKE '.github/%' THEN 0 WHEN p.path LIKE 'docs/%' THEN 2 ELSE 1 END, p.path
    LIMIT 1
$$;

-- 'repo_files' payloads: the newest one replaces what the repository had.
CREATE FUNCTION aveloxis_ops.drain_repo_files(repo bigint, only_staging_id bigint)
RETURNS aveloxis_ops.drain_counts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    total  bigint;
    newest record;
    paths  text[];
    result aveloxis_ops.drain_counts := ROW(0, 0, 0, 0, 0)::aveloxis_ops.drain_counts;
    files  record;
BEGIN
    SELECT count(*) INTO total FROM pg_temp.drain_rows r
    WHERE r.doc IS NOT NULL AND NOT r.pending AND (only_staging_id IS NULL OR r.staging_id = only_staging_id);
    SELECT r.doc, r.staging_id INTO newest FROM pg_temp.drain_rows r
    WHERE r.doc IS NOT NULL AND NOT r.pending AND (only_staging_id IS NULL OR r.staging_id = only_staging_id)
    ORDER BY r.staging_id DESC LIMIT 1;
    IF newest IS NULL THEN
        RETURN result;
    END IF;
    IF jsonb_typeof(newest.doc -> 'head') IS DISTINCT FROM 'string'
       OR jsonb_typeof(newest.doc -> 'paths') IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'repo_files: payload needs "head" (a string) and "paths" (an array of strings)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT array_agg(e.value ORDER BY e.n) INTO paths
    FROM jsonb_array_elements_text(newest.doc -> 'paths') WITH ORDINALITY AS e(value, n);
    SELECT aveloxis_ops.community_file(paths, 'code_of_conduct') AS code_of_conduct_file,
           aveloxis_ops.community_file(paths, 'security_policy') AS security_issue_file,
           aveloxis_ops.community_file(paths, 'security_audit') AS security_audit_file,
           aveloxis_ops.community_file(paths, 'contributing') AS contributing_file,
           aveloxis_ops.community_file(paths, 'changelog') AS changelog_file,
           aveloxis_ops.community_file(paths, 'license') AS license_file
    INTO files;
    INSERT INTO aveloxis_data.repo_community_files AS f
        (repo_id, head, code_of_conduct_file, security_issue_file, security_audit_file, contributing_file,
         changelog_file, license_file)
    VALUES (repo, newest.doc ->> 'head', files.code_of_conduct_file, files.security_issue_file,
            files.security_audit_file, files.contributing_file, files.changelog_file, files.license_file)
    ON CONFLICT (repo_id) DO UPDATE
        SET head = EXCLUDED.head, code_of_conduct_file = EXCLUDED.code_of_conduct_file,
            security_issue_file = EXCLUDED.security_issue_file, security_audit_file = EXCLUDED.security_audit_file,
            contributing_file = EXCLUDED.contributing_file, changelog_file = EXCLUDED.changelog_file,
            license_file = EXCLUDED.license_file, data_collection_date = EXCLUDED.data_collection_date
        WHERE (f.head, f.code_of_conduct_file, f.security_issue_file, f.security_audit_file, f.contributing_file,
               f.changelog_file, f.license_file)
              IS DISTINCT FROM
              (EXCLUDED.head, EXCLUDED.code_of_conduct_file, EXCLUDED.security_issue_file,
               EXCLUDED.security_audit_file, EXCLUDED.contributing_file, EXCLUDED.changelog_file,
               EXCLUDED.license_file);
    IF FOUND THEN
        result.updated := 1;
    END IF;
    result.unchanged := total - result.updated;
    RETURN result;
END
$$;

-- From sql/augur_compat.sql
-- aveloxis_augur_data: Augur's relations under Augur's names, columns (in Augur's
-- order) and types, over aveloxis_data. 8Knot runs against it unchanged with
-- AUGUR_SCHEMA=aveloxis_augur_data,aveloxis_data (docs/analytics.md).
--
-- Augur's naive `timestamp` columns are UTC wall times, computed with AT TIME ZONE
-- 'UTC' so that no session TimeZone changes them. Columns Augur has and we do not
-- collect are NULL of Augur's type. Views are security_invoker: a reader needs the
-- SELECT on aveloxis_data that aveloxis_analyst has.
-- The 22 materialized views live here too (sql/matviews.sql).

CREATE SCHEMA aveloxis_augur_data;
COMMENT ON SCHEMA aveloxis_augur_data IS 'Augur-compatible names over aveloxis_data, and the materialized views (8Knot reads here)';

CREATE VIEW aveloxis_augur_data.repo_groups WITH (security_invoker = true) AS
SELECT g.repo_group_id, g.rg_name::varchar AS rg_name, g.rg_description::varchar AS rg_description,
       g.rg_website::varchar AS rg_website, NULL::smallint AS rg_recache,
       g.rg_last_modified AT TIME ZONE 'UTC' AS rg_last_modified, g.rg_type::varchar AS rg_type,
       g.tool_source::varchar AS tool_source, g.tool_version::varchar AS tool_version,
       g.data_source::varchar AS data_source, g.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.repo_groups g;

CREATE VIEW aveloxis_augur_data.repo WITH (security_invoker = true) AS
SELECT r.repo_id, r.repo_group_id, r.repo_git::varchar AS repo_git, NULL::varchar AS repo_path,
       r.repo_name::varchar AS repo_name, r.repo_added AT TIME ZONE 'UTC' AS repo_added,
       p.platform_name::varchar AS repo_type,
       (r.repo_host || '/' || r.repo_owner || '/' || r.repo_name)::varchar AS url, NULL::integer AS owner_id,
       i.description::varchar AS description, i.primary_language::varchar AS primary_language,
       to_char(i.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')::varchar AS created_at,
       NULL::varchar AS forked_from, i.updated_at AT TIME ZONE 'UTC' AS updated_at,
       CASE WHEN r.repo_archived THEN i.data_collection_date END AS repo_archived_date_collected,
       r.repo_archived::integer AS repo_archived,
       r.tool_source::varchar AS tool_source, r.tool_version::varchar AS tool_version,
       r.data_source::varchar AS data_source, r.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date,
       r.repo_src_id
FROM aveloxis_data.repos r
JOIN aveloxis_data.platforms p USING (platform_id)
LEFT JOIN aveloxis_data.repo_info i USING (repo_id);

-- One row per repository (the current one; earlier versions are in
-- aveloxis_data.repo_info_history). The counts are computed when asked for.
CREATE VIEW aveloxis_augur_data.repo_info WITH (security_invoker = true) AS
SELECT i.repo_info_id, i.repo_id, i.updated_at AT TIME ZONE 'UTC' AS last_updated,
       i.issues_enabled::varchar AS issues_enabled, i.open_issues, NULL::varchar AS pull_requests_enabled,
       i.wiki_enabled::varchar AS wiki_enabled, i.pages_enabled::varchar AS pages_enabled, i.fork_count,
       i.default_branch::varchar AS default_branch, i.watchers_count, NULL::integer AS "UUID",
       i.license::varchar AS license, i.stars_count, NULL::integer AS committers_count,
       NULL::varchar AS issue_contributors_count, f.changelog_file::varchar AS changelog_file,
       f.contributing_file::varchar AS contributing_file, f.license_file::varchar AS license_file,
       coalesce(f.code_of_conduct_file, i.code_of_conduct_file)::varchar AS code_of_conduct_file,
       coalesce(f.security_issue_file, i.security_issue_file)::varchar AS security_issue_file,
       coalesce(f.security_audit_file, i.security_audit_file)::varchar AS security_audit_file,
       NULL::varchar AS status, NULL::varchar AS keywords,
       (SELECT count(DISTINCT c.cmt_commit_hash) FROM aveloxis_data.commits c WHERE c.repo_id = i.repo_id) AS commit_count,
       (SELECT count(*) FROM aveloxis_data.issues x WHERE x.repo_id = i.repo_id) AS issues_count,
       (SELECT count(*) FROM aveloxis_data.issues x WHERE x.repo_id = i.repo_id AND x.closed_at IS NOT NULL) AS issues_closed,
       (SELECT count(*) FROM aveloxis_data.pull_requests x WHERE x.repo_id = i.repo_id) AS pull_request_count,
       (SELECT count(*) FROM aveloxis_data.pull_requests x WHERE x.repo_id = i.repo_id AND x.closed_at IS NULL) AS pull_requests_open,
       (SELECT count(*) FROM aveloxis_data.pull_requests x
        WHERE x.repo_id = i.repo_id AND x.closed_at IS NOT NULL AND x.merged_at IS NULL) AS pull_requests_closed,
       (SELECT count(*) FROM aveloxis_data.pull_requests x WHERE x.repo_id = i.repo_id AND x.merged_at IS NOT NULL) AS pull_requests_merged,
       i.tool_source::varchar AS tool_source, i.tool_version::varchar AS tool_version,
       i.data_source::varchar AS data_source, i.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.repo_info i
LEFT JOIN aveloxis_data.repo_community_files f ON f.repo_id = i.repo_id;

CREATE VIEW aveloxis_augur_data.contributors WITH (security_invoker = true) AS
SELECT c.cntrb_id, c.cntrb_login::varchar AS cntrb_login, c.cntrb_email::varchar AS cntrb_email,
       c.cntrb_full_name::varchar AS cntrb_full_name, c.cntrb_company::varchar AS cntrb_company,
       c.cntrb_created_at AT TIME ZONE 'UTC' AS cntrb_created_at, c.gh_type::varchar AS cntrb_type,
       0::smallint AS cntrb_fake, c.cntrb_deleted, NULL::numeric(11, 8) AS cntrb_long,
       NULL::numeric(10, 8) AS cntrb_lat, NULL::char(3) AS cntrb_country_code, NULL::varchar AS cntrb_state,
       NULL::varchar AS cntrb_city, c.cntrb_location::varchar AS cntrb_location,
       c.cntrb_canonical::varchar AS cntrb_canonical, NULL::timestamptz AS cntrb_last_used,
       c.gh_user_id, c.gh_login::varchar AS gh_login, c.gh_url::varchar AS gh_url,
       c.gh_html_url::varchar AS gh_html_url, c.gh_node_id::varchar AS gh_node_id,
       c.gh_avatar_url::varchar AS gh_avatar_url, c.gh_gravatar_id::varchar AS gh_gravatar_id,
       NULL::varchar AS gh_followers_url, NULL::varchar AS gh_following_url, NULL::varchar AS gh_gists_url,
       NULL::varchar AS gh_starred_url, NULL::varchar AS gh_subscriptions_url,
       NULL::varchar AS gh_organizations_url, NULL::varchar AS gh_repos_url, NULL::varchar AS gh_events_url,
       NULL::varchar AS gh_received_events_url, c.gh_type::varchar AS gh_type,
       c.gh_site_admin::varchar AS gh_site_admin, c.gl_web_url::varchar AS gl_web_url,
       c.gl_avatar_url::varchar AS gl_avatar_url, c.gl_state::varchar AS gl_state,
       c.gl_username::varchar AS gl_username, c.gl_full_name::varchar AS gl_full_name, c.gl_id,
       c.tool_source::varchar AS tool_source, c.tool_version::varchar AS tool_version,
       c.data_source::varchar AS data_source, c.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.contributors c;

-- Augur numbers aliases; ours are keyed by the email, so the id is a stable hash of it.
CREATE VIEW aveloxis_augur_data.contributors_aliases WITH (security_invoker = true) AS
SELECT hashtextextended(a.alias_email, 0) AS cntrb_alias_id, a.cntrb_id,
       coalesce(a.canonical_email, a.alias_email)::varchar AS canonical_email, a.alias_email::varchar AS alias_email,
       1::smallint AS cntrb_active, a.data_collection_date AT TIME ZONE 'UTC' AS cntrb_last_modified,
       a.tool_source::varchar AS tool_source, a.tool_version::varchar AS tool_version,
       a.data_source::varchar AS data_source, a.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.contributors_aliases a;

CREATE VIEW aveloxis_augur_data.commits WITH (security_invoker = true) AS
SELECT c.cmt_id, c.repo_id, c.cmt_commit_hash::varchar(80) AS cmt_commit_hash,
       c.cmt_author_name::varchar AS cmt_author_name, c.cmt_author_raw_email::varchar AS cmt_author_raw_email,
       c.cmt_author_email::varchar AS cmt_author_email, c.cmt_author_date::varchar(10) AS cmt_author_date,
       c.cmt_author_affiliation::varchar AS cmt_author_affiliation,
       c.cmt_committer_name::varchar AS cmt_committer_name,
       c.cmt_committer_raw_email::varchar AS cmt_committer_raw_email,
       c.cmt_committer_email::varchar AS cmt_committer_email, c.cmt_committer_date::varchar AS cmt_committer_date,
       c.cmt_committer_affiliation::varchar AS cmt_committer_affiliation, c.cmt_added, c.cmt_removed,
       c.cmt_whitespace, c.cmt_filename::varchar AS cmt_filename,
       c.cmt_date_attempted AT TIME ZONE 'UTC' AS cmt_date_attempted, c.cmt_ght_author_id,
       NULL::integer AS cmt_ght_committer_id, c.cmt_ght_committed_at AT TIME ZONE 'UTC' AS cmt_ght_committed_at,
       c.cmt_committer_timestamp, c.cmt_author_timestamp,
       c.cmt_author_platform_username::varchar AS cmt_author_platform_username,
       c.tool_source::varchar AS tool_source, c.tool_version::varchar AS tool_version,
       c.data_source::varchar AS data_source, c.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.commits c;

-- Issues only (Augur's issues table holds no pull requests either: pull_request and
-- pull_request_id are NULL). cntrb_id is who closed it: the issue's closed_by, else the
-- actor of its last 'closed' event (the issues list carries no closed_by).
CREATE VIEW aveloxis_augur_data.issues WITH (security_invoker = true) AS
SELECT i.issue_id, i.repo_id, i.reporter_id, NULL::bigint AS pull_request, NULL::bigint AS pull_request_id,
       i.created_at AT TIME ZONE 'UTC' AS created_at, i.issue_title::varchar AS issue_title,
       i.issue_body::varchar AS issue_body,
       coalesce(i.closed_by_id,
                CASE WHEN i.closed_at IS NOT NULL THEN
                    (SELECT e.cntrb_id FROM aveloxis_data.issue_events e
                     WHERE e.issue_id = i.issue_id AND e.action = 'closed'
                     ORDER BY e.created_at DESC, e.event_id DESC LIMIT 1) END) AS cntrb_id,
       i.comment_count::bigint AS comment_count, i.updated_at AT TIME ZONE 'UTC' AS updated_at,
       i.closed_at AT TIME ZONE 'UTC' AS closed_at, NULL::timestamp AS due_on, NULL::varchar AS repository_url,
       i.issue_url::varchar AS issue_url, NULL::varchar AS labels_url, NULL::varchar AS comments_url,
       NULL::varchar AS events_url, i.html_url::varchar AS html_url, i.issue_state::varchar AS issue_state,
       i.node_id::varchar AS issue_node_id, i.issue_number::bigint AS gh_issue_number,
       i.platform_issue_id AS gh_issue_id,
       (SELECT c.gh_user_id FROM aveloxis_data.contributors c WHERE c.cntrb_id = i.reporter_id) AS gh_user_id,
       i.tool_source::varchar AS tool_source, i.tool_version::varchar AS tool_version,
       i.data_source::varchar AS data_source, i.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.issues i;

-- pr_src_state is GitHub's state ('open' or 'closed'; a merged pull request is closed).
CREATE VIEW aveloxis_augur_data.pull_requests WITH (security_invoker = true) AS
SELECT p.pull_request_id, p.repo_id, p.pr_url::varchar AS pr_url, p.platform_pr_id AS pr_src_id,
       p.node_id::varchar AS pr_src_node_id, p.pr_html_url::varchar AS pr_html_url,
       p.pr_diff_url::varchar AS pr_diff_url, NULL::varchar AS pr_patch_url, NULL::varchar AS pr_issue_url,
       NULL::bigint AS pr_augur_issue_id, p.pr_number::bigint AS pr_src_number,
       (CASE p.pr_state WHEN 'merged' THEN 'closed' ELSE p.pr_state END)::varchar AS pr_src_state,
       p.pr_locked AS pr_src_locked, p.pr_title::varchar AS pr_src_title, p.author_id AS pr_augur_contributor_id,
       p.pr_body, p.created_at AT TIME ZONE 'UTC' AS pr_created_at, p.updated_at AT TIME ZONE 'UTC' AS pr_updated_at,
       p.closed_at AT TIME ZONE 'UTC' AS pr_closed_at, p.merged_at AT TIME ZONE 'UTC' AS pr_merged_at,
       p.merge_commit_sha::varchar AS pr_merge_commit_sha, NULL::bigint AS pr_teams, NULL::varchar AS pr_milestone,
       NULL::varchar AS pr_commits_url, NULL::varchar AS pr_review_comments_url,
       NULL::varchar AS pr_review_comment_url, NULL::varchar AS pr_comments_url, NULL::varchar AS pr_statuses_url,
       (SELECT m.pr_src_meta_label FROM aveloxis_data.pull_request_meta m
        WHERE m.pull_request_id = p.pull_request_id AND m.pr_head_or_base = 'head')::varchar AS pr_meta_head_id,
       (SELECT m.pr_src_meta_label FROM aveloxis_data.pull_request_meta m
        WHERE m.pull_request_id = p.pull_request_id AND m.pr_head_or_base = 'base')::varchar AS pr_meta_base_id,
       NULL::varchar AS pr_src_issue_url, NULL::varchar AS pr_src_comments_url,
       NULL::varchar AS pr_src_review_comments_url, NULL::varchar AS pr_src_commits_url,
       NULL::varchar AS pr_src_statuses_url, p.pr_author_association::varchar AS pr_src_author_association,
       p.tool_source::varchar AS tool_source, p.tool_version::varchar AS tool_version,
       p.data_source::varchar AS data_source, p.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.pull_requests p;

CREATE VIEW aveloxis_augur_data.releases WITH (security_invoker = true) AS
SELECT r.release_id::char(256) AS release_id, r.repo_id, r.release_name::varchar AS release_name,
       r.release_description::varchar AS release_description, r.release_author::varchar AS release_author,
       r.release_created_at AT TIME ZONE 'UTC' AS release_created_at,
       r.release_published_at AT TIME ZONE 'UTC' AS release_published_at,
       r.release_updated_at AT TIME ZONE 'UTC' AS release_updated_at, r.release_is_draft, r.release_is_prerelease,
       r.release_tag_name::varchar AS release_tag_name, r.release_url::varchar AS release_url, false AS tag_only,
       r.tool_source::varchar AS tool_source, r.tool_version::varchar AS tool_version,
       r.data_source::varchar AS data_source, r.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.releases r;

CREATE VIEW aveloxis_augur_data.message WITH (security_invoker = true) AS
SELECT m.msg_id, NULL::bigint AS rgls_id, m.platform_msg_id, m.node_id::varchar AS platform_node_id, m.repo_id,
       m.cntrb_id, m.msg_text::varchar AS msg_text, m.msg_timestamp AT TIME ZONE 'UTC' AS msg_timestamp,
       NULL::varchar AS msg_sender_email, NULL::varchar AS msg_header, m.platform_id::bigint AS pltfrm_id,
       m.tool_source::varchar AS tool_source, m.tool_version::varchar AS tool_version,
       m.data_source::varchar AS data_source, m.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.messages m;

CREATE VIEW aveloxis_augur_data.repo_labor WITH (security_invoker = true) AS
SELECT l.repo_labor_id, l.repo_id, l.repo_clone_date AT TIME ZONE 'UTC' AS repo_clone_date,
       l.rl_analysis_date AT TIME ZONE 'UTC' AS rl_analysis_date,
       l.programming_language::varchar AS programming_language, l.file_path::varchar AS file_path,
       l.file_name::varchar AS file_name, l.total_lines, l.code_lines, l.comment_lines, l.blank_lines,
       l.code_complexity, l.repo_url::varchar AS repo_url, l.tool_source::varchar AS tool_source,
       l.tool_version::varchar AS tool_version, l.data_source::varchar AS data_source,
       l.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.repo_labor l;

CREATE VIEW aveloxis_augur_data.repo_deps_libyear WITH (security_invoker = true) AS
SELECT l.repo_deps_libyear_id, l.repo_id, l.name::varchar AS name, l.requirement::varchar AS requirement,
       l.type::varchar AS type, l.package_manager::varchar AS package_manager,
       l.current_verion::varchar AS current_verion, l.latest_version::varchar AS latest_version,
       l.current_release_date::varchar AS current_release_date,
       l.latest_release_date::varchar AS latest_release_date, l.libyear,
       l.tool_source::varchar AS tool_source, l.tool_version::varchar AS tool_version,
       l.data_source::varchar AS data_source, l.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.repo_deps_libyear l;

CREATE VIEW aveloxis_augur_data.repo_deps_scorecard WITH (security_invoker = true) AS
SELECT s.repo_deps_scorecard_id, s.repo_id, s.name::varchar AS name, s.scorecard_check_details,
       s.score::varchar AS score, s.tool_source::varchar AS tool_source, s.tool_version::varchar AS tool_version,
       s.data_source::varchar AS data_source, s.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.repo_deps_scorecard s;

-- The children 8Knot's views are built from, and that Augur users query, under Augur's
-- names and columns. Columns we do not keep (tool_source on some children, URLs Augur
-- copies from the API) are NULL of Augur's type.
CREATE VIEW aveloxis_augur_data.issue_events WITH (security_invoker = true) AS
SELECT e.event_id, e.issue_id, e.repo_id, e.cntrb_id, e.action::varchar AS action,
       e.action_commit_hash::varchar AS action_commit_hash, e.created_at AT TIME ZONE 'UTC' AS created_at,
       e.node_id::varchar AS node_id, NULL::varchar AS node_url, e.platform_id::bigint AS platform_id,
       e.platform_event_id AS issue_event_src_id, NULL::varchar AS tool_source, NULL::varchar AS tool_version,
       NULL::varchar AS data_source, e.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.issue_events e;

CREATE VIEW aveloxis_augur_data.pull_request_events WITH (security_invoker = true) AS
SELECT e.pr_event_id, e.pull_request_id, e.repo_id, e.cntrb_id, e.action::varchar AS action,
       e.action_commit_hash::varchar AS action_commit_hash, e.created_at AT TIME ZONE 'UTC' AS created_at,
       e.platform_event_id AS issue_event_src_id, e.node_id::varchar AS node_id, NULL::varchar AS node_url,
       e.platform_id::bigint AS platform_id, e.platform_event_id AS pr_platform_event_id,
       NULL::varchar AS tool_source, NULL::varchar AS tool_version, NULL::varchar AS data_source,
       e.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.pull_request_events e;

CREATE VIEW aveloxis_augur_data.pull_request_reviews WITH (security_invoker = true) AS
SELECT v.pr_review_id, v.pull_request_id, v.repo_id, v.cntrb_id,
       v.author_association::varchar AS pr_review_author_association, v.review_state::varchar AS pr_review_state,
       v.review_body::varchar AS pr_review_body, v.submitted_at AT TIME ZONE 'UTC' AS pr_review_submitted_at,
       v.platform_review_id AS pr_review_src_id, v.node_id::varchar AS pr_review_node_id,
       v.html_url::varchar AS pr_review_html_url, NULL::varchar AS pr_review_pull_request_url,
       v.commit_id::varchar AS pr_review_commit_id,
       (SELECT r.platform_id::bigint FROM aveloxis_data.repos r WHERE r.repo_id = v.repo_id) AS platform_id,
       NULL::varchar AS tool_source, NULL::varchar AS tool_version, NULL::varchar AS data_source,
       v.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.pull_request_reviews v;

CREATE VIEW aveloxis_augur_data.issue_message_ref WITH (security_invoker = true) AS
SELECT x.issue_msg_ref_id, x.issue_id, x.repo_id, x.msg_id,
       (SELECT m.node_id FROM aveloxis_data.messages m WHERE m.msg_id = x.msg_id)::varchar AS issue_msg_ref_src_node_id,
       x.platform_src_id AS issue_msg_ref_src_comment_id, x.tool_source::varchar AS tool_source,
       x.tool_version::varchar AS tool_version, x.data_source::varchar AS data_source,
       x.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.issue_message_ref x;

CREATE VIEW aveloxis_augur_data.pull_request_message_ref WITH (security_invoker = true) AS
SELECT x.pr_msg_ref_id, x.pull_request_id, x.repo_id, x.msg_id, x.platform_src_id AS pr_message_ref_src_comment_id,
       (SELECT m.node_id FROM aveloxis_data.messages m WHERE m.msg_id = x.msg_id)::varchar AS pr_message_ref_src_node_id,
       NULL::varchar AS pr_issue_url, NULL::varchar AS tool_source, NULL::varchar AS tool_version,
       NULL::varchar AS data_source, x.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.pull_request_message_ref x;

-- Augur's review messages are the diff comments (review_comments here); a review's own
-- body is pull_request_reviews.pr_review_body.
CREATE VIEW aveloxis_augur_data.pull_request_review_message_ref WITH (security_invoker = true) AS
SELECT c.review_comment_id AS pr_review_msg_ref_id, c.pr_review_id, c.repo_id, c.msg_id,
       NULL::varchar AS pr_review_msg_url, c.platform_review_id AS pr_review_src_id,
       c.platform_src_id AS pr_review_msg_src_id, m.node_id::varchar AS pr_review_msg_node_id,
       c.diff_hunk::varchar AS pr_review_msg_diff_hunk, c.path::varchar AS pr_review_msg_path,
       c."position"::bigint AS pr_review_msg_position, c.original_position::bigint AS pr_review_msg_original_position,
       c.commit_id::varchar AS pr_review_msg_commit_id, c.original_commit_id::varchar AS pr_review_msg_original_commit_id,
       m.msg_updated_at AT TIME ZONE 'UTC' AS pr_review_msg_updated_at, m.msg_html_url::varchar AS pr_review_msg_html_url,
       NULL::varchar AS pr_url, c.author_association::varchar AS pr_review_msg_author_association,
       NULL::bigint AS pr_review_msg_start_line, NULL::bigint AS pr_review_msg_original_start_line,
       NULL::varchar AS pr_review_msg_start_side, c.line::bigint AS pr_review_msg_line,
       c.original_line::bigint AS pr_review_msg_original_line, c.side::varchar AS pr_review_msg_side,
       NULL::varchar AS tool_source, NULL::varchar AS tool_version, NULL::varchar AS data_source,
       c.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.review_comments c
JOIN aveloxis_data.messages m ON m.msg_id = c.msg_id;

CREATE VIEW aveloxis_augur_data.issue_labels WITH (security_invoker = true) AS
SELECT l.issue_label_id, l.issue_id, l.repo_id, l.label_text::varchar AS label_text,
       l.label_description::varchar AS label_description, l.label_color::varchar AS label_color,
       l.platform_label_id AS label_src_id, NULL::varchar AS label_src_node_id, l.tool_source::varchar AS tool_source,
       l.tool_version::varchar AS tool_version, l.data_source::varchar AS data_source,
       l.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.issue_labels l;

CREATE VIEW aveloxis_augur_data.pull_request_labels WITH (security_invoker = true) AS
SELECT l.pr_label_id, l.pull_request_id, l.repo_id, l.platform_label_id AS pr_src_id, NULL::varchar AS pr_src_node_id,
       NULL::varchar AS pr_src_url, l.label_name::varchar AS pr_src_description, l.label_color::varchar AS pr_src_color,
       NULL::boolean AS pr_src_default_bool, NULL::varchar AS tool_source, NULL::varchar AS tool_version,
       NULL::varchar AS data_source, l.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.pull_request_labels l;

CREATE VIEW aveloxis_augur_data.issue_assignees WITH (security_invoker = true) AS
SELECT a.issue_assignee_id, a.issue_id, a.repo_id, a.cntrb_id, a.platform_assignee_id AS issue_assignee_src_id,
       NULL::varchar AS issue_assignee_src_node, a.tool_source::varchar AS tool_source,
       a.tool_version::varchar AS tool_version, a.data_source::varchar AS data_source,
       a.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.issue_assignees a;

CREATE VIEW aveloxis_augur_data.pull_request_assignees WITH (security_invoker = true) AS
SELECT a.pr_assignee_id AS pr_assignee_map_id, a.pull_request_id, a.repo_id, a.cntrb_id AS contrib_id,
       a.platform_assignee_id AS pr_assignee_src_id, NULL::varchar AS tool_source, NULL::varchar AS tool_version,
       NULL::varchar AS data_source, a.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.pull_request_assignees a;

CREATE VIEW aveloxis_augur_data.pull_request_reviewers WITH (security_invoker = true) AS
SELECT r.pr_reviewer_id AS pr_reviewer_map_id, r.pull_request_id,
       (SELECT p.platform_pr_id FROM aveloxis_data.pull_requests p WHERE p.pull_request_id = r.pull_request_id)
           AS pr_source_id,
       r.repo_id, r.cntrb_id, r.platform_reviewer_id AS pr_reviewer_src_id, NULL::varchar AS tool_source,
       NULL::varchar AS tool_version, NULL::varchar AS data_source,
       r.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.pull_request_reviewers r;

CREATE VIEW aveloxis_augur_data.pull_request_commits WITH (security_invoker = true) AS
SELECT c.pr_cmt_id, c.pull_request_id, c.repo_id, c.pr_cmt_sha::varchar AS pr_cmt_sha,
       c.pr_cmt_node_id::varchar AS pr_cmt_node_id, c.pr_cmt_message::varchar AS pr_cmt_message,
       NULL::varchar AS pr_cmt_comments_url, c.pr_cmt_author_cntrb_id,
       c.pr_cmt_timestamp AT TIME ZONE 'UTC' AS pr_cmt_timestamp, c.pr_cmt_author_email::varchar AS pr_cmt_author_email,
       NULL::varchar AS tool_source, NULL::varchar AS tool_version, NULL::varchar AS data_source,
       c.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.pull_request_commits c;

CREATE VIEW aveloxis_augur_data.pull_request_files WITH (security_invoker = true) AS
SELECT f.pr_file_id, f.pull_request_id, f.repo_id, f.pr_file_additions::bigint AS pr_file_additions,
       f.pr_file_deletions::bigint AS pr_file_deletions, f.pr_file_path::varchar AS pr_file_path,
       NULL::varchar AS tool_source, NULL::varchar AS tool_version, NULL::varchar AS data_source,
       f.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.pull_request_files f;

CREATE VIEW aveloxis_augur_data.pull_request_meta WITH (security_invoker = true) AS
SELECT m.pr_repo_meta_id, m.pull_request_id, m.repo_id, m.pr_head_or_base::varchar AS pr_head_or_base,
       m.pr_src_meta_label::varchar AS pr_src_meta_label, m.pr_src_meta_ref::varchar AS pr_src_meta_ref,
       m.pr_sha::varchar AS pr_sha, m.cntrb_id, NULL::varchar AS tool_source, NULL::varchar AS tool_version,
       NULL::varchar AS data_source, m.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.pull_request_meta m;

-- From sql/matviews.sql
-- The 22 materialized views of Augur (and the Go system), in aveloxis_augur_data under
-- Augur's names and columns, built over aveloxis_data. Each has a unique index so that
-- aveloxis.refresh_views() (sql/refresh.sql) refreshes it CONCURRENTLY: 8Knot's readers
-- are never blocked. Where Augur's semantics are wrong for what 8Knot's charts assume,
-- these views do it right; docs/analytics.md lists each difference.
--
-- Times: Augur's naive `timestamp` columns are the UTC wall time (AT TIME ZONE 'UTC',
-- never a ::timestamp cast that reads the session's TimeZone); commit times and
-- explorer_contributor_actions.created_at stay timestamptz, as in Augur.
-- Rows about an unknown contributor (NULL id: a commit author not resolved yet, a
-- deleted account) are left out of the per-contributor views: they cannot be ranked.

-- Every action of every known contributor, one row each, live over the base tables:
-- the source of explorer_contributor_actions (and its three dependents) and of the
-- analyst API (sql/analyst_api.sql).
CREATE VIEW aveloxis_data.contributor_actions WITH (security_invoker = true) AS
-- One row per commit (commits holds one row per changed file).
SELECT cm.cmt_ght_author_id AS cntrb_id, min(cm.cmt_author_timestamp) AS created_at, cm.repo_id,
       'commit'::text AS action, min(cm.cmt_id) AS source_id
FROM aveloxis_data.commits cm
WHERE cm.cmt_ght_author_id IS NOT NULL AND cm.cmt_author_timestamp IS NOT NULL
GROUP BY cm.repo_id, cm.cmt_commit_hash, cm.cmt_ght_author_id
UNION ALL
SELECT i.reporter_id, i.created_at, i.repo_id, 'issue_opened', i.issue_id
FROM aveloxis_data.issues i WHERE i.reporter_id IS NOT NULL AND i.created_at IS NOT NULL
UNION ALL
SELECT e.cntrb_id, e.created_at, e.repo_id, 'issue_closed', e.event_id
FROM aveloxis_data.issue_events e
WHERE e.action = 'closed' AND e.cntrb_id IS NOT NULL AND e.created_at IS NOT NULL
UNION ALL
SELECT p.author_id, p.created_at, p.repo_id, 'pull_request_open', p.pull_request_id
FROM aveloxis_data.pull_requests p WHERE p.author_id IS NOT NULL AND p.created_at IS NOT NULL
UNION ALL
SELECT e.cntrb_id, e.created_at, e.repo_id, 'pull_request_closed', e.pr_event_id
FROM aveloxis_data.pull_request_events e JOIN aveloxis_data.pull_requests p USING (pull_request_id)
WHERE e.action = 'closed' AND p.merged_at IS NULL AND e.cntrb_id IS NOT NULL AND e.created_at IS NOT NULL
UNION ALL
SELECT e.cntrb_id, e.created_at, e.repo_id, 'pull_request_merged', e.pr_event_id
FROM aveloxis_data.pull_request_events e
WHERE e.action = 'merged' AND e.cntrb_id IS NOT NULL AND e.created_at IS NOT NULL
UNION ALL
SELECT v.cntrb_id, v.submitted_at, v.repo_id, 'pull_request_review_' || v.review_state, v.pr_review_id
FROM aveloxis_data.pull_request_reviews v
WHERE v.cntrb_id IS NOT NULL AND v.submitted_at IS NOT NULL AND v.review_state IS NOT NULL
UNION ALL
-- Conversation comments and diff (review) comments: both are comments on the PR.
SELECT m.cntrb_id, m.msg_timestamp, m.repo_id, 'pull_request_comment', m.msg_id
FROM aveloxis_data.messages m
WHERE m.msg_source IN ('issue_comment', 'review_comment') AND m.cntrb_id IS NOT NULL
  AND m.msg_timestamp IS NOT NULL
  AND (EXISTS (SELECT FROM aveloxis_data.pull_request_message_ref x WHERE x.msg_id = m.msg_id)
       OR EXISTS (SELECT FROM aveloxis_data.review_comments x WHERE x.msg_id = m.msg_id))
UNION ALL
-- Credited to the comment's author (Augur credits the issue's reporter), on open
-- issues too (Augur's closed_at <> msg_timestamp drops them).
SELECT m.cntrb_id, m.msg_timestamp, m.repo_id, 'issue_comment', m.msg_id
FROM aveloxis_data.messages m
WHERE m.msg_source = 'issue_comment' AND m.cntrb_id IS NOT NULL AND m.msg_timestamp IS NOT NULL
  AND EXISTS (SELECT FROM aveloxis_data.issue_message_ref x WHERE x.msg_id = m.msg_id);
COMMENT ON VIEW aveloxis_data.contributor_actions IS 'Every action of every known contributor (live; explorer_contributor_actions is its ranked snapshot)';

-- rank 1 is the contributor's FIRST action in the repository (8Knot's "first
-- contribution" charts read rank = 1; Augur ranks newest first).
CREATE MATERIALIZED VIEW aveloxis_augur_data.explorer_contributor_actions AS
SELECT a.cntrb_id, a.created_at, a.repo_id, a.action, r.repo_name::varchar AS repo_name,
       c.cntrb_login::varchar AS login,
       row_number() OVER (PARTITION BY a.cntrb_id, a.repo_id ORDER BY a.created_at, a.action, a.source_id) AS rank
FROM aveloxis_data.contributor_actions a
JOIN aveloxis_data.repos r ON r.repo_id = a.repo_id
LEFT JOIN aveloxis_data.contributors c ON c.cntrb_id = a.cntrb_id;
CREATE UNIQUE INDEX explorer_contributor_actions_key ON aveloxis_augur_data.explorer_contributor_actions
    (cntrb_id, created_at, repo_id, action, repo_name, login, rank);
CREATE INDEX explorer_contributor_actions_repo_idx ON aveloxis_augur_data.explorer_contributor_actions (repo_id);

CREATE MATERIALIZED VIEW aveloxis_augur_data.api_get_all_repo_prs AS
SELECT p.repo_id, count(*) AS pull_requests_all_time
FROM aveloxis_data.pull_requests p GROUP BY p.repo_id;
CREATE UNIQUE INDEX api_get_all_repo_prs_key ON aveloxis_augur_data.api_get_all_repo_prs (repo_id);

CREATE MATERIALIZED VIEW aveloxis_augur_data.api_get_all_repos_commits AS
SELECT cm.repo_id, count(DISTINCT cm.cmt_commit_hash) AS commits_all_time
FROM aveloxis_data.commits cm GROUP BY cm.repo_id;
CREATE UNIQUE INDEX api_get_all_repos_commits_key ON aveloxis_augur_data.api_get_all_repos_commits (repo_id);

-- aveloxis_data.issues holds no pull requests.
CREATE MATERIALIZED VIEW aveloxis_augur_data.api_get_all_repos_issues AS
SELECT i.repo_id, count(*) AS issues_all_time
FROM aveloxis_data.issues i GROUP BY i.repo_id;
CREATE UNIQUE INDEX api_get_all_repos_issues_key ON aveloxis_augur_data.api_get_all_repos_issues (repo_id);

CREATE MATERIALIZED VIEW aveloxis_augur_data.explorer_entry_list AS
SELECT r.repo_git::varchar AS repo_git, r.repo_id, r.repo_name::varchar AS repo_name, g.rg_name::varchar AS rg_name
FROM aveloxis_data.repos r JOIN aveloxis_data.repo_groups g USING (repo_group_id);
CREATE UNIQUE INDEX explorer_entry_list_key ON aveloxis_augur_data.explorer_entry_list (repo_id);

-- Per committer date (git's local 'YYYY-MM-DD', as Augur): commits, and distinct
-- committers. Augur counts (commit, file) rows as commits; these are commits.
CREATE MATERIALIZED VIEW aveloxis_augur_data.explorer_commits_and_committers_daily_count AS
SELECT r.repo_id, r.repo_name::varchar AS repo_name, cm.cmt_committer_date::varchar AS cmt_committer_date,
       count(DISTINCT cm.cmt_commit_hash) AS num_of_commits,
       count(DISTINCT cm.cmt_committer_raw_email) AS num_of_unique_committers
FROM aveloxis_data.commits cm JOIN aveloxis_data.repos r USING (repo_id)
WHERE cm.cmt_committer_date IS NOT NULL
GROUP BY r.repo_id, r.repo_name, cm.cmt_committer_date;
CREATE UNIQUE INDEX explorer_commits_and_committers_daily_count_key
    ON aveloxis_augur_data.explorer_commits_and_committers_daily_count (repo_id, cmt_committer_date);

-- Libyear: each repository's own rows (Augur and the Go system cross-join every
-- repository with every libyear row), by the month of the scan.
CREATE MATERIALIZED VIEW aveloxis_augur_data.explorer_libyear_all AS
SELECT r.repo_id, r.repo_name::varchar AS repo_name, avg(l.libyear) AS avg_libyear,
       date_part('month', l.data_collection_date AT TIME ZONE 'UTC') AS month,
       date_part('year', l.data_collection_date AT TIME ZONE 'UTC') AS year
FROM aveloxis_data.repo_deps_libyear l JOIN aveloxis_data.repos r USING (repo_id)
GROUP BY r.repo_id, r.repo_name, 4, 5;
CREATE UNIQUE INDEX explorer_libyear_all_key ON aveloxis_augur_data.explorer_libyear_all (repo_id, year, month);

CREATE MATERIALIZED VIEW aveloxis_augur_data.explorer_libyear_summary AS
SELECT r.repo_id, r.repo_name::varchar AS repo_name, avg(l.libyear) AS avg_libyear,
       date_part('month', l.data_collection_date AT TIME ZONE 'UTC') AS month,
       date_part('year', l.data_collection_date AT TIME ZONE 'UTC') AS year
FROM aveloxis_data.repo_deps_libyear l JOIN aveloxis_data.repos r USING (repo_id)
GROUP BY r.repo_id, r.repo_name, 4, 5;
CREATE UNIQUE INDEX explorer_libyear_summary_key ON aveloxis_augur_data.explorer_libyear_summary (repo_id, year, month);

-- The latest scan's dependencies of each repository.
CREATE MATERIALIZED VIEW aveloxis_augur_data.explorer_libyear_detail AS
SELECT r.repo_id, r.repo_name::varchar AS repo_name, l.name::varchar AS name, l.requirement::varchar AS requirement,
       l.current_verion::varchar AS current_verion, l.latest_version::varchar AS latest_version,
       l.current_release_date::varchar AS current_release_date, l.libyear,
       l.data_collection_date AT TIME ZONE 'UTC' AS max, l.repo_deps_libyear_id
FROM aveloxis_data.repo_deps_libyear l JOIN aveloxis_data.repos r USING (repo_id)
WHERE l.data_collection_date = (SELECT max(x.data_collection_date) FROM aveloxis_data.repo_deps_libyear x
                                WHERE x.repo_id = l.repo_id);
CREATE UNIQUE INDEX explorer_libyear_detail_key ON aveloxis_augur_data.explorer_libyear_detail (repo_id, repo_deps_libyear_id);

-- A contributor's first seven actions in each repository (rank 1 = the first).
CREATE MATERIALIZED VIEW aveloxis_augur_data.explorer_new_contributors AS
SELECT a.cntrb_id, a.created_at,
       date_part('month', a.created_at AT TIME ZONE 'UTC') AS month,
       date_part('year', a.created_at AT TIME ZONE 'UTC') AS year,
       a.repo_id, a.repo_name, c.cntrb_full_name::varchar AS full_name, a.login, a.rank
FROM aveloxis_augur_data.explorer_contributor_actions a
LEFT JOIN aveloxis_data.contributors c ON c.cntrb_id = a.cntrb_id
WHERE a.rank <= 7;
CREATE UNIQUE INDEX explorer_new_contributors_key ON aveloxis_augur_data.explorer_new_contributors
    (cntrb_id, created_at, month, year, repo_id, full_name, repo_name, login, rank);

-- The action that made each contributor new to each repository.
CREATE MATERIALIZED VIEW aveloxis_augur_data.augur_new_contributors AS
SELECT a.cntrb_id, a.created_at, a.repo_id, a.action, a.repo_name, a.login, a.rank
FROM aveloxis_augur_data.explorer_contributor_actions a
WHERE a.rank = 1;
CREATE UNIQUE INDEX augur_new_contributors_key ON aveloxis_augur_data.augur_new_contributors
    (cntrb_id, created_at, repo_id, repo_name, login, rank);

-- Every pull request, with its assignment events (one row with NULLs when none).
CREATE MATERIALIZED VIEW aveloxis_augur_data.explorer_pr_assignments AS
SELECT p.pull_request_id, p.repo_id AS id,
       p.created_at AT TIME ZONE 'UTC' AS created, p.closed_at AT TIME ZONE 'UTC' AS closed,
       e.created_at AT TIME ZONE 'UTC' AS assign_date, e.action::varchar AS assignment_action,
       coalesce(e.assignee_id, e.cntrb_id) AS assignee,
       coalesce(e.node_id, 'event:' || e.platform_event_id)::varchar AS node_id
FROM aveloxis_data.pull_requests p
LEFT JOIN aveloxis_data.pull_request_events e
       ON e.pull_request_id = p.pull_request_id AND e.action IN ('assigned', 'unassigned');
CREATE UNIQUE INDEX explorer_pr_assignments_key ON aveloxis_augur_data.explorer_pr_assignments (pull_request_id, id, node_id);
-- 8Knot reads these views by repository (WHERE id IN (...)).
CREATE INDEX explorer_pr_assignments_repo_idx ON aveloxis_augur_data.explorer_pr_assignments (id);

-- Exactly Augur's seven columns (8Knot copies SELECT * into a 7-column table): every
-- pull request with each message on it (conversation, review bodies and diff
-- comments), one row with NULLs when it has none. UNION de-duplicates, as Augur.
CREATE MATERIALIZED VIEW aveloxis_augur_data.explorer_pr_response AS
SELECT p.pull_request_id, p.repo_id AS id, p.author_id AS cntrb_id,
       m.msg_timestamp AT TIME ZONE 'UTC' AS msg_timestamp, m.msg_cntrb_id,
       p.created_at AT TIME ZONE 'UTC' AS pr_created_at, p.closed_at AT TIME ZONE 'UTC' AS pr_closed_at
FROM aveloxis_data.pull_requests p
LEFT JOIN (
    SELECT x.pull_request_id, m.msg_timestamp, m.cntrb_id AS msg_cntrb_id
    FROM aveloxis_data.pull_request_message_ref x JOIN aveloxis_data.messages m USING (msg_id)
    UNION
    SELECT v.pull_request_id, m.msg_timestamp, m.cntrb_id
    FROM aveloxis_data.pull_request_review_message_ref x
    JOIN aveloxis_data.pull_request_reviews v USING (pr_review_id)
    JOIN aveloxis_data.messages m ON m.msg_id = x.msg_id
    UNION
    SELECT x.pull_request_id, m.msg_timestamp, m.cntrb_id
    FROM aveloxis_data.review_comments x JOIN aveloxis_data.messages m USING (msg_id)
) m ON m.pull_request_id = p.pull_request_id;
CREATE UNIQUE INDEX explorer_pr_response_key ON aveloxis_augur_data.explorer_pr_response
    (pull_request_id, id, cntrb_id, msg_cntrb_id, msg_timestamp);
CREATE INDEX explorer_pr_response_repo_idx ON aveloxis_augur_data.explorer_pr_response (id);

-- Augur's web users and their repository groups. pg_aveloxis has no web users (8Knot
-- reads user groups from Augur's REST API, not SQL): the view exists, empty, so a
-- client that names it gets no error.
CREATE MATERIALIZED VIEW aveloxis_augur_data.explorer_user_repos AS
SELECT NULL::varchar AS login_name, NULL::bigint AS user_id, NULL::bigint AS group_id, NULL::bigint AS repo_id
WHERE false;
CREATE UNIQUE INDEX explorer_user_repos_key ON aveloxis_augur_data.explorer_user_repos (login_name, user_id, group_id, repo_id);

-- Per pull request: timings and event counts. Event and message counts come from
-- separate aggregates (Augur joins events to messages, multiplying both counts).
CREATE MATERIALIZED VIEW aveloxis_augur_data.explorer_pr_response_times AS
SELECT r.repo_id, p.platform_pr_id AS pr_src_id, r.repo_name::varchar AS repo_name,
       p.pr_author_association::varchar AS pr_src_author_association, g.rg_name::varchar AS repo_group,
       p.pr_state::varchar AS pr_src_state,
       p.merged_at AT TIME ZONE 'UTC' AS pr_merged_at, p.created_at AT TIME ZONE 'UTC' AS pr_created_at,
       p.closed_at AT TIME ZONE 'UTC' AS pr_closed_at,
       date_part('year', p.created_at AT TIME ZONE 'UTC') AS created_year,
       date_part('month', p.created_at AT TIME ZONE 'UTC') AS created_month,
       date_part('year', p.closed_at AT TIME ZONE 'UTC') AS closed_year,
       date_part('month', p.closed_at AT TIME ZONE 'UTC') AS closed_month,
       b.pr_src_meta_label::varchar AS pr_src_meta_label, b.pr_head_or_base::varchar AS pr_head_or_base,
       extract(epoch FROM p.closed_at - p.created_at) / 3600 AS hours_to_close,
       extract(epoch FROM p.closed_at - p.created_at) / 86400 AS days_to_close,
       extract(epoch FROM mt.first_response_time - p.created_at) / 3600 AS hours_to_first_response,
       extract(epoch FROM mt.first_response_time - p.created_at) / 86400 AS days_to_first_response,
       extract(epoch FROM mt.last_response_time - p.created_at) / 3600 AS hours_to_last_response,
       extract(epoch FROM mt.last_response_time - p.created_at) / 86400 AS days_to_last_response,
       mt.first_response_time AT TIME ZONE 'UTC' AS first_response_time,
       mt.last_response_time AT TIME ZONE 'UTC' AS last_response_time,
       mt.average_time_between_responses,
       coalesce(ev.assigned_count, 0) AS assigned_count,
       coalesce(ev.review_requested_count, 0) AS review_requested_count,
       coalesce(ev.labeled_count, 0) AS labeled_count,
       coalesce(ev.subscribed_count, 0) AS subscribed_count,
       coalesce(ev.mentioned_count, 0) AS mentioned_count,
       coalesce(ev.referenced_count, 0) AS referenced_count,
       coalesce(ev.closed_count, 0) AS closed_count,
       coalesce(ev.head_ref_force_pushed_count, 0) AS head_ref_force_pushed_count,
       coalesce(ev.merged_count, 0) AS merged_count,
       coalesce(ev.milestoned_count, 0) AS milestoned_count,
       coalesce(ev.unlabeled_count, 0) AS unlabeled_count,
       coalesce(ev.head_ref_deleted_count, 0) AS head_ref_deleted_count,
       coalesce(mt.comment_count, 0) AS comment_count,
       p.pr_additions::bigint AS lines_added, p.pr_deletions::bigint AS lines_removed,
       coalesce(pc.commit_count, p.pr_commit_count) AS commit_count,
       p.pr_changed_files::bigint AS file_count
FROM aveloxis_data.pull_requests p
JOIN aveloxis_data.repos r ON r.repo_id = p.repo_id
JOIN aveloxis_data.repo_groups g ON g.repo_group_id = r.repo_group_id
LEFT JOIN aveloxis_data.pull_request_meta b ON b.pull_request_id = p.pull_request_id AND b.pr_head_or_base = 'base'
LEFT JOIN (
    SELECT e.pull_request_id,
           count(*) FILTER (WHERE e.action = 'assigned') AS assigned_count,
           count(*) FILTER (WHERE e.action = 'review_requested') AS review_requested_count,
           count(*) FILTER (WHERE e.action = 'labeled') AS labeled_count,
           count(*) FILTER (WHERE e.action = 'unlabeled') AS unlabeled_count,
           count(*) FILTER (WHERE e.action = 'subscribed') AS subscribed_count,
           count(*) FILTER (WHERE e.action = 'mentioned') AS mentioned_count,
           count(*) FILTER (WHERE e.action = 'referenced') AS referenced_count,
           count(*) FILTER (WHERE e.action = 'closed') AS closed_count,
           count(*) FILTER (WHERE e.action = 'head_ref_force_pushed') AS head_ref_force_pushed_count,
           count(*) FILTER (WHERE e.action = 'head_ref_deleted') AS head_ref_deleted_count,
           count(*) FILTER (WHERE e.action = 'milestoned') AS milestoned_count,
           count(*) FILTER (WHERE e.action = 'merged') AS merged_count
    FROM aveloxis_data.pull_request_events e GROUP BY e.pull_request_id
) ev ON ev.pull_request_id = p.pull_request_id
LEFT JOIN (
    SELECT x.pull_request_id, min(m.msg_timestamp) AS first_response_time, max(m.msg_timestamp) AS last_response_time,
           count(*) AS comment_count,
           (max(m.msg_timestamp) - min(m.msg_timestamp)) / count(*) AS average_time_between_responses
    FROM aveloxis_data.pull_request_message_ref x JOIN aveloxis_data.messages m USING (msg_id)
    GROUP BY x.pull_request_id
) mt ON mt.pull_request_id = p.pull_request_id
LEFT JOIN (
    SELECT c.pull_request_id, count(*) AS commit_count FROM aveloxis_data.pull_request_commits c
    GROUP BY c.pull_request_id
) pc ON pc.pull_request_id = p.pull_request_id;
CREATE UNIQUE INDEX explorer_pr_response_times_key ON aveloxis_augur_data.explorer_pr_response_times
    (repo_id, pr_src_id, pr_src_meta_label);

-- Every issue, with its assignment events (one row with NULLs when none).
CREATE MATERIALIZED VIEW aveloxis_augur_data.explorer_issue_assignments AS
SELECT i.issue_id, i.repo_id AS id,
       i.created_at AT TIME ZONE 'UTC' AS created, i.closed_at AT TIME ZONE 'UTC' AS closed,
       e.created_at AT TIME ZONE 'UTC' AS assign_date, e.action::varchar AS assignment_action,
       coalesce(e.assignee_id, e.cntrb_id) AS assignee,
       coalesce(e.node_id, 'event:' || e.platform_event_id)::varchar AS node_id
FROM aveloxis_data.issues i
LEFT JOIN aveloxis_data.issue_events e ON e.issue_id = i.issue_id AND e.action IN ('assigned', 'unassigned');
CREATE UNIQUE INDEX explorer_issue_assignments_key ON aveloxis_augur_data.explorer_issue_assignments (issue_id, id, node_id);
CREATE INDEX explorer_issue_assignments_repo_idx ON aveloxis_augur_data.explorer_issue_assignments (id);

-- Lines and files per language, from each repository's latest labor scan.
CREATE MATERIALIZED VIEW aveloxis_augur_data.explorer_repo_languages AS
SELECT l.repo_id, r.repo_git::varchar AS repo_git, r.repo_name::varchar AS repo_name,
       l.programming_language::varchar AS programming_language,
       sum(l.code_lines)::bigint AS code_lines, count(*)::integer AS files
FROM aveloxis_data.repo_labor l JOIN aveloxis_data.repos r USING (repo_id)
WHERE l.data_collection_date = (SELECT max(x.data_collection_date) FROM aveloxis_data.repo_labor x
                                WHERE x.repo_id = l.repo_id)
GROUP BY l.repo_id, r.repo_git, r.repo_name, l.programming_language;
CREATE UNIQUE INDEX explorer_repo_languages_key ON aveloxis_augur_data.explorer_repo_languages
    (repo_id, programming_language);

CREATE MATERIALIZED VIEW aveloxis_augur_data.issue_reporter_created_at AS
SELECT i.reporter_id, i.created_at AT TIME ZONE 'UTC' AS created_at, i.repo_id, i.issue_id
FROM aveloxis_data.issues i;
CREATE UNIQUE INDEX issue_reporter_created_at_key ON aveloxis_augur_data.issue_reporter_created_at (issue_id);

-- Actions of the last 13 months, ranked within them (rank 1 = the first).
CREATE MATERIALIZED VIEW aveloxis_augur_data.explorer_contributor_recent_actions AS
SELECT a.cntrb_id, a.created_at, a.repo_id, a.action, a.repo_name, a.login,
       row_number() OVER (PARTITION BY a.cntrb_id, a.repo_id ORDER BY a.created_at, a.action, a.rank) AS rank
FROM aveloxis_augur_data.explorer_contributor_actions a
WHERE a.created_at >= now() - interval '13 months';
CREATE UNIQUE INDEX explorer_contributor_recent_actions_key ON aveloxis_augur_data.explorer_contributor_recent_actions
    (cntrb_id, created_at, repo_id, action, repo_name, login, rank);

CREATE MATERIALIZED VIEW aveloxis_augur_data.explorer_pr_files AS
SELECT f.pr_file_path::varchar AS file_path, f.pull_request_id, f.repo_id
FROM aveloxis_data.pull_request_files f;
CREATE UNIQUE INDEX explorer_pr_files_key ON aveloxis_augur_data.explorer_pr_files (file_path, pull_request_id, repo_id);

-- Per file path: the authors of pull requests that changed it and their reviewers.
CREATE MATERIALIZED VIEW aveloxis_augur_data.explorer_cntrb_per_file AS
SELECT f.repo_id, f.pr_file_path::varchar AS file_path,
       coalesce(string_agg(DISTINCT p.author_id::text, ','), '')::varchar AS cntrb_ids,
       coalesce(string_agg(DISTINCT v.cntrb_id::text, ','), '')::varchar AS reviewer_ids
FROM aveloxis_data.pull_request_files f
JOIN aveloxis_data.pull_requests p USING (pull_request_id)
LEFT JOIN aveloxis_data.pull_request_reviews v ON v.pull_request_id = f.pull_request_id
GROUP BY f.repo_id, f.pr_file_path;
CREATE UNIQUE INDEX explorer_cntrb_per_file_key ON aveloxis_augur_data.explorer_cntrb_per_file (repo_id, file_path);

-- The files of each repository's latest labor scan.
CREATE MATERIALIZED VIEW aveloxis_augur_data.explorer_repo_files AS
SELECT l.repo_id AS id, r.repo_name::varchar AS repo_name, r.repo_git::varchar AS repo_path,
       l.rl_analysis_date AT TIME ZONE 'UTC' AS rl_analysis_date,
       l.file_path::varchar AS file_path, l.file_name::varchar AS file_name, l.repo_labor_id
FROM aveloxis_data.repo_labor l JOIN aveloxis_data.repos r USING (repo_id)
WHERE l.data_collection_date = (SELECT max(x.data_collection_date) FROM aveloxis_data.repo_labor x
                                WHERE x.repo_id = l.repo_id);
CREATE UNIQUE INDEX explorer_repo_files_key ON aveloxis_augur_data.explorer_repo_files (id, repo_labor_id);

-- From sql/refresh.sql
-- Refreshing the materialized views (sql/matviews.sql).
--
--   CALL aveloxis.refresh_views();          every view, now
--   CALL aveloxis.refresh_views(true);      only when views.refresh_cadence has passed
--                                           (what pg_cron runs hourly: aveloxis.schedule())
--
-- Views refresh one by one in dependency order, each in its own transaction (the
-- procedure commits between them, so no lock outlives its view), CONCURRENTLY once
-- populated: 8Knot's readers are never blocked. A view that fails is recorded and the
-- others go on. A second caller returns at once (session advisory lock).

INSERT INTO aveloxis_ops.setting_defaults (name, default_value, kind, description) VALUES
    ('views.refresh_cadence', '7 days', 'interval',
     'How often refresh_views(true) (pg_cron, hourly) refreshes the materialized views'),
    ('views.refresh_history', '90 days', 'interval', 'tick() deletes view refresh records older than this');

CREATE TABLE aveloxis_ops.view_refresh_runs (
    refresh_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at  timestamptz,
    requested_by text NOT NULL DEFAULT session_user,
    views        integer,
    failed       integer
);
COMMENT ON TABLE aveloxis_ops.view_refresh_runs IS 'One row per refresh_views() call that ran';

CREATE TABLE aveloxis_ops.view_refreshes (
    refresh_id   bigint NOT NULL REFERENCES aveloxis_ops.view_refresh_runs ON DELETE CASCADE,
    view_name    text NOT NULL,
    view_position integer NOT NULL,
    concurrent   boolean NOT NULL,
    started_at   timestamptz NOT NULL,
    duration     interval NOT NULL,
    -- Rows after the refresh; NULL when it failed.
    row_count    bigint,
    error        text,
    PRIMARY KEY (refresh_id, view_name)
);
COMMENT ON TABLE aveloxis_ops.view_refreshes IS 'Per view of each refresh: how long, how many rows, what went wrong';

-- The views in refresh order: a view after every view it reads.
CREATE FUNCTION aveloxis_ops.refresh_order()
RETURNS TABLE (view_position integer, view_name text)
LANGUAGE sql IMMUTABLE
AS $$
    SELECT o.n::integer, o.v FROM unnest(ARRAY[
        'api_get_all_repo_prs', 'api_get_all_repos_commits', 'api_get_all_repos_issues', 'explorer_entry_list',
        'explorer_commits_and_committers_daily_count', 'explorer_libyear_all', 'explorer_libyear_summary',
        'explorer_libyear_detail', 'explorer_contributor_actions', 'explorer_new_contributors',
        'augur_new_contributors', 'explorer_pr_assignments', 'explorer_pr_response', 'explorer_user_repos',
        'explorer_pr_response_times', 'explorer_issue_assignments', 'explorer_repo_languages',
        'issue_reporter_created_at', 'explorer_contributor_recent_actions', 'explorer_pr_files',
        'explorer_cntrb_per_file', 'explorer_repo_files']) WITH ORDINALITY AS o(v, n)
$$;

-- Starts a refresh run; NULL when refresh_views(true) finds the views fresh enough.
CREATE FUNCTION aveloxis_ops.refresh_begin(only_if_due boolean)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    last_start timestamptz;
    run bigint;
BEGIN
    IF only_if_due THEN
        SELECT max(r.started_at) INTO last_start FROM aveloxis_ops.view_refresh_runs r WHERE r.finished_at IS NOT NULL;
        IF last_start > aveloxis_ops.clock() - aveloxis_ops.setting('views.refresh_cadence')::interval THEN
            RETURN NULL;
        END IF;
    END IF;
    INSERT INTO aveloxis_ops.view_refresh_runs DEFAULT VALUES RETURNING refresh_id INTO run;
    RETURN run;
END
$$;

-- Refreshes one view of the list (never any other relation) and records how it went.
-- Errors are caught here: the caller goes on with the next view.
CREATE FUNCTION aveloxis_ops.refresh_one(run bigint, pos integer)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    target      text;
    populated   boolean;
    began       timestamptz := clock_timestamp();
    counted     bigint;
    message     text;
BEGIN
    SELECT o.view_name INTO target FROM aveloxis_ops.refresh_order() o WHERE o.view_position = pos;
    IF target IS NULL THEN
        RAISE EXCEPTION 'no materialized view at position %', pos USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT c.relispopulated INTO populated FROM pg_catalog.pg_class c
    WHERE c.oid = pg_catalog.to_regclass('aveloxis_augur_data.' || quote_ident(target)) AND c.relkind = 'm';
    BEGIN
        IF populated IS NULL THEN
            RAISE EXCEPTION 'materialized view aveloxis_augur_data.% is missing', target
                USING HINT = 'ALTER EXTENSION pg_aveloxis UPDATE, or reinstall the extension.';
        END IF;
        EXECUTE format('REFRESH MATERIALIZED VIEW %s aveloxis_augur_data.%I',
                       CASE WHEN populated THEN 'CONCURRENTLY' ELSE '' END, target);
        EXECUTE format('SELECT count(*) FROM aveloxis_augur_data.%I', target) INTO counted;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS message = MESSAGE_TEXT;
        message := coalesce(message, 'unknown error') || ' (SQLSTATE ' || SQLSTATE || ')';
        RAISE WARNING 'aveloxis.refresh_views: % failed: %', target, message;
    END;
    INSERT INTO aveloxis_ops.view_refreshes
        (refresh_id, view_name, view_position, concurrent, started_at, duration, row_count, error)
    VALUES (run, target, pos, coalesce(populated, false), began, clock_timestamp() - began,
            CASE WHEN message IS NULL THEN counted END, message);
    RETURN message IS NULL;
END
$$;

CREATE FUNCTION aveloxis_ops.refresh_end(run bigint)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    done integer;
    bad  integer;
BEGIN
    SELECT count(*), count(*) FILTER (WHERE v.error IS NOT NULL) INTO done, bad
    FROM aveloxis_ops.view_refreshes v WHERE v.refresh_id = run;
    UPDATE aveloxis_ops.view_refresh_runs r SET finished_at = clock_timestamp(), views = done, failed = bad
    WHERE r.refresh_id = run;
    RETURN format('refresh %s: %s views refreshed, %s failed', run, done - bad, bad);
END
$$;

-- The procedure itself runs with its caller's rights and commits between views (a
-- SECURITY DEFINER procedure may not); each step it calls is SECURITY DEFINER and
-- trusts nothing but the fixed list. Every name is schema-qualified.
CREATE PROCEDURE aveloxis.refresh_views(only_if_due boolean DEFAULT false)
LANGUAGE plpgsql
AS $$
DECLARE
    run  bigint;
    step record;
BEGIN
    -- Fails here, before any lock is taken, when called inside a transaction block (the
    -- refresh commits between views).
    COMMIT;
    IF NOT pg_catalog.pg_try_advisory_lock(pg_catalog.hashtextextended('aveloxis.refresh_views', 0)) THEN
        RAISE NOTICE 'a refresh of the views is already running; this call returns';
        RETURN;
    END IF;
    BEGIN
        run := aveloxis_ops.refresh_begin(only_if_due);
    EXCEPTION WHEN OTHERS THEN
        PERFORM pg_catalog.pg_advisory_unlock(pg_catalog.hashtextextended('aveloxis.refresh_views', 0));
        RAISE;
    END;
    IF run IS NULL THEN
        PERFORM pg_catalog.pg_advisory_unlock(pg_catalog.hashtextextended('aveloxis.refresh_views', 0));
        RAISE NOTICE 'the views were refreshed less than views.refresh_cadence ago; nothing to do';
        RETURN;
    END IF;
    COMMIT;
    FOR step IN SELECT o.view_position FROM aveloxis_ops.refresh_order() o ORDER BY o.view_position LOOP
        PERFORM aveloxis_ops.refresh_one(run, step.view_position);
        COMMIT;
    END LOOP;
    RAISE NOTICE '%', aveloxis_ops.refresh_end(run);
    COMMIT;
    PERFORM pg_catalog.pg_advisory_unlock(pg_catalog.hashtextextended('aveloxis.refresh_views', 0));
END
$$;

-- The refreshes, newest first: per view, how long it took, its rows, its error.
CREATE FUNCTION aveloxis.view_refresh_history(max_runs integer DEFAULT 5)
RETURNS TABLE (refresh_id bigint, view_name text, view_position integer, concurrent boolean, started_at timestamptz,
               duration interval, row_count bigint, error text, run_finished_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    SELECT v.refresh_id, v.view_name, v.view_position, v.concurrent, v.started_at, v.duration, v.row_count, v.error,
           r.finished_at
    FROM aveloxis_ops.view_refreshes v
    JOIN aveloxis_ops.view_refresh_runs r USING (refresh_id)
    WHERE v.refresh_id IN (SELECT x.refresh_id FROM aveloxis_ops.view_refresh_runs x
                           ORDER BY x.refresh_id DESC LIMIT max_runs)
    ORDER BY v.refresh_id DESC, v.view_position
$$;

-- From sql/activity.sql
-- Per-repository daily activity, kept current as data arrives (docs/analytics.md).
--
-- Statement-level triggers on the base tables turn each statement's changed rows
-- (transition tables) into signed facts, and aveloxis_ops.activity_apply() adds them
-- to repo_daily_activity in the same transaction: a dashboard reads today's numbers
-- between view refreshes, whichever code path wrote the rows (drain, force-push
-- deletions, author linking, an admin's DELETE). An UPDATE that changes nothing the
-- aggregates read nets to nothing. aveloxis.rebuild_activity() recomputes from scratch
-- with the same definitions (and must agree: tests/tests/analytics.rs).
--
-- Definitions (day = the UTC date):
--   issues_opened/closed   issues by created_at / closed_at
--   prs_opened/merged      pull requests by created_at / merged_at
--   prs_closed             pull requests closed without merging, by closed_at
--   commits                distinct commits by author time; lines_added/removed their numstat sums
--   comments               issue, pull request and diff comments by msg_timestamp
--   reviews                pull request reviews by submitted_at
--   new_contributors       contributors whose first contribution (commit authored, issue
--                          or pull request opened, comment, review) in the repository
--                          falls on the day; repo_contributor_first keeps each one's first.

CREATE TABLE aveloxis_data.repo_daily_activity (
    repo_id          bigint NOT NULL REFERENCES aveloxis_data.repos ON DELETE CASCADE,
    day              date NOT NULL,
    issues_opened    bigint NOT NULL DEFAULT 0,
    issues_closed    bigint NOT NULL DEFAULT 0,
    prs_opened       bigint NOT NULL DEFAULT 0,
    prs_merged       bigint NOT NULL DEFAULT 0,
    prs_closed       bigint NOT NULL DEFAULT 0,
    commits          bigint NOT NULL DEFAULT 0,
    lines_added      bigint NOT NULL DEFAULT 0,
    lines_removed    bigint NOT NULL DEFAULT 0,
    comments         bigint NOT NULL DEFAULT 0,
    reviews          bigint NOT NULL DEFAULT 0,
    new_contributors bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (repo_id, day)
);
COMMENT ON TABLE aveloxis_data.repo_daily_activity IS 'Daily activity per repository, maintained by triggers as rows are written';

CREATE TABLE aveloxis_data.repo_contributor_first (
    repo_id       bigint NOT NULL REFERENCES aveloxis_data.repos ON DELETE CASCADE,
    cntrb_id      uuid NOT NULL,
    first_at      timestamptz NOT NULL,
    -- The first_at it replaced (how the trigger learns the old value from an upsert).
    prev_first_at timestamptz,
    PRIMARY KEY (repo_id, cntrb_id)
);
COMMENT ON TABLE aveloxis_data.repo_contributor_first IS 'Each contributor''s first contribution to each repository';
CREATE INDEX repo_contributor_first_day_idx ON aveloxis_data.repo_contributor_first (repo_id, first_at);

-- Lookups of one contributor's contributions to one repository (a removed first
-- action), and of a repository's reviews by time (the analyst API).
CREATE INDEX pull_request_reviews_cntrb_idx ON aveloxis_data.pull_request_reviews (cntrb_id);
CREATE INDEX pull_request_reviews_repo_time_idx ON aveloxis_data.pull_request_reviews (repo_id, submitted_at);
-- One contributor's closes and merges (aveloxis.contributor_activity).
CREATE INDEX issue_events_cntrb_idx ON aveloxis_data.issue_events (cntrb_id) WHERE cntrb_id IS NOT NULL;
CREATE INDEX pull_request_events_cntrb_idx ON aveloxis_data.pull_request_events (cntrb_id) WHERE cntrb_id IS NOT NULL;

-- Not in pg_dump: derived data. A restore loads the base tables with the triggers on,
-- which rebuild both as the rows go in (after a restore with --disable-triggers:
-- SELECT aveloxis.rebuild_activity()). Dumped, they would be counted twice.

-- measure: a repo_daily_activity column, or 'contribution' (cntrb_id did something at `at`).
CREATE TYPE aveloxis_ops.activity_fact AS (repo_id bigint, cntrb_id uuid, at timestamptz, measure text, amount bigint);

-- A contributor's first contribution to a repository, from the base tables.
CREATE FUNCTION aveloxis_ops.first_contribution(repo bigint, person uuid)
RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT least(
        (SELECT min(c.cmt_author_timestamp) FROM aveloxis_data.commits c
         WHERE c.cmt_ght_author_id = person AND c.repo_id = repo),
        (SELECT min(i.created_at) FROM aveloxis_data.issues i WHERE i.reporter_id = person AND i.repo_id = repo),
        (SELECT min(p.created_at) FROM aveloxis_data.pull_requests p WHERE p.author_id = person AND p.repo_id = repo),
        (SELECT min(m.msg_timestamp) FROM aveloxis_data.messages m
         WHERE m.cntrb_id = person AND m.repo_id = repo AND m.msg_source IN ('issue_comment', 'review_comment')),
        (SELECT min(v.submitted_at) FROM aveloxis_data.pull_request_reviews v
         WHERE v.cntrb_id = person AND v.repo_id = repo))
$$;

-- Adds the facts of one statement: plus (rows as they are now) minus (rows as they
-- were). What both hold cancels out.
CREATE FUNCTION aveloxis_ops.activity_apply(plus aveloxis_ops.activity_fact[], minus aveloxis_ops.activity_fact[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    repo   bigint;
    pair   record;
    before timestamptz;
    after  timestamptz;
BEGIN
    IF coalesce(cardinality(plus), 0) + coalesce(cardinality(minus), 0) = 0 THEN
        RETURN;
    END IF;
    -- Writers of one repository take turns here (a drain and an author linking, say):
    -- first-contribution bookkeeping reads before it writes.
    FOR repo IN SELECT DISTINCT f.repo_id FROM unnest(coalesce(plus, '{}') || coalesce(minus, '{}')) f ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(hashtextextended('aveloxis.activity', repo));
    END LOOP;

    -- Session-long scratch; one made by anyone but the extension's owner is refused.
    IF to_regclass('pg_temp.activity_net') IS NULL THEN
        CREATE TEMP TABLE activity_net (repo_id bigint, cntrb_id uuid, at timestamptz, measure text,
                                        amount bigint, sign integer) ON COMMIT DELETE ROWS;
    END IF;
    PERFORM aveloxis_ops.check_scratch_owner('activity_net');
    -- DELETE, not TRUNCATE: a TRUNCATE makes a new file for the table each time, which
    -- cost a single-row statement 2.9 ms (0.5 ms with DELETE); the table holds one
    -- statement's facts at a time.
    DELETE FROM pg_temp.activity_net;
    INSERT INTO pg_temp.activity_net
    SELECT n.*, 1 FROM (SELECT * FROM unnest(plus) EXCEPT ALL SELECT * FROM unnest(minus)) n
    UNION ALL
    SELECT n.*, -1 FROM (SELECT * FROM unnest(minus) EXCEPT ALL SELECT * FROM unnest(plus)) n;

    -- First contributions: an earlier one moves a contributor's first day.
    WITH candidates AS (
        SELECT n.repo_id, n.cntrb_id, min(n.at) AS at FROM pg_temp.activity_net n
        WHERE n.measure = 'contribution' AND n.sign = 1 AND n.cntrb_id IS NOT NULL AND n.at IS NOT NULL
          AND EXISTS (SELECT FROM aveloxis_data.repos r WHERE r.repo_id = n.repo_id)
        GROUP BY 1, 2
    ), moved AS (
        INSERT INTO aveloxis_data.repo_contributor_first AS f (repo_id, cntrb_id, first_at)
        SELECT c.repo_id, c.cntrb_id, c.at FROM candidates c ORDER BY 1, 2
        ON CONFLICT (repo_id, cntrb_id) DO UPDATE SET prev_first_at = f.first_at, first_at = EXCLUDED.first_at
            WHERE EXCLUDED.first_at < f.first_at
        RETURNING f.repo_id, f.first_at, f.prev_first_at, (f.xmax = 0) AS fresh
    )
    INSERT INTO pg_temp.activity_net (repo_id, at, measure, amount, sign)
    SELECT m.repo_id, m.first_at, 'new_contributors', 1, 1 FROM moved m
    UNION ALL
    SELECT m.repo_id, m.prev_first_at, 'new_contributors', 1, -1 FROM moved m WHERE NOT m.fresh;

    -- A removed contribution that may have been someone's first: recount that one person.
    FOR pair IN
        SELECT DISTINCT n.repo_id, n.cntrb_id FROM pg_temp.activity_net n
        JOIN aveloxis_data.repo_contributor_first f USING (repo_id, cntrb_id)
        WHERE n.measure = 'contribution' AND n.sign = -1 AND n.at <= f.first_at
        ORDER BY 1, 2
    LOOP
        SELECT f.first_at INTO before FROM aveloxis_data.repo_contributor_first f
        WHERE f.repo_id = pair.repo_id AND f.cntrb_id = pair.cntrb_id FOR UPDATE;
        after := aveloxis_ops.first_contribution(pair.repo_id, pair.cntrb_id);
        CONTINUE WHEN after IS NOT DISTINCT FROM before;
        IF after IS NULL THEN
            DELETE FROM aveloxis_data.repo_contributor_first f WHERE f.repo_id = pair.repo_id AND f.cntrb_id = pair.cntrb_id;
        ELSE
            UPDATE aveloxis_data.repo_contributor_first f SET prev_first_at = f.first_at, first_at = after
            WHERE f.repo_id = pair.repo_id AND f.cntrb_id = pair.cntrb_id;
            INSERT INTO pg_temp.activity_net (repo_id, at, measure, amount, sign)
            VALUES (pair.repo_id, after, 'new_contributors', 1, 1);
        END IF;
        INSERT INTO pg_temp.activity_net (repo_id, at, measure, amount, sign)
        VALUES (pair.repo_id, before, 'new_contributors', 1, -1);
    END LOOP;

    INSERT INTO aveloxis_data.repo_daily_activity AS a
        (repo_id, day, issues_opened, issues_closed, prs_opened, prs_merged, prs_closed, commits, lines_added,
         lines_removed, comments, reviews, new_contributors)
    SELECT d.repo_id, d.day,
           coalesce(sum(d.v) FILTER (WHERE d.measure = 'issues_opened'), 0),
           coalesce(sum(d.v) FILTER (WHERE d.measure = 'issues_closed'), 0),
           coalesce(sum(d.v) FILTER (WHERE d.measure = 'prs_opened'), 0),
           coalesce(sum(d.v) FILTER (WHERE d.measure = 'prs_merged'), 0),
           coalesce(sum(d.v) FILTER (WHERE d.measure = 'prs_closed'), 0),
           coalesce(sum(d.v) FILTER (WHERE d.measure = 'commits'), 0),
           coalesce(sum(d.v) FILTER (WHERE d.measure = 'lines_added'), 0),
           coalesce(sum(d.v) FILTER (WHERE d.measure = 'lines_removed'), 0),
           coalesce(sum(d.v) FILTER (WHERE d.measure = 'comments'), 0),
           coalesce(sum(d.v) FILTER (WHERE d.measure = 'reviews'), 0),
           coalesce(sum(d.v) FILTER (WHERE d.measure = 'new_contributors'), 0)
    FROM (SELECT n.repo_id, (n.at AT TIME ZONE 'UTC')::date AS day, n.measure, n.amount * n.sign AS v
          FROM pg_temp.activity_net n
          WHERE n.measure <> 'contribution' AND n.at IS NOT NULL
            AND EXISTS (SELECT FROM aveloxis_data.repos r WHERE r.repo_id = n.repo_id)) d
    GROUP BY d.repo_id, d.day
    HAVING bool_or(d.v <> 0)
    ORDER BY d.repo_id, d.day
    ON CONFLICT (repo_id, day) DO UPDATE SET
        issues_opened = a.issues_opened + EXCLUDED.issues_opened,
        issues_closed = a.issues_closed + EXCLUDED.issues_closed,
        prs_opened = a.prs_opened + EXCLUDED.prs_opened, prs_merged = a.prs_merged + EXCLUDED.prs_merged,
        prs_closed = a.prs_closed + EXCLUDED.prs_closed, commits = a.commits + EXCLUDED.commits,
        lines_added = a.lines_added + EXCLUDED.lines_added, lines_removed = a.lines_removed + EXCLUDED.lines_removed,
        comments = a.comments + EXCLUDED.comments, reviews = a.reviews + EXCLUDED.reviews,
        new_contributors = a.new_contributors + EXCLUDED.new_contributors;
    -- A day whose every count went back to zero is no day of activity.
    DELETE FROM aveloxis_data.repo_daily_activity a
    USING (SELECT DISTINCT n.repo_id, (n.at AT TIME ZONE 'UTC')::date AS day FROM pg_temp.activity_net n
           WHERE n.sign = -1 AND n.at IS NOT NULL) z
    WHERE a.repo_id = z.repo_id AND a.day = z.day
      AND (a.issues_opened, a.issues_closed, a.prs_opened, a.prs_merged, a.prs_closed, a.commits, a.lines_added,
           a.lines_removed, a.comments, a.reviews, a.new_contributors) = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    DELETE FROM pg_temp.activity_net;
END
$$;

-- The facts of one row of each table.
CREATE FUNCTION aveloxis_ops.issue_facts(i aveloxis_data.issues)
RETURNS SETOF aveloxis_ops.activity_fact
LANGUAGE sql IMMUTABLE
AS $$
    SELECT i.repo_id, NULL::uuid, i.created_at, 'issues_opened', 1::bigint WHERE i.created_at IS NOT NULL
    UNION ALL SELECT i.repo_id, NULL, i.closed_at, 'issues_closed', 1 WHERE i.closed_at IS NOT NULL
    UNION ALL SELECT i.repo_id, i.reporter_id, i.created_at, 'contribution', 1
              WHERE i.reporter_id IS NOT NULL AND i.created_at IS NOT NULL
$$;

CREATE FUNCTION aveloxis_ops.pull_request_facts(p aveloxis_data.pull_requests)
RETURNS SETOF aveloxis_ops.activity_fact
LANGUAGE sql IMMUTABLE
AS $$
    SELECT p.repo_id, NULL::uuid, p.created_at, 'prs_opened', 1::bigint WHERE p.created_at IS NOT NULL
    UNION ALL SELECT p.repo_id, NULL, p.merged_at, 'prs_merged', 1 WHERE p.merged_at IS NOT NULL
    UNION ALL SELECT p.repo_id, NULL, p.closed_at, 'prs_closed', 1 WHERE p.closed_at IS NOT NULL AND p.merged_at IS NULL
    UNION ALL SELECT p.repo_id, p.author_id, p.created_at, 'contribution', 1
              WHERE p.author_id IS NOT NULL AND p.created_at IS NOT NULL
$$;

CREATE FUNCTION aveloxis_ops.message_facts(m aveloxis_data.messages)
RETURNS SETOF aveloxis_ops.activity_fact
LANGUAGE sql IMMUTABLE
AS $$
    SELECT m.repo_id, NULL::uuid, m.msg_timestamp, 'comments', 1::bigint
    WHERE m.msg_timestamp IS NOT NULL AND m.msg_source IN ('issue_comment', 'review_comment')
    UNION ALL SELECT m.repo_id, m.cntrb_id, m.msg_timestamp, 'contribution', 1
    WHERE m.cntrb_id IS NOT NULL AND m.msg_timestamp IS NOT NULL AND m.msg_source IN ('issue_comment', 'review_comment')
$$;

CREATE FUNCTION aveloxis_ops.review_facts(v aveloxis_data.pull_request_reviews)
RETURNS SETOF aveloxis_ops.activity_fact
LANGUAGE sql IMMUTABLE
AS $$
    SELECT v.repo_id, NULL::uuid, v.submitted_at, 'reviews', 1::bigint WHERE v.submitted_at IS NOT NULL
    UNION ALL SELECT v.repo_id, v.cntrb_id, v.submitted_at, 'contribution', 1
    WHERE v.cntrb_id IS NOT NULL AND v.submitted_at IS NOT NULL
$$;

-- One trigger function per table; transition tables are named new_rows and old_rows.
CREATE FUNCTION aveloxis_ops.issues_activity() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE plus aveloxis_ops.activity_fact[]; minus aveloxis_ops.activity_fact[];
BEGIN
    IF TG_OP <> 'DELETE' THEN SELECT array_agg(f) INTO plus FROM new_rows n, aveloxis_ops.issue_facts(n) f; END IF;
    IF TG_OP <> 'INSERT' THEN SELECT array_agg(f) INTO minus FROM old_rows o, aveloxis_ops.issue_facts(o) f; END IF;
    PERFORM aveloxis_ops.activity_apply(plus, minus);
    RETURN NULL;
END $$;

CREATE FUNCTION aveloxis_ops.pull_requests_activity() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE plus aveloxis_ops.activity_fact[]; minus aveloxis_ops.activity_fact[];
BEGIN
    IF TG_OP <> 'DELETE' THEN SELECT array_agg(f) INTO plus FROM new_rows n, aveloxis_ops.pull_request_facts(n) f; END IF;
    IF TG_OP <> 'INSERT' THEN SELECT array_agg(f) INTO minus FROM old_rows o, aveloxis_ops.pull_request_facts(o) f; END IF;
    PERFORM aveloxis_ops.activity_apply(plus, minus);
    RETURN NULL;
END $$;

CREATE FUNCTION aveloxis_ops.messages_activity() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE plus aveloxis_ops.activity_fact[]; minus aveloxis_ops.activity_fact[];
BEGIN
    IF TG_OP <> 'DELETE' THEN SELECT array_agg(f) INTO plus FROM new_rows n, aveloxis_ops.message_facts(n) f; END IF;
    IF TG_OP <> 'INSERT' THEN SELECT array_agg(f) INTO minus FROM old_rows o, aveloxis_ops.message_facts(o) f; END IF;
    PERFORM aveloxis_ops.activity_apply(plus, minus);
    RETURN NULL;
END $$;

CREATE FUNCTION aveloxis_ops.reviews_activity() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE plus aveloxis_ops.activity_fact[]; minus aveloxis_ops.activity_fact[];
BEGIN
    IF TG_OP <> 'DELETE' THEN SELECT array_agg(f) INTO plus FROM new_rows n, aveloxis_ops.review_facts(n) f; END IF;
    IF TG_OP <> 'INSERT' THEN SELECT array_agg(f) INTO minus FROM old_rows o, aveloxis_ops.review_facts(o) f; END IF;
    PERFORM aveloxis_ops.activity_apply(plus, minus);
    RETURN NULL;
END $$;

-- Commits: one row per (commit, file). Lines count per row; a commit counts once,
-- when its first row arrives and when its last row goes (whatever statements they
-- come in); its author's contribution once per commit.
CREATE FUNCTION aveloxis_ops.commits_activity() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE plus aveloxis_ops.activity_fact[]; minus aveloxis_ops.activity_fact[];
BEGIN
    IF TG_OP <> 'DELETE' THEN
        SELECT array_agg(f) INTO plus FROM (
            SELECT n.repo_id, NULL::uuid, n.cmt_author_timestamp, 'lines_added', n.cmt_added::bigint FROM new_rows n
            WHERE n.cmt_author_timestamp IS NOT NULL AND n.cmt_added <> 0
            UNION ALL
            SELECT n.repo_id, NULL, n.cmt_author_timestamp, 'lines_removed', n.cmt_removed FROM new_rows n
            WHERE n.cmt_author_timestamp IS NOT NULL AND n.cmt_removed <> 0
            UNION ALL
            SELECT DISTINCT n.repo_id, n.cmt_ght_author_id, n.cmt_author_timestamp, 'contribution', 1::bigint
            FROM new_rows n WHERE n.cmt_ght_author_id IS NOT NULL AND n.cmt_author_timestamp IS NOT NULL
        ) f;
        IF TG_OP = 'INSERT' THEN
            plus := plus || ARRAY(
                SELECT ROW(h.repo_id, NULL, h.at, 'commits', 1)::aveloxis_ops.activity_fact
                FROM (SELECT n.repo_id, n.cmt_commit_hash, min(n.cmt_author_timestamp) AS at, count(*) AS rows_now
                      FROM new_rows n WHERE n.cmt_author_timestamp IS NOT NULL GROUP BY 1, 2) h
                WHERE (SELECT count(*) FROM aveloxis_data.commits c
                       WHERE c.repo_id = h.repo_id AND c.cmt_commit_hash = h.cmt_commit_hash) = h.rows_now);
        END IF;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        SELECT array_agg(f) INTO minus FROM (
            SELECT o.repo_id, NULL::uuid, o.cmt_author_timestamp, 'lines_added', o.cmt_added::bigint FROM old_rows o
            WHERE o.cmt_author_timestamp IS NOT NULL AND o.cmt_added <> 0
            UNION ALL
            SELECT o.repo_id, NULL, o.cmt_author_timestamp, 'lines_removed', o.cmt_removed FROM old_rows o
            WHERE o.cmt_author_timestamp IS NOT NULL AND o.cmt_removed <> 0
            UNION ALL
            SELECT DISTINCT o.repo_id, o.cmt_ght_author_id, o.cmt_author_timestamp, 'contribution', 1::bigint
            FROM old_rows o WHERE o.cmt_ght_author_id IS NOT NULL AND o.cmt_author_timestamp IS NOT NULL
        ) f;
        IF TG_OP = 'DELETE' THEN
            minus := minus || ARRAY(
                SELECT ROW(h.repo_id, NULL, h.at, 'commits', 1)::aveloxis_ops.activity_fact
                FROM (SELECT o.repo_id, o.cmt_commit_hash, min(o.cmt_author_timestamp) AS at
                      FROM old_rows o WHERE o.cmt_author_timestamp IS NOT NULL GROUP BY 1, 2) h
                WHERE NOT EXISTS (SELECT FROM aveloxis_data.commits c
                                  WHERE c.repo_id = h.repo_id AND c.cmt_commit_hash = h.cmt_commit_hash));
        END IF;
    END IF;
    PERFORM aveloxis_ops.activity_apply(plus, minus);
    RETURN NULL;
END $$;

CREATE TRIGGER issues_activity_ins AFTER INSERT ON aveloxis_data.issues REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION aveloxis_ops.issues_activity();
CREATE TRIGGER issues_activity_upd AFTER UPDATE ON aveloxis_data.issues REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION aveloxis_ops.issues_activity();
CREATE TRIGGER issues_activity_del AFTER DELETE ON aveloxis_data.issues REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION aveloxis_ops.issues_activity();
CREATE TRIGGER pull_requests_activity_ins AFTER INSERT ON aveloxis_data.pull_requests REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION aveloxis_ops.pull_requests_activity();
CREATE TRIGGER pull_requests_activity_upd AFTER UPDATE ON aveloxis_data.pull_requests
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION aveloxis_ops.pull_requests_activity();
CREATE TRIGGER pull_requests_activity_del AFTER DELETE ON aveloxis_data.pull_requests REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION aveloxis_ops.pull_requests_activity();
CREATE TRIGGER messages_activity_ins AFTER INSERT ON aveloxis_data.messages REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION aveloxis_ops.messages_activity();
CREATE TRIGGER messages_activity_upd AFTER UPDATE ON aveloxis_data.messages
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION aveloxis_ops.messages_activity();
CREATE TRIGGER messages_activity_del AFTER DELETE ON aveloxis_data.messages REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION aveloxis_ops.messages_activity();
CREATE TRIGGER reviews_activity_ins AFTER INSERT ON aveloxis_data.pull_request_reviews REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION aveloxis_ops.reviews_activity();
CREATE TRIGGER reviews_activity_upd AFTER UPDATE ON aveloxis_data.pull_request_reviews
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION aveloxis_ops.reviews_activity();
CREATE TRIGGER reviews_activity_del AFTER DELETE ON aveloxis_data.pull_request_reviews REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION aveloxis_ops.reviews_activity();
CREATE TRIGGER commits_activity_ins AFTER INSERT ON aveloxis_data.commits REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION aveloxis_ops.commits_activity();
CREATE TRIGGER commits_activity_upd AFTER UPDATE ON aveloxis_data.commits
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION aveloxis_ops.commits_activity();
CREATE TRIGGER commits_activity_del AFTER DELETE ON aveloxis_data.commits REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION aveloxis_ops.commits_activity();

-- The daily activity of one repository (or all), computed from the base tables with
-- the triggers' definitions.
CREATE FUNCTION aveloxis_ops.activity_from_scratch(repo bigint)
RETURNS SETOF aveloxis_data.repo_daily_activity
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH firsts AS (
        SELECT a.repo_id, a.cntrb_id, min(a.at) AS first_at FROM (
            SELECT c.repo_id, c.cmt_ght_author_id AS cntrb_id, c.cmt_author_timestamp AS at FROM aveloxis_data.commits c
            WHERE (repo IS NULL OR c.repo_id = repo) AND c.cmt_ght_author_id IS NOT NULL
            UNION ALL SELECT i.repo_id, i.reporter_id, i.created_at FROM aveloxis_data.issues i
            WHERE (repo IS NULL OR i.repo_id = repo) AND i.reporter_id IS NOT NULL
            UNION ALL SELECT p.repo_id, p.author_id, p.created_at FROM aveloxis_data.pull_requests p
            WHERE (repo IS NULL OR p.repo_id = repo) AND p.author_id IS NOT NULL
            UNION ALL SELECT m.repo_id, m.cntrb_id, m.msg_timestamp FROM aveloxis_data.messages m
            WHERE (repo IS NULL OR m.repo_id = repo) AND m.cntrb_id IS NOT NULL
              AND m.msg_source IN ('issue_comment', 'review_comment')
            UNION ALL SELECT v.repo_id, v.cntrb_id, v.submitted_at FROM aveloxis_data.pull_request_reviews v
            WHERE (repo IS NULL OR v.repo_id = repo) AND v.cntrb_id IS NOT NULL
        ) a WHERE a.at IS NOT NULL GROUP BY 1, 2
    ), facts AS (
        SELECT i.repo_id, (i.created_at AT TIME ZONE 'UTC')::date AS day, 'issues_opened' AS measure, 1::bigint AS v
        FROM aveloxis_data.issues i WHERE (repo IS NULL OR i.repo_id = repo) AND i.created_at IS NOT NULL
        UNION ALL SELECT i.repo_id, (i.closed_at AT TIME ZONE 'UTC')::date, 'issues_closed', 1
        FROM aveloxis_data.issues i WHERE (repo IS NULL OR i.repo_id = repo) AND i.closed_at IS NOT NULL
        UNION ALL SELECT p.repo_id, (p.created_at AT TIME ZONE 'UTC')::date, 'prs_opened', 1
        FROM aveloxis_data.pull_requests p WHERE (repo IS NULL OR p.repo_id = repo) AND p.created_at IS NOT NULL
        UNION ALL SELECT p.repo_id, (p.merged_at AT TIME ZONE 'UTC')::date, 'prs_merged', 1
        FROM aveloxis_data.pull_requests p WHERE (repo IS NULL OR p.repo_id = repo) AND p.merged_at IS NOT NULL
        UNION ALL SELECT p.repo_id, (p.closed_at AT TIME ZONE 'UTC')::date, 'prs_closed', 1
        FROM aveloxis_data.pull_requests p
        WHERE (repo IS NULL OR p.repo_id = repo) AND p.closed_at IS NOT NULL AND p.merged_at IS NULL
        UNION ALL SELECT c.repo_id, (min(c.cmt_author_timestamp) AT TIME ZONE 'UTC')::date, 'commits', 1
        FROM aveloxis_data.commits c WHERE (repo IS NULL OR c.repo_id = repo) AND c.cmt_author_timestamp IS NOT NULL
        GROUP BY c.repo_id, c.cmt_commit_hash
        UNION ALL SELECT c.repo_id, (c.cmt_author_timestamp AT TIME ZONE 'UTC')::date, 'lines_added', c.cmt_added
        FROM aveloxis_data.commits c WHERE (repo IS NULL OR c.repo_id = repo) AND c.cmt_author_timestamp IS NOT NULL
        UNION ALL SELECT c.repo_id, (c.cmt_author_timestamp AT TIME ZONE 'UTC')::date, 'lines_removed', c.cmt_removed
        FROM aveloxis_data.commits c WHERE (repo IS NULL OR c.repo_id = repo) AND c.cmt_author_timestamp IS NOT NULL
        UNION ALL SELECT m.repo_id, (m.msg_timestamp AT TIME ZONE 'UTC')::date, 'comments', 1
        FROM aveloxis_data.messages m
        WHERE (repo IS NULL OR m.repo_id = repo) AND m.msg_timestamp IS NOT NULL
          AND m.msg_source IN ('issue_comment', 'review_comment')
        UNION ALL SELECT v.repo_id, (v.submitted_at AT TIME ZONE 'UTC')::date, 'reviews', 1
        FROM aveloxis_data.pull_request_reviews v WHERE (repo IS NULL OR v.repo_id = repo) AND v.submitted_at IS NOT NULL
        UNION ALL SELECT f.repo_id, (f.first_at AT TIME ZONE 'UTC')::date, 'new_contributors', 1 FROM firsts f
    )
    SELECT f.repo_id, f.day,
           coalesce(sum(f.v) FILTER (WHERE f.measure = 'issues_opened'), 0),
           coalesce(sum(f.v) FILTER (WHERE f.measure = 'issues_closed'), 0),
           coalesce(sum(f.v) FILTER (WHERE f.measure = 'prs_opened'), 0),
           coalesce(sum(f.v) FILTER (WHERE f.measure = 'prs_merged'), 0),
           coalesce(sum(f.v) FILTER (WHERE f.measure = 'prs_closed'), 0),
           coalesce(sum(f.v) FILTER (WHERE f.measure = 'commits'), 0),
           coalesce(sum(f.v) FILTER (WHERE f.measure = 'lines_added'), 0),
           coalesce(sum(f.v) FILTER (WHERE f.measure = 'lines_removed'), 0),
           coalesce(sum(f.v) FILTER (WHERE f.measure = 'comments'), 0),
           coalesce(sum(f.v) FILTER (WHERE f.measure = 'reviews'), 0),
           coalesce(sum(f.v) FILTER (WHERE f.measure = 'new_contributors'), 0)
    FROM facts f
    WHERE EXISTS (SELECT FROM aveloxis_data.repos r WHERE r.repo_id = f.repo_id)
    GROUP BY f.repo_id, f.day
    HAVING bool_or(f.v <> 0)
$$;

-- Recomputes the daily activity (and first contributions) of one repository, or of
-- all when repo is NULL. Returns the days written. For an upgrade from a version
-- without triggers, or after a TRUNCATE (which the triggers do not see).
CREATE FUNCTION aveloxis.rebuild_activity(repo bigint DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    written bigint;
    r bigint;
BEGIN
    FOR r IN SELECT x.repo_id FROM aveloxis_data.repos x WHERE repo IS NULL OR x.repo_id = repo ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(hashtextextended('aveloxis.activity', r));
    END LOOP;
    DELETE FROM aveloxis_data.repo_daily_activity a WHERE repo IS NULL OR a.repo_id = repo;
    DELETE FROM aveloxis_data.repo_contributor_first f WHERE repo IS NULL OR f.repo_id = repo;
    INSERT INTO aveloxis_data.repo_contributor_first (repo_id, cntrb_id, first_at)
    SELECT a.repo_id, a.cntrb_id, min(a.at) FROM (
        SELECT c.repo_id, c.cmt_ght_author_id AS cntrb_id, c.cmt_author_timestamp AS at FROM aveloxis_data.commits c
        WHERE (repo IS NULL OR c.repo_id = repo) AND c.cmt_ght_author_id IS NOT NULL
        UNION ALL SELECT i.repo_id, i.reporter_id, i.created_at FROM aveloxis_data.issues i
        WHERE (repo IS NULL OR i.repo_id = repo) AND i.reporter_id IS NOT NULL
        UNION ALL SELECT p.repo_id, p.author_id, p.created_at FROM aveloxis_data.pull_requests p
        WHERE (repo IS NULL OR p.repo_id = repo) AND p.author_id IS NOT NULL
        UNION ALL SELECT m.repo_id, m.cntrb_id, m.msg_timestamp FROM aveloxis_data.messages m
        WHERE (repo IS NULL OR m.repo_id = repo) AND m.cntrb_id IS NOT NULL
          AND m.msg_source IN ('issue_comment', 'review_comment')
        UNION ALL SELECT v.repo_id, v.cntrb_id, v.submitted_at FROM aveloxis_data.pull_request_reviews v
        WHERE (repo IS NULL OR v.repo_id = repo) AND v.cntrb_id IS NOT NULL
    ) a WHERE a.at IS NOT NULL GROUP BY 1, 2;
    INSERT INTO aveloxis_data.repo_daily_activity SELECT * FROM aveloxis_ops.activity_from_scratch(repo);
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END
$$;

-- From sql/bots.sql
-- Bots are data (docs/analytics.md): the forge's account type, a pattern list, and an
-- operator's overrides, each match saying which rule matched. The analyst API leaves
-- bots out on request (exclude_bots).

CREATE TABLE aveloxis_ops.bot_patterns (
    pattern     text PRIMARY KEY CHECK (pattern <> ''),
    description text,
    shipped     boolean NOT NULL DEFAULT false,
    added_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE aveloxis_ops.bot_patterns IS 'Case-insensitive regular expressions over logins (and commit emails) that mark bots';
INSERT INTO aveloxis_ops.bot_patterns (pattern, description, shipped) VALUES
    ('\[bot\]$', 'GitHub App accounts (dependabot[bot], github-actions[bot], ...)', true),
    ('^dependabot', 'Dependabot', true),
    ('^renovate', 'Renovate', true),
    ('^(github-actions|actions-user)$', 'GitHub Actions', true),
    ('[-_]bot$', 'logins ending in -bot or _bot', true),
    ('^(codecov|coveralls|greenkeeper|snyk-bot|mergify|pre-commit-ci|allcontributors|imgbot|stale)', 'well-known service accounts', true),
    ('^project_[0-9]+_bot', 'GitLab project access tokens', true),
    ('^group_[0-9]+_bot', 'GitLab group access tokens', true),
    ('^ghost$', 'GitHub''s placeholder for deleted accounts is not a person either', true);
SELECT pg_catalog.pg_extension_config_dump('aveloxis_ops.bot_patterns', 'WHERE NOT shipped');

CREATE TABLE aveloxis_ops.bot_overrides (
    cntrb_id uuid PRIMARY KEY REFERENCES aveloxis_data.contributors ON DELETE CASCADE,
    is_bot   boolean NOT NULL,
    reason   text NOT NULL,
    set_by   text NOT NULL DEFAULT session_user,
    set_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE aveloxis_ops.bot_overrides IS 'An operator''s word on one contributor: bot or not, whatever the rules say';
SELECT pg_catalog.pg_extension_config_dump('aveloxis_ops.bot_overrides', '');

-- Which rule makes a contributor a bot: 'override: <reason>', 'gh_type = Bot',
-- 'pattern: <regex>', or NULL for a person (an override saying "not a bot" wins too).
CREATE FUNCTION aveloxis.bot_rule(cntrb uuid)
RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    SELECT CASE
        WHEN o.is_bot IS NOT NULL THEN CASE WHEN o.is_bot THEN 'override: ' || o.reason END
        WHEN c.gh_type = 'Bot' THEN 'gh_type = Bot'
        ELSE (SELECT 'pattern: ' || p.pattern FROM aveloxis_ops.bot_patterns p
              WHERE coalesce(c.gh_login, c.gl_username, c.cntrb_login) ~* p.pattern ORDER BY p.pattern LIMIT 1)
    END
    FROM aveloxis_data.contributors c
    LEFT JOIN aveloxis_ops.bot_overrides o ON o.cntrb_id = c.cntrb_id
    WHERE c.cntrb_id = cntrb
$$;

CREATE FUNCTION aveloxis.is_bot(cntrb uuid)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT aveloxis.bot_rule(cntrb) IS NOT NULL
$$;

-- Every contributor the rules call a bot, with the rule.
CREATE FUNCTION aveloxis.bots()
RETURNS TABLE (cntrb_id uuid, login text, rule text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    SELECT b.cntrb_id, b.login, b.rule FROM (
        SELECT c.cntrb_id, coalesce(c.gh_login, c.gl_username, c.cntrb_login) AS login,
               aveloxis.bot_rule(c.cntrb_id) AS rule
        FROM aveloxis_data.contributors c) b
    WHERE b.rule IS NOT NULL
    ORDER BY b.login
$$;

CREATE FUNCTION aveloxis.set_bot(cntrb uuid, is_bot boolean, reason text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM aveloxis_data.contributors c WHERE c.cntrb_id = cntrb) THEN
        RAISE EXCEPTION 'no contributor %', cntrb USING ERRCODE = 'no_data_found';
    END IF;
    IF is_bot IS NULL THEN
        DELETE FROM aveloxis_ops.bot_overrides o WHERE o.cntrb_id = cntrb;
        RETURN;
    END IF;
    IF coalesce(btrim(reason), '') = '' THEN
        RAISE EXCEPTION 'an override needs a reason' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Say why, e.g. ''release automation account''. Pass is_bot NULL to remove the override.';
    END IF;
    INSERT INTO aveloxis_ops.bot_overrides AS o (cntrb_id, is_bot, reason) VALUES (cntrb, is_bot, reason)
    ON CONFLICT (cntrb_id) DO UPDATE SET is_bot = EXCLUDED.is_bot, reason = EXCLUDED.reason,
                                         set_by = EXCLUDED.set_by, set_at = now();
END
$$;

CREATE FUNCTION aveloxis.add_bot_pattern(pattern text, description text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
BEGIN
    BEGIN
        PERFORM '' ~* pattern;
    EXCEPTION WHEN invalid_regular_expression THEN
        RAISE EXCEPTION 'not a regular expression: %', pattern USING ERRCODE = 'invalid_parameter_value';
    END;
    INSERT INTO aveloxis_ops.bot_patterns AS p (pattern, description) VALUES (pattern, description)
    ON CONFLICT ON CONSTRAINT bot_patterns_pkey DO UPDATE SET description = coalesce(EXCLUDED.description, p.description);
END
$$;

CREATE FUNCTION aveloxis.remove_bot_pattern(pattern text)
RETURNS boolean
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    WITH gone AS (DELETE FROM aveloxis_ops.bot_patterns p WHERE p.pattern = remove_bot_pattern.pattern RETURNING 1)
    SELECT EXISTS (SELECT FROM gone)
$$;


-- From sql/completeness.sql
-- The completeness ledger (docs/analytics.md): per repository and entity, what the
-- forge reports against what was gathered, so that every figure of the analyst API says
-- how complete it is. Recorded when a job completes (aveloxis.complete() calls
-- record_completeness, after the agent's drain).
--
--   issues_and_pull_requests   reported: the highest issue/PR number (GitHub and GitLab
--                              number both in one sequence per project: everything ever
--                              opened, deleted and transferred ones included, so coverage
--                              is a lower bound); gathered: issues + pull requests stored
--   open_issues_and_pull_requests  reported: the repository object's open count
--   commits                    reported: commits reachable from the default branch (the
--                              facade's walk); gathered: distinct commits stored
--   <list>                     on a full collection, items the forge listed (issues,
--                              pull_requests, issue_comments, releases, ...) vs rows stored

CREATE TABLE aveloxis_data.collection_completeness (
    repo_id     bigint NOT NULL REFERENCES aveloxis_data.repos ON DELETE CASCADE,
    entity      text NOT NULL,
    reported    bigint NOT NULL CHECK (reported >= 0),
    gathered    bigint NOT NULL CHECK (gathered >= 0),
    observed_at timestamptz NOT NULL,
    source      text NOT NULL,
    PRIMARY KEY (repo_id, entity)
);
COMMENT ON TABLE aveloxis_data.collection_completeness IS 'Per repository and entity: what the forge reported against what was gathered';
SELECT pg_catalog.pg_extension_config_dump('aveloxis_data.collection_completeness', '');

-- What is stored now of each ledger entity.
CREATE FUNCTION aveloxis_ops.gathered(repo bigint, entity text)
RETURNS bigint
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE entity
        WHEN 'issues_and_pull_requests' THEN
            (SELECT count(*) FROM aveloxis_data.issues i WHERE i.repo_id = repo)
            + (SELECT count(*) FROM aveloxis_data.pull_requests p WHERE p.repo_id = repo)
        WHEN 'open_issues_and_pull_requests' THEN
            (SELECT count(*) FROM aveloxis_data.issues i WHERE i.repo_id = repo AND i.closed_at IS NULL)
            + (SELECT count(*) FROM aveloxis_data.pull_requests p WHERE p.repo_id = repo AND p.closed_at IS NULL)
        WHEN 'issues' THEN (SELECT count(*) FROM aveloxis_data.issues i WHERE i.repo_id = repo)
        WHEN 'pull_requests' THEN (SELECT count(*) FROM aveloxis_data.pull_requests p WHERE p.repo_id = repo)
        WHEN 'commits' THEN (SELECT count(DISTINCT c.cmt_commit_hash) FROM aveloxis_data.commits c WHERE c.repo_id = repo)
        WHEN 'issue_comments' THEN (SELECT count(*) FROM aveloxis_data.messages m
                                    WHERE m.repo_id = repo AND m.msg_source = 'issue_comment')
        WHEN 'review_comments' THEN (SELECT count(*) FROM aveloxis_data.messages m
                                     WHERE m.repo_id = repo AND m.msg_source = 'review_comment')
        WHEN 'releases' THEN (SELECT count(*) FROM aveloxis_data.releases r WHERE r.repo_id = repo)
        WHEN 'issue_events' THEN (SELECT count(*) FROM aveloxis_data.issue_events e WHERE e.repo_id = repo)
                                 + (SELECT count(*) FROM aveloxis_data.pull_request_events e WHERE e.repo_id = repo)
    END
$$;

-- Records an outcome's "completeness" object: {"<entity>": {"reported": n}, ...}. The
-- gathered side is counted here, after the drain. Unknown entities and values that are
-- not counts are skipped, each with a WARNING naming it: nothing is silently dropped.
CREATE FUNCTION aveloxis_ops.record_completeness(repo bigint, phase text, completeness jsonb)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    item     record;
    reported bigint;
    gathered bigint;
    written  integer := 0;
BEGIN
    IF jsonb_typeof(completeness) IS DISTINCT FROM 'object' THEN
        RETURN 0;
    END IF;
    FOR item IN SELECT e.key, e.value FROM jsonb_each(completeness) e LOOP
        reported := CASE WHEN jsonb_typeof(item.value -> 'reported') = 'number'
                              AND (item.value ->> 'reported') ~ '^[0-9]{1,15}$'
                         THEN (item.value ->> 'reported')::bigint END;
        gathered := aveloxis_ops.gathered(repo, item.key);
        IF reported IS NULL OR gathered IS NULL THEN
            RAISE WARNING 'completeness of repo % (%): "%" skipped: % ', repo, phase, item.key,
                CASE WHEN reported IS NULL THEN 'no count in ' || item.value::text ELSE 'not a ledger entity' END;
            CONTINUE;
        END IF;
        INSERT INTO aveloxis_data.collection_completeness AS c (repo_id, entity, reported, gathered, observed_at, source)
        VALUES (repo, item.key, reported, gathered, now(), phase)
        ON CONFLICT (repo_id, entity) DO UPDATE
            -- Issue numbers never go down: an incremental run sees only recent ones.
            SET reported = CASE WHEN c.entity = 'issues_and_pull_requests' THEN greatest(c.reported, EXCLUDED.reported)
                                ELSE EXCLUDED.reported END,
                gathered = EXCLUDED.gathered, observed_at = EXCLUDED.observed_at, source = EXCLUDED.source;
        written := written + 1;
    END LOOP;
    RETURN written;
END
$$;

-- Coverage (gathered / reported, at most 1) of the ledger entities for a set of
-- repositories: NULL when any of them has no record (unknown, not zero).
CREATE FUNCTION aveloxis_ops.coverage(repos bigint[], entities text[])
RETURNS numeric
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN count(c.repo_id) < cardinality(repos) THEN NULL
                WHEN sum(c.reported) = 0 THEN 1
                ELSE least(1, round(sum(c.gathered)::numeric / sum(c.reported), 4)) END
    FROM unnest(repos) AS r(repo_id)
    LEFT JOIN LATERAL (
        SELECT x.repo_id, sum(x.reported) AS reported, sum(x.gathered) AS gathered
        FROM aveloxis_data.collection_completeness x
        WHERE x.repo_id = r.repo_id AND x.entity = ANY (entities)
        GROUP BY x.repo_id
    ) c ON true
$$;

-- Per repository and ledger entity: reported, gathered, coverage, when.
CREATE FUNCTION aveloxis.completeness(repo bigint)
RETURNS TABLE (entity text, reported bigint, gathered bigint, coverage numeric, observed_at timestamptz, source text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    SELECT c.entity, c.reported, c.gathered,
           CASE WHEN c.reported = 0 THEN 1 ELSE least(1, round(c.gathered::numeric / c.reported, 4)) END,
           c.observed_at, c.source
    FROM aveloxis_data.collection_completeness c WHERE c.repo_id = repo ORDER BY c.entity
$$;


-- From sql/analyst_api.sql
-- The analyst SQL API (docs/analytics.md, docs/sql-api.md): statistics per repository
-- and repo group, time series, contributors, bots, and the coverage every figure carries.
-- Read-only, granted to aveloxis_analyst. Series read the daily activity the triggers
-- keep (sql/activity.sql) unless bots are excluded, which reads the base tables.

-- Statistics and time series.

-- Contributors the rules call bots (one pass over contributors; for exclude_bots).
CREATE FUNCTION aveloxis_ops.bot_ids()
RETURNS TABLE (cntrb_id uuid)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.cntrb_id FROM aveloxis_data.contributors c
    LEFT JOIN aveloxis_ops.bot_overrides o ON o.cntrb_id = c.cntrb_id
    WHERE coalesce(o.is_bot, c.gh_type = 'Bot' OR EXISTS (
              SELECT FROM aveloxis_ops.bot_patterns p
              WHERE coalesce(c.gh_login, c.gl_username, c.cntrb_login) ~* p.pattern), false)
$$;

-- Whether a commit author without a linked account looks like a bot by name or email.
CREATE FUNCTION aveloxis_ops.author_looks_bot(name text, email text)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT FROM aveloxis_ops.bot_patterns p
                   WHERE name ~* p.pattern OR split_part(email, '@', 1) ~* p.pattern
                      OR split_part(split_part(email, '@', 1), '+', 2) ~* p.pattern)
$$;

CREATE FUNCTION aveloxis_ops.check_series_args(since date, until date, grain text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF grain IS NULL OR grain NOT IN ('day', 'week', 'month', 'year') THEN
        RAISE EXCEPTION 'grain must be day, week, month or year, not %', coalesce(grain, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF since IS NULL OR until IS NULL OR since > until THEN
        RAISE EXCEPTION 'the range % .. % is empty or unbounded', since, until USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Pass since <= until, e.g. (current_date - 365, current_date).';
    END IF;
    IF grain = 'day' AND until - since > 36600 THEN
        RAISE EXCEPTION 'more than 100 years of days; use a coarser grain' USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

-- The series for a set of repositories (repo_activity and group_activity call it).
-- Periods are calendar-aligned (weeks start on Monday); days outside since..until are
-- not counted, and every period is present, zero or not: coverage tells a real zero
-- from missing data.
CREATE FUNCTION aveloxis_ops.activity_series(repos bigint[], since date, until date, grain text, exclude_bots boolean)
RETURNS TABLE (period_start date, issues_opened bigint, issues_closed bigint, prs_opened bigint, prs_merged bigint,
               prs_closed bigint, commits bigint, lines_added bigint, lines_removed bigint, new_contributors bigint,
               comments bigint, reviews bigint, first_response_hours_median double precision,
               first_response_hours_p90 double precision, review_response_hours_median double precision,
               review_response_hours_p90 double precision, coverage_issues_prs numeric, coverage_commits numeric)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    lo timestamptz := since::timestamp AT TIME ZONE 'UTC';
    hi timestamptz := (until + 1)::timestamp AT TIME ZONE 'UTC';
BEGIN
    PERFORM aveloxis_ops.check_series_args(since, until, grain);
    RETURN QUERY
    WITH bots AS MATERIALIZED (
        SELECT b.cntrb_id FROM aveloxis_ops.bot_ids() b WHERE exclude_bots
    ), periods AS (
        SELECT p::date AS period_start
        FROM generate_series(date_trunc(grain, since::timestamp), until::timestamp, ('1 ' || grain)::interval) p
    ), kept AS (
        -- Everyone: the daily activity the triggers keep.
        SELECT date_trunc(grain, a.day::timestamp)::date AS period_start,
               sum(a.issues_opened) AS issues_opened, sum(a.issues_closed) AS issues_closed,
               sum(a.prs_opened) AS prs_opened, sum(a.prs_merged) AS prs_merged, sum(a.prs_closed) AS prs_closed,
               sum(a.commits) AS commits, sum(a.lines_added) AS lines_added, sum(a.lines_removed) AS lines_removed,
               sum(a.new_contributors) AS new_contributors, sum(a.comments) AS comments, sum(a.reviews) AS reviews
        FROM aveloxis_data.repo_daily_activity a
        WHERE NOT exclude_bots AND a.repo_id = ANY (repos) AND a.day BETWEEN since AND until
        GROUP BY 1
    ), facts AS (
        -- Without bots: the same definitions over the base tables, bots' items left out.
        SELECT i.created_at AS at, 'issues_opened' AS m, 1::bigint AS v FROM aveloxis_data.issues i
        WHERE exclude_bots AND i.repo_id = ANY (repos) AND i.created_at >= lo AND i.created_at < hi
          AND NOT EXISTS (SELECT FROM bots b WHERE b.cntrb_id = i.reporter_id)
        UNION ALL SELECT i.closed_at, 'issues_closed', 1 FROM aveloxis_data.issues i
        WHERE exclude_bots AND i.repo_id = ANY (repos) AND i.closed_at >= lo AND i.closed_at < hi
          AND NOT EXISTS (SELECT FROM bots b WHERE b.cntrb_id = i.reporter_id)
        UNION ALL SELECT p.created_at, 'prs_opened', 1 FROM aveloxis_data.pull_requests p
        WHERE exclude_bots AND p.repo_id = ANY (repos) AND p.created_at >= lo AND p.created_at < hi
          AND NOT EXISTS (SELECT FROM bots b WHERE b.cntrb_id = p.author_id)
        UNION ALL SELECT p.merged_at, 'prs_merged', 1 FROM aveloxis_data.pull_requests p
        WHERE exclude_bots AND p.repo_id = ANY (repos) AND p.merged_at >= lo AND p.merged_at < hi
          AND NOT EXISTS (SELECT FROM bots b WHERE b.cntrb_id = p.author_id)
        UNION ALL SELECT p.closed_at, 'prs_closed', 1 FROM aveloxis_data.pull_requests p
        WHERE exclude_bots AND p.repo_id = ANY (repos) AND p.closed_at >= lo AND p.closed_at < hi AND p.merged_at IS NULL
          AND NOT EXISTS (SELECT FROM bots b WHERE b.cntrb_id = p.author_id)
        UNION ALL SELECT c.at, x.m, x.v FROM (
            SELECT min(cm.cmt_author_timestamp) AS at, sum(cm.cmt_added) AS added, sum(cm.cmt_removed) AS removed
            FROM aveloxis_data.commits cm
            WHERE exclude_bots AND cm.repo_id = ANY (repos) AND cm.cmt_author_timestamp >= lo AND cm.cmt_author_timestamp < hi
              AND NOT EXISTS (SELECT FROM bots b WHERE b.cntrb_id = cm.cmt_ght_author_id)
              AND NOT aveloxis_ops.author_looks_bot(cm.cmt_author_name, cm.cmt_author_email)
            GROUP BY cm.repo_id, cm.cmt_commit_hash) c
        CROSS JOIN LATERAL (VALUES ('commits', 1::bigint), ('lines_added', c.added), ('lines_removed', c.removed)) x(m, v)
        UNION ALL SELECT m.msg_timestamp, 'comments', 1 FROM aveloxis_data.messages m
        WHERE exclude_bots AND m.repo_id = ANY (repos) AND m.msg_timestamp >= lo AND m.msg_timestamp < hi
          AND m.msg_source IN ('issue_comment', 'review_comment')
          AND NOT EXISTS (SELECT FROM bots b WHERE b.cntrb_id = m.cntrb_id)
        UNION ALL SELECT v.submitted_at, 'reviews', 1 FROM aveloxis_data.pull_request_reviews v
        WHERE exclude_bots AND v.repo_id = ANY (repos) AND v.submitted_at >= lo AND v.submitted_at < hi
          AND NOT EXISTS (SELECT FROM bots b WHERE b.cntrb_id = v.cntrb_id)
        UNION ALL SELECT f.first_at, 'new_contributors', 1 FROM aveloxis_data.repo_contributor_first f
        WHERE exclude_bots AND f.repo_id = ANY (repos) AND f.first_at >= lo AND f.first_at < hi
          AND NOT EXISTS (SELECT FROM bots b WHERE b.cntrb_id = f.cntrb_id)
    ), counted AS (
        SELECT k.* FROM kept k
        UNION ALL
        SELECT date_trunc(grain, (f.at AT TIME ZONE 'UTC'))::date,
               sum(f.v) FILTER (WHERE f.m = 'issues_opened'), sum(f.v) FILTER (WHERE f.m = 'issues_closed'),
               sum(f.v) FILTER (WHERE f.m = 'prs_opened'), sum(f.v) FILTER (WHERE f.m = 'prs_merged'),
               sum(f.v) FILTER (WHERE f.m = 'prs_closed'), sum(f.v) FILTER (WHERE f.m = 'commits'),
               sum(f.v) FILTER (WHERE f.m = 'lines_added'), sum(f.v) FILTER (WHERE f.m = 'lines_removed'),
               sum(f.v) FILTER (WHERE f.m = 'new_contributors'), sum(f.v) FILTER (WHERE f.m = 'comments'),
               sum(f.v) FILTER (WHERE f.m = 'reviews')
        FROM facts f GROUP BY 1
    ), responses AS (
        -- Per pull request opened in the range: hours to the first response by someone
        -- other than its author (comment, review, diff comment), and to the first review.
        SELECT date_trunc(grain, (p.created_at AT TIME ZONE 'UTC'))::date AS period_start,
               extract(epoch FROM r.first_response - p.created_at) / 3600 AS first_hours,
               extract(epoch FROM r.first_review - p.created_at) / 3600 AS review_hours
        FROM aveloxis_data.pull_requests p
        CROSS JOIN LATERAL (
            SELECT (SELECT min(m.msg_timestamp) FROM (
                        SELECT m.msg_timestamp, m.cntrb_id FROM aveloxis_data.pull_request_message_ref x
                        JOIN aveloxis_data.messages m ON m.msg_id = x.msg_id WHERE x.pull_request_id = p.pull_request_id
                        UNION ALL
                        SELECT m.msg_timestamp, m.cntrb_id FROM aveloxis_data.review_comments x
                        JOIN aveloxis_data.messages m ON m.msg_id = x.msg_id WHERE x.pull_request_id = p.pull_request_id
                        UNION ALL
                        SELECT v.submitted_at, v.cntrb_id FROM aveloxis_data.pull_request_reviews v
                        WHERE v.pull_request_id = p.pull_request_id) m
                    WHERE m.cntrb_id IS DISTINCT FROM p.author_id AND m.msg_timestamp >= p.created_at
                      AND NOT EXISTS (SELECT FROM bots b WHERE b.cntrb_id = m.cntrb_id)) AS first_response,
                   (SELECT min(v.submitted_at) FROM aveloxis_data.pull_request_reviews v
                    WHERE v.pull_request_id = p.pull_request_id AND v.cntrb_id IS DISTINCT FROM p.author_id
                      AND v.submitted_at >= p.created_at
                      AND NOT EXISTS (SELECT FROM bots b WHERE b.cntrb_id = v.cntrb_id)) AS first_review
        ) r
        WHERE p.repo_id = ANY (repos) AND p.created_at >= lo AND p.created_at < hi
          AND NOT EXISTS (SELECT FROM bots b WHERE b.cntrb_id = p.author_id)
    ), response_stats AS (
        SELECT s.period_start,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY s.first_hours) AS fr_median,
               percentile_cont(0.9) WITHIN GROUP (ORDER BY s.first_hours) AS fr_p90,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY s.review_hours) AS rr_median,
               percentile_cont(0.9) WITHIN GROUP (ORDER BY s.review_hours) AS rr_p90
        FROM responses s GROUP BY 1
    )
    SELECT p.period_start,
           coalesce(sum(c.issues_opened), 0)::bigint, coalesce(sum(c.issues_closed), 0)::bigint,
           coalesce(sum(c.prs_opened), 0)::bigint, coalesce(sum(c.prs_merged), 0)::bigint,
           coalesce(sum(c.prs_closed), 0)::bigint, coalesce(sum(c.commits), 0)::bigint,
           coalesce(sum(c.lines_added), 0)::bigint, coalesce(sum(c.lines_removed), 0)::bigint,
           coalesce(sum(c.new_contributors), 0)::bigint, coalesce(sum(c.comments), 0)::bigint,
           coalesce(sum(c.reviews), 0)::bigint,
           min(r.fr_median), min(r.fr_p90), min(r.rr_median), min(r.rr_p90),
           aveloxis_ops.coverage(repos, ARRAY['issues_and_pull_requests']),
           aveloxis_ops.coverage(repos, ARRAY['commits'])
    FROM periods p
    LEFT JOIN counted c ON c.period_start = p.period_start
    LEFT JOIN response_stats r ON r.period_start = p.period_start
    GROUP BY p.period_start
    ORDER BY p.period_start;
END
$$;

-- A repository's activity over time: counts per period, response times (median, p90,
-- hours), and the coverage of the data behind them.
CREATE FUNCTION aveloxis.repo_activity(repo bigint, since date, until date DEFAULT current_date,
                                       grain text DEFAULT 'week', exclude_bots boolean DEFAULT false)
RETURNS TABLE (period_start date, issues_opened bigint, issues_closed bigint, prs_opened bigint, prs_merged bigint,
               prs_closed bigint, commits bigint, lines_added bigint, lines_removed bigint, new_contributors bigint,
               comments bigint, reviews bigint, first_response_hours_median double precision,
               first_response_hours_p90 double precision, review_response_hours_median double precision,
               review_response_hours_p90 double precision, coverage_issues_prs numeric, coverage_commits numeric)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
BEGIN
    PERFORM aveloxis_ops.require_repo(repo);
    RETURN QUERY SELECT * FROM aveloxis_ops.activity_series(ARRAY[repo], since, until, grain, exclude_bots);
END
$$;

-- The same for every repository of a group (by name, as 8Knot's "org" is).
CREATE FUNCTION aveloxis.group_activity(repo_group text, since date, until date DEFAULT current_date,
                                        grain text DEFAULT 'week', exclude_bots boolean DEFAULT false)
RETURNS TABLE (period_start date, issues_opened bigint, issues_closed bigint, prs_opened bigint, prs_merged bigint,
               prs_closed bigint, commits bigint, lines_added bigint, lines_removed bigint, new_contributors bigint,
               comments bigint, reviews bigint, first_response_hours_median double precision,
               first_response_hours_p90 double precision, review_response_hours_median double precision,
               review_response_hours_p90 double precision, coverage_issues_prs numeric, coverage_commits numeric)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    members bigint[];
BEGIN
    SELECT array_agg(r.repo_id ORDER BY r.repo_id) INTO members
    FROM aveloxis_data.repos r JOIN aveloxis_data.repo_groups g USING (repo_group_id)
    WHERE lower(g.rg_name) = lower(repo_group);
    IF members IS NULL THEN
        RAISE EXCEPTION 'no repo group named "%" (or it has no repositories)', repo_group USING ERRCODE = 'no_data_found',
            HINT = 'SELECT rg_name FROM aveloxis_data.repo_groups lists them.';
    END IF;
    RETURN QUERY SELECT * FROM aveloxis_ops.activity_series(members, since, until, grain, exclude_bots);
END
$$;

-- Everything stored about one repository, per entity: how many, first and last
-- activity, what the forge reported and the coverage, and when its phase last ran.
CREATE FUNCTION aveloxis.repo_stats(repo bigint)
RETURNS TABLE (entity text, stored bigint, first_activity timestamptz, last_activity timestamptz,
               forge_reported bigint, coverage numeric, last_collected timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    collected timestamptz;
    facaded   timestamptz;
BEGIN
    PERFORM aveloxis_ops.require_repo(repo);
    SELECT max(j.last_success_at) FILTER (WHERE j.phase = 'collect'), max(j.last_success_at) FILTER (WHERE j.phase = 'facade')
    INTO collected, facaded FROM aveloxis_ops.jobs j WHERE j.repo_id = repo;
    RETURN QUERY
    WITH counts AS (
        SELECT 'issues' AS entity, count(*) AS stored, min(i.created_at) AS first_at, max(i.created_at) AS last_at,
               'issues' AS ledger, collected AS at FROM aveloxis_data.issues i WHERE i.repo_id = repo
        UNION ALL SELECT 'pull_requests', count(*), min(p.created_at), max(p.created_at), 'pull_requests', collected
        FROM aveloxis_data.pull_requests p WHERE p.repo_id = repo
        UNION ALL SELECT 'commits', count(DISTINCT c.cmt_commit_hash), min(c.cmt_author_timestamp),
                         max(c.cmt_author_timestamp), 'commits', facaded
        FROM aveloxis_data.commits c WHERE c.repo_id = repo
        UNION ALL SELECT 'issue_comments', count(*), min(m.msg_timestamp), max(m.msg_timestamp), 'issue_comments', collected
        FROM aveloxis_data.messages m WHERE m.repo_id = repo AND m.msg_source = 'issue_comment'
        UNION ALL SELECT 'review_comments', count(*), min(m.msg_timestamp), max(m.msg_timestamp), 'review_comments', collected
        FROM aveloxis_data.messages m WHERE m.repo_id = repo AND m.msg_source = 'review_comment'
        UNION ALL SELECT 'reviews', count(*), min(v.submitted_at), max(v.submitted_at), NULL, collected
        FROM aveloxis_data.pull_request_reviews v WHERE v.repo_id = repo
        UNION ALL SELECT 'releases', count(*), min(r.release_published_at), max(r.release_published_at), 'releases', collected
        FROM aveloxis_data.releases r WHERE r.repo_id = repo
        UNION ALL SELECT 'issue_events', count(*), min(e.created_at), max(e.created_at), NULL, collected
        FROM aveloxis_data.issue_events e WHERE e.repo_id = repo
        UNION ALL SELECT 'pull_request_events', count(*), min(e.created_at), max(e.created_at), NULL, collected
        FROM aveloxis_data.pull_request_events e WHERE e.repo_id = repo
        UNION ALL SELECT 'contributors', count(*), min(f.first_at), max(f.first_at), NULL, NULL
        FROM aveloxis_data.repo_contributor_first f WHERE f.repo_id = repo
    )
    SELECT c.entity, c.stored, c.first_at, c.last_at, l.reported,
           CASE WHEN l.reported IS NULL THEN NULL WHEN l.reported = 0 THEN 1
                ELSE least(1, round(c.stored::numeric / l.reported, 4)) END,
           c.at
    FROM counts c
    LEFT JOIN aveloxis_data.collection_completeness l ON l.repo_id = repo AND l.entity = c.ledger;
END
$$;

-- The most active contributors of a repository in a range, by actions (explorer's
-- definition: commits, issues and pull requests opened and closed, reviews, comments).
CREATE FUNCTION aveloxis.top_contributors(repo bigint, since date, until date DEFAULT current_date,
                                          n integer DEFAULT 10, exclude_bots boolean DEFAULT false)
RETURNS TABLE (cntrb_id uuid, login text, actions bigint, commits bigint, issues_opened bigint, prs_opened bigint,
               reviews bigint, comments bigint, first_action timestamptz, last_action timestamptz, bot_rule text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
BEGIN
    PERFORM aveloxis_ops.require_repo(repo);
    PERFORM aveloxis_ops.check_series_args(since, until, 'day');
    RETURN QUERY
    SELECT t.* FROM (
        SELECT a.cntrb_id, coalesce(c.gh_login, c.gl_username, c.cntrb_login), count(*),
               count(*) FILTER (WHERE a.action = 'commit'), count(*) FILTER (WHERE a.action = 'issue_opened'),
               count(*) FILTER (WHERE a.action = 'pull_request_open'),
               count(*) FILTER (WHERE a.action LIKE 'pull_request_review_%'),
               count(*) FILTER (WHERE a.action IN ('issue_comment', 'pull_request_comment')),
               min(a.created_at), max(a.created_at), aveloxis.bot_rule(a.cntrb_id) AS rule
        FROM aveloxis_data.contributor_actions a
        LEFT JOIN aveloxis_data.contributors c ON c.cntrb_id = a.cntrb_id
        WHERE a.repo_id = repo AND a.created_at >= since::timestamp AT TIME ZONE 'UTC'
          AND a.created_at < (until + 1)::timestamp AT TIME ZONE 'UTC'
        GROUP BY a.cntrb_id, c.gh_login, c.gl_username, c.cntrb_login
    ) t
    WHERE NOT exclude_bots OR t.rule IS NULL
    ORDER BY 3 DESC, 2
    LIMIT greatest(n, 0);
END
$$;

-- Contributors whose first contribution to the repository falls in the range, with
-- that first action.
CREATE FUNCTION aveloxis.new_contributors(repo bigint, since date, until date DEFAULT current_date)
RETURNS TABLE (cntrb_id uuid, login text, first_at timestamptz, first_action text, bot_rule text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
BEGIN
    PERFORM aveloxis_ops.require_repo(repo);
    PERFORM aveloxis_ops.check_series_args(since, until, 'day');
    RETURN QUERY
    SELECT f.cntrb_id, coalesce(c.gh_login, c.gl_username, c.cntrb_login), f.first_at,
           (SELECT a.action FROM aveloxis_data.contributor_actions a
            WHERE a.repo_id = repo AND a.cntrb_id = f.cntrb_id AND a.created_at = f.first_at
            ORDER BY a.action LIMIT 1),
           aveloxis.bot_rule(f.cntrb_id)
    FROM aveloxis_data.repo_contributor_first f
    LEFT JOIN aveloxis_data.contributors c ON c.cntrb_id = f.cntrb_id
    WHERE f.repo_id = repo AND f.first_at >= since::timestamp AT TIME ZONE 'UTC'
      AND f.first_at < (until + 1)::timestamp AT TIME ZONE 'UTC'
    ORDER BY f.first_at, 2;
END
$$;

-- One contributor across the fleet: per repository, first and last action and counts.
CREATE FUNCTION aveloxis.contributor_activity(cntrb uuid)
RETURNS TABLE (repo_id bigint, repo_git text, first_action timestamptz, last_action timestamptz, actions bigint,
               commits bigint, issues_opened bigint, prs_opened bigint, reviews bigint, comments bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    SELECT a.repo_id, r.repo_git, min(a.created_at), max(a.created_at), count(*),
           count(*) FILTER (WHERE a.action = 'commit'), count(*) FILTER (WHERE a.action = 'issue_opened'),
           count(*) FILTER (WHERE a.action = 'pull_request_open'),
           count(*) FILTER (WHERE a.action LIKE 'pull_request_review_%'),
           count(*) FILTER (WHERE a.action IN ('issue_comment', 'pull_request_comment'))
    FROM aveloxis_data.contributor_actions a
    JOIN aveloxis_data.repos r ON r.repo_id = a.repo_id
    WHERE a.cntrb_id = cntrb
    GROUP BY a.repo_id, r.repo_git
    ORDER BY 5 DESC, 1
$$;

CREATE OR REPLACE FUNCTION aveloxis.complete(job bigint, lease_token uuid, outcome jsonb DEFAULT '{}')
RETURNS timestamptz
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    lease    record := aveloxis_ops.held_lease(lease_token, job);
    j        aveloxis_ops.jobs := lease.j;
    at       timestamptz := aveloxis_ops.clock();
    whole    boolean;
    next_due timestamptz;
BEGIN
    IF outcome IS NULL OR jsonb_typeof(outcome) <> 'object' THEN
        RAISE EXCEPTION 'outcome must be a JSON object, e.g. {"complete": true, "counts": {...}}'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF outcome ? 'complete' AND jsonb_typeof(outcome -> 'complete') <> 'boolean' THEN
        RAISE EXCEPTION 'outcome.complete must be true or false' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    whole := coalesce((outcome ->> 'complete')::boolean, true);
    next_due := CASE WHEN whole THEN at + aveloxis_ops.setting(j.phase || '.cadence')::interval ELSE at END;
    PERFORM aveloxis_ops.finish_run(j, lease.run, CASE WHEN whole THEN 'complete' ELSE 'partial' END, NULL,
                                    outcome - 'state');
    -- What the forge reported, against what the drain (run before complete) stored.
    PERFORM aveloxis_ops.record_completeness(j.repo_id, j.phase, outcome -> 'completeness');
    UPDATE aveloxis_ops.jobs SET
        priority = 100, due_at = next_due, due_from_cadence = whole, attempts = 0, consecutive_failures = 0,
        backoff_until = NULL, retry_first = NOT whole,
        sidelined_until = CASE WHEN sidelined_until = 'infinity' THEN sidelined_until END,
        sideline_reason = CASE WHEN sidelined_until = 'infinity' THEN sideline_reason END,
        force_full = force_full AND NOT whole,
        last_success_at = at, last_success_started_at = coalesce(j.leased_at, at),
        last_error = NULL, last_error_class = NULL, last_outcome = outcome - 'state',
        agent_state = CASE WHEN outcome ? 'state' THEN outcome -> 'state' ELSE agent_state END
    WHERE job_id = j.job_id;
    RETURN next_due;
END
$$;

SELECT aveloxis.rebuild_activity();

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
        aveloxis.contributor_activity(uuid)
    TO aveloxis_analyst;

    -- aveloxis_agent: the agent API only; no direct access to aveloxis_data.
    GRANT USAGE ON SCHEMA aveloxis TO aveloxis_agent;
    GRANT EXECUTE ON FUNCTION
        aveloxis.version(),
        aveloxis.platform_uuid(smallint, bigint),
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
        aveloxis.record_commit_author_miss(text, text, text, text)
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
