-- pg_aveloxis 0.3.0 -> 0.4.0: the work queue (sql/queue.sql) and shared token budgets
-- (sql/tokens.sql).
--
-- Settings with their defaults, one job per (repository, phase), the run history, the
-- claim / heartbeat / complete / fail verbs, prioritize / force_recollect / sideline,
-- tick(), schedule() for pg_cron, the functions that explain the queue, and the token
-- budgets agents share. aveloxis.add_repo enqueues new repositories; the ones registered
-- before this upgrade are enqueued at the end of this script.

-- Settings: the defaults ship with the extension; what an operator changes is kept in
-- setting_overrides (the only part a dump carries). aveloxis_ops.settings shows both.
CREATE TABLE aveloxis_ops.setting_defaults (
    name          text PRIMARY KEY,
    default_value text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('interval', 'integer')),
    description   text NOT NULL
);
INSERT INTO aveloxis_ops.setting_defaults (name, default_value, kind, description) VALUES
    ('collect.cadence', '1 day', 'interval', 'How often a repository''s forge data is collected'),
    ('facade.cadence', '1 day', 'interval', 'How often a repository''s git history is collected'),
    ('distribution.cadence', '180 days', 'interval', 'How often a repository''s distribution evidence is scanned'),
    ('analysis.cadence', '30 days', 'interval', 'How often analyses run'),
    ('collect.max_leased', '0', 'integer', 'Most collect jobs leased at once (0: no limit)'),
    ('facade.max_leased', '0', 'integer', 'Most facade jobs leased at once (0: no limit)'),
    ('distribution.max_leased', '0', 'integer', 'Most distribution jobs leased at once (0: no limit)'),
    ('analysis.max_leased', '0', 'integer', 'Most analysis jobs leased at once (0: no limit)'),
    ('collect.backoff_base', '120 seconds', 'interval', 'Backoff after transient failure n: base x n^2'),
    ('facade.backoff_base', '120 seconds', 'interval', 'Backoff after transient failure n: base x n^2'),
    ('distribution.backoff_base', '120 seconds', 'interval', 'Backoff after transient failure n: base x n^2'),
    ('analysis.backoff_base', '120 seconds', 'interval', 'Backoff after transient failure n: base x n^2'),
    ('collect.sideline_after', '10', 'integer', 'Consecutive transient failures that sideline a job for one cadence'),
    ('facade.sideline_after', '10', 'integer', 'Consecutive transient failures that sideline a job for one cadence'),
    ('distribution.sideline_after', '10', 'integer', 'Consecutive transient failures that sideline a job for one cadence'),
    ('analysis.sideline_after', '10', 'integer', 'Consecutive transient failures that sideline a job for one cadence'),
    ('collect.since_overlap', '1 hour', 'interval', 'Incremental collections start this long before the last successful one began'),
    ('staging.retention', '7 days', 'interval', 'tick() deletes drained staging rows older than this'),
    ('job_runs.retention', '30 days', 'interval', 'tick() deletes job run history older than this'),
    ('clock.offset', '0', 'interval', 'Added to now() by the scheduler: for tests of time-dependent behaviour only');

CREATE TABLE aveloxis_ops.setting_overrides (
    name  text PRIMARY KEY REFERENCES aveloxis_ops.setting_defaults,
    value text NOT NULL
);
SELECT pg_catalog.pg_extension_config_dump('aveloxis_ops.setting_overrides', '');
CREATE VIEW aveloxis_ops.settings AS
    SELECT d.name, coalesce(o.value, d.default_value) AS value, d.default_value, d.kind, d.description
    FROM aveloxis_ops.setting_defaults d LEFT JOIN aveloxis_ops.setting_overrides o USING (name);
COMMENT ON VIEW aveloxis_ops.settings IS 'Scheduler settings; change them with aveloxis.set_setting(name, value)';

-- A setting's value; a clear error for an unknown name.
CREATE FUNCTION aveloxis_ops.setting(setting_name text)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    setting_value text;
BEGIN
    SELECT s.value INTO setting_value FROM aveloxis_ops.settings s WHERE s.name = setting_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown setting "%"', setting_name
            USING ERRCODE = 'undefined_object', HINT = 'SELECT name FROM aveloxis_ops.settings lists them.';
    END IF;
    RETURN setting_value;
END
$$;

CREATE FUNCTION aveloxis.set_setting(setting_name text, new_value text)
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
        ELSIF new_value::integer < 0 THEN
            RAISE EXCEPTION 'negative';
        END IF;
    EXCEPTION WHEN OTHERS THEN
        RAISE EXCEPTION 'setting "%" takes % values; "%" is not one', setting_name,
            CASE setting_kind WHEN 'interval' THEN 'interval (e.g. ''1 day'')' ELSE 'non-negative integer' END, new_value
            USING ERRCODE = 'invalid_parameter_value';
    END;
    INSERT INTO aveloxis_ops.setting_overrides AS o (name, value) VALUES (setting_name, new_value)
    ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value;
END
$$;

-- Back to the default value.
CREATE FUNCTION aveloxis.reset_setting(setting_name text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
BEGIN
    PERFORM aveloxis_ops.setting(setting_name);
    DELETE FROM aveloxis_ops.setting_overrides o WHERE o.name = setting_name;
END
$$;

-- The scheduler's clock: now() plus the test offset. (plpgsql: its plan is cached; a
-- SQL function with SET options is planned again at every call.)
CREATE FUNCTION aveloxis_ops.clock()
RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN now() + coalesce((SELECT o.value FROM aveloxis_ops.setting_overrides o WHERE o.name = 'clock.offset'),
                            '0')::interval;
END
$$;

CREATE TABLE aveloxis_ops.jobs (
    job_id               bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    repo_id              bigint NOT NULL REFERENCES aveloxis_data.repos ON DELETE CASCADE,
    phase                text NOT NULL CHECK (phase IN ('collect', 'facade', 'distribution', 'analysis')),
    -- Lower is served first; prioritize() sets 0, a completed run returns to 100.
    priority             integer NOT NULL DEFAULT 100,
    due_at               timestamptz NOT NULL DEFAULT now(),
    -- due_at came from the cadence (tick() re-aligns these when a cadence changes).
    due_from_cadence     boolean NOT NULL DEFAULT false,
    lease_owner          text,
    leased_at            timestamptz,
    lease_expires_at     timestamptz,
    lease_length         interval,
    lease_run_id         bigint,
    -- Attempts of the current run (a claim counts one, whether it ends well or expires).
    attempts             integer NOT NULL DEFAULT 0,
    consecutive_failures integer NOT NULL DEFAULT 0,
    backoff_until        timestamptz,
    -- Served before other due jobs: the last run was partial or failed transiently.
    retry_first          boolean NOT NULL DEFAULT false,
    sidelined_until      timestamptz,
    sideline_reason      text,
    force_full           boolean NOT NULL DEFAULT false,
    last_attempted_at    timestamptz,
    last_success_at      timestamptz,
    -- When the last successful run was claimed: incremental runs collect from there.
    last_success_started_at timestamptz,
    last_error           text,
    last_error_class     text,
    last_outcome         jsonb,
    -- What the agent keeps between runs (ETags, cursors): handed back with every claim.
    agent_state          jsonb NOT NULL DEFAULT '{}',
    UNIQUE (repo_id, phase),
    CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL))
);
COMMENT ON TABLE aveloxis_ops.jobs IS 'One row per (repository, phase): the work queue; use aveloxis.claim() and friends';
-- The claim's scan: unleased jobs in claim order, every phase in one order (a claim
-- for several phases walks it once; phase is a filter). Due jobs come first in each
-- (retry_first, priority) group, so a claim stops early unless fewer jobs are due
-- than it asked for.
CREATE INDEX jobs_claim_idx ON aveloxis_ops.jobs (retry_first DESC, priority, due_at, repo_id)
    WHERE lease_owner IS NULL;
CREATE INDEX jobs_lease_expiry_idx ON aveloxis_ops.jobs (lease_expires_at) WHERE lease_owner IS NOT NULL;

CREATE TABLE aveloxis_ops.job_runs (
    run_id      bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    job_id      bigint NOT NULL REFERENCES aveloxis_ops.jobs ON DELETE CASCADE,
    repo_id     bigint NOT NULL,
    phase       text NOT NULL,
    agent       text NOT NULL,
    attempt     integer NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz,
    outcome     text CHECK (outcome IN ('complete', 'partial', 'transient', 'skip', 'gone', 'auth', 'fatal',
                                        'lease_expired')),
    error       text,
    result      jsonb
);
COMMENT ON TABLE aveloxis_ops.job_runs IS 'Every claimed run of a job and how it ended; pruned by tick()';
CREATE INDEX job_runs_job_idx ON aveloxis_ops.job_runs (job_id, run_id);
CREATE INDEX job_runs_started_idx ON aveloxis_ops.job_runs (started_at);

SELECT pg_catalog.pg_extension_config_dump('aveloxis_ops.jobs', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('aveloxis_ops.jobs', 'job_id'), '');
SELECT pg_catalog.pg_extension_config_dump('aveloxis_ops.job_runs', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('aveloxis_ops.job_runs', 'run_id'), '');

-- The phases a repository gets: forge data for forges, git for all, distribution
-- evidence for GitHub (reference 002, section 7).
CREATE FUNCTION aveloxis_ops.phases_of(platform smallint)
RETURNS text[]
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE platform WHEN 1 THEN ARRAY['collect', 'facade', 'distribution']
                         WHEN 2 THEN ARRAY['collect', 'facade']
                         ELSE ARRAY['facade'] END
$$;

-- A repository's jobs, one per phase (aveloxis.add_repo calls this). Idempotent.
CREATE FUNCTION aveloxis_ops.enqueue_repo(repo bigint)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO aveloxis_ops.jobs (repo_id, phase, due_at)
    SELECT r.repo_id, p, aveloxis_ops.clock()
    FROM aveloxis_data.repos r, unnest(aveloxis_ops.phases_of(r.platform_id)) p
    WHERE r.repo_id = repo
    ON CONFLICT (repo_id, phase) DO NOTHING
$$;

CREATE FUNCTION aveloxis_ops.require_repo(repo bigint)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM aveloxis_data.repos r WHERE r.repo_id = repo) THEN
        RAISE EXCEPTION 'repo % does not exist', repo
            USING ERRCODE = 'no_data_found', HINT = 'aveloxis.resolve_repo(<url>) finds a repository''s id.';
    END IF;
END
$$;

-- Ends the runs of leases that expired unrenewed; their jobs return to the queue, the
-- attempt counted. SKIP LOCKED: concurrent claimers never wait on each other here.
CREATE FUNCTION aveloxis_ops.expire_leases()
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    at       timestamptz := aveloxis_ops.clock();
    released bigint;
BEGIN
    IF NOT EXISTS (SELECT FROM aveloxis_ops.jobs j WHERE j.lease_owner IS NOT NULL AND j.lease_expires_at <= at) THEN
        RETURN 0;
    END IF;
    WITH expired AS (
        SELECT j.job_id, j.lease_run_id FROM aveloxis_ops.jobs j
        WHERE j.lease_owner IS NOT NULL AND j.lease_expires_at <= at
        FOR UPDATE SKIP LOCKED
    ), back AS (
        UPDATE aveloxis_ops.jobs j
        SET lease_owner = NULL, leased_at = NULL, lease_expires_at = NULL, lease_length = NULL, lease_run_id = NULL,
            retry_first = true
        FROM expired e WHERE j.job_id = e.job_id
        RETURNING j.job_id
    ), closed AS (
        UPDATE aveloxis_ops.job_runs r
        SET finished_at = at, outcome = 'lease_expired',
            error = 'the lease expired without a heartbeat; the job went back to the queue'
        FROM expired e WHERE r.run_id = e.lease_run_id AND r.finished_at IS NULL
        RETURNING 1
    )
    SELECT count(*) INTO released FROM back;
    RETURN released;
END
$$;

-- Leases up to max_jobs due jobs of the given phases to an agent. Order: jobs whose
-- last run was partial or failed transiently, then priority, then due time, then repo.
-- Sidelined and backing-off jobs are never handed out.
CREATE FUNCTION aveloxis.claim(agent text, phases text[], max_jobs integer DEFAULT 1,
                               lease interval DEFAULT '15 minutes')
RETURNS TABLE (job_id bigint, repo_id bigint, phase text, repo_git text, platform_id smallint,
               since timestamptz, full_run boolean, attempt integer, lease_expires_at timestamptz,
               agent_state jsonb)
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
            PERFORM pg_advisory_xact_lock(hashtextextended('aveloxis.claim', 0), hashtext(ph));
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
    ), runs AS (
        INSERT INTO aveloxis_ops.job_runs (job_id, repo_id, phase, agent, attempt, started_at)
        SELECT j.job_id, j.repo_id, j.phase, claim.agent, j.attempts + 1, at
        FROM aveloxis_ops.jobs j JOIN picked p ON p.job_id = j.job_id
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
           l.attempts, l.lease_expires_at, l.agent_state
    FROM leased l JOIN aveloxis_data.repos r ON r.repo_id = l.repo_id
    ORDER BY l.retry_first DESC, l.priority, l.due_at, l.repo_id;
END
$$;

-- Leases one repository's job now, due or not: the one-shot `aveloxis-agent collect`.
-- Refused, saying why, when another agent holds it or the repository is sidelined.
CREATE FUNCTION aveloxis.claim_repo(agent text, repo bigint, job_phase text DEFAULT 'collect',
                                    lease interval DEFAULT '15 minutes')
RETURNS TABLE (job_id bigint, repo_id bigint, phase text, repo_git text, platform_id smallint,
               since timestamptz, full_run boolean, attempt integer, lease_expires_at timestamptz,
               agent_state jsonb)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    at      timestamptz := aveloxis_ops.clock();
    overlap interval := aveloxis_ops.setting('collect.since_overlap')::interval;
    j       aveloxis_ops.jobs;
    run     bigint;
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
    INSERT INTO aveloxis_ops.job_runs (job_id, repo_id, phase, agent, attempt, started_at)
    VALUES (j.job_id, j.repo_id, j.phase, claim_repo.agent, j.attempts + 1, at) RETURNING job_runs.run_id INTO run;
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
           j.force_full OR j.last_success_started_at IS NULL, j.attempts, j.lease_expires_at, j.agent_state
    FROM aveloxis_data.repos r WHERE r.repo_id = j.repo_id;
END
$$;

-- Renews the agent's leases by their lease length; returns the jobs still leased to it
-- (a job missing from the answer was lost: its lease had expired and moved on).
CREATE FUNCTION aveloxis.heartbeat(job_ids bigint[], agent text)
RETURNS SETOF bigint
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    UPDATE aveloxis_ops.jobs j SET lease_expires_at = aveloxis_ops.clock() + j.lease_length
    WHERE j.job_id = ANY (job_ids) AND j.lease_owner = heartbeat.agent
    RETURNING j.job_id
$$;

-- The job as its caller may finish it: leased to that agent, or (its lease lapsed) to no one.
CREATE FUNCTION aveloxis_ops.finishing_job(job bigint, agent text)
RETURNS aveloxis_ops.jobs
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    j aveloxis_ops.jobs;
BEGIN
    SELECT * INTO j FROM aveloxis_ops.jobs WHERE job_id = job FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'job % does not exist', job USING ERRCODE = 'no_data_found';
    END IF;
    IF agent IS NULL THEN
        RETURN j;
    END IF;
    IF j.lease_owner IS NOT NULL AND j.lease_owner <> agent THEN
        RAISE EXCEPTION 'job % is leased to %, not to %', job, j.lease_owner, agent
            USING ERRCODE = 'lock_not_available',
                  HINT = 'Your lease expired and another agent claimed the job; drop this run''s result.';
    END IF;
    -- Unleased: only the agent whose lease lapsed, with no claim since, may still finish it.
    IF j.lease_owner IS NULL AND NOT EXISTS (
        SELECT FROM (SELECT r.agent, r.outcome FROM aveloxis_ops.job_runs r WHERE r.job_id = job
                     ORDER BY r.run_id DESC LIMIT 1) last
        WHERE last.agent = finishing_job.agent AND last.outcome = 'lease_expired') THEN
        RAISE EXCEPTION 'job % is not leased to %', job, agent
            USING ERRCODE = 'lock_not_available',
                  HINT = 'Claim the job with aveloxis.claim() before completing or failing it.';
    END IF;
    RETURN j;
END
$$;

-- Records the end of a run in job_runs (the lease's run, or a new row for a run whose
-- lease had already lapsed) and releases the lease.
CREATE FUNCTION aveloxis_ops.finish_run(j aveloxis_ops.jobs, agent text, outcome text, error text, result jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    at timestamptz := aveloxis_ops.clock();
BEGIN
    UPDATE aveloxis_ops.job_runs r SET finished_at = at, outcome = finish_run.outcome, error = finish_run.error,
                                       result = finish_run.result
    WHERE r.run_id = j.lease_run_id AND j.lease_owner IS NOT NULL;
    IF NOT FOUND THEN
        INSERT INTO aveloxis_ops.job_runs (job_id, repo_id, phase, agent, attempt, started_at, finished_at, outcome,
                                           error, result)
        VALUES (j.job_id, j.repo_id, j.phase, coalesce(finish_run.agent, '(unknown)'), j.attempts, coalesce(j.leased_at, at), at,
                finish_run.outcome, finish_run.error, finish_run.result);
    END IF;
    UPDATE aveloxis_ops.jobs SET lease_owner = NULL, leased_at = NULL, lease_expires_at = NULL, lease_length = NULL,
                                 lease_run_id = NULL
    WHERE job_id = j.job_id;
END
$$;

-- A successful run. outcome: {"complete": true|false, "counts": {...}, "state": {...}}; a
-- partial run (complete = false) is served again first, soon; a complete one is next due
-- after the phase's cadence and clears force_recollect. "state" replaces agent_state.
CREATE FUNCTION aveloxis.complete(job bigint, outcome jsonb DEFAULT '{}', agent text DEFAULT NULL)
RETURNS timestamptz
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    j        aveloxis_ops.jobs := aveloxis_ops.finishing_job(job, agent);
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
    PERFORM aveloxis_ops.finish_run(j, agent, CASE WHEN whole THEN 'complete' ELSE 'partial' END, NULL,
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

-- A failed run, by class (reference 001 and 002 section 6.4):
--   transient  backoff base x n^2 after the n-th consecutive failure; the sideline_after-th
--              (10th) sidelines the job for one cadence, and the count starts over
--   skip       the phase does not apply now; not a failure: next due after the cadence
--   gone       404/410: every phase of the repository is sidelined; its data is kept
--   auth       credentials, not the job: back after one backoff base, not counted
--   fatal      will not succeed by retrying: next due after the cadence, counted
CREATE FUNCTION aveloxis.fail(job bigint, error text, class text, agent text DEFAULT NULL)
RETURNS timestamptz
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    j        aveloxis_ops.jobs;
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
    j := aveloxis_ops.finishing_job(job, agent);
    base := aveloxis_ops.setting(j.phase || '.backoff_base')::interval;
    cadence := aveloxis_ops.setting(j.phase || '.cadence')::interval;
    limit_n := greatest(1, aveloxis_ops.setting(j.phase || '.sideline_after')::integer);
    PERFORM aveloxis_ops.finish_run(j, agent, class, error, NULL);

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

-- Serve a repository next: priority 0, due now (sidelined jobs stay sidelined).
CREATE FUNCTION aveloxis.prioritize(repo bigint)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    touched bigint;
BEGIN
    PERFORM aveloxis_ops.require_repo(repo);
    UPDATE aveloxis_ops.jobs SET priority = 0, due_at = least(due_at, aveloxis_ops.clock()), due_from_cadence = false,
                                 backoff_until = NULL
    WHERE repo_id = repo;
    GET DIAGNOSTICS touched = ROW_COUNT;
    RETURN touched;
END
$$;

-- The next collection of the repository is a full one (the flag clears on success).
CREATE FUNCTION aveloxis.force_recollect(repo bigint)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    touched bigint;
BEGIN
    PERFORM aveloxis_ops.require_repo(repo);
    UPDATE aveloxis_ops.jobs SET force_full = true, due_at = least(due_at, aveloxis_ops.clock()),
                                 due_from_cadence = false
    WHERE repo_id = repo AND phase IN ('collect', 'facade');
    GET DIAGNOSTICS touched = ROW_COUNT;
    RETURN touched;
END
$$;

CREATE FUNCTION aveloxis.sideline(repo bigint, reason text)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    touched bigint;
BEGIN
    PERFORM aveloxis_ops.require_repo(repo);
    IF reason IS NULL OR btrim(reason) = '' THEN
        RAISE EXCEPTION 'sideline needs a reason' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'It is shown to whoever asks why_not_collected().';
    END IF;
    UPDATE aveloxis_ops.jobs SET sidelined_until = 'infinity', sideline_reason = reason WHERE repo_id = repo;
    GET DIAGNOSTICS touched = ROW_COUNT;
    RETURN touched;
END
$$;

CREATE FUNCTION aveloxis.unsideline(repo bigint)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    touched bigint;
BEGIN
    PERFORM aveloxis_ops.require_repo(repo);
    UPDATE aveloxis_ops.jobs SET sidelined_until = NULL, sideline_reason = NULL, consecutive_failures = 0,
                                 backoff_until = NULL, due_at = least(due_at, aveloxis_ops.clock())
    WHERE repo_id = repo AND sidelined_until IS NOT NULL;
    GET DIAGNOSTICS touched = ROW_COUNT;
    RETURN touched;
END
$$;

-- Housekeeping, every minute under pg_cron or the background worker: expired leases
-- back to the queue, due dates re-aligned to changed cadences, drained staging and old
-- run history deleted. A second concurrent tick returns at once.
CREATE PROCEDURE aveloxis.tick()
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    expired  bigint;
    aligned  bigint;
    purged   bigint;
    pruned   bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtextextended('aveloxis.tick', 0)) THEN
        RAISE NOTICE 'another aveloxis.tick() is running; this one returns';
        RETURN;
    END IF;
    expired := aveloxis_ops.expire_leases();
    UPDATE aveloxis_ops.jobs j
    SET due_at = j.last_success_at + aveloxis_ops.setting(j.phase || '.cadence')::interval
    WHERE j.due_from_cadence AND j.lease_owner IS NULL AND j.last_success_at IS NOT NULL
      AND j.due_at <> j.last_success_at + aveloxis_ops.setting(j.phase || '.cadence')::interval;
    GET DIAGNOSTICS aligned = ROW_COUNT;
    DELETE FROM aveloxis_ops.staging s
    WHERE s.drained_at < aveloxis_ops.clock() - aveloxis_ops.setting('staging.retention')::interval;
    GET DIAGNOSTICS purged = ROW_COUNT;
    DELETE FROM aveloxis_ops.job_runs r
    WHERE r.finished_at < aveloxis_ops.clock() - aveloxis_ops.setting('job_runs.retention')::interval;
    GET DIAGNOSTICS pruned = ROW_COUNT;
    IF expired + aligned + purged + pruned > 0 THEN
        RAISE LOG 'aveloxis.tick: % expired leases returned, % due dates re-aligned, % drained staging rows and % old runs deleted',
            expired, aligned, purged, pruned;
    END IF;
END
$$;

-- Registers the pg_cron job that runs tick() every minute (fixed name 'aveloxis-tick').
CREATE FUNCTION aveloxis.schedule()
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION 'pg_cron is not installed in this database'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Add pg_cron to shared_preload_libraries, set cron.database_name to this database and '
                         'CREATE EXTENSION pg_cron; or run CALL aveloxis.tick() every minute some other way '
                         '(the pg_aveloxis background worker: pg_aveloxis.scheduler = on).';
    END IF;
    EXECUTE 'SELECT cron.schedule($1, $2, $3)' USING 'aveloxis-tick', '* * * * *', 'CALL aveloxis.tick()';
    RETURN 'scheduled aveloxis-tick (every minute): CALL aveloxis.tick()';
END
$$;

CREATE FUNCTION aveloxis.unschedule()
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    removed bigint := 0;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron') THEN
        RETURN 'pg_cron is not installed: nothing was scheduled';
    END IF;
    EXECUTE 'SELECT count(cron.unschedule(jobname)) FROM cron.job WHERE jobname = $1' INTO removed USING 'aveloxis-tick';
    RETURN format('removed %s scheduled job(s)', removed);
END
$$;

-- Per phase: how the queue stands.
CREATE FUNCTION aveloxis.queue_health()
RETURNS TABLE (phase text, jobs bigint, due bigint, leased bigint, backing_off bigint, sidelined bigint,
               oldest_due_age interval, failures_last_day bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    WITH at AS (SELECT aveloxis_ops.clock() AS now)
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
    FROM unnest(ARRAY['collect', 'facade', 'distribution', 'analysis']) AS p(phase)
    CROSS JOIN at
    LEFT JOIN aveloxis_ops.jobs j ON j.phase = p.phase
    GROUP BY p.phase, at.now
    ORDER BY array_position(ARRAY['collect', 'facade', 'distribution', 'analysis'], p.phase)
$$;

-- One row per phase of the repository, saying in words what it waits for.
CREATE FUNCTION aveloxis.why_not_collected(repo bigint)
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
                ELSE format('due since %s; waiting for an agent to claim %s jobs', j.due_at, j.phase) END,
           CASE WHEN j.lease_owner IS NOT NULL AND j.lease_expires_at > at THEN j.lease_expires_at
                ELSE greatest(j.due_at, coalesce(j.backoff_until, '-infinity'), coalesce(j.sidelined_until, '-infinity'))
                END
    FROM aveloxis_ops.jobs j
    WHERE j.repo_id = repo
    ORDER BY array_position(ARRAY['collect', 'facade', 'distribution', 'analysis'], j.phase);
END
$$;

-- The repository's runs, newest first.
CREATE FUNCTION aveloxis.job_history(repo bigint, max_rows integer DEFAULT 100)
RETURNS TABLE (run_id bigint, phase text, agent text, attempt integer, started_at timestamptz,
               finished_at timestamptz, outcome text, error text, result jsonb)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    SELECT r.run_id, r.phase, r.agent, r.attempt, r.started_at, r.finished_at, r.outcome, r.error, r.result
    FROM aveloxis_ops.job_runs r WHERE r.repo_id = repo
    ORDER BY r.run_id DESC LIMIT max_rows
$$;


INSERT INTO aveloxis_ops.setting_defaults (name, default_value, kind, description) VALUES
    ('tokens.reserve', '50', 'integer', 'Requests of each token''s reported budget that agents leave unspent'),
    ('tokens.probe_window', '1 minute', 'interval', 'How long a probe of a token with an unknown budget may stay unsettled');

CREATE TABLE aveloxis_ops.token_budgets (
    platform_id        smallint NOT NULL REFERENCES aveloxis_data.platforms,
    fingerprint        text NOT NULL,
    bucket             text NOT NULL CHECK (bucket IN ('core', 'search', 'graphql')),
    -- As the forge last reported it (X-RateLimit-Remaining); NULL: unknown.
    reported_remaining integer,
    -- When the forge's window resets (X-RateLimit-Reset); past: the budget is unknown again.
    reset_at           timestamptz NOT NULL DEFAULT '-infinity',
    -- Grants whose responses have not been settled yet.
    outstanding        integer NOT NULL DEFAULT 0,
    granted_total      bigint NOT NULL DEFAULT 0,
    reported_at        timestamptz,
    invalid_at         timestamptz,
    invalid_reason     text,
    PRIMARY KEY (platform_id, fingerprint, bucket)
);
COMMENT ON TABLE aveloxis_ops.token_budgets IS 'Rate-limit budgets per token fingerprint and bucket; never the token itself';
SELECT pg_catalog.pg_extension_config_dump('aveloxis_ops.token_budgets', '');

CREATE FUNCTION aveloxis_ops.check_fingerprint(fingerprint text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF fingerprint IS NULL OR fingerprint !~ '^[0-9a-f]{16,128}$' THEN
        RAISE EXCEPTION 'token fingerprint must be 16 to 128 lower-case hex digits'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass a hash of the token (e.g. the first 32 hex digits of its SHA-256), never the token itself.';
    END IF;
END
$$;

CREATE FUNCTION aveloxis_ops.check_bucket(bucket text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF bucket IS NULL OR bucket NOT IN ('core', 'search', 'graphql') THEN
        RAISE EXCEPTION 'unknown rate-limit bucket "%"', bucket
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Buckets are core, search and graphql (GitHub''s X-RateLimit-Resource).';
    END IF;
END
$$;

-- Picks the token with the most budget available for `cost` requests and counts them as
-- outstanding; or says how long to wait. One row: (fingerprint, wait, available) where
-- fingerprint is NULL when no token can be used now.
CREATE FUNCTION aveloxis.token_acquire(fingerprints text[], bucket text, cost integer DEFAULT 1,
                                       platform smallint DEFAULT 1,
                                       OUT fingerprint text, OUT wait interval, OUT available integer)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    at      timestamptz := aveloxis_ops.clock();
    reserve integer := aveloxis_ops.setting('tokens.reserve')::integer;
    probe   interval := aveloxis_ops.setting('tokens.probe_window')::interval;
    fp      text;
BEGIN
    PERFORM aveloxis_ops.check_bucket(bucket);
    IF fingerprints IS NULL OR cardinality(fingerprints) = 0 THEN
        RAISE EXCEPTION 'token_acquire needs at least one token fingerprint' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOREACH fp IN ARRAY fingerprints LOOP
        PERFORM aveloxis_ops.check_fingerprint(fp);
    END LOOP;
    IF cost IS NULL OR cost < 1 THEN
        RAISE EXCEPTION 'cost must be at least 1' USING ERRCODE = 'invalid_parameter_value';
    END IF;

    INSERT INTO aveloxis_ops.token_budgets AS t (platform_id, fingerprint, bucket)
    SELECT platform, f, bucket FROM unnest(fingerprints) f
    ON CONFLICT DO NOTHING;
    -- Every acquirer of these tokens queues here (in one order: no deadlocks); a window
    -- that has reset makes the budget unknown again.
    PERFORM FROM aveloxis_ops.token_budgets t
    WHERE t.platform_id = platform AND t.bucket = token_acquire.bucket AND t.fingerprint = ANY (fingerprints)
    ORDER BY t.fingerprint FOR UPDATE;
    UPDATE aveloxis_ops.token_budgets t SET reported_remaining = NULL, outstanding = 0
    WHERE t.platform_id = platform AND t.bucket = token_acquire.bucket AND t.fingerprint = ANY (fingerprints)
      AND t.reset_at <= at AND (t.reported_remaining IS NOT NULL OR t.outstanding > 0);

    -- Known budgets first (most available first); else a probe of an unknown one.
    SELECT t.fingerprint,
           CASE WHEN t.reported_remaining IS NULL THEN cost ELSE t.reported_remaining - t.outstanding - reserve END
    INTO fingerprint, available
    FROM aveloxis_ops.token_budgets t
    WHERE t.platform_id = platform AND t.bucket = token_acquire.bucket AND t.fingerprint = ANY (fingerprints)
      AND t.invalid_at IS NULL
      AND CASE WHEN t.reported_remaining IS NULL THEN t.outstanding = 0
               ELSE t.reported_remaining - t.outstanding - reserve >= cost END
    ORDER BY t.reported_remaining IS NULL, 2 DESC, t.fingerprint
    LIMIT 1;

    IF fingerprint IS NOT NULL THEN
        UPDATE aveloxis_ops.token_budgets t
        SET outstanding = t.outstanding + cost, granted_total = t.granted_total + cost,
            -- A probe that is never settled frees the token after the probe window.
            reset_at = CASE WHEN t.reported_remaining IS NULL THEN at + probe ELSE t.reset_at END
        WHERE t.platform_id = platform AND t.bucket = token_acquire.bucket AND t.fingerprint = token_acquire.fingerprint;
        wait := '0'::interval;
        available := available - cost;
        RETURN;
    END IF;
    -- None now: the earliest moment one of the valid tokens can be used again.
    SELECT min(greatest(t.reset_at, at)) - at INTO wait
    FROM aveloxis_ops.token_budgets t
    WHERE t.platform_id = platform AND t.bucket = token_acquire.bucket AND t.fingerprint = ANY (fingerprints)
      AND t.invalid_at IS NULL;
    IF wait IS NULL THEN
        RAISE EXCEPTION 'every token offered is invalid (%)', array_to_string(fingerprints, ', ')
            USING ERRCODE = 'invalid_authorization_specification',
                  HINT = 'Replace the tokens; a successful response settled with token_settle() revives one.';
    END IF;
    -- (A budget that is back now but too small for this cost: ask again in a second.)
    wait := greatest(wait, '1 second'::interval);
    available := 0;
END
$$;

-- Records what a response's headers said about its token's budget, and ends the
-- response's grant. Responses settled out of order never raise the budget within one
-- window. A successful response also revives a token invalidated by mistake.
CREATE FUNCTION aveloxis.token_settle(fingerprint text, bucket text, remaining integer, reset_at timestamptz,
                                      cost integer DEFAULT 1, platform smallint DEFAULT 1)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
#variable_conflict use_variable
BEGIN
    PERFORM aveloxis_ops.check_fingerprint(fingerprint);
    PERFORM aveloxis_ops.check_bucket(bucket);
    IF remaining IS NULL OR remaining < 0 OR reset_at IS NULL THEN
        RAISE EXCEPTION 'token_settle needs the remaining count (>= 0) and the reset time from the response'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'GitHub: X-RateLimit-Remaining and X-RateLimit-Reset (epoch seconds).';
    END IF;
    INSERT INTO aveloxis_ops.token_budgets AS t (platform_id, fingerprint, bucket, reported_remaining, reset_at,
                                                 reported_at)
    VALUES (platform, fingerprint, bucket, remaining, reset_at, aveloxis_ops.clock())
    ON CONFLICT ON CONSTRAINT token_budgets_pkey DO UPDATE
    SET reported_remaining = CASE WHEN t.reported_remaining IS NOT NULL AND t.reset_at = EXCLUDED.reset_at
                                  THEN least(t.reported_remaining, EXCLUDED.reported_remaining)
                                  ELSE EXCLUDED.reported_remaining END,
        reset_at = EXCLUDED.reset_at,
        outstanding = greatest(t.outstanding - coalesce(cost, 1), 0),
        reported_at = EXCLUDED.reported_at,
        invalid_at = NULL, invalid_reason = NULL;
END
$$;

-- Ends a grant whose response reported no budget (no X-RateLimit headers, or no
-- response at all).
CREATE FUNCTION aveloxis.token_release(fingerprint text, bucket text, cost integer DEFAULT 1,
                                       platform smallint DEFAULT 1)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
#variable_conflict use_variable
BEGIN
    PERFORM aveloxis_ops.check_fingerprint(fingerprint);
    PERFORM aveloxis_ops.check_bucket(bucket);
    UPDATE aveloxis_ops.token_budgets t SET outstanding = greatest(t.outstanding - coalesce(cost, 1), 0)
    WHERE t.platform_id = platform AND t.fingerprint = token_release.fingerprint AND t.bucket = token_release.bucket;
END
$$;

-- A 401: the token is not used again (all its buckets) until a response settles it.
CREATE FUNCTION aveloxis.token_invalidate(fingerprint text, reason text DEFAULT '401 Unauthorized',
                                          platform smallint DEFAULT 1)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
#variable_conflict use_variable
BEGIN
    PERFORM aveloxis_ops.check_fingerprint(fingerprint);
    INSERT INTO aveloxis_ops.token_budgets AS t (platform_id, fingerprint, bucket)
    SELECT platform, fingerprint, b FROM unnest(ARRAY['core', 'search', 'graphql']) b
    ON CONFLICT DO NOTHING;
    UPDATE aveloxis_ops.token_budgets t SET invalid_at = aveloxis_ops.clock(), invalid_reason = reason, outstanding = 0
    WHERE t.platform_id = platform AND t.fingerprint = token_invalidate.fingerprint;
END
$$;

CREATE FUNCTION aveloxis.token_status()
RETURNS TABLE (platform_id smallint, fingerprint text, bucket text, reported_remaining integer,
               reset_at timestamptz, outstanding integer, granted_total bigint, reported_at timestamptz,
               invalid_at timestamptz, invalid_reason text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    SELECT t.platform_id, t.fingerprint, t.bucket, t.reported_remaining, t.reset_at, t.outstanding, t.granted_total,
           t.reported_at, t.invalid_at, t.invalid_reason
    FROM aveloxis_ops.token_budgets t ORDER BY 1, 2, 3
$$;

-- Review comments of older API versions name their pull request under _links only.
CREATE OR REPLACE FUNCTION aveloxis_ops.drain_review_comments(repo bigint, only_staging_id bigint)
RETURNS aveloxis_ops.drain_counts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    total bigint;
    result aveloxis_ops.drain_counts;
BEGIN
    DELETE FROM pg_temp.drain_user_refs;
    DELETE FROM pg_temp.drain_users;
    PERFORM aveloxis_ops.drop_batch_table('drain_review_comments');
    CREATE TEMP TABLE drain_review_comments ON COMMIT DROP AS
    SELECT r.staging_id, r.platform_id, x.*,
           coalesce(CASE WHEN (r.context ->> 'parent_number') ~ '^[0-9]{1,9}$'
                         THEN (r.context ->> 'parent_number')::integer END,
                    substring(x.pull_request_url FROM '/pulls/([0-9]{1,9})$')::integer,
                    -- Older API versions link the pull request only under _links.
                    substring(r.doc #>> '{_links,pull_request,href}' FROM '/pulls/([0-9]{1,9})$')::integer)
               AS parent_number,
           NULL::bigint AS pull_request_id, NULL::bigint AS msg_id, false AS was_inserted, false AS changed
    FROM pg_temp.drain_rows r,
         jsonb_to_record(r.doc) AS x(id bigint, node_id text, body text, html_url text, pull_request_url text,
                                     "user" jsonb, pull_request_review_id bigint, in_reply_to_id bigint,
                                     diff_hunk text, path text, "position" integer, original_position integer,
                                     line integer, original_line integer, side text, commit_id text,
                                     original_commit_id text, author_association text, created_at text,
                                     updated_at text)
    WHERE r.doc IS NOT NULL AND NOT r.pending AND (only_staging_id IS NULL OR r.staging_id = only_staging_id);
    GET DIAGNOSTICS total = ROW_COUNT;
    IF EXISTS (SELECT FROM pg_temp.drain_review_comments WHERE id IS NULL) THEN
        RAISE EXCEPTION 'review comment payload without a numeric "id"' USING ERRCODE = 'not_null_violation',
            HINT = 'Stage review comment objects as the forge returns them (docs/staging-contract.md).';
    END IF;
    IF EXISTS (SELECT FROM pg_temp.drain_review_comments WHERE parent_number IS NULL) THEN
        RAISE EXCEPTION 'review comment payload names no pull request: no "pull_request_url", and no context.parent_number'
            USING ERRCODE = 'not_null_violation', HINT = 'Stage /pulls/{n}/comments items with context {"parent_number": n}.';
    END IF;
    UPDATE pg_temp.drain_review_comments c
    SET pull_request_id = (SELECT p.pull_request_id FROM aveloxis_data.pull_requests p
                           WHERE p.repo_id = repo AND p.pr_number = c.parent_number);
    UPDATE pg_temp.drain_rows r SET pending = true
    FROM pg_temp.drain_review_comments c WHERE c.staging_id = r.staging_id AND c.pull_request_id IS NULL;
    SELECT count(*) INTO result.pending FROM pg_temp.drain_review_comments WHERE pull_request_id IS NULL;
    DELETE FROM pg_temp.drain_review_comments WHERE pull_request_id IS NULL;
    DELETE FROM pg_temp.drain_review_comments d USING pg_temp.drain_review_comments e
    WHERE e.id = d.id AND (coalesce(aveloxis_ops.forge_timestamp(e.updated_at), '-infinity'), e.staging_id)
                        > (coalesce(aveloxis_ops.forge_timestamp(d.updated_at), '-infinity'), d.staging_id);

    INSERT INTO pg_temp.drain_user_refs (platform_id, staging_id, u)
    SELECT c.platform_id, c.staging_id, c."user" FROM pg_temp.drain_review_comments c;
    PERFORM aveloxis_ops.collect_users();
    PERFORM aveloxis_ops.resolve_users();

    WITH up AS (
        INSERT INTO aveloxis_data.messages AS m
            (repo_id, platform_id, msg_source, platform_msg_id, node_id, cntrb_id, msg_text, msg_timestamp,
             msg_updated_at, msg_html_url, tool_source, tool_version, data_source)
        SELECT repo, c.platform_id, 'review_comment', c.id, c.node_id, u.cntrb_id, c.body,
               aveloxis_ops.forge_timestamp(c.created_at), aveloxis_ops.forge_timestamp(c.updated_at), c.html_url,
               'pg_aveloxis', aveloxis.version(), 'aveloxis.drain'
        FROM pg_temp.drain_review_comments c
        LEFT JOIN pg_temp.drain_users u ON u.platform_id = c.platform_id AND u.user_id = aveloxis_ops.user_id_of(c."user")
        ORDER BY c.id
        ON CONFLICT (repo_id, msg_source, platform_msg_id) DO UPDATE
            SET node_id = EXCLUDED.node_id, cntrb_id = coalesce(EXCLUDED.cntrb_id, m.cntrb_id),
                msg_text = EXCLUDED.msg_text, msg_updated_at = EXCLUDED.msg_updated_at,
                msg_html_url = EXCLUDED.msg_html_url, data_collection_date = now()
            WHERE (m.msg_updated_at IS NULL OR EXCLUDED.msg_updated_at IS NULL OR EXCLUDED.msg_updated_at >= m.msg_updated_at)
              AND (m.node_id, m.msg_text, m.msg_updated_at, m.msg_html_url)
                  IS DISTINCT FROM (EXCLUDED.node_id, EXCLUDED.msg_text, EXCLUDED.msg_updated_at, EXCLUDED.msg_html_url)
        RETURNING m.msg_id, m.platform_msg_id, (m.xmax = 0) AS was_inserted
    )
    UPDATE pg_temp.drain_review_comments c SET msg_id = up.msg_id, was_inserted = up.was_inserted, changed = true
    FROM up WHERE up.platform_msg_id = c.id;
    UPDATE pg_temp.drain_review_comments c
    SET msg_id = (SELECT m.msg_id FROM aveloxis_data.messages m
                  WHERE m.repo_id = repo AND m.msg_source = 'review_comment' AND m.platform_msg_id = c.id)
    WHERE c.msg_id IS NULL;

    INSERT INTO aveloxis_data.review_comments AS t
        (repo_id, pull_request_id, msg_id, platform_src_id, pr_review_id, platform_review_id, in_reply_to_id,
         diff_hunk, path, "position", original_position, line, original_line, side, commit_id, original_commit_id,
         author_association)
    SELECT repo, c.pull_request_id, c.msg_id, c.id,
           (SELECT v.pr_review_id FROM aveloxis_data.pull_request_reviews v
            WHERE v.pull_request_id = c.pull_request_id AND v.platform_review_id = c.pull_request_review_id),
           c.pull_request_review_id, c.in_reply_to_id,
           c.diff_hunk, c.path, c."position", c.original_position, c.line, c.original_line, c.side, c.commit_id,
           c.original_commit_id, c.author_association
    FROM pg_temp.drain_review_comments c
    WHERE c.changed
    ORDER BY c.id
    ON CONFLICT (repo_id, platform_src_id) DO UPDATE
        SET pr_review_id = coalesce(EXCLUDED.pr_review_id, t.pr_review_id), diff_hunk = EXCLUDED.diff_hunk,
            path = EXCLUDED.path, "position" = EXCLUDED."position", line = EXCLUDED.line, side = EXCLUDED.side,
            commit_id = EXCLUDED.commit_id;

    SELECT count(*) FILTER (WHERE was_inserted), count(*) FILTER (WHERE changed AND NOT was_inserted)
    INTO result.inserted, result.updated FROM pg_temp.drain_review_comments;
    result.skipped := 0;
    result.unchanged := total - result.pending - result.inserted - result.updated;
    RETURN result;
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

CREATE OR REPLACE FUNCTION aveloxis_ops.apply_grants()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    REVOKE ALL ON ALL ROUTINES IN SCHEMA aveloxis, aveloxis_ops FROM PUBLIC;

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
        aveloxis.record_rename(bigint, text),
        aveloxis.drain_begin(bigint),
        aveloxis.drain_step(bigint, bigint, integer),
        aveloxis.drain_finish(bigint, text),
        aveloxis.pending_repos(),
        aveloxis.requeue_rejects(bigint),
        aveloxis.resolve_email(text),
        aveloxis.link_contributor(uuid, smallint, bigint, text),
        aveloxis.claim(text, text[], integer, interval),
        aveloxis.claim_repo(text, bigint, text, interval),
        aveloxis.heartbeat(bigint[], text),
        aveloxis.complete(bigint, jsonb, text),
        aveloxis.fail(bigint, text, text, text),
        aveloxis.queue_health(),
        aveloxis.why_not_collected(bigint),
        aveloxis.job_history(bigint, integer),
        aveloxis.token_acquire(text[], text, integer, smallint),
        aveloxis.token_settle(text, text, integer, timestamptz, integer, smallint),
        aveloxis.token_release(text, text, integer, smallint),
        aveloxis.token_invalidate(text, text, smallint),
        aveloxis.token_status()
    TO aveloxis_agent;
    GRANT EXECUTE ON PROCEDURE
        aveloxis.drain(bigint, integer),
        aveloxis.drain_all(integer),
        aveloxis.retry_rejects(bigint, integer)
    TO aveloxis_agent;
    -- Agents stage with COPY or INSERT; the drain owns every other column.
    GRANT USAGE ON SCHEMA aveloxis_ops TO aveloxis_agent;
    GRANT INSERT (repo_id, platform_id, entity, envelope_version, payload, context)
        ON aveloxis_ops.staging TO aveloxis_agent;

    -- aveloxis_admin: the whole API, and read access everywhere.
    GRANT USAGE ON SCHEMA aveloxis, aveloxis_ops, aveloxis_data TO aveloxis_admin;
    GRANT SELECT ON ALL TABLES IN SCHEMA aveloxis_ops, aveloxis_data TO aveloxis_admin;
    GRANT EXECUTE ON ALL ROUTINES IN SCHEMA aveloxis TO aveloxis_admin;
END
$$;

SELECT aveloxis_ops.apply_grants();

-- Repositories registered before the queue existed get their jobs.
SELECT aveloxis_ops.enqueue_repo(r.repo_id) FROM aveloxis_data.repos r;
