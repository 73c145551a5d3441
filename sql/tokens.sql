-- Shared token budgets: several agents using one forge token never jointly spend past
-- what the forge last reported.
--
--   aveloxis.token_acquire(fingerprints, bucket, cost)   which token to use now, or how long to wait
--   aveloxis.token_settle(fingerprint, bucket, remaining, reset_at)   from the response headers
--   aveloxis.token_release(fingerprint, bucket)          a response without rate-limit headers
--   aveloxis.token_invalidate(fingerprint, reason)       after a 401
--   aveloxis.token_status()                              the budgets, for operators
--
-- Tokens are never stored: agents name them by a fingerprint (hex of a hash of the token,
-- at least 16 digits). A grant is outstanding until its response is settled; the budget
-- available is what the forge reported, minus outstanding grants, minus the reserve.
-- A token whose budget is unknown (never reported, or its window has reset) gets one
-- probe request at a time, whose response reports the real budget.

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
-- response at all). The request is taken as spent: a known budget goes down by its cost.
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
    UPDATE aveloxis_ops.token_budgets t
    SET outstanding = greatest(t.outstanding - coalesce(cost, 1), 0),
        reported_remaining = CASE WHEN t.reported_remaining IS NOT NULL
                                  THEN greatest(t.reported_remaining - coalesce(cost, 1), 0) END
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
