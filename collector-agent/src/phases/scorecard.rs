//! The scorecard phase (docs/analysis.md, "Scorecard"): a GitHub repository's OpenSSF
//! Scorecard read from the public Scorecard API (`GET projects/github.com/{owner}/{repo}`;
//! no binary, no partial local run), staged raw as one `scorecard` payload; `complete`
//! applies it (sql/scorecard.sql). A repository the API does not publish (404) completes
//! with `{"published": false}` and keeps what it had.

use serde_json::{json, Value};
use sqlx::PgPool;
use url::Url;

use crate::phases::distribution::{under, Registries, RegistryError};
use crate::queue::ClaimedJob;

/// What one scorecard job read.
#[derive(Debug, Default)]
pub struct ScorecardOutcome {
    pub published: bool,
    pub score: Option<Value>,
    pub checks: usize,
}

impl super::Outcome for ScorecardOutcome {
    fn summary(&self) -> String {
        if self.published {
            format!(
                "OpenSSF Scorecard {} with {} checks",
                self.score.clone().unwrap_or(Value::Null),
                self.checks
            )
        } else {
            "the OpenSSF Scorecard API publishes no scorecard for this repository (kept what was stored)".into()
        }
    }

    fn report(&self) -> Value {
        json!({"published": self.published, "score": self.score, "checks": self.checks})
    }
}

/// Why a scorecard job failed, with its queue class.
#[derive(Debug)]
pub enum ScorecardError {
    NotGithub(String),
    Api(RegistryError),
    Database(sqlx::Error),
}

impl std::fmt::Display for ScorecardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotGithub(url) => write!(f, "{url} is not a github.com repository: Scorecard publishes none"),
            Self::Api(RegistryError::Transient(e)) => write!(f, "the Scorecard API did not answer: {e}"),
            Self::Api(RegistryError::Rejected(e)) => write!(f, "the Scorecard API refused the request: {e}"),
            Self::Database(e) => write!(f, "the database: {e}"),
        }
    }
}

impl super::Failure for ScorecardError {
    fn class(&self) -> &'static str {
        match self {
            Self::Api(RegistryError::Transient(_)) | Self::Database(_) => "transient",
            Self::NotGithub(_) | Self::Api(RegistryError::Rejected(_)) => "skip",
        }
    }
}

/// Reads and stages the repository's scorecard from the API at `root`.
pub async fn read_scorecard(
    registries: &Registries,
    root: &Url,
    db: &PgPool,
    job: &ClaimedJob,
) -> Result<ScorecardOutcome, ScorecardError> {
    let (owner, name) = crate::phases::api::owner_and_name(&job.repo_git)
        .filter(|_| job.repo_git.starts_with("https://github.com/"))
        .ok_or_else(|| ScorecardError::NotGithub(job.repo_git.clone()))?;
    let url = under(root, &["projects", "github.com", &owner, &name]);
    match registries.get(url).await.map_err(ScorecardError::Api)? {
        None => Ok(ScorecardOutcome::default()),
        Some(body) => {
            crate::queue::stage(db, job, "scorecard", &[body.to_string()])
                .await
                .map_err(ScorecardError::Database)?;
            Ok(ScorecardOutcome {
                published: true,
                score: body.get("score").cloned(),
                checks: body.get("checks").and_then(Value::as_array).map_or(0, Vec::len),
            })
        }
    }
}
