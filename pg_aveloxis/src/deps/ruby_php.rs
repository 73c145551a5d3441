//! RubyGems (Gemfile, Gemfile.lock, *.gemspec), CocoaPods' Podfile (the same Ruby DSL)
//! and Packagist (composer.json, composer.lock).

use std::collections::BTreeSet;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use super::text::json;
use super::Dep;

static QUOTED: LazyLock<Regex> = LazyLock::new(|| Regex::new(r#"["']([^"']*)["']"#).unwrap());
static GEM_LINE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"^\s*(gem|pod)\s*\(?\s*["']([^"']+)["']\s*(.*)$"#).unwrap());
static GROUP_OPEN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\s*group\s*\(?\s*(.*?)\)?\s*do\s*(\|.*\|)?\s*$").unwrap());
static BLOCK_OPEN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(\bdo\s*(\|[^|]*\|)?\s*$)|^\s*(if|unless|case|while|until|begin|def)\b").unwrap());

/// Version strings after a gem's name, up to its first option (`require:`, `git:`).
fn version_args(rest: &str) -> (Vec<String>, bool) {
    let mut versions = Vec::new();
    let mut elsewhere = false;
    for part in rest.split(',') {
        let part = part.trim().trim_end_matches(')');
        if part.is_empty() {
            continue;
        }
        if part.starts_with(['"', '\'']) {
            if let Some(c) = QUOTED.captures(part) {
                versions.push(c[1].trim().to_owned());
            }
            continue;
        }
        let key = part
            .trim_start_matches(':')
            .split([':', ' ', '='])
            .next()
            .unwrap_or_default();
        if matches!(key, "git" | "github" | "path" | "gitlab" | "bitbucket" | "podspec") {
            elsewhere = true;
        }
    }
    (versions, elsewhere)
}

fn group_scope(groups: &str) -> &'static str {
    let g = groups.to_ascii_lowercase();
    if g.contains("test") {
        "test"
    } else if g.contains("development") || g.contains("dev") {
        "development"
    } else {
        "runtime"
    }
}

/// Gemfile (and Podfile): `gem`/`pod` lines with their version constraints; a gem in a
/// `group :test do` block (or with `group:`) takes that scope; `git:`/`path:` sources are
/// not registry versions.
fn ruby_dsl(content: &str, verb: &str) -> Result<Vec<Dep>, String> {
    let mut out = Vec::new();
    // Open blocks: Some(scope) for a group, None for any other `do`/`if`.
    let mut blocks: Vec<Option<&'static str>> = Vec::new();
    for raw in content.lines() {
        let line = raw.split(" #").next().unwrap_or_default();
        let trimmed = line.trim();
        if trimmed.starts_with('#') || trimmed.is_empty() {
            continue;
        }
        if let Some(c) = GROUP_OPEN.captures(line) {
            blocks.push(Some(group_scope(&c[1])));
            continue;
        }
        if trimmed == "end" {
            blocks.pop();
            continue;
        }
        if let Some(c) = GEM_LINE.captures(line).filter(|c| &c[1] == verb) {
            let (versions, elsewhere) = version_args(&c[3]);
            let inline_group = c[3].find("group").map(|i| group_scope(&c[3][i..]));
            let scope = inline_group
                .or_else(|| blocks.iter().rev().find_map(|b| *b))
                .unwrap_or("runtime");
            // A Podfile's `Name/Subspec` is a part of pod `Name`.
            let name = if verb == "pod" {
                c[2].split('/').next().unwrap_or(&c[2])
            } else {
                &c[2]
            };
            let req = (!versions.is_empty()).then(|| versions.join(", "));
            let mut dep = Dep::declared(name, req, scope);
            dep.non_registry = elsewhere;
            out.push(dep);
            continue;
        }
        if BLOCK_OPEN.is_match(line) && !trimmed.ends_with(" end") {
            blocks.push(None);
        }
    }
    Ok(out)
}

pub fn gemfile(content: &str) -> Result<Vec<Dep>, String> {
    ruby_dsl(content, "gem")
}

pub fn podfile(content: &str) -> Result<Vec<Dep>, String> {
    let mut deps = ruby_dsl(content, "pod")?;
    let mut seen = BTreeSet::new();
    deps.retain(|d| seen.insert((d.name.clone(), d.requirement.clone())));
    Ok(deps)
}

static GEMSPEC_DEP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"\.add_(runtime_|development_)?dependency\s*\(?\s*["']([^"']+)["']([^\n]*)"#).unwrap()
});

/// *.gemspec: `add_dependency`, `add_runtime_dependency`, `add_development_dependency`.
pub fn gemspec(content: &str) -> Result<Vec<Dep>, String> {
    Ok(GEMSPEC_DEP
        .captures_iter(content)
        .map(|c| {
            let scope = if c.get(1).map(|m| m.as_str()) == Some("development_") {
                "development"
            } else {
                "runtime"
            };
            let versions: Vec<String> = QUOTED.captures_iter(&c[3]).map(|v| v[1].trim().to_owned()).collect();
            Dep::declared(&c[2], (!versions.is_empty()).then(|| versions.join(", ")), scope)
        })
        .collect())
}

/// Gemfile.lock: the `specs:` of GEM sources (registry), GIT and PATH sources (not),
/// and DEPENDENCIES (what the Gemfile asked for: direct).
pub fn gemfile_lock(content: &str) -> Result<Vec<Dep>, String> {
    let mut section = "";
    let mut direct = BTreeSet::new();
    let mut specs: Vec<(String, String, bool)> = Vec::new();
    for line in content.lines() {
        if !line.starts_with(' ') && !line.trim().is_empty() {
            section = match line.trim() {
                "GEM" => "GEM",
                "GIT" | "PATH" | "PLUGIN SOURCE" => "ELSEWHERE",
                "DEPENDENCIES" => "DEPENDENCIES",
                _ => "OTHER",
            };
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let body = line.trim();
        match section {
            "GEM" | "ELSEWHERE" if indent == 4 => {
                let Some((name, rest)) = body.split_once(" (") else {
                    continue;
                };
                let version = rest.trim_end_matches(')');
                // `nokogiri (1.16.2-x86_64-linux)`: the platform follows the version.
                let version = version.split('-').next().unwrap_or(version);
                specs.push((name.to_owned(), version.to_owned(), section == "ELSEWHERE"));
            }
            "DEPENDENCIES" if indent == 2 => {
                let name = body.split([' ', '!']).next().unwrap_or(body);
                direct.insert(name.to_owned());
            }
            _ => {}
        }
    }
    if specs.is_empty() && direct.is_empty() {
        return Err("no GEM specs or DEPENDENCIES: not a Gemfile.lock".into());
    }
    Ok(specs
        .into_iter()
        .map(|(name, version, elsewhere)| {
            let is_direct = direct.contains(&name);
            let mut dep = Dep::locked(name, version, "runtime", Some(is_direct));
            if elsewhere {
                dep.non_registry = true;
                dep.version = None;
            }
            dep
        })
        .collect())
}

/// Platform requirements (`php`, `ext-json`, `composer-plugin-api`) are not packages.
fn composer_platform(name: &str) -> bool {
    !name.contains('/')
}

pub fn composer_json(content: &str) -> Result<Vec<Dep>, String> {
    let doc = json(content)?;
    let mut out = Vec::new();
    for (section, scope) in [("require", "runtime"), ("require-dev", "development")] {
        for (name, spec) in doc.get(section).and_then(Value::as_object).into_iter().flatten() {
            if composer_platform(name) {
                continue;
            }
            out.push(Dep::declared(name, spec.as_str().map(str::to_owned), scope));
        }
    }
    Ok(out)
}

pub fn composer_lock(content: &str) -> Result<Vec<Dep>, String> {
    let doc = json(content)?;
    if doc.get("packages").is_none() {
        return Err("no packages: not a composer.lock".into());
    }
    let mut out = Vec::new();
    for (section, scope) in [("packages", "runtime"), ("packages-dev", "development")] {
        for p in doc.get(section).and_then(Value::as_array).into_iter().flatten() {
            let (Some(name), Some(version)) = (
                p.get("name").and_then(Value::as_str),
                p.get("version").and_then(Value::as_str),
            ) else {
                continue;
            };
            let mut dep = Dep::locked(name, version, scope, None);
            // A package installed from a path is not a registry release.
            if p.pointer("/dist/type").and_then(Value::as_str) == Some("path") {
                dep.non_registry = true;
                dep.version = None;
            }
            out.push(dep);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn gemfile_groups_versions_and_sources() {
        let deps = gemfile(
            "source 'https://rubygems.org'\ngem 'rails', '~> 7.1.0'\ngem \"pg\", \">= 0.18\", \"< 2.0\"\ngroup :development, :test do\n  gem 'rspec-rails', require: false\n  if ENV['X']\n    gem 'debug'\n  end\nend\ngem 'mylib', git: 'https://x/y.git'\ngem 'rubocop', group: :test\n",
        )
        .unwrap();
        let got: Vec<_> = deps
            .iter()
            .map(|d| (d.name.as_str(), d.requirement.as_deref(), d.scope, d.non_registry))
            .collect();
        assert_eq!(
            got,
            vec![
                ("rails", Some("~> 7.1.0"), "runtime", false),
                ("pg", Some(">= 0.18, < 2.0"), "runtime", false),
                ("rspec-rails", None, "test", false),
                ("debug", None, "test", false),
                ("mylib", None, "runtime", true),
                ("rubocop", None, "test", false),
            ]
        );
    }

    #[test]
    fn gemfile_lock_platforms_and_direct() {
        let deps = gemfile_lock(
            "GEM\n  remote: https://rubygems.org/\n  specs:\n    nokogiri (1.16.2-x86_64-linux)\n      racc (~> 1.4)\n    racc (1.7.3)\n\nPLATFORMS\n  x86_64-linux\n\nDEPENDENCIES\n  nokogiri (>= 1.6)\n\nBUNDLED WITH\n   2.5.6\n",
        )
        .unwrap();
        let got: Vec<_> = deps
            .iter()
            .map(|d| (d.name.as_str(), d.version.as_deref(), d.direct))
            .collect();
        assert_eq!(
            got,
            vec![
                ("nokogiri", Some("1.16.2"), Some(true)),
                ("racc", Some("1.7.3"), Some(false))
            ]
        );
    }
}
