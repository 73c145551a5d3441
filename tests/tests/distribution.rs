//! The distribution scan end to end: the real agent against local servers standing in
//! for GitHub, deps.dev and ecosyste.ms, the real extension applying what it staged
//! (docs/distribution.md).

use harness::sqlx::{self, PgPool};
use harness::{output_text, TestDb};
use serde_json::json;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const REPO: &str = "https://github.com/acme/widget";

/// Base64 wrapped at 60 characters, as GitHub's Contents API sends file bodies.
fn contents_base64(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out.as_bytes()
        .chunks(60)
        .map(|c| String::from_utf8_lossy(c).into_owned() + "\n")
        .collect()
}

async fn get(server: &MockServer, at: &str, status: u16, body: serde_json::Value) {
    Mock::given(method("GET"))
        .and(path(at))
        .respond_with(ResponseTemplate::new(status).set_body_json(body))
        .mount(server)
        .await;
}

/// GitHub: releases with a wheel, an npm package of the org naming this repository (and
/// one naming another), a root with package.json, a submodule and a directory holding a
/// Cargo.toml over 1 MB (fetched by blob).
async fn github() -> MockServer {
    let gh = MockServer::start().await;
    get(
        &gh,
        "/repos/acme/widget/releases",
        200,
        json!([
            {"id": 1, "tag_name": "v1.0.0", "published_at": "2024-01-02T00:00:00Z",
             "assets": [{"name": "widget-1.0.0-py3-none-any.whl"}, {"name": "widget-1.0.0.tar.gz"}]}
        ]),
    )
    .await;
    get(&gh, "/users/acme/packages", 404, json!({"message": "Not Found"})).await;
    Mock::given(method("GET"))
        .and(path("/orgs/acme/packages"))
        .and(query_param("package_type", "npm"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"name": "widget", "package_type": "npm", "version_count": 4, "repository": {"full_name": "acme/widget"}},
            {"name": "gadget", "package_type": "npm", "repository": {"full_name": "acme/gadget"}}
        ])))
        .mount(&gh)
        .await;
    get(
        &gh,
        "/repos/acme/widget/contents/",
        200,
        json!([
            {"type": "file", "name": "package.json", "path": "package.json", "sha": "a1", "size": 40,
             "download_url": "https://raw.example/package.json"},
            {"type": "file", "name": "README.md", "path": "README.md", "sha": "a2", "size": 10,
             "download_url": "https://raw.example/README.md"},
            {"type": "file", "name": "vendored", "path": "vendored", "sha": "a3", "size": 0, "download_url": null},
            {"type": "dir", "name": "rust", "path": "rust", "sha": "a4"}
        ]),
    )
    .await;
    get(
        &gh,
        "/repos/acme/widget/contents/rust",
        200,
        json!([
            {"type": "file", "name": "Cargo.toml", "path": "rust/Cargo.toml", "sha": "b2", "size": 2_000_000,
             "download_url": "https://raw.example/rust/Cargo.toml"},
            {"type": "symlink", "name": "pyproject.toml", "path": "rust/pyproject.toml", "sha": "b3", "size": 12,
             "download_url": "https://raw.example/x"}
        ]),
    )
    .await;
    get(
        &gh,
        "/repos/acme/widget/contents/package.json",
        200,
        json!({
            "type": "file", "path": "package.json", "sha": "a1", "encoding": "base64",
            "content": contents_base64(r#"{"name": "@acme/widget", "version": "1.0.0"}"#)
        }),
    )
    .await;
    get(
        &gh,
        "/repos/acme/widget/contents/rust/Cargo.toml",
        200,
        json!({
            "type": "file", "path": "rust/Cargo.toml", "sha": "b2", "encoding": "none", "content": ""
        }),
    )
    .await;
    get(
        &gh,
        "/repos/acme/widget/git/blobs/b2",
        200,
        json!({
            "sha": "b2", "encoding": "base64", "content": contents_base64("[package]\nname = \"widget-rs\"\n")
        }),
    )
    .await;
    gh
}

async fn registries(ecosystems_up: bool) -> MockServer {
    let reg = MockServer::start().await;
    // The project id is one path segment: github.com%2Facme%2Fwidget.
    get(&reg, "/depsdev/v3/projects/github.com%2Facme%2Fwidget:packageversions", 200, json!({"versions": [
        {"versionKey": {"system": "NPM", "name": "@acme/widget", "version": "1.0.0"}, "relationType": "SOURCE_REPO"},
        {"versionKey": {"system": "NPM", "name": "@acme/widget", "version": "1.1.0"}, "relationType": "SOURCE_REPO"}
    ]})).await;
    get(
        &reg,
        "/depsdev/v3/systems/NPM/packages/@acme%2Fwidget",
        200,
        json!({
            "packageKey": {"system": "NPM", "name": "@acme/widget"},
            "versions": [{"versionKey": {"version": "1.0.0"}, "publishedAt": "2024-01-02T00:00:00Z"},
                         {"versionKey": {"version": "1.1.0"}, "publishedAt": "2024-03-04T00:00:00Z", "isDefault": true}]
        }),
    )
    .await;
    let lookup = Mock::given(method("GET"))
        .and(path("/eco/api/v1/packages/lookup"))
        .and(query_param("repository_url", REPO))
        .and(query_param("mailto", "ops@example.org"));
    if ecosystems_up {
        lookup
            .respond_with(ResponseTemplate::new(200).set_body_json(json!([
                {"name": "widget", "ecosystem": "pypi", "versions_count": 3, "registry": {"ecosystem": "pypi"}}
            ])))
            .mount(&reg)
            .await;
    } else {
        lookup.respond_with(ResponseTemplate::new(503)).mount(&reg).await;
    }
    reg
}

async fn scan(db: &TestDb, gh: &MockServer, reg: &MockServer) -> (bool, String, String) {
    let (gh_url, depsdev, eco) = (
        format!("{}/", gh.uri()),
        format!("{}/depsdev/", reg.uri()),
        format!("{}/eco", reg.uri()),
    );
    let out = db
        .agent_async(
            &[
                "collect",
                REPO,
                "--phases",
                "distribution",
                "--depsdev-url",
                &depsdev,
                "--ecosystems-url",
                &eco,
            ],
            &[
                ("GITHUB_TOKENS", "tok"),
                ("GITHUB_API_URL", &gh_url),
                ("AVELOXIS_CONTACT", "ops@example.org"),
            ],
        )
        .await;
    let (stdout, stderr) = output_text(&out);
    (out.status.success(), stdout, stderr)
}

async fn rows(pool: &PgPool, sql: &str) -> Vec<String> {
    sqlx::query_scalar(sql).fetch_all(pool).await.unwrap()
}

#[tokio::test]
async fn a_scan_stages_every_source_and_a_partial_one_comes_back_at_once() {
    let db = TestDb::with_extension("distribution_scan").await;
    let pool = db.pool(2).await;
    let gh = github().await;

    // Scan 1: ecosyste.ms is down (503 on every try): a partial scan.
    let down = registries(false).await;
    let (ok, stdout, stderr) = scan(&db, &gh, &down).await;
    assert!(
        !ok,
        "a partial scan is reported as not collected whole: {stdout}\n{stderr}"
    );
    assert!(stdout.contains("ecosyste.ms transient"), "{stdout}");
    assert_eq!(
        rows(
            &pool,
            "SELECT source || ':' || ecosystem || '/' || package_name || ':' || coalesce(version_count, 0)
                     || ':' || coalesce(latest_version, '-')
                     FROM aveloxis_data.repo_distribution ORDER BY 1"
        )
        .await,
        [
            "deps.dev:npm/@acme/widget:2:1.1.0",
            "github_packages:npm/widget:4:-",
            "github_release_asset:pypi/widget:1:v1.0.0"
        ]
    );
    assert_eq!(
        rows(
            &pool,
            "SELECT manifest_path || '=' || manifest_type || ':' || package_name_declared
                     FROM aveloxis_data.repo_distribution_manifest ORDER BY 1"
        )
        .await,
        ["package.json=npm:@acme/widget", "rust/Cargo.toml=cargo:widget-rs"],
        "the root and a first-level directory; the large file by blob; symlink, submodule and README skipped"
    );
    assert_eq!(
        rows(
            &pool,
            "SELECT scan_complete || ' ' || (sources ->> 'ecosyste.ms' LIKE 'transient%')
                     FROM aveloxis_data.repo_distribution_scans"
        )
        .await,
        ["false true"]
    );
    assert_eq!(
        rows(
            &pool,
            "SELECT (due_at <= now())::text || ' ' || retry_first FROM aveloxis_ops.jobs WHERE phase = 'distribution'"
        )
        .await,
        ["true true"],
        "a partial scan is due again at once, ahead of the others"
    );
    let asked = down.received_requests().await.unwrap();
    let lookup = asked
        .iter()
        .find(|r| r.url.path() == "/eco/api/v1/packages/lookup")
        .expect("ecosyste.ms was asked");
    let agent = lookup.headers.get("user-agent").unwrap().to_str().unwrap().to_string();
    assert!(agent.contains("mailto:ops@example.org"), "{agent}");
    assert_eq!(
        asked
            .iter()
            .filter(|r| r.url.path() == "/eco/api/v1/packages/lookup")
            .count(),
        3,
        "a 503 is retried twice"
    );
    assert_eq!(
        rows(
            &pool,
            "SELECT source || ' ' || consecutive_failures FROM aveloxis.source_breakers() ORDER BY 1"
        )
        .await,
        ["deps.dev 0", "ecosyste.ms 1"]
    );

    // Scan 2: ecosyste.ms answers; the scan is whole, the first scan's rows are history.
    let up = registries(true).await;
    let (ok, stdout, stderr) = scan(&db, &gh, &up).await;
    assert!(ok, "{stdout}\n{stderr}");
    assert_eq!(
        rows(
            &pool,
            "SELECT source || ':' || ecosystem || '/' || package_name FROM aveloxis_data.repo_distribution
                     WHERE source = 'ecosyste.ms'"
        )
        .await,
        ["ecosyste.ms:pypi/widget"]
    );
    assert_eq!(
        rows(
            &pool,
            "SELECT count(*)::text || ' ' || (SELECT count(*) FROM aveloxis_data.repo_distribution_manifest_history)
                     FROM aveloxis_data.repo_distribution_history"
        )
        .await,
        ["3 2"]
    );
    assert_eq!(
        rows(
            &pool,
            "SELECT scan_complete::text FROM aveloxis_data.repo_distribution_scans"
        )
        .await,
        ["true"]
    );
    assert_eq!(
        rows(
            &pool,
            "SELECT manifest_path FROM aveloxis.distribution_orphans() ORDER BY 1"
        )
        .await,
        ["rust/Cargo.toml"],
        "npm has evidence; the crate declared in rust/Cargo.toml has none"
    );
    assert_eq!(
        rows(&pool, "SELECT count(*)::text FROM aveloxis_ops.staging_rejects").await,
        ["0"]
    );

    // An outage long enough to trip the breaker: nine failures in a row already reported
    // (by this and other agents), the tenth opens it; the scan stays partial and no
    // distribution scan is handed out while it is open.
    sqlx::query("UPDATE aveloxis_ops.source_breakers SET consecutive_failures = 9 WHERE source = 'ecosyste.ms'")
        .execute(&pool)
        .await
        .unwrap();
    let (ok, stdout, _) = scan(&db, &gh, &down).await;
    assert!(!ok && stdout.contains("circuit breaker open"), "{stdout}");
    assert_eq!(
        rows(
            &pool,
            "SELECT open::text FROM aveloxis.source_breakers() WHERE source = 'ecosyste.ms'"
        )
        .await,
        ["true"]
    );
    assert_eq!(
        rows(
            &pool,
            "SELECT count(*)::text FROM aveloxis.claim('other-agent', ARRAY['distribution'], 10)"
        )
        .await,
        ["0"],
        "the partial scan is due, but not handed out while the breaker is open"
    );
    assert_eq!(
        rows(
            &pool,
            "SELECT source FROM aveloxis_data.repo_distribution WHERE source = 'ecosyste.ms'"
        )
        .await,
        ["ecosyste.ms"],
        "what ecosyste.ms said before the outage is kept"
    );
}

#[tokio::test]
async fn unknown_to_every_registry_is_a_whole_scan_with_nothing_found() {
    let db = TestDb::with_extension("distribution_empty").await;
    let pool = db.pool(1).await;
    let gh = MockServer::start().await; // every GitHub endpoint: 404
    let reg = MockServer::start().await; // deps.dev 404 (unknown project)
    Mock::given(method("GET"))
        .and(path("/eco/api/v1/packages/lookup"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&reg)
        .await;
    let (ok, stdout, stderr) = scan(&db, &gh, &reg).await;
    assert!(ok, "{stdout}\n{stderr}");
    assert_eq!(
        rows(
            &pool,
            "SELECT scan_complete || ' ' || registry_rows || ' ' || manifest_rows || ' ' || sources::text
                     FROM aveloxis_data.repo_distribution_scans"
        )
        .await,
        [
            r#"true 0 0 {"contents": "none", "deps.dev": "none", "ecosyste.ms": "none", "github_packages": "none", "github_release_asset": "none"}"#
        ]
    );
}
