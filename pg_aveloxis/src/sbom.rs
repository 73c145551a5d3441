//! SBOM building blocks (docs/dependencies.md, "SBOM"): package URLs by the purl
//! specification (the `packageurl` crate) and licences normalised to SPDX identifiers or
//! expressions (the `spdx` crate, lax about registry spellings such as `MIT/Apache-2.0`
//! or `Apache 2.0`). The documents themselves are built in SQL (sql/sbom.sql).

use packageurl::PackageUrl;

/// The purl of a package version (no version: the package's purl).
pub fn purl(ecosystem: &str, name: &str, version: Option<&str>) -> Option<String> {
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    // (type, namespace, name)
    let split_last = |s: &str, sep: char| -> (Option<String>, String) {
        match s.rfind(sep) {
            Some(i) => (Some(s[..i].to_owned()), s[i + 1..].to_owned()),
            None => (None, s.to_owned()),
        }
    };
    let (ty, namespace, short) = match ecosystem {
        "npm" => match name.strip_prefix('@').and_then(|n| n.split_once('/')) {
            Some((scope, n)) => ("npm", Some(format!("@{scope}")), n.to_owned()),
            None => ("npm", None, name.to_owned()),
        },
        "PyPI" => ("pypi", None, crate::deps::normalize_name("PyPI", name)),
        "crates.io" => ("cargo", None, name.to_owned()),
        "Go" => {
            let (ns, n) = split_last(name, '/');
            ("golang", ns, n)
        }
        "Maven" => {
            let (ns, n) = split_last(name, ':');
            ("maven", ns, n)
        }
        "RubyGems" => ("gem", None, name.to_owned()),
        "Packagist" => {
            let (ns, n) = split_last(name, '/');
            ("composer", ns, n)
        }
        "NuGet" => ("nuget", None, name.to_owned()),
        "Hex" => ("hex", None, name.to_owned()),
        "Pub" => ("pub", None, name.to_owned()),
        "Hackage" => ("hackage", None, name.to_owned()),
        "SwiftURL" => {
            let (ns, n) = split_last(name, '/');
            ("swift", ns, n)
        }
        "CocoaPods" => ("cocoapods", None, name.to_owned()),
        "ConanCenter" => ("conan", None, name.to_owned()),
        "CRAN" => ("cran", None, name.to_owned()),
        "GitHub Actions" => {
            // owner/repo[/path]: the action's repository.
            let mut parts = name.splitn(3, '/');
            let (owner, repo) = (parts.next()?, parts.next()?);
            ("github", Some(owner.to_owned()), repo.to_owned())
        }
        _ => return None,
    };
    let mut p = PackageUrl::new(ty, short).ok()?;
    if let Some(ns) = namespace.filter(|n| !n.is_empty()) {
        p.with_namespace(ns).ok()?;
    }
    if let Some(v) = version.map(str::trim).filter(|v| !v.is_empty()) {
        p.with_version(v.to_owned()).ok()?;
    }
    Some(p.to_string())
}

/// How a licence string reads in SPDX terms: ("id", a listed identifier), ("expression",
/// a valid expression), or ("name", free text no SPDX parser accepts).
pub fn licence(raw: &str) -> Option<(&'static str, String)> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    let canonical = match spdx::Expression::canonicalize(raw) {
        Ok(Some(c)) => c,
        Ok(None) => raw.to_owned(),
        Err(_) => return Some(("name", raw.to_owned())),
    };
    if spdx::Expression::parse(&canonical).is_err() {
        return Some(("name", raw.to_owned()));
    }
    if spdx::license_id(&canonical).is_some() && !canonical.ends_with('+') {
        Some(("id", canonical))
    } else {
        Some(("expression", canonical))
    }
}

#[pgrx::pg_schema]
mod aveloxis_ops {
    use pgrx::prelude::*;

    /// `aveloxis_ops.purl(ecosystem, name, version)`: the package URL; NULL for an
    /// ecosystem without a purl type or a name no purl can hold.
    #[pg_extern(immutable, parallel_safe)]
    fn purl(ecosystem: Option<&str>, name: Option<&str>, version: Option<&str>) -> Option<String> {
        super::purl(ecosystem?, name?, version)
    }

    /// `aveloxis_ops.spdx_licence(raw)`: (`id` | `expression` | `name`, text); no row
    /// for an empty licence.
    #[pg_extern(immutable, parallel_safe, strict)]
    fn spdx_licence(raw: &str) -> TableIterator<'static, (name!(kind, String), name!(value, String))> {
        TableIterator::new(super::licence(raw).map(|(k, v)| (k.to_owned(), v)))
    }
}

#[cfg(test)]
mod tests {
    use super::{licence, purl};

    #[test]
    fn purls_by_the_specification() {
        let p = |e, n, v| purl(e, n, v).unwrap();
        assert_eq!(p("npm", "@babel/core", Some("7.24.0")), "pkg:npm/%40babel/core@7.24.0");
        assert_eq!(p("npm", "express", Some("4.18.2")), "pkg:npm/express@4.18.2");
        assert_eq!(p("PyPI", "Django_Rest", Some("3.0")), "pkg:pypi/django-rest@3.0");
        assert_eq!(
            p("Go", "github.com/gorilla/mux", Some("v1.8.0")),
            "pkg:golang/github.com/gorilla/mux@v1.8.0"
        );
        assert_eq!(
            p("Maven", "org.apache.commons:commons-lang3", Some("3.14.0")),
            "pkg:maven/org.apache.commons/commons-lang3@3.14.0"
        );
        assert_eq!(
            p("Packagist", "laravel/framework", Some("v10.48.22")),
            "pkg:composer/laravel/framework@v10.48.22"
        );
        assert_eq!(
            p("SwiftURL", "github.com/apple/swift-nio", Some("2.70.0")),
            "pkg:swift/github.com/apple/swift-nio@2.70.0"
        );
        assert_eq!(
            p("GitHub Actions", "actions/checkout", Some("v4")),
            "pkg:github/actions/checkout@v4"
        );
        assert_eq!(p("crates.io", "serde", None), "pkg:cargo/serde");
        assert_eq!(purl("nowhere", "x", None), None);
    }

    #[test]
    fn licences_normalised_to_spdx() {
        assert_eq!(licence("MIT"), Some(("id", "MIT".into())));
        assert_eq!(
            licence("MIT OR Apache-2.0"),
            Some(("expression", "MIT OR Apache-2.0".into()))
        );
        assert_eq!(
            licence("MIT/Apache-2.0"),
            Some(("expression", "MIT OR Apache-2.0".into()))
        );
        assert_eq!(licence("Apache 2.0"), Some(("id", "Apache-2.0".into())));
        assert_eq!(
            licence("Some custom licence"),
            Some(("name", "Some custom licence".into()))
        );
        assert_eq!(licence(""), None);
    }
}
