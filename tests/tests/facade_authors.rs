//! Commit-author resolution (R12) against a local GitHub API: every step of the chain,
//! in order, each stopping the chain when it finds the account, and the cooldown of
//! misses.

use std::collections::BTreeMap;

use aveloxis_agent::forge::github::{GithubClient, GithubConfig};
use aveloxis_agent::forge::tokens::TokenPool;
use aveloxis_agent::phases::facade::authors::{self, ForgeRepo, Step};
use harness::gitrepo::{Change, Commit, ScriptedRepo};
use harness::{fixture_records, output_text, sqlx, TestDb};
use serde_json::json;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn commit<'a>(mark: u32, author: &'a str, file: &'a str) -> Commit<'a> {
    Commit {
        branch: "main",
        mark,
        from: (mark > 1).then_some(mark - 1),
        merge: &[],
        author,
        time: "1700000000 +0000",
        message: "work\n",
        changes: vec![Change::Write(file, b"x\n")],
    }
}

/// The request paths the API received, with their query.
async fn requests(server: &MockServer) -> Vec<String> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| match r.url.query() {
            Some(q) => format!("{}?{q}", r.url.path()),
            None => r.url.path().to_string(),
        })
        .collect()
}

#[tokio::test]
async fn every_step_of_the_chain_in_order_and_misses_wait_out_their_cooldown() {
    let db = TestDb::with_extension("facade_authors").await;
    let pool = db.pool(4).await;
    let repo = ScriptedRepo::new("authors");
    repo.import(&[
        commit(1, "Dave <dave@example.com>", "d"),
        commit(2, "Erin <erin@example.com>", "e"),
        commit(3, "Frank <frank@example.com>", "f"),
        commit(4, "Gina <gina@example.com>", "g"),
        commit(5, "Kim <known@example.com>", "k"),
        commit(6, "Nora <7+nora@users.noreply.github.com>", "n"),
    ]);
    // A contributor the database already knows by email.
    sqlx::query(
        "INSERT INTO aveloxis_data.contributors (cntrb_id, cntrb_login, cntrb_email)
         VALUES ('00000000-0000-4000-8000-00000000000a', 'kim', 'known@example.com')",
    )
    .execute(&pool)
    .await
    .unwrap();

    // First the history, git-only: the free steps run, the rest is recorded as missed.
    let clones = db.scratch_dir("clones");
    let out = db.agent(&["collect", repo.path_str(), "--clone-dir", clones.to_str().unwrap()]);
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(r#"authors {"database": 1, "noreply": 1, "not_found": 4}"#),
        "{stdout}"
    );
    let repo_id: i64 = sqlx::query_scalar("SELECT aveloxis.resolve_repo($1)")
        .bind(repo.path_str())
        .fetch_one(&pool)
        .await
        .unwrap();
    // The resolution below runs under a facade lease of its own, as the agent's does.
    let lease: sqlx::types::Uuid =
        sqlx::query_scalar("SELECT lease_token FROM aveloxis.claim_repo('test', $1, 'facade', '1 year')")
            .bind(repo_id)
            .fetch_one(&pool)
            .await
            .unwrap();

    // The GitHub API: dave by the commit (the recorded commit payload), erin by the user
    // search, frank by the commit search (his commit is unknown there: 422), gina nowhere.
    let server = MockServer::start().await;
    let recorded = fixture_records("github/commits/pygithub/Commit.testAttributes.json");
    let commit_body = recorded[0].clone();
    let (dave_id, dave_login) = (
        commit_body["author"]["id"].as_i64().unwrap(),
        commit_body["author"]["login"].as_str().unwrap().to_string(),
    );
    let sha = |mark| format!("/repos/o/r/commits/{}", repo.mark(mark));
    Mock::given(method("GET"))
        .and(path(sha(1)))
        .respond_with(ResponseTemplate::new(200).set_body_json(&commit_body))
        .mount(&server)
        .await;
    let no_author = json!({"sha": "x", "author": null, "committer": null});
    for mark in [2, 4] {
        Mock::given(method("GET"))
            .and(path(sha(mark)))
            .respond_with(ResponseTemplate::new(200).set_body_json(&no_author))
            .mount(&server)
            .await;
    }
    Mock::given(method("GET"))
        .and(path(sha(3)))
        .respond_with(ResponseTemplate::new(422).set_body_json(json!({"message": "No commit found for SHA"})))
        .mount(&server)
        .await;
    let empty_search = json!({"total_count": 0, "incomplete_results": false, "items": []});
    Mock::given(method("GET"))
        .and(path("/search/users"))
        .and(query_param("q", "erin@example.com in:email"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "total_count": 1, "incomplete_results": false, "items": [{"login": "erin-gh", "id": 202, "type": "User"}]
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/search/commits"))
        .and(query_param("q", "author-email:frank@example.com"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "total_count": 1, "incomplete_results": false,
            "items": [{"sha": "abc", "author": {"login": "frank-gh", "id": 303, "type": "User"}}]
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/search/users"))
        .respond_with(ResponseTemplate::new(200).set_body_json(&empty_search))
        .with_priority(10)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/search/commits"))
        .respond_with(ResponseTemplate::new(200).set_body_json(&empty_search))
        .with_priority(10)
        .mount(&server)
        .await;
    let github = GithubClient::new(
        GithubConfig::new(&format!("{}/", server.uri())).unwrap(),
        TokenPool::new(["tok".to_string()], 1, pool.clone()),
    )
    .unwrap();
    let forge = || {
        Some(ForgeRepo {
            forge: &github,
            owner: "o".into(),
            name: "r".into(),
        })
    };

    // Within the misses' cooldown nothing is asked.
    let r = authors::resolve(&pool, lease, forge(), true).await.unwrap();
    assert_eq!((r.requests, r.trail.len()), (0, 0), "{r:?}");
    assert!(requests(&server).await.is_empty());

    // Past it, without tokens for this GitHub repository, the emails the free steps do
    // not resolve are deferred, not recorded as misses (no cooldown starts).
    sqlx::query("SELECT aveloxis.set_setting('clock.offset', '8 days')")
        .execute(&pool)
        .await
        .unwrap();
    let r = authors::resolve(&pool, lease, None::<ForgeRepo<'_, GithubClient>>, true)
        .await
        .unwrap();
    assert_eq!(r.by_step, BTreeMap::from([("deferred", 4)]), "{r:?}");
    let attempts: Vec<i32> =
        sqlx::query_scalar("SELECT attempts FROM aveloxis_data.unresolved_commit_emails WHERE outcome = 'not_found'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(attempts, [1, 1, 1, 1]);

    // With the API, each email goes down the chain until a step finds its account.
    let r = authors::resolve(&pool, lease, forge(), true).await.unwrap();
    let trail: BTreeMap<&str, Step> = r.trail.iter().map(|(e, s)| (e.as_str(), *s)).collect();
    assert_eq!(
        trail,
        BTreeMap::from([
            ("dave@example.com", Step::CommitApi),
            ("erin@example.com", Step::UserSearch),
            ("frank@example.com", Step::CommitSearch),
            ("gina@example.com", Step::NotFound),
        ])
    );
    // As form-urlencoded: '@' and ':' escaped, spaces as '+'.
    let q = |s: &str| s.replace('@', "%40").replace(':', "%3A").replace(' ', "+");
    let expected_requests: Vec<String> = vec![
        sha(1),
        sha(2),
        format!("/search/users?q={}&per_page=1", q("erin@example.com in:email")),
        sha(3),
        format!("/search/users?q={}&per_page=1", q("frank@example.com in:email")),
        format!("/search/commits?q={}&per_page=1", q("author-email:frank@example.com")),
        sha(4),
        format!("/search/users?q={}&per_page=1", q("gina@example.com in:email")),
        format!("/search/commits?q={}&per_page=1", q("author-email:gina@example.com")),
    ];
    assert_eq!(requests(&server).await, expected_requests);
    assert_eq!(r.requests, 9);

    // Hits: contributors with their deterministic ids, aliases, back-filled commits.
    let linked: Vec<(String, String, Option<i64>, String)> = sqlx::query_as(
        "SELECT c.cmt_author_email, c.cmt_author_platform_username, k.gh_user_id, c.cmt_ght_author_id::text
         FROM aveloxis_data.commits c JOIN aveloxis_data.contributors k ON k.cntrb_id = c.cmt_ght_author_id
         ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let uuid = |id: i64| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, String>("SELECT aveloxis.platform_uuid(1::smallint, $1)::text")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        linked,
        vec![
            (
                "7+nora@users.noreply.github.com".into(),
                "nora".into(),
                Some(7),
                uuid(7).await
            ),
            (
                "dave@example.com".into(),
                dave_login.clone(),
                Some(dave_id),
                uuid(dave_id).await
            ),
            ("erin@example.com".into(), "erin-gh".into(), Some(202), uuid(202).await),
            (
                "frank@example.com".into(),
                "frank-gh".into(),
                Some(303),
                uuid(303).await
            ),
            (
                "known@example.com".into(),
                "kim".into(),
                None,
                "00000000-0000-4000-8000-00000000000a".into()
            ),
        ]
    );
    let aliases: Vec<String> =
        sqlx::query_scalar("SELECT alias_email FROM aveloxis_data.contributors_aliases ORDER BY 1")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        aliases,
        [
            "dave@example.com",
            "erin@example.com",
            "frank@example.com",
            "known@example.com"
        ]
    );

    // The miss waits out its cooldown: no request now, three once it has passed.
    let r = authors::resolve(&pool, lease, forge(), true).await.unwrap();
    assert_eq!(r.requests, 0);
    assert_eq!(requests(&server).await.len(), 9);
    sqlx::query("SELECT aveloxis.set_setting('clock.offset', '16 days')")
        .execute(&pool)
        .await
        .unwrap();
    let r = authors::resolve(&pool, lease, forge(), true).await.unwrap();
    assert_eq!(r.trail, vec![("gina@example.com".to_string(), Step::NotFound)]);
    assert_eq!(requests(&server).await.len(), 12);
    let (outcome, attempts): (String, i32) = sqlx::query_as(
        "SELECT outcome, attempts FROM aveloxis_data.unresolved_commit_emails WHERE email = 'gina@example.com'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((outcome.as_str(), attempts), ("not_found", 3));
    let unresolved: i64 = sqlx::query_scalar("SELECT count(*) FROM aveloxis_data.unresolved_commit_emails")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(unresolved, 1);
    let _ = std::fs::remove_dir_all(&clones);
}
