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
                                         set_by = EXCLUDED.set_by, set_at = EXCLUDED.set_at;
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

