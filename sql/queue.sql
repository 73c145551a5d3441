-- The work queue: one job per (repository, phase), claimed as a lease.
--
--   aveloxis.claim(agent, phases, max_jobs, lease)  leases due jobs (FOR UPDATE SKIP LOCKED)
--   aveloxis.heartbeat(job_ids, agent)              renews leases
--   aveloxis.complete(job, outcome, agent)          success: next due from the phase cadence
--   aveloxis.fail(job, error, class, agent)         transient | skip | gone | auth | fatal
--   aveloxis.prioritize / force_recollect / sideline / unsideline (repo)
--   CALL aveloxis.tick()                            housekeeping, safe to run concurrently
--   aveloxis.queue_health() / why_not_collected(repo) / job_history(repo)
--
-- Agents never touch the tables. Nothing here depends on PIDs or host names: a lease
-- that is not renewed expires, and the job returns to the queue with its attempt counted.

-- Settings: the defaults ship with the extension; what an operator changes is kept in
-- setting_overrides (the only part a dump carries). aveloxis_ops.settings shows both.
CREATE TABLE aveloxis_ops.setting_defaults (
    name          text PRIMARY KEY,
    default_value text NOT NULL,
    kind          text NOT NULL CONSTRAINT setting_defaults_kind_check
                  CHECK (kind IN ('interval', 'integer', 'paths', 'boolean', 'url', 'email')),
    description   text NOT NULL
);
INSERT INTO aveloxis_ops.setting_defaults (name, default_value, kind, description) VALUES
    ('collect.cadence', '1 day', 'interval', 'How often a repository''s forge data is collected'),
    ('facade.cadence', '1 day', 'interval', 'How often a repository''s git history is collected'),
    ('distribution.cadence', '180 days', 'interval', 'How often a repository''s distribution evidence is scanned'),
    ('analysis.cadence', '1 day', 'interval',
     'How often a repository''s HEAD is checked for analysis (an unchanged HEAD is not analysed again)'),
    ('collect.max_leased', '0', 'integer', 'Most collect jobs leased at once (0: no limit)'),
    ('facade.max_leased', '0', 'integer', 'Most facade jobs leased at once (0: no limit)'),
    ('distribution.max_leased', '0', 'integer', 'Most distribution jobs leased at once (0: no limit)'),
    ('analysis.max_leased', '0', 'integer', 'Most analysis jobs leased at once (0: no limit)'),
    ('scorecard.cadence', '7 days', 'interval', 'How often a GitHub repository''s OpenSSF Scorecard is read (published weekly)'),
    ('scorecard.max_leased', '0', 'integer', 'Most scorecard jobs leased at once (0: no limit)'),
    ('scorecard.backoff_base', '120 seconds', 'interval', 'Backoff after transient failure n: base x n^2'),
    ('scorecard.sideline_after', '10', 'integer', 'Consecutive transient failures that sideline a job for one cadence'),
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
    ('clock.offset', '0', 'interval', 'Added to now() by the scheduler: for tests of time-dependent behaviour only'),
    ('registry.local_path_roots', '', 'paths',
     'Directories (absolute, comma-separated) under which local git repositories may be registered; empty: none');

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

-- Back to the default value.
CREATE FUNCTION aveloxis.reset_setting(setting_name text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
BEGIN
    PERFORM aveloxis_ops.setting(setting_name);
    DELETE FROM aveloxis_ops.setting_overrides o WHERE o.name = setting_name;
    IF setting_name LIKE '%.cadence' THEN
        PERFORM aveloxis_ops.realign_due_dates(split_part(setting_name, '.', 1));
    END IF;
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
    phase                text NOT NULL CONSTRAINT jobs_phase_check
                         CHECK (phase IN ('collect', 'facade', 'distribution', 'analysis', 'scorecard',
                                          'packages', 'vulnerabilities')),
    -- Lower is served first; prioritize() sets 0, a completed run returns to 100.
    priority             integer NOT NULL DEFAULT 100,
    due_at               timestamptz NOT NULL DEFAULT now(),
    -- due_at came from the cadence (re-aligned when the cadence changes: realign_due_dates).
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
    result      jsonb,
    -- sha256 of the run's lease token (the receipt claim hands out): the token itself is
    -- never stored, so reading this table does not let anyone act as the lease holder.
    lease_token_digest bytea
);
COMMENT ON TABLE aveloxis_ops.job_runs IS 'Every claimed run of a job and how it ended; pruned by tick()';
CREATE INDEX job_runs_job_idx ON aveloxis_ops.job_runs (job_id, run_id);
CREATE UNIQUE INDEX job_runs_lease_token_idx ON aveloxis_ops.job_runs (lease_token_digest)
    WHERE lease_token_digest IS NOT NULL;
CREATE INDEX job_runs_started_idx ON aveloxis_ops.job_runs (started_at);
-- queue_health()'s failures of the last day, without reading the whole history.
CREATE INDEX job_runs_failures_idx ON aveloxis_ops.job_runs (phase, finished_at)
    WHERE outcome IN ('transient', 'gone', 'auth', 'fatal', 'lease_expired');

SELECT pg_catalog.pg_extension_config_dump('aveloxis_ops.jobs', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('aveloxis_ops.jobs', 'job_id'), '');
SELECT pg_catalog.pg_extension_config_dump('aveloxis_ops.job_runs', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('aveloxis_ops.job_runs', 'run_id'), '');

-- Every phase, in the order the queue's reports list them.
CREATE FUNCTION aveloxis_ops.all_phases()
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ARRAY['collect', 'facade', 'distribution', 'analysis', 'scorecard', 'packages', 'vulnerabilities']
$$;

-- The phases a repository gets: forge data for forges, git and its analysis (labor,
-- dependencies, their packages' libyear and vulnerabilities) for all, distribution
-- evidence and Scorecard for GitHub (reference 002, section 7).
CREATE FUNCTION aveloxis_ops.phases_of(platform smallint)
RETURNS text[]
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE platform
        WHEN 1 THEN ARRAY['collect', 'facade', 'distribution', 'analysis', 'scorecard', 'packages', 'vulnerabilities']
        WHEN 2 THEN ARRAY['collect', 'facade', 'analysis', 'packages', 'vulnerabilities']
        ELSE ARRAY['facade', 'analysis', 'packages', 'vulnerabilities'] END
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

-- Jobs whose due date came from their phase's cadence are due one (new) cadence after
-- their last success: set_setting() and reset_setting() call this when a cadence
-- changes, once, rather than tick() scanning every job every minute (at 100,000
-- repositories that scan cost tick() 9 s: docs/benchmarks.md, fleet). An upgrade that
-- changes a cadence's default calls it too.
CREATE FUNCTION aveloxis_ops.realign_due_dates(job_phase text)
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH cadence AS MATERIALIZED (SELECT aveloxis_ops.setting(job_phase || '.cadence')::interval AS every),
    moved AS (
        UPDATE aveloxis_ops.jobs j SET due_at = j.last_success_at + c.every
        FROM cadence c
        WHERE j.phase = job_phase AND j.due_from_cadence AND j.lease_owner IS NULL AND j.last_success_at IS NOT NULL
          AND j.due_at <> j.last_success_at + c.every
        RETURNING 1
    )
    SELECT count(*) FROM moved
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

-- complete, fail and their helpers run generic plans (their statements look rows up by
-- key, which any plan does well): PL/pgSQL otherwise plans them anew at every call.
-- claim does not: its candidates' best plan depends on how many jobs are due, leased,
-- backing off or sidelined; forced generic, it made 36 claims a second on the
-- 100,000-repository fleet benchmark against 739 planned per call (docs/benchmarks.md).
--
-- Leases up to max_jobs due jobs of the given phases to an agent. Order: jobs whose
-- last run was partial or failed transiently, then priority, then due time, then repo.
-- Sidelined and backing-off jobs are never handed out.
CREATE FUNCTION aveloxis.claim(agent text, phases text[], max_jobs integer DEFAULT 1,
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

-- Leases one repository's job now, due or not: the one-shot `aveloxis-agent collect`.
-- Refused, saying why, when another agent holds it or the repository is sidelined.
CREATE FUNCTION aveloxis.claim_repo(agent text, repo bigint, job_phase text DEFAULT 'collect',
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

-- The digest a lease token is stored and looked up by (job_runs.lease_token_digest).
CREATE FUNCTION aveloxis_ops.token_digest(token uuid)
RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT pg_catalog.sha256(pg_catalog.uuid_send(token)) $$;

-- Renews the leases whose tokens are given by their lease length; returns the jobs still
-- leased under them (a job missing from the answer was lost: its lease expired and the
-- job went back to the queue, or was claimed again).
CREATE FUNCTION aveloxis.heartbeat(lease_tokens uuid[])
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

-- The lease a token proves, locked: the job and the run the token was handed out with.
-- Accepted while the lease is held (even past its expiry, until someone else claims the
-- job), or when it lapsed and nobody has claimed the job since. Refused otherwise, with
-- the reason: the holder of a stale token learns that its result was not taken.
CREATE FUNCTION aveloxis_ops.held_lease(lease_token uuid, job bigint, OUT j aveloxis_ops.jobs, OUT run bigint)
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

-- The repository of the lease a token proves, for calls that write one repository's
-- data outside staging (record_rename, commit-author links): only for a lease of the
-- given phase.
CREATE FUNCTION aveloxis_ops.lease_repo(lease_token uuid, lease_phase text)
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

-- Records the end of a run in job_runs (the lease's run; a run whose lease had lapsed
-- gets its real outcome instead of lease_expired). The caller ends the lease in the
-- update that sets the job's next state: one new version of the job's row per run's end
-- (each version is an entry the claim's index scans pass over until vacuum).
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

-- A successful run. outcome: {"complete": true|false, "counts": {...}, "state": {...}}; a
-- partial run (complete = false) is served again first, soon; a complete one is next due
-- after the phase's cadence and clears force_recollect. "state" replaces agent_state.
CREATE FUNCTION aveloxis.complete(job bigint, lease_token uuid, outcome jsonb DEFAULT '{}')
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

-- A failed run, by class (reference 001 and 002 section 6.4):
--   transient  backoff base x n^2 after the n-th consecutive failure; the sideline_after-th
--              (10th) sidelines the job for one cadence, and the count starts over
--   skip       the phase does not apply now; not a failure: next due after the cadence
--   gone       404/410: every phase of the repository is sidelined; its data is kept
--   auth       credentials, not the job: back after one backoff base, not counted
--   fatal      will not succeed by retrying: next due after the cadence, counted
CREATE FUNCTION aveloxis.fail(job bigint, lease_token uuid, error text, class text)
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
-- back to the queue, drained staging and old run history deleted. Every step reads an
-- index of what it removes, so its cost follows the work, not the fleet's size. A second
-- concurrent tick returns at once.
CREATE PROCEDURE aveloxis.tick()
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    at       timestamptz := aveloxis_ops.clock();
    -- Cutoffs as values, so the planner sees them and reads the indexes of what goes.
    staged_before timestamptz := at - aveloxis_ops.setting('staging.retention')::interval;
    runs_before   timestamptz := at - aveloxis_ops.setting('job_runs.retention')::interval;
    views_before  timestamptz := at - aveloxis_ops.setting('views.refresh_history')::interval;
    expired  bigint;
    purged   bigint;
    pruned   bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtextextended('aveloxis.tick', 0)) THEN
        RAISE NOTICE 'another aveloxis.tick() is running; this one returns';
        RETURN;
    END IF;
    expired := aveloxis_ops.expire_leases();
    DELETE FROM aveloxis_ops.staging s WHERE s.drained_at < staged_before;
    GET DIAGNOSTICS purged = ROW_COUNT;
    -- A run that finished before the cutoff started before it: the started_at index finds
    -- the old runs without reading the whole history.
    DELETE FROM aveloxis_ops.job_runs r WHERE r.started_at < runs_before AND r.finished_at < runs_before;
    GET DIAGNOSTICS pruned = ROW_COUNT;
    DELETE FROM aveloxis_ops.view_refresh_runs r WHERE r.finished_at < views_before;
    -- Identity runs (sql/identity_tasks.sql): expired leases applied as far as they were
    -- staged; old runs and their raw answers go with the job runs' retention.
    expired := expired + aveloxis_ops.expire_identity_runs(at);
    DELETE FROM aveloxis_ops.identity_runs r WHERE r.started_at < runs_before AND r.finished_at < runs_before;
    IF expired + purged + pruned > 0 THEN
        RAISE LOG 'aveloxis.tick: % expired leases returned, % drained staging rows and % old runs deleted',
            expired, purged, pruned;
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
    -- Hourly, the views are refreshed when views.refresh_cadence (weekly) has passed.
    EXECUTE 'SELECT cron.schedule($1, $2, $3)' USING 'aveloxis-refresh-views', '17 * * * *',
        'CALL aveloxis.refresh_views(true)';
    RETURN 'scheduled aveloxis-tick (every minute): CALL aveloxis.tick(); '
           'aveloxis-refresh-views (hourly): CALL aveloxis.refresh_views(true)';
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
    EXECUTE 'SELECT count(cron.unschedule(jobname)) FROM cron.job WHERE jobname = ANY ($1)' INTO removed
        USING ARRAY['aveloxis-tick', 'aveloxis-refresh-views'];
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

