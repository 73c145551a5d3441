-- Libyear from a fleet-wide package cache (docs/dependencies.md, "Libyear"). A daily
-- `packages` job per repository asks which of its dependencies' packages the cache lacks
-- or holds past their TTL (aveloxis.packages_due), and the agent fetches only those
-- (deps.dev for its six systems, the native registries for others), staging each
-- package's versions and dates field-picked (`package_versions`). complete() upserts the
-- cache, shared by every repository, and recomputes the repository's libyear in SQL
-- (aveloxis.refresh_libyear: no network, one timestamp per scan). A package is fetched
-- once per TTL for the whole fleet, never per repository.

INSERT INTO aveloxis_ops.setting_defaults (name, default_value, kind, description) VALUES
    ('packages.cadence', '1 day', 'interval',
     'How often a repository''s libyear is recomputed (and its stale packages fetched)'),
    ('packages.max_leased', '0', 'integer', 'Most packages jobs leased at once (0: no limit)'),
    ('packages.backoff_base', '120 seconds', 'interval', 'Backoff after transient failure n: base x n^2'),
    ('packages.sideline_after', '10', 'integer', 'Consecutive transient failures that sideline a job for one cadence'),
    ('packages.ttl', '7 days', 'interval', 'How long a package''s cached versions are used before it is fetched again'),
    ('packages.miss_ttl', '1 day', 'interval',
     'How long a package the registry did not have (or did not answer for) waits before it is asked again'),
    ('packages.batch', '500', 'integer', 'Most packages one packages job fetches (the rest: the next run, at once)');

-- One row per package of any repository: what its registry said and when.
CREATE TABLE aveloxis_data.packages (
    ecosystem       text NOT NULL,
    -- aveloxis_ops.package_key(ecosystem, name): as the ecosystem compares names.
    name            text NOT NULL,
    -- The registry's default (latest stable) version, when it names one.
    default_version text,
    licence         text,
    -- found, not_found (the registry has no such package), unsupported (no source for the
    -- ecosystem), error (the registry refused or failed).
    status          text NOT NULL CHECK (status IN ('found', 'not_found', 'unsupported', 'error')),
    source          text,
    http_status     integer,
    detail          text,
    fetched_at      timestamptz NOT NULL,
    PRIMARY KEY (ecosystem, name)
);
COMMENT ON TABLE aveloxis_data.packages IS 'Fleet-wide package cache: one row per package, fetched once per TTL';

-- One row per version of a cached package: when it was published, whether it is a
-- pre-release or yanked (both never "latest"), its licence where the source says.
CREATE TABLE aveloxis_data.package_versions (
    ecosystem    text NOT NULL,
    name         text NOT NULL,
    version      text NOT NULL,
    -- NULL when unknown (NuGet's unlisted placeholder date, 1900-01-01, included).
    published_at timestamptz,
    prerelease   boolean NOT NULL,
    yanked       boolean NOT NULL DEFAULT false,
    licence      text,
    PRIMARY KEY (ecosystem, name, version),
    FOREIGN KEY (ecosystem, name) REFERENCES aveloxis_data.packages ON DELETE CASCADE
);
COMMENT ON TABLE aveloxis_data.package_versions IS 'Fleet-wide package cache: versions with their publish dates';

SELECT pg_catalog.pg_extension_config_dump('aveloxis_data.packages', '');
SELECT pg_catalog.pg_extension_config_dump('aveloxis_data.package_versions', '');

-- The libyear table's typed companions of Augur's text columns, and the scan's history.
ALTER TABLE aveloxis_data.repo_deps_libyear
    ADD COLUMN ecosystem text,
    ADD COLUMN resolution text,
    ADD COLUMN license text,
    ADD COLUMN current_release_at timestamptz,
    ADD COLUMN latest_release_at timestamptz,
    -- Days from the version in use to the latest release (never negative); NULL unknown.
    ADD COLUMN libdays double precision;
CREATE TABLE aveloxis_data.repo_deps_libyear_history (LIKE aveloxis_data.repo_deps_libyear INCLUDING DEFAULTS);
ALTER TABLE aveloxis_data.repo_deps_libyear_history ADD PRIMARY KEY (repo_id, repo_deps_libyear_id);
ALTER TABLE aveloxis_data.repo_deps_libyear_history
    ADD FOREIGN KEY (repo_id) REFERENCES aveloxis_data.repos ON DELETE CASCADE;
COMMENT ON TABLE aveloxis_data.repo_deps_libyear_history IS 'Earlier libyear scans, moved here by each new one';
CREATE INDEX repo_deps_libyear_history_scan_idx
    ON aveloxis_data.repo_deps_libyear_history (repo_id, data_collection_date);
SELECT pg_catalog.pg_extension_config_dump('aveloxis_data.repo_deps_libyear_history', '');

-- The packages of a repository that the cache lacks or holds past their TTL (packages.ttl;
-- packages.miss_ttl for what was not found or failed), as of `at`. What packages_due hands
-- out and what work_left looks for.
CREATE FUNCTION aveloxis_ops.stale_packages(repo bigint, at timestamptz)
RETURNS TABLE (ecosystem text, name text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT DISTINCT d.ecosystem, d.package
    FROM aveloxis_data.repo_dependency_decls d
    LEFT JOIN aveloxis_data.packages p ON p.ecosystem = d.ecosystem AND p.name = d.package
    WHERE d.repo_id = repo AND d.resolution <> 'non-registry'
      AND (p.fetched_at IS NULL
           OR p.fetched_at < at - aveloxis_ops.setting(CASE WHEN p.status = 'found' THEN 'packages.ttl'
                                                            ELSE 'packages.miss_ttl' END)::interval)
$$;

-- The stale packages of the lease's repository (aveloxis_ops.stale_packages), at most
-- packages.batch, each with the versions the repository uses whose licence the cache does
-- not hold yet (a release's licence does not change: asked once). For the agent holding
-- the repository's packages lease.
CREATE FUNCTION aveloxis.packages_due(lease_token uuid)
RETURNS TABLE (ecosystem text, name text, versions text[])
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    repo bigint := aveloxis_ops.lease_repo(lease_token, 'packages');
BEGIN
    RETURN QUERY
    SELECT s.ecosystem, s.name,
           array_agg(DISTINCT d.version ORDER BY d.version)
               FILTER (WHERE d.version IS NOT NULL
                         AND NOT EXISTS (SELECT FROM aveloxis_data.package_versions v
                                         WHERE v.ecosystem = d.ecosystem AND v.name = d.package
                                           AND v.version = d.version AND v.licence IS NOT NULL))
    FROM aveloxis_ops.stale_packages(repo, aveloxis_ops.clock()) s
    JOIN aveloxis_data.repo_dependency_decls d
      ON d.repo_id = repo AND d.ecosystem = s.ecosystem AND d.package = s.name AND d.resolution <> 'non-registry'
    GROUP BY s.ecosystem, s.name
    ORDER BY s.ecosystem, s.name
    LIMIT aveloxis_ops.setting('packages.batch')::integer;
END
$$;

-- Applies the packages a run staged (called by complete for packages leases): the
-- fleet-wide cache upserted, then the repository's libyear recomputed. A package entry
-- without ecosystem, name or a known status is refused with the lease kept.
CREATE FUNCTION aveloxis_ops.packages_apply(repo bigint, run bigint, outcome jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- Set-returning functions' default row estimates make plans look costly enough for JIT,
-- whose compilation costs more than these statements (0.5 s a call measured).
SET jit = off
AS $$
DECLARE
    observed timestamptz := aveloxis_ops.clock();
    bad      text;
BEGIN
    PERFORM aveloxis_ops.supersede_staged(repo, run, 'packages', observed);
    IF to_regclass('pg_temp.aveloxis_packages') IS NULL THEN
        CREATE TEMP TABLE pg_temp.aveloxis_packages (doc jsonb) ON COMMIT DROP;
    END IF;
    IF (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = 'pg_temp.aveloxis_packages'::regclass)
       <> (SELECT p.proowner FROM pg_catalog.pg_proc p
           WHERE p.oid = 'aveloxis_ops.packages_apply(bigint, bigint, jsonb)'::regprocedure) THEN
        RAISE EXCEPTION 'pg_temp.aveloxis_packages belongs to another role' USING ERRCODE = 'insufficient_privilege';
    END IF;
    TRUNCATE pg_temp.aveloxis_packages;
    INSERT INTO pg_temp.aveloxis_packages
    SELECT aveloxis_ops.sanitized_jsonb(s.payload)
    FROM aveloxis_ops.staging s
    WHERE s.repo_id = repo AND s.job_run_id = run AND s.drained_at IS NULL AND s.entity = 'package_versions'
    ORDER BY s.staging_id;
    SELECT format('%s/%s (status %s)', d.doc ->> 'ecosystem', d.doc ->> 'name', d.doc ->> 'status') INTO bad
    FROM pg_temp.aveloxis_packages d
    WHERE coalesce(d.doc ->> 'ecosystem', '') = '' OR coalesce(d.doc ->> 'name', '') = ''
       OR coalesce(d.doc ->> 'status', '') NOT IN ('found', 'not_found', 'unsupported', 'error')
    LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'a package_versions entry needs ecosystem, name and a status of found, not_found, unsupported or error: %', bad
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- The last answer per package wins within a run.
    INSERT INTO aveloxis_data.packages AS p (ecosystem, name, default_version, licence, status, source, http_status,
                                             detail, fetched_at)
    SELECT DISTINCT ON (1, 2) d.doc ->> 'ecosystem', aveloxis_ops.package_key(d.doc ->> 'ecosystem', d.doc ->> 'name'),
           nullif(d.doc ->> 'default_version', ''), nullif(d.doc ->> 'licence', ''), d.doc ->> 'status',
           d.doc ->> 'source', (d.doc ->> 'http_status')::integer, left(d.doc ->> 'detail', 500), observed
    FROM pg_temp.aveloxis_packages d
    ORDER BY 1, 2
    ON CONFLICT (ecosystem, name) DO UPDATE SET
        -- A failed or unsupported fetch keeps what an earlier one found.
        default_version = CASE WHEN excluded.status = 'found' THEN excluded.default_version ELSE p.default_version END,
        licence = CASE WHEN excluded.status = 'found' THEN coalesce(excluded.licence, p.licence) ELSE p.licence END,
        status = CASE WHEN excluded.status IN ('error', 'unsupported') AND p.status = 'found' THEN p.status
                      ELSE excluded.status END,
        source = excluded.source, http_status = excluded.http_status, detail = excluded.detail,
        fetched_at = excluded.fetched_at;

    INSERT INTO aveloxis_data.package_versions AS v (ecosystem, name, version, published_at, prerelease, yanked, licence)
    SELECT DISTINCT ON (1, 2, 3) d.doc ->> 'ecosystem', aveloxis_ops.package_key(d.doc ->> 'ecosystem', d.doc ->> 'name'),
           x.version,
           -- Placeholder dates (NuGet's unlisted 1900-01-01) are no publication dates.
           CASE WHEN x.published_at >= '1990-01-01' THEN x.published_at END,
           coalesce(x.prerelease, false) OR aveloxis_ops.is_prerelease(d.doc ->> 'ecosystem', x.version),
           coalesce(x.yanked, false), nullif(x.licence, '')
    FROM pg_temp.aveloxis_packages d,
         jsonb_to_recordset(coalesce(d.doc -> 'versions', '[]')) AS x(version text, published_at timestamptz,
                                                                      prerelease boolean, yanked boolean, licence text)
    WHERE d.doc ->> 'status' = 'found' AND coalesce(x.version, '') <> ''
    ORDER BY 1, 2, 3
    ON CONFLICT (ecosystem, name, version) DO UPDATE SET
        published_at = coalesce(excluded.published_at, v.published_at),
        prerelease = excluded.prerelease, yanked = excluded.yanked,
        licence = coalesce(excluded.licence, v.licence);

    UPDATE aveloxis_ops.staging s SET drained_at = observed
    WHERE s.repo_id = repo AND s.job_run_id = run AND s.drained_at IS NULL AND s.entity = 'package_versions';
    PERFORM aveloxis.refresh_libyear(repo);
    -- An SBOM is kept each time the dependency set changed (sql/sbom.sql).
    PERFORM aveloxis_ops.store_sbom_if_changed(repo);
END
$$;

-- Recomputes a repository's libyear from the cache, in SQL, with no network: for each
-- direct dependency from a registry, the version in use (locked or exact) against the
-- latest release, libyear = days between their publications / 365.25 (never negative),
-- NULL when either is unknown (a range, an unknown version, a package not cached). One
-- transaction, one data_collection_date; the previous scan moves to history. as_of
-- (tests, backfills) hides releases published after it.
CREATE FUNCTION aveloxis.refresh_libyear(repo bigint, as_of timestamptz DEFAULT NULL)
RETURNS TABLE (dependencies bigint, with_libyear bigint, avg_libyear double precision)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
-- Set-returning functions' default row estimates make plans look costly enough for JIT,
-- whose compilation costs more than these statements (0.5 s a call measured).
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    observed timestamptz := aveloxis_ops.clock();
    cutoff   timestamptz := coalesce(as_of, 'infinity');
BEGIN
    PERFORM aveloxis_ops.require_repo(repo);
    PERFORM pg_advisory_xact_lock(hashtextextended('aveloxis.libyear', repo));
    WITH moved AS (
        DELETE FROM aveloxis_data.repo_deps_libyear l WHERE l.repo_id = repo RETURNING l.*
    )
    INSERT INTO aveloxis_data.repo_deps_libyear_history SELECT * FROM moved;
    INSERT INTO aveloxis_data.repo_deps_libyear
        (repo_id, name, requirement, type, package_manager, current_verion, latest_version, current_release_date,
         latest_release_date, libyear, tool_source, tool_version, data_source, data_collection_date, ecosystem,
         resolution, license, current_release_at, latest_release_at, libdays)
    SELECT repo, d.name, d.requirement, d.scope, upper(d.ecosystem), d.version, latest.version,
           to_char(cur.published_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
           to_char(latest.published_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
           -- greatest() skips NULLs: an unknown side would read 0, "up to date". NULL it stays.
           CASE WHEN cur.published_at IS NOT NULL AND latest.published_at IS NOT NULL
                THEN greatest(0, extract(epoch FROM latest.published_at - cur.published_at) / 86400) / 365.25 END,
           'aveloxis (package cache)', aveloxis.version(), 'registries', observed, d.ecosystem, d.resolution,
           coalesce(cur.licence, p.licence), cur.published_at, latest.published_at,
           CASE WHEN cur.published_at IS NOT NULL AND latest.published_at IS NOT NULL
                THEN greatest(0, extract(epoch FROM latest.published_at - cur.published_at) / 86400) END
    FROM (SELECT DISTINCT ON (x.ecosystem, x.package, x.version, x.scope)
                 x.ecosystem, x.package, x.name, x.version, x.scope, x.requirement, x.resolution
          FROM aveloxis_data.repo_dependency_decls x
          WHERE x.repo_id = repo AND x.direct AND x.resolution <> 'non-registry'
          ORDER BY x.ecosystem, x.package, x.version, x.scope, x.manifest_path) d
    LEFT JOIN aveloxis_data.packages p ON p.ecosystem = d.ecosystem AND p.name = d.package
    LEFT JOIN aveloxis_data.package_versions cur
           ON cur.ecosystem = d.ecosystem AND cur.name = d.package AND cur.version = d.version
          AND cur.published_at <= cutoff
    LEFT JOIN LATERAL (
        SELECT v.version, v.published_at FROM aveloxis_data.package_versions v
        WHERE v.ecosystem = d.ecosystem AND v.name = d.package AND NOT v.prerelease AND NOT v.yanked
          AND v.published_at <= cutoff AND p.status = 'found'
        ORDER BY (v.version = p.default_version AND as_of IS NULL) DESC, v.published_at DESC, v.version DESC
        LIMIT 1) latest ON true
    ORDER BY d.ecosystem, d.package, d.version;
    RETURN QUERY
    SELECT count(*), count(l.libyear), avg(l.libyear)
    FROM aveloxis_data.repo_deps_libyear l WHERE l.repo_id = repo;
END
$$;

-- The package cache for operators: packages and versions held, by status, and how many
-- are past their TTL.
CREATE FUNCTION aveloxis.package_cache_stats()
RETURNS TABLE (ecosystem text, status text, packages bigint, versions bigint, stale bigint, oldest_fetch timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    SELECT p.ecosystem, p.status, count(*), coalesce(sum(vc.n), 0)::bigint,
           count(*) FILTER (WHERE p.fetched_at < aveloxis_ops.clock()
                            - CASE WHEN p.status = 'found' THEN aveloxis_ops.setting('packages.ttl')::interval
                                   ELSE aveloxis_ops.setting('packages.miss_ttl')::interval END),
           min(p.fetched_at)
    FROM aveloxis_data.packages p
    LEFT JOIN LATERAL (SELECT count(*) AS n FROM aveloxis_data.package_versions v
                       WHERE v.ecosystem = p.ecosystem AND v.name = p.name) vc ON true
    GROUP BY p.ecosystem, p.status
    ORDER BY 1, 2
$$;
