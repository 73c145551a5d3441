//! `aveloxis-agent status` and `add` against real databases, and their errors.

use harness::{output_text, TestDb};

#[tokio::test]
async fn status_prints_version_and_registry_counts() {
    let db = TestDb::with_extension("agent_status").await;
    let out = db.agent(&[
        "add",
        "https://github.com/chaoss/augur",
        "git@gitlab.com:fdroid/fdroidclient.git",
        "/srv/git/x",
    ]);
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "add failed: {stderr}");
    assert_eq!(stdout.lines().count(), 3, "{stdout}");

    let out = db.agent(&["status"]);
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "status failed: {stderr}");
    let version = harness::extension_version();
    assert!(stdout.contains(&format!("pg_aveloxis   {version}")), "{stdout}");
    assert!(stdout.contains("repo groups   1"), "{stdout}");
    assert!(
        stdout.contains("repos         3 (GitHub 1, GitLab 1, git 1)"),
        "{stdout}"
    );
    assert!(stdout.contains(&db.name), "{stdout}");
    // The queue, per phase: collect for the two forge repositories, facade and analysis
    // for all three, distribution and scorecard for the GitHub one, packages and
    // vulnerabilities for all three; all due.
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("phase"))
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    let jobs_and_due: Vec<(&str, &str, &str)> = rows.iter().map(|r| (r[0], r[1], r[2])).collect();
    assert_eq!(
        jobs_and_due,
        [
            ("collect", "2", "2"),
            ("facade", "3", "3"),
            ("distribution", "1", "1"),
            ("analysis", "3", "3"),
            ("scorecard", "1", "1"),
            ("packages", "3", "3"),
            ("vulnerabilities", "3", "3")
        ],
        "{stdout}"
    );
}

#[tokio::test]
async fn add_reports_every_bad_url_and_keeps_the_good_ones() {
    let db = TestDb::with_extension("agent_add_bad").await;
    let out = db.agent(&[
        "add",
        "ftp://example.org/x.git",
        "https://github.com/chaoss/augur",
        "https://github.com/chaoss",
    ]);
    let (stdout, stderr) = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stdout.contains("https://github.com/chaoss/augur"), "{stdout}");
    assert!(stderr.contains("unsupported URL scheme \"ftp\""), "{stderr}");
    assert!(stderr.contains("exactly <owner>/<repo>"), "{stderr}");
    assert!(stderr.contains("2 of 3 repositories were not added"), "{stderr}");
    let out = db.agent(&["status"]);
    assert!(
        output_text(&out).0.contains("repos         1 "),
        "{:?}",
        output_text(&out)
    );
}

#[tokio::test]
async fn status_explains_a_missing_extension() {
    let db = TestDb::empty("agent_no_extension").await;
    let out = db.agent(&["status"]);
    let (_, stderr) = output_text(&out);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("pg_aveloxis extension is not installed"), "{stderr}");
    assert!(stderr.contains("CREATE EXTENSION pg_aveloxis"), "{stderr}");
}

#[tokio::test]
async fn status_explains_an_unreachable_database() {
    // Port 1 on loopback: nothing listens there.
    let out = std::process::Command::new(harness::agent_bin())
        .args([
            "status",
            "--database-url",
            "postgres://someone:s3cret@127.0.0.1:1/aveloxis",
        ])
        .output()
        .unwrap();
    let (_, stderr) = output_text(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("cannot connect to PostgreSQL at 127.0.0.1:1/aveloxis"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "the password leaked: {stderr}");
}

#[tokio::test]
async fn status_without_any_database_says_how_to_configure_one() {
    let out = std::process::Command::new(harness::agent_bin())
        .arg("status")
        .env_remove("DATABASE_URL")
        .env_remove("AVELOXIS_CONFIG")
        .output()
        .unwrap();
    let (_, stderr) = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
}

#[tokio::test]
async fn status_reads_the_config_file() {
    let db = TestDb::with_extension("agent_config").await;
    let file = std::env::temp_dir().join(format!("{}.toml", db.name));
    std::fs::write(&file, format!("database_url = \"{}\"\n", db.url())).unwrap();
    let out = std::process::Command::new(harness::agent_bin())
        .args(["status", "--config", file.to_str().unwrap()])
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    std::fs::remove_file(&file).unwrap();
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("repos         0"), "{stdout}");
}

#[tokio::test]
async fn add_passes_on_the_servers_notices() {
    let db = TestDb::with_extension("agent_notice").await;
    assert!(db.agent(&["add", "https://github.com/chaoss/augur"]).status.success());
    let out = db.agent(&["add", "https://github.com/CHAOSS/augur.git", "--group", "Elsewhere"]);
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.starts_with("repo 1\t"), "{stdout}");
    assert!(
        stderr.contains("already registered as repo 1 in group \"Default\"; it stays there"),
        "{stderr}"
    );
}

/// `distribution-stats` prints what the analysts' functions answer, after a scan applied
/// through the queue (a lease, staged observations, `complete`).
#[tokio::test]
async fn distribution_stats_prints_the_fleet_its_orphans_and_one_repository() {
    let db = TestDb::with_extension("agent_distribution_stats").await;
    let out = db.agent(&["distribution-stats"]);
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("scanned                        0 (0 partial; last scan never)"),
        "{stdout}"
    );

    db.execute(
        r#"SELECT aveloxis.add_repo('https://github.com/acme/widget');
           SELECT aveloxis.add_repo('https://github.com/acme/quiet');
           CREATE TEMP TABLE lease AS
               SELECT job_id, lease_token FROM aveloxis.claim_repo('t', aveloxis.resolve_repo('https://github.com/acme/widget'),
                                                                     'distribution');
           SELECT aveloxis.stage(l.lease_token, 'distribution_depsdev',
                                 ARRAY['{"versions": [{"versionKey": {"system": "PYPI", "name": "widget", "version": "1.0"}}]}'])
           FROM lease l;
           SELECT aveloxis.stage(l.lease_token, 'distribution_manifest',
                                 ARRAY['{"path": "setup.py", "encoding": "utf-8", "content": "setup(name=\"widget\")"}',
                                       '{"path": "js/package.json", "encoding": "utf-8", "content": "{\"name\": \"widget-js\"}"}'])
           FROM lease l;
           SELECT aveloxis.complete(l.job_id, l.lease_token, '{"complete": true}') FROM lease l;"#,
    )
    .await;

    let out = db.agent(&["distribution-stats"]);
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("with a distribution job        2"), "{stdout}");
    assert!(stdout.contains("published (registry evidence)  1 (1 rows)"), "{stdout}");
    assert!(
        stdout.contains("declaring a package            1 (2 manifest rows)"),
        "{stdout}"
    );
    assert!(stdout.contains("declaring, never published     1"), "{stdout}");

    let out = db.agent(&["distribution-stats", "--orphans"]);
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "{stderr}");
    let orphan: Vec<&str> = stdout.lines().filter(|l| l.contains("acme/widget")).collect();
    assert_eq!(orphan.len(), 1, "{stdout}");
    assert!(
        orphan[0].contains("js/package.json") && orphan[0].contains("widget-js") && orphan[0].contains("pypi"),
        "{stdout}"
    );

    let out = db.agent(&["distribution-stats", "--repo", "https://github.com/acme/widget"]);
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "{stderr}");
    let kinds: Vec<(&str, &str, &str)> = stdout
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0], f[1], f[2])
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("registry", "pypi", "widget"),
            ("manifest", "npm", "widget-js"),
            ("manifest", "pypi", "widget")
        ],
        "{stdout}"
    );

    let out = db.agent(&["distribution-stats", "--repo", "https://github.com/acme/unknown"]);
    let (_, stderr) = output_text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("no repository is registered at"), "{stderr}");
}
