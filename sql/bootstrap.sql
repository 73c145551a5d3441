-- Schemas, roles and the platform dimension: the ground every other file stands on.
--
-- The install script creates its schemas itself (the control file says
-- schema = pg_catalog, as pg_cron does) so that they are extension members and
-- DROP EXTENSION removes them. Roles are cluster-wide and survive DROP EXTENSION
-- (docs/operations.md); they are created only when absent.

CREATE SCHEMA aveloxis;
COMMENT ON SCHEMA aveloxis IS 'pg_aveloxis SQL API: the functions agents, analysts and DBAs call';
CREATE SCHEMA aveloxis_ops;
COMMENT ON SCHEMA aveloxis_ops IS 'pg_aveloxis operations: configuration, queue, staging; written only through the aveloxis API';
CREATE SCHEMA aveloxis_data;
COMMENT ON SCHEMA aveloxis_data IS 'pg_aveloxis collected data (Augur/Aveloxis table and column names); read-only for analysts';

-- Creates a NOLOGIN role unless it exists. Roles are cluster-wide, so CREATE EXTENSION
-- running at once in two databases of a new cluster races to create them: the loser
-- waits on pg_authid's unique index and then fails, which here means success.
CREATE FUNCTION aveloxis_ops.ensure_role(role_name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = role_name) THEN
        EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', role_name);
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;
SELECT aveloxis_ops.ensure_role(role_name)
FROM unnest(ARRAY['aveloxis_agent', 'aveloxis_analyst', 'aveloxis_admin']) AS role_name;

-- Identity platforms: whose account ids these are. 1 is github.com, 2 gitlab.com (byte 0
-- of Augur's GithubUUID, kept), 3 plain git. Each forge host declared later gets its own
-- row (16 and up, aveloxis.add_forge_host): user 42 of a self-managed GitLab is not user 42
-- of gitlab.com (docs/identity.md).
CREATE TABLE aveloxis_data.platforms (
    platform_id   smallint PRIMARY KEY CHECK (platform_id BETWEEN 1 AND 255),
    platform_name text NOT NULL UNIQUE,
    -- Which API its accounts come from: 1 GitHub, 2 GitLab, 3 none (plain git).
    platform_kind smallint NOT NULL CHECK (platform_kind IN (1, 2, 3)),
    -- The forge host whose accounts these are (NULL for plain git).
    platform_host text UNIQUE
);
COMMENT ON TABLE aveloxis_data.platforms IS 'Identity platforms (a forge host each); platform_id is byte 0 of every deterministic contributor id';
INSERT INTO aveloxis_data.platforms (platform_id, platform_name, platform_kind, platform_host) VALUES
    (1, 'GitHub', 1, 'github.com'),
    (2, 'GitLab', 2, 'gitlab.com'),
    (3, 'Git', 3, NULL);
-- Rows a DBA adds (a future forge) survive pg_dump; the seeds come back with the extension.
SELECT pg_catalog.pg_extension_config_dump('aveloxis_data.platforms', 'WHERE platform_id > 3');
