//! Forge clients: the HTTP half of collection. A [`Forge`] fetches one page (or one
//! object) of an API, with conditional requests, token budgets, retries and error
//! classes; collection code walks pages through it. The HTTP rules are shared
//! (`http.rs`); each forge is a dialect of them (`github.rs`, `gitlab.rs`).

pub mod github;
pub mod gitlab;
pub mod hosts;
pub mod http;
#[cfg(test)]
pub(crate) mod test_server;
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
    /// 410: the endpoint's resource is gone. Skip the endpoint (only the repository's own
    /// object answering 404 or 410 makes the repository gone: [`ForgeError::at_endpoint`]).
    Gone { url: String },
    /// A redirect that cannot be followed: a 3xx without `Location`, or more than 5 hops.
    /// A protocol error of this one request: skip the endpoint.
    Redirect { url: String, message: String },
    /// The repository's own object (`repos/{owner}/{name}`, after redirects) answered 404
    /// or 410: the repository is gone (deleted, or private to us) and is sidelined.
    RepositoryGone { url: String, status: u16 },
    /// 422 and other 4xx: the request itself is wrong; retrying cannot help.
    Rejected { url: String, status: u16, message: String },
    /// No valid token is left (401 on every one, or none configured).
    Auth { message: String },
    /// This agent holds no token for the API host a repository lives on; tokens are only
    /// ever sent to the host they were configured for.
    NoToken { api_host: String, how: String },
    /// 5xx, timeouts and connection errors after the retries, or a rate limit lasting past
    /// the longest wait: try the job again later.
    Transient { url: String, message: String },
    /// A Link or Location pointing away from the API host: never followed with a token.
    ForeignUrl { url: String },
    /// The token budgets could not be reached in the database.
    Database(sqlx::Error),
}

/// What a failed fetch means for the collection it is part of.
#[derive(Debug)]
pub enum EndpointFailure {
    /// The endpoint does not apply to this repository now: log it, list it among the
    /// skipped endpoints, and go on with the next one.
    Skip(ForgeError),
    /// The job ends on this error, failed with its class.
    Fail(ForgeError),
}

impl ForgeError {
    /// The failure class of `aveloxis.fail` for a job that ends on this error.
    pub fn class(&self) -> &'static str {
        match self {
            Self::NotFound { .. } | Self::Forbidden { .. } | Self::Gone { .. } | Self::Redirect { .. } => "skip",
            Self::RepositoryGone { .. } => "gone",
            Self::Rejected { .. } | Self::ForeignUrl { .. } => "fatal",
            Self::Auth { .. } | Self::NoToken { .. } => "auth",
            Self::Transient { .. } | Self::Database(_) => "transient",
        }
    }

    /// What this error means for an endpoint of a collection. `repository_object`: the
    /// request was the repository's own object (`repos/{owner}/{name}`, endpoint
    /// `repo_info`); only its 404 or 410 makes the repository gone. A redirect it could
    /// not follow says nothing about whether the repository exists: transient. On any
    /// other endpoint 404, 403, 410 and unfollowable redirects skip that endpoint alone.
    pub fn at_endpoint(self, repository_object: bool) -> EndpointFailure {
        let error = match self {
            Self::NotFound { url } if repository_object => Self::RepositoryGone { url, status: 404 },
            Self::Gone { url } if repository_object => Self::RepositoryGone { url, status: 410 },
            Self::Redirect { url, message } if repository_object => Self::Transient {
                url,
                message: format!("{message}: whether the repository still exists cannot be told"),
            },
            other => other,
        };
        if error.class() == "skip" {
            EndpointFailure::Skip(error)
        } else {
            EndpointFailure::Fail(error)
        }
    }
}

impl fmt::Display for ForgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound { url } => write!(f, "{url}: 404 Not Found"),
            Self::Forbidden { url, message } => write!(f, "{url}: 403 Forbidden: {message}"),
            Self::Gone { url } => write!(f, "{url}: 410 Gone"),
            Self::Redirect { url, message } => write!(f, "{url}: {message}"),
            Self::RepositoryGone { url, status } => {
                write!(
                    f,
                    "{url}: HTTP {status}: the repository is gone (deleted, or not visible to our tokens)"
                )
            }
            Self::Rejected { url, status, message } => write!(f, "{url}: HTTP {status}, not retried: {message}"),
            Self::Auth { message } => write!(
                f,
                "no usable token: {message} (set GITHUB_TOKENS to valid tokens; aveloxis.token_status() lists \
                 the invalidated ones by fingerprint)"
            ),
            Self::NoToken { api_host, how } => {
                write!(f, "this agent has no token for the API host {api_host}: {how}")
            }
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

    fn skipped(e: &EndpointFailure) -> bool {
        matches!(e, EndpointFailure::Skip(_))
    }

    #[test]
    fn only_the_repository_object_can_make_a_repository_gone() {
        let url = || "https://api.github.com/repos/o/r/issues".to_string();
        let redirect = || ForgeError::Redirect {
            url: url(),
            message: "HTTP 302 without a Location header".into(),
        };
        // On any other endpoint 404, 403, 410 and unfollowable redirects skip that endpoint.
        for e in [
            ForgeError::NotFound { url: url() },
            ForgeError::Forbidden {
                url: url(),
                message: "Repository access blocked".into(),
            },
            ForgeError::Gone { url: url() },
            redirect(),
        ] {
            let shown = e.to_string();
            assert_eq!(e.class(), "skip", "{shown}");
            assert!(skipped(&e.at_endpoint(false)), "{shown}");
        }
        // The repository object answering 404 or 410: gone, and only then.
        for (e, status) in [
            (ForgeError::NotFound { url: url() }, 404),
            (ForgeError::Gone { url: url() }, 410),
        ] {
            match e.at_endpoint(true) {
                EndpointFailure::Fail(e) => {
                    assert_eq!(e.class(), "gone", "{e}");
                    assert!(e.to_string().contains(&status.to_string()), "{e}");
                }
                EndpointFailure::Skip(e) => panic!("the repository object was skipped: {e}"),
            }
        }
        // A redirect the repository object could not follow: we cannot tell, so transient.
        match redirect().at_endpoint(true) {
            EndpointFailure::Fail(e) => assert_eq!(e.class(), "transient", "{e}"),
            EndpointFailure::Skip(e) => panic!("skipped: {e}"),
        }
        // Other failures end the job with their own class wherever they happen.
        let transient = ForgeError::Transient {
            url: url(),
            message: "HTTP 502".into(),
        };
        assert!(matches!(transient.at_endpoint(false), EndpointFailure::Fail(e) if e.class() == "transient"));
        let forbidden_repo = ForgeError::Forbidden {
            url: url(),
            message: "private".into(),
        };
        assert!(
            skipped(&forbidden_repo.at_endpoint(true)),
            "a 403 on the repository stays a skip"
        );
    }

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
