-- pg_aveloxis 0.14.0 -> 0.15.0: the analysis phases' first parts, labor and Scorecard (issue 17).
--
-- * Every repository gets an analysis job (aveloxis_ops.phases_of; existing repositories are
--   enqueued below), daily by default (analysis.cadence: 1 day; it was 30 days and unused): the
--   agent counts the HEAD tree only when HEAD changed (aveloxis.analysis_state).
-- * The staging entity labor_snapshot (the staging entity check is replaced; phase_entities),
--   applied by complete for analysis leases (aveloxis_ops.labor_apply): repo_labor rotated to the
--   new aveloxis_data.repo_labor_history, one data_collection_date per snapshot, and
--   aveloxis_data.repo_analysis_scans (one row per HEAD counted); aveloxis.repo_languages(repo)
--   for analysts (sql/labor.sql).
-- * A scorecard phase for GitHub repositories (weekly: scorecard.cadence 7 days; the jobs'
--   phase check is replaced; claim, queue_health and why_not_collected know it): the agent
--   reads the public OpenSSF Scorecard API (scorecard.url; aveloxis.scorecard_settings()),
--   stages the answer raw (entity scorecard) and complete applies it
--   (aveloxis_ops.scorecard_apply: one row per check plus OSSF_SCORECARD_AGGREGATE_SCORE, one
--   data_collection_date, the previous read to the new repo_deps_scorecard_history)
--   (sql/scorecard.sql).

ALTER TABLE aveloxis_ops.jobs DROP CONSTRAINT jobs_phase_check,
    ADD CONSTRAINT jobs_phase_check CHECK (phase IN ('collect', 'facade', 'distribution', 'analysis', 'scorecard'));

INSERT INTO aveloxis_ops.setting_defaults (name, default_value, kind, description) VALUES
    ('scorecard.cadence', '7 days', 'interval', 'How often a GitHub repository''s OpenSSF Scorecard is read (published weekly)'),
    ('scorecard.max_leased', '0', 'integer', 'Most scorecard jobs leased at once (0: no limit)'),
    ('scorecard.backoff_base', '120 seconds', 'interval', 'Backoff after transient failure n: base x n^2'),
    ('scorecard.sideline_after', '10', 'integer', 'Consecutive transient failures that sideline a job for one cadence');

ALTER TABLE aveloxis_ops.staging DROP CONSTRAINT staging_entity_check,
    ADD CONSTRAINT staging_entity_check
    CHECK (entity IN ('contributor', 'issue', 'pull_request', 'issue_event', 'issue_comment',
                                       'review_comment', 'release', 'repo_info', 'commit', 'commit_removed',
                                       'repo_files', 'distribution_depsdev', 'distribution_depsdev_package',
                                       'distribution_ecosystems', 'distribution_releases', 'distribution_packages',
                                       'distribution_manifest', 'labor_snapshot', 'scorecard'));

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
        WHEN 'analysis' THEN ARRAY['labor_snapshot']
        WHEN 'scorecard' THEN ARRAY['scorecard']
        ELSE '{}'::text[] END
$$;

CREATE FUNCTION aveloxis_ops.supersede_staged(repo bigint, run bigint, phase text, at timestamptz)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    superseded bigint;
BEGIN
    UPDATE aveloxis_ops.staging s SET drained_at = at
    WHERE s.repo_id = repo AND s.drained_at IS NULL AND s.job_run_id IS DISTINCT FROM run
      AND s.entity = ANY (aveloxis_ops.phase_entities(phase));
    GET DIAGNOSTICS superseded = ROW_COUNT;
    IF superseded > 0 THEN
        RAISE LOG '% of repo %: % staged rows of earlier, unfinished runs superseded', phase, repo, superseded;
    END IF;
    RETURN superseded;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.distribution_apply(repo bigint, run bigint, whole boolean, sources jsonb)
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
    superseded := aveloxis_ops.supersede_staged(repo, run, 'distribution', observed);

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

CREATE OR REPLACE FUNCTION aveloxis_ops.phases_of(platform smallint)
RETURNS text[]
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE platform WHEN 1 THEN ARRAY['collect', 'facade', 'distribution', 'analysis', 'scorecard']
                         WHEN 2 THEN ARRAY['collect', 'facade', 'analysis']
                         ELSE ARRAY['facade', 'analysis'] END
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
    -- An analysis's labor snapshot replaces the current one, likewise (sql/labor.sql).
    IF j.phase = 'analysis' THEN
        PERFORM aveloxis_ops.labor_apply(j.repo_id, lease.run, outcome);
    END IF;
    -- A scorecard read replaces the repository's checks, likewise (sql/scorecard.sql).
    IF j.phase = 'scorecard' THEN
        PERFORM aveloxis_ops.scorecard_apply(j.repo_id, lease.run, outcome);
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
       OR EXISTS (SELECT FROM unnest(phases) p
                  WHERE p NOT IN ('collect', 'facade', 'distribution', 'analysis', 'scorecard')) THEN
        RAISE EXCEPTION 'unknown phase in %', phases USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Phases are collect, facade, distribution, analysis and scorecard.';
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
    FROM unnest(ARRAY['collect', 'facade', 'distribution', 'analysis', 'scorecard']) AS p(phase)
    CROSS JOIN at
    LEFT JOIN aveloxis_ops.jobs j ON j.phase = p.phase
    GROUP BY p.phase, at.now
    ORDER BY array_position(ARRAY['collect', 'facade', 'distribution', 'analysis', 'scorecard'], p.phase)
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
    ORDER BY array_position(ARRAY['collect', 'facade', 'distribution', 'analysis', 'scorecard'], j.phase);
END
$$;

UPDATE aveloxis_ops.setting_defaults
SET default_value = '1 day',
    description = 'How often a repository''s HEAD is checked for analysis (an unchanged HEAD is not analysed again)'
WHERE name = 'analysis.cadence';

-- sql/labor.sql
-- The analysis phase's labor (docs/analysis.md): lines of code, comments and blanks of
-- every file of the HEAD tree in a known language, counted by the agent from the bare
-- clone's blobs (tokei) and staged as one snapshot (`labor_snapshot` envelopes). complete()
-- applies a snapshot in one transaction: the repository's current rows move to
-- repo_labor_history and the new ones take one data_collection_date. An unchanged HEAD
-- writes nothing (aveloxis.analysis_state tells the agent which HEAD was analysed last).

CREATE TABLE aveloxis_data.repo_labor_history (LIKE aveloxis_data.repo_labor INCLUDING DEFAULTS);
ALTER TABLE aveloxis_data.repo_labor_history ADD PRIMARY KEY (repo_id, repo_labor_id);
ALTER TABLE aveloxis_data.repo_labor_history
    ADD FOREIGN KEY (repo_id) REFERENCES aveloxis_data.repos ON DELETE CASCADE;
COMMENT ON TABLE aveloxis_data.repo_labor_history IS 'Earlier labor snapshots, moved here when a new HEAD is analysed';
CREATE INDEX repo_labor_history_scan_idx ON aveloxis_data.repo_labor_history (repo_id, data_collection_date);

-- One row per analysis that counted a HEAD: which commit, when, what it found.
CREATE TABLE aveloxis_data.repo_analysis_scans (
    scan_id      bigint GENERATED BY DEFAULT AS IDENTITY,
    repo_id      bigint NOT NULL REFERENCES aveloxis_data.repos ON DELETE CASCADE,
    head_sha     text NOT NULL CHECK (head_sha ~ '^[0-9a-f]{40}([0-9a-f]{24})?$'),
    analyzed_at  timestamptz NOT NULL,
    files        integer NOT NULL,
    languages    integer NOT NULL,
    code_lines   bigint NOT NULL,
    -- What the agent left out and why (unknown language, binary, too large, links).
    skipped      jsonb,
    job_run_id   bigint,
    PRIMARY KEY (repo_id, scan_id)
);
COMMENT ON TABLE aveloxis_data.repo_analysis_scans IS 'Each HEAD the analysis phase counted, newest last';

SELECT pg_catalog.pg_extension_config_dump('aveloxis_data.repo_labor_history', '');
SELECT pg_catalog.pg_extension_config_dump('aveloxis_data.repo_analysis_scans', '');
SELECT pg_catalog.pg_extension_config_dump(
    pg_catalog.pg_get_serial_sequence('aveloxis_data.repo_analysis_scans', 'scan_id'), '');

-- The HEAD the repository's last analysis counted (no row: never analysed), for the
-- agent holding its analysis lease.
CREATE FUNCTION aveloxis.analysis_state(lease_token uuid)
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
    WHERE s.repo_id = repo ORDER BY s.scan_id DESC LIMIT 1;
END
$$;

-- Applies the labor snapshot a run staged (called by complete for analysis leases, in its
-- transaction). outcome.unchanged: the agent found the analysed HEAD again: nothing is
-- written. Otherwise every part of one HEAD's snapshot must be there, or the completion
-- is refused (the lease and the staged rows stay; the agent fails the job instead); a
-- completion naming a head_sha with nothing staged is refused too.
CREATE FUNCTION aveloxis_ops.labor_apply(repo bigint, run bigint, outcome jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    observed timestamptz := aveloxis_ops.clock();
    docs     jsonb;
    heads    text[];
    parts    integer;
    got      integer;
    repo_url text;
    version  text := aveloxis.version();
    files    integer;
BEGIN
    IF coalesce(outcome ->> 'unchanged', 'false') = 'true' THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('aveloxis.analysis', repo));
    -- Snapshots staged by earlier runs that never completed: this one supersedes them.
    PERFORM aveloxis_ops.supersede_staged(repo, run, 'analysis', observed);
    SELECT coalesce(jsonb_agg(d.doc ORDER BY d.staging_id), '[]') INTO docs
    FROM (SELECT s.staging_id, aveloxis_ops.sanitized_jsonb(s.payload) AS doc
          FROM aveloxis_ops.staging s
          WHERE s.repo_id = repo AND s.job_run_id = run AND s.drained_at IS NULL AND s.entity = 'labor_snapshot') d;
    IF jsonb_array_length(docs) = 0 THEN
        -- Nothing staged: a completion that says it counted a HEAD lost its snapshot on
        -- the way; one that says nothing (an agent of no analysis) applies nothing.
        IF outcome ? 'head_sha' THEN
            RAISE EXCEPTION 'an analysis that counted a HEAD completes after staging its labor_snapshot'
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'Stage the snapshot under this lease, or complete with {"unchanged": true} for an analysed HEAD.';
        END IF;
        RETURN;
    END IF;
    SELECT array_agg(DISTINCT d ->> 'head_sha'), max((d ->> 'parts')::integer), count(DISTINCT (d ->> 'part')::integer)
    INTO heads, parts, got
    FROM jsonb_array_elements(docs) d;
    IF cardinality(heads) <> 1 OR heads[1] IS NULL OR heads[1] !~ '^[0-9a-f]{40}([0-9a-f]{24})?$' THEN
        RAISE EXCEPTION 'a labor snapshot is of one HEAD (a 40- or 64-hex head_sha); this one names %', heads
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF parts IS NULL OR got <> parts OR EXISTS (SELECT FROM jsonb_array_elements(docs) d
                                                WHERE (d ->> 'part')::integer NOT BETWEEN 1 AND parts) THEN
        RAISE EXCEPTION 'the labor snapshot of % has % of its % parts', heads[1], got, parts
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Stage every part ({"part": i, "parts": n}) before completing.';
    END IF;
    SELECT r.repo_git INTO repo_url FROM aveloxis_data.repos r WHERE r.repo_id = repo;

    -- The current snapshot becomes history, the new one current, with one timestamp.
    WITH moved AS (
        DELETE FROM aveloxis_data.repo_labor l WHERE l.repo_id = repo RETURNING l.*
    )
    INSERT INTO aveloxis_data.repo_labor_history SELECT * FROM moved;
    INSERT INTO aveloxis_data.repo_labor
        (repo_id, repo_clone_date, rl_analysis_date, programming_language, file_path, file_name, total_lines,
         code_lines, comment_lines, blank_lines, code_complexity, repo_url, tool_source, tool_version, data_source,
         data_collection_date)
    SELECT repo, observed, observed, f.language, f.path, regexp_replace(f.path, '^.*/', ''),
           f.code + f.comments + f.blanks, f.code, f.comments, f.blanks, NULL, repo_url, 'aveloxis-agent (tokei)',
           version, 'git', observed
    FROM jsonb_array_elements(docs) d,
         jsonb_to_recordset(d -> 'files') AS f(path text, language text, code integer, comments integer,
                                               blanks integer, bytes bigint)
    WHERE f.path IS NOT NULL AND f.language IS NOT NULL
      AND f.code >= 0 AND f.comments >= 0 AND f.blanks >= 0;
    GET DIAGNOSTICS files = ROW_COUNT;
    INSERT INTO aveloxis_data.repo_analysis_scans (repo_id, head_sha, analyzed_at, files, languages, code_lines,
                                                   skipped, job_run_id)
    SELECT repo, heads[1], observed, files, count(DISTINCT l.programming_language), coalesce(sum(l.code_lines), 0),
           outcome -> 'skipped', run
    FROM aveloxis_data.repo_labor l WHERE l.repo_id = repo;
    UPDATE aveloxis_ops.staging s SET drained_at = observed
    WHERE s.repo_id = repo AND s.job_run_id = run AND s.drained_at IS NULL AND s.entity = 'labor_snapshot';
END
$$;

-- A repository's languages now: files, lines of code, comments and blanks per language of
-- its latest labor snapshot, with the HEAD and time it was counted.
CREATE FUNCTION aveloxis.repo_languages(repo bigint)
RETURNS TABLE (programming_language text, files bigint, code_lines bigint, comment_lines bigint,
               blank_lines bigint, pct_of_code numeric, head_sha text, analyzed_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    SELECT l.programming_language, count(*), sum(l.code_lines), sum(l.comment_lines), sum(l.blank_lines),
           round(100.0 * sum(l.code_lines) / nullif(sum(sum(l.code_lines)) OVER (), 0), 1),
           s.head_sha, s.analyzed_at
    FROM aveloxis_data.repo_labor l
    LEFT JOIN LATERAL (SELECT x.head_sha, x.analyzed_at FROM aveloxis_data.repo_analysis_scans x
                       WHERE x.repo_id = l.repo_id ORDER BY x.scan_id DESC LIMIT 1) s ON true
    WHERE l.repo_id = repo
    GROUP BY l.programming_language, s.head_sha, s.analyzed_at
    ORDER BY 3 DESC, 1
$$;

-- sql/scorecard.sql
-- OpenSSF Scorecard (docs/analysis.md, "Scorecard"): a weekly `scorecard` job per GitHub
-- repository. The agent reads the public Scorecard API (no binary, no partial local run)
-- and stages its answer raw (`scorecard` entity); complete() applies it in one
-- transaction: the repository's current checks move to repo_deps_scorecard_history, and
-- the new ones take one data_collection_date: one row per check (score as the source gives
-- it, -1 for an inconclusive check; NULL when it gives none, never '') plus Augur's
-- aggregate row OSSF_SCORECARD_AGGREGATE_SCORE (score = the aggregate, details = the
-- `repo` object). A repository the API does not publish (404) keeps what it had.
-- GitLab repositories have no public Scorecard source: they get no scorecard job.

INSERT INTO aveloxis_ops.setting_defaults (name, default_value, kind, description) VALUES
    ('scorecard.url', 'https://api.securityscorecards.dev/', 'url',
     'The OpenSSF Scorecard API root agents read (GET projects/github.com/{owner}/{repo})');

CREATE TABLE aveloxis_data.repo_deps_scorecard_history (LIKE aveloxis_data.repo_deps_scorecard INCLUDING DEFAULTS);
ALTER TABLE aveloxis_data.repo_deps_scorecard_history ADD PRIMARY KEY (repo_id, repo_deps_scorecard_id);
ALTER TABLE aveloxis_data.repo_deps_scorecard_history
    ADD FOREIGN KEY (repo_id) REFERENCES aveloxis_data.repos ON DELETE CASCADE;
COMMENT ON TABLE aveloxis_data.repo_deps_scorecard_history IS 'Earlier Scorecard reads, moved here by a newer one';
CREATE INDEX repo_deps_scorecard_history_scan_idx ON aveloxis_data.repo_deps_scorecard_history (repo_id, data_collection_date);
SELECT pg_catalog.pg_extension_config_dump('aveloxis_data.repo_deps_scorecard_history', '');

-- The Scorecard API root agents read (setting scorecard.url; an agent's flag overrides it).
CREATE FUNCTION aveloxis.scorecard_settings()
RETURNS TABLE (scorecard_url text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    SELECT aveloxis_ops.setting('scorecard.url')
$$;

-- A score as the source gives it: an integer or decimal number as text; anything else NULL.
CREATE FUNCTION aveloxis_ops.scorecard_score(v jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN jsonb_typeof(v) = 'number' AND (v #>> '{}') ~ '^-?[0-9]+(\.[0-9]+)?$' THEN v #>> '{}' END
$$;

-- Applies the Scorecard answer a run staged (called by complete for scorecard leases).
-- outcome.published false (the API does not publish this repository): nothing changes.
CREATE FUNCTION aveloxis_ops.scorecard_apply(repo bigint, run bigint, outcome jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    observed timestamptz := aveloxis_ops.clock();
    doc      jsonb;
    version  text := aveloxis.version();
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('aveloxis.scorecard', repo));
    PERFORM aveloxis_ops.supersede_staged(repo, run, 'scorecard', observed);
    SELECT aveloxis_ops.sanitized_jsonb(s.payload) INTO doc
    FROM aveloxis_ops.staging s
    WHERE s.repo_id = repo AND s.job_run_id = run AND s.drained_at IS NULL AND s.entity = 'scorecard'
    ORDER BY s.staging_id DESC LIMIT 1;
    IF doc IS NULL THEN
        IF coalesce(outcome ->> 'published', 'true') = 'true' AND outcome ? 'published' THEN
            RAISE EXCEPTION 'a scorecard run that read a published scorecard completes after staging it'
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        RETURN;
    END IF;
    IF jsonb_typeof(doc -> 'checks') <> 'array' THEN
        RAISE EXCEPTION 'a Scorecard answer has a "checks" array; this one has %', coalesce(jsonb_typeof(doc -> 'checks'), 'none')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Stage the body of GET projects/github.com/{owner}/{repo} as the API returned it.';
    END IF;
    WITH moved AS (
        DELETE FROM aveloxis_data.repo_deps_scorecard c WHERE c.repo_id = repo RETURNING c.*
    )
    INSERT INTO aveloxis_data.repo_deps_scorecard_history SELECT * FROM moved;
    INSERT INTO aveloxis_data.repo_deps_scorecard (repo_id, name, score, scorecard_check_details, tool_source,
                                                   tool_version, data_source, data_collection_date)
    SELECT repo, c ->> 'name', aveloxis_ops.scorecard_score(c -> 'score'), c, 'aveloxis-agent', version,
           'OpenSSF Scorecard API', observed
    FROM jsonb_array_elements(doc -> 'checks') c
    WHERE jsonb_typeof(c) = 'object' AND c ->> 'name' IS NOT NULL
    UNION ALL
    SELECT repo, 'OSSF_SCORECARD_AGGREGATE_SCORE', aveloxis_ops.scorecard_score(doc -> 'score'),
           coalesce(doc -> 'repo', '{}') || jsonb_build_object('date', doc -> 'date', 'scorecard', doc -> 'scorecard'),
           'aveloxis-agent', version, 'OpenSSF Scorecard API', observed;
    UPDATE aveloxis_ops.staging s SET drained_at = observed
    WHERE s.repo_id = repo AND s.job_run_id = run AND s.drained_at IS NULL AND s.entity = 'scorecard';
END
$$;

-- Every repository's analysis job (due now: each HEAD is counted once, then only when it
-- changes), and every GitHub repository's scorecard job.
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
        aveloxis.repo_languages(bigint)
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
        aveloxis.scorecard_settings()
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
