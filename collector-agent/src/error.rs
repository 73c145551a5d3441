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
    /// A file the command writes could not be written.
    Output { path: String, message: String },
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
            Self::NoDatabase | Self::Config { .. } | Self::Setting { .. } | Self::Output { .. } => 2,
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
            Self::Output { .. } => Some("write to a directory that exists and that this user may write to".into()),
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
            Self::Output { path, message } => write!(f, "writing {path}: {message}"),
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

/// Whether a database error means the connection is gone or cannot be made (the server is
/// down, restarting, or terminated our backend), rather than a problem with the call:
/// worth trying again once the database is back.
pub fn is_connection_error(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // Class 08 (connection exception); 57P01 admin_shutdown (pg_terminate_backend, a
        // fast shutdown), 57P02 crash_shutdown, 57P03 cannot_connect_now (starting up).
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

/// Bounded exponential backoff: `first`, doubling each time, never more than `max`.
#[derive(Clone, Debug)]
pub struct Backoff {
    first: std::time::Duration,
    max: std::time::Duration,
    next: std::time::Duration,
}

impl Backoff {
    pub fn new(first: std::time::Duration, max: std::time::Duration) -> Self {
        Backoff {
            first,
            max,
            next: first,
        }
    }

    /// Waiting for the database: 0.5 s doubling up to 30 s.
    pub fn database() -> Self {
        Self::new(
            std::time::Duration::from_millis(500),
            std::time::Duration::from_secs(30),
        )
    }

    /// The next wait.
    pub fn next_delay(&mut self) -> std::time::Duration {
        let wait = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        wait
    }

    /// After a success: the next failure waits `first` again.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod unit_tests {
    use std::borrow::Cow;
    use std::time::Duration;

    use super::*;

    /// A server error with a SQLSTATE, as PostgreSQL would send it.
    #[derive(Debug)]
    struct ServerError(&'static str);

    impl fmt::Display for ServerError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "SQLSTATE {}", self.0)
        }
    }

    impl std::error::Error for ServerError {}

    impl sqlx::error::DatabaseError for ServerError {
        fn message(&self) -> &str {
            "server error"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn server(code: &'static str) -> sqlx::Error {
        sqlx::Error::Database(Box::new(ServerError(code)))
    }

    #[test]
    fn connection_errors_are_told_from_errors_of_the_call() {
        let lost = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed");
        for e in [
            sqlx::Error::Io(lost),
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            server("08006"),
            server("08001"),
            server("57P01"),
            server("57P02"),
            server("57P03"),
        ] {
            assert!(is_connection_error(&e), "{e}");
        }
        for e in [
            server("42501"),
            server("55P03"),
            server("23505"),
            server("57014"),
            sqlx::Error::RowNotFound,
        ] {
            assert!(!is_connection_error(&e), "{e}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_bound_and_starts_over() {
        let mut b = Backoff::database();
        let waits: Vec<f64> = (0..9).map(|_| b.next_delay().as_secs_f64()).collect();
        assert_eq!(waits, [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(500));
    }
}
