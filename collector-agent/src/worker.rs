//! The queue loop and the work of one job: claim, renew the lease, run the phase
//! (`phases::api` for a forge's API, `phases::facade` for git), report the outcome, and
//! ride out a database that goes away. `aveloxis-agent run` and `collect` both work here.

use crate::cli::ForgeArgs;
use crate::db::{connect_pool, waiting_for_the_database, Api};
use crate::error::{is_connection_error, AgentError, Backoff};

/// Lease length of a one-shot collection; renewed while it runs.
pub(crate) const LEASE_SECS: i64 = 600;

/// The phases a repository of a platform has (aveloxis_ops.phases_of), of those this
/// agent runs.
fn agent_phases(platform_id: i16) -> &'static [&'static str] {
    match platform_id {
        1 => &[
            "collect",
            "facade",
            "distribution",
            "analysis",
            "scorecard",
            "packages",
            "vulnerabilities",
        ],
        2 => &["collect", "facade", "analysis", "packages", "vulnerabilities"],
        _ => &["facade", "analysis", "packages", "vulnerabilities"],
    }
}

/// The phases `collect` and `run` know.
const PHASES: [&str; 7] = [
    "collect",
    "facade",
    "distribution",
    "analysis",
    "scorecard",
    "packages",
    "vulnerabilities",
];

/// The fleet-wide identity tasks `run` and `identity` know (not jobs of a repository:
/// batches of contributors, aveloxis.claim_identity_batch).
const IDENTITY_TASKS: [&str; 2] = ["enrich", "search"];

mod workshop;
use workshop::Workshop;

#[allow(clippy::too_many_arguments)]
pub(crate) async fn collect(
    api: &mut Api,
    database_url: &str,
    urls: &[String],
    phases: &[String],
    forge: &ForgeArgs,
    git: crate::phases::facade::FacadeOptions,
    agent: &str,
) -> Result<(), AgentError> {
    if let Some(unknown) = phases.iter().find(|p| !PHASES.contains(&p.as_str())) {
        return Err(AgentError::Setting {
            name: "--phases".into(),
            message: format!(
                "unknown phase {unknown:?}: collect runs the phases collect, facade, distribution, analysis, \
                 scorecard, packages and vulnerabilities"
            ),
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
            if let Err(e) = shop.gitlab.for_repo(url) {
                eprintln!(
                    "error: {url}: collecting GitLab data needs a token for its host: {e}; --phases facade collects \
                     its git history alone"
                );
                failures.push(url.clone());
                continue;
            }
        }
        if platform == 1 && (wanted.contains(&"collect") || wanted.contains(&"distribution")) {
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
            let job = match crate::queue::claim_repo(db, agent, repo_id, phase, LEASE_SECS).await {
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

/// `aveloxis-agent identity`: one batch of each task on each identity platform this agent
/// has tokens for, now (pacing aside: the batch is claimed if contributors are due).
pub(crate) async fn identity(
    api: &Api,
    database_url: &str,
    tasks: &[String],
    max: Option<i32>,
    forge: &ForgeArgs,
    agent: &str,
) -> Result<(), AgentError> {
    if let Some(unknown) = tasks.iter().find(|t| !IDENTITY_TASKS.contains(&t.as_str())) {
        return Err(AgentError::Setting {
            name: "--tasks".into(),
            message: format!("unknown identity task {unknown:?}: the tasks are enrich and search"),
        });
    }
    if !forge.has_tokens() && !forge.has_gitlab_tokens() {
        return Err(AgentError::Setting {
            name: "GITHUB_TOKENS / GITLAB_TOKENS".into(),
            message: "identity runs ask a forge: give its tokens".into(),
        });
    }
    let git = crate::phases::facade::FacadeOptions::new(std::env::temp_dir());
    let shop = Workshop::open(api, database_url, forge, git, 2, std::time::Duration::ZERO).await?;
    let runs = shop.identity_round(agent, tasks, max).await;
    for run in &runs {
        println!("{}", run.line());
    }
    if runs.is_empty() {
        println!("nothing due (aveloxis.identity_health() says what waits and why)");
    }
    shop.db.close().await;
    Ok(())
}

/// A GitHub client per API host with tokens, each spending its own host's tokens through
/// the shared budgets.
pub(crate) fn github_hosts(
    db: &sqlx::PgPool,
    forge: &ForgeArgs,
) -> Result<crate::forge::hosts::GithubHosts, AgentError> {
    use crate::forge::tokens::TokenPool;

    crate::forge::hosts::GithubHosts::new(&forge.token_settings(), |tokens| TokenPool::new(tokens, 1, db.clone()))
        .map_err(|message| AgentError::Setting {
            name: "GitHub API hosts and tokens (--github-api-url, [tokens])".into(),
            message,
        })
}

/// A GitLab client per instance with tokens: gitlab.com, and each self-managed host at the
/// API root the database declares for it (aveloxis.forge_hosts()).
pub(crate) async fn gitlab_hosts(
    db: &sqlx::PgPool,
    forge: &ForgeArgs,
) -> Result<crate::forge::hosts::GitlabHosts, AgentError> {
    use crate::forge::tokens::TokenPool;

    let settings = forge.gitlab_settings();
    let declared: Vec<(String, String)> = if settings.by_host.is_empty() {
        Vec::new()
    } else {
        sqlx::query_as("SELECT host, api_url FROM aveloxis.forge_hosts() WHERE platform_id = 2")
            .fetch_all(db)
            .await
            .map_err(|e| AgentError::sql("reading the declared GitLab hosts (aveloxis.forge_hosts())", e))?
    };
    crate::forge::hosts::GitlabHosts::new(&settings, &declared, |tokens| TokenPool::new(tokens, 2, db.clone())).map_err(
        |message| AgentError::Setting {
            name: "GitLab hosts and tokens (--gitlab-api-url, GITLAB_TOKENS, [gitlab_host_tokens])".into(),
            message,
        },
    )
}

/// A database pool and a GitHub client spending the given tokens (`add` expanding owners).
pub(crate) async fn connect_github(
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
fn heartbeat(db: &sqlx::PgPool, job: &crate::queue::ClaimedJob) -> tokio::task::JoinHandle<()> {
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
fn job_label(job: &crate::queue::ClaimedJob) -> String {
    format!("repo {} ({}, job {})", job.repo_id, job.phase, job.job_id)
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
    Job(crate::queue::ClaimedJob),
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
        match crate::queue::claim(db, name, phases, 1, LEASE_SECS).await {
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
pub(crate) struct RunSettings {
    pub(crate) workers: usize,
    pub(crate) poll_seconds: u64,
    pub(crate) once: bool,
    /// How long to keep trying at start while PostgreSQL cannot be reached.
    pub(crate) connect_wait: std::time::Duration,
}

pub(crate) async fn run_queue(
    api: &Api,
    database_url: &str,
    phases: &[String],
    forge: &ForgeArgs,
    git: crate::phases::facade::FacadeOptions,
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
        let mut all: Vec<String> = if forge.has_tokens() {
            vec!["collect".into(), "facade".into(), "distribution".into()]
        } else if forge.has_gitlab_tokens() {
            vec!["collect".into(), "facade".into()]
        } else {
            vec!["facade".into()]
        };
        // None needs a forge token: the clone is local, Scorecard, the registries and OSV
        // are public.
        all.push("analysis".into());
        all.push("scorecard".into());
        all.push("packages".into());
        all.push("vulnerabilities".into());
        if forge.has_tokens() || forge.has_gitlab_tokens() {
            all.push("enrich".into());
        }
        if forge.has_tokens() {
            all.push("search".into());
        }
        all
    } else {
        phases.to_vec()
    };
    if let Some(unknown) = phases
        .iter()
        .find(|p| !PHASES.contains(&p.as_str()) && !IDENTITY_TASKS.contains(&p.as_str()))
    {
        return Err(AgentError::Setting {
            name: "--phases".into(),
            message: format!(
                "unknown phase {unknown:?}: run claims the phases collect, facade, distribution, analysis, \
                 scorecard, packages and vulnerabilities, and the identity tasks enrich and search"
            ),
        });
    }
    let (identity, phases): (Vec<String>, Vec<String>) =
        phases.into_iter().partition(|p| IDENTITY_TASKS.contains(&p.as_str()));
    let identity = Arc::new(identity);
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
        // The first worker also runs the identity tasks between jobs (their pacing and
        // batch sizes are the database's settings: enrich.every, search.batch, ...).
        let identity = if n == 1 { identity.clone() } else { Arc::new(Vec::new()) };
        tasks.push(tokio::spawn(async move {
            let phases: Vec<&str> = phases.iter().map(String::as_str).collect();
            let mut done = 0usize;
            let mut failures = 0usize;
            let mut backoff = Backoff::database();
            while !*stop.borrow() {
                let runs = shop.identity_round(&name, &identity, None).await;
                for run in &runs {
                    println!("identity\t{}", run.line());
                }
                done += runs.len();
                let claimed = if phases.is_empty() {
                    Claimed::Nothing
                } else {
                    claim_next(&shop.db, &name, &phases, &mut backoff, &mut stop, &mut failures).await
                };
                let job = match claimed {
                    Claimed::Job(job) => job,
                    Claimed::Stopped => break,
                    Claimed::Nothing if !runs.is_empty() => continue,
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
}
