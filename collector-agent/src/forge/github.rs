//! The GitHub REST client (github.com or GitHub Enterprise through `--github-api-url`):
//! GitHub's dialect of the shared HTTP rules (`http.rs`).
//!
//! - `Authorization: token …`, `Accept: application/vnd.github+json` and the API version;
//! - budgets per bucket (`core`, `search`, `graphql`), settled from `X-RateLimit-Remaining`
//!   / `-Reset` / `-Resource` (a one-hour window when Enterprise sends no reset);
//! - 403/429 with `Retry-After` waits that long; a primary limit (`X-RateLimit-Remaining: 0`)
//!   moves to another token or waits for the reset; a secondary limit (its documented body
//!   texts) backs off; any other 403 is Forbidden;
//! - the next page is `Link: rel="next"`.

use std::time::Duration;

use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, LINK};
use reqwest::{RequestBuilder, StatusCode, Url};

use super::http::{header, retry_after, ClientConfig, Dialect, HttpApi, Limited, Reported};
use super::tokens::TokenPool;
use super::{next_link, Fetched, Forge, ForgeError, Request};

pub const DEFAULT_API_URL: &str = "https://api.github.com/";

/// A GitHub client's limits and API root.
pub type GithubConfig = ClientConfig;

/// The rate-limit bucket a request spends from.
fn bucket_of(url: &Url) -> &'static str {
    let path = url.path();
    if path.contains("/search/") {
        "search"
    } else if path.ends_with("/graphql") {
        "graphql"
    } else {
        "core"
    }
}

pub struct GithubDialect;

impl Dialect for GithubDialect {
    fn authorize(&self, get: RequestBuilder, token: &str) -> RequestBuilder {
        get.header(AUTHORIZATION, format!("token {token}"))
            .header(ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
    }

    fn bucket(&self, url: &Url) -> &'static str {
        bucket_of(url)
    }

    fn reported(&self, headers: &HeaderMap, bucket: &'static str) -> (Reported, &'static str) {
        let reported = Reported {
            remaining: header(headers, "x-ratelimit-remaining").and_then(|v| v.parse::<i32>().ok()),
            reset: header(headers, "x-ratelimit-reset").and_then(|v| v.parse::<i64>().ok()),
        };
        let bucket = match header(headers, "x-ratelimit-resource") {
            Some("search") => "search",
            Some("graphql") => "graphql",
            _ => bucket,
        };
        (reported, bucket)
    }

    fn default_window(&self) -> Duration {
        // Older GitHub Enterprise sends no X-RateLimit-Reset: GitHub's one-hour window.
        Duration::from_secs(3600)
    }

    fn limited(&self, status: StatusCode, headers: &HeaderMap, message: &str, reported: Reported) -> Limited {
        let lower = message.to_lowercase();
        if let Some(wait) = retry_after(headers) {
            Limited::Wait(wait, "Retry-After")
        } else if reported.remaining == Some(0) {
            // Primary limit: settled at 0, so the budgets move to another token or say
            // how long to wait.
            Limited::Rotate
        } else if status == StatusCode::TOO_MANY_REQUESTS
            || lower.contains("secondary rate limit")
            || lower.contains("abuse detection")
            || lower.contains("rate limit exceeded")
        {
            Limited::Backoff
        } else {
            Limited::No
        }
    }

    fn next_page(&self, _url: &Url, headers: &HeaderMap) -> Option<String> {
        header(headers, LINK.as_str()).and_then(next_link)
    }
}

pub struct GithubClient {
    api: HttpApi<GithubDialect>,
}

impl GithubClient {
    pub fn new(config: GithubConfig, tokens: TokenPool) -> Result<Self, reqwest::Error> {
        Ok(GithubClient {
            api: HttpApi::new(config, tokens, GithubDialect)?,
        })
    }

    pub fn config(&self) -> &GithubConfig {
        &self.api.config
    }

    pub(crate) fn tokens(&self) -> &TokenPool {
        &self.api.tokens
    }

    /// The API's host as tokens are keyed by it: `host`, or `host:port` off the default port.
    pub fn api_host(&self) -> String {
        self.api.api_host()
    }
}

impl Forge for GithubClient {
    fn fetch(&self, request: &Request) -> impl std::future::Future<Output = Result<Fetched, ForgeError>> + Send {
        self.api.fetch(request)
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn buckets_follow_the_path() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert_eq!(bucket_of(&u("https://api.github.com/repos/o/r/issues")), "core");
        assert_eq!(bucket_of(&u("https://api.github.com/search/users?q=x")), "search");
        assert_eq!(bucket_of(&u("https://api.github.com/graphql")), "graphql");
    }

    use crate::forge::test_server::TestServer;

    fn client(origin: &str, tokens: &[&str]) -> GithubClient {
        let mut config = GithubConfig::new(origin).unwrap();
        config.retry_base = Duration::from_millis(5);
        config.max_retries = 2;
        GithubClient::new(config, TokenPool::unshared(tokens.iter().map(|t| t.to_string()))).unwrap()
    }

    #[tokio::test]
    async fn a_410_or_an_unfollowable_redirect_is_a_skip_of_that_request() {
        let server = TestServer::start();
        let gh = client(&server.origin, &["tok"]);
        server.route("/repos/o/r/issues/events", 410, &[], "{\"message\": \"Gone\"}");
        server.route("/repos/o/r/releases", 302, &[], "");
        server.route("/repos/o/r/labels", 302, &[("Location", "/repos/o/r/labels")], "");
        type Expected = fn(&ForgeError) -> bool;
        let cases: [(&str, usize, Expected); 3] = [
            ("repos/o/r/issues/events", 1, |e| matches!(e, ForgeError::Gone { .. })),
            ("repos/o/r/releases", 1, |e| matches!(e, ForgeError::Redirect { .. })),
            // The first request and five hops.
            ("repos/o/r/labels", 6, |e| matches!(e, ForgeError::Redirect { .. })),
        ];
        for (path, requests, expected) in cases {
            let before = server.requests().len();
            let err = gh.fetch(&Request::new(path)).await.unwrap_err();
            assert!(expected(&err), "{path}: {err}");
            assert_eq!(err.class(), "skip", "{path}: never gone by itself: {err}");
            assert_eq!(server.requests().len() - before, requests, "{path}: not retried");
        }
    }

    #[tokio::test]
    async fn no_content_is_an_empty_list() {
        let server = TestServer::start();
        let gh = client(&server.origin, &["tok"]);
        server.route("/repos/o/empty/contributors?per_page=100", 204, &[], "");
        match gh
            .fetch(&Request::new("repos/o/empty/contributors?per_page=100"))
            .await
            .unwrap()
        {
            Fetched::Page { body, next, .. } => {
                assert_eq!(body, serde_json::json!([]));
                assert_eq!(next, None);
            }
            Fetched::NotModified => panic!("a page was expected"),
        }
        assert_eq!(server.requests().len(), 1, "not retried as a broken body");
    }

    #[tokio::test]
    async fn tokens_never_leave_the_api_origin() {
        let api = TestServer::start();
        // Another host (a GitHub Enterprise, say): same address, another port.
        let other = TestServer::start();
        let gh = client(&api.origin, &["tok-github"]);
        let elsewhere = format!("{}/repos/o/r", other.origin);
        api.route("/repos/o/moved", 301, &[("Location", &elsewhere)], "");
        api.route(
            "/repos/o/relative",
            302,
            &[("Location", &format!("//{}/repos/o/r", other.host))],
            "",
        );
        api.route(
            "/repos/o/r/issues",
            200,
            &[(
                "Link",
                &format!("<{}/repos/o/r/issues?page=2>; rel=\"next\"", other.origin),
            )],
            "[]",
        );
        api.route("/repos/o/same", 302, &[("Location", "/repos/o/r")], "");
        api.route("/repos/o/r", 200, &[], "{\"id\": 1}");
        for path in [
            "repos/o/moved",
            "repos/o/relative",
            "repos/o/r/issues",
            elsewhere.as_str(),
        ] {
            let err = gh.fetch(&Request::new(path)).await.unwrap_err();
            assert!(matches!(err, ForgeError::ForeignUrl { .. }), "{path}: {err}");
        }
        // A redirect on the API's own origin is followed, with the token.
        assert!(matches!(
            gh.fetch(&Request::new("repos/o/same")).await.unwrap(),
            Fetched::Page { .. }
        ));
        assert!(other.requests().is_empty(), "the other host was never contacted");
        let seen = api.requests();
        assert_eq!(seen.len(), 5);
        assert!(seen
            .iter()
            .all(|r| r.header("authorization") == Some("token tok-github")));
    }

    #[test]
    fn api_urls_get_a_trailing_slash() {
        let c = GithubConfig::new("https://ghe.example.com/api/v3").unwrap();
        assert_eq!(c.api_url.as_str(), "https://ghe.example.com/api/v3/");
        assert_eq!(
            c.api_url.join("repos/o/r").unwrap().as_str(),
            "https://ghe.example.com/api/v3/repos/o/r"
        );
    }
}
