//! Packaging manifests: which kind a file is (by its name) and the package name it
//! declares (by its content), for the distribution worker (docs/distribution.md).
//!
//! The rule every parser follows: a name is returned only when the file itself states
//! it. A template or variable (`{{ name }}`, `${{ name|lower }}`, `@app`,
//! `package['name']`, `$(Foo)`) is resolved when the same file defines it, else the
//! answer is NULL: a raw template is never a package name. Decoys (a `[[bin]] name`, a
//! dependency's `artifactId`, a `<Product>`, a `.package(name:)` dependency) are never
//! taken for the package's own name.
//!
//! Pure functions; the SQL functions are at the end.

mod code;
mod text;

use code::{call_arguments, find_call, python_assignments, ruby_block_name, unanimous, CallArg};
use text::{clean_name, strip_bom, unquote_scalar};

/// The manifest kind of a file, by its name (any directory), as `002_*` §3.5 lists
/// them; `None` for a file that is not a manifest.
pub fn manifest_type(path: &str) -> Option<&'static str> {
    let file = path.rsplit('/').next().unwrap_or(path);
    Some(match file {
        "package.json" => "npm",
        "Cargo.toml" => "cargo",
        "setup.py" | "setup.cfg" | "pyproject.toml" => "pypi",
        "pom.xml" | "build.gradle" | "build.gradle.kts" => "maven",
        "Gemfile" => "rubygems",
        "composer.json" => "composer",
        "mix.exs" => "hex",
        "Package.swift" => "swiftpm",
        "pubspec.yaml" => "pub",
        "conanfile.py" | "conanfile.txt" => "conan",
        "Project.toml" | "JuliaProject.toml" => "julia",
        "DESCRIPTION" => "cran",
        "meta.yaml" | "recipe.yaml" => "conda",
        _ if has_suffix(file, ".gemspec") => "rubygems",
        _ if has_suffix(file, ".csproj") || has_suffix(file, ".fsproj") || has_suffix(file, ".vbproj") => "nuget",
        _ if has_suffix(file, ".cabal") => "hackage",
        _ if has_suffix(file, ".podspec") || has_suffix(file, ".podspec.json") => "cocoapods",
        _ => return None,
    })
}

/// A suffix with something before it (`.cabal` alone is not a cabal file).
fn has_suffix(file: &str, suffix: &str) -> bool {
    file.len() > suffix.len() && file.ends_with(suffix)
}

/// The kind of a file and the package name its content declares (`None` when it
/// declares none, or names it only through something the file does not define).
pub fn parse(path: &str, content: &str) -> Option<(&'static str, Option<String>)> {
    let kind = manifest_type(path)?;
    let file = path.rsplit('/').next().unwrap_or(path);
    let content = strip_bom(content);
    let name = match file {
        "package.json" | "composer.json" => json_name(content),
        "Cargo.toml" => cargo_name(content),
        "setup.py" => setup_py_name(content),
        "setup.cfg" => setup_cfg_name(content),
        "pyproject.toml" => pyproject_name(content),
        "pom.xml" => pom_artifact_id(content),
        "build.gradle" | "build.gradle.kts" => gradle_name(content),
        "Gemfile" | "conanfile.txt" => None,
        "mix.exs" => mix_name(content),
        "Package.swift" => swift_name(content),
        "pubspec.yaml" => yaml_top_level(content, "name"),
        "conanfile.py" => conan_name(content),
        "Project.toml" | "JuliaProject.toml" => toml_top_level_name(content),
        "DESCRIPTION" => dcf_field(content, "Package"),
        "meta.yaml" => conda_meta_name(content),
        "recipe.yaml" => rattler_recipe_name(content),
        _ if file.ends_with(".gemspec") => ruby_spec_name(content, "Gem::Specification.new", path, ".gemspec"),
        _ if file.ends_with(".podspec") => ruby_spec_name(content, "Pod::Spec.new", path, ".podspec"),
        _ if file.ends_with(".podspec.json") => json_name(content),
        _ if file.ends_with(".cabal") => cabal_name(content),
        _ => msbuild_package_id(content, file),
    };
    Some((kind, name.and_then(|n| clean_name(&n))))
}

/// Bytes as a forge returns them: UTF-8 (with or without a byte-order mark) or UTF-16
/// with its mark; anything else that is not UTF-8 is read lossily.
pub fn decode(bytes: &[u8]) -> String {
    let utf16 = |big: bool| {
        let units: Vec<u16> = bytes[2..]
            .chunks_exact(2)
            .map(|c| {
                if big {
                    u16::from_be_bytes([c[0], c[1]])
                } else {
                    u16::from_le_bytes([c[0], c[1]])
                }
            })
            .collect();
        String::from_utf16_lossy(&units)
    };
    match bytes {
        [0xFF, 0xFE, ..] => utf16(false),
        [0xFE, 0xFF, ..] => utf16(true),
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

fn json_name(content: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(content).ok()?;
    value.get("name")?.as_str().map(str::to_owned)
}

fn parse_toml(content: &str) -> Option<toml::Table> {
    content.parse::<toml::Table>().ok()
}

fn toml_str<'a>(table: &'a toml::Table, path: &[&str]) -> Option<&'a str> {
    let (last, parents) = path.split_last()?;
    let mut at = table;
    for key in parents {
        at = at.get(*key)?.as_table()?;
    }
    at.get(*last)?.as_str()
}

/// `[package] name`; a virtual workspace (no `[package]`) declares none. `[[bin]]`
/// and `[lib]` names are targets, not the package.
fn cargo_name(content: &str) -> Option<String> {
    let table = parse_toml(content)?;
    toml_str(&table, &["package", "name"])
        .or_else(|| toml_str(&table, &["project", "name"]))
        .map(str::to_owned)
}

/// PEP 621 `[project] name`, else Poetry's `[tool.poetry] name`, else flit's legacy
/// `[tool.flit.metadata]` (`dist-name`, else `module`).
fn pyproject_name(content: &str) -> Option<String> {
    let table = parse_toml(content)?;
    [
        &["project", "name"][..],
        &["tool", "poetry", "name"],
        &["tool", "flit", "metadata", "dist-name"],
        &["tool", "flit", "metadata", "module"],
    ]
    .iter()
    .find_map(|path| toml_str(&table, path))
    .map(str::to_owned)
}

/// A Julia project's top-level `name` (an environment has none).
fn toml_top_level_name(content: &str) -> Option<String> {
    parse_toml(content)?.get("name")?.as_str().map(str::to_owned)
}

/// `setup(name=...)`: a string literal, or a name the file assigns a string literal to.
fn setup_py_name(content: &str) -> Option<String> {
    let tokens = code::tokenize_python(content);
    let call = find_call(&tokens, &["setup", "setuptools.setup", "distutils.core.setup"])?;
    let value = call_arguments(&tokens, call).into_iter().find_map(|arg| match arg {
        CallArg::Keyword(key, value) if key == "name" => Some(value),
        _ => None,
    })?;
    resolve_python_value(&tokens, &value)
}

fn resolve_python_value(tokens: &[code::Token], value: &[code::Token]) -> Option<String> {
    match value {
        [code::Token::Str(s)] => Some(s.clone()),
        [code::Token::Ident(var)] => unanimous(&python_assignments(tokens, var)),
        _ => None,
    }
}

/// `class X(ConanFile): name = "..."`.
fn conan_name(content: &str) -> Option<String> {
    unanimous(&python_assignments(&code::tokenize_python(content), "name"))
}

/// `[metadata] name` of setup.cfg (`attr:`/`file:` directives and `%(...)s`
/// interpolations are not names).
fn setup_cfg_name(content: &str) -> Option<String> {
    let mut section = String::new();
    for line in content.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || trimmed.starts_with(';') || trimmed.is_empty() {
            continue;
        }
        if trimmed.starts_with('[') && trimmed.ends_with(']') {
            section = trimmed[1..trimmed.len() - 1].trim().to_ascii_lowercase();
            continue;
        }
        if section != "metadata" || line.starts_with(char::is_whitespace) {
            continue;
        }
        let Some(split) = trimmed.find(['=', ':']) else {
            continue;
        };
        if trimmed[..split].trim().eq_ignore_ascii_case("name") {
            let value = trimmed[split + 1..].trim();
            if value.starts_with("attr:") || value.starts_with("file:") || value.contains("%(") {
                return None;
            }
            return Some(value.to_owned());
        }
    }
    None
}

/// The `artifactId` that is a direct child of `<project>` (not the parent's, not a
/// dependency's or plugin's); `${property}` resolved from the POM's own properties.
fn pom_artifact_id(content: &str) -> Option<String> {
    // No DTDs (roxmltree's default): a POM has none, and entity expansion is not worth
    // its risks in a function every scan calls.
    let doc = roxmltree::Document::parse(content).ok()?;
    let project = doc.root_element();
    if project.tag_name().name() != "project" {
        return None;
    }
    fn child_text<'a>(parent: roxmltree::Node<'a, '_>, name: &str) -> Option<&'a str> {
        parent
            .children()
            .find(|n| n.is_element() && n.tag_name().name() == name)
            .and_then(|n| n.text())
            .map(str::trim)
    }
    let raw = child_text(project, "artifactId")?;
    let properties = project
        .children()
        .find(|n| n.is_element() && n.tag_name().name() == "properties");
    text::expand_variables(raw, "${", "}", |var| {
        properties.and_then(|p| child_text(p, var)).map(str::to_owned)
    })
}

/// `<PackageId>` of an MSBuild project; `$(AssemblyName)` and other properties the file
/// sets are resolved, `$(MSBuildProjectName)` from the file name. No `<PackageId>`: none
/// declared (NuGet's default, the assembly name, is not a declaration of intent).
fn msbuild_package_id(content: &str, file: &str) -> Option<String> {
    let doc = roxmltree::Document::parse(content).ok()?;
    let property = |name: &str| {
        doc.descendants()
            .filter(|n| n.is_element() && n.tag_name().name() == name)
            .filter(|n| {
                n.parent_element()
                    .is_some_and(|p| p.tag_name().name() == "PropertyGroup")
            })
            .find_map(|n| n.text().map(str::trim).filter(|t| !t.is_empty()))
            .map(str::to_owned)
    };
    let raw = property("PackageId")?;
    let project_name = file.rsplit_once('.').map_or(file, |(stem, _)| stem).to_owned();
    text::expand_variables(&raw, "$(", ")", |var| match var {
        "MSBuildProjectName" => Some(project_name.clone()),
        "PackageId" => None,
        other => property(other).filter(|v| !v.contains("$(")),
    })
}

/// Gradle: an explicit `artifactId` (a publication's), else `archivesBaseName` or
/// `archivesName`; best effort, string literals only.
fn gradle_name(content: &str) -> Option<String> {
    let tokens = code::tokenize_c_like(content);
    for key in ["artifactId", "archivesBaseName", "archivesName"] {
        let mut found: Vec<String> = Vec::new();
        for (i, t) in tokens.iter().enumerate() {
            if !matches!(t, code::Token::Ident(k) if k == key) {
                continue;
            }
            // `key = "x"`, `key "x"`, `key.set("x")`, `key("x")`.
            let rest = &tokens[i + 1..];
            let value = match rest {
                [code::Token::Punct('='), code::Token::Str(s), ..] => Some(s),
                [code::Token::Str(s), ..] => Some(s),
                [code::Token::Punct('('), code::Token::Str(s), code::Token::Punct(')'), ..] => Some(s),
                [code::Token::Punct('.'), code::Token::Ident(set), code::Token::Punct('('), code::Token::Str(s), ..]
                    if set == "set" =>
                {
                    Some(s)
                }
                _ => None,
            };
            if let Some(v) = value {
                found.push(v.clone());
            }
        }
        if !found.is_empty() {
            return unanimous(&found);
        }
    }
    None
}

/// `Gem::Specification.new 'name'` (positional), else the block's `s.name = ...`;
/// `File.basename(__FILE__, '.gemspec')` is the file's own name.
fn ruby_spec_name(content: &str, constructor: &str, path: &str, suffix: &str) -> Option<String> {
    let tokens = code::tokenize_ruby(content);
    let file = path.rsplit('/').next().unwrap_or(path);
    let own_name = file.strip_suffix(suffix).map(str::to_owned);
    ruby_block_name(&tokens, constructor, own_name)
}

/// A mix project's Hex name: `package: [name: "..."]` when set, else `app: :name` of
/// `project/0`; `@attr` module attributes resolved; an umbrella has no app.
fn mix_name(content: &str) -> Option<String> {
    let tokens = code::tokenize_elixir(content);
    code::mix_package_name(&tokens)
}

/// The `name:` argument of the `Package(...)` call (not `.package(name:)` dependencies,
/// not targets'); a `let` constant of the file resolved.
fn swift_name(content: &str) -> Option<String> {
    let tokens = code::tokenize_c_like(content);
    code::swift_package_name(&tokens)
}

/// A top-level `key:` of a YAML file (column 0), as a plain or quoted scalar.
fn yaml_top_level(content: &str, key: &str) -> Option<String> {
    content.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        unquote_scalar(rest)
    })
}

/// `name:` of the block under the top-level `block:` of a YAML file, as raw text.
fn yaml_block_child(content: &str, block: &str, key: &str) -> Option<String> {
    let mut inside = false;
    let mut indent = None;
    for line in content.lines() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("{%") {
            continue;
        }
        let depth = line.len() - trimmed.len();
        if depth == 0 {
            inside = line
                .strip_prefix(block)
                .and_then(|r| r.strip_prefix(':'))
                .is_some_and(|r| {
                    let r = r.trim();
                    r.is_empty() || r.starts_with('#')
                });
            indent = None;
            continue;
        }
        if !inside {
            continue;
        }
        let level = *indent.get_or_insert(depth);
        if depth != level {
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix(key).and_then(|r| r.strip_prefix(':')) {
            return Some(text::strip_yaml_comment(rest).trim().to_owned());
        }
    }
    None
}

/// conda-build `meta.yaml`: `package: name:`, with Jinja `{% set var = "..." %}`
/// variables and the `lower`/`upper`/`replace` filters resolved.
fn conda_meta_name(content: &str) -> Option<String> {
    let raw = yaml_block_child(content, "package", "name")?;
    let vars = text::jinja_sets(content);
    text::render_template(&raw, "{{", "}}", &vars)
}

/// rattler-build `recipe.yaml`: `package: name:`, with `${{ var }}` from `context:`.
fn rattler_recipe_name(content: &str) -> Option<String> {
    let raw = yaml_block_child(content, "package", "name")?;
    let vars = text::yaml_block_scalars(content, "context");
    text::render_template(&raw, "${{", "}}", &vars)
}

/// A Debian-control-style field (R's DESCRIPTION): `Field:` at the start of a line;
/// the value of `Type: Package` is not a field named Package.
fn dcf_field(content: &str, field: &str) -> Option<String> {
    content.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == field).then(|| value.trim().to_owned())
    })
}

/// A cabal file's top-level `name:` (field names are case-insensitive; fields of
/// sections are indented).
fn cabal_name(content: &str) -> Option<String> {
    content.lines().find_map(|line| {
        if line.starts_with(char::is_whitespace) || line.trim_start().starts_with("--") {
            return None;
        }
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case("name").then(|| value.trim().to_owned())
    })
}

/// A Contents API file's `content` as text: base64 (GitHub wraps it every 60
/// characters) decoded and read as [`decode`] does; other encodings are the text itself.
/// `None` when base64 does not decode.
pub fn contents_text(content: &str, encoding: Option<&str>) -> Option<String> {
    use base64::Engine;
    match encoding {
        Some(e) if e.eq_ignore_ascii_case("base64") => {
            let packed: String = content.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            let bytes = base64::engine::general_purpose::STANDARD.decode(packed).ok()?;
            Some(decode(&bytes))
        }
        _ => Some(content.to_owned()),
    }
}

#[pgrx::pg_schema]
mod aveloxis_ops {
    use pgrx::prelude::*;

    /// `aveloxis_ops.contents_text(content, encoding)`: a staged Contents API file body as
    /// text; NULL when its base64 is broken (the drain rejects that row, saying so).
    #[pg_extern(immutable, parallel_safe)]
    fn contents_text(content: Option<&str>, encoding: Option<&str>) -> Option<String> {
        super::contents_text(content?, encoding)
    }
}

#[pgrx::pg_schema]
mod aveloxis {
    use pgrx::prelude::*;

    /// `aveloxis.parse_manifest(path, content)`: the manifest kind of the file name and
    /// the package name its content declares; both NULL for a file that is not a
    /// manifest, the name NULL when the file declares none.
    #[pg_extern(immutable, parallel_safe, strict, name = "parse_manifest")]
    fn parse_manifest_text(
        path: &str,
        content: &str,
    ) -> TableIterator<
        'static,
        (
            name!(manifest_type, Option<String>),
            name!(package_name, Option<String>),
        ),
    > {
        let (kind, name) = match super::parse(path, content) {
            Some((kind, name)) => (Some(kind.to_owned()), name),
            None => (None, None),
        };
        TableIterator::once((kind, name))
    }

    /// `aveloxis.manifest_kind(path)`: the manifest kind of a file name, NULL when it is
    /// none; the agent asks it for a directory listing in one call, so a kind added here
    /// needs no agent release.
    #[pg_extern(immutable, parallel_safe, strict)]
    fn manifest_kind(path: &str) -> Option<&'static str> {
        super::manifest_type(path)
    }

    /// The same for the bytes a forge returned (UTF-8, or UTF-16 with a byte-order mark).
    #[pg_extern(immutable, parallel_safe, strict, name = "parse_manifest")]
    fn parse_manifest_bytes(
        path: &str,
        content: &[u8],
    ) -> TableIterator<
        'static,
        (
            name!(manifest_type, Option<String>),
            name!(package_name, Option<String>),
        ),
    > {
        parse_manifest_text(path, &super::decode(content))
    }
}

#[cfg(test)]
mod tests;
