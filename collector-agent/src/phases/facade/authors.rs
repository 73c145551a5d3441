//! Commit-author resolution (R12): which contributor wrote each commit. The steps run
//! in this order and stop at the first hit; the free ones first:
//!
//! 1. this job's cache (an email seen before in the job);
//! 2. noreply addresses, which name the account (`id+login@users.noreply.github.com`,
//!    `login@users.noreply.github.com`, `id-login@users.noreply.<gitlab host>`);
//! 3. bot and junk addresses are skipped (recorded, with a long cooldown);
//! 4. the database (contributors' emails and aliases);
//! 5. GitHub's commit by SHA (`GET /repos/{o}/{r}/commits/{sha}`: its `author`);
//! 6. GitHub's user search by email;
//! 7. GitHub's commit search by author email.
//!
//! Steps 2-4 are the shared email chain's free steps, answered by the database for a whole
//! round of emails at once (`aveloxis.email_chain`: the one place that parses noreply and
//! junk addresses); 6-7 are its API tail, shared with search-resolve
//! ([`crate::phases::identity::search_email`]).
//!
//! Hits are recorded with `aveloxis.record_commit_author` / `link_commit_author`
//! (contributor with its deterministic id, alias, back-filled commits); misses with
//! `aveloxis.record_commit_author_misses` (a round's together), so they wait out a cooldown instead of costing
//! quota every run. The HTTP steps spend tokens through the shared budgets (core for the
//! commit, search for the searches).

use std::collections::{BTreeMap, HashMap, HashSet};

use sqlx::{PgPool, Row};

use crate::forge::{Fetched, Forge, ForgeError, Request};
use crate::phases::identity;

/// Which step resolved (or gave up on) an email.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    Cache,
    Noreply,
    Skipped,
    Database,
    CommitApi,
    UserSearch,
    CommitSearch,
    NotFound,
    /// The HTTP steps should have run but could not (no tokens, or they stopped this run):
    /// nothing is recorded, the email is tried again next run.
    Deferred,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Self::Cache => "cache",
            Self::Noreply => "noreply",
            Self::Skipped => "skipped",
            Self::Database => "database",
            Self::CommitApi => "commit_api",
            Self::UserSearch => "user_search",
            Self::CommitSearch => "commit_search",
            Self::NotFound => "not_found",
            Self::Deferred => "deferred",
        }
    }
}

/// An account a step found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    Account {
        platform: i16,
        user_id: Option<i64>,
        login: String,
    },
    /// A contributor the database already knows, by its id as text (the agent never
    /// computes contributor ids).
    Contributor(String),
}

/// What one resolution pass did.
#[derive(Debug, Default)]
pub struct Resolution {
    /// Emails by the step that settled them.
    pub by_step: BTreeMap<&'static str, usize>,
    /// Commit rows now pointing at a contributor.
    pub commits_linked: i64,
    /// API requests spent.
    pub requests: usize,
    /// Why the API steps stopped early (tokens exhausted, repeated rejections), if they did.
    pub stopped: Option<String>,
    /// (email, step) in the order they were settled: what tests and logs read.
    pub trail: Vec<(String, Step)>,
}

/// Where the commits live on the forge, for the HTTP steps.
pub struct ForgeRepo<'a, F: Forge> {
    pub forge: &'a F,
    pub owner: String,
    pub name: String,
}

/// API rejections (422) in a row after which the HTTP steps stop for this run.
const MAX_CONSECUTIVE_REJECTIONS: usize = 50;

/// What the database's free steps said of an email (`aveloxis.email_chain`).
#[derive(Clone, Debug)]
struct ChainAnswer {
    step: String,
    reason: Option<String>,
    cntrb_id: Option<String>,
    platform_kind: Option<i16>,
    user_id: Option<i64>,
    login: Option<String>,
}

/// Resolves the authors of the unresolved commits of the repository whose facade lease
/// `lease_token` proves. Errors are the database's;
/// a forge failure stops the HTTP steps (recorded in `stopped`), never the job.
/// `forge_expected`: the repository is on a forge whose HTTP steps should run (GitHub);
/// when they cannot (`forge` is None: no tokens; or they stopped), emails the free steps
/// did not resolve are deferred to a later run instead of being recorded as misses.
pub async fn resolve<F: Forge>(
    db: &PgPool,
    lease_token: uuid::Uuid,
    forge: Option<ForgeRepo<'_, F>>,
    forge_expected: bool,
) -> Result<Resolution, sqlx::Error> {
    let mut out = Resolution::default();
    let mut cache: HashMap<String, Found> = HashMap::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut api_open = forge.is_some();
    let mut rejections = 0usize;
    // Each round takes emails still unresolved and not cooling down and settles each
    // (hit, recorded miss, or deferred); emails seen before in this run are passed over,
    // and a round with nothing new ends the loop.
    loop {
        let rows =
            sqlx::query("SELECT email, raw_email, name, sample_hash FROM aveloxis.commit_authors_to_resolve($1, 500)")
                .bind(lease_token)
                .fetch_all(db)
                .await?;
        if rows.is_empty() {
            break;
        }
        // The database step for the round's new emails, in one call (a round trip per
        // email was most of a large history's resolution time; `one_email` uses the
        // answer only where the chain reaches that step); misses are recorded together
        // at the end of the round.
        let to_look_up: Vec<String> = rows
            .iter()
            .map(|row| row.get::<String, _>("email"))
            .filter(|email| !seen.contains(email) && !cache.contains_key(email))
            .collect();
        let mut known: HashMap<String, ChainAnswer> = HashMap::new();
        if !to_look_up.is_empty() {
            for found in sqlx::query(
                "SELECT email, step, reason, cntrb_id::text AS cntrb_id, platform_kind, user_id, login
                 FROM aveloxis.email_chain($1)",
            )
            .bind(&to_look_up)
            .fetch_all(db)
            .await?
            {
                known.insert(
                    found.get("email"),
                    ChainAnswer {
                        step: found.get("step"),
                        reason: found.get("reason"),
                        cntrb_id: found.get("cntrb_id"),
                        platform_kind: found.get("platform_kind"),
                        user_id: found.get("user_id"),
                        login: found.get("login"),
                    },
                );
            }
        }
        let mut misses = Misses::default();
        let mut settled_any = false;
        for row in &rows {
            let email: String = row.get("email");
            if !seen.insert(email.clone()) {
                continue;
            }
            let name: Option<String> = row.get("name");
            let sample_hash: String = row.get("sample_hash");
            let (step, found) = match cache.get(&email) {
                Some(found) => (Step::Cache, Some(found.clone())),
                None => {
                    let http_runs = api_open && forge.is_some();
                    let (step, found) = one_email(
                        &email,
                        known.get(&email),
                        &sample_hash,
                        forge.as_ref().filter(|_| api_open),
                        &mut out,
                        &mut rejections,
                    )
                    .await;
                    if rejections >= MAX_CONSECUTIVE_REJECTIONS && api_open {
                        api_open = false;
                        out.stopped = Some(format!("{rejections} API rejections in a row"));
                    }
                    if let Err(stop) = &step {
                        api_open = false;
                        out.stopped = Some(stop.to_string());
                    }
                    match step {
                        Ok(Step::NotFound) if !http_runs && forge_expected => (Step::Deferred, None),
                        Ok(step) => (step, found),
                        // The API stopped before this email was settled: it stays for next run.
                        Err(_) => (Step::Deferred, None),
                    }
                }
            };
            settled_any = true;
            match (&found, step) {
                (Some(found), _) => {
                    cache.insert(email.clone(), found.clone());
                    out.commits_linked += record_hit(db, lease_token, &email, name.as_deref(), found, step).await?;
                }
                (None, Step::Deferred) => {}
                (None, Step::Skipped) => {
                    let reason = known.get(&email).and_then(|a| a.reason.clone());
                    misses.push(&email, "skipped", reason.unwrap_or_else(|| "skipped".into()), name);
                }
                (None, _) => {
                    let reason = if forge.is_some() {
                        "no account found by the database, the commit, the user search or the commit search"
                    } else {
                        "no account found in the database, and no forge to ask (git-only repository)"
                    };
                    misses.push(&email, "not_found", reason.into(), name);
                }
            }
            *out.by_step.entry(step.name()).or_default() += 1;
            out.trail.push((email, step));
        }
        misses.record(db).await?;
        if !settled_any {
            break;
        }
    }
    Ok(out)
}

/// A round's misses, recorded in one call (`aveloxis.record_commit_author_misses`).
#[derive(Default)]
struct Misses {
    emails: Vec<String>,
    outcomes: Vec<&'static str>,
    reasons: Vec<String>,
    names: Vec<Option<String>>,
}

impl Misses {
    fn push(&mut self, email: &str, outcome: &'static str, reason: String, name: Option<String>) {
        self.emails.push(email.to_string());
        self.outcomes.push(outcome);
        self.reasons.push(reason);
        self.names.push(name);
    }

    async fn record(self, db: &PgPool) -> Result<(), sqlx::Error> {
        if self.emails.is_empty() {
            return Ok(());
        }
        sqlx::query("SELECT aveloxis.record_commit_author_misses($1, $2, $3, $4)")
            .bind(&self.emails)
            .bind(&self.outcomes)
            .bind(&self.reasons)
            .bind(&self.names)
            .execute(db)
            .await?;
        Ok(())
    }
}

/// The steps after the cache for one email (`known`: the database's free steps, asked
/// for the whole round beforehand). `Err` when the HTTP steps had to stop before settling it.
async fn one_email<F: Forge>(
    email: &str,
    known: Option<&ChainAnswer>,
    sample_hash: &str,
    forge: Option<&ForgeRepo<'_, F>>,
    out: &mut Resolution,
    rejections: &mut usize,
) -> (Result<Step, ForgeError>, Option<Found>) {
    match known {
        Some(a) if a.step == "noreply" => {
            if let (Some(platform), Some(login)) = (a.platform_kind, a.login.clone()) {
                return (
                    Ok(Step::Noreply),
                    Some(Found::Account {
                        platform,
                        user_id: a.user_id,
                        login,
                    }),
                );
            }
        }
        Some(a) if a.step == "skipped" => return (Ok(Step::Skipped), None),
        Some(a) if a.step == "database" => {
            if let Some(id) = &a.cntrb_id {
                return (Ok(Step::Database), Some(Found::Contributor(id.clone())));
            }
        }
        _ => {}
    }
    let Some(repo) = forge else {
        return (Ok(Step::NotFound), None);
    };
    // The commit-specific step first: the SHA is a stronger signal than the email.
    out.requests += 1;
    let path = format!("repos/{}/{}/commits/{sample_hash}", repo.owner, repo.name);
    match repo.forge.fetch(&Request::new(path)).await {
        Ok(Fetched::Page { body, .. }) => {
            *rejections = 0;
            if let Some((user_id, login)) = identity::account_in(body.get("author")) {
                return (
                    Ok(Step::CommitApi),
                    Some(Found::Account {
                        platform: 1,
                        user_id: Some(user_id),
                        login,
                    }),
                );
            }
        }
        Ok(Fetched::NotModified) => {}
        Err(e) => match identity::skippable(&e, rejections) {
            true => {}
            false => return (Err(e), None),
        },
    }
    // Then the shared API tail: user search, commit search.
    let answers = match identity::search_email(repo.forge, email, rejections).await {
        Ok(answers) => answers,
        Err(stop) => return (Err(stop), None),
    };
    out.requests += answers.len();
    match answers
        .into_iter()
        .find_map(|a| a.account.map(|account| (a.step, account)))
    {
        Some((step, (user_id, login))) => (
            Ok(if step == "user_search" {
                Step::UserSearch
            } else {
                Step::CommitSearch
            }),
            Some(Found::Account {
                platform: 1,
                user_id: Some(user_id),
                login,
            }),
        ),
        None => (Ok(Step::NotFound), None),
    }
}

async fn record_hit(
    db: &PgPool,
    lease_token: uuid::Uuid,
    email: &str,
    name: Option<&str>,
    found: &Found,
    step: Step,
) -> Result<i64, sqlx::Error> {
    let row = match found {
        Found::Account {
            platform,
            user_id,
            login,
        } => {
            sqlx::query("SELECT commits_linked FROM aveloxis.record_commit_author($1, $2, $3, $4, $5, $6, $7)")
                .bind(lease_token)
                .bind(email)
                .bind(platform)
                .bind(user_id)
                .bind(login)
                .bind(name)
                .bind(format!("commit author ({})", step.name()))
                .fetch_one(db)
                .await?
        }
        Found::Contributor(id) => {
            sqlx::query("SELECT aveloxis.link_commit_author($1, $2, $3::uuid) AS commits_linked")
                .bind(lease_token)
                .bind(email)
                .bind(id)
                .fetch_one(db)
                .await?
        }
    };
    Ok(row.get("commits_linked"))
}
