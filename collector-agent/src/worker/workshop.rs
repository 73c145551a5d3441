//! The workshop of a worker: what every job needs (the database, the forges' clients and
//! tokens, the facade's options, the registries' and OSV's roots, one polite HTTP client),
//! opened once per agent, and the run of one job of any phase.

use super::*;

/// What every job of this agent needs: the database, a GitHub client per API host with
/// tokens, and the facade's options.
pub(super) struct Workshop {
    pub(super) db: sqlx::PgPool,
    /// github.com's API and each GitHub Enterprise host that has tokens; each host's tokens
    /// go to that host only (API requests, and git over https to its web host).
    pub(super) github: crate::forge::hosts::GithubHosts,
    /// gitlab.com's API and each self-managed GitLab host that has tokens, likewise.
    pub(super) gitlab: crate::forge::hosts::GitlabHosts,
    pub(super) git: crate::phases::facade::FacadeOptions,
    /// deps.dev and ecosyste.ms, for distribution scans (and its client for the Scorecard API).
    pub(super) registries: crate::phases::distribution::Registries,
    /// The OpenSSF Scorecard API root, for scorecard jobs.
    pub(super) scorecard: url::Url,
    /// The registries of packages jobs, and OSV's root for vulnerabilities jobs, asked
    /// through one polite client (User-Agent, per-host pacing, Retry-After).
    pub(super) packages: crate::phases::packages::PackageSources,
    pub(super) osv: url::Url,
    pub(super) polite: crate::phases::http::PoliteClient,
}

/// A URL setting as an API root (with its trailing slash).
fn api_root(name: &str, value: &str) -> Result<url::Url, AgentError> {
    let value = if value.ends_with('/') {
        value.to_string()
    } else {
        format!("{value}/")
    };
    url::Url::parse(&value).map_err(|e| AgentError::Setting {
        name: name.into(),
        message: format!("{value}: {e}"),
    })
}

impl Workshop {
    pub(super) async fn open(
        api: &Api,
        database_url: &str,
        forge: &ForgeArgs,
        git: crate::phases::facade::FacadeOptions,
        connections: u32,
        connect_wait: std::time::Duration,
    ) -> Result<Workshop, AgentError> {
        let db = waiting_for_the_database(connect_wait, Backoff::database(), || {
            connect_pool(api, database_url, connections)
        })
        .await?;
        let github = github_hosts(&db, forge)?;
        let gitlab = gitlab_hosts(&db, forge).await?;
        // The registries' roots and the contact: the agent's flags, else the database's
        // settings (an extension older than 0.13.0 has none: the public services').
        use crate::phases::distribution::{DEFAULT_DEPSDEV_URL, DEFAULT_ECOSYSTEMS_URL};
        let (depsdev, ecosystems, contact): (String, String, Option<String>) =
            match sqlx::query_as("SELECT depsdev_url, ecosystems_url, contact FROM aveloxis.distribution_settings()")
                .fetch_one(&db)
                .await
            {
                Ok(settings) => settings,
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42883") => {
                    (DEFAULT_DEPSDEV_URL.into(), DEFAULT_ECOSYSTEMS_URL.into(), None)
                }
                Err(e) => return Err(AgentError::sql("aveloxis.distribution_settings()", e)),
            };
        let registries = crate::phases::distribution::Registries::new(
            forge.depsdev_url.as_deref().unwrap_or(&depsdev),
            forge.ecosystems_url.as_deref().unwrap_or(&ecosystems),
            forge.contact.clone().or(contact.clone()),
        )
        .map_err(|message| AgentError::Setting {
            name: "--depsdev-url / --ecosystems-url".into(),
            message,
        })?;
        // The Scorecard API root: the flag, else the database's setting (an extension older
        // than 0.15.0 has none: the public API).
        let scorecard_default: String =
            match sqlx::query_scalar("SELECT scorecard_url FROM aveloxis.scorecard_settings()")
                .fetch_one(&db)
                .await
            {
                Ok(url) => url,
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42883") => {
                    "https://api.securityscorecards.dev/".into()
                }
                Err(e) => return Err(AgentError::sql("aveloxis.scorecard_settings()", e)),
            };
        let scorecard_root = forge.scorecard_url.clone().unwrap_or(scorecard_default);
        let scorecard_root = if scorecard_root.ends_with('/') {
            scorecard_root
        } else {
            format!("{scorecard_root}/")
        };
        let scorecard = url::Url::parse(&scorecard_root).map_err(|e| AgentError::Setting {
            name: "--scorecard-url".into(),
            message: format!("{scorecard_root}: {e}"),
        })?;
        // OSV's root: the flag, else the database's setting (none before 0.16.0).
        let osv_default: String = match sqlx::query_scalar("SELECT url FROM aveloxis.osv_settings()")
            .fetch_one(&db)
            .await
        {
            Ok(url) => url,
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42883") => "https://api.osv.dev/".into(),
            Err(e) => return Err(AgentError::sql("aveloxis.osv_settings()", e)),
        };
        let osv = api_root("--osv-url", forge.osv_url.as_deref().unwrap_or(&osv_default))?;
        let packages = crate::phases::packages::PackageSources {
            depsdev: api_root("--depsdev-url", forge.depsdev_url.as_deref().unwrap_or(&depsdev))?,
            registry_root: forge
                .registry_root
                .as_deref()
                .map(|r| api_root("--registry-root", r))
                .transpose()?,
        };
        let polite = crate::phases::http::PoliteClient::new(forge.contact.as_deref().or(contact.as_deref())).map_err(
            |message| AgentError::Setting {
                name: "--contact".into(),
                message,
            },
        )?;
        Ok(Workshop {
            db,
            github,
            gitlab,
            git,
            registries,
            scorecard,
            packages,
            osv,
            polite,
        })
    }

    /// Reports a phase's result to the queue (`complete` or `fail` with its class; again
    /// while the database is away) and gives the operator's line and whether it failed.
    pub(super) async fn settle<T, E>(
        &self,
        agent: &str,
        job: &crate::queue::ClaimedJob,
        result: &Result<T, E>,
    ) -> Result<(String, bool), sqlx::Error>
    where
        T: crate::phases::Outcome,
        E: crate::phases::Failure,
    {
        let report = match result {
            Ok(outcome) => Ok(outcome.report()),
            Err(e) => Err((e.to_string(), e.class())),
        };
        let send = || crate::queue::report(&self.db, agent, job, false, report.clone());
        let first = send().await;
        redeliver(&job_label(job), first, Backoff::database(), REPORT_ATTEMPTS, send).await?;
        Ok(match result {
            Ok(outcome) => (outcome.summary(), false),
            Err(e) => (format!("{}: {e}", job.phase), true),
        })
    }

    /// One batch of each identity task on each identity platform this agent has tokens for
    /// (search-resolve on GitHub hosts only: GitLab's search by email is for administrators).
    /// Nothing due, or an extension older than 0.14.0: no runs.
    pub(super) async fn identity_round(
        &self,
        agent: &str,
        tasks: &[String],
        max: Option<i32>,
    ) -> Vec<crate::phases::identity::IdentityRun> {
        use crate::phases::identity::run_batch;

        let mut runs = Vec::new();
        if tasks.is_empty() {
            return runs;
        }
        let platforms: Vec<(i16, i16, String)> =
            match sqlx::query_as("SELECT platform_id, platform_kind, platform_host FROM aveloxis.identity_platforms()")
                .fetch_all(&self.db)
                .await
            {
                Ok(platforms) => platforms,
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42883") => return runs,
                Err(e) => {
                    tracing::warn!("identity runs: reading the identity platforms failed: {e}");
                    return runs;
                }
            };
        for (platform, kind, host) in platforms {
            for task in tasks {
                if task == "search" && kind != 1 {
                    continue;
                }
                let result = match kind {
                    1 => match self.github.for_host(&host) {
                        Some(client) => run_batch(&self.db, agent, task, platform, kind, client, max).await,
                        None => continue,
                    },
                    2 => match self.gitlab.for_host(&host) {
                        Some(client) => run_batch(&self.db, agent, task, platform, kind, client, max).await,
                        None => continue,
                    },
                    _ => continue,
                };
                match result {
                    Ok(Some(run)) => runs.push(run),
                    Ok(None) => {}
                    Err(e) => tracing::warn!("{task} run on {host} failed: {e}"),
                }
            }
        }
        runs
    }

    /// Completes or fails a collect job; the report is sent again while the database cannot
    /// be reached ([`redeliver`]).
    pub(super) async fn finish_collect(
        &self,
        agent: &str,
        job: &crate::queue::ClaimedJob,
        result: Result<crate::phases::api::Outcome, (crate::phases::api::Outcome, crate::forge::ForgeError)>,
    ) -> Result<(String, bool), sqlx::Error> {
        use crate::phases::api as collect;

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
            crate::queue::report(&self.db, agent, job, true, again.clone())
        })
        .await?;
        Ok((line, failed))
    }

    /// Runs one claimed job and reports it to the queue. Returns the line to print and
    /// whether the job failed.
    pub(super) async fn work(
        &self,
        agent: &str,
        job: &crate::queue::ClaimedJob,
        bar: Option<&indicatif::ProgressBar>,
    ) -> Result<(String, bool), sqlx::Error> {
        use crate::phases::{api as collect, facade};

        let beat = heartbeat(&self.db, job);
        // The client of the repository's own API host, or why there is none.
        let github = self.github.for_repo(&job.repo_git);
        let gitlab = self.gitlab.for_repo(&job.repo_git);
        let result = match (job.phase.as_str(), job.platform_id, github) {
            ("collect", 1, Ok(github)) => {
                let result = collect::collect_github(github, &self.db, job, bar).await;
                self.finish_collect(agent, job, result).await
            }
            ("collect", 2, _) if gitlab.is_ok() || !self.gitlab.is_empty() => match gitlab {
                Ok((gitlab, keyset)) => {
                    let result = crate::phases::gitlab::collect_gitlab(gitlab, keyset, &self.db, job, bar).await;
                    self.finish_collect(agent, job, result).await
                }
                // Tokens, but none for this project's host: `auth`, naming the host.
                Err(no_token) => {
                    self.finish_collect(agent, job, Err((collect::Outcome::default(), no_token)))
                        .await
                }
            },
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
            ("distribution", 1, Ok(github)) => {
                use crate::phases::distribution as dist;
                if let Some(bar) = bar {
                    bar.set_message("distribution: registries, releases, packages and manifests");
                }
                let result = dist::scan_distribution(github, &self.registries, &self.db, job).await;
                let failed = !result.as_ref().is_ok_and(dist::ScanOutcome::answered);
                let first = dist::finish(&self.db, agent, job, &result).await;
                redeliver(&job_label(job), first, Backoff::database(), REPORT_ATTEMPTS, || {
                    dist::finish(&self.db, agent, job, &result)
                })
                .await
                .map(|()| {
                    let line = match &result {
                        Ok(o) => o.summary(),
                        Err(e) => format!("distribution: {e}"),
                    };
                    (line, failed)
                })
            }
            ("scorecard", _, _) => {
                if let Some(bar) = bar {
                    bar.set_message("scorecard: the OpenSSF Scorecard API");
                }
                let result =
                    crate::phases::scorecard::read_scorecard(&self.registries, &self.scorecard, &self.db, job).await;
                self.settle(agent, job, &result).await
            }
            ("packages", _, _) => {
                if let Some(bar) = bar {
                    bar.set_message("packages: the registries, for what the package cache lacks");
                }
                let client = self.polite.for_job();
                let result = crate::phases::packages::fetch_packages(&self.db, job, &client, &self.packages).await;
                self.settle(agent, job, &result).await
            }
            ("vulnerabilities", _, _) => {
                if let Some(bar) = bar {
                    bar.set_message("vulnerabilities: OSV");
                }
                let client = self.polite.for_job();
                let result = crate::phases::vulnerabilities::scan(&self.db, job, &client, &self.osv).await;
                self.settle(agent, job, &result).await
            }
            ("analysis", _, _) => {
                if let Some(bar) = bar {
                    bar.set_message("analysis: counting the HEAD tree and reading its dependency files");
                }
                let result = crate::phases::analysis::analyze(&self.db, job, &self.git.clone_dir).await;
                self.settle(agent, job, &result).await
            }
            (phase, platform, github) => {
                let why = if (phase == "collect" || phase == "distribution") && platform == 1 && github.is_err() {
                    "no GitHub tokens on this agent (GITHUB_TOKENS)"
                } else if phase == "collect" && platform == 2 {
                    "no GitLab tokens on this agent (GITLAB_TOKENS)"
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
