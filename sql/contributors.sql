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
