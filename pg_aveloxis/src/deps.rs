//! Dependencies (docs/dependencies.md): what the manifests and lockfiles of a HEAD tree
//! declare and install, parsed here in the extension so that a parser fix re-parses the
//! stored files with no re-collection (`aveloxis.reparse_dependencies`).
//!
//! Each file is parsed on its own (`parse_file`, by its file name, one module per
//! ecosystem family); `resolve` then joins a repository's manifests with their lockfiles:
//! a manifest's dependency takes the version its lockfile installed (`locked`), else the
//! version the manifest pins (`exact`); a range or no requirement at all stays without a
//! version (`range`, `unpinned`), never a range's lower bound passed off as the version
//! in use. Lockfile entries no manifest declares are the transitive dependencies.

mod cargo_go;
mod dotnet;
mod jvm;
mod npm;
mod others;
mod python;
mod ruby_php;
mod text;

use std::collections::{BTreeMap, BTreeSet};

/// What a file is to a project: the requirements it declares, or what was installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Manifest,
    Lockfile,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Manifest => "manifest",
            Kind::Lockfile => "lockfile",
        }
    }
}

/// One dependency as one file states it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dep {
    pub name: String,
    /// The requirement as written (`^4.18.2`, `>=2.28`, `~> 7.1`); None when the file gives none.
    pub requirement: Option<String>,
    /// The exact version the file states (a lockfile's installed version, an exact pin).
    pub version: Option<String>,
    /// runtime, development, optional, peer, build or test.
    pub scope: &'static str,
    /// A lockfile's own word on whether the project asked for it (Some(true)) or it came
    /// with another package (Some(false)); None when the file does not say.
    pub direct: Option<bool>,
    /// Fetched from a path, git or URL rather than the registry: no registry version.
    pub non_registry: bool,
}

impl Dep {
    pub fn declared(name: impl Into<String>, requirement: Option<String>, scope: &'static str) -> Self {
        Dep {
            name: name.into(),
            requirement: requirement.map(|r| r.trim().to_owned()).filter(|r| !r.is_empty()),
            scope,
            ..Default::default()
        }
    }

    pub fn locked(
        name: impl Into<String>,
        version: impl Into<String>,
        scope: &'static str,
        direct: Option<bool>,
    ) -> Self {
        Dep {
            name: name.into(),
            version: Some(version.into()).filter(|v| !v.is_empty()),
            scope,
            direct,
            ..Default::default()
        }
    }
}

/// A file parsed: its ecosystem (OSV's names), kind and dependencies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub ecosystem: &'static str,
    pub kind: Kind,
    pub deps: Vec<Dep>,
}

type Parser = fn(&str) -> Result<Vec<Dep>, String>;

/// The format of a file by its name: ecosystem, kind and parser. `None`: not a
/// dependency file. The same rules are served to agents as patterns
/// (`aveloxis.dependency_file_patterns()`), so a format added here needs no agent release.
fn format_of(path: &str) -> Option<(&'static str, Kind, Parser)> {
    let file = path.rsplit('/').next().unwrap_or(path);
    let m = Kind::Manifest;
    let l = Kind::Lockfile;
    Some(match file {
        "package.json" => ("npm", m, npm::package_json as Parser),
        "package-lock.json" | "npm-shrinkwrap.json" => ("npm", l, npm::package_lock),
        "yarn.lock" => ("npm", l, npm::yarn_lock),
        "pnpm-lock.yaml" => ("npm", l, npm::pnpm_lock),
        "bun.lock" => ("npm", l, npm::bun_lock),
        "requirements.txt" | "requirements.in" => ("PyPI", m, python::requirements),
        "pyproject.toml" => ("PyPI", m, python::pyproject),
        "setup.cfg" => ("PyPI", m, python::setup_cfg),
        "Pipfile" => ("PyPI", m, python::pipfile),
        "Pipfile.lock" => ("PyPI", l, python::pipfile_lock),
        "poetry.lock" | "uv.lock" | "pdm.lock" => ("PyPI", l, python::package_array_lock),
        "Cargo.toml" => ("crates.io", m, cargo_go::cargo_toml),
        "Cargo.lock" => ("crates.io", l, cargo_go::cargo_lock),
        "go.mod" => ("Go", m, cargo_go::go_mod),
        "pom.xml" => ("Maven", m, jvm::pom),
        "build.gradle" | "build.gradle.kts" => ("Maven", m, jvm::gradle),
        "libs.versions.toml" => ("Maven", m, jvm::version_catalog),
        "gradle.lockfile" => ("Maven", l, jvm::gradle_lockfile),
        "Gemfile" | "gems.rb" => ("RubyGems", m, ruby_php::gemfile),
        "Gemfile.lock" | "gems.locked" => ("RubyGems", l, ruby_php::gemfile_lock),
        "composer.json" => ("Packagist", m, ruby_php::composer_json),
        "composer.lock" => ("Packagist", l, ruby_php::composer_lock),
        "packages.config" => ("NuGet", m, dotnet::packages_config),
        "packages.lock.json" => ("NuGet", l, dotnet::packages_lock),
        "Directory.Packages.props" => ("NuGet", m, dotnet::msbuild),
        "mix.exs" => ("Hex", m, others::mix_exs),
        "mix.lock" => ("Hex", l, others::mix_lock),
        "pubspec.yaml" => ("Pub", m, others::pubspec),
        "pubspec.lock" => ("Pub", l, others::pubspec_lock),
        "cabal.project.freeze" => ("Hackage", l, others::cabal_freeze),
        "stack.yaml.lock" => ("Hackage", l, others::stack_lock),
        "Package.swift" => ("SwiftURL", m, others::package_swift),
        "Package.resolved" => ("SwiftURL", l, others::package_resolved),
        "Podfile" => ("CocoaPods", m, ruby_php::podfile),
        "Podfile.lock" => ("CocoaPods", l, others::podfile_lock),
        "conanfile.txt" => ("ConanCenter", m, others::conanfile_txt),
        "conan.lock" => ("ConanCenter", l, others::conan_lock),
        "DESCRIPTION" => ("CRAN", m, others::r_description),
        "renv.lock" => ("CRAN", l, others::renv_lock),
        _ if file.ends_with(".gemspec") && file.len() > 8 => ("RubyGems", m, ruby_php::gemspec),
        _ if (file.ends_with(".csproj") || file.ends_with(".fsproj") || file.ends_with(".vbproj"))
            && file.len() > 7 =>
        {
            ("NuGet", m, dotnet::msbuild)
        }
        _ if file.ends_with(".cabal") && file.len() > 6 => ("Hackage", m, others::cabal),
        _ if is_requirements_txt(file) => ("PyPI", m, python::requirements),
        _ if is_workflow(path) => ("GitHub Actions", m, others::actions_workflow),
        _ => return None,
    })
}

/// `requirements-dev.txt`, `requirements/test.txt`-style names are requirement files too.
fn is_requirements_txt(file: &str) -> bool {
    (file.starts_with("requirements") || file.ends_with("-requirements.txt") || file.ends_with("_requirements.txt"))
        && (file.ends_with(".txt") || file.ends_with(".in"))
}

fn is_workflow(path: &str) -> bool {
    path.strip_prefix(".github/workflows/")
        .is_some_and(|file| !file.contains('/'))
        && (path.ends_with(".yml") || path.ends_with(".yaml"))
}

/// Whether a path names a dependency file, and its ecosystem and kind.
pub fn file_kind(path: &str) -> Option<(&'static str, Kind)> {
    format_of(path).map(|(eco, kind, _)| (eco, kind))
}

/// Parses one file. `None`: not a dependency file. An error says what could not be read.
pub fn parse_file(path: &str, content: &str) -> Option<Result<Parsed, String>> {
    let (ecosystem, kind, parser) = format_of(path)?;
    let content = content.strip_prefix('\u{feff}').unwrap_or(content);
    Some(parser(content).map(|mut deps| {
        deps.retain(|d| !d.name.trim().is_empty());
        Parsed { ecosystem, kind, deps }
    }))
}

/// The globs agents select dependency files with (served by
/// `aveloxis.dependency_file_patterns()`): a `file` glob matches a file name in any
/// directory, a `path` glob the path from the tree's root; `*` never crosses a `/`.
pub fn patterns() -> Vec<(&'static str, &'static str)> {
    let names = [
        "package.json",
        "package-lock.json",
        "npm-shrinkwrap.json",
        "yarn.lock",
        "pnpm-lock.yaml",
        "bun.lock",
        "pyproject.toml",
        "setup.cfg",
        "Pipfile",
        "Pipfile.lock",
        "poetry.lock",
        "uv.lock",
        "pdm.lock",
        "Cargo.toml",
        "Cargo.lock",
        "go.mod",
        "pom.xml",
        "build.gradle",
        "build.gradle.kts",
        "libs.versions.toml",
        "gradle.lockfile",
        "Gemfile",
        "gems.rb",
        "Gemfile.lock",
        "gems.locked",
        "composer.json",
        "composer.lock",
        "packages.config",
        "packages.lock.json",
        "Directory.Packages.props",
        "mix.exs",
        "mix.lock",
        "pubspec.yaml",
        "pubspec.lock",
        "cabal.project.freeze",
        "stack.yaml.lock",
        "Package.swift",
        "Package.resolved",
        "Podfile",
        "Podfile.lock",
        "conanfile.txt",
        "conan.lock",
        "DESCRIPTION",
        "renv.lock",
    ];
    let mut out: Vec<(&str, &str)> = names.iter().map(|n| ("file", *n)).collect();
    for glob in [
        "*.gemspec",
        "*.csproj",
        "*.fsproj",
        "*.vbproj",
        "*.cabal",
        "requirements*.txt",
        "requirements*.in",
        "*-requirements.txt",
        "*_requirements.txt",
    ] {
        out.push(("file", glob));
    }
    out.push(("path", ".github/workflows/*.yml"));
    out.push(("path", ".github/workflows/*.yaml"));
    out
}

/// One dependency of a repository, resolved across its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The manifest declaring it; a lockfile's path for a transitive dependency.
    pub manifest_path: String,
    pub lockfile_path: Option<String>,
    pub ecosystem: &'static str,
    pub name: String,
    pub requirement: Option<String>,
    pub scope: &'static str,
    pub direct: bool,
    pub version: Option<String>,
    /// locked, exact, range, unpinned or non-registry.
    pub resolution: &'static str,
}

/// A file that could not be parsed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub path: String,
    pub error: String,
}

fn dir_of(path: &str) -> &str {
    path.rfind('/').map_or("", |i| &path[..i])
}

/// The lockfile a manifest is installed by: the nearest lockfile of its ecosystem in its
/// directory or an ancestor (workspaces lock at their root).
fn lockfile_for<'a>(manifest: &str, ecosystem: &str, locks: &'a [(String, Parsed)]) -> Option<&'a (String, Parsed)> {
    let mut dir = dir_of(manifest);
    loop {
        if let Some(lock) = locks
            .iter()
            .find(|(p, parsed)| parsed.ecosystem == ecosystem && dir_of(p) == dir)
        {
            return Some(lock);
        }
        if dir.is_empty() {
            return None;
        }
        dir = dir_of(dir);
    }
}

/// How a manifest-only dependency stands: its exact version when the requirement pins
/// one, else a range or nothing at all.
fn classify(ecosystem: &str, dep: &Dep) -> (Option<String>, &'static str) {
    if dep.non_registry {
        return (None, "non-registry");
    }
    if let Some(v) = &dep.version {
        return (Some(v.clone()), "exact");
    }
    match dep.requirement.as_deref().map(str::trim) {
        None | Some("" | "*" | "latest" | "x" | "any") => (None, "unpinned"),
        Some(req) => match text::exact_version(ecosystem, req) {
            Some(v) => (Some(v), "exact"),
            None => (None, "range"),
        },
    }
}

/// Normalised names where an ecosystem compares them so (PyPI: PEP 503; NuGet, Packagist:
/// case-insensitive).
pub fn normalize_name(ecosystem: &str, name: &str) -> String {
    match ecosystem {
        "PyPI" => {
            let lower = name.trim().to_ascii_lowercase();
            let mut out = String::with_capacity(lower.len());
            let mut last_sep = false;
            for c in lower.chars() {
                if matches!(c, '-' | '_' | '.') {
                    if !last_sep {
                        out.push('-');
                    }
                    last_sep = true;
                } else {
                    out.push(c);
                    last_sep = false;
                }
            }
            out
        }
        "NuGet" | "Packagist" | "Hackage" => name.trim().to_ascii_lowercase(),
        _ => name.trim().to_owned(),
    }
}

/// The version a lockfile installed for a manifest's dependency: the lockfile's only
/// version of the name, else the one it marks direct, else the one the requirement
/// matches (semver ranges), else the highest of those it matches.
fn installed_version(lock: &Parsed, ecosystem: &str, dep: &Dep) -> Option<String> {
    let key = normalize_name(ecosystem, &dep.name);
    let entries: Vec<&Dep> = lock
        .deps
        .iter()
        .filter(|d| d.version.is_some() && normalize_name(ecosystem, &d.name) == key)
        .collect();
    let versions: BTreeSet<&str> = entries.iter().filter_map(|d| d.version.as_deref()).collect();
    if versions.len() == 1 {
        return versions.into_iter().next().map(str::to_owned);
    }
    if versions.is_empty() {
        return None;
    }
    let top: BTreeSet<&str> = entries
        .iter()
        .filter(|d| d.direct == Some(true))
        .filter_map(|d| d.version.as_deref())
        .collect();
    if top.len() == 1 {
        return top.into_iter().next().map(str::to_owned);
    }
    let req = semver::VersionReq::parse(dep.requirement.as_deref()?.trim()).ok()?;
    versions
        .iter()
        .filter_map(|v| {
            semver::Version::parse(v)
                .ok()
                .filter(|sv| req.matches(sv))
                .map(|sv| (sv, *v))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, v)| v.to_owned())
}

/// Joins a repository's dependency files (path, content) into its dependencies: every
/// manifest's declarations with their installed versions, then the lockfiles' entries no
/// manifest declared (transitive, or direct when the lockfile says so and no manifest of
/// the project is there). Deterministic: sorted by path, ecosystem, name, scope.
pub fn resolve(files: &[(String, String)]) -> (Vec<Resolved>, Vec<FileError>) {
    let mut manifests = Vec::new();
    let mut locks = Vec::new();
    let mut errors = Vec::new();
    for (path, content) in files {
        match parse_file(path, content) {
            None => {}
            Some(Err(error)) => errors.push(FileError {
                path: path.clone(),
                error,
            }),
            Some(Ok(parsed)) if parsed.kind == Kind::Manifest => manifests.push((path.clone(), parsed)),
            Some(Ok(parsed)) => locks.push((path.clone(), parsed)),
        }
    }
    let mut out = Vec::new();
    // (lockfile path, normalised name, version) a manifest declared: not transitive.
    let mut claimed: BTreeSet<(String, String, String)> = BTreeSet::new();
    let mut lock_has_manifest: BTreeSet<String> = BTreeSet::new();
    for (path, parsed) in &manifests {
        let lock = lockfile_for(path, parsed.ecosystem, &locks);
        if let Some((lock_path, _)) = lock {
            lock_has_manifest.insert(lock_path.clone());
        }
        for dep in &parsed.deps {
            let locked = match lock {
                Some((lock_path, lock_parsed)) if !dep.non_registry => {
                    let v = installed_version(lock_parsed, parsed.ecosystem, dep);
                    if let Some(v) = &v {
                        claimed.insert((
                            lock_path.clone(),
                            normalize_name(parsed.ecosystem, &dep.name),
                            v.clone(),
                        ));
                    }
                    v
                }
                _ => None,
            };
            let (version, resolution) = match locked {
                Some(v) => (Some(v), "locked"),
                None => classify(parsed.ecosystem, dep),
            };
            out.push(Resolved {
                manifest_path: path.clone(),
                lockfile_path: lock.filter(|_| resolution == "locked").map(|(p, _)| p.clone()),
                ecosystem: parsed.ecosystem,
                name: dep.name.clone(),
                requirement: dep.requirement.clone(),
                scope: dep.scope,
                direct: dep.direct.unwrap_or(true),
                version,
                resolution,
            });
        }
    }
    for (path, parsed) in &locks {
        let has_manifest = lock_has_manifest.contains(path);
        // One row per name and version of a lockfile (npm nests copies of one version).
        let mut seen = BTreeSet::new();
        for dep in &parsed.deps {
            let key = normalize_name(parsed.ecosystem, &dep.name);
            let version_key = dep.version.clone().unwrap_or_default();
            if claimed.contains(&(path.clone(), key.clone(), version_key)) || !seen.insert((key, dep.version.clone())) {
                continue;
            }
            let direct = !has_manifest && dep.direct == Some(true);
            let (version, resolution) = match &dep.version {
                Some(v) if !dep.non_registry => (Some(v.clone()), "locked"),
                _ => (None, if dep.non_registry { "non-registry" } else { "unpinned" }),
            };
            out.push(Resolved {
                manifest_path: path.clone(),
                lockfile_path: Some(path.clone()),
                ecosystem: parsed.ecosystem,
                name: dep.name.clone(),
                requirement: dep.requirement.clone(),
                scope: dep.scope,
                direct,
                version,
                resolution,
            });
        }
    }
    out.sort_by(|a, b| {
        (&a.manifest_path, a.ecosystem, &a.name, a.scope, &a.version).cmp(&(
            &b.manifest_path,
            b.ecosystem,
            &b.name,
            b.scope,
            &b.version,
        ))
    });
    out.dedup();
    (out, errors)
}

static PEP440_PRE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r"(?i)[0-9][._-]?(a|b|c|rc|alpha|beta|pre|preview|dev)[._-]?[0-9]*").unwrap()
});
static MAVEN_PRE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r"(?i)(alpha|beta|rc|cr|milestone|snapshot|preview|[.-]ea\b|[.-]m[0-9])").unwrap()
});

/// Whether a version is a pre-release by its ecosystem's rule (excluded from "latest").
pub fn is_prerelease(ecosystem: &str, version: &str) -> bool {
    let v = version.trim();
    match ecosystem {
        "PyPI" => PEP440_PRE.is_match(v),
        "Maven" => MAVEN_PRE.is_match(v),
        // RubyGems and CocoaPods: any letter makes a pre-release.
        "RubyGems" | "CocoaPods" => v.chars().any(|c| c.is_ascii_alphabetic()),
        // Versions where `-` separates parts of a release (R's 1.75.0-0), or free-form.
        "CRAN" | "ConanCenter" | "Hackage" | "GitHub Actions" => false,
        "Packagist" => {
            let lower = v.to_ascii_lowercase();
            lower.starts_with("dev-")
                || lower.ends_with("-dev")
                || ["alpha", "beta", "rc", "-pl"].iter().any(|m| lower.contains(m))
        }
        // SemVer: a `-` after the numeric core (Go pseudo-versions included).
        _ => {
            let core = v.trim_start_matches('v').split('+').next().unwrap_or_default();
            core.contains('-')
        }
    }
}

/// Counts per ecosystem (for logs and tests).
pub fn ecosystems(resolved: &[Resolved]) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for r in resolved {
        *m.entry(r.ecosystem).or_insert(0) += 1;
    }
    m
}

#[pgrx::pg_schema]
mod aveloxis {
    use pgrx::prelude::*;

    /// `aveloxis.dependency_file_patterns()`: the globs agents pick dependency files out
    /// of a tree with (`file`: a file name in any directory; `path`: from the root; `*`
    /// never crosses `/`). Served by the extension so a new format needs no agent release.
    #[pg_extern(immutable, parallel_safe)]
    fn dependency_file_patterns() -> TableIterator<'static, (name!(applies_to, String), name!(glob, String))> {
        TableIterator::new(super::patterns().into_iter().map(|(r, p)| (r.to_owned(), p.to_owned())))
    }

    /// `aveloxis.dependency_file_kind(path)`: the ecosystem and kind (manifest or
    /// lockfile) of a dependency file by its path; no row for any other file.
    #[pg_extern(immutable, parallel_safe, strict)]
    fn dependency_file_kind(path: &str) -> TableIterator<'static, (name!(ecosystem, String), name!(kind, String))> {
        TableIterator::new(super::file_kind(path).map(|(e, k)| (e.to_owned(), k.as_str().to_owned())))
    }

    /// `aveloxis.parse_dependency_file(path, content)`: what one file declares or
    /// installs, as the file states it (no joining with other files). An unreadable file
    /// raises an error naming the file and what failed.
    #[pg_extern(immutable, parallel_safe, strict)]
    #[allow(clippy::type_complexity)]
    fn parse_dependency_file(
        path: &str,
        content: &str,
    ) -> TableIterator<
        'static,
        (
            name!(ecosystem, String),
            name!(kind, String),
            name!(name, String),
            name!(requirement, Option<String>),
            name!(version, Option<String>),
            name!(scope, String),
            name!(direct, Option<bool>),
            name!(non_registry, bool),
        ),
    > {
        let parsed = match super::parse_file(path, content) {
            None => return TableIterator::new(Vec::new()),
            Some(Err(e)) => error!("{path}: {e}"),
            Some(Ok(p)) => p,
        };
        let (eco, kind) = (parsed.ecosystem.to_owned(), parsed.kind.as_str().to_owned());
        TableIterator::new(
            parsed
                .deps
                .into_iter()
                .map(move |d| {
                    (
                        eco.clone(),
                        kind.clone(),
                        d.name,
                        d.requirement,
                        d.version,
                        d.scope.to_owned(),
                        d.direct,
                        d.non_registry,
                    )
                })
                .collect::<Vec<_>>(),
        )
    }
}

#[pgrx::pg_schema]
mod aveloxis_ops {
    use pgrx::prelude::*;

    /// `aveloxis_ops.package_key(ecosystem, name)`: the name as the ecosystem compares it
    /// (PyPI's PEP 503 normalisation; NuGet, Packagist and Hackage without case), the key
    /// of the fleet-wide package cache.
    #[pg_extern(immutable, parallel_safe, strict)]
    fn package_key(ecosystem: &str, name: &str) -> String {
        super::normalize_name(ecosystem, name)
    }

    /// `aveloxis_ops.is_prerelease(ecosystem, version)`: a pre-release by the ecosystem's
    /// rule (PEP 440, Maven qualifiers, RubyGems letters, SemVer `-`).
    #[pg_extern(immutable, parallel_safe, strict)]
    fn is_prerelease(ecosystem: &str, version: &str) -> bool {
        super::is_prerelease(ecosystem, version)
    }

    /// `aveloxis_ops.resolve_dependencies(paths, contents)`: a repository's dependency
    /// files joined into its dependencies (see `resolve`); a file that cannot be parsed is
    /// one row with its path and `parse_error`, no name.
    #[pg_extern(immutable, parallel_safe)]
    #[allow(clippy::type_complexity)]
    fn resolve_dependencies(
        paths: Vec<Option<String>>,
        contents: Vec<Option<String>>,
    ) -> TableIterator<
        'static,
        (
            name!(manifest_path, String),
            name!(lockfile_path, Option<String>),
            name!(ecosystem, Option<String>),
            name!(name, Option<String>),
            name!(requirement, Option<String>),
            name!(scope, Option<String>),
            name!(direct, Option<bool>),
            name!(version, Option<String>),
            name!(resolution, Option<String>),
            name!(parse_error, Option<String>),
        ),
    > {
        if paths.len() != contents.len() {
            error!(
                "resolve_dependencies takes one content per path ({} paths, {} contents)",
                paths.len(),
                contents.len()
            );
        }
        let files: Vec<(String, String)> = paths
            .into_iter()
            .zip(contents)
            .filter_map(|(p, c)| Some((p?, c?)))
            .collect();
        let (resolved, errors) = super::resolve(&files);
        let mut rows: Vec<_> = errors
            .into_iter()
            .map(|e| (e.path, None, None, None, None, None, None, None, None, Some(e.error)))
            .collect();
        rows.extend(resolved.into_iter().map(|r| {
            (
                r.manifest_path,
                r.lockfile_path,
                Some(r.ecosystem.to_owned()),
                Some(r.name),
                r.requirement,
                Some(r.scope.to_owned()),
                Some(r.direct),
                r.version,
                Some(r.resolution.to_owned()),
                None,
            )
        }));
        TableIterator::new(rows)
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod prerelease_tests {
    use super::is_prerelease;

    #[test]
    fn prereleases_by_each_ecosystems_rule() {
        for (eco, v, pre) in [
            ("npm", "5.0.0-beta.1", true),
            ("npm", "4.18.2", false),
            ("PyPI", "2.0.0rc1", true),
            ("PyPI", "1.0.dev3", true),
            ("PyPI", "2.31.0", false),
            ("PyPI", "2026.4.22", false),
            ("Maven", "2.0.0-M1", true),
            ("Maven", "1.0-SNAPSHOT", true),
            ("Maven", "33.2.1-jre", false),
            ("RubyGems", "7.2.0.beta1", true),
            ("RubyGems", "7.1.3", false),
            ("Go", "v0.0.0-20240101000000-abcdef123456", true),
            ("Go", "v1.2.3", false),
            ("NuGet", "1.0.0-beta.1+build.5", true),
            ("CRAN", "1.75.0-0", false),
            ("Packagist", "v6.3.0", false),
            ("Packagist", "6.4.x-dev", true),
        ] {
            assert_eq!(is_prerelease(eco, v), pre, "{eco} {v}");
        }
    }
}
