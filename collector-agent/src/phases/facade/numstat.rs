//! Per-file line counts from git itself. `git log --numstat` is the reference analysts
//! compare with; libgit2's diff and rename pairing differ from git's in large commits
//! (rename limit, exact-rename pass, basename heuristic), so the facade asks git: one
//! `git log --no-walk --stdin --numstat -z` process per slice of the commits to walk,
//! read as it streams. Commit metadata still comes from libgit2 (no parsing of text).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::thread::JoinHandle;

use git2::Oid;

use super::git::{FileChange, GitError};

/// The last bytes of git's standard error kept for an error message.
const STDERR_TAIL: usize = 4096;

/// A running `git log` over a list of commits, read commit by commit.
pub struct NumstatStream {
    git_dir: PathBuf,
    child: Child,
    out: BufReader<ChildStdout>,
    feeder: Option<JoinHandle<std::io::Result<()>>>,
    stderr: Option<JoinHandle<StderrSummary>>,
    /// The commit whose file lines are being read.
    current: Option<(Oid, Vec<FileChange>)>,
    token: Vec<u8>,
    done: bool,
}

/// What git said on standard error: its tail, and how many commits it skipped inexact
/// rename detection for (git's rename limit: the same rows `git log --numstat` prints).
#[derive(Default)]
struct StderrSummary {
    tail: Vec<u8>,
    rename_limit_warnings: usize,
}

/// Starts `git log` on the bare clone at `git_dir` for exactly `commits` (each shown
/// once, against its first parent, merges without a diff: `git log`'s defaults).
pub fn spawn(git_dir: &Path, commits: &[Oid]) -> Result<NumstatStream, GitError> {
    // Given no commit, `git log --stdin` would show HEAD's whole history.
    if commits.is_empty() {
        return Err(GitError::local(git_dir, "git log --numstat: no commits to count"));
    }
    let mut child = Command::new("git")
        .arg("--git-dir")
        .arg(git_dir)
        .args([
            "log",
            "--no-walk=unsorted",
            "--stdin",
            "--numstat",
            "-z",
            "--format=%x01%H",
            "--no-ext-diff",
            "--no-textconv",
            "--no-color",
        ])
        // The user's and the system's git configuration must not change what is counted
        // (diff.renames, diff.renameLimit, log.showRoot...): git's defaults, as a clean
        // `git log --numstat` sees them.
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env_remove("GIT_DIR")
        .env_remove("GIT_CONFIG_PARAMETERS")
        .env_remove("GIT_CONFIG_COUNT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            GitError::local(
                git_dir,
                format!("cannot run git ({e}): the facade counts lines with the git command-line tool; install git"),
            )
        })?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let list: Vec<u8> = commits.iter().flat_map(|c| format!("{c}\n").into_bytes()).collect();
    // git reads its whole list before printing; writing from a thread never deadlocks.
    let feeder = std::thread::spawn(move || stdin.write_all(&list));
    let mut err = child.stderr.take().expect("stderr is piped");
    let stderr = std::thread::spawn(move || {
        let mut summary = StderrSummary::default();
        let mut buf = [0u8; 8192];
        let mut line = Vec::new();
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            for &b in &buf[..n] {
                if b == b'\n' {
                    if line.windows(16).any(|w| w == b"rename detection") {
                        summary.rename_limit_warnings += 1;
                    }
                    line.clear();
                } else {
                    line.push(b);
                }
            }
            summary.tail.extend_from_slice(&buf[..n]);
            if summary.tail.len() > 2 * STDERR_TAIL {
                summary.tail.drain(..summary.tail.len() - STDERR_TAIL);
            }
        }
        summary
    });
    let out = BufReader::with_capacity(1 << 16, child.stdout.take().expect("stdout is piped"));
    Ok(NumstatStream {
        git_dir: git_dir.to_path_buf(),
        child,
        out,
        feeder: Some(feeder),
        stderr: Some(stderr),
        current: None,
        token: Vec::new(),
        done: false,
    })
}

impl NumstatStream {
    fn error(&self, what: impl std::fmt::Display) -> GitError {
        GitError::local(&self.git_dir, format!("git log --numstat: {what}"))
    }

    /// The next NUL-terminated field of git's output; None at the end.
    fn next_token(&mut self) -> Result<Option<Vec<u8>>, GitError> {
        self.token.clear();
        let n = self
            .out
            .read_until(0, &mut self.token)
            .map_err(|e| self.error(format!("reading its output: {e}")))?;
        if n == 0 {
            return Ok(None);
        }
        if self.token.last() == Some(&0) {
            self.token.pop();
        }
        Ok(Some(std::mem::take(&mut self.token)))
    }

    /// The next commit and its changed files, in git's order. Call [`finish`] after the
    /// last one: a git that failed part-way is an error there, not a short history.
    pub fn next_commit(&mut self) -> Result<Option<(Oid, Vec<FileChange>)>, GitError> {
        while !self.done {
            let Some(token) = self.next_token()? else {
                self.done = true;
                break;
            };
            if let Some(hash) = token.strip_prefix(b"\x01") {
                let hash = std::str::from_utf8(hash)
                    .ok()
                    .and_then(|h| Oid::from_str(h.trim()).ok());
                let Some(oid) = hash else {
                    return Err(self.error(format!(
                        "expected a commit hash, read {:?}",
                        String::from_utf8_lossy(&token)
                    )));
                };
                if let Some(previous) = self.current.replace((oid, Vec::new())) {
                    return Ok(Some(previous));
                }
                continue;
            }
            let line = token.strip_prefix(b"\n").unwrap_or(&token);
            if line.is_empty() {
                continue;
            }
            let change = self.file_line(line)?;
            match self.current.as_mut() {
                Some((_, files)) => files.push(change),
                None => return Err(self.error("a file line before any commit")),
            }
        }
        Ok(self.current.take())
    }

    /// `added\tremoved\tpath`, or for a rename or copy `added\tremoved\t` followed by
    /// the old and the new path as two fields. Binary files count `-` and are stored 0/0.
    fn file_line(&mut self, line: &[u8]) -> Result<FileChange, GitError> {
        let mut parts = line.splitn(3, |&b| b == b'\t');
        let (Some(added), Some(removed), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(self.error(format!("unreadable file line {:?}", String::from_utf8_lossy(line))));
        };
        let binary = added == b"-" && removed == b"-";
        let count = |field: &[u8]| -> Option<u32> {
            if binary {
                Some(0)
            } else {
                std::str::from_utf8(field).ok()?.parse().ok()
            }
        };
        let (Some(added), Some(removed)) = (count(added), count(removed)) else {
            return Err(self.error(format!("unreadable counts in {:?}", String::from_utf8_lossy(line))));
        };
        let text = |p: &[u8]| String::from_utf8_lossy(p).into_owned();
        let (path, previous_path) = if path.is_empty() {
            let old = self
                .next_token()?
                .ok_or_else(|| self.error("a rename without its old path"))?;
            let new = self
                .next_token()?
                .ok_or_else(|| self.error("a rename without its new path"))?;
            (text(&new), Some(text(&old)).filter(|o| *o != text(&new)))
        } else {
            (text(path), None)
        };
        Ok(FileChange {
            path,
            previous_path,
            added,
            removed,
            binary,
        })
    }

    /// Stops git early (the walk's receiver went away): nothing more is read.
    pub fn abandon(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for git; an exit other than success is an error naming what git said.
    /// Returns how many commits git skipped inexact rename detection for.
    pub fn finish(mut self) -> Result<usize, GitError> {
        // Nothing should be left unread; if anything is, it must not block git.
        let _ = std::io::copy(&mut self.out, &mut std::io::sink());
        let status = self
            .child
            .wait()
            .map_err(|e| self.error(format!("waiting for git: {e}")))?;
        let fed = self
            .feeder
            .take()
            .map(|f| f.join().expect("git feeder thread panicked"));
        let stderr = self
            .stderr
            .take()
            .map(|s| s.join().expect("git stderr thread panicked"))
            .unwrap_or_default();
        if !status.success() {
            let said = String::from_utf8_lossy(&stderr.tail);
            return Err(self.error(format!("git exited with {status}: {}", said.trim())));
        }
        if let Some(Err(e)) = fed {
            return Err(self.error(format!("writing the commit list to git: {e}")));
        }
        Ok(stderr.rename_limit_warnings)
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    fn run(args: &[&str], dir: &Path) -> String {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "A")
            .env("GIT_AUTHOR_EMAIL", "a@example.com")
            .env("GIT_COMMITTER_NAME", "A")
            .env("GIT_COMMITTER_EMAIL", "a@example.com")
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn renames_binaries_odd_paths_and_empty_commits_are_read_as_git_prints_them() {
        let dir = std::env::temp_dir().join(format!("aveloxis-numstat-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        run(&["init", "-q", "-b", "main"], &dir);
        let body: String = (0..30).map(|i| format!("line {i}\n")).collect();
        std::fs::write(dir.join("a b\ttab.txt"), &body).unwrap();
        std::fs::write(dir.join("bin.dat"), [0u8, 1, 2, 0, 255]).unwrap();
        run(&["add", "-A"], &dir);
        run(&["commit", "-q", "-m", "one"], &dir);
        std::fs::rename(dir.join("a b\ttab.txt"), dir.join("naïve\nname.txt")).unwrap();
        run(&["add", "-A"], &dir);
        run(&["commit", "-q", "-m", "rename"], &dir);
        run(&["commit", "-q", "--allow-empty", "-m", "empty"], &dir);
        let hashes: Vec<Oid> = run(&["rev-list", "HEAD"], &dir)
            .lines()
            .map(|h| Oid::from_str(h).unwrap())
            .collect();
        let mut stream = spawn(&dir.join(".git"), &hashes).unwrap();
        let mut seen = Vec::new();
        while let Some(commit) = stream.next_commit().unwrap() {
            seen.push(commit);
        }
        stream.finish().unwrap();
        assert_eq!(seen.iter().map(|(h, _)| *h).collect::<Vec<_>>(), hashes);
        assert!(seen[0].1.is_empty(), "the empty commit has no files");
        assert_eq!(
            seen[1].1,
            vec![FileChange {
                path: "naïve\nname.txt".into(),
                previous_path: Some("a b\ttab.txt".into()),
                added: 0,
                removed: 0,
                binary: false
            }]
        );
        let mut root = seen[2].1.clone();
        root.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(root[0].path, "a b\ttab.txt");
        assert_eq!((root[0].added, root[0].removed, root[0].binary), (30, 0, false));
        assert_eq!((root[1].path.as_str(), root[1].binary), ("bin.dat", true));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_commit_git_cannot_read_is_an_error_not_a_short_history() {
        let dir = std::env::temp_dir().join(format!("aveloxis-numstat-missing-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        run(&["init", "-q", "-b", "main"], &dir);
        let missing = Oid::from_str("0123456789012345678901234567890123456789").unwrap();
        let mut stream = spawn(&dir.join(".git"), &[missing]).unwrap();
        while stream.next_commit().unwrap().is_some() {}
        let err = stream.finish().expect_err("git fails on a commit it does not have");
        assert!(err.to_string().contains("git exited"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
