//! Read-side benchmark (docs/benchmarks.md): `scripts/bench.sh views [repos]`.
//!
//! Measured side by side in one run:
//! * the cost of keeping the daily activity current inside the drain: the same staged
//!   issues, comments and commits drained with the activity triggers and without them
//!   (goal: at most 10% slower);
//! * on a synthetic fleet (1,000 repositories, 1M commit rows, 200K issues and pull
//!   requests with comments, events and reviews): a full refresh of the 22 views, total
//!   and per view, and a refresh after 1% of the data changed;
//! * an 8Knot-shaped reader's latency during a refresh against idle, with a lock timeout
//!   that turns any wait on a lock into a counted error (goal: none).

use std::time::{Duration, Instant};

use harness::sqlx::{self, Connection, PgConnection};
use harness::{exec, TestDb};
use serde_json::json;

const ACTIVITY_TABLES: &[&str] = &["issues", "pull_requests", "messages", "pull_request_reviews", "commits"];

/// Staged envelopes for one repository: issues (half closed), two comments each, and
/// commits of three files, from a few hundred people.
fn envelopes(issues: usize, commits: usize) -> (Vec<String>, Vec<String>, Vec<String>) {
    let user = |n: usize| json!({"login": format!("user{}", n % 700), "id": 10_000 + n % 700, "type": "User"});
    let day = |n: usize| format!("2023-{:02}-{:02}T{:02}:00:00Z", 1 + n % 12, 1 + n % 28, n % 24);
    let issue_rows = (1..=issues)
        .map(|n| {
            let mut issue = json!({"id": 5_000_000 + n, "number": n, "title": format!("issue {n}"),
                                   "state": if n % 2 == 0 { "closed" } else { "open" }, "user": user(n * 7),
                                   "created_at": day(n), "updated_at": day(n + 1), "comments": 2});
            if n % 2 == 0 {
                issue["closed_at"] = json!(day(n + 3));
            }
            issue.to_string()
        })
        .collect();
    let comment_rows = (1..=issues * 2)
        .map(|n| {
            json!({"id": 9_000_000 + n, "issue_url": format!("https://api.github.com/repos/bench/drain/issues/{}", 1 + (n - 1) / 2),
                   "user": user(n * 13), "body": "a comment on this", "created_at": day(n + 2), "updated_at": day(n + 2)})
            .to_string()
        })
        .collect();
    let commit_rows = (1..=commits)
        .map(|n| {
            let who = format!("dev{}@example.org", n % 300);
            let time = format!("2023-{:02}-{:02}T{:02}:00:00+02:00", 1 + n % 12, 1 + n % 28, n % 24);
            json!({"hash": format!("{:040x}", n * 2_654_435_761), "parents": [],
                   "author": {"name": "Dev", "email": who, "time": time},
                   "committer": {"name": "Dev", "email": who, "time": time}, "message": "change",
                   "files": [{"path": "a.rs", "added": 3, "removed": 1}, {"path": "b.rs", "added": 10, "removed": 0},
                             {"path": format!("c{}.rs", n % 50), "added": 1, "removed": 1}]})
            .to_string()
        })
        .collect();
    (issue_rows, comment_rows, commit_rows)
}

/// Drains the envelopes in a fresh database, with or without the activity triggers;
/// returns the seconds the drain took.
async fn drain_once(with_triggers: bool, rows: &(Vec<String>, Vec<String>, Vec<String>)) -> f64 {
    let db = TestDb::with_extension(if with_triggers {
        "bench_views_on"
    } else {
        "bench_views_off"
    })
    .await;
    let mut conn = db.connect().await;
    exec(&mut conn, "SELECT aveloxis.add_repo('https://github.com/bench/drain')").await;
    if !with_triggers {
        for table in ACTIVITY_TABLES {
            for op in ["ins", "upd", "del"] {
                exec(
                    &mut conn,
                    &format!("ALTER TABLE aveloxis_data.{table} DISABLE TRIGGER {table}_activity_{op}")
                        .replace("pull_request_reviews_activity", "reviews_activity"),
                )
                .await;
            }
        }
    }
    for (entity, payloads) in [("issue", &rows.0), ("issue_comment", &rows.1), ("commit", &rows.2)] {
        for chunk in payloads.chunks(5_000) {
            sqlx::query(
                "INSERT INTO aveloxis_ops.staging (repo_id, platform_id, entity, payload)
                 SELECT 1, 1, $1, p FROM unnest($2::text[]) p",
            )
            .bind(entity)
            .bind(chunk)
            .execute(&mut conn)
            .await
            .unwrap();
        }
    }
    exec(&mut conn, "VACUUM ANALYZE aveloxis_ops.staging").await;
    let start = Instant::now();
    exec(&mut conn, "CALL aveloxis.drain(1, 1000)").await;
    let took = start.elapsed().as_secs_f64();
    let (pending, days): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM aveloxis_ops.staging WHERE drained_at IS NULL),
                (SELECT count(*) FROM aveloxis_data.repo_daily_activity)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(pending, 0, "everything drained");
    assert_eq!(days > 0, with_triggers, "activity kept only with the triggers");
    took
}

/// Runs `CALL aveloxis.refresh_views()`; returns its seconds and the per-view lines.
async fn refresh(conn: &mut PgConnection) -> (f64, Vec<(String, f64, i64)>) {
    let start = Instant::now();
    exec(conn, "CALL aveloxis.refresh_views()").await;
    let took = start.elapsed().as_secs_f64();
    let views: Vec<(String, f64, Option<i64>, Option<String>)> = sqlx::query_as(
        "SELECT view_name, extract(epoch FROM duration)::float8, row_count, error FROM aveloxis.view_refresh_history(1)",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    for (view, _, _, error) in &views {
        assert!(error.is_none(), "{view}: {error:?}");
    }
    (
        took,
        views.into_iter().map(|(v, s, r, _)| (v, s, r.unwrap_or(0))).collect(),
    )
}

/// 8Knot's contributors and pr_response queries for ten repositories; seconds each, and
/// how many failed on the lock timeout (a wait on a lock).
async fn reader_round(conn: &mut PgConnection, rounds: usize) -> (Vec<f64>, usize) {
    let mut times = Vec::new();
    let mut lock_waits = 0;
    for i in 0..rounds {
        let first = 1 + (i as i64 * 10) % 990;
        let start = Instant::now();
        let result = sqlx::raw_sql(&format!(
            "SELECT repo_id, repo_name, left(cntrb_id::text, 15), timezone('utc', created_at), login, action, rank
             FROM aveloxis_augur_data.explorer_contributor_actions WHERE repo_id BETWEEN {first} AND {first} + 9;
             SELECT * FROM aveloxis_augur_data.explorer_pr_response WHERE id BETWEEN {first} AND {first} + 9;"
        ))
        .execute(&mut *conn)
        .await;
        match result {
            Ok(_) => times.push(start.elapsed().as_secs_f64()),
            Err(e) if e.to_string().contains("lock timeout") => lock_waits += 1,
            Err(e) => panic!("reader failed: {e}"),
        }
    }
    (times, lock_waits)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let repos: i64 = std::env::args()
        .nth(1)
        .map_or(1_000, |a| a.parse().expect("repos: a number"));

    // 1. The aggregates' cost inside the drain, four rounds in alternating order (the
    //    machine's noise between rounds is of the size of the difference).
    let rows = envelopes(20_000, 10_000);
    println!(
        "drain: {} issues, {} comments, {} commits (3 files each) staged for one repository",
        rows.0.len(),
        rows.1.len(),
        rows.2.len()
    );
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for round in 0..4 {
        if round % 2 == 0 {
            off.push(drain_once(false, &rows).await);
            on.push(drain_once(true, &rows).await);
        } else {
            on.push(drain_once(true, &rows).await);
            off.push(drain_once(false, &rows).await);
        }
    }
    let (on_s, off_s) = (
        on.iter().sum::<f64>() / on.len() as f64,
        off.iter().sum::<f64>() / off.len() as f64,
    );
    println!(
        "  drain with the activity triggers {on_s:.2} s {on:.2?}, without {off_s:.2} s {off:.2?}: {:.3}x ({:+.1}%; goal <= +10%)",
        on_s / off_s,
        (on_s / off_s - 1.0) * 100.0
    );

    // 2. The fleet and its refreshes.
    let db = TestDb::with_extension("bench_views_fleet").await;
    let mut conn = db.connect().await;
    let start = Instant::now();
    harness::fleet::populate(&mut conn, repos).await;
    let sizes: (i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM aveloxis_data.commits), (SELECT count(*) FROM aveloxis_data.issues),
                (SELECT count(*) FROM aveloxis_data.pull_requests), (SELECT count(*) FROM aveloxis_data.messages),
                (SELECT count(*) FROM aveloxis_data.pull_request_reviews)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    println!(
        "\nfleet: {repos} repositories, {} commit rows, {} issues, {} pull requests, {} comments, {} reviews; built in {:.0} s",
        sizes.0,
        sizes.1,
        sizes.2,
        sizes.3,
        sizes.4,
        start.elapsed().as_secs_f64()
    );
    let (full, views) = refresh(&mut conn).await;
    println!("  full refresh of the 22 views: {full:.1} s");
    let mut by_time = views.clone();
    by_time.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap());
    for (view, seconds, rows) in &by_time {
        println!("    {view:<45} {seconds:>7.2} s {rows:>10} rows");
    }

    // 3. After 1% of the data changed.
    exec(
        &mut conn,
        "UPDATE aveloxis_data.issues SET closed_at = created_at + interval '9 days' WHERE issue_id % 100 = 1;
         WITH m AS (INSERT INTO aveloxis_data.messages (repo_id, platform_id, msg_source, platform_msg_id, cntrb_id,
                                                        msg_text, msg_timestamp)
                    SELECT i.repo_id, 1, 'issue_comment', 800000000000 + i.issue_id, i.reporter_id, 'one more',
                           i.created_at + interval '2 days'
                    FROM aveloxis_data.issues i WHERE i.issue_id % 100 = 2 RETURNING msg_id, repo_id, platform_msg_id)
         INSERT INTO aveloxis_data.issue_message_ref (issue_id, msg_id, repo_id)
         SELECT m.platform_msg_id - 800000000000, m.msg_id, m.repo_id FROM m;
         ANALYZE;",
    )
    .await;
    let (partial, _) = refresh(&mut conn).await;
    println!(
        "  refresh after 1% of the issues changed: {partial:.1} s = {:.2}x the full one (CONCURRENTLY recomputes each \
         view and writes only the difference)",
        partial / full
    );

    // 4. A reader during a refresh, against idle.
    let mut reader = db.connect().await;
    exec(&mut reader, "SET lock_timeout = '200ms'").await;
    let (mut idle, idle_waits) = reader_round(&mut reader, 20).await;
    let url = db.url();
    let done = std::sync::atomic::AtomicBool::new(false);
    // One task, two futures: the refresh on its own connection, the reader beside it.
    let refreshing = async {
        let mut conn = PgConnection::connect(&url).await.unwrap();
        let took = refresh(&mut conn).await.0;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        took
    };
    let reading = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut busy = Vec::new();
        let mut waits = 0;
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            let (t, w) = reader_round(&mut reader, 5).await;
            busy.extend(t);
            waits += w;
        }
        (busy, waits)
    };
    let (during, (mut busy, busy_waits)) = tokio::join!(refreshing, reading);
    println!(
        "\nreader (8Knot's contributors + pr_response queries for 10 repositories): idle median {:.1} ms ({} queries), \
         during a {during:.1} s refresh median {:.1} ms ({} queries): {:.2}x; waits on a lock: {idle_waits} idle, {busy_waits} \
         during (goal: 0)",
        median(&mut idle) * 1000.0,
        idle.len(),
        median(&mut busy) * 1000.0,
        busy.len(),
        median(&mut busy) / median(&mut idle)
    );
}
