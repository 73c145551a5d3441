//! The analysis phase end to end (docs/analysis.md): `aveloxis-agent collect <local path>
//! --phases facade,analysis` on a scripted repository; the labor counts of every file checked
//! against an independent counter (cloc, a Debian package: scripts/setup.sh), one snapshot
//! with one timestamp, nothing written for an unchanged HEAD, a new HEAD rotating the old
//! snapshot to history, and 8Knot's language chart reading it.

use std::collections::BTreeMap;

use harness::gitrepo::{Change, Commit, ScriptedRepo};
use harness::sqlx::{self, PgPool};
use harness::{output_text, TestDb};
use serde_json::Value;

const RUST: &[u8] =
    b"// A tool.\n\nfn main() {\n    // say hello\n    println!(\"hi\");\n}\n\n/* two\n   lines */\nfn other() {}\n";
const PYTHON: &[u8] = b"import os\n\n# configuration\nNAME = 'x'\n\n\ndef run():\n    # work\n    return os.getcwd()\n";
const JS: &[u8] = b"// entry\nconst a = 1;\n\nfunction f() {\n  return a; // inline\n}\n";
const SHELL_TOOL: &[u8] = b"#!/usr/bin/env python3\n# a tool without an extension\nprint('hi')\n";
const README: &[u8] = b"# Title\n\nSome prose.\n";
const LICENSE: &[u8] = b"MIT License\n\nPermission is hereby granted.\n";
const BINARY: &[u8] = b"\x00\x01\x02PNG\x00\x00";

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

/// cloc's count of each file of the repository's HEAD (checked out), by path:
/// (language, code, comments, blanks).
fn cloc(repo: &ScriptedRepo) -> BTreeMap<String, (String, i64, i64, i64)> {
    repo.git(&["checkout", "-q", "-f", "main"]);
    let out = std::process::Command::new("cloc")
        .args([
            "--by-file",
            "--json",
            "--quiet",
            "--exclude-dir=.git",
            "--skip-uniqueness",
        ])
        .arg(&repo.path)
        .output()
        .expect("cloc (scripts/setup.sh installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let root = format!("{}/", repo.path.display());
    report
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "header" && *k != "SUM")
        .map(|(path, v)| {
            (
                path.trim_start_matches(&root).to_string(),
                (
                    v["language"].as_str().unwrap().to_string(),
                    v["code"].as_i64().unwrap(),
                    v["comment"].as_i64().unwrap(),
                    v["blank"].as_i64().unwrap(),
                ),
            )
        })
        .collect()
}

type Labor = BTreeMap<String, (String, i64, i64, i64)>;

async fn labor(pool: &PgPool, repo: i64) -> Labor {
    sqlx::query_as::<_, (String, String, i32, i32, i32)>(
        "SELECT file_path, programming_language, code_lines, comment_lines, blank_lines
         FROM aveloxis_data.repo_labor WHERE repo_id = $1",
    )
    .bind(repo)
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .map(|(p, l, c, m, b)| (p, (l, c.into(), m.into(), b.into())))
    .collect()
}

#[tokio::test]
async fn labor_counts_equal_an_independent_count_and_only_a_new_head_is_counted_again() {
    let db = TestDb::with_extension("analysis_labor").await;
    let pool = db.pool(2).await;
    let repo = ScriptedRepo::new("labor");
    repo.import(&[commit(
        1,
        vec![
            Change::Write("src/main.rs", RUST),
            Change::Write("app.py", PYTHON),
            Change::Write("web/index.js", JS),
            Change::Write("scripts/tool", SHELL_TOOL),
            Change::Write("README.md", README),
            Change::Write("LICENSE", LICENSE),
            Change::Write("logo.png", BINARY),
        ],
    )]);
    let clones = db.scratch_dir("clones");
    let out = collect(&db, &repo, &clones);
    assert!(out.contains("analysis: HEAD"), "{out}");
    let repo_id: i64 = sqlx::query_scalar("SELECT aveloxis.resolve_repo($1)")
        .bind(repo.path_str())
        .fetch_one(&pool)
        .await
        .unwrap();

    // Every file cloc counts as code, tokei counted alike (the language names differ in
    // spelling: compared by the counts, the language checked separately).
    let ours = labor(&pool, repo_id).await;
    let independent = cloc(&repo);
    for (path, (_, code, comments, blanks)) in &independent {
        if path.ends_with(".md") {
            continue; // cloc and tokei disagree on what prose is; not code either way
        }
        let (_, c, m, b) = ours.get(path).unwrap_or_else(|| panic!("{path} not counted: {ours:?}"));
        if path == "scripts/tool" {
            // The one known difference of convention: a `#!` line is a comment to tokei (it
            // starts with Python's comment marker) and code to cloc. Same lines in all.
            assert_eq!((c + m, b, *m), (code + comments, blanks, comments + 1), "{path}");
            continue;
        }
        assert_eq!((c, m, b), (code, comments, blanks), "{path}");
    }
    let languages: Vec<(&str, &str)> = ours.iter().map(|(p, (l, ..))| (p.as_str(), l.as_str())).collect();
    assert_eq!(
        languages,
        [
            ("README.md", "Markdown"),
            ("app.py", "Python"),
            ("scripts/tool", "Python"),
            ("src/main.rs", "Rust"),
            ("web/index.js", "JavaScript")
        ],
        "the licence and the image are no language's; the extensionless tool is Python by its shebang"
    );
    let scan: (i64, i32, Value) = sqlx::query_as(
        "SELECT count(DISTINCT l.data_collection_date), s.files, s.skipped
         FROM aveloxis_data.repo_labor l JOIN aveloxis_data.repo_analysis_scans s USING (repo_id)
         WHERE l.repo_id = $1 GROUP BY s.files, s.skipped",
    )
    .bind(repo_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((scan.0, scan.1), (1, 5), "one snapshot, one timestamp");
    assert_eq!(scan.2["unknown_language"], 2, "{}", scan.2);

    // The same HEAD again: nothing counted, nothing written.
    let before: String = sqlx::query_scalar(
        "SELECT md5(string_agg(to_jsonb(l)::text, ',' ORDER BY repo_labor_id)) FROM aveloxis_data.repo_labor l",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let out = collect(&db, &repo, &clones);
    assert!(out.contains("unchanged since the last analysis"), "{out}");
    let after: String = sqlx::query_scalar(
        "SELECT md5(string_agg(to_jsonb(l)::text, ',' ORDER BY repo_labor_id)) FROM aveloxis_data.repo_labor l",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(after, before);
    let counts: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM aveloxis_data.repo_analysis_scans),
                (SELECT count(*) FROM aveloxis_data.repo_labor_history)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(counts, (1, 0));

    // A new HEAD: the old snapshot moves to history whole, the new one has one timestamp.
    repo.import(&[commit(
        2,
        vec![Change::Write("web/extra.js", b"let b = 2;\n"), Change::Delete("app.py")],
    )]);
    collect(&db, &repo, &clones);
    let now = labor(&pool, repo_id).await;
    assert!(
        now.contains_key("web/extra.js") && !now.contains_key("app.py"),
        "{now:?}"
    );
    let state: (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM aveloxis_data.repo_labor_history),
                (SELECT count(DISTINCT data_collection_date) FROM aveloxis_data.repo_labor),
                (SELECT count(*) FROM aveloxis_data.repo_analysis_scans)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(state, (5, 1, 2));

    // 8Knot's language chart, and the analysts' function.
    sqlx::query("REFRESH MATERIALIZED VIEW aveloxis_augur_data.explorer_repo_languages")
        .execute(&pool)
        .await
        .unwrap();
    let chart: Vec<(String, i64)> = sqlx::query_as(
        "SELECT programming_language::text, code_lines::bigint FROM aveloxis_augur_data.explorer_repo_languages
         WHERE repo_id = $1 ORDER BY 1",
    )
    .bind(repo_id)
    .fetch_all(&pool)
    .await
    .unwrap();
    let expected: Vec<(String, i64)> = {
        let mut by: BTreeMap<String, i64> = BTreeMap::new();
        for (lang, code, ..) in now.values() {
            *by.entry(lang.clone()).or_default() += code;
        }
        by.into_iter().collect()
    };
    assert_eq!(chart, expected);
    let top: String = sqlx::query_scalar("SELECT programming_language FROM aveloxis.repo_languages($1) LIMIT 1")
        .bind(repo_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    let most = expected.iter().max_by_key(|(_, code)| *code).unwrap();
    assert_eq!(top, most.0);
}

#[tokio::test]
async fn a_snapshot_missing_a_part_or_naming_two_heads_is_refused_and_nothing_is_lost() {
    let db = TestDb::with_extension("analysis_refusals").await;
    let pool = db.pool(2).await;
    db.execute("SELECT aveloxis.set_setting('registry.local_path_roots', '/srv/git')")
        .await;
    let repo: i64 = sqlx::query_scalar("SELECT aveloxis.add_repo('/srv/git/counted')")
        .fetch_one(&pool)
        .await
        .unwrap();
    let (job, token): (i64, sqlx::types::Uuid) =
        sqlx::query_as("SELECT job_id, lease_token FROM aveloxis.claim_repo('test', $1, 'analysis', '1 hour')")
            .bind(repo)
            .fetch_one(&pool)
            .await
            .unwrap();
    let head = "a".repeat(40);
    let part = |n: i64, of: i64, sha: &str| {
        serde_json::json!({"head_sha": sha, "part": n, "parts": of,
                           "files": [{"path": format!("f{n}.rs"), "language": "Rust", "code": 3, "comments": 1, "blanks": 0, "bytes": 40}]})
        .to_string()
    };
    let stage = |payloads: Vec<String>| {
        let pool = pool.clone();
        async move {
            sqlx::query("SELECT aveloxis.stage($1, 'labor_snapshot', $2)")
                .bind(token)
                .bind(payloads)
                .execute(&pool)
                .await
                .unwrap();
        }
    };
    let counted = format!(r#"{{"head_sha": "{head}"}}"#);
    let complete = || {
        let pool = pool.clone();
        let counted = counted.clone();
        async move {
            sqlx::query("SELECT aveloxis.complete($1, $2, $3::jsonb)")
                .bind(job)
                .bind(token)
                .bind(counted)
                .execute(&pool)
                .await
        }
    };
    // Nothing staged for a HEAD the completion says was counted: refused.
    let err = complete().await.unwrap_err().to_string();
    assert!(err.contains("completes after staging its labor_snapshot"), "{err}");
    // One part of two: refused, the lease and the staged part kept.
    stage(vec![part(1, 2, &head)]).await;
    let err = complete().await.unwrap_err().to_string();
    assert!(err.contains("has 1 of its 2 parts"), "{err}");
    // Two HEADs in one snapshot: refused.
    stage(vec![part(2, 2, &"b".repeat(40))]).await;
    let err = complete().await.unwrap_err().to_string();
    assert!(err.contains("of one HEAD"), "{err}");
    let kept: (i64, bool) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM aveloxis_ops.staging WHERE entity = 'labor_snapshot' AND drained_at IS NULL),
                (SELECT lease_owner IS NOT NULL FROM aveloxis_ops.jobs WHERE job_id = $1)",
    )
    .bind(job)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(kept, (2, true), "the staged parts and the lease stay");
    // The agent fails the job instead; the next run's snapshot supersedes the stray parts.
    let nothing: i64 = sqlx::query_scalar("SELECT count(*) FROM aveloxis_data.repo_labor")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(nothing, 0);
}
