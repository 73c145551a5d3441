-- pg_aveloxis 0.15.0 -> 0.16.0: dependencies parsed in the extension (issue 17).
--
-- * The analysis phase stages the HEAD tree's dependency files (entities dependency_files and
--   dependency_blob: the staging entity check and phase_entities are replaced); complete applies
--   them for analysis leases (aveloxis_ops.dependencies_apply, called by aveloxis.complete):
--   aveloxis_data.repo_dependency_files, repo_dependency_blobs (kept for re-parsing),
--   repo_dependency_decls (declared requirement, version in use and how it is known),
--   repo_dependency_scans, and Augur's repo_dependencies (+ _history; aveloxis_augur_data view)
--   (sql/dependencies.sql). The parsers are Rust in the extension (pg_aveloxis/src/deps/):
--   aveloxis.dependency_file_patterns(), dependency_file_kind(path), parse_dependency_file(path,
--   content), aveloxis_ops.resolve_dependencies(paths, contents); aveloxis.reparse_dependencies(repo)
--   re-parses stored files; aveloxis.dependencies(repo) for analysts;
--   aveloxis.known_dependency_blobs(lease) for agents.
-- * aveloxis.analysis_state(lease) names a HEAD only when its dependency files were parsed too, so
--   every repository is analysed once more after this upgrade.
-- * Libyear from a fleet-wide package cache (sql/packages.sql): a daily packages phase
--   (aveloxis.packages_due(lease): only what the cache lacks or holds past packages.ttl; entity
--   package_versions) fills aveloxis_data.packages and package_versions, and complete recomputes the
--   repository's libyear in SQL (aveloxis.refresh_libyear(repo, as_of): NULL when unknown, never 0;
--   pre-releases and yanked versions never "latest"; one data_collection_date; the previous scan to
--   the new repo_deps_libyear_history). repo_deps_libyear gains typed columns (ecosystem,
--   resolution, license, current_release_at, latest_release_at, libdays).
-- * Vulnerabilities from OSV (sql/vulnerabilities.sql): a daily vulnerabilities phase
--   (aveloxis.osv_due(lease), osv_vulns_needed(lease, ids, modified), osv_settings(); entities
--   osv_results and osv_vuln) fills aveloxis_data.osv_queries and osv_vulns (CVSS v2/v3/v4 scored by
--   aveloxis_ops.cvss_score) and repo_deps_vulnerabilities (first seen, last seen, resolved only
--   after a complete scan); aveloxis.vulnerabilities(repo) for analysts.
-- * The phases are listed once (aveloxis_ops.all_phases(): claim, queue_health, why_not_collected);
--   the jobs' phase check is replaced and every repository is enqueued for the new phases.
-- * SBOMs (sql/sbom.sql): aveloxis.sbom(repo, format, spec, scope, vulnerabilities) -> jsonb, CycloneDX
--   1.5/1.6 or SPDX 2.3, deterministic for the same data (purls as bom-refs through
--   aveloxis_ops.purl, licences through aveloxis_ops.spdx_licence); aveloxis_data.repo_sbom_scans keeps
--   one when the dependency set changed.

ALTER TABLE aveloxis_ops.staging DROP CONSTRAINT staging_entity_check,
    ADD CONSTRAINT staging_entity_check
    CHECK (entity IN ('contributor', 'issue', 'pull_request', 'issue_event', 'issue_comment',
                                       'review_comment', 'release', 'repo_info', 'commit', 'commit_removed',
                                       'repo_files', 'distribution_depsdev', 'distribution_depsdev_package',
                                       'distribution_ecosystems', 'distribution_releases', 'distribution_packages',
                                       'distribution_manifest', 'labor_snapshot', 'scorecard',
                                       'dependency_files', 'dependency_blob', 'package_versions', 'osv_results',
                                       'osv_vuln'));

ALTER TABLE aveloxis_ops.jobs DROP CONSTRAINT jobs_phase_check,
    ADD CONSTRAINT jobs_phase_check CHECK (phase IN ('collect', 'facade', 'distribution', 'analysis', 'scorecard',
                                          'packages', 'vulnerabilities'));

CREATE FUNCTION aveloxis_ops."resolve_dependencies"(
	"paths" TEXT[], /* Vec < Option < String > > */
	"contents" TEXT[] /* Vec < Option < String > > */
) RETURNS TABLE (
	"manifest_path" TEXT,  /* String */
	"lockfile_path" TEXT,  /* Option < String > */
	"ecosystem" TEXT,  /* Option < String > */
	"name" TEXT,  /* Option < String > */
	"requirement" TEXT,  /* Option < String > */
	"scope" TEXT,  /* Option < String > */
	"direct" bool,  /* Option < bool > */
	"version" TEXT,  /* Option < String > */
	"resolution" TEXT,  /* Option < String > */
	"parse_error" TEXT  /* Option < String > */
)
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'resolve_dependencies_wrapper';

CREATE FUNCTION aveloxis."dependency_file_kind"(
	"path" TEXT /* & str */
) RETURNS TABLE (
	"ecosystem" TEXT,  /* String */
	"kind" TEXT  /* String */
)
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'dependency_file_kind_wrapper';

CREATE FUNCTION aveloxis."dependency_file_patterns"() RETURNS TABLE (
	"applies_to" TEXT,  /* String */
	"glob" TEXT  /* String */
)
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'dependency_file_patterns_wrapper';

CREATE FUNCTION aveloxis."parse_dependency_file"(
	"path" TEXT, /* & str */
	"content" TEXT /* & str */
) RETURNS TABLE (
	"ecosystem" TEXT,  /* String */
	"kind" TEXT,  /* String */
	"name" TEXT,  /* String */
	"requirement" TEXT,  /* Option < String > */
	"version" TEXT,  /* Option < String > */
	"scope" TEXT,  /* String */
	"direct" bool,  /* Option < bool > */
	"non_registry" bool  /* bool */
)
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'parse_dependency_file_wrapper';

CREATE FUNCTION aveloxis_ops."package_key"(
	"ecosystem" TEXT, /* & str */
	"name" TEXT /* & str */
) RETURNS TEXT /* String */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'package_key_wrapper';

CREATE FUNCTION aveloxis_ops."is_prerelease"(
	"ecosystem" TEXT, /* & str */
	"version" TEXT /* & str */
) RETURNS bool /* bool */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'is_prerelease_wrapper';

CREATE FUNCTION aveloxis_ops."cvss_score"(
	"vector" TEXT /* & str */
) RETURNS TABLE (
	"score" double precision,  /* f64 */
	"severity" TEXT,  /* String */
	"cvss_version" TEXT  /* String */
)
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cvss_score_wrapper';

CREATE FUNCTION aveloxis_ops."purl"(
	"ecosystem" TEXT, /* Option < & str > */
	"name" TEXT, /* Option < & str > */
	"version" TEXT /* Option < & str > */
) RETURNS TEXT /* Option < String > */
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'purl_wrapper';

CREATE FUNCTION aveloxis_ops."spdx_licence"(
	"raw" TEXT /* & str */
) RETURNS TABLE (
	"kind" TEXT,  /* String */
	"value" TEXT  /* String */
)
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'spdx_licence_wrapper';

CREATE OR REPLACE FUNCTION aveloxis_ops.phase_entities(phase text)
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE phase
        WHEN 'collect' THEN ARRAY['contributor', 'issue', 'pull_request', 'issue_event', 'issue_comment',
                                  'review_comment', 'release', 'repo_info']
        WHEN 'facade' THEN ARRAY['commit', 'commit_removed', 'repo_files']
        WHEN 'distribution' THEN ARRAY['distribution_depsdev', 'distribution_depsdev_package', 'distribution_ecosystems',
                                       'distribution_releases', 'distribution_packages', 'distribution_manifest']
        WHEN 'analysis' THEN ARRAY['labor_snapshot', 'dependency_files', 'dependency_blob']
        WHEN 'scorecard' THEN ARRAY['scorecard']
        WHEN 'packages' THEN ARRAY['package_versions']
        WHEN 'vulnerabilities' THEN ARRAY['osv_results', 'osv_vuln']
        ELSE '{}'::text[] END
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.all_phases()
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ARRAY['collect', 'facade', 'distribution', 'analysis', 'scorecard', 'packages', 'vulnerabilities']
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.phases_of(platform smallint)
RETURNS text[]
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE platform
        WHEN 1 THEN ARRAY['collect', 'facade', 'distribution', 'analysis', 'scorecard', 'packages', 'vulnerabilities']
        WHEN 2 THEN ARRAY['collect', 'facade', 'analysis', 'packages', 'vulnerabilities']
        ELSE ARRAY['facade', 'analysis', 'packages', 'vulnerabilities'] END
$$;

CREATE OR REPLACE FUNCTION aveloxis.claim(agent text, phases text[], max_jobs integer DEFAULT 1,
                               lease interval DEFAULT '15 minutes')
RETURNS TABLE (job_id bigint, repo_id bigint, phase text, repo_git text, platform_id smallint,
               since timestamptz, full_run boolean, attempt integer, lease_expires_at timestamptz,
               agent_state jsonb, lease_token uuid)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    at      timestamptz := aveloxis_ops.clock();
    overlap interval := aveloxis_ops.setting('collect.since_overlap')::interval;
    limits  jsonb;
    ph      text;
    -- Whether no distribution scan may start now: switched off, a source's circuit breaker
    -- open, or too soon after the last start (sql/distribution.sql).
    paused  boolean := 'distribution' = ANY (phases) AND aveloxis_ops.distribution_paused(at) IS NOT NULL;
    paced   boolean := false;
BEGIN
    IF agent IS NULL OR btrim(agent) = '' THEN
        RAISE EXCEPTION 'claim needs an agent name' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Any stable name of the agent process, e.g. host-and-worker; it is shown in why_not_collected().';
    END IF;
    IF max_jobs IS NULL OR max_jobs < 1 OR lease IS NULL OR lease <= '0'::interval THEN
        RAISE EXCEPTION 'claim needs max_jobs >= 1 and a positive lease' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF phases IS NULL OR cardinality(phases) = 0
       OR EXISTS (SELECT FROM unnest(phases) p
                  WHERE NOT p = ANY (aveloxis_ops.all_phases())) THEN
        RAISE EXCEPTION 'unknown phase in %', phases USING ERRCODE = 'invalid_parameter_value',
            HINT = format('Phases are %s.', array_to_string(aveloxis_ops.all_phases(), ', '));
    END IF;
    -- A phase with a concurrency limit is claimed one claimer at a time, so the limit holds.
    SELECT coalesce(jsonb_object_agg(split_part(s.name, '.', 1), s.value::integer), '{}') INTO limits
    FROM aveloxis_ops.settings s
    WHERE CASE WHEN s.name IN (SELECT p || '.max_leased' FROM unnest(phases) p) THEN s.value::integer > 0 END;
    FOREACH ph IN ARRAY phases LOOP
        IF limits ? ph THEN
            PERFORM pg_advisory_xact_lock(hashtextextended('aveloxis.claim:' || ph, 0));
        END IF;
    END LOOP;
    -- Paced scan starts: one claimer at a time decides, after the last start committed.
    IF 'distribution' = ANY (phases) AND NOT paused
       AND aveloxis_ops.setting('distribution.start_interval')::interval > '0'::interval THEN
        paused := aveloxis_ops.distribution_started_within(at);
        IF NOT paused THEN
            PERFORM pg_advisory_xact_lock(hashtextextended('aveloxis.claim:distribution-start', 0));
            paused := aveloxis_ops.distribution_started_within(at);
            paced := true;
        END IF;
    END IF;
    PERFORM aveloxis_ops.expire_leases();

    RETURN QUERY
    WITH room AS (
        SELECT p AS phase,
               CASE WHEN p = 'distribution' AND paced THEN 1
                    WHEN NOT limits ? p THEN max_jobs
                    ELSE greatest(0, (limits ->> p)::integer
                                     - (SELECT count(*) FROM aveloxis_ops.jobs l
                                        WHERE l.phase = p AND l.lease_owner IS NOT NULL))::integer END AS room
        FROM unnest(phases) p
    ), candidates AS MATERIALIZED (
        SELECT j.job_id, j.phase, j.retry_first, j.priority, j.due_at, j.repo_id
        FROM aveloxis_ops.jobs j
        WHERE j.phase = ANY (phases)
          AND j.lease_owner IS NULL
          AND j.due_at <= at
          AND (j.backoff_until IS NULL OR j.backoff_until <= at)
          AND (j.sidelined_until IS NULL OR j.sidelined_until <= at)
          -- An archived repository's packaging cannot change: its distribution waits.
          AND (j.phase <> 'distribution'
               OR NOT (paused OR (SELECT r.repo_archived FROM aveloxis_data.repos r WHERE r.repo_id = j.repo_id)))
        ORDER BY j.retry_first DESC, j.priority, j.due_at, j.repo_id
        LIMIT max_jobs
        FOR UPDATE SKIP LOCKED
    ), picked AS (
        SELECT c.job_id
        FROM (SELECT c.*, row_number() OVER (PARTITION BY c.phase
                                            ORDER BY c.retry_first DESC, c.priority, c.due_at, c.repo_id) AS n
              FROM candidates c) c
        JOIN room l ON l.phase = c.phase
        WHERE c.n <= l.room
    ), tokens AS MATERIALIZED (
        SELECT p.job_id, gen_random_uuid() AS token FROM picked p
    ), runs AS (
        INSERT INTO aveloxis_ops.job_runs (job_id, repo_id, phase, agent, attempt, started_at, lease_token_digest)
        SELECT j.job_id, j.repo_id, j.phase, claim.agent, j.attempts + 1, at, aveloxis_ops.token_digest(t.token)
        FROM aveloxis_ops.jobs j JOIN tokens t ON t.job_id = j.job_id
        RETURNING job_runs.job_id, job_runs.run_id
    ), leased AS (
        UPDATE aveloxis_ops.jobs j
        SET lease_owner = claim.agent, leased_at = at, lease_expires_at = at + lease, lease_length = lease,
            lease_run_id = r.run_id, attempts = j.attempts + 1, last_attempted_at = at
        FROM runs r WHERE r.job_id = j.job_id
        RETURNING j.*
    )
    SELECT l.job_id, l.repo_id, l.phase, r.repo_git, r.platform_id,
           CASE WHEN l.force_full OR l.last_success_started_at IS NULL THEN NULL
                WHEN l.phase = 'collect' THEN l.last_success_started_at - overlap
                ELSE l.last_success_started_at END,
           l.force_full OR l.last_success_started_at IS NULL,
           l.attempts, l.lease_expires_at, l.agent_state, t.token
    FROM leased l JOIN aveloxis_data.repos r ON r.repo_id = l.repo_id JOIN tokens t ON t.job_id = l.job_id
    ORDER BY l.retry_first DESC, l.priority, l.due_at, l.repo_id;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis.complete(job bigint, lease_token uuid, outcome jsonb DEFAULT '{}')
RETURNS timestamptz
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
SET plan_cache_mode = force_generic_plan
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
    PERFORM aveloxis_ops.finish_run(lease.run, CASE WHEN whole THEN 'complete' ELSE 'partial' END, NULL,
                                    outcome - 'state');
    -- What the forge reported, against what the drain (run before complete) stored.
    PERFORM aveloxis_ops.record_completeness(j.repo_id, j.phase, outcome -> 'completeness');
    -- A distribution scan's observations become the current evidence with this completion,
    -- in this transaction (sql/distribution.sql).
    IF j.phase = 'distribution' THEN
        PERFORM aveloxis_ops.distribution_apply(j.repo_id, lease.run, whole, outcome -> 'sources');
    END IF;
    -- An analysis's labor snapshot replaces the current one, likewise (sql/labor.sql), and
    -- so do its dependency files (sql/dependencies.sql).
    IF j.phase = 'analysis' THEN
        PERFORM aveloxis_ops.labor_apply(j.repo_id, lease.run, outcome);
        PERFORM aveloxis_ops.dependencies_apply(j.repo_id, lease.run, outcome);
    END IF;
    -- A scorecard read replaces the repository's checks, likewise (sql/scorecard.sql).
    IF j.phase = 'scorecard' THEN
        PERFORM aveloxis_ops.scorecard_apply(j.repo_id, lease.run, outcome);
    END IF;
    -- Fetched packages go to the fleet-wide cache and the libyear is recomputed
    -- (sql/packages.sql); OSV answers to the vulnerability cache and the findings
    -- (sql/vulnerabilities.sql).
    IF j.phase = 'packages' THEN
        PERFORM aveloxis_ops.packages_apply(j.repo_id, lease.run, outcome);
    END IF;
    IF j.phase = 'vulnerabilities' THEN
        PERFORM aveloxis_ops.vulnerabilities_apply(j.repo_id, lease.run, outcome);
    END IF;
    -- A packages or vulnerabilities run covers at most a batch (packages.batch, osv.batch):
    -- with more of the repository's work still due, the job is due again at once.
    IF whole AND j.phase IN ('packages', 'vulnerabilities') AND aveloxis_ops.work_left(j.repo_id, j.phase) THEN
        whole := false;
        next_due := at;
    END IF;
    UPDATE aveloxis_ops.jobs SET
        lease_owner = NULL, leased_at = NULL, lease_expires_at = NULL, lease_length = NULL, lease_run_id = NULL,
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

CREATE OR REPLACE FUNCTION aveloxis.queue_health()
RETURNS TABLE (phase text, jobs bigint, due bigint, leased bigint, backing_off bigint, sidelined bigint,
               oldest_due_age interval, failures_last_day bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    -- MATERIALIZED: the clock is read once, not once per job (2.6 s at 100,000 repositories).
    WITH at AS MATERIALIZED (SELECT aveloxis_ops.clock() AS now)
    SELECT p.phase,
           count(j.job_id),
           count(*) FILTER (WHERE j.lease_owner IS NULL AND j.due_at <= at.now
                              AND (j.backoff_until IS NULL OR j.backoff_until <= at.now)
                              AND (j.sidelined_until IS NULL OR j.sidelined_until <= at.now)),
           count(*) FILTER (WHERE j.lease_owner IS NOT NULL AND j.lease_expires_at > at.now),
           count(*) FILTER (WHERE j.backoff_until > at.now),
           count(*) FILTER (WHERE j.sidelined_until > at.now),
           max(at.now - j.due_at) FILTER (WHERE j.lease_owner IS NULL AND j.due_at <= at.now
                                            AND (j.sidelined_until IS NULL OR j.sidelined_until <= at.now)),
           (SELECT count(*) FROM aveloxis_ops.job_runs r
            WHERE r.phase = p.phase AND r.finished_at > at.now - interval '1 day'
              AND r.outcome IN ('transient', 'gone', 'auth', 'fatal', 'lease_expired'))
    FROM unnest(aveloxis_ops.all_phases()) AS p(phase)
    CROSS JOIN at
    LEFT JOIN aveloxis_ops.jobs j ON j.phase = p.phase
    GROUP BY p.phase, at.now
    ORDER BY array_position(aveloxis_ops.all_phases(), p.phase)
$$;

CREATE OR REPLACE FUNCTION aveloxis.why_not_collected(repo bigint)
RETURNS TABLE (phase text, status text, reason text, next_possible_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    at timestamptz := aveloxis_ops.clock();
BEGIN
    PERFORM aveloxis_ops.require_repo(repo);
    RETURN QUERY
    SELECT j.phase,
           CASE WHEN j.lease_owner IS NOT NULL AND j.lease_expires_at > at THEN 'leased'
                WHEN j.sidelined_until > at THEN 'sidelined'
                WHEN j.backoff_until > at THEN 'backing off'
                WHEN j.due_at > at THEN 'waiting'
                ELSE 'due' END,
           CASE WHEN j.lease_owner IS NOT NULL AND j.lease_expires_at > at
                    THEN format('leased by %s since %s (attempt %s), lease ends %s unless renewed',
                                j.lease_owner, j.leased_at, j.attempts, j.lease_expires_at)
                WHEN j.sidelined_until = 'infinity'
                    THEN format('sidelined because %s; aveloxis.unsideline(%s) resumes it', j.sideline_reason, j.repo_id)
                WHEN j.sidelined_until > at
                    THEN format('sidelined until %s because %s', j.sidelined_until, j.sideline_reason)
                WHEN j.backoff_until > at
                    THEN format('backing off until %s after %s consecutive failure(s); last (%s): %s',
                                j.backoff_until, j.consecutive_failures, j.last_error_class, j.last_error)
                WHEN j.due_at > at
                    THEN format('due at %s (%s)', j.due_at,
                                CASE WHEN j.last_success_at IS NULL THEN 'scheduled'
                                     ELSE format('cadence %s after the last success at %s',
                                                 aveloxis_ops.setting(j.phase || '.cadence'), j.last_success_at) END)
                WHEN j.phase = 'distribution' AND r.repo_archived
                    THEN 'due, but not claimed: the repository is archived, so its packaging cannot change'
                WHEN j.phase = 'distribution' AND aveloxis_ops.distribution_paused(at) IS NOT NULL
                    THEN format('due since %s, but new distribution scans are paused: %s', j.due_at,
                                aveloxis_ops.distribution_paused(at))
                WHEN j.phase = 'distribution' AND aveloxis_ops.distribution_started_within(at)
                    THEN format('due since %s; distribution scans start at most one per %s (distribution.start_interval)',
                                j.due_at, aveloxis_ops.setting('distribution.start_interval'))
                ELSE format('due since %s; waiting for an agent to claim %s jobs', j.due_at, j.phase) END,
           CASE WHEN j.lease_owner IS NOT NULL AND j.lease_expires_at > at THEN j.lease_expires_at
                ELSE greatest(j.due_at, coalesce(j.backoff_until, '-infinity'), coalesce(j.sidelined_until, '-infinity'))
                END
    FROM aveloxis_ops.jobs j JOIN aveloxis_data.repos r ON r.repo_id = j.repo_id
    WHERE j.repo_id = repo
    ORDER BY array_position(aveloxis_ops.all_phases(), j.phase);
END
$$;

CREATE OR REPLACE FUNCTION aveloxis.analysis_state(lease_token uuid)
RETURNS TABLE (head_sha text, analyzed_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    repo bigint := aveloxis_ops.lease_repo(lease_token, 'analysis');
BEGIN
    RETURN QUERY
    SELECT s.head_sha, s.analyzed_at FROM aveloxis_data.repo_analysis_scans s
    WHERE s.repo_id = repo
      AND EXISTS (SELECT FROM aveloxis_data.repo_dependency_scans d
                  WHERE d.repo_id = repo AND d.head_sha = s.head_sha)
    ORDER BY s.scan_id DESC LIMIT 1;
END
$$;

-- sql/dependencies.sql
-- The analysis phase's dependencies (docs/dependencies.md): the manifests and lockfiles
-- of a repository's HEAD tree, parsed here by the extension (pg_aveloxis/src/deps/), not
-- by the agent. The agent stages the files its tree holds (`dependency_files`: every path
-- and blob) and the content of the blobs the database does not have yet
-- (`dependency_blob`); complete() stores them and parses the repository's whole set in
-- one transaction. The blobs stay, so a parser fix re-parses them without re-collection
-- (aveloxis.reparse_dependencies).

-- A repository's dependency files at the HEAD last analysed: path and blob.
CREATE TABLE aveloxis_data.repo_dependency_files (
    repo_id   bigint NOT NULL REFERENCES aveloxis_data.repos ON DELETE CASCADE,
    path      text NOT NULL,
    blob_sha  text NOT NULL CHECK (blob_sha ~ '^[0-9a-f]{40}([0-9a-f]{24})?$'),
    bytes     bigint,
    -- Over the agent's size cap: listed, its content not stored or parsed.
    too_large boolean NOT NULL DEFAULT false,
    PRIMARY KEY (repo_id, path)
);
COMMENT ON TABLE aveloxis_data.repo_dependency_files IS 'The manifests and lockfiles of each repository''s analysed HEAD';

-- Their content, once per blob of a repository (re-parsed after a parser fix).
CREATE TABLE aveloxis_data.repo_dependency_blobs (
    repo_id   bigint NOT NULL REFERENCES aveloxis_data.repos ON DELETE CASCADE,
    blob_sha  text NOT NULL CHECK (blob_sha ~ '^[0-9a-f]{40}([0-9a-f]{24})?$'),
    content   text NOT NULL,
    stored_at timestamptz NOT NULL,
    PRIMARY KEY (repo_id, blob_sha)
);
COMMENT ON TABLE aveloxis_data.repo_dependency_blobs IS 'Content of the dependency files, kept for re-parsing';

-- Every dependency as parsed: per manifest (or lockfile, for what only a lockfile names),
-- the requirement as written, and the version in use with how it is known:
-- locked (a lockfile installed it), exact (the manifest pins it), range and unpinned (no
-- version is claimed), non-registry (a path, git or URL source).
CREATE TABLE aveloxis_data.repo_dependency_decls (
    decl_id        bigint GENERATED BY DEFAULT AS IDENTITY,
    repo_id        bigint NOT NULL REFERENCES aveloxis_data.repos ON DELETE CASCADE,
    manifest_path  text NOT NULL,
    lockfile_path  text,
    ecosystem      text NOT NULL,
    name           text NOT NULL,
    -- The name as the ecosystem compares it: the key of the package cache.
    package        text NOT NULL,
    requirement    text,
    scope          text NOT NULL,
    direct         boolean NOT NULL,
    version        text,
    resolution     text NOT NULL CHECK (resolution IN ('locked', 'exact', 'range', 'unpinned', 'non-registry')),
    parsed_at      timestamptz NOT NULL,
    PRIMARY KEY (repo_id, decl_id),
    CHECK ((version IS NOT NULL) = (resolution IN ('locked', 'exact')))
);
COMMENT ON TABLE aveloxis_data.repo_dependency_decls IS
    'Dependencies of each repository''s analysed HEAD: declared requirement, version in use and how it is known';
CREATE INDEX repo_dependency_decls_package_idx ON aveloxis_data.repo_dependency_decls (ecosystem, package, version);

-- Each parse of a repository's dependency files.
CREATE TABLE aveloxis_data.repo_dependency_scans (
    scan_id        bigint GENERATED BY DEFAULT AS IDENTITY,
    repo_id        bigint NOT NULL REFERENCES aveloxis_data.repos ON DELETE CASCADE,
    head_sha       text CHECK (head_sha ~ '^[0-9a-f]{40}([0-9a-f]{24})?$'),
    parsed_at      timestamptz NOT NULL,
    parser_version text NOT NULL,
    files          integer NOT NULL,
    dependencies   integer NOT NULL,
    direct         integer NOT NULL,
    -- Files that could not be parsed ({path: error}) and files over the size cap.
    parse_errors   jsonb NOT NULL DEFAULT '{}',
    too_large      text[] NOT NULL DEFAULT '{}',
    -- Hash of the dependency set (ecosystem, name, version, scope, direct): what SBOMs key on.
    set_hash       text NOT NULL,
    -- 'analysis' (a new HEAD) or 'reparse' (stored files, a newer parser).
    reason         text NOT NULL,
    job_run_id     bigint,
    PRIMARY KEY (repo_id, scan_id)
);
COMMENT ON TABLE aveloxis_data.repo_dependency_scans IS 'Each parse of a repository''s dependency files, newest last';

-- Augur's table: one row per direct dependency (ecosystem and name) with the number of
-- manifests declaring it (dep_count: the Go system's meaning, not Augur's import count).
CREATE TABLE aveloxis_data.repo_dependencies (
    repo_dependencies_id bigint GENERATED BY DEFAULT AS IDENTITY,
    repo_id              bigint NOT NULL REFERENCES aveloxis_data.repos ON DELETE CASCADE,
    dep_name             text,
    dep_count            integer,
    dep_language         text,
    tool_source          text,
    tool_version         text,
    data_source          text,
    data_collection_date timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repo_id, repo_dependencies_id)
);
COMMENT ON TABLE aveloxis_data.repo_dependencies IS 'Direct dependencies per repository (Augur layout), latest parse';
CREATE TABLE aveloxis_data.repo_dependencies_history (LIKE aveloxis_data.repo_dependencies INCLUDING DEFAULTS);
ALTER TABLE aveloxis_data.repo_dependencies_history ADD PRIMARY KEY (repo_id, repo_dependencies_id);
ALTER TABLE aveloxis_data.repo_dependencies_history
    ADD FOREIGN KEY (repo_id) REFERENCES aveloxis_data.repos ON DELETE CASCADE;
COMMENT ON TABLE aveloxis_data.repo_dependencies_history IS 'Earlier parses of repo_dependencies';

SELECT pg_catalog.pg_extension_config_dump('aveloxis_data.repo_dependency_files', '');
SELECT pg_catalog.pg_extension_config_dump('aveloxis_data.repo_dependency_blobs', '');
SELECT pg_catalog.pg_extension_config_dump('aveloxis_data.repo_dependency_decls', '');
SELECT pg_catalog.pg_extension_config_dump(
    pg_catalog.pg_get_serial_sequence('aveloxis_data.repo_dependency_decls', 'decl_id'), '');
SELECT pg_catalog.pg_extension_config_dump('aveloxis_data.repo_dependency_scans', '');
SELECT pg_catalog.pg_extension_config_dump(
    pg_catalog.pg_get_serial_sequence('aveloxis_data.repo_dependency_scans', 'scan_id'), '');
SELECT pg_catalog.pg_extension_config_dump('aveloxis_data.repo_dependencies', '');
SELECT pg_catalog.pg_extension_config_dump(
    pg_catalog.pg_get_serial_sequence('aveloxis_data.repo_dependencies', 'repo_dependencies_id'), '');
SELECT pg_catalog.pg_extension_config_dump('aveloxis_data.repo_dependencies_history', '');

CREATE VIEW aveloxis_augur_data.repo_dependencies WITH (security_invoker = true) AS
SELECT d.repo_dependencies_id, d.repo_id, d.dep_name::varchar AS dep_name, d.dep_count,
       d.dep_language::varchar AS dep_language, d.tool_source::varchar AS tool_source,
       d.tool_version::varchar AS tool_version, d.data_source::varchar AS data_source,
       d.data_collection_date AT TIME ZONE 'UTC' AS data_collection_date
FROM aveloxis_data.repo_dependencies d;

-- The language Augur's dep_language names for an ecosystem.
CREATE FUNCTION aveloxis_ops.ecosystem_language(ecosystem text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE ecosystem
        WHEN 'npm' THEN 'JavaScript' WHEN 'PyPI' THEN 'Python' WHEN 'crates.io' THEN 'Rust' WHEN 'Go' THEN 'Go'
        WHEN 'Maven' THEN 'Java' WHEN 'RubyGems' THEN 'Ruby' WHEN 'Packagist' THEN 'PHP' WHEN 'NuGet' THEN '.NET'
        WHEN 'Hex' THEN 'Elixir' WHEN 'Pub' THEN 'Dart' WHEN 'Hackage' THEN 'Haskell' WHEN 'SwiftURL' THEN 'Swift'
        WHEN 'CocoaPods' THEN 'Objective-C' WHEN 'ConanCenter' THEN 'C/C++' WHEN 'CRAN' THEN 'R'
        WHEN 'GitHub Actions' THEN 'GitHub Actions' ELSE ecosystem END
$$;

-- The blobs of a repository's dependency files the database holds, for the agent with the
-- repository's analysis lease: it stages only the others.
CREATE FUNCTION aveloxis.known_dependency_blobs(lease_token uuid)
RETURNS SETOF text
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    repo bigint := aveloxis_ops.lease_repo(lease_token, 'analysis');
BEGIN
    RETURN QUERY SELECT b.blob_sha FROM aveloxis_data.repo_dependency_blobs b WHERE b.repo_id = repo ORDER BY 1;
END
$$;

-- Parses a repository's stored dependency files and makes the result current, in the
-- caller's transaction: decls replaced, repo_dependencies rotated to history with one
-- data_collection_date, one scan row. Returns the scan.
CREATE FUNCTION aveloxis_ops.parse_repo_dependencies(repo bigint, head text, run bigint, why text, observed timestamptz)
RETURNS aveloxis_data.repo_dependency_scans
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- Set-returning functions' default row estimates make plans look costly enough for JIT,
-- whose compilation costs more than these statements (0.5 s a call measured).
SET jit = off
AS $$
DECLARE
    scan    aveloxis_data.repo_dependency_scans;
    errors  jsonb;
    parser  text := aveloxis.version();
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('aveloxis.dependencies', repo));
    IF to_regclass('pg_temp.aveloxis_resolved') IS NULL THEN
        CREATE TEMP TABLE pg_temp.aveloxis_resolved (
        manifest_path text, lockfile_path text, ecosystem text, name text, requirement text, scope text,
        direct boolean, version text, resolution text, parse_error text) ON COMMIT DROP;
    END IF;
    -- A caller-made table of that name would be used below: refuse anything but ours.
    IF (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = 'pg_temp.aveloxis_resolved'::regclass)
       <> (SELECT p.proowner FROM pg_catalog.pg_proc p
           WHERE p.oid = 'aveloxis_ops.parse_repo_dependencies(bigint, text, bigint, text, timestamptz)'::regprocedure) THEN
        RAISE EXCEPTION 'pg_temp.aveloxis_resolved belongs to another role' USING ERRCODE = 'insufficient_privilege';
    END IF;
    TRUNCATE pg_temp.aveloxis_resolved;
    INSERT INTO pg_temp.aveloxis_resolved
    SELECT r.* FROM aveloxis_ops.resolve_dependencies(
        ARRAY(SELECT f.path FROM aveloxis_data.repo_dependency_files f
              JOIN aveloxis_data.repo_dependency_blobs b ON b.repo_id = f.repo_id AND b.blob_sha = f.blob_sha
              WHERE f.repo_id = repo AND NOT f.too_large ORDER BY f.path),
        ARRAY(SELECT b.content FROM aveloxis_data.repo_dependency_files f
              JOIN aveloxis_data.repo_dependency_blobs b ON b.repo_id = f.repo_id AND b.blob_sha = f.blob_sha
              WHERE f.repo_id = repo AND NOT f.too_large ORDER BY f.path)) r;
    SELECT coalesce(jsonb_object_agg(r.manifest_path, r.parse_error), '{}') INTO errors
    FROM pg_temp.aveloxis_resolved r WHERE r.parse_error IS NOT NULL;
    IF errors <> '{}' THEN
        RAISE LOG 'dependencies of repo %: % files could not be parsed: %', repo,
            (SELECT count(*) FROM jsonb_object_keys(errors)), errors;
    END IF;

    DELETE FROM aveloxis_data.repo_dependency_decls d WHERE d.repo_id = repo;
    INSERT INTO aveloxis_data.repo_dependency_decls
        (repo_id, manifest_path, lockfile_path, ecosystem, name, package, requirement, scope, direct, version,
         resolution, parsed_at)
    SELECT repo, r.manifest_path, r.lockfile_path, r.ecosystem, r.name, aveloxis_ops.package_key(r.ecosystem, r.name),
           r.requirement, r.scope, r.direct, r.version, r.resolution, observed
    FROM pg_temp.aveloxis_resolved r WHERE r.parse_error IS NULL;

    WITH moved AS (
        DELETE FROM aveloxis_data.repo_dependencies d WHERE d.repo_id = repo RETURNING d.*
    )
    INSERT INTO aveloxis_data.repo_dependencies_history SELECT * FROM moved;
    INSERT INTO aveloxis_data.repo_dependencies
        (repo_id, dep_name, dep_count, dep_language, tool_source, tool_version, data_source, data_collection_date)
    SELECT repo, d.name, count(DISTINCT d.manifest_path), aveloxis_ops.ecosystem_language(d.ecosystem),
           'aveloxis (dependency files)', parser, 'git', observed
    FROM aveloxis_data.repo_dependency_decls d
    WHERE d.repo_id = repo AND d.direct
    GROUP BY d.ecosystem, d.name
    ORDER BY d.ecosystem, d.name;

    INSERT INTO aveloxis_data.repo_dependency_scans
        (repo_id, head_sha, parsed_at, parser_version, files, dependencies, direct, parse_errors, too_large, set_hash,
         reason, job_run_id)
    SELECT repo, head, observed, parser,
           (SELECT count(*) FROM aveloxis_data.repo_dependency_files f WHERE f.repo_id = repo),
           count(*), count(*) FILTER (WHERE d.direct), errors,
           ARRAY(SELECT f.path FROM aveloxis_data.repo_dependency_files f WHERE f.repo_id = repo AND f.too_large
                 ORDER BY 1),
           md5(coalesce(string_agg(concat_ws(' ', d.ecosystem, d.name, d.version, d.scope, d.direct::text), E'\n'
                                   ORDER BY d.ecosystem, d.name, d.version, d.scope, d.direct), '')),
           why, run
    FROM (SELECT DISTINCT x.ecosystem, x.name, x.version, x.scope, x.direct
          FROM aveloxis_data.repo_dependency_decls x WHERE x.repo_id = repo) d
    RETURNING * INTO scan;
    RETURN scan;
END
$$;

-- Applies what an analysis run staged about dependency files (called by complete for
-- analysis leases, after the labor snapshot): the new blobs are stored, the file set
-- replaces the repository's, blobs no file names any more are dropped, and the set is
-- parsed. An agent that staged no `dependency_files` (older than 0.16.0, or an unchanged
-- HEAD) changes nothing. A file set naming a blob neither stored nor staged is refused:
-- the lease and the staged rows stay.
CREATE FUNCTION aveloxis_ops.dependencies_apply(repo bigint, run bigint, outcome jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- Set-returning functions' default row estimates make plans look costly enough for JIT,
-- whose compilation costs more than these statements (0.5 s a call measured).
SET jit = off
AS $$
DECLARE
    observed timestamptz := aveloxis_ops.clock();
    sets     jsonb;
    doc      jsonb;
    missing  text[];
BEGIN
    IF coalesce(outcome ->> 'unchanged', 'false') = 'true' THEN
        RETURN;
    END IF;
    SELECT coalesce(jsonb_agg(aveloxis_ops.sanitized_jsonb(s.payload) ORDER BY s.staging_id), '[]') INTO sets
    FROM aveloxis_ops.staging s
    WHERE s.repo_id = repo AND s.job_run_id = run AND s.drained_at IS NULL AND s.entity = 'dependency_files';
    IF jsonb_array_length(sets) = 0 THEN
        RETURN;
    END IF;
    IF jsonb_array_length(sets) > 1 THEN
        RAISE EXCEPTION 'an analysis stages one dependency_files set; this run staged %', jsonb_array_length(sets)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    doc := sets -> 0;
    IF jsonb_typeof(doc -> 'files') IS DISTINCT FROM 'array' OR coalesce(doc ->> 'head_sha', '') !~ '^[0-9a-f]{40}([0-9a-f]{24})?$' THEN
        RAISE EXCEPTION 'a dependency_files set is {"head_sha": <40 or 64 hex>, "files": [{"path", "blob_sha", "bytes"}]}'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF outcome ? 'head_sha' AND outcome ->> 'head_sha' <> doc ->> 'head_sha' THEN
        RAISE EXCEPTION 'the dependency files are of HEAD %, the completion of %', doc ->> 'head_sha', outcome ->> 'head_sha'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('aveloxis.dependencies', repo));

    -- New blobs (content as text, or base64 of other encodings, read as contents_text does).
    INSERT INTO aveloxis_data.repo_dependency_blobs (repo_id, blob_sha, content, stored_at)
    SELECT DISTINCT ON (b.blob_sha) repo, b.blob_sha, b.content, observed
    FROM (SELECT d ->> 'blob_sha' AS blob_sha,
                 aveloxis_ops.contents_text(d ->> 'content', d ->> 'encoding') AS content
          FROM aveloxis_ops.staging s, LATERAL aveloxis_ops.sanitized_jsonb(s.payload) d
          WHERE s.repo_id = repo AND s.job_run_id = run AND s.drained_at IS NULL AND s.entity = 'dependency_blob') b
    WHERE b.blob_sha ~ '^[0-9a-f]{40}([0-9a-f]{24})?$' AND b.content IS NOT NULL
    ON CONFLICT (repo_id, blob_sha) DO NOTHING;

    SELECT array_agg(f.blob_sha || ' (' || f.path || ')' ORDER BY f.path) INTO missing
    FROM jsonb_to_recordset(doc -> 'files') AS f(path text, blob_sha text, too_large boolean)
    WHERE NOT coalesce(f.too_large, false)
      AND NOT EXISTS (SELECT FROM aveloxis_data.repo_dependency_blobs b WHERE b.repo_id = repo AND b.blob_sha = f.blob_sha);
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'the dependency files name % blobs that are neither stored nor staged (readable text): %',
            cardinality(missing), array_to_string(missing[1:5], ', ')
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Stage a dependency_blob for each blob known_dependency_blobs() does not list.';
    END IF;

    DELETE FROM aveloxis_data.repo_dependency_files f WHERE f.repo_id = repo;
    INSERT INTO aveloxis_data.repo_dependency_files (repo_id, path, blob_sha, bytes, too_large)
    SELECT DISTINCT ON (f.path) repo, f.path, f.blob_sha, f.bytes, coalesce(f.too_large, false)
    FROM jsonb_to_recordset(doc -> 'files') AS f(path text, blob_sha text, bytes bigint, too_large boolean)
    WHERE f.path IS NOT NULL AND f.path <> '';
    DELETE FROM aveloxis_data.repo_dependency_blobs b
    WHERE b.repo_id = repo
      AND NOT EXISTS (SELECT FROM aveloxis_data.repo_dependency_files f WHERE f.repo_id = repo AND f.blob_sha = b.blob_sha);

    PERFORM aveloxis_ops.parse_repo_dependencies(repo, doc ->> 'head_sha', run, 'analysis', observed);
    UPDATE aveloxis_ops.staging s SET drained_at = observed
    WHERE s.repo_id = repo AND s.job_run_id = run AND s.drained_at IS NULL
      AND s.entity IN ('dependency_files', 'dependency_blob');
END
$$;

-- Parses the stored dependency files again with this extension's parsers, for one
-- repository, or (repo NULL) for every repository last parsed by another version: what a
-- parser fix needs, with no re-collection. One transaction per call.
CREATE FUNCTION aveloxis.reparse_dependencies(repo bigint DEFAULT NULL)
RETURNS TABLE (repo_id bigint, dependencies integer, direct integer, parse_errors jsonb)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    r    record;
    scan aveloxis_data.repo_dependency_scans;
BEGIN
    FOR r IN
        SELECT DISTINCT ON (s.repo_id) s.repo_id, s.head_sha, s.parser_version
        FROM aveloxis_data.repo_dependency_scans s
        WHERE reparse_dependencies.repo IS NULL OR s.repo_id = reparse_dependencies.repo
        ORDER BY s.repo_id, s.scan_id DESC
    LOOP
        CONTINUE WHEN reparse_dependencies.repo IS NULL AND r.parser_version = aveloxis.version();
        scan := aveloxis_ops.parse_repo_dependencies(r.repo_id, r.head_sha, NULL, 'reparse', aveloxis_ops.clock());
        repo_id := scan.repo_id;
        dependencies := scan.dependencies;
        direct := scan.direct;
        parse_errors := scan.parse_errors;
        RETURN NEXT;
    END LOOP;
    IF reparse_dependencies.repo IS NOT NULL AND NOT FOUND THEN
        RAISE EXCEPTION 'repository % has no analysed dependency files', reparse_dependencies.repo
            USING ERRCODE = 'no_data_found', HINT = 'Its analysis job stores them: aveloxis.why_not_collected(repo).';
    END IF;
END
$$;

-- A repository's dependencies now, for analysts: what is in use, at which version and how
-- that is known, from which file.
CREATE FUNCTION aveloxis.dependencies(repo bigint, direct_only boolean DEFAULT false)
RETURNS TABLE (ecosystem text, name text, scope text, direct boolean, version text, resolution text,
               requirement text, manifest_path text, lockfile_path text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    SELECT d.ecosystem, d.name, d.scope, d.direct, d.version, d.resolution, d.requirement, d.manifest_path,
           d.lockfile_path
    FROM aveloxis_data.repo_dependency_decls d
    WHERE d.repo_id = repo AND (d.direct OR NOT direct_only)
    ORDER BY d.ecosystem, d.name, d.manifest_path, d.version
$$;

-- sql/packages.sql
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

-- sql/vulnerabilities.sql
-- Vulnerabilities from OSV (docs/dependencies.md, "Vulnerabilities"). A daily
-- `vulnerabilities` job per repository asks which package versions it uses have no OSV
-- answer younger than osv.ttl (aveloxis.osv_due, fleet-wide: a version another repository
-- asked about today is not asked again); the agent sends them to OSV's querybatch (at most
-- 1,000 a call, following each query's next_page_token) and stages the answers
-- (`osv_results`), then fetches /v1/vulns/{id} only for records newer than the cached copy
-- (aveloxis.osv_vulns_needed) and stages them raw (`osv_vuln`). complete() fills the
-- caches, scores CVSS vectors with the cvss crate (v2, v3.x, v4.0; none invented) and
-- updates the repository's findings: first seen, last seen, and resolved only when every
-- query of the repository was answered (a partial scan resolves nothing).

INSERT INTO aveloxis_ops.setting_defaults (name, default_value, kind, description) VALUES
    ('vulnerabilities.cadence', '1 day', 'interval', 'How often a repository''s dependencies are checked against OSV'),
    ('vulnerabilities.max_leased', '0', 'integer', 'Most vulnerabilities jobs leased at once (0: no limit)'),
    ('vulnerabilities.backoff_base', '120 seconds', 'interval', 'Backoff after transient failure n: base x n^2'),
    ('vulnerabilities.sideline_after', '10', 'integer',
     'Consecutive transient failures that sideline a job for one cadence'),
    ('osv.ttl', '1 day', 'interval', 'How long OSV''s answer for a package version is used before it is asked again'),
    ('osv.batch', '5000', 'integer', 'Most package versions one vulnerabilities job asks OSV about (the rest: next run)'),
    ('osv.url', 'https://api.osv.dev/', 'url', 'The OSV API (querybatch and vulns)');

-- OSV's answer per package version: the advisories it lists and when it was asked.
CREATE TABLE aveloxis_data.osv_queries (
    ecosystem  text NOT NULL,
    name       text NOT NULL,
    version    text NOT NULL,
    vuln_ids   text[] NOT NULL,
    checked_at timestamptz NOT NULL,
    PRIMARY KEY (ecosystem, name, version)
);
COMMENT ON TABLE aveloxis_data.osv_queries IS 'Fleet-wide: what OSV answered for each package version in use, and when';

-- OSV records, fetched when OSV's modified is newer than the copy here.
CREATE TABLE aveloxis_data.osv_vulns (
    vuln_id        text PRIMARY KEY,
    modified       timestamptz,
    published      timestamptz,
    withdrawn      timestamptz,
    summary        text,
    aliases        text[] NOT NULL DEFAULT '{}',
    -- LOW, MEDIUM, HIGH, CRITICAL: the database's own label (GHSA's MODERATE is MEDIUM),
    -- else the CVSS score's rating; NULL when neither exists.
    severity       text,
    cvss_v3_vector text,
    cvss_v3_score  numeric(3, 1),
    cvss_v4_vector text,
    cvss_v4_score  numeric(3, 1),
    record         jsonb,
    -- A listed id whose record could not be fetched yet: no details, never a made-up score.
    fetched_at     timestamptz
);
COMMENT ON TABLE aveloxis_data.osv_vulns IS 'Fleet-wide cache of OSV records with their CVSS scores';

-- A repository's findings: one per package version in use and advisory.
CREATE TABLE aveloxis_data.repo_deps_vulnerabilities (
    finding_id    bigint GENERATED BY DEFAULT AS IDENTITY,
    repo_id       bigint NOT NULL REFERENCES aveloxis_data.repos ON DELETE CASCADE,
    ecosystem     text NOT NULL,
    name          text NOT NULL,
    version       text NOT NULL,
    vuln_id       text NOT NULL,
    first_seen_at timestamptz NOT NULL,
    last_seen_at  timestamptz NOT NULL,
    -- Stamped when a complete scan no longer finds it; NULL while open.
    resolved_at   timestamptz,
    PRIMARY KEY (repo_id, finding_id),
    UNIQUE (repo_id, ecosystem, name, version, vuln_id)
);
COMMENT ON TABLE aveloxis_data.repo_deps_vulnerabilities IS
    'Vulnerabilities of each repository''s dependencies, first seen, last seen and resolved';

SELECT pg_catalog.pg_extension_config_dump('aveloxis_data.osv_queries', '');
SELECT pg_catalog.pg_extension_config_dump('aveloxis_data.osv_vulns', '');
SELECT pg_catalog.pg_extension_config_dump('aveloxis_data.repo_deps_vulnerabilities', '');
SELECT pg_catalog.pg_extension_config_dump(
    pg_catalog.pg_get_serial_sequence('aveloxis_data.repo_deps_vulnerabilities', 'finding_id'), '');

-- The ecosystems OSV knows, by the names it uses (ours are OSV's).
CREATE FUNCTION aveloxis_ops.osv_ecosystem(ecosystem text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ecosystem IN ('npm', 'PyPI', 'crates.io', 'Go', 'Maven', 'RubyGems', 'Packagist', 'NuGet', 'Hex', 'Pub',
                         'Hackage', 'SwiftURL', 'CRAN', 'ConanCenter', 'GitHub Actions')
$$;

-- The package versions a repository uses, each once: what its vulnerability scan asks about.
CREATE FUNCTION aveloxis_ops.versions_in_use(repo bigint)
RETURNS TABLE (ecosystem text, name text, version text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT DISTINCT d.ecosystem, d.package, d.version
    FROM aveloxis_data.repo_dependency_decls d
    WHERE d.repo_id = repo AND d.version IS NOT NULL AND d.resolution IN ('locked', 'exact')
      AND aveloxis_ops.osv_ecosystem(d.ecosystem)
$$;

-- The versions a repository uses without an OSV answer younger than osv.ttl, as of `at`:
-- what osv_due hands out, what keeps a scan from resolving findings, what work_left looks for.
CREATE FUNCTION aveloxis_ops.versions_without_answer(repo bigint, at timestamptz)
RETURNS TABLE (ecosystem text, name text, version text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT u.ecosystem, u.name, u.version
    FROM aveloxis_ops.versions_in_use(repo) u
    LEFT JOIN aveloxis_data.osv_queries q ON q.ecosystem = u.ecosystem AND q.name = u.name AND q.version = u.version
    WHERE q.checked_at IS NULL OR q.checked_at < at - aveloxis_ops.setting('osv.ttl')::interval
$$;

-- The OSV settings the agent needs.
CREATE FUNCTION aveloxis.osv_settings()
RETURNS TABLE (url text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    SELECT aveloxis_ops.setting('osv.url')
$$;

-- The package versions of the lease's repository without a fresh OSV answer
-- (aveloxis_ops.versions_without_answer), at most osv.batch. For the agent holding the
-- repository's vulnerabilities lease.
CREATE FUNCTION aveloxis.osv_due(lease_token uuid)
RETURNS TABLE (ecosystem text, name text, version text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    repo bigint := aveloxis_ops.lease_repo(lease_token, 'vulnerabilities');
BEGIN
    RETURN QUERY
    SELECT w.ecosystem, w.name, w.version
    FROM aveloxis_ops.versions_without_answer(repo, aveloxis_ops.clock()) w
    ORDER BY 1, 2, 3
    LIMIT aveloxis_ops.setting('osv.batch')::integer;
END
$$;

-- Of the advisories OSV listed (id, modified), those whose record is not cached or is
-- older: the agent fetches only these.
CREATE FUNCTION aveloxis.osv_vulns_needed(lease_token uuid, ids text[], modified timestamptz[])
RETURNS SETOF text
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
BEGIN
    PERFORM aveloxis_ops.lease_repo(lease_token, 'vulnerabilities');
    RETURN QUERY
    SELECT DISTINCT n.id
    FROM unnest(ids, modified) AS n(id, modified)
    LEFT JOIN aveloxis_data.osv_vulns v ON v.vuln_id = n.id
    WHERE n.id IS NOT NULL
      AND (v.fetched_at IS NULL OR v.modified IS NULL OR n.modified IS NULL OR n.modified > v.modified)
    ORDER BY 1;
END
$$;

-- Applies what a vulnerabilities run staged (called by complete): OSV's answers to the
-- query cache, records to the vulnerability cache (scored), then the repository's
-- findings. Resolutions only when every version the repository uses has an answer
-- within osv.ttl.
CREATE FUNCTION aveloxis_ops.vulnerabilities_apply(repo bigint, run bigint, outcome jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- Set-returning functions' default row estimates make plans look costly enough for JIT,
-- whose compilation costs more than these statements (0.5 s a call measured).
SET jit = off
AS $$
DECLARE
    observed   timestamptz := aveloxis_ops.clock();
    unanswered bigint;
    resolved   bigint;
BEGIN
    PERFORM aveloxis_ops.supersede_staged(repo, run, 'vulnerabilities', observed);
    -- Each answered query: {ecosystem, name, version, vulns: [{id, modified}]} (all pages).
    INSERT INTO aveloxis_data.osv_queries AS q (ecosystem, name, version, vuln_ids, checked_at)
    SELECT DISTINCT ON (1, 2, 3) a.ecosystem, aveloxis_ops.package_key(a.ecosystem, a.name), a.version,
           ARRAY(SELECT DISTINCT v ->> 'id' FROM jsonb_array_elements(coalesce(a.vulns, '[]')) v
                 WHERE v ->> 'id' IS NOT NULL ORDER BY 1),
           observed
    FROM aveloxis_ops.staging s,
         LATERAL jsonb_to_recordset(aveloxis_ops.sanitized_jsonb(s.payload) -> 'answers')
             AS a(ecosystem text, name text, version text, vulns jsonb)
    WHERE s.repo_id = repo AND s.job_run_id = run AND s.drained_at IS NULL AND s.entity = 'osv_results'
      AND a.ecosystem IS NOT NULL AND a.name IS NOT NULL AND a.version IS NOT NULL
    ORDER BY 1, 2, 3, s.staging_id DESC
    ON CONFLICT (ecosystem, name, version) DO UPDATE SET vuln_ids = excluded.vuln_ids, checked_at = excluded.checked_at;

    -- Records: the newest staged copy of each id.
    WITH recs AS (
        SELECT DISTINCT ON (r ->> 'id') r
        FROM aveloxis_ops.staging s, LATERAL aveloxis_ops.sanitized_jsonb(s.payload) r
        WHERE s.repo_id = repo AND s.job_run_id = run AND s.drained_at IS NULL AND s.entity = 'osv_vuln'
          AND r ->> 'id' IS NOT NULL
        ORDER BY r ->> 'id', s.staging_id DESC
    ), vectors AS (
        SELECT r, (SELECT v ->> 'score' FROM jsonb_array_elements(coalesce(r -> 'severity', r #> '{affected,0,severity}', '[]')) v
                   WHERE v ->> 'type' = 'CVSS_V3' LIMIT 1) AS v3,
                  (SELECT v ->> 'score' FROM jsonb_array_elements(coalesce(r -> 'severity', r #> '{affected,0,severity}', '[]')) v
                   WHERE v ->> 'type' = 'CVSS_V4' LIMIT 1) AS v4
        FROM recs
    )
    INSERT INTO aveloxis_data.osv_vulns AS o (vuln_id, modified, published, withdrawn, summary, aliases, severity,
                                              cvss_v3_vector, cvss_v3_score, cvss_v4_vector, cvss_v4_score, record,
                                              fetched_at)
    SELECT x.r ->> 'id', (x.r ->> 'modified')::timestamptz, (x.r ->> 'published')::timestamptz,
           (x.r ->> 'withdrawn')::timestamptz, left(x.r ->> 'summary', 1000),
           ARRAY(SELECT jsonb_array_elements_text(coalesce(x.r -> 'aliases', '[]'))),
           coalesce(CASE upper(x.r #>> '{database_specific,severity}')
                        WHEN 'MODERATE' THEN 'MEDIUM' WHEN 'LOW' THEN 'LOW' WHEN 'MEDIUM' THEN 'MEDIUM'
                        WHEN 'HIGH' THEN 'HIGH' WHEN 'CRITICAL' THEN 'CRITICAL' END,
                    upper(nullif(coalesce(s4.severity, s3.severity), 'none'))),
           x.v3, s3.score, x.v4, s4.score, x.r, observed
    FROM vectors x
    LEFT JOIN LATERAL aveloxis_ops.cvss_score(x.v3) s3 ON true
    LEFT JOIN LATERAL aveloxis_ops.cvss_score(x.v4) s4 ON true
    ON CONFLICT (vuln_id) DO UPDATE SET
        modified = excluded.modified, published = excluded.published, withdrawn = excluded.withdrawn,
        summary = excluded.summary, aliases = excluded.aliases, severity = excluded.severity,
        cvss_v3_vector = excluded.cvss_v3_vector, cvss_v3_score = excluded.cvss_v3_score,
        cvss_v4_vector = excluded.cvss_v4_vector, cvss_v4_score = excluded.cvss_v4_score,
        record = excluded.record, fetched_at = excluded.fetched_at;
    -- Ids listed by OSV whose record is not fetched yet: known, without details.
    INSERT INTO aveloxis_data.osv_vulns (vuln_id)
    SELECT DISTINCT unnest(q.vuln_ids) FROM aveloxis_ops.versions_in_use(repo) u
    JOIN aveloxis_data.osv_queries q ON q.ecosystem = u.ecosystem AND q.name = u.name AND q.version = u.version
    ON CONFLICT (vuln_id) DO NOTHING;

    UPDATE aveloxis_ops.staging s SET drained_at = observed
    WHERE s.repo_id = repo AND s.job_run_id = run AND s.drained_at IS NULL AND s.entity IN ('osv_results', 'osv_vuln');

    -- Findings now: every advisory OSV lists for a version in use (withdrawn ones aside).
    IF to_regclass('pg_temp.aveloxis_findings') IS NULL THEN
        CREATE TEMP TABLE pg_temp.aveloxis_findings (ecosystem text, name text, version text, vuln_id text) ON COMMIT DROP;
    END IF;
    IF (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = 'pg_temp.aveloxis_findings'::regclass)
       <> (SELECT p.proowner FROM pg_catalog.pg_proc p
           WHERE p.oid = 'aveloxis_ops.vulnerabilities_apply(bigint, bigint, jsonb)'::regprocedure) THEN
        RAISE EXCEPTION 'pg_temp.aveloxis_findings belongs to another role' USING ERRCODE = 'insufficient_privilege';
    END IF;
    TRUNCATE pg_temp.aveloxis_findings;
    INSERT INTO pg_temp.aveloxis_findings
    SELECT u.ecosystem, u.name, u.version, id
    FROM aveloxis_ops.versions_in_use(repo) u
    JOIN aveloxis_data.osv_queries q ON q.ecosystem = u.ecosystem AND q.name = u.name AND q.version = u.version,
         unnest(q.vuln_ids) id
    WHERE NOT EXISTS (SELECT FROM aveloxis_data.osv_vulns v WHERE v.vuln_id = id AND v.withdrawn IS NOT NULL);
    INSERT INTO aveloxis_data.repo_deps_vulnerabilities AS f
        (repo_id, ecosystem, name, version, vuln_id, first_seen_at, last_seen_at)
    SELECT repo, n.ecosystem, n.name, n.version, n.vuln_id, observed, observed FROM pg_temp.aveloxis_findings n
    ON CONFLICT (repo_id, ecosystem, name, version, vuln_id) DO UPDATE SET
        last_seen_at = excluded.last_seen_at, resolved_at = NULL;

    SELECT count(*) INTO unanswered FROM aveloxis_ops.versions_without_answer(repo, observed);
    IF unanswered > 0 THEN
        RAISE LOG 'vulnerabilities of repo %: % versions in use without a fresh OSV answer: no finding resolved',
            repo, unanswered;
        RETURN;
    END IF;
    UPDATE aveloxis_data.repo_deps_vulnerabilities f SET resolved_at = observed
    WHERE f.repo_id = repo AND f.resolved_at IS NULL
      AND NOT EXISTS (SELECT FROM pg_temp.aveloxis_findings n
                      WHERE (n.ecosystem, n.name, n.version, n.vuln_id) = (f.ecosystem, f.name, f.version, f.vuln_id));
    GET DIAGNOSTICS resolved = ROW_COUNT;
    IF resolved > 0 THEN
        RAISE LOG 'vulnerabilities of repo %: % findings resolved', repo, resolved;
    END IF;
END
$$;

-- A repository's vulnerabilities for analysts: open ones first, worst first.
CREATE FUNCTION aveloxis.vulnerabilities(repo bigint, include_resolved boolean DEFAULT false)
RETURNS TABLE (ecosystem text, name text, version text, vuln_id text, aliases text[], summary text, severity text,
               cvss_v3_score numeric, cvss_v4_score numeric, first_seen_at timestamptz, resolved_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    SELECT f.ecosystem, f.name, f.version, f.vuln_id, v.aliases, v.summary, v.severity, v.cvss_v3_score,
           v.cvss_v4_score, f.first_seen_at, f.resolved_at
    FROM aveloxis_data.repo_deps_vulnerabilities f
    LEFT JOIN aveloxis_data.osv_vulns v ON v.vuln_id = f.vuln_id
    WHERE f.repo_id = repo AND (include_resolved OR f.resolved_at IS NULL)
    ORDER BY f.resolved_at IS NOT NULL,
             array_position(ARRAY['CRITICAL', 'HIGH', 'MEDIUM', 'LOW'], v.severity) NULLS LAST,
             f.ecosystem, f.name, f.version, f.vuln_id
$$;

-- Whether a packages or vulnerabilities job left part of its repository's work for later
-- (its batch was full): packages the cache still lacks or holds stale, versions still
-- without a fresh OSV answer.
CREATE FUNCTION aveloxis_ops.work_left(repo bigint, job_phase text)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE job_phase
        WHEN 'packages' THEN EXISTS (SELECT FROM aveloxis_ops.stale_packages(repo, aveloxis_ops.clock()))
        WHEN 'vulnerabilities' THEN EXISTS (SELECT FROM aveloxis_ops.versions_without_answer(repo, aveloxis_ops.clock()))
        ELSE false END
$$;

-- sql/sbom.sql
-- SBOMs (docs/dependencies.md, "SBOM"): a repository's dependencies as CycloneDX (1.5 or
-- 1.6) or SPDX 2.3 JSON, built here from the parsed dependencies and the package cache:
-- one component per package version (purl as bom-ref, so duplicates collapse), licences
-- normalised to SPDX identifiers or expressions, the direct ones the repository's own
-- dependencies, optionally the open vulnerabilities. The same data gives the same
-- document (timestamp of the dependency parse, serial number from the content).
-- repo_sbom_scans keeps a CycloneDX document each time the dependency set changes.

CREATE TABLE aveloxis_data.repo_sbom_scans (
    rsb_id       bigint GENERATED BY DEFAULT AS IDENTITY,
    repo_id      bigint NOT NULL REFERENCES aveloxis_data.repos ON DELETE CASCADE,
    sbom_scan    jsonb NOT NULL,
    sbom_format  text NOT NULL,
    sbom_version text NOT NULL,
    -- The dependency set it describes (repo_dependency_scans.set_hash).
    set_hash     text NOT NULL,
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (repo_id, rsb_id)
);
COMMENT ON TABLE aveloxis_data.repo_sbom_scans IS 'An SBOM of each dependency set a repository had (stored when it changes)';
SELECT pg_catalog.pg_extension_config_dump('aveloxis_data.repo_sbom_scans', '');
SELECT pg_catalog.pg_extension_config_dump(
    pg_catalog.pg_get_serial_sequence('aveloxis_data.repo_sbom_scans', 'rsb_id'), '');

-- The components of a repository's SBOM: one per package version from a registry, the
-- scope the most needed of its declarations (runtime over optional over development).
CREATE FUNCTION aveloxis_ops.sbom_components(repo bigint, runtime_only boolean)
RETURNS TABLE (n bigint, ecosystem text, name text, version text, purl text, direct boolean, scope text,
               licence_kind text, licence text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH c AS (
        SELECT d.ecosystem, d.package, min(d.name) AS name, d.version, bool_or(d.direct) AS direct,
               CASE WHEN bool_or(d.scope IN ('runtime', 'peer')) THEN 'required'
                    WHEN bool_or(d.scope = 'optional') THEN 'optional' ELSE 'excluded' END AS scope
        FROM aveloxis_data.repo_dependency_decls d
        WHERE d.repo_id = repo AND d.resolution <> 'non-registry'
          AND (NOT runtime_only OR d.scope IN ('runtime', 'peer', 'optional'))
        GROUP BY d.ecosystem, d.package, d.version
    )
    SELECT row_number() OVER (ORDER BY x.purl), x.ecosystem, x.name, x.version, x.purl, x.direct, x.scope,
           l.kind, l.value
    FROM (SELECT DISTINCT ON (p.purl) c.*, p.purl
          FROM c CROSS JOIN LATERAL (SELECT aveloxis_ops.purl(c.ecosystem, c.name, c.version) AS purl) p
          WHERE p.purl IS NOT NULL
          ORDER BY p.purl, c.direct DESC, c.scope) x
    LEFT JOIN aveloxis_data.package_versions v
           ON v.ecosystem = x.ecosystem AND v.name = x.package AND v.version = x.version
    LEFT JOIN LATERAL aveloxis_ops.spdx_licence(v.licence) l ON true
    ORDER BY x.purl
$$;

-- A repository's SBOM. format: cyclonedx (spec 1.5 or 1.6, the default) or spdx (2.3);
-- scope: all, or runtime (no development, test or build dependencies); vulnerabilities:
-- the open findings (CycloneDX vulnerabilities; SPDX security references).
CREATE FUNCTION aveloxis.sbom(repo bigint, format text DEFAULT 'cyclonedx', spec text DEFAULT NULL,
                              scope text DEFAULT 'all', vulnerabilities boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
-- Set-returning functions' default row estimates make plans look costly enough for JIT,
-- whose compilation costs more than these statements (0.5 s a call measured).
SET jit = off
AS $$
DECLARE
    r          aveloxis_data.repos;
    scan       aveloxis_data.repo_dependency_scans;
    runtime    boolean;
    created    text;
    root_ref   text;
    doc        jsonb;
BEGIN
    PERFORM aveloxis_ops.require_repo(repo);
    IF format NOT IN ('cyclonedx', 'spdx') THEN
        RAISE EXCEPTION 'format must be cyclonedx or spdx, not %', format USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF scope NOT IN ('all', 'runtime') THEN
        RAISE EXCEPTION 'scope must be all or runtime, not %', scope USING ERRCODE = 'invalid_parameter_value';
    END IF;
    spec := coalesce(spec, CASE format WHEN 'cyclonedx' THEN '1.6' ELSE '2.3' END);
    IF (format = 'cyclonedx' AND spec NOT IN ('1.5', '1.6')) OR (format = 'spdx' AND spec <> '2.3') THEN
        RAISE EXCEPTION '% % is not produced', format, spec USING ERRCODE = 'invalid_parameter_value',
            HINT = 'CycloneDX 1.5 or 1.6; SPDX 2.3.';
    END IF;
    runtime := scope = 'runtime';
    SELECT * INTO r FROM aveloxis_data.repos x WHERE x.repo_id = repo;
    SELECT * INTO scan FROM aveloxis_data.repo_dependency_scans s WHERE s.repo_id = repo ORDER BY s.scan_id DESC LIMIT 1;
    IF scan.scan_id IS NULL THEN
        RAISE EXCEPTION 'repository % has no parsed dependencies yet', repo USING ERRCODE = 'no_data_found',
            HINT = 'Its analysis job parses them: aveloxis.why_not_collected(repo).';
    END IF;
    created := to_char(scan.parsed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"');
    root_ref := 'repo:' || repo;

    IF format = 'cyclonedx' THEN
        doc := jsonb_build_object(
            'bomFormat', 'CycloneDX', 'specVersion', spec, 'version', 1,
            'metadata', jsonb_build_object(
                'timestamp', created,
                'tools', jsonb_build_object('components', jsonb_build_array(jsonb_build_object(
                    'type', 'application', 'name', 'pg_aveloxis', 'version', aveloxis.version()))),
                'component', jsonb_build_object(
                    'type', 'application', 'bom-ref', root_ref, 'name', coalesce(r.repo_name, r.repo_git),
                    'externalReferences', jsonb_build_array(jsonb_build_object('type', 'vcs', 'url', r.repo_git)))),
            'components', coalesce((
                SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                    'type', CASE WHEN c.ecosystem = 'GitHub Actions' THEN 'application' ELSE 'library' END,
                    'bom-ref', c.purl, 'name', c.name, 'version', c.version, 'purl', c.purl, 'scope', c.scope,
                    'licenses', CASE c.licence_kind
                        WHEN 'expression' THEN jsonb_build_array(jsonb_build_object('expression', c.licence))
                        WHEN 'id' THEN jsonb_build_array(jsonb_build_object('license', jsonb_build_object('id', c.licence)))
                        WHEN 'name' THEN jsonb_build_array(jsonb_build_object('license', jsonb_build_object('name', c.licence)))
                        END)) ORDER BY c.n)
                FROM aveloxis_ops.sbom_components(repo, runtime) c), '[]'),
            'dependencies', jsonb_build_array(jsonb_build_object(
                'ref', root_ref,
                'dependsOn', coalesce((SELECT jsonb_agg(c.purl ORDER BY c.n)
                                       FROM aveloxis_ops.sbom_components(repo, runtime) c WHERE c.direct), '[]'))));
        IF vulnerabilities THEN
            doc := doc || jsonb_build_object('vulnerabilities', coalesce((
                SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                    'bom-ref', 'vuln:' || v.vuln_id || ':' || v.purls[1],
                    'id', v.vuln_id,
                    'source', jsonb_build_object('name', 'OSV', 'url', 'https://osv.dev/vulnerability/' || v.vuln_id),
                    'ratings', (SELECT jsonb_agg(x.rating ORDER BY x.ord) FROM (VALUES
                        (1, CASE WHEN o.cvss_v3_score IS NOT NULL THEN jsonb_build_object(
                            'score', o.cvss_v3_score, 'severity', lower(s3.severity),
                            'method', CASE WHEN o.cvss_v3_vector LIKE 'CVSS:3.1/%' THEN 'CVSSv31' ELSE 'CVSSv3' END,
                            'vector', o.cvss_v3_vector) END),
                        (2, CASE WHEN o.cvss_v4_score IS NOT NULL THEN jsonb_build_object(
                            'score', o.cvss_v4_score, 'severity', lower(s4.severity), 'method', 'CVSSv4',
                            'vector', o.cvss_v4_vector) END)) AS x(ord, rating)
                        WHERE x.rating IS NOT NULL),
                    'description', o.summary,
                    'affects', (SELECT jsonb_agg(jsonb_build_object('ref', p) ORDER BY p) FROM unnest(v.purls) p)))
                    ORDER BY v.vuln_id)
                FROM (SELECT f.vuln_id, array_agg(DISTINCT c.purl ORDER BY c.purl) AS purls
                      FROM aveloxis_data.repo_deps_vulnerabilities f
                      JOIN aveloxis_ops.sbom_components(repo, runtime) c
                        ON c.ecosystem = f.ecosystem AND aveloxis_ops.package_key(c.ecosystem, c.name) = f.name
                       AND c.version = f.version
                      WHERE f.repo_id = repo AND f.resolved_at IS NULL
                      GROUP BY f.vuln_id) v
                LEFT JOIN aveloxis_data.osv_vulns o ON o.vuln_id = v.vuln_id
                LEFT JOIN LATERAL aveloxis_ops.cvss_score(o.cvss_v3_vector) s3 ON true
                LEFT JOIN LATERAL aveloxis_ops.cvss_score(o.cvss_v4_vector) s4 ON true), '[]'));
        END IF;
        RETURN jsonb_build_object('serialNumber', 'urn:uuid:' || aveloxis_ops.content_uuid(doc)) || doc;
    END IF;

    doc := jsonb_build_object(
        'spdxVersion', 'SPDX-2.3', 'dataLicense', 'CC0-1.0', 'SPDXID', 'SPDXRef-DOCUMENT',
        'name', coalesce(r.repo_name, r.repo_git) || ' dependencies',
        'creationInfo', jsonb_build_object('created', created, 'creators',
                                           jsonb_build_array('Tool: pg_aveloxis-' || aveloxis.version())),
        'packages', jsonb_build_array(jsonb_build_object(
                'SPDXID', 'SPDXRef-Repository', 'name', coalesce(r.repo_name, r.repo_git),
                'downloadLocation', CASE WHEN r.repo_git ~ '^https?://' THEN 'git+' || r.repo_git ELSE 'NOASSERTION' END,
                'filesAnalyzed', false, 'licenseConcluded', 'NOASSERTION', 'licenseDeclared', 'NOASSERTION',
                'copyrightText', 'NOASSERTION'))
            || coalesce((
                SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                    'SPDXID', 'SPDXRef-Package-' || c.n, 'name', c.name, 'versionInfo', c.version,
                    'downloadLocation', 'NOASSERTION', 'filesAnalyzed', false,
                    'licenseConcluded', 'NOASSERTION',
                    'licenseDeclared', CASE WHEN c.licence_kind IN ('id', 'expression') THEN c.licence ELSE 'NOASSERTION' END,
                    'copyrightText', 'NOASSERTION',
                    'externalRefs', jsonb_build_array(jsonb_build_object(
                        'referenceCategory', 'PACKAGE-MANAGER', 'referenceType', 'purl', 'referenceLocator', c.purl))
                        || CASE WHEN vulnerabilities THEN coalesce((
                            SELECT jsonb_agg(jsonb_build_object(
                                'referenceCategory', 'SECURITY', 'referenceType', 'advisory',
                                'referenceLocator', 'https://osv.dev/vulnerability/' || f.vuln_id) ORDER BY f.vuln_id)
                            FROM aveloxis_data.repo_deps_vulnerabilities f
                            WHERE f.repo_id = repo AND f.resolved_at IS NULL AND f.ecosystem = c.ecosystem
                              AND f.name = aveloxis_ops.package_key(c.ecosystem, c.name) AND f.version = c.version), '[]')
                           ELSE '[]' END)) ORDER BY c.n)
                FROM aveloxis_ops.sbom_components(repo, runtime) c), '[]'),
        'relationships', jsonb_build_array(jsonb_build_object(
                'spdxElementId', 'SPDXRef-DOCUMENT', 'relationshipType', 'DESCRIBES',
                'relatedSpdxElement', 'SPDXRef-Repository'))
            || coalesce((
                SELECT jsonb_agg(CASE WHEN c.scope = 'excluded' THEN jsonb_build_object(
                        'spdxElementId', 'SPDXRef-Package-' || c.n, 'relationshipType', 'DEV_DEPENDENCY_OF',
                        'relatedSpdxElement', 'SPDXRef-Repository')
                    ELSE jsonb_build_object(
                        'spdxElementId', 'SPDXRef-Repository', 'relationshipType', 'DEPENDS_ON',
                        'relatedSpdxElement', 'SPDXRef-Package-' || c.n) END ORDER BY c.n)
                FROM aveloxis_ops.sbom_components(repo, runtime) c WHERE c.direct), '[]'));
    RETURN doc || jsonb_build_object('documentNamespace',
        format('https://aveloxis.invalid/spdx/repo-%s-%s', repo, aveloxis_ops.content_uuid(doc)));
END
$$;

-- A UUID (version 4 layout, from an MD5 of the content): the same document, the same id.
CREATE FUNCTION aveloxis_ops.content_uuid(doc jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT regexp_replace(
        overlay(overlay(md5(doc::text) placing '4' from 13 for 1)
                placing substr('89ab', (get_byte(decode(md5(doc::text), 'hex'), 8) & 3) + 1, 1) from 17 for 1),
        '^(.{8})(.{4})(.{4})(.{4})(.{12})$', '\1-\2-\3-\4-\5')
$$;

-- Stores a CycloneDX SBOM of the repository when its dependency set differs from the one
-- the last stored SBOM described (called after each libyear refresh of a packages job).
CREATE FUNCTION aveloxis_ops.store_sbom_if_changed(repo bigint)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current_hash text;
BEGIN
    SELECT s.set_hash INTO current_hash FROM aveloxis_data.repo_dependency_scans s
    WHERE s.repo_id = repo ORDER BY s.scan_id DESC LIMIT 1;
    IF current_hash IS NULL OR current_hash = (SELECT x.set_hash FROM aveloxis_data.repo_sbom_scans x
                                               WHERE x.repo_id = repo ORDER BY x.rsb_id DESC LIMIT 1) THEN
        RETURN false;
    END IF;
    INSERT INTO aveloxis_data.repo_sbom_scans (repo_id, sbom_scan, sbom_format, sbom_version, set_hash, created_at)
    VALUES (repo, aveloxis.sbom(repo, 'cyclonedx', '1.6'), 'CycloneDX', '1.6', current_hash, aveloxis_ops.clock());
    RETURN true;
END
$$;

-- Every repository gets its packages and vulnerabilities jobs.
SELECT count(aveloxis_ops.enqueue_repo(r.repo_id)) FROM aveloxis_data.repos r;

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
        aveloxis.resolve_emails(text[]),
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
        aveloxis.contributor_activity(uuid),
        aveloxis.parse_manifest(text, text),
        aveloxis.parse_manifest(text, bytea),
        aveloxis.manifest_kind(text),
        aveloxis.source_breakers(),
        aveloxis.distribution_stats(),
        aveloxis.distribution_orphans(),
        aveloxis.distribution_repo(text),
        aveloxis.email_chain(text[]),
        aveloxis.person_of(uuid),
        aveloxis.merge_suggestions(integer),
        aveloxis.affiliation_of(uuid, timestamptz),
        aveloxis.commit_affiliation(uuid, text, timestamptz),
        aveloxis.email_affiliation(text, timestamptz),
        aveloxis.enrollments(uuid),
        aveloxis.identity_health(),
        aveloxis.identity_platforms(),
        aveloxis.why_not_enriched(uuid),
        aveloxis.unresolved_commit_authors(integer),
        aveloxis.repo_languages(bigint),
        aveloxis.dependencies(bigint, boolean),
        aveloxis.parse_dependency_file(text, text),
        aveloxis.dependency_file_kind(text),
        aveloxis.dependency_file_patterns(),
        aveloxis.vulnerabilities(bigint, boolean),
        aveloxis.package_cache_stats(),
        aveloxis.sbom(bigint, text, text, text, boolean)
    TO aveloxis_analyst;

    -- aveloxis_agent: the agent API only; no direct access to aveloxis_data.
    GRANT USAGE ON SCHEMA aveloxis TO aveloxis_agent;
    GRANT EXECUTE ON FUNCTION
        aveloxis.version(),
        aveloxis.manifest_kind(text),
        aveloxis.report_source(uuid, text, boolean, text),
        aveloxis.distribution_settings(),
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
        aveloxis.resolve_emails(text[]),
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
        aveloxis.record_commit_author_miss(text, text, text, text),
        aveloxis.record_commit_author_misses(text[], text[], text[], text[]),
        aveloxis.email_chain(text[]),
        aveloxis.claim_identity_batch(text, text, smallint, integer, interval),
        aveloxis.stage_identity(uuid, uuid[], text[], integer[], text[]),
        aveloxis.complete_identity_batch(uuid, uuid[]),
        aveloxis.identity_health(),
        aveloxis.identity_platforms(),
        aveloxis.analysis_state(uuid),
        aveloxis.scorecard_settings(),
        aveloxis.known_dependency_blobs(uuid),
        aveloxis.dependency_file_patterns(),
        aveloxis.packages_due(uuid),
        aveloxis.osv_settings(),
        aveloxis.osv_due(uuid),
        aveloxis.osv_vulns_needed(uuid, text[], timestamptz[]),
        aveloxis.sbom(bigint, text, text, text, boolean)
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
