//! The agent: network and git I/O for pg_aveloxis. Everything else (schema,
//! identities, queue, drain) happens in the extension, reached through `aveloxis.*`.
//!
//! `cli` parses commands and prints; `worker` claims jobs and runs them; `phases` holds
//! what each phase fetches and stages (`api`: a forge's API, `facade`: git); `forge` is
//! HTTP and auth per forge; `queue` is the agent's side of the job queue.

pub mod cli;
pub mod config;
pub mod db;
pub mod distribution_stats;
pub mod error;
pub mod forge;
pub mod phases;
pub mod queue;
pub mod worker;
