-- pg_aveloxis 0.11.0 -> 0.12.0: a cheaper drain step and cheaper daily-activity bookkeeping
-- in every writer's statements (docs/benchmarks.md, drain).
--
-- * aveloxis_ops.sanitized_jsonb(text): sanitize_json(payload)::jsonb in one call, the text
--   copied once instead of three times; the drain parses staged payloads with it.
-- * aveloxis.resolve_emails(text[]) and aveloxis.record_commit_author_misses(...): the
--   database step and the misses of commit-author resolution for a round of emails in
--   one call each (the agent made a round trip per email); granted to the agent
--   (resolve_emails to analysts too, as resolve_email).
-- * commit_authors_to_resolve checks the miss cooldown once per email after grouping, with
--   the clock read once (it was per commit row: 0.6-0.9 s a call on 69,000 rows).
-- * activity_apply: a statement with facts on one side only (an INSERT, a DELETE) adds
--   them as they are, without the EXCEPT ALL that cancels an UPDATE's unchanged facts
--   (two sorts of every fact); first contributions already known with an earlier or
--   equal day are settled by an index probe before the upsert, which took a row lock on
--   each of them to evaluate its WHERE. The counts are the same.

CREATE FUNCTION aveloxis_ops."sanitized_jsonb"(
	"payload" TEXT /* & str */
) RETURNS jsonb /* super :: ParsedJsonb */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'sanitized_jsonb_wrapper';

CREATE FUNCTION aveloxis.resolve_emails(emails text[])
RETURNS TABLE (email text, cntrb_id uuid, login text, source text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
    SELECT e.address, r.cntrb_id, r.login, r.source
    FROM pg_catalog.unnest(emails) WITH ORDINALITY AS e(address, n)
    LEFT JOIN LATERAL aveloxis.resolve_email(e.address) r ON true
    WHERE e.address IS NOT NULL
    ORDER BY e.n
$$;

CREATE FUNCTION aveloxis.record_commit_author_misses(emails text[], outcomes text[], reasons text[], names text[])
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
AS $$
DECLARE
    total integer := coalesce(cardinality(emails), 0);
BEGIN
    IF coalesce(cardinality(outcomes), 0) <> total OR coalesce(cardinality(reasons), 0) <> total
       OR coalesce(cardinality(names), 0) <> total THEN
        RAISE EXCEPTION 'emails, outcomes, reasons and names must have one element per miss (% emails)', total
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass NULL elements for missing reasons or names.';
    END IF;
    FOR i IN 1 .. total LOOP
        PERFORM aveloxis.record_commit_author_miss(emails[i], outcomes[i], reasons[i], names[i]);
    END LOOP;
    RETURN total;
END
$$;

CREATE OR REPLACE FUNCTION aveloxis.commit_authors_to_resolve(repo_id bigint, max_emails integer DEFAULT 1000)
RETURNS TABLE (email text, raw_email text, name text, sample_hash text, commits bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, aveloxis, pg_temp
BEGIN ATOMIC
    WITH at AS MATERIALIZED (SELECT aveloxis_ops.clock() AS now),
    authors AS (
        SELECT c.cmt_author_email AS address, min(c.cmt_author_raw_email) AS raw_address,
               min(c.cmt_author_name) AS author_name, max(c.cmt_commit_hash) AS sample,
               count(DISTINCT c.cmt_commit_hash) AS commit_count
        FROM aveloxis_data.commits c
        WHERE c.repo_id = commit_authors_to_resolve.repo_id AND c.cmt_ght_author_id IS NULL
          AND c.cmt_author_email IS NOT NULL
        GROUP BY c.cmt_author_email
    )
    SELECT a.address, a.raw_address, a.author_name, a.sample, a.commit_count
    FROM authors a CROSS JOIN at
    WHERE NOT EXISTS (SELECT FROM aveloxis_data.unresolved_commit_emails u
                      WHERE u.email = a.address AND u.retry_after > at.now)
    ORDER BY a.commit_count DESC, a.address
    LIMIT max_emails;
END;

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
    identity   smallint;
BEGIN
    IF batch_size IS NULL OR batch_size < 1 THEN
        RAISE EXCEPTION 'batch_size must be at least 1' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- One drain per repository at a time; transaction-scoped, so it can never leak.
    IF NOT pg_try_advisory_xact_lock(hashtextextended('aveloxis.drain', target)) THEN
        RETURN 'busy';
    END IF;
    PERFORM aveloxis_ops.drain_scratch();
    identity := aveloxis_ops.identity_platform_of(target);

    FOREACH ent IN ARRAY aveloxis_ops.drain_entities() LOOP
        -- Rows left pending earlier in this run are not read again until the next run.
        SELECT c.last_staging_id INTO after_id FROM aveloxis_ops.drain_run_counts c
        WHERE c.repo_id = target AND c.run_id = run AND c.entity = ent;
        DELETE FROM pg_temp.drain_rows;
        -- Each payload is de-toasted, sanitized and parsed exactly once (sanitized_jsonb:
        -- one copy of the text, not three): this is the floor every drain pays. Only a
        -- batch holding an unparsable payload takes the slower path that finds it and
        -- says why.
        BEGIN
            INSERT INTO pg_temp.drain_rows (staging_id, platform_id, forge, context, doc)
            SELECT st.staging_id, identity, st.platform_id, st.context, aveloxis_ops.sanitized_jsonb(st.payload)
            FROM aveloxis_ops.staging st
            WHERE st.repo_id = target AND st.entity = ent AND st.drained_at IS NULL
              AND st.staging_id > coalesce(after_id, 0)
            ORDER BY st.staging_id LIMIT batch_size;
        EXCEPTION WHEN OTHERS THEN
            INSERT INTO pg_temp.drain_rows (staging_id, platform_id, forge, context, doc, parse_error)
            SELECT st.staging_id, identity, st.platform_id, st.context, p.doc, 'payload is not valid JSON: ' || p.err
            FROM (SELECT st.staging_id, st.platform_id, st.context, st.payload FROM aveloxis_ops.staging st
                  WHERE st.repo_id = target AND st.entity = ent AND st.drained_at IS NULL
                    AND st.staging_id > coalesce(after_id, 0)
                  ORDER BY st.staging_id LIMIT batch_size) st,
                 LATERAL aveloxis_ops.parse_payload(st.payload) p;
        END;
        SELECT count(*) INTO taken FROM pg_temp.drain_rows;
        CONTINUE WHEN taken = 0;
        ANALYZE pg_temp.drain_rows;

        INSERT INTO aveloxis_ops.drain_run_counts AS c (repo_id, run_id, entity, last_staging_id)
        SELECT target, run, ent, max(staging_id) FROM pg_temp.drain_rows
        ON CONFLICT ON CONSTRAINT drain_run_counts_pkey DO UPDATE SET last_staging_id = EXCLUDED.last_staging_id;

        -- Every entity's payload is one JSON object.
        UPDATE pg_temp.drain_rows r
        SET parse_error = format('payload is a JSON %s, not an object', jsonb_typeof(r.doc)), doc = NULL
        WHERE jsonb_typeof(r.doc) <> 'object';
        PERFORM aveloxis_ops.null_unfit_fields(target, run, ent);
        rejected := 0;
        FOR row_id, err_text IN SELECT staging_id, parse_error FROM pg_temp.drain_rows WHERE parse_error IS NOT NULL LOOP
            rejected := rejected + aveloxis_ops.reject(target, ARRAY[row_id], ent || ': ' || err_text, '22P02');
        END LOOP;

        -- GitHub and GitLab payloads each have their mapper. A forge payload of any other
        -- platform waits, counted, until a mapper for it ships; it is never read as if it
        -- were GitHub's. Git history is the agent's own envelope, the same for every platform.
        UPDATE pg_temp.drain_rows r SET pending = true
        WHERE r.doc IS NOT NULL AND r.forge NOT IN (1, 2) AND ent NOT IN ('commit', 'commit_removed', 'repo_files');
        GET DIAGNOSTICS unmapped = ROW_COUNT;

        BEGIN
            batch := aveloxis_ops.drain_entity(ent, target, NULL);
            UPDATE aveloxis_ops.staging s SET drained_at = now()
            FROM pg_temp.drain_rows r
            WHERE s.repo_id = target AND r.staging_id = s.staging_id AND r.doc IS NOT NULL AND NOT r.pending;
            -- Rows put back by requeue_rejects() that now drained are no longer rejects.
            DELETE FROM aveloxis_ops.staging_rejects j
            USING pg_temp.drain_rows r
            WHERE j.repo_id = target AND j.staging_id = r.staging_id AND r.doc IS NOT NULL AND NOT r.pending;
        EXCEPTION WHEN OTHERS THEN
            -- Something in the batch cannot be stored: redo it row by row, so only that
            -- row is rejected and the others are stored.
            batch := ROW(0, 0, 0, 0, 0)::aveloxis_ops.drain_counts;
            FOR row_id IN SELECT staging_id FROM pg_temp.drain_rows WHERE doc IS NOT NULL AND NOT pending
                          ORDER BY staging_id LOOP
                BEGIN
                    one := aveloxis_ops.drain_entity(ent, target, row_id);
                    IF one.pending = 0 THEN
                        UPDATE aveloxis_ops.staging s SET drained_at = now()
                        WHERE s.repo_id = target AND s.staging_id = row_id;
                        DELETE FROM aveloxis_ops.staging_rejects j WHERE j.repo_id = target AND j.staging_id = row_id;
                    END IF;
                    batch.inserted := batch.inserted + one.inserted;
                    batch.updated := batch.updated + one.updated;
                    batch.unchanged := batch.unchanged + one.unchanged;
                    batch.skipped := batch.skipped + one.skipped;
                    batch.pending := batch.pending + one.pending;
                EXCEPTION WHEN OTHERS THEN
                    GET STACKED DIAGNOSTICS err_text = MESSAGE_TEXT, err_state = RETURNED_SQLSTATE;
                    rejected := rejected + aveloxis_ops.reject(target, ARRAY[row_id], ent || ': ' || err_text, err_state);
                END;
            END LOOP;
        END;
        batch.pending := batch.pending + unmapped;
        PERFORM aveloxis_ops.add_counts(target, run, ent, batch, rejected);
        RETURN 'more';
    END LOOP;
    -- Everything is in: the commit aggregates the new commits made stale are refreshed.
    PERFORM aveloxis_ops.refresh_commit_aggregates(target);
    RETURN 'done';
END
$$;

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

-- The agent's and analysts' grants name the new functions.
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
        aveloxis.contributor_activity(uuid)
    TO aveloxis_analyst;

    -- aveloxis_agent: the agent API only; no direct access to aveloxis_data.
    GRANT USAGE ON SCHEMA aveloxis TO aveloxis_agent;
    GRANT EXECUTE ON FUNCTION
        aveloxis.version(),
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
        aveloxis.record_commit_author_misses(text[], text[], text[], text[])
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
