//! Shared reading helpers of the dependency parsers: version shapes, PEP 508 lines, YAML
//! and JSON access.

use std::sync::LazyLock;

use regex::Regex;
use yaml_rust2::{Yaml, YamlLoader};

/// A version as registries write one: starts with a digit, no spaces, no range operators.
static PLAIN_VERSION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^v?[0-9]+(\.[0-9A-Za-z]+)*([-+_][0-9A-Za-z.+_-]*)?$").unwrap());

pub fn is_plain_version(s: &str) -> bool {
    PLAIN_VERSION.is_match(s.trim())
}

/// The exact version a requirement pins, by the ecosystem's rules; None for a range.
pub fn exact_version(ecosystem: &str, req: &str) -> Option<String> {
    let req = req.trim();
    let after = |prefix: &str| req.strip_prefix(prefix).map(str::trim).filter(|v| is_plain_version(v));
    let v = match ecosystem {
        // A bare version is exact in npm, Composer, pub, NuGet (lowest applicable), Maven
        // (a soft requirement Maven honours unless a conflict overrides it), CocoaPods and
        // Gemfiles.
        "npm" | "Packagist" | "Pub" | "NuGet" | "Maven" | "CocoaPods" | "RubyGems" => {
            if is_plain_version(req) {
                Some(req)
            } else if let Some(inner) = req.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
                // NuGet and Maven `[1.2.3]`: exactly that version.
                (is_plain_version(inner) && !inner.contains(',')).then_some(inner)
            } else {
                after("=").or_else(|| after("=="))
            }
        }
        "crates.io" => after("="),
        "PyPI" => after("===").or_else(|| after("==").filter(|v| !v.contains('*'))),
        "Hex" | "Hackage" | "CRAN" => after("=="),
        _ => is_plain_version(req).then_some(req),
    }?;
    Some(v.to_owned())
}

/// One PEP 508 requirement (`name[extras] (specifiers) ; markers` or `name @ url`).
#[derive(Debug, PartialEq, Eq)]
pub struct Pep508 {
    pub name: String,
    pub specifier: Option<String>,
    pub url: Option<String>,
    pub marker: Option<String>,
}

static PEP508_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(\[[^\]]*\])?\s*").unwrap());

pub fn pep508(line: &str) -> Option<Pep508> {
    let caps = PEP508_NAME.captures(line)?;
    let name = caps.get(1)?.as_str().to_owned();
    let rest = &line[caps.get(0)?.end()..];
    let (body, marker) = match rest.find(';') {
        Some(i) => (
            &rest[..i],
            Some(rest[i + 1..].trim().to_owned()).filter(|m| !m.is_empty()),
        ),
        None => (rest, None),
    };
    let body = body.trim();
    if let Some(url) = body.strip_prefix('@') {
        return Some(Pep508 {
            name,
            specifier: None,
            url: Some(url.trim().to_owned()),
            marker,
        });
    }
    let body = body
        .strip_prefix('(')
        .and_then(|b| b.strip_suffix(')'))
        .unwrap_or(body)
        .trim();
    if !body.is_empty() && !body.starts_with(['=', '<', '>', '~', '!']) {
        return None;
    }
    Some(Pep508 {
        name,
        specifier: Some(body.replace(' ', "")).filter(|s| !s.is_empty()),
        url: None,
        marker,
    })
}

pub fn yaml(content: &str) -> Result<Yaml, String> {
    let mut docs = YamlLoader::load_from_str(content).map_err(|e| format!("not YAML: {e}"))?;
    if docs.is_empty() {
        return Ok(Yaml::Null);
    }
    Ok(docs.swap_remove(0))
}

/// A YAML scalar as text (numbers as written: `1.10` stays `1.10`).
pub fn yaml_text(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The entries of a YAML mapping as (key text, value).
pub fn yaml_entries(y: &Yaml) -> Vec<(String, &Yaml)> {
    match y.as_hash() {
        Some(h) => h.iter().filter_map(|(k, v)| Some((yaml_text(k)?, v))).collect(),
        None => Vec::new(),
    }
}

pub fn json(content: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(content).map_err(|e| format!("not JSON: {e}"))
}

/// JSON with comments and trailing commas (bun.lock, some tool files) made plain JSON.
pub fn jsonc(content: &str) -> Result<serde_json::Value, String> {
    let mut out: Vec<u8> = Vec::with_capacity(content.len());
    let bytes = content.as_bytes();
    let mut i = 0;
    let mut in_string = false;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            out.push(b);
            if b == b'\\' && i + 1 < bytes.len() {
                out.push(bytes[i + 1]);
                i += 1;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
            out.push(b'"');
        } else if b == b'/' && bytes.get(i + 1) == Some(&b'/') {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
            continue;
        } else if b == b',' {
            // A comma before a closing bracket is dropped.
            let next = bytes[i + 1..].iter().find(|c| !c.is_ascii_whitespace());
            if !matches!(next, Some(b'}' | b']')) {
                out.push(b',');
            }
        } else {
            out.push(b);
        }
        i += 1;
    }
    let text = String::from_utf8(out).map_err(|e| format!("not UTF-8: {e}"))?;
    json(&text)
}

/// A string field of a JSON object.
pub fn jstr<'a>(v: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    v.get(key)?.as_str()
}

/// An XML document, with the error a reader needs.
pub fn xml(content: &str) -> Result<roxmltree::Document<'_>, String> {
    roxmltree::Document::parse_with_options(
        content,
        roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        },
    )
    .map_err(|e| format!("not XML: {e}"))
}

/// A child element's text (by local name, any namespace).
pub fn child_text<'a>(node: roxmltree::Node<'a, '_>, name: &str) -> Option<&'a str> {
    node.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
        .and_then(|c| c.text())
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn exact_versions_by_each_ecosystems_rule() {
        assert_eq!(exact_version("npm", "4.18.2").as_deref(), Some("4.18.2"));
        assert_eq!(exact_version("npm", "^4.18.2"), None);
        assert_eq!(
            exact_version("crates.io", "1.0"),
            None,
            "Cargo's bare version is a caret range"
        );
        assert_eq!(exact_version("crates.io", "=1.0.3").as_deref(), Some("1.0.3"));
        assert_eq!(exact_version("PyPI", "==2.31.0").as_deref(), Some("2.31.0"));
        assert_eq!(exact_version("PyPI", "==2.*"), None);
        assert_eq!(exact_version("PyPI", ">=2.28"), None);
        assert_eq!(exact_version("NuGet", "[13.0.3]").as_deref(), Some("13.0.3"));
        assert_eq!(exact_version("NuGet", "[1.0,2.0)"), None);
        assert_eq!(exact_version("Hex", "~> 1.7"), None);
        assert_eq!(exact_version("RubyGems", "= 7.1.3").as_deref(), Some("7.1.3"));
    }

    #[test]
    fn pep508_lines() {
        let r = pep508("requests[socks] >= 2.28, <3 ; python_version < \"3.8\"").unwrap();
        assert_eq!(r.name, "requests");
        assert_eq!(r.specifier.as_deref(), Some(">=2.28,<3"));
        assert_eq!(r.marker.as_deref(), Some("python_version < \"3.8\""));
        let u = pep508("pip @ https://github.com/pypa/pip/archive/1.3.1.zip").unwrap();
        assert_eq!(u.url.as_deref(), Some("https://github.com/pypa/pip/archive/1.3.1.zip"));
        assert_eq!(pep508("flask").unwrap().specifier, None);
        assert!(pep508("-r other.txt").is_none());
    }

    #[test]
    fn jsonc_drops_comments_and_trailing_commas_only_outside_strings() {
        let v = jsonc("{\n // c\n \"a\": \"x // y,\", \"b\": [1, 2,],\n}").unwrap();
        assert_eq!(v["a"], "x // y,");
        assert_eq!(v["b"].as_array().unwrap().len(), 2);
    }
}
