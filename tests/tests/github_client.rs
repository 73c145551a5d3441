//! The GitHub client against the replay server: recorded traffic of
//! `../shared/fixtures/github`, with faults injected in GitHub's forms, and the token
//! budgets of a real database.

use std::time::Duration;

use aveloxis_agent::forge::github::{GithubClient, GithubConfig};
use aveloxis_agent::forge::tokens::{Token, TokenPool};
use aveloxis_agent::forge::{Fetched, Forge, ForgeError, Request};
use harness::replay::{exchanges, ReplayServer};
use harness::sqlx;
use harness::TestDb;

const COMMENTS: &str = "github/issue_comments/pygithub/Repository.testGetIssuesComments.json";
const COMMENTS_PATH: &str = "/repos/PyGithub/PyGithub/issues/comments";

async fn client(db: &TestDb, replay: &ReplayServer, tokens: &[&str]) -> GithubClient {
    let mut config = GithubConfig::new(&replay.api_url()).unwrap();
    // Tests wait milliseconds where GitHub makes agents wait seconds.
    config.retry_base = Duration::from_millis(5);
    config.max_retries = 3;
    config.max_wait = Duration::from_secs(5);
    let pool = TokenPool::new(tokens.iter().map(|t| t.to_string()), 1, db.pool(4).await);
    GithubClient::new(config, pool).unwrap()
}

fn page(f: Fetched) -> (serde_json::Value, Option<String>, Option<String>) {
    match f {
        Fetched::Page { body, etag, next, .. } => (body, etag, next),
        Fetched::NotModified => panic!("expected a page, got 304"),
    }
}

#[tokio::test]
async fn pages_follow_link_headers_on_the_replay_host() {
    let db = TestDb::with_extension("gh_pages").await;
    let replay = ReplayServer::start().await;
    replay.load(COMMENTS).await;
    let gh = client(&db, &replay, &["token-one"]).await;
    let (first, etag, next) = page(gh.fetch(&Request::new(COMMENTS_PATH)).await.unwrap());
    let recorded = &exchanges(COMMENTS)[0];
    assert_eq!(first, recorded.response, "the body is the recorded one");
    assert!(etag.is_some());
    let next = next.expect("the recording links a next page");
    assert!(
        next.starts_with(&replay.api_url()),
        "Link rewritten to the replay server: {next}"
    );
    let (second, _, _) = page(gh.fetch(&Request::new(next)).await.unwrap());
    assert_eq!(second, exchanges(COMMENTS)[1].response);
    // Every request carried the token, and the budgets saw GitHub's headers.
    let requests = replay.requests().await;
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|r| r.2.as_deref() == Some("token token-one")));
    let remaining: Option<i32> =
        sqlx::query_scalar("SELECT reported_remaining FROM aveloxis.token_status() WHERE bucket = 'core'")
            .fetch_one(&db.pool(1).await)
            .await
            .unwrap();
    assert!(remaining.is_some(), "X-RateLimit-* settled into the budgets");
}

#[tokio::test]
async fn a_not_modified_answer_costs_no_quota_and_returns_nothing() {
    let db = TestDb::with_extension("gh_304").await;
    let replay = ReplayServer::start().await;
    replay.load(COMMENTS).await;
    let gh = client(&db, &replay, &["token-one"]).await;
    replay
        .respond(
            COMMENTS_PATH,
            wiremock::ResponseTemplate::new(304)
                .append_header("X-RateLimit-Remaining", "4999")
                .append_header("X-RateLimit-Reset", "4102444800"),
            1,
        )
        .await;
    let fetched = gh
        .fetch(&Request::new(COMMENTS_PATH).with_etag(Some("W/\"abc\"".into())))
        .await
        .unwrap();
    assert!(matches!(fetched, Fetched::NotModified));
    assert_eq!(
        replay.requests().await[0].1.as_deref(),
        Some("W/\"abc\""),
        "If-None-Match sent"
    );
}

#[tokio::test]
async fn server_errors_are_retried_and_then_reported_transient() {
    let db = TestDb::with_extension("gh_5xx").await;
    let replay = ReplayServer::start().await;
    replay.load(COMMENTS).await;
    let gh = client(&db, &replay, &["token-one"]).await;
    replay
        .fail_next(COMMENTS_PATH, &[502, 503, 500], &[], "Server Error")
        .await;
    let (body, _, _) = page(gh.fetch(&Request::new(COMMENTS_PATH)).await.unwrap());
    assert_eq!(
        body,
        exchanges(COMMENTS)[0].response,
        "the fourth attempt gets the page"
    );
    assert_eq!(replay.requests().await.len(), 4);

    replay
        .fail_next(COMMENTS_PATH, &[502, 502, 502, 502], &[], "Server Error")
        .await;
    let err = gh.fetch(&Request::new(COMMENTS_PATH)).await.unwrap_err();
    assert_eq!(err.class(), "transient", "{err}");
    assert!(err.to_string().contains("after 4 attempts"), "{err}");
}

#[tokio::test]
async fn a_401_invalidates_the_token_and_the_next_one_is_used() {
    let db = TestDb::with_extension("gh_401").await;
    let replay = ReplayServer::start().await;
    replay.load(COMMENTS).await;
    let gh = client(&db, &replay, &["token-bad", "token-good"]).await;
    // Make the bad token the fuller one, so it is tried first.
    let bad = Token::new("token-bad").fingerprint;
    let good = Token::new("token-good").fingerprint;
    let pool = db.pool(1).await;
    for (fp, remaining) in [(&bad, 5000), (&good, 4000)] {
        sqlx::query("SELECT aveloxis.token_settle($1, 'core', $2, now() + interval '1 hour')")
            .bind(fp)
            .bind(remaining)
            .execute(&pool)
            .await
            .unwrap();
    }
    replay.fail_next(COMMENTS_PATH, &[401], &[], "Bad credentials").await;
    page(gh.fetch(&Request::new(COMMENTS_PATH)).await.unwrap());
    let auth: Vec<Option<String>> = replay.requests().await.into_iter().map(|r| r.2).collect();
    assert_eq!(auth, [Some("token token-bad".into()), Some("token token-good".into())]);
    let invalid: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT fingerprint FROM aveloxis.token_status() WHERE invalid_at IS NOT NULL")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(invalid, [bad]);

    // With every token invalid, the job fails as an auth problem, not the repository's.
    replay.fail_next(COMMENTS_PATH, &[401], &[], "Bad credentials").await;
    let err = gh.fetch(&Request::new(COMMENTS_PATH)).await.unwrap_err();
    assert_eq!(err.class(), "auth", "{err}");
}

#[tokio::test]
async fn rate_limits_wait_or_move_to_another_token() {
    let db = TestDb::with_extension("gh_403").await;
    let replay = ReplayServer::start().await;
    replay.load(COMMENTS).await;
    let gh = client(&db, &replay, &["token-a", "token-b"]).await;
    // Primary limit: the answering token reports 0 left; the other token is used next.
    replay
        .fail_next(
            COMMENTS_PATH,
            &[403],
            &[("X-RateLimit-Remaining", "0"), ("X-RateLimit-Reset", "4102444800")],
            "API rate limit exceeded for user ID 1.",
        )
        .await;
    page(gh.fetch(&Request::new(COMMENTS_PATH)).await.unwrap());
    let auth: Vec<String> = replay.requests().await.into_iter().filter_map(|r| r.2).collect();
    assert_eq!(auth.len(), 2);
    assert_ne!(auth[0], auth[1], "the spent token was not used again");

    // Secondary limit (its documented body text), then Retry-After: waited out, then served.
    replay
        .fail_next(
            COMMENTS_PATH,
            &[403],
            &[],
            "You have exceeded a secondary rate limit. Please wait a few minutes.",
        )
        .await;
    replay
        .fail_next(COMMENTS_PATH, &[429], &[("Retry-After", "1")], "Too many requests")
        .await;
    page(gh.fetch(&Request::new(COMMENTS_PATH)).await.unwrap());
    assert_eq!(replay.requests().await.len(), 5);

    // A Retry-After longer than the client's patience ends the fetch as transient.
    replay
        .fail_next(COMMENTS_PATH, &[429], &[("Retry-After", "3600")], "Too many requests")
        .await;
    let err = gh.fetch(&Request::new(COMMENTS_PATH)).await.unwrap_err();
    assert_eq!(err.class(), "transient", "{err}");
}

#[tokio::test]
async fn not_found_gone_forbidden_and_rejected_are_classified_and_not_retried() {
    let db = TestDb::with_extension("gh_4xx").await;
    let replay = ReplayServer::start().await;
    replay
        .load("github/errors/pygithub/Exceptions.testUnknownObject.json")
        .await;
    replay.load(COMMENTS).await;
    let gh = client(&db, &replay, &["token-one"]).await;
    let unknown = exchanges("github/errors/pygithub/Exceptions.testUnknownObject.json")
        .into_iter()
        .find(|e| e.status == 404)
        .expect("the recording has a 404");
    let err = gh.fetch(&Request::new(unknown.path.clone())).await.unwrap_err();
    assert!(matches!(err, ForgeError::NotFound { .. }), "{err}");
    assert_eq!(err.class(), "skip");

    for (status, class) in [(410, "skip"), (422, "fatal"), (403, "skip")] {
        let before = replay.requests().await.len();
        replay.fail_next(COMMENTS_PATH, &[status], &[], "Nope").await;
        let err = gh.fetch(&Request::new(COMMENTS_PATH)).await.unwrap_err();
        assert_eq!(err.class(), class, "HTTP {status}: {err}");
        assert_eq!(
            replay.requests().await.len(),
            before + 1,
            "HTTP {status} is not retried"
        );
    }
}

#[tokio::test]
async fn permanent_redirects_are_followed_and_reported_and_foreign_hosts_refused() {
    let db = TestDb::with_extension("gh_301").await;
    let replay = ReplayServer::start().await;
    replay.load(COMMENTS).await;
    let gh = client(&db, &replay, &["token-one"]).await;
    let old = "/repos/pygithub/old-name/issues/comments";
    let moved = format!("{}repos/PyGithub/PyGithub/issues/comments", replay.api_url());
    replay
        .fail_next(old, &[301], &[("Location", moved.as_str())], "Moved Permanently")
        .await;
    match gh.fetch(&Request::new(old)).await.unwrap() {
        Fetched::Page { moved_to, body, .. } => {
            assert_eq!(moved_to.as_deref(), Some(moved.as_str()));
            assert_eq!(body, exchanges(COMMENTS)[0].response);
        }
        Fetched::NotModified => panic!("expected the page"),
    }
    replay
        .fail_next(old, &[302], &[("Location", "https://evil.example.com/steal")], "Found")
        .await;
    let err = gh.fetch(&Request::new(old)).await.unwrap_err();
    assert!(matches!(err, ForgeError::ForeignUrl { .. }), "{err}");
    let err = gh
        .fetch(&Request::new("https://evil.example.com/repos/o/r"))
        .await
        .unwrap_err();
    assert!(matches!(err, ForgeError::ForeignUrl { .. }), "{err}");
}

#[tokio::test]
async fn truncated_bodies_and_slow_answers_are_retried() {
    let db = TestDb::with_extension("gh_truncated").await;
    let replay = ReplayServer::start().await;
    replay.load(COMMENTS).await;
    let gh = client(&db, &replay, &["token-one"]).await;
    let recorded = exchanges(COMMENTS).remove(0);
    replay.truncate_next(COMMENTS_PATH, &recorded, 100).await;
    let (body, _, _) = page(gh.fetch(&Request::new(COMMENTS_PATH)).await.unwrap());
    assert_eq!(body, recorded.response);
    assert_eq!(replay.requests().await.len(), 2);

    let mut config = GithubConfig::new(&replay.api_url()).unwrap();
    config.retry_base = Duration::from_millis(5);
    config.request_timeout = Duration::from_millis(200);
    let impatient = GithubClient::new(config, TokenPool::new(["token-one".to_string()], 1, db.pool(2).await)).unwrap();
    replay.slow_next(COMMENTS_PATH, &recorded, Duration::from_secs(2)).await;
    let (body, _, _) = page(impatient.fetch(&Request::new(COMMENTS_PATH)).await.unwrap());
    assert_eq!(body, recorded.response, "a timed-out request is retried");
}

#[tokio::test]
async fn two_agents_sharing_a_token_never_exceed_its_reported_budget() {
    let db = TestDb::with_extension("gh_shared_token").await;
    let replay = ReplayServer::start().await;
    // Answers without rate-limit headers: every request spends one of the reported budget.
    replay
        .respond(
            "/repos/o/r",
            wiremock::ResponseTemplate::new(200).set_body_json(serde_json::json!({"id": 1})),
            1000,
        )
        .await;
    let pool = db.pool(4).await;
    sqlx::query("SELECT aveloxis.set_setting('tokens.reserve', '0')")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("SELECT aveloxis.token_settle($1, 'core', 20, now() + interval '1 hour')")
        .bind(Token::new("shared").fingerprint)
        .execute(&pool)
        .await
        .unwrap();
    let mut agents = Vec::new();
    for _ in 0..2 {
        let mut config = GithubConfig::new(&replay.api_url()).unwrap();
        config.max_wait = Duration::ZERO; // out of budget: give up at once instead of waiting an hour
        let gh = GithubClient::new(config, TokenPool::new(["shared".to_string()], 1, db.pool(2).await)).unwrap();
        agents.push(tokio::spawn(async move {
            let mut served = 0;
            loop {
                match gh.fetch(&Request::new("/repos/o/r")).await {
                    Ok(_) => served += 1,
                    Err(e) => {
                        assert_eq!(e.class(), "transient", "{e}");
                        return served;
                    }
                }
            }
        }));
    }
    let mut total = 0;
    for agent in agents {
        total += agent.await.unwrap();
    }
    assert_eq!(
        total, 20,
        "two agents on one token spent exactly the 20 requests it reported"
    );
    assert_eq!(replay.requests().await.len(), 20, "and the forge saw no more");
}
