//! A polite client for public registries and OSV: a User-Agent naming a contact, a
//! minimum interval between requests per host (crates.io asks for at most one a second),
//! `Retry-After` honoured on 429 and 503, and a count of every request sent (the
//! benchmarks report requests per repository).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{StatusCode, Url};
use serde_json::Value;
use tokio::sync::Mutex;

/// The longest `Retry-After` waited out; a longer one fails the request (transient).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
const ATTEMPTS: u32 = 3;

/// What a request came to.
#[derive(Debug)]
pub enum Answer {
    Json(Value),
    NotFound,
    /// Another 4xx (the status and the start of the body).
    Refused(u16, String),
}

/// A request that got no answer after its retries (5xx, 429, transport).
#[derive(Debug)]
pub struct Unanswered(pub String);

impl std::fmt::Display for Unanswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone)]
pub struct PoliteClient {
    client: reqwest::Client,
    next_slot: Arc<Mutex<HashMap<String, Instant>>>,
    requests: Arc<AtomicU64>,
}

/// The least time between two requests to a host.
fn interval_for(host: &str) -> Duration {
    match host {
        "crates.io" | "index.crates.io" => Duration::from_secs(1),
        _ => Duration::from_millis(100),
    }
}

impl PoliteClient {
    pub fn new(contact: Option<&str>) -> Result<Self, String> {
        let agent = match contact {
            Some(c) => format!("aveloxis-agent/{} (+mailto:{c})", env!("CARGO_PKG_VERSION")),
            None => format!(
                "aveloxis-agent/{} (+https://github.com/aveloxis)",
                env!("CARGO_PKG_VERSION")
            ),
        };
        let client = reqwest::Client::builder()
            .user_agent(agent)
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(PoliteClient {
            client,
            next_slot: Default::default(),
            requests: Default::default(),
        })
    }

    /// The same client and per-host pacing, with its own request count (one per job).
    pub fn for_job(&self) -> Self {
        PoliteClient {
            client: self.client.clone(),
            next_slot: self.next_slot.clone(),
            requests: Default::default(),
        }
    }

    /// Requests sent so far (every attempt counts).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    async fn wait_turn(&self, url: &Url) {
        let host = url.host_str().unwrap_or_default().to_owned();
        let path_host = url
            .path_segments()
            .and_then(|mut s| s.next())
            .unwrap_or_default()
            .to_owned();
        // Under a local mirror (`--registry-root`), the registry's host is the first segment.
        let key = if interval_for(&path_host) > interval_for(&host) {
            path_host
        } else {
            host
        };
        let wait = {
            let mut slots = self.next_slot.lock().await;
            let now = Instant::now();
            let at = slots.get(&key).copied().unwrap_or(now).max(now);
            slots.insert(key.clone(), at + interval_for(&key));
            at - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// A text document (`Ok(None)`: 404; another refusal is an `Unanswered` with its status).
    pub async fn get_text(&self, url: Url) -> Result<Option<String>, Unanswered> {
        match self.exchange(|c| c.get(url.clone()), &url).await? {
            (404, _) => Ok(None),
            (200..=299, body) => Ok(Some(String::from_utf8_lossy(&body).into_owned())),
            (status, _) => Err(Unanswered(format!("{url}: HTTP {status}"))),
        }
    }

    pub async fn get_json(&self, url: Url, accept: Option<&str>) -> Result<Answer, Unanswered> {
        self.send(
            |c| {
                let r = c.get(url.clone());
                match accept {
                    Some(a) => r.header(reqwest::header::ACCEPT, a),
                    None => r,
                }
            },
            &url,
        )
        .await
    }

    pub async fn post_json(&self, url: Url, body: &Value) -> Result<Answer, Unanswered> {
        let body = body.to_string();
        self.send(
            |c| {
                c.post(url.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone())
            },
            &url,
        )
        .await
    }

    async fn send(
        &self,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
        url: &Url,
    ) -> Result<Answer, Unanswered> {
        let (status, body) = self.exchange(build, url).await?;
        if status == 404 {
            return Ok(Answer::NotFound);
        }
        if !(200..300).contains(&status) {
            let text = String::from_utf8_lossy(&body);
            return Ok(Answer::Refused(status, text.chars().take(200).collect()));
        }
        serde_json::from_slice(&body)
            .map(Answer::Json)
            .or_else(|e| Ok(Answer::Refused(status, format!("not JSON: {e}"))))
    }

    /// One request with its retries: the final status and body (429 and 5xx retried,
    /// `Retry-After` waited out up to a minute).
    async fn exchange(
        &self,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
        url: &Url,
    ) -> Result<(u16, Vec<u8>), Unanswered> {
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            self.wait_turn(url).await;
            self.requests.fetch_add(1, Ordering::Relaxed);
            let response = match build(&self.client).send().await {
                Ok(r) => r,
                Err(e) => {
                    last = format!("{url}: {e}");
                    tokio::time::sleep(Duration::from_millis(500 * 2u64.pow(attempt))).await;
                    continue;
                }
            };
            let status = response.status();
            if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                last = format!("{url}: HTTP {}", status.as_u16());
                match retry_after {
                    Some(d) if d > MAX_RETRY_AFTER => {
                        return Err(Unanswered(format!("{last}, Retry-After {} s", d.as_secs())))
                    }
                    Some(d) => tokio::time::sleep(d).await,
                    None => tokio::time::sleep(Duration::from_millis(500 * 2u64.pow(attempt))).await,
                }
                continue;
            }
            let body = response.bytes().await.map_err(|e| Unanswered(format!("{url}: {e}")))?;
            return Ok((status.as_u16(), body.to_vec()));
        }
        Err(Unanswered(last))
    }
}
