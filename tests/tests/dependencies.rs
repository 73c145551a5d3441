//! Dependencies end to end (docs/dependencies.md): `aveloxis-agent collect <local path>
//! --phases facade,analysis` on a scripted repository; the agent stages the HEAD tree's
//! dependency files (only blobs the database lacks), the extension parses them: installed
//! versions from lockfiles, ranges without a pretended version, vendored copies ignored,
//! UTF-16 files read, an unreadable file reported without losing the rest; a new HEAD
//! sends only its changed blobs; the same HEAD sends nothing; a re-parse needs no agent.

use harness::gitrepo::{Change, Commit, ScriptedRepo};
use harness::sqlx::types::Uuid;
use harness::sqlx::{self, Connection, PgPool, Row};
use harness::{output_text, TestDb};

const PACKAGE_JSON: &[u8] = br#"{"name": "web", "dependencies": {"express": "^4.18.0", "left-pad": "github:stevemao/left-pad"}, "devDependencies": {"jest": "~29.0.0"}}"#;
const PACKAGE_LOCK: &[u8] = br#"{"name": "web", "lockfileVersion": 3, "packages": {
  "": {"name": "web", "dependencies": {"express": "^4.18.0"}, "devDependencies": {"jest": "~29.0.0"}},
  "node_modules/express": {"version": "4.18.2"},
  "node_modules/accepts": {"version": "1.3.8"},
  "node_modules/jest": {"version": "29.0.3", "dev": true},
  "node_modules/express/node_modules/debug": {"version": "2.6.9"}}}"#;
const VENDORED: &[u8] = br#"{"name": "x", "dependencies": {"never-seen": "1.0.0"}}"#;
const REQUIREMENTS: &[u8] = b"requests>=2.28\nidna==3.6 \\\n    --hash=sha256:abc\n-r other.txt\n";
const REQUIREMENTS_2: &[u8] = b"requests>=2.31\nidna==3.7\nurllib3==2.2.1\n";
const GO_MOD: &[u8] = b"module example.com/m\n\ngo 1.21\n\nrequire (\n\tgolang.org/x/text v0.14.0\n\tgithub.com/a/b v1.2.3 // indirect\n)\n";
const BROKEN: &[u8] = b"{ \"dependencies\": ";

fn packages_config_utf16() -> Vec<u8> {
    let xml = "<?xml version=\"1.0\" encoding=\"utf-16\"?>\n<packages>\n  <package id=\"Newtonsoft.Json\" version=\"13.0.1\" targetFramework=\"net48\" />\n</packages>\n";
    let mut bytes = vec![0xFF, 0xFE];
    for unit in xml.encode_utf16() {
        bytes.extend_from_slice(&unit.to_le_bytes());
    }
    bytes
}

fn commit<'a>(mark: u32, changes: Vec<Change<'a>>) -> Commit<'a> {
    Commit {
        branch: "main",
        mark,
        from: (mark > 1).then_some(mark - 1),
        merge: &[],
        author: "Ann <ann@example.com>",
        time: "1700000000 +0000",
        message: "work\n",
        changes,
    }
}

fn collect(db: &TestDb, repo: &ScriptedRepo, clones: &std::path::Path) -> String {
    let out = db.agent(&[
        "collect",
        repo.path_str(),
        "--phases",
        "facade,analysis",
        "--clone-dir",
        clones.to_str().unwrap(),
    ]);
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "collect failed:\n{stdout}\n{stderr}");
    stdout
}

/// (ecosystem, name, version, resolution, direct, scope) of a dependency.
type Decl = (String, String, Option<String>, String, bool, String);

/// Every dependency of the repository, sorted.
async fn decls(pool: &PgPool, repo: i64) -> Vec<Decl> {
    sqlx::query_as(
        "SELECT ecosystem, name, version, resolution, direct, scope FROM aveloxis.dependencies($1)
         ORDER BY 1, 2, 3, 4, 5, 6",
    )
    .bind(repo)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn staged(pool: &PgPool, repo: i64, entity: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM aveloxis_ops.staging WHERE repo_id = $1 AND entity = $2")
        .bind(repo)
        .bind(entity)
        .fetch_one(pool)
        .await
        .unwrap()
}

fn row<'a>(rows: &'a [Decl], name: &str) -> &'a Decl {
    rows.iter()
        .find(|r| r.1 == name)
        .unwrap_or_else(|| panic!("{name} missing: {rows:?}"))
}

#[tokio::test]
async fn dependency_files_are_parsed_in_the_database_and_only_new_blobs_travel() {
    let db = TestDb::with_extension("deps_e2e").await;
    let pool = db.pool(2).await;
    let repo = ScriptedRepo::new("deps");
    let utf16 = packages_config_utf16();
    repo.import(&[commit(
        1,
        vec![
            Change::Write("web/package.json", PACKAGE_JSON),
            Change::Write("web/package-lock.json", PACKAGE_LOCK),
            Change::Write("web/node_modules/x/package.json", VENDORED),
            Change::Write("requirements.txt", REQUIREMENTS),
            Change::Write("go.mod", GO_MOD),
            Change::Write("dotnet/packages.config", &utf16),
            Change::Write("src/main.rs", b"fn main() {}\n"),
        ],
    )]);
    let clones = db.scratch_dir("clones");
    let out = collect(&db, &repo, &clones);
    assert!(out.contains("5 dependency files, 5 new blobs staged"), "{out}");
    let repo_id: i64 = sqlx::query_scalar("SELECT aveloxis.resolve_repo($1)")
        .bind(repo.path_str())
        .fetch_one(&pool)
        .await
        .unwrap();

    let files: Vec<String> =
        sqlx::query_scalar("SELECT path FROM aveloxis_data.repo_dependency_files WHERE repo_id = $1 ORDER BY 1")
            .bind(repo_id)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        files,
        [
            "dotnet/packages.config",
            "go.mod",
            "requirements.txt",
            "web/package-lock.json",
            "web/package.json"
        ],
        "the vendored copy under node_modules is not this repository's"
    );
    let rows = decls(&pool, repo_id).await;
    let s = |v: &str| Some(v.to_string());
    // The installed version from the lockfile, never the range's lower bound (4.18.0).
    assert_eq!(row(&rows, "express").2, s("4.18.2"));
    assert_eq!(
        (row(&rows, "express").3.as_str(), row(&rows, "express").4),
        ("locked", true)
    );
    assert_eq!(
        (row(&rows, "jest").2.clone(), row(&rows, "jest").5.as_str()),
        (s("29.0.3"), "development")
    );
    assert_eq!(
        (row(&rows, "accepts").3.as_str(), row(&rows, "accepts").4),
        ("locked", false),
        "transitive"
    );
    assert_eq!(row(&rows, "debug").2, s("2.6.9"));
    assert_eq!(
        (row(&rows, "left-pad").2.clone(), row(&rows, "left-pad").3.as_str()),
        (None, "non-registry")
    );
    // No lockfile: a range has no version, a pin is exact.
    assert_eq!(
        (row(&rows, "requests").2.clone(), row(&rows, "requests").3.as_str()),
        (None, "range")
    );
    assert_eq!(
        (row(&rows, "idna").2.clone(), row(&rows, "idna").3.as_str()),
        (s("3.6"), "exact")
    );
    assert_eq!(
        (
            row(&rows, "golang.org/x/text").2.clone(),
            row(&rows, "golang.org/x/text").4
        ),
        (s("v0.14.0"), true)
    );
    assert!(!row(&rows, "github.com/a/b").4, "// indirect");
    assert_eq!(row(&rows, "Newtonsoft.Json").2, s("13.0.1"), "the UTF-16 file was read");
    assert!(rows.iter().all(|r| r.1 != "never-seen"));

    // Augur's table: direct dependencies with the count of manifests declaring them, one
    // timestamp; the scan row agrees.
    let augur: Vec<(String, i32, String)> = sqlx::query_as(
        "SELECT dep_name::text, dep_count, dep_language::text FROM aveloxis_augur_data.repo_dependencies
         WHERE repo_id = $1 ORDER BY 1",
    )
    .bind(repo_id)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(augur.contains(&("express".into(), 1, "JavaScript".into())), "{augur:?}");
    assert!(
        augur.contains(&("Newtonsoft.Json".into(), 1, ".NET".into())),
        "{augur:?}"
    );
    assert!(
        augur.iter().all(|a| a.0 != "accepts" && a.0 != "github.com/a/b"),
        "direct only: {augur:?}"
    );
    let dates: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT data_collection_date) FROM aveloxis_data.repo_dependencies WHERE repo_id = $1",
    )
    .bind(repo_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(dates, 1);
    let scan = sqlx::query(
        "SELECT files, dependencies, direct, parse_errors::text, reason FROM aveloxis_data.repo_dependency_scans
         WHERE repo_id = $1 ORDER BY scan_id DESC LIMIT 1",
    )
    .bind(repo_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(scan.get::<i32, _>("files"), 5);
    assert_eq!(scan.get::<i32, _>("dependencies") as usize, rows.len());
    assert_eq!(scan.get::<String, _>("parse_errors"), "{}");
    assert_eq!(staged(&pool, repo_id, "dependency_blob").await, 5);

    // A new HEAD: requirements changed, go.mod deleted, a broken manifest added. Only the
    // two new blobs travel; the deleted file's dependencies go; the broken file is reported
    // and the rest is parsed.
    repo.import(&[commit(
        2,
        vec![
            Change::Write("requirements.txt", REQUIREMENTS_2),
            Change::Delete("go.mod"),
            Change::Write("tools/package.json", BROKEN),
        ],
    )]);
    let out = collect(&db, &repo, &clones);
    assert!(out.contains("5 dependency files, 2 new blobs staged"), "{out}");
    assert_eq!(staged(&pool, repo_id, "dependency_blob").await, 7);
    let rows = decls(&pool, repo_id).await;
    assert!(rows.iter().all(|r| r.0 != "Go"), "go.mod was deleted: {rows:?}");
    assert_eq!(row(&rows, "urllib3").2, s("2.2.1"));
    assert_eq!(
        row(&rows, "express").2,
        s("4.18.2"),
        "unchanged files are parsed again from the stored blobs"
    );
    let errors: String = sqlx::query_scalar(
        "SELECT parse_errors::text FROM aveloxis_data.repo_dependency_scans WHERE repo_id = $1
         ORDER BY scan_id DESC LIMIT 1",
    )
    .bind(repo_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        errors.contains("tools/package.json") && errors.contains("not JSON"),
        "{errors}"
    );
    let blobs: i64 = sqlx::query_scalar("SELECT count(*) FROM aveloxis_data.repo_dependency_blobs WHERE repo_id = $1")
        .bind(repo_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(blobs, 5, "the blobs of deleted or replaced files are not kept");
    let history: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT data_collection_date) FROM aveloxis_data.repo_dependencies_history WHERE repo_id = $1",
    )
    .bind(repo_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(history, 1, "the first parse moved to history");

    // The same HEAD: nothing staged for the analysis, nothing written.
    let fingerprint =
        "SELECT md5(string_agg(to_jsonb(d)::text, ',' ORDER BY decl_id)) FROM aveloxis_data.repo_dependency_decls d";
    let before: String = sqlx::query_scalar(fingerprint).fetch_one(&pool).await.unwrap();
    let staged_before: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM aveloxis_ops.staging WHERE entity = ANY (aveloxis_ops.phase_entities('analysis'))",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let out = collect(&db, &repo, &clones);
    assert!(out.contains("unchanged since the last analysis"), "{out}");
    let after: String = sqlx::query_scalar(fingerprint).fetch_one(&pool).await.unwrap();
    let staged_after: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM aveloxis_ops.staging WHERE entity = ANY (aveloxis_ops.phase_entities('analysis'))",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((before, staged_before), (after, staged_after));

    // A newer parser re-parses the stored files: no agent, the same dependencies, a new scan.
    sqlx::query("UPDATE aveloxis_data.repo_dependency_scans SET parser_version = '0.0.1' WHERE repo_id = $1")
        .bind(repo_id)
        .execute(&pool)
        .await
        .unwrap();
    let before = decls(&pool, repo_id).await;
    let reparsed: Vec<(i64, i32)> = sqlx::query_as("SELECT repo_id, dependencies FROM aveloxis.reparse_dependencies()")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(reparsed, vec![(repo_id, before.len() as i32)]);
    assert_eq!(decls(&pool, repo_id).await, before);
    let again: i64 = sqlx::query_scalar("SELECT count(*) FROM aveloxis.reparse_dependencies()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(again, 0, "every repository is parsed by this version now");
    let reason: String = sqlx::query_scalar(
        "SELECT reason FROM aveloxis_data.repo_dependency_scans WHERE repo_id = $1 ORDER BY scan_id DESC LIMIT 1",
    )
    .bind(repo_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(reason, "reparse");
}

/// A set naming a blob that is neither stored nor staged is refused, keeping the lease
/// and the staged rows; a caller-made scratch table is never used by the elevated parse.
#[tokio::test]
async fn an_incomplete_file_set_is_refused_and_planted_scratch_is_never_used() {
    let db = TestDb::with_extension("deps_refuse").await;
    let login = format!("{}_agent", db.name);
    db.execute(&format!("CREATE ROLE {login} LOGIN IN ROLE aveloxis_agent"))
        .await;
    let mut conn = db.connect_as(&login).await;
    let repo: i64 = sqlx::query_scalar("SELECT aveloxis.add_repo('https://github.com/o/deps')")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let lease = sqlx::query("SELECT job_id, lease_token FROM aveloxis.claim_repo('agent', $1, 'analysis')")
        .bind(repo)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let (job, token): (i64, Uuid) = (lease.get(0), lease.get(1));
    let head = "a".repeat(40);
    let (sha_go, sha_req) = ("1".repeat(40), "2".repeat(40));
    let set = serde_json::json!({"head_sha": head, "files": [
        {"path": "go.mod", "blob_sha": sha_go, "bytes": 30},
        {"path": "requirements.txt", "blob_sha": sha_req, "bytes": 10}]})
    .to_string();
    let blob = serde_json::json!({"blob_sha": sha_go, "path": "go.mod",
        "content": "module x\nrequire golang.org/x/text v0.14.0\n"})
    .to_string();
    sqlx::query("SELECT aveloxis.stage($1, 'dependency_files', ARRAY[$2])")
        .bind(token)
        .bind(&set)
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("SELECT aveloxis.stage($1, 'dependency_blob', ARRAY[$2])")
        .bind(token)
        .bind(&blob)
        .execute(&mut conn)
        .await
        .unwrap();
    let refused = sqlx::query("SELECT aveloxis.complete($1, $2, '{}')")
        .bind(job)
        .bind(token)
        .execute(&mut conn)
        .await
        .unwrap_err();
    let refused = refused.as_database_error().unwrap();
    assert_eq!(refused.code().as_deref(), Some("55000"), "{refused}");
    assert!(
        refused.message().contains(&sha_req) && refused.message().contains("requirements.txt"),
        "{refused}"
    );

    // The lease is still held: the missing blob is staged and the completion goes through.
    sqlx::query("SELECT aveloxis.stage($1, 'dependency_blob', ARRAY[$2])")
        .bind(token)
        .bind(
            serde_json::json!({"blob_sha": sha_req, "path": "requirements.txt", "content": "idna==3.6\n"}).to_string(),
        )
        .execute(&mut conn)
        .await
        .unwrap();
    // First with a scratch table of the parse's name planted in the caller's session.
    sqlx::raw_sql(
        "CREATE TEMP TABLE aveloxis_resolved (manifest_path text, lockfile_path text, ecosystem text, name text,
             requirement text, scope text, direct boolean, version text, resolution text, parse_error text)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let planted = sqlx::query("SELECT aveloxis.complete($1, $2, '{}')")
        .bind(job)
        .bind(token)
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert_eq!(
        planted.as_database_error().unwrap().code().as_deref(),
        Some("42501"),
        "{planted}"
    );
    conn.close().await.unwrap();
    let mut conn = db.connect_as(&login).await;
    sqlx::query("SELECT aveloxis.complete($1, $2, '{}')")
        .bind(job)
        .bind(token)
        .execute(&mut conn)
        .await
        .unwrap();
    let admin = db.pool(1).await;
    let names: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT name, version FROM aveloxis_data.repo_dependency_decls WHERE repo_id = $1 ORDER BY 1")
            .bind(repo)
            .fetch_all(&admin)
            .await
            .unwrap();
    assert_eq!(
        names,
        vec![
            ("golang.org/x/text".into(), Some("v0.14.0".into())),
            ("idna".into(), Some("3.6".into()))
        ]
    );
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM aveloxis_ops.staging WHERE repo_id = $1 AND drained_at IS NULL")
            .bind(repo)
            .fetch_one(&admin)
            .await
            .unwrap();
    assert_eq!(pending, 0, "applied rows are marked");
    drop(conn);
    db.execute(&format!("DROP OWNED BY {login}; DROP ROLE {login}")).await;
}
