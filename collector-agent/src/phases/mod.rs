//! What each phase fetches and stages. `api`: GitHub's API; `gitlab`: GitLab's API (each
//! forge's collection plan, staging raw payloads for the extension's per-forge mappers);
//! `facade`: the git history, the same for every platform; `distribution`: where a GitHub
//! repository is published and which manifests declare it; `identity`: enrichment and
//! search-resolve of contributors, fleet-wide; `analysis`: what the HEAD tree holds (labor,
//! and the `dependencies` files the extension parses); `scorecard`: OpenSSF Scorecard checks;
//! `packages`: the fleet-wide package cache behind libyear; `vulnerabilities`: OSV.

pub mod analysis;
pub mod api;
pub mod dependencies;
pub mod distribution;
pub mod facade;
pub mod gitlab;
pub mod http;
pub mod identity;
pub mod packages;
pub mod scorecard;
pub mod vulnerabilities;

/// What a phase's job came to: the JSON `complete` records, and one line for the operator.
pub trait Outcome {
    fn report(&self) -> serde_json::Value;
    fn summary(&self) -> String;
}

/// Why a phase's job failed, and the queue's class for it (`transient`, `skip`, ...).
pub trait Failure: std::fmt::Display {
    fn class(&self) -> &'static str;
}

/// A failure described in words: the network or the database, worth retrying.
impl Failure for String {
    fn class(&self) -> &'static str {
        "transient"
    }
}
