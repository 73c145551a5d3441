//! Scripted git repositories for facade tests, built with `git fast-import` (exact
//! authors, emails, dates, merges of any arity, binary contents), and what the git CLI
//! itself says about them, parsed here independently of the agent.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A file operation of a scripted commit.
pub enum Change<'a> {
    Write(&'a str, &'a [u8]),
    Delete(&'a str),
}

/// A commit to script. `from` and `merge` name earlier commits by their mark.
pub struct Commit<'a> {
    pub branch: &'a str,
    pub mark: u32,
    pub from: Option<u32>,
    pub merge: &'a [u32],
    /// `Name <email>`, exactly as git stores it (the email may be empty: `Name <>`).
    pub author: &'a str,
    pub time: &'a str,
    pub message: &'a str,
    pub changes: Vec<Change<'a>>,
}

/// A non-bare repository in a temporary directory, removed on drop.
pub struct ScriptedRepo {
    pub path: PathBuf,
}

impl ScriptedRepo {
    pub fn new(label: &str) -> ScriptedRepo {
        let path = std::env::temp_dir().join(format!("aveloxis-git-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        let repo = ScriptedRepo { path };
        repo.git(&["init", "-q", "-b", "main"]);
        repo
    }

    /// Runs git in the repository; panics with its stderr when it fails.
    pub fn git(&self, args: &[&str]) -> Vec<u8> {
        let out = Command::new("git")
            .arg("-C")
            .arg(&self.path)
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", &self.path)
            .output()
            .expect("run git");
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Imports commits with `git fast-import` (marks persist between calls).
    pub fn import(&self, commits: &[Commit<'_>]) {
        let mut stream = Vec::new();
        for c in commits {
            writeln!(stream, "commit refs/heads/{}", c.branch).unwrap();
            writeln!(stream, "mark :{}", c.mark).unwrap();
            writeln!(stream, "author {} {}", c.author, c.time).unwrap();
            writeln!(stream, "committer {} {}", c.author, c.time).unwrap();
            writeln!(stream, "data {}\n{}", c.message.len(), c.message).unwrap();
            if let Some(from) = c.from {
                writeln!(stream, "from :{from}").unwrap();
            }
            for m in c.merge {
                writeln!(stream, "merge :{m}").unwrap();
            }
            for change in &c.changes {
                match change {
                    Change::Write(path, content) => {
                        writeln!(stream, "M 100644 inline \"{}\"", path.replace('"', "\\\"")).unwrap();
                        writeln!(stream, "data {}", content.len()).unwrap();
                        stream.extend_from_slice(content);
                        stream.push(b'\n');
                    }
                    Change::Delete(path) => writeln!(stream, "D \"{}\"", path.replace('"', "\\\"")).unwrap(),
                }
            }
            stream.push(b'\n');
        }
        let marks = self.path.join(".git").join("test-marks");
        let marks_arg = format!("--export-marks={}", marks.display());
        let import_arg = format!("--import-marks-if-exists={}", marks.display());
        let mut child = Command::new("git")
            .arg("-C")
            .arg(&self.path)
            .args(["fast-import", "--quiet", "--force", &marks_arg, &import_arg])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run git fast-import");
        child.stdin.take().unwrap().write_all(&stream).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "fast-import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The hash of a mark.
    pub fn mark(&self, mark: u32) -> String {
        let marks = std::fs::read_to_string(self.path.join(".git").join("test-marks")).unwrap();
        marks
            .lines()
            .find_map(|l| l.strip_prefix(&format!(":{mark} ")).map(str::to_string))
            .unwrap_or_else(|| panic!("no mark {mark}"))
    }

    /// (hash, file, added, removed) as `git log --numstat` prints them for the default
    /// branch: renames as their new path, binary files as `-`, merges and commits that
    /// change nothing as one `(no files)` row.
    pub fn numstat(&self) -> BTreeSet<(String, String, String, String)> {
        numstat_of(&self.path, "main")
    }

    /// (hash, old path, new path) of every rename (or copy) `git log --name-status -z`
    /// reports on the default branch.
    pub fn renames(&self) -> BTreeSet<(String, String, String)> {
        let out = self.git(&["log", "-z", "--name-status", "--format=%x01%H", "main"]);
        let mut renames = BTreeSet::new();
        let mut hash = String::new();
        let mut tokens = out.split(|b| *b == 0).map(|t| String::from_utf8_lossy(t).into_owned());
        while let Some(token) = tokens.next() {
            let token = token.trim_start_matches('\n').to_string();
            if let Some(h) = token.strip_prefix('\u{1}') {
                hash = h.to_string();
            } else if token.starts_with('R') || token.starts_with('C') {
                let (old, new) = (tokens.next().unwrap(), tokens.next().unwrap());
                renames.insert((hash.clone(), old, new));
            } else if !token.is_empty() {
                tokens.next(); // the path of an A, M, D or T line
            }
        }
        renames
    }

    /// (hash, parent hashes in order) of the default branch.
    pub fn parents(&self) -> BTreeSet<(String, Vec<String>)> {
        let out = String::from_utf8(self.git(&["log", "--format=%H %P", "main"])).unwrap();
        out.lines()
            .map(|l| {
                let mut parts = l.split(' ').filter(|p| !p.is_empty()).map(str::to_string);
                let hash = parts.next().unwrap();
                (hash, parts.collect())
            })
            .collect()
    }

    /// (hash, full message) of the default branch.
    pub fn messages(&self) -> BTreeSet<(String, String)> {
        let out = String::from_utf8(self.git(&["log", "-z", "--format=%H%n%B", "main"])).unwrap();
        out.split('\0')
            .filter(|r| !r.is_empty())
            .map(|r| {
                let (hash, body) = r.split_once('\n').unwrap();
                (hash.to_string(), body.trim_end().to_string())
            })
            .collect()
    }

    pub fn path_str(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

impl Drop for ScriptedRepo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The facade's stored rows in the form of [`numstat_of`]: (hash, file, added, removed),
/// binary files as `-`, a commit without files as one `(no files)` row.
pub async fn stored_numstat(pool: &sqlx::PgPool) -> BTreeSet<(String, String, String, String)> {
    sqlx::query_as::<_, (String, String, i32, i32, bool)>(
        "SELECT cmt_commit_hash, cmt_filename, cmt_added, cmt_removed, cmt_binary FROM aveloxis_data.commits",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .map(|(h, f, a, r, binary)| {
        if binary {
            (h, f, "-".into(), "-".into())
        } else {
            (h, f, a.to_string(), r.to_string())
        }
    })
    .collect()
}

/// `git log --numstat -z` of `rev` in the repository at `path`, parsed.
pub fn numstat_of(path: &Path, rev: &str) -> BTreeSet<(String, String, String, String)> {
    let out = Command::new("git")
        .arg("-C")
        .arg(path)
        .args(["log", "--numstat", "-z", "--format=%x01%H", rev])
        .output()
        .expect("run git log");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut rows = BTreeSet::new();
    for record in text.split('\u{1}').skip(1) {
        let (hash, rest) = record.split_once('\n').unwrap_or((record, ""));
        let hash = hash.trim_matches('\0').to_string();
        let parts: Vec<&str> = rest.split('\0').collect();
        let mut files = 0;
        let mut i = 0;
        while i < parts.len() {
            let entry = parts[i].trim_start_matches('\n');
            if entry.is_empty() {
                i += 1;
                continue;
            }
            let mut fields = entry.splitn(3, '\t');
            let (added, removed, file) = (
                fields.next().unwrap(),
                fields.next().unwrap(),
                fields.next().unwrap_or(""),
            );
            // -z prints a rename as "a\td\t\0old\0new".
            let file = if file.is_empty() {
                i += 2;
                parts[i]
            } else {
                file
            };
            rows.insert((hash.clone(), file.to_string(), added.to_string(), removed.to_string()));
            files += 1;
            i += 1;
        }
        if files == 0 {
            rows.insert((hash, "(no files)".into(), "0".into(), "0".into()));
        }
    }
    rows
}
