//! A replay server for the recorded forge traffic of `../shared/fixtures` (nock-style
//! JSON: `[{"scope", "method", "path", "status", "response", "rawHeaders"}]`), on
//! localhost, built on wiremock.
//!
//! Each recorded exchange answers its method and exact path-and-query (query parameters in
//! any order) with the recorded status, headers and body; `Link` and `Location` URLs that
//! pointed at the recorded host point at the replay server instead, so a client follows
//! them here like a GitHub Enterprise client would. Faults are injected in front of the
//! recordings in the forms GitHub uses: status sequences (5xx, 401, 404, 301...), primary
//! and secondary rate limits, slow and truncated answers.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The replay key of a request in repository mode: the lower-case path and the `page`
/// parameter, as `path#page`. Takes a path and query, or an absolute URL (a `Link` target).
pub fn page_key(path_or_url: &str) -> String {
    let path_and_query = match path_or_url.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("", |i| &rest[i..]),
        None => path_or_url,
    };
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    let page = query.split('&').find_map(|p| p.strip_prefix("page=")).unwrap_or("1");
    format!("{}#{page}", path.to_ascii_lowercase())
}

/// A request URL's path and query, as recordings write them.
fn path_and_query(request: &Request) -> String {
    match request.url.query() {
        Some(q) => format!("{}?{q}", request.url.path()),
        None => request.url.path().to_string(),
    }
}

/// The `rel="next"` target of an exchange's `Link` header, if it has one.
pub fn next_page(e: &Exchange) -> Option<String> {
    e.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("link"))
        .and_then(|(_, v)| aveloxis_agent::forge::next_link(v))
}

/// Every GitHub recording of `../shared/fixtures`, as paths relative to it, in a stable order.
pub fn github_fixtures() -> Vec<String> {
    let root = fixture_path("github");
    let mut files = Vec::new();
    for kind in std::fs::read_dir(&root).unwrap() {
        for source in std::fs::read_dir(kind.unwrap().path()).unwrap() {
            for file in std::fs::read_dir(source.unwrap().path()).unwrap() {
                let file = file.unwrap().path();
                if file.extension().is_some_and(|e| e == "json") {
                    files.push(
                        file.strip_prefix(root.parent().unwrap())
                            .unwrap()
                            .to_string_lossy()
                            .into_owned(),
                    );
                }
            }
        }
    }
    files.sort();
    files
}

struct SamePage(String);

impl wiremock::Match for SamePage {
    fn matches(&self, request: &Request) -> bool {
        page_key(&path_and_query(request)) == self.0
    }
}

/// Answers 304 to a request whose If-None-Match is the recorded ETag, else the recording.
struct Conditional {
    etag: Option<String>,
    page: ResponseTemplate,
}

impl Respond for Conditional {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let sent = request.headers.get("if-none-match").and_then(|v| v.to_str().ok());
        match (&self.etag, sent) {
            (Some(etag), Some(sent)) if etag == sent => ResponseTemplate::new(304)
                .append_header("ETag", etag.as_str())
                .append_header("X-RateLimit-Remaining", "4999")
                .append_header("X-RateLimit-Reset", "4102444800"),
            _ => self.page.clone(),
        }
    }
}

use crate::fixture_path;

/// One recorded exchange.
#[derive(Clone, Debug)]
pub struct Exchange {
    pub scope: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub response: Value,
    pub headers: Vec<(String, String)>,
}

/// Reads a recording of `../shared/fixtures` (path relative to it).
pub fn exchanges(fixture: &str) -> Vec<Exchange> {
    let path = fixture_path(fixture);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let records: Vec<Value> = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    records
        .into_iter()
        .map(|r| {
            let raw: Vec<String> = r["rawHeaders"]
                .as_array()
                .map(|a| a.iter().map(|v| v.as_str().unwrap_or_default().to_string()).collect())
                .unwrap_or_default();
            Exchange {
                scope: r["scope"].as_str().unwrap_or_default().to_string(),
                method: r["method"].as_str().unwrap_or("GET").to_string(),
                path: r["path"].as_str().unwrap_or_default().to_string(),
                status: r["status"].as_u64().unwrap_or(200) as u16,
                response: r["response"].clone(),
                headers: raw
                    .chunks(2)
                    .filter(|c| c.len() == 2)
                    .map(|c| (c[0].clone(), c[1].clone()))
                    .collect(),
            }
        })
        .collect()
}

/// Path and query with the query parameters sorted: how requests and recordings match.
pub fn normalized(path_and_query: &str) -> String {
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    let mut params: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    params.sort_unstable();
    if params.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", params.join("&"))
    }
}

struct ExactPath(String);

impl wiremock::Match for ExactPath {
    fn matches(&self, request: &Request) -> bool {
        normalized(&path_and_query(request)) == self.0
    }
}

/// Headers that describe the recorded transfer, not the resource: not replayed.
fn replayable(name: &str) -> bool {
    !matches!(
        name.to_ascii_lowercase().as_str(),
        "content-length" | "transfer-encoding" | "content-encoding" | "connection"
    )
}

pub struct ReplayServer {
    server: MockServer,
}

impl ReplayServer {
    pub async fn start() -> ReplayServer {
        ReplayServer {
            server: MockServer::start().await,
        }
    }

    /// The API root to give a client, with a trailing slash.
    pub fn api_url(&self) -> String {
        format!("{}/", self.server.uri())
    }

    /// Points a recorded URL of `scope` at the replay server.
    fn rewrite(&self, scope: &str, value: &str) -> String {
        let host = scope.trim_end_matches(":443");
        value.replace(host, &self.server.uri())
    }

    /// Serves every exchange of a recording. Exchanges of one path are answered in the
    /// recorded order, each once, and the last one from then on.
    pub async fn load(&self, fixture: &str) {
        let mut by_path: BTreeMap<(String, String), Vec<Exchange>> = BTreeMap::new();
        for e in exchanges(fixture) {
            by_path
                .entry((e.method.clone(), normalized(&e.path)))
                .or_default()
                .push(e);
        }
        for ((method, path), list) in by_path {
            let last = list.len() - 1;
            for (i, e) in list.into_iter().enumerate() {
                let mut mock = Mock::given(wiremock::matchers::method(method.as_str()))
                    .and(ExactPath(path.clone()))
                    .respond_with(self.template(&e));
                if i < last {
                    mock = mock.up_to_n_times(1);
                }
                self.server.register(mock.with_priority(100)).await;
            }
        }
    }

    fn template(&self, e: &Exchange) -> ResponseTemplate {
        let mut t = ResponseTemplate::new(e.status);
        for (name, value) in &e.headers {
            if replayable(name) {
                let value = if name.eq_ignore_ascii_case("link") || name.eq_ignore_ascii_case("location") {
                    self.rewrite(&e.scope, value)
                } else {
                    value.clone()
                };
                t = t.append_header(name.as_str(), value.as_str());
            }
        }
        match &e.response {
            Value::Null => t,
            Value::String(s) => t.set_body_string(s.clone()),
            body => t.set_body_raw(body.to_string().into_bytes(), "application/json; charset=utf-8"),
        }
    }

    /// Serves recordings as one repository's API, the way a collector asks for it: a
    /// request matches a recording of the same path and `page` (other query parameters,
    /// such as `per_page`, `state` or `sort`, are the client's business); the first
    /// recording of each page answers every time; a conditional request with the recorded
    /// ETag gets a 304; and a `Link` whose next page was not recorded is dropped, so the
    /// replayed lists end where the recordings do. Returns the pages served, by
    /// `lower-case path#page`.
    pub async fn load_repository(&self, fixtures: &[&str]) -> BTreeMap<String, Exchange> {
        self.load_repository_slowly(fixtures, Duration::ZERO).await
    }

    /// [`load_repository`](Self::load_repository), every answer `delay` late.
    pub async fn load_repository_slowly(&self, fixtures: &[&str], delay: Duration) -> BTreeMap<String, Exchange> {
        let mut pages: BTreeMap<String, Exchange> = BTreeMap::new();
        for fixture in fixtures {
            for e in exchanges(fixture) {
                if e.method == "GET" && e.status == 200 {
                    pages.entry(page_key(&e.path)).or_insert(e);
                }
            }
        }
        let recorded: std::collections::BTreeSet<String> = pages.keys().cloned().collect();
        for (key, mut e) in pages.clone() {
            let keep_link = next_page(&e).is_some_and(|next| recorded.contains(&page_key(&next)));
            if !keep_link {
                e.headers.retain(|(n, _)| !n.eq_ignore_ascii_case("link"));
            }
            let etag = e
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("etag"))
                .map(|(_, v)| v.clone());
            let page = self.template(&e).set_delay(delay);
            self.server
                .register(
                    Mock::given(wiremock::matchers::method("GET"))
                        .and(SamePage(key))
                        .respond_with(Conditional { etag, page })
                        .with_priority(100),
                )
                .await;
        }
        pages
    }

    /// The next `statuses.len()` requests of `path` (method GET, exact path and query)
    /// get these statuses (with `headers` and a GitHub-style message body) before the
    /// recording answers again.
    pub async fn fail_next(&self, path: &str, statuses: &[u16], headers: &[(&str, &str)], message: &str) {
        for status in statuses {
            let mut t = ResponseTemplate::new(*status).set_body_raw(
                serde_json::json!({"message": message}).to_string().into_bytes(),
                "application/json",
            );
            for (name, value) in headers {
                t = t.append_header(*name, *value);
            }
            self.server
                .register(
                    Mock::given(wiremock::matchers::method("GET"))
                        .and(ExactPath(normalized(path)))
                        .respond_with(t)
                        .up_to_n_times(1)
                        .with_priority(1),
                )
                .await;
        }
    }

    /// The next request of `path` answers its recording after `delay`.
    pub async fn slow_next(&self, path: &str, e: &Exchange, delay: Duration) {
        self.server
            .register(
                Mock::given(wiremock::matchers::method("GET"))
                    .and(ExactPath(normalized(path)))
                    .respond_with(self.template(e).set_delay(delay))
                    .up_to_n_times(1)
                    .with_priority(1),
            )
            .await;
    }

    /// The next request of `path` gets a 200 whose body is cut off after `bytes`.
    pub async fn truncate_next(&self, path: &str, e: &Exchange, bytes: usize) {
        let body = e.response.to_string();
        let cut = body.as_bytes()[..bytes.min(body.len())].to_vec();
        self.server
            .register(
                Mock::given(wiremock::matchers::method("GET"))
                    .and(ExactPath(normalized(path)))
                    .respond_with(ResponseTemplate::new(200).set_body_raw(cut, "application/json"))
                    .up_to_n_times(1)
                    .with_priority(1),
            )
            .await;
    }

    /// Answers `path` with a response of our own making (e.g. a 304 to a conditional request).
    pub async fn respond(&self, path: &str, response: impl Respond + 'static, times: u64) {
        self.server
            .register(
                Mock::given(wiremock::matchers::method("GET"))
                    .and(ExactPath(normalized(path)))
                    .respond_with(response)
                    .up_to_n_times(times)
                    .with_priority(1),
            )
            .await;
    }

    /// Every request the server received: (path and query, If-None-Match, Authorization).
    pub async fn requests(&self) -> Vec<(String, Option<String>, Option<String>)> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|r| {
                let pq = path_and_query(&r);
                let header = |n: &str| r.headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
                (pq, header("if-none-match"), header("authorization"))
            })
            .collect()
    }
}
