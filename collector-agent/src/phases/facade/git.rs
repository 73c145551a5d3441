//! Git I/O with git2: where a repository may be cloned from (URL safety), the bare clone
//! kept per repository, the commits to walk and their metadata (the line counts come
//! from git itself: `numstat.rs`).

use std::path::{Path, PathBuf};

use git2::{Oid, Repository, Sort};
use serde::Serialize;

/// What went wrong with a clone or a walk. `class()` maps it onto the queue's failure classes.
#[derive(Debug)]
pub enum GitError {
    /// The URL is not one the facade clones from (option injection, `ext::`, ...).
    UnsafeUrl { url: String, reason: String },
    /// The repository does not exist: a remote answered that it is not there (or not
    /// ours to read), or a local source path no longer exists at all. The only `gone`.
    NotFound { url: String, message: String },
    /// The source or the clone cannot be read: missing or corrupt objects, a bad pack, a
    /// local path that is not a git repository. `fatal`: retried after the cadence, and the
    /// repository's other phases go on.
    Unreadable {
        url: String,
        clone: PathBuf,
        message: String,
    },
    /// Credentials were refused.
    Auth { url: String, message: String },
    /// Network or origin trouble worth retrying.
    Transient { url: String, message: String },
    /// The clone on disk or the walk failed.
    Local { path: PathBuf, message: String },
}

impl GitError {
    pub fn class(&self) -> &'static str {
        match self {
            Self::UnsafeUrl { .. } => "fatal",
            Self::NotFound { .. } => "gone",
            Self::Unreadable { .. } => "fatal",
            Self::Auth { .. } => "auth",
            Self::Transient { .. } => "transient",
            Self::Local { .. } => "transient",
        }
    }

    pub(crate) fn local(path: &Path, e: impl std::fmt::Display) -> Self {
        Self::Local {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }

    /// Classes a failed fetch from `source` into the clone at `clone`. Only a remote saying
    /// the repository is not there is `NotFound`; libgit2's "object not found" and other
    /// object-database errors are damage, not absence.
    fn from_fetch(source: &GitSource, clone: &Path, e: git2::Error) -> Self {
        use git2::ErrorClass as C;
        let message = e.message().to_string();
        let url = source.fetch_url();
        let lower = message.to_ascii_lowercase();
        let damaged = matches!(e.class(), C::Odb | C::Object | C::Zlib | C::Indexer | C::Sha1 | C::Tree);
        let network = matches!(
            e.class(),
            C::Http | C::Ssh | C::Net | C::Ssl | C::Os | C::Callback | C::None
        );
        let unreadable = |message| Self::Unreadable {
            url: url.clone(),
            clone: clone.to_path_buf(),
            message,
        };
        if e.code() == git2::ErrorCode::Auth || (network && (lower.contains("401") || lower.contains("authentication")))
        {
            return Self::Auth { url, message };
        }
        match source {
            // The path exists (sync_clone checked): what libgit2 cannot read there is damage
            // or not a repository, never a network blip and never absence.
            GitSource::Local(_) => unreadable(message),
            GitSource::Remote(_) if damaged => unreadable(message),
            GitSource::Remote(_)
                if network
                    && (e.code() == git2::ErrorCode::NotFound
                        || lower.contains("404")
                        || lower.contains("repository not found")
                        || lower.contains("not found")
                        || lower.contains("does not exist")) =>
            {
                Self::NotFound { url, message }
            }
            GitSource::Remote(_) => Self::Transient { url, message },
        }
    }
}

impl std::fmt::Display for GitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnsafeUrl { url, reason } => write!(f, "refusing to clone {url:?}: {reason}"),
            Self::NotFound { url, message } => write!(f, "{url}: repository not found ({message})"),
            Self::Unreadable { url, clone, message } => write!(
                f,
                "fetching {url} into {} failed on missing or corrupt objects, a bad pack, or a source that is not \
                 a git repository: {message}",
                clone.display()
            ),
            Self::Auth { url, message } => write!(f, "{url}: credentials refused ({message})"),
            Self::Transient { url, message } => write!(f, "{url}: fetch failed ({message})"),
            Self::Local { path, message } => write!(f, "{}: {message}", path.display()),
        }
    }
}

impl std::error::Error for GitError {}

/// Where a repository's history comes from, once checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GitSource {
    /// https:// or ssh:// (or scp-like user@host:path) remote.
    Remote(String),
    /// An absolute path to a local repository (git-only repositories added by path).
    Local(PathBuf),
}

impl GitSource {
    /// What libgit2 is given to fetch from.
    pub fn fetch_url(&self) -> String {
        match self {
            Self::Remote(url) => url.clone(),
            Self::Local(path) => path.display().to_string(),
        }
    }
}

/// Accepts https, ssh and scp-like remotes, and absolute local paths; refuses what git
/// would run or misread: option injection (`-...`), `ext::` and other `transport::`
/// helpers, `file://`, plain `http://`, `git://` (unauthenticated, unencrypted), and
/// control characters.
pub fn check_url(url: &str) -> Result<GitSource, GitError> {
    let refuse = |reason: &str| GitError::UnsafeUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    if url.is_empty() {
        return Err(refuse("the URL is empty"));
    }
    if url.chars().any(|c| c.is_control()) {
        return Err(refuse("control characters in a URL"));
    }
    if url.starts_with('-') {
        return Err(refuse("a URL starting with '-' would be read as a git option"));
    }
    if let Some((scheme, _)) = url.split_once("::") {
        if !scheme.contains('/') {
            return Err(refuse(&format!(
                "'{scheme}::' runs a git remote helper; only https, ssh and local paths are cloned"
            )));
        }
    }
    if url.starts_with('/') {
        if url.split('/').any(|part| part == "..") {
            return Err(refuse("'..' in a local path"));
        }
        return Ok(GitSource::Local(PathBuf::from(url)));
    }
    if let Some((scheme, rest)) = url.split_once("://") {
        return match scheme.to_ascii_lowercase().as_str() {
            "https" | "ssh" => {
                let host = rest.split(['/', '?', '#']).next().unwrap_or("");
                let host = host.rsplit('@').next().unwrap_or("");
                if host.is_empty() || host.starts_with('-') {
                    Err(refuse("no host, or a host starting with '-'"))
                } else if url.contains("/-") {
                    Err(refuse("a path part starting with '-' would be read as a git option"))
                } else {
                    Ok(GitSource::Remote(url.to_string()))
                }
            }
            "file" => Err(refuse(
                "file:// URLs are not cloned; add the repository by its absolute path",
            )),
            "http" | "git" => Err(refuse(&format!(
                "{scheme}:// is neither encrypted nor authenticated; use https:// or ssh://"
            ))),
            other => Err(refuse(&format!("unsupported scheme '{other}://'"))),
        };
    }
    // scp-like: user@host:path
    if let Some((user_host, path)) = url.split_once(':') {
        if let Some((user, host)) = user_host.split_once('@') {
            if !user.is_empty() && !host.is_empty() && !host.starts_with('-') && !path.starts_with('-') {
                return Ok(GitSource::Remote(url.to_string()));
            }
        }
    }
    Err(refuse(
        "not an https:// or ssh:// URL, an scp-like user@host:path remote, or an absolute local path",
    ))
}

/// Credentials for private repositories: a token sent as the HTTPS password, never put
/// in a URL, a remote or the logs.
#[derive(Clone, Default)]
pub struct Credentials {
    pub https_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("https_token", &self.https_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The bare clone of a repository, made or brought up to date: fetch every branch and
/// tag with explicit refspecs and prune; when the origin changed, clone again; HEAD
/// follows the origin's default branch. Returns the repository and its HEAD commit
/// (None for an empty repository).
pub fn sync_clone(
    source: &GitSource,
    clone_path: &Path,
    credentials: &Credentials,
) -> Result<(Repository, Option<Oid>), GitError> {
    let url = source.fetch_url();
    if let GitSource::Local(path) = source {
        // Only a source path that no longer exists at all is a repository gone.
        match std::fs::metadata(path) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                return Err(GitError::NotFound {
                    url,
                    message: "the path no longer exists".into(),
                })
            }
            Err(e) => {
                return Err(GitError::Unreadable {
                    url,
                    clone: clone_path.to_path_buf(),
                    message: e.to_string(),
                })
            }
        }
    }
    let repo = match Repository::open_bare(clone_path) {
        Ok(repo) => {
            let same_origin = repo
                .find_remote("origin")
                .ok()
                .and_then(|r| r.url().map(|u| normalize_remote(u) == normalize_remote(&url)))
                .unwrap_or(false);
            if same_origin {
                repo
            } else {
                tracing::info!(path = %clone_path.display(), "the origin changed: cloning again");
                drop(repo);
                std::fs::remove_dir_all(clone_path).map_err(|e| GitError::local(clone_path, e))?;
                init_bare(clone_path, &url)?
            }
        }
        Err(_)
            if clone_path.exists()
                && std::fs::read_dir(clone_path)
                    .map(|mut d| d.next().is_some())
                    .unwrap_or(true) =>
        {
            tracing::warn!(path = %clone_path.display(), "not a usable bare repository: cloning again");
            std::fs::remove_dir_all(clone_path).map_err(|e| GitError::local(clone_path, e))?;
            init_bare(clone_path, &url)?
        }
        Err(_) => init_bare(clone_path, &url)?,
    };
    fetch(&repo, source, credentials)?;
    let head = repo.head().ok().and_then(|h| h.target());
    Ok((repo, head))
}

fn normalize_remote(url: &str) -> String {
    url.trim_end_matches('/').trim_end_matches(".git").to_ascii_lowercase()
}

fn init_bare(path: &Path, url: &str) -> Result<Repository, GitError> {
    std::fs::create_dir_all(path).map_err(|e| GitError::local(path, e))?;
    let repo = Repository::init_bare(path).map_err(|e| GitError::local(path, e))?;
    repo.remote_with_fetch("origin", url, "+refs/heads/*:refs/heads/*")
        .map_err(|e| GitError::local(path, e))?;
    repo.remote_add_fetch("origin", "+refs/tags/*:refs/tags/*")
        .map_err(|e| GitError::local(path, e))?;
    Ok(repo)
}

fn fetch(repo: &Repository, source: &GitSource, credentials: &Credentials) -> Result<(), GitError> {
    let path = repo.path().to_path_buf();
    let mut remote = repo.find_remote("origin").map_err(|e| GitError::local(&path, e))?;
    let token = credentials.https_token.clone();
    let mut callbacks = git2::RemoteCallbacks::new();
    let mut asked = 0;
    callbacks.credentials(move |_url, username, allowed| {
        // Asked again means refused: stop instead of looping (libgit2 retries forever).
        asked += 1;
        if asked > 1 {
            return Err(git2::Error::new(
                git2::ErrorCode::Auth,
                git2::ErrorClass::Http,
                "credentials refused",
            ));
        }
        if allowed.contains(git2::CredentialType::USER_PASS_PLAINTEXT) {
            if let Some(token) = &token {
                return git2::Cred::userpass_plaintext("x-access-token", token);
            }
        }
        if allowed.contains(git2::CredentialType::SSH_KEY) {
            return git2::Cred::ssh_key_from_agent(username.unwrap_or("git"));
        }
        Err(git2::Error::new(
            git2::ErrorCode::Auth,
            git2::ErrorClass::Http,
            "the origin asks for credentials and none are configured",
        ))
    });
    let mut options = git2::FetchOptions::new();
    options
        .remote_callbacks(callbacks)
        .prune(git2::FetchPrune::On)
        .download_tags(git2::AutotagOption::None)
        .update_fetchhead(false);
    remote
        .fetch(
            &["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"],
            Some(&mut options),
            None,
        )
        .map_err(|e| GitError::from_fetch(source, &path, e))?;
    // HEAD follows the origin's default branch (it can move, e.g. master -> main).
    let default_branch = remote
        .default_branch()
        .ok()
        .and_then(|b| b.as_str().map(str::to_string));
    remote.disconnect().ok();
    let branch = match default_branch {
        Some(b) => Some(b),
        // Not advertised: keep HEAD if it names a branch we have, else take main/master/first.
        None => {
            let current = repo
                .find_reference("HEAD")
                .ok()
                .and_then(|h| h.symbolic_target().map(str::to_string));
            let candidates = current
                .into_iter()
                .chain(["refs/heads/main".to_string(), "refs/heads/master".to_string()]);
            let mut found = None;
            for c in candidates {
                if repo.find_reference(&c).is_ok() {
                    found = Some(c);
                    break;
                }
            }
            found.or_else(|| {
                repo.branches(Some(git2::BranchType::Local))
                    .ok()
                    .and_then(|mut b| b.next())
                    .and_then(|b| b.ok())
                    .and_then(|(b, _)| b.get().name().map(str::to_string))
            })
        }
    };
    if let Some(branch) = branch {
        if repo.find_reference(&branch).is_ok() {
            repo.set_head(&branch).map_err(|e| GitError::local(&path, e))?;
        }
    }
    Ok(())
}

/// One changed file of a commit, counted like `git log --numstat`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileChange {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_path: Option<String>,
    pub added: u32,
    pub removed: u32,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub binary: bool,
}

/// A person and time as git records them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Signature {
    pub name: String,
    pub email: String,
    /// RFC 3339 with the signature's own offset, as `git log --format=%aI` prints it.
    pub time: String,
}

/// One commit: the staged `commit` envelope (docs/staging-contract.md).
#[derive(Clone, Debug, Serialize)]
pub struct CommitRecord {
    pub hash: String,
    pub parents: Vec<String>,
    pub author: Signature,
    pub committer: Signature,
    pub message: String,
    /// Empty for merges and for commits that change no file (one `(no files)` row).
    pub files: Vec<FileChange>,
}

fn signature(s: &git2::Signature<'_>) -> Signature {
    let when = s.when();
    let offset = when.offset_minutes();
    let time = chrono_like_rfc3339(when.seconds(), offset);
    Signature {
        name: String::from_utf8_lossy(s.name_bytes()).into_owned(),
        email: String::from_utf8_lossy(s.email_bytes()).into_owned(),
        time,
    }
}

/// `YYYY-MM-DDTHH:MM:SS+HH:MM` for a Unix time shown at a UTC offset (what `%aI` prints).
fn chrono_like_rfc3339(seconds: i64, offset_minutes: i32) -> String {
    let local = seconds + i64::from(offset_minutes) * 60;
    let days = local.div_euclid(86_400);
    let secs = local.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let sign = if offset_minutes < 0 { '-' } else { '+' };
    let off = offset_minutes.abs();
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}{sign}{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60,
        off / 60,
        off % 60
    )
}

/// The commits to walk: reachable from `head`, minus what `hide` reaches (the head of
/// the last walk, when it is still in the clone). Newest first, as `git log`.
pub fn commits_to_walk<'r>(repo: &'r Repository, head: Oid, hide: &[Oid]) -> Result<git2::Revwalk<'r>, GitError> {
    let path = repo.path().to_path_buf();
    let mut walk = repo.revwalk().map_err(|e| GitError::local(&path, e))?;
    walk.set_sorting(Sort::TIME).map_err(|e| GitError::local(&path, e))?;
    walk.push(head).map_err(|e| GitError::local(&path, e))?;
    for h in hide {
        walk.hide(*h).map_err(|e| GitError::local(&path, e))?;
    }
    Ok(walk)
}

/// Reads one commit's metadata; `files` are its changed files as git counted them
/// ([`super::numstat`]).
pub fn read_commit(repo: &Repository, oid: Oid, files: Vec<FileChange>) -> Result<CommitRecord, GitError> {
    let path = repo.path().to_path_buf();
    let err = |e: git2::Error| GitError::local(&path, format!("commit {oid}: {}", e.message()));
    let commit = repo.find_commit(oid).map_err(err)?;
    let parents: Vec<String> = commit.parent_ids().map(|p| p.to_string()).collect();
    let author = signature(&commit.author());
    let committer = signature(&commit.committer());
    Ok(CommitRecord {
        hash: oid.to_string(),
        parents,
        author,
        committer,
        message: String::from_utf8_lossy(commit.message_bytes()).into_owned(),
        files,
    })
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn safe_urls_are_accepted() {
        for url in [
            "https://github.com/chaoss/augur",
            "https://gitlab.example.org/group/sub/project.git",
            "ssh://git@github.com/chaoss/augur.git",
            "git@github.com:chaoss/augur.git",
        ] {
            assert_eq!(check_url(url).unwrap(), GitSource::Remote(url.into()), "{url}");
        }
        assert_eq!(
            check_url("/srv/git/project").unwrap(),
            GitSource::Local(PathBuf::from("/srv/git/project"))
        );
    }

    #[test]
    fn each_unsafe_url_is_refused_with_its_reason() {
        let cases = [
            ("", "empty"),
            ("--upload-pack=touch /tmp/pwned", "git option"),
            ("-oProxyCommand=evil", "git option"),
            ("ext::sh -c touch% /tmp/pwned", "remote helper"),
            ("fd::17", "remote helper"),
            ("file:///etc", "file:// URLs"),
            ("http://github.com/a/b", "neither encrypted"),
            ("git://github.com/a/b", "neither encrypted"),
            ("ftp://host/a", "unsupported scheme"),
            ("ssh://-oProxyCommand=evil/x", "host starting with '-'"),
            ("https://github.com/-a/b", "path part starting with '-'"),
            ("git@host:-x", "not an https"),
            ("relative/path", "not an https"),
            ("/srv/../etc", "'..'"),
            ("https://github.com/a/b\n", "control characters"),
        ];
        for (url, reason) in cases {
            let err = check_url(url).expect_err(url).to_string();
            assert!(err.contains(reason), "{url:?}: {err}");
            assert!(matches!(check_url(url), Err(GitError::UnsafeUrl { .. })));
        }
    }

    /// A scratch directory of this test process.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("aveloxis-git-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A repository of two commits under `dir`; returns its path and the first commit's blob.
    fn source_repo(dir: &Path) -> (PathBuf, Oid) {
        let path = dir.join("source");
        let repo = Repository::init(&path).unwrap();
        let sig = git2::Signature::new("A", "a@example.com", &git2::Time::new(1_700_000_000, 0)).unwrap();
        let mut parent: Option<Oid> = None;
        let mut first_blob = None;
        for (i, text) in ["one\n", "one\ntwo\n"].iter().enumerate() {
            let blob = repo.blob(text.as_bytes()).unwrap();
            let mut tree = repo.treebuilder(None).unwrap();
            tree.insert("file.txt", blob, 0o100644).unwrap();
            let tree = repo.find_tree(tree.write().unwrap()).unwrap();
            let parents: Vec<git2::Commit<'_>> = parent.iter().map(|p| repo.find_commit(*p).unwrap()).collect();
            let parents: Vec<&git2::Commit<'_>> = parents.iter().collect();
            parent = Some(
                repo.commit(Some("HEAD"), &sig, &sig, &format!("commit {i}"), &tree, &parents)
                    .unwrap(),
            );
            first_blob.get_or_insert(blob);
        }
        (path, first_blob.unwrap())
    }

    fn loose_object(repo: &Path, oid: Oid) -> PathBuf {
        let hex = oid.to_string();
        repo.join(".git").join("objects").join(&hex[..2]).join(&hex[2..])
    }

    #[test]
    fn an_intact_local_source_is_cloned() {
        let dir = scratch("intact");
        let (source, _) = source_repo(&dir);
        let (_, head) = sync_clone(&GitSource::Local(source), &dir.join("clone"), &Credentials::default()).unwrap();
        assert!(head.is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_source_with_a_missing_or_corrupt_object_is_fatal_not_gone() {
        for damage in ["missing", "corrupt"] {
            let dir = scratch(&format!("damaged-{damage}"));
            let (source, blob) = source_repo(&dir);
            let object = loose_object(&source, blob);
            std::fs::remove_file(&object).unwrap();
            if damage == "corrupt" {
                std::fs::write(&object, b"not a zlib stream at all").unwrap();
            }
            let err = sync_clone(&GitSource::Local(source), &dir.join("clone"), &Credentials::default())
                .err()
                .expect("a damaged source cannot be fetched");
            assert_eq!(err.class(), "fatal", "{damage}: {err}");
            assert!(
                err.to_string().contains("source"),
                "{damage}: the message says why: {err}"
            );
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn a_local_source_that_no_longer_exists_is_gone() {
        let dir = scratch("vanished");
        let err = sync_clone(
            &GitSource::Local(dir.join("no-such-repository")),
            &dir.join("clone"),
            &Credentials::default(),
        )
        .err()
        .expect("nothing to fetch");
        assert_eq!(err.class(), "gone", "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn times_print_like_git_iso_strict() {
        assert_eq!(chrono_like_rfc3339(0, 0), "1970-01-01T00:00:00+00:00");
        assert_eq!(chrono_like_rfc3339(1_700_000_000, 120), "2023-11-15T00:13:20+02:00");
        assert_eq!(chrono_like_rfc3339(1_700_000_000, -330), "2023-11-14T16:43:20-05:30");
        assert_eq!(chrono_like_rfc3339(951_782_400, 0), "2000-02-29T00:00:00+00:00");
        assert_eq!(chrono_like_rfc3339(-86_400, 0), "1969-12-31T00:00:00+00:00");
    }
}
