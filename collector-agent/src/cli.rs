//! Command-line interface. Commands are thin: each calls the SQL API and prints.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config;
use crate::db::Api;
use crate::error::AgentError;

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
    /// The GitHub API root (GitHub Enterprise: https://host/api/v3/); default https://api.github.com/.
    #[arg(long, env = "GITHUB_API_URL", default_value = "")]
    pub github_api_url: String,
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
    fn has_tokens(&self) -> bool {
        self.github_tokens.iter().any(|t| !t.trim().is_empty())
    }

    /// Flags and environment win; the config file fills what they leave empty.
    fn with_config(mut self, config_path: Option<&PathBuf>) -> Result<Self, AgentError> {
        let file = match config_path {
            Some(path) if self.github_tokens.iter().all(|t| t.trim().is_empty()) || self.github_api_url.is_empty() => {
                Some(config::ConfigFile::load(path)?)
            }
            _ => None,
        };
        if let Some(file) = file {
            if self.github_tokens.iter().all(|t| t.trim().is_empty()) {
                self.github_tokens = file.github_tokens.unwrap_or_default();
            }
            if self.github_api_url.is_empty() {
                self.github_api_url = file.github_api_url.unwrap_or_default();
            }
        }
        if self.github_api_url.is_empty() {
            self.github_api_url = crate::forge::github::DEFAULT_API_URL.to_string();
        }
        Ok(self)
    }
}

pub async fn run(cli: Cli) -> Result<(), AgentError> {
    let url = config::database_url(cli.database_url, cli.config.as_ref())?;
    let mut api = Api::connect(&url).await?;
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
        } => match (forge.with_config(config_path.as_ref()), git.options()) {
            (Ok(forge), Ok(git)) => {
                let settings = RunSettings {
                    workers,
                    poll_seconds,
                    once,
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
        if forge.github_tokens.iter().all(|t| t.trim().is_empty()) {
            // add_repo refuses it below with its own message; say how to expand it.
            eprintln!("hint: {url} names an owner: with GITHUB_TOKENS set, add lists and adds its repositories");
            expanded.push(url.clone());
            continue;
        }
        if github.is_none() {
            github = Some(connect_github(api, database_url, forge, 2).await?);
        }
        let (_, client) = github.as_ref().expect("connected above");
        match owner_repositories(client, &owner).await {
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

/// What every job of this agent needs: the database, GitHub when tokens were given, and
/// the facade's options.
struct Workshop {
    db: sqlx::PgPool,
    github: Option<crate::forge::github::GithubClient>,
    git: crate::facade::FacadeOptions,
    /// The first GitHub token, for cloning private GitHub repositories over https.
    github_clone_token: Option<String>,
}

impl Workshop {
    async fn open(
        api: &Api,
        database_url: &str,
        forge: &ForgeArgs,
        git: crate::facade::FacadeOptions,
        connections: u32,
    ) -> Result<Workshop, AgentError> {
        let db = connect_pool(api, database_url, connections).await?;
        let github = if forge.has_tokens() {
            Some(github_client(&db, forge)?)
        } else {
            None
        };
        Ok(Workshop {
            db,
            github,
            git,
            github_clone_token: forge.github_tokens.iter().find(|t| !t.trim().is_empty()).cloned(),
        })
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

        let beat = heartbeat(&self.db, agent, job.job_id);
        let result = match (job.phase.as_str(), job.platform_id, &self.github) {
            ("collect", 1, Some(github)) => {
                let result = collect::collect_github(github, &self.db, job, bar).await;
                let failed = result.is_err();
                collect::finish(&self.db, agent, job, result)
                    .await
                    .map(|outcome| (outcome.summary(), failed))
            }
            ("facade", _, github) => {
                let mut options = self.git.clone();
                if job.platform_id == 1 {
                    options.credentials.https_token = self.github_clone_token.clone();
                }
                let forge = match (job.platform_id, github) {
                    (1, Some(github)) => {
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
                facade::finish(&self.db, agent, job, &result).await.map(|()| {
                    let line = match &result {
                        Ok(o) => o.summary(),
                        Err((o, e)) => format!("{} ({e})", o.summary()),
                    };
                    (line, failed)
                })
            }
            (phase, platform, github) => {
                let why = if phase == "collect" && platform == 1 && github.is_none() {
                    "no GitHub tokens on this agent (GITHUB_TOKENS)"
                } else {
                    "this agent does not run this phase for this platform yet"
                };
                sqlx::query("SELECT aveloxis.fail($1, $2, 'skip', $3)")
                    .bind(job.job_id)
                    .bind(why)
                    .bind(agent)
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
    let shop = Workshop::open(api, database_url, forge, git, 4).await?;
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
        if platform == 1 && wanted.contains(&"collect") && shop.github.is_none() {
            eprintln!(
                "error: {url}: collecting GitHub data needs tokens (GITHUB_TOKENS=tok1,tok2, --github-tokens, or \
                 github_tokens in the config file); --phases facade collects its git history alone"
            );
            failures.push(url.clone());
            continue;
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
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(connections)
        .connect(database_url)
        .await
        .map_err(|e| AgentError::Unreachable {
            target: api.target.clone(),
            message: e.to_string(),
        })
}

/// A GitHub client spending the given tokens through the shared budgets.
fn github_client(db: &sqlx::PgPool, forge: &ForgeArgs) -> Result<crate::forge::github::GithubClient, AgentError> {
    use crate::forge::github::{GithubClient, GithubConfig};
    use crate::forge::tokens::TokenPool;

    let config = GithubConfig::new(&forge.github_api_url).map_err(|e| AgentError::Setting {
        name: "--github-api-url".into(),
        message: format!("{}: {e}", forge.github_api_url),
    })?;
    let pool = TokenPool::new(
        forge
            .github_tokens
            .iter()
            .filter(|t| !t.trim().is_empty())
            .cloned()
            .collect::<Vec<_>>(),
        1,
        db.clone(),
    );
    GithubClient::new(config, pool).map_err(|e| AgentError::Setting {
        name: "HTTP client".into(),
        message: e.to_string(),
    })
}

/// A database pool and a GitHub client spending the given tokens (`add` expanding owners).
async fn connect_github(
    api: &Api,
    database_url: &str,
    forge: &ForgeArgs,
    connections: u32,
) -> Result<(sqlx::PgPool, crate::forge::github::GithubClient), AgentError> {
    if !forge.has_tokens() {
        return Err(AgentError::Setting {
            name: "GITHUB_TOKENS".into(),
            message: "no GitHub token given (GITHUB_TOKENS=tok1,tok2, --github-tokens, or github_tokens = [...])"
                .into(),
        });
    }
    let db = connect_pool(api, database_url, connections).await?;
    let github = github_client(&db, forge)?;
    Ok((db, github))
}

/// Renews a job's lease every third of its length until aborted.
fn heartbeat(db: &sqlx::PgPool, agent: &str, job_id: i64) -> tokio::task::JoinHandle<()> {
    let db = db.clone();
    let agent = agent.to_string();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(LEASE_SECS as u64 / 3)).await;
            if let Err(e) = sqlx::query("SELECT aveloxis.heartbeat(ARRAY[$1], $2)")
                .bind(job_id)
                .bind(&agent)
                .execute(&db)
                .await
            {
                tracing::warn!(job_id, "heartbeat failed: {e}");
            }
        }
    })
}

/// How `run` paces itself.
struct RunSettings {
    workers: usize,
    poll_seconds: u64,
    once: bool,
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

    use crate::collect;

    let RunSettings {
        workers,
        poll_seconds,
        once,
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
    let shop = Arc::new(Workshop::open(api, database_url, forge, git, workers as u32 * 3 + 2).await?);
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
            while !*stop.borrow() {
                let jobs = match collect::claim(&shop.db, &name, &phases, 1, LEASE_SECS).await {
                    Ok(jobs) => jobs,
                    Err(e) => {
                        tracing::error!(worker = %name, "claim failed: {e}");
                        failures += 1;
                        Vec::new()
                    }
                };
                let Some(job) = jobs.into_iter().next() else {
                    if once {
                        break;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(std::time::Duration::from_secs(poll_seconds)) => {}
                        _ = stop.changed() => {}
                    }
                    continue;
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
