//! Cargo (Cargo.toml, Cargo.lock) and Go modules (go.mod).

use toml::{Table, Value};

use super::Dep;

fn parse_toml(content: &str) -> Result<Table, String> {
    content
        .parse::<Table>()
        .map_err(|e| format!("not TOML: {}", e.message()))
}

const CARGO_SECTIONS: [(&str, &str); 3] = [
    ("dependencies", "runtime"),
    ("dev-dependencies", "development"),
    ("build-dependencies", "build"),
];

fn cargo_table(table: &Table, out: &mut Vec<Dep>) {
    for (section, scope) in CARGO_SECTIONS {
        // `dev_dependencies` is an old spelling Cargo still reads.
        let deps = table.get(section).or_else(|| table.get(&section.replace('-', "_")));
        for (key, value) in deps.and_then(Value::as_table).into_iter().flatten() {
            let (name, req, elsewhere, optional) = match value {
                Value::String(s) => (key.as_str(), Some(s.clone()), false, false),
                Value::Table(t) => (
                    // `foo = { package = "real-name" }` renames a dependency.
                    t.get("package").and_then(Value::as_str).unwrap_or(key),
                    t.get("version").and_then(Value::as_str).map(str::to_owned),
                    (t.contains_key("path") && !t.contains_key("version")) || t.contains_key("git"),
                    t.get("optional").and_then(Value::as_bool).unwrap_or(false),
                ),
                _ => continue,
            };
            let scope = if optional && scope == "runtime" {
                "optional"
            } else {
                scope
            };
            let mut dep = Dep::declared(name, req, scope);
            dep.non_registry = elsewhere;
            out.push(dep);
        }
    }
}

/// Cargo.toml: `[dependencies]`, dev and build dependencies, per-target tables, renamed
/// packages; `{ workspace = true }` has its requirement in the root (the lockfile gives
/// the version), which declares them in `[workspace.dependencies]`.
pub fn cargo_toml(content: &str) -> Result<Vec<Dep>, String> {
    let doc = parse_toml(content)?;
    let mut out = Vec::new();
    cargo_table(&doc, &mut out);
    // A workspace root's `[workspace.dependencies]`: the requirements its members inherit.
    if let Some(workspace) = doc.get("workspace").and_then(Value::as_table) {
        cargo_table(workspace, &mut out);
    }
    for (_, target) in doc.get("target").and_then(Value::as_table).into_iter().flatten() {
        if let Some(t) = target.as_table() {
            cargo_table(t, &mut out);
        }
    }
    Ok(out)
}

/// Cargo.lock (v1–v4): registry packages; the workspace's own crates have no `source`.
pub fn cargo_lock(content: &str) -> Result<Vec<Dep>, String> {
    let doc = parse_toml(content)?;
    let packages = doc
        .get("package")
        .and_then(Value::as_array)
        .ok_or("no [[package]] tables: not a Cargo.lock")?;
    let mut out = Vec::new();
    for p in packages {
        let (Some(name), Some(version)) = (
            p.get("name").and_then(Value::as_str),
            p.get("version").and_then(Value::as_str),
        ) else {
            continue;
        };
        let Some(source) = p.get("source").and_then(Value::as_str) else {
            continue; // a crate of this workspace
        };
        let mut dep = Dep::locked(name, version, "runtime", None);
        if !source.starts_with("registry+") && !source.starts_with("sparse+") {
            dep.non_registry = true;
            dep.version = None;
        }
        out.push(dep);
    }
    Ok(out)
}

/// go.mod: `require` lines and blocks (`// indirect` marks what only other modules
/// need), with `replace` applied (a local path replacement is not a registry module).
/// Go lists the selected version of every module it builds with (go ≥ 1.17), so the
/// versions are exact.
pub fn go_mod(content: &str) -> Result<Vec<Dep>, String> {
    let mut requires: Vec<(String, String, bool)> = Vec::new();
    let mut replaces: Vec<(String, Option<String>, String, Option<String>)> = Vec::new();
    let mut block: Option<String> = None;
    let mut saw_module = false;
    for raw in content.lines() {
        let (code, comment) = match raw.find("//") {
            Some(i) => (&raw[..i], raw[i + 2..].trim()),
            None => (raw, ""),
        };
        let line = code.trim();
        if line.is_empty() {
            continue;
        }
        let (verb, rest) = match &block {
            Some(v) if line == ")" => {
                let _ = v;
                block = None;
                continue;
            }
            Some(v) => (v.clone(), line.to_owned()),
            None => {
                let (verb, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
                let rest = rest.trim();
                if rest == "(" {
                    block = Some(verb.to_owned());
                    continue;
                }
                (verb.to_owned(), rest.to_owned())
            }
        };
        let fields: Vec<String> = rest
            .split_whitespace()
            .map(|f| f.trim_matches('"').to_owned())
            .collect();
        match verb.as_str() {
            "module" => saw_module = true,
            "require" if fields.len() >= 2 => {
                let indirect = comment.split([';', ' ']).any(|w| w == "indirect");
                requires.push((fields[0].clone(), fields[1].clone(), indirect));
            }
            "replace" => {
                let Some(arrow) = fields.iter().position(|f| f == "=>") else {
                    continue;
                };
                let old = fields[0].clone();
                let old_version = (arrow == 2).then(|| fields[1].clone());
                let Some(new) = fields.get(arrow + 1).cloned() else {
                    continue;
                };
                let new_version = fields.get(arrow + 2).cloned();
                replaces.push((old, old_version, new, new_version));
            }
            _ => {}
        }
    }
    if !saw_module && requires.is_empty() {
        return Err("no module or require directive: not a go.mod".into());
    }
    let mut out = Vec::new();
    for (path, version, indirect) in requires {
        let replacement = replaces
            .iter()
            .find(|(old, old_v, _, _)| *old == path && old_v.as_ref().is_none_or(|v| *v == version));
        let mut dep = Dep {
            name: path.clone(),
            requirement: Some(version.clone()),
            version: Some(version.clone()),
            scope: "runtime",
            direct: Some(!indirect),
            non_registry: false,
        };
        if let Some((_, _, new, new_version)) = replacement {
            match new_version {
                Some(v) => {
                    dep.name = new.clone();
                    dep.version = Some(v.clone());
                }
                None => {
                    // `=> ../local`: a directory, not a module version.
                    dep.non_registry = true;
                    dep.version = None;
                }
            }
        }
        out.push(dep);
    }
    Ok(out)
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn go_mod_single_lines_blocks_indirect_and_replace() {
        let deps = go_mod(
            "module example.com/m\n\ngo 1.21\n\nrequire golang.org/x/text v0.14.0\nrequire (\n\tgithub.com/a/b v1.2.3 // indirect\n\tgithub.com/c/d v0.1.0\n\texample.com/local v1.0.0\n)\nreplace github.com/c/d => github.com/e/d v0.2.0\nreplace example.com/local => ../local\n",
        )
        .unwrap();
        let got: Vec<_> = deps
            .iter()
            .map(|d| (d.name.as_str(), d.version.as_deref(), d.direct, d.non_registry))
            .collect();
        assert_eq!(
            got,
            vec![
                ("golang.org/x/text", Some("v0.14.0"), Some(true), false),
                ("github.com/a/b", Some("v1.2.3"), Some(false), false),
                ("github.com/e/d", Some("v0.2.0"), Some(true), false),
                ("example.com/local", None, Some(true), true),
            ]
        );
    }

    #[test]
    fn cargo_renames_targets_and_workspace_inheritance() {
        let deps = cargo_toml(
            "[dependencies]\nserde = \"1\"\nrand_core = { package = \"rand_core\", version = \"0.6\", optional = true }\nlocal = { path = \"../local\" }\ntokio = { workspace = true }\n[target.'cfg(unix)'.dependencies]\nlibc = \"0.2\"\n[dev-dependencies]\nproptest = \"1\"\n",
        )
        .unwrap();
        let got: Vec<_> = deps
            .iter()
            .map(|d| (d.name.as_str(), d.requirement.as_deref(), d.scope, d.non_registry))
            .collect();
        assert!(got.contains(&("rand_core", Some("0.6"), "optional", false)));
        assert!(got.contains(&("local", None, "runtime", true)));
        assert!(got.contains(&("tokio", None, "runtime", false)));
        assert!(got.contains(&("libc", Some("0.2"), "runtime", false)));
        assert!(got.contains(&("proptest", Some("1"), "development", false)));
    }
}
