//! The vulnerabilities phase (docs/dependencies.md, "Vulnerabilities"): OSV's querybatch
//! for the package versions a repository uses that have no fresh answer
//! (`aveloxis.osv_due`, fleet-wide), at most 1,000 queries a call, each query's pages
//! followed (`next_page_token`: only the queries that have one are asked again); then
//! `/v1/vulns/{id}` only for records the cache lacks or holds older
//! (`aveloxis.osv_vulns_needed`). Answers are staged as OSV gave them (`osv_results`,
//! `osv_vuln`); `complete` scores and applies them. A query that got no answer is not
//! staged: the scan is then partial, and a partial scan resolves no finding.

use serde_json::{json, Value};
use sqlx::PgPool;
use url::Url;

use crate::phases::distribution::under;
use crate::phases::http::{Answer, PoliteClient};
use crate::queue::ClaimedJob;

/// OSV's limit of queries per querybatch call.
pub const QUERIES_PER_BATCH: usize = 1000;
/// Pages followed per query at most (OSV pages large result sets).
const MAX_PAGES: usize = 20;

/// The version as OSV's query expects it: Go module versions without their `v`.
fn osv_version(ecosystem: &str, version: &str) -> String {
    if ecosystem == "Go" {
        version.strip_prefix('v').unwrap_or(version).to_owned()
    } else {
        version.to_owned()
    }
}

/// One package version asked about.
#[derive(Debug, Clone)]
struct Query {
    ecosystem: String,
    name: String,
    version: String,
    vulns: Vec<Value>,
    page_token: Option<String>,
    answered: bool,
}

/// What one vulnerabilities job did.
#[derive(Debug, Default)]
pub struct OsvOutcome {
    pub queries: usize,
    pub answered: usize,
    pub advisories: usize,
    pub records_fetched: usize,
    pub requests: u64,
}

impl super::Outcome for OsvOutcome {
    fn summary(&self) -> String {
        format!(
            "vulnerabilities: {} versions asked, {} answered, {} advisories listed, {} records fetched; {} requests",
            self.queries, self.answered, self.advisories, self.records_fetched, self.requests
        )
    }

    fn report(&self) -> Value {
        json!({"queries": self.queries, "answered": self.answered, "advisories": self.advisories,
               "records_fetched": self.records_fetched, "requests": self.requests,
               "complete": self.answered == self.queries})
    }
}

/// Asks OSV about one batch of queries, following each query's pages. Queries OSV did not
/// answer stay `answered == false`.
async fn query_batch(client: &PoliteClient, root: &Url, batch: &mut [Query]) {
    let url = under(root, &["v1", "querybatch"]);
    for _ in 0..MAX_PAGES {
        let pending: Vec<usize> = (0..batch.len())
            .filter(|i| !batch[*i].answered || batch[*i].page_token.is_some())
            .collect();
        if pending.is_empty() {
            return;
        }
        let body = json!({"queries": pending.iter().map(|i| {
            let q = &batch[*i];
            let mut query = json!({"package": {"name": q.name, "ecosystem": q.ecosystem},
                                   "version": osv_version(&q.ecosystem, &q.version)});
            if let Some(token) = &q.page_token {
                query["page_token"] = json!(token);
            }
            query
        }).collect::<Vec<_>>()});
        let results = match client.post_json(url.clone(), &body).await {
            Ok(Answer::Json(doc)) => doc
                .get("results")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            Ok(other) => {
                tracing::warn!("OSV querybatch refused {} queries: {other:?}", pending.len());
                return;
            }
            Err(e) => {
                tracing::warn!("OSV querybatch did not answer {} queries: {e}", pending.len());
                return;
            }
        };
        if results.len() != pending.len() {
            tracing::warn!(
                "OSV answered {} results to {} queries: none taken",
                results.len(),
                pending.len()
            );
            return;
        }
        for (i, result) in pending.into_iter().zip(results) {
            let q = &mut batch[i];
            q.vulns.extend(
                result
                    .get("vulns")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            );
            q.page_token = result.get("next_page_token").and_then(Value::as_str).map(str::to_owned);
            q.answered = true;
        }
    }
    // Pages beyond MAX_PAGES: those queries are not whole, so not answered.
    for q in batch.iter_mut().filter(|q| q.page_token.is_some()) {
        q.answered = false;
    }
}

/// Runs a vulnerabilities job against OSV at `root`.
pub async fn scan(db: &PgPool, job: &ClaimedJob, client: &PoliteClient, root: &Url) -> Result<OsvOutcome, String> {
    let due: Vec<(String, String, String)> =
        sqlx::query_as("SELECT ecosystem, name, version FROM aveloxis.osv_due($1)")
            .bind(job.lease_token)
            .fetch_all(db)
            .await
            .map_err(|e| format!("aveloxis.osv_due: {e}"))?;
    let mut outcome = OsvOutcome {
        queries: due.len(),
        ..Default::default()
    };
    let mut listed: std::collections::BTreeMap<String, Option<String>> = Default::default();
    for chunk in due.chunks(QUERIES_PER_BATCH) {
        let mut batch: Vec<Query> = chunk
            .iter()
            .map(|(ecosystem, name, version)| Query {
                ecosystem: ecosystem.clone(),
                name: name.clone(),
                version: version.clone(),
                vulns: Vec::new(),
                page_token: None,
                answered: false,
            })
            .collect();
        query_batch(client, root, &mut batch).await;
        let answers: Vec<Value> = batch
            .iter()
            .filter(|q| q.answered)
            .map(|q| json!({"ecosystem": q.ecosystem, "name": q.name, "version": q.version, "vulns": q.vulns}))
            .collect();
        outcome.answered += answers.len();
        for q in batch.iter().filter(|q| q.answered) {
            for v in &q.vulns {
                if let Some(id) = v.get("id").and_then(Value::as_str) {
                    listed.insert(
                        id.to_owned(),
                        v.get("modified").and_then(Value::as_str).map(str::to_owned),
                    );
                }
            }
        }
        if !answers.is_empty() {
            crate::queue::stage(db, job, "osv_results", &[json!({"answers": answers}).to_string()])
                .await
                .map_err(|e| format!("staging OSV answers: {e}"))?;
        }
    }
    // OSV answered nothing (down, or refusing): a failure the queue backs off from, not a
    // partial scan to retry at once.
    if outcome.queries > 0 && outcome.answered == 0 {
        return Err(format!(
            "OSV answered none of the {} queries (see the log for why)",
            outcome.queries
        ));
    }
    outcome.advisories = listed.len();
    let (ids, modified): (Vec<String>, Vec<Option<String>>) = listed.into_iter().unzip();
    let needed: Vec<String> = sqlx::query_scalar("SELECT aveloxis.osv_vulns_needed($1, $2, $3::timestamptz[])")
        .bind(job.lease_token)
        .bind(&ids)
        .bind(&modified)
        .fetch_all(db)
        .await
        .map_err(|e| format!("aveloxis.osv_vulns_needed: {e}"))?;
    for id in needed {
        match client.get_json(under(root, &["v1", "vulns", &id]), None).await {
            Ok(Answer::Json(record)) => {
                crate::queue::stage(db, job, "osv_vuln", &[record.to_string()])
                    .await
                    .map_err(|e| format!("staging {id}: {e}"))?;
                outcome.records_fetched += 1;
            }
            // Listed without details for now: kept as an id; its record is asked for again
            // when the version is next asked about (osv.ttl).
            Ok(other) => tracing::warn!(repo = job.repo_id, "OSV record {id}: {other:?}"),
            Err(e) => tracing::warn!(repo = job.repo_id, "OSV record {id}: {e}"),
        }
    }
    outcome.requests = client.requests();
    Ok(outcome)
}
