//! Queue benchmark (docs/benchmarks.md): `scripts/bench.sh queue [jobs] [cycles]`.
//!
//! Claim→complete cycles per second on a queue of ~100,000 due jobs with 1, 4 and 16
//! concurrent claimers, side by side in one run:
//! * `aveloxis.claim(agent, phases, 1, lease)` + `aveloxis.complete(job, outcome, agent)`;
//! * the Go system's single-row claim (aveloxis-go-spec.md §2: `UPDATE … WHERE repo_id =
//!   (SELECT … ORDER BY priority, due_at LIMIT 1 FOR UPDATE SKIP LOCKED)`) and its
//!   completion `UPDATE`, on an identical copy of the queue in a table of the same database.
//!
//! Every claimer records what it was handed; a job handed out twice in one round is a
//! double claim (must be 0).

use std::collections::HashSet;
use std::time::Instant;

use harness::sqlx::{self, PgConnection};
use harness::TestDb;

const GO_QUEUE: &str = "
CREATE TABLE go_collection_queue (
    repo_id bigint PRIMARY KEY,
    priority integer NOT NULL DEFAULT 100,
    status text NOT NULL DEFAULT 'queued',
    due_at timestamptz NOT NULL DEFAULT now(),
    locked_by text,
    locked_at timestamptz,
    last_collected timestamptz,
    last_error text,
    force_full_collect boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX go_collection_queue_claim ON go_collection_queue (priority, due_at) WHERE status = 'queued';";

const GO_CLAIM: &str = "
UPDATE go_collection_queue
SET status = 'collecting', locked_by = $1, locked_at = now(), updated_at = now()
WHERE repo_id = (SELECT repo_id FROM go_collection_queue
                 WHERE status = 'queued' AND due_at <= now()
                 ORDER BY priority, due_at LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING repo_id";

const GO_COMPLETE: &str = "
UPDATE go_collection_queue
SET status = 'queued', priority = 100, due_at = now() + interval '24 hours', locked_by = NULL, locked_at = NULL,
    last_collected = now(), last_error = NULL, force_full_collect = false, updated_at = now()
WHERE repo_id = $1";

#[derive(Clone, Copy)]
enum System {
    Aveloxis,
    GoSingleRow,
}

/// Runs `cycles` claim→complete cycles split over `claimers` connections; returns
/// (seconds, double claims).
async fn round(db: &TestDb, system: System, claimers: usize, cycles: usize) -> (f64, usize) {
    let mut conns: Vec<PgConnection> = Vec::new();
    for _ in 0..claimers {
        conns.push(db.connect().await);
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (n, mut conn) in conns.into_iter().enumerate() {
        let share = cycles / claimers + usize::from(n < cycles % claimers);
        tasks.push(tokio::spawn(async move {
            let agent = format!("bench-{n}");
            let mut got = Vec::with_capacity(share);
            for _ in 0..share {
                let job: Option<(i64, Option<sqlx::types::Uuid>)> = match system {
                    System::Aveloxis => sqlx::query_as(
                        "SELECT job_id, lease_token FROM aveloxis.claim($1, ARRAY['collect', 'facade', 'distribution'], \
                         1, '5 minutes')",
                    )
                    .bind(&agent)
                    .fetch_optional(&mut conn)
                    .await
                    .unwrap(),
                    System::GoSingleRow => sqlx::query_scalar(GO_CLAIM)
                        .bind(&agent)
                        .fetch_optional(&mut conn)
                        .await
                        .unwrap()
                        .map(|job: i64| (job, None)),
                };
                let (job, token) = job.expect("the queue ran dry: use more jobs than cycles");
                match system {
                    System::Aveloxis => {
                        sqlx::query("SELECT aveloxis.complete($1, $2, '{\"complete\": true}')")
                            .bind(job)
                            .bind(token)
                            .execute(&mut conn)
                            .await
                            .unwrap();
                    }
                    System::GoSingleRow => {
                        sqlx::query(GO_COMPLETE).bind(job).execute(&mut conn).await.unwrap();
                    }
                }
                got.push(job);
            }
            got
        }));
    }
    let mut seen = HashSet::new();
    let mut doubles = 0;
    for t in tasks {
        for job in t.await.unwrap() {
            if !seen.insert(job) {
                doubles += 1;
            }
        }
    }
    (start.elapsed().as_secs_f64(), doubles)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let repos: usize = args
        .next()
        .map_or(33_334, |a| a.parse::<usize>().expect("jobs: a number") / 3);
    let cycles: usize = args.next().map_or(5_000, |a| a.parse().expect("cycles: a number"));
    let db = TestDb::with_extension("bench_queue").await;
    let mut conn = db.connect().await;
    let start = Instant::now();
    // add_repo takes a transaction-scoped advisory lock per URL: a few thousand per transaction.
    for first in (1..=repos as i64).step_by(2_000) {
        sqlx::query("SELECT aveloxis.add_repo('https://github.com/bench/r' || g) FROM generate_series($1, $2) g")
            .bind(first)
            .bind((first + 1_999).min(repos as i64))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    sqlx::raw_sql(GO_QUEUE).execute(&mut conn).await.unwrap();
    // The same jobs, due at the same times, in the Go queue (its key is the job id here).
    for sql in [
        "INSERT INTO go_collection_queue (repo_id, due_at) SELECT job_id, due_at FROM aveloxis_ops.jobs",
        "VACUUM ANALYZE aveloxis_ops.jobs",
        "VACUUM ANALYZE go_collection_queue",
    ] {
        sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
    }
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM aveloxis_ops.jobs")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    println!(
        "queue: {jobs} due jobs ({repos} GitHub repositories x 3 phases), built in {:.1} s; {cycles} claim->complete \
         cycles per round",
        start.elapsed().as_secs_f64()
    );
    assert!(jobs as usize >= 6 * cycles, "every round needs fresh due jobs");

    println!("\n claimers | aveloxis.claim cycles/s | doubles | Go single-row cycles/s | doubles | ratio");
    for claimers in [1, 4, 16] {
        let (t_ours, d_ours) = round(&db, System::Aveloxis, claimers, cycles).await;
        let (t_go, d_go) = round(&db, System::GoSingleRow, claimers, cycles).await;
        let ours = cycles as f64 / t_ours;
        let go = cycles as f64 / t_go;
        println!(
            " {claimers:>8} | {ours:>23.0} | {d_ours:>7} | {go:>22.0} | {d_go:>7} | {:.2}x",
            ours / go
        );
    }
    let runs: (i64, i64) = sqlx::query_as("SELECT count(*), count(DISTINCT job_id) FROM aveloxis_ops.job_runs")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    println!(
        "\naveloxis job_runs: {} runs of {} distinct jobs (equal: no job ran twice)",
        runs.0, runs.1
    );
}
