-- The analyst SQL API (docs/analytics.md, docs/sql-api.md): statistics per repository
-- and repo group, time series, contributors, bots, and the coverage every figure carries.
-- Read-only, granted to aveloxis_analyst. Series read the daily activity the triggers
-- keep (sql/activity.sql) unless bots are excluded, which reads the base tables.

-- Statistics and time series.

-- Contributors the rules call bots (one pass over contributors; for exclude_bots).
CREATE FUNCTION aveloxis_ops.bot_ids()
RETURNS TABLE (cntrb_id uuid)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.cntrb_id FROM aveloxis_data.contributors c
    LEFT JOIN aveloxis_ops.bot_overrides o ON o.cntrb_id = c.cntrb_id
    WHERE coalesce(o.is_bot, c.gh_type = 'Bot' OR EXISTS (
              SELECT FROM aveloxis_ops.bot_patterns p
              WHERE coalesce(c.gh_login, c.gl_username, c.cntrb_login) ~* p.pattern), false)
$$;

-- Whether a commit author without a linked account looks like a bot by name or email.
CREATE FUNCTION aveloxis_ops.author_looks_bot(name text, email text)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT FROM aveloxis_ops.bot_patterns p
                   WHERE name ~* p.pattern OR split_part(email, '@', 1) ~* p.pattern
                      OR split_part(split_part(email, '@', 1), '+', 2) ~* p.pattern)
$$;

CREATE FUNCTION aveloxis_ops.check_series_args(since date, until date, grain text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF grain IS NULL OR grain NOT IN ('day', 'week', 'month', 'year') THEN
        RAISE EXCEPTION 'grain must be day, week, month or year, not %', coalesce(grain, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF since IS NULL OR until IS NULL OR since > until THEN
        RAISE EXCEPTION 'the range % .. % is empty or unbounded', since, until USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Pass since <= until, e.g. (current_date - 365, current_date).';
    END IF;
    IF grain = 'day' AND until - since > 36600 THEN
        RAISE EXCEPTION 'more than 100 years of days; use a coarser grain' USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

-- The series for a set of repositories (repo_activity and group_activity call it).
-- Periods are calendar-aligned (weeks start on Monday); days outside since..until are
-- not counted, and every period is present, zero or not: coverage tells a real zero
-- from missing data.
CREATE FUNCTION aveloxis_ops.activity_series(repos bigint[], since date, until date, grain text, exclude_bots boolean)
RETURNS TABLE (period_start date, issues_opened bigint, issues_closed bigint, prs_opened bigint, prs_merged bigint,
               prs_closed bigint, commits bigint, lines_added bigint, lines_removed bigint, new_contributors bigint,
               comments bigint, reviews bigint, first_response_hours_median double precision,
               first_response_hours_p90 double precision, review_response_hours_median double precision,
               review_response_hours_p90 double precision, coverage_issues_prs numeric, coverage_commits numeric)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    lo timestamptz := since::timestamp AT TIME ZONE 'UTC';
    hi timestamptz := (until + 1)::timestamp AT TIME ZONE 'UTC';
BEGIN
    PERFORM aveloxis_ops.check_series_args(since, until, grain);
    RETURN QUERY
    WITH bots AS MATERIALIZED (
        SELECT b.cntrb_id FROM aveloxis_ops.bot_ids() b WHERE exclude_bots
    ), periods AS (
        SELECT p::date AS period_start
        FROM generate_series(date_trunc(grain, since::timestamp), until::timestamp, ('1 ' || grain)::interval) p
    ), kept AS (
        -- Everyone: the daily activity the triggers keep.
        SELECT date_trunc(grain, a.day::timestamp)::date AS period_start,
               sum(a.issues_opened) AS issues_opened, sum(a.issues_closed) AS issues_closed,
               sum(a.prs_opened) AS prs_opened, sum(a.prs_merged) AS prs_merged, sum(a.prs_closed) AS prs_closed,
               sum(a.commits) AS commits, sum(a.lines_added) AS lines_added, sum(a.lines_removed) AS lines_removed,
               sum(a.new_contributors) AS new_contributors, sum(a.comments) AS comments, sum(a.reviews) AS reviews
        FROM aveloxis_data.repo_daily_activity a
        WHERE NOT exclude_bots AND a.repo_id = ANY (repos) AND a.day BETWEEN since AND until
        GROUP BY 1
    ), facts AS (
        -- Without bots: the same definitions over the base tables, bots' items left out.
        SELECT i.created_at AS at, 'issues_opened' AS m, 1::bigint AS v FROM aveloxis_data.issues i
        WHERE exclude_bots AND i.repo_id = ANY (repos) AND i.created_at >= lo AND i.created_at < hi
          AND NOT EXISTS (SELECT FROM bots b WHERE b.cntrb_id = i.reporter_id)
        UNION ALL SELECT i.closed_at, 'issues_closed', 1 FROM aveloxis_data.issues i
        WHERE exclude_bots AND i.repo_id = ANY (repos) AND i.closed_at >= lo AND i.closed_at < hi
          AND NOT EXISTS (SELECT FROM bots b WHERE b.cntrb_id = i.reporter_id)
        UNION ALL SELECT p.created_at, 'prs_opened', 1 FROM aveloxis_data.pull_requests p
        WHERE exclude_bots AND p.repo_id = ANY (repos) AND p.created_at >= lo AND p.created_at < hi
          AND NOT EXISTS (SELECT FROM bots b WHERE b.cntrb_id = p.author_id)
        UNION ALL SELECT p.merged_at, 'prs_merged', 1 FROM aveloxis_data.pull_requests p
        WHERE exclude_bots AND p.repo_id = ANY (repos) AND p.merged_at >= lo AND p.merged_at < hi
          AND NOT EXISTS (SELECT FROM bots b WHERE b.cntrb_id = p.author_id)
        UNION ALL SELECT p.closed_at, 'prs_closed', 1 FROM aveloxis_data.pull_requests p
        WHERE exclude_bots AND p.repo_id = ANY (repos) AND p.closed_at >= lo AND p.closed_at < hi AND p.merged_at IS NULL
          AND NOT EXISTS (SELECT FROM bots b WHERE b.cntrb_id = p.author_id)
        UNION ALL SELECT c.at, x.m, x.v FROM (
            SELECT min(cm.cmt_author_timestamp) AS at, sum(cm.cmt_added) AS added, sum(cm.cmt_removed) AS removed
            FROM aveloxis_data.commits cm
            WHERE exclude_bots AND cm.repo_id = ANY (repos) AND cm.cmt_author_timestamp >= lo AND cm.cmt_author_timestamp < hi
              AND NOT EXISTS (SELECT FROM bots b WHERE b.cntrb_id = cm.cmt_ght_author_id)
              AND NOT aveloxis_ops.author_looks_bot(cm.cmt_author_name, cm.cmt_author_email)
            GROUP BY cm.repo_id, cm.cmt_commit_hash) c
        CROSS JOIN LATERAL (VALUES ('commits', 1::bigint), ('lines_added', c.added), ('lines_removed', c.removed)) x(m, v)
        UNION ALL SELECT m.msg_timestamp, 'comments', 1 FROM aveloxis_data.messages m
        WHERE exclude_bots AND m.repo_id = ANY (repos) AND m.msg_timestamp >= lo AND m.msg_timestamp < hi
          AND m.msg_source IN ('issue_comment', 'review_comment')
          AND NOT EXISTS (SELECT FROM bots b WHERE b.cntrb_id = m.cntrb_id)
        UNION ALL SELECT v.submitted_at, 'reviews', 1 FROM aveloxis_data.pull_request_reviews v
        WHERE exclude_bots AND v.repo_id = ANY (repos) AND v.submitted_at >= lo AND v.submitted_at < hi
          AND NOT EXISTS (SELECT FROM bots b WHERE b.cntrb_id = v.cntrb_id)
        UNION ALL SELECT f.first_at, 'new_contributors', 1 FROM aveloxis_data.repo_contributor_first f
        WHERE exclude_bots AND f.repo_id = ANY (repos) AND f.first_at >= lo AND f.first_at < hi
          AND NOT EXISTS (SELECT FROM bots b WHERE b.cntrb_id = f.cntrb_id)
    ), counted AS (
        SELECT k.* FROM kept k
        UNION ALL
        SELECT date_trunc(grain, (f.at AT TIME ZONE 'UTC'))::date,
               sum(f.v) FILTER (WHERE f.m = 'issues_opened'), sum(f.v) FILTER (WHERE f.m = 'issues_closed'),
               sum(f.v) FILTER (WHERE f.m = 'prs_opened'), sum(f.v) FILTER (WHERE f.m = 'prs_merged'),
               sum(f.v) FILTER (WHERE f.m = 'prs_closed'), sum(f.v) FILTER (WHERE f.m = 'commits'),
               sum(f.v) FILTER (WHERE f.m = 'lines_added'), sum(f.v) FILTER (WHERE f.m = 'lines_removed'),
               sum(f.v) FILTER (WHERE f.m = 'new_contributors'), sum(f.v) FILTER (WHERE f.m = 'comments'),
               sum(f.v) FILTER (WHERE f.m = 'reviews')
        FROM facts f GROUP BY 1
    ), responses AS (
        -- Per pull request opened in the range: hours to the first response by someone
        -- other than its author (comment, review, diff comment), and to the first review.
        SELECT date_trunc(grain, (p.created_at AT TIME ZONE 'UTC'))::date AS period_start,
               extract(epoch FROM r.first_response - p.created_at) / 3600 AS first_hours,
               extract(epoch FROM r.first_review - p.created_at) / 3600 AS review_hours
        FROM aveloxis_data.pull_requests p
        CROSS JOIN LATERAL (
            SELECT (SELECT min(m.msg_timestamp) FROM (
                        SELECT m.msg_timestamp, m.cntrb_id FROM aveloxis_data.pull_request_message_ref x
                        JOIN aveloxis_data.messages m ON m.repo_id = x.repo_id AND m.msg_id = x.msg_id
                        WHERE x.repo_id = p.repo_id AND x.pull_request_id = p.pull_request_id
                        UNION ALL
                        SELECT m.msg_timestamp, m.cntrb_id FROM aveloxis_data.review_comments x
                        JOIN aveloxis_data.messages m ON m.repo_id = x.repo_id AND m.msg_id = x.msg_id
                        WHERE x.repo_id = p.repo_id AND x.pull_request_id = p.pull_request_id
                        UNION ALL
                        SELECT v.submitted_at, v.cntrb_id FROM aveloxis_data.pull_request_reviews v
                        WHERE v.repo_id = p.repo_id AND v.pull_request_id = p.pull_request_id) m
                    WHERE m.cntrb_id IS DISTINCT FROM p.author_id AND m.msg_timestamp >= p.created_at
                      AND NOT EXISTS (SELECT FROM bots b WHERE b.cntrb_id = m.cntrb_id)) AS first_response,
                   (SELECT min(v.submitted_at) FROM aveloxis_data.pull_request_reviews v
                    WHERE v.repo_id = p.repo_id AND v.pull_request_id = p.pull_request_id
                      AND v.cntrb_id IS DISTINCT FROM p.author_id
                      AND v.submitted_at >= p.created_at
                      AND NOT EXISTS (SELECT FROM bots b WHERE b.cntrb_id = v.cntrb_id)) AS first_review
        ) r
        WHERE p.repo_id = ANY (repos) AND p.created_at >= lo AND p.created_at < hi
          AND NOT EXISTS (SELECT FROM bots b WHERE b.cntrb_id = p.author_id)
    ), response_stats AS (
        SELECT s.period_start,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY s.first_hours) AS fr_median,
               percentile_cont(0.9) WITHIN GROUP (ORDER BY s.first_hours) AS fr_p90,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY s.review_hours) AS rr_median,
               percentile_cont(0.9) WITHIN GROUP (ORDER BY s.review_hours) AS rr_p90
        FROM responses s GROUP BY 1
    )
    SELECT p.period_start,
           coalesce(sum(c.issues_opened), 0)::bigint, coalesce(sum(c.issues_closed), 0)::bigint,
           coalesce(sum(c.prs_opened), 0)::bigint, coalesce(sum(c.prs_merged), 0)::bigint,
           coalesce(sum(c.prs_closed), 0)::bigint, coalesce(sum(c.commits), 0)::bigint,
           coalesce(sum(c.lines_added), 0)::bigint, coalesce(sum(c.lines_removed), 0)::bigint,
           coalesce(sum(c.new_contributors), 0)::bigint, coalesce(sum(c.comments), 0)::bigint,
           coalesce(sum(c.reviews), 0)::bigint,
           min(r.fr_median), min(r.fr_p90), min(r.rr_median), min(r.rr_p90),
           aveloxis_ops.coverage(repos, ARRAY['issues_and_pull_requests']),
           aveloxis_ops.coverage(repos, ARRAY['commits'])
    FROM periods p
    LEFT JOIN counted c ON c.period_start = p.period_start
    LEFT JOIN response_stats r ON r.period_start = p.period_start
    GROUP BY p.period_start
    ORDER BY p.period_start;
END
$$;

-- A repository's activity over time: counts per period, response times (median, p90,
-- hours), and the coverage of the data behind them.
CREATE FUNCTION aveloxis.repo_activity(repo bigint, since date, until date DEFAULT current_date,
                                       grain text DEFAULT 'week', exclude_bots boolean DEFAULT false)
RETURNS TABLE (period_start date, issues_opened bigint, issues_closed bigint, prs_opened bigint, prs_merged bigint,
               prs_closed bigint, commits bigint, lines_added bigint, lines_removed bigint, new_contributors bigint,
               comments bigint, reviews bigint, first_response_hours_median double precision,
               first_response_hours_p90 double precision, review_response_hours_median double precision,
               review_response_hours_p90 double precision, coverage_issues_prs numeric, coverage_commits numeric)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
BEGIN
    PERFORM aveloxis_ops.require_repo(repo);
    RETURN QUERY SELECT * FROM aveloxis_ops.activity_series(ARRAY[repo], since, until, grain, exclude_bots);
END
$$;

-- The same for every repository of a group (by name, as 8Knot's "org" is).
CREATE FUNCTION aveloxis.group_activity(repo_group text, since date, until date DEFAULT current_date,
                                        grain text DEFAULT 'week', exclude_bots boolean DEFAULT false)
RETURNS TABLE (period_start date, issues_opened bigint, issues_closed bigint, prs_opened bigint, prs_merged bigint,
               prs_closed bigint, commits bigint, lines_added bigint, lines_removed bigint, new_contributors bigint,
               comments bigint, reviews bigint, first_response_hours_median double precision,
               first_response_hours_p90 double precision, review_response_hours_median double precision,
               review_response_hours_p90 double precision, coverage_issues_prs numeric, coverage_commits numeric)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    members bigint[];
BEGIN
    SELECT array_agg(r.repo_id ORDER BY r.repo_id) INTO members
    FROM aveloxis_data.repos r JOIN aveloxis_data.repo_groups g USING (repo_group_id)
    WHERE lower(g.rg_name) = lower(repo_group);
    IF members IS NULL THEN
        RAISE EXCEPTION 'no repo group named "%" (or it has no repositories)', repo_group USING ERRCODE = 'no_data_found',
            HINT = 'SELECT rg_name FROM aveloxis_data.repo_groups lists them.';
    END IF;
    RETURN QUERY SELECT * FROM aveloxis_ops.activity_series(members, since, until, grain, exclude_bots);
END
$$;

-- Everything stored about one repository, per entity: how many, first and last
-- activity, what the forge reported and the coverage, and when its phase last ran.
CREATE FUNCTION aveloxis.repo_stats(repo bigint)
RETURNS TABLE (entity text, stored bigint, first_activity timestamptz, last_activity timestamptz,
               forge_reported bigint, coverage numeric, last_collected timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    collected timestamptz;
    facaded   timestamptz;
BEGIN
    PERFORM aveloxis_ops.require_repo(repo);
    SELECT max(j.last_success_at) FILTER (WHERE j.phase = 'collect'), max(j.last_success_at) FILTER (WHERE j.phase = 'facade')
    INTO collected, facaded FROM aveloxis_ops.jobs j WHERE j.repo_id = repo;
    RETURN QUERY
    WITH counts AS (
        SELECT 'issues' AS entity, count(*) AS stored, min(i.created_at) AS first_at, max(i.created_at) AS last_at,
               'issues' AS ledger, collected AS at FROM aveloxis_data.issues i WHERE i.repo_id = repo
        UNION ALL SELECT 'pull_requests', count(*), min(p.created_at), max(p.created_at), 'pull_requests', collected
        FROM aveloxis_data.pull_requests p WHERE p.repo_id = repo
        UNION ALL SELECT 'commits', count(DISTINCT c.cmt_commit_hash), min(c.cmt_author_timestamp),
                         max(c.cmt_author_timestamp), 'commits', facaded
        FROM aveloxis_data.commits c WHERE c.repo_id = repo
        UNION ALL SELECT 'issue_comments', count(*), min(m.msg_timestamp), max(m.msg_timestamp), 'issue_comments', collected
        FROM aveloxis_data.messages m WHERE m.repo_id = repo AND m.msg_source = 'issue_comment'
        UNION ALL SELECT 'review_comments', count(*), min(m.msg_timestamp), max(m.msg_timestamp), 'review_comments', collected
        FROM aveloxis_data.messages m WHERE m.repo_id = repo AND m.msg_source = 'review_comment'
        UNION ALL SELECT 'reviews', count(*), min(v.submitted_at), max(v.submitted_at), NULL, collected
        FROM aveloxis_data.pull_request_reviews v WHERE v.repo_id = repo
        UNION ALL SELECT 'releases', count(*), min(r.release_published_at), max(r.release_published_at), 'releases', collected
        FROM aveloxis_data.releases r WHERE r.repo_id = repo
        UNION ALL SELECT 'issue_events', count(*), min(e.created_at), max(e.created_at), NULL, collected
        FROM aveloxis_data.issue_events e WHERE e.repo_id = repo
        UNION ALL SELECT 'pull_request_events', count(*), min(e.created_at), max(e.created_at), NULL, collected
        FROM aveloxis_data.pull_request_events e WHERE e.repo_id = repo
        UNION ALL SELECT 'contributors', count(*), min(f.first_at), max(f.first_at), NULL, NULL
        FROM aveloxis_data.repo_contributor_first f WHERE f.repo_id = repo
    )
    SELECT c.entity, c.stored, c.first_at, c.last_at, l.reported,
           CASE WHEN l.reported IS NULL THEN NULL WHEN l.reported = 0 THEN 1
                ELSE least(1, round(c.stored::numeric / l.reported, 4)) END,
           c.at
    FROM counts c
    LEFT JOIN aveloxis_data.collection_completeness l ON l.repo_id = repo AND l.entity = c.ledger;
END
$$;

-- The most active contributors of a repository in a range, by actions (explorer's
-- definition: commits, issues and pull requests opened and closed, reviews, comments).
CREATE FUNCTION aveloxis.top_contributors(repo bigint, since date, until date DEFAULT current_date,
                                          n integer DEFAULT 10, exclude_bots boolean DEFAULT false)
RETURNS TABLE (cntrb_id uuid, login text, actions bigint, commits bigint, issues_opened bigint, prs_opened bigint,
               reviews bigint, comments bigint, first_action timestamptz, last_action timestamptz, bot_rule text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
BEGIN
    PERFORM aveloxis_ops.require_repo(repo);
    PERFORM aveloxis_ops.check_series_args(since, until, 'day');
    RETURN QUERY
    SELECT t.* FROM (
        SELECT a.cntrb_id, coalesce(c.gh_login, c.gl_username, c.cntrb_login), count(*),
               count(*) FILTER (WHERE a.action = 'commit'), count(*) FILTER (WHERE a.action = 'issue_opened'),
               count(*) FILTER (WHERE a.action = 'pull_request_open'),
               count(*) FILTER (WHERE a.action LIKE 'pull_request_review_%'),
               count(*) FILTER (WHERE a.action IN ('issue_comment', 'pull_request_comment')),
               min(a.created_at), max(a.created_at), aveloxis.bot_rule(a.cntrb_id) AS rule
        FROM aveloxis_data.contributor_actions a
        LEFT JOIN aveloxis_data.contributors c ON c.cntrb_id = a.cntrb_id
        WHERE a.repo_id = repo AND a.created_at >= since::timestamp AT TIME ZONE 'UTC'
          AND a.created_at < (until + 1)::timestamp AT TIME ZONE 'UTC'
        GROUP BY a.cntrb_id, c.gh_login, c.gl_username, c.cntrb_login
    ) t
    WHERE NOT exclude_bots OR t.rule IS NULL
    ORDER BY 3 DESC, 2
    LIMIT greatest(n, 0);
END
$$;

-- Contributors whose first contribution to the repository falls in the range, with
-- that first action.
CREATE FUNCTION aveloxis.new_contributors(repo bigint, since date, until date DEFAULT current_date)
RETURNS TABLE (cntrb_id uuid, login text, first_at timestamptz, first_action text, bot_rule text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
BEGIN
    PERFORM aveloxis_ops.require_repo(repo);
    PERFORM aveloxis_ops.check_series_args(since, until, 'day');
    RETURN QUERY
    SELECT f.cntrb_id, coalesce(c.gh_login, c.gl_username, c.cntrb_login), f.first_at,
           (SELECT a.action FROM aveloxis_data.contributor_actions a
            WHERE a.repo_id = repo AND a.cntrb_id = f.cntrb_id AND a.created_at = f.first_at
            ORDER BY a.action LIMIT 1),
           aveloxis.bot_rule(f.cntrb_id)
    FROM aveloxis_data.repo_contributor_first f
    LEFT JOIN aveloxis_data.contributors c ON c.cntrb_id = f.cntrb_id
    WHERE f.repo_id = repo AND f.first_at >= since::timestamp AT TIME ZONE 'UTC'
      AND f.first_at < (until + 1)::timestamp AT TIME ZONE 'UTC'
    ORDER BY f.first_at, 2;
END
$$;

-- One contributor across the fleet: per repository, first and last action and counts.
CREATE FUNCTION aveloxis.contributor_activity(cntrb uuid)
RETURNS TABLE (repo_id bigint, repo_git text, first_action timestamptz, last_action timestamptz, actions bigint,
               commits bigint, issues_opened bigint, prs_opened bigint, reviews bigint, comments bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    SELECT a.repo_id, r.repo_git, min(a.created_at), max(a.created_at), count(*),
           count(*) FILTER (WHERE a.action = 'commit'), count(*) FILTER (WHERE a.action = 'issue_opened'),
           count(*) FILTER (WHERE a.action = 'pull_request_open'),
           count(*) FILTER (WHERE a.action LIKE 'pull_request_review_%'),
           count(*) FILTER (WHERE a.action IN ('issue_comment', 'pull_request_comment'))
    FROM aveloxis_data.contributor_actions a
    JOIN aveloxis_data.repos r ON r.repo_id = a.repo_id
    WHERE a.cntrb_id = cntrb
    GROUP BY a.repo_id, r.repo_git
    ORDER BY 5 DESC, 1
$$;
