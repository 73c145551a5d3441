//! The roles of DESIGN §5, exercised through real logins: agents use the API but
//! cannot touch the tables, analysts read but cannot write, strangers get nothing.

use harness::sqlx::{self, Connection};
use harness::TestDb;

async fn login_roles(db: &TestDb) {
    // Login roles are cluster-wide: name them after the database so parallel tests differ.
    let n = &db.name;
    db.execute(&format!(
        "CREATE ROLE {n}_agent LOGIN IN ROLE aveloxis_agent;
         CREATE ROLE {n}_analyst LOGIN IN ROLE aveloxis_analyst;
         CREATE ROLE {n}_admin LOGIN IN ROLE aveloxis_admin;
         CREATE ROLE {n}_nobody LOGIN;"
    ))
    .await;
}

async fn drop_login_roles(db: &TestDb) {
    let n = &db.name;
    let mut conn = db.connect().await;
    for suffix in ["agent", "analyst", "admin", "nobody"] {
        sqlx::raw_sql(&format!("DROP OWNED BY {n}_{suffix}; DROP ROLE {n}_{suffix};"))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

async fn sqlstate(conn: &mut sqlx::PgConnection, sql: &str) -> Option<String> {
    match sqlx::raw_sql(sql).execute(&mut *conn).await {
        Ok(_) => None,
        Err(sqlx::Error::Database(e)) => Some(e.code().unwrap_or_default().into_owned()),
        Err(e) => panic!("{sql}: {e}"),
    }
}

const DENIED: Option<&str> = Some("42501");

#[tokio::test]
async fn each_role_gets_exactly_its_part_of_the_api() {
    let db = TestDb::with_extension("privileges").await;
    login_roles(&db).await;
    let n = db.name.clone();

    let mut agent = db.connect_as(&format!("{n}_agent")).await;
    assert_eq!(
        sqlstate(
            &mut agent,
            "SELECT aveloxis.add_repo('https://github.com/chaoss/augur')"
        )
        .await,
        None
    );
    assert_eq!(
        sqlstate(&mut agent, "SELECT aveloxis.resolve_repo('github.com/chaoss/augur')").await,
        None
    );
    // Renames are recorded under a collect lease (record_rename(lease_token, url)); the
    // repo-id form is the admins'.
    assert_eq!(
        sqlstate(
            &mut agent,
            "SELECT aveloxis.record_rename(1::bigint, 'https://github.com/chaoss/augur2')"
        )
        .await
        .as_deref(),
        DENIED
    );
    assert_eq!(
        sqlstate(
            &mut agent,
            "SELECT aveloxis.record_rename(c.lease_token, 'https://github.com/chaoss/augur2')
             FROM aveloxis.claim_repo('a', 1, 'collect') c"
        )
        .await,
        None
    );
    assert_eq!(
        sqlstate(&mut agent, "SELECT * FROM aveloxis.registry_counts()").await,
        None
    );
    assert_eq!(
        sqlstate(&mut agent, "SELECT * FROM aveloxis_data.repos")
            .await
            .as_deref(),
        DENIED
    );
    assert_eq!(
        sqlstate(
            &mut agent,
            "INSERT INTO aveloxis_data.repo_groups (rg_name) VALUES ('x')"
        )
        .await
        .as_deref(),
        DENIED
    );
    assert_eq!(
        sqlstate(
            &mut agent,
            "SELECT aveloxis.add_forge_host('ghe.example.com', 1::smallint)"
        )
        .await
        .as_deref(),
        DENIED
    );
    agent.close().await.unwrap();

    let mut analyst = db.connect_as(&format!("{n}_analyst")).await;
    assert_eq!(
        sqlstate(&mut analyst, "SELECT repo_git FROM aveloxis_data.repos").await,
        None
    );
    assert_eq!(
        sqlstate(&mut analyst, "SELECT aveloxis.resolve_repo('github.com/chaoss/augur')").await,
        None
    );
    assert_eq!(
        sqlstate(&mut analyst, "SELECT aveloxis.platform_uuid(1::smallint, 1)").await,
        None
    );
    assert_eq!(
        sqlstate(&mut analyst, "SELECT aveloxis.add_repo('https://github.com/a/b')")
            .await
            .as_deref(),
        DENIED
    );
    assert_eq!(
        sqlstate(&mut analyst, "DELETE FROM aveloxis_data.repos")
            .await
            .as_deref(),
        DENIED
    );
    assert_eq!(
        sqlstate(&mut analyst, "SELECT * FROM aveloxis_ops.forge_hosts")
            .await
            .as_deref(),
        DENIED
    );
    analyst.close().await.unwrap();

    let mut admin = db.connect_as(&format!("{n}_admin")).await;
    assert_eq!(
        sqlstate(
            &mut admin,
            "SELECT aveloxis.add_forge_host('ghe.example.com', 1::smallint)"
        )
        .await,
        None
    );
    assert_eq!(
        sqlstate(&mut admin, "SELECT * FROM aveloxis_ops.forge_hosts").await,
        None
    );
    assert_eq!(
        sqlstate(&mut admin, "SELECT aveloxis.add_repo('https://ghe.example.com/a/b')").await,
        None
    );
    admin.close().await.unwrap();

    let mut nobody = db.connect_as(&format!("{n}_nobody")).await;
    assert_eq!(
        sqlstate(&mut nobody, "SELECT aveloxis.version()").await.as_deref(),
        DENIED
    );
    assert_eq!(
        sqlstate(&mut nobody, "SELECT count(*) FROM aveloxis_data.repos")
            .await
            .as_deref(),
        DENIED
    );
    nobody.close().await.unwrap();

    let mut conn = db.connect().await;
    let repos: Vec<(String, i16)> =
        sqlx::query_as("SELECT repo_git, platform_id FROM aveloxis_data.repos ORDER BY repo_id")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(
        repos,
        [
            ("https://github.com/chaoss/augur2".into(), 1),
            ("https://ghe.example.com/a/b".into(), 1)
        ]
    );
    conn.close().await.unwrap();
    drop_login_roles(&db).await;
}

#[tokio::test]
async fn security_definer_functions_pin_their_search_path() {
    let db = TestDb::with_extension("privileges_search_path").await;
    let mut conn = db.connect().await;
    let unpinned: Vec<String> = sqlx::query_scalar(
        "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname LIKE 'aveloxis%' AND p.prosecdef
           AND NOT coalesce(p.proconfig, '{}') @> ARRAY['search_path=pg_catalog, aveloxis, pg_temp']",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(
        unpinned.is_empty(),
        "SECURITY DEFINER without a pinned search_path: {unpinned:?}"
    );
    let definers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = 'aveloxis' AND p.prosecdef",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(
        definers >= 5,
        "expected the writing API to be SECURITY DEFINER, found {definers}"
    );
}

#[tokio::test]
async fn agents_stage_and_drain_but_cannot_touch_what_the_drain_owns() {
    let db = TestDb::with_extension("privileges_staging").await;
    login_roles(&db).await;
    let n = db.name.clone();
    let mut agent = db.connect_as(&format!("{n}_agent")).await;
    let repo: i64 = sqlx::query_scalar("SELECT aveloxis.add_repo('https://github.com/o/r')")
        .fetch_one(&mut agent)
        .await
        .unwrap();
    // Agents stage through aveloxis.stage() under a lease; the table itself is closed to
    // them (0.6.0 granted INSERT and COPY on it, for any repository).
    let token: sqlx::types::Uuid = sqlx::query_scalar(&format!(
        "SELECT lease_token FROM aveloxis.claim_repo('a', {repo}, 'collect')"
    ))
    .fetch_one(&mut agent)
    .await
    .unwrap();
    let staged: i64 = sqlx::query_scalar("SELECT aveloxis.stage($1, 'issue', $2)")
        .bind(token)
        .bind(vec![
            r#"{"id": 9, "number": 1, "title": "t", "state": "open"}"#.to_string(),
            r#"{"id": 10, "number": 2, "title": "copied", "state": "open"}"#.to_string(),
        ])
        .fetch_one(&mut agent)
        .await
        .unwrap();
    assert_eq!(staged, 2);
    let direct = format!(
        "INSERT INTO aveloxis_ops.staging (repo_id, platform_id, entity, payload)
         VALUES ({repo}, 1, 'issue', '{{\"id\": 11, \"number\": 3}}')"
    );
    assert_eq!(sqlstate(&mut agent, &direct).await.as_deref(), DENIED);
    let copy_refused = agent
        .copy_in_raw("COPY aveloxis_ops.staging (repo_id, platform_id, entity, payload) FROM STDIN")
        .await
        .is_err();
    assert!(copy_refused, "COPY into staging must be refused to agents");
    assert_eq!(
        sqlstate(&mut agent, &format!("CALL aveloxis.drain({repo})")).await,
        None
    );
    assert_eq!(
        sqlstate(&mut agent, "UPDATE aveloxis_ops.staging SET drained_at = NULL")
            .await
            .as_deref(),
        DENIED
    );
    assert_eq!(
        sqlstate(
            &mut agent,
            &format!(
                "INSERT INTO aveloxis_ops.staging (repo_id, platform_id, entity, payload, drained_at)
                 VALUES ({repo}, 1, 'issue', '{{}}', now())"
            )
        )
        .await
        .as_deref(),
        DENIED
    );
    assert_eq!(
        sqlstate(&mut agent, "SELECT * FROM aveloxis_ops.staging_rejects")
            .await
            .as_deref(),
        DENIED
    );
    assert_eq!(
        sqlstate(&mut agent, "SELECT aveloxis_ops.resolve_users()")
            .await
            .as_deref(),
        DENIED
    );
    agent.close().await.unwrap();

    let mut conn = db.connect().await;
    let titles: Vec<String> = sqlx::query_scalar("SELECT issue_title FROM aveloxis_data.issues ORDER BY issue_number")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(titles, ["t", "copied"]);
    conn.close().await.unwrap();
    drop_login_roles(&db).await;
}
