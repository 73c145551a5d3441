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
        /// GitHub repository URLs.
        #[arg(required = true)]
        urls: Vec<String>,
        #[command(flatten)]
        forge: ForgeArgs,
        /// The name this agent gives the queue (shown by why_not_collected()).
        #[arg(long, default_value_t = format!("collect-{}", std::process::id()))]
        agent: String,
    },
    /// Work the queue: `--workers` tasks claim due collect jobs, collect, drain and report,
    /// renewing their leases. SIGTERM or SIGINT: each worker finishes its job (staging,
    /// draining and reporting what it fetched) and stops; nothing stays leased.
    Run {
        #[command(flatten)]
        forge: ForgeArgs,
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

impl ForgeArgs {
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
        Command::Collect { urls, forge, agent } => match forge.with_config(config_path.as_ref()) {
            Ok(forge) => collect(&mut api, &url, &urls, &forge, &agent).await,
            Err(e) => Err(e),
        },
        Command::Run {
            forge,
            workers,
            poll_seconds,
            once,
            agent,
        } => match forge.with_config(config_path.as_ref()) {
            Ok(forge) => run_queue(&api, &url, &forge, workers, poll_seconds, once, &agent).await,
            Err(e) => Err(e),
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

async fn collect(
    api: &mut Api,
    database_url: &str,
    urls: &[String],
    forge: &ForgeArgs,
    agent: &str,
) -> Result<(), AgentError> {
    use crate::collect;

    let (db, github) = connect_github(api, database_url, forge, 4).await?;

    let mut failures = Vec::new();
    for url in urls {
        let platform: Result<i16, _> = sqlx::query_scalar("SELECT platform_id FROM aveloxis.parse_repo_url($1)")
            .bind(url)
            .fetch_one(&db)
            .await;
        match platform {
            Ok(1) => {}
            Ok(_) => {
                eprintln!("error: {url}: only GitHub repositories can be collected so far (GitLab and git: next)");
                failures.push(url.clone());
                continue;
            }
            Err(e) => {
                eprintln!("error: {}", AgentError::sql(format!("reading {url}"), e));
                failures.push(url.clone());
                continue;
            }
        }
        let repo_id = api.add_repo(url, "Default").await?;
        let job = match collect::claim_repo(&db, agent, repo_id, "collect", LEASE_SECS).await {
            Ok(job) => job,
            Err(e) => {
                let e = AgentError::sql(format!("claiming {url}"), e);
                eprintln!("error: {e}");
                failures.push(url.clone());
                continue;
            }
        };
        let heartbeat = heartbeat(&db, agent, job.job_id);
        // A spinner on a terminal (hidden when stderr is not one, as under CI or systemd).
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {elapsed:>4} {prefix} {wide_msg}")
                .expect("a valid template"),
        );
        bar.set_prefix(url.clone());
        let result = collect::collect_github(&github, &db, &job, Some(&bar)).await;
        bar.finish_and_clear();
        heartbeat.abort();
        let failed = result.as_ref().err().map(|(_, e)| e.to_string());
        let outcome = collect::finish(&db, agent, &job, result)
            .await
            .map_err(|e| AgentError::sql(format!("finishing {url}"), e))?;
        println!("repo {repo_id}\t{url}\t{}", outcome.summary());
        if let Some(error) = failed {
            eprintln!("error: {url}: {error}");
            failures.push(url.clone());
        }
    }
    db.close().await;
    if failures.is_empty() {
        Ok(())
    } else {
        Err(AgentError::Sql {
            context: format!("{} of {} repositories were not collected", failures.len(), urls.len()),
            message: failures.join(", "),
            hint: Some("aveloxis.why_not_collected(repo) and aveloxis.job_history(repo) say why".into()),
        })
    }
}

/// A database pool and a GitHub client spending the given tokens.
async fn connect_github(
    api: &Api,
    database_url: &str,
    forge: &ForgeArgs,
    connections: u32,
) -> Result<(sqlx::PgPool, crate::forge::github::GithubClient), AgentError> {
    use crate::forge::github::{GithubClient, GithubConfig};
    use crate::forge::tokens::TokenPool;

    if forge.github_tokens.iter().all(|t| t.trim().is_empty()) {
        return Err(AgentError::Setting {
            name: "GITHUB_TOKENS".into(),
            message: "no GitHub token given (GITHUB_TOKENS=tok1,tok2, --github-tokens, or github_tokens = [...])"
                .into(),
        });
    }
    let config = GithubConfig::new(&forge.github_api_url).map_err(|e| AgentError::Setting {
        name: "--github-api-url".into(),
        message: format!("{}: {e}", forge.github_api_url),
    })?;
    let db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(connections)
        .connect(database_url)
        .await
        .map_err(|e| AgentError::Unreachable {
            target: api.target.clone(),
            message: e.to_string(),
        })?;
    let pool = TokenPool::new(forge.github_tokens.clone(), 1, db.clone());
    let github = GithubClient::new(config, pool).map_err(|e| AgentError::Setting {
        name: "HTTP client".into(),
        message: e.to_string(),
    })?;
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

async fn run_queue(
    api: &Api,
    database_url: &str,
    forge: &ForgeArgs,
    workers: usize,
    poll_seconds: u64,
    once: bool,
    agent: &str,
) -> Result<(), AgentError> {
    use std::sync::Arc;

    use crate::collect;

    let workers = workers.max(1);
    let (db, github) = connect_github(api, database_url, forge, workers as u32 * 2 + 2).await?;
    let github = Arc::new(github);
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
        let db = db.clone();
        let github = github.clone();
        let mut stop = stop_rx.clone();
        let name = format!("{agent}/{n}");
        tasks.push(tokio::spawn(async move {
            let mut done = 0usize;
            let mut failures = 0usize;
            while !*stop.borrow() {
                let jobs = match collect::claim(&db, &name, &["collect"], 1, LEASE_SECS).await {
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
                if job.platform_id != 1 {
                    let _ = sqlx::query("SELECT aveloxis.fail($1, $2, 'skip', $3)")
                        .bind(job.job_id)
                        .bind("this agent collects GitHub repositories only so far")
                        .bind(&name)
                        .execute(&db)
                        .await;
                    tracing::warn!(
                        repo = job.repo_id,
                        "not a GitHub repository: skipped until its next cadence"
                    );
                    continue;
                }
                let beat = heartbeat(&db, &name, job.job_id);
                let result = collect::collect_github(github.as_ref(), &db, &job, None).await;
                beat.abort();
                let failed = result.is_err();
                match collect::finish(&db, &name, &job, result).await {
                    Ok(outcome) => {
                        println!(
                            "repo {}\t{}\t{}{}",
                            job.repo_id,
                            job.repo_git,
                            outcome.summary(),
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
    db.close().await;
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
