//! Dependency-analysis benchmark (docs/benchmarks.md): `scripts/bench.sh dependencies [repos]`.
//!
//! A fleet of `repos` scripted repositories whose lockfiles draw their dependencies from
//! one shared pool (npm and PyPI packages, popular ones more often, as in real fleets).
//! Each repository goes through the real agent's analysis, packages and vulnerabilities
//! jobs against one local server standing for deps.dev and OSV (every package known,
//! three versions each; one advisory in ten versions). Printed side by side:
//!
//! - requests per repository of the full analysis, in fleet order, against the Go
//!   system's plan for the same repository (one registry call per dependency per
//!   repository and day, and one OSV querybatch: reference analysis.md §2.2, §2.6);
//! - the package cache's hit rate as the fleet grows (lookups the cache answered over
//!   lookups needed);
//! - the same fleet again with HEAD unchanged: requests and writes (goal: 0 and 0).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use harness::gitrepo::{Change, Commit, ScriptedRepo};
use harness::sqlx;
use harness::{output_text, TestDb};
use serde_json::{json, Value};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const NPM_POOL: u64 = 400;
const PYPI_POOL: u64 = 150;
const NPM_PER_REPO: u64 = 60;
const PYPI_PER_REPO: u64 = 20;

/// Package `k` of a repository: popular packages (low numbers) are drawn more often.
fn pick(repo: u64, k: u64, pool: u64) -> u64 {
    let x = (repo * 7919 + k * 104_729) % 10_000;
    // Squared: a skew toward the head of the pool.
    (x * x / 10_000) * pool / 10_000
}

fn lockfiles(repo: u64) -> (String, String) {
    let mut npm: Vec<u64> = (0..NPM_PER_REPO).map(|k| pick(repo, k, NPM_POOL)).collect();
    npm.sort_unstable();
    npm.dedup();
    let entries: Vec<String> = npm
        .iter()
        .map(|p| format!("\"node_modules/pkg-{p}\": {{\"version\": \"1.0.{}\"}}", (p + repo) % 3))
        .collect();
    let lock = format!(
        "{{\"lockfileVersion\": 3, \"packages\": {{\"\": {{}}, {}}}}}",
        entries.join(", ")
    );
    let mut pypi: Vec<u64> = (0..PYPI_PER_REPO).map(|k| pick(repo + 1, k, PYPI_POOL)).collect();
    pypi.sort_unstable();
    pypi.dedup();
    let requirements: String = pypi
        .iter()
        .map(|p| format!("py-{p}==2.0.{}\n", (p + repo) % 3))
        .collect();
    (lock, requirements)
}

async fn services(requests: Arc<AtomicU64>) -> MockServer {
    let server = MockServer::start().await;
    let count = requests.clone();
    Mock::given(method("GET"))
        .and(path_regex(r"^/v3/systems/[A-Z]+/packages/[^/]+$"))
        .respond_with(move |r: &Request| {
            count.fetch_add(1, Ordering::Relaxed);
            let name = r.url.path().rsplit('/').next().unwrap().to_string();
            let major = if name.starts_with("py-") { "2.0" } else { "1.0" };
            let versions: Vec<Value> = (0..3)
                .map(|i| {
                    json!({"versionKey": {"version": format!("{major}.{i}")},
                                "publishedAt": format!("202{}-01-01T00:00:00Z", 2 + i), "isDefault": i == 2})
                })
                .collect();
            ResponseTemplate::new(200).set_body_json(json!({"versions": versions}))
        })
        .mount(&server)
        .await;
    let count = requests.clone();
    Mock::given(method("GET"))
        .and(path_regex(r"^/v3/systems/[A-Z]+/packages/[^/]+/versions/[^/]+$"))
        .respond_with(move |_: &Request| {
            count.fetch_add(1, Ordering::Relaxed);
            ResponseTemplate::new(200).set_body_json(json!({"licenses": ["MIT"]}))
        })
        .mount(&server)
        .await;
    let count = requests.clone();
    Mock::given(method("POST"))
        .and(path("/v1/querybatch"))
        .respond_with(move |r: &Request| {
            count.fetch_add(1, Ordering::Relaxed);
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            let results: Vec<Value> = body["queries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|q| {
                    let key = format!("{}{}", q["package"]["name"], q["version"]);
                    if key.len() % 10 == 0 {
                        json!({"vulns": [{"id": format!("GHSA-{}", key.len()), "modified": "2024-01-01T00:00:00Z"}]})
                    } else {
                        json!({})
                    }
                })
                .collect();
            ResponseTemplate::new(200).set_body_json(json!({"results": results}))
        })
        .mount(&server)
        .await;
    let count = requests.clone();
    Mock::given(method("GET"))
        .and(path_regex(r"^/v1/vulns/"))
        .respond_with(move |r: &Request| {
            count.fetch_add(1, Ordering::Relaxed);
            let id = r.url.path().rsplit('/').next().unwrap().to_string();
            ResponseTemplate::new(200).set_body_json(json!({"id": id, "modified": "2024-01-01T00:00:00Z",
                "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"}]}))
        })
        .mount(&server)
        .await;
    server
}

fn collect(db: &TestDb, repo: &ScriptedRepo, clones: &std::path::Path, server: &MockServer, phases: &str) -> String {
    let out = db.agent(&[
        "collect",
        repo.path_str(),
        "--phases",
        phases,
        "--clone-dir",
        clones.to_str().unwrap(),
        "--depsdev-url",
        &server.uri(),
        "--osv-url",
        &server.uri(),
    ]);
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "collect failed:\n{stdout}\n{stderr}");
    stdout
}

/// Rows written by analysis applies so far: staged analysis entities plus the parse and
/// labor scans.
async fn analysis_writes(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM aveloxis_ops.staging WHERE entity = ANY (aveloxis_ops.phase_entities('analysis')))
              + (SELECT count(*) FROM aveloxis_data.repo_dependency_scans)
              + (SELECT count(*) FROM aveloxis_data.repo_analysis_scans)
              + (SELECT count(*) FROM aveloxis_data.repo_labor_history)",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::main]
async fn main() {
    let repos: u64 = std::env::args()
        .nth(1)
        .map_or(40, |a| a.parse().expect("a number of repositories"));
    let db = TestDb::with_extension("bench_dependencies").await;
    let pool = db.pool(2).await;
    let requests = Arc::new(AtomicU64::new(0));
    let server = services(requests.clone()).await;
    let clones = db.scratch_dir("clones");
    let mut fleet = Vec::new();
    println!(
        "dependency analysis of {repos} repositories sharing a pool of {NPM_POOL} npm and {PYPI_POOL} PyPI packages"
    );
    println!(
        "\n{:>5} {:>6} {:>9} {:>11} {:>13} {:>13} {:>9}",
        "repo", "deps", "requests", "Go's plan", "ours/Go's", "cache hits", "hit rate"
    );
    let (mut needed_total, mut fetched_total) = (0i64, 0i64);
    for r in 0..repos {
        let repo = ScriptedRepo::new(&format!("bdeps{r}"));
        let (lock, requirements) = lockfiles(r);
        repo.import(&[Commit {
            branch: "main",
            mark: 1,
            from: None,
            merge: &[],
            author: "Ann <ann@example.com>",
            time: "1700000000 +0000",
            message: "deps\n",
            changes: vec![
                Change::Write("package-lock.json", lock.as_bytes()),
                Change::Write("requirements.txt", requirements.as_bytes()),
            ],
        }]);
        collect(&db, &repo, &clones, &server, "facade,analysis");
        let repo_id: i64 = sqlx::query_scalar("SELECT aveloxis.resolve_repo($1)")
            .bind(repo.path_str())
            .fetch_one(&pool)
            .await
            .unwrap();
        // Lookups this repository needs, and how many the cache lacks (before its job).
        let (deps, needed, missing): (i64, i64, i64) = sqlx::query_as(
            "SELECT count(*), count(DISTINCT (d.ecosystem, d.package)),
                    count(DISTINCT (d.ecosystem, d.package)) FILTER (WHERE p.name IS NULL)
             FROM aveloxis_data.repo_dependency_decls d
             LEFT JOIN aveloxis_data.packages p ON p.ecosystem = d.ecosystem AND p.name = d.package
             WHERE d.repo_id = $1",
        )
        .bind(repo_id)
        .fetch_one(&pool)
        .await
        .unwrap();
        let before = requests.load(Ordering::Relaxed);
        collect(&db, &repo, &clones, &server, "packages,vulnerabilities");
        let sent = requests.load(Ordering::Relaxed) - before;
        needed_total += needed;
        fetched_total += missing;
        // The Go system: one registry call per dependency per repository, one querybatch.
        let go_plan = deps + 1;
        if r < 5 || r + 1 == repos || (r + 1) % 10 == 0 {
            println!(
                "{:>5} {:>6} {:>9} {:>11} {:>13.2} {:>13} {:>8.1}%",
                r + 1,
                deps,
                sent,
                go_plan,
                sent as f64 / go_plan as f64,
                needed - missing,
                100.0 * (needed_total - fetched_total) as f64 / needed_total as f64
            );
        }
        fleet.push(repo);
    }
    let first_pass = requests.load(Ordering::Relaxed);
    println!(
        "\nfleet: {first_pass} requests for {repos} repositories ({:.1} per repository); package cache hit rate {:.1}% \
         ({} of {} lookups answered by the cache)",
        first_pass as f64 / repos as f64,
        100.0 * (needed_total - fetched_total) as f64 / needed_total as f64,
        needed_total - fetched_total,
        needed_total
    );

    // The same fleet again, HEAD unchanged, inside the caches' TTLs.
    let writes_before = analysis_writes(&pool).await;
    let before = requests.load(Ordering::Relaxed);
    for repo in &fleet {
        collect(&db, repo, &clones, &server, "analysis,packages,vulnerabilities");
    }
    let again = requests.load(Ordering::Relaxed) - before;
    let writes = analysis_writes(&pool).await - writes_before;
    println!(
        "\nre-analysis with HEAD unchanged: {again} requests, {writes} analysis writes for {repos} repositories \
         (goal: 0 and 0: {})",
        if again == 0 && writes == 0 { "met" } else { "not met" }
    );
}
