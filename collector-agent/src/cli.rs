//! Command-line interface. Commands are thin: each calls the SQL API and prints.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config;
use crate::db::Api;
use crate::error::{is_connection_error, AgentError, Backoff};

#[derive(Debug, Parser)]
#[command(name = "aveloxis-agent", version, about = "Network and git I/O for pg_aveloxis")]
pub struct Cli {
    /// PostgreSQL URL of the database with pg_aveloxis (overrides the config file).
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,

    /// TOML config file (keys: database_url).
    #[arg(long, env = "AVELOXIS_CONFIG", global = true)]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the extension version and the registry counts.
    Status,
    /// Collect repositories now, one after another, through the same path as `run`
    /// (added first if new): fetch, stage, drain, and report to the queue.
    Collect {
        /// Repository URLs (GitHub, or any git remote) or absolute paths of local git
        /// repositories (git history only, no forge needed).
        #[arg(required = true)]
        urls: Vec<String>,
        /// Phases to run, of those the repository has: collect (forge API data, GitHub
        /// so far) and facade (git history).
        #[arg(long, value_delimiter = ',', default_value = "collect,facade")]
        phases: Vec<String>,
        #[command(flatten)]
        forge: ForgeArgs,
        #[command(flatten)]
        git: GitArgs,
        /// The name this agent gives the queue (shown by why_not_collected()).
        #[arg(long, default_value_t = format!("collect-{}", std::process::id()))]
        agent: String,
    },
    /// Work the queue: `--workers` tasks claim due collect jobs, collect, drain and report,
    /// renewing their leases. SIGTERM or SIGINT: each worker finishes its job (staging,
    /// draining and reporting what it fetched) and stops; nothing stays leased.
    Run {
        /// Phases to claim (default: collect and facade with GitHub tokens, else facade).
        #[arg(long, value_delimiter = ',')]
        phases: Vec<String>,
        #[command(flatten)]
        forge: ForgeArgs,
        #[command(flatten)]
        git: GitArgs,
        /// Concurrent workers.
        #[arg(long, default_value_t = 4)]
        workers: usize,
        /// Seconds between claims while nothing is due.
        #[arg(long, default_value_t = 10)]
        poll_seconds: u64,
        /// Stop once nothing is due (instead of waiting for more).
        #[arg(long)]
        once: bool,
        /// The name this agent gives the queue; workers append /1, /2, ...
        #[arg(long, default_value_t = format!("run-{}", std::process::id()))]
        agent: String,
        /// Seconds to keep trying, at start, while PostgreSQL cannot be reached (once running,
        /// workers wait out any outage).
        #[arg(long, default_value_t = 60)]
        connect_wait: u64,
    },
    /// Register repositories by URL or absolute local path.
    Add {
        /// GitHub/GitLab URLs, git remotes or absolute paths of local git repositories. A
        /// GitHub organization or user (https://github.com/<owner>) adds all its repositories
        /// (needs GITHUB_TOKENS).
        #[arg(required = true)]
        urls: Vec<String>,
        /// Repo group to add them to.
        #[arg(long, default_value = "Default")]
        group: String,
        #[command(flatten)]
        forge: ForgeArgs,
    },
}

/// How to reach GitHub.
#[derive(Debug, clap::Args)]
pub struct ForgeArgs {
    /// GitHub tokens, comma-separated. Never logged or stored: the database sees fingerprints.
    #[arg(long, env = "GITHUB_TOKENS", hide_env_values = true, value_delimiter = ',')]
    pub github_tokens: Vec<String>,
    /// github.com's API root (default https://api.github.com/); GITHUB_TOKENS are sent there
    /// only. GitHub Enterprise hosts get their own tokens: [tokens] in the config file.
    #[arg(long, env = "GITHUB_API_URL", default_value = "")]
    pub github_api_url: String,
    /// Tokens of other GitHub API hosts, by API host (config file `[tokens]` only).
    #[arg(skip)]
    pub host_tokens: std::collections::BTreeMap<String, Vec<String>>,
}

/// Where and how git history is read.
#[derive(Debug, clap::Args)]
pub struct GitArgs {
    /// Directory holding one bare clone per repository (default:
    /// $XDG_CACHE_HOME/aveloxis/clones, else ~/.cache/aveloxis/clones).
    #[arg(long, env = "AVELOXIS_CLONE_DIR")]
    pub clone_dir: Option<PathBuf>,
    /// Threads reading commits (default: one per core).
    #[arg(long)]
    pub walk_threads: Option<usize>,
}

impl GitArgs {
    fn options(&self) -> Result<crate::facade::FacadeOptions, AgentError> {
        let dir = match &self.clone_dir {
            Some(dir) => dir.clone(),
            None => {
                let cache = std::env::var_os("XDG_CACHE_HOME")
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                    .ok_or_else(|| AgentError::Setting {
                        name: "--clone-dir".into(),
                        message: "no clone directory given and neither XDG_CACHE_HOME nor HOME is set".into(),
                    })?;
                cache.join("aveloxis").join("clones")
            }
        };
        let mut options = crate::facade::FacadeOptions::new(dir);
        if let Some(threads) = self.walk_threads {
            options.threads = threads.max(1);
        }
        Ok(options)
    }
}

impl ForgeArgs {
    /// Any GitHub token, for any API host.
    fn has_tokens(&self) -> bool {
        self.github_tokens
            .iter()
            .chain(self.host_tokens.values().flatten())
            .any(|t| !t.trim().is_empty())
    }

    /// Tokens by API host, for [`crate::forge::hosts::GithubHosts`].
    fn token_settings(&self) -> crate::forge::hosts::TokenSettings {
        crate::forge::hosts::TokenSettings {
            github_api_url: self.github_api_url.clone(),
            github_tokens: self.github_tokens.clone(),
            by_api_host: self.host_tokens.clone(),
        }
    }

    /// Flags and environment win; the config file fills what they leave empty, and alone
    /// holds the tokens of other API hosts (`[tokens]`).
    fn with_config(mut self, config_path: Option<&PathBuf>) -> Result<Self, AgentError> {
        let file = match config_path {
            Some(path) => Some(config::ConfigFile::load(path)?),
            None => None,
        };
        if let Some(file) = file {
            if self.github_tokens.iter().all(|t| t.trim().is_empty()) {
                self.github_tokens = file.github_tokens.unwrap_or_default();
            }
            if self.github_api_url.is_empty() {
                self.github_api_url = file.github_api_url.unwrap_or_default();
            }
            self.host_tokens = file.tokens.unwrap_or_default();
        }
        if self.github_api_url.is_empty() {
            self.github_api_url = crate::forge::github::DEFAULT_API_URL.to_string();
        }
        Ok(self)
    }
}

pub async fn run(cli: Cli) -> Result<(), AgentError> {
    let url = config::database_url(cli.database_url, cli.config.as_ref())?;
    // `run` is a service: at start it keeps trying while PostgreSQL cannot be reached
    // (`--connect-wait`); one-shot commands report it at once.
    let connect_wait = match &cli.command {
        Command::Run { connect_wait, .. } => std::time::Duration::from_secs(*connect_wait),
        _ => std::time::Duration::ZERO,
    };
    let mut api = waiting_for_the_database(connect_wait, Backoff::database(), || Api::connect(&url)).await?;
    let config_path = cli.config.clone();
    let result = match cli.command {
        Command::Status => status(&mut api).await,
        Command::Add { urls, group, forge } => match forge.with_config(config_path.as_ref()) {
            Ok(forge) => add(&mut api, &url, &urls, &group, &forge).await,
            Err(e) => Err(e),
        },
        Command::Collect {
            urls,
            phases,
            forge,
            git,
            agent,
        } => match (forge.with_config(config_path.as_ref()), git.options()) {
            (Ok(forge), Ok(git)) => collect(&mut api, &url, &urls, &phases, &forge, git, &agent).await,
            (Err(e), _) | (_, Err(e)) => Err(e),
        },
        Command::Run {
            phases,
            forge,
            git,
            workers,
            poll_seconds,
            once,
            agent,
            connect_wait,
        } => match (forge.with_config(config_path.as_ref()), git.options()) {
            (Ok(forge), Ok(git)) => {
                let settings = RunSettings {
                    workers,
                    poll_seconds,
                    once,
                    connect_wait: std::time::Duration::from_secs(connect_wait),
                };
                run_queue(&api, &url, &phases, &forge, git, settings, &agent).await
            }
            (Err(e), _) | (_, Err(e)) => Err(e),
        },
    };
    api.close().await;
    result
}

async fn status(api: &mut Api) -> Result<(), AgentError> {
    let library = api.library_version().await?;
    let counts = api.registry_counts().await?;
    println!("database      {}", api.target);
    println!("pg_aveloxis   {}", api.extension_version);
    if library != api.extension_version {
        println!(
            "              the loaded library is {library}: run ALTER EXTENSION pg_aveloxis UPDATE; to finish the upgrade"
        );
    }
    println!("repo groups   {}", counts.repo_groups);
    println!(
        "repos         {} (GitHub {}, GitLab {}, git {})",
        counts.repos, counts.github_repos, counts.gitlab_repos, counts.git_repos
    );
    let health = api.queue_health().await?;
    println!();
    println!(
        "{:<13} {:>8} {:>8} {:>7} {:>11} {:>10} {:>16} {:>15}",
        "phase", "jobs", "due", "leased", "backing off", "sidelined", "oldest due", "failures (24h)"
    );
    for h in health {
        println!(
            "{:<13} {:>8} {:>8} {:>7} {:>11} {:>10} {:>16} {:>15}",
            h.phase, h.jobs, h.due, h.leased, h.backing_off, h.sidelined, h.oldest_due_age, h.failures_last_day
        );
    }
    Ok(())
}

/// The owner of a GitHub owner URL (`https://github.com/<owner>`), if that is what it is.
fn github_owner(url: &str, api_url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let host = parsed.host_str()?.to_ascii_lowercase();
    let api_host = url::Url::parse(api_url).ok()?.host_str()?.to_ascii_lowercase();
    let web_host = api_host.strip_prefix("api.").unwrap_or(&api_host).to_string();
    if host != "github.com" && host != "www.github.com" && host != web_host && host != api_host {
        return None;
    }
    let segments: Vec<&str> = parsed.path_segments()?.filter(|s| !s.is_empty()).collect();
    (segments.len() == 1).then(|| segments[0].to_string())
}

/// Every repository URL of a GitHub organization, or else of a user.
async fn owner_repositories(github: &crate::forge::github::GithubClient, owner: &str) -> Result<Vec<String>, String> {
    use crate::forge::{Fetched, Forge, Request};

    for kind in ["orgs", "users"] {
        let mut request = Request::new(format!("{kind}/{owner}/repos?per_page=100&type=all"));
        let mut urls = Vec::new();
        loop {
            match github.fetch(&request).await {
                Ok(Fetched::Page { body, next, .. }) => {
                    urls.extend(
                        body.as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|r| r.get("html_url").and_then(|u| u.as_str()).map(str::to_string)),
                    );
                    match next {
                        Some(next) => request = Request::new(next),
                        None => return Ok(urls),
                    }
                }
                Ok(Fetched::NotModified) => return Ok(urls),
                Err(crate::forge::ForgeError::NotFound { .. }) if kind == "orgs" && urls.is_empty() => break,
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    Err(format!("{owner} is neither a GitHub organization nor a user"))
}

async fn add(
    api: &mut Api,
    database_url: &str,
    urls: &[String],
    group: &str,
    forge: &ForgeArgs,
) -> Result<(), AgentError> {
    // Organizations and users expand to their repositories first.
    let mut expanded = Vec::new();
    let mut failures = Vec::new();
    let mut github = None;
    for url in urls {
        let Some(owner) = github_owner(url, &forge.github_api_url) else {
            expanded.push(url.clone());
            continue;
        };
        if !forge.has_tokens() {
            // add_repo refuses it below with its own message; say how to expand it.
            eprintln!("hint: {url} names an owner: with GITHUB_TOKENS set, add lists and adds its repositories");
            expanded.push(url.clone());
            continue;
        }
        if github.is_none() {
            github = Some(connect_github(api, database_url, forge, 2).await?);
        }
        let (_, hosts) = github.as_ref().expect("connected above");
        let listed = match hosts.for_repo(url) {
            Ok(client) => owner_repositories(client, &owner).await,
            Err(e) => Err(e.to_string()),
        };
        match listed {
            Ok(found) => {
                println!("{url}: {} repositories", found.len());
                expanded.extend(found);
            }
            Err(e) => {
                eprintln!("error: {url}: {e}");
                failures.push(url.clone());
            }
        }
    }
    if let Some((db, _)) = github {
        db.close().await;
    }
    let urls = &expanded;
    // Every URL is tried; failures are reported together so none is silently skipped.
    for url in urls {
        match api.add_repo(url, group).await {
            Ok(id) => println!("repo {id}\t{url}"),
            Err(e) => {
                eprintln!("error: {e}");
                if let Some(hint) = e.hint() {
                    eprintln!("hint: {hint}");
                }
                failures.push(url.clone());
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(AgentError::Sql {
            context: format!("{} of {} repositories were not added", failures.len(), urls.len()),
            message: failures.join(", "),
            hint: None,
        })
    }
}

/// Lease length of a one-shot collection; renewed while it runs.
const LEASE_SECS: i64 = 600;

/// The phases a repository of a platform has (aveloxis_ops.phases_of), of those this
/// agent runs.
fn agent_phases(platform_id: i16) -> &'static [&'static str] {
    match platform_id {
        1 | 2 => &["collect", "facade"],
        _ => &["facade"],
    }
}

/// What every job of this agent needs: the database, a GitHub client per API host with
/// tokens, and the facade's options.
struct Workshop {
    db: sqlx::PgPool,
    /// github.com's API and each GitHub Enterprise host that has tokens; each host's tokens
    /// go to that host only (API requests, and git over https to its web host).
    github: crate::forge::hosts::GithubHosts,
    git: crate::facade::FacadeOptions,
}

impl Workshop {
    async fn open(
        api: &Api,
        database_url: &str,
        forge: &ForgeArgs,
        git: crate::facade::FacadeOptions,
        connections: u32,
        connect_wait: std::time::Duration,
    ) -> Result<Workshop, AgentError> {
        let db = waiting_for_the_database(connect_wait, Backoff::database(), || {
            connect_pool(api, database_url, connections)
        })
        .await?;
        let github = github_hosts(&db, forge)?;
        Ok(Workshop { db, github, git })
    }

    /// Completes or fails a collect job; the report is sent again while the database cannot
    /// be reached ([`redeliver`]).
    async fn finish_collect(
        &self,
        agent: &str,
        job: &crate::collect::ClaimedJob,
        result: Result<crate::collect::Outcome, (crate::collect::Outcome, crate::forge::ForgeError)>,
    ) -> Result<(String, bool), sqlx::Error> {
        use crate::collect;

        let failed = result.is_err();
        let line = match &result {
            Ok(outcome) | Err((outcome, _)) => outcome.summary(),
        };
        // What `finish` reports, kept to send again.
        let again = match &result {
            Ok(outcome) => Ok(outcome.report()),
            Err((_, error)) => Err((error.to_string(), error.class())),
        };
        let first = collect::finish(&self.db, agent, job, result).await.map(|_| ());
        redeliver(&job_label(job), first, Backoff::database(), REPORT_ATTEMPTS, || {
            collect::report(&self.db, agent, job, true, again.clone())
        })
        .await?;
        Ok((line, failed))
    }

    /// Runs one claimed job and reports it to the queue. Returns the line to print and
    /// whether the job failed.
    async fn work(
        &self,
        agent: &str,
        job: &crate::collect::ClaimedJob,
        bar: Option<&indicatif::ProgressBar>,
    ) -> Result<(String, bool), sqlx::Error> {
        use crate::{collect, facade};

        let beat = heartbeat(&self.db, job);
        // The client of the repository's own API host, or why there is none.
        let github = self.github.for_repo(&job.repo_git);
        let result = match (job.phase.as_str(), job.platform_id, github) {
            ("collect", 1, Ok(github)) => {
                let result = collect::collect_github(github, &self.db, job, bar).await;
                self.finish_collect(agent, job, result).await
            }
            // Tokens, but none for this repository's host (a GitHub Enterprise host not in
            // [tokens]): `auth`, naming the host; other hosts' tokens are never sent there.
            ("collect", 1, Err(no_token)) if !self.github.is_empty() => {
                self.finish_collect(agent, job, Err((collect::Outcome::default(), no_token)))
                    .await
            }
            ("facade", _, github) => {
                let mut options = self.git.clone();
                if job.platform_id == 1 {
                    options.credentials.https_token = self.github.clone_token_for(&job.repo_git);
                }
                let forge = match (job.platform_id, github) {
                    (1, Ok(github)) => {
                        collect::owner_and_name(&job.repo_git).map(|(owner, name)| facade::authors::ForgeRepo {
                            forge: github,
                            owner,
                            name,
                        })
                    }
                    _ => None,
                };
                if let Some(bar) = bar {
                    bar.set_message("facade: fetching and walking the git history");
                }
                let result = facade::collect_facade(&self.db, job, &options, forge, job.platform_id == 1).await;
                let failed = result.is_err();
                let first = facade::finish(&self.db, agent, job, &result).await;
                redeliver(&job_label(job), first, Backoff::database(), REPORT_ATTEMPTS, || {
                    facade::finish(&self.db, agent, job, &result)
                })
                .await
                .map(|()| {
                    let line = match &result {
                        Ok(o) => o.summary(),
                        Err((o, e)) => format!("{} ({e})", o.summary()),
                    };
                    (line, failed)
                })
            }
            (phase, platform, github) => {
                let why = if phase == "collect" && platform == 1 && github.is_err() {
                    "no GitHub tokens on this agent (GITHUB_TOKENS)"
                } else {
                    "this agent does not run this phase for this platform yet"
                };
                sqlx::query("SELECT aveloxis.fail($1, $2, $3, 'skip')")
                    .bind(job.job_id)
                    .bind(job.lease_token)
                    .bind(why)
                    .execute(&self.db)
                    .await
                    .map(|_| (format!("skipped: {why}"), true))
            }
        };
        beat.abort();
        result
    }
}

#[allow(clippy::too_many_arguments)]
async fn collect(
    api: &mut Api,
    database_url: &str,
    urls: &[String],
    phases: &[String],
    forge: &ForgeArgs,
    git: crate::facade::FacadeOptions,
    agent: &str,
) -> Result<(), AgentError> {
    use crate::collect;

    if let Some(unknown) = phases.iter().find(|p| !["collect", "facade"].contains(&p.as_str())) {
        return Err(AgentError::Setting {
            name: "--phases".into(),
            message: format!("unknown phase {unknown:?}: collect runs the phases collect and facade"),
        });
    }
    let shop = Workshop::open(api, database_url, forge, git, 4, std::time::Duration::ZERO).await?;
    let db = &shop.db;

    let mut failures = Vec::new();
    for url in urls {
        let platform: i16 = match sqlx::query_scalar("SELECT platform_id FROM aveloxis.parse_repo_url($1)")
            .bind(url)
            .fetch_one(db)
            .await
        {
            Ok(platform) => platform,
            Err(e) => {
                eprintln!("error: {}", AgentError::sql(format!("reading {url}"), e));
                failures.push(url.clone());
                continue;
            }
        };
        let wanted: Vec<&str> = agent_phases(platform)
            .iter()
            .copied()
            .filter(|p| phases.iter().any(|w| w == p))
            .collect();
        if platform == 2 && wanted.contains(&"collect") {
            eprintln!("note: {url}: GitLab API collection is not built yet; collecting its git history only");
        }
        let wanted: Vec<&str> = wanted
            .into_iter()
            .filter(|p| !(platform == 2 && *p == "collect"))
            .collect();
        if platform == 1 && wanted.contains(&"collect") {
            if let Err(e) = shop.github.for_repo(url) {
                eprintln!(
                    "error: {url}: collecting GitHub data needs a token for its API host: {e}; --phases facade \
                     collects its git history alone"
                );
                failures.push(url.clone());
                continue;
            }
        }
        if wanted.is_empty() {
            eprintln!("error: {url}: none of the phases {phases:?} applies to it");
            failures.push(url.clone());
            continue;
        }
        let repo_id = api.add_repo(url, "Default").await?;
        for phase in wanted {
            let job = match collect::claim_repo(db, agent, repo_id, phase, LEASE_SECS).await {
                Ok(job) => job,
                Err(e) => {
                    let e = AgentError::sql(format!("claiming {url} ({phase})"), e);
                    eprintln!("error: {e}");
                    failures.push(url.clone());
                    continue;
                }
            };
            // A spinner on a terminal (hidden when stderr is not one, as under CI or systemd).
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {elapsed:>4} {prefix} {wide_msg}")
                    .expect("a valid template"),
            );
            bar.set_prefix(format!("{url} ({phase})"));
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            let worked = shop.work(agent, &job, Some(&bar)).await;
            bar.finish_and_clear();
            let (line, failed) = worked.map_err(|e| AgentError::sql(format!("finishing {url} ({phase})"), e))?;
            println!("repo {repo_id}\t{url}\t{phase}: {line}");
            if failed {
                eprintln!("error: {url}: the {phase} job failed (aveloxis.job_history({repo_id}) says why)");
                failures.push(url.clone());
            }
        }
    }
    shop.db.close().await;
    if failures.is_empty() {
        Ok(())
    } else {
        failures.dedup();
        Err(AgentError::Sql {
            context: format!("{} of {} repositories were not collected", failures.len(), urls.len()),
            message: failures.join(", "),
            hint: Some("aveloxis.why_not_collected(repo) and aveloxis.job_history(repo) say why".into()),
        })
    }
}

/// A pool of `connections` to the database `api` already reached.
async fn connect_pool(api: &Api, database_url: &str, connections: u32) -> Result<sqlx::PgPool, AgentError> {
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

/// A GitHub client per API host with tokens, each spending its own host's tokens through
/// the shared budgets.
fn github_hosts(db: &sqlx::PgPool, forge: &ForgeArgs) -> Result<crate::forge::hosts::GithubHosts, AgentError> {
    use crate::forge::tokens::TokenPool;

    crate::forge::hosts::GithubHosts::new(&forge.token_settings(), |tokens| TokenPool::new(tokens, 1, db.clone()))
        .map_err(|message| AgentError::Setting {
            name: "GitHub API hosts and tokens (--github-api-url, [tokens])".into(),
            message,
        })
}

/// A database pool and a GitHub client spending the given tokens (`add` expanding owners).
async fn connect_github(
    api: &Api,
    database_url: &str,
    forge: &ForgeArgs,
    connections: u32,
) -> Result<(sqlx::PgPool, crate::forge::hosts::GithubHosts), AgentError> {
    if !forge.has_tokens() {
        return Err(AgentError::Setting {
            name: "GITHUB_TOKENS".into(),
            message: "no GitHub token given (GITHUB_TOKENS=tok1,tok2, --github-tokens, github_tokens = [...], or \
                      [tokens] in the config file)"
                .into(),
        });
    }
    let db = connect_pool(api, database_url, connections).await?;
    let github = github_hosts(&db, forge)?;
    Ok((db, github))
}

/// Renews a job's lease every third of its length until aborted.
fn heartbeat(db: &sqlx::PgPool, job: &crate::collect::ClaimedJob) -> tokio::task::JoinHandle<()> {
    let db = db.clone();
    let (job_id, token) = (job.job_id, job.lease_token);
    tokio::spawn(async move {
        let every = std::time::Duration::from_secs(LEASE_SECS as u64 / 3);
        let mut retry = Backoff::database();
        let mut wait = every;
        loop {
            tokio::time::sleep(wait).await;
            wait = every;
            match sqlx::query_scalar::<_, i64>("SELECT aveloxis.heartbeat(ARRAY[$1])")
                .bind(token)
                .fetch_all(&db)
                .await
            {
                Ok(held) if held.is_empty() => {
                    tracing::warn!(
                        job_id,
                        "heartbeat: the lease was lost (it expired and the job went back)"
                    )
                }
                Ok(_) => {}
                // The database went away: renew again soon (with backoff) rather than a third
                // of the lease from now, so a short outage does not cost the lease.
                Err(e) if is_connection_error(&e) => {
                    wait = retry.next_delay().min(every);
                    tracing::warn!(
                        job_id,
                        "heartbeat failed, the database cannot be reached: {e}; trying again in {:.1} s",
                        wait.as_secs_f64()
                    );
                    continue;
                }
                Err(e) => tracing::warn!(job_id, "heartbeat failed: {e}"),
            }
            retry.reset();
        }
    })
}

/// Attempts at reporting a job's outcome, the first included, while the database cannot be
/// reached: 0.5 s doubling to 30 s between them, about a minute in all.
const REPORT_ATTEMPTS: u32 = 8;

/// `repo <id> (<phase>)`, for messages about a job.
fn job_label(job: &crate::collect::ClaimedJob) -> String {
    format!("repo {} ({}, job {})", job.repo_id, job.phase, job.job_id)
}

/// Runs `connect` until it succeeds, fails otherwise than by an unreachable PostgreSQL, or
/// `wait` has passed (zero: one attempt); each retry is logged with the error and the wait.
async fn waiting_for_the_database<T, F, Fut>(
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

/// A job's report (`complete` or `fail`, after the drain) that the database did not take
/// because the connection failed is sent again with backoff, up to `attempts` in all
/// (`first` was the first). If it still fails that is logged as an error: the lease then
/// expires and the job returns to the queue, and what was staged stays in staging for the
/// next run's drain, so nothing is lost.
async fn redeliver<F, Fut>(
    what: &str,
    first: Result<(), sqlx::Error>,
    mut backoff: Backoff,
    attempts: u32,
    mut again: F,
) -> Result<(), sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), sqlx::Error>>,
{
    let mut result = first;
    let mut attempt = 1;
    loop {
        match result {
            Err(e) if is_connection_error(&e) && attempt < attempts => {
                let wait = backoff.next_delay();
                tracing::warn!(
                    "reporting {what}: the database cannot be reached ({e}); attempt {} of {attempts} in {:.1} s",
                    attempt + 1,
                    wait.as_secs_f64()
                );
                tokio::time::sleep(wait).await;
                attempt += 1;
                result = again().await;
            }
            Err(e) => {
                if is_connection_error(&e) {
                    tracing::error!(
                        "REPORT LOST: {what}: the outcome could not be reported in {attempt} attempts ({e}); the \
                         lease will expire and the job return to the queue (what it staged stays in staging)"
                    );
                }
                return Err(e);
            }
            Ok(()) => return Ok(()),
        }
    }
}

/// What a worker's claim brought.
enum Claimed {
    Job(crate::collect::ClaimedJob),
    /// Nothing due (or the claim failed otherwise than by the connection: logged, counted).
    Nothing,
    /// The agent is stopping.
    Stopped,
}

/// Claims one due job. While the database cannot be reached the claim is tried again with
/// backoff (each retry logged with the error and the wait) until it answers or the agent
/// is stopped: an outage never ends the worker.
async fn claim_next(
    db: &sqlx::PgPool,
    name: &str,
    phases: &[&str],
    backoff: &mut Backoff,
    stop: &mut tokio::sync::watch::Receiver<bool>,
    failures: &mut usize,
) -> Claimed {
    loop {
        if *stop.borrow() {
            return Claimed::Stopped;
        }
        match crate::collect::claim(db, name, phases, 1, LEASE_SECS).await {
            Ok(jobs) => {
                backoff.reset();
                return jobs.into_iter().next().map_or(Claimed::Nothing, Claimed::Job);
            }
            Err(e) if is_connection_error(&e) => {
                let wait = backoff.next_delay();
                tracing::warn!(
                    worker = %name,
                    "claim: the database cannot be reached: {e}; trying again in {:.1} s",
                    wait.as_secs_f64()
                );
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => {}
                }
            }
            Err(e) => {
                tracing::error!(worker = %name, "claim failed: {e}");
                *failures += 1;
                return Claimed::Nothing;
            }
        }
    }
}

/// How `run` paces itself.
struct RunSettings {
    workers: usize,
    poll_seconds: u64,
    once: bool,
    /// How long to keep trying at start while PostgreSQL cannot be reached.
    connect_wait: std::time::Duration,
}

async fn run_queue(
    api: &Api,
    database_url: &str,
    phases: &[String],
    forge: &ForgeArgs,
    git: crate::facade::FacadeOptions,
    settings: RunSettings,
    agent: &str,
) -> Result<(), AgentError> {
    use std::sync::Arc;

    let RunSettings {
        workers,
        poll_seconds,
        once,
        connect_wait,
    } = settings;
    let phases: Vec<String> = if phases.is_empty() {
        if forge.has_tokens() {
            vec!["collect".into(), "facade".into()]
        } else {
            vec!["facade".into()]
        }
    } else {
        phases.to_vec()
    };
    if let Some(unknown) = phases.iter().find(|p| !["collect", "facade"].contains(&p.as_str())) {
        return Err(AgentError::Setting {
            name: "--phases".into(),
            message: format!("unknown phase {unknown:?}: run claims the phases collect and facade"),
        });
    }
    let workers = workers.max(1);
    let shop = Arc::new(Workshop::open(api, database_url, forge, git, workers as u32 * 3 + 2, connect_wait).await?);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
        tracing::warn!("stopping: workers finish their current job, then exit");
        let _ = stop_tx.send(true);
    });

    let mut tasks = Vec::new();
    for n in 1..=workers {
        let shop = shop.clone();
        let phases = phases.clone();
        let mut stop = stop_rx.clone();
        let name = format!("{agent}/{n}");
        tasks.push(tokio::spawn(async move {
            let phases: Vec<&str> = phases.iter().map(String::as_str).collect();
            let mut done = 0usize;
            let mut failures = 0usize;
            let mut backoff = Backoff::database();
            while !*stop.borrow() {
                let job = match claim_next(&shop.db, &name, &phases, &mut backoff, &mut stop, &mut failures).await {
                    Claimed::Job(job) => job,
                    Claimed::Stopped => break,
                    Claimed::Nothing if once => break,
                    Claimed::Nothing => {
                        tokio::select! {
                            _ = tokio::time::sleep(std::time::Duration::from_secs(poll_seconds)) => {}
                            _ = stop.changed() => {}
                        }
                        continue;
                    }
                };
                match shop.work(&name, &job, None).await {
                    Ok((line, failed)) => {
                        println!(
                            "repo {}\t{}\t{}: {line}{}",
                            job.repo_id,
                            job.repo_git,
                            job.phase,
                            if failed { " (failed: see job_history)" } else { "" }
                        );
                        done += 1;
                        failures += usize::from(failed);
                    }
                    Err(e) => {
                        tracing::error!(worker = %name, repo = job.repo_id, "reporting the job failed: {e}");
                        failures += 1;
                    }
                }
            }
            (done, failures)
        }));
    }
    let (mut done, mut failures) = (0, 0);
    for task in tasks {
        let (d, f) = task.await.unwrap_or((0, 1));
        done += d;
        failures += f;
    }
    shop.db.close().await;
    println!("{done} jobs run, {failures} failed");
    Ok(())
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    fn forge(tokens: &[&str], api: &str) -> ForgeArgs {
        ForgeArgs {
            github_tokens: tokens.iter().map(|t| t.to_string()).collect(),
            github_api_url: api.to_string(),
            host_tokens: Default::default(),
        }
    }

    #[test]
    fn tokens_and_api_url_come_from_flags_first_then_the_config_file() {
        let dir = std::env::temp_dir().join(format!("aveloxis-forge-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("agent.toml");
        std::fs::write(
            &file,
            "github_tokens = [\"file-1\", \"file-2\"]\ngithub_api_url = \"https://ghe.example.com/api/v3/\"\n",
        )
        .unwrap();
        let from_file = forge(&[], "").with_config(Some(&file)).unwrap();
        assert_eq!(from_file.github_tokens, ["file-1", "file-2"]);
        assert_eq!(from_file.github_api_url, "https://ghe.example.com/api/v3/");
        let flags = forge(&["flag"], "https://other/api/v3/")
            .with_config(Some(&file))
            .unwrap();
        assert_eq!(flags.github_tokens, ["flag"]);
        assert_eq!(flags.github_api_url, "https://other/api/v3/");
        let defaults = forge(&[], "").with_config(None).unwrap();
        assert!(defaults.github_tokens.is_empty());
        assert_eq!(defaults.github_api_url, crate::forge::github::DEFAULT_API_URL);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn enterprise_tokens_come_from_the_config_file_keyed_by_api_host() {
        let dir = std::env::temp_dir().join(format!("aveloxis-host-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("agent.toml");
        std::fs::write(&file, "[tokens]\n\"ghe.example.com\" = [\"ghe-1\"]\n").unwrap();
        // GITHUB_TOKENS given: the file is read all the same for the other hosts.
        let args = forge(&["gh-1"], "").with_config(Some(&file)).unwrap();
        assert!(args.has_tokens());
        assert_eq!(args.github_tokens, ["gh-1"]);
        let settings = args.token_settings();
        assert_eq!(settings.by_api_host["ghe.example.com"], ["ghe-1"]);
        assert!(forge(&[], "").with_config(Some(&file)).unwrap().has_tokens());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn quick() -> Backoff {
        Backoff::new(
            std::time::Duration::from_millis(5),
            std::time::Duration::from_millis(20),
        )
    }

    fn connection_lost() -> sqlx::Error {
        sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "terminating connection due to administrator command",
        ))
    }

    #[tokio::test]
    async fn run_waits_for_the_database_at_start_and_one_shot_commands_do_not() {
        let unreachable = || AgentError::Unreachable {
            target: "db:5432/x".into(),
            message: "connection refused".into(),
        };
        let attempts = std::cell::Cell::new(0);
        let connect = || {
            attempts.set(attempts.get() + 1);
            let n = attempts.get();
            async move {
                if n < 3 {
                    Err(unreachable())
                } else {
                    Ok(n)
                }
            }
        };
        let wait = std::time::Duration::from_secs(5);
        assert_eq!(waiting_for_the_database(wait, quick(), connect).await.unwrap(), 3);
        // One-shot commands: a single attempt.
        attempts.set(0);
        let e = waiting_for_the_database(std::time::Duration::ZERO, quick(), connect)
            .await
            .unwrap_err();
        assert!(matches!(e, AgentError::Unreachable { .. }));
        assert_eq!(attempts.get(), 1);
        // The wait is bounded.
        let started = std::time::Instant::now();
        let never = || async { Err::<(), _>(unreachable()) };
        let e = waiting_for_the_database(std::time::Duration::from_millis(200), quick(), never)
            .await
            .unwrap_err();
        assert_eq!(e.exit_code(), 3);
        assert!(started.elapsed() >= std::time::Duration::from_millis(200));
        assert!(started.elapsed() < std::time::Duration::from_secs(3));
        // Anything else (no extension, a refused login...) is not waited out.
        attempts.set(0);
        let missing = || {
            attempts.set(attempts.get() + 1);
            async {
                Err::<(), _>(AgentError::ExtensionMissing {
                    target: "db:5432/x".into(),
                })
            }
        };
        assert!(waiting_for_the_database(wait, quick(), missing).await.is_err());
        assert_eq!(attempts.get(), 1);
    }

    #[tokio::test]
    async fn a_report_the_database_dropped_is_sent_again_a_bounded_number_of_times() {
        // The connection comes back on the third attempt.
        let sent = std::cell::Cell::new(1);
        let again = || {
            sent.set(sent.get() + 1);
            let n = sent.get();
            async move {
                if n < 3 {
                    Err(connection_lost())
                } else {
                    Ok(())
                }
            }
        };
        redeliver("repo 1 (collect)", Err(connection_lost()), quick(), 8, again)
            .await
            .unwrap();
        assert_eq!(sent.get(), 3);
        // It never comes back: given up after 4 attempts in all.
        sent.set(1);
        let never = || {
            sent.set(sent.get() + 1);
            async { Err(sqlx::Error::PoolTimedOut) }
        };
        let e = redeliver("repo 1 (collect)", Err(sqlx::Error::PoolTimedOut), quick(), 4, never)
            .await
            .unwrap_err();
        assert!(matches!(e, sqlx::Error::PoolTimedOut));
        assert_eq!(sent.get(), 4);
        // An error of the call itself (a lease lost to another agent) is not sent again.
        sent.set(1);
        let e = redeliver("repo 1 (collect)", Err(sqlx::Error::RowNotFound), quick(), 8, never)
            .await
            .unwrap_err();
        assert!(matches!(e, sqlx::Error::RowNotFound));
        assert_eq!(sent.get(), 1);
    }

    #[tokio::test]
    async fn a_worker_waits_out_an_unreachable_database_until_stopped() {
        // Nothing listens there: every claim fails to connect.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let db = sqlx::postgres::PgPoolOptions::new()
            .acquire_timeout(std::time::Duration::from_millis(100))
            .connect_lazy(&format!("postgres://agent@127.0.0.1:{port}/aveloxis"))
            .unwrap();
        let (stop_tx, mut stop) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(600)).await;
            let _ = stop_tx.send(true);
        });
        let mut backoff = quick();
        let mut failures = 0;
        let started = std::time::Instant::now();
        let claimed = claim_next(&db, "test/1", &["facade"], &mut backoff, &mut stop, &mut failures).await;
        assert!(
            matches!(claimed, Claimed::Stopped),
            "the worker kept trying until stopped"
        );
        assert!(started.elapsed() >= std::time::Duration::from_millis(500));
        assert_eq!(failures, 0, "an outage is not a failed job");
    }

    #[test]
    fn owner_urls_are_recognized() {
        let api = "https://api.github.com/";
        assert_eq!(
            github_owner("https://github.com/chaoss", api).as_deref(),
            Some("chaoss")
        );
        assert_eq!(
            github_owner("https://github.com/chaoss/", api).as_deref(),
            Some("chaoss")
        );
        assert_eq!(github_owner("https://github.com/chaoss/augur", api), None);
        assert_eq!(github_owner("https://gitlab.com/chaoss", api), None);
        assert_eq!(github_owner("/srv/git/x", api), None);
        assert_eq!(
            github_owner("https://ghe.example.com/team", "https://ghe.example.com/api/v3/").as_deref(),
            Some("team")
        );
    }
}
