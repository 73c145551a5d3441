//! Fleet benchmark (docs/benchmarks.md): `scripts/bench.sh fleet [small] [large]`.
//!
//! The queue and its explainers on a fleet of 10,000 and of 100,000 repositories, side by
//! side in one run, each in a database of its own: repositories across 100 groups and
//! three platforms (70% GitHub, 20% GitLab, 10% plain git), their jobs in the states a
//! running fleet has (60% collected and waiting for their cadence, 25% due, 5% leased,
//! 5% backing off, 5% sidelined) and three past runs per job. Measured: `tick()`,
//! `queue_health()`, `why_not_collected(repo)` (200 random repositories),
//! claim->complete cycles/s with 4 claimers, and the queue's bytes per repository. The
//! goal: each stays flat or grows logarithmically from the small fleet to the large one
//! (a 10x fleet must not cost 10x).

use std::time::Instant;

use harness::sqlx::{self, PgConnection};
use harness::{exec, TestDb};

/// Median and 95th percentile of a set of timings, in milliseconds.
fn spread(mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(f64::total_cmp);
    (ms[ms.len() / 2], ms[(ms.len() * 95 / 100).min(ms.len() - 1)])
}

struct Figures {
    build_s: f64,
    jobs: i64,
    runs: i64,
    first_tick_ms: f64,
    pruned: i64,
    tick_ms: (f64, f64),
    health_ms: (f64, f64),
    why_ms: (f64, f64),
    claims_per_s: f64,
    queue_bytes_per_repo: f64,
    data: Collected,
}

/// The collected data of the long-tail fleet and one full refresh of the dashboards' views.
struct Collected {
    build_s: f64,
    commit_rows: i64,
    items: i64,
    bytes_per_repo: f64,
    refresh_s: f64,
    /// The three slowest views: name, seconds, rows.
    slowest: Vec<(String, f64, i64)>,
}

/// Fills the fleet's repositories with collected data ([`harness::fleet::populate_tail`])
/// and times one full `CALL aveloxis.refresh_views()` (every view, `CONCURRENTLY` once
/// populated: the first refresh of a fresh database fills them, so it runs twice and the
/// second is the one a pg_cron job pays every time).
async fn collected(conn: &mut PgConnection, repos: i64) -> Collected {
    let start = Instant::now();
    harness::fleet::populate_tail(conn).await;
    let build_s = start.elapsed().as_secs_f64();
    exec(conn, "CALL aveloxis.refresh_views()").await;
    let start = Instant::now();
    exec(conn, "CALL aveloxis.refresh_views()").await;
    let refresh_s = start.elapsed().as_secs_f64();
    let mut views: Vec<(String, f64, Option<i64>, Option<String>)> = sqlx::query_as(
        "SELECT view_name, extract(epoch FROM duration)::float8, row_count, error FROM aveloxis.view_refresh_history(1)",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    for (view, _, _, error) in &views {
        assert!(error.is_none(), "{view}: {error:?}");
    }
    assert!(views.len() > 10, "every view refreshed: {}", views.len());
    views.sort_by(|a, b| b.1.total_cmp(&a.1));
    let (commit_rows, items, bytes): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM aveloxis_data.commits),
                (SELECT count(*) FROM aveloxis_data.issues) + (SELECT count(*) FROM aveloxis_data.pull_requests),
                (SELECT sum(pg_total_relation_size(c.oid))::bigint FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = 'aveloxis_data' AND c.relkind IN ('r', 'm'))",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert!(commit_rows > 20 * repos, "the tail's commits are there: {commit_rows}");
    Collected {
        build_s,
        commit_rows,
        items,
        bytes_per_repo: bytes as f64 / repos as f64,
        refresh_s,
        slowest: views
            .into_iter()
            .take(3)
            .map(|(v, s, r, _)| (v, s, r.unwrap_or(0)))
            .collect(),
    }
}

async fn build(conn: &mut PgConnection, repos: i64) {
    exec(
        conn,
        &format!(
            "INSERT INTO aveloxis_data.repo_groups (rg_name) SELECT 'group ' || g FROM generate_series(1, 100) g;
             INSERT INTO aveloxis_data.repos (repo_group_id, platform_id, repo_git, repo_host, repo_owner, repo_name)
             SELECT (SELECT min(repo_group_id) FROM aveloxis_data.repo_groups) + g % 100,
                    CASE WHEN g % 10 < 7 THEN 1 WHEN g % 10 < 9 THEN 2 ELSE 3 END,
                    CASE WHEN g % 10 < 7 THEN 'https://github.com/fleet/r' || g
                         WHEN g % 10 < 9 THEN 'https://gitlab.com/fleet/r' || g
                         ELSE '/srv/git/fleet/r' || g || '.git' END,
                    CASE WHEN g % 10 < 7 THEN 'github.com' WHEN g % 10 < 9 THEN 'gitlab.com' END,
                    'fleet', 'r' || g
             FROM generate_series(1, {repos}) g;
             SELECT count(aveloxis_ops.enqueue_repo(repo_id)) FROM aveloxis_data.repos;
             -- Three past runs per job, over the last 30 days.
             INSERT INTO aveloxis_ops.job_runs (job_id, repo_id, phase, agent, attempt, started_at, finished_at, outcome, result)
             SELECT j.job_id, j.repo_id, j.phase, 'agent-' || (j.job_id % 16), k,
                    now() - (k * 10) * interval '1 day' - (j.job_id % 1440) * interval '1 minute',
                    now() - (k * 10) * interval '1 day' - (j.job_id % 1440) * interval '1 minute' + interval '4 minutes',
                    CASE WHEN (j.job_id + k) % 20 = 0 THEN 'transient' ELSE 'complete' END, '{{}}'
             FROM aveloxis_ops.jobs j, generate_series(1, 3) k;
             -- The states of a running fleet.
             UPDATE aveloxis_ops.jobs j SET
                 attempts = 3, last_attempted_at = now() - interval '2 days', last_success_at = now() - interval '2 days',
                 last_success_started_at = now() - interval '2 days',
                 due_at = CASE WHEN j.job_id % 20 < 12 THEN now() + (j.job_id % 7 + 1) * interval '1 day'
                               ELSE now() - (j.job_id % 48) * interval '1 hour' END,
                 lease_owner = CASE WHEN j.job_id % 20 = 17 THEN 'agent-' || (j.job_id % 16) END,
                 leased_at = CASE WHEN j.job_id % 20 = 17 THEN now() END,
                 lease_expires_at = CASE WHEN j.job_id % 20 = 17 THEN now() + interval '15 minutes' END,
                 lease_length = CASE WHEN j.job_id % 20 = 17 THEN interval '15 minutes' END,
                 consecutive_failures = CASE WHEN j.job_id % 20 = 18 THEN 2 WHEN j.job_id % 20 = 19 THEN 10 ELSE 0 END,
                 backoff_until = CASE WHEN j.job_id % 20 = 18 THEN now() + interval '3 hours' END,
                 sidelined_until = CASE WHEN j.job_id % 20 = 19 THEN now() + interval '7 days' END,
                 sideline_reason = CASE WHEN j.job_id % 20 = 19 THEN 'gone: 404 from the forge' END;"
        ),
    )
    .await;
    exec(conn, "VACUUM ANALYZE").await;
}

async fn measure(repos: i64) -> Figures {
    let db = TestDb::with_extension(&format!("bench_fleet_{repos}")).await;
    let mut conn = db.connect().await;
    let start = Instant::now();
    build(&mut conn, repos).await;
    let build_s = start.elapsed().as_secs_f64();
    let (jobs, runs): (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM aveloxis_ops.jobs), (SELECT count(*) FROM aveloxis_ops.job_runs)")
            .fetch_one(&mut conn)
            .await
            .unwrap();

    // The first tick prunes the history older than job_runs.retention (the oldest of the
    // three synthetic runs): real work, reported apart; then the steady state, after the
    // VACUUM autovacuum would do.
    let t = Instant::now();
    exec(&mut conn, "CALL aveloxis.tick()").await;
    let first_tick_ms = t.elapsed().as_secs_f64() * 1000.0;
    let runs_left: i64 = sqlx::query_scalar("SELECT count(*) FROM aveloxis_ops.job_runs")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    exec(&mut conn, "VACUUM ANALYZE aveloxis_ops.job_runs").await;
    let mut timed = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        exec(&mut conn, "CALL aveloxis.tick()").await;
        timed.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let tick_ms = spread(timed);

    let mut timed = Vec::new();
    for _ in 0..11 {
        let t = Instant::now();
        let rows: Vec<(String,)> = sqlx::query_as("SELECT phase FROM aveloxis.queue_health()")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        timed.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(rows.len(), 4);
    }
    let health_ms = spread(timed);

    let mut timed = Vec::new();
    for i in 0..200i64 {
        let repo = 1 + (i * 7919) % repos;
        let t = Instant::now();
        let rows: Vec<(String, String)> = sqlx::query_as("SELECT phase, status FROM aveloxis.why_not_collected($1)")
            .bind(repo)
            .fetch_all(&mut conn)
            .await
            .unwrap();
        timed.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(!rows.is_empty(), "repo {repo} has no jobs");
    }
    let why_ms = spread(timed);

    // Claim->complete cycles with 4 claimers.
    let claimers = 4;
    let cycles = 2_000;
    let mut tasks = Vec::new();
    let t = Instant::now();
    for n in 0..claimers {
        let mut c = db.connect().await;
        tasks.push(tokio::spawn(async move {
            for _ in 0..cycles / claimers {
                let (job, token): (i64, sqlx::types::Uuid) = sqlx::query_as(
                    "SELECT job_id, lease_token FROM aveloxis.claim($1, ARRAY['collect', 'facade', 'distribution'], 1, \
                     '5 minutes')",
                )
                .bind(format!("bench-{n}"))
                .fetch_one(&mut c)
                .await
                .expect("a due job to claim");
                sqlx::query("SELECT aveloxis.complete($1, $2, '{\"complete\": true}')")
                    .bind(job)
                    .bind(token)
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let claims_per_s = cycles as f64 / t.elapsed().as_secs_f64();

    let queue_bytes: i64 = sqlx::query_scalar(
        "SELECT sum(pg_total_relation_size(t))::bigint
         FROM unnest(ARRAY['aveloxis_ops.jobs', 'aveloxis_ops.job_runs', 'aveloxis_data.repos',
                           'aveloxis_data.repo_url_history']::regclass[]) t",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let data = collected(&mut conn, repos).await;
    Figures {
        build_s,
        jobs,
        runs,
        first_tick_ms,
        pruned: runs - runs_left,
        tick_ms,
        health_ms,
        why_ms,
        claims_per_s,
        queue_bytes_per_repo: queue_bytes as f64 / repos as f64,
        data,
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let small: i64 = args.next().map_or(10_000, |a| a.parse().expect("small: a number"));
    let large: i64 = args.next().map_or(100_000, |a| a.parse().expect("large: a number"));
    let s = measure(small).await;
    let l = measure(large).await;
    let growth = large as f64 / small as f64;
    println!("fleet: {small} vs {large} repositories ({growth:.0}x), each in its own database");
    println!(
        "  built in {:.1} s / {:.1} s: {} / {} jobs, {} / {} past runs",
        s.build_s, l.build_s, s.jobs, l.jobs, s.runs, l.runs
    );
    let row = |name: &str, a: f64, b: f64, unit: &str| {
        println!(
            " {name:<36} | {:>11.2} {unit:<2} | {:>11.2} {unit:<2} | {:.2}x",
            a,
            b,
            b / a
        );
    };
    println!(
        "  first tick: {:.0} ms pruning {} old runs / {:.0} ms pruning {} (work proportional to what it deletes)",
        s.first_tick_ms, s.pruned, l.first_tick_ms, l.pruned
    );
    println!("\n {:<36} | {:>14} | {:>14} | growth", "measure", small, large);
    row("tick() median", s.tick_ms.0, l.tick_ms.0, "ms");
    row("tick() p95", s.tick_ms.1, l.tick_ms.1, "ms");
    row("queue_health() median", s.health_ms.0, l.health_ms.0, "ms");
    row("queue_health() p95", s.health_ms.1, l.health_ms.1, "ms");
    row("why_not_collected(repo) median", s.why_ms.0, l.why_ms.0, "ms");
    row("why_not_collected(repo) p95", s.why_ms.1, l.why_ms.1, "ms");
    row(
        "claim->complete cycles/s, 4 claimers",
        s.claims_per_s,
        l.claims_per_s,
        "/s",
    );
    row(
        "queue + registry bytes per repository",
        s.queue_bytes_per_repo,
        l.queue_bytes_per_repo,
        "B",
    );
    println!(
        "\n collected data (a long tail: {} / {} commit rows, {} / {} issues and pull requests; built in {:.0} s / {:.0} s)",
        s.data.commit_rows, l.data.commit_rows, s.data.items, l.data.items, s.data.build_s, l.data.build_s
    );
    row("full refresh_views(), seconds", s.data.refresh_s, l.data.refresh_s, "s");
    row(
        "data + views bytes per repository",
        s.data.bytes_per_repo,
        l.data.bytes_per_repo,
        "B",
    );
    for (name, f) in [("small", &s), ("large", &l)] {
        let slowest: Vec<String> = f
            .data
            .slowest
            .iter()
            .map(|(v, secs, rows)| format!("{v} {secs:.2} s ({rows} rows)"))
            .collect();
        println!("  slowest views, {name} fleet: {}", slowest.join(", "));
    }
    println!(
        "\n(growth 1.00x = flat; a 10x fleet growing a figure by about log10(10) = 1 step or less is logarithmic;\n \
         anything near {growth:.0}x is linear)"
    );
}
