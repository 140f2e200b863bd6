//! Commons: a Gen3-compatible data commons in one binary.
//!
//! The modules, in the order data flows through them (ARCHITECTURE.md has
//! the map):
//! - the model: [`yaml`] reads a dictionary as Gen3 does, [`dictionary`]
//!   resolves it, [`validate`] checks documents against it;
//! - bodies: [`formats`] turns TSV and JSON into documents and back;
//! - writes: [`submission`] (sheepdog's write side) into the [`store`];
//!   [`file_index`] (indexd) keeps the records of data files there too,
//!   [`storage`] their bytes;
//! - reads: [`graphql`] (peregrine) asks [`plan`] for one statement per root
//!   field, written in the [`sql`] of the store's dialect; [`export`] pages
//!   through a project;
//! - who may do what: [`auth`] (fence and arborist, without HTTP);
//! - the edges: [`server`] speaks Gen3's HTTP API, [`cli`] wires it all up,
//!   [`outbound`] sends the few requests Commons makes itself;
//!   [`simulate`] makes records, [`time`] stamps them.

// The model
pub mod dictionary;
pub mod validate;
pub mod yaml;

// Bodies
pub mod formats;

// Writes and storage
pub mod file_index;
pub mod sql;
pub mod storage;
pub mod store;
pub mod submission;
pub mod time;

// Reads
pub mod export;
pub mod graphql;
pub mod plan;

// Who may do what
pub mod auth;

// The edges
pub mod cli;
pub mod outbound;
pub mod server;
pub mod simulate;
