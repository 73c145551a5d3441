//! Collecting one claimed job from GitHub: fetch every entity with the fewest calls,
//! stage it raw (staging contract v1), drain, and report the outcome to the queue.
//!
//! Lists are read newest-updated first and stop at the first item older than the
//! incremental `since`, so the URL of each list's first page never changes between runs:
//! its ETag makes a no-change collection a set of 304s (no quota, nothing staged).
//! Labels and assignees come inside issue and pull request objects (no per-item calls);
//! per pull request only what the list lacks is fetched: reviews, commits, files and
//! requested reviewers, each once.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use sqlx::postgres::PgPool;

use crate::forge::{EndpointFailure, Fetched, Forge, ForgeError, Request};
use crate::queue::{report, stage, ClaimedJob};

/// What one collection did, reported to `aveloxis.complete` (without `state`) and shown.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Items staged per entity.
    pub staged: BTreeMap<String, usize>,
    pub requests: usize,
    pub not_modified: usize,
    /// Endpoints skipped (404/403: not applicable), with the reason.
    pub skipped: Vec<String>,
    /// ETags of the lists' first pages, keyed by endpoint.
    pub etags: BTreeMap<String, String>,
    /// The repository's new URL, when collection found it renamed.
    pub renamed_to: Option<String>,
    /// What the forge reports, for the completeness ledger (`{"<entity>": {"reported": n}}`;
    /// the database counts what was gathered): the repository object's open count and the
    /// highest issue/PR number on every run, and on a full collection the number of
    /// items each list served.
    pub completeness: Option<Value>,
}

impl Outcome {
    /// One line for operators: requests, 304s, what was staged, what was skipped.
    pub fn summary(&self) -> String {
        let skipped = match self.skipped.len() {
            0 => String::new(),
            n => format!(", {n} endpoints skipped"),
        };
        format!(
            "{} requests, {} not modified, {} items staged {:?}{skipped}",
            self.requests,
            self.not_modified,
            self.staged.values().sum::<usize>(),
            self.staged
        )
    }

    pub fn report(&self) -> Value {
        json!({
            "complete": true,
            "counts": self.staged,
            "requests": self.requests,
            "not_modified": self.not_modified,
            "skipped": self.skipped,
            "renamed_to": self.renamed_to,
            "completeness": self.completeness,
            "state": {"etags": self.etags},
        })
    }
}

/// `owner/name` of a GitHub repository URL.
pub fn owner_and_name(repo_git: &str) -> Option<(String, String)> {
    let url = url::Url::parse(repo_git).ok()?;
    let mut parts = url.path_segments()?.filter(|s| !s.is_empty());
    let owner = parts.next()?.to_string();
    let name = parts.next()?.trim_end_matches(".git").to_string();
    Some((owner, name))
}

/// One request of a collection (any forge), counted in the outcome and shown on the
/// progress bar; None for a skipped endpoint. Only the repository's own object
/// (`repo_info`, after redirects) answering 404 or 410 makes the repository gone (the job
/// fails as `gone` and every phase is sidelined). Anywhere else 404, 403, 410 and a
/// redirect that cannot be followed skip that endpoint alone, logged and counted in the
/// report (reference 001: skippable).
pub(crate) async fn fetch_counted<F: Forge>(
    forge: &F,
    job: &ClaimedJob,
    outcome: &mut Outcome,
    progress: Option<&indicatif::ProgressBar>,
    endpoint: &str,
    request: Request,
) -> Result<Option<Fetched>, ForgeError> {
    outcome.requests += 1;
    if let Some(bar) = progress {
        bar.set_message(format!(
            "{endpoint} ({} requests, {} items staged)",
            outcome.requests,
            outcome.staged.values().sum::<usize>()
        ));
        bar.tick();
    }
    match forge.fetch(&request).await {
        Ok(fetched) => Ok(Some(fetched)),
        Err(e) => match e.at_endpoint(endpoint == "repo_info") {
            EndpointFailure::Skip(e) => {
                tracing::info!(repo = job.repo_id, endpoint, "skipped: {e}");
                outcome.skipped.push(format!("{endpoint}: {e}"));
                Ok(None)
            }
            EndpointFailure::Fail(e) => Err(e),
        },
    }
}

struct Collector<'a, F: Forge> {
    forge: &'a F,
    db: &'a PgPool,
    job: &'a ClaimedJob,
    progress: Option<&'a indicatif::ProgressBar>,
    previous_etags: BTreeMap<String, String>,
    outcome: Outcome,
}

/// The item's time that decides whether an incremental list can stop.
fn item_time(item: &Value) -> Option<&str> {
    item.get("updated_at")
        .or_else(|| item.get("created_at"))
        .and_then(Value::as_str)
}

impl<F: Forge> Collector<'_, F> {
    /// Fetches one request, counting it; None for a skipped endpoint.
    async fn fetch(&mut self, endpoint: &str, request: Request) -> Result<Option<Fetched>, ForgeError> {
        fetch_counted(
            self.forge,
            self.job,
            &mut self.outcome,
            self.progress,
            endpoint,
            request,
        )
        .await
    }

    async fn stage(&mut self, entity: &str, payloads: Vec<String>) -> Result<(), sqlx::Error> {
        if payloads.is_empty() {
            return Ok(());
        }
        stage(self.db, self.job, entity, &payloads).await?;
        *self.outcome.staged.entry(entity.to_string()).or_default() += payloads.len();
        Ok(())
    }

    /// Walks a list newest first, stopping at items older than `since`; returns the
    /// items, or None when the first page was not modified or the endpoint skipped.
    async fn list(&mut self, endpoint: &str, first: String) -> Result<Option<Vec<Value>>, ForgeError> {
        let mut request = Request::new(first).with_etag(self.previous_etags.get(endpoint).cloned());
        let mut items = Vec::new();
        let mut first_page = true;
        loop {
            let Some(fetched) = self.fetch(endpoint, request.clone()).await? else {
                return Ok(None);
            };
            let (body, etag, next) = match fetched {
                Fetched::NotModified => {
                    self.outcome.not_modified += 1;
                    if let Some(etag) = self.previous_etags.get(endpoint) {
                        self.outcome.etags.insert(endpoint.to_string(), etag.clone());
                    }
                    return Ok(None);
                }
                Fetched::Page { body, etag, next, .. } => (body, etag, next),
            };
            if first_page {
                if let Some(etag) = etag {
                    self.outcome.etags.insert(endpoint.to_string(), etag);
                }
                first_page = false;
            }
            // A single object (the repository) is always taken; lists stop at `since`.
            let (page, is_list) = match body {
                Value::Array(page) => (page, true),
                other => (vec![other], false),
            };
            let mut older = false;
            for item in page {
                match (&self.job.since, item_time(&item).filter(|_| is_list)) {
                    (Some(since), Some(t)) if t < since.as_str() => older = true,
                    _ => items.push(item),
                }
            }
            match next {
                Some(next) if !older => request = Request::new(next),
                _ => return Ok(Some(items)),
            }
        }
    }

    /// Records a rename the repository object reveals (its `html_url` is not the
    /// registered URL) and moves `base` to the current name.
    async fn follow_rename(&mut self, repo: &Value, base: &mut String) -> Result<(), ForgeError> {
        let (Some(html_url), Some(full_name)) = (
            repo.get("html_url").and_then(Value::as_str),
            repo.get("full_name").and_then(Value::as_str),
        ) else {
            return Ok(());
        };
        let current = format!("repos/{full_name}");
        if current.eq_ignore_ascii_case(base) {
            return Ok(());
        }
        sqlx::query("SELECT aveloxis.record_rename($1, $2)")
            .bind(self.job.lease_token)
            .bind(html_url)
            .execute(self.db)
            .await?;
        tracing::info!(repo = self.job.repo_id, from = %self.job.repo_git, to = html_url, "repository renamed");
        self.outcome.renamed_to = Some(html_url.to_string());
        *base = current;
        Ok(())
    }

    async fn run(&mut self) -> Result<(), ForgeError> {
        let (owner, name) = owner_and_name(&self.job.repo_git).ok_or_else(|| ForgeError::Rejected {
            url: self.job.repo_git.clone(),
            status: 0,
            message: "not a GitHub repository URL".into(),
        })?;
        let mut base = format!("repos/{owner}/{name}");

        let mut reported_open = Value::Null;
        if let Some(info) = self.list("repo_info", base.clone()).await? {
            if let Some(open) = info.first().and_then(|r| r.get("open_issues_count")) {
                reported_open = open.clone();
            }
            // A renamed or transferred repository (GitHub redirects the old name): record the
            // new name, and collect the rest under it.
            if let Some(repo) = info.first() {
                self.follow_rename(repo, &mut base).await?;
            }
            self.stage("repo_info", info.iter().map(Value::to_string).collect())
                .await?;
        }
        let simple = [
            ("contributor", format!("{base}/contributors?per_page=100")),
            (
                "issue",
                format!("{base}/issues?state=all&sort=updated&direction=desc&per_page=100"),
            ),
            (
                "issue_comment",
                format!("{base}/issues/comments?sort=updated&direction=desc&per_page=100"),
            ),
            ("issue_event", format!("{base}/issues/events?per_page=100")),
            (
                "review_comment",
                format!("{base}/pulls/comments?sort=updated&direction=desc&per_page=100"),
            ),
            ("release", format!("{base}/releases?per_page=100")),
        ];
        let full = self.job.since.is_none();
        let mut reported = serde_json::Map::new();
        if reported_open.is_u64() {
            reported.insert(
                "open_issues_and_pull_requests".into(),
                json!({"reported": reported_open}),
            );
        }
        for (entity, first) in simple {
            if let Some(items) = self.list(entity, first).await? {
                if entity == "issue" {
                    // Issues and pull requests share one number sequence: the highest number
                    // seen is how many were ever opened (the list holds pull requests too).
                    if let Some(highest) = items.iter().filter_map(|i| i["number"].as_u64()).max() {
                        reported.insert("issues_and_pull_requests".into(), json!({"reported": highest}));
                    }
                    if full {
                        let plain = items.iter().filter(|i| !is_pull_request(i)).count();
                        reported.insert("issues".into(), json!({"reported": plain}));
                    }
                } else if full {
                    let ledger = match entity {
                        "issue_comment" => Some("issue_comments"),
                        "review_comment" => Some("review_comments"),
                        "release" => Some("releases"),
                        _ => None,
                    };
                    if let Some(ledger) = ledger {
                        reported.insert(ledger.into(), json!({"reported": items.len()}));
                    }
                }
                self.stage(entity, items.iter().map(Value::to_string).collect()).await?;
            }
        }

        let pulls = self
            .list(
                "pull_request",
                format!("{base}/pulls?state=all&sort=updated&direction=desc&per_page=100"),
            )
            .await?;
        if full {
            if let Some(pulls) = &pulls {
                reported.insert("pull_requests".into(), json!({"reported": pulls.len()}));
            }
        }
        if !reported.is_empty() {
            self.outcome.completeness = Some(Value::Object(reported));
        }
        for pr in pulls.unwrap_or_default() {
            let Some(number) = pr.get("number").and_then(Value::as_i64) else {
                self.stage("pull_request", vec![json!({"pull_request": pr}).to_string()])
                    .await?;
                continue;
            };
            let mut envelope = json!({"pull_request": pr});
            for (child, path) in [
                ("reviews", format!("{base}/pulls/{number}/reviews?per_page=100")),
                ("commits", format!("{base}/pulls/{number}/commits?per_page=100")),
                ("files", format!("{base}/pulls/{number}/files?per_page=100")),
                (
                    "requested_reviewers",
                    format!("{base}/pulls/{number}/requested_reviewers"),
                ),
            ] {
                // Children are complete lists (the drain syncs them): no `since`, no ETag.
                let mut request = Request::new(path);
                let mut all = Vec::new();
                let mut whole = true;
                loop {
                    match self.fetch(child, request.clone()).await? {
                        Some(Fetched::Page { body, next, .. }) => {
                            match body {
                                Value::Array(page) => all.extend(page),
                                object => {
                                    envelope[child] = object;
                                    break;
                                }
                            }
                            match next {
                                Some(next) => request = Request::new(next),
                                None => {
                                    envelope[child] = Value::Array(std::mem::take(&mut all));
                                    break;
                                }
                            }
                        }
                        // Skipped (or unchanged): leave the list out, so the drain keeps what it has.
                        _ => {
                            whole = false;
                            break;
                        }
                    }
                }
                if !whole {
                    tracing::debug!(repo = self.job.repo_id, number, child, "left out of the envelope");
                }
            }
            self.stage("pull_request", vec![envelope.to_string()]).await?;
        }
        Ok(())
    }
}

/// Whether an item of the issues list is a pull request (old recordings carry a
/// "pull_request" key with null URLs on plain issues).
fn is_pull_request(item: &Value) -> bool {
    item["pull_request"]["url"].is_string() || item["pull_request"]["html_url"].is_string()
}

/// Collects one GitHub job into staging and returns what was done. The caller drains and
/// completes or fails the job.
pub async fn collect_github<F: Forge>(
    forge: &F,
    db: &PgPool,
    job: &ClaimedJob,
    progress: Option<&indicatif::ProgressBar>,
) -> Result<Outcome, (Outcome, ForgeError)> {
    let previous_etags = job
        .agent_state
        .get("etags")
        .and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default();
    // A full collection asks for everything again, unconditionally.
    let previous_etags = if job.since.is_none() {
        BTreeMap::new()
    } else {
        previous_etags
    };
    let mut collector = Collector {
        forge,
        db,
        job,
        progress,
        previous_etags,
        outcome: Outcome::default(),
    };
    match collector.run().await {
        Ok(()) => Ok(collector.outcome),
        Err(e) => Err((collector.outcome, e)),
    }
}

/// Drains what was staged and completes the job; on a collection error, drains what was
/// staged anyway (nothing fetched is lost) and fails the job with the error's class.
pub async fn finish(
    db: &PgPool,
    agent: &str,
    job: &ClaimedJob,
    result: Result<Outcome, (Outcome, ForgeError)>,
) -> Result<Outcome, sqlx::Error> {
    match result {
        Ok(outcome) => {
            report(db, agent, job, true, Ok(outcome.report())).await?;
            Ok(outcome)
        }
        Err((outcome, error)) => {
            report(db, agent, job, true, Err((error.to_string(), error.class()))).await?;
            Ok(outcome)
        }
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn owner_and_name_of_urls() {
        assert_eq!(
            owner_and_name("https://github.com/PyGithub/PyGithub"),
            Some(("PyGithub".into(), "PyGithub".into()))
        );
        assert_eq!(
            owner_and_name("https://github.com/o/r.git/"),
            Some(("o".into(), "r".into()))
        );
        assert_eq!(owner_and_name("https://github.com/o"), None);
    }
}
