//! The agent's door into PostgreSQL: connect, check the extension, call `aveloxis.*`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection, Row};

use crate::error::{AgentError, Backoff};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to a database with pg_aveloxis installed.
pub struct Api {
    conn: PgConnection,
    /// `host:port/database`, for messages (never the password).
    pub target: String,
    /// The installed SQL version (`pg_extension.extversion`).
    pub extension_version: String,
}

/// `host:port/database` of a URL, for messages: never user or password.
pub fn describe(options: &PgConnectOptions) -> String {
    format!(
        "{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("(default database)")
    )
}

/// The options of every agent session. `synchronous_commit = on` whatever the server's
/// default: a stage the database acknowledged must survive a crash, or the run completes
/// believing rows are staged that are gone, and an incremental next run never fetches
/// them again (lost in 8 of 10 immediate restarts under `synchronous_commit = off`:
/// tests/tests/fault_injection.rs).
pub fn session_options(url: &str) -> Result<PgConnectOptions, sqlx::Error> {
    Ok(PgConnectOptions::from_str(url)?
        .application_name("aveloxis-agent")
        .options([("synchronous_commit", "on")])
        .log_statements(tracing::log::LevelFilter::Debug))
}

impl Api {
    pub async fn connect(url: &str) -> Result<Self, AgentError> {
        let options = session_options(url).map_err(|e| AgentError::Unreachable {
            target: "(unparsable DATABASE_URL)".into(),
            message: e.to_string(),
        })?;
        let target = describe(&options);
        let mut conn = match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                return Err(AgentError::Unreachable {
                    target,
                    message: e.to_string(),
                })
            }
            Err(_) => {
                return Err(AgentError::Unreachable {
                    target,
                    message: format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
                })
            }
        };
        let version: Option<String> =
            sqlx::query_scalar("SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'pg_aveloxis'")
                .fetch_optional(&mut conn)
                .await
                .map_err(|e| AgentError::sql("reading pg_extension", e))?;
        let Some(extension_version) = version else {
            return Err(AgentError::ExtensionMissing { target });
        };
        Ok(Self {
            conn,
            target,
            extension_version,
        })
    }

    /// The loaded library's version (`aveloxis.version()`).
    pub async fn library_version(&mut self) -> Result<String, AgentError> {
        sqlx::query_scalar("SELECT aveloxis.version()")
            .fetch_one(&mut self.conn)
            .await
            .map_err(|e| AgentError::sql("aveloxis.version()", e))
    }

    pub async fn registry_counts(&mut self) -> Result<RegistryCounts, AgentError> {
        let row = sqlx::query("SELECT * FROM aveloxis.registry_counts()")
            .fetch_one(&mut self.conn)
            .await
            .map_err(|e| AgentError::sql("aveloxis.registry_counts()", e))?;
        Ok(RegistryCounts {
            repo_groups: row.get("repo_groups"),
            repos: row.get("repos"),
            github_repos: row.get("github_repos"),
            gitlab_repos: row.get("gitlab_repos"),
            git_repos: row.get("git_repos"),
        })
    }

    /// `aveloxis.queue_health()`: per phase, how the queue stands.
    pub async fn queue_health(&mut self) -> Result<Vec<QueueHealth>, AgentError> {
        let rows = sqlx::query(
            "SELECT phase, jobs, due, leased, backing_off, sidelined,
                    coalesce(date_trunc('second', oldest_due_age)::text, '-') AS oldest_due_age, failures_last_day
             FROM aveloxis.queue_health()",
        )
        .fetch_all(&mut self.conn)
        .await
        .map_err(|e| AgentError::sql("aveloxis.queue_health()", e))?;
        Ok(rows
            .iter()
            .map(|r| QueueHealth {
                phase: r.get("phase"),
                jobs: r.get("jobs"),
                due: r.get("due"),
                leased: r.get("leased"),
                backing_off: r.get("backing_off"),
                sidelined: r.get("sidelined"),
                oldest_due_age: r.get("oldest_due_age"),
                failures_last_day: r.get("failures_last_day"),
            })
            .collect())
    }

    /// The session, for read-only reports that print what a SQL function answers.
    pub(crate) fn connection(&mut self) -> &mut PgConnection {
        &mut self.conn
    }

    /// Registers a repository (`aveloxis.add_repo`); returns its repo_id.
    pub async fn add_repo(&mut self, url: &str, group: &str) -> Result<i64, AgentError> {
        sqlx::query_scalar("SELECT aveloxis.add_repo($1, $2)")
            .bind(url)
            .bind(group)
            .fetch_one(&mut self.conn)
            .await
            .map_err(|e| AgentError::sql(format!("adding {url}"), e))
    }

    pub async fn close(self) {
        let _ = self.conn.close().await;
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryCounts {
    pub repo_groups: i64,
    pub repos: i64,
    pub github_repos: i64,
    pub gitlab_repos: i64,
    pub git_repos: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueHealth {
    pub phase: String,
    pub jobs: i64,
    pub due: i64,
    pub leased: i64,
    pub backing_off: i64,
    pub sidelined: i64,
    pub oldest_due_age: String,
    pub failures_last_day: i64,
}

/// A pool of `connections` to the database `api` already reached.
pub async fn connect_pool(api: &Api, database_url: &str, connections: u32) -> Result<sqlx::PgPool, AgentError> {
    let options = crate::db::session_options(database_url).map_err(|e| AgentError::Unreachable {
        target: api.target.clone(),
        message: e.to_string(),
    })?;
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(connections)
        // A database that went away makes calls fail within this (and then be retried),
        // so a stop signal is not held up for long.
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(|e| AgentError::Unreachable {
            target: api.target.clone(),
            message: e.to_string(),
        })
}

/// Runs `connect` until it succeeds, fails otherwise than by an unreachable PostgreSQL, or
/// `wait` has passed (zero: one attempt); each retry is logged with the error and the wait.
pub async fn waiting_for_the_database<T, F, Fut>(
    wait: std::time::Duration,
    mut backoff: Backoff,
    mut connect: F,
) -> Result<T, AgentError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, AgentError>>,
{
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match connect().await {
            Err(AgentError::Unreachable { target, message }) if tokio::time::Instant::now() < deadline => {
                let next = backoff
                    .next_delay()
                    .min(deadline.saturating_duration_since(tokio::time::Instant::now()));
                tracing::warn!(
                    "cannot connect to PostgreSQL at {target}: {message}; trying again in {:.1} s",
                    next.as_secs_f64()
                );
                tokio::time::sleep(next).await;
            }
            other => return other,
        }
    }
}
