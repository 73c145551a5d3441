-- pg_aveloxis 0.2.0 -> 0.3.0: the drain stays linear in a repository's size.
--
-- * Parent and contributor lookups of the drain are correlated subqueries (one index
--   probe per row) instead of joins that the planner, with statistics older than the
--   drain's own inserts, ran as a hash of the repository's every issue per batch.
-- * Accounts whose stored identity and contributor row already match the payload are
--   settled after one probe and skip the writes of contributor resolution.
-- * Long texts are compressed with lz4 instead of pglz (existing values stay as they
--   are until rewritten).
-- * The scratch tables of a drain session carry a layout marker, so a session that
--   outlives this upgrade replaces its old scratch tables.

ALTER TABLE aveloxis_data.issues ALTER COLUMN issue_body SET COMPRESSION lz4;
ALTER TABLE aveloxis_data.pull_requests ALTER COLUMN pr_body SET COMPRESSION lz4;
ALTER TABLE aveloxis_data.messages ALTER COLUMN msg_text SET COMPRESSION lz4;
ALTER TABLE aveloxis_data.releases ALTER COLUMN release_description SET COMPRESSION lz4;
ALTER TABLE aveloxis_data.review_comments ALTER COLUMN diff_hunk SET COMPRESSION lz4;

CREATE OR REPLACE FUNCTION aveloxis_ops.drain_scratch()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    scratch text;
BEGIN
    IF to_regclass('pg_temp.drain_scratch_layout_3') IS NOT NULL THEN
        RETURN;
    END IF;
    FOREACH scratch IN ARRAY ARRAY['drain_rows', 'drain_prs', 'drain_comments', 'drain_users', 'drain_user_refs',
                                   'drain_issues'] LOOP
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
         site_admin, name, email, staging_id)
    SELECT DISTINCT ON (r.platform_id, r.user_id)
           r.platform_id, r.user_id, nullif(r.u ->> 'login', ''), r.u ->> 'type',
           r.u ->> 'node_id', r.u ->> 'avatar_url', r.u ->> 'url', coalesce(r.u ->> 'html_url', r.u ->> 'web_url'),
           nullif(r.u ->> 'gravatar_id', ''), r.u ->> 'site_admin', nullif(r.u ->> 'name', ''),
           nullif(r.u ->> 'email', ''), r.staging_id
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
            (cntrb_id, cntrb_login, cntrb_full_name, cntrb_email,
             gh_user_id, gh_login, gh_url, gh_html_url, gh_node_id, gh_avatar_url, gh_gravatar_id, gh_type, gh_site_admin,
             gl_id, gl_username, gl_web_url, gl_avatar_url, gl_full_name,
             tool_source, tool_version, data_source)
        SELECT d.cntrb_id, d.login, d.name, d.email,
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
            cntrb_full_name = coalesce(d.name, c.cntrb_full_name), cntrb_email = coalesce(d.email, c.cntrb_email)
        FROM pg_temp.drain_users d
        WHERE d.settled IS NOT TRUE AND d.platform_id = 1 AND c.cntrb_id = d.cntrb_id
          AND ((c.gh_user_id, c.gh_login, c.gh_url, c.gh_html_url, c.gh_node_id, c.gh_avatar_url, c.gh_gravatar_id,
                c.gh_type, c.gh_site_admin)
               IS DISTINCT FROM (d.user_id, d.login, d.api_url, d.html_url, d.node_id, d.avatar_url, d.gravatar_id,
                d.user_type, d.site_admin)
            OR (d.name IS NOT NULL AND d.name IS DISTINCT FROM c.cntrb_full_name)
            OR (d.email IS NOT NULL AND d.email IS DISTINCT FROM c.cntrb_email))
        RETURNING 1
    ), upd_gl AS (
        UPDATE aveloxis_data.contributors c
        SET gl_id = d.user_id,
            cntrb_login = CASE WHEN c.cntrb_login IS NULL OR c.cntrb_login = c.gl_username THEN d.login ELSE c.cntrb_login END,
            gl_username = d.login, gl_web_url = d.html_url, gl_avatar_url = d.avatar_url,
            gl_full_name = coalesce(d.name, c.gl_full_name)
        FROM pg_temp.drain_users d
        WHERE d.settled IS NOT TRUE AND d.platform_id = 2 AND c.cntrb_id = d.cntrb_id
          AND (c.gl_id, c.gl_username, c.gl_web_url, c.gl_avatar_url)
              IS DISTINCT FROM (d.user_id, d.login, d.html_url, d.avatar_url)
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM upd) + (SELECT count(*) FROM upd_gl) INTO updated;
    -- Rows inserted just now are "updated" by the statement above only if they differ,
    -- which they never do: the counts do not overlap.
END
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.drain_pull_requests(repo bigint, only_staging_id bigint)
RETURNS aveloxis_ops.drain_counts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    total bigint;
    result aveloxis_ops.drain_counts;
BEGIN
    DELETE FROM pg_temp.drain_prs;
    DELETE FROM pg_temp.drain_user_refs;
    DELETE FROM pg_temp.drain_users;

    IF EXISTS (SELECT FROM pg_temp.drain_rows r
               WHERE r.doc IS NOT NULL AND NOT r.pending AND (only_staging_id IS NULL OR r.staging_id = only_staging_id)
                 AND jsonb_typeof(r.doc -> 'pull_request') IS DISTINCT FROM 'object') THEN
        RAISE EXCEPTION 'pull_request envelope without a "pull_request" object'
            USING ERRCODE = 'not_null_violation',
                  HINT = 'Stage {"pull_request": <PR object>, "reviews": [...], ...} (docs/staging-contract.md).';
    END IF;
    INSERT INTO pg_temp.drain_prs
        (staging_id, platform_id, platform_pr_id, pr_number, node_id, pr_url, pr_html_url, pr_diff_url, pr_title,
         pr_body, pr_state, pr_locked, pr_draft, author, pr_author_association, created_at, updated_at, closed_at,
         merged_at, merge_commit_sha, pr_commit_count, pr_additions, pr_deletions, pr_changed_files, labels,
         assignees, requested, head, base, reviews, commits, files)
    SELECT r.staging_id, r.platform_id, x.id, x.number, x.node_id, x.url, x.html_url, x.diff_url, x.title, x.body,
           CASE WHEN aveloxis_ops.forge_timestamp(x.merged_at) IS NOT NULL OR x.merged IS TRUE THEN 'merged'
                ELSE x.state END,
           x.locked, x.draft, x."user", x.author_association,
           aveloxis_ops.forge_timestamp(x.created_at), aveloxis_ops.forge_timestamp(x.updated_at),
           aveloxis_ops.forge_timestamp(x.closed_at), aveloxis_ops.forge_timestamp(x.merged_at),
           x.merge_commit_sha, x.commits, x.additions, x.deletions, x.changed_files,
           CASE WHEN jsonb_typeof(x.labels) = 'array' THEN x.labels ELSE '[]'::jsonb END,
           CASE WHEN jsonb_typeof(x.assignees) = 'array' THEN x.assignees
                WHEN jsonb_typeof(x.assignee) = 'object' THEN jsonb_build_array(x.assignee)
                ELSE '[]'::jsonb END,
           -- The envelope's /requested_reviewers, else the list inside the PR object.
           CASE WHEN jsonb_typeof(r.doc -> 'requested_reviewers' -> 'users') = 'array'
                    THEN r.doc -> 'requested_reviewers' -> 'users'
                WHEN jsonb_typeof(r.doc -> 'requested_reviewers') = 'array' THEN r.doc -> 'requested_reviewers'
                WHEN jsonb_typeof(x.requested_reviewers) = 'array' THEN x.requested_reviewers END,
           x.head, x.base,
           CASE WHEN jsonb_typeof(r.doc -> 'reviews') = 'array' THEN r.doc -> 'reviews' END,
           CASE WHEN jsonb_typeof(r.doc -> 'commits') = 'array' THEN r.doc -> 'commits' END,
           CASE WHEN jsonb_typeof(r.doc -> 'files') = 'array' THEN r.doc -> 'files' END
    FROM pg_temp.drain_rows r,
         jsonb_to_record(r.doc -> 'pull_request') AS x(
             id bigint, number integer, node_id text, url text, html_url text, diff_url text, title text, body text,
             state text, locked boolean, draft boolean, merged boolean, "user" jsonb, author_association text,
             created_at text, updated_at text, closed_at text, merged_at text, merge_commit_sha text,
             commits integer, additions integer, deletions integer, changed_files integer, labels jsonb,
             assignee jsonb, assignees jsonb, requested_reviewers jsonb, head jsonb, base jsonb)
    WHERE r.doc IS NOT NULL AND NOT r.pending AND (only_staging_id IS NULL OR r.staging_id = only_staging_id);
    GET DIAGNOSTICS total = ROW_COUNT;
    IF EXISTS (SELECT FROM pg_temp.drain_prs WHERE platform_pr_id IS NULL OR pr_number IS NULL) THEN
        RAISE EXCEPTION 'pull request object without a numeric "id" and "number"'
            USING ERRCODE = 'not_null_violation',
                  HINT = 'Stage pull request objects as the forge returns them (docs/staging-contract.md).';
    END IF;
    DELETE FROM pg_temp.drain_prs d USING pg_temp.drain_prs e
    WHERE e.platform_pr_id = d.platform_pr_id
      AND (coalesce(e.updated_at, '-infinity'), e.staging_id) > (coalesce(d.updated_at, '-infinity'), d.staging_id);
    ANALYZE pg_temp.drain_prs;

    INSERT INTO pg_temp.drain_user_refs (platform_id, staging_id, u)
    SELECT d.platform_id, d.staging_id, u
    FROM pg_temp.drain_prs d,
         LATERAL (SELECT d.author UNION ALL SELECT d.head -> 'user' UNION ALL SELECT d.base -> 'user'
                  UNION ALL SELECT a FROM jsonb_array_elements(d.assignees) a
                  UNION ALL SELECT q FROM jsonb_array_elements(coalesce(d.requested, '[]')) q
                  UNION ALL SELECT v -> 'user' FROM jsonb_array_elements(coalesce(d.reviews, '[]')) v
                  UNION ALL SELECT c -> 'author' FROM jsonb_array_elements(coalesce(d.commits, '[]')) c) refs(u);
    PERFORM aveloxis_ops.collect_users();
    PERFORM aveloxis_ops.resolve_users();

    WITH up AS (
        INSERT INTO aveloxis_data.pull_requests AS p
            (repo_id, platform_pr_id, pr_number, node_id, pr_url, pr_html_url, pr_diff_url, pr_title, pr_body, pr_state,
             pr_locked, pr_draft, author_id, pr_author_association, created_at, updated_at, closed_at, merged_at,
             merge_commit_sha, pr_commit_count, pr_additions, pr_deletions, pr_changed_files,
             tool_source, tool_version, data_source)
        SELECT repo, d.platform_pr_id, d.pr_number, d.node_id, d.pr_url, d.pr_html_url, d.pr_diff_url, d.pr_title,
               d.pr_body, d.pr_state, d.pr_locked, d.pr_draft, u.cntrb_id, d.pr_author_association, d.created_at,
               d.updated_at, d.closed_at, d.merged_at, d.merge_commit_sha, d.pr_commit_count, d.pr_additions,
               d.pr_deletions, d.pr_changed_files, 'pg_aveloxis', aveloxis.version(), 'aveloxis.drain'
        FROM pg_temp.drain_prs d
        LEFT JOIN pg_temp.drain_users u ON u.platform_id = d.platform_id AND u.user_id = aveloxis_ops.user_id_of(d.author)
        ORDER BY d.platform_pr_id
        ON CONFLICT (repo_id, platform_pr_id) DO UPDATE
            SET pr_number = EXCLUDED.pr_number, node_id = EXCLUDED.node_id, pr_url = EXCLUDED.pr_url,
                pr_html_url = EXCLUDED.pr_html_url, pr_diff_url = EXCLUDED.pr_diff_url, pr_title = EXCLUDED.pr_title,
                pr_body = EXCLUDED.pr_body, pr_state = EXCLUDED.pr_state, pr_locked = EXCLUDED.pr_locked,
                pr_draft = EXCLUDED.pr_draft, author_id = coalesce(EXCLUDED.author_id, p.author_id),
                pr_author_association = EXCLUDED.pr_author_association, created_at = EXCLUDED.created_at,
                updated_at = EXCLUDED.updated_at, closed_at = EXCLUDED.closed_at, merged_at = EXCLUDED.merged_at,
                merge_commit_sha = EXCLUDED.merge_commit_sha,
                -- The list endpoint omits counts the detail has: keep what is known.
                pr_commit_count = coalesce(EXCLUDED.pr_commit_count, p.pr_commit_count),
                pr_additions = coalesce(EXCLUDED.pr_additions, p.pr_additions),
                pr_deletions = coalesce(EXCLUDED.pr_deletions, p.pr_deletions),
                pr_changed_files = coalesce(EXCLUDED.pr_changed_files, p.pr_changed_files),
                tool_version = EXCLUDED.tool_version, data_collection_date = now()
            WHERE (p.updated_at IS NULL OR EXCLUDED.updated_at IS NULL OR EXCLUDED.updated_at >= p.updated_at)
              AND ((p.pr_number, p.node_id, p.pr_url, p.pr_html_url, p.pr_diff_url, p.pr_title, p.pr_body, p.pr_state,
                    p.pr_locked, p.pr_draft, p.pr_author_association, p.created_at, p.updated_at, p.closed_at,
                    p.merged_at, p.merge_commit_sha)
                   IS DISTINCT FROM
                   (EXCLUDED.pr_number, EXCLUDED.node_id, EXCLUDED.pr_url, EXCLUDED.pr_html_url, EXCLUDED.pr_diff_url,
                    EXCLUDED.pr_title, EXCLUDED.pr_body, EXCLUDED.pr_state, EXCLUDED.pr_locked, EXCLUDED.pr_draft,
                    EXCLUDED.pr_author_association, EXCLUDED.created_at, EXCLUDED.updated_at, EXCLUDED.closed_at,
                    EXCLUDED.merged_at, EXCLUDED.merge_commit_sha)
                OR (EXCLUDED.author_id IS NOT NULL AND EXCLUDED.author_id IS DISTINCT FROM p.author_id)
                OR (EXCLUDED.pr_commit_count IS NOT NULL AND EXCLUDED.pr_commit_count IS DISTINCT FROM p.pr_commit_count)
                OR (EXCLUDED.pr_additions IS NOT NULL AND EXCLUDED.pr_additions IS DISTINCT FROM p.pr_additions)
                OR (EXCLUDED.pr_deletions IS NOT NULL AND EXCLUDED.pr_deletions IS DISTINCT FROM p.pr_deletions)
                OR (EXCLUDED.pr_changed_files IS NOT NULL AND EXCLUDED.pr_changed_files IS DISTINCT FROM p.pr_changed_files))
        RETURNING p.platform_pr_id, (p.xmax = 0) AS was_inserted
    )
    UPDATE pg_temp.drain_prs d SET changed = true, was_inserted = up.was_inserted
    FROM up WHERE up.platform_pr_id = d.platform_pr_id;
    -- Ids for all, and whether this envelope is at least as new as what is stored.
    -- (Correlated: one index probe per row, however stale the table's statistics.)
    UPDATE pg_temp.drain_prs d
    SET (pull_request_id, fresh) = (
        SELECT p.pull_request_id, (d.updated_at IS NULL OR p.updated_at IS NULL OR d.updated_at >= p.updated_at)
        FROM aveloxis_data.pull_requests p WHERE p.repo_id = repo AND p.platform_pr_id = d.platform_pr_id);

    -- Labels and assignees come with the PR object: synced when it changed.
    DELETE FROM aveloxis_data.pull_request_labels l USING pg_temp.drain_prs d
    WHERE d.changed AND NOT d.was_inserted AND l.pull_request_id = d.pull_request_id
      AND NOT EXISTS (SELECT FROM jsonb_array_elements(d.labels) e
                      WHERE jsonb_typeof(e) = 'object' AND e ->> 'name' = l.label_name);
    INSERT INTO aveloxis_data.pull_request_labels AS l
        (pull_request_id, repo_id, label_name, label_description, label_color, platform_label_id)
    SELECT DISTINCT ON (d.pull_request_id, e ->> 'name')
           d.pull_request_id, repo, e ->> 'name', e ->> 'description', e ->> 'color',
           CASE WHEN jsonb_typeof(e -> 'id') = 'number' THEN (e ->> 'id')::bigint END
    FROM pg_temp.drain_prs d, jsonb_array_elements(d.labels) e
    WHERE d.changed AND jsonb_typeof(e) = 'object' AND nullif(e ->> 'name', '') IS NOT NULL
    ORDER BY d.pull_request_id, e ->> 'name'
    ON CONFLICT (pull_request_id, label_name) DO UPDATE
        SET label_description = EXCLUDED.label_description, label_color = EXCLUDED.label_color,
            platform_label_id = EXCLUDED.platform_label_id
        WHERE (l.label_description, l.label_color, l.platform_label_id)
              IS DISTINCT FROM (EXCLUDED.label_description, EXCLUDED.label_color, EXCLUDED.platform_label_id);

    DELETE FROM aveloxis_data.pull_request_assignees a USING pg_temp.drain_prs d
    WHERE d.changed AND NOT d.was_inserted AND a.pull_request_id = d.pull_request_id
      AND NOT EXISTS (SELECT FROM jsonb_array_elements(d.assignees) e
                      WHERE aveloxis_ops.user_id_of(e) = a.platform_assignee_id);
    WITH wanted AS MATERIALIZED (
        SELECT DISTINCT d.pull_request_id, d.platform_id, aveloxis_ops.user_id_of(e) AS user_id
        FROM pg_temp.drain_prs d, jsonb_array_elements(d.assignees) e
        WHERE d.changed AND aveloxis_ops.user_id_of(e) IS NOT NULL
    )
    INSERT INTO aveloxis_data.pull_request_assignees (pull_request_id, repo_id, platform_assignee_id, cntrb_id)
    SELECT w.pull_request_id, repo, w.user_id, u.cntrb_id
    FROM wanted w JOIN pg_temp.drain_users u ON u.platform_id = w.platform_id AND u.user_id = w.user_id
    ORDER BY 1, 3
    ON CONFLICT (pull_request_id, platform_assignee_id) DO NOTHING;

    -- Requested reviewers: the current set, from a fresh envelope that carries one.
    DELETE FROM aveloxis_data.pull_request_reviewers r USING pg_temp.drain_prs d
    WHERE d.fresh AND d.requested IS NOT NULL AND r.pull_request_id = d.pull_request_id
      AND NOT EXISTS (SELECT FROM jsonb_array_elements(d.requested) e
                      WHERE aveloxis_ops.user_id_of(e) = r.platform_reviewer_id);
    WITH wanted AS MATERIALIZED (
        SELECT DISTINCT d.pull_request_id, d.platform_id, aveloxis_ops.user_id_of(e) AS user_id
        FROM pg_temp.drain_prs d, jsonb_array_elements(d.requested) e
        WHERE d.fresh AND d.requested IS NOT NULL AND aveloxis_ops.user_id_of(e) IS NOT NULL
    )
    INSERT INTO aveloxis_data.pull_request_reviewers (pull_request_id, repo_id, platform_reviewer_id, cntrb_id)
    SELECT w.pull_request_id, repo, w.user_id, u.cntrb_id
    FROM wanted w JOIN pg_temp.drain_users u ON u.platform_id = w.platform_id AND u.user_id = w.user_id
    ORDER BY 1, 3
    ON CONFLICT (pull_request_id, platform_reviewer_id) DO NOTHING;

    -- Reviews; a review's non-empty body is also a message.
    WITH v AS MATERIALIZED (
        SELECT DISTINCT ON (d.pull_request_id, x.id)
               d.pull_request_id, d.platform_id, x.id, x.node_id, x.state, x.body, x.html_url, x.commit_id,
               x.author_association, aveloxis_ops.forge_timestamp(x.submitted_at) AS submitted_at,
               aveloxis_ops.user_id_of(x."user") AS user_id
        FROM pg_temp.drain_prs d, jsonb_array_elements(d.reviews) e,
             jsonb_to_record(e) AS x(id bigint, node_id text, state text, body text, html_url text, commit_id text,
                                    author_association text, submitted_at text, "user" jsonb)
        WHERE d.fresh AND d.reviews IS NOT NULL AND jsonb_typeof(e) = 'object' AND x.id IS NOT NULL
        ORDER BY d.pull_request_id, x.id
    )
    INSERT INTO aveloxis_data.pull_request_reviews AS r
        (pull_request_id, repo_id, platform_review_id, node_id, cntrb_id, review_state, review_body, submitted_at,
         html_url, commit_id, author_association)
    SELECT v.pull_request_id, repo, v.id, v.node_id, u.cntrb_id, v.state, v.body, v.submitted_at, v.html_url,
           v.commit_id, v.author_association
    FROM v LEFT JOIN pg_temp.drain_users u ON u.platform_id = v.platform_id AND u.user_id = v.user_id
    ORDER BY 1, 3
    ON CONFLICT (pull_request_id, platform_review_id) DO UPDATE
        SET node_id = EXCLUDED.node_id, cntrb_id = coalesce(EXCLUDED.cntrb_id, r.cntrb_id),
            review_state = EXCLUDED.review_state, review_body = EXCLUDED.review_body,
            submitted_at = EXCLUDED.submitted_at, html_url = EXCLUDED.html_url, commit_id = EXCLUDED.commit_id,
            author_association = EXCLUDED.author_association
        WHERE (r.node_id, r.review_state, r.review_body, r.submitted_at, r.html_url, r.commit_id, r.author_association)
              IS DISTINCT FROM (EXCLUDED.node_id, EXCLUDED.review_state, EXCLUDED.review_body, EXCLUDED.submitted_at,
                                EXCLUDED.html_url, EXCLUDED.commit_id, EXCLUDED.author_association);
    DELETE FROM aveloxis_data.pull_request_reviews r USING pg_temp.drain_prs d
    WHERE d.fresh AND d.reviews IS NOT NULL AND r.pull_request_id = d.pull_request_id
      AND NOT EXISTS (SELECT FROM jsonb_array_elements(d.reviews) e
                      WHERE jsonb_typeof(e) = 'object' AND (e ->> 'id') = r.platform_review_id::text);
    WITH bodies AS (
        INSERT INTO aveloxis_data.messages AS m
            (repo_id, platform_id, msg_source, platform_msg_id, node_id, cntrb_id, msg_text, msg_timestamp,
             msg_html_url, tool_source, tool_version, data_source)
        SELECT repo, d.platform_id, 'review', r.platform_review_id, r.node_id, r.cntrb_id, r.review_body,
               r.submitted_at, r.html_url, 'pg_aveloxis', aveloxis.version(), 'aveloxis.drain'
        FROM pg_temp.drain_prs d JOIN aveloxis_data.pull_request_reviews r ON r.pull_request_id = d.pull_request_id
        WHERE d.fresh AND d.reviews IS NOT NULL AND nullif(btrim(r.review_body), '') IS NOT NULL
        ORDER BY r.platform_review_id
        ON CONFLICT (repo_id, msg_source, platform_msg_id) DO UPDATE
            SET msg_text = EXCLUDED.msg_text, cntrb_id = coalesce(EXCLUDED.cntrb_id, m.cntrb_id),
                msg_timestamp = EXCLUDED.msg_timestamp, msg_html_url = EXCLUDED.msg_html_url
            WHERE (m.msg_text, m.msg_timestamp, m.msg_html_url)
                  IS DISTINCT FROM (EXCLUDED.msg_text, EXCLUDED.msg_timestamp, EXCLUDED.msg_html_url)
        RETURNING m.msg_id, m.platform_msg_id
    )
    INSERT INTO aveloxis_data.pull_request_review_message_ref (pr_review_id, msg_id, repo_id)
    SELECT r.pr_review_id, b.msg_id, repo
    FROM bodies b JOIN aveloxis_data.pull_request_reviews r
         ON r.repo_id = repo AND r.platform_review_id = b.platform_msg_id
    ON CONFLICT (pr_review_id, msg_id) DO NOTHING;

    -- Commits (a force-push can remove some: the list is the current set).
    INSERT INTO aveloxis_data.pull_request_commits AS c
        (pull_request_id, repo_id, pr_cmt_sha, pr_cmt_node_id, pr_cmt_message, pr_cmt_author_cntrb_id,
         pr_cmt_author_name, pr_cmt_author_email, pr_cmt_timestamp)
    SELECT DISTINCT ON (d.pull_request_id, e ->> 'sha')
           d.pull_request_id, repo, e ->> 'sha', e ->> 'node_id', e -> 'commit' ->> 'message', u.cntrb_id,
           e -> 'commit' -> 'author' ->> 'name', e -> 'commit' -> 'author' ->> 'email',
           aveloxis_ops.forge_timestamp(e -> 'commit' -> 'author' ->> 'date')
    FROM pg_temp.drain_prs d
    CROSS JOIN jsonb_array_elements(d.commits) e
    LEFT JOIN pg_temp.drain_users u ON u.platform_id = d.platform_id AND u.user_id = aveloxis_ops.user_id_of(e -> 'author')
    WHERE d.fresh AND d.commits IS NOT NULL AND jsonb_typeof(e) = 'object' AND e ->> 'sha' IS NOT NULL
    ORDER BY d.pull_request_id, e ->> 'sha'
    ON CONFLICT (pull_request_id, pr_cmt_sha) DO UPDATE
        SET pr_cmt_message = EXCLUDED.pr_cmt_message,
            pr_cmt_author_cntrb_id = coalesce(EXCLUDED.pr_cmt_author_cntrb_id, c.pr_cmt_author_cntrb_id)
        WHERE (c.pr_cmt_message, c.pr_cmt_author_cntrb_id) IS DISTINCT FROM
              (EXCLUDED.pr_cmt_message, coalesce(EXCLUDED.pr_cmt_author_cntrb_id, c.pr_cmt_author_cntrb_id));
    DELETE FROM aveloxis_data.pull_request_commits c USING pg_temp.drain_prs d
    WHERE d.fresh AND d.commits IS NOT NULL AND c.pull_request_id = d.pull_request_id
      AND NOT EXISTS (SELECT FROM jsonb_array_elements(d.commits) e WHERE e ->> 'sha' = c.pr_cmt_sha);

    INSERT INTO aveloxis_data.pull_request_files AS f
        (pull_request_id, repo_id, pr_file_path, pr_file_status, pr_file_additions, pr_file_deletions, pr_file_changes)
    SELECT DISTINCT ON (d.pull_request_id, x.filename)
           d.pull_request_id, repo, x.filename, x.status, x.additions, x.deletions, x.changes
    FROM pg_temp.drain_prs d, jsonb_array_elements(d.files) e,
         jsonb_to_record(e) AS x(filename text, status text, additions integer, deletions integer, changes integer)
    WHERE d.fresh AND d.files IS NOT NULL AND jsonb_typeof(e) = 'object' AND x.filename IS NOT NULL
    ORDER BY d.pull_request_id, x.filename
    ON CONFLICT (pull_request_id, pr_file_path) DO UPDATE
        SET pr_file_status = EXCLUDED.pr_file_status, pr_file_additions = EXCLUDED.pr_file_additions,
            pr_file_deletions = EXCLUDED.pr_file_deletions, pr_file_changes = EXCLUDED.pr_file_changes
        WHERE (f.pr_file_status, f.pr_file_additions, f.pr_file_deletions, f.pr_file_changes)
              IS DISTINCT FROM (EXCLUDED.pr_file_status, EXCLUDED.pr_file_additions, EXCLUDED.pr_file_deletions,
                                EXCLUDED.pr_file_changes);
    DELETE FROM aveloxis_data.pull_request_files f USING pg_temp.drain_prs d
    WHERE d.fresh AND d.files IS NOT NULL AND f.pull_request_id = d.pull_request_id
      AND NOT EXISTS (SELECT FROM jsonb_array_elements(d.files) e WHERE e ->> 'filename' = f.pr_file_path);

    -- Head and base; a head whose fork was deleted (repo null) has no repository row.
    WITH m AS (
        INSERT INTO aveloxis_data.pull_request_meta AS t
            (pull_request_id, repo_id, pr_head_or_base, pr_src_meta_label, pr_src_meta_ref, pr_sha, cntrb_id)
        SELECT d.pull_request_id, repo, side.name, side.v ->> 'label', side.v ->> 'ref', side.v ->> 'sha', u.cntrb_id
        FROM pg_temp.drain_prs d
        CROSS JOIN LATERAL (VALUES ('head', d.head), ('base', d.base)) AS side(name, v)
        LEFT JOIN pg_temp.drain_users u
               ON u.platform_id = d.platform_id AND u.user_id = aveloxis_ops.user_id_of(side.v -> 'user')
        WHERE d.fresh AND jsonb_typeof(side.v) = 'object'
        ORDER BY 1, 3
        ON CONFLICT (pull_request_id, pr_head_or_base) DO UPDATE
            SET pr_src_meta_label = EXCLUDED.pr_src_meta_label, pr_src_meta_ref = EXCLUDED.pr_src_meta_ref,
                pr_sha = EXCLUDED.pr_sha, cntrb_id = coalesce(EXCLUDED.cntrb_id, t.cntrb_id)
        RETURNING t.pr_repo_meta_id, t.pull_request_id, t.pr_head_or_base
    ), gone AS (
        DELETE FROM aveloxis_data.pull_request_repo r USING m, pg_temp.drain_prs d
        WHERE r.pr_repo_meta_id = m.pr_repo_meta_id AND d.pull_request_id = m.pull_request_id
          AND jsonb_typeof(CASE m.pr_head_or_base WHEN 'head' THEN d.head ELSE d.base END -> 'repo') IS DISTINCT FROM 'object'
    )
    INSERT INTO aveloxis_data.pull_request_repo AS r
        (pr_repo_meta_id, repo_id, pr_repo_head_or_base, pr_src_repo_id, pr_src_node_id, pr_repo_name,
         pr_repo_full_name, pr_repo_private)
    SELECT m.pr_repo_meta_id, repo, m.pr_head_or_base, x.id, x.node_id, x.name, x.full_name, x.private
    FROM m JOIN pg_temp.drain_prs d ON d.pull_request_id = m.pull_request_id,
         jsonb_to_record(CASE m.pr_head_or_base WHEN 'head' THEN d.head ELSE d.base END -> 'repo')
             AS x(id bigint, node_id text, name text, full_name text, private boolean)
    WHERE jsonb_typeof(CASE m.pr_head_or_base WHEN 'head' THEN d.head ELSE d.base END -> 'repo') = 'object'
    ORDER BY 1
    ON CONFLICT (pr_repo_meta_id) DO UPDATE
        SET pr_src_repo_id = EXCLUDED.pr_src_repo_id, pr_src_node_id = EXCLUDED.pr_src_node_id,
            pr_repo_name = EXCLUDED.pr_repo_name, pr_repo_full_name = EXCLUDED.pr_repo_full_name,
            pr_repo_private = EXCLUDED.pr_repo_private;

    SELECT count(*) FILTER (WHERE was_inserted), count(*) FILTER (WHERE changed AND NOT was_inserted)
    INTO result.inserted, result.updated
    FROM pg_temp.drain_prs;
    result.skipped := 0;
    result.pending := 0;
    result.unchanged := total - result.inserted - result.updated;
    RETURN result;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.drain_issue_comments(repo bigint, only_staging_id bigint)
RETURNS aveloxis_ops.drain_counts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    total bigint;
    result aveloxis_ops.drain_counts;
BEGIN
    DELETE FROM pg_temp.drain_comments;
    DELETE FROM pg_temp.drain_user_refs;
    DELETE FROM pg_temp.drain_users;

    INSERT INTO pg_temp.drain_comments
        (staging_id, platform_id, platform_msg_id, node_id, body, html_url, parent_number, author, created_at, updated_at)
    SELECT r.staging_id, r.platform_id, x.id, x.node_id, x.body, x.html_url,
           coalesce(CASE WHEN (r.context ->> 'parent_number') ~ '^[0-9]{1,9}$' THEN (r.context ->> 'parent_number')::integer END,
                    substring(x.issue_url FROM '/issues/([0-9]{1,9})$')::integer),
           x."user", aveloxis_ops.forge_timestamp(x.created_at), aveloxis_ops.forge_timestamp(x.updated_at)
    FROM pg_temp.drain_rows r,
         jsonb_to_record(r.doc) AS x(id bigint, node_id text, body text, html_url text, issue_url text, "user" jsonb,
                                     created_at text, updated_at text)
    WHERE r.doc IS NOT NULL AND NOT r.pending AND (only_staging_id IS NULL OR r.staging_id = only_staging_id);
    GET DIAGNOSTICS total = ROW_COUNT;

    IF EXISTS (SELECT FROM pg_temp.drain_comments WHERE platform_msg_id IS NULL) THEN
        RAISE EXCEPTION 'issue comment payload without a numeric "id"'
            USING ERRCODE = 'not_null_violation',
                  HINT = 'Stage comment objects as the forge returns them (docs/staging-contract.md).';
    END IF;
    IF EXISTS (SELECT FROM pg_temp.drain_comments WHERE parent_number IS NULL) THEN
        RAISE EXCEPTION 'issue comment payload names no parent: no "issue_url" ending in a number, and no context.parent_number'
            USING ERRCODE = 'not_null_violation',
                  HINT = 'Stage comments of /issues/{n}/comments with context {"parent_number": n}.';
    END IF;

    -- Issues and pull requests share one number space: the parent is one or the other.
    -- Correlated lookups: one index probe per comment. (A join let the planner, misled by
    -- statistics older than the drain's own inserts, hash the repository's every issue
    -- for each batch: quadratic in the repository's size.)
    UPDATE pg_temp.drain_comments c
    SET issue_id = (SELECT i.issue_id FROM aveloxis_data.issues i
                    WHERE i.repo_id = repo AND i.issue_number = c.parent_number);
    UPDATE pg_temp.drain_comments c
    SET pull_request_id = (SELECT p.pull_request_id FROM aveloxis_data.pull_requests p
                           WHERE p.repo_id = repo AND p.pr_number = c.parent_number)
    WHERE c.issue_id IS NULL;
    UPDATE pg_temp.drain_rows r SET pending = true
    FROM pg_temp.drain_comments c
    WHERE c.staging_id = r.staging_id AND c.issue_id IS NULL AND c.pull_request_id IS NULL;
    SELECT count(*) INTO result.pending FROM pg_temp.drain_comments WHERE issue_id IS NULL AND pull_request_id IS NULL;
    DELETE FROM pg_temp.drain_comments WHERE issue_id IS NULL AND pull_request_id IS NULL;
    DELETE FROM pg_temp.drain_comments d USING pg_temp.drain_comments e
    WHERE e.platform_msg_id = d.platform_msg_id
      AND (coalesce(e.updated_at, '-infinity'), e.staging_id) > (coalesce(d.updated_at, '-infinity'), d.staging_id);

    ANALYZE pg_temp.drain_comments;
    INSERT INTO pg_temp.drain_user_refs (platform_id, staging_id, u)
    SELECT c.platform_id, c.staging_id, c.author FROM pg_temp.drain_comments c;
    PERFORM aveloxis_ops.collect_users();
    PERFORM aveloxis_ops.resolve_users();

    WITH up AS (
        INSERT INTO aveloxis_data.messages AS m
            (repo_id, platform_id, msg_source, platform_msg_id, node_id, cntrb_id, msg_text, msg_timestamp,
             msg_updated_at, msg_html_url, tool_source, tool_version, data_source)
        SELECT repo, c.platform_id, 'issue_comment', c.platform_msg_id, c.node_id, u.cntrb_id, c.body, c.created_at,
               c.updated_at, c.html_url, 'pg_aveloxis', aveloxis.version(), 'aveloxis.drain'
        FROM pg_temp.drain_comments c
        LEFT JOIN pg_temp.drain_users u
               ON u.platform_id = c.platform_id AND u.user_id = aveloxis_ops.user_id_of(c.author)
        ORDER BY c.platform_msg_id
        ON CONFLICT (repo_id, msg_source, platform_msg_id) DO UPDATE
            SET node_id = EXCLUDED.node_id, cntrb_id = coalesce(EXCLUDED.cntrb_id, m.cntrb_id),
                msg_text = EXCLUDED.msg_text, msg_timestamp = EXCLUDED.msg_timestamp,
                msg_updated_at = EXCLUDED.msg_updated_at, msg_html_url = EXCLUDED.msg_html_url,
                tool_version = EXCLUDED.tool_version, data_collection_date = now()
            WHERE (m.msg_updated_at IS NULL OR EXCLUDED.msg_updated_at IS NULL OR EXCLUDED.msg_updated_at >= m.msg_updated_at)
              AND ((m.node_id, m.msg_text, m.msg_timestamp, m.msg_updated_at, m.msg_html_url)
                   IS DISTINCT FROM
                   (EXCLUDED.node_id, EXCLUDED.msg_text, EXCLUDED.msg_timestamp, EXCLUDED.msg_updated_at,
                    EXCLUDED.msg_html_url)
                OR (EXCLUDED.cntrb_id IS NOT NULL AND EXCLUDED.cntrb_id IS DISTINCT FROM m.cntrb_id))
        RETURNING m.msg_id, m.platform_msg_id, (m.xmax = 0) AS was_inserted
    )
    UPDATE pg_temp.drain_comments c SET msg_id = up.msg_id, changed = true, was_inserted = up.was_inserted
    FROM up WHERE up.platform_msg_id = c.platform_msg_id;

    INSERT INTO aveloxis_data.issue_message_ref
        (issue_id, msg_id, repo_id, platform_src_id, tool_source, tool_version, data_source)
    SELECT c.issue_id, c.msg_id, repo, c.platform_msg_id, 'pg_aveloxis', aveloxis.version(), 'aveloxis.drain'
    FROM pg_temp.drain_comments c WHERE c.was_inserted AND c.issue_id IS NOT NULL
    ORDER BY c.msg_id
    ON CONFLICT (issue_id, msg_id) DO NOTHING;
    INSERT INTO aveloxis_data.pull_request_message_ref (pull_request_id, msg_id, repo_id, platform_src_id)
    SELECT c.pull_request_id, c.msg_id, repo, c.platform_msg_id
    FROM pg_temp.drain_comments c WHERE c.was_inserted AND c.pull_request_id IS NOT NULL
    ORDER BY c.msg_id
    ON CONFLICT (pull_request_id, msg_id) DO NOTHING;

    SELECT count(*) FILTER (WHERE was_inserted), count(*) FILTER (WHERE changed AND NOT was_inserted)
    INTO result.inserted, result.updated
    FROM pg_temp.drain_comments;
    result.skipped := 0;
    result.unchanged := total - result.pending - result.inserted - result.updated;
    RETURN result;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.drain_issue_events(repo bigint, only_staging_id bigint)
RETURNS aveloxis_ops.drain_counts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    total bigint;
    result aveloxis_ops.drain_counts;
    ins_issue bigint;
    ins_pr bigint;
BEGIN
    DELETE FROM pg_temp.drain_user_refs;
    DELETE FROM pg_temp.drain_users;
    PERFORM aveloxis_ops.drop_batch_table('drain_events');
    CREATE TEMP TABLE drain_events ON COMMIT DROP AS
    SELECT r.staging_id, r.platform_id, x.id AS platform_event_id, x.node_id, x.event AS action, x.commit_id,
           x.actor, x.assignee, aveloxis_ops.forge_timestamp(x.created_at) AS created_at,
           coalesce(CASE WHEN (r.context ->> 'parent_number') ~ '^[0-9]{1,9}$'
                         THEN (r.context ->> 'parent_number')::integer END,
                    CASE WHEN jsonb_typeof(x.issue -> 'number') = 'number' THEN (x.issue ->> 'number')::integer END)
               AS parent_number,
           NULL::bigint AS issue_id, NULL::bigint AS pull_request_id
    FROM pg_temp.drain_rows r,
         jsonb_to_record(r.doc) AS x(id bigint, node_id text, event text, commit_id text, actor jsonb, assignee jsonb,
                                     created_at text, issue jsonb)
    WHERE r.doc IS NOT NULL AND NOT r.pending AND (only_staging_id IS NULL OR r.staging_id = only_staging_id);
    GET DIAGNOSTICS total = ROW_COUNT;
    -- Timeline items (/issues/{n}/timeline) may be staged as events too: comments and
    -- reviews are drained from their own endpoints (their ids are another id space),
    -- and commits, cross-references and line comments have no event id. Counted, not stored.
    DELETE FROM pg_temp.drain_events
    WHERE action IN ('commented', 'reviewed', 'committed', 'cross-referenced', 'line-commented')
       OR (platform_event_id IS NULL AND action IS NOT NULL);
    GET DIAGNOSTICS result.skipped = ROW_COUNT;
    IF EXISTS (SELECT FROM pg_temp.drain_events WHERE platform_event_id IS NULL OR action IS NULL) THEN
        RAISE EXCEPTION 'issue event payload without a numeric "id" and an "event"'
            USING ERRCODE = 'not_null_violation',
                  HINT = 'Stage event objects as the forge returns them (docs/staging-contract.md).';
    END IF;
    IF EXISTS (SELECT FROM pg_temp.drain_events WHERE parent_number IS NULL) THEN
        RAISE EXCEPTION 'issue event payload names no parent: no "issue" with a number, and no context.parent_number'
            USING ERRCODE = 'not_null_violation',
                  HINT = 'Stage events of /issues/{n}/events with context {"parent_number": n}.';
    END IF;
    -- Correlated lookups, as for comments: one index probe per event.
    UPDATE pg_temp.drain_events e
    SET issue_id = (SELECT i.issue_id FROM aveloxis_data.issues i
                    WHERE i.repo_id = repo AND i.issue_number = e.parent_number);
    UPDATE pg_temp.drain_events e
    SET pull_request_id = (SELECT p.pull_request_id FROM aveloxis_data.pull_requests p
                           WHERE p.repo_id = repo AND p.pr_number = e.parent_number)
    WHERE e.issue_id IS NULL;
    UPDATE pg_temp.drain_rows r SET pending = true
    FROM pg_temp.drain_events e WHERE e.staging_id = r.staging_id AND e.issue_id IS NULL AND e.pull_request_id IS NULL;
    SELECT count(*) INTO result.pending FROM pg_temp.drain_events WHERE issue_id IS NULL AND pull_request_id IS NULL;

    INSERT INTO pg_temp.drain_user_refs (platform_id, staging_id, u)
    SELECT e.platform_id, e.staging_id, u FROM pg_temp.drain_events e,
           LATERAL (SELECT e.actor UNION ALL SELECT e.assignee) refs(u)
    WHERE e.issue_id IS NOT NULL OR e.pull_request_id IS NOT NULL;
    PERFORM aveloxis_ops.collect_users();
    PERFORM aveloxis_ops.resolve_users();

    -- Events never change once they happened: insert what is new.
    WITH ins AS (
        INSERT INTO aveloxis_data.issue_events
            (issue_id, repo_id, platform_id, platform_event_id, node_id, cntrb_id, action, action_commit_hash,
             assignee_id, created_at)
        SELECT DISTINCT ON (e.platform_event_id)
               e.issue_id, repo, e.platform_id, e.platform_event_id, e.node_id, a.cntrb_id, e.action, e.commit_id,
               s.cntrb_id, e.created_at
        FROM pg_temp.drain_events e
        LEFT JOIN pg_temp.drain_users a ON a.platform_id = e.platform_id AND a.user_id = aveloxis_ops.user_id_of(e.actor)
        LEFT JOIN pg_temp.drain_users s ON s.platform_id = e.platform_id AND s.user_id = aveloxis_ops.user_id_of(e.assignee)
        WHERE e.issue_id IS NOT NULL
        ORDER BY e.platform_event_id
        ON CONFLICT (repo_id, platform_event_id) DO NOTHING
        RETURNING 1
    )
    SELECT count(*) INTO ins_issue FROM ins;
    WITH ins AS (
        INSERT INTO aveloxis_data.pull_request_events
            (pull_request_id, repo_id, platform_id, platform_event_id, node_id, cntrb_id, action, action_commit_hash,
             assignee_id, created_at)
        SELECT DISTINCT ON (e.platform_event_id)
               e.pull_request_id, repo, e.platform_id, e.platform_event_id, e.node_id, a.cntrb_id, e.action,
               e.commit_id, s.cntrb_id, e.created_at
        FROM pg_temp.drain_events e
        LEFT JOIN pg_temp.drain_users a ON a.platform_id = e.platform_id AND a.user_id = aveloxis_ops.user_id_of(e.actor)
        LEFT JOIN pg_temp.drain_users s ON s.platform_id = e.platform_id AND s.user_id = aveloxis_ops.user_id_of(e.assignee)
        WHERE e.pull_request_id IS NOT NULL
        ORDER BY e.platform_event_id
        ON CONFLICT (repo_id, platform_event_id) DO NOTHING
        RETURNING 1
    )
    SELECT count(*) INTO ins_pr FROM ins;
    result.inserted := ins_issue + ins_pr;
    result.updated := 0;
    result.unchanged := total - result.skipped - result.pending - result.inserted;
    RETURN result;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.drain_review_comments(repo bigint, only_staging_id bigint)
RETURNS aveloxis_ops.drain_counts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    total bigint;
    result aveloxis_ops.drain_counts;
BEGIN
    DELETE FROM pg_temp.drain_user_refs;
    DELETE FROM pg_temp.drain_users;
    PERFORM aveloxis_ops.drop_batch_table('drain_review_comments');
    CREATE TEMP TABLE drain_review_comments ON COMMIT DROP AS
    SELECT r.staging_id, r.platform_id, x.*,
           coalesce(CASE WHEN (r.context ->> 'parent_number') ~ '^[0-9]{1,9}$'
                         THEN (r.context ->> 'parent_number')::integer END,
                    substring(x.pull_request_url FROM '/pulls/([0-9]{1,9})$')::integer) AS parent_number,
           NULL::bigint AS pull_request_id, NULL::bigint AS msg_id, false AS was_inserted, false AS changed
    FROM pg_temp.drain_rows r,
         jsonb_to_record(r.doc) AS x(id bigint, node_id text, body text, html_url text, pull_request_url text,
                                     "user" jsonb, pull_request_review_id bigint, in_reply_to_id bigint,
                                     diff_hunk text, path text, "position" integer, original_position integer,
                                     line integer, original_line integer, side text, commit_id text,
                                     original_commit_id text, author_association text, created_at text,
                                     updated_at text)
    WHERE r.doc IS NOT NULL AND NOT r.pending AND (only_staging_id IS NULL OR r.staging_id = only_staging_id);
    GET DIAGNOSTICS total = ROW_COUNT;
    IF EXISTS (SELECT FROM pg_temp.drain_review_comments WHERE id IS NULL) THEN
        RAISE EXCEPTION 'review comment payload without a numeric "id"' USING ERRCODE = 'not_null_violation',
            HINT = 'Stage review comment objects as the forge returns them (docs/staging-contract.md).';
    END IF;
    IF EXISTS (SELECT FROM pg_temp.drain_review_comments WHERE parent_number IS NULL) THEN
        RAISE EXCEPTION 'review comment payload names no pull request: no "pull_request_url", and no context.parent_number'
            USING ERRCODE = 'not_null_violation', HINT = 'Stage /pulls/{n}/comments items with context {"parent_number": n}.';
    END IF;
    UPDATE pg_temp.drain_review_comments c
    SET pull_request_id = (SELECT p.pull_request_id FROM aveloxis_data.pull_requests p
                           WHERE p.repo_id = repo AND p.pr_number = c.parent_number);
    UPDATE pg_temp.drain_rows r SET pending = true
    FROM pg_temp.drain_review_comments c WHERE c.staging_id = r.staging_id AND c.pull_request_id IS NULL;
    SELECT count(*) INTO result.pending FROM pg_temp.drain_review_comments WHERE pull_request_id IS NULL;
    DELETE FROM pg_temp.drain_review_comments WHERE pull_request_id IS NULL;
    DELETE FROM pg_temp.drain_review_comments d USING pg_temp.drain_review_comments e
    WHERE e.id = d.id AND (coalesce(aveloxis_ops.forge_timestamp(e.updated_at), '-infinity'), e.staging_id)
                        > (coalesce(aveloxis_ops.forge_timestamp(d.updated_at), '-infinity'), d.staging_id);

    INSERT INTO pg_temp.drain_user_refs (platform_id, staging_id, u)
    SELECT c.platform_id, c.staging_id, c."user" FROM pg_temp.drain_review_comments c;
    PERFORM aveloxis_ops.collect_users();
    PERFORM aveloxis_ops.resolve_users();

    WITH up AS (
        INSERT INTO aveloxis_data.messages AS m
            (repo_id, platform_id, msg_source, platform_msg_id, node_id, cntrb_id, msg_text, msg_timestamp,
             msg_updated_at, msg_html_url, tool_source, tool_version, data_source)
        SELECT repo, c.platform_id, 'review_comment', c.id, c.node_id, u.cntrb_id, c.body,
               aveloxis_ops.forge_timestamp(c.created_at), aveloxis_ops.forge_timestamp(c.updated_at), c.html_url,
               'pg_aveloxis', aveloxis.version(), 'aveloxis.drain'
        FROM pg_temp.drain_review_comments c
        LEFT JOIN pg_temp.drain_users u ON u.platform_id = c.platform_id AND u.user_id = aveloxis_ops.user_id_of(c."user")
        ORDER BY c.id
        ON CONFLICT (repo_id, msg_source, platform_msg_id) DO UPDATE
            SET node_id = EXCLUDED.node_id, cntrb_id = coalesce(EXCLUDED.cntrb_id, m.cntrb_id),
                msg_text = EXCLUDED.msg_text, msg_updated_at = EXCLUDED.msg_updated_at,
                msg_html_url = EXCLUDED.msg_html_url, data_collection_date = now()
            WHERE (m.msg_updated_at IS NULL OR EXCLUDED.msg_updated_at IS NULL OR EXCLUDED.msg_updated_at >= m.msg_updated_at)
              AND (m.node_id, m.msg_text, m.msg_updated_at, m.msg_html_url)
                  IS DISTINCT FROM (EXCLUDED.node_id, EXCLUDED.msg_text, EXCLUDED.msg_updated_at, EXCLUDED.msg_html_url)
        RETURNING m.msg_id, m.platform_msg_id, (m.xmax = 0) AS was_inserted
    )
    UPDATE pg_temp.drain_review_comments c SET msg_id = up.msg_id, was_inserted = up.was_inserted, changed = true
    FROM up WHERE up.platform_msg_id = c.id;
    UPDATE pg_temp.drain_review_comments c
    SET msg_id = (SELECT m.msg_id FROM aveloxis_data.messages m
                  WHERE m.repo_id = repo AND m.msg_source = 'review_comment' AND m.platform_msg_id = c.id)
    WHERE c.msg_id IS NULL;

    INSERT INTO aveloxis_data.review_comments AS t
        (repo_id, pull_request_id, msg_id, platform_src_id, pr_review_id, platform_review_id, in_reply_to_id,
         diff_hunk, path, "position", original_position, line, original_line, side, commit_id, original_commit_id,
         author_association)
    SELECT repo, c.pull_request_id, c.msg_id, c.id,
           (SELECT v.pr_review_id FROM aveloxis_data.pull_request_reviews v
            WHERE v.pull_request_id = c.pull_request_id AND v.platform_review_id = c.pull_request_review_id),
           c.pull_request_review_id, c.in_reply_to_id,
           c.diff_hunk, c.path, c."position", c.original_position, c.line, c.original_line, c.side, c.commit_id,
           c.original_commit_id, c.author_association
    FROM pg_temp.drain_review_comments c
    WHERE c.changed
    ORDER BY c.id
    ON CONFLICT (repo_id, platform_src_id) DO UPDATE
        SET pr_review_id = coalesce(EXCLUDED.pr_review_id, t.pr_review_id), diff_hunk = EXCLUDED.diff_hunk,
            path = EXCLUDED.path, "position" = EXCLUDED."position", line = EXCLUDED.line, side = EXCLUDED.side,
            commit_id = EXCLUDED.commit_id;

    SELECT count(*) FILTER (WHERE was_inserted), count(*) FILTER (WHERE changed AND NOT was_inserted)
    INTO result.inserted, result.updated FROM pg_temp.drain_review_comments;
    result.skipped := 0;
    result.unchanged := total - result.pending - result.inserted - result.updated;
    RETURN result;
END
$$;

