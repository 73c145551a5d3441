//! `aveloxis-agent run`: workers over the queue, graceful stop, and recovery after a
//! killed agent, against the replay server and a real database.

use std::process::Stdio;
use std::time::{Duration, Instant};

use harness::replay::{github_fixtures, ReplayServer};
use harness::sqlx::{self, PgPool};
use harness::{agent_bin, TestDb};

const REPO: &str = "https://github.com/PyGithub/PyGithub";

async fn replay(delay: Duration) -> ReplayServer {
    let replay = ReplayServer::start().await;
    let fixtures = github_fixtures();
    replay
        .load_repository_slowly(&fixtures.iter().map(String::as_str).collect::<Vec<_>>(), delay)
        .await;
    replay
}

fn spawn_run(db: &TestDb, replay: &ReplayServer, extra: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(agent_bin())
        .args([
            "run",
            "--phases",
            "collect",
            "--github-api-url",
            &replay.api_url(),
            "--poll-seconds",
            "1",
        ])
        .args(extra)
        .env("DATABASE_URL", db.url())
        .env("GITHUB_TOKENS", "tok-1")
        .env_remove("AVELOXIS_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start aveloxis-agent run")
}

/// What a collection stored, for comparing runs: (issues, messages, releases, contributors,
/// duplicate issue numbers, duplicate messages).
async fn stored(pool: &PgPool) -> (i64, i64, i64, i64, i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM aveloxis_data.issues), (SELECT count(*) FROM aveloxis_data.messages),
                (SELECT count(*) FROM aveloxis_data.releases), (SELECT count(*) FROM aveloxis_data.contributors),
                (SELECT count(*) - count(DISTINCT issue_number) FROM aveloxis_data.issues),
                (SELECT count(*) - count(DISTINCT (msg_source, platform_msg_id)) FROM aveloxis_data.messages)",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn wait_until_leased(pool: &PgPool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let leased: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM aveloxis_ops.jobs WHERE phase = 'collect' AND lease_owner IS NOT NULL",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if leased > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "no job was leased within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn run_once_works_the_queue_and_a_killed_agent_loses_nothing() {
    // The reference: an uninterrupted run.
    let reference = TestDb::with_extension("run_reference").await;
    let replay_a = replay(Duration::ZERO).await;
    let pool_ref = reference.pool(2).await;
    sqlx::query("SELECT aveloxis.add_repo($1)")
        .bind(REPO)
        .execute(&pool_ref)
        .await
        .unwrap();
    let out = spawn_run(&reference, &replay_a, &["--once", "--workers", "2"])
        .wait_with_output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 jobs run, 0 failed"));
    let expected = stored(&pool_ref).await;
    let staged: Vec<(String, i64, i64)> =
        sqlx::query_as("SELECT entity, count(*), count(drained_at) FROM aveloxis_ops.staging GROUP BY 1 ORDER BY 1")
            .fetch_all(&pool_ref)
            .await
            .unwrap();
    assert!(
        expected.0 > 0 && expected.1 > 0,
        "the reference run stored data: {expected:?}; staged {staged:?}; {}; {:?}",
        String::from_utf8_lossy(&out.stdout),
        replay_a.requests().await.into_iter().map(|r| r.0).collect::<Vec<_>>()
    );

    // The same collection, its agent killed (SIGKILL) mid-collection.
    let db = TestDb::with_extension("run_killed").await;
    let replay_b = replay(Duration::from_millis(150)).await;
    let pool = db.pool(2).await;
    sqlx::query("SELECT aveloxis.add_repo($1)")
        .bind(REPO)
        .execute(&pool)
        .await
        .unwrap();
    let mut victim = spawn_run(&db, &replay_b, &["--workers", "1", "--agent", "victim"]);
    wait_until_leased(&pool).await;
    // A few answers in: the agent is in the middle of its lists.
    let deadline = Instant::now() + Duration::from_secs(60);
    while replay_b.requests().await.len() < 4 {
        assert!(Instant::now() < deadline, "the agent made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    victim.kill().await.unwrap();
    victim.wait().await.unwrap();
    let owner: Option<String> = sqlx::query_scalar("SELECT lease_owner FROM aveloxis_ops.jobs WHERE phase = 'collect'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        owner.as_deref(),
        Some("victim/1"),
        "the killed agent's lease is still held"
    );

    // Past the lease, a second agent takes the job over and finishes it.
    sqlx::query("SELECT aveloxis.set_setting('clock.offset', '11 minutes')")
        .execute(&pool)
        .await
        .unwrap();
    let out = spawn_run(&db, &replay_b, &["--once", "--workers", "1", "--agent", "rescuer"])
        .wait_with_output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let runs: Vec<(String, String)> =
        sqlx::query_as("SELECT agent, outcome FROM aveloxis_ops.job_runs r JOIN aveloxis_ops.jobs j USING (job_id) WHERE j.phase = 'collect' ORDER BY run_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        runs,
        [
            ("victim/1".into(), "lease_expired".into()),
            ("rescuer/1".into(), "complete".into())
        ]
    );
    assert_eq!(
        stored(&pool).await,
        expected,
        "no duplicate and no missing row versus the uninterrupted run"
    );
}

#[tokio::test]
async fn sigterm_lets_the_worker_finish_its_job_and_release_nothing_held() {
    let db = TestDb::with_extension("run_sigterm").await;
    let replay = replay(Duration::from_millis(100)).await;
    let pool = db.pool(2).await;
    sqlx::query("SELECT aveloxis.add_repo($1)")
        .bind(REPO)
        .execute(&pool)
        .await
        .unwrap();
    let child = spawn_run(&db, &replay, &["--workers", "1"]);
    wait_until_leased(&pool).await;
    let pid = child.id().expect("running") as i32;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the agent stops after its job")
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (leased, outcome): (i64, Option<String>) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM aveloxis_ops.jobs WHERE lease_owner IS NOT NULL),
                (SELECT outcome FROM aveloxis_ops.job_runs ORDER BY run_id DESC LIMIT 1)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (leased, outcome.as_deref()),
        (0, Some("complete")),
        "the job was finished, nothing stays leased"
    );
}
