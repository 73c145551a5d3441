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
    FROM unnest(names || ARRAY['drain_scratch_layout_4', 'activity_net']) n;
    SELECT count(*) INTO ours FROM pg_catalog.pg_class c
    WHERE c.relnamespace = pg_catalog.pg_my_temp_schema()
      AND c.relname = ANY (names || 'drain_scratch_layout_4'::text);
    IF ours = cardinality(names) + 1 THEN
        RETURN;
    END IF;
    -- (An older version's marker goes too.)
    FOREACH scratch IN ARRAY names || ARRAY['drain_scratch_layout_3', 'drain_scratch_layout_4'] LOOP
        PERFORM aveloxis_ops.drop_batch_table(scratch);
    END LOOP;
    CREATE TEMP TABLE drain_scratch_layout_4 ();
    CREATE TEMP TABLE drain_rows (
        staging_id  bigint PRIMARY KEY,
        -- Whose account ids the payload carries (the repository host's identity platform).
        platform_id smallint NOT NULL,
        -- Whose API wrote it, so which mapper reads it: 1 GitHub, 2 GitLab.
        forge       smallint NOT NULL,
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
        -- 'issue' or 'pull_request' when the forge says (GitLab numbers them apart);
        -- NULL when issues and pull requests share one number space (GitHub).
        parent_kind     text,
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
        -- The identity platform's kind: 1 GitHub (gh_* columns), 2 GitLab (gl_* columns).
        kind        smallint NOT NULL,
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
        -- GitLab's account state (active, blocked, deactivated, banned...).
        state       text,
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
CREATE FUNCTION aveloxis_ops.drain_fields(entity text, forge smallint)
RETURNS TABLE (path text[], kind text, is_key boolean)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT f.path, f.kind, f.is_key
    FROM (VALUES
        ('issue', '{id}'::text[], 'bigint', true, 1::smallint), ('issue', '{number}', 'integer', true, 1),
        ('issue', '{comments}', 'integer', false, 1), ('issue', '{created_at}', 'timestamp', false, 1),
        ('issue', '{updated_at}', 'timestamp', false, 1), ('issue', '{closed_at}', 'timestamp', false, 1),
        ('pull_request', '{pull_request,id}', 'bigint', true, 1), ('pull_request', '{pull_request,number}', 'integer', true, 1),
        ('pull_request', '{pull_request,locked}', 'boolean', false, 1),
        ('pull_request', '{pull_request,draft}', 'boolean', false, 1),
        ('pull_request', '{pull_request,merged}', 'boolean', false, 1),
        ('pull_request', '{pull_request,commits}', 'integer', false, 1),
        ('pull_request', '{pull_request,additions}', 'integer', false, 1),
        ('pull_request', '{pull_request,deletions}', 'integer', false, 1),
        ('pull_request', '{pull_request,changed_files}', 'integer', false, 1),
        ('pull_request', '{pull_request,created_at}', 'timestamp', false, 1),
        ('pull_request', '{pull_request,updated_at}', 'timestamp', false, 1),
        ('pull_request', '{pull_request,closed_at}', 'timestamp', false, 1),
        ('pull_request', '{pull_request,merged_at}', 'timestamp', false, 1),
        ('issue_comment', '{id}', 'bigint', true, 1), ('issue_comment', '{created_at}', 'timestamp', false, 1),
        ('issue_comment', '{updated_at}', 'timestamp', false, 1),
        ('issue_event', '{id}', 'bigint', true, 1), ('issue_event', '{created_at}', 'timestamp', false, 1),
        ('issue_event', '{issue,number}', 'integer', false, 1),
        ('release', '{id}', 'bigint', true, 1), ('release', '{draft}', 'boolean', false, 1),
        ('release', '{prerelease}', 'boolean', false, 1), ('release', '{created_at}', 'timestamp', false, 1),
        ('release', '{published_at}', 'timestamp', false, 1), ('release', '{updated_at}', 'timestamp', false, 1),
        ('review_comment', '{id}', 'bigint', true, 1),
        ('review_comment', '{pull_request_review_id}', 'bigint', false, 1),
        ('review_comment', '{in_reply_to_id}', 'bigint', false, 1),
        ('review_comment', '{position}', 'integer', false, 1),
        ('review_comment', '{original_position}', 'integer', false, 1),
        ('review_comment', '{line}', 'integer', false, 1), ('review_comment', '{original_line}', 'integer', false, 1),
        ('review_comment', '{created_at}', 'timestamp', false, 1),
        ('review_comment', '{updated_at}', 'timestamp', false, 1),
        ('repo_info', '{id}', 'bigint', true, 1), ('repo_info', '{fork}', 'boolean', false, 1),
        ('repo_info', '{archived}', 'boolean', false, 1), ('repo_info', '{has_issues}', 'boolean', false, 1),
        ('repo_info', '{has_wiki}', 'boolean', false, 1), ('repo_info', '{has_pages}', 'boolean', false, 1),
        ('repo_info', '{forks_count}', 'integer', false, 1), ('repo_info', '{subscribers_count}', 'integer', false, 1),
        ('repo_info', '{watchers_count}', 'integer', false, 1), ('repo_info', '{stargazers_count}', 'integer', false, 1),
        ('repo_info', '{open_issues_count}', 'integer', false, 1), ('repo_info', '{size}', 'integer', false, 1),
        ('repo_info', '{created_at}', 'timestamp', false, 1), ('repo_info', '{updated_at}', 'timestamp', false, 1),
        ('repo_info', '{pushed_at}', 'timestamp', false, 1),
        -- GitLab (REST v4) payloads.
        ('issue', '{id}', 'bigint', true, 2), ('issue', '{iid}', 'integer', true, 2),
        ('issue', '{user_notes_count}', 'integer', false, 2), ('issue', '{created_at}', 'timestamp', false, 2),
        ('issue', '{updated_at}', 'timestamp', false, 2), ('issue', '{closed_at}', 'timestamp', false, 2),
        ('pull_request', '{merge_request,id}', 'bigint', true, 2),
        ('pull_request', '{merge_request,iid}', 'integer', true, 2),
        ('pull_request', '{merge_request,draft}', 'boolean', false, 2),
        ('pull_request', '{merge_request,work_in_progress}', 'boolean', false, 2),
        ('pull_request', '{merge_request,discussion_locked}', 'boolean', false, 2),
        ('pull_request', '{merge_request,source_project_id}', 'bigint', false, 2),
        ('pull_request', '{merge_request,target_project_id}', 'bigint', false, 2),
        ('pull_request', '{merge_request,created_at}', 'timestamp', false, 2),
        ('pull_request', '{merge_request,updated_at}', 'timestamp', false, 2),
        ('pull_request', '{merge_request,closed_at}', 'timestamp', false, 2),
        ('pull_request', '{merge_request,merged_at}', 'timestamp', false, 2),
        ('issue_comment', '{id}', 'bigint', true, 2), ('issue_comment', '{noteable_iid}', 'integer', false, 2),
        ('issue_comment', '{created_at}', 'timestamp', false, 2), ('issue_comment', '{updated_at}', 'timestamp', false, 2),
        ('review_comment', '{id}', 'bigint', true, 2), ('review_comment', '{noteable_iid}', 'integer', false, 2),
        ('review_comment', '{position,new_line}', 'integer', false, 2),
        ('review_comment', '{position,old_line}', 'integer', false, 2),
        ('review_comment', '{created_at}', 'timestamp', false, 2),
        ('review_comment', '{updated_at}', 'timestamp', false, 2),
        ('issue_event', '{id}', 'bigint', true, 2), ('issue_event', '{created_at}', 'timestamp', false, 2),
        ('issue_event', '{noteable_iid}', 'integer', false, 2), ('issue_event', '{system}', 'boolean', false, 2),
        ('release', '{created_at}', 'timestamp', false, 2), ('release', '{released_at}', 'timestamp', false, 2),
        ('repo_info', '{id}', 'bigint', true, 2), ('repo_info', '{archived}', 'boolean', false, 2),
        ('repo_info', '{issues_enabled}', 'boolean', false, 2), ('repo_info', '{wiki_enabled}', 'boolean', false, 2),
        ('repo_info', '{forks_count}', 'integer', false, 2), ('repo_info', '{star_count}', 'integer', false, 2),
        ('repo_info', '{open_issues_count}', 'integer', false, 2),
        ('repo_info', '{created_at}', 'timestamp', false, 2), ('repo_info', '{last_activity_at}', 'timestamp', false, 2)
    ) AS f(entity, path, kind, is_key, forge)
    WHERE f.entity = drain_fields.entity AND f.forge = drain_fields.forge
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
CREATE FUNCTION aveloxis_ops.null_unfit_fields(repo bigint, run bigint, ent text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    bad record;
BEGIN
    -- The common case: every field fits, one pass and nothing else. Each value is taken
    -- out once (OFFSET 0 keeps the inlined json_fits from extracting it again per test).
    IF NOT EXISTS (SELECT FROM pg_temp.drain_rows r, aveloxis_ops.drain_fields(ent, r.forge) f,
                               LATERAL (SELECT r.doc #> f.path AS v OFFSET 0) x
                   WHERE r.doc IS NOT NULL AND NOT r.pending AND r.parse_error IS NULL
                     AND NOT aveloxis_ops.json_fits(x.v, f.kind)) THEN
        RETURN;
    END IF;
    PERFORM aveloxis_ops.drop_batch_table('unfit_fields');
    CREATE TEMP TABLE unfit_fields ON COMMIT DROP AS
    SELECT r.staging_id, f.path, f.kind, f.is_key, left(x.v::text, 60) AS shown
    FROM pg_temp.drain_rows r, aveloxis_ops.drain_fields(ent, r.forge) f, LATERAL (SELECT r.doc #> f.path AS v OFFSET 0) x
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
        INSERT INTO aveloxis_ops.drain_run_nulled AS t (repo_id, run_id, entity, field, nulled)
        VALUES (repo, run, ent, array_to_string(bad.path, '.'), bad.n)
        ON CONFLICT (repo_id, run_id, entity, field) DO UPDATE SET nulled = t.nulled + EXCLUDED.nulled;
    END LOOP;
END
$$;

-- Collects the user objects referenced by the batch (drain_user_refs, filled by the
-- entity mappers) into drain_users, one row per account; the newest staged wins.
CREATE FUNCTION aveloxis_ops.collect_users()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- GitHub users and GitLab users (UserBasic: username, web_url, state; the full
    -- /users/:id adds organization, bot, public_email) are read into the same row.
    INSERT INTO pg_temp.drain_users
        (platform_id, kind, user_id, login, user_type, node_id, avatar_url, api_url, html_url, gravatar_id,
         site_admin, name, email, company, location, created_at, state, staging_id)
    SELECT DISTINCT ON (r.platform_id, r.user_id)
           r.platform_id, p.platform_kind, r.user_id, nullif(coalesce(r.u ->> 'login', r.u ->> 'username'), ''),
           coalesce(r.u ->> 'type', CASE WHEN r.u ->> 'bot' = 'true' THEN 'Bot' END),
           r.u ->> 'node_id', r.u ->> 'avatar_url', r.u ->> 'url', coalesce(r.u ->> 'html_url', r.u ->> 'web_url'),
           nullif(r.u ->> 'gravatar_id', ''), r.u ->> 'site_admin', nullif(r.u ->> 'name', ''),
           nullif(coalesce(r.u ->> 'email', r.u ->> 'public_email'), ''),
           nullif(btrim(coalesce(r.u ->> 'company', r.u ->> 'organization')), ''), nullif(btrim(r.u ->> 'location'), ''),
           aveloxis_ops.forge_timestamp(r.u ->> 'created_at'), r.u ->> 'state', r.staging_id
    -- OFFSET 0 keeps the id computed once per reference, not once per use.
    FROM (SELECT f.platform_id, f.staging_id, f.u, aveloxis_ops.user_id_of(f.u) AS user_id
          FROM pg_temp.drain_user_refs f OFFSET 0) r
    JOIN aveloxis_data.platforms p ON p.platform_id = r.platform_id
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
CREATE FUNCTION aveloxis_ops.reject(repo bigint, staging_ids bigint[], error text, sqlstate text)
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH moved AS (
        DELETE FROM aveloxis_ops.staging s WHERE s.repo_id = repo AND s.staging_id = ANY (staging_ids) RETURNING s.*
    ), ins AS (
        INSERT INTO aveloxis_ops.staging_rejects AS r
            (staging_id, repo_id, platform_id, entity, envelope_version, payload, context, staged_at, error, sqlstate)
        SELECT m.staging_id, m.repo_id, m.platform_id, m.entity, m.envelope_version, m.payload, m.context,
               m.staged_at, error, sqlstate
        FROM moved m
        ON CONFLICT (repo_id, staging_id) DO UPDATE
            SET error = EXCLUDED.error, sqlstate = EXCLUDED.sqlstate, attempts = r.attempts + 1,
                last_rejected_at = EXCLUDED.last_rejected_at, payload = EXCLUDED.payload, context = EXCLUDED.context
        RETURNING 1
    )
    SELECT count(*) FROM ins
$$;

CREATE FUNCTION aveloxis_ops.add_counts(repo bigint, run bigint, entity text, c aveloxis_ops.drain_counts,
                                        rejected bigint)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO aveloxis_ops.drain_run_counts AS t
        (repo_id, run_id, entity, inserted, updated, unchanged, skipped, pending, rejected)
    VALUES (repo, run, entity, coalesce(c.inserted, 0), coalesce(c.updated, 0), coalesce(c.unchanged, 0),
            coalesce(c.skipped, 0), coalesce(c.pending, 0), rejected)
    ON CONFLICT (repo_id, run_id, entity) DO UPDATE
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
    identity   smallint;
BEGIN
    IF batch_size IS NULL OR batch_size < 1 THEN
        RAISE EXCEPTION 'batch_size must be at least 1' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- One drain per repository at a time; transaction-scoped, so it can never leak.
    IF NOT pg_try_advisory_xact_lock(hashtextextended('aveloxis.drain', target)) THEN
        RETURN 'busy';
    END IF;
    PERFORM aveloxis_ops.drain_scratch();
    identity := aveloxis_ops.identity_platform_of(target);

    FOREACH ent IN ARRAY aveloxis_ops.drain_entities() LOOP
        -- Rows left pending earlier in this run are not read again until the next run.
        SELECT c.last_staging_id INTO after_id FROM aveloxis_ops.drain_run_counts c
        WHERE c.repo_id = target AND c.run_id = run AND c.entity = ent;
        DELETE FROM pg_temp.drain_rows;
        -- Each payload is de-toasted, sanitized and parsed exactly once (sanitized_jsonb:
        -- one copy of the text, not three): this is the floor every drain pays. Only a
        -- batch holding an unparsable payload takes the slower path that finds it and
        -- says why.
        BEGIN
            INSERT INTO pg_temp.drain_rows (staging_id, platform_id, forge, context, doc)
            SELECT st.staging_id, identity, st.platform_id, st.context, aveloxis_ops.sanitized_jsonb(st.payload)
            FROM aveloxis_ops.staging st
            WHERE st.repo_id = target AND st.entity = ent AND st.drained_at IS NULL
              AND st.staging_id > coalesce(after_id, 0)
            ORDER BY st.staging_id LIMIT batch_size;
        EXCEPTION WHEN OTHERS THEN
            INSERT INTO pg_temp.drain_rows (staging_id, platform_id, forge, context, doc, parse_error)
            SELECT st.staging_id, identity, st.platform_id, st.context, p.doc, 'payload is not valid JSON: ' || p.err
            FROM (SELECT st.staging_id, st.platform_id, st.context, st.payload FROM aveloxis_ops.staging st
                  WHERE st.repo_id = target AND st.entity = ent AND st.drained_at IS NULL
                    AND st.staging_id > coalesce(after_id, 0)
                  ORDER BY st.staging_id LIMIT batch_size) st,
                 LATERAL aveloxis_ops.parse_payload(st.payload) p;
        END;
        SELECT count(*) INTO taken FROM pg_temp.drain_rows;
        CONTINUE WHEN taken = 0;
        ANALYZE pg_temp.drain_rows;

        INSERT INTO aveloxis_ops.drain_run_counts AS c (repo_id, run_id, entity, last_staging_id)
        SELECT target, run, ent, max(staging_id) FROM pg_temp.drain_rows
        ON CONFLICT ON CONSTRAINT drain_run_counts_pkey DO UPDATE SET last_staging_id = EXCLUDED.last_staging_id;

        -- Every entity's payload is one JSON object.
        UPDATE pg_temp.drain_rows r
        SET parse_error = format('payload is a JSON %s, not an object', jsonb_typeof(r.doc)), doc = NULL
        WHERE jsonb_typeof(r.doc) <> 'object';
        PERFORM aveloxis_ops.null_unfit_fields(target, run, ent);
        rejected := 0;
        FOR row_id, err_text IN SELECT staging_id, parse_error FROM pg_temp.drain_rows WHERE parse_error IS NOT NULL LOOP
            rejected := rejected + aveloxis_ops.reject(target, ARRAY[row_id], ent || ': ' || err_text, '22P02');
        END LOOP;

        -- GitHub and GitLab payloads each have their mapper. A forge payload of any other
        -- platform waits, counted, until a mapper for it ships; it is never read as if it
        -- were GitHub's. Git history is the agent's own envelope, the same for every platform.
        UPDATE pg_temp.drain_rows r SET pending = true
        WHERE r.doc IS NOT NULL AND r.forge NOT IN (1, 2) AND ent NOT IN ('commit', 'commit_removed', 'repo_files');
        GET DIAGNOSTICS unmapped = ROW_COUNT;

        BEGIN
            batch := aveloxis_ops.drain_entity(ent, target, NULL);
            UPDATE aveloxis_ops.staging s SET drained_at = now()
            FROM pg_temp.drain_rows r
            WHERE s.repo_id = target AND r.staging_id = s.staging_id AND r.doc IS NOT NULL AND NOT r.pending;
            -- Rows put back by requeue_rejects() that now drained are no longer rejects.
            DELETE FROM aveloxis_ops.staging_rejects j
            USING pg_temp.drain_rows r
            WHERE j.repo_id = target AND j.staging_id = r.staging_id AND r.doc IS NOT NULL AND NOT r.pending;
        EXCEPTION WHEN OTHERS THEN
            -- Something in the batch cannot be stored: redo it row by row, so only that
            -- row is rejected and the others are stored.
            batch := ROW(0, 0, 0, 0, 0)::aveloxis_ops.drain_counts;
            FOR row_id IN SELECT staging_id FROM pg_temp.drain_rows WHERE doc IS NOT NULL AND NOT pending
                          ORDER BY staging_id LOOP
                BEGIN
                    one := aveloxis_ops.drain_entity(ent, target, row_id);
                    IF one.pending = 0 THEN
                        UPDATE aveloxis_ops.staging s SET drained_at = now()
                        WHERE s.repo_id = target AND s.staging_id = row_id;
                        DELETE FROM aveloxis_ops.staging_rejects j WHERE j.repo_id = target AND j.staging_id = row_id;
                    END IF;
                    batch.inserted := batch.inserted + one.inserted;
                    batch.updated := batch.updated + one.updated;
                    batch.unchanged := batch.unchanged + one.unchanged;
                    batch.skipped := batch.skipped + one.skipped;
                    batch.pending := batch.pending + one.pending;
                EXCEPTION WHEN OTHERS THEN
                    GET STACKED DIAGNOSTICS err_text = MESSAGE_TEXT, err_state = RETURNED_SQLSTATE;
                    rejected := rejected + aveloxis_ops.reject(target, ARRAY[row_id], ent || ': ' || err_text, err_state);
                END;
            END LOOP;
        END;
        batch.pending := batch.pending + unmapped;
        PERFORM aveloxis_ops.add_counts(target, run, ent, batch, rejected);
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
    FROM aveloxis_ops.drain_run_counts c WHERE c.repo_id = run.repo_id AND c.run_id = run.run_id;
    SELECT string_agg(format('%s.%s %s', n.entity, n.field, n.nulled), ', ' ORDER BY n.entity, n.field)
    INTO nulled
    FROM aveloxis_ops.drain_run_nulled n WHERE n.repo_id = run.repo_id AND n.run_id = run.run_id;
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
        ON CONFLICT (repo_id, staging_id) DO NOTHING
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
