//! The scheduler's background worker, in a cluster of its own that preloads pg_aveloxis
//! (the harness cluster does not: preloading is the operator's choice).

use std::process::Command;
use std::time::{Duration, Instant};

use harness::repo_root;
use harness::sqlx::{self, Connection, PgConnection};

struct WorkerCluster {
    dir: String,
}

impl WorkerCluster {
    fn start() -> (WorkerCluster, String) {
        let dir = format!("/tmp/pg_aveloxis-worker-test-{}", std::process::id());
        let out = Command::new("bash")
            .arg(repo_root().join("scripts/cluster.sh"))
            .arg("start")
            .env("AVELOXIS_CLUSTER_DIR", &dir)
            .env(
                "AVELOXIS_CLUSTER_EXTRA_CONF",
                "shared_preload_libraries = 'pg_cron,pg_aveloxis'\n\
                 pg_aveloxis.scheduler = on\n\
                 pg_aveloxis.tick_interval = 1\n\
                 pg_aveloxis.database = 'postgres'",
            )
            .output()
            .expect("scripts/cluster.sh runs");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "the worker's cluster did not start: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = stdout
            .lines()
            .find_map(|l| l.strip_prefix("DATABASE_URL="))
            .expect("cluster.sh prints DATABASE_URL")
            .rsplit_once('/')
            .map(|(server, _)| format!("{server}/postgres"))
            .expect("a database URL ends in /<database>");
        (WorkerCluster { dir }, url)
    }
}

impl Drop for WorkerCluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo_root().join("scripts/cluster.sh"))
            .arg("destroy")
            .env("AVELOXIS_CLUSTER_DIR", &self.dir)
            .output();
    }
}

#[tokio::test]
async fn the_background_worker_runs_tick_when_enabled() {
    let (_cluster, url) = WorkerCluster::start();
    let mut conn = PgConnection::connect(&url).await.unwrap();
    // The worker starts with the postmaster (a state to wait for, bounded).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let workers: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_aveloxis scheduler'")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        if workers == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "no pg_aveloxis scheduler process after 30 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    sqlx::raw_sql("CREATE EXTENSION pg_aveloxis")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("SELECT aveloxis.set_setting('registry.local_path_roots', '/srv/git')")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("SELECT aveloxis.add_repo('/srv/git/worker.git')")
        .execute(&mut conn)
        .await
        .unwrap();
    let job: i64 = sqlx::query_scalar("SELECT job_id FROM aveloxis.claim('agent', ARRAY['facade'], 1, '1 minute')")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    // An hour on, the lease has expired; only tick() returns it without a claim.
    sqlx::query("SELECT aveloxis.set_setting('clock.offset', '1 hour')")
        .execute(&mut conn)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut returned = false;
    while Instant::now() < deadline {
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
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        returned,
        "the background worker did not run aveloxis.tick() within 60 s"
    );
    let outcome: String = sqlx::query_scalar("SELECT outcome FROM aveloxis_ops.job_runs WHERE job_id = $1")
        .bind(job)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(outcome, "lease_expired");
}
