//! The work queue end to end, through real sessions: leases under concurrency, expiry,
//! the backoff schedule on a controlled clock, pg_cron running tick().

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use harness::sqlx::types::Uuid;
use harness::sqlx::{self, PgConnection, Row};
use harness::{cluster_url, TestDb};

async fn add_repo(conn: &mut PgConnection, url: &str) -> i64 {
    sqlx::query_scalar("SELECT aveloxis.add_repo($1)")
        .bind(url)
        .fetch_one(conn)
        .await
        .unwrap()
}

async fn set_clock(conn: &mut PgConnection, offset: &str) {
    sqlx::query("SELECT aveloxis.set_setting('clock.offset', $1)")
        .bind(offset)
        .execute(conn)
        .await
        .unwrap();
}

/// (job_id, repo_id, phase, since is null, full_run, attempt, lease_token)
async fn claim(
    conn: &mut PgConnection,
    agent: &str,
    phases: &[&str],
    max: i32,
) -> Vec<(i64, i64, String, bool, bool, i32, Uuid)> {
    sqlx::query_as(
        "SELECT job_id, repo_id, phase, since IS NULL, full_run, attempt, lease_token
         FROM aveloxis.claim($1, $2, $3, '5 minutes')",
    )
    .bind(agent)
    .bind(phases)
    .bind(max)
    .fetch_all(conn)
    .await
    .unwrap()
}

async fn complete(conn: &mut PgConnection, job: i64, token: Uuid, outcome: &str) {
    sqlx::query("SELECT aveloxis.complete($1, $2, $3::jsonb)")
        .bind(job)
        .bind(token)
        .bind(outcome)
        .execute(conn)
        .await
        .unwrap();
}

async fn why(conn: &mut PgConnection, repo: i64) -> BTreeMap<String, (String, String)> {
    sqlx::query("SELECT phase, status, reason FROM aveloxis.why_not_collected($1)")
        .bind(repo)
        .fetch_all(conn)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect()
}

#[tokio::test]
async fn add_repo_enqueues_its_phases_and_a_run_goes_round() {
    let db = TestDb::with_extension("queue_round").await;
    let mut conn = db.connect().await;
    let gh = add_repo(&mut conn, "https://github.com/o/r").await;
    let gl = add_repo(&mut conn, "https://gitlab.com/g/p").await;
    let git = add_repo(&mut conn, "/srv/git/local.git").await;
    add_repo(&mut conn, "https://github.com/O/R.git").await; // the same repository: no new jobs
    let phases: Vec<(i64, String)> = sqlx::query_as("SELECT repo_id, phase FROM aveloxis_ops.jobs ORDER BY 1, 2")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let expected: Vec<(i64, String)> = [
        (gh, "analysis"),
        (gh, "collect"),
        (gh, "distribution"),
        (gh, "facade"),
        (gh, "packages"),
        (gh, "scorecard"),
        (gh, "vulnerabilities"),
        (gl, "analysis"),
        (gl, "collect"),
        (gl, "facade"),
        (gl, "packages"),
        (gl, "vulnerabilities"),
        (git, "analysis"),
        (git, "facade"),
        (git, "packages"),
        (git, "vulnerabilities"),
    ]
    .into_iter()
    .map(|(r, p)| (r, p.to_string()))
    .collect();
    assert_eq!(phases, expected);

    let got = claim(&mut conn, "agent-a", &["collect"], 10).await;
    assert_eq!(got.len(), 2, "both forge repositories' collect jobs are due");
    let (job, repo, _, since_null, full, attempt, token) = got[0].clone();
    assert_eq!(
        (repo, since_null, full, attempt),
        (gh, true, true, 1),
        "a first run is full"
    );
    let reasons = why(&mut conn, gh).await;
    assert_eq!(reasons["collect"].0, "leased");
    assert!(
        reasons["collect"].1.contains("leased by agent-a"),
        "{}",
        reasons["collect"].1
    );

    let heartbeat: Vec<i64> = sqlx::query_scalar("SELECT aveloxis.heartbeat(ARRAY[$1])")
        .bind(token)
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(heartbeat, [job]);
    // Whoever does not hold the token can neither renew nor finish the lease, whatever
    // agent name it gives (0.6.0 let complete(job, outcome, NULL) through).
    let forged = Uuid::from_u128(0x1234);
    let not_mine: Vec<i64> = sqlx::query_scalar("SELECT aveloxis.heartbeat(ARRAY[$1])")
        .bind(forged)
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert!(not_mine.is_empty(), "a forged token cannot renew the lease");
    for token in [Some(forged), None] {
        let err = sqlx::query("SELECT aveloxis.complete($1, $2, '{}')")
            .bind(job)
            .bind(token)
            .execute(&mut conn)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("lease token"), "{err}");
    }
    complete(
        &mut conn,
        job,
        token,
        r#"{"complete": true, "counts": {"issues": 3}, "state": {"etag": "x"}}"#,
    )
    .await;
    // The token is spent with its run.
    let err = sqlx::query("SELECT aveloxis.fail($1, $2, 'late', 'transient')")
        .bind(job)
        .bind(token)
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("its lease token is spent"), "{err}");
    let reasons = why(&mut conn, gh).await;
    assert_eq!(reasons["collect"].0, "waiting");
    assert!(
        reasons["collect"].1.contains("cadence 1 day"),
        "{}",
        reasons["collect"].1
    );

    // A day later the next run is incremental, from the last run's start minus the overlap,
    // and carries the agent's state.
    set_clock(&mut conn, "1 day 1 second").await;
    let row = sqlx::query(
        "SELECT job_id, full_run, since = (SELECT started_at FROM aveloxis_ops.job_runs WHERE job_id = $1
                                          ORDER BY run_id LIMIT 1) - interval '1 hour', agent_state, lease_token
         FROM aveloxis.claim('agent-a', ARRAY['collect'], 10) WHERE repo_id = $2",
    )
    .bind(job)
    .bind(gh)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(row.get::<i64, _>(0), job);
    assert!(!row.get::<bool, _>(1));
    assert!(row.get::<bool, _>(2));
    assert_eq!(row.get::<serde_json::Value, _>(3), serde_json::json!({"etag": "x"}));

    // force_recollect: the next run is full, and the flag clears on success.
    complete(&mut conn, job, row.get(4), "{}").await;
    sqlx::query("SELECT aveloxis.force_recollect($1)")
        .bind(gh)
        .execute(&mut conn)
        .await
        .unwrap();
    let forced = claim(&mut conn, "agent-a", &["collect"], 10).await;
    let forced = forced.iter().find(|j| j.0 == job).expect("forced job is due at once");
    assert!(forced.4 && forced.3, "forced run is full, with no since");
    complete(&mut conn, job, forced.6, "{}").await;
    let flag: bool = sqlx::query_scalar("SELECT force_full FROM aveloxis_ops.jobs WHERE job_id = $1")
        .bind(job)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(!flag);

    let health: Vec<(String, i64)> = sqlx::query_as("SELECT phase, jobs FROM aveloxis.queue_health()")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        health,
        [
            ("collect".into(), 2),
            ("facade".into(), 3),
            ("distribution".into(), 1),
            ("analysis".into(), 3),
            ("scorecard".into(), 1),
            ("packages".into(), 3),
            ("vulnerabilities".into(), 3)
        ]
    );
    let history: i64 = sqlx::query_scalar("SELECT count(*) FROM aveloxis.job_history($1)")
        .bind(gh)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(history, 3);
}

#[tokio::test]
async fn sixteen_claimers_take_every_job_exactly_once() {
    let db = TestDb::with_extension("queue_concurrent").await;
    let mut conn = db.connect().await;
    sqlx::query("SELECT aveloxis.add_repo('https://github.com/o/r' || g) FROM generate_series(1, 2382) g")
        .execute(&mut conn)
        .await
        .unwrap();
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM aveloxis_ops.jobs")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(total, 16_674);

    let mut tasks = Vec::new();
    for claimer in 0..16 {
        let mut c = db.connect().await;
        tasks.push(tokio::spawn(async move {
            let agent = format!("claimer-{claimer}");
            let mut taken = 0usize;
            loop {
                let jobs: Vec<(i64, Uuid)> =
                    sqlx::query_as("SELECT job_id, lease_token FROM aveloxis.claim($1, aveloxis_ops.all_phases(), 25)")
                        .bind(&agent)
                        .fetch_all(&mut c)
                        .await
                        .unwrap();
                if jobs.is_empty() {
                    // Nothing returns to the queue in this test: if unleased due jobs are left
                    // now, they were there when this claim came back empty. FOR UPDATE waits
                    // for claims still in flight (they hold the rows SKIP LOCKED passed over)
                    // and re-reads those rows once they are leased; without it, another
                    // claimer's uncommitted lease looked like a job left behind (a flaky
                    // failure seen once in CI: 27 such jobs).
                    let left: i64 = sqlx::query_scalar(
                        "SELECT count(*) FROM (SELECT FROM aveloxis_ops.jobs
                                               WHERE lease_owner IS NULL AND last_success_at IS NULL
                                               FOR UPDATE) unleased",
                    )
                    .fetch_one(&mut c)
                    .await
                    .unwrap();
                    assert_eq!(left, 0, "{agent} came back empty while jobs were due");
                    return taken;
                }
                for (job, token) in &jobs {
                    complete(&mut c, *job, *token, "{}").await;
                }
                taken += jobs.len();
            }
        }));
    }
    let mut per_claimer = Vec::new();
    for t in tasks {
        per_claimer.push(t.await.unwrap());
    }
    assert_eq!(per_claimer.iter().sum::<usize>(), 16_674);
    assert!(
        per_claimer.iter().all(|n| *n > 0),
        "every claimer worked: {per_claimer:?}"
    );
    let (runs, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT job_id) FROM aveloxis_ops.job_runs")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!((runs, distinct), (16_674, 16_674), "each job claimed exactly once");
}

#[tokio::test]
async fn an_abandoned_lease_expires_and_the_job_completes_elsewhere() {
    let db = TestDb::with_extension("queue_lease_expiry").await;
    let mut conn = db.connect().await;
    add_repo(&mut conn, "/srv/git/one.git").await;
    let mut lost = db.connect().await;
    let first = claim(&mut lost, "agent-lost", &["facade"], 1).await;
    assert_eq!(first.len(), 1);
    let (job, lost_token) = (first[0].0, first[0].6);
    // The claimer's connection dies mid-lease.
    sqlx::query("SELECT pg_terminate_backend(pg_backend_pid())")
        .execute(&mut lost)
        .await
        .ok();
    drop(lost);

    assert!(
        claim(&mut conn, "agent-b", &["facade"], 1).await.is_empty(),
        "the lease still holds"
    );
    set_clock(&mut conn, "6 minutes").await;
    let second = claim(&mut conn, "agent-b", &["facade"], 1).await;
    assert_eq!(second.len(), 1);
    assert_eq!((second[0].0, second[0].5), (job, 2), "the expired attempt is counted");
    // The lost agent comes back while agent-b holds the job: its token is stale, refused
    // with the reason, for staging and finishing alike.
    for sql in [
        "SELECT aveloxis.stage($2, 'commit', ARRAY['{}']) WHERE $1 > 0",
        "SELECT aveloxis.complete($1, $2, '{}')",
    ] {
        let err = sqlx::query(sql)
            .bind(job)
            .bind(lost_token)
            .execute(&mut conn)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("expired and the job was claimed again"),
            "{sql}: {err}"
        );
    }
    complete(&mut conn, job, second[0].6, "{}").await;

    let runs: Vec<(String, i32, String)> =
        sqlx::query_as("SELECT agent, attempt, outcome FROM aveloxis_ops.job_runs ORDER BY run_id")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(
        runs,
        [
            ("agent-lost".into(), 1, "lease_expired".into()),
            ("agent-b".into(), 2, "complete".into())
        ]
    );
    // The lost agent's late report is refused: someone else finished the job.
    let err = sqlx::query("SELECT aveloxis.complete($1, $2, '{}')")
        .bind(job)
        .bind(lost_token)
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("expired and the job was claimed again"),
        "{err}"
    );
}

#[tokio::test]
async fn transient_failures_back_off_quadratically_then_sideline() {
    let db = TestDb::with_extension("queue_backoff").await;
    let mut conn = db.connect().await;
    let repo = add_repo(&mut conn, "/srv/git/flaky.git").await;
    let mut clock_s: i64 = 0;
    let mut waits = Vec::new();
    for failure in 1..=10 {
        set_clock(&mut conn, &format!("{clock_s} seconds")).await;
        let got = claim(&mut conn, "agent", &["facade"], 1).await;
        assert_eq!(got.len(), 1, "claimable again before failure {failure}");
        let (job, token) = (got[0].0, got[0].6);
        // One second early, the job is still backing off (checked after the first failure).
        let next: f64 = sqlx::query_scalar(
            "SELECT extract(epoch FROM aveloxis.fail($1, $2, 'HTTP 502', 'transient') - aveloxis_ops.clock())::float8",
        )
        .bind(job)
        .bind(token)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        waits.push((next / 60.0).round() as i64);
        if failure < 10 {
            set_clock(&mut conn, &format!("{} seconds", clock_s + next as i64 - 1)).await;
            assert!(
                claim(&mut conn, "agent", &["facade"], 1).await.is_empty(),
                "still backing off"
            );
            assert_eq!(why(&mut conn, repo).await["facade"].0, "backing off");
        }
        clock_s += next as i64 + 1;
    }
    // 2 m, 8 m, 18 m, ... and the 10th failure sidelines the job for its cadence (1 day).
    assert_eq!(waits, [2, 8, 18, 32, 50, 72, 98, 128, 162, 1440]);
    let (status, reason) = why(&mut conn, repo).await["facade"].clone();
    assert_eq!(status, "sidelined");
    assert!(
        reason.contains("10 consecutive transient failures; last: HTTP 502"),
        "{reason}"
    );

    // After the sideline the count starts over.
    set_clock(&mut conn, &format!("{clock_s} seconds")).await;
    let got = claim(&mut conn, "agent", &["facade"], 1).await;
    let next: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM aveloxis.fail($1, $2, 'HTTP 502', 'transient') - aveloxis_ops.clock())::float8",
    )
    .bind(got[0].0)
    .bind(got[0].6)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(next, 120.0);
}

#[tokio::test]
async fn partial_and_retried_jobs_are_served_first_and_gone_sidelines_the_repo() {
    let db = TestDb::with_extension("queue_order").await;
    let mut conn = db.connect().await;
    let a = add_repo(&mut conn, "/srv/git/a.git").await;
    let b = add_repo(&mut conn, "/srv/git/b.git").await;
    let c = add_repo(&mut conn, "https://github.com/o/c").await;
    // a completes partially a minute after b and c were due: it still goes first.
    set_clock(&mut conn, "1 minute").await;
    let first = claim(&mut conn, "agent", &["facade"], 1).await;
    assert_eq!(first[0].1, a);
    complete(&mut conn, first[0].0, first[0].6, r#"{"complete": false}"#).await;
    let order: Vec<i64> = claim(&mut conn, "agent", &["facade"], 3)
        .await
        .iter()
        .map(|j| j.1)
        .collect();
    assert_eq!(order, [a, b, c], "partial first, then by due time and repo");
    // prioritize puts a repository ahead of older due jobs.
    sqlx::query("UPDATE aveloxis_ops.jobs SET lease_owner = NULL, lease_expires_at = NULL")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("UPDATE aveloxis_ops.jobs SET retry_first = false")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("SELECT aveloxis.prioritize($1)")
        .bind(c)
        .execute(&mut conn)
        .await
        .unwrap();
    let order: Vec<i64> = claim(&mut conn, "agent", &["facade"], 3)
        .await
        .iter()
        .map(|j| j.1)
        .collect();
    // (b has waited longest: a's partial run made it due again only a minute ago.)
    assert_eq!(order, [c, b, a]);

    // 404 on collect: the whole repository is sidelined, with the reason; unsideline resumes it.
    let collect = claim(&mut conn, "agent", &["collect"], 1).await;
    sqlx::query("SELECT aveloxis.fail($1, $2, 'HTTP 404 Not Found', 'gone')")
        .bind(collect[0].0)
        .bind(collect[0].6)
        .execute(&mut conn)
        .await
        .unwrap();
    let reasons = why(&mut conn, c).await;
    assert_eq!(reasons["collect"].0, "sidelined", "{reasons:?}");
    assert_eq!(reasons["distribution"].0, "sidelined", "{reasons:?}");
    assert_eq!(
        reasons["facade"].0, "leased",
        "a running lease is shown first: {reasons:?}"
    );
    assert!(
        reasons["distribution"].1.contains("gone: HTTP 404 Not Found"),
        "{reasons:?}"
    );
    assert!(claim(&mut conn, "agent", &["collect", "distribution"], 5)
        .await
        .is_empty());
    sqlx::query("SELECT aveloxis.unsideline($1)")
        .bind(c)
        .execute(&mut conn)
        .await
        .unwrap();
    let again = claim(&mut conn, "agent", &["collect", "distribution"], 5).await;
    assert_eq!(again.len(), 2);

    let err = sqlx::query("SELECT aveloxis.fail($1, $2, 'x', 'oops')")
        .bind(again[0].0)
        .bind(again[0].6)
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unknown failure class \"oops\""), "{err}");
    let err = sqlx::query("SELECT aveloxis.set_setting('collect.cadence', 'often')")
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("takes interval"), "{err}");
}

#[tokio::test]
async fn a_new_cadence_realigns_due_dates_and_tick_purges_old_rows() {
    let db = TestDb::with_extension("queue_tick").await;
    let mut conn = db.connect().await;
    let repo = add_repo(&mut conn, "/srv/git/t.git").await;
    let got = claim(&mut conn, "agent", &["facade"], 1).await;
    let job = got[0].0;
    complete(&mut conn, job, got[0].6, "{}").await;
    sqlx::query("SELECT aveloxis.set_setting('facade.cadence', '7 days')")
        .execute(&mut conn)
        .await
        .unwrap();
    let realigned: bool = sqlx::query_scalar(
        "SELECT due_at = last_success_at + interval '7 days' FROM aveloxis_ops.jobs WHERE job_id = $1",
    )
    .bind(job)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(realigned, "set_setting re-aligns the phase's due dates at once");
    sqlx::query("SELECT aveloxis.reset_setting('facade.cadence')")
        .execute(&mut conn)
        .await
        .unwrap();
    let back: bool = sqlx::query_scalar(
        "SELECT due_at = last_success_at + interval '1 day' FROM aveloxis_ops.jobs WHERE job_id = $1",
    )
    .bind(job)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(back, "reset_setting re-aligns them to the default");

    // Old drained staging and old run history go; recent ones stay.
    sqlx::query(
        "INSERT INTO aveloxis_ops.staging (repo_id, platform_id, entity, payload, drained_at)
         VALUES ($1, 3, 'issue', '{}', now() - interval '8 days'), ($1, 3, 'issue', '{}', now())",
    )
    .bind(repo)
    .execute(&mut conn)
    .await
    .unwrap();
    set_clock(&mut conn, "31 days").await;
    sqlx::raw_sql("CALL aveloxis.tick()").execute(&mut conn).await.unwrap();
    let (staged, runs): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM aveloxis_ops.staging), (SELECT count(*) FROM aveloxis_ops.job_runs)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        (staged, runs),
        (0, 0),
        "31 days on, both staged rows and the run are past retention"
    );
}

#[tokio::test]
async fn pg_cron_runs_tick_in_the_cluster() {
    // pg_cron lives in the cluster's main database (cron.database_name); the extension is
    // installed there for this test and removed after.
    let url = cluster_url();
    let mut conn: PgConnection = sqlx::Connection::connect(&url).await.unwrap();
    sqlx::raw_sql(
        "CREATE EXTENSION IF NOT EXISTS pg_cron;
         DROP EXTENSION IF EXISTS pg_aveloxis CASCADE;
         CREATE EXTENSION pg_aveloxis;
         SELECT aveloxis.set_setting('registry.local_path_roots', '/srv/git');",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    add_repo(&mut conn, "/srv/git/cron.git").await;
    let job: i64 = sqlx::query_scalar("SELECT job_id FROM aveloxis.claim('agent', ARRAY['facade'], 1, '1 minute')")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    set_clock(&mut conn, "1 hour").await;
    let said: String = sqlx::query_scalar("SELECT aveloxis.schedule()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(said.contains("aveloxis-tick"), "{said}");
    // Only tick() returns an expired lease to the queue without a claim: wait for it.
    let deadline = Instant::now() + Duration::from_secs(150);
    let mut rescheduled = false;
    let mut returned = false;
    while Instant::now() < deadline {
        // pg_cron can miss a job scheduled while its launcher is still starting (seen right
        // after a cluster start); scheduling again (idempotent) wakes it.
        if !rescheduled && Instant::now() + Duration::from_secs(80) > deadline {
            sqlx::query("SELECT aveloxis.schedule()")
                .execute(&mut conn)
                .await
                .unwrap();
            rescheduled = true;
        }
        let leased: bool =
            sqlx::query_scalar("SELECT lease_owner IS NOT NULL FROM aveloxis_ops.jobs WHERE job_id = $1")
                .bind(job)
                .fetch_one(&mut conn)
                .await
                .unwrap();
        if !leased {
            returned = true;
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let said: String = sqlx::query_scalar("SELECT aveloxis.unschedule()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let cron_errors: Vec<String> = sqlx::query_scalar(
        "SELECT return_message FROM cron.job_run_details WHERE command = 'CALL aveloxis.tick()' AND status = 'failed'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap_or_default();
    sqlx::raw_sql("DROP EXTENSION pg_aveloxis CASCADE")
        .execute(&mut conn)
        .await
        .unwrap();
    assert!(
        returned,
        "pg_cron did not run aveloxis.tick() within 150 s; failures: {cron_errors:?}"
    );
    // Both jobs schedule() registers: tick every minute, the views' refresh hourly.
    assert_eq!(said, "removed 2 scheduled job(s)");
}

#[tokio::test]
async fn a_phase_limit_caps_its_leases_across_claimers() {
    // max_leased > 0 serializes the phase's claims; 0.6.0 failed every such claim
    // (pg_advisory_xact_lock(bigint, integer) does not exist; found by plpgsql_check).
    let db = TestDb::with_extension("queue_limit").await;
    let mut conn = db.connect().await;
    for n in 0..5 {
        add_repo(&mut conn, &format!("/srv/git/limit{n}.git")).await;
    }
    sqlx::query("SELECT aveloxis.set_setting('facade.max_leased', '2')")
        .execute(&mut conn)
        .await
        .unwrap();
    let first = claim(&mut conn, "a", &["facade"], 3).await;
    assert_eq!(first.len(), 2, "the limit caps one claim");
    let mut other = db.connect().await;
    assert!(
        claim(&mut other, "b", &["facade"], 3).await.is_empty(),
        "and the next claimer"
    );
    complete(&mut conn, first[0].0, first[0].6, "{}").await;
    assert_eq!(
        claim(&mut other, "b", &["facade"], 3).await.len(),
        1,
        "a finished lease frees one place"
    );
}
