//! The queue as the agent sees it: claiming jobs, staging under a lease, and reporting
//! a job's end (`aveloxis.claim`, `claim_repo`, `stage`, `complete`, `fail`).

use serde_json::Value;
use sqlx::postgres::PgPool;

/// A job as `aveloxis.claim` / `claim_repo` hand it out.
#[derive(Clone, Debug)]
pub struct ClaimedJob {
    pub job_id: i64,
    pub repo_id: i64,
    pub phase: String,
    pub repo_git: String,
    pub platform_id: i16,
    /// RFC 3339, or None for a full collection.
    pub since: Option<String>,
    pub attempt: i32,
    pub agent_state: Value,
    /// The lease's receipt: every later call about this job (heartbeat, stage, complete,
    /// fail) proves the lease with it. Never logged.
    pub lease_token: uuid::Uuid,
}

const JOB_COLUMNS: &str = "job_id, repo_id, phase, repo_git, platform_id,
    to_char(since AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS since, attempt, agent_state, lease_token";

fn job_from_row(row: &sqlx::postgres::PgRow) -> ClaimedJob {
    use sqlx::Row;
    ClaimedJob {
        job_id: row.get("job_id"),
        repo_id: row.get("repo_id"),
        phase: row.get("phase"),
        repo_git: row.get("repo_git"),
        platform_id: row.get("platform_id"),
        since: row.get("since"),
        attempt: row.get("attempt"),
        agent_state: row.get("agent_state"),
        lease_token: row.get("lease_token"),
    }
}

/// Leases up to `max` due jobs of `phases`.
pub async fn claim(
    db: &PgPool,
    agent: &str,
    phases: &[&str],
    max: i32,
    lease_secs: i64,
) -> Result<Vec<ClaimedJob>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {JOB_COLUMNS} FROM aveloxis.claim($1, $2, $3, make_interval(secs => $4))"
    ))
    .bind(agent)
    .bind(phases)
    .bind(max)
    .bind(lease_secs as f64)
    .fetch_all(db)
    .await?;
    Ok(rows.iter().map(job_from_row).collect())
}

/// Leases one repository's job now (the one-shot `collect`).
pub async fn claim_repo(
    db: &PgPool,
    agent: &str,
    repo_id: i64,
    phase: &str,
    lease_secs: i64,
) -> Result<ClaimedJob, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {JOB_COLUMNS} FROM aveloxis.claim_repo($1, $2, $3, make_interval(secs => $4))"
    ))
    .bind(agent)
    .bind(repo_id)
    .bind(phase)
    .bind(lease_secs as f64)
    .fetch_one(db)
    .await?;
    Ok(job_from_row(&row))
}

/// Stages a job's payloads of one entity in one call under its lease (staging contract v1).
pub async fn stage(db: &PgPool, job: &ClaimedJob, entity: &str, payloads: &[String]) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT aveloxis.stage($1, $2, $3)")
        .bind(job.lease_token)
        .bind(entity)
        .bind(payloads)
        .execute(db)
        .await?;
    Ok(())
}

/// Stages payloads of one entity, each with its context (the parent a GitLab event or
/// note needs; JSON null for none), in one call under the job's lease.
pub async fn stage_with_contexts(
    db: &PgPool,
    job: &ClaimedJob,
    entity: &str,
    payloads: &[String],
    contexts: &[Value],
) -> Result<(), sqlx::Error> {
    let contexts: Vec<Option<String>> = contexts.iter().map(|c| (!c.is_null()).then(|| c.to_string())).collect();
    sqlx::query("SELECT aveloxis.stage($1, $2, $3, $4::text[]::jsonb[])")
        .bind(job.lease_token)
        .bind(entity)
        .bind(payloads)
        .bind(contexts)
        .execute(db)
        .await?;
    Ok(())
}

/// Reports a job to the queue: `aveloxis.complete` with its report, or `aveloxis.fail`
/// with the error's message and class. With `drain_first`, what was staged is drained
/// before (nothing fetched is lost, even when the job failed).
pub async fn report(
    db: &PgPool,
    agent: &str,
    job: &ClaimedJob,
    drain_first: bool,
    result: Result<Value, (String, &'static str)>,
) -> Result<(), sqlx::Error> {
    if drain_first {
        sqlx::query("CALL aveloxis.drain($1)")
            .bind(job.repo_id)
            .execute(db)
            .await?;
    }
    match result {
        Ok(report) => {
            sqlx::query("SELECT aveloxis.complete($1, $2, $3)")
                .bind(job.job_id)
                .bind(job.lease_token)
                .bind(report)
                .execute(db)
                .await?;
        }
        Err((error, class)) => {
            sqlx::query("SELECT aveloxis.fail($1, $2, $3, $4)")
                .bind(job.job_id)
                .bind(job.lease_token)
                .bind(&error)
                .bind(class)
                .execute(db)
                .await?;
            tracing::warn!(repo = job.repo_id, phase = %job.phase, agent, class, "job failed: {error}");
        }
    }
    Ok(())
}
