//! The GitHub REST client (github.com or GitHub Enterprise through `--github-api-url`).
//!
//! HTTP rules (aveloxis-go-spec.md §8, with its ⚠ defects avoided):
//! - tokens come from the shared budgets (`aveloxis.token_acquire`), and every answer's
//!   `X-RateLimit-*` headers are settled back, so agents sharing a token never overspend;
//! - 304 (a conditional request whose ETag still holds) costs no quota and returns
//!   [`Fetched::NotModified`];
//! - 401 invalidates the token, not the job: the next token is tried;
//! - 403/429 with `Retry-After` waits that long; a primary limit (`X-RateLimit-Remaining: 0`)
//!   moves to another token or waits for the reset; a secondary limit (its documented body
//!   texts) backs off; any other 403 is Forbidden (the endpoint is skipped);
//! - 5xx, timeouts and connection errors are retried with bounded, jittered backoff;
//! - 301/308 are followed (up to 5 hops) and reported as a move, 302/307 followed; a 3xx
//!   without `Location`, or a sixth hop, is a `Redirect` error of that request;
//! - 204 No Content (GitHub's contributors of an empty repository) is an empty list;
//! - 404 → NotFound, 410 → Gone (both skip the endpoint; the collection decides when the
//!   repository itself is gone), 422 and other 4xx → Rejected, never retried;
//! - tokens are only ever sent to the API's own origin (scheme, host and port): the first
//!   URL, every `Location` and every `Link` are checked before a token is attached.

use std::time::Duration;

use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, IF_NONE_MATCH, LINK, LOCATION, RETRY_AFTER};
use reqwest::{StatusCode, Url};

use super::tokens::{Grant, TokenPool};
use super::{next_link, Fetched, Forge, ForgeError, Request};

pub const DEFAULT_API_URL: &str = "https://api.github.com/";

/// Limits of the client's patience.
#[derive(Clone, Debug)]
pub struct GithubConfig {
    /// The API root, e.g. `https://api.github.com/` or `https://ghe.example.com/api/v3/`.
    pub api_url: Url,
    /// Retries of one request after 5xx, timeouts or connection errors.
    pub max_retries: u32,
    /// The first retry's backoff; it doubles each time (jittered, capped at 64 × base).
    pub retry_base: Duration,
    /// The longest rate-limit wait taken inside one fetch; longer ones end the fetch as
    /// Transient so the job is retried later instead of holding its lease.
    pub max_wait: Duration,
    pub request_timeout: Duration,
}

impl GithubConfig {
    pub fn new(api_url: &str) -> Result<Self, url::ParseError> {
        let mut api_url = Url::parse(api_url)?;
        if !api_url.path().ends_with('/') {
            let path = format!("{}/", api_url.path());
            api_url.set_path(&path);
        }
        Ok(GithubConfig {
            api_url,
            max_retries: 5,
            retry_base: Duration::from_secs(1),
            max_wait: Duration::from_secs(15 * 60),
            request_timeout: Duration::from_secs(60),
        })
    }
}

pub struct GithubClient {
    http: reqwest::Client,
    config: GithubConfig,
    tokens: TokenPool,
}

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

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

impl GithubClient {
    pub fn new(config: GithubConfig, tokens: TokenPool) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.request_timeout)
            .user_agent(concat!("aveloxis-agent/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(GithubClient { http, config, tokens })
    }

    pub fn config(&self) -> &GithubConfig {
        &self.config
    }

    pub(crate) fn tokens(&self) -> &TokenPool {
        &self.tokens
    }

    /// The API's host as tokens are keyed by it: `host`, or `host:port` off the default port.
    pub fn api_host(&self) -> String {
        super::hosts::host_port(&self.config.api_url)
    }

    /// The request's URL (a path under the API root, or an absolute URL), which must be on
    /// the API's origin.
    fn resolve(&self, path: &str) -> Result<Url, ForgeError> {
        let url = self
            .config
            .api_url
            .join(path.trim_start_matches('/'))
            .map_err(|_| ForgeError::ForeignUrl { url: path.to_string() })?;
        self.on_api_origin(url)
    }

    /// A `Location` or `Link` target, relative to the URL that gave it, which must be on
    /// the API's origin.
    fn follow(&self, from: &Url, target: &str) -> Result<Url, ForgeError> {
        let url = from.join(target).map_err(|_| ForgeError::ForeignUrl {
            url: target.to_string(),
        })?;
        self.on_api_origin(url)
    }

    /// Only URLs of the API's own scheme, host and port are ever sent a token.
    fn on_api_origin(&self, url: Url) -> Result<Url, ForgeError> {
        let api = &self.config.api_url;
        if url.scheme() != api.scheme()
            || url.host_str().map(str::to_ascii_lowercase) != api.host_str().map(str::to_ascii_lowercase)
            || url.port_or_known_default() != api.port_or_known_default()
        {
            return Err(ForgeError::ForeignUrl { url: url.to_string() });
        }
        Ok(url)
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.config.retry_base;
        let exp = base.saturating_mul(1 << attempt.min(6));
        exp + base.mul_f64(fastrand::f64())
    }

    /// Sleeps for a rate-limit wait, or gives up if it is longer than `max_wait`.
    async fn wait(&self, url: &Url, wait: Duration, why: &str) -> Result<(), ForgeError> {
        if wait > self.config.max_wait {
            return Err(ForgeError::Transient {
                url: url.to_string(),
                message: format!("{why}; the next token is free in {} s", wait.as_secs()),
            });
        }
        tracing::info!(url = %url, wait_ms = wait.as_millis() as u64, "{why}; waiting");
        tokio::time::sleep(wait).await;
        Ok(())
    }

    async fn fetch_url(&self, request: &Request) -> Result<Fetched, ForgeError> {
        let mut url = self.resolve(&request.path)?;
        let mut moved_to = None;
        let mut hops = 0;
        let mut failures = 0;
        let mut secondary = 0;
        loop {
            let bucket = bucket_of(&url);
            let token = match self.tokens.acquire(bucket).await? {
                Grant::Use(token) => token,
                Grant::Wait(wait) => {
                    self.wait(&url, wait, "every token's rate limit is spent").await?;
                    continue;
                }
            };
            let mut get = self
                .http
                .get(url.clone())
                .header(AUTHORIZATION, format!("token {}", token.secret()))
                .header(ACCEPT, "application/vnd.github+json")
                .header("X-GitHub-Api-Version", "2022-11-28");
            if let (Some(etag), 0) = (&request.etag, hops) {
                get = get.header(IF_NONE_MATCH, etag);
            }
            let response = match get.send().await {
                Ok(response) => response,
                Err(e) => {
                    self.tokens.release(&token, bucket).await?;
                    failures += 1;
                    if failures > self.config.max_retries {
                        return Err(ForgeError::Transient {
                            url: url.to_string(),
                            message: format!("no answer after {} attempts: {e}", failures),
                        });
                    }
                    tracing::warn!(url = %url, attempt = failures, "request failed: {e}; retrying");
                    tokio::time::sleep(self.backoff(failures - 1)).await;
                    continue;
                }
            };
            let status = response.status();
            let headers = response.headers().clone();
            // Settle the grant with what GitHub reported (or just end it).
            let reported = (
                header(&headers, "x-ratelimit-remaining").and_then(|v| v.parse::<i32>().ok()),
                header(&headers, "x-ratelimit-reset").and_then(|v| v.parse::<i64>().ok()),
            );
            let settled_bucket = match header(&headers, "x-ratelimit-resource") {
                Some("search") => "search",
                Some("graphql") => "graphql",
                _ => bucket,
            };
            match reported {
                (Some(remaining), reset) => {
                    // Without X-RateLimit-Reset (older GitHub Enterprise), assume GitHub's
                    // one-hour window from now.
                    let reset = reset.unwrap_or_else(|| {
                        std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs() as i64 + 3600)
                    });
                    self.tokens.settle(&token, settled_bucket, remaining, reset).await?;
                }
                _ => self.tokens.release(&token, bucket).await?,
            }

            if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                let Some(target) = header(&headers, LOCATION.as_str()).map(str::to_string) else {
                    return Err(ForgeError::Redirect {
                        url: url.to_string(),
                        message: format!("HTTP {status} without a Location header"),
                    });
                };
                hops += 1;
                if hops > 5 {
                    return Err(ForgeError::Redirect {
                        url: request.path.clone(),
                        message: format!("redirects without end (more than 5 hops; the last to {target})"),
                    });
                }
                let next = self.follow(&url, &target)?;
                if matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::PERMANENT_REDIRECT) {
                    moved_to = Some(next.to_string());
                }
                url = next;
                continue;
            }
            if status == StatusCode::NOT_MODIFIED {
                return Ok(Fetched::NotModified);
            }
            if status == StatusCode::NO_CONTENT {
                // GitHub's contributors of an empty repository: nothing, not an error.
                return Ok(Fetched::Page {
                    body: serde_json::Value::Array(Vec::new()),
                    etag: header(&headers, "etag").map(str::to_string),
                    next: None,
                    moved_to,
                });
            }
            if status.is_success() {
                let etag = header(&headers, "etag").map(str::to_string);
                let next = match header(&headers, LINK.as_str()).and_then(next_link) {
                    Some(next) => Some(self.follow(&url, &next)?.to_string()),
                    None => None,
                };
                let text = response.text().await.map_err(|e| ForgeError::Transient {
                    url: url.to_string(),
                    message: format!("the body could not be read: {e}"),
                })?;
                let body = match serde_json::from_str(&text) {
                    Ok(body) => body,
                    Err(e) => {
                        // A truncated or garbled body: ask again.
                        failures += 1;
                        if failures > self.config.max_retries {
                            return Err(ForgeError::Transient {
                                url: url.to_string(),
                                message: format!("the body is not JSON after {failures} attempts: {e}"),
                            });
                        }
                        tokio::time::sleep(self.backoff(failures - 1)).await;
                        continue;
                    }
                };
                return Ok(Fetched::Page {
                    body,
                    etag,
                    next,
                    moved_to,
                });
            }

            let body = response.text().await.unwrap_or_default();
            let message = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_string))
                .unwrap_or_else(|| body.chars().take(200).collect());
            let retry_after = header(&headers, RETRY_AFTER.as_str())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            match status.as_u16() {
                401 => {
                    tracing::warn!(token = %token.fingerprint, url = %url, "401: invalidating the token");
                    self.tokens
                        .invalidate(&token, &format!("401 from {url}: {message}"))
                        .await?;
                    continue;
                }
                403 | 429 => {
                    let lower = message.to_lowercase();
                    if let Some(wait) = retry_after {
                        self.wait(&url, wait, &format!("HTTP {status}: Retry-After")).await?;
                    } else if reported.0 == Some(0) {
                        // Primary limit: settled at 0, so the budgets move to another token
                        // or say how long to wait.
                        continue;
                    } else if status == StatusCode::TOO_MANY_REQUESTS
                        || lower.contains("secondary rate limit")
                        || lower.contains("abuse detection")
                        || lower.contains("rate limit exceeded")
                    {
                        secondary += 1;
                        if secondary > self.config.max_retries {
                            return Err(ForgeError::Transient {
                                url: url.to_string(),
                                message: format!("secondary rate limit persists: {message}"),
                            });
                        }
                        let wait = self.backoff(secondary - 1);
                        self.wait(&url, wait, "secondary rate limit").await?;
                    } else {
                        return Err(ForgeError::Forbidden {
                            url: url.to_string(),
                            message,
                        });
                    }
                }
                404 => return Err(ForgeError::NotFound { url: url.to_string() }),
                410 => return Err(ForgeError::Gone { url: url.to_string() }),
                500..=599 => {
                    failures += 1;
                    if failures > self.config.max_retries {
                        return Err(ForgeError::Transient {
                            url: url.to_string(),
                            message: format!("HTTP {status} after {failures} attempts: {message}"),
                        });
                    }
                    tracing::warn!(url = %url, attempt = failures, "HTTP {status}; retrying");
                    tokio::time::sleep(self.backoff(failures - 1)).await;
                }
                code => {
                    return Err(ForgeError::Rejected {
                        url: url.to_string(),
                        status: code,
                        message,
                    })
                }
            }
        }
    }
}

impl Forge for GithubClient {
    fn fetch(&self, request: &Request) -> impl std::future::Future<Output = Result<Fetched, ForgeError>> + Send {
        self.fetch_url(request)
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
