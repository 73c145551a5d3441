//! The adversarial suite (DESIGN §9): plain logins that are only members of
//! `aveloxis_agent` or `aveloxis_analyst` try what they must not do, through every door
//! they have. Each attempt must fail (or, for the elevated API, run without ever
//! touching what the caller planted), and each assertion names the attempt.

use harness::sqlx::types::Uuid;
use harness::sqlx::{self, Connection, PgConnection, Row};
use harness::TestDb;

/// A login role in one of the extension's roles, named after the database (login roles
/// are cluster-wide and tests run in parallel), dropped at the end.
struct Login {
    name: String,
}

impl Login {
    async fn create(db: &TestDb, suffix: &str, member_of: &str) -> Login {
        let name = format!("{}_{suffix}", db.name);
        db.execute(&format!("CREATE ROLE {name} LOGIN IN ROLE {member_of}"))
            .await;
        Login { name }
    }

    async fn drop(self, db: &TestDb) {
        db.execute(&format!("DROP OWNED BY {0}; DROP ROLE {0}", self.name))
            .await;
    }
}

/// The SQLSTATE of a failed statement, or None when it succeeded.
async fn sqlstate(conn: &mut PgConnection, sql: &str) -> Option<String> {
    match sqlx::raw_sql(sql).execute(&mut *conn).await {
        Ok(_) => None,
        Err(sqlx::Error::Database(e)) => Some(e.code().unwrap_or_default().into_owned()),
        Err(e) => panic!("{sql}: {e}"),
    }
}

async fn is_superuser(db: &TestDb, role: &str) -> bool {
    let mut conn = db.connect().await;
    sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = $1")
        .bind(role)
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

/// Every relation name of the extension's schemas plus the drain's scratch names: what
/// an attacker would plant in pg_temp hoping elevated code resolves it there.
async fn names_to_plant(db: &TestDb, with_scratch: bool) -> Vec<String> {
    let mut conn = db.connect().await;
    let mut names: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname IN ('aveloxis', 'aveloxis_ops', 'aveloxis_data', 'aveloxis_augur_data')
           AND c.relkind IN ('r', 'v', 'm', 'p')
         ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(names.len() > 30, "the extension's tables were found: {names:?}");
    if with_scratch {
        for scratch in [
            "drain_rows",
            "drain_prs",
            "drain_comments",
            "drain_users",
            "drain_user_refs",
            "drain_issues",
            "drain_scratch_layout_3",
            "drain_scratch_layout_4",
            "drain_commits",
            "drain_removed",
            "stale_groups",
            "stale_commits",
            "stale_group_commits",
            "unfit_fields",
            "drain_events",
            "drain_releases",
            "drain_repo_info",
            "drain_review_comments",
            "activity_net",
            "aveloxis_resolved",
            "aveloxis_packages",
            "aveloxis_findings",
        ] {
            names.push(scratch.to_string());
        }
    }
    names
}

/// Plants, in the caller's own session: a canary table anyone may write, a trigger
/// function that records who ran it and tries to make `role` a superuser, a temp table of
/// every given name with that trigger on every write, temp functions named like
/// built-ins the extension calls, and a temp `=` operator doing the same.
async fn plant(conn: &mut PgConnection, role: &str, names: &[String]) {
    let mut sql = format!(
        "CREATE TEMP TABLE canary (ran_as text);
         GRANT ALL ON canary TO PUBLIC;
         CREATE FUNCTION pg_temp.escalate_fn() RETURNS boolean LANGUAGE plpgsql AS $f$
         BEGIN
             INSERT INTO pg_temp.canary VALUES (current_user);
             BEGIN
                 ALTER ROLE {role} SUPERUSER;
             EXCEPTION WHEN insufficient_privilege THEN
                 NULL;  -- run by the caller itself: recorded, harmless
             END;
             RETURN true;
         END $f$;
         CREATE FUNCTION pg_temp.escalate() RETURNS trigger LANGUAGE plpgsql AS $f$
         BEGIN
             PERFORM pg_temp.escalate_fn();
             RETURN NULL;
         END $f$;
         CREATE FUNCTION pg_temp.jsonb_typeof(jsonb) RETURNS text LANGUAGE sql AS 'SELECT pg_temp.escalate_fn()::text';
         CREATE FUNCTION pg_temp.lower(text) RETURNS text LANGUAGE sql AS 'SELECT pg_temp.escalate_fn()::text';
         CREATE FUNCTION pg_temp.now() RETURNS timestamptz LANGUAGE sql
             AS 'SELECT CASE WHEN pg_temp.escalate_fn() THEN pg_catalog.now() END';
         CREATE FUNCTION pg_temp.gen_random_uuid() RETURNS uuid LANGUAGE sql
             AS 'SELECT CASE WHEN pg_temp.escalate_fn() THEN pg_catalog.gen_random_uuid() END';
         CREATE FUNCTION pg_temp.evil_eq(bigint, bigint) RETURNS boolean LANGUAGE sql
             AS 'SELECT pg_temp.escalate_fn() AND $1 OPERATOR(pg_catalog.=) $2';
         CREATE OPERATOR pg_temp.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = pg_temp.evil_eq);"
    );
    for name in names {
        sql.push_str(&format!(
            "CREATE TEMP TABLE \"{name}\" (staging_id bigint, platform_id smallint, doc jsonb, context jsonb,
                                         parse_error text, pending boolean, repo_id bigint, x text);
             CREATE TRIGGER escalate BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON pg_temp.\"{name}\"
                 FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.escalate();"
        ));
    }
    sqlx::raw_sql(&sql).execute(&mut *conn).await.unwrap();
    // The trap works: a write to a planted table runs the trigger (here as the caller,
    // who cannot escalate) and the canary records it. Then the canary is emptied.
    let first = &names[0];
    sqlx::raw_sql(&format!("INSERT INTO pg_temp.\"{first}\" (x) VALUES ('self-test')"))
        .execute(&mut *conn)
        .await
        .unwrap();
    assert_eq!(
        canary(conn).await,
        [role.to_string()],
        "the planted trigger did not fire"
    );
    sqlx::raw_sql("DELETE FROM pg_temp.canary")
        .execute(&mut *conn)
        .await
        .unwrap();
}

async fn canary(conn: &mut PgConnection) -> Vec<String> {
    sqlx::query_scalar("SELECT ran_as FROM pg_temp.canary")
        .fetch_all(&mut *conn)
        .await
        .unwrap()
}

fn issue(id: i64, number: i64, login: &str, user_id: i64) -> String {
    serde_json::json!({
        "id": id, "number": number, "title": format!("issue {number}"), "state": "open",
        "user": {"login": login, "id": user_id, "type": "User"},
        "created_at": "2024-01-02T03:04:05Z", "updated_at": "2024-01-02T03:04:05Z"
    })
    .to_string()
}

fn commit(hash: char, email: &str) -> String {
    serde_json::json!({
        "hash": hash.to_string().repeat(40), "parents": [],
        "author": {"name": "A", "email": email, "time": "2024-01-02T03:04:05+02:00"},
        "committer": {"name": "A", "email": email, "time": "2024-01-02T03:04:05+02:00"},
        "message": "m\n", "files": [{"path": "a.txt", "added": 1, "removed": 0}]
    })
    .to_string()
}

#[tokio::test]
async fn an_agent_login_cannot_escalate_through_objects_it_plants() {
    let db = TestDb::with_extension("adv_plant").await;
    let agent = Login::create(&db, "agent", "aveloxis_agent").await;
    let repo: i64 = {
        let mut conn = db.connect().await;
        sqlx::query_scalar("SELECT aveloxis.add_repo('https://github.com/o/planted')")
            .fetch_one(&mut conn)
            .await
            .unwrap()
    };

    // 1. The 0.6.0 exploit: the drain's own scratch tables planted first, with a trigger.
    //    The drain refuses them (42501) and never writes them.
    let mut conn = db.connect_as(&agent.name).await;
    plant(&mut conn, &agent.name, &names_to_plant(&db, true).await).await;
    let token: Uuid = sqlx::query_scalar("SELECT lease_token FROM aveloxis.claim_repo('evil', $1, 'collect')")
        .bind(repo)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    sqlx::query("SELECT aveloxis.stage($1, 'issue', $2)")
        .bind(token)
        .bind(vec![issue(1, 1, "alice", 11)])
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        sqlstate(&mut conn, &format!("CALL aveloxis.drain({repo})"))
            .await
            .as_deref(),
        Some("42501"),
        "the drain must refuse scratch tables the caller made"
    );
    assert_eq!(canary(&mut conn).await, Vec::<String>::new(), "planted trigger ran");
    assert!(!is_superuser(&db, &agent.name).await, "the agent became superuser");
    conn.close().await.unwrap();

    // 1b. Only the activity triggers' scratch table planted: the drain's own scratch is
    //     fine, the rows are written, and the triggers refuse to use the planted table.
    let mut conn = db.connect_as(&agent.name).await;
    plant(&mut conn, &agent.name, &["activity_net".to_string()]).await;
    assert_eq!(
        sqlstate(&mut conn, &format!("CALL aveloxis.drain({repo})"))
            .await
            .as_deref(),
        Some("42501"),
        "the activity triggers must refuse a scratch table the caller made"
    );
    assert_eq!(canary(&mut conn).await, Vec::<String>::new(), "planted trigger ran");
    assert!(!is_superuser(&db, &agent.name).await, "the agent became superuser");
    conn.close().await.unwrap();

    // 2. Every other name planted (the extension's own table names, built-in function
    //    names, an operator): the whole agent API runs, none of it is touched.
    let mut conn = db.connect_as(&agent.name).await;
    plant(&mut conn, &agent.name, &names_to_plant(&db, false).await).await;
    // (The collect lease taken above is still held, in this new session too.)
    let steps = [
        format!("SELECT aveloxis.heartbeat(ARRAY['{token}'::uuid])"),
        format!("SELECT aveloxis.stage('{token}', 'contributor', ARRAY['{{\"login\": \"bob\", \"id\": 12}}'])"),
        format!("SELECT aveloxis.record_rename('{token}'::uuid, 'https://github.com/o/planted2')"),
        format!("CALL aveloxis.drain({repo})"),
        "CALL aveloxis.drain_all()".to_string(),
        format!("SELECT aveloxis.requeue_rejects({repo})"),
        "SELECT aveloxis.token_acquire(ARRAY['ab12ab12ab12ab12'], 'core', 1)".to_string(),
        "SELECT aveloxis.resolve_email('someone@example.com')".to_string(),
        "SELECT * FROM aveloxis.forge_hosts()".to_string(),
        format!("SELECT * FROM aveloxis.why_not_collected({repo})"),
        "SELECT * FROM aveloxis.queue_health()".to_string(),
    ];
    for sql in &steps {
        assert_eq!(sqlstate(&mut conn, sql).await, None, "{sql}");
    }
    let collect_job: i64 = sqlx::query_scalar("SELECT job_id FROM aveloxis.heartbeat(ARRAY[$1]) AS h(job_id)")
        .bind(token)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    sqlx::query("SELECT aveloxis.complete($1, $2, '{}')")
        .bind(collect_job)
        .bind(token)
        .execute(&mut conn)
        .await
        .unwrap();
    let row = sqlx::query("SELECT job_id, lease_token FROM aveloxis.claim_repo('evil', $1, 'facade')")
        .bind(repo)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let (job, facade): (i64, Uuid) = (row.get(0), row.get(1));
    let facade_steps = [
        format!(
            "SELECT aveloxis.stage('{facade}', 'commit', ARRAY[$j${}$j$])",
            commit('a', "dev@example.com")
        ),
        format!("CALL aveloxis.drain({repo})"),
        format!("SELECT * FROM aveloxis.commit_authors_to_resolve('{facade}'::uuid, 10)"),
        format!(
            "SELECT * FROM aveloxis.record_commit_author('{facade}'::uuid, 'dev@example.com', 1::smallint, 12, 'bob')"
        ),
        "SELECT aveloxis.record_commit_author_miss('x@example.com', 'not_found', 'none')".to_string(),
        format!("SELECT aveloxis.fail({job}, '{facade}', 'planted', 'transient')"),
    ];
    for sql in &facade_steps {
        assert_eq!(sqlstate(&mut conn, sql).await, None, "{sql}");
    }
    // A GitLab project's payloads drain through the GitLab mappers among them too.
    let gitlab_repo: i64 = sqlx::query_scalar("SELECT aveloxis.add_repo('https://gitlab.com/o/planted')")
        .fetch_one(&mut db.connect().await)
        .await
        .unwrap();
    let gitlab: Uuid = sqlx::query_scalar("SELECT lease_token FROM aveloxis.claim_repo('evil', $1, 'collect')")
        .bind(gitlab_repo)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let gitlab_steps = [
        format!(
            "SELECT aveloxis.stage('{gitlab}', 'issue', ARRAY[$j${}$j$])",
            r#"{"id": 70, "iid": 1, "title": "t", "state": "opened", "author": {"id": 7, "username": "carol"}}"#
        ),
        format!(
            "SELECT aveloxis.stage('{gitlab}', 'issue_event', ARRAY[$j${}$j$], ARRAY[$j${}$j$::jsonb])",
            r#"{"id": 71, "system": true, "body": "closed", "author": {"id": 7, "username": "carol"}}"#,
            r#"{"parent_number": 1, "parent_kind": "issue"}"#
        ),
        format!("CALL aveloxis.drain({gitlab_repo})"),
    ];
    for sql in &gitlab_steps {
        assert_eq!(sqlstate(&mut conn, sql).await, None, "{sql}");
    }
    assert_eq!(canary(&mut conn).await, Vec::<String>::new(), "a planted object ran");
    assert!(!is_superuser(&db, &agent.name).await, "the agent became superuser");
    conn.close().await.unwrap();

    // What was staged was stored, for the leased repository.
    let mut admin = db.connect().await;
    let (issues, commits, contributors): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM aveloxis_data.issues WHERE repo_id = $1),
                (SELECT count(*) FROM aveloxis_data.commits WHERE repo_id = $1),
                (SELECT count(*) FROM aveloxis_data.contributors WHERE cntrb_login IN ('alice', 'bob'))",
    )
    .bind(repo)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!((issues, commits, contributors), (1, 1, 2));
    let gitlab: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM aveloxis_data.issues i JOIN aveloxis_data.repos r USING (repo_id)
                 WHERE r.repo_git = 'https://gitlab.com/o/planted'),
                (SELECT count(*) FROM aveloxis_data.issue_events WHERE event_source = 'note')",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(gitlab, (1, 1));
    admin.close().await.unwrap();
    agent.drop(&db).await;
}

#[tokio::test]
async fn an_agent_login_cannot_act_beyond_its_leases_or_its_role() {
    let db = TestDb::with_extension("adv_agent").await;
    let a = Login::create(&db, "agent_a", "aveloxis_agent").await;
    let b = Login::create(&db, "agent_b", "aveloxis_agent").await;
    let (mine, theirs): (i64, i64) = {
        let mut conn = db.connect().await;
        sqlx::query_as(
            "SELECT aveloxis.add_repo('https://github.com/o/mine'), aveloxis.add_repo('https://github.com/o/theirs')",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap()
    };
    let mut conn_a = db.connect_as(&a.name).await;
    let mut conn_b = db.connect_as(&b.name).await;
    let row = sqlx::query("SELECT job_id, lease_token FROM aveloxis.claim_repo('a', $1, 'collect')")
        .bind(theirs)
        .fetch_one(&mut conn_a)
        .await
        .unwrap();
    let (their_job, their_token): (i64, Uuid) = (row.get(0), row.get(1));
    let row = sqlx::query("SELECT job_id, lease_token FROM aveloxis.claim_repo('b', $1, 'collect')")
        .bind(mine)
        .fetch_one(&mut conn_b)
        .await
        .unwrap();
    let (my_job, my_token): (i64, Uuid) = (row.get(0), row.get(1));

    // Finishing another agent's lease: with a made-up token, with no token, with the
    // caller's own token for the other job, with the other agent's name.
    let attempts = [
        (
            "complete with a made-up token",
            format!(
                "SELECT aveloxis.complete({their_job}, '{}', '{{}}')",
                Uuid::from_u128(7)
            ),
        ),
        (
            "complete with no token",
            format!("SELECT aveloxis.complete({their_job}, NULL, '{{}}')"),
        ),
        (
            "complete with my token for their job",
            format!("SELECT aveloxis.complete({their_job}, '{my_token}', '{{}}')"),
        ),
        (
            "fail with my token for their job",
            format!("SELECT aveloxis.fail({their_job}, '{my_token}', 'x', 'gone')"),
        ),
        (
            "stage with a made-up token",
            format!(
                "SELECT aveloxis.stage('{}', 'issue', ARRAY['{{}}'])",
                Uuid::from_u128(7)
            ),
        ),
        (
            "stage commits under a collect lease",
            format!("SELECT aveloxis.stage('{my_token}', 'commit', ARRAY['{{}}'])"),
        ),
        (
            "rename with a made-up token",
            format!(
                "SELECT aveloxis.record_rename('{}'::uuid, 'https://github.com/o/x')",
                Uuid::from_u128(7)
            ),
        ),
        (
            "resolve commit authors under a collect lease",
            format!("SELECT * FROM aveloxis.commit_authors_to_resolve('{my_token}'::uuid)"),
        ),
    ];
    for (what, sql) in &attempts {
        assert!(sqlstate(&mut conn_b, sql).await.is_some(), "{what} was accepted: {sql}");
    }
    let renewed: Vec<i64> = sqlx::query_scalar("SELECT aveloxis.heartbeat(ARRAY[$1])")
        .bind(Uuid::from_u128(7))
        .fetch_all(&mut conn_b)
        .await
        .unwrap();
    assert!(renewed.is_empty(), "a made-up token renewed a lease");

    // Staging for a repository it holds no lease on: staging carries no repository of the
    // caller's choosing, and the table is closed; what b stages lands on b's lease.
    let direct = [
        (
            "INSERT into staging",
            format!(
                "INSERT INTO aveloxis_ops.staging (repo_id, platform_id, entity, payload) VALUES ({theirs}, 1, 'issue', '{{}}')"
            ),
        ),
        (
            "UPDATE staging",
            "UPDATE aveloxis_ops.staging SET drained_at = NULL".to_string(),
        ),
        (
            "DELETE from staging_rejects",
            "DELETE FROM aveloxis_ops.staging_rejects".to_string(),
        ),
    ];
    for (what, sql) in &direct {
        assert_eq!(sqlstate(&mut conn_b, sql).await.as_deref(), Some("42501"), "{what}");
    }
    sqlx::query("SELECT aveloxis.stage($1, 'issue', $2)")
        .bind(my_token)
        .bind(vec![issue(5, 5, "carol", 13)])
        .execute(&mut conn_b)
        .await
        .unwrap();
    let staged_for: Vec<i64> = sqlx::query_scalar("SELECT DISTINCT repo_id FROM aveloxis_ops.staging")
        .fetch_all(&mut db.connect().await)
        .await
        .unwrap();
    assert_eq!(staged_for, [mine]);

    // Writing aveloxis_data directly, reading aveloxis_ops (token budgets, settings,
    // staging): every table, refused.
    let tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT n.nspname::text, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname IN ('aveloxis_data', 'aveloxis_ops') AND c.relkind IN ('r', 'p') ORDER BY 1, 2",
    )
    .fetch_all(&mut db.connect().await)
    .await
    .unwrap();
    for (schema, table) in &tables {
        let write = format!("DELETE FROM {schema}.{table}");
        assert_eq!(sqlstate(&mut conn_b, &write).await.as_deref(), Some("42501"), "{write}");
        if schema == "aveloxis_ops" {
            let read = format!("SELECT * FROM {schema}.{table} LIMIT 1");
            assert_eq!(sqlstate(&mut conn_b, &read).await.as_deref(), Some("42501"), "{read}");
        }
    }

    // Every routine of the API the agent role is not granted: refused before it runs.
    let not_granted: Vec<(String, String, bool)> = sqlx::query_as(
        "SELECT p.proname::text,
                (SELECT string_agg('NULL::' || format_type(t, NULL), ', ' ORDER BY o)
                 FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY a(t, o)),
                p.prokind = 'p'
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = 'aveloxis' AND NOT has_function_privilege('aveloxis_agent', p.oid, 'EXECUTE')
         ORDER BY 1",
    )
    .fetch_all(&mut db.connect().await)
    .await
    .unwrap()
    .into_iter()
    .map(|(name, args, proc): (String, Option<String>, bool)| (name, args.unwrap_or_default(), proc))
    .collect();
    let names: Vec<&str> = not_granted.iter().map(|(n, _, _)| n.as_str()).collect();
    for admin_only in [
        "set_setting",
        "sideline",
        "unsideline",
        "add_forge_host",
        "merge_contributors",
        "tick",
    ] {
        assert!(
            names.contains(&admin_only),
            "{admin_only} is granted to agents: {names:?}"
        );
    }
    for (name, args, is_procedure) in &not_granted {
        let sql = if *is_procedure {
            format!("CALL aveloxis.{name}({args})")
        } else {
            format!("SELECT aveloxis.{name}({args})")
        };
        assert_eq!(sqlstate(&mut conn_b, &sql).await.as_deref(), Some("42501"), "{sql}");
    }

    // Local paths cannot be registered outside the allowed roots, nor the roots changed.
    for sql in [
        "SELECT aveloxis.add_repo('/etc')",
        "SELECT aveloxis.add_repo('file:///root/.ssh')",
    ] {
        assert_eq!(sqlstate(&mut conn_b, sql).await.as_deref(), Some("42501"), "{sql}");
    }

    // The legitimate holder is unaffected.
    sqlx::query("SELECT aveloxis.complete($1, $2, '{}')")
        .bind(their_job)
        .bind(their_token)
        .execute(&mut conn_a)
        .await
        .unwrap();
    sqlx::query("SELECT aveloxis.complete($1, $2, '{}')")
        .bind(my_job)
        .bind(my_token)
        .execute(&mut conn_b)
        .await
        .unwrap();
    conn_a.close().await.unwrap();
    conn_b.close().await.unwrap();
    a.drop(&db).await;
    b.drop(&db).await;
}

#[tokio::test]
async fn an_analyst_login_reads_and_nothing_else() {
    let db = TestDb::with_extension("adv_analyst").await;
    let analyst = Login::create(&db, "analyst", "aveloxis_analyst").await;
    let repo: i64 = sqlx::query_scalar("SELECT aveloxis.add_repo('https://github.com/o/read')")
        .fetch_one(&mut db.connect().await)
        .await
        .unwrap();
    let mut conn = db.connect_as(&analyst.name).await;
    plant(&mut conn, &analyst.name, &names_to_plant(&db, true).await).await;

    // Its read API runs with planted objects around, touching none.
    for sql in [
        "SELECT aveloxis.version()".to_string(),
        "SELECT * FROM aveloxis.parse_repo_url('https://github.com/a/b')".to_string(),
        "SELECT aveloxis.resolve_repo('https://github.com/o/read')".to_string(),
        "SELECT * FROM aveloxis.registry_counts()".to_string(),
        "SELECT aveloxis.resolve_email('a@example.com')".to_string(),
        "SELECT * FROM aveloxis.contributor_quality()".to_string(),
        "SELECT * FROM aveloxis.duplicate_contributors(5)".to_string(),
        "SELECT * FROM aveloxis.identity_anomalies()".to_string(),
        "SELECT * FROM aveloxis.enrichment_progress()".to_string(),
        "SELECT * FROM aveloxis.search_resolve_queue()".to_string(),
        "SELECT * FROM aveloxis.contributor_fk_integrity()".to_string(),
        "SELECT * FROM aveloxis.queue_health()".to_string(),
        format!("SELECT * FROM aveloxis.why_not_collected({repo})"),
        format!("SELECT * FROM aveloxis.job_history({repo}, 5)"),
        "SELECT * FROM aveloxis.token_status()".to_string(),
        "SELECT count(*) FROM aveloxis_data.repos".to_string(),
        // The read side (0.8.0): views, the analyst API, bots, completeness.
        "SELECT count(*) FROM aveloxis_augur_data.explorer_contributor_actions".to_string(),
        "SELECT count(*) FROM aveloxis_augur_data.issues".to_string(),
        "SELECT * FROM aveloxis.view_refresh_history()".to_string(),
        "SELECT * FROM aveloxis.bots()".to_string(),
        "SELECT aveloxis.is_bot(gen_random_uuid())".to_string(),
        format!("SELECT * FROM aveloxis.completeness({repo})"),
        format!("SELECT * FROM aveloxis.repo_stats({repo})"),
        format!("SELECT * FROM aveloxis.repo_activity({repo}, '2024-01-01', '2024-03-01', 'week', false)"),
        format!("SELECT * FROM aveloxis.repo_activity({repo}, '2024-01-01', '2024-03-01', 'month', true)"),
        "SELECT * FROM aveloxis.group_activity('Default', '2024-01-01', '2024-03-01')".to_string(),
        format!("SELECT * FROM aveloxis.top_contributors({repo}, '2024-01-01')"),
        format!("SELECT * FROM aveloxis.new_contributors({repo}, '2024-01-01')"),
        "SELECT * FROM aveloxis.contributor_activity(gen_random_uuid())".to_string(),
    ] {
        assert_eq!(sqlstate(&mut conn, &sql).await, None, "{sql}");
    }
    assert_eq!(canary(&mut conn).await, Vec::<String>::new(), "a planted object ran");
    assert!(!is_superuser(&db, &analyst.name).await);

    // The agent API, staging, the queue's tables and writes: refused.
    for sql in [
        "SELECT * FROM aveloxis.claim('x', ARRAY['collect'], 1)".to_string(),
        format!("SELECT * FROM aveloxis.claim_repo('x', {repo}, 'collect')"),
        format!(
            "SELECT aveloxis.stage('{}', 'issue', ARRAY['{{}}'])",
            Uuid::from_u128(1)
        ),
        format!("CALL aveloxis.drain({repo})"),
        "SELECT aveloxis.add_repo('https://github.com/a/b')".to_string(),
        "SELECT * FROM aveloxis_ops.jobs".to_string(),
        "SELECT * FROM aveloxis_ops.token_budgets".to_string(),
        "CALL aveloxis.refresh_views()".to_string(),
        "SELECT aveloxis.rebuild_activity()".to_string(),
        "SELECT aveloxis.add_bot_pattern('x')".to_string(),
        "DELETE FROM aveloxis_data.repos".to_string(),
        "UPDATE aveloxis_data.contributors SET cntrb_login = 'x'".to_string(),
    ] {
        assert_eq!(sqlstate(&mut conn, &sql).await.as_deref(), Some("42501"), "{sql}");
    }
    conn.close().await.unwrap();
    analyst.drop(&db).await;
}
