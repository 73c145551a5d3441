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

    /// One scan: a lease on the repository's distribution job, its observations staged,
    /// `complete` with the outcome. Returns the job's next due time as text.
    fn scan(repo: i64, staged: &[(&str, &str, Option<&str>)], outcome: &str) -> Option<String> {
        let token = text(&format!(
            "SELECT lease_token::text FROM aveloxis.claim_repo('test-agent', {repo}, 'distribution')"
        ))
        .unwrap();
        for (entity, payload, context) in staged {
            let context = context.map_or("NULL".to_owned(), |c| format!("ARRAY[$c${c}$c$::jsonb]"));
            Spi::run(&format!(
                "SELECT aveloxis.stage('{token}', '{entity}', ARRAY[$p${payload}$p$], {context})"
            ))
            .unwrap();
        }
        sql_error(&format!(
            "SELECT aveloxis.complete(j.job_id, '{token}', $o${outcome}$o$::jsonb)
             FROM aveloxis_ops.jobs j WHERE j.repo_id = {repo} AND j.phase = 'distribution'"
        ))
    }

    fn evidence(repo: i64) -> String {
        text(&format!(
            "SELECT coalesce(string_agg(source || ':' || ecosystem || '/' || package_name || ':' || coalesce(version_count::text, '-')
                                        || ':' || coalesce(latest_version, '-'), ' '
                                        ORDER BY source, ecosystem, package_name), '')
             FROM aveloxis_data.repo_distribution WHERE repo_id = {repo}"
        ))
        .unwrap_or_default()
    }

    #[pg_test]
    fn a_completed_scan_becomes_the_evidence_and_the_next_rotates_it() {
        let r = repo("https://github.com/acme/widget");
        let depsdev = r#"{"versions": [
            {"versionKey": {"system": "NPM", "name": "widget", "version": "1.0.0"}, "relationType": "SOURCE_REPO"},
            {"versionKey": {"system": "NPM", "name": "widget", "version": "1.0.0"}, "relationType": "ISSUE_TRACKER"},
            {"versionKey": {"system": "NPM", "name": "widget", "version": "1.1.0"}, "relationType": "SOURCE_REPO"},
            {"versionKey": {"system": "NPM", "name": "other-pkg", "version": "2.0.0"}, "relationType": "ISSUE_TRACKER"}]}"#;
        let detail = r#"{"packageKey": {"system": "NPM", "name": "widget"}, "versions": [
            {"versionKey": {"version": "1.0.0"}, "publishedAt": "2023-01-02T03:04:05Z"},
            {"versionKey": {"version": "1.1.0"}, "publishedAt": "2024-05-06T07:08:09Z", "isDefault": true}]}"#;
        let ecosystems = r#"[{"name": "widget", "ecosystem": "npm", "versions_count": 2,
            "first_release_published_at": "2023-01-02T03:04:05.000Z", "latest_release_number": "1.1.0",
            "registry": {"ecosystem": "npm"}}, {"name": "widget", "ecosystem": "conda", "versions_count": 1}]"#;
        let releases = r#"[{"id": 1, "tag_name": "v1.0.0", "published_at": "2023-01-02T00:00:00Z",
                             "assets": [{"name": "widget-1.0.0-py3-none-any.whl"}, {"name": "widget.tar.gz"}]},
                            {"id": 2, "tag_name": "v1.1.0", "published_at": "2024-05-06T00:00:00Z",
                             "assets": [{"name": "widget_1.1.0_amd64.deb"}, {"name": "widget-1.1.0.whl"}]}]"#;
        let packages = r#"[{"name": "widget", "package_type": "npm", "version_count": 3,
                            "repository": {"full_name": "ACME/widget"}},
                           {"name": "unrelated", "package_type": "npm", "repository": null},
                           {"name": "elsewhere", "package_type": "npm", "repository": {"full_name": "acme/other"}}]"#;
        // package.json as the Contents API returns it: base64 wrapped at 60 characters.
        let manifest = r#"{"path": "package.json", "sha": "abc", "encoding": "base64",
            "content": "eyJuYW1lIjogImEtcGFja2FnZSIsICJ2ZXJzaW9uIjogIjEuMC4wIiwgImRl\nc2NyaXB0aW9uIjogIngifQ==\n"}"#;
        let not_a_manifest = r#"{"path": "README.md", "encoding": "base64", "content": "aGk="}"#;
        let broken = r#"{"path": "setup.py", "encoding": "base64", "content": "%%%"}"#;
        let staged = [
            ("distribution_depsdev", depsdev, None),
            ("distribution_depsdev_package", detail, None),
            ("distribution_ecosystems", ecosystems, None),
            ("distribution_releases", releases, None),
            ("distribution_packages", packages, Some(r#"{"package_type": "npm"}"#)),
            ("distribution_manifest", manifest, None),
            ("distribution_manifest", not_a_manifest, None),
            ("distribution_manifest", broken, None),
            ("distribution_ecosystems", "{not json", None),
        ];
        assert_eq!(scan(r, &staged, r#"{"complete": true}"#), None);
        assert_eq!(
            evidence(r),
            "deps.dev:npm/widget:2:1.1.0 ecosyste.ms:conda/widget:1:- ecosyste.ms:npm/widget:2:1.1.0 \
             github_packages:npm/widget:3:- github_release_asset:deb/widget:1:v1.1.0 github_release_asset:pypi/widget:2:v1.1.0"
        );
        assert_eq!(
            text(&format!(
                "SELECT first_published_at::date || ' ' || latest_published_at::date FROM aveloxis_data.repo_distribution
                 WHERE repo_id = {r} AND source = 'deps.dev'"
            ))
            .as_deref(),
            Some("2023-01-02 2024-05-06")
        );
        assert_eq!(
            text(&format!(
                "SELECT string_agg(manifest_path || '=' || manifest_type || ':' || package_name_declared, ' ')
                 FROM aveloxis_data.repo_distribution_manifest WHERE repo_id = {r}"
            ))
            .as_deref(),
            Some("package.json=npm:a-package")
        );
        // The two unusable rows are rejects with their reason; the README is counted unused.
        assert_eq!(
            text(&format!(
                "SELECT string_agg(left(error, 40), ' | ' ORDER BY error) FROM aveloxis_ops.staging_rejects WHERE repo_id = {r}"
            ))
            .as_deref(),
            Some("distribution_ecosystems: payload is not  | distribution_manifest: the content of se")
        );
        assert_eq!(
            text(&format!(
                "SELECT scan_complete || ' ' || registry_rows || ' ' || manifest_rows || ' ' || unused_rows
                 FROM aveloxis_data.repo_distribution_scans WHERE repo_id = {r}"
            ))
            .as_deref(),
            Some("true 6 1 1")
        );
        assert_eq!(
            int(&format!(
                "SELECT count(*) FROM aveloxis_ops.staging WHERE repo_id = {r} AND drained_at IS NULL"
            )),
            Some(0)
        );
        let first_at = text(&format!(
            "SELECT data_collection_date::text FROM aveloxis_data.repo_distribution WHERE repo_id = {r} LIMIT 1"
        ));

        // Scan 2, a day later, partial: ecosyste.ms did not answer. Its rows stay as they
        // were; the other sources' rows rotate to history and are replaced.
        Spi::run("SELECT aveloxis.set_setting('clock.offset', '1 day')").unwrap();
        let depsdev2 = r#"{"versions": [{"versionKey": {"system": "NPM", "name": "widget", "version": "1.2.0"}}]}"#;
        let staged2 = [
            ("distribution_depsdev", depsdev2, None),
            (
                "distribution_ecosystems",
                r#"[{"name": "widget", "ecosystem": "npm"}]"#,
                None,
            ),
        ];
        let sources = r#"{"complete": false, "sources": {"deps.dev": "ok", "ecosyste.ms": "transient",
                          "github_release_asset": "none", "github_packages": "none", "contents": "ok"}}"#;
        assert_eq!(scan(r, &staged2, sources), None);
        assert_eq!(
            evidence(r),
            "deps.dev:npm/widget:1:- ecosyste.ms:conda/widget:1:- ecosyste.ms:npm/widget:2:1.1.0"
        );
        assert_eq!(
            text(&format!(
                "SELECT string_agg(DISTINCT (data_collection_date = '{}'::timestamptz)::text, ',')
                 FROM aveloxis_data.repo_distribution WHERE repo_id = {r} AND source = 'ecosyste.ms'",
                first_at.clone().unwrap()
            ))
            .as_deref(),
            Some("true"),
            "the source that did not answer keeps its evidence as observed"
        );
        assert_eq!(
            int(&format!(
                "SELECT count(*) FROM aveloxis_data.repo_distribution_history WHERE repo_id = {r}"
            )),
            Some(4),
            "deps.dev, packages and the two release-asset rows rotated"
        );
        assert_eq!(
            int(&format!(
                "SELECT count(*) FROM aveloxis_data.repo_distribution_manifest WHERE repo_id = {r}"
            )),
            Some(0),
            "contents answered with no manifests"
        );
        assert_eq!(
            text(&format!("SELECT unused_rows || ' ' || scan_complete FROM aveloxis_data.repo_distribution_scans WHERE repo_id = {r}"))
                .as_deref(),
            Some("1 false"),
            "the ecosyste.ms page of a source marked failed is not used, and counted"
        );
        // A partial scan is due again at once, ahead of others.
        assert_eq!(
            text(&format!(
                "SELECT (due_at <= aveloxis_ops.clock())::text || ' ' || retry_first FROM aveloxis_ops.jobs
                 WHERE repo_id = {r} AND phase = 'distribution'"
            ))
            .as_deref(),
            Some("true true")
        );

        // Scans 3 and 4 see the same package again: rotating a package that history already
        // holds twice never trips a unique key (the reference's 23505 on rotation).
        for day in 2..4 {
            Spi::run(&format!("SELECT aveloxis.set_setting('clock.offset', '{day} days')")).unwrap();
            assert_eq!(
                scan(r, &[("distribution_depsdev", depsdev2, None)], r#"{"complete": true}"#),
                None
            );
        }
        assert_eq!(evidence(r), "deps.dev:npm/widget:1:-");
        assert_eq!(
            int(&format!(
                "SELECT count(*) FROM aveloxis_data.repo_distribution_history
                 WHERE repo_id = {r} AND source = 'deps.dev' AND package_name = 'widget'"
            )),
            Some(3)
        );
        assert_eq!(
            int(&format!(
                "SELECT count(*) FROM aveloxis_data.repo_distribution_manifest_history WHERE repo_id = {r}"
            )),
            Some(1),
            "the manifest rotated once (scan 2); scans 3 and 4 had none current"
        );
    }

    #[pg_test]
    fn a_refused_completion_keeps_the_evidence_and_the_lease() {
        // The reference lost completions (rotation rolled back, last_run never stamped, the
        // work repeated forever): here the apply and the completion are one transaction, and
        // an outcome that cannot be applied is refused whole, the job still leased.
        let r = repo("https://github.com/acme/keep");
        assert_eq!(
            scan(
                r,
                &[(
                    "distribution_depsdev",
                    r#"{"versions": [{"versionKey": {"system": "CARGO", "name": "keep", "version": "1"}}]}"#,
                    None
                )],
                r#"{"complete": true}"#
            ),
            None
        );
        Spi::run("SELECT aveloxis.set_setting('clock.offset', '1 day')").unwrap();
        let err = scan(
            r,
            &[("distribution_depsdev", r#"{"versions": []}"#, None)],
            r#"{"complete": true, "sources": ["deps.dev"]}"#,
        )
        .unwrap();
        assert!(err.starts_with("22023 outcome.sources must be an object"), "{err}");
        assert_eq!(evidence(r), "deps.dev:cargo/keep:1:-");
        assert_eq!(
            text(&format!("SELECT (lease_owner IS NOT NULL)::text FROM aveloxis_ops.jobs WHERE repo_id = {r} AND phase = 'distribution'"))
                .as_deref(),
            Some("true")
        );
    }

    #[pg_test]
    fn archived_repositories_are_not_claimed_for_distribution() {
        let live = repo("https://github.com/acme/live");
        let archived = repo("https://github.com/acme/archived");
        Spi::run(&format!(
            "UPDATE aveloxis_data.repos SET repo_archived = true WHERE repo_id = {archived}"
        ))
        .unwrap();
        assert_eq!(
            text("SELECT string_agg(repo_id::text, ',') FROM aveloxis.claim('a', ARRAY['distribution'], 10)"),
            Some(live.to_string())
        );
        assert_eq!(
            int(&format!(
                "SELECT count(*) FROM aveloxis.claim('a', ARRAY['collect'], 10) WHERE repo_id = {archived}"
            )),
            Some(1),
            "its other phases are claimed as before"
        );
    }

    #[pg_test]
    fn an_open_breaker_pauses_new_scans_until_it_closes() {
        let r = repo("https://github.com/acme/paused");
        let token = text(&format!(
            "SELECT lease_token::text FROM aveloxis.claim_repo('a', {r}, 'distribution')"
        ))
        .unwrap();
        let report = |ok: bool| {
            text(&format!(
                "SELECT aveloxis.report_source('{token}', 'ecosyste.ms', {ok}, 'HTTP 503')::text"
            ))
        };
        // Nine failures, a success, nine more: still closed (the count is of failures in a row).
        for _ in 0..9 {
            assert_eq!(report(false), None);
        }
        assert_eq!(report(true), None);
        for _ in 0..9 {
            assert_eq!(report(false), None);
        }
        let until = report(false);
        assert!(until.is_some(), "the tenth failure in a row opens it");
        assert_eq!(
            text("SELECT open::text || ' ' || coalesce(last_error, '') FROM aveloxis.source_breakers() WHERE source = 'ecosyste.ms'")
                .as_deref(),
            Some("true HTTP 503")
        );
        // Release the lease (the scan ends partial); the job is due again at once, but not
        // handed out while the breaker is open, and why_not_collected says so.
        Spi::run(&format!(
            "SELECT aveloxis.complete(j.job_id, '{token}', '{{\"complete\": false}}')
             FROM aveloxis_ops.jobs j WHERE j.repo_id = {r} AND j.phase = 'distribution'"
        ))
        .unwrap();
        assert_eq!(
            int("SELECT count(*) FROM aveloxis.claim('b', ARRAY['distribution'], 10)"),
            Some(0)
        );
        let why = text(&format!(
            "SELECT reason FROM aveloxis.why_not_collected({r}) WHERE phase = 'distribution'"
        ))
        .unwrap();
        assert!(
            why.contains("paused") && why.contains("ecosyste.ms circuit breaker is open"),
            "{why}"
        );
        assert_eq!(
            int("SELECT count(*) FROM aveloxis.claim('b', ARRAY['collect'], 10)"),
            Some(1),
            "other phases are claimed"
        );
        // An hour later it is closed and the scan is claimed.
        Spi::run("SELECT aveloxis.set_setting('clock.offset', '61 minutes')").unwrap();
        assert_eq!(
            text("SELECT string_agg(repo_id::text, ',') FROM aveloxis.claim('b', ARRAY['distribution'], 10)"),
            Some(r.to_string())
        );
        let err = sql_error(&format!(
            "SELECT aveloxis.report_source(lease_token, 'github', false) FROM aveloxis.claim_repo('c', {r}, 'collect')"
        ))
        .unwrap();
        assert!(
            err.starts_with("22023 report_source takes a distribution lease"),
            "{err}"
        );
    }

    #[pg_test]
    fn scans_can_be_switched_off_and_paced_and_agents_read_their_settings() {
        let a = repo("https://github.com/acme/a");
        let b = repo("https://github.com/acme/b");
        let claim = || {
            text("SELECT string_agg(repo_id::text, ',' ORDER BY repo_id) FROM aveloxis.claim('x', ARRAY['distribution', 'collect'], 10) WHERE phase = 'distribution'")
        };
        // Off: none handed out, and why_not_collected says so.
        Spi::run("SELECT aveloxis.set_setting('distribution.enabled', 'false')").unwrap();
        assert_eq!(claim(), None);
        let why = text(&format!(
            "SELECT reason FROM aveloxis.why_not_collected({a}) WHERE phase = 'distribution'"
        ))
        .unwrap();
        assert!(why.contains("switched off"), "{why}");
        Spi::run("SELECT aveloxis.reset_setting('distribution.enabled')").unwrap();
        // Paced: one start per interval, whatever a claim asks for.
        Spi::run("SELECT aveloxis.set_setting('distribution.start_interval', '30 seconds')").unwrap();
        assert_eq!(claim(), Some(a.to_string()));
        assert_eq!(claim(), None, "the next start waits out the interval");
        let why = text(&format!(
            "SELECT reason FROM aveloxis.why_not_collected({b}) WHERE phase = 'distribution'"
        ))
        .unwrap();
        assert!(why.contains("at most one per 30 seconds"), "{why}");
        Spi::run("SELECT aveloxis.set_setting('clock.offset', '31 seconds')").unwrap();
        assert_eq!(claim(), Some(b.to_string()));
        // Agents' settings, validated when set.
        assert_eq!(
            text("SELECT depsdev_url || ' ' || ecosystems_url || ' ' || coalesce(contact, '-') FROM aveloxis.distribution_settings()")
                .as_deref(),
            Some("https://api.deps.dev/ https://packages.ecosyste.ms/ -")
        );
        Spi::run("SELECT aveloxis.set_setting('distribution.contact', 'ops@example.org')").unwrap();
        assert_eq!(
            text("SELECT contact FROM aveloxis.distribution_settings()").as_deref(),
            Some("ops@example.org")
        );
        for (name, bad) in [
            ("distribution.enabled", "yes"),
            ("distribution.depsdev_url", "ftp://x"),
            ("distribution.depsdev_url", "deps.dev"),
            ("distribution.contact", "not an email"),
        ] {
            let err = sql_error(&format!("SELECT aveloxis.set_setting('{name}', '{bad}')")).unwrap();
            assert!(err.starts_with(&format!("22023 setting \"{name}\" takes")), "{err}");
        }
    }
}
