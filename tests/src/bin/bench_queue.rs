//! Queue benchmark (docs/benchmarks.md): `scripts/bench.sh queue [jobs] [cycles]`.
//!
//! Claim→complete cycles per second on a queue of ~100,000 due jobs with 1, 4 and 16
//! concurrent claimers, side by side in one run:
//! * `aveloxis.claim(agent, phases, 1, lease)` + `aveloxis.complete(job, outcome, agent)`;
//! * the Go system's single-row claim (aveloxis-go-spec.md §2: `UPDATE … WHERE repo_id =
//!   (SELECT … ORDER BY priority, due_at LIMIT 1 FOR UPDATE SKIP LOCKED)`) and its
//!   completion `UPDATE`, on an identical copy of the queue in a table of the same database;
//! * the writes aveloxis' guarantees need, as plain statements on aveloxis' own tables
//!   (a claim: the due job locked, its `job_runs` row with a token digest, the lease on
//!   the job; a completion: the run closed, the lease ended and the next run scheduled),
//!   without the checks, settings and lease proof around them: the floor any queue with
//!   per-run history and lease tokens pays on this schema.
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

const FLOOR_CLAIM: &str = "
WITH c AS (
    SELECT j.job_id, j.repo_id, j.phase, j.attempts FROM aveloxis_ops.jobs j
    WHERE j.phase = ANY (ARRAY['collect', 'facade', 'distribution']) AND j.lease_owner IS NULL AND j.due_at <= now()
      AND (j.backoff_until IS NULL OR j.backoff_until <= now())
      AND (j.sidelined_until IS NULL OR j.sidelined_until <= now())
    ORDER BY j.retry_first DESC, j.priority, j.due_at, j.repo_id LIMIT 1 FOR UPDATE SKIP LOCKED
), r AS (
    INSERT INTO aveloxis_ops.job_runs (job_id, repo_id, phase, agent, attempt, started_at, lease_token_digest)
    SELECT c.job_id, c.repo_id, c.phase, $1, c.attempts + 1, now(), sha256(uuid_send(gen_random_uuid())) FROM c
    RETURNING job_id, run_id
)
UPDATE aveloxis_ops.jobs j
SET lease_owner = $1, leased_at = now(), lease_expires_at = now() + interval '5 minutes',
    lease_length = interval '5 minutes', lease_run_id = r.run_id, attempts = j.attempts + 1, last_attempted_at = now()
FROM r WHERE r.job_id = j.job_id
RETURNING j.job_id, j.lease_run_id";

const FLOOR_COMPLETE_RUN: &str =
    "UPDATE aveloxis_ops.job_runs SET finished_at = now(), outcome = 'complete', result = '{}' WHERE run_id = $1";

const FLOOR_COMPLETE_JOB: &str = "
UPDATE aveloxis_ops.jobs
SET lease_owner = NULL, leased_at = NULL, lease_expires_at = NULL, lease_length = NULL, lease_run_id = NULL,
    priority = 100, due_at = now() + interval '1 day', due_from_cadence = true, attempts = 0,
    consecutive_failures = 0, backoff_until = NULL, retry_first = false, last_success_at = now(),
    last_success_started_at = now(), last_error = NULL, last_error_class = NULL, last_outcome = '{}'
WHERE job_id = $1";

#[derive(Clone, Copy)]
enum System {
    Aveloxis,
    GoSingleRow,
    WritesFloor,
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
                let mut floor_run = 0i64;
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
                    System::WritesFloor => sqlx::query_as(FLOOR_CLAIM)
                        .bind(&agent)
                        .fetch_optional(&mut conn)
                        .await
                        .unwrap()
                        .map(|(job, run): (i64, i64)| {
                            floor_run = run;
                            (job, None)
                        }),
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
                    System::WritesFloor => {
                        sqlx::query(FLOOR_COMPLETE_RUN).bind(floor_run).execute(&mut conn).await.unwrap();
                        sqlx::query(FLOOR_COMPLETE_JOB).bind(job).execute(&mut conn).await.unwrap();
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
    // aveloxis' rounds and the floor's take jobs from the same queue: 6 rounds.
    assert!(jobs as usize >= 6 * cycles, "every round needs fresh due jobs");

    println!(
        "\n claimers | aveloxis.claim cycles/s | doubles | writes floor cycles/s | doubles | Go single-row cycles/s | \
         doubles | aveloxis/Go | floor/Go | aveloxis/floor"
    );
    for claimers in [1, 4, 16] {
        let (t_ours, d_ours) = round(&db, System::Aveloxis, claimers, cycles).await;
        let (t_floor, d_floor) = round(&db, System::WritesFloor, claimers, cycles).await;
        let (t_go, d_go) = round(&db, System::GoSingleRow, claimers, cycles).await;
        let ours = cycles as f64 / t_ours;
        let floor = cycles as f64 / t_floor;
        let go = cycles as f64 / t_go;
        println!(
            " {claimers:>8} | {ours:>23.0} | {d_ours:>7} | {floor:>21.0} | {d_floor:>7} | {go:>22.0} | {d_go:>7} | \
             {:>10.2}x | {:>7.2}x | {:>13.2}x",
            ours / go,
            floor / go,
            ours / floor
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
