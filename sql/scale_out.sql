-- Scale-out (docs/scaling.md): how every table of the extension would be held by Citus,
-- and the one call that distributes them where Citus is installed.
--
--   distributed  tables carrying repo_id, hash-distributed by it in one colocation group:
--                every key and every foreign key between them includes repo_id
--                (checked in CI by tests/tests/scale_lint.rs), so a repository's rows
--                sit on one node and the per-repository drain runs there;
--   reference    small dimensions every node needs whole (platforms, contributors,
--                repos and their groups, settings of forge hosts): facts keep their
--                foreign keys to them;
--   local        the queue, leases, token budgets, settings and refresh bookkeeping stay
--                on the coordinator: claims need multi-row FOR UPDATE SKIP LOCKED and
--                global advisory locks, which Citus supports only on local tables.

-- The plan, in the order Citus needs (a table after every table it references).
CREATE FUNCTION aveloxis.distribution_plan()
RETURNS TABLE (step integer, table_name regclass, kind text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE tables AS (
        SELECT c.oid AS rel,
               CASE WHEN c.oid = ANY (ARRAY['aveloxis_ops.jobs', 'aveloxis_ops.job_runs',
                                            'aveloxis_ops.setting_defaults', 'aveloxis_ops.setting_overrides',
                                            'aveloxis_ops.token_budgets', 'aveloxis_ops.view_refresh_runs',
                                            'aveloxis_ops.view_refreshes',
                                            'aveloxis_ops.source_breakers', 'aveloxis_ops.identity_runs',
                                            'aveloxis_ops.identity_staging']::regclass[]) THEN 'local'
                    -- Globally unique URLs and forge ids: only a reference table can enforce them.
                    WHEN c.oid = ANY (ARRAY['aveloxis_data.repos', 'aveloxis_data.repo_url_history']::regclass[])
                        THEN 'reference'
                    WHEN EXISTS (SELECT FROM pg_attribute a
                                 WHERE a.attrelid = c.oid AND a.attname = 'repo_id' AND NOT a.attisdropped)
                        THEN 'distributed'
                    ELSE 'reference' END AS kind
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname IN ('aveloxis', 'aveloxis_ops', 'aveloxis_data') AND c.relkind IN ('r', 'p')
          AND NOT c.relispartition
    ), edges AS (
        SELECT DISTINCT con.conrelid AS child, con.confrelid AS parent
        FROM pg_constraint con JOIN tables t ON t.rel = con.confrelid
        WHERE con.contype = 'f' AND con.conrelid <> con.confrelid
    ), depth AS (
        SELECT t.rel, 0 AS d FROM tables t
        UNION ALL
        SELECT e.child, depth.d + 1 FROM depth JOIN edges e ON e.parent = depth.rel WHERE depth.d < 32
    )
    -- Staging leads the distributed tables (it references none of them): the colocation
    -- group is named after it.
    SELECT (row_number() OVER (ORDER BY CASE t.kind WHEN 'reference' THEN 0 WHEN 'distributed' THEN 1 ELSE 2 END,
                                         t.rel <> 'aveloxis_ops.staging'::regclass, max(depth.d),
                                         t.rel::regclass::text))::integer,
           t.rel::regclass, t.kind
    FROM tables t JOIN depth ON depth.rel = t.rel
    GROUP BY t.rel, t.kind
$$;
COMMENT ON FUNCTION aveloxis.distribution_plan() IS
    'How Citus would hold each table of pg_aveloxis (distributed by repo_id, reference, or coordinator-local), in the order aveloxis.distribute() takes them';

-- Distributes the extension's tables on a Citus cluster (run once on the coordinator, in
-- its own transaction, after CREATE EXTENSION pg_aveloxis on every node and
-- citus_add_node for the workers). dry_run => true prints the statements and runs none:
-- that works without Citus. Tables Citus already holds are left as they are, so it can
-- be run again after an upgrade adds a table.
CREATE FUNCTION aveloxis.distribute(shard_count integer DEFAULT 32, dry_run boolean DEFAULT false)
RETURNS TABLE (step integer, statement text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    plan      record;
    anchor    regclass;
    citus     boolean := EXISTS (SELECT FROM pg_extension WHERE extname = 'citus');
    held      boolean;
BEGIN
    IF shard_count IS NULL OR shard_count < 1 THEN
        RAISE EXCEPTION 'shard_count must be at least 1' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT dry_run AND NOT citus THEN
        RAISE EXCEPTION 'the citus extension is not installed in database %', current_database()
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Install Citus 13.x for PostgreSQL 15 on every node (packages from '
                         'https://install.citusdata.com), add citus first in shared_preload_libraries, '
                         'CREATE EXTENSION citus, add the workers with citus_add_node(), then call '
                         'aveloxis.distribute() again. aveloxis.distribute(dry_run => true) shows the plan.';
    END IF;
    FOR plan IN SELECT p.step, p.table_name, p.kind FROM aveloxis.distribution_plan() p
                WHERE p.kind <> 'local' ORDER BY p.step LOOP
        held := false;
        IF citus THEN
            -- Citus's catalog exists only with Citus (a composed statement: nothing to check before).
            EXECUTE format('SELECT EXISTS (SELECT FROM %s WHERE logicalrelid = $1)', 'pg_catalog.pg_dist_partition')
                INTO held USING plan.table_name;
        END IF;
        IF plan.kind = 'reference' THEN
            statement := format('SELECT create_reference_table(%L)', plan.table_name::text);
        ELSIF anchor IS NULL THEN
            -- The first distributed table sets the colocation group and the shard count
            -- (identity columns forbid changing it later: docs/scaling.md).
            statement := format('SELECT create_distributed_table(%L, %L, shard_count := %s, colocate_with := %L)',
                                plan.table_name::text, 'repo_id', shard_count, 'none');
            anchor := plan.table_name;
        ELSE
            statement := format('SELECT create_distributed_table(%L, %L, colocate_with := %L)',
                                plan.table_name::text, 'repo_id', anchor::text);
        END IF;
        step := plan.step;
        IF held THEN
            statement := '-- already held by Citus: ' || statement;
        ELSIF NOT dry_run THEN
            EXECUTE statement;
        END IF;
        RETURN NEXT;
    END LOOP;
    -- The drain is not delegated to the workers (create_distributed_function): it mints
    -- issue and pull request ids, which must stay below 2^31 for 8Knot, and a worker's
    -- sequence range starts at 2^48. Called on the coordinator, its statements are still
    -- single-shard queries routed to the repository's node (docs/scaling.md).
END
$$;
COMMENT ON FUNCTION aveloxis.distribute(integer, boolean) IS
    'Distributes pg_aveloxis on a Citus cluster in dependency order (dry_run => true: show the statements)';
