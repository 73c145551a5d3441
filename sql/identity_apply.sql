-- What an identity run's answers do (sql/identity_tasks.sql leases the runs): profiles
-- through the drain's user resolution, search findings linked or merged, the chain's free
-- steps settled without the API, cooldowns stamped, canonical emails filled.

-- The free steps of the email chain for a search candidate: 'noreply' (the address names
-- an account), 'database' (another person's row has this email: the same person, R5),
-- else 'unknown'.
CREATE FUNCTION aveloxis_ops.search_chain_step(candidate uuid, email text,
                                               OUT step text, OUT other uuid, OUT platform_id smallint,
                                               OUT user_id bigint, OUT login text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    address text := lower(btrim(email));
    n record;
BEGIN
    SELECT * INTO n FROM aveloxis_ops.noreply_account(address);
    IF FOUND THEN
        step := 'noreply';
        platform_id := n.platform_id;
        user_id := n.user_id;
        login := n.login;
        RETURN;
    END IF;
    SELECT x.cntrb_id INTO other FROM (
        SELECT c.cntrb_id, c.gh_user_id IS NULL AND c.gl_id IS NULL AS email_only, c.data_collection_date
        FROM aveloxis_data.contributors c
        WHERE c.cntrb_deleted = 0 AND c.cntrb_id <> candidate
          AND (lower(c.cntrb_email) = address OR lower(c.cntrb_canonical) = address)
        UNION ALL
        SELECT c.cntrb_id, c.gh_user_id IS NULL AND c.gl_id IS NULL, c.data_collection_date
        FROM aveloxis_data.contributors_aliases a JOIN aveloxis_data.contributors c ON c.cntrb_id = a.cntrb_id
        WHERE lower(a.alias_email) = address AND c.cntrb_id <> candidate
    ) x
    WHERE aveloxis.person_of(x.cntrb_id) <> aveloxis.person_of(candidate)
    ORDER BY x.email_only, x.data_collection_date, x.cntrb_id
    LIMIT 1;
    step := CASE WHEN other IS NOT NULL THEN 'database' ELSE 'unknown' END;
END
$$;

-- Applies a run: the staged answers, then the cooldown stamps of the contributors
-- attempted (NULL: those with staged answers, and for search those the database settles),
-- and closes the run. Returns what it did.
CREATE FUNCTION aveloxis_ops.identity_apply(run aveloxis_ops.identity_runs, attempted uuid[], outcome text)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    summary jsonb;
    tried uuid[];
BEGIN
    IF run.task = 'enrich' THEN
        summary := aveloxis_ops.apply_profiles(run);
    ELSE
        summary := aveloxis_ops.apply_searches(run);
    END IF;
    tried := ARRAY(SELECT DISTINCT c
                   FROM unnest(coalesce(attempted, '{}')
                               || ARRAY(SELECT s::uuid FROM jsonb_array_elements_text(summary -> 'settled') s)) c
                   WHERE c = ANY (run.contributors));
    IF run.task = 'enrich' THEN
        UPDATE aveloxis_data.contributors c SET cntrb_last_enriched_at = now() WHERE c.cntrb_id = ANY (tried);
    ELSE
        UPDATE aveloxis_data.contributors c SET cntrb_last_search_attempted_at = now() WHERE c.cntrb_id = ANY (tried);
    END IF;
    PERFORM aveloxis_ops.fill_canonical(ARRAY(SELECT DISTINCT aveloxis.person_of(c) FROM unnest(tried) c));
    summary := (summary - 'settled') || jsonb_build_object('batch', cardinality(run.contributors),
                                                         'attempted', cardinality(tried));
    UPDATE aveloxis_ops.identity_runs r SET finished_at = aveloxis_ops.clock(), outcome = identity_apply.outcome,
                                            result = summary
    WHERE r.run_id = run.run_id;
    RETURN summary;
END
$$;

-- The canonical email of active rows that have none (reference 003, "Why is
-- cntrb_canonical empty?"): the row's own email when it is a person's address (not a
-- noreply, bot or service one), else its first alias that is. Returns the rows filled.
CREATE FUNCTION aveloxis_ops.fill_canonical(ids uuid[])
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH filled AS (
        UPDATE aveloxis_data.contributors c
        SET cntrb_canonical = coalesce(
                CASE WHEN aveloxis_ops.junk_email_reason(c.cntrb_email) IS NULL
                          AND NOT EXISTS (SELECT FROM aveloxis_ops.noreply_account(c.cntrb_email))
                     THEN lower(btrim(c.cntrb_email)) END,
                (SELECT min(lower(a.alias_email)) FROM aveloxis_data.contributors_aliases a
                 WHERE a.cntrb_id = c.cntrb_id AND aveloxis_ops.junk_email_reason(a.alias_email) IS NULL
                   AND NOT EXISTS (SELECT FROM aveloxis_ops.noreply_account(a.alias_email))))
        WHERE c.cntrb_id = ANY (ids) AND c.cntrb_canonical IS NULL AND c.cntrb_deleted = 0
          AND (c.cntrb_email IS NOT NULL
               OR EXISTS (SELECT FROM aveloxis_data.contributors_aliases a WHERE a.cntrb_id = c.cntrb_id))
        RETURNING 1
    )
    SELECT count(*) FROM filled
$$;

-- Enrichment answers: a 200 whose account is the one leased goes through the drain's user
-- resolution (collect_users, resolve_users: R1-R4, renames); a 404 is a miss; anything
-- else unusable is kept with its error. Every contributor with an answer counts as tried.
CREATE FUNCTION aveloxis_ops.apply_profiles(run aveloxis_ops.identity_runs)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s record;
    doc jsonb;
    problem text;
    expected bigint;
    profiles bigint := 0;
    missing bigint := 0;
    unusable bigint := 0;
    renamed bigint;
    resolved record;
    before jsonb;
BEGIN
    PERFORM aveloxis_ops.drain_scratch();
    DELETE FROM pg_temp.drain_user_refs;
    DELETE FROM pg_temp.drain_users;
    FOR s IN SELECT * FROM aveloxis_ops.identity_staging x WHERE x.run_id = run.run_id AND x.applied_at IS NULL
             ORDER BY x.item LOOP
        problem := NULL;
        doc := NULL;
        SELECT i.platform_user_id INTO expected FROM aveloxis_data.contributor_identities i
        WHERE i.cntrb_id = s.cntrb_id AND i.platform_id = run.platform_id
        ORDER BY i.last_seen_at DESC, i.platform_user_id LIMIT 1;
        IF s.http_status = 200 THEN
            BEGIN
                doc := s.payload::jsonb;
            EXCEPTION WHEN OTHERS THEN
                problem := 'the answer is not JSON: ' || SQLERRM;
            END;
            IF problem IS NULL AND aveloxis_ops.user_id_of(doc) IS NULL THEN
                problem := 'the answer is not a user object with a numeric id';
            ELSIF problem IS NULL AND aveloxis_ops.user_id_of(doc) IS DISTINCT FROM expected THEN
                problem := format('the answer is account %s, not the leased account %s', aveloxis_ops.user_id_of(doc), expected);
            END IF;
        ELSIF s.http_status IN (404, 410) THEN
            missing := missing + 1;
        ELSE
            problem := format('HTTP %s', s.http_status);
        END IF;
        IF problem IS NOT NULL THEN
            unusable := unusable + 1;
        ELSIF doc IS NOT NULL THEN
            INSERT INTO pg_temp.drain_user_refs (platform_id, staging_id, u) VALUES (run.platform_id, s.item, doc);
            profiles := profiles + 1;
        END IF;
        UPDATE aveloxis_ops.identity_staging x SET applied_at = now(), error = problem
        WHERE x.run_id = s.run_id AND x.item = s.item;
    END LOOP;
    -- Logins before, to count renames.
    SELECT coalesce(jsonb_object_agg(i.platform_user_id::text, i.login), '{}') INTO before
    FROM aveloxis_data.contributor_identities i
    WHERE i.platform_id = run.platform_id
      AND i.platform_user_id IN (SELECT aveloxis_ops.user_id_of(r.u) FROM pg_temp.drain_user_refs r);
    PERFORM aveloxis_ops.collect_users();
    resolved := aveloxis_ops.resolve_users();
    SELECT count(*) INTO renamed FROM pg_temp.drain_users d
    WHERE before ? d.user_id::text AND (before ->> d.user_id::text) IS DISTINCT FROM d.login;
    RETURN jsonb_build_object(
        'profiles', profiles, 'not_found', missing, 'unusable', unusable, 'renamed', renamed,
        'contributors_updated', resolved.updated,
        'settled', (SELECT coalesce(array_agg(DISTINCT x.cntrb_id), '{}') FROM aveloxis_ops.identity_staging x
                    WHERE x.run_id = run.run_id));
END
$$;

-- Settles one search-resolve finding: the account (platform, user id, login) is the
-- candidate's. Unknown account: linked to the candidate (R11: cntrb_id and cntrb_login
-- untouched). Held by another person's row: the two are merged (winner by R1, else the
-- older row), logged with why. Returns 'linked', 'merged' or 'already'.
CREATE FUNCTION aveloxis_ops.settle_search_hit(candidate uuid, platform smallint, user_id bigint, login text,
                                               why text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    me uuid := aveloxis.person_of(candidate);
    holder uuid;
    winner uuid;
BEGIN
    IF user_id IS NULL THEN
        SELECT i.cntrb_id INTO holder FROM aveloxis_data.contributor_identities i
        WHERE i.platform_id = platform AND lower(i.login) = lower(settle_search_hit.login);
        IF holder IS NULL THEN
            RETURN 'unknown';
        END IF;
    ELSE
        SELECT i.cntrb_id INTO holder FROM aveloxis_data.contributor_identities i
        WHERE i.platform_id = platform AND i.platform_user_id = user_id;
    END IF;
    IF holder IS NULL THEN
        PERFORM aveloxis.link_contributor(me, platform, user_id, login);
        RETURN 'linked';
    END IF;
    holder := aveloxis.person_of(holder);
    IF holder = me THEN
        RETURN 'already';
    END IF;
    winner := aveloxis_ops.merge_winner(holder, me);
    PERFORM aveloxis_ops.merge_rows(winner, CASE WHEN winner = holder THEN me ELSE holder END, why, 'search_resolve');
    RETURN 'merged';
END
$$;

-- Search-resolve answers and the chain's free steps, per contributor of the batch: the
-- noreply account or the other row the database knows (settled without the API), else
-- the first staged search answer naming an account (user search before commit search).
CREATE FUNCTION aveloxis_ops.apply_searches(run aveloxis_ops.identity_runs)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c record;
    s record;
    chain record;
    doc jsonb;
    account jsonb;
    outcome text;
    counts jsonb := '{"linked": 0, "merged": 0, "already": 0, "not_found": 0, "unusable": 0}';
    settled uuid[] := '{}';
    github smallint := run.platform_id;
    me uuid;
    them uuid;
    winner uuid;
BEGIN
    FOR c IN SELECT k.cntrb_id, k.cntrb_email, k.cntrb_deleted
             FROM unnest(run.contributors) AS b(id) JOIN aveloxis_data.contributors k ON k.cntrb_id = b.id LOOP
        outcome := NULL;
        chain := aveloxis_ops.search_chain_step(c.cntrb_id, c.cntrb_email);
        IF chain.step = 'noreply' THEN
            outcome := aveloxis_ops.settle_search_hit(c.cntrb_id, chain.platform_id, chain.user_id, chain.login,
                                                      format('search-resolve: %s is a noreply address of %s', c.cntrb_email, chain.login));
            outcome := CASE WHEN outcome = 'unknown' THEN 'not_found' ELSE outcome END;
            settled := settled || c.cntrb_id;
        ELSIF chain.step = 'database' THEN
            them := aveloxis.person_of(chain.other);
            me := aveloxis.person_of(c.cntrb_id);
            winner := aveloxis_ops.merge_winner(them, me);
            PERFORM aveloxis_ops.merge_rows(winner, CASE WHEN winner = them THEN me ELSE them END,
                                            format('search-resolve: %s is also the email of %s', c.cntrb_email, chain.other),
                                            'search_resolve');
            outcome := 'merged';
            settled := settled || c.cntrb_id;
        ELSE
            FOR s IN SELECT * FROM aveloxis_ops.identity_staging x
                     WHERE x.run_id = run.run_id AND x.cntrb_id = c.cntrb_id AND x.applied_at IS NULL
                     ORDER BY x.step = 'commit_search', x.item LOOP
                settled := settled || c.cntrb_id;
                account := NULL;
                doc := NULL;
                IF s.http_status = 200 THEN
                    BEGIN
                        doc := s.payload::jsonb;
                    EXCEPTION WHEN OTHERS THEN
                        doc := NULL;
                    END;
                END IF;
                account := CASE s.step WHEN 'user_search' THEN doc -> 'items' -> 0
                                       ELSE doc -> 'items' -> 0 -> 'author' END;
                IF outcome IS NULL AND aveloxis_ops.user_id_of(account) IS NOT NULL
                   AND jsonb_typeof(account -> 'login') = 'string' THEN
                    outcome := aveloxis_ops.settle_search_hit(
                        c.cntrb_id, github, aveloxis_ops.user_id_of(account), account ->> 'login',
                        format('search-resolve: GitHub''s %s found %s as account %s (%s)',
                               replace(s.step, '_', ' '), c.cntrb_email, account ->> 'id', account ->> 'login'));
                END IF;
                UPDATE aveloxis_ops.identity_staging x
                SET applied_at = now(),
                    error = CASE WHEN s.http_status = 200 AND doc IS NULL THEN 'the answer is not JSON'
                                 WHEN s.http_status NOT IN (200, 404, 422) THEN format('HTTP %s', s.http_status) END
                WHERE x.run_id = s.run_id AND x.item = s.item;
                IF (s.http_status = 200 AND doc IS NULL) OR s.http_status NOT IN (200, 404, 422) THEN
                    counts := jsonb_set(counts, '{unusable}', to_jsonb((counts ->> 'unusable')::bigint + 1));
                END IF;
            END LOOP;
            IF outcome IS NULL AND c.cntrb_id = ANY (settled) THEN
                outcome := 'not_found';
            END IF;
        END IF;
        IF outcome IS NOT NULL THEN
            counts := jsonb_set(counts, ARRAY[outcome], to_jsonb(coalesce((counts ->> outcome)::bigint, 0) + 1));
        END IF;
    END LOOP;
    RETURN counts || jsonb_build_object('settled', settled);
END
$$;

