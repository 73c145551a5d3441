//! Identity runs (docs/identity.md, "Enrichment and search-resolve"): the fleet-wide
//! convergence work of reference 003, Layer 3. The database decides who is due
//! (`aveloxis.claim_identity_batch`: cooldowns, batch sizes, pacing), settles what needs no
//! API (noreply addresses, emails another row already has) and applies what the forge said
//! (`complete_identity_batch`: renames, links, logged merges). This module only asks the
//! forge and stages its answers raw:
//!
//! - enrich: a thin contributor's profile, `GET /users/{login}` on GitHub (then
//!   `GET /user/{id}` when the login is gone: a rename), `GET /users/:id` on GitLab;
//! - search: the API tail of the shared email chain ([`search_email`]), which commit-author
//!   resolution uses too: GitHub's user search by email, then its commit search by author
//!   email, on the search budget (a spent budget is waited out, not failed).
//!
//! A run stops asking at the first error that is not about one account (no token, the
//! forge unreachable after retries); the contributors it did not reach are left unstamped
//! and stay due.

use serde_json::Value;
use sqlx::{PgPool, Row};

use crate::forge::{Fetched, Forge, ForgeError, Request};

/// The account a forge object names: a positive numeric `id` and a `login` (GitHub) or
/// `username` (GitLab).
pub fn account_in(v: Option<&Value>) -> Option<(i64, String)> {
    let v = v.filter(|v| v.is_object())?;
    let id = v.get("id").and_then(Value::as_i64).filter(|id| *id > 0)?;
    let login = v.get("login").or_else(|| v.get("username")).and_then(Value::as_str)?;
    Some((id, login.to_string()))
}

/// Whether a failed request is about this one thing (the next step, or the next account,
/// may still be asked) rather than a reason to stop. Counts 422s in a row in `rejections`.
pub fn skippable(e: &ForgeError, rejections: &mut usize) -> bool {
    match e {
        ForgeError::NotFound { .. }
        | ForgeError::Forbidden { .. }
        | ForgeError::Gone { .. }
        | ForgeError::Redirect { .. }
        | ForgeError::RepositoryGone { .. } => {
            *rejections = 0;
            true
        }
        ForgeError::Rejected { .. } => {
            *rejections += 1;
            true
        }
        _ => false,
    }
}

/// The HTTP status a skippable error stands for, as staged.
fn status_of(e: &ForgeError) -> i32 {
    match e {
        ForgeError::NotFound { .. } => 404,
        ForgeError::Forbidden { .. } => 403,
        ForgeError::Gone { .. } => 410,
        ForgeError::RepositoryGone { status, .. } => i32::from(*status),
        ForgeError::Rejected { status, .. } if *status >= 100 => i32::from(*status),
        _ => 400,
    }
}

/// One answer of the email chain's API tail.
#[derive(Debug)]
pub struct SearchAnswer {
    /// `user_search` or `commit_search`.
    pub step: &'static str,
    pub status: i32,
    pub body: Option<Value>,
    /// The account the answer names, if any.
    pub account: Option<(i64, String)>,
}

/// The shared email chain's API tail on GitHub: the user search by email (public profile
/// emails), then the commit search by author email (anyone who authored a public commit
/// with it); stops at the first answer naming an account. `Err` when asking had to stop
/// (no token, the forge unreachable): the email was not settled.
pub async fn search_email<F: Forge>(
    forge: &F,
    email: &str,
    rejections: &mut usize,
) -> Result<Vec<SearchAnswer>, ForgeError> {
    let query = |q: &str| url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>();
    let steps: [(&'static str, String); 2] = [
        (
            "user_search",
            format!("search/users?q={}&per_page=1", query(&format!("{email} in:email"))),
        ),
        (
            "commit_search",
            format!(
                "search/commits?q={}&per_page=1",
                query(&format!("author-email:{email}"))
            ),
        ),
    ];
    let mut answers = Vec::new();
    for (step, path) in steps {
        let answer = match forge.fetch(&Request::new(path)).await {
            Ok(Fetched::Page { body, .. }) => {
                *rejections = 0;
                let first = body.get("items").and_then(|items| items.get(0));
                let account = match step {
                    "user_search" => account_in(first),
                    _ => account_in(first.and_then(|commit| commit.get("author"))),
                };
                SearchAnswer {
                    step,
                    status: 200,
                    body: Some(body),
                    account,
                }
            }
            Ok(Fetched::NotModified) => SearchAnswer {
                step,
                status: 304,
                body: None,
                account: None,
            },
            Err(e) if skippable(&e, rejections) => SearchAnswer {
                step,
                status: status_of(&e),
                body: None,
                account: None,
            },
            Err(stop) => return Err(stop),
        };
        let found = answer.account.is_some();
        answers.push(answer);
        if found {
            break;
        }
    }
    Ok(answers)
}

/// What one identity run did.
#[derive(Debug, Default)]
pub struct IdentityRun {
    pub task: String,
    pub platform_id: i16,
    /// Contributors handed out.
    pub batch: usize,
    /// API requests made.
    pub requests: usize,
    /// What the database applied (`complete_identity_batch`'s answer).
    pub summary: Option<Value>,
    /// Why the run stopped asking early, if it did.
    pub stopped: Option<String>,
}

impl IdentityRun {
    pub fn line(&self) -> String {
        format!(
            "{} on platform {}: {} contributors, {} requests{}; {}",
            self.task,
            self.platform_id,
            self.batch,
            self.requests,
            self.stopped
                .as_ref()
                .map(|s| format!(" (stopped early: {s})"))
                .unwrap_or_default(),
            self.summary.as_ref().map(Value::to_string).unwrap_or_default()
        )
    }
}

/// A contributor of a claimed batch.
struct Claimed {
    cntrb_id: uuid::Uuid,
    user_id: Option<i64>,
    login: Option<String>,
    email: Option<String>,
    chain_step: Option<String>,
}

/// Answers waiting to be staged, sent in groups.
#[derive(Default)]
struct Staged {
    cntrb_ids: Vec<uuid::Uuid>,
    steps: Vec<&'static str>,
    statuses: Vec<i32>,
    payloads: Vec<Option<String>>,
}

impl Staged {
    fn push(&mut self, cntrb_id: uuid::Uuid, step: &'static str, status: i32, body: Option<&Value>) {
        self.cntrb_ids.push(cntrb_id);
        self.steps.push(step);
        self.statuses.push(status);
        self.payloads.push(body.map(Value::to_string));
    }

    async fn flush(&mut self, db: &PgPool, token: uuid::Uuid) -> Result<(), sqlx::Error> {
        if self.cntrb_ids.is_empty() {
            return Ok(());
        }
        sqlx::query("SELECT aveloxis.stage_identity($1, $2, $3, $4, $5)")
            .bind(token)
            .bind(&self.cntrb_ids)
            .bind(&self.steps)
            .bind(&self.statuses)
            .bind(&self.payloads)
            .execute(db)
            .await?;
        *self = Staged::default();
        Ok(())
    }
}

/// Answers staged per call.
const STAGE_EVERY: usize = 100;

/// Claims one batch of `task` ("enrich" or "search") on an identity platform of `kind`
/// (1 GitHub, 2 GitLab) and works it with `forge` (that platform's host's client).
/// `Ok(None)`: nothing was due.
pub async fn run_batch<F: Forge>(
    db: &PgPool,
    agent: &str,
    task: &str,
    platform_id: i16,
    kind: i16,
    forge: &F,
    max: Option<i32>,
) -> Result<Option<IdentityRun>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT lease_token, cntrb_id, platform_user_id, login, email, chain_step
         FROM aveloxis.claim_identity_batch($1, $2, $3, $4)",
    )
    .bind(agent)
    .bind(task)
    .bind(platform_id)
    .bind(max)
    .fetch_all(db)
    .await?;
    let Some(token) = rows.first().map(|r| r.get::<uuid::Uuid, _>("lease_token")) else {
        return Ok(None);
    };
    let batch: Vec<Claimed> = rows
        .iter()
        .map(|r| Claimed {
            cntrb_id: r.get("cntrb_id"),
            user_id: r.get("platform_user_id"),
            login: r.get("login"),
            email: r.get("email"),
            chain_step: r.get("chain_step"),
        })
        .collect();
    let mut run = IdentityRun {
        task: task.to_string(),
        platform_id,
        batch: batch.len(),
        ..Default::default()
    };
    let mut staged = Staged::default();
    let mut attempted: Vec<uuid::Uuid> = Vec::new();
    let mut rejections = 0usize;
    for c in &batch {
        if run.stopped.is_some() {
            break;
        }
        if task == "enrich" {
            match fetch_profile(forge, kind, c, &mut run.requests, &mut rejections).await {
                Ok((status, body)) => {
                    staged.push(c.cntrb_id, "profile", status, body.as_ref());
                    attempted.push(c.cntrb_id);
                }
                Err(stop) => run.stopped = Some(stop.to_string()),
            }
        } else if c.chain_step.as_deref() != Some("unknown") {
            // Settled by the database at completion (noreply, another row's email).
            attempted.push(c.cntrb_id);
        } else if let Some(email) = &c.email {
            match search_email(forge, email, &mut rejections).await {
                Ok(answers) => {
                    run.requests += answers.len();
                    for a in &answers {
                        staged.push(c.cntrb_id, a.step, a.status, a.body.as_ref());
                    }
                    attempted.push(c.cntrb_id);
                }
                Err(stop) => run.stopped = Some(stop.to_string()),
            }
        }
        if staged.cntrb_ids.len() >= STAGE_EVERY {
            staged.flush(db, token).await?;
        }
    }
    staged.flush(db, token).await?;
    let summary: Value = sqlx::query_scalar("SELECT aveloxis.complete_identity_batch($1, $2)")
        .bind(token)
        .bind(&attempted)
        .fetch_one(db)
        .await?;
    run.summary = Some(summary);
    Ok(Some(run))
}

/// A profile: its status and body (None for a miss). `Err` when asking has to stop.
async fn fetch_profile<F: Forge>(
    forge: &F,
    kind: i16,
    c: &Claimed,
    requests: &mut usize,
    rejections: &mut usize,
) -> Result<(i32, Option<Value>), ForgeError> {
    let mut paths = Vec::new();
    match (kind, &c.login, c.user_id) {
        // GitLab's account is asked by id: ids never change.
        (2, _, Some(id)) => paths.push(format!("users/{id}")),
        (_, Some(login), id) => {
            paths.push(format!(
                "users/{}",
                url::form_urlencoded::byte_serialize(login.as_bytes()).collect::<String>()
            ));
            // The login may have been renamed away since: the account by id.
            if let Some(id) = id {
                paths.push(format!("user/{id}"));
            }
        }
        (_, None, Some(id)) => paths.push(format!("user/{id}")),
        (_, None, None) => return Ok((404, None)),
    }
    let mut last = 404;
    for path in paths {
        *requests += 1;
        match forge.fetch(&Request::new(path)).await {
            Ok(Fetched::Page { body, .. }) => {
                *rejections = 0;
                return Ok((200, Some(body)));
            }
            Ok(Fetched::NotModified) => last = 304,
            Err(ForgeError::NotFound { .. }) | Err(ForgeError::Gone { .. }) => last = 404,
            Err(e) if skippable(&e, rejections) => return Ok((status_of(&e), None)),
            Err(stop) => return Err(stop),
        }
    }
    Ok((last, None))
}
