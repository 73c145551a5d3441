//! The analysis phase's dependency files (docs/dependencies.md): the manifests and
//! lockfiles of the HEAD tree, read from the bare clone and staged for the extension to
//! parse. The agent parses nothing: it asks the database which files count
//! (`aveloxis.dependency_file_patterns()`, globs) and which blobs it already has
//! (`aveloxis.known_dependency_blobs(lease)`), stages the content of the new blobs only
//! (`dependency_blob`) and the whole file set (`dependency_files`), so deleted files
//! disappear and an unchanged lockfile is never sent twice.

use std::collections::HashSet;
use std::path::Path;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde_json::json;
use sqlx::PgPool;

use crate::queue::ClaimedJob;

/// Blobs larger than this are listed but not sent (lockfiles of large monorepos run to
/// tens of MB; beyond this they are generated data, not something to parse in a backend).
pub const MAX_DEPENDENCY_BLOB_BYTES: usize = 32 << 20;
/// Directories whose manifests are other projects' copies, not this repository's.
const VENDORED: [&str; 3] = ["node_modules", "vendor", "bower_components"];

/// The served globs, compiled: `file` globs match a file name, `path` globs the path.
pub struct Selector {
    file: GlobSet,
    path: GlobSet,
}

impl Selector {
    pub fn new(patterns: &[(String, String)]) -> Result<Self, globset::Error> {
        let mut file = GlobSetBuilder::new();
        let mut path = GlobSetBuilder::new();
        for (applies_to, glob) in patterns {
            let compiled = GlobBuilder::new(glob).literal_separator(true).build()?;
            if applies_to == "path" {
                path.add(compiled);
            } else {
                file.add(compiled);
            }
        }
        Ok(Selector {
            file: file.build()?,
            path: path.build()?,
        })
    }

    pub fn selects(&self, path: &str) -> bool {
        if path.split('/').any(|segment| VENDORED.contains(&segment)) {
            return false;
        }
        let name = path.rsplit('/').next().unwrap_or(path);
        self.file.is_match(name) || self.path.is_match(path)
    }
}

/// A dependency file of the HEAD tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DependencyFile {
    pub path: String,
    pub blob_sha: String,
    pub bytes: usize,
}

/// The dependency files of the HEAD tree of the clone at `git_dir` (symbolic links and
/// submodules are not files of this repository).
pub fn list_files(git_dir: &Path, selector: &Selector) -> Result<Vec<DependencyFile>, git2::Error> {
    let repo = git2::Repository::open_bare(git_dir).or_else(|_| git2::Repository::open(git_dir))?;
    let tree = repo.head()?.peel_to_commit()?.tree()?;
    let odb = repo.odb()?;
    let mut files = Vec::new();
    let mut failure = None;
    tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
        if entry.kind() != Some(git2::ObjectType::Blob) || entry.filemode() == 0o120000 {
            return git2::TreeWalkResult::Ok;
        }
        let Some(name) = entry.name() else {
            return git2::TreeWalkResult::Ok;
        };
        let path = format!("{dir}{name}");
        if !selector.selects(&path) {
            return git2::TreeWalkResult::Ok;
        }
        match odb.read_header(entry.id()) {
            Ok((bytes, _)) => files.push(DependencyFile {
                path,
                blob_sha: entry.id().to_string(),
                bytes,
            }),
            Err(e) => {
                failure = Some(e);
                return git2::TreeWalkResult::Abort;
            }
        }
        git2::TreeWalkResult::Ok
    })?;
    match failure {
        Some(e) => Err(e),
        None => Ok(files),
    }
}

/// A blob as a `dependency_blob` envelope: UTF-8 text as is, anything else (UTF-16
/// manifests, stray bytes) as base64 for the extension to decode.
pub fn blob_envelope(blob_sha: &str, path: &str, content: &[u8]) -> String {
    use base64::Engine;
    match std::str::from_utf8(content) {
        Ok(text) if !text.contains('\0') => json!({"blob_sha": blob_sha, "path": path, "content": text}),
        _ => json!({"blob_sha": blob_sha, "path": path, "encoding": "base64",
                    "content": base64::engine::general_purpose::STANDARD.encode(content)}),
    }
    .to_string()
}

/// What a harvest found and sent.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Harvest {
    pub files: usize,
    pub blobs_staged: usize,
    pub bytes_staged: usize,
    pub too_large: usize,
}

/// Stages the dependency files of HEAD `head_sha` for the job's repository. `Ok(None)`:
/// the extension predates dependency parsing (logged; labor still completes).
pub async fn harvest(db: &PgPool, job: &ClaimedJob, git_dir: &Path, head_sha: &str) -> Result<Option<Harvest>, String> {
    let patterns: Vec<(String, String)> =
        match sqlx::query_as("SELECT applies_to, glob FROM aveloxis.dependency_file_patterns()")
            .fetch_all(db)
            .await
        {
            Ok(p) => p,
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42883") => {
                tracing::warn!(
                    repo = job.repo_id,
                    "the extension has no dependency_file_patterns (older than 0.16.0): dependency files not harvested"
                );
                return Ok(None);
            }
            Err(e) => return Err(format!("asking for the dependency file patterns: {e}")),
        };
    let selector = Selector::new(&patterns).map_err(|e| format!("a served pattern is not a glob: {e}"))?;
    let known: HashSet<String> = sqlx::query_scalar("SELECT aveloxis.known_dependency_blobs($1)")
        .bind(job.lease_token)
        .fetch_all(db)
        .await
        .map_err(|e| format!("asking which dependency blobs are stored: {e}"))?
        .into_iter()
        .collect();
    let dir = git_dir.to_path_buf();
    let (files, envelopes) = tokio::task::spawn_blocking(move || -> Result<_, git2::Error> {
        let files = list_files(&dir, &selector)?;
        let repo = git2::Repository::open_bare(&dir).or_else(|_| git2::Repository::open(&dir))?;
        let mut envelopes = Vec::new();
        let mut sent = HashSet::new();
        for f in &files {
            if f.bytes > MAX_DEPENDENCY_BLOB_BYTES || known.contains(&f.blob_sha) || !sent.insert(f.blob_sha.clone()) {
                continue;
            }
            let blob = repo.find_blob(git2::Oid::from_str(&f.blob_sha)?)?;
            envelopes.push(blob_envelope(&f.blob_sha, &f.path, blob.content()));
        }
        Ok((files, envelopes))
    })
    .await
    .expect("listing dependency files does not panic")
    .map_err(|e| format!("reading dependency files from the clone: {e}"))?;
    let harvest = Harvest {
        files: files.len(),
        blobs_staged: envelopes.len(),
        bytes_staged: envelopes.iter().map(String::len).sum(),
        too_large: files.iter().filter(|f| f.bytes > MAX_DEPENDENCY_BLOB_BYTES).count(),
    };
    // One blob per call: a 30 MB lockfile is one statement, not a batch of them.
    for envelope in envelopes {
        crate::queue::stage(db, job, "dependency_blob", &[envelope])
            .await
            .map_err(|e| format!("staging a dependency blob: {e}"))?;
    }
    let set = json!({
        "head_sha": head_sha,
        "files": files.iter().map(|f| json!({"path": f.path, "blob_sha": f.blob_sha, "bytes": f.bytes,
                                             "too_large": f.bytes > MAX_DEPENDENCY_BLOB_BYTES})).collect::<Vec<_>>()
    });
    crate::queue::stage(db, job, "dependency_files", &[set.to_string()])
        .await
        .map_err(|e| format!("staging the dependency file set: {e}"))?;
    Ok(Some(harvest))
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn served_globs_select_names_paths_and_never_vendored_copies() {
        let served: Vec<(String, String)> = [
            ("file", "package.json"),
            ("file", "*.csproj"),
            ("file", "requirements*.txt"),
            ("path", ".github/workflows/*.yml"),
        ]
        .iter()
        .map(|(a, g)| (a.to_string(), g.to_string()))
        .collect();
        let s = Selector::new(&served).unwrap();
        assert!(s.selects("package.json"));
        assert!(s.selects("web/app/package.json"));
        assert!(s.selects("src/App/App.csproj"));
        assert!(s.selects("requirements-dev.txt"));
        assert!(s.selects(".github/workflows/ci.yml"));
        assert!(!s.selects("docs/.github/workflows/ci.yml"));
        assert!(!s.selects(".github/workflows/nested/ci.yml"));
        assert!(!s.selects("web/node_modules/left-pad/package.json"));
        assert!(!s.selects("vendor/github.com/x/y/package.json"));
        assert!(!s.selects("package.json.orig"));
    }

    #[test]
    fn text_blobs_go_as_text_and_others_as_base64() {
        let text: serde_json::Value = serde_json::from_str(&blob_envelope("ab", "go.mod", b"module x\n")).unwrap();
        assert_eq!(text["content"], "module x\n");
        assert!(text.get("encoding").is_none());
        let utf16 = [0xFF, 0xFE, b'{', 0, b'}', 0];
        let b64: serde_json::Value = serde_json::from_str(&blob_envelope("ab", "packages.config", &utf16)).unwrap();
        assert_eq!(b64["encoding"], "base64");
    }
}
