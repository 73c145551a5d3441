//! The analysis phase (docs/analysis.md): what the HEAD tree of a repository holds, read
//! from the facade's bare clone without a checkout: labor, the lines of code, comments and
//! blanks of every file in a language `tokei` knows, counted in process from the git blobs
//! (scc is not installable here; its complexity is not ported: NULL), and the dependency
//! files the extension parses (`phases::dependencies`).
//!
//! Only when HEAD changed: the database says which HEAD it analysed last
//! (`aveloxis.analysis_state`); the same HEAD completes the job with nothing staged and
//! nothing written. A new HEAD is staged as one snapshot (`labor_snapshot` envelopes,
//! `{head_sha, part, parts, files: [...]}`) which `complete` applies in one transaction:
//! the previous snapshot moves to `repo_labor_history`, the new one takes one
//! `data_collection_date` (8Knot's language chart reads the latest scan's rows).

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sqlx::PgPool;
use tokei::{Config, LanguageType};

use crate::queue::ClaimedJob;

/// Files per `labor_snapshot` envelope.
const FILES_PER_ENVELOPE: usize = 2000;
/// Blobs larger than this are not counted (generated or vendored data, not labor).
const MAX_BLOB_BYTES: usize = 8 << 20;

/// One counted file of the HEAD tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaborFile {
    pub path: String,
    pub language: String,
    pub code: usize,
    pub comments: usize,
    pub blanks: usize,
    pub bytes: usize,
}

/// A HEAD tree counted: its commit, the files, and what was left out and why.
#[derive(Debug, Default)]
pub struct Labor {
    pub head_sha: String,
    pub files: Vec<LaborFile>,
    /// Blobs in no language tokei knows (data, images, licences...).
    pub unknown_language: usize,
    pub binary: usize,
    pub too_large: usize,
    /// Symbolic links and submodules: not files of this repository.
    pub not_files: usize,
}

/// The language of a blob: by file name and extension as tokei has them, else by a
/// shebang line. (tokei's own shebang detection opens the path, which a blob does not
/// have: its first line is handed to it through a scratch file.)
fn language_of(path: &str, content: &[u8], config: &Config, scratch: &Path) -> Option<LanguageType> {
    // An absolute path under a directory that does not exist: tokei reads nothing from
    // the agent's own file system for it.
    let virtual_path = Path::new("/nonexistent-aveloxis-blob").join(path);
    if let Some(language) = LanguageType::from_path(&virtual_path, config) {
        return Some(language);
    }
    if !content.starts_with(b"#!") {
        return None;
    }
    let first_line = content.split(|b| *b == b'\n').next().unwrap_or_default();
    std::fs::write(scratch, first_line).ok()?;
    LanguageType::from_shebang(scratch)
}

/// Counts the HEAD tree of the git repository at `git_dir` (a bare clone).
pub fn count_head(git_dir: &Path) -> Result<Labor, git2::Error> {
    let repo = git2::Repository::open_bare(git_dir).or_else(|_| git2::Repository::open(git_dir))?;
    let commit = repo.head()?.peel_to_commit()?;
    let tree = commit.tree()?;
    let config = Config::default();
    let scratch_dir = tempdir_for_shebangs();
    let scratch = scratch_dir.join("first-line");
    let mut labor = Labor {
        head_sha: commit.id().to_string(),
        ..Default::default()
    };
    let mut failure = None;
    tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
        match entry.kind() {
            Some(git2::ObjectType::Blob) => {}
            Some(git2::ObjectType::Tree) => return git2::TreeWalkResult::Ok,
            _ => {
                labor.not_files += 1;
                return git2::TreeWalkResult::Ok;
            }
        }
        // 0o120000: a symbolic link, whose blob is the link's target.
        if entry.filemode() == 0o120000 {
            labor.not_files += 1;
            return git2::TreeWalkResult::Ok;
        }
        let Some(name) = entry.name() else {
            labor.unknown_language += 1;
            return git2::TreeWalkResult::Ok;
        };
        let path = format!("{dir}{name}");
        let blob = match repo.find_blob(entry.id()) {
            Ok(blob) => blob,
            Err(e) => {
                failure = Some(e);
                return git2::TreeWalkResult::Abort;
            }
        };
        let content = blob.content();
        if content.len() > MAX_BLOB_BYTES {
            labor.too_large += 1;
            return git2::TreeWalkResult::Ok;
        }
        let Some(language) = language_of(&path, content, &config, &scratch) else {
            labor.unknown_language += 1;
            return git2::TreeWalkResult::Ok;
        };
        if blob.is_binary() {
            labor.binary += 1;
            return git2::TreeWalkResult::Ok;
        }
        // Embedded languages (code blocks in Markdown, CSS in HTML) count as lines of the
        // file's own language, as scc counts them.
        let stats = language.parse_from_slice(content, &config).summarise();
        labor.files.push(LaborFile {
            path,
            language: language.name().to_string(),
            code: stats.code,
            comments: stats.comments,
            blanks: stats.blanks,
            bytes: content.len(),
        });
        git2::TreeWalkResult::Ok
    })?;
    let _ = std::fs::remove_dir_all(&scratch_dir);
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(labor)
}

fn tempdir_for_shebangs() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("aveloxis-labor-{}-{}", std::process::id(), fastrand::u64(..)));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

impl Labor {
    /// The snapshot as `labor_snapshot` envelopes (docs/staging-contract.md).
    pub fn envelopes(&self) -> Vec<String> {
        let chunks: Vec<&[LaborFile]> = if self.files.is_empty() {
            vec![&[]]
        } else {
            self.files.chunks(FILES_PER_ENVELOPE).collect()
        };
        let parts = chunks.len();
        chunks
            .iter()
            .enumerate()
            .map(|(i, files)| {
                json!({
                    "head_sha": self.head_sha,
                    "part": i + 1,
                    "parts": parts,
                    "files": files.iter().map(|f| json!({
                        "path": f.path, "language": f.language, "code": f.code, "comments": f.comments,
                        "blanks": f.blanks, "bytes": f.bytes
                    })).collect::<Vec<_>>()
                })
                .to_string()
            })
            .collect()
    }
}

/// What one analysis job did.
#[derive(Debug, Default)]
pub struct AnalysisOutcome {
    pub head_sha: String,
    /// HEAD was the one analysed last: nothing staged, nothing written.
    pub unchanged: bool,
    pub files: usize,
    pub languages: usize,
    pub skipped: Value,
    /// The dependency files harvested (None: the extension predates them).
    pub dependencies: Option<super::dependencies::Harvest>,
}

impl super::Outcome for AnalysisOutcome {
    fn summary(&self) -> String {
        if self.unchanged {
            format!(
                "analysis: HEAD {} unchanged since the last analysis: nothing to do",
                short(&self.head_sha)
            )
        } else {
            let dependencies = match &self.dependencies {
                Some(h) => format!(
                    "; {} dependency files, {} new blobs staged ({} bytes){}",
                    h.files,
                    h.blobs_staged,
                    h.bytes_staged,
                    if h.too_large > 0 {
                        format!(", {} over the size cap", h.too_large)
                    } else {
                        String::new()
                    }
                ),
                None => String::new(),
            };
            format!(
                "HEAD {}, {} files in {} languages counted (left out: {}){dependencies}",
                short(&self.head_sha),
                self.files,
                self.languages,
                self.skipped
            )
        }
    }

    fn report(&self) -> Value {
        let dependencies = self.dependencies.as_ref().map(|h| {
            json!({"files": h.files, "blobs_staged": h.blobs_staged, "bytes_staged": h.bytes_staged,
                   "too_large": h.too_large})
        });
        json!({"head_sha": self.head_sha, "unchanged": self.unchanged, "files": self.files,
               "languages": self.languages, "skipped": self.skipped, "dependency_files": dependencies})
    }
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// Errors of an analysis job, with their queue class.
#[derive(Debug)]
pub enum AnalysisError {
    /// The facade has not cloned the repository yet: try again later.
    NoClone(PathBuf),
    Git(git2::Error),
    Database(sqlx::Error),
    /// Listing or staging the dependency files failed.
    Dependencies(String),
}

impl std::fmt::Display for AnalysisError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoClone(p) => write!(
                f,
                "no clone at {} yet: the facade phase clones the repository; analysis waits for it",
                p.display()
            ),
            Self::Git(e) => write!(f, "reading the clone: {e}"),
            Self::Database(e) => write!(f, "the database: {e}"),
            Self::Dependencies(e) => write!(f, "dependency files: {e}"),
        }
    }
}

impl super::Failure for AnalysisError {
    fn class(&self) -> &'static str {
        match self {
            Self::NoClone(_) | Self::Database(_) | Self::Dependencies(_) => "transient",
            // A clone git cannot read (corrupt, empty history) is not fixed by retrying soon.
            Self::Git(_) => "skip",
        }
    }
}

/// Runs an analysis job on the facade's clone under `clone_dir`.
pub async fn analyze(db: &PgPool, job: &ClaimedJob, clone_dir: &Path) -> Result<AnalysisOutcome, AnalysisError> {
    let git_dir = clone_dir.join(format!("repo_{}", job.repo_id));
    if !git_dir.exists() {
        return Err(AnalysisError::NoClone(git_dir));
    }
    let head_of = git_dir.clone();
    let head: String = tokio::task::spawn_blocking(move || -> Result<String, git2::Error> {
        let repo = git2::Repository::open_bare(&head_of).or_else(|_| git2::Repository::open(&head_of))?;
        let head = repo.head()?.peel_to_commit()?.id().to_string();
        Ok(head)
    })
    .await
    .expect("the HEAD lookup does not panic")
    .map_err(AnalysisError::Git)?;
    let analysed: Option<String> = sqlx::query_scalar("SELECT head_sha FROM aveloxis.analysis_state($1)")
        .bind(job.lease_token)
        .fetch_optional(db)
        .await
        .map_err(AnalysisError::Database)?
        .flatten();
    // A forced full run (aveloxis.force_recollect) counts again whatever HEAD is.
    if analysed.as_deref() == Some(head.as_str()) && job.since.is_some() {
        return Ok(AnalysisOutcome {
            head_sha: head,
            unchanged: true,
            ..Default::default()
        });
    }
    let labor_dir = git_dir.clone();
    let labor = tokio::task::spawn_blocking(move || count_head(&labor_dir))
        .await
        .expect("counting does not panic")
        .map_err(AnalysisError::Git)?;
    let envelopes = labor.envelopes();
    crate::queue::stage(db, job, "labor_snapshot", &envelopes)
        .await
        .map_err(AnalysisError::Database)?;
    let dependencies = super::dependencies::harvest(db, job, &git_dir, &labor.head_sha)
        .await
        .map_err(AnalysisError::Dependencies)?;
    let languages: std::collections::BTreeSet<&str> = labor.files.iter().map(|f| f.language.as_str()).collect();
    Ok(AnalysisOutcome {
        dependencies,
        head_sha: labor.head_sha.clone(),
        unchanged: false,
        files: labor.files.len(),
        languages: languages.len(),
        skipped: json!({"unknown_language": labor.unknown_language, "binary": labor.binary,
                        "too_large": labor.too_large, "links_and_submodules": labor.not_files}),
    })
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn languages_by_name_extension_and_shebang_never_from_the_agents_disk() {
        let config = Config::default();
        let dir = tempdir_for_shebangs();
        let scratch = dir.join("first-line");
        let of = |path: &str, content: &[u8]| language_of(path, content, &config, &scratch).map(|l| l.name());
        assert_eq!(of("src/main.rs", b"fn main() {}\n"), Some("Rust"));
        assert_eq!(of("Makefile", b"all:\n"), Some("Makefile"));
        assert_eq!(of("bin/tool", b"#!/usr/bin/env python3\nprint(1)\n"), Some("Python"));
        assert_eq!(of("bin/run", b"#!/bin/bash\necho hi\n"), Some("BASH"));
        assert_eq!(of("LICENSE", b"MIT License\n"), None);
        // A path that exists on the agent's machine is not read for a shebang.
        assert_eq!(of("etc/passwd", b"root:x:0:0\n"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
