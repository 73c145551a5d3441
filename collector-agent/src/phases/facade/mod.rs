//! The facade phase: a repository's git history into the database. The clone and commit
//! metadata in `git.rs` (libgit2), the line counts from git itself in `numstat.rs`; the
//! walk is spread over git processes and streamed into staging in batches while the
//! extension drains what already arrived, so memory stays bounded and both cores work.

pub mod authors;
pub mod git;
pub mod numstat;

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use git2::{Oid, Repository};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::forge::Forge;
use crate::queue::{stage, ClaimedJob};

pub use git::{check_url, CommitRecord, Credentials, GitError, GitSource};

/// How the facade works on this agent.
#[derive(Clone, Debug)]
pub struct FacadeOptions {
    /// Where the bare clones live (`<clone_dir>/repo_<repo_id>`).
    pub clone_dir: PathBuf,
    /// git processes counting lines, each with a reader thread (both cores: 2).
    pub threads: usize,
    /// Commits per staging INSERT.
    pub stage_batch: usize,
    pub credentials: Credentials,
}

impl FacadeOptions {
    pub fn new(clone_dir: PathBuf) -> Self {
        FacadeOptions {
            clone_dir,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8),
            stage_batch: 500,
            credentials: Credentials::default(),
        }
    }
}

/// What one facade job did.
#[derive(Debug, Default)]
pub struct FacadeOutcome {
    /// The default branch's head after the fetch (None: an empty repository).
    pub head: Option<String>,
    /// Every commit walked (full), or only those new since the last head.
    pub full_walk: bool,
    pub commits_staged: usize,
    /// Commits the default branch no longer reaches (a force-push), staged for removal.
    pub commits_removed: usize,
    /// Commits the default branch reaches (what the clone says exists): the completeness
    /// ledger's reported count of commits.
    pub commits_reachable: Option<usize>,
    pub authors: Option<authors::Resolution>,
    /// Why the author resolution did not run or stopped.
    pub authors_error: Option<String>,
}

impl FacadeOutcome {
    pub fn summary(&self) -> String {
        let authors = match &self.authors {
            Some(r) => format!(
                ", authors {:?}, {} commit rows linked, {} requests{}",
                r.by_step,
                r.commits_linked,
                r.requests,
                r.stopped
                    .as_ref()
                    .map(|s| format!(" (API steps stopped: {s})"))
                    .unwrap_or_default()
            ),
            None => String::new(),
        };
        format!(
            "{} walk, {} commits staged, {} removed{authors}",
            if self.full_walk { "full" } else { "incremental" },
            self.commits_staged,
            self.commits_removed
        )
    }

    pub fn report(&self) -> Value {
        json!({
            "complete": true,
            "counts": {"commit": self.commits_staged, "commit_removed": self.commits_removed},
            "full_walk": self.full_walk,
            "authors": self.authors.as_ref().map(|r| json!({
                "by_step": r.by_step, "commits_linked": r.commits_linked, "requests": r.requests, "stopped": r.stopped,
            })),
            "authors_error": self.authors_error,
            "completeness": self.commits_reachable.map(|n| json!({"commits": {"reported": n}})),
            "state": {"head": self.head},
        })
    }
}

/// A facade failure: git's, or the database's while staging.
#[derive(Debug)]
pub enum FacadeError {
    Git(GitError),
    Database(sqlx::Error),
}

impl FacadeError {
    pub fn class(&self) -> &'static str {
        match self {
            Self::Git(e) => e.class(),
            Self::Database(_) => "transient",
        }
    }
}

impl std::fmt::Display for FacadeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Git(e) => write!(f, "{e}"),
            Self::Database(e) => write!(f, "staging commits: {e}"),
        }
    }
}

impl From<GitError> for FacadeError {
    fn from(e: GitError) -> Self {
        Self::Git(e)
    }
}

impl From<sqlx::Error> for FacadeError {
    fn from(e: sqlx::Error) -> Self {
        Self::Database(e)
    }
}

/// Runs one facade job up to (not including) completing it: clone or fetch, walk what
/// is new, stage it while the extension drains in step, then resolve commit authors
/// (the HTTP steps only with a forge; `forge_expected` when the repository is on one whose
/// steps should run, see [`authors::resolve`]). The caller completes or fails the job
/// ([`finish`]).
pub async fn collect_facade<F: Forge>(
    db: &PgPool,
    job: &ClaimedJob,
    options: &FacadeOptions,
    forge: Option<authors::ForgeRepo<'_, F>>,
    forge_expected: bool,
) -> Result<FacadeOutcome, (FacadeOutcome, FacadeError)> {
    let mut outcome = FacadeOutcome::default();
    match stage_history(db, job, options, &mut outcome).await {
        Ok(()) => {}
        Err(e) => return Err((outcome, e)),
    }
    // Authors are resolved against drained commits.
    if let Err(e) = sqlx::query("CALL aveloxis.drain($1, $2)")
        .bind(job.repo_id)
        .bind(DRAIN_BATCH)
        .execute(db)
        .await
    {
        return Err((outcome, e.into()));
    }
    // (Noreply addresses of declared GitLab hosts name that host's accounts: the database's
    // email chain knows the hosts.)
    match authors::resolve(db, job.lease_token, forge, forge_expected).await {
        Ok(resolution) => outcome.authors = Some(resolution),
        Err(e) => {
            tracing::warn!(repo = job.repo_id, "commit-author resolution failed: {e}");
            outcome.authors_error = Some(e.to_string());
        }
    }
    Ok(outcome)
}

async fn stage_history(
    db: &PgPool,
    job: &ClaimedJob,
    options: &FacadeOptions,
    outcome: &mut FacadeOutcome,
) -> Result<(), FacadeError> {
    let source = check_url(&job.repo_git)?;
    let clone_path = options.clone_dir.join(format!("repo_{}", job.repo_id));
    let credentials = options.credentials.clone();
    let previous_head = job
        .agent_state
        .get("head")
        .and_then(Value::as_str)
        .and_then(|h| Oid::from_str(h).ok());
    let full = job.since.is_none();
    let path = clone_path.clone();
    // git2 is blocking: the clone, the walk and the JSON encoding run on threads.
    let plan = tokio::task::spawn_blocking(move || -> Result<WalkPlan, GitError> {
        let (repo, head) = git::sync_clone(&source, &path, &credentials)?;
        let mut plan = plan_walk(&repo, head, previous_head, full)?;
        if let Some(head) = plan.head {
            // Unsorted: counting needs no order.
            let local = |e: git2::Error| GitError::local(repo.path(), e.message());
            let mut all = repo.revwalk().map_err(local)?;
            all.push(head).map_err(local)?;
            plan.reachable = all.count();
            plan.files = community_file_candidates(&repo, head)?;
        }
        Ok(plan)
    })
    .await
    .expect("clone thread panicked")?;
    outcome.head = plan.head.map(|h| h.to_string());
    outcome.commits_reachable = Some(plan.reachable);
    if let Some(head) = plan.head {
        // The extension decides which path is which community file (no API request).
        let payload = json!({"head": head.to_string(), "paths": plan.files}).to_string();
        stage(db, job, "repo_files", &[payload]).await?;
    }
    outcome.full_walk = plan.hide.is_empty();
    let Some(head) = plan.head else {
        return Ok(());
    };
    if !plan.removed.is_empty() {
        let payloads: Vec<String> = plan
            .removed
            .iter()
            .map(|h| json!({"hash": h.to_string()}).to_string())
            .collect();
        for chunk in payloads.chunks(options.stage_batch) {
            stage(db, job, "commit_removed", chunk).await?;
        }
        outcome.commits_removed = plan.removed.len();
    }

    // Walker threads -> an encoder thread -> batches of JSON -> staging INSERTs here,
    // with a drain running beside them whenever the previous one is done.
    let (record_tx, record_rx) = mpsc::sync_channel(options.threads * 4);
    let (batch_tx, mut batch_rx) = tokio::sync::mpsc::channel::<Result<Vec<String>, GitError>>(4);
    let threads = options.threads;
    let batch = options.stage_batch;
    let walk_path = clone_path.clone();
    let hide = plan.hide.clone();
    let walker = std::thread::spawn(move || walk(&walk_path, head, &hide, threads, record_tx));
    let encoder = std::thread::spawn(move || {
        let mut payloads = Vec::with_capacity(batch);
        for record in record_rx.into_iter().flatten() {
            let payload = record.map(|r| serde_json::to_string(&r).expect("a commit record encodes"));
            match payload {
                Ok(p) => payloads.push(p),
                Err(e) => {
                    let _ = batch_tx.blocking_send(Err(e));
                    return;
                }
            }
            if payloads.len() == batch && batch_tx.blocking_send(Ok(std::mem::take(&mut payloads))).is_err() {
                return;
            }
        }
        if !payloads.is_empty() {
            let _ = batch_tx.blocking_send(Ok(payloads));
        }
    });
    let mut drain: Option<tokio::task::JoinHandle<Result<(), sqlx::Error>>> = None;
    let mut drained_upto = 0;
    let mut failure = None;
    while let Some(next) = batch_rx.recv().await {
        match next {
            Ok(payloads) => {
                if let Err(e) = stage(db, job, "commit", &payloads).await {
                    failure = Some(FacadeError::Database(e));
                    break;
                }
                outcome.commits_staged += payloads.len();
                // A drain beside the walk from the first batch (on a history of many
                // small commits the drain is the slower side, and the run ends when it
                // does), then once enough is waiting again: each drain ends by refreshing
                // the aggregates it touched, so fewer, larger drains cost less.
                if (drained_upto == 0 || outcome.commits_staged - drained_upto >= DRAIN_EVERY)
                    && drain.as_ref().is_none_or(|d| d.is_finished())
                {
                    drained_upto = outcome.commits_staged;
                    if let Some(done) = drain.take() {
                        done.await.expect("drain task panicked")?;
                    }
                    let db = db.clone();
                    let repo_id = job.repo_id;
                    drain = Some(tokio::spawn(async move {
                        sqlx::query("CALL aveloxis.drain($1, $2)")
                            .bind(repo_id)
                            .bind(DRAIN_BATCH)
                            .execute(&db)
                            .await
                            .map(|_| ())
                    }));
                }
            }
            Err(e) => {
                failure = Some(FacadeError::Git(e));
                break;
            }
        }
    }
    drop(batch_rx);
    encoder.join().expect("encoder thread panicked");
    let walked = walker.join().expect("walker thread panicked");
    if let Some(d) = drain {
        d.await.expect("drain task panicked")?;
    }
    if let Some(e) = failure {
        return Err(e);
    }
    walked?;
    Ok(())
}

/// What to walk: the new head, what to hide (the previous head when it is still an
/// ancestor-or-rewrite we can see), and the commits a rewrite dropped.
struct WalkPlan {
    head: Option<Oid>,
    hide: Vec<Oid>,
    removed: Vec<Oid>,
    reachable: usize,
    /// Where community files live (the top level, .github/ and docs/ of HEAD's tree).
    files: Vec<String>,
}

/// Entries of HEAD's tree where forges look for community health files: the top level,
/// `.github/` and `docs/` (names only, directories too; at most MAX_FILE_CANDIDATES).
fn community_file_candidates(repo: &Repository, head: Oid) -> Result<Vec<String>, GitError> {
    const MAX_FILE_CANDIDATES: usize = 5_000;
    let local = |e: git2::Error| GitError::local(repo.path(), e.message());
    let root = repo.find_commit(head).and_then(|c| c.tree()).map_err(local)?;
    let mut paths = Vec::new();
    for (prefix, tree) in [("", Some(root.clone())), (".github/", None), ("docs/", None)] {
        let tree = match tree {
            Some(t) => t,
            None => match root.get_name(prefix.trim_end_matches('/')) {
                Some(entry) if entry.kind() == Some(git2::ObjectType::Tree) => {
                    repo.find_tree(entry.id()).map_err(local)?
                }
                _ => continue,
            },
        };
        for entry in tree.iter() {
            if let Some(name) = entry.name() {
                paths.push(format!("{prefix}{name}"));
            }
            if paths.len() >= MAX_FILE_CANDIDATES {
                return Ok(paths);
            }
        }
    }
    Ok(paths)
}

/// `full`: walk everything (first run, force_recollect) even when the previous head is
/// known; a rewrite since that head is still detected and its dropped commits removed.
fn plan_walk(repo: &Repository, head: Option<Oid>, previous: Option<Oid>, full: bool) -> Result<WalkPlan, GitError> {
    let local = |e: git2::Error| GitError::local(repo.path(), e.message());
    let Some(head) = head else {
        return Ok(WalkPlan {
            head: None,
            hide: Vec::new(),
            removed: Vec::new(),
            reachable: 0,
            files: Vec::new(),
        });
    };
    let Some(previous) = previous else {
        return Ok(WalkPlan {
            head: Some(head),
            hide: Vec::new(),
            removed: Vec::new(),
            reachable: 0,
            files: Vec::new(),
        });
    };
    if repo.find_commit(previous).is_err() {
        // The clone no longer has the last head (cloned again): walk everything; the
        // drain skips what is stored.
        tracing::info!(%previous, "the last walked head is not in the clone: walking the whole history");
        return Ok(WalkPlan {
            head: Some(head),
            hide: Vec::new(),
            removed: Vec::new(),
            reachable: 0,
            files: Vec::new(),
        });
    }
    // A force-push: what the old head reached and the new one does not is gone from
    // the default branch.
    let mut removed = Vec::new();
    if previous != head && !repo.graph_descendant_of(head, previous).map_err(local)? {
        let mut gone = repo.revwalk().map_err(local)?;
        gone.push(previous).map_err(local)?;
        gone.hide(head).map_err(local)?;
        for oid in gone {
            removed.push(oid.map_err(local)?);
        }
        tracing::info!(%previous, %head, removed = removed.len(), "history was rewritten");
    }
    Ok(WalkPlan {
        head: Some(head),
        hide: if full { Vec::new() } else { vec![previous] },
        removed,
        reachable: 0,
        files: Vec::new(),
    })
}

/// Completes or fails the job. A successful run drained everything before resolving
/// authors; a failed one drains what it staged first (nothing fetched is lost).
pub async fn finish(
    db: &PgPool,
    agent: &str,
    job: &ClaimedJob,
    result: &Result<FacadeOutcome, (FacadeOutcome, FacadeError)>,
) -> Result<(), sqlx::Error> {
    let result = match result {
        Ok(outcome) => Ok(outcome.report()),
        Err((_, error)) => Err((error.to_string(), error.class())),
    };
    crate::queue::report(db, agent, job, result.is_err(), result).await
}

/// Commits per drain step: per-batch statements cost about a tenth less per commit at
/// 5,000 than at the drain's default of 1,000 (measured on libgit2's history).
const DRAIN_BATCH: i32 = 5000;

/// Commits staged between two drains started beside the walk.
const DRAIN_EVERY: usize = 2000;

/// Commits handed on at a time, and the run of consecutive commits one git process
/// takes before the next process takes the following run (neighbouring commits share
/// blobs, which git's delta cache then serves).
const WALK_CHUNK: usize = 64;
const GIT_SLICE_RUN: usize = 256;

/// Walks `head` minus `hide` with `threads` git processes counting lines (each given
/// every `threads`-th run of commits) and a reader thread per process adding the
/// commit's metadata from libgit2, and sends every commit to `out` (in no particular
/// order). Stops early, without error, when `out` is closed. Returns how many commits
/// were sent.
pub fn walk(
    clone_path: &Path,
    head: Oid,
    hide: &[Oid],
    threads: usize,
    out: mpsc::SyncSender<Vec<Result<CommitRecord, GitError>>>,
) -> Result<usize, GitError> {
    // Objects read from our own clone were checked when the pack was fetched and
    // indexed; re-hashing every object on read (libgit2's default, SHA-1DC) costs time
    // for nothing. git itself does not re-hash on read either.
    git2::opts::strict_hash_verification(false);
    let repo = Repository::open_bare(clone_path).map_err(|e| GitError::local(clone_path, e))?;
    let commits = git::commits_to_walk(&repo, head, hide)?
        .collect::<Result<Vec<Oid>, _>>()
        .map_err(|e| GitError::local(clone_path, format!("walking the history: {}", e.message())))?;
    let processes = threads.clamp(1, commits.len().div_ceil(GIT_SLICE_RUN).max(1));
    let mut slices = vec![Vec::with_capacity(commits.len() / processes + GIT_SLICE_RUN); processes];
    for (i, run) in commits.chunks(GIT_SLICE_RUN).enumerate() {
        slices[i % processes].extend_from_slice(run);
    }
    let mut readers = Vec::new();
    // No slice is empty but when there is nothing to walk: git given no commit would
    // show HEAD's history.
    for slice in slices.into_iter().filter(|s| !s.is_empty()) {
        let out = out.clone();
        let path = clone_path.to_path_buf();
        readers.push(std::thread::spawn(move || -> Result<usize, GitError> {
            let repo = Repository::open_bare(&path).map_err(|e| GitError::local(&path, e))?;
            let mut git_log = numstat::spawn(&path, &slice)?;
            let mut sent = 0;
            let mut chunk = Vec::with_capacity(WALK_CHUNK);
            let mut stopped = false;
            loop {
                let (oid, files) = match git_log.next_commit() {
                    Ok(Some(commit)) => commit,
                    Ok(None) => break,
                    Err(e) => {
                        git_log.abandon();
                        return Err(e);
                    }
                };
                chunk.push(git::read_commit(&repo, oid, files));
                if chunk.len() == WALK_CHUNK {
                    if out
                        .send(std::mem::replace(&mut chunk, Vec::with_capacity(WALK_CHUNK)))
                        .is_err()
                    {
                        stopped = true;
                        break;
                    }
                    sent += WALK_CHUNK;
                }
            }
            if stopped {
                git_log.abandon();
                return Ok(sent);
            }
            let read = sent + chunk.len();
            let skipped_renames = git_log.finish()?;
            if skipped_renames > 0 {
                tracing::info!(
                    commits = skipped_renames,
                    "git skipped inexact rename detection (its rename limit), as `git log --numstat` does"
                );
            }
            // git prints every commit it was given once; fewer is a history we cannot trust.
            if read != slice.len() {
                return Err(GitError::local(
                    &path,
                    format!("git log printed {read} of the {} commits it was given", slice.len()),
                ));
            }
            if !chunk.is_empty() {
                sent += chunk.len();
                let _ = out.send(chunk);
            }
            Ok(sent)
        }));
    }
    drop(out);
    let mut total = 0;
    let mut first_error = None;
    for r in readers {
        match r.join().expect("git reader thread panicked") {
            Ok(n) => total += n,
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    /// A bare repository of `n` linear commits, each changing one file (git fast-import).
    fn history(name: &str, n: usize) -> (PathBuf, Oid) {
        let dir = std::env::temp_dir().join(format!("aveloxis-walk-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let git = |args: &[&str]| {
            Command::new("git")
                .arg("--git-dir")
                .arg(&dir)
                .args(args)
                .output()
                .unwrap()
        };
        assert!(Command::new("git")
            .args(["init", "-q", "--bare"])
            .arg(&dir)
            .status()
            .unwrap()
            .success());
        let mut stream = Vec::new();
        for i in 1..=n {
            writeln!(stream, "commit refs/heads/main\nmark :{i}").unwrap();
            writeln!(stream, "committer A <a@example.com> {} +0000", 1_700_000_000 + i).unwrap();
            writeln!(stream, "data 2\nc\n").unwrap();
            if i > 1 {
                writeln!(stream, "from :{}", i - 1).unwrap();
            }
            let body = format!("line {i}\n");
            writeln!(stream, "M 100644 inline f{}.txt\ndata {}\n{body}", i % 7, body.len()).unwrap();
        }
        let mut child = Command::new("git")
            .arg("--git-dir")
            .arg(&dir)
            .args(["fast-import", "--quiet"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&stream).unwrap();
        assert!(child.wait().unwrap().success());
        let head = String::from_utf8(git(&["rev-parse", "refs/heads/main"]).stdout).unwrap();
        (dir, Oid::from_str(head.trim()).unwrap())
    }

    #[test]
    fn every_commit_is_walked_once_across_the_git_processes() {
        let (dir, head) = history("all", 700);
        let (tx, rx) = mpsc::sync_channel(4);
        let walker = std::thread::spawn({
            let dir = dir.clone();
            move || walk(&dir, head, &[], 3, tx)
        });
        let mut seen = std::collections::BTreeSet::new();
        for chunk in rx {
            for record in chunk {
                let record = record.unwrap();
                assert_eq!(record.files.len(), 1, "{}", record.hash);
                assert!(seen.insert(record.hash), "a commit walked twice");
            }
        }
        assert_eq!(walker.join().unwrap().unwrap(), 700);
        assert_eq!(seen.len(), 700);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_walk_whose_receiver_is_gone_stops_its_git_processes_without_error() {
        let (dir, head) = history("stopped", 700);
        let (tx, rx) = mpsc::sync_channel(1);
        drop(rx);
        // Returns (rather than reading every git's output to the end or hanging), having
        // sent nothing.
        assert_eq!(walk(&dir, head, &[], 2, tx).unwrap(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
