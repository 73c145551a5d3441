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

ALTER TABLE aveloxis_ops.staging DROP CONSTRAINT staging_entity_check,
    ADD CONSTRAINT staging_entity_check
    CHECK (entity IN ('contributor', 'issue', 'pull_request', 'issue_event', 'issue_comment',
                                       'review_comment', 'release', 'repo_info', 'commit', 'commit_removed',
                                       'repo_files', 'distribution_depsdev', 'distribution_depsdev_package',
                                       'distribution_ecosystems', 'distribution_releases', 'distribution_packages',
                                       'distribution_manifest', 'labor_snapshot', 'scorecard',
                                       'dependency_files', 'dependency_blob'));

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
CREATE INDEX repo_dependency_decls_package_idx ON aveloxis_data.repo_dependency_decls (ecosystem, name, version);

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
AS $$
DECLARE
    scan    aveloxis_data.repo_dependency_scans;
    errors  jsonb;
    parser  text := aveloxis.version();
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('aveloxis.dependencies', repo));
    CREATE TEMP TABLE IF NOT EXISTS pg_temp.aveloxis_resolved (
        manifest_path text, lockfile_path text, ecosystem text, name text, requirement text, scope text,
        direct boolean, version text, resolution text, parse_error text) ON COMMIT DROP;
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
        (repo_id, manifest_path, lockfile_path, ecosystem, name, requirement, scope, direct, version, resolution,
         parsed_at)
    SELECT repo, r.manifest_path, r.lockfile_path, r.ecosystem, r.name, r.requirement, r.scope, r.direct, r.version,
           r.resolution, observed
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
        aveloxis.dependency_file_patterns()
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
        aveloxis.dependency_file_patterns()
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
