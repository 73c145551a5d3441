//! The vulnerabilities phase end to end (docs/dependencies.md, "Vulnerabilities"): the
//! real agent asks a local server shaped as OSV's API (querybatch results in the order of
//! the queries, `{}` for no match, per-query `next_page_token`; records per the OSV
//! schema, made for the test) and the extension scores and tracks findings. Pinned
//! against the Go system's defects (reference analysis.md §2.6): a listed advisory
//! without its record is kept without a made-up score; CVSS v4 is scored; a partial scan
//! resolves nothing; Go versions are asked without their `v`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use harness::gitrepo::{Change, Commit, ScriptedRepo};
use harness::sqlx::{self, PgPool};
use harness::{output_text, TestDb};
use serde_json::{json, Value};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const PACKAGE_LOCK: &[u8] = br#"{"lockfileVersion": 3, "packages": {
  "": {"dependencies": {"lodash": "^4.17.0", "minimist": "^1.2.0"}},
  "node_modules/lodash": {"version": "4.17.20"},
  "node_modules/minimist": {"version": "1.2.5"}}}"#;
const GO_MOD: &[u8] = b"module example.com/m\n\ngo 1.21\n\nrequire golang.org/x/text v0.3.5\n";

fn record(id: &str, modified: &str, severity: Value, label: Option<&str>) -> Value {
    json!({
        "schema_version": "1.6.0", "id": id, "modified": modified, "published": "2021-02-15T00:00:00Z",
        "aliases": [format!("CVE-{}", &id[id.len() - 4..])], "summary": format!("{id} in a dependency"),
        "severity": severity,
        "affected": [{"package": {"ecosystem": "npm", "name": "lodash"},
                      "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "4.17.21"}]}]}],
        "database_specific": label.map(|l| json!({"severity": l})).unwrap_or(Value::Null)
    })
}

/// OSV: lodash 4.17.20 has two advisories over two pages, minimist 1.2.5 none,
/// golang.org/x/text 0.3.5 (asked without `v`) one whose record OSV cannot serve.
/// `fixed` makes lodash clean; `down` makes querybatch fail.
async fn osv(fixed: Arc<AtomicBool>, down: Arc<AtomicBool>) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/querybatch"))
        .respond_with(move |r: &Request| {
            if down.load(Ordering::SeqCst) {
                return ResponseTemplate::new(503);
            }
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            let queries = body["queries"].as_array().unwrap();
            assert!(queries.len() <= 1000);
            let results: Vec<Value> = queries
                .iter()
                .map(
                    |q| match (q["package"]["name"].as_str().unwrap(), q["version"].as_str().unwrap()) {
                        ("lodash", "4.17.20") if fixed.load(Ordering::SeqCst) => json!({}),
                        ("lodash", "4.17.20") if q.get("page_token").is_none() => json!({
                        "vulns": [{"id": "GHSA-35jh-r3h4-6jhm", "modified": "2024-02-16T08:21:35.601880Z"}],
                        "next_page_token": "page-2"}),
                        ("lodash", "4.17.20") => json!({
                        "vulns": [{"id": "GHSA-29mw-wpgm-hmr9", "modified": "2024-03-01T00:00:00Z"}]}),
                        ("golang.org/x/text", "0.3.5") => json!({
                        "vulns": [{"id": "GO-2021-0113", "modified": "2024-05-20T20:33:45Z"}]}),
                        _ => json!({}),
                    },
                )
                .collect();
            ResponseTemplate::new(200).set_body_json(json!({"results": results}))
        })
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/vulns/GHSA-35jh-r3h4-6jhm"))
        .respond_with(ResponseTemplate::new(200).set_body_json(record(
            "GHSA-35jh-r3h4-6jhm",
            "2024-02-16T08:21:35.601880Z",
            json!([{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:H/UI:N/S:U/C:H/I:H/A:H"}]),
            Some("HIGH"),
        )))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/vulns/GHSA-29mw-wpgm-hmr9"))
        .respond_with(ResponseTemplate::new(200).set_body_json(record(
            "GHSA-29mw-wpgm-hmr9",
            "2024-03-01T00:00:00Z",
            json!([{"type": "CVSS_V4", "score": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"}]),
            Some("MODERATE"),
        )))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path_regex("^/v1/vulns/GO-"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    server
}

fn scan(db: &TestDb, repo: &ScriptedRepo, clones: &std::path::Path, server: &MockServer, phases: &str) -> String {
    let out = db.agent(&[
        "collect",
        repo.path_str(),
        "--phases",
        phases,
        "--clone-dir",
        clones.to_str().unwrap(),
        "--osv-url",
        &server.uri(),
    ]);
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "collect failed:\n{stdout}\n{stderr}");
    stdout
}

type Finding = (String, String, Option<String>, Option<f64>, Option<f64>, bool);

async fn findings(pool: &PgPool, repo: i64) -> Vec<Finding> {
    sqlx::query_as(
        "SELECT name, vuln_id, severity, cvss_v3_score::float8, cvss_v4_score::float8, resolved_at IS NOT NULL
         FROM aveloxis.vulnerabilities($1, true) ORDER BY vuln_id",
    )
    .bind(repo)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn age_osv_answers(pool: &PgPool) {
    sqlx::query("UPDATE aveloxis_data.osv_queries SET checked_at = checked_at - interval '2 days'")
        .execute(pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn findings_are_scored_followed_over_pages_and_resolved_only_by_a_complete_scan() {
    let db = TestDb::with_extension("osv").await;
    let pool = db.pool(2).await;
    let (fixed, down) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let server = osv(fixed.clone(), down.clone()).await;
    let repo = ScriptedRepo::new("osv");
    repo.import(&[Commit {
        branch: "main",
        mark: 1,
        from: None,
        merge: &[],
        author: "Ann <ann@example.com>",
        time: "1700000000 +0000",
        message: "deps\n",
        changes: vec![
            Change::Write("package-lock.json", PACKAGE_LOCK),
            Change::Write("go.mod", GO_MOD),
        ],
    }]);
    let clones = db.scratch_dir("clones");
    let out = scan(&db, &repo, &clones, &server, "facade,analysis,vulnerabilities");
    assert!(
        out.contains("vulnerabilities: 3 versions asked, 3 answered, 3 advisories listed, 2 records fetched"),
        "{out}"
    );
    let repo_id: i64 = sqlx::query_scalar("SELECT aveloxis.resolve_repo($1)")
        .bind(repo.path_str())
        .fetch_one(&pool)
        .await
        .unwrap();
    let all = findings(&pool, repo_id).await;
    assert_eq!(
        all,
        vec![
            // v4 scored (9.3), GHSA's MODERATE read as MEDIUM.
            (
                "lodash".into(),
                "GHSA-29mw-wpgm-hmr9".into(),
                Some("MEDIUM".into()),
                None,
                Some(9.3),
                false
            ),
            (
                "lodash".into(),
                "GHSA-35jh-r3h4-6jhm".into(),
                Some("HIGH".into()),
                Some(7.2),
                None,
                false
            ),
            // Listed, its record not served: kept, with no severity and no score made up.
            (
                "golang.org/x/text".into(),
                "GO-2021-0113".into(),
                None,
                None,
                None,
                false
            ),
        ]
    );
    let pages: usize = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/v1/querybatch")
        .count();
    assert_eq!(pages, 2, "the second page asked for lodash alone");

    // Within osv.ttl: nothing asked again.
    let before = server.received_requests().await.unwrap().len();
    let out = scan(&db, &repo, &clones, &server, "vulnerabilities");
    assert!(out.contains("0 versions asked"), "{out}");
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        before,
        "no request within osv.ttl"
    );

    // lodash fixed upstream, but OSV is down: a partial scan resolves nothing.
    fixed.store(true, Ordering::SeqCst);
    down.store(true, Ordering::SeqCst);
    age_osv_answers(&pool).await;
    let out = db.agent(&[
        "collect",
        repo.path_str(),
        "--phases",
        "vulnerabilities",
        "--clone-dir",
        clones.to_str().unwrap(),
        "--osv-url",
        &server.uri(),
    ]);
    let (stdout, stderr) = output_text(&out);
    assert!(
        stdout.contains("OSV answered none of the 3 queries") || stderr.contains("OSV answered none of the 3 queries"),
        "a scan OSV did not answer fails (and backs off):\n{stdout}\n{stderr}"
    );
    assert!(
        findings(&pool, repo_id).await.iter().all(|f| !f.5),
        "nothing resolved by a partial scan"
    );
    let (class, backing_off): (Option<String>, Option<bool>) = sqlx::query_as(
        "SELECT last_error_class, backoff_until > now() FROM aveloxis_ops.jobs
         WHERE repo_id = $1 AND phase = 'vulnerabilities'",
    )
    .bind(repo_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((class.as_deref(), backing_off), (Some("transient"), Some(true)));
    // The backoff's end (here: now) lets it run again.
    sqlx::query(
        "UPDATE aveloxis_ops.jobs SET backoff_until = NULL, due_at = now()
         WHERE repo_id = $1 AND phase = 'vulnerabilities'",
    )
    .bind(repo_id)
    .execute(&pool)
    .await
    .unwrap();

    // OSV back: the complete scan resolves lodash's two; the Go one stays open. The
    // records already cached (same modified) are not fetched again.
    down.store(false, Ordering::SeqCst);
    let before = server.received_requests().await.unwrap().len();
    let out = scan(&db, &repo, &clones, &server, "vulnerabilities");
    assert!(
        out.contains("3 versions asked, 3 answered, 1 advisories listed"),
        "{out}"
    );
    let fetched: Vec<String> = server.received_requests().await.unwrap()[before..]
        .iter()
        .filter(|r| r.url.path().starts_with("/v1/vulns/GHSA"))
        .map(|r| r.url.path().to_string())
        .collect();
    assert!(fetched.is_empty(), "{fetched:?}");
    let now: Vec<(String, bool)> = findings(&pool, repo_id).await.into_iter().map(|f| (f.1, f.5)).collect();
    assert_eq!(
        now,
        vec![
            ("GHSA-29mw-wpgm-hmr9".into(), true),
            ("GHSA-35jh-r3h4-6jhm".into(), true),
            ("GO-2021-0113".into(), false)
        ]
    );
    let open: i64 = sqlx::query_scalar("SELECT count(*) FROM aveloxis.vulnerabilities($1)")
        .bind(repo_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(open, 1);
}
