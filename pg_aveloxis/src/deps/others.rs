//! The smaller ecosystems: Hex (mix.exs, mix.lock), Pub (pubspec.yaml, pubspec.lock),
//! Hackage (*.cabal, cabal.project.freeze, stack.yaml.lock), SwiftPM (Package.swift,
//! Package.resolved), CocoaPods (Podfile.lock), Conan (conanfile.txt, conan.lock), CRAN
//! (DESCRIPTION, renv.lock) and GitHub Actions (workflow `uses:`).

use std::collections::BTreeSet;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;
use yaml_rust2::Yaml;

use super::text::{is_plain_version, json, yaml, yaml_entries, yaml_text};
use super::Dep;

static MIX_DEP: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"\{\s*:([a-z_][a-z0-9_]*)\s*,\s*(?:"([^"]*)"\s*,?)?([^{}]*)\}"#).unwrap());

/// mix.exs: the `{:name, "requirement", options}` tuples of the `deps` function.
pub fn mix_exs(content: &str) -> Result<Vec<Dep>, String> {
    let body = match content.find("defp deps").or_else(|| content.find("def deps")) {
        Some(start) => &content[start..],
        None => return Ok(Vec::new()),
    };
    // The function ends at the first `end` at the indentation of its `defp`.
    let body = body.find("\n  end").map_or(body, |end| &body[..end]);
    let mut out = Vec::new();
    for c in MIX_DEP.captures_iter(body) {
        let options = &c[3];
        let scope = if options.contains("only:") && !options.contains(":prod") {
            if options.contains(":dev") && !options.contains(":test") {
                "development"
            } else {
                "test"
            }
        } else if options.contains("optional: true") {
            "optional"
        } else {
            "runtime"
        };
        let mut dep = Dep::declared(&c[1], c.get(2).map(|m| m.as_str().to_owned()), scope);
        dep.non_registry = ["git:", "github:", "path:", "in_umbrella:"]
            .iter()
            .any(|k| options.contains(k));
        // `hex: :real_name` installs another package name.
        if let Some(real) = MIX_HEX_NAME.captures(options) {
            dep.name = real[1].to_owned();
        }
        out.push(dep);
    }
    Ok(out)
}

static MIX_HEX_NAME: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"hex:\s*:([a-z_][a-z0-9_]*)").unwrap());
static MIX_LOCK: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?m)^\s*"([^"]+)":\s*\{:(hex|git|path),\s*(?::([a-z_0-9]+),\s*)?"([^"]+)""#).unwrap()
});

pub fn mix_lock(content: &str) -> Result<Vec<Dep>, String> {
    Ok(MIX_LOCK
        .captures_iter(content)
        .map(|c| {
            if &c[2] == "hex" {
                Dep::locked(c.get(3).map_or(&c[1], |m| m.as_str()), &c[4], "runtime", None)
            } else {
                Dep {
                    name: c[1].to_owned(),
                    scope: "runtime",
                    non_registry: true,
                    ..Default::default()
                }
            }
        })
        .collect())
}

pub fn pubspec(content: &str) -> Result<Vec<Dep>, String> {
    let doc = yaml(content)?;
    let mut out = Vec::new();
    for (section, scope) in [("dependencies", "runtime"), ("dev_dependencies", "development")] {
        for (name, value) in yaml_entries(&doc[section]) {
            if !value["sdk"].is_badvalue() {
                continue; // flutter, flutter_test: the SDK
            }
            let req = yaml_text(value).or_else(|| yaml_text(&value["version"]));
            let mut dep = Dep::declared(name, req, scope);
            dep.non_registry = !value["path"].is_badvalue() || !value["git"].is_badvalue();
            out.push(dep);
        }
    }
    Ok(out)
}

pub fn pubspec_lock(content: &str) -> Result<Vec<Dep>, String> {
    let doc = yaml(content)?;
    let packages = yaml_entries(&doc["packages"]);
    if packages.is_empty() && doc["sdks"].is_badvalue() {
        return Err("no packages: not a pubspec.lock".into());
    }
    let mut out = Vec::new();
    for (name, entry) in packages {
        let kind = entry["dependency"].as_str().unwrap_or_default();
        let source = entry["source"].as_str().unwrap_or_default();
        if source == "sdk" {
            continue;
        }
        let scope = if kind == "direct dev" { "development" } else { "runtime" };
        let mut dep = Dep::locked(
            name,
            yaml_text(&entry["version"]).unwrap_or_default(),
            scope,
            Some(kind.starts_with("direct")),
        );
        if source != "hosted" {
            dep.non_registry = true;
            dep.version = None;
        }
        out.push(dep);
    }
    Ok(out)
}

/// *.cabal: `build-depends:` of every stanza (test suites and benchmarks: test scope),
/// without the package's own library.
pub fn cabal(content: &str) -> Result<Vec<Dep>, String> {
    let mut own = None;
    let mut scope = "runtime";
    let mut in_depends = false;
    let mut field_indent = 0;
    let mut items = Vec::new();
    for raw in content.lines() {
        let line = raw.split("--").next().unwrap_or_default();
        if line.trim().is_empty() {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim();
        if indent == 0 {
            in_depends = false;
            let lower = trimmed.to_ascii_lowercase();
            if let Some(name) = lower.strip_prefix("name:") {
                own = Some(name.trim().to_owned());
            }
            scope = if lower.starts_with("test-suite") || lower.starts_with("benchmark") {
                "test"
            } else {
                "runtime"
            };
            continue;
        }
        if in_depends && indent > field_indent && !trimmed.contains(':') {
            items.extend(trimmed.split(',').map(|i| (i.trim().to_owned(), scope)));
            continue;
        }
        in_depends = false;
        if let Some((field, value)) = trimmed.split_once(':') {
            if field.trim().eq_ignore_ascii_case("build-depends") {
                in_depends = true;
                field_indent = indent;
                items.extend(value.split(',').map(|i| (i.trim().to_owned(), scope)));
            }
        }
    }
    let mut out = Vec::new();
    for (item, scope) in items {
        let item = item.trim_start_matches(',').trim();
        let Some(name) = item
            .split(|c: char| c.is_whitespace() || "<>=^:{".contains(c))
            .next()
            .filter(|n| !n.is_empty())
        else {
            continue;
        };
        // `mylib:sublib` and the package's own library are not Hackage dependencies.
        if Some(name.to_ascii_lowercase()) == own || item.starts_with(&format!("{name}:")) {
            continue;
        }
        let req = item[name.len()..].trim();
        out.push(Dep::declared(name, (!req.is_empty()).then(|| req.to_owned()), scope));
    }
    Ok(out)
}

static FREEZE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:any\.)?([A-Za-z0-9][A-Za-z0-9-]*)\s*==\s*([0-9][0-9.]*)").unwrap());

/// cabal.project.freeze: `constraints: any.name ==1.2.3, ...` (flag lines skipped).
pub fn cabal_freeze(content: &str) -> Result<Vec<Dep>, String> {
    Ok(FREEZE
        .captures_iter(content)
        .map(|c| Dep::locked(&c[1], &c[2], "runtime", None))
        .collect())
}

/// `name-1.2.3@sha256:…,size` (Stack's Hackage locator) as name and version.
fn hackage_locator(s: &str) -> Option<(String, String)> {
    let id = s.split('@').next()?;
    let dash = id.rfind('-')?;
    let (name, version) = (&id[..dash], &id[dash + 1..]);
    is_plain_version(version).then(|| (name.to_owned(), version.to_owned()))
}

pub fn stack_lock(content: &str) -> Result<Vec<Dep>, String> {
    let doc = yaml(content)?;
    let mut out = Vec::new();
    for p in doc["packages"].as_vec().into_iter().flatten() {
        if let Some((name, version)) = p["completed"]["hackage"].as_str().and_then(hackage_locator) {
            out.push(Dep::locked(name, version, "runtime", None));
        }
    }
    Ok(out)
}

/// A Swift package's identity: its URL without scheme, user and `.git`
/// (`github.com/apple/swift-nio`), as OSV's SwiftURL ecosystem names packages.
pub fn swift_identity(url: &str) -> String {
    let s = url.trim();
    let s = s.split("://").nth(1).unwrap_or(s);
    let s = s.rsplit('@').next().unwrap_or(s).replacen(':', "/", 1);
    s.trim_end_matches('/').trim_end_matches(".git").to_owned()
}

static SWIFT_PACKAGE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"\.package\s*\(\s*(?:name\s*:\s*"[^"]*"\s*,\s*)?url\s*:\s*"([^"]+)"\s*,\s*([^\n]*?)\)\s*,?\s*$"#)
        .unwrap()
});
static QUOTED: LazyLock<Regex> = LazyLock::new(|| Regex::new(r#""([^"]+)""#).unwrap());

/// Package.swift: `.package(url:, from: / exact: / .upToNextMajor(from:) / "a"..<"b"
/// / branch: / revision:)`. A local `.package(path:)` is the project's own.
pub fn package_swift(content: &str) -> Result<Vec<Dep>, String> {
    let mut out = Vec::new();
    for line in content.lines() {
        let Some(c) = SWIFT_PACKAGE.captures(line.trim()) else {
            continue;
        };
        let req = c[2].trim().trim_end_matches(')').trim().to_owned();
        let mut dep = Dep::declared(swift_identity(&c[1]), Some(req.clone()), "runtime");
        if req.starts_with("exact") || req.starts_with(".exact") {
            dep.version = QUOTED.captures(&req).map(|v| v[1].to_owned());
        }
        dep.non_registry = req.starts_with("branch")
            || req.starts_with("revision")
            || req.starts_with(".branch")
            || req.starts_with(".revision");
        out.push(dep);
    }
    Ok(out)
}

/// Package.resolved v1 (`object.pins`, `repositoryURL`) and v2/v3 (`pins`, `location`).
pub fn package_resolved(content: &str) -> Result<Vec<Dep>, String> {
    let doc = json(content)?;
    let pins = doc
        .pointer("/object/pins")
        .or_else(|| doc.get("pins"))
        .and_then(Value::as_array)
        .ok_or("no pins: not a Package.resolved")?;
    let mut out = Vec::new();
    for pin in pins {
        let Some(url) = pin
            .get("location")
            .or_else(|| pin.get("repositoryURL"))
            .and_then(Value::as_str)
        else {
            continue;
        };
        let version = pin.pointer("/state/version").and_then(Value::as_str);
        let mut dep = Dep::locked(swift_identity(url), version.unwrap_or_default(), "runtime", None);
        // A branch or revision pin: no released version.
        dep.non_registry = version.is_none();
        out.push(dep);
    }
    Ok(out)
}

/// `Name/Subspec (1.2.3)` as the pod and its version (or requirement).
fn pod_entry(s: &str) -> (String, Option<String>) {
    let (name, rest) = s.split_once(" (").unwrap_or((s, ""));
    let name = name.split('/').next().unwrap_or(name).trim().to_owned();
    let inner = rest.trim_end_matches(')').trim();
    (name, (!inner.is_empty()).then(|| inner.to_owned()))
}

pub fn podfile_lock(content: &str) -> Result<Vec<Dep>, String> {
    let doc = yaml(content)?;
    let pods = doc["PODS"].as_vec().ok_or("no PODS: not a Podfile.lock")?;
    let direct: BTreeSet<String> = doc["DEPENDENCIES"]
        .as_vec()
        .into_iter()
        .flatten()
        .filter_map(Yaml::as_str)
        .map(|s| pod_entry(s).0)
        .collect();
    let external: BTreeSet<String> = yaml_entries(&doc["EXTERNAL SOURCES"])
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for pod in pods {
        let entry = pod
            .as_str()
            .map(str::to_owned)
            .or_else(|| yaml_entries(pod).into_iter().next().map(|(k, _)| k));
        let Some(entry) = entry else { continue };
        let (name, version) = pod_entry(&entry);
        if !seen.insert(name.clone()) {
            continue;
        }
        let mut dep = Dep::locked(
            name.clone(),
            version.unwrap_or_default(),
            "runtime",
            Some(direct.contains(&name)),
        );
        if external.contains(&name) {
            dep.non_registry = true;
            dep.version = None;
        }
        out.push(dep);
    }
    Ok(out)
}

/// `zlib/1.2.13`, `fmt/10.0.0@user/channel#rev`, `boost/[>1.70 <1.80]` as name and version
/// or range.
fn conan_reference(s: &str) -> Option<Dep> {
    let s = s.split('#').next()?.split('@').next()?.trim();
    let (name, version) = s.split_once('/')?;
    let mut dep = Dep::declared(name, Some(version.to_owned()), "runtime");
    // Conan versions are free-form (`cci.20230929`); a range is bracketed.
    if !version.is_empty() && !version.starts_with('[') {
        dep.version = Some(version.to_owned());
    }
    Some(dep)
}

pub fn conanfile_txt(content: &str) -> Result<Vec<Dep>, String> {
    let mut section = "";
    let mut out = Vec::new();
    for line in content.lines().map(|l| l.split('#').next().unwrap_or_default().trim()) {
        if line.starts_with('[') {
            section = line;
            continue;
        }
        let scope = match section {
            "[requires]" => "runtime",
            "[tool_requires]" | "[build_requires]" => "build",
            "[test_requires]" => "test",
            _ => continue,
        };
        if let Some(mut dep) = conan_reference(line) {
            dep.scope = scope;
            out.push(dep);
        }
    }
    Ok(out)
}

pub fn conan_lock(content: &str) -> Result<Vec<Dep>, String> {
    let doc = json(content)?;
    if doc.get("requires").is_none() && doc.get("build_requires").is_none() {
        return Err("no requires: not a Conan 2 lockfile".into());
    }
    let mut out = Vec::new();
    for (key, scope) in [
        ("requires", "runtime"),
        ("build_requires", "build"),
        ("python_requires", "build"),
    ] {
        for r in doc
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if let Some(d) = conan_reference(r) {
                let mut dep = Dep::locked(d.name, d.version.unwrap_or_default(), scope, None);
                dep.requirement = None;
                out.push(dep);
            }
        }
    }
    Ok(out)
}

/// DESCRIPTION (R packages): Depends, Imports and LinkingTo (runtime), Suggests
/// (optional); `R` itself is the interpreter.
pub fn r_description(content: &str) -> Result<Vec<Dep>, String> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in content.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = fields.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            fields.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let mut out = Vec::new();
    for (field, value) in fields {
        let scope = match field.as_str() {
            "Depends" | "Imports" | "LinkingTo" => "runtime",
            "Suggests" | "Enhances" => "optional",
            _ => continue,
        };
        for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (name, req) = match item.split_once('(') {
                Some((n, r)) => (n.trim(), Some(r.trim_end_matches(')').trim().to_owned())),
                None => (item, None),
            };
            if name == "R" {
                continue;
            }
            out.push(Dep::declared(name, req, scope));
        }
    }
    Ok(out)
}

pub fn renv_lock(content: &str) -> Result<Vec<Dep>, String> {
    let doc = json(content)?;
    let packages = doc
        .get("Packages")
        .and_then(Value::as_object)
        .ok_or("no Packages: not a renv.lock")?;
    Ok(packages
        .iter()
        .map(|(name, p)| {
            let version = p.get("Version").and_then(Value::as_str).unwrap_or_default();
            let mut dep = Dep::locked(name, version, "runtime", None);
            let source = p.get("Source").and_then(Value::as_str);
            let repository = p.get("Repository").and_then(Value::as_str).unwrap_or("CRAN");
            if source != Some("Repository")
                || !(repository == "CRAN" || repository == "RSPM" || repository.contains("cran"))
            {
                dep.non_registry = true;
                dep.version = None;
            }
            dep
        })
        .collect())
}

/// A GitHub Actions workflow: every `uses: owner/repo[/path]@ref` of its jobs and steps
/// (local `./` actions and `docker://` images are not actions of the registry).
pub fn actions_workflow(content: &str) -> Result<Vec<Dep>, String> {
    let doc = yaml(content)?;
    let mut out = Vec::new();
    let mut add = |uses: &str| {
        let uses = uses.trim();
        if uses.starts_with("./") || uses.starts_with("docker://") {
            return;
        }
        if let Some((name, reference)) = uses.split_once('@') {
            let mut dep = Dep::declared(name, Some(reference.to_owned()), "build");
            dep.version = Some(reference.to_owned());
            out.push(dep);
        }
    };
    for (_, job) in yaml_entries(&doc["jobs"]) {
        if let Some(u) = job["uses"].as_str() {
            add(u);
        }
        for step in job["steps"].as_vec().into_iter().flatten() {
            if let Some(u) = step["uses"].as_str() {
                add(u);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn swift_identities_drop_scheme_and_git_suffix() {
        assert_eq!(
            swift_identity("https://github.com/apple/swift-nio.git"),
            "github.com/apple/swift-nio"
        );
        assert_eq!(
            swift_identity("git@github.com:apple/swift-log.git"),
            "github.com/apple/swift-log"
        );
    }

    #[test]
    fn cabal_stanzas_and_own_library() {
        let deps = cabal(
            "name: mylib\nversion: 1.0\n\nlibrary\n  build-depends:\n      base >=4.7 && <5\n    , text ^>=2.0\n\ntest-suite spec\n  build-depends: base, mylib, hspec ==2.11.*\n",
        )
        .unwrap();
        let got: Vec<_> = deps
            .iter()
            .map(|d| (d.name.as_str(), d.requirement.as_deref(), d.scope))
            .collect();
        assert_eq!(
            got,
            vec![
                ("base", Some(">=4.7 && <5"), "runtime"),
                ("text", Some("^>=2.0"), "runtime"),
                ("base", None, "test"),
                ("hspec", Some("==2.11.*"), "test"),
            ]
        );
    }
}
