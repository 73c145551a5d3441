-- pg_aveloxis 0.14.0 -> 0.15.0: the analysis phase's first part, labor (issue 17).
--
-- * Every repository gets an analysis job (aveloxis_ops.phases_of; existing repositories are
--   enqueued below), daily by default (analysis.cadence: 1 day; it was 30 days and unused): the
--   agent counts the HEAD tree only when HEAD changed (aveloxis.analysis_state).
-- * The staging entity labor_snapshot (the staging entity check is replaced; phase_entities),
--   applied by complete for analysis leases (aveloxis_ops.labor_apply): repo_labor rotated to the
--   new aveloxis_data.repo_labor_history, one data_collection_date per snapshot, and
--   aveloxis_data.repo_analysis_scans (one row per HEAD counted); aveloxis.repo_languages(repo)
--   for analysts (sql/labor.sql).

ALTER TABLE aveloxis_ops.staging DROP CONSTRAINT staging_entity_check,
    ADD CONSTRAINT staging_entity_check
    CHECK (entity IN ('contributor', 'issue', 'pull_request', 'issue_event', 'issue_comment',
                                       'review_comment', 'release', 'repo_info', 'commit', 'commit_removed',
                                       'repo_files', 'distribution_depsdev', 'distribution_depsdev_package',
                                       'distribution_ecosystems', 'distribution_releases', 'distribution_packages',
                                       'distribution_manifest', 'labor_snapshot'));

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
        ELSE '{}'::text[] END
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.phases_of(platform smallint)
RETURNS text[]
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE platform WHEN 1 THEN ARRAY['collect', 'facade', 'distribution', 'analysis']
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
    UPDATE aveloxis_ops.staging s SET drained_at = observed
    WHERE s.repo_id = repo AND s.drained_at IS NULL AND s.job_run_id IS DISTINCT FROM run
      AND s.entity = 'labor_snapshot';
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

-- Every repository's analysis job (due now: each HEAD is counted once, then only when it changes).
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
        aveloxis.analysis_state(uuid)
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
