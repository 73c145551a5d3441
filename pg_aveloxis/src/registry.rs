//! Repository URL normalization for the repo registry (`sql/registry.sql`).
//!
//! Every URL a user or agent hands us is reduced to a `url_key`: the identity of the
//! repository whatever spelling it came in (scheme, `www.`, `.git`, trailing slashes,
//! SSH scp syntax, letter case where the forge ignores it). `repo_url_history` maps
//! keys to repos, so a repo stays one row across spellings and renames.
//!
//! The parser is pure: the SQL wrapper passes in the configured forge hosts.

use url::Url;

pub const PLATFORM_GITHUB: i16 = 1;
pub const PLATFORM_GITLAB: i16 = 2;
pub const PLATFORM_GIT: i16 = 3;

/// What a repository URL denotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoUrl {
    pub platform_id: i16,
    /// Lower-case host without `www.`; `None` for local paths.
    pub host: Option<String>,
    /// GitHub owner, GitLab namespace path (`group/sub`), or the path before the
    /// repository for plain git; `None` when there is none.
    pub owner: Option<String>,
    pub name: String,
    /// The URL to store and show: canonical https form for forges, the given
    /// (cleaned) URL for plain git remotes and local paths.
    pub repo_git: String,
    /// Identity key: equal keys are the same repository.
    pub url_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoUrlError {
    pub message: String,
    pub hint: &'static str,
}

const HINT_FORMS: &str = "Accepted forms: https://github.com/<owner>/<repo>, \
https://<gitlab host>/<group>/<project>, git@<host>:<path>, ssh://, git:// or https:// git \
remotes, and absolute local paths for git-only repositories.";

fn err(message: impl Into<String>, hint: &'static str) -> RepoUrlError {
    RepoUrlError {
        message: message.into(),
        hint,
    }
}

/// Configured forge hosts, lower-case (`github.com`, GitHub Enterprise hosts; `gitlab.com`,
/// self-managed GitLab hosts).
#[derive(Debug, Clone, Default)]
pub struct ForgeHosts<'a> {
    pub github: &'a [String],
    pub gitlab: &'a [String],
}

impl ForgeHosts<'_> {
    fn platform_of(&self, host: &str) -> i16 {
        if self.github.iter().any(|h| h == host) {
            PLATFORM_GITHUB
        } else if self.gitlab.iter().any(|h| h == host) {
            PLATFORM_GITLAB
        } else {
            PLATFORM_GIT
        }
    }
}

/// Shows a URL in an error message without any credentials it may carry.
fn redact(input: &str) -> String {
    match Url::parse(input) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("REDACTED");
            let _ = u.set_password(None);
            u.to_string()
        }
        _ => input.to_string(),
    }
}

pub fn parse_repo_url(input: &str, hosts: &ForgeHosts<'_>) -> Result<RepoUrl, RepoUrlError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(err("repository URL is empty", HINT_FORMS));
    }
    if s.starts_with('-') {
        return Err(err(
            format!("repository URL {s:?} starts with '-' and would be read by git as an option"),
            "Option injection is refused; pass a URL or an absolute path.",
        ));
    }
    if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(err(
            format!(
                "repository URL {:?} contains whitespace or control characters",
                redact(s)
            ),
            "Pass one URL per call, without spaces or line breaks.",
        ));
    }
    // git's remote-helper syntax `<transport>::<address>` (ext::, fd::, …) runs programs.
    if let Some(pos) = s.find("::") {
        if !s[..pos].contains('/') {
            return Err(err(
                format!("repository URL {s:?} uses git's '<transport>::' remote-helper syntax"),
                "Transports such as ext:: and fd:: can run commands and are refused.",
            ));
        }
    }
    if s.starts_with('/') {
        return local_path(s);
    }
    if let Some(rest) = s.strip_prefix("file://") {
        let path = rest.strip_prefix("localhost").unwrap_or(rest);
        if path.starts_with('/') {
            return local_path(path);
        }
        return Err(err(format!("file URL {s:?} is not an absolute local path"), HINT_FORMS));
    }
    if let Some(scheme_end) = s.find("://") {
        let scheme = s[..scheme_end].to_ascii_lowercase();
        if !matches!(
            scheme.as_str(),
            "https" | "http" | "ssh" | "git" | "git+ssh" | "ssh+git"
        ) {
            return Err(err(
                format!("unsupported URL scheme {scheme:?} in {:?}", redact(s)),
                HINT_FORMS,
            ));
        }
        return remote(s, s, hosts);
    }
    // scp syntax `[user@]host:path`, as git reads it: a ':' before any '/'.
    if let Some(colon) = s.find(':') {
        let (authority, path) = (&s[..colon], s[colon + 1..].trim_start_matches('/'));
        if !authority.is_empty() && !authority.contains('/') {
            if path.is_empty() {
                return Err(err(format!("SSH URL {s:?} has no repository path"), HINT_FORMS));
            }
            return remote(&format!("ssh://{authority}/{path}"), s, hosts);
        }
    }
    // Scheme-less `github.com/owner/repo`: accepted for configured forge hosts only, since
    // anything else is indistinguishable from a relative path.
    let first = s.split('/').next().unwrap_or_default().to_ascii_lowercase();
    if hosts.platform_of(first.strip_prefix("www.").unwrap_or(&first)) != PLATFORM_GIT {
        return remote(&format!("https://{s}"), s, hosts);
    }
    Err(err(
        format!("{s:?} is neither a URL nor an absolute path"),
        "Relative paths are refused because the server's working directory is not yours; \
         give an absolute path, or a URL with a scheme (https://…).",
    ))
}

/// A remote URL. `parsable` is a URL the `url` crate reads (scp syntax rewritten to
/// ssh://); `given` is what the user wrote, kept as the clone URL of plain git remotes.
fn remote(parsable: &str, given: &str, hosts: &ForgeHosts<'_>) -> Result<RepoUrl, RepoUrlError> {
    let url = Url::parse(parsable).map_err(|e| {
        err(
            format!("cannot parse repository URL {:?}: {e}", redact(given)),
            HINT_FORMS,
        )
    })?;
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| err(format!("repository URL {:?} has no host", redact(given)), HINT_FORMS))?
        .to_ascii_lowercase();
    let host = host.strip_prefix("www.").unwrap_or(&host).to_string();
    let is_ssh = url.scheme().contains("ssh");
    if url.password().is_some() || (!is_ssh && !url.username().is_empty()) {
        return Err(err(
            format!("repository URL {:?} carries credentials", redact(given)),
            "Never put tokens or passwords in repository URLs: they would be stored and shown. \
             Give the agent its tokens through its configuration instead.",
        ));
    }
    let platform_id = hosts.platform_of(&host);
    let mut segments: Vec<&str> = url.path().split('/').filter(|p| !p.is_empty()).collect();
    if platform_id == PLATFORM_GITLAB {
        // GitLab reserves the segment "-" to separate a project path from its pages.
        if let Some(dash) = segments.iter().position(|p| *p == "-") {
            segments.truncate(dash);
        }
    }
    if let Some(last) = segments.last_mut() {
        *last = strip_git_suffix(last);
        if last.is_empty() {
            segments.pop();
        }
    }
    if segments.iter().any(|s| *s == "." || *s == "..") {
        return Err(err(
            format!("repository URL {:?} has '.' or '..' path segments", redact(given)),
            HINT_FORMS,
        ));
    }
    match platform_id {
        PLATFORM_GITHUB => {
            if segments.len() != 2 {
                return Err(err(
                    format!(
                        "a GitHub repository URL names exactly <owner>/<repo> after the host; {:?} has {} path segment(s)",
                        redact(given),
                        segments.len()
                    ),
                    "Use the repository's own URL, e.g. https://github.com/<owner>/<repo>, not an issue, \
                     tree or organization page. To add every repository of an organization, use the agent's `add <org>`.",
                ));
            }
            check_forge_segments(&segments, given)?;
            forge_repo(PLATFORM_GITHUB, &host, &url, &segments)
        }
        PLATFORM_GITLAB => {
            if segments.len() < 2 {
                return Err(err(
                    format!(
                        "a GitLab project URL names <namespace>/<project> after the host; {:?} has {} path segment(s)",
                        redact(given),
                        segments.len()
                    ),
                    "Use the project's URL, e.g. https://gitlab.com/<group>/<subgroup>/<project>.",
                ));
            }
            check_forge_segments(&segments, given)?;
            forge_repo(PLATFORM_GITLAB, &host, &url, &segments)
        }
        _ => {
            if url.query().is_some() || url.fragment().is_some() {
                return Err(err(
                    format!("git remote URL {:?} carries a query or fragment", redact(given)),
                    "Give the URL you would pass to git clone.",
                ));
            }
            let Some((name, owner)) = segments.split_last() else {
                return Err(err(
                    format!("git remote URL {given:?} has no repository path"),
                    HINT_FORMS,
                ));
            };
            Ok(RepoUrl {
                platform_id: PLATFORM_GIT,
                owner: (!owner.is_empty()).then(|| owner.join("/")),
                name: (*name).to_string(),
                repo_git: given.trim_end_matches('/').to_string(),
                url_key: format!("{host}/{}", segments.join("/")),
                host: Some(host),
            })
        }
    }
}

/// Strips every trailing `.git`: `repo.git` and the `repo.git.git` seen in the wild.
fn strip_git_suffix(mut name: &str) -> &str {
    while let Some(stripped) = name.strip_suffix(".git") {
        name = stripped;
    }
    name
}

/// Owner, namespace and project names on GitHub and GitLab are ASCII letters, digits,
/// '-', '_' and '.'; anything else is a typo or an attempt to smuggle characters.
fn check_forge_segments(segments: &[&str], given: &str) -> Result<(), RepoUrlError> {
    for s in segments {
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(err(
                format!("{s:?} in {:?} is not a valid owner or repository name", redact(given)),
                "Forge owner and repository names use only letters, digits, '-', '_' and '.'.",
            ));
        }
    }
    Ok(())
}

/// GitHub and GitLab ignore letter case in owner and repository paths, so the key is
/// lower-case while the stored URL keeps the spelling given.
fn forge_repo(platform_id: i16, host: &str, url: &Url, segments: &[&str]) -> Result<RepoUrl, RepoUrlError> {
    let path = segments.join("/");
    // An explicit https port is kept (GitHub Enterprise on :8443); an ssh port is not
    // part of the web URL.
    let authority = match (url.scheme(), url.port()) {
        ("https", Some(port)) => format!("{host}:{port}"),
        _ => host.to_string(),
    };
    let (owner, name) = segments.split_at(segments.len() - 1);
    Ok(RepoUrl {
        platform_id,
        host: Some(host.to_string()),
        owner: Some(owner.join("/")),
        name: name[0].to_string(),
        repo_git: format!("https://{authority}/{path}"),
        url_key: format!("{host}/{}", path.to_lowercase()),
    })
}

/// An absolute local path to a git repository (git-only, platform 3).
fn local_path(p: &str) -> Result<RepoUrl, RepoUrlError> {
    let mut segments: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
    if segments.iter().any(|s| *s == "." || *s == "..") {
        return Err(err(
            format!("local path {p:?} has '.' or '..' segments"),
            "Give the repository's absolute path without '.' or '..'.",
        ));
    }
    // `/src/foo/.git` is the git directory of the work tree `/src/foo`: the same repository.
    if segments.last() == Some(&".git") {
        segments.pop();
    }
    let Some(last) = segments.last() else {
        return Err(err("local path \"/\" is not a repository", HINT_FORMS));
    };
    let path = format!("/{}", segments.join("/"));
    Ok(RepoUrl {
        platform_id: PLATFORM_GIT,
        host: None,
        owner: None,
        name: strip_git_suffix(last).to_string(),
        // A bare repository's directory really is called `foo.git`: keep the path exact.
        url_key: format!("file://{path}"),
        repo_git: path,
    })
}

#[pgrx::pg_schema]
mod aveloxis_ops {
    use pgrx::prelude::*;

    /// The Rust half of `aveloxis.parse_repo_url`: pure, given the configured hosts.
    #[allow(clippy::type_complexity)]
    #[pg_extern(immutable, parallel_safe)]
    fn parse_repo_url_with_hosts(
        url: &str,
        github_hosts: Vec<String>,
        gitlab_hosts: Vec<String>,
    ) -> TableIterator<
        'static,
        (
            name!(platform_id, i16),
            name!(repo_host, Option<String>),
            name!(repo_owner, Option<String>),
            name!(repo_name, String),
            name!(repo_git, String),
            name!(url_key, String),
        ),
    > {
        let hosts = super::ForgeHosts {
            github: &github_hosts,
            gitlab: &gitlab_hosts,
        };
        match super::parse_repo_url(url, &hosts) {
            Ok(r) => TableIterator::once((r.platform_id, r.host, r.owner, r.name, r.repo_git, r.url_key)),
            Err(e) => {
                pgrx::pg_sys::panic::ErrorReport::new(
                    PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                    e.message,
                    function_name!(),
                )
                .set_hint(e.hint)
                .report(PgLogLevel::ERROR);
                unreachable!("ERROR-level reports do not return")
            }
        }
    }
}

#[cfg(feature = "pg_test")]
#[pgrx::pg_schema]
mod tests {
    use crate::test_support::{int, sql_error, text};
    use pgrx::prelude::*;

    fn add(url: &str) -> i64 {
        int(&format!("SELECT aveloxis.add_repo('{url}')")).unwrap()
    }

    fn repo_count() -> i64 {
        int("SELECT count(*) FROM aveloxis_data.repos").unwrap()
    }

    #[pg_test]
    fn local_paths_only_under_allowed_roots() {
        // A fresh install allows none: any absolute path would make that directory's git
        // history readable by analysts.
        let err = sql_error("SELECT aveloxis.add_repo('/etc/secret-repo')").unwrap();
        assert!(
            err.starts_with("42501 local path /etc/secret-repo is not under a directory allowed"),
            "{err}"
        );
        Spi::run("SELECT aveloxis.set_setting('registry.local_path_roots', '/srv/git, /data/repos/')").unwrap();
        assert!(add("/srv/git/widget.git") > 0);
        assert!(add("file:///data/repos/other") > 0);
        for refused in ["/srv/gitx/a", "/etc/passwd", "/srv", "file:///data/reposx"] {
            let err = sql_error(&format!("SELECT aveloxis.add_repo('{refused}')"))
                .unwrap_or_else(|| panic!("{refused} was accepted"));
            assert!(err.starts_with("42501 "), "{refused}: {err}");
        }
        // Forge URLs are not paths: unaffected.
        assert!(add("https://github.com/a/b") > 0);
        // The setting takes absolute paths only.
        for bad in ["relative/dir", "/srv/../etc", "/srv/./x"] {
            let err = sql_error(&format!(
                "SELECT aveloxis.set_setting('registry.local_path_roots', '{bad}')"
            ))
            .unwrap();
            assert!(err.starts_with("22023 "), "{bad}: {err}");
        }
        // A rename cannot move a local repository out of the allowed roots either.
        let id = add("/srv/git/moving");
        let err = sql_error(&format!("SELECT aveloxis.record_rename({id}::bigint, '/etc/moved')")).unwrap();
        assert!(err.starts_with("42501 "), "{err}");
    }

    #[pg_test]
    fn add_repo_is_idempotent_across_spellings() {
        let id = add("https://github.com/chaoss/augur");
        for spelling in [
            "https://github.com/CHAOSS/Augur.git",
            "git@github.com:chaoss/augur.git",
            "github.com/chaoss/augur/",
            "https://www.github.com/chaoss/augur",
        ] {
            assert_eq!(add(spelling), id, "{spelling}");
        }
        assert_eq!(repo_count(), 1);
        assert_eq!(
            text("SELECT rg_name FROM aveloxis_data.repo_groups").as_deref(),
            Some("Default")
        );
        // The first spelling is the one stored.
        assert_eq!(
            text("SELECT repo_git FROM aveloxis_data.repos").as_deref(),
            Some("https://github.com/chaoss/augur")
        );
    }

    #[pg_test]
    fn add_repo_stores_platform_host_owner_and_name() {
        Spi::run("SELECT aveloxis.add_forge_host('gitlab.example.org', 2::smallint)").unwrap();
        Spi::run("SELECT aveloxis.set_setting('registry.local_path_roots', '/srv/git')").unwrap();
        for (url, expected) in [
            (
                "git@github.com:CHAOSS/Augur.git",
                "1|github.com|CHAOSS|Augur|https://github.com/CHAOSS/Augur",
            ),
            (
                "https://gitlab.example.org/Group/Sub/Project/-/issues",
                "2|gitlab.example.org|Group/Sub|Project|https://gitlab.example.org/Group/Sub/Project",
            ),
            (
                "https://git.kernel.org/pub/scm/git/git.git",
                "3|git.kernel.org|pub/scm/git|git|https://git.kernel.org/pub/scm/git/git.git",
            ),
            ("/srv/git/widget.git", "3|||widget|/srv/git/widget.git"),
        ] {
            let id = add(url);
            let row = text(&format!(
                "SELECT concat_ws('|', platform_id, coalesce(repo_host, ''), coalesce(repo_owner, ''), repo_name, repo_git)
                 FROM aveloxis_data.repos WHERE repo_id = {id}"
            ));
            assert_eq!(row.as_deref(), Some(expected), "{url}");
        }
    }

    #[pg_test]
    fn resolve_repo_finds_any_spelling_and_nothing_else() {
        let id = add("https://gitlab.com/fdroid/fdroidclient");
        assert_eq!(
            int("SELECT aveloxis.resolve_repo('git@gitlab.com:FDroid/FDroidClient.git')"),
            Some(id)
        );
        assert_eq!(
            int("SELECT aveloxis.resolve_repo('https://gitlab.com/fdroid/other')"),
            None
        );
        assert_eq!(int("SELECT aveloxis.resolve_repo(NULL)"), None);
        let err = sql_error("SELECT aveloxis.resolve_repo('ftp://x/y')").unwrap();
        assert!(err.starts_with("22023 unsupported URL scheme"), "{err}");
    }

    #[pg_test]
    fn renames_keep_one_row_and_every_past_url() {
        let id = add("https://github.com/old-owner/old-name");
        Spi::run(&format!(
            "SELECT aveloxis.record_rename({id}, 'https://github.com/New-Owner/New-Name')"
        ))
        .unwrap();
        assert_eq!(
            text(&format!(
                "SELECT concat_ws('|', repo_git, repo_owner, repo_name) FROM aveloxis_data.repos WHERE repo_id = {id}"
            ))
            .as_deref(),
            Some("https://github.com/New-Owner/New-Name|New-Owner|New-Name")
        );
        assert_eq!(
            int("SELECT aveloxis.resolve_repo('https://github.com/old-owner/old-name')"),
            Some(id)
        );
        assert_eq!(
            int("SELECT aveloxis.resolve_repo('https://github.com/new-owner/new-name')"),
            Some(id)
        );
        assert_eq!(
            add("https://github.com/old-owner/old-name.git"),
            id,
            "the old URL is no new repo"
        );
        assert_eq!(repo_count(), 1);
        assert_eq!(
            text(
                "SELECT string_agg(url_key || ':' || (superseded_at IS NULL), ',' ORDER BY url_key)
                 FROM aveloxis_data.repo_url_history"
            )
            .as_deref(),
            Some("github.com/new-owner/new-name:true,github.com/old-owner/old-name:false")
        );

        // Renamed back (GitHub lets an owner take the old name again): one current URL.
        Spi::run(&format!(
            "SELECT aveloxis.record_rename({id}, 'github.com/old-owner/old-name')"
        ))
        .unwrap();
        assert_eq!(
            text("SELECT string_agg(url_key, ',') FROM aveloxis_data.repo_url_history WHERE superseded_at IS NULL")
                .as_deref(),
            Some("github.com/old-owner/old-name")
        );
        assert_eq!(int("SELECT count(*) FROM aveloxis_data.repo_url_history"), Some(2));

        // A case-only rename changes the shown URL, not the identity.
        Spi::run(&format!(
            "SELECT aveloxis.record_rename({id}, 'https://github.com/Old-Owner/Old-Name')"
        ))
        .unwrap();
        assert_eq!(
            text(&format!(
                "SELECT repo_git FROM aveloxis_data.repos WHERE repo_id = {id}"
            ))
            .as_deref(),
            Some("https://github.com/Old-Owner/Old-Name")
        );
        assert_eq!(int("SELECT count(*) FROM aveloxis_data.repo_url_history"), Some(2));
    }

    #[pg_test]
    fn renames_that_cannot_be_right_are_refused() {
        let a = add("https://github.com/chaoss/augur");
        let b = add("https://github.com/chaoss/grimoirelab");
        for (sql, expected) in [
            (
                format!("SELECT aveloxis.record_rename({b}, 'https://github.com/chaoss/augur')"),
                format!(
                    "23505 cannot rename repo {b} to https://github.com/chaoss/augur: that URL belongs to repo {a}"
                ),
            ),
            (
                format!("SELECT aveloxis.record_rename({a}, 'https://gitlab.com/chaoss/augur')"),
                format!("22023 repo {a} is on github.com, but https://gitlab.com/chaoss/augur is on gitlab.com"),
            ),
            (
                "SELECT aveloxis.record_rename(999999, 'https://github.com/x/y')".to_string(),
                "P0002 repo 999999 does not exist".to_string(),
            ),
            (
                format!("SELECT aveloxis.record_rename({a}, NULL)"),
                "22004 record_rename needs a repo_id and a new URL".to_string(),
            ),
            (
                format!("SELECT aveloxis.record_rename({a}, 'https://github.com/chaoss')"),
                "22023 a GitHub repository URL names exactly <owner>/<repo>".to_string(),
            ),
        ] {
            let err = sql_error(&sql).unwrap_or_else(|| panic!("{sql} succeeded"));
            assert!(
                err.starts_with(&expected),
                "{sql}:\n  got      {err}\n  expected {expected}"
            );
            assert!(!err.ends_with("| "), "{sql}: no hint in {err}");
        }
        assert_eq!(repo_count(), 2);
        assert_eq!(int("SELECT count(*) FROM aveloxis_data.repo_url_history"), Some(2));
    }

    #[pg_test]
    fn bad_urls_are_refused_with_sqlstate_message_and_hint() {
        for (url, expected) in [
            ("", "22023 repository URL is empty"),
            (
                "-oProxyCommand=touch",
                "22023 repository URL \"-oProxyCommand=touch\" starts with '-'",
            ),
            (
                "ext::sh",
                "22023 repository URL \"ext::sh\" uses git's '<transport>::' remote-helper syntax",
            ),
            ("ftp://example.org/x.git", "22023 unsupported URL scheme \"ftp\""),
            (
                "https://github.com/chaoss",
                "22023 a GitHub repository URL names exactly <owner>/<repo>",
            ),
            (
                "https://gitlab.com/project",
                "22023 a GitLab project URL names <namespace>/<project>",
            ),
            (
                "https://tok:en@github.com/a/b",
                "22023 repository URL \"https://REDACTED@github.com/a/b\" carries credentials",
            ),
            (
                "relative/dir",
                "22023 \"relative/dir\" is neither a URL nor an absolute path",
            ),
        ] {
            let sql = format!("SELECT aveloxis.add_repo('{}')", url.replace('\'', "''"));
            let err = sql_error(&sql).unwrap_or_else(|| panic!("{url:?} was accepted"));
            assert!(
                err.starts_with(expected),
                "{url:?}:\n  got      {err}\n  expected {expected}"
            );
            assert!(!err.ends_with("| "), "{url:?}: no hint in {err}");
        }
        let err = sql_error("SELECT aveloxis.add_repo(NULL)").unwrap();
        assert!(err.starts_with("22004 repository URL is NULL"), "{err}");
        assert_eq!(repo_count(), 0, "nothing half-registered");
    }

    #[pg_test]
    fn groups_are_created_on_demand_and_repos_stay_in_theirs() {
        let id = int("SELECT aveloxis.add_repo('https://github.com/chaoss/augur', 'CHAOSS')").unwrap();
        assert_eq!(
            int("SELECT aveloxis.add_repo('https://github.com/chaoss/augur', 'Other')"),
            Some(id)
        );
        assert_eq!(
            text(&format!(
                "SELECT rg_name FROM aveloxis_data.repos JOIN aveloxis_data.repo_groups USING (repo_group_id)
                 WHERE repo_id = {id}"
            ))
            .as_deref(),
            Some("CHAOSS")
        );
        assert_eq!(
            int("SELECT count(*) FROM aveloxis_data.repo_groups"),
            Some(1),
            "no empty group 'Other'"
        );
        let err = sql_error("SELECT aveloxis.add_repo('https://github.com/a/b', '2024')").unwrap();
        assert!(err.starts_with("22023 repo group name \"2024\" is all digits"), "{err}");
        let err = sql_error("SELECT aveloxis.add_repo('https://github.com/a/b', '  ')").unwrap();
        assert!(err.starts_with("22023 repo group name is empty"), "{err}");
    }

    #[pg_test]
    fn forge_hosts_decide_the_platform() {
        assert_eq!(
            text("SELECT platform_id::text FROM aveloxis.parse_repo_url('https://ghe.corp.example/a/b')").as_deref(),
            Some("3")
        );
        Spi::run("SELECT aveloxis.add_forge_host('WWW.GHE.corp.example', 1::smallint)").unwrap();
        assert_eq!(
            text("SELECT platform_id || ' ' || repo_git FROM aveloxis.parse_repo_url('https://ghe.corp.example/a/b.git')")
                .as_deref(),
            Some("1 https://ghe.corp.example/a/b")
        );
        assert_eq!(
            text("SELECT api_url FROM aveloxis_ops.forge_hosts WHERE host = 'ghe.corp.example'").as_deref(),
            Some("https://ghe.corp.example/api/v3")
        );
        let err = sql_error("SELECT aveloxis.add_forge_host('git.example', 3::smallint)").unwrap();
        assert!(err.starts_with("22023 platform 3 is not a forge with an API"), "{err}");
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    fn hosts() -> (Vec<String>, Vec<String>) {
        (
            vec!["github.com".into(), "ghe.example.com".into()],
            vec!["gitlab.com".into(), "gitlab.example.org".into()],
        )
    }

    fn parse(u: &str) -> Result<RepoUrl, RepoUrlError> {
        let (gh, gl) = hosts();
        parse_repo_url(
            u,
            &ForgeHosts {
                github: &gh,
                gitlab: &gl,
            },
        )
    }

    fn key(u: &str) -> String {
        parse(u).unwrap_or_else(|e| panic!("{u}: {}", e.message)).url_key
    }

    #[test]
    fn github_spellings_share_one_key() {
        let spellings = [
            "https://github.com/chaoss/augur",
            "https://github.com/chaoss/augur/",
            "https://github.com/chaoss/augur.git",
            "https://github.com/chaoss/augur.git/",
            "https://github.com/chaoss/augur.git.git",
            "http://github.com/chaoss/augur",
            "https://www.github.com/chaoss/augur",
            "https://GitHub.com/CHAOSS/Augur",
            "github.com/chaoss/augur",
            "www.github.com/chaoss/augur",
            "git@github.com:chaoss/augur.git",
            "ssh://git@github.com/chaoss/augur.git",
            "git://github.com/chaoss/augur.git",
            "https://github.com/chaoss/augur?tab=readme#top",
            "  https://github.com/chaoss/augur  ",
        ];
        for s in spellings {
            assert_eq!(key(s), "github.com/chaoss/augur", "{s}");
        }
        let r = parse("git@github.com:CHAOSS/Augur.git").unwrap();
        assert_eq!(r.platform_id, PLATFORM_GITHUB);
        assert_eq!(r.repo_git, "https://github.com/CHAOSS/Augur");
        assert_eq!((r.owner.as_deref(), r.name.as_str()), (Some("CHAOSS"), "Augur"));
        assert_eq!(r.host.as_deref(), Some("github.com"));
    }

    #[test]
    fn github_enterprise_keeps_its_https_port() {
        let r = parse("https://ghe.example.com:8443/Team/Tool.git").unwrap();
        assert_eq!(r.platform_id, PLATFORM_GITHUB);
        assert_eq!(r.repo_git, "https://ghe.example.com:8443/Team/Tool");
        assert_eq!(r.url_key, "ghe.example.com/team/tool");
        assert_eq!(parse("git@ghe.example.com:Team/Tool.git").unwrap().url_key, r.url_key);
    }

    #[test]
    fn gitlab_nested_namespaces_and_pages() {
        let r = parse("https://gitlab.com/gitlab-org/cli/-/merge_requests/12").unwrap();
        assert_eq!(r.platform_id, PLATFORM_GITLAB);
        assert_eq!(r.repo_git, "https://gitlab.com/gitlab-org/cli");
        let r = parse("git@gitlab.example.org:Group/Sub.Group/Project.git").unwrap();
        assert_eq!(r.platform_id, PLATFORM_GITLAB);
        assert_eq!(r.owner.as_deref(), Some("Group/Sub.Group"));
        assert_eq!(r.name, "Project");
        assert_eq!(r.repo_git, "https://gitlab.example.org/Group/Sub.Group/Project");
        assert_eq!(r.url_key, "gitlab.example.org/group/sub.group/project");
        assert_eq!(key("https://GITLAB.example.org/group/sub.group/project/"), r.url_key);
    }

    #[test]
    fn plain_git_remotes_keep_path_case() {
        let r = parse("https://git.kernel.org/pub/scm/git/Git.git").unwrap();
        assert_eq!(r.platform_id, PLATFORM_GIT);
        assert_eq!(r.repo_git, "https://git.kernel.org/pub/scm/git/Git.git");
        assert_eq!(r.url_key, "git.kernel.org/pub/scm/git/Git");
        assert_eq!((r.owner.as_deref(), r.name.as_str()), (Some("pub/scm/git"), "Git"));
        assert_eq!(key("https://git.kernel.org/pub/scm/git/Git"), r.url_key);
        assert_eq!(key("git://GIT.kernel.org/pub/scm/git/Git.git/"), r.url_key);
        assert_ne!(key("https://git.kernel.org/pub/scm/git/git"), r.url_key);
        let scp = parse("git@example.org:tools/widget.git").unwrap();
        assert_eq!(scp.repo_git, "git@example.org:tools/widget.git");
        assert_eq!(scp.url_key, "example.org/tools/widget");
    }

    #[test]
    fn local_paths() {
        let r = parse("/srv/git/widget.git").unwrap();
        assert_eq!(r.platform_id, PLATFORM_GIT);
        assert_eq!((r.host, r.owner, r.name.as_str()), (None, None, "widget"));
        assert_eq!(r.repo_git, "/srv/git/widget.git");
        assert_eq!(r.url_key, "file:///srv/git/widget.git");
        assert_eq!(key("/srv//git/widget.git/"), r.url_key);
        assert_eq!(key("file:///srv/git/widget.git"), r.url_key);
        assert_eq!(key("/home/me/widget/.git"), key("/home/me/widget"));
        assert_ne!(
            key("/srv/git/widget"),
            r.url_key,
            "a bare repo dir and a work tree differ"
        );
    }

    #[test]
    fn bad_urls_each_get_their_error() {
        let cases: &[(&str, &str)] = &[
            ("", "is empty"),
            ("   ", "is empty"),
            ("https://github.com/a b/c", "whitespace"),
            ("-oProxyCommand=touch /tmp/x", "option"),
            ("--upload-pack=evil", "option"),
            ("ext::sh -c touch% /tmp/pwned", "whitespace"),
            ("ext::ssh-evil", "remote-helper"),
            ("fd::17", "remote-helper"),
            ("ftp://example.org/repo.git", "unsupported URL scheme \"ftp\""),
            ("javascript://x", "unsupported URL scheme"),
            ("https://github.com/chaoss", "exactly <owner>/<repo>"),
            ("https://github.com/chaoss/augur/issues/12", "exactly <owner>/<repo>"),
            ("https://github.com/", "exactly <owner>/<repo>"),
            (
                "https://github.com/cha%20oss/augur",
                "not a valid owner or repository name",
            ),
            ("https://gitlab.com/justaproject", "<namespace>/<project>"),
            ("https://user:hunter2@github.com/chaoss/augur", "carries credentials"),
            ("https://ghp_abc123@github.com/chaoss/augur", "carries credentials"),
            ("ssh://git:pw@example.org/x.git", "carries credentials"),
            ("https://example.org/repo.git?ref=main", "query or fragment"),
            ("https://example.org/", "no repository path"),
            ("https://github.com/chaoss/..", "exactly <owner>/<repo>"),
            ("relative/path", "neither a URL nor an absolute path"),
            ("./repo", "neither a URL nor an absolute path"),
            ("/", "is not a repository"),
            ("/srv/../etc/repo", "'.' or '..'"),
            ("file://host/share/repo", "not an absolute local path"),
            ("git@github.com:", "no repository path"),
            ("https://", "cannot parse"),
        ];
        for (input, expected) in cases {
            match parse(input) {
                Ok(r) => panic!("{input:?} was accepted as {r:?}"),
                Err(e) => assert!(
                    e.message.contains(expected),
                    "{input:?}: message {:?} lacks {expected:?}",
                    e.message
                ),
            }
        }
    }

    #[test]
    fn credentials_never_echoed() {
        for input in [
            "https://user:hunter2@github.com/a/b",
            "https://ghp_secret@github.com/a/b",
        ] {
            let e = parse(input).unwrap_err();
            assert!(
                !e.message.contains("hunter2") && !e.message.contains("ghp_secret"),
                "{}",
                e.message
            );
        }
    }

    #[test]
    fn unknown_hosts_are_plain_git_not_gitlab() {
        let r = parse("https://gitlab.unconfigured.net/group/project").unwrap();
        assert_eq!(r.platform_id, PLATFORM_GIT);
    }
}
