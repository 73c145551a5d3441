//! NuGet: project files (*.csproj, *.fsproj, *.vbproj) and Directory.Packages.props
//! (MSBuild XML), packages.config and packages.lock.json.

use serde_json::Value;

use super::text::{child_text, json, xml};
use super::Dep;

/// `PackageReference` (projects), `PackageVersion` and `GlobalPackageReference` (central
/// package management): `Include` (or `Update`) and `Version` as an attribute or child.
/// `PrivateAssets="all"` marks a build-time tool (analyzers, source link).
pub fn msbuild(content: &str) -> Result<Vec<Dep>, String> {
    let doc = xml(content)?;
    let mut out = Vec::new();
    for node in doc.descendants().filter(|n| n.is_element()) {
        let tag = node.tag_name().name();
        if !matches!(tag, "PackageReference" | "PackageVersion" | "GlobalPackageReference") {
            continue;
        }
        let Some(name) = node.attribute("Include").or_else(|| node.attribute("Update")) else {
            continue;
        };
        let version = node
            .attribute("Version")
            .or_else(|| node.attribute("VersionOverride"))
            .or_else(|| child_text(node, "Version"));
        let private = node
            .attribute("PrivateAssets")
            .or_else(|| child_text(node, "PrivateAssets"))
            .is_some_and(|p| p.eq_ignore_ascii_case("all"));
        let scope = if private { "build" } else { "runtime" };
        // `$(Property)` versions are MSBuild properties of other files: no version here.
        let version = version.filter(|v| !v.contains("$("));
        out.push(Dep::declared(name, version.map(str::to_owned), scope));
    }
    Ok(out)
}

pub fn packages_config(content: &str) -> Result<Vec<Dep>, String> {
    let doc = xml(content)?;
    if doc.root_element().tag_name().name() != "packages" {
        return Err("root element is not <packages>: not a packages.config".into());
    }
    Ok(doc
        .root_element()
        .children()
        .filter(|n| n.is_element() && n.tag_name().name() == "package")
        .filter_map(|n| {
            let scope = if n.attribute("developmentDependency") == Some("true") {
                "development"
            } else {
                "runtime"
            };
            // packages.config records the exact version restored.
            let mut dep = Dep::declared(n.attribute("id")?, n.attribute("version").map(str::to_owned), scope);
            dep.version = n.attribute("version").map(str::to_owned);
            Some(dep)
        })
        .collect())
}

/// packages.lock.json: per target framework, `Direct`, `Transitive` and
/// `CentralTransitive` packages with their `resolved` version (`Project` entries are
/// other projects of the solution).
pub fn packages_lock(content: &str) -> Result<Vec<Dep>, String> {
    let doc = json(content)?;
    let frameworks = doc
        .get("dependencies")
        .and_then(Value::as_object)
        .ok_or("no dependencies: not a packages.lock.json")?;
    let mut out = Vec::new();
    for packages in frameworks.values().filter_map(Value::as_object) {
        for (name, entry) in packages {
            let kind = entry.get("type").and_then(Value::as_str).unwrap_or_default();
            if kind == "Project" {
                continue;
            }
            let Some(resolved) = entry.get("resolved").and_then(Value::as_str) else {
                continue;
            };
            let mut dep = Dep::locked(name, resolved, "runtime", Some(kind == "Direct"));
            dep.requirement = entry.get("requested").and_then(Value::as_str).map(str::to_owned);
            out.push(dep);
        }
    }
    Ok(out)
}
