-- pg_aveloxis 0.8.0 -> 0.9.0: GitLab payloads drained (docs/staging-contract.md), one
-- identity platform per forge host (docs/identity.md).
--
-- * Each entity's drain is a GitHub mapper, a GitLab mapper and one shared upsert, in
--   the entity's own sql/ file (the functions moved; their names did not change).
-- * aveloxis_data.platforms says whose accounts each platform holds (platform_kind,
--   platform_host): github.com 1, gitlab.com 2, and each declared self-managed GitLab (and
--   new GitHub Enterprise) host a platform of its own, 16 and up.
-- * Issue and pull request events carry event_source: GitLab's resource state, label and
--   milestone events and system notes are numbered apart, and their ids collide.

ALTER TABLE aveloxis_data.platforms ADD COLUMN platform_kind smallint, ADD COLUMN platform_host text;
-- Rows a DBA added before 0.9.0 had no meaning to the extension: they become plain git.
UPDATE aveloxis_data.platforms
SET platform_kind = CASE WHEN platform_id IN (1, 2, 3) THEN platform_id ELSE 3 END,
    platform_host = CASE platform_id WHEN 1 THEN 'github.com' WHEN 2 THEN 'gitlab.com' END;
ALTER TABLE aveloxis_data.platforms
    ALTER COLUMN platform_kind SET NOT NULL,
    ADD CONSTRAINT platforms_platform_kind_check CHECK (platform_kind IN (1, 2, 3)),
    ADD CONSTRAINT platforms_platform_host_key UNIQUE (platform_host);
COMMENT ON TABLE aveloxis_data.platforms IS 'Identity platforms (a forge host each); platform_id is byte 0 of every deterministic contributor id';

ALTER TABLE aveloxis_data.issue_events
    ADD COLUMN event_source text NOT NULL DEFAULT 'event',
    ADD CONSTRAINT issue_events_repo_id_event_source_platform_event_id_key UNIQUE (repo_id, event_source, platform_event_id),
    DROP CONSTRAINT issue_events_repo_id_platform_event_id_key;
ALTER TABLE aveloxis_data.pull_request_events
    ADD COLUMN event_source text NOT NULL DEFAULT 'event',
    ADD CONSTRAINT pull_request_events_repo_id_event_source_platform_event_id_key
        UNIQUE (repo_id, event_source, platform_event_id),
    DROP CONSTRAINT pull_request_events_repo_id_platform_event_id_key;

-- The field check now has a mapper per forge.
DROP FUNCTION aveloxis_ops.drain_fields(text);

CREATE OR REPLACE FUNCTION aveloxis.add_forge_host(host text, platform smallint, api_url text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    clean_host text := lower(regexp_replace(btrim(host), '^www\.', '', 'i'));
    plain_repos bigint;
BEGIN
    IF platform IS NULL OR platform NOT IN (1, 2) THEN
        RAISE EXCEPTION 'platform % is not a forge with an API', platform
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use 1 for GitHub Enterprise or 2 for GitLab.';
    END IF;
    INSERT INTO aveloxis_ops.forge_hosts AS f (host, platform_id, api_url)
    VALUES (clean_host, platform,
            coalesce(api_url, CASE platform WHEN 1 THEN 'https://' || clean_host || '/api/v3'
                                            ELSE 'https://' || clean_host || '/api/v4' END))
    ON CONFLICT ON CONSTRAINT forge_hosts_pkey DO UPDATE
        SET platform_id = EXCLUDED.platform_id, api_url = EXCLUDED.api_url;
    PERFORM aveloxis_ops.ensure_identity_platform(clean_host, platform);
    SELECT count(*) INTO plain_repos FROM aveloxis_data.repos r
    WHERE r.repo_host = clean_host AND r.platform_id = 3;
    IF plain_repos > 0 THEN
        RAISE NOTICE '% repositories on % were registered as plain git before this host was declared; they stay plain git',
            plain_repos, clean_host;
    END IF;
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
        WHERE c.run_id = run AND c.entity = ent;
        DELETE FROM pg_temp.drain_rows;
        -- Each payload is de-toasted, sanitized and parsed exactly once: this is the
        -- floor every drain pays. Only a batch holding an unparsable payload takes the
        -- slower path that finds it and says why.
        BEGIN
            INSERT INTO pg_temp.drain_rows (staging_id, platform_id, forge, context, doc)
            SELECT st.staging_id, identity, st.platform_id, st.context, aveloxis_ops.sanitize_json(st.payload)::jsonb
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

        -- GitHub and GitLab payloads each have their mapper. A forge payload of any other
        -- platform waits, counted, until a mapper for it ships; it is never read as if it
        -- were GitHub's. Git history is the agent's own envelope, the same for every platform.
        UPDATE pg_temp.drain_rows r SET pending = true
        WHERE r.doc IS NOT NULL AND r.forge NOT IN (1, 2) AND ent NOT IN ('commit', 'commit_removed', 'repo_files');
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

CREATE OR REPLACE FUNCTION aveloxis.forge_hosts()
RETURNS TABLE (host text, platform_id smallint, api_url text, identity_platform smallint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    SELECT f.host, f.platform_id, f.api_url,
           coalesce((SELECT p.platform_id FROM aveloxis_data.platforms p WHERE p.platform_host = f.host), f.platform_id)
    FROM aveloxis_ops.forge_hosts f ORDER BY f.host
$$;

CREATE OR REPLACE FUNCTION aveloxis.link_contributor(cntrb_id uuid, platform smallint, user_id bigint, login text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    target uuid := link_contributor.cntrb_id;
    holder uuid;
    -- 1 GitHub or 2 GitLab: which gh_*/gl_* columns the account fills.
    kind smallint := (SELECT p.platform_kind FROM aveloxis_data.platforms p WHERE p.platform_id = platform);
BEGIN
    IF target IS NULL OR platform IS NULL OR user_id IS NULL THEN
        RAISE EXCEPTION 'link_contributor needs a cntrb_id, a platform and a user id'
            USING ERRCODE = 'null_value_not_allowed', HINT = 'login may be NULL; the others may not.';
    END IF;
    IF kind IS NULL OR kind NOT IN (1, 2) OR user_id <= 0 THEN
        RAISE EXCEPTION 'platform % / user id % is not a forge account', platform, user_id
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use an identity platform of aveloxis_data.platforms (1 github.com, 2 gitlab.com, 16+ declared hosts) and the forge''s numeric user id.';
    END IF;
    IF NOT EXISTS (SELECT FROM aveloxis_data.contributors c WHERE c.cntrb_id = target AND c.cntrb_deleted = 0) THEN
        RAISE EXCEPTION 'contributor % does not exist or was merged away', target
            USING ERRCODE = 'no_data_found', HINT = 'Merged contributors point to their winner; link that one.';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('aveloxis.contributors', platform));
    SELECT i.cntrb_id INTO holder FROM aveloxis_data.contributor_identities i
    WHERE i.platform_id = platform AND i.platform_user_id = user_id;
    IF FOUND AND holder <> target THEN
        RAISE EXCEPTION 'account % on platform % already belongs to contributor %', user_id, platform, holder
            USING ERRCODE = 'unique_violation',
                  HINT = 'If both contributors are the same person, aveloxis.merge_contributors(winner, loser) joins them.';
    END IF;
    -- A login now shown for this account is no longer another account's (R3).
    UPDATE aveloxis_data.contributor_identities i SET login = NULL
    WHERE i.platform_id = platform AND lower(i.login) = lower(link_contributor.login) AND i.platform_user_id <> user_id;
    INSERT INTO aveloxis_data.contributor_identities AS i (platform_id, platform_user_id, cntrb_id, login)
    VALUES (platform, user_id, target, link_contributor.login)
    ON CONFLICT (platform_id, platform_user_id) DO UPDATE
        SET login = coalesce(EXCLUDED.login, i.login), last_seen_at = EXCLUDED.last_seen_at;
    IF link_contributor.login IS NOT NULL THEN
        INSERT INTO aveloxis_data.contributor_login_history (platform_id, platform_user_id, login, cntrb_id)
        VALUES (platform, user_id, link_contributor.login, target)
        ON CONFLICT DO NOTHING;
    END IF;
    UPDATE aveloxis_data.contributors c
    SET gh_user_id = CASE WHEN kind = 1 THEN coalesce(c.gh_user_id, user_id) ELSE c.gh_user_id END,
        gh_login = CASE WHEN kind = 1 THEN coalesce(c.gh_login, link_contributor.login) ELSE c.gh_login END,
        gl_id = CASE WHEN kind = 2 THEN coalesce(c.gl_id, user_id) ELSE c.gl_id END,
        gl_username = CASE WHEN kind = 2 THEN coalesce(c.gl_username, link_contributor.login) ELSE c.gl_username END
    WHERE c.cntrb_id = target;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis.record_commit_author(repo_id bigint, email text, platform smallint, user_id bigint,
                                              login text, name text DEFAULT NULL, source text DEFAULT NULL,
                                              OUT cntrb_id uuid, OUT commits_linked bigint)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    address text := lower(btrim(email));
    who uuid;
    account_login text := nullif(btrim(login), '');
    -- The kind (1 GitHub, 2 GitLab) picks the gh_*/gl_* columns; the account ids are
    -- those of the repository's host (its identity platform) when it is of that kind.
    kind smallint := platform;
BEGIN
    IF address IS NULL OR address = '' THEN
        RAISE EXCEPTION 'record_commit_author needs an email' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF platform IS NULL OR platform NOT IN (1, 2) THEN
        RAISE EXCEPTION 'platform must be 1 (GitHub) or 2 (GitLab), not %', platform
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- A noreply address names its own host's account (gitlab.com's in a self-managed
    -- project's history is gitlab.com's); an account the API found is the repository's host's.
    IF address ~ '@users\.noreply\.[a-z0-9.-]+$' THEN
        platform := coalesce(aveloxis_ops.noreply_platform(address, kind), kind);
    ELSIF EXISTS (SELECT FROM aveloxis_data.repos r
                  WHERE r.repo_id = record_commit_author.repo_id AND r.platform_id = kind) THEN
        platform := aveloxis_ops.identity_platform_of(record_commit_author.repo_id);
    END IF;
    IF (user_id IS NULL OR user_id <= 0) AND account_login IS NULL THEN
        RAISE EXCEPTION 'record_commit_author needs an account id or a login for %', address
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A miss is recorded with aveloxis.record_commit_author_miss().';
    END IF;
    IF user_id > 0 THEN
        SELECT i.cntrb_id INTO who FROM aveloxis_data.contributor_identities i
        WHERE i.platform_id = platform AND i.platform_user_id = user_id;
        IF who IS NULL THEN
            who := aveloxis.platform_uuid(platform, user_id);
            INSERT INTO aveloxis_data.contributors AS c
                (cntrb_id, cntrb_login, cntrb_email, cntrb_full_name, gh_user_id, gh_login, gl_id, gl_username,
                 tool_source, tool_version, data_source)
            VALUES (who, account_login, address, name,
                    CASE WHEN kind = 1 THEN user_id END, CASE WHEN kind = 1 THEN account_login END,
                    CASE WHEN kind = 2 THEN user_id END, CASE WHEN kind = 2 THEN account_login END,
                    'aveloxis-facade', aveloxis.version(), coalesce(source, 'commit author'))
            ON CONFLICT ON CONSTRAINT contributors_pkey DO NOTHING;
            PERFORM aveloxis.link_contributor(who, platform, user_id, account_login);
        END IF;
    ELSE
        SELECT i.cntrb_id INTO who FROM aveloxis_data.contributor_identities i
        WHERE i.platform_id = platform AND lower(i.login) = lower(account_login);
        IF who IS NULL THEN
            SELECT c.cntrb_id INTO who FROM aveloxis_data.contributors c
            WHERE c.cntrb_deleted = 0
              AND CASE kind WHEN 1 THEN lower(c.gh_login) = lower(account_login)
                                ELSE lower(c.gl_username) = lower(account_login) END
            ORDER BY c.data_collection_date LIMIT 1;
        END IF;
        IF who IS NULL THEN
            who := gen_random_uuid();
            INSERT INTO aveloxis_data.contributors
                (cntrb_id, cntrb_login, cntrb_email, cntrb_full_name, gh_login, gl_username,
                 tool_source, tool_version, data_source)
            VALUES (who, account_login, address, name,
                    CASE WHEN kind = 1 THEN account_login END, CASE WHEN kind = 2 THEN account_login END,
                    'aveloxis-facade', aveloxis.version(), coalesce(source, 'commit author'));
        END IF;
    END IF;
    commits_linked := aveloxis.link_commit_author(record_commit_author.repo_id, address, who, account_login,
                                                  coalesce(source, 'commit author'));
    cntrb_id := who;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis.record_commit_author(lease_token uuid, email text, platform smallint, user_id bigint,
                                              login text, name text DEFAULT NULL, source text DEFAULT NULL,
                                              OUT cntrb_id uuid, OUT commits_linked bigint)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
BEGIN
    SELECT r.cntrb_id, r.commits_linked INTO cntrb_id, commits_linked
    FROM aveloxis.record_commit_author(aveloxis_ops.lease_repo(lease_token, 'facade'), email, platform, user_id,
                                       login, name, source) r;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis.record_commit_author_miss(email text, outcome text, reason text, name text DEFAULT NULL)
RETURNS timestamptz
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    address text := lower(btrim(email));
    wait interval;
    retry timestamptz;
BEGIN
    IF outcome IS NULL OR outcome NOT IN ('skipped', 'not_found') THEN
        RAISE EXCEPTION 'outcome must be ''skipped'' or ''not_found'', not %', outcome
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    wait := aveloxis_ops.setting(CASE outcome WHEN 'skipped' THEN 'resolve.skip_cooldown'
                                             ELSE 'resolve.cooldown' END)::interval;
    -- The clock is read once, in VALUES: an ON CONFLICT ... DO UPDATE SET takes EXCLUDED's
    -- value, never a function (Citus refuses non-immutable ones there, on any of its tables).
    INSERT INTO aveloxis_data.unresolved_commit_emails AS u
        (email, name, outcome, reason, retry_after, last_attempted_at)
    VALUES (address, name, outcome, coalesce(reason, outcome), aveloxis_ops.clock() + wait, aveloxis_ops.clock())
    ON CONFLICT ON CONSTRAINT unresolved_commit_emails_pkey DO UPDATE
    SET attempts = u.attempts + 1, last_attempted_at = EXCLUDED.last_attempted_at, outcome = EXCLUDED.outcome,
        reason = EXCLUDED.reason, name = coalesce(EXCLUDED.name, u.name), retry_after = EXCLUDED.retry_after
    RETURNING u.retry_after INTO retry;
    RETURN retry;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis.resolve_email(email text)
RETURNS TABLE (cntrb_id uuid, login text, source text)
LANGUAGE plpgsql STABLE STRICT SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    address text := lower(btrim(email));
    m text[];
    platform smallint;
    account bigint;
BEGIN
    -- GitHub: [id+]login@users.noreply.github.com; GitLab: id-login@users.noreply.<host>,
    -- the host being gitlab.com or a declared self-managed one (its identity platform).
    m := regexp_match(address, '^(?:([0-9]+)\+)?([a-z0-9][a-z0-9._-]*)@users\.noreply\.github\.com$');
    IF m IS NOT NULL THEN
        platform := 1;
    ELSE
        m := regexp_match(address, '^([0-9]+)-([a-z0-9][a-z0-9._-]*)@users\.noreply\.[a-z0-9.-]+$');
        platform := CASE WHEN m IS NOT NULL THEN aveloxis_ops.noreply_platform(address, 2::smallint) END;
        IF platform IS NULL THEN
            m := NULL;
        END IF;
    END IF;
    IF m IS NOT NULL THEN
        account := m[1]::bigint;
        RETURN QUERY
            SELECT coalesce(
                       (SELECT i.cntrb_id FROM aveloxis_data.contributor_identities i
                        WHERE i.platform_id = platform AND i.platform_user_id = account),
                       (SELECT i.cntrb_id FROM aveloxis_data.contributor_identities i
                        WHERE account IS NULL AND i.platform_id = platform AND lower(i.login) = m[2])),
                   m[2],
                   CASE WHEN account IS NULL THEN 'noreply_login' ELSE 'noreply_id' END;
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

CREATE OR REPLACE FUNCTION aveloxis.set_affiliation(domain text, affiliation text, active boolean DEFAULT true)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    d text := lower(btrim(set_affiliation.domain));
    changed bigint;
BEGIN
    IF d IS NULL OR d !~ '^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$' THEN
        RAISE EXCEPTION 'not an email domain: %', set_affiliation.domain USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Pass the part after the @, e.g. ''redhat.com''.';
    END IF;
    INSERT INTO aveloxis_data.contributor_affiliations AS a (ca_domain, ca_affiliation, ca_active, tool_source)
    VALUES (d, affiliation, coalesce(active, true), 'aveloxis.set_affiliation')
    ON CONFLICT (ca_domain) DO UPDATE SET ca_affiliation = EXCLUDED.ca_affiliation, ca_active = EXCLUDED.ca_active,
                                          data_collection_date = EXCLUDED.data_collection_date;
    WITH touched AS (
        UPDATE aveloxis_data.commits c
        SET cmt_author_affiliation = aveloxis_ops.email_affiliation(c.cmt_author_email),
            cmt_committer_affiliation = aveloxis_ops.email_affiliation(c.cmt_committer_email)
        WHERE split_part(c.cmt_author_email, '@', 2) = d OR split_part(c.cmt_author_email, '@', 2) LIKE '%.' || d
           OR split_part(c.cmt_committer_email, '@', 2) = d OR split_part(c.cmt_committer_email, '@', 2) LIKE '%.' || d
        RETURNING c.repo_id, c.cmt_author_email, c.cmt_author_timestamp
    ), queued AS (
        INSERT INTO aveloxis_ops.commit_aggregate_backlog (repo_id, email, year)
        SELECT DISTINCT t.repo_id, t.cmt_author_email, extract(year FROM t.cmt_author_timestamp AT TIME ZONE 'UTC')
        FROM touched t WHERE t.cmt_author_timestamp IS NOT NULL AND t.cmt_author_email IS NOT NULL
        ON CONFLICT DO NOTHING
    )
    SELECT count(*) INTO changed FROM touched;
    RETURN changed;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis.set_bot(cntrb uuid, is_bot boolean, reason text)
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
                                         set_by = EXCLUDED.set_by, set_at = EXCLUDED.set_at;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.collect_users()
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

CREATE OR REPLACE FUNCTION aveloxis_ops.drain_fields(entity text, forge smallint)
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

    total := aveloxis_ops.map_issue_comments_github(only_staging_id) + aveloxis_ops.map_issue_comments_gitlab(only_staging_id);

    IF EXISTS (SELECT FROM pg_temp.drain_comments WHERE platform_msg_id IS NULL) THEN
        RAISE EXCEPTION 'issue comment payload without a numeric "id"'
            USING ERRCODE = 'not_null_violation',
                  HINT = 'Stage comment objects as the forge returns them (docs/staging-contract.md).';
    END IF;
    IF EXISTS (SELECT FROM pg_temp.drain_comments WHERE parent_number IS NULL) THEN
        RAISE EXCEPTION 'issue comment payload names no parent: no "issue_url" ending in a number (GitLab: "noteable_iid"), and no context.parent_number'
            USING ERRCODE = 'not_null_violation',
                  HINT = 'Stage comments of /issues/{n}/comments with context {"parent_number": n}.';
    END IF;

    -- Issues and pull requests share one number space: the parent is one or the other.
    -- Correlated lookups: one index probe per comment. (A join let the planner, misled by
    -- statistics older than the drain's own inserts, hash the repository's every issue
    -- for each batch: quadratic in the repository's size.)
    UPDATE pg_temp.drain_comments c
    SET issue_id = (SELECT i.issue_id FROM aveloxis_data.issues i
                    WHERE i.repo_id = repo AND i.issue_number = c.parent_number)
    WHERE c.parent_kind IS DISTINCT FROM 'pull_request';
    UPDATE pg_temp.drain_comments c
    SET pull_request_id = (SELECT p.pull_request_id FROM aveloxis_data.pull_requests p
                           WHERE p.repo_id = repo AND p.pr_number = c.parent_number)
    WHERE c.issue_id IS NULL AND c.parent_kind IS DISTINCT FROM 'issue';
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
                tool_version = EXCLUDED.tool_version, data_collection_date = EXCLUDED.data_collection_date
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
    CREATE TEMP TABLE drain_events (
        staging_id        bigint PRIMARY KEY,
        platform_id       smallint NOT NULL,
        platform_event_id bigint,
        event_source      text NOT NULL,
        node_id           text,
        action            text,
        commit_id         text,
        actor             jsonb,
        assignee          jsonb,
        created_at        timestamptz,
        parent_number     integer,
        -- As for comments: 'issue' or 'pull_request' when the forge numbers them apart.
        parent_kind       text,
        issue_id          bigint,
        pull_request_id   bigint
    ) ON COMMIT DROP;
    total := aveloxis_ops.map_issue_events_github(only_staging_id) + aveloxis_ops.map_issue_events_gitlab(only_staging_id);
    -- Timeline items (/issues/{n}/timeline) may be staged as events too: comments and
    -- reviews are drained from their own endpoints (their ids are another id space),
    -- and commits, cross-references and line comments have no event id. Counted, not stored.
    -- GitLab system notes that record no GitHub event (a title edit, commits pushed) too.
    DELETE FROM pg_temp.drain_events
    WHERE action IN ('commented', 'reviewed', 'committed', 'cross-referenced', 'line-commented')
       OR (platform_event_id IS NULL AND action IS NOT NULL)
       OR (event_source = 'note' AND action IS NULL);
    GET DIAGNOSTICS result.skipped = ROW_COUNT;
    IF EXISTS (SELECT FROM pg_temp.drain_events WHERE platform_event_id IS NULL OR action IS NULL) THEN
        RAISE EXCEPTION 'issue event payload without a numeric "id" and an "event"'
            USING ERRCODE = 'not_null_violation',
                  HINT = 'Stage event objects as the forge returns them (docs/staging-contract.md).';
    END IF;
    IF EXISTS (SELECT FROM pg_temp.drain_events WHERE parent_number IS NULL) THEN
        RAISE EXCEPTION 'issue event payload names no parent: no "issue" with a number (GitLab: "noteable_iid"), and no context.parent_number'
            USING ERRCODE = 'not_null_violation',
                  HINT = 'Stage events of /issues/{n}/events with context {"parent_number": n}.';
    END IF;
    -- Correlated lookups, as for comments: one index probe per event.
    UPDATE pg_temp.drain_events e
    SET issue_id = (SELECT i.issue_id FROM aveloxis_data.issues i
                    WHERE i.repo_id = repo AND i.issue_number = e.parent_number)
    WHERE e.parent_kind IS DISTINCT FROM 'pull_request';
    UPDATE pg_temp.drain_events e
    SET pull_request_id = (SELECT p.pull_request_id FROM aveloxis_data.pull_requests p
                           WHERE p.repo_id = repo AND p.pr_number = e.parent_number)
    WHERE e.issue_id IS NULL AND e.parent_kind IS DISTINCT FROM 'issue';
    UPDATE pg_temp.drain_rows r SET pending = true
    FROM pg_temp.drain_events e WHERE e.staging_id = r.staging_id AND e.issue_id IS NULL AND e.pull_request_id IS NULL;
    SELECT count(*) INTO result.pending FROM pg_temp.drain_events WHERE issue_id IS NULL AND pull_request_id IS NULL;
    -- A change GitLab recorded both as a resource event and as a system note (versions
    -- that wrote both) is one event: the note goes when the same action on the same
    -- parent is within a second of a resource event, in this batch or stored.
    WITH dup AS (
        DELETE FROM pg_temp.drain_events n
        WHERE n.event_source = 'note' AND (n.issue_id IS NOT NULL OR n.pull_request_id IS NOT NULL)
          AND (EXISTS (SELECT FROM pg_temp.drain_events e
                       WHERE e.event_source <> 'note' AND e.action = n.action
                         AND e.issue_id IS NOT DISTINCT FROM n.issue_id
                         AND e.pull_request_id IS NOT DISTINCT FROM n.pull_request_id
                         AND e.created_at BETWEEN n.created_at - interval '1 second' AND n.created_at + interval '1 second')
               OR EXISTS (SELECT FROM aveloxis_data.issue_events e
                          WHERE e.issue_id = n.issue_id AND e.event_source <> 'note' AND e.action = n.action
                            AND e.created_at BETWEEN n.created_at - interval '1 second' AND n.created_at + interval '1 second')
               OR EXISTS (SELECT FROM aveloxis_data.pull_request_events e
                          WHERE e.pull_request_id = n.pull_request_id AND e.event_source <> 'note' AND e.action = n.action
                            AND e.created_at BETWEEN n.created_at - interval '1 second' AND n.created_at + interval '1 second'))
        RETURNING 1
    )
    SELECT result.skipped + count(*) INTO result.skipped FROM dup;

    INSERT INTO pg_temp.drain_user_refs (platform_id, staging_id, u)
    SELECT e.platform_id, e.staging_id, u FROM pg_temp.drain_events e,
           LATERAL (SELECT e.actor UNION ALL SELECT e.assignee) refs(u)
    WHERE e.issue_id IS NOT NULL OR e.pull_request_id IS NOT NULL;
    PERFORM aveloxis_ops.collect_users();
    PERFORM aveloxis_ops.resolve_users();

    -- Events never change once they happened: insert what is new.
    WITH ins AS (
        INSERT INTO aveloxis_data.issue_events
            (issue_id, repo_id, platform_id, platform_event_id, event_source, node_id, cntrb_id, action,
             action_commit_hash, assignee_id, created_at)
        SELECT DISTINCT ON (e.event_source, e.platform_event_id)
               e.issue_id, repo, e.platform_id, e.platform_event_id, e.event_source, e.node_id, a.cntrb_id, e.action,
               e.commit_id, s.cntrb_id, e.created_at
        FROM pg_temp.drain_events e
        LEFT JOIN pg_temp.drain_users a ON a.platform_id = e.platform_id AND a.user_id = aveloxis_ops.user_id_of(e.actor)
        LEFT JOIN pg_temp.drain_users s ON s.platform_id = e.platform_id AND s.user_id = aveloxis_ops.user_id_of(e.assignee)
        WHERE e.issue_id IS NOT NULL
        ORDER BY e.event_source, e.platform_event_id
        ON CONFLICT (repo_id, event_source, platform_event_id) DO NOTHING
        RETURNING 1
    )
    SELECT count(*) INTO ins_issue FROM ins;
    WITH ins AS (
        INSERT INTO aveloxis_data.pull_request_events
            (pull_request_id, repo_id, platform_id, platform_event_id, event_source, node_id, cntrb_id, action,
             action_commit_hash, assignee_id, created_at)
        SELECT DISTINCT ON (e.event_source, e.platform_event_id)
               e.pull_request_id, repo, e.platform_id, e.platform_event_id, e.event_source, e.node_id, a.cntrb_id,
               e.action, e.commit_id, s.cntrb_id, e.created_at
        FROM pg_temp.drain_events e
        LEFT JOIN pg_temp.drain_users a ON a.platform_id = e.platform_id AND a.user_id = aveloxis_ops.user_id_of(e.actor)
        LEFT JOIN pg_temp.drain_users s ON s.platform_id = e.platform_id AND s.user_id = aveloxis_ops.user_id_of(e.assignee)
        WHERE e.pull_request_id IS NOT NULL
        ORDER BY e.event_source, e.platform_event_id
        ON CONFLICT (repo_id, event_source, platform_event_id) DO NOTHING
        RETURNING 1
    )
    SELECT count(*) INTO ins_pr FROM ins;
    result.inserted := ins_issue + ins_pr;
    result.updated := 0;
    result.unchanged := total - result.skipped - result.pending - result.inserted;
    RETURN result;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.drain_issues(repo bigint, only_staging_id bigint)
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

    total := aveloxis_ops.map_issues_github(only_staging_id) + aveloxis_ops.map_issues_gitlab(only_staging_id);

    IF EXISTS (SELECT FROM pg_temp.drain_issues WHERE platform_issue_id IS NULL OR issue_number IS NULL) THEN
        RAISE EXCEPTION 'issue payload without a numeric "id" and "number"'
            USING ERRCODE = 'not_null_violation',
                  HINT = 'Stage issue objects as the forge returns them (GitLab''s number is "iid"; docs/staging-contract.md).';
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
                data_collection_date = EXCLUDED.data_collection_date
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

    total := aveloxis_ops.map_pull_requests_github(only_staging_id) + aveloxis_ops.map_pull_requests_gitlab(only_staging_id);
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
                tool_version = EXCLUDED.tool_version, data_collection_date = EXCLUDED.data_collection_date
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

CREATE OR REPLACE FUNCTION aveloxis_ops.drain_releases(repo bigint, only_staging_id bigint)
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
    CREATE TEMP TABLE drain_releases (
        staging_id   bigint NOT NULL,
        platform_id  smallint NOT NULL,
        release_id   text,
        name         text,
        body         text,
        author       jsonb,
        tag_name     text,
        html_url     text,
        draft        boolean,
        prerelease   boolean,
        created_at   timestamptz,
        published_at timestamptz,
        updated_at   timestamptz
    ) ON COMMIT DROP;
    PERFORM aveloxis_ops.map_releases_github(only_staging_id), aveloxis_ops.map_releases_gitlab(only_staging_id);
    -- One release staged twice in a batch: the newest staged wins.
    DELETE FROM pg_temp.drain_releases d USING pg_temp.drain_releases e
    WHERE e.release_id = d.release_id AND e.staging_id > d.staging_id;
    SELECT count(*) INTO total FROM pg_temp.drain_rows r
    WHERE r.doc IS NOT NULL AND NOT r.pending AND (only_staging_id IS NULL OR r.staging_id = only_staging_id);
    IF EXISTS (SELECT FROM pg_temp.drain_releases WHERE release_id IS NULL) THEN
        RAISE EXCEPTION 'release payload without a numeric "id" (GitLab: a "tag_name")'
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
        SELECT repo, d.release_id, d.name, d.body, coalesce(d.author ->> 'login', d.author ->> 'username'), u.cntrb_id,
               d.tag_name, d.html_url,
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
                release_is_prerelease = EXCLUDED.release_is_prerelease, data_collection_date = EXCLUDED.data_collection_date
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
    PERFORM aveloxis_ops.drop_batch_table('drain_repo_info');
    CREATE TEMP TABLE drain_repo_info (
        staging_id       bigint NOT NULL,
        repo_id          bigint NOT NULL,
        repo_src_id      bigint,
        node_id          text,
        full_name        text,
        description      text,
        homepage         text,
        default_branch   text,
        primary_language text,
        license          text,
        is_fork          boolean,
        archived         boolean,
        visibility       text,
        issues_enabled   text,
        wiki_enabled     text,
        pages_enabled    text,
        fork_count       integer,
        watchers_count   integer,
        stars_count      integer,
        open_issues      integer,
        size_kb          integer,
        created_at       timestamptz,
        updated_at       timestamptz,
        pushed_at        timestamptz
    ) ON COMMIT DROP;
    total := aveloxis_ops.map_repo_info_github(repo, only_staging_id) + aveloxis_ops.map_repo_info_gitlab(repo, only_staging_id);
    result := ROW(0, 0, 0, 0, 0)::aveloxis_ops.drain_counts;
    -- Only the newest staged version matters.
    DELETE FROM pg_temp.drain_repo_info d WHERE EXISTS (SELECT FROM pg_temp.drain_repo_info e WHERE e.staging_id > d.staging_id);
    SELECT * INTO newest FROM pg_temp.drain_repo_info;
    IF NOT FOUND THEN
        RETURN result;
    END IF;
    IF newest.repo_src_id IS NULL THEN
        RAISE EXCEPTION 'repo_info payload without a numeric "id"' USING ERRCODE = 'not_null_violation',
            HINT = 'Stage the repository object as /repos/{owner}/{repo} (GitLab: /projects/:id) returns it.';
    END IF;
    SELECT r.repo_id INTO twin FROM aveloxis_data.repos r JOIN aveloxis_data.repos me ON me.repo_id = repo
    WHERE r.repo_host IS NOT DISTINCT FROM me.repo_host AND r.repo_src_id = newest.repo_src_id AND r.repo_id <> repo;
    IF FOUND THEN
        RAISE EXCEPTION 'repo % is forge repository % (%), which is already registered as repo %',
                repo, newest.repo_src_id, newest.full_name, twin
            USING ERRCODE = 'unique_violation',
                  HINT = 'One of the two URLs is an old name: record_rename() the current one, then remove the other.';
    END IF;
    UPDATE aveloxis_data.repos r
    SET repo_src_id = newest.repo_src_id, repo_archived = coalesce(newest.archived, r.repo_archived)
    WHERE r.repo_id = repo
      AND (r.repo_src_id, r.repo_archived)
          IS DISTINCT FROM (newest.repo_src_id, coalesce(newest.archived, r.repo_archived));

    IF NOT EXISTS (SELECT FROM aveloxis_data.repo_info c WHERE c.repo_id = repo) THEN
        INSERT INTO aveloxis_data.repo_info
            (repo_id, repo_src_id, node_id, full_name, description, homepage, default_branch, primary_language,
             license, is_fork, archived, visibility, issues_enabled, wiki_enabled, pages_enabled, fork_count,
             watchers_count, stars_count, open_issues, size_kb, created_at, updated_at, pushed_at,
             tool_source, tool_version, data_source)
        SELECT i.repo_id, i.repo_src_id, i.node_id, i.full_name, i.description, i.homepage, i.default_branch,
               i.primary_language, i.license, i.is_fork, i.archived, i.visibility, i.issues_enabled, i.wiki_enabled,
               i.pages_enabled, i.fork_count, i.watchers_count, i.stars_count, i.open_issues, i.size_kb, i.created_at,
               i.updated_at, i.pushed_at, 'pg_aveloxis', aveloxis.version(), 'aveloxis.drain'
        FROM pg_temp.drain_repo_info i;
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
    CREATE TEMP TABLE drain_review_comments (
        staging_id             bigint PRIMARY KEY,
        platform_id            smallint NOT NULL,
        id                     bigint,
        node_id                text,
        body                   text,
        html_url               text,
        pull_request_url       text,
        "user"                 jsonb,
        pull_request_review_id bigint,
        in_reply_to_id         bigint,
        diff_hunk              text,
        path                   text,
        "position"             integer,
        original_position      integer,
        line                   integer,
        original_line          integer,
        side                   text,
        commit_id              text,
        original_commit_id     text,
        author_association     text,
        created_at             text,
        updated_at             text,
        parent_number          integer,
        pull_request_id        bigint,
        msg_id                 bigint,
        was_inserted           boolean NOT NULL DEFAULT false,
        changed                boolean NOT NULL DEFAULT false
    ) ON COMMIT DROP;
    total := aveloxis_ops.map_review_comments_github(only_staging_id)
             + aveloxis_ops.map_review_comments_gitlab(only_staging_id);
    IF EXISTS (SELECT FROM pg_temp.drain_review_comments WHERE id IS NULL) THEN
        RAISE EXCEPTION 'review comment payload without a numeric "id"' USING ERRCODE = 'not_null_violation',
            HINT = 'Stage review comment objects as the forge returns them (docs/staging-contract.md).';
    END IF;
    IF EXISTS (SELECT FROM pg_temp.drain_review_comments WHERE parent_number IS NULL) THEN
        RAISE EXCEPTION 'review comment payload names no pull request: no "pull_request_url" (GitLab: "noteable_iid"), and no context.parent_number'
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
                msg_html_url = EXCLUDED.msg_html_url, data_collection_date = EXCLUDED.data_collection_date
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

CREATE OR REPLACE FUNCTION aveloxis_ops.ensure_identity_platform(host text, kind smallint)
RETURNS smallint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found_row aveloxis_data.platforms;
    next_id   smallint;
BEGIN
    -- One allocator at a time: two hosts declared at once never take one id.
    PERFORM pg_advisory_xact_lock(hashtextextended('aveloxis.platforms', 0));
    SELECT * INTO found_row FROM aveloxis_data.platforms p WHERE p.platform_host = host;
    IF FOUND THEN
        IF found_row.platform_kind <> kind THEN
            IF EXISTS (SELECT FROM aveloxis_data.contributor_identities i WHERE i.platform_id = found_row.platform_id) THEN
                RAISE EXCEPTION 'host % already has % accounts; it cannot change forge kind', host,
                        (SELECT count(*) FROM aveloxis_data.contributor_identities i
                         WHERE i.platform_id = found_row.platform_id)
                    USING ERRCODE = 'object_in_use',
                          HINT = 'Declare the host with the kind it was first declared with.';
            END IF;
            UPDATE aveloxis_data.platforms p SET platform_kind = kind WHERE p.platform_id = found_row.platform_id;
        END IF;
        RETURN found_row.platform_id;
    END IF;
    -- A GitHub Enterprise host whose accounts were stored before 0.9.0 (as platform 1,
    -- like github.com's) keeps them there: a new platform would make every one of its
    -- people a second contributor.
    IF EXISTS (SELECT FROM aveloxis_data.repos r
               WHERE r.repo_host = host AND r.platform_id = kind AND r.repo_src_id IS NOT NULL) THEN
        RAISE NOTICE 'host % keeps identity platform % (its accounts were stored there before 0.9.0)', host, kind;
        RETURN kind;
    END IF;
    SELECT min(g)::smallint INTO next_id FROM generate_series(16, 255) g
    WHERE NOT EXISTS (SELECT FROM aveloxis_data.platforms p WHERE p.platform_id = g);
    IF next_id IS NULL THEN
        RAISE EXCEPTION 'no identity platform id left for host % (ids 16-255 are all taken)', host
            USING ERRCODE = 'program_limit_exceeded',
                  HINT = 'Remove the platforms rows of hosts that are no longer collected (and their identities).';
    END IF;
    INSERT INTO aveloxis_data.platforms (platform_id, platform_name, platform_kind, platform_host)
    VALUES (next_id, CASE kind WHEN 1 THEN 'GitHub' ELSE 'GitLab' END || ' at ' || host, kind, host);
    RETURN next_id;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.gitlab_labels(labels jsonb)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN pg_catalog.jsonb_typeof(labels) = 'array' THEN
        coalesce((SELECT pg_catalog.jsonb_agg(CASE pg_catalog.jsonb_typeof(e)
                                                  WHEN 'string' THEN pg_catalog.jsonb_build_object('name', e #>> '{}')
                                                  ELSE e END)
                  FROM pg_catalog.jsonb_array_elements(labels) e
                  WHERE pg_catalog.jsonb_typeof(e) IN ('string', 'object')), '[]'::jsonb)
        ELSE '[]'::jsonb END
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.gitlab_note_action(body text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN b ~ '^closed\M' THEN 'closed'
        WHEN b ~ '^reopened\M' THEN 'reopened'
        WHEN b ~ '^merged\M' THEN 'merged'
        WHEN b ~ '^(re)?assigned to @' THEN 'assigned'
        WHEN b ~ '^unassigned @' THEN 'unassigned'
        WHEN b ~ '^changed milestone to ' THEN 'milestoned'
        WHEN b ~ '^removed (the )?milestone' THEN 'demilestoned'
        WHEN b ~ '^added ~' THEN 'labeled'
        WHEN b ~ '^removed ~' THEN 'unlabeled'
        WHEN b ~ '^changed title from ' THEN 'renamed'
        WHEN b ~ '^(marked this merge request as draft|marked as a work in progress)' THEN 'converted_to_draft'
        WHEN b ~ '^(marked this merge request as ready|unmarked as a work in progress)' THEN 'ready_for_review'
        WHEN b ~ '^requested review from @' THEN 'review_requested'
        WHEN b ~ '^removed review request for @' THEN 'review_request_removed'
        WHEN b ~ '^mentioned in commit ' THEN 'referenced'
        WHEN b ~ '^locked (this|the discussion)' THEN 'locked'
        WHEN b ~ '^unlocked (this|the discussion)' THEN 'unlocked'
    END
    FROM (SELECT pg_catalog.lower(pg_catalog.replace(pg_catalog.btrim(body), '**', '')) AS b) n
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.gitlab_parent_kind(noteable_type text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE noteable_type WHEN 'Issue' THEN 'issue' WHEN 'issue' THEN 'issue'
                              WHEN 'MergeRequest' THEN 'pull_request' WHEN 'pull_request' THEN 'pull_request' END
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.gitlab_review_id(mr_id bigint, user_id bigint, state text)
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT (pg_catalog.hashtextextended(mr_id::text || '/' || user_id::text || '/' || state, 0)
            & 9223372036854775807::bigint) | 1::bigint
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.gitlab_reviews(mr_id bigint, approvals jsonb, reviewers jsonb)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(pg_catalog.jsonb_agg(r.v), '[]'::jsonb) FROM (
        -- One review per id; an approval in both lists is taken from /approvals.
        SELECT DISTINCT ON (k.id)
               pg_catalog.jsonb_build_object('id', k.id, 'state', s.state, 'submitted_at', s.submitted_at,
                                             'user', s.u) AS v
        FROM (SELECT 1 AS preference, a -> 'user' AS u, 'APPROVED' AS state, a -> 'approved_at' AS submitted_at
              FROM pg_catalog.jsonb_array_elements(
                       CASE WHEN pg_catalog.jsonb_typeof(approvals -> 'approved_by') = 'array'
                            THEN approvals -> 'approved_by' ELSE '[]'::jsonb END) a
              UNION ALL
              SELECT 2, e -> 'user', CASE e ->> 'state' WHEN 'requested_changes' THEN 'CHANGES_REQUESTED'
                                                        WHEN 'reviewed' THEN 'COMMENTED'
                                                        WHEN 'approved' THEN 'APPROVED' END,
                     e -> 'created_at'
              FROM pg_catalog.jsonb_array_elements(
                       CASE WHEN pg_catalog.jsonb_typeof(reviewers) = 'array' THEN reviewers ELSE '[]'::jsonb END) e
             ) s,
             LATERAL (SELECT aveloxis_ops.gitlab_review_id(mr_id, aveloxis_ops.user_id_of(s.u), s.state) AS id) k
        WHERE s.state IS NOT NULL AND aveloxis_ops.user_id_of(s.u) IS NOT NULL
        ORDER BY k.id, s.preference
    ) r
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.identity_platform_of(repo bigint)
RETURNS smallint
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN r.platform_id = 3 THEN r.platform_id
                ELSE coalesce((SELECT p.platform_id FROM aveloxis_data.platforms p
                               WHERE p.platform_host = r.repo_host AND p.platform_kind = r.platform_id),
                              r.platform_id) END
    FROM aveloxis_data.repos r WHERE r.repo_id = repo
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.map_issue_comments_github(only_staging_id bigint)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mapped bigint;
BEGIN
    INSERT INTO pg_temp.drain_comments
        (staging_id, platform_id, platform_msg_id, node_id, body, html_url, parent_number, author, created_at, updated_at)
    SELECT r.staging_id, r.platform_id, x.id, x.node_id, x.body, x.html_url,
           coalesce(CASE WHEN (r.context ->> 'parent_number') ~ '^[0-9]{1,9}$' THEN (r.context ->> 'parent_number')::integer END,
                    substring(x.issue_url FROM '/issues/([0-9]{1,9})$')::integer),
           x."user", aveloxis_ops.forge_timestamp(x.created_at), aveloxis_ops.forge_timestamp(x.updated_at)
    FROM pg_temp.drain_rows r,
         jsonb_to_record(r.doc) AS x(id bigint, node_id text, body text, html_url text, issue_url text, "user" jsonb,
                                     created_at text, updated_at text)
    WHERE r.forge = 1 AND r.doc IS NOT NULL AND NOT r.pending AND (only_staging_id IS NULL OR r.staging_id = only_staging_id);
    GET DIAGNOSTICS mapped = ROW_COUNT;
    RETURN mapped;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.map_issue_comments_gitlab(only_staging_id bigint)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mapped bigint;
BEGIN
    INSERT INTO pg_temp.drain_comments
        (staging_id, platform_id, platform_msg_id, node_id, body, html_url, parent_number, parent_kind, author,
         created_at, updated_at)
    SELECT r.staging_id, r.platform_id, x.id, NULL, x.body,
           CASE WHEN r.context ->> 'parent_web_url' IS NOT NULL THEN (r.context ->> 'parent_web_url') || '#note_' || x.id END,
           -- The parent the agent fetched it under (the request's path), else the note's own.
           coalesce(CASE WHEN (r.context ->> 'parent_number') ~ '^[0-9]{1,9}$' THEN (r.context ->> 'parent_number')::integer END,
                    x.noteable_iid),
           aveloxis_ops.gitlab_parent_kind(coalesce(r.context ->> 'parent_kind', x.noteable_type)),
           x.author, aveloxis_ops.forge_timestamp(x.created_at), aveloxis_ops.forge_timestamp(x.updated_at)
    FROM pg_temp.drain_rows r,
         jsonb_to_record(r.doc) AS x(id bigint, body text, author jsonb, created_at text, updated_at text,
                                     noteable_iid integer, noteable_type text)
    WHERE r.forge = 2 AND r.doc IS NOT NULL AND NOT r.pending AND (only_staging_id IS NULL OR r.staging_id = only_staging_id);
    GET DIAGNOSTICS mapped = ROW_COUNT;
    RETURN mapped;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.map_issue_events_github(only_staging_id bigint)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mapped bigint;
BEGIN
    INSERT INTO pg_temp.drain_events
        (staging_id, platform_id, platform_event_id, event_source, node_id, action, commit_id, actor, assignee, created_at,
         parent_number)
    SELECT r.staging_id, r.platform_id, x.id AS platform_event_id, 'event', x.node_id, x.event AS action, x.commit_id,
           x.actor, x.assignee, aveloxis_ops.forge_timestamp(x.created_at) AS created_at,
           coalesce(CASE WHEN (r.context ->> 'parent_number') ~ '^[0-9]{1,9}$'
                         THEN (r.context ->> 'parent_number')::integer END,
                    CASE WHEN jsonb_typeof(x.issue -> 'number') = 'number' THEN (x.issue ->> 'number')::integer END)
               AS parent_number
    FROM pg_temp.drain_rows r,
         jsonb_to_record(r.doc) AS x(id bigint, node_id text, event text, commit_id text, actor jsonb, assignee jsonb,
                                     created_at text, issue jsonb)
    WHERE r.forge = 1 AND r.doc IS NOT NULL AND NOT r.pending AND (only_staging_id IS NULL OR r.staging_id = only_staging_id);
    GET DIAGNOSTICS mapped = ROW_COUNT;
    RETURN mapped;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.map_issue_events_gitlab(only_staging_id bigint)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mapped bigint;
BEGIN
    INSERT INTO pg_temp.drain_events
        (staging_id, platform_id, platform_event_id, event_source, node_id, action, commit_id, actor, assignee, created_at,
         parent_number, parent_kind)
    SELECT r.staging_id, r.platform_id, x.id, src.event_source, 'gitlab:' || src.event_source || ':' || x.id,
           CASE src.event_source
               WHEN 'state_event' THEN x.state
               WHEN 'label_event' THEN CASE x.action WHEN 'add' THEN 'labeled' WHEN 'remove' THEN 'unlabeled' END
               WHEN 'milestone_event' THEN CASE x.action WHEN 'add' THEN 'milestoned' WHEN 'remove' THEN 'demilestoned' END
               ELSE aveloxis_ops.gitlab_note_action(x.body) END,
           NULL, coalesce(x."user", x.author), NULL, aveloxis_ops.forge_timestamp(x.created_at),
           coalesce(CASE WHEN (r.context ->> 'parent_number') ~ '^[0-9]{1,9}$' THEN (r.context ->> 'parent_number')::integer END,
                    x.noteable_iid),
           aveloxis_ops.gitlab_parent_kind(coalesce(r.context ->> 'parent_kind', x.noteable_type, x.resource_type))
    FROM pg_temp.drain_rows r,
         jsonb_to_record(r.doc) AS x(id bigint, "user" jsonb, author jsonb, created_at text, state text, action text,
                                     label jsonb, milestone jsonb, body text, system boolean, noteable_iid integer,
                                     noteable_type text, resource_type text),
         -- A note has a body (even one whose "system" flag did not fit); resource events never do.
         LATERAL (SELECT CASE WHEN x.system IS TRUE OR r.doc ? 'body' THEN 'note'
                              WHEN jsonb_typeof(x.label) = 'object' THEN 'label_event'
                              WHEN r.doc ? 'milestone' THEN 'milestone_event'
                              WHEN x.state IS NOT NULL THEN 'state_event' END AS event_source) src
    WHERE r.forge = 2 AND r.doc IS NOT NULL AND NOT r.pending AND (only_staging_id IS NULL OR r.staging_id = only_staging_id);
    GET DIAGNOSTICS mapped = ROW_COUNT;
    IF EXISTS (SELECT FROM pg_temp.drain_events WHERE event_source IS NULL) THEN
        RAISE EXCEPTION 'GitLab issue_event payload is none of: a resource state/label/milestone event, a system note'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Stage resource_*_events items and notes with "system": true (docs/staging-contract.md).';
    END IF;
    RETURN mapped;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.map_issues_github(only_staging_id bigint)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mapped bigint;
BEGIN
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
    WHERE r.forge = 1 AND r.doc IS NOT NULL AND NOT r.pending AND (only_staging_id IS NULL OR r.staging_id = only_staging_id);
    GET DIAGNOSTICS mapped = ROW_COUNT;
    RETURN mapped;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.map_issues_gitlab(only_staging_id bigint)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mapped bigint;
BEGIN
    INSERT INTO pg_temp.drain_issues
        (staging_id, platform_id, platform_issue_id, issue_number, node_id, issue_title, issue_body, issue_state,
         issue_url, html_url, reporter, closed_by, assignees, labels, is_pull_request, created_at, updated_at,
         closed_at, comment_count)
    SELECT r.staging_id, r.platform_id, x.id, x.iid, NULL, x.title, x.description,
           CASE x.state WHEN 'opened' THEN 'open' ELSE x.state END,
           x._links ->> 'self', x.web_url, x.author, x.closed_by,
           CASE WHEN jsonb_typeof(x.assignees) = 'array' THEN x.assignees
                WHEN jsonb_typeof(x.assignee) = 'object' THEN jsonb_build_array(x.assignee)
                ELSE '[]'::jsonb END,
           aveloxis_ops.gitlab_labels(x.labels), false,
           aveloxis_ops.forge_timestamp(x.created_at), aveloxis_ops.forge_timestamp(x.updated_at),
           aveloxis_ops.forge_timestamp(x.closed_at), x.user_notes_count
    FROM pg_temp.drain_rows r,
         jsonb_to_record(r.doc) AS x(id bigint, iid integer, title text, description text, state text,
                                     _links jsonb, web_url text, author jsonb, closed_by jsonb, assignee jsonb,
                                     assignees jsonb, labels jsonb, created_at text, updated_at text,
                                     closed_at text, user_notes_count integer)
    WHERE r.forge = 2 AND r.doc IS NOT NULL AND NOT r.pending AND (only_staging_id IS NULL OR r.staging_id = only_staging_id);
    GET DIAGNOSTICS mapped = ROW_COUNT;
    RETURN mapped;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.map_pull_requests_github(only_staging_id bigint)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mapped bigint;
BEGIN
    IF EXISTS (SELECT FROM pg_temp.drain_rows r
               WHERE r.forge = 1 AND r.doc IS NOT NULL AND NOT r.pending
                 AND (only_staging_id IS NULL OR r.staging_id = only_staging_id)
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
    WHERE r.forge = 1 AND r.doc IS NOT NULL AND NOT r.pending AND (only_staging_id IS NULL OR r.staging_id = only_staging_id);
    GET DIAGNOSTICS mapped = ROW_COUNT;
    RETURN mapped;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.map_pull_requests_gitlab(only_staging_id bigint)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mapped bigint;
BEGIN
    IF EXISTS (SELECT FROM pg_temp.drain_rows r
               WHERE r.forge = 2 AND r.doc IS NOT NULL AND NOT r.pending
                 AND (only_staging_id IS NULL OR r.staging_id = only_staging_id)
                 AND jsonb_typeof(r.doc -> 'merge_request') IS DISTINCT FROM 'object') THEN
        RAISE EXCEPTION 'GitLab pull_request envelope without a "merge_request" object'
            USING ERRCODE = 'not_null_violation',
                  HINT = 'Stage {"merge_request": <MR object>, "approvals": {...}, "commits": [...]} (docs/staging-contract.md).';
    END IF;
    INSERT INTO pg_temp.drain_prs
        (staging_id, platform_id, platform_pr_id, pr_number, node_id, pr_url, pr_html_url, pr_diff_url, pr_title,
         pr_body, pr_state, pr_locked, pr_draft, author, pr_author_association, created_at, updated_at, closed_at,
         merged_at, merge_commit_sha, pr_commit_count, pr_additions, pr_deletions, pr_changed_files, labels,
         assignees, requested, head, base, reviews, commits, files)
    SELECT r.staging_id, r.platform_id, x.id, x.iid, NULL, x.web_url, x.web_url, NULL, x.title, x.description,
           CASE x.state WHEN 'opened' THEN 'open' WHEN 'locked' THEN 'open'
                        WHEN 'merged' THEN 'merged' ELSE x.state END,
           x.discussion_locked, coalesce(x.draft, x.work_in_progress), x.author, NULL,
           aveloxis_ops.forge_timestamp(x.created_at), aveloxis_ops.forge_timestamp(x.updated_at),
           aveloxis_ops.forge_timestamp(x.closed_at), aveloxis_ops.forge_timestamp(x.merged_at),
           coalesce(x.merge_commit_sha, x.squash_commit_sha),
           CASE WHEN jsonb_typeof(r.doc -> 'commits') = 'array' THEN jsonb_array_length(r.doc -> 'commits') END,
           NULL, NULL, NULL,
           aveloxis_ops.gitlab_labels(x.labels),
           CASE WHEN jsonb_typeof(x.assignees) = 'array' THEN x.assignees
                WHEN jsonb_typeof(x.assignee) = 'object' THEN jsonb_build_array(x.assignee)
                ELSE '[]'::jsonb END,
           CASE WHEN jsonb_typeof(r.doc -> 'reviewers') = 'array'
                    THEN (SELECT coalesce(jsonb_agg(e -> 'user'), '[]') FROM jsonb_array_elements(r.doc -> 'reviewers') e
                          WHERE jsonb_typeof(e -> 'user') = 'object')
                WHEN jsonb_typeof(x.reviewers) = 'array' THEN x.reviewers END,
           jsonb_build_object('label', x.source_branch, 'ref', x.source_branch, 'sha', coalesce(x.diff_refs ->> 'head_sha', x.sha),
                              'user', x.author,
                              'repo', CASE WHEN x.source_project_id IS NOT NULL
                                           THEN jsonb_build_object('id', x.source_project_id) END),
           jsonb_build_object('label', x.target_branch, 'ref', x.target_branch, 'sha', x.diff_refs ->> 'base_sha',
                              'repo', CASE WHEN x.target_project_id IS NOT NULL
                                           THEN jsonb_build_object('id', x.target_project_id) END),
           CASE WHEN jsonb_typeof(r.doc -> 'approvals') = 'object' OR jsonb_typeof(r.doc -> 'reviewers') = 'array'
                THEN aveloxis_ops.gitlab_reviews(x.id, r.doc -> 'approvals', r.doc -> 'reviewers') END,
           CASE WHEN jsonb_typeof(r.doc -> 'commits') = 'array' THEN
               (SELECT coalesce(jsonb_agg(jsonb_build_object(
                           'sha', c ->> 'id',
                           'commit', jsonb_build_object(
                               'message', c ->> 'message',
                               'author', jsonb_build_object('name', c ->> 'author_name', 'email', c ->> 'author_email',
                                                            'date', c ->> 'authored_date')))), '[]')
                FROM jsonb_array_elements(r.doc -> 'commits') c WHERE jsonb_typeof(c) = 'object') END,
           NULL
    FROM pg_temp.drain_rows r,
         jsonb_to_record(r.doc -> 'merge_request') AS x(
             id bigint, iid integer, web_url text, title text, description text, state text, discussion_locked boolean,
             draft boolean, work_in_progress boolean, author jsonb, created_at text, updated_at text, closed_at text,
             merged_at text, merge_commit_sha text, squash_commit_sha text, labels jsonb, assignee jsonb,
             assignees jsonb, reviewers jsonb, source_branch text, target_branch text, sha text, diff_refs jsonb,
             source_project_id bigint, target_project_id bigint)
    WHERE r.forge = 2 AND r.doc IS NOT NULL AND NOT r.pending AND (only_staging_id IS NULL OR r.staging_id = only_staging_id);
    GET DIAGNOSTICS mapped = ROW_COUNT;
    RETURN mapped;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.map_releases_github(only_staging_id bigint)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mapped bigint;
BEGIN
    INSERT INTO pg_temp.drain_releases
        (staging_id, platform_id, release_id, name, body, author, tag_name, html_url, draft, prerelease, created_at,
         published_at, updated_at)
    SELECT r.staging_id, r.platform_id, x.id::text, x.name, x.body, x.author,
           x.tag_name, x.html_url, x.draft, x.prerelease,
           aveloxis_ops.forge_timestamp(x.created_at),
           aveloxis_ops.forge_timestamp(x.published_at),
           aveloxis_ops.forge_timestamp(x.updated_at)
    FROM pg_temp.drain_rows r,
         jsonb_to_record(r.doc) AS x(id bigint, name text, body text, author jsonb, tag_name text, html_url text,
                                     draft boolean, prerelease boolean, created_at text, published_at text,
                                     updated_at text)
    WHERE r.forge = 1 AND r.doc IS NOT NULL AND NOT r.pending AND (only_staging_id IS NULL OR r.staging_id = only_staging_id);
    GET DIAGNOSTICS mapped = ROW_COUNT;
    RETURN mapped;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.map_releases_gitlab(only_staging_id bigint)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mapped bigint;
BEGIN
    INSERT INTO pg_temp.drain_releases
        (staging_id, platform_id, release_id, name, body, author, tag_name, html_url, draft, prerelease, created_at,
         published_at, updated_at)
    SELECT r.staging_id, r.platform_id, nullif(x.tag_name, ''), x.name, x.description, x.author, nullif(x.tag_name, ''),
           x._links ->> 'self', false, false, aveloxis_ops.forge_timestamp(x.created_at),
           aveloxis_ops.forge_timestamp(x.released_at), NULL
    FROM pg_temp.drain_rows r,
         jsonb_to_record(r.doc) AS x(tag_name text, name text, description text, author jsonb, _links jsonb,
                                     created_at text, released_at text)
    WHERE r.forge = 2 AND r.doc IS NOT NULL AND NOT r.pending AND (only_staging_id IS NULL OR r.staging_id = only_staging_id);
    GET DIAGNOSTICS mapped = ROW_COUNT;
    RETURN mapped;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.map_repo_info_github(repo bigint, only_staging_id bigint)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mapped bigint;
BEGIN
    INSERT INTO pg_temp.drain_repo_info
    SELECT r.staging_id, repo, x.id, x.node_id, x.full_name, x.description, x.homepage, x.default_branch, x.language,
           coalesce(x.license ->> 'spdx_id', x.license ->> 'name'), x.fork, x.archived, x.visibility,
           coalesce(x.has_issues, false)::text, x.has_wiki::text, x.has_pages::text, x.forks_count,
           coalesce(x.subscribers_count, x.watchers_count), x.stargazers_count, x.open_issues_count, x.size,
           aveloxis_ops.forge_timestamp(x.created_at), aveloxis_ops.forge_timestamp(x.updated_at),
           aveloxis_ops.forge_timestamp(x.pushed_at)
    FROM pg_temp.drain_rows r,
         jsonb_to_record(r.doc) AS x(id bigint, node_id text, full_name text, description text, homepage text,
                                     default_branch text, language text, license jsonb, fork boolean,
                                     archived boolean, visibility text, has_issues boolean, has_wiki boolean,
                                     has_pages boolean, forks_count integer, subscribers_count integer,
                                     watchers_count integer, stargazers_count integer, open_issues_count integer,
                                     size integer, created_at text, updated_at text, pushed_at text)
    WHERE r.forge = 1 AND r.doc IS NOT NULL AND NOT r.pending AND (only_staging_id IS NULL OR r.staging_id = only_staging_id);
    GET DIAGNOSTICS mapped = ROW_COUNT;
    RETURN mapped;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.map_repo_info_gitlab(repo bigint, only_staging_id bigint)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mapped bigint;
BEGIN
    INSERT INTO pg_temp.drain_repo_info
    SELECT r.staging_id, repo, x.id, NULL, x.path_with_namespace, x.description, x.web_url, x.default_branch, NULL,
           coalesce(nullif(x.license ->> 'nickname', ''), x.license ->> 'name'),
           coalesce(jsonb_typeof(x.forked_from_project) = 'object', false),
           x.archived, x.visibility,
           (coalesce(x.issues_access_level, CASE WHEN x.issues_enabled IS FALSE THEN 'disabled' END, 'enabled')
                <> 'disabled')::text,
           (coalesce(x.wiki_access_level, CASE WHEN x.wiki_enabled IS FALSE THEN 'disabled' END, 'enabled')
                <> 'disabled')::text,
           CASE WHEN x.pages_access_level IS NOT NULL THEN (x.pages_access_level <> 'disabled')::text END,
           x.forks_count, NULL, x.star_count, x.open_issues_count,
           CASE WHEN (x.statistics ->> 'repository_size') ~ '^[0-9]{1,18}$'
                THEN least((x.statistics ->> 'repository_size')::bigint / 1024, 2147483647)::integer END,
           aveloxis_ops.forge_timestamp(x.created_at), aveloxis_ops.forge_timestamp(x.last_activity_at),
           aveloxis_ops.forge_timestamp(x.last_activity_at)
    FROM pg_temp.drain_rows r,
         jsonb_to_record(r.doc) AS x(id bigint, path_with_namespace text, description text, web_url text,
                                     default_branch text, license jsonb, forked_from_project jsonb, archived boolean,
                                     visibility text, issues_access_level text, issues_enabled boolean,
                                     wiki_access_level text, wiki_enabled boolean, pages_access_level text,
                                     forks_count integer, star_count integer, open_issues_count integer,
                                     statistics jsonb, created_at text, last_activity_at text)
    WHERE r.forge = 2 AND r.doc IS NOT NULL AND NOT r.pending AND (only_staging_id IS NULL OR r.staging_id = only_staging_id);
    GET DIAGNOSTICS mapped = ROW_COUNT;
    RETURN mapped;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.map_review_comments_github(only_staging_id bigint)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mapped bigint;
BEGIN
    INSERT INTO pg_temp.drain_review_comments
        (staging_id, platform_id, id, node_id, body, html_url, pull_request_url, "user", pull_request_review_id,
         in_reply_to_id, diff_hunk, path, "position", original_position, line, original_line, side, commit_id,
         original_commit_id, author_association, created_at, updated_at, parent_number)
    SELECT r.staging_id, r.platform_id, x.*,
           coalesce(CASE WHEN (r.context ->> 'parent_number') ~ '^[0-9]{1,9}$'
                         THEN (r.context ->> 'parent_number')::integer END,
                    substring(x.pull_request_url FROM '/pulls/([0-9]{1,9})$')::integer,
                    -- Older API versions link the pull request only under _links.
                    substring(r.doc #>> '{_links,pull_request,href}' FROM '/pulls/([0-9]{1,9})$')::integer)
               AS parent_number
    FROM pg_temp.drain_rows r,
         jsonb_to_record(r.doc) AS x(id bigint, node_id text, body text, html_url text, pull_request_url text,
                                     "user" jsonb, pull_request_review_id bigint, in_reply_to_id bigint,
                                     diff_hunk text, path text, "position" integer, original_position integer,
                                     line integer, original_line integer, side text, commit_id text,
                                     original_commit_id text, author_association text, created_at text,
                                     updated_at text)
    WHERE r.forge = 1 AND r.doc IS NOT NULL AND NOT r.pending AND (only_staging_id IS NULL OR r.staging_id = only_staging_id);
    GET DIAGNOSTICS mapped = ROW_COUNT;
    RETURN mapped;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.map_review_comments_gitlab(only_staging_id bigint)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mapped bigint;
BEGIN
    INSERT INTO pg_temp.drain_review_comments
        (staging_id, platform_id, id, node_id, body, html_url, pull_request_url, "user", pull_request_review_id,
         in_reply_to_id, diff_hunk, path, "position", original_position, line, original_line, side, commit_id,
         original_commit_id, author_association, created_at, updated_at, parent_number)
    SELECT r.staging_id, r.platform_id, x.id, NULL, x.body,
           CASE WHEN r.context ->> 'parent_web_url' IS NOT NULL THEN (r.context ->> 'parent_web_url') || '#note_' || x.id END,
           NULL, x.author, NULL,
           CASE WHEN (r.context ->> 'in_reply_to_id') ~ '^[0-9]{1,18}$' THEN (r.context ->> 'in_reply_to_id')::bigint END,
           NULL,
           coalesce(x."position" ->> 'new_path', x."position" ->> 'old_path'),
           NULL, NULL,
           CASE WHEN jsonb_typeof(x."position" -> 'new_line') = 'number' THEN (x."position" ->> 'new_line')::integer END,
           CASE WHEN jsonb_typeof(x."position" -> 'old_line') = 'number' THEN (x."position" ->> 'old_line')::integer END,
           CASE WHEN jsonb_typeof(x."position" -> 'new_line') = 'number' THEN 'RIGHT'
                WHEN jsonb_typeof(x."position" -> 'old_line') = 'number' THEN 'LEFT' END,
           x."position" ->> 'head_sha', x."position" ->> 'base_sha', NULL, x.created_at, x.updated_at,
           coalesce(CASE WHEN (r.context ->> 'parent_number') ~ '^[0-9]{1,9}$' THEN (r.context ->> 'parent_number')::integer END,
                    x.noteable_iid)
    FROM pg_temp.drain_rows r,
         jsonb_to_record(r.doc) AS x(id bigint, body text, author jsonb, "position" jsonb, created_at text,
                                     updated_at text, noteable_iid integer)
    WHERE r.forge = 2 AND r.doc IS NOT NULL AND NOT r.pending AND (only_staging_id IS NULL OR r.staging_id = only_staging_id);
    GET DIAGNOSTICS mapped = ROW_COUNT;
    RETURN mapped;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.noreply_platform(address text, kind smallint)
RETURNS smallint
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT p.platform_id FROM aveloxis_data.platforms p
    WHERE p.platform_kind = kind
      AND p.platform_host = substring(lower(address) FROM '@users\.noreply\.([a-z0-9.-]+)$')
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.null_unfit_fields(run bigint, ent text)
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
        INSERT INTO aveloxis_ops.drain_run_nulled AS t (run_id, entity, field, nulled)
        VALUES (run, ent, array_to_string(bad.path, '.'), bad.n)
        ON CONFLICT (run_id, entity, field) DO UPDATE SET nulled = t.nulled + EXCLUDED.nulled;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.reject(staging_ids bigint[], error text, sqlstate text)
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
                last_rejected_at = EXCLUDED.last_rejected_at, payload = EXCLUDED.payload, context = EXCLUDED.context
        RETURNING 1
    )
    SELECT count(*) FROM ins
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
            cntrb_login = CASE WHEN c.cntrb_login IS NULL OR c.cntrb_login = c.gl_username THEN d.login ELSE c.cntrb_login END,
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

-- Self-managed GitLab hosts declared before 0.9.0 get their identity platform (no GitLab
-- account was stored before: GitLab payloads waited). GitHub Enterprise hosts whose
-- accounts were stored as platform 1 keep it (ensure_identity_platform says so).
SELECT aveloxis_ops.ensure_identity_platform(f.host, f.platform_id)
FROM aveloxis_ops.forge_hosts f
WHERE f.host NOT IN ('github.com', 'gitlab.com')
ORDER BY f.host;

-- The grants: aveloxis.forge_hosts() is the agent's.
-- Who may call what (DESIGN §5). Tables are not an API: roles get functions, and
-- analysts get read access to aveloxis_data.
--
-- apply_grants() is re-run at the end of every upgrade script, so objects added by
-- an upgrade get the same treatment as a fresh install. Functions that write are
-- SECURITY DEFINER with a pinned search_path; nobody but these roles may execute them.
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
