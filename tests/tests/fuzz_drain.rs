//! Fuzzing the drain (DESIGN §9): generated bad payloads, property-based, bounded and
//! seeded (AVELOXIS_FUZZ_SEED=<u64> reproduces a run; the seed is printed on failure).
//!
//! Payloads of every entity are built from realistic GitHub objects, then mutated:
//! truncated JSON, a field of the wrong type or range (every field the mappers read),
//! huge strings, deep nesting, Unicode edges (lone surrogates, `\u0000`, BOMs, C1, DEL),
//! absurd timestamps and ids. Invariants:
//! - every `CALL aveloxis.drain` succeeds (no batch aborts the drain);
//! - every staged row ends drained, pending (its parent never came) or in
//!   staging_rejects with a reason, and the drain runs' counts add up to that;
//! - issues with one bad non-key field are stored, that field NULL and counted; only an
//!   unusable id or number, or unparsable JSON, rejects one, with the entity named;
//! - no stored text holds NUL, C1 or DEL characters;
//! - the unmutated control rows are all stored.

use std::collections::BTreeMap;

use harness::sqlx::{self, Connection, PgConnection};
use harness::TestDb;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{json, Value};

/// Raw JSON texts that fit no typed column, or test the edges of one.
const WEIRD: &[&str] = &[
    r#""abc""#,
    r#""""#,
    "1.5",
    "-1",
    "0",
    "-0",
    "true",
    "false",
    "[]",
    "{}",
    "[1, [2, [3]]]",
    r#"{"nested": {"deeper": [null]}}"#,
    "1e400",
    "-1e400",
    "18446744073709551616",
    r#""99999999999999999999""#,
    "9223372036854775808",
    "-9223372036854775809",
    "2147483648",
    r#""\ud800""#,
    r#""\udc00x""#,
    r#""a\u0000b""#,
    "\"\u{feff}bom\"",
    "\"c1\u{85}\u{9f}del\u{7f}\"",
    r#""0000-00-00T00:00:00Z""#,
    r#""0001-01-01T00:00:00Z""#,
    r#""1969-12-31T23:59:59Z""#,
    r#""9999-99-99T99:99:99Z""#,
    r#""-infinity""#,
    r#""2024-02-30T10:00:00Z""#,
    "1700000000",
];

fn user(id: i64, login: &str) -> Value {
    json!({"login": login, "id": id, "node_id": format!("U_{id}"), "type": "User", "site_admin": false,
           "avatar_url": format!("https://avatars.example/u/{id}"), "html_url": format!("https://github.com/{login}")})
}

/// A realistic object of each entity, unique by `n` (ids and numbers derive from it).
fn base(entity: &str, n: i64) -> Value {
    let api = "https://api.github.com/repos/o/fuzz";
    let t = "2024-03-04T05:06:07Z";
    match entity {
        "contributor" => json!({"login": format!("c{n}"), "id": 500_000 + n, "type": "User", "contributions": n}),
        "issue" => json!({
            "id": 100_000 + n, "number": n, "node_id": format!("I_{n}"), "title": format!("issue {n}"),
            "body": "body", "state": "open", "url": format!("{api}/issues/{n}"),
            "html_url": format!("https://github.com/o/fuzz/issues/{n}"), "user": user(1000 + n % 7, &format!("u{}", n % 7)),
            "labels": [{"id": 7, "name": "bug", "color": "ff0000"}], "assignees": [user(2000, "assignee")],
            "comments": 3, "created_at": t, "updated_at": t, "closed_at": null, "closed_by": null
        }),
        "pull_request" => json!({
            "pull_request": {
                "id": 300_000 + n, "number": 10_000 + n, "node_id": format!("PR_{n}"), "title": format!("pr {n}"),
                "body": "b", "state": "closed", "locked": false, "draft": false, "merged": true,
                "user": user(1000 + n % 5, &format!("u{}", n % 5)), "created_at": t, "updated_at": t,
                "closed_at": t, "merged_at": t, "merge_commit_sha": "c".repeat(40), "commits": 2, "additions": 10,
                "deletions": 3, "changed_files": 1, "labels": [], "assignees": [], "requested_reviewers": [],
                "url": format!("{api}/pulls/{}", 10_000 + n), "html_url": "https://github.com/o/fuzz/pull/1",
                "head": {"ref": "f", "sha": "d".repeat(40), "repo": {"id": 9, "name": "fuzz", "full_name": "o/fuzz"}},
                "base": {"ref": "main", "sha": "e".repeat(40), "repo": {"id": 9, "name": "fuzz", "full_name": "o/fuzz"}}
            },
            "reviews": [{"id": 400_000 + n, "state": "APPROVED", "body": "ok", "user": user(3000, "rev"), "submitted_at": t}],
            "files": [{"filename": "a.rs", "status": "modified", "additions": 10, "deletions": 3, "changes": 13}],
            "commits": []
        }),
        "issue_comment" => json!({
            "id": 600_000 + n, "node_id": format!("C_{n}"), "body": "c", "user": user(1000, "u0"),
            "issue_url": format!("{api}/issues/{}", n % 40 + 1), "created_at": t, "updated_at": t
        }),
        "issue_event" => json!({
            "id": 700_000 + n, "event": "closed", "actor": user(1000, "u0"), "created_at": t,
            "commit_id": null, "issue": {"number": n % 40 + 1}
        }),
        "review_comment" => json!({
            "id": 800_000 + n, "node_id": format!("RC_{n}"), "body": "rc", "user": user(1000, "u0"),
            "pull_request_url": format!("{api}/pulls/{}", 10_000 + n % 20 + 1), "pull_request_review_id": 400_001,
            "in_reply_to_id": null, "diff_hunk": "@@", "path": "a.rs", "position": 1, "original_position": 1,
            "line": 3, "original_line": 3, "side": "RIGHT", "commit_id": "d".repeat(40),
            "original_commit_id": "d".repeat(40), "created_at": t, "updated_at": t
        }),
        "release" => json!({
            "id": 900_000 + n, "name": format!("v{n}"), "tag_name": format!("v{n}"), "body": "notes",
            "author": user(1000, "u0"), "draft": false, "prerelease": false, "created_at": t, "published_at": t,
            "html_url": "https://github.com/o/fuzz/releases/1"
        }),
        "repo_info" => json!({
            "id": 4242, "node_id": "R_1", "full_name": "o/fuzz", "description": "d", "homepage": null,
            "default_branch": "main", "language": "Rust", "license": {"spdx_id": "MIT"}, "fork": false,
            "archived": false, "visibility": "public", "has_issues": true, "has_wiki": true, "has_pages": false,
            "forks_count": 1, "subscribers_count": 2, "watchers_count": 3, "stargazers_count": 4,
            "open_issues_count": 5, "size": 6, "created_at": t, "updated_at": t, "pushed_at": t,
            "html_url": "https://github.com/o/fuzz"
        }),
        other => panic!("no base for {other}"),
    }
}

fn gl_user(id: i64, username: &str) -> Value {
    json!({"id": id, "username": username, "name": format!("Name {id}"), "state": "active",
           "avatar_url": format!("https://gitlab.example/u/{id}"), "web_url": format!("https://gitlab.com/{username}")})
}

/// A realistic GitLab (REST v4) object of each entity, unique by `n`.
fn gitlab_base(entity: &str, n: i64) -> Value {
    let t = "2024-03-04T05:06:07.123Z";
    let web = "https://gitlab.com/o/fuzz";
    match entity {
        "contributor" => json!({"id": 500_000 + n, "username": format!("c{n}"), "name": "C", "state": "active",
                                "access_level": 30, "web_url": format!("https://gitlab.com/c{n}")}),
        "issue" => json!({
            "id": 100_000 + n, "iid": n, "project_id": 9, "title": format!("issue {n}"), "description": "body",
            "state": "opened", "web_url": format!("{web}/-/issues/{n}"),
            "_links": {"self": format!("https://gitlab.com/api/v4/projects/9/issues/{n}")},
            "author": gl_user(1000 + n % 7, &format!("u{}", n % 7)), "labels": ["bug", "ui"],
            "assignees": [gl_user(2000, "assignee")], "user_notes_count": 3, "created_at": t, "updated_at": t,
            "closed_at": null, "closed_by": null
        }),
        "pull_request" => json!({
            "merge_request": {
                "id": 300_000 + n, "iid": 10_000 + n, "title": format!("mr {n}"), "description": "b",
                "state": "merged", "draft": false, "work_in_progress": false, "discussion_locked": null,
                "author": gl_user(1000 + n % 5, &format!("u{}", n % 5)), "created_at": t, "updated_at": t,
                "closed_at": null, "merged_at": t, "merge_commit_sha": "c".repeat(40), "labels": ["x"],
                "assignees": [], "reviewers": [gl_user(3000, "rev")], "web_url": format!("{web}/-/merge_requests/1"),
                "source_branch": "f", "target_branch": "main", "sha": "d".repeat(40),
                "source_project_id": 9, "target_project_id": 9
            },
            "approvals": {"approved_by": [{"user": gl_user(3000, "rev"), "approved_at": t}]},
            "commits": [{"id": "d".repeat(40), "message": "m", "author_name": "A", "author_email": "a@example.com",
                         "authored_date": t}]
        }),
        "issue_comment" => json!({
            "id": 600_000 + n, "type": null, "body": "c", "author": gl_user(1000, "u0"), "system": false,
            "noteable_type": "Issue", "noteable_iid": n % 40 + 1, "created_at": t, "updated_at": t
        }),
        "issue_event" => json!({
            "id": 700_000 + n, "body": "closed", "author": gl_user(1000, "u0"), "system": true,
            "noteable_type": "Issue", "noteable_iid": n % 40 + 1, "created_at": t
        }),
        "review_comment" => json!({
            "id": 800_000 + n, "type": "DiffNote", "body": "rc", "author": gl_user(1000, "u0"), "system": false,
            "noteable_type": "MergeRequest", "noteable_iid": 10_000 + n % 20 + 1,
            "position": {"base_sha": "b".repeat(40), "head_sha": "d".repeat(40), "old_path": "a.rs",
                         "new_path": "a.rs", "position_type": "text", "old_line": null, "new_line": 3},
            "created_at": t, "updated_at": t
        }),
        "release" => json!({
            "tag_name": format!("v{n}"), "name": format!("v{n}"), "description": "notes",
            "author": gl_user(1000, "u0"), "created_at": t, "released_at": t,
            "_links": {"self": format!("{web}/-/releases/v{n}")}
        }),
        "repo_info" => json!({
            "id": 4242, "path_with_namespace": "o/fuzz", "description": "d", "web_url": web,
            "default_branch": "main", "license": {"key": "mit", "name": "MIT License"}, "archived": false,
            "visibility": "public", "issues_access_level": "enabled", "forks_count": 1, "star_count": 4,
            "open_issues_count": 5, "statistics": {"repository_size": 2048}, "created_at": t,
            "last_activity_at": t
        }),
        other => panic!("no base for {other}"),
    }
}

const ENTITIES: &[&str] = &[
    "contributor",
    "issue",
    "pull_request",
    "issue_comment",
    "issue_event",
    "review_comment",
    "release",
    "repo_info",
];

#[derive(Clone, Debug)]
enum Mutation {
    /// A field (a path into the object) replaced by a raw JSON text.
    Field(Vec<String>, String),
    /// The document cut short.
    Truncate(usize),
    /// A string field made huge.
    Huge(usize),
    /// A field nested this deep.
    Deep(usize),
    /// A raw prefix before the document (a BOM, whitespace).
    Prefix(String),
}

/// Every path of an object down to `depth` levels (arrays by their first element).
fn paths(v: &Value, prefix: &[String], depth: usize, out: &mut Vec<Vec<String>>) {
    if let Value::Object(map) = v {
        for (k, child) in map {
            let mut p = prefix.to_vec();
            p.push(k.clone());
            out.push(p.clone());
            if depth > 1 {
                paths(child, &p, depth - 1, out);
            }
        }
    }
}

fn set_raw(doc: &Value, path: &[String], raw: &str) -> String {
    let mut doc = doc.clone();
    let mut at = &mut doc;
    for key in &path[..path.len() - 1] {
        at = &mut at[key.as_str()];
    }
    at[path[path.len() - 1].as_str()] = json!("__RAW_VALUE__");
    doc.to_string().replacen("\"__RAW_VALUE__\"", raw, 1)
}

fn apply(doc: &Value, m: &Mutation) -> String {
    match m {
        Mutation::Field(path, raw) => set_raw(doc, path, raw),
        Mutation::Truncate(at) => {
            let text = doc.to_string();
            let mut cut = (*at).min(text.len() - 1);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text[..cut].to_string()
        }
        Mutation::Huge(len) => {
            let mut doc = doc.clone();
            doc["body"] = json!("é\u{85}x".repeat(*len / 4));
            doc.to_string()
        }
        Mutation::Deep(depth) => set_raw(
            doc,
            &["title".to_string()],
            &format!("{}{}", "[".repeat(*depth), "]".repeat(*depth)),
        ),
        Mutation::Prefix(p) => format!("{p}{doc}"),
    }
}

fn mutation(doc: &Value) -> BoxedStrategy<Mutation> {
    let mut all = Vec::new();
    paths(doc, &[], 2, &mut all);
    let len = doc.to_string().len();
    prop_oneof![
        6 => (proptest::sample::select(all), proptest::sample::select(WEIRD))
            .prop_map(|(p, w)| Mutation::Field(p, w.to_string())),
        1 => (1..len).prop_map(Mutation::Truncate),
        1 => (1_000usize..400_000).prop_map(Mutation::Huge),
        1 => (2usize..3_000).prop_map(Mutation::Deep),
        1 => proptest::sample::select(vec!["\u{feff}", " \n\t", "\u{feff}\u{feff}"])
            .prop_map(|p| Mutation::Prefix(p.to_string())),
    ]
    .boxed()
}

async fn count(conn: &mut PgConnection, sql: &str, repo: i64) -> i64 {
    sqlx::query_scalar(sql).bind(repo).fetch_one(&mut *conn).await.unwrap()
}

/// How a forge's payloads are made and keyed, for one fuzzing run.
struct Forge {
    label: &'static str,
    url: &'static str,
    base: fn(&str, i64) -> Value,
    /// The fields whose mutation may reject or re-key an issue.
    issue_keys: [&'static str; 2],
}

#[tokio::test]
async fn every_generated_payload_ends_drained_pending_or_rejected_with_a_reason() {
    fuzz(Forge {
        label: "fuzz_drain",
        url: "https://github.com/o/fuzz",
        base,
        issue_keys: ["id", "number"],
    })
    .await;
}

/// The same for GitLab's payloads, through the GitLab mappers.
#[tokio::test]
async fn every_generated_gitlab_payload_ends_drained_pending_or_rejected_with_a_reason() {
    fuzz(Forge {
        label: "fuzz_drain_gitlab",
        url: "https://gitlab.com/o/fuzz",
        base: gitlab_base,
        issue_keys: ["id", "iid"],
    })
    .await;
}

async fn fuzz(forge: Forge) {
    let base = forge.base;
    let seed: u64 = std::env::var("AVELOXIS_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x0a7e_1051);
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(Config::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes));

    let db = TestDb::with_extension(forge.label).await;
    let mut conn = db.connect().await;
    let repo: i64 = sqlx::query_scalar("SELECT aveloxis.add_repo($1)")
        .bind(forge.url)
        .fetch_one(&mut conn)
        .await
        .unwrap();

    // Controls: 40 issues (the parents of most comments and events) and 20 pull requests,
    // unmutated; then 480 mutated payloads over every entity.
    let mut staged: Vec<(String, String, Option<Mutation>, i64)> = Vec::new();
    for n in 1..=40 {
        staged.push(("issue".into(), base("issue", n).to_string(), None, n));
    }
    for n in 1..=20 {
        staged.push(("pull_request".into(), base("pull_request", n).to_string(), None, n));
    }
    for i in 0..480i64 {
        let entity = ENTITIES[(i as usize) % ENTITIES.len()];
        let n = 1_000 + i;
        let doc = base(entity, n);
        let m = mutation(&doc).new_tree(&mut runner).unwrap().current();
        staged.push((entity.to_string(), apply(&doc, &m), Some(m), n));
    }
    for (entity, payload, _, _) in &staged {
        db.stage(repo, entity, std::slice::from_ref(payload)).await;
    }

    // Twice: the second drain re-reads rows left pending by the first.
    for _ in 0..2 {
        sqlx::query("CALL aveloxis.drain($1, 50)")
            .bind(repo)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: the drain aborted: {e}"));
    }

    // Every row is drained, pending or rejected with a reason; nothing else.
    let total = staged.len() as i64;
    let drained = count(
        &mut conn,
        "SELECT count(*) FROM aveloxis_ops.staging WHERE repo_id = $1 AND drained_at IS NOT NULL",
        repo,
    )
    .await;
    let pending = count(
        &mut conn,
        "SELECT count(*) FROM aveloxis_ops.staging WHERE repo_id = $1 AND drained_at IS NULL",
        repo,
    )
    .await;
    let rejected = count(
        &mut conn,
        "SELECT count(*) FROM aveloxis_ops.staging_rejects WHERE repo_id = $1",
        repo,
    )
    .await;
    let without_reason = count(
        &mut conn,
        "SELECT count(*) FROM aveloxis_ops.staging_rejects WHERE repo_id = $1 AND coalesce(btrim(error), '') = ''",
        repo,
    )
    .await;
    assert_eq!(drained + pending + rejected, total, "seed {seed}: rows lost or doubled");
    assert_eq!(without_reason, 0, "seed {seed}: a reject without a reason");
    assert!(drained > total / 2, "seed {seed}: only {drained} of {total} drained");
    // The runs' counts add up: every reject counted once, the last run's pending are the
    // rows still pending.
    let counted_rejects = count(
        &mut conn,
        "SELECT coalesce(sum(c.rejected), 0)::bigint FROM aveloxis_ops.drain_run_counts c
         JOIN aveloxis_ops.drain_runs r USING (run_id) WHERE r.repo_id = $1",
        repo,
    )
    .await;
    assert_eq!(counted_rejects, rejected, "seed {seed}");
    let last_pending = count(
        &mut conn,
        "SELECT coalesce(sum(c.pending), 0)::bigint FROM aveloxis_ops.drain_run_counts c
         WHERE c.run_id = (SELECT max(run_id) FROM aveloxis_ops.drain_runs WHERE repo_id = $1)",
        repo,
    )
    .await;
    assert_eq!(last_pending, pending, "seed {seed}");

    // Rejects name their entity.
    let reasons: Vec<(String, String)> =
        sqlx::query_as("SELECT entity, error FROM aveloxis_ops.staging_rejects WHERE repo_id = $1")
            .bind(repo)
            .fetch_all(&mut conn)
            .await
            .unwrap();
    for (entity, error) in &reasons {
        assert!(error.starts_with(&format!("{entity}: ")), "seed {seed}: {error}");
    }

    // Issues: the controls are stored; one bad non-key field never loses the row; only
    // an unusable id or number, or broken JSON, rejects one.
    let stored: Vec<i64> = sqlx::query_scalar("SELECT platform_issue_id FROM aveloxis_data.issues WHERE repo_id = $1")
        .bind(repo)
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    for (entity, payload, m, n) in &staged {
        if entity != "issue" {
            continue;
        }
        let id = 100_000 + n;
        let is_stored = stored.contains(&id);
        let must_store = match m {
            None => true,
            // A mutated id or number may be rejected, or stored under another key: only
            // the other fields are held to "never loses the row".
            Some(Mutation::Field(path, _)) => !forge.issue_keys.contains(&path[0].as_str()),
            Some(Mutation::Huge(_)) | Some(Mutation::Deep(_)) | Some(Mutation::Prefix(_)) => true,
            Some(Mutation::Truncate(_)) => false,
        };
        if must_store {
            assert!(
                is_stored,
                "seed {seed}: issue {n} ({m:?}) was not stored:\n{}",
                &payload[..payload.len().min(400)]
            );
        }
        *outcomes
            .entry(if is_stored { "stored" } else { "not stored" })
            .or_default() += 1;
    }
    assert!(
        outcomes.get("stored").copied().unwrap_or(0) > 60,
        "seed {seed}: {outcomes:?}"
    );
    let nulled = count(
        &mut conn,
        "SELECT coalesce(sum(n.nulled), 0)::bigint FROM aveloxis_ops.drain_run_nulled n
         JOIN aveloxis_ops.drain_runs r USING (run_id) WHERE r.repo_id = $1",
        repo,
    )
    .await;
    assert!(nulled > 0, "seed {seed}: no field was counted as nulled");
    let mut by_reason: BTreeMap<String, usize> = BTreeMap::new();
    for (_, error) in &reasons {
        *by_reason.entry(error.chars().take(70).collect()).or_default() += 1;
    }
    eprintln!(
        "seed {seed}: {total} staged: {drained} drained, {pending} pending, {rejected} rejected; \
         {nulled} fields nulled; issues {outcomes:?}; rejects by reason {by_reason:#?}"
    );

    // No control character reached the data.
    let dirty = count(
        &mut conn,
        "SELECT (SELECT count(*) FROM aveloxis_data.issues WHERE repo_id = $1
                   AND (issue_title ~ '[\\x01-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f]'
                        OR issue_body ~ '[\\x01-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f]'))
              + (SELECT count(*) FROM aveloxis_data.messages WHERE repo_id = $1
                   AND msg_text ~ '[\\x01-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f]')",
        repo,
    )
    .await;
    assert_eq!(dirty, 0, "seed {seed}: control characters stored");
    conn.close().await.unwrap();
}
