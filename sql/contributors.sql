-- Contributors and their forge identities (identity contract: docs/identity.md,
-- rules R1-R13 of the reference). cntrb_id never changes once written (R2).

CREATE TABLE aveloxis_data.contributors (
    cntrb_id                       uuid PRIMARY KEY,
    cntrb_login                    text,
    cntrb_email                    text,
    cntrb_full_name                text,
    cntrb_company                  text,
    cntrb_location                 text,
    cntrb_canonical                text,
    cntrb_created_at               timestamptz,
    -- 1 = the loser of a logical merge (R3): kept for FK history, hidden from lookups.
    cntrb_deleted                  smallint NOT NULL DEFAULT 0 CHECK (cntrb_deleted IN (0, 1)),
    cntrb_last_enriched_at         timestamptz,
    cntrb_last_search_attempted_at timestamptz,
    gh_user_id                     bigint,
    gh_login                       text,
    gh_url                         text,
    gh_html_url                    text,
    gh_node_id                     text,
    gh_avatar_url                  text,
    gh_gravatar_id                 text,
    gh_type                        text,
    gh_site_admin                  text,
    gh_state                       text,
    gl_id                          bigint,
    gl_username                    text,
    gl_web_url                     text,
    gl_avatar_url                  text,
    gl_state                       text,
    gl_full_name                   text,
    tool_source                    text,
    tool_version                   text,
    data_source                    text,
    data_collection_date           timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE aveloxis_data.contributors IS 'One row per person or bot; cntrb_id = aveloxis.platform_uuid(platform, user id) when known';
-- Not unique: GitHub's "alice" and GitLab's "alice" are different people. Login
-- uniqueness is per platform, on contributor_identities.
CREATE INDEX contributors_login_idx ON aveloxis_data.contributors (cntrb_login);
CREATE INDEX contributors_gh_user_id_idx ON aveloxis_data.contributors (gh_user_id) WHERE gh_user_id IS NOT NULL;
CREATE INDEX contributors_gl_id_idx ON aveloxis_data.contributors (gl_id) WHERE gl_id IS NOT NULL;
-- Contributors known by login only (no account id yet), found by login when the account shows up.
CREATE INDEX contributors_gh_login_only_idx ON aveloxis_data.contributors (lower(gh_login)) WHERE gh_user_id IS NULL;
CREATE INDEX contributors_gl_login_only_idx ON aveloxis_data.contributors (lower(gl_username)) WHERE gl_id IS NULL;

CREATE TABLE aveloxis_data.contributor_identities (
    platform_id      smallint NOT NULL REFERENCES aveloxis_data.platforms,
    platform_user_id bigint NOT NULL CHECK (platform_user_id > 0),
    cntrb_id         uuid NOT NULL REFERENCES aveloxis_data.contributors,
    login            text,
    name             text,
    email            text,
    avatar_url       text,
    profile_url      text,
    user_type        text,
    node_id          text,
    first_seen_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (platform_id, platform_user_id)
);
COMMENT ON TABLE aveloxis_data.contributor_identities IS 'One row per forge account (R4): the truth the gh_*/gl_* columns copy';
CREATE INDEX contributor_identities_cntrb_idx ON aveloxis_data.contributor_identities (cntrb_id);
-- A login names one account per platform at a time (forges ignore letter case). When
-- an account takes a login another account held, the drain frees it first (R3).
CREATE UNIQUE INDEX contributor_identities_login_key
    ON aveloxis_data.contributor_identities (platform_id, lower(login)) WHERE login IS NOT NULL;

CREATE TABLE aveloxis_data.contributor_login_history (
    platform_id      smallint NOT NULL,
    platform_user_id bigint NOT NULL,
    login            text NOT NULL,
    cntrb_id         uuid NOT NULL REFERENCES aveloxis_data.contributors,
    first_seen_at    timestamptz NOT NULL DEFAULT now(),
    -- When the account was seen under another login, or the login seen on another account.
    replaced_at      timestamptz,
    PRIMARY KEY (platform_id, platform_user_id, login),
    FOREIGN KEY (platform_id, platform_user_id) REFERENCES aveloxis_data.contributor_identities
);
COMMENT ON TABLE aveloxis_data.contributor_login_history IS 'Every login an account has had; renames append here';
-- Merges move a row's history by cntrb_id (sql/merges.sql).
CREATE INDEX contributor_login_history_cntrb_idx ON aveloxis_data.contributor_login_history (cntrb_id);

CREATE TABLE aveloxis_data.contributors_aliases (
    alias_email          text PRIMARY KEY,
    cntrb_id             uuid NOT NULL REFERENCES aveloxis_data.contributors,
    canonical_email      text,
    tool_source          text,
    tool_version         text,
    data_source          text,
    data_collection_date timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE aveloxis_data.contributors_aliases IS 'Commit-author emails of a contributor (R5)';
CREATE INDEX contributors_aliases_cntrb_idx ON aveloxis_data.contributors_aliases (cntrb_id);

SELECT pg_catalog.pg_extension_config_dump('aveloxis_data.contributors', '');
SELECT pg_catalog.pg_extension_config_dump('aveloxis_data.contributor_identities', '');
SELECT pg_catalog.pg_extension_config_dump('aveloxis_data.contributor_login_history', '');
SELECT pg_catalog.pg_extension_config_dump('aveloxis_data.contributors_aliases', '');

-- Email lookups (resolve_email): contributors' own and canonical emails, and aliases.
CREATE INDEX contributors_email_idx ON aveloxis_data.contributors (lower(cntrb_email)) WHERE cntrb_email IS NOT NULL;
CREATE INDEX contributors_canonical_idx ON aveloxis_data.contributors (lower(cntrb_canonical))
    WHERE cntrb_canonical IS NOT NULL;
CREATE INDEX contributors_aliases_lower_idx ON aveloxis_data.contributors_aliases (lower(alias_email));

-- The identity platform whose noreply domain (`users.noreply.<host>`) an address is at,
-- among the platforms of that kind (1 GitHub, 2 GitLab); NULL for any other address.
CREATE FUNCTION aveloxis_ops.noreply_platform(address text, kind smallint)
RETURNS smallint
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT p.platform_id FROM aveloxis_data.platforms p
    WHERE p.platform_kind = kind
      AND p.platform_host = substring(lower(address) FROM '@users\.noreply\.([a-z0-9.-]+)$')
$$;

-- The free steps of the shared email chain (reference 003, "Shared email->identity
-- resolution"), in one place: commit-author resolution and search-resolve both call
-- aveloxis.email_chain, and no agent parses addresses itself.
--
-- The account a noreply address names: GitHub's [id+]login@users.noreply.github.com;
-- GitLab's id-login@users.noreply.<host>, the host being gitlab.com or a declared
-- self-managed one (its identity platform). No row for any other address.
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

-- Why an address is never looked up (bots, services, no address at all), or NULL.
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

-- Who an email belongs to, as far as the database knows (R12's database step; later
-- phases call it before spending API quota). At most one row:
--   source 'noreply_id' / 'noreply_login': a GitHub or GitLab noreply address naming an
--   account (cntrb_id NULL when that account is not known yet, login still given);
--   'email': a contributor's own or canonical email; 'alias': a commit-author alias.
CREATE FUNCTION aveloxis.resolve_email(email text)
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

-- The shared email chain's free steps for many emails, one row per distinct address
-- given (lower-cased, trimmed), in order: 'noreply' (the account the address names;
-- cntrb_id when the database knows it), 'skipped' (a bot, service or malformed
-- address, with the reason: never looked up), 'database' (a contributor's email, canonical
-- email or alias), else 'unknown': only these are worth the API tail (user search, then
-- commit search). platform_kind 1 GitHub, 2 GitLab.
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

-- resolve_email for many emails in one call, each with its answer (NULLs when the
-- database knows nothing of it): the agent asks once per round of commit authors
-- instead of once per email (a round trip each, 2.1 s of 700 emails).
CREATE FUNCTION aveloxis.resolve_emails(emails text[])
RETURNS TABLE (email text, cntrb_id uuid, login text, source text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    SELECT e.address, r.cntrb_id, r.login, r.source
    FROM pg_catalog.unnest(emails) WITH ORDINALITY AS e(address, n)
    LEFT JOIN LATERAL aveloxis.resolve_email(e.address) r ON true
    WHERE e.address IS NOT NULL
    ORDER BY e.n
$$;

-- Records that a contributor has an account on a platform (R11: search-resolve and
-- commit resolution call this). Adds the identity and fills gh_*/gl_* columns that
-- are empty; never changes cntrb_id or cntrb_login.
CREATE FUNCTION aveloxis.link_contributor(cntrb_id uuid, platform smallint, user_id bigint, login text)
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
