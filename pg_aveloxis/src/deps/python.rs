//! PyPI: requirements files, pyproject.toml (PEP 621, PEP 735, Poetry, PDM, uv),
//! setup.cfg, Pipfile and Pipfile.lock, and the `[[package]]` lockfiles (poetry.lock,
//! uv.lock, pdm.lock).

use toml::{Table, Value};

use super::text::{is_plain_version, json, pep508};
use super::Dep;

fn from_pep508(line: &str, scope: &'static str) -> Option<Dep> {
    let req = pep508(line)?;
    let mut dep = Dep::declared(req.name, req.specifier, scope);
    dep.non_registry = req.url.is_some();
    Some(dep)
}

/// requirements.txt: one PEP 508 requirement a line; `\` continues a line, `#` starts a
/// comment, options (`-r`, `-c`, `--hash`, `-e`, `--index-url`) are not requirements.
pub fn requirements(content: &str) -> Result<Vec<Dep>, String> {
    let mut out = Vec::new();
    let mut logical = String::new();
    for raw in content.lines() {
        let line = match raw
            .find(" #")
            .or_else(|| raw.trim_start().starts_with('#').then_some(0))
        {
            Some(i) => &raw[..i],
            None => raw,
        };
        if let Some(cont) = line.trim_end().strip_suffix('\\') {
            logical.push_str(cont);
            logical.push(' ');
            continue;
        }
        logical.push_str(line);
        let full = std::mem::take(&mut logical);
        // Per-requirement options (`--hash=...`) follow the requirement.
        let requirement = full.split(" --").next().unwrap_or_default().trim();
        if requirement.is_empty()
            || requirement.starts_with('-')
            || requirement.contains("://") && !requirement.contains('@')
        {
            continue;
        }
        if requirement.starts_with(['.', '/']) {
            continue; // a local path
        }
        if let Some(dep) = from_pep508(requirement, "runtime") {
            out.push(dep);
        }
    }
    Ok(out)
}

fn parse_toml(content: &str) -> Result<Table, String> {
    content
        .parse::<Table>()
        .map_err(|e| format!("not TOML: {}", e.message()))
}

fn strings(v: Option<&Value>) -> impl Iterator<Item = &str> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// A Poetry or Pipfile dependency: `"^1.2"`, `"*"`, or a table with `version`, `git`,
/// `path`, `url`, `optional`.
fn table_style(name: &str, value: &Value, scope: &'static str) -> Dep {
    let (spec, non_registry, optional) = match value {
        Value::String(s) => (Some(s.clone()), false, false),
        Value::Table(t) => (
            t.get("version").and_then(Value::as_str).map(str::to_owned),
            t.contains_key("git") || t.contains_key("path") || t.contains_key("url") || t.contains_key("file"),
            t.get("optional").and_then(Value::as_bool).unwrap_or(false),
        ),
        // Several constraints by marker: no single requirement.
        _ => (None, false, false),
    };
    let scope = if optional && scope == "runtime" {
        "optional"
    } else {
        scope
    };
    let mut dep = Dep::declared(name, spec.clone(), scope);
    dep.non_registry = non_registry;
    // Poetry and Pipfile read a bare version as `==`.
    if let Some(v) = spec.filter(|s| is_plain_version(s)) {
        dep.version = Some(v);
    }
    dep
}

pub fn pyproject(content: &str) -> Result<Vec<Dep>, String> {
    let doc = parse_toml(content)?;
    let mut out = Vec::new();
    let project = doc.get("project");
    out.extend(strings(project.and_then(|p| p.get("dependencies"))).filter_map(|l| from_pep508(l, "runtime")));
    for (_, group) in project
        .and_then(|p| p.get("optional-dependencies"))
        .and_then(Value::as_table)
        .into_iter()
        .flatten()
    {
        out.extend(strings(Some(group)).filter_map(|l| from_pep508(l, "optional")));
    }
    // PEP 735 groups (entries may include other groups: `{include-group = "x"}`).
    for (_, group) in doc
        .get("dependency-groups")
        .and_then(Value::as_table)
        .into_iter()
        .flatten()
    {
        out.extend(strings(Some(group)).filter_map(|l| from_pep508(l, "development")));
    }
    out.extend(
        strings(doc.get("build-system").and_then(|b| b.get("requires"))).filter_map(|l| from_pep508(l, "build")),
    );
    let tool = doc.get("tool");
    let poetry = tool.and_then(|t| t.get("poetry"));
    let mut poetry_tables: Vec<(&Value, &'static str)> = Vec::new();
    if let Some(p) = poetry {
        if let Some(d) = p.get("dependencies") {
            poetry_tables.push((d, "runtime"));
        }
        if let Some(d) = p.get("dev-dependencies") {
            poetry_tables.push((d, "development"));
        }
        for (_, g) in p.get("group").and_then(Value::as_table).into_iter().flatten() {
            if let Some(d) = g.get("dependencies") {
                poetry_tables.push((d, "development"));
            }
        }
    }
    for (table, scope) in poetry_tables {
        for (name, value) in table.as_table().into_iter().flatten() {
            if name.eq_ignore_ascii_case("python") {
                continue; // the interpreter, not a package
            }
            out.push(table_style(name, value, scope));
        }
    }
    for key in ["pdm", "uv"] {
        let t = tool.and_then(|t| t.get(key));
        for (_, group) in t
            .and_then(|t| t.get("dev-dependencies"))
            .and_then(Value::as_table)
            .into_iter()
            .flatten()
        {
            out.extend(strings(Some(group)).filter_map(|l| from_pep508(l, "development")));
        }
        if let Some(list) = t.and_then(|t| t.get("dev-dependencies")).filter(|v| v.is_array()) {
            out.extend(strings(Some(list)).filter_map(|l| from_pep508(l, "development")));
        }
    }
    Ok(out)
}

/// setup.cfg: `install_requires` under [options], `extras_require` groups, one
/// requirement per (indented) line.
pub fn setup_cfg(content: &str) -> Result<Vec<Dep>, String> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut key: Option<(String, &'static str)> = None;
    for raw in content.lines() {
        let line = raw.split(" #").next().unwrap_or_default();
        let trimmed = line.trim();
        if trimmed.starts_with('[') && trimmed.ends_with(']') {
            section = trimmed[1..trimmed.len() - 1].trim().to_owned();
            key = None;
            continue;
        }
        if trimmed.is_empty() || trimmed.starts_with(['#', ';']) {
            continue;
        }
        let indented = line.starts_with([' ', '\t']);
        let value = if indented {
            trimmed
        } else {
            let Some((k, v)) = trimmed.split_once(['=', ':']) else {
                key = None;
                continue;
            };
            let k = k.trim();
            key = match (section.as_str(), k) {
                ("options", "install_requires") => Some((k.to_owned(), "runtime")),
                ("options", "setup_requires") => Some((k.to_owned(), "build")),
                ("options", "tests_require") => Some((k.to_owned(), "test")),
                ("options.extras_require", _) => Some((k.to_owned(), "optional")),
                _ => None,
            };
            v.trim()
        };
        if let (Some((_, scope)), false) = (&key, value.is_empty()) {
            if let Some(dep) = from_pep508(value, scope) {
                out.push(dep);
            }
        }
    }
    Ok(out)
}

pub fn pipfile(content: &str) -> Result<Vec<Dep>, String> {
    let doc = parse_toml(content)?;
    let mut out = Vec::new();
    for (section, scope) in [("packages", "runtime"), ("dev-packages", "development")] {
        for (name, value) in doc.get(section).and_then(Value::as_table).into_iter().flatten() {
            out.push(table_style(name, value, scope));
        }
    }
    Ok(out)
}

pub fn pipfile_lock(content: &str) -> Result<Vec<Dep>, String> {
    let doc = json(content)?;
    if doc.get("_meta").is_none() && doc.get("default").is_none() {
        return Err("no _meta or default: not a Pipfile.lock".into());
    }
    let mut out = Vec::new();
    for (section, scope) in [("default", "runtime"), ("develop", "development")] {
        for (name, entry) in doc
            .get(section)
            .and_then(serde_json::Value::as_object)
            .into_iter()
            .flatten()
        {
            let version = entry
                .get("version")
                .and_then(serde_json::Value::as_str)
                .map(|v| v.trim_start_matches('='));
            let mut dep = Dep::locked(name, version.unwrap_or_default(), scope, None);
            if entry.get("git").is_some() || entry.get("path").is_some() || entry.get("file").is_some() {
                dep.non_registry = true;
                dep.version = None;
            }
            out.push(dep);
        }
    }
    Ok(out)
}

/// poetry.lock, uv.lock and pdm.lock: `[[package]]` tables with name and version.
pub fn package_array_lock(content: &str) -> Result<Vec<Dep>, String> {
    let doc = parse_toml(content)?;
    let packages = doc
        .get("package")
        .and_then(Value::as_array)
        .ok_or("no [[package]] tables: not a Python lockfile")?;
    let mut out = Vec::new();
    for p in packages {
        let Some(name) = p.get("name").and_then(Value::as_str) else {
            continue;
        };
        let version = p.get("version").and_then(Value::as_str).unwrap_or_default();
        // Poetry before 1.5 wrote category = "dev".
        let scope = match p.get("category").and_then(Value::as_str) {
            Some("dev") => "development",
            _ => "runtime",
        };
        let mut dep = Dep::locked(name, version, scope, None);
        let source = p.get("source");
        // uv: the project itself is `{ editable = "." }` or `{ virtual = "." }`.
        if source.is_some_and(|s| s.get("editable").is_some() || s.get("virtual").is_some()) {
            continue;
        }
        let elsewhere = source.is_some_and(|s| {
            s.get("git").is_some()
                || s.get("path").is_some()
                || s.get("directory").is_some()
                || s.get("url").is_some() && s.get("registry").is_none()
                || matches!(
                    s.get("type").and_then(Value::as_str),
                    Some("git" | "directory" | "file" | "url")
                )
        });
        if elsewhere {
            dep.non_registry = true;
            dep.version = None;
        }
        out.push(dep);
    }
    Ok(out)
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn requirement_lines_with_options_comments_and_continuations() {
        let deps = requirements(
            "# pinned\n-r base.txt\nrequests==2.31.0 \\\n    --hash=sha256:abc\nflask>=2.0 # web\n-e git+https://x/y#egg=z\n./local\nidna ; python_version<'3.8'\n",
        )
        .unwrap();
        let got: Vec<_> = deps
            .iter()
            .map(|d| (d.name.as_str(), d.requirement.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![("requests", Some("==2.31.0")), ("flask", Some(">=2.0")), ("idna", None)]
        );
    }

    #[test]
    fn poetry_bare_versions_are_exact_and_python_is_not_a_package() {
        let deps = pyproject(
            "[tool.poetry.dependencies]\npython = \"^3.8\"\nrequests = \"2.31.0\"\nclick = {version = \"^8\", optional = true}\nlib = {git = \"https://x\"}\n",
        )
        .unwrap();
        let by = |n: &str| deps.iter().find(|d| d.name == n).unwrap();
        assert_eq!(deps.len(), 3);
        assert_eq!(by("requests").version.as_deref(), Some("2.31.0"));
        assert_eq!(by("click").scope, "optional");
        assert!(by("lib").non_registry);
    }
}
