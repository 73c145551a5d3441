-- Per-repository daily activity, kept current as data arrives (docs/analytics.md).
--
-- Statement-level triggers on the base tables turn each statement's changed rows
-- (transition tables) into signed facts, and aveloxis_ops.activity_apply() adds them
-- to repo_daily_activity in the same transaction: a dashboard reads today's numbers
-- between view refreshes, whichever code path wrote the rows (drain, force-push
-- deletions, author linking, an admin's DELETE). An UPDATE that changes nothing the
-- aggregates read nets to nothing. aveloxis.rebuild_activity() recomputes from scratch
-- with the same definitions (and must agree: tests/tests/analytics.rs).
--
-- Definitions (day = the UTC date):
--   issues_opened/closed   issues by created_at / closed_at
--   prs_opened/merged      pull requests by created_at / merged_at
--   prs_closed             pull requests closed without merging, by closed_at
--   commits                distinct commits by author time; lines_added/removed their numstat sums
--   comments               issue, pull request and diff comments by msg_timestamp
--   reviews                pull request reviews by submitted_at
--   new_contributors       contributors whose first contribution (commit authored, issue
--                          or pull request opened, comment, review) in the repository
--                          falls on the day; repo_contributor_first keeps each one's first.

CREATE TABLE aveloxis_data.repo_daily_activity (
    repo_id          bigint NOT NULL REFERENCES aveloxis_data.repos ON DELETE CASCADE,
    day              date NOT NULL,
    issues_opened    bigint NOT NULL DEFAULT 0,
    issues_closed    bigint NOT NULL DEFAULT 0,
    prs_opened       bigint NOT NULL DEFAULT 0,
    prs_merged       bigint NOT NULL DEFAULT 0,
    prs_closed       bigint NOT NULL DEFAULT 0,
    commits          bigint NOT NULL DEFAULT 0,
    lines_added      bigint NOT NULL DEFAULT 0,
    lines_removed    bigint NOT NULL DEFAULT 0,
    comments         bigint NOT NULL DEFAULT 0,
    reviews          bigint NOT NULL DEFAULT 0,
    new_contributors bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (repo_id, day)
);
COMMENT ON TABLE aveloxis_data.repo_daily_activity IS 'Daily activity per repository, maintained by triggers as rows are written';

CREATE TABLE aveloxis_data.repo_contributor_first (
    repo_id       bigint NOT NULL REFERENCES aveloxis_data.repos ON DELETE CASCADE,
    cntrb_id      uuid NOT NULL,
    first_at      timestamptz NOT NULL,
    -- The first_at it replaced (how the trigger learns the old value from an upsert).
    prev_first_at timestamptz,
    PRIMARY KEY (repo_id, cntrb_id)
);
COMMENT ON TABLE aveloxis_data.repo_contributor_first IS 'Each contributor''s first contribution to each repository';
CREATE INDEX repo_contributor_first_day_idx ON aveloxis_data.repo_contributor_first (repo_id, first_at);

-- Lookups of one contributor's contributions to one repository (a removed first
-- action), and of a repository's reviews by time (the analyst API).
CREATE INDEX pull_request_reviews_cntrb_idx ON aveloxis_data.pull_request_reviews (cntrb_id);
CREATE INDEX pull_request_reviews_repo_time_idx ON aveloxis_data.pull_request_reviews (repo_id, submitted_at);
-- One contributor's closes and merges (aveloxis.contributor_activity).
CREATE INDEX issue_events_cntrb_idx ON aveloxis_data.issue_events (cntrb_id) WHERE cntrb_id IS NOT NULL;
CREATE INDEX pull_request_events_cntrb_idx ON aveloxis_data.pull_request_events (cntrb_id) WHERE cntrb_id IS NOT NULL;

-- Not in pg_dump: derived data. A restore loads the base tables with the triggers on,
-- which rebuild both as the rows go in (after a restore with --disable-triggers:
-- SELECT aveloxis.rebuild_activity()). Dumped, they would be counted twice.

-- measure: a repo_daily_activity column, or 'contribution' (cntrb_id did something at `at`).
CREATE TYPE aveloxis_ops.activity_fact AS (repo_id bigint, cntrb_id uuid, at timestamptz, measure text, amount bigint);

-- A contributor's first contribution to a repository, from the base tables.
CREATE FUNCTION aveloxis_ops.first_contribution(repo bigint, person uuid)
RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT least(
        (SELECT min(c.cmt_author_timestamp) FROM aveloxis_data.commits c
         WHERE c.cmt_ght_author_id = person AND c.repo_id = repo),
        (SELECT min(i.created_at) FROM aveloxis_data.issues i WHERE i.reporter_id = person AND i.repo_id = repo),
        (SELECT min(p.created_at) FROM aveloxis_data.pull_requests p WHERE p.author_id = person AND p.repo_id = repo),
        (SELECT min(m.msg_timestamp) FROM aveloxis_data.messages m
         WHERE m.cntrb_id = person AND m.repo_id = repo AND m.msg_source IN ('issue_comment', 'review_comment')),
        (SELECT min(v.submitted_at) FROM aveloxis_data.pull_request_reviews v
         WHERE v.cntrb_id = person AND v.repo_id = repo))
$$;

-- Adds the facts of one statement: plus (rows as they are now) minus (rows as they
-- were). What both hold cancels out.
CREATE FUNCTION aveloxis_ops.activity_apply(plus aveloxis_ops.activity_fact[], minus aveloxis_ops.activity_fact[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    repo   bigint;
    pair   record;
    before timestamptz;
    after  timestamptz;
BEGIN
    IF coalesce(cardinality(plus), 0) + coalesce(cardinality(minus), 0) = 0 THEN
        RETURN;
    END IF;
    -- Writers of one repository take turns here (a drain and an author linking, say):
    -- first-contribution bookkeeping reads before it writes.
    FOR repo IN SELECT DISTINCT f.repo_id FROM unnest(coalesce(plus, '{}') || coalesce(minus, '{}')) f ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(hashtextextended('aveloxis.activity', repo));
    END LOOP;

    -- Session-long scratch; one made by anyone but the extension's owner is refused.
    IF to_regclass('pg_temp.activity_net') IS NULL THEN
        CREATE TEMP TABLE activity_net (repo_id bigint, cntrb_id uuid, at timestamptz, measure text,
                                        amount bigint, sign integer) ON COMMIT DELETE ROWS;
    END IF;
    PERFORM aveloxis_ops.check_scratch_owner('activity_net');
    -- DELETE, not TRUNCATE: a TRUNCATE makes a new file for the table each time, which
    -- cost a single-row statement 2.9 ms (0.5 ms with DELETE); the table holds one
    -- statement's facts at a time.
    DELETE FROM pg_temp.activity_net;
    -- An INSERT (or DELETE) has one side only: nothing to cancel, no sort to pay.
    IF coalesce(cardinality(minus), 0) = 0 THEN
        INSERT INTO pg_temp.activity_net SELECT n.*, 1 FROM unnest(plus) n;
    ELSIF coalesce(cardinality(plus), 0) = 0 THEN
        INSERT INTO pg_temp.activity_net SELECT n.*, -1 FROM unnest(minus) n;
    ELSE
        INSERT INTO pg_temp.activity_net
        SELECT n.*, 1 FROM (SELECT * FROM unnest(plus) EXCEPT ALL SELECT * FROM unnest(minus)) n
        UNION ALL
        SELECT n.*, -1 FROM (SELECT * FROM unnest(minus) EXCEPT ALL SELECT * FROM unnest(plus)) n;
    END IF;

    -- First contributions: an earlier one moves a contributor's first day.
    WITH candidates AS (
        SELECT n.repo_id, n.cntrb_id, min(n.at) AS at FROM pg_temp.activity_net n
        WHERE n.measure = 'contribution' AND n.sign = 1 AND n.cntrb_id IS NOT NULL AND n.at IS NOT NULL
          AND EXISTS (SELECT FROM aveloxis_data.repos r WHERE r.repo_id = n.repo_id)
        GROUP BY 1, 2
    ), moved AS (
        -- Most candidates are known with an earlier first day: an index probe settles
        -- them without the row lock ON CONFLICT DO UPDATE takes before its WHERE.
        INSERT INTO aveloxis_data.repo_contributor_first AS f (repo_id, cntrb_id, first_at)
        SELECT c.repo_id, c.cntrb_id, c.at FROM candidates c
        WHERE NOT EXISTS (SELECT FROM aveloxis_data.repo_contributor_first k
                          WHERE k.repo_id = c.repo_id AND k.cntrb_id = c.cntrb_id AND k.first_at <= c.at)
        ORDER BY 1, 2
        ON CONFLICT (repo_id, cntrb_id) DO UPDATE SET prev_first_at = f.first_at, first_at = EXCLUDED.first_at
            WHERE EXCLUDED.first_at < f.first_at
        RETURNING f.repo_id, f.first_at, f.prev_first_at, (f.xmax = 0) AS fresh
    )
    INSERT INTO pg_temp.activity_net (repo_id, at, measure, amount, sign)
    SELECT m.repo_id, m.first_at, 'new_contributors', 1, 1 FROM moved m
    UNION ALL
    SELECT m.repo_id, m.prev_first_at, 'new_contributors', 1, -1 FROM moved m WHERE NOT m.fresh;

    -- A removed contribution that may have been someone's first: recount that one person.
    FOR pair IN
        SELECT DISTINCT n.repo_id, n.cntrb_id FROM pg_temp.activity_net n
        JOIN aveloxis_data.repo_contributor_first f USING (repo_id, cntrb_id)
        WHERE n.measure = 'contribution' AND n.sign = -1 AND n.at <= f.first_at
        ORDER BY 1, 2
    LOOP
        SELECT f.first_at INTO before FROM aveloxis_data.repo_contributor_first f
        WHERE f.repo_id = pair.repo_id AND f.cntrb_id = pair.cntrb_id FOR UPDATE;
        after := aveloxis_ops.first_contribution(pair.repo_id, pair.cntrb_id);
        CONTINUE WHEN after IS NOT DISTINCT FROM before;
        IF after IS NULL THEN
            DELETE FROM aveloxis_data.repo_contributor_first f WHERE f.repo_id = pair.repo_id AND f.cntrb_id = pair.cntrb_id;
        ELSE
            UPDATE aveloxis_data.repo_contributor_first f SET prev_first_at = f.first_at, first_at = after
            WHERE f.repo_id = pair.repo_id AND f.cntrb_id = pair.cntrb_id;
            INSERT INTO pg_temp.activity_net (repo_id, at, measure, amount, sign)
            VALUES (pair.repo_id, after, 'new_contributors', 1, 1);
        END IF;
        INSERT INTO pg_temp.activity_net (repo_id, at, measure, amount, sign)
        VALUES (pair.repo_id, before, 'new_contributors', 1, -1);
    END LOOP;

    INSERT INTO aveloxis_data.repo_daily_activity AS a
        (repo_id, day, issues_opened, issues_closed, prs_opened, prs_merged, prs_closed, commits, lines_added,
         lines_removed, comments, reviews, new_contributors)
    SELECT d.repo_id, d.day,
           coalesce(sum(d.v) FILTER (WHERE d.measure = 'issues_opened'), 0),
           coalesce(sum(d.v) FILTER (WHERE d.measure = 'issues_closed'), 0),
           coalesce(sum(d.v) FILTER (WHERE d.measure = 'prs_opened'), 0),
           coalesce(sum(d.v) FILTER (WHERE d.measure = 'prs_merged'), 0),
           coalesce(sum(d.v) FILTER (WHERE d.measure = 'prs_closed'), 0),
           coalesce(sum(d.v) FILTER (WHERE d.measure = 'commits'), 0),
           coalesce(sum(d.v) FILTER (WHERE d.measure = 'lines_added'), 0),
           coalesce(sum(d.v) FILTER (WHERE d.measure = 'lines_removed'), 0),
           coalesce(sum(d.v) FILTER (WHERE d.measure = 'comments'), 0),
           coalesce(sum(d.v) FILTER (WHERE d.measure = 'reviews'), 0),
           coalesce(sum(d.v) FILTER (WHERE d.measure = 'new_contributors'), 0)
    FROM (SELECT n.repo_id, (n.at AT TIME ZONE 'UTC')::date AS day, n.measure, n.amount * n.sign AS v
          FROM pg_temp.activity_net n
          WHERE n.measure <> 'contribution' AND n.at IS NOT NULL
            AND EXISTS (SELECT FROM aveloxis_data.repos r WHERE r.repo_id = n.repo_id)) d
    GROUP BY d.repo_id, d.day
    HAVING bool_or(d.v <> 0)
    ORDER BY d.repo_id, d.day
    ON CONFLICT (repo_id, day) DO UPDATE SET
        issues_opened = a.issues_opened + EXCLUDED.issues_opened,
        issues_closed = a.issues_closed + EXCLUDED.issues_closed,
        prs_opened = a.prs_opened + EXCLUDED.prs_opened, prs_merged = a.prs_merged + EXCLUDED.prs_merged,
        prs_closed = a.prs_closed + EXCLUDED.prs_closed, commits = a.commits + EXCLUDED.commits,
        lines_added = a.lines_added + EXCLUDED.lines_added, lines_removed = a.lines_removed + EXCLUDED.lines_removed,
        comments = a.comments + EXCLUDED.comments, reviews = a.reviews + EXCLUDED.reviews,
        new_contributors = a.new_contributors + EXCLUDED.new_contributors;
    -- A day whose every count went back to zero is no day of activity.
    DELETE FROM aveloxis_data.repo_daily_activity a
    USING (SELECT DISTINCT n.repo_id, (n.at AT TIME ZONE 'UTC')::date AS day FROM pg_temp.activity_net n
           WHERE n.sign = -1 AND n.at IS NOT NULL) z
    WHERE a.repo_id = z.repo_id AND a.day = z.day
      AND (a.issues_opened, a.issues_closed, a.prs_opened, a.prs_merged, a.prs_closed, a.commits, a.lines_added,
           a.lines_removed, a.comments, a.reviews, a.new_contributors) = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    DELETE FROM pg_temp.activity_net;
END
$$;

-- The facts of one row of each table.
CREATE FUNCTION aveloxis_ops.issue_facts(i aveloxis_data.issues)
RETURNS SETOF aveloxis_ops.activity_fact
LANGUAGE sql IMMUTABLE
AS $$
    SELECT i.repo_id, NULL::uuid, i.created_at, 'issues_opened', 1::bigint WHERE i.created_at IS NOT NULL
    UNION ALL SELECT i.repo_id, NULL, i.closed_at, 'issues_closed', 1 WHERE i.closed_at IS NOT NULL
    UNION ALL SELECT i.repo_id, i.reporter_id, i.created_at, 'contribution', 1
              WHERE i.reporter_id IS NOT NULL AND i.created_at IS NOT NULL
$$;

CREATE FUNCTION aveloxis_ops.pull_request_facts(p aveloxis_data.pull_requests)
RETURNS SETOF aveloxis_ops.activity_fact
LANGUAGE sql IMMUTABLE
AS $$
    SELECT p.repo_id, NULL::uuid, p.created_at, 'prs_opened', 1::bigint WHERE p.created_at IS NOT NULL
    UNION ALL SELECT p.repo_id, NULL, p.merged_at, 'prs_merged', 1 WHERE p.merged_at IS NOT NULL
    UNION ALL SELECT p.repo_id, NULL, p.closed_at, 'prs_closed', 1 WHERE p.closed_at IS NOT NULL AND p.merged_at IS NULL
    UNION ALL SELECT p.repo_id, p.author_id, p.created_at, 'contribution', 1
              WHERE p.author_id IS NOT NULL AND p.created_at IS NOT NULL
$$;

CREATE FUNCTION aveloxis_ops.message_facts(m aveloxis_data.messages)
RETURNS SETOF aveloxis_ops.activity_fact
LANGUAGE sql IMMUTABLE
AS $$
    SELECT m.repo_id, NULL::uuid, m.msg_timestamp, 'comments', 1::bigint
    WHERE m.msg_timestamp IS NOT NULL AND m.msg_source IN ('issue_comment', 'review_comment')
    UNION ALL SELECT m.repo_id, m.cntrb_id, m.msg_timestamp, 'contribution', 1
    WHERE m.cntrb_id IS NOT NULL AND m.msg_timestamp IS NOT NULL AND m.msg_source IN ('issue_comment', 'review_comment')
$$;

CREATE FUNCTION aveloxis_ops.review_facts(v aveloxis_data.pull_request_reviews)
RETURNS SETOF aveloxis_ops.activity_fact
LANGUAGE sql IMMUTABLE
AS $$
    SELECT v.repo_id, NULL::uuid, v.submitted_at, 'reviews', 1::bigint WHERE v.submitted_at IS NOT NULL
    UNION ALL SELECT v.repo_id, v.cntrb_id, v.submitted_at, 'contribution', 1
    WHERE v.cntrb_id IS NOT NULL AND v.submitted_at IS NOT NULL
$$;

-- One trigger function per table; transition tables are named new_rows and old_rows.
CREATE FUNCTION aveloxis_ops.issues_activity() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE plus aveloxis_ops.activity_fact[]; minus aveloxis_ops.activity_fact[];
BEGIN
    IF TG_OP <> 'DELETE' THEN SELECT array_agg(f) INTO plus FROM new_rows n, aveloxis_ops.issue_facts(n) f; END IF;
    IF TG_OP <> 'INSERT' THEN SELECT array_agg(f) INTO minus FROM old_rows o, aveloxis_ops.issue_facts(o) f; END IF;
    PERFORM aveloxis_ops.activity_apply(plus, minus);
    RETURN NULL;
END $$;

CREATE FUNCTION aveloxis_ops.pull_requests_activity() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE plus aveloxis_ops.activity_fact[]; minus aveloxis_ops.activity_fact[];
BEGIN
    IF TG_OP <> 'DELETE' THEN SELECT array_agg(f) INTO plus FROM new_rows n, aveloxis_ops.pull_request_facts(n) f; END IF;
    IF TG_OP <> 'INSERT' THEN SELECT array_agg(f) INTO minus FROM old_rows o, aveloxis_ops.pull_request_facts(o) f; END IF;
    PERFORM aveloxis_ops.activity_apply(plus, minus);
    RETURN NULL;
END $$;

CREATE FUNCTION aveloxis_ops.messages_activity() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE plus aveloxis_ops.activity_fact[]; minus aveloxis_ops.activity_fact[];
BEGIN
    IF TG_OP <> 'DELETE' THEN SELECT array_agg(f) INTO plus FROM new_rows n, aveloxis_ops.message_facts(n) f; END IF;
    IF TG_OP <> 'INSERT' THEN SELECT array_agg(f) INTO minus FROM old_rows o, aveloxis_ops.message_facts(o) f; END IF;
    PERFORM aveloxis_ops.activity_apply(plus, minus);
    RETURN NULL;
END $$;

CREATE FUNCTION aveloxis_ops.reviews_activity() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE plus aveloxis_ops.activity_fact[]; minus aveloxis_ops.activity_fact[];
BEGIN
    IF TG_OP <> 'DELETE' THEN SELECT array_agg(f) INTO plus FROM new_rows n, aveloxis_ops.review_facts(n) f; END IF;
    IF TG_OP <> 'INSERT' THEN SELECT array_agg(f) INTO minus FROM old_rows o, aveloxis_ops.review_facts(o) f; END IF;
    PERFORM aveloxis_ops.activity_apply(plus, minus);
    RETURN NULL;
END $$;

-- The start of a moment's UTC day: facts that count per day (lines, commits) are
-- summed per day before activity_apply, one fact a day instead of one a row.
CREATE FUNCTION aveloxis_ops.utc_day_start(at timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT pg_catalog.timezone('UTC', pg_catalog.date_trunc('day', pg_catalog.timezone('UTC', at))) $$;

-- Commits: one row per (commit, file). Lines count per row; a commit counts once,
-- when its first row arrives and when its last row goes (whatever statements they
-- come in); its author's contribution once per commit.
-- Lines and commits are summed per UTC day in the statement (a batch of thousands of
-- rows becomes a few facts a day); contributions stay per commit (first contributions
-- need their time).
CREATE FUNCTION aveloxis_ops.commits_activity() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
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

CREATE TRIGGER issues_activity_ins AFTER INSERT ON aveloxis_data.issues REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION aveloxis_ops.issues_activity();
CREATE TRIGGER issues_activity_upd AFTER UPDATE ON aveloxis_data.issues REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION aveloxis_ops.issues_activity();
CREATE TRIGGER issues_activity_del AFTER DELETE ON aveloxis_data.issues REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION aveloxis_ops.issues_activity();
CREATE TRIGGER pull_requests_activity_ins AFTER INSERT ON aveloxis_data.pull_requests REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION aveloxis_ops.pull_requests_activity();
CREATE TRIGGER pull_requests_activity_upd AFTER UPDATE ON aveloxis_data.pull_requests
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION aveloxis_ops.pull_requests_activity();
CREATE TRIGGER pull_requests_activity_del AFTER DELETE ON aveloxis_data.pull_requests REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION aveloxis_ops.pull_requests_activity();
CREATE TRIGGER messages_activity_ins AFTER INSERT ON aveloxis_data.messages REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION aveloxis_ops.messages_activity();
CREATE TRIGGER messages_activity_upd AFTER UPDATE ON aveloxis_data.messages
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION aveloxis_ops.messages_activity();
CREATE TRIGGER messages_activity_del AFTER DELETE ON aveloxis_data.messages REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION aveloxis_ops.messages_activity();
CREATE TRIGGER reviews_activity_ins AFTER INSERT ON aveloxis_data.pull_request_reviews REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION aveloxis_ops.reviews_activity();
CREATE TRIGGER reviews_activity_upd AFTER UPDATE ON aveloxis_data.pull_request_reviews
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION aveloxis_ops.reviews_activity();
CREATE TRIGGER reviews_activity_del AFTER DELETE ON aveloxis_data.pull_request_reviews REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION aveloxis_ops.reviews_activity();
CREATE TRIGGER commits_activity_ins AFTER INSERT ON aveloxis_data.commits REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION aveloxis_ops.commits_activity();
CREATE TRIGGER commits_activity_upd AFTER UPDATE ON aveloxis_data.commits
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION aveloxis_ops.commits_activity();
CREATE TRIGGER commits_activity_del AFTER DELETE ON aveloxis_data.commits REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION aveloxis_ops.commits_activity();

-- The daily activity of one repository (or all), computed from the base tables with
-- the triggers' definitions.
CREATE FUNCTION aveloxis_ops.activity_from_scratch(repo bigint)
RETURNS SETOF aveloxis_data.repo_daily_activity
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH firsts AS (
        SELECT a.repo_id, a.cntrb_id, min(a.at) AS first_at FROM (
            SELECT c.repo_id, c.cmt_ght_author_id AS cntrb_id, c.cmt_author_timestamp AS at FROM aveloxis_data.commits c
            WHERE (repo IS NULL OR c.repo_id = repo) AND c.cmt_ght_author_id IS NOT NULL
            UNION ALL SELECT i.repo_id, i.reporter_id, i.created_at FROM aveloxis_data.issues i
            WHERE (repo IS NULL OR i.repo_id = repo) AND i.reporter_id IS NOT NULL
            UNION ALL SELECT p.repo_id, p.author_id, p.created_at FROM aveloxis_data.pull_requests p
            WHERE (repo IS NULL OR p.repo_id = repo) AND p.author_id IS NOT NULL
            UNION ALL SELECT m.repo_id, m.cntrb_id, m.msg_timestamp FROM aveloxis_data.messages m
            WHERE (repo IS NULL OR m.repo_id = repo) AND m.cntrb_id IS NOT NULL
              AND m.msg_source IN ('issue_comment', 'review_comment')
            UNION ALL SELECT v.repo_id, v.cntrb_id, v.submitted_at FROM aveloxis_data.pull_request_reviews v
            WHERE (repo IS NULL OR v.repo_id = repo) AND v.cntrb_id IS NOT NULL
        ) a WHERE a.at IS NOT NULL GROUP BY 1, 2
    ), facts AS (
        SELECT i.repo_id, (i.created_at AT TIME ZONE 'UTC')::date AS day, 'issues_opened' AS measure, 1::bigint AS v
        FROM aveloxis_data.issues i WHERE (repo IS NULL OR i.repo_id = repo) AND i.created_at IS NOT NULL
        UNION ALL SELECT i.repo_id, (i.closed_at AT TIME ZONE 'UTC')::date, 'issues_closed', 1
        FROM aveloxis_data.issues i WHERE (repo IS NULL OR i.repo_id = repo) AND i.closed_at IS NOT NULL
        UNION ALL SELECT p.repo_id, (p.created_at AT TIME ZONE 'UTC')::date, 'prs_opened', 1
        FROM aveloxis_data.pull_requests p WHERE (repo IS NULL OR p.repo_id = repo) AND p.created_at IS NOT NULL
        UNION ALL SELECT p.repo_id, (p.merged_at AT TIME ZONE 'UTC')::date, 'prs_merged', 1
        FROM aveloxis_data.pull_requests p WHERE (repo IS NULL OR p.repo_id = repo) AND p.merged_at IS NOT NULL
        UNION ALL SELECT p.repo_id, (p.closed_at AT TIME ZONE 'UTC')::date, 'prs_closed', 1
        FROM aveloxis_data.pull_requests p
        WHERE (repo IS NULL OR p.repo_id = repo) AND p.closed_at IS NOT NULL AND p.merged_at IS NULL
        UNION ALL SELECT c.repo_id, (min(c.cmt_author_timestamp) AT TIME ZONE 'UTC')::date, 'commits', 1
        FROM aveloxis_data.commits c WHERE (repo IS NULL OR c.repo_id = repo) AND c.cmt_author_timestamp IS NOT NULL
        GROUP BY c.repo_id, c.cmt_commit_hash
        UNION ALL SELECT c.repo_id, (c.cmt_author_timestamp AT TIME ZONE 'UTC')::date, 'lines_added', c.cmt_added
        FROM aveloxis_data.commits c WHERE (repo IS NULL OR c.repo_id = repo) AND c.cmt_author_timestamp IS NOT NULL
        UNION ALL SELECT c.repo_id, (c.cmt_author_timestamp AT TIME ZONE 'UTC')::date, 'lines_removed', c.cmt_removed
        FROM aveloxis_data.commits c WHERE (repo IS NULL OR c.repo_id = repo) AND c.cmt_author_timestamp IS NOT NULL
        UNION ALL SELECT m.repo_id, (m.msg_timestamp AT TIME ZONE 'UTC')::date, 'comments', 1
        FROM aveloxis_data.messages m
        WHERE (repo IS NULL OR m.repo_id = repo) AND m.msg_timestamp IS NOT NULL
          AND m.msg_source IN ('issue_comment', 'review_comment')
        UNION ALL SELECT v.repo_id, (v.submitted_at AT TIME ZONE 'UTC')::date, 'reviews', 1
        FROM aveloxis_data.pull_request_reviews v WHERE (repo IS NULL OR v.repo_id = repo) AND v.submitted_at IS NOT NULL
        UNION ALL SELECT f.repo_id, (f.first_at AT TIME ZONE 'UTC')::date, 'new_contributors', 1 FROM firsts f
    )
    SELECT f.repo_id, f.day,
           coalesce(sum(f.v) FILTER (WHERE f.measure = 'issues_opened'), 0),
           coalesce(sum(f.v) FILTER (WHERE f.measure = 'issues_closed'), 0),
           coalesce(sum(f.v) FILTER (WHERE f.measure = 'prs_opened'), 0),
           coalesce(sum(f.v) FILTER (WHERE f.measure = 'prs_merged'), 0),
           coalesce(sum(f.v) FILTER (WHERE f.measure = 'prs_closed'), 0),
           coalesce(sum(f.v) FILTER (WHERE f.measure = 'commits'), 0),
           coalesce(sum(f.v) FILTER (WHERE f.measure = 'lines_added'), 0),
           coalesce(sum(f.v) FILTER (WHERE f.measure = 'lines_removed'), 0),
           coalesce(sum(f.v) FILTER (WHERE f.measure = 'comments'), 0),
           coalesce(sum(f.v) FILTER (WHERE f.measure = 'reviews'), 0),
           coalesce(sum(f.v) FILTER (WHERE f.measure = 'new_contributors'), 0)
    FROM facts f
    WHERE EXISTS (SELECT FROM aveloxis_data.repos r WHERE r.repo_id = f.repo_id)
    GROUP BY f.repo_id, f.day
    HAVING bool_or(f.v <> 0)
$$;

-- Recomputes the daily activity (and first contributions) of one repository, or of
-- all when repo is NULL. Returns the days written. For an upgrade from a version
-- without triggers, or after a TRUNCATE (which the triggers do not see).
CREATE FUNCTION aveloxis.rebuild_activity(repo bigint DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    written bigint;
    r bigint;
BEGIN
    FOR r IN SELECT x.repo_id FROM aveloxis_data.repos x WHERE repo IS NULL OR x.repo_id = repo ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(hashtextextended('aveloxis.activity', r));
    END LOOP;
    DELETE FROM aveloxis_data.repo_daily_activity a WHERE repo IS NULL OR a.repo_id = repo;
    DELETE FROM aveloxis_data.repo_contributor_first f WHERE repo IS NULL OR f.repo_id = repo;
    INSERT INTO aveloxis_data.repo_contributor_first (repo_id, cntrb_id, first_at)
    SELECT a.repo_id, a.cntrb_id, min(a.at) FROM (
        SELECT c.repo_id, c.cmt_ght_author_id AS cntrb_id, c.cmt_author_timestamp AS at FROM aveloxis_data.commits c
        WHERE (repo IS NULL OR c.repo_id = repo) AND c.cmt_ght_author_id IS NOT NULL
        UNION ALL SELECT i.repo_id, i.reporter_id, i.created_at FROM aveloxis_data.issues i
        WHERE (repo IS NULL OR i.repo_id = repo) AND i.reporter_id IS NOT NULL
        UNION ALL SELECT p.repo_id, p.author_id, p.created_at FROM aveloxis_data.pull_requests p
        WHERE (repo IS NULL OR p.repo_id = repo) AND p.author_id IS NOT NULL
        UNION ALL SELECT m.repo_id, m.cntrb_id, m.msg_timestamp FROM aveloxis_data.messages m
        WHERE (repo IS NULL OR m.repo_id = repo) AND m.cntrb_id IS NOT NULL
          AND m.msg_source IN ('issue_comment', 'review_comment')
        UNION ALL SELECT v.repo_id, v.cntrb_id, v.submitted_at FROM aveloxis_data.pull_request_reviews v
        WHERE (repo IS NULL OR v.repo_id = repo) AND v.cntrb_id IS NOT NULL
    ) a WHERE a.at IS NOT NULL GROUP BY 1, 2;
    INSERT INTO aveloxis_data.repo_daily_activity SELECT * FROM aveloxis_ops.activity_from_scratch(repo);
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END
$$;
