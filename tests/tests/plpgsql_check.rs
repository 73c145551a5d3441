//! plpgsql_check (Debian postgresql-15-plpgsql-check, installed by scripts/setup.sh)
//! over every PL/pgSQL routine of the extension: no errors, and its security warnings
//! (SQL injection through EXECUTE, SECURITY DEFINER without a pinned search_path, ...)
//! reviewed: there are none, and a new one fails this test.
//!
//! Scratch tables the drain creates at run time are made first, in the same transaction,
//! by draining one staged commit and one removal, so the checker sees every table the
//! code uses.

use harness::sqlx::{self, Connection};
use harness::TestDb;

/// Findings accepted after review, as (routine, SQLSTATE): what the checker cannot see.
const REVIEWED: &[(&str, &str, &str)] = &[
    (
        "aveloxis.schedule()",
        "3F000",
        "pg_cron is not installed in this database: schedule() checks for it first and says what to install",
    ),
    (
        "aveloxis.unschedule()",
        "42P01",
        "pg_cron is not installed in this database: unschedule() returns before reading cron.job",
    ),
];

#[tokio::test]
async fn every_plpgsql_routine_passes_plpgsql_check() {
    let db = TestDb::with_extension("plpgsql_check").await;
    let mut conn = db.connect().await;
    sqlx::raw_sql("CREATE EXTENSION plpgsql_check")
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| {
            panic!("CREATE EXTENSION plpgsql_check: {e} (scripts/setup.sh installs postgresql-15-plpgsql-check)")
        });
    let mut tx = conn.begin().await.unwrap();
    // The drain's scratch tables, as a drain makes them (ON COMMIT DROP ones included).
    let repo: i64 = sqlx::query_scalar("SELECT aveloxis.add_repo('/srv/git/checked.git')")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    let commit = serde_json::json!({
        "hash": "a".repeat(40), "parents": [], "message": "m\n",
        "author": {"name": "A", "email": "a@example.com", "time": "2024-01-02T03:04:05+02:00"},
        "committer": {"name": "A", "email": "a@example.com", "time": "2024-01-02T03:04:05+02:00"},
        "files": [{"path": "f", "added": 1, "removed": 0}]
    });
    sqlx::query(
        "INSERT INTO aveloxis_ops.staging (repo_id, platform_id, entity, payload)
         VALUES ($1, 3, 'commit', $2), ($1, 3, 'commit_removed', $3)",
    )
    .bind(repo)
    .bind(commit.to_string())
    .bind(serde_json::json!({"hash": "b".repeat(40)}).to_string())
    .execute(&mut *tx)
    .await
    .unwrap();
    // The same commit in a second repository of the group: its aggregates are recomputed
    // over both (the scratch table of that path), not copied.
    let sibling: i64 = sqlx::query_scalar("SELECT aveloxis.add_repo('/srv/git/checked-fork.git')")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO aveloxis_ops.staging (repo_id, platform_id, entity, payload) VALUES ($1, 3, 'commit', $2)",
    )
    .bind(sibling)
    .bind(commit.to_string())
    .execute(&mut *tx)
    .await
    .unwrap();
    // And one payload of each GitHub entity whose mapper makes a table of its own.
    let github: i64 = sqlx::query_scalar("SELECT aveloxis.add_repo('https://github.com/o/checked')")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    let url = "https://api.github.com/repos/o/checked";
    for (entity, payload) in [
        // A field that does not fit makes the drain's unfit_fields table.
        (
            "issue",
            serde_json::json!({"id": 5, "number": 1, "title": "t", "state": "open", "comments": "x"}),
        ),
        (
            "issue_event",
            serde_json::json!({"id": 1, "event": "closed", "issue": {"number": 1}}),
        ),
        ("release", serde_json::json!({"id": 2, "tag_name": "v1"})),
        ("repo_info", serde_json::json!({"id": 3, "full_name": "o/checked"})),
        (
            "review_comment",
            serde_json::json!({"id": 4, "pull_request_url": format!("{url}/pulls/1")}),
        ),
    ] {
        sqlx::query("INSERT INTO aveloxis_ops.staging (repo_id, platform_id, entity, payload) VALUES ($1, 1, $2, $3)")
            .bind(github)
            .bind(entity)
            .bind(payload.to_string())
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    for target in [repo, sibling, github] {
        let run: i64 = sqlx::query_scalar("SELECT aveloxis.drain_begin($1)")
            .bind(target)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        for _ in 0..20 {
            let step: String = sqlx::query_scalar("SELECT aveloxis.drain_step($1, $2, 10)")
                .bind(target)
                .bind(run)
                .fetch_one(&mut *tx)
                .await
                .unwrap();
            if step == "done" {
                break;
            }
        }
    }
    // The dependency parse's, the package apply's and the vulnerability apply's scratch
    // tables (ON COMMIT DROP), as a parse and two applies with nothing staged make them.
    for statement in [
        format!("SELECT aveloxis_ops.parse_repo_dependencies({repo}, NULL, NULL, 'reparse', now())"),
        format!("SELECT aveloxis_ops.packages_apply({repo}, -1, '{{}}')"),
        format!("SELECT aveloxis_ops.vulnerabilities_apply({repo}, -1, '{{}}')"),
    ] {
        sqlx::raw_sql(&statement)
            .execute(&mut *tx)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }

    // The checker does report what this test looks for: an injectable EXECUTE.
    sqlx::raw_sql(
        "CREATE FUNCTION pg_temp.injectable(t text) RETURNS void LANGUAGE plpgsql AS
         $f$ BEGIN EXECUTE 'SELECT ' || t; END $f$",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    let levels: Vec<String> = sqlx::query_scalar(
        "SELECT level FROM plpgsql_check_function_tb('pg_temp.injectable(text)', security_warnings => true)",
    )
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    assert!(
        levels.iter().any(|l| l == "security"),
        "plpgsql_check reported {levels:?}"
    );

    // (routine, level, SQLSTATE, line, message)
    type Finding = (String, String, Option<String>, Option<i32>, String);
    let findings: Vec<Finding> = sqlx::query_as(
        "SELECT p.oid::regprocedure::text, c.level, c.sqlstate, c.lineno, c.message
         FROM pg_proc p
         JOIN pg_namespace n ON n.oid = p.pronamespace
         JOIN pg_language l ON l.oid = p.prolang,
         LATERAL plpgsql_check_function_tb(p.oid, security_warnings => true) c
         WHERE n.nspname IN ('aveloxis', 'aveloxis_ops') AND l.lanname = 'plpgsql'
           AND p.prorettype <> 'trigger'::regtype
           AND c.level IN ('error', 'security')
         ORDER BY 1, 4",
    )
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    let checked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         JOIN pg_language l ON l.oid = p.prolang
         WHERE n.nspname IN ('aveloxis', 'aveloxis_ops') AND l.lanname = 'plpgsql'",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert!(checked > 50, "the extension's PL/pgSQL routines were found ({checked})");
    tx.rollback().await.unwrap();

    let unexpected: Vec<String> = findings
        .iter()
        .filter(|(routine, _, state, _, _)| {
            !REVIEWED
                .iter()
                .any(|(r, s, _)| r == routine && Some(*s) == state.as_deref())
        })
        .map(|(routine, level, state, line, message)| format!("{routine} line {line:?}: {level} {state:?}: {message}"))
        .collect();
    assert!(
        unexpected.is_empty(),
        "plpgsql_check found, in {checked} routines:\n{}",
        unexpected.join("\n")
    );
    // The reviewed findings are still there (else the list above is stale).
    for (routine, state, why) in REVIEWED {
        assert!(
            findings
                .iter()
                .any(|(r, _, s, _, _)| r == routine && s.as_deref() == Some(*state)),
            "reviewed finding {routine} {state} ({why}) no longer appears: remove it from REVIEWED"
        );
    }
}
