//! The packages phase (docs/dependencies.md, "Libyear"): the agent fills the fleet-wide
//! package cache for what one repository uses and the cache lacks or holds past its TTL
//! (`aveloxis.packages_due`); `complete` upserts the cache and recomputes the
//! repository's libyear in SQL. deps.dev answers for its six systems (one GetPackage
//! call per package: every version with its publish date and the default; one GetVersion
//! per version in use for its licences); the native registries for RubyGems, Packagist,
//! Hex, Pub and Hackage, and crates.io's own API when deps.dev does not know a crate. Each package
//! is staged field-picked (`package_versions`), whatever the registry said (found, not
//! found, refused), so nothing is asked again before its TTL.

use serde_json::{json, Value};
use sqlx::PgPool;
use url::Url;

use crate::phases::distribution::under;
use crate::phases::http::{Answer, PoliteClient, Unanswered};
use crate::queue::ClaimedJob;

/// Where the registries are: deps.dev's root, and (tests, mirrors) one root standing for
/// every native registry's host (`{root}/{host}/...`).
#[derive(Clone)]
pub struct PackageSources {
    pub depsdev: Url,
    pub registry_root: Option<Url>,
}

impl PackageSources {
    /// The native registry `host`'s URL for these path segments.
    fn native(&self, host: &str, segments: &[&str]) -> Url {
        match &self.registry_root {
            Some(root) => {
                let mut all = vec![host];
                all.extend_from_slice(segments);
                under(root, &all)
            }
            None => under(&Url::parse(&format!("https://{host}/")).expect("a host"), segments),
        }
    }
}

/// One package as staged: what the registry said about it.
#[derive(Debug, Default, PartialEq)]
pub struct PackageAnswer {
    pub status: &'static str,
    pub source: &'static str,
    pub http_status: Option<u16>,
    pub detail: Option<String>,
    pub default_version: Option<String>,
    pub licence: Option<String>,
    /// (version, published_at, prerelease, yanked, licence)
    pub versions: Vec<Value>,
}

fn depsdev_system(ecosystem: &str) -> Option<&'static str> {
    Some(match ecosystem {
        "npm" => "NPM",
        "PyPI" => "PYPI",
        "crates.io" => "CARGO",
        "Go" => "GO",
        "Maven" => "MAVEN",
        "NuGet" => "NUGET",
        _ => return None,
    })
}

fn refused(source: &'static str, status: u16, detail: String) -> PackageAnswer {
    PackageAnswer {
        status: "error",
        source,
        http_status: Some(status),
        detail: Some(detail),
        ..Default::default()
    }
}

fn not_found(source: &'static str) -> PackageAnswer {
    PackageAnswer {
        status: "not_found",
        source,
        http_status: Some(404),
        ..Default::default()
    }
}

fn s(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// A deps.dev URL: every path segment percent-encoded, `@` included (`%40babel%2Fcore`,
/// as deps.dev's documentation writes scoped names).
fn depsdev_url(sources: &PackageSources, segments: &[&str]) -> Url {
    let mut url = under(&sources.depsdev, segments);
    let path = url.path().replace('@', "%40");
    url.set_path(&path);
    url
}

/// deps.dev GetPackage (+ GetVersion for the versions in use, for their licences).
async fn depsdev(
    client: &PoliteClient,
    sources: &PackageSources,
    system: &str,
    name: &str,
    in_use: &[String],
) -> Result<PackageAnswer, Unanswered> {
    let url = depsdev_url(sources, &["v3", "systems", system, "packages", name]);
    let doc = match client.get_json(url, None).await? {
        Answer::NotFound => return Ok(not_found("deps.dev")),
        Answer::Refused(code, detail) => return Ok(refused("deps.dev", code, detail)),
        Answer::Json(doc) => doc,
    };
    let mut answer = PackageAnswer {
        status: "found",
        source: "deps.dev",
        http_status: Some(200),
        ..Default::default()
    };
    for v in doc.get("versions").and_then(Value::as_array).into_iter().flatten() {
        let Some(version) = v.pointer("/versionKey/version").and_then(Value::as_str) else {
            continue;
        };
        if v.get("isDefault").and_then(Value::as_bool) == Some(true) {
            answer.default_version = Some(version.to_owned());
        }
        answer
            .versions
            .push(json!({"version": version, "published_at": s(v, "publishedAt")}));
    }
    for version in in_use {
        let url = depsdev_url(
            sources,
            &["v3", "systems", system, "packages", name, "versions", version],
        );
        if let Answer::Json(doc) = client.get_json(url, None).await? {
            let licences: Vec<&str> = doc
                .get("licenses")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if let (Some(entry), false) = (
                answer.versions.iter_mut().find(|e| e["version"] == version.as_str()),
                licences.is_empty(),
            ) {
                entry["licence"] = json!(licences.join(" AND "));
            }
        }
    }
    Ok(answer)
}

/// crates.io's API (a User-Agent is required; at most one request a second).
async fn crates_io(client: &PoliteClient, sources: &PackageSources, name: &str) -> Result<PackageAnswer, Unanswered> {
    let doc = match client
        .get_json(sources.native("crates.io", &["api", "v1", "crates", name]), None)
        .await?
    {
        Answer::NotFound => return Ok(not_found("crates.io")),
        Answer::Refused(code, detail) => return Ok(refused("crates.io", code, detail)),
        Answer::Json(doc) => doc,
    };
    let default_version = doc
        .pointer("/crate/max_stable_version")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let versions = doc
        .get("versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|v| {
            json!({"version": s(v, "num"), "published_at": s(v, "created_at"),
                   "yanked": v.get("yanked").and_then(Value::as_bool), "licence": s(v, "license")})
        })
        .collect();
    Ok(PackageAnswer {
        status: "found",
        source: "crates.io",
        http_status: Some(200),
        default_version,
        versions,
        ..Default::default()
    })
}

/// RubyGems: every version with its date (one row per platform: the first of each number).
async fn rubygems(client: &PoliteClient, sources: &PackageSources, name: &str) -> Result<PackageAnswer, Unanswered> {
    let file = format!("{name}.json");
    let doc = match client
        .get_json(sources.native("rubygems.org", &["api", "v1", "versions", &file]), None)
        .await?
    {
        Answer::NotFound => return Ok(not_found("rubygems.org")),
        Answer::Refused(code, detail) => return Ok(refused("rubygems.org", code, detail)),
        Answer::Json(doc) => doc,
    };
    let mut seen = std::collections::HashSet::new();
    let mut versions = Vec::new();
    for v in doc.as_array().into_iter().flatten() {
        let Some(number) = s(v, "number") else { continue };
        if !seen.insert(number.clone()) {
            continue;
        }
        let licences: Vec<&str> = v
            .get("licenses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        versions.push(json!({"version": number, "published_at": s(v, "created_at"),
                             "prerelease": v.get("prerelease").and_then(Value::as_bool),
                             "licence": (!licences.is_empty()).then(|| licences.join(" OR "))}));
    }
    Ok(PackageAnswer {
        status: "found",
        source: "rubygems.org",
        http_status: Some(200),
        versions,
        ..Default::default()
    })
}

/// Packagist's p2 metadata: "minified" (each entry repeats only what changed from the
/// one before; `__unset` removes a field).
async fn packagist(client: &PoliteClient, sources: &PackageSources, name: &str) -> Result<PackageAnswer, Unanswered> {
    let Some((vendor, package)) = name.split_once('/') else {
        return Ok(refused("packagist.org", 400, format!("{name} is not vendor/package")));
    };
    let file = format!("{package}.json");
    let doc = match client
        .get_json(sources.native("repo.packagist.org", &["p2", vendor, &file]), None)
        .await?
    {
        Answer::NotFound => return Ok(not_found("packagist.org")),
        Answer::Refused(code, detail) => return Ok(refused("packagist.org", code, detail)),
        Answer::Json(doc) => doc,
    };
    let entries = doc.pointer(&format!("/packages/{}", name.replace('~', "~0").replace('/', "~1")));
    let mut current = serde_json::Map::new();
    let mut versions = Vec::new();
    for entry in entries.and_then(Value::as_array).into_iter().flatten() {
        for (k, v) in entry.as_object().into_iter().flatten() {
            if v == "__unset" {
                current.remove(k);
            } else {
                current.insert(k.clone(), v.clone());
            }
        }
        let licence = current
            .get("license")
            .and_then(Value::as_array)
            .map(|l| l.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" OR "));
        versions.push(
            json!({"version": current.get("version"), "published_at": current.get("time"),
                             "licence": licence.filter(|l| !l.is_empty())}),
        );
    }
    Ok(PackageAnswer {
        status: "found",
        source: "packagist.org",
        http_status: Some(200),
        versions,
        ..Default::default()
    })
}

/// Hex: releases with their dates, the latest stable version, the package's licences.
async fn hex(client: &PoliteClient, sources: &PackageSources, name: &str) -> Result<PackageAnswer, Unanswered> {
    let doc = match client
        .get_json(sources.native("hex.pm", &["api", "packages", name]), None)
        .await?
    {
        Answer::NotFound => return Ok(not_found("hex.pm")),
        Answer::Refused(code, detail) => return Ok(refused("hex.pm", code, detail)),
        Answer::Json(doc) => doc,
    };
    let licences: Vec<&str> = doc
        .pointer("/meta/licenses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let versions = doc
        .get("releases")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|r| json!({"version": s(r, "version"), "published_at": s(r, "inserted_at")}))
        .collect();
    Ok(PackageAnswer {
        status: "found",
        source: "hex.pm",
        http_status: Some(200),
        default_version: s(&doc, "latest_stable_version"),
        licence: (!licences.is_empty()).then(|| licences.join(" OR ")),
        versions,
        ..Default::default()
    })
}

/// pub.dev: versions with their dates (retracted ones are yanked), the latest.
async fn pub_dev(client: &PoliteClient, sources: &PackageSources, name: &str) -> Result<PackageAnswer, Unanswered> {
    let url = sources.native("pub.dev", &["api", "packages", name]);
    let doc = match client.get_json(url, Some("application/vnd.pub.v2+json")).await? {
        Answer::NotFound => return Ok(not_found("pub.dev")),
        Answer::Refused(code, detail) => return Ok(refused("pub.dev", code, detail)),
        Answer::Json(doc) => doc,
    };
    let versions = doc
        .get("versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|v| {
            json!({"version": s(v, "version"), "published_at": s(v, "published"),
                   "yanked": v.get("retracted").and_then(Value::as_bool)})
        })
        .collect();
    Ok(PackageAnswer {
        status: "found",
        source: "pub.dev",
        http_status: Some(200),
        default_version: doc
            .pointer("/latest/version")
            .and_then(Value::as_str)
            .map(str::to_owned),
        versions,
        ..Default::default()
    })
}

/// Hackage: the preferred versions (deprecated ones are yanked), and the upload time of the
/// versions in use and of the newest (one plain-text call each: Hackage has no dates in bulk).
async fn hackage(
    client: &PoliteClient,
    sources: &PackageSources,
    name: &str,
    in_use: &[String],
) -> Result<PackageAnswer, Unanswered> {
    let url = sources.native("hackage.haskell.org", &["package", name, "preferred"]);
    let doc = match client.get_json(url, Some("application/json")).await? {
        Answer::NotFound => return Ok(not_found("hackage.haskell.org")),
        Answer::Refused(code, detail) => return Ok(refused("hackage.haskell.org", code, detail)),
        Answer::Json(doc) => doc,
    };
    let listed = |key: &str| -> Vec<String> {
        doc.get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    };
    let (normal, deprecated) = (listed("normal-version"), listed("deprecated-version"));
    let numeric = |v: &str| -> Vec<u64> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    let newest = normal.iter().max_by_key(|v| numeric(v)).cloned();
    let mut wanted: Vec<String> = in_use.to_vec();
    wanted.extend(newest.clone());
    wanted.sort();
    wanted.dedup();
    let mut versions = Vec::new();
    for version in &normal {
        versions.push(json!({"version": version}));
    }
    for version in &deprecated {
        versions.push(json!({"version": version, "yanked": true}));
    }
    for version in wanted {
        let id = format!("{name}-{version}");
        // "Tue Jun 27 12:58:58 UTC 2023": PostgreSQL reads it as it is.
        if let Some(at) = client
            .get_text(sources.native("hackage.haskell.org", &["package", &id, "upload-time"]))
            .await?
        {
            match versions.iter_mut().find(|v| v["version"] == version.as_str()) {
                Some(entry) => entry["published_at"] = json!(at.trim()),
                None => versions.push(json!({"version": version, "published_at": at.trim()})),
            }
        }
    }
    Ok(PackageAnswer {
        status: "found",
        source: "hackage.haskell.org",
        http_status: Some(200),
        default_version: newest,
        versions,
        ..Default::default()
    })
}

/// What the registries say about one package.
pub async fn fetch_package(
    client: &PoliteClient,
    sources: &PackageSources,
    ecosystem: &str,
    name: &str,
    in_use: &[String],
) -> Result<PackageAnswer, Unanswered> {
    if let Some(system) = depsdev_system(ecosystem) {
        let answer = depsdev(client, sources, system, name, in_use).await?;
        // deps.dev lags or lacks some crates: crates.io's own API then.
        if answer.status == "not_found" && ecosystem == "crates.io" {
            return crates_io(client, sources, name).await;
        }
        return Ok(answer);
    }
    match ecosystem {
        "RubyGems" => rubygems(client, sources, name).await,
        "Packagist" => packagist(client, sources, name).await,
        "Hex" => hex(client, sources, name).await,
        "Pub" => pub_dev(client, sources, name).await,
        "Hackage" => hackage(client, sources, name, in_use).await,
        _ => Ok(PackageAnswer {
            status: "unsupported",
            detail: Some(format!("no registry source for {ecosystem} packages yet")),
            ..Default::default()
        }),
    }
}

/// What one packages job did.
#[derive(Debug, Default)]
pub struct PackagesOutcome {
    pub due: usize,
    pub found: usize,
    pub missing: usize,
    pub unsupported: usize,
    pub unanswered: usize,
    pub requests: u64,
}

impl super::Outcome for PackagesOutcome {
    fn summary(&self) -> String {
        format!(
            "packages: {} due in the cache, {} found, {} not in their registry, {} unsupported, {} unanswered; {} requests",
            self.due, self.found, self.missing, self.unsupported, self.unanswered, self.requests
        )
    }

    fn report(&self) -> Value {
        json!({"due": self.due, "found": self.found, "not_found": self.missing, "unsupported": self.unsupported,
               "unanswered": self.unanswered, "requests": self.requests, "complete": self.unanswered == 0})
    }
}

/// Fetches and stages the repository's due packages.
pub async fn fetch_packages(
    db: &PgPool,
    job: &ClaimedJob,
    client: &PoliteClient,
    sources: &PackageSources,
) -> Result<PackagesOutcome, String> {
    let due: Vec<(String, String, Option<Vec<String>>)> =
        sqlx::query_as("SELECT ecosystem, name, versions FROM aveloxis.packages_due($1)")
            .bind(job.lease_token)
            .fetch_all(db)
            .await
            .map_err(|e| format!("aveloxis.packages_due: {e}"))?;
    let mut outcome = PackagesOutcome {
        due: due.len(),
        ..Default::default()
    };
    for (ecosystem, name, versions) in due {
        let answer = match fetch_package(client, sources, &ecosystem, &name, &versions.unwrap_or_default()).await {
            Ok(a) => a,
            Err(e) => {
                // Staged as an error: asked again after packages.miss_ttl, not at once.
                tracing::warn!(repo = job.repo_id, %ecosystem, %name, "no answer: {e}");
                outcome.unanswered += 1;
                PackageAnswer {
                    status: "error",
                    detail: Some(e.0),
                    ..Default::default()
                }
            }
        };
        match answer.status {
            "found" => outcome.found += 1,
            "not_found" => outcome.missing += 1,
            "unsupported" => outcome.unsupported += 1,
            _ => {}
        }
        let doc = json!({"ecosystem": ecosystem, "name": name, "status": answer.status, "source": answer.source,
                         "http_status": answer.http_status, "detail": answer.detail,
                         "default_version": answer.default_version, "licence": answer.licence,
                         "versions": answer.versions});
        crate::queue::stage(db, job, "package_versions", &[doc.to_string()])
            .await
            .map_err(|e| format!("staging {ecosystem}/{name}: {e}"))?;
    }
    outcome.requests = client.requests();
    Ok(outcome)
}
