//! `aveloxis-agent collect` end to end: the real agent binary against the replay server
//! serving the recorded traffic of PyGithub/PyGithub as one repository, into a real
//! database through staging, the drain and the queue.

use std::collections::{BTreeMap, BTreeSet};

use harness::replay::{github_fixtures, next_page, page_key, Exchange, ReplayServer};
use harness::sqlx;
use harness::{output_text, TestDb};
use serde_json::Value;

const REPO: &str = "https://github.com/PyGithub/PyGithub";

/// The items the replay serves for a list endpoint, following its replayed `Link`s.
fn served_items(pages: &BTreeMap<String, Exchange>, path: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut key = page_key(path);
    while let Some(e) = pages.get(&key) {
        items.extend(e.response.as_array().cloned().unwrap_or_default());
        let Some(next) = next_page(e) else { break };
        key = page_key(&next);
    }
    items
}

#[tokio::test]
async fn collect_fills_the_database_and_a_second_run_is_conditional_only() {
    let db = TestDb::with_extension("collect_github").await;
    let replay = ReplayServer::start().await;
    let fixtures = github_fixtures();
    let pages = replay
        .load_repository(&fixtures.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    let api = replay.api_url();
    let args = ["collect", REPO, "--phases", "collect", "--github-api-url", api.as_str()];
    let out = db.agent_async(&args, &[("GITHUB_TOKENS", "tok-1,tok-2")]).await;
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "collect failed:\n{stdout}\n{stderr}");
    assert!(
        !stdout.contains("tok-1") && !stderr.contains("tok-1"),
        "a token was printed"
    );

    let pool = db.pool(2).await;
    // Issues: every non-PR issue of the replayed pages, with its title.
    let issues = served_items(&pages, "/repos/PyGithub/PyGithub/issues");
    assert!(!issues.is_empty(), "the replay serves issues");
    let expected: BTreeSet<(i64, String)> = issues
        .iter()
        // Old recordings carry "pull_request" with null URLs on plain issues.
        .filter(|i| !(i["pull_request"]["url"].is_string() || i["pull_request"]["html_url"].is_string()))
        .map(|i| (i["number"].as_i64().unwrap(), i["title"].as_str().unwrap().to_string()))
        .collect();
    let stored: BTreeSet<(i64, String)> =
        sqlx::query_as("SELECT issue_number::bigint, issue_title FROM aveloxis_data.issues")
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    assert_eq!(stored, expected);
    // Labels and assignees as each recorded issue lists them; reporters with deterministic ids.
    let plain: Vec<&Value> = issues
        .iter()
        .filter(|i| !(i["pull_request"]["url"].is_string() || i["pull_request"]["html_url"].is_string()))
        .collect();
    let expected_labels: BTreeSet<(i64, String)> = plain
        .iter()
        .flat_map(|i| {
            let n = i["number"].as_i64().unwrap();
            i["labels"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |l| (n, l["name"].as_str().unwrap().to_string()))
        })
        .collect();
    let stored_labels: BTreeSet<(i64, String)> = sqlx::query_as(
        "SELECT i.issue_number::bigint, l.label_text FROM aveloxis_data.issue_labels l JOIN aveloxis_data.issues i USING (issue_id)",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert_eq!(stored_labels, expected_labels);
    let expected_assignees: BTreeSet<(i64, i64)> = plain
        .iter()
        .flat_map(|i| {
            let n = i["number"].as_i64().unwrap();
            i["assignees"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(move |a| a["id"].as_i64().map(|id| (n, id)))
        })
        .chain(
            plain
                .iter()
                .filter_map(|i| Some((i["number"].as_i64()?, i["assignee"]["id"].as_i64()?))),
        )
        .collect();
    let stored_assignees: BTreeSet<(i64, i64)> = sqlx::query_as(
        "SELECT i.issue_number::bigint, a.platform_assignee_id FROM aveloxis_data.issue_assignees a
         JOIN aveloxis_data.issues i USING (issue_id)",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert_eq!(stored_assignees, expected_assignees);
    let reporters_ok: bool = sqlx::query_scalar(
        "SELECT bool_and(c.cntrb_id = aveloxis.platform_uuid(1::smallint, c.gh_user_id))
         FROM aveloxis_data.issues i JOIN aveloxis_data.contributors c ON c.cntrb_id = i.reporter_id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        reporters_ok,
        "every reporter is the contributor with its deterministic id"
    );
    // Pull requests with their titles; each one's reviews as the replay served them.
    let pulls = served_items(&pages, "/repos/PyGithub/PyGithub/pulls");
    let expected_pulls: BTreeSet<(i64, String)> = pulls
        .iter()
        .map(|p| (p["number"].as_i64().unwrap(), p["title"].as_str().unwrap().to_string()))
        .collect();
    let stored_pulls: BTreeSet<(i64, String)> =
        sqlx::query_as("SELECT pr_number::bigint, pr_title FROM aveloxis_data.pull_requests")
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    assert_eq!(stored_pulls, expected_pulls);
    let expected_reviews: BTreeSet<(i64, i64)> = pulls
        .iter()
        .flat_map(|p| {
            let n = p["number"].as_i64().unwrap();
            served_items(&pages, &format!("/repos/PyGithub/PyGithub/pulls/{n}/reviews"))
                .into_iter()
                .filter_map(move |r| Some((n, r["id"].as_i64()?)))
        })
        .collect();
    let stored_reviews: BTreeSet<(i64, i64)> = sqlx::query_as(
        "SELECT p.pr_number::bigint, r.platform_review_id FROM aveloxis_data.pull_request_reviews r
         JOIN aveloxis_data.pull_requests p USING (pull_request_id)",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert_eq!(stored_reviews, expected_reviews);
    // Comments and events of the stored issues, by their forge ids.
    let stored_numbers: BTreeSet<i64> = expected.iter().map(|(n, _)| *n).collect();
    let parent_of = |url: &str| url.rsplit('/').next().and_then(|n| n.parse::<i64>().ok());
    let expected_comments: BTreeSet<i64> = served_items(&pages, "/repos/PyGithub/PyGithub/issues/comments")
        .iter()
        .filter(|c| {
            c["issue_url"]
                .as_str()
                .and_then(parent_of)
                .is_some_and(|n| stored_numbers.contains(&n))
        })
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    let stored_comments: BTreeSet<i64> = sqlx::query_scalar(
        "SELECT m.platform_msg_id FROM aveloxis_data.messages m JOIN aveloxis_data.issue_message_ref r USING (msg_id)",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert_eq!(stored_comments, expected_comments);
    let expected_events: BTreeSet<i64> = served_items(&pages, "/repos/PyGithub/PyGithub/issues/events")
        .iter()
        .filter(|e| {
            e["issue"]["number"]
                .as_i64()
                .is_some_and(|n| stored_numbers.contains(&n))
        })
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    let stored_events: BTreeSet<i64> = sqlx::query_scalar("SELECT platform_event_id FROM aveloxis_data.issue_events")
        .fetch_all(&pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(stored_events, expected_events);
    // The recordings hold pull requests and events of the served issues, but no reviews of
    // the served pull requests and no comments on the served issues (those comments wait,
    // pending, for issues the recordings do not hold): the two equalities above then hold
    // with nothing on either side. drain.rs checks those payloads field by field.
    assert!(
        !expected_pulls.is_empty() && !expected_events.is_empty(),
        "the replay serves pull requests and events: {} and {}",
        expected_pulls.len(),
        expected_events.len()
    );
    // Releases and the repository itself.
    let releases = served_items(&pages, "/repos/PyGithub/PyGithub/releases");
    let stored_releases: i64 = sqlx::query_scalar("SELECT count(*) FROM aveloxis_data.releases")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored_releases as usize, releases.len());
    let repo_src_id: Option<i64> = sqlx::query_scalar("SELECT repo_src_id FROM aveloxis_data.repos")
        .fetch_one(&pool)
        .await
        .unwrap();
    let recorded_repo = &pages["/repos/pygithub/pygithub#1"].response;
    assert_eq!(repo_src_id, recorded_repo["id"].as_i64());
    // The job completed, with its counts and ETags.
    let (outcome, state): (String, Value) = sqlx::query_as(
        "SELECT r.outcome, j.agent_state FROM aveloxis_ops.job_runs r JOIN aveloxis_ops.jobs j USING (job_id)
         WHERE j.phase = 'collect'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(outcome, "complete");
    assert!(state["etags"]["issue"].is_string(), "{state}");
    // What the forge reported is recorded with the run, and the ledger sets it against
    // what the drain stored: open issues and pull requests against the repository
    // object's count, every list's items on this full collection.
    let check: Value = sqlx::query_scalar(
        "SELECT r.result -> 'completeness' FROM aveloxis_ops.job_runs r
         JOIN aveloxis_ops.jobs j USING (job_id) WHERE j.phase = 'collect'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        check["open_issues_and_pull_requests"]["reported"],
        recorded_repo["open_issues_count"]
    );
    let highest = issues.iter().filter_map(|i| i["number"].as_u64()).max().unwrap();
    assert_eq!(
        check["issues_and_pull_requests"]["reported"],
        serde_json::json!(highest)
    );
    assert_eq!(check["issues"]["reported"], serde_json::json!(plain.len()));
    let ledger: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT entity, reported, gathered FROM aveloxis.completeness(
             (SELECT repo_id FROM aveloxis_data.repos WHERE repo_git = $1))",
    )
    .bind(REPO)
    .fetch_all(&pool)
    .await
    .unwrap();
    let issues_row = ledger
        .iter()
        .find(|(e, ..)| e == "issues")
        .expect("an issues ledger row");
    assert_eq!((issues_row.1, issues_row.2), (plain.len() as i64, stored.len() as i64));
    let open_row = ledger
        .iter()
        .find(|(e, ..)| e == "open_issues_and_pull_requests")
        .expect("an open-count ledger row");
    assert_eq!(open_row.1, recorded_repo["open_issues_count"].as_i64().unwrap());
    // Everything staged was drained, except children whose parent the replay never served
    // (it replays only the recorded pages): those wait, pending, and nothing was rejected.
    let (waiting, unexplained, rejected): (i64, i64, i64) = sqlx::query_as(
        r"WITH left_over AS (
              SELECT s.entity, coalesce((regexp_match(s.payload::jsonb ->> 'issue_url', '/(\d+)$'))[1],
                                        s.payload::jsonb -> 'issue' ->> 'number',
                                        (regexp_match(s.payload::jsonb ->> 'pull_request_url', '/(\d+)$'))[1])::int AS parent
              FROM aveloxis_ops.staging s WHERE s.drained_at IS NULL)
          SELECT count(*),
                 count(*) FILTER (WHERE entity NOT IN ('issue_comment', 'issue_event', 'review_comment')
                                     OR parent IS NULL
                                     OR parent IN (SELECT issue_number FROM aveloxis_data.issues
                                                   UNION SELECT pr_number FROM aveloxis_data.pull_requests)),
                 (SELECT count(*) FROM aveloxis_ops.staging_rejects)
          FROM left_over",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let reject_errors: Vec<(String, String)> = sqlx::query_as("SELECT entity, error FROM aveloxis_ops.staging_rejects")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        (unexplained, rejected),
        (0, 0),
        "{waiting} rows wait for parents; rejects: {reject_errors:?}"
    );
    let stored_comments: i64 = sqlx::query_scalar("SELECT count(*) FROM aveloxis_data.messages")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(stored_comments > 0, "comments on served issues are stored");

    // Nothing changed: the second collection asks with ETags, gets 304s, stages nothing.
    let staged_before: i64 = sqlx::query_scalar("SELECT count(*) FROM aveloxis_ops.staging")
        .fetch_one(&pool)
        .await
        .unwrap();
    let first_run_requests = replay.requests().await.len();
    let out = db.agent_async(&args, &[("GITHUB_TOKENS", "tok-1,tok-2")]).await;
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "second collect failed:\n{stdout}\n{stderr}");
    let staged_after: i64 = sqlx::query_scalar("SELECT count(*) FROM aveloxis_ops.staging")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(staged_after, staged_before, "a no-change collection stages nothing");
    let second: Vec<_> = replay.requests().await.into_iter().skip(first_run_requests).collect();
    assert!(!second.is_empty());
    assert!(
        second.iter().all(|r| r.1.is_some()),
        "every request of the second run is conditional: {second:?}"
    );
    println!(
        "first run: {first_run_requests} requests; second run: {} conditional requests",
        second.len()
    );
}

#[tokio::test]
async fn a_renamed_repository_is_followed_and_recorded_once() {
    let db = TestDb::with_extension("collect_rename").await;
    let replay = ReplayServer::start().await;
    let fixtures = github_fixtures();
    replay
        .load_repository(&fixtures.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    let api = replay.api_url();
    let moved = format!("{api}repos/PyGithub/PyGithub");
    replay
        .fail_next(
            "/repos/old-owner/old-name",
            &[301],
            &[("Location", moved.as_str())],
            "Moved Permanently",
        )
        .await;
    let old_url = "https://github.com/old-owner/old-name";
    let out = db
        .agent_async(
            &[
                "collect",
                old_url,
                "--phases",
                "collect",
                "--github-api-url",
                api.as_str(),
            ],
            &[("GITHUB_TOKENS", "tok-1")],
        )
        .await;
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "collect failed:\n{stdout}\n{stderr}");
    let pool = db.pool(1).await;
    let repos: Vec<(i64, String)> = sqlx::query_as("SELECT repo_id, lower(repo_git) FROM aveloxis_data.repos")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        repos,
        [(1, REPO.to_ascii_lowercase())],
        "one repository, under its new name"
    );
    let old: Option<i64> = sqlx::query_scalar("SELECT aveloxis.resolve_repo($1)")
        .bind(old_url)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(old, Some(1), "the old URL still finds it");
    let issues: i64 = sqlx::query_scalar("SELECT count(*) FROM aveloxis_data.issues")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(issues > 0, "the rest was collected under the new name");
}

#[tokio::test]
async fn adding_an_organization_or_a_user_adds_their_repositories() {
    let db = TestDb::with_extension("add_owner").await;
    let replay = ReplayServer::start().await;
    let api = replay.api_url();
    let repos = |names: &[&str]| {
        wiremock::ResponseTemplate::new(200).set_body_json(
            names
                .iter()
                .map(|n| serde_json::json!({"full_name": n, "html_url": format!("https://github.com/{n}")}))
                .collect::<Vec<_>>(),
        )
    };
    replay
        .respond(
            "/orgs/acme/repos?per_page=100&type=all",
            repos(&["acme/one", "acme/two"]),
            1,
        )
        .await;
    // bob is a user: the organization lookup is a 404.
    replay
        .respond("/users/bob/repos?per_page=100&type=all", repos(&["bob/dotfiles"]), 1)
        .await;
    let out = db
        .agent_async(
            &[
                "add",
                "https://github.com/acme",
                "https://github.com/bob",
                "https://github.com/chaoss/augur",
                "--github-api-url",
                api.as_str(),
            ],
            &[("GITHUB_TOKENS", "tok-1")],
        )
        .await;
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "add failed:\n{stdout}\n{stderr}");
    let stored: Vec<String> = sqlx::query_scalar("SELECT lower(repo_git) FROM aveloxis_data.repos ORDER BY 1")
        .fetch_all(&db.pool(1).await)
        .await
        .unwrap();
    assert_eq!(
        stored,
        [
            "https://github.com/acme/one",
            "https://github.com/acme/two",
            "https://github.com/bob/dotfiles",
            "https://github.com/chaoss/augur"
        ]
    );

    // An owner that is neither is an error naming it; nothing else is lost.
    let out = db
        .agent_async(
            &[
                "add",
                "https://github.com/nobody",
                "https://github.com/chaoss/grimoirelab",
                "--github-api-url",
                api.as_str(),
            ],
            &[("GITHUB_TOKENS", "tok-1")],
        )
        .await;
    let (_, stderr) = output_text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("https://github.com/nobody"), "{stderr}");
    let added: i64 = sqlx::query_scalar("SELECT count(*) FROM aveloxis_data.repos WHERE repo_name = 'grimoirelab'")
        .fetch_one(&db.pool(1).await)
        .await
        .unwrap();
    assert_eq!(added, 1);
}

#[tokio::test]
async fn a_repository_that_is_gone_is_sidelined_with_its_reason() {
    let db = TestDb::with_extension("collect_gone").await;
    let replay = ReplayServer::start().await;
    let api = replay.api_url();
    let url = "https://github.com/deleted/repository";
    let out = db
        .agent_async(
            &["collect", url, "--phases", "collect", "--github-api-url", api.as_str()],
            &[("GITHUB_TOKENS", "tok-1")],
        )
        .await;
    let (stdout, stderr) = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("gone"), "{stderr}");
    assert_eq!(
        replay.requests().await.len(),
        1,
        "nothing else is asked of a repository that is gone"
    );
    let reasons: Vec<(String, String)> = sqlx::query_as("SELECT status, reason FROM aveloxis.why_not_collected(1)")
        .fetch_all(&db.pool(1).await)
        .await
        .unwrap();
    assert!(
        reasons
            .iter()
            .all(|(status, reason)| status == "sidelined" && reason.contains("gone")),
        "{reasons:?}"
    );
}
