-- pg_aveloxis 0.11.0 -> 0.12.0: cheaper daily-activity bookkeeping in every writer's
-- statements (docs/benchmarks.md, drain).
--
-- * activity_apply: a statement with facts on one side only (an INSERT, a DELETE) adds
--   them as they are, without the EXCEPT ALL that cancels an UPDATE's unchanged facts
--   (two sorts of every fact); first contributions already known with an earlier or
--   equal day are settled by an index probe before the upsert, which took a row lock on
--   each of them to evaluate its WHERE. The counts are the same.

CREATE OR REPLACE FUNCTION aveloxis_ops.activity_apply(plus aveloxis_ops.activity_fact[], minus aveloxis_ops.activity_fact[])
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

SELECT aveloxis_ops.apply_grants();
