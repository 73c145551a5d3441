//! A local GitLab REST v4 server replaying recorded GitLab traffic as one project.
//!
//! The recordings (`../shared/fixtures/gitlab`) hold one real gitlab.com project's lists
//! (apache/incubator-devlake's recording of `gitlab-data/snowflake_spend`: 16 issues, 18
//! merge requests, their notes and commits, 6 members) and single answers of other
//! projects (approvals, diff-note discussions, resource events, releases). The server
//! serves them as GitLab does: lists filtered by `updated_after`, in `created_at` order,
//! paged by offset (`X-Next-Page`, `X-Page`, no `X-Total` when asked to behave like a list
//! above 10,000) or by `Link` alone, `per_page` clamped, keyset pagination refused with a
//! 405 (an instance before 18.3) unless enabled, `license` only with `license=true`, a
//! 429 with `Retry-After` once where asked. Every request is recorded with its token.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::fixture_path;

/// One recorded answer body: `.json` as is, `.txt` after its headers, `.csv` (DevLake's
/// raw tables) one item per row's `data`, with the row's request URL.
pub fn recorded(path: &str) -> Vec<(Value, Option<String>)> {
    let file = fixture_path(&format!("gitlab/{path}"));
    let text = std::fs::read_to_string(&file).unwrap();
    let one = |v: Value| match v {
        Value::Array(items) => items.into_iter().map(|i| (i, None)).collect(),
        other => vec![(other, None)],
    };
    if path.ends_with(".txt") {
        let (_, body) = text.split_once("\n\n").expect("headers, a blank line, the body");
        one(serde_json::from_str(body).unwrap())
    } else if path.ends_with(".csv") {
        csv::Reader::from_reader(text.as_bytes())
            .deserialize::<BTreeMap<String, String>>()
            .map(|row| {
                let row = row.unwrap();
                (serde_json::from_str(&row["data"]).unwrap(), row.get("url").cloned())
            })
            .collect()
    } else {
        one(serde_json::from_str(&text).unwrap())
    }
}

fn items(path: &str) -> Vec<Value> {
    recorded(path).into_iter().map(|(v, _)| v).collect()
}

/// A project as the server serves it.
#[derive(Clone, Debug)]
pub struct GitlabProject {
    /// `group/project`.
    pub path: String,
    pub id: i64,
    pub project: Value,
    pub license: Value,
    pub members: Vec<Value>,
    pub issues: Vec<Value>,
    pub merge_requests: Vec<Value>,
    /// Per-item lists and objects by path under the project: `merge_requests/1/approvals`,
    /// `issues/3/discussions`... Lists not here are empty.
    pub children: BTreeMap<String, Value>,
    pub releases: Vec<Value>,
}

/// The DevLake recording of gitlab.com's `gitlab-data/snowflake_spend` (project 12345678)
/// as one project, with the other recordings attached to its items: gitea's approvals
/// (with `approved_at`) to merge request 1 and danger-js's (without) to 3, narkoz's
/// diff-note discussion to merge request 1, narkoz's state and label events to issue 1
/// and merge request 1, gitea's issue discussion (system notes: milestone, close) to issue
/// 2, releases from gitea and narkoz. The project object is perceval's recording, its
/// identity (id, path, URL) made this project's; the licence GitLab adds with
/// `license=true` is the documented MIT object.
pub fn devlake_project() -> GitlabProject {
    let (id, path) = (12345678, "gitlab-data/snowflake_spend".to_string());
    let mut project = items("project/perceval/project.json").remove(0);
    project["id"] = json!(id);
    project["path_with_namespace"] = json!(path);
    project["name"] = json!("snowflake_spend");
    project["web_url"] = json!(format!("https://gitlab.com/{path}"));
    project["http_url_to_repo"] = json!(format!("https://gitlab.com/{path}.git"));
    project["issues_access_level"] = json!("enabled");
    project["merge_requests_access_level"] = json!("enabled");
    let license = json!({"key": "mit", "name": "MIT License", "nickname": null,
                         "html_url": "http://choosealicense.com/licenses/mit/",
                         "source_url": "https://opensource.org/licenses/MIT"});
    let members = items("members/devlake/_raw_gitlab_api_users.csv");
    let issues = items("issues/devlake/_raw_gitlab_api_issues.csv");
    let merge_requests = items("merge_requests/devlake/_raw_gitlab_api_merge_requests.csv");

    let mut children: BTreeMap<String, Value> = BTreeMap::new();
    // DevLake's notes (system and user) of merge request N, each its own discussion, as
    // /discussions serves individual notes.
    for (note, url) in recorded("notes/devlake/_raw_gitlab_api_merge_request_notes.csv") {
        let iid = mr_iid_of(url.as_deref().unwrap());
        let list = children
            .entry(format!("merge_requests/{iid}/discussions"))
            .or_insert_with(|| json!([]));
        list.as_array_mut().unwrap().push(json!({
            "id": format!("d{}", note["id"]), "individual_note": true, "notes": [note]
        }));
    }
    for (commit, url) in recorded("mr_commits/devlake/_raw_gitlab_api_merge_request_commits.csv") {
        let iid = mr_iid_of(url.as_deref().unwrap());
        children
            .entry(format!("merge_requests/{iid}/commits"))
            .or_insert_with(|| json!([]))
            .as_array_mut()
            .unwrap()
            .push(commit);
    }
    let diff_notes = items("discussions/narkoz-gitlab/merge_request_discussions.json");
    children
        .entry("merge_requests/1/discussions".into())
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .unwrap()
        .extend(diff_notes);
    children.insert(
        "merge_requests/1/approvals".into(),
        items("merge_requests/gitea/merge_request_2_approvals.txt").remove(0),
    );
    children.insert(
        "merge_requests/3/approvals".into(),
        recorded_exchange("merge_requests/danger-js/getMergeRequestApprovals.json"),
    );
    children.insert(
        "issues/1/resource_state_events".into(),
        json!(items("resource_events/narkoz-gitlab/issue_resource_state_events.json")),
    );
    children.insert(
        "issues/1/resource_label_events".into(),
        json!(items("resource_events/narkoz-gitlab/resource_label_events.json")),
    );
    children.insert(
        "merge_requests/1/resource_state_events".into(),
        json!(items("resource_events/narkoz-gitlab/mr_resource_state_events.json")),
    );
    children.insert(
        "issues/2/discussions".into(),
        json!(items("discussions/gitea/issue_2_discussions.txt")),
    );
    let mut releases = items("releases/gitea/releases_page1.txt");
    releases.extend(items("releases/narkoz-gitlab/project_releases.json"));
    GitlabProject {
        path,
        id,
        project,
        license,
        members,
        issues,
        merge_requests,
        children,
        releases,
    }
}

/// The response body of a nock-style recording's first exchange.
fn recorded_exchange(path: &str) -> Value {
    let text = std::fs::read_to_string(fixture_path(&format!("gitlab/{path}"))).unwrap();
    let exchanges: Vec<Value> = serde_json::from_str(&text).unwrap();
    exchanges[0]["response"].clone()
}

fn mr_iid_of(url: &str) -> i64 {
    let tail = url.split("/merge_requests/").nth(1).expect("a merge request URL");
    tail.split('/').next().unwrap().parse().unwrap()
}

/// How the server pages and misbehaves.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    /// `per_page` is clamped to this (GitLab clamps to 100).
    pub max_per_page: usize,
    /// Whether project issues page by keyset (GitLab 18.3+); else a 405.
    pub keyset: bool,
    /// Lists (by name: `issues`, `merge_requests`, ...) paged by `Link` alone, without
    /// `X-Next-Page`.
    pub link_only: BTreeSet<String>,
    /// Omit `X-Total`/`X-Total-Pages` (GitLab does above 10,000 results).
    pub no_totals: bool,
    /// The first request whose path ends with this answers 429 with `Retry-After: 1`.
    pub throttle_once: Option<String>,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            max_per_page: 100,
            keyset: false,
            link_only: BTreeSet::new(),
            no_totals: false,
            throttle_once: None,
        }
    }
}

struct State {
    project: GitlabProject,
    options: ReplayOptions,
    throttled: bool,
}

struct Responder {
    origin: String,
    state: Arc<Mutex<State>>,
}

fn query_of(request: &Request) -> BTreeMap<String, String> {
    request
        .url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

impl Responder {
    fn json(status: u16, body: &Value) -> ResponseTemplate {
        ResponseTemplate::new(status)
            .set_body_raw(body.to_string().into_bytes(), "application/json")
            .append_header("RateLimit-Limit", "2000")
            .append_header("RateLimit-Remaining", "1999")
            .append_header("RateLimit-Name", "throttle_authenticated_api")
    }

    /// One page of a list, with GitLab's offset (or Link-only, or keyset) headers.
    fn page(&self, request: &Request, name: &str, mut list: Vec<Value>, state: &State) -> ResponseTemplate {
        let query = query_of(request);
        // "updated on or after the given time" (GitLab's API documentation).
        if let Some(after) = query.get("updated_after") {
            list.retain(|i| {
                i["updated_at"]
                    .as_str()
                    .is_some_and(|u| timestamp(u) >= timestamp(after))
            });
        }
        let per_page = query
            .get("per_page")
            .and_then(|p| p.parse::<usize>().ok())
            .unwrap_or(20)
            .clamp(1, state.options.max_per_page);
        let keyset = query.get("pagination").map(String::as_str) == Some("keyset");
        let page: usize = if keyset {
            query.get("cursor").and_then(|c| c.parse().ok()).unwrap_or(1)
        } else {
            query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1)
        };
        let pages = list.len().div_ceil(per_page).max(1);
        let body: Vec<Value> = list.into_iter().skip((page - 1) * per_page).take(per_page).collect();
        let mut t = Self::json(200, &Value::Array(body));
        let link_to = |target: usize| {
            let mut url = request.url.clone();
            let kept: Vec<(String, String)> = url
                .query_pairs()
                .filter(|(k, _)| k != "page" && k != "cursor")
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            url.query_pairs_mut()
                .clear()
                .extend_pairs(kept)
                .append_pair(if keyset { "cursor" } else { "page" }, &target.to_string());
            format!("{}{}?{}", self.origin, url.path(), url.query().unwrap_or(""))
        };
        if page < pages {
            t = t.append_header("Link", format!("<{}>; rel=\"next\"", link_to(page + 1)));
        }
        if keyset {
            return t;
        }
        if !state.options.link_only.contains(name) {
            let next = if page < pages {
                (page + 1).to_string()
            } else {
                String::new()
            };
            t = t
                .append_header("X-Page", page.to_string())
                .append_header("X-Per-Page", per_page.to_string())
                .append_header("X-Next-Page", next)
                .append_header(
                    "X-Prev-Page",
                    if page > 1 {
                        (page - 1).to_string()
                    } else {
                        String::new()
                    },
                );
            if !state.options.no_totals {
                t = t.append_header("X-Total-Pages", pages.to_string());
            }
        }
        t
    }
}

/// Milliseconds since the epoch of a GitLab timestamp (RFC 3339), for `updated_after`
/// and the `created_at` order.
fn timestamp(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .unwrap_or_else(|e| panic!("the replay read a timestamp it cannot parse: {text:?}: {e}"))
        .timestamp_millis()
}

fn by_created(mut list: Vec<Value>) -> Vec<Value> {
    list.sort_by(|a, b| {
        (a["created_at"].as_str().map(timestamp), a["id"].as_i64())
            .cmp(&(b["created_at"].as_str().map(timestamp), b["id"].as_i64()))
    });
    list
}

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut state = self.state.lock().unwrap();
        let path = request.url.path().to_string();
        if let Some(suffix) = state.options.throttle_once.clone() {
            if !state.throttled && path.ends_with(&suffix) {
                state.throttled = true;
                let reset = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs()
                    + 1;
                return ResponseTemplate::new(429)
                    .set_body_raw(b"Retry later".to_vec(), "text/plain")
                    .append_header("Retry-After", "1")
                    .append_header("RateLimit-Limit", "2000")
                    .append_header("RateLimit-Remaining", "0")
                    .append_header("RateLimit-Reset", reset.to_string());
            }
        }
        let project = state.project.clone();
        let encoded: String = url_encode(&project.path);
        let rest = path
            .strip_prefix("/api/v4/projects/")
            .map(|r| r.to_string())
            .unwrap_or_default();
        let (head, tail) = match rest.split_once('/') {
            Some((h, t)) => (h.to_string(), t.to_string()),
            None => (rest.clone(), String::new()),
        };
        if head != project.id.to_string() && head != encoded && head != project.path {
            return Self::json(404, &json!({"message": "404 Project Not Found"}));
        }
        let query = query_of(request);
        match tail.as_str() {
            "" => {
                let mut p = project.project.clone();
                if query.get("license").map(String::as_str) == Some("true") {
                    p["license"] = project.license.clone();
                }
                Self::json(200, &p)
            }
            "members/all" => self.page(request, "members", project.members.clone(), &state),
            "issues_statistics" => {
                let opened = project.issues.iter().filter(|i| i["state"] == "opened").count();
                let all = project.issues.len();
                Self::json(
                    200,
                    &json!({"statistics": {"counts": {"all": all, "closed": all - opened, "opened": opened}}}),
                )
            }
            "issues" => {
                if query.get("pagination").map(String::as_str) == Some("keyset") && !state.options.keyset {
                    return Self::json(
                        405,
                        &json!({"message": "405 Method Not Allowed: Keyset pagination is not yet available for this type of request"}),
                    );
                }
                self.page(request, "issues", by_created(project.issues.clone()), &state)
            }
            "merge_requests" => self.page(
                request,
                "merge_requests",
                by_created(project.merge_requests.clone()),
                &state,
            ),
            "releases" => {
                let mut list = by_created(project.releases.clone());
                list.reverse();
                self.page(request, "releases", list, &state)
            }
            child => match project.children.get(child) {
                Some(Value::Array(list)) => self.page(request, child, list.clone(), &state),
                Some(object) => Self::json(200, object),
                None if child.ends_with("/approvals") => {
                    Self::json(200, &json!({"approved": false, "approved_by": []}))
                }
                None if child.starts_with("merge_requests/") || child.starts_with("issues/") => {
                    let item = child.split('/').nth(1).and_then(|i| i.parse::<i64>().ok());
                    let list = if child.starts_with("issues/") {
                        &project.issues
                    } else {
                        &project.merge_requests
                    };
                    if list.iter().any(|i| i["iid"].as_i64() == item) {
                        self.page(request, child, Vec::new(), &state)
                    } else {
                        Self::json(404, &json!({"message": "404 Not found"}))
                    }
                }
                None => Self::json(404, &json!({"message": "404 Not found"})),
            },
        }
    }
}

fn url_encode(path: &str) -> String {
    path.replace('/', "%2F")
}

pub struct GitlabReplay {
    server: MockServer,
    state: Arc<Mutex<State>>,
}

impl GitlabReplay {
    pub async fn start(project: GitlabProject, options: ReplayOptions) -> GitlabReplay {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(State {
            project,
            options,
            throttled: false,
        }));
        server
            .register(Mock::given(wiremock::matchers::method("GET")).respond_with(Responder {
                origin: server.uri(),
                state: state.clone(),
            }))
            .await;
        GitlabReplay { server, state }
    }

    /// The API root to give the agent (`--gitlab-api-url`).
    pub fn api_url(&self) -> String {
        format!("{}/api/v4/", self.server.uri())
    }

    /// Changes what the server serves from now on.
    pub fn update(&self, change: impl FnOnce(&mut GitlabProject)) {
        change(&mut self.state.lock().unwrap().project);
    }

    /// Every request received: (path and query, the PRIVATE-TOKEN or Authorization sent).
    pub async fn requests(&self) -> Vec<(String, Option<String>)> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|r| {
                let pq = match r.url.query() {
                    Some(q) => format!("{}?{q}", r.url.path()),
                    None => r.url.path().to_string(),
                };
                let token = r
                    .headers
                    .get("private-token")
                    .or_else(|| r.headers.get("authorization"))
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                (pq, token)
            })
            .collect()
    }
}
