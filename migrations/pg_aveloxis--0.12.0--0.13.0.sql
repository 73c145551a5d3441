-- pg_aveloxis 0.12.0 -> 0.13.0: the first part of the distribution worker (issue 14) and a
-- refresh that scales (issue 16, the fleet benchmark).
--
-- * aveloxis.parse_manifest(path, content text | bytea): the manifest kind of a file name and
--   the package name its content declares (Rust; docs/distribution.md).
-- * The distribution tables (repo_distribution, repo_distribution_manifest, their _history,
--   repo_distribution_scans), the ecosystem mapping aveloxis_ops.distribution_ecosystems,
--   aveloxis.reparse_manifests() and the analysts' distribution_stats(), distribution_orphans()
--   and distribution_repo(url), granted to aveloxis_analyst (sql/distribution.sql).
-- * A scan's observations: six staging entities under a distribution lease, applied by
--   aveloxis.complete (aveloxis_ops.distribution_apply: one observation time, the answered
--   sources' current rows rotated to history, unusable rows rejected with their reason);
--   aveloxis.manifest_kind(path) and aveloxis_ops.contents_text(content, encoding).
--   claim leaves archived repositories' distribution jobs waiting. Circuit breakers of deps.dev and
--   ecosyste.ms (aveloxis_ops.source_breakers, aveloxis.report_source, aveloxis.source_breakers):
--   while one is open the claim hands out no distribution scan; why_not_collected says why.
--   Distribution settings in the database (distribution.enabled, start_interval, the registries'
--   roots and contact; setting kinds boolean, url and email), aveloxis.distribution_settings()
--   for agents; a paced claim hands out one scan per interval.
-- * aveloxis_data.contributor_actions: pull-request comments found by one semi-join on the
--   union of the two reference tables instead of two EXISTS joined by OR, which ran as a
--   scan of the references per message once they outgrew work_mem (the 100,000-repository
--   fleet's refresh of explorer_contributor_actions did not finish). Same rows.

CREATE FUNCTION aveloxis_ops."contents_text"(
	"content" TEXT, /* Option < & str > */
	"encoding" TEXT /* Option < & str > */
) RETURNS TEXT /* Option < String > */
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'contents_text_wrapper';

CREATE FUNCTION aveloxis."parse_manifest"(
	"path" TEXT, /* & str */
	"content" TEXT /* & str */
) RETURNS TABLE (
	"manifest_type" TEXT,  /* Option < String > */
	"package_name" TEXT  /* Option < String > */
)
IMMUTABLE STRICT PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'parse_manifest_text_wrapper';

CREATE FUNCTION aveloxis."parse_manifest"(
	"path" TEXT, /* & str */
	"content" bytea /* & [u8] */
) RETURNS TABLE (
	"manifest_type" TEXT,  /* Option < String > */
	"package_name" TEXT  /* Option < String > */
)
IMMUTABLE STRICT PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'parse_manifest_bytes_wrapper';

CREATE FUNCTION aveloxis."manifest_kind"(
	"path" TEXT /* & str */
) RETURNS TEXT /* Option < & '_ str > */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'manifest_kind_wrapper';

-- Setting kinds for the distribution settings.
ALTER TABLE aveloxis_ops.setting_defaults DROP CONSTRAINT setting_defaults_kind_check,
    ADD CONSTRAINT setting_defaults_kind_check
                  CHECK (kind IN ('interval', 'integer', 'paths', 'boolean', 'url', 'email'));

-- Distribution observations are staged under a distribution lease.
ALTER TABLE aveloxis_ops.staging DROP CONSTRAINT staging_entity_check,
    ADD CONSTRAINT staging_entity_check
                     CHECK (entity IN ('contributor', 'issue', 'pull_request', 'issue_event', 'issue_comment',
                                       'review_comment', 'release', 'repo_info', 'commit', 'commit_removed',
                                       'repo_files', 'distribution_depsdev', 'distribution_depsdev_package',
                                       'distribution_ecosystems', 'distribution_releases', 'distribution_packages',
                                       'distribution_manifest'));

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
        ELSE '{}'::text[] END
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
       OR EXISTS (SELECT FROM unnest(phases) p WHERE p NOT IN ('collect', 'facade', 'distribution', 'analysis')) THEN
        RAISE EXCEPTION 'unknown phase in %', phases USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Phases are collect, facade, distribution and analysis.';
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
    ORDER BY array_position(ARRAY['collect', 'facade', 'distribution', 'analysis'], j.phase);
END
$$;

CREATE OR REPLACE FUNCTION aveloxis.set_setting(setting_name text, new_value text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    setting_kind text;
BEGIN
    SELECT s.kind INTO setting_kind FROM aveloxis_ops.settings s WHERE s.name = setting_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown setting "%"', setting_name
            USING ERRCODE = 'undefined_object', HINT = 'SELECT name FROM aveloxis_ops.settings lists them.';
    END IF;
    BEGIN
        IF setting_kind = 'interval' THEN
            PERFORM new_value::interval;
        ELSIF setting_kind = 'paths' THEN
            IF EXISTS (SELECT FROM unnest(string_to_array(new_value, ',')) p
                       WHERE btrim(p) <> '' AND (btrim(p) !~ '^/' OR btrim(p) ~ '(^|/)\.\.?(/|$)')) THEN
                RAISE EXCEPTION 'not absolute';
            END IF;
        ELSIF setting_kind = 'boolean' THEN
            IF new_value IS NULL OR new_value NOT IN ('true', 'false') THEN
                RAISE EXCEPTION 'not a boolean';
            END IF;
        ELSIF setting_kind = 'url' THEN
            IF new_value IS NULL OR new_value !~ '^https?://[^/\s?#]+(/[^\s?#]*)?$' THEN
                RAISE EXCEPTION 'not a URL';
            END IF;
        ELSIF setting_kind = 'email' THEN
            IF new_value IS NULL OR (new_value <> '' AND new_value !~ '^[^@\s]+@[^@\s]+\.[^@\s]+$') THEN
                RAISE EXCEPTION 'not an email';
            END IF;
        ELSIF new_value::integer < 0 THEN
            RAISE EXCEPTION 'negative';
        END IF;
    EXCEPTION WHEN OTHERS THEN
        RAISE EXCEPTION 'setting "%" takes % values; "%" is not one', setting_name,
            CASE setting_kind WHEN 'interval' THEN 'interval (e.g. ''1 day'')'
                              WHEN 'paths' THEN 'comma-separated absolute directory paths without . or .. (e.g. ''/srv/git,/data/repos'')'
                              WHEN 'boolean' THEN 'true or false'
                              WHEN 'url' THEN 'http(s) URL (e.g. ''https://api.deps.dev/'')'
                              WHEN 'email' THEN 'email address (or '''' for none)'
                              ELSE 'non-negative integer' END, new_value
            USING ERRCODE = 'invalid_parameter_value';
    END;
    INSERT INTO aveloxis_ops.setting_overrides AS o (name, value) VALUES (setting_name, new_value)
    ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value;
    IF setting_name LIKE '%.cadence' THEN
        PERFORM aveloxis_ops.realign_due_dates(split_part(setting_name, '.', 1));
    END IF;
END
$$;

-- sql/distribution.sql, whole.
-- Distribution: where each repository is published and which manifests declare it
-- (reference 002_*; docs/distribution.md).
--
--   aveloxis.parse_manifest(path, content)   manifest kind and declared name (Rust, IMMUTABLE)
--   aveloxis.reparse_manifests()             re-reads stored manifests after a parser fix
--   aveloxis.distribution_stats()            fleet roll-up
--   aveloxis.distribution_orphans()          manifests declaring a package no registry shows
--   aveloxis.distribution_repo(url)          one repository's evidence
--
-- Current tables hold the latest scan's rows (natural-key uniques); the _history tables
-- every earlier snapshot, without those uniques (rotating the same package twice must
-- never trip 23505, the reference's v0.25.1 defect).

-- Registry evidence: one row per (ecosystem, package, source) of the latest scan.
CREATE TABLE aveloxis_data.repo_distribution (
    distribution_id      bigint GENERATED BY DEFAULT AS IDENTITY,
    repo_id              bigint NOT NULL REFERENCES aveloxis_data.repos ON DELETE CASCADE,
    -- Lower-case registry names: deps.dev systems (npm, pypi, maven, cargo, go, rubygems,
    -- nuget), ecosyste.ms ecosystems (conda, cran, bioconductor, packagist, hex, ...),
    -- release-asset kinds (deb, rpm, apk, ...), GitHub Packages types (container, docker).
    ecosystem            text NOT NULL CHECK (ecosystem = lower(ecosystem) AND ecosystem <> ''),
    package_name         text NOT NULL CHECK (package_name <> ''),
    -- Which source saw it; two sources seeing one package are two rows, each auditable.
    source               text NOT NULL CHECK (source IN ('deps.dev', 'ecosyste.ms', 'github_release_asset',
                                                         'github_packages')),
    -- Distinct versions the source listed (deps.dev lists at most 1,500: a lower bound).
    version_count        integer,
    first_published_at   timestamptz,
    latest_published_at  timestamptz,
    latest_version       text,
    registry_url         text,
    tool_source          text,
    tool_version         text,
    data_source          text,
    -- The scan's one observation time, shared by every row it wrote.
    data_collection_date timestamptz NOT NULL,
    PRIMARY KEY (repo_id, distribution_id),
    UNIQUE (repo_id, ecosystem, package_name, source)
);
COMMENT ON TABLE aveloxis_data.repo_distribution IS
    'Registry evidence of where each repository is published (latest distribution scan)';

CREATE TABLE aveloxis_data.repo_distribution_history (
    history_id           bigint GENERATED BY DEFAULT AS IDENTITY,
    distribution_id      bigint NOT NULL,
    repo_id              bigint NOT NULL REFERENCES aveloxis_data.repos ON DELETE CASCADE,
    ecosystem            text NOT NULL,
    package_name         text NOT NULL,
    source               text NOT NULL,
    version_count        integer,
    first_published_at   timestamptz,
    latest_published_at  timestamptz,
    latest_version       text,
    registry_url         text,
    tool_source          text,
    tool_version         text,
    data_source          text,
    data_collection_date timestamptz NOT NULL,
    -- When a later scan replaced it.
    rotated_at           timestamptz NOT NULL,
    PRIMARY KEY (repo_id, history_id)
);
COMMENT ON TABLE aveloxis_data.repo_distribution_history IS 'Earlier distribution scans'' registry evidence';
CREATE INDEX repo_distribution_history_pkg_idx
    ON aveloxis_data.repo_distribution_history (repo_id, ecosystem, package_name);

-- In-repo manifests: one row per manifest file of the latest scan, with its content so a
-- parser fix re-parses it (reparse_manifests) without collecting again.
CREATE TABLE aveloxis_data.repo_distribution_manifest (
    manifest_id           bigint GENERATED BY DEFAULT AS IDENTITY,
    repo_id               bigint NOT NULL REFERENCES aveloxis_data.repos ON DELETE CASCADE,
    manifest_path         text NOT NULL,
    manifest_type         text NOT NULL,
    -- What the file itself declares; NULL when it declares none (a Gemfile, a virtual
    -- workspace) or only through something it does not define.
    package_name_declared text,
    blob_sha              text,
    content_bytes         integer,
    content               text COMPRESSION lz4,
    tool_source           text,
    tool_version          text,
    data_source           text,
    data_collection_date  timestamptz NOT NULL,
    PRIMARY KEY (repo_id, manifest_id),
    UNIQUE (repo_id, manifest_path)
);
COMMENT ON TABLE aveloxis_data.repo_distribution_manifest IS
    'Packaging manifests found in each repository and the package name each declares (latest scan)';

CREATE TABLE aveloxis_data.repo_distribution_manifest_history (
    history_id            bigint GENERATED BY DEFAULT AS IDENTITY,
    manifest_id           bigint NOT NULL,
    repo_id               bigint NOT NULL REFERENCES aveloxis_data.repos ON DELETE CASCADE,
    manifest_path         text NOT NULL,
    manifest_type         text NOT NULL,
    package_name_declared text,
    blob_sha              text,
    content_bytes         integer,
    tool_source           text,
    tool_version          text,
    data_source           text,
    data_collection_date  timestamptz NOT NULL,
    rotated_at            timestamptz NOT NULL,
    PRIMARY KEY (repo_id, history_id)
);
COMMENT ON TABLE aveloxis_data.repo_distribution_manifest_history IS 'Earlier distribution scans'' manifests';

-- The latest scan of each repository: when, and whether every source answered (a
-- partial scan is claimed again ahead of its cadence, and its orphans are flagged).
CREATE TABLE aveloxis_data.repo_distribution_scans (
    repo_id              bigint PRIMARY KEY REFERENCES aveloxis_data.repos ON DELETE CASCADE,
    scanned_at           timestamptz NOT NULL,
    scan_complete        boolean NOT NULL,
    -- Per source: "ok", "none" (answered, nothing found) or the error class.
    sources              jsonb NOT NULL DEFAULT '{}',
    registry_rows        integer NOT NULL DEFAULT 0,
    manifest_rows        integer NOT NULL DEFAULT 0,
    -- Staged rows the scan did not use: of sources that did not answer, files that are no
    -- manifest, leftovers of earlier scans that never completed (rejected rows are in
    -- staging_rejects instead).
    unused_rows          integer NOT NULL DEFAULT 0
);
COMMENT ON TABLE aveloxis_data.repo_distribution_scans IS 'When each repository''s distribution was last scanned, and whether fully';

-- Which registry ecosystems satisfy a manifest kind's intent: composer publishes to
-- packagist, an R package to CRAN or Bioconductor. Editable: rows a DBA adds
-- (builtin = false) are kept by pg_dump.
CREATE TABLE aveloxis_ops.distribution_ecosystems (
    manifest_type text NOT NULL,
    ecosystem     text NOT NULL CHECK (ecosystem = lower(ecosystem)),
    builtin       boolean NOT NULL DEFAULT false,
    PRIMARY KEY (manifest_type, ecosystem)
);
COMMENT ON TABLE aveloxis_ops.distribution_ecosystems IS
    'Registry ecosystems whose evidence satisfies a manifest kind (distribution_orphans)';
INSERT INTO aveloxis_ops.distribution_ecosystems (manifest_type, ecosystem, builtin) VALUES
    ('npm', 'npm', true), ('cargo', 'cargo', true), ('pypi', 'pypi', true), ('maven', 'maven', true),
    ('rubygems', 'rubygems', true), ('composer', 'packagist', true), ('composer', 'composer', true),
    ('hex', 'hex', true), ('swiftpm', 'swiftpm', true), ('pub', 'pub', true), ('nuget', 'nuget', true),
    ('hackage', 'hackage', true), ('conan', 'conan', true), ('cocoapods', 'cocoapods', true),
    ('julia', 'julia', true), ('cran', 'cran', true), ('cran', 'bioconductor', true), ('conda', 'conda', true);

SELECT pg_catalog.pg_extension_config_dump('aveloxis_data.repo_distribution', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('aveloxis_data.repo_distribution', 'distribution_id'), '');
SELECT pg_catalog.pg_extension_config_dump('aveloxis_data.repo_distribution_history', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('aveloxis_data.repo_distribution_history', 'history_id'), '');
SELECT pg_catalog.pg_extension_config_dump('aveloxis_data.repo_distribution_manifest', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('aveloxis_data.repo_distribution_manifest', 'manifest_id'), '');
SELECT pg_catalog.pg_extension_config_dump('aveloxis_data.repo_distribution_manifest_history', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('aveloxis_data.repo_distribution_manifest_history', 'history_id'), '');
SELECT pg_catalog.pg_extension_config_dump('aveloxis_data.repo_distribution_scans', '');
SELECT pg_catalog.pg_extension_config_dump('aveloxis_ops.distribution_ecosystems', 'WHERE NOT builtin');

-- Re-reads every stored manifest (or one repository's) with the installed parser;
-- returns how many rows changed kind or declared name. A parser fix reaches stored
-- data with this call, no collection needed.
CREATE FUNCTION aveloxis.reparse_manifests(repo_id bigint DEFAULT NULL)
RETURNS bigint
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    WITH parsed AS (
        SELECT m.repo_id, m.manifest_id, p.manifest_type, p.package_name
        FROM aveloxis_data.repo_distribution_manifest m,
             aveloxis.parse_manifest(m.manifest_path, m.content) p
        WHERE m.content IS NOT NULL AND (reparse_manifests.repo_id IS NULL OR m.repo_id = reparse_manifests.repo_id)
    ), changed AS (
        UPDATE aveloxis_data.repo_distribution_manifest m
        SET manifest_type = coalesce(p.manifest_type, m.manifest_type), package_name_declared = p.package_name,
            tool_version = aveloxis.version()
        FROM parsed p
        WHERE m.repo_id = p.repo_id AND m.manifest_id = p.manifest_id
          AND (coalesce(p.manifest_type, m.manifest_type), p.package_name)
              IS DISTINCT FROM (m.manifest_type, m.package_name_declared)
        RETURNING 1
    )
    SELECT count(*) FROM changed
$$;

-- Manifests that declare a package while no registry evidence of a matching ecosystem
-- exists for the repository (the reference's headline query, through the ecosystem
-- mapping so composer/packagist or cran/bioconductor do not over-report). A manifest
-- declaring no name (a Gemfile) is not an intent to publish. partial_scan: a source did
-- not answer in the latest scan, so the evidence may be missing rather than absent.
CREATE FUNCTION aveloxis.distribution_orphans()
RETURNS TABLE (repo_id bigint, repo text, manifest_path text, manifest_type text, package_name text,
               registries_found text[], partial_scan boolean, observed_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    SELECT m.repo_id, r.repo_git, m.manifest_path, m.manifest_type, m.package_name_declared,
           (SELECT coalesce(array_agg(DISTINCT d.ecosystem ORDER BY d.ecosystem), '{}')
            FROM aveloxis_data.repo_distribution d WHERE d.repo_id = m.repo_id),
           NOT coalesce(s.scan_complete, true), m.data_collection_date
    FROM aveloxis_data.repo_distribution_manifest m
    JOIN aveloxis_data.repos r ON r.repo_id = m.repo_id
    LEFT JOIN aveloxis_data.repo_distribution_scans s ON s.repo_id = m.repo_id
    WHERE m.package_name_declared IS NOT NULL
      AND NOT EXISTS (
          SELECT FROM aveloxis_data.repo_distribution d
          WHERE d.repo_id = m.repo_id
            AND (d.ecosystem = m.manifest_type
                 OR d.ecosystem IN (SELECT e.ecosystem FROM aveloxis_ops.distribution_ecosystems e
                                    WHERE e.manifest_type = m.manifest_type)))
    ORDER BY r.repo_git, m.manifest_path
$$;

-- The fleet at a glance: repositories with a distribution job, scanned, with registry
-- evidence, with manifests declaring a package, and those whose manifests no registry
-- shows (repositories with at least one orphan).
CREATE FUNCTION aveloxis.distribution_stats()
RETURNS TABLE (repos bigint, eligible bigint, scanned bigint, partial_scans bigint, with_registry bigint,
               with_manifest bigint, manifest_without_registry bigint, registry_rows bigint, manifest_rows bigint,
               last_scan_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    SELECT (SELECT count(*) FROM aveloxis_data.repos),
           (SELECT count(*) FROM aveloxis_ops.jobs j JOIN aveloxis_data.repos r ON r.repo_id = j.repo_id
            WHERE j.phase = 'distribution' AND NOT coalesce(r.repo_archived, false)),
           (SELECT count(*) FROM aveloxis_data.repo_distribution_scans),
           (SELECT count(*) FROM aveloxis_data.repo_distribution_scans WHERE NOT scan_complete),
           (SELECT count(DISTINCT d.repo_id) FROM aveloxis_data.repo_distribution d),
           (SELECT count(DISTINCT m.repo_id) FROM aveloxis_data.repo_distribution_manifest m
            WHERE m.package_name_declared IS NOT NULL),
           (SELECT count(DISTINCT o.repo_id) FROM aveloxis.distribution_orphans() o),
           (SELECT count(*) FROM aveloxis_data.repo_distribution),
           (SELECT count(*) FROM aveloxis_data.repo_distribution_manifest),
           (SELECT max(scanned_at) FROM aveloxis_data.repo_distribution_scans)
$$;

-- One repository's evidence: registry rows and manifests of its latest scan.
CREATE FUNCTION aveloxis.distribution_repo(url text)
RETURNS TABLE (kind text, ecosystem text, package_name text, source text, version_count integer,
               first_published_at timestamptz, latest_published_at timestamptz, observed_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    repo bigint := aveloxis.resolve_repo(url);
BEGIN
    IF repo IS NULL THEN
        RAISE EXCEPTION 'no repository is registered at %', url USING ERRCODE = 'no_data_found',
            HINT = 'aveloxis.add_repo(<url>) registers it; aveloxis.registry_counts() lists what is there.';
    END IF;
    RETURN QUERY
    SELECT 'registry', d.ecosystem, d.package_name, d.source, d.version_count, d.first_published_at,
           d.latest_published_at, d.data_collection_date
    FROM aveloxis_data.repo_distribution d WHERE d.repo_id = repo
    UNION ALL
    SELECT 'manifest', m.manifest_type, m.package_name_declared, m.manifest_path, NULL, NULL, NULL,
           m.data_collection_date
    FROM aveloxis_data.repo_distribution_manifest m WHERE m.repo_id = repo
    ORDER BY 1 DESC, 2, 3, 4;
END
$$;

-- ---------------------------------------------------------------------------------
-- A scan's observations. The agent stages what each source returned, as returned,
-- under its distribution lease (staging contract v1, docs/distribution.md):
--   distribution_depsdev          deps.dev GetProjectPackageVersions body ({"versions": [...]})
--   distribution_depsdev_package  deps.dev GetPackage body, one per package (publish dates)
--   distribution_ecosystems       the ecosyste.ms lookup array (one page each)
--   distribution_releases         a page of GitHub releases (their assets' names)
--   distribution_packages         a page of GitHub Packages of one package_type
--   distribution_manifest         a Contents API file object (path, content, encoding, sha)
-- and `complete` applies them (distribution_apply) in its own transaction: one
-- observation time for every row, current rows of the sources that answered rotated to
-- history, fresh rows inserted. Nothing is written before the scan completes, so a scan
-- that fails leaves the last complete evidence in place.

-- The registry ecosystem a release asset's file name stands for (reference 002 §3.3).
CREATE FUNCTION aveloxis_ops.release_asset_ecosystem(asset_name text)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE pg_catalog.lower(pg_catalog.substring(asset_name, '\.([A-Za-z0-9]+)$'))
        WHEN 'whl' THEN 'pypi' WHEN 'gem' THEN 'rubygems' WHEN 'jar' THEN 'maven' WHEN 'war' THEN 'maven'
        WHEN 'ear' THEN 'maven' WHEN 'nupkg' THEN 'nuget' WHEN 'crate' THEN 'cargo' WHEN 'deb' THEN 'deb'
        WHEN 'rpm' THEN 'rpm' WHEN 'apk' THEN 'apk' END
$$;

-- The sources a scan can report on (outcome.sources keys), and the staged entities.
CREATE FUNCTION aveloxis_ops.distribution_sources()
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ARRAY['deps.dev', 'ecosyste.ms', 'github_release_asset', 'github_packages', 'contents'] $$;

-- The run's staged observations, parsed once, as JSON rows for distribution_rows():
-- each with the source it came from, the decoded text of a manifest, and err saying why
-- it cannot be used.
CREATE FUNCTION aveloxis_ops.distribution_docs(repo bigint, run bigint)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'staging_id', s.staging_id, 'entity', s.entity, 'context', s.context, 'doc', p.doc,
               'source', CASE s.entity
                   WHEN 'distribution_depsdev' THEN 'deps.dev' WHEN 'distribution_depsdev_package' THEN 'deps.dev'
                   WHEN 'distribution_ecosystems' THEN 'ecosyste.ms' WHEN 'distribution_releases' THEN 'github_release_asset'
                   WHEN 'distribution_packages' THEN 'github_packages' ELSE 'contents' END,
               'content', c.content,
               'err', CASE WHEN p.err IS NOT NULL THEN 'payload is not valid JSON: ' || p.err
                   WHEN s.entity IN ('distribution_ecosystems', 'distribution_releases', 'distribution_packages')
                        AND jsonb_typeof(p.doc) <> 'array'
                       THEN format('a %s payload is the JSON array the API returns, not a %s', s.entity, jsonb_typeof(p.doc))
                   WHEN s.entity IN ('distribution_depsdev', 'distribution_depsdev_package', 'distribution_manifest')
                        AND jsonb_typeof(p.doc) <> 'object'
                       THEN format('a %s payload is the JSON object the API returns, not a %s', s.entity, jsonb_typeof(p.doc))
                   WHEN s.entity = 'distribution_manifest' AND nullif(p.doc ->> 'path', '') IS NULL
                       THEN 'a manifest payload needs the file''s "path"'
                   WHEN s.entity = 'distribution_manifest' AND c.content IS NULL
                       THEN format('the content of %s is not valid %s', p.doc ->> 'path', p.doc ->> 'encoding')
                   WHEN s.entity = 'distribution_packages' AND nullif(s.context ->> 'package_type', '') IS NULL
                       THEN 'a packages payload needs its package_type in the context' END)
           ORDER BY s.staging_id), '[]')
    FROM aveloxis_ops.staging s, LATERAL aveloxis_ops.parse_payload(s.payload) p,
         LATERAL (SELECT CASE WHEN s.entity = 'distribution_manifest' AND jsonb_typeof(p.doc) = 'object'
                              THEN aveloxis_ops.contents_text(coalesce(p.doc ->> 'content', ''), p.doc ->> 'encoding')
                         END AS content) c
    WHERE s.repo_id = repo AND s.job_run_id = run AND s.drained_at IS NULL
      AND s.entity = ANY (aveloxis_ops.phase_entities('distribution'))
$$;

-- The rows of distribution_docs().
CREATE FUNCTION aveloxis_ops.distribution_rows(docs jsonb)
RETURNS TABLE (staging_id bigint, entity text, source text, context jsonb, doc jsonb, content text, err text)
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT d.staging_id, d.entity, d.source, d.context, d.doc, d.content, d.err
    FROM jsonb_to_recordset(docs) AS d(staging_id bigint, entity text, source text, context jsonb, doc jsonb,
                                       content text, err text)
$$;

-- Applies a completed scan (called by aveloxis.complete for a distribution lease).
-- sources: {"deps.dev": "ok" | "none" | <error class>, ...}; a source that did not
-- answer keeps its current rows (not rotated, not replaced) and its staged rows are not
-- used. Without sources, a whole scan counts every source as answered; a partial one
-- without sources rotates nothing but what it staged for.
CREATE FUNCTION aveloxis_ops.distribution_apply(repo bigint, run bigint, whole boolean, sources jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    observed   timestamptz := aveloxis_ops.clock();
    answered   text[];
    bad        record;
    docs       jsonb;
    owner_name text;
    repo_name  text;
    superseded bigint;
    version    text := aveloxis.version();
BEGIN
    IF sources IS NOT NULL AND jsonb_typeof(sources) <> 'object' THEN
        RAISE EXCEPTION 'outcome.sources must be an object like {"deps.dev": "ok", "ecosyste.ms": "transient"}'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT r.repo_owner, r.repo_name INTO owner_name, repo_name FROM aveloxis_data.repos r WHERE r.repo_id = repo;
    -- One distribution apply per repository at a time (a late complete of an expired
    -- lease cannot reach here: its token no longer holds).
    PERFORM pg_advisory_xact_lock(hashtextextended('aveloxis.distribution', repo));

    -- Rows staged by earlier runs that never completed: this scan supersedes them.
    WITH old AS (
        UPDATE aveloxis_ops.staging s SET drained_at = observed
        WHERE s.repo_id = repo AND s.drained_at IS NULL AND s.job_run_id IS DISTINCT FROM run
          AND s.entity = ANY (aveloxis_ops.phase_entities('distribution'))
        RETURNING 1
    )
    SELECT count(*) INTO superseded FROM old;
    IF superseded > 0 THEN
        RAISE LOG 'distribution of repo %: % staged rows of earlier, unfinished scans superseded', repo, superseded;
    END IF;

    -- The run's observations, parsed once. Unusable rows are rejected with their reason;
    -- the rest of the scan applies.
    docs := aveloxis_ops.distribution_docs(repo, run);
    FOR bad IN SELECT d.staging_id, d.entity, d.err FROM aveloxis_ops.distribution_rows(docs) d
               WHERE d.err IS NOT NULL LOOP
        PERFORM aveloxis_ops.reject(repo, ARRAY[bad.staging_id], bad.entity || ': ' || bad.err, '22P02');
    END LOOP;

    answered := CASE
        WHEN sources IS NOT NULL THEN
            ARRAY(SELECT k FROM jsonb_each_text(sources) e(k, v) WHERE v IN ('ok', 'none')
                                                                    AND k = ANY (aveloxis_ops.distribution_sources()))
        WHEN whole THEN aveloxis_ops.distribution_sources()
        ELSE ARRAY(SELECT DISTINCT d.source FROM aveloxis_ops.distribution_rows(docs) d WHERE d.err IS NULL) END;

    INSERT INTO aveloxis_data.repo_distribution_history
        (distribution_id, repo_id, ecosystem, package_name, source, version_count, first_published_at,
         latest_published_at, latest_version, registry_url, tool_source, tool_version, data_source,
         data_collection_date, rotated_at)
    SELECT d.distribution_id, d.repo_id, d.ecosystem, d.package_name, d.source, d.version_count, d.first_published_at,
           d.latest_published_at, d.latest_version, d.registry_url, d.tool_source, d.tool_version, d.data_source,
           d.data_collection_date, observed
    FROM aveloxis_data.repo_distribution d WHERE d.repo_id = repo AND d.source = ANY (answered);
    DELETE FROM aveloxis_data.repo_distribution d WHERE d.repo_id = repo AND d.source = ANY (answered);

    WITH usable AS MATERIALIZED (
        SELECT d.entity, d.context, d.doc FROM aveloxis_ops.distribution_rows(docs) d WHERE d.err IS NULL
    ), depsdev AS (
        -- Versions whose repository is only the issue tracker are not this repository's
        -- packages; a version listed twice (source and tracker) counts once.
        SELECT lower(v #>> '{versionKey,system}') AS ecosystem, v #>> '{versionKey,name}' AS package_name,
               count(DISTINCT v #>> '{versionKey,version}')::integer AS version_count
        FROM usable d, jsonb_array_elements(CASE WHEN jsonb_typeof(d.doc -> 'versions') = 'array'
                                               THEN d.doc -> 'versions' ELSE '[]' END) v
        WHERE d.entity = 'distribution_depsdev' AND coalesce(v ->> 'relationType', '') <> 'ISSUE_TRACKER'
          AND nullif(v #>> '{versionKey,system}', '') IS NOT NULL AND nullif(v #>> '{versionKey,name}', '') IS NOT NULL
        GROUP BY 1, 2
    ), depsdev_detail AS (
        SELECT lower(d.doc #>> '{packageKey,system}') AS ecosystem, d.doc #>> '{packageKey,name}' AS package_name,
               min(aveloxis_ops.forge_timestamp(v ->> 'publishedAt')) AS first_published_at,
               max(aveloxis_ops.forge_timestamp(v ->> 'publishedAt')) AS latest_published_at,
               (array_agg(v #>> '{versionKey,version}') FILTER (WHERE v ->> 'isDefault' = 'true'))[1] AS latest_version
        FROM usable d, jsonb_array_elements(CASE WHEN jsonb_typeof(d.doc -> 'versions') = 'array'
                                               THEN d.doc -> 'versions' ELSE '[]' END) v
        WHERE d.entity = 'distribution_depsdev_package'
        GROUP BY 1, 2
    ), fresh AS (
        SELECT 'deps.dev' AS source, p.ecosystem, p.package_name, p.version_count, x.first_published_at,
               x.latest_published_at, x.latest_version, NULL::text AS registry_url
        FROM depsdev p LEFT JOIN depsdev_detail x USING (ecosystem, package_name)
        UNION ALL
        SELECT 'ecosyste.ms', lower(coalesce(nullif(p ->> 'ecosystem', ''), p #>> '{registry,ecosystem}')), p ->> 'name',
               max(CASE WHEN jsonb_typeof(p -> 'versions_count') = 'number' THEN (p ->> 'versions_count')::numeric END)::integer,
               min(aveloxis_ops.forge_timestamp(p ->> 'first_release_published_at')),
               max(aveloxis_ops.forge_timestamp(p ->> 'latest_release_published_at')),
               max(p ->> 'latest_release_number'), max(p ->> 'registry_url')
        FROM usable d, jsonb_array_elements(d.doc) p
        WHERE d.entity = 'distribution_ecosystems' AND jsonb_typeof(p) = 'object' AND nullif(p ->> 'name', '') IS NOT NULL
          AND nullif(coalesce(nullif(p ->> 'ecosystem', ''), p #>> '{registry,ecosystem}'), '') IS NOT NULL
        GROUP BY 2, 3
        UNION ALL
        -- Assets of the repository's releases: the package is the repository's.
        SELECT 'github_release_asset', aveloxis_ops.release_asset_ecosystem(a ->> 'name'), repo_name,
               count(DISTINCT coalesce(r ->> 'id', r ->> 'tag_name'))::integer,
               min(aveloxis_ops.forge_timestamp(r ->> 'published_at')),
               max(aveloxis_ops.forge_timestamp(r ->> 'published_at')),
               (array_agg(r ->> 'tag_name' ORDER BY aveloxis_ops.forge_timestamp(r ->> 'published_at') DESC NULLS LAST))[1],
               NULL
        FROM usable d, jsonb_array_elements(d.doc) r,
             jsonb_array_elements(CASE WHEN jsonb_typeof(r -> 'assets') = 'array' THEN r -> 'assets' ELSE '[]' END) a
        WHERE d.entity = 'distribution_releases' AND aveloxis_ops.release_asset_ecosystem(a ->> 'name') IS NOT NULL
        GROUP BY 2
        UNION ALL
        -- The owner's packages that name this repository (a package without one is not it).
        SELECT 'github_packages', CASE lower(d.context ->> 'package_type') WHEN 'docker' THEN 'container'
                                                                         ELSE lower(d.context ->> 'package_type') END,
               p ->> 'name',
               max(CASE WHEN jsonb_typeof(p -> 'version_count') = 'number' THEN (p ->> 'version_count')::numeric END)::integer,
               min(aveloxis_ops.forge_timestamp(p ->> 'created_at')), max(aveloxis_ops.forge_timestamp(p ->> 'updated_at')),
               NULL, max(p ->> 'html_url')
        FROM usable d, jsonb_array_elements(d.doc) p
        WHERE d.entity = 'distribution_packages' AND jsonb_typeof(p) = 'object' AND nullif(p ->> 'name', '') IS NOT NULL
          AND lower(p #>> '{repository,full_name}') = lower(owner_name || '/' || repo_name)
        GROUP BY 2, 3
    )
    INSERT INTO aveloxis_data.repo_distribution AS t
        (repo_id, ecosystem, package_name, source, version_count, first_published_at, latest_published_at,
         latest_version, registry_url, tool_source, tool_version, data_source, data_collection_date)
    SELECT repo, f.ecosystem, f.package_name, f.source, f.version_count, f.first_published_at, f.latest_published_at,
           f.latest_version, f.registry_url, 'pg_aveloxis', version, f.source, observed
    FROM fresh f
    WHERE f.source = ANY (answered) AND f.ecosystem <> '' AND f.package_name <> ''
    ORDER BY f.ecosystem, f.package_name, f.source
    ON CONFLICT (repo_id, ecosystem, package_name, source) DO UPDATE
        SET version_count = greatest(t.version_count, EXCLUDED.version_count);

    IF 'contents' = ANY (answered) THEN
        INSERT INTO aveloxis_data.repo_distribution_manifest_history
            (manifest_id, repo_id, manifest_path, manifest_type, package_name_declared, blob_sha, content_bytes,
             tool_source, tool_version, data_source, data_collection_date, rotated_at)
        SELECT m.manifest_id, m.repo_id, m.manifest_path, m.manifest_type, m.package_name_declared, m.blob_sha,
               m.content_bytes, m.tool_source, m.tool_version, m.data_source, m.data_collection_date, observed
        FROM aveloxis_data.repo_distribution_manifest m WHERE m.repo_id = repo;
        DELETE FROM aveloxis_data.repo_distribution_manifest m WHERE m.repo_id = repo;
        -- A file staged twice keeps its last copy; a file that is no manifest is not one.
        INSERT INTO aveloxis_data.repo_distribution_manifest
            (repo_id, manifest_path, manifest_type, package_name_declared, blob_sha, content_bytes, content,
             tool_source, tool_version, data_source, data_collection_date)
        SELECT DISTINCT ON (x.path) repo, x.path, p.manifest_type, p.package_name, x.sha, octet_length(x.content),
               x.content, 'pg_aveloxis', version, 'contents', observed
        FROM (SELECT d.staging_id, ltrim(d.doc ->> 'path', '/') AS path, d.doc ->> 'sha' AS sha, d.content
              FROM aveloxis_ops.distribution_rows(docs) d
              WHERE d.err IS NULL AND d.entity = 'distribution_manifest') x,
             aveloxis.parse_manifest(x.path, x.content) p
        WHERE p.manifest_type IS NOT NULL
        ORDER BY x.path, x.staging_id DESC;
    END IF;

    SELECT superseded + count(*) FILTER (WHERE d.source <> ALL (answered)
           OR (d.entity = 'distribution_manifest' AND aveloxis.manifest_kind(d.doc ->> 'path') IS NULL))
    INTO superseded
    FROM aveloxis_ops.distribution_rows(docs) d WHERE d.err IS NULL;
    IF superseded > 0 THEN
        RAISE LOG 'distribution of repo %: % staged rows not used (sources that did not answer, files that are no manifest, earlier scans)',
            repo, superseded;
    END IF;

    INSERT INTO aveloxis_data.repo_distribution_scans AS s
        (repo_id, scanned_at, scan_complete, sources, registry_rows, manifest_rows, unused_rows)
    VALUES (repo, observed, whole, coalesce(sources, '{}'),
            (SELECT count(*) FROM aveloxis_data.repo_distribution d WHERE d.repo_id = repo),
            (SELECT count(*) FROM aveloxis_data.repo_distribution_manifest m WHERE m.repo_id = repo), superseded)
    ON CONFLICT (repo_id) DO UPDATE
        SET scanned_at = EXCLUDED.scanned_at, scan_complete = EXCLUDED.scan_complete, sources = EXCLUDED.sources,
            registry_rows = EXCLUDED.registry_rows, manifest_rows = EXCLUDED.manifest_rows,
            unused_rows = EXCLUDED.unused_rows;

    UPDATE aveloxis_ops.staging s SET drained_at = observed
    WHERE s.repo_id = repo AND s.job_run_id = run AND s.drained_at IS NULL
      AND s.entity = ANY (aveloxis_ops.phase_entities('distribution'));
END
$$;

-- ---------------------------------------------------------------------------------
-- The distribution settings (docs/distribution.md, Settings), and the circuit breakers
-- of the external sources (deps.dev, ecosyste.ms), shared by every agent: a source that fails transiently distribution.breaker_failures times in a row
-- (10) opens for distribution.breaker_pause (an hour). While one is open the claim hands
-- out no distribution scan (they would all be partial), and an agent skips the source in
-- a scan already running, which is then partial and comes back as soon as it closes.
INSERT INTO aveloxis_ops.setting_defaults (name, default_value, kind, description) VALUES
    ('distribution.enabled', 'true', 'boolean',
     'Whether distribution scans are handed out at all (false: their jobs wait, why_not_collected says so)'),
    ('distribution.start_interval', '0 seconds', 'interval',
     'Least time between two distribution scan starts, fleet-wide (the reference paced 4 workers at 30 s: 7.5 seconds)'),
    ('distribution.depsdev_url', 'https://api.deps.dev/', 'url', 'deps.dev''s API root, as agents call it'),
    ('distribution.ecosystems_url', 'https://packages.ecosyste.ms/', 'url', 'ecosyste.ms packages'' API root, as agents call it'),
    ('distribution.contact', '', 'email',
     'An email the agents send to the public registries (User-Agent, ecosyste.ms'' polite pool); empty: none'),
    ('distribution.breaker_failures', '10', 'integer',
     'Consecutive transient failures of an external distribution source that open its circuit breaker'),
    ('distribution.breaker_pause', '1 hour', 'interval',
     'How long an open circuit breaker pauses new distribution scans');

CREATE TABLE aveloxis_ops.source_breakers (
    source               text PRIMARY KEY CHECK (source IN ('deps.dev', 'ecosyste.ms')),
    consecutive_failures integer NOT NULL DEFAULT 0,
    opened_until         timestamptz,
    last_error           text,
    updated_at           timestamptz NOT NULL
);
COMMENT ON TABLE aveloxis_ops.source_breakers IS 'Circuit breakers of the external distribution sources; aveloxis.report_source() keeps them';

-- Whether new distribution scans are paused now, and why (NULL: not paused): switched
-- off, or a source's circuit breaker open.
CREATE FUNCTION aveloxis_ops.distribution_paused(at timestamptz)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN aveloxis_ops.setting('distribution.enabled') <> 'true'
                THEN 'switched off (distribution.enabled is false)'
                ELSE (SELECT string_agg(format('the %s circuit breaker is open until %s (last error: %s)', b.source,
                                               b.opened_until, coalesce(b.last_error, 'not given')), '; ' ORDER BY b.source)
                      FROM aveloxis_ops.source_breakers b WHERE b.opened_until > at) END
$$;

-- Whether a distribution scan started less than distribution.start_interval ago (the
-- job_runs start index: only the last interval's runs are read).
CREATE FUNCTION aveloxis_ops.distribution_started_within(at timestamptz)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT FROM aveloxis_ops.job_runs r
                   WHERE r.started_at > at - aveloxis_ops.setting('distribution.start_interval')::interval
                     AND r.phase = 'distribution')
$$;

-- What agents need of the distribution settings (they never read the settings table).
CREATE FUNCTION aveloxis.distribution_settings()
RETURNS TABLE (depsdev_url text, ecosystems_url text, contact text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    SELECT aveloxis_ops.setting('distribution.depsdev_url'), aveloxis_ops.setting('distribution.ecosystems_url'),
           nullif(aveloxis_ops.setting('distribution.contact'), '')
$$;

-- An agent reports each call to an external source under its distribution lease: ok, or
-- a transient failure (5xx, timeouts, connection errors after its retries; a 404 or an
-- empty answer is ok). Returns until when the source's breaker is open, NULL if closed:
-- while open the agent skips the source.
CREATE FUNCTION aveloxis.report_source(lease_token uuid, source text, ok boolean, error text DEFAULT NULL)
RETURNS timestamptz
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    lease  record := aveloxis_ops.held_lease(lease_token, NULL);
    at     timestamptz := aveloxis_ops.clock();
    limit_n integer := greatest(1, aveloxis_ops.setting('distribution.breaker_failures')::integer);
    pause  interval := aveloxis_ops.setting('distribution.breaker_pause')::interval;
    b      aveloxis_ops.source_breakers;
BEGIN
    IF (lease.j).phase <> 'distribution' THEN
        RAISE EXCEPTION 'report_source takes a distribution lease, not a % one', (lease.j).phase
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF source IS NULL OR source NOT IN ('deps.dev', 'ecosyste.ms') OR ok IS NULL THEN
        RAISE EXCEPTION 'report_source(token, source, ok): source is deps.dev or ecosyste.ms, ok true or false'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO aveloxis_ops.source_breakers AS s (source, consecutive_failures, last_error, updated_at)
    VALUES (report_source.source, CASE WHEN ok THEN 0 ELSE 1 END, CASE WHEN NOT ok THEN error END, at)
    ON CONFLICT ON CONSTRAINT source_breakers_pkey DO UPDATE
        SET consecutive_failures = CASE WHEN ok THEN 0 ELSE s.consecutive_failures + 1 END,
            last_error = CASE WHEN ok THEN s.last_error ELSE EXCLUDED.last_error END,
            updated_at = EXCLUDED.updated_at
    RETURNING * INTO b;
    IF b.consecutive_failures >= limit_n THEN
        UPDATE aveloxis_ops.source_breakers s SET opened_until = at + pause, consecutive_failures = 0
        WHERE s.source = b.source RETURNING * INTO b;
        RAISE LOG 'distribution source % failed % times in a row: new scans paused until %', b.source, limit_n,
            b.opened_until;
    END IF;
    RETURN CASE WHEN b.opened_until > at THEN b.opened_until END;
END
$$;

-- The breakers, for operators.
CREATE FUNCTION aveloxis.source_breakers()
RETURNS TABLE (source text, open boolean, opened_until timestamptz, consecutive_failures integer, last_error text,
               updated_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    SELECT b.source, coalesce(b.opened_until > aveloxis_ops.clock(), false), b.opened_until, b.consecutive_failures,
           b.last_error, b.updated_at
    FROM aveloxis_ops.source_breakers b ORDER BY b.source
$$;

-- sql/scale_out.sql: the breakers stay on the coordinator.
CREATE OR REPLACE FUNCTION aveloxis.distribution_plan()
RETURNS TABLE (step integer, table_name regclass, kind text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE tables AS (
        SELECT c.oid AS rel,
               CASE WHEN c.oid = ANY (ARRAY['aveloxis_ops.jobs', 'aveloxis_ops.job_runs',
                                            'aveloxis_ops.setting_defaults', 'aveloxis_ops.setting_overrides',
                                            'aveloxis_ops.token_budgets', 'aveloxis_ops.view_refresh_runs',
                                            'aveloxis_ops.view_refreshes',
                                            'aveloxis_ops.source_breakers']::regclass[]) THEN 'local'
                    -- Globally unique URLs and forge ids: only a reference table can enforce them.
                    WHEN c.oid = ANY (ARRAY['aveloxis_data.repos', 'aveloxis_data.repo_url_history']::regclass[])
                        THEN 'reference'
                    WHEN EXISTS (SELECT FROM pg_attribute a
                                 WHERE a.attrelid = c.oid AND a.attname = 'repo_id' AND NOT a.attisdropped)
                        THEN 'distributed'
                    ELSE 'reference' END AS kind
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname IN ('aveloxis', 'aveloxis_ops', 'aveloxis_data') AND c.relkind IN ('r', 'p')
          AND NOT c.relispartition
    ), edges AS (
        SELECT DISTINCT con.conrelid AS child, con.confrelid AS parent
        FROM pg_constraint con JOIN tables t ON t.rel = con.confrelid
        WHERE con.contype = 'f' AND con.conrelid <> con.confrelid
    ), depth AS (
        SELECT t.rel, 0 AS d FROM tables t
        UNION ALL
        SELECT e.child, depth.d + 1 FROM depth JOIN edges e ON e.parent = depth.rel WHERE depth.d < 32
    )
    -- Staging leads the distributed tables (it references none of them): the colocation
    -- group is named after it.
    SELECT (row_number() OVER (ORDER BY CASE t.kind WHEN 'reference' THEN 0 WHEN 'distributed' THEN 1 ELSE 2 END,
                                         t.rel <> 'aveloxis_ops.staging'::regclass, max(depth.d),
                                         t.rel::regclass::text))::integer,
           t.rel::regclass, t.kind
    FROM tables t JOIN depth ON depth.rel = t.rel
    GROUP BY t.rel, t.kind
$$;

-- sql/matviews.sql: the view, same columns.
CREATE OR REPLACE VIEW aveloxis_data.contributor_actions WITH (security_invoker = true) AS
-- One row per commit (commits holds one row per changed file).
SELECT cm.cmt_ght_author_id AS cntrb_id, min(cm.cmt_author_timestamp) AS created_at, cm.repo_id,
       'commit'::text AS action, min(cm.cmt_id) AS source_id
FROM aveloxis_data.commits cm
WHERE cm.cmt_ght_author_id IS NOT NULL AND cm.cmt_author_timestamp IS NOT NULL
GROUP BY cm.repo_id, cm.cmt_commit_hash, cm.cmt_ght_author_id
UNION ALL
SELECT i.reporter_id, i.created_at, i.repo_id, 'issue_opened', i.issue_id
FROM aveloxis_data.issues i WHERE i.reporter_id IS NOT NULL AND i.created_at IS NOT NULL
UNION ALL
SELECT e.cntrb_id, e.created_at, e.repo_id, 'issue_closed', e.event_id
FROM aveloxis_data.issue_events e
WHERE e.action = 'closed' AND e.cntrb_id IS NOT NULL AND e.created_at IS NOT NULL
UNION ALL
SELECT p.author_id, p.created_at, p.repo_id, 'pull_request_open', p.pull_request_id
FROM aveloxis_data.pull_requests p WHERE p.author_id IS NOT NULL AND p.created_at IS NOT NULL
UNION ALL
SELECT e.cntrb_id, e.created_at, e.repo_id, 'pull_request_closed', e.pr_event_id
FROM aveloxis_data.pull_request_events e JOIN aveloxis_data.pull_requests p USING (pull_request_id)
WHERE e.action = 'closed' AND p.merged_at IS NULL AND e.cntrb_id IS NOT NULL AND e.created_at IS NOT NULL
UNION ALL
SELECT e.cntrb_id, e.created_at, e.repo_id, 'pull_request_merged', e.pr_event_id
FROM aveloxis_data.pull_request_events e
WHERE e.action = 'merged' AND e.cntrb_id IS NOT NULL AND e.created_at IS NOT NULL
UNION ALL
SELECT v.cntrb_id, v.submitted_at, v.repo_id, 'pull_request_review_' || v.review_state, v.pr_review_id
FROM aveloxis_data.pull_request_reviews v
WHERE v.cntrb_id IS NOT NULL AND v.submitted_at IS NOT NULL AND v.review_state IS NOT NULL
UNION ALL
-- Conversation comments and diff (review) comments: both are comments on the PR. One
-- semi-join on the union of both reference tables (two EXISTS joined by OR were
-- per-message subplans, a scan of the references per message once they outgrew
-- work_mem: the fleet benchmark's 100,000-repository refresh did not finish).
SELECT m.cntrb_id, m.msg_timestamp, m.repo_id, 'pull_request_comment', m.msg_id
FROM aveloxis_data.messages m
WHERE m.msg_source IN ('issue_comment', 'review_comment') AND m.cntrb_id IS NOT NULL
  AND m.msg_timestamp IS NOT NULL
  AND (m.repo_id, m.msg_id) IN (SELECT x.repo_id, x.msg_id FROM aveloxis_data.pull_request_message_ref x
                                UNION ALL
                                SELECT x.repo_id, x.msg_id FROM aveloxis_data.review_comments x)
UNION ALL
-- Credited to the comment's author (Augur credits the issue's reporter), on open
-- issues too (Augur's closed_at <> msg_timestamp drops them).
SELECT m.cntrb_id, m.msg_timestamp, m.repo_id, 'issue_comment', m.msg_id
FROM aveloxis_data.messages m
WHERE m.msg_source = 'issue_comment' AND m.cntrb_id IS NOT NULL AND m.msg_timestamp IS NOT NULL
  AND EXISTS (SELECT FROM aveloxis_data.issue_message_ref x WHERE x.repo_id = m.repo_id AND x.msg_id = m.msg_id);

-- sql/grants.sql: the analysts' new functions.
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
        aveloxis.distribution_repo(text)
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
        aveloxis.record_commit_author_misses(text[], text[], text[], text[])
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
