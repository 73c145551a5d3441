//! `pg_aveloxis`: the Aveloxis schema, identities and SQL API inside PostgreSQL.
//!
//! Rust holds the pure logic (identity layout, URL parsing); the SQL API and the
//! tables are in `sql/`, one file per domain, wired in below in dependency order.
//! `docs/sql-api.md` lists every function.

use pgrx::prelude::*;

pub mod contributors;
pub mod convergence;
pub mod deps;
pub mod distribution;
pub mod facade;
pub mod identity;
pub mod manifest;
pub mod registry;
pub mod sanitize;
pub mod sbom;
pub mod scheduler;
#[cfg(feature = "pg_test")]
pub mod test_support;
pub mod vulns;

::pgrx::pg_module_magic!(name, version);

/// Registers the GUCs and, when preloaded, the scheduler's background worker.
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    scheduler::init();
}

// Schemas, roles and the platforms table come first: everything else lives in them.
extension_sql_file!("../../sql/bootstrap.sql", name = "bootstrap", bootstrap);

#[pg_schema]
mod aveloxis {
    /// The version of the loaded library. After a package upgrade and before
    /// `ALTER EXTENSION pg_aveloxis UPDATE`, it differs from `pg_extension.extversion`;
    /// `aveloxis-agent status` shows both.
    #[pgrx::pg_extern(immutable, parallel_safe)]
    fn version() -> &'static str {
        env!("CARGO_PKG_VERSION")
    }
}

extension_sql_file!(
    "../../sql/registry.sql",
    name = "registry",
    requires = ["bootstrap", registry::aveloxis_ops::parse_repo_url_with_hosts]
);

extension_sql_file!("../../sql/staging.sql", name = "staging", requires = ["registry"]);
extension_sql_file!(
    "../../sql/contributors.sql",
    name = "contributors",
    requires = ["bootstrap", "staging"]
);
extension_sql_file!(
    "../../sql/issues.sql",
    name = "issues",
    requires = ["registry", "contributors"]
);
extension_sql_file!("../../sql/messages.sql", name = "messages", requires = ["issues"]);
extension_sql_file!(
    "../../sql/pull_requests.sql",
    name = "pull_requests",
    requires = ["messages"]
);
extension_sql_file!(
    "../../sql/events_releases.sql",
    name = "events_releases",
    requires = ["pull_requests"]
);
extension_sql_file!(
    "../../sql/repo_info.sql",
    name = "repo_info",
    requires = ["events_releases"]
);
extension_sql_file!(
    "../../sql/drain.sql",
    name = "drain",
    requires = [
        "staging",
        "contributors",
        "issues",
        "messages",
        "pull_requests",
        "events_releases",
        "repo_info",
        identity::aveloxis::platform_uuid,
        sanitize::aveloxis_ops::sanitize_json,
        sanitize::aveloxis_ops::json_syntax_error,
        sanitize::aveloxis_ops::forge_timestamp,
        aveloxis::version
    ]
);

extension_sql_file!(
    "../../sql/queue.sql",
    name = "queue",
    requires = ["registry", "staging"]
);

extension_sql_file!("../../sql/tokens.sql", name = "tokens", requires = ["queue"]);

extension_sql_file!(
    "../../sql/facade.sql",
    name = "facade",
    requires = ["drain", "queue", "repo_info", "contributors"]
);

// Identity convergence: reversible merges, dated affiliations, enrichment and
// search-resolve runs, and the diagnostics that report on them.
extension_sql_file!(
    "../../sql/merges.sql",
    name = "merges",
    requires = ["contributors", identity::aveloxis::platform_uuid, aveloxis::version]
);
extension_sql_file!(
    "../../sql/affiliation.sql",
    name = "affiliation",
    requires = ["merges", "facade"]
);
extension_sql_file!(
    "../../sql/identity_tasks.sql",
    name = "identity_tasks",
    requires = ["merges", "drain", "queue"]
);
extension_sql_file!(
    "../../sql/identity_apply.sql",
    name = "identity_apply",
    requires = ["identity_tasks"]
);
extension_sql_file!(
    "../../sql/diagnostics.sql",
    name = "diagnostics",
    requires = [
        "contributors",
        "issues",
        "messages",
        "pull_requests",
        "facade",
        "identity_tasks"
    ]
);

extension_sql_file!("../../sql/analysis.sql", name = "analysis", requires = ["registry"]);
extension_sql_file!(
    "../../sql/labor.sql",
    name = "labor",
    requires = ["analysis", "queue", "staging"]
);
extension_sql_file!(
    "../../sql/scorecard.sql",
    name = "scorecard",
    requires = ["analysis", "queue", "staging"]
);

extension_sql_file!(
    "../../sql/dependencies.sql",
    name = "dependencies",
    requires = [
        "labor",
        "augur_compat",
        deps::aveloxis_ops::resolve_dependencies,
        manifest::aveloxis_ops::contents_text
    ]
);

extension_sql_file!(
    "../../sql/packages.sql",
    name = "packages",
    requires = [
        "dependencies",
        deps::aveloxis_ops::package_key,
        deps::aveloxis_ops::is_prerelease
    ]
);

extension_sql_file!(
    "../../sql/vulnerabilities.sql",
    name = "vulnerabilities",
    requires = ["packages", vulns::aveloxis_ops::cvss_score]
);

extension_sql_file!(
    "../../sql/sbom.sql",
    name = "sbom",
    requires = [
        "vulnerabilities",
        sbom::aveloxis_ops::purl,
        sbom::aveloxis_ops::spdx_licence
    ]
);

extension_sql_file!(
    "../../sql/community_files.sql",
    name = "community_files",
    requires = ["drain", "registry"]
);

extension_sql_file!(
    "../../sql/augur_compat.sql",
    name = "augur_compat",
    requires = [
        "facade",
        "analysis",
        "events_releases",
        "repo_info",
        "community_files",
        "affiliation"
    ]
);

extension_sql_file!("../../sql/matviews.sql", name = "matviews", requires = ["augur_compat"]);

extension_sql_file!(
    "../../sql/refresh.sql",
    name = "refresh",
    requires = ["matviews", "queue"]
);

extension_sql_file!(
    "../../sql/activity.sql",
    name = "activity",
    requires = ["facade", "drain"]
);

extension_sql_file!("../../sql/bots.sql", name = "bots", requires = ["contributors"]);

extension_sql_file!(
    "../../sql/completeness.sql",
    name = "completeness",
    requires = ["facade", "events_releases"]
);

extension_sql_file!(
    "../../sql/analyst_api.sql",
    name = "analyst_api",
    requires = ["activity", "bots", "completeness", "matviews", "queue"]
);

extension_sql_file!(
    "../../sql/distribution.sql",
    name = "distribution",
    requires = [
        "queue",
        "drain",
        manifest::aveloxis::parse_manifest_text,
        manifest::aveloxis::parse_manifest_bytes,
        manifest::aveloxis::manifest_kind,
        manifest::aveloxis_ops::contents_text
    ]
);

// The Citus plan reads every table, so it comes after all of them.
extension_sql_file!(
    "../../sql/scale_out.sql",
    name = "scale_out",
    requires = [
        "analyst_api",
        "refresh",
        "tokens",
        "analysis",
        "community_files",
        "distribution",
        "diagnostics",
        "identity_apply",
        "labor",
        "scorecard",
        "dependencies",
        "packages",
        "vulnerabilities",
        "sbom"
    ]
);

// Grants run last, once every object they name exists.
extension_sql_file!("../../sql/grants.sql", name = "grants", finalize);

#[cfg(feature = "pg_test")]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn version_matches_extension_version() {
        let lib = Spi::get_one::<&str>("SELECT aveloxis.version()").unwrap().unwrap();
        let ext = Spi::get_one::<&str>("SELECT extversion FROM pg_extension WHERE extname = 'pg_aveloxis'")
            .unwrap()
            .unwrap();
        assert_eq!(lib, env!("CARGO_PKG_VERSION"));
        assert_eq!(lib, ext);
    }
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
