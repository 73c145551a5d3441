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
    /// Register repositories by URL or absolute local path.
    Add {
        /// GitHub/GitLab URLs, git remotes or absolute paths of local git repositories.
        #[arg(required = true)]
        urls: Vec<String>,
        /// Repo group to add them to.
        #[arg(long, default_value = "Default")]
        group: String,
    },
}

pub async fn run(cli: Cli) -> Result<(), AgentError> {
    let url = config::database_url(cli.database_url, cli.config.as_ref())?;
    let mut api = Api::connect(&url).await?;
    let result = match cli.command {
        Command::Status => status(&mut api).await,
        Command::Add { urls, group } => add(&mut api, &urls, &group).await,
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
    Ok(())
}

async fn add(api: &mut Api, urls: &[String], group: &str) -> Result<(), AgentError> {
    // Every URL is tried; failures are reported together so none is silently skipped.
    let mut failures = Vec::new();
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
