//! The catalog lint of reference scale-out.md §2.2 (issue 16): the Citus rules a plain
//! PostgreSQL 15 can check on the installed schema. Tables are classified as Citus would
//! hold them (distributed by `repo_id`; reference; coordinator-local: the queue, leases,
//! token budgets, settings and refresh bookkeeping, which need `FOR UPDATE SKIP LOCKED`
//! and global advisory locks). L7 is dropped (Settled §6: materialized views may read
//! distributed tables); L15 is L1.
//!
//! Each rule must return zero rows. Until the keys are migrated (issue 16), each rule's
//! known findings are listed below, exactly: a new finding (a table added against the
//! rule) fails the test, and so does a listed finding that disappeared (the list must
//! shrink with the schema), so the debt is always the list in this file.

use std::collections::BTreeSet;

use harness::sqlx;
use harness::TestDb;

const PLAN: &str = r#"CREATE TEMP TABLE scale_plan AS
SELECT c.oid::regclass AS rel,
       CASE WHEN c.oid = ANY (ARRAY['aveloxis_ops.jobs', 'aveloxis_ops.job_runs', 'aveloxis_ops.setting_defaults',
                                    'aveloxis_ops.setting_overrides', 'aveloxis_ops.token_budgets',
                                    'aveloxis_ops.view_refresh_runs', 'aveloxis_ops.view_refreshes',
                                    'aveloxis_ops.source_breakers', 'aveloxis_ops.identity_runs',
                                    'aveloxis_ops.identity_staging']::regclass[])
                THEN 'local'
            WHEN c.oid = ANY (ARRAY['aveloxis_data.repos', 'aveloxis_data.repo_url_history']::regclass[]) THEN 'reference'
            WHEN EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'repo_id'
                         AND NOT a.attisdropped) THEN 'distributed'
            ELSE 'reference' END AS kind
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname IN ('aveloxis', 'aveloxis_ops', 'aveloxis_data') AND c.relkind IN ('r', 'p') AND NOT c.relispartition"#;

struct Rule {
    name: &'static str,
    what: &'static str,
    sql: &'static str,
    /// Findings accepted for now, each as its columns joined by `|`, with why.
    known: &'static [&'static str],
}

const RULES: &[Rule] = &[
    // must stay empty (0.10.0 moved every key of a distributed table onto (repo_id, ...))
    Rule {
        name: "L1",
        what: "every PK/UNIQUE key of a distributed table has repo_id among its key columns",
        sql: r#"SELECT p.rel::text, i.indexrelid::regclass::text
FROM scale_plan p JOIN pg_index i ON i.indrelid = p.rel
JOIN pg_attribute a ON a.attrelid = p.rel AND a.attname = 'repo_id'
WHERE p.kind = 'distributed' AND (i.indisunique OR i.indisexclusion)
  AND NOT a.attnum = ANY ((i.indkey::int2[])[0:i.indnkeyatts - 1]) ORDER BY 1, 2"#,
        known: &[],
    },
    // must stay empty (0.10.0: child foreign keys pair repo_id with repo_id)
    Rule {
        name: "L2",
        what: "a foreign key between two distributed tables pairs repo_id with repo_id",
        sql: r#"SELECT con.conname::text, con.conrelid::regclass::text, con.confrelid::regclass::text
FROM pg_constraint con
JOIN scale_plan s ON s.rel = con.conrelid  AND s.kind = 'distributed'
JOIN scale_plan d ON d.rel = con.confrelid AND d.kind = 'distributed'
JOIN pg_attribute sa ON sa.attrelid = con.conrelid  AND sa.attname = 'repo_id'
JOIN pg_attribute da ON da.attrelid = con.confrelid AND da.attname = 'repo_id'
WHERE con.contype = 'f'
  AND NOT EXISTS (SELECT FROM generate_subscripts(con.conkey, 1) k
                  WHERE con.conkey[k] = sa.attnum AND con.confkey[k] = da.attnum) ORDER BY 2, 1"#,
        known: &[],
    },
    // must stay empty
    Rule {
        name: "L3",
        what: "a foreign key over repo_id has no ON DELETE SET NULL/DEFAULT, no ON UPDATE CASCADE/SET NULL/DEFAULT",
        sql: r#"SELECT con.conname::text, con.conrelid::regclass::text, con.confdeltype::text, con.confupdtype::text
FROM pg_constraint con JOIN scale_plan s ON s.rel = con.conrelid AND s.kind = 'distributed'
JOIN pg_attribute sa ON sa.attrelid = con.conrelid AND sa.attname = 'repo_id'
WHERE con.contype = 'f' AND sa.attnum = ANY (con.conkey)
  AND (con.confdeltype IN ('n','d') OR con.confupdtype IN ('c','n','d')) ORDER BY 2, 1"#,
        known: &[],
    },
    // must stay empty (0.10.0: drain run counts carry repo_id)
    Rule {
        name: "L4",
        what:
            "no foreign key from a reference or local table to a distributed one, nor from a distributed to a local one",
        sql: r#"SELECT con.conname::text, con.conrelid::regclass::text, s.kind, d.kind
FROM pg_constraint con
JOIN scale_plan s ON s.rel = con.conrelid JOIN scale_plan d ON d.rel = con.confrelid
WHERE con.contype = 'f' AND (
      (s.kind IN ('reference','local') AND d.kind = 'distributed')
   OR (s.kind = 'distributed' AND d.kind = 'local')
   OR (s.kind = 'reference' AND d.kind = 'local'
       AND (con.confdeltype NOT IN ('a','r') OR con.confupdtype NOT IN ('a','r')))) ORDER BY 2, 1"#,
        known: &[],
    },
    // must stay empty
    Rule {
        name: "L5",
        what: "repo_id is bigint NOT NULL in every distributed table",
        sql: r#"SELECT p.rel::text FROM scale_plan p
LEFT JOIN pg_attribute a ON a.attrelid = p.rel AND a.attname = 'repo_id' AND NOT a.attisdropped
WHERE p.kind = 'distributed' AND (a.attnum IS NULL OR a.atttypid <> 'int8'::regtype OR NOT a.attnotnull) ORDER BY 1"#,
        known: &[],
    },
    // the daily activity triggers (0.8.0): Citus runs them only with citus.enable_unsafe_triggers; to become drain-side rollups
    Rule {
        name: "L8",
        what: "no user trigger on a distributed or reference table",
        sql: r#"SELECT tg.tgrelid::regclass::text, tg.tgname::text FROM pg_trigger tg JOIN scale_plan p ON p.rel = tg.tgrelid
WHERE NOT tg.tgisinternal AND p.kind IN ('distributed','reference') ORDER BY 1, 2"#,
        known: &[
            "aveloxis_data.commits|commits_activity_del",
            "aveloxis_data.commits|commits_activity_ins",
            "aveloxis_data.commits|commits_activity_upd",
            "aveloxis_data.issues|issues_activity_del",
            "aveloxis_data.issues|issues_activity_ins",
            "aveloxis_data.issues|issues_activity_upd",
            "aveloxis_data.messages|messages_activity_del",
            "aveloxis_data.messages|messages_activity_ins",
            "aveloxis_data.messages|messages_activity_upd",
            "aveloxis_data.pull_request_reviews|reviews_activity_del",
            "aveloxis_data.pull_request_reviews|reviews_activity_ins",
            "aveloxis_data.pull_request_reviews|reviews_activity_upd",
            "aveloxis_data.pull_requests|pull_requests_activity_del",
            "aveloxis_data.pull_requests|pull_requests_activity_ins",
            "aveloxis_data.pull_requests|pull_requests_activity_upd",
        ],
    },
    // must stay empty
    Rule {
        name: "L9",
        what: "no rule on a distributed or reference table",
        sql: r#"SELECT r.ev_class::regclass::text, r.rulename::text FROM pg_rewrite r JOIN scale_plan p ON p.rel = r.ev_class
WHERE r.rulename <> '_RETURN' AND p.kind IN ('distributed','reference')"#,
        known: &[],
    },
    // coordinator-minted ids kept below 2^31 for 8Knot (scale-out.md §1.4, Settled §4): an accepted finding
    Rule {
        name: "L10",
        what: "identity sequences of Citus tables are bigint with the full range (workers take 2^48-wide ranges)",
        sql: r#"SELECT p.rel::text, a.attname::text, s.seqtypid::regtype::text, s.seqmax
FROM scale_plan p
JOIN pg_depend dep ON dep.refclassid = 'pg_class'::regclass AND dep.refobjid = p.rel
                  AND dep.classid = 'pg_class'::regclass AND dep.deptype IN ('a','i')
JOIN pg_sequence s ON s.seqrelid = dep.objid
JOIN pg_attribute a ON a.attrelid = p.rel AND a.attnum = dep.refobjsubid
WHERE p.kind IN ('distributed','reference')
  AND (s.seqtypid <> 'int8'::regtype OR s.seqmax < (1::bigint << 48)) ORDER BY 1"#,
        known: &[
            "aveloxis_data.issues|issue_id|bigint|2147483647",
            "aveloxis_data.pull_requests|pull_request_id|bigint|2147483647",
            "aveloxis_data.repo_groups|repo_group_id|bigint|2147483647",
            "aveloxis_data.repos|repo_id|bigint|2147483647",
        ],
    },
    // must stay empty (0.10.0: repo_info_history has its own key)
    Rule {
        name: "L11",
        what: "every distributed or reference table has a primary key or replica identity",
        sql: r#"SELECT p.rel::text FROM scale_plan p JOIN pg_class c ON c.oid = p.rel
WHERE p.kind IN ('distributed','reference') AND c.relreplident <> 'f'
  AND NOT EXISTS (SELECT FROM pg_index i WHERE i.indrelid = p.rel AND (i.indisprimary OR i.indisreplident)) ORDER BY 1"#,
        known: &[],
    },
    // must stay empty
    Rule {
        name: "L12",
        what: "no multi-level partitioning of a distributed table",
        sql: r#"SELECT i1.inhparent::regclass::text FROM pg_inherits i1 JOIN pg_inherits i2 ON i2.inhparent = i1.inhrelid
JOIN scale_plan p ON p.rel = i1.inhparent WHERE p.kind = 'distributed'"#,
        known: &[],
    },
    // procedures (CALL cannot take SET search_path with COMMIT inside) and IMMUTABLE SQL helpers kept inlinable (a SET clause stops inlining; json_fits cost 4 s of a 100,000-envelope drain as a call)
    Rule {
        name: "L13",
        what: "every SQL and PL/pgSQL routine pins search_path (not propagated to Citus workers)",
        sql: r#"SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
JOIN pg_language l ON l.oid = p.prolang
WHERE n.nspname IN ('aveloxis','aveloxis_ops') AND l.lanname IN ('sql','plpgsql')
  AND NOT EXISTS (SELECT FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%') ORDER BY 1"#,
        known: &[
            "aveloxis.drain(bigint,integer)",
            "aveloxis.drain_all(integer)",
            "aveloxis.refresh_views(boolean)",
            "aveloxis.retry_rejects(bigint,integer)",
            "aveloxis_ops.community_file(text[],text)",
            "aveloxis_ops.drain_entities()",
            "aveloxis_ops.drain_fields(text,smallint)",
            "aveloxis_ops.issue_facts(aveloxis_data.issues)",
            "aveloxis_ops.json_fits(jsonb,text)",
            "aveloxis_ops.message_facts(aveloxis_data.messages)",
            "aveloxis_ops.phase_entities(text)",
            "aveloxis_ops.phases_of(smallint)",
            "aveloxis_ops.pull_request_facts(aveloxis_data.pull_requests)",
            "aveloxis_ops.refresh_order()",
            "aveloxis_ops.review_facts(aveloxis_data.pull_request_reviews)",
            "aveloxis_ops.tz_offset_minutes(text)",
            "aveloxis_ops.user_id_of(jsonb)",
            "aveloxis_ops.utc_day_start(timestamp with time zone)",
        ],
    },
    // must stay empty
    Rule {
        name: "L14",
        what: "the routines meant for delegation take repo_id bigint first",
        sql: r#"SELECT f::regprocedure::text FROM unnest(ARRAY['aveloxis.drain(bigint,integer)']::regprocedure[]) f
WHERE NOT EXISTS (SELECT FROM pg_proc p WHERE p.oid = f
                  AND 'repo_id' = ANY (p.proargnames) AND p.proargtypes[0] = 'int8'::regtype)"#,
        known: &[],
    },
    // must stay empty (the composite keys lead with repo_id)
    Rule {
        name: "L16",
        what: "every distributed table has an index leading with repo_id",
        sql: r#"SELECT p.rel::text FROM scale_plan p JOIN pg_attribute a ON a.attrelid = p.rel AND a.attname = 'repo_id'
WHERE p.kind = 'distributed'
  AND NOT EXISTS (SELECT FROM pg_index i WHERE i.indrelid = p.rel AND i.indkey[0] = a.attnum) ORDER BY 1"#,
        known: &[],
    },
];

#[tokio::test]
async fn the_schema_keeps_to_the_citus_rules_it_can_be_checked_against() {
    let db = TestDb::with_extension("scale_lint").await;
    let mut conn = db.connect().await;
    sqlx::raw_sql(PLAN).execute(&mut conn).await.unwrap();
    // Every table has a kind (a new one gets one by the rule above; this prints them).
    let kinds: Vec<(String, String)> =
        sqlx::query_as("SELECT rel::text, kind FROM scale_plan ORDER BY kind, rel::text")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert!(kinds.iter().any(|(_, k)| k == "local") && kinds.iter().any(|(_, k)| k == "distributed"));
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for rule in RULES {
        let rows: Vec<String> = sqlx::raw_sql(&format!("SELECT concat_ws('|', VARIADIC ARRAY(SELECT x FROM json_each_text(row_to_json(q)) AS j(k, x))) FROM ({}) q", rule.sql))
            .fetch_all(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", rule.name))
            .into_iter()
            .map(|r| sqlx::Row::get::<String, _>(&r, 0))
            .collect();
        let found: BTreeSet<&str> = rows.iter().map(String::as_str).collect();
        let known: BTreeSet<&str> = rule.known.iter().copied().collect();
        report.push(format!(
            "{} {}: {} findings ({} known)",
            rule.name,
            rule.what,
            found.len(),
            known.len()
        ));
        let new: Vec<&&str> = found.difference(&known).collect();
        let gone: Vec<&&str> = known.difference(&found).collect();
        if !new.is_empty() {
            failures.push(format!("{} ({}): new findings {new:?}", rule.name, rule.what));
        }
        if !gone.is_empty() {
            failures.push(format!(
                "{} ({}): fixed, remove from the known list: {gone:?}",
                rule.name, rule.what
            ));
        }
    }
    eprintln!("{}", report.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `aveloxis.distribution_plan()` holds every table as the lint's plan does, in an order
/// Citus accepts (each table after every table it references); `aveloxis.distribute()`
/// says what to install where Citus is absent, and its dry run lists the calls it would
/// make.
#[tokio::test]
async fn the_distribution_plan_is_the_linted_one_in_dependency_order() {
    let db = TestDb::with_extension("scale_plan").await;
    let mut conn = db.connect().await;
    sqlx::raw_sql(PLAN).execute(&mut conn).await.unwrap();
    let differ: Vec<(Option<String>, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT coalesce(p.table_name, s.rel)::text, s.kind, p.kind
         FROM aveloxis.distribution_plan() p FULL JOIN scale_plan s ON s.rel = p.table_name
         WHERE p.kind IS DISTINCT FROM s.kind",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(differ.is_empty(), "the plan and the lint disagree: {differ:?}");
    // Every foreign key between two Citus tables points to a table placed earlier.
    let late: Vec<(String, String)> = sqlx::query_as(
        "SELECT con.conrelid::regclass::text, con.confrelid::regclass::text
         FROM pg_constraint con
         JOIN aveloxis.distribution_plan() c ON c.table_name = con.conrelid
         JOIN aveloxis.distribution_plan() p ON p.table_name = con.confrelid
         WHERE con.contype = 'f' AND con.conrelid <> con.confrelid AND c.kind <> 'local' AND p.step >= c.step",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(late.is_empty(), "tables placed before what they reference: {late:?}");
    let kinds: Vec<(String, i64)> =
        sqlx::query_as("SELECT kind, count(*) FROM aveloxis.distribution_plan() GROUP BY kind ORDER BY kind")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    eprintln!("plan: {kinds:?}");
    assert_eq!(kinds.len(), 3, "{kinds:?}");

    let err = sqlx::query("SELECT * FROM aveloxis.distribute()")
        .fetch_all(&mut conn)
        .await
        .expect_err("distribute() without Citus must fail");
    let err = err.into_database_error().unwrap();
    assert_eq!(err.code().as_deref(), Some("0A000"));
    assert!(
        err.message().contains("citus extension is not installed"),
        "{}",
        err.message()
    );

    let statements: Vec<(i32, String)> =
        sqlx::query_as("SELECT step, statement FROM aveloxis.distribute(dry_run => true) ORDER BY step")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let planned: i64 = sqlx::query_scalar("SELECT count(*) FROM aveloxis.distribution_plan() WHERE kind <> 'local'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(statements.len() as i64, planned);
    let first_distributed = statements
        .iter()
        .position(|(_, s)| s.contains("create_distributed_table"))
        .unwrap();
    assert!(statements[..first_distributed]
        .iter()
        .all(|(_, s)| s.contains("create_reference_table")));
    assert!(statements[first_distributed]
        .1
        .contains("shard_count := 32, colocate_with := 'none'"));
    assert!(
        statements[first_distributed].1.contains("'aveloxis_ops.staging'"),
        "the colocation group is staging's: {}",
        statements[first_distributed].1
    );
    assert!(statements[first_distributed + 1..]
        .iter()
        .all(|(_, s)| s.contains("create_distributed_table") && !s.contains("'none'")));
    // The drain is not delegated: it mints 8Knot's 32-bit issue and pull request ids.
    assert!(!statements
        .iter()
        .any(|(_, s)| s.contains("create_distributed_function")));
    for table in [
        "aveloxis_data.contributors",
        "aveloxis_data.repos",
        "aveloxis_data.platforms",
    ] {
        assert!(
            statements
                .iter()
                .any(|(_, s)| *s == format!("SELECT create_reference_table('{table}')")),
            "{table} is not a reference table"
        );
    }
    assert!(
        !statements.iter().any(|(_, s)| s.contains("aveloxis_ops.jobs")),
        "the queue stays local"
    );
}

/// Source lint S1 (scale-out.md §2.3): no `ON CONFLICT ... DO UPDATE SET` in `sql/` sets a
/// non-immutable expression (Citus refuses them on its tables, distributed or reference:
/// "functions used in the DO UPDATE SET clause of INSERTs on distributed tables must be
/// marked IMMUTABLE"). `EXCLUDED`'s value, computed once when the row was proposed, is the
/// way.
#[test]
fn no_do_update_set_calls_a_mutable_function() {
    const MUTABLE: &[&str] = &[
        "now()",
        "clock_timestamp(",
        "statement_timestamp(",
        "transaction_timestamp(",
        "current_timestamp",
        "localtimestamp",
        "random(",
        "gen_random_uuid(",
        "nextval(",
        "aveloxis_ops.clock(",
    ];
    let dir = harness::repo_root().join("sql");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut found = Vec::new();
    let mut clauses = 0;
    for file in files.iter().filter(|f| f.extension().is_some_and(|e| e == "sql")) {
        // Comments dropped (line by line, so line numbers hold).
        let text: String = std::fs::read_to_string(file)
            .unwrap()
            .to_lowercase()
            .lines()
            .map(|l| l.split("--").next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n");
        let mut rest = text.as_str();
        while let Some(at) = rest.find("do update") {
            let clause = &rest[at..];
            // The SET list ends at its WHERE, RETURNING or the statement's end.
            let end = ["where", "returning", ";"]
                .iter()
                .filter_map(|t| clause.find(t))
                .min()
                .unwrap_or(clause.len());
            let set = &clause[..end];
            clauses += 1;
            for f in MUTABLE {
                if set.contains(f) {
                    let line = text[..text.len() - rest.len() + at].lines().count() + 1;
                    found.push(format!("{}:{line}: {f}", file.file_name().unwrap().to_string_lossy()));
                }
            }
            rest = &clause[end.max(1)..];
        }
    }
    assert!(
        clauses > 20,
        "only {clauses} DO UPDATE clauses found in {}",
        dir.display()
    );
    assert!(found.is_empty(), "DO UPDATE SET with a mutable function: {found:#?}");
}
