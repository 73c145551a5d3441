//! Tests of the distribution SQL (sql/distribution.sql): the manifest parser as SQL, the
//! re-parse of stored manifests, and the analysts' functions on rows of every mapping
//! case. The parsers themselves are tested in `manifest/tests.rs`.

#[cfg(feature = "pg_test")]
#[pgrx::pg_schema]
mod tests {
    use crate::test_support::{int, sql_error, text};
    use pgrx::prelude::*;

    #[pg_test]
    fn parse_manifest_in_sql_reads_text_and_bytes() {
        assert_eq!(
            text("SELECT manifest_type || ' ' || package_name FROM aveloxis.parse_manifest('a/Cargo.toml', '[package]\nname = \"x\"')")
                .as_deref(),
            Some("cargo x")
        );
        // UTF-16 (little-endian) with its byte-order mark, as the forge's bytes.
        let utf16 = text(
            "SELECT package_name FROM aveloxis.parse_manifest('DESCRIPTION',
                 decode('fffe' || (SELECT string_agg(lpad(to_hex(ascii(c)), 2, '0') || '00', '' ORDER BY n)
                                   FROM regexp_split_to_table('Package: wide', '') WITH ORDINALITY AS t(c, n)),
                        'hex'))",
        );
        assert_eq!(utf16.as_deref(), Some("wide"));
        assert_eq!(
            int("SELECT count(*) FROM aveloxis.parse_manifest('README.md', 'x') WHERE manifest_type IS NULL"),
            Some(1),
            "not a manifest: one row of NULLs"
        );
    }

    fn repo(url: &str) -> i64 {
        int(&format!("SELECT aveloxis.add_repo('{url}')")).unwrap()
    }

    fn manifest(repo: i64, path: &str, kind: &str, name: Option<&str>, content: &str) {
        let name = name.map_or("NULL".to_owned(), |n| format!("'{n}'"));
        Spi::run(&format!(
            "INSERT INTO aveloxis_data.repo_distribution_manifest
                 (repo_id, manifest_path, manifest_type, package_name_declared, content, data_collection_date)
             VALUES ({repo}, '{path}', '{kind}', {name}, $c${content}$c$, now())"
        ))
        .unwrap();
    }

    fn registry(repo: i64, ecosystem: &str, name: &str, source: &str) {
        Spi::run(&format!(
            "INSERT INTO aveloxis_data.repo_distribution (repo_id, ecosystem, package_name, source, data_collection_date)
             VALUES ({repo}, '{ecosystem}', '{name}', '{source}', now())"
        ))
        .unwrap();
    }

    #[pg_test]
    fn orphans_are_manifests_no_matching_registry_shows() {
        // Every mapping case: same name (npm/npm), mapped (composer/packagist,
        // cran/bioconductor), another ecosystem only (npm manifest, pypi evidence), no
        // evidence at all, and a manifest that declares nothing.
        let same = repo("https://github.com/o/same");
        manifest(same, "package.json", "npm", Some("same"), "{}");
        registry(same, "npm", "same", "deps.dev");
        let composer = repo("https://github.com/o/php");
        manifest(composer, "composer.json", "composer", Some("o/php"), "{}");
        registry(composer, "packagist", "o/php", "ecosyste.ms");
        let r_pkg = repo("https://github.com/o/bio");
        manifest(r_pkg, "DESCRIPTION", "cran", Some("bio"), "");
        registry(r_pkg, "bioconductor", "bio", "ecosyste.ms");
        let other = repo("https://github.com/o/mixed");
        manifest(other, "js/package.json", "npm", Some("mixed-js"), "{}");
        manifest(other, "setup.py", "pypi", Some("mixed"), "");
        registry(other, "pypi", "mixed", "deps.dev");
        let none = repo("https://github.com/o/unpublished");
        manifest(none, "Cargo.toml", "cargo", Some("unpublished"), "");
        manifest(none, "Gemfile", "rubygems", None, "");
        Spi::run(&format!(
            "INSERT INTO aveloxis_data.repo_distribution_scans (repo_id, scanned_at, scan_complete)
             VALUES ({none}, now(), false), ({other}, now(), true)"
        ))
        .unwrap();

        let orphans = text(
            "SELECT string_agg(manifest_path || ':' || package_name || ':' || partial_scan || ':'
                               || array_to_string(registries_found, ','), ' ' ORDER BY repo, manifest_path)
             FROM aveloxis.distribution_orphans()",
        );
        assert_eq!(
            orphans.as_deref(),
            Some("js/package.json:mixed-js:false:pypi Cargo.toml:unpublished:true:")
        );

        // A DBA's mapping row: cargo evidence from another registry satisfies the manifest.
        Spi::run("INSERT INTO aveloxis_ops.distribution_ecosystems (manifest_type, ecosystem) VALUES ('cargo', 'crates-mirror')")
            .unwrap();
        registry(none, "crates-mirror", "unpublished", "ecosyste.ms");
        assert_eq!(int("SELECT count(*) FROM aveloxis.distribution_orphans()"), Some(1));

        let stats = text(
            "SELECT concat_ws(' ', repos, eligible, scanned, partial_scans, with_registry, with_manifest,
                              manifest_without_registry, registry_rows, manifest_rows)
             FROM aveloxis.distribution_stats()",
        );
        assert_eq!(stats.as_deref(), Some("5 5 2 1 5 5 1 5 7"));
    }

    #[pg_test]
    fn one_repositorys_evidence_and_an_unknown_url() {
        let r = repo("https://github.com/o/one");
        manifest(r, "package.json", "npm", Some("one"), "{}");
        registry(r, "npm", "one", "deps.dev");
        registry(r, "npm", "one", "ecosyste.ms");
        assert_eq!(
            text(
                "SELECT string_agg(kind || ':' || ecosystem || ':' || source, ' ')
                 FROM aveloxis.distribution_repo('https://github.com/O/one.git')"
            )
            .as_deref(),
            Some("registry:npm:deps.dev registry:npm:ecosyste.ms manifest:npm:package.json")
        );
        let err = sql_error("SELECT * FROM aveloxis.distribution_repo('https://github.com/o/unknown')").unwrap();
        assert!(err.starts_with("P0002 no repository is registered at"), "{err}");
    }

    #[pg_test]
    fn reparse_manifests_brings_stored_rows_to_the_installed_parser() {
        let r = repo("https://github.com/o/reparse");
        // Stored by an older parser that took the decoy, and one that is already right.
        manifest(
            r,
            "Cargo.toml",
            "cargo",
            Some("rg"),
            "[[bin]]\nname = \"rg\"\n[package]\nname = \"ripgrep\"\n",
        );
        manifest(r, "sub/package.json", "npm", Some("ok"), "{\"name\": \"ok\"}");
        manifest(
            r,
            "conda/meta.yaml",
            "conda",
            Some("{{ name }}"),
            "package:\n  name: {{ name }}\n",
        );
        assert_eq!(int("SELECT aveloxis.reparse_manifests()"), Some(2));
        assert_eq!(
            text(&format!(
                "SELECT string_agg(manifest_path || '=' || coalesce(package_name_declared, 'NULL'), ' ' ORDER BY manifest_path)
                 FROM aveloxis_data.repo_distribution_manifest WHERE repo_id = {r}"
            ))
            .as_deref(),
            Some("Cargo.toml=ripgrep conda/meta.yaml=NULL sub/package.json=ok")
        );
        assert_eq!(int("SELECT aveloxis.reparse_manifests()"), Some(0), "idempotent");
    }
}
