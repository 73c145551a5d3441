-- pg_aveloxis 0.6.0 -> 0.7.0: security and failure hardening (docs/operations.md, Security).
--
-- * The drain (SECURITY DEFINER) uses only scratch tables it made: a same-named temp
--   table the caller made first is refused (it could carry a trigger running with the
--   extension owner's rights).
-- * Leases are proven by an unguessable token that claim/claim_repo return and
--   heartbeat/stage/complete/fail require; only its sha256 is stored (job_runs).
--   Leases held when this upgrade runs were handed out without a token: nobody can
--   finish them, they expire after their lease length and the jobs go back to the
--   queue (the attempt counted); what their agents staged is drained as usual.
-- * Agents stage through aveloxis.stage() under a lease, for the lease's repository and
--   phase only; their INSERT privilege on aveloxis_ops.staging is taken back.
--   record_rename and the commit-author calls take the lease token, not a repo id.
-- * Local paths are registered only under registry.local_path_roots (empty by default).
-- * A field whose value does not fit is stored as NULL and counted (drain_run_nulled);
--   only an unusable key rejects a row, with the entity and the field named.

ALTER TABLE aveloxis_ops.job_runs ADD COLUMN lease_token_digest bytea;
CREATE UNIQUE INDEX job_runs_lease_token_idx ON aveloxis_ops.job_runs (lease_token_digest)
    WHERE lease_token_digest IS NOT NULL;
ALTER TABLE aveloxis_ops.staging ADD COLUMN job_run_id bigint;

CREATE TABLE aveloxis_ops.drain_run_nulled (
    run_id bigint NOT NULL REFERENCES aveloxis_ops.drain_runs ON DELETE CASCADE,
    entity text NOT NULL,
    field  text NOT NULL,
    nulled bigint NOT NULL,
    PRIMARY KEY (run_id, entity, field)
);
COMMENT ON TABLE aveloxis_ops.drain_run_nulled IS 'Per drain run, entity and field: values stored as NULL because they did not fit';
SELECT pg_catalog.pg_extension_config_dump('aveloxis_ops.drain_run_nulled', '');

ALTER TABLE aveloxis_ops.setting_defaults DROP CONSTRAINT setting_defaults_kind_check;
ALTER TABLE aveloxis_ops.setting_defaults ADD CONSTRAINT setting_defaults_kind_check
    CHECK (kind IN ('interval', 'integer', 'paths'));
INSERT INTO aveloxis_ops.setting_defaults (name, default_value, kind, description) VALUES
    ('registry.local_path_roots', '', 'paths',
     'Directories (absolute, comma-separated) under which local git repositories may be registered; empty: none');

-- The lease API changes shape: the old forms (agent names, no token) are gone.
DROP FUNCTION aveloxis.claim(text, text[], integer, interval);
DROP FUNCTION aveloxis.claim_repo(text, bigint, text, interval);
DROP FUNCTION aveloxis.heartbeat(bigint[], text);
DROP FUNCTION aveloxis.complete(bigint, jsonb, text);
DROP FUNCTION aveloxis.fail(bigint, text, text, text);
DROP FUNCTION aveloxis_ops.finishing_job(bigint, text);
DROP FUNCTION aveloxis_ops.finish_run(aveloxis_ops.jobs, text, text, text, jsonb);

CREATE OR REPLACE FUNCTION aveloxis_ops.token_digest(token uuid)
RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT pg_catalog.sha256(pg_catalog.uuid_send(token)) $$;

CREATE OR REPLACE FUNCTION aveloxis.heartbeat(lease_tokens uuid[])
RETURNS SETOF bigint
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    UPDATE aveloxis_ops.jobs j SET lease_expires_at = aveloxis_ops.clock() + j.lease_length
    FROM aveloxis_ops.job_runs r
    WHERE r.lease_token_digest = ANY (ARRAY(SELECT aveloxis_ops.token_digest(t) FROM unnest(lease_tokens) t))
      AND j.lease_run_id = r.run_id AND j.lease_owner IS NOT NULL
    RETURNING j.job_id
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.held_lease(lease_token uuid, job bigint, OUT j aveloxis_ops.jobs, OUT run bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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

CREATE OR REPLACE FUNCTION aveloxis_ops.lease_repo(lease_token uuid, lease_phase text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    lease record := aveloxis_ops.held_lease(lease_token, NULL);
    j     aveloxis_ops.jobs := lease.j;
BEGIN
    IF j.phase <> lease_phase THEN
        RAISE EXCEPTION 'this call needs a % lease; the token is job %''s % lease', lease_phase, j.job_id, j.phase
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN j.repo_id;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.finish_run(j aveloxis_ops.jobs, run bigint, outcome text, error text, result jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    at timestamptz := aveloxis_ops.clock();
BEGIN
    UPDATE aveloxis_ops.job_runs r SET finished_at = at, outcome = finish_run.outcome, error = finish_run.error,
                                       result = finish_run.result
    WHERE r.run_id = finish_run.run;
    UPDATE aveloxis_ops.jobs SET lease_owner = NULL, leased_at = NULL, lease_expires_at = NULL, lease_length = NULL,
                                 lease_run_id = NULL
    WHERE job_id = j.job_id;
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
    PERFORM aveloxis_ops.expire_leases();

    RETURN QUERY
    WITH room AS (
        SELECT p AS phase,
               CASE WHEN NOT limits ? p THEN max_jobs
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

CREATE OR REPLACE FUNCTION aveloxis.claim_repo(agent text, repo bigint, job_phase text DEFAULT 'collect',
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
    j       aveloxis_ops.jobs;
    run     bigint;
    token   uuid := gen_random_uuid();
BEGIN
    IF agent IS NULL OR btrim(agent) = '' OR lease IS NULL OR lease <= '0'::interval THEN
        RAISE EXCEPTION 'claim_repo needs an agent name and a positive lease' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM aveloxis_ops.require_repo(repo);
    PERFORM aveloxis_ops.expire_leases();
    SELECT * INTO j FROM aveloxis_ops.jobs x WHERE x.repo_id = claim_repo.repo AND x.phase = claim_repo.job_phase FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'repo % has no % job', repo, claim_repo.job_phase USING ERRCODE = 'no_data_found',
            HINT = 'Forge repositories have collect, facade (and on GitHub distribution) jobs; plain git ones facade only.';
    END IF;
    IF j.lease_owner IS NOT NULL THEN
        RAISE EXCEPTION 'repo %''s % job is leased by % until %', repo, claim_repo.job_phase, j.lease_owner, j.lease_expires_at
            USING ERRCODE = 'lock_not_available', HINT = 'Wait for that run, or for its lease to expire.';
    END IF;
    IF j.sidelined_until > at THEN
        RAISE EXCEPTION 'repo % is sidelined: %', repo, j.sideline_reason
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'aveloxis.unsideline(repo) resumes it.';
    END IF;
    INSERT INTO aveloxis_ops.job_runs (job_id, repo_id, phase, agent, attempt, started_at, lease_token_digest)
    VALUES (j.job_id, j.repo_id, j.phase, claim_repo.agent, j.attempts + 1, at, aveloxis_ops.token_digest(token))
    RETURNING job_runs.run_id INTO run;
    UPDATE aveloxis_ops.jobs x
    SET lease_owner = claim_repo.agent, leased_at = at, lease_expires_at = at + lease, lease_length = lease,
        lease_run_id = run, attempts = x.attempts + 1, last_attempted_at = at
    WHERE x.job_id = j.job_id
    RETURNING * INTO j;
    RETURN QUERY
    SELECT j.job_id, j.repo_id, j.phase, r.repo_git, r.platform_id,
           CASE WHEN j.force_full OR j.last_success_started_at IS NULL THEN NULL
                WHEN j.phase = 'collect' THEN j.last_success_started_at - overlap
                ELSE j.last_success_started_at END,
           j.force_full OR j.last_success_started_at IS NULL, j.attempts, j.lease_expires_at, j.agent_state, token
    FROM aveloxis_data.repos r WHERE r.repo_id = j.repo_id;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis.complete(job bigint, lease_token uuid, outcome jsonb DEFAULT '{}')
RETURNS timestamptz
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
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
    PERFORM aveloxis_ops.finish_run(j, lease.run, CASE WHEN whole THEN 'complete' ELSE 'partial' END, NULL,
                                    outcome - 'state');
    UPDATE aveloxis_ops.jobs SET
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
    PERFORM aveloxis_ops.finish_run(j, lease.run, class, error, NULL);

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
    UPDATE aveloxis_ops.jobs SET last_error = error, last_error_class = class WHERE job_id = j.job_id;
    RETURN next_due;
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
        ELSIF new_value::integer < 0 THEN
            RAISE EXCEPTION 'negative';
        END IF;
    EXCEPTION WHEN OTHERS THEN
        RAISE EXCEPTION 'setting "%" takes % values; "%" is not one', setting_name,
            CASE setting_kind WHEN 'interval' THEN 'interval (e.g. ''1 day'')'
                              WHEN 'paths' THEN 'comma-separated absolute directory paths without . or .. (e.g. ''/srv/git,/data/repos'')'
                              ELSE 'non-negative integer' END, new_value
            USING ERRCODE = 'invalid_parameter_value';
    END;
    INSERT INTO aveloxis_ops.setting_overrides AS o (name, value) VALUES (setting_name, new_value)
    ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.phase_entities(phase text)
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE phase
        WHEN 'collect' THEN ARRAY['contributor', 'issue', 'pull_request', 'issue_event', 'issue_comment',
                                  'review_comment', 'release', 'repo_info']
        WHEN 'facade' THEN ARRAY['commit', 'commit_removed']
        ELSE '{}'::text[] END
$$;

CREATE OR REPLACE FUNCTION aveloxis.stage(lease_token uuid, entity text, payloads text[], contexts jsonb[] DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    lease    record := aveloxis_ops.held_lease(lease_token, NULL);
    j        aveloxis_ops.jobs := lease.j;
    platform smallint;
    staged   bigint;
BEGIN
    IF entity IS NULL OR NOT entity = ANY (aveloxis_ops.phase_entities(j.phase)) THEN
        RAISE EXCEPTION 'a % lease stages %, not %', j.phase,
            array_to_string(aveloxis_ops.phase_entities(j.phase), ', '), coalesce(entity, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF payloads IS NULL OR array_position(payloads, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'payloads must be an array of JSON texts without NULLs' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF contexts IS NOT NULL AND cardinality(contexts) <> cardinality(payloads) THEN
        RAISE EXCEPTION '% payloads but % contexts: they pair by position', cardinality(payloads), cardinality(contexts)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT r.platform_id INTO platform FROM aveloxis_data.repos r WHERE r.repo_id = j.repo_id;
    INSERT INTO aveloxis_ops.staging (repo_id, platform_id, entity, payload, context, job_run_id)
    SELECT j.repo_id, platform, stage.entity, p.payload, p.context, lease.run
    FROM unnest(payloads, contexts) AS p(payload, context);
    GET DIAGNOSTICS staged = ROW_COUNT;
    RETURN staged;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.check_scratch_owner(name text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    owner_name text;
BEGIN
    SELECT pg_catalog.pg_get_userbyid(c.relowner) INTO owner_name
    FROM pg_catalog.pg_class c
    WHERE c.relnamespace = pg_catalog.pg_my_temp_schema() AND c.relname = check_scratch_owner.name
      AND c.relowner <> (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = current_user);
    IF FOUND THEN
        RAISE EXCEPTION 'this session holds a temporary relation "%" owned by %, not made by the drain; the drain refuses to use it',
            name, owner_name
            USING ERRCODE = 'insufficient_privilege',
                  HINT = format('DROP TABLE pg_temp.%I, or drain from a new session.', name);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.drain_scratch()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    scratch text;
    names   text[] := ARRAY['drain_rows', 'drain_prs', 'drain_comments', 'drain_users', 'drain_user_refs',
                            'drain_issues'];
    ours    bigint;
BEGIN
    -- The session-long tables are checked here; every per-batch table (ON COMMIT DROP) is
    -- checked where it is made, by drop_batch_table.
    PERFORM aveloxis_ops.check_scratch_owner(n) FROM unnest(names || 'drain_scratch_layout_3'::text) n;
    SELECT count(*) INTO ours FROM pg_catalog.pg_class c
    WHERE c.relnamespace = pg_catalog.pg_my_temp_schema()
      AND c.relname = ANY (names || 'drain_scratch_layout_3'::text);
    IF ours = cardinality(names) + 1 THEN
        RETURN;
    END IF;
    FOREACH scratch IN ARRAY names || 'drain_scratch_layout_3'::text LOOP
        PERFORM aveloxis_ops.drop_batch_table(scratch);
    END LOOP;
    CREATE TEMP TABLE drain_scratch_layout_3 ();
    CREATE TEMP TABLE drain_rows (
        staging_id  bigint PRIMARY KEY,
        platform_id smallint NOT NULL,
        doc         jsonb COMPRESSION lz4,
        context     jsonb,
        parse_error text,
        -- Set by a mapper when the row's parent has not arrived: it stays staged.
        pending     boolean NOT NULL DEFAULT false
    ) WITH (toast_tuple_target = 8160) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE drain_prs (
        staging_id            bigint PRIMARY KEY,
        platform_id           smallint NOT NULL,
        platform_pr_id        bigint,
        pr_number             integer,
        node_id               text,
        pr_url                text,
        pr_html_url           text,
        pr_diff_url           text,
        pr_title              text,
        pr_body               text,
        pr_state              text,
        pr_locked             boolean,
        pr_draft              boolean,
        author                jsonb,
        pr_author_association text,
        created_at            timestamptz,
        updated_at            timestamptz,
        closed_at             timestamptz,
        merged_at             timestamptz,
        merge_commit_sha      text,
        pr_commit_count       integer,
        pr_additions          integer,
        pr_deletions          integer,
        pr_changed_files      integer,
        labels                jsonb,
        assignees             jsonb,
        requested             jsonb,
        head                  jsonb,
        base                  jsonb,
        reviews               jsonb,
        commits               jsonb,
        files                 jsonb,
        pull_request_id       bigint,
        changed               boolean NOT NULL DEFAULT false,
        was_inserted          boolean NOT NULL DEFAULT false,
        fresh                 boolean NOT NULL DEFAULT false
    ) WITH (toast_tuple_target = 8160) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE drain_comments (
        staging_id      bigint PRIMARY KEY,
        platform_id     smallint NOT NULL,
        platform_msg_id bigint,
        node_id         text,
        body            text,
        html_url        text,
        parent_number   integer,
        author          jsonb,
        created_at      timestamptz,
        updated_at      timestamptz,
        issue_id        bigint,
        pull_request_id bigint,
        msg_id          bigint,
        changed         boolean NOT NULL DEFAULT false,
        was_inserted    boolean NOT NULL DEFAULT false
    ) WITH (toast_tuple_target = 8160) ON COMMIT DELETE ROWS;
    -- Every user object met in the batch, one row per (platform, id), resolved to cntrb_id.
    CREATE TEMP TABLE drain_users (
        platform_id smallint NOT NULL,
        user_id     bigint NOT NULL,
        login       text,
        user_type   text,
        node_id     text,
        avatar_url  text,
        api_url     text,
        html_url    text,
        gravatar_id text,
        site_admin  text,
        name        text,
        email       text,
        staging_id  bigint NOT NULL,
        cntrb_id    uuid,
        -- Known account whose stored identity and contributor row already say what the
        -- payload says: nothing to write (most accounts of a steady-state batch).
        settled     boolean,
        PRIMARY KEY (platform_id, user_id)
    ) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE drain_user_refs (
        platform_id smallint NOT NULL,
        staging_id  bigint NOT NULL,
        u           jsonb
    ) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE drain_issues (
        staging_id        bigint PRIMARY KEY,
        platform_id       smallint NOT NULL,
        platform_issue_id bigint,
        issue_number      integer,
        node_id           text,
        issue_title       text,
        issue_body        text,
        issue_state       text,
        issue_url         text,
        html_url          text,
        reporter          jsonb,
        closed_by         jsonb,
        assignees         jsonb,
        labels            jsonb,
        is_pull_request   boolean NOT NULL,
        created_at        timestamptz,
        updated_at        timestamptz,
        closed_at         timestamptz,
        comment_count     integer,
        issue_id          bigint,
        changed           boolean NOT NULL DEFAULT false,
        was_inserted      boolean NOT NULL DEFAULT false
    ) WITH (toast_tuple_target = 8160) ON COMMIT DELETE ROWS;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.drop_batch_table(name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM aveloxis_ops.check_scratch_owner(name);
    IF to_regclass('pg_temp.' || quote_ident(name)) IS NOT NULL THEN
        EXECUTE format('DROP TABLE pg_temp.%I', name);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.drain_fields(entity text)
RETURNS TABLE (path text[], kind text, is_key boolean)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT f.path, f.kind, f.is_key
    FROM (VALUES
        ('issue', '{id}'::text[], 'bigint', true), ('issue', '{number}', 'integer', true),
        ('issue', '{comments}', 'integer', false), ('issue', '{created_at}', 'timestamp', false),
        ('issue', '{updated_at}', 'timestamp', false), ('issue', '{closed_at}', 'timestamp', false),
        ('pull_request', '{pull_request,id}', 'bigint', true), ('pull_request', '{pull_request,number}', 'integer', true),
        ('pull_request', '{pull_request,locked}', 'boolean', false),
        ('pull_request', '{pull_request,draft}', 'boolean', false),
        ('pull_request', '{pull_request,merged}', 'boolean', false),
        ('pull_request', '{pull_request,commits}', 'integer', false),
        ('pull_request', '{pull_request,additions}', 'integer', false),
        ('pull_request', '{pull_request,deletions}', 'integer', false),
        ('pull_request', '{pull_request,changed_files}', 'integer', false),
        ('pull_request', '{pull_request,created_at}', 'timestamp', false),
        ('pull_request', '{pull_request,updated_at}', 'timestamp', false),
        ('pull_request', '{pull_request,closed_at}', 'timestamp', false),
        ('pull_request', '{pull_request,merged_at}', 'timestamp', false),
        ('issue_comment', '{id}', 'bigint', true), ('issue_comment', '{created_at}', 'timestamp', false),
        ('issue_comment', '{updated_at}', 'timestamp', false),
        ('issue_event', '{id}', 'bigint', true), ('issue_event', '{created_at}', 'timestamp', false),
        ('issue_event', '{issue,number}', 'integer', false),
        ('release', '{id}', 'bigint', true), ('release', '{draft}', 'boolean', false),
        ('release', '{prerelease}', 'boolean', false), ('release', '{created_at}', 'timestamp', false),
        ('release', '{published_at}', 'timestamp', false), ('release', '{updated_at}', 'timestamp', false),
        ('review_comment', '{id}', 'bigint', true),
        ('review_comment', '{pull_request_review_id}', 'bigint', false),
        ('review_comment', '{in_reply_to_id}', 'bigint', false),
        ('review_comment', '{position}', 'integer', false),
        ('review_comment', '{original_position}', 'integer', false),
        ('review_comment', '{line}', 'integer', false), ('review_comment', '{original_line}', 'integer', false),
        ('review_comment', '{created_at}', 'timestamp', false),
        ('review_comment', '{updated_at}', 'timestamp', false),
        ('repo_info', '{id}', 'bigint', true), ('repo_info', '{fork}', 'boolean', false),
        ('repo_info', '{archived}', 'boolean', false), ('repo_info', '{has_issues}', 'boolean', false),
        ('repo_info', '{has_wiki}', 'boolean', false), ('repo_info', '{has_pages}', 'boolean', false),
        ('repo_info', '{forks_count}', 'integer', false), ('repo_info', '{subscribers_count}', 'integer', false),
        ('repo_info', '{watchers_count}', 'integer', false), ('repo_info', '{stargazers_count}', 'integer', false),
        ('repo_info', '{open_issues_count}', 'integer', false), ('repo_info', '{size}', 'integer', false),
        ('repo_info', '{created_at}', 'timestamp', false), ('repo_info', '{updated_at}', 'timestamp', false),
        ('repo_info', '{pushed_at}', 'timestamp', false)
    ) AS f(entity, path, kind, is_key)
    WHERE f.entity = drain_fields.entity
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.json_fits(v jsonb, kind text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN v IS NULL OR pg_catalog.jsonb_typeof(v) = 'null' THEN true
        WHEN kind = 'timestamp' THEN
            pg_catalog.jsonb_typeof(v) = 'string' AND aveloxis_ops.forge_timestamp(v #>> '{}') IS NOT NULL
        WHEN kind = 'boolean' THEN
            pg_catalog.jsonb_typeof(v) = 'boolean'
            OR (pg_catalog.jsonb_typeof(v) = 'string' AND (v #>> '{}') IN ('true', 'false'))
        WHEN kind IN ('integer', 'bigint') THEN
            CASE WHEN pg_catalog.jsonb_typeof(v) = 'number'
                     THEN v::numeric = pg_catalog.trunc(v::numeric)
                          AND v::numeric BETWEEN CASE kind WHEN 'integer' THEN -2147483648 ELSE -9223372036854775808 END
                                             AND CASE kind WHEN 'integer' THEN 2147483647 ELSE 9223372036854775807 END
                 WHEN pg_catalog.jsonb_typeof(v) = 'string' AND (v #>> '{}') ~ '^[+-]?[0-9]{1,19}$'
                     THEN (v #>> '{}')::numeric
                          BETWEEN CASE kind WHEN 'integer' THEN -2147483648 ELSE -9223372036854775808 END
                              AND CASE kind WHEN 'integer' THEN 2147483647 ELSE 9223372036854775807 END
                 ELSE false END
        ELSE true END
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.null_unfit_fields(run bigint, ent text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    bad record;
BEGIN
    -- The common case: every field fits, one pass and nothing else. Each value is taken
    -- out once (OFFSET 0 keeps the inlined json_fits from extracting it again per test).
    IF NOT EXISTS (SELECT FROM pg_temp.drain_rows r, aveloxis_ops.drain_fields(ent) f,
                               LATERAL (SELECT r.doc #> f.path AS v OFFSET 0) x
                   WHERE r.doc IS NOT NULL AND NOT r.pending AND r.parse_error IS NULL
                     AND NOT aveloxis_ops.json_fits(x.v, f.kind)) THEN
        RETURN;
    END IF;
    PERFORM aveloxis_ops.drop_batch_table('unfit_fields');
    CREATE TEMP TABLE unfit_fields ON COMMIT DROP AS
    SELECT r.staging_id, f.path, f.kind, f.is_key, left(x.v::text, 60) AS shown
    FROM pg_temp.drain_rows r, aveloxis_ops.drain_fields(ent) f, LATERAL (SELECT r.doc #> f.path AS v OFFSET 0) x
    WHERE r.doc IS NOT NULL AND NOT r.pending AND r.parse_error IS NULL
      AND NOT aveloxis_ops.json_fits(x.v, f.kind);
    UPDATE pg_temp.drain_rows r
    SET parse_error = format('field "%s" is %s, not a usable %s id; the row cannot be stored without it',
                             array_to_string(u.path, '.'), u.shown, u.kind),
        doc = NULL
    FROM pg_temp.unfit_fields u
    WHERE u.staging_id = r.staging_id AND u.is_key;
    FOR bad IN SELECT u.path, array_agg(u.staging_id) AS ids, count(*) AS n
               FROM pg_temp.unfit_fields u
               WHERE NOT u.is_key AND NOT EXISTS (SELECT FROM pg_temp.unfit_fields k
                                                  WHERE k.staging_id = u.staging_id AND k.is_key)
               GROUP BY u.path LOOP
        UPDATE pg_temp.drain_rows r SET doc = r.doc #- bad.path WHERE r.staging_id = ANY (bad.ids);
        INSERT INTO aveloxis_ops.drain_run_nulled AS t (run_id, entity, field, nulled)
        VALUES (run, ent, array_to_string(bad.path, '.'), bad.n)
        ON CONFLICT (run_id, entity, field) DO UPDATE SET nulled = t.nulled + EXCLUDED.nulled;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis.drain_step(repo_id bigint, run_id bigint, batch_size integer DEFAULT 1000)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
-- The planner cannot see how many rows a JSON document unnests into, guesses high, and
-- JIT-compiles batches that take milliseconds: compilation alone cost 0.85 s per batch
-- of 1,000 commits. Batches are small by design; JIT never pays here.
SET jit = off
AS $$
DECLARE
    target     bigint := drain_step.repo_id;
    run        bigint := drain_step.run_id;
    ent        text;
    after_id   bigint;
    taken      bigint;
    batch      aveloxis_ops.drain_counts;
    one        aveloxis_ops.drain_counts;
    rejected   bigint;
    row_id     bigint;
    err_text   text;
    err_state  text;
    unmapped   bigint;
BEGIN
    IF batch_size IS NULL OR batch_size < 1 THEN
        RAISE EXCEPTION 'batch_size must be at least 1' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- One drain per repository at a time; transaction-scoped, so it can never leak.
    IF NOT pg_try_advisory_xact_lock(hashtextextended('aveloxis.drain', target)) THEN
        RETURN 'busy';
    END IF;
    PERFORM aveloxis_ops.drain_scratch();

    FOREACH ent IN ARRAY aveloxis_ops.drain_entities() LOOP
        -- Rows left pending earlier in this run are not read again until the next run.
        SELECT c.last_staging_id INTO after_id FROM aveloxis_ops.drain_run_counts c
        WHERE c.run_id = run AND c.entity = ent;
        DELETE FROM pg_temp.drain_rows;
        -- Each payload is de-toasted, sanitized and parsed exactly once: this is the
        -- floor every drain pays. Only a batch holding an unparsable payload takes the
        -- slower path that finds it and says why.
        BEGIN
            INSERT INTO pg_temp.drain_rows (staging_id, platform_id, context, doc)
            SELECT st.staging_id, st.platform_id, st.context, aveloxis_ops.sanitize_json(st.payload)::jsonb
            FROM aveloxis_ops.staging st
            WHERE st.repo_id = target AND st.entity = ent AND st.drained_at IS NULL
              AND st.staging_id > coalesce(after_id, 0)
            ORDER BY st.staging_id LIMIT batch_size;
        EXCEPTION WHEN OTHERS THEN
            INSERT INTO pg_temp.drain_rows (staging_id, platform_id, context, doc, parse_error)
            SELECT st.staging_id, st.platform_id, st.context, p.doc, 'payload is not valid JSON: ' || p.err
            FROM (SELECT st.staging_id, st.platform_id, st.context, st.payload FROM aveloxis_ops.staging st
                  WHERE st.repo_id = target AND st.entity = ent AND st.drained_at IS NULL
                    AND st.staging_id > coalesce(after_id, 0)
                  ORDER BY st.staging_id LIMIT batch_size) st,
                 LATERAL aveloxis_ops.parse_payload(st.payload) p;
        END;
        SELECT count(*) INTO taken FROM pg_temp.drain_rows;
        CONTINUE WHEN taken = 0;
        ANALYZE pg_temp.drain_rows;

        INSERT INTO aveloxis_ops.drain_run_counts AS c (run_id, entity, last_staging_id)
        SELECT run, ent, max(staging_id) FROM pg_temp.drain_rows
        ON CONFLICT ON CONSTRAINT drain_run_counts_pkey DO UPDATE SET last_staging_id = EXCLUDED.last_staging_id;

        -- Every entity's payload is one JSON object.
        UPDATE pg_temp.drain_rows r
        SET parse_error = format('payload is a JSON %s, not an object', jsonb_typeof(r.doc)), doc = NULL
        WHERE jsonb_typeof(r.doc) <> 'object';
        PERFORM aveloxis_ops.null_unfit_fields(run, ent);
        rejected := 0;
        FOR row_id, err_text IN SELECT staging_id, parse_error FROM pg_temp.drain_rows WHERE parse_error IS NOT NULL LOOP
            rejected := rejected + aveloxis_ops.reject(ARRAY[row_id], ent || ': ' || err_text, '22P02');
        END LOOP;

        -- Only GitHub payloads are mapped so far: others wait, counted, until their
        -- mapping ships (an upgrade); they are never mapped as if they were GitHub's.
        -- Git history is the agent's own envelope, the same for every platform.
        UPDATE pg_temp.drain_rows r SET pending = true
        WHERE r.doc IS NOT NULL AND r.platform_id <> 1 AND ent NOT IN ('commit', 'commit_removed');
        GET DIAGNOSTICS unmapped = ROW_COUNT;

        BEGIN
            batch := aveloxis_ops.drain_entity(ent, target, NULL);
            UPDATE aveloxis_ops.staging s SET drained_at = now()
            FROM pg_temp.drain_rows r WHERE r.staging_id = s.staging_id AND r.doc IS NOT NULL AND NOT r.pending;
            -- Rows put back by requeue_rejects() that now drained are no longer rejects.
            DELETE FROM aveloxis_ops.staging_rejects j
            USING pg_temp.drain_rows r WHERE j.staging_id = r.staging_id AND r.doc IS NOT NULL AND NOT r.pending;
        EXCEPTION WHEN OTHERS THEN
            -- Something in the batch cannot be stored: redo it row by row, so only that
            -- row is rejected and the others are stored.
            batch := ROW(0, 0, 0, 0, 0)::aveloxis_ops.drain_counts;
            FOR row_id IN SELECT staging_id FROM pg_temp.drain_rows WHERE doc IS NOT NULL AND NOT pending
                          ORDER BY staging_id LOOP
                BEGIN
                    one := aveloxis_ops.drain_entity(ent, target, row_id);
                    IF one.pending = 0 THEN
                        UPDATE aveloxis_ops.staging s SET drained_at = now() WHERE s.staging_id = row_id;
                        DELETE FROM aveloxis_ops.staging_rejects j WHERE j.staging_id = row_id;
                    END IF;
                    batch.inserted := batch.inserted + one.inserted;
                    batch.updated := batch.updated + one.updated;
                    batch.unchanged := batch.unchanged + one.unchanged;
                    batch.skipped := batch.skipped + one.skipped;
                    batch.pending := batch.pending + one.pending;
                EXCEPTION WHEN OTHERS THEN
                    GET STACKED DIAGNOSTICS err_text = MESSAGE_TEXT, err_state = RETURNED_SQLSTATE;
                    rejected := rejected + aveloxis_ops.reject(ARRAY[row_id], ent || ': ' || err_text, err_state);
                END;
            END LOOP;
        END;
        batch.pending := batch.pending + unmapped;
        PERFORM aveloxis_ops.add_counts(run, ent, batch, rejected);
        RETURN 'more';
    END LOOP;
    -- Everything is in: the commit aggregates the new commits made stale are refreshed.
    PERFORM aveloxis_ops.refresh_commit_aggregates(target);
    RETURN 'done';
END
$$;

CREATE OR REPLACE FUNCTION aveloxis.drain_finish(run_id bigint, last_step text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    run aveloxis_ops.drain_runs;
    summary text;
    nulled text;
BEGIN
    UPDATE aveloxis_ops.drain_runs d
    SET finished_at = clock_timestamp(), outcome = CASE last_step WHEN 'busy' THEN 'lock_busy' ELSE 'drained' END
    WHERE d.run_id = drain_finish.run_id RETURNING * INTO run;
    IF last_step = 'busy' THEN
        RAISE NOTICE 'repo % is being drained by another session; this drain (run %) returns without draining more',
            run.repo_id, run.run_id;
        RETURN;
    END IF;
    SELECT string_agg(format('%s: %s inserted, %s updated, %s unchanged, %s skipped, %s pending, %s rejected',
                             c.entity, c.inserted, c.updated, c.unchanged, c.skipped, c.pending, c.rejected), '; '
                      ORDER BY array_position(aveloxis_ops.drain_entities(), c.entity))
    INTO summary
    FROM aveloxis_ops.drain_run_counts c WHERE c.run_id = run.run_id;
    SELECT string_agg(format('%s.%s %s', n.entity, n.field, n.nulled), ', ' ORDER BY n.entity, n.field)
    INTO nulled
    FROM aveloxis_ops.drain_run_nulled n WHERE n.run_id = run.run_id;
    IF nulled IS NOT NULL THEN
        summary := summary || '; fields stored as NULL because their value did not fit: ' || nulled;
    END IF;
    RAISE NOTICE 'drained repo % (run %): %', run.repo_id, run.run_id, coalesce(summary, 'nothing pending');
END
$$;

CREATE OR REPLACE FUNCTION aveloxis_ops.parse_payload(payload text, OUT doc jsonb, OUT err text)
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    clean text := aveloxis_ops.sanitize_json(payload);
BEGIN
    doc := clean::jsonb;
EXCEPTION WHEN OTHERS THEN
    doc := NULL;
    err := coalesce(aveloxis_ops.json_syntax_error(clean), SQLERRM);
END
$$;

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
    DELETE FROM aveloxis_data.dm_repo_group_annual d USING pg_temp.stale_groups g
    WHERE d.repo_group_id = grp AND d.email = g.email AND d.year = g.year;
    DELETE FROM aveloxis_data.dm_repo_group_monthly d USING pg_temp.stale_groups g
    WHERE d.repo_group_id = grp AND d.email = g.email AND d.year = g.year;
    DELETE FROM aveloxis_data.dm_repo_group_weekly d USING pg_temp.stale_groups g
    WHERE d.repo_group_id = grp AND d.email = g.email AND d.year = g.year;
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

CREATE OR REPLACE FUNCTION aveloxis_ops.check_local_path(url_key text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    path  text;
    roots text[];
BEGIN
    IF url_key IS NULL OR NOT starts_with(url_key, 'file://') THEN
        RETURN;
    END IF;
    path := substr(url_key, 8);
    SELECT coalesce(array_agg(rtrim(btrim(r), '/')), '{}') INTO roots
    FROM unnest(string_to_array(aveloxis_ops.setting('registry.local_path_roots'), ',')) r
    WHERE btrim(r) <> '';
    IF NOT EXISTS (SELECT FROM unnest(roots) r WHERE path = r OR starts_with(path, r || '/')) THEN
        RAISE EXCEPTION 'local path % is not under a directory allowed for local repositories (%)', path,
            CASE WHEN cardinality(roots) = 0 THEN 'none is allowed' ELSE array_to_string(roots, ', ') END
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'An admin allows directories with SELECT aveloxis.set_setting(''registry.local_path_roots'', ''/srv/git,/data/repos'').';
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis.add_repo(url text, group_name text DEFAULT 'Default')
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    parsed   record;
    existing record;
    new_id   bigint;
    group_id bigint;
BEGIN
    IF url IS NULL THEN
        RAISE EXCEPTION 'repository URL is NULL' USING ERRCODE = 'null_value_not_allowed',
            HINT = 'Pass a GitHub or GitLab URL, a git remote, or an absolute local path.';
    END IF;
    IF group_name IS NULL OR btrim(group_name) = '' THEN
        RAISE EXCEPTION 'repo group name is empty'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Omit the argument to use the group ''Default''.';
    END IF;
    IF group_name ~ '^[0-9]+$' THEN
        RAISE EXCEPTION 'repo group name "%" is all digits', group_name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = '8Knot reads all-digit group names as repo ids; use a name with a letter in it.';
    END IF;

    SELECT * INTO STRICT parsed FROM aveloxis.parse_repo_url(url);
    PERFORM aveloxis_ops.check_local_path(parsed.url_key);

    -- Two sessions adding spellings of one repository must end with one row.
    PERFORM pg_advisory_xact_lock(hashtextextended('aveloxis.repo_url:' || parsed.url_key, 0));

    SELECT r.repo_id, g.rg_name INTO existing
    FROM aveloxis_data.repo_url_history h
    JOIN aveloxis_data.repos r ON r.repo_id = h.repo_id
    JOIN aveloxis_data.repo_groups g ON g.repo_group_id = r.repo_group_id
    WHERE h.url_key = parsed.url_key;
    IF FOUND THEN
        IF existing.rg_name <> group_name THEN
            RAISE NOTICE 'repository % is already registered as repo % in group "%"; it stays there',
                parsed.repo_git, existing.repo_id, existing.rg_name;
        END IF;
        RETURN existing.repo_id;
    END IF;

    INSERT INTO aveloxis_data.repo_groups (rg_name, tool_source, tool_version, data_source)
    VALUES (group_name, 'pg_aveloxis', aveloxis.version(), 'aveloxis.add_repo')
    ON CONFLICT (rg_name) DO NOTHING;
    SELECT g.repo_group_id INTO STRICT group_id FROM aveloxis_data.repo_groups g WHERE g.rg_name = group_name;

    INSERT INTO aveloxis_data.repos
        (repo_group_id, platform_id, repo_git, repo_host, repo_owner, repo_name,
         tool_source, tool_version, data_source)
    VALUES
        (group_id, parsed.platform_id, parsed.repo_git, parsed.repo_host, parsed.repo_owner, parsed.repo_name,
         'pg_aveloxis', aveloxis.version(), 'aveloxis.add_repo')
    RETURNING repo_id INTO new_id;

    INSERT INTO aveloxis_data.repo_url_history (url_key, repo_id, repo_git, source)
    VALUES (parsed.url_key, new_id, parsed.repo_git, 'add_repo');
    -- Its jobs, one per phase (sql/queue.sql).
    PERFORM aveloxis_ops.enqueue_repo(new_id);
    RETURN new_id;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis.record_rename(repo_id bigint, new_url text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    target_id bigint := repo_id;
    current   record;
    parsed    record;
    owner_id  bigint;
BEGIN
    IF target_id IS NULL OR new_url IS NULL THEN
        RAISE EXCEPTION 'record_rename needs a repo_id and a new URL' USING ERRCODE = 'null_value_not_allowed',
            HINT = 'Pass the repo_id (aveloxis.resolve_repo(<old url>) finds it) and the URL the repository has now.';
    END IF;
    SELECT r.repo_id, r.platform_id, r.repo_host, r.repo_git INTO current
    FROM aveloxis_data.repos r WHERE r.repo_id = target_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'repo % does not exist', target_id
            USING ERRCODE = 'no_data_found', HINT = 'Find the id with aveloxis.resolve_repo(<old url>).';
    END IF;

    SELECT * INTO STRICT parsed FROM aveloxis.parse_repo_url(new_url);
    IF parsed.platform_id <> current.platform_id OR parsed.repo_host IS DISTINCT FROM current.repo_host THEN
        RAISE EXCEPTION 'repo % is on %, but % is on %: a rename cannot move a repository to another host',
                target_id, coalesce(current.repo_host, 'the local file system'), parsed.repo_git,
                coalesce(parsed.repo_host, 'the local file system')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Register the repository on the new host with aveloxis.add_repo().';
    END IF;
    PERFORM aveloxis_ops.check_local_path(parsed.url_key);

    PERFORM pg_advisory_xact_lock(hashtextextended('aveloxis.repo_url:' || parsed.url_key, 0));
    SELECT h.repo_id INTO owner_id FROM aveloxis_data.repo_url_history h WHERE h.url_key = parsed.url_key;
    IF FOUND AND owner_id <> target_id THEN
        RAISE EXCEPTION 'cannot rename repo % to %: that URL belongs to repo %', target_id, parsed.repo_git, owner_id
            USING ERRCODE = 'unique_violation',
                  HINT = 'If both are the same repository, the forge id (repo_src_id) tells; merging registered repos is not supported yet.';
    END IF;

    UPDATE aveloxis_data.repo_url_history h SET superseded_at = now()
    WHERE h.repo_id = target_id AND h.superseded_at IS NULL AND h.url_key <> parsed.url_key;
    INSERT INTO aveloxis_data.repo_url_history AS h (url_key, repo_id, repo_git, source)
    VALUES (parsed.url_key, target_id, parsed.repo_git, 'rename')
    ON CONFLICT (url_key) DO UPDATE SET superseded_at = NULL, repo_git = EXCLUDED.repo_git;

    UPDATE aveloxis_data.repos r
    SET repo_git = parsed.repo_git, repo_owner = parsed.repo_owner, repo_name = parsed.repo_name
    WHERE r.repo_id = target_id;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis.record_rename(lease_token uuid, new_url text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
BEGIN
    PERFORM aveloxis.record_rename(aveloxis_ops.lease_repo(lease_token, 'collect'), new_url);
END
$$;

CREATE OR REPLACE FUNCTION aveloxis.commit_authors_to_resolve(lease_token uuid, max_emails integer DEFAULT 1000)
RETURNS TABLE (email text, raw_email text, name text, sample_hash text, commits bigint)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
BEGIN
    RETURN QUERY SELECT * FROM aveloxis.commit_authors_to_resolve(aveloxis_ops.lease_repo(lease_token, 'facade'),
                                                                  max_emails);
END
$$;

CREATE OR REPLACE FUNCTION aveloxis.link_commit_author(lease_token uuid, email text, cntrb_id uuid, login text DEFAULT NULL,
                                            source text DEFAULT 'commit author')
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
BEGIN
    RETURN aveloxis.link_commit_author(aveloxis_ops.lease_repo(lease_token, 'facade'), email, cntrb_id, login, source);
END
$$;

CREATE OR REPLACE FUNCTION aveloxis.record_commit_author(lease_token uuid, email text, platform smallint, user_id bigint,
                                              login text, name text DEFAULT NULL, source text DEFAULT NULL,
                                              OUT cntrb_id uuid, OUT commits_linked bigint)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
BEGIN
    SELECT r.cntrb_id, r.commits_linked INTO cntrb_id, commits_linked
    FROM aveloxis.record_commit_author(aveloxis_ops.lease_repo(lease_token, 'facade'), email, platform, user_id,
                                       login, name, source) r;
END
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
    GRANT USAGE ON SCHEMA aveloxis, aveloxis_data TO aveloxis_analyst;
    GRANT SELECT ON ALL TABLES IN SCHEMA aveloxis_data TO aveloxis_analyst;
    GRANT EXECUTE ON FUNCTION
        aveloxis.version(),
        aveloxis.platform_uuid(smallint, bigint),
        aveloxis.parse_repo_url(text),
        aveloxis.resolve_repo(text),
        aveloxis.registry_counts(),
        aveloxis.resolve_email(text),
        aveloxis.contributor_quality(),
        aveloxis.duplicate_contributors(integer),
        aveloxis.identity_anomalies(),
        aveloxis.enrichment_progress(),
        aveloxis.search_resolve_queue(),
        aveloxis.contributor_fk_integrity(),
        aveloxis.queue_health(),
        aveloxis.why_not_collected(bigint),
        aveloxis.job_history(bigint, integer),
        aveloxis.token_status()
    TO aveloxis_analyst;

    -- aveloxis_agent: the agent API only; no direct access to aveloxis_data.
    GRANT USAGE ON SCHEMA aveloxis TO aveloxis_agent;
    GRANT EXECUTE ON FUNCTION
        aveloxis.version(),
        aveloxis.platform_uuid(smallint, bigint),
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
        aveloxis.record_commit_author_miss(text, text, text, text)
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
    GRANT USAGE ON SCHEMA aveloxis, aveloxis_ops, aveloxis_data TO aveloxis_admin;
    GRANT SELECT ON ALL TABLES IN SCHEMA aveloxis_ops, aveloxis_data TO aveloxis_admin;
    GRANT EXECUTE ON ALL ROUTINES IN SCHEMA aveloxis TO aveloxis_admin;
END
$$;

SELECT aveloxis_ops.apply_grants();
