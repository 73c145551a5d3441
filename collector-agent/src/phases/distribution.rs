//! The distribution scan (docs/distribution.md): where a GitHub repository is published
//! and which manifests declare it. Five sources, each staged as it answered, under the
//! job's lease; `complete` applies them in the extension (one observation time, the
//! answered sources' rows rotated to history). The agent only fetches and stages.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::forge::{Fetched, Forge, ForgeError, Request};
use crate::queue::{stage, stage_with_contexts, ClaimedJob};

/// The public services, for an extension too old to hold the settings (before 0.13.0).
pub const DEFAULT_DEPSDEV_URL: &str = "https://api.deps.dev/";
pub const DEFAULT_ECOSYSTEMS_URL: &str = "https://packages.ecosyste.ms/";
/// GitHub Packages' types, queried one by one (the API has no combined query).
const PACKAGE_TYPES: [&str; 6] = ["npm", "maven", "rubygems", "docker", "nuget", "container"];
/// First-level directories walked for manifests (monorepos can have thousands).
const MAX_DIRECTORIES: usize = 50;
/// ecosyste.ms pages (100 packages each) read at most.
const MAX_ECOSYSTEMS_PAGES: u32 = 10;

/// The public registries' APIs: unauthenticated, with a User-Agent naming a contact.
#[derive(Clone)]
pub struct Registries {
    client: reqwest::Client,
    depsdev: Url,
    ecosystems: Url,
    contact: Option<String>,
    /// An owner's GitHub Packages pages per type, as last fetched: every repository of the
    /// owner gets the same answer, so an agent asks once per owner and hour.
    packages: std::sync::Arc<std::sync::Mutex<PackagesCache>>,
}

/// (owner in lower case, package type) -> (when fetched, the non-empty pages).
type PackagesCache = BTreeMap<(String, &'static str), (std::time::Instant, Vec<String>)>;

/// How long an owner's Packages pages are reused.
const PACKAGES_REUSED_FOR: Duration = Duration::from_secs(3600);

/// Why a registry call failed.
#[derive(Debug)]
pub enum RegistryError {
    /// 5xx, 429, timeouts, connection errors, after the retries.
    Transient(String),
    /// Any other 4xx but 404, or a body that is not JSON.
    Rejected(String),
}

impl Registries {
    pub fn new(depsdev: &str, ecosystems: &str, contact: Option<String>) -> Result<Self, String> {
        let root = |u: &str| {
            let u = if u.ends_with('/') {
                u.to_string()
            } else {
                format!("{u}/")
            };
            Url::parse(&u).map_err(|e| format!("{u}: {e}"))
        };
        let agent = match &contact {
            Some(c) => format!("aveloxis-agent/{} (mailto:{c})", env!("CARGO_PKG_VERSION")),
            None => format!("aveloxis-agent/{}", env!("CARGO_PKG_VERSION")),
        };
        let client = reqwest::Client::builder()
            .user_agent(agent)
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Registries {
            client,
            depsdev: root(depsdev)?,
            ecosystems: root(ecosystems)?,
            contact,
            packages: Default::default(),
        })
    }

    /// GET a JSON document: `None` for 404; 5xx, 429 and transport errors retried twice.
    pub(crate) async fn get(&self, url: Url) -> Result<Option<Value>, RegistryError> {
        let mut last = String::new();
        for attempt in 0..3u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500 * 2u64.pow(attempt))).await;
            }
            match self.client.get(url.clone()).send().await {
                Ok(r) if r.status() == StatusCode::NOT_FOUND => return Ok(None),
                Ok(r) if r.status().is_success() => match r.bytes().await {
                    Ok(body) => {
                        return serde_json::from_slice::<Value>(&body)
                            .map(Some)
                            .map_err(|e| RegistryError::Rejected(format!("{url}: not JSON: {e}")))
                    }
                    Err(e) => last = format!("{url}: {e}"),
                },
                Ok(r) if r.status().is_server_error() || r.status() == StatusCode::TOO_MANY_REQUESTS => {
                    last = format!("{url}: HTTP {}", r.status().as_u16());
                }
                Ok(r) => return Err(RegistryError::Rejected(format!("{url}: HTTP {}", r.status().as_u16()))),
                Err(e) => last = format!("{url}: {e}"),
            }
        }
        Err(RegistryError::Transient(last))
    }
}

/// A URL under `root` whose path is these segments, each percent-encoded (a `/` inside
/// one becomes `%2F`: deps.dev ids are single segments).
pub(crate) fn under(root: &Url, segments: &[&str]) -> Url {
    let mut url = root.clone();
    url.path_segments_mut()
        .expect("an http(s) root")
        .pop_if_empty()
        .extend(segments);
    url
}

/// A repository path for a GitHub API request, each segment percent-encoded.
fn repo_path(owner: &str, name: &str, rest: &[&str]) -> String {
    let base = Url::parse("http://x/").expect("a valid URL");
    let mut segments = vec!["repos", owner, name];
    segments.extend_from_slice(rest);
    under(&base, &segments).path()[1..].to_string()
}

/// What a scan did, per source: "ok", "none" (answered, nothing found) or why not.
#[derive(Debug, Default)]
pub struct ScanOutcome {
    pub sources: BTreeMap<&'static str, String>,
    pub staged: BTreeMap<&'static str, usize>,
    pub requests: usize,
}

impl ScanOutcome {
    /// Every source answered: a whole scan.
    pub fn answered(&self) -> bool {
        self.sources.values().all(|s| s == "ok" || s == "none")
    }

    /// The outcome `complete` applies (sql/distribution.sql).
    pub fn report(&self) -> Value {
        json!({"complete": self.answered(), "sources": self.sources, "counts": self.staged, "requests": self.requests})
    }

    pub fn summary(&self) -> String {
        let sources: Vec<String> = self.sources.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let staged: usize = self.staged.values().sum();
        format!(
            "distribution: {} requests, {staged} observations staged; {}",
            self.requests,
            sources.join(", ")
        )
    }

    /// Every source failed transiently and nothing was staged: nothing to apply.
    fn nothing_answered(&self) -> bool {
        self.staged.is_empty() && self.sources.values().all(|s| s != "ok" && s != "none")
    }
}

struct Scan<'a, F: Forge> {
    github: &'a F,
    registries: &'a Registries,
    db: &'a PgPool,
    job: &'a ClaimedJob,
    owner: String,
    name: String,
    outcome: ScanOutcome,
}

/// Scans one repository and stages what each source answered. A database error ends
/// the scan (nothing is completed); a source's failure is recorded in the outcome.
pub async fn scan_distribution<F: Forge>(
    github: &F,
    registries: &Registries,
    db: &PgPool,
    job: &ClaimedJob,
) -> Result<ScanOutcome, ForgeError> {
    let Some((owner, name)) = crate::phases::api::owner_and_name(&job.repo_git) else {
        return Err(ForgeError::Rejected {
            url: job.repo_git.clone(),
            status: 0,
            message: "not a GitHub repository URL (https://github.com/<owner>/<name>)".into(),
        });
    };
    let mut scan = Scan {
        github,
        registries,
        db,
        job,
        owner,
        name,
        outcome: ScanOutcome::default(),
    };
    scan.depsdev().await?;
    scan.ecosystems().await?;
    scan.release_assets().await?;
    scan.packages().await?;
    scan.contents().await?;
    Ok(scan.outcome)
}

impl<F: Forge> Scan<'_, F> {
    async fn stage(&mut self, source: &'static str, entity: &str, payloads: Vec<String>) -> Result<(), ForgeError> {
        if payloads.is_empty() {
            return Ok(());
        }
        stage(self.db, self.job, entity, &payloads).await?;
        *self.outcome.staged.entry(source).or_default() += payloads.len();
        Ok(())
    }

    /// Reports a registry call to the breakers; true when the source's breaker is open.
    async fn report(&self, source: &str, ok: bool, error: Option<&str>) -> Result<bool, ForgeError> {
        let open: Option<String> = sqlx::query_scalar("SELECT aveloxis.report_source($1, $2, $3, $4)::text")
            .bind(self.job.lease_token)
            .bind(source)
            .bind(ok)
            .bind(error)
            .fetch_one(self.db)
            .await?;
        Ok(open.is_some())
    }

    async fn registry_get(
        &mut self,
        source: &'static str,
        url: Url,
    ) -> Result<Result<Option<Value>, String>, ForgeError> {
        self.outcome.requests += 1;
        match self.registries.get(url).await {
            Ok(body) => {
                self.report(source, true, None).await?;
                Ok(Ok(body))
            }
            Err(RegistryError::Transient(e)) => {
                let open = self.report(source, false, Some(&e)).await?;
                tracing::warn!(repo = self.job.repo_id, "{source}: {e}");
                Ok(Err(if open {
                    format!("transient ({e}); circuit breaker open")
                } else {
                    format!("transient ({e})")
                }))
            }
            Err(RegistryError::Rejected(e)) => {
                tracing::warn!(repo = self.job.repo_id, "{source}: {e}");
                Ok(Err(format!("rejected ({e})")))
            }
        }
    }

    async fn depsdev(&mut self) -> Result<(), ForgeError> {
        let project = format!("github.com/{}/{}:packageversions", self.owner, self.name);
        let url = under(&self.registries.depsdev, &["v3", "projects", &project]);
        let body = match self.registry_get("deps.dev", url).await? {
            Ok(Some(body)) => body,
            Ok(None) => {
                self.outcome.sources.insert("deps.dev", "none".into());
                return Ok(());
            }
            Err(why) => {
                self.outcome.sources.insert("deps.dev", why);
                return Ok(());
            }
        };
        // Publish dates come per package; best effort (a failed call leaves them NULL).
        let packages: BTreeSet<(String, String)> = body
            .get("versions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| {
                let key = v.get("versionKey")?;
                Some((
                    key.get("system")?.as_str()?.to_string(),
                    key.get("name")?.as_str()?.to_string(),
                ))
            })
            .collect();
        self.stage("deps.dev", "distribution_depsdev", vec![body.to_string()])
            .await?;
        let mut details = Vec::new();
        for (system, name) in packages {
            let url = under(&self.registries.depsdev, &["v3", "systems", &system, "packages", &name]);
            if let Ok(Some(detail)) = self.registry_get("deps.dev", url).await? {
                details.push(detail.to_string());
            }
        }
        self.stage("deps.dev", "distribution_depsdev_package", details).await?;
        self.outcome.sources.insert("deps.dev", "ok".into());
        Ok(())
    }

    async fn ecosystems(&mut self) -> Result<(), ForgeError> {
        let repository = format!("https://github.com/{}/{}", self.owner, self.name);
        let mut found = 0;
        for page in 1..=MAX_ECOSYSTEMS_PAGES {
            let mut url = under(&self.registries.ecosystems, &["api", "v1", "packages", "lookup"]);
            url.query_pairs_mut()
                .append_pair("repository_url", &repository)
                .append_pair("per_page", "100")
                .append_pair("page", &page.to_string());
            if let Some(contact) = &self.registries.contact {
                url.query_pairs_mut().append_pair("mailto", contact);
            }
            let body = match self.registry_get("ecosyste.ms", url).await? {
                Ok(Some(body)) => body,
                Ok(None) => break,
                Err(why) => {
                    self.outcome.sources.insert("ecosyste.ms", why);
                    return Ok(());
                }
            };
            let n = body.as_array().map_or(0, Vec::len);
            found += n;
            if n > 0 {
                self.stage("ecosyste.ms", "distribution_ecosystems", vec![body.to_string()])
                    .await?;
            }
            if n < 100 {
                break;
            }
        }
        self.outcome
            .sources
            .insert("ecosyste.ms", if found > 0 { "ok" } else { "none" }.into());
        Ok(())
    }

    /// One GitHub page: `Ok(None)` when the endpoint does not apply (404, 403, 410), the
    /// failure's class text for the outcome when it failed otherwise.
    async fn github_page(
        &mut self,
        request: Request,
    ) -> Result<Result<Option<(Value, Option<String>)>, String>, ForgeError> {
        self.outcome.requests += 1;
        match self.github.fetch(&request).await {
            Ok(Fetched::Page { body, next, .. }) => Ok(Ok(Some((body, next)))),
            Ok(Fetched::NotModified) => Ok(Ok(None)),
            Err(ForgeError::Database(e)) => Err(ForgeError::Database(e)),
            Err(e) if e.class() == "skip" => Ok(Ok(None)),
            Err(e @ (ForgeError::Auth { .. } | ForgeError::NoToken { .. })) => Err(e),
            Err(e) => Ok(Err(format!("{} ({e})", e.class()))),
        }
    }

    async fn release_assets(&mut self) -> Result<(), ForgeError> {
        let request = Request::new(format!(
            "{}?per_page=100",
            repo_path(&self.owner, &self.name, &["releases"])
        ));
        let outcome = match self.github_page(request).await? {
            Ok(Some((body, _))) if body.as_array().is_some_and(|a| !a.is_empty()) => {
                self.stage("github_release_asset", "distribution_releases", vec![body.to_string()])
                    .await?;
                "ok".to_string()
            }
            Ok(_) => "none".to_string(),
            Err(why) => why,
        };
        self.outcome.sources.insert("github_release_asset", outcome);
        Ok(())
    }

    async fn packages(&mut self) -> Result<(), ForgeError> {
        let mut found = false;
        for package_type in PACKAGE_TYPES {
            let key = (self.owner.to_lowercase(), package_type);
            let cached = {
                let cache = self.registries.packages.lock().expect("the packages cache");
                cache
                    .get(&key)
                    .filter(|(at, _)| at.elapsed() < PACKAGES_REUSED_FOR)
                    .map(|(_, pages)| pages.clone())
            };
            let pages = match cached {
                Some(pages) => pages,
                None => match self.owner_packages(package_type).await? {
                    Ok(pages) => {
                        let mut cache = self.registries.packages.lock().expect("the packages cache");
                        cache.insert(key, (std::time::Instant::now(), pages.clone()));
                        pages
                    }
                    Err(why) => {
                        self.outcome.sources.insert("github_packages", why);
                        return Ok(());
                    }
                },
            };
            for page in pages {
                found = true;
                stage_with_contexts(
                    self.db,
                    self.job,
                    "distribution_packages",
                    &[page],
                    &[json!({"package_type": package_type})],
                )
                .await?;
                *self.outcome.staged.entry("github_packages").or_default() += 1;
            }
        }
        self.outcome
            .sources
            .insert("github_packages", if found { "ok" } else { "none" }.into());
        Ok(())
    }

    /// The owner's non-empty pages of one package type: the user's, else (on 404) the
    /// organization's.
    async fn owner_packages(&mut self, package_type: &str) -> Result<Result<Vec<String>, String>, ForgeError> {
        let mut pages = Vec::new();
        for kind in ["users", "orgs"] {
            let mut request = Request::new(format!(
                "{kind}/{}/packages?package_type={package_type}&per_page=100",
                self.owner
            ));
            let mut answered = false;
            loop {
                match self.github_page(request).await? {
                    Ok(Some((body, next))) => {
                        answered = true;
                        if body.as_array().is_some_and(|a| !a.is_empty()) {
                            pages.push(body.to_string());
                        }
                        match next {
                            Some(next) => request = Request::new(next),
                            None => break,
                        }
                    }
                    Ok(None) => break,
                    Err(why) => return Ok(Err(why)),
                }
            }
            if answered {
                break;
            }
        }
        Ok(Ok(pages))
    }

    /// One directory's entries, as the Contents API lists them.
    async fn listing(&mut self, dir: &[&str]) -> Result<Result<Vec<Value>, String>, ForgeError> {
        let mut rest = vec!["contents"];
        rest.extend_from_slice(dir);
        let mut path = repo_path(&self.owner, &self.name, &rest);
        if dir.is_empty() {
            path.push('/');
        }
        Ok(match self.github_page(Request::new(path)).await? {
            Ok(Some((body, _))) => Ok(body.as_array().cloned().unwrap_or_default()),
            Ok(None) => Ok(Vec::new()),
            Err(why) => Err(why),
        })
    }

    async fn contents(&mut self) -> Result<(), ForgeError> {
        let root = match self.listing(&[]).await? {
            Ok(entries) => entries,
            Err(why) => {
                self.outcome.sources.insert("contents", why);
                return Ok(());
            }
        };
        let mut entries = root.clone();
        let dirs: Vec<String> = root
            .iter()
            .filter(|e| e.get("type").and_then(Value::as_str) == Some("dir"))
            .filter_map(|e| e.get("name").and_then(Value::as_str).map(str::to_string))
            .take(MAX_DIRECTORIES)
            .collect();
        for dir in &dirs {
            match self.listing(&[dir]).await? {
                Ok(more) => entries.extend(more),
                Err(why) => {
                    self.outcome.sources.insert("contents", why);
                    return Ok(());
                }
            }
        }
        // Files only: symlinks, and submodules (listed as files without a download URL), are skipped.
        let files: Vec<(String, String)> = entries
            .iter()
            .filter(|e| e.get("type").and_then(Value::as_str) == Some("file"))
            .filter(|e| e.get("download_url").is_some_and(|u| !u.is_null()))
            .filter_map(|e| {
                Some((
                    e.get("path")?.as_str()?.to_string(),
                    e.get("sha").and_then(Value::as_str).unwrap_or_default().to_string(),
                ))
            })
            .collect();
        let paths: Vec<String> = files.iter().map(|(p, _)| p.clone()).collect();
        // Which are manifests is the extension's to say: a kind it adds needs no agent release.
        let kinds: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT p, aveloxis.manifest_kind(p) FROM unnest($1::text[]) p")
                .bind(&paths)
                .fetch_all(self.db)
                .await?;
        let manifests: BTreeSet<String> = kinds.into_iter().filter(|(_, k)| k.is_some()).map(|(p, _)| p).collect();
        let mut payloads = Vec::new();
        for (path, sha) in files.iter().filter(|(p, _)| manifests.contains(p)) {
            let segments: Vec<&str> = path.split('/').collect();
            let mut file = match self.listing_file(&segments).await? {
                Ok(Some(file)) => file,
                Ok(None) => continue,
                Err(why) => {
                    self.outcome.sources.insert("contents", why);
                    return Ok(());
                }
            };
            // Over 1 MB the Contents API sends no content: the blob has it.
            let empty = file.get("content").and_then(Value::as_str).is_none_or(str::is_empty);
            if empty && file.get("encoding").and_then(Value::as_str) != Some("base64") && !sha.is_empty() {
                let blob = Request::new(repo_path(&self.owner, &self.name, &["git", "blobs", sha]));
                match self.github_page(blob).await? {
                    Ok(Some((blob, _))) => {
                        file["content"] = blob.get("content").cloned().unwrap_or(Value::Null);
                        file["encoding"] = blob.get("encoding").cloned().unwrap_or(Value::Null);
                    }
                    Ok(None) => continue,
                    Err(why) => {
                        self.outcome.sources.insert("contents", why);
                        return Ok(());
                    }
                }
            }
            payloads.push(
                json!({"path": path, "sha": sha, "encoding": file.get("encoding"), "content": file.get("content")})
                    .to_string(),
            );
        }
        let found = !payloads.is_empty();
        self.stage("contents", "distribution_manifest", payloads).await?;
        self.outcome
            .sources
            .insert("contents", if found { "ok" } else { "none" }.into());
        Ok(())
    }

    async fn listing_file(&mut self, path: &[&str]) -> Result<Result<Option<Value>, String>, ForgeError> {
        let mut rest = vec!["contents"];
        rest.extend_from_slice(path);
        Ok(self
            .github_page(Request::new(repo_path(&self.owner, &self.name, &rest)))
            .await?
            .map(|page| page.map(|(body, _)| body)))
    }
}

/// Completes the job with the scan's outcome (the extension applies it), or fails it:
/// transient when no source answered, with the error's class when the scan stopped.
pub async fn finish(
    db: &PgPool,
    agent: &str,
    job: &ClaimedJob,
    result: &Result<ScanOutcome, ForgeError>,
) -> Result<(), sqlx::Error> {
    let report = match result {
        Ok(outcome) if outcome.nothing_answered() => Err((
            format!("no distribution source answered: {}", outcome.summary()),
            "transient",
        )),
        Ok(outcome) => Ok(outcome.report()),
        Err(e) => Err((e.to_string(), e.class())),
    };
    crate::queue::report(db, agent, job, false, report).await
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn deps_dev_project_ids_are_one_segment() {
        let root = Url::parse("https://api.deps.dev/").unwrap();
        assert_eq!(
            under(&root, &["v3", "projects", "github.com/o/r:packageversions"]).as_str(),
            "https://api.deps.dev/v3/projects/github.com%2Fo%2Fr:packageversions"
        );
        assert_eq!(
            under(&root, &["v3", "systems", "NPM", "packages", "@colors/colors"]).as_str(),
            "https://api.deps.dev/v3/systems/NPM/packages/@colors%2Fcolors"
        );
        let nested = Url::parse("http://127.0.0.1:9/depsdev/").unwrap();
        assert_eq!(under(&nested, &["v3"]).as_str(), "http://127.0.0.1:9/depsdev/v3");
    }

    #[test]
    fn repository_paths_encode_each_segment() {
        assert_eq!(
            repo_path("o", "r", &["contents", "my dir", "a#b.json"]),
            "repos/o/r/contents/my%20dir/a%23b.json"
        );
    }
}
