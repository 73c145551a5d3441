//! Facade ingest benchmark (docs/benchmarks.md): `scripts/bench.sh facade <bare clone>`.
//!
//! On one clone of a real repository, side by side and alternating, `rounds` times:
//! - raw git: `git log --numstat <HEAD> > /dev/null`;
//! - the facade end to end: `aveloxis-agent collect <clone> --phases facade` into a fresh
//!   database (fetch from the clone, walk, stage, the drain beside it, aggregates, and
//!   the free author-resolution steps), its own clone already made (not timed).
//!
//! Prints the median wall times, their ratio, CPU times (how much of both cores was
//! used), the agent's peak resident memory (from wait4), and how many stored rows differ
//! from `git log --numstat` on the same clone (compared row by row after the last round).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::gitrepo::{numstat_of, stored_numstat};
use harness::{agent_bin, sqlx, TestDb};

/// Runs a command to completion; returns wall time, user+system CPU and peak RSS (KiB).
// The child is reaped by wait4 (which also reports its resource use), not Child::wait.
#[allow(clippy::zombie_processes)]
fn measure(cmd: &mut Command) -> (Duration, Duration, i64) {
    let start = Instant::now();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data filled by the kernel; pid is our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    assert_eq!(waited, pid, "wait4 failed");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{cmd:?} failed (status {status})"
    );
    let cpu = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    (wall, cpu(usage.ru_utime) + cpu(usage.ru_stime), usage.ru_maxrss)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let clone = PathBuf::from(
        args.next()
            .expect("usage: bench_facade <path of a git repository with at least 10,000 commits> [rounds]"),
    );
    let rounds: usize = args.next().map_or(3, |r| r.parse().expect("rounds is a number"));
    let clone = clone.canonicalize().expect("the repository path exists");
    let count = String::from_utf8(
        Command::new("git")
            .arg("--git-dir")
            .arg(git_dir(&clone))
            .args(["rev-list", "--count", "HEAD"])
            .output()
            .expect("git rev-list")
            .stdout,
    )
    .unwrap();
    let commits: usize = count.trim().parse().expect("a commit count");
    let clones = std::env::temp_dir().join(format!("aveloxis-bench-facade-{}", std::process::id()));

    let mut git_times = Vec::new();
    let mut git_cpu = Vec::new();
    let mut ours = Vec::new();
    let mut ours_cpu = Vec::new();
    let mut peak_kib = 0;
    let mut rows = 0i64;
    let mut differing = None;
    for round in 0..=rounds {
        let db = TestDb::with_extension("bench_facade").await;
        let mut agent = Command::new(agent_bin());
        agent
            .args(["collect", clone.to_str().unwrap(), "--phases", "facade", "--clone-dir"])
            .arg(&clones)
            .env("DATABASE_URL", db.url())
            .env("RUST_LOG", "warn");
        if round == 0 {
            // Warm-up: makes the agent's bare clone (not timed) and warms the caches.
            measure(&mut agent);
            continue;
        }
        let (wall, cpu, rss) = measure(&mut agent);
        ours.push(wall);
        ours_cpu.push(cpu);
        peak_kib = peak_kib.max(rss);
        let pool = db.pool(1).await;
        rows = sqlx::query_scalar("SELECT count(*) FROM aveloxis_data.commits")
            .fetch_one(&pool)
            .await
            .unwrap();
        if round == rounds {
            // Exactness: every stored (commit, file, added, removed) row against what
            // `git log --numstat` prints on the agent's clone, row by row.
            let stored = stored_numstat(&pool).await;
            let expected = numstat_of(&git_dir(&clones.join(agent_clone_name(&clones))), "HEAD");
            let only_stored: Vec<_> = stored.difference(&expected).collect();
            let only_git: Vec<_> = expected.difference(&stored).collect();
            differing = Some((only_stored.len(), only_git.len(), expected.len()));
            for row in only_stored.iter().take(5) {
                println!("  stored, not in git log: {row:?}");
            }
            for row in only_git.iter().take(5) {
                println!("  in git log, not stored: {row:?}");
            }
        }
        pool.close().await;

        let (wall, cpu, _) = measure(
            Command::new("sh")
                .arg("-c")
                .arg("git --git-dir \"$0\" log --numstat HEAD > /dev/null")
                .arg(git_dir(&clones.join(agent_clone_name(&clones)))),
        );
        git_times.push(wall);
        git_cpu.push(cpu);
        println!(
            "round {round}: facade {:.2} s, git log --numstat {:.2} s",
            ours.last().unwrap().as_secs_f64(),
            wall.as_secs_f64()
        );
    }
    let (g, o) = (median(git_times), median(ours));
    println!();
    println!("repository            {} ({commits} commits on HEAD)", clone.display());
    println!("rows stored           {rows} (commit, file) rows");
    println!(
        "git log --numstat     {:.2} s wall, {:.2} s CPU",
        g.as_secs_f64(),
        median(git_cpu).as_secs_f64()
    );
    println!(
        "facade ingest         {:.2} s wall, {:.2} s CPU in the agent (the drain's CPU is PostgreSQL's)",
        o.as_secs_f64(),
        median(ours_cpu).as_secs_f64()
    );
    println!(
        "ratio                 {:.2}x raw git (goal 1.0x, 1.3x at worst)",
        o.as_secs_f64() / g.as_secs_f64()
    );
    println!("agent peak RSS        {:.1} MiB", peak_kib as f64 / 1024.0);
    if let Some((stored, git, of)) = differing {
        println!(
            "rows differing        {} ({stored} stored rows not in git log --numstat, {git} of its {of} rows not stored; goal 0)",
            stored + git
        );
    }
    let _ = std::fs::remove_dir_all(&clones);
}

/// The repository's git directory (a bare clone is its own).
fn git_dir(path: &Path) -> PathBuf {
    if path.join(".git").is_dir() {
        path.join(".git")
    } else {
        path.to_path_buf()
    }
}

/// The agent keeps one clone, `repo_<id>`, in the clone directory: the one there.
fn agent_clone_name(clones: &Path) -> String {
    std::fs::read_dir(clones)
        .expect("the agent made its clone")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("repo_"))
        .expect("the agent made its clone")
}
