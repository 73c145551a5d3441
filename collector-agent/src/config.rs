//! Agent configuration: command-line flags and environment first, then a TOML file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::AgentError;

/// The config file (`--config`, or `AVELOXIS_CONFIG`). Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// `postgres://user:password@host:port/database`
    pub database_url: Option<String>,
    /// github.com's tokens, sent to `github_api_url` only (the file must then be readable by
    /// the agent's user only).
    pub github_tokens: Option<Vec<String>>,
    /// github.com's API root (default `https://api.github.com/`; a replay server in tests).
    pub github_api_url: Option<String>,
    /// Tokens of other GitHub API hosts (GitHub Enterprise), keyed by API host
    /// (`"ghe.example.com"`: API at `https://ghe.example.com/api/v3/`) or API root URL.
    /// Each host's tokens are sent to that host only.
    pub tokens: Option<BTreeMap<String, Vec<String>>>,
    /// gitlab.com's tokens, sent to `gitlab_api_url` only.
    pub gitlab_tokens: Option<Vec<String>>,
    /// gitlab.com's API root (default `https://gitlab.com/api/v4/`; a replay server in tests).
    pub gitlab_api_url: Option<String>,
    /// Tokens of self-managed GitLab instances, keyed by host (`"gitlab.example.org"`: API
    /// root as declared by `aveloxis.add_forge_host`, else `https://<host>/api/v4/`) or API
    /// root URL. Each host's tokens are sent to that host only.
    pub gitlab_host_tokens: Option<BTreeMap<String, Vec<String>>>,
    /// `"private-token"` (default: `PRIVATE-TOKEN` header) or `"bearer"` (OAuth 2 tokens).
    pub gitlab_token_style: Option<String>,
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<Self, AgentError> {
        let text = std::fs::read_to_string(path).map_err(|e| AgentError::Config {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| AgentError::Config {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    }
}

/// The database URL: the flag or `DATABASE_URL` wins over the config file.
pub fn database_url(flag_or_env: Option<String>, config_path: Option<&PathBuf>) -> Result<String, AgentError> {
    if let Some(url) = flag_or_env.filter(|u| !u.trim().is_empty()) {
        return Ok(url);
    }
    if let Some(path) = config_path {
        if let Some(url) = ConfigFile::load(path)?.database_url {
            return Ok(url);
        }
    }
    Err(AgentError::NoDatabase)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_wins_over_file() {
        let dir = std::env::temp_dir().join(format!("aveloxis-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("agent.toml");
        std::fs::write(&file, "database_url = \"postgres://file/db\"\n").unwrap();
        assert_eq!(
            database_url(Some("postgres://flag/db".into()), Some(&file)).unwrap(),
            "postgres://flag/db"
        );
        assert_eq!(database_url(None, Some(&file)).unwrap(), "postgres://file/db");
        assert_eq!(
            database_url(Some("  ".into()), Some(&file)).unwrap(),
            "postgres://file/db"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tokens_are_keyed_by_api_host() {
        let file: ConfigFile = toml::from_str(
            "github_tokens = [\"gh\"]\n[tokens]\n\"ghe.example.com\" = [\"ghe-1\", \"ghe-2\"]\n\
             \"https://git.corp.example/api/v3/\" = [\"corp\"]\n",
        )
        .unwrap();
        let tokens = file.tokens.unwrap();
        assert_eq!(tokens["ghe.example.com"], ["ghe-1", "ghe-2"]);
        assert_eq!(tokens["https://git.corp.example/api/v3/"], ["corp"]);
        assert_eq!(file.github_tokens.unwrap(), ["gh"]);
    }

    #[test]
    fn missing_everything_is_a_clear_error() {
        let e = database_url(None, None).unwrap_err();
        assert!(matches!(e, AgentError::NoDatabase));
        assert!(e.hint().unwrap().contains("DATABASE_URL"));
    }

    #[test]
    fn bad_files_name_the_file_and_the_problem() {
        let missing = PathBuf::from("/nonexistent/aveloxis.toml");
        let e = database_url(None, Some(&missing)).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/aveloxis.toml"), "{e}");
        let dir = std::env::temp_dir().join(format!("aveloxis-config-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("agent.toml");
        std::fs::write(&file, "databse_url = \"typo\"\n").unwrap();
        let e = database_url(None, Some(&file)).unwrap_err();
        assert!(e.to_string().contains("databse_url"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
