//! Maven and Gradle: pom.xml, build.gradle(.kts), version catalogs
//! (gradle/libs.versions.toml) and gradle.lockfile. Names are `group:artifact`.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;
use toml::{Table, Value};

use super::text::{child_text, xml};
use super::Dep;

/// `${name}` replaced from `props` (a property may name another); None if one is unknown.
fn expand(raw: &str, props: &HashMap<String, String>) -> Option<String> {
    let mut value = raw.to_owned();
    for _ in 0..5 {
        let Some(start) = value.find("${") else {
            return Some(value);
        };
        let end = value[start..].find('}')? + start;
        let replacement = props.get(value[start + 2..end].trim())?;
        value.replace_range(start..=end, replacement);
    }
    (!value.contains("${")).then_some(value)
}

fn maven_scope(scope: Option<&str>, optional: bool) -> &'static str {
    match scope {
        Some("test") => "test",
        _ if optional => "optional",
        Some("provided") => "build",
        _ => "runtime",
    }
}

fn child<'a, 'input>(node: roxmltree::Node<'a, 'input>, name: &str) -> Option<roxmltree::Node<'a, 'input>> {
    node.children().find(|c| c.is_element() && c.tag_name().name() == name)
}

/// pom.xml: the project's `<dependencies>` and the versions its `<dependencyManagement>`
/// declares for its modules (not plugins), versions resolved from the file's own
/// properties; a version the file does not define stays a requirement without a version.
pub fn pom(content: &str) -> Result<Vec<Dep>, String> {
    let doc = xml(content)?;
    let project = doc.root_element();
    if project.tag_name().name() != "project" {
        return Err(format!("root element <{}>: not a Maven POM", project.tag_name().name()));
    }
    let mut props: HashMap<String, String> = HashMap::new();
    if let Some(p) = child(project, "properties") {
        for c in p.children().filter(|c| c.is_element()) {
            props.insert(
                c.tag_name().name().to_owned(),
                c.text().unwrap_or_default().trim().to_owned(),
            );
        }
    }
    let parent = child(project, "parent");
    for (key, node, field) in [
        ("project.version", Some(project), "version"),
        ("project.groupId", Some(project), "groupId"),
        ("project.parent.version", parent, "version"),
        ("project.parent.groupId", parent, "groupId"),
    ] {
        if let Some(v) = node.and_then(|n| child_text(n, field)) {
            props.insert(key.to_owned(), v.to_owned());
        }
    }
    if !props.contains_key("project.version") {
        if let Some(v) = props.get("project.parent.version").cloned() {
            props.insert("project.version".into(), v);
        }
    }
    if !props.contains_key("project.groupId") {
        if let Some(v) = props.get("project.parent.groupId").cloned() {
            props.insert("project.groupId".into(), v);
        }
    }
    let mut managed: HashMap<String, String> = HashMap::new();
    if let Some(deps) = child(project, "dependencyManagement").and_then(|m| child(m, "dependencies")) {
        for d in deps
            .children()
            .filter(|c| c.is_element() && c.tag_name().name() == "dependency")
        {
            if let (Some(g), Some(a), Some(v)) = (
                child_text(d, "groupId"),
                child_text(d, "artifactId"),
                child_text(d, "version"),
            ) {
                let name = format!(
                    "{}:{}",
                    expand(g, &props).unwrap_or(g.to_owned()),
                    expand(a, &props).unwrap_or(a.to_owned())
                );
                managed.insert(name, v.to_owned());
            }
        }
    }
    let mut out = Vec::new();
    let deps = child(project, "dependencies");
    for d in deps
        .iter()
        .flat_map(|d| d.children())
        .filter(|c| c.is_element() && c.tag_name().name() == "dependency")
    {
        let (Some(g), Some(a)) = (child_text(d, "groupId"), child_text(d, "artifactId")) else {
            continue;
        };
        let name = format!(
            "{}:{}",
            expand(g, &props).unwrap_or(g.to_owned()),
            expand(a, &props).unwrap_or(a.to_owned())
        );
        let written = child_text(d, "version")
            .map(str::to_owned)
            .or_else(|| managed.get(&name).cloned());
        let optional = child_text(d, "optional") == Some("true");
        let scope = maven_scope(child_text(d, "scope"), optional);
        let mut dep = Dep::declared(name, written.clone(), scope);
        if let Some(w) = written.filter(|w| w.contains("${")) {
            // Resolved from the file's properties when it defines them.
            dep.version = expand(&w, &props).filter(|v| super::text::is_plain_version(v));
        }
        out.push(dep);
    }
    // A parent or BOM's `<dependencyManagement>`: the versions its modules build with,
    // declared here once (a module's own entry above already took its version).
    let used: std::collections::HashSet<String> = out.iter().map(|d| d.name.clone()).collect();
    if let Some(deps) = child(project, "dependencyManagement").and_then(|m| child(m, "dependencies")) {
        for d in deps
            .children()
            .filter(|c| c.is_element() && c.tag_name().name() == "dependency")
        {
            let (Some(g), Some(a)) = (child_text(d, "groupId"), child_text(d, "artifactId")) else {
                continue;
            };
            let name = format!(
                "{}:{}",
                expand(g, &props).unwrap_or(g.to_owned()),
                expand(a, &props).unwrap_or(a.to_owned())
            );
            // `<type>pom</type><scope>import</scope>`: a BOM, itself versions of others.
            if used.contains(&name) {
                continue;
            }
            let written = child_text(d, "version").map(str::to_owned);
            let mut dep = Dep::declared(name, written.clone(), maven_scope(child_text(d, "scope"), false));
            if let Some(w) = written.filter(|w| w.contains("${")) {
                dep.version = expand(&w, &props).filter(|v| super::text::is_plain_version(v));
            }
            out.push(dep);
        }
    }
    Ok(out)
}

static GRADLE_STRING: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?m)^\s*([A-Za-z]+)\s*\(?\s*(?:platform\s*\(\s*|enforcedPlatform\s*\(\s*)?["']([^"':\s]+):([^"':\s]+):([^"'\s@]+)(?:@[a-z]+)?["']"#).unwrap()
});
static GRADLE_MAP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?m)^\s*([A-Za-z]+)\s*\(?\s*group\s*[:=]\s*["']([^"']+)["']\s*,\s*name\s*[:=]\s*["']([^"']+)["']\s*,\s*version\s*[:=]\s*["']([^"']+)["']"#).unwrap()
});
static GRADLE_VAR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?m)^\s*(?:val|var|def|ext\.|extra\[")?\s*([A-Za-z_][A-Za-z0-9_]*)"?\]?\s*=\s*["']([^"'$]+)["']"#)
        .unwrap()
});

fn gradle_scope(configuration: &str) -> Option<&'static str> {
    let c = configuration;
    Some(
        if c.starts_with("test") || c.starts_with("androidTest") || c.contains("Test") {
            "test"
        } else if matches!(
            c,
            "compileOnly" | "annotationProcessor" | "kapt" | "ksp" | "classpath" | "compileOnlyApi"
        ) {
            "build"
        } else if matches!(c, "implementation" | "api" | "runtimeOnly" | "compile" | "runtime")
            || c.ends_with("Implementation")
            || c.ends_with("Api")
            || c.ends_with("RuntimeOnly")
        {
            "runtime"
        } else {
            return None;
        },
    )
}

/// build.gradle and build.gradle.kts: string (`"g:a:v"`) and map (`group: 'g', name:
/// 'a', version: 'v'`) notations in dependency configurations; `$var` versions resolved
/// from variables the file assigns. Catalog references (`libs.x`) are in the catalog.
pub fn gradle(content: &str) -> Result<Vec<Dep>, String> {
    let vars: HashMap<String, String> = GRADLE_VAR
        .captures_iter(content)
        .map(|c| (c[1].to_owned(), c[2].to_owned()))
        .collect();
    let mut out = Vec::new();
    for caps in GRADLE_STRING
        .captures_iter(content)
        .chain(GRADLE_MAP.captures_iter(content))
    {
        let Some(scope) = gradle_scope(&caps[1]) else { continue };
        let written = caps[4].to_owned();
        let mut dep = Dep::declared(format!("{}:{}", &caps[2], &caps[3]), Some(written.clone()), scope);
        if let Some(var) = written.strip_prefix('$') {
            let var = var.trim_start_matches('{').trim_end_matches('}');
            dep.version = vars.get(var).cloned();
        }
        out.push(dep);
    }
    Ok(out)
}

/// gradle/libs.versions.toml: `[libraries]` with their versions (`version.ref` into
/// `[versions]`).
pub fn version_catalog(content: &str) -> Result<Vec<Dep>, String> {
    let doc = content
        .parse::<Table>()
        .map_err(|e| format!("not TOML: {}", e.message()))?;
    let versions = doc.get("versions").and_then(Value::as_table);
    let version_text = |v: &Value| -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            // Rich versions: {strictly, require, prefer}.
            Value::Table(t) => ["strictly", "require", "prefer"]
                .iter()
                .find_map(|k| t.get(*k).and_then(Value::as_str).map(str::to_owned)),
            _ => None,
        }
    };
    let mut out = Vec::new();
    for (_, lib) in doc.get("libraries").and_then(Value::as_table).into_iter().flatten() {
        let (module, version) = match lib {
            Value::String(s) => {
                let parts: Vec<&str> = s.split(':').collect();
                match parts.as_slice() {
                    [g, a, v] => (format!("{g}:{a}"), Some(v.to_string())),
                    [g, a] => (format!("{g}:{a}"), None),
                    _ => continue,
                }
            }
            Value::Table(t) => {
                let module = match (
                    t.get("module").and_then(Value::as_str),
                    t.get("group").and_then(Value::as_str),
                    t.get("name").and_then(Value::as_str),
                ) {
                    (Some(m), _, _) => m.to_owned(),
                    (None, Some(g), Some(n)) => format!("{g}:{n}"),
                    _ => continue,
                };
                let version = match t.get("version") {
                    Some(Value::Table(v)) if v.contains_key("ref") => v
                        .get("ref")
                        .and_then(Value::as_str)
                        .and_then(|r| versions.and_then(|vs| vs.get(r)))
                        .and_then(version_text),
                    Some(v) => version_text(v),
                    None => t
                        .get("version.ref")
                        .and_then(Value::as_str)
                        .and_then(|r| versions.and_then(|vs| vs.get(r)))
                        .and_then(version_text),
                };
                (module, version)
            }
            _ => continue,
        };
        out.push(Dep::declared(module, version, "runtime"));
    }
    Ok(out)
}

/// gradle.lockfile: `group:artifact:version=configuration,...` lines.
pub fn gradle_lockfile(content: &str) -> Result<Vec<Dep>, String> {
    let mut out = Vec::new();
    for line in content.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with("empty=") {
            continue;
        }
        let (coords, configurations) = line.split_once('=').unwrap_or((line, ""));
        let parts: Vec<&str> = coords.split(':').collect();
        let [g, a, v] = parts.as_slice() else {
            return Err(format!("line {line:?} is not group:artifact:version=configurations"));
        };
        let test_only = !configurations.is_empty()
            && configurations
                .split(',')
                .all(|c| c.to_ascii_lowercase().contains("test"));
        out.push(Dep::locked(
            format!("{g}:{a}"),
            *v,
            if test_only { "test" } else { "runtime" },
            None,
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn gradle_notations_and_variables() {
        let deps = gradle(
            "val okioVersion = \"3.6.0\"\ndependencies {\n  implementation(\"com.squareup.okio:okio:$okioVersion\")\n  testImplementation 'junit:junit:4.13.2'\n  api group: 'org.slf4j', name: 'slf4j-api', version: '2.0.9'\n  implementation(libs.kotlin.stdlib)\n}\n",
        )
        .unwrap();
        let got: Vec<_> = deps
            .iter()
            .map(|d| (d.name.as_str(), d.version.as_deref(), d.requirement.as_deref(), d.scope))
            .collect();
        assert!(got.contains(&("com.squareup.okio:okio", Some("3.6.0"), Some("$okioVersion"), "runtime")));
        assert!(got.contains(&("junit:junit", None, Some("4.13.2"), "test")));
        assert!(got.contains(&("org.slf4j:slf4j-api", None, Some("2.0.9"), "runtime")));
        assert_eq!(got.len(), 3);
    }
}
