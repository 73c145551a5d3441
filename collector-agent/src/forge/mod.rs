//! Forge clients: the HTTP half of collection. A [`Forge`] fetches one page (or one
//! object) of an API, with conditional requests, token budgets, retries and error
//! classes; collection code walks pages through it. GitHub implements it now
//! (`github.rs`); GitLab implements the same trait next.

pub mod github;
pub mod tokens;

use std::fmt;
use std::future::Future;

/// One request: a path relative to the API root (or an absolute URL on the API's host,
/// as `Link` headers give them), and the ETag of the last answer, if any.
#[derive(Clone, Debug)]
pub struct Request {
    pub path: String,
    pub etag: Option<String>,
}

impl Request {
    pub fn new(path: impl Into<String>) -> Self {
        Request {
            path: path.into(),
            etag: None,
        }
    }

    pub fn with_etag(mut self, etag: Option<String>) -> Self {
        self.etag = etag;
        self
    }
}

/// What a fetch brought back.
#[derive(Debug)]
pub enum Fetched {
    Page {
        body: serde_json::Value,
        etag: Option<String>,
        /// The next page (`Link: rel="next"`), as an absolute URL on the API host.
        next: Option<String>,
        /// A permanent redirect (301/308) was followed: the resource's new API URL.
        moved_to: Option<String>,
    },
    /// 304: nothing changed since the ETag; no quota spent, nothing to stage.
    NotModified,
}

/// Why a fetch failed, by what the job should do about it (reference 001).
#[derive(Debug)]
pub enum ForgeError {
    /// 404: the endpoint or object is not there. Skip the endpoint.
    NotFound { url: String },
    /// 403 that is not a rate limit (a private resource, a disabled feature). Skip the endpoint.
    Forbidden { url: String, message: String },
    /// 410, or a redirect chain without end: the repository is gone.
    Gone { url: String },
    /// 422 and other 4xx: the request itself is wrong; retrying cannot help.
    Rejected { url: String, status: u16, message: String },
    /// No valid token is left (401 on every one, or none configured).
    Auth { message: String },
    /// 5xx, timeouts and connection errors after the retries, or a rate limit lasting past
    /// the longest wait: try the job again later.
    Transient { url: String, message: String },
    /// A Link or Location pointing away from the API host: never followed with a token.
    ForeignUrl { url: String },
    /// The token budgets could not be reached in the database.
    Database(sqlx::Error),
}

impl ForgeError {
    /// The failure class of `aveloxis.fail` for a job that ends on this error.
    pub fn class(&self) -> &'static str {
        match self {
            Self::NotFound { .. } | Self::Forbidden { .. } => "skip",
            Self::Gone { .. } => "gone",
            Self::Rejected { .. } | Self::ForeignUrl { .. } => "fatal",
            Self::Auth { .. } => "auth",
            Self::Transient { .. } | Self::Database(_) => "transient",
        }
    }
}

impl fmt::Display for ForgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound { url } => write!(f, "{url}: 404 Not Found"),
            Self::Forbidden { url, message } => write!(f, "{url}: 403 Forbidden: {message}"),
            Self::Gone { url } => write!(f, "{url}: the resource is gone (410, or redirects without end)"),
            Self::Rejected { url, status, message } => write!(f, "{url}: HTTP {status}, not retried: {message}"),
            Self::Auth { message } => write!(
                f,
                "no usable token: {message} (set GITHUB_TOKENS to valid tokens; aveloxis.token_status() lists \
                 the invalidated ones by fingerprint)"
            ),
            Self::Transient { url, message } => write!(f, "{url}: {message}; the job will be retried"),
            Self::ForeignUrl { url } => write!(f, "refusing to send a token to {url}: not the API host"),
            Self::Database(e) => write!(f, "token budgets unavailable: {e}"),
        }
    }
}

impl std::error::Error for ForgeError {}

impl From<sqlx::Error> for ForgeError {
    fn from(e: sqlx::Error) -> Self {
        ForgeError::Database(e)
    }
}

/// A forge's API, one fetch at a time.
pub trait Forge: Send + Sync {
    fn fetch(&self, request: &Request) -> impl Future<Output = Result<Fetched, ForgeError>> + Send;
}

/// The `rel="next"` target of a `Link` header.
pub fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| p.trim().eq_ignore_ascii_case("rel=\"next\"") || p.trim().eq_ignore_ascii_case("rel=next"));
        let target = target.trim();
        (is_next && target.starts_with('<') && target.ends_with('>')).then(|| target[1..target.len() - 1].to_string())
    })
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn next_link_is_found_among_others() {
        let link = "<https://api.github.com/repos/o/r/issues?page=3>; rel=\"next\", \
                    <https://api.github.com/repos/o/r/issues?page=7>; rel=\"last\"";
        assert_eq!(
            next_link(link).as_deref(),
            Some("https://api.github.com/repos/o/r/issues?page=3")
        );
        let last_page =
            "<https://api.github.com/x?page=1>; rel=\"first\", <https://api.github.com/x?page=6>; rel=\"prev\"";
        assert_eq!(next_link(last_page), None);
        assert_eq!(next_link(""), None);
    }
}
