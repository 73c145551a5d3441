-- The drain: staged payloads -> aveloxis_data, set-based, in FK order, a batch per
-- transaction (docs/staging-contract.md).
--
--   CALL aveloxis.drain(repo_id)      drains one repository, COMMIT after every batch
--   CALL aveloxis.drain_all()         drains every repository with pending rows
--   aveloxis.drain_step(...)          one batch; what the procedures loop over
--   aveloxis.retry_rejects(repo_id)   puts rejected rows back and drains them again
--
-- Each batch runs set-based statements. If one fails, the batch is redone one row at a
-- time, each in its own subtransaction, and only the rows that still fail go to
-- staging_rejects with their error: one bad payload never loses the good ones.

-- Entities in the order they are drained: parents before the rows that point at them.
CREATE FUNCTION aveloxis_ops.drain_entities()
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ARRAY['contributor', 'issue', 'pull_request', 'issue_event', 'issue_comment', 'review_comment', 'release',
                    'repo_info', 'commit', 'commit_removed', 'repo_files'] $$;

-- Scratch tables of the drain, one set per session, emptied at every COMMIT. Rows stay
-- inline (toast_tuple_target): compressing each document into a temp TOAST table cost
-- more than the parse itself. Staged rows need no row locks: the per-repository
-- advisory lock already keeps other drains away.
--
-- The drain runs with its owner's rights (drain_step is SECURITY DEFINER) in the
-- caller's session, and the caller can create temp tables too. So a scratch table is
-- used only if the drain made it: owned by the role the drain runs as (the caller
-- cannot create tables owned by another role, nor add triggers, rules or children to
-- them). A same-named table the caller made stops the drain with an error: it is never
-- written, read or dropped (dropping it could run nothing of the caller's, but refusing
-- is simpler to reason about).
--
-- The marker table names the layout: a session that outlived an ALTER EXTENSION UPDATE
-- still holds the old version's tables, which are replaced here.
CREATE FUNCTION aveloxis_ops.drain_scratch()
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

-- Refuses a temp table of a name the drain uses that the drain did not make (DESIGN §5:
-- elevated code never uses an object the caller could have created). current_user is
-- the role the drain runs as: the extension's owner inside drain_step.
CREATE FUNCTION aveloxis_ops.check_scratch_owner(name text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    owner_name text;
BEGIN
    SELECT pg_catalog.pg_get_userbyid(c.relowner) INTO owner_name
    FROM pg_catalog.pg_class c
    WHERE c.relnamespace = pg_catalog.pg_my_temp_schema() AND c.relname = check_scratch_owner.name
      AND c.relowner <> (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = current_user);
    IF FOUND THEN
        RAISE EXCEPTION 'this session holds a temporary relation "%" owned by %, not made by the drain; the drain refuses to use it',
            name, owner_name
            USING ERRCODE = 'insufficient_privilege',
                  HINT = format('DROP TABLE pg_temp.%I, or drain from a new session.', name);
    END IF;
END
$$;

-- Drops a per-batch scratch table (ON COMMIT DROP) left by an earlier call in the same
-- transaction: the row-by-row fallback maps one batch several times. A plain
-- DROP ... IF EXISTS would send the client a NOTICE on every batch. A table of that
-- name the drain did not make is refused, never dropped or used.
CREATE FUNCTION aveloxis_ops.drop_batch_table(name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM aveloxis_ops.check_scratch_owner(name);
    IF to_regclass('pg_temp.' || quote_ident(name)) IS NOT NULL THEN
        EXECUTE format('DROP TABLE pg_temp.%I', name);
    END IF;
END
$$;

-- The typed fields each entity's mapper reads, by path in the payload: a value of the
-- wrong JSON type or out of range is removed before mapping, so that field is stored
-- as NULL and counted (drain_run_nulled), and the rest of the row is stored. A key
-- field (is_key) that does not fit rejects the row, naming the entity and the field:
-- without it the row cannot be stored. Text fields take any value (its JSON text);
-- values inside arrays (a pull request's reviews and files) are checked by their
-- mappers, and one that cannot be stored rejects its row with the entity named.
CREATE FUNCTION aveloxis_ops.drain_fields(entity text)
RETURNS TABLE (path text[], kind text, is_key boolean)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT f.path, f.kind, f.is_key
    FROM (VALUES
        ('issue', '{id}'::text[], 'bigint', true), ('issue', '{number}', 'integer', true),
        ('issue', '{comments}', 'integer', false), ('issue', '{created_at}', 'timestamp', false),
        ('issue', '{updated_at}', 'timestamp', false), ('issue', '{closed_at}', 'timestamp', false),
        ('pull_request', '{pull_request,id}', 'bigint', true), ('pull_request', '{pull_request,number}', 'integer', true),
        ('pull_request', '{pull_request,locked}', 'boolean', false),
        ('pull_request', '{pull_request,draft}', 'boolean', false),
        ('pull_request', '{pull_request,merged}', 'boolean', false),
        ('pull_request', '{pull_request,commits}', 'integer', false),
        ('pull_request', '{pull_request,additions}', 'integer', false),
        ('pull_request', '{pull_request,deletions}', 'integer', false),
        ('pull_request', '{pull_request,changed_files}', 'integer', false),
        ('pull_request', '{pull_request,created_at}', 'timestamp', false),
        ('pull_request', '{pull_request,updated_at}', 'timestamp', false),
        ('pull_request', '{pull_request,closed_at}', 'timestamp', false),
        ('pull_request', '{pull_request,merged_at}', 'timestamp', false),
        ('issue_comment', '{id}', 'bigint', true), ('issue_comment', '{created_at}', 'timestamp', false),
        ('issue_comment', '{updated_at}', 'timestamp', false),
        ('issue_event', '{id}', 'bigint', true), ('issue_event', '{created_at}', 'timestamp', false),
        ('issue_event', '{issue,number}', 'integer', false),
        ('release', '{id}', 'bigint', true), ('release', '{draft}', 'boolean', false),
        ('release', '{prerelease}', 'boolean', false), ('release', '{created_at}', 'timestamp', false),
        ('release', '{published_at}', 'timestamp', false), ('release', '{updated_at}', 'timestamp', false),
        ('review_comment', '{id}', 'bigint', true),
        ('review_comment', '{pull_request_review_id}', 'bigint', false),
        ('review_comment', '{in_reply_to_id}', 'bigint', false),
        ('review_comment', '{position}', 'integer', false),
        ('review_comment', '{original_position}', 'integer', false),
        ('review_comment', '{line}', 'integer', false), ('review_comment', '{original_line}', 'integer', false),
        ('review_comment', '{created_at}', 'timestamp', false),
        ('review_comment', '{updated_at}', 'timestamp', false),
        ('repo_info', '{id}', 'bigint', true), ('repo_info', '{fork}', 'boolean', false),
        ('repo_info', '{archived}', 'boolean', false), ('repo_info', '{has_issues}', 'boolean', false),
        ('repo_info', '{has_wiki}', 'boolean', false), ('repo_info', '{has_pages}', 'boolean', false),
        ('repo_info', '{forks_count}', 'integer', false), ('repo_info', '{subscribers_count}', 'integer', false),
        ('repo_info', '{watchers_count}', 'integer', false), ('repo_info', '{stargazers_count}', 'integer', false),
        ('repo_info', '{open_issues_count}', 'integer', false), ('repo_info', '{size}', 'integer', false),
        ('repo_info', '{created_at}', 'timestamp', false), ('repo_info', '{updated_at}', 'timestamp', false),
        ('repo_info', '{pushed_at}', 'timestamp', false)
    ) AS f(entity, path, kind, is_key)
    WHERE f.entity = drain_fields.entity
$$;

-- Whether a JSON value fits a mapper's column of that kind (absent and JSON null fit:
-- they are NULL already). Integers are whole numbers in range, as numbers or strings
-- of digits; booleans are JSON booleans or "true"/"false"; timestamps are what
-- forge_timestamp reads (zero and pre-1970 dates do not fit: they are unknown).
-- No SET clause, so that it is inlined into the drain's field check: as a function call
-- it cost 4 s of a 100,000-envelope drain (the caller's search_path starts with
-- pg_catalog, and every name in it is qualified or pg_catalog's).
CREATE FUNCTION aveloxis_ops.json_fits(v jsonb, kind text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN v IS NULL OR pg_catalog.jsonb_typeof(v) = 'null' THEN true
        WHEN kind = 'timestamp' THEN
            pg_catalog.jsonb_typeof(v) = 'string' AND aveloxis_ops.forge_timestamp(v #>> '{}') IS NOT NULL
        WHEN kind = 'boolean' THEN
            pg_catalog.jsonb_typeof(v) = 'boolean'
            OR (pg_catalog.jsonb_typeof(v) = 'string' AND (v #>> '{}') IN ('true', 'false'))
        WHEN kind IN ('integer', 'bigint') THEN
            CASE WHEN pg_catalog.jsonb_typeof(v) = 'number'
                     THEN v::numeric = pg_catalog.trunc(v::numeric)
                          AND v::numeric BETWEEN CASE kind WHEN 'integer' THEN -2147483648 ELSE -9223372036854775808 END
                                             AND CASE kind WHEN 'integer' THEN 2147483647 ELSE 9223372036854775807 END
                 WHEN pg_catalog.jsonb_typeof(v) = 'string' AND (v #>> '{}') ~ '^[+-]?[0-9]{1,19}$'
                     THEN (v #>> '{}')::numeric
                          BETWEEN CASE kind WHEN 'integer' THEN -2147483648 ELSE -9223372036854775808 END
                              AND CASE kind WHEN 'integer' THEN 2147483647 ELSE 9223372036854775807 END
                 ELSE false END
        ELSE true END
$$;

-- Before mapping a batch: rows whose key field does not fit are marked for rejection
-- (parse_error names the entity and the field); other fields that do not fit are
-- removed from the document and counted per field in drain_run_nulled.
CREATE FUNCTION aveloxis_ops.null_unfit_fields(run bigint, ent text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    bad record;
BEGIN
    -- The common case: every field fits, one pass and nothing else. Each value is taken
    -- out once (OFFSET 0 keeps the inlined json_fits from extracting it again per test).
    IF NOT EXISTS (SELECT FROM pg_temp.drain_rows r, aveloxis_ops.drain_fields(ent) f,
                               LATERAL (SELECT r.doc #> f.path AS v OFFSET 0) x
                   WHERE r.doc IS NOT NULL AND NOT r.pending AND r.parse_error IS NULL
                     AND NOT aveloxis_ops.json_fits(x.v, f.kind)) THEN
        RETURN;
    END IF;
    PERFORM aveloxis_ops.drop_batch_table('unfit_fields');
    CREATE TEMP TABLE unfit_fields ON COMMIT DROP AS
    SELECT r.staging_id, f.path, f.kind, f.is_key, left(x.v::text, 60) AS shown
    FROM pg_temp.drain_rows r, aveloxis_ops.drain_fields(ent) f, LATERAL (SELECT r.doc #> f.path AS v OFFSET 0) x
    WHERE r.doc IS NOT NULL AND NOT r.pending AND r.parse_error IS NULL
      AND NOT aveloxis_ops.json_fits(x.v, f.kind);
    UPDATE pg_temp.drain_rows r
    SET parse_error = format('field "%s" is %s, not a usable %s id; the row cannot be stored without it',
                             array_to_string(u.path, '.'), u.shown, u.kind),
        doc = NULL
    FROM pg_temp.unfit_fields u
    WHERE u.staging_id = r.staging_id AND u.is_key;
    FOR bad IN SELECT u.path, array_agg(u.staging_id) AS ids, count(*) AS n
               FROM pg_temp.unfit_fields u
               WHERE NOT u.is_key AND NOT EXISTS (SELECT FROM pg_temp.unfit_fields k
                                                  WHERE k.staging_id = u.staging_id AND k.is_key)
               GROUP BY u.path LOOP
        UPDATE pg_temp.drain_rows r SET doc = r.doc #- bad.path WHERE r.staging_id = ANY (bad.ids);
        INSERT INTO aveloxis_ops.drain_run_nulled AS t (run_id, entity, field, nulled)
        VALUES (run, ent, array_to_string(bad.path, '.'), bad.n)
        ON CONFLICT (run_id, entity, field) DO UPDATE SET nulled = t.nulled + EXCLUDED.nulled;
    END LOOP;
END
$$;

-- A user object from a payload, or NULL when there is none: JSON null, {} and objects
-- without a positive numeric id are "no user", never a made-up person.
CREATE FUNCTION aveloxis_ops.user_id_of(u jsonb)
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN jsonb_typeof(u) = 'object' AND jsonb_typeof(u -> 'id') = 'number'
                     AND (u ->> 'id') ~ '^[0-9]{1,18}$' AND (u ->> 'id')::bigint > 0
                THEN (u ->> 'id')::bigint END
$$;

-- Collects the user objects referenced by the batch (drain_user_refs, filled by the
-- entity mappers) into drain_users, one row per account; the newest staged wins.
CREATE FUNCTION aveloxis_ops.collect_users()
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

-- Resolves every row of drain_users to a cntrb_id (R1-R4), creating contributors and
-- identities, following renames. Returns (inserted, updated) contributor counts.
--
-- One transaction-scoped lock per platform serializes this short step across
-- concurrent drains: contributors are shared by all repositories, and without it two
-- drains could race on one account (deadlocks, or the login index tripping, R3).
CREATE FUNCTION aveloxis_ops.resolve_users(OUT inserted bigint, OUT updated bigint)
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

-- Counts of one entity in one batch.
CREATE TYPE aveloxis_ops.drain_counts AS (
    inserted  bigint,
    updated   bigint,
    unchanged bigint,
    skipped   bigint,
    pending   bigint
);

-- 'contributor' payloads: GitHub/GitLab user objects (e.g. /repos/{o}/{r}/contributors).
CREATE FUNCTION aveloxis_ops.drain_contributors(only_staging_id bigint)
RETURNS aveloxis_ops.drain_counts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    total bigint;
    no_user bigint;
    resolved record;
BEGIN
    DELETE FROM pg_temp.drain_user_refs;
    DELETE FROM pg_temp.drain_users;
    INSERT INTO pg_temp.drain_user_refs (platform_id, staging_id, u)
    SELECT r.platform_id, r.staging_id, r.doc FROM pg_temp.drain_rows r
    WHERE r.doc IS NOT NULL AND NOT r.pending AND (only_staging_id IS NULL OR r.staging_id = only_staging_id);
    GET DIAGNOSTICS total = ROW_COUNT;
    SELECT count(*) INTO no_user FROM pg_temp.drain_user_refs WHERE aveloxis_ops.user_id_of(u) IS NULL;
    PERFORM aveloxis_ops.collect_users();
    resolved := aveloxis_ops.resolve_users();
    RETURN ROW(resolved.inserted, resolved.updated,
               greatest(total - no_user - resolved.inserted - resolved.updated, 0), no_user, 0)::aveloxis_ops.drain_counts;
END
$$;

-- 'issue' payloads: GitHub issue objects as /repos/{o}/{r}/issues returns them.
-- Pull requests in that list (they carry "pull_request") are counted as skipped:
-- they are drained from their own 'pull_request' payloads.
CREATE FUNCTION aveloxis_ops.drain_issues(repo bigint, only_staging_id bigint)
RETURNS aveloxis_ops.drain_counts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    total bigint;
    result aveloxis_ops.drain_counts;
BEGIN
    DELETE FROM pg_temp.drain_issues;
    DELETE FROM pg_temp.drain_user_refs;
    DELETE FROM pg_temp.drain_users;

    -- Each payload is taken apart once (jsonb_to_record), not once per field.
    INSERT INTO pg_temp.drain_issues
        (staging_id, platform_id, platform_issue_id, issue_number, node_id, issue_title, issue_body, issue_state,
         issue_url, html_url, reporter, closed_by, assignees, labels, is_pull_request, created_at, updated_at,
         closed_at, comment_count)
    SELECT r.staging_id, r.platform_id, x.id, x.number, x.node_id, x.title, x.body, x.state, x.url, x.html_url,
           x."user", x.closed_by,
           CASE WHEN jsonb_typeof(x.assignees) = 'array' THEN x.assignees
                WHEN jsonb_typeof(x.assignee) = 'object' THEN jsonb_build_array(x.assignee)
                ELSE '[]'::jsonb END,
           CASE WHEN jsonb_typeof(x.labels) = 'array' THEN x.labels ELSE '[]'::jsonb END,
           -- Old API versions sent "pull_request" with null URLs on every issue.
           jsonb_typeof(x.pull_request) = 'object'
               AND coalesce(x.pull_request ->> 'url', x.pull_request ->> 'html_url') IS NOT NULL,
           aveloxis_ops.forge_timestamp(x.created_at), aveloxis_ops.forge_timestamp(x.updated_at),
           aveloxis_ops.forge_timestamp(x.closed_at), x.comments
    FROM pg_temp.drain_rows r,
         jsonb_to_record(r.doc) AS x(id bigint, number integer, node_id text, title text, body text, state text,
                                     url text, html_url text, "user" jsonb, closed_by jsonb, assignee jsonb,
                                     assignees jsonb, labels jsonb, pull_request jsonb, created_at text,
                                     updated_at text, closed_at text, comments integer)
    WHERE r.doc IS NOT NULL AND NOT r.pending AND (only_staging_id IS NULL OR r.staging_id = only_staging_id);
    GET DIAGNOSTICS total = ROW_COUNT;

    IF EXISTS (SELECT FROM pg_temp.drain_issues WHERE platform_issue_id IS NULL OR issue_number IS NULL) THEN
        RAISE EXCEPTION 'issue payload without a numeric "id" and "number"'
            USING ERRCODE = 'not_null_violation',
                  HINT = 'Stage issue objects as the forge returns them (docs/staging-contract.md).';
    END IF;
    SELECT count(*) INTO result.skipped FROM pg_temp.drain_issues WHERE is_pull_request;
    DELETE FROM pg_temp.drain_issues WHERE is_pull_request;
    -- One issue staged twice in a batch: the newest version wins, the others are unchanged.
    DELETE FROM pg_temp.drain_issues d USING pg_temp.drain_issues e
    WHERE e.platform_issue_id = d.platform_issue_id
      AND (coalesce(e.updated_at, '-infinity'), e.staging_id) > (coalesce(d.updated_at, '-infinity'), d.staging_id);

    ANALYZE pg_temp.drain_issues;
    INSERT INTO pg_temp.drain_user_refs (platform_id, staging_id, u)
    SELECT d.platform_id, d.staging_id, u
    FROM pg_temp.drain_issues d,
         LATERAL (SELECT d.reporter UNION ALL SELECT d.closed_by
                  UNION ALL SELECT a FROM jsonb_array_elements(d.assignees) a) refs(u);
    PERFORM aveloxis_ops.collect_users();
    PERFORM aveloxis_ops.resolve_users();

    WITH up AS (
        INSERT INTO aveloxis_data.issues AS i
            (repo_id, platform_issue_id, issue_number, node_id, issue_title, issue_body, issue_state, issue_url,
             html_url, reporter_id, closed_by_id, created_at, updated_at, closed_at, comment_count,
             tool_source, tool_version, data_source)
        SELECT repo, d.platform_issue_id, d.issue_number, d.node_id, d.issue_title, d.issue_body, d.issue_state,
               d.issue_url, d.html_url, ru.cntrb_id, rc.cntrb_id, d.created_at, d.updated_at, d.closed_at,
               d.comment_count, 'pg_aveloxis', aveloxis.version(), 'aveloxis.drain'
        FROM pg_temp.drain_issues d
        LEFT JOIN pg_temp.drain_users ru
               ON ru.platform_id = d.platform_id AND ru.user_id = aveloxis_ops.user_id_of(d.reporter)
        LEFT JOIN pg_temp.drain_users rc
               ON rc.platform_id = d.platform_id AND rc.user_id = aveloxis_ops.user_id_of(d.closed_by)
        ORDER BY d.platform_issue_id
        ON CONFLICT (repo_id, platform_issue_id) DO UPDATE
            SET issue_number = EXCLUDED.issue_number, node_id = EXCLUDED.node_id,
                issue_title = EXCLUDED.issue_title, issue_body = EXCLUDED.issue_body,
                issue_state = EXCLUDED.issue_state, issue_url = EXCLUDED.issue_url, html_url = EXCLUDED.html_url,
                reporter_id = coalesce(EXCLUDED.reporter_id, i.reporter_id),
                closed_by_id = coalesce(EXCLUDED.closed_by_id, i.closed_by_id),
                created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at, closed_at = EXCLUDED.closed_at,
                comment_count = EXCLUDED.comment_count, tool_version = EXCLUDED.tool_version,
                data_collection_date = now()
            -- An older payload never overwrites a newer one; an identical one changes nothing.
            WHERE (i.updated_at IS NULL OR EXCLUDED.updated_at IS NULL OR EXCLUDED.updated_at >= i.updated_at)
              AND ((i.issue_number, i.node_id, i.issue_title, i.issue_body, i.issue_state, i.issue_url, i.html_url,
                    i.created_at, i.updated_at, i.closed_at, i.comment_count)
                   IS DISTINCT FROM
                   (EXCLUDED.issue_number, EXCLUDED.node_id, EXCLUDED.issue_title, EXCLUDED.issue_body,
                    EXCLUDED.issue_state, EXCLUDED.issue_url, EXCLUDED.html_url, EXCLUDED.created_at,
                    EXCLUDED.updated_at, EXCLUDED.closed_at, EXCLUDED.comment_count)
                OR (EXCLUDED.reporter_id IS NOT NULL AND EXCLUDED.reporter_id IS DISTINCT FROM i.reporter_id)
                OR (EXCLUDED.closed_by_id IS NOT NULL AND EXCLUDED.closed_by_id IS DISTINCT FROM i.closed_by_id))
        RETURNING i.issue_id, i.platform_issue_id, (i.xmax = 0) AS was_inserted
    )
    UPDATE pg_temp.drain_issues d SET issue_id = up.issue_id, changed = true, was_inserted = up.was_inserted
    FROM up WHERE up.platform_issue_id = d.platform_issue_id;

    -- Labels and assignees of changed issues become exactly what the payload lists.
    -- (Issues inserted just now have none to remove.)
    DELETE FROM aveloxis_data.issue_labels l USING pg_temp.drain_issues d
    WHERE d.changed AND NOT d.was_inserted AND l.issue_id = d.issue_id
      AND NOT EXISTS (SELECT FROM jsonb_array_elements(d.labels) e
                      WHERE jsonb_typeof(e) = 'object' AND e ->> 'name' = l.label_text);
    INSERT INTO aveloxis_data.issue_labels AS l
        (issue_id, repo_id, label_text, label_description, label_color, platform_label_id,
         tool_source, tool_version, data_source)
    SELECT DISTINCT ON (d.issue_id, e ->> 'name')
           d.issue_id, repo, e ->> 'name', e ->> 'description', e ->> 'color',
           CASE WHEN jsonb_typeof(e -> 'id') = 'number' THEN (e ->> 'id')::bigint END,
           'pg_aveloxis', aveloxis.version(), 'aveloxis.drain'
    FROM pg_temp.drain_issues d, jsonb_array_elements(d.labels) e
    WHERE d.changed AND jsonb_typeof(e) = 'object' AND nullif(e ->> 'name', '') IS NOT NULL
    ORDER BY d.issue_id, e ->> 'name'
    ON CONFLICT (issue_id, label_text) DO UPDATE
        SET label_description = EXCLUDED.label_description, label_color = EXCLUDED.label_color,
            platform_label_id = EXCLUDED.platform_label_id
        WHERE (l.label_description, l.label_color, l.platform_label_id)
              IS DISTINCT FROM (EXCLUDED.label_description, EXCLUDED.label_color, EXCLUDED.platform_label_id);

    DELETE FROM aveloxis_data.issue_assignees a USING pg_temp.drain_issues d
    WHERE d.changed AND NOT d.was_inserted AND a.issue_id = d.issue_id
      AND NOT EXISTS (SELECT FROM jsonb_array_elements(d.assignees) e
                      WHERE aveloxis_ops.user_id_of(e) = a.platform_assignee_id);
    -- Assignee ids first, then an equality join (hashable) to the resolved users.
    WITH wanted AS MATERIALIZED (
        SELECT DISTINCT d.issue_id, d.platform_id, aveloxis_ops.user_id_of(e) AS user_id
        FROM pg_temp.drain_issues d, jsonb_array_elements(d.assignees) e
        WHERE d.changed AND aveloxis_ops.user_id_of(e) IS NOT NULL
    )
    INSERT INTO aveloxis_data.issue_assignees AS a
        (issue_id, repo_id, platform_assignee_id, cntrb_id, tool_source, tool_version, data_source)
    SELECT w.issue_id, repo, w.user_id, u.cntrb_id, 'pg_aveloxis', aveloxis.version(), 'aveloxis.drain'
    FROM wanted w JOIN pg_temp.drain_users u ON u.platform_id = w.platform_id AND u.user_id = w.user_id
    ORDER BY w.issue_id, w.user_id
    ON CONFLICT (issue_id, platform_assignee_id) DO NOTHING;

    SELECT count(*) FILTER (WHERE was_inserted), count(*) FILTER (WHERE changed AND NOT was_inserted)
    INTO result.inserted, result.updated
    FROM pg_temp.drain_issues;
    result.unchanged := total - result.skipped - result.inserted - result.updated;
    result.pending := 0;
    RETURN result;
END
$$;

-- 'pull_request' envelopes (docs/staging-contract.md): {"pull_request": <the PR object>,
-- and optionally "reviews", "commits", "files" (the forge's lists) and
-- "requested_reviewers" (the forge's {"users", "teams"})}. A list that is present is
-- the complete current set and is synced; an absent one is left alone. Children are
-- synced only from an envelope at least as new as the stored pull request.
CREATE FUNCTION aveloxis_ops.drain_pull_requests(repo bigint, only_staging_id bigint)
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

-- 'issue_comment' payloads: GitHub issue comments (/repos/{o}/{r}/issues/comments or
-- /issues/{n}/comments). The parent is context.parent_number, else the tail of
-- issue_url. A comment whose issue has not been drained yet stays pending; comments
-- on pull requests stay pending until pull requests are drained.
CREATE FUNCTION aveloxis_ops.drain_issue_comments(repo bigint, only_staging_id bigint)
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

-- 'issue_event' payloads: GitHub issue events (/repos/{o}/{r}/issues/events, whose items
-- carry the "issue"; or /issues/{n}/events with context {"parent_number": n}). An event
-- of a pull request goes to pull_request_events; one whose parent has not arrived waits.
CREATE FUNCTION aveloxis_ops.drain_issue_events(repo bigint, only_staging_id bigint)
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

-- 'release' payloads: GitHub release objects (/repos/{o}/{r}/releases).
CREATE FUNCTION aveloxis_ops.drain_releases(repo bigint, only_staging_id bigint)
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
    PERFORM aveloxis_ops.drop_batch_table('drain_releases');
    CREATE TEMP TABLE drain_releases ON COMMIT DROP AS
    SELECT DISTINCT ON (x.id) r.staging_id, r.platform_id, x.id::text AS release_id, x.name, x.body, x.author,
           x.tag_name, x.html_url, x.draft, x.prerelease,
           aveloxis_ops.forge_timestamp(x.created_at) AS created_at,
           aveloxis_ops.forge_timestamp(x.published_at) AS published_at,
           aveloxis_ops.forge_timestamp(x.updated_at) AS updated_at
    FROM pg_temp.drain_rows r,
         jsonb_to_record(r.doc) AS x(id bigint, name text, body text, author jsonb, tag_name text, html_url text,
                                     draft boolean, prerelease boolean, created_at text, published_at text,
                                     updated_at text)
    WHERE r.doc IS NOT NULL AND NOT r.pending AND (only_staging_id IS NULL OR r.staging_id = only_staging_id)
    ORDER BY x.id, r.staging_id DESC;
    SELECT count(*) INTO total FROM pg_temp.drain_rows r
    WHERE r.doc IS NOT NULL AND NOT r.pending AND (only_staging_id IS NULL OR r.staging_id = only_staging_id);
    IF EXISTS (SELECT FROM pg_temp.drain_releases WHERE release_id IS NULL) THEN
        RAISE EXCEPTION 'release payload without a numeric "id"'
            USING ERRCODE = 'not_null_violation',
                  HINT = 'Stage release objects as the forge returns them (docs/staging-contract.md).';
    END IF;
    INSERT INTO pg_temp.drain_user_refs (platform_id, staging_id, u)
    SELECT d.platform_id, d.staging_id, d.author FROM pg_temp.drain_releases d;
    PERFORM aveloxis_ops.collect_users();
    PERFORM aveloxis_ops.resolve_users();
    WITH up AS (
        INSERT INTO aveloxis_data.releases AS t
            (repo_id, release_id, release_name, release_description, release_author, release_author_id,
             release_tag_name, release_url, release_created_at, release_published_at, release_updated_at,
             release_is_draft, release_is_prerelease, tool_source, tool_version, data_source)
        SELECT repo, d.release_id, d.name, d.body, d.author ->> 'login', u.cntrb_id, d.tag_name, d.html_url,
               d.created_at, d.published_at, d.updated_at, d.draft, d.prerelease,
               'pg_aveloxis', aveloxis.version(), 'aveloxis.drain'
        FROM pg_temp.drain_releases d
        LEFT JOIN pg_temp.drain_users u ON u.platform_id = d.platform_id AND u.user_id = aveloxis_ops.user_id_of(d.author)
        ORDER BY d.release_id
        ON CONFLICT (repo_id, release_id) DO UPDATE
            SET release_name = EXCLUDED.release_name, release_description = EXCLUDED.release_description,
                release_author = EXCLUDED.release_author,
                release_author_id = coalesce(EXCLUDED.release_author_id, t.release_author_id),
                release_tag_name = EXCLUDED.release_tag_name, release_url = EXCLUDED.release_url,
                release_created_at = EXCLUDED.release_created_at, release_published_at = EXCLUDED.release_published_at,
                release_updated_at = EXCLUDED.release_updated_at, release_is_draft = EXCLUDED.release_is_draft,
                release_is_prerelease = EXCLUDED.release_is_prerelease, data_collection_date = now()
            WHERE (t.release_name, t.release_description, t.release_tag_name, t.release_url, t.release_created_at,
                   t.release_published_at, t.release_updated_at, t.release_is_draft, t.release_is_prerelease)
                  IS DISTINCT FROM
                  (EXCLUDED.release_name, EXCLUDED.release_description, EXCLUDED.release_tag_name, EXCLUDED.release_url,
                   EXCLUDED.release_created_at, EXCLUDED.release_published_at, EXCLUDED.release_updated_at,
                   EXCLUDED.release_is_draft, EXCLUDED.release_is_prerelease)
        RETURNING (t.xmax = 0) AS was_inserted
    )
    SELECT count(*) FILTER (WHERE was_inserted), count(*) FILTER (WHERE NOT was_inserted)
    INTO result.inserted, result.updated FROM up;
    result.skipped := 0;
    result.pending := 0;
    result.unchanged := total - result.inserted - result.updated;
    RETURN result;
END
$$;

-- 'review_comment' payloads: comments on a pull request's diff (/repos/{o}/{r}/pulls/comments
-- or /pulls/{n}/comments). The pull request is context.parent_number, else the tail of
-- pull_request_url (or of _links.pull_request.href in older API versions); until it has
-- been drained the comment waits.
CREATE FUNCTION aveloxis_ops.drain_review_comments(repo bigint, only_staging_id bigint)
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
                    substring(x.pull_request_url FROM '/pulls/([0-9]{1,9})$')::integer,
                    -- Older API versions link the pull request only under _links.
                    substring(r.doc #>> '{_links,pull_request,href}' FROM '/pulls/([0-9]{1,9})$')::integer)
               AS parent_number,
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

-- 'repo_info' payloads: the repository object (/repos/{o}/{r}). The current row is
-- replaced when it changed, its previous version kept in repo_info_history; the forge's
-- id becomes repos.repo_src_id (a forge repository registered twice is an error).
CREATE FUNCTION aveloxis_ops.drain_repo_info(repo bigint, only_staging_id bigint)
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

-- Dispatch by entity.
CREATE FUNCTION aveloxis_ops.drain_entity(entity text, repo bigint, only_staging_id bigint)
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

-- Moves staged rows into staging_rejects with their error; a row rejected before
-- (retry_rejects) counts one more attempt.
CREATE FUNCTION aveloxis_ops.reject(staging_ids bigint[], error text, sqlstate text)
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH moved AS (
        DELETE FROM aveloxis_ops.staging s WHERE s.staging_id = ANY (staging_ids) RETURNING s.*
    ), ins AS (
        INSERT INTO aveloxis_ops.staging_rejects AS r
            (staging_id, repo_id, platform_id, entity, envelope_version, payload, context, staged_at, error, sqlstate)
        SELECT m.staging_id, m.repo_id, m.platform_id, m.entity, m.envelope_version, m.payload, m.context,
               m.staged_at, error, sqlstate
        FROM moved m
        ON CONFLICT (staging_id) DO UPDATE
            SET error = EXCLUDED.error, sqlstate = EXCLUDED.sqlstate, attempts = r.attempts + 1,
                last_rejected_at = now(), payload = EXCLUDED.payload, context = EXCLUDED.context
        RETURNING 1
    )
    SELECT count(*) FROM ins
$$;

CREATE FUNCTION aveloxis_ops.add_counts(run bigint, entity text, c aveloxis_ops.drain_counts, rejected bigint)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO aveloxis_ops.drain_run_counts AS t
        (run_id, entity, inserted, updated, unchanged, skipped, pending, rejected)
    VALUES (run, entity, coalesce(c.inserted, 0), coalesce(c.updated, 0), coalesce(c.unchanged, 0),
            coalesce(c.skipped, 0), coalesce(c.pending, 0), rejected)
    ON CONFLICT (run_id, entity) DO UPDATE
        SET inserted = t.inserted + EXCLUDED.inserted, updated = t.updated + EXCLUDED.updated,
            unchanged = t.unchanged + EXCLUDED.unchanged, skipped = t.skipped + EXCLUDED.skipped,
            pending = t.pending + EXCLUDED.pending, rejected = t.rejected + EXCLUDED.rejected
$$;

-- Starts a drain run of a repository; returns its run_id.
CREATE FUNCTION aveloxis.drain_begin(repo_id bigint)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    run bigint;
BEGIN
    IF NOT EXISTS (SELECT FROM aveloxis_data.repos r WHERE r.repo_id = drain_begin.repo_id) THEN
        RAISE EXCEPTION 'repo % does not exist', drain_begin.repo_id
            USING ERRCODE = 'no_data_found', HINT = 'aveloxis.resolve_repo(<url>) finds a repository''s id.';
    END IF;
    INSERT INTO aveloxis_ops.drain_runs (repo_id) VALUES (drain_begin.repo_id) RETURNING run_id INTO run;
    RETURN run;
END
$$;

-- Drains one batch of one repository, in entity order, and says what is left:
-- 'more' (call again), 'done', or 'busy' (another session holds the repository's drain).
-- One transaction: the caller commits between steps.
CREATE FUNCTION aveloxis.drain_step(repo_id bigint, run_id bigint, batch_size integer DEFAULT 1000)
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

-- Parses one payload the slow, exact way: the jsonb, or why not (with line and
-- column when the JSON itself is broken). What PostgreSQL parses is taken, whatever
-- the second parser thinks of it (serde_json stops at 128 levels of nesting): the same
-- row never drains in one batch and is rejected in another.
CREATE FUNCTION aveloxis_ops.parse_payload(payload text, OUT doc jsonb, OUT err text)
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    clean text := aveloxis_ops.sanitize_json(payload);
BEGIN
    doc := clean::jsonb;
EXCEPTION WHEN OTHERS THEN
    doc := NULL;
    err := coalesce(aveloxis_ops.json_syntax_error(clean), SQLERRM);
END
$$;

-- Ends a drain run, records its outcome and reports its counts as a NOTICE.
CREATE FUNCTION aveloxis.drain_finish(run_id bigint, last_step text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    run aveloxis_ops.drain_runs;
    summary text;
    nulled text;
BEGIN
    UPDATE aveloxis_ops.drain_runs d
    SET finished_at = clock_timestamp(), outcome = CASE last_step WHEN 'busy' THEN 'lock_busy' ELSE 'drained' END
    WHERE d.run_id = drain_finish.run_id RETURNING * INTO run;
    IF last_step = 'busy' THEN
        RAISE NOTICE 'repo % is being drained by another session; this drain (run %) returns without draining more',
            run.repo_id, run.run_id;
        RETURN;
    END IF;
    SELECT string_agg(format('%s: %s inserted, %s updated, %s unchanged, %s skipped, %s pending, %s rejected',
                             c.entity, c.inserted, c.updated, c.unchanged, c.skipped, c.pending, c.rejected), '; '
                      ORDER BY array_position(aveloxis_ops.drain_entities(), c.entity))
    INTO summary
    FROM aveloxis_ops.drain_run_counts c WHERE c.run_id = run.run_id;
    SELECT string_agg(format('%s.%s %s', n.entity, n.field, n.nulled), ', ' ORDER BY n.entity, n.field)
    INTO nulled
    FROM aveloxis_ops.drain_run_nulled n WHERE n.run_id = run.run_id;
    IF nulled IS NOT NULL THEN
        summary := summary || '; fields stored as NULL because their value did not fit: ' || nulled;
    END IF;
    RAISE NOTICE 'drained repo % (run %): %', run.repo_id, run.run_id, coalesce(summary, 'nothing pending');
END
$$;

-- Drains everything staged for one repository, committing after every batch. Call it
-- outside an explicit transaction block (autocommit), as CALL requires for COMMIT.
CREATE PROCEDURE aveloxis.drain(repo_id bigint, batch_size integer DEFAULT 1000)
LANGUAGE plpgsql
AS $$
DECLARE
    run  bigint;
    step text;
BEGIN
    run := aveloxis.drain_begin(repo_id);
    COMMIT;
    LOOP
        step := aveloxis.drain_step(repo_id, run, batch_size);
        COMMIT;
        EXIT WHEN step <> 'more';
    END LOOP;
    PERFORM aveloxis.drain_finish(run, step);
    COMMIT;
END
$$;

-- Repositories with staged rows not drained yet.
CREATE FUNCTION aveloxis.pending_repos()
RETURNS SETOF bigint
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    SELECT DISTINCT s.repo_id FROM aveloxis_ops.staging s WHERE s.drained_at IS NULL ORDER BY 1
$$;

-- Drains every repository that has pending staged rows, one after another.
CREATE PROCEDURE aveloxis.drain_all(batch_size integer DEFAULT 1000)
LANGUAGE plpgsql
AS $$
DECLARE
    pending bigint;
BEGIN
    FOR pending IN SELECT r FROM aveloxis.pending_repos() r LOOP
        CALL aveloxis.drain(pending, batch_size);
    END LOOP;
END
$$;

-- Puts a repository's rejected rows back into staging (after a fix to the extension or
-- the data) and drains them again; rows that fail again return with attempts + 1.
CREATE FUNCTION aveloxis.requeue_rejects(repo_id bigint)
RETURNS bigint
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    WITH back AS (
        INSERT INTO aveloxis_ops.staging
            (staging_id, repo_id, platform_id, entity, envelope_version, payload, context, staged_at)
        SELECT r.staging_id, r.repo_id, r.platform_id, r.entity, r.envelope_version, r.payload, r.context, r.staged_at
        FROM aveloxis_ops.staging_rejects r WHERE r.repo_id = requeue_rejects.repo_id
        ON CONFLICT (staging_id) DO NOTHING
        RETURNING 1
    )
    SELECT count(*) FROM back
$$;

CREATE PROCEDURE aveloxis.retry_rejects(repo_id bigint, batch_size integer DEFAULT 1000)
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM aveloxis.requeue_rejects(repo_id);
    COMMIT;
    CALL aveloxis.drain(repo_id, batch_size);
END
$$;
