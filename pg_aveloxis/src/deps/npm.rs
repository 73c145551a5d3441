//! npm: package.json, package-lock.json / npm-shrinkwrap.json (v1–v3), yarn.lock (v1 and
//! berry), pnpm-lock.yaml (v5–v9) and bun.lock.

use std::collections::BTreeSet;

use serde_json::Value;

use super::text::{json, jsonc, jstr, yaml, yaml_entries, yaml_text};
use super::Dep;

const SECTIONS: [(&str, &str); 4] = [
    ("dependencies", "runtime"),
    ("devDependencies", "development"),
    ("optionalDependencies", "optional"),
    ("peerDependencies", "peer"),
];

/// A requirement naming a place rather than a registry version.
fn non_registry_spec(spec: &str) -> bool {
    let s = spec.trim();
    [
        "file:",
        "link:",
        "git:",
        "git+",
        "github:",
        "gitlab:",
        "bitbucket:",
        "http:",
        "https:",
        "workspace:",
        "portal:",
        "patch:",
        "exec:",
    ]
    .iter()
    .any(|p| s.starts_with(p))
        || (s.contains('/') && !s.starts_with('@') && !s.contains(' ') && !s.starts_with(['<', '>', '=', '^', '~']))
}

/// `npm:real-name@^1.0` (an alias): the registry name and the requirement.
fn alias(spec: &str) -> Option<(&str, &str)> {
    let target = spec.strip_prefix("npm:")?;
    let at = target[1..].find('@').map(|i| i + 1)?;
    Some((&target[..at], &target[at + 1..]))
}

pub fn package_json(content: &str) -> Result<Vec<Dep>, String> {
    let doc = json(content)?;
    let mut out = Vec::new();
    for (section, scope) in SECTIONS {
        let Some(map) = doc.get(section).and_then(Value::as_object) else {
            continue;
        };
        for (name, spec) in map {
            let spec = spec.as_str().unwrap_or_default();
            let (name, spec) = alias(spec).unwrap_or((name, spec));
            let mut dep = Dep::declared(name, Some(spec.to_owned()), scope);
            dep.non_registry = non_registry_spec(spec);
            out.push(dep);
        }
    }
    Ok(out)
}

/// The package a `node_modules/...` path installs (the last segment, scoped names whole).
fn name_from_path(path: &str) -> Option<&str> {
    let i = path.rfind("node_modules/")?;
    Some(&path[i + "node_modules/".len()..])
}

fn scope_of(entry: &Value) -> &'static str {
    let flag = |k: &str| entry.get(k).and_then(Value::as_bool).unwrap_or(false);
    if flag("dev") || flag("devOptional") {
        "development"
    } else if flag("optional") {
        "optional"
    } else if flag("peer") {
        "peer"
    } else {
        "runtime"
    }
}

fn lock_entry(name: &str, version: &str, scope: &'static str, direct: Option<bool>) -> Dep {
    // An aliased install records `npm:real@1.2.3` as its version in v1.
    let (name, version) = alias(version).unwrap_or((name, version));
    let mut dep = Dep::locked(name, version, scope, direct);
    if non_registry_spec(version) {
        dep.non_registry = true;
        dep.version = None;
    }
    dep
}

pub fn package_lock(content: &str) -> Result<Vec<Dep>, String> {
    let doc = json(content)?;
    let mut out = Vec::new();
    if let Some(packages) = doc.get("packages").and_then(Value::as_object) {
        // v2 and v3: flat paths; the root entry "" lists what the project asked for.
        let root = packages.get("");
        let asked: BTreeSet<&str> = SECTIONS
            .iter()
            .filter_map(|(s, _)| root.and_then(|r| r.get(*s)).and_then(Value::as_object))
            .flat_map(|m| m.keys().map(String::as_str))
            .collect();
        for (path, entry) in packages {
            let Some(installed) = name_from_path(path) else {
                continue; // the root and workspace folders: the project's own packages
            };
            if entry.get("link").and_then(Value::as_bool) == Some(true) {
                continue; // a symlink to a workspace package
            }
            let name = jstr(entry, "name").unwrap_or(installed);
            let Some(version) = jstr(entry, "version") else {
                continue;
            };
            let top_level = path.matches("node_modules/").count() == 1 && path.starts_with("node_modules/");
            let direct = Some(top_level && asked.contains(installed));
            out.push(lock_entry(name, version, scope_of(entry), direct));
        }
        return Ok(out);
    }
    // v1: nested "dependencies" maps.
    fn walk(map: &serde_json::Map<String, Value>, out: &mut Vec<Dep>) {
        for (name, entry) in map {
            if let Some(version) = jstr(entry, "version") {
                out.push(lock_entry(name, version, scope_of(entry), None));
            }
            if let Some(nested) = entry.get("dependencies").and_then(Value::as_object) {
                walk(nested, out);
            }
        }
    }
    match doc.get("dependencies").and_then(Value::as_object) {
        Some(map) => walk(map, &mut out),
        None if doc.get("lockfileVersion").is_none() => {
            return Err("no lockfileVersion, packages or dependencies: not an npm lockfile".into())
        }
        None => {}
    }
    Ok(out)
}

pub fn yarn_lock(content: &str) -> Result<Vec<Dep>, String> {
    let lock = yarn_lock_parser::parse_str(content).map_err(|e| format!("not a yarn lockfile: {e}"))?;
    let mut out = Vec::new();
    for entry in &lock.entries {
        let local = entry.resolved.contains("@workspace:")
            || entry.resolved.contains("@link:")
            || entry.resolved.contains("@portal:")
            || entry
                .descriptors
                .iter()
                .any(|(_, r)| r.starts_with("workspace:") || r.starts_with("link:"));
        if local {
            continue; // the project's own workspace packages
        }
        let mut dep = Dep::locked(entry.name, entry.version, "runtime", None);
        let from_elsewhere = entry.resolved.contains("@git")
            || entry.resolved.contains("@file:")
            || entry.resolved.contains("@https:")
            || entry
                .descriptors
                .iter()
                .any(|(_, r)| non_registry_spec(r) && !r.starts_with("npm:") && !r.starts_with("patch:"));
        if from_elsewhere {
            dep.non_registry = true;
            dep.version = None;
        }
        out.push(dep);
    }
    Ok(out)
}

/// `/@scope/name@1.2.3(peer@1)` (v6), `@scope/name@1.2.3` (v9), `/@scope/name/1.2.3_peer` (v5).
fn pnpm_key(key: &str, v5: bool) -> Option<(String, String)> {
    let key = key.strip_prefix('/').unwrap_or(key);
    let key = key.split('(').next()?;
    let (name, version) = if v5 {
        let i = key.rfind('/')?;
        (&key[..i], key[i + 1..].split('_').next()?)
    } else {
        let i = key[1..].rfind('@')? + 1;
        (&key[..i], &key[i + 1..])
    };
    (!name.is_empty() && !version.is_empty()).then(|| (name.to_owned(), version.to_owned()))
}

pub fn pnpm_lock(content: &str) -> Result<Vec<Dep>, String> {
    let doc = yaml(content)?;
    let version = yaml_text(&doc["lockfileVersion"]).ok_or("no lockfileVersion: not a pnpm lockfile")?;
    let v5 = version.starts_with('5') || version.starts_with('4') || version.starts_with('3');
    let mut out = Vec::new();
    // What the project (or each workspace importer) asked for, at the versions installed.
    let mut importers: Vec<&yaml_rust2::Yaml> = yaml_entries(&doc["importers"]).into_iter().map(|(_, v)| v).collect();
    if importers.is_empty() {
        importers.push(&doc);
    }
    for importer in importers {
        for (section, scope) in SECTIONS {
            for (name, value) in yaml_entries(&importer[section]) {
                // v6+: {specifier, version}; v5: the version, its specifier in `specifiers`.
                let installed = yaml_text(&value["version"]).or_else(|| yaml_text(value));
                let Some(installed) = installed else { continue };
                let installed = installed
                    .split('(')
                    .next()
                    .unwrap_or_default()
                    .split('_')
                    .next()
                    .unwrap_or_default();
                let spec = yaml_text(&value["specifier"]).or_else(|| yaml_text(&importer["specifiers"][name.as_str()]));
                let mut dep = lock_entry(&name, installed, scope, Some(true));
                dep.requirement = spec;
                out.push(dep);
            }
        }
    }
    for (key, entry) in yaml_entries(&doc["packages"]) {
        let Some((name, version)) = pnpm_key(&key, v5) else {
            continue;
        };
        let scope = if entry["dev"].as_bool() == Some(true) {
            "development"
        } else if entry["optional"].as_bool() == Some(true) {
            "optional"
        } else {
            "runtime"
        };
        let mut dep = Dep::locked(name, version, scope, Some(false));
        if entry["resolution"]["tarball"].as_str().is_some() || entry["resolution"]["repo"].as_str().is_some() {
            dep.non_registry = true;
            dep.version = None;
        }
        out.push(dep);
    }
    Ok(out)
}

pub fn bun_lock(content: &str) -> Result<Vec<Dep>, String> {
    let doc = jsonc(content)?;
    let mut out = Vec::new();
    if let Some(workspaces) = doc.get("workspaces").and_then(Value::as_object) {
        for ws in workspaces.values() {
            for (section, scope) in SECTIONS {
                for (name, spec) in ws.get(section).and_then(Value::as_object).into_iter().flatten() {
                    let mut dep = Dep::declared(name, spec.as_str().map(str::to_owned), scope);
                    dep.direct = Some(true);
                    dep.non_registry = non_registry_spec(spec.as_str().unwrap_or_default());
                    out.push(dep);
                }
            }
        }
    }
    let packages = doc
        .get("packages")
        .and_then(Value::as_object)
        .ok_or("no packages: not a bun lockfile")?;
    let declared: Vec<Dep> = std::mem::take(&mut out);
    for entry in packages.values() {
        // ["name@version", registry, {dependencies}, integrity]
        let Some(id) = entry.get(0).and_then(Value::as_str) else {
            continue;
        };
        let Some(at) = id[1..].rfind('@').map(|i| i + 1) else {
            continue;
        };
        let (name, version) = (&id[..at], &id[at + 1..]);
        if version.starts_with("workspace:") {
            continue;
        }
        let is_direct = declared.iter().any(|d| d.name == name);
        let scope = declared.iter().find(|d| d.name == name).map_or("runtime", |d| d.scope);
        out.push(lock_entry(name, version, scope, Some(is_direct)));
    }
    Ok(out)
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn pnpm_keys_of_every_lockfile_version() {
        let k = |key, v5| pnpm_key(key, v5).unwrap();
        assert_eq!(
            k("/@babel/core/7.24.0_supports-color@8.1.1", true),
            ("@babel/core".into(), "7.24.0".into())
        );
        assert_eq!(
            k("/@babel/core@7.24.0(supports-color@8.1.1)", false),
            ("@babel/core".into(), "7.24.0".into())
        );
        assert_eq!(k("lodash@4.17.21", false), ("lodash".into(), "4.17.21".into()));
    }

    #[test]
    fn aliases_and_places_are_told_apart_from_registry_ranges() {
        assert_eq!(alias("npm:string-width@^4.2.0"), Some(("string-width", "^4.2.0")));
        assert_eq!(alias("npm:@scope/x@1.0.0"), Some(("@scope/x", "1.0.0")));
        assert!(non_registry_spec("github:user/repo"));
        assert!(non_registry_spec("user/repo#v1"));
        assert!(non_registry_spec("file:../local"));
        assert!(!non_registry_spec("^1.2.3"));
        assert!(!non_registry_spec(">=1.0.0 <2.0.0"));
    }
}
