//! The agent: network and git I/O for pg_aveloxis. Everything else (schema,
//! identities, queue, drain) happens in the extension, reached through `aveloxis.*`.

pub mod cli;
pub mod collect;
pub mod config;
pub mod db;
pub mod error;
pub mod facade;
pub mod forge;
