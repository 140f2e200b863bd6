#!/usr/bin/env bash
# The one command that runs every check: formatting, lints, Rust tests, and the
# Gen3 acceptance suite against a release build. Exits non-zero on any failure.
# Arguments (e.g. --database-url URL, or pytest arguments) go to acceptance.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

section() { printf '\n======== %s ========\n' "$*"; }

section "format: cargo fmt --check"
cargo fmt --all -- --check

section "lint: cargo clippy"
cargo clippy --all-targets -- -D warnings

section "Rust tests: cargo test"
cargo test --all-targets

section "release build"
cargo build --release

section "Gen3 acceptance suite"
COMMONS_BIN="${CARGO_TARGET_DIR:-target}/release/commons" scripts/acceptance.sh "$@"

section "all checks passed"
