//! Upgrades from day one (docs/upgrades.md).
//!
//! 1. A database built from the oldest released install script plus every upgrade
//!    script must have the same schema as a fresh install of the current version.
//! 2. The current version's released (frozen) install script must build the same
//!    schema as the one the code generates now: a schema change without a version
//!    bump and an upgrade script fails here.
//!
//! "Same schema" = `pg_dump --schema-only` output, normalized, after dissolving the
//! extension membership (pg_dump omits member objects) and initial privileges (so
//! grants are compared too), plus the tables registered for pg_dump's data.

use std::path::{Path, PathBuf};

use harness::sqlx;
use harness::{diff, extension_version, pg_extension_dir, repo_root, TestDb};

type Version = (u64, u64, u64);

fn parse_version(v: &str) -> Option<Version> {
    let mut parts = v.split('.').map(|p| p.parse::<u64>().ok());
    let version = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(version)
}

/// Released install scripts `migrations/pg_aveloxis--<x.y.z>.sql`, oldest first.
fn frozen_install_scripts() -> Vec<(Version, String, PathBuf)> {
    let mut found: Vec<_> = std::fs::read_dir(repo_root().join("migrations"))
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name()?.to_str()?.to_string();
            let version = name.strip_prefix("pg_aveloxis--")?.strip_suffix(".sql")?.to_string();
            Some((parse_version(&version)?, version, path))
        })
        .collect();
    found.sort();
    found
}

/// The schema of a database as text that differs only where the schemas differ.
async fn normalized_schema(db: &TestDb) -> String {
    // pg_dump leaves extension members out (CREATE EXTENSION recreates them): dissolve
    // the membership so it dumps every object, and drop the recorded initial privileges
    // so it dumps every grant. The database is thrown away afterwards.
    db.execute(
        "DELETE FROM pg_depend WHERE deptype = 'e' AND refclassid = 'pg_extension'::regclass
           AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_aveloxis');
         DELETE FROM pg_init_privs WHERE privtype = 'e';",
    )
    .await;
    let out = db.pg_program("pg_dump", &["--schema-only", "--no-tablespaces"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| {
            !(l.is_empty()
                || l.starts_with("--")
                || l.starts_with("SET ")
                || l.starts_with("SELECT pg_catalog.set_config")
                // pg_dump >= 15.14 fences its output with a random key (CVE-2025-8714).
                || l.starts_with("\\restrict ")
                || l.starts_with("\\unrestrict "))
        })
        .collect();
    // An object's ACL lists grants in the order they were made, which differs between
    // an upgraded and a fresh database without meaning anything: sort each run of
    // GRANT/REVOKE lines.
    let mut normalized = String::new();
    let mut acl_run: Vec<&str> = Vec::new();
    for line in lines.into_iter().chain(std::iter::once("")) {
        if line.starts_with("GRANT ") || line.starts_with("REVOKE ") {
            acl_run.push(line);
            continue;
        }
        acl_run.sort_unstable();
        for acl in acl_run.drain(..) {
            normalized.push_str(acl);
            normalized.push('\n');
        }
        if !line.is_empty() {
            normalized.push_str(line);
            normalized.push('\n');
        }
    }
    normalized
}

/// What pg_dump will keep the data of: extension tables and sequences registered with
/// pg_extension_config_dump, and their filters.
async fn config_dump_registrations(db: &TestDb) -> Vec<(String, String)> {
    let mut conn = db.connect().await;
    sqlx::query_as(
        "SELECT cfg::regclass::text, coalesce(cond, '')
         FROM pg_extension, unnest(extconfig, extcondition) AS u(cfg, cond)
         WHERE extname = 'pg_aveloxis' ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
}

/// Installs a frozen script under a test-only version name, removed when dropped.
struct AliasScript(PathBuf);

impl AliasScript {
    fn install(frozen: &Path, alias_version: &str) -> AliasScript {
        let dir = pg_extension_dir();
        let target = dir.join(format!("pg_aveloxis--{alias_version}.sql"));
        let tmp = dir.join(format!(".pg_aveloxis--{alias_version}.sql.{}", std::process::id()));
        std::fs::copy(frozen, &tmp)
            .and_then(|_| std::fs::rename(&tmp, &target))
            .unwrap_or_else(|e| {
                panic!(
                    "cannot write {} ({e}): the upgrade test installs scripts into PostgreSQL's extension \
                     directory; run it as root, as scripts/test.sh does in CI",
                    target.display()
                )
            });
        AliasScript(target)
    }
}

impl Drop for AliasScript {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test]
async fn oldest_release_plus_upgrades_equals_fresh_install() {
    let current = extension_version();
    let frozen = frozen_install_scripts();
    let (_, oldest, oldest_path) = frozen.first().expect("migrations/ holds no released install script");

    // The oldest release's frozen script is in the extension directory under its own
    // name unless it is the current version, whose name the generated script holds.
    let _alias;
    let start_version = if *oldest == current {
        _alias = AliasScript::install(oldest_path, &format!("{current}-frozen-chain"));
        format!("{current}-frozen-chain")
    } else {
        oldest.clone()
    };

    let upgraded = TestDb::empty("upgrade_chain").await;
    upgraded
        .execute(&format!("CREATE EXTENSION pg_aveloxis VERSION '{start_version}'"))
        .await;
    if *oldest != current {
        upgraded.execute("ALTER EXTENSION pg_aveloxis UPDATE").await;
    }
    let mut conn = upgraded.connect().await;
    let version: String = sqlx::query_scalar("SELECT extversion FROM pg_extension WHERE extname = 'pg_aveloxis'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let expected_version = if start_version == *oldest {
        current.clone()
    } else {
        start_version.clone()
    };
    assert_eq!(
        version, expected_version,
        "ALTER EXTENSION UPDATE did not reach the current version"
    );

    let fresh = TestDb::with_extension("upgrade_fresh").await;

    assert_eq!(
        config_dump_registrations(&upgraded).await,
        config_dump_registrations(&fresh).await,
        "tables registered with pg_extension_config_dump differ: an upgrade script must register what it creates"
    );
    let (a, b) = (normalized_schema(&upgraded).await, normalized_schema(&fresh).await);
    assert!(
        a == b,
        "the schema after upgrading from {oldest} differs from a fresh install of {current}:\n{}",
        diff(&format!("{oldest} + upgrades"), &a, &format!("fresh {current}"), &b)
    );
}

#[tokio::test]
async fn current_version_is_frozen_and_unchanged() {
    let current = extension_version();
    let frozen = frozen_install_scripts();
    let Some((_, _, frozen_path)) = frozen.iter().find(|(_, v, _)| *v == current) else {
        panic!(
            "migrations/pg_aveloxis--{current}.sql is missing: every version that lands is released, so \
             freeze its install script with scripts/freeze-release.sh (docs/upgrades.md)"
        );
    };
    let _alias = AliasScript::install(frozen_path, &format!("{current}-frozen-check"));
    let released = TestDb::empty("frozen_released").await;
    released
        .execute(&format!(
            "CREATE EXTENSION pg_aveloxis VERSION '{current}-frozen-check'"
        ))
        .await;
    let generated = TestDb::with_extension("frozen_generated").await;

    assert_eq!(
        config_dump_registrations(&released).await,
        config_dump_registrations(&generated).await
    );
    let (a, b) = (normalized_schema(&released).await, normalized_schema(&generated).await);
    assert!(
        a == b,
        "the code's schema differs from released {current}: bump the version in pg_aveloxis/Cargo.toml, \
         write migrations/pg_aveloxis--{current}--<new>.sql and freeze the new version (docs/upgrades.md):\n{}",
        diff(&format!("released {current}"), &a, "generated now", &b)
    );
}

#[test]
fn upgrade_scripts_chain_from_released_versions() {
    // Every upgrade script starts at a version that has a frozen install script or is
    // reached by another upgrade: no dangling scripts, nothing edited by hand into a gap.
    let frozen: Vec<String> = frozen_install_scripts().into_iter().map(|(_, v, _)| v).collect();
    for entry in std::fs::read_dir(repo_root().join("migrations")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let Some(body) = name.strip_prefix("pg_aveloxis--").and_then(|n| n.strip_suffix(".sql")) else {
            panic!("unexpected file in migrations/: {name}");
        };
        if let Some((from, to)) = body.split_once("--") {
            assert!(
                parse_version(from).is_some() && parse_version(to).is_some(),
                "bad versions in {name}"
            );
            assert!(
                frozen.contains(&from.to_string()),
                "{name} starts from {from}, which was never released"
            );
            assert!(
                frozen.contains(&to.to_string()),
                "{name} ends at {to}, which has no frozen install script"
            );
        } else {
            assert!(parse_version(body).is_some(), "bad version in {name}");
        }
    }
}

#[tokio::test]
async fn data_from_the_oldest_release_survives_the_upgrades() {
    let current = extension_version();
    let frozen = frozen_install_scripts();
    let (_, oldest, oldest_path) = frozen.first().expect("no released install script");
    let _alias;
    let start_version = if *oldest == current {
        _alias = AliasScript::install(oldest_path, &format!("{current}-frozen-data"));
        format!("{current}-frozen-data")
    } else {
        oldest.clone()
    };
    let db = TestDb::empty("upgrade_live_data").await;
    db.execute(&format!("CREATE EXTENSION pg_aveloxis VERSION '{start_version}'"))
        .await;
    // What 0.1.0 offered: the registry.
    db.execute(
        "SELECT aveloxis.add_repo('https://github.com/chaoss/augur', 'CHAOSS');
         SELECT aveloxis.add_repo('/srv/git/local.git');
         SELECT aveloxis.record_rename(1, 'https://github.com/chaoss/augur-next');",
    )
    .await;
    if *oldest != current {
        db.execute("ALTER EXTENSION pg_aveloxis UPDATE").await;
    }
    let mut conn = db.connect().await;
    let repos: Vec<(i64, String)> = sqlx::query_as("SELECT repo_id, repo_git FROM aveloxis_data.repos ORDER BY 1")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        repos,
        [
            (1, "https://github.com/chaoss/augur-next".into()),
            (2, "/srv/git/local.git".into())
        ]
    );
    let old: Option<i64> = sqlx::query_scalar("SELECT aveloxis.resolve_repo('https://github.com/chaoss/augur')")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(old, Some(1));
    let next: i64 = sqlx::query_scalar("SELECT aveloxis.add_repo('https://github.com/chaoss/grimoirelab')")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(next, 3, "identity sequences continue across the upgrade");
    if *oldest != current {
        // The upgraded database does what the current version does: stage and drain.
        sqlx::query(
            "INSERT INTO aveloxis_ops.staging (repo_id, platform_id, entity, payload)
             VALUES (1, 1, 'issue', '{\"id\": 1, \"number\": 1, \"title\": \"after upgrade\", \"state\": \"open\"}')",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        sqlx::query("CALL aveloxis.drain(1)").execute(&mut conn).await.unwrap();
        let title: String = sqlx::query_scalar("SELECT issue_title FROM aveloxis_data.issues")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(title, "after upgrade");
        // Repositories registered before the queue existed were enqueued by the upgrade (and
        // by 0.15.0's for analysis and scorecard); the one added after it by add_repo.
        let jobs: Vec<(i64, String)> = sqlx::query_as("SELECT repo_id, phase FROM aveloxis_ops.jobs ORDER BY 1, 2")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        let expected: Vec<(i64, String)> = [
            (1, "analysis"),
            (1, "collect"),
            (1, "distribution"),
            (1, "facade"),
            (1, "packages"),
            (1, "scorecard"),
            (1, "vulnerabilities"),
            (2, "analysis"),
            (2, "facade"),
            (2, "packages"),
            (2, "vulnerabilities"),
            (3, "analysis"),
            (3, "collect"),
            (3, "distribution"),
            (3, "facade"),
            (3, "packages"),
            (3, "scorecard"),
            (3, "vulnerabilities"),
        ]
        .into_iter()
        .map(|(r, p)| (r, p.to_string()))
        .collect();
        assert_eq!(jobs, expected);
    }
}

#[tokio::test]
async fn leases_held_under_0_6_0_survive_the_update_to_0_7_0() {
    // 0.6.0 leases had no token. After ALTER EXTENSION UPDATE nobody can finish them (no
    // token exists); they expire after their lease length, the job returns to the queue
    // with the attempt counted, and what the old agent staged is drained.
    let db = TestDb::empty("upgrade_leases").await;
    db.execute(
        "CREATE EXTENSION pg_aveloxis VERSION '0.6.0';
         SELECT aveloxis.add_repo('https://github.com/o/leased');",
    )
    .await;
    let mut conn = db.connect().await;
    let job: i64 =
        sqlx::query_scalar("SELECT job_id FROM aveloxis.claim('old-agent', ARRAY['collect'], 1, '10 minutes')")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    sqlx::query(
        "INSERT INTO aveloxis_ops.staging (repo_id, platform_id, entity, payload)
         VALUES (1, 1, 'issue', '{\"id\": 5, \"number\": 5, \"title\": \"staged by 0.6.0\", \"state\": \"open\"}')",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    drop(conn);
    db.execute("ALTER EXTENSION pg_aveloxis UPDATE").await;

    let mut conn = db.connect().await;
    // The old agent's calls no longer exist; no token can finish the lease.
    let old = sqlx::query("SELECT aveloxis.complete($1, '{}'::jsonb, 'old-agent')")
        .bind(job)
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(old.to_string().contains("does not exist"), "{old}");
    let forged = sqlx::query("SELECT aveloxis.complete($1, gen_random_uuid(), '{}')")
        .bind(job)
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(forged.to_string().contains("lease token"), "{forged}");
    let (status, _): (String, String) =
        sqlx::query_as("SELECT status, reason FROM aveloxis.why_not_collected(1) WHERE phase = 'collect'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(status, "leased", "the lease holds until it expires");
    // Past its length, the job comes back, attempt counted, with a token.
    sqlx::query("SELECT aveloxis.set_setting('clock.offset', '11 minutes')")
        .execute(&mut conn)
        .await
        .unwrap();
    let (again, attempt, token): (i64, i32, sqlx::types::Uuid) =
        sqlx::query_as("SELECT job_id, attempt, lease_token FROM aveloxis.claim('new-agent', ARRAY['collect'], 1)")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!((again, attempt), (job, 2));
    sqlx::query("CALL aveloxis.drain(1)").execute(&mut conn).await.unwrap();
    sqlx::query("SELECT aveloxis.complete($1, $2, '{}')")
        .bind(job)
        .bind(token)
        .execute(&mut conn)
        .await
        .unwrap();
    let title: String = sqlx::query_scalar("SELECT issue_title FROM aveloxis_data.issues")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(title, "staged by 0.6.0");
    let outcomes: Vec<String> = sqlx::query_scalar("SELECT outcome FROM aveloxis_ops.job_runs ORDER BY run_id")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(outcomes, ["lease_expired", "complete"]);
}

/// Data stored under 0.7.0 is on the read side after the update to 0.8.0: the daily
/// activity is rebuilt by the upgrade script and the views hold it.
#[tokio::test]
async fn data_stored_under_0_7_0_reaches_the_read_side_after_the_update() {
    let db = TestDb::empty("upgrade_read_side").await;
    db.execute("CREATE EXTENSION pg_aveloxis VERSION '0.7.0'").await;
    db.execute(
        "SELECT aveloxis.add_repo('https://github.com/chaoss/augur', 'CHAOSS');
         INSERT INTO aveloxis_ops.staging (repo_id, platform_id, entity, payload) VALUES
           (1, 1, 'issue', '{\"id\": 11, \"number\": 1, \"title\": \"one\", \"state\": \"closed\",
                             \"user\": {\"login\": \"alice\", \"id\": 501, \"type\": \"User\"},
                             \"created_at\": \"2024-01-02T03:04:05Z\", \"closed_at\": \"2024-01-05T00:00:00Z\"}'),
           (1, 1, 'issue', '{\"id\": 12, \"number\": 2, \"title\": \"two\", \"state\": \"open\",
                             \"user\": {\"login\": \"bob\", \"id\": 502, \"type\": \"User\"},
                             \"created_at\": \"2024-02-02T03:04:05Z\"}');",
    )
    .await;
    let mut conn = db.connect().await;
    sqlx::query("CALL aveloxis.drain(1)").execute(&mut conn).await.unwrap();
    sqlx::query("ALTER EXTENSION pg_aveloxis UPDATE TO '0.8.0'")
        .execute(&mut conn)
        .await
        .unwrap();
    let (days, opened, closed, newcomers): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), sum(issues_opened)::bigint, sum(issues_closed)::bigint, sum(new_contributors)::bigint
         FROM aveloxis_data.repo_daily_activity",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!((days, opened, closed, newcomers), (3, 2, 1, 2));
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
    let actions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM aveloxis_augur_data.explorer_contributor_actions WHERE action = 'issue_opened'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(actions, 2, "the views are built with the data they find");
}

/// A database populated under 0.8.0 updates to 0.9.0: its events keep their ids under
/// event_source 'event', a GitHub Enterprise host whose accounts were stored as platform 1
/// keeps them there, a self-managed GitLab host gets its own identity platform, and
/// GitLab payloads that waited under 0.8.0 drain after the update.
#[tokio::test]
async fn data_stored_under_0_8_0_survives_the_update_and_gitlab_payloads_drain() {
    let db = TestDb::empty("upgrade_gitlab").await;
    db.execute("CREATE EXTENSION pg_aveloxis VERSION '0.8.0'").await;
    db.execute(
        "SELECT aveloxis.add_forge_host('ghe.example.com', 1::smallint);
         SELECT aveloxis.add_forge_host('gitlab.example.org', 2::smallint);
         SELECT aveloxis.add_repo('https://ghe.example.com/team/tool', 'Enterprise');
         SELECT aveloxis.add_repo('https://gitlab.com/group/project', 'Lab');
         INSERT INTO aveloxis_ops.staging (repo_id, platform_id, entity, payload) VALUES
           (1, 1, 'repo_info', '{\"id\": 77, \"full_name\": \"team/tool\"}'),
           (1, 1, 'issue', '{\"id\": 11, \"number\": 1, \"title\": \"one\", \"state\": \"closed\",
                             \"user\": {\"login\": \"alice\", \"id\": 501, \"type\": \"User\"}}'),
           (1, 1, 'issue_event', '{\"id\": 900, \"event\": \"closed\", \"issue\": {\"number\": 1},
                                   \"actor\": {\"login\": \"alice\", \"id\": 501},
                                   \"created_at\": \"2024-01-05T00:00:00Z\"}'),
           (2, 2, 'issue', '{\"id\": 5, \"iid\": 1, \"title\": \"a GitLab issue\", \"state\": \"opened\",
                             \"author\": {\"id\": 7, \"username\": \"gl-user\", \"state\": \"active\"}}');",
    )
    .await;
    let mut conn = db.connect().await;
    sqlx::query("CALL aveloxis.drain(1)").execute(&mut conn).await.unwrap();
    sqlx::query("CALL aveloxis.drain(2)").execute(&mut conn).await.unwrap();
    let waiting: i64 = sqlx::query_scalar("SELECT count(*) FROM aveloxis_ops.staging WHERE drained_at IS NULL")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(waiting, 1, "0.8.0 leaves the GitLab issue waiting");

    sqlx::query("ALTER EXTENSION pg_aveloxis UPDATE TO '0.9.0'")
        .execute(&mut conn)
        .await
        .unwrap();
    let event: (String, i64, String) =
        sqlx::query_as("SELECT event_source, platform_event_id, action FROM aveloxis_data.issue_events")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(event, ("event".to_string(), 900, "closed".to_string()));
    let platforms: Vec<(i16, i16, Option<String>)> =
        sqlx::query_as("SELECT platform_id, platform_kind, platform_host FROM aveloxis_data.platforms ORDER BY 1")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(
        platforms,
        [
            (1, 1, Some("github.com".to_string())),
            (2, 2, Some("gitlab.com".to_string())),
            (3, 3, None),
            (16, 2, Some("gitlab.example.org".to_string())),
        ]
    );
    // The GitHub Enterprise host's accounts stay where 0.8.0 stored them.
    let ghe: i16 = sqlx::query_scalar("SELECT aveloxis_ops.identity_platform_of(1)")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(ghe, 1);
    let again: i16 = sqlx::query_scalar("SELECT aveloxis_ops.ensure_identity_platform('ghe.example.com', 1::smallint)")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(again, 1);

    // The GitLab issue that waited drains now, under gitlab.com's platform.
    sqlx::query("CALL aveloxis.drain(2)").execute(&mut conn).await.unwrap();
    let issue: (String, String) = sqlx::query_as(
        "SELECT i.issue_state, c.gl_username FROM aveloxis_data.issues i
         JOIN aveloxis_data.contributors c ON c.cntrb_id = i.reporter_id
         WHERE i.repo_id = 2 AND c.cntrb_id = aveloxis.platform_uuid(2::smallint, 7)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(issue, ("open".to_string(), "gl-user".to_string()));
}

/// Row count and content digest of every table of the extension, over the columns the
/// table had before the update (`columns`: table -> its column list).
async fn table_digests(
    conn: &mut sqlx::PgConnection,
    columns: &std::collections::BTreeMap<String, String>,
) -> std::collections::BTreeMap<String, (i64, String)> {
    let mut digests = std::collections::BTreeMap::new();
    for (table, cols) in columns {
        let digest: (i64, String) = sqlx::query_as(&format!(
            "SELECT count(*), md5(coalesce(string_agg(r, E'\\n' ORDER BY r), '')) FROM (SELECT ROW({cols})::text AS r FROM {table}) s"
        ))
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        digests.insert(table.clone(), digest);
    }
    digests
}

/// 0.10.0 moves every key and foreign key of the repository tables onto repo_id (the
/// Citus rule, docs/scaling.md). On a database populated under 0.9.0 (a GitHub collection
/// from the replay, a rejected payload, a field stored as NULL, replaced repository info)
/// the update keeps every row of every table exactly, every foreign key is back and valid,
/// and draining the same payloads again stores nothing twice.
#[tokio::test]
async fn keys_move_onto_repo_id_on_a_populated_0_9_0_database() {
    use harness::replay::{github_fixtures, ReplayServer};
    let db = TestDb::empty("upgrade_keys").await;
    db.execute("CREATE EXTENSION pg_aveloxis VERSION '0.9.0'").await;
    let replay = ReplayServer::start().await;
    let fixtures = github_fixtures();
    replay
        .load_repository(&fixtures.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    let api = replay.api_url();
    let out = db
        .agent_async(
            &[
                "collect",
                "https://github.com/PyGithub/PyGithub",
                "--phases",
                "collect",
                "--github-api-url",
                api.as_str(),
            ],
            &[("GITHUB_TOKENS", "tok-1")],
        )
        .await;
    let (stdout, stderr) = harness::output_text(&out);
    assert!(out.status.success(), "collect under 0.9.0 failed:\n{stdout}\n{stderr}");
    db.execute(
        r#"INSERT INTO aveloxis_ops.staging (repo_id, platform_id, entity, payload) VALUES
           (1, 1, 'issue', '{not json'),
           (1, 1, 'issue', '{"id": 99999001, "number": 99999, "title": "a field that does not fit",
                             "state": "open", "comments": "many"}');
         INSERT INTO aveloxis_ops.staging (repo_id, platform_id, entity, payload)
         SELECT repo_id, platform_id, entity, jsonb_set(payload::jsonb, '{stargazers_count}', '123456')::text
         FROM aveloxis_ops.staging WHERE entity = 'repo_info' ORDER BY staging_id DESC LIMIT 1;
         -- A review with a review comment, and comments on an issue and a pull request.
         INSERT INTO aveloxis_ops.staging (repo_id, platform_id, entity, payload, context)
         SELECT repo_id, platform_id, 'pull_request',
                jsonb_set(jsonb_set(payload::jsonb, '{pull_request,updated_at}', '"2031-01-01T00:00:00Z"'), '{reviews}',
                          '[{"id": 700001, "state": "APPROVED", "body": "fine by me",
                             "submitted_at": "2024-02-01T10:00:00Z",
                             "user": {"login": "reviewer", "id": 6060, "type": "User"}}]')::text, context
         FROM aveloxis_ops.staging WHERE entity = 'pull_request' ORDER BY staging_id LIMIT 1;
         INSERT INTO aveloxis_ops.staging (repo_id, platform_id, entity, payload, context)
         SELECT 1, 1, 'review_comment',
                '{"id": 800001, "pull_request_review_id": 700001, "body": "nit", "path": "setup.py",
                  "created_at": "2024-02-01T10:00:00Z", "user": {"login": "reviewer", "id": 6060}}',
                jsonb_build_object('parent_number', (payload::jsonb #>> '{pull_request,number}')::int)
         FROM aveloxis_ops.staging WHERE entity = 'pull_request' ORDER BY staging_id LIMIT 1;
         INSERT INTO aveloxis_ops.staging (repo_id, platform_id, entity, payload, context)
         SELECT 1, 1, 'issue_comment',
                format('{"id": %s, "body": "a comment", "created_at": "2024-02-02T10:00:00Z",
                         "user": {"login": "reviewer", "id": 6060}}', 900000 + n),
                jsonb_build_object('parent_number', n)
         FROM (SELECT issue_number AS n FROM aveloxis_data.issues ORDER BY 1 LIMIT 2) i
         UNION ALL
         SELECT 1, 1, 'issue_comment',
                '{"id": 900100, "body": "on the pull request", "user": {"login": "reviewer", "id": 6060}}',
                jsonb_build_object('parent_number', (SELECT min(pr_number) FROM aveloxis_data.pull_requests));"#,
    )
    .await;
    let mut conn = db.connect().await;
    sqlx::query("CALL aveloxis.drain(1)").execute(&mut conn).await.unwrap();
    let columns: std::collections::BTreeMap<String, String> = sqlx::query_as::<_, (String, String)>(
        "SELECT c.oid::regclass::text, string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
         WHERE n.nspname IN ('aveloxis_data', 'aveloxis_ops') AND c.relkind = 'r'
         GROUP BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let before = table_digests(&mut conn, &columns).await;
    for (table, at_least) in [
        ("aveloxis_data.issues", 10),
        ("aveloxis_data.pull_requests", 3),
        ("aveloxis_data.messages", 5),
        ("aveloxis_data.issue_labels", 1),
        ("aveloxis_data.issue_message_ref", 2),
        ("aveloxis_data.pull_request_message_ref", 1),
        ("aveloxis_data.pull_request_reviews", 1),
        ("aveloxis_data.pull_request_review_message_ref", 1),
        ("aveloxis_data.review_comments", 1),
        ("aveloxis_data.pull_request_repo", 1),
        ("aveloxis_data.pull_request_meta", 1),
        ("aveloxis_data.issue_events", 1),
        ("aveloxis_data.repo_info_history", 1),
        ("aveloxis_ops.staging_rejects", 1),
        ("aveloxis_ops.drain_run_counts", 1),
        ("aveloxis_ops.drain_run_nulled", 1),
    ] {
        assert!(
            before[table].0 >= at_least,
            "{table} has {} rows under 0.9.0",
            before[table].0
        );
    }
    let fk_pairs = "SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint
                    WHERE contype = 'f' AND connamespace::regnamespace::text IN ('aveloxis_data', 'aveloxis_ops')
                    ORDER BY 1, 2";
    let fks_before: Vec<(String, String)> = sqlx::query_as(fk_pairs).fetch_all(&mut conn).await.unwrap();

    sqlx::query("ALTER EXTENSION pg_aveloxis UPDATE TO '0.10.0'")
        .execute(&mut conn)
        .await
        .unwrap();
    let after = table_digests(&mut conn, &columns).await;
    let changed: Vec<&String> = before.keys().filter(|t| before[*t] != after[*t]).collect();
    assert!(changed.is_empty(), "rows changed by the update in {changed:?}");
    let fks_after: Vec<(String, String)> = sqlx::query_as(fk_pairs).fetch_all(&mut conn).await.unwrap();
    assert_eq!(fks_after, fks_before, "the same tables are linked by foreign keys");
    let (between, invalid, without_repo): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE NOT con.convalidated),
                count(*) FILTER (WHERE NOT EXISTS (
                    SELECT FROM pg_attribute a WHERE a.attrelid = con.conrelid AND a.attname = 'repo_id'
                      AND a.attnum = ANY (con.conkey)))
         FROM pg_constraint con
         WHERE con.contype = 'f' AND connamespace::regnamespace::text IN ('aveloxis_data', 'aveloxis_ops')
           -- between two tables Citus would distribute
           AND con.conrelid IN (SELECT table_name FROM aveloxis.distribution_plan() WHERE kind = 'distributed')
           AND con.confrelid IN (SELECT table_name FROM aveloxis.distribution_plan() WHERE kind = 'distributed')",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(between >= 21, "{between} foreign keys between repository tables");
    assert_eq!((invalid, without_repo), (0, 0));
    let (new_columns_null,): (i64,) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM aveloxis_ops.drain_run_counts c JOIN aveloxis_ops.drain_runs r USING (run_id)
                 WHERE c.repo_id IS DISTINCT FROM r.repo_id)
              + (SELECT count(*) FROM aveloxis_data.repo_info_history WHERE history_id IS NULL)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(new_columns_null, 0, "the columns 0.10.0 adds are filled");

    // Every payload drained under 0.9.0, staged and drained again under the new keys,
    // changes nothing.
    db.execute(
        "INSERT INTO aveloxis_ops.staging (repo_id, platform_id, entity, payload, context)
         SELECT repo_id, platform_id, entity, payload, context FROM aveloxis_ops.staging
         WHERE drained_at IS NOT NULL ORDER BY staging_id;",
    )
    .await;
    sqlx::query("CALL aveloxis.drain(1)").execute(&mut conn).await.unwrap();
    let again = table_digests(&mut conn, &columns).await;
    let grown: Vec<String> = before
        .keys()
        // The two repository-info payloads, replayed in order, are two changes again.
        .filter(|t| t.starts_with("aveloxis_data.") && *t != "aveloxis_data.repo_info_history")
        .filter(|t| before[*t].0 != again[*t].0)
        .map(|t| format!("{t}: {} -> {}", before[t].0, again[t].0))
        .collect();
    assert!(grown.is_empty(), "a second drain stored rows twice: {grown:?}");
}
