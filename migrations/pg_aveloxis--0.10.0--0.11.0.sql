-- pg_aveloxis 0.10.0 -> 0.11.0: a faster commit drain and a faster queue (docs/benchmarks.md,
-- facade and queue).
--
-- * The commits' activity trigger sums lines and commits per UTC day within the statement
--   before counting them (one fact a day instead of one per row); the daily counts are
--   the same.
-- * refresh_commit_aggregates copies a repository's dm_repo_* rows into its group's
--   dm_repo_group_* rows when no other repository of the group has commits by the same
--   authors in those years, instead of recomputing them from every commit again.
-- * complete, fail and their helpers run generic plans (SET plan_cache_mode), and both
--   end the lease in the update that sets the job's next state; finish_run only closes
--   the run (its job argument is gone).

CREATE FUNCTION aveloxis_ops.utc_day_start(at timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT pg_catalog.timezone('UTC', pg_catalog.date_trunc('day', pg_catalog.timezone('UTC', at))) $$;

CREATE OR REPLACE FUNCTION aveloxis_ops.commits_activity() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE plus aveloxis_ops.activity_fact[]; minus aveloxis_ops.activity_fact[];
BEGIN
    IF TG_OP <> 'DELETE' THEN
        SELECT array_agg(f) INTO plus FROM (
            SELECT n.repo_id, NULL::uuid, aveloxis_ops.utc_day_start(n.cmt_author_timestamp), 'lines_added',
                   sum(n.cmt_added)::bigint
            FROM new_rows n WHERE n.cmt_author_timestamp IS NOT NULL AND n.cmt_added <> 0 GROUP BY 1, 3
            UNION ALL
            SELECT n.repo_id, NULL, aveloxis_ops.utc_day_start(n.cmt_author_timestamp), 'lines_removed',
                   sum(n.cmt_removed)::bigint
            FROM new_rows n WHERE n.cmt_author_timestamp IS NOT NULL AND n.cmt_removed <> 0 GROUP BY 1, 3
            UNION ALL
            SELECT DISTINCT n.repo_id, n.cmt_ght_author_id, n.cmt_author_timestamp, 'contribution', 1::bigint
            FROM new_rows n WHERE n.cmt_ght_author_id IS NOT NULL AND n.cmt_author_timestamp IS NOT NULL
        ) f;
        IF TG_OP = 'INSERT' THEN
            plus := plus || ARRAY(
                SELECT ROW(h.repo_id, NULL, aveloxis_ops.utc_day_start(h.at), 'commits', count(*))::aveloxis_ops.activity_fact
                FROM (SELECT n.repo_id, n.cmt_commit_hash, min(n.cmt_author_timestamp) AS at, count(*) AS rows_now
                      FROM new_rows n WHERE n.cmt_author_timestamp IS NOT NULL GROUP BY 1, 2) h
                WHERE (SELECT count(*) FROM aveloxis_data.commits c
                       WHERE c.repo_id = h.repo_id AND c.cmt_commit_hash = h.cmt_commit_hash) = h.rows_now
                GROUP BY h.repo_id, aveloxis_ops.utc_day_start(h.at));
        END IF;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        SELECT array_agg(f) INTO minus FROM (
            SELECT o.repo_id, NULL::uuid, aveloxis_ops.utc_day_start(o.cmt_author_timestamp), 'lines_added',
                   sum(o.cmt_added)::bigint
            FROM old_rows o WHERE o.cmt_author_timestamp IS NOT NULL AND o.cmt_added <> 0 GROUP BY 1, 3
            UNION ALL
            SELECT o.repo_id, NULL, aveloxis_ops.utc_day_start(o.cmt_author_timestamp), 'lines_removed',
                   sum(o.cmt_removed)::bigint
            FROM old_rows o WHERE o.cmt_author_timestamp IS NOT NULL AND o.cmt_removed <> 0 GROUP BY 1, 3
            UNION ALL
            SELECT DISTINCT o.repo_id, o.cmt_ght_author_id, o.cmt_author_timestamp, 'contribution', 1::bigint
            FROM old_rows o WHERE o.cmt_ght_author_id IS NOT NULL AND o.cmt_author_timestamp IS NOT NULL
        ) f;
        IF TG_OP = 'DELETE' THEN
            minus := minus || ARRAY(
                SELECT ROW(h.repo_id, NULL, aveloxis_ops.utc_day_start(h.at), 'commits', count(*))::aveloxis_ops.activity_fact
                FROM (SELECT o.repo_id, o.cmt_commit_hash, min(o.cmt_author_timestamp) AS at
                      FROM old_rows o WHERE o.cmt_author_timestamp IS NOT NULL GROUP BY 1, 2) h
                WHERE NOT EXISTS (SELECT FROM aveloxis_data.commits c
                                  WHERE c.repo_id = h.repo_id AND c.cmt_commit_hash = h.cmt_commit_hash)
                GROUP BY h.repo_id, aveloxis_ops.utc_day_start(h.at));
        END IF;
    END IF;
    PERFORM aveloxis_ops.activity_apply(plus, minus);
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION aveloxis_ops.refresh_commit_aggregates(repo bigint)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
    grp bigint;
    groups bigint;
    source text := 'aveloxis-facade';
    version text := aveloxis.version();
BEGIN
    SELECT r.repo_group_id INTO grp FROM aveloxis_data.repos r WHERE r.repo_id = repo;
    PERFORM aveloxis_ops.drop_batch_table('stale_groups');
    CREATE TEMP TABLE stale_groups ON COMMIT DROP AS
    WITH taken AS (
        DELETE FROM aveloxis_ops.commit_aggregate_backlog b WHERE b.repo_id = repo RETURNING b.email, b.year
    )
    SELECT DISTINCT email, year FROM taken;
    GET DIAGNOSTICS groups = ROW_COUNT;
    IF groups = 0 THEN
        RETURN 0;
    END IF;
    ANALYZE pg_temp.stale_groups;

    -- This repository's commits in the stale groups, once.
    PERFORM aveloxis_ops.drop_batch_table('stale_commits');
    CREATE TEMP TABLE stale_commits ON COMMIT DROP AS
    SELECT c.repo_id, c.cmt_author_email AS email,
           coalesce(nullif(c.cmt_author_affiliation, ''), '(Unknown)') AS affiliation,
           extract(year FROM c.cmt_author_timestamp)::smallint AS year,
           extract(month FROM c.cmt_author_timestamp)::smallint AS month,
           extract(week FROM c.cmt_author_timestamp)::smallint AS week,
           c.cmt_added, c.cmt_removed, c.cmt_whitespace, c.cmt_filename, c.cmt_commit_hash
    FROM pg_temp.stale_groups g
    JOIN aveloxis_data.commits c ON c.repo_id = repo AND c.cmt_author_email = g.email
    WHERE c.cmt_author_timestamp IS NOT NULL AND extract(year FROM c.cmt_author_timestamp) = g.year;

    DELETE FROM aveloxis_data.dm_repo_annual d USING pg_temp.stale_groups g
    WHERE d.repo_id = repo AND d.email = g.email AND d.year = g.year;
    DELETE FROM aveloxis_data.dm_repo_monthly d USING pg_temp.stale_groups g
    WHERE d.repo_id = repo AND d.email = g.email AND d.year = g.year;
    DELETE FROM aveloxis_data.dm_repo_weekly d USING pg_temp.stale_groups g
    WHERE d.repo_id = repo AND d.email = g.email AND d.year = g.year;
    INSERT INTO aveloxis_data.dm_repo_annual (repo_id, email, affiliation, year, added, removed, whitespace, files,
                                              patches, tool_source, tool_version, data_source)
    SELECT repo, s.email, s.affiliation, s.year, sum(s.cmt_added), sum(s.cmt_removed), sum(s.cmt_whitespace),
           count(DISTINCT s.cmt_filename) FILTER (WHERE s.cmt_filename <> '(no files)'),
           count(DISTINCT s.cmt_commit_hash), source, version, 'git'
    FROM pg_temp.stale_commits s GROUP BY s.email, s.affiliation, s.year;
    INSERT INTO aveloxis_data.dm_repo_monthly (repo_id, email, affiliation, year, month, added, removed, whitespace,
                                               files, patches, tool_source, tool_version, data_source)
    SELECT repo, s.email, s.affiliation, s.year, s.month, sum(s.cmt_added), sum(s.cmt_removed), sum(s.cmt_whitespace),
           count(DISTINCT s.cmt_filename) FILTER (WHERE s.cmt_filename <> '(no files)'),
           count(DISTINCT s.cmt_commit_hash), source, version, 'git'
    FROM pg_temp.stale_commits s GROUP BY s.email, s.affiliation, s.year, s.month;
    INSERT INTO aveloxis_data.dm_repo_weekly (repo_id, email, affiliation, year, week, added, removed, whitespace,
                                              files, patches, tool_source, tool_version, data_source)
    SELECT repo, s.email, s.affiliation, s.year, s.week, sum(s.cmt_added), sum(s.cmt_removed), sum(s.cmt_whitespace),
           count(DISTINCT s.cmt_filename) FILTER (WHERE s.cmt_filename <> '(no files)'),
           count(DISTINCT s.cmt_commit_hash), source, version, 'git'
    FROM pg_temp.stale_commits s GROUP BY s.email, s.affiliation, s.year, s.week;

    -- The repo group's aggregates of the same groups, over all its repositories. Drains
    -- of two repositories of one group would both delete and re-insert the group's rows
    -- (and one fail on the other's insert): one at a time per group, until commit. Each
    -- statement after the lock sees what the other committed (READ COMMITTED).
    PERFORM pg_advisory_xact_lock(hashtextextended('aveloxis.repo_group_aggregates', grp));
    DELETE FROM aveloxis_data.dm_repo_group_annual d USING pg_temp.stale_groups g
    WHERE d.repo_group_id = grp AND d.email = g.email AND d.year = g.year;
    DELETE FROM aveloxis_data.dm_repo_group_monthly d USING pg_temp.stale_groups g
    WHERE d.repo_group_id = grp AND d.email = g.email AND d.year = g.year;
    DELETE FROM aveloxis_data.dm_repo_group_weekly d USING pg_temp.stale_groups g
    WHERE d.repo_group_id = grp AND d.email = g.email AND d.year = g.year;
    -- When no other repository of the group has commits by the stale authors in those
    -- years (a group of one, or forks apart), the group's rows are this repository's:
    -- copied, not recomputed from every commit again.
    IF NOT EXISTS (
        SELECT FROM pg_temp.stale_groups g
        JOIN aveloxis_data.repos r ON r.repo_group_id = grp AND r.repo_id <> repo
        JOIN aveloxis_data.commits c ON c.repo_id = r.repo_id AND c.cmt_author_email = g.email
        WHERE c.cmt_author_timestamp IS NOT NULL AND extract(year FROM c.cmt_author_timestamp) = g.year
    ) THEN
        INSERT INTO aveloxis_data.dm_repo_group_annual (repo_group_id, email, affiliation, year, added, removed,
                                                        whitespace, files, patches, tool_source, tool_version,
                                                        data_source)
        SELECT grp, d.email, d.affiliation, d.year, d.added, d.removed, d.whitespace, d.files, d.patches,
               source, version, 'git'
        FROM aveloxis_data.dm_repo_annual d JOIN pg_temp.stale_groups g ON g.email = d.email AND g.year = d.year
        WHERE d.repo_id = repo;
        INSERT INTO aveloxis_data.dm_repo_group_monthly (repo_group_id, email, affiliation, year, month, added,
                                                         removed, whitespace, files, patches, tool_source,
                                                         tool_version, data_source)
        SELECT grp, d.email, d.affiliation, d.year, d.month, d.added, d.removed, d.whitespace, d.files, d.patches,
               source, version, 'git'
        FROM aveloxis_data.dm_repo_monthly d JOIN pg_temp.stale_groups g ON g.email = d.email AND g.year = d.year
        WHERE d.repo_id = repo;
        INSERT INTO aveloxis_data.dm_repo_group_weekly (repo_group_id, email, affiliation, year, week, added,
                                                        removed, whitespace, files, patches, tool_source,
                                                        tool_version, data_source)
        SELECT grp, d.email, d.affiliation, d.year, d.week, d.added, d.removed, d.whitespace, d.files, d.patches,
               source, version, 'git'
        FROM aveloxis_data.dm_repo_weekly d JOIN pg_temp.stale_groups g ON g.email = d.email AND g.year = d.year
        WHERE d.repo_id = repo;
        RETURN groups;
    END IF;
    PERFORM aveloxis_ops.drop_batch_table('stale_group_commits');
    CREATE TEMP TABLE stale_group_commits ON COMMIT DROP AS
    SELECT c.cmt_author_email AS email,
           coalesce(nullif(c.cmt_author_affiliation, ''), '(Unknown)') AS affiliation,
           extract(year FROM c.cmt_author_timestamp)::smallint AS year,
           extract(month FROM c.cmt_author_timestamp)::smallint AS month,
           extract(week FROM c.cmt_author_timestamp)::smallint AS week,
           c.cmt_added, c.cmt_removed, c.cmt_whitespace, c.repo_id, c.cmt_filename, c.cmt_commit_hash
    FROM pg_temp.stale_groups g
    JOIN aveloxis_data.repos r ON r.repo_group_id = grp
    JOIN aveloxis_data.commits c ON c.repo_id = r.repo_id AND c.cmt_author_email = g.email
    WHERE c.cmt_author_timestamp IS NOT NULL AND extract(year FROM c.cmt_author_timestamp) = g.year;
    -- A path is a file per repository; a commit hash is one patch even when two
    -- repositories of the group (forks) share it.
    INSERT INTO aveloxis_data.dm_repo_group_annual (repo_group_id, email, affiliation, year, added, removed,
                                                    whitespace, files, patches, tool_source, tool_version, data_source)
    SELECT grp, s.email, s.affiliation, s.year, sum(s.cmt_added), sum(s.cmt_removed), sum(s.cmt_whitespace),
           count(DISTINCT (s.repo_id, s.cmt_filename)) FILTER (WHERE s.cmt_filename <> '(no files)'),
           count(DISTINCT s.cmt_commit_hash), source, version, 'git'
    FROM pg_temp.stale_group_commits s GROUP BY s.email, s.affiliation, s.year;
    INSERT INTO aveloxis_data.dm_repo_group_monthly (repo_group_id, email, affiliation, year, month, added, removed,
                                                     whitespace, files, patches, tool_source, tool_version, data_source)
    SELECT grp, s.email, s.affiliation, s.year, s.month, sum(s.cmt_added), sum(s.cmt_removed), sum(s.cmt_whitespace),
           count(DISTINCT (s.repo_id, s.cmt_filename)) FILTER (WHERE s.cmt_filename <> '(no files)'),
           count(DISTINCT s.cmt_commit_hash), source, version, 'git'
    FROM pg_temp.stale_group_commits s GROUP BY s.email, s.affiliation, s.year, s.month;
    INSERT INTO aveloxis_data.dm_repo_group_weekly (repo_group_id, email, affiliation, year, week, added, removed,
                                                    whitespace, files, patches, tool_source, tool_version, data_source)
    SELECT grp, s.email, s.affiliation, s.year, s.week, sum(s.cmt_added), sum(s.cmt_removed), sum(s.cmt_whitespace),
           count(DISTINCT (s.repo_id, s.cmt_filename)) FILTER (WHERE s.cmt_filename <> '(no files)'),
           count(DISTINCT s.cmt_commit_hash), source, version, 'git'
    FROM pg_temp.stale_group_commits s GROUP BY s.email, s.affiliation, s.year, s.week;
    RETURN groups;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.held_lease(lease_token uuid, job bigint, OUT j aveloxis_ops.jobs, OUT run bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    r      aveloxis_ops.job_runs;
    latest bigint;
BEGIN
    IF lease_token IS NULL THEN
        RAISE EXCEPTION 'a lease token is required' USING ERRCODE = 'invalid_authorization_specification',
            HINT = 'aveloxis.claim() and aveloxis.claim_repo() return it with every job (column lease_token).';
    END IF;
    SELECT * INTO r FROM aveloxis_ops.job_runs x WHERE x.lease_token_digest = aveloxis_ops.token_digest(lease_token);
    IF NOT FOUND OR (job IS NOT NULL AND r.job_id <> job) THEN
        RAISE EXCEPTION 'this lease token is not one of job %''s leases', coalesce(job::text, '(any)')
            USING ERRCODE = 'invalid_authorization_specification',
                  HINT = 'Only the agent that claimed a job may heartbeat, stage for, complete or fail it, with the token the claim returned.';
    END IF;
    SELECT * INTO j FROM aveloxis_ops.jobs x WHERE x.job_id = r.job_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'job % does not exist any more (its repository was removed)', r.job_id
            USING ERRCODE = 'no_data_found';
    END IF;
    run := r.run_id;
    IF j.lease_run_id = r.run_id AND j.lease_owner IS NOT NULL THEN
        RETURN;
    END IF;
    SELECT max(x.run_id) INTO latest FROM aveloxis_ops.job_runs x WHERE x.job_id = j.job_id;
    IF j.lease_owner IS NULL AND latest = r.run_id AND r.outcome = 'lease_expired' THEN
        RETURN;
    END IF;
    IF r.finished_at IS NOT NULL AND r.outcome IS DISTINCT FROM 'lease_expired' THEN
        RAISE EXCEPTION 'job %''s run % already ended (%); its lease token is spent', j.job_id, r.run_id, r.outcome
            USING ERRCODE = 'lock_not_available', HINT = 'Claim the job again for another run.';
    END IF;
    RAISE EXCEPTION 'the lease of job % (run %) expired and the job was claimed again; this run''s result is refused',
        j.job_id, r.run_id
        USING ERRCODE = 'lock_not_available',
              HINT = 'What this run staged before is kept and drained; drop the rest of its result.';
END
$$;

DROP FUNCTION aveloxis_ops.finish_run(aveloxis_ops.jobs, bigint, text, text, jsonb);
CREATE FUNCTION aveloxis_ops.finish_run(run bigint, outcome text, error text, result jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    UPDATE aveloxis_ops.job_runs r SET finished_at = aveloxis_ops.clock(), outcome = finish_run.outcome,
                                       error = finish_run.error, result = finish_run.result
    WHERE r.run_id = finish_run.run;
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

CREATE OR REPLACE FUNCTION aveloxis.fail(job bigint, lease_token uuid, error text, class text)
RETURNS timestamptz
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    j        aveloxis_ops.jobs;
    lease    record;
    at       timestamptz := aveloxis_ops.clock();
    base     interval;
    cadence  interval;
    limit_n  integer;
    n        integer;
    next_due timestamptz;
BEGIN
    IF class IS NULL OR class NOT IN ('transient', 'skip', 'gone', 'auth', 'fatal') THEN
        RAISE EXCEPTION 'unknown failure class "%"', class USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Classes are transient, skip, gone, auth and fatal.';
    END IF;
    lease := aveloxis_ops.held_lease(lease_token, job);
    j := lease.j;
    base := aveloxis_ops.setting(j.phase || '.backoff_base')::interval;
    cadence := aveloxis_ops.setting(j.phase || '.cadence')::interval;
    limit_n := greatest(1, aveloxis_ops.setting(j.phase || '.sideline_after')::integer);
    PERFORM aveloxis_ops.finish_run(lease.run, class, error, NULL);

    IF class = 'transient' THEN
        n := j.consecutive_failures + 1;
        IF n % limit_n = 0 THEN
            UPDATE aveloxis_ops.jobs SET sidelined_until = at + cadence, backoff_until = NULL,
                sideline_reason = format('%s consecutive transient failures; last: %s', n, error)
            WHERE job_id = j.job_id;
            next_due := at + cadence;
        ELSE
            next_due := at + base * power(((n - 1) % limit_n) + 1, 2);
            UPDATE aveloxis_ops.jobs SET backoff_until = next_due WHERE job_id = j.job_id;
        END IF;
        UPDATE aveloxis_ops.jobs SET consecutive_failures = n, retry_first = true WHERE job_id = j.job_id;
    ELSIF class = 'skip' THEN
        next_due := at + cadence;
        UPDATE aveloxis_ops.jobs SET due_at = next_due, due_from_cadence = true, attempts = 0, retry_first = false,
            backoff_until = NULL, priority = 100
        WHERE job_id = j.job_id;
    ELSIF class = 'gone' THEN
        next_due := 'infinity';
        UPDATE aveloxis_ops.jobs SET sidelined_until = 'infinity', backoff_until = NULL,
            sideline_reason = format('gone: %s (reported by the %s phase)', error, j.phase)
        WHERE repo_id = j.repo_id;
    ELSIF class = 'auth' THEN
        next_due := at + base;
        UPDATE aveloxis_ops.jobs SET backoff_until = next_due, retry_first = true WHERE job_id = j.job_id;
    ELSE
        next_due := at + cadence;
        UPDATE aveloxis_ops.jobs SET due_at = next_due, due_from_cadence = false, attempts = 0,
            consecutive_failures = consecutive_failures + 1, retry_first = false, backoff_until = NULL
        WHERE job_id = j.job_id;
    END IF;
    UPDATE aveloxis_ops.jobs SET last_error = error, last_error_class = class, lease_owner = NULL, leased_at = NULL,
                                 lease_expires_at = NULL, lease_length = NULL, lease_run_id = NULL
    WHERE job_id = j.job_id;
    RETURN next_due;
END
$$;

SELECT aveloxis_ops.apply_grants();
