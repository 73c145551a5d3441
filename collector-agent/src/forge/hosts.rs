//! Which GitHub API, and which tokens, serve a repository. github.com's repositories go to
//! the API at `--github-api-url` (default `https://api.github.com/`) with `GITHUB_TOKENS`;
//! a GitHub Enterprise host's repositories go to `https://<host>/api/v3/` (or the API root
//! its `[tokens]` key gives) with the tokens configured for that API host in the config
//! file. A token is only ever sent to the API host it was configured for (and offered to
//! git only by that API's web host); a repository whose host has no token fails as `auth`
//! saying which host lacks one.

use std::collections::BTreeMap;

use reqwest::Url;

use super::github::{GithubClient, GithubConfig, DEFAULT_API_URL};
use super::tokens::TokenPool;
use super::ForgeError;

/// github.com's API host.
pub const GITHUB_API_HOST: &str = "api.github.com";

/// `host`, or `host:port` off the scheme's default port; lower case.
pub fn host_port(url: &Url) -> String {
    let host = url.host_str().unwrap_or("").to_ascii_lowercase();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    }
}

/// The API root a `[tokens]` key names: a URL as given (`https://ghe.example.com/api/v3/`),
/// `api.github.com` github.com's API, any other `host` or `host:port` its GitHub
/// Enterprise root `https://<host>/api/v3/`.
pub fn api_root(key: &str) -> Result<Url, String> {
    let key = key.trim();
    let url = if key.contains("://") {
        key.to_string()
    } else if key.contains('/') || key.is_empty() {
        return Err(format!(
            "{key:?} is neither an API host (ghe.example.com) nor an API root URL (https://ghe.example.com/api/v3/)"
        ));
    } else if key.eq_ignore_ascii_case(GITHUB_API_HOST) {
        DEFAULT_API_URL.to_string()
    } else {
        format!("https://{key}/api/v3/")
    };
    let root = GithubConfig::new(&url).map_err(|e| format!("{key:?}: {e}"))?.api_url;
    if root.host_str().is_none_or(str::is_empty) {
        return Err(format!("{key:?}: no host"));
    }
    Ok(root)
}

/// The web host whose repositories an API serves: github.com for api.github.com, else the
/// API's own host.
pub fn web_host(api: &Url) -> String {
    match host_port(api) {
        h if h == GITHUB_API_HOST => "github.com".to_string(),
        h => h,
    }
}

/// The host of a repository URL, lower case, without `www.`.
pub fn repo_host(repo_git: &str) -> Option<String> {
    let host = host_port(&Url::parse(repo_git).ok()?);
    (!host.is_empty()).then(|| host.strip_prefix("www.").map(str::to_string).unwrap_or(host))
}

/// Tokens as configured.
#[derive(Clone, Debug, Default)]
pub struct TokenSettings {
    /// github.com's API root (`--github-api-url`; empty: `https://api.github.com/`).
    pub github_api_url: String,
    /// Its tokens (`GITHUB_TOKENS`).
    pub github_tokens: Vec<String>,
    /// Other API hosts' tokens, keyed by API host or API root URL (`[tokens]`).
    pub by_api_host: BTreeMap<String, Vec<String>>,
}

struct Served {
    /// Repository hosts this API serves.
    repo_hosts: Vec<String>,
    /// The host git may offer this API's first token to (the API's web host).
    clone_host: String,
    client: GithubClient,
}

/// The agent's GitHub clients, one per API host that has tokens.
pub struct GithubHosts {
    served: Vec<Served>,
    /// github.com's API host, for messages.
    github_api_host: String,
}

fn clean(tokens: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in tokens.iter().map(|t| t.trim()).filter(|t| !t.is_empty()) {
        if !out.iter().any(|o| o == t) {
            out.push(t.to_string());
        }
    }
    out
}

impl GithubHosts {
    /// One client per API host with tokens; `pool` makes each host's token pool.
    pub fn new(settings: &TokenSettings, pool: impl Fn(Vec<String>) -> TokenPool) -> Result<Self, String> {
        let main_url = match settings.github_api_url.trim() {
            "" => DEFAULT_API_URL,
            url => url,
        };
        let main_root = GithubConfig::new(main_url)
            .map_err(|e| format!("--github-api-url {main_url:?}: {e}"))?
            .api_url;
        let main_host = host_port(&main_root);
        // Tokens per API root; entries naming the main API's host join its tokens.
        let mut main_tokens = settings.github_tokens.clone();
        let mut others: BTreeMap<String, (Url, Vec<String>)> = BTreeMap::new();
        for (key, tokens) in &settings.by_api_host {
            let root = api_root(key).map_err(|e| format!("[tokens]: {e}"))?;
            if host_port(&root) == main_host {
                main_tokens.extend(tokens.iter().cloned());
            } else {
                others
                    .entry(root.to_string())
                    .or_insert_with(|| (root.clone(), Vec::new()))
                    .1
                    .extend(tokens.iter().cloned());
            }
        }
        let mut served = Vec::new();
        let mut add = |root: Url, tokens: Vec<String>, mut repo_hosts: Vec<String>| -> Result<(), String> {
            let tokens = clean(&tokens);
            if tokens.is_empty() {
                return Ok(());
            }
            let clone_host = web_host(&root);
            if !repo_hosts.contains(&clone_host) {
                repo_hosts.push(clone_host.clone());
            }
            let config = GithubConfig::new(root.as_str()).map_err(|e| format!("{root}: {e}"))?;
            let client = GithubClient::new(config, pool(tokens)).map_err(|e| format!("HTTP client: {e}"))?;
            served.push(Served {
                repo_hosts,
                clone_host,
                client,
            });
            Ok(())
        };
        // github.com's repositories go to github.com's API, whatever root it was given.
        add(main_root, main_tokens, vec!["github.com".to_string()])?;
        for (_, (root, tokens)) in others {
            add(root, tokens, Vec::new())?;
        }
        Ok(GithubHosts {
            served,
            github_api_host: main_host,
        })
    }

    /// No API host has a token.
    pub fn is_empty(&self) -> bool {
        self.served.is_empty()
    }

    /// The client for a repository's API, or why there is none (`NoToken`, class `auth`).
    pub fn for_repo(&self, repo_git: &str) -> Result<&GithubClient, ForgeError> {
        let host = repo_host(repo_git).ok_or_else(|| ForgeError::Rejected {
            url: repo_git.to_string(),
            status: 0,
            message: "not a GitHub repository URL".into(),
        })?;
        if let Some(s) = self.served.iter().find(|s| s.repo_hosts.contains(&host)) {
            return Ok(&s.client);
        }
        Err(if host == "github.com" {
            ForgeError::NoToken {
                api_host: self.github_api_host.clone(),
                how: "set GITHUB_TOKENS=tok1,tok2 (or --github-tokens, or github_tokens in the config file)".into(),
            }
        } else {
            ForgeError::NoToken {
                api_host: host.clone(),
                how: format!(
                    "add its tokens to the config file as [tokens] \"{host}\" = [\"...\"] (docs/agent.md, \
                     Configuration); GitHub tokens of other hosts are never sent there"
                ),
            }
        })
    }

    /// The client of the API serving a forge host's accounts (an identity platform's
    /// host, e.g. "github.com"), if this agent has its tokens.
    pub fn for_host(&self, host: &str) -> Option<&GithubClient> {
        self.served
            .iter()
            .find(|s| s.repo_hosts.iter().any(|h| h == host))
            .map(|s| &s.client)
    }

    /// The token git may offer a repository's origin over https: the first token of the
    /// API whose web host the repository is on, and no other.
    pub fn clone_token_for(&self, repo_git: &str) -> Option<String> {
        let host = repo_host(repo_git)?;
        self.served
            .iter()
            .find(|s| s.clone_host == host)
            .and_then(|s| s.client.tokens().first_secret().map(str::to_string))
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;
    use crate::forge::test_server::TestServer;
    use crate::forge::{Fetched, Forge, Request};

    fn hosts(api_url: &str, github: &[&str], others: &[(&str, &[&str])]) -> GithubHosts {
        let settings = TokenSettings {
            github_api_url: api_url.to_string(),
            github_tokens: github.iter().map(|t| t.to_string()).collect(),
            by_api_host: others
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|t| t.to_string()).collect()))
                .collect(),
        };
        GithubHosts::new(&settings, TokenPool::unshared).unwrap()
    }

    #[test]
    fn tokens_are_scoped_to_their_api_host() {
        let only_github = hosts("", &["tok-gh"], &[]);
        let gh = only_github.for_repo("https://github.com/o/r").unwrap();
        assert_eq!(gh.api_host(), "api.github.com");
        assert!(only_github.for_repo("https://www.github.com/o/r").is_ok());
        let err = only_github
            .for_repo("https://ghe.example.com/o/r")
            .err()
            .expect("no token for the Enterprise host");
        assert_eq!(err.class(), "auth");
        assert!(err.to_string().contains("ghe.example.com"), "{err}");
        assert_eq!(
            only_github.clone_token_for("https://github.com/o/r").as_deref(),
            Some("tok-gh")
        );
        assert_eq!(only_github.clone_token_for("https://ghe.example.com/o/r"), None);

        let both = hosts(
            "",
            &["tok-gh"],
            &[("ghe.example.com", &["tok-ghe"]), ("api.github.com", &["tok-gh-2"])],
        );
        let ghe = both.for_repo("https://ghe.example.com/o/r").unwrap();
        assert_eq!(ghe.config().api_url.as_str(), "https://ghe.example.com/api/v3/");
        assert_eq!(
            both.clone_token_for("https://ghe.example.com/o/r").as_deref(),
            Some("tok-ghe")
        );
        assert_eq!(
            both.clone_token_for("https://github.com/o/r").as_deref(),
            Some("tok-gh")
        );
        assert_eq!(
            both.for_repo("https://github.com/o/r")
                .unwrap()
                .config()
                .api_url
                .as_str(),
            DEFAULT_API_URL
        );
        assert!(both.for_repo("https://other.example.com/o/r").is_err());

        // Enterprise tokens alone: github.com repositories have none, and say how to add them.
        let only_ghe = hosts("", &[], &[("ghe.example.com", &["tok-ghe"])]);
        let err = only_ghe.for_repo("https://github.com/o/r").err().unwrap();
        assert!(err.to_string().contains("GITHUB_TOKENS"), "{err}");
        assert!(hosts("", &[" "], &[]).is_empty());
        assert!(api_root("ghe.example.com/api").is_err());
        assert_eq!(
            api_root("https://git.corp.example/api/v3").unwrap().as_str(),
            "https://git.corp.example/api/v3/"
        );
    }

    #[tokio::test]
    async fn an_enterprise_host_never_sees_another_hosts_token() {
        let github = TestServer::start();
        let enterprise = TestServer::start();
        github.route("/repos/o/r", 200, &[], "{\"id\": 1}");
        enterprise.route(
            "/api/v3/repos/o/r",
            200,
            // A Link pointing at the other host is refused, not followed with this token.
            &[("Link", &format!("<{}/repos/o/r?page=2>; rel=\"next\"", github.origin))],
            "[]",
        );
        let enterprise_repo = format!("https://{}/o/r", enterprise.host);

        // Only github.com tokens: the Enterprise host's repositories have no client at all.
        let only_github = hosts(&github.origin, &["tok-gh"], &[]);
        let err = only_github.for_repo(&enterprise_repo).err().expect("no token for it");
        assert!(err.to_string().contains(&enterprise.host), "{err}");
        let gh = only_github.for_repo("https://github.com/o/r").unwrap();
        assert!(matches!(
            gh.fetch(&Request::new("repos/o/r")).await.unwrap(),
            Fetched::Page { .. }
        ));
        assert!(
            enterprise.requests().is_empty(),
            "nothing was sent to the Enterprise host"
        );

        // Its own token configured: it gets that one, and the github.com token stays home.
        let root = format!("{}/api/v3/", enterprise.origin);
        let both = hosts(&github.origin, &["tok-gh"], &[(root.as_str(), &["tok-ghe"])]);
        let ghe = both.for_repo(&enterprise_repo).unwrap();
        let err = ghe.fetch(&Request::new("repos/o/r")).await.unwrap_err();
        assert!(matches!(err, ForgeError::ForeignUrl { .. }), "{err}");
        let seen = enterprise.requests();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].path, "/api/v3/repos/o/r");
        assert_eq!(seen[0].header("authorization"), Some("token tok-ghe"));
        let at_github = github.requests();
        assert_eq!(at_github.len(), 1, "the Link to github.com was not followed");
        assert_eq!(at_github[0].header("authorization"), Some("token tok-gh"));
    }
}

/// GitLab tokens as configured.
#[derive(Clone, Debug, Default)]
pub struct GitlabSettings {
    /// gitlab.com's API root (`--gitlab-api-url`; empty: `https://gitlab.com/api/v4/`).
    pub api_url: String,
    /// gitlab.com's tokens (`GITLAB_TOKENS`).
    pub tokens: Vec<String>,
    /// Self-managed hosts' tokens, keyed by host or API root URL (`[gitlab_host_tokens]`).
    pub by_host: BTreeMap<String, Vec<String>>,
    /// `Authorization: Bearer` instead of `PRIVATE-TOKEN`.
    pub bearer: bool,
}

/// The agent's GitLab clients, one per instance that has tokens. gitlab.com's repositories
/// go to `--gitlab-api-url` with `GITLAB_TOKENS`; a self-managed host's to the API root
/// its `[gitlab_host_tokens]` key gives, else the one `aveloxis.add_forge_host` declared,
/// else `https://<host>/api/v4/`, with that host's tokens only.
pub struct GitlabHosts {
    /// Repository host, its client, and whether its instance pages issues by keyset.
    served: Vec<(
        String,
        super::gitlab::GitlabClient,
        crate::phases::gitlab::KeysetSupport,
    )>,
}

impl GitlabHosts {
    /// `declared`: (host, API root) of the GitLab hosts the database knows.
    pub fn new(
        settings: &GitlabSettings,
        declared: &[(String, String)],
        pool: impl Fn(Vec<String>) -> TokenPool,
    ) -> Result<Self, String> {
        use super::gitlab::{GitlabClient, GitlabConfig, TokenStyle, DEFAULT_API_URL};
        let style = if settings.bearer {
            TokenStyle::Bearer
        } else {
            TokenStyle::PrivateToken
        };
        // Repository host -> (API root, tokens).
        let mut wanted: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
        let main = match settings.api_url.trim() {
            "" => DEFAULT_API_URL.to_string(),
            url => url.to_string(),
        };
        wanted.insert("gitlab.com".into(), (main, settings.tokens.clone()));
        for (key, tokens) in &settings.by_host {
            let key = key.trim();
            let (host, root) = if key.contains("://") {
                let url = Url::parse(key).map_err(|e| format!("[gitlab_host_tokens] {key:?}: {e}"))?;
                (host_port(&url), key.to_string())
            } else if key.is_empty() || key.contains('/') {
                return Err(format!(
                    "[gitlab_host_tokens] {key:?} is neither a host (gitlab.example.org) nor an API root URL \
                     (https://gitlab.example.org/api/v4/)"
                ));
            } else {
                let host = key.to_ascii_lowercase();
                let root = declared
                    .iter()
                    .find(|(h, _)| *h == host)
                    .map(|(_, root)| root.clone())
                    .unwrap_or_else(|| format!("https://{host}/api/v4/"));
                (host, root)
            };
            let entry = wanted.entry(host).or_insert_with(|| (root.clone(), Vec::new()));
            entry.0 = root;
            entry.1.extend(tokens.iter().cloned());
        }
        let mut served = Vec::new();
        for (host, (root, tokens)) in wanted {
            let tokens = clean(&tokens);
            if tokens.is_empty() {
                continue;
            }
            let config = GitlabConfig::new(&root).map_err(|e| format!("GitLab API root {root:?} of {host}: {e}"))?;
            let client = GitlabClient::new(config, pool(tokens), style).map_err(|e| format!("HTTP client: {e}"))?;
            served.push((host, client, Default::default()));
        }
        Ok(GitlabHosts { served })
    }

    pub fn is_empty(&self) -> bool {
        self.served.is_empty()
    }

    /// The client of a GitLab host (an identity platform's host), if this agent has its tokens.
    pub fn for_host(&self, host: &str) -> Option<&super::gitlab::GitlabClient> {
        self.served
            .iter()
            .find(|(h, _, _)| h == host)
            .map(|(_, client, _)| client)
    }

    /// The client for a repository's instance, or why there is none (`NoToken`, class `auth`).
    #[allow(clippy::type_complexity)]
    pub fn for_repo(
        &self,
        repo_git: &str,
    ) -> Result<(&super::gitlab::GitlabClient, &crate::phases::gitlab::KeysetSupport), ForgeError> {
        let host = repo_host(repo_git).ok_or_else(|| ForgeError::Rejected {
            url: repo_git.to_string(),
            status: 0,
            message: "not a GitLab repository URL".into(),
        })?;
        if let Some((_, client, keyset)) = self.served.iter().find(|(h, _, _)| *h == host) {
            return Ok((client, keyset));
        }
        Err(ForgeError::NoToken {
            api_host: host.clone(),
            how: if host == "gitlab.com" {
                "set GITLAB_TOKENS=tok1,tok2 (or --gitlab-tokens, or gitlab_tokens in the config file)".into()
            } else {
                format!(
                    "add its tokens to the config file as [gitlab_host_tokens] \"{host}\" = [\"...\"] (docs/agent.md); \
                     tokens of other hosts are never sent there"
                )
            },
        })
    }
}
