//! Errors the agent reports to operators, each with what to do next and an exit code.

use std::fmt;

#[derive(Debug)]
pub enum AgentError {
    /// No database URL in the flags, the environment or the config file.
    NoDatabase,
    /// The config file could not be read or parsed.
    Config { path: String, message: String },
    /// A setting is missing or wrong (not the config file's syntax).
    Setting { name: String, message: String },
    /// PostgreSQL could not be reached or refused the login.
    Unreachable { target: String, message: String },
    /// The database answers but `CREATE EXTENSION pg_aveloxis` has not been run.
    ExtensionMissing { target: String },
    /// A SQL API call failed (bad input, permissions, ...); the message is PostgreSQL's.
    Sql {
        context: String,
        message: String,
        hint: Option<String>,
    },
}

impl AgentError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::NoDatabase | Self::Config { .. } | Self::Setting { .. } => 2,
            Self::Unreachable { .. } => 3,
            Self::ExtensionMissing { .. } => 4,
            Self::Sql { .. } => 1,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            Self::NoDatabase => Some(
                "set DATABASE_URL=postgres://user@host:port/db, pass --database-url, or put database_url in the \
                 config file (--config)"
                    .into(),
            ),
            Self::Config { .. } => Some("the config file is TOML, e.g. database_url = \"postgres://...\"".into()),
            Self::Setting { name, .. } => Some(format!(
                "set {name} with its flag, its environment variable, or in the config file (docs/agent.md, Configuration)"
            )),
            Self::Unreachable { .. } => {
                Some("is PostgreSQL running there, and are DATABASE_URL's host, port, user and password right?".into())
            }
            Self::ExtensionMissing { .. } => {
                Some("as a superuser, run CREATE EXTENSION pg_aveloxis; in that database (docs/operations.md)".into())
            }
            Self::Sql { hint, .. } => hint.clone(),
        }
    }

    /// Wraps a sqlx error from an API call, keeping PostgreSQL's message and hint.
    pub fn sql(context: impl Into<String>, e: sqlx::Error) -> Self {
        let (message, hint) = match &e {
            sqlx::Error::Database(db) => {
                let hint = db
                    .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .and_then(|pg| pg.hint().map(str::to_string));
                (db.message().to_string(), hint)
            }
            other => (other.to_string(), None),
        };
        Self::Sql {
            context: context.into(),
            message,
            hint,
        }
    }
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoDatabase => write!(f, "no database configured"),
            Self::Setting { name, message } => write!(f, "{name}: {message}"),
            Self::Config { path, message } => {
                write!(f, "cannot read config file {path}: {message}")
            }
            Self::Unreachable { target, message } => {
                write!(f, "cannot connect to PostgreSQL at {target}: {message}")
            }
            Self::ExtensionMissing { target } => {
                write!(
                    f,
                    "the database {target} is reachable but the pg_aveloxis extension is not installed in it"
                )
            }
            Self::Sql { context, message, .. } => write!(f, "{context}: {message}"),
        }
    }
}

impl std::error::Error for AgentError {}
