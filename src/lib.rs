//! Commons: a Gen3-compatible data commons in one binary.
//!
//! A data dictionary ([`dictionary`]) drives validation ([`validate`]),
//! submission ([`submission`]), export ([`export`], [`formats`]) and the
//! GraphQL API ([`graphql`]) over one store ([`store`]); [`auth`] decides who
//! may do what, [`server`] speaks Gen3's HTTP API, and [`cli`] wires it up.

pub mod auth;
pub mod cli;
pub mod dictionary;
pub mod export;
pub mod formats;
pub mod graphql;
pub mod plan;
pub mod server;
pub mod simulate;
pub mod sql;
pub mod store;
pub mod submission;
pub mod validate;
pub mod yaml;

/// A timestamp in the stored form: ISO-8601 with `T` and a UTC offset.
pub fn format_timestamp(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

/// Now, in the stored timestamp form.
pub fn timestamp() -> String {
    format_timestamp(chrono::Utc::now())
}
