//! `aveloxis-agent distribution-stats [--orphans] [--repo URL]`: the analysts' distribution
//! functions (`aveloxis.distribution_stats()`, `distribution_orphans()`,
//! `distribution_repo(url)`, docs/distribution.md), printed. Read-only.

use sqlx::Row;

use crate::db::Api;
use crate::error::AgentError;

/// What to print.
pub enum Report {
    Fleet,
    Orphans,
    Repo(String),
}

pub async fn print(api: &mut Api, report: Report) -> Result<(), AgentError> {
    match report {
        Report::Fleet => fleet(api).await,
        Report::Orphans => orphans(api).await,
        Report::Repo(url) => repo(api, &url).await,
    }
}

async fn fleet(api: &mut Api) -> Result<(), AgentError> {
    let call = "aveloxis.distribution_stats()";
    let r = sqlx::query(
        "SELECT repos, eligible, scanned, partial_scans, with_registry, with_manifest, manifest_without_registry,
                registry_rows, manifest_rows, coalesce(date_trunc('second', last_scan_at)::text, 'never') AS last_scan
         FROM aveloxis.distribution_stats()",
    )
    .fetch_one(api.connection())
    .await
    .map_err(|e| AgentError::sql(call, e))?;
    let n = |c: &str| r.get::<i64, _>(c);
    println!("repositories                     {}", n("repos"));
    println!(
        "  with a distribution job        {} (GitHub, not archived)",
        n("eligible")
    );
    println!(
        "  scanned                        {} ({} partial; last scan {})",
        n("scanned"),
        n("partial_scans"),
        r.get::<String, _>("last_scan")
    );
    println!(
        "  published (registry evidence)  {} ({} rows)",
        n("with_registry"),
        n("registry_rows")
    );
    println!(
        "  declaring a package            {} ({} manifest rows)",
        n("with_manifest"),
        n("manifest_rows")
    );
    println!(
        "  declaring, never published     {}{}",
        n("manifest_without_registry"),
        if n("manifest_without_registry") > 0 {
            "  (aveloxis-agent distribution-stats --orphans lists them)"
        } else {
            ""
        }
    );
    Ok(())
}

async fn orphans(api: &mut Api) -> Result<(), AgentError> {
    let call = "aveloxis.distribution_orphans()";
    let rows = sqlx::query(
        "SELECT repo, manifest_path, manifest_type, package_name,
                coalesce(nullif(array_to_string(registries_found, ','), ''), '-') AS found, partial_scan
         FROM aveloxis.distribution_orphans()",
    )
    .fetch_all(api.connection())
    .await
    .map_err(|e| AgentError::sql(call, e))?;
    if rows.is_empty() {
        println!("no orphans: every manifest declaring a package has registry evidence (or nothing was scanned yet)");
        return Ok(());
    }
    println!(
        "{:<45} {:<30} {:<10} {:<30} {:<16} partial scan",
        "repository", "manifest", "kind", "package", "registries found"
    );
    for r in &rows {
        println!(
            "{:<45} {:<30} {:<10} {:<30} {:<16} {}",
            r.get::<String, _>("repo"),
            r.get::<String, _>("manifest_path"),
            r.get::<String, _>("manifest_type"),
            r.get::<String, _>("package_name"),
            r.get::<String, _>("found"),
            if r.get::<bool, _>("partial_scan") {
                "yes: a source did not answer"
            } else {
                "no"
            }
        );
    }
    println!("{} manifest(s) declare a package no registry shows", rows.len());
    Ok(())
}

async fn repo(api: &mut Api, url: &str) -> Result<(), AgentError> {
    let call = format!("aveloxis.distribution_repo('{url}')");
    let rows = sqlx::query(
        "SELECT kind, ecosystem, coalesce(package_name, '(none declared)') AS package_name, source,
                coalesce(version_count::text, '-') AS versions,
                coalesce(latest_published_at::date::text, '-') AS latest, date_trunc('second', observed_at)::text AS observed
         FROM aveloxis.distribution_repo($1)",
    )
    .bind(url)
    .fetch_all(api.connection())
    .await
    .map_err(|e| AgentError::sql(call, e))?;
    if rows.is_empty() {
        println!("{url}: no distribution evidence yet (not scanned, or nothing found)");
        return Ok(());
    }
    println!(
        "{:<9} {:<12} {:<30} {:<30} {:>8} {:<11} observed",
        "kind", "ecosystem", "package", "source / manifest", "versions", "latest"
    );
    for r in &rows {
        println!(
            "{:<9} {:<12} {:<30} {:<30} {:>8} {:<11} {}",
            r.get::<String, _>("kind"),
            r.get::<String, _>("ecosystem"),
            r.get::<String, _>("package_name"),
            r.get::<String, _>("source"),
            r.get::<String, _>("versions"),
            r.get::<String, _>("latest"),
            r.get::<String, _>("observed")
        );
    }
    Ok(())
}
