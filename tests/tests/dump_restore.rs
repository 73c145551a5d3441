//! pg_dump keeps what the extension holds: a dump restored into a new database has
//! the repos, their URL history, DBA-added forge hosts, and identity sequences that
//! continue where they were.

use harness::sqlx;
use harness::TestDb;

#[tokio::test]
async fn dump_and_restore_keep_registry_data() {
    let source = TestDb::with_extension("dump_source").await;
    source
        .execute(
            "SELECT aveloxis.add_forge_host('gitlab.example.org', 2::smallint);
             SELECT aveloxis.add_repo('https://github.com/chaoss/augur', 'CHAOSS');
             SELECT aveloxis.add_repo('https://gitlab.example.org/group/sub/project');
             SELECT aveloxis.add_repo('/srv/git/local.git');
             SELECT aveloxis.record_rename(1, 'https://github.com/chaoss/augur-renamed');",
        )
        .await;
    // Some data for the read side: two issues by two people, a comment.
    source
        .stage(
            1,
            "issue",
            &[
                r#"{"id": 11, "number": 1, "title": "one", "state": "closed", "user": {"login": "alice", "id": 501, "type": "User"},
                    "created_at": "2024-01-02T03:04:05Z", "closed_at": "2024-01-05T00:00:00Z"}"#
                    .to_string(),
                r#"{"id": 12, "number": 2, "title": "two", "state": "open", "user": {"login": "bob", "id": 502, "type": "User"},
                    "created_at": "2024-02-02T03:04:05Z"}"#
                    .to_string(),
            ],
        )
        .await;
    source
        .stage(
            1,
            "issue_comment",
            &[
                r#"{"id": 21, "issue_url": "https://api.github.com/repos/chaoss/augur-renamed/issues/2",
                  "user": {"login": "carol", "id": 503, "type": "User"}, "body": "+1",
                  "created_at": "2024-02-03T00:00:00Z", "updated_at": "2024-02-03T00:00:00Z"}"#
                    .to_string(),
            ],
        )
        .await;
    source.drain(1).await;
    source.execute("CALL aveloxis.refresh_views()").await;
    let dump = source.pg_program("pg_dump", &["--format=custom"]).stdout;
    let dump_path = std::env::temp_dir().join(format!("{}.dump", source.name));
    std::fs::write(&dump_path, dump).unwrap();

    let target = TestDb::empty("dump_target").await;
    target.pg_program("pg_restore", &["--exit-on-error", dump_path.to_str().unwrap()]);
    std::fs::remove_file(&dump_path).unwrap();

    let mut conn = target.connect().await;
    let repos: Vec<(i64, String, i16, String)> = sqlx::query_as(
        "SELECT r.repo_id, r.repo_git, r.platform_id, g.rg_name
         FROM aveloxis_data.repos r JOIN aveloxis_data.repo_groups g USING (repo_group_id) ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        repos,
        [
            (1, "https://github.com/chaoss/augur-renamed".into(), 1, "CHAOSS".into()),
            (
                2,
                "https://gitlab.example.org/group/sub/project".into(),
                2,
                "Default".into()
            ),
            (3, "/srv/git/local.git".into(), 3, "Default".into()),
        ]
    );
    let old_url: Option<i64> = sqlx::query_scalar("SELECT aveloxis.resolve_repo('https://github.com/chaoss/augur')")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(old_url, Some(1), "URL history survives the dump");
    let hosts: Vec<String> = sqlx::query_scalar("SELECT host FROM aveloxis_ops.forge_hosts ORDER BY host")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        hosts,
        ["github.com", "gitlab.com", "gitlab.example.org"],
        "seeds once, DBA rows kept"
    );
    let next: i64 = sqlx::query_scalar("SELECT aveloxis.add_repo('https://github.com/chaoss/grimoirelab', 'CHAOSS')")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(next, 4, "the identity sequence continues after the restored rows");

    // The daily activity is derived, not dumped: the triggers rebuilt it as the rows were
    // restored, once (a dumped copy would have been counted twice).
    let (opened, closed, comments, newcomers): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT sum(issues_opened)::bigint, sum(issues_closed)::bigint, sum(comments)::bigint,
                sum(new_contributors)::bigint FROM aveloxis_data.repo_daily_activity",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!((opened, closed, comments, newcomers), (2, 1, 1, 3));
    let differing: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ((TABLE aveloxis_data.repo_daily_activity
                                EXCEPT ALL SELECT * FROM aveloxis_ops.activity_from_scratch(NULL))
                               UNION ALL (SELECT * FROM aveloxis_ops.activity_from_scratch(NULL)
                                          EXCEPT ALL TABLE aveloxis_data.repo_daily_activity)) d",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(differing, 0);
    // The views come back empty (a dump holds no view data) and refresh from the data.
    drop(conn);
    target.execute("CALL aveloxis.refresh_views()").await;
    let mut conn = target.connect().await;
    let actions: i64 = sqlx::query_scalar("SELECT count(*) FROM aveloxis_augur_data.explorer_contributor_actions")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(actions, 3, "two issues opened and a comment");
}
