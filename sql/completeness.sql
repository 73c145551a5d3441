-- The completeness ledger (docs/analytics.md): per repository and entity, what the
-- forge reports against what was gathered, so that every figure of the analyst API says
-- how complete it is. Recorded when a job completes (aveloxis.complete() calls
-- record_completeness, after the agent's drain).
--
--   issues_and_pull_requests   reported: the highest issue/PR number (GitHub and GitLab
--                              number both in one sequence per project: everything ever
--                              opened, deleted and transferred ones included, so coverage
--                              is a lower bound); gathered: issues + pull requests stored
--   open_issues_and_pull_requests  reported: the repository object's open count
--   commits                    reported: commits reachable from the default branch (the
--                              facade's walk); gathered: distinct commits stored
--   <list>                     on a full collection, items the forge listed (issues,
--                              pull_requests, issue_comments, releases, ...) vs rows stored

CREATE TABLE aveloxis_data.collection_completeness (
    repo_id     bigint NOT NULL REFERENCES aveloxis_data.repos ON DELETE CASCADE,
    entity      text NOT NULL,
    reported    bigint NOT NULL CHECK (reported >= 0),
    gathered    bigint NOT NULL CHECK (gathered >= 0),
    observed_at timestamptz NOT NULL,
    source      text NOT NULL,
    PRIMARY KEY (repo_id, entity)
);
COMMENT ON TABLE aveloxis_data.collection_completeness IS 'Per repository and entity: what the forge reported against what was gathered';
SELECT pg_catalog.pg_extension_config_dump('aveloxis_data.collection_completeness', '');

-- What is stored now of each ledger entity.
CREATE FUNCTION aveloxis_ops.gathered(repo bigint, entity text)
RETURNS bigint
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE entity
        WHEN 'issues_and_pull_requests' THEN
            (SELECT count(*) FROM aveloxis_data.issues i WHERE i.repo_id = repo)
            + (SELECT count(*) FROM aveloxis_data.pull_requests p WHERE p.repo_id = repo)
        WHEN 'open_issues_and_pull_requests' THEN
            (SELECT count(*) FROM aveloxis_data.issues i WHERE i.repo_id = repo AND i.closed_at IS NULL)
            + (SELECT count(*) FROM aveloxis_data.pull_requests p WHERE p.repo_id = repo AND p.closed_at IS NULL)
        WHEN 'issues' THEN (SELECT count(*) FROM aveloxis_data.issues i WHERE i.repo_id = repo)
        WHEN 'pull_requests' THEN (SELECT count(*) FROM aveloxis_data.pull_requests p WHERE p.repo_id = repo)
        WHEN 'commits' THEN (SELECT count(DISTINCT c.cmt_commit_hash) FROM aveloxis_data.commits c WHERE c.repo_id = repo)
        WHEN 'issue_comments' THEN (SELECT count(*) FROM aveloxis_data.messages m
                                    WHERE m.repo_id = repo AND m.msg_source = 'issue_comment')
        WHEN 'review_comments' THEN (SELECT count(*) FROM aveloxis_data.messages m
                                     WHERE m.repo_id = repo AND m.msg_source = 'review_comment')
        WHEN 'releases' THEN (SELECT count(*) FROM aveloxis_data.releases r WHERE r.repo_id = repo)
        WHEN 'issue_events' THEN (SELECT count(*) FROM aveloxis_data.issue_events e WHERE e.repo_id = repo)
                                 + (SELECT count(*) FROM aveloxis_data.pull_request_events e WHERE e.repo_id = repo)
    END
$$;

-- Records an outcome's "completeness" object: {"<entity>": {"reported": n}, ...}. The
-- gathered side is counted here, after the drain. Unknown entities and values that are
-- not counts are skipped, each with a WARNING naming it: nothing is silently dropped.
CREATE FUNCTION aveloxis_ops.record_completeness(repo bigint, phase text, completeness jsonb)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    item     record;
    reported bigint;
    gathered bigint;
    written  integer := 0;
BEGIN
    IF jsonb_typeof(completeness) IS DISTINCT FROM 'object' THEN
        RETURN 0;
    END IF;
    FOR item IN SELECT e.key, e.value FROM jsonb_each(completeness) e LOOP
        reported := CASE WHEN jsonb_typeof(item.value -> 'reported') = 'number'
                              AND (item.value ->> 'reported') ~ '^[0-9]{1,15}$'
                         THEN (item.value ->> 'reported')::bigint END;
        gathered := aveloxis_ops.gathered(repo, item.key);
        IF reported IS NULL OR gathered IS NULL THEN
            RAISE WARNING 'completeness of repo % (%): "%" skipped: % ', repo, phase, item.key,
                CASE WHEN reported IS NULL THEN 'no count in ' || item.value::text ELSE 'not a ledger entity' END;
            CONTINUE;
        END IF;
        INSERT INTO aveloxis_data.collection_completeness AS c (repo_id, entity, reported, gathered, observed_at, source)
        VALUES (repo, item.key, reported, gathered, now(), phase)
        ON CONFLICT (repo_id, entity) DO UPDATE
            -- Issue numbers never go down: an incremental run sees only recent ones.
            SET reported = CASE WHEN c.entity = 'issues_and_pull_requests' THEN greatest(c.reported, EXCLUDED.reported)
                                ELSE EXCLUDED.reported END,
                gathered = EXCLUDED.gathered, observed_at = EXCLUDED.observed_at, source = EXCLUDED.source;
        written := written + 1;
    END LOOP;
    RETURN written;
END
$$;

-- Coverage (gathered / reported, at most 1) of the ledger entities for a set of
-- repositories: NULL when any of them has no record (unknown, not zero).
CREATE FUNCTION aveloxis_ops.coverage(repos bigint[], entities text[])
RETURNS numeric
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN count(c.repo_id) < cardinality(repos) THEN NULL
                WHEN sum(c.reported) = 0 THEN 1
                ELSE least(1, round(sum(c.gathered)::numeric / sum(c.reported), 4)) END
    FROM unnest(repos) AS r(repo_id)
    LEFT JOIN LATERAL (
        SELECT x.repo_id, sum(x.reported) AS reported, sum(x.gathered) AS gathered
        FROM aveloxis_data.collection_completeness x
        WHERE x.repo_id = r.repo_id AND x.entity = ANY (entities)
        GROUP BY x.repo_id
    ) c ON true
$$;

-- Per repository and ledger entity: reported, gathered, coverage, when.
CREATE FUNCTION aveloxis.completeness(repo bigint)
RETURNS TABLE (entity text, reported bigint, gathered bigint, coverage numeric, observed_at timestamptz, source text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    SELECT c.entity, c.reported, c.gathered,
           CASE WHEN c.reported = 0 THEN 1 ELSE least(1, round(c.gathered::numeric / c.reported, 4)) END,
           c.observed_at, c.source
    FROM aveloxis_data.collection_completeness c WHERE c.repo_id = repo ORDER BY c.entity
$$;

