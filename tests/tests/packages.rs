//! The packages phase and libyear end to end (docs/dependencies.md, "Libyear"): the real
//! agent analyses a scripted repository, fills the fleet-wide package cache from local
//! servers shaped as deps.dev's v3 API and the native registries (crates.io, RubyGems;
//! field names as their documentation gives them, bodies made for the test), and the
//! extension computes libyear in SQL. Pinned against the Go system's defects (reference
//! analysis.md §2.2): the installed version, not a range's floor; unknown is NULL, never 0;
//! pre-releases, SemVer 2 pre-releases and yanked versions are never "latest"; Go
//! versions keep one `v`; crates.io gets a User-Agent (it refuses requests without one);
//! a 429 is waited out; a package is fetched once per TTL for the whole fleet.

use harness::gitrepo::{Change, Commit, ScriptedRepo};
use harness::sqlx::{self, PgPool};
use harness::{output_text, TestDb};
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const PACKAGE_JSON: &[u8] =
    br#"{"dependencies": {"express": "^4.18.0", "left-pad": "^1.3.0", "not-published": "^1.0.0"}}"#;
const PACKAGE_LOCK: &[u8] = br#"{"lockfileVersion": 3, "packages": {
  "": {"dependencies": {"express": "^4.18.0", "left-pad": "^1.3.0", "not-published": "^1.0.0"}},
  "node_modules/express": {"version": "4.18.2"},
  "node_modules/left-pad": {"version": "1.3.0"},
  "node_modules/not-published": {"version": "1.0.0"}}}"#;
const CARGO_TOML: &[u8] = b"[package]\nname = \"tool\"\n[dependencies]\nserde = \"1\"\n";
const CARGO_LOCK: &[u8] = b"version = 3\n[[package]]\nname = \"tool\"\nversion = \"0.1.0\"\n[[package]]\nname = \"serde\"\nversion = \"1.0.195\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n";
const GO_MOD: &[u8] = b"module example.com/m\n\ngo 1.21\n\nrequire golang.org/x/text v0.14.0\n";
const GEMFILE: &[u8] = b"source 'https://rubygems.org'\ngem 'rails', '~> 7.1.0'\n";
const GEMFILE_LOCK: &[u8] =
    b"GEM\n  remote: https://rubygems.org/\n  specs:\n    rails (7.1.3)\n\nDEPENDENCIES\n  rails (~> 7.1.0)\n";
const PACKAGES_CONFIG: &[u8] =
    b"<?xml version=\"1.0\"?>\n<packages>\n  <package id=\"Newtonsoft.Json\" version=\"13.0.1\" />\n</packages>\n";
const REQUIREMENTS: &[u8] = b"requests>=2.28\n";
const CABAL: &[u8] = b"name: tool\nversion: 0.1\n\nlibrary\n  build-depends: aeson ==2.1.0.0\n";

fn commit(changes: Vec<Change<'_>>) -> Commit<'_> {
    Commit {
        branch: "main",
        mark: 1,
        from: None,
        merge: &[],
        author: "Ann <ann@example.com>",
        time: "1700000000 +0000",
        message: "deps\n",
        changes,
    }
}

fn versions(system: &str, name: &str, list: &[(&str, &str, bool)]) -> Value {
    json!({
        "packageKey": {"system": system, "name": name},
        "versions": list.iter().map(|(v, at, default)| json!({
            "versionKey": {"system": system, "name": name, "version": v},
            "publishedAt": at, "isDefault": default})).collect::<Vec<_>>()
    })
}

/// deps.dev and the native registries behind one local server (`--registry-root` puts
/// each registry's host first in the path).
async fn registries() -> MockServer {
    let server = MockServer::start().await;
    let get = |p: &str, body: Value| {
        Mock::given(method("GET"))
            .and(path(p.to_string()))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
    };
    get(
        "/v3/systems/NPM/packages/express",
        versions(
            "NPM",
            "express",
            &[
                ("4.18.2", "2022-10-08T20:11:27Z", false),
                ("4.21.1", "2024-10-08T15:48:14Z", true),
                ("5.0.0-beta.3", "2024-03-25T18:00:00Z", false),
            ],
        ),
    )
    .mount(&server)
    .await;
    get(
        "/v3/systems/NPM/packages/express/versions/4.18.2",
        json!({"versionKey": {"system": "NPM", "name": "express", "version": "4.18.2"}, "licenses": ["MIT"]}),
    )
    .mount(&server)
    .await;
    // left-pad: a 429 with Retry-After first, then the answer.
    Mock::given(method("GET"))
        .and(path("/v3/systems/NPM/packages/left-pad"))
        .respond_with(ResponseTemplate::new(429).append_header("Retry-After", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    get(
        "/v3/systems/NPM/packages/left-pad",
        versions("NPM", "left-pad", &[("1.3.0", "2018-04-09T00:52:14Z", true)]),
    )
    .mount(&server)
    .await;
    get(
        "/v3/systems/GO/packages/golang.org%2Fx%2Ftext",
        versions(
            "GO",
            "golang.org/x/text",
            &[
                ("v0.14.0", "2023-10-11T17:19:22Z", false),
                ("v0.20.0", "2024-11-08T16:53:06Z", true),
            ],
        ),
    )
    .mount(&server)
    .await;
    // NuGet: a SemVer 2 pre-release newer than everything, and an unlisted version whose
    // date is NuGet's 1900 placeholder.
    get(
        "/v3/systems/NUGET/packages/newtonsoft.json",
        versions(
            "NUGET",
            "newtonsoft.json",
            &[
                ("13.0.1", "2021-03-22T20:10:14Z", false),
                ("13.0.3", "2023-03-08T07:42:54Z", true),
                ("13.0.4-beta1+build.7", "2025-01-01T00:00:00Z", false),
                ("12.0.4", "1900-01-01T00:00:00Z", false),
            ],
        ),
    )
    .mount(&server)
    .await;
    get(
        "/v3/systems/PYPI/packages/requests",
        versions("PYPI", "requests", &[("2.31.0", "2023-05-22T15:12:42Z", true)]),
    )
    .mount(&server)
    .await;
    // crates.io: deps.dev does not know the crate; crates.io refuses requests without a
    // User-Agent (403), as its crawler policy says.
    Mock::given(method("GET"))
        .and(path("/crates.io/api/v1/crates/serde"))
        .respond_with(|r: &Request| match r.headers.get("user-agent").and_then(|v| v.to_str().ok()) {
            Some(ua) if ua.starts_with("aveloxis-agent/") => ResponseTemplate::new(200).set_body_json(json!({
                "crate": {"name": "serde", "max_stable_version": "1.0.215", "newest_version": "1.0.216-rc.1"},
                "versions": [
                    {"num": "1.0.216-rc.1", "created_at": "2024-12-01T00:00:00.000000+00:00", "yanked": false, "license": "MIT OR Apache-2.0"},
                    {"num": "1.0.215", "created_at": "2024-11-11T02:45:58.000000+00:00", "yanked": false, "license": "MIT OR Apache-2.0"},
                    {"num": "1.0.214", "created_at": "2024-10-28T00:00:00.000000+00:00", "yanked": true, "license": "MIT OR Apache-2.0"},
                    {"num": "1.0.195", "created_at": "2024-01-01T21:46:28.000000+00:00", "yanked": false, "license": "MIT OR Apache-2.0"}
                ]})),
            _ => ResponseTemplate::new(403).set_body_string("We require that all requests include a `User-Agent` header."),
        })
        .mount(&server)
        .await;
    get(
        "/rubygems.org/api/v1/versions/rails.json",
        json!([
            {"number": "7.2.0.beta1", "created_at": "2024-05-29T00:00:00.000Z", "prerelease": true, "platform": "ruby", "licenses": ["MIT"]},
            {"number": "7.1.5", "created_at": "2024-10-30T00:00:00.000Z", "prerelease": false, "platform": "ruby", "licenses": ["MIT"]},
            {"number": "7.1.3", "created_at": "2024-01-16T00:00:00.000Z", "prerelease": false, "platform": "ruby", "licenses": ["MIT"]}
        ]),
    )
    .mount(&server)
    .await;
    // Hackage: preferred versions as JSON, upload times as plain text, one call each.
    get(
        "/hackage.haskell.org/package/aeson/preferred",
        json!({"normal-version": ["2.2.3.0", "2.1.0.0"], "deprecated-version": ["2.0.0.0"]}),
    )
    .mount(&server)
    .await;
    for (version, at) in [
        ("2.1.0.0", "Thu Jun 23 10:00:00 UTC 2022"),
        ("2.2.3.0", "Fri Jun 14 10:00:00 UTC 2024"),
    ] {
        Mock::given(method("GET"))
            .and(path(format!(
                "/hackage.haskell.org/package/aeson-{version}/upload-time"
            )))
            .respond_with(ResponseTemplate::new(200).set_body_string(at))
            .mount(&server)
            .await;
    }
    // Everything else (not-published, deps.dev's crate lookup): 404.
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(404))
        .with_priority(10)
        .mount(&server)
        .await;
    server
}

fn run(db: &TestDb, repo: &ScriptedRepo, clones: &std::path::Path, server: &MockServer, phases: &str) -> String {
    let out = db.agent(&[
        "collect",
        repo.path_str(),
        "--phases",
        phases,
        "--clone-dir",
        clones.to_str().unwrap(),
        "--depsdev-url",
        &server.uri(),
        "--registry-root",
        &server.uri(),
    ]);
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "collect failed:\n{stdout}\n{stderr}");
    stdout
}

type LibyearRow = (String, Option<String>, Option<String>, Option<f64>, Option<String>);

async fn libyear(pool: &PgPool, repo: i64) -> Vec<LibyearRow> {
    sqlx::query_as(
        "SELECT name, current_verion, latest_version, libyear, license FROM aveloxis_data.repo_deps_libyear
         WHERE repo_id = $1 ORDER BY name",
    )
    .bind(repo)
    .fetch_all(pool)
    .await
    .unwrap()
}

fn years(from: &str, to: &str) -> f64 {
    let parse = |s: &str| chrono_days(s);
    (parse(to) - parse(from)) / 365.25
}

/// Days since the epoch of an RFC 3339 UTC time (enough for these fixed dates).
fn chrono_days(s: &str) -> f64 {
    let (date, time) = s.split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let t: Vec<f64> = time
        .trim_end_matches('Z')
        .split('.')
        .next()
        .unwrap()
        .split(':')
        .map(|x| x.parse().unwrap())
        .collect();
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146097 + doe - 719468) as f64 + (t[0] * 3600.0 + t[1] * 60.0 + t[2]) / 86400.0
}

#[tokio::test]
async fn libyear_from_the_shared_cache_with_the_go_systems_defects_pinned() {
    let db = TestDb::with_extension("packages_libyear").await;
    let pool = db.pool(2).await;
    let server = registries().await;
    let repo = ScriptedRepo::new("libyear");
    repo.import(&[commit(vec![
        Change::Write("package.json", PACKAGE_JSON),
        Change::Write("package-lock.json", PACKAGE_LOCK),
        Change::Write("Cargo.toml", CARGO_TOML),
        Change::Write("Cargo.lock", CARGO_LOCK),
        Change::Write("go.mod", GO_MOD),
        Change::Write("Gemfile", GEMFILE),
        Change::Write("Gemfile.lock", GEMFILE_LOCK),
        Change::Write("packages.config", PACKAGES_CONFIG),
        Change::Write("requirements.txt", REQUIREMENTS),
        Change::Write("tool.cabal", CABAL),
    ])]);
    let clones = db.scratch_dir("clones");
    let out = run(&db, &repo, &clones, &server, "facade,analysis,packages");
    assert!(
        out.contains("packages: 9 due in the cache, 8 found, 1 not in their registry"),
        "{out}"
    );
    let repo_id: i64 = sqlx::query_scalar("SELECT aveloxis.resolve_repo($1)")
        .bind(repo.path_str())
        .fetch_one(&pool)
        .await
        .unwrap();

    let rows = libyear(&pool, repo_id).await;
    let row = |name: &str| {
        rows.iter()
            .find(|r| r.0 == name)
            .unwrap_or_else(|| panic!("{name}: {rows:?}"))
            .clone()
    };
    let close = |got: Option<f64>, want: f64| got.is_some_and(|g| (g - want).abs() < 1e-6);
    // The installed version (4.18.2 from the lockfile) against the registry's default.
    let express = row("express");
    assert_eq!(
        (express.1.as_deref(), express.2.as_deref()),
        (Some("4.18.2"), Some("4.21.1"))
    );
    assert!(
        close(express.3, years("2022-10-08T20:11:27Z", "2024-10-08T15:48:14Z")),
        "{express:?}"
    );
    assert_eq!(
        express.4.as_deref(),
        Some("MIT"),
        "the licence of the version in use (GetVersion)"
    );
    assert!(
        close(row("left-pad").3, 0.0),
        "the latest version: up to date after a 429 was waited out"
    );
    // Unknown is NULL, never 0: a package the registry does not have, a range without a lockfile.
    assert_eq!(row("not-published").3, None);
    assert_eq!((row("requests").1, row("requests").3), (None, None));
    // Go: one `v`, the version in use found (the Go system asked for `vv0.14.0`: 0).
    let go = row("golang.org/x/text");
    assert_eq!((go.1.as_deref(), go.2.as_deref()), (Some("v0.14.0"), Some("v0.20.0")));
    assert!(close(go.3, years("2023-10-11T17:19:22Z", "2024-11-08T16:53:06Z")));
    // NuGet: the SemVer 2 pre-release and the 1900 placeholder are never latest.
    let nuget = row("Newtonsoft.Json");
    assert_eq!(nuget.2.as_deref(), Some("13.0.3"));
    assert!(close(nuget.3, years("2021-03-22T20:10:14Z", "2023-03-08T07:42:54Z")));
    let placeholder: Option<String> = sqlx::query_scalar(
        "SELECT published_at::text FROM aveloxis_data.package_versions WHERE ecosystem = 'NuGet' AND version = '12.0.4'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(placeholder, None, "NuGet's 1900-01-01 is no publication date");
    // crates.io (deps.dev 404 -> crates.io, with a User-Agent): yanked and -rc never latest.
    let serde = row("serde");
    assert_eq!(serde.2.as_deref(), Some("1.0.215"));
    assert!(close(serde.3, years("2024-01-01T21:46:28Z", "2024-11-11T02:45:58Z")));
    // RubyGems: the beta is not latest.
    assert_eq!(row("rails").2.as_deref(), Some("7.1.5"));
    // Hackage: upload times in Hackage's own text format.
    let aeson = row("aeson");
    assert_eq!(aeson.2.as_deref(), Some("2.2.3.0"));
    assert!(
        close(aeson.3, years("2022-06-23T10:00:00Z", "2024-06-14T10:00:00Z")),
        "{aeson:?}"
    );

    // 8Knot's package_version_query: the latest scan's rows exactly, libyear >= 0.
    let dep_age: Vec<(String, String)> = sqlx::query_as(
        "SELECT name::text, CASE WHEN libyear >= 1 THEN 'Greater than a year' WHEN libyear > 0.5 THEN '6 months to year'
                          WHEN libyear > 0 THEN 'Less than 6 months' WHEN libyear = 0 THEN 'Up to date'
                          ELSE 'Unclear version history' END
         FROM aveloxis_augur_data.repo_deps_libyear rd
         WHERE repo_id = $1 AND libyear >= 0
           AND data_collection_date = (SELECT DISTINCT ON (repo_id) data_collection_date
                                       FROM aveloxis_augur_data.repo_deps_libyear WHERE repo_id = $1
                                       ORDER BY repo_id, data_collection_date DESC)
         ORDER BY 1",
    )
    .bind(repo_id)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(
        dep_age.contains(&("express".into(), "Greater than a year".into())),
        "{dep_age:?}"
    );
    assert!(
        dep_age.contains(&("left-pad".into(), "Up to date".into())),
        "{dep_age:?}"
    );
    assert!(
        dep_age.iter().all(|(n, _)| n != "not-published" && n != "requests"),
        "unknown is not up to date"
    );

    // The requests the agent sent: the Go version path once with one `v`, crates.io with a
    // User-Agent (it answered 200), left-pad twice (the 429, then the answer).
    let requests: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.url.path().to_string())
        .collect();
    assert!(
        requests
            .iter()
            .any(|p| p == "/v3/systems/GO/packages/golang.org%2Fx%2Ftext/versions/v0.14.0"),
        "{requests:?}"
    );
    assert!(!requests.iter().any(|p| p.contains("vv0.14.0")));
    assert_eq!(
        requests
            .iter()
            .filter(|p| *p == "/v3/systems/NPM/packages/left-pad")
            .count(),
        2
    );

    // Again at once: every package is in the cache, no request; libyear recomputed anyway.
    let before = server.received_requests().await.unwrap().len();
    let out = run(&db, &repo, &clones, &server, "packages");
    assert!(
        out.contains("packages: 0 due in the cache") && out.contains("; 0 requests"),
        "{out}"
    );
    assert_eq!(server.received_requests().await.unwrap().len(), before);
    let scans: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT data_collection_date) FROM aveloxis_data.repo_deps_libyear_history WHERE repo_id = $1",
    )
    .bind(repo_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(scans, 1, "the first scan moved to history with its one timestamp");

    // A second repository sharing express: only its own new package is fetched.
    let other = ScriptedRepo::new("libyear2");
    other.import(&[commit(vec![Change::Write(
        "package.json",
        br#"{"dependencies": {"express": "4.18.2", "left-pad": "1.3.0"}}"#,
    )])]);
    let before = server.received_requests().await.unwrap().len();
    let out = run(&db, &other, &clones, &server, "facade,analysis,packages");
    assert!(out.contains("packages: 0 due in the cache"), "{out}");
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        before,
        "the fleet's cache answered"
    );

    // as_of hides later releases: at 2023-01-01 express 4.18.2 was the latest of the cache.
    let at: (i64, i64) =
        sqlx::query_as("SELECT dependencies, with_libyear FROM aveloxis.refresh_libyear($1, '2023-01-01')")
            .bind(repo_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(at.0, rows.len() as i64);
    let express_then: Option<f64> = sqlx::query_scalar(
        "SELECT libyear FROM aveloxis_data.repo_deps_libyear WHERE repo_id = $1 AND name = 'express'",
    )
    .bind(repo_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(close(express_then, 0.0), "{express_then:?}");
}

/// A packages job whose batch (packages.batch) does not cover its repository's due
/// packages stays due at once; the next run takes the rest and the job waits its cadence.
#[tokio::test]
async fn a_batch_that_leaves_packages_due_keeps_the_job_due() {
    let db = TestDb::with_extension("packages_batch").await;
    let pool = db.pool(2).await;
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    sqlx::query("SELECT aveloxis.set_setting('packages.batch', '3')")
        .execute(&pool)
        .await
        .unwrap();
    let repo = ScriptedRepo::new("batch");
    repo.import(&[commit(vec![Change::Write(
        "package.json",
        br#"{"dependencies": {"a": "1.0.0", "b": "1.0.0", "c": "1.0.0", "d": "1.0.0", "e": "1.0.0"}}"#,
    )])]);
    let clones = db.scratch_dir("clones");
    let due_again = || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT due_at <= now() FROM aveloxis_ops.jobs j JOIN aveloxis_data.repos r USING (repo_id)
             WHERE r.repo_git = $1 AND j.phase = 'packages'",
        )
        .bind(repo.path_str())
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let out = run(&db, &repo, &clones, &server, "facade,analysis,packages");
    assert!(out.contains("packages: 3 due in the cache"), "{out}");
    assert!(due_again().await, "two packages are left: due again at once");
    let out = run(&db, &repo, &clones, &server, "packages");
    assert!(out.contains("packages: 2 due in the cache"), "{out}");
    assert!(!due_again().await, "nothing left: due after its cadence");
}
