//! Command-line interface. Commands are thin: each calls the SQL API and prints.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config;
use crate::db::waiting_for_the_database;
use crate::db::Api;
use crate::error::{AgentError, Backoff};
use crate::worker::{collect, connect_github, run_queue, RunSettings};

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
        /// Phases to run, of those the repository has: collect (forge API data), facade
        /// (git history) and distribution (GitHub: registries and manifests).
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
        /// Phases to claim (default: collect, facade and distribution with GitHub tokens,
        /// collect and facade with GitLab tokens only, else facade).
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
    /// Where the fleet's repositories are published and which manifests declare them
    /// (aveloxis.distribution_stats(); read-only).
    DistributionStats {
        /// List the manifests that declare a package no registry shows.
        #[arg(long, conflicts_with = "repo")]
        orphans: bool,
        /// One repository's registry evidence and manifests.
        #[arg(long, value_name = "URL")]
        repo: Option<String>,
    },
    /// Run the fleet-wide identity tasks once, now: enrich thin contributors' profiles and
    /// search accounts for email-only contributors (`run` does this between jobs; the
    /// database decides who is due: aveloxis.identity_health()).
    Identity {
        /// Tasks to run: enrich, search.
        #[arg(long, value_delimiter = ',', default_value = "enrich,search")]
        tasks: Vec<String>,
        /// Most contributors per batch (default: the database's enrich.batch / search.batch).
        #[arg(long)]
        max: Option<i32>,
        #[command(flatten)]
        forge: ForgeArgs,
        /// The name this agent gives the runs.
        #[arg(long, default_value_t = format!("identity-{}", std::process::id()))]
        agent: String,
    },
    /// Write a repository's SBOM (aveloxis.sbom(): CycloneDX 1.5 or 1.6, or SPDX 2.3 JSON,
    /// built by the extension from the parsed dependencies and the package cache).
    Sbom {
        /// The repository's URL or local path, as registered.
        url: String,
        /// cyclonedx or spdx.
        #[arg(long, default_value = "cyclonedx", value_parser = ["cyclonedx", "spdx"])]
        format: String,
        /// The specification version: CycloneDX 1.5 or 1.6 (default), SPDX 2.3.
        #[arg(long)]
        spec: Option<String>,
        /// Runtime dependencies only (no development, test or build ones).
        #[arg(long)]
        runtime_only: bool,
        /// Include the repository's open vulnerabilities.
        #[arg(long)]
        vulnerabilities: bool,
        /// The file to write (default: standard output).
        #[arg(long, short)]
        output: Option<std::path::PathBuf>,
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
    /// gitlab.com tokens, comma-separated; sent to gitlab.com's API only.
    #[arg(long, env = "GITLAB_TOKENS", hide_env_values = true, value_delimiter = ',')]
    pub gitlab_tokens: Vec<String>,
    /// gitlab.com's API root (default https://gitlab.com/api/v4/). Self-managed instances
    /// get their own tokens: [gitlab_host_tokens] in the config file; their API roots are
    /// what aveloxis.add_forge_host declared.
    #[arg(long, env = "GITLAB_API_URL", default_value = "")]
    pub gitlab_api_url: String,
    /// Send GitLab tokens as `Authorization: Bearer` (OAuth 2) instead of `PRIVATE-TOKEN`.
    #[arg(long, env = "GITLAB_BEARER")]
    pub gitlab_bearer: bool,
    /// Tokens of self-managed GitLab hosts (config file `[gitlab_host_tokens]` only).
    #[arg(skip)]
    pub gitlab_host_tokens: std::collections::BTreeMap<String, Vec<String>>,
    /// deps.dev's API root for distribution scans (default: the database's
    /// distribution.depsdev_url setting, https://api.deps.dev/).
    #[arg(long, env = "DEPSDEV_API_URL")]
    pub depsdev_url: Option<String>,
    /// ecosyste.ms packages' API root for distribution scans (default: the database's
    /// distribution.ecosystems_url setting, https://packages.ecosyste.ms/).
    #[arg(long, env = "ECOSYSTEMS_API_URL")]
    pub ecosystems_url: Option<String>,
    /// A contact email sent to the public registries (User-Agent, ecosyste.ms' polite pool;
    /// default: the database's distribution.contact setting).
    #[arg(long, env = "AVELOXIS_CONTACT")]
    pub contact: Option<String>,
    /// The OpenSSF Scorecard API root for scorecard jobs (default: the database's
    /// scorecard.url setting, https://api.securityscorecards.dev/).
    #[arg(long, env = "SCORECARD_API_URL")]
    pub scorecard_url: Option<String>,
    /// The OSV API root for vulnerabilities jobs (default: the database's osv.url
    /// setting, https://api.osv.dev/).
    #[arg(long, env = "OSV_API_URL")]
    pub osv_url: Option<String>,
    /// A root standing for every native package registry's host, for mirrors and tests:
    /// requests go to `{root}/{host}/{path}` (e.g. `{root}/crates.io/api/v1/crates/serde`).
    #[arg(long, env = "AVELOXIS_REGISTRY_ROOT")]
    pub registry_root: Option<String>,
}

/// Where and how git history is read.
#[derive(Debug, clap::Args)]
pub struct GitArgs {
    /// Directory holding one bare clone per repository (default:
    /// $XDG_CACHE_HOME/aveloxis/clones, else ~/.cache/aveloxis/clones).
    #[arg(long, env = "AVELOXIS_CLONE_DIR")]
    pub clone_dir: Option<PathBuf>,
    /// git processes counting lines in the facade (default: one per core).
    #[arg(long)]
    pub walk_threads: Option<usize>,
}

impl GitArgs {
    fn options(&self) -> Result<crate::phases::facade::FacadeOptions, AgentError> {
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
        let mut options = crate::phases::facade::FacadeOptions::new(dir);
        if let Some(threads) = self.walk_threads {
            options.threads = threads.max(1);
        }
        Ok(options)
    }
}

impl ForgeArgs {
    /// Any GitHub token, for any API host.
    pub(crate) fn has_tokens(&self) -> bool {
        self.github_tokens
            .iter()
            .chain(self.host_tokens.values().flatten())
            .any(|t| !t.trim().is_empty())
    }

    pub(crate) fn has_gitlab_tokens(&self) -> bool {
        self.gitlab_tokens
            .iter()
            .chain(self.gitlab_host_tokens.values().flatten())
            .any(|t| !t.trim().is_empty())
    }

    /// GitLab tokens by host, for [`crate::forge::hosts::GitlabHosts`].
    pub(crate) fn gitlab_settings(&self) -> crate::forge::hosts::GitlabSettings {
        crate::forge::hosts::GitlabSettings {
            api_url: self.gitlab_api_url.clone(),
            tokens: self.gitlab_tokens.clone(),
            by_host: self.gitlab_host_tokens.clone(),
            bearer: self.gitlab_bearer,
        }
    }

    /// Tokens by API host, for [`crate::forge::hosts::GithubHosts`].
    pub(crate) fn token_settings(&self) -> crate::forge::hosts::TokenSettings {
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
            if self.gitlab_tokens.iter().all(|t| t.trim().is_empty()) {
                self.gitlab_tokens = file.gitlab_tokens.unwrap_or_default();
            }
            if self.gitlab_api_url.is_empty() {
                self.gitlab_api_url = file.gitlab_api_url.unwrap_or_default();
            }
            self.gitlab_host_tokens = file.gitlab_host_tokens.unwrap_or_default();
            match file
                .gitlab_token_style
                .as_deref()
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                None | Some("private-token") => {}
                Some("bearer") => self.gitlab_bearer = true,
                Some(other) => {
                    return Err(AgentError::Setting {
                        name: "gitlab_token_style".into(),
                        message: format!("{other:?}: use \"private-token\" or \"bearer\""),
                    })
                }
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
        Command::DistributionStats { orphans, repo } => {
            use crate::distribution_stats::{print, Report};
            let report = match (orphans, repo) {
                (_, Some(url)) => Report::Repo(url),
                (true, None) => Report::Orphans,
                (false, None) => Report::Fleet,
            };
            print(&mut api, report).await
        }
        Command::Sbom {
            url,
            format,
            spec,
            runtime_only,
            vulnerabilities,
            output,
        } => {
            sbom(
                &mut api,
                &url,
                &format,
                spec.as_deref(),
                runtime_only,
                vulnerabilities,
                output.as_deref(),
            )
            .await
        }
        Command::Add { urls, group, forge } => match forge.with_config(config_path.as_ref()) {
            Ok(forge) => add(&mut api, &url, &urls, &group, &forge).await,
            Err(e) => Err(e),
        },
        Command::Identity {
            tasks,
            max,
            forge,
            agent,
        } => match forge.with_config(config_path.as_ref()) {
            Ok(forge) => crate::worker::identity(&api, &url, &tasks, max, &forge, &agent).await,
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

/// Writes a repository's SBOM as the extension builds it (pretty JSON, keys in jsonb's
/// order: the same data gives the same bytes).
async fn sbom(
    api: &mut Api,
    url: &str,
    format: &str,
    spec: Option<&str>,
    runtime_only: bool,
    vulnerabilities: bool,
    output: Option<&std::path::Path>,
) -> Result<(), AgentError> {
    let repo: Option<i64> = sqlx::query_scalar("SELECT aveloxis.resolve_repo($1)")
        .bind(url)
        .fetch_one(api.connection())
        .await
        .map_err(|e| AgentError::sql("aveloxis.resolve_repo", e))?;
    let Some(repo) = repo else {
        return Err(AgentError::Setting {
            name: "url".into(),
            message: format!("{url} is not registered: add it (aveloxis-agent add) and let it be analysed first"),
        });
    };
    let document: String = sqlx::query_scalar("SELECT jsonb_pretty(aveloxis.sbom($1, $2, $3, $4, $5))")
        .bind(repo)
        .bind(format)
        .bind(spec)
        .bind(if runtime_only { "runtime" } else { "all" })
        .bind(vulnerabilities)
        .fetch_one(api.connection())
        .await
        .map_err(|e| AgentError::sql("aveloxis.sbom", e))?;
    match output {
        Some(path) => {
            std::fs::write(path, format!("{document}\n")).map_err(|e| AgentError::Output {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            eprintln!("wrote the {format} SBOM of repo {repo} to {}", path.display());
        }
        None => println!("{document}"),
    }
    Ok(())
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
        "{:<16} {:>8} {:>8} {:>7} {:>11} {:>10} {:>16} {:>15}",
        "phase", "jobs", "due", "leased", "backing off", "sidelined", "oldest due", "failures (24h)"
    );
    for h in health {
        println!(
            "{:<16} {:>8} {:>8} {:>7} {:>11} {:>10} {:>16} {:>15}",
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

#[cfg(test)]
mod unit_tests {
    use super::*;

    fn forge(tokens: &[&str], api: &str) -> ForgeArgs {
        ForgeArgs {
            github_tokens: tokens.iter().map(|t| t.to_string()).collect(),
            github_api_url: api.to_string(),
            host_tokens: Default::default(),
            gitlab_tokens: Vec::new(),
            gitlab_api_url: String::new(),
            gitlab_bearer: false,
            gitlab_host_tokens: Default::default(),
            depsdev_url: None,
            ecosystems_url: None,
            contact: None,
            scorecard_url: None,
            osv_url: None,
            registry_root: None,
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
