//! GitLab end to end: the real agent against a local GitLab replaying recorded gitlab.com
//! traffic as one project (harness::gitlab_replay), into a real database through staging,
//! the GitLab mappers of the drain and the queue; checked field by field against the
//! payloads served. Also the Go system's GitLab defects (reference gitlab-parity.md), each
//! shown absent, and identities per GitLab host.

// Rows read back are wide tuples, one per checked relation.
#![allow(clippy::type_complexity)]

use std::collections::{BTreeMap, BTreeSet};

use harness::gitlab_replay::{devlake_project, GitlabProject, GitlabReplay, ReplayOptions};
use harness::sqlx::{self, PgPool};
use harness::{output_text, TestDb};
use serde_json::Value;

const URL: &str = "https://gitlab.com/gitlab-data/snowflake_spend";

fn gitlab_state(state: &str) -> &str {
    match state {
        "opened" | "locked" => "open",
        other => other,
    }
}

fn uid(v: &Value) -> Option<i64> {
    v["id"].as_i64().filter(|id| *id > 0)
}

async fn uuid_of(pool: &PgPool, platform: i16, id: i64) -> String {
    sqlx::query_scalar("SELECT aveloxis.platform_uuid($1, $2)::text")
        .bind(platform)
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

fn options() -> ReplayOptions {
    ReplayOptions {
        // Small pages, so every list of the recording spans several.
        max_per_page: 5,
        link_only: ["merge_requests".to_string()].into(),
        no_totals: true,
        throttle_once: Some("/members/all".into()),
        ..ReplayOptions::default()
    }
}

/// Runs `aveloxis-agent collect` for the project against the replay.
async fn collect(db: &TestDb, replay: &GitlabReplay, config: &std::path::Path) -> (String, String) {
    let api = replay.api_url();
    let config = config.to_str().unwrap();
    let out = db
        .agent_async(
            &[
                "--config",
                config,
                "collect",
                URL,
                "--phases",
                "collect",
                "--gitlab-api-url",
                api.as_str(),
            ],
            &[("GITLAB_TOKENS", "gl-tok")],
        )
        .await;
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "collect failed:\n{stdout}\n{stderr}");
    (stdout, stderr)
}

fn config_file(label: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("aveloxis-gitlab-{label}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("agent.toml");
    // Another instance's token: it must never reach gitlab.com's API.
    std::fs::write(
        &file,
        "[gitlab_host_tokens]\n\"gitlab.example.org\" = [\"other-host-tok\"]\n",
    )
    .unwrap();
    file
}

#[tokio::test]
async fn a_gitlab_project_is_collected_and_every_entity_matches_its_payload() {
    let db = TestDb::with_extension("gitlab_collect").await;
    let project = devlake_project();
    let replay = GitlabReplay::start(project.clone(), options()).await;
    let config = config_file("collect");
    let (stdout, _) = collect(&db, &replay, &config).await;
    assert!(stdout.contains("collect:"), "{stdout}");
    let pool = db.pool(2).await;
    let repo: i64 = sqlx::query_scalar("SELECT repo_id FROM aveloxis_data.repos WHERE repo_git = $1")
        .bind(URL)
        .fetch_one(&pool)
        .await
        .unwrap();

    // Nothing was rejected and nothing waits.
    let (rejected, waiting): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM aveloxis_ops.staging_rejects), \
                (SELECT count(*) FROM aveloxis_ops.staging WHERE drained_at IS NULL)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((rejected, waiting), (0, 0));

    check_repo_info(&pool, repo, &project).await;
    check_members(&pool, &project).await;
    check_issues(&pool, repo, &project).await;
    check_merge_requests(&pool, repo, &project).await;
    check_notes_and_events(&pool, repo, &project).await;
    check_releases(&pool, repo, &project).await;
    check_requests(&replay, &project).await;

    // Completeness: the issue count from issues_statistics (the lists sent no X-Total).
    let ledger: BTreeMap<String, (i64, i64)> =
        sqlx::query_as("SELECT entity, reported, gathered FROM aveloxis.completeness($1)")
            .bind(repo)
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .map(|(e, r, g): (String, i64, i64)| (e, (r, g)))
            .collect();
    let issues = project.issues.len() as i64;
    let mrs = project.merge_requests.len() as i64;
    assert_eq!(ledger["issues"], (issues, issues), "{ledger:?}");
    assert_eq!(ledger["pull_requests"], (mrs, mrs), "{ledger:?}");
    let highest = |list: &[Value]| list.iter().filter_map(|i| i["iid"].as_i64()).max().unwrap();
    assert_eq!(
        ledger["issues_and_pull_requests"].0,
        highest(&project.issues) + highest(&project.merge_requests)
    );
}

async fn check_repo_info(pool: &PgPool, repo: i64, project: &GitlabProject) {
    let row: (
        i64,
        String,
        Option<String>,
        Option<i32>,
        Option<i32>,
        Option<String>,
        bool,
    ) = sqlx::query_as(
        "SELECT repo_src_id, full_name, license, stars_count, open_issues, default_branch, is_fork
         FROM aveloxis_data.repo_info WHERE repo_id = $1",
    )
    .bind(repo)
    .fetch_one(pool)
    .await
    .unwrap();
    let p = &project.project;
    assert_eq!(row.0, project.id);
    assert_eq!(row.1, project.path);
    // The Go system never asked for license=true, so its licence was always empty.
    assert_eq!(row.2.as_deref(), project.license["name"].as_str());
    assert_eq!(row.3.map(i64::from), p["star_count"].as_i64());
    assert_eq!(row.4.map(i64::from), p["open_issues_count"].as_i64());
    assert_eq!(row.5.as_deref(), p["default_branch"].as_str());
    assert!(!row.6);
    let src: Option<i64> = sqlx::query_scalar("SELECT repo_src_id FROM aveloxis_data.repos WHERE repo_id = $1")
        .bind(repo)
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(src, Some(project.id));
}

async fn check_members(pool: &PgPool, project: &GitlabProject) {
    for m in &project.members {
        let id = uid(m).unwrap();
        let row: (
            String,
            Option<i64>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        ) = sqlx::query_as(
            "SELECT cntrb_id::text, gl_id, gl_username, gl_web_url, gl_state, gl_avatar_url
                 FROM aveloxis_data.contributors c
                 JOIN aveloxis_data.contributor_identities i USING (cntrb_id)
                 WHERE i.platform_id = 2 AND i.platform_user_id = $1",
        )
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("member {m}: {e}"));
        assert_eq!(row.0, uuid_of(pool, 2, id).await, "R1: deterministic id");
        assert_eq!(row.1, Some(id));
        assert_eq!(row.2.as_deref(), m["username"].as_str());
        assert_eq!(row.3.as_deref(), m["web_url"].as_str());
        assert_eq!(row.4.as_deref(), m["state"].as_str());
        assert_eq!(row.5.as_deref(), m["avatar_url"].as_str());
    }
}

type IssueRow = (
    i32,
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    Option<i32>,
    Option<String>,
    Option<String>,
);

async fn check_issues(pool: &PgPool, repo: i64, project: &GitlabProject) {
    let stored: BTreeMap<i64, IssueRow> = sqlx::query_as(
        "SELECT issue_number, issue_title, issue_body, issue_state, html_url,
                to_char(closed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), comment_count,
                reporter_id::text, closed_by_id::text
         FROM aveloxis_data.issues WHERE repo_id = $1",
    )
    .bind(repo)
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .map(|r: IssueRow| (i64::from(r.0), r))
    .collect();
    assert_eq!(stored.len(), project.issues.len());
    for i in &project.issues {
        let row = &stored[&i["iid"].as_i64().unwrap()];
        assert_eq!(Some(row.1.as_str()), i["title"].as_str());
        assert_eq!(row.2.as_deref(), i["description"].as_str());
        assert_eq!(row.3, gitlab_state(i["state"].as_str().unwrap()), "opened is open");
        assert_eq!(row.4.as_deref(), i["web_url"].as_str());
        assert_eq!(row.5.as_deref(), i["closed_at"].as_str());
        assert_eq!(row.6.map(i64::from), i["user_notes_count"].as_i64());
        let reporter = uuid_of(pool, 2, uid(&i["author"]).unwrap()).await;
        assert_eq!(row.7.as_deref(), Some(reporter.as_str()));
        match uid(&i["closed_by"]) {
            Some(id) => assert_eq!(row.8, Some(uuid_of(pool, 2, id).await)),
            None => assert_eq!(row.8, None),
        }
    }
    let labels: BTreeSet<(i64, String)> = sqlx::query_as(
        "SELECT i.issue_number::bigint, l.label_text FROM aveloxis_data.issue_labels l
         JOIN aveloxis_data.issues i USING (issue_id) WHERE i.repo_id = $1",
    )
    .bind(repo)
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let expected: BTreeSet<(i64, String)> = project
        .issues
        .iter()
        .flat_map(|i| {
            let n = i["iid"].as_i64().unwrap();
            i["labels"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |l| {
                    (
                        n,
                        l.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| l["name"].as_str().unwrap().to_string()),
                    )
                })
        })
        .collect();
    assert_eq!(labels, expected);
    let assignees: BTreeSet<(i64, i64)> = sqlx::query_as(
        "SELECT i.issue_number::bigint, a.platform_assignee_id FROM aveloxis_data.issue_assignees a
         JOIN aveloxis_data.issues i USING (issue_id) WHERE i.repo_id = $1",
    )
    .bind(repo)
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let expected: BTreeSet<(i64, i64)> = project
        .issues
        .iter()
        .flat_map(|i| {
            let n = i["iid"].as_i64().unwrap();
            i["assignees"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(move |a| Some((n, uid(&a)?)))
        })
        .collect();
    assert_eq!(assignees, expected);
}

async fn check_merge_requests(pool: &PgPool, repo: i64, project: &GitlabProject) {
    type Row = (
        i32,
        i64,
        String,
        String,
        Option<bool>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let stored: BTreeMap<i64, Row> = sqlx::query_as(
        "SELECT pr_number, platform_pr_id, pr_title, pr_state, pr_draft,
                to_char(merged_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), merge_commit_sha,
                author_id::text
         FROM aveloxis_data.pull_requests WHERE repo_id = $1",
    )
    .bind(repo)
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .map(|r: Row| (i64::from(r.0), r))
    .collect();
    assert_eq!(stored.len(), project.merge_requests.len());
    for m in &project.merge_requests {
        let row = &stored[&m["iid"].as_i64().unwrap()];
        assert_eq!(Some(row.1), m["id"].as_i64());
        assert_eq!(Some(row.2.as_str()), m["title"].as_str());
        assert_eq!(row.3, gitlab_state(m["state"].as_str().unwrap()));
        assert_eq!(row.4, m["draft"].as_bool().or(m["work_in_progress"].as_bool()));
        assert_eq!(row.5.as_deref(), m["merged_at"].as_str());
        assert_eq!(
            row.6.as_deref(),
            m["merge_commit_sha"].as_str().or(m["squash_commit_sha"].as_str())
        );
        assert_eq!(row.7, Some(uuid_of(pool, 2, uid(&m["author"]).unwrap()).await));
    }
    assert!(stored.values().any(|r| r.3 == "merged"), "the recording has merged MRs");

    // Requested reviewers are the MR's reviewers; assignees its assignees.
    for (table, column, field) in [
        ("pull_request_reviewers", "platform_reviewer_id", "reviewers"),
        ("pull_request_assignees", "platform_assignee_id", "assignees"),
    ] {
        let stored: BTreeSet<(i64, i64)> = sqlx::query_as(&format!(
            "SELECT p.pr_number::bigint, x.{column} FROM aveloxis_data.{table} x
             JOIN aveloxis_data.pull_requests p USING (pull_request_id) WHERE p.repo_id = $1"
        ))
        .bind(repo)
        .fetch_all(pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
        let expected: BTreeSet<(i64, i64)> = project
            .merge_requests
            .iter()
            .flat_map(|m| {
                let n = m["iid"].as_i64().unwrap();
                m[field]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(move |u| Some((n, uid(&u)?)))
            })
            .collect();
        assert_eq!(stored, expected, "{table}");
    }

    // Approvals are APPROVED reviews at approved_at; their ids are never 0 (the Go system
    // read a nonexistent approved_by[].id) and never shared.
    let reviews: Vec<(i64, i64, String, Option<String>, String)> = sqlx::query_as(
        "SELECT p.pr_number::bigint, v.platform_review_id, v.review_state,
                to_char(v.submitted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), v.cntrb_id::text
         FROM aveloxis_data.pull_request_reviews v JOIN aveloxis_data.pull_requests p USING (pull_request_id)
         WHERE p.repo_id = $1 ORDER BY 1, 5",
    )
    .bind(repo)
    .fetch_all(pool)
    .await
    .unwrap();
    let mut expected = Vec::new();
    for (key, approvals) in project.children.iter().filter(|(k, _)| k.ends_with("/approvals")) {
        let n: i64 = key.split('/').nth(1).unwrap().parse().unwrap();
        for a in approvals["approved_by"].as_array().unwrap() {
            let who = uuid_of(pool, 2, uid(&a["user"]).unwrap()).await;
            expected.push((n, a["approved_at"].as_str().map(|t| t.replace("+00:00", "Z")), who));
        }
    }
    expected.sort_by(|a, b| (a.0, &a.2).cmp(&(b.0, &b.2)));
    assert!(!expected.is_empty());
    let got: Vec<(i64, Option<String>, String)> = reviews.iter().map(|r| (r.0, r.3.clone(), r.4.clone())).collect();
    assert_eq!(got.len(), expected.len(), "{reviews:?}");
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!((g.0, &g.2), (e.0, &e.2));
        // approved_at as GitLab wrote it, to the millisecond.
        assert_eq!(
            g.1.as_deref().map(|t| &t[..19]),
            e.1.as_deref().map(|t| &t[..19]),
            "{reviews:?}"
        );
    }
    assert!(reviews.iter().all(|r| r.1 != 0 && r.2 == "APPROVED"), "{reviews:?}");
    let ids: BTreeSet<i64> = reviews.iter().map(|r| r.1).collect();
    assert_eq!(ids.len(), reviews.len());

    // Commits of each MR, as /commits lists them.
    let commits: BTreeSet<(i64, String, Option<String>)> = sqlx::query_as(
        "SELECT p.pr_number::bigint, c.pr_cmt_sha, c.pr_cmt_author_email FROM aveloxis_data.pull_request_commits c
         JOIN aveloxis_data.pull_requests p USING (pull_request_id) WHERE p.repo_id = $1",
    )
    .bind(repo)
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let expected: BTreeSet<(i64, String, Option<String>)> = project
        .children
        .iter()
        .filter(|(k, _)| k.ends_with("/commits") && listed(project, k))
        .flat_map(|(k, list)| {
            let n: i64 = k.split('/').nth(1).unwrap().parse().unwrap();
            list.as_array().unwrap().iter().map(move |c| {
                (
                    n,
                    c["id"].as_str().unwrap().to_string(),
                    c["author_email"].as_str().map(str::to_string),
                )
            })
        })
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(commits, expected);
}

/// Whether the item a per-item path is under (`merge_requests/7/commits`) is in the
/// project's lists: the recordings hold children of items the lists do not serve, and
/// those are never asked for.
fn listed(project: &GitlabProject, key: &str) -> bool {
    let mut parts = key.split('/');
    let (kind, iid) = (parts.next().unwrap(), parts.next().unwrap().parse::<i64>().ok());
    let list = if kind == "issues" {
        &project.issues
    } else {
        &project.merge_requests
    };
    list.iter().any(|i| i["iid"].as_i64() == iid)
}

/// The notes of an item's discussions, by kind.
fn notes_of<'a>(project: &'a GitlabProject, key: &str) -> Vec<&'a Value> {
    project
        .children
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|d| d["notes"].as_array().into_iter().flatten())
        .collect()
}

async fn check_notes_and_events(pool: &PgPool, repo: i64, project: &GitlabProject) {
    // User notes are comments of their parent, whatever noteable_iid the recording says
    // (the agent fetched them under the parent).
    let comments: BTreeSet<(String, i64, i64, String)> = sqlx::query_as(
        "SELECT 'issue', i.issue_number::bigint, m.platform_msg_id, m.msg_text
         FROM aveloxis_data.messages m JOIN aveloxis_data.issue_message_ref r USING (msg_id)
         JOIN aveloxis_data.issues i USING (issue_id) WHERE m.repo_id = $1
         UNION ALL
         SELECT 'mr', p.pr_number::bigint, m.platform_msg_id, m.msg_text
         FROM aveloxis_data.messages m JOIN aveloxis_data.pull_request_message_ref r USING (msg_id)
         JOIN aveloxis_data.pull_requests p USING (pull_request_id)
         WHERE m.repo_id = $1 AND m.msg_source = 'issue_comment'",
    )
    .bind(repo)
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let mut expected = BTreeSet::new();
    let mut system = Vec::new();
    let mut diff_notes = Vec::new();
    for (key, _) in project
        .children
        .iter()
        .filter(|(k, _)| k.ends_with("/discussions") && listed(project, k))
    {
        let kind = if key.starts_with("issues/") { "issue" } else { "mr" };
        let n: i64 = key.split('/').nth(1).unwrap().parse().unwrap();
        for note in notes_of(project, key) {
            if note["system"].as_bool() == Some(true) {
                system.push((kind, n, note));
            } else if note["type"].as_str() == Some("DiffNote") {
                diff_notes.push((n, note));
            } else {
                expected.insert((
                    kind.to_string(),
                    n,
                    note["id"].as_i64().unwrap(),
                    note["body"].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    assert!(!expected.is_empty() && !system.is_empty() && !diff_notes.is_empty());
    assert_eq!(comments, expected);

    // Diff notes are review comments on their line.
    for (n, note) in &diff_notes {
        let row: (
            i64,
            Option<String>,
            Option<i32>,
            Option<i32>,
            Option<String>,
            Option<String>,
        ) = sqlx::query_as(
            "SELECT p.pr_number::bigint, c.path, c.line, c.original_line, c.commit_id, c.original_commit_id
             FROM aveloxis_data.review_comments c JOIN aveloxis_data.pull_requests p USING (pull_request_id)
             WHERE c.repo_id = $1 AND c.platform_src_id = $2",
        )
        .bind(repo)
        .bind(note["id"].as_i64().unwrap())
        .fetch_one(pool)
        .await
        .unwrap();
        let pos = &note["position"];
        assert_eq!(row.0, *n);
        assert_eq!(row.1.as_deref(), pos["new_path"].as_str().or(pos["old_path"].as_str()));
        assert_eq!(row.2.map(i64::from), pos["new_line"].as_i64());
        assert_eq!(row.3.map(i64::from), pos["old_line"].as_i64());
        assert_eq!(row.4.as_deref(), pos["head_sha"].as_str());
        assert_eq!(row.5.as_deref(), pos["base_sha"].as_str());
    }

    // Events: resource events and the system notes that record a GitHub action, each
    // with its actor (the Go system read user/action/state from objects that carry
    // author/action_name/target_iid, so actor, action and parent were all empty).
    let events: BTreeSet<(String, i64, String, String, String)> = sqlx::query_as(
        "SELECT 'issue', i.issue_number::bigint, e.event_source, e.action, e.cntrb_id::text
         FROM aveloxis_data.issue_events e JOIN aveloxis_data.issues i USING (issue_id) WHERE e.repo_id = $1
         UNION ALL
         SELECT 'mr', p.pr_number::bigint, e.event_source, e.action, e.cntrb_id::text
         FROM aveloxis_data.pull_request_events e JOIN aveloxis_data.pull_requests p USING (pull_request_id)
         WHERE e.repo_id = $1",
    )
    .bind(repo)
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let mut expected = BTreeSet::new();
    for (kind, n, note) in &system {
        let body = note["body"].as_str().unwrap().to_lowercase().replace("**", "");
        let action = if body.starts_with("closed") {
            Some("closed")
        } else if body.starts_with("reopened") {
            Some("reopened")
        } else if body.starts_with("merged") {
            Some("merged")
        } else if body.starts_with("assigned to @") || body.starts_with("reassigned to @") {
            Some("assigned")
        } else if body.starts_with("unassigned @") {
            Some("unassigned")
        } else if body.starts_with("changed milestone to ") {
            Some("milestoned")
        } else if body.starts_with("added ~") {
            Some("labeled")
        } else if body.starts_with("changed title from ") {
            Some("renamed")
        } else if body.starts_with("marked this merge request as draft")
            || body.starts_with("marked as a work in progress")
        {
            Some("converted_to_draft")
        } else if body.starts_with("marked this merge request as ready")
            || body.starts_with("unmarked as a work in progress")
        {
            Some("ready_for_review")
        } else if body.starts_with("requested review from @") {
            Some("review_requested")
        } else if body.starts_with("mentioned in commit ") {
            Some("referenced")
        } else {
            None
        };
        if let Some(action) = action {
            let who = uuid_of(pool, 2, uid(&note["author"]).unwrap()).await;
            expected.insert((kind.to_string(), *n, "note".to_string(), action.to_string(), who));
        }
    }
    for (key, source) in [
        ("issues/1/resource_state_events", "state_event"),
        ("issues/1/resource_label_events", "label_event"),
        ("merge_requests/1/resource_state_events", "state_event"),
    ] {
        let kind = if key.starts_with("issues/") { "issue" } else { "mr" };
        for e in project.children[key].as_array().unwrap() {
            let action = match source {
                "label_event" => match e["action"].as_str() {
                    Some("add") => "labeled",
                    _ => "unlabeled",
                },
                _ => e["state"].as_str().unwrap(),
            };
            let who = uuid_of(pool, 2, uid(&e["user"]).unwrap()).await;
            expected.insert((kind.to_string(), 1, source.to_string(), action.to_string(), who));
        }
    }
    assert!(expected.iter().any(|e| e.2 == "note") && expected.iter().any(|e| e.2 != "note"));
    assert_eq!(events, expected);
}

async fn check_releases(pool: &PgPool, repo: i64, project: &GitlabProject) {
    let stored: BTreeMap<String, (Option<String>, Option<String>, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT release_id, release_name, release_tag_name, release_author,
                to_char(release_published_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS')
         FROM aveloxis_data.releases WHERE repo_id = $1",
    )
    .bind(repo)
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .map(|(id, n, t, a, p): (String, _, _, _, _)| (id, (n, t, a, p)))
    .collect();
    let tags: BTreeSet<&str> = project.releases.iter().filter_map(|r| r["tag_name"].as_str()).collect();
    assert_eq!(stored.keys().map(String::as_str).collect::<BTreeSet<_>>(), tags);
    for r in &project.releases {
        let row = &stored[r["tag_name"].as_str().unwrap()];
        assert_eq!(row.0.as_deref(), r["name"].as_str());
        assert_eq!(row.2.as_deref(), r["author"]["username"].as_str());
        assert_eq!(row.3.as_deref(), r["released_at"].as_str().map(|t| &t[..19]));
    }
}

async fn check_requests(replay: &GitlabReplay, project: &GitlabProject) {
    let requests = replay.requests().await;
    // Every request carried gitlab.com's token; the other host's never left the agent.
    assert!(
        requests.iter().all(|(_, t)| t.as_deref() == Some("gl-tok")),
        "{requests:?}"
    );
    let paths: Vec<&str> = requests.iter().map(|(p, _)| p.as_str()).collect();
    // The 429 on /members/all was waited out and retried.
    assert_eq!(
        paths.iter().filter(|p| p.contains("/members/all")).count(),
        1 + 2,
        "{paths:?}"
    );
    // Keyset was refused (405) once, then issues were paged by offset (X-Next-Page).
    let issue_lists: Vec<&&str> = paths.iter().filter(|p| p.contains("/issues?")).collect();
    assert!(issue_lists[0].contains("pagination=keyset"), "{issue_lists:?}");
    assert!(issue_lists[1..].iter().all(|p| !p.contains("pagination=keyset")));
    assert_eq!(issue_lists.len() - 1, project.issues.len().div_ceil(5));
    // Merge requests were paged by Link alone.
    let mr_lists = paths.iter().filter(|p| p.contains("/merge_requests?")).count();
    assert_eq!(mr_lists, project.merge_requests.len().div_ceil(5));
    // No merge request was ever fetched on its own (the Go system fetched each six times):
    // each asked for six lists, once each (pages aside): approvals, commits, discussions and
    // the three resource event lists; and its reviewers' states when it has reviewers.
    for m in &project.merge_requests {
        let iid = m["iid"].as_i64().unwrap();
        let own = format!("/api/v4/projects/{}/merge_requests/{iid}", project.id);
        let endpoints: BTreeSet<&str> = paths
            .iter()
            .map(|p| p.split('?').next().unwrap())
            .filter(|p| *p == own || p.starts_with(&format!("{own}/")))
            .collect();
        assert!(!endpoints.contains(own.as_str()), "MR {iid} was fetched on its own");
        let with_reviewers = m["reviewers"].as_array().is_some_and(|r| !r.is_empty());
        assert_eq!(
            endpoints.len(),
            6 + usize::from(with_reviewers),
            "MR {iid}: {endpoints:?}"
        );
    }
    assert!(paths.iter().all(|p| p.contains("/api/v4/projects/")), "{paths:?}");
    assert!(paths[0].contains("license=true") && paths[0].contains("statistics=true"));
}

/// A second run asks only for what changed after the last run's start (less the queue's
/// overlap), to the second: the Go system passed a date to `after`, which GitLab reads as
/// "after the end of that day", and lost the watermark day's changes.
#[tokio::test]
async fn an_incremental_run_asks_for_changes_since_the_last_run_and_catches_them() {
    let db = TestDb::with_extension("gitlab_incremental").await;
    let project = devlake_project();
    let replay = GitlabReplay::start(project.clone(), ReplayOptions::default()).await;
    let config = config_file("incremental");
    collect(&db, &replay, &config).await;
    let first = replay.requests().await.len();

    // Nothing changed: the re-collection costs the fixed lists only.
    collect(&db, &replay, &config).await;
    let all = replay.requests().await;
    let second: Vec<&String> = all[first..].iter().map(|(p, _)| p).collect();
    assert_eq!(second.len(), 7, "{second:?}");
    let lists: Vec<&&String> = second.iter().filter(|p| p.contains("updated_after=")).collect();
    assert_eq!(
        lists.len(),
        3,
        "issues (keyset probe, offset) and merge requests: {second:?}"
    );
    for p in &lists {
        let value = p.split("updated_after=").nth(1).unwrap().split('&').next().unwrap();
        assert!(
            value.contains("T") || value.contains("%3A"),
            "a timestamp, not a date: {value}"
        );
    }

    // A merge request changed just now (on the watermark day) is collected by the next run.
    let now = gitlab_now();
    replay.update(|p| {
        let m = &mut p.merge_requests[0];
        m["title"] = Value::String("changed on the watermark day".into());
        m["updated_at"] = Value::String(now.clone());
    });
    collect(&db, &replay, &config).await;
    let pool = db.pool(1).await;
    let title: String = sqlx::query_scalar("SELECT pr_title FROM aveloxis_data.pull_requests WHERE pr_number = $1")
        .bind(project.merge_requests[0]["iid"].as_i64().unwrap() as i32)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(title, "changed on the watermark day");
}

/// The current time as GitLab writes it.
fn gitlab_now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// GitLab rows read like GitHub's through the Augur-named views and the analyst API.
#[tokio::test]
async fn gitlab_data_reads_with_github_spellings_on_the_read_side() {
    let db = TestDb::with_extension("gitlab_read_side").await;
    let replay = GitlabReplay::start(devlake_project(), ReplayOptions::default()).await;
    let config = config_file("read-side");
    collect(&db, &replay, &config).await;
    let pool = db.pool(1).await;
    let states: BTreeSet<String> =
        sqlx::query_scalar("SELECT DISTINCT pr_src_state FROM aveloxis_augur_data.pull_requests")
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    assert!(
        !states.is_empty() && states.is_subset(&["open".to_string(), "closed".to_string()].into()),
        "{states:?}"
    );
    let issue_states: BTreeSet<String> =
        sqlx::query_scalar("SELECT DISTINCT issue_state FROM aveloxis_augur_data.issues")
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    assert!(
        !issue_states.contains("opened") && !issue_states.is_empty(),
        "{issue_states:?}"
    );
    let review_states: BTreeSet<String> =
        sqlx::query_scalar("SELECT DISTINCT pr_review_state FROM aveloxis_augur_data.pull_request_reviews")
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    assert_eq!(review_states, ["APPROVED".to_string()].into());
    // The materialized views refresh with GitLab rows in them, and 8Knot's contributor
    // actions count GitLab's merge requests and comments.
    sqlx::query("CALL aveloxis.refresh_views(false)")
        .execute(&pool)
        .await
        .unwrap();
    let actions: BTreeSet<String> =
        sqlx::query_scalar("SELECT DISTINCT action::text FROM aveloxis_augur_data.explorer_contributor_actions")
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    for wanted in ["pull_request_open", "issue_opened"] {
        assert!(actions.iter().any(|a| a == wanted), "{wanted} missing from {actions:?}");
    }
    let (prs, issues): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM aveloxis_augur_data.explorer_pr_response_times),
                (SELECT count(*) FROM aveloxis_augur_data.issue_reporter_created_at)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(prs > 0 && issues > 0, "{prs} {issues}");
}

/// Accounts of a self-managed GitLab are not gitlab.com's: user 42 there and user 42 on
/// gitlab.com are two contributors, and that host's noreply addresses resolve to its own.
#[tokio::test]
async fn each_gitlab_host_has_its_own_identities() {
    let db = TestDb::with_extension("gitlab_identity_hosts").await;
    db.execute("SELECT aveloxis.add_forge_host('gitlab.example.org', 2::smallint)")
        .await;
    let pool = db.pool(1).await;
    let platform: i16 = sqlx::query_scalar(
        "SELECT platform_id FROM aveloxis_data.platforms WHERE platform_host = 'gitlab.example.org'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(platform >= 16, "{platform}");
    let mut repos = Vec::new();
    for url in ["https://gitlab.com/group/a", "https://gitlab.example.org/group/a"] {
        let repo: i64 = sqlx::query_scalar("SELECT aveloxis.add_repo($1)")
            .bind(url)
            .fetch_one(&pool)
            .await
            .unwrap();
        let member = r#"{"id": 42, "username": "same-id", "name": "Who", "state": "active", "web_url": "x"}"#;
        db.stage(repo, "contributor", &[member.to_string()]).await;
        db.drain(repo).await;
        repos.push(repo);
    }
    let ids: Vec<(i16, String)> = sqlx::query_as(
        "SELECT platform_id, cntrb_id::text FROM aveloxis_data.contributor_identities
         WHERE platform_user_id = 42 ORDER BY platform_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_eq!(ids[0], (2, uuid_of(&pool, 2, 42).await), "gitlab.com keeps Augur's id");
    assert_eq!(ids[1], (platform, uuid_of(&pool, platform, 42).await));
    assert_ne!(ids[0].1, ids[1].1);
    // Noreply addresses name the account of their own host.
    for (host, expected) in [("gitlab.com", &ids[0].1), ("gitlab.example.org", &ids[1].1)] {
        let found: (Option<String>, String) =
            sqlx::query_as("SELECT cntrb_id::text, source FROM aveloxis.resolve_email($1)")
                .bind(format!("42-same-id@users.noreply.{host}"))
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!((found.0.as_ref(), found.1.as_str()), (Some(expected), "noreply_id"));
    }
    // A host whose accounts are stored cannot change forge kind.
    let refused = sqlx::query("SELECT aveloxis.add_forge_host('gitlab.example.org', 1::smallint)")
        .execute(&pool)
        .await
        .unwrap_err();
    let code = refused
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("55006"), "{refused}");
    // An undeclared host's "noreply" address is nobody's account.
    let none: Option<String> =
        sqlx::query_scalar("SELECT source FROM aveloxis.resolve_email('42-x@users.noreply.elsewhere.org')")
            .fetch_optional(&pool)
            .await
            .unwrap();
    assert_eq!(none, None);
    // GitLab's ghost (deleted users' placeholder) is one contributor however many rows.
    let ghost = r#"{"id": 9999, "username": "ghost", "name": "Ghost User", "state": "active"}"#;
    db.stage(repos[0], "contributor", &[ghost.to_string(), ghost.to_string()])
        .await;
    db.drain(repos[0]).await;
    let ghosts: i64 = sqlx::query_scalar("SELECT count(*) FROM aveloxis_data.contributors WHERE gl_username = 'ghost'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(ghosts, 1);
}

/// A project on a host this agent has no token for fails as `auth`, naming the host; the
/// tokens it has are never sent there.
#[tokio::test]
async fn a_host_without_tokens_is_refused_by_name() {
    let db = TestDb::with_extension("gitlab_no_token").await;
    db.execute("SELECT aveloxis.add_forge_host('gitlab.example.net', 2::smallint)")
        .await;
    let out = db
        .agent_async(
            &[
                "collect",
                "https://gitlab.example.net/group/project",
                "--phases",
                "collect",
            ],
            &[("GITLAB_TOKENS", "gl-tok")],
        )
        .await;
    let (stdout, stderr) = output_text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("gitlab.example.net"), "{stdout}\n{stderr}");
    assert!(!stdout.contains("gl-tok") && !stderr.contains("gl-tok"));
}

/// Commit authors with GitLab noreply addresses get their account: a self-managed
/// project's own host's addresses under that host's identity platform, gitlab.com's under
/// gitlab.com's, in the same history.
#[tokio::test]
async fn gitlab_noreply_commit_authors_resolve_to_their_own_hosts_accounts() {
    use aveloxis_agent::forge::github::GithubClient;
    use aveloxis_agent::phases::facade::authors::{self, ForgeRepo};

    let db = TestDb::with_extension("gitlab_noreply_authors").await;
    db.execute("SELECT aveloxis.add_forge_host('gitlab.example.org', 2::smallint)")
        .await;
    let pool = db.pool(2).await;
    let repo: i64 = sqlx::query_scalar("SELECT aveloxis.add_repo('https://gitlab.example.org/group/project')")
        .fetch_one(&pool)
        .await
        .unwrap();
    let platform: i16 = sqlx::query_scalar("SELECT aveloxis_ops.identity_platform_of($1)")
        .bind(repo)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(platform >= 16);
    let envelope = |hash: &str, email: &str| {
        serde_json::json!({
            "hash": hash, "parents": [],
            "author": {"name": "Dev", "email": email, "time": "2024-01-01T00:00:00+00:00"},
            "committer": {"name": "Dev", "email": email, "time": "2024-01-01T00:00:00+00:00"},
            "message": "work\n", "files": [{"path": "a", "added": 1, "removed": 0}]
        })
        .to_string()
    };
    db.stage(
        repo,
        "commit",
        &[
            envelope(&"a".repeat(40), "7-jdoe@users.noreply.gitlab.example.org"),
            envelope(&"b".repeat(40), "9-kim@users.noreply.gitlab.com"),
        ],
    )
    .await;
    db.drain(repo).await;
    let lease: sqlx::types::Uuid =
        sqlx::query_scalar("SELECT lease_token FROM aveloxis.claim_repo('test', $1, 'facade', '1 hour')")
            .bind(repo)
            .fetch_one(&pool)
            .await
            .unwrap();
    let r = authors::resolve(&pool, lease, None::<ForgeRepo<'_, GithubClient>>, false)
        .await
        .unwrap();
    assert_eq!(r.by_step, BTreeMap::from([("noreply", 2)]), "{r:?}");
    let authors: BTreeMap<String, String> = sqlx::query_as(
        "SELECT cmt_author_email, cmt_ght_author_id::text FROM aveloxis_data.commits WHERE repo_id = $1",
    )
    .bind(repo)
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert_eq!(
        authors["7-jdoe@users.noreply.gitlab.example.org"],
        uuid_of(&pool, platform, 7).await,
        "the project's own host"
    );
    assert_eq!(
        authors["9-kim@users.noreply.gitlab.com"],
        uuid_of(&pool, 2, 9).await,
        "gitlab.com's"
    );
    let usernames: BTreeSet<(i16, String)> = sqlx::query_as(
        "SELECT i.platform_id, c.gl_username FROM aveloxis_data.contributor_identities i
         JOIN aveloxis_data.contributors c USING (cntrb_id) WHERE i.platform_user_id IN (7, 9)",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert_eq!(
        usernames,
        [(2, "kim".to_string()), (platform, "jdoe".to_string())].into()
    );
}

/// Reviewer states map onto GitHub's review states, an approval listed by both
/// `/approvals` and `/reviewers` is one review, and the review ids are stable across drains.
#[tokio::test]
async fn reviewer_states_become_github_review_states() {
    let db = TestDb::with_extension("gitlab_review_states").await;
    let pool = db.pool(1).await;
    let repo: i64 = sqlx::query_scalar("SELECT aveloxis.add_repo('https://gitlab.com/group/reviews')")
        .fetch_one(&pool)
        .await
        .unwrap();
    let user = |id: i64, name: &str| serde_json::json!({"id": id, "username": name, "state": "active"});
    let envelope = serde_json::json!({
        "merge_request": {"id": 500, "iid": 1, "title": "t", "state": "opened", "author": user(1, "author"),
                          "updated_at": "2024-01-02T00:00:00Z", "reviewers": [user(2, "ann"), user(3, "ben"), user(4, "cy")]},
        "approvals": {"approved_by": [{"user": user(4, "cy"), "approved_at": "2024-01-02T00:00:00Z"}]},
        "reviewers": [
            {"user": user(2, "ann"), "state": "requested_changes", "created_at": "2024-01-01T00:00:00Z"},
            {"user": user(3, "ben"), "state": "reviewed", "created_at": "2024-01-01T00:00:00Z"},
            {"user": user(4, "cy"), "state": "approved", "created_at": "2024-01-01T00:00:00Z"},
            {"user": user(5, "dee"), "state": "unreviewed", "created_at": "2024-01-01T00:00:00Z"}
        ]
    });
    db.stage(repo, "pull_request", &[envelope.to_string()]).await;
    db.drain(repo).await;
    let read = || async {
        sqlx::query_as::<_, (String, String, i64)>(
            "SELECT c.gl_username, v.review_state, v.platform_review_id FROM aveloxis_data.pull_request_reviews v
             JOIN aveloxis_data.contributors c USING (cntrb_id) ORDER BY 1",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
    };
    let first = read().await;
    let states: Vec<(&str, &str)> = first.iter().map(|(u, s, _)| (u.as_str(), s.as_str())).collect();
    assert_eq!(
        states,
        [("ann", "CHANGES_REQUESTED"), ("ben", "COMMENTED"), ("cy", "APPROVED")]
    );
    assert!(first.iter().all(|r| r.2 > 0));
    // The MR's reviewers are its requested reviewers, as the /reviewers list names them.
    let requested: i64 = sqlx::query_scalar("SELECT count(*) FROM aveloxis_data.pull_request_reviewers")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(requested, 4);
    // The same envelope again: the same ids, nothing added.
    sqlx::query("UPDATE aveloxis_ops.staging SET drained_at = NULL")
        .execute(&pool)
        .await
        .unwrap();
    db.drain(repo).await;
    assert_eq!(read().await, first);
}

/// Where the instance pages project issues by keyset (GitLab 18.3+), issues are walked by
/// keyset through `Link` alone, with no offset request at all.
#[tokio::test]
async fn keyset_pagination_is_used_where_the_instance_offers_it() {
    let db = TestDb::with_extension("gitlab_keyset").await;
    let project = devlake_project();
    let options = ReplayOptions {
        max_per_page: 4,
        keyset: true,
        ..ReplayOptions::default()
    };
    let replay = GitlabReplay::start(project.clone(), options).await;
    let config = config_file("keyset");
    collect(&db, &replay, &config).await;
    let paths: Vec<String> = replay.requests().await.into_iter().map(|(p, _)| p).collect();
    let issue_lists: Vec<&String> = paths.iter().filter(|p| p.contains("/issues?")).collect();
    assert_eq!(issue_lists.len(), project.issues.len().div_ceil(4), "{issue_lists:?}");
    assert!(
        issue_lists.iter().all(|p| p.contains("pagination=keyset")),
        "{issue_lists:?}"
    );
    let pool = db.pool(1).await;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM aveloxis_data.issues")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, project.issues.len() as i64);
}

/// A 429 that says "0 left" with `Retry-After` but no `RateLimit-Reset` (application limits,
/// proxies in front of self-managed instances): the token's shared budget is free again when
/// Retry-After says, not after the default one-minute window, which a client allowed to wait
/// 5 seconds would refuse as transient.
#[tokio::test]
async fn retry_after_without_a_reset_frees_the_token_when_it_says() {
    use aveloxis_agent::forge::gitlab::{GitlabClient, GitlabConfig, TokenStyle};
    use aveloxis_agent::forge::tokens::TokenPool;
    use aveloxis_agent::forge::{Forge, Request};
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let db = TestDb::with_extension("gitlab_retry_after").await;
    let pool = db.pool(2).await;
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v4/projects/1/members/all"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "1")
                .insert_header("RateLimit-Remaining", "0")
                .set_body_string("Retry later"),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_raw("[]", "application/json"))
        .mount(&server)
        .await;
    let mut config = GitlabConfig::new(&format!("{}/api/v4/", server.uri())).unwrap();
    config.max_wait = std::time::Duration::from_secs(5);
    let gl = GitlabClient::new(
        config,
        TokenPool::new(["tok".to_string()], 2, pool.clone()),
        TokenStyle::PrivateToken,
    )
    .unwrap();
    for endpoint in ["projects/1/members/all", "projects/1/issues"] {
        gl.fetch(&Request::new(endpoint))
            .await
            .unwrap_or_else(|e| panic!("{endpoint}: {e}"));
    }
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
}
