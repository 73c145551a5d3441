//! Forge tokens: held in memory only, named to the database by a fingerprint, spent
//! through the shared budgets of `aveloxis.token_acquire` / `token_settle` (docs/queue.md).

use std::fmt;
use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::postgres::PgPool;

use super::ForgeError;

/// A token and its fingerprint. `Debug` and `Display` show the fingerprint only.
#[derive(Clone)]
pub struct Token {
    secret: String,
    pub fingerprint: String,
}

impl Token {
    pub fn new(secret: impl Into<String>) -> Self {
        let secret = secret.into();
        let digest = Sha256::digest(secret.as_bytes());
        let fingerprint = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        Token { secret, fingerprint }
    }

    /// The secret, for the Authorization header only.
    pub(crate) fn secret(&self) -> &str {
        &self.secret
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({})", self.fingerprint)
    }
}

/// What the budgets allow now.
#[derive(Debug)]
pub enum Grant {
    Use(Token),
    /// No token can be used before this long.
    Wait(Duration),
}

/// The agent's tokens for one API host, spent through the database's shared budgets.
pub struct TokenPool {
    tokens: Vec<Token>,
    platform: i16,
    /// The shared budgets; None only in unit tests (every token always granted).
    db: Option<PgPool>,
}

impl fmt::Debug for TokenPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenPool")
            .field("tokens", &self.tokens)
            .field("platform", &self.platform)
            .finish()
    }
}

impl TokenPool {
    pub fn new(secrets: impl IntoIterator<Item = String>, platform: i16, db: PgPool) -> Self {
        let tokens = secrets
            .into_iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .map(Token::new)
            .collect();
        TokenPool {
            tokens,
            platform,
            db: Some(db),
        }
    }

    /// Tokens without shared budgets: the first is always granted (unit tests only).
    #[cfg(test)]
    pub(crate) fn unshared(secrets: impl IntoIterator<Item = String>) -> Self {
        TokenPool {
            tokens: secrets.into_iter().map(Token::new).collect(),
            platform: 1,
            db: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The first token's secret: the git password for clones from this API's web host.
    pub(crate) fn first_secret(&self) -> Option<&str> {
        self.tokens.first().map(Token::secret)
    }

    /// A token to spend one request of `bucket` on, or how long to wait.
    pub async fn acquire(&self, bucket: &str) -> Result<Grant, ForgeError> {
        if self.tokens.is_empty() {
            return Err(ForgeError::Auth {
                message: "no tokens configured".into(),
            });
        }
        let Some(db) = &self.db else {
            return Ok(Grant::Use(self.tokens[0].clone()));
        };
        let fingerprints: Vec<&str> = self.tokens.iter().map(|t| t.fingerprint.as_str()).collect();
        let answer: Result<(Option<String>, f64), sqlx::Error> = sqlx::query_as(
            "SELECT fingerprint, extract(epoch FROM wait)::float8 * 1000
             FROM aveloxis.token_acquire($1, $2, 1, $3)",
        )
        .bind(&fingerprints)
        .bind(bucket)
        .bind(self.platform)
        .fetch_one(db)
        .await;
        let (fingerprint, wait_ms) = match answer {
            Ok(answer) => answer,
            // invalid_authorization_specification: every token was invalidated (401s).
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("28000") => {
                return Err(ForgeError::Auth {
                    message: e.message().to_string(),
                })
            }
            Err(e) => return Err(e.into()),
        };
        Ok(
            match fingerprint.and_then(|f| self.tokens.iter().find(|t| t.fingerprint == f)) {
                Some(token) => Grant::Use(token.clone()),
                None => Grant::Wait(Duration::from_millis(wait_ms.max(0.0) as u64)),
            },
        )
    }

    /// Ends a grant whose response reported no budget.
    pub async fn release(&self, token: &Token, bucket: &str) -> Result<(), sqlx::Error> {
        let Some(db) = &self.db else { return Ok(()) };
        sqlx::query("SELECT aveloxis.token_release($1, $2, 1, $3)")
            .bind(&token.fingerprint)
            .bind(bucket)
            .bind(self.platform)
            .execute(db)
            .await?;
        Ok(())
    }

    /// Records a response's rate-limit headers; ends the request's grant.
    pub async fn settle(
        &self,
        token: &Token,
        bucket: &str,
        remaining: i32,
        reset_epoch: i64,
    ) -> Result<(), sqlx::Error> {
        let Some(db) = &self.db else { return Ok(()) };
        sqlx::query("SELECT aveloxis.token_settle($1, $2, $3, to_timestamp($4), 1, $5)")
            .bind(&token.fingerprint)
            .bind(bucket)
            .bind(remaining)
            .bind(reset_epoch as f64)
            .bind(self.platform)
            .execute(db)
            .await?;
        Ok(())
    }

    /// A 401: the token is not offered again.
    pub async fn invalidate(&self, token: &Token, reason: &str) -> Result<(), sqlx::Error> {
        let Some(db) = &self.db else { return Ok(()) };
        sqlx::query("SELECT aveloxis.token_invalidate($1, $2, $3)")
            .bind(&token.fingerprint)
            .bind(reason)
            .bind(self.platform)
            .execute(db)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn fingerprints_are_hex_and_secrets_never_print() {
        let token = Token::new("ghp_16C7e42F292c6912E7710c838347Ae178B4a");
        assert_eq!(token.fingerprint.len(), 32);
        assert!(token
            .fingerprint
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        let shown = format!("{token:?}");
        assert!(!shown.contains("ghp_"), "{shown}");
        assert_ne!(Token::new("a").fingerprint, Token::new("b").fingerprint);
    }
}
