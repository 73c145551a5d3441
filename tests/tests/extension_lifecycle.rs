//! CREATE EXTENSION creates what DESIGN §5 promises; DROP EXTENSION takes it all away
//! but the roles; a second CREATE works with the roles already there.

use harness::sqlx::{self, Row};
use harness::TestDb;

async fn objects_in_our_schemas(db: &TestDb) -> i64 {
    let mut conn = db.connect().await;
    sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM pg_namespace WHERE nspname IN ('aveloxis', 'aveloxis_ops', 'aveloxis_data'))
              + (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname LIKE 'aveloxis%')
              + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                 WHERE n.nspname LIKE 'aveloxis%')
              + (SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                 WHERE n.nspname LIKE 'aveloxis%')",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap()
}

#[tokio::test]
async fn create_extension_builds_schemas_platforms_roles_and_version() {
    let db = TestDb::with_extension("lifecycle_create").await;
    let mut conn = db.connect().await;

    let schemas: Vec<String> =
        sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'aveloxis%' ORDER BY 1")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(
        schemas,
        ["aveloxis", "aveloxis_augur_data", "aveloxis_data", "aveloxis_ops"]
    );

    let platforms: Vec<(i16, String)> =
        sqlx::query_as("SELECT platform_id, platform_name FROM aveloxis_data.platforms ORDER BY 1")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(
        platforms,
        [(1, "GitHub".into()), (2, "GitLab".into()), (3, "Git".into())]
    );

    let roles =
        sqlx::query("SELECT rolname::text, rolcanlogin FROM pg_roles WHERE rolname LIKE 'aveloxis\\_%' ORDER BY 1")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let roles: Vec<(String, bool)> = roles.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        roles,
        [
            ("aveloxis_admin".into(), false),
            ("aveloxis_agent".into(), false),
            ("aveloxis_analyst".into(), false)
        ]
    );

    let (lib, ext): (String, String) =
        sqlx::query_as("SELECT aveloxis.version(), extversion FROM pg_extension WHERE extname = 'pg_aveloxis'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(lib, harness::extension_version());
    assert_eq!(ext, harness::extension_version());

    // Every object in our schemas is an extension member: nothing escapes DROP EXTENSION.
    let strays: Vec<String> = sqlx::query_scalar(
        "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname LIKE 'aveloxis%' AND c.relkind IN ('r', 'v', 'm', 'S', 'p')
           AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                           AND d.objid = c.oid AND d.deptype = 'e')",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(strays.is_empty(), "relations outside the extension: {strays:?}");
}

#[tokio::test]
async fn drop_extension_leaves_only_the_roles_and_create_works_again() {
    let db = TestDb::with_extension("lifecycle_drop").await;
    db.execute("SELECT aveloxis.add_repo('https://github.com/chaoss/augur')")
        .await;
    assert!(objects_in_our_schemas(&db).await > 0);

    db.execute("DROP EXTENSION pg_aveloxis").await;
    assert_eq!(
        objects_in_our_schemas(&db).await,
        0,
        "DROP EXTENSION left objects behind"
    );
    let mut conn = db.connect().await;
    let roles: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'aveloxis\\_%'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(roles, 3, "the roles are cluster-wide and stay (docs/operations.md)");

    // Roles already exist now: the install script must not trip over them.
    db.execute("CREATE EXTENSION pg_aveloxis").await;
    let repos: i64 = sqlx::query_scalar("SELECT count(*) FROM aveloxis_data.repos")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(repos, 0);
}

#[tokio::test]
async fn the_extension_refuses_another_schema() {
    let db = TestDb::empty("lifecycle_schema").await;
    let mut conn = db.connect().await;
    sqlx::raw_sql("CREATE SCHEMA elsewhere")
        .execute(&mut conn)
        .await
        .unwrap();
    let err = sqlx::raw_sql("CREATE EXTENSION pg_aveloxis SCHEMA elsewhere")
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("must be installed in schema"), "{err}");
}

/// Roles are cluster-wide: CREATE EXTENSION in two databases of a new cluster at once
/// must not fail because the other session created the role first. Session A holds an
/// uncommitted CREATE ROLE; session B, asking for the same role, waits on pg_authid's
/// unique index; when A commits, B must succeed instead of raising 23505.
#[tokio::test]
async fn ensure_role_survives_a_concurrent_creator() {
    use harness::sqlx::Connection;

    let db = TestDb::with_extension("lifecycle_role_race").await;
    let role = format!("{}_raced", db.name);
    let mut a = db.connect().await;
    let mut b = db.connect().await;
    let b_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut b)
        .await
        .unwrap();

    let mut tx = a.begin().await.unwrap();
    sqlx::query("SELECT aveloxis_ops.ensure_role($1)")
        .bind(&role)
        .execute(&mut *tx)
        .await
        .unwrap();

    let b_call = tokio::spawn({
        let role = role.clone();
        async move {
            let result = sqlx::query("SELECT aveloxis_ops.ensure_role($1)")
                .bind(&role)
                .execute(&mut b)
                .await;
            (result.map(|_| ()), b)
        }
    });
    // Wait until B is blocked behind A's uncommitted role (a state, not a duration).
    let mut observer = db.connect().await;
    loop {
        let waiting: bool =
            sqlx::query_scalar("SELECT coalesce(wait_event_type = 'Lock', false) FROM pg_stat_activity WHERE pid = $1")
                .bind(b_pid)
                .fetch_one(&mut observer)
                .await
                .unwrap();
        if waiting {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    tx.commit().await.unwrap();
    let (result, _b) = b_call.await.unwrap();
    assert!(result.is_ok(), "the second creator failed: {result:?}");

    let roles: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_roles WHERE rolname = $1")
        .bind(&role)
        .fetch_one(&mut observer)
        .await
        .unwrap();
    assert_eq!(roles, 1);
    sqlx::raw_sql(&format!("DROP ROLE {role}"))
        .execute(&mut observer)
        .await
        .unwrap();
}
