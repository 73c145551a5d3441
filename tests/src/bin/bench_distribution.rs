//! Distribution scan benchmark (docs/benchmarks.md): `scripts/bench.sh distribution [repos]`.
//!
//! `repos` GitHub repositories of varied shapes (0-7 first-level directories, one to three
//! manifests, known or not to deps.dev and ecosyste.ms, with or without releases,
//! organizations and users as owners) scanned by the real agent (`aveloxis-agent run
//! --once --phases distribution`, 4 workers) against local servers standing in for GitHub,
//! deps.dev and ecosyste.ms. Counted: the calls per scan by source, against the reference's
//! "~5 calls"; timed: scans per hour with the local servers answering at once (the
//! registries' own latency and any pacing are not in it), against the reference's ~480
//! an hour (its pacing: 4 workers, one start every 30 s).

use std::collections::BTreeMap;
use std::time::Instant;

use harness::sqlx;
use harness::{output_text, TestDb};
use serde_json::{json, Value};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// The shape of repository `i`.
struct Shape {
    owner: String,
    name: String,
    org: bool,
    dirs: usize,
    depsdev: bool,
    ecosystems: bool,
    releases: bool,
}

fn shape(i: usize) -> Shape {
    Shape {
        owner: format!("owner{}", i % 7),
        name: format!("repo{i}"),
        org: i % 7 % 2 == 1,
        dirs: i % 8,
        depsdev: i % 5 < 3,
        ecosystems: i.is_multiple_of(2),
        releases: !i.is_multiple_of(3),
    }
}

fn github_answer(req: &Request, repos: &[Shape]) -> ResponseTemplate {
    let path = req.url.path();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    // GitHub's rate-limit headers, with quota to spare: the agent's token budgets settle on them.
    let reset = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600)
        .to_string();
    let json = |v: Value| {
        ResponseTemplate::new(200)
            .set_body_json(v)
            .insert_header("x-ratelimit-remaining", "4999")
            .insert_header("x-ratelimit-reset", reset.as_str())
            .insert_header("x-ratelimit-resource", "core")
    };
    let not_found = ResponseTemplate::new(404).set_body_json(json!({"message": "Not Found"}));
    match parts.as_slice() {
        ["users", owner, "packages"] | ["orgs", owner, "packages"] => {
            let org = repos.iter().any(|r| r.owner == *owner && r.org);
            if (parts[0] == "orgs") != org {
                return not_found;
            }
            let t = req
                .url
                .query_pairs()
                .find(|(k, _)| k == "package_type")
                .map(|(_, v)| v.into_owned());
            if t.as_deref() == Some("npm") {
                json(
                    json!([{"name": "pkg", "package_type": "npm", "repository": {"full_name": format!("{owner}/repo1")}}]),
                )
            } else {
                json(json!([]))
            }
        }
        ["repos", owner, name, rest @ ..] => {
            let Some(r) = repos.iter().find(|r| r.owner == *owner && r.name == *name) else {
                return not_found;
            };
            match rest {
                ["releases"] if r.releases => {
                    json(json!([{"id": 1, "tag_name": "v1", "assets": [{"name": "x-1.0.whl"}, {"name": "x.tar.gz"}]}]))
                }
                ["releases"] => json(json!([])),
                ["contents"] => {
                    let mut entries = vec![
                        json!({"type": "file", "name": "package.json", "path": "package.json", "sha": "p", "download_url": "x"}),
                        json!({"type": "file", "name": "README.md", "path": "README.md", "sha": "r", "download_url": "x"}),
                    ];
                    for d in 0..r.dirs {
                        entries.push(json!({"type": "dir", "name": format!("d{d}"), "path": format!("d{d}")}));
                    }
                    json(Value::Array(entries))
                }
                ["contents", dir] if dir.starts_with('d') => {
                    let mut entries = vec![
                        json!({"type": "file", "name": "main.c", "path": format!("{dir}/main.c"), "sha": "c", "download_url": "x"}),
                    ];
                    if *dir == "d1" {
                        entries.push(json!({"type": "file", "name": "setup.py", "path": format!("{dir}/setup.py"), "sha": "s", "download_url": "x"}));
                    }
                    json(Value::Array(entries))
                }
                ["contents", "package.json"] => {
                    json(json!({"type": "file", "encoding": "base64", "content": "eyJuYW1lIjogIngifQ=="}))
                }
                ["contents", _, "setup.py"] => {
                    json(json!({"type": "file", "encoding": "base64", "content": "c2V0dXAobmFtZT0ieCIp"}))
                }
                _ => not_found,
            }
        }
        _ => not_found,
    }
}

fn registry_answer(req: &Request, repos: &[Shape]) -> ResponseTemplate {
    let path = req.url.path();
    let json = |v: Value| ResponseTemplate::new(200).set_body_json(v);
    if let Some(project) = path.strip_prefix("/depsdev/v3/projects/github.com%2F") {
        let project = project.trim_end_matches(":packageversions");
        let known = repos
            .iter()
            .any(|r| format!("{}%2F{}", r.owner, r.name) == project && r.depsdev);
        return if known {
            json(json!({"versions": [
                {"versionKey": {"system": "NPM", "name": "x", "version": "1"}},
                {"versionKey": {"system": "PYPI", "name": "x", "version": "1"}}]}))
        } else {
            ResponseTemplate::new(404)
        };
    }
    if path.starts_with("/depsdev/v3/systems/") {
        return json(json!({"versions": [{"versionKey": {"version": "1"}, "publishedAt": "2024-01-01T00:00:00Z"}]}));
    }
    if path == "/eco/api/v1/packages/lookup" {
        let url = req
            .url
            .query_pairs()
            .find(|(k, _)| k == "repository_url")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let known = repos
            .iter()
            .any(|r| url.ends_with(&format!("/{}/{}", r.owner, r.name)) && r.ecosystems);
        return json(if known {
            json!([{"name": "x", "ecosystem": "pypi"}])
        } else {
            json!([])
        });
    }
    ResponseTemplate::new(404)
}

fn source_of(path: &str) -> &'static str {
    if path.starts_with("/depsdev/") {
        "deps.dev"
    } else if path.starts_with("/eco/") {
        "ecosyste.ms"
    } else if path.ends_with("/releases") {
        "release assets"
    } else if path.ends_with("/packages") {
        "GitHub Packages"
    } else {
        "Contents walk"
    }
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(56, |a| a.parse().expect("repos: a number"));
    let repos: Vec<Shape> = (0..n).map(shape).collect();
    let repos = std::sync::Arc::new(repos);

    let gh = MockServer::start().await;
    let shapes = repos.clone();
    Mock::given(any())
        .respond_with(move |req: &Request| github_answer(req, &shapes))
        .mount(&gh)
        .await;
    let reg = MockServer::start().await;
    let shapes = repos.clone();
    Mock::given(any())
        .respond_with(move |req: &Request| registry_answer(req, &shapes))
        .mount(&reg)
        .await;

    let db = TestDb::with_extension("bench_distribution").await;
    let urls: Vec<String> = repos
        .iter()
        .map(|r| format!("https://github.com/{}/{}", r.owner, r.name))
        .collect();
    let pool = db.pool(1).await;
    sqlx::query("SELECT count(aveloxis.add_repo(u)) FROM unnest($1::text[]) u")
        .bind(&urls)
        .execute(&pool)
        .await
        .unwrap();

    let (gh_url, depsdev, eco) = (
        format!("{}/", gh.uri()),
        format!("{}/depsdev/", reg.uri()),
        format!("{}/eco/", reg.uri()),
    );
    let start = Instant::now();
    let out = db
        .agent_async(
            &[
                "run",
                "--once",
                "--phases",
                "distribution",
                "--workers",
                "4",
                "--depsdev-url",
                &depsdev,
                "--ecosystems-url",
                &eco,
            ],
            &[
                ("GITHUB_TOKENS", "tok"),
                ("GITHUB_API_URL", &gh_url),
                ("AVELOXIS_CONTACT", "bench@example.org"),
            ],
        )
        .await;
    let took = start.elapsed().as_secs_f64();
    let (_, stderr) = output_text(&out);
    assert!(out.status.success(), "{stderr}");
    if std::env::var_os("BENCH_SHOW_LOG").is_some() {
        eprintln!("{stderr}");
    }

    let (scanned, complete): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE scan_complete) FROM aveloxis_data.repo_distribution_scans",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(scanned as usize, n, "every repository scanned");
    let mut calls: BTreeMap<&str, usize> = BTreeMap::new();
    let mut per_repo: BTreeMap<String, usize> = BTreeMap::new();
    for server in [&gh, &reg] {
        for r in server.received_requests().await.unwrap() {
            let path = r.url.path().to_string();
            *calls.entry(source_of(&path)).or_default() += 1;
            let key = repos
                .iter()
                .find(|s| {
                    path.contains(&format!("/{}/{}", s.owner, s.name))
                        || path.contains(&format!("{}%2F{}", s.owner, s.name))
                        || r.url
                            .query()
                            .is_some_and(|q| q.contains(&format!("%2F{}%2F{}&", s.owner, s.name)))
                })
                .map_or_else(|| "(per owner or package)".to_string(), |s| s.name.clone());
            *per_repo.entry(key).or_default() += 1;
        }
    }
    let total: usize = calls.values().sum();
    println!("distribution: {n} repositories (varied shapes), aveloxis-agent run --once, 4 workers, local servers");
    println!(
        "  scanned {scanned} ({complete} complete) in {took:.2} s: {:.0} scans/hour with instant answers",
        n as f64 / took * 3600.0
    );
    println!(
        "  calls: {total} in all, {:.1} per scan (reference: ~5)",
        total as f64 / n as f64
    );
    for (source, c) in &calls {
        println!("    {source:<16} {c:>6}  {:>5.1} per scan", *c as f64 / n as f64);
    }
    let (lo, hi) = per_repo
        .iter()
        .filter(|(k, _)| !k.starts_with('('))
        .fold((usize::MAX, 0), |(lo, hi), (_, c)| (lo.min(*c), hi.max(*c)));
    println!(
        "  calls of one repository's own paths: {lo} to {hi} (owner-wide Packages calls and package details apart)"
    );
}
