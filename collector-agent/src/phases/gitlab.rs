//! Collecting one claimed job from GitLab REST v4 (gitlab.com or a self-managed
//! instance): the fewest-calls plan of reference gitlab-parity.md, staged raw (staging
//! contract v1) for the extension's GitLab mappers.
//!
//! - The project (`statistics`, `license`), then every list by the project's numeric id
//!   (it survives renames). Features the project disabled are skipped, not 403-looped.
//! - Issues and merge requests come from their lists, labels, assignees and reviewers
//!   inside: no per-item GET. Per changed issue: its discussions (notes and system notes)
//!   and its state, label and milestone events. Per changed merge request: approvals,
//!   commits, discussions (notes, diff notes, system notes) and the three event lists;
//!   its reviewers' review states when it has reviewers.
//! - Lists walk a stable order (`order_by=created_at&sort=asc`, so an item updated during
//!   the walk keeps its place), filtered by `updated_after` = the last run's start less an
//!   overlap (the queue's `since`). Issues use keyset pagination where the instance
//!   offers it (GitLab 18.3+); a 405 switches this client to offset pagination for good.
//!   Pages are followed by `Link`/`X-Next-Page` until there is none: `X-Total` (absent
//!   above 10,000 results) is never read.
//! - Completeness: the issue count from `issues_statistics` on every run; on a full run
//!   the items each list served and the highest issue and merge request iid.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};

use serde_json::{json, Value};
use sqlx::postgres::PgPool;

use super::api::{fetch_counted, Outcome};
use crate::forge::{Fetched, Forge, ForgeError, Request};
use crate::queue::{stage_with_contexts, ClaimedJob};

/// Whether an instance serves project issues by keyset: unknown until asked, then
/// remembered for the agent's life (one probe per instance).
#[derive(Default)]
pub struct KeysetSupport(AtomicU8);

// 0: not asked yet.
impl KeysetSupport {
    const YES: u8 = 1;
    const NO: u8 = 2;

    fn get(&self) -> u8 {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, yes: bool) {
        self.0.store(if yes { Self::YES } else { Self::NO }, Ordering::Relaxed);
    }
}

/// `group/sub/project` of a GitLab repository URL, URL-encoded as one path segment.
pub fn project_path(repo_git: &str) -> Option<String> {
    let url = url::Url::parse(repo_git).ok()?;
    let segments: Vec<&str> = url.path_segments()?.filter(|s| !s.is_empty()).collect();
    if segments.len() < 2 {
        return None;
    }
    let mut path = segments.join("/");
    if let Some(stripped) = path.strip_suffix(".git") {
        path = stripped.to_string();
    }
    Some(url::form_urlencoded::byte_serialize(path.as_bytes()).collect())
}

/// `updated_after` for an incremental run: the queue's `since` (the last good run's start
/// less its overlap), as GitLab reads it (ISO 8601).
fn updated_after(since: &Option<String>) -> String {
    match since {
        Some(since) => format!(
            "&updated_after={}",
            url::form_urlencoded::byte_serialize(since.as_bytes()).collect::<String>()
        ),
        None => String::new(),
    }
}

struct Collector<'a, F: Forge> {
    forge: &'a F,
    keyset: &'a KeysetSupport,
    db: &'a PgPool,
    job: &'a ClaimedJob,
    progress: Option<&'a indicatif::ProgressBar>,
    outcome: Outcome,
}

/// How a note of a discussion is staged: a system note is an event, a diff note a review
/// comment, any other a comment.
fn note_entity(note: &Value) -> &'static str {
    if note["system"].as_bool() == Some(true) {
        "issue_event"
    } else if note["type"].as_str() == Some("DiffNote") || note["position"].is_object() {
        "review_comment"
    } else {
        "issue_comment"
    }
}

impl<F: Forge> Collector<'_, F> {
    /// Fetches one request, counting it; None for a skipped endpoint (404/403: logged and
    /// counted in the outcome, never a failure of the repository).
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

    /// Every page of a list (or the one object an endpoint returns); None when skipped.
    async fn all(&mut self, endpoint: &str, first: String) -> Result<Option<Vec<Value>>, ForgeError> {
        let mut request = Request::new(first);
        let mut items = Vec::new();
        loop {
            let Some(fetched) = self.fetch(endpoint, request.clone()).await? else {
                return Ok(None);
            };
            let (body, next) = match fetched {
                Fetched::Page { body, next, .. } => (body, next),
                // GitLab's API answers no 304 (gitlab-parity.md §5); never sent an ETag.
                Fetched::NotModified => return Ok(Some(items)),
            };
            match body {
                Value::Array(page) => items.extend(page),
                other => items.push(other),
            }
            match next {
                Some(next) => request = Request::new(next),
                None => return Ok(Some(items)),
            }
        }
    }

    async fn stage(&mut self, entity: &str, items: Vec<(Value, Option<Value>)>) -> Result<(), sqlx::Error> {
        if items.is_empty() {
            return Ok(());
        }
        let (payloads, contexts): (Vec<String>, Vec<Value>) = items
            .into_iter()
            .map(|(item, context)| (item.to_string(), context.unwrap_or(Value::Null)))
            .unzip();
        stage_with_contexts(self.db, self.job, entity, &payloads, &contexts).await?;
        *self.outcome.staged.entry(entity.to_string()).or_default() += payloads.len();
        Ok(())
    }

    /// The project's issues changed since the last run: keyset where the instance offers
    /// it (probed once), else offset pagination in a stable order.
    async fn issues(&mut self, base: &str) -> Result<Option<Vec<Value>>, ForgeError> {
        let filter = updated_after(&self.job.since);
        let offset = format!("{base}/issues?scope=all&state=all&order_by=created_at&sort=asc&per_page=100{filter}");
        if self.keyset.get() == KeysetSupport::NO {
            return self.all("issue", offset).await;
        }
        let keyset = format!(
            "{base}/issues?scope=all&state=all&pagination=keyset&order_by=created_at&sort=asc&per_page=100{filter}"
        );
        match self.all("issue", keyset).await {
            Ok(items) => {
                self.keyset.set(true);
                Ok(items)
            }
            // "Keyset pagination is not yet available for this type of request" (before 18.3),
            // or an instance that refuses it: offset from here on.
            Err(ForgeError::Rejected {
                status: 405, message, ..
            }) => {
                tracing::info!(
                    repo = self.job.repo_id,
                    "keyset pagination refused ({message}); using offset pagination"
                );
                self.keyset.set(false);
                self.all("issue", offset).await
            }
            Err(e) => Err(e),
        }
    }

    /// A changed issue's or merge request's discussions and resource events, staged with
    /// the parent each needs (GitLab numbers issues and merge requests apart).
    async fn item_history(&mut self, base: &str, kind: &str, item: &Value) -> Result<(), ForgeError> {
        let Some(iid) = item["iid"].as_i64() else {
            return Ok(());
        };
        let (collection, parent_kind) = match kind {
            "issue" => ("issues", "issue"),
            _ => ("merge_requests", "pull_request"),
        };
        let parent = json!({"parent_number": iid, "parent_kind": parent_kind});
        let web_url = item["web_url"].as_str().map(str::to_string);
        if let Some(discussions) = self
            .all(
                "discussions",
                format!("{base}/{collection}/{iid}/discussions?per_page=100"),
            )
            .await?
        {
            let mut by_entity: BTreeMap<&'static str, Vec<(Value, Option<Value>)>> = BTreeMap::new();
            for discussion in discussions {
                let notes = discussion["notes"].as_array().cloned().unwrap_or_default();
                let first = notes.first().and_then(|n| n["id"].as_i64());
                for note in notes {
                    let entity = note_entity(&note);
                    let mut context = parent.clone();
                    context["discussion_id"] = discussion["id"].clone();
                    if let Some(url) = &web_url {
                        context["parent_web_url"] = json!(url);
                    }
                    if let Some(first) = first.filter(|f| Some(*f) != note["id"].as_i64()) {
                        context["in_reply_to_id"] = json!(first);
                    }
                    by_entity.entry(entity).or_default().push((note, Some(context)));
                }
            }
            for (entity, notes) in by_entity {
                self.stage(entity, notes).await?;
            }
        }
        for events in [
            "resource_state_events",
            "resource_label_events",
            "resource_milestone_events",
        ] {
            if let Some(list) = self
                .all(events, format!("{base}/{collection}/{iid}/{events}?per_page=100"))
                .await?
            {
                let staged = list.into_iter().map(|e| (e, Some(parent.clone()))).collect();
                self.stage("issue_event", staged).await?;
            }
        }
        Ok(())
    }

    async fn run(&mut self) -> Result<(), ForgeError> {
        let path = project_path(&self.job.repo_git).ok_or_else(|| ForgeError::Rejected {
            url: self.job.repo_git.clone(),
            status: 0,
            message: "not a GitLab project URL (https://<host>/<group>/<project>)".into(),
        })?;
        let full = self.job.since.is_none();
        let mut reported = serde_json::Map::new();

        let Some(project) = self
            .all("repo_info", format!("projects/{path}?statistics=true&license=true"))
            .await?
            .and_then(|mut p| p.pop())
        else {
            return Ok(());
        };
        let Some(id) = project["id"].as_i64() else {
            return Err(ForgeError::Rejected {
                url: self.job.repo_git.clone(),
                status: 200,
                message: "the project object has no numeric id".into(),
            });
        };
        // A renamed or moved project: GitLab answers the old path (redirects); record the
        // current URL.
        if let Some(web_url) = project["web_url"].as_str() {
            let registered = self.job.repo_git.trim_end_matches('/').trim_end_matches(".git");
            if !web_url.eq_ignore_ascii_case(registered) {
                sqlx::query("SELECT aveloxis.record_rename($1, $2)")
                    .bind(self.job.lease_token)
                    .bind(web_url)
                    .execute(self.db)
                    .await?;
                self.outcome.renamed_to = Some(web_url.to_string());
            }
        }
        let enabled = |feature: &str| {
            project[format!("{feature}_access_level")].as_str() != Some("disabled")
                && project[format!("{feature}_enabled")].as_bool() != Some(false)
        };
        let (issues_on, mrs_on) = (enabled("issues"), enabled("merge_requests"));
        for (feature, on) in [("issues", issues_on), ("merge_requests", mrs_on)] {
            if !on {
                self.outcome.skipped.push(format!("{feature}: disabled in the project"));
            }
        }
        self.stage("repo_info", vec![(project, None)]).await?;
        let base = format!("projects/{id}");

        if let Some(members) = self
            .all("contributor", format!("{base}/members/all?per_page=100"))
            .await?
        {
            self.stage("contributor", members.into_iter().map(|m| (m, None)).collect())
                .await?;
        }

        let mut highest = 0;
        if issues_on {
            if let Some(stats) = self
                .all("issues_statistics", format!("{base}/issues_statistics?scope=all"))
                .await?
                .and_then(|mut s| s.pop())
            {
                if let Some(all) = stats["statistics"]["counts"]["all"].as_u64() {
                    reported.insert("issues".into(), json!({"reported": all}));
                }
            }
            if let Some(issues) = self.issues(&base).await? {
                highest += issues.iter().filter_map(|i| i["iid"].as_u64()).max().unwrap_or(0);
                self.stage("issue", issues.iter().map(|i| (i.clone(), None)).collect())
                    .await?;
                for issue in &issues {
                    self.item_history(&base, "issue", issue).await?;
                }
            }
        }

        if mrs_on {
            let filter = updated_after(&self.job.since);
            let mrs = self
                .all(
                    "pull_request",
                    format!(
                        "{base}/merge_requests?scope=all&state=all&order_by=created_at&sort=asc&per_page=100{filter}"
                    ),
                )
                .await?;
            if let Some(mrs) = mrs {
                highest += mrs.iter().filter_map(|m| m["iid"].as_u64()).max().unwrap_or(0);
                if full {
                    reported.insert("pull_requests".into(), json!({"reported": mrs.len()}));
                }
                for mr in mrs {
                    let Some(iid) = mr["iid"].as_i64() else {
                        self.stage("pull_request", vec![(json!({"merge_request": mr}), None)])
                            .await?;
                        continue;
                    };
                    let mut envelope = json!({"merge_request": mr});
                    if let Some(approvals) = self
                        .all("approvals", format!("{base}/merge_requests/{iid}/approvals"))
                        .await?
                        .and_then(|mut a| a.pop())
                    {
                        envelope["approvals"] = approvals;
                    }
                    if let Some(commits) = self
                        .all(
                            "mr_commits",
                            format!("{base}/merge_requests/{iid}/commits?per_page=100"),
                        )
                        .await?
                    {
                        envelope["commits"] = Value::Array(commits);
                    }
                    // Review states (requested changes, reviewed) exist only per MR, and only
                    // for MRs that have reviewers: asked for those alone.
                    if mr["reviewers"].as_array().is_some_and(|r| !r.is_empty()) {
                        if let Some(reviewers) = self
                            .all(
                                "mr_reviewers",
                                format!("{base}/merge_requests/{iid}/reviewers?per_page=100"),
                            )
                            .await?
                        {
                            envelope["reviewers"] = Value::Array(reviewers);
                        }
                    }
                    self.stage("pull_request", vec![(envelope, None)]).await?;
                    self.item_history(&base, "merge_request", &mr).await?;
                }
            }
        }
        if full && highest > 0 {
            reported.insert("issues_and_pull_requests".into(), json!({"reported": highest}));
        }

        // Newest first; a release created before `since` ends the walk (released_at can be
        // back-dated, created_at cannot).
        let mut request = Request::new(format!("{base}/releases?order_by=created_at&sort=desc&per_page=100"));
        let mut releases = Vec::new();
        'pages: loop {
            let Some(Fetched::Page { body, next, .. }) = self.fetch("release", request.clone()).await? else {
                break;
            };
            for release in body.as_array().cloned().unwrap_or_default() {
                if let (Some(since), Some(created)) = (&self.job.since, release["created_at"].as_str()) {
                    if created < since.as_str() {
                        break 'pages;
                    }
                }
                releases.push(release);
            }
            match next {
                Some(next) => request = Request::new(next),
                None => break,
            }
        }
        if full {
            reported.insert("releases".into(), json!({"reported": releases.len()}));
        }
        self.stage("release", releases.into_iter().map(|r| (r, None)).collect())
            .await?;

        if !reported.is_empty() {
            self.outcome.completeness = Some(Value::Object(reported));
        }
        Ok(())
    }
}

/// Collects one GitLab job into staging and returns what was done. The caller drains and
/// completes or fails the job (`api::finish`).
pub async fn collect_gitlab<F: Forge>(
    forge: &F,
    keyset: &KeysetSupport,
    db: &PgPool,
    job: &ClaimedJob,
    progress: Option<&indicatif::ProgressBar>,
) -> Result<Outcome, (Outcome, ForgeError)> {
    let mut collector = Collector {
        forge,
        keyset,
        db,
        job,
        progress,
        outcome: Outcome::default(),
    };
    match collector.run().await {
        Ok(()) => Ok(collector.outcome),
        Err(e) => Err((collector.outcome, e)),
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn project_paths_are_one_encoded_segment() {
        assert_eq!(
            project_path("https://gitlab.com/gitlab-org/gitlab").as_deref(),
            Some("gitlab-org%2Fgitlab")
        );
        assert_eq!(
            project_path("https://gitlab.example.org/group/sub/project.git").as_deref(),
            Some("group%2Fsub%2Fproject")
        );
        assert_eq!(project_path("https://gitlab.com/only-a-group"), None);
    }

    #[test]
    fn notes_are_staged_by_what_they_are() {
        assert_eq!(note_entity(&json!({"system": true, "body": "closed"})), "issue_event");
        assert_eq!(
            note_entity(&json!({"type": "DiffNote", "position": {"new_line": 3}})),
            "review_comment"
        );
        assert_eq!(note_entity(&json!({"type": null, "system": false})), "issue_comment");
    }

    #[test]
    fn incremental_runs_filter_by_updated_after() {
        assert_eq!(updated_after(&None), "");
        assert_eq!(
            updated_after(&Some("2026-11-01T00:00:00+00:00".into())),
            "&updated_after=2026-11-01T00%3A00%3A00%2B00%3A00"
        );
    }
}
