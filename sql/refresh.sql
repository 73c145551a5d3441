-- Refreshing the materialized views (sql/matviews.sql).
--
--   CALL aveloxis.refresh_views();          every view, now
--   CALL aveloxis.refresh_views(true);      only when views.refresh_cadence has passed
--                                           (what pg_cron runs hourly: aveloxis.schedule())
--
-- Views refresh one by one in dependency order, each in its own transaction (the
-- procedure commits between them, so no lock outlives its view), CONCURRENTLY once
-- populated: 8Knot's readers are never blocked. A view that fails is recorded and the
-- others go on. A second caller returns at once (session advisory lock).

INSERT INTO aveloxis_ops.setting_defaults (name, default_value, kind, description) VALUES
    ('views.refresh_cadence', '7 days', 'interval',
     'How often refresh_views(true) (pg_cron, hourly) refreshes the materialized views'),
    ('views.refresh_history', '90 days', 'interval', 'tick() deletes view refresh records older than this');

CREATE TABLE aveloxis_ops.view_refresh_runs (
    refresh_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at  timestamptz,
    requested_by text NOT NULL DEFAULT session_user,
    views        integer,
    failed       integer
);
COMMENT ON TABLE aveloxis_ops.view_refresh_runs IS 'One row per refresh_views() call that ran';

CREATE TABLE aveloxis_ops.view_refreshes (
    refresh_id   bigint NOT NULL REFERENCES aveloxis_ops.view_refresh_runs ON DELETE CASCADE,
    view_name    text NOT NULL,
    view_position integer NOT NULL,
    concurrent   boolean NOT NULL,
    started_at   timestamptz NOT NULL,
    duration     interval NOT NULL,
    -- Rows after the refresh; NULL when it failed.
    row_count    bigint,
    error        text,
    PRIMARY KEY (refresh_id, view_name)
);
COMMENT ON TABLE aveloxis_ops.view_refreshes IS 'Per view of each refresh: how long, how many rows, what went wrong';

-- The views in refresh order: a view after every view it reads.
CREATE FUNCTION aveloxis_ops.refresh_order()
RETURNS TABLE (view_position integer, view_name text)
LANGUAGE sql IMMUTABLE
AS $$
    SELECT o.n::integer, o.v FROM unnest(ARRAY[
        'api_get_all_repo_prs', 'api_get_all_repos_commits', 'api_get_all_repos_issues', 'explorer_entry_list',
        'explorer_commits_and_committers_daily_count', 'explorer_libyear_all', 'explorer_libyear_summary',
        'explorer_libyear_detail', 'explorer_contributor_actions', 'explorer_new_contributors',
        'augur_new_contributors', 'explorer_pr_assignments', 'explorer_pr_response', 'explorer_user_repos',
        'explorer_pr_response_times', 'explorer_issue_assignments', 'explorer_repo_languages',
        'issue_reporter_created_at', 'explorer_contributor_recent_actions', 'explorer_pr_files',
        'explorer_cntrb_per_file', 'explorer_repo_files']) WITH ORDINALITY AS o(v, n)
$$;

-- Starts a refresh run; NULL when refresh_views(true) finds the views fresh enough.
CREATE FUNCTION aveloxis_ops.refresh_begin(only_if_due boolean)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    last_start timestamptz;
    run bigint;
BEGIN
    IF only_if_due THEN
        SELECT max(r.started_at) INTO last_start FROM aveloxis_ops.view_refresh_runs r WHERE r.finished_at IS NOT NULL;
        IF last_start > aveloxis_ops.clock() - aveloxis_ops.setting('views.refresh_cadence')::interval THEN
            RETURN NULL;
        END IF;
    END IF;
    INSERT INTO aveloxis_ops.view_refresh_runs DEFAULT VALUES RETURNING refresh_id INTO run;
    RETURN run;
END
$$;

-- Refreshes one view of the list (never any other relation) and records how it went.
-- Errors are caught here: the caller goes on with the next view.
CREATE FUNCTION aveloxis_ops.refresh_one(run bigint, pos integer)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    target      text;
    populated   boolean;
    began       timestamptz := clock_timestamp();
    counted     bigint;
    message     text;
BEGIN
    SELECT o.view_name INTO target FROM aveloxis_ops.refresh_order() o WHERE o.view_position = pos;
    IF target IS NULL THEN
        RAISE EXCEPTION 'no materialized view at position %', pos USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT c.relispopulated INTO populated FROM pg_catalog.pg_class c
    WHERE c.oid = pg_catalog.to_regclass('aveloxis_augur_data.' || quote_ident(target)) AND c.relkind = 'm';
    BEGIN
        IF populated IS NULL THEN
            RAISE EXCEPTION 'materialized view aveloxis_augur_data.% is missing', target
                USING HINT = 'ALTER EXTENSION pg_aveloxis UPDATE, or reinstall the extension.';
        END IF;
        EXECUTE format('REFRESH MATERIALIZED VIEW %s aveloxis_augur_data.%I',
                       CASE WHEN populated THEN 'CONCURRENTLY' ELSE '' END, target);
        EXECUTE format('SELECT count(*) FROM aveloxis_augur_data.%I', target) INTO counted;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS message = MESSAGE_TEXT;
        message := coalesce(message, 'unknown error') || ' (SQLSTATE ' || SQLSTATE || ')';
        RAISE WARNING 'aveloxis.refresh_views: % failed: %', target, message;
    END;
    INSERT INTO aveloxis_ops.view_refreshes
        (refresh_id, view_name, view_position, concurrent, started_at, duration, row_count, error)
    VALUES (run, target, pos, coalesce(populated, false), began, clock_timestamp() - began,
            CASE WHEN message IS NULL THEN counted END, message);
    RETURN message IS NULL;
END
$$;

CREATE FUNCTION aveloxis_ops.refresh_end(run bigint)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    done integer;
    bad  integer;
BEGIN
    SELECT count(*), count(*) FILTER (WHERE v.error IS NOT NULL) INTO done, bad
    FROM aveloxis_ops.view_refreshes v WHERE v.refresh_id = run;
    UPDATE aveloxis_ops.view_refresh_runs r SET finished_at = clock_timestamp(), views = done, failed = bad
    WHERE r.refresh_id = run;
    RETURN format('refresh %s: %s views refreshed, %s failed', run, done - bad, bad);
END
$$;

-- The procedure itself runs with its caller's rights and commits between views (a
-- SECURITY DEFINER procedure may not); each step it calls is SECURITY DEFINER and
-- trusts nothing but the fixed list. Every name is schema-qualified.
CREATE PROCEDURE aveloxis.refresh_views(only_if_due boolean DEFAULT false)
LANGUAGE plpgsql
AS $$
DECLARE
    run  bigint;
    step record;
BEGIN
    -- Fails here, before any lock is taken, when called inside a transaction block (the
    -- refresh commits between views).
    COMMIT;
    IF NOT pg_catalog.pg_try_advisory_lock(pg_catalog.hashtextextended('aveloxis.refresh_views', 0)) THEN
        RAISE NOTICE 'a refresh of the views is already running; this call returns';
        RETURN;
    END IF;
    BEGIN
        run := aveloxis_ops.refresh_begin(only_if_due);
    EXCEPTION WHEN OTHERS THEN
        PERFORM pg_catalog.pg_advisory_unlock(pg_catalog.hashtextextended('aveloxis.refresh_views', 0));
        RAISE;
    END;
    IF run IS NULL THEN
        PERFORM pg_catalog.pg_advisory_unlock(pg_catalog.hashtextextended('aveloxis.refresh_views', 0));
        RAISE NOTICE 'the views were refreshed less than views.refresh_cadence ago; nothing to do';
        RETURN;
    END IF;
    COMMIT;
    FOR step IN SELECT o.view_position FROM aveloxis_ops.refresh_order() o ORDER BY o.view_position LOOP
        PERFORM aveloxis_ops.refresh_one(run, step.view_position);
        COMMIT;
    END LOOP;
    RAISE NOTICE '%', aveloxis_ops.refresh_end(run);
    COMMIT;
    PERFORM pg_catalog.pg_advisory_unlock(pg_catalog.hashtextextended('aveloxis.refresh_views', 0));
END
$$;

-- The refreshes, newest first: per view, how long it took, its rows, its error.
CREATE FUNCTION aveloxis.view_refresh_history(max_runs integer DEFAULT 5)
RETURNS TABLE (refresh_id bigint, view_name text, view_position integer, concurrent boolean, started_at timestamptz,
               duration interval, row_count bigint, error text, run_finished_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    SELECT v.refresh_id, v.view_name, v.view_position, v.concurrent, v.started_at, v.duration, v.row_count, v.error,
           r.finished_at
    FROM aveloxis_ops.view_refreshes v
    JOIN aveloxis_ops.view_refresh_runs r USING (refresh_id)
    WHERE v.refresh_id IN (SELECT x.refresh_id FROM aveloxis_ops.view_refresh_runs x
                           ORDER BY x.refresh_id DESC LIMIT max_runs)
    ORDER BY v.refresh_id DESC, v.view_position
$$;
