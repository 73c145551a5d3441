//! The GitLab REST v4 client (gitlab.com or a self-managed instance): GitLab's dialect of
//! the shared HTTP rules (`http.rs`; reference gitlab-parity.md §2–§3).
//!
//! - `PRIVATE-TOKEN: …` (or `Authorization: Bearer …` for OAuth tokens);
//! - budgets settled from `RateLimit-Remaining` / `RateLimit-Reset` (Unix seconds; no
//!   `X-` prefix); a per-minute window when an instance sends a count without a reset;
//!   self-managed instances that send none are self-paced by the budgets' defaults;
//! - 429 waits for `Retry-After`, else for `RateLimit-Reset`, else moves to another token
//!   when the budget says 0, else backs off; a 403 is never a rate limit on GitLab (a
//!   disabled feature or members-only resource): Forbidden, the endpoint is skipped;
//! - 405 (a pagination mode the endpoint refuses, the 50,000 offset cap) is Rejected with
//!   its status, so the caller can fall back to another mode;
//! - the next page is `Link: rel="next"` (offset and keyset pagination alike; above 10,000
//!   results GitLab drops `X-Total` and `rel="last"` but keeps `rel="next"`), else
//!   `X-Next-Page` (empty at the end).

use std::time::Duration;

use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, LINK};
use reqwest::{RequestBuilder, StatusCode, Url};

use super::http::{header, retry_after, ClientConfig, Dialect, HttpApi, Limited, Reported};
use super::tokens::TokenPool;
use super::{next_link, Fetched, Forge, ForgeError, Request};

pub const DEFAULT_API_URL: &str = "https://gitlab.com/api/v4/";

/// A GitLab client's limits and API root.
pub type GitlabConfig = ClientConfig;

/// How a token is presented.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TokenStyle {
    /// `PRIVATE-TOKEN: <token>`: personal, project and group access tokens.
    #[default]
    PrivateToken,
    /// `Authorization: Bearer <token>`: OAuth 2 tokens (and access tokens too).
    Bearer,
}

pub struct GitlabDialect {
    pub style: TokenStyle,
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The URL of page `page` of the list `url` is a page of.
fn with_page(url: &Url, page: &str) -> Url {
    let mut next = url.clone();
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "page")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    {
        let mut query = next.query_pairs_mut();
        query.clear();
        for (k, v) in &kept {
            query.append_pair(k, v);
        }
        query.append_pair("page", page);
    }
    next
}

impl Dialect for GitlabDialect {
    fn authorize(&self, get: RequestBuilder, token: &str) -> RequestBuilder {
        let get = get.header(ACCEPT, "application/json");
        match self.style {
            TokenStyle::PrivateToken => get.header("PRIVATE-TOKEN", token),
            TokenStyle::Bearer => get.header(AUTHORIZATION, format!("Bearer {token}")),
        }
    }

    fn bucket(&self, _url: &Url) -> &'static str {
        // throttle_authenticated_api: REST (and, it appears, GraphQL) share one budget.
        "core"
    }

    fn reported(&self, headers: &HeaderMap, bucket: &'static str) -> (Reported, &'static str) {
        // A 429 that says "0 left" with a Retry-After but no RateLimit-Reset (application
        // limits, some self-managed proxies): the budget is back when Retry-After says, not
        // after the default one-minute window.
        let reset = header(headers, "ratelimit-reset")
            .and_then(|v| v.trim().parse::<i64>().ok())
            .or_else(|| retry_after(headers).map(|wait| now_secs() + wait.as_secs().max(1) as i64));
        (
            Reported {
                remaining: header(headers, "ratelimit-remaining").and_then(|v| v.trim().parse::<i32>().ok()),
                reset,
            },
            bucket,
        )
    }

    fn default_window(&self) -> Duration {
        Duration::from_secs(60)
    }

    fn limited(&self, status: StatusCode, headers: &HeaderMap, _message: &str, reported: Reported) -> Limited {
        if status != StatusCode::TOO_MANY_REQUESTS {
            return Limited::No;
        }
        if let Some(wait) = retry_after(headers) {
            return Limited::Wait(wait, "Retry-After");
        }
        if let Some(reset) = reported.reset {
            return Limited::Wait(
                Duration::from_secs((reset - now_secs()).max(1) as u64),
                "RateLimit-Reset",
            );
        }
        if reported.remaining == Some(0) {
            return Limited::Rotate;
        }
        // Application limits (/projects/:id, /users/:id, …) answer 429 without headers.
        Limited::Backoff
    }

    fn next_page(&self, url: &Url, headers: &HeaderMap) -> Option<String> {
        if let Some(next) = header(headers, LINK.as_str()).and_then(next_link) {
            return Some(next);
        }
        header(headers, "x-next-page")
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|page| with_page(url, page).to_string())
    }
}

pub struct GitlabClient {
    api: HttpApi<GitlabDialect>,
}

impl GitlabClient {
    pub fn new(config: GitlabConfig, tokens: TokenPool, style: TokenStyle) -> Result<Self, reqwest::Error> {
        Ok(GitlabClient {
            api: HttpApi::new(config, tokens, GitlabDialect { style })?,
        })
    }

    pub fn config(&self) -> &GitlabConfig {
        &self.api.config
    }

    /// The API's host as tokens are keyed by it: `host`, or `host:port` off the default port.
    pub fn api_host(&self) -> String {
        self.api.api_host()
    }
}

impl Forge for GitlabClient {
    fn fetch(&self, request: &Request) -> impl std::future::Future<Output = Result<Fetched, ForgeError>> + Send {
        self.api.fetch(request)
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;
    use crate::forge::test_server::TestServer;

    fn client(origin: &str, tokens: &[&str], style: TokenStyle) -> GitlabClient {
        let mut config = GitlabConfig::new(&format!("{origin}/api/v4")).unwrap();
        config.retry_base = Duration::from_millis(5);
        config.max_retries = 2;
        GitlabClient::new(config, TokenPool::unshared(tokens.iter().map(|t| t.to_string())), style).unwrap()
    }

    /// A recorded gitlab.com answer (headers, a blank line, the body), its URLs moved to
    /// the test server as a replay would.
    fn recorded(path: &str, origin: &str) -> (Vec<(String, String)>, String) {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/fixtures/gitlab")
            .join(path);
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{}: {e} (../shared must sit beside the checkout)", file.display()));
        let (head, body) = text.split_once("\n\n").expect("headers, a blank line, the body");
        let headers = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().replace("https://gitlab.com", origin)))
            .filter(|(n, _)| !n.eq_ignore_ascii_case("content-length") && !n.eq_ignore_ascii_case("transfer-encoding"))
            .collect();
        (headers, body.to_string())
    }

    /// A request path relative to the API root, from the server path it is served at.
    fn rel(path: &str) -> &str {
        path.trim_start_matches("/api/v4/")
    }

    fn page(fetched: Fetched) -> (serde_json::Value, Option<String>) {
        match fetched {
            Fetched::Page { body, next, .. } => (body, next),
            Fetched::NotModified => panic!("a page was expected"),
        }
    }

    #[tokio::test]
    async fn a_recorded_gitlab_page_pages_on_by_link_and_by_x_next_page() {
        let server = TestServer::start();
        let gl = client(&server.origin, &["glpat-one"], TokenStyle::PrivateToken);
        let first = "/api/v4/projects/15578026/issues?order_by=created_at&sort=asc&state=all&per_page=2";
        let (headers, body) = recorded("issues/gitea/issues_page1.txt", &server.origin);
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        server.route(first, 200, &headers, &body);
        let (items, next) = page(gl.fetch(&Request::new(rel(first))).await.unwrap());
        assert_eq!(items.as_array().map(Vec::len), Some(2));
        // Link's rel="next" (page 2 of the recorded list), on our origin.
        let next = next.expect("the recorded page has a next page");
        assert!(next.starts_with(&server.origin) && next.contains("page=2"), "{next}");

        // Above 10,000 results GitLab drops X-Total and rel="last"; an instance may send no
        // Link at all: X-Next-Page still names the next page, empty at the end.
        let list = "/api/v4/projects/1/merge_requests?order_by=created_at&sort=asc&per_page=100";
        server.route(list, 200, &[("X-Next-Page", "3"), ("X-Page", "2")], "[]");
        let (_, next) = page(gl.fetch(&Request::new(rel(list))).await.unwrap());
        let next = next.expect("X-Next-Page: 3");
        let next_url = Url::parse(&next).unwrap();
        let pairs: Vec<(String, String)> = next_url.query_pairs().map(|(k, v)| (k.into(), v.into())).collect();
        assert!(pairs.contains(&("page".into(), "3".into())), "{next}");
        assert!(
            pairs.contains(&("order_by".into(), "created_at".into())),
            "{next}: the order is kept"
        );
        server.route(list, 200, &[("X-Next-Page", ""), ("X-Page", "9")], "[]");
        assert_eq!(
            page(gl.fetch(&Request::new(rel(list))).await.unwrap()).1,
            None,
            "the end"
        );

        let seen = server.requests();
        assert!(seen.iter().all(|r| r.header("private-token") == Some("glpat-one")));
        assert!(seen.iter().all(|r| r.header("authorization").is_none()));
    }

    #[tokio::test]
    async fn a_429_waits_as_told_and_a_403_or_405_is_not_a_rate_limit() {
        let server = TestServer::start();
        let gl = client(&server.origin, &["tok"], TokenStyle::Bearer);
        let path = "/api/v4/projects/1/issues?per_page=100";
        server.route(
            path,
            200,
            &[("RateLimit-Remaining", "1999"), ("RateLimit-Reset", "1776937500")],
            "[]",
        );
        server.route_times(path, 1, 429, &[("Retry-After", "0")], "Retry later");
        let (body, _) = page(gl.fetch(&Request::new(rel(path))).await.unwrap());
        assert_eq!(body, serde_json::json!([]));
        assert_eq!(server.requests().len(), 2, "asked again after Retry-After");

        // Application limits answer 429 without headers: backed off, bounded.
        let app = "/api/v4/users/1";
        server.route(app, 429, &[], "Retry later");
        let err = gl.fetch(&Request::new(rel(app))).await.unwrap_err();
        assert_eq!(err.class(), "transient", "{err}");

        // A disabled feature: 403, skipped at once, not retried.
        let disabled = "/api/v4/projects/1/merge_requests";
        server.route(disabled, 403, &[], "{\"message\": \"403 Forbidden\"}");
        let before = server.requests().len();
        let err = gl.fetch(&Request::new(rel(disabled))).await.unwrap_err();
        assert!(matches!(err, ForgeError::Forbidden { .. }), "{err}");
        assert_eq!(server.requests().len() - before, 1);

        // Keyset refused (or the offset cap): 405 with its status, for the caller to fall back.
        let keyset = "/api/v4/projects/1/issues?pagination=keyset&order_by=id&sort=asc";
        server.route(
            keyset,
            405,
            &[],
            "{\"error\": \"Keyset pagination is not yet available for this type of request\"}",
        );
        match gl.fetch(&Request::new(rel(keyset))).await.unwrap_err() {
            ForgeError::Rejected { status, message, .. } => {
                assert_eq!(status, 405);
                assert!(message.contains("Keyset pagination"), "{message}");
            }
            other => panic!("{other}"),
        }
        assert!(server
            .requests()
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer tok") && r.header("private-token").is_none()));
    }

    #[tokio::test]
    async fn a_token_never_leaves_its_gitlab_host() {
        let api = TestServer::start();
        let other = TestServer::start();
        let gl = client(&api.origin, &["glpat-secret"], TokenStyle::PrivateToken);
        api.route(
            "/api/v4/projects/1/issues",
            200,
            &[(
                "Link",
                &format!("<{}/api/v4/projects/1/issues?page=2>; rel=\"next\"", other.origin),
            )],
            "[]",
        );
        api.route(
            "/api/v4/projects/2",
            301,
            &[("Location", &format!("{}/api/v4/projects/2", other.origin))],
            "",
        );
        for path in ["/api/v4/projects/1/issues", "/api/v4/projects/2"] {
            let err = gl.fetch(&Request::new(rel(path))).await.unwrap_err();
            assert!(matches!(err, ForgeError::ForeignUrl { .. }), "{path}: {err}");
        }
        assert!(other.requests().is_empty(), "the other host was never contacted");
        assert_eq!(gl.api_host(), api.host);
    }

    #[test]
    fn the_page_parameter_is_replaced_not_repeated() {
        let url =
            Url::parse("https://gitlab.example.org/api/v4/projects/7/notes?page=1&per_page=100&sort=asc").unwrap();
        let next = with_page(&url, "2");
        assert_eq!(next.query_pairs().filter(|(k, _)| k == "page").count(), 1);
        assert!(next.as_str().ends_with("page=2"), "{next}");
    }
}
