//! Request benchmark of a GitLab collection (docs/benchmarks.md): `scripts/bench.sh gitlab`.
//!
//! Serves the recorded gitlab.com project (harness::gitlab_replay, DevLake's recording of
//! `gitlab-data/snowflake_spend`) with its 18 merge requests served `copies` times over
//! (54 by default: the same payloads under new ids and iids, children included), collects
//! it with the agent's own code, and counts the requests by kind: fixed (project, lists,
//! releases), per issue, per merge request. Against it, the Go system's GitLab plan for
//! the same data (reference gitlab-parity.md §1.11, aveloxis-go-spec.md §8): the same list
//! pages, `/projects/:id` twice, about 13 calls per merge request and 2 per issue. Then a
//! second, no-change collection: the quota it costs (GitLab answers no 304s).

use std::collections::BTreeMap;

use aveloxis_agent::forge::gitlab::{GitlabClient, GitlabConfig, TokenStyle};
use aveloxis_agent::forge::tokens::TokenPool;
use aveloxis_agent::phases::api::finish;
use aveloxis_agent::phases::gitlab::{collect_gitlab, KeysetSupport};
use aveloxis_agent::queue::claim_repo;
use harness::gitlab_replay::{devlake_project, GitlabProject, GitlabReplay, ReplayOptions};
use harness::TestDb;
use serde_json::{json, Value};

/// The project with its merge requests served `copies` times (new ids and iids).
fn many_merge_requests(mut project: GitlabProject, copies: i64) -> GitlabProject {
    let originals = project.merge_requests.clone();
    let children = project.children.clone();
    for copy in 1..copies {
        for mr in &originals {
            let iid = mr["iid"].as_i64().unwrap();
            let new_iid = iid + 1000 * copy;
            let mut m = mr.clone();
            m["iid"] = json!(new_iid);
            m["id"] = json!(mr["id"].as_i64().unwrap() + 100_000_000 * copy);
            project.merge_requests.push(m);
            for (key, value) in &children {
                if let Some(rest) = key.strip_prefix(&format!("merge_requests/{iid}/")) {
                    let value = renumber_notes(value, copy);
                    project
                        .children
                        .insert(format!("merge_requests/{new_iid}/{rest}"), value);
                }
            }
        }
    }
    project
}

/// Notes and events get new ids in a copy (their ids are keys).
fn renumber_notes(value: &Value, copy: i64) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.iter().map(|i| renumber_notes(i, copy)).collect()),
        Value::Object(map) => {
            let mut out = map.clone();
            if let Some(id) = map.get("id").and_then(Value::as_i64) {
                out.insert("id".into(), json!(id + 1_000_000_000 * copy));
            }
            if let Some(notes) = map.get("notes") {
                out.insert("notes".into(), renumber_notes(notes, copy));
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

fn kind(path: &str) -> &'static str {
    let path = path.split('?').next().unwrap_or_default();
    if path.contains("/merge_requests/") {
        "per merge request"
    } else if path.contains("/issues/") {
        "per issue"
    } else {
        "fixed (project, lists, releases)"
    }
}

#[tokio::main]
async fn main() {
    let copies: i64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let project = many_merge_requests(devlake_project(), copies);
    let (issues, mrs) = (project.issues.len(), project.merge_requests.len());
    let replay = GitlabReplay::start(project.clone(), ReplayOptions::default()).await;
    let db = TestDb::with_extension("bench_gitlab").await;
    let pool = db.pool(4).await;
    let url = format!("https://gitlab.com/{}", project.path);
    let repo: i64 = sqlx::query_scalar("SELECT aveloxis.add_repo($1)")
        .bind(&url)
        .fetch_one(&pool)
        .await
        .unwrap();
    let client = GitlabClient::new(
        GitlabConfig::new(&replay.api_url()).unwrap(),
        TokenPool::new(["bench-token".to_string()], 2, pool.clone()),
        TokenStyle::PrivateToken,
    )
    .unwrap();
    let keyset = KeysetSupport::default();

    let job = claim_repo(&pool, "bench", repo, "collect", 600).await.unwrap();
    let first = finish(
        &pool,
        "bench",
        &job,
        collect_gitlab(&client, &keyset, &pool, &job, None).await,
    )
    .await
    .unwrap();
    let requests = replay.requests().await;
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for (path, _) in &requests {
        *by_kind.entry(kind(path)).or_default() += 1;
    }
    let stored: (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM aveloxis_data.pull_requests), (SELECT count(*) FROM aveloxis_data.issues),
                (SELECT count(*) FROM aveloxis_ops.staging_rejects)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (stored.0, stored.1, stored.2),
        (mrs as i64, issues as i64, 0),
        "the collection is complete"
    );

    // The Go plan for the same data: the same list pages (100 per page), /projects/:id
    // twice, issues_statistics, an X-Total count call, members and contributors, the
    // project event stream (two target types), then ~13 per MR and 2 per issue.
    let pages = |n: usize| n.div_ceil(100).max(1);
    let go_fixed = pages(issues) + pages(mrs) + 2 + 1 + 1 + 1 + 1 + 2 + pages(project.releases.len());
    let go = go_fixed + 13 * mrs + 2 * issues;
    let ours = requests.len();
    let per_mr = by_kind.get("per merge request").copied().unwrap_or(0) as f64 / mrs as f64;
    let per_issue = by_kind.get("per issue").copied().unwrap_or(0) as f64 / issues as f64;
    println!(
        "GitLab collection of {issues} issues and {mrs} merge requests ({} releases):",
        project.releases.len()
    );
    for (k, n) in &by_kind {
        println!("  {k:<34} {n:>5} requests");
    }
    println!(
        "  total                              {ours:>5} requests ({})",
        first.summary()
    );
    println!("  per merge request: {per_mr:.2} calls (Go plan: 13); per issue: {per_issue:.2} (Go plan: 2)");
    println!(
        "  Go plan for the same data: {go} requests; ours / Go = {:.2} ({:.1}x fewer)",
        ours as f64 / go as f64,
        go as f64 / ours as f64
    );

    // A second collection with nothing changed.
    let job = claim_repo(&pool, "bench", repo, "collect", 600).await.unwrap();
    let second = finish(
        &pool,
        "bench",
        &job,
        collect_gitlab(&client, &keyset, &pool, &job, None).await,
    )
    .await
    .unwrap();
    let again = replay.requests().await.len() - ours;
    println!(
        "no-change re-collection: {again} requests = {:.1}% of the first ({}); the Go plan's fixed calls alone: \
         {go_fixed} requests",
        100.0 * again as f64 / ours as f64,
        second.summary()
    );
}
