//! Commit-author resolution (R12): which contributor wrote each commit. The steps run
//! in this order and stop at the first hit; the free ones first:
//!
//! 1. this job's cache (an email seen before in the job);
//! 2. noreply addresses, which name the account (`id+login@users.noreply.github.com`,
//!    `login@users.noreply.github.com`, `id-login@users.noreply.gitlab.com`);
//! 3. bot and junk addresses are skipped (recorded, with a long cooldown);
//! 4. the database (`aveloxis.resolve_email`: contributors' emails and aliases; asked
//!    for a whole round of emails at once with `aveloxis.resolve_emails`);
//! 5. GitHub's commit by SHA (`GET /repos/{o}/{r}/commits/{sha}`: its `author`);
//! 6. GitHub's user search by email;
//! 7. GitHub's commit search by author email.
//!
//! Hits are recorded with `aveloxis.record_commit_author` / `link_commit_author`
//! (contributor with its deterministic id, alias, back-filled commits); misses with
//! `aveloxis.record_commit_author_misses` (a round's together), so they wait out a cooldown instead of costing
//! quota every run. The HTTP steps spend tokens through the shared budgets (core for the
//! commit, search for the searches).

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;
use sqlx::{PgPool, Row};

use crate::forge::{Fetched, Forge, ForgeError, Request};

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

/// A noreply address's account: GitHub's `[id+]login@users.noreply.github.com`, GitLab's
/// `id-login@users.noreply.gitlab.com`, and a self-managed GitLab's
/// `id-login@users.noreply.<host>` when `gitlab_host` is the repository's own GitLab host
/// (the database then files the account under that host's identity platform).
pub fn parse_noreply(email: &str, gitlab_host: Option<&str>) -> Option<(i16, Option<i64>, String)> {
    let email = email.trim().to_ascii_lowercase();
    let valid_login = |l: &str| {
        !l.is_empty()
            && l.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && l.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    };
    if let Some(local) = email.strip_suffix("@users.noreply.github.com") {
        return match local.split_once('+') {
            Some((id, login)) => {
                let id = id.parse::<i64>().ok().filter(|id| *id > 0)?;
                valid_login(login).then(|| (1, Some(id), login.to_string()))
            }
            None => valid_login(local).then(|| (1, None, local.to_string())),
        };
    }
    let own = gitlab_host.map(|h| format!("@users.noreply.{}", h.to_ascii_lowercase()));
    let gitlab_local = email
        .strip_suffix("@users.noreply.gitlab.com")
        .or_else(|| own.as_deref().and_then(|own| email.strip_suffix(own)));
    if let Some(local) = gitlab_local {
        let (id, login) = local.split_once('-')?;
        let id = id.parse::<i64>().ok().filter(|id| *id > 0)?;
        return valid_login(login).then(|| (2, Some(id), login.to_string()));
    }
    None
}

/// Why an address is never looked up (bots, services, no address at all), or None.
pub fn junk_reason(email: &str) -> Option<&'static str> {
    let email = email.trim().to_ascii_lowercase();
    if email.is_empty() {
        Some("empty email")
    } else if !email.contains('@') {
        Some("not an email address")
    } else if email.contains("[bot]") {
        Some("a bot account")
    } else if email.contains("noreply") && !email.contains("users.noreply.") {
        Some("a service's noreply address")
    } else if email.ends_with("@github.com") || email.ends_with("@localhost") || email.ends_with(".localdomain") {
        Some("a service or machine address")
    } else {
        None
    }
}

/// Where the commits live on the forge, for the HTTP steps.
pub struct ForgeRepo<'a, F: Forge> {
    pub forge: &'a F,
    pub owner: String,
    pub name: String,
}

/// Where a step's answer names the account.
type AccountIn = fn(&Value) -> Option<&Value>;

/// API rejections (422) in a row after which the HTTP steps stop for this run.
const MAX_CONSECUTIVE_REJECTIONS: usize = 50;

/// Resolves the authors of the unresolved commits of the repository whose facade lease
/// `lease_token` proves. Errors are the database's;
/// a forge failure stops the HTTP steps (recorded in `stopped`), never the job.
/// `forge_expected`: the repository is on a forge whose HTTP steps should run (GitHub);
/// when they cannot (`forge` is None: no tokens; or they stopped), emails the free steps
/// did not resolve are deferred to a later run instead of being recorded as misses.
pub async fn resolve<F: Forge>(
    db: &PgPool,
    lease_token: uuid::Uuid,
    gitlab_host: Option<&str>,
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
        let mut known: HashMap<String, String> = HashMap::new();
        if !to_look_up.is_empty() {
            for found in sqlx::query("SELECT email, cntrb_id::text AS cntrb_id FROM aveloxis.resolve_emails($1)")
                .bind(&to_look_up)
                .fetch_all(db)
                .await?
            {
                if let Some(id) = found.get::<Option<String>, _>("cntrb_id") {
                    known.insert(found.get("email"), id);
                }
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
                        gitlab_host,
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
                    let reason = junk_reason(&email).unwrap_or("skipped");
                    misses.push(&email, "skipped", reason, name);
                }
                (None, _) => {
                    let reason = if forge.is_some() {
                        "no account found by the database, the commit, the user search or the commit search"
                    } else {
                        "no account found in the database, and no forge to ask (git-only repository)"
                    };
                    misses.push(&email, "not_found", reason, name);
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
    reasons: Vec<&'static str>,
    names: Vec<Option<String>>,
}

impl Misses {
    fn push(&mut self, email: &str, outcome: &'static str, reason: &'static str, name: Option<String>) {
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

/// The steps after the cache for one email (`known`: the database step's answer, asked
/// for the whole round beforehand). `Err` when the HTTP steps had to stop before settling it.
async fn one_email<F: Forge>(
    gitlab_host: Option<&str>,
    email: &str,
    known: Option<&String>,
    sample_hash: &str,
    forge: Option<&ForgeRepo<'_, F>>,
    out: &mut Resolution,
    rejections: &mut usize,
) -> (Result<Step, ForgeError>, Option<Found>) {
    if let Some((platform, user_id, login)) = parse_noreply(email, gitlab_host) {
        return (
            Ok(Step::Noreply),
            Some(Found::Account {
                platform,
                user_id,
                login,
            }),
        );
    }
    if junk_reason(email).is_some() {
        return (Ok(Step::Skipped), None);
    }
    if let Some(id) = known {
        return (Ok(Step::Database), Some(Found::Contributor(id.clone())));
    }
    let Some(repo) = forge else {
        return (Ok(Step::NotFound), None);
    };
    let query = |q: &str| url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>();
    let attempts: [(Step, String, AccountIn); 3] = [
        (
            Step::CommitApi,
            format!("repos/{}/{}/commits/{sample_hash}", repo.owner, repo.name),
            |body| body.get("author"),
        ),
        (
            Step::UserSearch,
            format!("search/users?q={}&per_page=1", query(&format!("{email} in:email"))),
            |body| body.get("items").and_then(|i| i.get(0)),
        ),
        (
            Step::CommitSearch,
            format!(
                "search/commits?q={}&per_page=1",
                query(&format!("author-email:{email}"))
            ),
            |body| body.get("items").and_then(|i| i.get(0)).and_then(|c| c.get("author")),
        ),
    ];
    for (step, path, account_of) in attempts {
        out.requests += 1;
        match repo.forge.fetch(&Request::new(path)).await {
            Ok(Fetched::Page { body, .. }) => {
                *rejections = 0;
                let account = account_of(&body).filter(|a| a.is_object());
                let id = account
                    .and_then(|a| a.get("id"))
                    .and_then(Value::as_i64)
                    .filter(|id| *id > 0);
                let login = account.and_then(|a| a.get("login")).and_then(Value::as_str);
                if let (Some(id), Some(login)) = (id, login) {
                    return (
                        Ok(step),
                        Some(Found::Account {
                            platform: 1,
                            user_id: Some(id),
                            login: login.to_string(),
                        }),
                    );
                }
            }
            Ok(Fetched::NotModified) => {}
            // The commit is not on the forge (or not this repository's), the search
            // found nothing to show: the next step may.
            Err(ForgeError::NotFound { .. })
            | Err(ForgeError::Forbidden { .. })
            | Err(ForgeError::Gone { .. })
            | Err(ForgeError::Redirect { .. }) => *rejections = 0,
            Err(ForgeError::Rejected { .. }) => *rejections += 1,
            Err(stop) => return (Err(stop), None),
        }
    }
    (Ok(Step::NotFound), None)
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

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn noreply_addresses_name_their_account() {
        assert_eq!(
            parse_noreply("12345+Octo-Cat@users.noreply.github.com", None),
            Some((1, Some(12345), "octo-cat".into()))
        );
        assert_eq!(
            parse_noreply("octocat@users.noreply.github.com", None),
            Some((1, None, "octocat".into()))
        );
        assert_eq!(
            parse_noreply("4242-jdoe@users.noreply.gitlab.com", None),
            Some((2, Some(4242), "jdoe".into()))
        );
        for not_one in [
            "0+octocat@users.noreply.github.com",
            "x+octocat@users.noreply.github.com",
            "+octocat@users.noreply.github.com",
            "-octocat@users.noreply.github.com",
            "octocat@github.com",
            "jdoe@users.noreply.gitlab.com",
            "",
        ] {
            assert_eq!(parse_noreply(not_one, None), None, "{not_one}");
        }
        // A self-managed GitLab's addresses, for its own repositories only.
        let own = "7-jdoe@users.noreply.gitlab.example.org";
        assert_eq!(
            parse_noreply(own, Some("gitlab.example.org")),
            Some((2, Some(7), "jdoe".into()))
        );
        assert_eq!(parse_noreply(own, None), None);
        assert_eq!(parse_noreply(own, Some("gitlab.other.org")), None);
    }

    #[test]
    fn bots_and_junk_are_never_looked_up() {
        for (email, why) in [
            ("", "empty email"),
            ("root", "not an email address"),
            ("49699333+dependabot[bot]@users.noreply.github.com", "a bot account"),
            ("noreply@github.com", "a service's noreply address"),
            ("action@github.com", "a service or machine address"),
            ("root@localhost", "a service or machine address"),
        ] {
            assert_eq!(junk_reason(email), Some(why), "{email}");
        }
        assert_eq!(junk_reason("alice@example.org"), None);
        assert_eq!(junk_reason("1+alice@users.noreply.github.com"), None);
    }
}
