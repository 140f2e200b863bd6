//! The integration tests, one module per area, in one binary: one link of
//! the dependency graph instead of one per area. `common` is the plumbing.

mod authorization;
mod authz_import;
mod backup;
mod common;
mod crash;
mod data;
mod data_faults;
mod database_restart;
mod database_tls;
mod dictionary_sources;
mod drs;
mod graphql;
mod hostile;
mod index;
mod index_basic;
mod index_filters;
mod index_manifest;
mod keys;
mod large_uploads;
mod load;
mod migrate_data;
mod operations;
mod plan;
mod s3;
mod scale_out;
mod sessions;
mod simulate;
mod submission;
mod tidy;
