//! SBOMs end to end (docs/dependencies.md, "SBOM"): a scripted repository analysed by the
//! real agent, its package cache filled from a local deps.dev-shaped server (licences in
//! registry spellings) and its vulnerabilities from a local OSV; `aveloxis-agent sbom`
//! writes CycloneDX 1.5, 1.6 and SPDX 2.3 documents that the official validators accept
//! (CycloneDX's JSON schemas through cyclonedx-python-lib; the SPDX project's spdx-tools,
//! both installed by scripts/setup.sh), the same bytes for the same data, purls as
//! bom-refs without duplicates, licences as SPDX ids or expressions; repo_sbom_scans keeps
//! one only when the dependency set changed.

use std::path::{Path, PathBuf};

use harness::gitrepo::{Change, Commit, ScriptedRepo};
use harness::sqlx;
use harness::{output_text, repo_root, TestDb};
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

// express twice (root and a workspace member) at one version: one component.
const PACKAGE_LOCK: &[u8] = br#"{"lockfileVersion": 3, "packages": {
  "": {"dependencies": {"express": "^4.18.0", "@babel/core": "^7.24.0"}, "devDependencies": {"jest": "^29.0.0"}},
  "node_modules/express": {"version": "4.18.2"},
  "node_modules/@babel/core": {"version": "7.24.0"},
  "node_modules/jest": {"version": "29.7.0", "dev": true},
  "node_modules/accepts": {"version": "1.3.8"}}}"#;
const PACKAGE_JSON: &[u8] =
    br#"{"dependencies": {"express": "^4.18.0", "@babel/core": "^7.24.0"}, "devDependencies": {"jest": "^29.0.0"}}"#;
const MEMBER_JSON: &[u8] = br#"{"dependencies": {"express": "4.18.2"}}"#;
const REQUIREMENTS: &[u8] = b"oddly-licensed==1.0.0\n";

fn commit(mark: u32, changes: Vec<Change<'_>>) -> Commit<'_> {
    Commit {
        branch: "main",
        mark,
        from: (mark > 1).then_some(mark - 1),
        merge: &[],
        author: "Ann <ann@example.com>",
        time: "1700000000 +0000",
        message: "deps\n",
        changes,
    }
}

async fn services() -> MockServer {
    let server = MockServer::start().await;
    let package = |system: &str, name: &str, version: &str, licences: Value| {
        let p = format!(
            "/v3/systems/{system}/packages/{}",
            name.replace('@', "%40").replace('/', "%2F")
        );
        (
            Mock::given(method("GET"))
                .and(path(p.clone()))
                .respond_with(ResponseTemplate::new(200).set_body_json(
                    json!({"packageKey": {"system": system, "name": name}, "versions": [
                    {"versionKey": {"system": system, "name": name, "version": version},
                     "publishedAt": "2024-01-01T00:00:00Z", "isDefault": true}]}),
                )),
            Mock::given(method("GET"))
                .and(path(format!("{p}/versions/{version}")))
                .respond_with(
                    ResponseTemplate::new(200)
                        .set_body_json(json!({"versionKey": {"version": version}, "licenses": licences})),
                ),
        )
    };
    for (system, name, version, licences) in [
        ("NPM", "express", "4.18.2", json!(["MIT"])),
        ("NPM", "@babel/core", "7.24.0", json!(["MIT/Apache-2.0"])),
        ("NPM", "jest", "29.7.0", json!(["Apache 2.0"])),
        ("NPM", "accepts", "1.3.8", json!(["MIT"])),
        ("PYPI", "oddly-licensed", "1.0.0", json!(["Some custom licence"])),
    ] {
        let (a, b) = package(system, name, version, licences);
        a.mount(&server).await;
        b.mount(&server).await;
    }
    Mock::given(method("POST"))
        .and(path("/v1/querybatch"))
        .respond_with(|r: &wiremock::Request| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            let results: Vec<Value> = body["queries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|q| match q["package"]["name"].as_str() {
                    Some("express") => {
                        json!({"vulns": [{"id": "GHSA-qw6h-vgh9-j6wx", "modified": "2024-09-10T00:00:00Z"}]})
                    }
                    _ => json!({}),
                })
                .collect();
            ResponseTemplate::new(200).set_body_json(json!({"results": results}))
        })
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/vulns/GHSA-qw6h-vgh9-j6wx"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "GHSA-qw6h-vgh9-j6wx", "modified": "2024-09-10T00:00:00Z", "summary": "express vulnerable to XSS",
            "aliases": ["CVE-2024-43796"],
            "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:L/A:L"}],
            "database_specific": {"severity": "LOW"}})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(404))
        .with_priority(10)
        .mount(&server)
        .await;
    server
}

fn agent(db: &TestDb, args: &[&str]) -> String {
    let out = db.agent(args);
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "{args:?} failed:\n{stdout}\n{stderr}");
    stdout
}

fn validator_python() -> PathBuf {
    if let Ok(p) = std::env::var("AVELOXIS_SBOM_VENV") {
        return PathBuf::from(p).join("bin/python");
    }
    let cache = std::env::var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache"));
    cache.join("aveloxis/sbom-venv/bin/python")
}

/// The official validator's verdict on a file: None when valid, else what it said.
fn validate(kind: &str, spec: &str, file: &Path) -> Option<String> {
    let python = validator_python();
    assert!(python.exists(), "{} missing: run scripts/setup.sh", python.display());
    let out = std::process::Command::new(python)
        .arg(repo_root().join("tests/scripts/validate_sbom.py"))
        .args([kind, spec, file.to_str().unwrap()])
        .output()
        .unwrap();
    let (stdout, stderr) = output_text(&out);
    (!out.status.success()).then(|| format!("{stdout}\n{stderr}"))
}

#[tokio::test]
async fn sboms_validate_are_deterministic_and_are_kept_when_the_set_changes() {
    let db = TestDb::with_extension("sbom").await;
    let pool = db.pool(2).await;
    let server = services().await;
    let repo = ScriptedRepo::new("sbom");
    repo.import(&[commit(
        1,
        vec![
            Change::Write("package.json", PACKAGE_JSON),
            Change::Write("package-lock.json", PACKAGE_LOCK),
            Change::Write("packages/member/package.json", MEMBER_JSON),
            Change::Write("requirements.txt", REQUIREMENTS),
        ],
    )]);
    let clones = db.scratch_dir("clones");
    let uri = server.uri();
    let collect = |phases: &str| {
        agent(
            &db,
            &[
                "collect",
                repo.path_str(),
                "--phases",
                phases,
                "--clone-dir",
                clones.to_str().unwrap(),
                "--depsdev-url",
                &uri,
                "--osv-url",
                &uri,
            ],
        )
    };
    collect("facade,analysis,vulnerabilities,packages");
    let repo_id: i64 = sqlx::query_scalar("SELECT aveloxis.resolve_repo($1)")
        .bind(repo.path_str())
        .fetch_one(&pool)
        .await
        .unwrap();

    let dir = db.scratch_dir("sboms");
    std::fs::create_dir_all(&dir).unwrap();
    let write = |format: &str, spec: &str, name: &str, extra: &[&str]| -> (PathBuf, Value) {
        let file = dir.join(name);
        let mut args = vec![
            "sbom",
            repo.path_str(),
            "--format",
            format,
            "--spec",
            spec,
            "--output",
            file.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        agent(&db, &args);
        let doc = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        (file, doc)
    };
    for (format, spec) in [("cyclonedx", "1.5"), ("cyclonedx", "1.6"), ("spdx", "2.3")] {
        for extra in [&[][..], &["--vulnerabilities"][..], &["--runtime-only"][..]] {
            let name = format!("{format}-{spec}{}.json", extra.first().unwrap_or(&""));
            let (file, _) = write(format, spec, &name, extra);
            if let Some(problems) = validate(format, spec, &file) {
                panic!(
                    "{name} is not valid {format} {spec}:\n{problems}\n{}",
                    std::fs::read_to_string(&file).unwrap()
                );
            }
        }
    }

    let (first, cdx) = write("cyclonedx", "1.6", "again-1.json", &["--vulnerabilities"]);
    let (second, _) = write("cyclonedx", "1.6", "again-2.json", &["--vulnerabilities"]);
    assert_eq!(
        std::fs::read(&first).unwrap(),
        std::fs::read(&second).unwrap(),
        "the same data, the same bytes"
    );
    let components = cdx["components"].as_array().unwrap();
    let refs: Vec<&str> = components.iter().map(|c| c["bom-ref"].as_str().unwrap()).collect();
    assert_eq!(
        refs,
        [
            "pkg:npm/%40babel/core@7.24.0",
            "pkg:npm/accepts@1.3.8",
            "pkg:npm/express@4.18.2",
            "pkg:npm/jest@29.7.0",
            "pkg:pypi/oddly-licensed@1.0.0"
        ],
        "one component per package version; express declared twice is one"
    );
    let licences: Vec<Value> = components.iter().map(|c| c["licenses"].clone()).collect();
    assert_eq!(
        licences[0],
        json!([{"expression": "MIT OR Apache-2.0"}]),
        "MIT/Apache-2.0 normalised"
    );
    assert_eq!(licences[2], json!([{"license": {"id": "MIT"}}]));
    assert_eq!(
        licences[3],
        json!([{"license": {"id": "Apache-2.0"}}]),
        "Apache 2.0 normalised"
    );
    assert_eq!(licences[4], json!([{"license": {"name": "Some custom licence"}}]));
    assert_eq!(components[3]["scope"], "excluded", "jest is a development dependency");
    let direct: Vec<&str> = cdx["dependencies"][0]["dependsOn"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert!(!direct.contains(&"pkg:npm/accepts@1.3.8"), "accepts is transitive");
    let vulns = cdx["vulnerabilities"].as_array().unwrap();
    assert_eq!(vulns.len(), 1);
    assert_eq!(vulns[0]["id"], "GHSA-qw6h-vgh9-j6wx");
    assert_eq!(vulns[0]["ratings"][0]["method"], "CVSSv31");
    assert_eq!(vulns[0]["affects"][0]["ref"], "pkg:npm/express@4.18.2");
    let (_, runtime) = write("cyclonedx", "1.6", "runtime.json", &["--runtime-only"]);
    assert!(runtime["components"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["name"] != "jest"));
    let (_, spdx) = write("spdx", "2.3", "spdx.json", &[]);
    assert_eq!(
        spdx["packages"].as_array().unwrap().len(),
        6,
        "the repository and five packages"
    );
    let declared: Vec<&str> = spdx["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["licenseDeclared"].as_str())
        .collect();
    assert!(
        declared.contains(&"MIT OR Apache-2.0") && declared.contains(&"NOASSERTION"),
        "{declared:?}"
    );

    // One stored SBOM for this dependency set; a packages run with the same set adds none;
    // a new set (a dependency added) adds one.
    let stored = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM aveloxis_data.repo_sbom_scans WHERE repo_id = $1")
            .bind(repo_id)
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    assert_eq!(stored().await, 1);
    collect("packages");
    assert_eq!(stored().await, 1, "the same dependency set: not stored again");
    repo.import(&[commit(
        2,
        vec![Change::Write("requirements.txt", b"oddly-licensed==1.0.0\nidna==3.7\n")],
    )]);
    collect("facade,analysis,packages");
    assert_eq!(stored().await, 2, "a changed set is stored");
}
