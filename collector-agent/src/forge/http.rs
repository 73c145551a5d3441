//! The HTTP rules every forge client shares, and the points where forges differ (a
//! [`Dialect`]: how a request is authorized, which headers report the rate limit, what a
//! 403/429 asks for, where the next page is).
//!
//! Shared rules (aveloxis-go-spec.md §8, with its ⚠ defects avoided):
//! - tokens come from the shared budgets (`aveloxis.token_acquire`), and every answer's
//!   rate-limit headers are settled back, so agents sharing a token never overspend;
//! - 304 (a conditional request whose ETag still holds) returns [`Fetched::NotModified`];
//! - 401 invalidates the token, not the job: the next token is tried;
//! - a rate limit waits (Retry-After, the reset), moves to another token, or backs off, as
//!   the dialect reads it; any other 403 is Forbidden (the endpoint is skipped);
//! - 5xx, timeouts, connection errors and unreadable bodies are retried with bounded,
//!   jittered backoff;
//! - 301/308 are followed (up to 5 hops) and reported as a move, 302/307 followed; a 3xx
//!   without `Location`, or a sixth hop, is a `Redirect` error of that request;
//! - 204 No Content is an empty list;
//! - 404 → NotFound, 410 → Gone, 422 and other 4xx (405 included) → Rejected, never retried;
//! - tokens are only ever sent to the API's own origin (scheme, host and port): the first
//!   URL, every `Location` and every next-page URL are checked before a token is attached.

use std::time::Duration;

use reqwest::header::{HeaderMap, IF_NONE_MATCH, LOCATION, RETRY_AFTER};
use reqwest::{RequestBuilder, StatusCode, Url};

use super::tokens::{Grant, TokenPool};
use super::{Fetched, ForgeError, Request};

/// Limits of a client's patience, and its API root.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The API root, e.g. `https://api.github.com/` or `https://gitlab.com/api/v4/`.
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

impl ClientConfig {
    pub fn new(api_url: &str) -> Result<Self, url::ParseError> {
        let mut api_url = Url::parse(api_url)?;
        if !api_url.path().ends_with('/') {
            let path = format!("{}/", api_url.path());
            api_url.set_path(&path);
        }
        Ok(ClientConfig {
            api_url,
            max_retries: 5,
            retry_base: Duration::from_secs(1),
            max_wait: Duration::from_secs(15 * 60),
            request_timeout: Duration::from_secs(60),
        })
    }
}

/// What an answer reported about the token's budget.
#[derive(Clone, Copy, Debug, Default)]
pub struct Reported {
    pub remaining: Option<i32>,
    /// Unix seconds.
    pub reset: Option<i64>,
}

/// What a 403 or 429 asks of the client.
#[derive(Debug)]
pub enum Limited {
    /// Wait this long, then ask again.
    Wait(Duration, &'static str),
    /// The token's budget is spent (settled at 0): the budgets pick another or say how long.
    Rotate,
    /// A limit without a stated end: back off, bounded.
    Backoff,
    /// Not a rate limit: a 403 is Forbidden (the endpoint is skipped).
    No,
}

/// Where forges differ.
pub trait Dialect: Send + Sync {
    /// Adds the token and the forge's fixed headers to a request.
    fn authorize(&self, get: RequestBuilder, token: &str) -> RequestBuilder;
    /// The budget a request spends from.
    fn bucket(&self, url: &Url) -> &'static str;
    /// The budget an answer reports, and the bucket it belongs to.
    fn reported(&self, headers: &HeaderMap, bucket: &'static str) -> (Reported, &'static str);
    /// The rate-limit window to assume when an answer gives a remaining count but no reset.
    fn default_window(&self) -> Duration;
    /// What a 403 or 429 answer asks for.
    fn limited(&self, status: StatusCode, headers: &HeaderMap, message: &str, reported: Reported) -> Limited;
    /// The next page of a list (relative to `url`, or absolute), from the answer's headers.
    fn next_page(&self, url: &Url, headers: &HeaderMap) -> Option<String>;
}

pub fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `Retry-After` in seconds, when the answer gives one.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    header(headers, RETRY_AFTER.as_str())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// One forge API over HTTP: a client, its limits, its tokens and its dialect.
pub struct HttpApi<D: Dialect> {
    http: reqwest::Client,
    pub(crate) config: ClientConfig,
    pub(crate) tokens: TokenPool,
    dialect: D,
}

impl<D: Dialect> HttpApi<D> {
    pub fn new(config: ClientConfig, tokens: TokenPool, dialect: D) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.request_timeout)
            .user_agent(concat!("aveloxis-agent/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(HttpApi {
            http,
            config,
            tokens,
            dialect,
        })
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

    /// A `Location` or next-page target, relative to the URL that gave it, which must be on
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

    pub async fn fetch(&self, request: &Request) -> Result<Fetched, ForgeError> {
        let mut url = self.resolve(&request.path)?;
        let mut moved_to = None;
        let mut hops = 0;
        let mut failures = 0;
        let mut limited = 0;
        loop {
            let bucket = self.dialect.bucket(&url);
            let token = match self.tokens.acquire(bucket).await? {
                Grant::Use(token) => token,
                Grant::Wait(wait) => {
                    self.wait(&url, wait, "every token's rate limit is spent").await?;
                    continue;
                }
            };
            let mut get = self.dialect.authorize(self.http.get(url.clone()), token.secret());
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
            // Settle the grant with what the forge reported (or just end it).
            let (reported, settled_bucket) = self.dialect.reported(&headers, bucket);
            match reported.remaining {
                Some(remaining) => {
                    let reset = reported.reset.unwrap_or_else(|| {
                        std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| (d + self.dialect.default_window()).as_secs() as i64)
                    });
                    self.tokens.settle(&token, settled_bucket, remaining, reset).await?;
                }
                None => self.tokens.release(&token, bucket).await?,
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
                // An empty list (GitHub's contributors of an empty repository), not an error.
                return Ok(Fetched::Page {
                    body: serde_json::Value::Array(Vec::new()),
                    etag: header(&headers, "etag").map(str::to_string),
                    next: None,
                    moved_to,
                });
            }
            if status.is_success() {
                let etag = header(&headers, "etag").map(str::to_string);
                let next = match self.dialect.next_page(&url, &headers) {
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
                .and_then(|v| {
                    v.get("message")
                        .or_else(|| v.get("error"))
                        .and_then(|m| m.as_str())
                        .map(str::to_string)
                })
                .unwrap_or_else(|| body.chars().take(200).collect());
            match status.as_u16() {
                401 => {
                    tracing::warn!(token = %token.fingerprint, url = %url, "401: invalidating the token");
                    self.tokens
                        .invalidate(&token, &format!("401 from {url}: {message}"))
                        .await?;
                    continue;
                }
                403 | 429 => match self.dialect.limited(status, &headers, &message, reported) {
                    Limited::Wait(wait, why) => self.wait(&url, wait, &format!("HTTP {status}: {why}")).await?,
                    Limited::Rotate => continue,
                    Limited::Backoff => {
                        limited += 1;
                        if limited > self.config.max_retries {
                            return Err(ForgeError::Transient {
                                url: url.to_string(),
                                message: format!("rate limit persists: {message}"),
                            });
                        }
                        let wait = self.backoff(limited - 1);
                        self.wait(&url, wait, "rate limited").await?;
                    }
                    Limited::No => {
                        return Err(ForgeError::Forbidden {
                            url: url.to_string(),
                            message,
                        })
                    }
                },
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
