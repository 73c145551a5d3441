//! Text helpers of the manifest parsers: byte-order marks, YAML scalars, variables and
//! the small Jinja subset conda recipes use for their names.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;

pub fn strip_bom(content: &str) -> &str {
    content.strip_prefix('\u{feff}').unwrap_or(content)
}

/// A declared name as it can be stored: trimmed, never a template or variable left
/// unresolved, never empty or spread over whitespace.
pub fn clean_name(raw: &str) -> Option<String> {
    let name = raw.trim();
    let template = ["{{", "}}", "{%", "${", "$(", "<%", "%("]
        .iter()
        .any(|t| name.contains(t));
    // `@scope/name` is an npm scope; a bare `@name` is an unresolved attribute.
    let attribute = name.starts_with('@') && !name.contains('/');
    let spaced = name.chars().any(|c| c.is_whitespace() || c.is_control());
    (!name.is_empty() && !template && !attribute && !spaced).then(|| name.to_owned())
}

/// A YAML comment after a value (` #` outside quotes) removed.
pub fn strip_yaml_comment(value: &str) -> &str {
    let mut quote = None;
    let bytes = value.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match (quote, b) {
            (None, b'"' | b'\'') => quote = Some(b),
            (Some(q), b) if b == q => quote = None,
            (None, b'#') if i == 0 || bytes[i - 1].is_ascii_whitespace() => return &value[..i],
            _ => {}
        }
    }
    value
}

/// A YAML scalar written after `key:` on one line: its comment removed, its quotes
/// taken off; `None` when empty (the value is a block below) .
pub fn unquote_scalar(rest: &str) -> Option<String> {
    let value = strip_yaml_comment(rest).trim();
    let unquoted = if value.len() >= 2
        && ((value.starts_with('"') && value.ends_with('"')) || (value.starts_with('\'') && value.ends_with('\'')))
    {
        &value[1..value.len() - 1]
    } else {
        value
    };
    (!unquoted.is_empty() && !unquoted.starts_with(['|', '>', '&', '*'])).then(|| unquoted.to_owned())
}

/// `raw` with every `open var close` replaced by what `lookup` says (a property may name
/// another, up to a few levels); `None` if any is unknown.
pub fn expand_variables(raw: &str, open: &str, close: &str, lookup: impl Fn(&str) -> Option<String>) -> Option<String> {
    let mut value = raw.to_owned();
    for _ in 0..5 {
        let Some(start) = value.find(open) else {
            return Some(value);
        };
        let end = start + value[start..].find(close)?;
        let var = value[start + open.len()..end].trim().to_owned();
        let resolved = lookup(&var)?;
        value.replace_range(start..end + close.len(), &resolved);
    }
    (!value.contains(open)).then_some(value)
}

static JINJA_SET: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"\{%-?\s*set\s+([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(?:"([^"]*)"|'([^']*)')\s*-?%\}"#).expect("valid regex")
});

/// Jinja `{% set var = "value" %}` statements of a conda-build recipe.
pub fn jinja_sets(content: &str) -> HashMap<String, String> {
    JINJA_SET
        .captures_iter(content)
        .map(|c| {
            (
                c[1].to_owned(),
                c.get(2).or(c.get(3)).map_or("", |m| m.as_str()).to_owned(),
            )
        })
        .collect()
}

/// The scalars one level under a top-level YAML block (`context:` of a rattler-build
/// recipe), their own templates rendered against the ones before them.
pub fn yaml_block_scalars(content: &str, block: &str) -> HashMap<String, String> {
    let mut vars = HashMap::new();
    let mut inside = false;
    let mut indent = None;
    for line in content.lines() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let depth = line.len() - trimmed.len();
        if depth == 0 {
            inside = line.strip_prefix(block).is_some_and(|r| r.trim_end() == ":");
            indent = None;
            continue;
        }
        if !inside || depth != *indent.get_or_insert(depth) {
            continue;
        }
        if let Some((key, rest)) = trimmed.split_once(':') {
            if let Some(raw) = unquote_scalar(rest) {
                let value = render_template(&raw, "${{", "}}", &vars).unwrap_or(raw);
                vars.insert(key.trim().to_owned(), value);
            }
        }
    }
    vars
}

static FILTER_REPLACE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"^replace\(\s*(?:"([^"]*)"|'([^']*)')\s*,\s*(?:"([^"]*)"|'([^']*)')\s*\)$"#).expect("valid regex")
});

/// One Jinja expression: a variable with `lower`, `upper` and `replace(a, b)` applied, as
/// filters (`name | lower`) or methods (`name.lower()`).
fn render_expression(expr: &str, vars: &HashMap<String, String>) -> Option<String> {
    let expr = expr.trim();
    let (var, filters) = match expr.find(['|', '.']) {
        Some(at) => (&expr[..at], &expr[at..]),
        None => (expr, ""),
    };
    let mut value = vars.get(var.trim())?.clone();
    let mut rest = filters.trim();
    while !rest.is_empty() {
        let sep = rest.chars().next()?;
        rest = rest[sep.len_utf8()..].trim_start();
        let end = if sep == '.' {
            // A method call ends at its closing parenthesis.
            rest.find(')')? + 1
        } else {
            rest.find('|').unwrap_or(rest.len())
        };
        let filter = rest[..end].trim().trim_end_matches("()");
        value = match filter {
            "lower" => value.to_lowercase(),
            "upper" => value.to_uppercase(),
            "trim" | "strip" => value.trim().to_owned(),
            f => {
                let c = FILTER_REPLACE.captures(f)?;
                let from = c.get(1).or(c.get(2))?.as_str();
                let to = c.get(3).or(c.get(4))?.as_str();
                value.replace(from, to)
            }
        };
        rest = rest[end..].trim_start();
    }
    Some(value)
}

/// A YAML value with `open expr close` templates rendered; `None` if any cannot be.
pub fn render_template(raw: &str, open: &str, close: &str, vars: &HashMap<String, String>) -> Option<String> {
    let raw = unquote_scalar(raw).unwrap_or_else(|| raw.to_owned());
    let mut out = String::new();
    let mut rest = raw.as_str();
    while let Some(start) = rest.find(open) {
        out.push_str(&rest[..start]);
        let after = &rest[start + open.len()..];
        let end = after.find(close)?;
        out.push_str(&render_expression(&after[..end], vars)?);
        rest = &after[end + close.len()..];
    }
    out.push_str(rest);
    Some(out)
}
