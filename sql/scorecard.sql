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
