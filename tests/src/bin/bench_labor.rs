//! Labor benchmark (docs/benchmarks.md): `scripts/bench.sh labor <bare clone>... [rounds]`.
//!
//! Per repository, side by side and alternating, `rounds` times: the analysis phase's labor
//! count of the HEAD tree (`phases::analysis::count_head`: every blob read from the bare clone
//! and counted by tokei) against the facade's walk of the whole history
//! (`phases::facade::walk`: libgit2 and `git log --numstat`, both cores), medians and their
//! ratio. Then, into a fresh database, `aveloxis-agent collect <clone> --phases
//! facade,analysis` and once more `--phases analysis` with HEAD unchanged: the requests each
//! made (none: labor reads the clone) and the rows the second wrote to the labor tables (the
//! goal: 0).

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aveloxis_agent::phases::{analysis, facade};
use harness::{output_text, sqlx, TestDb};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn walk_history(clone: &Path) -> usize {
    let repo = git2::Repository::open_bare(clone).expect("a bare clone");
    let head = repo.head().unwrap().peel_to_commit().unwrap().id();
    let (tx, rx) = mpsc::sync_channel(64);
    let reader = std::thread::spawn(move || rx.iter().map(|chunk: Vec<_>| chunk.len()).sum::<usize>());
    facade::walk(clone, head, &[], 2, tx).expect("the walk");
    reader.join().unwrap()
}

/// Rows inserted, updated and deleted in the labor tables so far, by the statistics
/// (the agent's backend reports them when it ends: read after a moment, on a fresh
/// snapshot), and a checksum of their contents.
async fn labor_writes(pool: &sqlx::PgPool) -> (i64, String) {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_stat_clear_snapshot()")
        .execute(&mut *conn)
        .await
        .unwrap();
    let writes: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint FROM pg_stat_user_tables
         WHERE relname IN ('repo_labor', 'repo_labor_history', 'repo_analysis_scans')",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    let contents: String = sqlx::query_scalar(
        "SELECT md5(concat_ws('|',
             (SELECT string_agg(to_jsonb(l)::text, ',' ORDER BY repo_labor_id) FROM aveloxis_data.repo_labor l),
             (SELECT count(*) FROM aveloxis_data.repo_labor_history),
             (SELECT string_agg(to_jsonb(s)::text, ',' ORDER BY scan_id) FROM aveloxis_data.repo_analysis_scans s)))",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    (writes, contents)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rounds: usize = args.last().and_then(|a| a.parse().ok()).unwrap_or(3);
    let clones: Vec<&String> = args.iter().filter(|a| a.parse::<usize>().is_err()).collect();
    assert!(!clones.is_empty(), "usage: bench_labor <bare clone>... [rounds]");
    println!("labor count of the HEAD tree vs the facade's walk of the history, median of {rounds} alternating rounds");
    println!("repository | HEAD files counted | languages | labor count | facade walk (commits) | labor / walk");
    for clone in &clones {
        let path = Path::new(clone.as_str());
        let (mut counts, mut walks) = (Vec::new(), Vec::new());
        let (mut files, mut languages, mut commits) = (0, 0, 0);
        for _ in 0..rounds {
            let t = Instant::now();
            let labor = analysis::count_head(path).expect("count");
            counts.push(t.elapsed());
            files = labor.files.len();
            languages = labor
                .files
                .iter()
                .map(|f| f.language.as_str())
                .collect::<std::collections::BTreeSet<_>>()
                .len();
            let t = Instant::now();
            commits = walk_history(path);
            walks.push(t.elapsed());
        }
        let (count, walk) = (median(counts), median(walks));
        println!(
            "{} | {files} | {languages} | {:.2} s | {:.2} s ({commits}) | {:.2}x",
            path.file_name().unwrap().to_string_lossy(),
            count.as_secs_f64(),
            walk.as_secs_f64(),
            count.as_secs_f64() / walk.as_secs_f64()
        );
    }

    // Requests and writes of a full analysis and of one with HEAD unchanged.
    let clone = clones[0];
    let db = TestDb::with_extension("bench_labor").await;
    let pool = db.pool(2).await;
    let roots = Path::new(clone.as_str())
        .parent()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    sqlx::query("SELECT aveloxis.set_setting('registry.local_path_roots', $1)")
        .bind(&roots)
        .execute(&pool)
        .await
        .unwrap();
    let clone_dir = db.scratch_dir("bench-labor-clones");
    let run = |phases: &str| {
        let out = db.agent(&[
            "collect",
            clone,
            "--phases",
            phases,
            "--clone-dir",
            clone_dir.to_str().unwrap(),
        ]);
        let (stdout, stderr) = output_text(&out);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        stdout
    };
    run("facade");
    let before = labor_writes(&pool).await;
    let first = run("analysis");
    let after_first = labor_writes(&pool).await;
    let second = run("analysis");
    let after_second = labor_writes(&pool).await;
    println!(
        "full analysis of {}: 0 requests (the clone is local), {} rows written to the labor tables\n  {}",
        Path::new(clone.as_str()).file_name().unwrap().to_string_lossy(),
        after_first.0 - before.0,
        first.lines().find(|l| l.contains("analysis:")).unwrap_or_default()
    );
    println!(
        "re-analysis with HEAD unchanged: 0 requests, {} rows written (goal: 0); the labor tables' contents {}\n  {}",
        after_second.0 - after_first.0,
        if after_second.1 == after_first.1 {
            "unchanged"
        } else {
            "CHANGED"
        },
        second.lines().find(|l| l.contains("analysis:")).unwrap_or_default()
    );
    let _ = std::fs::remove_dir_all(&clone_dir);
}
